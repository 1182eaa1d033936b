/*
 * Shared parts of fastdc and mtbench: the test pattern, /proc readings
 * and the client connection (bench.h).
 */
#include "autoconf.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "crypto.h"
#include "util.h"

/* ------------------------------------------------------------ misc */

uint8_t bench_pattern[2 * BENCH_PATTERN_LEN];

uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void
bench_sleep_until(uint64_t t)
{
	struct timespec ts = { t / 1000000000ull, t % 1000000000ull };

	while (
	    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

void
bench_pattern_init(void)
{
	/* A fixed seed: both programs must produce the same bytes. */
	uint64_t x = 0x6d7470726f746f64ull;

	for (size_t i = 0; i < BENCH_PATTERN_LEN; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(bench_pattern + i, &x, 8);
	}
	memcpy(bench_pattern + BENCH_PATTERN_LEN, bench_pattern,
	    BENCH_PATTERN_LEN);
}

int
bench_pattern_check(const uint8_t *buf, size_t len, uint64_t pos)
{
	while (len > 0) {
		size_t off = pos % BENCH_PATTERN_LEN;
		size_t n = len < BENCH_PATTERN_LEN ? len : BENCH_PATTERN_LEN;
		if (memcmp(buf, bench_pattern + off, n) != 0)
			return 0;
		buf += n;
		pos += n;
		len -= n;
	}
	return 1;
}

/* ------------------------------------------------------------ /proc */

static int
read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;

	if (fd == -1)
		return -1;
	while (len + 1 < cap) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	close(fd);
	buf[len] = '\0';
	return (int)len;
}

double
bench_proc_cpu(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* The command may hold spaces and parentheses: skip to the last
	 * ')'; utime and stime are fields 14 and 15 (proc(5)). */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	if (sscanf(p + 2,
	        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	        "%llu %llu",
	        &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double
bench_self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

long long
bench_proc_smaps(pid_t pid, const char *field)
{
	char path[64], buf[4096], *p;
	size_t flen = strlen(field);

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	for (p = buf; p != NULL && *p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, field, flen) == 0 && p[flen] == ':')
			return strtoll(p + flen + 1, NULL, 10) * 1024;
	}
	return -1;
}

int
bench_proc_io(pid_t pid, uint64_t *rchar, uint64_t *wchar)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0 ||
	    (p = strstr(buf, "rchar:")) == NULL)
		return -1;
	*rchar = strtoull(p + 6, NULL, 10);
	if ((p = strstr(buf, "wchar:")) == NULL)
		return -1;
	*wchar = strtoull(p + 6, NULL, 10);
	return 0;
}

int
bench_proc_nfds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int
bench_find_workers(pid_t daemon, pid_t *out, int max)
{
	static const char title[] = "mtprotod: worker";
	char path[64], buf[1024], *p;
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir("/proc")) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		int ppid, pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = atoi(de->d_name);
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if (read_file(path, buf, sizeof(buf)) <= 0 ||
		    (p = strrchr(buf, ')')) == NULL ||
		    sscanf(p + 2, "%*c %d", &ppid) != 1 || ppid != daemon)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		if (read_file(path, buf, sizeof(buf)) <= 0 ||
		    strncmp(buf, title, sizeof(title) - 1) != 0)
			continue;
		out[n++] = pid;
	}
	closedir(d);
	return n;
}

/* ------------------------------------------------------------ client */

static const char *proto_names[] = { "classic", "secure", "tls" };

const char *
bench_proto_name(enum bench_proto p)
{
	return (unsigned)p < nitems(proto_names) ? proto_names[p] : "?";
}

int
bench_proto_parse(const char *s)
{
	for (size_t i = 0; i < nitems(proto_names); i++)
		if (strcmp(s, proto_names[i]) == 0)
			return (int)i;
	return -1;
}

int
bench_target_addr(struct bench_target *t, const char *s)
{
	return addr_parse(s, 443, &t->addr, &t->addrlen) == 0 ? 0 : -1;
}

