/*
 * common/fingerprint.c: JA3 and JA4 against published values.
 *
 * Each hello is rebuilt here from the lists that a published source gives
 * for it (the bodies of the extensions that neither fingerprint reads are
 * made up), sometimes with GREASE values put in, which both must ignore:
 *
 * - FoxIO's JA4 specification (FoxIO-LLC/ja4, technical_details/JA4.md):
 *   its example (JA4_ro order) is t13d1516h2_8daaf6152771_e5627efa2ab1,
 *   and ..._6d807ffa2a79 without signature algorithms.
 * - Three captures of FoxIO-LLC/ja4's pcap/ folder, from the JA4_ro that
 *   FoxIO publishes for them (python/test/testdata/NAME.json, with JA4
 *   also in rust/ja4/src/snapshots) and the groups and point formats in
 *   the packets: tls12.pcap (Firefox, t13d1715h2_5b57614c22b0_
 *   3d5424432f57), tls-alpn-h2.pcap (TLS 1.2, 46 suites, t12d4605h2_
 *   85626a9a5f7f_aaf95bb78ec9), tls-non-ascii-alpn.pcapng (first ALPN
 *   value 0xba 0xad; FoxIO's tools print "99" for it where JA4.md's rule,
 *   "ALPN Extension Value", gives "bd"; the rest is FoxIO's). Their JA3
 *   is what Wireshark 4.0.17 (tls.handshake.ja3) gives for the captured
 *   packets; these functions give the same JA3 and JA4 on the captured
 *   bytes too (checked when this test was written; the captures are not
 *   copied here).
 * - salesforce/ja3's README: "769,47-53-5-10-49161-49162-49171-49172-50-
 *   56-19-4,0-10-11,23-24-25,0" is ada70206e40642a3e4461f35503241d5 and
 *   "769,4-5-10-9-100-98-3-6-19-18-99,,," (no extensions) is
 *   de350869b8c85de67a350c8d186f11e6.
 * - A Chrome 143 hello as browserleaks.com reports it (ja3_text,
 *   ja3_hash 98487aa16281980e7d1120d399efb6a4, ja4_ro, ja4
 *   t13d1516h2_8daaf6152771_d8a2da3f94cd), as quoted in the public file
 *   service0427/v2_cp_app:tls.md.
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

/* A ClientHello record with this legacy version, these ciphers and
 * extensions; exts NULL: no extensions block at all. */
