/*
 * mtbench: load generator and measurements for mtprotod in direct mode,
 * against fastdc as the DC, and (--middle) in middle-proxy mode, against
 * tests/peers/fake_mp as the middle proxy. README.md in this directory
 * explains every number; run-bench.sh runs them all.
 *
 * Each scenario prints one result line of key=value pairs starting with
 * "scenario=" on stdout, then a human table; progress and errors go to
 * stderr. "mtbench table [FILE...]" prints the table for result lines
 * collected from earlier runs.
 *
 * The proxy's cost is read from /proc/<pid>/stat (user + system time) of
 * every worker process of the daemon (--daemon PID: the supervisor), not
 * from wall time, because the machine is shared.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "crypto.h"
#include "framing.h"
#include "rpc.h"
#include "util.h"

#define MAX_WORKERS 64
#define MAX_PROCS   64
#define RBUF_LEN    (256 * 1024)
#define MAX_EVENTS  256
/* The small frame of handshakes and idle connections: intermediate
 * framing (LE32 length, spec A.3.2) around 16 pattern bytes. */
#define PING_PAYLOAD 16
#define PING_LEN     (4 + PING_PAYLOAD)
/* A handshake that takes longer than this counts as failed. */
#define HS_TIMEOUT_NS (5ull * 1000000000ull)
/*
 * Middle mode: the proxy cuts the client's stream into MTProto packets
 * and checks each (spec A.3.4), so the client sends real frames
 * (intermediate A.3.2 for classic, padded A.3.3 for secure and tls) of
 * packets that pass: an unencrypted req_pq_multi, or packets whose
 * auth_key_id (first 8 bytes) is non-zero and that are >= 56 bytes.
 */
#define MID_HDR_LEN      4 /* LE32 length, A.3.2 */
#define MID_QUICKACK     0x80000000u /* A.3.2: bit 31 */
#define MID_ENC_MIN      56 /* A.3.4 */
#define MID_REQ_PQ_MULTI 0xbe7e8ef1u /* A.3.4 */
#define MID_RES_PQ       0x05162463u /* resPQ (MTProto) */
/* Unencrypted message layout: auth_key_id, msg_id, length, body. */
#define MID_MSG_ID     8
#define MID_MSG_LENGTH 16
#define MID_MSG_BODY   20
#define MID_MSG_NONCE  24
#define MID_NONCE_LEN  16
#define MID_REQ_PQ_LEN 40 /* 8 + 8 + 4 + 4 + 16 */
#define MID_RES_PQ_LEN 84 /* what fake_mp answers (peer.c) */
/* Largest padding the client adds to a handshake's req_pq_multi: 1..3,
 * so that the proxy's L & ~3 is exactly the packet (A.3.3). */
#define MID_PAD_MAX 3
/* Bulk: --pad-max, at most 15 (tdlib pads 0..15, A.3.3); the proxy adds
 * 0..3 on the way back. */
#define MID_BULK_PAD_MAX 15
#define MID_RX_PAD_MAX   3
/* Download: the source request to fake_mp --mode source (see
 * tests/peers/fake_mp.c): magic auth_key_id, LE64 bytes, LE32 packet. */
#define MID_SRC_MAGIC   "SRCREQ01"
#define MID_SRC_REQ_LEN 56
/* Time-based download: as good as endless. */
#define MID_SRC_ENDLESS (1ull << 60)
/* Bytes mode: a run where nothing moved for this long failed. */
#define STALL_NS (30ull * 1000000000ull)
/* Handshake time histogram: 10 us buckets up to 80 ms. */
#define HIST_STEP_NS 10000ull
#define HIST_N       8192

static struct {
	struct bench_target t;
	const char *scenario;
	pid_t daemon;
	pid_t workers[MAX_WORKERS];
	int nworkers;
	pid_t fastdc;
	pid_t mp; /* fake_mp, for its CPU */
	int mp_ctl; /* its control port */
	int middle;
	size_t packet; /* middle bulk packet size */
	uint64_t bytes_per_conn; /* middle bulk: packet bytes per conn */
	uint64_t inflight_bytes; /* middle echo: sent - echoed at most */
	int pad_max; /* middle bulk: padding 0..pad_max (padded) */
	const char *algo; /* aes: what to time */
	int dc_echo, dc_sink, dc_source;
	const char *mode;
	int conns;
	double duration;
	double warmup;
	double bytes; /* bulk: stop after this many */
	int procs;
	int inflight;
	double rate;
	int size;
	size_t chunk;
	int verify;
	const char *label;
	int quiet_table;
	/* handshake --users N: the daemon has N users, user i's secret
	 * the -s one's first 12 bytes and BE32(i); --cold: each
	 * connection from a new address (and /24) as a random user, else
	 * each load process from its own address as one user. */
	long users;
	int cold;
	/* idle --src A: connection k (of all processes) binds to address
	 * A + k / per_src; --dc-spread N: connection k asks for DC
	 * dc_echo + k % N; --hold S: after opening, hold S seconds (the
	 * daemon's CPU is read meanwhile), then one more round trip on
	 * every connection. */
	struct in_addr src;
	int has_src;
	int per_src;
	int dc_spread;
	double hold;
} B = {
	.dc_echo = 2,
	.dc_sink = 3,
	.dc_source = 4,
	.mode = "echo",
	.conns = 0,
	.duration = 10,
	.warmup = 1,
	.procs = 0,
	.inflight = 0,
	.rate = 1000,
	.size = 64,
	.chunk = 64 * 1024,
	.verify = 1,
	.packet = 16384,
	.pad_max = MID_BULK_PAD_MAX,
	.algo = "ctr",
	.per_src = 20000,
	.dc_spread = 1,
};

/* The result lines this run printed, for the table at the end. */
static char *results[64];
static int nresults;

