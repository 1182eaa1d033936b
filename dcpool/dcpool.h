#ifndef MTP_DCPOOL_H
#define MTP_DCPOOL_H

#include "config.h"
#include "priv.h"

struct shm_metrics;

struct dcpool_args {
	struct config *cfg;
	int generation;
	int chan; /* to the supervisor */
	struct shm_metrics *metrics; /* read for the metrics page */
	struct replay_cache *replay; /* likewise */
	int metrics_fd; /* the metrics page's listening socket, or -1 */
	struct priv_params priv; /* to drop to */
};

void dcpool_main(struct dcpool_args *) __attribute__((noreturn));

#endif
