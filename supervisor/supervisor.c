/*
 * The supervisor: holds the listening sockets and the shared memory,
 * forks one dcpool and N workers, restarts them one-for-one (OTP style),
 * and drives reload and shutdown (DESIGN.md "Processes", "Reload").
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "dcpool/dcpool.h"
#include "keyidx.h"
#include "links.h"
#include "listener.h"
#include "log.h"
#include "msg.h"
#include "policy.h"
#include "priv.h"
#include "replay.h"
#include "shm.h"
#include "supervisor.h"
#include "tables.h"
#include "users.h"
#include "util.h"
#include "worker/worker.h"

#define ROLE_WORKER 0
#define ROLE_DCPOOL 1

/* A child that lived this long is healthy: its slot's back-off resets. */
#define HEALTHY_AFTER_MS 5000
#define BACKOFF_MAX_MS   1000
/* After a stop, children get this much more than shutdown_timeout. */
#define KILL_GRACE_S 5
#define QUIT_GRACE_S 3

struct child {
	struct child *next;
	pid_t pid;
	int role;
	int slot; /* worker slot; 0 for the dcpool */
	int generation;
	int chan; /* our end of the socketpair */
	struct event *ev;
	int metrics_slot;
	int ready;
	int draining;
	uint64_t started_ms;
};

/* S_UPGRADING: a new binary starting its first generation, whose
 * workers then take the sessions of the old binary's workers. */
enum sup_state { S_RUNNING, S_RELOADING, S_STOPPING, S_UPGRADING };

/* The new binary must serve within this, or the old one stops it. */
#define UPGRADE_TIMEOUT_S 30

#define LINKS_KEY_MAX 1024

static struct {
	struct event_base *base;
	struct config *cfg;
	const struct sup_options *opt;
	struct pubaddr_state pub; /* as the dcpool last said */
	char links_key[LINKS_KEY_MAX]; /* the hosts of the links printed */
	struct lsock_set ls;
	struct child *children;
	int generation;
	enum sup_state state;
	int reload_pending;
	int exit_code;
	struct shm_metrics *metrics;
	struct replay_cache *replay;
	struct policy *policy; /* limits' counts, quota (policy.h) */
	int policy_fd;
	struct event *quota_timer; /* writes the quota state */
	uid_t uid;
	gid_t gid;
	int drop; /* started as root */
	uint64_t *restarts; /* ring of restart times (ms) */
	int nrestarts;
	int slot_failures[CONFIG_MAX_WORKERS + 1];
	struct event *stop_timer;
	struct event *sig[7];
	char exe[4096]; /* this binary's path, for -s upgrade */
	int metrics_fd, replay_fd; /* the zones' memfds */
	/* The metrics page's listening socket, kept like the slot sockets
	 * (its queue survives a dcpool's exit); the one a reload replaced
	 * goes once the old dcpool has. */
	int mlfd, mlfd_old;
	char mlkey[96]; /* what it listens on, "address:port" */
	/* Old side of an upgrade: the new binary, while it starts. */
	struct {
		pid_t pid;
		int chan;
		struct event *ev, *timer;
		int ready;
	} up;
	int upgraded; /* the new binary serves: we hand over and exit */
	/* New side: the channel to the old supervisor, and how many
	 * workers it has (each gets a handoff channel). */
	int up_chan;
	uint32_t old_workers;
} S;

static void spawn(int role, int slot, int generation);
static void begin_stop(int immediate, int code);
static int pidfile_write(const char *path);

/* ------------------------------------------------------------ config */

static void
absolutize(char *path, size_t cap, const char *cwd)
{
	char buf[8192];

	if (path[0] == '\0' || path[0] == '/')
		return;
	snprintf(buf, sizeof(buf), "%s/%s", cwd,
	    strncmp(path, "./", 2) == 0 ? path + 2 : path);
	if (strlen(buf) < cap)
		snprintf(path, cap, "%s", buf);
}

void
config_absolutize(struct config *cfg, const char *cwd)
{
	absolutize(cfg->pidfile, sizeof(cfg->pidfile), cwd);
	absolutize(cfg->state_dir, sizeof(cfg->state_dir), cwd);
	if (cfg->api_users_file[0] == '\0')
		snprintf(cfg->api_users_file, sizeof(cfg->api_users_file),
		    "%.4000s/%s", cfg->state_dir, CONFIG_USERS_FILE);
	absolutize(cfg->api_users_file, sizeof(cfg->api_users_file), cwd);
	if (cfg->log_target == LOG_TARGET_FILE)
		absolutize(cfg->log_file, sizeof(cfg->log_file), cwd);
}

/*
 * The dcpool, unprivileged, keeps Telegram's config and the site
 * profiles in state_dir: it exists, belongs to the user the children run
 * as, mode 0700. A state_dir or chroot that others may write is refused:
 * whoever can write there can plant a Telegram config or a secret.
 */
static int
writable_by_others(const char *path, char *err, size_t errlen, const char *what)
{
	struct stat st;

	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s %s is not a directory", what, path);
		return 1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
		    "%s %s is writable by others (mode %04o): chmod go-w it",
		    what, path, (unsigned)(st.st_mode & 07777));
		return 1;
	}
	return 0;
}

static int
prepare_state_dir(
    const struct config *cfg, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	if (cfg->chroot[0] != '\0' &&
	    writable_by_others(cfg->chroot, err, errlen, "chroot"))
		return -1;
	if (cfg->state_dir[0] == '\0')
		return 0;
	if (mkdir(cfg->state_dir, 0700) == -1 && errno != EEXIST) {
		log_warn("cannot create state_dir %s", cfg->state_dir);
		return 0;
	}
	if (writable_by_others(cfg->state_dir, err, errlen, "state_dir"))
		return -1;
	/* chmod first: once it is the user's, root needs CAP_FOWNER. */
	if (chmod(cfg->state_dir, 0700) == -1)
		log_warn("cannot chmod 0700 state_dir %s", cfg->state_dir);
	if (S.drop && chown(cfg->state_dir, uid, gid) == -1)
		log_warn("cannot give state_dir %s to %s", cfg->state_dir,
		    cfg->user);
	return 0;
}

/*
 * Before any fork with cfg: each listener's index of its connection
 * gauges in the metrics zone, the same for its name in every generation.
 */
static void
assign_listener_indexes(struct config *cfg)
{
	int full = 0;

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];

		if ((l->shm_index = shm_listener_index(S.metrics, l->name)) ==
		    -1)
			full = 1;
	}
	/*
	 * Names of listeners gone by renames: free those without open
	 * connections. An old worker not yet draining might still count
	 * one on a freed index for a moment; better than no limit at all.
	 */
	for (int k = 0; full && k < SHM_MAX_LISTENERS; k++) {
		size_t i;

		for (i = 0; i < cfg->nlisteners; i++)
			if (cfg->listeners[i].shm_index == k)
				break;
		if (i == cfg->nlisteners)
			(void)shm_listener_forget(S.metrics, k);
	}
	for (size_t i = 0; full && i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];

		if (l->shm_index == -1)
			l->shm_index = shm_listener_index(S.metrics, l->name);
		if (l->shm_index == -1)
			log_warnx("listener %s: no connection gauges left "
			          "(%d names, all with connections open); "
			          "its max_connections is not enforced",
			    l->name, SHM_MAX_LISTENERS);
	}
}