static void
die(const char *, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void note(const char *, ...) __attribute__((format(printf, 1, 2)));
static void result(const char *, ...) __attribute__((format(printf, 1, 2)));
static void usage(void) __attribute__((noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mtbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static void
note(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mtbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

/* Print a result line (and keep it for the table). */
static void
result(const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "scenario=%s", B.scenario);
	if (B.label)
		n += snprintf(line + n, sizeof(line) - n, " label=%s", B.label);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	printf("%s\n", line);
	fflush(stdout);
	if (nresults < (int)nitems(results))
		results[nresults++] = strdup(line);
}

static double
ns2s(uint64_t ns)
{
	return ns / 1e9;
}

/* ------------------------------------------------------------ workers */

static void
find_workers(int required)
{
	if (B.daemon > 0) {
		uint64_t until = bench_now_ns() + 10 * 1000000000ull;
		do {
			B.nworkers = bench_find_workers(
			    B.daemon, B.workers, MAX_WORKERS);
			if (B.nworkers > 0)
				break;
			usleep(100000);
		} while (bench_now_ns() < until);
	}
	if (B.nworkers == 0 && required)
		die("no worker process found: give --daemon PID (the "
		    "supervisor) or --worker PID");
}

/* Sum of user + system seconds of all workers. */
static double
workers_cpu(void)
{
	double sum = 0;

	for (int i = 0; i < B.nworkers; i++) {
		double c = bench_proc_cpu(B.workers[i]);
		if (c < 0)
			die("worker %d is gone", (int)B.workers[i]);
		sum += c;
	}
	return sum;
}

/* Sum of a smaps_rollup field over the workers; -1 if absent. */
static long long
workers_mem(const char *field)
{
	long long sum = 0;

	for (int i = 0; i < B.nworkers; i++) {
		long long v = bench_proc_smaps(B.workers[i], field);
		if (v < 0)
			return -1;
		sum += v;
	}
	return sum;
}

static int
workers_fds(void)
{
	int sum = 0;

	for (int i = 0; i < B.nworkers; i++)
		sum += bench_proc_nfds(B.workers[i]);
	return sum;
}

static double
fastdc_cpu(void)
{
	return B.fastdc > 0 ? bench_proc_cpu(B.fastdc) : 0;
}

static double
mp_cpu(void)
{
	return B.mp > 0 ? bench_proc_cpu(B.mp) : 0;
}

/* A CPU snapshot: workers, fastdc, fake_mp, us (and our children). */
struct snap {
	uint64_t t;
	double worker, fastdc, mp, self;
};

static void
snap_take(struct snap *s)
{
	s->t = bench_now_ns();
	s->worker = B.nworkers ? workers_cpu() : 0;
	s->fastdc = fastdc_cpu();
	s->mp = mp_cpu();
	s->self = bench_self_cpu();
}

static const char *
backend_name(void)
{
	return B.middle ? "middle" : "direct";
}

/* ------------------------------------------------------------ fake_mp */

/*
 * One command to fake_mp's control port; its one-line answer (malloc'd,
 * NUL-terminated), or NULL. The stats line lists every client seen, so
 * it may be megabytes long.
 */
static char *
mp_cmd(const char *cmd)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct timeval tv = { 10, 0 };
	char where[32], *buf = NULL;
	size_t len = 0, cap = 0;
	int fd;

	if (B.mp_ctl <= 0)
		return NULL;
	snprintf(where, sizeof(where), "127.0.0.1:%d", B.mp_ctl);
	if (addr_parse(where, 0, &ss, &sl) != 0 ||
	    (fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, sl) == -1 ||
	    write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) ||
	    write(fd, "\n", 1) != 1) {
		close(fd);
		return NULL;
	}
	for (;;) {
		if (cap - len < 65536) {
			char *nb = realloc(buf, cap = cap ? 2 * cap : 65536);
			if (nb == NULL)
				break;
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
		if (buf[len - 1] == '\n')
			break;
	}
	close(fd);
	if (buf == NULL || len == 0 || buf[len - 1] != '\n') {
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

/* What run-bench and the table want from fake_mp's stats. */
struct mpstats {
	double links; /* open now */
	double links_total; /* ever opened */
	double nconns; /* clients seen since the reset */
	double packets; /* RPC_PROXY_REQs */
	double bytes; /* the client packets in them */
	int ok;
};

/* The number after "key": in s, or NAN. */
static double
json_num(const char *s, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	if (s == NULL || (p = strstr(s, k)) == NULL)
		return NAN;
	return strtod(p + strlen(k), NULL);
}

static void
mp_stats(struct mpstats *m)
{
	char *s = mp_cmd("stats");
	const char *tail;

	memset(m, 0, sizeof(*m));
	if (s == NULL)
		return;
	/* "links" and "links_total" lead; the counters follow the conns
	 * object, whose entries have "packets" and "bytes" of their own. */
	m->links = json_num(s, "links");
	m->links_total = json_num(s, "links_total");
	tail = strstr(s, "\"nconns\": ");
	m->nconns = json_num(tail, "nconns");
	m->packets = json_num(tail, "packets");
	m->bytes = json_num(tail, "bytes");
	m->ok = !isnan(m->links) && !isnan(m->links_total) &&
	    !isnan(m->nconns) && !isnan(m->packets) && !isnan(m->bytes);
	free(s);
}

/* Forget the clients and counters of earlier runs. */
static void
mp_reset(void)
{
	char *s;

	if (B.mp_ctl <= 0)
		return;
	/* The proxy may still be forwarding the last packets of the
	 * previous run's clients: they would count as clients of this one. */
	usleep(500000);
	if ((s = mp_cmd("reset")) == NULL || strstr(s, "\"ok\"") == NULL)
		die("fake_mp control port %d: no answer to reset", B.mp_ctl);
	free(s);
}

/* Every link that existed between two readings: open at the first
 * plus opened since. */
static double
mp_links_used(const struct mpstats *a, const struct mpstats *b)
{
	return a->links + (b->links_total - a->links_total);
}

/* ------------------------------------------------------------ framing */

static int
mid_padded(void)
{
	return B.t.proto != BENCH_CLASSIC;
}

/*
 * Frame and queue one packet: the header, the packet, and (padded
 * framing) padlen padding bytes. Returns what bconn_writev does.
 */
static int
mid_send(struct bconn *c, const uint8_t *pkt, size_t len, const uint8_t *pad,
    size_t padlen)
{
	uint8_t hdr[MID_HDR_LEN];
	struct iovec iov[3] = {
		{ hdr, sizeof(hdr) },
		{ (void *)(uintptr_t)pkt, len },
		{ (void *)(uintptr_t)pad, padlen },
	};

	put_le32(hdr, (uint32_t)(len + padlen));
	return bconn_writev(c, iov, 3);
}

static uint64_t
splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * Middle bulk: the padding of a connection's packet idx, 0..--pad-max
 * bytes of random-looking content (none in classic's intermediate
 * framing). A function of the connection's seed and idx, so that the
 * echo check knows what came with each packet without keeping a queue.
 */
static size_t
mid_pad(uint64_t seed, uint64_t idx, uint8_t pad[16])
{
	uint64_t a = splitmix64(seed ^ (idx * 0xd1342543de82ef95ull));
	uint64_t b = splitmix64(a), c = splitmix64(b);

	memcpy(pad, &b, 8);
	memcpy(pad + 8, &c, 8);
	return mid_padded() ? (size_t)(a % (uint64_t)(B.pad_max + 1)) : 0;
}

/* Middle bulk: the length of packet idx of a connection's stream
 * (--bytes-per-conn: the last one may be shorter; 0 past the end). */
static size_t
mid_pkt_len(uint64_t idx)
{
	uint64_t off = idx * B.packet;

	if (B.bytes_per_conn == 0)
		return B.packet;
	if (off >= B.bytes_per_conn)
		return 0;
	return B.bytes_per_conn - off < B.packet
	    ? (size_t)(B.bytes_per_conn - off)
	    : B.packet;
}

/*
 * The proxy's frames to a client, cut out of the decrypted stream:
 * LE32 length, packet, and in padded framing 0..3 padding bytes. fn
 * gets the packet bytes in pieces, with their offset in the packet and
 * whether the piece ends it (f->packets is the packet's index, f->len
 * its length); it returns -1 to stop.
 */
struct fparse;
typedef int (*fparse_fn)(void *arg, const struct fparse *f, const uint8_t *p,
    size_t len, uint32_t off, int end);

struct fparse {
	uint8_t hdr[MID_HDR_LEN];
	unsigned hlen;
	uint32_t len; /* the current packet's length */
	uint32_t body; /* packet bytes left in this frame */
	uint32_t pad; /* padding bytes after them */
	uint64_t packets; /* complete packets */
};

/* 0, or -1 on a frame the proxy must not send or when fn said stop. */
static int
fparse_feed(
    struct fparse *f, const uint8_t *p, size_t n, fparse_fn fn, void *arg)
{
	while (n > 0) {
		size_t take;
		if (f->body == 0 && f->pad == 0) {
			take = MID_HDR_LEN - f->hlen;
			if (take > n)
				take = n;
			memcpy(f->hdr + f->hlen, p, take);
			f->hlen += take;
			p += take;
			n -= take;
			if (f->hlen < MID_HDR_LEN)
				break;
			f->hlen = 0;
			uint32_t l = get_le32(f->hdr);
			/* No quick acks were asked for (bit 31). */
			if (l == 0 || (l & MID_QUICKACK) ||
			    l > FRAME_MAX_PACKET + MID_RX_PAD_MAX)
				return -1;
			f->body = mid_padded() ? l & ~3u : l;
			f->pad = l - f->body;
			f->len = f->body;
			if (f->body == 0 || f->body % 4 != 0)
				return -1;
			continue;
		}
		if (f->body > 0) {
			take = n < f->body ? n : f->body;
			f->body -= take;
			if (fn(arg, f, p, take, f->len - f->body - take,
			        f->body == 0) == -1)
				return -1;
			if (f->body == 0)
				f->packets++;
		} else {
			take = n < f->pad ? n : f->pad;
			f->pad -= take;
		}
		p += take;
		n -= take;
	}
	return 0;
}

/* Middle bulk: per connection, the packets queued and the answers. */
struct mstate {
	uint64_t seed; /* of the padding */
	uint64_t pkts_up; /* packets queued */
	uint64_t pbytes_up; /* their bytes */
	uint64_t fbytes_up; /* what the proxy forwards: + padding words */
	uint64_t pkts_down; /* packets come back, checked */
	uint64_t pbytes_down; /* their bytes (without padding words) */
	int echo; /* answers are echoes: with the padding words */
	int done;
	uint32_t got_len, want_len; /* a packet of the wrong length */
	struct fparse fp;
};

/*
 * Middle bulk: packet idx that comes back is packet idx of the
 * connection's stream (the bench pattern cut into packets, each at its
 * place in the pattern), followed in echo mode by the whole words of
 * its padding (A.3.3: the proxy forwards L & ~3 bytes), which must be
 * exactly the padding sent. Lengths are checked even with --no-verify.
 */
static int
fparse_bulk(void *arg, const struct fparse *f, const uint8_t *p, size_t n,
    uint32_t off, int end)
{
	struct mstate *m = arg;
	uint64_t idx = f->packets;
	size_t plen = mid_pkt_len(idx), extra = 0, k;
	uint8_t pad[16];

	if (m->echo)
		extra = mid_pad(m->seed, idx, pad) & ~(size_t)3;
	if (off == 0 && (plen == 0 || f->len != plen + extra)) {
		m->got_len = f->len;
		m->want_len = (uint32_t)(plen + extra);
		return -1;
	}
	if (B.verify) {
		if (off < plen) {
			k = n < plen - off ? n : plen - off;
			if (!bench_pattern_check(p, k, idx * B.packet + off))
				return -1;
			p += k, n -= k, off += (uint32_t)k;
		}
		if (n > 0 && memcmp(p, pad + (off - plen), n) != 0)
			return -1;
	}
	if (end) {
		m->pkts_down++;
		m->pbytes_down += plen;
	}
	return 0;
}

/* ------------------------------------------------------------ epoll */

static void
ep_set(int ep, struct bconn *c, int op)
{
	struct epoll_event e = { .events = c->events, .data.ptr = c };

	if (epoll_ctl(ep, op, c->fd, &e) == -1)
		die("epoll_ctl: %s", strerror(errno));
}

/* Open n connections and finish their handshakes (all at once). */
static void
open_all(int ep, struct bconn *cs, int n, const struct bench_target *t,
    const uint8_t *first, size_t first_len)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t until = bench_now_ns() + 20 * 1000000000ull;
	int ready = 0;

	for (int i = 0; i < n; i++) {
		if (bconn_start(&cs[i], t, first, first_len) == -1)
			die("%s: %s", cs[i].why, strerror(cs[i].err));
		ep_set(ep, &cs[i], EPOLL_CTL_ADD);
	}
	while (ready < n) {
		if (bench_now_ns() > until)
			die("handshakes timed out (%d of %d done)", ready, n);
		int k = epoll_wait(ep, evs, MAX_EVENTS, 100);
		for (int i = 0; i < k; i++) {
			struct bconn *c = evs[i].data.ptr;
			if (c->state == BCONN_READY)
				continue;
			int r = bconn_handshake(c, evs[i].events);
			if (r == -1)
				die("handshake: %s: %s", c->why,
				    c->err ? strerror(c->err) : "protocol");
			ep_set(ep, c, EPOLL_CTL_MOD);
			if (r == 1)
				ready++;
		}
	}
}

/* ------------------------------------------------------------ bulk */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * The middle-mode fields of a result line (a static buffer; "" in
 * direct mode): fake_mp's CPU share, the clients it saw and over how
 * many links.
 */
static const char *
mid_fields(
    double wall, double mpc, const struct mpstats *a, const struct mpstats *b)
{
	static char buf[384];
	double links = a->ok && b->ok ? mp_links_used(a, b) : -1;
	char pk[128] = "";

	if (!B.middle)
		return "";
	if (strcmp(B.scenario, "bulk") == 0)
		snprintf(pk, sizeof(pk),
		    " packet=%zu bytes_per_conn=%llu inflight_bytes=%llu "
		    "pad_max=%d",
		    B.packet, (unsigned long long)B.bytes_per_conn,
		    (unsigned long long)B.inflight_bytes,
		    mid_padded() ? B.pad_max : 0);
	snprintf(buf, sizeof(buf),
	    "%s mp_cpu_s=%.3f "
	    "mp_cpu_share=%.3f mp_clients=%.0f mp_links=%.0f "
	    "clients_per_link=%.1f",
	    pk, mpc, B.mp > 0 ? mpc / wall : -1.0, b->ok ? b->nconns : -1.0,
	    links, b->ok && links > 0 ? b->nconns / links : -1.0);
	return buf;
}

/* Middle bulk: whether c may queue its next packet now. */
static int
mid_can_send(const struct mstate *m)
{
	size_t next = mid_pkt_len(m->pkts_up);

	if (next == 0)
		return 0;
	return !m->echo || B.inflight_bytes == 0 ||
	    m->pbytes_up - m->pbytes_down + next <= B.inflight_bytes;
}

/* Queue up to count packets of the pattern stream (middle bulk). */
static int
mid_write_packets(struct bconn *c, struct mstate *m, int count)
{
	uint8_t pad[16];

	for (int i = 0; i < count && mid_can_send(m); i++) {
		uint64_t pos = m->pkts_up * B.packet;
		size_t len = mid_pkt_len(m->pkts_up);
		size_t padlen = mid_pad(m->seed, m->pkts_up, pad);
		if (mid_send(c, bench_pattern + pos % BENCH_PATTERN_LEN, len,
		        pad, padlen) == -1)
			return -1;
		m->pkts_up++;
		m->pbytes_up += len;
		m->fbytes_up += len + (padlen & ~(size_t)3);
	}
	return 0;
}

/* Middle download: ask fake_mp --mode source for want bytes in packets
 * of --packet bytes. */
static int
mid_source_request(struct bconn *c, struct mstate *m, uint64_t want)
{
	uint8_t req[MID_SRC_REQ_LEN], pad[16];
	size_t padlen = mid_pad(m->seed, UINT64_MAX, pad);

	memset(req, 0, sizeof(req));
	memcpy(req, MID_SRC_MAGIC, 8);
	put_le32(req + 8, (uint32_t)want);
	put_le32(req + 12, (uint32_t)(want >> 32));
	put_le32(req + 16, (uint32_t)B.packet);
	return mid_send(c, req, sizeof(req), pad, padlen);
}

/* Middle bulk with --bytes-per-conn: whether c has finished. */
static int
mid_conn_done(const struct bconn *c, const struct mstate *m, int up, int down)
{
	if (up && (mid_pkt_len(m->pkts_up) != 0 || bconn_pending(c)))
		return 0;
	return !down || m->pbytes_down >= B.bytes_per_conn;
}

/* What fake_mp got in RPC_PROXY_REQs since mp0: wait until it has want
 * bytes or stops growing (the proxy flushes what it holds). */
static void
mid_wait_delivered(
    const struct mpstats *mp0, struct mpstats *mp1, double want, double quiet_s)
{
	double prev = -1;
	uint64_t quiet = bench_now_ns() + (uint64_t)(quiet_s * 1e9);

	for (;;) {
		usleep(20000);
		mp_stats(mp1);
		if (!mp1->ok || mp1->bytes - mp0->bytes >= want)
			break;
		if (mp1->bytes != prev)
			quiet = bench_now_ns() + (uint64_t)(quiet_s * 1e9);
		else if (bench_now_ns() > quiet)
			break;
		prev = mp1->bytes;
	}
}

static int
scen_bulk(void)
{
	struct epoll_event evs[MAX_EVENTS];
	struct bench_target t = B.t;
	int echo = 0, up = 0, down = 0, n = B.conns ? B.conns : 8;
	uint8_t *rbuf = malloc(RBUF_LEN);
	struct bconn *cs = calloc(n, sizeof(*cs));
	struct mstate *ms = calloc(n, sizeof(*ms));
	struct snap s0, s1;
	struct mpstats mp0, mp1;
	uint64_t up0 = 0, down0 = 0, up1 = 0, down1 = 0;
	int started = 0, ep, ndone = 0;
	/* Middle: packets per write round, about --chunk bytes. */
	int burst = (int)((B.chunk + B.packet - 1) / B.packet);
	/* Middle --bytes-per-conn: the run is the whole transfer. */
	int fixed = B.middle && B.bytes_per_conn > 0;

	if (strcmp(B.mode, "echo") == 0)
		echo = up = down = 1, t.dc = B.dc_echo;
	else if (strcmp(B.mode, "upload") == 0)
		up = 1, t.dc = B.dc_sink;
	else if (strcmp(B.mode, "download") == 0)
		down = 1, t.dc = B.dc_source;
	else
		die("bulk: --mode echo, upload or download");
	if (rbuf == NULL || cs == NULL || ms == NULL ||
	    (ep = epoll_create1(0)) == -1)
		die("out of memory");
	for (int i = 0; i < n; i++) {
		ms[i].seed = cheap_rand64();
		ms[i].echo = echo;
	}
	find_workers(1);
	mp_reset();
	mp_stats(&mp0);
	/* Upload only: what fastdc read, to see that the proxy delivered
	 * what it took (download and echo check the bytes that return). */
	uint64_t dc_r0 = 0, dc_w, dc_r1 = 0;
	int dc_io = !down && B.fastdc > 0 &&
	    bench_proc_io(B.fastdc, &dc_r0, &dc_w) == 0;
	open_all(ep, cs, n, &t, NULL, 0);

	uint64_t t_start =
	    bench_now_ns() + (fixed ? 0 : (uint64_t)(B.warmup * 1e9));
	uint64_t t_end =
	    fixed ? UINT64_MAX : t_start + (uint64_t)(B.duration * 1e9);
	if (fixed) {
		/* The window starts before the first packet. */
		snap_take(&s0);
		started = 1;
	}
	for (int i = 0; i < n; i++) {
		if (B.middle && down && !up &&
		    mid_source_request(&cs[i], &ms[i],
		        fixed ? B.bytes_per_conn : MID_SRC_ENDLESS) == -1)
			die("send: %s", strerror(cs[i].err));
		cs[i].events = (down ? EPOLLIN : 0) |
		    (up || bconn_pending(&cs[i]) ? EPOLLOUT : 0);
		ep_set(ep, &cs[i], EPOLL_CTL_MOD);
	}
	/* Sub-windows of 1 s (or a third of a short run). */
	uint64_t win = fixed || B.duration >= 3
	    ? 1000000000ull
	    : (uint64_t)(B.duration / 3 * 1e9);
	uint64_t t_win = fixed ? t_start + win : 0, wu = 0, wd = 0;
	uint64_t moved = 0, t_moved = bench_now_ns();
	struct snap ws = s0;
	double wins[4096];
	int nwin = 0;
	for (;;) {
		uint64_t now = bench_now_ns();
		uint64_t su = 0, sd = 0;

		if (!started && now >= t_start) {
			for (int i = 0; i < n; i++)
				up0 += cs[i].up, down0 += cs[i].down;
			snap_take(&s0);
			started = 1;
			ws = s0, wu = up0, wd = down0;
			t_win = now + win;
		}
		if (started) {
			for (int i = 0; i < n; i++)
				su += cs[i].up, sd += cs[i].down;
			if (now >= t_win && nwin < (int)nitems(wins)) {
				/* Per-window figures show the noise. */
				struct snap w;
				snap_take(&w);
				double b =
				    (up ? su - wu : 0) + (down ? sd - wd : 0);
				if (b > 0)
					wins[nwin++] =
					    (w.worker - ws.worker) / (b / 1e9);
				ws = w, wu = su, wd = sd;
				t_win = now + win;
			}
			if (fixed && su + sd != moved) {
				moved = su + sd;
				t_moved = now;
			} else if (fixed && now - t_moved > STALL_NS) {
				for (int i = 0; i < n; i++)
					if (!ms[i].done)
						die("stalled: %d of %d "
						    "connections done; "
						    "connection %d: %llu "
						    "packets sent, %llu "
						    "back",
						    ndone, n, i,
						    (unsigned long long)ms[i]
						        .pkts_up,
						    (unsigned long long)ms[i]
						        .pkts_down);
			}
			if (now >= t_end || (fixed && ndone == n) ||
			    (B.bytes > 0 &&
			        (double)(su - up0 + sd - down0) >= B.bytes)) {
				/* Fixed upload: the window ends when
				 * fake_mp has it all (below), so that all
				 * of the proxy's work is in. */
				if (!fixed || down)
					snap_take(&s1);
				up1 = su, down1 = sd;
				break;
			}
		}
		int k = epoll_wait(ep, evs, MAX_EVENTS, 20);
		if (k == -1 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < k; i++) {
			struct bconn *c = evs[i].data.ptr;
			struct mstate *m = &ms[c - cs];
			uint32_t ev = evs[i].events;
			if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
				for (int round = 0; round < 4; round++) {
					ssize_t r =
					    bconn_read(c, rbuf, RBUF_LEN);
					if (r == BCONN_AGAIN)
						break;
					if (r == BCONN_EOF)
						die("the proxy closed a "
						    "connection");
					if (r == BCONN_ERROR)
						die("read: %s: %s", c->why,
						    strerror(c->err));
					if (B.middle) {
						if (fparse_feed(&m->fp, rbuf, r,
						        fparse_bulk, m) == -1) {
							if (m->got_len)
								die("packet "
								    "%llu from "
								    "the proxy "
								    "has %u "
								    "bytes, "
								    "not "
								    "%u",
								    (unsigned long long)
								        m->fp
								            .packets,
								    m->got_len,
								    m->want_len);
							die("wrong frame or "
							    "packet from the "
							    "proxy after %llu "
							    "packets",
							    (unsigned long long)
							        m->fp.packets);
						}
						continue;
					}
					if (B.verify && !B.t.nocrypt && r > 0 &&
					    !bench_pattern_check(
					        rbuf, r, c->down - r))
						die("wrong bytes from the "
						    "proxy at stream offset "
						    "%llu",
						    (unsigned long long)(c->down -
						        r));
				}
			}
			if (ev & EPOLLOUT) {
				for (int round = 0; round < 4; round++) {
					int r = bconn_flush(c);
					if (r == -1)
						die("send: %s",
						    strerror(c->err));
					if (r == 0)
						break;
					if (B.middle &&
					    (!up || !mid_can_send(m)))
						break;
					if ((B.middle ? mid_write_packets(
					                    c, m, burst)
					              : bconn_write_pattern(
					                    c, B.chunk)) == -1)
						die("send: %s",
						    strerror(c->err));
				}
			}
			if (!B.middle)
				continue;
			/* Poll for output only while there is some to
			 * send: the in-flight limit or the end of the
			 * stream may hold it back. */
			uint32_t want = (down ? EPOLLIN : 0) |
			    (bconn_pending(c) || (up && mid_can_send(m))
			            ? EPOLLOUT
			            : 0);
			if (want != c->events) {
				c->events = want;
				ep_set(ep, c, EPOLL_CTL_MOD);
			}
			if (fixed && !m->done && mid_conn_done(c, m, up, down))
				m->done = 1, ndone++;
		}
	}
	uint64_t sent = 0, fsent = 0, pgot = 0;
	for (int i = 0; i < n; i++) {
		uint64_t unsent = cs[i].olen - cs[i].ooff;
		sent += cs[i].up - unsent;
		/* Packets: what went out, less what the socket did not
		 * take (framing bytes in that rest are few). */
		fsent += ms[i].fbytes_up - unsent;
		pgot += ms[i].pbytes_down;
		if (!fixed)
			bconn_close(&cs[i]);
	}
	double delivered = -1;
	if (B.middle && !down && B.mp_ctl > 0) {
		/* What fake_mp got in RPC_PROXY_REQs: the packets and the
		 * whole words of their padding (A.3.3). With
		 * --bytes-per-conn the window ends when it has them all. */
		mid_wait_delivered(&mp0, &mp1, (double)fsent, fixed ? 5 : 0.2);
		if (fixed)
			snap_take(&s1);
		if (mp1.ok && mp0.ok && fsent > 0) {
			delivered = (mp1.bytes - mp0.bytes) / (double)fsent;
			if (delivered < 0.99 || delivered > 1.01 ||
			    (fixed && delivered != 1.0))
				note("fake_mp got %.4f%% of the packet bytes "
				     "the proxy accepted",
				    100 * delivered);
		}
	} else {
		if (fixed && !down)
			snap_take(&s1);
		mp_stats(&mp1);
		/* Echo and download: every packet came back and was
		 * checked (the run ends only then). Timed runs end with
		 * packets in flight: no figure. */
		if (B.middle && fixed)
			delivered = (double)pgot /
			    ((double)B.bytes_per_conn * (double)n);
	}
	for (int i = 0; fixed && i < n; i++)
		bconn_close(&cs[i]);
	close(ep);
	if (dc_io && !B.middle) {
		/* The proxy still flushes what it holds: wait until
		 * fastdc's count stops moving. */
		uint64_t prev = 0, until = bench_now_ns() + 5000000000ull;
		for (;;) {
			usleep(200000);
			if (bench_proc_io(B.fastdc, &dc_r1, &dc_w) == -1 ||
			    dc_r1 == prev || bench_now_ns() > until)
				break;
			prev = dc_r1;
		}
		uint64_t got = dc_r1 - dc_r0;
		got = got > (uint64_t)n * O2_HEADER_LEN
		    ? got - (uint64_t)n * O2_HEADER_LEN
		    : 0;
		delivered = sent ? (double)got / (double)sent : 0;
		if (delivered < 0.99 || delivered > 1.01)
			note("the DC got %.1f%% of the bytes the proxy "
			     "accepted",
			    100 * delivered);
	}

	double wall = ns2s(s1.t - s0.t);
	double cpu = s1.worker - s0.worker;
	double bu = (double)(up1 - up0), bd = (double)(down1 - down0);
	double div = (up ? bu : 0) + (down ? bd : 0);
	double mpc = s1.mp - s0.mp;
	double load = (s1.self - s0.self) + (s1.fastdc - s0.fastdc) + mpc;
	qsort(wins, nwin, sizeof(double), cmp_double);
	result(" backend=%s mode=%s proto=%s conns=%d seconds=%.2f "
	       "bytes_up=%.0f "
	       "bytes_down=%.0f up_mb_s=%.1f down_mb_s=%.1f worker_cpu_s=%.3f "
	       "worker_cpu_share=%.3f load_cpu_share=%.3f gb_divisor=%s "
	       "cpu_s_per_gb=%.3f windows=%d win_cpu_s_per_gb_min=%.3f "
	       "win_cpu_s_per_gb_median=%.3f win_cpu_s_per_gb_max=%.3f "
	       "tls_record=%zu verify=%d dc_delivered=%.4f%s",
	    backend_name(), B.mode, bench_proto_name(t.proto), n, wall, bu, bd,
	    bu / wall / 1e6, bd / wall / 1e6, cpu, cpu / wall, load / wall,
	    echo     ? "up+down"
	        : up ? "up"
	             : "down",
	    div > 0 ? cpu / (div / 1e9) : -1.0, nwin, nwin ? wins[0] : -1.0,
	    nwin ? wins[nwin / 2] : -1.0, nwin ? wins[nwin - 1] : -1.0,
	    t.proto == BENCH_TLS ? (t.tls_record ? t.tls_record : 2878) : 0,
	    B.verify && !B.t.nocrypt, delivered,
	    mid_fields(wall, mpc, &mp0, &mp1));
	free(rbuf);
	free(cs);
	free(ms);
	return 0;
}

/* ------------------------------------------------------------ children */

/* What a load child reports to the parent through its pipe. */
struct child_report {
	uint64_t ok, errors, dropped;
	uint64_t lat_sum_ns;
	double cpu; /* its CPU seconds in the window */
	uint32_t hist[HIST_N];
	char first_error[128];
	/* idle --hold: the round trip after the hold */
	uint64_t rt_ok, rt_errors, rt_ns;
};

static void
child_setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Each child has its own cheap_rand64() stream (session ids must
	 * differ): util.c reseeds it after fork. */
}

static void
report_error(struct child_report *r, struct bconn *c, const char *what)
{
	r->errors++;
	if (r->first_error[0] == '\0')
		snprintf(r->first_error, sizeof(r->first_error), "%s: %s%s%s",
		    what, c->why ? c->why : "?", c->err ? ": " : "",
		    c->err ? strerror(c->err) : "");
}

static void
write_full(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(3);
		b += w;
		n -= w;
	}
}

