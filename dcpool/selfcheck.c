/*
 * mtprotod --check (selfcheck.h): after the config and the public address,
 * what an operator asks first when clients cannot connect. One line per
 * check, "OK", "WARN" or "FAIL"; blocking and short (a CLI, not the
 * daemon), each network step bounded by CHECK_TIMEOUT_MS.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "selfcheck.h"
#include "dc.h"
#include "proxyconf.h"
#include "rpc.h"
#include "tgconf.h"
#include "tls.h"
#include "util.h"

#define CHECK_TIMEOUT_MS 3000
#define CLOCK_WARN_S     5
#define CLOCK_FAIL_S     60 /* fake-TLS clients and middle proxies mind */

struct report {
	FILE *f;
	int fails, warns;
};

static void __attribute__((format(printf, 3, 4)))
line(struct report *r, const char *level, const char *fmt, ...)
{
	va_list ap;

	if (strcmp(level, "FAIL") == 0)
		r->fails++;
	else if (strcmp(level, "WARN") == 0)
		r->warns++;
	fprintf(r->f, "%-4s  ", level);
	va_start(ap, fmt);
	vfprintf(r->f, fmt, ap);
	va_end(ap);
	fputc('\n', r->f);
	fflush(r->f);
}

/* A connected socket, or -1 with why (errno's text or "timed out"). */
static int
connect_to(
    const struct sockaddr *sa, socklen_t len, const char **why, double *ms)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	uint64_t t0 = now_us();
	struct pollfd p;
	int err = 0;
	socklen_t el = sizeof(err);

	*why = NULL;
	if (fd == -1) {
		*why = strerror(errno);
		return -1;
	}
	if (connect(fd, sa, len) == -1 && errno != EINPROGRESS) {
		*why = strerror(errno);
		close(fd);
		return -1;
	}
	p = (struct pollfd){ .fd = fd, .events = POLLOUT };
	if (poll(&p, 1, CHECK_TIMEOUT_MS) != 1) {
		*why = "timed out";
		close(fd);
		return -1;
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err != 0) {
		*why = strerror(err);
		close(fd);
		return -1;
	}
	*ms = (double)(now_us() - t0) / 1000.0;
	return fd;
}

