#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "tls.h"
#include "util.h"
#include "vectors.h"

#define V(name) "A4_fake_tls." name

/* gen_vectors.py builds the first flight from this obfuscated2 case. */
#define FIRST_FLIGHT_O2_CASE "A2_obfuscated2.cases.2."

/* The hex vector at path; its length must be want_len unless 0. */
static uint8_t *
vbytes(const char *path, size_t want_len, size_t *len)
{
	size_t n;
	uint8_t *b = vec_hex(path, &n);

	if (want_len != 0)
		ck_assert_msg(n == want_len, "%s: %zu bytes, want %zu", path, n,
		    want_len);
	if (len != NULL)
		*len = n;
	return b;
}

static void
expect(const uint8_t *got, size_t len, const char *path)
{
	size_t wlen;
	uint8_t *want = vec_hex(path, &wlen);

	ck_assert_msg(wlen == len, "%s: length %zu, want %zu", path, len, wlen);
	ck_assert_msg(memcmp(got, want, len) == 0, "%s differs", path);
	free(want);
}

/* det(label, n) of gen_vectors.py: SHA256(label || BE32(i)) blocks. */
static void
det(const char *label, uint8_t *out, size_t n)
{
	uint8_t blk[32], ctr[4];

	for (uint32_t i = 0; n > 0; i++) {
		size_t k = n < 32 ? n : 32;

		ctr[0] = (uint8_t)(i >> 24);
		ctr[1] = (uint8_t)(i >> 16);
		ctr[2] = (uint8_t)(i >> 8);
		ctr[3] = (uint8_t)i;
		crypto_sha256(label, strlen(label), ctr, 4, blk);
		memcpy(out, blk, k);
		out += k;
		n -= k;
	}
}

static uint8_t *
vec_hello(size_t *len)
{
	return vbytes(
	    V("client_hello"), (size_t)vec_int(V("client_hello_len")), len);
}

static void
vec_secret(uint8_t secret[TLS_SECRET_LEN])
{
	uint8_t *s = vbytes(V("secret"), TLS_SECRET_LEN, NULL);

	memcpy(secret, s, TLS_SECRET_LEN);
	free(s);
}

/* ------------------------------------------------------------- ClientHello */

START_TEST(test_vector_hmac_and_xor)
{
	size_t len;
	uint8_t *hello = vec_hello(&len), secret[TLS_SECRET_LEN], d[32];
	uint8_t zeroed[TLS_HELLO_MAX], x[32];
	uint32_t ts = 0;
	uint32_t want_ts = (uint32_t)vec_int(V("timestamp"));

	vec_secret(secret);
	/* The vectors' own relation: D over the zeroed hello, X = random^D. */
	memcpy(zeroed, hello, len);
	memset(zeroed + TLS_RANDOM_OFF, 0, TLS_RANDOM_LEN);
	crypto_hmac_sha256(secret, sizeof(secret), zeroed, len, NULL, 0, d);
	expect(d, 32, V("hmac_over_zeroed_hello"));
	expect(hello + TLS_RANDOM_OFF, TLS_RANDOM_LEN, V("client_random"));
	for (int i = 0; i < 32; i++)
		x[i] = hello[TLS_RANDOM_OFF + i] ^ d[i];
	expect(x, 32, V("client_random_xor_hmac"));
	ck_assert_uint_eq(want_ts,
	    (uint32_t)x[28] | (uint32_t)x[29] << 8 | (uint32_t)x[30] << 16 |
	        (uint32_t)x[31] << 24);

	/* And what tls_hello_verify makes of it. */
	ck_assert_int_eq(tls_hello_verify(hello, len,
	                     (const uint8_t(*)[TLS_SECRET_LEN])secret, 1, &ts),
	    0);
	ck_assert_uint_eq(ts, want_ts);
	ck_assert_uint_eq(ts, 1700000000u);
	free(hello);
}
END_TEST

START_TEST(test_vector_verify_secret_index)
{
	size_t len;
	uint8_t *hello = vec_hello(&len), secrets[3][TLS_SECRET_LEN];
	uint32_t ts = 12345;

	det("spec/tls/wrong-secret", secrets[0], TLS_SECRET_LEN);
	det("check_tls/other", secrets[1], TLS_SECRET_LEN);
	vec_secret(secrets[2]);
	ck_assert_int_eq(tls_hello_verify(hello, len, secrets, 3, &ts), 2);
	ck_assert_uint_eq(ts, (uint32_t)vec_int(V("timestamp")));

	/* Wrong secrets only: -1 and ts untouched. */
	ts = 12345;
	ck_assert_int_eq(tls_hello_verify(hello, len, secrets, 2, &ts), -1);
	ck_assert_uint_eq(ts, 12345);
	ck_assert_int_eq(tls_hello_verify(hello, len, secrets, 0, &ts), -1);

	/* Any changed byte outside the random's last 4 breaks the HMAC. */
	for (size_t i = 0; i < len; i++) {
		if (i >= TLS_RANDOM_OFF + TLS_HMAC_CHECK_LEN &&
		    i < TLS_RANDOM_OFF + TLS_RANDOM_LEN)
			continue;
		hello[i] ^= 0x01;
		ck_assert_msg(
		    tls_hello_verify(hello, len, secrets + 2, 1, &ts) == -1,
		    "byte %zu", i);
		hello[i] ^= 0x01;
	}
	/* Too short to hold a random. */
	ck_assert_int_eq(tls_hello_verify(hello, 42, secrets + 2, 1, &ts), -1);
	free(hello);
}
END_TEST

START_TEST(test_vector_parse)
{
	size_t len, n;
	uint8_t *hello = vec_hello(&len), *want;
	struct tls_hello ch;
	unsigned long suite =
	    strtoul(vec_str(V("first_non_grease_cipher_suite")), NULL, 16);

	ck_assert_int_eq(tls_hello_parse(hello, len, &ch), 0);
	expect(ch.random, TLS_RANDOM_LEN, V("client_random"));
	want = vbytes(V("session_id"), 0, &n);
	ck_assert_uint_eq(ch.session_id_len, n);
	ck_assert_mem_eq(ch.session_id, want, n);
	free(want);
	ck_assert_int_eq(ch.has_sni, 1);
	ck_assert_str_eq(ch.sni, vec_str(V("sni")));
	ck_assert_uint_eq(ch.cipher_suite, suite);
	ck_assert_uint_eq(ch.cipher_suite, 0x1301);
	ck_assert_int_eq(ch.tls13, 1);
	free(hello);
}
END_TEST

