/*
 * The session image's byte layout (simage.h): one writer, one reader.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "simage.h"

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int bad;
};

static void
put(struct wbuf *w, const void *p, size_t n)
{
	if (w->bad)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 512;
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
	if (n)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

#define PUT(w, v) put((w), &(v), sizeof(v))

static void
put_run(struct wbuf *w, const uint8_t *p, size_t n)
{
	uint32_t l = (uint32_t)n;

	if (n > UINT32_MAX) {
		w->bad = 1;
		return;
	}
	PUT(w, l);
	put(w, p, n);
}

static void
put_str(struct wbuf *w, const char *s)
{
	size_t n = strnlen(s, SESSION_IMAGE_NAME);

	if (n == SESSION_IMAGE_NAME)
		w->bad = 1; /* not NUL-terminated */
	put_run(w, (const uint8_t *)s, n);
}

static void
put_ctr(struct wbuf *w, const struct ctr_image *c)
{
	PUT(w, c->present);
	put(w, c->key, sizeof(c->key));
	put(w, c->ctr, sizeof(c->ctr));
	PUT(w, c->num);
}

static void
put_side(struct wbuf *w, const struct side_image *s)
{
	PUT(w, s->eof);
	PUT(w, s->shut);
	put_run(w, s->out, s->outlen);
}

int
session_image_encode(const struct session_image *im, uint8_t **out, size_t *len)
{
	struct wbuf w = { 0 };
	uint32_t version = SESSION_IMAGE_VERSION;

	put(&w, SESSION_IMAGE_MAGIC, 4);
	PUT(&w, version);
	put_str(&w, im->listener);
	put_str(&w, im->user);
	PUT(&w, im->mode);
	PUT(&w, im->flags);
	PUT(&w, im->dc);
	PUT(&w, im->tag);
	put(&w, im->tls_hdr, sizeof(im->tls_hdr));
	PUT(&w, im->tls_hdr_len);
	PUT(&w, im->tls_flags);
	PUT(&w, im->tls_left);
	PUT(&w, im->tls_out_records);
	put_ctr(&w, &im->c_dec);
	put_ctr(&w, &im->s_enc);
	put_ctr(&w, &im->c_enc);
	put(&w, im->peer, sizeof(im->peer));
	put(&w, im->local, sizeof(im->local));
	PUT(&w, im->idle_ms);
	put_side(&w, &im->c);
	put_side(&w, &im->s);
	PUT(&w, im->conn_id);
	PUT(&w, im->link);
	PUT(&w, im->mflags);
	PUT(&w, im->sent_mark);
	put_run(&w, im->inbuf, im->inlen);
	if (w.bad || im->tls_hdr_len > sizeof(im->tls_hdr)) {
		free(w.p);
		return -1;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t len, pos;
	int bad;
};

static void
get(struct rbuf *r, void *p, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = 1;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->p + r->pos, n);
	r->pos += n;
}

#define GET(r, v) get((r), &(v), sizeof(v))

