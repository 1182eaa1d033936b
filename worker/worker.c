/*
 * A worker: one libevent loop that accepts on its slot's sockets and owns
 * its client sessions end to end (DESIGN.md "Workers"). On MSG_DRAIN it
 * stops accepting and exits when its last session closes, or when
 * shutdown_timeout passes.
 *
 * Admission: a connection over limits.max_connections (the daemon's or
 * its listener's, counted in shared memory over every worker) is closed
 * at once. Out of descriptors, the worker stops accepting (the kernel
 * keeps the queue) until a session closes or a second has passed, so it
 * does not spin on a listener that is always readable.
 */
#include "autoconf.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "fpcount.h"
#include "log.h"
#include "msg.h"
#include "replay.h"
#include "session.h"
#include "session_int.h"
#include "shm.h"
#include "tables.h"
#include "priv.h"
#include "util.h"
#include "worker.h"

struct worker W;

static struct event **listen_ev;
static struct event *chan_ev, *dcpool_ev, *drain_timer, *sigterm_ev;
static struct event *accept_resume_ev; /* after running out of fds */
static int accept_paused;

#define ACCEPT_RESUME_MS 1000

static void worker_exit(int) __attribute__((noreturn));

static void
worker_exit(int code)
{
	log_info("exiting (%zu sessions open)", W.nsessions);
	fp_flush();
	exit(code);
}

/* Stop accepting after EMFILE/ENFILE, until a descriptor frees. */
static void
accept_pause(const struct worker_listen *wl)
{
	static uint64_t logged_ms;
	uint64_t now = coarse_now_ms();
	struct timeval tv = { 0, ACCEPT_RESUME_MS * 1000 };

	if (now - logged_ms >= 1000) {
		logged_ms = now;
		log_warn("accept on %s (%zu sessions open); pausing accepts",
		    wl->l->name, W.nsessions);
	}
	shm_add(W.metrics, M_ACCEPT_PAUSED, 1);
	if (accept_paused)
		return;
	accept_paused = 1;
	for (size_t i = 0; i < W.a->nlisten; i++)
		if (listen_ev[i])
			event_del(listen_ev[i]);
	evtimer_add(accept_resume_ev, &tv);
}

static void
accept_resume(void)
{
	if (!accept_paused || W.draining)
		return;
	accept_paused = 0;
	evtimer_del(accept_resume_ev);
	for (size_t i = 0; i < W.a->nlisten; i++)
		if (listen_ev[i])
			event_add(listen_ev[i], NULL);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	accept_resume();
}

/* May this listener take one more connection? */
static int
admit(const struct config_listener *l)
{
	static uint64_t logged_ms;
	const char *which = NULL;

	if (W.cfg->max_connections > 0 &&
	    shm_listener_conns(W.a->zone, -1) >=
	        (uint64_t)W.cfg->max_connections)
		which = "limits.max_connections";
	else if (l->max_connections > 0 && l->shm_index >= 0 &&
	    shm_listener_conns(W.a->zone, l->shm_index) >=
	        (uint64_t)l->max_connections)
		which = "the listener's limits.max_connections";
	if (which == NULL)
		return 1;
	uint64_t now = coarse_now_ms();
	if (now - logged_ms >= 1000) {
		logged_ms = now;
		log_notice(
		    "%s reached: refusing connections on %s", which, l->name);
	}
	shm_add(W.metrics, M_REFUSED, 1);
	return 0;
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	const struct worker_listen *wl = arg;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	/* Bounded batch, so one busy listener cannot starve the loop. */
	for (int i = 0; i < 64 && !W.draining && !accept_paused; i++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_pause(wl);
			return;
		}
		shm_add(W.metrics, M_ACCEPTED, 1);
		if (!admit(wl->l)) {
			close(fd);
			continue;
		}
		session_accept(fd, (struct sockaddr *)&ss, sl, wl->l);
	}
}

