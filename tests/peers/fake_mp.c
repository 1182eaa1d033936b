/*
 * fake_mp: a stand-in for Telegram's middle proxies (the ME end of the RPC
 * links, spec B.2), for the end-to-end tests and the benchmarks.
 *
 *	fake_mp --port P [--host 127.0.0.1] --secret-file F
 *	    [--control-port C] [--no-pong] [--crc32c]
 *	    [--mode echo|sink|source] [--out-high B] [--out-low B]
 *	    [--seen-ip ADDR] [--verbose]
 *
 * Listens, prints "READY <port> <control_port>" on stdout (port 0 picks a
 * free one) and serves every link as an ME does: the plaintext RPC_NONCE
 * exchange (B.2.4), the key derivation from the ME's side (B.2.5), the
 * encrypted RPC_HANDSHAKE (B.2.6), then the messages of B.2.7 and B.2.8:
 *	RPC_PROXY_REQ	recorded per conn_id; an unencrypted req_pq_multi
 *			gets a resPQ, any other packet is echoed back in an
 *			RPC_PROXY_ANS (mode echo), dropped (mode sink), or
 *			in mode source, if it is a source request (below),
 *			answered with pattern data, else dropped;
 *	RPC_CLOSE_CONN	marks the conn_id closed;
 *	RPC_PING	answered with RPC_PONG (unless --no-pong);
 *	RPC_PONG	counted;
 * anything else, or any framing or crypto error, closes the link.
 *
 * --crc32c: answer a proxy that asks for CRC32C (the RPC_HANDSHAKE flag,
 * B.2.6) with the flag, and use it on that link; never asked for by
 * fake_mp itself (it only answers).
 *
 * --out-high B: stop reading a link while B bytes (default 8 MiB) to it
 * are queued here, unsent; read again once at most --out-low B (default
 * a quarter of --out-high) are. --out-low equal to --out-high: read
 * whenever fewer than B bytes are queued.
 *
 * Mode source (the benchmarks' download): a source request is a client
 * packet (in an RPC_PROXY_REQ) of 56 bytes or more that looks encrypted
 * to the proxy (spec A.3.4: non-zero auth_key_id, a multiple of 4):
 *	0	8 bytes	"SRCREQ01" (the auth_key_id)
 *	8	LE64	bytes wanted, a multiple of 4 (more are added to
 *			what the conn still has to get)
 *	16	LE32	bytes per answer, a multiple of 4, 56..65536;
 *			0 = 16384
 *	20	36 bytes	zero (ignored)
 * fake_mp then sends that conn RPC_PROXY_ANSs of that many bytes (the
 * last one shorter if need be) carrying the bench pattern (byte p of the
 * conn's answers is bench_pattern[p % BENCH_PATTERN_LEN],
 * tests/bench/bench.h), round robin over the conns of a link, as the
 * link drains: no more than a little over min(--out-high, 1 MiB) is ever
 * queued for a link. RPC_CLOSE_CONN or the link's end stops a conn's
 * data. The stats' "src_bytes" counts the data bytes sent.
 *
 * --seen-ip: derive the keys with ADDR as the proxy's address (its real
 * port kept), as a middle proxy does that sees the proxy through NAT; a
 * proxy that derives them with another address fails the handshake.
 *
 * The control port (127.0.0.1, one command per line, one JSON line back):
 *	stats			links, conns and counters;
 *	rotate [INDEX|all]	close a link (all when no index), as
 *				Telegram rotates them; {"closed": n};
 *	ack CONN CONFIRM	RPC_SIMPLE_ACK on CONN's link; CONFIRM is the
 *				LE32 value as a hex number (0x11223344 goes
 *				on the wire as 44 33 22 11);
 *	close_ext CONN		RPC_CLOSE_EXT for CONN;
 *	ping			RPC_PING on every ready link;
 *	hold 0|1		stop / resume reading every link (a stuck ME);
 *	reset			forget the conns, zero the counters.
 * CONN is the conn_id as a hex number ("%016llx" in stats, 0x optional).
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
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "crypto.h"
#include "peer.h"
#include "rpc.h"
#include "tests/bench/bench.h"
#include "util.h"

#define READ_CHUNK      (256 * 1024)
#define READS_PER_EVENT 8 /* then let other links run */
/* Stop reading a link whose output backs up beyond this (defaults of
 * --out-high, --out-low). */
#define OUT_HIGH (8 * 1024 * 1024)
/* Source mode: fill a link's output up to min(out_high, SRC_FILL), and
 * at most SRC_PER_CALL bytes per flush (then other events run). */
#define SRC_FILL     (1024 * 1024)
#define SRC_PER_CALL (4 * 1024 * 1024)
#define SRC_MAGIC    "SRCREQ01"
#define SRC_REQ_LEN  56
#define SRC_PKT_DEF  16384
#define SRC_PKT_MAX  BENCH_PATTERN_LEN
#define CONN_BUCKETS 65536
#define CTL_LINE_MAX 1024

enum mode { MODE_ECHO, MODE_SINK, MODE_SOURCE };

enum link_state { LINK_NONCE, LINK_HANDSHAKE, LINK_READY };

static const char *const state_names[] = {
	[LINK_NONCE] = "nonce",
	[LINK_HANDSHAKE] = "handshake",
	[LINK_READY] = "ready",
};

