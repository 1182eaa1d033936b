/*
 * Client sessions: the handshake (fake TLS, obfuscated2), the decision
 * what to do with a client (serve, front, hold), and the backend set-up.
 * Moving bytes once both sides are connected is relay.c's job; fronting
 * is front.c's; middle mode is mclient.c's.
 *
 * Spec: A.2 (obfuscated2), A.4 (fake TLS), A.4.8 (fronting), A.5
 * (replay), B.1 (direct mode, passthrough).
 *
 * THE OWNERSHIP RULE. Exactly one function frees a session:
 * session_free(), run by the reaper event after the callback in flight
 * has returned. session_close() only tears a session down: it closes its
 * descriptors, deletes its events, takes it off every list of the worker,
 * the middle-proxy links and pools and the fronting targets, and queues
 * it for the reaper. It is idempotent. So any code may close a session at
 * any depth, and a caller that called something that may close it checks
 * s->closed before it goes on; it never touches freed memory, because
 * nothing is freed until the loop is back in control. A DNS request is
 * owned by the fronting target that made it (front.c) until its callback
 * runs; sessions only wait on the target. Links (mlink.c) follow the
 * same rule with link_close() and their own reaper.
 */
#include "autoconf.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/util.h>

#include "dc.h"
#include "fpcount.h"
#include "keyidx.h"
#include "log.h"
#include "match.h"
#include "o2.h"
#include "proxyproto.h"
#include "replay.h"
#include "session.h"
#include "session_int.h"
#include "shm.h"
#include "tables.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

/* The most a client may send before we decide what it is. */
#define HS_MAX     (TLS_HELLO_WIRE_MAX + O2_HEADER_LEN)
#define HS_INITIAL 1024

uint8_t *session_scratch;

/*
 * Per listener: its users' keys ready for matching (match.h), built when
 * the users are loaded, not per handshake: the plain secrets' (for
 * obfuscated2, and fake TLS without per_sni_secrets), and with
 * per_sni_secrets each name's derived ones (the same users in the same
 * order).
 */
#define NAMES_MAX (1 + CONFIG_MAX_TLS_DOMAINS) /* tls_domain, tls_domains */
struct listener_secrets {
	struct match_keys plain;
	int32_t *byrec; /* user index by policy record (pidx); -1 none */
	size_t nbyrec;
	struct match_keys sni[NAMES_MAX]; /* on: [0] tls_domain, [1 + k] */
	/* The ServerHello shape: the fronted site's once the dcpool has
	 * learned it, else SS.static_shape. */
	struct tls_shape shape;
	int have_shape;
	/* tls_domains entries with a site of their own: that site's */
	struct tls_shape sni_shape[CONFIG_MAX_TLS_DOMAINS];
	uint8_t sni_have[CONFIG_MAX_TLS_DOMAINS];
};

static struct {
	struct session_list live; /* open sessions */
	struct session_list reap; /* closed, waiting for the reaper */
	struct session_list hs; /* not past the handshake, oldest first */
	size_t hs_bytes; /* memory the hs list holds */
	size_t hs_budget; /* this worker's share; 0 = no bound */
	struct event reaper;
	struct listener_secrets *ls; /* parallel to cfg->listeners */
	struct tls_shape static_shape; /* tls.profile = "static", or before */
	struct dc_table *dcs;
} SS;

static void hs_read_cb(evutil_socket_t, short, void *);
static const struct listener_secrets *
secrets_of(const struct config_listener *);
static void session_timer_cb(evutil_socket_t, short, void *);
static void hello_send(struct session *, const uint8_t *, size_t);
static int hs_grow(struct session *, size_t);
static int direct_other_family(struct session *, int, const char *);
static void session_free(struct session *);

/* ------------------------------------------------------------ users */

/* The name of key set j of a listener: 0 tls_domain, 1 + k tls_domains[k]. */
static const char *
name_of(const struct config_listener *l, size_t j)
{
	return j == 0 ? l->tls_domain : l->snis[j - 1].name;
}

/* (Re)build listener i's keys from its users now. */
static void
secrets_rebuild(size_t i)
{
	const struct config_listener *l = &W.cfg->listeners[i];
	struct listener_secrets *ls = &SS.ls[i];
	uint8_t(*sec)[16] = calloc(l->nusers + 1, 16);
	uint8_t(*d)[16] = calloc(l->nusers + 1, 16);

	if (sec == NULL || d == NULL)
		fatal("calloc");
	for (size_t u = 0; u < l->nusers; u++)
		memcpy(sec[u], l->users[u].secret, 16);
	match_keys_free(&ls->plain);
	for (size_t j = 0; j < NAMES_MAX; j++)
		match_keys_free(&ls->sni[j]);
	if (match_keys_init(&ls->plain, (const void *)sec, l->nusers) == -1)
		fatal("match_keys_init");
	if ((l->protocols & PROTO_FAKE_TLS) && l->per_sni_secrets)
		for (size_t j = 0; j < 1 + l->nsnis; j++) {
			for (size_t u = 0; u < l->nusers; u++)
				match_sni_secret(sec[u], l->per_sni_salt,
				    name_of(l, j), d[u]);
			if (match_keys_init(
			        &ls->sni[j], (const void *)d, l->nusers) == -1)
				fatal("match_keys_init");
		}
	explicit_bzero(sec, l->nusers * 16);
	explicit_bzero(d, l->nusers * 16);
	free(sec);
	free(d);
	/* The hints name users by record. */
	free(ls->byrec);
	ls->nbyrec = 0;
	for (size_t u = 0; u < l->nusers; u++)
		if (l->users[u].pidx >= 0 &&
		    (size_t)l->users[u].pidx >= ls->nbyrec)
			ls->nbyrec = (size_t)l->users[u].pidx + 1;
	if ((ls->byrec = malloc((ls->nbyrec + 1) * sizeof(int32_t))) == NULL)
		fatal("malloc");
	memset(ls->byrec, 0xff, (ls->nbyrec + 1) * sizeof(int32_t));
	for (size_t u = 0; u < l->nusers; u++)
		if (l->users[u].pidx >= 0)
			ls->byrec[l->users[u].pidx] = (int32_t)u;
}

/*
 * The fake-TLS keys for a client that asked for name sni (sni_index()),
 * or NULL when with per_sni_secrets it named none of ours: no key fits.
 */
