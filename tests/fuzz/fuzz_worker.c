/*
 * A stateful fuzz target over the real worker: its sessions, relay,
 * fronting and middle-proxy code (the worker/ sources) run in this
 * process on a libevent loop, with the harness at every other end. Each input opens
 * one client that passes a valid handshake (obfuscated2 or fake TLS) --
 * or, for fronting, a fake-TLS client with a wrong secret -- and then
 * feeds chunks, chosen by the input, to the client side, to the DC or
 * fronting site side, and to a middle-proxy link (RPC messages sealed
 * with the link's keys, so they reach the decoder, or raw bytes).
 *
 * Input: byte 0 mode (direct, middle, fronting), byte 1 transport,
 * byte 2 DC number; then commands: one byte (what, where), one length
 * byte, that many bytes of data.
 *
 * At the end of each input every session and link is closed and the
 * reapers run: a leak, a use after free or a leaked descriptor fails.
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "msg.h"
#include "replay.h"
#include "rpc.h"
#include "tests/peers/peer.h"
#include "util.h"
#include "worker/middle.h"
#include "worker/session.h"
#include "worker/session_int.h"
#include "worker/worker.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum mode { MODE_DIRECT, MODE_MIDDLE, MODE_FRONT, MODE_MAX };

static const uint8_t secret[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
	0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
static const uint8_t wrong[16] = { 0xff };

/* How deep the inputs got, printed at exit (a harness that stops at the
 * handshake would show zeros here). */
static struct {
	unsigned long inputs, handshakes, backends, links, requests;
} stats;

static struct config *cfg;
static struct worker_args wargs;
static int dc_lfd = -1, front_lfd = -1; /* the DC, the fronting site */
static int client_lfd = -1; /* clients connect through it: real TCP */
static uint16_t client_port;
static int dcpool[2] = { -1, -1 }; /* [0]: the worker's, [1]: ours */

/* One input's harness ends. */
static struct {
	int client; /* our end of the client's socket */
	int backend; /* the worker's connection to the DC or site */
	int me; /* our end of the middle-proxy link */
	struct rpc_link me_link; /* the ME's side of the link */
	int me_link_ok;
	uint64_t conn_id; /* from the worker's PROXY_REQ */
	size_t me_len, me_dec; /* link bytes read, decrypted */
	struct peer_client pc;
	uint8_t inbuf[256 * 1024];
} H;

static void
loop(int n)
{
	for (int i = 0; i < n; i++)
		event_base_loop(W.base, EVLOOP_NONBLOCK);
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static void
xwrite(int fd, const uint8_t *p, size_t n)
{
	while (fd != -1 && n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w <= 0)
			return; /* full or closed: the rest is dropped */
		p += w;
		n -= w;
	}
}

/* Read and forget what a side has for us; -1 once it closed. */
static ssize_t
drain(int fd, uint8_t *keep, size_t cap)
{
	ssize_t total = 0, n;

	if (fd == -1)
		return -1;
	while ((n = recv(fd, H.inbuf, sizeof(H.inbuf), MSG_DONTWAIT)) > 0) {
		if (keep && (size_t)total < cap) {
			size_t take = cap - total < (size_t)n ? cap - total : n;
			memcpy(keep + total, H.inbuf, take);
		}
		total += n;
	}
	return n == 0 ? -1 : total;
}

/*
 * Close with a reset: no TIME_WAIT on either side, so a long run does not
 * run out of ephemeral ports (thousands of connections a second).
 */