static int
read_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n > 0) {
		ssize_t r = read(fd, b, n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= r;
	}
	return 0;
}

/* The small echo frame and where a connection stands with it. */
static uint8_t ping_frame[PING_LEN];

static void
ping_init(void)
{
	uint32_t len = PING_PAYLOAD;

	memcpy(ping_frame, &len, 4); /* LE on every host we run on */
	memcpy(ping_frame + 4, bench_pattern + 4, PING_PAYLOAD);
}

/* Per-connection state of a ping (handshake and idle children). */
struct pconn {
	struct bconn c;
	uint8_t got[PING_LEN];
	size_t got_len;
	int done; /* echo seen */
	int active;
	/* Middle: the framed req_pq_multi sent, the resPQ coming back. */
	uint8_t req[MID_HDR_LEN + MID_REQ_PQ_LEN + MID_PAD_MAX];
	size_t req_len;
	uint8_t ans[MID_RES_PQ_LEN];
	struct fparse fp;
};

/* A new req_pq_multi with a random nonce, framed (middle mode). */
static void
mid_req_make(struct pconn *p)
{
	uint8_t *m = p->req + MID_HDR_LEN;
	size_t padlen = mid_padded() ? 1 + cheap_rand64() % MID_PAD_MAX : 0;
	uint32_t now = (uint32_t)now_unix();

	memset(m, 0, MID_REQ_PQ_LEN);
	/* msg_id: about the time in the high word, 0 mod 4 (a client's) */
	put_le32(m + MID_MSG_ID, (uint32_t)cheap_rand64() & ~3u);
	put_le32(m + MID_MSG_ID + 4, now);
	put_le32(m + MID_MSG_LENGTH, MID_REQ_PQ_LEN - MID_MSG_BODY);
	put_le32(m + MID_MSG_BODY, MID_REQ_PQ_MULTI);
	cheap_rand_bytes(m + MID_MSG_NONCE, MID_NONCE_LEN);
	cheap_rand_bytes(m + MID_REQ_PQ_LEN, MID_PAD_MAX);
	put_le32(p->req, (uint32_t)(MID_REQ_PQ_LEN + padlen));
	p->req_len = MID_HDR_LEN + MID_REQ_PQ_LEN + padlen;
}

/* Collect the answer; check it once complete: the resPQ to our nonce. */
static int
fparse_respq(void *arg, const struct fparse *f, const uint8_t *b, size_t len,
    uint32_t pos, int end)
{
	struct pconn *p = arg;
	static const uint8_t zero[8];

	if (f->packets > 0 || pos + len > sizeof(p->ans))
		return -1;
	memcpy(p->ans + pos, b, len);
	if (!end)
		return 0;
	return pos + len == MID_RES_PQ_LEN &&
	        memcmp(p->ans, zero, sizeof(zero)) == 0 &&
	        get_le32(p->ans + MID_MSG_BODY) == MID_RES_PQ &&
	        memcmp(p->ans + MID_MSG_NONCE,
	            p->req + MID_HDR_LEN + MID_MSG_NONCE, MID_NONCE_LEN) == 0
	    ? 0
	    : -1;
}

