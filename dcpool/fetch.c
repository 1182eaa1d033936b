/*
 * HTTP(S) GET for the dcpool (fetch.h): libcurl's multi interface on
 * the dcpool's libevent loop (curl's sockets and timer become events).
 * Names are resolved with evdns (so that resolv_conf and a chroot
 * work, and a lookup is cancelled with the fetch), and the address
 * picked is given to curl with CURLOPT_RESOLVE; a redirect to another
 * host is resolved by curl itself.
 *
 * Who frees a fetch (issue 7 item 2): a fetch ends by being marked
 * (fetch_done) from whatever callback noticed; its step event then runs
 * on its own, after that callback returned, reports and closes it
 * (fetch_close). Closing gives back what the fetch holds, except a DNS
 * request still in flight: evdns owns that until its callback reports
 * (with EVUTIL_EAI_CANCEL after our cancel, or an answer), so a closed
 * fetch lives on until then and the callback frees it as its last act.
 * Only fetch_release frees a fetch, and only when it is closed and owes
 * nothing to evdns. A fetcher freed while such fetches remain lives on
 * with them, and its resolver goes with the last one, from a fresh
 * event (never inside evdns).
 */
#include "autoconf.h"

#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/x509.h>

#include "fetch.h"
#include "log.h"

#define REASON_MAX    512
#define REDIRECTS_MAX 3

/* An event for one of curl's sockets. */
struct sockev {
	struct sockev *next;
	curl_socket_t fd;
	struct event *ev;
};

struct fetcher {
	struct event_base *base;
	struct evdns_base *dns; /* made at the first lookup */
	char *ca_file;
	int timeout;
	size_t body_max;
	struct fetch *list; /* not yet closed */
	unsigned live; /* not yet released */
	int closing; /* fetcher_free ran */
	int in_free; /* inside fetcher_free */
	CURLM *multi;
	struct event *curl_timer;
	struct sockev *socks;
};

struct fetch {
	struct fetcher *fr;
	struct fetch *next, **pprev; /* on fr->list while open */
	char *url;
	unsigned pick;
	fetch_cb cb;
	void *arg;
	struct event *step; /* reports and closes a finished fetch */
	char host[256]; /* no brackets */
	char hosthdr[300]; /* Host: value */
	int port;
	char ip[INET6_ADDRSTRLEN]; /* connected to */
	int tls;
	struct evdns_getaddrinfo_request *dnsreq; /* owed a callback */
	int resolved;
	int closed; /* fetch_close ran: only the DNS callback is awaited */
	int cancelling; /* inside evdns_getaddrinfo_cancel */
	CURL *easy; /* in fr->multi while set */
	struct curl_slist *resolve;
	char errbuf[CURL_ERROR_SIZE];
	int too_big;
	size_t cap;
	struct event *deadline;
	int done;
	int failed;
	char reason[REASON_MAX];
	char date[64];
	int has_date;
	uint8_t *body;
	size_t len;
};

const char *fetch_resolv_conf = NULL;

/* A freed fetcher's last fetch is gone: its resolver and itself go. */
static void
fetcher_end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetcher *fr = arg;

	if (fr->dns != NULL)
		evdns_base_free(fr->dns, 0);
	free(fr->ca_file);
	free(fr);
}

/* The one place a fetch is freed: closed, and evdns owes it nothing. */
static void
fetch_release(struct fetch *f)
{
	static const struct timeval now = { 0, 0 };
	struct fetcher *fr = f->fr;

	free(f->url);
	free(f->body);
	free(f);
	if (--fr->live > 0 || !fr->closing || fr->in_free)
		return;
	/* The last fetch of a freed fetcher: we may be inside evdns, so
	 * the rest goes from a fresh event. */
	if (event_base_once(
	        fr->base, -1, EV_TIMEOUT, fetcher_end_cb, fr, &now) == -1)
		log_warnx("cannot free the resolver of the HTTP fetches");
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
	if (f->pprev != NULL) {
		*f->pprev = f->next;
		if (f->next != NULL)
			f->next->pprev = f->pprev;
		f->pprev = NULL;
	}
	if (f->step != NULL)
		event_free(f->step);
	f->step = NULL;
	if (f->easy != NULL) {
		/* Its sockets' events go through sock_cb. */
		curl_multi_remove_handle(f->fr->multi, f->easy);
		curl_easy_cleanup(f->easy);
		f->easy = NULL;
	}
	curl_slist_free_all(f->resolve);
	f->resolve = NULL;
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
	event_active(f->step, EV_TIMEOUT, 0);
}

/* ------------------------------------------------------------ curl */

