/*
 * mtprotod.conf: read with libconfig, checked completely before anything
 * uses it (CONFIG.md is the interface; man/mtprotod.conf.5 documents it).
 * Every error names FILE:LINE and the option's full path, because the
 * supervisor refuses a bad file on reload and the operator has only that
 * message to go on.
 */
#include "autoconf.h"

#include <sys/stat.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "keyidx.h"
#include "log.h"
#include "util.h"

/* Defaults, as CONFIG.md and mtprotod.conf(5) state them. */
#define DEF_USER              "mtprotod"
#define DEF_GROUP             "mtprotod"
#define DEF_PIDFILE_ROOT      "/run/mtprotod.pid"
#define DEF_PIDFILE_USER      "./mtprotod.pid"
#define DEF_STATE_DIR_ROOT    "/var/lib/mtprotod"
#define DEF_STATE_DIR_USER    "./mtprotod-state"
#define DEF_SHUTDOWN_TIMEOUT  60
#define DEF_MAX_RESTARTS      10
#define DEF_RESTART_PERIOD    60
#define DEF_HANDSHAKE_TIMEOUT 10
#define DEF_IDLE_TIMEOUT      600
#define DEF_REPLAY_ENTRIES    1000000
#define DEF_REPLAY_WINDOW     7200
#define MIN_REPLAY_ENTRIES    1024
/* PROTOCOL.md A.4.4: accept now - 600 <= ts <= now + 120. */
#define DEF_TLS_SKEW_PAST   600
#define DEF_TLS_SKEW_FUTURE 120
/* PROTOCOL.md A.4.5: app-data length, random 2500..4700 if not learned. */
#define DEF_TLS_CERT_LEN_MIN    2500
#define DEF_TLS_CERT_LEN_MAX    4700
#define DEF_TLS_PROFILE_REFRESH 21600
/* A TLS record carries at most 2^14 bytes of plaintext. */
#define TLS_RECORD_MAX                  16384
#define DEF_DEFAULT_DC                  2
#define DEF_PROXY_SECRET_URL            "https://core.telegram.org/getProxySecret"
#define DEF_PROXY_CONFIG_URL            "https://core.telegram.org/getProxyConfig"
#define DEF_PROXY_CONFIG_V6_URL         "https://core.telegram.org/getProxyConfigV6"
#define DEF_REFRESH                     86400
#define DEF_CONNECT_TIMEOUT             10
#define DEF_HTTP_TIMEOUT                10
#define DEF_MIDDLE_MIN_LINKS            2
#define DEF_MIDDLE_CLIENTS_PER_LINK     300
#define DEF_MIDDLE_PING_INTERVAL        30
#define DEF_MIDDLE_PING_TIMEOUT         90
#define DEF_MIDDLE_CLIENT_QUEUE_MAX     1048576
#define DEF_MIDDLE_CLIENT_QUEUE_TIMEOUT 10
#define DEF_MIDDLE_LINK_QUEUE_MAX       8388608
#define DEF_MIDDLE_POOL_IDLE_TIMEOUT    120
/* About 4,000 handshakes holding their 16 KiB read buffer. */
#define DEF_HANDSHAKE_MEMORY ((uint64_t)64 << 20)
/* Smaller queue bounds than this would stall on one large packet. */
#define MIN_MIDDLE_QUEUE 65536
/* Two operators each, so that two sources can agree (issue 13). */
static const char *const def_stun_servers[] = { "stun.l.google.com:19302",
	"stun.cloudflare.com:3478", "stun.nextcloud.com:443" };
static const char *const def_ip_urls[] = { "https://api.ipify.org",
	"https://ifconfig.me/ip", "https://api6.ipify.org" };
#define DEF_DISCOVER_INTERVAL 3600

#define DEF_METRICS_ADDRESS "127.0.0.1"
#define DEF_METRICS_PORT    9173
#define DEF_LISTEN_ADDRESS  "0.0.0.0"
#define DEF_FRONTING_PORT   443
/* The built-in default listener (no config file). */
#define DEF_BUILTIN_PORT_ROOT  443
#define DEF_BUILTIN_PORT_USER  8443
#define DEF_BUILTIN_TLS_DOMAIN "www.google.com"
#define DEF_BUILTIN_NAME       "default"
/*
 * PROTOCOL.md A.1.1: tdlib truncates the fake-TLS domain to 182 bytes and
 * tdesktop needs at least 4, so a domain outside that range makes links
 * some apps cannot use.
 */
#define TLS_DOMAIN_MIN 4
#define TLS_DOMAIN_MAX 182

#define PATH_BUF 160

struct parser {
	const char *file; /* when libconfig names none */
	char *err;
	size_t errlen;
};

/* One looked-up option: the setting (NULL if absent) and its full path. */
struct opt {
	config_setting_t *s;
	char path[PATH_BUF];
};

static void perr_fmt(struct parser *, const config_setting_t *, const char *,
    const char *, ...) __attribute__((format(printf, 4, 5)));

/*
 * perr(p, setting, path, fmt, ...) writes the message and is -1, so that
 * "return perr(...);" reads as the error it is. A macro, because the
 * static analyzer does not follow variadic calls and would otherwise
 * take every error path for a success.
 */
#define perr(...) (perr_fmt(__VA_ARGS__), -1)

static void
perr_fmt(struct parser *p, const config_setting_t *s, const char *path,
    const char *fmt, ...)
{
	const char *file = NULL;
	int line = 0, n;
	va_list ap;

	if (p->err == NULL || p->errlen == 0)
		return;
	if (s != NULL) {
		file = config_setting_source_file(s);
		line = config_setting_source_line(s);
	}
	if (file == NULL)
		file = p->file;
	/* The root group has no line; a made-up one would mislead. */
	if (line > 0)
		n = snprintf(
		    p->err, p->errlen, "%s:%d: %s: ", file, line, path);
	else
		n = snprintf(p->err, p->errlen, "%s: %s: ", file, path);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - n, fmt, ap);
	va_end(ap);
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Paths are short; a truncated one still names the option well enough. */
static void
join(char *out, const char *base, const char *name)
{
	int n;

	if (base[0] == '\0')
		n = snprintf(out, PATH_BUF, "%s", name);
	else
		n = snprintf(out, PATH_BUF, "%s.%s", base, name);
	if (n < 0)
		out[0] = '\0';
}

static void
join_index(char *out, const char *base, size_t i)
{
	if (snprintf(out, PATH_BUF, "%s.[%zu]", base, i) < 0)
		out[0] = '\0';
}

/* Unknown names are errors: a typo must not silently become a default. */
static int
check_known(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *const *known)
{
	char path[PATH_BUF];
	int n = config_setting_length(grp);

	for (int i = 0; i < n; i++) {
		config_setting_t *m = config_setting_get_elem(grp, i);
		const char *name = config_setting_name(m);
		size_t k;

		if (name == NULL)
			continue;
		for (k = 0; known[k] != NULL; k++)
			if (strcmp(name, known[k]) == 0)
				break;
		if (known[k] == NULL) {
			join(path, gpath, name);
			return perr(p, m, path, "unknown option");
		}
	}
	return 0;
}

static int
lookup(const config_setting_t *grp, const char *gpath, const char *name,
    struct opt *o)
{
	join(o->path, gpath, name);
	o->s = config_setting_get_member(grp, name);
	return o->s != NULL;
}

/* 1 if present and copied, 0 if absent, -1 on error. */
static int
opt_str(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, char *dst, size_t cap, struct opt *o)
{
	const char *v;
	size_t len;

	if (!lookup(grp, gpath, name, o))
		return 0;
	if (config_setting_type(o->s) != CONFIG_TYPE_STRING)
		return perr(p, o->s, o->path, "must be a string");
	v = config_setting_get_string(o->s);
	len = strlen(v);
	if (len >= cap)
		return perr(p, o->s, o->path,
		    "too long (at most %zu characters)", cap - 1);
	memcpy(dst, v, len + 1);
	return 1;
}

static int
opt_int(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, long long min, long long max, long long *dst,
    struct opt *o)
{
	long long v;
	int t;

	if (!lookup(grp, gpath, name, o))
		return 0;
	t = config_setting_type(o->s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return perr(p, o->s, o->path, "must be an integer");
	v = config_setting_get_int64(o->s);
	if (v < min || v > max) {
		if (max >= INT_MAX)
			return perr(
			    p, o->s, o->path, "must be at least %lld", min);
		return perr(p, o->s, o->path, "must be between %lld and %lld",
		    min, max);
	}
	*dst = v;
	return 1;
}

/* An int option into an int field. */
static int
opt_intf(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, long long min, long long max, int *dst)
{
	struct opt o;
	long long v;
	int r;

	if ((r = opt_int(p, grp, gpath, name, min, max, &v, &o)) == 1)
		*dst = (int)v;
	return r;
}

/* A boolean (true / false) into an int field. */
static int
opt_bool(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, int *dst)
{
	struct opt o;

	if (!lookup(grp, gpath, name, &o))
		return 0;
	if (config_setting_type(o.s) != CONFIG_TYPE_BOOL)
		return perr(p, o.s, o.path, "must be true or false");
	*dst = config_setting_get_bool(o.s) ? 1 : 0;
	return 1;
}

int
config_parse_size(const char *text, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;
	const char *s = text;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	switch (*s) {
	case '\0':
		break;
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	default:
		return -1;
	}
	if (shift != 0 && *++s != '\0')
		return -1;
	if (v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

/* Bytes: an integer >= 0, or a string such as "64M" (config_parse_size). */
static int
opt_size(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, uint64_t *dst)
{
	struct opt o;
	long long v;
	int t;

	if (!lookup(grp, gpath, name, &o))
		return 0;
	t = config_setting_type(o.s);
	if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
		if ((v = config_setting_get_int64(o.s)) < 0)
			return perr(p, o.s, o.path, "must be at least 0");
		*dst = (uint64_t)v;
		return 1;
	}
	if (t == CONFIG_TYPE_STRING &&
	    config_parse_size(config_setting_get_string(o.s), dst) == 0)
		return 1;
	return perr(p, o.s, o.path,
	    "must be a number of bytes, or a string with a K, M, G or T "
	    "suffix such as \"64M\"");
}

static int
opt_group(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, struct opt *o)
{
	if (!lookup(grp, gpath, name, o))
		return 0;
	if (config_setting_type(o->s) != CONFIG_TYPE_GROUP)
		return perr(p, o->s, o->path, "must be a group { ... }");
	return 1;
}

static int
opt_list(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, struct opt *o)
{
	if (!lookup(grp, gpath, name, o))
		return 0;
	if (config_setting_type(o->s) != CONFIG_TYPE_LIST)
		return perr(
		    p, o->s, o->path, "must be a list ( { ... }, ... )");
	return 1;
}

/*
 * One of the NULL-terminated names into *dst as its index: 1 if present,
 * 0 if absent, -1 on error ("must be \"a\", \"b\" or \"c\"").
 */
static int
opt_enum(struct parser *p, const config_setting_t *g, const char *gpath,
    const char *name, const char *const *names, int *dst)
{
	char buf[32], want[128] = "";
	struct opt o;
	size_t n = 0, k;
	int r;

	if ((r = opt_str(p, g, gpath, name, buf, sizeof(buf), &o)) != 1)
		return r;
	for (k = 0; names[k] != NULL; k++)
		if (strcmp(buf, names[k]) == 0) {
			*dst = (int)k;
			return 1;
		}
	for (k = 0; names[k] != NULL; k++)
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s\"%s\"",
		    k == 0                     ? ""
		        : names[k + 1] == NULL ? " or "
		                               : ", ",
		    names[k]);
	return perr(p, o.s, o.path, "must be %s", want);
}

/* An array of address blocks (at most CONFIG_MAX_ALLOW) into out: 1 if
 * present, 0 if absent, -1 on error. */
static int
opt_cidrs(struct parser *p, const config_setting_t *g, const char *gpath,
    const char *name, struct cidr *out, size_t *nout)
{
	struct opt o;
	int t, n;

	if (!lookup(g, gpath, name, &o))
		return 0;
	t = config_setting_type(o.s);
	n = config_setting_length(o.s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return perr(p, o.s, o.path,
		    "must be an array of address blocks, e.g. "
		    "[ \"127.0.0.1/32\" ]");
	if (n > CONFIG_MAX_ALLOW)
		return perr(p, o.s, o.path, "too many entries (at most %d)",
		    CONFIG_MAX_ALLOW);
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(o.s, i);
		char epath[PATH_BUF];

		join_index(epath, o.path, (size_t)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING ||
		    cidr_parse(config_setting_get_string(e), &out[i]) == -1)
			return perr(p, e, epath,
			    "must be an address or address/prefix, e.g. "
			    "\"10.0.0.0/8\"");
	}
	*nout = (size_t)n;
	return 1;
}

static int
missing(struct parser *p, const config_setting_t *grp, const char *gpath,
    const char *name, const char *why)
{
	char path[PATH_BUF];

	join(path, gpath, name);
	return perr(
	    p, grp, path, "missing%s%s", why ? ": " : "", why ? why : "");
}

static int
is_hex_n(const char *s, size_t n)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return i == n;
}

