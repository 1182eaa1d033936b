/*
 * Finding the public address (pubaddr.h). A round: resolve every STUN
 * server and send each of its addresses (one per family) two binding
 * requests, retransmitted twice at RETRANSMIT_MS; GET every URL twice.
 * The round ends when every request is answered or given up, or at its
 * deadline. Then, for each family not set by hand, discover_vote()
 * over the answers: a result replaces the last one and is kept in
 * state_dir; no result keeps the last one. Rounds repeat every
 * discover_interval seconds, after a round without a result sooner,
 * from RETRY_MIN doubling.
 *
 * Lookups: a STUN host is resolved by evdns; a lookup of an older round
 * or of a freed pubaddr is dropped by its callback, which always comes
 * (evdns_base_free with fail_requests runs them) and frees the lookup.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "config.h"
#include "discover.h"
#include "fetch.h"
#include "log.h"
#include "pubaddr.h"
#include "tgconf.h"
#include "util.h"

#define RETRANSMIT_MS 700
#define SENDS_MAX     3 /* a request and two retransmissions */
#define REQS_PER_ADDR 2 /* so that one server can answer twice */
#define RETRY_MIN     3 /* seconds, after a round without a result */
#define TX_MAX        (CONFIG_MAX_SOURCES * 2 * REQS_PER_ADDR)
#define ANSWERS_MAX   (TX_MAX + CONFIG_MAX_SOURCES * REQS_PER_ADDR)
#define BODY_MAX      1024
#define SOURCE_MAX    (CONFIG_DOMAIN_MAX + 16)

struct tx {
	uint8_t id[STUN_TXID_LEN];
	size_t src; /* index in cfg->stun_servers */
	struct sockaddr_storage to;
	socklen_t tolen;
	int sends;
	int done;
};

struct lookup {
	struct pubaddr *p; /* NULL once the pubaddr is gone */
	struct lookup *next, **pprev; /* on p->lookup_list */
	unsigned round;
	size_t src;
};

struct fslot {
	struct pubaddr *p;
	size_t i;
};

struct pubaddr {
	struct event_base *base;
	const struct config *cfg;
	void (*changed)(void *, const struct pubaddr_state *);
	void *arg;
	struct pubaddr_state st;
	struct evdns_base *dns;
	struct fetcher *fr;
	int sock[2]; /* UDP, IPv4 and IPv6; -1 when that family is off */
	struct event *sock_ev[2];
	struct event *round_timer; /* next round */
	struct event *tick; /* retransmissions and the deadline */
	unsigned round;
	int in_round;
	uint64_t deadline_ms;
	int retry;
	int starting; /* inside round_start: no round_end yet */
	size_t lookups; /* of this round, pending */
	struct lookup *lookup_list; /* every lookup evdns owes a callback */
	size_t fetches; /* of this round, pending */
	struct fetch *f[CONFIG_MAX_SOURCES * REQS_PER_ADDR];
	struct fslot fslot[CONFIG_MAX_SOURCES * REQS_PER_ADDR];
	struct tx tx[TX_MAX];
	size_t ntx;
	char source_names[CONFIG_MAX_SOURCES][SOURCE_MAX];
	struct discover_answer ans[2][ANSWERS_MAX]; /* [0] IPv4, [1] IPv6 */
	size_t nans[2];
	char errs[512]; /* what failed this round, for the log */
};

static int
fam_index(int family)
{
	return family == AF_INET6;
}

static int
wanted(const struct pubaddr *p, int family)
{
	return family == AF_INET ? p->cfg->public_ipv4[0] == '\0'
	                         : p->cfg->public_ipv6[0] == '\0';
}

