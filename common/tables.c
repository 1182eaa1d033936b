/*
 * In-place tables (tables.h): one writer, one reader.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "tables.h"

struct wb {
	uint8_t *p;
	size_t len, cap;
	int bad;
};

static void
put(struct wb *w, const void *p, size_t n)
{
	if (w->bad)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 1024;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *np = realloc(w->p, cap);
		if (np == NULL) {
			w->bad = 1;
			return;
		}
		w->p = np;
		w->cap = cap;
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void
put_u32(struct wb *w, uint32_t v)
{
	put(w, &v, sizeof(v));
}

static void
put_str(struct wb *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	put_u32(w, (uint32_t)n);
	put(w, s, n);
}

int
tables_encode(const struct config *cfg, uint8_t **out, size_t *len)
{
	struct wb w = { 0 };

	put(&w, "MTPT", 4);
	put_u32(&w, TABLES_VERSION);
	put_u32(&w, (uint32_t)cfg->log_level);
	put_u32(&w, (uint32_t)cfg->nlisteners);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		put_str(&w, l->name, CONFIG_NAME_MAX - 1);
		put_str(&w, l->tls_domain, CONFIG_DOMAIN_MAX);
		put_str(&w, l->fronting_host, CONFIG_DOMAIN_MAX);
		put_u32(&w, l->fronting_port);
		put_u32(&w, (uint32_t)l->has_ad_tag);
		put(&w, l->ad_tag, CONFIG_AD_TAG_LEN);
		put_u32(&w, (uint32_t)l->nusers);
		for (size_t u = 0; u < l->nusers; u++) {
			const struct config_user *cu = &l->users[u];
			put_str(&w, cu->name, CONFIG_NAME_MAX - 1);
			put(&w, cu->secret, CONFIG_SECRET_LEN);
			put_u32(&w, (uint32_t)cu->has_ad_tag);
			put(&w, cu->ad_tag, CONFIG_AD_TAG_LEN);
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

struct rb {
	const uint8_t *p;
	size_t len, pos;
	int bad;
};

static void
get(struct rb *r, void *p, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = 1;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->p + r->pos, n);
	r->pos += n;
}

static uint32_t
get_u32(struct rb *r)
{
	uint32_t v;
	get(r, &v, sizeof(v));
	return v;
}

/* A string of at most max bytes, without NULs, into out[max + 1]. */
static void
get_str(struct rb *r, char *out, size_t max)
{
	uint32_t n = get_u32(r);

	memset(out, 0, max + 1);
	if (r->bad || n > max || n > r->len - r->pos ||
	    memchr(r->p + r->pos, 0, n)) {
		r->bad = 1;
		return;
	}
	memcpy(out, r->p + r->pos, n);
	r->pos += n;
}

struct tables *
tables_decode(const uint8_t *blob, size_t len)
{
	struct rb r = { blob, len, 0, 0 };
	struct tables *t = calloc(1, sizeof(*t));
	char magic[4];
	uint32_t n;

	if (t == NULL)
		return NULL;
	get(&r, magic, 4);
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
		get_str(&r, l->name, CONFIG_NAME_MAX - 1);
		get_str(&r, l->tls_domain, CONFIG_DOMAIN_MAX);
		get_str(&r, l->fronting_host, CONFIG_DOMAIN_MAX);
		uint32_t port = get_u32(&r), tag = get_u32(&r);
		get(&r, l->ad_tag, CONFIG_AD_TAG_LEN);
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
			get_str(&r, cu->name, CONFIG_NAME_MAX - 1);
			get(&r, cu->secret, CONFIG_SECRET_LEN);
			uint32_t ut = get_u32(&r);
			get(&r, cu->ad_tag, CONFIG_AD_TAG_LEN);
			if (ut > 1)
				r.bad = 1;
			cu->has_ad_tag = (int)ut;
		}
	}
	if (r.bad || r.pos != r.len)
		goto bad;
	return t;
bad:
	tables_free(t);
	return NULL;
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
