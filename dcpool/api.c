/*
 * The management API (issue 10): HTTP/1.1 and JSON on api.address:port,
 * with the paths, envelopes and field names of telemt's control API so
 * that the panels made for it drive mtprotod too.
 *
 * Reads are answered here, from the config this dcpool has (kept current
 * by in-place reloads) and the policy zone's counters. Changes are
 * checked here (a bad body never leaves the dcpool) and sent to the
 * supervisor, which alone writes configuration (supervisor/users.c); its
 * answer, after the reload, completes the request.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "api.h"
#include "apiuser.h"
#include "config.h"
#include "discover.h"
#include "links.h"
#include "log.h"
#include "msg.h"
#include "policy.h"
#include "shm.h"
#include "status.h"
#include "util.h"

/* Changes waiting for the supervisor's answer. */
#define API_PENDING_MAX 64

struct pending {
	uint32_t id; /* 0 = free */
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	char op[16];
	char user[CONFIG_NAME_MAX];
};

static struct {
	const struct config *cfg;
	struct policy *policy;
	struct shm_metrics *zone;
	int chan;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	char revision[65];
	struct pubaddr_state pub;
	int have_pub;
	uint32_t next_id;
	struct pending pend[API_PENDING_MAX];
	time_t started;
} A;

/* ------------------------------------------------------------ replies */

static void
send_json(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *b = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	json_decref(body);
	if (b == NULL || text == NULL) {
		free(text);
		if (b)
			evbuffer_free(b);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(b, text, strlen(text));
	evbuffer_add(b, "\n", 1);
	free(text);
	evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code,
	    code < 300        ? "OK"
	        : code == 400 ? "Bad Request"
	        : code == 401 ? "Unauthorized"
	        : code == 403 ? "Forbidden"
	        : code == 404 ? "Not Found"
	        : code == 405 ? "Method Not Allowed"
	        : code == 409 ? "Conflict"
	        : code == 413 ? "Payload Too Large"
	        : code == 503 ? "Service Unavailable"
	                      : "Internal Server Error",
	    b);
	evbuffer_free(b);
}

static void
ok(struct evhttp_request *req, int code, json_t *data)
{
	send_json(req, code,
	    json_pack("{s:b,s:o,s:s}", "ok", 1, "data",
	        data ? data : json_object(), "revision", A.revision));
}

static void api_error(struct evhttp_request *req, int code, const char *ecode,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
api_error(struct evhttp_request *req, int code, const char *ecode,
    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_json(req, code,
	    json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", ecode,
	        "message", msg));
}

/* ------------------------------------------------------------ views */

static json_t *
hex_or_null(int has, const uint8_t *b)
{
	char h[33];

	if (!has)
		return json_null();
	for (int i = 0; i < 16; i++)
		sprintf(h + 2 * i, "%02x", b[i]);
	return json_string(h);
}

/* A user's links on one listener, added to links. */
static void
add_links(
    json_t *links, const struct config_listener *l, const struct config_user *u)
{
	static const struct {
		unsigned bit;
		const char *key;
	} kinds[] = { { PROTO_CLASSIC, "classic" }, { PROTO_SECURE, "secure" },
		{ PROTO_FAKE_TLS, "tls" } };
	char hosts[2][LINKS_HOST_MAX], note[LINKS_NOTE_MAX], link[LINKS_MAX];
	size_t nh = 0;

	links_hosts(l, NULL, A.have_pub ? &A.pub : NULL, hosts, &nh, note,
	    sizeof(note));
	for (size_t k = 0; k < nitems(kinds); k++) {
		if (!(l->protocols & kinds[k].bit))
			continue;
		json_t *arr = json_object_get(links, kinds[k].key);
		for (size_t h = 0; h < nh; h++)
			if (links_format(link, sizeof(link), LINKS_SCHEME_TG,
			        hosts[h], l->port, kinds[k].bit, u->secret,
			        l->tls_domain, 0) > 0)
				json_array_append_new(arr, json_string(link));
		if (kinds[k].bit != PROTO_FAKE_TLS)
			continue;
		json_t *doms = json_object_get(links, "tls_domains");
		for (size_t s = 0; s < l->nsnis; s++)
			for (size_t h = 0; h < nh; h++)
				if (links_format(link, sizeof(link),
				        LINKS_SCHEME_TG, hosts[h], l->port,
				        PROTO_FAKE_TLS, u->secret,
				        l->snis[s].name, 0) > 0)
					json_array_append_new(doms,
					    json_pack("{s:s,s:s}", "domain",
					        l->snis[s].name, "link", link));
	}
}

