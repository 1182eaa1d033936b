/*
 * Middle-proxy mode in a worker (spec B.2, DESIGN.md "Workers").
 *
 * The dcpool builds an RPC link (connect, nonce, keys, handshake) and
 * hands the socket and the CBC state to us; from then on the link lives
 * here, so a dcpool restart drops nobody. Per DC a pool of links carries
 * many clients each: one RPC_PROXY_REQ per client packet, answers framed
 * back in the client's own transport.
 *
 * Flow control: a client whose pending output is over client_queue_max
 * is not read (its requests wait, so the ME's answers to it dry up) and
 * is closed when it stays over for client_queue_timeout; a link stops
 * reading only while the output waiting for all its clients is over
 * link_queue_max, and resumes below half of it (also when the client
 * that filled it leaves); clients stop being read while their link's
 * own output queue is over that bound.
 *
 * When Telegram closes a link (it rotates them every 30-70 s), clients
 * whose packets all went out move to another link of the DC; a client
 * with bytes still queued on the dead link is closed.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "framing.h"
#include "log.h"
#include "msg.h"
#include "rpc.h"
#include "session.h"
#include "session_int.h"
#include "shm.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define MAX_POOLS      64
#define HASH_SIZE      (1 << 16) /* conn_id buckets */
#define LINK_RBUF_MIN  (256 * 1024) /* one read takes many frames */
#define LINK_FRAME_MAX (FRAME_MAX_PACKET + 4096)
#define TICK_MS        1000
/* A waiting client gets a link within this, or is closed. */
#define WAIT_MAX_MS(cfg) ((uint64_t)(cfg)->connect_timeout * 2000)

struct mpool;

struct wqueue {
	uint8_t *buf;
	size_t off, len, cap;
};

struct mlink {
	struct mlink *next;
	struct mpool *pool;
	int fd;
	struct event rev, wev;
	struct rpc_link rpc;
	struct sockaddr_storage me;
	uint8_t *rbuf;
	size_t rlen, rcap;
	size_t rdec; /* bytes of rbuf already decrypted */
	struct wqueue wq;
	uint64_t queued_total; /* bytes ever queued to the ME */
	uint64_t written_total; /* bytes ever written to the ME */
	struct session *clients;
	size_t nclients;
	size_t client_bytes; /* waiting in its clients' queues */
	uint64_t last_rx_ms;
	uint64_t last_ping_ms;
	unsigned reading : 1;
	unsigned writing : 1;
	unsigned clients_paused : 1;
	unsigned error : 1; /* a write failed: dies next turn */
};

struct mpool {
	int16_t dc;
	struct mlink *links;
	size_t nlinks;
	size_t inflight; /* link requests not answered yet */
	uint64_t retry_at_ms;
	uint32_t failures;
	struct session *waiting; /* clients without a link */
	size_t nwaiting;
};

static struct {
	struct mpool pools[MAX_POOLS];
	size_t npools;
	struct session *hash[HASH_SIZE];
	uint32_t next_req;
	struct event tick;
	uint8_t *out;
	size_t outcap;
	struct session *dirty; /* answers queued, not sent yet */
} M;

static void link_dead(struct mlink *, const char *why);
static void link_maybe_resume(struct mlink *);
static void link_flush(struct mlink *);
static void link_kick(struct mlink *);
static void pool_maintain(struct mpool *);
static void client_read_cb(evutil_socket_t, short, void *);

/* ------------------------------------------------------------ helpers */

static struct session **
hash_slot(uint64_t id)
{
	return &M.hash[(id ^ (id >> 32)) & (HASH_SIZE - 1)];
}

static struct session *
hash_find(uint64_t id)
{
	for (struct session *s = *hash_slot(id); s; s = s->hash_next)
		if (s->conn_id == id)
			return s;
	return NULL;
}

static void
hash_remove(struct session *s)
{
	for (struct session **pp = hash_slot(s->conn_id); *pp;
	     pp = &(*pp)->hash_next)
		if (*pp == s) {
			*pp = s->hash_next;
			return;
		}
}

static uint64_t
new_conn_id(void)
{
	uint64_t id;
	do {
		random_bytes(&id, sizeof(id));
	} while (id == 0 || hash_find(id) != NULL);
	return id;
}

static struct mpool *
pool_get(int16_t dc)
{
	for (size_t i = 0; i < M.npools; i++)
		if (M.pools[i].dc == dc)
			return &M.pools[i];
	if (M.npools == MAX_POOLS)
		return NULL;
	struct mpool *p = &M.pools[M.npools++];
	memset(p, 0, sizeof(*p));
	p->dc = dc;
	return p;
}