static size_t
build(uint8_t *out, uint16_t version, const uint16_t *ciphers, size_t nc,
    const struct ext *exts, size_t ne)
{
	struct buf body = { .n = 0 }, e = { .n = 0 };
	uint8_t random[32] = { 7 }, sid[32] = { 9 };

	for (size_t i = 0; i < ne; i++) {
		put16(&e, exts[i].type);
		put16(&e, (unsigned)exts[i].len);
		put(&e, exts[i].body, exts[i].len);
	}
	put16(&body, version);
	put(&body, random, 32);
	put(&body, "\x20", 1);
	put(&body, sid, 32);
	put16(&body, (unsigned)(2 * nc));
	for (size_t i = 0; i < nc; i++)
		put16(&body, ciphers[i]);
	put(&body, "\x01\x00", 2);
	if (exts != NULL) {
		put16(&body, (unsigned)e.n);
		put(&body, e.p, e.n);
	}
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
static const uint8_t sni[] = "\x00\x0e\x00\x00\x0b"
                             "example.com";
static const uint8_t alpn_h2[] = "\x00\x0c\x02h2\x08http/1.1";
static const uint8_t versions[] = "\x06\x3a\x3a\x03\x04\x03\x03";
static const uint8_t groups_foxio[] = "\x00\x08\x5a\x5a\x00\x1d\x00\x17\x00"
                                      "\x18";
static const uint8_t groups_chrome[] = "\x00\x0a\x2a\x2a\x11\xec\x00\x1d\x00"
                                       "\x17\x00\x18";
static const uint8_t formats[] = "\x01\x00";

static const uint16_t foxio_ciphers[] = { 0x0a0a, 0x1301, 0x1302, 0x1303,
	0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
	0x009d, 0x002f, 0x0035 };

/* FoxIO's example: 15 ciphers, 16 extensions (JA4_ro order), h2; with
 * sig the signature_algorithms body. */
static size_t
foxio_hello(uint8_t *out, const uint8_t *sig, size_t siglen)
{
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
		{ 0x000d, sig, siglen },
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
	return build(
	    out, 0x0303, foxio_ciphers, nitems(foxio_ciphers), e, nitems(e));
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
	return build(out, 0x0303, c, nitems(c), e, nitems(e));
}

static const uint8_t key_share[] = "\x00\x26\x00\x1d\x00\x20"
                                   "01234567890123456789012345678901";

/* FoxIO-LLC/ja4 pcap/tls12.pcap: Firefox. Its delegated_credentials
 * (0x0022) carries signature algorithms of its own, which JA4 leaves
 * out. */
static size_t
firefox_hello(uint8_t *out)
{
	static const uint16_t c[] = { 0x1301, 0x1303, 0x1302, 0xc02b, 0xc02f,
		0xcca9, 0xcca8, 0xc02c, 0xc030, 0xc00a, 0xc009, 0xc013, 0xc014,
		0x009c, 0x009d, 0x002f, 0x0035 };
	const struct ext e[] = {
		{ 0x0000, B(sni) },
		{ 0x0017, NULL, 0 },
		{ 0xff01, B("\x00") },
		{ 0x000a,
		    B("\x00\x0c\x00\x1d\x00\x17\x00\x18\x00\x19\x01\x00\x01"
		      "\x01") },
		{ 0x000b, B(formats) },
		{ 0x0023, NULL, 0 },
		{ 0x0010, B(alpn_h2) },
		{ 0x0005, B("\x01\x00\x00\x00\x00") },
		{ 0x0022, B("\x00\x08\x04\x03\x05\x03\x06\x03\x02\x03") },
		{ 0x0033, B(key_share) },
		{ 0x002b, B("\x04\x03\x04\x03\x03") },
		{ 0x000d,
		    B("\x00\x16\x04\x03\x05\x03\x06\x03\x08\x04\x08\x05\x08"
		      "\x06\x04\x01\x05\x01\x06\x01\x02\x03\x02\x01") },
		{ 0x002d, B("\x01\x01") },
		{ 0x001c, B("\x40\x01") },
		{ 0x0015, B("\x00\x00\x00\x00") },
	};
	return build(out, 0x0303, c, nitems(c), e, nitems(e));
}

/* FoxIO-LLC/ja4 pcap/tls-alpn-h2.pcap: TLS 1.2 only (no
 * supported_versions), 46 suites, signature algorithms 0xefef, 0xeeee
 * and 0xeded (not GREASE). */
static size_t
tls12_hello(uint8_t *out)
{
	static const uint16_t c[] = { 0xc030, 0xc02c, 0xc028, 0xc024, 0xc014,
		0xc00a, 0x009f, 0x006b, 0x0039, 0xcca9, 0xcca8, 0xccaa, 0xff85,
		0x00c4, 0x0088, 0x0081, 0x009d, 0x003d, 0x0035, 0x00c0, 0x0084,
		0xc02f, 0xc02b, 0xc027, 0xc023, 0xc013, 0xc009, 0x009e, 0x0067,
		0x0033, 0x00be, 0x0045, 0x009c, 0x003c, 0x002f, 0x00ba, 0x0041,
		0xc011, 0xc007, 0x0005, 0x0004, 0xc012, 0xc008, 0x0016, 0x000a,
		0x00ff };
	const struct ext e[] = {
		{ 0x0000, B(sni) },
		{ 0x000b, B(formats) },
		{ 0x000a, B("\x00\x06\x00\x1d\x00\x17\x00\x18") },
		{ 0x000d,
		    B("\x00\x1a\x06\x01\x06\x03\xef\xef\x05\x01\x05\x03\x04"
		      "\x01\x04\x03\xee\xee\xed\xed\x03\x01\x03\x03\x02\x01"
		      "\x02\x03") },
		{ 0x0010, B(alpn_h2) },
	};
	return build(out, 0x0303, c, nitems(c), e, nitems(e));
}

/* FoxIO-LLC/ja4 pcap/tls-non-ascii-alpn.pcapng: Chrome, with a first
 * ALPN value of 0xba 0xad. */
static size_t
baad_hello(uint8_t *out)
{
	const struct ext e[] = {
		{ 0x9a9a, NULL, 0 },
		{ 0xff01, B("\x00") },
		{ 0x0033, B(key_share) },
		{ 0x002d, B("\x01\x01") },
		{ 0x0005, B("\x01\x00\x00\x00\x00") },
		{ 0x4469, B("\x00\x03\x02h2") },
		{ 0x000d, B(sigs) },
		{ 0x0010, B("\x00\x0c\x02\xba\xad\x08http/1.1") },
		{ 0x0023, NULL, 0 },
		{ 0x001b, B("\x02\x00\x02") },
		{ 0x002b, B("\x06\x0a\x0a\x03\x04\x03\x03") },
		{ 0x0000, B(sni) },
		{ 0x0012, NULL, 0 },
		{ 0x000a, B("\x00\x08\x0a\x0a\x00\x1d\x00\x17\x00\x18") },
		{ 0x0017, NULL, 0 },
		{ 0x000b, B(formats) },
		{ 0x6a6a, B("\x00") },
		{ 0x0015, B("\x00\x00") },
	};
	return build(
	    out, 0x0303, foxio_ciphers, nitems(foxio_ciphers), e, nitems(e));
}

START_TEST(test_foxio_captures)
{
	static const struct {
		size_t (*hello)(uint8_t *);
		const char *ja3, *ja4;
	} v[] = {
		{ firefox_hello, "579ccef312d18482fc42e2b822ca2430",
		    "t13d1715h2_5b57614c22b0_3d5424432f57" },
		{ tls12_hello, "3faa4ad39f690c4ef1c3160caa375465",
		    "t12d4605h2_85626a9a5f7f_aaf95bb78ec9" },
		{ baad_hello, "1c258ebef8eee2dfa3df6d8d07285af9",
		    "t13d1516bd_8daaf6152771_e5627efa2ab1" },
	};
	uint8_t h[4096];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	char both3[TLS_JA3_LEN + 1], both4[TLS_JA4_LEN + 1];
	size_t n;

	for (size_t i = 0; i < nitems(v); i++) {
		n = v[i].hello(h);
		ck_assert_msg(tls_ja3(h, n, ja3) == 0, "vector %zu", i);
		ck_assert_str_eq(ja3, v[i].ja3);
		ck_assert_msg(tls_ja4(h, n, ja4) == 0, "vector %zu", i);
		ck_assert_str_eq(ja4, v[i].ja4);
		ck_assert_int_eq(tls_fingerprints(h, n, both3, both4), 0);
		ck_assert_str_eq(both3, ja3);
		ck_assert_str_eq(both4, ja4);
	}
}
END_TEST

START_TEST(test_published_vectors)
{
	uint8_t h[4096];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n;

	n = foxio_hello(h, B(sigs));
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
	/* JA4.md: no signature algorithms, no "_" before hashing. */
	n = foxio_hello(h, B("\x00\x00"));
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_6d807ffa2a79");
	n = chrome_hello(h);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_d8a2da3f94cd");
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_str_eq(ja3, "98487aa16281980e7d1120d399efb6a4");
}
END_TEST

/* The two examples of salesforce/ja3's README. */
START_TEST(test_ja3_readme)
{
	static const uint16_t c1[] = { 0x5a5a, 47, 53, 5, 10, 49161, 49162,
		49171, 49172, 50, 56, 19, 4 };
	static const uint16_t c2[] = { 4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99 };
	const struct ext e1[] = {
		{ 0, B(sni) },
		{ 0x0a0a, NULL, 0 },
		{ 10, B("\x00\x08\xea\xea\x00\x17\x00\x18\x00\x19") },
		{ 11, B("\x01\x00") },
	};
	uint8_t h[1024];
	char ja3[TLS_JA3_LEN + 1];
	size_t n;

	n = build(h, 769, c1, nitems(c1), e1, nitems(e1));
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_str_eq(ja3, "ada70206e40642a3e4461f35503241d5");
	/* No extensions block at all: the last three fields empty. */
	n = build(h, 769, c2, nitems(c2), NULL, 0);
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_str_eq(ja3, "de350869b8c85de67a350c8d186f11e6");
}
END_TEST

START_TEST(test_grease_ignored)
{
	static const uint16_t plain[] = { 0x1301, 0xc02b };
	static const uint16_t greasy[] = { 0x0a0a, 0x1301, 0xfafa, 0xc02b,
		0x1a1a };
	const struct ext ep[] = {
		{ 0x0000, B(sni) },
		{ 0x000a, B("\x00\x04\x00\x1d\x00\x17") },
		{ 0x000b, B(formats) },
		{ 0x000d, B("\x00\x04\x04\x03\x08\x04") },
		{ 0x0010, B(alpn_h2) },
		{ 0x002b, B("\x04\x03\x04\x03\x03") },
	};
	/* GREASE as values in every list and as extensions (empty and
	 * not), first, between and last. */
	const struct ext eg[] = {
		{ 0x2a2a, NULL, 0 },
		{ 0x0000, B(sni) },
		{ 0x000a, B("\x00\x08\x3a\x3a\x00\x1d\x4a\x4a\x00\x17") },
		{ 0x5a5a, B("\x00") },
		{ 0x000b, B(formats) },
		{ 0x000d, B("\x00\x06\x04\x03\x6a\x6a\x08\x04") },
		{ 0x0010, B(alpn_h2) },
		{ 0x002b, B("\x06\x7a\x7a\x03\x04\x03\x03") },
		{ 0xeaea, B("\x00\x00") },
	};
	uint8_t h[1024];
	char a3[TLS_JA3_LEN + 1], b3[TLS_JA3_LEN + 1];
	char a4[TLS_JA4_LEN + 1], b4[TLS_JA4_LEN + 1];
	size_t n;

	n = build(h, 0x0303, plain, nitems(plain), ep, nitems(ep));
	ck_assert_int_eq(tls_ja3(h, n, a3), 0);
	ck_assert_int_eq(tls_ja4(h, n, a4), 0);
	n = build(h, 0x0303, greasy, nitems(greasy), eg, nitems(eg));
	ck_assert_int_eq(tls_ja3(h, n, b3), 0);
	ck_assert_int_eq(tls_ja4(h, n, b4), 0);
	ck_assert_str_eq(a3, b3);
	ck_assert_str_eq(a4, b4);
	ck_assert_int_eq(strncmp(b4, "t13d0206h2_", 11), 0);
}
END_TEST

START_TEST(test_no_sni_no_alpn_no_sigs)
{
	static const uint16_t c[] = { 0x1301 };
	const struct ext e[] = { { 0x002b, B("\x02\x03\x03") } };
	uint8_t h[512];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n = build(h, 0x0303, c, 1, e, 1);

	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	/* TLS 1.2, no SNI ("i"), 1 cipher, 1 extension, no ALPN ("00");
	 * the extension list is "002b" alone, hashed without "_". */
	ck_assert_int_eq(strncmp(ja4, "t12i010100_", 11), 0);
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_uint_eq(strlen(ja3), 32);
	/* An empty extensions block, or none: twelve 0s for the
	 * extensions. */
	n = build(h, 0x0303, c, 1, e, 0);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4 + 24, "000000000000");
	ck_assert_int_eq(strncmp(ja4, "t12i0100", 8), 0);
	n = build(h, 0x0303, c, 1, NULL, 0);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4 + 24, "000000000000");
	/* No cipher: twelve 0s for the ciphers too. */
	n = build(h, 0x0303, NULL, 0, NULL, 0);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	ck_assert_str_eq(ja4, "t12i000000_000000000000_000000000000");
}
END_TEST

