/*
 * Sixteen users at a time (match16.h). SHA-256 is FIPS 180-4's, AES-256
 * FIPS-197's; what is shared by all users is worked out once per
 * handshake in plain C, the rest per group of 16 in AVX-512 registers.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "match16.h"
#include "o2.h"

/* ------------------------------------------------------------ SHA-256 */

static const uint32_t K256[64] = { 0x428a2f98, 0x71374491, 0xb5c0fbcf,
	0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
	0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7,
	0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
	0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
	0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
	0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
	0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c,
	0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee,
	0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2 };

static const uint32_t IV256[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372,
	0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

static uint32_t
ror(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* The 64 words of one block's message schedule. */
static void
schedule(uint32_t w[64], const uint8_t block[64])
{
	for (int t = 0; t < 16; t++)
		w[t] = be32(block + 4 * t);
	for (int t = 16; t < 64; t++) {
		uint32_t s0 =
		    ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ w[t - 15] >> 3;
		uint32_t s1 =
		    ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ w[t - 2] >> 10;
		w[t] = w[t - 16] + s0 + w[t - 7] + s1;
	}
}

/* Rounds [0, n) of a compression on s, message words w. */
static void
rounds(uint32_t s[8], const uint32_t *w, int n)
{
	uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5],
	         g = s[6], h = s[7];

	for (int t = 0; t < n; t++) {
		uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) +
		    ((e & f) ^ (~e & g)) + K256[t] + w[t];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) +
		    ((a & b) ^ (a & c) ^ (b & c));
		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	s[0] = a;
	s[1] = b;
	s[2] = c;
	s[3] = d;
	s[4] = e;
	s[5] = f;
	s[6] = g;
	s[7] = h;
}

/* ------------------------------------------------------------ per handshake */

/* Keystream block 3 covers the encrypted tag (spec A.2.1: bytes 56..59). */
#define TAG_BLOCK 3

void
match16_o2_prepare(struct match16_o2 *c, const uint8_t wire[64])
{
	unsigned carry = TAG_BLOCK;
	uint32_t w[64];

	/* The key is SHA256(material || secret): one block, whose words
	 * 0..7 are the material and the 8 rounds on them are everyone's. */
	for (int t = 0; t < 8; t++)
		w[t] = c->w[t] = be32(wire + O2_KEY_OFF + 4 * t);
	memcpy(c->st, IV256, sizeof(c->st));
	rounds(c->st, w, 8);
	/* The counter block of keystream block 3 (128-bit big-endian). */
	for (int i = 15; i >= 0; i--) {
		carry += wire[O2_KEY_OFF + O2_KEY_LEN + i];
		c->ctr[i] = carry & 0xff;
		carry >>= 8;
	}
	c->tag = (uint32_t)wire[O2_TAG_OFF] |
	    (uint32_t)wire[O2_TAG_OFF + 1] << 8 |
	    (uint32_t)wire[O2_TAG_OFF + 2] << 16 |
	    (uint32_t)wire[O2_TAG_OFF + 3] << 24;
}

int
match16_tls_prepare(struct match16_tls *c, const uint8_t *msg, size_t len,
    const uint8_t rnd[32])
{
	/* After the key block (64 bytes) the message, 0x80, zeros and the
	 * bit length (FIPS 180-4 5.1.1), in whole blocks. */
	size_t nb = (len + 9 + 63) / 64;
	uint64_t bits = (uint64_t)(64 + len) * 8;
	uint8_t block[64];

	memset(c, 0, sizeof(*c));
	if ((c->kw = calloc(nb, sizeof(*c->kw))) == NULL)
		return -1;
	c->nblocks = nb;
	for (size_t b = 0; b < nb; b++) {
		size_t off = b * 64, have = off < len ? len - off : 0;
		if (have > 64)
			have = 64;
		memset(block, 0, sizeof(block));
		memcpy(block, msg + off, have);
		if (off + have == len && have < 64)
			block[have] = 0x80;
		if (b == nb - 1)
			for (int i = 0; i < 8; i++)
				block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
		schedule(c->kw[b], block);
		for (int t = 0; t < 64; t++)
			c->kw[b][t] += K256[t];
	}
	for (int i = 0; i < 7; i++)
		c->want[i] = be32(rnd + 4 * i);
	return 0;
}

