/*
 * Building and reading the versioned blobs that mtprotod's processes hand
 * each other (session and link images, in-place tables): host byte
 * order, byte runs and strings as u32 length + bytes. A writer or reader
 * that fails (out of memory, past the end, a bad string) stays failed,
 * so a caller checks once at the end.
 */
#ifndef MTP_WIRE_H
#define MTP_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct wire_out {
	uint8_t *p; /* malloc'd; the caller frees it */
	size_t len, cap;
	int bad;
};

void wire_put(struct wire_out *, const void *, size_t);
#define WIRE_PUT(w, v) wire_put((w), &(v), sizeof(v))
/* u32 length, then the bytes (p may be NULL when n is 0). */
void wire_put_run(struct wire_out *, const void *p, size_t n);
/* A NUL-terminated string that fits in cap bytes with its NUL. */
void wire_put_str(struct wire_out *, const char *s, size_t cap);

struct wire_in {
	const uint8_t *p;
	size_t len, pos;
	int bad;
};

/* Copies n bytes (zeros once failed). */
void wire_get(struct wire_in *, void *, size_t);
#define WIRE_GET(r, v) wire_get((r), &(v), sizeof(v))
/* A run: a pointer into the blob (NULL when empty) and its length. */
const uint8_t *wire_get_run(struct wire_in *, size_t *n);
/* A string without NULs that fits in cap bytes with its NUL. */
void wire_get_str(struct wire_in *, char *out, size_t cap);
/* 0 if everything read was there and nothing is left, else -1. */
int wire_in_end(const struct wire_in *);

#endif