/* The ChangeCipherSpec the app sends first after the handshake, A.4.7. */
static const uint8_t tls_ccs[] = { 0x14, 0x03, 0x03, 0x00, 0x01, 0x01 };
/* ServerHello flights are 138 + cert bytes; the cert is at most 16384. */
#define HIN_CAP (TLS_RECORD_HEADER_LEN + TLS_RECORD_MAX_PAYLOAD + 1024)
/* Where the session id sits in a ClientHello with a 32-byte one, A.4.2. */
#define HELLO_SID_OFF 44
#define HELLO_SID_LEN 32

/*
 * One ClientHello per process, built by the codec (with a real X25519
 * key), then made unique per connection by a new session id and key
 * share and a fresh HMAC: a fraction of the codec's cost, the same bytes
 * for the proxy (it checks only the HMAC, spec A.4.3).
 */
static struct {
	uint8_t secret[O2_SECRET_LEN];
	char sni[TLS_SNI_MAX + 1];
	uint8_t buf[TLS_HELLO_CLASSIC_LEN];
	size_t key_off; /* the x25519 key share, 0 if none */
	int ready;
} hello_tmpl;

static int
hello_make(const struct bench_target *t, uint8_t *out, uint8_t crandom[32])
{
	static const uint8_t x25519_entry[] = { 0x00, 0x1d, 0x00, 0x20 };
	size_t len = TLS_HELLO_CLASSIC_LEN;
	uint32_t ts = (uint32_t)now_unix();
	uint8_t d[32];

	if (!hello_tmpl.ready ||
	    memcmp(hello_tmpl.secret, t->secret, O2_SECRET_LEN) != 0 ||
	    strcmp(hello_tmpl.sni, t->domain) != 0) {
		if (tls_client_hello_build(hello_tmpl.buf, len, t->secret,
		        t->domain, ts, len) != len)
			return -1;
		memcpy(hello_tmpl.secret, t->secret, O2_SECRET_LEN);
		snprintf(
		    hello_tmpl.sni, sizeof(hello_tmpl.sni), "%s", t->domain);
		hello_tmpl.key_off = 0;
		for (size_t i = HELLO_SID_OFF + HELLO_SID_LEN;
		     i + sizeof(x25519_entry) + 32 <= len; i++)
			if (memcmp(hello_tmpl.buf + i, x25519_entry,
			        sizeof(x25519_entry)) == 0) {
				hello_tmpl.key_off = i + sizeof(x25519_entry);
				break;
			}
		hello_tmpl.ready = 1;
	}
	memcpy(out, hello_tmpl.buf, len);
	if (out[HELLO_SID_OFF - 1] == HELLO_SID_LEN)
		cheap_rand_bytes(out + HELLO_SID_OFF, HELLO_SID_LEN);
	if (hello_tmpl.key_off) {
		cheap_rand_bytes(out + hello_tmpl.key_off, 32);
		out[hello_tmpl.key_off + 31] &= 0x7f;
	}
	memset(out + TLS_RANDOM_OFF, 0, TLS_RANDOM_LEN);
	crypto_hmac_sha256(t->secret, O2_SECRET_LEN, out, len, NULL, 0, d);
	d[28] ^= (uint8_t)ts;
	d[29] ^= (uint8_t)(ts >> 8);
	d[30] ^= (uint8_t)(ts >> 16);
	d[31] ^= (uint8_t)(ts >> 24);
	memcpy(out + TLS_RANDOM_OFF, d, TLS_RANDOM_LEN);
	memcpy(crandom, d, TLS_RANDOM_LEN);
	return (int)len;
}

static int
fail(struct bconn *c, const char *why, int err)
{
	c->why = why;
	c->err = err;
	return -1;
}

