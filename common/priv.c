#include "autoconf.h"

#include <grp.h>
#include <unistd.h>

#include "log.h"
#include "priv.h"

void
priv_drop(const struct priv_params *p)
{
	if (p == NULL || !p->drop)
		return;
	if (p->chroot != NULL && p->chroot[0] != '\0') {
		if (chroot(p->chroot) == -1 || chdir("/") == -1)
			fatal("chroot %s", p->chroot);
	}
	if (setgroups(1, &p->gid) == -1 || setgid(p->gid) == -1 ||
	    setuid(p->uid) == -1)
		fatal("cannot drop privileges to %s:%s",
		    p->user ? p->user : "?", p->group ? p->group : "?");
	/* Saved set-user-ID 0 would let us back: make sure it is gone. */
	if (setuid(0) != -1)
		fatalx("privileges were not dropped");
}
