/*
 * AES-256-CBC encryption of several independent chains at once.
 *
 * CBC encryption is serial within a chain: each block waits for the one
 * before, so one chain uses a fraction of what the CPU's AES units can
 * do (the aesenc instruction takes about 4 cycles and can start one or
 * two every cycle). A worker's middle-proxy links are independent
 * chains: encrypting what each has queued side by side, round by round,
 * costs little more than one of them alone. This module does that with
 * the AES-NI instructions (checked at run time); without them the caller
 * uses OpenSSL, one chain at a time (crypto.h).
 *
 * Only encryption: decryption in CBC is parallel within a chain already
 * and OpenSSL does it at full speed.
 */
#ifndef MTP_AESCBC_H
#define MTP_AESCBC_H

#include <stddef.h>
#include <stdint.h>

/* Most chains run side by side; more are taken in turns. */
#define AESCBC_LANES 8

/* An expanded AES-256 encryption key (15 round keys). */
struct aescbc_key {
	uint8_t rk[15][16];
};

/* 1 if this CPU has AES-NI (and MTPROTOD_NO_AESNI is not set). */
int aescbc_available(void);
/* Expand key; only when aescbc_available(). */
void aescbc_key_init(struct aescbc_key *, const uint8_t key[32]);

/*
 * One chain's work: encrypt len bytes (a multiple of 16) at buf in
 * place, starting from iv, which is left holding the last ciphertext
 * block (the next call's IV).
 */
struct aescbc_job {
	const struct aescbc_key *key;
	uint8_t *iv;
	uint8_t *buf;
	size_t len;
};

/* Runs the n jobs, side by side; no two may share an iv or a buf. */
void aescbc_encrypt(struct aescbc_job *, size_t n);

#endif
