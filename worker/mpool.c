/*
 * Middle-proxy pools in a worker: one per DC that Telegram's table knows
 * (a client naming any other DC uses the default DC's pool, so clients
 * cannot make pools), each with min_links links while it has clients and
 * one more per clients_per_link; a pool without clients for
 * middle.pool_idle_timeout closes its links. Links come from the dcpool
 * on request; a request it does not answer in LINK_REQ_TIMEOUT_MS is
 * given up, so a lost message cannot wedge a pool.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "middle.h"
#include "msg.h"
#include "session.h"
#include "shm.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

/* ------------------------------------------------------------ pools */

static struct mpool *
pool_find(int16_t dc)
{
	for (size_t i = 0; i < M.npools; i++)
		if (M.pools[i].dc == dc)
			return &M.pools[i];
	return NULL;
}

struct mpool *
pool_of(int16_t dc)
{
	struct mpool *p;

	dc = session_pool_dc(dc);
	if ((p = pool_find(dc)) != NULL)
		return p;
	if (M.npools == MIDDLE_MAX_POOLS) {
		/* Only if the DC table itself has this many ids. */
		p = pool_find((int16_t)W.cfg->default_dc);
		return p ? p : &M.pools[0];
	}
	p = &M.pools[M.npools++];
	memset(p, 0, sizeof(*p));
	p->dc = dc;
	TAILQ_INIT(&p->links);
	TAILQ_INIT(&p->waiting);
	return p;
}

static size_t
pool_clients(const struct mpool *p)
{
	size_t n = p->nwaiting;
	struct mlink *l;

	TAILQ_FOREACH(l, &p->links, entry)
	n += l->nclients;
	return n;
}

static struct mlink *
pool_pick(struct mpool *p)
{
	struct mlink *l, *best = NULL;

	TAILQ_FOREACH(l, &p->links, entry)
	if (best == NULL || l->nclients < best->nclients)
		best = l;
	return best;
}

/*
 * middle.fallback_direct: serve a client that cannot get a link straight
 * from the DC. Only for clients that never had a link (nothing was sent
 * to them yet, so their stream can still start over as passthrough).
 */
static int
fallback_ok(const struct session *s, const struct mpool *p)
{
	return W.cfg->middle_fallback_direct && !s->had_link &&
	    p->nlinks == 0 && p->failures >= 2;
}

static void
fallback(struct session *s)
{
	uint8_t *b = s->inbuf;
	size_t n = s->inlen;

	s->inbuf = NULL;
	s->inlen = s->incap = 0;
	session_direct_fallback(s, b, n);
	free(b);
}

void
pool_wait_remove(struct session *s)
{
	struct mpool *p = s->pool;

	if (!s->waiting)
		return;
	TAILQ_REMOVE(&p->waiting, s, wait_entry);
	p->nwaiting--;
	s->waiting = 0;
}

void
pool_place(struct session *s)
{
	struct mpool *p = pool_of(s->dc);
	struct mlink *l = pool_pick(p);

	s->pool = p;
	p->idle_since_ms = 0;
	if (M.frozen) {
		/* Its links left (reload): it waits, and moves too. */
		l = NULL;
		handoff_kick();
	}
	if (l) {
		client_attach(s, l);
	} else if (fallback_ok(s, p)) {
		fallback(s);
		return;
	} else {
		s->waiting = 1;
		s->wait_since_ms = coarse_now_ms();
		TAILQ_INSERT_TAIL(&p->waiting, s, wait_entry);
		p->nwaiting++;
		side_want_read(s, &s->c, 0);
	}
	pool_maintain(p);
}

/* ------------------------------------------------------------ requests */

static void
request_link(struct mpool *p)
{
	uint32_t id = ++M.next_req;

	if (W.dcpool_fd == -1 || p->inflight == POOL_REQS_MAX)
		return; /* asked again when the dcpool is back */
	if (msg_send_link_request(W.dcpool_fd, p->dc, id) == -1) {
		log_warn("asking the dcpool for a link to DC %d", p->dc);
		return;
	}
	p->reqs[p->inflight].id = id;
	p->reqs[p->inflight].sent_ms = coarse_now_ms();
	p->inflight++;
}

/* Takes request id off p's list; 0 if it was there. */
static int
request_done(struct mpool *p, uint32_t id)
{
	for (size_t i = 0; i < p->inflight; i++)
		if (p->reqs[i].id == id) {
			p->reqs[i] = p->reqs[--p->inflight];
			return 0;
		}
	return -1;
}

