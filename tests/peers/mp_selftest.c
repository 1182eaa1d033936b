/*
 * mp_selftest: proves fake_mp works without the daemon, by playing the
 * proxy's end of RPC links (spec B.2) against a running fake_mp.
 *
 *	mp_selftest --port P --control-port C --secret-file F [--host H]
 *	    [--expect-crc32c] [--sink] [--no-pong]
 *	mp_selftest --port P --control-port C --secret-file F [--host H]
 *	    --bulk MIB [--packet BYTES] [--conns N] [--sink] [--no-verify]
 *
 * The first form walks through every feature: nonce (padded and not),
 * key derivation from the proxy's side, handshake (with and without a
 * CRC32C request), PROXY_REQ with and without an ad tag, req_pq_multi,
 * echo of small and 1 MB packets, PING/PONG both ways, CLOSE_CONN, and
 * the control commands (stats, ack, close_ext, ping, hold, rotate), then
 * malformed input, which must make fake_mp close the link. fake_mp should
 * be fresh (the checks read its counters). Flags say how it was started:
 * --expect-crc32c for --crc32c, --sink for --mode sink, --no-pong.
 *
 * The second form pushes MIB mebibytes of packets through one link as
 * fast as both ends go, checks every echoed byte (unless --no-verify)
 * and prints the throughput (--expect-crc32c: asking for CRC32C). With
 * --sink it waits until fake_mp's stats count every byte instead.
 *
 * Exit status 0 when every check passed.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "framing.h"
#include "peer.h"
#include "rpc.h"
#include "util.h"

#define READ_CHUNK   (256 * 1024)
#define WAIT_MS      3000 /* for an answer that must come */
#define QUIET_MS     300 /* for one that must not */
#define BULK_WINDOW  (8u << 20) /* unanswered bytes in flight */
#define BULK_OUT_MAX (1u << 20)
#define BULK_SEED    0x6d705f62756c6bull

struct tlink {
	int fd;
	struct rpc_link rl;
	int have_rl;
	struct peer_buf in;
	size_t dec; /* plaintext at the front */
	size_t pending; /* of the last frame returned */
	struct sockaddr_storage me, px;
	uint8_t pid[RPC_PID_LEN];
	int crc32c;
};

static struct {
	const char *host;
	uint16_t port;
	uint16_t ctl_port;
	uint8_t secret[RPC_SECRET_MAX];
	size_t secret_len;
	int expect_crc32c;
	int sink;
	int no_pong;
	int ctl_fd;
	unsigned checks;
} G;

static void
die(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mp_selftest: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			die(__VA_ARGS__); \
		G.checks++; \
	} while (0)

/* ------------------------------------------------------------ sockets */

static int
tcp_connect(const char *host, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (peer_addr(host, port, &ss, &len) == -1)
		die("bad address %s", host);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&ss, len) == -1)
		die("connect %s:%u: %s", host, port, strerror(errno));
	peer_tcp_nodelay(fd);
	fd_set_nonblock(fd);
	return fd;
}

/* 1 when fd is ready for events, 0 after timeout_ms. */
static int
wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&pfd, 1, timeout_ms);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		die("poll: %s", strerror(errno));
	return n;
}

static void
write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (!wait_fd(fd, POLLOUT, WAIT_MS))
				die("write stalled");
		} else {
			die("write: %s", strerror(errno));
		}
	}
}

/*
 * Reads what is there (waiting up to timeout_ms for something).
 * Returns the byte count, 0 on timeout, -1 on EOF or a reset.
 */
static ssize_t
fill(int fd, struct peer_buf *b, int timeout_ms)
{
	for (;;) {
		ssize_t n =
		    read(fd, peer_buf_reserve(b, READ_CHUNK), READ_CHUNK);
		if (n > 0) {
			peer_buf_commit(b, (size_t)n);
			return n;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return -1;
		if (errno != EAGAIN)
			die("read: %s", strerror(errno));
		if (!wait_fd(fd, POLLIN, timeout_ms))
			return 0;
	}
}

/* ------------------------------------------------------------ control */

/* One command, one line of answer (malloc'ed, without the newline). */
static char *
ctl(const char *fmt, ...)
{
	static struct peer_buf in;
	char cmd[256], *nl, *line;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd) - 1)
		die("control command too long");
	cmd[n++] = '\n';
	if (G.ctl_fd == 0)
		G.ctl_fd = tcp_connect("127.0.0.1", G.ctl_port);
	write_all(G.ctl_fd, (uint8_t *)cmd, (size_t)n);
	for (;;) {
		nl = peer_buf_size(&in) == 0
		    ? NULL
		    : memchr(peer_buf_data(&in), '\n', peer_buf_size(&in));
		if (nl != NULL)
			break;
		if (fill(G.ctl_fd, &in, WAIT_MS) <= 0)
			die("no answer to control command %.*s", n - 1, cmd);
	}
	*nl = '\0';
	line = strdup((char *)peer_buf_data(&in));
	peer_buf_consume(&in, (size_t)(nl - (char *)peer_buf_data(&in)) + 1);
	if (line == NULL)
		abort();
	return line;
}