static void
stop_accepting(void)
{
	for (size_t i = 0; i < W.a->nlisten; i++) {
		if (listen_ev[i]) {
			event_free(listen_ev[i]);
			listen_ev[i] = NULL;
		}
		/* Our copy only: the supervisor keeps the socket, so its
		 * queue goes to the other workers of the group. */
		close(W.a->listen[i].fd);
	}
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	char census[256];

	session_census(census, sizeof(census));
	log_notice("shutdown_timeout: closing %zu remaining sessions (%s)",
	    W.nsessions, census);
	worker_exit(0);
}

static void
begin_drain(void)
{
	struct timeval tv = { W.cfg->shutdown_timeout, 0 };

	if (W.draining)
		return;
	W.draining = 1;
	stop_accepting();
	log_info("draining: %zu sessions open", W.nsessions);
	if (W.nsessions == 0) {
		if (!handoff_active())
			worker_exit(0);
		handoff_sessions_gone();
	}
	drain_timer = evtimer_new(W.base, drain_timeout_cb, NULL);
	evtimer_add(drain_timer, &tv);
}

/* The handoff channel closed: the new generation has all it takes. */
void
worker_handoff_ended(void)
{
	if (W.nsessions == 0)
		worker_exit(0);
	log_notice("handoff ended; %zu sessions stay here until they end or "
	           "shutdown_timeout",
	    W.nsessions);
}

void
worker_session_opened(const struct config_listener *l)
{
	W.nsessions++;
	shm_add(W.metrics, M_CURRENT, 1);
	if (l->shm_index >= 0)
		shm_listener_conn_add(W.metrics, l->shm_index, 1);
}

void
worker_session_closed(const struct config_listener *l)
{
	W.nsessions--;
	shm_sub(W.metrics, M_CURRENT, 1);
	if (l->shm_index >= 0)
		shm_listener_conn_add(W.metrics, l->shm_index, -1);
	if (W.draining && W.nsessions == 0) {
		if (handoff_active())
			handoff_sessions_gone(); /* exits when it ends */
		else
			worker_exit(0);
	}
	/* A descriptor is free again. */
	accept_resume();
}

static void
dcpool_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct msg m;
	int r;

	while ((r = msg_recv(fd, &m)) == 1) {
		middle_dcpool_msg(&m);
		msg_done(&m);
	}
	if (r == 0 || (r == -1 && errno != EAGAIN)) {
		/* dcpool restarting: the supervisor sends a new channel. */
		event_free(dcpool_ev);
		dcpool_ev = NULL;
		close(W.dcpool_fd);
		W.dcpool_fd = -1;
	}
}

static void
set_dcpool(int fd)
{
	if (dcpool_ev) {
		event_free(dcpool_ev);
		close(W.dcpool_fd);
	}
	W.dcpool_fd = fd;
	fd_set_nonblock(fd);
	dcpool_ev =
	    event_new(W.base, fd, EV_READ | EV_PERSIST, dcpool_cb, NULL);
	event_add(dcpool_ev, NULL);
	middle_dcpool_connected();
}

static void
apply_tables(int fd)
{
	struct tables *t = tables_from_fd(fd);

	if (t == NULL) {
		log_warnx("reload: tables from the supervisor unreadable; "
		          "keeping ours");
		return;
	}
	session_apply_tables(t);
	tables_free(t);
}