/*
 * Before any fork with cfg: each user's record in the policy zone, the
 * same for its listener and name in every generation (its quota and
 * counts follow it over reloads).
 */
static void
assign_user_indexes(struct config *cfg)
{
	size_t lost = 0;

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		if (l->nusers == 0)
			log_warnx("listener %s has no users: every client is "
			          "refused as a bad client",
			    l->name);
		for (size_t u = 0; u < l->nusers; u++)
			if ((l->users[u].pidx = policy_user_index(
			         S.policy, l->name, l->users[u].name)) == -1)
				lost++;
	}
	if (lost)
		log_warnx("policy zone full (%d users over the daemon's "
		          "life): %zu users have no limits, quota or counts; "
		          "restart mtprotod to start a new zone",
		    POLICY_MAX_USERS, lost);
}

/* The quota state: written every QUOTA_SAVE_S and at stop. */
#define QUOTA_SAVE_S 60

static void
quota_save(void)
{
	char path[4200];

	if (S.policy == NULL || S.cfg->state_dir[0] == '\0')
		return;
	snprintf(
	    path, sizeof(path), "%s/%s", S.cfg->state_dir, POLICY_STATE_FILE);
	if (policy_save(S.policy, path) == -1)
		log_warn("cannot write the quota state %s", path);
}

static void
quota_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	quota_save();
}

/* ------------------------------------------------------------ children */

/* What a child drops to, resolved before the fork (priv.h). */
static struct priv_params
child_priv(const struct config *cfg)
{
	struct priv_params p = {
		.drop = S.drop,
		.uid = S.uid,
		.gid = S.gid,
		.chroot = cfg->chroot,
		.user = cfg->user,
		.group = cfg->group,
	};
	return p;
}

/*
 * The user and group the children run as. The default, mtprotod (which
 * make install creates), falls back to nobody / nogroup with a warning
 * when it does not exist, so that a daemon run from the build tree
 * works; a user or group named in the file must exist.
 */