/* JA4.md, "ALPN Extension Value", every example of it and a few more. */
START_TEST(test_alpn_rule)
{
	static const struct {
		const char *value; /* the first ALPN value */
		size_t len;
		const char *want;
	} cases[] = {
		{ "h2", 2, "h2" },
		{ "http/1.1", 8, "h1" },
		{ "a", 1, "aa" },
		{ "", 0, "00" },
		{ "\xab", 1, "ab" },
		{ "\x20", 1, "20" },
		{ "\xab\xcd", 2, "ad" },
		{ "\x20\x61", 2, "21" },
		{ "\x30\xab", 2, "3b" },
		{ "\x61\x20", 2, "60" },
		{ "\x30\x31\xab\xcd", 4, "3d" },
		{ "\x30\xab\xcd\x31", 4, "01" },
	};
	static const uint16_t c[] = { 0x1301 };
	uint8_t h[512], body[64];
	char ja4[TLS_JA4_LEN + 1];
	size_t n;

	for (size_t i = 0; i < nitems(cases); i++) {
		size_t len = cases[i].len;
		struct ext e = { 0x0010, body, len + 3 + 3 };

		/* the value, then a second one ("h3") that must not count */
		body[0] = 0;
		body[1] = (uint8_t)(len + 1 + 3);
		body[2] = (uint8_t)len;
		memcpy(body + 3, cases[i].value, len);
		memcpy(body + 3 + len, "\x02h3", 3);
		n = build(h, 0x0303, c, 1, &e, 1);
		ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
		ck_assert_msg(strncmp(ja4 + 8, cases[i].want, 2) == 0,
		    "case %zu: %s, want %s", i, ja4, cases[i].want);
	}
	/* An ALPN extension with an empty list: "00". */
	{
		struct ext e = { 0x0010, B("\x00\x00") };

		n = build(h, 0x0303, c, 1, &e, 1);
		ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
		ck_assert_int_eq(strncmp(ja4 + 8, "00", 2), 0);
	}
}
END_TEST

