/*
 * common/fingerprint.c: JA3 and JA4 against published values.
 *
 * Vector 1: FoxIO's JA4 specification (technical_details/JA4.md), whose
 * example hello has these ciphers and extensions in this order (JA4_ro)
 * and gives JA4 t13d1516h2_8daaf6152771_e5627efa2ab1.
 * Vector 2: a Chrome 143 hello as browserleaks.com reports it (ja3_text,
 * ja3_hash 98487aa16281980e7d1120d399efb6a4, ja4_ro, ja4
 * t13d1516h2_8daaf6152771_d8a2da3f94cd), as quoted in the public file
 * service0427/v2_cp_app:tls.md.
 * The hellos are rebuilt here from those lists, with GREASE values put
 * in, which both fingerprints must ignore.
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "tls.h"
#include "util.h"

struct ext {
	uint16_t type;
	const uint8_t *body;
	size_t len;
};

struct buf {
	uint8_t p[8192];
	size_t n;
};

static void
put(struct buf *b, const void *p, size_t n)
{
	ck_assert_uint_le(b->n + n, sizeof(b->p));
	if (n > 0) /* p is NULL for an empty extension */
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void
put16(struct buf *b, unsigned v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put(b, x, 2);
}

/* A ClientHello record with these ciphers and extensions. */
static size_t
build(uint8_t *out, const uint16_t *ciphers, size_t nc, const struct ext *exts,
    size_t ne)
{
	struct buf body = { .n = 0 }, e = { .n = 0 };
	uint8_t random[32] = { 7 }, sid[32] = { 9 };

	for (size_t i = 0; i < ne; i++) {
		put16(&e, exts[i].type);
		put16(&e, (unsigned)exts[i].len);
		put(&e, exts[i].body, exts[i].len);
	}
	put16(&body, 0x0303);
	put(&body, random, 32);
	put(&body, "\x20", 1);
	put(&body, sid, 32);
	put16(&body, (unsigned)(2 * nc));
	for (size_t i = 0; i < nc; i++)
		put16(&body, ciphers[i]);
	put(&body, "\x01\x00", 2);
	put16(&body, (unsigned)e.n);
	put(&body, e.p, e.n);
	out[0] = 0x16;
	out[1] = 0x03;
	out[2] = 0x01;
	out[3] = (uint8_t)((body.n + 4) >> 8);
	out[4] = (uint8_t)(body.n + 4);
	out[5] = 0x01;
	out[6] = 0;
	out[7] = (uint8_t)(body.n >> 8);
	out[8] = (uint8_t)body.n;
	memcpy(out + 9, body.p, body.n);
	return body.n + 9;
}

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static const uint8_t sigs[] =
    "\x00\x10\x04\x03\x08\x04\x04\x01\x05\x03\x08\x05\x05\x01\x08\x06\x06"
    "\x01";
static const uint8_t sni[] = "\x00\x0e\x00\x00\x0bexample.com";
static const uint8_t alpn_h2[] = "\x00\x0c\x02h2\x08http/1.1";
static const uint8_t versions[] = "\x06\x3a\x3a\x03\x04\x03\x03";
static const uint8_t groups_foxio[] = "\x00\x08\x5a\x5a\x00\x1d\x00\x17\x00"
                                      "\x18";
static const uint8_t groups_chrome[] = "\x00\x0a\x2a\x2a\x11\xec\x00\x1d\x00"
                                       "\x17\x00\x18";
static const uint8_t formats[] = "\x01\x00";

/* FoxIO's example: 15 ciphers, 16 extensions (JA4_ro order), h2. */
static size_t
foxio_hello(uint8_t *out)
{
	static const uint16_t c[] = { 0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b,
		0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
		0x009d, 0x002f, 0x0035 };
	const struct ext e[] = {
		{ 0xdada, NULL, 0 },
		{ 0x001b, B("\x02\x00\x02") },
		{ 0x0000, B(sni) },
		{ 0x0033,
		    B("\x00\x26\x00\x1d\x00\x20"
		      "01234567890123456789012345678901") },
		{ 0x0010, B(alpn_h2) },
		{ 0x4469, B("\x00\x03\x02h2") },
		{ 0x0017, NULL, 0 },
		{ 0x002d, B("\x01\x01") },
		{ 0x000d, B(sigs) },
		{ 0x0005, B("\x01\x00\x00\x00\x00") },
		{ 0x0023, NULL, 0 },
		{ 0x0012, NULL, 0 },
		{ 0x002b, B(versions) },
		{ 0xff01, B("\x00") },
		{ 0x000b, B(formats) },
		{ 0x000a, B(groups_foxio) },
		{ 0x0015, B("\x00\x00\x00") },
		{ 0x1a1a, B("\x00") },
	};
	return build(out, c, nitems(c), e, nitems(e));
}