struct mp_link {
	struct mp_link *next, *prev;
	unsigned index;
	int fd;
	enum link_state state;
	struct event *rev;
	struct event *wev;
	int reading; /* rev is added */
	int writing; /* wev is added */
	int full; /* output over out_high */
	/* Source mode: the conns with data to get, round robin. */
	struct mp_conn *src_head, *src_tail;
	/* Input: the first `dec` bytes of the data are plaintext. */
	struct peer_buf in;
	size_t dec;
	uint64_t in_pos; /* stream bytes consumed */
	int ciphered; /* decryption has begun */
	struct peer_buf out;
	struct rpc_decoder nonce_rx;
	struct rpc_link rl;
	int have_rl;
	int crc32c;
	struct sockaddr_storage me, px;
	char px_str[ADDR_STRLEN];
};

struct mp_conn {
	struct mp_conn *hnext; /* hash chain */
	struct mp_conn *lnext; /* in order of creation */
	uint64_t id;
	unsigned link;
	uint32_t flags; /* of the latest packet */
	uint32_t flags_seen; /* OR of all packets' */
	int has_tag;
	uint8_t tag[RPC_AD_TAG_LEN];
	char client[ADDR_STRLEN];
	char proxy[ADDR_STRLEN];
	uint64_t packets;
	uint64_t bytes;
	uint64_t after_close; /* packets after CLOSE_CONN */
	int closed; /* CLOSE_CONN received */
	int ext_closed; /* CLOSE_EXT sent */
	/* Source mode: bytes still to send, sent so far, per answer. */
	uint64_t src_left, src_pos;
	uint32_t src_pkt;
	int src_queued; /* on its link's source list */
	struct mp_conn *src_next;
};

struct ctl_client {
	struct bufferevent *bev;
};

static struct {
	struct event_base *base;
	enum mode mode;
	int no_pong;
	int crc32c;
	int verbose;
	const char *seen_ip; /* --seen-ip, or NULL */
	int hold;
	size_t out_high, out_low;
	uint8_t secret[RPC_SECRET_MAX];
	size_t secret_len;
	uint32_t start_time;
	unsigned next_index;
	struct mp_link *links;
	unsigned nlinks;
	struct mp_conn *conn_tab[CONN_BUCKETS];
	struct mp_conn *conn_head, **conn_tail;
	uint64_t nconns;
	uint64_t pongs;
	uint64_t pings;
	uint64_t pings_answered;
	uint64_t closes;
	uint64_t packets;
	uint64_t bytes;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t src_bytes; /* source mode: data bytes sent */
} G;

static void link_update_read(struct mp_link *);
static int link_produce(struct mp_link *, size_t *budget);

/* ------------------------------------------------------------ conns */

static unsigned
conn_hash(uint64_t id)
{
	return (unsigned)((id * 0x9e3779b97f4a7c15ull) >> 48) % CONN_BUCKETS;
}