/* JA4.md, "TLS and DTLS Version". */
START_TEST(test_version)
{
	static const struct {
		uint16_t legacy;
		const char *sv; /* supported_versions body, or NULL */
		size_t svlen;
		const char *want;
	} cases[] = {
		{ 0x0303, NULL, 0, "12" },
		{ 0x0302, NULL, 0, "11" },
		{ 0x0301, NULL, 0, "10" },
		{ 0x0300, NULL, 0, "s3" },
		{ 0x0002, NULL, 0, "s2" },
		{ 0x0200, NULL, 0, "00" },
		{ 0x0303, "\x04\x03\x04\x03\x03", 5, "13" },
		/* the highest, wherever it is, GREASE left out */
		{ 0x0303, "\x06\x03\x03\xfa\xfa\x03\x04", 7, "13" },
		{ 0x0303, "\x02\x03\x05", 3, "00" },
		/* nothing but GREASE: the hello's own version */
		{ 0x0301, "\x02\x1a\x1a", 3, "10" },
		/* the hello's version ignored when the extension is there */
		{ 0x0304, "\x02\x03\x02", 3, "11" },
	};
	static const uint16_t c[] = { 0x1301 };
	uint8_t h[512];
	char ja4[TLS_JA4_LEN + 1];
	size_t n;

	for (size_t i = 0; i < nitems(cases); i++) {
		struct ext e = { 0x002b, (const uint8_t *)cases[i].sv,
			cases[i].svlen };

		n = build(h, cases[i].legacy, c, 1, &e, cases[i].sv ? 1 : 0);
		ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
		ck_assert_msg(strncmp(ja4 + 1, cases[i].want, 2) == 0,
		    "case %zu: %s, want %s", i, ja4, cases[i].want);
	}
}
END_TEST

