/*
 * Middle-proxy mode, the client side (spec B.2, A.3): the client's
 * packets become RPC_PROXY_REQs on its link, one each; the ME's answers
 * go back framed in the client's own transport. Per-client flow control
 * as middle.h describes it.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "framing.h"
#include "log.h"
#include "middle.h"
#include "simage.h"
#include "shm.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

struct middle M;

/*
 * The most a client's kept bytes can be: a partial frame (the largest
 * packet, a 4-byte header, up to 15 bytes of padding) plus one read.
 */
#define CLIENT_INBUF_MAX (FRAME_MAX_PACKET + 4 + 16 + SESSION_SCRATCH_LEN)

static void client_read_cb(evutil_socket_t, short, void *);

/* ------------------------------------------------------------ helpers */

static struct session_hash_bucket *
hash_bucket(uint64_t id)
{
	return &M.hash[(id ^ (id >> 32)) & (MIDDLE_HASH_SIZE - 1)];
}

struct session *
middle_conn_find(uint64_t id)
{
	struct session *s;

	LIST_FOREACH(s, hash_bucket(id), hash_entry)
	if (s->conn_id == id)
		return s;
	return NULL;
}

static uint64_t
new_conn_id(void)
{
	uint64_t id;
	do {
		id = cheap_rand64();
	} while (id == 0 || middle_conn_find(id) != NULL);
	return id;
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

/*
 * Past client_queue_max the client is not read any more, but what it
 * asked before still comes: up to what its link lets pile up for all
 * its clients (it stops reading past link_queue_max, after one read of
 * LINK_RBUF_MAX). Only a queue beyond that is a client the link could
 * not hold back. A client that does not read is closed sooner, by
 * client_queue_timeout, or when it holds its link up (LINK_STALL_MS).
 */
size_t
client_hard_max(void)
{
	return W.cfg->middle_client_queue_max + W.cfg->middle_link_queue_max +
	    LINK_RBUF_MAX;
}

static size_t
queued(const struct session *s)
{
	return s->c.out.len - s->c.out.off;
}

/*
 * The client's queue changed: keep its link's sum exact (the link counts
 * what each client added, and takes exactly that back when it leaves),
 * and apply the client's own bounds. May close the session.
 */
static void
client_queue_changed(struct session *s)
{
	size_t q = queued(s);
	struct mlink *l = s->link;

	if (l) {
		l->client_bytes = l->client_bytes - s->link_counted + q;
		s->link_counted = q;
	}
	if (q > client_hard_max()) {
		char a[ADDR_STRLEN];
		log_info("%s: closed: %zu bytes of answers unread",
		    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), q);
		shm_add(W.metrics, M_SLOW_CLIENTS, 1);
		session_close(s, "client does not read");
	} else if (q > W.cfg->middle_client_queue_max) {
		/* Read no more requests from it, so the ME's answers to it
		 * dry up; the link and the other clients keep going. */
		if (s->over_since_ms == 0)
			s->over_since_ms = coarse_now_ms();
		side_want_read(s, &s->c, 0);
	} else if (q <= W.cfg->middle_client_queue_max / 2 &&
	    s->over_since_ms) {
		s->over_since_ms = 0;
		if (l && !l->clients_paused)
			side_want_read(s, &s->c, 1);
	}
	if (l)
		link_clients_changed(l);
}

/* ------------------------------------------------------------ to clients */

/*
 * Queue plain bytes (the pieces p[0..np)) for the client: encrypted with
 * its stream straight into its output queue and, for fake TLS, cut into
 * records. Pieces under CLIENT_COPY_MAX (frame headers, padding, small
 * answers) are copied first and encrypted together. They go out in one
 * send per client at the end of the turn, after every link that had
 * something was read (client_flush_dirty).
 */
