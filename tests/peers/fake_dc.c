/*
 * fake_dc: a stand-in for a Telegram DC, for the end-to-end tests.
 *
 *	fake_dc --port P [--host 127.0.0.1] [--mode packets|echo|sink|source]
 *	    [--source-bytes N]
 *
 * Listens, prints "READY <port>" on stdout, and serves every connection
 * as a DC would: it reads the proxy's 64-byte obfuscated2 header with raw
 * keys (spec B.1.3), then, by mode:
 *	packets	decodes the client's frames; answers req_pq_multi with a
 *		resPQ and echoes any other packet, in the DC-to-client
 *		framing (spec A.3);
 *	echo	sends the decrypted byte stream back, re-encrypted;
 *	sink	counts and discards; at EOF answers the count (LE64) and
 *		closes;
 *	source	sends N pseudo-random bytes (PEER_SOURCE_SEED), closes.
 * One line per connection on stderr names the tag and DC index, so tests
 * can see what reached the DC.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "framing.h"
#include "o2.h"
#include "peer.h"
#include "util.h"

#define SCRATCH_LEN (256 * 1024)
/* Stop reading a connection whose output backs up beyond this. */
#define OUT_HIGH     (4 * 1024 * 1024)
#define OUT_LOW      (1024 * 1024)
#define SOURCE_CHUNK (64 * 1024)
/* A whole answer frame: the largest packet, header and padding. */
#define OUT_LEN (FRAME_MAX_PACKET + 64)

enum mode { MODE_PACKETS, MODE_ECHO, MODE_SINK, MODE_SOURCE };

struct dc_conn {
	struct bufferevent *bev;
	unsigned id;
	int have_header;
	int closing; /* free when output drained */
	int eof;
	struct o2_session o2;
	enum frame_kind kind;
	struct peer_buf plain; /* packets mode: undecoded */
	uint64_t received; /* bytes after the header */
	uint64_t sent;
	uint64_t packets;
	struct peer_prng prng;
};

static struct {
	struct event_base *base;
	enum mode mode;
	uint64_t source_bytes;
	unsigned next_id;
	uint8_t *scratch;
	uint8_t *out;
} G;

static void conn_read(struct dc_conn *);
static void conn_eof(struct dc_conn *);

static void
conn_free(struct dc_conn *c)
{
	bufferevent_free(c->bev);
	o2_session_free(&c->o2);
	peer_buf_free(&c->plain);
	free(c);
}