static const struct match_keys *
tls_keys(
    const struct config_listener *l, const struct listener_secrets *ls, int sni)
{
	if (!l->per_sni_secrets)
		return &ls->plain;
	return sni == -2 ? NULL : &ls->sni[sni + 1];
}

/*
 * Hints: which user a client address matched last, and its subnet's
 * (/24, /64), so that a returning client costs one try, not a scan of
 * every user. They live in the policy zone (policy.h), shared by the
 * workers, as user records, which keep their number over reloads: a
 * client's next connection is cheap whichever worker takes it. A wrong
 * or stale hint only costs one try more.
 */

/* The key of peer's address (subnet 0) or of its /24 or /64 (1). */
static int
hint_key(const union sockaddr_any *peer, int subnet, uint8_t key[17])
{
	memset(key, 0, 17);
	if (peer->sa.sa_family == AF_INET) {
		key[0] = subnet ? 3 : 4;
		memcpy(key + 1, &peer->in.sin_addr, subnet ? 3 : 4);
		return 0;
	}
	if (peer->sa.sa_family == AF_INET6) {
		key[0] = subnet ? 8 : 16;
		memcpy(key + 1, &peer->in6.sin6_addr, subnet ? 8 : 16);
		return 0;
	}
	return -1;
}

/* Up to two users to try first for s's address; their number. */
static size_t
hints_get(const struct session *s, long out[2])
{
	const struct listener_secrets *ls = secrets_of(s->l);
	size_t n = 0;
	uint8_t key[17];

	if (W.a->policy == NULL)
		return 0;
	for (int sub = 0; sub < 2; sub++) {
		if (hint_key(&s->peer, sub, key) == -1)
			break;
		int rec = policy_hint_get(W.a->policy, s->l->shm_index, key);
		if (rec >= 0 && (size_t)rec < ls->nbyrec && ls->byrec[rec] >= 0)
			out[n++] = ls->byrec[rec];
	}
	return n;
}

static void
hints_put(const struct session *s, long user)
{
	uint8_t key[17];

	if (W.a->policy == NULL || s->l->users[user].pidx < 0)
		return;
	for (int sub = 0; sub < 2; sub++) {
		if (hint_key(&s->peer, sub, key) == -1)
			break;
		policy_hint_put(
		    W.a->policy, s->l->shm_index, key, s->l->users[user].pidx);
	}
}

/* Count a handshake whose user (idx, -1: none) was not a hint. */
static void
hints_count(long idx, const long *hint, size_t nhint)
{
	for (size_t i = 0; i < nhint; i++)
		if (hint[i] == idx)
			return;
	shm_add(W.metrics, M_HS_USER_SCANS, 1);
}

/* ------------------------------------------------------------ setup */

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&SS.reap)) != NULL) {
		TAILQ_REMOVE(&SS.reap, s, entry);
		session_free(s);
	}
}

void
session_init(void)
{
	struct config *cfg = W.cfg;

	session_scratch = malloc(SESSION_SCRATCH_LEN);
	SS.ls = calloc(cfg->nlisteners + 1, sizeof(*SS.ls));
	if (session_scratch == NULL || SS.ls == NULL)
		fatal("malloc");
	for (size_t i = 0; i < cfg->nlisteners; i++)
		secrets_rebuild(i);
	SS.dcs = dc_table_new(cfg->dcs, cfg->ndcs, cfg->default_dc);
	if (SS.dcs == NULL)
		fatalx("invalid DC table (telegram.dc, telegram.default_dc)");
	TAILQ_INIT(&SS.live);
	TAILQ_INIT(&SS.reap);
	TAILQ_INIT(&SS.hs);
	evtimer_assign(&SS.reaper, W.base, reap_cb, NULL);
	if (cfg->handshake_memory)
		SS.hs_budget = cfg->handshake_memory / (size_t)cfg->workers;
	/* Before a site is learned (or with tls.profile = "static"): the
	 * built-in shape, its record the middle of tls.cert_len_*. */
	SS.static_shape = tls_shape_default;
	SS.static_shape.flight =
	    (uint32_t)(cfg->tls_cert_len_min + cfg->tls_cert_len_max) / 2;
	front_init();
	fp_init();
	middle_init();
	limits_init();
}

void
session_tls_shape(const char *key, const struct tls_shape *sh)
{
	char k[CONFIG_DOMAIN_MAX + 8];

	for (size_t i = 0; i < W.cfg->nlisteners; i++) {
		const struct config_listener *l = &W.cfg->listeners[i];

		if (!(l->protocols & PROTO_FAKE_TLS))
			continue;
		for (size_t n = 0; n < l->nsnis; n++) {
			const struct config_sni *sn = &l->snis[n];

			if (sn->fronting_host[0] == '\0')
				continue;
			snprintf(k, sizeof(k), "%s:%u", sn->fronting_host,
			    (unsigned)sn->fronting_port);
			if (strcmp(k, key) != 0)
				continue;
			SS.ls[i].sni_shape[n] = *sh;
			SS.ls[i].sni_have[n] = 1;
			log_debug("listener %s answers %s like %s", l->name,
			    sn->name, key);
		}
		config_fronting_key(l, k, sizeof(k));
		if (strcmp(k, key) != 0)
			continue;
		SS.ls[i].shape = *sh;
		SS.ls[i].have_shape = 1;
		log_debug("listener %s answers like %s: flight %u bytes",
		    l->name, key, sh->flight);
	}
}

int16_t
session_pool_dc(int16_t dc)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int used_default = 1;

	if (dc_lookup(SS.dcs, dc, 0, &ss, &len, &used_default) == -1 ||
	    used_default)
		return (int16_t)W.cfg->default_dc;
	return dc;
}

static const struct listener_secrets *
secrets_of(const struct config_listener *l)
{
	return &SS.ls[l - W.cfg->listeners];
}

/* ------------------------------------------------------------ life */

/* A cheap clock for activity stamps (vDSO, no syscall). */
uint64_t
coarse_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
session_touch(struct session *s)
{
	s->last_active_ms = coarse_now_ms();
}

static void
timer_set(struct session *s, int seconds)
{
	struct timeval tv = { seconds, 0 };
	evtimer_add(&s->timer, &tv);
}