static void
requests_expire(struct mpool *p, uint64_t now)
{
	for (size_t i = 0; i < p->inflight;) {
		if (now - p->reqs[i].sent_ms < LINK_REQ_TIMEOUT_MS(W.cfg)) {
			i++;
			continue;
		}
		log_warnx("link request %u for DC %d: no answer from the "
		          "dcpool in %llu s; asking again",
		    p->reqs[i].id, p->dc,
		    (unsigned long long)LINK_REQ_TIMEOUT_MS(W.cfg) / 1000);
		p->reqs[i] = p->reqs[--p->inflight];
		p->failures++;
	}
}

/*
 * Keep the pool at its size: min_links while it is in use (it has
 * clients, or had some less than middle.pool_idle_timeout ago), and one
 * link per clients_per_link.
 */
void
pool_maintain(struct mpool *p)
{
	const struct config *cfg = W.cfg;
	size_t clients = pool_clients(p);
	size_t per = (size_t)cfg->middle_clients_per_link;
	size_t want = (clients + per - 1) / per;
	uint64_t now = coarse_now_ms();

	if (M.frozen)
		return;
	if (clients == 0 && p->idle_since_ms == 0)
		p->idle_since_ms = now;
	if (clients > 0)
		p->idle_since_ms = 0;
	if (clients == 0 && cfg->middle_pool_idle_timeout > 0 &&
	    now - p->idle_since_ms >=
	        (uint64_t)cfg->middle_pool_idle_timeout * 1000)
		return; /* idle: its links go at the next tick */
	if (want < (size_t)cfg->middle_min_links)
		want = cfg->middle_min_links;
	if (now < p->retry_at_ms)
		return;
	while (p->nlinks + p->inflight < want && W.dcpool_fd != -1) {
		size_t before = p->inflight;
		request_link(p);
		if (p->inflight == before)
			break;
	}
}

static void
link_granted(int16_t dc, uint32_t req, const struct rpc_link_keys *keys,
    const struct sockaddr_storage *me, int fd)
{
	struct mpool *p = pool_find(dc);
	char a[ADDR_STRLEN];

	if (p == NULL) {
		log_warnx("a link to DC %d that no pool asked for", dc);
		close(fd);
		return;
	}
	if (request_done(p, req) == -1)
		log_info(
		    "late link for DC %d (request %u): taking it", dc, req);
	struct mlink *l = link_new(p, keys, me, fd);
	if (l == NULL) {
		log_warnx("cannot take a link to DC %d", dc);
		return;
	}
	p->failures = 0;
	log_info("link to DC %d (%s) ready: %zu links, %zu clients waiting", dc,
	    addr_str((const struct sockaddr *)me, a, sizeof(a)), p->nlinks,
	    p->nwaiting);
	/* Waiting clients, spread over the links. */
	struct session *s;
	while ((s = TAILQ_FIRST(&p->waiting)) != NULL && !l->closed) {
		pool_wait_remove(s);
		client_attach(s, pool_pick(p));
	}
	pool_maintain(p);
}

/* ------------------------------------------------------------ tick */

static void
tick_link(struct mlink *l, uint64_t now)
{
	const struct config *cfg = W.cfg;
	struct session *s, *sn;

	if (now - l->last_rx_ms > (uint64_t)cfg->middle_ping_timeout * 1000) {
		link_close(l, "no answer to pings");
		return;
	}
	if (now - l->last_rx_ms >= (uint64_t)cfg->middle_ping_interval * 1000 &&
	    now - l->last_ping_ms >= (uint64_t)cfg->middle_ping_interval * 1000)
		link_ping(l);
	/* Clients that stay over their output bound. One that is over has
	 * more than half its bound queued (client_queue_changed()), so a
	 * link whose clients have less in all has none: idle links are not
	 * walked every second. */
	uint64_t over = (uint64_t)cfg->middle_client_queue_timeout * 1000;
	if (l->client_bytes <= cfg->middle_client_queue_max / 2)
		return;
	TAILQ_FOREACH_SAFE(s, &l->clients, link_entry, sn)
	{
		if (s->over_since_ms && now - s->over_since_ms > over) {
			shm_add(W.metrics, M_SLOW_CLIENTS, 1);
			session_close(s, "client does not read");
		}
	}
}