static void note_error(struct pubaddr *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Collects what failed, "; "-separated, for one log line per round. */
static void
note_error(struct pubaddr *p, const char *fmt, ...)
{
	size_t n = strlen(p->errs);
	char e[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e, sizeof(e), fmt, ap);
	va_end(ap);
	log_debug("public address: %s", e);
	if (strstr(p->errs, e) != NULL || n + 3 >= sizeof(p->errs))
		return; /* the second request of a source, say */
	if (n > 0) {
		memcpy(p->errs + n, "; ", 3);
		n += 2;
	}
	snprintf(p->errs + n, sizeof(p->errs) - n, "%s", e);
}

static void
add_answer(struct pubaddr *p, const char *source, int family, const char *a)
{
	int i = fam_index(family);

	if (!wanted(p, family) || p->nans[i] == ANSWERS_MAX)
		return;
	p->ans[i][p->nans[i]].source = source;
	snprintf(p->ans[i][p->nans[i]].addr, INET6_ADDRSTRLEN, "%s", a);
	p->nans[i]++;
	log_debug("public address: %s says %s", source, a);
}

static void
publish(struct pubaddr *p)
{
	char text[256];
	size_t n;

	if (p->changed != NULL)
		p->changed(p->arg, &p->st);
	if (p->st.v4[0] == '\0' && p->st.v6[0] == '\0')
		return;
	n = pubaddr_format(&p->st, text, sizeof(text));
	if (p->cfg->state_dir[0] != '\0' &&
	    tgconf_cache_write(p->cfg->state_dir, PUBADDR_CACHE,
	        (const uint8_t *)text, n) == -1)
		log_warn("cannot keep the public address in %s/%s",
		    p->cfg->state_dir, PUBADDR_CACHE);
}

/* ------------------------------------------------------------ rounds */

static void round_end(struct pubaddr *);

static void
maybe_end(struct pubaddr *p)
{
	if (!p->in_round || p->starting || p->lookups > 0 || p->fetches > 0)
		return;
	for (size_t i = 0; i < p->ntx; i++)
		if (!p->tx[i].done)
			return;
	round_end(p);
}

/* Appends text to dst (cap bytes), truncating. */
static void
append(char *dst, size_t cap, const char *text)
{
	size_t n = strlen(dst);

	if (n + 1 < cap)
		snprintf(dst + n, cap - n, "%s", text);
}

/*
 * One family's vote: 1 if it found an address that changed the state,
 * 0 if it found the same one, -1 if it found none (why appended to
 * p->st.why) or the family is not asked.
 */
static int
decide(struct pubaddr *p, int family)
{
	int i = fam_index(family);
	char addr[INET6_ADDRSTRLEN], from[256];
	char *cur = family == AF_INET ? p->st.v4 : p->st.v6;
	char *cfrom = family == AF_INET ? p->st.from4 : p->st.from6;
	const char *name = family == AF_INET ? "IPv4" : "IPv6";

	if (!wanted(p, family))
		return -1;
	if (discover_vote(p->ans[i], p->nans[i], addr, from, sizeof(from)) ==
	    -1) {
		if (p->nans[i] > 0 || cur[0] != '\0')
			log_warnx("public %s address not found this round: "
			          "%s%s%s",
			    name, from, cur[0] ? "; keeping " : "", cur);
		append(p->st.why, sizeof(p->st.why), p->st.why[0] ? "; " : "");
		append(p->st.why, sizeof(p->st.why), name);
		append(p->st.why, sizeof(p->st.why), ": ");
		append(p->st.why, sizeof(p->st.why), from);
		return -1;
	}
	if (strcmp(cur, addr) == 0 && strcmp(cfrom, "cache") != 0) {
		snprintf(cfrom, sizeof(p->st.from4), "%s", from);
		return 0;
	}
	log_notice("public %s address %s (%s agree)%s%s", name, addr, from,
	    cur[0] && strcmp(cur, addr) ? "; it was " : "",
	    cur[0] && strcmp(cur, addr) ? cur : "");
	snprintf(cur, INET6_ADDRSTRLEN, "%s", addr);
	snprintf(cfrom, sizeof(p->st.from4), "%s", from);
	return 1;
}

static void
round_end(struct pubaddr *p)
{
	struct pubaddr_state before = p->st;
	int r4, r6, done;
	struct timeval tv;

	p->in_round = 0;
	evtimer_del(p->tick);
	for (size_t i = 0; i < nitems(p->f); i++) {
		fetch_cancel(p->f[i]);
		p->f[i] = NULL;
	}
	p->st.why[0] = '\0';
	p->st.rounds++;
	r4 = decide(p, AF_INET);
	r6 = decide(p, AF_INET6);
	if (r4 == 1 || r6 == 1)
		p->st.when = now_unix();
	if (p->errs[0] != '\0') {
		append(p->st.why, sizeof(p->st.why), " (");
		append(p->st.why, sizeof(p->st.why), p->errs);
		append(p->st.why, sizeof(p->st.why), ")");
	}
	/*
	 * Done until the next interval when every family asked has an
	 * address, or one has and the other had no answer at all (a host
	 * with one family); else the next round comes sooner.
	 */
	done = (r4 >= 0 || !wanted(p, AF_INET)) &&
	    (r6 >= 0 || !wanted(p, AF_INET6));
	if (!done && (r4 >= 0 || r6 >= 0))
		done = (r4 >= 0 || p->nans[0] == 0) &&
		    (r6 >= 0 || p->nans[1] == 0);
	if (p->st.v4[0] == '\0' && p->st.v6[0] == '\0')
		log_warnx("public address not found: %s; links use an "
		          "interface address (guessed)",
		    p->st.why);
	if (p->round == 1 || memcmp(&before, &p->st, sizeof(before)) != 0)
		publish(p);
	if (done) {
		p->retry = RETRY_MIN;
		tv.tv_sec = p->cfg->discover_interval;
	} else {
		tv.tv_sec = p->retry;
		p->retry *= 2;
		if (p->retry > p->cfg->discover_interval)
			p->retry = p->cfg->discover_interval;
	}
	tv.tv_usec = 0;
	log_debug("public address: next round in %ld s", (long)tv.tv_sec);
	evtimer_add(p->round_timer, &tv);
}

static void
tx_send(struct pubaddr *p, struct tx *t)
{
	uint8_t req[STUN_HEADER_LEN];
	int s = p->sock[fam_index(t->to.ss_family)];

	stun_binding_request(req, t->id);
	t->sends++;
	if (sendto(s, req, sizeof(req), 0, (struct sockaddr *)&t->to,
	        t->tolen) == -1 &&
	    errno != EAGAIN) {
		char a[ADDR_STRLEN];

		note_error(p, "stun %s: %s",
		    addr_str((struct sockaddr *)&t->to, a, sizeof(a)),
		    strerror(errno));
		t->done = 1;
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pubaddr *p = arg;
	struct timeval tv = { 0, RETRANSMIT_MS * 1000 };
	int timed_out = now_ms() >= p->deadline_ms;

	for (size_t i = 0; i < p->ntx; i++) {
		struct tx *t = &p->tx[i];

		if (t->done)
			continue;
		if (t->sends >= SENDS_MAX || timed_out) {
			char a[ADDR_STRLEN];

			t->done = 1;
			if (t->id[0] == 0 || i % REQS_PER_ADDR == 0)
				note_error(p, "%s (%s): no answer",
				    p->source_names[t->src],
				    addr_str((struct sockaddr *)&t->to, a,
				        sizeof(a)));
			continue;
		}
		tx_send(p, t);
	}
	if (timed_out) {
		/* Fetches and lookups still out are given up. */
		p->fetches = 0;
		p->lookups = 0;
		if (p->in_round)
			round_end(p);
		return;
	}
	evtimer_add(p->tick, &tv);
	maybe_end(p);
}

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pubaddr *p = arg;
	uint8_t buf[STUN_MESSAGE_MAX + 1];
	struct sockaddr_storage from, mapped;
	socklen_t fl;
	ssize_t n;

	for (;;) {
		const char *why;
		char a[INET6_ADDRSTRLEN];
		size_t i;

		fl = sizeof(from);
		n = recvfrom(
		    fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n == -1)
			return;
		if (n < STUN_HEADER_LEN)
			continue;
		for (i = 0; i < p->ntx; i++)
			if (memcmp(p->tx[i].id, buf + 8, STUN_TXID_LEN) == 0)
				break;
		if (i == p->ntx || p->tx[i].done || !p->in_round)
			continue;
		if (stun_binding_parse(
		        buf, (size_t)n, p->tx[i].id, &mapped, &why) == -1) {
			note_error(
			    p, "%s: %s", p->source_names[p->tx[i].src], why);
			p->tx[i].done = 1;
			maybe_end(p);
			continue;
		}
		p->tx[i].done = 1;
		if (evutil_inet_ntop(mapped.ss_family,
		        mapped.ss_family == AF_INET
		            ? (void *)&((struct sockaddr_in *)&mapped)->sin_addr
		            : (void *)&((struct sockaddr_in6 *)&mapped)
		                  ->sin6_addr,
		        a, sizeof(a)) != NULL)
			add_answer(p, p->source_names[p->tx[i].src],
			    mapped.ss_family, a);
		maybe_end(p);
	}
}

static void
add_tx(struct pubaddr *p, size_t src, const struct sockaddr *sa, socklen_t len)
{
	int fi = fam_index(sa->sa_family);

	if (p->sock[fi] == -1 || !wanted(p, sa->sa_family))
		return;
	for (int k = 0; k < REQS_PER_ADDR && p->ntx < TX_MAX; k++) {
		struct tx *t = &p->tx[p->ntx++];

		memset(t, 0, sizeof(*t));
		random_bytes(t->id, sizeof(t->id));
		t->src = src;
		memcpy(&t->to, sa, len);
		t->tolen = len;
		tx_send(p, t);
	}
}

static void
lookup_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct lookup *lk = arg;
	struct pubaddr *p = lk->p;
	int have[2] = { 0, 0 };

	if (lk->pprev != NULL) {
		*lk->pprev = lk->next;
		if (lk->next != NULL)
			lk->next->pprev = lk->pprev;
	}
	if (p == NULL || lk->round != p->round || !p->in_round) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		free(lk);
		return;
	}
	p->lookups--;
	if (result != 0)
		note_error(p, "%s: cannot resolve: %s",
		    p->source_names[lk->src], evutil_gai_strerror(result));
	for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (have[fam_index(ai->ai_family)]++)
			continue;
		add_tx(p, lk->src, ai->ai_addr, (socklen_t)ai->ai_addrlen);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	free(lk);
	maybe_end(p);
}

