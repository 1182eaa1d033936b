/*
 * tclient: a Telegram app stand-in and load generator for the end-to-end
 * tests.
 *
 *	tclient --port P [--host H] --secret HEX32
 *	    --proto abridged|intermediate|secure|tls [--domain D] [--dc N]
 *	    [--conns N] [--test reqpq|echo|upload|download|probe]
 *	    [--bytes N] [--packet N] [--timeout S]
 *	    [--record FILE | --replay FILE] [--ts-offset S] [--hello-len N]
 *	    [--interval S] [--rounds N] [--hold S] [--quickack] [--tail HEX]
 *	    [--flight] [--record-sizes] [--dribble N]
 *
 * Each connection is built as an app builds it (spec A.2, A.3, A.4): fake
 * TLS waits for and checks the ServerHello before it sends the
 * ChangeCipherSpec and records of at most 2878 bytes. Tests:
 *	reqpq	 req_pq_multi, expects a resPQ with the same nonce;
 *	echo	 --bytes of deterministic data in packets of --packet bytes,
 *		 expects them back byte for byte (fake_dc packets or echo);
 *	upload	 --bytes raw, half-closes, expects fake_dc sink's count;
 *	download expects --bytes of fake_dc source's stream, then EOF;
 *	probe	 sends the first bytes only (ClientHello, or the header and a
 *		 req_pq_multi) and reports what came back, as --replay does;
 *		 with --flight, after a TLS answer (ours or a site's) first
 *		   FLIGHT version=V cipher=C group=G kslen=N ext=A,B
 *		     records=T,T,T app=BYTES apprecs=N wait_ms=MS segs=N
 *		     mss=N (the time from our ClientHello to the first
 *		     byte of the answer, the data segments it came in, our
 *		     send MSS: tcp_info)
 *		 (the ServerHello's fields and extension order, the content
 *		 types of the records, the application-data payload);
 *		 with --tail HEX the header is followed, in the same write or
 *		 record, by those plain bytes instead (encrypted with the
 *		 client's stream, not framed): a bad frame after a good
 *		 handshake;
 *	hold	 a long-lived idle client: a req_pq_multi right after the
 *		 handshake and then one every --interval seconds (default 1),
 *		 each answer checked, for --rounds rounds (default 3) or until
 *		 --hold seconds have passed, whichever comes first; with
 *		 --quickack every request asks for a quick ack. One line per
 *		 event on stdout:
 *		   RESPQ ok <conn> <round>
 *		   QUICKACK <confirm> raw <wire> conn <conn>
 *		 (confirm: the value frame_client_decode() reports, 8 hex
 *		 digits; wire: the 4 bytes as they arrived, in hex) and
 *		   CLOSED conn <conn> after <rounds> rounds
 *		 when the proxy closes the connection first;
 *	noread	 a client that never reads: packets of --packet bytes as fast
 *		 as the socket takes them (echo data, answered by an echoing
 *		 middle proxy) until the proxy closes the connection, then
 *		   CLOSED after <payload bytes sent>
 *		 success means the proxy closed it before --timeout.
 * --record-sizes (fake TLS): the payload sizes of the first 40 records
 * the proxy sent after the handshake, on one line for the first
 * connection: RECORDS n,n,...
 * --dribble N: every connection writes at most N bytes per millisecond,
 * each in a send of its own (TCP_NODELAY), handshake included, so the
 * proxy reads its stream cut at every offset.
 * With --conns N the connections run concurrently; the exit status is 0
 * only if all succeed, and one line sums them up:
 *	tclient: N/N ok, X bytes, T s
 * --record FILE keeps the first bytes the first connection sent;
 * --replay FILE sends exactly those bytes and reports, one line per
 * connection: GOT-SERVERHELLO, GOT-DATA <n> <hex>, CLOSED, RESET or
 * SILENT.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
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
#include "tls.h"
#include "util.h"

#define SCRATCH_LEN (256 * 1024)
/* Keep at most this much queued towards the proxy. */
#define OUT_HIGH (1024 * 1024)
#define OUT_LOW  (256 * 1024)
/* Probe: report once the server has been quiet this long after data. */
#define PROBE_QUIET_MS 700
#define PROBE_HEX_MAX  32
#define ECHO_SEED_BASE 0x6563686full
/* noread: how often to look whether the proxy has closed the socket. */
#define NOREAD_CHECK_MS     100
#define HOLD_ROUNDS_DEFAULT 3

enum test { T_REQPQ, T_ECHO, T_UPLOAD, T_DOWNLOAD, T_PROBE, T_HOLD, T_NOREAD };

enum state {
	S_CONNECTING,
	S_HELLO, /* ClientHello sent, waiting for the ServerHello */
	S_RUNNING,
	S_PROBE, /* first bytes sent, collecting the answer */
	S_DONE,
};

#define RECORD_SIZES_MAX 40

