/*
 * Open addressing with linear probing, at most half full. The keys come
 * from the config file (trusted), so a plain FNV-1a hash is enough.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "keyidx.h"

static const uint8_t *
key_of(const struct keyidx *x, size_t i)
{
	return x->base + i * x->stride + x->off;
}

static size_t
key_len(const struct keyidx *x, const uint8_t *k)
{
	return x->len ? x->len : strlen((const char *)k);
}

static uint64_t
hash(const uint8_t *k, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ k[i]) * 0x100000001b3ull;
	return h ^ h >> 29;
}

int
keyidx_init(struct keyidx *x, size_t n, const void *base, size_t stride,
    size_t off, size_t len)
{
	size_t cap = 8;

	memset(x, 0, sizeof(*x));
	if (n > INT32_MAX)
		return -1;
	while (cap < 2 * n)
		cap *= 2;
	if ((x->slot = malloc(cap * sizeof(*x->slot))) == NULL)
		return -1;
	memset(x->slot, 0xff, cap * sizeof(*x->slot));
	x->mask = cap - 1;
	x->base = base;
	x->stride = stride;
	x->off = off;
	x->len = len;
	return 0;
}

/* The slot that holds key k, or the empty one where it would go. */
static size_t
probe(const struct keyidx *x, const uint8_t *k)
{
	size_t len = key_len(x, k);
	size_t s = (size_t)hash(k, len) & x->mask;

	for (;; s = (s + 1) & x->mask) {
		int32_t i = x->slot[s];
		if (i < 0)
			return s;
		const uint8_t *o = key_of(x, (size_t)i);
		if (key_len(x, o) == len && memcmp(o, k, len) == 0)
			return s;
	}
}

long
keyidx_add(struct keyidx *x, size_t i)
{
	size_t s = probe(x, key_of(x, i));

	if (x->slot[s] >= 0)
		return x->slot[s];
	x->slot[s] = (int32_t)i;
	return -1;
}

long
keyidx_find(const struct keyidx *x, const void *key)
{
	if (x->slot == NULL)
		return -1;
	return x->slot[probe(x, key)];
}

void
keyidx_free(struct keyidx *x)
{
	free(x->slot);
	memset(x, 0, sizeof(*x));
}
