/*
 * Blob building and reading (wire.h).
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "wire.h"

void
wire_put(struct wire_out *w, const void *p, size_t n)
{
	if (w->bad || n == 0)
		return;
	if (n > SIZE_MAX / 2 - w->len) {
		w->bad = 1;
		return;
	}
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
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

void
wire_put_run(struct wire_out *w, const void *p, size_t n)
{
	uint32_t l = (uint32_t)n;

	if (n > UINT32_MAX) {
		w->bad = 1;
		return;
	}
	WIRE_PUT(w, l);
	wire_put(w, p, n);
}

void
wire_put_str(struct wire_out *w, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		w->bad = 1; /* no room for its NUL at the other end */
	wire_put_run(w, s, n);
}

void
wire_get(struct wire_in *r, void *p, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = 1;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->p + r->pos, n);
	r->pos += n;
}

const uint8_t *
wire_get_run(struct wire_in *r, size_t *n)
{
	uint32_t l;
	const uint8_t *p;

	WIRE_GET(r, l);
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

void
wire_get_str(struct wire_in *r, char *out, size_t cap)
{
	size_t n;
	const uint8_t *p = wire_get_run(r, &n);

	memset(out, 0, cap);
	if (n >= cap || (p && memchr(p, 0, n))) {
		r->bad = 1;
		return;
	}
	if (n)
		memcpy(out, p, n);
}

int
wire_in_end(const struct wire_in *r)
{
	return r->bad || r->pos != r->len ? -1 : 0;
}