START_TEST(test_assemble_single)
{
	size_t len, jlen = 0, used = 0;
	uint8_t *hello = vec_hello(&len), joined[TLS_HELLO_MAX];
	uint8_t wire[1024];

	ck_assert_int_eq(tls_hello_assemble(
	                     hello, len, joined, sizeof(joined), &jlen, &used),
	    TLS_HELLO_OK);
	ck_assert_uint_eq(jlen, len);
	ck_assert_uint_eq(used, len);
	ck_assert_mem_eq(joined, hello, len);

	/* Bytes after the hello are left to the caller. */
	memcpy(wire, hello, len);
	memcpy(wire + len, "\x14\x03\x03\x00\x01\x01", 6);
	ck_assert_int_eq(tls_hello_assemble(wire, len + 6, joined,
	                     sizeof(joined), &jlen, &used),
	    TLS_HELLO_OK);
	ck_assert_uint_eq(used, len);
	ck_assert_uint_eq(jlen, len);

	/* One byte at a time: need more until the very last one. */
	for (size_t k = 0; k < len; k++)
		ck_assert_msg(
		    tls_hello_assemble(hello, k, joined, sizeof(joined), &jlen,
		        &used) == TLS_HELLO_NEED_MORE,
		    "prefix %zu", k);

	/* joined_cap too small is refused, not overrun. */
	ck_assert_int_eq(
	    tls_hello_assemble(hello, len, joined, len - 1, &jlen, &used),
	    TLS_HELLO_BAD);
	free(hello);
}
END_TEST

/*
 * The vector hello's handshake message cut at the given offsets into
 * several `16 03 <ver>` records; returns the wire length.
 */
static size_t
fragment(const uint8_t *hello, size_t len, const size_t *cuts, size_t ncuts,
    uint8_t ver, uint8_t *wire)
{
	const uint8_t *msg = hello + TLS_RECORD_HEADER_LEN;
	size_t mlen = len - TLS_RECORD_HEADER_LEN, o = 0, prev = 0;

	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : mlen, n = end - prev;

		wire[o++] = 0x16;
		wire[o++] = 0x03;
		wire[o++] = ver;
		wire[o++] = (uint8_t)(n >> 8);
		wire[o++] = (uint8_t)n;
		memcpy(wire + o, msg + prev, n);
		o += n;
		prev = end;
	}
	return o;
}

START_TEST(test_assemble_fragments)
{
	/* Cuts inside the handshake header, inside the random, anywhere. */
	static const size_t cuts_a[] = { 1, 3, 100, 408 };
	static const size_t cuts_b[] = { 2 };
	static const size_t cuts_c[] = { 4, 40, 41, 42, 300, 511 };
	static const struct {
		const size_t *cuts;
		size_t n;
	} plans[] = {
		{ cuts_a, nitems(cuts_a) },
		{ cuts_b, nitems(cuts_b) },
		{ cuts_c, nitems(cuts_c) },
	};
	size_t len, wlen, jlen = 0, used = 0;
	uint8_t *hello = vec_hello(&len), secret[TLS_SECRET_LEN];
	uint8_t wire[TLS_HELLO_WIRE_MAX], joined[TLS_HELLO_MAX];
	uint32_t ts = 0;
	struct tls_hello ch;

	vec_secret(secret);
	for (size_t p = 0; p < nitems(plans); p++) {
		wlen =
		    fragment(hello, len, plans[p].cuts, plans[p].n, 0x01, wire);
		ck_assert_uint_eq(wlen, len + 5 * plans[p].n);
		for (size_t k = 0; k < wlen; k++)
			ck_assert_msg(
			    tls_hello_assemble(wire, k, joined, sizeof(joined),
			        &jlen, &used) == TLS_HELLO_NEED_MORE,
			    "plan %zu prefix %zu", p, k);
		memset(joined, 0xaa, sizeof(joined));
		ck_assert_int_eq(tls_hello_assemble(wire, wlen, joined,
		                     sizeof(joined), &jlen, &used),
		    TLS_HELLO_OK);
		ck_assert_uint_eq(used, wlen);
		ck_assert_uint_eq(jlen, len);
		ck_assert_mem_eq(joined, hello, len);
		ck_assert_int_eq(
		    tls_hello_verify(joined, jlen,
		        (const uint8_t(*)[TLS_SECRET_LEN])secret, 1, &ts),
		    0);
		ck_assert_uint_eq(ts, (uint32_t)vec_int(V("timestamp")));
		ck_assert_int_eq(tls_hello_parse(joined, jlen, &ch), 0);
		ck_assert_str_eq(ch.sni, vec_str(V("sni")));
	}

	/* A continuation record of another version or type is refused. */
	wlen = fragment(hello, len, cuts_a, nitems(cuts_a), 0x01, wire);
	wire[5 + 1 + 2] = 0x03; /* second record: 16 03 03 */
	ck_assert_int_eq(tls_hello_assemble(wire, 5 + 1 + 3, joined,
	                     sizeof(joined), &jlen, &used),
	    TLS_HELLO_BAD);
	ck_assert_int_eq(tls_hello_assemble(
	                     wire, wlen, joined, sizeof(joined), &jlen, &used),
	    TLS_HELLO_BAD);
	wire[5 + 1 + 2] = 0x01;
	wire[5 + 1] = 0x17;
	ck_assert_int_eq(tls_hello_assemble(wire, 5 + 1 + 1, joined,
	                     sizeof(joined), &jlen, &used),
	    TLS_HELLO_BAD);

	/* A single 16 03 03 record is accepted and kept as it is. */
	wlen = fragment(hello, len, NULL, 0, 0x03, wire);
	ck_assert_int_eq(tls_hello_assemble(
	                     wire, wlen, joined, sizeof(joined), &jlen, &used),
	    TLS_HELLO_OK);
	ck_assert_mem_eq(joined, wire, wlen);
	free(hello);
}
END_TEST

START_TEST(test_assemble_too_many_fragments)
{
	size_t cuts[TLS_HELLO_MAX_FRAGMENTS], len, wlen, jlen, used;
	uint8_t *hello = vec_hello(&len), wire[TLS_HELLO_WIRE_MAX];
	uint8_t joined[TLS_HELLO_MAX];

	/* TLS_HELLO_MAX_FRAGMENTS records: fine; one more: refused. */
	for (size_t i = 0; i < nitems(cuts); i++)
		cuts[i] = i + 1;
	wlen = fragment(hello, len, cuts, nitems(cuts) - 1, 0x01, wire);
	ck_assert_int_eq(tls_hello_assemble(
	                     wire, wlen, joined, sizeof(joined), &jlen, &used),
	    TLS_HELLO_OK);
	ck_assert_mem_eq(joined, hello, len);
	wlen = fragment(hello, len, cuts, nitems(cuts), 0x01, wire);
	ck_assert_int_eq(tls_hello_assemble(
	                     wire, wlen, joined, sizeof(joined), &jlen, &used),
	    TLS_HELLO_BAD);
	free(hello);
}
END_TEST

static int
assemble_hex(const char *hex)
{
	uint8_t buf[64], joined[TLS_HELLO_MAX];
	size_t n = strlen(hex) / 2, jlen, used;

	ck_assert(n <= sizeof(buf) && hex_decode(hex, buf, n) == 0);
	return tls_hello_assemble(buf, n, joined, sizeof(joined), &jlen, &used);
}

