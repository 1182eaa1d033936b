#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "aescbc.h"
#include "crypto.h"
#include "rpc.h"
#include "util.h"

/*
 * Every number of chains from 1 to past AESCBC_LANES, with uneven
 * lengths (so chains finish and others take their place), each compared
 * block for block with OpenSSL's AES-256-CBC, twice in a row (the IV
 * carries on).
 */
/* 1 if there is AES-NI to test; else checks that the CPU lacks it. */
static int
have_aesni(void)
{
	if (aescbc_available())
		return 1;
#if defined(__x86_64__)
	ck_assert_msg(!__builtin_cpu_supports("aes"),
	    "the CPU has AES-NI but aescbc_available() says no");
#endif
	return 0;
}

#define CHAINS   11
#define MAXBLOCK 70

START_TEST(test_lanes_match_openssl)
{
	if (!have_aesni())
		return;
	static uint8_t buf[CHAINS][MAXBLOCK * 16], want[CHAINS][MAXBLOCK * 16];
	uint8_t key[CHAINS][32], iv[CHAINS][16];
	struct aescbc_key ek[CHAINS];
	crypto_stream *ref[CHAINS];
	struct aescbc_job jobs[CHAINS];

	for (size_t n = 1; n <= CHAINS; n++) {
		for (size_t i = 0; i < n; i++) {
			random_bytes(key[i], 32);
			random_bytes(iv[i], 16);
			aescbc_key_init(&ek[i], key[i]);
			ref[i] = crypto_cbc_new(key[i], iv[i], 1);
			ck_assert_ptr_nonnull(ref[i]);
		}
		for (int round = 0; round < 2; round++) {
			for (size_t i = 0; i < n; i++) {
				/* Lengths 0..MAXBLOCK blocks, one chain of
				 * each length class at least once. */
				size_t blocks =
				    (i * 7 + round * 13 + n) % (MAXBLOCK + 1);
				random_bytes(buf[i], blocks * 16);
				memcpy(want[i], buf[i], blocks * 16);
				ck_assert_int_eq(
				    crypto_stream_apply(
				        ref[i], want[i], want[i], blocks * 16),
				    0);
				jobs[i] = (struct aescbc_job){ &ek[i], iv[i],
					buf[i], blocks * 16 };
			}
			aescbc_encrypt(jobs, n);
			for (size_t i = 0; i < n; i++) {
				size_t len =
				    buf[i] + sizeof(buf[i]) > jobs[i].buf
				    ? (size_t)(jobs[i].buf - buf[i])
				    : 0;
				ck_assert_uint_eq(jobs[i].len, 0);
				ck_assert_mem_eq(buf[i], want[i], len);
				if (len)
					ck_assert_mem_eq(
					    iv[i], want[i] + len - 16, 16);
			}
		}
		for (size_t i = 0; i < n; i++)
			crypto_stream_free(ref[i]);
	}
}
END_TEST

/* FIPS-197 appendix C.3: one block with the AES-256 example key (CBC
 * with a zero IV is the bare cipher). */
START_TEST(test_fips197_c3)
{
	if (!have_aesni())
		return;
	uint8_t key[32], block[16], iv[16] = { 0 };
	static const uint8_t want[16] = { 0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67,
		0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49, 0x60, 0x89 };
	struct aescbc_key ek;

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 16; i++)
		block[i] = (uint8_t)(i * 0x11);
	aescbc_key_init(&ek, key);
	struct aescbc_job j = { &ek, iv, block, 16 };
	aescbc_encrypt(&j, 1);
	ck_assert_mem_eq(block, want, 16);
	ck_assert_mem_eq(iv, want, 16);
}
END_TEST

/*
 * rpc_links_encrypt(), what the worker calls: three links' chains at
 * once, with AES-NI (where the CPU has it) and with OpenSSL alone
 * (MTPROTOD_NO_AESNI), each the same as OpenSSL's CBC, twice in a row.
 */
START_TEST(test_links_both_ways)
{
	for (int off = 0; off < 2; off++) {
		struct rpc_link links[3];
		crypto_stream *ref[3];
		static uint8_t buf[3][4096], want[3][4096];
		struct rpc_link_bytes b[3];

		if (off)
			setenv("MTPROTOD_NO_AESNI", "1", 1);
		for (int i = 0; i < 3; i++) {
			struct rpc_link_keys k;
			memset(&k, 0, sizeof(k));
			random_bytes(k.enc_key, 32);
			random_bytes(k.enc_iv, 16);
			random_bytes(k.dec_key, 32);
			random_bytes(k.dec_iv, 16);
			ck_assert_int_eq(
			    rpc_link_restore(&links[i], &k, 65536), 0);
			ck_assert(off ? links[i].ek == NULL
			              : (links[i].ek != NULL) == have_aesni());
			ref[i] = crypto_cbc_new(k.enc_key, k.enc_iv, 1);
			ck_assert_ptr_nonnull(ref[i]);
		}
		for (int round = 0; round < 2; round++) {
			for (int i = 0; i < 3; i++) {
				size_t len = 16 * (size_t)(1 + i * 70 + round);
				random_bytes(buf[i], len);
				memcpy(want[i], buf[i], len);
				ck_assert_int_eq(crypto_stream_apply(ref[i],
				                     want[i], want[i], len),
				    0);
				b[i] = (struct rpc_link_bytes){ &links[i],
					buf[i], len };
			}
			ck_assert_int_eq(rpc_links_encrypt(b, 3), 0);
			for (int i = 0; i < 3; i++) {
				ck_assert_mem_eq(buf[i], want[i], b[i].len);
				ck_assert_mem_eq(links[i].keys.enc_iv,
				    want[i] + b[i].len - 16, 16);
			}
		}
		for (int i = 0; i < 3; i++) {
			rpc_link_free(&links[i]);
			crypto_stream_free(ref[i]);
		}
		unsetenv("MTPROTOD_NO_AESNI");
	}
}
END_TEST

START_TEST(test_switch_off)
{
	setenv("MTPROTOD_NO_AESNI", "1", 1);
	ck_assert_int_eq(aescbc_available(), 0);
	unsetenv("MTPROTOD_NO_AESNI");
}
END_TEST

static Suite *
aescbc_suite(void)
{
	Suite *s = suite_create("aescbc");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_lanes_match_openssl);
	tcase_add_test(tc, test_fips197_c3);
	tcase_add_test(tc, test_links_both_ways);
	tcase_add_test(tc, test_switch_off);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(aescbc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
