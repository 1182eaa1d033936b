#include "autoconf.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/crypto.h>

#include "config.h"
#include "fptable.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "replay.h"
#include "shm.h"
#include "status.h"
#include "util.h"

static struct shm_metrics *zone;
static struct fptable fps; /* the workers' ClientHello fingerprints */
static struct replay_cache *replay;
static struct policy *policy;
static const struct config *mcfg;

static const struct {
	enum shm_counter c;
	const char *name, *type, *help;
} metric[] = {
	{ M_ACCEPTED, "mtprotod_connections_accepted_total", "counter",
	    "Client connections accepted." },
	{ M_HANDSHAKE_OK, "mtprotod_handshakes_ok_total", "counter",
	    "Clients that passed the handshake." },
	{ M_HANDSHAKE_BAD, "mtprotod_handshakes_bad_total", "counter",
	    "Clients that failed the handshake." },
	{ M_REPLAYS, "mtprotod_replays_total", "counter",
	    "Replayed handshakes caught." },
	{ M_FRONTED, "mtprotod_fronted_total", "counter",
	    "Connections relayed to the fronting site." },
	{ M_HANDSHAKE_TIMEOUT, "mtprotod_handshake_timeouts_total", "counter",
	    "Connections closed by the handshake timeout." },
	{ M_BYTES_C2S, "mtprotod_bytes_client_to_telegram_total", "counter",
	    "Payload bytes from clients to Telegram." },
	{ M_BYTES_S2C, "mtprotod_bytes_telegram_to_client_total", "counter",
	    "Payload bytes from Telegram to clients." },
	{ M_DC_CONNECT_FAIL, "mtprotod_dc_connect_failures_total", "counter",
	    "Failed connections to Telegram DCs." },
	{ M_LINKS_MIGRATED, "mtprotod_middle_clients_migrated_total", "counter",
	    "Clients moved to another link when Telegram closed "
	    "theirs." },
	{ M_LINKS_DROPPED, "mtprotod_middle_clients_dropped_total", "counter",
	    "Clients closed with their link (caught mid-packet)." },
	{ M_REFUSED, "mtprotod_connections_refused_total", "counter",
	    "Connections closed at accept by limits.max_connections." },
	{ M_ACCEPT_PAUSED, "mtprotod_accept_pauses_total", "counter",
	    "Accepts that failed for want of descriptors or memory; the "
	    "worker paused accepting." },
	{ M_SLOW_CLIENTS, "mtprotod_middle_slow_clients_closed_total",
	    "counter",
	    "Middle-mode clients closed for not reading their answers." },
	{ M_HANDSHAKE_EVICTED, "mtprotod_handshakes_evicted_total", "counter",
	    "Connections in their handshake closed by "
	    "limits.handshake_memory (oldest first)." },
	{ M_LINKS_BUILT, "mtprotod_middle_links_built_total", "counter",
	    "Links to middle proxies the dcpool built and handed to workers "
	    "(every new link and every reconnect)." },
	{ M_LINKS_BUILD_FAILED, "mtprotod_middle_link_failures_total",
	    "counter",
	    "Attempts to build a link to a middle proxy that failed (each "
	    "is retried with backoff)." },
	{ M_HANDED_OVER, "mtprotod_sessions_handed_over_total", "counter",
	    "Live sessions a worker took over from a worker of the "
	    "previous generation (reload)." },
	{ M_CURRENT, "mtprotod_connections", "gauge",
	    "Open client connections." },
	{ M_CURRENT_DC, "mtprotod_telegram_connections", "gauge",
	    "Open connections and links to Telegram." },
	{ M_HANDSHAKES, "mtprotod_handshake_connections", "gauge",
	    "Client connections still in their handshake." },
	{ M_HANDSHAKE_BYTES, "mtprotod_handshake_bytes", "gauge",
	    "Bytes held by connections still in their handshake." },
};