static void
fetched(void *arg, struct fetch_result *r)
{
	struct fslot *fs = arg;
	struct pubaddr *p = fs->p;
	char a[INET6_ADDRSTRLEN];
	int fam;

	p->f[fs->i] = NULL; /* it closes after this */
	if (p->fetches > 0)
		p->fetches--;
	if (r->failed)
		note_error(p, "%s: %s", r->url, r->reason);
	else if (myip_parse(r->body, r->len, a, &fam) == -1)
		note_error(p, "%s: the answer is not an IP address", r->url);
	else /* r->url goes with the fetch: the config's copy stays */
		add_answer(p, p->cfg->ip_urls[fs->i / REQS_PER_ADDR], fam, a);
	free(r->body);
	maybe_end(p);
}

static void
round_start(evutil_socket_t fd, short what, void *arg)
{
	struct pubaddr *p = arg;
	struct timeval tv = { 0, RETRANSMIT_MS * 1000 };
	const struct config *cfg = p->cfg;
	int secs = cfg->http_timeout + 1;

	p->round++;
	p->in_round = 1;
	p->starting = 1;
	p->ntx = 0;
	p->nans[0] = p->nans[1] = 0;
	p->errs[0] = '\0';
	p->lookups = p->fetches = 0;
	p->deadline_ms = now_ms() + (uint64_t)(secs > 5 ? secs : 5) * 1000;
	log_debug("public address: round %u", p->round);
	if (p->dns == NULL && (p->dns = fetch_dns_new(p->base)) == NULL)
		note_error(p, "cannot set up DNS (resolv.conf?)");
	for (size_t i = 0; i < cfg->nstun_servers && p->dns != NULL; i++) {
		struct evutil_addrinfo hints;
		struct lookup *lk;
		char host[CONFIG_DOMAIN_MAX + 1], port[8];
		uint16_t pn;

		if (config_host_port(cfg->stun_servers[i], CONFIG_STUN_PORT,
		        host, sizeof(host), &pn) == -1 ||
		    (lk = calloc(1, sizeof(*lk))) == NULL)
			continue;
		lk->p = p;
		lk->round = p->round;
		lk->src = i;
		lk->next = p->lookup_list;
		if (lk->next != NULL)
			lk->next->pprev = &lk->next;
		lk->pprev = &p->lookup_list;
		p->lookup_list = lk;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_DGRAM;
		hints.ai_protocol = IPPROTO_UDP;
		snprintf(port, sizeof(port), "%u", pn);
		p->lookups++;
		/* The callback may run before this returns. */
		evdns_getaddrinfo(p->dns, host, port, &hints, lookup_cb, lk);
	}
	for (size_t i = 0; i < cfg->nip_urls && p->fr != NULL; i++)
		for (size_t k = 0; k < REQS_PER_ADDR; k++) {
			size_t j = i * REQS_PER_ADDR + k;

			p->fslot[j] = (struct fslot){ p, j };
			p->f[j] = fetcher_get(p->fr, cfg->ip_urls[i],
			    (unsigned)k, fetched, &p->fslot[j]);
			if (p->f[j] != NULL)
				p->fetches++;
		}
	p->starting = 0;
	evtimer_add(p->tick, &tv);
	maybe_end(p);
}

