#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/event.h>

#include "discover.h"
#include "log.h"
#include "fptable.h"
#include "msg.h"
#include "rpc.h"
#include "tls.h"
#include "util.h"

/* On the wire: u32 type, u32 payload length, payload. */
struct msg_wire_hdr {
	uint32_t type;
	uint32_t len;
};

static const char *type_names[MSG_TYPE_MAX] = {
	[MSG_NONE] = "none",
	[MSG_DRAIN] = "drain",
	[MSG_QUIT] = "quit",
	[MSG_REOPEN_LOG] = "reopen-log",
	[MSG_DCPOOL_PEER] = "dcpool-peer",
	[MSG_READY] = "ready",
	[MSG_LINK_REQUEST] = "link-request",
	[MSG_LINK_GRANT] = "link-grant",
	[MSG_LINK_REFUSED] = "link-refused",
	[MSG_TABLES] = "tables",
	[MSG_HANDOFF_TO] = "handoff-to",
	[MSG_HANDOFF_FROM] = "handoff-from",
	[MSG_SESSION] = "session",
	[MSG_SESSION_BACK] = "session-back",
	[MSG_LINK_MOVE] = "link-move",
	[MSG_UPGRADE_LSOCK] = "upgrade-lsock",
	[MSG_UPGRADE_STATE] = "upgrade-state",
	[MSG_UPGRADE_HANDOFF] = "upgrade-handoff",
	[MSG_UPGRADE_READY] = "upgrade-ready",
	[MSG_PUBADDR] = "pubaddr",
	[MSG_TLS_SHAPE] = "tls-shape",
	[MSG_FINGERPRINTS] = "fingerprints",
	[MSG_API_REQUEST] = "api-request",
	[MSG_API_REPLY] = "api-reply",
};

const char *
msg_type_name(uint32_t type)
{
	if (type >= MSG_TYPE_MAX || type_names[type] == NULL)
		return "unknown";
	return type_names[type];
}

void
msgbuf_init(struct msgbuf *mb, uint32_t type)
{
	mb->type = type;
	mb->len = 0;
	mb->overflow = 0;
}

void
msgbuf_put_bytes(struct msgbuf *mb, const void *p, size_t n)
{
	if (mb->overflow || n > sizeof(mb->data) - mb->len) {
		mb->overflow = 1;
		return;
	}
	if (n == 0)
		return; /* p may be NULL */
	memcpy(mb->data + mb->len, p, n);
	mb->len += n;
}

void
msgbuf_put_u32(struct msgbuf *mb, uint32_t v)
{
	msgbuf_put_bytes(mb, &v, sizeof(v));
}

void
msgbuf_put_u64(struct msgbuf *mb, uint64_t v)
{
	msgbuf_put_bytes(mb, &v, sizeof(v));
}

static int
send_raw_fds(int sock, uint32_t type, const uint8_t *data, size_t len,
    const int *fds, size_t nfds, int flags)
{
	struct msg_wire_hdr h = { type, (uint32_t)len };
	struct iovec iov[2] = {
		{ &h, sizeof(h) },
		{ (void *)data, len },
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MSG_FDS_MAX)];
	} cm;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	if (type == MSG_NONE || type >= MSG_TYPE_MAX || len > MSG_PAYLOAD_MAX ||
	    nfds > MSG_FDS_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (nfds > 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != sizeof(h) + len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

static int
send_raw(
    int sock, uint32_t type, const uint8_t *data, size_t len, int fd, int flags)
{
	return send_raw_fds(sock, type, data, len, &fd, fd >= 0 ? 1 : 0, flags);
}

int
msgbuf_send(int sock, const struct msgbuf *mb, int fd)
{
	if (mb->overflow) {
		errno = EINVAL;
		return -1;
	}
	return send_raw(sock, mb->type, mb->data, mb->len, fd, 0);
}

int
msg_send_simple(int sock, uint32_t type)
{
	return send_raw(sock, type, NULL, 0, -1, 0);
}

int
msg_recv(int sock, struct msg *m)
{
	struct msg_wire_hdr h;
	struct iovec iov[2] = {
		{ &h, sizeof(h) },
		{ m->data, sizeof(m->data) },
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * (MSG_FDS_MAX + 1))];
	} cm;
	struct msghdr mh = {
		.msg_iov = iov,
		.msg_iovlen = 2,
		.msg_control = cm.buf,
		.msg_controllen = sizeof(cm.buf),
	};
	ssize_t n;
	int bad = 0;

	m->type = MSG_NONE;
	m->len = 0;
	m->fd = -1;
	m->nxfd = 0;
	m->rpos = 0;
	m->error = 0;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if (n == 0)
		return 0;
	/* Collect every passed fd so none leaks; keep at most
	 * MSG_FDS_MAX, and more than one only where the type carries
	 * more (below). */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c;
	     c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (m->fd == -1)
				m->fd = fd;
			else if (m->nxfd < MSG_FDS_MAX - 1)
				m->xfd[m->nxfd++] = fd;
			else {
				close(fd);
				bad = 1;
			}
		}
	}
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < sizeof(h) || h.len != (size_t)n - sizeof(h) ||
	    h.type == MSG_NONE || h.type >= MSG_TYPE_MAX)
		bad = 1;
	if (m->nxfd > 0 && h.type != MSG_SESSION &&
	    h.type != MSG_SESSION_BACK && h.type != MSG_LINK_MOVE)
		bad = 1;
	if (bad) {
		msg_done(m);
		return -2;
	}
	m->type = h.type;
	m->len = h.len;
	return 1;
}

