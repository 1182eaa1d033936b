/*
 * Middle-proxy links in a worker: I/O, RPC framing and the dispatch of
 * what the middle proxy (ME) sends (spec B.2). middle.h says how the
 * parts fit and what the flow-control bounds are.
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
#include <sys/uio.h>

#include "log.h"
#include "middle.h"
#include "simage.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

static void link_flush(struct mlink *);

/*
 * Why a link died, for the log: the ME closing it shows up as EOF, a
 * reset, or a write that fails, whichever comes first.
 */
static const char *
link_errno_reason(int err)
{
	switch (err) {
	case EPIPE:
		return "closed by the middle proxy (write: broken pipe)";
	case ECONNRESET:
		return "closed by the middle proxy (reset)";
	default:
		return strerror(err);
	}
}

/* ------------------------------------------------------------ queues */

static struct wchunk *wfree; /* recycled WQ_CHUNK chunks */
static size_t nwfree;

static struct wchunk *
chunk_get(size_t need)
{
	struct wchunk *c;

	if (need <= WQ_CHUNK && wfree) {
		c = wfree;
		wfree = c->next;
		nwfree--;
	} else {
		size_t cap = need > WQ_CHUNK ? need : WQ_CHUNK;
		if ((c = malloc(sizeof(*c) + cap)) == NULL)
			return NULL;
		c->cap = cap;
	}
	c->next = NULL;
	c->off = c->enc = c->len = 0;
	return c;
}

static void
chunk_put(struct wchunk *c)
{
	if (c->cap == WQ_CHUNK && nwfree < WQ_FREE_MAX) {
		c->next = wfree;
		wfree = c;
		nwfree++;
	} else
		free(c);
}

uint8_t *
wq_room(struct wqueue *q, size_t need)
{
	struct wchunk *c = q->tail;

	if (c == NULL || c->cap - c->len < need) {
		if ((c = chunk_get(need)) == NULL)
			return NULL;
		if (q->tail)
			q->tail->next = c;
		else
			q->head = c;
		q->tail = c;
	}
	return c->data + c->len;
}

static void
wq_commit(struct wqueue *q, size_t n)
{
	q->tail->len += n;
	q->pending += n;
}

static size_t
wq_pending(const struct wqueue *q)
{
	return q->pending;
}

/* n bytes were written: drop what went out, recycle empty chunks. */
static void
wq_consume(struct wqueue *q, size_t n)
{
	q->pending -= n;
	while (q->head && (n > 0 || q->head->off == q->head->len)) {
		struct wchunk *c = q->head;
		size_t left = c->len - c->off;
		size_t take = n < left ? n : left;
		c->off += take;
		n -= take;
		if (c->off < c->len)
			break;
		q->head = c->next;
		if (q->head == NULL)
			q->tail = NULL;
		chunk_put(c);
	}
}

static void
wq_free(struct wqueue *q)
{
	struct wchunk *c;

	while ((c = q->head) != NULL) {
		q->head = c->next;
		chunk_put(c);
	}
	memset(q, 0, sizeof(*q));
}

/* The pending bytes, all encrypted, in one chunk (for a handoff image);
 * NULL if none. */
static const uint8_t *
wq_linear(struct wqueue *q)
{
	if (q->pending == 0)
		return NULL;
	if (q->head != q->tail) {
		struct wchunk *c = chunk_get(q->pending);
		if (c == NULL)
			return NULL;
		for (struct wchunk *x = q->head; x; x = x->next) {
			memcpy(c->data + c->len, x->data + x->off,
			    x->len - x->off);
			c->len += x->len - x->off;
		}
		c->enc = c->len;
		size_t pending = q->pending;
		wq_free(q);
		q->head = q->tail = c;
		q->pending = pending;
	}
	return q->head->data + q->head->off;
}

/* ------------------------------------------------------------ I/O */

static void
link_want_read(struct mlink *l, int on)
{
	if (!l->closed)
		l->reading = event_want(&l->rev, l->reading, on && !l->held);
}

