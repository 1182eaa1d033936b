/*
 * Access to tests/vectors.json (a copy of shared/spec/vectors/vectors.json)
 * for the unit tests. Paths are dotted: "A2_obfuscated2.cases.0.tag".
 */
#ifndef MTP_TEST_VECTORS_H
#define MTP_TEST_VECTORS_H

#include <stddef.h>
#include <stdint.h>

/* Loads the file once; aborts the test program if it cannot. */
void vec_load(void);
/* The string at path; aborts (test failure) if missing or not a string. */
const char *vec_str(const char *path);
long long vec_int(const char *path);
/* Number of elements of the array at path. */
size_t vec_len(const char *path);
/*
 * The hex string at path decoded into a malloc'd buffer; *len gets its
 * length. Aborts if missing or not hex. Free with free().
 */
uint8_t *vec_hex(const char *path, size_t *len);

#endif
