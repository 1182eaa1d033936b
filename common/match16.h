/*
 * Trying sixteen users' secrets on one handshake at once, with AVX-512
 * (match.h's scans of every user, for a client with no hint).
 *
 * A first-contact client names no user, so the proxy tries every user's
 * secret until one fits, and a try is hashing: one SHA-256 block and one
 * AES block for obfuscated2 (spec A.2.2), an HMAC-SHA256 of the whole
 * ClientHello for fake TLS (spec A.4.3). One SHA-256 stream cannot keep
 * the CPU busy: each round waits for the one before. Sixteen users in
 * the sixteen 32-bit lanes of a 512-bit register run sixteen streams
 * with the instructions of one (or eight in 256 bits, with AVX2). Only the users differ: the client's part
 * is shared, so its share of the work is done once per handshake.
 *
 * These functions only filter. A lane they report is checked again by
 * match.c's one-user code before anyone is let in, so a candidate that
 * is not right costs one more try and nothing else.
 *
 * OpenSSL has no multi-buffer SHA-256 in its API (its own is internal to
 * its TLS ciphers), hence this code. tests/unit/check_match.c compares
 * it with the one-user code on every lane.
 */
#ifndef MTP_MATCH16_H
#define MTP_MATCH16_H

#include <stddef.h>
#include <stdint.h>

#define MATCH16_LANES 16
/* Below this many users, trying each alone costs less than one group. */
#define MATCH16_MIN_USERS 8

/*
 * How many users the scans below run side by side on this CPU: 16 with
 * AVX-512 (F, BW) and VAES, unless MTPROTOD_NO_AVX512 is set in the
 * environment; else 8 with AVX2 and AES-NI, unless MTPROTOD_NO_AVX2 is
 * set; else 0, and callers try one user at a time. Either way the users
 * are laid out and reported in groups of 16.
 */
int match16_available(void);

/*
 * Users in groups of 16, lane j of group g being user 16 g + j, as the
 * scans read them (made at config load by match_keys_init):
 * - obfuscated2: the secret's 4 big-endian words, [g][word][lane];
 * - fake TLS: the HMAC's saved inner then outer SHA-256 states (match.h),
 *   [g][word 0..15][lane].
 */
#define MATCH16_O2_WORDS  4
#define MATCH16_TLS_WORDS 16

/* Keystream block 3 covers the encrypted tag (spec A.2.1: bytes 56..59). */
#define MATCH16_TAG_BLOCK 3

/* One obfuscated2 header, ready to be tried (no secret in it): also
 * what match.c's one-user tries use. */
struct match16_o2 {
	uint32_t st[8]; /* SHA-256 state after the 8 rounds on the material */
	uint32_t w[8]; /* those rounds' message words */
	uint8_t ctr[16]; /* the counter block of keystream block 3 */
	uint32_t tag; /* the encrypted tag, little-endian */
};

void match16_o2_prepare(struct match16_o2 *, const uint8_t wire[64]);

/*
 * The first group g in [from, ngroups) where a lane's secret decrypts
 * the tag to a valid one, with those lanes' bits in *mask; ngroups when
 * there is none. width: what match16_available() returned (non-zero).
 */
size_t match16_o2_scan(const struct match16_o2 *, const uint32_t *users,
    size_t from, size_t ngroups, int width, unsigned *mask);

/* One ClientHello, ready to be tried. */
struct match16_tls {
	uint32_t (*kw)[64]; /* per block of the message: K[t] + W[t] */
	size_t nblocks;
	uint32_t want[7]; /* the random's 28 checked bytes, big-endian */
};

/*
 * msg: the hello with its random zeroed, len bytes; rnd: its random.
 * 0, or -1 when out of memory.
 */
int match16_tls_prepare(struct match16_tls *, const uint8_t *msg, size_t len,
    const uint8_t rnd[32]);
void match16_tls_free(struct match16_tls *);

/* As match16_o2_scan, for lanes whose HMAC gives the random's 28 bytes. */
size_t match16_tls_scan(const struct match16_tls *, const uint32_t *users,
    size_t from, size_t ngroups, int width, unsigned *mask);

#endif