static void
ctl_ok(const char *cmd)
{
	char *a = ctl("%s", cmd);

	CHECK(strcmp(a, "{\"ok\": true}") == 0, "%s: %s", cmd, a);
	free(a);
}

/* A top-level number of the stats answer. */
static uint64_t
stats_num(const char *stats, const char *key)
{
	char pat[64];
	const char *p = stats;

	/* Conn objects repeat some names; the totals follow "nconns". */
	if (strcmp(key, "links") != 0 && strcmp(key, "links_total") != 0 &&
	    (p = strstr(stats, "\"nconns\": ")) == NULL)
		die("stats without nconns: %s", stats);
	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	if ((p = strstr(p, pat)) == NULL)
		die("stats without %s: %s", key, stats);
	return strtoull(p + strlen(pat), NULL, 10);
}

static uint64_t
stats_get(const char *key)
{
	char *s = ctl("stats");
	uint64_t v = stats_num(s, key);

	free(s);
	return v;
}

/* The object of one conn in a stats answer (malloc'ed). */
static char *
stats_conn(const char *stats, uint64_t id)
{
	char pat[32];
	const char *p, *e;
	char *obj;

	snprintf(pat, sizeof(pat), "\"%016" PRIx64 "\": {", id);
	if ((p = strstr(stats, pat)) == NULL)
		die("conn %016" PRIx64 " missing from stats: %s", id, stats);
	if ((e = strchr(p, '}')) == NULL)
		die("stats truncated");
	if ((obj = strndup(p, (size_t)(e - p + 1))) == NULL)
		abort();
	return obj;
}

static void
check_conn(uint64_t id, const char *want)
{
	char *s = ctl("stats"), *obj = stats_conn(s, id);

	CHECK(strstr(obj, want) != NULL, "conn %016" PRIx64 ": no %s in %s", id,
	    want, obj);
	free(obj);
	free(s);
}

static unsigned
conn_link(uint64_t id)
{
	char *s = ctl("stats"), *obj = stats_conn(s, id), *p;
	unsigned v;

	if ((p = strstr(obj, "\"link\": ")) == NULL)
		die("no link in %s", obj);
	v = (unsigned)strtoul(p + 8, NULL, 10);
	free(obj);
	free(s);
	return v;
}

/* ------------------------------------------------------------ links */

struct open_opts {
	int pad_nonce; /* fillers after the nonce (Py, Erl) */
	uint32_t hs_flags;
	int bad_selector;
};

/* Plaintext nonce answer; -1 if the link closed instead. */
static int
recv_nonce(struct tlink *t, struct rpc_nonce *n)
{
	struct rpc_decoder d;
	struct rpc_frame f;

	rpc_decoder_init(&d, RPC_SEQ_NONCE, RPC_FRAME_MAX_DEFAULT);
	for (;;) {
		enum rpc_decode_status st = rpc_frame_decode(
		    &d, peer_buf_data(&t->in), peer_buf_size(&t->in), &f);
		if (st == RPC_DECODE_ERROR)
			die("nonce answer: %s", f.error);
		if (st == RPC_DECODE_OK)
			break;
		ssize_t r = fill(t->fd, &t->in, WAIT_MS);
		if (r == 0)
			die("no nonce answer");
		if (r == -1)
			return -1;
	}
	if (rpc_nonce_parse(f.payload, f.len, n) == -1)
		die("malformed nonce answer");
	peer_buf_consume(&t->in, f.consumed);
	return 0;
}

/*
 * Returns the next frame (valid until the next call): 1, 0 on timeout,
 * -1 on EOF. A framing error is a failure.
 */
