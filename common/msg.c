#include "autoconf.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "msg.h"

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
	[MSG_TG_CONFIG] = "tg-config",
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

int
msgbuf_send(int sock, const struct msgbuf *mb, int fd)
{
	struct msg_wire_hdr h = { mb->type, (uint32_t)mb->len };
	struct iovec iov[2] = {
		{ &h, sizeof(h) },
		{ (void *)mb->data, mb->len },
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	if (mb->overflow || mb->type == MSG_NONE || mb->type >= MSG_TYPE_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != sizeof(h) + mb->len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

int
msg_send_simple(int sock, uint32_t type)
{
	struct msg_wire_hdr h = { type, 0 };
	ssize_t n;
	do {
		n = send(sock, &h, sizeof(h), MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	return n == (ssize_t)sizeof(h) ? 0 : -1;
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
		char buf[CMSG_SPACE(sizeof(int) * 4)];
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
	m->rpos = 0;
	m->error = 0;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if (n == 0)
		return 0;
	/* Collect every passed fd so none leaks; keep only a single one. */
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
	if (bad) {
		if (m->fd != -1)
			close(m->fd);
		m->fd = -1;
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

void
msg_done(struct msg *m)
{
	if (m->fd != -1)
		close(m->fd);
	m->fd = -1;
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