int
msg_get_bytes(struct msg *m, void *p, size_t n)
{
	if (m->error || n > m->len - m->rpos) {
		m->error = 1;
		memset(p, 0, n);
		return -1;
	}
	memcpy(p, m->data + m->rpos, n);
	m->rpos += n;
	return 0;
}

int
msg_get_u32(struct msg *m, uint32_t *v)
{
	return msg_get_bytes(m, v, sizeof(*v));
}

int
msg_get_u64(struct msg *m, uint64_t *v)
{
	return msg_get_bytes(m, v, sizeof(*v));
}

int
msg_end(struct msg *m)
{
	return m->error || m->rpos != m->len ? -1 : 0;
}

int
msg_take_fd(struct msg *m)
{
	int fd = m->fd;
	m->fd = -1;
	return fd;
}

unsigned
msg_take_fds(struct msg *m, int fds[MSG_FDS_MAX])
{
	unsigned n = 0;

	if (m->fd != -1)
		fds[n++] = m->fd;
	for (unsigned i = 0; i < m->nxfd; i++)
		fds[n++] = m->xfd[i];
	m->fd = -1;
	m->nxfd = 0;
	return n;
}

void
msg_done(struct msg *m)
{
	if (m->fd != -1)
		close(m->fd);
	m->fd = -1;
	for (unsigned i = 0; i < m->nxfd; i++)
		close(m->xfd[i]);
	m->nxfd = 0;
}

int
msg_send_tables(int sock, int memfd)
{
	return send_raw(sock, MSG_TABLES, NULL, 0, memfd, 0);
}

int
msg_get_tables(struct msg *m)
{
	if (m->type != MSG_TABLES || msg_end(m) == -1 || m->fd == -1)
		return -1;
	return msg_take_fd(m);
}

void
msg_build_tls_shape(
    struct msgbuf *mb, const char *key, const struct tls_shape *sh)
{
	char k[MSG_SHAPE_KEY];

	memset(k, 0, sizeof(k));
	snprintf(k, sizeof(k), "%s", key);
	msgbuf_init(mb, MSG_TLS_SHAPE);
	msgbuf_put_bytes(mb, k, sizeof(k));
	msgbuf_put_bytes(mb, sh, sizeof(*sh));
}

int
msg_get_tls_shape(struct msg *m, char key[MSG_SHAPE_KEY], struct tls_shape *sh)
{
	if (m->type != MSG_TLS_SHAPE || m->fd != -1 ||
	    msg_get_bytes(m, key, MSG_SHAPE_KEY) == -1 ||
	    msg_get_bytes(m, sh, sizeof(*sh)) == -1 || msg_end(m) == -1)
		return -1;
	key[MSG_SHAPE_KEY - 1] = '\0';
	if (sh->next > TLS_SHAPE_EXT_MAX)
		return -1;
	return 0;
}