/* Read until n bytes, quiet_ms of silence, EOF or the timeout. */
static size_t
read_some(int fd, uint8_t *buf, size_t cap, int quiet_ms)
{
	size_t len = 0;
	uint64_t end = now_ms() + CHECK_TIMEOUT_MS;

	while (len < cap && now_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int wait = len == 0 ? (int)(end - now_ms()) : quiet_ms;

		if (poll(&p, 1, wait) != 1)
			break;
		ssize_t n = read(fd, buf + len, cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	return len;
}

static int
send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		struct pollfd pf = { .fd = fd, .events = POLLOUT };
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w == -1 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (poll(&pf, 1, CHECK_TIMEOUT_MS) != 1)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ DCs */

static void
check_dcs(struct report *r, const struct config *cfg)
{
	struct dc_table *t = dc_table_new(cfg->dcs, cfg->ndcs, cfg->default_dc);

	if (t == NULL) {
		line(r, "FAIL", "DC table: cannot build it (telegram.dc)");
		return;
	}
	for (int dc = 1; dc <= 5; dc++) {
		for (int v6 = 0; v6 <= 1; v6++) {
			struct sockaddr_storage ss;
			socklen_t len;
			char a[ADDR_STRLEN];
			const char *why;
			double ms;
			int used_default, fd;

			if (dc_lookup(t, (int16_t)dc, v6, &ss, &len,
			        &used_default) == -1 ||
			    (v6 && ss.ss_family != AF_INET6) ||
			    (!v6 && ss.ss_family != AF_INET))
				continue;
			addr_str((struct sockaddr *)&ss, a, sizeof(a));
			if ((fd = connect_to((struct sockaddr *)&ss, len, &why,
			         &ms)) == -1) {
				/* IPv6 may simply be missing here. */
				line(r, v6 ? "WARN" : "FAIL", "DC %d at %s: %s",
				    dc, a, why);
				continue;
			}
			close(fd);
			line(r, "OK", "DC %d at %s: reachable (%.1f ms)", dc, a,
			    ms);
		}
	}
	dc_table_free(t);
}

/* ------------------------------------------------------------ middle */

/* A file the daemon reads, or its cached copy in state_dir. */
static int
load(const struct config *cfg, const char *file, const char *cached,
    uint8_t **body, size_t *len)
{
	FILE *f;

	if (file[0] != '\0') {
		if ((f = fopen(file, "r")) == NULL)
			return -1;
		*body = malloc(TGCONF_BODY_MAX);
		*len = *body != NULL ? fread(*body, 1, TGCONF_BODY_MAX, f) : 0;
		fclose(f);
		return *body != NULL ? 0 : -1;
	}
	return tgconf_cache_read(cfg->state_dir, cached, body, len);
}

/* The RPC nonce exchange with one middle proxy (spec B.2.4). */
static const char *
nonce_exchange(int fd, const uint8_t *secret, size_t slen)
{
	uint8_t payload[256], out[512], nonce[16], in[1024];
	struct rpc_decoder rx;
	struct rpc_frame fr;
	struct rpc_nonce ans;
	uint32_t ts = (uint32_t)now_unix();
	const char *err;
	size_t n, got;
	int pad;

	random_bytes(nonce, sizeof(nonce));
	n = rpc_nonce_build(payload, sizeof(payload), secret, slen, ts, nonce);
	n = rpc_frame_encode(out, sizeof(out), RPC_SEQ_NONCE, payload, n, 0);
	pad = rpc_frame_pad(out + n, sizeof(out) - n, n);
	if (n == 0 || pad < 0 || send_all(fd, out, n + (size_t)pad) == -1)
		return "sending the nonce failed";
	got = read_some(fd, in, sizeof(in), 200);
	if (got == 0)
		return "no answer to our nonce";
	rpc_decoder_init(&rx, RPC_SEQ_NONCE, sizeof(in));
	if (rpc_frame_decode(&rx, in, got, &fr) != RPC_DECODE_OK ||
	    rpc_nonce_parse(fr.payload, fr.len, &ans) == -1)
		return "not a nonce answer";
	if (rpc_nonce_check(&ans, secret, slen, ts, RPC_NONCE_MAX_SKEW, &err) ==
	    -1)
		return "nonce refused (wrong proxy secret, or a clock off by "
		       "more than 30 s)";
	return NULL;
}

static void
check_middle(struct report *r, const struct config *cfg)
{
	uint8_t *sec = NULL, *conf = NULL;
	size_t slen = 0, clen = 0;
	struct proxyconf *pc;
	char err[256];

	if (!config_middle_used(cfg))
		return;
	if (load(cfg, cfg->proxy_secret_file, TGCONF_CACHE_SECRET, &sec,
	        &slen) == -1 ||
	    tgconf_check_secret(sec, slen, err, sizeof(err)) == -1) {
		line(r, "WARN",
		    "middle proxies: no proxy secret in %s or state_dir "
		    "(the daemon fetches it at start): not asked",
		    cfg->proxy_secret_file[0] ? cfg->proxy_secret_file
		                              : "telegram.proxy_secret_file");
		free(sec);
		return;
	}
	pc = calloc(1, sizeof(*pc));
	if (pc == NULL ||
	    load(cfg, cfg->proxy_config_file, TGCONF_CACHE_CONFIG, &conf,
	        &clen) == -1 ||
	    tgconf_check_config(conf, clen, pc, err, sizeof(err)) == -1) {
		line(r, "WARN",
		    "middle proxies: no proxy list in %s or state_dir: not "
		    "asked",
		    cfg->proxy_config_file[0] ? cfg->proxy_config_file
		                              : "telegram.proxy_config_file");
		goto out;
	}
	for (size_t i = 0; i < pc->n; i++) {
		const struct proxyconf_entry *e = &pc->entries[i];
		char a[ADDR_STRLEN];
		const char *why;
		double ms;
		int fd;

		if (e->dc < 0)
			continue; /* media: the same proxies, mostly */
		addr_str(&e->addr.sa, a, sizeof(a));
		if ((fd = connect_to(&e->addr.sa, e->addrlen, &why, &ms)) ==
		    -1) {
			line(r, "FAIL", "middle proxy for DC %d at %s: %s",
			    e->dc, a, why);
			continue;
		}
		why = nonce_exchange(fd, sec, slen);
		close(fd);
		if (why != NULL)
			line(r, "FAIL", "middle proxy for DC %d at %s: %s",
			    e->dc, a, why);
		else
			line(r, "OK",
			    "middle proxy for DC %d at %s: nonce exchanged "
			    "(%.1f ms to connect)",
			    e->dc, a, ms);
	}
out:
	free(sec);
	free(conf);
	free(pc);
}

/* ------------------------------------------------------------ fronting */

static void
check_site(struct report *r, const char *listener, const char *sni,
    const char *host, uint16_t port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	uint8_t hello[TLS_HELLO_PQ_LEN], key[TLS_SECRET_LEN], *buf;
	char ps[8], a[ADDR_STRLEN];
	struct tls_flight fl;
	const char *why;
	double ms;
	size_t n, got;
	int fd, gai;

	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if ((gai = getaddrinfo(host, ps, &hints, &ai)) != 0) {
		line(r, "FAIL", "listener %s fronts %s:%u: %s", listener, host,
		    (unsigned)port, gai_strerror(gai));
		return;
	}
	addr_str(ai->ai_addr, a, sizeof(a));
	fd = connect_to(ai->ai_addr, ai->ai_addrlen, &why, &ms);
	freeaddrinfo(ai);
	if (fd == -1) {
		line(r, "FAIL", "listener %s fronts %s (%s): %s", listener,
		    host, a, why);
		return;
	}
	random_bytes(key, sizeof(key));
	n = tls_client_hello_build_pq(hello, sizeof(hello), key, sni,
	    (uint32_t)now_unix(), TLS_HELLO_PQ_LEN);
	buf = malloc(65536);
	got = buf != NULL && n > 0 && send_all(fd, hello, n) == 0
	    ? read_some(fd, buf, 65536, 300)
	    : 0;
	close(fd);
	if (got == 0 || tls_flight_parse(buf, got, &fl) != 1)
		line(r, "FAIL",
		    "listener %s fronts %s (%s): no TLS answer to a "
		    "ClientHello for %s",
		    listener, host, a, sni);
	else if (fl.version != 0x0304 || fl.hrr)
		line(r, "FAIL",
		    "listener %s fronts %s (%s): %s; the apps need a TLS 1.3 "
		    "answer, so it cannot be copied",
		    listener, host, a,
		    fl.hrr ? "a HelloRetryRequest" : "no TLS 1.3");
	else if (fl.app_records > 1)
		line(r, "WARN",
		    "listener %s fronts %s (%s): TLS 1.3, but the flight "
		    "comes in %u records (%u bytes); copied by size: prefer "
		    "a site that sends one",
		    listener, host, a, fl.app_records, fl.app_bytes);
	else
		line(r, "OK",
		    "listener %s fronts %s (%s): TLS 1.3, flight of %u bytes "
		    "in one record",
		    listener, host, a, fl.app_bytes);
	free(buf);
}

/* ------------------------------------------------------------ domains */

/* Is sa one of this host's addresses (or a public one it was given)? */
static int
is_ours(const struct sockaddr *sa, const struct config *cfg)
{
	struct ifaddrs *ifa, *i;
	char a[INET6_ADDRSTRLEN] = "";
	int found = 0;

	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET,
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    a, sizeof(a));
	else
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    a, sizeof(a));
	if (strcmp(a, cfg->public_ipv4) == 0 ||
	    strcmp(a, cfg->public_ipv6) == 0)
		return 1;
	if (getifaddrs(&ifa) == -1)
		return 0;
	for (i = ifa; i != NULL && !found; i = i->ifa_next) {
		char b[INET6_ADDRSTRLEN] = "";

		if (i->ifa_addr == NULL ||
		    i->ifa_addr->sa_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET,
			    &((struct sockaddr_in *)(void *)i->ifa_addr)
			         ->sin_addr,
			    b, sizeof(b));
		else
			inet_ntop(AF_INET6,
			    &((struct sockaddr_in6 *)(void *)i->ifa_addr)
			         ->sin6_addr,
			    b, sizeof(b));
		found = strcmp(a, b) == 0;
	}
	freeifaddrs(ifa);
	return found;
}