struct tconn {
	int idx;
	enum state state;
	/* --record-sizes: the proxy's records after the handshake */
	uint8_t rhdr[5];
	size_t rhl, rleft;
	uint16_t rsizes[RECORD_SIZES_MAX];
	size_t nrsizes;
	struct bufferevent *bev;
	struct event *quiet; /* probe */
	struct event *tick; /* hold, noread */
	struct peer_client pc;
	struct peer_buf hs; /* ServerHello so far / probe */
	struct peer_buf in; /* plaintext from the proxy */
	struct peer_buf plain; /* frames being built */
	struct peer_prng tx;
	struct peer_prng rx;
	uint64_t sent; /* payload bytes queued */
	uint64_t received; /* payload bytes verified */
	uint64_t packets; /* packets received */
	uint8_t nonce[PEER_NONCE_LEN];
	int shut; /* upload: write side closed */
	int ok;
	long rounds; /* hold: answers received */
	int outstanding; /* hold: a request unanswered */
	double started; /* hold: handshake done */
	double sent_at; /* hold: last request sent */
	double hello_at, first_at; /* probe: ClientHello sent, answer came */
};

static struct {
	const char *host;
	const char *source; /* --source: the address to connect from */
	/* --dribble N: write at most N bytes per millisecond, so that the
	 * proxy reads the stream in pieces cut everywhere. */
	size_t dribble;
	struct ev_token_bucket_cfg *dribble_cfg;
	long port;
	uint8_t secret[O2_SECRET_LEN];
	int proto;
	const char *domain;
	long dc;
	long conns;
	enum test test;
	uint64_t bytes;
	uint64_t packet;
	double timeout;
	const char *record;
	const char *replay;
	uint8_t *replay_buf;
	size_t replay_len;
	long ts_offset;
	long hello_len;
	uint8_t tail[256]; /* --tail: plain bytes after the header */
	size_t tail_len;
	double interval;
	long rounds;
	double hold;
	int quickack;
	int flight; /* --flight: a FLIGHT line after a probe */
	int record_sizes; /* --record-sizes */

	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct tconn *c;
	long finished;
	long nok;
	uint64_t total;
	uint8_t *scratch;
	uint8_t *pkt; /* one echo packet */
	int recorded;
} G;

static void conn_input(struct tconn *, uint8_t *, size_t);

/* ------------------------------------------------------------ life */

static void
conn_end(struct tconn *c)
{
	if (c->state == S_DONE)
		return;
	c->state = S_DONE;
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->quiet)
		event_free(c->quiet);
	c->quiet = NULL;
	if (c->tick)
		event_free(c->tick);
	c->tick = NULL;
	if (G.record_sizes && c->idx == 0 && c->nrsizes > 0) {
		printf("RECORDS");
		for (size_t i = 0; i < c->nrsizes; i++)
			printf("%c%u", i ? ',' : ' ', c->rsizes[i]);
		printf("\n");
	}
	peer_client_free(&c->pc);
	peer_buf_free(&c->hs);
	peer_buf_free(&c->in);
	peer_buf_free(&c->plain);
	G.total += c->received;
	if (c->ok)
		G.nok++;
	if (++G.finished == G.conns)
		event_base_loopexit(G.base, NULL);
}

static void __attribute__((format(printf, 2, 3)))
conn_fail(struct tconn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->state == S_DONE)
		return;
	fprintf(stderr, "tclient: conn %d (%s): ", c->idx,
	    peer_proto_name(G.proto));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	conn_end(c);
}

static void
conn_ok(struct tconn *c)
{
	c->ok = 1;
	conn_end(c);
}

/*
 * The shape of a TLS answer (ours or a site's), for the site-profile
 * tests: FLIGHT version=V cipher=C group=G kslen=N ext=A,B
 * records=22,20,23 app=BYTES apprecs=N
 */
static void
flight_report(struct tconn *c)
{
	const uint8_t *p = peer_buf_data(&c->hs);
	size_t len = peer_buf_size(&c->hs);
	struct tls_flight fl;
	/* struct tcp_info as the kernel fills it (glibc's is older):
	 * tcpi_snd_mss at 16, tcpi_data_segs_in at 152. */
	uint8_t ti[256] = { 0 };
	socklen_t til = sizeof(ti);
	uint32_t mss = 0, segs = 0;

	if (len == 0 || p[0] != 0x16 || tls_flight_parse(p, len, &fl) != 1)
		return;
	printf("FLIGHT version=0x%04x cipher=0x%04x group=0x%04x kslen=%u "
	       "ext=",
	    fl.version, fl.cipher, fl.group, fl.ks_len);
	for (size_t i = 0; i < fl.next; i++)
		printf("%s%u", i ? "," : "", fl.ext[i]);
	printf(" records=");
	for (size_t i = 0; i < fl.nrecords; i++)
		printf("%s%u", i ? "," : "", fl.records[i]);
	if (getsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_INFO, ti,
	        &til) == 0 &&
	    til >= 160) {
		memcpy(&mss, ti + 16, 4);
		memcpy(&segs, ti + 152, 4);
	}
	printf(" app=%u apprecs=%u wait_ms=%.3f segs=%u mss=%u\n", fl.app_bytes,
	    fl.app_records, (c->first_at - c->hello_at) * 1e3, segs, mss);
}

/* Probe and replay: one line on what the server did. */
static void
probe_report(struct tconn *c, const char *what)
{
	if (c->state == S_DONE)
		return;
	if (G.flight)
		flight_report(c);
	if (what != NULL)
		printf("%s\n", what);
	else if (peer_buf_size(&c->hs) == 0)
		printf("SILENT\n");
	else
		printf("GOT-DATA %zu %s\n", peer_buf_size(&c->hs),
		    peer_hex(peer_buf_data(&c->hs), peer_buf_size(&c->hs),
		        PROBE_HEX_MAX));
	fflush(stdout);
	c->ok = 1;
	conn_end(c);
}

