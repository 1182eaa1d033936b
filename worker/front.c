/*
 * Fronting (spec A.4.8): a client that fails the handshake on a fake-TLS
 * port is relayed untouched to its listener's real site, so that a
 * prober sees that site.
 *
 * Each listener's fronting target is resolved once per worker, at start,
 * and kept for the TTL of the answer (bounded below and above); it is
 * refreshed in the background when that runs out, and the old address
 * stays in use until a new one comes. So a probe costs no DNS lookup and
 * shows no lookup delay. A target owns its DNS request until the
 * request's callback has run; sessions only wait on the target (while it
 * has never had an address) and leave its wait list when they close.
 */
#include "autoconf.h"

#include <errno.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>

#include "log.h"
#include "proxyproto.h"
#include "session_int.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

#define TTL_MIN_S   30 /* even if the answer says less */
#define TTL_MAX_S   3600
#define RETRY_S     30 /* after a failed lookup */
#define LOOP_LOG_MS 60000

struct front_target {
	const struct config_listener *l;
	int sni; /* -1: the listener's fronting, else tls_domains[sni]'s */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned have_addr : 1;
	unsigned numeric : 1; /* an address literal: never resolved */
	unsigned resolving : 1; /* a request is in flight (owned) */
	unsigned stale : 1; /* its answer is for the old host: ask again */
	struct session_list waiting; /* sessions waiting for an address */
	struct event refresh; /* next lookup */
	uint64_t loop_logged_ms;
};

static struct {
	struct front_target *t; /* parallel to cfg->listeners */
	struct front_target **sni; /* per listener, per tls_domains entry */
	struct sockaddr_storage *local; /* this host's addresses */
	size_t nlocal;
} F;

static void resolve(struct front_target *);

/* Where a target points: its tls_domains entry's site, or the
 * listener's (which a reload in place may change). */
static const char *
target_host(const struct front_target *t)
{
	return t->sni >= 0 ? t->l->snis[t->sni].fronting_host
	                   : t->l->fronting_host;
}

static uint16_t
target_port(const struct front_target *t)
{
	return t->sni >= 0 ? t->l->snis[t->sni].fronting_port
	                   : t->l->fronting_port;
}

/* ------------------------------------------------------------ loops */

static void
collect_local_addresses(void)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0;

	if (getifaddrs(&ifa) == -1)
		return;
	for (i = ifa; i; i = i->ifa_next)
		n++;
	F.local = calloc(n + 1, sizeof(*F.local));
	for (i = ifa; i && F.local; i = i->ifa_next) {
		if (i->ifa_addr == NULL ||
		    (i->ifa_addr->sa_family != AF_INET &&
		        i->ifa_addr->sa_family != AF_INET6))
			continue;
		memcpy(&F.local[F.nlocal++], i->ifa_addr,
		    i->ifa_addr->sa_family == AF_INET
		        ? sizeof(struct sockaddr_in)
		        : sizeof(struct sockaddr_in6));
	}
	freeifaddrs(ifa);
}

static const void *
ip_of(const struct sockaddr_storage *ss, size_t *len, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		*len = 4;
		*port = a->sin_port;
		return &a->sin_addr;
	}
	const struct sockaddr_in6 *a = (const void *)ss;
	*len = 16;
	*port = a->sin6_port;
	return &a->sin6_addr;
}

