/*
 * The management API's user bodies (dcpool/api.c, supervisor/users.c):
 * JSON with the field names of telemt's control API, so that panels made
 * for it work, checked strictly (an unknown field, a wrong type, a bad
 * value is an error that names it), and the users file that API changes
 * are kept in (api.users_file): one libconfig group per user, the list
 * a listener's "users = ( @include ... )" takes in.
 */
#ifndef MTP_APIUSER_H
#define MTP_APIUSER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Fields a request gives (set) or clears with null (cleared). */
enum {
	AU_NAME = 1 << 0,
	AU_SECRET = 1 << 1,
	AU_AD_TAG = 1 << 2,
	AU_MAX_CONNS = 1 << 3,
	AU_EXPIRES = 1 << 4,
	AU_QUOTA = 1 << 5,
	AU_RATE = 1 << 6,
	AU_MAX_IPS = 1 << 7,
	AU_ENABLED = 1 << 8,
	AU_QUOTA_PERIOD = 1 << 9,
	AU_IPS_WINDOW = 1 << 10,
};

/* What a body may hold. */
enum api_body {
	API_BODY_CREATE, /* POST /v1/users: username required */
	API_BODY_PATCH, /* PATCH /v1/users/{name}: a merge patch */
	API_BODY_ROTATE, /* rotate-secret: secret or nothing */
};

struct api_user_patch {
	unsigned set; /* AU_* given with a value */
	unsigned cleared; /* AU_* given as null */
	struct config_user u; /* the values of set */
};

/* The largest body the API reads. */
#define API_BODY_MAX (64 * 1024)

/*
 * Parse a body (len bytes, not NUL-terminated; empty means {}) into p.
 * 0, or -1 with a message naming the field in err.
 */
int api_user_parse(const char *body, size_t len, enum api_body,
    struct api_user_patch *p, char *err, size_t errlen);
/*
 * A change's body, by the change ("create", "patch", "rotate" have one;
 * "delete", "enable", "disable" none: p is zeroed): its kind and the
 * parsed patch. 0, or -1 with the message in err.
 */
int api_op_parse(const char *op, const char *body, size_t len,
    enum api_body *kind, struct api_user_patch *p, char *err, size_t errlen);
/* Merge p into u (cleared fields take their defaults). */
void api_user_apply(struct config_user *u, const struct api_user_patch *p);
/* A user as a new one starts (the defaults of the config file). */
void api_user_defaults(struct config_user *u);

/*
 * The users file's text for n users (malloc'd, NUL-terminated): each a
 * group on its own line, the fields that differ from the defaults.
 */
char *api_users_text(const struct config_user *u, size_t n);

/* RFC 3339 UTC text of t ("2027-01-31T00:00:00Z"). */
void api_time_text(int64_t t, char out[32]);

#endif