void
match16_tls_free(struct match16_tls *c)
{
	free(c->kw);
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------ AVX-512 */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define V16 __attribute__((target("avx512f,avx512bw,vaes")))

typedef __m512i v16;

/*
 * CPUID leaf 7: AVX512F (EBX bit 16), AVX512BW (EBX bit 30), VAES (ECX
 * bit 9); and the OS saving the opmask and all ZMM state (XCR0 bits 1,
 * 2, 5, 6, 7), without which the instructions fault.
 */
static int
cpu_has_lanes(void)
{
	unsigned a, b, c, d, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & 1u << 27))
		return 0; /* no OSXSAVE: no XGETBV either */
	__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if ((lo & 0xe6) != 0xe6)
		return 0;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (b & 1u << 16) && (b & 1u << 30) && (c & 1u << 9);
}

int
match16_available(void)
{
	static int has = -1;

	if (has == -1)
		has = cpu_has_lanes();
	return has && getenv("MTPROTOD_NO_AVX512") == NULL;
}

#define ADD(a, b)     _mm512_add_epi32(a, b)
#define XOR3(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0x96)
#define ROR(x, n)     _mm512_ror_epi32(x, n)
#define BIG_S0(a)     XOR3(ROR(a, 2), ROR(a, 13), ROR(a, 22))
#define BIG_S1(e)     XOR3(ROR(e, 6), ROR(e, 11), ROR(e, 25))
#define SMALL_S0(x)   XOR3(ROR(x, 7), ROR(x, 18), _mm512_srli_epi32(x, 3))
#define SMALL_S1(x)   XOR3(ROR(x, 17), ROR(x, 19), _mm512_srli_epi32(x, 10))
#define CH(e, f, g)   _mm512_ternarylogic_epi32(e, f, g, 0xca)
#define MAJ(a, b, c)  _mm512_ternarylogic_epi32(a, b, c, 0xe8)

/* One round in sixteen lanes: d and h take their new values (the names
 * of the others move one place from call to call). */
#define RND(a, b, c, d, e, f, g, h, kw) \
	do { \
		v16 t1_ = ADD(ADD(h, BIG_S1(e)), ADD(CH(e, f, g), kw)); \
		d = ADD(d, t1_); \
		h = ADD(t1_, ADD(BIG_S0(a), MAJ(a, b, c))); \
	} while (0)

/* Rounds t..t+7, kw(i) giving round i's K + W. */
#define RND8(s, t, kw) \
	do { \
		RND(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], kw(t)); \
		RND(s[7], s[0], s[1], s[2], s[3], s[4], s[5], s[6], \
		    kw(t + 1)); \
		RND(s[6], s[7], s[0], s[1], s[2], s[3], s[4], s[5], \
		    kw(t + 2)); \
		RND(s[5], s[6], s[7], s[0], s[1], s[2], s[3], s[4], \
		    kw(t + 3)); \
		RND(s[4], s[5], s[6], s[7], s[0], s[1], s[2], s[3], \
		    kw(t + 4)); \
		RND(s[3], s[4], s[5], s[6], s[7], s[0], s[1], s[2], \
		    kw(t + 5)); \
		RND(s[2], s[3], s[4], s[5], s[6], s[7], s[0], s[1], \
		    kw(t + 6)); \
		RND(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[0], \
		    kw(t + 7)); \
	} while (0)

/* Message word t >= 16 in place in the ring w[16]. */
#define SCHED(w, t) \
	(w[(t)&15] = ADD(ADD(w[(t)&15], SMALL_S0(w[((t)-15) & 15])), \
	     ADD(w[((t)-7) & 15], SMALL_S1(w[((t)-2) & 15]))))

/* Rounds 16..63 of a block whose words are per lane, in w. */
static inline __attribute__((always_inline)) V16 void
rounds_lanes(v16 s[8], v16 w[16], int from)
{
#define KW_RING(i)  ADD(w[(i)&15], _mm512_set1_epi32((int)K256[i]))
#define KW_SCHED(i) ADD(SCHED(w, i), _mm512_set1_epi32((int)K256[i]))
	if (from == 0)
		RND8(s, 0, KW_RING);
	RND8(s, 8, KW_RING);
	RND8(s, 16, KW_SCHED);
	RND8(s, 24, KW_SCHED);
	RND8(s, 32, KW_SCHED);
	RND8(s, 40, KW_SCHED);
	RND8(s, 48, KW_SCHED);
	RND8(s, 56, KW_SCHED);
#undef KW_RING
#undef KW_SCHED
}

/* Load words [first, first + 8) of group g's lanes. */
static inline __attribute__((always_inline)) V16 void
load8(v16 s[8], const uint32_t *grp, int first)
{
	for (int i = 0; i < 8; i++)
		s[i] = _mm512_loadu_si512(grp + (first + i) * MATCH16_LANES);
}

