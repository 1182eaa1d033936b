/*
 * Site profiles (tlsprobe.h). One target at a time, one connection at a
 * time: resolve (evdns), connect, send a ClientHello as the apps shape
 * it, read the answer until the server falls silent (it waits for our
 * Finished) for QUIET_MS or twice its first answer's time, whichever is
 * longer, then close. PROBE_SAMPLES answers make a profile: the fields
 * of the first ServerHello, the median flight and its spread.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "config.h"
#include "fetch.h"
#include "log.h"
#include "proxyproto.h"
#include "tgconf.h"
#include "tables.h"
#include "tlsprobe.h"
#include "util.h"

#define PROBE_SAMPLES 5
#define QUIET_MS      300
#define PROBE_TIMEOUT 10 /* seconds for one connection */
/* Sites asked: the listeners' and their tls_domains' (more are left
 * unasked, with a log line). */
#define MAX_TARGETS 128
#define ANSWER_MAX  (64 * 1024)
#define RETRY_MIN   30 /* seconds, after a target could not be asked */

struct target {
	char key[TLSPROBE_KEY_MAX]; /* "host:port" */
	char host[CONFIG_DOMAIN_MAX + 1];
	uint16_t port;
	char sni[CONFIG_DOMAIN_MAX + 1];
	int proxy_v2; /* the site wants a PROXY v2 header first */
	int have; /* shape is known */
	struct tls_shape shape;
	struct tls_flight first;
	uint32_t flights[PROBE_SAMPLES];
	uint32_t answer_us[PROBE_SAMPLES]; /* less the connect time */
	int nsamples;
	int failed; /* this round */
};

struct tlsprobe {
	struct event_base *base;
	const struct config *cfg;
	void (*changed)(void *, const char *, const struct tls_shape *);
	void *arg;
	struct target t[MAX_TARGETS];
	size_t nt, cur;
	struct evdns_base *dns;
	struct evdns_getaddrinfo_request *dnsreq;
	int fd;
	struct event *ev, *timer, *round_timer, *quiet;
	uint8_t buf[ANSWER_MAX];
	size_t len;
	uint64_t connect_us, rtt_us, sent_us, first_us;
	int dying;
	int probing; /* a round runs: t[] stays as it is */
	struct target pending[MAX_TARGETS]; /* a reload's targets */
	size_t npending;
	int have_pending;
};

/* ------------------------------------------------------------ cache */

static void
cache_name(const struct target *t, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "tls-profile-");

	for (const char *p = t->key; *p != '\0' && n + 1 < cap; p++)
		out[n++] = (*p >= 'a' && *p <= 'z') ||
		        (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'
		    ? *p
		    : '_';
	out[n] = '\0';
}

/* ------------------------------------------------------------ probing */

