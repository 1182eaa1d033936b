/*
 * match.h: finding a handshake's user among many, per-SNI keys; keyidx.h.
 */
#include "autoconf.h"

#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "keyidx.h"
#include "match.h"
#include "match16.h"
#include "o2.h"
#include "tls.h"
#include "util.h"

#define NUSERS 300

/* User u's secret: distinct, and not in order of anything. */
static void
user_secret(size_t u, uint8_t out[16])
{
	for (int i = 0; i < 16; i++)
		out[i] = (uint8_t)(u * 37 + (size_t)i * 101 + 7);
	out[15] = (uint8_t)(u >> 8);
	out[14] = (uint8_t)u;
}

/*
 * Fixed vectors, computed outside this code with Python's hashlib, as
 * the Erlang mtproto_proxy's README spells the derivation:
 *   hashlib.sha256((salt + secret_hex + sni).encode()).hexdigest()[:32]
 * salt "pepper-2024", secret 00112233445566778899aabbccddeeff, sni
 *   www.example.com -> c68f49cab437dc5dc8ebed4920fbd09d
 * salt "", secret 0123456789abcdef0123456789abcdef, sni cdn.example.org
 *   -> 50dcc7327ebbbd3cbec34fcc4e7da635
 */
START_TEST(test_sni_secret_vectors)
{
	uint8_t sec[16], out[16];
	char hex[33];

	ck_assert_int_eq(
	    hex_decode("00112233445566778899aabbccddeeff", sec, 16), 0);
	match_sni_secret(sec, "pepper-2024", "www.example.com", out);
	hex_encode(out, 16, hex);
	ck_assert_str_eq(hex, "c68f49cab437dc5dc8ebed4920fbd09d");

	/* The secret's hex is lower case whatever the config's case was. */
	ck_assert_int_eq(
	    hex_decode("0123456789ABCDEF0123456789abcdef", sec, 16), 0);
	match_sni_secret(sec, "", "cdn.example.org", out);
	hex_encode(out, 16, hex);
	ck_assert_str_eq(hex, "50dcc7327ebbbd3cbec34fcc4e7da635");
	/* Another name, another key. */
	match_sni_secret(sec, "", "cdn.example.com", out);
	hex_encode(out, 16, hex);
	ck_assert_str_ne(hex, "50dcc7327ebbbd3cbec34fcc4e7da635");
}
END_TEST

/* match_tls finds the same user as tls_hello_verify, hints or not. */
START_TEST(test_tls_many_users)
{
	static uint8_t secrets[NUSERS][16];
	uint8_t hello[TLS_HELLO_MAX];
	struct match_keys k;
	uint32_t ts = 0;
	const size_t want[] = { 0, 1, 150, NUSERS - 1 };

	for (size_t u = 0; u < NUSERS; u++)
		user_secret(u, secrets[u]);
	ck_assert_int_eq(match_keys_init(&k, (const void *)secrets, NUSERS), 0);
	for (size_t i = 0; i < nitems(want); i++) {
		size_t n = tls_client_hello_build(hello, sizeof(hello),
		    secrets[want[i]], "www.example.com", 1700000000u + i, 517);
		ck_assert_uint_eq(n, 517);
		ck_assert_int_eq(tls_hello_verify(hello, n,
		                     (const void *)secrets, NUSERS, &ts),
		    (int)want[i]);
		ts = 0;
		ck_assert_int_eq(
		    match_tls(&k, hello, n, NULL, 0, &ts), (long)want[i]);
		ck_assert_uint_eq(ts, 1700000000u + i);
		/* A right hint, a wrong one, one out of range. */
		long h[3] = { (long)want[i], 7, NUSERS + 5 };
		ck_assert_int_eq(
		    match_tls(&k, hello, n, h, 1, &ts), (long)want[i]);
		ck_assert_int_eq(
		    match_tls(&k, hello, n, h + 1, 2, &ts), (long)want[i]);
		/* One bit of the hello changed: nobody. */
		hello[100] ^= 1;
		ck_assert_int_eq(match_tls(&k, hello, n, h, 3, &ts), -1);
	}
	/* The derived key signs; the plain one does not (per_sni). */
	uint8_t d[16];
	struct match_keys kd;
	match_sni_secret(secrets[42], "salt", "a.example.com", d);
	ck_assert_int_eq(match_keys_init(&kd, (const void *)&d, 1), 0);
	size_t n = tls_client_hello_build(
	    hello, sizeof(hello), d, "a.example.com", 1700000000u, 517);
	ck_assert_int_eq(match_tls(&kd, hello, n, NULL, 0, &ts), 0);
	ck_assert_int_eq(match_tls(&k, hello, n, NULL, 0, &ts), -1);
	n = tls_client_hello_build(hello, sizeof(hello), secrets[42],
	    "a.example.com", 1700000000u, 517);
	ck_assert_int_eq(match_tls(&kd, hello, n, NULL, 0, &ts), -1);
	match_keys_free(&kd);
	match_keys_free(&k);
	ck_assert_ptr_null(k.secret);
	ck_assert_int_eq(match_tls(&k, hello, n, NULL, 0, &ts), -1);
}
END_TEST

