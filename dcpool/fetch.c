/*
 * HTTP(S) GET for the dcpool (fetch.h).
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

#include "fetch.h"
#include "log.h"

#define HEADERS_MAX  (64 * 1024)
#define URL_PART_MAX 2048
#define REASON_MAX   512

struct fetcher {
	struct event_base *base;
	struct evdns_base *dns; /* made at the first lookup */
	char *ca_file;
	int timeout;
	size_t body_max;
	struct fetch *list; /* not yet closed */
	unsigned live; /* not yet released */
	int closing; /* fetcher_free ran */
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
	char path[URL_PART_MAX];
	int port;
	char ip[INET6_ADDRSTRLEN]; /* connected to */
	int tls;
	struct evdns_getaddrinfo_request *dnsreq; /* owed a callback */
	int resolved;
	int closed; /* fetch_close ran: only the DNS callback is awaited */
	int cancelling; /* inside evdns_getaddrinfo_cancel */
	SSL *ssl; /* owned by bev */
	struct bufferevent *bev; /* owned by evcon */
	struct evhttp_connection *evcon;
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
	struct fetcher *fr = f->fr;

	free(f->url);
	free(f->body);
	free(f);
	if (--fr->live > 0 || !fr->closing)
		return;
	/* The last fetch of a freed fetcher: we may be inside evdns. */
	if (fr->dns != NULL &&
	    event_base_once(
	        fr->base, -1, EV_TIMEOUT, dns_free_cb, fr->dns, &now) == -1)
		log_warnx("cannot free the resolver of the HTTP fetches");
	free(fr->ca_file);
	free(fr);
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
	event_active(f->step, EV_TIMEOUT, 0);
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
		fetch_done(f, 1, "timed out after %d s", f->fr->timeout);
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
		    f, 1, "answer larger than %d bytes", (int)f->fr->body_max);
		break;
	default:
		fetch_done(f, 1, "HTTP request failed (%d)", (int)e);
	}
}

static void
req_cb(struct evhttp_request *req, void *arg)
{
	struct fetch *f = arg;
	struct evbuffer *in;
	const char *date;
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
	date =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Date");
	if (date != NULL) {
		snprintf(f->date, sizeof(f->date), "%s", date);
		f->has_date = 1;
	}
	if (code != HTTP_OK) {
		const char *line = evhttp_request_get_response_code_line(req);

		fetch_done(f, 1, "HTTP status %d%s%s", code, line ? " " : "",
		    line ? line : "");
		return;
	}
	in = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(in);
	if (len > f->fr->body_max) {
		fetch_done(
		    f, 1, "answer larger than %d bytes", (int)f->fr->body_max);
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

	fetch_done(f, 1, "timed out after %d s", f->fr->timeout);
}

static SSL *
tls_new(struct fetch *f)
{
	const char *ca_file = f->fr->ca_file;
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
	if (ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			char e[160];

			ERR_error_string_n(ERR_get_error(), e, sizeof(e));
			ERR_clear_error();
			fetch_done(
			    f, 1, "cannot load CA file %s: %s", ca_file, e);
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
	struct fetcher *fr = f->fr;
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
		f->bev = bufferevent_openssl_socket_new(fr->base, -1, f->ssl,
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
		f->bev = bufferevent_socket_new(fr->base, -1,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (f->bev == NULL) {
		fetch_done(f, 1, "cannot make a connection buffer");
		return;
	}
	f->evcon = evhttp_connection_base_bufferevent_new(
	    fr->base, fr->dns, f->bev, ip, (unsigned short)f->port);
	if (f->evcon == NULL) {
		fetch_done(f, 1, "cannot make an HTTP connection");
		return;
	}
	evhttp_connection_set_timeout(f->evcon, fr->timeout);
	evhttp_connection_set_max_body_size(f->evcon, fr->body_max);
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
	log_debug("fetching %s from %s port %d", f->url, ip, f->port);
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
	k = f->pick % n;
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
	return fr;
}

void
fetcher_free(struct fetcher *fr)
{
	if (fr == NULL)
		return;
	fr->closing = 1;
	fr->live++; /* not freed from under the loop */
	while (fr->list != NULL)
		fetch_close(fr->list);
	if (--fr->live > 0)
		return; /* the last fetch_release frees it */
	if (fr->dns != NULL)
		evdns_base_free(fr->dns, 0);
	free(fr->ca_file);
	free(fr);
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
