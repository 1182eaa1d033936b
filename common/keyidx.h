/*
 * An index of the items of an array by a key inside each item (a user's
 * name, a user's secret), so that "which item has this key" is one hash
 * probe instead of a walk over every item: duplicate checks of a config
 * with many users, sessions following their user by name on a reload.
 */
#ifndef MTP_KEYIDX_H
#define MTP_KEYIDX_H

#include <stddef.h>
#include <stdint.h>

struct keyidx {
	int32_t *slot; /* item index, -1 empty; mask + 1 slots */
	size_t mask;
	const uint8_t *base; /* item i at base + i * stride */
	size_t stride;
	size_t off; /* the key's offset in an item */
	size_t len; /* its length; 0: a NUL-terminated string */
};

/*
 * An empty index for up to n items of an array. 0, or -1 when out of
 * memory (or n above INT32_MAX).
 */
int keyidx_init(struct keyidx *, size_t n, const void *base, size_t stride,
    size_t off, size_t len);
/*
 * Add item i: -1 when added, else the index of the item already there
 * with the same key (i is then not added).
 */
long keyidx_add(struct keyidx *, size_t i);
/* The index of the item whose key is key, or -1. */
long keyidx_find(const struct keyidx *, const void *key);
void keyidx_free(struct keyidx *);

#endif
