/*
 * The management API, served by the dcpool (api.c).
 */
#ifndef MTP_API_H
#define MTP_API_H

#include <stdint.h>

struct event_base;
struct config;
struct policy;
struct shm_metrics;
struct pubaddr_state;

/* Listen on api.address:port (nothing when the port is 0); chan is the
 * supervisor's. 0, or -1 (logged). */
int api_start(struct event_base *, const struct config *, struct policy *,
    struct shm_metrics *, int chan);
void api_stop(void);
/* The supervisor's MSG_API_REPLY: completes the request with that id
 * (id 0: only news of the users file's revision). */
void api_answer(uint32_t id, uint32_t status, const char *json);
/* The public address, for the users' links. */
void api_pubaddr(const struct pubaddr_state *);

#endif