static int
tl_recv(struct tlink *t, int timeout_ms, struct rpc_frame *f)
{
	t->dec -= t->pending;
	peer_buf_consume(&t->in, t->pending);
	t->pending = 0;
	for (;;) {
		size_t n =
		    (peer_buf_size(&t->in) - t->dec) & ~(size_t)(RPC_BLOCK - 1);
		if (n > 0 &&
		    rpc_link_decrypt(
		        &t->rl, peer_buf_data(&t->in) + t->dec, n) == -1)
			die("decrypt failed");
		t->dec += n;
		enum rpc_decode_status st =
		    rpc_link_decode(&t->rl, peer_buf_data(&t->in), t->dec, f);
		if (st == RPC_DECODE_ERROR)
			die("from fake_mp: %s", f->error);
		if (st == RPC_DECODE_OK) {
			t->pending = f->consumed;
			return 1;
		}
		t->dec -= f->consumed;
		peer_buf_consume(&t->in, f->consumed);
		ssize_t r = fill(t->fd, &t->in, timeout_ms);
		if (r <= 0)
			return (int)r;
	}
}

static void
tl_expect(struct tlink *t, uint32_t type, struct rpc_frame *f, const char *what)
{
	int r = tl_recv(t, WAIT_MS, f);

	CHECK(r == 1, "%s: %s", what, r == 0 ? "timeout" : "link closed");
	CHECK(rpc_msg_type(f->payload, f->len) == type, "%s: got type %08x",
	    what, rpc_msg_type(f->payload, f->len));
}

static void
tl_expect_eof(struct tlink *t, const char *what)
{
	struct rpc_frame f;
	int r = tl_recv(t, WAIT_MS, &f);

	CHECK(r == -1, "%s: link not closed (%s)", what,
	    r == 0 ? "timeout" : "a frame came");
}

static void
tl_expect_quiet(struct tlink *t, const char *what)
{
	struct rpc_frame f;
	int r = tl_recv(t, QUIET_MS, &f);

	CHECK(r == 0, "%s: %s", what,
	    r == 1 ? "unexpected frame" : "link closed");
}

/* Seals payload into a frame and sends it. */
static void
tl_send(struct tlink *t, const uint8_t *payload, size_t len)
{
	size_t cap = RPC_FRAME_SPACE(len), n;
	uint8_t *frame = malloc(cap);

	if (frame == NULL)
		abort();
	memcpy(frame + RPC_FRAME_HDR, payload, len);
	if ((n = rpc_link_seal(&t->rl, frame, cap, len)) == 0)
		die("seal failed");
	write_all(t->fd, frame, n);
	free(frame);
}

static void
tl_close(struct tlink *t)
{
	close(t->fd);
	peer_buf_free(&t->in);
	if (t->have_rl)
		rpc_link_free(&t->rl);
	memset(t, 0, sizeof(*t));
}

/*
 * Connects and runs the nonce and handshake exchange as the proxy does.
 * Returns 0, or -1 when fake_mp closed the link (bad_selector).
 */