/* match_o2 finds the user whose secret made the header. */
START_TEST(test_o2_many_users)
{
	static uint8_t secrets[NUSERS][16];
	uint8_t wire[O2_HEADER_LEN];
	struct o2_session c, s;
	struct match_keys k, others;
	const size_t want[] = { 0, 2, 299 };
	const uint32_t tags[] = { O2_TAG_ABRIDGED, O2_TAG_INTERMEDIATE,
		O2_TAG_PADDED };

	for (size_t u = 0; u < NUSERS; u++)
		user_secret(u, secrets[u]);
	ck_assert_int_eq(match_keys_init(&k, (const void *)secrets, NUSERS), 0);
	for (size_t i = 0; i < nitems(want); i++) {
		ck_assert_int_eq(
		    o2_connect(wire, tags[i], 2, secrets[want[i]], NULL, &c),
		    0);
		ck_assert_int_eq(match_o2(&k, wire, NULL, 0), (long)want[i]);
		ck_assert_int_eq(
		    o2_accept(wire, (const void *)secrets, NUSERS, &s),
		    (int)want[i]);
		o2_session_free(&s);
		long h[2] = { 5, (long)want[i] };
		ck_assert_int_eq(match_o2(&k, wire, h, 2), (long)want[i]);
		o2_session_free(&c);
	}
	/* Only others' secrets: nobody. */
	ck_assert_int_eq(
	    match_keys_init(&others, (const void *)(secrets + 8), NUSERS - 8),
	    0);
	ck_assert_int_eq(
	    o2_connect(wire, O2_TAG_PADDED, 2, secrets[7], NULL, &c), 0);
	ck_assert_int_eq(match_o2(&others, wire, NULL, 0), -1);
	o2_session_free(&c);
	match_keys_free(&others);
	match_keys_free(&k);
}
END_TEST

/*
 * The scans (match16.h), at each width this CPU has (a loop test, _i
 * in widths[]): every user of 3 groups and a part, in each lane, found
 * by the scan in its own group and lane, and by match_o2 and match_tls
 * with and without the lanes; a user with the same secret as an earlier
 * one is found as that one.
 */
#define LANE_USERS (3 * MATCH16_LANES + 5)

static int widths[2], nwidths;

/* Keys scanned width lanes at a time, and keys tried one at a time. */
static void
keys_both(int width, struct match_keys *lanes, struct match_keys *plain,
    const uint8_t (*secrets)[16], size_t n)
{
	ck_assert_int_eq(unsetenv("MTPROTOD_NO_AVX2"), 0);
	if (width == 16)
		ck_assert_int_eq(unsetenv("MTPROTOD_NO_AVX512"), 0);
	else
		ck_assert_int_eq(setenv("MTPROTOD_NO_AVX512", "1", 1), 0);
	ck_assert_int_eq(match_keys_init(lanes, secrets, n), 0);
	ck_assert_int_eq(lanes->lanes, width);
	ck_assert_ptr_nonnull(lanes->o2_lanes);
	ck_assert_ptr_nonnull(lanes->tls_lanes);
	ck_assert_int_eq(setenv("MTPROTOD_NO_AVX512", "1", 1), 0);
	ck_assert_int_eq(setenv("MTPROTOD_NO_AVX2", "1", 1), 0);
	ck_assert_int_eq(match16_available(), 0);
	ck_assert_int_eq(match_keys_init(plain, secrets, n), 0);
	ck_assert_ptr_null(plain->o2_lanes);
	ck_assert_int_eq(plain->lanes, 0);
	ck_assert_int_eq(unsetenv("MTPROTOD_NO_AVX512"), 0);
	ck_assert_int_eq(unsetenv("MTPROTOD_NO_AVX2"), 0);
}