static void
close_reset(int fd)
{
	struct linger lg = { 1, 0 };

	if (fd == -1)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void
accept_backend(void)
{
	int lfd = dc_lfd;

	for (int i = 0; i < 2 && H.backend == -1; i++, lfd = front_lfd)
		H.backend = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	if (H.backend != -1)
		peer_tcp_nodelay(H.backend);
}

/* ------------------------------------------------------------ the ME */

/* The worker asked the dcpool for a link: give it one. */
static void
grant_links(void)
{
	struct msg *m = malloc(sizeof(*m));
	int16_t dc;
	uint32_t req;

	while (m && msg_recv(dcpool[1], m) == 1) {
		if (m->type != MSG_LINK_REQUEST ||
		    msg_get_link_request(m, &dc, &req) == -1 || H.me != -1) {
			msg_done(m);
			continue;
		}
		msg_done(m);
		int lp[2], gp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, lp) == -1)
			break;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, gp) == -1) {
			close(lp[0]);
			close(lp[1]);
			break;
		}
		struct rpc_link_keys k, mirror;
		random_bytes(&k, sizeof(k));
		k.seq_out = k.seq_in = 0;
		k.crc32c = k.reserved & 1;
		k.reserved = 0;
		mirror = k;
		memcpy(mirror.enc_key, k.dec_key, 32);
		memcpy(mirror.enc_iv, k.dec_iv, 16);
		memcpy(mirror.dec_key, k.enc_key, 32);
		memcpy(mirror.dec_iv, k.enc_iv, 16);
		struct sockaddr_storage me = { 0 };
		struct sockaddr_in *sin = (void *)&me;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(8888);
		if (msg_send_link_grant(
		        gp[0], dc, req, &k, &me, sizeof(*sin), lp[0]) == 0 &&
		    msg_recv(gp[1], m) == 1 &&
		    rpc_link_restore(&H.me_link, &mirror, 1 << 21) == 0) {
			H.me_link_ok = 1;
			H.me = lp[1];
			fd_set_nonblock(H.me);
			middle_dcpool_msg(m); /* the worker takes the fd */
			msg_done(m);
		} else
			close(lp[1]);
		close(lp[0]);
		close(gp[0]);
		close(gp[1]);
	}
	free(m);
}

/* What the worker sent to the ME: decode it, learn the conn_id. */
static void
read_me(void)
{
	static uint8_t buf[1 << 21];
	size_t len = H.me_len, dec = H.me_dec;
	struct rpc_frame fr;

	if (H.me == -1)
		return;
	ssize_t n = recv(H.me, buf + len, sizeof(buf) - len, MSG_DONTWAIT);
	if (n <= 0)
		return;
	len += n;
	size_t d = (len - dec) & ~(size_t)(RPC_BLOCK - 1);
	if (d && rpc_link_decrypt(&H.me_link, buf + dec, d) == -1)
		goto reset;
	dec += d;
	size_t pos = 0;
	while (pos < dec) {
		enum rpc_decode_status st =
		    rpc_link_decode(&H.me_link, buf + pos, dec - pos, &fr);
		if (st == RPC_DECODE_ERROR)
			goto reset;
		pos += fr.consumed;
		if (st == RPC_DECODE_NEED_MORE)
			break;
		struct rpc_proxy_req r;
		if (rpc_proxy_req_parse(fr.payload, fr.len, &r) == 0)
			H.conn_id = r.conn_id;
	}
	memmove(buf, buf + pos, len - pos);
	len -= pos;
	dec -= pos;
	if (len == sizeof(buf))
		goto reset;
	H.me_len = len;
	H.me_dec = dec;
	return;
reset:
	H.me_len = H.me_dec = 0;
}

/* An RPC message from the ME, from a template and the fuzzer's bytes. */
static void
send_me(unsigned kind, const uint8_t *data, size_t n)
{
	static uint8_t frame[RPC_FRAME_SPACE(4096)];
	uint8_t *p = frame + RPC_FRAME_HDR;
	size_t len = 0;

	if (H.me == -1 || !H.me_link_ok)
		return;
	switch (kind % 6) {
	case 0: /* PROXY_ANS with the client's conn_id */
		put_le32(p, RPC_PROXY_ANS);
		put_le32(p + 4, 0);
		memcpy(p + 8, &H.conn_id, 8);
		len = 16;
		break;
	case 1:
		put_le32(p, RPC_SIMPLE_ACK);
		memcpy(p + 4, &H.conn_id, 8);
		len = 12;
		break;
	case 2:
		put_le32(p, RPC_CLOSE_EXT);
		memcpy(p + 4, &H.conn_id, 8);
		len = 12;
		break;
	case 3:
		put_le32(p, RPC_PING);
		len = 4;
		break;
	case 4: /* whatever the fuzzer says, sealed */
		break;
	default: /* raw bytes on the link */
		xwrite(H.me, data, n);
		return;
	}
	if (n > 4096 - len)
		n = 4096 - len;
	memcpy(p + len, data, n);
	len = (len + n) & ~(size_t)3;
	if (len == 0)
		return;
	size_t w = rpc_link_seal(&H.me_link, frame, sizeof(frame), len);
	if (w)
		xwrite(H.me, frame, w);
}

/* ------------------------------------------------------------ clients */