static void
chan_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct msg m;
	uint32_t u;
	int pfd;
	int r;

	while ((r = msg_recv(fd, &m)) == 1) {
		switch (m.type) {
		case MSG_DRAIN:
			if (msg_get_empty(&m, MSG_DRAIN) == -1)
				goto malformed;
			begin_drain();
			break;
		case MSG_QUIT:
			if (msg_get_empty(&m, MSG_QUIT) == -1)
				goto malformed;
			worker_exit(0);
			break;
		case MSG_REOPEN_LOG:
			if (msg_get_reopen_log(&m, &pfd) == -1)
				goto malformed;
			if (pfd != -1)
				log_set_fd(pfd);
			break;
		case MSG_TABLES:
			if ((pfd = msg_get_tables(&m)) == -1)
				goto malformed;
			apply_tables(pfd);
			break;
		case MSG_HANDOFF_TO:
			if ((pfd = msg_get_handoff(&m, MSG_HANDOFF_TO)) == -1)
				goto malformed;
			/* Drain, and hand every session over meanwhile. */
			handoff_to(pfd);
			begin_drain();
			break;
		case MSG_HANDOFF_FROM:
			if ((pfd = msg_get_handoff(&m, MSG_HANDOFF_FROM)) == -1)
				goto malformed;
			handoff_from(pfd);
			break;
		case MSG_DCPOOL_PEER:
			if ((pfd = msg_get_dcpool_peer(&m, &u, &u)) == -1)
				goto malformed;
			set_dcpool(pfd);
			break;
		default:
			log_warnx("unexpected message %s from the supervisor",
			    msg_type_name(m.type));
		}
		msg_done(&m);
		continue;
malformed:
		log_warnx(
		    "malformed %s from the supervisor", msg_type_name(m.type));
		msg_done(&m);
	}
	if (r == 0) {
		/* The supervisor is gone: finish what we have, then go. */
		event_del(chan_ev);
		begin_drain();
	}
}

struct evdns_base *
worker_resolver(struct event_base *base, const struct config *cfg)
{
	struct evdns_base *dns;

	if (cfg->resolv_conf == NULL) {
		dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	} else {
		dns = evdns_base_new(base, 0);
		int r = dns ? evdns_base_resolv_conf_parse(
		                  dns, DNS_OPTIONS_ALL, cfg->resolv_conf)
		            : -1;
		if (r != 0) {
			log_warnx("resolv_conf %s: cannot use it (%d)",
			    cfg->resolv_conf, r);
			if (dns)
				evdns_base_free(dns, 0);
			dns = NULL;
		}
	}
	if (dns == NULL)
		log_warnx("no DNS resolver: fronting hosts must be addresses");
	return dns;
}

static void
sig_cb(evutil_socket_t sig, short what, void *arg)
{
	/* A stray SIGTERM (e.g. from a process manager): drain. */
	begin_drain();
}

void
worker_main(struct worker_args *a)
{
	W.a = a;
	W.cfg = a->cfg;
	W.metrics = a->metrics;
	W.dcpool_fd = -1;
	log_set_style(
	    a->cfg->log_json, a->cfg->log_facility, a->cfg->log_syslog_socket);
	log_init(a->cfg->log_target, a->cfg->log_file, a->cfg->log_level,
	    "mtprotod");
	proctitle_set("mtprotod: worker %d", a->slot);

	/* The changelist folds the add/del pairs of one loop turn into
	 * a single epoll_ctl each: sessions flip interest a lot. */
	struct event_config *ec = event_config_new();
	if (ec == NULL)
		fatalx("event_config_new failed");
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	W.base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (W.base == NULL)
		fatalx("event_base_new failed");
	/* The resolver file is read while we may still read it (it can be
	 * root's, or outside the chroot). */
	W.dns = worker_resolver(W.base, a->cfg);
	priv_drop(&a->priv);

	listen_ev = calloc(a->nlisten + 1, sizeof(*listen_ev));
	if (listen_ev == NULL)
		fatal("calloc");
	for (size_t i = 0; i < a->nlisten; i++) {
		listen_ev[i] = event_new(W.base, a->listen[i].fd,
		    EV_READ | EV_PERSIST, accept_cb, &a->listen[i]);
		event_add(listen_ev[i], NULL);
	}
	fd_set_nonblock(a->chan);
	chan_ev =
	    event_new(W.base, a->chan, EV_READ | EV_PERSIST, chan_cb, NULL);
	event_add(chan_ev, NULL);
	sigterm_ev = evsignal_new(W.base, SIGTERM, sig_cb, NULL);
	evsignal_add(sigterm_ev, NULL);
	accept_resume_ev = evtimer_new(W.base, accept_resume_cb, NULL);

	session_init();
	replay_prefault(a->replay);
	if (msg_send_ready(a->chan) == -1)
		log_warn("telling the supervisor we are ready");
	log_info("worker %d serving %zu sockets (generation %d)", a->slot,
	    a->nlisten, a->generation);
	event_base_dispatch(W.base);
	worker_exit(0);
}