/* ------------------------------------------------------------ sending */

static struct evbuffer *
out_of(struct tconn *c)
{
	return bufferevent_get_output(c->bev);
}

/*
 * Queue stream bytes that are already encrypted (the header as is, the
 * rest sealed): in records for fake TLS, raw otherwise.
 */
static void
queue_stream(struct tconn *c, const uint8_t *buf, size_t len)
{
	if (len == 0)
		return;
	if (G.proto == PEER_TLS) {
		struct peer_buf rec = { 0 };
		peer_client_wrap(buf, len, &rec);
		bufferevent_write(
		    c->bev, peer_buf_data(&rec), peer_buf_size(&rec));
		peer_buf_free(&rec);
	} else {
		bufferevent_write(c->bev, buf, len);
	}
}

/* Seal c->plain and queue it behind prefix (the header, or nothing). */
static int
flush_plain(struct tconn *c, const uint8_t *prefix, size_t prefixlen)
{
	size_t n = peer_buf_size(&c->plain);

	if (peer_client_seal(&c->pc, peer_buf_data(&c->plain), n) == -1)
		return -1;
	if (prefixlen) {
		struct peer_buf all = { 0 };
		peer_buf_append(&all, prefix, prefixlen);
		peer_buf_append(&all, peer_buf_data(&c->plain), n);
		queue_stream(c, peer_buf_data(&all), peer_buf_size(&all));
		peer_buf_free(&all);
	} else {
		queue_stream(c, peer_buf_data(&c->plain), n);
	}
	peer_buf_reset(&c->plain);
	return 0;
}

static uint64_t
echo_packet_len(uint64_t k)
{
	uint64_t off = k * G.packet;

	if (off >= G.bytes)
		return 0;
	return G.bytes - off < G.packet ? G.bytes - off : G.packet;
}

/*
 * A client-to-proxy frame like peer_client_frame(), but with the quick-ack
 * bit when asked (spec A.3.1, A.3.2).
 */
static int
frame_packet(struct tconn *c, const uint8_t *pkt, size_t pktlen, int quickack)
{
	uint8_t hdr[4];
	size_t padlen, hl;

	hl = frame_client_encode_header(
	    c->pc.kind, pktlen, quickack, hdr, &padlen);
	if (hl == 0)
		return -1;
	uint8_t *p = peer_buf_reserve(&c->plain, hl + pktlen + padlen);
	memcpy(p, hdr, hl);
	memcpy(p + hl, pkt, pktlen);
	if (padlen)
		random_bytes(p + hl + pktlen, padlen);
	peer_buf_commit(&c->plain, hl + pktlen + padlen);
	return 0;
}

/* noread: packets, forever, while the socket takes them. */
static void
pump_noread(struct tconn *c)
{
	while (evbuffer_get_length(out_of(c)) < OUT_HIGH) {
		peer_prng_fill(&c->tx, G.pkt, G.packet);
		if (peer_client_frame(&c->pc, G.pkt, G.packet, &c->plain) ==
		    -1) {
			conn_fail(
			    c, "cannot frame %" PRIu64 " bytes", G.packet);
			return;
		}
		c->sent += G.packet;
		if (peer_buf_size(&c->plain) >= 65536 &&
		    flush_plain(c, NULL, 0) == -1) {
			conn_fail(c, "encryption failed");
			return;
		}
	}
	if (peer_buf_size(&c->plain) > 0 && flush_plain(c, NULL, 0) == -1)
		conn_fail(c, "encryption failed");
}

/* hold: the next req_pq_multi, framed into c->plain. */
static int
hold_request(struct tconn *c)
{
	uint8_t req[PEER_REQ_PQ_LEN];

	random_bytes(c->nonce, sizeof(c->nonce));
	peer_req_pq(req, c->nonce);
	if (frame_packet(c, req, sizeof(req), G.quickack) == -1)
		return -1;
	c->outstanding = 1;
	c->sent_at = peer_now();
	c->sent += sizeof(req);
	return 0;
}

/* noread: report the end once the proxy closed (EOF, reset, error). */
static void
noread_closed(struct tconn *c)
{
	if (c->state == S_DONE)
		return;
	printf("CLOSED after %" PRIu64 "\n", c->sent);
	fflush(stdout);
	conn_ok(c);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tconn *c = arg;

	if (c->state != S_RUNNING)
		return;
	if (G.test == T_HOLD) {
		if (c->outstanding)
			return;
		if (hold_request(c) == -1 || flush_plain(c, NULL, 0) == -1)
			conn_fail(c, "cannot send a request");
		return;
	}
	/* noread: the socket is never read, so look at it from outside. */
	struct pollfd pfd = { bufferevent_getfd(c->bev), POLLRDHUP, 0 };
	if (poll(&pfd, 1, 0) == 1 &&
	    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		noread_closed(c);
		return;
	}
	struct timeval tv = { 0, NOREAD_CHECK_MS * 1000 };
	evtimer_add(c->tick, &tv);
}

