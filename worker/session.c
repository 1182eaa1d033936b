/*
 * Client sessions: the handshake (fake TLS, obfuscated2), the decision
 * what to do with a client (serve, front, hold), and the backend set-up.
 * Moving bytes once both sides are connected is relay.c's job.
 *
 * Spec: A.2 (obfuscated2), A.4 (fake TLS), A.4.8 (fronting), A.5
 * (replay), B.1 (direct mode, passthrough).
 */
#include "autoconf.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/util.h>

#include "dc.h"
#include "log.h"
#include "o2.h"
#include "replay.h"
#include "session.h"
#include "session_int.h"
#include "shm.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

/* The most a client may send before we decide what it is. */
#define HS_MAX     (TLS_HELLO_WIRE_MAX + O2_HEADER_LEN)
#define HS_INITIAL 1024

uint8_t *session_scratch;

/* Per listener: its users' secrets as one array, for the codecs. */
struct listener_secrets {
	uint8_t (*secrets)[16];
	size_t n;
};

static struct {
	struct session *list;
	struct listener_secrets *ls; /* parallel to cfg->listeners */
	struct dc_table *dcs;
	struct sockaddr_storage *local; /* this host's addresses */
	size_t nlocal;
} SS;

static void hs_read_cb(evutil_socket_t, short, void *);
static void session_timer_cb(evutil_socket_t, short, void *);

/* ------------------------------------------------------------ setup */

static void
collect_local_addresses(void)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0;

	if (getifaddrs(&ifa) == -1)
		return;
	for (i = ifa; i; i = i->ifa_next)
		n++;
	SS.local = calloc(n + 1, sizeof(*SS.local));
	for (i = ifa; i && SS.local; i = i->ifa_next) {
		if (i->ifa_addr == NULL ||
		    (i->ifa_addr->sa_family != AF_INET &&
		        i->ifa_addr->sa_family != AF_INET6))
			continue;
		memcpy(&SS.local[SS.nlocal++], i->ifa_addr,
		    i->ifa_addr->sa_family == AF_INET
		        ? sizeof(struct sockaddr_in)
		        : sizeof(struct sockaddr_in6));
	}
	freeifaddrs(ifa);
}

void
session_init(void)
{
	struct config *cfg = W.cfg;

	session_scratch = malloc(SESSION_SCRATCH_LEN);
	SS.ls = calloc(cfg->nlisteners + 1, sizeof(*SS.ls));
	if (session_scratch == NULL || SS.ls == NULL)
		fatal("malloc");
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		SS.ls[i].secrets = calloc(l->nusers + 1, 16);
		if (SS.ls[i].secrets == NULL)
			fatal("calloc");
		for (size_t u = 0; u < l->nusers; u++)
			memcpy(SS.ls[i].secrets[u], l->users[u].secret, 16);
		SS.ls[i].n = l->nusers;
	}
	SS.dcs = dc_table_new(cfg->dcs, cfg->ndcs, cfg->default_dc);
	if (SS.dcs == NULL)
		fatalx("invalid DC table (telegram.dc, telegram.default_dc)");
	collect_local_addresses();
	middle_init();
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
	free(sd->out.buf);
	sd->out.buf = NULL;
	sd->out.len = sd->out.off = 0;
}