/* Plain bytes from the client: encrypted (and, for TLS, recorded). */
static void
send_client(const uint8_t *data, size_t n, int raw)
{
	static uint8_t buf[4096];
	struct peer_buf out = { 0 };

	if (n == 0)
		return;
	if (raw) {
		xwrite(H.client, data, n);
		return;
	}
	memcpy(buf, data, n);
	if (peer_client_seal(&H.pc, buf, n) == -1)
		return;
	if (H.pc.proto == PEER_TLS) {
		peer_client_wrap(buf, n, &out);
		xwrite(H.client, peer_buf_data(&out), peer_buf_size(&out));
		peer_buf_free(&out);
	} else
		xwrite(H.client, buf, n);
}

/* A valid handshake (or, fronting, a ClientHello with a wrong secret). */
static int
handshake(enum mode mode, enum peer_proto proto, int16_t dc)
{
	uint8_t hello[TLS_HELLO_MAX];

	if (mode == MODE_FRONT)
		proto = PEER_TLS;
	if (peer_client_init(
	        &H.pc, proto, mode == MODE_FRONT ? wrong : secret, dc) == -1)
		return -1;
	if (proto != PEER_TLS) {
		xwrite(H.client, H.pc.header, O2_HEADER_LEN);
		return 0;
	}
	size_t n = peer_client_hello(&H.pc, hello, sizeof(hello),
	    "www.example.com", (uint32_t)now_unix(), 517);
	if (n == 0)
		return -1;
	xwrite(H.client, hello, n);
	if (mode == MODE_FRONT)
		return 0;
	loop(3);
	size_t got = 0, used;
	ssize_t r = drain(H.client, hello, sizeof(hello));
	if (r > 0)
		got = (size_t)r < sizeof(hello) ? (size_t)r : sizeof(hello);
	if (peer_client_server_hello(&H.pc, hello, got, &used) != 1)
		return -1;
	/* The ServerHello's record stream reader starts after it. */
	struct peer_buf out = { 0 };
	uint8_t hdr[O2_HEADER_LEN];
	memcpy(hdr, H.pc.header, sizeof(hdr));
	xwrite(H.client, peer_tls_ccs, sizeof(peer_tls_ccs));
	peer_client_wrap(hdr, sizeof(hdr), &out);
	xwrite(H.client, peer_buf_data(&out), peer_buf_size(&out));
	peer_buf_free(&out);
	return 0;
}

/* ------------------------------------------------------------ libFuzzer */

static int
listen_local(uint16_t *port)
{
	int fd = peer_listen("127.0.0.1", 0, port);
	if (fd != -1)
		fd_set_nonblock(fd);
	return fd;
}

