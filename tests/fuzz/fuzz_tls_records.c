/*
 * Fuzz target for the record reader of common/tls.c. Input: one byte of
 * flags (bit 0: server direction), four bytes that seed the split points,
 * then the wire stream. The stream is fed in pieces (each in a buffer of
 * its own size, so ASan sees any overrun) and also in one go; both must
 * agree, output never exceeds input, and the payload re-wrapped with
 * tls_record_header must read back unchanged.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

static uint32_t
next_rand(uint32_t *s)
{
	/* xorshift32: the split points only need to vary with the input. */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Wrap payload in records of seed-chosen sizes, read it back. */
static void
round_trip(const uint8_t *payload, size_t len, uint32_t seed)
{
	uint8_t *wire = malloc(len + (len + 1) * TLS_RECORD_HEADER_LEN);
	size_t o = 0, i = 0;
	struct tls_reader r;
	ssize_t n;

	check(wire != NULL);
	while (i < len) {
		size_t k = 1 + next_rand(&seed) % TLS_RECORD_MAX_PAYLOAD;

		if (k > len - i)
			k = len - i;
		tls_record_header(wire + o, k);
		memcpy(wire + o + TLS_RECORD_HEADER_LEN, payload + i, k);
		o += TLS_RECORD_HEADER_LEN + k;
		i += k;
	}
	tls_reader_init(&r, TLS_READER_FROM_SERVER);
	n = tls_reader_feed(&r, wire, o);
	check(n >= 0 && (size_t)n == len && memcmp(wire, payload, len) == 0);
	check(tls_reader_at_boundary(&r));
	free(wire);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_reader r1, r2;
	uint8_t *whole, *acc;
	size_t len, i = 0, got = 0;
	uint32_t seed;
	ssize_t n1;
	int dir, failed = 0;

	if (size < 5)
		return 0;
	dir = (data[0] & 1) ? TLS_READER_FROM_SERVER : TLS_READER_FROM_CLIENT;
	seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
	    (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24 | 1;
	data += 5;
	len = size - 5;

	whole = malloc(len + 1);
	acc = malloc(len + 1);
	check(whole != NULL && acc != NULL);
	memcpy(whole, data, len);
	tls_reader_init(&r1, dir);
	n1 = tls_reader_feed(&r1, whole, len);
	check(n1 >= -1 && (n1 == -1 || (size_t)n1 <= len));

	tls_reader_init(&r2, dir);
	while (i < len) {
		size_t k = 1 + next_rand(&seed) % 64;
		uint8_t *piece;
		ssize_t n;

		if (k > len - i)
			k = len - i;
		piece = malloc(k);
		check(piece != NULL);
		memcpy(piece, data + i, k);
		n = tls_reader_feed(&r2, piece, k);
		check(n >= -1 && (n == -1 || (size_t)n <= k));
		if (n == -1) {
			failed = 1;
			/* Once failed, always failed. */
			check(tls_reader_feed(&r2, piece, k) == -1);
			free(piece);
			break;
		}
		memcpy(acc + got, piece, (size_t)n);
		got += (size_t)n;
		free(piece);
		i += k;
	}

	/* Pieces or one go: same verdict, same payload. */
	check(failed == (n1 == -1));
	if (!failed) {
		check((size_t)n1 == got && memcmp(whole, acc, got) == 0);
		check(
		    tls_reader_at_boundary(&r1) == tls_reader_at_boundary(&r2));
		round_trip(acc, got, seed);
	}
	free(whole);
	free(acc);
	return 0;
}