static void probe_next(struct tlsprobe *);
static void probe_start(struct tlsprobe *);
static int retarget_apply(struct tlsprobe *);

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* A target's samples make its profile. */
static void
target_done(struct tlsprobe *p, struct target *t)
{
	const struct tls_flight *fl = &t->first;
	struct tls_shape sh = { 0 };
	uint32_t sorted[PROBE_SAMPLES], us[PROBE_SAMPLES];
	char text[256], name[128];
	int n = t->nsamples;

	if (n == 0)
		return;
	memcpy(sorted, t->flights, sizeof(sorted));
	memcpy(us, t->answer_us, sizeof(us));
	qsort(sorted, (size_t)n, sizeof(sorted[0]), cmp_u32);
	qsort(us, (size_t)n, sizeof(us[0]), cmp_u32);
	sh.cipher = fl->cipher;
	sh.group = fl->group;
	sh.ks_len = fl->ks_len;
	for (size_t i = 0; i < fl->next; i++)
		if (fl->ext[i] == 0x0033 || fl->ext[i] == 0x002b)
			sh.ext[sh.next++] = fl->ext[i];
	sh.flight = sorted[n / 2];
	sh.spread = sorted[n - 1] - sorted[0];
	sh.answer_us = us[n / 2];
	log_info("TLS profile of %s (SNI %s): TLS %s, cipher 0x%04x, group "
	         "0x%04x (%u-byte key share), extensions%s%s%s%s, %s, flight "
	         "of %u record(s), %u bytes (spread %u over %d), answer in %u "
	         "us",
	    t->key, t->sni, fl->version == 0x0304 ? "1.3" : "1.2 or older",
	    fl->cipher, fl->group, fl->ks_len, sh.next > 0 ? " " : " none",
	    sh.next > 0 ? (sh.ext[0] == 0x002b ? "43" : "51") : "",
	    sh.next > 1 ? "," : "",
	    sh.next > 1 ? (sh.ext[1] == 0x002b ? "43" : "51") : "",
	    fl->ccs ? "CCS" : "no CCS", fl->app_records, sh.flight, sh.spread,
	    n, sh.answer_us);
	if (fl->version != 0x0304 || fl->group == 0 || fl->hrr) {
		log_warnx("TLS profile of %s: %s; it cannot be copied (the "
		          "apps need a TLS 1.3 answer): keeping %s",
		    t->key,
		    fl->hrr
		        ? "it asked for another key share (HelloRetryRequest)"
		        : "no TLS 1.3",
		    t->have ? "the last profile" : "the built-in shape");
		return;
	}
	if (tls_shaped_hello_len(&(struct tls_hello){ .session_id_len = 32 },
	        &sh, sh.flight) == 0) {
		log_warnx(
		    "TLS profile of %s: a flight of %u bytes does not fit "
		    "one record; keeping %s",
		    t->key, sh.flight,
		    t->have ? "the last profile" : "the built-in shape");
		return;
	}
	if (fl->app_records > 1)
		log_warnx("TLS profile of %s: the site sends its flight in %u "
		          "records; we send one record of the same total size "
		          "(the apps accept no other shape): prefer a site "
		          "whose server sends one",
		    t->key, fl->app_records);
	if (!fl->ccs)
		log_warnx("TLS profile of %s: the site sends no CCS; we must "
		          "(the apps need it)",
		    t->key);
	if (t->have && memcmp(&t->shape, &sh, sizeof(sh)) == 0)
		return;
	t->shape = sh;
	t->have = 1;
	cache_name(t, name, sizeof(name));
	tls_shape_format(&sh, text, sizeof(text));
	if (tgconf_cache_write(p->cfg->state_dir, name, (const uint8_t *)text,
	        strlen(text)) == -1)
		log_warn("cannot keep the TLS profile in %s/%s",
		    p->cfg->state_dir, name);
	p->changed(p->arg, t->key, &t->shape);
}

static void
conn_close(struct tlsprobe *p)
{
	if (p->ev != NULL)
		event_free(p->ev);
	p->ev = NULL;
	if (p->fd != -1)
		close(p->fd);
	p->fd = -1;
	if (p->timer != NULL)
		evtimer_del(p->timer);
	if (p->quiet != NULL)
		evtimer_del(p->quiet);
}

/* One answer is complete (or failed). */
static void
sample_end(struct tlsprobe *p, const char *why)
{
	struct target *t = &p->t[p->cur];
	struct tls_flight fl;
	int r = tls_flight_parse(p->buf, p->len, &fl);

	conn_close(p);
	if (why == NULL && r == 1) {
		if (t->nsamples == 0)
			t->first = fl;
		t->flights[t->nsamples] = fl.app_bytes;
		/* The site's own time: what a client next to it would
		 * wait (the connect took one round trip to it). */
		uint64_t a = p->first_us - p->sent_us;
		t->answer_us[t->nsamples] =
		    (uint32_t)(a > p->rtt_us ? a - p->rtt_us : 0);
		t->nsamples++;
	} else {
		log_warnx("TLS profile of %s: %s", t->key,
		    why != NULL   ? why
		        : r == -2 ? "the site answered with an alert"
		                  : "no usable ServerHello in the answer");
		t->failed = 1;
	}
	if (t->failed || t->nsamples == PROBE_SAMPLES) {
		if (!t->failed)
			target_done(p, t);
		p->cur++;
	}
	probe_next(p);
}