static void
check_domain(struct report *r, const struct config *cfg, const char *listener,
    const char *domain)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int gai = getaddrinfo(domain, NULL, &hints, &ai), ours = 0;

	if (gai != 0) {
		line(r, "WARN",
		    "listener %s: %s does not resolve (%s): a censor sees a "
		    "name that does not lead here",
		    listener, domain, gai_strerror(gai));
		return;
	}
	for (struct addrinfo *p = ai; p != NULL && !ours; p = p->ai_next)
		ours = is_ours(p->ai_addr, cfg);
	freeaddrinfo(ai);
	line(r, ours ? "OK" : "WARN",
	    ours ? "listener %s: %s resolves to this host"
	         : "listener %s: %s resolves elsewhere, not to this host: "
	           "a censor may see a name that does not lead here",
	    listener, domain);
}

/* ------------------------------------------------------------ clock */

static size_t
header_cb(char *p, size_t size, size_t n, void *arg)
{
	char *date = arg;
	size_t len = size * n;

	if (len > 5 && strncasecmp(p, "Date:", 5) == 0 && date[0] == '\0') {
		size_t k = len - 5 < 127 ? len - 5 : 127;
		memcpy(date, p + 5, k);
		date[k] = '\0';
		date[strcspn(date, "\r\n")] = '\0';
	}
	return len;
}