/* Per listener: clients past the handshake by protocol, bytes. */
static void
listeners_out(struct evbuffer *b)
{
	static const struct {
		enum shm_lstat st;
		const char *label;
	} proto[] = { { LS_OK_CLASSIC, "classic" }, { LS_OK_SECURE, "secure" },
		{ LS_OK_FAKE_TLS, "fake_tls" } };
	uint64_t st[SHM_MAX_LISTENERS][SHM_LSTATS];

	for (size_t i = 0; i < mcfg->nlisteners; i++)
		shm_listener_stats(zone, mcfg->listeners[i].shm_index, st[i]);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_listener_connections_total Clients that passed "
	    "the handshake, per listener and protocol.\n"
	    "# TYPE mtprotod_listener_connections_total counter\n");
	for (size_t i = 0; i < mcfg->nlisteners; i++)
		for (size_t k = 0; k < sizeof(proto) / sizeof(proto[0]); k++)
			evbuffer_add_printf(b,
			    "mtprotod_listener_connections_total{listener="
			    "\"%s\",protocol=\"%s\"} %llu\n",
			    mcfg->listeners[i].name, proto[k].label,
			    (unsigned long long)st[i][proto[k].st]);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_listener_bytes_total Payload bytes relayed, per "
	    "listener and direction.\n"
	    "# TYPE mtprotod_listener_bytes_total counter\n");
	for (size_t i = 0; i < mcfg->nlisteners; i++)
		evbuffer_add_printf(b,
		    "mtprotod_listener_bytes_total{listener=\"%s\","
		    "direction=\"client_to_telegram\"} %llu\n"
		    "mtprotod_listener_bytes_total{listener=\"%s\","
		    "direction=\"telegram_to_client\"} %llu\n",
		    mcfg->listeners[i].name,
		    (unsigned long long)st[i][LS_BYTES_C2S],
		    mcfg->listeners[i].name,
		    (unsigned long long)st[i][LS_BYTES_S2C]);
}

/* One user's (or the listener's "other") samples of the three series. */
static void
user_samples(struct evbuffer *c, struct evbuffer *y, struct evbuffer *q,
    const char *listener, const char *user, const struct policy_stats *v)
{
	evbuffer_add_printf(c,
	    "mtprotod_user_connections{listener=\"%s\",user=\"%s\"} %llu\n",
	    listener, user, (unsigned long long)v->conns);
	evbuffer_add_printf(y,
	    "mtprotod_user_bytes_total{listener=\"%s\",user=\"%s\","
	    "direction=\"client_to_telegram\"} %llu\n"
	    "mtprotod_user_bytes_total{listener=\"%s\",user=\"%s\","
	    "direction=\"telegram_to_client\"} %llu\n",
	    listener, user, (unsigned long long)v->c2s, listener, user,
	    (unsigned long long)v->s2c);
	evbuffer_add_printf(q,
	    "mtprotod_user_quota_used_bytes{listener=\"%s\",user=\"%s\"} "
	    "%llu\n",
	    listener, user, (unsigned long long)v->used);
}

/*
 * Per user (metrics.max_user_series of them, in the config's order; the
 * rest summed as user="other" per listener): open connections, bytes
 * each way, quota used in the current period. Names are [A-Za-z0-9_.-]
 * (config.c): no label escaping. A user named "other" is always counted
 * in the rest, so that no series is written twice.
 */
static void
users_out(struct evbuffer *b)
{
	int64_t now = (int64_t)time(NULL);
	int series = 0;
	struct evbuffer *c = evbuffer_new(), *y = evbuffer_new(),
	                *q = evbuffer_new();

	if (policy == NULL || c == NULL || y == NULL || q == NULL)
		goto out;
	for (size_t i = 0; i < mcfg->nlisteners; i++) {
		const struct config_listener *l = &mcfg->listeners[i];
		struct policy_stats other = { 0 };
		int rest = 0;

		for (size_t k = 0; k < l->nusers; k++) {
			const struct config_user *u = &l->users[k];
			struct policy_stats v;
			if (policy_user_stats(policy, u, now, &v) == -1)
				continue;
			if (series < mcfg->metrics_max_user_series &&
			    strcmp(u->name, "other") != 0) {
				series++;
				user_samples(c, y, q, l->name, u->name, &v);
				continue;
			}
			other.conns += v.conns;
			other.c2s += v.c2s;
			other.s2c += v.s2c;
			other.used += v.used;
			rest = 1;
		}
		if (rest)
			user_samples(c, y, q, l->name, "other", &other);
	}
	evbuffer_add_printf(b,
	    "# HELP mtprotod_user_connections Open connections per user "
	    "(metrics.max_user_series users, the rest as user=\"other\").\n"
	    "# TYPE mtprotod_user_connections gauge\n");
	evbuffer_add_buffer(b, c);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_user_bytes_total Payload bytes per user and "
	    "direction (since the user's record was made; kept over "
	    "restarts).\n"
	    "# TYPE mtprotod_user_bytes_total counter\n");
	evbuffer_add_buffer(b, y);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_user_quota_used_bytes Quota used in the "
	    "current period, both directions.\n"
	    "# TYPE mtprotod_user_quota_used_bytes gauge\n");
	evbuffer_add_buffer(b, q);