#define CLIENT_COPY_MAX 256
static int
client_send(struct session *s, const uint8_t *const *p, const size_t *n, int np)
{
	size_t total = 0;
	for (int i = 0; i < np; i++)
		total += n[i];
	size_t records = s->is_tls ? total / TLS_DRS_MIN + 1 : 0;
	uint8_t *dst =
	    side_room(&s->c, total + records * TLS_RECORD_HEADER_LEN);
	if (dst == NULL)
		return -1;
	crypto_stream *enc = s->c_enc;
	size_t out = 0, plain = 0; /* dst[plain..out) is copied, not
	                              encrypted yet */
	int i = 0;
	size_t ioff = 0, left = total;
	while (left > 0) {
		size_t chunk = left;
		if (s->is_tls) {
			size_t max = tls_record_size(s, s->tls_out_records++);
			if (chunk > max)
				chunk = max;
			tls_record_header(dst + out, chunk);
			out += TLS_RECORD_HEADER_LEN;
			plain = out;
		}
		left -= chunk;
		while (chunk > 0) {
			size_t take = n[i] - ioff < chunk ? n[i] - ioff : chunk;
			if (take < CLIENT_COPY_MAX)
				memcpy(dst + out, p[i] + ioff, take);
			else {
				if (out > plain &&
				    crypto_stream_apply(enc, dst + plain,
				        dst + plain, out - plain))
					return -1;
				if (crypto_stream_apply(
				        enc, p[i] + ioff, dst + out, take))
					return -1;
				plain = out + take;
			}
			out += take;
			ioff += take;
			chunk -= take;
			if (ioff == n[i]) {
				i++;
				ioff = 0;
			}
		}
		if (out > plain &&
		    crypto_stream_apply(
		        enc, dst + plain, dst + plain, out - plain))
			return -1;
		plain = out;
	}
	s->c.out.len += out;
	if (!s->dirty) {
		s->dirty = 1;
		TAILQ_INSERT_TAIL(&M.dirty, s, dirty_entry);
	}
	return 0;
}

static void
dirty_remove(struct session *s)
{
	if (!s->dirty)
		return;
	TAILQ_REMOVE(&M.dirty, s, dirty_entry);
	s->dirty = 0;
}

void
client_flush_dirty(void)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&M.dirty)) != NULL) {
		struct pending *q = &s->c.out;

		dirty_remove(s);
		while (!s->c.writing && q->off < q->len) {
			ssize_t w = send(s->c.fd, q->buf + q->off,
			    q->len - q->off, MSG_NOSIGNAL);
			if (w == -1) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					session_close(s, "write error");
				break;
			}
			q->off += w;
			s->drained_ms = coarse_now_ms();
		}
		if (s->closed)
			continue;
		if (q->off == q->len) {
			free(q->buf);
			memset(q, 0, sizeof(*q));
		} else
			side_want_write(s, &s->c, 1);
		client_queue_changed(s);
	}
}

void
middle_client_drained(struct session *s, size_t n)
{
	if (n)
		s->drained_ms = coarse_now_ms();
	client_queue_changed(s);
}

void
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
		cheap_rand_bytes(pad, padlen);
	const uint8_t *p[3] = { hdr, data, pad };
	size_t n[3] = { hl, len, padlen };
	if (client_send(s, p, n, 3) == -1) {
		session_close(s, "write error");
		return;
	}
	shm_add(W.metrics, M_BYTES_S2C, len);
	shm_listener_stat_add(W.metrics, s->l->shm_index, LS_BYTES_S2C, len);
	if (s->urec)
		(void)limits_charge(s, 0, len); /* may close it (quota) */
}

void
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

/*
 * Does this client hold up its link? It does when it is over its own
 * bound, or has not taken a byte of its answers for LINK_STALL_MS: a
 * client that reads keeps its place, however much it has queued.
 */
static int
holds_up(const struct session *s, uint64_t now)
{
	if (s->link_counted == 0)
		return 0;
	if (s->over_since_ms && now - s->over_since_ms >= LINK_STALL_MS)
		return 1;
	return now - s->drained_ms >= LINK_STALL_MS;
}

int
client_shed(struct mlink *l)
{
	size_t target = W.cfg->middle_link_queue_max / 2;
	size_t closed = 0;
	uint64_t now = coarse_now_ms();

	while (l->client_bytes > target && !l->closed) {
		struct session *s, *worst = NULL;
		TAILQ_FOREACH(s, &l->clients, link_entry)
		if (holds_up(s, now) &&
		    (worst == NULL || s->link_counted > worst->link_counted))
			worst = s;
		if (worst == NULL)
			break;
		shm_add(W.metrics, M_SLOW_CLIENTS, 1);
		session_close(worst,
		    "client does not read (it holds up its middle-proxy "
		    "link)");
		closed++;
	}
	if (closed)
		log_info("link to DC %d: closed %zu clients that did not read "
		         "for %d ms and held it up",
		    l->pool->dc, closed, LINK_STALL_MS);
	return l->client_bytes > target && !l->closed;
}

/* ------------------------------------------------------------ from clients */