static void
link_want_write(struct mlink *l, int on)
{
	if (!l->closed)
		l->writing = event_want(&l->wev, l->writing, on);
}

int
link_queue_frame(struct mlink *l, uint8_t *frame, size_t cap, size_t len)
{
	size_t n = rpc_link_frame(&l->rpc, frame, cap, len);
	if (n == 0)
		return -1;
	wq_commit(&l->wq, n);
	l->queued_total += n;
	return 0;
}

void
link_send_small(struct mlink *l, const uint8_t *payload, size_t len)
{
	uint8_t *f;

	if (l->closed || (f = wq_room(&l->wq, RPC_FRAME_SPACE(len))) == NULL)
		return;
	memcpy(f + RPC_FRAME_HDR, payload, len);
	if (link_queue_frame(l, f, RPC_FRAME_SPACE(len), len) == -1)
		log_warnx("sealing an RPC frame failed");
	link_kick(l);
}

void
link_ping(struct mlink *l)
{
	uint8_t msg[RPC_PING_LEN];
	uint64_t id;

	random_bytes(&id, sizeof(id));
	l->last_ping_ms = coarse_now_ms();
	link_send_small(l, msg, rpc_ping_build(msg, sizeof(msg), id));
}

static void
link_pause_clients(struct mlink *l, int pause)
{
	struct session *s;

	if (pause == l->clients_paused)
		return;
	l->clients_paused = pause;
	TAILQ_FOREACH(s, &l->clients, link_entry)
	side_want_read(s, &s->c, !pause && s->over_since_ms == 0);
}

/*
 * Encrypt what the links have framed, side by side: each round takes
 * the first chunk with framed bytes of every link (a link's chunks are
 * one chain, in order). A link whose encryption fails is marked broken
 * (its write event closes it).
 */
static void
links_encrypt(struct mlink **ls, size_t n)
{
	struct rpc_link_bytes b[64];
	struct wchunk *c[64];

	for (;;) {
		size_t nb = 0;
		for (size_t i = 0; i < n && nb < 64; i++) {
			struct wchunk *x = ls[i]->wq.head;
			while (x && x->enc == x->len)
				x = x->next;
			if (x == NULL || ls[i]->error || ls[i]->closed)
				continue;
			c[nb] = x;
			b[nb++] = (struct rpc_link_bytes){ &ls[i]->rpc,
				x->data + x->enc, x->len - x->enc };
		}
		if (nb == 0)
			return;
		if (rpc_links_encrypt(b, nb) == -1) {
			for (size_t i = 0; i < n; i++)
				if (!ls[i]->error && !ls[i]->closed) {
					ls[i]->error = EIO;
					event_active(&ls[i]->wev, EV_WRITE, 1);
				}
			return;
		}
		for (size_t i = 0; i < nb; i++)
			c[i]->enc = c[i]->len;
	}
}

static void
link_flush(struct mlink *l)
{
	struct wqueue *q = &l->wq;
	struct iovec iov[WQ_IOV_MAX];

	if (l->error || l->closed)
		return;
	links_encrypt(&l, 1); /* what was framed since the last turn */
	while (q->pending > 0 && !l->error) {
		int n = 0;
		for (struct wchunk *c = q->head; c && n < WQ_IOV_MAX;
		     c = c->next) {
			iov[n].iov_base = c->data + c->off;
			iov[n++].iov_len = c->enc - c->off;
		}
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
		ssize_t w = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				/* Callers may be deep in a read loop over
				 * this link's clients: its write event
				 * closes it next turn. */
				l->error = errno;
				event_active(&l->wev, EV_WRITE, 1);
				return;
			}
			break;
		}
		wq_consume(q, w);
		l->written_total += w;
		if (q->pending > 0 && n < WQ_IOV_MAX)
			break; /* the socket took what it could */
	}
	size_t pend = wq_pending(q);
	link_want_write(l, pend > 0);
	if (pend > W.cfg->middle_link_queue_max)
		link_pause_clients(l, 1);
	else if (l->clients_paused && pend < W.cfg->middle_link_queue_max / 2)
		link_pause_clients(l, 0);
}