static int
wq_reserve(struct wqueue *q, size_t need)
{
	if (q->off && q->off == q->len)
		q->off = q->len = 0;
	if (q->cap - q->len >= need)
		return 0;
	if (q->off > 0) {
		memmove(q->buf, q->buf + q->off, q->len - q->off);
		q->len -= q->off;
		q->off = 0;
		if (q->cap - q->len >= need)
			return 0;
	}
	size_t cap = q->cap ? q->cap : 16384;
	while (cap - q->len < need)
		cap *= 2;
	uint8_t *b = realloc(q->buf, cap);
	if (b == NULL)
		return -1;
	q->buf = b;
	q->cap = cap;
	return 0;
}

static size_t
wq_pending(const struct wqueue *q)
{
	return q->len - q->off;
}

static enum rpc_transport
transport_of(const struct session *s)
{
	switch (s->tag) {
	case O2_TAG_ABRIDGED:
		return RPC_TRANSPORT_ABRIDGED;
	case O2_TAG_INTERMEDIATE:
		return RPC_TRANSPORT_INTERMEDIATE;
	default:
		return RPC_TRANSPORT_PADDED;
	}
}

static const uint8_t *
ad_tag_of(const struct session *s)
{
	const struct config_user *u = &s->l->users[s->user];
	if (u->has_ad_tag)
		return u->ad_tag;
	return s->l->has_ad_tag ? s->l->ad_tag : NULL;
}

static enum frame_kind
kind_of(const struct session *s)
{
	return (enum frame_kind)frame_kind_from_tag(s->tag);
}

/* ------------------------------------------------------------ link I/O */

static void
link_want_read(struct mlink *l, int on)
{
	l->reading = event_want(&l->rev, l->reading, on);
}

static void
link_want_write(struct mlink *l, int on)
{
	l->writing = event_want(&l->wev, l->writing, on);
}

/* Seal the payload already at frame + 8 and queue it. */
static int
link_queue_frame(struct mlink *l, uint8_t *frame, size_t cap, size_t len)
{
	size_t n = rpc_link_seal(&l->rpc, frame, cap, len);
	if (n == 0)
		return -1;
	l->wq.len += n;
	l->queued_total += n;
	return 0;
}

/* A small message of ours (PONG, PING, CLOSE_CONN) to the ME. */
static void
link_send_small(struct mlink *l, const uint8_t *payload, size_t len)
{
	if (wq_reserve(&l->wq, RPC_FRAME_SPACE(len)) == -1)
		return;
	uint8_t *f = l->wq.buf + l->wq.len;
	memcpy(f + RPC_FRAME_HDR, payload, len);
	if (link_queue_frame(l, f, RPC_FRAME_SPACE(len), len) == -1)
		log_warnx("sealing an RPC frame failed");
	link_kick(l);
}

static void
link_pause_clients(struct mlink *l, int pause)
{
	if (pause == l->clients_paused)
		return;
	l->clients_paused = pause;
	for (struct session *s = l->clients; s; s = s->link_next)
		side_want_read(s, &s->c, !pause && s->over_since_ms == 0);
}

static void
link_flush(struct mlink *l)
{
	struct wqueue *q = &l->wq;

	if (l->error)
		return;
	while (q->off < q->len) {
		ssize_t w =
		    send(l->fd, q->buf + q->off, q->len - q->off, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				/*
				 * Never free a link from here: callers may be
				 * inside its read loop. Its write event runs
				 * next turn and finishes it.
				 */
				l->error = 1;
				event_active(&l->wev, EV_WRITE, 1);
				return;
			}
			break;
		}
		q->off += w;
		l->written_total += w;
	}
	size_t pend = wq_pending(q);
	link_want_write(l, pend > 0);
	if (pend > W.cfg->middle_link_queue_max)
		link_pause_clients(l, 1);
	else if (l->clients_paused && pend < W.cfg->middle_link_queue_max / 2)
		link_pause_clients(l, 0);
	if (pend == 0 && q->cap > 4 * 16384) {
		/* Give back a big queue once it drained. */
		free(q->buf);
		memset(q, 0, sizeof(*q));
	}
}

/*
 * Flush after queueing, unless the socket is known to be full: then its
 * write event does it (no send that can only say EAGAIN).
 */
static void
link_kick(struct mlink *l)
{
	if (!l->writing) {
		link_flush(l);
		return;
	}
	if (wq_pending(&l->wq) > W.cfg->middle_link_queue_max)
		link_pause_clients(l, 1);
}

static void
link_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;

	if (!l->error)
		link_flush(l);
	if (l->error)
		link_dead(l, "write error");
}

/* ------------------------------------------------------------ to clients */

static int
out_reserve(size_t need)
{
	if (M.outcap >= need)
		return 0;
	uint8_t *b = realloc(M.out, need);
	if (b == NULL)
		return -1;
	M.out = b;
	M.outcap = need;
	return 0;
}

/*
 * Send plain bytes (the pieces p[0..np)) to the client: encrypt with its
 * stream and, for fake TLS, cut into records. Accounts what stays queued.
 */