out:
	if (c)
		evbuffer_free(c);
	if (y)
		evbuffer_free(y);
	if (q)
		evbuffer_free(q);
}

/* Middle mode: links per DC by state, and clients waiting for one. */
static void
dclinks_out(struct evbuffer *b)
{
	struct shm_dclinks g[4 * SHM_DC_POOLS];
	size_t n = shm_dclinks(zone, g, nitems(g));

	if (!config_middle_used(mcfg))
		return;
	evbuffer_add_printf(b,
	    "# HELP mtprotod_middle_links Links to the middle proxies the "
	    "workers hold, per DC and state (up: serving; pending: asked "
	    "of the dcpool, not built yet).\n"
	    "# TYPE mtprotod_middle_links gauge\n");
	for (size_t i = 0; i < n; i++)
		evbuffer_add_printf(b,
		    "mtprotod_middle_links{dc=\"%d\",state=\"up\"} %u\n"
		    "mtprotod_middle_links{dc=\"%d\",state=\"pending\"} %u\n",
		    g[i].dc, g[i].up, g[i].dc, g[i].pending);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_middle_waiting_clients Clients waiting for a "
	    "link, per DC.\n"
	    "# TYPE mtprotod_middle_waiting_clients gauge\n");
	for (size_t i = 0; i < n; i++)
		evbuffer_add_printf(b,
		    "mtprotod_middle_waiting_clients{dc=\"%d\"} %u\n", g[i].dc,
		    g[i].waiting);
}

/* Reloads by result, restarts by role, and what this build is. */
static void
supervisor_out(struct evbuffer *b)
{
	evbuffer_add_printf(b,
	    "# HELP mtprotod_reloads_total Configuration reloads by result "
	    "(rolling: a new generation; in_place: the children took new "
	    "tables; failed: the running configuration kept).\n"
	    "# TYPE mtprotod_reloads_total counter\n"
	    "mtprotod_reloads_total{result=\"rolling\"} %llu\n"
	    "mtprotod_reloads_total{result=\"in_place\"} %llu\n"
	    "mtprotod_reloads_total{result=\"failed\"} %llu\n"
	    "# HELP mtprotod_child_restarts_total Children restarted after "
	    "they exited unexpectedly, by role.\n"
	    "# TYPE mtprotod_child_restarts_total counter\n"
	    "mtprotod_child_restarts_total{role=\"worker\"} %llu\n"
	    "mtprotod_child_restarts_total{role=\"dcpool\"} %llu\n"
	    "# HELP mtprotod_build_info The version running, and OpenSSL's.\n"
	    "# TYPE mtprotod_build_info gauge\n"
	    "mtprotod_build_info{version=\"%s\",openssl=\"%s\"} 1\n",
	    (unsigned long long)shm_sup_get(zone, SUP_RELOADS_ROLLING),
	    (unsigned long long)shm_sup_get(zone, SUP_RELOADS_IN_PLACE),
	    (unsigned long long)shm_sup_get(zone, SUP_RELOADS_FAILED),
	    (unsigned long long)shm_sup_get(zone, SUP_RESTARTS_WORKER),
	    (unsigned long long)shm_sup_get(zone, SUP_RESTARTS_DCPOOL),
	    PACKAGE_VERSION, OpenSSL_version(OPENSSL_VERSION_STRING));
}

