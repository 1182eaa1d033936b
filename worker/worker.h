#ifndef MTP_WORKER_H
#define MTP_WORKER_H

#include <stddef.h>

#include "config.h"
#include "priv.h"

struct shm_slot;
struct shm_metrics;
struct replay_cache;
struct policy;

struct worker_listen {
	int fd;
	const struct config_listener *l;
};

struct worker_args {
	struct config *cfg;
	int slot;
	int generation;
	int chan; /* to the supervisor */
	struct worker_listen *listen;
	size_t nlisten;
	struct shm_slot *metrics;
	struct shm_metrics *zone; /* every slot: admission control */
	struct replay_cache *replay;
	struct policy *policy; /* limits and quota (policy.h) */
	int pslot; /* our share's number in it (the metrics slot's) */
	struct priv_params priv; /* to drop to */
};

void worker_main(struct worker_args *) __attribute__((noreturn));

/* The running worker (one per process). */
struct event_base;
struct evdns_base;
struct worker {
	struct event_base *base;
	struct evdns_base *dns;
	struct worker_args *a;
	struct config *cfg;
	struct shm_slot *metrics;
	int draining;
	size_t nsessions;
	int dcpool_fd; /* -1 until the supervisor
						 * passes one */
};
extern struct worker W;

/* Sessions report their life so that a draining worker knows when to go,
 * and the listener's connection gauge stays right. */
void worker_session_opened(const struct config_listener *);
void worker_session_closed(const struct config_listener *);
/* The handoff channel (handoff.c) closed: exit when nothing is left. */
void worker_handoff_ended(void);
/* The resolver for host names: resolv_conf, else the system's. */
struct evdns_base *worker_resolver(struct event_base *, const struct config *);
#endif
