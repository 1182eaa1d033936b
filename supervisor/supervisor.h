#ifndef MTP_SUPERVISOR_H
#define MTP_SUPERVISOR_H

#include "config.h"

#include "discover.h"

struct sup_options {
	const char *config_path; /* NULL: built-in default */
	int config_explicit; /* -c given */
	int foreground;
	char cwd[4096]; /* where mtprotod was started */
	int upgrade_fd; /* --upgrade-fd: the old daemon's channel, or -1 */
	const char *server; /* --server: the links' host */
	/* what the links printed at start were made with */
	struct pubaddr_state pub;
};

/*
 * Relative paths (the defaults when not root) are relative to where
 * mtprotod was started; make them absolute, since daemon() moves to /
 * and a reload reads the file again.
 */
void config_absolutize(struct config *, const char *cwd);

/* Runs the daemon; returns the process exit status. */
int supervisor_run(struct config *, const struct sup_options *);

#endif