/* Room in obuf for n more bytes. */
static int
obuf_reserve(struct bconn *c, size_t n)
{
	if (c->ooff == c->olen)
		c->ooff = c->olen = 0;
	if (c->olen + n <= c->ocap)
		return 0;
	size_t cap = c->ocap ? c->ocap : 4096;
	while (cap < c->olen + n)
		cap *= 2;
	uint8_t *nb = realloc(c->obuf, cap);
	if (nb == NULL)
		return -1;
	c->obuf = nb;
	c->ocap = cap;
	return 0;
}

/* Append raw bytes (already on-the-wire form) to obuf. */
static int
obuf_raw(struct bconn *c, const void *p, size_t n)
{
	if (obuf_reserve(c, n) == -1)
		return -1;
	memcpy(c->obuf + c->olen, p, n);
	c->olen += n;
	return 0;
}

/*
 * Append stream bytes: copy, encrypt in place, wrap in records. The
 * o2 header of a fake-TLS client goes through here too (hdr = 1: it is
 * already in wire form, only wrapped).
 */
static int
obuf_stream(struct bconn *c, const uint8_t *p, size_t n, int hdr)
{
	const struct bench_target *t = c->t;
	int tls = t->proto == BENCH_TLS;
	size_t rec = tls ? (t->tls_record ? t->tls_record : 2878) : n;
	size_t nrec = tls ? (n + rec - 1) / rec : 0;

	if (rec > TLS_RECORD_MAX_PAYLOAD)
		rec = TLS_RECORD_MAX_PAYLOAD;
	if (n == 0)
		return 0;
	if (obuf_reserve(c, n + nrec * TLS_RECORD_HEADER_LEN) == -1)
		return -1;
	while (n > 0) {
		size_t k = n;
		if (tls) {
			if (k > rec)
				k = rec;
			tls_record_header(c->obuf + c->olen, k);
			c->olen += TLS_RECORD_HEADER_LEN;
		}
		uint8_t *dst = c->obuf + c->olen;
		memcpy(dst, p, k);
		if (!hdr && !t->nocrypt &&
		    crypto_stream_apply(c->o2.enc, dst, dst, k) == -1)
			return -1;
		c->olen += k;
		p += k;
		n -= k;
	}
	return 0;
}

int
bconn_pending(const struct bconn *c)
{
	return c->olen > c->ooff;
}

int
bconn_flush(struct bconn *c)
{
	while (c->ooff < c->olen) {
		ssize_t w = send(
		    c->fd, c->obuf + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return fail(c, "send", errno);
		}
		c->ooff += w;
	}
	c->ooff = c->olen = 0;
	return 1;
}

int
bconn_start(struct bconn *c, const struct bench_target *t, const uint8_t *first,
    size_t first_len)
{
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->t = t;
	c->first = first;
	c->first_len = first_len;
	c->t_start = bench_now_ns();
	c->fd = socket(
	    t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1)
		return fail(c, "socket", errno);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The port is picked at connect(): bind() would search the whole
	 * range of ports (TIME_WAIT ones too) for each connection. */
	if (t->has_src)
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
	if (t->has_src &&
	    bind(c->fd, (const struct sockaddr *)&t->src, sizeof(t->src)) ==
	        -1) {
		int e = errno;
		close(c->fd);
		c->fd = -1;
		return fail(c, "bind", e);
	}
	if (connect(c->fd, (const struct sockaddr *)&t->addr, t->addrlen) ==
	        -1 &&
	    errno != EINPROGRESS) {
		int e = errno;
		close(c->fd);
		c->fd = -1;
		return fail(c, "connect", e);
	}
	c->state = BCONN_CONNECTING;
	c->events = EPOLLOUT;
	return 0;
}