/* ping_read for middle mode: one framed resPQ, nothing more. */
static int
ping_read_mid(struct pconn *p, uint8_t *rbuf)
{
	for (;;) {
		ssize_t r = bconn_read(&p->c, rbuf, RBUF_LEN);
		if (r == BCONN_AGAIN)
			return 0;
		if (r == BCONN_EOF) {
			p->c.why = "EOF before the resPQ";
			p->c.err = 0;
			return -1;
		}
		if (r < 0)
			return -1;
		if (fparse_feed(&p->fp, rbuf, r, fparse_respq, p) == -1 ||
		    p->fp.packets > 1) {
			p->c.why = "not the resPQ in a frame";
			p->c.err = 0;
			return -1;
		}
		if (p->fp.packets == 1 && p->fp.pad == 0)
			return 1;
	}
}

/*
 * Read the echo of the ping frame. 1 when complete and right, 0 not yet,
 * -1 on an error (c.why set).
 */
static int
ping_read(struct pconn *p, uint8_t *rbuf)
{
	if (B.middle)
		return ping_read_mid(p, rbuf);
	for (;;) {
		ssize_t r = bconn_read(&p->c, rbuf, RBUF_LEN);
		if (r == BCONN_AGAIN)
			return 0;
		if (r == BCONN_EOF) {
			p->c.why = "EOF before the echo";
			p->c.err = 0;
			return -1;
		}
		if (r < 0)
			return -1;
		if (p->got_len + r > PING_LEN) {
			p->c.why = "more bytes than the echo";
			p->c.err = 0;
			return -1;
		}
		memcpy(p->got + p->got_len, rbuf, r);
		p->got_len += r;
		if (p->got_len == PING_LEN) {
			if (!B.t.nocrypt &&
			    memcmp(p->got, ping_frame, PING_LEN) != 0) {
				p->c.why = "wrong echo";
				p->c.err = 0;
				return -1;
			}
			return 1;
		}
	}
}

/* Start (or restart) a ping connection; -1 if the socket failed. */
static int
pconn_start(int ep, struct pconn *p, const struct bench_target *t)
{
	p->got_len = 0;
	p->done = 0;
	p->active = 0;
	if (B.middle) {
		memset(&p->fp, 0, sizeof(p->fp));
		mid_req_make(p);
	}
	if (bconn_start(&p->c, t, B.middle ? p->req : ping_frame,
	        B.middle ? p->req_len : PING_LEN) == -1)
		return -1;
	p->active = 1;
	ep_set(ep, &p->c, EPOLL_CTL_ADD);
	return 0;
}

/*
 * One event for a ping connection: 1 when the echo completed, 0 in
 * progress, -1 failed.
 */
static int
pconn_event(int ep, struct pconn *p, uint32_t ev, uint8_t *rbuf)
{
	struct bconn *c = &p->c;
	int r;

	if (c->state != BCONN_READY) {
		r = bconn_handshake(c, ev);
		if (r == -1)
			return -1;
		if (r == 0) {
			ep_set(ep, c, EPOLL_CTL_MOD);
			return 0;
		}
		/* The echo may be there already: fall through. */
		c->events = EPOLLIN | (bconn_pending(c) ? EPOLLOUT : 0);
		ep_set(ep, c, EPOLL_CTL_MOD);
	}
	if (bconn_pending(c)) {
		if ((r = bconn_flush(c)) == -1)
			return -1;
		if (r == 1) {
			c->events = EPOLLIN;
			ep_set(ep, c, EPOLL_CTL_MOD);
		}
	}
	return ping_read(p, rbuf);
}

/* ------------------------------------------------------------ handshake */

/* --users: user u's secret (see B.users). */
static void
user_secret(long u, uint8_t out[O2_SECRET_LEN])
{
	memcpy(out, B.t.secret, O2_SECRET_LEN - 4);
	out[12] = (uint8_t)(u >> 24);
	out[13] = (uint8_t)(u >> 16);
	out[14] = (uint8_t)(u >> 8);
	out[15] = (uint8_t)u;
}

/*
 * --users: who the next connection of load process idx is and where it
 * comes from. Warm: always this process's one user from 127.0.1.idx+1.
 * Cold: a random user from 127.A.B.1, a /24 not used for a long while
 * (50 * 256 of them per process, in turn), so the daemon has no hint.
 */
static void
hs_identity(struct bench_target *t, int idx, uint32_t *seq)
{
	if (B.users <= 0)
		return;
	t->has_src = 1;
	t->src.sin_family = AF_INET;
	t->src.sin_port = 0;
	if (!B.cold) {
		t->src.sin_addr.s_addr = htonl(0x7f000100u + (uint32_t)idx + 1);
		return;
	}
	uint32_t n = (*seq)++ % (50 * 256);
	uint32_t a = 16 + (uint32_t)idx * 50 + n / 256, b = n % 256;
	t->src.sin_addr.s_addr = htonl(0x7f000001u | a << 16 | b << 8);
	user_secret(random() % B.users, t->secret);
}

static void
hs_child(int idx, int wfd, uint64_t t_start, uint64_t t_end, int inflight)
{
	struct epoll_event evs[MAX_EVENTS];
	struct child_report *rep = calloc(1, sizeof(*rep));
	struct pconn *ps = calloc(inflight, sizeof(*ps));
	struct bench_target *ts = calloc(inflight, sizeof(*ts));
	uint8_t *rbuf = malloc(RBUF_LEN);
	struct bench_target t = B.t;
	double cpu0 = -1;
	uint64_t last_scan = 0;
	uint32_t seq = 0;
	int ep = epoll_create1(0);

	child_setup();
	if (rep == NULL || ps == NULL || ts == NULL || rbuf == NULL || ep == -1)
		_exit(2);
	t.dc = B.dc_echo;
	srandom((unsigned)getpid() ^ (unsigned)bench_now_ns());
	if (B.users > 0)
		user_secret(random() % B.users, t.secret);
	for (int i = 0; i < inflight; i++) {
		ts[i] = t;
		hs_identity(&ts[i], idx, &seq);
		if (pconn_start(ep, &ps[i], &ts[i]) == -1)
			report_error(rep, &ps[i].c, "start");
	}
	for (;;) {
		uint64_t now = bench_now_ns();
		if (cpu0 < 0 && now >= t_start)
			cpu0 = bench_self_cpu();
		if (now >= t_end)
			break;
		int k = epoll_wait(ep, evs, MAX_EVENTS, 10);
		now = bench_now_ns();
		for (int i = 0; i < k; i++) {
			struct pconn *p = evs[i].data.ptr;
			int r = pconn_event(ep, p, evs[i].events, rbuf);
			if (r == 0)
				continue;
			if (r == 1 && now >= t_start && now < t_end) {
				uint64_t lat = now - p->c.t_start;
				uint64_t b = lat / HIST_STEP_NS;
				rep->ok++;
				rep->lat_sum_ns += lat;
				rep->hist[b < HIST_N ? b : HIST_N - 1]++;
			} else if (r == -1 && now >= t_start && now < t_end)
				report_error(rep, &p->c, "handshake");
			bconn_close(&p->c);
			hs_identity(&ts[p - ps], idx, &seq);
			if (pconn_start(ep, p, &ts[p - ps]) == -1) {
				report_error(rep, &p->c, "start");
				usleep(1000);
			}
		}
		if (now - last_scan > 100000000ull) {
			last_scan = now;
			for (int i = 0; i < inflight; i++) {
				struct pconn *p = &ps[i];
				/* (t_start may be later than now: restarted
				 * in this round) */
				if (p->active &&
				    (p->c.t_start > now ||
				        now - p->c.t_start < HS_TIMEOUT_NS))
					continue;
				if (p->active) {
					p->c.why = "timeout";
					p->c.err = 0;
					if (now >= t_start)
						report_error(
						    rep, &p->c, "handshake");
					bconn_close(&p->c);
				}
				hs_identity(&ts[p - ps], idx, &seq);
				if (pconn_start(ep, p, &ts[p - ps]) == -1)
					report_error(rep, &p->c, "start");
			}
		}
	}
	rep->cpu = bench_self_cpu() - (cpu0 < 0 ? 0 : cpu0);
	write_full(wfd, rep, sizeof(*rep));
	_exit(0);
}

/* Fork nprocs children running fn; their report pipes go to fds. */
static void
spawn(
    int nprocs, pid_t *pids, int *fds, void (*fn)(int, int, void *), void *arg)
{
	for (int i = 0; i < nprocs; i++) {
		int pfd[2];
		if (pipe(pfd) == -1)
			die("pipe: %s", strerror(errno));
		fflush(NULL);
		pid_t pid = fork();
		if (pid == -1)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			close(pfd[0]);
			for (int j = 0; j < i; j++)
				close(fds[j]);
			fn(i, pfd[1], arg);
			_exit(0);
		}
		close(pfd[1]);
		pids[i] = pid;
		fds[i] = pfd[0];
	}
}

struct hs_args {
	uint64_t t_start, t_end;
	int inflight;
};

static void
hs_child_main(int idx, int wfd, void *arg)
{
	struct hs_args *a = arg;

	hs_child(idx, wfd, a->t_start, a->t_end, a->inflight);
}

/* ceil(p * n) without libm */
static uint64_t
rank_of(double p, uint64_t n)
{
	uint64_t r = (uint64_t)(p * n);

	return (double)r < p * n ? r + 1 : r;
}

static double
hist_pct(const uint32_t *h, uint64_t total, double pct)
{
	uint64_t want = rank_of(pct, total), acc = 0;

	for (int i = 0; i < HIST_N; i++) {
		acc += h[i];
		if (acc >= want && want > 0)
			return (i + 1) * HIST_STEP_NS / 1e3;
	}
	return -1;
}

static int
scen_handshake(void)
{
	int nprocs = B.procs ? B.procs : 4;
	int inflight = B.inflight ? B.inflight : 8;
	pid_t pids[MAX_PROCS];
	int fds[MAX_PROCS];
	struct child_report *sum = calloc(1, sizeof(*sum));
	struct child_report *rep = calloc(1, sizeof(*rep));
	struct hs_args a;
	struct snap s0, s1;
	struct mpstats mp0, mp1;
	char err[128] = "";

	if (nprocs > MAX_PROCS || sum == NULL || rep == NULL)
		die("--procs: at most %d", MAX_PROCS);
	find_workers(1);
	mp_reset();
	mp_stats(&mp0);
	a.t_start = bench_now_ns() + (uint64_t)(B.warmup * 1e9);
	a.t_end = a.t_start + (uint64_t)(B.duration * 1e9);
	a.inflight = inflight;
	spawn(nprocs, pids, fds, hs_child_main, &a);
	bench_sleep_until(a.t_start);
	snap_take(&s0);
	bench_sleep_until(a.t_end);
	snap_take(&s1);
	for (int i = 0; i < nprocs; i++) {
		if (read_full(fds[i], rep, sizeof(*rep)) == -1)
			die("a load process died");
		close(fds[i]);
		sum->ok += rep->ok;
		sum->errors += rep->errors;
		sum->lat_sum_ns += rep->lat_sum_ns;
		sum->cpu += rep->cpu;
		for (int j = 0; j < HIST_N; j++)
			sum->hist[j] += rep->hist[j];
		if (err[0] == '\0' && rep->first_error[0])
			snprintf(err, sizeof(err), "%s", rep->first_error);
	}
	for (int i = 0; i < nprocs; i++)
		waitpid(pids[i], NULL, 0);
	if (err[0])
		note("first handshake error: %s", err);
	/* (clients seen include the warm-up's) */
	mp_stats(&mp1);

	double wall = ns2s(s1.t - s0.t);
	double cpu = s1.worker - s0.worker;
	double mpc = s1.mp - s0.mp;
	double load = sum->cpu + (s1.fastdc - s0.fastdc) + mpc;
	result(" backend=%s proto=%s users=%ld match=%s procs=%d "
	       "inflight=%d seconds=%.2f handshakes=%llu "
	       "errors=%llu rate_per_s=%.0f worker_cpu_s=%.3f "
	       "worker_cpu_share=%.3f load_cpu_share=%.3f "
	       "cpu_us_per_handshake=%.1f hs_ms_mean=%.3f hs_ms_p50=%.3f "
	       "hs_ms_p99=%.3f%s",
	    backend_name(), bench_proto_name(B.t.proto),
	    B.users > 0 ? B.users : 1,
	    B.users <= 0 ? "one"
	        : B.cold ? "cold"
	                 : "warm",
	    nprocs, inflight, wall, (unsigned long long)sum->ok,
	    (unsigned long long)sum->errors, sum->ok / wall, cpu, cpu / wall,
	    load / wall, sum->ok ? cpu / sum->ok * 1e6 : -1.0,
	    sum->ok ? sum->lat_sum_ns / 1e6 / sum->ok : -1.0,
	    hist_pct(sum->hist, sum->ok, 0.5) / 1e3,
	    hist_pct(sum->hist, sum->ok, 0.99) / 1e3,
	    mid_fields(wall, mpc, &mp0, &mp1));
	free(sum);
	free(rep);
	return 0;
}

/* ------------------------------------------------------------ idle */