static int
resolve_ids(
    const struct config *cfg, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	static int warned;
	struct passwd *pw;
	struct group *gr;

	if (geteuid() != 0)
		return 0;
	if ((pw = getpwnam(cfg->user)) == NULL && !cfg->user_given &&
	    (pw = getpwnam("nobody")) != NULL && !warned++)
		log_warnx("user \"%s\" not found (make install creates it): "
		          "the children run as nobody, whom other daemons "
		          "share; create it (useradd --system --user-group "
		          "%s) or set \"user\"",
		    cfg->user, cfg->user);
	if (pw == NULL) {
		snprintf(err, errlen, "user \"%s\" not found", cfg->user);
		return -1;
	}
	if ((gr = getgrnam(cfg->group)) == NULL && !cfg->group_given)
		gr = getgrnam("nogroup");
	if (gr == NULL) {
		snprintf(err, errlen, "group \"%s\" not found", cfg->group);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = gr->gr_gid;
	return 0;
}

static int
int_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Close every descriptor but those in keep (sorted in place). */
static void
close_fds_except(int *keep, size_t n)
{
	int lo = 3;
	qsort(keep, n, sizeof(int), int_cmp);
	for (size_t i = 0; i < n; i++) {
		if (keep[i] < lo)
			continue;
		if (keep[i] > lo)
			close_range(lo, keep[i] - 1, 0);
		lo = keep[i] + 1;
	}
	close_range(lo, ~0U, 0);
}

/*
 * In the child, with every signal blocked since before the fork (see
 * spawn): the parent's handlers would run our code in the child, so
 * reset them all before anything can be delivered, then unblock.
 * SIGINT is ignored: Ctrl-C in -f mode reaches the whole process group,
 * and the supervisor, which gets it too, stops its children in order
 * (workers drain, then the dcpool quits). A worker may still install
 * its own SIGINT handler.
 */
static void
child_reset_signals(void)
{
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static struct child *
child_find_pid(pid_t pid)
{
	for (struct child *c = S.children; c; c = c->next)
		if (c->pid == pid)
			return c;
	return NULL;
}

static void
child_unlink(struct child *dead)
{
	for (struct child **pp = &S.children; *pp; pp = &(*pp)->next)
		if (*pp == dead) {
			*pp = dead->next;
			return;
		}
}

static int
count_children(int role, int generation, int only_ready)
{
	int n = 0;
	for (struct child *c = S.children; c; c = c->next)
		if (c->role == role &&
		    (generation < 0 || c->generation == generation) &&
		    (!only_ready || c->ready))
			n++;
	return n;
}

static struct child *
current_dcpool(void)
{
	for (struct child *c = S.children; c; c = c->next)
		if (c->role == ROLE_DCPOOL && c->generation == S.generation)
			return c;
	return NULL;
}

/*
 * Connect a worker to a dcpool: a socketpair, one end to each, so that
 * either can be restarted on its own (the other gets the new end).
 */
static void
link_worker_dcpool(struct child *w, struct child *d)
{
	int sv[2];

	if (w == NULL || d == NULL)
		return;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair for worker %d and dcpool", w->slot);
		return;
	}
	if (msg_send_dcpool_peer(w->chan, (uint32_t)w->slot,
	        (uint32_t)w->generation, sv[0]) == -1 ||
	    msg_send_dcpool_peer(d->chan, (uint32_t)w->slot,
	        (uint32_t)w->generation, sv[1]) == -1)
		log_warn("passing the dcpool channel to worker %d", w->slot);
	close(sv[0]);
	close(sv[1]);
}

/* MSG_DRAIN or MSG_QUIT to one child. */
static int
send_stop(struct child *c, uint32_t type)
{
	return type == MSG_DRAIN ? msg_send_drain(c->chan)
	                         : msg_send_quit(c->chan);
}

static void
send_all(int role, int generation, uint32_t type)
{
	for (struct child *c = S.children; c; c = c->next)
		if ((role < 0 || c->role == role) &&
		    (generation < 0 || c->generation == generation)) {
			if (type == MSG_DRAIN)
				c->draining = 1;
			if (send_stop(c, type) == -1)
				log_debug("send %s to pid %d: %s",
				    msg_type_name(type), (int)c->pid,
				    strerror(errno));
		}
}

/* Room for many handed-over sessions in flight (root may exceed
 * net.core.wmem_max; otherwise the kernel's default stays). */
#define HANDOFF_SNDBUF (4 * 1024 * 1024)

/*
 * Wire an old worker to the new worker of its slot (or, when workers
 * shrank, of slot % workers) for the session handoff. 0, or -1 when
 * there is no such worker or the channel cannot be made (the old worker
 * then only drains).
 */
/* A handoff channel, with room for many sessions in flight. */
static int
handoff_channel(int sv[2])
{
	int sz = HANDOFF_SNDBUF;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	for (int i = 0; i < 2; i++)
		if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &sz,
		        sizeof(sz)) == -1)
			setsockopt(
			    sv[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	return 0;
}

static int
handoff_pair(struct child *old)
{
	int slot = old->slot % S.cfg->workers, sv[2], r = 0;
	struct child *nw = NULL;

	for (struct child *c = S.children; c; c = c->next)
		if (c->role == ROLE_WORKER && c->generation == S.generation &&
		    c->slot == slot && c->ready && !c->draining)
			nw = c;
	if (nw == NULL)
		return -1;
	if (handoff_channel(sv) == -1) {
		log_warn("socketpair for the handoff of worker %d", old->slot);
		return -1;
	}
	if (msg_send_handoff(nw->chan, MSG_HANDOFF_FROM, sv[1]) == -1 ||
	    msg_send_handoff(old->chan, MSG_HANDOFF_TO, sv[0]) == -1) {
		log_warn("passing the handoff channel of worker %d (pid %d)",
		    old->slot, (int)old->pid);
		r = -1;
	}
	close(sv[0]);
	close(sv[1]);
	return r;
}

/*
 * The metrics socket for cfg: *fd is -2 when the one we have listens
 * where cfg wants (or none is wanted and none is open), else a new one,
 * or -1: none wanted, or it cannot listen there (another daemon has the
 * port: the page is off, with a warning, and the next reload tries
 * again; the proxy itself goes on). key is what it listens on. Nothing
 * changes until metrics_commit().
 */
static void
metrics_open(const struct config *cfg, int *fdp, char key[96])
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = -1, one = 1;

	key[0] = '\0';
	*fdp = -2;
	if (cfg->metrics_port == 0) {
		if (S.mlfd >= 0)
			*fdp = -1;
		return;
	}
	snprintf(key, 96, "%s:%u", cfg->metrics_address, cfg->metrics_port);
	if (S.mlfd >= 0 && strcmp(key, S.mlkey) == 0)
		return;
	if (addr_from_ip_port(
	        cfg->metrics_address, cfg->metrics_port, &ss, &len) == -1 ||
	    (fd = socket(ss.ss_family,
	         SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, 128) == -1) {
		log_warnx("metrics: cannot listen on %s: %s; the metrics page "
		          "is off",
		    key, strerror(errno));
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	*fdp = fd;
}

/* Use what metrics_open() gave; the socket it replaces goes once the
 * old dcpool has (finish_reload). */
static void
metrics_commit(int fd, const char *key)
{
	if (fd == -2)
		return;
	if (S.mlfd_old >= 0)
		close(S.mlfd_old);
	S.mlfd_old = S.mlfd;
	S.mlfd = fd;
	snprintf(S.mlkey, sizeof(S.mlkey), "%s", key);
}

static void
finish_reload(void)
{
	int old = S.generation - 1;
	/* The new generation serves: each old worker stops accepting and
	 * hands its sessions over to a new worker (or, failing that,
	 * drains them); removed listeners close now that no new worker
	 * has them and the old ones let go. */
	for (struct child *c = S.children; c; c = c->next)
		if (c->generation < S.generation && !c->draining) {
			c->draining = 1;
			if (c->role == ROLE_DCPOOL)
				send_stop(c, MSG_QUIT);
			else if (handoff_pair(c) == -1)
				send_stop(c, MSG_DRAIN);
		}
	lsock_close_removed(&S.ls);
	if (S.mlfd_old >= 0) {
		close(S.mlfd_old);
		S.mlfd_old = -1;
	}
	S.state = S_RUNNING;
	log_notice("reload complete: generation %d serves, generation %d "
	           "hands its sessions over",
	    S.generation, old);
	if (S.reload_pending) {
		S.reload_pending = 0;
		kill(getpid(), SIGHUP);
	}
}

static void check_upgrade_done(void);

static void
check_reload_done(void)
{
	check_upgrade_done();
	if (S.state != S_RELOADING)
		return;
	if (count_children(ROLE_WORKER, S.generation, 1) >= S.cfg->workers &&
	    count_children(ROLE_DCPOOL, S.generation, 1) >= 1)
		finish_reload();
}

/*
 * The dcpool found the public address (or why not): when the links'
 * hosts change, they are printed again (stdout, as at start).
 */
static void
pubaddr_changed(void)
{
	char key[LINKS_KEY_MAX];

	links_hosts_key(S.cfg, S.opt->server, &S.pub, key, sizeof(key));
	if (strcmp(key, S.links_key) == 0)
		return;
	snprintf(S.links_key, sizeof(S.links_key), "%s", key);
	if (S.pub.v4[0] != '\0' || S.pub.v6[0] != '\0')
		log_notice("links now name %s (public address %s%s%s)", key,
		    S.pub.v4, S.pub.v4[0] && S.pub.v6[0] ? " and " : "",
		    S.pub.v6);
	else
		log_notice("links now name %s (guessed: %s)", key, S.pub.why);
	links_print_start(stdout, S.cfg, S.opt->server, &S.pub, 0);
	fflush(stdout);
}

static void do_reload(void);

/* The users file's revision, to the dcpool (it answers GETs with it). */
static void
api_push_revision(void)
{
	char rev[65], buf[128];

	users_revision(S.cfg->api_users_file, rev);
	snprintf(buf, sizeof(buf), "{\"revision\":\"%s\"}", rev);
	for (struct child *c = S.children; c; c = c->next)
		if (c->role == ROLE_DCPOOL &&
		    msg_send_api(c->chan, MSG_API_REPLY, 0, 0, buf) == -1)
			log_warn(
			    "api: passing the revision to pid %d", (int)c->pid);
}

/* A change from the management API (dcpool/api.c): applied, reloaded,
 * answered. */
static void
api_request(struct child *c, uint32_t id, const char *req)
{
	json_t *j = json_loads(req, 0, NULL);
	const char *op = NULL;
	int status = 500;
	char *out = NULL;

	if (j && json_unpack(j, "{s:s}", "op", &op) == 0 &&
	    strcmp(op, "reload") == 0) {
		log_notice("api: reload requested");
		do_reload();
		status = 202;
		out = strdup("{}");
	} else {
		out = users_api(S.cfg, S.opt->config_path, req, &status);
		if (status < 300)
			do_reload();
	}
	json_decref(j);
	if (msg_send_api(c->chan, MSG_API_REPLY, id, (uint32_t)status,
	        out ? out
	            : "{\"code\":\"internal_error\","
	              "\"message\":\"out of memory\"}") == -1)
		log_warn("api: answering the dcpool");
	free(out);
	if (status < 300)
		api_push_revision();
}

static void
child_chan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;
	static struct msg m;
	int r;

	while ((r = msg_recv(fd, &m)) == 1) {
		switch (m.type) {
		case MSG_READY:
			if (msg_get_empty(&m, MSG_READY) == -1)
				goto bad;
			c->ready = 1;
			if (c->role == ROLE_DCPOOL)
				api_push_revision();
			log_debug("%s %d (pid %d) ready",
			    c->role == ROLE_WORKER ? "worker" : "dcpool",
			    c->slot, (int)c->pid);
			check_reload_done();
			break;
		case MSG_PUBADDR:
			if (c->role != ROLE_DCPOOL ||
			    msg_get_pubaddr(&m, &S.pub) == -1)
				goto bad;
			pubaddr_changed();
			break;
		case MSG_API_REQUEST: {
			static char req[MSG_PAYLOAD_MAX];
			uint32_t id, st;
			if (c->role != ROLE_DCPOOL ||
			    msg_get_api(&m, MSG_API_REQUEST, &id, &st, req,
			        sizeof(req)) == -1)
				goto bad;
			api_request(c, id, req);
			break;
		}
		default:
bad:
			log_warnx("unexpected message %s from pid %d",
			    msg_type_name(m.type), (int)c->pid);
		}
		msg_done(&m);
	}
	if (r == -2)
		log_warnx("malformed message from pid %d", (int)c->pid);
	if (r == 0) {
		/* The child is exiting; SIGCHLD does the bookkeeping. */
		event_del(c->ev);
	}
}

static void
restart_cb(evutil_socket_t fd, short what, void *arg)
{
	intptr_t v = (intptr_t)arg;
	int role = (int)(v >> 16), slot = (int)(v & 0xffff);

	if (S.state == S_STOPPING)
		return;
	if (role == ROLE_WORKER && slot >= S.cfg->workers)
		return; /* the slot went away in a reload */
	/* Another restart of this slot may have run already. */
	for (struct child *c = S.children; c; c = c->next)
		if (c->role == role && c->slot == slot &&
		    c->generation == S.generation)
			return;
	spawn(role, slot, S.generation);
}

/* Restart intensity, as an OTP supervisor: too many restarts stop us. */
static int
restart_allowed(void)
{
	uint64_t now = now_ms(),
	         window = (uint64_t)S.cfg->restart_period * 1000;
	int n = 0, cap = S.cfg->max_restarts + 1;

	if (S.restarts == NULL || S.nrestarts != cap) {
		free(S.restarts);
		S.restarts = calloc(cap, sizeof(uint64_t));
		S.nrestarts = cap;
		if (S.restarts == NULL)
			fatal("calloc");
	}
	/* Shift in the new restart, count those within the period. */
	memmove(S.restarts + 1, S.restarts, (cap - 1) * sizeof(uint64_t));
	S.restarts[0] = now;
	for (int i = 0; i < cap; i++)
		if (S.restarts[i] && now - S.restarts[i] <= window)
			n++;
	return n <= S.cfg->max_restarts;
}

static void
child_exited(struct child *c, int status)
{
	const char *what = c->role == ROLE_WORKER ? "worker" : "dcpool";
	int expected = c->draining || S.state == S_STOPPING ||
	    c->generation != S.generation;
	uint64_t lived = now_ms() - c->started_ms;

	if (WIFSIGNALED(status))
		log_msg(expected ? LOG_INFO : LOG_ERR,
		    "%s %d (pid %d) killed by signal %d (%s)", what, c->slot,
		    (int)c->pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		log_msg(
		    expected && WEXITSTATUS(status) == 0 ? LOG_INFO : LOG_ERR,
		    "%s %d (pid %d) exited with status %d", what, c->slot,
		    (int)c->pid, WEXITSTATUS(status));

	shm_metrics_release(S.metrics, c->metrics_slot);
	/* Its connections are gone: their counts for limits too. */
	policy_reclaim(S.policy, c->metrics_slot);
	if (c->ev)
		event_free(c->ev);
	close(c->chan);
	child_unlink(c);

	if (!expected) {
		int idx = c->role == ROLE_DCPOOL ? CONFIG_MAX_WORKERS : c->slot;
		if (lived > HEALTHY_AFTER_MS)
			S.slot_failures[idx] = 0;
		if (!restart_allowed()) {
			log_errorx("restart intensity exceeded: more than %d "
			           "restarts in %d seconds; stopping mtprotod",
			    S.cfg->max_restarts, S.cfg->restart_period);
			begin_stop(1, 1);
		} else {
			int f = S.slot_failures[idx]++;
			long delay = f == 0 ? 0 : 50L << (f > 5 ? 5 : f);
			if (delay > BACKOFF_MAX_MS)
				delay = BACKOFF_MAX_MS;
			struct timeval tv = { delay / 1000,
				(delay % 1000) * 1000 };
			log_notice(
			    "restarting %s %d in %ld ms", what, c->slot, delay);
			shm_sup_add(S.metrics,
			    c->role == ROLE_DCPOOL ? SUP_RESTARTS_DCPOOL
			                           : SUP_RESTARTS_WORKER);
			event_base_once(S.base, -1, EV_TIMEOUT, restart_cb,
			    (void *)(intptr_t)((c->role << 16) | c->slot), &tv);
		}
	}
	free(c);

	if (S.state == S_STOPPING) {
		if (count_children(ROLE_WORKER, -1, 0) == 0 &&
		    count_children(ROLE_DCPOOL, -1, 0) > 0)
			send_all(ROLE_DCPOOL, -1, MSG_QUIT);
		if (S.children == NULL)
			event_base_loopbreak(S.base);
	}
}

/*
 * fork() for a child: no signal may run our handlers in the child before
 * it resets them (child_reset_signals), so all are blocked across the
 * fork; the parent gets its mask back, the child unblocks them itself.
 */
static pid_t
fork_child(void)
{
	sigset_t all, old;
	pid_t pid;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid != 0)
		sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

static void
spawn(int role, int slot, int generation)
{
	struct config *cfg = S.cfg;
	struct worker_listen *wl = NULL;
	size_t nwl = 0, nkeep = 0;
	int sv[2], *keep;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");
		return;
	}
	/* The listening sockets of this slot: slot k of every listener,
	 * and the surplus slots k + N, k + 2N... when workers shrank. */
	if (role == ROLE_WORKER) {
		size_t total = 0;
		for (size_t i = 0; i < S.ls.n; i++)
			total += S.ls.v[i].nfds;
		wl = calloc(total + 1, sizeof(*wl));
		if (wl == NULL)
			fatal("calloc");
		for (size_t i = 0; i < S.ls.n; i++) {
			struct lsock *ls = &S.ls.v[i];
			if (ls->removed)
				continue;
			for (int k = slot; k < ls->nfds; k += cfg->workers) {
				wl[nwl].fd = ls->fds[k];
				wl[nwl].l = &cfg->listeners[ls->cfg_index];
				nwl++;
			}
		}
	}
	keep = calloc(nwl + 4, sizeof(int));
	if (keep == NULL)
		fatal("calloc");
	keep[nkeep++] = sv[1];
	if (log_fd() > 2)
		keep[nkeep++] = log_fd();
	if (role == ROLE_DCPOOL && S.mlfd >= 0)
		keep[nkeep++] = S.mlfd;
	for (size_t i = 0; i < nwl; i++)
		keep[nkeep++] = wl[i].fd;

	int mslot = shm_metrics_alloc(S.metrics, 0, role, slot);
	pid = fork_child();
	if (pid == -1) {
		log_warn("fork");
		shm_metrics_release(S.metrics, mslot);
		close(sv[0]);
		close(sv[1]);
		free(wl);
		free(keep);
		return;
	}
	if (pid == 0) {
		child_reset_signals();
		close_fds_except(keep, nkeep);
		fd_set_cloexec(sv[1]);
		if (role == ROLE_WORKER) {
			struct worker_args wa = {
				.cfg = cfg,
				.slot = slot,
				.generation = generation,
				.chan = sv[1],
				.listen = wl,
				.nlisten = nwl,
				.metrics = shm_metrics_slot(S.metrics, mslot),
				.zone = S.metrics,
				.replay = S.replay,
				.policy = S.policy,
				.pslot = mslot,
				.priv = child_priv(cfg),
			};
			worker_main(&wa);
		} else {
			struct dcpool_args da = {
				.cfg = cfg,
				.generation = generation,
				.chan = sv[1],
				.policy = S.policy,
				.metrics = S.metrics,
				.replay = S.replay,
				.metrics_fd = S.mlfd,
				.priv = child_priv(cfg),
			};
			dcpool_main(&da);
		}
	}
	free(wl);
	free(keep);
	close(sv[1]);

	struct child *c = calloc(1, sizeof(*c));
	if (c == NULL)
		fatal("calloc");
	c->pid = pid;
	c->role = role;
	c->slot = slot;
	c->generation = generation;
	c->chan = sv[0];
	c->metrics_slot = mslot;
	c->started_ms = now_ms();
	struct shm_slot *ms = shm_metrics_slot(S.metrics, mslot);
	if (ms)
		ms->pid = pid;
	fd_set_nonblock(c->chan);
	c->ev =
	    event_new(S.base, c->chan, EV_READ | EV_PERSIST, child_chan_cb, c);
	event_add(c->ev, NULL);
	c->next = S.children;
	S.children = c;
	log_info("started %s %d (pid %d, generation %d)",
	    role == ROLE_WORKER ? "worker" : "dcpool", slot, (int)pid,
	    generation);

	/* Wire the new child to its counterpart(s). */
	if (role == ROLE_WORKER) {
		link_worker_dcpool(c, current_dcpool());
	} else {
		for (struct child *w = S.children; w; w = w->next)
			if (w->role == ROLE_WORKER)
				link_worker_dcpool(w, c);
	}
}

/* ------------------------------------------------------------ signals */

static void
stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	for (struct child *c = S.children; c; c = c->next) {
		log_warnx(
		    "pid %d did not stop in time; killing it", (int)c->pid);
		kill(c->pid, SIGKILL);
	}
}