static struct mp_conn *
conn_find(uint64_t id)
{
	struct mp_conn *c;

	for (c = G.conn_tab[conn_hash(id)]; c != NULL; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

static struct mp_conn *
conn_add(uint64_t id)
{
	struct mp_conn *c = calloc(1, sizeof(*c));
	unsigned h = conn_hash(id);

	if (c == NULL)
		abort();
	c->id = id;
	c->hnext = G.conn_tab[h];
	G.conn_tab[h] = c;
	*G.conn_tail = c;
	G.conn_tail = &c->lnext;
	G.nconns++;
	return c;
}

static void
conns_clear(void)
{
	struct mp_conn *c, *n;
	struct mp_link *l;

	for (l = G.links; l != NULL; l = l->next)
		l->src_head = l->src_tail = NULL;
	for (c = G.conn_head; c != NULL; c = n) {
		n = c->lnext;
		free(c);
	}
	memset(G.conn_tab, 0, sizeof(G.conn_tab));
	G.conn_head = NULL;
	G.conn_tail = &G.conn_head;
	G.nconns = 0;
}

static void
ip16_str(const uint8_t ip[16], uint32_t port, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sslen;

	rpc_addr_from_ip16(ip, port, &ss, &sslen);
	addr_str((struct sockaddr *)&ss, buf, len);
}

/* ------------------------------------------------------------ links */

static void
link_free(struct mp_link *l)
{
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		G.links = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	G.nlinks--;
	while (l->src_head != NULL) {
		struct mp_conn *c = l->src_head;
		l->src_head = c->src_next;
		c->src_next = NULL;
		c->src_queued = 0;
		c->src_left = 0;
	}
	event_free(l->rev);
	event_free(l->wev);
	close(l->fd);
	peer_buf_free(&l->in);
	peer_buf_free(&l->out);
	if (l->have_rl)
		rpc_link_free(&l->rl);
	free(l);
}

static void
link_close(struct mp_link *l, const char *why)
{
	fprintf(stderr, "fake_mp: link %u (%s): closed: %s\n", l->index,
	    l->px_str, why);
	link_free(l);
}

/*
 * Writes what it can without blocking. -1 on a socket error (the caller
 * frees the link).
 */
static int
link_flush(struct mp_link *l)
{
	size_t budget = SRC_PER_CALL;
	int more = 0; /* source data left to produce */

	for (;;) {
		if (l->src_head != NULL &&
		    (more = link_produce(l, &budget)) == -1)
			return -1;
		if (peer_buf_size(&l->out) == 0)
			break;
		ssize_t n = write(
		    l->fd, peer_buf_data(&l->out), peer_buf_size(&l->out));
		if (n > 0) {
			peer_buf_consume(&l->out, (size_t)n);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		return -1;
	}
	/* Source data left over (budget spent): the write event comes back
	 * at once while the socket takes data. */
	more = more || (l->src_head != NULL && budget == 0);
	if ((peer_buf_size(&l->out) > 0 || more) && !l->writing) {
		event_add(l->wev, NULL);
		l->writing = 1;
	} else if (peer_buf_size(&l->out) == 0 && !more && l->writing) {
		event_del(l->wev);
		l->writing = 0;
	}
	link_update_read(l);
	return 0;
}

/* Reads while nobody holds the link and its output is not backed up. */
static void
link_update_read(struct mp_link *l)
{
	size_t queued = peer_buf_size(&l->out);
	int want;

	if (queued >= G.out_high)
		l->full = 1;
	else if (queued < G.out_low ||
	    (queued == G.out_low && G.out_low < G.out_high))
		l->full = 0;
	want = !G.hold && !l->full;
	if (want && !l->reading) {
		event_add(l->rev, NULL);
		l->reading = 1;
	} else if (!want && l->reading) {
		event_del(l->rev);
		l->reading = 0;
	}
}

/* Seals an encrypted frame of len payload bytes already at frame + 8. */
static int
link_seal(struct mp_link *l, size_t cap, size_t len)
{
	uint8_t *frame = peer_buf_data(&l->out) + peer_buf_size(&l->out);
	size_t n = rpc_link_seal(&l->rl, frame, cap, len);

	if (n == 0)
		return -1;
	peer_buf_commit(&l->out, n);
	G.bytes_out += n;
	return 0;
}

static int
link_send(struct mp_link *l, const uint8_t *payload, size_t len)
{
	size_t cap = RPC_FRAME_SPACE(len);
	uint8_t *frame = peer_buf_reserve(&l->out, cap);

	memcpy(frame + RPC_FRAME_HDR, payload, len);
	return link_seal(l, cap, len);
}

/* An RPC_PROXY_ANS with a copy of data; one copy, then CBC in place. */
static int
link_send_ans(
    struct mp_link *l, uint64_t conn_id, const uint8_t *data, size_t len)
{
	size_t cap = RPC_FRAME_SPACE(RPC_PROXY_ANS_HDR + len);
	uint8_t *frame = peer_buf_reserve(&l->out, cap);
	size_t n = rpc_proxy_ans_build(
	    frame + RPC_FRAME_HDR, cap - RPC_FRAME_HDR, 0, conn_id, data, len);

	if (n == 0)
		return -1;
	return link_seal(l, cap, n);
}

/*
 * Source mode: queue answers round robin over the link's source conns
 * while less than min(out_high, SRC_FILL) is queued and *budget lasts.
 * 1 if a conn still has data to get and the budget ran out, 0 if not, -1
 * if a frame could not be built (the caller closes the link).
 */
static int
link_produce(struct mp_link *l, size_t *budget)
{
	size_t fill = G.out_high < SRC_FILL ? G.out_high : SRC_FILL;

	while (l->src_head != NULL && peer_buf_size(&l->out) < fill) {
		struct mp_conn *c = l->src_head;
		size_t n =
		    c->src_left < c->src_pkt ? (size_t)c->src_left : c->src_pkt;
		if (*budget == 0)
			return 1;
		if (link_send_ans(l, c->id,
		        bench_pattern + c->src_pos % BENCH_PATTERN_LEN,
		        n) == -1)
			return -1;
		c->src_pos += n;
		c->src_left -= n;
		G.src_bytes += n;
		*budget = *budget > n ? *budget - n : 0;
		l->src_head = c->src_next;
		if (l->src_head == NULL)
			l->src_tail = NULL;
		c->src_next = NULL;
		c->src_queued = 0;
		if (c->src_left > 0) {
			/* To the back of the line. */
			if (l->src_tail != NULL)
				l->src_tail->src_next = c;
			else
				l->src_head = c;
			l->src_tail = c;
			c->src_queued = 1;
		}
	}
	return 0;
}

/* Takes c off its link's source list (RPC_CLOSE_CONN). */
static void
src_stop(struct mp_conn *c)
{
	struct mp_link *l;
	struct mp_conn **pp, *prev = NULL;

	c->src_left = 0;
	if (!c->src_queued)
		return;
	for (l = G.links; l != NULL; l = l->next) {
		for (pp = &l->src_head; *pp != NULL;
		     prev = *pp, pp = &(*pp)->src_next) {
			if (*pp != c)
				continue;
			*pp = c->src_next;
			if (l->src_tail == c)
				l->src_tail = prev;
			c->src_next = NULL;
			c->src_queued = 0;
			return;
		}
		prev = NULL;
	}
}

/*
 * A source request (see the top comment): 1 if the packet is one (the
 * conn then has data to get), 0 if not, -1 if it is malformed.
 */
static int
src_request(struct mp_link *l, struct mp_conn *c, const uint8_t *p, size_t len)
{
	uint64_t want;
	uint32_t pkt;

	if (len < SRC_REQ_LEN || memcmp(p, SRC_MAGIC, 8) != 0)
		return 0;
	want = get_le64(p + 8);
	pkt = get_le32(p + 16);
	if (pkt == 0)
		pkt = SRC_PKT_DEF;
	if (want % 4 != 0 || pkt % 4 != 0 || pkt < 56 || pkt > SRC_PKT_MAX)
		return -1;
	if (c->closed || want == 0)
		return 1;
	c->src_pkt = pkt;
	c->src_left = want > UINT64_MAX - c->src_left ? UINT64_MAX & ~3ull
	                                              : c->src_left + want;
	if (!c->src_queued) {
		if (l->src_tail != NULL)
			l->src_tail->src_next = c;
		else
			l->src_head = c;
		l->src_tail = c;
		c->src_queued = 1;
	}
	return 1;
}

static int
on_nonce(struct mp_link *l, const struct rpc_frame *f)
{
	struct rpc_nonce n;
	struct rpc_kdf_params kp;
	struct sockaddr_storage seen;
	struct rpc_link_keys keys;
	uint8_t nonce_srv[16], payload[RPC_NONCE_LEN], *frame;
	uint32_t ts = (uint32_t)now_unix();
	const char *err;
	size_t len;
	int rc;

	if (rpc_nonce_parse(f->payload, f->len, &n) == -1) {
		link_close(l, "malformed RPC_NONCE");
		return -1;
	}
	/* The same checks an ME makes of the proxy's nonce. */
	if (rpc_nonce_check(&n, G.secret, G.secret_len, ts, RPC_NONCE_MAX_SKEW,
	        &err) == -1) {
		link_close(l, err);
		return -1;
	}
	random_bytes(nonce_srv, sizeof(nonce_srv));
	len = rpc_nonce_build(
	    payload, sizeof(payload), G.secret, G.secret_len, ts, nonce_srv);
	frame = peer_buf_reserve(&l->out, RPC_FRAME_SPACE(len));
	len = rpc_frame_encode(
	    frame, RPC_FRAME_SPACE(len), RPC_SEQ_NONCE, payload, len, 0);
	if (len == 0) {
		link_close(l, "cannot build the nonce answer");
		return -1;
	}
	peer_buf_commit(&l->out, len);
	G.bytes_out += len;

	memset(&kp, 0, sizeof(kp));
	kp.nonce_srv = nonce_srv;
	kp.nonce_clt = n.nonce;
	kp.clt_ts = n.ts;
	kp.me_addr = (struct sockaddr *)&l->me;
	kp.proxy_addr = (struct sockaddr *)&l->px;
	if (G.seen_ip != NULL) {
		uint16_t port = l->px.ss_family == AF_INET
		    ? ntohs(((struct sockaddr_in *)&l->px)->sin_port)
		    : ntohs(((struct sockaddr_in6 *)&l->px)->sin6_port);
		socklen_t sl;

		if (addr_from_ip_port(G.seen_ip, port, &seen, &sl) == -1) {
			link_close(l, "bad --seen-ip");
			return -1;
		}
		kp.proxy_addr = (struct sockaddr *)&seen;
	}
	kp.secret = G.secret;
	kp.secret_len = G.secret_len;
	rc = rpc_link_keys_derive(&keys, &kp, 1);
	if (rc == 0)
		rc = rpc_link_restore(&l->rl, &keys, RPC_FRAME_MAX_DEFAULT);
	OPENSSL_cleanse(&keys, sizeof(keys));
	if (rc == -1) {
		link_close(l, "key derivation failed");
		return -1;
	}
	l->have_rl = 1;
	l->state = LINK_HANDSHAKE;
	return 0;
}

static int
on_handshake(struct mp_link *l, const struct rpc_frame *f)
{
	struct rpc_handshake h;
	uint8_t pid[RPC_PID_LEN], payload[RPC_HANDSHAKE_LEN];
	uint32_t flags = 0;
	size_t len;

	if (rpc_handshake_parse(f->payload, f->len, &h) == -1) {
		link_close(l, "malformed RPC_HANDSHAKE");
		return -1;
	}
	if ((h.flags & 0xff) != 0) {
		link_close(l, "RPC_HANDSHAKE with unknown flags");
		return -1;
	}
	if (G.crc32c && (h.flags & RPC_HANDSHAKE_CRC32C))
		flags = RPC_HANDSHAKE_CRC32C;
	rpc_pid_make(
	    pid, (struct sockaddr *)&l->me, (uint16_t)getpid(), G.start_time);
	len = rpc_handshake_build(
	    payload, sizeof(payload), flags, pid, h.sender_pid);
	if (len == 0 || link_send(l, payload, len) == -1) {
		link_close(l, "cannot answer the handshake");
		return -1;
	}
	/* From frame 0 on, both ways (B.2.2). */
	l->crc32c = flags != 0;
	rpc_link_set_crc32c(&l->rl, l->crc32c);
	l->state = LINK_READY;
	fprintf(stderr, "fake_mp: link %u (%s): ready%s\n", l->index, l->px_str,
	    l->crc32c ? ", crc32c" : "");
	return 0;
}

static int
on_proxy_req(struct mp_link *l, const uint8_t *p, size_t len)
{
	struct rpc_proxy_req r;
	struct mp_conn *c;
	uint8_t nonce[PEER_NONCE_LEN], respq[PEER_RES_PQ_LEN];

	if (rpc_proxy_req_parse(p, len, &r) == -1) {
		link_close(l, "malformed RPC_PROXY_REQ");
		return -1;
	}
	if ((c = conn_find(r.conn_id)) == NULL) {
		c = conn_add(r.conn_id);
		c->link = l->index;
		ip16_str(
		    r.client_ip, r.client_port, c->client, sizeof(c->client));
		ip16_str(r.proxy_ip, r.proxy_port, c->proxy, sizeof(c->proxy));
		c->has_tag = r.has_ad_tag;
		memcpy(c->tag, r.ad_tag, sizeof(c->tag));
		if (G.verbose)
			fprintf(stderr,
			    "fake_mp: link %u: conn %016" PRIx64
			    " flags 0x%08x client %s proxy %s tag %s\n",
			    l->index, c->id, r.flags, c->client, c->proxy,
			    c->has_tag ? peer_hex(c->tag, RPC_AD_TAG_LEN,
			                     RPC_AD_TAG_LEN)
			               : "none");
	} else if (c->link != l->index) {
		fprintf(stderr,
		    "fake_mp: conn %016" PRIx64 " moved from link "
		    "%u to link %u\n",
		    c->id, c->link, l->index);
		c->link = l->index;
	}
	if (c->closed)
		c->after_close++;
	c->flags = r.flags;
	c->flags_seen |= r.flags;
	c->packets++;
	c->bytes += r.len;
	G.packets++;
	G.bytes += r.len;

	if (peer_is_req_pq(r.data, r.len, nonce)) {
		peer_res_pq(respq, nonce);
		if (link_send_ans(l, r.conn_id, respq, sizeof(respq)) == -1) {
			link_close(l, "cannot send resPQ");
			return -1;
		}
	} else if (G.mode == MODE_ECHO && r.len > 0) {
		if (link_send_ans(l, r.conn_id, r.data, r.len) == -1) {
			link_close(l, "cannot echo a packet");
			return -1;
		}
	} else if (G.mode == MODE_SOURCE &&
	    src_request(l, c, r.data, r.len) == -1) {
		link_close(l, "malformed source request");
		return -1;
	}
	return 0;
}

static int
on_message(struct mp_link *l, const struct rpc_frame *f)
{
	uint8_t payload[RPC_PING_LEN];
	uint64_t id;
	uint32_t type = rpc_msg_type(f->payload, f->len);
	struct mp_conn *c;
	char why[80];

	switch (type) {
	case RPC_PROXY_REQ:
		return on_proxy_req(l, f->payload, f->len);
	case RPC_CLOSE_CONN:
		if (rpc_close_conn_parse(f->payload, f->len, &id) == -1)
			break;
		G.closes++;
		if ((c = conn_find(id)) != NULL) {
			c->closed = 1;
			src_stop(c);
		}
		if (G.verbose)
			fprintf(stderr,
			    "fake_mp: link %u: conn %016" PRIx64 " closed%s\n",
			    l->index, id, c == NULL ? " (unknown)" : "");
		return 0;
	case RPC_PING:
		if (rpc_ping_parse(f->payload, f->len, &id) == -1)
			break;
		G.pings++;
		if (G.no_pong)
			return 0;
		if (link_send(l, payload,
		        rpc_pong_build(payload, sizeof(payload), id)) == -1) {
			link_close(l, "cannot send RPC_PONG");
			return -1;
		}
		G.pings_answered++;
		return 0;
	case RPC_PONG:
		if (rpc_pong_parse(f->payload, f->len, &id) == -1)
			break;
		G.pongs++;
		return 0;
	default:
		snprintf(why, sizeof(why),
		    "unexpected message type %08x "
		    "(%zu bytes)",
		    type, f->len);
		link_close(l, why);
		return -1;
	}
	snprintf(why, sizeof(why),
	    "malformed message of type %08x "
	    "(%zu bytes)",
	    type, f->len);
	link_close(l, why);
	return -1;
}

/*
 * Plaintext fillers after the nonce frame (Py and Erl pad it to 48): only
 * while the stream is not at a block boundary, since the encrypted part
 * starts at one on a padding sender and right after the frame otherwise.
 * 1: wait for more bytes, 0: go on.
 */
static int
skip_plain_fillers(struct mp_link *l)
{
	static const uint8_t filler[4] = { 0x04, 0x00, 0x00, 0x00 };

	while (l->in_pos % RPC_BLOCK != 0) {
		if (peer_buf_size(&l->in) < 4)
			return 1;
		if (memcmp(peer_buf_data(&l->in), filler, 4) != 0)
			break;
		peer_buf_consume(&l->in, 4);
		l->in_pos += 4;
	}
	return 0;
}

/* Everything buffered. -1 when the link was closed. */
static int
link_process(struct mp_link *l)
{
	struct rpc_frame f;
	enum rpc_decode_status st;
	int rc;

	for (;;) {
		if (l->state == LINK_NONCE) {
			st = rpc_frame_decode(&l->nonce_rx,
			    peer_buf_data(&l->in), peer_buf_size(&l->in), &f);
		} else {
			if (!l->ciphered) {
				if (skip_plain_fillers(l))
					return 0;
				l->ciphered = 1;
			}
			size_t n = (peer_buf_size(&l->in) - l->dec) &
			    ~(size_t)(RPC_BLOCK - 1);
			if (n > 0 &&
			    rpc_link_decrypt(&l->rl,
			        peer_buf_data(&l->in) + l->dec, n) == -1) {
				link_close(l, "decryption failed");
				return -1;
			}
			l->dec += n;
			st = rpc_link_decode(
			    &l->rl, peer_buf_data(&l->in), l->dec, &f);
		}
		if (st == RPC_DECODE_ERROR) {
			link_close(l, f.error);
			return -1;
		}
		if (st == RPC_DECODE_NEED_MORE) {
			/* Fillers may go. */
			if (l->state != LINK_NONCE)
				l->dec -= f.consumed;
			l->in_pos += f.consumed;
			peer_buf_consume(&l->in, f.consumed);
			return 0;
		}
		switch (l->state) {
		case LINK_NONCE:
			rc = on_nonce(l, &f);
			break;
		case LINK_HANDSHAKE:
			rc = on_handshake(l, &f);
			break;
		default:
			rc = on_message(l, &f);
			break;
		}
		if (rc == -1)
			return -1;
		/* on_nonce moved to the encrypted states: dec stays 0. */
		if (l->state != LINK_NONCE && l->ciphered)
			l->dec -= f.consumed;
		l->in_pos += f.consumed;
		peer_buf_consume(&l->in, f.consumed);
	}
}

static void
link_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mp_link *l = arg;

	for (int i = 0; i < READS_PER_EVENT && l->reading; i++) {
		uint8_t *p = peer_buf_reserve(&l->in, READ_CHUNK);
		ssize_t n = read(fd, p, READ_CHUNK);
		if (n == 0) {
			link_close(l, "EOF from the proxy");
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			link_close(l, strerror(errno));
			return;
		}
		peer_buf_commit(&l->in, (size_t)n);
		G.bytes_in += (uint64_t)n;
		if (link_process(l) == -1)
			return;
		if (link_flush(l) == -1) {
			link_close(l, strerror(errno));
			return;
		}
		if (n < READ_CHUNK)
			break;
	}
}

static void
link_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mp_link *l = arg;

	if (link_flush(l) == -1)
		link_close(l, strerror(errno));
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	for (;;) {
		struct sockaddr_storage px;
		socklen_t len = sizeof(px);
		int fd = accept4(lfd, (struct sockaddr *)&px, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != ECONNABORTED)
				fprintf(stderr, "fake_mp: accept: %s\n",
				    strerror(errno));
			return;
		}
		struct mp_link *l = calloc(1, sizeof(*l));
		if (l == NULL) {
			close(fd);
			continue;
		}
		l->fd = fd;
		l->px = px;
		len = sizeof(l->me);
		if (getsockname(fd, (struct sockaddr *)&l->me, &len) == -1) {
			fprintf(stderr, "fake_mp: getsockname: %s\n",
			    strerror(errno));
			close(fd);
			free(l);
			continue;
		}
		addr_str(
		    (struct sockaddr *)&l->px, l->px_str, sizeof(l->px_str));
		peer_tcp_nodelay(fd);
		l->rev = event_new(
		    G.base, fd, EV_READ | EV_PERSIST, link_read_cb, l);
		l->wev = event_new(
		    G.base, fd, EV_WRITE | EV_PERSIST, link_write_cb, l);
		if (l->rev == NULL || l->wev == NULL)
			abort();
		l->index = G.next_index++;
		rpc_decoder_init(
		    &l->nonce_rx, RPC_SEQ_NONCE, RPC_FRAME_MAX_DEFAULT);
		l->next = G.links;
		if (G.links != NULL)
			G.links->prev = l;
		G.links = l;
		G.nlinks++;
		fprintf(
		    stderr, "fake_mp: link %u from %s\n", l->index, l->px_str);
		link_update_read(l);
	}
}