START_TEST(test_lanes_o2)
{
	static uint8_t secrets[LANE_USERS][16];
	const uint32_t tags[] = { O2_TAG_ABRIDGED, O2_TAG_INTERMEDIATE,
		O2_TAG_PADDED };
	uint8_t wire[O2_HEADER_LEN];
	struct match_keys k, p;
	struct o2_session c;

	for (size_t u = 0; u < LANE_USERS; u++)
		user_secret(u, secrets[u]);
	memcpy(secrets[37], secrets[9], 16); /* 9 comes first */
	keys_both(widths[_i], &k, &p, (const void *)secrets, LANE_USERS);
	for (size_t u = 0; u < LANE_USERS; u++) {
		struct match16_o2 m16;
		unsigned mask = 0;
		size_t want = u == 37 ? 9 : u;

		ck_assert_int_eq(
		    o2_connect(wire, tags[u % 3], 2, secrets[u], NULL, &c), 0);
		o2_session_free(&c);
		match16_o2_prepare(&m16, wire);
		ck_assert_uint_eq(match16_o2_scan(&m16, k.o2_lanes, 0,
		                      k.ngroups, k.lanes, &mask),
		    want / MATCH16_LANES);
		ck_assert_uint_eq(mask & 1u << want % MATCH16_LANES,
		    1u << want % MATCH16_LANES);
		if (want != 9) /* else the twin's group comes next */
			ck_assert_uint_eq(match16_o2_scan(&m16, k.o2_lanes,
			                      want / MATCH16_LANES + 1,
			                      k.ngroups, k.lanes, &mask),
			    k.ngroups);
		ck_assert_int_eq(match_o2(&k, wire, NULL, 0), (long)want);
		ck_assert_int_eq(match_o2(&p, wire, NULL, 0), (long)want);
		/* A wrong hint first, then the scan, which skips it. */
		long h[2] = { (long)(u + 1) % LANE_USERS, 9 };
		ck_assert_int_eq(match_o2(&k, wire, h, 1), (long)want);
		/* A hint of the twin finds the twin. */
		if (u == 9 || u == 37)
			ck_assert_int_eq(
			    match_o2(&k, wire, (long[]){ 37 }, 1), 37);
	}
	match_keys_free(&k);
	match_keys_free(&p);
}
END_TEST

START_TEST(test_lanes_tls)
{
	static uint8_t secrets[LANE_USERS][16];
	/* Hello lengths around the padding's edges: the last block has
	 * room for the length, just not, or none at all. */
	const size_t lens[] = { 517, 567, 568, 576, 1200 };
	uint8_t hello[TLS_HELLO_MAX];
	struct match_keys k, p;

	for (size_t u = 0; u < LANE_USERS; u++)
		user_secret(u, secrets[u]);
	memcpy(secrets[50], secrets[20], 16); /* 20 comes first */
	keys_both(widths[_i], &k, &p, (const void *)secrets, LANE_USERS);
	for (size_t u = 0; u < LANE_USERS; u++) {
		size_t len = lens[u % nitems(lens)];
		size_t want = u == 50 ? 20 : u;
		uint32_t ts = 0;

		ck_assert_uint_eq(
		    tls_client_hello_build(hello, sizeof(hello), secrets[u],
		        "www.example.com", 1700000000u + (uint32_t)u, len),
		    len);
		ck_assert_int_eq(
		    match_tls(&k, hello, len, NULL, 0, &ts), (long)want);
		ck_assert_uint_eq(ts, 1700000000u + u);
		ts = 0;
		ck_assert_int_eq(
		    match_tls(&p, hello, len, NULL, 0, &ts), (long)want);
		ck_assert_uint_eq(ts, 1700000000u + u);
		long h[1] = { (long)(u + 3) % LANE_USERS };
		ck_assert_int_eq(
		    match_tls(&k, hello, len, h, 1, &ts), (long)want);

		/* The scan alone: the user's group and lane. */
		uint8_t msg[TLS_HELLO_MAX];
		struct match16_tls m16;
		unsigned mask = 0;
		memcpy(msg, hello, len);
		memset(msg + TLS_RANDOM_OFF, 0, TLS_RANDOM_LEN);
		ck_assert_int_eq(
		    match16_tls_prepare(&m16, msg, len, hello + TLS_RANDOM_OFF),
		    0);
		ck_assert_uint_eq(match16_tls_scan(&m16, k.tls_lanes, 0,
		                      k.ngroups, k.lanes, &mask),
		    want / MATCH16_LANES);
		ck_assert_uint_eq(mask & 1u << want % MATCH16_LANES,
		    1u << want % MATCH16_LANES);
		match16_tls_free(&m16);

		/* One bit of the hello changed: nobody. */
		hello[200] ^= 1;
		ck_assert_int_eq(match_tls(&k, hello, len, NULL, 0, &ts), -1);
	}
	match_keys_free(&k);
	match_keys_free(&p);
}
END_TEST

