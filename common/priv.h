/*
 * Dropping privileges in a child process. The supervisor resolves the
 * user and group once (before any fork, and again on a reload) and
 * passes the result down in the child's arguments, so that workers and
 * the dcpool do not reach into the supervisor.
 */
#ifndef MTP_PRIV_H
#define MTP_PRIV_H

#include <sys/types.h>

struct priv_params {
	int drop; /* 1: started as root, drop to uid:gid */
	uid_t uid;
	gid_t gid;
	const char *chroot; /* NULL or "": none */
	const char *user, *group; /* names, for the log */
};

/*
 * Chroots (if asked) and drops to uid:gid; fatal when that fails, since
 * a child must never serve as root. Does nothing when p->drop is 0.
 */
void priv_drop(const struct priv_params *p);

#endif