/* Queue more test data while the output has room. */
static void
pump(struct tconn *c)
{
	if (c->state != S_RUNNING)
		return;
	if (G.test == T_NOREAD) {
		pump_noread(c);
		return;
	}
	while (c->sent < G.bytes && evbuffer_get_length(out_of(c)) < OUT_HIGH) {
		size_t n;
		if (G.test == T_ECHO) {
			n = echo_packet_len(c->sent / G.packet);
			peer_prng_fill(&c->tx, G.pkt, n);
			if (peer_client_frame(&c->pc, G.pkt, n, &c->plain) ==
			    -1) {
				conn_fail(c, "cannot frame %zu bytes", n);
				return;
			}
		} else if (G.test == T_UPLOAD) {
			n = G.bytes - c->sent < 65536 ? G.bytes - c->sent
			                              : 65536;
			peer_prng_fill(
			    &c->tx, peer_buf_reserve(&c->plain, n), n);
			peer_buf_commit(&c->plain, n);
		} else {
			return;
		}
		c->sent += n;
		if (peer_buf_size(&c->plain) >= 65536 || c->sent == G.bytes)
			if (flush_plain(c, NULL, 0) == -1) {
				conn_fail(c, "encryption failed");
				return;
			}
	}
}

/* The test's first bytes after the header, in c->plain. */
static void
test_first(struct tconn *c)
{
	uint8_t req[PEER_REQ_PQ_LEN];

	switch (G.test) {
	case T_PROBE:
		if (G.tail_len) {
			peer_buf_append(&c->plain, G.tail, G.tail_len);
			break;
		}
		__attribute__((fallthrough));
	case T_REQPQ:
		random_bytes(c->nonce, sizeof(c->nonce));
		peer_req_pq(req, c->nonce);
		peer_client_frame(&c->pc, req, sizeof(req), &c->plain);
		break;
	case T_ECHO:
		peer_prng_init(&c->tx, ECHO_SEED_BASE + c->idx);
		peer_prng_init(&c->rx, ECHO_SEED_BASE + c->idx);
		break;
	case T_UPLOAD:
		peer_prng_init(&c->tx, ECHO_SEED_BASE + c->idx);
		break;
	case T_DOWNLOAD:
		peer_prng_init(&c->rx, PEER_SOURCE_SEED);
		break;
	case T_HOLD:
		c->started = peer_now();
		if (hold_request(c) == -1)
			conn_fail(c, "cannot frame a request");
		break;
	case T_NOREAD: {
		struct timeval tv = { 0, NOREAD_CHECK_MS * 1000 };
		peer_prng_init(&c->tx, ECHO_SEED_BASE + c->idx);
		bufferevent_disable(c->bev, EV_READ);
		evtimer_add(c->tick, &tv);
		break;
	}
	}
}

static void
record_first(struct tconn *c, const uint8_t *buf, size_t len)
{
	FILE *f;

	if (G.record == NULL || G.recorded)
		return;
	G.recorded = 1;
	if ((f = fopen(G.record, "wb")) == NULL ||
	    fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "tclient: cannot write %s: %s\n", G.record,
		    strerror(errno));
		exit(2);
	}
}

/*
 * The header and the test's first bytes: right after connecting, or for
 * fake TLS once the ServerHello checked out.
 */
static void
start_stream(struct tconn *c)
{
	c->state = G.test == T_PROBE ? S_PROBE : S_RUNNING;
	if (G.proto == PEER_TLS)
		bufferevent_write(c->bev, peer_tls_ccs, sizeof(peer_tls_ccs));
	test_first(c);
	if (G.proto != PEER_TLS) {
		/* What an app sends first, as a censor would record it. */
		size_t n = peer_buf_size(&c->plain);
		struct peer_buf rec = { 0 };
		peer_buf_append(&rec, c->pc.header, O2_HEADER_LEN);
		peer_buf_append(&rec, peer_buf_data(&c->plain), n);
		if (peer_client_seal(&c->pc, rec.p + O2_HEADER_LEN, n) == -1) {
			conn_fail(c, "encryption failed");
			return;
		}
		record_first(c, peer_buf_data(&rec), peer_buf_size(&rec));
		bufferevent_write(
		    c->bev, peer_buf_data(&rec), peer_buf_size(&rec));
		peer_buf_free(&rec);
		peer_buf_reset(&c->plain);
	} else if (flush_plain(c, c->pc.header, O2_HEADER_LEN) == -1) {
		conn_fail(c, "encryption failed");
		return;
	}
	pump(c);
}

static void
on_connected(struct tconn *c)
{
	uint8_t hello[TLS_HELLO_MAX];

	peer_tcp_nodelay(bufferevent_getfd(c->bev));
	if (G.replay != NULL) {
		c->state = S_PROBE;
		bufferevent_write(c->bev, G.replay_buf, G.replay_len);
		return;
	}
	if (G.proto != PEER_TLS) {
		start_stream(c);
		return;
	}
	uint32_t ts = (uint32_t)(now_unix() + G.ts_offset);
	size_t n = peer_client_hello(
	    &c->pc, hello, sizeof(hello), G.domain, ts, (size_t)G.hello_len);
	if (n == 0) {
		conn_fail(
		    c, "cannot build a ClientHello of %ld bytes", G.hello_len);
		return;
	}
	record_first(c, hello, n);
	bufferevent_write(c->bev, hello, n);
	c->hello_at = peer_now();
	c->state = G.test == T_PROBE ? S_PROBE : S_HELLO;
}

