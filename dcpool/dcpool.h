#ifndef MTP_DCPOOL_H
#define MTP_DCPOOL_H

#include "config.h"
#include "priv.h"

struct shm_metrics;

struct policy;

struct dcpool_args {
	struct config *cfg;
	int generation;
	int chan; /* to the supervisor */
	struct shm_metrics *metrics; /* read for the metrics page */
	struct replay_cache *replay; /* likewise */
	struct policy *policy; /* users' counts and quota (the API) */
	int metrics_fd; /* the metrics page's listening socket, or -1 */
	struct priv_params priv; /* to drop to */
};

void dcpool_main(struct dcpool_args *) __attribute__((noreturn));

/* For the status pages (status.c). */
struct tg_state;
/* Workers with a channel to us (during a reload, old and new). */
int dcpool_workers_connected(void);
/* Telegram's config and since when it is in use (unix time); NULL when
 * no listener uses the middle proxies. */
const struct tg_state *dcpool_tg_state(int64_t *since);
const struct dcpool_args *dcpool_args(void);
/* The dcpool's own metrics slot (NULL until the supervisor filled it). */
struct shm_slot;
struct shm_slot *dcpool_slot(void);

#endif
