/*
 * Listening sockets. Each configured listener has one SO_REUSEPORT socket
 * per worker slot, all in one reuseport group, so the kernel spreads new
 * connections over the workers. The supervisor keeps every socket open
 * for its whole life: a closed socket would reset the connections waiting
 * in its accept queue (DESIGN.md, "Two traps").
 */
#ifndef MTP_LISTENER_H
#define MTP_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

struct lsock {
	char key[96]; /* "address:port" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int *fds; /* one per slot */
	int nfds;
	int cfg_index; /* index in the current config */
	int removed; /* gone from the config */
};

struct lsock_set {
	struct lsock *v;
	size_t n;
};

/*
 * Make the set match cfg: keep sockets of listeners that stay, open those
 * of new listeners, make sure each has at least nslots sockets, and mark
 * those not in cfg as removed (closed later by lsock_close_removed).
 * On error nothing is marked and err says why.
 */
int lsock_sync(struct lsock_set *, const struct config *, int nslots, char *err,
    size_t errlen);
void lsock_close_removed(struct lsock_set *);
/*
 * Binary upgrade: a listener's sockets inherited from the old binary
 * (lsock_sync then matches them to the config by key). 0 or -1.
 */
int lsock_adopt(struct lsock_set *, const char *key,
    const struct sockaddr_storage *addr, socklen_t addrlen, const int *fds,
    int nfds);
void lsock_close_all(struct lsock_set *);

#endif