static int
client_send(struct session *s, const uint8_t *const *p, const size_t *n, int np)
{
	size_t total = 0, out = 0;
	for (int i = 0; i < np; i++)
		total += n[i];
	size_t records = s->is_tls ? total / TLS_RECORD_MAX_PAYLOAD + 1 : 0;
	if (out_reserve(total + records * TLS_RECORD_HEADER_LEN) == -1)
		return -1;
	/* Lay out the stream (with room for record headers), encrypting
	 * each record's payload in place; CTR makes chunking free. */
	int i = 0;
	size_t ioff = 0, left = total;
	while (left > 0) {
		size_t chunk = s->is_tls && left > TLS_RECORD_MAX_PAYLOAD
		    ? TLS_RECORD_MAX_PAYLOAD
		    : left;
		if (s->is_tls) {
			tls_record_header(M.out + out, chunk);
			out += TLS_RECORD_HEADER_LEN;
		}
		uint8_t *start = M.out + out;
		size_t need = chunk;
		while (need > 0) {
			size_t take = n[i] - ioff < need ? n[i] - ioff : need;
			memcpy(M.out + out, p[i] + ioff, take);
			out += take;
			ioff += take;
			need -= take;
			if (ioff == n[i]) {
				i++;
				ioff = 0;
			}
		}
		if (crypto_stream_apply(s->c_enc, start, start, chunk))
			return -1;
		left -= chunk;
	}
	/*
	 * Queue only: all answers a link read brings for this client go
	 * out in one send when the read is done (client_flush_dirty).
	 */
	if (!s->dirty) {
		s->dirty_mark = s->c.out.len - s->c.out.off;
		s->dirty = 1;
		s->dirty_prev = NULL;
		s->dirty_next = M.dirty;
		if (M.dirty)
			M.dirty->dirty_prev = s;
		M.dirty = s;
	}
	return side_queue(&s->c, M.out, out);
}

static void
dirty_remove(struct session *s)
{
	if (!s->dirty)
		return;
	if (s->dirty_prev)
		s->dirty_prev->dirty_next = s->dirty_next;
	else
		M.dirty = s->dirty_next;
	if (s->dirty_next)
		s->dirty_next->dirty_prev = s->dirty_prev;
	s->dirty_next = s->dirty_prev = NULL;
	s->dirty = 0;
}

/* Send what the last link read queued for each client; account it. */
static void
client_flush_dirty(void)
{
	while (M.dirty) {
		struct session *s = M.dirty;
		struct pending *q = &s->c.out;
		size_t mark = s->dirty_mark;

		dirty_remove(s);
		while (!s->c.writing && q->off < q->len) {
			ssize_t w = send(s->c.fd, q->buf + q->off,
			    q->len - q->off, MSG_NOSIGNAL);
			if (w == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				session_close(s, "write error");
				goto next;
			}
			q->off += w;
		}
		size_t after = q->len - q->off;
		if (after == 0) {
			free(q->buf);
			memset(q, 0, sizeof(*q));
		} else
			side_want_write(s, &s->c, 1);
		if (s->link) {
			struct mlink *l = s->link;
			if (after >= mark)
				l->client_bytes += after - mark;
			else
				l->client_bytes -=
				    l->client_bytes > mark - after
				    ? mark - after
				    : l->client_bytes;
			if (l->client_bytes > W.cfg->middle_link_queue_max)
				link_want_read(l, 0);
		}
		if (after > W.cfg->middle_client_queue_max) {
			/*
			 * Over its bound: read no more requests from this
			 * client, so the ME's answers to it dry up; the link
			 * and the other clients keep going.
			 */
			if (s->over_since_ms == 0)
				s->over_since_ms = coarse_now_ms();
			side_want_read(s, &s->c, 0);
		}
next:;
	}
}

void
middle_client_drained(struct session *s, size_t n)
{
	struct mlink *l = s->link;
	size_t q = s->c.out.len - s->c.out.off;

	if (q <= W.cfg->middle_client_queue_max)
		s->over_since_ms = 0;
	if (l == NULL)
		return;
	if (q <= W.cfg->middle_client_queue_max / 2 && !l->clients_paused)
		side_want_read(s, &s->c, 1);
	l->client_bytes = l->client_bytes > n ? l->client_bytes - n : 0;
	link_maybe_resume(l);
}

/* RPC_PROXY_ANS: the packet, framed in the client's transport (A.3). */
static void
client_deliver(struct session *s, const uint8_t *data, size_t len)
{
	uint8_t hdr[4], pad[3];
	size_t padlen = 0;
	size_t hl = frame_encode_header(kind_of(s), len, hdr, &padlen);

	if (hl == 0) {
		session_close(s, "unframeable answer from the middle proxy");
		return;
	}
	if (padlen)
		random_bytes(pad, padlen);
	const uint8_t *p[3] = { hdr, data, pad };
	size_t n[3] = { hl, len, padlen };
	if (client_send(s, p, n, 3) == -1) {
		session_close(s, "write error");
		return;
	}
	/*
	 * What it had in flight keeps arriving while its input is paused;
	 * that is bounded by the link pausing at link_queue_max, and the
	 * tick closes it if it stays over its own bound too long.
	 */
	shm_add(W.metrics, M_BYTES_S2C, len);
}