static size_t
body_cb(char *p, size_t size, size_t n, void *arg)
{
	return size * n; /* only the headers matter */
}

static void
check_clock(struct report *r, const struct config *cfg)
{
	const char *url = cfg->proxy_config_url;
	char date[128] = "";
	CURL *c = curl_easy_init();
	CURLcode rc;
	int64_t t;

	if (c == NULL)
		return;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, (void *)date);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CHECK_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (cfg->ca_file[0] != '\0')
		curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
	rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK || date[0] == '\0') {
		line(r, "WARN", "clock: no Date from %s (%s): not compared",
		    url, rc != CURLE_OK ? curl_easy_strerror(rc) : "no header");
		return;
	}
	t = (int64_t)curl_getdate(date + strspn(date, " "), NULL);
	if (t <= 0) {
		line(r, "WARN", "clock: %s sent an unreadable Date", url);
		return;
	}
	int64_t skew = now_unix() - t;
	int64_t a = skew < 0 ? -skew : skew;
	line(r,
	    a <= CLOCK_WARN_S       ? "OK"
	        : a <= CLOCK_FAIL_S ? "WARN"
	                            : "FAIL",
	    "clock: %+lld s from %s's Date%s", (long long)skew, url,
	    a > CLOCK_FAIL_S ? ": fake-TLS clients and middle proxies refuse "
	                       "a clock this far off; fix NTP"
	                     : "");
}

int
check_run(const struct config *cfg, FILE *f)
{
	struct report r = { f, 0, 0 };

	line(&r, "OK", "config");
	check_clock(&r, cfg);
	check_dcs(&r, cfg);
	check_middle(&r, cfg);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		if (!(l->protocols & PROTO_FAKE_TLS))
			continue;
		check_domain(&r, cfg, l->name, l->tls_domain);
		if (l->fronting_host[0] != '\0')
			check_site(&r, l->name, l->tls_domain, l->fronting_host,
			    l->fronting_port);
		for (size_t k = 0; k < l->nsnis; k++) {
			check_domain(&r, cfg, l->name, l->snis[k].name);
			if (l->snis[k].fronting_host[0] != '\0')
				check_site(&r, l->name, l->snis[k].name,
				    l->snis[k].fronting_host,
				    l->snis[k].fronting_port);
		}
	}
	fprintf(f, "%d failed, %d warnings\n", r.fails, r.warns);
	return r.fails > 0 ? -1 : 0;
}
