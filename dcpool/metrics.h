/*
 * The metrics endpoint (Prometheus text format), served by the dcpool
 * from the shared metric slots; never on the data path.
 */
#ifndef MTP_METRICS_H
#define MTP_METRICS_H

struct event_base;
struct config;
struct shm_metrics;
struct replay_cache;

/*
 * 0, or -1 (logged) when the address cannot be bound. The zone and the
 * replay cache (NULL: its metrics are left out) are the shared mappings
 * the supervisor made before forking.
 */
/* metrics.allow: 1 when the peer may ask; else answered 403 here. */
struct evhttp_request;
int metrics_allowed(struct evhttp_request *);
/* Where the workers' fingerprint counts go (MSG_FINGERPRINTS). */
struct fptable;
struct fptable *metrics_fingerprints(void);
/* Stops accepting (the queue waits for the next dcpool). */
void metrics_stop(void);
/* lfd: the listening socket the supervisor opened (-1 when none); the
 * policy zone gives the per-user series. */
struct policy;
int metrics_start(struct event_base *, const struct config *,
    struct shm_metrics *, struct replay_cache *, struct policy *, int lfd);

#endif