static void
quiet_cb(evutil_socket_t fd, short what, void *arg)
{
	sample_end(arg, NULL);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tlsprobe *p = arg;

	sample_end(p, p->len > 0 ? NULL : "no answer in time");
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tlsprobe *p = arg;
	uint64_t wait;
	ssize_t n;

	if (what & EV_WRITE) {
		/* Connected (or not): send the hello. */
		struct target *t = &p->t[p->cur];
		uint8_t hello[TLS_HELLO_PQ_LEN], key[TLS_SECRET_LEN];
		int err = 0;
		socklen_t el = sizeof(err);
		size_t hl;

		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		p->rtt_us = now_us() - p->connect_us;
		if (err != 0) {
			char why[128];

			snprintf(why, sizeof(why), "cannot connect: %s",
			    strerror(err));
			sample_end(p, why);
			return;
		}
		random_bytes(key, sizeof(key));
		hl = tls_client_hello_build_pq(hello, sizeof(hello), key,
		    t->sni, (uint32_t)now_unix(), TLS_HELLO_PQ_LEN);
		if (hl == 0 ||
		    send(fd, hello, hl, MSG_NOSIGNAL) != (ssize_t)hl) {
			sample_end(p, "cannot send the ClientHello");
			return;
		}
		p->sent_us = now_us();
		event_free(p->ev);
		p->ev =
		    event_new(p->base, fd, EV_READ | EV_PERSIST, read_cb, p);
		if (p->ev == NULL || event_add(p->ev, NULL) == -1)
			sample_end(p, "out of memory");
		return;
	}
	n = read(fd, p->buf + p->len, sizeof(p->buf) - p->len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || p->len + (size_t)n == sizeof(p->buf)) {
		if (n > 0)
			p->len += (size_t)n;
		sample_end(p, p->len > 0 ? NULL : "closed without an answer");
		return;
	}
	if (p->len == 0)
		p->first_us = now_us();
	p->len += (size_t)n;
	/* The flight is over when the server waits for us. */
	wait = 2 * (p->first_us - p->sent_us) / 1000;
	if (wait < QUIET_MS)
		wait = QUIET_MS;
	struct timeval qtv = { (time_t)(wait / 1000),
		(suseconds_t)(wait % 1000) * 1000 };
	evtimer_add(p->quiet, &qtv);
}

static void
connect_to(struct tlsprobe *p, const struct sockaddr *sa, socklen_t len)
{
	int one = 1;

	p->len = 0;
	p->fd = socket(
	    sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd == -1) {
		sample_end(p, strerror(errno));
		return;
	}
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	p->connect_us = now_us();
	if (connect(p->fd, sa, len) == -1 && errno != EINPROGRESS) {
		char why[128];

		snprintf(
		    why, sizeof(why), "cannot connect: %s", strerror(errno));
		sample_end(p, why);
		return;
	}
	p->ev = event_new(p->base, p->fd, EV_WRITE, read_cb, p);
	if (p->ev == NULL || event_add(p->ev, NULL) == -1) {
		sample_end(p, "out of memory");
		return;
	}
	struct timeval tv = { PROBE_TIMEOUT, 0 };
	evtimer_add(p->timer, &tv);
}

static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct tlsprobe *p = arg;
	struct evutil_addrinfo *ai;

	p->dnsreq = NULL;
	if (p->dying) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0) {
		char why[160];

		snprintf(why, sizeof(why), "cannot resolve %s: %s",
		    p->t[p->cur].host, evutil_gai_strerror(result));
		if (res != NULL)
			evutil_freeaddrinfo(res);
		sample_end(p, why);
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			break;
	if (ai == NULL)
		sample_end(p, "no address");
	else
		connect_to(p, ai->ai_addr, (socklen_t)ai->ai_addrlen);
	evutil_freeaddrinfo(res);
}

