/*
 * ClientHello fingerprints (JA3, JA4; issue 9): each fake-TLS ClientHello
 * is fingerprinted and logged at debug level, and counted by what became
 * of it in a bounded table (fptable.h) that goes to the dcpool every
 * FP_FLUSH_S seconds for its metrics. The same timer keeps the worker's
 * open-descriptor gauge (M_OPEN_FDS).
 */
#ifndef MTP_FPCOUNT_H
#define MTP_FPCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "fingerprint.h"
#include "fptable.h"

struct fp_print {
	char ja3[TLS_JA3_LEN + 1];
	char ja4[TLS_JA4_LEN + 1];
};

void fp_init(void);
/* The fingerprints of a ClientHello record ("?" when it cannot be
 * fingerprinted). */
void fp_compute(const uint8_t *rec, size_t len, struct fp_print *);
/* One client of this fingerprint, and what became of it. */
void fp_count(const struct fp_print *, enum fp_result);
/* What is counted and not sent yet, to the dcpool now (at exit). */
void fp_flush(void);

#endif
