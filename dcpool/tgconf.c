/*
 * The proxy secret and the middle-proxy lists (spec B.2.1), kept fresh
 * for the dcpool. Each of the three comes from a file or a URL. A round
 * reads or fetches them one after the other; a good new copy replaces
 * the old one and, for URLs, is written to state_dir; a bad one is
 * logged and never replaces a good one. After a round the state is
 * rebuilt and reported if it changed. Rounds repeat every refresh
 * seconds, sooner (with back-off) after a failure. Nothing here blocks:
 * DNS, TLS and HTTP all run on the dcpool's event loop.
 *
 * Who frees a fetch (issue 7 item 2): a fetch ends by being marked
 * (fetch_done) from whatever callback noticed; the step event then runs
 * on its own, after that callback returned, and closes it (fetch_close).
 * Closing gives back what the fetch holds, except a DNS request still
 * in flight: evdns owns that until its callback reports (with
 * EVUTIL_EAI_CANCEL after our cancel, or an answer), so a closed fetch
 * lives on until then and the callback frees it as its last act. Only
 * fetch_release frees a fetch, and only when it is closed and owes
 * nothing to evdns. If the tgconf goes first, the resolver goes with
 * the last such fetch, from a fresh event (never inside evdns).
 */
#include "autoconf.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "proxyconf.h"
#include "tgconf.h"
#include "util.h"

/* First retry after a failed round, doubling up to the cap. */
#define RETRY_MIN    10
#define RETRY_MAX    600
#define HEADERS_MAX  (64 * 1024)
#define URL_PART_MAX 2048
#define REASON_MAX   512

enum item_kind { ITEM_SECRET, ITEM_CONFIG, ITEM_CONFIG_V6, ITEM_COUNT };
enum item_src { SRC_NONE, SRC_FILE, SRC_URL };

struct item {
	const char *what; /* for log lines */
	const char *cache; /* name in state_dir */
	enum item_src src;
	const char *where; /* path or URL */
	int required; /* v6 is not */
	uint8_t *body; /* last good copy */
	size_t len;
	struct proxyconf conf; /* parsed body of a list */
};

struct fetch;

struct tgconf {
	struct event_base *base;
	const struct config *cfg;
	void (*changed)(void *, const struct tg_state *);
	void *arg;
	struct item items[ITEM_COUNT];
	struct tg_state state; /* as last reported */
	struct tg_state next; /* being built */
	struct proxyconf scratch; /* a list being checked */
	struct event *timer; /* next round */
	struct event *step; /* a fetch finished */
	struct evdns_base *dns;
	struct fetch *f; /* in flight */
	size_t cur; /* item of the round */
	int backoff;
	int retry_delay; /* of this round */
	int round_failed;
	int skew_warned; /* once per round */
	unsigned fails; /* rounds failed in a row */
	const char *round_source;
};

struct fetch {
	struct tgconf *t;
	struct item *it;
	char host[256]; /* no brackets */
	char hosthdr[300]; /* Host: value */
	char path[URL_PART_MAX];
	int port;
	char ip[INET6_ADDRSTRLEN]; /* connected to */
	int tls;
	struct evdns_getaddrinfo_request *dnsreq; /* owed a callback */
	int resolved;
	int closed; /* fetch_close ran: only the DNS callback is awaited */
	int cancelling; /* inside evdns_getaddrinfo_cancel */
	struct event_base *base;
	struct evdns_base *orphan_dns; /* to free after the callback */
	SSL *ssl; /* owned by bev */
	struct bufferevent *bev; /* owned by evcon */
	struct evhttp_connection *evcon;
	struct event *deadline;
	int done;
	int failed;
	char reason[REASON_MAX];
	uint8_t *body;
	size_t len;
};

static void round_start(struct tgconf *);
static void next_item(struct tgconf *);

/* ------------------------------------------------------------ pure parts */

int
tgconf_check_secret(const uint8_t *body, size_t len, char *err, size_t errlen)
{
	(void)body;
	if (len < TGCONF_SECRET_MIN || len > TGCONF_SECRET_MAX) {
		snprintf(err, errlen, "%zu bytes, not %d to %d", len,
		    TGCONF_SECRET_MIN, TGCONF_SECRET_MAX);
		return -1;
	}
	return 0;
}

int
tgconf_check_config(const uint8_t *body, size_t len, struct proxyconf *out,
    char *err, size_t errlen)
{
	if (len > TGCONF_BODY_MAX) {
		snprintf(err, errlen, "%zu bytes, more than %d", len,
		    TGCONF_BODY_MAX);
		return -1;
	}
	/* proxyconf_parse refuses a text without any proxy_for. */
	return proxyconf_parse((const char *)body, len, out, err, errlen);
}

