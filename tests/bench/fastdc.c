/*
 * fastdc: a fast fake Telegram DC for the benchmarks.
 *
 * It accepts the proxy's obfuscated2 header (raw keys, spec B.1.3) and then
 * serves each connection in the mode of the port it came to:
 *
 *   echo     decrypt what arrives and send it back re-encrypted, so a
 *            client reads its own plaintext (stream level, no framing)
 *   sink     read and discard (no decryption)
 *   source   send the bench pattern, encrypted, endlessly or N bytes
 *
 * Usage: fastdc [-a ADDR] [-n] [-q] MODE[:PORT] ...
 *   MODE is echo, sink, source or source=N; PORT 0 (default) picks one.
 *   -a  address to listen on (default 127.0.0.1)
 *   -n  no crypto: echo raw bytes, send the pattern unencrypted (for when
 *       the load side is the bottleneck; the proxy cannot tell)
 *   -q  no statistics on exit
 * Prints "READY <port> [<port>...]" (one per listener, in order) once all
 * listen. SIGINT/SIGTERM: prints totals to stderr and exits 0.
 *
 * read()/write() rather than recv()/send(), so that /proc/<pid>/io
 * (rchar, wchar) counts the bytes: mtbench checks delivery with it.
 *
 * One epoll thread, non-blocking sockets, level-triggered. Memory per
 * connection is the struct and two cipher contexts; output that a socket
 * does not take goes to a per-connection buffer of just that size.
 */
#include "autoconf.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "crypto.h"
#include "o2.h"
#include "util.h"

#define MAX_LISTENERS 16
#define SCRATCH_LEN   (256 * 1024)
/* What source mode encrypts per write: big enough to fill a socket. */
#define SOURCE_CHUNK (64 * 1024)
#define MAX_EVENTS   256

enum mode { M_ECHO, M_SINK, M_SOURCE };

struct listener {
	int fd;
	enum mode mode;
	uint64_t source_bytes; /* 0: endless */
	uint16_t port;
};

/* Epoll data points at a conn or an lref; kind (first) tells which. */
#define K_CONN     0
#define K_LISTENER 1

struct conn {
	int kind; /* K_CONN */
	int fd;
	struct listener *l;
	uint8_t hdr[O2_HEADER_LEN];
	size_t hdr_len;
	int open; /* o2 accepted */
	struct o2_session o2;
	uint8_t *out; /* pending output */
	size_t out_off, out_len;
	uint64_t sent; /* source: stream bytes so far */
	int shut; /* source: done, SHUT_WR sent */
	uint32_t events;
	LIST_ENTRY(conn) entry; /* F.conns */
};

struct lref {
	int kind; /* K_LISTENER */
	int fd;
	struct listener *l;
};

static struct {
	int ep;
	int nocrypt;
	uint8_t *scratch;
	volatile sig_atomic_t stop;
	uint64_t accepted, closed, bad, bytes_in, bytes_out;
	size_t live;
	LIST_HEAD(, conn) conns; /* the live ones, closed at exit */
} F;

static void
on_signal(int sig)
{
	F.stop = 1;
}

static void
conn_close(struct conn *c)
{
	LIST_REMOVE(c, entry);
	epoll_ctl(F.ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	o2_session_free(&c->o2);
	free(c->out);
	free(c);
	F.closed++;
	F.live--;
}

static void
set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev == c->events)
		return;
	if (epoll_ctl(F.ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

/* Write buf; keep what the socket refuses. -1 on error. */
static int
conn_send(struct conn *c, const uint8_t *buf, size_t len)
{
	ssize_t w = 0;

	if (c->out_len == c->out_off) {
		do {
			w = write(c->fd, buf, len);
		} while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (errno != EAGAIN)
				return -1;
			w = 0;
		}
		F.bytes_out += w;
		if ((size_t)w == len)
			return 0;
	}
	size_t rest = len - w;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	uint8_t *nb = realloc(c->out, c->out_len + rest);
	if (nb == NULL)
		return -1;
	memcpy(nb + c->out_len, buf + w, rest);
	c->out = nb;
	c->out_len += rest;
	return 0;
}

/* Send pending output: 1 all gone, 0 EAGAIN, -1 error. */
static int
conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w =
		    write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		F.bytes_out += w;
		c->out_off += w;
	}
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = 0;
	return 1;
}