static int
tl_open(struct tlink *t, const struct open_opts *o)
{
	uint8_t nonce_clt[16], buf[64], secret[RPC_SECRET_MAX];
	uint8_t peer_pid[RPC_PID_LEN];
	uint32_t ts = (uint32_t)now_unix();
	struct rpc_nonce n;
	struct rpc_kdf_params kp;
	struct rpc_link_keys keys;
	struct rpc_handshake h;
	struct rpc_frame f;
	const char *err;
	socklen_t sl;
	size_t len;
	int crc32c;

	memset(t, 0, sizeof(*t));
	t->fd = tcp_connect(G.host, G.port);
	sl = sizeof(t->px);
	if (getsockname(t->fd, (struct sockaddr *)&t->px, &sl) == -1)
		die("getsockname: %s", strerror(errno));
	sl = sizeof(t->me);
	if (getpeername(t->fd, (struct sockaddr *)&t->me, &sl) == -1)
		die("getpeername: %s", strerror(errno));

	memcpy(secret, G.secret, G.secret_len);
	if (o->bad_selector)
		secret[0] ^= 0xff;
	random_bytes(nonce_clt, sizeof(nonce_clt));
	len = rpc_nonce_build(buf + RPC_FRAME_HDR, sizeof(buf) - RPC_FRAME_HDR,
	    secret, G.secret_len, ts, nonce_clt);
	len = rpc_frame_finish(buf, len, RPC_SEQ_NONCE, 0);
	if (o->pad_nonce)
		len += (size_t)rpc_frame_pad(buf + len, sizeof(buf) - len, len);
	CHECK(len == (o->pad_nonce ? 48u : 44u), "nonce frame length %zu", len);
	write_all(t->fd, buf, len);
	if (recv_nonce(t, &n) == -1)
		return -1;
	CHECK(!o->bad_selector, "nonce with a wrong key selector accepted");
	if (rpc_nonce_check(
	        &n, G.secret, G.secret_len, ts, RPC_NONCE_MAX_SKEW, &err) == -1)
		die("nonce answer: %s", err);

	memset(&kp, 0, sizeof(kp));
	kp.nonce_srv = n.nonce;
	kp.nonce_clt = nonce_clt;
	kp.clt_ts = ts;
	kp.me_addr = (struct sockaddr *)&t->me;
	kp.proxy_addr = (struct sockaddr *)&t->px;
	kp.secret = G.secret;
	kp.secret_len = G.secret_len;
	if (rpc_link_keys_derive(&keys, &kp, 0) == -1 ||
	    rpc_link_restore(&t->rl, &keys, RPC_FRAME_MAX_DEFAULT) == -1)
		die("key derivation failed");
	t->have_rl = 1;

	rpc_pid_make(t->pid, (struct sockaddr *)&t->px, (uint16_t)getpid(), ts);
	rpc_pid_make(peer_pid, (struct sockaddr *)&t->me, 0, 0);
	len = rpc_handshake_build(
	    buf, sizeof(buf), o->hs_flags, t->pid, peer_pid);
	tl_send(t, buf, len);
	tl_expect(t, RPC_HANDSHAKE, &f, "handshake answer");
	CHECK(f.seq == RPC_SEQ_HANDSHAKE, "handshake answer seq %d", f.seq);
	CHECK(rpc_handshake_parse(f.payload, f.len, &h) == 0,
	    "malformed handshake answer");
	if (rpc_handshake_check(&h, o->hs_flags, t->pid, &crc32c, &err) == -1)
		die("handshake answer: %s", err);
	t->crc32c = crc32c;
	rpc_link_set_crc32c(&t->rl, crc32c);
	return 0;
}

/* ------------------------------------------------------------ messages */

static void
addr(const char *text, struct sockaddr_storage *ss)
{
	socklen_t len;

	if (addr_parse(text, 0, ss, &len) == -1)
		die("bad address %s", text);
}

static void
send_req(struct tlink *t, uint64_t conn_id, const char *client,
    const uint8_t *tag, const uint8_t *pkt, size_t len, int quickack)
{
	struct sockaddr_storage c, p;
	uint8_t *buf = malloc(RPC_PROXY_REQ_HDR_TAG + len);
	uint32_t flags;
	size_t n;

	if (buf == NULL)
		abort();
	addr(client, &c);
	addr("203.0.113.5:443", &p);
	flags = rpc_proxy_req_flags(
	    RPC_TRANSPORT_INTERMEDIATE, quickack, tag != NULL, pkt, len);
	n = rpc_proxy_req_build(buf, RPC_PROXY_REQ_HDR_TAG + len, flags,
	    conn_id, (struct sockaddr *)&c, (struct sockaddr *)&p, tag, pkt,
	    len);
	if (n == 0)
		die("cannot build PROXY_REQ");
	tl_send(t, buf, n);
	free(buf);
}

static void
expect_echo(struct tlink *t, uint64_t conn_id, const uint8_t *pkt, size_t len,
    const char *what)
{
	struct rpc_proxy_ans a;
	struct rpc_frame f;

	if (G.sink) {
		tl_expect_quiet(t, what);
		return;
	}
	tl_expect(t, RPC_PROXY_ANS, &f, what);
	CHECK(rpc_proxy_ans_parse(f.payload, f.len, &a) == 0,
	    "%s: malformed PROXY_ANS", what);
	CHECK(a.conn_id == conn_id, "%s: conn_id %016" PRIx64, what, a.conn_id);
	CHECK(a.len == len && memcmp(a.data, pkt, len) == 0,
	    "%s: echo differs (%zu bytes, want %zu)", what, a.len, len);
}

/* An encrypted-looking packet: nonzero auth_key_id. */
static void
make_packet(uint8_t *p, size_t len)
{
	random_bytes(p, len);
	p[0] |= 1;
}

static void
send_ping(struct tlink *t, uint64_t id)
{
	uint8_t buf[RPC_PING_LEN];

	tl_send(t, buf, rpc_ping_build(buf, sizeof(buf), id));
}