static void
tick_pool(struct mpool *p, uint64_t now)
{
	const struct config *cfg = W.cfg;
	struct mlink *l, *ln;
	struct session *s, *sn;

	requests_expire(p, now);
	TAILQ_FOREACH_SAFE(l, &p->links, entry, ln)
	tick_link(l, now);
	TAILQ_FOREACH_SAFE(s, &p->waiting, wait_entry, sn)
	{
		if (fallback_ok(s, p))
			fallback(s);
		else if (now - s->wait_since_ms > WAIT_MAX_MS(cfg))
			session_close(s, "no middle-proxy link");
	}
	if (cfg->middle_pool_idle_timeout > 0 && p->idle_since_ms &&
	    pool_clients(p) == 0 && p->nlinks > 0 &&
	    now - p->idle_since_ms >=
	        (uint64_t)cfg->middle_pool_idle_timeout * 1000) {
		log_info("DC %d: no clients for %d s; closing its %zu links",
		    p->dc, cfg->middle_pool_idle_timeout, p->nlinks);
		while ((l = TAILQ_FIRST(&p->links)) != NULL)
			link_close(l, "pool idle");
	}
	pool_maintain(p);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = coarse_now_ms();

	for (size_t i = 0; i < M.npools; i++)
		tick_pool(&M.pools[i], now);
	/* The pools' links for the metrics (we are their only writer). */
	if (W.metrics != NULL)
		for (size_t i = 0; i < SHM_DC_POOLS; i++) {
			struct shm_dclinks *g = &W.metrics->dclinks[i];
			const struct mpool *p =
			    i < M.npools ? &M.pools[i] : NULL;
			__atomic_store_n(&g->up, p ? (uint32_t)p->nlinks : 0,
			    __ATOMIC_RELAXED);
			__atomic_store_n(&g->pending,
			    p ? (uint32_t)p->inflight : 0, __ATOMIC_RELAXED);
			__atomic_store_n(&g->waiting,
			    p ? (uint32_t)p->nwaiting : 0, __ATOMIC_RELAXED);
			__atomic_store_n(
			    &g->dc, p ? p->dc : 0, __ATOMIC_RELEASE);
		}
	struct timeval tv = { 0, MIDDLE_TICK_MS * 1000 };
	evtimer_add(&M.tick, &tv);
}

void
mpool_init(void)
{
	evtimer_assign(&M.tick, W.base, tick_cb, NULL);
	struct timeval tv = { 0, MIDDLE_TICK_MS * 1000 };
	evtimer_add(&M.tick, &tv);
}

void
middle_close_all(void)
{
	for (size_t i = 0; i < M.npools; i++) {
		struct mpool *p = &M.pools[i];
		struct mlink *l;
		struct session *s;
		while ((s = TAILQ_FIRST(&p->waiting)) != NULL)
			session_close(s, "shutting down");
		while ((l = TAILQ_FIRST(&p->links)) != NULL) {
			/* Its clients would move: close them first. */
			while ((s = TAILQ_FIRST(&l->clients)) != NULL)
				session_close(s, "shutting down");
			link_close(l, "shutting down");
		}
		p->inflight = 0;
	}
	M.npools = 0;
}

/* ------------------------------------------------------------ dcpool */

void
middle_dcpool_connected(void)
{
	/* Requests sent to a dcpool that died are lost: ask again. */
	for (size_t i = 0; i < M.npools; i++) {
		M.pools[i].inflight = 0;
		M.pools[i].retry_at_ms = 0;
		pool_maintain(&M.pools[i]);
	}
}

void
middle_dcpool_msg(struct msg *m)
{
	int16_t dc;
	uint32_t req, retry;
	struct rpc_link_keys keys;
	struct sockaddr_storage me;
	struct mpool *p;
	int fd;

	switch (m->type) {
	case MSG_LINK_GRANT:
		if ((fd = msg_get_link_grant(m, &dc, &req, &keys, &me)) == -1) {
			log_warnx("malformed %s from the dcpool",
			    msg_type_name(m->type));
			return;
		}
		link_granted(dc, req, &keys, &me, fd);
		explicit_bzero(&keys, sizeof(keys));
		break;
	case MSG_LINK_REFUSED:
		if (msg_get_link_refused(m, &dc, &req, &retry) == -1) {
			log_warnx("malformed %s from the dcpool",
			    msg_type_name(m->type));
			return;
		}
		if ((p = pool_find(dc)) == NULL || request_done(p, req) == -1)
			return; /* timed out already */
		p->failures++;
		p->retry_at_ms = coarse_now_ms() + retry;
		log_debug("no link to DC %d yet; retry in %u ms", p->dc, retry);
		break;
	case MSG_TLS_SHAPE: {
		char key[MSG_SHAPE_KEY];
		struct tls_shape sh;

		if (msg_get_tls_shape(m, key, &sh) == -1) {
			log_warnx("malformed %s from the dcpool",
			    msg_type_name(m->type));
			return;
		}
		session_tls_shape(key, &sh);
		break;
	}
	default:
		log_warnx("unexpected message %s from the dcpool",
		    msg_type_name(m->type));
	}
}