static void
side_close(struct side *sd)
{
	if (sd->fd == -1)
		return;
	event_del(&sd->rev);
	event_del(&sd->wev);
	close(sd->fd);
	sd->fd = -1;
	sd->reading = sd->writing = 0;
	/* Its queue goes with the session, in session_free(). */
}

/* ------------------------------------------------------------ handshake memory */

/*
 * Sessions that have not passed the handshake are kept oldest first with
 * what they cost (the session and its handshake buffer). When this
 * worker's share of limits.handshake_memory is exceeded the oldest go
 * first: a real client passes the handshake in one round trip, so those
 * that linger are the ones that hold memory on purpose.
 */
static size_t
hs_charge(const struct session *s)
{
	return sizeof(*s) + s->hs_cap;
}

/* What the handshake queue holds, here and in the shared gauges. */
static void
hs_bytes_add(size_t add, size_t sub)
{
	SS.hs_bytes = SS.hs_bytes + add - sub;
	shm_add(W.metrics, M_HANDSHAKE_BYTES, add);
	shm_sub(W.metrics, M_HANDSHAKE_BYTES, sub);
}

static void
hs_dequeue(struct session *s)
{
	if (!s->in_hs_queue)
		return;
	TAILQ_REMOVE(&SS.hs, s, hs_entry);
	hs_bytes_add(0, hs_charge(s));
	shm_sub(W.metrics, M_HANDSHAKES, 1);
	s->in_hs_queue = 0;
}

static void
hs_enforce(void)
{
	static uint64_t logged_ms;
	struct session *s;

	if (SS.hs_budget == 0)
		return;
	while (
	    SS.hs_bytes > SS.hs_budget && (s = TAILQ_FIRST(&SS.hs)) != NULL) {
		uint64_t now = coarse_now_ms();
		if (now - logged_ms >= 1000) {
			logged_ms = now;
			log_notice("limits.handshake_memory reached (%zu bytes "
			           "in handshakes): closing the oldest",
			    SS.hs_bytes);
		}
		shm_add(W.metrics, M_HANDSHAKE_EVICTED, 1);
		session_close(s, "handshake memory full");
	}
}

/* Resize the handshake buffer, keeping the accounting right. */
static int
hs_realloc(struct session *s, size_t cap)
{
	uint8_t *p = realloc(s->hs, cap);

	if (p == NULL && cap != 0)
		return -1;
	if (s->in_hs_queue)
		hs_bytes_add(cap, s->hs_cap);
	s->hs = p;
	s->hs_cap = cap;
	return 0;
}

static void
hs_forget(struct session *s)
{
	free(s->hs);
	if (s->in_hs_queue)
		hs_bytes_add(0, s->hs_cap);
	s->hs = NULL;
	s->hs_len = s->hs_cap = 0;
}

/* ------------------------------------------------------------ life */

void
session_handshake_done(struct session *s)
{
	hs_forget(s);
	hs_dequeue(s);
}

void
session_close(struct session *s, const char *why)
{
	char a[ADDR_STRLEN];

	if (s->closed)
		return;
	s->closed = 1;
	log_debug("%s: closed: %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), why);
	front_session_closed(s);
	limits_release(s);
	if (s->mode == RELAY_MIDDLE)
		middle_session_closed(s);
	hs_dequeue(s);
	evtimer_del(&s->timer);
	if (s->failed && s->l->rst_on_failed && s->c.fd != -1) {
		/* A reset, not a FIN (listener rst_on_failed). */
		struct linger lg = { 1, 0 };
		setsockopt(s->c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	side_close(&s->c);
	side_close(&s->s);
	if (s->counted_dc)
		shm_sub(W.metrics, M_CURRENT_DC, 1);
	s->counted_dc = 0;
	TAILQ_REMOVE(&SS.live, s, entry);
	TAILQ_INSERT_TAIL(&SS.reap, s, entry);
	if (!evtimer_pending(&SS.reaper, NULL))
		event_active(&SS.reaper, EV_TIMEOUT, 1);
	worker_session_closed(s->l);
}

/* The only place a session's memory goes (see the top of this file). */
static void
session_free(struct session *s)
{
	crypto_stream_free(s->c_dec);
	crypto_stream_free(s->s_enc);
	crypto_stream_free(s->c_enc);
	free(s->hs);
	free(s->inbuf);
	free(s->c.out.buf);
	free(s->s.out.buf);
	explicit_bzero(s->p2c_key, sizeof(s->p2c_key));
	explicit_bzero(s->c_dec_key, sizeof(s->c_dec_key));
	explicit_bzero(s->s_enc_key, sizeof(s->s_enc_key));
	explicit_bzero(s->c_enc_key, sizeof(s->c_enc_key));
	explicit_bzero(s->p2c_iv, sizeof(s->p2c_iv));
	free(s);
}

void
session_census(char *buf, size_t len)
{
	size_t hs = 0, conn = 0, held = 0, kept = 0, relay = 0;
	struct session *s;

	TAILQ_FOREACH(s, &SS.live, entry)
	{
		if (s->kept)
			kept++;
		else if (s->state == SS_HANDSHAKE || s->state == SS_TLS_INNER ||
		    s->state == SS_PROXY)
			hs++;
		else if (s->state == SS_CONNECTING || s->state == SS_RESOLVING)
			conn++;
		else if (s->state == SS_HOLD)
			held++;
		else
			relay++;
	}
	snprintf(buf, len,
	    "%zu in their handshake, %zu connecting, %zu bad clients held, "
	    "%zu the new generation could not take, %zu relaying",
	    hs, conn, held, kept, relay);
}

void
session_apply_tables(struct tables *t)
{
	struct config *cfg = W.cfg;
	char a[ADDR_STRLEN];
	size_t closed = 0;

	log_set_level(t->log_level);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		struct tables_listener *tl = tables_find(t, l->name);
		struct session *s, *next;

		if (tl == NULL)
			continue; /* not ours: an older generation's config */
		/* Sessions follow their user by name; a user that is gone
		 * or has a new secret loses its sessions. */
		struct keyidx names;
		if (keyidx_init(&names, tl->nusers, tl->users,
		        sizeof(*tl->users), offsetof(struct config_user, name),
		        0) == -1)
			fatal("keyidx_init");
		for (size_t n = 0; n < tl->nusers; n++)
			(void)keyidx_add(&names, n);
		for (s = TAILQ_FIRST(&SS.live); s; s = next) {
			next = TAILQ_NEXT(s, entry);
			if (s->l != l || s->user < 0 || s->closed)
				continue;
			const struct config_user *u = &l->users[s->user];
			int k = (int)keyidx_find(&names, u->name);
			if (k >= 0 &&
			    memcmp(tl->users[k].secret, u->secret,
			        CONFIG_SECRET_LEN) == 0) {
				s->user = k;
				continue;
			}
			log_info("%s: closed: user %s %s by reload",
			    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
			    u->name,
			    k == -1 ? "removed" : "given a new secret");
			closed++;
			session_close(s, "user removed by reload");
		}
		keyidx_free(&names);
		tables_listener_take(l, tl);
		snprintf(
		    l->tls_domain, sizeof(l->tls_domain), "%s", tl->tls_domain);
		if (strcmp(l->fronting_host, tl->fronting_host) != 0 ||
		    l->fronting_port != tl->fronting_port) {
			snprintf(l->fronting_host, sizeof(l->fronting_host),
			    "%s", tl->fronting_host);
			l->fronting_port = tl->fronting_port;
			front_listener_changed(l);
			/* The new site's shape comes from the dcpool. */
			SS.ls[i].have_shape = 0;
		}
		secrets_rebuild(i);
	}
	log_info("new tables applied in place; %zu sessions closed", closed);
}

struct session_list *
session_live_list(void)
{
	return &SS.live;
}

struct session *
session_adopt(const struct config_listener *l, int cfd, int bfd,
    const struct sockaddr *peer)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		close(cfd);
		return NULL;
	}
	s->l = l;
	s->state = SS_RELAY;
	s->c.fd = cfd;
	s->s.fd = bfd;
	s->user = -1;
	memcpy(&s->peer, peer, sizeof(s->peer));
	s->c.owner = s->s.owner = s;
	/* relay_start() assigns the sockets' events; until then they are
	 * zeroed, which event_del() takes. */
	evtimer_assign(&s->timer, W.base, session_timer_cb, s);
	TAILQ_INSERT_TAIL(&SS.live, s, entry);
	worker_session_opened(l);
	return s;
}