/* Source mode: keep the socket full. -1 on error. */
static int
source_fill(struct conn *c)
{
	struct listener *l = c->l;

	for (int round = 0; round < 8; round++) {
		int r = conn_flush(c);
		if (r <= 0)
			return r;
		if (l->source_bytes && c->sent >= l->source_bytes) {
			if (!c->shut)
				shutdown(c->fd, SHUT_WR);
			c->shut = 1;
			set_events(c, EPOLLIN);
			return 0;
		}
		size_t n = SOURCE_CHUNK;
		if (l->source_bytes && l->source_bytes - c->sent < n)
			n = l->source_bytes - c->sent;
		uint8_t *buf = F.scratch;
		memcpy(buf, bench_pattern + c->sent % BENCH_PATTERN_LEN, n);
		if (!F.nocrypt &&
		    crypto_stream_apply(c->o2.enc, buf, buf, n) == -1)
			return -1;
		c->sent += n;
		if (conn_send(c, buf, n) == -1)
			return -1;
	}
	return 0;
}

/* The proxy's header is complete: open the streams. -1 on error. */
static int
conn_open(struct conn *c)
{
	if (o2_accept(c->hdr, NULL, 0, &c->o2) == -1) {
		F.bad++;
		return -1;
	}
	c->open = 1;
	if (c->l->mode == M_SOURCE) {
		set_events(c, EPOLLIN | EPOLLOUT);
		return source_fill(c);
	}
	return 0;
}

static void
conn_readable(struct conn *c)
{
	uint8_t *buf = F.scratch;

	for (int round = 0; round < 4; round++) {
		size_t want = SCRATCH_LEN;
		uint8_t *p = buf;

		if (!c->open)
			want = O2_HEADER_LEN - c->hdr_len,
			p = c->hdr + c->hdr_len;
		ssize_t n = read(c->fd, p, want);
		if (n == 0) {
			conn_close(c);
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_close(c);
			return;
		}
		F.bytes_in += n;
		if (!c->open) {
			c->hdr_len += n;
			if (c->hdr_len == O2_HEADER_LEN && conn_open(c) == -1) {
				conn_close(c);
				return;
			}
			continue;
		}
		if (c->l->mode == M_ECHO) {
			if (!F.nocrypt &&
			    (crypto_stream_apply(c->o2.dec, buf, buf, n) ||
			        crypto_stream_apply(c->o2.enc, buf, buf, n))) {
				conn_close(c);
				return;
			}
			if (conn_send(c, buf, n) == -1) {
				conn_close(c);
				return;
			}
			if (c->out_len > c->out_off) {
				/* Back-pressure: stop reading until the
				 * proxy takes our output. */
				set_events(c, EPOLLOUT);
				return;
			}
		}
		if ((size_t)n < want)
			return;
	}
}

static void
conn_writable(struct conn *c)
{
	int r;

	if (c->l->mode == M_SOURCE) {
		if (source_fill(c) == -1)
			conn_close(c);
		return;
	}
	if ((r = conn_flush(c)) == -1) {
		conn_close(c);
		return;
	}
	if (r == 1)
		set_events(c, EPOLLIN);
}

static void
do_accept(struct lref *lr)
{
	for (int i = 0; i < 64; i++) {
		int one = 1;
		int fd =
		    accept4(lr->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				perror("fastdc: accept");
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->l = lr->l;
		c->events = EPOLLIN;
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(F.ep, EPOLL_CTL_ADD, fd, &e) == -1) {
			close(fd);
			free(c);
			continue;
		}
		LIST_INSERT_HEAD(&F.conns, c, entry);
		F.accepted++;
		F.live++;
	}
}

