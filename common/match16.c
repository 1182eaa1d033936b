/*
 * Sixteen (or eight) users at a time (match16.h). SHA-256 is FIPS
 * 180-4's, AES-256 FIPS-197's; what is shared by all users is worked out
 * once per handshake in plain C, the rest per group of 16 in AVX-512
 * registers, or per half group in AVX2 ones. The SHA-256 rounds are
 * written once, in match16_sha.h, for both.
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

void
match16_o2_prepare(struct match16_o2 *c, const uint8_t wire[64])
{
	unsigned carry = MATCH16_TAG_BLOCK;
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

/* ------------------------------------------------------------ x86-64 */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/*
 * 16 with AVX512F, AVX512BW (CPUID leaf 7 EBX bits 16, 30) and VAES
 * (ECX bit 9), and the OS saving the opmask and ZMM state (XCR0 bits 5,
 * 6, 7); else 8 with AVX2 (leaf 7 EBX bit 5), AVX and AES-NI (leaf 1
 * ECX bits 28, 25) and the OS saving YMM state (XCR0 bits 1, 2); else 0.
 * Without the OS's part the instructions fault.
 */
static int
cpu_lanes(void)
{
	unsigned a, b, c, d, c1, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c1, &d) || !(c1 & 1u << 27))
		return 0; /* no OSXSAVE: no XGETBV either */
	__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	if ((lo & 0xe6) == 0xe6 && (b & 1u << 16) && (b & 1u << 30) &&
	    (c & 1u << 9))
		return 16;
	if ((lo & 0x06) == 0x06 && (b & 1u << 5) && (c1 & 1u << 28) &&
	    (c1 & 1u << 25))
		return 8;
	return 0;
}

int
match16_available(void)
{
	static int cpu = -1;

	if (cpu == -1)
		cpu = cpu_lanes();
	if (cpu == 16 && getenv("MTPROTOD_NO_AVX512") == NULL)
		return 16;
	if (cpu >= 8 && getenv("MTPROTOD_NO_AVX2") == NULL)
		return 8;
	return 0;
}

/* AES-256 round keys 2..14 (FIPS-197 5.2): word 0 is word 0 of the key
 * two back XOR SubWord(RotWord(word 3 of the last)) ^ Rcon (even) or
 * SubWord(word 3 of the last) (odd), then each word XOR the one before.
 * aesenclast on a block of four equal words is SubWord on each, as
 * ShiftRows moves nothing: so the shuffles copy word 3 (rotated or not)
 * into all four. Per 128-bit lane, as the shuffles work. */
#define ROT3_BYTES \
	13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15, 12
#define BC3_BYTES   12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15
#define BSWAP_BYTES 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12

/* ---------------- 16 lanes: AVX-512, VAES */

#define T16 __attribute__((target("avx512f,avx512bw,vaes")))

#define SV               __m512i
#define SV_LANES         16
#define SV_FN(n)         n##_16
#define SV_TARGET        T16
#define SV_SET1(x)       _mm512_set1_epi32((int)(x))
#define SV_LOAD(p)       _mm512_loadu_si512(p)
#define SV_ADD(a, b)     _mm512_add_epi32(a, b)
#define SV_ROR(x, n)     _mm512_ror_epi32(x, n)
#define SV_SHR(x, n)     _mm512_srli_epi32(x, n)
#define SV_XOR3(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0x96)
#define SV_CH(e, f, g)   _mm512_ternarylogic_epi32(e, f, g, 0xca)
#define SV_MAJ(a, b, c)  _mm512_ternarylogic_epi32(a, b, c, 0xe8)
#define SV_EQ(a, b)      ((unsigned)_mm512_cmpeq_epi32_mask(a, b))
#include "match16_sha.h"

/* A 128-bit byte pattern in each of the four lanes. */
#define BYTES4(p) _mm512_broadcast_i32x4(_mm_setr_epi8(p))

/*
 * Within each 128-bit lane, the 4x4 matrix of 32-bit words a[0..3]
 * transposed: out[k] holds, in its lane L, a[0..3] of lane 4 L + k.
 * P: the intrinsics' prefix (_mm512, _mm256).
 */
