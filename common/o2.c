#include "autoconf.h"

#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "o2.h"
#include "util.h"

/*
 * Spec A.2.5: LE32 of header bytes 0..3 that would make the stream look
 * like another protocol: "HEAD", "POST", "GET ", "OPTI", the intermediate
 * and padded tags, and a TLS ClientHello record start (16 03 01 02).
 */
static const uint32_t o2_forbidden_first4[] = {
	0x44414548u,
	0x54534f50u,
	0x20544547u,
	0x4954504fu,
	O2_TAG_PADDED,
	O2_TAG_INTERMEDIATE,
	0x02010316u,
};
#define O2_FORBIDDEN_FIRST_BYTE 0xef /* plain abridged, spec A.2.5 */

/* Keystream block that covers the encrypted tag and DC (bytes 48..63). */
#define O2_TAG_BLOCK     3
#define O2_TAG_BLOCK_OFF (O2_TAG_BLOCK * 16)
#define O2_TAG_IN_BLOCK  (O2_TAG_OFF - O2_TAG_BLOCK_OFF)
#define O2_DC_IN_BLOCK   (O2_DC_OFF - O2_TAG_BLOCK_OFF)
#define O2_MATERIAL_LEN  (O2_KEY_LEN + O2_IV_LEN)

/*
 * The CTR counter block n blocks after iv (128-bit big-endian add), so a
 * stream can start at block n without producing the keystream before it.
 */
static void
ctr_advance(uint8_t out[O2_IV_LEN], const uint8_t iv[O2_IV_LEN], unsigned n)
{
	unsigned carry = n;
	int i;

	for (i = O2_IV_LEN - 1; i >= 0; i--) {
		carry += iv[i];
		out[i] = carry & 0xff;
		carry >>= 8;
	}
}

/* Spec A.2.2: SHA256(material || secret), or the raw material. */
static void
o2_derive_key(const uint8_t material[O2_KEY_LEN], const uint8_t *secret,
    uint8_t key[O2_KEY_LEN])
{
	if (secret != NULL)
		crypto_sha256(material, O2_KEY_LEN, secret, O2_SECRET_LEN, key);
	else
		memcpy(key, material, O2_KEY_LEN);
}

/* The 48 key/IV bytes read backwards: the reply direction (spec A.2.2). */
static void
o2_reverse_material(
    const uint8_t header[O2_HEADER_LEN], uint8_t rev[O2_MATERIAL_LEN])
{
	int i;

	for (i = 0; i < O2_MATERIAL_LEN; i++)
		rev[i] = header[O2_KEY_OFF + O2_MATERIAL_LEN - 1 - i];
}

int
o2_tag_valid(uint32_t tag)
{
	return tag == O2_TAG_ABRIDGED || tag == O2_TAG_INTERMEDIATE ||
	    tag == O2_TAG_PADDED;
}

int
o2_header_allowed(const uint8_t first8[8])
{
	uint32_t first4 = get_le32(first8);
	size_t i;

	if (first8[0] == O2_FORBIDDEN_FIRST_BYTE)
		return 0;
	for (i = 0; i < nitems(o2_forbidden_first4); i++)
		if (first4 == o2_forbidden_first4[i])
			return 0;
	if (get_le32(first8 + 4) == 0)
		return 0;
	return 1;
}

void
o2_session_free(struct o2_session *s)
{
	if (s->enc != NULL)
		crypto_stream_free(s->enc);
	if (s->dec != NULL)
		crypto_stream_free(s->dec);
	OPENSSL_cleanse(s, sizeof(*s));
}

int
o2_accept(const uint8_t wire[O2_HEADER_LEN],
    const uint8_t (*secrets)[O2_SECRET_LEN], size_t nsecrets,
    struct o2_session *out)
{
	uint8_t key[O2_KEY_LEN], ctr[O2_IV_LEN], block[16];
	uint8_t rev[O2_MATERIAL_LEN];
	const uint8_t *secret = NULL;
	crypto_stream *dec = NULL;
	size_t i, n;
	uint32_t tag = 0;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	n = (secrets == NULL || nsecrets == 0) ? 1 : nsecrets;
	/*
	 * Only the last keystream block decides whether a secret matches;
	 * starting the stream there saves three AES blocks per wrong secret,
	 * and once it has run it sits at offset 64, where dec must be.
	 */
	ctr_advance(ctr, wire + O2_KEY_OFF + O2_KEY_LEN, O2_TAG_BLOCK);
	for (i = 0; i < n; i++) {
		secret = (secrets == NULL || nsecrets == 0) ? NULL : secrets[i];
		o2_derive_key(wire + O2_KEY_OFF, secret, key);
		if ((dec = crypto_ctr_new(key, ctr)) == NULL)
			goto done;
		if (crypto_stream_apply(dec, wire + O2_TAG_BLOCK_OFF, block,
		        sizeof(block)) != 0) {
			crypto_stream_free(dec);
			goto done;
		}
		tag = get_le32(block + O2_TAG_IN_BLOCK);
		if (o2_tag_valid(tag))
			break;
		crypto_stream_free(dec);
	}
	if (i == n)
		goto done;