START_TEST(test_assemble_not_tls_and_bad)
{
	ck_assert_int_eq(assemble_hex(""), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("16"), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("1603"), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("160301"), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("160303"), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("1603010200"), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("ef"), TLS_HELLO_NOT_TLS);
	ck_assert_int_eq(assemble_hex("17"), TLS_HELLO_NOT_TLS);
	ck_assert_int_eq(assemble_hex("47455420"), TLS_HELLO_NOT_TLS);
	ck_assert_int_eq(assemble_hex("1604"), TLS_HELLO_NOT_TLS);
	ck_assert_int_eq(assemble_hex("160302"), TLS_HELLO_NOT_TLS);
	ck_assert_int_eq(assemble_hex("160300"), TLS_HELLO_NOT_TLS);
	/* Empty and huge records. */
	ck_assert_int_eq(assemble_hex("1603010000"), TLS_HELLO_BAD);
	ck_assert_int_eq(assemble_hex("160301ffff"), TLS_HELLO_BAD);
	ck_assert_int_eq(assemble_hex("1603014001"), TLS_HELLO_BAD);
	/* Not a ClientHello. */
	ck_assert_int_eq(assemble_hex("160301020002"), TLS_HELLO_BAD);
	/* Message longer than 16384, or too short to be a hello. */
	ck_assert_int_eq(assemble_hex("16030102000100fffd"), TLS_HELLO_BAD);
	ck_assert_int_eq(assemble_hex("1603010200010000"), TLS_HELLO_NEED_MORE);
	ck_assert_int_eq(assemble_hex("160301020001000004"), TLS_HELLO_BAD);
	/* The record holds more than the message (ClientHello of 0x29). */
	ck_assert_int_eq(assemble_hex("160301003001000029"), TLS_HELLO_BAD);
	/* A message whose header says more than 16384 - 4 bytes. */
	ck_assert_int_eq(assemble_hex("16030100040100"
	                              "3ffd"),
	    TLS_HELLO_BAD);
}
END_TEST

/*
 * A hello with the given extensions block (raw, without its length) and
 * the usual fields before it; returns the record length.
 */
static size_t
make_hello(uint8_t *out, const char *ext_hex, int with_ext)
{
	static const char head[] =
	    "0303"
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "20"
	    "1111111111111111111111111111111111111111111111111111111111111111"
	    "0006"
	    "1a1a"
	    "c02f"
	    "1302"
	    "0100";
	size_t hn = strlen(head) / 2, en = strlen(ext_hex) / 2, body, o;

	ck_assert(hex_decode(head, out + 9, hn) == 0);
	o = 9 + hn;
	if (with_ext) {
		out[o++] = (uint8_t)(en >> 8);
		out[o++] = (uint8_t)en;
		ck_assert(hex_decode(ext_hex, out + o, en) == 0);
		o += en;
	}
	body = o - 9;
	out[0] = 0x16;
	out[1] = 0x03;
	out[2] = 0x01;
	out[3] = (uint8_t)((body + 4) >> 8);
	out[4] = (uint8_t)(body + 4);
	out[5] = 0x01;
	out[6] = 0;
	out[7] = (uint8_t)(body >> 8);
	out[8] = (uint8_t)body;
	return o;
}

static int
parse_ext(const char *ext_hex, struct tls_hello *ch)
{
	uint8_t rec[1024];
	size_t n = make_hello(rec, ext_hex, 1);

	return tls_hello_parse(rec, n, ch);
}

START_TEST(test_parse_structure)
{
	struct tls_hello ch;
	uint8_t rec[1024];
	size_t n;

	/* No extensions at all is legal; suite 1302 is the first 1.3 one. */
	n = make_hello(rec, "", 0);
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), 0);
	ck_assert_int_eq(ch.has_sni, 0);
	ck_assert_int_eq(ch.tls13, 0);
	ck_assert_uint_eq(ch.cipher_suite, 0x1302);
	ck_assert_uint_eq(ch.session_id_len, 32);
	ck_assert_uint_eq(ch.session_id[31], 0x11);

	/* SNI "a.b", supported_versions {1.2, 1.3}, unknown extension. */
	ck_assert_int_eq(parse_ext("000000080006000003612e62"
	                           "002b00050403030304"
	                           "fafa0000",
	                     &ch),
	    0);
	ck_assert_int_eq(ch.has_sni, 1);
	ck_assert_str_eq(ch.sni, "a.b");
	ck_assert_int_eq(ch.tls13, 1);
	ck_assert_int_eq(parse_ext("002b0003020303", &ch), 0);
	ck_assert_int_eq(ch.tls13, 0);

	/* Two SNI extensions; two host names in one. */
	ck_assert_int_eq(parse_ext("000000080006000003612e62"
	                           "000000080006000003612e63",
	                     &ch),
	    -1);
	ck_assert_int_eq(
	    parse_ext("0000000e000c000003612e62000003612e63", &ch), -1);
	/* A second SNI extension even if the first had no host_name. */
	ck_assert_int_eq(parse_ext("000000080006010003612e62", &ch), 0);
	ck_assert_int_eq(ch.has_sni, 0);
	ck_assert_int_eq(parse_ext("000000080006010003612e62"
	                           "000000080006000003612e62",
	                     &ch),
	    -1);
	/* Empty list, empty name, a NUL in the name. */
	ck_assert_int_eq(parse_ext("000000020000", &ch), -1);
	ck_assert_int_eq(parse_ext("00000005000300000000", &ch), -1);
	ck_assert_int_eq(parse_ext("000000080006000003610062", &ch), -1);
	/* Name or list length past its end. */
	ck_assert_int_eq(parse_ext("000000080006000004612e62", &ch), -1);
	ck_assert_int_eq(parse_ext("000000080007000003612e62", &ch), -1);
	/* Extension length past the block, or short of it. */
	ck_assert_int_eq(parse_ext("000000090006000003612e62", &ch), -1);
	ck_assert_int_eq(parse_ext("fafa0001", &ch), -1);
	ck_assert_int_eq(parse_ext("fafa00", &ch), -1);
	/* Two supported_versions; odd or empty list. */
	ck_assert_int_eq(parse_ext("002b0003020304002b0003020304", &ch), -1);
	ck_assert_int_eq(parse_ext("002b000403030403", &ch), -1);
	ck_assert_int_eq(parse_ext("002b000100", &ch), -1);

	/* Session id longer than 32. */
	n = make_hello(rec, "", 0);
	rec[9 + 2 + 32] = 33;
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), -1);
	/* Odd cipher suites length, or zero. */
	n = make_hello(rec, "", 0);
	rec[9 + 2 + 32 + 1 + 32 + 1] = 5;
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), -1);
	rec[9 + 2 + 32 + 1 + 32 + 1] = 0;
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), -1);
	/* Legacy version other than 03 03; wrong handshake type. */
	n = make_hello(rec, "", 0);
	rec[10] = 0x01;
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), -1);
	n = make_hello(rec, "", 0);
	rec[5] = 0x02;
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), -1);
	/* Record and handshake lengths that do not agree with len. */
	n = make_hello(rec, "", 0);
	ck_assert_int_eq(tls_hello_parse(rec, n - 1, &ch), -1);
	ck_assert_int_eq(tls_hello_parse(rec, n + 1, &ch), -1);
	rec[8]--;
	ck_assert_int_eq(tls_hello_parse(rec, n, &ch), -1);
	ck_assert_uint_eq(ch.session_id_len, 0); /* zeroed on failure */
	ck_assert_int_eq(tls_hello_parse(rec, 0, &ch), -1);
}
END_TEST