static const char *
period_text(const struct config_user *u, char *buf, size_t cap)
{
	if (u->quota_period == QUOTA_DAILY)
		return "daily";
	if (u->quota_period == QUOTA_MONTHLY) {
		snprintf(buf, cap, "monthly:%d", u->quota_day);
		return buf;
	}
	return "never";
}

/* telemt's UserInfo for the user of that name (over every listener that
 * has it), or NULL when there is none. */
static json_t *
user_view(const char *name)
{
	const struct config_user *first = NULL;
	json_t *links = json_pack(
	    "{s:[],s:[],s:[],s:[]}", "classic", "secure", "tls", "tls_domains");
	json_t *ls = json_array();
	uint64_t conns = 0, octets = 0, used = 0;
	int ips = 0;
	int64_t now = (int64_t)time(NULL);

	for (size_t i = 0; i < A.cfg->nlisteners; i++) {
		const struct config_listener *l = &A.cfg->listeners[i];
		for (size_t k = 0; k < l->nusers; k++) {
			const struct config_user *u = &l->users[k];
			if (strcmp(u->name, name) != 0)
				continue;
			if (first == NULL)
				first = u;
			json_array_append_new(ls, json_string(l->name));
			add_links(links, l, u);
			struct policy_stats st;
			if (policy_user_stats(A.policy, u, now, &st) == -1)
				continue;
			conns += st.conns;
			ips += st.ips;
			octets += st.c2s + st.s2c;
			used += st.used;
		}
	}
	if (first == NULL) {
		json_decref(links);
		json_decref(ls);
		return NULL;
	}
	const struct config_user *u = first;
	char when[32], per[16];
	if (u->expires)
		api_time_text(u->expires, when);
	json_t *v = json_object();
	json_object_set_new(v, "username", json_string(u->name));
	json_object_set_new(v, "enabled", json_boolean(u->enabled));
	json_object_set_new(v, "in_runtime", json_true());
	json_object_set_new(
	    v, "user_ad_tag", hex_or_null(u->has_ad_tag, u->ad_tag));
	json_object_set_new(v, "max_tcp_conns",
	    u->max_connections ? json_integer(u->max_connections)
	                       : json_null());
	json_object_set_new(v, "expiration_rfc3339",
	    u->expires ? json_string(when) : json_null());
	json_object_set_new(v, "data_quota_bytes",
	    u->quota ? json_integer((json_int_t)u->quota) : json_null());
	json_object_set_new(v, "rate_limit_up_bps",
	    u->rate ? json_integer((json_int_t)u->rate * 8) : json_null());
	json_object_set_new(v, "rate_limit_down_bps",
	    u->rate ? json_integer((json_int_t)u->rate * 8) : json_null());
	json_object_set_new(v, "max_unique_ips",
	    u->max_unique_ips ? json_integer(u->max_unique_ips) : json_null());
	json_object_set_new(v, "current_connections", json_integer(conns));
	json_object_set_new(v, "active_unique_ips", json_integer(ips));
	json_object_set_new(v, "recent_unique_ips", json_integer(ips));
	json_object_set_new(
	    v, "total_octets", json_integer((json_int_t)octets));
	/* mtprotod's own */
	json_object_set_new(
	    v, "quota_used_bytes", json_integer((json_int_t)used));
	json_object_set_new(
	    v, "quota_period", json_string(period_text(u, per, sizeof(per))));
	json_object_set_new(
	    v, "unique_ips_window", json_integer(u->unique_ips_window));
	json_object_set_new(v, "listeners", ls);
	json_object_set_new(v, "links", links);
	return v;
}