/* Close once everything queued is on its way. */
static void
conn_finish(struct dc_conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

static void
conn_fail(struct dc_conn *c, const char *why)
{
	fprintf(stderr, "fake_dc: conn %u: %s\n", c->id, why);
	conn_free(c);
}

/* Encrypt len bytes of buf in place and queue them. */
static int
conn_send(struct dc_conn *c, uint8_t *buf, size_t len)
{
	if (crypto_stream_apply(c->o2.enc, buf, buf, len) == -1)
		return -1;
	c->sent += len;
	return bufferevent_write(c->bev, buf, len);
}

/* One packet to the client in its framing (spec A.3). */
static int
send_packet(struct dc_conn *c, const uint8_t *pkt, size_t len)
{
	uint8_t hdr[4];
	size_t padlen, hl;

	hl = frame_encode_header(c->kind, len, hdr, &padlen);
	if (hl == 0 || hl + len + padlen > OUT_LEN)
		return -1;
	memcpy(G.out, hdr, hl);
	memcpy(G.out + hl, pkt, len);
	if (padlen)
		random_bytes(G.out + hl + len, padlen);
	return conn_send(c, G.out, hl + len + padlen);
}

/* Returns -1 when the connection was closed. */
static int
do_packets(struct dc_conn *c)
{
	struct frame_info fi;
	uint8_t nonce[PEER_NONCE_LEN], ans[PEER_RES_PQ_LEN];

	for (;;) {
		const uint8_t *p = peer_buf_data(&c->plain);
		int r = frame_decode(c->kind, p, peer_buf_size(&c->plain), &fi);
		if (r == FRAME_NEED_MORE)
			return 0;
		if (r == FRAME_ERROR) {
			char why[128];
			snprintf(why, sizeof(why),
			    "framing error at packet "
			    "%" PRIu64 ": %s",
			    c->packets,
			    peer_hex(p, peer_buf_size(&c->plain), 8));
			conn_fail(c, why);
			return -1;
		}
		const uint8_t *pkt = p + fi.hdrlen;
		int ok;
		if (peer_is_req_pq(pkt, fi.pktlen, nonce)) {
			peer_res_pq(ans, nonce);
			ok = send_packet(c, ans, sizeof(ans));
		} else if (fi.pktlen > 0) {
			ok = send_packet(c, pkt, fi.pktlen);
		} else {
			ok = 0;
		}
		if (ok == -1) {
			conn_fail(c, "cannot answer a packet");
			return -1;
		}
		c->packets++;
		peer_buf_consume(&c->plain, fi.total);
	}
}

static int
source_fill(struct dc_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (
	    c->sent < G.source_bytes && evbuffer_get_length(out) < OUT_HIGH) {
		size_t n = G.source_bytes - c->sent < SOURCE_CHUNK
		    ? G.source_bytes - c->sent
		    : SOURCE_CHUNK;
		peer_prng_fill(&c->prng, G.out, n);
		if (conn_send(c, G.out, n) == -1) {
			conn_fail(c, "send failed");
			return -1;
		}
	}
	if (c->sent == G.source_bytes && !c->closing) {
		fprintf(stderr, "fake_dc: conn %u source sent %" PRIu64 "\n",
		    c->id, c->sent);
		conn_finish(c);
		return -1;
	}
	return 0;
}

/* The 64-byte header; -1 when the connection was closed. */
static int
conn_header(struct dc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint8_t wire[O2_HEADER_LEN];

	if (evbuffer_get_length(in) < O2_HEADER_LEN)
		return 1;
	evbuffer_remove(in, wire, sizeof(wire));
	/* A DC knows no secret: raw keys (spec B.1.3). */
	if (o2_accept(wire, NULL, 0, &c->o2) == -1) {
		conn_fail(c, "bad obfuscated2 header (no valid tag)");
		return -1;
	}
	c->have_header = 1;
	c->kind = frame_kind_from_tag(c->o2.tag);
	fprintf(stderr, "fake_dc: conn %u tag %08x dc %d\n", c->id, c->o2.tag,
	    c->o2.dc);
	if (G.mode == MODE_SOURCE) {
		peer_prng_init(&c->prng, PEER_SOURCE_SEED);
		return source_fill(c);
	}
	return 0;
}

static void
conn_read(struct dc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->closing)
		return;
	if (!c->have_header && conn_header(c) != 0)
		return;
	while (evbuffer_get_length(in) > 0) {
		if (evbuffer_get_length(out) >= OUT_HIGH) {
			/* The write callback reads on when it drained. */
			bufferevent_disable(c->bev, EV_READ);
			return;
		}
		int n = evbuffer_remove(in, G.scratch, SCRATCH_LEN);
		if (n <= 0)
			break;
		if (crypto_stream_apply(c->o2.dec, G.scratch, G.scratch, n)) {
			conn_fail(c, "decrypt failed");
			return;
		}
		c->received += n;
		switch (G.mode) {
		case MODE_ECHO:
			if (conn_send(c, G.scratch, n) == -1) {
				conn_fail(c, "send failed");
				return;
			}
			break;
		case MODE_PACKETS:
			peer_buf_append(&c->plain, G.scratch, n);
			if (do_packets(c) == -1)
				return;
			break;
		case MODE_SINK:
		case MODE_SOURCE:
			break;
		}
	}
	if (c->eof && evbuffer_get_length(in) == 0)
		conn_eof(c);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	conn_read(arg);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct dc_conn *c = arg;
	struct evbuffer *out = bufferevent_get_output(bev);

	if (c->closing) {
		if (evbuffer_get_length(out) == 0)
			conn_free(c);
		return;
	}
	if (G.mode == MODE_SOURCE && c->have_header) {
		source_fill(c);
		return;
	}
	if (evbuffer_get_length(out) < OUT_LOW) {
		if (!c->eof)
			bufferevent_enable(bev, EV_READ);
		/* What waited in the input buffer gets no new callback. */
		conn_read(c);
	}
}

