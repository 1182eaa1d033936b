/*
 * /health, /ready and /status on the metrics page's HTTP server (issue
 * 11). The dcpool answers from what it knows: the shared metric slots
 * (the children, their roles and pids, the counters), its channels to
 * the workers, Telegram's config; never on the data path.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "config.h"
#include "dcpool.h"
#include "metrics.h"
#include "policy.h"
#include "shm.h"
#include "status.h"
#include "tgconf.h"
#include "util.h"

/* The DCs a middle-mode proxy needs a middle proxy for. */
static const int main_dcs[] = { 1, 2, 3, 4, 5 };

static struct {
	const struct config *cfg;
	struct shm_metrics *zone;
	int64_t started; /* the supervisor's start, unix time */
} ST;

static void
reply(struct evhttp_request *req, int code, const char *reason,
    const char *type, struct evbuffer *b)
{
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, b);
}

/* One page: allowed (metrics.allow), filled, answered; fill gives the
 * status code. */
static void
serve(struct evhttp_request *req, int (*fill)(struct evbuffer *),
    const char *type)
{
	struct evbuffer *b;
	int code;

	if (!metrics_allowed(req))
		return;
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	code = fill(b);
	reply(req, code,
	    code == HTTP_OK   ? "OK"
	        : code == 503 ? "Service Unavailable"
	                      : "Internal Server Error",
	    type, b);
	evbuffer_free(b);
}

static int
health_fill(struct evbuffer *b)
{
	evbuffer_add_printf(b, "ok\n");
	return HTTP_OK;
}

static void
health_cb(struct evhttp_request *req, void *arg)
{
	serve(req, health_fill, "text/plain");
}

/* Why the daemon cannot serve, into b ("" when it can). */
void
status_not_ready(struct evbuffer *b)
{
	const struct config *cfg = ST.cfg;
	int workers = dcpool_workers_connected();
	int64_t since;

	if (workers < cfg->workers)
		evbuffer_add_printf(
		    b, "%d of %d workers serving; ", workers, cfg->workers);
	if (!config_middle_used(cfg))
		return;
	const struct tg_state *tg = dcpool_tg_state(&since);
	if (tg == NULL || tg->secret_len == 0) {
		evbuffer_add_printf(
		    b, "no Telegram proxy config yet (middle mode); ");
		return;
	}
	for (size_t i = 0; i < nitems(main_dcs); i++) {
		const struct proxyconf_entry *e;

		if (proxyconf_lookup(&tg->v4, main_dcs[i], &e) == 0 &&
		    proxyconf_lookup(&tg->v6, main_dcs[i], &e) == 0)
			evbuffer_add_printf(
			    b, "no middle proxy for DC %d; ", main_dcs[i]);
	}
}

static int
ready_fill(struct evbuffer *b)
{
	struct evbuffer *why = evbuffer_new();

	if (why == NULL)
		return HTTP_INTERNAL;
	status_not_ready(why);
	if (evbuffer_get_length(why) == 0) {
		evbuffer_add_printf(b, "ready\n");
		evbuffer_free(why);
		return HTTP_OK;
	}
	evbuffer_add_printf(b, "not ready: ");
	evbuffer_add_buffer(b, why);
	evbuffer_add_printf(b, "\n");
	evbuffer_free(why);
	return 503;
}

static void
ready_cb(struct evhttp_request *req, void *arg)
{
	serve(req, ready_fill, "text/plain");
}

static const char *
role_name(int32_t role)
{
	return role == 1 ? "dcpool" : "worker";
}

/*
 * Names, addresses and domains in the config are [A-Za-z0-9_.:-] (config.c
 * checks them), so they go into the JSON as they are.
 */