/* Children still there after tv are killed; none left: we are done. */
static void
arm_stop_timer(const struct timeval *tv)
{
	if (S.stop_timer == NULL)
		S.stop_timer = evtimer_new(S.base, stop_timer_cb, NULL);
	evtimer_add(S.stop_timer, tv);
	if (S.children == NULL)
		event_base_loopbreak(S.base);
}

static void
begin_stop(int immediate, int code)
{
	struct timeval tv = { immediate
		    ? QUIT_GRACE_S
		    : S.cfg->shutdown_timeout + KILL_GRACE_S,
		0 };

	if (code > S.exit_code)
		S.exit_code = code;
	if (S.state == S_STOPPING && !immediate)
		return;
	S.state = S_STOPPING;
	if (immediate) {
		send_all(-1, -1, MSG_QUIT);
	} else {
		send_all(ROLE_WORKER, -1, MSG_DRAIN);
		if (count_children(ROLE_WORKER, -1, 0) == 0)
			send_all(ROLE_DCPOOL, -1, MSG_QUIT);
	}
	arm_stop_timer(&tv);
}

/* ------------------------------------------------------------ upgrade */

/*
 * Binary upgrade (-s upgrade, SIGUSR2), old side: fork and exec this
 * binary's path (the installed file, maybe new), which inherits the slot
 * sockets and the shared zones (their numbers go over a channel), starts
 * its own dcpool and workers, and wires each of our workers to one of
 * its own for the session handoff. Until it says it serves, we serve;
 * if it exits or does not serve within UPGRADE_TIMEOUT_S, we go on.
 */