void
session_close_all(const char *why)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&SS.live)) != NULL)
		session_close(s, why);
}

void
session_accept(int fd, const struct sockaddr *peer, socklen_t len,
    const struct config_listener *l)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		close(fd);
		return;
	}
	/* TCP_NODELAY comes from the listening socket (Linux inherits it). */
	s->l = l;
	s->state = l->proxy_protocol ? SS_PROXY : SS_HANDSHAKE;
	s->c.fd = fd;
	s->s.fd = -1;
	s->user = -1;
	s->sni = -1;
	memcpy(&s->peer, peer, len < sizeof(s->peer) ? len : sizeof(s->peer));
	s->c.owner = s->s.owner = s;
	event_assign(
	    &s->c.rev, W.base, fd, EV_READ | EV_PERSIST, hs_read_cb, s);
	event_assign(&s->c.wev, W.base, fd, EV_WRITE | EV_PERSIST,
	    relay_write_cb, &s->c);
	evtimer_assign(&s->timer, W.base, session_timer_cb, s);
	event_add(&s->c.rev, NULL);
	s->c.reading = 1;
	timer_set(s, W.cfg->handshake_timeout);
	TAILQ_INSERT_TAIL(&SS.live, s, entry);
	TAILQ_INSERT_TAIL(&SS.hs, s, hs_entry);
	s->in_hs_queue = 1;
	hs_bytes_add(hs_charge(s), 0);
	shm_add(W.metrics, M_HANDSHAKES, 1);
	worker_session_opened(l);
	hs_enforce();
	/* Only a trusted balancer may say who the client is. */
	if (!s->closed && l->proxy_protocol &&
	    !cidr_match(l->proxy_trusted, l->nproxy_trusted, peer)) {
		char a[ADDR_STRLEN];

		log_info("%s: not in proxy_protocol_trusted of %s: closed",
		    addr_str(peer, a, sizeof(a)), l->name);
		shm_add(W.metrics, M_HANDSHAKE_BAD, 1);
		shm_add(W.metrics, M_HS_PROXY, 1);
		session_close(s, "untrusted PROXY source");
	}
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	if (s->hello_wait) {
		hello_send(s, s->hs, s->hs_len);
		return;
	}
	if (s->state == SS_RELAY) {
		uint64_t idle = (uint64_t)W.cfg->idle_timeout * 1000;
		uint64_t now = coarse_now_ms();
		if (now - s->last_active_ms >= idle) {
			session_close(s, "idle timeout");
			return;
		}
		uint64_t left = idle - (now - s->last_active_ms);
		struct timeval tv = { left / 1000, (left % 1000) * 1000 };
		evtimer_add(&s->timer, &tv);
		return;
	}
	if (s->state == SS_CONNECTING && s->s.fd != -1) {
		struct sockaddr_storage me = { .ss_family = AF_UNSPEC };
		socklen_t ml = sizeof(me);

		if (getsockname(s->s.fd, (struct sockaddr *)&me, &ml) == 0 &&
		    direct_other_family(s, me.ss_family, "timed out"))
			return;
	}
	if (s->state == SS_HOLD || s->state == SS_HANDSHAKE ||
	    s->state == SS_TLS_INNER || s->state == SS_PROXY)
		shm_add(W.metrics, M_HANDSHAKE_TIMEOUT, 1);
	session_close(s,
	    s->state == SS_CONNECTING ? "connect timeout"
	                              : "handshake timeout");
}

/* ------------------------------------------------------------ bad clients */

/*
 * A client that failed the handshake. On a fake-TLS port it is fronted
 * (while nothing of ours has been sent), elsewhere held open and silent
 * until the handshake timeout, so that it learns nothing. May close it.
 */