/* ------------------------------------------------------------ receiving */

static void
got_packet(struct tconn *c, const uint8_t *pkt, size_t len)
{
	uint64_t want;
	size_t bad;

	c->packets++;
	switch (G.test) {
	case T_REQPQ:
		if (!peer_is_res_pq(pkt, len, c->nonce)) {
			conn_fail(c, "not a resPQ for our nonce: %zu bytes %s",
			    len, peer_hex(pkt, len, 32));
			return;
		}
		c->received += len;
		conn_ok(c);
		return;
	case T_ECHO:
		want = echo_packet_len(c->packets - 1);
		if (want == 0) {
			conn_fail(c,
			    "unexpected packet %" PRIu64 " (%zu "
			    "bytes) after all data",
			    c->packets, len);
			return;
		}
		/* Secure clients' 4, 8 or 12 padding bytes may stick
		 * (spec A.3.3), so the echo can be a little longer. */
		if (len < want || len > want + 12 ||
		    (len > want && G.proto != PEER_SECURE &&
		        G.proto != PEER_TLS)) {
			conn_fail(c,
			    "packet %" PRIu64 " is %zu bytes, sent "
			    "%" PRIu64,
			    c->packets, len, want);
			return;
		}
		if ((bad = peer_prng_check(&c->rx, pkt, want)) != 0) {
			conn_fail(c,
			    "packet %" PRIu64 " differs at byte %zu "
			    "(stream offset %" PRIu64 ")",
			    c->packets, bad - 1, c->received + bad - 1);
			return;
		}
		c->received += want;
		if (c->received == G.bytes)
			conn_ok(c);
		return;
	case T_HOLD: {
		if (!c->outstanding || !peer_is_res_pq(pkt, len, c->nonce)) {
			conn_fail(c,
			    "round %ld: not a resPQ for our nonce: "
			    "%zu bytes %s",
			    c->rounds + 1, len, peer_hex(pkt, len, 32));
			return;
		}
		c->outstanding = 0;
		c->rounds++;
		c->received += len;
		printf("RESPQ ok %d %ld\n", c->idx, c->rounds);
		fflush(stdout);
		double now = peer_now();
		if ((G.rounds > 0 && c->rounds >= G.rounds) ||
		    (G.hold > 0 && now - c->started >= G.hold)) {
			conn_ok(c);
			return;
		}
		double wait = c->sent_at + G.interval - now;
		if (wait < 0)
			wait = 0;
		struct timeval tv = { (time_t)wait,
			(suseconds_t)((wait - (time_t)wait) * 1e6) };
		evtimer_add(c->tick, &tv);
		return;
	}
	default:
		conn_fail(c, "unexpected packet");
	}
}

/* hold: a quick-ack answer, reported with the bytes as they came. */
static void
got_quickack(struct tconn *c, const struct frame_info *fi)
{
	if (G.test != T_HOLD)
		return;
	printf("QUICKACK %08" PRIx32 " raw %s conn %d\n", fi->confirm,
	    peer_hex(peer_buf_data(&c->in), 4, 4), c->idx);
	fflush(stdout);
}

static void
got_plain(struct tconn *c)
{
	struct frame_info fi;
	size_t bad;

	if (G.test == T_DOWNLOAD) {
		size_t n = peer_buf_size(&c->in);
		if (c->received + n > G.bytes) {
			conn_fail(c, "more than %" PRIu64 " bytes", G.bytes);
			return;
		}
		if ((bad = peer_prng_check(&c->rx, peer_buf_data(&c->in), n)) !=
		    0) {
			conn_fail(c, "download differs at byte %" PRIu64,
			    c->received + bad - 1);
			return;
		}
		c->received += n;
		peer_buf_reset(&c->in);
		return;
	}
	if (G.test == T_UPLOAD) {
		if (peer_buf_size(&c->in) < 8)
			return;
		const uint8_t *p = peer_buf_data(&c->in);
		uint64_t cnt = 0;
		for (int i = 7; i >= 0; i--)
			cnt = cnt << 8 | p[i];
		if (!c->shut || cnt != G.bytes || peer_buf_size(&c->in) != 8) {
			conn_fail(c,
			    "the DC counted %" PRIu64 " bytes of "
			    "%" PRIu64 " (%zu bytes of answer)",
			    cnt, G.bytes, peer_buf_size(&c->in));
			return;
		}
		c->received = cnt;
		conn_ok(c);
		return;
	}
	while (c->state == S_RUNNING) {
		int r = frame_client_decode(c->pc.kind, peer_buf_data(&c->in),
		    peer_buf_size(&c->in), &fi);
		if (r == FRAME_NEED_MORE)
			return;
		if (r == FRAME_ERROR) {
			conn_fail(c, "bad frame from the proxy: %s",
			    peer_hex(peer_buf_data(&c->in),
			        peer_buf_size(&c->in), 8));
			return;
		}
		if (fi.quickack)
			got_quickack(c, &fi);
		else if (fi.pktlen > 0)
			got_packet(
			    c, peer_buf_data(&c->in) + fi.hdrlen, fi.pktlen);
		if (c->state == S_DONE)
			return;
		peer_buf_consume(&c->in, fi.total);
	}
}