static void
upgrade_forget(void)
{
	if (S.up.ev)
		event_free(S.up.ev);
	if (S.up.timer)
		event_free(S.up.timer);
	if (S.up.chan > 0)
		close(S.up.chan);
	memset(&S.up, 0, sizeof(S.up));
}

static void
upgrade_served(void)
{
	log_notice("upgrade: the new mtprotod (pid %d) serves; handing the "
	           "sessions over, then exiting",
	    (int)S.up.pid);
	S.up.ready = 1;
	evtimer_del(S.up.timer);
	S.upgraded = 1;
	S.state = S_STOPPING;
	/* Workers that got no channel drain; our dcpool goes. */
	for (struct child *c = S.children; c; c = c->next)
		if (!c->draining) {
			c->draining = 1;
			send_stop(
			    c, c->role == ROLE_DCPOOL ? MSG_QUIT : MSG_DRAIN);
		}
	struct timeval tv = { S.cfg->shutdown_timeout + KILL_GRACE_S, 0 };
	arm_stop_timer(&tv);
}

static void
upgrade_chan_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct msg m;
	uint32_t slot;
	int r, hfd;

	while ((r = msg_recv(fd, &m)) == 1) {
		switch (m.type) {
		case MSG_UPGRADE_HANDOFF:
			if ((hfd = msg_get_upgrade_handoff(&m, &slot)) == -1)
				goto bad;
			for (struct child *c = S.children; c; c = c->next)
				if (c->role == ROLE_WORKER &&
				    c->generation == S.generation &&
				    c->slot == (int)slot && !c->draining) {
					c->draining = 1;
					if (msg_send_handoff(c->chan,
					        MSG_HANDOFF_TO, hfd) == -1)
						log_warn("upgrade: handoff "
						         "channel to worker %d",
						    c->slot);
					break;
				}
			close(hfd);
			break;
		case MSG_UPGRADE_READY:
			if (msg_get_empty(&m, MSG_UPGRADE_READY) == -1)
				goto bad;
			upgrade_served();
			break;
		default:
bad:
			log_warnx("upgrade: unexpected %s from the new binary",
			    msg_type_name(m.type));
		}
		msg_done(&m);
	}
	if (r == 0 || (r == -1 && errno != EAGAIN))
		event_del(S.up.ev); /* it exits; SIGCHLD tells */
}

static void
upgrade_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	log_errorx("upgrade failed: the new binary (pid %d) did not serve "
	           "within %d s; stopping it, this mtprotod keeps serving",
	    (int)S.up.pid, UPGRADE_TIMEOUT_S);
	kill(S.up.pid, SIGQUIT);
}

static void
upgrade_exited(int status)
{
	if (!S.up.ready) {
		if (WIFSIGNALED(status))
			log_errorx(
			    "upgrade failed: the new binary (pid %d) was "
			    "killed by signal %d before it served; this "
			    "mtprotod keeps serving",
			    (int)S.up.pid, WTERMSIG(status));
		else
			log_errorx(
			    "upgrade failed: the new binary (pid %d) "
			    "exited with status %d before it served (see "
			    "its log lines above); this mtprotod keeps "
			    "serving",
			    (int)S.up.pid, WEXITSTATUS(status));
	}
	upgrade_forget();
}

