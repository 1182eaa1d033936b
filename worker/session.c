/*
 * Client sessions. Until the protocols land, a session holds the
 * connection and discards what the client sends, which is enough to test
 * the process tree, restarts and reloads.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "session.h"
#include "worker.h"

struct session {
	int		 fd;
	struct event	*ev;
};

void
session_init(void)
{
}

static void
session_close(struct session *s)
{
	event_free(s->ev);
	close(s->fd);
	free(s);
	worker_session_closed();
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
		session_close(s);
}

void
session_accept(int fd, const struct sockaddr *peer, socklen_t len,
    const struct config_listener *l)
{
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		close(fd);
		return;
	}
	s->fd = fd;
	s->ev = event_new(W.base, fd, EV_READ | EV_PERSIST, read_cb, s);
	event_add(s->ev, NULL);
	worker_session_opened();
}