static void
session_bad(struct session *s, const char *why, enum shm_counter reason)
{
	char a[ADDR_STRLEN];
	unsigned p = s->l->protocols;

	/* A replay is counted apart (M_REPLAYS), the others as bad too;
	 * M_COUNTER_MAX: the reason was counted already (limits.c). */
	if (reason != M_REPLAYS)
		shm_add(W.metrics, M_HANDSHAKE_BAD, 1);
	if (reason < M_COUNTER_MAX)
		shm_add(W.metrics, reason, 1);
	log_debug("%s: bad client on %s: %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), s->l->name,
	    why);
	if ((p & PROTO_FAKE_TLS) && !s->hello_sent &&
	    (s->is_tls || p == PROTO_FAKE_TLS)) {
		front_session(s);
		return;
	}
	/* Held: it stays on the handshake queue, without a buffer. */
	s->failed = 1;
	s->state = SS_HOLD;
	hs_forget(s);
}

/* ------------------------------------------------------------ backend */

/*
 * A DC that failed on one family is tried once on the other (issue 13);
 * what is queued for it (our header and the client's first bytes) stays
 * queued. 1 if a new connect is under way (or the session closed).
 */
static int
direct_other_family(struct session *s, int family, const char *why)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char a[ADDR_STRLEN], b[ADDR_STRLEN];

	if (s->mode != RELAY_DIRECT || s->other_family ||
	    dc_lookup_other(SS.dcs, s->dc, family, &ss, &len) == -1)
		return 0;
	s->other_family = 1;
	log_info("%s: DC %d failed over IPv%d (%s); trying %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), s->dc,
	    family == AF_INET ? 4 : 6, why,
	    addr_str((struct sockaddr *)&ss, b, sizeof(b)));
	side_close(&s->s);
	if (s->counted_dc)
		shm_sub(W.metrics, M_CURRENT_DC, 1);
	s->counted_dc = 0;
	evtimer_del(&s->timer);
	session_backend_connect(s, (struct sockaddr *)&ss, len);
	return 1;
}

static void
connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	int err = 0;
	socklen_t el = sizeof(err);
	struct sockaddr_storage me = { .ss_family = AF_UNSPEC };
	socklen_t ml = sizeof(me);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1)
		err = errno;
	if (err) {
		char a[ADDR_STRLEN];
		log_info("%s: connect to %s failed: %s",
		    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
		    s->mode == RELAY_RAW ? "fronting site" : "DC",
		    strerror(err));
		if (s->mode == RELAY_DIRECT)
			shm_add(W.metrics, M_DC_CONNECT_FAIL, 1);
		if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0 &&
		    direct_other_family(s, me.ss_family, strerror(err)))
			return;
		session_close(s, "backend connect failed");
		return;
	}
	event_del(&s->s.wev);
	relay_start(s);
}

void
session_backend_connect(
    struct session *s, const struct sockaddr *sa, socklen_t len)
{
	int fd, one = 1;

	fd = socket(
	    sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket");
		session_close(s, "socket failed");
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->s.fd = fd;
	/* Both events exist before anything can close the session. */
	event_assign(
	    &s->s.rev, W.base, fd, EV_READ | EV_PERSIST, relay_read_cb, &s->s);
	event_assign(&s->s.wev, W.base, fd, EV_WRITE, connect_cb, s);
	s->state = SS_CONNECTING;
	if (s->mode == RELAY_DIRECT) {
		s->counted_dc = 1;
		shm_add(W.metrics, M_CURRENT_DC, 1);
	}
	if (connect(fd, sa, len) == -1 && errno != EINPROGRESS) {
		char a[ADDR_STRLEN];
		int e = errno;

		log_info("connect to %s: %s", addr_str(sa, a, sizeof(a)),
		    strerror(e));
		if (s->mode == RELAY_DIRECT)
			shm_add(W.metrics, M_DC_CONNECT_FAIL, 1);
		if (direct_other_family(s, sa->sa_family, strerror(e)))
			return;
		session_close(s, "connect failed");
		return;
	}
	event_add(&s->s.wev, NULL);
	timer_set(s, W.cfg->connect_timeout);
}

/*
 * Direct mode (spec B.1): our own obfuscated2 header towards the DC,
 * chosen so that the DC's bytes need no crypto on their way to the
 * client (B.1.4), then what the client sent after its header (plain:
 * already decrypted with the client's stream). May close the session.
 */
static void
direct_connect(struct session *s, const uint8_t p2c_key[32],
    const uint8_t p2c_iv[16], uint8_t *plain, size_t plainlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int used_default = 0;
	uint8_t hdr[O2_HEADER_LEN];
	struct o2_session up;

	if (dc_lookup(SS.dcs, s->dc, W.cfg->prefer_ipv6, &ss, &len,
	        &used_default) == -1) {
		session_close(s, "no address for the DC");
		return;
	}
	if (used_default && dc_table_warn_once(SS.dcs, s->dc))
		log_notice("unknown DC %d: using default DC %d", s->dc,
		    W.cfg->default_dc);
	if (o2_connect_passthrough(
	        hdr, s->tag, s->dc, p2c_key, p2c_iv, NULL, &up) == -1) {
		session_close(s, "crypto failure");
		return;
	}
	s->s_enc = up.enc;
	memcpy(s->s_enc_key, up.enc_key, sizeof(s->s_enc_key));
	up.enc = NULL;
	o2_session_free(&up);
	if (plainlen && crypto_stream_apply(s->s_enc, plain, plain, plainlen)) {
		session_close(s, "crypto failure");
		return;
	}
	if (side_queue(&s->s, hdr, sizeof(hdr)) == -1 ||
	    (plainlen && side_queue(&s->s, plain, plainlen) == -1)) {
		session_close(s, "out of memory");
		return;
	}
	shm_add(W.metrics, M_BYTES_C2S, plainlen);
	s->mode = RELAY_DIRECT;
	session_backend_connect(s, (struct sockaddr *)&ss, len);
}

/* May close the session. */
static void
direct_start(
    struct session *s, struct o2_session *o2, uint8_t *rest, size_t restlen)
{
	uint8_t key[32], iv[16];