/* A process's resident memory (bytes) and open descriptors (-1 when we
 * may not look: the supervisor's descriptors are root's). */
static void
proc_usage(pid_t pid, uint64_t *rss, int64_t *fds)
{
	char path[64], line[256];
	FILE *f;
	DIR *d;
	struct dirent *e;

	*rss = 0;
	*fds = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		unsigned long long kb;

		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
				*rss = kb * 1024;
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) != NULL) {
		*fds = 0;
		while ((e = readdir(d)) != NULL)
			*fds += e->d_name[0] != '.';
		closedir(d);
	}
}

/* Memory and descriptors per role, summed over its live processes. */
static void
processes_out(struct evbuffer *b)
{
	static const char *const roles[] = { "supervisor", "worker", "dcpool" };
	uint64_t rss[3] = { 0 }, r;
	int64_t fds[3] = { -1, -1, -1 }, n;

	proc_usage(getppid(), &rss[0], &fds[0]);
	for (size_t i = 0; i < shm_metrics_nslots(zone); i++) {
		const struct shm_slot *s = shm_metrics_slot(zone, (int)i);
		int k = s->role == 1 ? 2 : 1;

		if (!__atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE))
			continue;
		proc_usage(s->pid, &r, &n);
		if (n < 0 && k == 1) /* a worker counts its own */
			n = (int64_t)__atomic_load_n(
			    &s->v[M_OPEN_FDS], __ATOMIC_RELAXED);
		rss[k] += r;
		if (n >= 0)
			fds[k] = (fds[k] < 0 ? 0 : fds[k]) + n;
	}
	evbuffer_add_printf(b,
	    "# HELP mtprotod_process_resident_memory_bytes Resident memory "
	    "per role (summed over its processes).\n"
	    "# TYPE mtprotod_process_resident_memory_bytes gauge\n");
	for (int k = 0; k < 3; k++)
		evbuffer_add_printf(b,
		    "mtprotod_process_resident_memory_bytes{role=\"%s\"} "
		    "%llu\n",
		    roles[k], (unsigned long long)rss[k]);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_process_open_fds Open descriptors per role "
	    "(the supervisor's are not readable by the dcpool).\n"
	    "# TYPE mtprotod_process_open_fds gauge\n");
	for (int k = 0; k < 3; k++)
		if (fds[k] >= 0)
			evbuffer_add_printf(b,
			    "mtprotod_process_open_fds{role=\"%s\"} %lld\n",
			    roles[k], (long long)fds[k]);
}