static void
probe_next(struct tlsprobe *p)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *r;
	char port[8];

	if (p->cur >= p->nt) {
		int again = 0;
		uint32_t jitter;

		p->probing = 0;
		/* A reload's new targets are asked at once. */
		if (p->have_pending && retarget_apply(p))
			return;
		for (size_t i = 0; i < p->nt; i++)
			again |= p->t[i].failed && !p->t[i].have;
		random_bytes(&jitter, sizeof(jitter));
		/* +-10%, and sooner while a target has no profile at all. */
		long secs = again ? RETRY_MIN : p->cfg->tls_profile_refresh;
		secs += (long)(jitter % (uint32_t)(secs / 5 + 1)) - secs / 10;
		struct timeval tv = { secs, 0 };
		evtimer_add(p->round_timer, &tv);
		return;
	}
	if (p->dns == NULL && (p->dns = fetch_dns_new(p->base)) == NULL) {
		sample_end(p, "cannot set up DNS");
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%u", p->t[p->cur].port);
	r = evdns_getaddrinfo(
	    p->dns, p->t[p->cur].host, port, &hints, dns_cb, p);
	if (r != NULL)
		p->dnsreq = r;
}

static void
round_cb(evutil_socket_t fd, short what, void *arg)
{
	probe_start(arg);
}

static void
probe_start(struct tlsprobe *p)
{
	p->probing = 1;
	for (size_t i = 0; i < p->nt; i++) {
		p->t[i].nsamples = 0;
		p->t[i].failed = 0;
	}
	p->cur = 0;
	probe_next(p);
}

/*
 * A reload's targets replace the list: those kept keep their profile,
 * new ones are asked now, and every known profile is told again (a
 * listener that changed site lost its shape in the workers). 1 if a
 * round was scheduled for now.
 */
static int
retarget_apply(struct tlsprobe *p)
{
	struct target old[MAX_TARGETS];
	size_t nold = p->nt;
	int fresh = 0;

	memcpy(old, p->t, sizeof(old));
	memcpy(p->t, p->pending, sizeof(p->t));
	p->nt = p->npending;
	p->have_pending = 0;
	for (size_t i = 0; i < p->nt; i++) {
		size_t k;

		for (k = 0; k < nold; k++)
			if (strcmp(old[k].key, p->t[i].key) == 0)
				break;
		if (k < nold && old[k].have) {
			p->t[i].shape = old[k].shape;
			p->t[i].have = 1;
		} else
			fresh = 1;
	}
	for (size_t i = 0; i < p->nt; i++)
		if (p->t[i].have)
			p->changed(p->arg, p->t[i].key, &p->t[i].shape);
	if (fresh) {
		struct timeval now = { 0, 0 };

		evtimer_del(p->round_timer);
		evtimer_add(p->round_timer, &now);
	}
	return fresh;
}

/* One site into out[] (n of them so far) unless it is there already. */
static size_t
target_add(struct target *out, size_t n, const char *host, uint16_t port,
    const char *sni, int proxy_v2)
{
	char key[TLSPROBE_KEY_MAX];

	snprintf(key, sizeof(key), "%s:%u", host, (unsigned)port);
	for (size_t k = 0; k < n; k++)
		if (strcmp(out[k].key, key) == 0)
			return n;
	if (n == MAX_TARGETS) {
		log_warnx("TLS profiles: more than %d sites; %s is not asked",
		    MAX_TARGETS, key);
		return n;
	}
	memset(&out[n], 0, sizeof(out[n]));
	snprintf(out[n].key, TLSPROBE_KEY_MAX, "%s", key);
	snprintf(out[n].host, sizeof(out[n].host), "%s", host);
	out[n].port = port;
	snprintf(out[n].sni, sizeof(out[n].sni), "%s", sni);
	out[n].proxy_v2 = proxy_v2;
	return n + 1;
}