int
msg_send_api(
    int sock, uint32_t type, uint32_t id, uint32_t status, const char *json)
{
	struct msgbuf mb;
	size_t n = strlen(json);

	msgbuf_init(&mb, type);
	msgbuf_put_u32(&mb, id);
	msgbuf_put_u32(&mb, status);
	msgbuf_put_bytes(&mb, json, n);
	if (mb.overflow) {
		errno = EMSGSIZE;
		return -1;
	}
	return msgbuf_send(sock, &mb, -1);
}

int
msg_get_api(struct msg *m, uint32_t type, uint32_t *id, uint32_t *status,
    char *json, size_t cap)
{
	size_t n;

	if (m->type != type || m->fd != -1 || msg_get_u32(m, id) == -1 ||
	    msg_get_u32(m, status) == -1)
		return -1;
	n = m->len - m->rpos;
	if (n >= cap || msg_get_bytes(m, json, n) == -1)
		return -1;
	json[n] = '\0';
	if (memchr(json, '\0', n) != NULL)
		return -1;
	return msg_end(m);
}

int
msg_send_fingerprints(int sock, const struct fptable *t)
{
	struct msgbuf mb;

	msgbuf_init(&mb, MSG_FINGERPRINTS);
	msgbuf_put_u32(&mb, (uint32_t)t->n);
	msgbuf_put_bytes(&mb, t->e, t->n * sizeof(t->e[0]));
	for (int r = 0; r < FP_RESULTS; r++)
		msgbuf_put_u64(&mb, t->other[r]);
	return msgbuf_send(sock, &mb, -1);
}

int
msg_get_fingerprints(struct msg *m, struct fptable *t)
{
	static struct fptable in; /* 10 KB: not on the stack */
	struct fp_entry e;
	uint32_t n;

	if (m->type != MSG_FINGERPRINTS || m->fd != -1 ||
	    msg_get_u32(m, &n) == -1 || n > FPTABLE_MAX)
		return -1;
	fptable_init(&in, FPTABLE_MAX);
	for (uint32_t i = 0; i < n; i++) {
		if (msg_get_bytes(m, &e, sizeof(e)) == -1)
			return -1;
		e.ja3[FP_JA3_MAX] = e.ja4[FP_JA4_MAX] = '\0';
		for (int r = 0; r < FP_RESULTS; r++)
			fptable_add(
			    &in, e.ja3, e.ja4, (enum fp_result)r, e.n[r]);
	}
	for (int r = 0; r < FP_RESULTS; r++)
		if (msg_get_u64(m, &in.other[r]) == -1)
			return -1;
	if (msg_end(m) == -1)
		return -1;
	fptable_merge(t, &in);
	return 0;
}

int
msg_send_pubaddr(int sock, const struct pubaddr_state *st)
{
	return send_raw(
	    sock, MSG_PUBADDR, (const uint8_t *)st, sizeof(*st), -1, 0);
}

int
msg_get_pubaddr(struct msg *m, struct pubaddr_state *st)
{
	if (m->type != MSG_PUBADDR || m->fd != -1 ||
	    msg_get_bytes(m, st, sizeof(*st)) == -1 || msg_end(m) == -1)
		return -1;
	st->v4[sizeof(st->v4) - 1] = '\0';
	st->v6[sizeof(st->v6) - 1] = '\0';
	st->from4[sizeof(st->from4) - 1] = '\0';
	st->from6[sizeof(st->from6) - 1] = '\0';
	st->why[sizeof(st->why) - 1] = '\0';
	return 0;
}

int
msg_send_handoff(int sock, uint32_t type, int fd)
{
	if (type != MSG_HANDOFF_TO && type != MSG_HANDOFF_FROM) {
		errno = EINVAL;
		return -1;
	}
	return send_raw(sock, type, NULL, 0, fd, 0);
}

int
msg_get_handoff(struct msg *m, uint32_t type)
{
	if (m->type != type || msg_end(m) == -1 || m->fd == -1)
		return -1;
	return msg_take_fd(m);
}