	out->tag = tag;
	out->dc = (int16_t)(uint16_t)(block[O2_DC_IN_BLOCK] |
	    block[O2_DC_IN_BLOCK + 1] << 8);
	out->dec = dec;
	memcpy(out->dec_key, key, O2_KEY_LEN);
	memcpy(out->dec_iv, wire + O2_KEY_OFF + O2_KEY_LEN, O2_IV_LEN);
	o2_reverse_material(wire, rev);
	o2_derive_key(rev, secret, out->enc_key);
	memcpy(out->enc_iv, rev + O2_KEY_LEN, O2_IV_LEN);
	if ((out->enc = crypto_ctr_new(out->enc_key, out->enc_iv)) == NULL) {
		o2_session_free(out);
		goto done;
	}
	ret = (int)i;
done:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(rev, sizeof(rev));
	return ret;
}

/*
 * Initiator side once the plaintext header h is complete: encrypt it into
 * wire and set up enc (at offset 64) and, if want_dec, dec (at 0).
 */
static int
o2_start(uint8_t wire[O2_HEADER_LEN], const uint8_t h[O2_HEADER_LEN],
    const uint8_t *secret, int want_dec, struct o2_session *out)
{
	uint8_t ctr[O2_IV_LEN], block[16], rev[O2_MATERIAL_LEN];
	int ret = -1;

	o2_derive_key(h + O2_KEY_OFF, secret, out->enc_key);
	memcpy(out->enc_iv, h + O2_KEY_OFF + O2_KEY_LEN, O2_IV_LEN);
	o2_reverse_material(h, rev);
	o2_derive_key(rev, secret, out->dec_key);
	memcpy(out->dec_iv, rev + O2_KEY_LEN, O2_IV_LEN);

	/* Bytes 0..55 go in clear (spec A.2.3); only 56..63 need the key. */
	ctr_advance(ctr, out->enc_iv, O2_TAG_BLOCK);
	if ((out->enc = crypto_ctr_new(out->enc_key, ctr)) == NULL ||
	    crypto_stream_apply(
	        out->enc, h + O2_TAG_BLOCK_OFF, block, sizeof(block)) != 0)
		goto done;
	if (want_dec &&
	    (out->dec = crypto_ctr_new(out->dec_key, out->dec_iv)) == NULL)
		goto done;
	memcpy(wire, h, O2_TAG_OFF);
	memcpy(wire + O2_TAG_OFF, block + O2_TAG_IN_BLOCK,
	    O2_HEADER_LEN - O2_TAG_OFF);
	out->tag = get_le32(h + O2_TAG_OFF);
	out->dc = (int16_t)(uint16_t)(h[O2_DC_OFF] | h[O2_DC_OFF + 1] << 8);
	ret = 0;
done:
	if (ret != 0)
		o2_session_free(out);
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(rev, sizeof(rev));
	return ret;
}

/* Random header bytes that obey spec A.2.5, or the caller's. */
static void
o2_fill_random(uint8_t h[O2_HEADER_LEN], const uint8_t *random64)
{
	if (random64 != NULL) {
		memcpy(h, random64, O2_HEADER_LEN);
		return;
	}
	do
		random_bytes(h, O2_HEADER_LEN);
	while (!o2_header_allowed(h));
}

static void
o2_put_tag_dc(uint8_t h[O2_HEADER_LEN], uint32_t tag, int16_t dc)
{
	uint16_t udc = (uint16_t)dc;

	put_le32(h + O2_TAG_OFF, tag);
	h[O2_DC_OFF] = udc & 0xff;
	h[O2_DC_OFF + 1] = udc >> 8;
}

int
o2_connect(uint8_t wire[O2_HEADER_LEN], uint32_t tag, int16_t dc,
    const uint8_t *secret, const uint8_t *random64, struct o2_session *out)
{
	uint8_t h[O2_HEADER_LEN];
	int ret;

	memset(out, 0, sizeof(*out));
	if (!o2_tag_valid(tag))
		return -1;
	o2_fill_random(h, random64);
	o2_put_tag_dc(h, tag, dc);
	ret = o2_start(wire, h, secret, 1, out);
	OPENSSL_cleanse(h, sizeof(h));
	return ret;
}

int
o2_connect_passthrough(uint8_t wire[O2_HEADER_LEN], uint32_t tag, int16_t dc,
    const uint8_t p2c_key[O2_KEY_LEN], const uint8_t p2c_iv[O2_IV_LEN],
    const uint8_t *random64, struct o2_session *out)
{
	uint8_t h[O2_HEADER_LEN];
	int i, ret;

	memset(out, 0, sizeof(*out));
	if (!o2_tag_valid(tag))
		return -1;
	o2_fill_random(h, random64);
	/*
	 * Spec B.1.4: material = rev(p2c_key || p2c_iv), so the DC's reply
	 * stream (the material read backwards, no secret) is the client's.
	 */
	for (i = 0; i < O2_IV_LEN; i++)
		h[O2_KEY_OFF + i] = p2c_iv[O2_IV_LEN - 1 - i];
	for (i = 0; i < O2_KEY_LEN; i++)
		h[O2_KEY_OFF + O2_IV_LEN + i] = p2c_key[O2_KEY_LEN - 1 - i];
	o2_put_tag_dc(h, tag, dc);
	ret = o2_start(wire, h, NULL, 0, out);
	OPENSSL_cleanse(h, sizeof(h));
	return ret;
}
