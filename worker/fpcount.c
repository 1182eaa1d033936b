/* ClientHello fingerprints, counted for the dcpool's metrics (fpcount.h). */
#include "autoconf.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "fpcount.h"
#include "log.h"
#include "msg.h"
#include "shm.h"
#include "worker.h"

#define FP_FLUSH_S 2

static struct {
	struct fptable t; /* counted since the last flush */
	struct event *timer;
} FP;

void
fp_flush(void)
{
	if (FP.t.n == 0 && FP.t.other[FP_SERVED] == 0 &&
	    FP.t.other[FP_FRONTED] == 0 && FP.t.other[FP_REFUSED] == 0)
		return;
	/* No dcpool now (restarting): the counts wait for the next one. */
	if (W.dcpool_fd == -1 ||
	    msg_send_fingerprints(W.dcpool_fd, &FP.t) == -1)
		return;
	fptable_clear(&FP.t);
}

/*
 * Our open descriptors, for the metrics (the dcpool may not look in
 * /proc/<pid>/fd of a worker). Linux 6.2 and later give their number as
 * the size of /proc/self/fd, for one stat(); older kernels say 0 there
 * and the entries are counted (a cost per descriptor, every FP_FLUSH_S).
 */
static void
count_fds(void)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	uint64_t n = 0;

	if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0) {
		shm_set(W.metrics, M_OPEN_FDS, (uint64_t)st.st_size);
		return;
	}
	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	shm_set(W.metrics, M_OPEN_FDS, n > 0 ? n - 1 : 0); /* less d's */
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	fp_flush();
	count_fds();
}

void
fp_init(void)
{
	struct timeval tv = { FP_FLUSH_S, 0 };

	fptable_init(&FP.t, FPTABLE_MAX);
	FP.timer = event_new(W.base, -1, EV_PERSIST, flush_cb, NULL);
	if (FP.timer == NULL || event_add(FP.timer, &tv) == -1)
		fatalx("cannot start the fingerprint timer");
}

void
fp_compute(const uint8_t *rec, size_t len, struct fp_print *fp)
{
	if (tls_fingerprints(rec, len, fp->ja3, fp->ja4) == -1) {
		strcpy(fp->ja3, "?");
		strcpy(fp->ja4, "?");
	}
}

void
fp_count(const struct fp_print *fp, enum fp_result r)
{
	fptable_add(&FP.t, fp->ja3, fp->ja4, r, 1);
}
