/*
 * The management API's user bodies and the users file (apiuser.h).
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "apiuser.h"
#include "util.h"

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int
valid_user_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= CONFIG_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		        (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
		        *s == '-'))
			return 0;
	return 1;
}

/* A non-negative integer that fits max. */
static int
get_uint(json_t *v, const char *key, uint64_t max, uint64_t *out, char *err,
    size_t errlen)
{
	json_int_t i;

	if (!json_is_integer(v) || (i = json_integer_value(v)) < 0 ||
	    (uint64_t)i > max)
		return fail(err, errlen,
		    "field \"%s\": must be an integer from 0 to %" PRIu64, key,
		    max);
	*out = (uint64_t)i;
	return 0;
}

void
api_user_defaults(struct config_user *u)
{
	memset(u, 0, sizeof(*u));
	u->enabled = 1;
	u->unique_ips_window = 600;
	u->pidx = -1;
}

int
api_user_parse(const char *body, size_t len, enum api_body kind,
    struct api_user_patch *p, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root, *v;
	const char *key;
	uint64_t n = 0, up = 0, down = 0;
	int have_up = 0, have_down = 0, r = -1;

	memset(p, 0, sizeof(*p));
	api_user_defaults(&p->u);
	if (len > API_BODY_MAX)
		return fail(err, errlen, "body over %d bytes", API_BODY_MAX);
	if (len == 0) {
		if (kind == API_BODY_CREATE)
			return fail(err, errlen, "field \"username\" required");
		return 0;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		return fail(err, errlen, "invalid JSON body: %s (at %d:%d)",
		    je.text, je.line, je.column);
	if (!json_is_object(root)) {
		fail(err, errlen, "the body must be a JSON object");
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		int isnull = json_is_null(v);

		if (kind == API_BODY_ROTATE && strcmp(key, "secret") != 0) {
			fail(err, errlen,
			    "unknown field \"%s\" (rotate-secret takes only "
			    "\"secret\")",
			    key);
			goto out;
		}
		if (strcmp(key, "username") == 0) {
			if (kind != API_BODY_CREATE) {
				fail(err, errlen,
				    "field \"username\": the name is in the "
				    "path and cannot change");
				goto out;
			}
			if (!json_is_string(v) ||
			    !valid_user_name(json_string_value(v))) {
				fail(err, errlen,
				    "field \"username\": must be 1 to %d of "
				    "[A-Za-z0-9_.-]",
				    CONFIG_NAME_MAX - 1);
				goto out;
			}
			snprintf(p->u.name, sizeof(p->u.name), "%s",
			    json_string_value(v));
			p->set |= AU_NAME;
		} else if (strcmp(key, "secret") == 0) {
			if (!json_is_string(v) ||
			    config_parse_secret(
			        json_string_value(v), p->u.secret) == -1) {
				fail(err, errlen,
				    "field \"secret\": must be 32 hex digits");
				goto out;
			}
			p->set |= AU_SECRET;
		} else if (strcmp(key, "user_ad_tag") == 0) {
			if (isnull) {
				p->cleared |= AU_AD_TAG;
				continue;
			}
			if (!json_is_string(v) ||
			    config_parse_secret(
			        json_string_value(v), p->u.ad_tag) == -1) {
				fail(err, errlen,
				    "field \"user_ad_tag\": must be 32 hex "
				    "digits or null");
				goto out;
			}
			p->u.has_ad_tag = 1;
			p->set |= AU_AD_TAG;
		} else if (strcmp(key, "max_tcp_conns") == 0) {
			if (isnull) {
				p->cleared |= AU_MAX_CONNS;
				continue;
			}
			if (get_uint(v, key, INT32_MAX, &n, err, errlen) == -1)
				goto out;
			p->u.max_connections = (int)n;
			p->set |= AU_MAX_CONNS;
		} else if (strcmp(key, "max_unique_ips") == 0) {
			if (isnull) {
				p->cleared |= AU_MAX_IPS;
				continue;
			}
			if (get_uint(v, key, CONFIG_MAX_UNIQUE_IPS, &n, err,
			        errlen) == -1)
				goto out;
			p->u.max_unique_ips = (int)n;
			p->set |= AU_MAX_IPS;
		} else if (strcmp(key, "unique_ips_window") == 0) {
			if (isnull) {
				p->cleared |= AU_IPS_WINDOW;
				continue;
			}
			if (get_uint(v, key, 366 * 86400, &n, err, errlen) ==
			        -1 ||
			    (n == 0 &&
			        fail(err, errlen,
			            "field \"unique_ips_window\": must be at "
			            "least 1") == -1))
				goto out;
			p->u.unique_ips_window = (int)n;
			p->set |= AU_IPS_WINDOW;
		} else if (strcmp(key, "data_quota_bytes") == 0) {
			if (isnull) {
				p->cleared |= AU_QUOTA;
				continue;
			}
			if (get_uint(v, key, INT64_MAX, &p->u.quota, err,
			        errlen) == -1)
				goto out;
			p->set |= AU_QUOTA;
		} else if (strcmp(key, "quota_period") == 0) {
			if (isnull) {
				p->cleared |= AU_QUOTA_PERIOD;
				continue;
			}
			if (!json_is_string(v) ||
			    config_parse_quota_period(json_string_value(v),
			        &p->u.quota_period, &p->u.quota_day) != 0) {
				fail(err, errlen,
				    "field \"quota_period\": must be "
				    "\"never\", "
				    "\"daily\", \"monthly\" or \"monthly:DAY\" "
				    "(1 to 31)");
				goto out;
			}
			p->set |= AU_QUOTA_PERIOD;
		} else if (strcmp(key, "expiration_rfc3339") == 0) {
			if (isnull) {
				p->cleared |= AU_EXPIRES;
				continue;
			}
			if (!json_is_string(v) ||
			    config_parse_time(
			        json_string_value(v), &p->u.expires) == -1) {
				fail(err, errlen,
				    "field \"expiration_rfc3339\": must be an "
				    "RFC 3339 time such as "
				    "\"2027-01-31T00:00:00Z\", or null");
				goto out;
			}
			p->set |= AU_EXPIRES;
		} else if (strcmp(key, "rate_limit_up_bps") == 0 ||
		    strcmp(key, "rate_limit_down_bps") == 0) {
			int isup = key[11] == 'u';
			if (isnull) {
				p->cleared |= AU_RATE;
				continue;
			}
			if (get_uint(v, key, INT64_MAX, &n, err, errlen) == -1)
				goto out;
			*(isup ? &up : &down) = n;
			*(isup ? &have_up : &have_down) = 1;
		} else if (strcmp(key, "enabled") == 0) {
			if (isnull) {
				p->cleared |= AU_ENABLED;
				continue;
			}
			if (!json_is_boolean(v)) {
				fail(err, errlen,
				    "field \"enabled\": must be true, false or "
				    "null");
				goto out;
			}
			p->u.enabled = json_is_true(v);
			p->set |= AU_ENABLED;
		} else {
			fail(err, errlen, "unknown field \"%s\"", key);
			goto out;
		}
	}
	/* One rate for both ways (bytes per second); the API speaks bits. */
	if (have_up && have_down && up != down) {
		fail(err, errlen,
		    "fields \"rate_limit_up_bps\" and \"rate_limit_down_bps\" "
		    "differ: mtprotod has one rate for both directions");
		goto out;
	}
	if (have_up || have_down) {
		p->u.rate = (have_up ? up : down) / 8;
		if ((have_up ? up : down) != 0 && p->u.rate == 0)
			p->u.rate = 1;
		p->set |= AU_RATE;
		p->cleared &= ~(unsigned)AU_RATE;
	}
	if (kind == API_BODY_CREATE && !(p->set & AU_NAME)) {
		fail(err, errlen, "field \"username\" required");
		goto out;
	}
	r = 0;
out:
	json_decref(root);
	return r;
}

int
api_op_parse(const char *op, const char *body, size_t len, enum api_body *kind,
    struct api_user_patch *p, char *err, size_t errlen)
{
	*kind = strcmp(op, "create") == 0 ? API_BODY_CREATE
	    : strcmp(op, "rotate") == 0   ? API_BODY_ROTATE
	                                  : API_BODY_PATCH;
	if (*kind == API_BODY_PATCH && strcmp(op, "patch") != 0) {
		memset(p, 0, sizeof(*p));
		return 0;
	}
	return api_user_parse(body, len, *kind, p, err, errlen);
}

void
api_user_apply(struct config_user *u, const struct api_user_patch *p)
{
	struct config_user d;

	api_user_defaults(&d);
#define FIELD(bit, expr_set, expr_clear) \
	do { \
		if (p->set & (bit)) { \
			expr_set; \
		} else if (p->cleared & (bit)) { \
			expr_clear; \
		} \
	} while (0)
	FIELD(AU_SECRET, memcpy(u->secret, p->u.secret, sizeof(u->secret)),
	    (void)0);
	FIELD(AU_AD_TAG,
	    (u->has_ad_tag = 1,
	        memcpy(u->ad_tag, p->u.ad_tag, sizeof(u->ad_tag))),
	    (u->has_ad_tag = 0, memset(u->ad_tag, 0, sizeof(u->ad_tag))));
	FIELD(AU_MAX_CONNS, u->max_connections = p->u.max_connections,
	    u->max_connections = d.max_connections);
	FIELD(AU_MAX_IPS, u->max_unique_ips = p->u.max_unique_ips,
	    u->max_unique_ips = d.max_unique_ips);
	FIELD(AU_IPS_WINDOW, u->unique_ips_window = p->u.unique_ips_window,
	    u->unique_ips_window = d.unique_ips_window);
	FIELD(AU_QUOTA, u->quota = p->u.quota, u->quota = 0);
	FIELD(AU_QUOTA_PERIOD,
	    (u->quota_period = p->u.quota_period,
	        u->quota_day = p->u.quota_day),
	    (u->quota_period = QUOTA_NEVER, u->quota_day = 0));
	FIELD(AU_EXPIRES, u->expires = p->u.expires, u->expires = 0);
	FIELD(AU_RATE, u->rate = p->u.rate, u->rate = 0);
	FIELD(AU_ENABLED, u->enabled = p->u.enabled, u->enabled = 1);
#undef FIELD
}

void
api_time_text(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;

	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

char *
api_users_text(const struct config_user *us, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	fprintf(f,
	    "# Users managed by mtprotod's API (api.users_file): a "
	    "listener takes them\n# with users = ( @include "
	    "\"this file\" ). Written by mtprotod; edit with care.\n");
	for (size_t i = 0; i < n; i++) {
		const struct config_user *u = &us[i];
		char h[33], when[32];

		hex(h, u->secret, 16);
		fprintf(f, "{ name = \"%s\"; secret = \"%s\";", u->name, h);
		if (u->has_ad_tag) {
			hex(h, u->ad_tag, 16);
			fprintf(f, " ad_tag = \"%s\";", h);
		}
		if (!u->enabled)
			fprintf(f, " enabled = false;");
		if (u->max_connections)
			fprintf(
			    f, " max_connections = %d;", u->max_connections);
		if (u->max_unique_ips)
			fprintf(f, " max_unique_ips = %d;", u->max_unique_ips);
		if (u->unique_ips_window != 600)
			fprintf(f, " unique_ips_window = %d;",
			    u->unique_ips_window);
		if (u->quota)
			fprintf(f, " quota = \"%" PRIu64 "\";", u->quota);
		if (u->quota_period == QUOTA_DAILY)
			fprintf(f, " quota_period = \"daily\";");
		else if (u->quota_period == QUOTA_MONTHLY)
			fprintf(
			    f, " quota_period = \"monthly:%d\";", u->quota_day);
		if (u->expires) {
			api_time_text(u->expires, when);
			fprintf(f, " expires = \"%s\";", when);
		}
		if (u->rate)
			fprintf(f, " rate = \"%" PRIu64 "\";", u->rate);
		fprintf(f, " }%s\n", i + 1 < n ? "," : "");
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