START_TEST(test_parse_vector_truncated_and_mutated)
{
	size_t len;
	uint8_t *hello = vec_hello(&len), copy[TLS_HELLO_MAX];
	struct tls_hello ch;
	int ok = 0;

	for (size_t k = 0; k < len; k++)
		ck_assert_msg(
		    tls_hello_parse(hello, k, &ch) == -1, "len %zu", k);
	/*
	 * Every byte changed: must not crash (ASan watches); some changes
	 * (random, session id, padding) still parse, length changes do not.
	 */
	for (size_t i = 0; i < len; i++) {
		memcpy(copy, hello, len);
		copy[i] ^= 0xff;
		if (tls_hello_parse(copy, len, &ch) == 0) {
			ok++;
			ck_assert_uint_le(ch.session_id_len, 32);
			ck_assert_uint_le(strlen(ch.sni), TLS_SNI_MAX);
		}
	}
	ck_assert_int_gt(ok, 0);
	ck_assert_int_lt(ok, (int)len);
	/* A record length of its own that does not match. */
	memcpy(copy, hello, len);
	copy[3] = 0xff;
	ck_assert_int_eq(tls_hello_parse(copy, len, &ch), -1);
	free(hello);
}
END_TEST

START_TEST(test_timestamp_window)
{
	int64_t now = 1700000000;

	ck_assert_int_eq(tls_timestamp_ok(1700000000u, now, 600, 120), 1);
	ck_assert_int_eq(tls_timestamp_ok(1700000000u - 600, now, 600, 120), 1);
	ck_assert_int_eq(tls_timestamp_ok(1700000000u - 601, now, 600, 120), 0);
	ck_assert_int_eq(tls_timestamp_ok(1700000000u + 120, now, 600, 120), 1);
	ck_assert_int_eq(tls_timestamp_ok(1700000000u + 121, now, 600, 120), 0);
	ck_assert_int_eq(tls_timestamp_ok(0, now, 600, 120), 0);
	ck_assert_int_eq(tls_timestamp_ok(0xffffffffu, now, 600, 120), 0);
	ck_assert_int_eq(tls_timestamp_ok(5, 0, 0, 10), 1);
	ck_assert_int_eq(tls_timestamp_ok(11, 0, 0, 10), 0);
}
END_TEST

/* ------------------------------------------------------------- ServerHello */

START_TEST(test_vector_server_hello)
{
	int reversed = _i;
	size_t len, total = (size_t)vec_int(V("server_hello_total_len"));
	size_t cert_len = (size_t)vec_int(V("fake_cert_len")), rt = 0;
	uint8_t *hello = vec_hello(&len), secret[TLS_SECRET_LEN], h[32];
	uint8_t *key = vbytes(V("server_key_share"), 32, NULL), *cert;
	uint8_t out[4096], wrong[TLS_SECRET_LEN];
	struct tls_hello ch;

	vec_secret(secret);
	cert = malloc(cert_len);
	ck_assert_ptr_nonnull(cert);
	det("spec/tls/fake-cert", cert, cert_len);
	crypto_sha256(cert, cert_len, NULL, 0, h);
	expect(h, 32, V("fake_cert_sha256"));

	ck_assert_int_eq(tls_hello_parse(hello, len, &ch), 0);
	ck_assert_uint_eq(tls_server_hello_len(&ch, cert_len), total);
	ck_assert_uint_eq(tls_server_hello_build(out, sizeof(out), &ch, secret,
	                      key, cert, cert_len, reversed),
	    total);
	if (reversed) {
		expect(
		    out, 127, V("server_hello_reversed_ext_first_127_bytes"));
		expect(out + 11, 32, V("server_random_reversed_ext"));
	} else {
		expect(out, 127, V("server_hello_first_127_bytes"));
		expect(out + 11, 32, V("server_random"));
		crypto_sha256(out, total, NULL, 0, h);
		expect(h, 32, V("server_hello_sha256"));
	}
	expect(out + 127, 11, V("server_hello_ccs_and_appdata_header"));
	ck_assert_mem_eq(out + 138, cert, cert_len);

	/* The client's check: every prefix wants more, the whole is fine. */
	for (size_t k = 0; k < total; k++)
		ck_assert_msg(
		    tls_server_hello_check(out, k, ch.random, secret, &rt) == 0,
		    "prefix %zu", k);
	ck_assert_int_eq(
	    tls_server_hello_check(out, total, ch.random, secret, &rt), 1);
	ck_assert_uint_eq(rt, total);
	ck_assert_int_eq(
	    tls_server_hello_check(out, sizeof(out), ch.random, secret, &rt),
	    1);
	ck_assert_uint_eq(rt, total);
	det("spec/tls/wrong-secret", wrong, sizeof(wrong));
	ck_assert_int_eq(
	    tls_server_hello_check(out, total, ch.random, wrong, &rt), -1);
	out[total - 1] ^= 1;
	ck_assert_int_eq(
	    tls_server_hello_check(out, total, ch.random, secret, &rt), -1);

	/* Too small a buffer, bad certificate lengths. */
	ck_assert_uint_eq(tls_server_hello_build(out, total - 1, &ch, secret,
	                      key, cert, cert_len, reversed),
	    0);
	ck_assert_uint_eq(tls_server_hello_len(&ch, 0), 0);
	ck_assert_uint_eq(tls_server_hello_len(&ch, 16385), 0);
	free(cert);
	free(key);
	free(hello);
}
END_TEST

START_TEST(test_server_hello_shapes)
{
	static const size_t sid_lens[] = { 0, 1, 17, 32 };
	uint8_t secret[TLS_SECRET_LEN], out[TLS_HELLO_MAX * 2];
	struct tls_hello ch;
	size_t total, rt;

	det("check_tls/secret", secret, sizeof(secret));
	for (size_t i = 0; i < nitems(sid_lens); i++) {
		size_t sl = sid_lens[i], cert_len = 100 + 1000 * i;

		memset(&ch, 0, sizeof(ch));
		det("check_tls/random", ch.random, sizeof(ch.random));
		memset(ch.session_id, 0x5a, sl);
		ch.session_id_len = (uint8_t)sl;
		ch.cipher_suite = i == 0 ? 0 : 0x1303;
		total = tls_server_hello_len(&ch, cert_len);
		ck_assert_uint_eq(total, 138 - 32 + sl + cert_len);
		ck_assert_uint_eq(
		    tls_server_hello_build(out, sizeof(out), &ch, secret, NULL,
		        NULL, cert_len, (int)(i & 1)),
		    total);
		/* Lengths at offsets 3 and 6..8 follow the session id. */
		ck_assert_uint_eq((size_t)out[3] << 8 | out[4], 122 - 32 + sl);
		ck_assert_uint_eq((size_t)out[7] << 8 | out[8], 118 - 32 + sl);
		ck_assert_uint_eq(out[43], sl);
		ck_assert_uint_eq(out[44 + sl], 0x13);
		ck_assert_uint_eq(out[45 + sl], i == 0 ? 0x01 : 0x03);
		ck_assert_uint_eq((size_t)out[total - cert_len - 2] << 8 |
		        out[total - cert_len - 1],
		    cert_len);
		ck_assert_int_eq(
		    tls_server_hello_check(out, total, ch.random, secret, &rt),
		    1);
		ck_assert_uint_eq(rt, total);
		ch.random[0] ^= 1;
		ck_assert_int_eq(
		    tls_server_hello_check(out, total, ch.random, secret, &rt),
		    -1);
	}
	ch.session_id_len = 33;
	ck_assert_uint_eq(tls_server_hello_len(&ch, 100), 0);
}
END_TEST