static int
same_addr(const struct proxyconf_entry *x, const struct proxyconf_entry *y)
{
	if (x->addrlen != y->addrlen ||
	    x->addr.sa.sa_family != y->addr.sa.sa_family)
		return 0;
	if (x->addr.sa.sa_family == AF_INET)
		return x->addr.sin.sin_port == y->addr.sin.sin_port &&
		    x->addr.sin.sin_addr.s_addr == y->addr.sin.sin_addr.s_addr;
	if (x->addr.sa.sa_family == AF_INET6)
		return x->addr.sin6.sin6_port == y->addr.sin6.sin6_port &&
		    memcmp(&x->addr.sin6.sin6_addr, &y->addr.sin6.sin6_addr,
		        sizeof(x->addr.sin6.sin6_addr)) == 0;
	return 0;
}

static int
proxyconf_equal(const struct proxyconf *a, const struct proxyconf *b)
{
	if (a->n != b->n || a->n > PROXYCONF_MAX_ENTRIES ||
	    a->has_default != b->has_default ||
	    (a->has_default && a->default_dc != b->default_dc))
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (a->entries[i].dc != b->entries[i].dc ||
		    !same_addr(&a->entries[i], &b->entries[i]))
			return 0;
	return 1;
}

int
tgconf_state_equal(const struct tg_state *a, const struct tg_state *b)
{
	return a->secret_len == b->secret_len &&
	    a->secret_len <= sizeof(a->secret) &&
	    memcmp(a->secret, b->secret, a->secret_len) == 0 &&
	    proxyconf_equal(&a->v4, &b->v4) && proxyconf_equal(&a->v6, &b->v6);
}

/* Only spaces may follow what strptime consumed. */
static int
date_try(const char *s, const char *fmt, struct tm *tm)
{
	const char *end;

	memset(tm, 0, sizeof(*tm));
	if ((end = strptime(s, fmt, tm)) == NULL)
		return -1;
	while (*end == ' ' || *end == '\t')
		end++;
	return *end == '\0' ? 0 : -1;
}

int
tgconf_parse_http_date(const char *s, int64_t *out)
{
	/* RFC 7231 7.1.1.1: IMF-fixdate, and the obsolete RFC 850 and
	 * asctime forms a recipient must accept. */
	static const char *const fmts[] = {
		"%a, %d %b %Y %H:%M:%S GMT",
		"%A, %d-%b-%y %H:%M:%S GMT",
		"%a %b %e %H:%M:%S %Y",
	};
	struct tm tm;
	time_t t;

	if (s == NULL)
		return -1;
	while (*s == ' ' || *s == '\t')
		s++;
	for (size_t i = 0; i < nitems(fmts); i++) {
		if (date_try(s, fmts[i], &tm) == -1)
			continue;
		if ((t = timegm(&tm)) == (time_t)-1)
			return -1;
		*out = (int64_t)t;
		return 0;
	}
	return -1;
}

int
tgconf_clock_skew(const char *date, int64_t now, int64_t *skew)
{
	int64_t theirs;

	if (tgconf_parse_http_date(date, &theirs) == -1)
		return -1;
	*skew = now - theirs;
	return 0;
}