/* The fake-TLS listeners' sites (and their tls_domains' sites), without
 * duplicates, into out[]. */
static size_t
targets_of(
    const struct config *cfg, const struct tables *tb, struct target *out)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		const char *host = l->fronting_host, *sni = l->tls_domain;
		uint16_t port = l->fronting_port;

		if (!(l->protocols & PROTO_FAKE_TLS))
			continue;
		if (tb != NULL && i < tb->nl) {
			host = tb->l[i].fronting_host;
			port = tb->l[i].fronting_port;
			sni = tb->l[i].tls_domain;
		}
		if (host[0] != '\0')
			n = target_add(
			    out, n, host, port, sni, l->fronting_proxy_v2);
		for (size_t k = 0; k < l->nsnis; k++)
			if (l->snis[k].fronting_host[0] != '\0')
				n = target_add(out, n, l->snis[k].fronting_host,
				    l->snis[k].fronting_port, l->snis[k].name,
				    l->fronting_proxy_v2);
	}
	return n;
}

void
tlsprobe_retarget(struct tlsprobe *p, const struct tables *tb)
{
	if (p == NULL)
		return;
	p->npending = targets_of(p->cfg, tb, p->pending);
	p->have_pending = 1;
	if (!p->probing)
		retarget_apply(p);
	/* else at the end of the round */
}

/* ------------------------------------------------------------ API */

struct tlsprobe *
tlsprobe_start(struct event_base *base, const struct config *cfg,
    void (*changed)(void *, const char *, const struct tls_shape *), void *arg)
{
	struct tlsprobe *p;

	if (!cfg->tls_profile_learn)
		return NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->base = base;
	p->cfg = cfg;
	p->changed = changed;
	p->arg = arg;
	p->fd = -1;
	p->nt = targets_of(cfg, NULL, p->t);
	if (p->nt == 0) {
		free(p);
		return NULL;
	}
	p->timer = evtimer_new(base, timeout_cb, p);
	p->quiet = evtimer_new(base, quiet_cb, p);
	p->round_timer = evtimer_new(base, round_cb, p);
	if (p->timer == NULL || p->quiet == NULL || p->round_timer == NULL) {
		tlsprobe_free(p);
		return NULL;
	}
	/* The last profiles first: an offline start has them. */
	for (size_t i = 0; i < p->nt; i++) {
		struct target *t = &p->t[i];
		char name[128], text[512];
		uint8_t *body;
		size_t len;

		cache_name(t, name, sizeof(name));
		if (tgconf_cache_read(cfg->state_dir, name, &body, &len) == -1)
			continue;
		snprintf(text, sizeof(text), "%.*s", (int)len, (char *)body);
		free(body);
		if (tls_shape_parse(text, &t->shape) == -1) {
			log_warnx(
			    "ignoring %s/%s: malformed", cfg->state_dir, name);
			continue;
		}
		t->have = 1;
		log_info("TLS profile of %s from the cache: flight %u bytes",
		    t->key, t->shape.flight);
		changed(arg, t->key, &t->shape);
	}
	struct timeval now = { 0, 0 };
	evtimer_add(p->round_timer, &now);
	return p;
}

void
tlsprobe_each(struct tlsprobe *p,
    void (*fn)(void *, const char *, const struct tls_shape *), void *arg)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nt; i++)
		if (p->t[i].have)
			fn(arg, p->t[i].key, &p->t[i].shape);
}

void
tlsprobe_free(struct tlsprobe *p)
{
	if (p == NULL)
		return;
	p->dying = 1;
	conn_close(p);
	if (p->dnsreq != NULL)
		evdns_getaddrinfo_cancel(p->dnsreq);
	if (p->dns != NULL)
		evdns_base_free(p->dns, 0);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->quiet != NULL)
		event_free(p->quiet);
	if (p->round_timer != NULL)
		event_free(p->round_timer);
	free(p);
}
