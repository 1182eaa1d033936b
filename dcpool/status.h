/*
 * Health and status pages on the metrics server (status.c):
 *   /health  200 while the daemon runs;
 *   /ready   200 when it can serve (every worker serving; in middle mode
 *            a middle proxy known for each of DCs 1-5), else 503 and why;
 *   /status  JSON: version, uptime, generation, children, listeners and
 *            their users, connections, Telegram's config and its age.
 */
#ifndef MTP_STATUS_H
#define MTP_STATUS_H

struct evhttp;
struct config;
struct shm_metrics;

void
status_register(struct evhttp *, const struct config *, struct shm_metrics *);

/* Why the daemon cannot serve, into b (nothing when it can). */
struct evbuffer;
void status_not_ready(struct evbuffer *b);

#endif