START_TEST(test_server_hello_check_malformed)
{
	uint8_t rnd[32] = { 0 }, secret[16] = { 0 }, buf[64];
	size_t rt;

	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(tls_server_hello_check(buf, 0, rnd, secret, &rt), 0);
	ck_assert_int_eq(tls_server_hello_check(buf, 1, rnd, secret, &rt), -1);
	memcpy(buf, "\x16\x03\x01", 3);
	ck_assert_int_eq(tls_server_hello_check(buf, 3, rnd, secret, &rt), -1);
	/* Record too short to hold a random. */
	memcpy(buf, "\x16\x03\x03\x00\x25\x02", 6);
	ck_assert_int_eq(tls_server_hello_check(buf, 6, rnd, secret, &rt), -1);
	/* Not a ServerHello. */
	memcpy(buf, "\x16\x03\x03\x00\x26\x01", 6);
	ck_assert_int_eq(tls_server_hello_check(buf, 6, rnd, secret, &rt), -1);
	/* Something other than CCS after the first record. */
	memcpy(buf, "\x16\x03\x03\x00\x26\x02", 6);
	ck_assert_int_eq(tls_server_hello_check(buf, 43, rnd, secret, &rt), 0);
	buf[43] = 0x17;
	ck_assert_int_eq(tls_server_hello_check(buf, 44, rnd, secret, &rt), -1);
	memcpy(buf + 43, "\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x00", 11);
	ck_assert_int_eq(tls_server_hello_check(buf, 53, rnd, secret, &rt), 0);
	ck_assert_int_eq(tls_server_hello_check(buf, 54, rnd, secret, &rt), -1);
	/* Well-formed, wrong HMAC. */
	buf[53] = 1;
	ck_assert_int_eq(tls_server_hello_check(buf, 54, rnd, secret, &rt), 0);
	ck_assert_int_eq(tls_server_hello_check(buf, 55, rnd, secret, &rt), -1);
}
END_TEST

START_TEST(test_cert_len_pick)
{
	for (int i = 0; i < 2000; i++) {
		size_t n = tls_cert_len_pick(2500, 4700);

		ck_assert_uint_ge(n, 2500);
		ck_assert_uint_le(n, 4700);
	}
	ck_assert_uint_eq(tls_cert_len_pick(3000, 3000), 3000);
	ck_assert_uint_eq(tls_cert_len_pick(3000, 10), 3000);
	ck_assert_uint_eq(tls_cert_len_pick(-5, 0), 1);
	ck_assert_uint_eq(tls_cert_len_pick(20000, 30000), 16384);
}
END_TEST

/* ------------------------------------------------------------- records */

static uint8_t *
first_flight_payload(size_t *len)
{
	size_t a, b;
	uint8_t *hdr = vec_hex(FIRST_FLIGHT_O2_CASE "header_wire", &a);
	uint8_t *frame =
	    vec_hex(FIRST_FLIGHT_O2_CASE "first_client_frame_wire", &b);
	uint8_t *out = malloc(a + b);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(a, 64);
	memcpy(out, hdr, a);
	memcpy(out + a, frame, b);
	*len = a + b;
	free(hdr);
	free(frame);
	return out;
}

START_TEST(test_reader_first_flight)
{
	size_t flen, plen, got;
	uint8_t *flight = vbytes(V("client_first_flight"), 0, &flen);
	uint8_t *want = first_flight_payload(&plen), buf[1024], acc[1024];
	struct tls_reader r;
	ssize_t n;

	ck_assert_uint_le(flen, sizeof(buf));
	/* In one piece. */
	tls_reader_init(&r, TLS_READER_FROM_CLIENT);
	memcpy(buf, flight, flen);
	n = tls_reader_feed(&r, buf, flen);
	ck_assert_int_eq(n, (ssize_t)plen);
	ck_assert_mem_eq(buf, want, plen);
	ck_assert_int_eq(tls_reader_at_boundary(&r), 1);

	/* Split at every pair of points (three pieces). */
	for (size_t s1 = 0; s1 <= flen; s1 += 3) {
		for (size_t s2 = s1; s2 <= flen; s2 += 7) {
			size_t cuts[4] = { 0, s1, s2, flen };

			tls_reader_init(&r, TLS_READER_FROM_CLIENT);
			got = 0;
			for (int k = 0; k < 3; k++) {
				size_t m = cuts[k + 1] - cuts[k];

				memcpy(buf, flight + cuts[k], m);
				n = tls_reader_feed(&r, buf, m);
				ck_assert_int_ge(n, 0);
				ck_assert_uint_le((size_t)n, m);
				memcpy(acc + got, buf, (size_t)n);
				got += (size_t)n;
			}
			ck_assert_uint_eq(got, plen);
			ck_assert_mem_eq(acc, want, plen);
		}
	}

	/* One byte at a time. */
	tls_reader_init(&r, TLS_READER_FROM_CLIENT);
	got = 0;
	for (size_t i = 0; i < flen; i++) {
		buf[0] = flight[i];
		n = tls_reader_feed(&r, buf, 1);
		ck_assert_int_ge(n, 0);
		ck_assert_int_le(n, 1);
		if (n == 1)
			acc[got++] = buf[0];
		ck_assert_int_eq(
		    tls_reader_at_boundary(&r), i == 5 || i == flen - 1);
	}
	ck_assert_uint_eq(got, plen);
	ck_assert_mem_eq(acc, want, plen);

	/* The server direction never takes a CCS. */
	tls_reader_init(&r, TLS_READER_FROM_SERVER);
	memcpy(buf, flight, flen);
	ck_assert_int_eq(tls_reader_feed(&r, buf, flen), -1);
	free(flight);
	free(want);
}
END_TEST

/* Feed hex in one go through a fresh reader; the payload length or -1. */
static ssize_t
read_hex(int dir, const char *hex)
{
	uint8_t buf[64];
	size_t n = strlen(hex) / 2;
	struct tls_reader r;

	ck_assert(n <= sizeof(buf) && hex_decode(hex, buf, n) == 0);
	tls_reader_init(&r, dir);
	return tls_reader_feed(&r, buf, n);
}