static size_t
body_cb(char *p, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;

	n *= size;
	if (f->len + n > f->fr->body_max) {
		f->too_big = 1;
		return 0; /* curl stops with CURLE_WRITE_ERROR */
	}
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		uint8_t *b;

		while (cap < f->len + n)
			cap *= 2;
		if (cap > f->fr->body_max)
			cap = f->fr->body_max;
		if ((b = realloc(f->body, cap)) == NULL)
			return 0;
		f->body = b;
		f->cap = cap;
	}
	memcpy(f->body + f->len, p, n);
	f->len += n;
	return n;
}

static size_t
header_cb(char *p, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;
	size_t len = size * n, k;

	/* The last response's Date (after a redirect too). */
	if (len > 5 && strncasecmp(p, "date:", 5) == 0) {
		for (k = 5; k < len && (p[k] == ' ' || p[k] == '\t'); k++)
			;
		while (len > k && (p[len - 1] == '\r' || p[len - 1] == '\n'))
			len--;
		snprintf(
		    f->date, sizeof(f->date), "%.*s", (int)(len - k), p + k);
		f->has_date = 1;
	}
	return size * n;
}

/* Why curl failed, in the words the logs have always used. */
static void
curl_failed(struct fetch *f, CURLcode rc)
{
	long v = 0, oserr = 0;

	curl_easy_getinfo(f->easy, CURLINFO_OS_ERRNO, &oserr);
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		fetch_done(f, 1, "timed out after %d s", f->fr->timeout);
		break;
	case CURLE_WRITE_ERROR:
		fetch_done(f, 1,
		    f->too_big ? "answer larger than %zu bytes"
		               : "out of memory (%zu bytes)",
		    f->fr->body_max);
		break;
	case CURLE_COULDNT_CONNECT:
		fetch_done(f, 1, "connection to %s port %d failed: %s", f->ip,
		    f->port,
		    oserr ? strerror((int)oserr) : curl_easy_strerror(rc));
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
		curl_easy_getinfo(f->easy, CURLINFO_SSL_VERIFYRESULT, &v);
		/* curl checks the name itself: OpenSSL's result is then
		 * "ok" or "unspecified", and curl's text says the rest. */
		if (v != X509_V_OK && v != X509_V_ERR_UNSPECIFIED)
			fetch_done(f, 1,
			    "TLS certificate verification failed: %s",
			    X509_verify_cert_error_string(v));
		else
			fetch_done(f, 1,
			    "TLS certificate verification failed: hostname "
			    "mismatch (%s)",
			    f->errbuf);
		break;
	case CURLE_SSL_CACERT_BADFILE:
		fetch_done(f, 1, "cannot load CA file %s: %s", f->fr->ca_file,
		    f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
		break;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
		fetch_done(f, 1,
		    "connection to %s port %d closed before a complete "
		    "answer (%s)",
		    f->ip, f->port, f->errbuf[0] ? f->errbuf : "no data");
		break;
	default:
		fetch_done(f, 1, "%s",
		    f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
	}
}

/* Transfers curl finished: marked done, reported from their step. */
static void
reap(struct fetcher *fr)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(fr->multi, &left)) != NULL) {
		struct fetch *f = NULL;
		long code = 0;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(
		    m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
		if (f == NULL || f->done)
			continue;
		if (m->data.result != CURLE_OK) {
			curl_failed(f, m->data.result);
			continue;
		}
		curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code != 200) {
			fetch_done(f, 1, "HTTP status %ld", code);
			continue;
		}
		fetch_done(f, 0, NULL);
	}
}

static void
sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetcher *fr = arg;
	int running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(fr->multi, fd, flags, &running);
	reap(fr);
}

static void
curl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetcher *fr = arg;
	int running;

	curl_multi_socket_action(fr->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	reap(fr);
}