struct idle_args {
	int total, nprocs, inflight;
	int ctl; /* read end: EOF means "close all" */
	int ctl_w; /* write end, the parent's only */
	/* --hold: per child, a pipe; a byte on it means "one more round
	 * trip on every connection now" */
	int go[MAX_PROCS][2];
};

/* Child idx's first connection, counted over all children. */
static int
idle_first(const struct idle_args *a, int idx)
{
	int base = a->total / a->nprocs, extra = a->total % a->nprocs;

	return idx * base + (idx < extra ? idx : extra);
}

/* The target of connection k (of all children): --src, --dc-spread. */
static void
idle_target(struct bench_target *t, int k)
{
	*t = B.t;
	t->dc = (int16_t)(B.dc_echo + k % B.dc_spread);
	if (B.has_src) {
		t->has_src = 1;
		t->src.sin_family = AF_INET;
		t->src.sin_port = 0;
		t->src.sin_addr.s_addr =
		    htonl(ntohl(B.src.s_addr) + (uint32_t)(k / B.per_src));
	}
}

/* --hold: send the round trip's frame on an open connection. */
static int
idle_rt_start(int ep, struct pconn *p)
{
	const uint8_t *b = ping_frame;
	size_t n = PING_LEN;

	p->got_len = 0;
	if (B.middle) {
		/* (after the first answer the stream is at a frame
		 * boundary) */
		memset(&p->fp, 0, sizeof(p->fp));
		mid_req_make(p);
		b = p->req;
		n = p->req_len;
	}
	if (bconn_write(&p->c, b, n) == -1)
		return -1;
	p->c.events = EPOLLIN | (bconn_pending(&p->c) ? EPOLLOUT : 0);
	ep_set(ep, &p->c, EPOLL_CTL_MOD);
	return 0;
}

/*
 * Open this child's share of idle connections, each with a handshake and
 * one echo; report; hold them until the control pipe closes; report how
 * many the proxy closed meanwhile. With --hold, a byte on the go pipe
 * starts one more round trip on every open connection, reported when
 * all have finished (or after 60 s).
 */
static void
idle_child_main(int idx, int wfd, void *arg)
{
	struct idle_args *a = arg;
	struct epoll_event evs[MAX_EVENTS];
	int share = a->total / a->nprocs + (idx < a->total % a->nprocs);
	int first = idle_first(a, idx);
	struct pconn *ps = calloc(share ? share : 1, sizeof(*ps));
	struct bench_target *ts = calloc(share ? share : 1, sizeof(*ts));
	struct child_report *rep = calloc(1, sizeof(*rep));
	uint8_t *rbuf = malloc(RBUF_LEN);
	int ep = epoll_create1(0), next = 0, busy = 0, fin = 0;
	uint64_t until = bench_now_ns() + 120 * 1000000000ull;
	/* Connections are 0 before and after, 1 open and idle, 2 in the
	 * round trip after the hold. */
	static char go_mark;

	child_setup();
	close(a->ctl_w);
	if (B.hold > 0)
		for (int j = 0; j < a->nprocs; j++) {
			close(a->go[j][1]);
			if (j != idx)
				close(a->go[j][0]);
		}
	if (ps == NULL || ts == NULL || rep == NULL || rbuf == NULL || ep == -1)
		_exit(2);
	while (fin < share) {
		while (busy < a->inflight && next < share) {
			struct pconn *p = &ps[next];
			idle_target(&ts[next], first + next);
			if (pconn_start(ep, p, &ts[next++]) == -1) {
				report_error(rep, &p->c, "start");
				fin++;
				continue;
			}
			busy++;
		}
		if (bench_now_ns() > until) {
			note(
			    "idle: %d connections never finished", share - fin);
			rep->errors += share - fin;
			break;
		}
		int k = epoll_wait(ep, evs, MAX_EVENTS, 100);
		for (int i = 0; i < k; i++) {
			struct pconn *p = evs[i].data.ptr;
			if (p->done)
				continue;
			int r = pconn_event(ep, p, evs[i].events, rbuf);
			if (r == 0)
				continue;
			busy--;
			fin++;
			if (r == -1) {
				report_error(rep, &p->c, "handshake");
				bconn_close(&p->c);
				p->active = 0;
				continue;
			}
			p->done = 1;
			rep->ok++;
			/* Keep watching for a close by the proxy only. */
			p->c.events = EPOLLIN | EPOLLRDHUP;
			ep_set(ep, &p->c, EPOLL_CTL_MOD);
		}
	}
	write_full(wfd, rep, sizeof(*rep));

	/* Hold; count connections the proxy drops meanwhile. */
	struct epoll_event ce = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, a->ctl, &ce);
	if (B.hold > 0) {
		struct epoll_event ge = { .events = EPOLLIN,
			.data.ptr = &go_mark };
		epoll_ctl(ep, EPOLL_CTL_ADD, a->go[idx][0], &ge);
	}
	int rt_busy = 0, rt_done = 0;
	uint64_t rt_t0 = 0, errors0 = 0;
	for (;;) {
		int k = epoll_wait(ep, evs, MAX_EVENTS, rt_busy ? 100 : 1000);
		int quit = 0;
		uint64_t now = bench_now_ns();
		for (int i = 0; i < k; i++) {
			struct pconn *p = evs[i].data.ptr;
			if (p == NULL) {
				quit = 1;
				continue;
			}
			if ((void *)p == &go_mark) {
				char b;
				epoll_ctl(
				    ep, EPOLL_CTL_DEL, a->go[idx][0], NULL);
				if (read(a->go[idx][0], &b, 1) != 1 || rt_done)
					continue;
				rt_t0 = now;
				errors0 = rep->errors;
				for (int j = 0; j < share; j++) {
					p = &ps[j];
					if (!p->active || p->done != 1)
						continue;
					if (idle_rt_start(ep, p) == -1) {
						report_error(
						    rep, &p->c, "round trip");
						bconn_close(&p->c);
						p->active = p->done = 0;
						continue;
					}
					p->done = 2;
					rt_busy++;
				}
				continue;
			}
			if (p->done == 2) {
				int r = pconn_event(ep, p, evs[i].events, rbuf);
				if (r == 0)
					continue;
				rt_busy--;
				if (r == -1) {
					report_error(rep, &p->c, "round trip");
					bconn_close(&p->c);
					p->active = p->done = 0;
					continue;
				}
				rep->rt_ok++;
				p->done = 1;
				p->c.events = EPOLLIN | EPOLLRDHUP;
				ep_set(ep, &p->c, EPOLL_CTL_MOD);
				continue;
			}
			if (p->active && p->done == 1) {
				rep->dropped++;
				epoll_ctl(ep, EPOLL_CTL_DEL, p->c.fd, NULL);
				p->done = 0;
			}
		}
		if (rt_busy > 0 && now - rt_t0 > 60 * 1000000000ull) {
			for (int j = 0; j < share; j++) {
				struct pconn *p = &ps[j];
				if (p->done != 2)
					continue;
				p->c.why = "no answer in 60 s";
				p->c.err = 0;
				report_error(rep, &p->c, "round trip");
				bconn_close(&p->c);
				p->active = p->done = 0;
			}
			rt_busy = 0;
		}
		if (rt_t0 && !rt_done && rt_busy == 0) {
			rt_done = 1;
			rep->rt_ns = bench_now_ns() - rt_t0;
			rep->rt_errors = rep->errors - errors0;
			rep->errors = errors0;
			write_full(wfd, rep, sizeof(*rep));
		}
		if (quit)
			break;
	}
	write_full(wfd, rep, sizeof(*rep));
	if (B.hold > 0) {
		/* RST: no TIME_WAIT left behind by this many sockets. */
		for (int j = 0; j < share; j++)
			if (ps[j].active)
				bconn_abort(&ps[j].c);
	}
	/* exit closes every socket at once */
	_exit(0);
}

/* What the idle scenario reads from smaps_rollup. */
struct mem {
	long long pss, rss, anon, shmem;
};

static void
settle_mem(struct mem *m)
{
	/* Let the worker finish what it was doing, then read. */
	usleep(1000000);
	if ((m->pss = workers_mem("Pss")) < 0)
		die("cannot read /proc/<worker>/smaps_rollup");
	m->rss = workers_mem("Rss");
	m->anon = workers_mem("Pss_Anon");
	m->shmem = workers_mem("Pss_Shmem");
}

/* Per-connection growth; -1 when the kernel lacks the field. */
static double
per_conn(long long before, long long after, uint64_t n)
{
	return before < 0 || after < 0 ? -1 : (double)(after - before) / n;
}

/*
 * --hold: the whole daemon (supervisor and all its children) and the
 * machine's socket memory, read at each step.
 */
struct idle_sys {
	uint64_t t;
	int nprocs;
	long long pss, anon, shmem, file; /* summed over the daemon */
	double cpu; /* user + system s of the daemon's processes */
	double wcpu; /* of its workers */
	long long sockets, tcp_inuse, tcp_tw, tcp_mem; /* sockstat */
	long long slab, sunreclaim; /* meminfo, bytes */
};

/* The supervisor and its children (dcpool, workers). */
static int
daemon_procs(pid_t *out, int max)
{
	char path[64], buf[1024], *p;
	struct dirent *de;
	DIR *d;
	int n = 0;

	if (B.daemon <= 0 || (d = opendir("/proc")) == NULL)
		return 0;
	out[n++] = B.daemon;
	while ((de = readdir(d)) != NULL && n < max) {
		int ppid, pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		if ((p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == B.daemon)
			out[n++] = pid;
	}
	closedir(d);
	return n;
}

/* "key: value" or "key value" in a /proc file; -1 if absent. */
static long long
proc_field(const char *file, const char *line, const char *key)
{
	char buf[4096];
	FILE *f = fopen(file, "r");
	size_t klen = strlen(key);
	long long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(buf, sizeof(buf), f) != NULL) {
		if (strncmp(buf, line, strlen(line)) != 0)
			continue;
		char *p = strstr(buf + strlen(line), key);
		while (p != NULL && p[klen] != ' ')
			p = strstr(p + 1, key);
		if (p != NULL)
			v = strtoll(p + klen + 1, NULL, 10);
		break;
	}
	fclose(f);
	return v;
}

static void
idle_sys_read(struct idle_sys *s)
{
	pid_t pids[MAX_WORKERS + 8];

	memset(s, 0, sizeof(*s));
	s->t = bench_now_ns();
	s->nprocs = daemon_procs(pids, (int)nitems(pids));
	for (int i = 0; i < s->nprocs; i++) {
		s->pss += bench_proc_smaps(pids[i], "Pss");
		s->anon += bench_proc_smaps(pids[i], "Pss_Anon");
		s->shmem += bench_proc_smaps(pids[i], "Pss_Shmem");
		s->file += bench_proc_smaps(pids[i], "Pss_File");
		s->cpu += bench_proc_cpu(pids[i]);
	}
	s->wcpu = workers_cpu();
	s->sockets = proc_field("/proc/net/sockstat", "sockets:", "used");
	s->tcp_inuse = proc_field("/proc/net/sockstat", "TCP:", "inuse");
	s->tcp_tw = proc_field("/proc/net/sockstat", "TCP:", "tw");
	s->tcp_mem = proc_field("/proc/net/sockstat", "TCP:", "mem");
	s->slab = proc_field("/proc/meminfo", "Slab:", "") * 1024;
	s->sunreclaim = proc_field("/proc/meminfo", "SUnreclaim:", "") * 1024;
}