int
msg_send_session(int sock, uint32_t type, const uint8_t *image, size_t len,
    int client_fd, int backend_fd)
{
	uint8_t buf[MSG_PAYLOAD_MAX];
	int fds[MSG_FDS_MAX];
	size_t nfds = 0;
	uint32_t flags = 0;
	int memfd = -1, r;

	if ((type != MSG_SESSION && type != MSG_SESSION_BACK &&
	        type != MSG_LINK_MOVE) ||
	    client_fd < 0) {
		errno = EINVAL;
		return -1;
	}
	fds[nfds++] = client_fd;
	if (backend_fd >= 0) {
		flags |= MSG_SESSION_BACKEND;
		fds[nfds++] = backend_fd;
	}
	if (len > sizeof(buf) - sizeof(flags)) {
		/* Big (bytes queued on both sides): the image goes in a
		 * memfd, read back by the receiver. */
		if ((memfd = memfd_of("mtprotod-session", image, len)) == -1)
			return -1;
		flags |= MSG_SESSION_MEMFD;
		fds[nfds++] = memfd;
		memcpy(buf, &flags, sizeof(flags));
		r = send_raw_fds(sock, type, buf, sizeof(flags), fds, nfds, 0);
	} else {
		memcpy(buf, &flags, sizeof(flags));
		if (len)
			memcpy(buf + sizeof(flags), image, len);
		r = send_raw_fds(
		    sock, type, buf, sizeof(flags) + len, fds, nfds, 0);
	}
	if (memfd != -1) {
		int e = errno;
		close(memfd);
		errno = e;
	}
	return r;
}

int
msg_get_session(struct msg *m, uint32_t type, uint8_t **image, size_t *len,
    int *client_fd, int *backend_fd)
{
	int fds[MSG_FDS_MAX];
	unsigned want = 1, n;
	uint32_t flags;
	uint8_t *img = NULL;
	size_t ilen = 0;

	*image = NULL;
	*len = 0;
	*client_fd = *backend_fd = -1;
	if (m->type != type || msg_get_u32(m, &flags) == -1 ||
	    (flags & ~(uint32_t)(MSG_SESSION_BACKEND | MSG_SESSION_MEMFD)))
		return -1;
	want += (flags & MSG_SESSION_BACKEND) != 0;
	want += (flags & MSG_SESSION_MEMFD) != 0;
	if ((m->fd == -1 ? 0 : 1 + m->nxfd) != want)
		return -1;
	if (flags & MSG_SESSION_MEMFD) {
		int mfd = (flags & MSG_SESSION_BACKEND) ? m->xfd[1] : m->xfd[0];
		if (msg_end(m) == -1 ||
		    (img = memfd_read(mfd, MSG_SESSION_IMAGE_MAX, &ilen)) ==
		        NULL)
			return -1;
	} else {
		ilen = m->len - m->rpos;
		if ((img = malloc(ilen ? ilen : 1)) == NULL)
			return -1;
		msg_get_bytes(m, img, ilen);
	}
	n = msg_take_fds(m, fds);
	*client_fd = fds[0];
	if (flags & MSG_SESSION_BACKEND)
		*backend_fd = fds[1];
	if (flags & MSG_SESSION_MEMFD)
		close(fds[n - 1]);
	*image = img;
	*len = ilen;
	return 0;
}

int
msg_send_dcpool_peer(int sock, uint32_t slot, uint32_t generation, int fd)
{
	struct msgbuf mb;

	msgbuf_init(&mb, MSG_DCPOOL_PEER);
	msgbuf_put_u32(&mb, slot);
	msgbuf_put_u32(&mb, generation);
	return msgbuf_send(sock, &mb, fd);
}

int
msg_get_dcpool_peer(struct msg *m, uint32_t *slot, uint32_t *generation)
{
	msg_get_u32(m, slot);
	msg_get_u32(m, generation);
	if (m->type != MSG_DCPOOL_PEER || msg_end(m) == -1 || m->fd == -1)
		return -1;
	return msg_take_fd(m);
}

/* ------------------------------------------------------------ typed */

int
msg_send_drain(int sock)
{
	return msg_send_simple(sock, MSG_DRAIN);
}

int
msg_send_quit(int sock)
{
	return msg_send_simple(sock, MSG_QUIT);
}

int
msg_send_ready(int sock)
{
	return msg_send_simple(sock, MSG_READY);
}

int
msg_get_empty(struct msg *m, uint32_t type)
{
	return m->type == type && msg_end(m) == 0 && m->fd == -1 ? 0 : -1;
}

int
msg_send_reopen_log(int sock, int fd)
{
	return send_raw(sock, MSG_REOPEN_LOG, NULL, 0, fd, 0);
}