/* Every user name once, sorted (telemt sorts by name). */
static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *
users_view(void)
{
	size_t total = 0, n = 0;
	json_t *arr = json_array();

	for (size_t i = 0; i < A.cfg->nlisteners; i++)
		total += A.cfg->listeners[i].nusers;
	const char **names = calloc(total + 1, sizeof(*names));
	if (names == NULL)
		return arr;
	for (size_t i = 0; i < A.cfg->nlisteners; i++)
		for (size_t k = 0; k < A.cfg->listeners[i].nusers; k++)
			names[n++] = A.cfg->listeners[i].users[k].name;
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
			json_array_append_new(arr, user_view(names[i]));
	free(names);
	return arr;
}

static json_t *
summary_view(void)
{
	uint64_t v[M_COUNTER_MAX];
	size_t users = 0;

	shm_metrics_sum(A.zone, v);
	for (size_t i = 0; i < A.cfg->nlisteners; i++)
		users += A.cfg->listeners[i].nusers;
	return json_pack("{s:f,s:I,s:I,s:I,s:I,s:I,s:I}", "uptime_seconds",
	    difftime(time(NULL), A.started), "connections_total",
	    (json_int_t)v[M_ACCEPTED], "connections_bad_total",
	    (json_int_t)v[M_HANDSHAKE_BAD], "handshake_timeouts_total",
	    (json_int_t)v[M_HANDSHAKE_TIMEOUT], "configured_users",
	    (json_int_t)users, "current_connections", (json_int_t)v[M_CURRENT],
	    "limit_refusals_total",
	    (json_int_t)(v[M_LIM_PER_IP] + v[M_LIM_PER_SUBNET] +
	        v[M_LIM_USER_CONNS] + v[M_LIM_USER_IPS] + v[M_LIM_QUOTA] +
	        v[M_LIM_EXPIRED] + v[M_LIM_DISABLED]));
}

/* ------------------------------------------------------------ changes */

static void
pending_closed(struct evhttp_connection *evcon, void *arg)
{
	for (int i = 0; i < API_PENDING_MAX; i++)
		if (A.pend[i].id && A.pend[i].evcon == evcon)
			A.pend[i].req = NULL; /* answered into the void */
}

/* Send a change to the supervisor; the answer completes req. */
static void
forward(struct evhttp_request *req, const char *op, const char *user,
    const char *body, size_t blen)
{
	const char *ifm = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "If-Match");
	struct pending *p = NULL;

	for (int i = 0; i < API_PENDING_MAX && p == NULL; i++)
		if (A.pend[i].id == 0)
			p = &A.pend[i];
	if (p == NULL) {
		api_error(req, 503, "busy", "too many changes under way");
		return;
	}
	json_t *j = json_pack("{s:s,s:s#}", "op", op, "body", body ? body : "",
	    body ? (int)blen : 0);
	if (user)
		json_object_set_new(j, "user", json_string(user));
	if (ifm)
		json_object_set_new(j, "if_match", json_string(ifm));
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (++A.next_id == 0)
		A.next_id = 1;
	if (text == NULL ||
	    msg_send_api(A.chan, MSG_API_REQUEST, A.next_id, 0, text) == -1) {
		free(text);
		api_error(req, 503, "supervisor_unavailable",
		    "cannot reach the supervisor: %s", strerror(errno));
		return;
	}
	free(text);
	p->id = A.next_id;
	p->req = req;
	p->evcon = evhttp_request_get_connection(req);
	snprintf(p->op, sizeof(p->op), "%s", op);
	snprintf(p->user, sizeof(p->user), "%s", user ? user : "");
	evhttp_connection_set_closecb(p->evcon, pending_closed, NULL);
}