/* A frame whose CRC is wrong, encrypted as a valid one would be. */
static void
send_bad_crc(struct tlink *t)
{
	uint8_t frame[64];
	size_t len, n;
	int pad;

	len = rpc_ping_build(
	    frame + RPC_FRAME_HDR, sizeof(frame) - RPC_FRAME_HDR, 42);
	n = rpc_frame_finish(frame, len, t->rl.keys.seq_out, t->crc32c);
	frame[n - 1] ^= 0x5a;
	pad = rpc_frame_pad(frame + n, sizeof(frame) - n, n);
	n += (size_t)pad;
	if (crypto_stream_apply(t->rl.enc, frame, frame, n) == -1)
		die("encrypt failed");
	write_all(t->fd, frame, n);
}

/* ------------------------------------------------------------ selftest */

static void
selftest(void)
{
	struct open_opts o = { .pad_nonce = 1,
		.hs_flags = RPC_HANDSHAKE_CRC32C };
	struct tlink a, b, c;
	struct rpc_frame f;
	struct rpc_proxy_ans ans;
	uint8_t tag[RPC_AD_TAG_LEN], pkt[256], nonce[PEER_NONCE_LEN];
	uint8_t req[PEER_REQ_PQ_LEN], *big;
	char tagx[2 * RPC_AD_TAG_LEN + 1];
	uint64_t x, y, z, w, id, closes, pongs;
	uint32_t confirm;
	char want[160], *s;
	size_t big_len = FRAME_MAX_PACKET;

	/* Link A: padded nonce, asks for CRC32C. */
	CHECK(tl_open(&a, &o) == 0, "link A refused");
	CHECK(a.crc32c == G.expect_crc32c, "link A crc32c %d, want %d",
	    a.crc32c, G.expect_crc32c);
	CHECK(stats_get("links") == 1 && stats_get("links_total") == 1,
	    "one link after link A");

	/* A packet without an ad tag, echoed. */
	random_bytes(&x, sizeof(x));
	make_packet(pkt, 64);
	send_req(&a, x, "198.51.100.7:40001", NULL, pkt, 64, 0);
	expect_echo(&a, x, pkt, 64, "echo on conn X");

	/* req_pq_multi with an ad tag, answered with resPQ in any mode. */
	y = x ^ 0x5555;
	random_bytes(tag, sizeof(tag));
	random_bytes(nonce, sizeof(nonce));
	peer_req_pq(req, nonce);
	send_req(&a, y, "[2001:db8::1]:5555", tag, req, sizeof(req), 1);
	tl_expect(&a, RPC_PROXY_ANS, &f, "resPQ");
	CHECK(rpc_proxy_ans_parse(f.payload, f.len, &ans) == 0 &&
	        ans.conn_id == y,
	    "resPQ: bad PROXY_ANS");
	CHECK(peer_is_res_pq(ans.data, ans.len, nonce),
	    "resPQ: not a resPQ "
	    "for our nonce: %s",
	    peer_hex(ans.data, ans.len, 84));

	/* One packet of the largest size a client may send. */
	if ((big = malloc(big_len)) == NULL)
		abort();
	make_packet(big, big_len);
	send_req(&a, x, "198.51.100.7:40001", NULL, big, big_len, 0);
	expect_echo(&a, x, big, big_len, "1 MB echo");
	free(big);

	/* Our PING, its PONG. */
	random_bytes(&id, sizeof(id));
	send_ping(&a, id);
	if (G.no_pong) {
		tl_expect_quiet(&a, "no PONG with --no-pong");
	} else {
		uint64_t got;
		tl_expect(&a, RPC_PONG, &f, "PONG");
		CHECK(rpc_pong_parse(f.payload, f.len, &got) == 0 && got == id,
		    "PONG for another ping");
	}
	CHECK(stats_get("pings") == 1, "pings count");
	CHECK(stats_get("pings_answered") == (G.no_pong ? 0u : 1u),
	    "pings_answered count");

	/* What stats recorded. */
	check_conn(x, "\"ad_tag\": null");
	check_conn(x, "\"client\": \"198.51.100.7:40001\"");
	check_conn(x, "\"proxy\": \"203.0.113.5:443\"");
	check_conn(x, "\"packets\": 2,");
	snprintf(want, sizeof(want), "\"bytes\": %zu,", 64 + big_len);
	check_conn(x, want);
	check_conn(x, "\"flags\": \"0x20021000\"");
	hex_encode(tag, sizeof(tag), tagx);
	snprintf(want, sizeof(want), "\"ad_tag\": \"%s\"", tagx);
	check_conn(y, want);
	check_conn(y, "\"client\": \"[2001:db8::1]:5555\"");
	check_conn(y, "\"flags\": \"0xa002100a\"");
	check_conn(y, "\"closed\": false");

	/* SIMPLE_ACK on request. */
	s = ctl("ack %016" PRIx64 " 0x11223344", y);
	CHECK(strcmp(s, "{\"ok\": true}") == 0, "ack: %s", s);
	free(s);
	tl_expect(&a, RPC_SIMPLE_ACK, &f, "SIMPLE_ACK");
	CHECK(rpc_simple_ack_parse(f.payload, f.len, &id, &confirm) == 0 &&
	        id == y && confirm == 0x11223344,
	    "SIMPLE_ACK content");
	CHECK(memcmp(f.payload + 12, "\x44\x33\x22\x11", 4) == 0,
	    "SIMPLE_ACK confirm bytes");
	s = ctl("ack 12345 0x1");
	CHECK(strstr(s, "\"error\"") != NULL, "ack of unknown conn: %s", s);
	free(s);

	/* CLOSE_EXT on request. */
	s = ctl("close_ext %" PRIx64, x);
	CHECK(strcmp(s, "{\"ok\": true}") == 0, "close_ext: %s", s);
	free(s);
	tl_expect(&a, RPC_CLOSE_EXT, &f, "CLOSE_EXT");
	CHECK(rpc_close_ext_parse(f.payload, f.len, &id) == 0 && id == x,
	    "CLOSE_EXT content");
	check_conn(x, "\"ext_closed\": true");

	/* Our CLOSE_CONN. */
	closes = stats_get("closes");
	tl_send(&a, pkt, rpc_close_conn_build(pkt, sizeof(pkt), y));
	/* A ping behind it proves it was processed. */
	send_ping(&a, 7);
	if (!G.no_pong)
		tl_expect(&a, RPC_PONG, &f, "PONG after CLOSE_CONN");
	else
		usleep(QUIET_MS * 1000);
	CHECK(stats_get("closes") == closes + 1, "closes count");
	check_conn(y, "\"closed\": true");

	/* fake_mp's PING, our PONG. */
	pongs = stats_get("pongs");
	ctl_ok("ping");
	tl_expect(&a, RPC_PING, &f, "PING from fake_mp");
	CHECK(rpc_ping_parse(f.payload, f.len, &id) == 0, "malformed PING");
	tl_send(&a, pkt, rpc_pong_build(pkt, sizeof(pkt), id));
	for (int i = 0; i < 100 && stats_get("pongs") == pongs; i++)
		usleep(10000);
	CHECK(stats_get("pongs") == pongs + 1, "pongs count");

	/* hold: nothing is read, then everything is. */
	ctl_ok("hold 1");
	z = x + 1;
	make_packet(pkt, 128);
	send_req(&a, z, "198.51.100.8:1", NULL, pkt, 128, 0);
	tl_expect_quiet(&a, "answer while held");
	ctl_ok("hold 0");
	if (G.sink) {
		/* Nothing to wait for: look at the counters instead. */
		for (int i = 0; i < 100 &&
		     strstr(s = ctl("stats"), "\"198.51.100.8:1\"") == NULL;
		     i++) {
			free(s);
			usleep(10000);
		}
		free(s);
		check_conn(z, "\"packets\": 1,");
	} else {
		expect_echo(&a, z, pkt, 128, "echo after hold");
	}

	/* Link B: plain nonce like C, no CRC32C; rotated by index. */
	o.pad_nonce = 0;
	o.hs_flags = 0;
	CHECK(tl_open(&b, &o) == 0, "link B refused");
	CHECK(b.crc32c == 0, "CRC32C without asking");
	w = z + 1;
	make_packet(pkt, 32);
	send_req(&b, w, "198.51.100.9:9", NULL, pkt, 32, 0);
	expect_echo(&b, w, pkt, 32, "echo on link B");
	CHECK(stats_get("links") == 2, "two links");
	CHECK(conn_link(w) == 1 && conn_link(z) == 0, "conns' link indices");
	s = ctl("rotate %u", conn_link(w));
	CHECK(strcmp(s, "{\"closed\": 1}") == 0, "rotate: %s", s);
	free(s);
	tl_expect_eof(&b, "rotated link B");
	tl_close(&b);
	s = ctl("ack %016" PRIx64 " 1", w);
	CHECK(strstr(s, "\"error\"") != NULL, "ack on a closed link: %s", s);
	free(s);

	/* Malformed input closes the link. */
	CHECK(tl_open(&c, &o) == 0, "link C refused");
	memcpy(pkt, "\x78\x56\x34\x12", 4); /* an unknown type */
	tl_send(&c, pkt, 12);
	tl_expect_eof(&c, "unknown message type");
	tl_close(&c);

	CHECK(tl_open(&c, &o) == 0, "link D refused");
	send_bad_crc(&c);
	tl_expect_eof(&c, "bad CRC");
	tl_close(&c);

	o.bad_selector = 1;
	CHECK(tl_open(&c, &o) == -1, "nonce with another key selector");
	tl_close(&c);
	o.bad_selector = 0;

	CHECK(tl_open(&c, &o) == 0, "link F refused");
	pkt[0] = 0;
	memcpy(pkt, "\xee\xf1\xce\x36", 4); /* PROXY_REQ, too short */
	tl_send(&c, pkt, 20);
	tl_expect_eof(&c, "short PROXY_REQ");
	tl_close(&c);

	/* Rotate everything: only A is left. */
	s = ctl("rotate all");
	CHECK(strcmp(s, "{\"closed\": 1}") == 0, "rotate all: %s", s);
	free(s);
	tl_expect_eof(&a, "rotated link A");
	tl_close(&a);
	CHECK(stats_get("links") == 0 && stats_get("links_total") == 6,
	    "links after rotate all");
	s = ctl("bogus");
	CHECK(strstr(s, "\"error\"") != NULL, "unknown command: %s", s);
	free(s);
	printf("mp_selftest: OK, %u checks\n", G.checks);
}