void
session_close(struct session *s, const char *why)
{
	char a[ADDR_STRLEN];

	log_debug("%s: closed: %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), why);
	if (s->dns_req)
		evdns_getaddrinfo_cancel(s->dns_req);
	if (s->mode == RELAY_MIDDLE)
		middle_session_closed(s);
	evtimer_del(&s->timer);
	side_close(&s->c);
	side_close(&s->s);
	if (s->counted_dc)
		shm_sub(W.metrics, M_CURRENT_DC, 1);
	crypto_stream_free(s->c_dec);
	crypto_stream_free(s->s_enc);
	free(s->hs);
	if (s->prev)
		s->prev->next = s->next;
	else
		SS.list = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
	worker_session_closed();
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
	s->state = SS_HANDSHAKE;
	s->c.fd = fd;
	s->s.fd = -1;
	s->user = -1;
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
	s->next = SS.list;
	if (SS.list)
		SS.list->prev = s;
	SS.list = s;
	worker_session_opened();
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

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
	if (s->state == SS_HOLD || s->state == SS_HANDSHAKE ||
	    s->state == SS_TLS_INNER)
		shm_add(W.metrics, M_HANDSHAKE_TIMEOUT, 1);
	session_close(s,
	    s->state == SS_CONNECTING ? "connect timeout"
	                              : "handshake timeout");
}

/* ------------------------------------------------------------ bad clients */

static int
is_own_address(const struct sockaddr_storage *ss)
{
	uint16_t port;
	const void *ip;
	size_t iplen;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		port = a->sin_port;
		ip = &a->sin_addr;
		iplen = 4;
	} else {
		const struct sockaddr_in6 *a = (const void *)ss;
		port = a->sin6_port;
		ip = &a->sin6_addr;
		iplen = 16;
	}
	for (size_t i = 0; i < W.cfg->nlisteners; i++) {
		const struct sockaddr_storage *la = &W.cfg->listeners[i].addr;
		if (la->ss_family != ss->ss_family)
			continue;
		const void *lip = la->ss_family == AF_INET
		    ? (const void *)&((const struct sockaddr_in *)la)->sin_addr
		    : (const void *)&((const struct sockaddr_in6 *)la)
		          ->sin6_addr;
		uint16_t lport = la->ss_family == AF_INET
		    ? ((const struct sockaddr_in *)la)->sin_port
		    : ((const struct sockaddr_in6 *)la)->sin6_port;
		if (lport != port)
			continue;
		if (memcmp(lip, ip, iplen) == 0)
			return 1;
		/* A wildcard listener is every local address. */
		static const uint8_t zero[16];
		if (memcmp(lip, zero, iplen) != 0)
			continue;
		for (size_t k = 0; k < SS.nlocal; k++) {
			const struct sockaddr_storage *x = &SS.local[k];
			if (x->ss_family != ss->ss_family)
				continue;
			const void *xip = x->ss_family == AF_INET
			    ? (const void *)&((const struct sockaddr_in *)x)
			          ->sin_addr
			    : (const void *)&((const struct sockaddr_in6 *)x)
			          ->sin6_addr;
			if (memcmp(xip, ip, iplen) == 0)
				return 1;
		}
		if (ss->ss_family == AF_INET && ((const uint8_t *)ip)[0] == 127)
			return 1;
	}
	return 0;
}

static int
backend_connect(struct session *, const struct sockaddr *, socklen_t);

static void
front_connect(struct session *s, struct sockaddr_storage *ss, socklen_t len)
{
	char a[ADDR_STRLEN];

	if (is_own_address(ss)) {
		log_warnx("fronting target %s of listener %s is mtprotod "
		          "itself; closing instead of looping",
		    addr_str((struct sockaddr *)ss, a, sizeof(a)), s->l->name);
		session_close(s, "fronting loop");
		return;
	}
	/* Everything the client sent goes first, untouched. */
	if (s->hs_len && side_queue(&s->s, s->hs, s->hs_len) == -1) {
		session_close(s, "out of memory");
		return;
	}
	free(s->hs);
	s->hs = NULL;
	s->hs_len = s->hs_cap = 0;
	s->mode = RELAY_RAW;
	shm_add(W.metrics, M_FRONTED, 1);
	backend_connect(s, (struct sockaddr *)ss, len);
}

static void
front_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct session *s = arg;

	s->dns_req = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return; /* the session is gone */
	if (err || res == NULL) {
		log_warnx("cannot resolve fronting host %s: %s",
		    s->l->fronting_host, evutil_gai_strerror(err));
		session_close(s, "fronting host unresolved");
		return;
	}
	struct sockaddr_storage ss;
	socklen_t len = res->ai_addrlen;
	memcpy(&ss, res->ai_addr, len);
	evutil_freeaddrinfo(res);
	front_connect(s, &ss, len);
}