/* ------------------------------------------------------------ control */

static struct mp_link *
link_by_index(unsigned index)
{
	struct mp_link *l;

	for (l = G.links; l != NULL; l = l->next)
		if (l->index == index)
			return l;
	return NULL;
}

static int
parse_u64(const char *s, int base, uint64_t *out)
{
	char *end;

	if (s == NULL || *s == '\0' || *s == '-')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, base);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

static void
ctl_stats(struct evbuffer *out)
{
	struct mp_conn *c;
	struct mp_link *l;
	char tag[2 * RPC_AD_TAG_LEN + 1];
	const char *sep = "";

	evbuffer_add_printf(out,
	    "{\"links\": %u, \"links_total\": %u, "
	    "\"open_links\": [",
	    G.nlinks, G.next_index);
	for (l = G.links; l != NULL; l = l->next) {
		evbuffer_add_printf(out,
		    "%s{\"index\": %u, \"state\": \"%s\", "
		    "\"proxy\": \"%s\", \"crc32c\": %s, \"queued\": %zu}",
		    sep, l->index, state_names[l->state], l->px_str,
		    l->crc32c ? "true" : "false", peer_buf_size(&l->out));
		sep = ", ";
	}
	evbuffer_add_printf(out, "], \"conns\": {");
	sep = "";
	for (c = G.conn_head; c != NULL; c = c->lnext) {
		if (c->has_tag)
			hex_encode(c->tag, RPC_AD_TAG_LEN, tag);
		evbuffer_add_printf(out,
		    "%s\"%016" PRIx64 "\": {\"link\": %u, "
		    "\"flags\": \"0x%08x\", \"flags_seen\": \"0x%08x\", "
		    "\"ad_tag\": %s%s%s, \"client\": \"%s\", "
		    "\"proxy\": \"%s\", \"packets\": %" PRIu64 ", "
		    "\"bytes\": %" PRIu64 ", \"closed\": %s, "
		    "\"ext_closed\": %s, \"after_close\": %" PRIu64 "}",
		    sep, c->id, c->link, c->flags, c->flags_seen,
		    c->has_tag ? "\"" : "", c->has_tag ? tag : "null",
		    c->has_tag ? "\"" : "", c->client, c->proxy, c->packets,
		    c->bytes, c->closed ? "true" : "false",
		    c->ext_closed ? "true" : "false", c->after_close);
		sep = ", ";
	}
	evbuffer_add_printf(out,
	    "}, \"nconns\": %" PRIu64 ", \"pongs\": %" PRIu64
	    ", \"pings\": %" PRIu64 ", \"pings_answered\": %" PRIu64
	    ", \"closes\": %" PRIu64 ", \"packets\": %" PRIu64
	    ", \"bytes\": %" PRIu64 ", \"bytes_in\": %" PRIu64
	    ", \"bytes_out\": %" PRIu64 ", \"src_bytes\": %" PRIu64
	    ", \"hold\": %s}\n",
	    G.nconns, G.pongs, G.pings, G.pings_answered, G.closes, G.packets,
	    G.bytes, G.bytes_in, G.bytes_out, G.src_bytes,
	    G.hold ? "true" : "false");
}