static void
cflush_cb(evutil_socket_t fd, short what, void *arg)
{
	client_flush_dirty();
}

/* End of a turn: the frames of every link that queued some, encrypted
 * at once, then each link flushed. */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *ls[64], *l;

	while (!TAILQ_EMPTY(&M.flushq)) {
		size_t n = 0;
		while (n < 64 && (l = TAILQ_FIRST(&M.flushq)) != NULL) {
			TAILQ_REMOVE(&M.flushq, l, flush_entry);
			l->flush_queued = 0;
			ls[n++] = l;
		}
		links_encrypt(ls, n);
		for (size_t i = 0; i < n; i++) {
			l = ls[i];
			if (!l->writing && !l->error)
				link_flush(l);
			if (l->error)
				link_close(l, link_errno_reason(l->error));
		}
	}
}

void
link_kick(struct mlink *l)
{
	if (l->closed)
		return;
	/* Clients read later in this turn queue no more on a full link. */
	if (wq_pending(&l->wq) > W.cfg->middle_link_queue_max)
		link_pause_clients(l, 1);
	if (l->flush_queued)
		return;
	/* Even when the socket is known full (its write event sends): the
	 * frames are encrypted with the other links'. */
	l->flush_queued = 1;
	TAILQ_INSERT_TAIL(&M.flushq, l, flush_entry);
	event_active(&M.flush_ev, EV_TIMEOUT, 1);
}

static void
link_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;

	if (!l->error)
		link_flush(l);
	if (l->error)
		link_close(l, link_errno_reason(l->error));
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
		s = middle_conn_find(a.conn_id);
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
		s = middle_conn_find(id);
		if (s && s->link == l)
			client_quickack(s, confirm);
		break;
	case RPC_CLOSE_EXT:
		if (rpc_close_ext_parse(p, len, &id) == -1)
			break;
		s = middle_conn_find(id);
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

/*
 * Room for one more read. A partial frame left in the buffer is never
 * longer than LINK_FRAME_MAX (the decoder refuses longer ones), so the
 * buffer never needs more than LINK_RBUF_MAX.
 */
static int
link_rbuf_room(struct mlink *l)
{
	if (l->rcap - l->rlen >= LINK_RBUF_MIN / 2)
		return 0;
	size_t cap = l->rcap ? l->rcap * 2 : LINK_RBUF_MIN;
	if (cap > LINK_RBUF_MAX)
		cap = LINK_RBUF_MAX;
	if (cap <= l->rlen)
		return -1; /* cannot happen: see above */
	uint8_t *b = realloc(l->rbuf, cap);
	if (b == NULL)
		return -1;
	l->rbuf = b;
	l->rcap = cap;
	return 0;
}

static void
link_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;
	struct rpc_frame fr;
	size_t pos = 0;

	if (link_rbuf_room(l) == -1) {
		link_close(l, "out of memory");
		return;
	}
	ssize_t n = read(fd, l->rbuf + l->rlen, l->rcap - l->rlen);
	if (n == 0) {
		link_close(l, "closed by the middle proxy");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			link_close(l, link_errno_reason(errno));
		return;
	}
	l->rlen += n;
	l->last_rx_ms = coarse_now_ms();
	size_t dec = (l->rlen - l->rdec) & ~(size_t)(RPC_BLOCK - 1);
	if (dec && rpc_link_decrypt(&l->rpc, l->rbuf + l->rdec, dec) == -1) {
		link_close(l, "decryption failed");
		return;
	}
	l->rdec += dec;
	while (pos < l->rdec && !l->closed) {
		enum rpc_decode_status st =
		    rpc_link_decode(&l->rpc, l->rbuf + pos, l->rdec - pos, &fr);
		if (st == RPC_DECODE_ERROR) {
			log_warnx("link to DC %d: %s", l->pool->dc,
			    fr.error ? fr.error : "bad frame");
			link_close(l, "protocol error");
			break;
		}
		pos += fr.consumed;
		if (st == RPC_DECODE_NEED_MORE)
			break;
		link_dispatch(l, fr.payload, fr.len);
	}
	/* The answers go out once per turn, after every link's read. */
	if (!TAILQ_EMPTY(&M.dirty))
		event_active(&M.cflush_ev, EV_TIMEOUT, 1);
	if (l->closed)
		return;
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