/* Chrome 143 as browserleaks.com saw it: the ja3_text lists. */
static size_t
chrome_hello(uint8_t *out)
{
	static const uint16_t c[] = { 0x3a3a, 4865, 4866, 4867, 49195, 49199,
		49196, 49200, 52393, 52392, 49171, 49172, 156, 157, 47, 53 };
	const struct ext e[] = {
		{ 0x8a8a, NULL, 0 },
		{ 45, B("\x01\x01") },
		{ 51,
		    B("\x00\x26\x00\x1d\x00\x20"
		      "01234567890123456789012345678901") },
		{ 16, B(alpn_h2) },
		{ 65037, B("\x00\x00\x01\x00\x01\x00") },
		{ 23, NULL, 0 },
		{ 17613, B("\x00\x03\x02h2") },
		{ 0, B(sni) },
		{ 11, B(formats) },
		{ 10, B(groups_chrome) },
		{ 43, B(versions) },
		{ 65281, B("\x00") },
		{ 35, NULL, 0 },
		{ 18, NULL, 0 },
		{ 5, B("\x01\x00\x00\x00\x00") },
		{ 13, B(sigs) },
		{ 27, B("\x02\x00\x02") },
		{ 0x4a4a, B("\x00") },
	};
	return build(out, c, nitems(c), e, nitems(e));
}

START_TEST(test_published_vectors)
{
	uint8_t h[4096];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n;

	n = foxio_hello(h);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
	n = chrome_hello(h);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_d8a2da3f94cd");
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_str_eq(ja3, "98487aa16281980e7d1120d399efb6a4");
}
END_TEST

START_TEST(test_no_sni_no_alpn_no_sigs)
{
	static const uint16_t c[] = { 0x1301 };
	const struct ext e[] = { { 0x002b, B("\x02\x03\x03") } };
	uint8_t h[512];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n = build(h, c, 1, e, 1);

	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	/* TLS 1.2, no SNI ("i"), 1 cipher, 1 extension, no ALPN ("00");
	 * the extension list is "002b" alone, hashed without "_". */
	ck_assert_int_eq(strncmp(ja4, "t12i010100_", 11), 0);
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_uint_eq(strlen(ja3), 32);
	/* Without any extension: both hashes of nothing are twelve 0s
	 * for the extensions. */
	n = build(h, c, 1, NULL, 0);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4 + 24, "000000000000");
	ck_assert_int_eq(strncmp(ja4, "t12i0100", 8), 0);
}
END_TEST

START_TEST(test_every_truncation_refused)
{
	uint8_t h[4096];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n = chrome_hello(h);

	for (size_t len = 0; len < n; len++) {
		ck_assert_int_eq(tls_ja3(h, len, ja3), -1);
		ck_assert_str_eq(ja3, "");
		ck_assert_int_eq(tls_ja4(h, len, ja4), -1);
	}
	/* A lying length: the extensions' (after the record and handshake
	 * headers, version, random, session id, 16 ciphers, compression). */
	ck_assert_uint_eq(h[112] << 8 | h[113], n - 114);
	h[113]++;
	ck_assert_int_eq(tls_ja4(h, n, ja4), -1);
}
END_TEST

START_TEST(test_our_client_hello)
{
	uint8_t secret[TLS_SECRET_LEN] = { 1 }, h[TLS_HELLO_MAX];
	char a[TLS_JA4_LEN + 1], b[TLS_JA4_LEN + 1], j[TLS_JA3_LEN + 1];
	char k[TLS_JA3_LEN + 1];
	size_t n;

	/* Random GREASE, key and padding: the same fingerprints. */
	n = tls_client_hello_build(
	    h, sizeof(h), secret, "www.example.com", 1, TLS_HELLO_CLASSIC_LEN);
	ck_assert_int_eq(tls_ja4(h, n, a), 0);
	ck_assert_int_eq(tls_ja3(h, n, j), 0);
	n = tls_client_hello_build(
	    h, sizeof(h), secret, "www.example.com", 2, TLS_HELLO_CLASSIC_LEN);
	ck_assert_int_eq(tls_ja4(h, n, b), 0);
	ck_assert_int_eq(tls_ja3(h, n, k), 0);
	ck_assert_str_eq(a, b);
	ck_assert_str_eq(j, k);
	ck_assert_int_eq(strncmp(a, "t13d", 4), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("fingerprint");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_published_vectors);
	tcase_add_test(tc, test_no_sni_no_alpn_no_sigs);
	tcase_add_test(tc, test_every_truncation_refused);
	tcase_add_test(tc, test_our_client_hello);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
