/*
 * The session and link images' byte layout (simage.h): one writer, one
 * reader each, on common/wire.h.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "simage.h"
#include "wire.h"

static void
put_ctr(struct wire_out *w, const struct ctr_image *c)
{
	WIRE_PUT(w, c->present);
	wire_put(w, c->key, sizeof(c->key));
	wire_put(w, c->ctr, sizeof(c->ctr));
	WIRE_PUT(w, c->num);
}

static void
put_side(struct wire_out *w, const struct side_image *s)
{
	WIRE_PUT(w, s->eof);
	WIRE_PUT(w, s->shut);
	wire_put_run(w, s->out, s->outlen);
}

/* The blob, or -1 (and nothing to free). */
static int
finish(struct wire_out *w, int ok, uint8_t **out, size_t *len)
{
	if (w->bad || !ok) {
		free(w->p);
		return -1;
	}
	*out = w->p;
	*len = w->len;
	return 0;
}

static void
put_head(struct wire_out *w, const char *magic)
{
	uint32_t version = SESSION_IMAGE_VERSION;

	wire_put(w, magic, 4);
	WIRE_PUT(w, version);
}

/* 0 if the blob starts with magic and this version. */
static int
get_head(struct wire_in *r, const char *magic)
{
	uint8_t m[4];
	uint32_t version;

	wire_get(r, m, sizeof(m));
	WIRE_GET(r, version);
	return r->bad || memcmp(m, magic, 4) != 0 ||
	        version != SESSION_IMAGE_VERSION
	    ? -1
	    : 0;
}

int
session_image_encode(const struct session_image *im, uint8_t **out, size_t *len)
{
	struct wire_out w = { 0 };

	put_head(&w, SESSION_IMAGE_MAGIC);
	wire_put_str(&w, im->listener, SESSION_IMAGE_NAME);
	wire_put_str(&w, im->user, SESSION_IMAGE_NAME);
	WIRE_PUT(&w, im->mode);
	WIRE_PUT(&w, im->flags);
	WIRE_PUT(&w, im->dc);
	WIRE_PUT(&w, im->tag);
	wire_put(&w, im->tls_hdr, sizeof(im->tls_hdr));
	WIRE_PUT(&w, im->tls_hdr_len);
	WIRE_PUT(&w, im->tls_flags);
	WIRE_PUT(&w, im->tls_left);
	WIRE_PUT(&w, im->tls_out_records);
	put_ctr(&w, &im->c_dec);
	put_ctr(&w, &im->s_enc);
	put_ctr(&w, &im->c_enc);
	wire_put(&w, im->peer, sizeof(im->peer));
	wire_put(&w, im->local, sizeof(im->local));
	WIRE_PUT(&w, im->idle_ms);
	put_side(&w, &im->c);
	put_side(&w, &im->s);
	WIRE_PUT(&w, im->conn_id);
	WIRE_PUT(&w, im->link);
	WIRE_PUT(&w, im->mflags);
	WIRE_PUT(&w, im->sent_mark);
	wire_put_run(&w, im->inbuf, im->inlen);
	return finish(&w, im->tls_hdr_len <= sizeof(im->tls_hdr), out, len);
}

static void
get_ctr(struct wire_in *r, struct ctr_image *c)
{
	WIRE_GET(r, c->present);
	wire_get(r, c->key, sizeof(c->key));
	wire_get(r, c->ctr, sizeof(c->ctr));
	WIRE_GET(r, c->num);
	if (c->present > 1 || c->num > 15)
		r->bad = 1;
}

static void
get_side(struct wire_in *r, struct side_image *s)
{
	WIRE_GET(r, s->eof);
	WIRE_GET(r, s->shut);
	s->out = wire_get_run(r, &s->outlen);
	if (s->eof > 1 || s->shut > 1)
		r->bad = 1;
}

int
session_image_decode(const uint8_t *blob, size_t len, struct session_image *im)
{
	struct wire_in r = { blob, len, 0, 0 };

	memset(im, 0, sizeof(*im));
	if (get_head(&r, SESSION_IMAGE_MAGIC) == -1)
		return -1;
	wire_get_str(&r, im->listener, SESSION_IMAGE_NAME);
	wire_get_str(&r, im->user, SESSION_IMAGE_NAME);
	WIRE_GET(&r, im->mode);
	WIRE_GET(&r, im->flags);
	WIRE_GET(&r, im->dc);
	WIRE_GET(&r, im->tag);
	wire_get(&r, im->tls_hdr, sizeof(im->tls_hdr));
	WIRE_GET(&r, im->tls_hdr_len);
	WIRE_GET(&r, im->tls_flags);
	WIRE_GET(&r, im->tls_left);
	WIRE_GET(&r, im->tls_out_records);
	get_ctr(&r, &im->c_dec);
	get_ctr(&r, &im->s_enc);
	get_ctr(&r, &im->c_enc);
	wire_get(&r, im->peer, sizeof(im->peer));
	wire_get(&r, im->local, sizeof(im->local));
	WIRE_GET(&r, im->idle_ms);
	get_side(&r, &im->c);
	get_side(&r, &im->s);
	WIRE_GET(&r, im->conn_id);
	WIRE_GET(&r, im->link);
	WIRE_GET(&r, im->mflags);
	WIRE_GET(&r, im->sent_mark);
	im->inbuf = wire_get_run(&r, &im->inlen);
	if (wire_in_end(&r) == -1 || im->tls_hdr_len > sizeof(im->tls_hdr) ||
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
	struct wire_out w = { 0 };

	put_head(&w, LINK_IMAGE_MAGIC);
	WIRE_PUT(&w, li->id);
	WIRE_PUT(&w, li->dc);
	wire_put(&w, li->keys, sizeof(li->keys));
	wire_put(&w, li->me, sizeof(li->me));
	wire_put_run(&w, li->rbuf, li->rlen);
	WIRE_PUT(&w, li->rdec);
	wire_put_run(&w, li->wq, li->wqlen);
	WIRE_PUT(&w, li->queued_total);
	WIRE_PUT(&w, li->written_total);
	WIRE_PUT(&w, li->nclients);
	WIRE_PUT(&w, li->rx_age_ms);
	WIRE_PUT(&w, li->ping_age_ms);
	return finish(&w, li->rdec <= li->rlen, out, len);
}

int
link_image_decode(const uint8_t *blob, size_t len, struct link_image *li)
{
	struct wire_in r = { blob, len, 0, 0 };

	memset(li, 0, sizeof(*li));
	if (get_head(&r, LINK_IMAGE_MAGIC) == -1)
		return -1;
	WIRE_GET(&r, li->id);
	WIRE_GET(&r, li->dc);
	wire_get(&r, li->keys, sizeof(li->keys));
	wire_get(&r, li->me, sizeof(li->me));
	li->rbuf = wire_get_run(&r, &li->rlen);
	WIRE_GET(&r, li->rdec);
	li->wq = wire_get_run(&r, &li->wqlen);
	WIRE_GET(&r, li->queued_total);
	WIRE_GET(&r, li->written_total);
	WIRE_GET(&r, li->nclients);
	WIRE_GET(&r, li->rx_age_ms);
	WIRE_GET(&r, li->ping_age_ms);
	if (wire_in_end(&r) == -1 || li->rdec > li->rlen ||
	    li->dc < INT16_MIN || li->dc > INT16_MAX ||
	    li->written_total > li->queued_total)
		return -1;
	return 0;
}