#define TRANSPOSE4(P, out, a) \
	do { \
		__typeof__(a[0]) t0_ = P##_unpacklo_epi32(a[0], a[1]); \
		__typeof__(a[0]) t1_ = P##_unpackhi_epi32(a[0], a[1]); \
		__typeof__(a[0]) t2_ = P##_unpacklo_epi32(a[2], a[3]); \
		__typeof__(a[0]) t3_ = P##_unpackhi_epi32(a[2], a[3]); \
		out[0] = P##_unpacklo_epi64(t0_, t2_); \
		out[1] = P##_unpackhi_epi64(t0_, t2_); \
		out[2] = P##_unpacklo_epi64(t1_, t3_); \
		out[3] = P##_unpackhi_epi64(t1_, t3_); \
	} while (0)

/*
 * AES-256 of the block ctr under the 32-byte keys h[0..7] (SHA-256
 * words, one user per 32-bit lane), four users per register: the mask
 * of the users whose keystream word at the tag turns the encrypted tag
 * into a valid one.
 */
static inline __attribute__((always_inline)) T16 unsigned
aes_tag_16(const __m512i h[8], const struct match16_o2 *c)
{
	const __m512i bswap = BYTES4(BSWAP_BYTES);
	const __m512i rot3 = BYTES4(ROT3_BYTES), bc3 = BYTES4(BC3_BYTES);
	const __m512i zero = _mm512_setzero_si512();
	const __m512i ctr =
	    _mm512_broadcast_i32x4(_mm_loadu_si128((const void *)c->ctr));
	__m512i lo[4], hi[4], ka[4], kb[4], s[4];
	unsigned mask = 0;

	for (int i = 0; i < 4; i++) {
		lo[i] = _mm512_shuffle_epi8(h[i], bswap);
		hi[i] = _mm512_shuffle_epi8(h[4 + i], bswap);
	}
	TRANSPOSE4(_mm512, ka, lo);
	TRANSPOSE4(_mm512, kb, hi);
	for (int k = 0; k < 4; k++)
		s[k] =
		    _mm512_aesenc_epi128(_mm512_xor_si512(ctr, ka[k]), kb[k]);
#pragma GCC unroll 13
	for (int r = 2; r <= 14; r++) {
#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			__m512i t = (r & 1) == 0
			    ? _mm512_aesenclast_epi128(
			          _mm512_shuffle_epi8(kb[k], rot3),
			          _mm512_set1_epi32(1 << (r / 2 - 1)))
			    : _mm512_aesenclast_epi128(
			          _mm512_shuffle_epi8(kb[k], bc3), zero);
			__m512i y = _mm512_xor_si512(
			    ka[k], _mm512_bslli_epi128(ka[k], 4));
			__m512i n = _mm512_ternarylogic_epi32(
			    y, _mm512_bslli_epi128(y, 8), t, 0x96);
			ka[k] = kb[k];
			kb[k] = n;
			s[k] = r < 14 ? _mm512_aesenc_epi128(s[k], n)
			              : _mm512_aesenclast_epi128(s[k], n);
		}
	}
	/* Keystream word 2 of each block is over the tag (bytes 56..59). */
	const __m512i tag = _mm512_set1_epi32((int)c->tag);
	for (int k = 0; k < 4; k++) {
		__m512i p = _mm512_xor_si512(s[k], tag);
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

static T16 size_t
o2_scan_16(const struct match16_o2 *c, const uint32_t *users, size_t from,
    size_t ngroups, unsigned *mask)
{
	__m512i st[8], w0[8], h[8];

	for (int i = 0; i < 8; i++) {
		st[i] = _mm512_set1_epi32((int)c->st[i]);
		w0[i] = _mm512_set1_epi32((int)c->w[i]);
	}
	for (size_t g = from; g < ngroups; g++) {
		o2_key_16(
		    st, w0, users + g * MATCH16_O2_WORDS * MATCH16_LANES, h);
		unsigned m = aes_tag_16(h, c);
		if (m != 0) {
			*mask = m;
			return g;
		}
	}
	return ngroups;
}

static T16 size_t
tls_scan_16(const struct match16_tls *c, const uint32_t *users, size_t from,
    size_t ngroups, unsigned *mask)
{
	for (size_t g = from; g < ngroups; g++) {
		unsigned m = tls_mask_16(
		    c, users + g * MATCH16_TLS_WORDS * MATCH16_LANES);
		if (m != 0) {
			*mask = m;
			return g;
		}
	}
	return ngroups;
}

/* ---------------- 8 lanes: AVX2, AES-NI */

#define T8 __attribute__((target("avx2,aes")))

#define SV           __m256i
#define SV_LANES     8
#define SV_FN(n)     n##_8
#define SV_TARGET    T8
#define SV_SET1(x)   _mm256_set1_epi32((int)(x))
#define SV_LOAD(p)   _mm256_loadu_si256((const void *)(p))
#define SV_ADD(a, b) _mm256_add_epi32(a, b)
#define SV_ROR(x, n) \
	_mm256_or_si256(_mm256_srli_epi32(x, n), _mm256_slli_epi32(x, 32 - (n)))
#define SV_SHR(x, n)     _mm256_srli_epi32(x, n)
#define SV_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256(a, b), c)
#define SV_CH(e, f, g) \
	_mm256_xor_si256(_mm256_and_si256(_mm256_xor_si256(f, g), e), g)
#define SV_MAJ(a, b, c) \
	_mm256_or_si256(_mm256_and_si256(a, b), \
	    _mm256_and_si256(c, _mm256_or_si256(a, b)))
#define SV_EQ(a, b) \
	((unsigned)_mm256_movemask_ps( \
	    _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b))))