	memcpy(key, o2->enc_key, sizeof(key));
	memcpy(iv, o2->enc_iv, sizeof(iv));
	s->c_dec = o2->dec;
	memcpy(s->c_dec_key, o2->dec_key, sizeof(s->c_dec_key));
	o2->dec = NULL;
	o2_session_free(o2);
	if (restlen && crypto_stream_apply(s->c_dec, rest, rest, restlen)) {
		session_close(s, "crypto failure");
		return;
	}
	/* What came with the header is payload too (the relay counts the
	 * rest). */
	shm_add(W.metrics, M_BYTES_C2S, restlen);
	shm_listener_stat_add(
	    W.metrics, s->l->shm_index, LS_BYTES_C2S, restlen);
	direct_connect(s, key, iv, rest, restlen);
	explicit_bzero(key, sizeof(key));
}

void
session_direct_fallback(struct session *s, uint8_t *plain, size_t len)
{
	char a[ADDR_STRLEN];

	log_info("%s: no middle-proxy link for DC %d; going direct",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), s->dc);
	middle_session_closed(s); /* leaves the middle-mode structures */
	crypto_stream_free(s->c_enc);
	s->c_enc = NULL;
	s->mode = RELAY_DIRECT;
	event_del(&s->c.rev);
	s->c.reading = 0;
	direct_connect(s, s->p2c_key, s->p2c_iv, plain, len);
}

/* ------------------------------------------------------------ handshake */

static int
tag_allowed(const struct session *s, uint32_t tag)
{
	if (s->is_tls)
		return tag == O2_TAG_PADDED; /* spec A.1.3 */
	if (tag == O2_TAG_PADDED)
		return (s->l->protocols & PROTO_SECURE) != 0;
	return (s->l->protocols & PROTO_CLASSIC) != 0;
}

/* The 64-byte obfuscated2 header is in s->hs (plain or from TLS). */
static void
o2_handshake(struct session *s)
{
	const struct listener_secrets *ls = secrets_of(s->l);
	struct o2_session o2 = { 0 }; /* (scan-build cannot follow the paths) */
	long hint[2];
	int idx;

	if (s->is_tls) {
		/* The key the ClientHello was signed with (per name). */
		const struct match_keys *k = tls_keys(s->l, ls, s->sni);
		idx = k != NULL &&
		        o2_accept(s->hs, (const void *)k->secret[s->user], 1,
		            &o2) == 0
		    ? s->user
		    : -1;
	} else {
		size_t nhint = hints_get(s, hint);
		idx = (int)match_o2(&ls->plain, s->hs, hint, nhint);
		hints_count(idx, hint, nhint);
		if (idx >= 0 &&
		    o2_accept(s->hs, (const void *)ls->plain.secret[idx], 1,
		        &o2) == -1)
			idx = -1;
		else if (idx >= 0)
			hints_put(s, idx);
	}
	if (idx == -1) {
		session_bad(s, "no secret matches the obfuscated2 header",
		    M_HS_BAD_SECRET);
		return;
	}
	if (!tag_allowed(s, o2.tag)) {
		o2_session_free(&o2);
		session_bad(
		    s, "transport not allowed on this listener", M_HS_PROTOCOL);
		return;
	}
	/* Replay (spec A.5): bytes 8..23 are random in every real header;
	 * inside fake TLS the client random was checked already. */
	if (!s->is_tls &&
	    replay_check_insert(W.a->replay, s->hs + 8, now_unix()) == 1) {
		o2_session_free(&o2);
		session_bad(s, "replayed obfuscated2 header", M_REPLAYS);
		return;
	}
	/* The user's limits (inside fake TLS: checked at the hello). */
	if (!s->is_tls && limits_admit_user(s, idx) != POLICY_OK) {
		o2_session_free(&o2);
		session_bad(s, "user over a limit", M_COUNTER_MAX);
		return;
	}
	s->user = idx;
	s->tag = o2.tag;
	s->dc = o2.dc;
	shm_add(W.metrics, M_HANDSHAKE_OK, 1);
	shm_listener_stat_add(W.metrics, s->l->shm_index,
	    s->is_tls                     ? LS_OK_FAKE_TLS
	        : o2.tag == O2_TAG_PADDED ? LS_OK_SECURE
	                                  : LS_OK_CLASSIC,
	    1);
	if (log_get_level() >= LOG_DEBUG) {
		char a[ADDR_STRLEN];
		log_debug("%s: %s client of %s/%s for DC %d",
		    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
		    s->is_tls                     ? "fake-TLS"
		        : o2.tag == O2_TAG_PADDED ? "secure"
		                                  : "classic",
		    s->l->name, s->l->users[idx].name, o2.dc);
	}
	side_want_read(s, &s->c, 0);
	/*
	 * Past the handshake: off the handshake queue. What came after the
	 * header (rest) lives in the handshake buffer until the backend took
	 * it, so the buffer goes only after that.
	 */
	hs_dequeue(s);
	uint8_t *rest = s->hs + O2_HEADER_LEN;
	size_t restlen = s->hs_len - O2_HEADER_LEN;
	/* What came with the header is the user's too (quota, rate). */
	if (restlen && s->urec && limits_charge(s, 1, restlen) == -1) {
		o2_session_free(&o2);
		return;
	}
	if (config_listener_backend(W.cfg, s->l) == BACKEND_MIDDLE)
		middle_start(s, &o2, rest, restlen);
	else
		direct_start(s, &o2, rest, restlen);
	hs_forget(s);
}

/*
 * Which of the listener's names the client asked for (any case, RFC
 * 6066): -1 tls_domain, k tls_domains[k], -2 another or none.
 */
static int
sni_index(const struct config_listener *l, const struct tls_hello *ch)
{
	if (!ch->has_sni)
		return -2;
	if (strcasecmp(ch->sni, l->tls_domain) == 0)
		return -1;
	for (size_t k = 0; k < l->nsnis; k++)
		if (strcasecmp(ch->sni, l->snis[k].name) == 0)
			return (int)k;
	return -2;
}

/* The answer's shape for the name the client asked for: its own site's
 * when it has one (the built-in shape until that site is learned). */
static const struct tls_shape *
shape_for(const struct listener_secrets *ls, const struct session *s)
{
	if (s->sni >= 0 && s->l->snis[s->sni].fronting_host[0] != '\0')
		return ls->sni_have[s->sni] ? &ls->sni_shape[s->sni]
		                            : &SS.static_shape;
	return ls->have_shape ? &ls->shape : &SS.static_shape;
}

/*
 * A prober that asked for another name (unknown_sni): "drop" closes,
 * "reject" answers as nginx's ssl_reject_handshake does (a fatal
 * unrecognized_name alert, these exact bytes) and closes. Not fronted.
 */
