/*
 * ClientHello fingerprints: JA3 (Salesforce) and JA4 (FoxIO), from a
 * whole ClientHello record as tls_hello_assemble joins it (a 5-byte
 * record header, then the handshake message). GREASE values are left
 * out, as both definitions say.
 */
#ifndef MTP_FINGERPRINT_H
#define MTP_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#define TLS_JA3_LEN 32 /* MD5, lower-case hex */
#define TLS_JA4_LEN 36 /* t13d1516h2_8daaf6152771_e5627efa2ab1 */

/* 0 with out set, or -1 (out "") when rec is not a well-formed hello. */
int tls_ja3(const uint8_t *rec, size_t len, char out[TLS_JA3_LEN + 1]);
int tls_ja4(const uint8_t *rec, size_t len, char out[TLS_JA4_LEN + 1]);
/* Both from one parse. */
int tls_fingerprints(const uint8_t *rec, size_t len, char ja3[TLS_JA3_LEN + 1],
    char ja4[TLS_JA4_LEN + 1]);

#endif