static void
client_quickack(struct session *s, uint32_t confirm)
{
	uint8_t le[4], out[4];

	memcpy(le, &confirm, 4);
	frame_quickack(kind_of(s), le, out);
	const uint8_t *p[1] = { out };
	size_t n[1] = { 4 };
	if (client_send(s, p, n, 1) == -1)
		session_close(s, "write error");
}

/* ------------------------------------------------------------ from the ME */

static void
link_dispatch(struct mlink *l, const uint8_t *p, size_t len)
{
	uint8_t msg[RPC_PING_LEN];
	uint64_t id;
	uint32_t confirm;
	struct session *s;

	switch (rpc_msg_type(p, len)) {
	case RPC_PROXY_ANS: {
		struct rpc_proxy_ans a;
		if (rpc_proxy_ans_parse(p, len, &a) == -1)
			break;
		s = hash_find(a.conn_id);
		if (s == NULL) {
			/* The client is gone: tell the ME (C does). */
			size_t n =
			    rpc_close_conn_build(msg, sizeof(msg), a.conn_id);
			link_send_small(l, msg, n);
		} else if (s->link == l)
			client_deliver(s, a.data, a.len);
		break;
	}
	case RPC_SIMPLE_ACK:
		if (rpc_simple_ack_parse(p, len, &id, &confirm) == -1)
			break;
		s = hash_find(id);
		if (s && s->link == l)
			client_quickack(s, confirm);
		break;
	case RPC_CLOSE_EXT:
		if (rpc_close_ext_parse(p, len, &id) == -1)
			break;
		s = hash_find(id);
		if (s && s->link == l) {
			/* The ME forgot it already: no CLOSE_CONN. */
			s->conn_id_dead = 1;
			session_close(s, "closed by the middle proxy");
		}
		break;
	case RPC_PING:
		if (rpc_ping_parse(p, len, &id) == 0)
			link_send_small(
			    l, msg, rpc_pong_build(msg, sizeof(msg), id));
		break;
	case RPC_PONG:
		break;
	default:
		log_debug("link to DC %d: ignoring RPC message 0x%08x",
		    l->pool->dc, rpc_msg_type(p, len));
	}
}

static void
link_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;
	struct rpc_frame fr;
	size_t pos = 0;

	if (l->rcap - l->rlen < LINK_RBUF_MIN / 2) {
		size_t cap = l->rcap ? l->rcap * 2 : LINK_RBUF_MIN;
		if (cap > LINK_FRAME_MAX + LINK_RBUF_MIN) {
			link_dead(l, "frame too large");
			return;
		}
		uint8_t *b = realloc(l->rbuf, cap);
		if (b == NULL) {
			link_dead(l, "out of memory");
			return;
		}
		l->rbuf = b;
		l->rcap = cap;
	}
	ssize_t n = read(fd, l->rbuf + l->rlen, l->rcap - l->rlen);
	if (n == 0) {
		link_dead(l, "closed by the middle proxy");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			link_dead(l, strerror(errno));
		return;
	}
	l->rlen += n;
	l->last_rx_ms = coarse_now_ms();
	size_t dec = (l->rlen - l->rdec) & ~(size_t)(RPC_BLOCK - 1);
	if (dec && rpc_link_decrypt(&l->rpc, l->rbuf + l->rdec, dec) == -1) {
		link_dead(l, "decryption failed");
		return;
	}
	l->rdec += dec;
	while (pos < l->rdec) {
		enum rpc_decode_status st =
		    rpc_link_decode(&l->rpc, l->rbuf + pos, l->rdec - pos, &fr);
		if (st == RPC_DECODE_ERROR) {
			log_warnx("link to DC %d: %s", l->pool->dc,
			    fr.error ? fr.error : "bad frame");
			link_dead(l, "protocol error");
			return;
		}
		pos += fr.consumed;
		if (st == RPC_DECODE_NEED_MORE)
			break;
		/* Dispatch may close clients, never this link. */
		link_dispatch(l, fr.payload, fr.len);
	}
	client_flush_dirty();
	if (pos) {
		memmove(l->rbuf, l->rbuf + pos, l->rlen - pos);
		l->rlen -= pos;
		l->rdec -= pos;
	}
	if (l->rlen == 0 && l->rcap > LINK_RBUF_MIN) {
		free(l->rbuf);
		l->rbuf = NULL;
		l->rcap = 0;
	}
}