static int
scen_idle(void)
{
	int total = B.conns ? B.conns : 5000;
	int nprocs = B.procs ? B.procs : 1 + total / 8000;
	int ctl[2];
	pid_t pids[MAX_PROCS];
	int fds[MAX_PROCS];
	struct child_report *rep = calloc(1, sizeof(*rep));
	uint64_t ok = 0, errors = 0, dropped = 0, rt_ok = 0, rt_errors = 0;
	uint64_t rt_ns = 0;
	struct idle_args *a = calloc(1, sizeof(*a));
	char err[128] = "";

	if (nprocs > MAX_PROCS || rep == NULL || a == NULL)
		die("--procs: at most %d", MAX_PROCS);
	a->total = total;
	a->nprocs = nprocs;
	a->inflight = B.inflight ? B.inflight : 32;
	find_workers(1);
	struct mem m0, m1;
	struct mpstats mp0, mp1;
	struct idle_sys y0 = { 0 }, y1 = { 0 }, y2 = { 0 }, y3 = { 0 },
	                y4 = { 0 };
	mp_reset();
	mp_stats(&mp0);
	settle_mem(&m0);
	int fds0 = workers_fds();
	if (B.hold > 0)
		idle_sys_read(&y0);
	if (pipe(ctl) == -1)
		die("pipe: %s", strerror(errno));
	a->ctl = ctl[0];
	a->ctl_w = ctl[1];
	for (int i = 0; B.hold > 0 && i < nprocs; i++)
		if (pipe(a->go[i]) == -1)
			die("pipe: %s", strerror(errno));
	uint64_t t0 = bench_now_ns();
	double mpc0 = mp_cpu();
	spawn(nprocs, pids, fds, idle_child_main, a);
	close(ctl[0]);
	for (int i = 0; B.hold > 0 && i < nprocs; i++)
		close(a->go[i][0]);
	for (int i = 0; i < nprocs; i++) {
		if (read_full(fds[i], rep, sizeof(*rep)) == -1)
			die("a load process died");
		ok += rep->ok;
		errors += rep->errors;
		if (err[0] == '\0' && rep->first_error[0])
			snprintf(err, sizeof(err), "%s", rep->first_error);
	}
	double open_s = ns2s(bench_now_ns() - t0);
	double mpc = mp_cpu() - mpc0;
	settle_mem(&m1);
	int fds1 = workers_fds();
	mp_stats(&mp1);
	if (B.hold > 0) {
		note("%llu connections open after %.1f s; holding %.0f s",
		    (unsigned long long)ok, open_s, B.hold);
		idle_sys_read(&y1);
		bench_sleep_until(y1.t + (uint64_t)(B.hold * 1e9));
		idle_sys_read(&y2);
		note("one more round trip on every connection");
		for (int i = 0; i < nprocs; i++)
			write_full(a->go[i][1], "g", 1);
		for (int i = 0; i < nprocs; i++) {
			if (read_full(fds[i], rep, sizeof(*rep)) == -1)
				die("a load process died");
			rt_ok += rep->rt_ok;
			rt_errors += rep->rt_errors;
			if (rep->rt_ns > rt_ns)
				rt_ns = rep->rt_ns;
			if (err[0] == '\0' && rep->first_error[0])
				snprintf(
				    err, sizeof(err), "%s", rep->first_error);
		}
		idle_sys_read(&y3);
	}
	close(ctl[1]);
	for (int i = 0; i < nprocs; i++) {
		if (read_full(fds[i], rep, sizeof(*rep)) == 0)
			dropped += rep->dropped;
		close(fds[i]);
		waitpid(pids[i], NULL, 0);
	}
	if (err[0])
		note("first error: %s", err);
	if (ok == 0)
		die("no idle connection could be opened");

	char hold[1400] = "";
	if (B.hold > 0) {
		double hs = ns2s(y2.t - y1.t);
		double wc = y2.wcpu - y1.wcpu;
		double rs = ns2s(y3.t - y2.t);
		/* All closed: what the daemon keeps afterwards. */
		usleep(2000000);
		idle_sys_read(&y4);
		snprintf(hold, sizeof(hold),
		    " daemon_procs=%d "
		    "daemon_pss_before=%lld daemon_pss_after=%lld "
		    "daemon_pss_bytes_per_client=%.0f "
		    "daemon_pss_anon_bytes_per_client=%.0f "
		    "daemon_pss_shared_bytes_per_client=%.0f "
		    "daemon_pss_after_rt=%lld daemon_pss_closed=%lld "
		    "sockets_before=%lld sockets_after=%lld "
		    "tcp_inuse_before=%lld tcp_inuse_after=%lld "
		    "tcp_mem_pages_before=%lld tcp_mem_pages_after=%lld "
		    "tcp_mem_pages_after_rt=%lld "
		    "tcp_mem_bytes_per_client=%.0f "
		    "slab_bytes_per_client=%.0f "
		    "sunreclaim_bytes_per_client=%.0f "
		    "hold_s=%.2f worker_cpu_s_hold=%.3f "
		    "daemon_cpu_s_hold=%.3f worker_cpu_share_hold=%.4f "
		    "worker_ns_per_client_per_s=%.1f "
		    "rt_ok=%llu rt_errors=%llu rt_s=%.2f rt_child_s_max=%.2f "
		    "rt_worker_cpu_s=%.3f rt_worker_us_per_client=%.1f",
		    y1.nprocs, y0.pss, y1.pss, per_conn(y0.pss, y1.pss, ok),
		    per_conn(y0.anon, y1.anon, ok),
		    per_conn(y0.pss - y0.anon, y1.pss - y1.anon, ok), y3.pss,
		    y4.pss, y0.sockets, y1.sockets, y0.tcp_inuse, y1.tcp_inuse,
		    y0.tcp_mem, y1.tcp_mem, y3.tcp_mem,
		    per_conn(y0.tcp_mem * 4096, y1.tcp_mem * 4096, ok),
		    per_conn(y0.slab, y1.slab, ok),
		    per_conn(y0.sunreclaim, y1.sunreclaim, ok), hs, wc,
		    y2.cpu - y1.cpu, wc / hs, wc / hs / ok * 1e9,
		    (unsigned long long)rt_ok, (unsigned long long)rt_errors,
		    rs, ns2s(rt_ns), y3.wcpu - y2.wcpu,
		    rt_ok ? (y3.wcpu - y2.wcpu) / rt_ok * 1e6 : -1.0);
	}
	result(" backend=%s proto=%s conns=%llu errors=%llu dropped=%llu "
	       "procs=%d "
	       "open_s=%.2f pss_before=%lld pss_after=%lld rss_before=%lld "
	       "rss_after=%lld worker_fds_per_conn=%.2f "
	       "rss_bytes_per_idle_conn=%.0f "
	       "pss_anon_bytes_per_idle_conn=%.0f "
	       "pss_shmem_bytes_per_idle_conn=%.0f "
	       "pss_bytes_per_idle_conn=%.0f%s%s",
	    backend_name(), bench_proto_name(B.t.proto), (unsigned long long)ok,
	    (unsigned long long)errors, (unsigned long long)dropped, nprocs,
	    open_s, m0.pss, m1.pss, m0.rss, m1.rss, (double)(fds1 - fds0) / ok,
	    per_conn(m0.rss, m1.rss, ok), per_conn(m0.anon, m1.anon, ok),
	    per_conn(m0.shmem, m1.shmem, ok), per_conn(m0.pss, m1.pss, ok),
	    mid_fields(open_s, mpc, &mp0, &mp1), hold);
	free(rep);
	free(a);
	return 0;
}

/* ------------------------------------------------------------ latency */

struct lconn {
	struct bconn c;
	uint8_t acc[4 + 65536]; /* a partial echo frame */
	size_t acc_len;
	uint64_t echoed; /* frames back on this connection */
};

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct_us(const uint64_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return -1;
	i = rank_of(p, n);
	i = i == 0 ? 0 : i - 1;
	return v[i < n ? i : n - 1] / 1e3;
}

static int
scen_latency(void)
{
	struct epoll_event evs[MAX_EVENTS];
	struct bench_target t = B.t;
	int n = B.conns ? B.conns : 1;
	size_t flen = 4 + B.size;
	struct lconn *ls = calloc(n, sizeof(*ls));
	struct bconn *cs;
	uint8_t *rbuf = malloc(RBUF_LEN), *pkt = malloc(flen);
	size_t nsent_max = (size_t)((B.warmup + B.duration) * B.rate) + 16;
	uint64_t *sent_at = calloc(nsent_max, sizeof(uint64_t));
	uint64_t *samples = calloc(nsent_max, sizeof(uint64_t));
	size_t nsamples = 0, seq = 0, late = 0, received = 0;
	struct snap s0 = { 0 }, s1 = { 0 }; /* set when the run starts, ends */
	int ep, tfd;

	if (B.size < 8 || B.size > 65536 || B.size % 4)
		die("latency: --size 8..65536, a multiple of 4");
	if (B.middle)
		die("latency: direct mode only");
	if (ls == NULL || rbuf == NULL || pkt == NULL || sent_at == NULL ||
	    samples == NULL || (ep = epoll_create1(0)) == -1)
		die("out of memory");
	find_workers(0);
	t.dc = B.dc_echo;
	/* open_all wants an array of bconn: use a temporary one, then move
	 * the open connections into their slots. */
	if ((cs = calloc(n, sizeof(*cs))) == NULL)
		die("out of memory");
	open_all(ep, cs, n, &t, NULL, 0);
	for (int i = 0; i < n; i++) {
		ls[i].c = cs[i];
		ls[i].c.events = EPOLLIN;
		struct epoll_event e = { .events = EPOLLIN,
			.data.ptr = &ls[i] };
		epoll_ctl(ep, EPOLL_CTL_MOD, ls[i].c.fd, &e);
	}
	free(cs);

	uint32_t plen = B.size;
	memcpy(pkt, &plen, 4);
	memcpy(pkt + 4, bench_pattern, B.size);
	if ((tfd = timerfd_create(
	         CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) == -1)
		die("timerfd: %s", strerror(errno));
	uint64_t period = (uint64_t)(1e9 / B.rate);
	uint64_t t_begin = bench_now_ns() + 10000000ull;
	uint64_t t_start = t_begin + (uint64_t)(B.warmup * 1e9);
	uint64_t t_end = t_start + (uint64_t)(B.duration * 1e9);
	struct itimerspec its = { { period / 1000000000ull,
		                      period % 1000000000ull },
		{ t_begin / 1000000000ull, t_begin % 1000000000ull } };
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) == -1)
		die("timerfd_settime: %s", strerror(errno));
	struct epoll_event te = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &te);

	int started = 0, sending = 1;
	uint64_t drain_until = 0;
	for (;;) {
		int k = epoll_wait(ep, evs, MAX_EVENTS, 100);
		uint64_t now = bench_now_ns();
		if (!started && now >= t_start) {
			snap_take(&s0);
			started = 1;
		}
		if (sending && now >= t_end) {
			snap_take(&s1);
			sending = 0;
			drain_until = now + 1000000000ull;
		}
		if (!sending && (received == seq || now >= drain_until))
			break;
		for (int i = 0; i < k; i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t exp;
				if (read(tfd, &exp, sizeof(exp)) !=
				        sizeof(exp) ||
				    !sending)
					continue;
				late += exp - 1;
				while (exp-- > 0 && seq < nsent_max) {
					struct lconn *l = &ls[seq % n];
					/* the sequence number rides in the
					 * payload */
					memcpy(pkt + 4, &seq, sizeof(seq));
					sent_at[seq] = bench_now_ns();
					if (bconn_write(&l->c, pkt, flen) == -1)
						die("send: %s",
						    strerror(l->c.err));
					if (bconn_pending(&l->c))
						die("latency: socket full");
					seq++;
				}
				continue;
			}
			struct lconn *l = evs[i].data.ptr;
			for (;;) {
				ssize_t r = bconn_read(&l->c, rbuf, RBUF_LEN);
				uint64_t tr = bench_now_ns();
				if (r == BCONN_AGAIN)
					break;
				if (r < 0)
					die("read: %s",
					    r == BCONN_EOF ? "the proxy closed"
					                   : l->c.why);
				for (ssize_t off = 0; off < r;) {
					size_t take = flen - l->acc_len;
					if (take > (size_t)(r - off))
						take = r - off;
					memcpy(l->acc + l->acc_len, rbuf + off,
					    take);
					l->acc_len += take;
					off += take;
					if (l->acc_len < flen)
						break;
					l->acc_len = 0;
					/* Echoes come back in order: the k-th
					 * on connection i is packet i + k*n
					 * (round robin). With crypto, the
					 * number inside must agree. */
					uint64_t s = (uint64_t)(l - ls) +
					    l->echoed++ * n,
					         inside;
					memcpy(&inside, l->acc + 4,
					    sizeof(inside));
					if (s >= seq ||
					    (!B.t.nocrypt && inside != s))
						die("latency: wrong echo");
					received++;
					if (sent_at[s] >= t_start &&
					    sent_at[s] < t_end)
						samples[nsamples++] =
						    tr - sent_at[s];
				}
			}
		}
	}
	for (int i = 0; i < n; i++)
		bconn_close(&ls[i].c);
	close(tfd);
	close(ep);

	qsort(samples, nsamples, sizeof(uint64_t), cmp_u64);
	double mean = 0;
	for (size_t i = 0; i < nsamples; i++)
		mean += samples[i];
	mean = nsamples ? mean / nsamples / 1e3 : -1;
	double wall = ns2s(s1.t - s0.t);
	double cpu = s1.worker - s0.worker;
	result(" proto=%s conns=%d rate_per_s=%.0f size=%d seconds=%.2f "
	       "samples=%zu lost=%zu late_ticks=%zu worker_cpu_share=%.3f "
	       "mean_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
	       "p999_us=%.1f max_us=%.1f",
	    bench_proto_name(t.proto), n, B.rate, B.size, wall, nsamples,
	    seq - received, late, B.nworkers ? cpu / wall : -1.0, mean,
	    pct_us(samples, nsamples, 0.5), pct_us(samples, nsamples, 0.9),
	    pct_us(samples, nsamples, 0.99), pct_us(samples, nsamples, 0.999),
	    nsamples ? samples[nsamples - 1] / 1e3 : -1.0);
	free(ls);
	free(rbuf);
	free(pkt);
	free(sent_at);
	free(samples);
	return 0;
}

/* ------------------------------------------------------------ prime */

/*
 * One connection with one round trip to each of the echo, sink and
 * source DCs, then close; no result line. In middle mode the worker creates a
 * DC's link pool (and its min_links links) on the first client of that
 * DC: run-bench primes a fresh daemon so that the scenarios measure
 * clients, not the pools' set-up.
 */