/* ------------------------------------------------------------ API */

static int
udp_socket(int family)
{
	int s = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (s != -1 && family == AF_INET6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	return s;
}

struct pubaddr *
pubaddr_start(struct event_base *base, const struct config *cfg,
    void (*changed)(void *, const struct pubaddr_state *), void *arg)
{
	struct pubaddr *p = calloc(1, sizeof(*p));
	struct timeval now = { 0, 0 };
	uint8_t *body;
	size_t len;

	if (p == NULL)
		return NULL;
	p->base = base;
	p->cfg = cfg;
	p->changed = changed;
	p->arg = arg;
	p->sock[0] = p->sock[1] = -1;
	p->retry = RETRY_MIN;
	for (size_t i = 0; i < cfg->nstun_servers; i++)
		snprintf(p->source_names[i], SOURCE_MAX, "stun %s",
		    cfg->stun_servers[i]);

	/* By hand, else the last copy. */
	if (cfg->state_dir[0] != '\0' &&
	    tgconf_cache_read(cfg->state_dir, PUBADDR_CACHE, &body, &len) ==
	        0) {
		struct pubaddr_state c;

		if (pubaddr_parse(body, len, &c) == 0) {
			p->st = c;
			log_info("public address from the cache: %s%s%s", c.v4,
			    c.v4[0] && c.v6[0] ? " and " : "", c.v6);
		} else
			log_warnx("ignoring %s/%s: malformed", cfg->state_dir,
			    PUBADDR_CACHE);
		free(body);
	}
	if (cfg->public_ipv4[0] != '\0') {
		snprintf(p->st.v4, sizeof(p->st.v4), "%s", cfg->public_ipv4);
		snprintf(p->st.from4, sizeof(p->st.from4), "config");
	}
	if (cfg->public_ipv6[0] != '\0') {
		snprintf(p->st.v6, sizeof(p->st.v6), "%s", cfg->public_ipv6);
		snprintf(p->st.from6, sizeof(p->st.from6), "config");
	}
	if (p->st.v4[0] != '\0' || p->st.v6[0] != '\0')
		changed(arg, &p->st);
	if (!cfg->discover || (!wanted(p, AF_INET) && !wanted(p, AF_INET6)))
		return p;

	p->fr = fetcher_new(base, cfg->ca_file, cfg->http_timeout, BODY_MAX);
	for (int i = 0; i < 2; i++) {
		int fam = i == 0 ? AF_INET : AF_INET6;

		if (!wanted(p, fam) || (p->sock[i] = udp_socket(fam)) == -1)
			continue;
		p->sock_ev[i] = event_new(
		    base, p->sock[i], EV_READ | EV_PERSIST, sock_cb, p);
		if (p->sock_ev[i] != NULL)
			event_add(p->sock_ev[i], NULL);
	}
	p->round_timer = evtimer_new(base, round_start, p);
	p->tick = evtimer_new(base, tick_cb, p);
	if (p->round_timer == NULL || p->tick == NULL) {
		pubaddr_free(p);
		return NULL;
	}
	evtimer_add(p->round_timer, &now);
	return p;
}

const struct pubaddr_state *
pubaddr_state(const struct pubaddr *p)
{
	static const struct pubaddr_state none;

	return p != NULL ? &p->st : &none;
}

void
pubaddr_free(struct pubaddr *p)
{
	if (p == NULL)
		return;
	p->in_round = 0;
	p->round++; /* the lookups' callbacks drop their results */
	for (size_t i = 0; i < nitems(p->f); i++)
		fetch_cancel(p->f[i]);
	fetcher_free(p->fr);
	/* The lookups' callbacks come with the resolver's end; they find
	 * no pubaddr and free themselves. */
	for (struct lookup *lk = p->lookup_list; lk != NULL; lk = lk->next) {
		lk->p = NULL;
		lk->pprev = NULL;
	}
	if (p->dns != NULL)
		evdns_base_free(p->dns, 1);
	for (int i = 0; i < 2; i++) {
		if (p->sock_ev[i] != NULL)
			event_free(p->sock_ev[i]);
		if (p->sock[i] != -1)
			close(p->sock[i]);
	}
	if (p->round_timer != NULL)
		event_free(p->round_timer);
	if (p->tick != NULL)
		event_free(p->tick);
	free(p);
}

/* ------------------------------------------------------------ --check */

static void
report_changed(void *arg, const struct pubaddr_state *st)
{
}

/* The interfaces' addresses of a family, ", "-separated; 1 if ip is one. */
static int
interfaces(int family, const char *ip, char *out, size_t cap)
{
	struct ifaddrs *ifs, *i;
	int match = 0;

	out[0] = '\0';
	if (getifaddrs(&ifs) == -1)
		return 0;
	for (i = ifs; i != NULL; i = i->ifa_next) {
		char a[INET6_ADDRSTRLEN];
		const void *ad;
		size_t n = strlen(out);

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != family ||
		    (i->ifa_flags & IFF_LOOPBACK))
			continue;
		ad = family == AF_INET
		    ? (const void *)&((struct sockaddr_in *)i->ifa_addr)
		          ->sin_addr
		    : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)
		          ->sin6_addr;
		if (family == AF_INET6 &&
		    IN6_IS_ADDR_LINKLOCAL((const struct in6_addr *)ad))
			continue;
		if (inet_ntop(family, ad, a, sizeof(a)) == NULL)
			continue;
		if (strcmp(a, ip) == 0)
			match = 1;
		snprintf(out + n, cap - n, "%s%s on %s", n ? ", " : "", a,
		    i->ifa_name);
	}
	freeifaddrs(ifs);
	return match;
}