/*
 * Relay the client to the real site of the listener, so that a prober
 * sees that site (spec A.4.8).
 */
static void
front(struct session *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char port[8];

	side_want_read(s, &s->c, 0);
	if (addr_from_ip_port(
	        s->l->fronting_host, s->l->fronting_port, &ss, &len) == 0) {
		front_connect(s, &ss, len);
		return;
	}
	if (W.dns == NULL) {
		session_close(s, "no resolver for the fronting host");
		return;
	}
	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_protocol = IPPROTO_TCP };
	snprintf(port, sizeof(port), "%u", s->l->fronting_port);
	s->state = SS_RESOLVING;
	/* The callback may run at once (cached or numeric answers). */
	struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(
	    W.dns, s->l->fronting_host, port, &hints, front_resolved, s);
	if (s->state == SS_RESOLVING)
		s->dns_req = req;
}

/*
 * A client that failed the handshake. On a fake-TLS port it is fronted
 * (while nothing of ours has been sent), elsewhere held open and silent
 * until the handshake timeout, so that it learns nothing.
 */
static void
session_bad(struct session *s, const char *why, int replay)
{
	char a[ADDR_STRLEN];
	unsigned p = s->l->protocols;

	shm_add(W.metrics, replay ? M_REPLAYS : M_HANDSHAKE_BAD, 1);
	log_debug("%s: bad client on %s: %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), s->l->name,
	    why);
	if ((p & PROTO_FAKE_TLS) && !s->hello_sent &&
	    (s->is_tls || p == PROTO_FAKE_TLS)) {
		front(s);
		return;
	}
	s->state = SS_HOLD;
	free(s->hs);
	s->hs = NULL;
	s->hs_len = s->hs_cap = 0;
}

/* ------------------------------------------------------------ backend */

static void
connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	int err = 0;
	socklen_t el = sizeof(err);

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
		session_close(s, "backend connect failed");
		return;
	}
	event_del(&s->s.wev);
	relay_start(s);
}