/* ------------------------------------------------------------ bulk */

static void
bulk(uint64_t total, size_t psize, unsigned nconns, int verify)
{
	struct open_opts o = { .pad_nonce = 1,
		.hs_flags = G.expect_crc32c ? RPC_HANDSHAKE_CRC32C : 0 };
	struct tlink t;
	struct peer_buf out = { 0 };
	struct peer_prng tx, rx;
	struct sockaddr_storage client, proxy;
	struct rpc_frame f;
	struct rpc_proxy_ans ans;
	uint64_t base, sent = 0, recvd = 0, pk_out = 0, pk_in = 0;
	double t0, dt;

	if (G.sink)
		ctl_ok("reset");
	CHECK(tl_open(&t, &o) == 0, "bulk link refused");
	CHECK(t.crc32c == G.expect_crc32c, "bulk link crc32c %d", t.crc32c);
	addr("198.51.100.7:40001", &client);
	addr("203.0.113.5:443", &proxy);
	peer_prng_init(&tx, BULK_SEED);
	peer_prng_init(&rx, BULK_SEED);
	random_bytes(&base, sizeof(base));
	t0 = peer_now();
	while (
	    G.sink ? sent < total || peer_buf_size(&out) > 0 : recvd < total) {
		while (sent < total && (G.sink || sent - recvd < BULK_WINDOW) &&
		    peer_buf_size(&out) < BULK_OUT_MAX) {
			size_t n = total - sent < psize ? total - sent : psize;
			size_t cap = RPC_FRAME_SPACE(RPC_PROXY_REQ_HDR + n);
			uint8_t *fr = peer_buf_reserve(&out, cap);
			uint8_t *p = fr + RPC_FRAME_HDR;
			size_t h = rpc_proxy_req_header(p, cap, 0x20021000,
			    base + pk_out % nconns, (struct sockaddr *)&client,
			    (struct sockaddr *)&proxy, NULL);
			/* Random auth_key_ids: never a req_pq. */
			peer_prng_fill(&tx, p + h, n);
			size_t m = rpc_link_seal(&t.rl, fr, cap, h + n);
			if (h == 0 || m == 0)
				die("cannot build a bulk frame");
			peer_buf_commit(&out, m);
			sent += n;
			pk_out++;
		}
		struct pollfd pfd = { .fd = t.fd,
			.events =
			    POLLIN | (peer_buf_size(&out) > 0 ? POLLOUT : 0) };
		if (poll(&pfd, 1, 10000) == 0)
			die("bulk stalled at %" PRIu64 " sent, %" PRIu64
			    " received",
			    sent, recvd);
		if (pfd.revents & POLLOUT) {
			ssize_t n = write(
			    t.fd, peer_buf_data(&out), peer_buf_size(&out));
			if (n > 0)
				peer_buf_consume(&out, (size_t)n);
			else if (errno != EAGAIN && errno != EINTR)
				die("write: %s", strerror(errno));
		}
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		int r;
		while ((r = tl_recv(&t, 0, &f)) == 1) {
			if (rpc_proxy_ans_parse(f.payload, f.len, &ans) == -1)
				die("bulk: not a PROXY_ANS");
			if (ans.conn_id != base + pk_in % nconns)
				die("bulk: answer for the wrong conn");
			if (verify && peer_prng_check(&rx, ans.data, ans.len))
				die("bulk: echo differs in packet %" PRIu64,
				    pk_in);
			recvd += ans.len;
			pk_in++;
		}
		if (r == -1)
			die("bulk: fake_mp closed the link");
	}
	if (G.sink) {
		char *s;
		while (stats_num(s = ctl("stats"), "bytes") < total) {
			free(s);
			usleep(1000);
		}
		free(s);
		recvd = total;
	}
	dt = peer_now() - t0;
	printf("mp_selftest: bulk %s: %" PRIu64 " bytes in %" PRIu64
	       " packets of %zu over %u conns in %.3f s: %.1f MB/s%s\n",
	    G.sink ? "sink" : "echo", recvd, pk_out, psize, nconns, dt,
	    recvd / dt / 1e6, G.sink ? "" : " each way");
	peer_buf_free(&out);
	tl_close(&t);
}