/* Would connecting to ss reach one of our own listeners? */
static int
is_own_address(const struct sockaddr_storage *ss)
{
	static const uint8_t zero[16];
	size_t iplen, liplen, xiplen;
	uint16_t port, lport, xport;
	const void *ip = ip_of(ss, &iplen, &port);

	for (size_t i = 0; i < W.cfg->nlisteners; i++) {
		const struct sockaddr_storage *la = &W.cfg->listeners[i].addr;
		if (la->ss_family != ss->ss_family)
			continue;
		const void *lip = ip_of(la, &liplen, &lport);
		if (lport != port)
			continue;
		if (memcmp(lip, ip, iplen) == 0)
			return 1;
		/* A wildcard listener is every local address. */
		if (memcmp(lip, zero, iplen) != 0)
			continue;
		for (size_t k = 0; k < F.nlocal; k++) {
			const struct sockaddr_storage *x = &F.local[k];
			if (x->ss_family != ss->ss_family)
				continue;
			if (memcmp(ip_of(x, &xiplen, &xport), ip, iplen) == 0)
				return 1;
		}
		if (ss->ss_family == AF_INET && ((const uint8_t *)ip)[0] == 127)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ sessions */

static void
front_connect(struct session *s, struct front_target *t)
{
	char a[ADDR_STRLEN];

	if (is_own_address(&t->addr)) {
		uint64_t now = coarse_now_ms();
		if (now - t->loop_logged_ms >= LOOP_LOG_MS ||
		    t->loop_logged_ms == 0) {
			t->loop_logged_ms = now;
			log_warnx("fronting target %s of listener %s is "
			          "mtprotod itself; closing instead of looping",
			    addr_str((struct sockaddr *)&t->addr, a, sizeof(a)),
			    s->l->name);
		}
		session_close(s, "fronting loop");
		return;
	}
	/* fronting_proxy_protocol = "v2": the site learns who asked. */
	if (s->l->fronting_proxy_v2) {
		uint8_t hdr[PROXY_V2_MAX];
		struct sockaddr_storage me;
		socklen_t ml = sizeof(me);
		size_t n;

		if (getsockname(s->c.fd, (struct sockaddr *)&me, &ml) == -1)
			me.ss_family = AF_UNSPEC;
		n = proxy_v2_build(
		    hdr, sizeof(hdr), &s->peer.sa, (struct sockaddr *)&me);
		if (n == 0 || side_queue(&s->s, hdr, n) == -1) {
			session_close(s, "out of memory");
			return;
		}
	}
	/* Everything the client sent goes first, untouched. */
	if (s->hs_len && side_queue(&s->s, s->hs, s->hs_len) == -1) {
		session_close(s, "out of memory");
		return;
	}
	session_handshake_done(s);
	s->mode = RELAY_RAW;
	shm_add(W.metrics, M_FRONTED, 1);
	session_backend_connect(s, (struct sockaddr *)&t->addr, t->addrlen);
}

void
front_session(struct session *s)
{
	size_t i = (size_t)(s->l - W.cfg->listeners);
	struct front_target *t =
	    s->sni >= 0 && s->l->snis[s->sni].fronting_host[0] != '\0'
	    ? &F.sni[i][s->sni]
	    : &F.t[i];

	side_want_read(s, &s->c, 0);
	if (t->have_addr) {
		front_connect(s, t);
		return;
	}
	if (W.dns == NULL) {
		session_close(s, "no resolver for the fronting host");
		return;
	}
	/* Its handshake timer still runs: it waits that long at most. */
	s->state = SS_RESOLVING;
	s->front_wait = t;
	TAILQ_INSERT_TAIL(&t->waiting, s, front_entry);
	if (!t->resolving)
		resolve(t);
}

void
front_session_closed(struct session *s)
{
	if (s->front_wait == NULL)
		return;
	TAILQ_REMOVE(&s->front_wait->waiting, s, front_entry);
	s->front_wait = NULL;
}

/* ------------------------------------------------------------ lookups */

static void
schedule(struct front_target *t, int seconds)
{
	struct timeval tv = { seconds, 0 };

	/* A little jitter, so workers do not ask all at once. */
	tv.tv_usec = (suseconds_t)(coarse_now_ms() % 1000) * 1000;
	evtimer_add(&t->refresh, &tv);
}

/* The target has an answer (or none): let its waiters go. */
static void
release_waiters(struct front_target *t)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&t->waiting)) != NULL) {
		TAILQ_REMOVE(&t->waiting, s, front_entry);
		s->front_wait = NULL;
		if (t->have_addr)
			front_connect(s, t);
		else
			session_close(s, "fronting host unresolved");
	}
}

