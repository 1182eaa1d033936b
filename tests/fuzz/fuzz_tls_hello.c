/*
 * Fuzz target for the ClientHello side of common/tls.c: the input is what
 * a client sent first. Assembly must decide consistently on prefixes, a
 * joined hello must stay within its bounds and equal a single-record input,
 * parsing must yield sane fields, and a parsed hello must give a
 * ServerHello that the client-side check accepts. Its JA3 and JA4
 * (fingerprint.c) are well-formed strings or refused.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The second is the secret of the spec's A4_fake_tls vectors (seeds). */
static const uint8_t secrets[2][TLS_SECRET_LEN] = {
	{ 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
	    0x0c, 0x0d, 0x0e, 0x0f, 0x10 },
	{ 0x52, 0x24, 0xc7, 0x45, 0x33, 0x12, 0x3f, 0x5d, 0x68, 0xc8, 0x32,
	    0xd0, 0xdf, 0xec, 0x65, 0xae },
};

static void
check(int ok)
{
	if (!ok)
		abort();
}

static void
check_hello(const struct tls_hello *ch)
{
	size_t n = strnlen(ch->sni, sizeof(ch->sni));

	check(ch->session_id_len <= TLS_SESSION_ID_MAX);
	check(n <= TLS_SNI_MAX);
	check(ch->has_sni ? n > 0 : n == 0);
	check(ch->cipher_suite == 0 ||
	    (ch->cipher_suite >= TLS_SUITE_13_FIRST &&
	        ch->cipher_suite <= TLS_SUITE_13_LAST));
}

/* Fingerprints: a 32-hex JA3 and a JA4 of the documented shape, or -1
 * and "", the same from tls_fingerprints. */
static void
fingerprints(const uint8_t *p, size_t n)
{
	char ja3[TLS_JA3_LEN + 1], ja4[TLS_JA4_LEN + 1];
	char both3[TLS_JA3_LEN + 1], both4[TLS_JA4_LEN + 1];

	if (tls_ja3(p, n, ja3) == 0) {
		check(strlen(ja3) == TLS_JA3_LEN);
		check(strspn(ja3, "0123456789abcdef") == TLS_JA3_LEN);
	} else
		check(ja3[0] == '\0');
	if (tls_ja4(p, n, ja4) == 0) {
		check(strlen(ja4) == TLS_JA4_LEN && ja4[0] == 't');
		check(ja4[10] == '_' && ja4[23] == '_');
		check(strspn(ja4 + 24, "0123456789abcdef") == 12);
	} else
		check(ja4[0] == '\0');
	/* Both refuse the same inputs: one parser. */
	check((ja3[0] == '\0') == (ja4[0] == '\0'));
	/* The one-parse call (the worker's) gives the same, or refuses. */
	if (tls_fingerprints(p, n, both3, both4) == 0)
		check(strcmp(both3, ja3) == 0 && strcmp(both4, ja4) == 0);
	else
		check(ja3[0] == '\0' && both3[0] == '\0' && both4[0] == '\0');
}

/* A parsed hello must get an answer that a client accepts. */
static void
answer(const struct tls_hello *ch, size_t cert_len)
{
	static const uint8_t key[32] = { 9 };
	static uint8_t cert[512], out[1024];
	size_t total = tls_server_hello_len(ch, cert_len), rt = 0;

	check(total > 0 && total <= sizeof(out));
	check(tls_server_hello_build(out, sizeof(out), ch, secrets[0], key,
	          cert, cert_len, cert_len & 1) == total);
	check(tls_server_hello_check(out, total, ch->random, secrets[0], &rt) ==
	        1 &&
	    rt == total);
	check(tls_server_hello_check(
	          out, total - 1, ch->random, secrets[0], &rt) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t joined[TLS_HELLO_MAX];
	struct tls_hello ch;
	size_t jlen = 0, used = 0, j2, u2;
	uint32_t ts = 0;
	int rc, vi;

	/* The raw input as a record. */
	fingerprints(data, size);
	if (tls_hello_parse(data, size, &ch) == 0) {
		check_hello(&ch);
		answer(&ch, 1 + size % 500);
	}
	vi = tls_hello_verify(data, size, secrets, 2, &ts);
	check(vi >= -1 && vi <= 1);

	rc = tls_hello_assemble(
	    data, size, joined, sizeof(joined), &jlen, &used);
	check(rc == TLS_HELLO_OK || rc == TLS_HELLO_NEED_MORE ||
	    rc == TLS_HELLO_NOT_TLS || rc == TLS_HELLO_BAD);
	if (size >= 1 && data[0] != 0x16)
		check(rc == TLS_HELLO_NOT_TLS);
	if (rc != TLS_HELLO_OK) {
		/* Not OK now: no prefix is OK either. */
		if (size > 0)
			check(tls_hello_assemble(data, size / 2, joined,
			          sizeof(joined), &j2, &u2) != TLS_HELLO_OK);
		return 0;
	}
	check(used <= size && jlen <= used && jlen <= TLS_HELLO_MAX);
	check(jlen > TLS_RECORD_HEADER_LEN + 4);
	if (jlen == used)
		check(memcmp(joined, data, jlen) == 0);
	/* Decided exactly at the last byte; more bytes change nothing. */
	check(tls_hello_assemble(data, used - 1, joined + 0, sizeof(joined),
	          &j2, &u2) == TLS_HELLO_NEED_MORE);
	check(tls_hello_assemble(data, size, joined, sizeof(joined), &j2,
	          &u2) == TLS_HELLO_OK &&
	    j2 == jlen && u2 == used);
	check(tls_hello_assemble(data, size, joined, jlen - 1, &j2, &u2) ==
	    TLS_HELLO_BAD);

	fingerprints(joined, jlen);
	if (tls_hello_parse(joined, jlen, &ch) == 0) {
		check_hello(&ch);
		check(memcmp(ch.random, joined + TLS_RANDOM_OFF,
		          TLS_RANDOM_LEN) == 0);
		answer(&ch, 1 + jlen % 500);
	}
	vi = tls_hello_verify(joined, jlen, secrets, 2, &ts);
	check(vi >= -1 && vi <= 1);
	return 0;
}