void
api_answer(uint32_t id, uint32_t status, const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	const char *rev = NULL, *secret = NULL, *user = NULL, *code = NULL,
	           *message = NULL;
	struct pending *p = NULL;

	if (j == NULL)
		return;
	json_unpack(j, "{s?s,s?s,s?s,s?s,s?s}", "revision", &rev, "secret",
	    &secret, "user", &user, "code", &code, "message", &message);
	if (rev)
		snprintf(A.revision, sizeof(A.revision), "%s", rev);
	for (int i = 0; i < API_PENDING_MAX && id; i++)
		if (A.pend[i].id == id)
			p = &A.pend[i];
	if (p == NULL || p->req == NULL) {
		if (p)
			p->id = 0;
		json_decref(j);
		return;
	}
	struct evhttp_request *req = p->req;
	p->id = 0;
	evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	if (status >= 300 && status != 202) {
		api_error(req, (int)status, code ? code : "internal_error",
		    "%s", message ? message : "failed");
	} else if (strcmp(p->op, "reload") == 0) {
		ok(req, 202, json_pack("{s:b}", "accepted", 1));
	} else if (strcmp(p->op, "delete") == 0) {
		json_t *still = user_view(p->user);
		ok(req, 200,
		    json_pack("{s:s,s:b}", "username", p->user, "in_runtime",
		        still != NULL));
		json_decref(still);
	} else {
		json_t *v = user_view(user ? user : p->user);
		if (v == NULL) /* not applied yet: a new generation starts */
			v = json_pack("{s:s,s:b}", "username",
			    user ? user : p->user, "in_runtime", 0);
		if (strcmp(p->op, "create") == 0 ||
		    strcmp(p->op, "rotate") == 0)
			ok(req, (int)status,
			    json_pack("{s:o,s:s}", "user", v, "secret",
			        secret ? secret : ""));
		else
			ok(req, 200, v);
	}
	json_decref(j);
}

/* ------------------------------------------------------------ routing */

static int
allowed(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct sockaddr_storage ss;
	socklen_t len;
	char *host = NULL;
	uint16_t port = 0;

	if (A.cfg->napi_allow == 0)
		return 1;
	evhttp_connection_get_peer(evcon, &host, &port);
	return host != NULL &&
	    addr_from_ip_port(host, port ? port : 1, &ss, &len) == 0 &&
	    cidr_match(
	        A.cfg->api_allow, A.cfg->napi_allow, (struct sockaddr *)&ss);
}

static int
authorized(struct evhttp_request *req)
{
	const char *got = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");
	size_t n = strlen(A.cfg->api_token);

	if (n == 0)
		return 1;
	/* Constant time over the token; the length alone may differ. */
	return got != NULL && strlen(got) == n &&
	    CRYPTO_memcmp(got, A.cfg->api_token, n) == 0;
}