int
config_parse_secret(const char *hex, uint8_t out[16])
{
	if (hex == NULL || !is_hex_n(hex, 2 * CONFIG_SECRET_LEN))
		return -1;
	return hex_decode(hex, out, CONFIG_SECRET_LEN) == 0 ? 0 : -1;
}

/* Names show up in logs, metrics labels and state files: keep them tame. */
static int
valid_name(const char *s)
{
	if (s[0] == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' &&
		    *s != '.')
			return 0;
	return 1;
}

/* A DNS name (LDH labels) or an IP literal. */
static int
valid_host(const char *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	size_t label = 0, total = 0;

	if (addr_from_ip_port(s, 1, &ss, &len) == 0)
		return 1;
	for (; *s != '\0'; s++, total++) {
		if (*s == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && total <= CONFIG_DOMAIN_MAX;
}

static int
parse_backend(
    struct parser *p, struct opt *o, const char *v, enum backend_mode *out)
{
	if (strcmp(v, "auto") == 0)
		*out = BACKEND_AUTO;
	else if (strcmp(v, "middle") == 0)
		*out = BACKEND_MIDDLE;
	else if (strcmp(v, "direct") == 0)
		*out = BACKEND_DIRECT;
	else
		return perr(p, o->s, o->path,
		    "must be \"auto\", \"middle\" or \"direct\"");
	return 0;
}

static int
parse_ad_tag(struct parser *p, struct opt *o, const char *v, int *has,
    uint8_t tag[CONFIG_AD_TAG_LEN])
{
	if (v[0] == '\0') {
		*has = 0;
		return 0;
	}
	if (!is_hex_n(v, 2 * CONFIG_AD_TAG_LEN) ||
	    hex_decode(v, tag, CONFIG_AD_TAG_LEN) != 0)
		return perr(p, o->s, o->path, "must be 32 hex digits or \"\"");
	*has = 1;
	return 0;
}

int
config_host_port(const char *text, uint16_t default_port, char *host,
    size_t hostcap, uint16_t *port)
{
	const char *colon, *h = text, *portstr = NULL;
	size_t hl;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (end == NULL)
			return -1;
		h = text + 1;
		hl = (size_t)(end - h);
		if (end[1] == ':')
			portstr = end + 2;
		else if (end[1] != '\0')
			return -1;
	} else {
		colon = strrchr(text, ':');
		if (colon != NULL && strchr(text, ':') != colon)
			colon = NULL; /* a bare IPv6 literal */
		hl = colon ? (size_t)(colon - text) : strlen(text);
		portstr = colon ? colon + 1 : NULL;
	}
	if (hl == 0 || hl >= hostcap)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (!valid_host(host))
		return -1;
	*port = default_port;
	if (portstr != NULL) {
		char *end;
		long v;

		errno = 0;
		v = strtol(portstr, &end, 10);
		if (!isdigit((unsigned char)portstr[0]) || *end != '\0' ||
		    errno != 0 || v < 1 || v > 65535)
			return -1;
		*port = (uint16_t)v;
	}
	return 0;
}

static const char *const user_opts[] = { "name", "secret", "ad_tag", "enabled",
	"max_connections", "max_unique_ips", "unique_ips_window", "quota",
	"quota_period", "expires", "rate", NULL };

int
config_parse_time(const char *text, int64_t *out)
{
	int y, mo, d, h, mi, sec, n = 0;
	const char *t;
	struct tm tm = { 0 };
	int64_t off = 0;

	if (sscanf(text, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
		return -1;
	t = text + 10;
	if (*t != 'T' && *t != 't' && *t != ' ')
		return -1;
	t++;
	n = 0;
	if (sscanf(t, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
		return -1;
	t += 8;
	if (*t == '.') {
		if (!isdigit((unsigned char)*++t))
			return -1;
		while (isdigit((unsigned char)*t))
			t++;
	}
	if (*t == 'Z' || *t == 'z')
		t++;
	else if (*t == '+' || *t == '-') {
		int oh, om;
		n = 0;
		if (sscanf(t + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 ||
		    oh > 23 || om > 59)
			return -1;
		off = (int64_t)(oh * 3600 + om * 60) * (*t == '+' ? 1 : -1);
		t += 6;
	} else
		return -1;
	if (*t != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60 || y < 1970)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t v = timegm(&tm);
	if (v == (time_t)-1 || tm.tm_mday != d) /* 2027-02-30 */
		return -1;
	*out = (int64_t)v - off;
	return 0;
}

int
config_parse_quota_period(const char *v, int *period, int *day)
{
	char *end;

	if (strcmp(v, "never") == 0) {
		*period = QUOTA_NEVER;
		*day = 0;
	} else if (strcmp(v, "daily") == 0) {
		*period = QUOTA_DAILY;
		*day = 0;
	} else if (strcmp(v, "monthly") == 0) {
		*period = QUOTA_MONTHLY;
		*day = 1;
	} else if (strncmp(v, "monthly:", 8) == 0 &&
	    isdigit((unsigned char)v[8])) {
		long d = strtol(v + 8, &end, 10);
		if (*end != '\0' || d < 1 || d > 31)
			return -2;
		*period = QUOTA_MONTHLY;
		*day = (int)d;
	} else
		return -1;
	return 0;
}

/* quota_period = "never" | "daily" | "monthly" | "monthly:DAY" */
static int
parse_quota_period(struct parser *p, const config_setting_t *s,
    const char *path, struct config_user *u)
{
	char v[32];
	struct opt o;
	int r;

	if ((r = opt_str(p, s, path, "quota_period", v, sizeof(v), &o)) != 1)
		return r;
	switch (config_parse_quota_period(v, &u->quota_period, &u->quota_day)) {
	case 0:
		return 1;
	case -2:
		return perr(p, o.s, o.path,
		    "the day of \"monthly:DAY\" must be 1 to 31");
	default:
		return perr(p, o.s, o.path,
		    "must be \"never\", \"daily\", \"monthly\" or "
		    "\"monthly:DAY\"");
	}
}

/* The per-user limits (CONFIG.md "Users, limits and access"). */
static int
parse_user_limits(struct parser *p, const config_setting_t *s, const char *path,
    struct config_user *u)
{
	char when[64];
	struct opt o;
	int r;

	u->enabled = 1;
	u->unique_ips_window = 600;
	u->pidx = -1;
	if (opt_bool(p, s, path, "enabled", &u->enabled) == -1 ||
	    opt_intf(p, s, path, "max_connections", 0, INT_MAX,
	        &u->max_connections) == -1 ||
	    opt_intf(p, s, path, "max_unique_ips", 0, CONFIG_MAX_UNIQUE_IPS,
	        &u->max_unique_ips) == -1 ||
	    opt_intf(p, s, path, "unique_ips_window", 1, 366 * 86400,
	        &u->unique_ips_window) == -1 ||
	    opt_size(p, s, path, "quota", &u->quota) == -1 ||
	    opt_size(p, s, path, "rate", &u->rate) == -1 ||
	    parse_quota_period(p, s, path, u) == -1)
		return -1;
	if ((r = opt_str(p, s, path, "expires", when, sizeof(when), &o)) == -1)
		return perr(p, o.s, o.path,
		    "must be an RFC 3339 time such as "
		    "\"2027-01-31T00:00:00Z\", or \"\"");
	if (r == 1 && when[0] != '\0' &&
	    config_parse_time(when, &u->expires) == -1)
		return perr(p, o.s, o.path,
		    "must be an RFC 3339 time such as "
		    "\"2027-01-31T00:00:00Z\", or \"\"");
	return 0;
}

/* A listener's users by name and by secret, for the duplicate checks. */
struct user_dups {
	struct keyidx name, secret;
};

static int
parse_user(struct parser *p, struct config_listener *l, size_t i,
    const config_setting_t *s, const char *path, struct user_dups *dup)
{
	struct config_user *u = &l->users[i];
	char secret[80], tag[80];
	struct opt o;
	int r;

	if (config_setting_type(s) != CONFIG_TYPE_GROUP)
		return perr(p, s, path,
		    "must be a group { name = ...; secret = ...; }");
	if (check_known(p, s, path, user_opts) == -1)
		return -1;

	if ((r = opt_str(p, s, path, "name", u->name, sizeof(u->name), &o)) ==
	    -1)
		return -1;
	if (r == 0) {
		snprintf(u->name, sizeof(u->name), "user%zu", i);
		o.s = (config_setting_t *)s;
	} else if (!valid_name(u->name))
		return perr(p, o.s, o.path,
		    "must be letters, digits, '.', '_' or '-' (not empty)");
	long j = keyidx_add(&dup->name, i);
	if (j >= 0)
		return perr(p, o.s, o.path,
		    "duplicate user name \"%s\" (also users.[%ld])", u->name,
		    j);

	if ((r = opt_str(p, s, path, "secret", secret, sizeof(secret), &o)) ==
	    -1) {
		if (o.s != NULL &&
		    config_setting_type(o.s) == CONFIG_TYPE_STRING)
			return perr(p, o.s, o.path, "must be 32 hex digits");
		return -1;
	}
	if (r == 0)
		return missing(p, s, path, "secret",
		    "each user needs a secret of 32 hex digits");
	if (config_parse_secret(secret, u->secret) == -1)
		return perr(p, o.s, o.path, "must be 32 hex digits");
	/* The proxy tells users apart by secret, so they must differ. */
	if ((j = keyidx_add(&dup->secret, i)) >= 0)
		return perr(p, o.s, o.path,
		    "same secret as users.[%ld] (\"%s\")", j, l->users[j].name);

	if ((r = opt_str(p, s, path, "ad_tag", tag, sizeof(tag), &o)) == -1)
		return perr(p, o.s, o.path, "must be 32 hex digits or \"\"");
	if (r == 1 && parse_ad_tag(p, &o, tag, &u->has_ad_tag, u->ad_tag) == -1)
		return -1;
	return parse_user_limits(p, s, path, u);
}

int
config_users_load(const char *path, struct config_user **out, size_t *nout,
    char *err, size_t errlen)
{
	struct parser p = { path, err, errlen };
	struct config_listener l = { 0 };
	struct user_dups dup;
	char *text = NULL, *wrapped = NULL;
	size_t len = 0;
	FILE *f;
	config_t lc;
	int r = -1;

	*out = NULL;
	*nout = 0;
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0; /* none yet */
		seterr(
		    err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	text = malloc(1024 * 1024 + 1);
	if (text != NULL)
		len = fread(text, 1, 1024 * 1024, f);
	fclose(f);
	if (text == NULL || len == 1024 * 1024) {
		seterr(err, errlen, "%s: too large or out of memory", path);
		free(text);
		return -1;
	}
	text[len] = '\0';
	/* The file is a list's inside; no newline before it, so that the
	 * line numbers are the file's. */
	if (asprintf(&wrapped, "users = ( %s\n);\n", text) == -1) {
		free(text);
		return -1;
	}
	free(text);
	config_init(&lc);
	if (!config_read_string(&lc, wrapped)) {
		seterr(err, errlen, "%s:%d: %s", path, config_error_line(&lc),
		    config_error_text(&lc));
		goto out;
	}
	config_setting_t *list = config_lookup(&lc, "users");
	int n = list ? config_setting_length(list) : 0;
	if (list == NULL || config_setting_type(list) != CONFIG_TYPE_LIST) {
		seterr(err, errlen, "%s: not a list of users", path);
		goto out;
	}
	if ((l.users = calloc((size_t)n + 1, sizeof(*l.users))) == NULL)
		goto out;
	if (keyidx_init(&dup.name, (size_t)n, l.users, sizeof(*l.users),
	        offsetof(struct config_user, name), 0) == -1)
		goto out;
	if (keyidx_init(&dup.secret, (size_t)n, l.users, sizeof(*l.users),
	        offsetof(struct config_user, secret),
	        CONFIG_SECRET_LEN) == -1) {
		keyidx_free(&dup.name);
		goto out;
	}
	int bad = 0;
	for (int i = 0; i < n && !bad; i++) {
		char upath[PATH_BUF];

		join_index(upath, "users", (size_t)i);
		l.nusers = (size_t)i + 1;
		bad = parse_user(&p, &l, (size_t)i,
		          config_setting_get_elem(list, i), upath, &dup) == -1;
	}
	keyidx_free(&dup.name);
	keyidx_free(&dup.secret);
	if (bad)
		goto out;
	*out = l.users;
	*nout = l.nusers;
	l.users = NULL;
	r = 0;
out:
	config_destroy(&lc);
	free(wrapped);
	free(l.users);
	return r;
}

static int
parse_protocols(struct parser *p, struct opt *o, unsigned *out)
{
	static const unsigned bits[] = { PROTO_CLASSIC, PROTO_SECURE,
		PROTO_FAKE_TLS };
	char path[PATH_BUF];
	int t = config_setting_type(o->s), n;

	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return perr(p, o->s, o->path,
		    "must be an array of strings, e.g. [ \"fake_tls\" ]");
	n = config_setting_length(o->s);
	if (n == 0)
		return perr(p, o->s, o->path,
		    "must name at least one of \"classic\", \"secure\", "
		    "\"fake_tls\"");
	*out = 0;
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(o->s, i);
		const char *v;
		size_t k;

		join_index(path, o->path, (size_t)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return perr(p, e, path, "must be a string");
		v = config_setting_get_string(e);
		for (k = 0; k < nitems(bits); k++)
			if (strcmp(v, config_proto_name(bits[k])) == 0)
				break;
		if (k == nitems(bits))
			return perr(p, e, path,
			    "unknown protocol \"%s\" "
			    "(must be \"classic\", \"secure\" or \"fake_tls\")",
			    v);
		if (*out & bits[k])
			return perr(p, e, path, "\"%s\" listed twice", v);
		*out |= bits[k];
	}
	return 0;
}

static const char *const access_opts[] = { "allow", "deny", "allow_file",
	"deny_file", NULL };

/* One list of access: inline blocks and a file's, into a. */
static int
parse_acl(struct parser *p, const config_setting_t *g, const char *gpath,
    const char *name, const char *file_opt, struct acl *a)
{
	char path[PATH_BUF], file[4096], err[CONFIG_ERR_MAX];
	struct opt o;
	int r;

	if (lookup(g, gpath, name, &o)) {
		int t = config_setting_type(o.s),
		    n = config_setting_length(o.s);

		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return perr(p, o.s, o.path,
			    "must be an array of address blocks, e.g. "
			    "[ \"10.0.0.0/8\" ]");
		for (int i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(o.s, i);
			struct cidr c;

			join_index(path, o.path, (size_t)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING ||
			    cidr_parse(config_setting_get_string(e), &c) == -1)
				return perr(p, e, path,
				    "must be an address or address/prefix, "
				    "e.g. \"10.0.0.0/8\"");
			if (acl_add(a, &c) == -1)
				return perr(p, e, path, "out of memory");
		}
	}
	if ((r = opt_str(p, g, gpath, file_opt, file, sizeof(file), &o)) == -1)
		return -1;
	if (r == 1 && file[0] != '\0' &&
	    acl_load_file(a, file, err, sizeof(err)) == -1)
		return perr(p, o.s, o.path, "%s", err);
	acl_finish(a);
	return 0;
}

static int
parse_access(struct parser *p, struct config_access *acc,
    const config_setting_t *g, const char *path)
{
	if (check_known(p, g, path, access_opts) == -1 ||
	    parse_acl(p, g, path, "allow", "allow_file", &acc->allow) == -1 ||
	    parse_acl(p, g, path, "deny", "deny_file", &acc->deny) == -1)
		return -1;
	return 0;
}

static const char *const listener_opts[] = { "name", "address", "port",
	"protocols", "tls_domain", "fronting", "ad_tag", "backend", "users",
	"limits", "server", "fronting_proxy_protocol", "unknown_sni",
	"handshake_mss", "rst_on_failed", "tls_domains", "proxy_protocol",
	"proxy_protocol_trusted", "access", "per_sni_secrets", "per_sni_salt",
	NULL };

/*
 * limits = { ... }: the global block (l == NULL) bounds the whole daemon,
 * a listener's bounds that listener only; a client must be within both.
 */
static const char *const limits_opts[] = { "max_connections",
	"handshake_memory", "per_ip", "per_subnet", "subnet_v4", "subnet_v6",
	NULL };
static const char *const listener_limits_opts[] = { "max_connections", "per_ip",
	"per_subnet", "subnet_v4", "subnet_v6", NULL };

static int
parse_addr_limits(struct parser *p, const config_setting_t *g, const char *path,
    struct config_limits *lim)
{
	if (opt_intf(p, g, path, "per_ip", 0, INT_MAX, &lim->per_ip) == -1 ||
	    opt_intf(p, g, path, "per_subnet", 0, INT_MAX, &lim->per_subnet) ==
	        -1 ||
	    opt_intf(p, g, path, "subnet_v4", 1, 32, &lim->subnet_v4) == -1 ||
	    opt_intf(p, g, path, "subnet_v6", 1, 128, &lim->subnet_v6) == -1)
		return -1;
	return 0;
}

static int
parse_limits(struct parser *p, struct config *cfg, struct config_listener *l,
    const config_setting_t *g, const char *path)
{
	struct opt o;

	if (l != NULL) {
		/* Handshake memory is one pool for the whole daemon. */
		if (lookup(g, path, "handshake_memory", &o))
			return perr(
			    p, o.s, o.path, "only in the global limits block");
		if (check_known(p, g, path, listener_limits_opts) == -1 ||
		    parse_addr_limits(p, g, path, &l->limits) == -1)
			return -1;
		return opt_intf(p, g, path, "max_connections", 0, INT_MAX,
		           &l->max_connections) == -1
		    ? -1
		    : 0;
	}
	if (check_known(p, g, path, limits_opts) == -1 ||
	    parse_addr_limits(p, g, path, &cfg->limits) == -1 ||
	    opt_intf(p, g, path, "max_connections", 0, INT_MAX,
	        &cfg->max_connections) == -1 ||
	    opt_size(p, g, path, "handshake_memory", &cfg->handshake_memory) ==
	        -1)
		return -1;
	return 0;
}

static int
same_sockaddr(
    const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;
		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr,
		        sizeof(x->sin6_addr)) == 0;
	}
	return 0;
}

/* A domain a fake-TLS client may ask for (tls_domain, tls_domains). */
static int
check_tls_domain(struct parser *p, const config_setting_t *s, const char *path,
    const char *name)
{
	size_t dl = strlen(name);

	if (!valid_host(name))
		return perr(p, s, path, "must be a host name");
	if (dl < TLS_DOMAIN_MIN || dl > TLS_DOMAIN_MAX)
		return perr(p, s, path, "must be %d to %d characters long",
		    TLS_DOMAIN_MIN, TLS_DOMAIN_MAX);
	return 0;
}

/*
 * tls_domains = [ "name", "name=host:port", ... ]: more names besides
 * tls_domain, each fronted to its own site or (without one) to the
 * listener's.
 */
static int
parse_tls_domains(struct parser *p, struct config_listener *l,
    const config_setting_t *s, const char *lpath)
{
	char path[PATH_BUF], buf[CONFIG_DOMAIN_MAX + 16];
	struct opt o;
	int t, n;

	if (!lookup(s, lpath, "tls_domains", &o))
		return 0;
	t = config_setting_type(o.s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return perr(p, o.s, o.path,
		    "must be an array of strings, e.g. [ \"a.example\" ]");
	n = config_setting_length(o.s);
	if (n > CONFIG_MAX_TLS_DOMAINS)
		return perr(p, o.s, o.path, "too many names (at most %d)",
		    CONFIG_MAX_TLS_DOMAINS);
	if (n > 0 && !(l->protocols & PROTO_FAKE_TLS))
		return perr(
		    p, o.s, o.path, "needs protocol fake_tls on this listener");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(o.s, i);
		struct config_sni *sn = &l->snis[l->nsnis];
		const char *v, *eq;
		size_t nl;

		join_index(path, o.path, (size_t)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return perr(p, e, path, "must be a string");
		v = config_setting_get_string(e);
		eq = strchr(v, '=');
		nl = eq != NULL ? (size_t)(eq - v) : strlen(v);
		if (nl >= sizeof(sn->name))
			return perr(p, e, path, "name too long");
		memcpy(sn->name, v, nl);
		sn->name[nl] = '\0';
		if (check_tls_domain(p, e, path, sn->name) == -1)
			return -1;
		if (strcasecmp(sn->name, l->tls_domain) == 0)
			return perr(
			    p, e, path, "\"%s\" is the tls_domain", sn->name);
		for (size_t k = 0; k < l->nsnis; k++)
			if (strcasecmp(sn->name, l->snis[k].name) == 0)
				return perr(p, e, path, "\"%s\" listed twice",
				    sn->name);
		if (eq != NULL &&
		    (strlen(eq + 1) >= sizeof(buf) ||
		        config_host_port(eq + 1, DEF_FRONTING_PORT,
		            sn->fronting_host, sizeof(sn->fronting_host),
		            &sn->fronting_port) == -1))
			return perr(p, e, path,
			    "must be \"name\" or \"name=host:port\"");
		l->nsnis++;
	}
	return 1;
}

static int
parse_listener(struct parser *p, struct config *cfg, size_t idx,
    const config_setting_t *s, const char *path)
{
	struct config_listener *l = &cfg->listeners[idx];
	char buf[CONFIG_DOMAIN_MAX + 16];
	struct opt o, oproto;
	long long v;
	int r, n, sni = SNI_FRONT;

	if (config_setting_type(s) != CONFIG_TYPE_GROUP)
		return perr(p, s, path, "must be a group { ... }");
	if (check_known(p, s, path, listener_opts) == -1)
		return -1;
	l->shm_index = -1;
	l->limits = (struct config_limits){ 0, 0, 24, 64 };

	if ((r = opt_str(p, s, path, "name", l->name, sizeof(l->name), &o)) ==
	    -1)
		return -1;
	if (r == 0) {
		snprintf(l->name, sizeof(l->name), "listener%zu", idx);
		o.s = (config_setting_t *)s;
	} else if (!valid_name(l->name))
		return perr(p, o.s, o.path,
		    "must be letters, digits, '.', '_' or '-' (not empty)");
	for (size_t j = 0; j < idx; j++)
		if (strcmp(cfg->listeners[j].name, l->name) == 0)
			return perr(p, o.s, o.path,
			    "duplicate listener name "
			    "\"%s\" (also listeners.[%zu])",
			    l->name, j);

	snprintf(l->address, sizeof(l->address), "%s", DEF_LISTEN_ADDRESS);
	if (opt_str(p, s, path, "address", l->address, sizeof(l->address),
	        &o) == -1)
		return -1;
	if (addr_from_ip_port(l->address, 1, &l->addr, &l->addrlen) == -1)
		return perr(p, o.s ? o.s : s, o.path,
		    "must be an IPv4 or IPv6 address literal");

	if ((r = opt_int(p, s, path, "port", 1, 65535, &v, &o)) == -1)
		return -1;
	if (r == 0)
		return missing(p, s, path, "port", NULL);
	l->port = (uint16_t)v;
	if (addr_from_ip_port(l->address, l->port, &l->addr, &l->addrlen) == -1)
		return perr(p, s, path, "cannot use address");
	for (size_t j = 0; j < idx; j++)
		if (same_sockaddr(&cfg->listeners[j].addr, &l->addr))
			return perr(p, o.s, o.path,
			    "address %s port %u is "
			    "already used by listeners.[%zu]",
			    l->address, l->port, j);

	if ((r = opt_str(p, s, path, "tls_domain", l->tls_domain,
	         sizeof(l->tls_domain), &o)) == -1)
		return -1;
	if (r == 1 && l->tls_domain[0] != '\0' &&
	    check_tls_domain(p, o.s, o.path, l->tls_domain) == -1)
		return -1;

	l->protocols = PROTO_CLASSIC | PROTO_SECURE | PROTO_FAKE_TLS;
	if (lookup(s, path, "protocols", &oproto) &&
	    parse_protocols(p, &oproto, &l->protocols) == -1)
		return -1;
	if ((l->protocols & PROTO_FAKE_TLS) && l->tls_domain[0] == '\0') {
		char tpath[PATH_BUF];
		join(tpath, path, "tls_domain");
		return perr(p, oproto.s ? oproto.s : s, tpath,
		    "missing: protocol fake_tls needs it%s",
		    oproto.s ? "" : " (protocols defaults to all three)");
	}

	if (l->tls_domain[0] != '\0') {
		snprintf(l->fronting_host, sizeof(l->fronting_host), "%s",
		    l->tls_domain);
		l->fronting_port = DEF_FRONTING_PORT;
	}
	if ((r = opt_str(p, s, path, "fronting", buf, sizeof(buf), &o)) == -1)
		return -1;
	if (r == 1 &&
	    config_host_port(buf, DEF_FRONTING_PORT, l->fronting_host,
	        sizeof(l->fronting_host), &l->fronting_port) == -1)
		return perr(p, o.s, o.path,
		    "must be \"host:port\" (host a name or an IP address)");

	if (opt_enum(p, s, path, "fronting_proxy_protocol",
	        (const char *const[]){ "off", "v2", NULL },
	        &l->fronting_proxy_v2) == -1 ||
	    opt_enum(p, s, path, "unknown_sni",
	        (const char *const[]){ "front", "drop", "reject", NULL },
	        &sni) == -1)
		return -1;
	l->unknown_sni = (enum unknown_sni)sni;
	if (parse_tls_domains(p, l, s, path) == -1)
		return -1;
	if (opt_bool(p, s, path, "per_sni_secrets", &l->per_sni_secrets) == -1)
		return -1;
	if (l->per_sni_secrets && !(l->protocols & PROTO_FAKE_TLS)) {
		lookup(s, path, "per_sni_secrets", &o);
		return perr(p, o.s, o.path,
		    "needs fake_tls in protocols (it keys fake-TLS clients "
		    "only)");
	}
	if (opt_str(p, s, path, "per_sni_salt", l->per_sni_salt,
	        sizeof(l->per_sni_salt), &o) == -1)
		return -1;
	/* proxy_protocol: a load balancer in front sends the client's
	 * address first; only from proxy_protocol_trusted (default the
	 * loopback addresses). */
	int pp = 0;
	if (opt_enum(p, s, path, "proxy_protocol",
	        (const char *const[]){ "off", "v1", "v2", "any", NULL },
	        &pp) == -1)
		return -1;
	l->proxy_protocol = (unsigned)pp; /* 1 v1, 2 v2, 3 both */
	if ((r = opt_cidrs(p, s, path, "proxy_protocol_trusted",
	         l->proxy_trusted, &l->nproxy_trusted)) == -1)
		return -1;
	if (r == 0) {
		cidr_parse("127.0.0.0/8", &l->proxy_trusted[0]);
		cidr_parse("::1", &l->proxy_trusted[1]);
		l->nproxy_trusted = 2;
	}
	/* Linux takes 88 (TCP_MIN_MSS) to 65535; 0 leaves the kernel's. */
	if ((r = opt_intf(p, s, path, "handshake_mss", 0, 65535,
	         &l->handshake_mss)) == -1 ||
	    opt_bool(p, s, path, "rst_on_failed", &l->rst_on_failed) == -1)
		return -1;
	if (r == 1 && l->handshake_mss != 0 && l->handshake_mss < 88) {
		lookup(s, path, "handshake_mss", &o);
		return perr(p, o.s, o.path, "must be 0 or 88 to 65535");
	}

	if ((r = opt_str(p, s, path, "ad_tag", buf, sizeof(buf), &o)) == -1)
		return perr(p, o.s, o.path, "must be 32 hex digits or \"\"");
	if (r == 1 && parse_ad_tag(p, &o, buf, &l->has_ad_tag, l->ad_tag) == -1)
		return -1;

	if ((r = opt_str(
	         p, s, path, "server", l->server, sizeof(l->server), &o)) == -1)
		return -1;
	if (r == 1 && l->server[0] != '\0' && !valid_host(l->server))
		return perr(p, o.s, o.path,
		    "must be a host name or an IP address (or \"\")");

	l->backend = BACKEND_INHERIT;
	if ((r = opt_str(p, s, path, "backend", buf, sizeof(buf), &o)) == -1)
		return -1;
	if (r == 1 && parse_backend(p, &o, buf, &l->backend) == -1)
		return -1;

	if ((r = opt_group(p, s, path, "limits", &o)) == -1 ||
	    (r == 1 && parse_limits(p, cfg, l, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, s, path, "access", &o)) == -1 ||
	    (r == 1 && parse_access(p, &l->access, o.s, o.path) == -1))
		return -1;

	if ((r = opt_list(p, s, path, "users", &o)) == -1)
		return -1;
	if (r == 0)
		return missing(
		    p, s, path, "users", "a listener needs at least one user");
	/* An empty list is allowed: users = ( @include "users.conf" )
	 * before the API has made any serves nobody yet (every client is
	 * a bad client). */
	n = config_setting_length(o.s);
	if (n > CONFIG_MAX_USERS)
		return perr(p, o.s, o.path, "too many users (at most %d)",
		    CONFIG_MAX_USERS);
	struct user_dups dup;
	if ((l->users = calloc((size_t)n + 1, sizeof(*l->users))) == NULL ||
	    keyidx_init(&dup.name, (size_t)n, l->users, sizeof(*l->users),
	        offsetof(struct config_user, name), 0) == -1)
		return perr(p, o.s, o.path, "out of memory");
	if (keyidx_init(&dup.secret, (size_t)n, l->users, sizeof(*l->users),
	        offsetof(struct config_user, secret),
	        CONFIG_SECRET_LEN) == -1) {
		keyidx_free(&dup.name);
		return perr(p, o.s, o.path, "out of memory");
	}
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		char upath[PATH_BUF];

		join_index(upath, o.path, (size_t)i);
		l->nusers = (size_t)i + 1;
		rc = parse_user(p, l, (size_t)i,
		    config_setting_get_elem(o.s, i), upath, &dup);
	}
	keyidx_free(&dup.name);
	keyidx_free(&dup.secret);
	return rc;
}

static const char *const log_opts[] = { "target", "level", "format", "facility",
	"syslog_socket", NULL };
static const char *const facility_names[] = { "daemon", "user", "local0",
	"local1", "local2", "local3", "local4", "local5", "local6", "local7",
	NULL };
static const int facility_values[] = { LOG_DAEMON, LOG_USER, LOG_LOCAL0,
	LOG_LOCAL1, LOG_LOCAL2, LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6,
	LOG_LOCAL7 };

static int
parse_log(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	static const char *const levels[] = { "debug", "info", "notice",
		"warning", "error", NULL };
	char buf[4096];
	struct opt o;
	int r;

	if (check_known(p, g, path, log_opts) == -1)
		return -1;
	if ((r = opt_str(p, g, path, "target", buf, sizeof(buf), &o)) == -1)
		return -1;
	if (r == 1) {
		if (strcmp(buf, "stderr") == 0)
			cfg->log_target = LOG_TARGET_STDERR;
		else if (strcmp(buf, "syslog") == 0)
			cfg->log_target = LOG_TARGET_SYSLOG;
		else if (buf[0] == '/') {
			cfg->log_target = LOG_TARGET_FILE;
			snprintf(
			    cfg->log_file, sizeof(cfg->log_file), "%s", buf);
		} else
			return perr(p, o.s, o.path,
			    "must be \"stderr\", "
			    "\"syslog\" or an absolute file path");
	}
	int fac = -1;
	if (opt_enum(p, g, path, "format",
	        (const char *const[]){ "text", "json", NULL },
	        &cfg->log_json) == -1 ||
	    opt_enum(p, g, path, "facility", facility_names, &fac) == -1)
		return -1;
	if (fac >= 0)
		cfg->log_facility = facility_values[fac];
	if ((r = opt_str(p, g, path, "syslog_socket", cfg->log_syslog_socket,
	         sizeof(cfg->log_syslog_socket), &o)) == -1)
		return -1;
	if (r == 1 && cfg->log_syslog_socket[0] != '/')
		return perr(p, o.s, o.path, "must be an absolute path");
	if ((r = opt_str(p, g, path, "level", buf, 32, &o)) == -1)
		return -1;
	if (r == 1) {
		size_t k;

		for (k = 0; levels[k] != NULL; k++)
			if (strcmp(buf, levels[k]) == 0)
				break;
		if (levels[k] == NULL || (r = log_level_from_name(buf)) < 0)
			return perr(p, o.s, o.path,
			    "must be \"debug\", "
			    "\"info\", \"notice\", \"warning\" or \"error\"");
		cfg->log_level = r;
	}
	return 0;
}

static const char *const replay_opts[] = { "entries", "window", NULL };

static int
parse_replay(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	struct opt o;
	long long v;
	int r;

	if (check_known(p, g, path, replay_opts) == -1)
		return -1;
	if ((r = opt_int(p, g, path, "entries", MIN_REPLAY_ENTRIES, INT_MAX, &v,
	         &o)) == -1)
		return -1;
	if (r == 1)
		cfg->replay_entries = (size_t)v;
	return opt_intf(
	           p, g, path, "window", 1, INT_MAX, &cfg->replay_window) == -1
	    ? -1
	    : 0;
}

static const char *const tls_opts[] = { "time_skew_past", "time_skew_future",
	"cert_len_min", "cert_len_max", "profile", "profile_refresh",
	"record_sizing", "split_hello", "hello_delay", NULL };

static int
parse_tls(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	struct opt o;
	int learn;

	if (check_known(p, g, path, tls_opts) == -1 ||
	    opt_intf(p, g, path, "time_skew_past", 0, INT_MAX,
	        &cfg->tls_time_skew_past) == -1 ||
	    opt_intf(p, g, path, "time_skew_future", 0, INT_MAX,
	        &cfg->tls_time_skew_future) == -1 ||
	    opt_intf(p, g, path, "cert_len_min", 1, TLS_RECORD_MAX,
	        &cfg->tls_cert_len_min) == -1 ||
	    opt_intf(p, g, path, "cert_len_max", 1, TLS_RECORD_MAX,
	        &cfg->tls_cert_len_max) == -1 ||
	    opt_intf(p, g, path, "profile_refresh", 60, INT_MAX,
	        &cfg->tls_profile_refresh) == -1)
		return -1;
	learn = !cfg->tls_profile_learn;
	if (opt_enum(p, g, path, "profile",
	        (const char *const[]){ "learn", "static", NULL },
	        &learn) == -1 ||
	    opt_enum(p, g, path, "record_sizing",
	        (const char *const[]){ "dynamic", "fixed", NULL },
	        &cfg->tls_record_fixed) == -1 ||
	    opt_bool(p, g, path, "split_hello", &cfg->tls_split_hello) == -1 ||
	    opt_enum(p, g, path, "hello_delay",
	        (const char *const[]){ "0", "site", NULL },
	        &cfg->tls_hello_delay_site) == -1)
		return -1;
	cfg->tls_profile_learn = !learn;
	if (cfg->tls_cert_len_min > cfg->tls_cert_len_max) {
		if (!lookup(g, path, "cert_len_max", &o))
			lookup(g, path, "cert_len_min", &o);
		return perr(p, o.s, o.path,
		    "cert_len_min (%d) is larger than cert_len_max (%d)",
		    cfg->tls_cert_len_min, cfg->tls_cert_len_max);
	}
	return 0;
}

static const char *const dc_opts[] = { "id", "address", NULL };

static int
parse_dcs(struct parser *p, struct config *cfg, struct opt *ol)
{
	int n = config_setting_length(ol->s);

	if (n > CONFIG_MAX_DCS)
		return perr(p, ol->s, ol->path, "too many entries (at most %d)",
		    CONFIG_MAX_DCS);
	if (n == 0)
		return 0;
	if ((cfg->dcs = calloc((size_t)n, sizeof(*cfg->dcs))) == NULL)
		return perr(p, ol->s, ol->path, "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(ol->s, i);
		struct config_dc *d = &cfg->dcs[i];
		char path[PATH_BUF];
		struct opt o;
		long long v;
		int r;

		cfg->ndcs = (size_t)i + 1;
		join_index(path, ol->path, (size_t)i);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return perr(p, e, path,
			    "must be a group "
			    "{ id = N; address = \"ip:port\"; }");
		if (check_known(p, e, path, dc_opts) == -1)
			return -1;
		/* DC ids travel as a signed 16-bit value (A.2.4). */
		if ((r = opt_int(p, e, path, "id", 1, 32767, &v, &o)) == -1)
			return -1;
		if (r == 0)
			return missing(p, e, path, "id", NULL);
		d->id = (int)v;
		if ((r = opt_str(p, e, path, "address", d->address,
		         sizeof(d->address), &o)) == -1)
			return -1;
		if (r == 0)
			return missing(p, e, path, "address", NULL);
		if (addr_parse(d->address, 0, &d->addr, &d->addrlen) == -1)
			return perr(p, o.s, o.path,
			    "must be \"ip:port\" "
			    "(\"[ipv6]:port\" for IPv6)");
	}
	return 0;
}

static int
opt_url(struct parser *p, const config_setting_t *g, const char *path,
    const char *name, char *dst, size_t cap)
{
	struct opt o;
	int r;

	if ((r = opt_str(p, g, path, name, dst, cap, &o)) != 1)
		return r;
	if (strncmp(dst, "https://", 8) != 0 && strncmp(dst, "http://", 7) != 0)
		return perr(
		    p, o.s, o.path, "must be an http:// or https:// URL");
	return 1;
}

static const char *const telegram_opts[] = { "dc", "default_dc",
	"proxy_secret_url", "proxy_config_url", "proxy_config_v6_url",
	"proxy_secret_file", "proxy_config_file", "refresh", "nat_ip",
	"connect_timeout", "ca_file", "http_timeout", "proxy_config_v6_file",
	NULL };

static int
parse_telegram(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct opt o;
	int r;

	if (check_known(p, g, path, telegram_opts) == -1)
		return -1;
	if ((r = opt_list(p, g, path, "dc", &o)) == -1)
		return -1;
	if (r == 1 && parse_dcs(p, cfg, &o) == -1)
		return -1;
	if (opt_intf(p, g, path, "default_dc", 1, 32767, &cfg->default_dc) ==
	        -1 ||
	    opt_url(p, g, path, "proxy_secret_url", cfg->proxy_secret_url,
	        sizeof(cfg->proxy_secret_url)) == -1 ||
	    opt_url(p, g, path, "proxy_config_url", cfg->proxy_config_url,
	        sizeof(cfg->proxy_config_url)) == -1 ||
	    opt_url(p, g, path, "proxy_config_v6_url", cfg->proxy_config_v6_url,
	        sizeof(cfg->proxy_config_v6_url)) == -1 ||
	    opt_str(p, g, path, "proxy_secret_file", cfg->proxy_secret_file,
	        sizeof(cfg->proxy_secret_file), &o) == -1 ||
	    opt_str(p, g, path, "proxy_config_file", cfg->proxy_config_file,
	        sizeof(cfg->proxy_config_file), &o) == -1 ||
	    opt_intf(p, g, path, "refresh", 1, INT_MAX, &cfg->refresh) == -1 ||
	    opt_intf(p, g, path, "connect_timeout", 1, INT_MAX,
	        &cfg->connect_timeout) == -1 ||
	    opt_str(p, g, path, "ca_file", cfg->ca_file, sizeof(cfg->ca_file),
	        &o) == -1 ||
	    opt_intf(p, g, path, "http_timeout", 1, INT_MAX,
	        &cfg->http_timeout) == -1 ||
	    opt_str(p, g, path, "proxy_config_v6_file",
	        cfg->proxy_config_v6_file, sizeof(cfg->proxy_config_v6_file),
	        &o) == -1)
		return -1;
	if ((r = opt_str(p, g, path, "nat_ip", cfg->nat_ip, sizeof(cfg->nat_ip),
	         &o)) == -1)
		return -1;
	if (r == 1 && cfg->nat_ip[0] != '\0' &&
	    addr_from_ip_port(cfg->nat_ip, 1, &ss, &sl) == -1)
		return perr(p, o.s, o.path,
		    "must be an IPv4 or IPv6 address literal or \"\"");
	return 0;
}

static const char *const middle_opts[] = { "min_links", "clients_per_link",
	"ping_interval", "ping_timeout", "client_queue_max",
	"client_queue_timeout", "link_queue_max", "fallback_direct",
	"pool_idle_timeout", NULL };

static int
parse_middle(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	struct opt o;
	long long v;
	int r;

	if (check_known(p, g, path, middle_opts) == -1 ||
	    opt_intf(p, g, path, "min_links", 0, INT_MAX,
	        &cfg->middle_min_links) == -1 ||
	    opt_intf(p, g, path, "clients_per_link", 1, INT_MAX,
	        &cfg->middle_clients_per_link) == -1 ||
	    opt_intf(p, g, path, "ping_interval", 1, INT_MAX,
	        &cfg->middle_ping_interval) == -1 ||
	    opt_intf(p, g, path, "ping_timeout", 1, INT_MAX,
	        &cfg->middle_ping_timeout) == -1 ||
	    opt_intf(p, g, path, "client_queue_timeout", 1, INT_MAX,
	        &cfg->middle_client_queue_timeout) == -1 ||
	    opt_bool(p, g, path, "fallback_direct",
	        &cfg->middle_fallback_direct) == -1 ||
	    opt_intf(p, g, path, "pool_idle_timeout", 0, INT_MAX,
	        &cfg->middle_pool_idle_timeout) == -1)
		return -1;
	/* A timeout within one ping interval would replace healthy links. */
	if (cfg->middle_ping_timeout <= cfg->middle_ping_interval) {
		if (!lookup(g, path, "ping_timeout", &o))
			lookup(g, path, "ping_interval", &o);
		return perr(p, o.s, o.path,
		    "ping_timeout (%d) must be larger "
		    "than ping_interval (%d)",
		    cfg->middle_ping_timeout, cfg->middle_ping_interval);
	}
	if ((r = opt_int(p, g, path, "client_queue_max", MIN_MIDDLE_QUEUE,
	         INT_MAX, &v, &o)) == -1)
		return -1;
	if (r == 1)
		cfg->middle_client_queue_max = (size_t)v;
	if ((r = opt_int(p, g, path, "link_queue_max", MIN_MIDDLE_QUEUE,
	         INT_MAX, &v, &o)) == -1)
		return -1;
	if (r == 1)
		cfg->middle_link_queue_max = (size_t)v;
	return 0;
}

/*
 * An array of strings into dst (at most max, each below width): 1 if
 * present, 0 if absent, -1 on error; each one checked by ok (NULL: any
 * non-empty string), whose complaint is what.
 */
static int
opt_strings(struct parser *p, const config_setting_t *g, const char *gpath,
    const char *name, char *dst, size_t width, size_t max, size_t *n,
    int (*ok)(const char *), const char *what)
{
	char path[PATH_BUF];
	struct opt o;
	int t, len;

	if (!lookup(g, gpath, name, &o))
		return 0;
	t = config_setting_type(o.s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return perr(p, o.s, o.path,
		    "must be an array of strings, e.g. [ \"...\" ]");
	len = config_setting_length(o.s);
	if ((size_t)len > max)
		return perr(
		    p, o.s, o.path, "too many entries (at most %zu)", max);
	if (len == 0)
		return 1; /* [ ]: the defaults stay */
	*n = 0;
	for (int i = 0; i < len; i++) {
		config_setting_t *e = config_setting_get_elem(o.s, i);
		const char *v;

		join_index(path, o.path, (size_t)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return perr(p, e, path, "must be a string");
		v = config_setting_get_string(e);
		if (strlen(v) >= width)
			return perr(p, e, path,
			    "too long (at most %zu characters)", width - 1);
		if (v[0] == '\0' || (ok != NULL && !ok(v)))
			return perr(p, e, path, "%s", what);
		memcpy(dst + *n * width, v, strlen(v) + 1);
		(*n)++;
	}
	return 1;
}

static int
valid_host_port(const char *v)
{
	char host[CONFIG_DOMAIN_MAX + 1];
	uint16_t port;

	return config_host_port(
	           v, CONFIG_STUN_PORT, host, sizeof(host), &port) == 0;
}

static int
valid_url(const char *v)
{
	return strncmp(v, "https://", 8) == 0 || strncmp(v, "http://", 7) == 0;
}

/* An address literal of one family into dst: 1, 0 if absent, -1. */
static int
opt_ip(struct parser *p, const config_setting_t *g, const char *path,
    const char *name, int family, char *dst, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct opt o;
	int r;

	if ((r = opt_str(p, g, path, name, dst, cap, &o)) != 1)
		return r;
	if (dst[0] != '\0' &&
	    (addr_from_ip_port(dst, 1, &ss, &sl) == -1 ||
	        ss.ss_family != family))
		return perr(p, o.s, o.path, "must be an %s address or \"\"",
		    family == AF_INET ? "IPv4" : "IPv6");
	return 1;
}

static const char *const network_opts[] = { "public_ipv4", "public_ipv6",
	"stun_servers", "ip_urls", "prefer_ipv6", "discover",
	"discover_interval", NULL };

static int
parse_network(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	if (check_known(p, g, path, network_opts) == -1 ||
	    opt_ip(p, g, path, "public_ipv4", AF_INET, cfg->public_ipv4,
	        sizeof(cfg->public_ipv4)) == -1 ||
	    opt_ip(p, g, path, "public_ipv6", AF_INET6, cfg->public_ipv6,
	        sizeof(cfg->public_ipv6)) == -1 ||
	    opt_strings(p, g, path, "stun_servers", cfg->stun_servers[0],
	        sizeof(cfg->stun_servers[0]), CONFIG_MAX_SOURCES,
	        &cfg->nstun_servers, valid_host_port,
	        "must be \"host:port\" (\"[ipv6]:port\" for IPv6)") == -1 ||
	    opt_strings(p, g, path, "ip_urls", cfg->ip_urls[0],
	        sizeof(cfg->ip_urls[0]), CONFIG_MAX_SOURCES, &cfg->nip_urls,
	        valid_url, "must be an http:// or https:// URL") == -1 ||
	    opt_bool(p, g, path, "prefer_ipv6", &cfg->prefer_ipv6) == -1 ||
	    opt_bool(p, g, path, "discover", &cfg->discover) == -1 ||
	    opt_intf(p, g, path, "discover_interval", 10, INT_MAX,
	        &cfg->discover_interval) == -1)
		return -1;
	return 0;
}

/*
 * telegram.nat_ip is an alias of network.public_ipv4 (or _ipv6, by its
 * family); both given and different is an error.
 */
static int
merge_nat_ip(struct parser *p, struct config *cfg, const config_setting_t *root)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char *dst;

	if (cfg->nat_ip[0] == '\0' ||
	    addr_from_ip_port(cfg->nat_ip, 1, &ss, &sl) == -1)
		return 0;
	dst = ss.ss_family == AF_INET ? cfg->public_ipv4 : cfg->public_ipv6;
	if (dst[0] == '\0') {
		snprintf(dst, CONFIG_IP_MAX, "%.45s", cfg->nat_ip);
		return 0;
	}
	if (strcmp(dst, cfg->nat_ip) == 0)
		return 0;
	return perr(p,
	    config_setting_lookup((config_setting_t *)root, "telegram.nat_ip"),
	    "telegram.nat_ip",
	    "\"%s\" differs from network.public_%s \"%s\" (nat_ip is an "
	    "alias: give one of them)",
	    cfg->nat_ip, ss.ss_family == AF_INET ? "ipv4" : "ipv6", dst);
}

/* A group's address (an IP literal) and port (0..65535), for the
 * metrics page and the API. */
static int
opt_listen(struct parser *p, const config_setting_t *g, const char *path,
    char *addr, size_t cap, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct opt o;
	long long v;
	int r;

	if ((r = opt_str(p, g, path, "address", addr, cap, &o)) == -1)
		return -1;
	if (r == 1 && addr_from_ip_port(addr, 1, &ss, &sl) == -1)
		return perr(
		    p, o.s, o.path, "must be an IPv4 or IPv6 address literal");
	if ((r = opt_int(p, g, path, "port", 0, 65535, &v, &o)) == -1)
		return -1;
	if (r == 1)
		*port = (uint16_t)v;
	return 0;
}

static const char *const metrics_opts[] = { "address", "port", "allow",
	"max_user_series", NULL };

static int
parse_metrics(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	if (check_known(p, g, path, metrics_opts) == -1 ||
	    opt_listen(p, g, path, cfg->metrics_address,
	        sizeof(cfg->metrics_address), &cfg->metrics_port) == -1)
		return -1;
	if (opt_intf(p, g, path, "max_user_series", 0, 1000000,
	        &cfg->metrics_max_user_series) == -1)
		return -1;
	/* allow = [ "127.0.0.1/32", "10.0.0.0/8", "::1" ]: who may ask. */
	return opt_cidrs(p, g, path, "allow", cfg->metrics_allow,
	           &cfg->nmetrics_allow) == -1
	    ? -1
	    : 0;
}

static const char *const api_opts[] = { "address", "port", "allow", "token",
	"read_only", "users_file", NULL };

static int
parse_api(struct parser *p, struct config *cfg, const config_setting_t *g,
    const char *path)
{
	struct opt o;
	int r;

	if (check_known(p, g, path, api_opts) == -1 ||
	    opt_listen(p, g, path, cfg->api_address, sizeof(cfg->api_address),
	        &cfg->api_port) == -1)
		return -1;
	if (lookup(g, path, "allow", &o)) {
		cfg->napi_allow = 0;
		if (opt_cidrs(p, g, path, "allow", cfg->api_allow,
		        &cfg->napi_allow) == -1)
			return -1;
	}
	if (opt_str(p, g, path, "token", cfg->api_token, sizeof(cfg->api_token),
	        &o) == -1 ||
	    opt_bool(p, g, path, "read_only", &cfg->api_read_only) == -1)
		return -1;
	if ((r = opt_str(p, g, path, "users_file", cfg->api_users_file,
	         sizeof(cfg->api_users_file), &o)) == -1)
		return -1;
	if (r == 1 && cfg->api_users_file[0] != '\0' &&
	    cfg->api_users_file[0] != '/')
		return perr(p, o.s, o.path, "must be an absolute path or \"\"");
	return 0;
}

static const char *const root_opts[] = { "user", "group", "chroot", "workers",
	"pidfile", "state_dir", "shutdown_timeout", "max_restarts",
	"restart_period", "handshake_timeout", "idle_timeout", "backend", "log",
	"listeners", "replay", "tls", "telegram", "metrics", "middle", "limits",
	"resolv_conf", "network", "access", "api", NULL };

static int
opt_nonempty(struct parser *p, const config_setting_t *g, const char *name,
    char *dst, size_t cap)
{
	struct opt o;
	int r;

	if ((r = opt_str(p, g, "", name, dst, cap, &o)) == 1 && dst[0] == '\0')
		return perr(p, o.s, o.path, "must not be empty");
	return r;
}

static int
parse_workers(struct parser *p, struct config *cfg, const config_setting_t *g)
{
	struct opt o;
	int t;

	if (!lookup(g, "", "workers", &o))
		return 0;
	t = config_setting_type(o.s);
	if (t == CONFIG_TYPE_STRING &&
	    strcmp(config_setting_get_string(o.s), "auto") == 0)
		return 0;
	if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
		long long v = config_setting_get_int64(o.s);
		if (v >= 1 && v <= CONFIG_MAX_WORKERS) {
			cfg->workers = (int)v;
			cfg->workers_auto = 0;
			return 0;
		}
	}
	return perr(p, o.s, o.path,
	    "must be \"auto\" or an integer from 1 "
	    "to %d",
	    CONFIG_MAX_WORKERS);
}

/*
 * Absolute, because the daemon changes directory when it detaches and
 * the workers and the dcpool read the file after start-up.
 */
static int
parse_resolv_conf(
    struct parser *p, struct config *cfg, const config_setting_t *g)
{
	char buf[4096];
	struct opt o;
	int r;

	if ((r = opt_str(p, g, "", "resolv_conf", buf, sizeof(buf), &o)) != 1)
		return r;
	if (buf[0] == '\0')
		return 0;
	if (buf[0] != '/')
		return perr(p, o.s, o.path, "must be an absolute path or \"\"");
	if ((cfg->resolv_conf = strdup(buf)) == NULL)
		return perr(p, o.s, o.path, "out of memory");
	return 0;
}

static int
parse_root(struct parser *p, struct config *cfg, const config_setting_t *root)
{
	char buf[32];
	struct opt o;
	int r, n;

	if (check_known(p, root, "", root_opts) == -1)
		return -1;
	if ((cfg->user_given = opt_nonempty(
	         p, root, "user", cfg->user, sizeof(cfg->user))) == -1 ||
	    (cfg->group_given = opt_nonempty(
	         p, root, "group", cfg->group, sizeof(cfg->group))) == -1 ||
	    opt_str(p, root, "", "chroot", cfg->chroot, sizeof(cfg->chroot),
	        &o) == -1)
		return -1;
	if (cfg->chroot[0] != '\0' && cfg->chroot[0] != '/')
		return perr(p, o.s, o.path, "must be an absolute path or \"\"");
	if (parse_workers(p, cfg, root) == -1 ||
	    opt_nonempty(
	        p, root, "pidfile", cfg->pidfile, sizeof(cfg->pidfile)) == -1 ||
	    opt_nonempty(p, root, "state_dir", cfg->state_dir,
	        sizeof(cfg->state_dir)) == -1 ||
	    opt_intf(p, root, "", "shutdown_timeout", 1, INT_MAX,
	        &cfg->shutdown_timeout) == -1 ||
	    opt_intf(p, root, "", "max_restarts", 0, INT_MAX,
	        &cfg->max_restarts) == -1 ||
	    opt_intf(p, root, "", "restart_period", 1, INT_MAX,
	        &cfg->restart_period) == -1 ||
	    opt_intf(p, root, "", "handshake_timeout", 1, INT_MAX,
	        &cfg->handshake_timeout) == -1 ||
	    opt_intf(p, root, "", "idle_timeout", 1, INT_MAX,
	        &cfg->idle_timeout) == -1)
		return -1;
	if ((r = opt_str(p, root, "", "backend", buf, sizeof(buf), &o)) == -1)
		return -1;
	if (r == 1 && parse_backend(p, &o, buf, &cfg->backend) == -1)
		return -1;
	if (parse_resolv_conf(p, cfg, root) == -1)
		return -1;

	if ((r = opt_group(p, root, "", "limits", &o)) == -1 ||
	    (r == 1 && parse_limits(p, cfg, NULL, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "access", &o)) == -1 ||
	    (r == 1 && parse_access(p, &cfg->access, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "log", &o)) == -1 ||
	    (r == 1 && parse_log(p, cfg, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "replay", &o)) == -1 ||
	    (r == 1 && parse_replay(p, cfg, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "tls", &o)) == -1 ||
	    (r == 1 && parse_tls(p, cfg, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "telegram", &o)) == -1 ||
	    (r == 1 && parse_telegram(p, cfg, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "metrics", &o)) == -1 ||
	    (r == 1 && parse_metrics(p, cfg, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "api", &o)) == -1 ||
	    (r == 1 && parse_api(p, cfg, o.s, o.path) == -1))
		return -1;
	if ((r = opt_group(p, root, "", "network", &o)) == -1 ||
	    (r == 1 && parse_network(p, cfg, o.s, o.path) == -1) ||
	    merge_nat_ip(p, cfg, root) == -1)
		return -1;
	if ((r = opt_group(p, root, "", "middle", &o)) == -1 ||
	    (r == 1 && parse_middle(p, cfg, o.s, o.path) == -1))
		return -1;

	if ((r = opt_list(p, root, "", "listeners", &o)) == -1)
		return -1;
	if (r == 0)
		return 0; /* none: load() adds the built-in listener */
	n = config_setting_length(o.s);
	if (n == 0)
		return perr(
		    p, o.s, o.path, "must contain at least one listener");
	if (n > CONFIG_MAX_LISTENERS)
		return perr(p, o.s, o.path, "too many listeners (at most %d)",
		    CONFIG_MAX_LISTENERS);
	if ((cfg->listeners = calloc((size_t)n, sizeof(*cfg->listeners))) ==
	    NULL)
		return perr(p, o.s, o.path, "out of memory");
	for (int i = 0; i < n; i++) {
		char lpath[PATH_BUF];

		join_index(lpath, o.path, (size_t)i);
		cfg->nlisteners = (size_t)i + 1;
		if (parse_listener(p, cfg, (size_t)i,
		        config_setting_get_elem(o.s, i), lpath) == -1)
			return -1;
	}
	return 0;
}

static int default_listener(struct config *, char *, size_t);

static void
set_defaults(struct config *cfg)
{
	int root = geteuid() == 0;

	snprintf(cfg->user, sizeof(cfg->user), "%s", DEF_USER);
	snprintf(cfg->group, sizeof(cfg->group), "%s", DEF_GROUP);
	cfg->workers = ncpus();
	if (cfg->workers > CONFIG_MAX_WORKERS)
		cfg->workers = CONFIG_MAX_WORKERS;
	cfg->workers_auto = 1;
	snprintf(cfg->pidfile, sizeof(cfg->pidfile), "%s",
	    root ? DEF_PIDFILE_ROOT : DEF_PIDFILE_USER);
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s",
	    root ? DEF_STATE_DIR_ROOT : DEF_STATE_DIR_USER);
	cfg->shutdown_timeout = DEF_SHUTDOWN_TIMEOUT;
	cfg->max_restarts = DEF_MAX_RESTARTS;
	cfg->restart_period = DEF_RESTART_PERIOD;
	cfg->handshake_timeout = DEF_HANDSHAKE_TIMEOUT;
	cfg->idle_timeout = DEF_IDLE_TIMEOUT;
	cfg->backend = BACKEND_AUTO;
	cfg->log_target = LOG_TARGET_STDERR;
	cfg->log_facility = LOG_DAEMON;
	cfg->log_level = LOG_INFO;
	cfg->replay_entries = DEF_REPLAY_ENTRIES;
	cfg->replay_window = DEF_REPLAY_WINDOW;
	cfg->tls_time_skew_past = DEF_TLS_SKEW_PAST;
	cfg->tls_time_skew_future = DEF_TLS_SKEW_FUTURE;
	cfg->tls_cert_len_min = DEF_TLS_CERT_LEN_MIN;
	cfg->tls_cert_len_max = DEF_TLS_CERT_LEN_MAX;
	cfg->tls_profile_learn = 1;
	cfg->tls_profile_refresh = DEF_TLS_PROFILE_REFRESH;
	cfg->tls_hello_delay_site = 1;
	cfg->default_dc = DEF_DEFAULT_DC;
	snprintf(cfg->proxy_secret_url, sizeof(cfg->proxy_secret_url), "%s",
	    DEF_PROXY_SECRET_URL);
	snprintf(cfg->proxy_config_url, sizeof(cfg->proxy_config_url), "%s",
	    DEF_PROXY_CONFIG_URL);
	snprintf(cfg->proxy_config_v6_url, sizeof(cfg->proxy_config_v6_url),
	    "%s", DEF_PROXY_CONFIG_V6_URL);
	cfg->refresh = DEF_REFRESH;
	cfg->connect_timeout = DEF_CONNECT_TIMEOUT;
	snprintf(cfg->metrics_address, sizeof(cfg->metrics_address), "%s",
	    DEF_METRICS_ADDRESS);
	cfg->metrics_port = DEF_METRICS_PORT;
	cfg->discover = 1;
	cfg->discover_interval = DEF_DISCOVER_INTERVAL;
	for (size_t i = 0; i < nitems(def_stun_servers); i++)
		snprintf(cfg->stun_servers[i], sizeof(cfg->stun_servers[i]),
		    "%s", def_stun_servers[i]);
	cfg->nstun_servers = nitems(def_stun_servers);
	for (size_t i = 0; i < nitems(def_ip_urls); i++)
		snprintf(cfg->ip_urls[i], sizeof(cfg->ip_urls[i]), "%s",
		    def_ip_urls[i]);
	cfg->nip_urls = nitems(def_ip_urls);
	cfg->http_timeout = DEF_HTTP_TIMEOUT;
	cfg->middle_min_links = DEF_MIDDLE_MIN_LINKS;
	cfg->middle_clients_per_link = DEF_MIDDLE_CLIENTS_PER_LINK;
	cfg->middle_ping_interval = DEF_MIDDLE_PING_INTERVAL;
	cfg->middle_ping_timeout = DEF_MIDDLE_PING_TIMEOUT;
	cfg->middle_client_queue_max = DEF_MIDDLE_CLIENT_QUEUE_MAX;
	cfg->middle_client_queue_timeout = DEF_MIDDLE_CLIENT_QUEUE_TIMEOUT;
	cfg->middle_link_queue_max = DEF_MIDDLE_LINK_QUEUE_MAX;
	cfg->middle_fallback_direct = 0;
	cfg->middle_pool_idle_timeout = DEF_MIDDLE_POOL_IDLE_TIMEOUT;
	cfg->max_connections = 0;
	cfg->limits = (struct config_limits){ 0, 0, 24, 64 };
	cfg->handshake_memory = DEF_HANDSHAKE_MEMORY;
	cfg->resolv_conf = NULL;
	snprintf(cfg->api_address, sizeof(cfg->api_address), "127.0.0.1");
	cfg->metrics_max_user_series = 1000;
	cfg->napi_allow = cidr_parse("127.0.0.1/32", &cfg->api_allow[0]) == 0;
}

/*
 * The config file's text with each relative @include path made absolute
 * (the file's folder before it). NULL on error (errno).
 */
static char *
with_absolute_includes(FILE *f, const char *path)
{
	char dir[4096], *copy = strdup(path), *line = NULL, *out = NULL;
	size_t cap = 0, outlen = 0;
	FILE *o;

	if (copy == NULL)
		return NULL;
	if (realpath(dirname(copy), dir) == NULL) {
		free(copy);
		return NULL;
	}
	free(copy);
	if ((o = open_memstream(&out, &outlen)) == NULL)
		return NULL;
	while (getline(&line, &cap, f) != -1) {
		char *t = line;
		while (*t == ' ' || *t == '\t')
			t++;
		if (strncmp(t, "@include", 8) == 0) {
			char *q = strchr(t + 8, '"');
			if (q != NULL && q[1] != '/') {
				fwrite(line, 1, (size_t)(q + 1 - line), o);
				fprintf(o, "%s/%s", dir, q + 1);
				continue;
			}
		}
		fputs(line, o);
	}
	free(line);
	if (ferror(f)) {
		fclose(o);
		free(out);
		return NULL;
	}
	if (fclose(o) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Runs libconfig over the text or file, then our checks. */
static struct config *
load(const char *path, const char *text, const char *name, char *err,
    size_t errlen)
{
	struct parser p = { name, err, errlen };
	struct config *cfg;
	config_t lc;
	FILE *f = NULL;
	int ok;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path != NULL && (f = fopen(path, "r")) == NULL) {
		seterr(
		    err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	config_init(&lc);
	char *own = NULL;
	if (path != NULL) {
		/* @include "x" is relative to the including file's folder,
		 * "/x" absolute: libconfig 1.5 would put its include_dir
		 * before both, so the text gets the absolute paths. */
		own = with_absolute_includes(f, path);
		fclose(f);
		if (own == NULL) {
			seterr(err, errlen, "%s: cannot read: %s", path,
			    strerror(errno));
			config_destroy(&lc);
			return NULL;
		}
		text = own;
	}
	ok = config_read_string(&lc, text);
	free(own);
	if (!ok) {
		const char *file = config_error_file(&lc);

		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			seterr(err, errlen, "%s:%d: %s (an @include?)",
			    file ? file : name, config_error_line(&lc),
			    config_error_text(&lc));
		else
			seterr(err, errlen, "%s:%d: %s", file ? file : name,
			    config_error_line(&lc), config_error_text(&lc));
		config_destroy(&lc);
		return NULL;
	}
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
		seterr(err, errlen, "%s: out of memory", name);
		config_destroy(&lc);
		return NULL;
	}
	set_defaults(cfg);
	if (path == NULL || realpath(path, cfg->path) == NULL)
		snprintf(cfg->path, sizeof(cfg->path), "%s", name);
	if (parse_root(&p, cfg, config_root_setting(&lc)) == -1) {
		config_destroy(&lc);
		config_free(cfg);
		return NULL;
	}
	config_destroy(&lc);
	if (cfg->api_users_file[0] == '\0')
		snprintf(cfg->api_users_file, sizeof(cfg->api_users_file),
		    "%.4000s/%s", cfg->state_dir, CONFIG_USERS_FILE);
	/* A file without listeners (like the installed example, where all
	 * is commented out) runs the built-in one, with its secret kept in
	 * the file's state_dir. */
	if (cfg->nlisteners == 0 && default_listener(cfg, err, errlen) == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	return load(path, NULL, path, err, errlen);
}

struct config *
config_load_string(const char *text, const char *name, char *err, size_t errlen)
{
	return load(NULL, text, name ? name : "(string)", err, errlen);
}

/* mkdir -p with mode for the directories it creates. */
static int
mkdirs(const char *dir, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(dir);
	struct stat st;

	if (len == 0 || len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) == -1 && errno != EEXIST)
			return -1;
		if (i < len)
			buf[i] = '/';
	}
	if (stat(dir, &st) == -1)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* 0 read, 1 no such file, -1 error (in err). */
static int
read_secret(const char *path, uint8_t secret[16], char *err, size_t errlen)
{
	char buf[128];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 1;
		seterr(
		    err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		seterr(
		    err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	if (config_parse_secret(buf, secret) == -1) {
		seterr(err, errlen,
		    "%s: must hold 32 hex digits (remove it to "
		    "have a new secret made)",
		    path);
		return -1;
	}
	return 0;
}

/*
 * Made once and kept, so links handed out stay valid across restarts.
 * Written to a temporary file and linked into place, so a reader never
 * sees half a secret and two starting daemons agree on one.
 */
static int
default_secret(const char *dir, uint8_t secret[16], char *err, size_t errlen)
{
	char path[4200], tmp[4200], hex[2 * CONFIG_SECRET_LEN + 2];
	int r, fd;

	if (mkdirs(dir, 0700) == -1) {
		seterr(err, errlen, "%s: cannot create state directory: %s",
		    dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, CONFIG_SECRET_FILE);
	if ((r = read_secret(path, secret, err, errlen)) != 1)
		return r;

	random_bytes(secret, CONFIG_SECRET_LEN);
	hex_encode(secret, CONFIG_SECRET_LEN, hex);
	strcat(hex, "\n");
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, CONFIG_SECRET_FILE);
	if ((fd = mkstemp(tmp)) == -1) {
		seterr(
		    err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		return -1;
	}
	if (fchmod(fd, 0600) == -1 ||
	    write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex) ||
	    fsync(fd) == -1) {
		seterr(
		    err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (link(tmp, path) == 0 || errno == EEXIST)
		unlink(tmp);
	else if (rename(tmp, path) == -1) { /* no hard links here */
		seterr(err, errlen, "%s: cannot create: %s", path,
		    strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* Whoever won the race, the file now holds the secret to use. */
	if ((r = read_secret(path, secret, err, errlen)) == 1) {
		seterr(err, errlen, "%s: vanished after writing it", path);
		return -1;
	}
	return r;
}

/*
 * The built-in listener: fake TLS on 0.0.0.0:443 (8443 when not root),
 * one user whose secret is generated once and kept in state_dir.
 */
static int
default_listener(struct config *cfg, char *err, size_t errlen)
{
	struct config_listener *l;

	if ((cfg->listeners = calloc(1, sizeof(*l))) == NULL) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	cfg->nlisteners = 1;
	l = &cfg->listeners[0];
	snprintf(l->name, sizeof(l->name), "%s", DEF_BUILTIN_NAME);
	snprintf(l->address, sizeof(l->address), "%s", DEF_LISTEN_ADDRESS);
	l->port =
	    geteuid() == 0 ? DEF_BUILTIN_PORT_ROOT : DEF_BUILTIN_PORT_USER;
	if (addr_from_ip_port(l->address, l->port, &l->addr, &l->addrlen) ==
	    -1) {
		seterr(err, errlen, "internal error: default address");
		return -1;
	}
	l->protocols = PROTO_FAKE_TLS;
	snprintf(
	    l->tls_domain, sizeof(l->tls_domain), "%s", DEF_BUILTIN_TLS_DOMAIN);
	snprintf(l->fronting_host, sizeof(l->fronting_host), "%s",
	    DEF_BUILTIN_TLS_DOMAIN);
	l->fronting_port = DEF_FRONTING_PORT;
	l->backend = BACKEND_INHERIT;
	l->shm_index = -1;
	if ((l->users = calloc(1, sizeof(*l->users))) == NULL) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	l->nusers = 1;
	snprintf(
	    l->users[0].name, sizeof(l->users[0].name), "%s", DEF_BUILTIN_NAME);
	l->users[0].enabled = 1;
	l->users[0].unique_ips_window = 600;
	l->users[0].pidx = -1;
	l->limits = (struct config_limits){ 0, 0, 24, 64 };
	return default_secret(cfg->state_dir, l->users[0].secret, err, errlen);
}

struct config *
config_default_in(const char *state_dir, char *err, size_t errlen)
{
	struct config *cfg;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	set_defaults(cfg);
	if (state_dir != NULL) {
		if (state_dir[0] == '\0' ||
		    strlen(state_dir) >= sizeof(cfg->state_dir)) {
			seterr(err, errlen, "state directory: bad path");
			goto fail;
		}
		snprintf(
		    cfg->state_dir, sizeof(cfg->state_dir), "%s", state_dir);
	}
	if (default_listener(cfg, err, errlen) == -1)
		goto fail;
	return cfg;
fail:
	config_free(cfg);
	return NULL;
}

struct config *
config_default(char *err, size_t errlen)
{
	return config_default_in(NULL, err, errlen);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		free(cfg->listeners[i].users);
		acl_free(&cfg->listeners[i].access.allow);
		acl_free(&cfg->listeners[i].access.deny);
	}
	acl_free(&cfg->access.allow);
	acl_free(&cfg->access.deny);
	free(cfg->listeners);
	free(cfg->dcs);
	free(cfg->resolv_conf);
	free(cfg);
}

/*
 * The fields a running worker and dcpool take in place (see
 * config_inplace_only): zeroed in copies, so that what is left must be
 * equal byte for byte. Configs are calloc'd, so padding compares equal.
 * Later issues add their fields here (user limits, access lists, TLS
 * shaping).
 */
static void
mask_inplace_config(struct config *c)
{
	c->log_level = 0;
	c->listeners = NULL; /* compared one by one */
	c->dcs = NULL;
	c->resolv_conf = NULL;
	memset(&c->access, 0, sizeof(c->access)); /* compared apart */
}

static void
mask_inplace_listener(struct config_listener *l)
{
	memset(&l->access, 0, sizeof(l->access)); /* compared apart */
	l->users = NULL;
	l->nusers = 0;
	l->has_ad_tag = 0;
	memset(l->ad_tag, 0, sizeof(l->ad_tag));
	memset(l->tls_domain, 0, sizeof(l->tls_domain));
	memset(l->fronting_host, 0, sizeof(l->fronting_host));
	l->fronting_port = 0;
	l->shm_index = 0; /* assigned by the supervisor */
}

int
config_inplace_only(const struct config *a, const struct config *b)
{
	struct config ca, cb;

	memcpy(&ca, a, sizeof(ca));
	memcpy(&cb, b, sizeof(cb));
	mask_inplace_config(&ca);
	mask_inplace_config(&cb);
	if (memcmp(&ca, &cb, sizeof(ca)) != 0)
		return 0;
	if ((a->resolv_conf == NULL) != (b->resolv_conf == NULL) ||
	    (a->resolv_conf && strcmp(a->resolv_conf, b->resolv_conf) != 0))
		return 0;
	if (a->ndcs != b->ndcs ||
	    (a->ndcs && memcmp(a->dcs, b->dcs, a->ndcs * sizeof(*a->dcs)) != 0))
		return 0;
	/* Access lists: new workers take them (not in the tables). */
	if (!acl_equal(&a->access.allow, &b->access.allow) ||
	    !acl_equal(&a->access.deny, &b->access.deny))
		return 0;
	for (size_t i = 0; i < a->nlisteners; i++)
		if (!acl_equal(&a->listeners[i].access.allow,
		        &b->listeners[i].access.allow) ||
		    !acl_equal(&a->listeners[i].access.deny,
		        &b->listeners[i].access.deny))
			return 0;
	for (size_t i = 0; i < a->nlisteners; i++) {
		struct config_listener la, lb;
		memcpy(&la, &a->listeners[i], sizeof(la));
		memcpy(&lb, &b->listeners[i], sizeof(lb));
		/* Ad tags choose the backend of an "auto" listener: one that
		 * would switch needs new workers. */
		if (config_listener_backend(a, &a->listeners[i]) !=
		    config_listener_backend(b, &b->listeners[i]))
			return 0;
		mask_inplace_listener(&la);
		mask_inplace_listener(&lb);
		if (memcmp(&la, &lb, sizeof(la)) != 0)
			return 0;
	}
	return 1;
}

void
config_fronting_key(const struct config_listener *l, char *out, size_t cap)
{
	snprintf(
	    out, cap, "%s:%u", l->fronting_host, (unsigned)l->fronting_port);
}

int
config_access_denied(const struct config *cfg, const struct config_listener *l,
    const struct sockaddr *sa)
{
	const struct config_access *g = &cfg->access, *la = &l->access;

	if (acl_match(&g->deny, sa) || acl_match(&la->deny, sa))
		return 1;
	if (acl_size(&g->allow) > 0 && !acl_match(&g->allow, sa))
		return 1;
	return acl_size(&la->allow) > 0 && !acl_match(&la->allow, sa);
}

int
config_middle_used(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if (config_listener_backend(cfg, &cfg->listeners[i]) ==
		    BACKEND_MIDDLE)
			return 1;
	return 0;
}

enum backend_mode
config_listener_backend(
    const struct config *cfg, const struct config_listener *l)
{
	enum backend_mode m = l->backend;

	if (m == BACKEND_INHERIT)
		m = cfg->backend;
	if (m == BACKEND_MIDDLE || m == BACKEND_DIRECT)
		return m;
	/* AUTO: an ad tag only works through the middle proxies (B.2.7). */
	if (l->has_ad_tag)
		return BACKEND_MIDDLE;
	for (size_t i = 0; i < l->nusers; i++)
		if (l->users[i].has_ad_tag)
			return BACKEND_MIDDLE;
	return BACKEND_DIRECT;
}

const char *
config_proto_name(unsigned proto_bit)
{
	switch (proto_bit) {
	case PROTO_CLASSIC:
		return "classic";
	case PROTO_SECURE:
		return "secure";
	case PROTO_FAKE_TLS:
		return "fake_tls";
	}
	return "unknown";
}