START_TEST(test_keyidx)
{
	static struct config_user users[1000];
	struct keyidx names, secs;

	for (size_t u = 0; u < nitems(users); u++) {
		snprintf(users[u].name, sizeof(users[u].name), "user%zu", u);
		user_secret(u, users[u].secret);
	}
	ck_assert_int_eq(
	    keyidx_init(&names, nitems(users), users, sizeof(users[0]),
	        offsetof(struct config_user, name), 0),
	    0);
	ck_assert_int_eq(
	    keyidx_init(&secs, nitems(users), users, sizeof(users[0]),
	        offsetof(struct config_user, secret), 16),
	    0);
	for (size_t u = 0; u < nitems(users); u++) {
		ck_assert_int_eq(keyidx_add(&names, u), -1);
		ck_assert_int_eq(keyidx_add(&secs, u), -1);
	}
	ck_assert_int_eq(keyidx_find(&names, "user0"), 0);
	ck_assert_int_eq(keyidx_find(&names, "user999"), 999);
	ck_assert_int_eq(keyidx_find(&names, "user1000"), -1);
	ck_assert_int_eq(keyidx_find(&names, "user"), -1);
	ck_assert_int_eq(keyidx_find(&secs, users[500].secret), 500);
	/* A duplicate is reported with the first one's index. */
	ck_assert_int_eq(keyidx_add(&names, 3), 3);
	keyidx_free(&names);
	keyidx_free(&secs);
	ck_assert_int_eq(keyidx_find(&names, "user0"), -1);
}
END_TEST

/*
 * The widths this CPU has, as /proc/cpuinfo says (independently of
 * match16.c's own check): 16 with avx512f, avx512bw and vaes; 8 with
 * avx2 and aes.
 */
static void
cpu_widths(void)
{
	char line[8192];
	FILE *c = fopen("/proc/cpuinfo", "r");

	nwidths = 0;
	if (c == NULL)
		return;
	while (fgets(line, sizeof(line), c) != NULL)
		if (strncmp(line, "flags", 5) == 0) {
			line[strcspn(line, "\n")] = ' ';
			if (strstr(line, " avx512f ") &&
			    strstr(line, " avx512bw ") &&
			    strstr(line, " vaes "))
				widths[nwidths++] = 16;
			if (strstr(line, " avx2 ") && strstr(line, " aes "))
				widths[nwidths++] = 8;
			break;
		}
	fclose(c);
}

static Suite *
match_suite(void)
{
	Suite *s = suite_create("match");
	TCase *tc = tcase_create("match");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_sni_secret_vectors);
	tcase_add_test(tc, test_tls_many_users);
	tcase_add_test(tc, test_o2_many_users);
	tcase_add_test(tc, test_keyidx);
	suite_add_tcase(s, tc);
	/* Each width the CPU has must be used (a test that fails, not
	 * one that skips). */
	cpu_widths();
	if (nwidths > 0) {
		TCase *tl = tcase_create("lanes");
		tcase_set_timeout(tl, 60);
		tcase_add_loop_test(tl, test_lanes_o2, 0, nwidths);
		tcase_add_loop_test(tl, test_lanes_tls, 0, nwidths);
		suite_add_tcase(s, tl);
	}
	if (nwidths < 2)
		fprintf(stderr,
		    "check_match: this CPU has %s: %d of the 2 scan widths "
		    "are tested\n",
		    nwidths ? "no AVX-512 with VAES" : "neither", nwidths);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(match_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
