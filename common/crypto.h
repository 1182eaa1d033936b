/*
 * Thin wrappers over OpenSSL for what the protocol needs (spec 0):
 * AES-256-CTR and AES-256-CBC streams, hashes, HMAC. Cipher objects are
 * fetched once per process (OpenSSL 3 provider lookups are slow).
 */
#ifndef MTP_CRYPTO_H
#define MTP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

/* A CTR or CBC stream; one per direction for the life of a connection. */
typedef EVP_CIPHER_CTX crypto_stream;

/* AES-256-CTR; the IV is the first counter block (128-bit BE counter). */
crypto_stream *crypto_ctr_new(const uint8_t key[32], const uint8_t iv[16]);
/* AES-256-CBC without padding; enc = 1 encrypts, 0 decrypts. */
crypto_stream *
crypto_cbc_new(const uint8_t key[32], const uint8_t iv[16], int enc);
/*
 * Transform len bytes in place (out may equal in). For CBC, len must be a
 * multiple of 16. Returns 0, or -1 on an OpenSSL error.
 */
int crypto_stream_apply(
    crypto_stream *, const uint8_t *in, uint8_t *out, size_t len);
void crypto_stream_free(crypto_stream *);
/*
 * Where a CTR stream stands, to continue it in another process (session
 * handoff): the counter block in use and the bytes of its keystream
 * already used (0..15). 0, or -1 on an OpenSSL error.
 */
int crypto_ctr_export(crypto_stream *, uint8_t ctr[16], uint32_t *num);
/* A CTR stream with key that continues from crypto_ctr_export's state;
 * NULL on an OpenSSL error or num > 15. */
crypto_stream *
crypto_ctr_resume(const uint8_t key[32], const uint8_t ctr[16], uint32_t num);

void crypto_sha256(
    const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);
void crypto_md5(const void *in, size_t len, uint8_t out[16]);
void crypto_sha1(const void *in, size_t len, uint8_t out[20]);
/* HMAC-SHA256 over the concatenation a || b (b may be NULL). */
void crypto_hmac_sha256(const uint8_t *key, size_t keylen, const void *a,
    size_t alen, const void *b, size_t blen, uint8_t out[32]);
/* Constant-time comparison: 0 if equal. */
int crypto_memcmp(const void *a, const void *b, size_t len);

#endif