START_TEST(test_reader_errors)
{
	const int C = TLS_READER_FROM_CLIENT, S = TLS_READER_FROM_SERVER;
	uint8_t *big = malloc(5 + TLS_RECORD_MAX_CIPHER + 1);
	struct tls_reader r;

	ck_assert_int_eq(read_hex(C,
	                     "140303000101"
	                     "1703030002abcd"),
	    2);
	ck_assert_int_eq(read_hex(C,
	                     "1703030002abcd"
	                     "1703030001ef"),
	    3);
	ck_assert_int_eq(read_hex(S,
	                     "1703030002abcd"
	                     "1703030001ef"),
	    3);
	ck_assert_int_eq(read_hex(C, ""), 0);
	/* Incomplete is fine. */
	ck_assert_int_eq(read_hex(C, "14030300"), 0);
	/* Two CCS, CCS after data, CCS from the server. */
	ck_assert_int_eq(read_hex(C, "140303000101140303000101"), -1);
	ck_assert_int_eq(read_hex(C, "1703030001aa140303000101"), -1);
	ck_assert_int_eq(read_hex(S, "140303000101"), -1);
	/* CCS with another body or length. */
	ck_assert_int_eq(read_hex(C, "140303000102"), -1);
	ck_assert_int_eq(read_hex(C, "14030300020101"), -1);
	/* Other record types and versions, empty record. */
	ck_assert_int_eq(read_hex(C, "1603030001aa"), -1);
	ck_assert_int_eq(read_hex(C, "1503030002022f"), -1);
	ck_assert_int_eq(read_hex(C, "1703010001aa"), -1);
	ck_assert_int_eq(read_hex(C, "1702030001aa"), -1);
	ck_assert_int_eq(read_hex(C, "1703030000"), -1);
	ck_assert_int_eq(read_hex(S, "1703030000"), -1);
	/* Length limit 16640 both ways; 16641 refused at the header. */
	ck_assert_int_eq(read_hex(C, "1703034101"), -1);
	ck_assert_int_eq(read_hex(C, "170303ffff"), -1);
	ck_assert_int_eq(read_hex(C, "1703034100"), 0);
	ck_assert_ptr_nonnull(big);
	tls_record_header(big, 0);
	big[3] = TLS_RECORD_MAX_CIPHER >> 8;
	big[4] = TLS_RECORD_MAX_CIPHER & 0xff;
	memset(big + 5, 0x42, TLS_RECORD_MAX_CIPHER);
	tls_reader_init(&r, S);
	ck_assert_int_eq(tls_reader_feed(&r, big, 5 + TLS_RECORD_MAX_CIPHER),
	    TLS_RECORD_MAX_CIPHER);
	ck_assert_uint_eq(big[0], 0x42);
	ck_assert_uint_eq(big[TLS_RECORD_MAX_CIPHER - 1], 0x42);

	/* After an error the reader stays failed. */
	tls_reader_init(&r, C);
	big[0] = 0x16;
	ck_assert_int_eq(tls_reader_feed(&r, big, 5), -1);
	big[0] = 0x17;
	big[3] = 0;
	big[4] = 1;
	ck_assert_int_eq(tls_reader_feed(&r, big, 6), -1);
	ck_assert_int_eq(tls_reader_at_boundary(&r), 0);
	free(big);
}
END_TEST

START_TEST(test_record_header_round_trip)
{
	static const size_t sizes[] = { 1, 255, 256, 1425, 16384 };
	uint8_t hdr[TLS_RECORD_HEADER_LEN];
	uint8_t *buf = malloc(TLS_RECORD_HEADER_LEN + 16384);
	struct tls_reader r;

	tls_record_header(hdr, 256);
	ck_assert_mem_eq(hdr, "\x17\x03\x03\x01\x00", 5);
	tls_record_header(hdr, 16384);
	ck_assert_mem_eq(hdr, "\x17\x03\x03\x40\x00", 5);
	ck_assert_ptr_nonnull(buf);
	tls_reader_init(&r, TLS_READER_FROM_SERVER);
	for (size_t i = 0; i < nitems(sizes); i++) {
		tls_record_header(buf, sizes[i]);
		for (size_t k = 0; k < sizes[i]; k++)
			buf[5 + k] = (uint8_t)(k * 7 + i);
		ck_assert_int_eq(
		    tls_reader_feed(&r, buf, 5 + sizes[i]), (ssize_t)sizes[i]);
		for (size_t k = 0; k < sizes[i]; k++)
			ck_assert_uint_eq(buf[k], (uint8_t)(k * 7 + i));
	}
	free(buf);
}
END_TEST

/* ------------------------------------------------------------- client */

START_TEST(test_client_hello_build)
{
	static const size_t lens[] = { TLS_HELLO_CLASSIC_LEN, 1800 };
	size_t target = lens[_i], jlen, used, sl, rt;
	uint8_t secrets[2][TLS_SECRET_LEN], out[TLS_HELLO_MAX];
	uint8_t joined[TLS_HELLO_MAX], resp[8192];
	struct tls_hello ch;
	uint32_t ts = 0;

	det("check_tls/wrong", secrets[0], TLS_SECRET_LEN);
	vec_secret(secrets[1]);
	ck_assert_uint_eq(tls_client_hello_build(out, sizeof(out), secrets[1],
	                      "www.example.com", 1700000123u, target),
	    target);
	ck_assert_int_eq(tls_hello_assemble(
	                     out, target, joined, sizeof(joined), &jlen, &used),
	    TLS_HELLO_OK);
	ck_assert_uint_eq(jlen, target);
	ck_assert_uint_eq(used, target);
	ck_assert_int_eq(tls_hello_parse(out, target, &ch), 0);
	ck_assert_int_eq(ch.has_sni, 1);
	ck_assert_str_eq(ch.sni, "www.example.com");
	ck_assert_uint_eq(ch.cipher_suite, 0x1301);
	ck_assert_int_eq(ch.tls13, 1);
	ck_assert_uint_eq(ch.session_id_len, 32);
	ck_assert_mem_eq(ch.random, out + TLS_RANDOM_OFF, TLS_RANDOM_LEN);
	ck_assert_int_eq(tls_hello_verify(out, target, secrets, 2, &ts), 1);
	ck_assert_uint_eq(ts, 1700000123u);
	ck_assert_int_eq(tls_hello_verify(out, target, secrets, 1, &ts), -1);

	/* Full handshake in both directions. */
	sl = tls_server_hello_build(resp, sizeof(resp), &ch, secrets[1], NULL,
	    NULL, tls_cert_len_pick(2500, 4700), 0);
	ck_assert_uint_gt(sl, 0);
	ck_assert_int_eq(tls_server_hello_check(
	                     resp, sl, out + TLS_RANDOM_OFF, secrets[1], &rt),
	    1);
	ck_assert_uint_eq(rt, sl);
	ck_assert_int_eq(tls_server_hello_check(
	                     resp, sl, out + TLS_RANDOM_OFF, secrets[0], &rt),
	    -1);

	/* Two hellos differ (random GREASE, session id, key, HMAC). */
	ck_assert_uint_eq(
	    tls_client_hello_build(joined, sizeof(joined), secrets[1],
	        "www.example.com", 1700000123u, target),
	    target);
	ck_assert(memcmp(joined, out, target) != 0);
}
END_TEST