static int
parse_listener(const char *arg, struct listener *l)
{
	char mode[32];
	const char *colon = strchr(arg, ':');
	size_t mlen = colon ? (size_t)(colon - arg) : strlen(arg);
	char *end;

	if (mlen >= sizeof(mode))
		return -1;
	memcpy(mode, arg, mlen);
	mode[mlen] = '\0';
	l->source_bytes = 0;
	if (strcmp(mode, "echo") == 0)
		l->mode = M_ECHO;
	else if (strcmp(mode, "sink") == 0)
		l->mode = M_SINK;
	else if (strcmp(mode, "source") == 0)
		l->mode = M_SOURCE;
	else if (strncmp(mode, "source=", 7) == 0) {
		l->mode = M_SOURCE;
		l->source_bytes = strtoull(mode + 7, &end, 10);
		if (*end != '\0' || l->source_bytes == 0)
			return -1;
	} else
		return -1;
	l->port = 0;
	if (colon) {
		long p = strtol(colon + 1, &end, 10);
		if (*end != '\0' || p < 0 || p > 65535)
			return -1;
		l->port = (uint16_t)p;
	}
	return 0;
}

static int
listen_on(const char *addr, struct listener *l)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	if (addr_from_ip_port(addr, l->port, &ss, &sl) == -1) {
		fprintf(stderr, "fastdc: bad address %s\n", addr);
		return -1;
	}
	l->fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd == -1)
		return -1;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&ss, sl) == -1 ||
	    listen(l->fd, 4096) == -1) {
		perror("fastdc: bind/listen");
		return -1;
	}
	sl = sizeof(ss);
	getsockname(l->fd, (struct sockaddr *)&ss, &sl);
	l->port = ntohs(ss.ss_family == AF_INET
	        ? ((struct sockaddr_in *)&ss)->sin_port
	        : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void usage(void) __attribute__((noreturn));

static void
usage(void)
{
	fprintf(stderr,
	    "usage: fastdc [-a addr] [-n] [-q] "
	    "echo|sink|source|source=N[:port] ...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static struct listener ls[MAX_LISTENERS];
	static struct lref lrefs[MAX_LISTENERS];
	struct epoll_event evs[MAX_EVENTS];
	const char *addr = "127.0.0.1";
	int nl = 0, quiet = 0, ch;
	struct sigaction sa;

	while ((ch = getopt(argc, argv, "a:nq")) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 'n':
			F.nocrypt = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || argc > MAX_LISTENERS)
		usage();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	bench_pattern_init();
	if ((F.scratch = malloc(SCRATCH_LEN)) == NULL ||
	    (F.ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("fastdc");
		return 1;
	}
	for (nl = 0; nl < argc; nl++) {
		if (parse_listener(argv[nl], &ls[nl]) == -1) {
			fprintf(stderr, "fastdc: bad listener %s\n", argv[nl]);
			usage();
		}
		if (listen_on(addr, &ls[nl]) == -1)
			return 1;
		lrefs[nl] = (struct lref){ K_LISTENER, ls[nl].fd, &ls[nl] };
		struct epoll_event e = { .events = EPOLLIN,
			.data.ptr = &lrefs[nl] };
		if (epoll_ctl(F.ep, EPOLL_CTL_ADD, ls[nl].fd, &e) == -1) {
			perror("fastdc: epoll_ctl");
			return 1;
		}
	}
	printf("READY");
	for (int i = 0; i < nl; i++)
		printf(" %u", ls[i].port);
	printf("\n");
	fflush(stdout);

	while (!F.stop) {
		int n = epoll_wait(F.ep, evs, MAX_EVENTS, 1000);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("fastdc: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (*(int *)evs[i].data.ptr == K_LISTENER) {
				do_accept(evs[i].data.ptr);
				continue;
			}
			/* A conn closed earlier in this batch cannot appear:
			 * each fd is in the batch at most once. */
			struct conn *c = evs[i].data.ptr;
			uint32_t ev = evs[i].events;
			if ((ev & EPOLLOUT) && (c->events & EPOLLOUT)) {
				conn_writable(c);
				continue; /* c may be gone */
			}
			if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_readable(c);
		}
	}
	if (!quiet)
		fprintf(stderr,
		    "fastdc: accepted %llu closed %llu live %zu "
		    "bad %llu bytes_in %llu bytes_out %llu\n",
		    (unsigned long long)F.accepted,
		    (unsigned long long)F.closed, F.live,
		    (unsigned long long)F.bad, (unsigned long long)F.bytes_in,
		    (unsigned long long)F.bytes_out);
	while (!LIST_EMPTY(&F.conns))
		conn_close(LIST_FIRST(&F.conns));
	return 0;
}
