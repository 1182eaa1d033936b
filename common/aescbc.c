/*
 * AES-256-CBC encryption of independent chains side by side, with AES-NI
 * (aescbc.h says why). The key schedule and the rounds are FIPS-197's,
 * as the AES-NI instructions implement them; tests/unit/check_aescbc.c
 * compares every lane count and uneven lengths with OpenSSL.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "aescbc.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AESNI __attribute__((target("aes,sse2")))

int
aescbc_available(void)
{
	return getenv("MTPROTOD_NO_AESNI") == NULL &&
	    __builtin_cpu_supports("aes");
}

/* Words of the previous round key, each XORed into the next (FIPS-197
 * 5.2), and the SubWord/RotWord part from aeskeygenassist in t. */
static AESNI __m128i
expand_step(__m128i k, __m128i t)
{
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	return _mm_xor_si128(k, t);
}

/* Round keys 2i and 2i+1 from 2i-2 and 2i-1 (aeskeygenassist needs the
 * round constant as an immediate, hence a macro). */
#define EXPAND_PAIR(rk, i, rcon) \
	do { \
		rk[2 * (i)] = expand_step(rk[2 * (i)-2], \
		    _mm_shuffle_epi32( \
		        _mm_aeskeygenassist_si128(rk[2 * (i)-1], rcon), \
		        0xff)); \
		if (2 * (i) + 1 < 15) \
			rk[2 * (i) + 1] = expand_step(rk[2 * (i)-1], \
			    _mm_shuffle_epi32( \
			        _mm_aeskeygenassist_si128(rk[2 * (i)], 0), \
			        0xaa)); \
	} while (0)

AESNI void
aescbc_key_init(struct aescbc_key *k, const uint8_t key[32])
{
	__m128i rk[15];

	rk[0] = _mm_loadu_si128((const __m128i *)key);
	rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
	EXPAND_PAIR(rk, 1, 0x01);
	EXPAND_PAIR(rk, 2, 0x02);
	EXPAND_PAIR(rk, 3, 0x04);
	EXPAND_PAIR(rk, 4, 0x08);
	EXPAND_PAIR(rk, 5, 0x10);
	EXPAND_PAIR(rk, 6, 0x20);
	EXPAND_PAIR(rk, 7, 0x40);
	for (int i = 0; i < 15; i++)
		_mm_storeu_si128((__m128i *)k->rk[i], rk[i]);
}

/*
 * blocks blocks of each of the n chains j[0..n), round by round across
 * the chains, so that their aesenc instructions overlap. n is a constant
 * in each caller below: the loops unroll and the states stay in
 * registers.
 */
static inline __attribute__((always_inline)) AESNI void
run(struct aescbc_job **j, size_t blocks, const int n)
{
	__m128i s[AESCBC_LANES];
	const uint8_t(*k[AESCBC_LANES])[16];
	uint8_t *p[AESCBC_LANES];

#pragma GCC unroll 8
	for (int i = 0; i < n; i++) {
		s[i] = _mm_loadu_si128((const __m128i *)j[i]->iv);
		k[i] = j[i]->key->rk;
		p[i] = j[i]->buf;
	}
	for (size_t b = 0; b < blocks; b++) {
#pragma GCC unroll 8
		for (int i = 0; i < n; i++)
			s[i] = _mm_xor_si128(
			    _mm_xor_si128(s[i],
			        _mm_loadu_si128(
			            (const __m128i *)(p[i] + 16 * b))),
			    _mm_loadu_si128((const __m128i *)k[i][0]));
#pragma GCC unroll 13
		for (int r = 1; r < 14; r++)
#pragma GCC unroll 8
			for (int i = 0; i < n; i++)
				s[i] = _mm_aesenc_si128(s[i],
				    _mm_loadu_si128((const __m128i *)k[i][r]));
#pragma GCC unroll 8
		for (int i = 0; i < n; i++) {
			s[i] = _mm_aesenclast_si128(
			    s[i], _mm_loadu_si128((const __m128i *)k[i][14]));
			_mm_storeu_si128((__m128i *)(p[i] + 16 * b), s[i]);
		}
	}
#pragma GCC unroll 8
	for (int i = 0; i < n; i++) {
		_mm_storeu_si128((__m128i *)j[i]->iv, s[i]);
		j[i]->buf += 16 * blocks;
		j[i]->len -= 16 * blocks;
	}
}

#define RUN_N(n) \
	static AESNI void run##n(struct aescbc_job **j, size_t blocks) \
	{ \
		run(j, blocks, n); \
	}
RUN_N(1)
RUN_N(2)
RUN_N(3)
RUN_N(4)
RUN_N(5)
RUN_N(6)
RUN_N(7)
RUN_N(8)

static void (*const runs[AESCBC_LANES + 1])(struct aescbc_job **,
    size_t) = { NULL, run1, run2, run3, run4, run5, run6, run7, run8 };

void
aescbc_encrypt(struct aescbc_job *jobs, size_t n)
{
	struct aescbc_job *act[AESCBC_LANES];
	size_t na = 0, next = 0;

	for (;;) {
		while (na < AESCBC_LANES && next < n) {
			if (jobs[next].len >= 16)
				act[na++] = &jobs[next];
			next++;
		}
		if (na == 0)
			return;
		/* Side by side as long as all of them have blocks left. */
		size_t m = act[0]->len / 16;
		for (size_t i = 1; i < na; i++)
			if (act[i]->len / 16 < m)
				m = act[i]->len / 16;
		runs[na](act, m);
		size_t keep = 0;
		for (size_t i = 0; i < na; i++)
			if (act[i]->len >= 16)
				act[keep++] = act[i];
		na = keep;
	}
}

#else /* no AES-NI here: callers use OpenSSL */

int
aescbc_available(void)
{
	return 0;
}

void
aescbc_key_init(struct aescbc_key *k, const uint8_t key[32])
{
	memset(k, 0, sizeof(*k));
	(void)key;
}

void
aescbc_encrypt(struct aescbc_job *jobs, size_t n)
{
	(void)jobs;
	(void)n;
	abort(); /* aescbc_available() said no */
}

#endif