static void
do_upgrade(void)
{
	char num[16];
	char *argv[8];
	int argc = 0, sv[2];
	pid_t pid;

	if (S.state != S_RUNNING || S.up.pid) {
		log_notice("upgrade: not now (a reload, a stop or another "
		           "upgrade is under way)");
		return;
	}
	if (S.exe[0] == '\0' || access(S.exe, X_OK) == -1) {
		log_errorx("upgrade failed: no binary to run at %s", S.exe);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("upgrade: socketpair");
		return;
	}
	/* What it inherits, named before it starts (the channel keeps
	 * the messages until it reads them). */
	for (size_t i = 0; i < S.ls.n; i++) {
		struct lsock *ls = &S.ls.v[i];
		if (!ls->removed &&
		    msg_send_upgrade_lsock(sv[0], ls->key, &ls->addr,
		        ls->addrlen, ls->fds, (uint32_t)ls->nfds) == -1) {
			log_warn("upgrade: passing listener %s", ls->key);
			goto fail;
		}
	}
	if (msg_send_upgrade_state(sv[0], S.metrics_fd, S.replay_fd,
	        (uint32_t)S.cfg->workers, S.mlfd, S.mlkey, S.policy_fd) == -1) {
		log_warn("upgrade: passing the state");
		goto fail;
	}
	snprintf(num, sizeof(num), "%d", sv[1]);
	argv[argc++] = S.exe;
	if (S.opt->config_path) {
		argv[argc++] = "-c";
		argv[argc++] = (char *)S.opt->config_path;
	}
	if (S.opt->foreground)
		argv[argc++] = "-f";
	argv[argc++] = "--upgrade-fd";
	argv[argc++] = num;
	argv[argc] = NULL;

	pid = fork_child();
	if (pid == -1) {
		log_warn("upgrade: fork");
		goto fail;
	}
	if (pid == 0) {
		child_reset_signals();
		/* Relative paths of the built-in default resolve as ours. */
		if (chdir(S.opt->cwd) == -1)
			_exit(126);
		fd_clear_cloexec(sv[1]);
		fd_clear_cloexec(S.metrics_fd);
		fd_clear_cloexec(S.replay_fd);
		if (S.policy_fd >= 0)
			fd_clear_cloexec(S.policy_fd);
		if (S.mlfd >= 0)
			fd_clear_cloexec(S.mlfd);
		for (size_t i = 0; i < S.ls.n; i++)
			for (int k = 0; k < S.ls.v[i].nfds; k++)
				fd_clear_cloexec(S.ls.v[i].fds[k]);
		execv(S.exe, argv);
		_exit(127);
	}
	close(sv[1]);
	S.up.pid = pid;
	S.up.chan = sv[0];
	fd_set_nonblock(sv[0]);
	S.up.ev = event_new(
	    S.base, sv[0], EV_READ | EV_PERSIST, upgrade_chan_cb, NULL);
	S.up.timer = evtimer_new(S.base, upgrade_timeout_cb, NULL);
	event_add(S.up.ev, NULL);
	struct timeval tv = { UPGRADE_TIMEOUT_S, 0 };
	evtimer_add(S.up.timer, &tv);
	log_notice("upgrade: started %s (pid %d)", S.exe, (int)pid);
	return;
fail:
	close(sv[0]);
	close(sv[1]);
}

/*
 * New side: take the listening sockets and the zones the old binary
 * passed (blocking: nothing else to do before them).
 */
static int
upgrade_receive(int fd, char *err, size_t errlen)
{
	static struct msg m;
	struct timeval tmo = { 10, 0 };
	int got_state = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	while (!got_state) {
		int r = msg_recv(fd, &m);
		if (r != 1) {
			snprintf(err, errlen,
			    "upgrade: nothing from the old mtprotod (%s)",
			    r == 0 ? "closed" : strerror(errno));
			return -1;
		}
		if (m.type == MSG_UPGRADE_LSOCK) {
			char key[MSG_LSOCK_KEY];
			struct sockaddr_storage addr;
			socklen_t alen;
			int fds[MSG_LSOCK_FDS];
			uint32_t n;
			if (msg_get_upgrade_lsock(&m, key, &addr, &alen, fds,
			        MSG_LSOCK_FDS, &n) == -1 ||
			    lsock_adopt(&S.ls, key, &addr, alen, fds, (int)n) ==
			        -1) {
				snprintf(err, errlen,
				    "upgrade: a malformed listener");
				return -1;
			}
			for (uint32_t i = 0; i < n; i++)
				fd_set_cloexec(fds[i]);
		} else if (m.type == MSG_UPGRADE_STATE) {
			int mfd, rfd, pfd, polfd;
			char pkey[MSG_LSOCK_KEY];
			if (msg_get_upgrade_state(&m, &mfd, &rfd,
			        &S.old_workers, &pfd, pkey, &polfd) == -1) {
				snprintf(
				    err, errlen, "upgrade: a malformed state");
				return -1;
			}
			fd_set_cloexec(mfd);
			fd_set_cloexec(rfd);
			if (pfd >= 0) {
				/* metrics_open() keeps it if the address
				 * stays. */
				fd_set_cloexec(pfd);
				S.mlfd = pfd;
				snprintf(S.mlkey, sizeof(S.mlkey), "%s", pkey);
			}
			S.metrics = shm_metrics_attach(mfd);
			S.replay = replay_attach(rfd);
			if (S.metrics)
				S.metrics_fd = mfd;
			else {
				log_notice("upgrade: the metrics zone is of "
				           "another version; counting anew");
				close(mfd);
			}
			if (polfd >= 0) {
				fd_set_cloexec(polfd);
				if ((S.policy = policy_attach(polfd)) != NULL)
					S.policy_fd = polfd;
				else {
					log_notice(
					    "upgrade: the policy zone is "
					    "of another version; counts "
					    "and quota from the state file");
					close(polfd);
				}
			}
			if (S.replay)
				S.replay_fd = rfd;
			else {
				log_notice(
				    "upgrade: the replay cache is of "
				    "another version; starting a new one");
				close(rfd);
			}
			got_state = 1;
		}
		msg_done(&m);
	}
	return 0;
}

/*
 * New side: every new worker serves; give each old worker a channel to
 * one of them, then say we serve and take the pidfile.
 */
static void
check_upgrade_done(void)
{
	if (S.state != S_UPGRADING ||
	    count_children(ROLE_WORKER, S.generation, 1) < S.cfg->workers ||
	    count_children(ROLE_DCPOOL, S.generation, 1) < 1)
		return;
	for (uint32_t k = 0; k < S.old_workers; k++) {
		struct child *nw = NULL;
		int sv[2];
		for (struct child *c = S.children; c; c = c->next)
			if (c->role == ROLE_WORKER &&
			    c->slot == (int)(k % (uint32_t)S.cfg->workers))
				nw = c;
		if (nw == NULL || handoff_channel(sv) == -1)
			continue;
		if (msg_send_handoff(nw->chan, MSG_HANDOFF_FROM, sv[1]) == -1 ||
		    msg_send_upgrade_handoff(S.up_chan, k, sv[0]) == -1)
			log_warn(
			    "upgrade: a handoff channel for old worker %u", k);
		close(sv[0]);
		close(sv[1]);
	}
	if (pidfile_write(S.cfg->pidfile) == -1)
		log_warn("cannot write pidfile %s", S.cfg->pidfile);
	if (msg_send_simple(S.up_chan, MSG_UPGRADE_READY) == -1)
		log_warn("upgrade: telling the old mtprotod");
	close(S.up_chan);
	S.up_chan = -1;
	lsock_close_removed(&S.ls);
	if (S.mlfd_old >= 0) {
		close(S.mlfd_old);
		S.mlfd_old = -1;
	}
	S.state = S_RUNNING;
	log_notice("upgrade complete: this mtprotod serves; the old one "
	           "hands its sessions over");
	if (S.reload_pending) {
		S.reload_pending = 0;
		kill(getpid(), SIGHUP);
	}
}

/* ------------------------------------------------------------ in place */

/* A listener's users by name (keyidx.h): the old and new files may have
 * many. */
static void
user_index(struct keyidx *x, const struct config_listener *l)
{
	if (keyidx_init(x, l->nusers, l->users, sizeof(*l->users),
	        offsetof(struct config_user, name), 0) == -1)
		fatal("keyidx_init");
	for (size_t u = 0; u < l->nusers; u++)
		(void)keyidx_add(x, u);
}