static void
sni_refuse(struct session *s, const struct tls_hello *ch)
{
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02,
		0x70 };
	char a[ADDR_STRLEN];

	shm_add(W.metrics, M_HANDSHAKE_BAD, 1);
	shm_add(W.metrics, M_HS_UNKNOWN_SNI, 1);
	log_debug("%s: unknown SNI \"%s\" on %s: %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
	    ch->has_sni ? ch->sni : "", s->l->name,
	    s->l->unknown_sni == SNI_REJECT ? "rejected" : "dropped");
	s->failed = 1;
	if (s->l->unknown_sni == SNI_REJECT)
		(void)!send(
		    s->c.fd, alert, sizeof(alert), MSG_NOSIGNAL | MSG_DONTWAIT);
	session_close(s, "unknown SNI");
}

/*
 * tls.hello_delay = "site": the answer leaves after about the site's own
 * answer time (0.75 to 1.25 of it, at most HELLO_DELAY_MAX_US), so that
 * it comes as soon as the site's would. 0 without a learned time.
 */
#define HELLO_DELAY_MAX_US 200000
static uint32_t
hello_delay_us(const struct tls_shape *sh)
{
	uint32_t r, base = sh->answer_us;

	if (!W.cfg->tls_hello_delay_site || base == 0)
		return 0;
	if (base > HELLO_DELAY_MAX_US)
		base = HELLO_DELAY_MAX_US;
	random_bytes(&r, sizeof(r));
	return base - base / 4 + (uint32_t)((uint64_t)r % (base / 2 + 1));
}

/*
 * Our answer to a good ClientHello, from the handshake buffer after a
 * hello_delay or straight. tls.split_hello: the ServerHello record in one
 * segment, CCS and the data record in the next (two sends; TCP_NODELAY
 * comes from the listening socket).
 */
static void
hello_send(struct session *s, const uint8_t *p, size_t n)
{
	size_t first = n;

	if (W.cfg->tls_split_hello && n > TLS_RECORD_HEADER_LEN) {
		size_t r = TLS_RECORD_HEADER_LEN + ((size_t)p[3] << 8 | p[4]);
		if (r < n)
			first = r;
	}
	if (side_send(s, &s->c, p, first) == -1 ||
	    (first < n && side_send(s, &s->c, p + first, n - first) == -1)) {
		session_close(s, "write failed");
		return;
	}
	s->hs_len = 0;
	if (s->hello_wait) {
		s->hello_wait = 0;
		side_want_read(s, &s->c, 1);
		timer_set(s, W.cfg->handshake_timeout);
	}
}

/* A complete ClientHello (joined form in rec) that took consumed bytes. */
static void
tls_handshake(
    struct session *s, const uint8_t *rec, size_t len, size_t consumed)
{
	const struct listener_secrets *ls = secrets_of(s->l);
	struct fp_print fp;
	struct tls_hello ch;
	uint32_t ts;
	int idx;

	s->is_tls = 1;
	if (consumed != s->hs_len) {
		/* A real client waits for our answer. */
		session_bad(s, "data after the ClientHello", M_HS_MALFORMED);
		return;
	}
	if (tls_hello_parse(rec, len, &ch) == -1) {
		session_bad(s, "malformed ClientHello", M_HS_MALFORMED);
		return;
	}
	int sni = sni_index(s->l, &ch);
	s->sni = (int8_t)(sni >= 0 ? sni : -1);
	/* Before the answer is built where rec is (session_scratch). */
	fp_compute(rec, len, &fp);
	if (log_get_level() >= LOG_DEBUG) {
		char a[ADDR_STRLEN];
		log_debug("%s: ClientHello on %s for \"%s\": JA3 %s, JA4 %s",
		    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
		    s->l->name, ch.sni, fp.ja3, fp.ja4);
	}
	const struct match_keys *keys = tls_keys(s->l, ls, sni);
	long hint[2];
	size_t nhint = hints_get(s, hint);
	idx = keys == NULL ? -1
	                   : (int)match_tls(keys, rec, len, hint, nhint, &ts);
	if (keys != NULL)
		hints_count(idx, hint, nhint);
	if (idx == -1) {
		if (sni == -2 && s->l->unknown_sni != SNI_FRONT) {
			fp_count(&fp, FP_REFUSED);
			sni_refuse(s, &ch);
			return;
		}
		fp_count(&fp, FP_FRONTED);
		session_bad(
		    s, "ClientHello HMAC matches no secret", M_HS_BAD_SECRET);
		return;
	}
	if (!tls_timestamp_ok(ts, now_unix(), W.cfg->tls_time_skew_past,
	        W.cfg->tls_time_skew_future)) {
		fp_count(&fp, FP_FRONTED);
		session_bad(s, "ClientHello timestamp out of the window",
		    M_HS_CLOCK_SKEW);
		return;
	}
	if (replay_check_insert(W.a->replay, ch.random, now_unix()) == 1) {
		fp_count(&fp, FP_FRONTED);
		session_bad(s, "replayed ClientHello", M_REPLAYS);
		return;
	}
	/* A user over a limit is fronted, as any bad client. */
	if (limits_admit_user(s, idx) != POLICY_OK) {
		fp_count(&fp, FP_FRONTED);
		session_bad(s, "user over a limit", M_COUNTER_MAX);
		return;
	}
	fp_count(&fp, FP_SERVED);
	const struct tls_shape *shape = shape_for(ls, s);
	size_t n = tls_shaped_hello_build(session_scratch, SESSION_SCRATCH_LEN,
	    &ch, keys->secret[idx], shape, tls_shape_app_len(shape));
	if (n == 0) {
		session_close(s, "ServerHello failed");
		return;
	}
	s->user = idx;
	hints_put(s, idx);
	s->hello_sent = 1;
	s->state = SS_TLS_INNER;
	tls_reader_init(&s->tls_in, TLS_READER_FROM_CLIENT);
	uint32_t delay = hello_delay_us(shape);
	if (delay == 0 || n > HS_MAX) {
		s->hs_len = 0;
		hello_send(s, session_scratch, n);
		return;
	}
	/* The answer waits in the handshake buffer, the client unread. */
	if (hs_grow(s, n) == -1)
		return;
	memcpy(s->hs, session_scratch, n);
	s->hs_len = n;
	s->hello_wait = 1;
	side_want_read(s, &s->c, 0);
	struct timeval tv = { delay / 1000000, delay % 1000000 };
	evtimer_add(&s->timer, &tv);
}