int
msg_get_reopen_log(struct msg *m, int *fd)
{
	*fd = -1;
	if (m->type != MSG_REOPEN_LOG || msg_end(m) == -1)
		return -1;
	*fd = msg_take_fd(m);
	return 0;
}

/* A DC number on the wire: an int16 sign-extended to 32 bits. */
static void
put_dc(struct msgbuf *mb, int16_t dc)
{
	msgbuf_put_u32(mb, (uint32_t)(int32_t)dc);
}

static void
get_dc(struct msg *m, int16_t *dc)
{
	uint32_t v;

	*dc = 0;
	if (msg_get_u32(m, &v) == -1)
		return;
	if ((int32_t)v < INT16_MIN || (int32_t)v > INT16_MAX) {
		m->error = 1;
		return;
	}
	*dc = (int16_t)(int32_t)v;
}

int
msg_send_link_request(int sock, int16_t dc, uint32_t req_id)
{
	struct msgbuf mb;

	msgbuf_init(&mb, MSG_LINK_REQUEST);
	put_dc(&mb, dc);
	msgbuf_put_u32(&mb, req_id);
	return msgbuf_send(sock, &mb, -1);
}

int
msg_get_link_request(struct msg *m, int16_t *dc, uint32_t *req_id)
{
	get_dc(m, dc);
	msg_get_u32(m, req_id);
	if (m->type != MSG_LINK_REQUEST || msg_end(m) == -1 || m->fd != -1)
		return -1;
	return 0;
}

void
msg_build_link_grant(struct msgbuf *mb, int16_t dc, uint32_t req_id,
    const struct rpc_link_keys *keys, const struct sockaddr_storage *me,
    socklen_t melen)
{
	msgbuf_init(mb, MSG_LINK_GRANT);
	put_dc(mb, dc);
	msgbuf_put_u32(mb, req_id);
	msgbuf_put_bytes(mb, keys, sizeof(*keys));
	msgbuf_put_u32(mb, (uint32_t)melen);
	msgbuf_put_bytes(mb, me, sizeof(*me));
}

int
msg_send_link_grant(int sock, int16_t dc, uint32_t req_id,
    const struct rpc_link_keys *keys, const struct sockaddr_storage *me,
    socklen_t melen, int fd)
{
	struct msgbuf mb;

	if (fd < 0) {
		errno = EINVAL;
		return -1;
	}
	msg_build_link_grant(&mb, dc, req_id, keys, me, melen);
	return msgbuf_send(sock, &mb, fd);
}

int
msg_get_link_grant(struct msg *m, int16_t *dc, uint32_t *req_id,
    struct rpc_link_keys *keys, struct sockaddr_storage *me)
{
	uint32_t melen = 0;

	get_dc(m, dc);
	msg_get_u32(m, req_id);
	msg_get_bytes(m, keys, sizeof(*keys));
	msg_get_u32(m, &melen);
	msg_get_bytes(m, me, sizeof(*me));
	if (m->type != MSG_LINK_GRANT || msg_end(m) == -1 || m->fd == -1 ||
	    melen == 0 || melen > sizeof(*me)) {
		explicit_bzero(keys, sizeof(*keys));
		return -1;
	}
	/* Only the address's own bytes count. */
	memset((uint8_t *)me + melen, 0, sizeof(*me) - melen);
	return msg_take_fd(m);
}

void
msg_build_link_refused(
    struct msgbuf *mb, int16_t dc, uint32_t req_id, uint32_t retry_ms)
{
	msgbuf_init(mb, MSG_LINK_REFUSED);
	put_dc(mb, dc);
	msgbuf_put_u32(mb, req_id);
	msgbuf_put_u32(mb, retry_ms);
}

int
msg_send_link_refused(int sock, int16_t dc, uint32_t req_id, uint32_t retry_ms)
{
	struct msgbuf mb;

	msg_build_link_refused(&mb, dc, req_id, retry_ms);
	return msgbuf_send(sock, &mb, -1);
}

int
msg_get_link_refused(
    struct msg *m, int16_t *dc, uint32_t *req_id, uint32_t *retry_ms)
{
	get_dc(m, dc);
	msg_get_u32(m, req_id);
	msg_get_u32(m, retry_ms);
	if (m->type != MSG_LINK_REFUSED || msg_end(m) == -1 || m->fd != -1)
		return -1;
	return 0;
}