/* ------------------------------------------------------------ clients */

/* Reading resumes once the output waiting for its clients is low. */
static void
link_maybe_resume(struct mlink *l)
{
	if (!l->reading && l->fd != -1 &&
	    l->client_bytes < W.cfg->middle_link_queue_max / 2)
		link_want_read(l, 1);
}

static void
link_detach(struct session *s)
{
	struct mlink *l = s->link;

	if (l == NULL)
		return;
	if (s->link_prev)
		s->link_prev->link_next = s->link_next;
	else
		l->clients = s->link_next;
	if (s->link_next)
		s->link_next->link_prev = s->link_prev;
	s->link_next = s->link_prev = NULL;
	l->nclients--;
	size_t q = s->c.out.len - s->c.out.off;
	l->client_bytes = l->client_bytes > q ? l->client_bytes - q : 0;
	s->link = NULL;
	/* The client that paused the link may be the one leaving. */
	link_maybe_resume(l);
}

static void
wait_remove(struct mpool *p, struct session *s)
{
	if (s->link_prev)
		s->link_prev->link_next = s->link_next;
	else
		p->waiting = s->link_next;
	if (s->link_next)
		s->link_next->link_prev = s->link_prev;
	s->link_next = s->link_prev = NULL;
	p->nwaiting--;
	s->waiting = 0;
}

/* Client bytes, plain: cut into packets, one PROXY_REQ each. */
static int
client_packets(struct session *s, const uint8_t *buf, size_t len)
{
	struct mlink *l = s->link;
	const uint8_t *tag = ad_tag_of(s);
	const uint8_t *p;
	size_t plen;

	if (s->inlen || l == NULL) {
		size_t want = s->inlen + len;
		if (want > FRAME_MAX_PACKET + 16) {
			session_close(s, "client packet too large");
			return -1;
		}
		if (want > s->incap) {
			size_t cap = s->incap ? s->incap : 4096;
			while (cap < want)
				cap *= 2;
			uint8_t *b = realloc(s->inbuf, cap);
			if (b == NULL) {
				session_close(s, "out of memory");
				return -1;
			}
			s->inbuf = b;
			s->incap = cap;
		}
		memcpy(s->inbuf + s->inlen, buf, len);
		s->inlen += len;
		if (l == NULL)
			return 0; /* waiting for a link */
		p = s->inbuf;
		plen = s->inlen;
	} else {
		p = buf;
		plen = len;
	}
	while (plen > 0) {
		struct frame_info fi;
		int r = frame_decode(kind_of(s), p, plen, &fi);
		if (r == FRAME_NEED_MORE)
			break;
		if (r == FRAME_ERROR) {
			session_close(s, "bad frame from the client");
			return -1;
		}
		const uint8_t *pkt = p + fi.hdrlen;
		if (frame_packet_check(pkt, fi.pktlen)) {
			size_t hmax = RPC_PROXY_REQ_HDR_TAG;
			if (wq_reserve(&l->wq,
			        RPC_FRAME_SPACE(hmax + fi.pktlen)) == -1) {
				session_close(s, "out of memory");
				return -1;
			}
			uint8_t *f = l->wq.buf + l->wq.len;
			uint32_t flags = rpc_proxy_req_flags(transport_of(s),
			    fi.quickack, tag != NULL, pkt, fi.pktlen);
			size_t h = rpc_proxy_req_header(f + RPC_FRAME_HDR, hmax,
			    flags, s->conn_id, (struct sockaddr *)&s->peer,
			    (struct sockaddr *)&s->local, tag);
			memcpy(f + RPC_FRAME_HDR + h, pkt, fi.pktlen);
			if (h == 0 ||
			    link_queue_frame(l, f,
			        RPC_FRAME_SPACE(h + fi.pktlen),
			        h + fi.pktlen)) {
				session_close(s, "building PROXY_REQ failed");
				return -1;
			}
			s->sent_mark = l->queued_total;
			shm_add(W.metrics, M_BYTES_C2S, fi.pktlen);
		} else
			log_debug("dropped a malformed client packet of %zu "
			          "bytes",
			    fi.pktlen);
		p += fi.total;
		plen -= fi.total;
	}
	/* Keep a partial frame, and only that. */
	if (plen == 0) {
		free(s->inbuf);
		s->inbuf = NULL;
		s->inlen = s->incap = 0;
	} else if (p != s->inbuf) {
		if (s->inbuf == NULL || s->incap < plen) {
			uint8_t *b = realloc(s->inbuf, plen);
			if (b == NULL) {
				session_close(s, "out of memory");
				return -1;
			}
			s->inbuf = b;
			s->incap = plen;
		}
		memmove(s->inbuf, p, plen);
		s->inlen = plen;
	}
	return 0;
}