static void
print_stats(void)
{
	fprintf(stderr,
	    "fuzz_worker: %lu inputs, %lu valid handshakes sent, %lu "
	    "backend connections, %lu middle-proxy links, %lu with a "
	    "PROXY_REQ\n",
	    stats.inputs, stats.handshakes, stats.backends, stats.links,
	    stats.requests);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char text[4096], err[512];
	uint16_t dcp, fp;

	(void)argc;
	(void)argv;
	/* FUZZ_WORKER_DEBUG=1: the worker's debug log on stderr. */
	log_init(LOG_TARGET_STDERR, NULL,
	    getenv("FUZZ_WORKER_DEBUG") ? LOG_DEBUG : LOG_CRIT, "fuzz_worker");
	if ((dc_lfd = listen_local(&dcp)) == -1 ||
	    (front_lfd = listen_local(&fp)) == -1 ||
	    (client_lfd = listen_local(&client_port)) == -1)
		abort();
	const char *users = "users = ( { name = \"u\"; secret = "
	                    "\"0123456789abcdef0123456789abcdef\"; } );";
	snprintf(text, sizeof(text),
	    "workers = 1; handshake_timeout = 5; state_dir = \"/tmp\";\n"
	    "listeners = (\n"
	    " { name = \"direct\"; address = \"127.0.0.1\"; port = 1;"
	    "   protocols = [ \"classic\", \"secure\", \"fake_tls\" ];"
	    "   tls_domain = \"www.example.com\";"
	    "   fronting = \"127.0.0.1:%u\"; backend = \"direct\"; %s },\n"
	    " { name = \"middle\"; address = \"127.0.0.1\"; port = 2;"
	    "   protocols = [ \"classic\", \"secure\", \"fake_tls\" ];"
	    "   tls_domain = \"www.example.com\";"
	    "   fronting = \"127.0.0.1:%u\"; backend = \"middle\"; %s }\n"
	    ");\n"
	    "telegram = { default_dc = 2; dc = ("
	    " { id = 1; address = \"127.0.0.1:%u\"; },"
	    " { id = 2; address = \"127.0.0.1:%u\"; },"
	    " { id = 3; address = \"127.0.0.1:%u\"; },"
	    " { id = 4; address = \"127.0.0.1:%u\"; },"
	    " { id = 5; address = \"127.0.0.1:%u\"; } ); };\n"
	    "middle = { min_links = 1; client_queue_max = 65536;"
	    " link_queue_max = 262144; };\n",
	    fp, users, fp, users, dcp, dcp, dcp, dcp, dcp);
	if ((cfg = config_load_string(text, "fuzz", err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "fuzz_worker: %s\n", err);
		abort();
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, dcpool) == -1)
		abort();
	fd_set_nonblock(dcpool[0]);
	fd_set_nonblock(dcpool[1]);
	wargs.cfg = cfg;
	wargs.replay = replay_create(4096, 60);
	if (wargs.replay == NULL)
		abort();
	W.a = &wargs;
	W.cfg = cfg;
	W.base = event_base_new();
	W.dcpool_fd = dcpool[0];
	if (W.base == NULL)
		abort();
	session_init();
	atexit(print_stats);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int16_t dcs[] = { 1, 2, -2, 3, 4, 5, 0, 1000, -31000,
		10002 };
	int fds_before = count_fds();
	int cs[2];
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);

	if (size < 3)
		return 0;
	enum mode mode = data[0] % MODE_MAX;
	enum peer_proto proto = (enum peer_proto)(data[1] % 4);
	int16_t dc = dcs[data[2] % (sizeof(dcs) / sizeof(dcs[0]))];
	const struct config_listener *l =
	    &cfg->listeners[mode == MODE_MIDDLE ? 1 : 0];

	memset(&H, 0, offsetof(typeof(H), inbuf));
	H.backend = H.me = -1;
	/* A real TCP connection: the worker reads its own address. */
	struct sockaddr_in to = { .sin_family = AF_INET,
		.sin_port = htons(client_port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if ((cs[1] = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return 0;
	if (connect(cs[1], (struct sockaddr *)&to, sizeof(to)) == -1 ||
	    (cs[0] = accept4(client_lfd, (struct sockaddr *)&peer, &plen,
	         SOCK_NONBLOCK)) == -1) {
		close(cs[1]);
		return 0;
	}
	fd_set_nonblock(cs[1]);
	peer_tcp_nodelay(cs[1]); /* as apps do; else Nagle holds bytes back */
	H.client = cs[1];
	session_accept(cs[0], (struct sockaddr *)&peer, plen, l);
	stats.inputs++;
	if (handshake(mode, proto, dc) == 0) {
		stats.handshakes++;
		size_t pos = 3;
		while (pos + 2 <= size) {
			unsigned what = data[pos], n = data[pos + 1];
			pos += 2;
			if (n > size - pos)
				n = size - pos;
			const uint8_t *p = data + pos;
			pos += n;
			loop(2);
			accept_backend();
			grant_links();
			switch (what & 3) {
			case 0:
				send_client(p, n, what & 4);
				break;
			case 1:
				xwrite(H.backend, p, n);
				break;
			default:
				send_me(what >> 2, p, n);
				break;
			}
			/* Sometimes leave output unread, so queues fill. */
			if (!(what & 0x80)) {
				drain(H.client, NULL, 0);
				read_me();
				drain(H.backend, NULL, 0);
			}
			loop(2);
		}
	}
	stats.backends += H.backend != -1;
	stats.links += H.me != -1;
	stats.requests += H.conn_id != 0;
	/* Our ends go first, with resets; then the worker lets go of all. */
	close_reset(H.client);
	close_reset(H.backend);
	loop(2);
	session_close_all("end of the fuzz input");
	middle_close_all();
	loop(4);
	peer_client_free(&H.pc);
	if (H.me_link_ok)
		rpc_link_free(&H.me_link);
	if (H.me != -1)
		close(H.me);
	for (int fd; (fd = accept4(dc_lfd, NULL, NULL, 0)) != -1;)
		close_reset(fd);
	for (int fd; (fd = accept4(front_lfd, NULL, NULL, 0)) != -1;)
		close_reset(fd);
	/* Link requests left over: forgotten (the pools are gone). */
	struct msg *m = malloc(sizeof(*m));
	while (m && msg_recv(dcpool[1], m) == 1)
		msg_done(m);
	free(m);
	int fds_after = count_fds();
	if (fds_before != -1 && fds_after != fds_before) {
		fprintf(stderr,
		    "fuzz_worker: %d descriptors before, %d after\n",
		    fds_before, fds_after);
		abort();
	}
	return 0;
}