/* ------------------------------------------------------------ queue */

struct outq_item {
	uint32_t type;
	size_t len;
	uint8_t *data;
	int fd;
};

struct msg_outq {
	int sock;
	struct event *ev; /* EV_WRITE while something waits */
	struct outq_item *v; /* a ring of max */
	size_t max, head, n;
	int broken; /* a send failed: drop everything */
};

static void
item_drop(struct outq_item *it)
{
	if (it->fd != -1)
		close(it->fd);
	it->fd = -1;
	/* A grant's payload holds link keys. */
	if (it->data != NULL)
		explicit_bzero(it->data, it->len);
	free(it->data);
	it->data = NULL;
}

static void
outq_clear(struct msg_outq *q)
{
	for (; q->n > 0; q->n--, q->head = (q->head + 1) % q->max)
		item_drop(&q->v[q->head]);
	if (q->ev != NULL)
		event_del(q->ev);
}

/* Sends what waits, in order; stops at EAGAIN. */
static void
outq_flush(struct msg_outq *q)
{
	while (q->n > 0) {
		struct outq_item *it = &q->v[q->head];

		if (send_raw(q->sock, it->type, it->data, it->len, it->fd,
		        MSG_DONTWAIT) == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ENOBUFS) {
				event_add(q->ev, NULL);
				return;
			}
			log_warn("sending %s (%zu waiting); dropping them",
			    msg_type_name(it->type), q->n);
			q->broken = 1;
			outq_clear(q);
			return;
		}
		item_drop(it);
		q->head = (q->head + 1) % q->max;
		q->n--;
	}
	event_del(q->ev);
}

static void
outq_write_cb(evutil_socket_t fd, short what, void *arg)
{
	outq_flush(arg);
}