static int
scen_prime(void)
{
	struct epoll_event evs[4];
	struct bench_target t = B.t;
	struct pconn *p = calloc(1, sizeof(*p));
	uint8_t *rbuf = malloc(RBUF_LEN);
	int dcs[3] = { B.dc_echo, B.dc_sink, B.dc_source };
	int ep = epoll_create1(0);

	if (p == NULL || rbuf == NULL || ep == -1)
		die("out of memory");
	for (int i = 0; i < 3; i++) {
		uint64_t until = bench_now_ns() + 30 * 1000000000ull;
		int r = 0;
		t.dc = dcs[i];
		if (pconn_start(ep, p, &t) == -1)
			die("prime: %s: %s", p->c.why, strerror(p->c.err));
		while (r == 0) {
			if (bench_now_ns() > until)
				die("prime: no answer through DC %d in 30 s",
				    dcs[i]);
			int k = epoll_wait(ep, evs, nitems(evs), 100);
			for (int j = 0; j < k && r == 0; j++)
				r = pconn_event(ep, p, evs[j].events, rbuf);
		}
		if (r == -1)
			die("prime: DC %d: %s%s%s", dcs[i], p->c.why,
			    p->c.err ? ": " : "",
			    p->c.err ? strerror(p->c.err) : "");
		bconn_close(&p->c);
	}
	close(ep);
	free(p);
	free(rbuf);
	return 0;
}

/* ------------------------------------------------------------ crypto */

/*
 * The per-byte work of the proxy, as the worker calls it: AES-256-CTR
 * (client streams) and AES-256-CBC (middle-proxy links, spec B.2.5)
 * through common/crypto.c, CRC32 / CRC32C of link frames (B.2.2)
 * through common/crc.c.
 */
static int
scen_aes(void)
{
	uint8_t key[32], iv[16];
	size_t len = 16384;
	uint8_t *buf = malloc(len);
	struct timespec a, b;
	uint64_t bytes = 0;
	crypto_stream *s = NULL;
	const char *impl = "common/crypto.c", *name;
	int crc = 0;
	volatile uint32_t sink = 0;

	random_bytes(key, sizeof(key));
	random_bytes(iv, sizeof(iv));
	if (strcmp(B.algo, "ctr") == 0)
		s = crypto_ctr_new(key, iv), name = "aes-256-ctr";
	else if (strcmp(B.algo, "cbc-enc") == 0)
		s = crypto_cbc_new(key, iv, 1), name = "aes-256-cbc-enc";
	else if (strcmp(B.algo, "cbc-dec") == 0)
		s = crypto_cbc_new(key, iv, 0), name = "aes-256-cbc-dec";
	else if (strcmp(B.algo, "crc32") == 0)
		crc = 1, name = "crc32", impl = "common/crc.c";
	else if (strcmp(B.algo, "crc32c") == 0)
		crc = 2, name = "crc32c", impl = "common/crc.c";
	else
		die("--algo: ctr, cbc-enc, cbc-dec, crc32 or crc32c");
	if ((s == NULL && !crc) || buf == NULL)
		die("cannot set up %s", name);
	memset(buf, 0, len);
	double secs = B.duration > 0 && B.duration < 10 ? B.duration : 1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	do {
		for (int i = 0; i < 64; i++) {
			if (crc == 1)
				sink += rpc_crc32(buf, len);
			else if (crc == 2)
				sink += rpc_crc32c(buf, len);
			else
				crypto_stream_apply(s, buf, buf, len);
		}
		bytes += 64 * len;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	} while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < secs);
	(void)sink; /* a use, for compilers that want one besides the sums */
	double cpu = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	result(" impl=%s cipher=%s block=%zu gb_per_s=%.3f cpu_s_per_gb=%.3f",
	    impl, name, len, bytes / cpu / 1e9, cpu / (bytes / 1e9));
	if (s != NULL)
		crypto_stream_free(s);
	free(buf);
	return 0;
}

/*
 * openssl speed -evp aes-256-ctr -seconds 1 -bytes 16384: its figure is
 * bytes per second of user CPU time (speed's default, -elapsed changes
 * that), so its inverse is CPU seconds per byte. -mr makes it parseable.
 */
static int
scen_openssl(void)
{
	const char *bin = getenv("OPENSSL") ? getenv("OPENSSL") : "openssl";
	char cmd[512], line[512], name[64];
	double bps = -1, v;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
	    "%s speed -mr -evp aes-256-ctr "
	    "-seconds 1 -bytes 16384 2>/dev/null",
	    bin);
	if ((f = popen(cmd, "r")) == NULL)
		die("popen: %s", strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "+F:%*d:%63[^:]:%lf", name, &v) == 2)
			bps = v;
	pclose(f);
	if (bps <= 0)
		die("could not parse the output of: %s", cmd);
	result(" impl=openssl-speed cipher=aes-256-ctr block=16384 "
	       "gb_per_s=%.3f cpu_s_per_gb=%.3f",
	    bps / 1e9, 1e9 / bps);
	return 0;
}

/* ------------------------------------------------------------ table */

/* The value of key in a result line, or NULL. */
static const char *
kv(const char *line, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	const char *p = line;

	while ((p = strstr(p, key)) != NULL) {
		if ((p == line || p[-1] == ' ') && p[kl] == '=') {
			size_t n = strcspn(p + kl + 1, " \n");
			if (n >= cap)
				n = cap - 1;
			memcpy(out, p + kl + 1, n);
			out[n] = '\0';
			return out;
		}
		p += kl;
	}
	return NULL;
}

static double
kvd(const char *line, const char *key)
{
	char b[64];

	return kv(line, key, b, sizeof(b)) ? atof(b) : NAN;
}

/* The middle-mode part of a note: fake_mp's CPU and clients per link. */
static void
table_mid(const char *line, char *note, size_t cap, int cpu)
{
	size_t n = strlen(note);
	double v;

	if (n >= cap)
		return;
	if (cpu && !isnan(v = kvd(line, "mp_cpu_share")) && v >= 0)
		n += snprintf(
		    note + n, cap - n, ", fake_mp %.0f%% cpu", 100 * v);
	if (n < cap && !isnan(v = kvd(line, "clients_per_link")) && v >= 0)
		snprintf(note + n, cap - n, ", %.0f clients / %.0f links",
		    kvd(line, "mp_clients"), kvd(line, "mp_links"));
}

static void
table_row(const char *line)
{
	char sc[32], proto[16], mode[16], label[64], what[64], note[300];
	char be[16];
	const char *metric = "";
	double val = NAN, target = NAN;
	int middle;

	if (!kv(line, "scenario", sc, sizeof(sc)))
		return;
	middle = kv(line, "backend", be, sizeof(be)) != NULL &&
	    strcmp(be, "middle") == 0;
	if (!kv(line, "proto", proto, sizeof(proto)))
		snprintf(proto, sizeof(proto), "-");
	if (!kv(line, "label", label, sizeof(label)))
		label[0] = '\0';
	note[0] = '\0';
	if (strcmp(sc, "bulk") == 0) {
		kv(line, "mode", mode, sizeof(mode));
		snprintf(what, sizeof(what), "%sbulk %s %s",
		    middle ? "middle " : "", mode, proto);
		metric = "cpu_s_per_gb";
		val = kvd(line, "cpu_s_per_gb");
		target = middle ? 2.2 : strcmp(proto, "tls") == 0 ? 1.2 : 1.0;
		double dl = kvd(line, "dc_delivered");
		char dls[32] = "";
		if (!isnan(dl) && dl >= 0)
			snprintf(dls, sizeof(dls), ", %s got %.2f%%",
			    strcmp(mode, "upload") != 0 ? "client"
			        : middle                ? "ME"
			                                : "DC",
			    100 * dl);
		snprintf(note, sizeof(note),
		    "windows %.2f..%.2f, "
		    "up %.0f / down %.0f MB/s, worker %.0f%% cpu, "
		    "load side %.0f%%, per GB %s%s",
		    kvd(line, "win_cpu_s_per_gb_min"),
		    kvd(line, "win_cpu_s_per_gb_max"), kvd(line, "up_mb_s"),
		    kvd(line, "down_mb_s"), 100 * kvd(line, "worker_cpu_share"),
		    100 * kvd(line, "load_cpu_share"),
		    kv(line, "gb_divisor", mode, sizeof(mode)) ? mode : "?",
		    dls);
		table_mid(line, note, sizeof(note), 1);
	} else if (strcmp(sc, "handshake") == 0) {
		char users[16], match[8];
		snprintf(what, sizeof(what), "%shandshake %s",
		    middle ? "middle " : "", proto);
		if (kv(line, "match", match, sizeof(match)) &&
		    strcmp(match, "one") != 0 &&
		    kv(line, "users", users, sizeof(users)))
			snprintf(what, sizeof(what), "%shandshake %s %s %s",
			    middle ? "middle " : "", proto, users, match);
		metric = "cpu_us_per_handshake";
		val = kvd(line, "cpu_us_per_handshake");
		target = 70;
		snprintf(note, sizeof(note),
		    "%.0f/s, worker %.0f%% cpu, "
		    "load side %.0f%%, %.0f errors",
		    kvd(line, "rate_per_s"),
		    100 * kvd(line, "worker_cpu_share"),
		    100 * kvd(line, "load_cpu_share"), kvd(line, "errors"));
		table_mid(line, note, sizeof(note), 1);
	} else if (strcmp(sc, "idle") == 0) {
		snprintf(what, sizeof(what), "%sidle %s",
		    middle ? "middle " : "", proto);
		metric = "pss_bytes_per_idle_conn";
		val = kvd(line, "pss_bytes_per_idle_conn");
		target = 4096;
		snprintf(note, sizeof(note),
		    "%.0f conns; per conn: "
		    "anon (heap) %.0f B, shmem (replay cache) %.0f B, "
		    "rss %.0f B, %.1f fds; %.0f dropped",
		    kvd(line, "conns"),
		    kvd(line, "pss_anon_bytes_per_idle_conn"),
		    kvd(line, "pss_shmem_bytes_per_idle_conn"),
		    kvd(line, "rss_bytes_per_idle_conn"),
		    kvd(line, "worker_fds_per_conn"), kvd(line, "dropped"));
		table_mid(line, note, sizeof(note), 0);
	} else if (strcmp(sc, "latency") == 0) {
		snprintf(what, sizeof(what), "latency %s", proto);
		metric = "p99_us";
		val = kvd(line, "p99_us");
		target = 150;
		snprintf(note, sizeof(note),
		    "p50 %.0f p90 %.0f p99.9 %.0f "
		    "max %.0f us, %.0f/s x %.0f B, %.0f samples",
		    kvd(line, "p50_us"), kvd(line, "p90_us"),
		    kvd(line, "p999_us"), kvd(line, "max_us"),
		    kvd(line, "rate_per_s"), kvd(line, "size"),
		    kvd(line, "samples"));
	} else if (strcmp(sc, "aes") == 0 || strcmp(sc, "openssl") == 0) {
		char ci[32], im[32];
		if (!kv(line, "cipher", ci, sizeof(ci)))
			snprintf(ci, sizeof(ci), "?");
		if (!kv(line, "impl", im, sizeof(im)))
			snprintf(im, sizeof(im), "?");
		snprintf(what, sizeof(what), "%s %s", ci,
		    strcmp(sc, "openssl") == 0 ? "openssl speed"
		        : strchr(im, '/')      ? strchr(im, '/') + 1
		                               : im);
		metric = "cpu_s_per_gb";
		val = kvd(line, "cpu_s_per_gb");
		snprintf(note, sizeof(note), "%.2f GB/s per core",
		    kvd(line, "gb_per_s"));
	} else
		return;
	char name[sizeof(what) + sizeof(label) + 4];
	if (label[0])
		snprintf(name, sizeof(name), "%s [%s]", what, label);
	else
		snprintf(name, sizeof(name), "%s", what);
	char tgt[16] = "", verdict[8] = "";
	if (!isnan(target)) {
		snprintf(tgt, sizeof(tgt), "<= %g", target);
		snprintf(verdict, sizeof(verdict), "%s",
		    isnan(val) || val < 0 ? "?"
		        : val <= target   ? "ok"
		                          : "OVER");
	}
	printf("%-28s %-24s %10.3f %-8s %-5s %s\n", name, metric, val, tgt,
	    verdict, note);
}

static void
table_print(char **lines, int n)
{
	if (n == 0)
		return;
	printf("\n%-28s %-24s %10s %-8s %-5s %s\n", "benchmark", "metric",
	    "value", "target", "", "notes");
	for (int i = 0; i < n; i++)
		table_row(lines[i]);
}

static int
cmd_table(int argc, char **argv)
{
	char line[2048];
	char *lines[512];
	int n = 0;

	for (int i = 0; i <= argc; i++) {
		FILE *f;
		if (i == argc && argc > 0)
			break;
		f = argc == 0 ? stdin : fopen(argv[i], "r");
		if (f == NULL)
			die("%s: %s", argv[i], strerror(errno));
		while (fgets(line, sizeof(line), f) != NULL &&
		    n < (int)nitems(lines))
			if (strncmp(line, "scenario=", 9) == 0)
				lines[n++] = strdup(line);
		if (f != stdin)
			fclose(f);
		if (argc == 0)
			break;
	}
	table_print(lines, n);
	for (int i = 0; i < n; i++)
		free(lines[i]);
	return 0;
}