static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	uint8_t *buf = session_scratch;
	ssize_t n;

	if (s->link == NULL || s->link->clients_paused) {
		side_want_read(s, &s->c, 0);
		return;
	}
	n = read(fd, buf, SESSION_SCRATCH_LEN);
	if (n == 0) {
		session_close(s, "client closed");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			session_close(s, "client read error");
		return;
	}
	session_touch(s);
	size_t len = n;
	if (s->is_tls) {
		ssize_t m = tls_reader_feed(&s->tls_in, buf, n);
		if (m < 0) {
			session_close(s, "bad TLS record from the client");
			return;
		}
		len = m;
	}
	if (len && crypto_stream_apply(s->c_dec, buf, buf, len)) {
		session_close(s, "crypto failure");
		return;
	}
	struct mlink *l = s->link;
	if (client_packets(s, buf, len) == 0)
		link_kick(l);
}

static struct mlink *
pool_pick(struct mpool *p)
{
	struct mlink *best = NULL;
	for (struct mlink *l = p->links; l; l = l->next)
		if (best == NULL || l->nclients < best->nclients)
			best = l;
	return best;
}

static void
attach(struct session *s, struct mlink *l)
{
	/* Its stream to the client will move on: no way back to direct. */
	explicit_bzero(s->p2c_key, sizeof(s->p2c_key));
	explicit_bzero(s->p2c_iv, sizeof(s->p2c_iv));
	s->had_link = 1;
	s->link = l;
	s->link_prev = NULL;
	s->link_next = l->clients;
	if (l->clients)
		l->clients->link_prev = s;
	l->clients = s;
	l->nclients++;
	side_want_read(
	    s, &s->c, !l->clients_paused && s->c.out.len == s->c.out.off);
	if (s->inlen) {
		/* What arrived while it waited. */
		uint8_t *b = s->inbuf;
		size_t n = s->inlen;
		s->inbuf = NULL;
		s->inlen = s->incap = 0;
		int r = client_packets(s, b, n);
		free(b);
		if (r == 0)
			link_kick(l);
	}
}

/*
 * middle.fallback_direct: serve a client that cannot get a link straight
 * from the DC. Only for clients that never had a link (nothing was sent
 * to them yet, so their stream can still start over as passthrough).
 */
static int
fallback_ok(const struct session *s, const struct mpool *p)
{
	return W.cfg->middle_fallback_direct && !s->had_link &&
	    p->nlinks == 0 && p->failures >= 2;
}

static void
fallback(struct session *s)
{
	uint8_t *b = s->inbuf;
	size_t n = s->inlen;

	s->inbuf = NULL;
	s->inlen = s->incap = 0;
	session_direct_fallback(s, b, n);
	free(b);
}

/* Put a client on the least loaded link of its DC, or make it wait. */
static void
place(struct session *s)
{
	struct mpool *p = pool_get(s->dc);

	if (p == NULL) {
		session_close(s, "too many DCs");
		return;
	}
	struct mlink *l = pool_pick(p);
	if (l) {
		attach(s, l);
	} else if (fallback_ok(s, p)) {
		fallback(s);
		return;
	} else {
		s->waiting = 1;
		s->wait_since_ms = coarse_now_ms();
		s->link_prev = NULL;
		s->link_next = p->waiting;
		if (p->waiting)
			p->waiting->link_prev = s;
		p->waiting = s;
		p->nwaiting++;
		side_want_read(s, &s->c, 0);
	}
	pool_maintain(p);
}

int
middle_start(
    struct session *s, struct o2_session *o2, uint8_t *rest, size_t restlen)
{
	socklen_t sl = sizeof(s->local);

	s->c_dec = o2->dec;
	s->c_enc = o2->enc;
	o2->dec = o2->enc = NULL;
	memcpy(s->p2c_key, o2->enc_key, sizeof(s->p2c_key));
	memcpy(s->p2c_iv, o2->enc_iv, sizeof(s->p2c_iv));
	o2_session_free(o2);
	if (getsockname(s->c.fd, (struct sockaddr *)&s->local, &sl) == -1) {
		session_close(s, "getsockname failed");
		return -1;
	}
	s->mode = RELAY_MIDDLE;
	s->state = SS_RELAY;
	s->conn_id = new_conn_id();
	s->hash_next = *hash_slot(s->conn_id);
	*hash_slot(s->conn_id) = s;
	session_touch(s);
	event_del(&s->c.rev);
	s->c.reading = 0;
	event_assign(&s->c.rev, W.base, s->c.fd, EV_READ | EV_PERSIST,
	    client_read_cb, s);
	struct timeval tv = { W.cfg->idle_timeout, 0 };
	evtimer_add(&s->timer, &tv);
	if (restlen) {
		if (crypto_stream_apply(s->c_dec, rest, rest, restlen)) {
			session_close(s, "crypto failure");
			return -1;
		}
		/* Parked until a link takes it. */
		s->inbuf = malloc(restlen);
		if (s->inbuf == NULL) {
			session_close(s, "out of memory");
			return -1;
		}
		memcpy(s->inbuf, rest, restlen);
		s->inlen = s->incap = restlen;
	}
	place(s);
	return 0;
}