/* Send the o2 header and the first stream bytes: the stream is open. */
static int
send_header(struct bconn *c)
{
	const struct bench_target *t = c->t;
	uint32_t tag =
	    t->proto == BENCH_CLASSIC ? O2_TAG_INTERMEDIATE : O2_TAG_PADDED;
	uint8_t wire[O2_HEADER_LEN];

	if (o2_connect(wire, tag, t->dc, t->secret, NULL, &c->o2) == -1)
		return fail(c, "o2_connect", 0);
	if (t->proto == BENCH_TLS) {
		/* The header and the first bytes share the first record,
		 * as tdlib does (spec A.4.7). */
		uint8_t rec[O2_HEADER_LEN + 1024];
		size_t n = c->first_len < 1024 ? c->first_len : 1024;
		memcpy(rec, wire, O2_HEADER_LEN);
		if (n > 0) {
			memcpy(rec + O2_HEADER_LEN, c->first, n);
			if (!t->nocrypt &&
			    crypto_stream_apply(c->o2.enc, rec + O2_HEADER_LEN,
			        rec + O2_HEADER_LEN, n) == -1)
				return fail(c, "encrypt", 0);
		}
		if (obuf_raw(c, tls_ccs, sizeof(tls_ccs)) == -1 ||
		    obuf_stream(c, rec, O2_HEADER_LEN + n, 1) == -1 ||
		    (c->first_len > n &&
		        obuf_stream(c, c->first + n, c->first_len - n, 0) ==
		            -1))
			return fail(c, "out of memory", ENOMEM);
	} else if (obuf_raw(c, wire, O2_HEADER_LEN) == -1 ||
	    obuf_stream(c, c->first, c->first_len, 0) == -1)
		return fail(c, "out of memory", ENOMEM);
	c->up += c->first_len;
	c->state = BCONN_READY;
	c->events = EPOLLIN;
	free(c->hin);
	c->hin = NULL;
	if (bconn_flush(c) == -1)
		return -1;
	if (bconn_pending(c))
		c->events |= EPOLLOUT;
	return 1;
}

int
bconn_handshake(struct bconn *c, uint32_t events)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	switch (c->state) {
	case BCONN_CONNECTING:
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return 0;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) ==
		        -1 ||
		    soerr != 0)
			return fail(c, "connect", soerr ? soerr : errno);
		if (c->t->proto != BENCH_TLS)
			return send_header(c);
		uint8_t hello[TLS_HELLO_CLASSIC_LEN];
		int len = hello_make(c->t, hello, c->crandom);
		if (len <= 0)
			return fail(c, "ClientHello", 0);
		if (send(c->fd, hello, len, MSG_NOSIGNAL) != len)
			return fail(c, "send ClientHello", errno);
		if ((c->hin = malloc(HIN_CAP)) == NULL)
			return fail(c, "out of memory", ENOMEM);
		c->hin_len = 0;
		c->state = BCONN_HELLO;
		c->events = EPOLLIN;
		return 0;
	case BCONN_HELLO:
		for (;;) {
			size_t total;
			ssize_t n = recv(c->fd, c->hin + c->hin_len,
			    HIN_CAP - c->hin_len, 0);
			if (n == 0)
				return fail(c, "EOF in ServerHello", 0);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					return 0;
				return fail(c, "recv ServerHello", errno);
			}
			c->hin_len += n;
			int r = tls_server_hello_check(c->hin, c->hin_len,
			    c->crandom, c->t->secret, &total);
			if (r == -1)
				return fail(c, "bad ServerHello", 0);
			if (r == 0) {
				if (c->hin_len == HIN_CAP)
					return fail(
					    c, "ServerHello too long", 0);
				continue;
			}
			tls_reader_init(&c->tr, TLS_READER_FROM_SERVER);
			if (total != c->hin_len)
				return fail(c, "data after ServerHello", 0);
			return send_header(c);
		}
	case BCONN_READY:
		return 1;
	}
	return fail(c, "not started", 0);
}

int
bconn_write(struct bconn *c, const uint8_t *p, size_t len)
{
	if (obuf_stream(c, p, len, 0) == -1)
		return fail(c, "out of memory", ENOMEM);
	c->up += len;
	return bconn_flush(c) == -1 ? -1 : 0;
}