/* CURLMOPT_SOCKETFUNCTION: what curl waits for on a socket. */
static int
sock_cb(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct fetcher *fr = arg;
	struct sockev *se = sockp, **pp;
	short kind = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		for (pp = &fr->socks; *pp != NULL; pp = &(*pp)->next)
			if (*pp == se) {
				*pp = se->next;
				break;
			}
		if (se != NULL) {
			event_free(se->ev);
			free(se);
		}
		curl_multi_assign(fr->multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (se == NULL) {
		if ((se = calloc(1, sizeof(*se))) == NULL)
			return -1;
		se->fd = s;
		se->next = fr->socks;
		fr->socks = se;
		curl_multi_assign(fr->multi, s, se);
	} else if (se->ev != NULL)
		event_free(se->ev);
	se->ev = event_new(fr->base, s, kind, sock_event_cb, fr);
	if (se->ev == NULL || event_add(se->ev, NULL) == -1)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int
timer_cb(CURLM *m, long ms, void *arg)
{
	struct fetcher *fr = arg;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ms < 0)
		evtimer_del(fr->curl_timer);
	else
		evtimer_add(fr->curl_timer, &tv);
	return 0;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f = arg;

	fetch_done(f, 1, "timed out after %d s", f->fr->timeout);
}

static void
fetch_connect(struct fetch *f, const struct sockaddr *sa)
{
	struct fetcher *fr = f->fr;
	char entry[sizeof(f->host) + 2 * INET6_ADDRSTRLEN + 16], agent[64];
	const void *a;
	long left;
	int v6 = sa->sa_family == AF_INET6;

	a = v6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
	       : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (evutil_inet_ntop(sa->sa_family, a, f->ip, sizeof(f->ip)) == NULL) {
		fetch_done(f, 1, "bad address for %s", f->host);
		return;
	}
	/* The address we picked, for the URL's host and port. */
	snprintf(entry, sizeof(entry), "%s:%d:%s%s%s", f->host, f->port,
	    v6 ? "[" : "", f->ip, v6 ? "]" : "");
	if ((f->resolve = curl_slist_append(NULL, entry)) == NULL ||
	    (f->easy = curl_easy_init()) == NULL) {
		fetch_done(f, 1, "out of memory");
		return;
	}
	/* What is left of our deadline (the lookup took some). */
	left = (long)fr->timeout * 1000;
	snprintf(agent, sizeof(agent), "mtprotod/%s", PACKAGE_VERSION);
	curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
	curl_easy_setopt(f->easy, CURLOPT_URL, f->url);
	curl_easy_setopt(f->easy, CURLOPT_RESOLVE, f->resolve);
	curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(f->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(f->easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(f->easy, CURLOPT_MAXREDIRS, (long)REDIRECTS_MAX);
	curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, left);
	curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(f->easy, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(f->easy, CURLOPT_USERAGENT, agent);
	curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->errbuf);
	curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(
	    f->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)fr->body_max);
	curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(f->easy, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	if (fr->ca_file[0] != '\0')
		curl_easy_setopt(f->easy, CURLOPT_CAINFO, fr->ca_file);
	log_debug("fetching %s from %s port %d", f->url, f->ip, f->port);
	if (curl_multi_add_handle(fr->multi, f->easy) != CURLM_OK) {
		curl_easy_cleanup(f->easy);
		f->easy = NULL;
		fetch_done(f, 1, "cannot start the transfer");
	}
	/* curl asks for its timer; the transfer starts from there. */
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
	k = f->pick % n;
	for (int fam = 0; fam < 2 && pick == NULL; fam++)
		for (ai = res; ai != NULL && pick == NULL; ai = ai->ai_next)
			if (ai->ai_family == (fam == 0 ? AF_INET : AF_INET6) &&
			    k-- == 0)
				pick = ai;
	fetch_connect(f, pick->ai_addr);
	evutil_freeaddrinfo(res);
}

/* The URL's scheme, host and port (curl's parser); -1 and why. */
static int
fetch_parse_url(struct fetch *f, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	size_t hl;
	int r = -1;

	if (u == NULL) {
		fetch_done(f, 1, "out of memory");
		return -1;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	        CURLUE_OK) {
		fetch_done(f, 1, "malformed URL");
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0)
		f->tls = 1;
	else if (strcasecmp(scheme, "http") != 0) {
		fetch_done(f, 1, "not an http:// or https:// URL");
		goto out;
	}
	f->port = atoi(port);
	/* As the Host header names it: the port only when the URL has
	 * one. */
	curl_free(port);
	port = NULL;
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
		snprintf(f->hosthdr, sizeof(f->hosthdr), "%s:%s", host, port);
	else
		snprintf(f->hosthdr, sizeof(f->hosthdr), "%s", host);
	hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(f->host)) {
		fetch_done(f, 1, "URL without a usable host");
		goto out;
	}
	memcpy(f->host, host, hl + 1);
	r = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

struct evdns_base *
fetch_dns_new(struct event_base *base)
{
	struct evdns_base *dns;

	if (fetch_resolv_conf == NULL)
		return evdns_base_new(base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS |
		        EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns != NULL &&
	    evdns_base_resolv_conf_parse(
	        dns, DNS_OPTIONS_ALL, fetch_resolv_conf) != 0) {
		evdns_base_free(dns, 0);
		dns = NULL;
	}
	return dns;
}

/*
 * Reports a finished fetch and closes it, from its step event (outside
 * libevent's callbacks). The callback must not cancel this fetch or free
 * the fetcher.
 */
static void
step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f = arg;
	struct fetch_result r = {
		.failed = f->failed,
		.reason = f->reason,
		.url = f->url,
		.host = f->hosthdr,
		.ip = f->ip,
		.date = f->has_date ? f->date : NULL,
		.tls = f->tls,
	};

	if (!f->failed) {
		r.body = f->body;
		r.len = f->len;
		f->body = NULL;
	}
	f->cb(f->arg, &r);
	fetch_close(f);
}

static int curl_ready;

/* curl's part of a fetcher: no transfer is left in it. */
static void
curl_end(struct fetcher *fr)
{
	if (fr->multi != NULL)
		curl_multi_cleanup(fr->multi);
	fr->multi = NULL;
	while (fr->socks != NULL) {
		struct sockev *se = fr->socks;

		fr->socks = se->next;
		event_free(se->ev);
		free(se);
	}
	if (fr->curl_timer != NULL)
		event_free(fr->curl_timer);
	fr->curl_timer = NULL;
}

struct fetcher *
fetcher_new(
    struct event_base *base, const char *ca_file, int timeout, size_t body_max)
{
	struct fetcher *fr = calloc(1, sizeof(*fr));

	if (fr == NULL || (fr->ca_file = strdup(ca_file)) == NULL) {
		free(fr);
		return NULL;
	}
	fr->base = base;
	fr->timeout = timeout;
	fr->body_max = body_max;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			goto fail;
		curl_ready = 1;
	}
	if ((fr->multi = curl_multi_init()) == NULL ||
	    (fr->curl_timer = evtimer_new(base, curl_timer_cb, fr)) == NULL)
		goto fail;
	curl_multi_setopt(fr->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(fr->multi, CURLMOPT_SOCKETDATA, fr);
	curl_multi_setopt(fr->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(fr->multi, CURLMOPT_TIMERDATA, fr);
	return fr;
fail:
	if (fr->multi != NULL)
		curl_multi_cleanup(fr->multi);
	free(fr->ca_file);
	free(fr);
	return NULL;
}

void
fetcher_free(struct fetcher *fr)
{
	if (fr == NULL)
		return;
	/* Closing a fetch here never frees the fetcher (in_free); a
	 * fetch owed a DNS answer schedules fetcher_end_cb when it goes. */
	fr->closing = 1;
	fr->in_free = 1;
	while (fr->list != NULL) {
		struct fetch *f = fr->list;

		/* Off the list here, so the loop never sees it again. */
		fr->list = f->next;
		if (f->next != NULL)
			f->next->pprev = &fr->list;
		f->pprev = NULL;
		fetch_close(f);
	}
	fr->in_free = 0;
	curl_end(fr); /* no fetch has a transfer any more */
	if (fr->live > 0)
		return; /* fetches owed a DNS answer: fetcher_end_cb */
	fetcher_end_cb(-1, 0, fr);
}

void
fetch_cancel(struct fetch *f)
{
	if (f != NULL && !f->closed)
		fetch_close(f);
}

struct fetch *
fetcher_get(
    struct fetcher *fr, const char *url, unsigned pick, fetch_cb cb, void *arg)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *r;
	struct fetch *f;
	char port[8];
	struct timeval tv = { fr->timeout, 0 };

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->fr = fr;
	f->pick = pick;
	f->cb = cb;
	f->arg = arg;
	if ((f->url = strdup(url)) == NULL ||
	    (f->step = event_new(fr->base, -1, 0, step_cb, f)) == NULL ||
	    (f->deadline = evtimer_new(fr->base, deadline_cb, f)) == NULL) {
		if (f->step != NULL)
			event_free(f->step);
		free(f->url);
		free(f);
		return NULL;
	}
	fr->live++;
	f->next = fr->list;
	if (f->next != NULL)
		f->next->pprev = &f->next;
	f->pprev = &fr->list;
	fr->list = f;
	evtimer_add(f->deadline, &tv);
	if (fetch_parse_url(f, url) == -1)
		return f;
	if (fr->dns == NULL && (fr->dns = fetch_dns_new(fr->base)) == NULL) {
		fetch_done(f, 1, "cannot set up DNS (resolv.conf?)");
		return f;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%d", f->port);
	/* The callback may run before this returns (a literal, hosts);
	 * it only marks the fetch, the report comes from step. */
	r = evdns_getaddrinfo(fr->dns, f->host, port, &hints, dns_cb, f);
	if (!f->resolved)
		f->dnsreq = r;
	return f;
}