/* Keep the bytes of a partial frame (and only those) for the next read. */
static int
keep_partial(struct session *s, const uint8_t *p, size_t plen)
{
	if (plen == 0) {
		free(s->inbuf);
		s->inbuf = NULL;
		s->inlen = s->incap = 0;
		return 0;
	}
	if (p == s->inbuf) {
		s->inlen = plen;
		return 0;
	}
	if (s->inbuf == NULL || s->incap < plen) {
		uint8_t *b = realloc(s->inbuf, plen);
		if (b == NULL)
			return -1;
		s->inbuf = b;
		s->incap = plen;
	}
	memmove(s->inbuf, p, plen);
	s->inlen = plen;
	return 0;
}

static int
inbuf_append(struct session *s, const uint8_t *buf, size_t len)
{
	size_t want = s->inlen + len;

	if (want > CLIENT_INBUF_MAX)
		return -1;
	if (want > s->incap) {
		size_t cap = s->incap ? s->incap : 4096;
		while (cap < want)
			cap *= 2;
		if (cap > CLIENT_INBUF_MAX)
			cap = CLIENT_INBUF_MAX;
		uint8_t *b = realloc(s->inbuf, cap);
		if (b == NULL)
			return -1;
		s->inbuf = b;
		s->incap = cap;
	}
	memcpy(s->inbuf + s->inlen, buf, len);
	s->inlen += len;
	return 0;
}

/*
 * One packet, one RPC_PROXY_REQ on the client's link, in two steps so
 * that the packet can be decrypted straight into its frame:
 * request_room() gives the place of the packet's pktlen bytes in the
 * link's queue, request_queue() checks them (spec A.3.4: a dropped
 * packet queues nothing), puts the header before them and seals the
 * frame.
 */
static size_t
request_hdrlen(const struct session *s)
{
	return ad_tag_of(s) ? RPC_PROXY_REQ_HDR_TAG : RPC_PROXY_REQ_HDR;
}

static uint8_t *
request_room(struct session *s, size_t pktlen)
{
	size_t h = request_hdrlen(s);
	uint8_t *f = wq_room(&s->link->wq, RPC_FRAME_SPACE(h + pktlen));

	return f ? f + RPC_FRAME_HDR + h : NULL;
}

static int
request_queue(struct session *s, const struct frame_info *fi, uint8_t *pkt)
{
	struct mlink *l = s->link;
	const uint8_t *tag = ad_tag_of(s);
	size_t h = request_hdrlen(s);
	uint8_t *f = pkt - h - RPC_FRAME_HDR;

	if (!frame_packet_check(pkt, fi->pktlen)) {
		log_debug("dropped a malformed client packet of %zu bytes",
		    fi->pktlen);
		return 0;
	}
	uint32_t flags = rpc_proxy_req_flags(
	    transport_of(s), fi->quickack, tag != NULL, pkt, fi->pktlen);
	if (rpc_proxy_req_header(f + RPC_FRAME_HDR, h, flags, s->conn_id,
	        (struct sockaddr *)&s->peer, (struct sockaddr *)&s->local,
	        tag) != h ||
	    link_queue_frame(
	        l, f, RPC_FRAME_SPACE(h + fi->pktlen), h + fi->pktlen))
		return -1;
	s->sent_mark = l->queued_total;
	shm_add(W.metrics, M_BYTES_C2S, fi->pktlen);
	shm_listener_stat_add(
	    W.metrics, s->l->shm_index, LS_BYTES_C2S, fi->pktlen);
	return 0;
}

/*
 * Client bytes, plain: cut into packets, one PROXY_REQ each; a partial
 * frame is kept. Without a link everything is kept (the client is not
 * read while it waits, so that is bounded). May close the session.
 */
static void
client_packets(struct session *s, const uint8_t *buf, size_t len)
{
	struct mlink *l = s->link;
	const uint8_t *p = buf;
	size_t plen = len;

	if (s->inlen || l == NULL) {
		if (inbuf_append(s, buf, len) == -1) {
			session_close(s, "client data over its bound");
			return;
		}
		if (l == NULL)
			return; /* waiting for a link */
		p = s->inbuf;
		plen = s->inlen;
	}
	while (plen > 0) {
		struct frame_info fi;
		int r = frame_decode(kind_of(s), p, plen, &fi);
		if (r == FRAME_NEED_MORE)
			break;
		if (r == FRAME_ERROR) {
			session_close(s, "bad frame from the client");
			return;
		}
		uint8_t *pkt = request_room(s, fi.pktlen);
		if (pkt == NULL) {
			session_close(s, "out of memory");
			return;
		}
		memcpy(pkt, p + fi.hdrlen, fi.pktlen);
		if (request_queue(s, &fi, pkt) == -1) {
			session_close(s, "building PROXY_REQ failed");
			return;
		}
		p += fi.total;
		plen -= fi.total;
	}
	if (keep_partial(s, p, plen) == -1)
		session_close(s, "out of memory");
}