static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;

	struct timeval tv = { 0, LINK_STALL_MS * 1000 };

	if (!l->closed && !l->reading && client_shed(l))
		evtimer_add(&l->stall, &tv); /* look again */
}

void
link_clients_changed(struct mlink *l)
{
	size_t max = W.cfg->middle_link_queue_max;

	if (l->closed)
		return;
	if (l->reading && l->client_bytes > max) {
		link_want_read(l, 0);
		struct timeval tv = { 0, LINK_STALL_MS * 1000 };
		evtimer_add(&l->stall, &tv);
	} else if (!l->reading && l->client_bytes < max / 2) {
		evtimer_del(&l->stall);
		link_want_read(l, 1);
	}
}

/* ------------------------------------------------------------ life */

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l;

	while ((l = TAILQ_FIRST(&M.reap)) != NULL) {
		TAILQ_REMOVE(&M.reap, l, entry);
		rpc_link_free(&l->rpc);
		free(l->rbuf);
		wq_free(&l->wq);
		free(l);
	}
}

void
mlink_init(void)
{
	TAILQ_INIT(&M.reap);
	evtimer_assign(&M.reaper, W.base, reap_cb, NULL);
	TAILQ_INIT(&M.flushq);
	event_assign(&M.flush_ev, W.base, -1, 0, flush_cb, NULL);
	event_assign(&M.cflush_ev, W.base, -1, 0, cflush_cb, NULL);
}

struct mlink *
link_new(struct mpool *p, const struct rpc_link_keys *keys,
    const struct sockaddr_storage *me, int fd)
{
	struct mlink *l = calloc(1, sizeof(*l));

	if (l == NULL || rpc_link_restore(&l->rpc, keys, LINK_FRAME_MAX)) {
		free(l);
		close(fd);
		return NULL;
	}
	fd_set_nonblock(fd);
	l->fd = fd;
	l->pool = p;
	l->me = *me;
	TAILQ_INIT(&l->clients);
	l->last_rx_ms = l->last_ping_ms = coarse_now_ms();
	event_assign(
	    &l->rev, W.base, fd, EV_READ | EV_PERSIST, link_read_cb, l);
	event_assign(
	    &l->wev, W.base, fd, EV_WRITE | EV_PERSIST, link_write_cb, l);
	evtimer_assign(&l->stall, W.base, stall_cb, l);
	TAILQ_INSERT_HEAD(&p->links, l, entry);
	p->nlinks++;
	shm_add(W.metrics, M_CURRENT_DC, 1);
	link_want_read(l, 1);
	return l;
}

void
link_close(struct mlink *l, const char *why)
{
	struct mpool *p = l->pool;
	struct session *s;
	char a[ADDR_STRLEN];
	size_t moved = 0, dropped = 0;

	if (l->closed)
		return;
	log_info("link to DC %d (%s) closed: %s; %zu clients", p->dc,
	    addr_str((struct sockaddr *)&l->me, a, sizeof(a)), why,
	    l->nclients);
	/* Off the pool first, so clients cannot be placed back on it. */
	l->closed = 1;
	event_del(&l->rev);
	event_del(&l->wev);
	if (l->flush_queued) {
		TAILQ_REMOVE(&M.flushq, l, flush_entry);
		l->flush_queued = 0;
	}
	evtimer_del(&l->stall);
	close(l->fd);
	l->fd = -1;
	TAILQ_REMOVE(&p->links, l, entry);
	p->nlinks--;
	shm_sub(W.metrics, M_CURRENT_DC, 1);
	while ((s = TAILQ_FIRST(&l->clients)) != NULL) {
		client_detach(s);
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
		pool_place(s);
	}
	if (moved || dropped)
		log_info("link to DC %d: %zu clients moved, %zu closed", p->dc,
		    moved, dropped);
	TAILQ_INSERT_TAIL(&M.reap, l, entry);
	event_active(&M.reaper, EV_TIMEOUT, 1);
	pool_maintain(p);
}