/* ------------------------------------------------------------ main */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mtbench [options] "
	    "bulk|handshake|idle|latency|aes|openssl|prime\n"
	    "       mtbench table [FILE...]\n"

	    "  -p, --proxy HOST:PORT   the proxy (default 127.0.0.1:443)\n"
	    "  -s, --secret HEX        the user's 32-hex-digit secret\n"
	    "  -D, --domain NAME       fake-TLS domain (default "
	    "www.example.com)\n"
	    "  -P, --proto P           classic | secure | tls (default "
	    "classic)\n"
	    "  -m, --mode M            bulk: echo | upload | download (default "
	    "echo)\n"
	    "  -c, --conns N           connections (bulk 8, idle 5000, latency "
	    "1)\n"
	    "  -t, --duration S        measured seconds (default 10)\n"
	    "  -w, --warmup S          unmeasured seconds first (default 1)\n"
	    "  -b, --bytes N           bulk: stop after N bytes (both ways "
	    "counted)\n"
	    "      --procs N           load processes (handshake 4, idle "
	    "1+N/8000)\n"
	    "      --inflight N        concurrent handshakes per process\n"
	    "      --rate R            latency: packets per second (default "
	    "1000)\n"
	    "      --size B            latency: packet payload bytes (default "
	    "64)\n"
	    "      --chunk B           bulk: bytes per write (default 65536)\n"
	    "      --tls-record B      largest record payload we send (2878)\n"
	    "  -n, --nocrypt           no AES on our side (needs fastdc -n)\n"
	    "      --no-verify         do not check the bytes that come back\n"
	    "      --daemon PID        the supervisor; its workers are "
	    "measured\n"
	    "      --worker PID        a worker to measure (repeatable)\n"
	    "      --fastdc PID        fastdc, for the load side's CPU share\n"
	    "      --dc-echo N, --dc-sink N, --dc-source N\n"
	    "                          DC indexes routed to fastdc's modes (2, "
	    "3, 4)\n"
	    "                          (middle: to fake_mp echo, sink and "
	    "source)\n"
	    "      --middle            the daemon runs backend middle: send "
	    "framed\n"
	    "                          MTProto packets (bulk, handshake, "
	    "idle)\n"
	    "      --packet B          middle bulk: packet bytes (default "
	    "16384)\n"
	    "      --bytes-per-conn N  middle bulk: each connection sends "
	    "(echo,\n"
	    "                          upload) or gets (download) N packet "
	    "bytes;\n"
	    "                          the window is the whole transfer "
	    "(no -t, -w)\n"
	    "      --inflight-bytes N  middle echo: at most N packet bytes "
	    "sent\n"
	    "                          and not yet echoed per connection\n"
	    "      --pad-max N         middle bulk, secure and tls: 0..N "
	    "padding\n"
	    "                          bytes per packet (default 15)\n"
	    "      --mp PID            fake_mp, for its CPU share\n"
	    "      --mp-ctl PORT       fake_mp's control port (reset, stats)\n"
	    "      --algo A            aes: ctr | cbc-enc | cbc-dec | crc32 | "
	    "crc32c\n"
	    "      --label TEXT        added to the result line\n"
	    "      --users N           handshake: the daemon has N users\n"
	    "                          (user i: the secret's first 12 bytes,\n"
	    "                          then BE32(i)); each load process\n"
	    "                          one user from its own address\n"
	    "      --cold              with --users: each connection a\n"
	    "                          random user from a new address\n"
	    "      --src ADDR          idle: bind connection k to ADDR + k /\n"
	    "                          per-src (IPv4; many clients on "
	    "loopback)\n"
	    "      --per-src N         idle: connections per source address "
	    "(20000)\n"
	    "      --dc-spread N       idle: connection k asks for DC "
	    "dc-echo + k %% N\n"
	    "      --hold S            idle: hold S seconds (daemon CPU, "
	    "memory,\n"
	    "                          sockstat), then one more round trip "
	    "on each\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	enum {
		O_PROCS = 256,
		O_INFLIGHT,
		O_RATE,
		O_SIZE,
		O_CHUNK,
		O_TLSREC,
		O_NOVERIFY,
		O_DAEMON,
		O_WORKER,
		O_FASTDC,
		O_DCE,
		O_DCK,
		O_DCS,
		O_LABEL,
		O_MIDDLE,
		O_PACKET,
		O_MP,
		O_MPCTL,
		O_ALGO,
		O_USERS,
		O_COLD,
		O_BPC,
		O_INFLIGHT_BYTES,
		O_PAD_MAX,
		O_SRC,
		O_PERSRC,
		O_DCSPREAD,
		O_HOLD
	};
	static const struct option opts[] = { { "proxy", required_argument,
		                                  NULL, 'p' },
		{ "secret", required_argument, NULL, 's' },
		{ "domain", required_argument, NULL, 'D' },
		{ "proto", required_argument, NULL, 'P' },
		{ "mode", required_argument, NULL, 'm' },
		{ "conns", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 't' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "nocrypt", no_argument, NULL, 'n' },
		{ "procs", required_argument, NULL, O_PROCS },
		{ "inflight", required_argument, NULL, O_INFLIGHT },
		{ "rate", required_argument, NULL, O_RATE },
		{ "size", required_argument, NULL, O_SIZE },
		{ "chunk", required_argument, NULL, O_CHUNK },
		{ "tls-record", required_argument, NULL, O_TLSREC },
		{ "no-verify", no_argument, NULL, O_NOVERIFY },
		{ "daemon", required_argument, NULL, O_DAEMON },
		{ "worker", required_argument, NULL, O_WORKER },
		{ "fastdc", required_argument, NULL, O_FASTDC },
		{ "dc-echo", required_argument, NULL, O_DCE },
		{ "dc-sink", required_argument, NULL, O_DCK },
		{ "dc-source", required_argument, NULL, O_DCS },
		{ "label", required_argument, NULL, O_LABEL },
		{ "middle", no_argument, NULL, O_MIDDLE },
		{ "packet", required_argument, NULL, O_PACKET },
		{ "mp", required_argument, NULL, O_MP },
		{ "mp-ctl", required_argument, NULL, O_MPCTL },
		{ "algo", required_argument, NULL, O_ALGO },
		{ "users", required_argument, NULL, O_USERS },
		{ "cold", no_argument, NULL, O_COLD },
		{ "bytes-per-conn", required_argument, NULL, O_BPC },
		{ "inflight-bytes", required_argument, NULL, O_INFLIGHT_BYTES },
		{ "pad-max", required_argument, NULL, O_PAD_MAX },
		{ "src", required_argument, NULL, O_SRC },
		{ "per-src", required_argument, NULL, O_PERSRC },
		{ "dc-spread", required_argument, NULL, O_DCSPREAD },
		{ "hold", required_argument, NULL, O_HOLD },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const char *proxy = "127.0.0.1:443", *secret = NULL;
	int ch, p;

	if (argc >= 2 && strcmp(argv[1], "table") == 0)
		return cmd_table(argc - 2, argv + 2);
	snprintf(B.t.domain, sizeof(B.t.domain), "www.example.com");
	B.t.tls_record = 2878;
	while ((ch = getopt_long(
	            argc, argv, "p:s:D:P:m:c:t:w:b:nh", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			proxy = optarg;
			break;
		case 's':
			secret = optarg;
			break;
		case 'D':
			snprintf(B.t.domain, sizeof(B.t.domain), "%s", optarg);
			break;
		case 'P':
			if ((p = bench_proto_parse(optarg)) == -1)
				usage();
			B.t.proto = p;
			break;
		case 'm':
			B.mode = optarg;
			break;
		case 'c':
			B.conns = atoi(optarg);
			break;
		case 't':
			B.duration = atof(optarg);
			break;
		case 'w':
			B.warmup = atof(optarg);
			break;
		case 'b':
			B.bytes = atof(optarg);
			break;
		case 'n':
			B.t.nocrypt = 1;
			break;
		case O_PROCS:
			B.procs = atoi(optarg);
			break;
		case O_INFLIGHT:
			B.inflight = atoi(optarg);
			break;
		case O_RATE:
			B.rate = atof(optarg);
			break;
		case O_SIZE:
			B.size = atoi(optarg);
			break;
		case O_CHUNK:
			B.chunk = strtoul(optarg, NULL, 10);
			break;
		case O_TLSREC:
			B.t.tls_record = strtoul(optarg, NULL, 10);
			break;
		case O_NOVERIFY:
			B.verify = 0;
			break;
		case O_DAEMON:
			B.daemon = atoi(optarg);
			break;
		case O_WORKER:
			if (B.nworkers < MAX_WORKERS)
				B.workers[B.nworkers++] = atoi(optarg);
			break;
		case O_FASTDC:
			B.fastdc = atoi(optarg);
			break;
		case O_DCE:
			B.dc_echo = atoi(optarg);
			break;
		case O_DCK:
			B.dc_sink = atoi(optarg);
			break;
		case O_DCS:
			B.dc_source = atoi(optarg);
			break;
		case O_USERS:
			B.users = atol(optarg);
			break;
		case O_COLD:
			B.cold = 1;
			break;
		case O_LABEL:
			B.label = optarg;
			break;
		case O_MIDDLE:
			B.middle = 1;
			break;
		case O_PACKET:
			B.packet = strtoul(optarg, NULL, 10);
			break;
		case O_MP:
			B.mp = atoi(optarg);
			break;
		case O_MPCTL:
			B.mp_ctl = atoi(optarg);
			break;
		case O_ALGO:
			B.algo = optarg;
			break;
		case O_BPC:
			B.bytes_per_conn = strtoull(optarg, NULL, 10);
			break;
		case O_INFLIGHT_BYTES:
			B.inflight_bytes = strtoull(optarg, NULL, 10);
			break;
		case O_PAD_MAX:
			B.pad_max = atoi(optarg);
			break;
		case O_SRC:
			if (inet_pton(AF_INET, optarg, &B.src) != 1)
				die("--src: an IPv4 address");
			B.has_src = 1;
			break;
		case O_PERSRC:
			B.per_src = atoi(optarg);
			break;
		case O_DCSPREAD:
			B.dc_spread = atoi(optarg);
			break;
		case O_HOLD:
			B.hold = atof(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	/* A local the analyzer can follow through the calls below. */
	const char *scenario = argv[optind];
	B.scenario = scenario;
	if (B.t.tls_record < 1 || B.t.tls_record > TLS_RECORD_MAX_PAYLOAD ||
	    B.chunk < 1 || B.chunk > BENCH_PATTERN_LEN || B.duration <= 0 ||
	    B.rate <= 0)
		die("bad --tls-record, --chunk, --duration or --rate");
	/* Packets of the pattern start 8-aligned in it, so their first 8
	 * bytes (auth_key_id) are one xorshift state: never zero. */
	if (B.packet < MID_ENC_MIN || B.packet > BENCH_PATTERN_LEN ||
	    B.packet % 8 != 0)
		die("--packet: %d..%d, a multiple of 8", MID_ENC_MIN,
		    BENCH_PATTERN_LEN);
	/* The last packet of --bytes-per-conn must pass A.3.4 as well. */
	if (B.bytes_per_conn % 8 != 0 ||
	    (B.bytes_per_conn % B.packet != 0 &&
	        B.bytes_per_conn % B.packet < MID_ENC_MIN))
		die("--bytes-per-conn: a multiple of 8 whose remainder by "
		    "--packet is 0 or at least %d",
		    MID_ENC_MIN);
	if ((B.bytes_per_conn > 0 || B.inflight_bytes > 0) && !B.middle)
		die("--bytes-per-conn, --inflight-bytes: middle mode only");
	if (B.inflight_bytes > 0 && B.inflight_bytes < B.packet)
		die("--inflight-bytes: at least --packet");
	if (B.pad_max < 0 || B.pad_max > MID_BULK_PAD_MAX)
		die("--pad-max: 0..%d", MID_BULK_PAD_MAX);
	if (B.per_src < 1 || B.dc_spread < 1 || B.hold < 0)
		die("bad --per-src, --dc-spread or --hold");
	if (B.middle && B.t.nocrypt)
		die("--nocrypt: the proxy parses frames in middle mode");
	signal(SIGPIPE, SIG_IGN);
	bench_pattern_init();
	ping_init();

	int r;
	if (strcmp(scenario, "aes") == 0)
		r = scen_aes();
	else if (strcmp(scenario, "openssl") == 0)
		r = scen_openssl();
	else {
		if (bench_target_addr(&B.t, proxy) == -1)
			die("bad --proxy %s", proxy);
		if (secret == NULL ||
		    hex_decode(secret, B.t.secret, O2_SECRET_LEN) == -1)
			die("--secret: 32 hex digits needed");
		if (strcmp(scenario, "bulk") == 0)
			r = scen_bulk();
		else if (strcmp(scenario, "handshake") == 0)
			r = scen_handshake();
		else if (strcmp(scenario, "idle") == 0)
			r = scen_idle();
		else if (strcmp(scenario, "latency") == 0)
			r = scen_latency();
		else if (strcmp(scenario, "prime") == 0)
			return scen_prime();
		else
			usage();
	}
	table_print(results, nresults);
	return r;
}