/*
 * Within each 128-bit lane, the 4x4 matrix of 32-bit words a[0..3]
 * transposed: out[k] holds, in its lane L, a[0..3] of lane 4 L + k.
 */
static inline __attribute__((always_inline)) V16 void
transpose4(v16 out[4], const v16 a[4])
{
	v16 t0 = _mm512_unpacklo_epi32(a[0], a[1]);
	v16 t1 = _mm512_unpackhi_epi32(a[0], a[1]);
	v16 t2 = _mm512_unpacklo_epi32(a[2], a[3]);
	v16 t3 = _mm512_unpackhi_epi32(a[2], a[3]);

	out[0] = _mm512_unpacklo_epi64(t0, t2);
	out[1] = _mm512_unpackhi_epi64(t0, t2);
	out[2] = _mm512_unpacklo_epi64(t1, t3);
	out[3] = _mm512_unpackhi_epi64(t1, t3);
}

/*
 * AES-256 of the block ctr under the 32-byte keys h[0..7] (SHA-256
 * words, one user per 32-bit lane): the mask of the users whose
 * keystream word at the tag turns the encrypted tag into a valid one.
 */
static inline __attribute__((always_inline)) V16 unsigned
aes_tag16(const v16 h[8], const struct match16_o2 *c)
{
	/* Words to bytes: each SHA-256 word is big-endian in the key. */
	const v16 bswap = _mm512_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6,
	    7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
	    12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14,
	    15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
	/* Round key word 3 in each word: rotated (RotWord) or not. */
	const v16 rot3 = _mm512_set_epi8(12, 15, 14, 13, 12, 15, 14, 13, 12, 15,
	    14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14,
	    13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13,
	    12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12,
	    15, 14, 13);
	const v16 bc3 = _mm512_set_epi8(15, 14, 13, 12, 15, 14, 13, 12, 15, 14,
	    13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13,
	    12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12,
	    15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15, 14, 13, 12, 15,
	    14, 13, 12);
	const v16 zero = _mm512_setzero_si512();
	v16 lo[4], hi[4], ka[4], kb[4], s[4], x[4];
	v16 ctr = _mm512_broadcast_i32x4(_mm_loadu_si128((const void *)c->ctr));
	unsigned mask = 0;

	for (int i = 0; i < 4; i++) {
		x[i] = _mm512_shuffle_epi8(h[i], bswap);
		lo[i] = _mm512_shuffle_epi8(h[4 + i], bswap);
	}
	transpose4(ka, x);
	transpose4(kb, lo);
	for (int k = 0; k < 4; k++)
		s[k] =
		    _mm512_aesenc_epi128(_mm512_xor_si512(ctr, ka[k]), kb[k]);
		/* Round keys 2..14 (FIPS-197 5.2): word 0 is word 0 of two keys
	 * back XOR SubWord(RotWord(last word)) ^ Rcon (even) or
	 * SubWord(last word) (odd); aesenclast on a block of four equal
	 * words is SubWord on each, as ShiftRows moves nothing. */
#pragma GCC unroll 13
	for (int r = 2; r <= 14; r++) {
#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			v16 t = (r & 1) == 0
			    ? _mm512_aesenclast_epi128(
			          _mm512_shuffle_epi8(kb[k], rot3),
			          _mm512_set1_epi32(1 << (r / 2 - 1)))
			    : _mm512_aesenclast_epi128(
			          _mm512_shuffle_epi8(kb[k], bc3), zero);
			v16 y = _mm512_xor_si512(
			    ka[k], _mm512_bslli_epi128(ka[k], 4));
			hi[k] = XOR3(y, _mm512_bslli_epi128(y, 8), t);
			ka[k] = kb[k];
			kb[k] = hi[k];
			s[k] = r < 14 ? _mm512_aesenc_epi128(s[k], hi[k])
			              : _mm512_aesenclast_epi128(s[k], hi[k]);
		}
	}
	/* Keystream word 2 of each block is over the tag (bytes 56..59). */
	const v16 tag = _mm512_set1_epi32((int)c->tag);
	for (int k = 0; k < 4; k++) {
		v16 p = _mm512_xor_si512(s[k], tag);
		__mmask16 m = _mm512_mask_cmpeq_epi32_mask(0x4444, p,
		                  _mm512_set1_epi32((int)O2_TAG_ABRIDGED)) |
		    _mm512_mask_cmpeq_epi32_mask(0x4444, p,
		        _mm512_set1_epi32((int)O2_TAG_INTERMEDIATE)) |
		    _mm512_mask_cmpeq_epi32_mask(
		        0x4444, p, _mm512_set1_epi32((int)O2_TAG_PADDED));
		/* Lane L's bit 4 L + 2 is user 4 L + k. */
		mask |= ((unsigned)m >> 2 & 0x1111u) << k;
	}
	return mask;
}