/*
 * proxy_protocol: the balancer's header first. The client's address from
 * it replaces the balancer's (for policies, limits, logs and the
 * fronting site); what follows is the client's handshake. A malformed
 * header closes the connection. 1 when the handshake may go on.
 */
static int
proxy_step(struct session *s)
{
	struct proxy_hdr h;
	char a[ADDR_STRLEN], b[ADDR_STRLEN];
	int n = proxy_parse(s->hs, s->hs_len, s->l->proxy_protocol, &h);

	if (n == 0 && s->hs_len < PROXY_HDR_MAX)
		return 0;
	if (n <= 0) {
		log_info("%s: no valid PROXY header on %s: closed",
		    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
		    s->l->name);
		shm_add(W.metrics, M_HANDSHAKE_BAD, 1);
		shm_add(W.metrics, M_HS_PROXY, 1);
		session_close(s, "malformed PROXY header");
		return 0;
	}
	if (h.has_addr) {
		log_debug("%s: PROXY v%d header on %s: the client is %s",
		    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)),
		    h.version, s->l->name,
		    addr_str((struct sockaddr *)&h.src, b, sizeof(b)));
		memset(&s->peer, 0, sizeof(s->peer));
		memcpy(&s->peer, &h.src,
		    h.srclen < sizeof(s->peer) ? h.srclen : sizeof(s->peer));
	}
	s->hs_len -= (size_t)n;
	memmove(s->hs, s->hs + n, s->hs_len);
	s->state = SS_HANDSHAKE;
	return 1;
}

/* Decide, from what the client sent so far, what it is. */
static void
hs_process(struct session *s)
{
	unsigned p = s->l->protocols;

	if (s->state == SS_PROXY && !proxy_step(s))
		return;
	/* access.allow / access.deny, on the client's address (after a
	 * PROXY header): a refused client is a bad client, fronted on a
	 * fake-TLS port (its hello goes to the site), else held. */
	if (!s->access_checked && s->hs_len > 0) {
		s->access_checked = 1;
		if (config_access_denied(W.cfg, s->l, &s->peer.sa)) {
			if (s->hs[0] == 0x16)
				s->is_tls = 1;
			session_bad(s, "refused by access", M_HS_DENIED);
			return;
		}
		/* limits.per_ip / per_subnet: the same treatment */
		enum policy_verdict v = limits_admit_addr(s);
		if (v != POLICY_OK) {
			if (s->hs[0] == 0x16)
				s->is_tls = 1;
			session_bad(s, policy_reason_name(v), M_COUNTER_MAX);
			return;
		}
	}

	if (s->state == SS_TLS_INNER) {
		if (s->hs_len >= O2_HEADER_LEN)
			o2_handshake(s);
		return;
	}
	if (s->hs_len == 0)
		return;
	if ((p & PROTO_FAKE_TLS) && s->hs[0] == 0x16) {
		size_t jlen, consumed;
		int r = tls_hello_assemble(s->hs, s->hs_len, session_scratch,
		    SESSION_SCRATCH_LEN, &jlen, &consumed);
		switch (r) {
		case TLS_HELLO_OK:
			tls_handshake(s, session_scratch, jlen, consumed);
			return;
		case TLS_HELLO_NEED_MORE:
			if (s->hs_len >= HS_MAX)
				session_bad(
				    s, "ClientHello too long", M_HS_MALFORMED);
			return;
		case TLS_HELLO_BAD:
			s->is_tls = 1;
			session_bad(
			    s, "malformed TLS handshake", M_HS_MALFORMED);
			return;
		default: /* not TLS after all: obfuscated2 */
			break;
		}
	}
	if (!(p & (PROTO_CLASSIC | PROTO_SECURE))) {
		session_bad(s, "not a TLS client on a fake-TLS-only listener",
		    M_HS_PROTOCOL);
		return;
	}
	if (s->hs_len >= O2_HEADER_LEN)
		o2_handshake(s);
}

/* Grows the handshake buffer; may close the session (memory bound). */
static int
hs_grow(struct session *s, size_t want)
{
	if (want <= s->hs_cap)
		return 0;
	size_t cap = s->hs_cap ? s->hs_cap : HS_INITIAL;
	while (cap < want)
		cap *= 2;
	if (cap > HS_MAX)
		cap = HS_MAX;
	if (hs_realloc(s, cap) == -1) {
		session_close(s, "out of memory");
		return -1;
	}
	hs_enforce();
	return s->closed ? -1 : 0;
}

static void
hs_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	ssize_t n;

	if (s->state == SS_HOLD) {
		/* Read and forget: a held client costs no memory. */
		n = read(fd, session_scratch, SESSION_SCRATCH_LEN);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			session_close(s, "bad client left");
		return;
	}
	if (s->state == SS_TLS_INNER) {
		/* Records: read raw, keep the payload (never more than
		 * the handshake buffer holds; the rest waits in the socket
		 * for the relay, which continues the same record reader). */
		size_t room = HS_MAX - s->hs_len;
		n = read(fd, session_scratch,
		    room < SESSION_SCRATCH_LEN ? room : SESSION_SCRATCH_LEN);
		if (n > 0) {
			ssize_t m =
			    tls_reader_feed(&s->tls_in, session_scratch, n);
			if (m < 0) {
				session_bad(
				    s, "bad TLS record", M_HS_MALFORMED);
				return;
			}
			if (s->hs_len + m > HS_MAX) {
				session_bad(s, "too much data", M_HS_MALFORMED);
				return;
			}
			if (hs_grow(s, s->hs_len + m) == -1)
				return;
			memcpy(s->hs + s->hs_len, session_scratch, m);
			s->hs_len += m;
		}
	} else {
		if (s->hs_len >= HS_MAX) {
			session_bad(s, "handshake too long", M_HS_MALFORMED);
			return;
		}
		if (hs_grow(s, s->hs_len + 512) == -1)
			return;
		n = read(fd, s->hs + s->hs_len, s->hs_cap - s->hs_len);
		if (n > 0)
			s->hs_len += n;
	}
	if (n == 0) {
		session_close(s, "client left during the handshake");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			session_close(s, "read error during the handshake");
		return;
	}
	hs_process(s);
}