static const uint8_t *
get_run(struct rbuf *r, size_t *n)
{
	uint32_t l;
	const uint8_t *p;

	GET(r, l);
	if (r->bad || l > r->len - r->pos) {
		r->bad = 1;
		*n = 0;
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += l;
	*n = l;
	return l ? p : NULL;
}

static void
get_str(struct rbuf *r, char out[SESSION_IMAGE_NAME])
{
	size_t n;
	const uint8_t *p = get_run(r, &n);

	memset(out, 0, SESSION_IMAGE_NAME);
	if (n >= SESSION_IMAGE_NAME || (p && memchr(p, 0, n))) {
		r->bad = 1;
		return;
	}
	if (n)
		memcpy(out, p, n);
}

static void
get_ctr(struct rbuf *r, struct ctr_image *c)
{
	GET(r, c->present);
	get(r, c->key, sizeof(c->key));
	get(r, c->ctr, sizeof(c->ctr));
	GET(r, c->num);
	if (c->present > 1 || c->num > 15)
		r->bad = 1;
}

static void
get_side(struct rbuf *r, struct side_image *s)
{
	GET(r, s->eof);
	GET(r, s->shut);
	s->out = get_run(r, &s->outlen);
	if (s->eof > 1 || s->shut > 1)
		r->bad = 1;
}

int
session_image_decode(const uint8_t *blob, size_t len, struct session_image *im)
{
	struct rbuf r = { blob, len, 0, 0 };
	uint8_t magic[4];
	uint32_t version;

	memset(im, 0, sizeof(*im));
	get(&r, magic, sizeof(magic));
	GET(&r, version);
	if (r.bad || memcmp(magic, SESSION_IMAGE_MAGIC, 4) != 0 ||
	    version != SESSION_IMAGE_VERSION)
		return -1;
	get_str(&r, im->listener);
	get_str(&r, im->user);
	GET(&r, im->mode);
	GET(&r, im->flags);
	GET(&r, im->dc);
	GET(&r, im->tag);
	get(&r, im->tls_hdr, sizeof(im->tls_hdr));
	GET(&r, im->tls_hdr_len);
	GET(&r, im->tls_flags);
	GET(&r, im->tls_left);
	GET(&r, im->tls_out_records);
	get_ctr(&r, &im->c_dec);
	get_ctr(&r, &im->s_enc);
	get_ctr(&r, &im->c_enc);
	get(&r, im->peer, sizeof(im->peer));
	get(&r, im->local, sizeof(im->local));
	GET(&r, im->idle_ms);
	get_side(&r, &im->c);
	get_side(&r, &im->s);
	GET(&r, im->conn_id);
	GET(&r, im->link);
	GET(&r, im->mflags);
	GET(&r, im->sent_mark);
	im->inbuf = get_run(&r, &im->inlen);
	if (r.bad || r.pos != r.len || im->tls_hdr_len > sizeof(im->tls_hdr) ||
	    im->dc < INT16_MIN || im->dc > INT16_MAX ||
	    (im->flags & ~(uint32_t)(SIMAGE_TLS | SIMAGE_HELLO_SENT)) ||
	    (im->mflags &
	        ~(uint32_t)(SIMAGE_M_HAD_LINK | SIMAGE_M_CONN_ID_DEAD)))
		return -1;
	return 0;
}

int
link_image_encode(const struct link_image *li, uint8_t **out, size_t *len)
{
	struct wbuf w = { 0 };
	uint32_t version = SESSION_IMAGE_VERSION;

	put(&w, LINK_IMAGE_MAGIC, 4);
	PUT(&w, version);
	PUT(&w, li->id);
	PUT(&w, li->dc);
	put(&w, li->keys, sizeof(li->keys));
	put(&w, li->me, sizeof(li->me));
	put_run(&w, li->rbuf, li->rlen);
	PUT(&w, li->rdec);
	put_run(&w, li->wq, li->wqlen);
	PUT(&w, li->queued_total);
	PUT(&w, li->written_total);
	PUT(&w, li->nclients);
	PUT(&w, li->rx_age_ms);
	PUT(&w, li->ping_age_ms);
	if (w.bad || li->rdec > li->rlen) {
		free(w.p);
		return -1;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

int
link_image_decode(const uint8_t *blob, size_t len, struct link_image *li)
{
	struct rbuf r = { blob, len, 0, 0 };
	uint8_t magic[4];
	uint32_t version;

	memset(li, 0, sizeof(*li));
	get(&r, magic, sizeof(magic));
	GET(&r, version);
	if (r.bad || memcmp(magic, LINK_IMAGE_MAGIC, 4) != 0 ||
	    version != SESSION_IMAGE_VERSION)
		return -1;
	GET(&r, li->id);
	GET(&r, li->dc);
	get(&r, li->keys, sizeof(li->keys));
	get(&r, li->me, sizeof(li->me));
	li->rbuf = get_run(&r, &li->rlen);
	GET(&r, li->rdec);
	li->wq = get_run(&r, &li->wqlen);
	GET(&r, li->queued_total);
	GET(&r, li->written_total);
	GET(&r, li->nclients);
	GET(&r, li->rx_age_ms);
	GET(&r, li->ping_age_ms);
	if (r.bad || r.pos != r.len || li->rdec > li->rlen ||
	    li->dc < INT16_MIN || li->dc > INT16_MAX ||
	    li->written_total > li->queued_total)
		return -1;
	return 0;
}