V16 size_t
match16_o2_scan(const struct match16_o2 *c, const uint32_t *users, size_t from,
    size_t ngroups, unsigned *mask)
{
	v16 st[8], w0[8]; /* everyone's state after round 7, words 0..7 */

	for (int i = 0; i < 8; i++) {
		st[i] = _mm512_set1_epi32((int)c->st[i]);
		w0[i] = _mm512_set1_epi32((int)c->w[i]);
	}
	for (size_t g = from; g < ngroups; g++) {
		const uint32_t *grp =
		    users + g * MATCH16_O2_WORDS * MATCH16_LANES;
		v16 s[8], w[16];

		for (int i = 0; i < 8; i++) {
			s[i] = st[i];
			w[i] = w0[i];
		}
		for (int i = 0; i < MATCH16_O2_WORDS; i++)
			w[8 + i] = _mm512_loadu_si512(grp + i * MATCH16_LANES);
		/* Then the padding of a 48-byte message. */
		w[12] = _mm512_set1_epi32((int)0x80000000u);
		w[13] = w[14] = _mm512_setzero_si512();
		w[15] = _mm512_set1_epi32(48 * 8);
		rounds_lanes(s, w, 8);
		for (int i = 0; i < 8; i++)
			s[i] = ADD(s[i], _mm512_set1_epi32((int)IV256[i]));
		unsigned m = aes_tag16(s, c);
		if (m != 0) {
			*mask = m;
			return g;
		}
	}
	return ngroups;
}

V16 size_t
match16_tls_scan(const struct match16_tls *c, const uint32_t *users,
    size_t from, size_t ngroups, unsigned *mask)
{
	for (size_t g = from; g < ngroups; g++) {
		const uint32_t *grp =
		    users + g * MATCH16_TLS_WORDS * MATCH16_LANES;
		v16 s[8], s0[8], w[16];

		/* Inner hash: from the key block's state, the hello's
		 * blocks, whose words are everyone's. */
		load8(s, grp, 0);
		for (size_t b = 0; b < c->nblocks; b++) {
			const uint32_t *kw = c->kw[b];
			for (int i = 0; i < 8; i++)
				s0[i] = s[i];
#define KW_BCAST(i) _mm512_set1_epi32((int)kw[i])
			RND8(s, 0, KW_BCAST);
			RND8(s, 8, KW_BCAST);
			RND8(s, 16, KW_BCAST);
			RND8(s, 24, KW_BCAST);
			RND8(s, 32, KW_BCAST);
			RND8(s, 40, KW_BCAST);
			RND8(s, 48, KW_BCAST);
			RND8(s, 56, KW_BCAST);
#undef KW_BCAST
			for (int i = 0; i < 8; i++)
				s[i] = ADD(s[i], s0[i]);
		}
		/* Outer hash: the inner digest, padded, from the opad
		 * block's state. */
		for (int i = 0; i < 8; i++)
			w[i] = s[i];
		w[8] = _mm512_set1_epi32((int)0x80000000u);
		for (int i = 9; i < 15; i++)
			w[i] = _mm512_setzero_si512();
		w[15] = _mm512_set1_epi32((64 + 32) * 8);
		load8(s, grp, 8);
		load8(s0, grp, 8);
		rounds_lanes(s, w, 0);
		__mmask16 m = 0xffff;
		for (int i = 0; i < 7; i++)
			m &= _mm512_cmpeq_epi32_mask(ADD(s[i], s0[i]),
			    _mm512_set1_epi32((int)c->want[i]));
		if (m != 0) {
			*mask = m;
			return g;
		}
	}
	return ngroups;
}

#else /* not x86-64: one user at a time */

int
match16_available(void)
{
	return 0;
}

size_t
match16_o2_scan(const struct match16_o2 *c, const uint32_t *users, size_t from,
    size_t ngroups, unsigned *mask)
{
	(void)c;
	(void)users;
	(void)from;
	(void)mask;
	return ngroups;
}

size_t
match16_tls_scan(const struct match16_tls *c, const uint32_t *users,
    size_t from, size_t ngroups, unsigned *mask)
{
	(void)c;
	(void)users;
	(void)from;
	(void)mask;
	return ngroups;
}

#endif