static void
api_cb(struct evhttp_request *req, void *arg)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *rawpath = uri ? evhttp_uri_get_path(uri) : NULL;
	char path[512], *seg[6];
	int nseg = 0;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t blen = evbuffer_get_length(in);
	char err[512];

	if (!allowed(req)) {
		api_error(req, 403, "forbidden", "not in api.allow");
		return;
	}
	if (!authorized(req)) {
		api_error(req, 401, "unauthorized",
		    "a valid Authorization header "
		    "is needed");
		return;
	}
	snprintf(path, sizeof(path), "%s", rawpath ? rawpath : "/");
	size_t pl = strlen(path);
	while (pl > 1 && path[pl - 1] == '/')
		path[--pl] = '\0';
	for (char *t = strtok(path, "/"); t && nseg < 6; t = strtok(NULL, "/"))
		seg[nseg++] = t;
	if (nseg < 2 || strcmp(seg[0], "v1") != 0) {
		api_error(req, 404, "not_found", "no such path");
		return;
	}
	int get = m == EVHTTP_REQ_GET, post = m == EVHTTP_REQ_POST;
	/* GETs */
	if (nseg == 2 && strcmp(seg[1], "health") == 0) {
		if (!get)
			goto method;
		ok(req, 200,
		    json_pack("{s:s,s:b}", "status", "ok", "read_only",
		        A.cfg->api_read_only));
		return;
	}
	if (nseg == 3 && strcmp(seg[1], "health") == 0 &&
	    strcmp(seg[2], "ready") == 0) {
		struct evbuffer *why = evbuffer_new();
		if (!get) {
			evbuffer_free(why);
			goto method;
		}
		status_not_ready(why);
		size_t wl = evbuffer_get_length(why);
		char *w = calloc(1, wl + 1);
		if (w)
			evbuffer_remove(why, w, wl);
		evbuffer_free(why);
		ok(req, wl ? 503 : 200,
		    json_pack("{s:b,s:s,s:s?}", "ready", wl == 0, "status",
		        wl ? "not_ready" : "ready", "reason", wl ? w : NULL));
		free(w);
		return;
	}
	if (nseg == 3 && strcmp(seg[1], "stats") == 0 &&
	    strcmp(seg[2], "summary") == 0) {
		if (!get)
			goto method;
		ok(req, 200, summary_view());
		return;
	}
	if (nseg == 3 && strcmp(seg[1], "stats") == 0 &&
	    strcmp(seg[2], "users") == 0) {
		if (!get)
			goto method;
		ok(req, 200, users_view());
		return;
	}
	int users = strcmp(seg[1], "users") == 0;
	int reload = nseg == 3 && strcmp(seg[1], "system") == 0 &&
	    strcmp(seg[2], "reload") == 0;
	if (!(users && nseg <= 4) && !reload) {
		api_error(req, 404, "not_found", "no such path");
		return;
	}
	if (nseg == 2 && get) {
		ok(req, 200, users_view());
		return;
	}
	if (nseg == 3 && users && get) {
		json_t *v = user_view(seg[2]);
		if (v == NULL)
			api_error(
			    req, 404, "not_found", "no user \"%s\"", seg[2]);
		else
			ok(req, 200, v);
		return;
	}
	/* Changes */
	const char *op = NULL;
	if (reload && post)
		op = "reload";
	else if (nseg == 2 && post)
		op = "create";
	else if (nseg == 3 && m == EVHTTP_REQ_PATCH)
		op = "patch";
	else if (nseg == 3 && m == EVHTTP_REQ_DELETE)
		op = "delete";
	else if (nseg == 4 && post) {
		static const char *const acts[][2] = { { "enable", "enable" },
			{ "disable", "disable" }, { "rotate-secret", "rotate" },
			{ "reset-quota", "reset-quota" } };
		for (size_t i = 0; i < nitems(acts); i++)
			if (strcmp(seg[3], acts[i][0]) == 0)
				op = acts[i][1];
		if (op == NULL) {
			api_error(req, 404, "not_found", "no such path");
			return;
		}
	}
	if (op == NULL)
		goto method;
	if (A.cfg->api_read_only) {
		api_error(req, 403, "read_only", "api.read_only is set");
		return;
	}
	if (blen > API_BODY_MAX) {
		api_error(req, 413, "payload_too_large", "body over %d bytes",
		    API_BODY_MAX);
		return;
	}
	const char *user = nseg >= 3 && users ? seg[2] : NULL;
	char *body = calloc(1, blen + 1);
	if (body == NULL) {
		api_error(req, 500, "internal_error", "out of memory");
		return;
	}
	evbuffer_copyout(in, body, blen);
	if (strcmp(op, "reset-quota") == 0) {
		int found = 0;
		for (size_t i = 0; i < A.cfg->nlisteners; i++)
			for (size_t k = 0; k < A.cfg->listeners[i].nusers;
			     k++) {
				const struct config_user *u =
				    &A.cfg->listeners[i].users[k];
				struct policy_user *r = A.policy
				    ? policy_user(A.policy, u->pidx)
				    : NULL;
				if (strcmp(u->name, user) != 0)
					continue;
				found = 1;
				if (r)
					policy_reset_quota(r);
			}
		if (!found)
			api_error(
			    req, 404, "not_found", "no user \"%s\"", user);
		else {
			log_notice("api: quota of user %s reset", user);
			ok(req, 200,
			    json_pack("{s:s,s:i,s:I}", "username", user,
			        "used_bytes", 0, "last_reset_epoch_secs",
			        (json_int_t)time(NULL)));
		}
		free(body);
		return;
	}
	/* Checked here as the supervisor will: a bad body goes no further. */
	struct api_user_patch pt;
	enum api_body kind;
	if (api_op_parse(op, body, blen, &kind, &pt, err, sizeof(err)) == -1) {
		api_error(req, 400, "bad_request", "%s", err);
		free(body);
		return;
	}
	explicit_bzero(&pt, sizeof(pt));
	forward(req, op, user, body, blen);
	explicit_bzero(body, blen);
	free(body);
	return;