/* Returns -1 when the session was closed. */
static int
backend_connect(struct session *s, const struct sockaddr *sa, socklen_t len)
{
	int fd, one = 1;

	fd = socket(
	    sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket");
		session_close(s, "socket failed");
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->s.fd = fd;
	event_assign(
	    &s->s.rev, W.base, fd, EV_READ | EV_PERSIST, relay_read_cb, &s->s);
	s->state = SS_CONNECTING;
	if (s->mode == RELAY_DIRECT) {
		s->counted_dc = 1;
		shm_add(W.metrics, M_CURRENT_DC, 1);
	}
	if (connect(fd, sa, len) == -1 && errno != EINPROGRESS) {
		char a[ADDR_STRLEN];
		log_info("connect to %s: %s", addr_str(sa, a, sizeof(a)),
		    strerror(errno));
		if (s->mode == RELAY_DIRECT)
			shm_add(W.metrics, M_DC_CONNECT_FAIL, 1);
		session_close(s, "connect failed");
		return -1;
	}
	event_assign(&s->s.wev, W.base, fd, EV_WRITE, connect_cb, s);
	event_add(&s->s.wev, NULL);
	timer_set(s, W.cfg->connect_timeout);
	return 0;
}

/*
 * Direct mode (spec B.1): our own obfuscated2 header towards the DC,
 * chosen so that the DC's bytes need no crypto on their way to the
 * client (B.1.4), then whatever the client sent after its header.
 */
/*
 * Direct mode (spec B.1): our own obfuscated2 header towards the DC,
 * chosen so that the DC's bytes need no crypto on their way to the
 * client (B.1.4), then what the client sent after its header (plain:
 * already decrypted with the client's stream). Returns -1 when the
 * session was closed.
 */
static int
direct_connect(struct session *s, const uint8_t p2c_key[32],
    const uint8_t p2c_iv[16], uint8_t *plain, size_t plainlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int used_default = 0;
	uint8_t hdr[O2_HEADER_LEN];
	struct o2_session up;

	if (dc_lookup(SS.dcs, s->dc, 0, &ss, &len, &used_default) == -1) {
		session_close(s, "no address for the DC");
		return -1;
	}
	if (used_default && dc_table_warn_once(SS.dcs, s->dc))
		log_notice("unknown DC %d: using default DC %d", s->dc,
		    W.cfg->default_dc);
	if (o2_connect_passthrough(
	        hdr, s->tag, s->dc, p2c_key, p2c_iv, NULL, &up) == -1) {
		session_close(s, "crypto failure");
		return -1;
	}
	s->s_enc = up.enc;
	up.enc = NULL;
	o2_session_free(&up);
	if (plainlen && crypto_stream_apply(s->s_enc, plain, plain, plainlen)) {
		session_close(s, "crypto failure");
		return -1;
	}
	if (side_queue(&s->s, hdr, sizeof(hdr)) == -1 ||
	    (plainlen && side_queue(&s->s, plain, plainlen) == -1)) {
		session_close(s, "out of memory");
		return -1;
	}
	shm_add(W.metrics, M_BYTES_C2S, plainlen);
	s->mode = RELAY_DIRECT;
	return backend_connect(s, (struct sockaddr *)&ss, len);
}

/* Returns -1 when the session was closed. */
static int
direct_start(
    struct session *s, struct o2_session *o2, uint8_t *rest, size_t restlen)
{
	uint8_t key[32], iv[16];

	memcpy(key, o2->enc_key, sizeof(key));
	memcpy(iv, o2->enc_iv, sizeof(iv));
	s->c_dec = o2->dec;
	o2->dec = NULL;
	o2_session_free(o2);
	if (restlen && crypto_stream_apply(s->c_dec, rest, rest, restlen)) {
		session_close(s, "crypto failure");
		return -1;
	}
	int r = direct_connect(s, key, iv, rest, restlen);
	explicit_bzero(key, sizeof(key));
	return r;
}

int
session_direct_fallback(struct session *s, uint8_t *plain, size_t len)
{
	char a[ADDR_STRLEN];

	log_info("%s: no middle-proxy link for DC %d; going direct",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), s->dc);
	middle_session_closed(s); /* leaves the middle-mode structures */
	s->mode = RELAY_DIRECT;
	event_del(&s->c.rev);
	s->c.reading = 0;
	return direct_connect(s, s->p2c_key, s->p2c_iv, plain, len);
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
	struct o2_session o2;
	int idx;

	if (s->is_tls)
		idx = o2_accept(s->hs, &ls->secrets[s->user], 1, &o2) == 0
		    ? s->user
		    : -1;
	else
		idx = o2_accept(s->hs, ls->secrets, ls->n, &o2);
	if (idx == -1) {
		session_bad(s, "no secret matches the obfuscated2 header", 0);
		return;
	}
	if (!tag_allowed(s, o2.tag)) {
		o2_session_free(&o2);
		session_bad(s, "transport not allowed on this listener", 0);
		return;
	}
	/* Replay (spec A.5): bytes 8..23 are random in every real header;
	 * inside fake TLS the client random was checked already. */
	if (!s->is_tls &&
	    replay_check_insert(W.a->replay, s->hs + 8, now_unix()) == 1) {
		o2_session_free(&o2);
		session_bad(s, "replayed obfuscated2 header", 1);
		return;
	}
	s->user = idx;
	s->tag = o2.tag;
	s->dc = o2.dc;
	shm_add(W.metrics, M_HANDSHAKE_OK, 1);
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
	if (config_listener_backend(W.cfg, s->l) == BACKEND_MIDDLE) {
		if (middle_start(s, &o2, s->hs + O2_HEADER_LEN,
		        s->hs_len - O2_HEADER_LEN) == -1)
			return; /* closed */
		free(s->hs);
		s->hs = NULL;
		s->hs_len = s->hs_cap = 0;
		return;
	}
	if (direct_start(
	        s, &o2, s->hs + O2_HEADER_LEN, s->hs_len - O2_HEADER_LEN) == -1)
		return; /* closed */
	free(s->hs);
	s->hs = NULL;
	s->hs_len = s->hs_cap = 0;
}