static void
resolved(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	struct front_target *t = arg;
	const struct config_listener *l = t->l;

	t->resolving = 0;
	if (t->stale) {
		/* The host changed while this was in flight. */
		t->stale = 0;
		if (result != DNS_ERR_SHUTDOWN)
			resolve(t);
		return;
	}
	if (result == DNS_ERR_NONE && count > 0 &&
	    (type == DNS_IPv4_A || type == DNS_IPv6_AAAA)) {
		memset(&t->addr, 0, sizeof(t->addr));
		if (type == DNS_IPv4_A) {
			struct sockaddr_in *a = (void *)&t->addr;
			a->sin_family = AF_INET;
			a->sin_port = htons(target_port(t));
			memcpy(&a->sin_addr, addresses, 4);
			t->addrlen = sizeof(*a);
		} else {
			struct sockaddr_in6 *a = (void *)&t->addr;
			a->sin6_family = AF_INET6;
			a->sin6_port = htons(target_port(t));
			memcpy(&a->sin6_addr, addresses, 16);
			t->addrlen = sizeof(*a);
		}
		if (!t->have_addr) {
			char a[ADDR_STRLEN];
			log_info("fronting host %s of listener %s is %s "
			         "(ttl %d s)",
			    target_host(t), l->name,
			    addr_str((struct sockaddr *)&t->addr, a, sizeof(a)),
			    ttl);
		}
		t->have_addr = 1;
		schedule(t,
		    ttl < TTL_MIN_S       ? TTL_MIN_S
		        : ttl > TTL_MAX_S ? TTL_MAX_S
		                          : ttl);
		release_waiters(t);
		return;
	}
	if (type == DNS_IPv4_A && result != DNS_ERR_SHUTDOWN) {
		/* No IPv4 address: a site may have only IPv6. */
		t->resolving = 1;
		if (evdns_base_resolve_ipv6(W.dns, target_host(t),
		        DNS_QUERY_NO_SEARCH, resolved, t) != NULL)
			return;
		t->resolving = 0;
	}
	log_warnx("cannot resolve fronting host %s of listener %s: %s%s",
	    target_host(t), l->name, evdns_err_to_string(result),
	    t->have_addr ? "; keeping the last address" : "");
	schedule(t, RETRY_S);
	release_waiters(t);
}

static void
resolve(struct front_target *t)
{
	if (t->resolving || W.dns == NULL)
		return;
	t->resolving = 1;
	/* The callback may run at once (a hosts-file answer): it owns t
	 * until it has run, and t lives as long as the worker. */
	if (evdns_base_resolve_ipv4(W.dns, target_host(t), DNS_QUERY_NO_SEARCH,
	        resolved, t) == NULL &&
	    t->resolving) {
		t->resolving = 0;
		log_warnx(
		    "cannot start resolving fronting host %s", target_host(t));
		schedule(t, RETRY_S);
	}
}

static void
refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	resolve(arg);
}

void
front_listener_changed(const struct config_listener *l)
{
	struct front_target *t = &F.t[l - W.cfg->listeners];

	evtimer_del(&t->refresh);
	t->have_addr = t->numeric = 0;
	if (!(l->protocols & PROTO_FAKE_TLS) || l->fronting_host[0] == 0) {
		release_waiters(t);
		return;
	}
	log_info("listener %s now fronts %s port %u", l->name, l->fronting_host,
	    l->fronting_port);
	if (addr_from_ip_port(l->fronting_host, l->fronting_port, &t->addr,
	        &t->addrlen) == 0) {
		t->numeric = t->have_addr = 1;
		release_waiters(t);
		return;
	}
	if (t->resolving)
		t->stale = 1; /* its callback asks again */
	else
		resolve(t);
}

static void
target_init(struct front_target *t, const struct config_listener *l, int sni)
{
	t->l = l;
	t->sni = sni;
	TAILQ_INIT(&t->waiting);
	evtimer_assign(&t->refresh, W.base, refresh_cb, t);
	if (!(l->protocols & PROTO_FAKE_TLS) || target_host(t)[0] == 0)
		return;
	if (addr_from_ip_port(
	        target_host(t), target_port(t), &t->addr, &t->addrlen) == 0) {
		t->numeric = t->have_addr = 1;
		return;
	}
	resolve(t);
}

void
front_init(void)
{
	const struct config *cfg = W.cfg;

	collect_local_addresses();
	F.t = calloc(cfg->nlisteners + 1, sizeof(*F.t));
	F.sni = calloc(cfg->nlisteners + 1, sizeof(*F.sni));
	if (F.t == NULL || F.sni == NULL)
		fatal("calloc");
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		target_init(&F.t[i], l, -1);
		if (l->nsnis == 0)
			continue;
		if ((F.sni[i] = calloc(l->nsnis, sizeof(*F.sni[i]))) == NULL)
			fatal("calloc");
		for (size_t k = 0; k < l->nsnis; k++)
			target_init(&F.sni[i][k], l, (int)k);
	}
}