void
middle_session_closed(struct session *s)
{
	struct mlink *l = s->link;

	if (s->conn_id == 0)
		return;
	if (s->waiting) {
		struct mpool *p = pool_get(s->dc);
		if (p)
			wait_remove(p, s);
	}
	dirty_remove(s);
	if (l)
		link_detach(s);
	hash_remove(s);
	if (l && !s->conn_id_dead) {
		uint8_t msg[RPC_CLOSE_LEN];
		link_send_small(
		    l, msg, rpc_close_conn_build(msg, sizeof(msg), s->conn_id));
	}
	crypto_stream_free(s->c_enc);
	s->c_enc = NULL;
	free(s->inbuf);
	s->inbuf = NULL;
	s->conn_id = 0;
}

/* ------------------------------------------------------------ links */

static void
link_dead(struct mlink *l, const char *why)
{
	struct mpool *p = l->pool;
	char a[ADDR_STRLEN];
	size_t moved = 0, dropped = 0;

	if (l->fd == -1)
		return; /* already going */
	log_info("link to DC %d (%s) closed: %s; %zu clients", p->dc,
	    addr_str((struct sockaddr *)&l->me, a, sizeof(a)), why,
	    l->nclients);
	/* Off the pool first, so clients cannot be placed back on it. */
	event_del(&l->rev);
	event_del(&l->wev);
	close(l->fd);
	l->fd = -1;
	for (struct mlink **pp = &p->links; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	p->nlinks--;
	while (l->clients) {
		struct session *s = l->clients;
		link_detach(s);
		if (s->sent_mark > l->written_total) {
			/* Part of its last packet never left: closing it is
			 * the only honest thing. */
			dropped++;
			shm_add(W.metrics, M_LINKS_DROPPED, 1);
			s->conn_id_dead = 1;
			session_close(s,
			    "its middle-proxy link closed "
			    "mid-packet");
			continue;
		}
		moved++;
		shm_add(W.metrics, M_LINKS_MIGRATED, 1);
		s->sent_mark = 0;
		place(s);
	}
	if (moved || dropped)
		log_info("link to DC %d: %zu clients moved, %zu closed", p->dc,
		    moved, dropped);
	rpc_link_free(&l->rpc);
	free(l->rbuf);
	free(l->wq.buf);
	free(l);
	shm_sub(W.metrics, M_CURRENT_DC, 1);
	pool_maintain(p);
}

static void
link_granted(int16_t dc, const struct rpc_link_keys *keys,
    const struct sockaddr_storage *me, int fd)
{
	struct mpool *p = pool_get(dc);
	char a[ADDR_STRLEN];

	if (p == NULL) {
		close(fd);
		return;
	}
	if (p->inflight)
		p->inflight--;
	struct mlink *l = calloc(1, sizeof(*l));
	if (l == NULL || rpc_link_restore(&l->rpc, keys, LINK_FRAME_MAX)) {
		free(l);
		close(fd);
		log_warnx("cannot take a link to DC %d", dc);
		return;
	}
	fd_set_nonblock(fd);
	l->fd = fd;
	l->pool = p;
	l->me = *me;
	l->last_rx_ms = l->last_ping_ms = coarse_now_ms();
	event_assign(
	    &l->rev, W.base, fd, EV_READ | EV_PERSIST, link_read_cb, l);
	event_assign(
	    &l->wev, W.base, fd, EV_WRITE | EV_PERSIST, link_write_cb, l);
	l->next = p->links;
	p->links = l;
	p->nlinks++;
	p->failures = 0;
	shm_add(W.metrics, M_CURRENT_DC, 1);
	link_want_read(l, 1);
	log_info("link to DC %d (%s) ready: %zu links, %zu clients waiting", dc,
	    addr_str((const struct sockaddr *)me, a, sizeof(a)), p->nlinks,
	    p->nwaiting);
	/* Waiting clients, spread over the links. */
	while (p->waiting) {
		struct session *s = p->waiting;
		wait_remove(p, s);
		attach(s, pool_pick(p));
	}
	pool_maintain(p);
}

static void
request_link(struct mpool *p)
{
	struct msgbuf mb;

	if (W.dcpool_fd == -1)
		return; /* asked again when the dcpool is back */
	msgbuf_init(&mb, MSG_LINK_REQUEST);
	msgbuf_put_u32(&mb, (uint32_t)(int32_t)p->dc);
	msgbuf_put_u32(&mb, ++M.next_req);
	if (msgbuf_send(W.dcpool_fd, &mb, -1) == -1) {
		log_warn("asking the dcpool for a link");
		return;
	}
	p->inflight++;
}

/* Keep the pool at its size: min_links, and one per clients_per_link. */
static void
pool_maintain(struct mpool *p)
{
	size_t clients = p->nwaiting;
	for (struct mlink *l = p->links; l; l = l->next)
		clients += l->nclients;
	size_t per = (size_t)W.cfg->middle_clients_per_link;
	size_t want = (clients + per - 1) / per;
	if (want < (size_t)W.cfg->middle_min_links)
		want = W.cfg->middle_min_links;
	if (clients == 0 && p->nlinks == 0 && p->inflight == 0 &&
	    W.cfg->middle_min_links == 0)
		return;
	if (coarse_now_ms() < p->retry_at_ms)
		return;
	while (p->nlinks + p->inflight < want && W.dcpool_fd != -1) {
		size_t before = p->inflight;
		request_link(p);
		if (p->inflight == before)
			break;
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	const struct config *cfg = W.cfg;
	uint64_t now = coarse_now_ms();

	for (size_t i = 0; i < M.npools; i++) {
		struct mpool *p = &M.pools[i];
		struct mlink *l = p->links, *next;
		for (; l; l = next) {
			next = l->next;
			if (l->error) {
				link_dead(l, "write error");
				continue;
			}
			if (now - l->last_rx_ms >
			    (uint64_t)cfg->middle_ping_timeout * 1000) {
				link_dead(l, "no answer to pings");
				continue;
			}
			if (now - l->last_rx_ms >=
			        (uint64_t)cfg->middle_ping_interval * 1000 &&
			    now - l->last_ping_ms >=
			        (uint64_t)cfg->middle_ping_interval * 1000) {
				uint8_t msg[RPC_PING_LEN];
				uint64_t id;
				random_bytes(&id, sizeof(id));
				l->last_ping_ms = now;
				link_send_small(l, msg,
				    rpc_ping_build(msg, sizeof(msg), id));
				continue; /* the send may kill it */
			}
			/* Clients that stay over their output bound. */
			struct session *s = l->clients, *sn;
			for (; s; s = sn) {
				sn = s->link_next;
				if (s->over_since_ms &&
				    now - s->over_since_ms >
				        (uint64_t)cfg
				                ->middle_client_queue_timeout *
				            1000)
					session_close(
					    s, "client does not read");
			}
		}
		struct session *s = p->waiting, *sn;
		for (; s; s = sn) {
			sn = s->link_next;
			if (fallback_ok(s, p))
				fallback(s);
			else if (now - s->wait_since_ms > WAIT_MAX_MS(cfg))
				session_close(s, "no middle-proxy link");
		}
		pool_maintain(p);
	}
	struct timeval tv = { 0, TICK_MS * 1000 };
	evtimer_add(&M.tick, &tv);
}

/* ------------------------------------------------------------ dcpool */

void
middle_dcpool_connected(void)
{
	/* Requests sent to a dcpool that died are lost: ask again. */
	for (size_t i = 0; i < M.npools; i++) {
		M.pools[i].inflight = 0;
		M.pools[i].retry_at_ms = 0;
		pool_maintain(&M.pools[i]);
	}
}

void
middle_dcpool_msg(struct msg *m)
{
	uint32_t dc, req, retry, alen;
	struct rpc_link_keys keys;
	struct sockaddr_storage me;
	struct mpool *p;

	switch (m->type) {
	case MSG_LINK_GRANT:
		msg_get_u32(m, &dc);
		msg_get_u32(m, &req);
		msg_get_bytes(m, &keys, sizeof(keys));
		msg_get_u32(m, &alen);
		msg_get_bytes(m, &me, sizeof(me));
		if (msg_end(m) == -1 || m->fd == -1 || alen > sizeof(me)) {
			log_warnx("malformed %s from the dcpool",
			    msg_type_name(m->type));
			return;
		}
		link_granted((int16_t)(int32_t)dc, &keys, &me, msg_take_fd(m));
		break;
	case MSG_LINK_REFUSED:
		msg_get_u32(m, &dc);
		msg_get_u32(m, &req);
		msg_get_u32(m, &retry);
		if (msg_end(m) == -1) {
			log_warnx("malformed %s from the dcpool",
			    msg_type_name(m->type));
			return;
		}
		if ((p = pool_get((int16_t)(int32_t)dc)) == NULL)
			return;
		if (p->inflight)
			p->inflight--;
		p->failures++;
		p->retry_at_ms = coarse_now_ms() + retry;
		log_debug("no link to DC %d yet; retry in %u ms", p->dc, retry);
		break;
	default:
		log_warnx("unexpected message %s from the dcpool",
		    msg_type_name(m->type));
	}
}

void
middle_init(void)
{
	evtimer_assign(&M.tick, W.base, tick_cb, NULL);
	struct timeval tv = { 0, TICK_MS * 1000 };
	evtimer_add(&M.tick, &tv);
}