#include "match16_sha.h"

/* As aes_tag_16 for eight users, with AES-NI one block at a time (four
 * users side by side). */
static inline __attribute__((always_inline)) T8 unsigned
aes_tag_8(const __m256i h[8], const struct match16_o2 *c)
{
	const __m256i bswap = _mm256_setr_epi8(BSWAP_BYTES, BSWAP_BYTES);
	const __m128i rot3 = _mm_setr_epi8(ROT3_BYTES);
	const __m128i bc3 = _mm_setr_epi8(BC3_BYTES);
	const __m128i zero = _mm_setzero_si128();
	const __m128i ctr = _mm_loadu_si128((const void *)c->ctr);
	const __m128i tag = _mm_set1_epi32((int)c->tag);
	__m256i lo[4], hi[4], klo[4], khi[4];
	unsigned mask = 0;

	for (int i = 0; i < 4; i++) {
		lo[i] = _mm256_shuffle_epi8(h[i], bswap);
		hi[i] = _mm256_shuffle_epi8(h[4 + i], bswap);
	}
	TRANSPOSE4(_mm256, klo, lo); /* lane L: user 4 L + k */
	TRANSPOSE4(_mm256, khi, hi);
	for (int half = 0; half < 2; half++) {
		__m128i ka[4], kb[4], s[4];
		for (int k = 0; k < 4; k++) {
			ka[k] = half ? _mm256_extracti128_si256(klo[k], 1)
			             : _mm256_castsi256_si128(klo[k]);
			kb[k] = half ? _mm256_extracti128_si256(khi[k], 1)
			             : _mm256_castsi256_si128(khi[k]);
			s[k] =
			    _mm_aesenc_si128(_mm_xor_si128(ctr, ka[k]), kb[k]);
		}
#pragma GCC unroll 13
		for (int r = 2; r <= 14; r++) {
#pragma GCC unroll 4
			for (int k = 0; k < 4; k++) {
				__m128i t = (r & 1) == 0
				    ? _mm_aesenclast_si128(
				          _mm_shuffle_epi8(kb[k], rot3),
				          _mm_set1_epi32(1 << (r / 2 - 1)))
				    : _mm_aesenclast_si128(
				          _mm_shuffle_epi8(kb[k], bc3), zero);
				__m128i y = _mm_xor_si128(
				    ka[k], _mm_slli_si128(ka[k], 4));
				__m128i n = _mm_xor_si128(
				    _mm_xor_si128(y, _mm_slli_si128(y, 8)), t);
				ka[k] = kb[k];
				kb[k] = n;
				s[k] = r < 14 ? _mm_aesenc_si128(s[k], n)
				              : _mm_aesenclast_si128(s[k], n);
			}
		}
		for (int k = 0; k < 4; k++) {
			__m128i p = _mm_xor_si128(s[k], tag);
			__m128i eq = _mm_or_si128(
			    _mm_or_si128(
			        _mm_cmpeq_epi32(
			            p, _mm_set1_epi32((int)O2_TAG_ABRIDGED)),
			        _mm_cmpeq_epi32(p,
			            _mm_set1_epi32((int)O2_TAG_INTERMEDIATE))),
			    _mm_cmpeq_epi32(
			        p, _mm_set1_epi32((int)O2_TAG_PADDED)));
			/* Word 2: the tag. This is user 4 half + k. */
			if (_mm_movemask_ps(_mm_castsi128_ps(eq)) & 4)
				mask |= 1u << (4 * half + k);
		}
	}
	return mask;
}

