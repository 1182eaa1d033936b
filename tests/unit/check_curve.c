#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "curve.h"

/*
 * curve25519_share() checked with OpenSSL's BIGNUM, independently of
 * its own field code: each point is on the curve (not its twist) and in
 * the prime-order subgroup ([l]P is the identity, by an x-only ladder).
 * The same checks pass for real X25519 public keys and fail for most
 * random curve points (order 8l or 4l), so they can tell.
 */
static BIGNUM *p, *l, *half;
static BN_CTX *bc;

static void
setup(void)
{
	bc = BN_CTX_new();
	p = BN_new();
	l = BN_new();
	half = BN_new();
	BN_set_bit(p, 255);
	BN_sub_word(p, 19);
	BIGNUM *c = NULL;
	BN_dec2bn(&c, "27742317777372353535851937790883648493");
	BN_set_bit(l, 252);
	BN_add(l, l, c);
	BN_free(c);
	BN_sub(half, p, BN_value_one());
	BN_rshift1(half, half);
}

static void
teardown(void)
{
	BN_free(p);
	BN_free(l);
	BN_free(half);
	BN_CTX_free(bc);
}

static BIGNUM *
from_le(const uint8_t u[32])
{
	return BN_lebin2bn(u, 32, NULL);
}

/* u^3 + A u^2 + u is a non-zero square mod p. */
static int
on_curve(const BIGNUM *u)
{
	BIGNUM *t = BN_new(), *r = BN_new();
	BN_set_word(t, 486662);
	BN_mod_add(t, t, u, p, bc);
	BN_mod_mul(t, t, u, p, bc);
	BN_add_word(t, 1);
	BN_mod_mul(t, t, u, p, bc);
	BN_mod_exp(r, t, half, p, bc);
	int ok = BN_is_one(r);
	BN_free(t);
	BN_free(r);
	return ok;
}

/* [k]P is the identity (RFC 7748's ladder, no clamping). */
static int
times_is_identity(const BIGNUM *u, const BIGNUM *k)
{
	BIGNUM *x2 = BN_new(), *z2 = BN_new(), *x3 = BN_dup(u), *z3 = BN_new(),
	       *a = BN_new(), *aa = BN_new(), *b = BN_new(), *bb = BN_new(),
	       *e = BN_new(), *c = BN_new(), *d = BN_new(), *da = BN_new(),
	       *cb = BN_new(), *t = BN_new();
	BN_one(x2);
	BN_zero(z2);
	BN_one(z3);
	int swap = 0;
	for (int i = BN_num_bits(k) - 1; i >= 0; i--) {
		int bit = BN_is_bit_set(k, i);
		if (swap ^ bit) {
			BN_swap(x2, x3);
			BN_swap(z2, z3);
		}
		swap = bit;
		BN_mod_add(a, x2, z2, p, bc);
		BN_mod_sqr(aa, a, p, bc);
		BN_mod_sub(b, x2, z2, p, bc);
		BN_mod_sqr(bb, b, p, bc);
		BN_mod_sub(e, aa, bb, p, bc);
		BN_mod_add(c, x3, z3, p, bc);
		BN_mod_sub(d, x3, z3, p, bc);
		BN_mod_mul(da, d, a, p, bc);
		BN_mod_mul(cb, c, b, p, bc);
		BN_mod_add(t, da, cb, p, bc);
		BN_mod_sqr(x3, t, p, bc);
		BN_mod_sub(t, da, cb, p, bc);
		BN_mod_sqr(t, t, p, bc);
		BN_mod_mul(z3, u, t, p, bc);
		BN_mod_mul(x2, aa, bb, p, bc);
		BN_set_word(t, 121665);
		BN_mod_mul(t, t, e, p, bc);
		BN_mod_add(t, t, aa, p, bc);
		BN_mod_mul(z2, e, t, p, bc);
	}
	if (swap) {
		BN_swap(x2, x3);
		BN_swap(z2, z3);
	}
	int id = BN_is_zero(z2);
	BIGNUM *all[] = { x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb, t };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		BN_free(all[i]);
	return id;
}

static void
check_share(const uint8_t s[32])
{
	BIGNUM *u = from_le(s);
	ck_assert(!BN_is_zero(u));
	ck_assert_int_lt(BN_cmp(u, p), 0);
	ck_assert_msg(on_curve(u), "not on the curve");
	ck_assert_msg(times_is_identity(u, l), "not in the subgroup");
	BN_free(u);
}

START_TEST(test_shares_in_subgroup)
{
	uint8_t s[32], last[32] = { 0 };

	for (int i = 0; i < 40; i++) {
		curve25519_share(s);
		ck_assert_uint_eq(s[31] & 0x80, 0);
		ck_assert_msg(memcmp(s, last, 32) != 0, "the same share twice");
		check_share(s);
		memcpy(last, s, 32);
	}
}
END_TEST

START_TEST(test_checks_pass_real_keys)
{
	for (int i = 0; i < 5; i++) {
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
		uint8_t s[32];
		size_t n = sizeof(s);
		ck_assert_ptr_nonnull(k);
		ck_assert_int_eq(EVP_PKEY_get_raw_public_key(k, s, &n), 1);
		EVP_PKEY_free(k);
		check_share(s);
	}
}
END_TEST

START_TEST(test_checks_catch_other_points)
{
	int outside = 0, tries = 0;

	while (tries < 16) {
		uint8_t s[32];
		RAND_bytes(s, sizeof(s));
		s[31] &= 0x7f;
		BIGNUM *u = from_le(s);
		if (BN_cmp(u, p) < 0 && on_curve(u)) {
			tries++;
			outside += !times_is_identity(u, l);
		}
		BN_free(u);
	}
	/* A random curve point is in the subgroup 1 time in 8. */
	ck_assert_int_ge(outside, 8);
}
END_TEST

static Suite *
curve_suite(void)
{
	Suite *s = suite_create("curve");
	TCase *tc = tcase_create("core");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_shares_in_subgroup);
	tcase_add_test(tc, test_checks_pass_real_keys);
	tcase_add_test(tc, test_checks_catch_other_points);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(curve_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
