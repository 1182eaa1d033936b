/*
 * In-place tables (tables.h): one writer, one reader.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "tables.h"
#include "util.h"
#include "wire.h"

static uint32_t
get_u32(struct wire_in *r)
{
	uint32_t v;
	WIRE_GET(r, v);
	return v;
}

static uint64_t
get_u64(struct wire_in *r)
{
	uint64_t v;
	WIRE_GET(r, v);
	return v;
}

static void
put_u32(struct wire_out *w, uint32_t v)
{
	WIRE_PUT(w, v);
}

static void
put_u64(struct wire_out *w, uint64_t v)
{
	WIRE_PUT(w, v);
}

int
tables_encode(const struct config *cfg, uint8_t **out, size_t *len)
{
	struct wire_out w = { 0 };

	wire_put(&w, "MTPT", 4);
	put_u32(&w, TABLES_VERSION);
	put_u32(&w, (uint32_t)cfg->log_level);
	put_u32(&w, (uint32_t)cfg->nlisteners);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		wire_put_str(&w, l->name, CONFIG_NAME_MAX);
		wire_put_str(&w, l->tls_domain, CONFIG_DOMAIN_MAX + 1);
		wire_put_str(&w, l->fronting_host, CONFIG_DOMAIN_MAX + 1);
		put_u32(&w, l->fronting_port);
		put_u32(&w, (uint32_t)l->has_ad_tag);
		wire_put(&w, l->ad_tag, CONFIG_AD_TAG_LEN);
		put_u32(&w, (uint32_t)l->nusers);
		for (size_t u = 0; u < l->nusers; u++) {
			const struct config_user *cu = &l->users[u];
			wire_put_str(&w, cu->name, CONFIG_NAME_MAX);
			wire_put(&w, cu->secret, CONFIG_SECRET_LEN);
			put_u32(&w, (uint32_t)cu->has_ad_tag);
			wire_put(&w, cu->ad_tag, CONFIG_AD_TAG_LEN);
			put_u32(&w, (uint32_t)cu->enabled);
			put_u32(&w, (uint32_t)cu->max_connections);
			put_u32(&w, (uint32_t)cu->max_unique_ips);
			put_u32(&w, (uint32_t)cu->unique_ips_window);
			put_u64(&w, cu->quota);
			put_u32(&w, (uint32_t)cu->quota_period);
			put_u32(&w, (uint32_t)cu->quota_day);
			put_u64(&w, (uint64_t)cu->expires);
			put_u64(&w, cu->rate);
			put_u32(&w, (uint32_t)cu->pidx);
		}
	}
	if (w.bad) {
		free(w.p);
		return -1;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

struct tables *
tables_decode(const uint8_t *blob, size_t len)
{
	struct wire_in r = { blob, len, 0, 0 };
	struct tables *t = calloc(1, sizeof(*t));
	char magic[4];
	uint32_t n;

	if (t == NULL)
		return NULL;
	wire_get(&r, magic, 4);
	if (r.bad || memcmp(magic, "MTPT", 4) != 0 ||
	    get_u32(&r) != TABLES_VERSION)
		goto bad;
	t->log_level = (int32_t)get_u32(&r);
	n = get_u32(&r);
	/* Each listener takes at least 48 bytes: no huge allocation from
	 * a short blob. */
	if (r.bad || n > CONFIG_MAX_LISTENERS || n > (len - r.pos) / 48 + 1)
		goto bad;
	if ((t->l = calloc(n + 1, sizeof(*t->l))) == NULL)
		goto bad;
	t->nl = n;
	for (size_t i = 0; i < n && !r.bad; i++) {
		struct tables_listener *l = &t->l[i];
		wire_get_str(&r, l->name, CONFIG_NAME_MAX);
		wire_get_str(&r, l->tls_domain, CONFIG_DOMAIN_MAX + 1);
		wire_get_str(&r, l->fronting_host, CONFIG_DOMAIN_MAX + 1);
		uint32_t port = get_u32(&r), tag = get_u32(&r);
		wire_get(&r, l->ad_tag, CONFIG_AD_TAG_LEN);
		uint32_t nu = get_u32(&r);
		if (r.bad || port > 65535 || tag > 1 || nu > CONFIG_MAX_USERS ||
		    nu > (len - r.pos) / 40 + 1)
			goto bad;
		l->fronting_port = (uint16_t)port;
		l->has_ad_tag = (int)tag;
		if ((l->users = calloc(nu + 1, sizeof(*l->users))) == NULL)
			goto bad;
		l->nusers = nu;
		for (size_t u = 0; u < nu && !r.bad; u++) {
			struct config_user *cu = &l->users[u];
			wire_get_str(&r, cu->name, CONFIG_NAME_MAX);
			wire_get(&r, cu->secret, CONFIG_SECRET_LEN);
			uint32_t ut = get_u32(&r);
			wire_get(&r, cu->ad_tag, CONFIG_AD_TAG_LEN);
			cu->enabled = (int)get_u32(&r);
			cu->max_connections = (int)get_u32(&r);
			cu->max_unique_ips = (int)get_u32(&r);
			cu->unique_ips_window = (int)get_u32(&r);
			cu->quota = get_u64(&r);
			cu->quota_period = (int)get_u32(&r);
			cu->quota_day = (int)get_u32(&r);
			cu->expires = (int64_t)get_u64(&r);
			cu->rate = get_u64(&r);
			cu->pidx = (int)get_u32(&r);
			if (ut > 1 || (unsigned)cu->enabled > 1 ||
			    cu->max_connections < 0 ||
			    (unsigned)cu->max_unique_ips >
			        CONFIG_MAX_UNIQUE_IPS ||
			    cu->unique_ips_window < 1 ||
			    (unsigned)cu->quota_period > QUOTA_MONTHLY ||
			    cu->quota_day < 0 || cu->quota_day > 31 ||
			    cu->pidx < -1)
				r.bad = 1;
			cu->has_ad_tag = (int)ut;
		}
	}
	if (wire_in_end(&r) == -1)
		goto bad;
	return t;
bad:
	tables_free(t);
	return NULL;
}

struct tables *
tables_from_fd(int fd)
{
	size_t len = 0;
	uint8_t *blob = memfd_read(fd, 64 * 1024 * 1024, &len);
	struct tables *t = blob ? tables_decode(blob, len) : NULL;

	close(fd);
	if (blob) {
		explicit_bzero(blob, len);
		free(blob);
	}
	return t;
}

void
tables_free(struct tables *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nl; i++)
		if (t->l[i].users) {
			explicit_bzero(t->l[i].users,
			    t->l[i].nusers * sizeof(*t->l[i].users));
			free(t->l[i].users);
		}
	free(t->l);
	free(t);
}

struct tables_listener *
tables_find(struct tables *t, const char *name)
{
	for (size_t i = 0; i < t->nl; i++)
		if (strcmp(t->l[i].name, name) == 0)
			return &t->l[i];
	return NULL;
}

void
tables_listener_take(struct config_listener *l, struct tables_listener *tl)
{
	explicit_bzero(l->users, l->nusers * sizeof(*l->users));
	free(l->users);
	l->users = tl->users;
	l->nusers = tl->nusers;
	tl->users = NULL;
	tl->nusers = 0;
	l->has_ad_tag = tl->has_ad_tag;
	memcpy(l->ad_tag, tl->ad_tag, sizeof(l->ad_tag));
}

void
tables_take_users(struct config *cfg, struct tables *t)
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		struct tables_listener *tl = tables_find(t, l->name);

		if (tl != NULL)
			tables_listener_take(l, tl);
	}
}