/*
 * Client bytes as they arrived (still encrypted; TLS records already
 * removed; the client has a link), decrypted frame by frame: a whole
 * frame's packet goes straight from the read buffer into its PROXY_REQ.
 * Only a frame cut by the end of a read passes through inbuf as
 * plaintext. May close the session.
 */
static int
client_stream(struct session *s, uint8_t *c, size_t len)
{
	enum frame_kind kind = kind_of(s);
	crypto_stream *dec = s->c_dec;

	while (len > 0 && !s->closed) {
		struct frame_info fi;
		uint8_t h[4];
		size_t take = len;

		if (s->inlen || len < sizeof(h)) {
			/* Complete the partial frame first, no further. */
			if (s->inlen) {
				(void)frame_decode(
				    kind, s->inbuf, s->inlen, &fi);
				size_t want = fi.total ? fi.total - s->inlen
				                       : sizeof(h) - s->inlen;
				if (want < take)
					take = want;
			}
			if (crypto_stream_apply(dec, c, c, take))
				return -1;
			client_packets(s, c, take);
			c += take;
			len -= take;
			continue;
		}
		if (crypto_stream_apply(dec, c, h, sizeof(h)))
			return -1;
		if (frame_decode(kind, h, sizeof(h), &fi) == FRAME_ERROR) {
			session_close(s, "bad frame from the client");
			return 0;
		}
		if (fi.total > len) {
			/* Cut by the end of this read: keep it, plain. */
			if (crypto_stream_apply(dec, c + sizeof(h),
			        c + sizeof(h), len - sizeof(h)) ||
			    inbuf_append(s, h, sizeof(h)) == -1 ||
			    inbuf_append(s, c + sizeof(h), len - sizeof(h)) ==
			        -1)
				return -1;
			return 0;
		}
		/* The header took fi.hdrlen of h; the packet has the rest. */
		size_t pre = sizeof(h) - fi.hdrlen;
		size_t tail = fi.total - sizeof(h) - (fi.pktlen - pre);
		uint8_t *pkt = request_room(s, fi.pktlen);
		if (pkt == NULL)
			return -1;
		memcpy(pkt, h + fi.hdrlen, pre);
		if (crypto_stream_apply(
		        dec, c + sizeof(h), pkt + pre, fi.pktlen - pre))
			return -1;
		/* Padding past the last whole word: only the stream moves. */
		uint8_t *pad = c + fi.total - tail;
		if (tail && crypto_stream_apply(dec, pad, pad, tail))
			return -1;
		if (request_queue(s, &fi, pkt) == -1) {
			session_close(s, "building PROXY_REQ failed");
			return 0;
		}
		c += fi.total;
		len -= fi.total;
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
	struct mlink *l = s->link;
	if (client_stream(s, buf, len) == -1) {
		session_close(s, "out of memory or crypto failure");
		return;
	}
	/* The user's quota and rate (may close it or pause its reads). */
	if (!s->closed && s->urec)
		(void)limits_charge(s, 1, len);
	/* Even for a client just closed: its CLOSE_CONN is queued. */
	link_kick(l);
}

/* ------------------------------------------------------------ placing */

void
client_attach(struct session *s, struct mlink *l)
{
	/* Its stream to the client will move on: no way back to direct. */
	explicit_bzero(s->p2c_key, sizeof(s->p2c_key));
	explicit_bzero(s->p2c_iv, sizeof(s->p2c_iv));
	s->had_link = 1;
	s->link = l;
	TAILQ_INSERT_HEAD(&l->clients, s, link_entry);
	l->nclients++;
	l->pool->idle_since_ms = 0;
	s->link_counted = 0;
	s->drained_ms = coarse_now_ms();
	client_queue_changed(s);
	if (s->closed)
		return;
	side_want_read(s, &s->c, !l->clients_paused && s->over_since_ms == 0);
	if (s->inlen) {
		/* What arrived while it waited. */
		uint8_t *b = s->inbuf;
		size_t n = s->inlen;
		s->inbuf = NULL;
		s->inlen = s->incap = 0;
		client_packets(s, b, n);
		free(b);
		link_kick(l);
	}
}

void
client_detach(struct session *s)
{
	struct mlink *l = s->link;

	if (l == NULL)
		return;
	TAILQ_REMOVE(&l->clients, s, link_entry);
	l->nclients--;
	l->client_bytes -= s->link_counted;
	s->link_counted = 0;
	s->link = NULL;
	/* The client that stopped the link may be the one leaving. */
	link_clients_changed(l);
}

void
middle_start(
    struct session *s, struct o2_session *o2, uint8_t *rest, size_t restlen)
{
	socklen_t sl = sizeof(s->local);

	s->c_dec = o2->dec;
	s->c_enc = o2->enc;
	memcpy(s->c_dec_key, o2->dec_key, sizeof(s->c_dec_key));
	memcpy(s->c_enc_key, o2->enc_key, sizeof(s->c_enc_key));
	o2->dec = o2->enc = NULL;
	memcpy(s->p2c_key, o2->enc_key, sizeof(s->p2c_key));
	memcpy(s->p2c_iv, o2->enc_iv, sizeof(s->p2c_iv));
	o2_session_free(o2);
	if (getsockname(s->c.fd, (struct sockaddr *)&s->local, &sl) == -1) {
		session_close(s, "getsockname failed");
		return;
	}
	s->mode = RELAY_MIDDLE;
	s->state = SS_RELAY;
	s->conn_id = new_conn_id();
	LIST_INSERT_HEAD(hash_bucket(s->conn_id), s, hash_entry);
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
			return;
		}
		/* Parked until a link takes it. */
		if (inbuf_append(s, rest, restlen) == -1) {
			session_close(s, "out of memory");
			return;
		}
	}
	pool_place(s);
}