static void
probe_input(struct tconn *c, const uint8_t *buf, size_t len)
{
	size_t used;

	if (peer_buf_size(&c->hs) == 0)
		c->first_at = peer_now();
	peer_buf_append(&c->hs, buf, len);
	/* A fake-TLS answer is recognised by its HMAC (spec A.4.6). */
	const uint8_t *p = peer_buf_data(&c->hs);
	if (p[0] == 0x16 && (G.proto == PEER_TLS || G.replay != NULL) &&
	    peer_client_server_hello(&c->pc, p, peer_buf_size(&c->hs), &used) ==
	        1) {
		probe_report(c, "GOT-SERVERHELLO");
		return;
	}
	struct timeval tv = { PROBE_QUIET_MS / 1000,
		(PROBE_QUIET_MS % 1000) * 1000 };
	evtimer_add(c->quiet, &tv);
}

/* The payload sizes of the proxy's records, as they come. */
static void
note_records(struct tconn *c, const uint8_t *p, size_t len)
{
	while (len > 0) {
		if (c->rleft > 0) {
			size_t k = len < c->rleft ? len : c->rleft;

			c->rleft -= k;
			p += k;
			len -= k;
			continue;
		}
		c->rhdr[c->rhl++] = *p++;
		len--;
		if (c->rhl < 5)
			continue;
		c->rhl = 0;
		c->rleft = (size_t)c->rhdr[3] << 8 | c->rhdr[4];
		if (c->nrsizes < RECORD_SIZES_MAX)
			c->rsizes[c->nrsizes++] = (uint16_t)c->rleft;
	}
}

static void
conn_input(struct tconn *c, uint8_t *buf, size_t len)
{
	size_t used;

	switch (c->state) {
	case S_PROBE:
		probe_input(c, buf, len);
		return;
	case S_HELLO:
		peer_buf_append(&c->hs, buf, len);
		int r = peer_client_server_hello(&c->pc, peer_buf_data(&c->hs),
		    peer_buf_size(&c->hs), &used);
		if (r == 0)
			return;
		if (r == -1) {
			conn_fail(c, "not our ServerHello (%zu bytes): %s",
			    peer_buf_size(&c->hs),
			    peer_hex(peer_buf_data(&c->hs),
			        peer_buf_size(&c->hs), 32));
			return;
		}
		start_stream(c);
		if (c->state != S_RUNNING && c->state != S_PROBE)
			return;
		size_t rest = peer_buf_size(&c->hs) - used;
		uint8_t *more = peer_buf_data(&c->hs) + used;
		peer_buf_consume(&c->hs, peer_buf_size(&c->hs));
		if (rest > 0 && c->state == S_RUNNING) {
			/* hs keeps its memory until conn_end. */
			conn_input(c, more, rest);
		}
		return;
	case S_RUNNING: {
		if (G.record_sizes && G.proto == PEER_TLS)
			note_records(c, buf, len);
		ssize_t n = peer_client_open(&c->pc, buf, len);
		if (n < 0) {
			conn_fail(c, "bad TLS record from the proxy");
			return;
		}
		peer_buf_append(&c->in, buf, (size_t)n);
		got_plain(c);
		return;
	}
	default:
		return;
	}
}