/* ------------------------------------------------------------ handoff */

void
link_to_image(struct mlink *l, uint32_t id, struct link_image *li)
{
	struct rpc_link_keys keys;
	uint64_t now = coarse_now_ms();

	/* The framed bytes first: the chain's state goes with them. */
	links_encrypt(&l, 1);
	memset(li, 0, sizeof(*li));
	li->id = id;
	li->dc = l->pool->dc;
	rpc_link_capture(&l->rpc, &keys);
	memcpy(li->keys, &keys, sizeof(li->keys));
	explicit_bzero(&keys, sizeof(keys));
	memcpy(li->me, &l->me, sizeof(li->me));
	li->rbuf = l->rbuf;
	li->rlen = l->rlen;
	li->rdec = l->rdec;
	li->wq = wq_linear(&l->wq);
	li->wqlen = li->wq ? wq_pending(&l->wq) : 0;
	if (li->wq == NULL && wq_pending(&l->wq))
		log_warnx("link to DC %d: out of memory: its %zu unsent bytes "
		          "are not handed over",
		    l->pool->dc, wq_pending(&l->wq));
	li->queued_total = l->queued_total;
	li->written_total = l->written_total;
	li->nclients = (uint32_t)l->nclients;
	li->rx_age_ms = now - l->last_rx_ms;
	li->ping_age_ms = now - l->last_ping_ms;
}

struct mlink *
link_adopt(const struct link_image *li, int fd)
{
	struct rpc_link_keys keys;
	struct sockaddr_storage me;
	struct mlink *l;
	uint64_t now = coarse_now_ms();

	memcpy(&keys, li->keys, sizeof(keys));
	memset(&me, 0, sizeof(me));
	memcpy(&me, li->me, sizeof(li->me));
	l = link_new(pool_of((int16_t)li->dc), &keys, &me, fd);
	explicit_bzero(&keys, sizeof(keys));
	if (l == NULL)
		return NULL;
	if (li->rlen) {
		size_t cap =
		    li->rlen > LINK_RBUF_MIN ? li->rlen : LINK_RBUF_MIN;
		if ((l->rbuf = malloc(cap)) == NULL) {
			link_close(l, "out of memory");
			return NULL;
		}
		memcpy(l->rbuf, li->rbuf, li->rlen);
		l->rcap = cap;
		l->rlen = li->rlen;
		l->rdec = li->rdec;
	}
	if (li->wqlen) {
		uint8_t *b = wq_room(&l->wq, li->wqlen);
		if (b == NULL) {
			link_close(l, "out of memory");
			return NULL;
		}
		memcpy(b, li->wq, li->wqlen);
		wq_commit(&l->wq, li->wqlen);
		l->wq.tail->enc = l->wq.tail->len; /* sent encrypted */
		link_want_write(l, 1);
	}
	l->queued_total = li->queued_total;
	l->written_total = li->written_total;
	l->last_rx_ms = now - li->rx_age_ms;
	l->last_ping_ms = now - li->ping_age_ms;
	l->pool->idle_since_ms = 0;
	link_hold(l, 1);
	return l;
}

void
link_hold(struct mlink *l, int on)
{
	if (l->closed || l->held == (unsigned)on)
		return;
	l->held = on;
	link_want_read(l, !on);
	if (!on)
		link_clients_changed(l);
}

int
link_alive(const struct mlink *l)
{
	for (size_t i = 0; i < M.npools; i++) {
		const struct mlink *x;
		TAILQ_FOREACH(x, &M.pools[i].links, entry)
		if (x == l)
			return !x->closed;
	}
	return 0;
}