void
middle_session_closed(struct session *s)
{
	struct mlink *l = s->link;

	if (s->conn_id == 0)
		return;
	pool_wait_remove(s);
	dirty_remove(s);
	client_detach(s);
	LIST_REMOVE(s, hash_entry);
	if (l && !s->conn_id_dead && !s->handed_over) {
		uint8_t msg[RPC_CLOSE_LEN];
		link_send_small(
		    l, msg, rpc_close_conn_build(msg, sizeof(msg), s->conn_id));
	}
	s->conn_id = 0;
}

void
middle_init(void)
{
	for (size_t i = 0; i < MIDDLE_HASH_SIZE; i++)
		LIST_INIT(&M.hash[i]);
	TAILQ_INIT(&M.dirty);
	mlink_init();
	mpool_init();
}

/* ------------------------------------------------------------ handoff */

int
middle_to_image(struct session *s, uint32_t link, struct session_image *im)
{
	im->c_enc.present = 1;
	memcpy(im->c_enc.key, s->c_enc_key, 32);
	if (crypto_ctr_export(s->c_enc, im->c_enc.ctr, &im->c_enc.num) == -1)
		return -1;
	im->conn_id = s->conn_id;
	im->link = link;
	im->mflags = (s->had_link ? SIMAGE_M_HAD_LINK : 0) |
	    (s->conn_id_dead ? SIMAGE_M_CONN_ID_DEAD : 0);
	im->sent_mark = s->sent_mark;
	im->inbuf = s->inbuf;
	im->inlen = s->inlen;
	return 0;
}

void
middle_adopt(struct session *s, const struct session_image *im, struct mlink *l,
    int link_lost)
{
	s->mode = RELAY_MIDDLE;
	s->state = SS_RELAY;
	s->conn_id = im->conn_id;
	LIST_INSERT_HEAD(hash_bucket(s->conn_id), s, hash_entry);
	s->had_link = (im->mflags & SIMAGE_M_HAD_LINK) != 0;
	s->conn_id_dead = (im->mflags & SIMAGE_M_CONN_ID_DEAD) != 0;
	s->sent_mark = im->sent_mark;
	s->drained_ms = coarse_now_ms();
	event_assign(&s->c.rev, W.base, s->c.fd, EV_READ | EV_PERSIST,
	    client_read_cb, s);
	event_assign(&s->c.wev, W.base, s->c.fd, EV_WRITE | EV_PERSIST,
	    relay_write_cb, &s->c);
	struct timeval tv = { W.cfg->idle_timeout, 0 };
	evtimer_add(&s->timer, &tv);
	if (im->inlen && inbuf_append(s, im->inbuf, im->inlen) == -1) {
		session_close(s, "out of memory while adopting it");
		return;
	}
	if (s->c.out.len > s->c.out.off)
		side_want_write(s, &s->c, 1);
	if (l != NULL) {
		s->pool = l->pool;
		client_attach(s, l);
		return;
	}
	if (link_lost && s->sent_mark > 0) {
		/* Its link did not come over and part of its last packet
		 * may not have left: as when a link closes. */
		shm_add(W.metrics, M_LINKS_DROPPED, 1);
		s->conn_id_dead = 1;
		session_close(s,
		    "its middle-proxy link was lost in the "
		    "handoff");
		return;
	}
	s->sent_mark = 0;
	pool_place(s);
}