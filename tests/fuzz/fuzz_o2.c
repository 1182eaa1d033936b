/*
 * Fuzz target for common/o2.c. Input: a 64-byte header, then up to four
 * 16-byte secrets, then anything. Any header must be safe to accept; a
 * header built from the same bytes must be accepted with the same tag,
 * DC and keys, and the streams must pair up.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "o2.h"

#define MAX_SECRETS 4

static const uint32_t tags[] = {
	O2_TAG_ABRIDGED,
	O2_TAG_INTERMEDIATE,
	O2_TAG_PADDED,
};

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

/* a's enc and b's dec carry msg unchanged, and back. */
static void
check_pair(
    struct o2_session *a, struct o2_session *b, const uint8_t *msg, size_t len)
{
	uint8_t buf[256];

	if (len > sizeof(buf))
		len = sizeof(buf);
	check(crypto_stream_apply(a->enc, msg, buf, len) == 0);
	check(crypto_stream_apply(b->dec, buf, buf, len) == 0);
	check(memcmp(buf, msg, len) == 0);
	if (b->enc == NULL || a->dec == NULL)
		return;
	check(crypto_stream_apply(b->enc, msg, buf, len) == 0);
	check(crypto_stream_apply(a->dec, buf, buf, len) == 0);
	check(memcmp(buf, msg, len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t secrets[MAX_SECRETS][O2_SECRET_LEN], wire[O2_HEADER_LEN];
	struct o2_session a, b, c;
	const uint8_t *rest;
	size_t nsecrets, restlen;
	uint32_t tag;
	int16_t dc;
	int idx, want;

	if (size < O2_HEADER_LEN)
		return 0;
	nsecrets = (size - O2_HEADER_LEN) / O2_SECRET_LEN;
	if (nsecrets > MAX_SECRETS)
		nsecrets = MAX_SECRETS;
	memcpy(secrets, data + O2_HEADER_LEN, nsecrets * O2_SECRET_LEN);
	rest = data + O2_HEADER_LEN + nsecrets * O2_SECRET_LEN;
	restlen = size - O2_HEADER_LEN - nsecrets * O2_SECRET_LEN;

	/* Arbitrary bytes as a client header. */
	(void)o2_header_allowed(data);
	idx = o2_accept(data, nsecrets ? secrets : NULL, nsecrets, &a);
	check(idx >= -1 && (nsecrets == 0 ? idx <= 0 : idx < (int)nsecrets));
	if (idx >= 0) {
		check(o2_tag_valid(a.tag));
		check(a.enc != NULL && a.dec != NULL);
	} else
		check(a.enc == NULL && a.dec == NULL);
	o2_session_free(&a);

	/* The same bytes as the random part of a header we build. */
	tag = tags[data[62] % 3];
	dc = (int16_t)(data[60] | data[61] << 8);
	want = nsecrets ? (int)(data[63] % nsecrets) : 0;
	check(o2_connect(wire, tag, dc, nsecrets ? secrets[want] : NULL, data,
	          &a) == 0);
	check(memcmp(wire, data, O2_TAG_OFF) == 0);
	idx = o2_accept(wire, nsecrets ? secrets : NULL, nsecrets, &b);
	check(idx >= 0);
	/* An earlier equal secret matches first; a different one cannot. */
	if (nsecrets)
		check(memcmp(secrets[idx], secrets[want], O2_SECRET_LEN) == 0);
	check(b.tag == tag && b.dc == dc);
	check(memcmp(a.enc_key, b.dec_key, O2_KEY_LEN) == 0);
	check(memcmp(a.enc_iv, b.dec_iv, O2_IV_LEN) == 0);
	check(memcmp(a.dec_key, b.enc_key, O2_KEY_LEN) == 0);
	check(memcmp(a.dec_iv, b.enc_iv, O2_IV_LEN) == 0);
	check_pair(&a, &b, rest, restlen);

	/* Passthrough towards a DC keeps the client's reply stream. */
	check(o2_connect_passthrough(
	          wire, tag, dc, b.enc_key, b.enc_iv, data, &c) == 0);
	check(c.dec == NULL && c.enc != NULL);
	o2_session_free(&a);
	check(o2_accept(wire, NULL, 0, &a) == 0);
	check(a.tag == tag && a.dc == dc);
	check(memcmp(a.enc_key, b.enc_key, O2_KEY_LEN) == 0);
	check(memcmp(a.enc_iv, b.enc_iv, O2_IV_LEN) == 0);
	check_pair(&c, &a, rest, restlen);

	o2_session_free(&a);
	o2_session_free(&b);
	o2_session_free(&c);
	return 0;
}