/* ------------------------------------------------------------ main */

static void
read_secret(const char *path)
{
	FILE *f = fopen(path, "rb");

	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	G.secret_len = fread(G.secret, 1, sizeof(G.secret), f);
	fclose(f);
	if (G.secret_len < RPC_SECRET_MIN)
		die("%s: secret too short", path);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mp_selftest --port P --control-port C "
	    "--secret-file F [--host H]\n"
	    "\t[--expect-crc32c] [--sink] [--no-pong]\n"
	    "\t[--bulk MIB [--packet BYTES] [--conns N] [--no-verify]]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'h' },
		{ "control-port", required_argument, NULL, 'c' },
		{ "secret-file", required_argument, NULL, 's' },
		{ "expect-crc32c", no_argument, NULL, 'C' },
		{ "sink", no_argument, NULL, 'S' },
		{ "no-pong", no_argument, NULL, 'n' },
		{ "bulk", required_argument, NULL, 'b' },
		{ "packet", required_argument, NULL, 'k' },
		{ "conns", required_argument, NULL, 'N' },
		{ "no-verify", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	long port = -1, ctl_port = -1, packet = 16384, conns = 1;
	double mib = 0;
	const char *secret_file = NULL;
	int ch, verify = 1;

	G.host = "127.0.0.1";
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			port = strtol(optarg, NULL, 10);
			break;
		case 'h':
			G.host = optarg;
			break;
		case 'c':
			ctl_port = strtol(optarg, NULL, 10);
			break;
		case 's':
			secret_file = optarg;
			break;
		case 'C':
			G.expect_crc32c = 1;
			break;
		case 'S':
			G.sink = 1;
			break;
		case 'n':
			G.no_pong = 1;
			break;
		case 'b':
			mib = strtod(optarg, NULL);
			break;
		case 'k':
			packet = strtol(optarg, NULL, 10);
			break;
		case 'N':
			conns = strtol(optarg, NULL, 10);
			break;
		case 'V':
			verify = 0;
			break;
		default:
			usage();
		}
	}
	if (port <= 0 || port > 65535 || ctl_port <= 0 || ctl_port > 65535 ||
	    secret_file == NULL || optind != argc || mib < 0 || packet < 4 ||
	    packet % 4 != 0 || packet > (long)FRAME_MAX_PACKET || conns < 1)
		usage();
	G.port = (uint16_t)port;
	G.ctl_port = (uint16_t)ctl_port;
	signal(SIGPIPE, SIG_IGN);
	read_secret(secret_file);
	if (mib > 0)
		bulk((uint64_t)(mib * 1048576) & ~(uint64_t)3, (size_t)packet,
		    (unsigned)conns, verify);
	else
		selftest();
	return 0;
}