/* Why handshakes failed: one labelled family over counters kept apart. */
static void
reasons_out(struct evbuffer *b, const uint64_t *v)
{
	static const struct {
		enum shm_counter c;
		const char *reason;
	} r[] = {
		{ M_HS_BAD_SECRET, "bad_secret" },
		{ M_HS_CLOCK_SKEW, "clock_skew" },
		{ M_HS_PROTOCOL, "protocol" },
		{ M_HS_MALFORMED, "malformed" },
		{ M_HS_UNKNOWN_SNI, "unknown_sni" },
		{ M_HS_PROXY, "proxy_header" },
		{ M_HS_DENIED, "denied" },
		{ M_REPLAYS, "replay" },
		{ M_HANDSHAKE_TIMEOUT, "timeout" },
		{ M_HANDSHAKE_EVICTED, "evicted" },
	};
	static const struct {
		enum shm_counter c;
		const char *limit;
	} lim[] = {
		{ M_REFUSED, "max_connections" },
		{ M_LIM_PER_IP, "per_ip" },
		{ M_LIM_PER_SUBNET, "per_subnet" },
		{ M_LIM_USER_CONNS, "user_max_connections" },
		{ M_LIM_USER_IPS, "user_max_unique_ips" },
		{ M_LIM_QUOTA, "quota" },
		{ M_LIM_EXPIRED, "expired" },
		{ M_LIM_DISABLED, "disabled" },
	}, closed[] = {
		{ M_CLOSED_QUOTA, "quota" },
		{ M_CLOSED_EXPIRED, "expired" },
		{ M_CLOSED_DISABLED, "disabled" },
	};
	uint64_t over = 0;

	evbuffer_add_printf(b,
	    "# HELP mtprotod_handshake_failures_total Client connections "
	    "that did not pass the handshake, by reason (bad_secret, "
	    "clock_skew, protocol: a transport the listener does not take, "
	    "malformed, unknown_sni, proxy_header, denied: access lists, "
	    "replay, timeout, evicted: "
	    "limits.handshake_memory, over_limit: a limit, see "
	    "mtprotod_limit_refusals_total). "
	    "Fronting is counted by mtprotod_fronted_total.\n"
	    "# TYPE mtprotod_handshake_failures_total counter\n");
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		evbuffer_add_printf(b,
		    "mtprotod_handshake_failures_total{reason=\"%s\"} %llu\n",
		    r[i].reason, (unsigned long long)v[r[i].c]);
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		over += v[lim[i].c];
	evbuffer_add_printf(b,
	    "mtprotod_handshake_failures_total{reason=\"over_limit\"} "
	    "%llu\n",
	    (unsigned long long)over);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_limit_refusals_total New connections refused "
	    "by a limit, by limit (max_connections, per_ip, per_subnet, and "
	    "a user's max_connections, max_unique_ips, quota, expiry or "
	    "being disabled).\n"
	    "# TYPE mtprotod_limit_refusals_total counter\n");
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++)
		evbuffer_add_printf(b,
		    "mtprotod_limit_refusals_total{limit=\"%s\"} %llu\n",
		    lim[i].limit, (unsigned long long)v[lim[i].c]);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_user_closes_total Open connections closed "
	    "for their user: quota used up, expired, disabled.\n"
	    "# TYPE mtprotod_user_closes_total counter\n");
	for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++)
		evbuffer_add_printf(b,
		    "mtprotod_user_closes_total{reason=\"%s\"} %llu\n",
		    closed[i].limit, (unsigned long long)v[closed[i].c]);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_throttled_total Times a connection's reads "
	    "were paused by its user's rate.\n"
	    "# TYPE mtprotod_throttled_total counter\n"
	    "mtprotod_throttled_total %llu\n",
	    (unsigned long long)v[M_THROTTLED]);
	evbuffer_add_printf(b,
	    "# HELP mtprotod_handshake_user_scans_total Handshakes that "
	    "tried the users in turn: no hint for the client's address, or "
	    "not the hinted user.\n"
	    "# TYPE mtprotod_handshake_user_scans_total counter\n"
	    "mtprotod_handshake_user_scans_total %llu\n",
	    (unsigned long long)v[M_HS_USER_SCANS]);
}

struct fptable *
metrics_fingerprints(void)
{
	if (fps.max == 0)
		fptable_init(&fps, FPTABLE_MAX);
	return &fps;
}

/* JA3 is hex, JA4 [a-z0-9_] (or "?", "other"): no label escaping. */
static void
fingerprints_out(struct evbuffer *b)
{
	const struct fptable *t = metrics_fingerprints();

	evbuffer_add_printf(b,
	    "# HELP mtprotod_tls_client_hellos_total Fake-TLS ClientHellos "
	    "by JA4 and JA3 fingerprint and what became of them (served, "
	    "fronted, refused: unknown SNI); the %d fingerprints seen most, "
	    "the rest as \"other\".\n"
	    "# TYPE mtprotod_tls_client_hellos_total counter\n",
	    FPTABLE_MAX);
	for (size_t i = 0; i < t->n; i++)
		for (int r = 0; r < FP_RESULTS; r++)
			evbuffer_add_printf(b,
			    "mtprotod_tls_client_hellos_total{ja4=\"%s\","
			    "ja3=\"%s\",result=\"%s\"} %llu\n",
			    t->e[i].ja4, t->e[i].ja3,
			    fp_result_name((enum fp_result)r),
			    (unsigned long long)t->e[i].n[r]);
	for (int r = 0; r < FP_RESULTS; r++)
		evbuffer_add_printf(b,
		    "mtprotod_tls_client_hellos_total{ja4=\"%s\",ja3=\"%s\","
		    "result=\"%s\"} %llu\n",
		    FPTABLE_OTHER, FPTABLE_OTHER,
		    fp_result_name((enum fp_result)r),
		    (unsigned long long)t->other[r]);
}

