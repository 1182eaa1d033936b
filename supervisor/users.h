/*
 * The management API's changes to api.users_file (users.c).
 */
#ifndef MTP_USERS_H
#define MTP_USERS_H

#include "config.h"

/*
 * Apply one change the dcpool forwarded: request is
 * {"op": "create"|"patch"|"delete"|"enable"|"disable"|"rotate",
 *  "user": NAME, "if_match": REV, "body": TEXT}. Returns the answer's
 * JSON (malloc'd; NULL when out of memory) and its HTTP status: on
 * success {"revision", "user", "secret"}, else {"code", "message"}.
 * On success the caller reloads.
 */
char *users_api(const struct config *, const char *config_path,
    const char *request, int *status);
/* SHA-256 (hex) of the users file, of "" when there is none. */
void users_revision(const char *path, char out[65]);

#endif