/* "users +A -R ~C (removed: x, y), ..." for the log. */
static void
describe_changes(
    const struct config *o, const struct config *n, char *buf, size_t cap)
{
	size_t added = 0, removed = 0, changed = 0, other = 0, len = 0;
	char gone[256] = "";

	for (size_t i = 0; i < n->nlisteners; i++) {
		const struct config_listener *a = &o->listeners[i],
		                             *b = &n->listeners[i];
		struct keyidx ia, ib;
		user_index(&ia, a);
		user_index(&ib, b);
		for (size_t u = 0; u < b->nusers; u++) {
			long k = keyidx_find(&ia, b->users[u].name);
			if (k == -1)
				added++;
			else if (memcmp(&a->users[k], &b->users[u],
			             sizeof(b->users[u])) != 0)
				changed++;
		}
		for (size_t u = 0; u < a->nusers; u++)
			if (keyidx_find(&ib, a->users[u].name) == -1) {
				removed++;
				size_t g = strlen(gone);
				if (g + strlen(a->users[u].name) + 3 <
				    sizeof(gone))
					snprintf(gone + g, sizeof(gone) - g,
					    "%s%s", g ? ", " : "",
					    a->users[u].name);
			}
		keyidx_free(&ia);
		keyidx_free(&ib);
		other += a->has_ad_tag != b->has_ad_tag ||
		    memcmp(a->ad_tag, b->ad_tag, sizeof(a->ad_tag)) != 0 ||
		    strcmp(a->tls_domain, b->tls_domain) != 0 ||
		    strcmp(a->fronting_host, b->fronting_host) != 0 ||
		    a->fronting_port != b->fronting_port;
	}
	len = (size_t)snprintf(buf, cap,
	    "users +%zu -%zu ~%zu%s%s%s; %zu listeners with a new ad tag, "
	    "TLS domain or fronting target",
	    added, removed, changed, removed ? " (removed: " : "", gone,
	    removed ? ")" : "", other);
	if (len < cap && o->log_level != n->log_level)
		snprintf(buf + len, cap - len, "; log level %d -> %d",
		    o->log_level, n->log_level);
}

/* 1 if a and b have the same in-place tables. */
static int
tables_same(const struct config *a, const struct config *b)
{
	uint8_t *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	int same = tables_encode(a, &x, &xl) == 0 &&
	    tables_encode(b, &y, &yl) == 0 && xl == yl && memcmp(x, y, xl) == 0;

	free(x);
	free(y);
	return same;
}

/*
 * A reload that only changes what the children take in place: send them
 * the new tables (MSG_TABLES) and keep every process. 0, or -1 when the
 * tables cannot be sent (the caller starts a new generation instead).
 */
static int
reload_in_place(struct config *ncfg)
{
	char what[512];
	uint8_t *blob;
	size_t len;
	int fd;

	if (tables_encode(ncfg, &blob, &len) == -1)
		return -1;
	fd = memfd_of("mtprotod-tables", blob, len);
	explicit_bzero(blob, len);
	free(blob);
	if (fd == -1) {
		log_warn("reload: writing the tables; starting new workers");
		return -1;
	}
	describe_changes(S.cfg, ncfg, what, sizeof(what));
	for (struct child *c = S.children; c; c = c->next)
		if (msg_send_tables(c->chan, fd) == -1)
			log_warn("reload: passing the tables to pid %d",
			    (int)c->pid);
	close(fd);
	config_free(S.cfg);
	S.cfg = ncfg;
	assign_listener_indexes(ncfg);
	log_set_level(ncfg->log_level);
	api_push_revision();
	log_notice("reload applied in place, no new process: %s", what);
	return 0;
}

static void
do_reload(void)
{
	char err[CONFIG_ERR_MAX];
	struct config *ncfg;
	uid_t uid = S.uid;
	gid_t gid = S.gid;

	if (S.state == S_STOPPING)
		return;
	if (S.state == S_RELOADING || S.state == S_UPGRADING) {
		log_notice("reload requested while %s; queued",
		    S.state == S_RELOADING ? "reloading" : "upgrading");
		S.reload_pending = 1;
		return;
	}
	log_notice("reloading configuration%s%s",
	    S.opt->config_path ? " from " : "",
	    S.opt->config_path ? S.opt->config_path : "");
	if (S.opt->config_path)
		ncfg = config_load(S.opt->config_path, err, sizeof(err));
	else /* the state_dir of the start, made absolute */
		ncfg = config_default_in(S.cfg->state_dir, err, sizeof(err));
	if (ncfg == NULL) {
		log_errorx("reload failed, keeping the running configuration: "
		           "%s",
		    err);
		shm_sup_add(S.metrics, SUP_RELOADS_FAILED);
		return;
	}
	config_absolutize(ncfg, S.opt->cwd);
	/* Before the tables are compared and sent: they carry them. */
	assign_user_indexes(ncfg);
	int mfd = -2;
	char mkey[96];
	if (resolve_ids(ncfg, &uid, &gid, err, sizeof(err)) == -1 ||
	    prepare_state_dir(ncfg, uid, gid, err, sizeof(err)) == -1 ||
	    lsock_sync(&S.ls, ncfg, ncfg->workers, err, sizeof(err)) == -1) {
		log_errorx("reload failed, keeping the running configuration: "
		           "%s",
		    err);
		shm_sup_add(S.metrics, SUP_RELOADS_FAILED);
		config_free(ncfg);
		return;
	}
	metrics_open(ncfg, &mfd, mkey);
	metrics_commit(mfd, mkey);
	/* Only in-place tables changed: the children take them. (The
	 * same file again rolls a new generation, as it always did: a way
	 * to renew the workers, which drops nothing.) */
	if (config_inplace_only(S.cfg, ncfg) && !tables_same(S.cfg, ncfg) &&
	    reload_in_place(ncfg) == 0) {
		shm_sup_add(S.metrics, SUP_RELOADS_IN_PLACE);
		return;
	}
	shm_sup_add(S.metrics, SUP_RELOADS_ROLLING);
	if (ncfg->replay_entries != S.cfg->replay_entries)
		log_notice("replay.entries changes at the next restart");
	/* Children keep their own copy of the old config (fork). */
	config_free(S.cfg);
	S.cfg = ncfg;
	assign_listener_indexes(ncfg);
	S.uid = uid;
	S.gid = gid;
	log_set_level(ncfg->log_level);
	log_set_style(
	    ncfg->log_json, ncfg->log_facility, ncfg->log_syslog_socket);
	S.generation++;
	S.state = S_RELOADING;
	memset(S.slot_failures, 0, sizeof(S.slot_failures));
	spawn(ROLE_DCPOOL, 0, S.generation);
	for (int i = 0; i < ncfg->workers; i++)
		spawn(ROLE_WORKER, i, S.generation);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGHUP:
		do_reload();
		break;
	case SIGTERM:
	case SIGINT:
		log_notice("%s: stopping gracefully (up to %d s)",
		    strsignal(sig), S.cfg->shutdown_timeout);
		begin_stop(0, 0);
		break;
	case SIGQUIT:
		log_notice("SIGQUIT: stopping now");
		begin_stop(1, 0);
		break;
	case SIGUSR2:
		do_upgrade();
		break;
	case SIGUSR1:
		if (log_reopen() == -1) {
			log_warn("reopening the log file");
			break;
		}
		log_notice("log file reopened");
		/* Children run unprivileged and may not open the file
		 * themselves: they get our new descriptor. */
		for (struct child *c = S.children; c; c = c->next) {
			if (msg_send_reopen_log(c->chan, log_fd()) == -1)
				log_warn("passing the log file to pid %d",
				    (int)c->pid);
		}
		break;
	case SIGCHLD: {
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (S.up.pid && pid == S.up.pid) {
				upgrade_exited(status);
				continue;
			}
			struct child *c = child_find_pid(pid);
			if (c)
				child_exited(c, status);
		}
		break;
	}
	}
}

