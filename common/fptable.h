/*
 * Counts of ClientHello fingerprints (JA3, JA4) by what became of the
 * client, bounded: a table of at most FPTABLE_MAX fingerprints. When it
 * is full a new fingerprint takes the place of the one seen least, whose
 * counts go to "other", so the fingerprints seen most stay (a flood of
 * one-off fingerprints only churns the smallest entry) and the sum of
 * every entry and "other" is what was counted.
 */
#ifndef MTP_FPTABLE_H
#define MTP_FPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define FPTABLE_MAX   100
#define FP_JA3_MAX    32 /* MD5, hex */
#define FP_JA4_MAX    40
#define FPTABLE_OTHER "other"

enum fp_result {
	FP_SERVED, /* a client of ours */
	FP_FRONTED, /* relayed to the fronting site */
	FP_REFUSED, /* unknown SNI dropped or rejected */
	FP_RESULTS
};

struct fp_entry {
	char ja3[FP_JA3_MAX + 1];
	char ja4[FP_JA4_MAX + 1];
	uint64_t n[FP_RESULTS];
};

struct fptable {
	struct fp_entry e[FPTABLE_MAX];
	size_t n, max; /* entries used; capacity (1..FPTABLE_MAX) */
	uint64_t other[FP_RESULTS];
};

/* An empty table of at most max entries (FPTABLE_MAX when 0 or more). */
void fptable_init(struct fptable *, size_t max);
/* Count n clients of one fingerprint (strings cut to their maximum). */
void fptable_add(struct fptable *, const char *ja3, const char *ja4,
    enum fp_result, uint64_t n);
/* Everything in src into dst (src's "other" into dst's). */
void fptable_merge(struct fptable *dst, const struct fptable *src);
/* No entries, no "other". */
void fptable_clear(struct fptable *);
const char *fp_result_name(enum fp_result);

#endif