static void
status_json(struct evbuffer *b)
{
	const struct config *cfg = ST.cfg;
	uint64_t v[M_COUNTER_MAX];
	int64_t since, now = now_unix();
	const struct tg_state *tg = dcpool_tg_state(&since);
	const char *sep = "";

	shm_metrics_sum(ST.zone, v);
	evbuffer_add_printf(b,
	    "{\"version\":\"%s\",\"uptime_s\":%lld,\"generation\":%d,"
	    "\"pid\":%d,\"workers\":%d,\"workers_serving\":%d,",
	    PACKAGE_VERSION, (long long)(ST.started ? now - ST.started : 0),
	    dcpool_args()->generation, (int)getppid(), cfg->workers,
	    dcpool_workers_connected());
	evbuffer_add_printf(b, "\"children\":[");
	for (size_t i = 0; i < shm_metrics_nslots(ST.zone); i++) {
		const struct shm_slot *s = shm_metrics_slot(ST.zone, (int)i);

		if (!s->in_use)
			continue;
		evbuffer_add_printf(b,
		    "%s{\"pid\":%d,\"role\":\"%s\",\"slot\":%d}", sep,
		    (int)s->pid, role_name(s->role), (int)s->index);
		sep = ",";
	}
	evbuffer_add_printf(b,
	    "],\"connections\":%llu,\"handshakes\":%llu,"
	    "\"telegram_connections\":%llu,\"listeners\":[",
	    (unsigned long long)v[M_CURRENT],
	    (unsigned long long)v[M_HANDSHAKES],
	    (unsigned long long)v[M_CURRENT_DC]);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		enum backend_mode m = config_listener_backend(cfg, l);

		evbuffer_add_printf(b,
		    "%s{\"name\":\"%s\",\"address\":\"%s\",\"port\":%u,"
		    "\"backend\":\"%s\",\"protocols\":[",
		    i ? "," : "", l->name, l->address, (unsigned)l->port,
		    m == BACKEND_MIDDLE ? "middle" : "direct");
		sep = "";
		for (unsigned bit = PROTO_CLASSIC; bit <= PROTO_FAKE_TLS;
		     bit <<= 1)
			if (l->protocols & bit) {
				evbuffer_add_printf(
				    b, "%s\"%s\"", sep, config_proto_name(bit));
				sep = ",";
			}
		evbuffer_add_printf(b,
		    "],\"tls_domain\":\"%s\","
		    "\"connections\":%llu,\"users\":[",
		    l->protocols & PROTO_FAKE_TLS ? l->tls_domain : "",
		    (unsigned long long)(l->shm_index >= 0
		            ? shm_listener_conns(ST.zone, l->shm_index)
		            : 0));
		for (size_t u = 0; u < l->nusers; u++) {
			const struct config_user *cu = &l->users[u];
			struct policy_stats st;

			evbuffer_add_printf(b,
			    "%s{\"name\":\"%s\",\"enabled\":%s", u ? "," : "",
			    cu->name, cu->enabled ? "true" : "false");
			if (policy_user_stats(
			        dcpool_args()->policy, cu, now, &st) == 0)
				evbuffer_add_printf(b,
				    ",\"connections\":%llu,\"bytes_client_to_"
				    "telegram\":%llu,\"bytes_telegram_to_"
				    "client\":%llu,\"quota_used\":%llu",
				    (unsigned long long)st.conns,
				    (unsigned long long)st.c2s,
				    (unsigned long long)st.s2c,
				    (unsigned long long)st.used);
			evbuffer_add_printf(b, "}");
		}
		evbuffer_add_printf(b, "]}");
	}
	/* Middle mode: the workers' links per DC. */
	struct shm_dclinks g[4 * SHM_DC_POOLS];
	size_t ng = shm_dclinks(ST.zone, g, nitems(g));
	evbuffer_add_printf(b, "],\"middle_links\":{");
	for (size_t i = 0; i < ng; i++)
		evbuffer_add_printf(b,
		    "%s\"%d\":{\"up\":%u,\"pending\":%u,\"waiting\":%u}",
		    i ? "," : "", g[i].dc, g[i].up, g[i].pending, g[i].waiting);
	evbuffer_add_printf(b, "},\"telegram_config\":");
	if (tg == NULL || tg->secret_len == 0) {
		evbuffer_add_printf(b, "null}\n");
		return;
	}
	evbuffer_add_printf(b,
	    "{\"source\":\"%s\",\"age_s\":%lld,\"middle_proxies\":{",
	    tg->source ? tg->source : "", (long long)(now - since));
	for (size_t i = 0; i < nitems(main_dcs); i++) {
		const struct proxyconf_entry *e;

		evbuffer_add_printf(b, "%s\"%d\":%zu", i ? "," : "",
		    main_dcs[i],
		    proxyconf_lookup(&tg->v4, main_dcs[i], &e) +
		        proxyconf_lookup(&tg->v6, main_dcs[i], &e));
	}
	evbuffer_add_printf(b, "}}}\n");
}

static int
status_fill(struct evbuffer *b)
{
	status_json(b);
	return HTTP_OK;
}

static void
status_cb(struct evhttp_request *req, void *arg)
{
	serve(req, status_fill, "application/json");
}

/* The supervisor's start: its process start time (/proc), as unix time. */
static int64_t
supervisor_started(void)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	double up = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)getppid());
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* Field 22, counted after the ")" that ends the command name. */
	if (p == NULL || (p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2,
	        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d "
	        "%*d %*d %*d %*d %*d %llu",
	        &start) != 1 ||
	    (f = fopen("/proc/uptime", "r")) == NULL)
		return 0;
	if (fscanf(f, "%lf", &up) != 1)
		up = 0;
	fclose(f);
	if (hz <= 0 || up <= 0)
		return 0;
	return now_unix() - (int64_t)(up - (double)start / (double)hz);
}

void
status_register(
    struct evhttp *http, const struct config *cfg, struct shm_metrics *z)
{
	ST.cfg = cfg;
	ST.zone = z;
	ST.started = supervisor_started();
	evhttp_set_cb(http, "/health", health_cb, NULL);
	evhttp_set_cb(http, "/ready", ready_cb, NULL);
	evhttp_set_cb(http, "/status", status_cb, NULL);
}