/* The extension of type want in a ClientHello record; NULL if none. */
static const uint8_t *
hello_ext(const uint8_t *rec, size_t len, uint16_t want, size_t *elen)
{
	size_t at = TLS_RECORD_HEADER_LEN + 4 + 2 + TLS_RANDOM_LEN;

	at += 1 + rec[at]; /* session id */
	at += 2 + ((size_t)rec[at] << 8 | rec[at + 1]); /* suites */
	at += 1 + rec[at]; /* compression */
	size_t end = at + 2 + ((size_t)rec[at] << 8 | rec[at + 1]);
	ck_assert_uint_eq(end, len);
	for (at += 2; at + 4 <= end;) {
		uint16_t t = (uint16_t)(rec[at] << 8 | rec[at + 1]);
		size_t l = (size_t)rec[at + 2] << 8 | rec[at + 3];

		if (t == want) {
			*elen = l;
			return rec + at + 4;
		}
		at += 4 + l;
	}
	return NULL;
}

START_TEST(test_client_hello_build_pq)
{
	uint8_t secret[TLS_SECRET_LEN], out[TLS_HELLO_MAX];
	const uint8_t *e;
	struct tls_hello ch;
	size_t el;
	uint32_t ts;

	vec_secret(secret);
	ck_assert_uint_eq(tls_client_hello_build_pq(out, sizeof(out), secret,
	                      "www.example.com", 1700000123u, TLS_HELLO_PQ_LEN),
	    TLS_HELLO_PQ_LEN);
	ck_assert_int_eq(tls_hello_parse(out, TLS_HELLO_PQ_LEN, &ch), 0);
	ck_assert_str_eq(ch.sni, "www.example.com");
	ck_assert_int_eq(tls_hello_verify(out, TLS_HELLO_PQ_LEN,
	                     (const uint8_t(*)[TLS_SECRET_LEN])secret, 1, &ts),
	    0);
	ck_assert_uint_eq(ts, 1700000123u);
	/* supported_groups: GREASE, X25519MLKEM768, X25519, P-256, P-384 */
	e = hello_ext(out, TLS_HELLO_PQ_LEN, 0x000a, &el);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(el, 12);
	ck_assert_uint_eq((e[2] & 0x0f), 0x0a);
	ck_assert_mem_eq(e + 4, "\x11\xec\x00\x1d\x00\x17\x00\x18", 8);
	/* key_share: GREASE (1 byte), 0x11ec (1216), 0x001d (32) */
	e = hello_ext(out, TLS_HELLO_PQ_LEN, 0x0033, &el);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(el, 2 + 5 + 4 + 1216 + 4 + 32);
	ck_assert_mem_eq(e + 4, "\x00\x01\x00\x11\xec\x04\xc0", 7);
	const uint8_t *ek = e + 2 + 5 + 4;
	/* The encapsulation key is well formed: every coefficient < q. */
	for (size_t i = 0; i < 3 * 384; i += 3) {
		unsigned a = ek[i] | (ek[i + 1] & 0x0f) << 8;
		unsigned b = ek[i + 1] >> 4 | ek[i + 2] << 4;
		ck_assert_uint_lt(a, 3329);
		ck_assert_uint_lt(b, 3329);
	}
	ck_assert_mem_eq(ek + 1216, "\x00\x1d\x00\x20", 4);
	/* The classic length has no room for it. */
	ck_assert_uint_eq(tls_client_hello_build_pq(out, sizeof(out), secret,
	                      "www.example.com", 1, TLS_HELLO_CLASSIC_LEN),
	    0);
}
END_TEST

START_TEST(test_client_hello_build_limits)
{
	uint8_t secret[TLS_SECRET_LEN] = { 1 }, out[TLS_HELLO_MAX + 16];
	char longname[300];
	struct tls_hello ch;
	size_t n;
	uint32_t ts;

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_uint_eq(
	    tls_client_hello_build(out, 516, secret, "x.y", 1, 517), 0);
	ck_assert_uint_eq(
	    tls_client_hello_build(out, sizeof(out), secret, "x.y", 1, 100), 0);
	ck_assert_uint_eq(tls_client_hello_build(out, sizeof(out), secret,
	                      "x.y", 1, TLS_HELLO_MAX + 1),
	    0);
	ck_assert_uint_eq(
	    tls_client_hello_build(out, sizeof(out), secret, longname, 1, 1000),
	    0);
	/* No SNI; the largest hello. */
	n = tls_client_hello_build(
	    out, sizeof(out), secret, NULL, 7, TLS_HELLO_MAX);
	ck_assert_uint_eq(n, TLS_HELLO_MAX);
	ck_assert_int_eq(tls_hello_parse(out, n, &ch), 0);
	ck_assert_int_eq(ch.has_sni, 0);
	ck_assert_int_eq(tls_hello_verify(out, n,
	                     (const uint8_t(*)[TLS_SECRET_LEN])secret, 1, &ts),
	    0);
	ck_assert_uint_eq(ts, 7);
	/* 255-byte name, smallest target that fits. */
	longname[255] = '\0';
	for (n = 300; n < 700; n++)
		if (tls_client_hello_build(
		        out, sizeof(out), secret, longname, 1, n) != 0)
			break;
	ck_assert_uint_lt(n, 700);
	ck_assert_int_eq(tls_hello_parse(out, n, &ch), 0);
	ck_assert_str_eq(ch.sni, longname);
	/* The padding extension is empty there. */
	ck_assert_mem_eq(out + n - 4, "\x00\x15\x00\x00", 4);
}
END_TEST