struct msg_outq *
msg_outq_new(struct event_base *base, int sock, size_t max)
{
	struct msg_outq *q;

	if (max == 0 || (q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->sock = sock;
	q->max = max;
	if ((q->v = calloc(max, sizeof(*q->v))) == NULL ||
	    (q->ev = event_new(base, sock, EV_WRITE, outq_write_cb, q)) ==
	        NULL) {
		free(q->v);
		free(q);
		return NULL;
	}
	return q;
}

int
msg_outq_send(struct msg_outq *q, const struct msgbuf *mb, int fd)
{
	struct outq_item *it;
	int e;

	if (mb->overflow) {
		e = EINVAL;
		goto drop;
	}
	if (q->broken) {
		e = EPIPE;
		goto drop;
	}
	if (q->n == 0) {
		if (send_raw(q->sock, mb->type, mb->data, mb->len, fd,
		        MSG_DONTWAIT) == 0) {
			if (fd != -1)
				close(fd);
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != ENOBUFS) {
			e = errno;
			q->broken = 1;
			goto drop;
		}
	}
	if (q->n == q->max) {
		e = ENOBUFS;
		goto drop;
	}
	it = &q->v[(q->head + q->n) % q->max];
	it->data = NULL;
	if (mb->len > 0 && (it->data = malloc(mb->len)) == NULL) {
		e = ENOMEM;
		goto drop;
	}
	if (mb->len > 0)
		memcpy(it->data, mb->data, mb->len);
	it->type = mb->type;
	it->len = mb->len;
	it->fd = fd;
	q->n++;
	event_add(q->ev, NULL);
	return 0;
drop:
	if (fd != -1)
		close(fd);
	errno = e;
	return -1;
}

size_t
msg_outq_len(const struct msg_outq *q)
{
	return q->n;
}

int
msg_outq_sock(const struct msg_outq *q)
{
	return q->sock;
}

void
msg_outq_free(struct msg_outq *q)
{
	if (q == NULL)
		return;
	outq_clear(q);
	event_free(q->ev);
	free(q->v);
	free(q);
}

int
msg_send_upgrade_lsock(int sock, const char *key,
    const struct sockaddr_storage *addr, socklen_t addrlen, const int *fds,
    uint32_t n)
{
	struct msgbuf mb;
	char k[MSG_LSOCK_KEY] = { 0 };

	if (n > MSG_LSOCK_FDS || strlen(key) >= sizeof(k)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(k, key, strlen(key));
	msgbuf_init(&mb, MSG_UPGRADE_LSOCK);
	msgbuf_put_bytes(&mb, k, sizeof(k));
	msgbuf_put_bytes(&mb, addr, sizeof(*addr));
	msgbuf_put_u32(&mb, (uint32_t)addrlen);
	msgbuf_put_u32(&mb, n);
	for (uint32_t i = 0; i < n; i++)
		msgbuf_put_u32(&mb, (uint32_t)fds[i]);
	return msgbuf_send(sock, &mb, -1);
}

int
msg_get_upgrade_lsock(struct msg *m, char key[MSG_LSOCK_KEY],
    struct sockaddr_storage *addr, socklen_t *addrlen, int *fds, uint32_t max,
    uint32_t *n)
{
	uint32_t al, v;

	if (m->type != MSG_UPGRADE_LSOCK)
		return -1;
	msg_get_bytes(m, key, MSG_LSOCK_KEY);
	msg_get_bytes(m, addr, sizeof(*addr));
	msg_get_u32(m, &al);
	msg_get_u32(m, n);
	if (m->error || key[MSG_LSOCK_KEY - 1] != '\0' || al > sizeof(*addr) ||
	    *n > max)
		return -1;
	*addrlen = (socklen_t)al;
	for (uint32_t i = 0; i < *n; i++) {
		msg_get_u32(m, &v);
		if (v > INT32_MAX)
			return -1;
		fds[i] = (int)v;
	}
	return msg_end(m);
}

int
msg_send_upgrade_state(int sock, int metrics_fd, int replay_fd,
    uint32_t old_workers, int page_fd, const char *page_key, int policy_fd)
{
	struct msgbuf mb;
	char k[MSG_LSOCK_KEY] = { 0 };

	if (strlen(page_key) >= sizeof(k)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(k, page_key, strlen(page_key));
	msgbuf_init(&mb, MSG_UPGRADE_STATE);
	msgbuf_put_u32(&mb, (uint32_t)metrics_fd);
	msgbuf_put_u32(&mb, (uint32_t)replay_fd);
	msgbuf_put_u32(&mb, old_workers);
	msgbuf_put_u32(&mb, page_fd < 0 ? UINT32_MAX : (uint32_t)page_fd);
	msgbuf_put_bytes(&mb, k, sizeof(k));
	msgbuf_put_u32(&mb, policy_fd < 0 ? UINT32_MAX : (uint32_t)policy_fd);
	return msgbuf_send(sock, &mb, -1);
}

int
msg_get_upgrade_state(struct msg *m, int *metrics_fd, int *replay_fd,
    uint32_t *old_workers, int *page_fd, char page_key[MSG_LSOCK_KEY],
    int *policy_fd)
{
	uint32_t a, b, c, d = UINT32_MAX;

	if (m->type != MSG_UPGRADE_STATE)
		return -1;
	msg_get_u32(m, &a);
	msg_get_u32(m, &b);
	msg_get_u32(m, old_workers);
	msg_get_u32(m, &c);
	msg_get_bytes(m, page_key, MSG_LSOCK_KEY);
	/* The policy zone's: absent when the old binary had none. */
	if (m->rpos < m->len)
		msg_get_u32(m, &d);
	if (m->error || a > INT32_MAX || b > INT32_MAX ||
	    (c != UINT32_MAX && c > INT32_MAX) ||
	    (d != UINT32_MAX && d > INT32_MAX) ||
	    page_key[MSG_LSOCK_KEY - 1] != '\0')
		return -1;
	*metrics_fd = (int)a;
	*replay_fd = (int)b;
	*page_fd = c == UINT32_MAX ? -1 : (int)c;
	*policy_fd = d == UINT32_MAX ? -1 : (int)d;
	return msg_end(m);
}

int
msg_send_upgrade_handoff(int sock, uint32_t old_slot, int fd)
{
	struct msgbuf mb;

	msgbuf_init(&mb, MSG_UPGRADE_HANDOFF);
	msgbuf_put_u32(&mb, old_slot);
	return msgbuf_send(sock, &mb, fd);
}

int
msg_get_upgrade_handoff(struct msg *m, uint32_t *old_slot)
{
	if (m->type != MSG_UPGRADE_HANDOFF || msg_get_u32(m, old_slot) == -1 ||
	    msg_end(m) == -1 || m->fd == -1)
		return -1;
	return msg_take_fd(m);
}