static int
path_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
tgconf_cache_write(
    const char *dir, const char *name, const uint8_t *body, size_t len)
{
	char path[4200], tmp[4200];
	size_t off = 0;
	int fd, saved;

	if (path_join(path, sizeof(path), dir, name) == -1 ||
	    snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >=
	        (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = mkstemp(tmp)) == -1)
		return -1;
	if (fchmod(fd, 0600) == -1)
		goto fail;
	while (off < len) {
		ssize_t w = write(fd, body + off, len - off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	/* The data must be on disk before the name points at it. */
	if (fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	return 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

static int
read_file(const char *path, uint8_t **body, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t n = 0;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	/* One byte more than allowed, to see a file that is too large. */
	if ((buf = malloc(TGCONF_BODY_MAX + 1)) == NULL) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	while (n < TGCONF_BODY_MAX + 1) {
		ssize_t r = read(fd, buf + n, TGCONF_BODY_MAX + 1 - n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			saved = errno;
			free(buf);
			close(fd);
			errno = saved;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n > TGCONF_BODY_MAX) {
		free(buf);
		errno = EFBIG;
		return -1;
	}
	*body = buf;
	*len = n;
	return 0;
}

int
tgconf_cache_read(
    const char *dir, const char *name, uint8_t **body, size_t *len)
{
	char path[4200];

	if (path_join(path, sizeof(path), dir, name) == -1)
		return -1;
	return read_file(path, body, len);
}

/* ------------------------------------------------------------ items */

static size_t
count_dcs(const struct proxyconf *pc)
{
	size_t n = 0;

	for (size_t i = 0; i < pc->n; i++)
		if (i == 0 || pc->entries[i].dc != pc->entries[i - 1].dc)
			n++;
	return n;
}

static int
item_is_secret(const struct item *it)
{
	return strcmp(it->cache, TGCONF_CACHE_SECRET) == 0;
}

/* 0 (a list parsed into *out), or -1 and why. */
static int
item_check(const struct item *it, const uint8_t *body, size_t len,
    struct proxyconf *out, char *err, size_t errlen)
{
	if (item_is_secret(it))
		return tgconf_check_secret(body, len, err, errlen);
	return tgconf_check_config(body, len, out, err, errlen);
}

/* "128 bytes" or "42 middle proxies for 10 DCs". */
static const char *
item_summary(const struct item *it, char *buf, size_t cap)
{
	if (item_is_secret(it))
		snprintf(buf, cap, "%zu bytes", it->len);
	else
		snprintf(buf, cap, "%zu middle proxies for %zu DCs", it->conf.n,
		    count_dcs(&it->conf));
	return buf;
}

/* Takes body (malloc'ed) as the new good copy. */
static void
item_set(struct item *it, uint8_t *body, size_t len, const struct proxyconf *pc)
{
	free(it->body);
	it->body = body;
	it->len = len;
	if (!item_is_secret(it))
		it->conf = *pc;
}

static int
next_delay(const struct tgconf *t)
{
	return t->round_failed ? t->retry_delay : t->cfg->refresh;
}

/*
 * A copy could not be had ("cannot fetch the proxy secret from URL: why"):
 * logged with what happens next.
 */
static void
item_failed(struct tgconf *t, struct item *it, const char *verb,
    const char *prep, const char *reason)
{
	const char *kept = it->body ? "keeping the last good copy" : "none yet";

	if (it->required) {
		t->round_failed = 1;
		log_warnx("%s the %s %s %s: %s; %s; retrying in %d s", verb,
		    it->what, prep, it->where, reason, kept, t->retry_delay);
	} else
		log_warnx("%s the %s %s %s: %s; %s (it is optional); next try "
		          "in %d s",
		    verb, it->what, prep, it->where, reason, kept,
		    next_delay(t));
}

/* A new body of an item: checked, compared, taken, cached. */
static void
item_result(struct tgconf *t, struct item *it, uint8_t *body, size_t len,
    const char *source)
{
	struct proxyconf *pc = &t->scratch;
	char err[256], sum[96];

	if (item_check(it, body, len, pc, err, sizeof(err)) == -1) {
		free(body);
		item_failed(
		    t, it, "refusing", it->src == SRC_URL ? "from" : "in", err);
		return;
	}
	if (it->body != NULL && it->len == len &&
	    memcmp(it->body, body, len) == 0) {
		free(body);
		log_info("the %s at %s is unchanged (%s)", it->what, it->where,
		    item_summary(it, sum, sizeof(sum)));
		return;
	}
	item_set(it, body, len, pc);
	t->round_source = source;
	log_info("%s the %s from %s: %s",
	    it->src == SRC_URL ? "fetched" : "read", it->what, it->where,
	    item_summary(it, sum, sizeof(sum)));
	if (it->src != SRC_URL)
		return;
	if (tgconf_cache_write(t->cfg->state_dir, it->cache, body, len) == -1)
		log_warn("cannot keep a copy in %s/%s", t->cfg->state_dir,
		    it->cache);
}

static void
item_read_file(struct tgconf *t, struct item *it)
{
	uint8_t *body;
	size_t len;

	if (read_file(it->where, &body, &len) == -1) {
		item_failed(t, it, "cannot read", "from",
		    errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
		return;
	}
	item_result(t, it, body, len, "file");
}

/* ------------------------------------------------------------ state */

/* Builds t->next from the good copies; 1 if it is complete. */
static int
state_build(struct tgconf *t)
{
	const struct item *s = &t->items[ITEM_SECRET];
	const struct item *c = &t->items[ITEM_CONFIG];
	const struct item *c6 = &t->items[ITEM_CONFIG_V6];
	struct tg_state *n = &t->next;

	memset(n, 0, sizeof(*n));
	if (s->body == NULL || c->body == NULL || s->len > sizeof(n->secret))
		return 0;
	memcpy(n->secret, s->body, s->len);
	n->secret_len = s->len;
	n->v4 = c->conf;
	if (c6->body != NULL)
		n->v6 = c6->conf;
	return 1;
}

static void
state_publish(struct tgconf *t, const char *source)
{
	if (!state_build(t) || tgconf_state_equal(&t->next, &t->state))
		return;
	t->state = t->next;
	t->state.source = source;
	log_notice("middle-proxy config now from %s: secret %zu bytes, %zu "
	           "IPv4 and %zu IPv6 middle proxies",
	    source, t->state.secret_len, t->state.v4.n, t->state.v6.n);
	if (t->changed != NULL)
		t->changed(t->arg, &t->state);
}

/* The copies kept by an earlier run, so a restart works offline. */
static void
cache_load(struct tgconf *t)
{
	struct proxyconf *pc = &t->scratch;
	size_t loaded = 0, wanted = 0;
	char err[256];

	for (size_t i = 0; i < ITEM_COUNT; i++) {
		struct item *it = &t->items[i];
		uint8_t *body;
		size_t len;

		if (it->src != SRC_URL)
			continue;
		wanted++;
		if (tgconf_cache_read(
		        t->cfg->state_dir, it->cache, &body, &len) == -1) {
			if (errno != ENOENT)
				log_warn("ignoring the cached %s %s/%s",
				    it->what, t->cfg->state_dir, it->cache);
			continue;
		}
		if (item_check(it, body, len, pc, err, sizeof(err)) == -1) {
			log_warnx("ignoring the cached %s %s/%s: %s", it->what,
			    t->cfg->state_dir, it->cache, err);
			free(body);
			continue;
		}
		item_set(it, body, len, pc);
		loaded++;
	}
	if (wanted == 0)
		return;
	if (state_build(t))
		log_info(
		    "loaded the cached middle-proxy config from %s: "
		    "secret %zu bytes, %zu IPv4 and %zu IPv6 middle proxies; "
		    "refreshing it",
		    t->cfg->state_dir, t->next.secret_len, t->next.v4.n,
		    t->next.v6.n);
	else
		log_info("no usable cached middle-proxy config in %s (%zu of "
		         "%zu copies); fetching it",
		    t->cfg->state_dir, loaded, wanted);
}

/* ------------------------------------------------------------ HTTP */

static void
dns_free_cb(evutil_socket_t fd, short what, void *arg)
{
	evdns_base_free(arg, 0);
}

/* The one place a fetch is freed: closed, and evdns owes it nothing. */
static void
fetch_release(struct fetch *f)
{
	static const struct timeval now = { 0, 0 };

	if (f->orphan_dns != NULL &&
	    event_base_once(f->base, -1, EV_TIMEOUT, dns_free_cb, f->orphan_dns,
	        &now) == -1)
		log_warnx("cannot free the resolver of the config fetches");
	free(f->body);
	free(f);
}

/*
 * Closes a fetch: everything but a DNS request in flight goes now. 0
 * when the fetch is freed, 1 when it waits for its DNS callback.
 */
static int
fetch_close(struct fetch *f)
{
	f->closed = 1;
	f->done = 1; /* a late callback must do nothing */
	if (f->evcon != NULL)
		evhttp_connection_free(f->evcon); /* and bev, ssl */
	else if (f->bev != NULL)
		bufferevent_free(f->bev);
	f->evcon = NULL;
	f->bev = NULL;
	if (f->deadline != NULL)
		event_free(f->deadline);
	f->deadline = NULL;
	if (f->dnsreq != NULL) {
		/* The callback may come from within the cancel or later;
		 * either way it clears dnsreq, and frees f only later. */
		f->cancelling = 1;
		evdns_getaddrinfo_cancel(f->dnsreq);
		f->cancelling = 0;
	}
	if (f->dnsreq != NULL)
		return 1;
	fetch_release(f);
	return 0;
}

/* Ends the fetch (once); the rest runs from the step event. */
static void fetch_done(struct fetch *f, int failed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fetch_done(struct fetch *f, int failed, const char *fmt, ...)
{
	va_list ap;

	if (f->done)
		return;
	f->done = 1;
	f->failed = failed;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(f->reason, sizeof(f->reason), fmt, ap);
		va_end(ap);
	}
	event_active(f->t->step, EV_TIMEOUT, 0);
}

/* Why a TLS connection failed, if TLS is the reason. */
static int
tls_reason(struct fetch *f, char *buf, size_t cap)
{
	unsigned long e, last = 0;
	long v;

	if (!f->tls || f->ssl == NULL)
		return 0;
	if ((v = SSL_get_verify_result(f->ssl)) != X509_V_OK) {
		snprintf(buf, cap, "TLS certificate verification failed: %s",
		    X509_verify_cert_error_string(v));
		return 1;
	}
	/* libevent also queues bare SSL_get_error() codes (library 0),
	 * such as SSL_ERROR_SYSCALL for a refused connection: errno tells
	 * more about those. */
	while ((e = bufferevent_get_openssl_error(f->bev)) != 0)
		if (ERR_GET_LIB(e) != 0 || ERR_SYSTEM_ERROR(e))
			last = e;
	if (last == 0)
		return 0;
	if (ERR_SYSTEM_ERROR(last)) {
		snprintf(buf, cap, "connection failed: %s",
		    strerror(ERR_GET_REASON(last)));
		return 1;
	}
	snprintf(buf, cap, "TLS: ");
	ERR_error_string_n(last, buf + strlen(buf), cap - strlen(buf));
	return 1;
}

static void
req_error_cb(enum evhttp_request_error e, void *arg)
{
	struct fetch *f = arg;
	int saved = errno;
	char tls[256];

	if (f->done)
		return;
	if (tls_reason(f, tls, sizeof(tls))) {
		fetch_done(f, 1, "%s", tls);
		return;
	}
	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		fetch_done(
		    f, 1, "timed out after %d s", f->t->cfg->http_timeout);
		break;
	case EVREQ_HTTP_EOF:
		if (saved != 0 && saved != EAGAIN && saved != EINPROGRESS &&
		    saved != ENOTCONN)
			fetch_done(f, 1, "connection to %s port %d failed: %s",
			    f->ip, f->port, strerror(saved));
		else
			fetch_done(f, 1,
			    "connection to %s port %d closed "
			    "before a complete answer",
			    f->ip, f->port);
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		fetch_done(f, 1, "malformed HTTP answer");
		break;
	case EVREQ_HTTP_DATA_TOO_LONG:
		fetch_done(
		    f, 1, "answer larger than %d bytes", TGCONF_BODY_MAX);
		break;
	default:
		fetch_done(f, 1, "HTTP request failed (%d)", (int)e);
	}
}

static void
check_clock(struct fetch *f, struct evhttp_request *req)
{
	const char *date =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Date");
	int64_t skew;

	if (date == NULL || f->t->skew_warned ||
	    tgconf_clock_skew(date, now_unix(), &skew) == -1)
		return;
	if (skew <= TGCONF_CLOCK_SKEW_MAX && skew >= -TGCONF_CLOCK_SKEW_MAX)
		return;
	f->t->skew_warned = 1;
	log_warnx(
	    "clock skew: %s says the time is \"%s\", our clock is %" PRId64
	    " s %s; middle proxies refuse a wrong clock (fix it, "
	    "e.g. with NTP)",
	    f->hosthdr, date, skew < 0 ? -skew : skew,
	    skew < 0 ? "behind" : "ahead");
}

static void
req_cb(struct evhttp_request *req, void *arg)
{
	struct fetch *f = arg;
	struct evbuffer *in;
	int saved = errno, code;
	size_t len;

	if (f->done)
		return;
	/* A failed connect ends here with no code and no error callback;
	 * errno is still the connect's (libevent keeps it for us). */
	if (req == NULL ||
	    (code = evhttp_request_get_response_code(req)) == 0) {
		char tls[256];

		/* A TLS socket whose connect failed reads ENOTCONN. */
		if (tls_reason(f, tls, sizeof(tls)))
			fetch_done(f, 1, "%s", tls);
		else if (saved != 0 && saved != EAGAIN &&
		    saved != EINPROGRESS && saved != ENOTCONN)
			fetch_done(f, 1, "no HTTP answer from %s port %d: %s",
			    f->ip, f->port, strerror(saved));
		else
			fetch_done(f, 1,
			    "no HTTP answer from %s port %d "
			    "(refused, unreachable or closed)",
			    f->ip, f->port);
		return;
	}
	check_clock(f, req);
	if (code != HTTP_OK) {
		const char *line = evhttp_request_get_response_code_line(req);

		fetch_done(f, 1, "HTTP status %d%s%s", code, line ? " " : "",
		    line ? line : "");
		return;
	}
	in = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(in);
	if (len > TGCONF_BODY_MAX) {
		fetch_done(
		    f, 1, "answer larger than %d bytes", TGCONF_BODY_MAX);
		return;
	}
	if ((f->body = malloc(len > 0 ? len : 1)) == NULL) {
		fetch_done(f, 1, "out of memory");
		return;
	}
	if (evbuffer_remove(in, f->body, len) != (int)len) {
		fetch_done(f, 1, "cannot read the answer");
		return;
	}
	f->len = len;
	fetch_done(f, 0, NULL);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f = arg;

	fetch_done(f, 1, "timed out after %d s", f->t->cfg->http_timeout);
}

static SSL *
tls_new(struct fetch *f)
{
	const struct config *cfg = f->t->cfg;
	struct in6_addr a6;
	struct in_addr a4;
	SSL_CTX *ctx;
	SSL *ssl = NULL;
	int ip;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		fetch_done(f, 1, "cannot make a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cfg->ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) !=
		    1) {
			char e[160];

			ERR_error_string_n(ERR_get_error(), e, sizeof(e));
			ERR_clear_error();
			fetch_done(f, 1, "cannot load CA file %s: %s",
			    cfg->ca_file, e);
			goto out;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ERR_clear_error();
		fetch_done(f, 1, "cannot load the system's CA store");
		goto out;
	}
	if ((ssl = SSL_new(ctx)) == NULL) {
		fetch_done(f, 1, "cannot make a TLS session");
		goto out;
	}
	ip = inet_pton(AF_INET, f->host, &a4) == 1 ||
	    inet_pton(AF_INET6, f->host, &a6) == 1;
	/* The certificate must name the host of the URL (no SNI for an
	 * address, RFC 6066 section 3). */
	if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), f->host) !=
	            1
	       : (SSL_set_tlsext_host_name(ssl, f->host) != 1 ||
	             SSL_set1_host(ssl, f->host) != 1)) {
		SSL_free(ssl);
		ssl = NULL;
		fetch_done(f, 1, "cannot set the TLS host name");
		goto out;
	}
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
out:
	SSL_CTX_free(ctx); /* the SSL holds a reference */
	return ssl;
}

static void
fetch_connect(struct fetch *f, const struct sockaddr *sa)
{
	struct tgconf *t = f->t;
	struct evhttp_request *req;
	struct evkeyvalq *h;
	char *ip = f->ip;
	const void *a;

	a = sa->sa_family == AF_INET
	    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
	    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (evutil_inet_ntop(sa->sa_family, a, ip, sizeof(f->ip)) == NULL) {
		fetch_done(f, 1, "bad address for %s", f->host);
		return;
	}
	if (f->tls) {
		if ((f->ssl = tls_new(f)) == NULL)
			return;
		f->bev = bufferevent_openssl_socket_new(t->base, -1, f->ssl,
		    BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (f->bev == NULL) {
			SSL_free(f->ssl);
			f->ssl = NULL;
		} else
			/* Servers often close without close_notify; the
			 * length is checked by HTTP and by our parsers. */
			bufferevent_openssl_set_allow_dirty_shutdown(f->bev, 1);
	} else
		f->bev = bufferevent_socket_new(t->base, -1,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (f->bev == NULL) {
		fetch_done(f, 1, "cannot make a connection buffer");
		return;
	}
	f->evcon = evhttp_connection_base_bufferevent_new(
	    t->base, t->dns, f->bev, ip, (unsigned short)f->port);
	if (f->evcon == NULL) {
		fetch_done(f, 1, "cannot make an HTTP connection");
		return;
	}
	evhttp_connection_set_timeout(f->evcon, t->cfg->http_timeout);
	evhttp_connection_set_max_body_size(f->evcon, TGCONF_BODY_MAX);
	evhttp_connection_set_max_headers_size(f->evcon, HEADERS_MAX);
	evhttp_connection_set_retries(f->evcon, 0);
	if ((req = evhttp_request_new(req_cb, f)) == NULL) {
		fetch_done(f, 1, "out of memory");
		return;
	}
	evhttp_request_set_error_cb(req, req_error_cb);
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", f->hosthdr);
	evhttp_add_header(h, "User-Agent", "mtprotod/" PACKAGE_VERSION);
	evhttp_add_header(h, "Accept", "*/*");
	evhttp_add_header(h, "Connection", "close");
	log_debug("fetching %s from %s port %d", f->it->where, ip, f->port);
	if (evhttp_make_request(f->evcon, req, EVHTTP_REQ_GET, f->path) == -1)
		fetch_done(f, 1, "cannot send the HTTP request");
}

static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct fetch *f = arg;
	struct evutil_addrinfo *ai, *pick = NULL;
	size_t n = 0, k;

	f->dnsreq = NULL;
	f->resolved = 1;
	if (result == EVUTIL_EAI_CANCEL || f->done) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		/* A closed fetch waited only for this. */
		if (f->closed && !f->cancelling)
			fetch_release(f);
		return;
	}
	if (result != 0) {
		fetch_done(f, 1, "cannot resolve %s: %s", f->host,
		    evutil_gai_strerror(result));
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			n++;
	if (n == 0) {
		fetch_done(f, 1, "no address for %s", f->host);
		evutil_freeaddrinfo(res);
		return;
	}
	/* IPv4 first (more often reachable), and after a failed round the
	 * next address, so one dead address does not stop us. */
	k = f->t->fails % n;
	for (int fam = 0; fam < 2 && pick == NULL; fam++)
		for (ai = res; ai != NULL && pick == NULL; ai = ai->ai_next)
			if (ai->ai_family == (fam == 0 ? AF_INET : AF_INET6) &&
			    k-- == 0)
				pick = ai;
	fetch_connect(f, pick->ai_addr);
	evutil_freeaddrinfo(res);
}

/* Splits the URL; -1 and why on an error. */
static int
fetch_parse_url(struct fetch *f, const char *url)
{
	struct evhttp_uri *u;
	const char *scheme, *host, *path, *query;
	size_t hl;
	int r = -1;

	if ((u = evhttp_uri_parse(url)) == NULL) {
		fetch_done(f, 1, "malformed URL");
		return -1;
	}
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	if (scheme == NULL || host == NULL || host[0] == '\0') {
		fetch_done(f, 1, "URL without a host");
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0)
		f->tls = 1;
	else if (strcasecmp(scheme, "http") != 0) {
		fetch_done(f, 1, "not an http:// or https:// URL");
		goto out;
	}
	hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	if (hl >= sizeof(f->host)) {
		fetch_done(f, 1, "host name too long");
		goto out;
	}
	memcpy(f->host, host, hl);
	f->host[hl] = '\0';
	f->port = evhttp_uri_get_port(u);
	if (f->port <= 0 || f->port > 65535)
		f->port = f->tls ? 443 : 80;
	if (evhttp_uri_get_port(u) > 0)
		snprintf(f->hosthdr, sizeof(f->hosthdr), "%s:%d",
		    evhttp_uri_get_host(u), f->port);
	else
		snprintf(f->hosthdr, sizeof(f->hosthdr), "%s",
		    evhttp_uri_get_host(u));
	if (snprintf(f->path, sizeof(f->path), "%s%s%s",
	        path && path[0] ? path : "/", query ? "?" : "",
	        query ? query : "") >= (int)sizeof(f->path)) {
		fetch_done(f, 1, "URL too long");
		goto out;
	}
	r = 0;
out:
	evhttp_uri_free(u);
	return r;
}

const char *tgconf_resolv_conf = NULL;

static struct evdns_base *
dns_new(struct event_base *base)
{
	struct evdns_base *dns;

	if (tgconf_resolv_conf == NULL)
		return evdns_base_new(base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS |
		        EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns != NULL &&
	    evdns_base_resolv_conf_parse(
	        dns, DNS_OPTIONS_ALL, tgconf_resolv_conf) != 0) {
		evdns_base_free(dns, 0);
		dns = NULL;
	}
	return dns;
}

static void
fetch_start(struct tgconf *t, struct item *it)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *r;
	struct fetch *f;
	char port[8];
	struct timeval tv = { t->cfg->http_timeout, 0 };

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		item_failed(t, it, "cannot fetch", "from", "out of memory");
		t->cur++;
		next_item(t);
		return;
	}
	f->t = t;
	f->it = it;
	f->base = t->base;
	t->f = f;
	if ((f->deadline = evtimer_new(t->base, deadline_cb, f)) == NULL) {
		fetch_done(f, 1, "out of memory");
		return;
	}
	evtimer_add(f->deadline, &tv);
	if (fetch_parse_url(f, it->where) == -1)
		return;
	if (t->dns == NULL) {
		t->dns = dns_new(t->base);
		if (t->dns == NULL) {
			fetch_done(f, 1, "cannot set up DNS (resolv.conf?)");
			return;
		}
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%d", f->port);
	/* The callback may run before this returns (a literal, hosts). */
	r = evdns_getaddrinfo(t->dns, f->host, port, &hints, dns_cb, f);
	if (!f->resolved)
		f->dnsreq = r;
}

/* A fetch ended (from the step event, outside libevent's callbacks). */
static void
step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tgconf *t = arg;
	struct fetch *f = t->f;
	struct item *it;

	if (f == NULL || !f->done)
		return;
	t->f = NULL;
	it = f->it;
	if (f->failed)
		item_failed(t, it, "cannot fetch", "from", f->reason);
	else {
		item_result(t, it, f->body, f->len, f->tls ? "https" : "http");
		f->body = NULL;
	}
	fetch_close(f);
	t->cur++;
	next_item(t);
}

/* ------------------------------------------------------------ rounds */

static void
round_end(struct tgconf *t)
{
	int delay = next_delay(t);
	struct timeval tv = { delay, 0 };

	if (t->round_source != NULL)
		state_publish(t, t->round_source);
	if (t->round_failed) {
		t->fails++;
		t->backoff *= 2;
		if (t->backoff > RETRY_MAX)
			t->backoff = RETRY_MAX;
		if (t->backoff > t->cfg->refresh)
			t->backoff = t->cfg->refresh;
	} else {
		t->fails = 0;
		t->backoff =
		    RETRY_MIN < t->cfg->refresh ? RETRY_MIN : t->cfg->refresh;
		log_debug("middle-proxy config: next refresh in %d s", delay);
	}
	evtimer_add(t->timer, &tv);
}

static void
next_item(struct tgconf *t)
{
	while (t->cur < ITEM_COUNT) {
		struct item *it = &t->items[t->cur];

		if (it->src == SRC_URL) {
			fetch_start(t, it);
			return; /* continues in step_cb */
		}
		if (it->src == SRC_FILE)
			item_read_file(t, it);
		t->cur++;
	}
	round_end(t);
}

static void
round_start(struct tgconf *t)
{
	t->cur = 0;
	t->round_failed = 0;
	t->skew_warned = 0;
	t->round_source = NULL;
	t->retry_delay = t->backoff;
	next_item(t);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	round_start(arg);
}

/* ------------------------------------------------------------ API */

static void
item_init(struct item *it, const char *what, const char *cache,
    const char *file, const char *url, int required)
{
	it->what = what;
	it->cache = cache;
	it->required = required;
	if (file != NULL && file[0] != '\0') {
		it->src = SRC_FILE;
		it->where = file;
	} else if (url != NULL && url[0] != '\0') {
		it->src = SRC_URL;
		it->where = url;
	} else
		it->src = SRC_NONE;
}

struct tgconf *
tgconf_start(struct event_base *base, const struct config *cfg,
    void (*changed)(void *, const struct tg_state *), void *arg)
{
	struct tgconf *t;
	struct timeval now = { 0, 0 };

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->base = base;
	t->cfg = cfg;
	t->changed = changed;
	t->arg = arg;
	t->backoff = RETRY_MIN < cfg->refresh ? RETRY_MIN : cfg->refresh;
	item_init(&t->items[ITEM_SECRET], "proxy secret", TGCONF_CACHE_SECRET,
	    cfg->proxy_secret_file, cfg->proxy_secret_url, 1);
	item_init(&t->items[ITEM_CONFIG], "middle-proxy list",
	    TGCONF_CACHE_CONFIG, cfg->proxy_config_file, cfg->proxy_config_url,
	    1);
	/* A pinned IPv4 list means no fetching; IPv6 then only by file. */
	item_init(&t->items[ITEM_CONFIG_V6], "IPv6 middle-proxy list",
	    TGCONF_CACHE_CONFIG_V6, cfg->proxy_config_v6_file,
	    cfg->proxy_config_file[0] != '\0' ? NULL : cfg->proxy_config_v6_url,
	    0);
	if ((t->timer = evtimer_new(base, timer_cb, t)) == NULL ||
	    (t->step = event_new(base, -1, 0, step_cb, t)) == NULL) {
		tgconf_free(t);
		return NULL;
	}
	cache_load(t);
	state_publish(t, "cache");
	evtimer_add(t->timer, &now);
	return t;
}

const struct tg_state *
tgconf_state(const struct tgconf *t)
{
	static const struct tg_state none;

	return t != NULL ? &t->state : &none;
}

void
tgconf_free(struct tgconf *t)
{
	if (t == NULL)
		return;
	/* A fetch still owed a DNS callback outlives us, and takes the
	 * resolver along (see the top of this file). */
	if (t->f != NULL && fetch_close(t->f) == 1) {
		t->f->orphan_dns = t->dns;
		t->dns = NULL;
	}
	t->f = NULL;
	if (t->timer != NULL)
		event_free(t->timer);
	if (t->step != NULL)
		event_free(t->step);
	if (t->dns != NULL)
		evdns_base_free(t->dns, 0);
	for (size_t i = 0; i < ITEM_COUNT; i++)
		free(t->items[i].body);
	free(t);
}
