/*
 * Random points of curve25519's prime-order subgroup (curve.h says why).
 * The field is GF(p), p = 2^255 - 19, in five 51-bit limbs; the curve
 * is v^2 = u^3 + A u^2 + u with A = 486662 (RFC 7748). Not constant
 * time, and need not be: nothing here is secret.
 */
#include "autoconf.h"

#include <string.h>

#include "curve.h"
#include "util.h"

typedef uint64_t fe[5];
typedef unsigned __int128 u128;

#define MASK51 ((UINT64_C(1) << 51) - 1)

static uint64_t
load64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void
store64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Bits 0..254 of s (the top bit is ignored, as X25519 does). */
static void
fe_frombytes(fe h, const uint8_t s[32])
{
	h[0] = load64(s) & MASK51;
	h[1] = (load64(s + 6) >> 3) & MASK51;
	h[2] = (load64(s + 12) >> 6) & MASK51;
	h[3] = (load64(s + 19) >> 1) & MASK51;
	h[4] = (load64(s + 24) >> 12) & MASK51;
}

static void
fe_carry(fe h)
{
	uint64_t c;

	for (int i = 0; i < 4; i++) {
		c = h[i] >> 51;
		h[i] &= MASK51;
		h[i + 1] += c;
	}
	c = h[4] >> 51;
	h[4] &= MASK51;
	h[0] += 19 * c;
	c = h[0] >> 51;
	h[0] &= MASK51;
	h[1] += c;
}

/* The canonical value (0 <= h < p), little-endian. */
static void
fe_tobytes(uint8_t s[32], const fe f)
{
	fe h;
	uint64_t q;

	memcpy(h, f, sizeof(h));
	fe_carry(h);
	fe_carry(h);
	/* q = 1 when h >= p, i.e. h + 19 reaches 2^255. */
	q = (h[0] + 19) >> 51;
	for (int i = 1; i < 5; i++)
		q = (h[i] + q) >> 51;
	h[0] += 19 * q;
	for (int i = 0; i < 4; i++) {
		h[i + 1] += h[i] >> 51;
		h[i] &= MASK51;
	}
	h[4] &= MASK51;
	store64(s, h[0] | h[1] << 51);
	store64(s + 8, h[1] >> 13 | h[2] << 38);
	store64(s + 16, h[2] >> 26 | h[3] << 25);
	store64(s + 24, h[3] >> 39 | h[4] << 12);
}

/* Every result is carried (limbs under 2^52), so that fe_mul's sums of
 * products and its carry times 19 stay within their words. */
static void
fe_add(fe h, const fe f, const fe g)
{
	for (int i = 0; i < 5; i++)
		h[i] = f[i] + g[i];
	fe_carry(h);
}

/* f - g + 2p, so that no limb goes negative (limbs under 2^52). */
static void
fe_sub(fe h, const fe f, const fe g)
{
	h[0] = f[0] + (UINT64_C(0xfffffffffffda) << 1) - g[0];
	for (int i = 1; i < 5; i++)
		h[i] = f[i] + (UINT64_C(0xffffffffffffe) << 1) - g[i];
	fe_carry(h);
}

/* The five 128-bit sums of a product, carried into limbs (2^255 = 19). */
static void
fe_reduce(fe h, u128 r[5])
{
	for (int i = 0; i < 4; i++) {
		r[i + 1] += (uint64_t)(r[i] >> 51);
		h[i] = (uint64_t)r[i] & MASK51;
	}
	h[4] = (uint64_t)r[4] & MASK51;
	h[0] += 19 * (uint64_t)(r[4] >> 51);
	h[1] += h[0] >> 51;
	h[0] &= MASK51;
}

static void
fe_mul(fe h, const fe f, const fe g)
{
	uint64_t g19[5];
	u128 r[5];

	for (int i = 1; i < 5; i++)
		g19[i] = 19 * g[i];
	r[0] = (u128)f[0] * g[0] + (u128)f[1] * g19[4] + (u128)f[2] * g19[3] +
	    (u128)f[3] * g19[2] + (u128)f[4] * g19[1];
	r[1] = (u128)f[0] * g[1] + (u128)f[1] * g[0] + (u128)f[2] * g19[4] +
	    (u128)f[3] * g19[3] + (u128)f[4] * g19[2];
	r[2] = (u128)f[0] * g[2] + (u128)f[1] * g[1] + (u128)f[2] * g[0] +
	    (u128)f[3] * g19[4] + (u128)f[4] * g19[3];
	r[3] = (u128)f[0] * g[3] + (u128)f[1] * g[2] + (u128)f[2] * g[1] +
	    (u128)f[3] * g[0] + (u128)f[4] * g19[4];
	r[4] = (u128)f[0] * g[4] + (u128)f[1] * g[3] + (u128)f[2] * g[2] +
	    (u128)f[3] * g[1] + (u128)f[4] * g[0];
	fe_reduce(h, r);
}