/* Sends a message on a ready link; the error text or NULL. */
static const char *
ctl_send(struct mp_link *l, const uint8_t *payload, size_t len)
{
	if (l->state != LINK_READY)
		return "link not ready";
	if (link_send(l, payload, len) == -1) {
		link_close(l, "cannot send");
		return "cannot send";
	}
	if (link_flush(l) == -1) {
		link_close(l, strerror(errno));
		return "link failed";
	}
	return NULL;
}

/* The live link of a conn, or NULL with *err set. */
static struct mp_link *
ctl_conn_link(const char *arg, struct mp_conn **cp, const char **err)
{
	uint64_t id;
	struct mp_conn *c;
	struct mp_link *l;

	if (parse_u64(arg, 16, &id) == -1) {
		*err = "bad conn_id";
		return NULL;
	}
	if ((c = conn_find(id)) == NULL) {
		*err = "unknown conn_id";
		return NULL;
	}
	if ((l = link_by_index(c->link)) == NULL) {
		*err = "the conn's link is closed";
		return NULL;
	}
	*cp = c;
	return l;
}

static void
ctl_command(char *line, struct evbuffer *out)
{
	char *save = NULL, *cmd, *a1, *a2;
	const char *err = NULL;
	uint8_t payload[RPC_SIMPLE_ACK_LEN];
	struct mp_link *l, *next;
	struct mp_conn *c;
	uint64_t v;
	unsigned n;

	cmd = strtok_r(line, " \t", &save);
	a1 = strtok_r(NULL, " \t", &save);
	a2 = strtok_r(NULL, " \t", &save);
	if (cmd == NULL) {
		err = "empty command";
	} else if (strcmp(cmd, "stats") == 0) {
		ctl_stats(out);
		return;
	} else if (strcmp(cmd, "rotate") == 0) {
		n = 0;
		if (a1 == NULL || strcmp(a1, "all") == 0) {
			for (l = G.links; l != NULL; l = next) {
				next = l->next;
				link_close(l, "rotated");
				n++;
			}
		} else if (parse_u64(a1, 10, &v) == -1) {
			err = "bad link index";
		} else if ((l = link_by_index((unsigned)v)) != NULL) {
			link_close(l, "rotated");
			n++;
		}
		if (err == NULL) {
			evbuffer_add_printf(out, "{\"closed\": %u}\n", n);
			return;
		}
	} else if (strcmp(cmd, "ack") == 0) {
		if ((l = ctl_conn_link(a1, &c, &err)) == NULL) {
			/* err set */
		} else if (parse_u64(a2, 16, &v) == -1 || v > UINT32_MAX) {
			err = "bad confirm";
		} else {
			err = ctl_send(l, payload,
			    rpc_simple_ack_build(
			        payload, sizeof(payload), c->id, (uint32_t)v));
		}
	} else if (strcmp(cmd, "close_ext") == 0) {
		if ((l = ctl_conn_link(a1, &c, &err)) != NULL) {
			err = ctl_send(l, payload,
			    rpc_close_ext_build(
			        payload, sizeof(payload), c->id));
			if (err == NULL)
				c->ext_closed = 1;
		}
	} else if (strcmp(cmd, "ping") == 0) {
		for (l = G.links; l != NULL; l = next) {
			next = l->next;
			if (l->state != LINK_READY)
				continue;
			random_bytes(&v, sizeof(v));
			ctl_send(l, payload,
			    rpc_ping_build(payload, sizeof(payload), v));
		}
	} else if (strcmp(cmd, "hold") == 0) {
		if (a1 == NULL ||
		    (strcmp(a1, "0") != 0 && strcmp(a1, "1") != 0)) {
			err = "hold wants 0 or 1";
		} else {
			G.hold = a1[0] == '1';
			for (l = G.links; l != NULL; l = l->next)
				link_update_read(l);
		}
	} else if (strcmp(cmd, "reset") == 0) {
		conns_clear();
		G.pongs = G.pings = G.pings_answered = G.closes = 0;
		G.packets = G.bytes = G.bytes_in = G.bytes_out = 0;
		G.src_bytes = 0;
	} else {
		err = "unknown command";
	}
	if (err != NULL)
		evbuffer_add_printf(out, "{\"error\": \"%s\"}\n", err);
	else
		evbuffer_add_printf(out, "{\"ok\": true}\n");
}

