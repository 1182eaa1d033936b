/*
 * The proxy secret and the middle-proxy lists (spec B.2.1), kept fresh
 * for the dcpool. Each of the three comes from a file or a URL. A round
 * reads or fetches them one after the other; a good new copy replaces
 * the old one and, for URLs, is written to state_dir; a bad one is
 * logged and never replaces a good one. After a round the state is
 * rebuilt and reported if it changed. Rounds repeat every refresh
 * seconds, sooner (with back-off) after a failure. Nothing here blocks:
 * DNS, TLS and HTTP all run on the dcpool's event loop.
 */
#include "autoconf.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include <curl/curl.h>

#include "config.h"
#include "fetch.h"
#include "log.h"
#include "proxyconf.h"
#include "tgconf.h"
#include "util.h"

/* First retry after a failed round, doubling up to the cap. */
#define RETRY_MIN 10
#define RETRY_MAX 600

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
	struct fetcher *fr;
	struct fetch *f; /* in flight */
	size_t cur; /* item of the round */
	int backoff;
	int retry_delay; /* of this round */
	int round_failed;
	int skew_warned; /* once per round */
	unsigned fails; /* rounds failed in a row */
	const char *round_source;
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

int
tgconf_parse_http_date(const char *s, int64_t *out)
{
	time_t t;

	/* curl_getdate takes RFC 7231's IMF-fixdate and the obsolete RFC
	 * 850 and asctime forms (and is lenient beyond: the header only
	 * feeds a clock warning). */
	if (s == NULL || (t = curl_getdate(s, NULL)) == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
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
check_clock(struct tgconf *t, const struct fetch_result *r)
{
	int64_t skew;

	if (r->date == NULL || t->skew_warned ||
	    tgconf_clock_skew(r->date, now_unix(), &skew) == -1)
		return;
	if (skew <= TGCONF_CLOCK_SKEW_MAX && skew >= -TGCONF_CLOCK_SKEW_MAX)
		return;
	t->skew_warned = 1;
	log_warnx(
	    "clock skew: %s says the time is \"%s\", our clock is %" PRId64
	    " s %s; middle proxies refuse a wrong clock (fix it, "
	    "e.g. with NTP)",
	    r->host, r->date, skew < 0 ? -skew : skew,
	    skew < 0 ? "behind" : "ahead");
}

/* A fetch ended (from its own event, outside libevent's callbacks). */
static void
fetched(void *arg, struct fetch_result *r)
{
	struct tgconf *t = arg;
	struct item *it = &t->items[t->cur];

	t->f = NULL;
	check_clock(t, r);
	if (r->failed)
		item_failed(t, it, "cannot fetch", "from", r->reason);
	else
		item_result(t, it, r->body, r->len, r->tls ? "https" : "http");
	t->cur++;
	next_item(t);
}

static void
fetch_item(struct tgconf *t, struct item *it)
{
	if (t->fr == NULL &&
	    (t->fr = fetcher_new(t->base, t->cfg->ca_file, t->cfg->http_timeout,
	         TGCONF_BODY_MAX)) == NULL) {
		item_failed(t, it, "cannot fetch", "from", "out of memory");
		return;
	}
	t->f = fetcher_get(t->fr, it->where, t->fails, fetched, t);
	if (t->f == NULL)
		item_failed(t, it, "cannot fetch", "from", "out of memory");
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
			fetch_item(t, it);
			if (t->f != NULL)
				return; /* continues in fetched */
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
	if ((t->timer = evtimer_new(base, timer_cb, t)) == NULL) {
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
	/* A fetch still owed a DNS callback outlives us (fetch.c). */
	fetcher_free(t->fr);
	if (t->timer != NULL)
		event_free(t->timer);
	for (size_t i = 0; i < ITEM_COUNT; i++)
		free(t->items[i].body);
	free(t);
}