/* Issue 9: an answer shaped like the fronted site, checked as a client. */
START_TEST(test_shaped_hello)
{
	static const uint8_t secret[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
		12, 13, 14, 15, 16 };
	struct tls_shape sh = {
		.cipher = 0x1302,
		.group = TLS_GROUP_X25519,
		.ks_len = 32,
		.ext = { 0x002b, 0x0033 }, /* OpenSSL's order */
		.next = 2,
		.flight = 1191,
		.spread = 0,
	};
	static const uint16_t groups[] = { TLS_GROUP_X25519,
		TLS_GROUP_X25519MLKEM768, TLS_GROUP_SECP256R1,
		TLS_GROUP_SECP384R1 };
	static const uint16_t ks_lens[] = { 32, 1120, 65, 97 };
	uint8_t hello[TLS_HELLO_CLASSIC_LEN], out[20000];
	struct tls_hello ch;
	struct tls_flight fl;
	size_t n, total, app;

	n = tls_client_hello_build(
	    hello, sizeof(hello), secret, "www.example.com", 1700000000, 517);
	ck_assert_uint_eq(n, 517);
	ck_assert_int_eq(tls_hello_parse(hello, n, &ch), 0);
	ck_assert_uint_ne(ch.suites13, 0);
	for (size_t g = 0; g < nitems(groups); g++) {
		sh.group = groups[g];
		sh.ks_len = ks_lens[g];
		app = tls_shape_app_len(&sh);
		/* The site's size and our small variation, nothing more. */
		ck_assert_uint_ge(app, 1191 - TLS_SHAPE_NOISE);
		ck_assert_uint_le(app, 1191 + TLS_SHAPE_NOISE);
		n = tls_shaped_hello_build(
		    out, sizeof(out), &ch, secret, &sh, app);
		ck_assert_uint_eq(n, tls_shaped_hello_len(&ch, &sh, app));
		ck_assert_int_eq(tls_flight_parse(out, n, &fl), 1);
		ck_assert_uint_eq(fl.version, 0x0304);
		ck_assert_uint_eq(fl.cipher, 0x1302);
		ck_assert_uint_eq(fl.group, groups[g]);
		ck_assert_uint_eq(fl.ks_len, ks_lens[g]);
		ck_assert_uint_eq(fl.next, 2);
		ck_assert_uint_eq(fl.ext[0], 0x002b);
		ck_assert_uint_eq(fl.ext[1], 0x0033);
		ck_assert_uint_eq(fl.nrecords, 3);
		ck_assert_uint_eq(fl.records[0], 22);
		ck_assert_uint_eq(fl.records[1], 20);
		ck_assert_uint_eq(fl.records[2], 23);
		ck_assert_uint_eq(fl.app_records, 1);
		ck_assert_uint_eq(fl.app_bytes, app);
		ck_assert_uint_eq(fl.sid_len, ch.session_id_len);
		ck_assert_uint_eq(fl.consumed, n);
		/* What the apps check: the records and the HMAC. */
		ck_assert_int_eq(tls_server_hello_check(out, n,
		                     hello + TLS_RANDOM_OFF, secret, &total),
		    1);
		ck_assert_uint_eq(total, n);
		/* Any byte changed breaks the HMAC. */
		out[n / 2] ^= 1;
		ck_assert_int_eq(tls_server_hello_check(out, n,
		                     hello + TLS_RANDOM_OFF, secret, &total),
		    -1);
	}
	/* A cipher the client did not offer is not used. */
	ch.suites13 = 1; /* 0x1301 only */
	ck_assert_uint_eq(tls_shape_cipher(&ch, &sh), ch.cipher_suite);
	/* An unknown group cannot be shaped. */
	sh.group = 0x0101;
	ck_assert_uint_eq(
	    tls_shaped_hello_build(out, sizeof(out), &ch, secret, &sh, 100), 0);
	/* Partial input: need more; an alert: -2. */
	sh = tls_shape_default;
	n = tls_shaped_hello_build(out, sizeof(out), &ch, secret, &sh, 500);
	ck_assert_uint_ne(n, 0);
	ck_assert_int_eq(tls_flight_parse(out, 40, &fl), 0);
	ck_assert_int_eq(tls_flight_parse(out, n - 3, &fl), 1);
	ck_assert_uint_eq(fl.nrecords, 2); /* the app record is not whole */
	ck_assert_int_eq(tls_flight_parse((const uint8_t *)"\x15\x03\x03\x00"
	                                                   "\x02\x02\x28",
	                     7, &fl),
	    -2);
}
END_TEST

/* The profile kept in state_dir, and what is refused in it. */
START_TEST(test_shape_text)
{
	struct tls_shape a = {
		.cipher = 0x1302,
		.group = TLS_GROUP_X25519MLKEM768,
		.ks_len = 1120,
		.ext = { 0x0033, 0x002b },
		.next = 2,
		.flight = 6123,
		.spread = 40,
		.answer_us = 1830,
	};
	struct tls_shape b = { 0 };
	char text[256];

	ck_assert_uint_gt(tls_shape_format(&a, text, sizeof(text)), 0);
	ck_assert_str_eq(text,
	    "cipher 4866\ngroup 4588\nks_len 1120\n"
	    "flight 6123\nspread 40\next 51 43\nanswer_us 1830\n");
	ck_assert_int_eq(tls_shape_parse(text, &b), 0);
	ck_assert_uint_eq(b.cipher, a.cipher);
	ck_assert_uint_eq(b.group, a.group);
	ck_assert_uint_eq(b.ks_len, a.ks_len);
	ck_assert_uint_eq(b.flight, a.flight);
	ck_assert_uint_eq(b.spread, a.spread);
	ck_assert_uint_eq(b.next, 2);
	ck_assert_uint_eq(b.ext[0], a.ext[0]);
	ck_assert_uint_eq(b.ext[1], a.ext[1]);
	ck_assert_uint_eq(b.answer_us, 1830);
	/* A profile kept before answer_us existed: no delay. */
	ck_assert_int_eq(tls_shape_parse("cipher 4866\ngroup 29\nks_len 32\n"
	                                 "flight 100\nspread 0\next\n",
	                     &b),
	    0);
	ck_assert_uint_eq(b.next, 0);
	ck_assert_uint_eq(b.answer_us, 0);
	/* Refused: an extension we cannot copy, no flight, a huge one,
	 * garbage. */
	ck_assert_int_eq(tls_shape_parse("cipher 4866\ngroup 29\nks_len 32\n"
	                                 "flight 100\nspread 0\next 51 41\n",
	                     &b),
	    -1);
	ck_assert_int_eq(tls_shape_parse("cipher 4866\ngroup 29\nks_len 32\n"
	                                 "flight 0\nspread 0\next 51\n",
	                     &b),
	    -1);
	ck_assert_int_eq(tls_shape_parse("cipher 4866\ngroup 29\nks_len 32\n"
	                                 "flight 20000\nspread 0\next 51\n",
	                     &b),
	    -1);
	ck_assert_int_eq(tls_shape_parse("cipher 4866\ngroup 29\nks_len 32\n"
	                                 "flight 100\nspread 0\next 51\n"
	                                 "answer_us x\n",
	                     &b),
	    -1);
	ck_assert_int_eq(tls_shape_parse("hello", &b), -1);
	ck_assert_int_eq(tls_shape_parse("", &b), -1);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_vector_hmac_and_xor);
	tcase_add_test(tc, test_vector_verify_secret_index);
	tcase_add_test(tc, test_vector_parse);
	tcase_add_test(tc, test_assemble_single);
	tcase_add_test(tc, test_assemble_fragments);
	tcase_add_test(tc, test_assemble_too_many_fragments);
	tcase_add_test(tc, test_assemble_not_tls_and_bad);
	tcase_add_test(tc, test_parse_structure);
	tcase_add_test(tc, test_parse_vector_truncated_and_mutated);
	tcase_add_test(tc, test_timestamp_window);
	tcase_add_loop_test(tc, test_vector_server_hello, 0, 2);
	tcase_add_test(tc, test_server_hello_shapes);
	tcase_add_test(tc, test_server_hello_check_malformed);
	tcase_add_test(tc, test_cert_len_pick);
	tcase_add_test(tc, test_reader_first_flight);
	tcase_add_test(tc, test_reader_errors);
	tcase_add_test(tc, test_record_header_round_trip);
	tcase_add_loop_test(tc, test_client_hello_build, 0, 2);
	tcase_add_test(tc, test_client_hello_build_limits);
	tcase_add_test(tc, test_client_hello_build_pq);
	tcase_add_test(tc, test_shaped_hello);
	tcase_add_test(tc, test_shape_text);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