/* ------------------------------------------------------------ pidfile */

static int
pidfile_write(const char *path)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		return -1;
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, n) != n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* The pid of a live daemon named in the pidfile, or 0. */
static pid_t
pidfile_running(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	long pid = strtol(buf, NULL, 10);
	if (pid <= 1 || (kill((pid_t)pid, 0) == -1 && errno == ESRCH))
		return 0;
	return (pid_t)pid;
}

static void
libevent_log_cb(int severity, const char *msg)
{
	log_debug("libevent: %s", msg);
}

/* ------------------------------------------------------------ main */

/* Give back what we hold, so leak checkers see a clean exit. */
static void
sup_cleanup(void)
{
	for (size_t i = 0; i < nitems(S.sig); i++)
		if (S.sig[i])
			event_free(S.sig[i]);
	if (S.stop_timer)
		event_free(S.stop_timer);
	while (S.children) {
		struct child *c = S.children;
		S.children = c->next;
		if (c->ev)
			event_free(c->ev);
		close(c->chan);
		free(c);
	}
	if (S.base)
		event_base_free(S.base);
	upgrade_forget();
	lsock_close_all(&S.ls);
	free(S.ls.v);
	if (S.metrics_fd >= 0)
		close(S.metrics_fd);
	if (S.replay_fd >= 0)
		close(S.replay_fd);
	if (S.quota_timer)
		event_free(S.quota_timer);
	if (S.policy) {
		policy_destroy(S.policy); /* closes policy_fd */
		S.policy_fd = -1;
	}
	if (S.up_chan >= 0)
		close(S.up_chan);
	if (S.mlfd >= 0)
		close(S.mlfd);
	if (S.mlfd_old >= 0)
		close(S.mlfd_old);
	free(S.restarts);
	shm_metrics_destroy(S.metrics);
	replay_destroy(S.replay);
	config_free(S.cfg);
	memset(&S, 0, sizeof(S));
}

int
supervisor_run(struct config *cfg, const struct sup_options *opt)
{
	char err[CONFIG_ERR_MAX];
	static const int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1,
		SIGUSR2, SIGCHLD };
	pid_t other;

	S.cfg = cfg;
	S.opt = opt;
	S.pub = opt->pub;
	links_hosts_key(
	    cfg, opt->server, &S.pub, S.links_key, sizeof(S.links_key));
	S.drop = geteuid() == 0;
	S.up_chan = opt->upgrade_fd;
	S.metrics_fd = S.replay_fd = S.policy_fd = -1;
	S.mlfd = S.mlfd_old = -1;
	/* The path now, while it names this binary: -s upgrade runs
	 * whatever is installed there then. */
	ssize_t xl = readlink("/proc/self/exe", S.exe, sizeof(S.exe) - 1);
	S.exe[xl > 0 ? xl : 0] = '\0';
	/* Before the pidfile names us, so whoever reads it sees the role. */
	proctitle_set("mtprotod: supervisor");
	if (resolve_ids(cfg, &S.uid, &S.gid, err, sizeof(err)) == -1 ||
	    prepare_state_dir(cfg, S.uid, S.gid, err, sizeof(err)) == -1) {
		log_errorx("%s", err);
		goto fail;
	}
	if (S.up_chan >= 0) {
		/* A binary upgrade: our parent, the running daemon, names
		 * the sockets and zones we take over. */
		fd_set_cloexec(S.up_chan);
		if (upgrade_receive(S.up_chan, err, sizeof(err)) == -1) {
			log_errorx("%s", err);
			goto fail;
		}
		S.state = S_UPGRADING;
		log_notice("upgrade: taking over from pid %d", (int)getppid());
	} else if ((other = pidfile_running(cfg->pidfile)) != 0) {
		log_errorx("already running (pid %d, pidfile %s)", (int)other,
		    cfg->pidfile);
		goto fail;
	}
	int mfd = -2;
	char mkey[96];
	if (lsock_sync(&S.ls, cfg, cfg->workers, err, sizeof(err)) == -1) {
		log_errorx("%s", err);
		goto fail;
	}
	metrics_open(cfg, &mfd, mkey);
	metrics_commit(mfd, mkey);
	if (S.metrics == NULL)
		S.metrics = shm_metrics_create_fd(
		    2 * CONFIG_MAX_WORKERS + 8, &S.metrics_fd);
	if (S.replay == NULL)
		S.replay = replay_create_fd(
		    cfg->replay_entries, cfg->replay_window, &S.replay_fd);
	if (S.policy == NULL) {
		char qpath[4200];
		S.policy =
		    policy_create_fd(2 * CONFIG_MAX_WORKERS + 8, &S.policy_fd);
		snprintf(qpath, sizeof(qpath), "%s/%s", cfg->state_dir,
		    POLICY_STATE_FILE);
		if (S.policy && cfg->state_dir[0] != '\0' &&
		    policy_load(S.policy, qpath) == -1)
			log_warn("cannot read the quota state %s; counting "
			         "anew",
			    qpath);
	}
	if (S.metrics == NULL || S.replay == NULL || S.policy == NULL) {
		log_warn("creating shared memory");
		goto fail;
	}
	assign_listener_indexes(cfg);
	assign_user_indexes(cfg);
	for (size_t i = 0; i < S.ls.n; i++)
		log_notice("listening on %s (%d sockets)", S.ls.v[i].key,
		    S.ls.v[i].nfds);

	if (!opt->foreground) {
		/* An upgrade runs detached already (the old one did). */
		fflush(stdout);
		if (S.state != S_UPGRADING && daemon(0, 0) == -1) {
			log_warn("daemon");
			goto fail;
		}
		log_detach();
	}
	/* An upgrade takes the pidfile once it serves. */
	if (S.state != S_UPGRADING && pidfile_write(cfg->pidfile) == -1)
		log_warn("cannot write pidfile %s", cfg->pidfile);

	event_set_log_callback(libevent_log_cb);
	S.base = event_base_new();
	if (S.base == NULL)
		fatalx("event_base_new failed");
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < nitems(sigs); i++) {
		S.sig[i] = evsignal_new(S.base, sigs[i], signal_cb, NULL);
		evsignal_add(S.sig[i], NULL);
	}
	log_notice("mtprotod %s started: %d workers, %zu listeners",
	    PACKAGE_VERSION, cfg->workers, cfg->nlisteners);

	spawn(ROLE_DCPOOL, 0, S.generation);
	for (int i = 0; i < cfg->workers; i++)
		spawn(ROLE_WORKER, i, S.generation);
	S.quota_timer = event_new(S.base, -1, EV_PERSIST, quota_timer_cb, NULL);
	struct timeval qtv = { QUOTA_SAVE_S, 0 };
	event_add(S.quota_timer, &qtv);

	event_base_dispatch(S.base);
	/* The new binary keeps counting in the same zone. */
	if (!S.upgraded)
		quota_save();

	if (!S.upgraded) /* else it names the new mtprotod */
		unlink(S.cfg->pidfile);
	log_notice("mtprotod stopped%s",
	    S.upgraded        ? " (upgraded)"
	        : S.exit_code ? " with errors"
	                      : "");
	int code = S.exit_code;
	sup_cleanup();
	return code;
fail:
	sup_cleanup();
	return 1;
}