int
bconn_writev(struct bconn *c, const struct iovec *iov, int iovcnt)
{
	const struct bench_target *t = c->t;
	int tls = t->proto == BENCH_TLS;
	size_t rec = t->tls_record ? t->tls_record : 2878;
	size_t total = 0, n, vo = 0;
	int vi = 0;

	if (rec > TLS_RECORD_MAX_PAYLOAD)
		rec = TLS_RECORD_MAX_PAYLOAD;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total == 0)
		return 0;
	n = total;
	if (obuf_reserve(c,
	        n + (tls ? (n + rec - 1) / rec * TLS_RECORD_HEADER_LEN : 0)) ==
	    -1)
		return fail(c, "out of memory", ENOMEM);
	/* Gather each record's payload from the pieces, then encrypt it
	 * in place: one copy, as obuf_stream does. */
	while (n > 0) {
		size_t k = tls && n > rec ? rec : n, got = 0;
		if (tls) {
			tls_record_header(c->obuf + c->olen, k);
			c->olen += TLS_RECORD_HEADER_LEN;
		}
		uint8_t *dst = c->obuf + c->olen;
		while (got < k) {
			size_t take = iov[vi].iov_len - vo;
			if (take > k - got)
				take = k - got;
			memcpy(dst + got,
			    (const uint8_t *)iov[vi].iov_base + vo, take);
			got += take;
			vo += take;
			if (vo == iov[vi].iov_len)
				vi++, vo = 0;
		}
		if (!t->nocrypt &&
		    crypto_stream_apply(c->o2.enc, dst, dst, k) == -1)
			return fail(c, "encrypt", 0);
		c->olen += k;
		n -= k;
	}
	c->up += total;
	return bconn_flush(c) == -1 ? -1 : 0;
}

int
bconn_write_pattern(struct bconn *c, size_t len)
{
	while (len > 0) {
		size_t n = len < BENCH_PATTERN_LEN ? len : BENCH_PATTERN_LEN;
		if (obuf_stream(c, bench_pattern + c->up % BENCH_PATTERN_LEN, n,
		        0) == -1)
			return fail(c, "out of memory", ENOMEM);
		c->up += n;
		len -= n;
	}
	return bconn_flush(c) == -1 ? -1 : 0;
}

ssize_t
bconn_read(struct bconn *c, uint8_t *buf, size_t cap)
{
	ssize_t n;

	do {
		n = recv(c->fd, buf, cap, 0);
	} while (n == -1 && errno == EINTR);
	if (n == 0)
		return BCONN_EOF;
	if (n == -1) {
		if (errno == EAGAIN)
			return BCONN_AGAIN;
		fail(c, "recv", errno);
		return BCONN_ERROR;
	}
	if (c->t->proto == BENCH_TLS &&
	    (n = tls_reader_feed(&c->tr, buf, n)) < 0) {
		fail(c, "bad TLS record from the proxy", 0);
		return BCONN_ERROR;
	}
	if (!c->t->nocrypt && n > 0 &&
	    crypto_stream_apply(c->o2.dec, buf, buf, n) == -1) {
		fail(c, "decrypt", 0);
		return BCONN_ERROR;
	}
	c->down += n;
	return n;
}

static void
bconn_free(struct bconn *c)
{
	o2_session_free(&c->o2);
	free(c->hin);
	free(c->obuf);
	c->hin = c->obuf = NULL;
	c->ocap = c->ooff = c->olen = 0;
	c->state = BCONN_IDLE;
	c->fd = -1;
}

void
bconn_close(struct bconn *c)
{
	if (c->fd != -1)
		close(c->fd);
	bconn_free(c);
}

void
bconn_abort(struct bconn *c)
{
	struct linger lg = { 1, 0 };

	if (c->fd != -1) {
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->fd);
	}
	bconn_free(c);
}