/* A complete ClientHello (joined form in rec) that took consumed bytes. */
static void
tls_handshake(
    struct session *s, const uint8_t *rec, size_t len, size_t consumed)
{
	const struct listener_secrets *ls = secrets_of(s->l);
	struct tls_hello ch;
	uint32_t ts;
	int idx;

	s->is_tls = 1;
	if (consumed != s->hs_len) {
		/* A real client waits for our answer. */
		session_bad(s, "data after the ClientHello", 0);
		return;
	}
	if (tls_hello_parse(rec, len, &ch) == -1) {
		session_bad(s, "malformed ClientHello", 0);
		return;
	}
	if ((idx = tls_hello_verify(rec, len, ls->secrets, ls->n, &ts)) == -1) {
		session_bad(s, "ClientHello HMAC matches no secret", 0);
		return;
	}
	if (!tls_timestamp_ok(ts, now_unix(), W.cfg->tls_time_skew_past,
	        W.cfg->tls_time_skew_future)) {
		session_bad(s, "ClientHello timestamp out of the window", 0);
		return;
	}
	if (replay_check_insert(W.a->replay, ch.random, now_unix()) == 1) {
		session_bad(s, "replayed ClientHello", 1);
		return;
	}
	size_t cert =
	    tls_cert_len_pick(W.cfg->tls_cert_len_min, W.cfg->tls_cert_len_max);
	size_t n = tls_server_hello_build(session_scratch, SESSION_SCRATCH_LEN,
	    &ch, ls->secrets[idx], NULL, NULL, cert, 0);
	if (n == 0) {
		session_close(s, "ServerHello failed");
		return;
	}
	s->user = idx;
	s->hello_sent = 1;
	s->state = SS_TLS_INNER;
	tls_reader_init(&s->tls_in, TLS_READER_FROM_CLIENT);
	s->hs_len = 0;
	if (side_send(s, &s->c, session_scratch, n) == -1)
		session_close(s, "write failed");
}

/* Decide, from what the client sent so far, what it is. */
static void
hs_process(struct session *s)
{
	unsigned p = s->l->protocols;

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
				session_bad(s, "ClientHello too long", 0);
			return;
		case TLS_HELLO_BAD:
			s->is_tls = 1;
			session_bad(s, "malformed TLS handshake", 0);
			return;
		default: /* not TLS after all: obfuscated2 */
			break;
		}
	}
	if (!(p & (PROTO_CLASSIC | PROTO_SECURE))) {
		session_bad(
		    s, "not a TLS client on a fake-TLS-only listener", 0);
		return;
	}
	if (s->hs_len >= O2_HEADER_LEN)
		o2_handshake(s);
}

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
	uint8_t *p = realloc(s->hs, cap);
	if (p == NULL)
		return -1;
	s->hs = p;
	s->hs_cap = cap;
	return 0;
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
				session_bad(s, "bad TLS record", 0);
				return;
			}
			if (hs_grow(s, s->hs_len + m) == -1 ||
			    s->hs_len + m > HS_MAX) {
				session_bad(s, "too much data", 0);
				return;
			}
			memcpy(s->hs + s->hs_len, session_scratch, m);
			s->hs_len += m;
		}
	} else {
		if (s->hs_len >= HS_MAX) {
			session_bad(s, "handshake too long", 0);
			return;
		}
		if (hs_grow(s, s->hs_len + 512) == -1) {
			session_close(s, "out of memory");
			return;
		}
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