static void
report_family(FILE *f, const struct pubaddr_state *st, int family)
{
	const char *ip = family == AF_INET ? st->v4 : st->v6;
	const char *from = family == AF_INET ? st->from4 : st->from6;
	int v = family == AF_INET ? 4 : 6;
	char ifs[1024];

	if (ip[0] == '\0') {
		fprintf(f, "public IPv%d address: not found\n", v);
		return;
	}
	fprintf(f, "public IPv%d address: %s (%s)\n", v, ip, from);
	if (interfaces(family, ip, ifs, sizeof(ifs)))
		fprintf(f, "  it is an interface's (%s): no NAT\n", ifs);
	else
		fprintf(f,
		    "  no interface has it (%s): behind NAT; links and "
		    "middle-proxy keys use %s\n",
		    ifs[0] ? ifs : "none", ip);
}

int
pubaddr_report(const struct config *cfg, FILE *f)
{
	struct config *c = malloc(sizeof(*c));
	struct event_base *base = event_base_new();
	struct pubaddr *p = NULL;
	uint64_t end = now_ms() + 1000 * (uint64_t)(cfg->http_timeout + 10);
	int rc = 0;

	if (c == NULL || base == NULL) {
		free(c);
		if (base != NULL)
			event_base_free(base);
		return -1;
	}
	/* A fresh look: no cache read or written. */
	memcpy(c, cfg, sizeof(*c));
	c->state_dir[0] = '\0';
	fetch_resolv_conf = cfg->resolv_conf;
	if (cfg->discover &&
	    (cfg->public_ipv4[0] == '\0' || cfg->public_ipv6[0] == '\0')) {
		fprintf(f,
		    "finding the public address (%zu STUN servers, %zu "
		    "URLs)...\n",
		    cfg->nstun_servers, cfg->nip_urls);
		fflush(f);
	}
	if ((p = pubaddr_start(base, c, report_changed, NULL)) == NULL)
		rc = -1;
	while (p != NULL && p->round_timer != NULL &&
	    pubaddr_state(p)->rounds == 0 && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	if (p != NULL) {
		const struct pubaddr_state *st = pubaddr_state(p);

		if (!cfg->discover)
			fprintf(f, "network.discover is off\n");
		report_family(f, st, AF_INET);
		report_family(f, st, AF_INET6);
		if (st->why[0] != '\0')
			fprintf(f, "  (%s)\n", st->why);
	}
	pubaddr_free(p);
	event_base_free(base);
	free(c);
	return rc;
}