method:
	api_error(req, 405, "method_not_allowed", "method not allowed here");
}

/* ------------------------------------------------------------ setup */

void
api_pubaddr(const struct pubaddr_state *st)
{
	A.pub = *st;
	A.have_pub = 1;
}

/* How long a new dcpool keeps trying the port its predecessor holds. */
#define API_BIND_RETRY_MS 20
#define API_BIND_TRIES    500

static struct event *bind_retry;
static int bind_tries;

/* Listen on the API's address: 0, or -1 with errno. */
static int
api_listen(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (addr_from_ip_port(A.cfg->api_address, A.cfg->api_port, &ss, &len) ==
	    -1) {
		errno = EINVAL;
		return -1;
	}
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, 64) == -1) {
		int e = errno;
		if (fd != -1)
			close(fd);
		errno = e;
		return -1;
	}
	if ((A.bound = evhttp_accept_socket_with_handle(A.http, fd)) == NULL) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	log_notice("api: listening on %s port %u%s", A.cfg->api_address,
	    A.cfg->api_port, A.cfg->api_read_only ? " (read only)" : "");
	return 0;
}

/*
 * The port is not shared (no SO_REUSEPORT: another process of the same
 * user could take requests and their token): during a reload the new
 * dcpool waits for the old one to let go of it, which it does when told
 * to drain.
 */
static void
bind_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	if (api_listen() == 0)
		return;
	if (errno != EADDRINUSE || ++bind_tries >= API_BIND_TRIES) {
		log_warn("api: cannot listen on %s port %u", A.cfg->api_address,
		    A.cfg->api_port);
		return;
	}
	struct timeval tv = { 0, API_BIND_RETRY_MS * 1000 };
	evtimer_add(bind_retry, &tv);
}

int
api_start(struct event_base *base, const struct config *cfg,
    struct policy *policy, struct shm_metrics *zone, int chan)
{
	A.cfg = cfg;
	A.policy = policy;
	A.zone = zone;
	A.chan = chan;
	A.started = time(NULL);
	snprintf(A.revision, sizeof(A.revision), "unknown");
	if (cfg->api_port == 0)
		return 0;
	if ((A.http = evhttp_new(base)) == NULL ||
	    (bind_retry = evtimer_new(base, bind_retry_cb, NULL)) == NULL)
		return -1;
	evhttp_set_allowed_methods(A.http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
	        EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD);
	/* Larger bodies are refused by evhttp itself; up to this, ours is
	 * the clear error. */
	evhttp_set_max_body_size(A.http, 4 * API_BODY_MAX);
	evhttp_set_timeout(A.http, 30);
	evhttp_set_gencb(A.http, api_cb, NULL);
	bind_tries = 0;
	bind_retry_cb(-1, 0, NULL);
	return 0;
}

void
api_stop(void)
{
	/* No new connections (the next dcpool takes the port); the
	 * requests under way still get their answers before we exit. */
	if (bind_retry)
		evtimer_del(bind_retry);
	if (A.http && A.bound)
		evhttp_del_accept_socket(A.http, A.bound);
	A.bound = NULL;
}