static void
ctl_free(struct ctl_client *cc)
{
	bufferevent_free(cc->bev);
	free(cc);
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(bev);
	char *line;
	size_t n;

	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		ctl_command(line, out);
		free(line);
	}
	if (evbuffer_get_length(in) > CTL_LINE_MAX)
		ctl_free(arg);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		ctl_free(arg);
}

static void
ctl_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		struct ctl_client *cc = calloc(1, sizeof(*cc));
		if (cc == NULL ||
		    (cc->bev = bufferevent_socket_new(
		         G.base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
			free(cc);
			close(fd);
			continue;
		}
		peer_tcp_nodelay(fd);
		bufferevent_setcb(cc->bev, ctl_read_cb, NULL, ctl_event_cb, cc);
		bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
	}
}

/* ------------------------------------------------------------ main */

static int
read_secret(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t extra;

	if (f == NULL) {
		fprintf(stderr, "fake_mp: %s: %s\n", path, strerror(errno));
		return -1;
	}
	G.secret_len = fread(G.secret, 1, sizeof(G.secret), f);
	if (fread(&extra, 1, 1, f) == 1 || G.secret_len < RPC_SECRET_MIN) {
		fprintf(stderr,
		    "fake_mp: %s: the proxy secret must have "
		    "%d..%d bytes\n",
		    path, RPC_SECRET_MIN, RPC_SECRET_MAX);
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

static int
listen_on(const char *host, long port, event_callback_fn cb, uint16_t *bound)
{
	int fd = peer_listen(host, (uint16_t)port, bound);
	struct event *ev;

	if (fd == -1) {
		fprintf(stderr, "fake_mp: listen on %s:%ld: %s\n", host, port,
		    strerror(errno));
		return -1;
	}
	ev = event_new(G.base, fd, EV_READ | EV_PERSIST, cb, NULL);
	if (ev == NULL || event_add(ev, NULL) == -1) {
		fprintf(stderr, "fake_mp: event_add failed\n");
		return -1;
	}
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: fake_mp --port P [--host H] --secret-file F "
	    "[--control-port C]\n"
	    "\t[--no-pong] [--crc32c] [--mode echo|sink|source]\n"
	    "\t[--out-high B] [--out-low B] [--seen-ip ADDR] [--verbose]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'h' },
		{ "secret-file", required_argument, NULL, 's' },
		{ "control-port", required_argument, NULL, 'c' },
		{ "no-pong", no_argument, NULL, 'n' },
		{ "crc32c", no_argument, NULL, 'C' },
		{ "mode", required_argument, NULL, 'm' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "seen-ip", required_argument, NULL, 'S' },
		{ "out-high", required_argument, NULL, 'H' },
		{ "out-low", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "127.0.0.1", *secret_file = NULL;
	long port = -1, ctl_port = 0;
	uint16_t bound, ctl_bound;
	struct rlimit rl;
	long long out_high = OUT_HIGH, out_low = -1;
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			port = strtol(optarg, NULL, 10);
			break;
		case 'h':
			host = optarg;
			break;
		case 's':
			secret_file = optarg;
			break;
		case 'c':
			ctl_port = strtol(optarg, NULL, 10);
			break;
		case 'n':
			G.no_pong = 1;
			break;
		case 'C':
			G.crc32c = 1;
			break;
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				G.mode = MODE_ECHO;
			else if (strcmp(optarg, "sink") == 0)
				G.mode = MODE_SINK;
			else if (strcmp(optarg, "source") == 0)
				G.mode = MODE_SOURCE;
			else
				usage();
			break;
		case 'v':
			G.verbose = 1;
			break;
		case 'S':
			G.seen_ip = optarg;
			break;
		case 'H':
			out_high = strtoll(optarg, NULL, 10);
			break;
		case 'L':
			out_low = strtoll(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (port < 0 || port > 65535 || ctl_port < 0 || ctl_port > 65535 ||
	    secret_file == NULL || optind != argc || out_high < 65536 ||
	    out_low > out_high)
		usage();
	G.out_high = (size_t)out_high;
	G.out_low = out_low < 0 ? G.out_high / 4 : (size_t)out_low;
	if (read_secret(secret_file) == -1)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	G.start_time = (uint32_t)now_unix();
	bench_pattern_init();
	G.conn_tail = &G.conn_head;
	if ((G.base = event_base_new()) == NULL) {
		fprintf(stderr, "fake_mp: event_base_new failed\n");
		return 1;
	}
	if (listen_on(host, port, accept_cb, &bound) == -1 ||
	    listen_on("127.0.0.1", ctl_port, ctl_accept_cb, &ctl_bound) == -1)
		return 1;
	printf("READY %u %u\n", bound, ctl_bound);
	fflush(stdout);
	event_base_dispatch(G.base);
	return 0;
}