static T8 size_t
o2_scan_8(const struct match16_o2 *c, const uint32_t *users, size_t from,
    size_t ngroups, unsigned *mask)
{
	__m256i st[8], w0[8], h[8];

	for (int i = 0; i < 8; i++) {
		st[i] = _mm256_set1_epi32((int)c->st[i]);
		w0[i] = _mm256_set1_epi32((int)c->w[i]);
	}
	for (size_t g = from; g < ngroups; g++) {
		const uint32_t *grp =
		    users + g * MATCH16_O2_WORDS * MATCH16_LANES;
		unsigned m = 0;
		for (int half = 0; half < 2; half++) {
			o2_key_8(st, w0, grp + 8 * half, h);
			m |= aes_tag_8(h, c) << 8 * half;
		}
		if (m != 0) {
			*mask = m;
			return g;
		}
	}
	return ngroups;
}

static T8 size_t
tls_scan_8(const struct match16_tls *c, const uint32_t *users, size_t from,
    size_t ngroups, unsigned *mask)
{
	for (size_t g = from; g < ngroups; g++) {
		const uint32_t *grp =
		    users + g * MATCH16_TLS_WORDS * MATCH16_LANES;
		unsigned m = tls_mask_8(c, grp) | tls_mask_8(c, grp + 8) << 8;
		if (m != 0) {
			*mask = m;
			return g;
		}
	}
	return ngroups;
}

/* ---------------- either */

size_t
match16_o2_scan(const struct match16_o2 *c, const uint32_t *users, size_t from,
    size_t ngroups, int width, unsigned *mask)
{
	return width == 16 ? o2_scan_16(c, users, from, ngroups, mask)
	    : width == 8   ? o2_scan_8(c, users, from, ngroups, mask)
	                   : ngroups;
}

size_t
match16_tls_scan(const struct match16_tls *c, const uint32_t *users,
    size_t from, size_t ngroups, int width, unsigned *mask)
{
	return width == 16 ? tls_scan_16(c, users, from, ngroups, mask)
	    : width == 8   ? tls_scan_8(c, users, from, ngroups, mask)
	                   : ngroups;
}

#else /* not x86-64: one user at a time */

int
match16_available(void)
{
	return 0;
}

size_t
match16_o2_scan(const struct match16_o2 *c, const uint32_t *users, size_t from,
    size_t ngroups, int width, unsigned *mask)
{
	(void)c;
	(void)users;
	(void)from;
	(void)width;
	(void)mask;
	return ngroups;
}

size_t
match16_tls_scan(const struct match16_tls *c, const uint32_t *users,
    size_t from, size_t ngroups, int width, unsigned *mask)
{
	(void)c;
	(void)users;
	(void)from;
	(void)width;
	(void)mask;
	return ngroups;
}

#endif
