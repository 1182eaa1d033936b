#include "autoconf.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "util.h"

#define LISTEN_BACKLOG 4096

static int
lsock_open_one(const struct sockaddr_storage *ss, socklen_t len, char *err,
    size_t errlen, const char *key)
{
	int one = 1, fd;

	fd = socket(
	    ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "listener %s: socket: %s", key,
		    strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
		goto fail;
	if (ss->ss_family == AF_INET6) {
		/* "::" is dual-stack, a specific v6 address only v6. */
		const struct sockaddr_in6 *s6 = (const void *)ss;
		int v6only = !IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
		setsockopt(
		    fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) == -1 ||
	    listen(fd, LISTEN_BACKLOG) == -1)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "listener %s: %s", key, strerror(errno));
	close(fd);
	return -1;
}

/*
 * handshake_mss: the MSS the SYN-ACK announces, so a client sends its
 * ClientHello in small segments. Linux fixes a connection's MSS at the
 * handshake, both ways, for its whole life (TCP_MAXSEG on an established
 * socket changes nothing), so it stays small after the handshake too; 0
 * gives back the kernel's. Set again on every sync: a reload may change
 * it, for new connections.
 */
static void
lsock_set_mss(struct lsock *ls, int mss)
{
	for (int k = 0; k < ls->nfds; k++)
		if (setsockopt(ls->fds[k], IPPROTO_TCP, TCP_MAXSEG, &mss,
		        sizeof(mss)) == -1) {
			log_warn("listener %s: handshake_mss %d", ls->key, mss);
			return;
		}
}

static int
lsock_grow(struct lsock *ls, int nslots, char *err, size_t errlen)
{
	if (ls->nfds >= nslots)
		return 0;
	int *fds = realloc(ls->fds, nslots * sizeof(int));
	if (fds == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ls->fds = fds;
	while (ls->nfds < nslots) {
		int fd = lsock_open_one(
		    &ls->addr, ls->addrlen, err, errlen, ls->key);
		if (fd == -1)
			return -1;
		ls->fds[ls->nfds++] = fd;
	}
	return 0;
}

/* Close the sockets past old_nfds: opened by a sync that failed. */
static void
lsock_shrink(struct lsock *ls, int old_nfds)
{
	while (ls->nfds > old_nfds)
		close(ls->fds[--ls->nfds]);
}

int
lsock_sync(struct lsock_set *set, const struct config *cfg, int nslots,
    char *err, size_t errlen)
{
	size_t oldn = set->n, newn = set->n;
	int *old_nfds;
	struct lsock *v;

	v = realloc(set->v, (set->n + cfg->nlisteners) * sizeof(*v));
	old_nfds = calloc(set->n + 1, sizeof(int));
	if (v == NULL || old_nfds == NULL) {
		if (v)
			set->v = v;
		free(old_nfds);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	set->v = v;
	for (size_t j = 0; j < oldn; j++)
		old_nfds[j] = set->v[j].nfds;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		char key[ADDR_STRLEN];
		addr_str((const struct sockaddr *)&l->addr, key, sizeof(key));
		struct lsock *ls = NULL;
		for (size_t j = 0; j < newn; j++)
			if (!set->v[j].removed &&
			    strcmp(set->v[j].key, key) == 0)
				ls = &set->v[j];
		if (ls == NULL) {
			ls = &set->v[newn++];
			memset(ls, 0, sizeof(*ls));
			snprintf(ls->key, sizeof(ls->key), "%s", key);
			ls->addr = l->addr;
			ls->addrlen = l->addrlen;
		}
		ls->cfg_index = (int)i;
		if (lsock_grow(ls, nslots, err, errlen) == -1)
			goto rollback;
		lsock_set_mss(ls, l->handshake_mss);
	}
	/* Everything opened: commit, and mark listeners that went away. */
	for (size_t j = 0; j < oldn; j++) {
		struct lsock *ls = &set->v[j];
		int found = 0;
		for (size_t i = 0; i < cfg->nlisteners && !found; i++) {
			char key[ADDR_STRLEN];
			addr_str(
			    (const struct sockaddr *)&cfg->listeners[i].addr,
			    key, sizeof(key));
			found = strcmp(ls->key, key) == 0;
		}
		if (!found)
			ls->removed = 1;
	}
	set->n = newn;
	free(old_nfds);
	return 0;
rollback:
	for (size_t j = 0; j < oldn; j++)
		lsock_shrink(&set->v[j], old_nfds[j]);
	for (size_t j = oldn; j < newn; j++) {
		lsock_shrink(&set->v[j], 0);
		free(set->v[j].fds);
	}
	free(old_nfds);
	return -1;
}

int
lsock_adopt(struct lsock_set *set, const char *key,
    const struct sockaddr_storage *addr, socklen_t addrlen, const int *fds,
    int nfds)
{
	struct lsock *v, *ls;

	if (nfds < 0 ||
	    (v = realloc(set->v, (set->n + 1) * sizeof(*v))) == NULL)
		return -1;
	set->v = v;
	ls = &v[set->n];
	memset(ls, 0, sizeof(*ls));
	snprintf(ls->key, sizeof(ls->key), "%s", key);
	ls->addr = *addr;
	ls->addrlen = addrlen;
	ls->fds = calloc((size_t)nfds + 1, sizeof(int));
	if (ls->fds == NULL)
		return -1;
	memcpy(ls->fds, fds, (size_t)nfds * sizeof(int));
	ls->nfds = nfds;
	ls->cfg_index = -1;
	set->n++;
	return 0;
}

void
lsock_close_removed(struct lsock_set *set)
{
	size_t j = 0;
	for (size_t i = 0; i < set->n; i++) {
		struct lsock *ls = &set->v[i];
		if (ls->removed) {
			log_info("listener %s closed", ls->key);
			for (int f = 0; f < ls->nfds; f++)
				close(ls->fds[f]);
			free(ls->fds);
			continue;
		}
		set->v[j++] = *ls;
	}
	set->n = j;
}

void
lsock_close_all(struct lsock_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		set->v[i].removed = 1;
	lsock_close_removed(set);
}