/* Every length checked: a hello whose one extension lies. */
START_TEST(test_malformed)
{
	static const struct ext bad[] = {
		{ 0x0010, B("\x00\x04\x02h2") }, /* list too long */
		{ 0x0010, B("\x00\x05\x02h2\x05") }, /* 2nd name overruns */
		{ 0x0010, B("\x00\x03\x02h2\x00") }, /* bytes after list */
		{ 0x000a, B("\x00\x03\x00\x1d\x00") }, /* odd group list */
		{ 0x000a, B("\x00\x06\x00\x1d") }, /* groups overrun */
		{ 0x000b, B("\x02\x00") }, /* formats overrun */
		{ 0x000d, B("\x00\x02\x04\x03\x00") }, /* bytes after sigs */
		{ 0x002b, B("\x03\x03\x04\x03") }, /* odd versions */
		{ 0x002b, B("") }, /* no length */
	};
	static const uint16_t c[] = { 0x1301 };
	uint8_t h[512];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n;

	for (size_t i = 0; i < nitems(bad); i++) {
		n = build(h, 0x0303, c, 1, &bad[i], 1);
		ck_assert_msg(tls_ja3(h, n, ja3) == -1, "case %zu", i);
		ck_assert_str_eq(ja3, "");
		ck_assert_msg(tls_ja4(h, n, ja4) == -1, "case %zu", i);
		ck_assert_str_eq(ja4, "");
		ck_assert_int_eq(tls_fingerprints(h, n, ja3, ja4), -1);
		ck_assert_str_eq(ja3, "");
		ck_assert_str_eq(ja4, "");
	}
	/* Not a handshake record; not a ClientHello; an odd cipher list;
	 * a byte after the record. */
	n = build(h, 0x0303, c, 1, NULL, 0);
	h[0] = 0x17;
	ck_assert_int_eq(tls_ja4(h, n, ja4), -1);
	h[0] = 0x16;
	h[5] = 0x02;
	ck_assert_int_eq(tls_ja4(h, n, ja4), -1);
	h[5] = 0x01;
	h[9 + 2 + 32 + 1 + 32 + 1] = 3;
	ck_assert_int_eq(tls_ja4(h, n, ja4), -1);
	h[9 + 2 + 32 + 1 + 32 + 1] = 2;
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
	h[n] = 0;
	ck_assert_int_eq(tls_ja4(h, n + 1, ja4), -1);
}
END_TEST