int
metrics_allowed(struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	const struct sockaddr *sa;

	if (mcfg->nmetrics_allow == 0)
		return 1;
	sa = c != NULL ? evhttp_connection_get_addr(c) : NULL;
	if (sa != NULL &&
	    cidr_match(mcfg->metrics_allow, mcfg->nmetrics_allow, sa))
		return 1;
	evhttp_send_error(req, 403, "not in metrics.allow");
	return 0;
}

static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	uint64_t v[M_COUNTER_MAX];
	struct evbuffer *b;

	if (!metrics_allowed(req))
		return;
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	shm_metrics_sum(zone, v);
	for (size_t i = 0; i < sizeof(metric) / sizeof(metric[0]); i++)
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
		    metric[i].name, metric[i].help, metric[i].name,
		    metric[i].type, metric[i].name,
		    (unsigned long long)v[metric[i].c]);
	/* Names are [A-Za-z0-9_.-] (config.c): no label escaping needed. */
	evbuffer_add_printf(b,
	    "# HELP mtprotod_listener_connections Open client connections "
	    "per listener.\n"
	    "# TYPE mtprotod_listener_connections gauge\n");
	for (size_t i = 0; i < mcfg->nlisteners; i++) {
		const struct config_listener *l = &mcfg->listeners[i];

		if (l->shm_index >= 0)
			evbuffer_add_printf(b,
			    "mtprotod_listener_connections{listener=\"%s\"} "
			    "%llu\n",
			    l->name,
			    (unsigned long long)shm_listener_conns(
			        zone, l->shm_index));
	}
	listeners_out(b);
	users_out(b);
	dclinks_out(b);
	supervisor_out(b);
	processes_out(b);
	reasons_out(b, v);
	fingerprints_out(b);
	/* Nonzero: replay.entries is too small for the load. */
	if (replay != NULL)
		evbuffer_add_printf(b,
		    "# HELP mtprotod_replay_early_evictions_total Handshakes "
		    "forgotten by the replay cache before replay.window "
		    "passed.\n"
		    "# TYPE mtprotod_replay_early_evictions_total counter\n"
		    "mtprotod_replay_early_evictions_total %llu\n",
		    (unsigned long long)replay_early_evictions(replay));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

static void
other_cb(struct evhttp_request *req, void *arg)
{
	if (!metrics_allowed(req))
		return;
	evhttp_send_error(
	    req, HTTP_NOTFOUND, "try /metrics, /health, /ready or /status");
}

static struct evhttp *http;
static struct evhttp_bound_socket *bound;

void
metrics_stop(void)
{
	/* Closes our copy only: the supervisor keeps the socket, and what
	 * waits in its queue goes to the next dcpool. */
	if (http && bound)
		evhttp_del_accept_socket(http, bound);
	bound = NULL;
}

int
metrics_start(struct event_base *base, const struct config *cfg,
    struct shm_metrics *z, struct replay_cache *rc, struct policy *pol, int lfd)
{
	if (cfg->metrics_port == 0)
		return 0;
	policy = pol;
	zone = z;
	replay = rc;
	mcfg = cfg;
	if ((http = evhttp_new(base)) == NULL)
		return -1;
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(http, "/metrics", metrics_cb, NULL);
	status_register(http, cfg, z);
	evhttp_set_gencb(http, other_cb, NULL);
	/*
	 * The supervisor opened the socket and keeps it over reloads and
	 * upgrades (during which the old and the new dcpool both accept on
	 * it for a moment, serving the same shared counters), so a scrape
	 * waiting in its queue is never reset.
	 */
	if (lfd < 0 ||
	    (bound = evhttp_accept_socket_with_handle(http, lfd)) == NULL) {
		log_warnx("metrics: no socket for %s port %u",
		    cfg->metrics_address, cfg->metrics_port);
		evhttp_free(http);
		http = NULL;
		return -1;
	}
	log_info("metrics on http://%s:%u/metrics", cfg->metrics_address,
	    cfg->metrics_port);
	return 0;
}