/* ------------------------------------------------------------ events */

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct tconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (c->state != S_DONE && evbuffer_get_length(in) > 0) {
		int n = evbuffer_remove(in, G.scratch, SCRATCH_LEN);
		if (n <= 0)
			break;
		conn_input(c, G.scratch, (size_t)n);
	}
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct tconn *c = arg;

	if (c->state != S_RUNNING)
		return;
	pump(c);
	if (c->state == S_RUNNING && G.test == T_UPLOAD && !c->shut &&
	    c->sent == G.bytes && evbuffer_get_length(out_of(c)) == 0) {
		/* All sent: the DC answers the count at EOF. */
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		c->shut = 1;
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct tconn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		on_connected(c);
		return;
	}
	if (c->state == S_RUNNING && G.test == T_NOREAD &&
	    (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
		noread_closed(c);
		return;
	}
	if (c->state == S_RUNNING && G.test == T_HOLD &&
	    (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
		printf("CLOSED conn %d after %ld rounds\n", c->idx, c->rounds);
		fflush(stdout);
	}
	if (c->state == S_PROBE) {
		if (peer_buf_size(&c->hs) == 0)
			probe_report(c,
			    (what & BEV_EVENT_ERROR) &&
			            EVUTIL_SOCKET_ERROR() == ECONNRESET
			        ? "RESET"
			        : "CLOSED");
		else
			probe_report(c, NULL);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		if (c->state == S_RUNNING && G.test == T_DOWNLOAD &&
		    c->received == G.bytes) {
			conn_ok(c);
			return;
		}
		if (c->state == S_HELLO)
			conn_fail(c,
			    "closed during the handshake, after %zu "
			    "bytes: %s",
			    peer_buf_size(&c->hs),
			    peer_hex(peer_buf_data(&c->hs),
			        peer_buf_size(&c->hs), 32));
		else
			conn_fail(c,
			    "closed by the proxy after sending %" PRIu64
			    " and receiving %" PRIu64 " bytes",
			    c->sent, c->received);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		conn_fail(c, "%s: %s",
		    c->state == S_CONNECTING ? "connect" : "socket error",
		    strerror(EVUTIL_SOCKET_ERROR()));
}

static void
quiet_cb(evutil_socket_t fd, short what, void *arg)
{
	probe_report(arg, NULL);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char *const names[] = {
		[S_CONNECTING] = "connecting",
		[S_HELLO] = "waiting for the ServerHello",
		[S_RUNNING] = "running",
		[S_PROBE] = "probing",
		[S_DONE] = "done",
	};

	for (long i = 0; i < G.conns; i++) {
		struct tconn *c = &G.c[i];
		if (c->state == S_PROBE)
			probe_report(c, NULL);
		else if (c->state != S_DONE)
			conn_fail(c,
			    "timeout while %s: sent %" PRIu64
			    ", received %" PRIu64 " bytes",
			    names[c->state], c->sent, c->received);
	}
	event_base_loopexit(G.base, NULL);
}

static int
conn_start(struct tconn *c, int idx)
{
	memset(c, 0, sizeof(*c));
	c->idx = idx;
	if (peer_client_init(&c->pc, G.proto, G.secret, (int16_t)G.dc) == -1)
		return -1;
	if (G.replay != NULL && G.replay_len > TLS_RANDOM_OFF + TLS_RANDOM_LEN)
		memcpy(c->pc.client_random, G.replay_buf + TLS_RANDOM_OFF,
		    TLS_RANDOM_LEN);
	c->quiet = evtimer_new(G.base, quiet_cb, c);
	c->tick = evtimer_new(G.base, tick_cb, c);
	int fd = -1;
	if (G.source != NULL) {
		/* --source: connect from that address (127.0.0.0/8 is all
		 * ours on Linux), for tests of per-address limits. */
		struct sockaddr_storage src;
		socklen_t srclen;
		if (peer_addr(G.source, 0, &src, &srclen) == -1)
			return -1;
		fd = socket(src.ss_family, SOCK_STREAM, 0);
		if (fd == -1 || evutil_make_socket_nonblocking(fd) == -1 ||
		    bind(fd, (struct sockaddr *)&src, srclen) == -1) {
			fprintf(stderr, "tclient: bind %s: %s\n", G.source,
			    strerror(errno));
			return -1;
		}
	}
	c->bev = bufferevent_socket_new(G.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->quiet == NULL || c->tick == NULL || c->bev == NULL)
		return -1;
	bufferevent_set_max_single_read(c->bev, SCRATCH_LEN);
	bufferevent_set_max_single_write(
	    c->bev, G.dribble ? G.dribble : SCRATCH_LEN);
	if (G.dribble_cfg &&
	    bufferevent_set_rate_limit(c->bev, G.dribble_cfg) == -1)
		return -1;
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(
	        c->bev, (struct sockaddr *)&G.addr, (int)G.addrlen) == -1) {
		conn_fail(c, "connect: %s", strerror(errno));
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------ main */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: tclient --port P [--host H] [--source A] --secret HEX32 "
	    "--proto abridged|intermediate|secure|tls\n"
	    "\t[--domain D] [--dc N] [--conns N] "
	    "[--test reqpq|echo|upload|download|probe|hold|noread]\n"
	    "\t[--bytes N] [--packet N] [--timeout S] "
	    "[--record FILE | --replay FILE]\n"
	    "\t[--ts-offset S] [--hello-len N] [--interval S] [--rounds N]\n"
	    "\t[--hold S] [--quickack] [--tail HEX] [--dribble N]\n");
	exit(2);
}

static void
read_replay(void)
{
	FILE *f = fopen(G.replay, "rb");
	size_t cap = 1 << 20;

	G.replay_buf = malloc(cap);
	if (f == NULL || G.replay_buf == NULL) {
		fprintf(stderr, "tclient: %s: %s\n", G.replay, strerror(errno));
		exit(2);
	}
	G.replay_len = fread(G.replay_buf, 1, cap, f);
	fclose(f);
	if (G.replay_len == 0) {
		fprintf(stderr, "tclient: %s is empty\n", G.replay);
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "source", required_argument, NULL, 'S' },
		{ "secret", required_argument, NULL, 's' },
		{ "proto", required_argument, NULL, 'P' },
		{ "domain", required_argument, NULL, 'd' },
		{ "dc", required_argument, NULL, 'D' },
		{ "conns", required_argument, NULL, 'c' },
		{ "test", required_argument, NULL, 't' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "packet", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "record", required_argument, NULL, 'r' },
		{ "replay", required_argument, NULL, 'R' },
		{ "ts-offset", required_argument, NULL, 'o' },
		{ "hello-len", required_argument, NULL, 'l' },
		{ "interval", required_argument, NULL, 'I' },
		{ "rounds", required_argument, NULL, 'N' },
		{ "hold", required_argument, NULL, 'L' },
		{ "quickack", no_argument, NULL, 'Q' },
		{ "tail", required_argument, NULL, 'X' },
		{ "flight", no_argument, NULL, 'F' },
		{ "record-sizes", no_argument, NULL, 'Z' },
		{ "dribble", required_argument, NULL, 'B' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const tests[] = { "reqpq", "echo", "upload",
		"download", "probe", "hold", "noread" };
	const char *secret = NULL;
	struct rlimit rl;
	int ch;

	G.host = "127.0.0.1";
	G.port = -1;
	G.proto = -1;
	G.domain = "www.example.com";
	G.dc = 2;
	G.conns = 1;
	G.bytes = 1 << 20;
	G.packet = 16384;
	G.timeout = 60;
	G.hello_len = TLS_HELLO_CLASSIC_LEN;
	G.interval = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			G.port = strtol(optarg, NULL, 10);
			break;
		case 'H':
			G.host = optarg;
			break;
		case 'S':
			G.source = optarg;
			break;
		case 's':
			secret = optarg;
			break;
		case 'P':
			G.proto = peer_proto_from_name(optarg);
			break;
		case 'd':
			G.domain = optarg;
			break;
		case 'D':
			G.dc = strtol(optarg, NULL, 10);
			break;
		case 'c':
			G.conns = strtol(optarg, NULL, 10);
			break;
		case 't':
			G.test = (enum test) - 1;
			for (size_t i = 0; i < nitems(tests); i++)
				if (strcmp(optarg, tests[i]) == 0)
					G.test = (enum test)i;
			if ((int)G.test == -1)
				usage();
			break;
		case 'b':
			G.bytes = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			G.packet = strtoull(optarg, NULL, 10);
			break;
		case 'T':
			G.timeout = strtod(optarg, NULL);
			break;
		case 'r':
			G.record = optarg;
			break;
		case 'R':
			G.replay = optarg;
			break;
		case 'B': {
			G.dribble = strtoull(optarg, NULL, 10);
			struct timeval ms = { 0, 1000 };
			if (G.dribble == 0 ||
			    (G.dribble_cfg = ev_token_bucket_cfg_new(
			         EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX,
			         G.dribble, G.dribble, &ms)) == NULL)
				usage();
			break;
		}
		case 'o':
			G.ts_offset = strtol(optarg, NULL, 10);
			break;
		case 'X':
			G.tail_len = strlen(optarg) / 2;
			if (G.tail_len == 0 || G.tail_len > sizeof(G.tail) ||
			    hex_decode(optarg, G.tail, G.tail_len) == -1)
				usage();
			break;
		case 'l':
			G.hello_len = strtol(optarg, NULL, 10);
			break;
		case 'I':
			G.interval = strtod(optarg, NULL);
			break;
		case 'N':
			G.rounds = strtol(optarg, NULL, 10);
			break;
		case 'L':
			G.hold = strtod(optarg, NULL);
			break;
		case 'F':
			G.flight = 1;
			break;
		case 'Z':
			G.record_sizes = 1;
			break;
		case 'Q':
			G.quickack = 1;
			break;
		default:
			usage();
		}
	}
	if (G.port < 1 || G.port > 65535 || optind != argc || secret == NULL ||
	    hex_decode(secret, G.secret, 16) == -1 || G.proto < 0 ||
	    G.conns < 1 || G.conns > 100000 || G.dc < -32768 || G.dc > 32767 ||
	    G.timeout <= 0 || (G.record && G.replay) || G.interval < 0 ||
	    G.rounds < 0 || G.hold < 0)
		usage();
	if (G.test == T_HOLD && G.rounds == 0 && G.hold == 0)
		G.rounds = HOLD_ROUNDS_DEFAULT;
	/* Packets are whole 32-bit words (spec A.3). */
	G.packet = (G.packet + 3) & ~(uint64_t)3;
	G.bytes = (G.bytes + 3) & ~(uint64_t)3;
	if (G.packet == 0 || G.packet > FRAME_MAX_PACKET - 16 ||
	    (G.test == T_ECHO && G.bytes == 0)) {
		fprintf(stderr, "tclient: bad --packet or --bytes\n");
		return 2;
	}
	if (G.replay)
		read_replay();
	if (peer_addr(G.host, (uint16_t)G.port, &G.addr, &G.addrlen) == -1) {
		fprintf(stderr, "tclient: bad host %s\n", G.host);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	G.scratch = malloc(SCRATCH_LEN);
	G.pkt = malloc(G.packet);
	G.c = calloc(G.conns, sizeof(*G.c));
	G.base = event_base_new();
	if (G.scratch == NULL || G.pkt == NULL || G.c == NULL ||
	    G.base == NULL) {
		fprintf(stderr, "tclient: out of memory\n");
		return 2;
	}
	double t0 = peer_now();
	struct timeval tv = { (time_t)G.timeout,
		(suseconds_t)((G.timeout - (time_t)G.timeout) * 1e6) };
	struct event *tev = evtimer_new(G.base, timeout_cb, NULL);
	evtimer_add(tev, &tv);
	for (long i = 0; i < G.conns; i++)
		if (conn_start(&G.c[i], (int)i) == -1) {
			fprintf(stderr,
			    "tclient: cannot set up connection "
			    "%ld\n",
			    i);
			return 2;
		}
	if (G.finished < G.conns)
		event_base_dispatch(G.base);
	/* Fired or not, nothing else refers to it now. */
	event_free(tev);
	int probing = G.test == T_PROBE || G.replay != NULL;
	if (!probing)
		printf("tclient: %ld/%ld ok, %" PRIu64 " bytes, %.2f s\n",
		    G.nok, G.conns, G.total, peer_now() - t0);
	fflush(stdout);
	return G.nok == G.conns ? 0 : 1;
}