/* The proxy closed its sending side and we have read everything. */
static void
conn_eof(struct dc_conn *c)
{
	uint8_t cnt[8];

	if (c->closing)
		return;
	switch (G.mode) {
	case MODE_SINK:
		fprintf(stderr, "fake_dc: conn %u sink received %" PRIu64 "\n",
		    c->id, c->received);
		for (int i = 0; i < 8; i++)
			cnt[i] = (c->received >> (8 * i)) & 0xff;
		if (!c->have_header || conn_send(c, cnt, sizeof(cnt)) == -1) {
			conn_fail(c, "cannot answer the count");
			return;
		}
		break;
	case MODE_PACKETS:
		if (peer_buf_size(&c->plain) > 0)
			fprintf(stderr,
			    "fake_dc: conn %u: %zu bytes of an "
			    "incomplete frame at EOF\n",
			    c->id, peer_buf_size(&c->plain));
		break;
	default:
		break;
	}
	conn_finish(c);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct dc_conn *c = arg;

	if (what & BEV_EVENT_EOF) {
		c->eof = 1;
		if (!c->have_header) {
			conn_fail(c, "closed before the header");
			return;
		}
		conn_read(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		char why[128];
		snprintf(why, sizeof(why), "socket error: %s",
		    strerror(EVUTIL_SOCKET_ERROR()));
		conn_fail(c, why);
	}
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != ECONNABORTED)
				fprintf(stderr, "fake_dc: accept: %s\n",
				    strerror(errno));
			return;
		}
		struct dc_conn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		peer_tcp_nodelay(fd);
		c->id = G.next_id++;
		c->bev =
		    bufferevent_socket_new(G.base, fd, BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL) {
			close(fd);
			free(c);
			continue;
		}
		bufferevent_set_max_single_read(c->bev, SCRATCH_LEN);
		bufferevent_set_max_single_write(c->bev, SCRATCH_LEN);
		bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
		bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	}
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: fake_dc --port P [--host H] "
	    "[--mode packets|echo|sink|source] [--source-bytes N]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'h' },
		{ "mode", required_argument, NULL, 'm' },
		{ "source-bytes", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "127.0.0.1";
	long port = -1;
	int ch;
	struct rlimit rl;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			port = strtol(optarg, NULL, 10);
			break;
		case 'h':
			host = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "packets") == 0)
				G.mode = MODE_PACKETS;
			else if (strcmp(optarg, "echo") == 0)
				G.mode = MODE_ECHO;
			else if (strcmp(optarg, "sink") == 0)
				G.mode = MODE_SINK;
			else if (strcmp(optarg, "source") == 0)
				G.mode = MODE_SOURCE;
			else
				usage();
			break;
		case 'n':
			G.source_bytes = strtoull(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (port < 0 || port > 65535 || optind != argc)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	G.scratch = malloc(SCRATCH_LEN);
	G.out = malloc(OUT_LEN);
	G.base = event_base_new();
	if (G.scratch == NULL || G.out == NULL || G.base == NULL) {
		fprintf(stderr, "fake_dc: out of memory\n");
		return 1;
	}
	uint16_t bound;
	int lfd = peer_listen(host, (uint16_t)port, &bound);
	if (lfd == -1) {
		fprintf(stderr, "fake_dc: listen on %s:%ld: %s\n", host, port,
		    strerror(errno));
		return 1;
	}
	struct event *lev =
	    event_new(G.base, lfd, EV_READ | EV_PERSIST, accept_cb, NULL);
	if (lev == NULL || event_add(lev, NULL) == -1) {
		fprintf(stderr, "fake_dc: event_add failed\n");
		return 1;
	}
	printf("READY %u\n", bound);
	fflush(stdout);
	event_base_dispatch(G.base);
	return 0;
}