/* fe_mul(h, f, f) with the symmetric products once (15 instead of 25). */
static void
fe_sq(fe h, const fe f)
{
	uint64_t d0 = 2 * f[0], d1 = 2 * f[1], d2 = 2 * f[2], d3 = 2 * f[3];
	uint64_t f3_19 = 19 * f[3], f4_19 = 19 * f[4];
	u128 r[5];

	r[0] = (u128)f[0] * f[0] + (u128)d1 * f4_19 + (u128)d2 * f3_19;
	r[1] = (u128)d0 * f[1] + (u128)d2 * f4_19 + (u128)f[3] * f3_19;
	r[2] = (u128)d0 * f[2] + (u128)f[1] * f[1] + (u128)d3 * f4_19;
	r[3] = (u128)d0 * f[3] + (u128)d1 * f[2] + (u128)f[4] * f4_19;
	r[4] = (u128)d0 * f[4] + (u128)d1 * f[3] + (u128)f[2] * f[2];
	fe_reduce(h, r);
}

static void
fe_sqn(fe h, const fe f, int n)
{
	fe_sq(h, f);
	while (--n > 0)
		fe_sq(h, h);
}

static void
fe_mul_small(fe h, const fe f, uint32_t k)
{
	u128 c = 0;

	for (int i = 0; i < 5; i++) {
		c += (u128)f[i] * k;
		h[i] = (uint64_t)c & MASK51;
		c >>= 51;
	}
	h[0] += 19 * (uint64_t)c;
	fe_carry(h);
}

/* z^(2^250 - 1), and z^11 on the way: the start of both powers below. */
static void
fe_pow250(fe out, fe z11, const fe z)
{
	fe z2, z9, a, b, c, t;

	fe_sq(z2, z);
	fe_sqn(t, z2, 2);
	fe_mul(z9, t, z); /* z^9 */
	fe_mul(z11, z9, z2); /* z^11 */
	fe_sq(t, z11);
	fe_mul(a, t, z9); /* 2^5 - 1 */
	fe_sqn(t, a, 5);
	fe_mul(b, t, a); /* 2^10 - 1 */
	fe_sqn(t, b, 10);
	fe_mul(c, t, b); /* 2^20 - 1 */
	fe_sqn(t, c, 20);
	fe_mul(t, t, c); /* 2^40 - 1 */
	fe_sqn(t, t, 10);
	fe_mul(a, t, b); /* 2^50 - 1 */
	fe_sqn(t, a, 50);
	fe_mul(b, t, a); /* 2^100 - 1 */
	fe_sqn(t, b, 100);
	fe_mul(t, t, b); /* 2^200 - 1 */
	fe_sqn(t, t, 50);
	fe_mul(out, t, a); /* 2^250 - 1 */
}

/* z^(p - 2) = z^(2^255 - 21) = 1/z. */
static void
fe_invert(fe out, const fe z)
{
	fe t, z11;

	fe_pow250(t, z11, z);
	fe_sqn(t, t, 5);
	fe_mul(out, t, z11);
}

/* Euler's criterion: z^((p - 1) / 2) = z^(2^254 - 10) is 1 for a
 * non-zero square. */
static int
fe_is_square(const fe z)
{
	static const uint8_t one[32] = { 1 };
	uint8_t b[32];
	fe t, z11, z2, z6;

	fe_pow250(t, z11, z);
	fe_sqn(t, t, 4);
	fe_sq(z2, z);
	fe_sq(z6, z2);
	fe_mul(z6, z6, z2);
	fe_mul(t, t, z6);
	fe_tobytes(b, t);
	return memcmp(b, one, 32) == 0;
}

void
curve25519_share(uint8_t out[32])
{
	static const uint8_t zero[32];

	for (;;) {
		uint8_t r[32];
		fe u, t, rhs, x, z, a, b, aa, bb, e;

		random_bytes(r, sizeof(r));
		fe_frombytes(u, r);
		/* On the curve: u^3 + A u^2 + u = u (u (u + A) + 1) is a
		 * square (else u is on the twist). */
		memset(t, 0, sizeof(t));
		t[0] = 486662;
		fe_add(t, u, t);
		fe_mul(t, t, u);
		t[0] += 1;
		fe_mul(rhs, t, u);
		if (!fe_is_square(rhs))
			continue;
		/* Times the cofactor: three doublings, X/Z (RFC 7748). */
		memcpy(x, u, sizeof(x));
		memset(z, 0, sizeof(z));
		z[0] = 1;
		for (int i = 0; i < 3; i++) {
			fe_add(a, x, z);
			fe_sq(aa, a);
			fe_sub(b, x, z);
			fe_sq(bb, b);
			fe_sub(e, aa, bb);
			fe_mul(x, aa, bb);
			fe_mul_small(t, e, 121665);
			fe_add(t, t, aa);
			fe_mul(z, e, t);
		}
		fe_tobytes(r, z);
		if (memcmp(r, zero, 32) == 0)
			continue; /* a point of small order: gone */
		fe_invert(z, z);
		fe_mul(x, x, z);
		fe_tobytes(out, x);
		if (memcmp(out, zero, 32) != 0)
			return;
	}
}