static void
refuse_every_truncation(const uint8_t *h, size_t n)
{
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];

	for (size_t len = 0; len < n; len++) {
		memset(ja3, 'x', sizeof(ja3));
		memset(ja4, 'x', sizeof(ja4));
		ck_assert_int_eq(tls_ja3(h, len, ja3), -1);
		ck_assert_str_eq(ja3, "");
		ck_assert_int_eq(tls_ja4(h, len, ja4), -1);
		ck_assert_str_eq(ja4, "");
	}
	ck_assert_int_eq(tls_ja3(h, n, ja3), 0);
	ck_assert_int_eq(tls_ja4(h, n, ja4), 0);
}

START_TEST(test_every_truncation_refused)
{
	static size_t (*const hellos[])(uint8_t *) = { chrome_hello,
		firefox_hello, tls12_hello, baad_hello };
	uint8_t h[4096];
	char ja4[TLS_JA4_LEN + 1];
	size_t n;

	n = foxio_hello(h, B(sigs));
	refuse_every_truncation(h, n);
	for (size_t i = 0; i < nitems(hellos); i++)
		refuse_every_truncation(h, hellos[i](h));
	/* A lying length: the extensions' (after the record and handshake
	 * headers, version, random, session id, 16 ciphers, compression). */
	n = chrome_hello(h);
	ck_assert_uint_eq(h[112] << 8 | h[113], n - 114);
	h[113]++;
	ck_assert_int_eq(tls_ja4(h, n, ja4), -1);
}
END_TEST

/*
 * Our own ClientHellos (tls.c), pinned: a change here changes how the
 * proxy's clients look. Random GREASE, key and padding change nothing.
 * The values agree with Wireshark 4.0.17's JA3 and FoxIO's python/ja4.py
 * (0e54bc8) for the same bytes.
 */
START_TEST(test_our_client_hello)
{
	uint8_t secret[TLS_SECRET_LEN] = { 1 }, h[TLS_HELLO_MAX];
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	size_t n;

	for (uint32_t ts = 1; ts <= 3; ts++) {
		n = tls_client_hello_build(h, sizeof(h), secret,
		    "www.example.com", ts, TLS_HELLO_CLASSIC_LEN);
		ck_assert_uint_eq(n, TLS_HELLO_CLASSIC_LEN);
		ck_assert_int_eq(tls_fingerprints(h, n, ja3, ja4), 0);
		ck_assert_str_eq(ja3, "07ea0565b243f05bdd96c34cc7d46a55");
		ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
	}
	n = tls_client_hello_build(
	    h, sizeof(h), secret, "", 1, TLS_HELLO_CLASSIC_LEN);
	ck_assert_int_eq(tls_fingerprints(h, n, ja3, ja4), 0);
	ck_assert_str_eq(ja3, "f370203dd6d2120995ded4db23cf0343");
	ck_assert_str_eq(ja4, "t13i1515h2_8daaf6152771_e5627efa2ab1");
	n = tls_client_hello_build_pq(
	    h, sizeof(h), secret, "www.example.com", 1, TLS_HELLO_PQ_LEN);
	ck_assert_uint_eq(n, TLS_HELLO_PQ_LEN);
	ck_assert_int_eq(tls_fingerprints(h, n, ja3, ja4), 0);
	ck_assert_str_eq(ja3, "1a4e814b24e5c2963ce9270022fbb14c");
	ck_assert_str_eq(ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("fingerprint");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_foxio_captures);
	tcase_add_test(tc, test_published_vectors);
	tcase_add_test(tc, test_ja3_readme);
	tcase_add_test(tc, test_grease_ignored);
	tcase_add_test(tc, test_no_sni_no_alpn_no_sigs);
	tcase_add_test(tc, test_alpn_rule);
	tcase_add_test(tc, test_version);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_every_truncation_refused);
	tcase_add_test(tc, test_our_client_hello);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
