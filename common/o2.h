/*
 * Obfuscated2: the 64-byte header that opens every client connection and
 * every proxy-to-DC connection, and the two AES-256-CTR streams it sets up
 * (spec A.2, B.1.3, B.1.4).
 *
 * "Initiator" is the side that sends the header (an app, or the proxy
 * towards a DC); "responder" is the side that receives it (the proxy, or a
 * DC). In a session, enc always encrypts what this side sends and dec
 * always decrypts what it receives.
 */
#ifndef MTP_O2_H
#define MTP_O2_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

/* Header layout, spec A.2.1 and C. */
#define O2_HEADER_LEN 64
#define O2_KEY_OFF    8 /* key material, then IV */
#define O2_KEY_LEN    32
#define O2_IV_LEN     16
#define O2_TAG_OFF    56 /* protocol tag, LE32 */
#define O2_DC_OFF     60 /* DC index, LE i16 */
#define O2_SECRET_LEN 16 /* proxy secret, spec A.1.1 */

/* Protocol tags (spec A.2.1, C); all four bytes equal, so order is moot. */
#define O2_TAG_ABRIDGED     0xefefefefu
#define O2_TAG_INTERMEDIATE 0xeeeeeeeeu
#define O2_TAG_PADDED       0xddddddddu

struct o2_session {
	uint32_t tag; /* one of O2_TAG_* */
	int16_t dc; /* DC index as sent (spec A.2.4) */
	/* Key and IV of each stream at keystream offset 0. */
	uint8_t enc_key[O2_KEY_LEN];
	uint8_t enc_iv[O2_IV_LEN];
	uint8_t dec_key[O2_KEY_LEN];
	uint8_t dec_iv[O2_IV_LEN];
	crypto_stream *enc; /* what this side sends */
	crypto_stream *dec; /* what this side receives */
};

/*
 * Responder: check the 64 wire bytes against each of nsecrets 16-byte
 * secrets in order. With no secrets (secrets NULL or nsecrets 0) the raw
 * key material is used without SHA256, as a DC does (spec B.1.3).
 * Returns the index of the first secret that yields a valid tag (0 with no
 * secrets), or -1 if none does (or on an OpenSSL failure); out is then
 * zeroed. On success dec (initiator to responder) is at keystream offset
 * 64, just past the header, and enc (responder to initiator) at 0.
 * For the proxy, enc_key/enc_iv are the client-facing key and IV that
 * o2_connect_passthrough() wants.
 */
int o2_accept(const uint8_t wire[O2_HEADER_LEN],
    const uint8_t (*secrets)[O2_SECRET_LEN], size_t nsecrets,
    struct o2_session *out);

/*
 * Initiator: build the header for tag and dc into wire. secret is 16 bytes,
 * or NULL towards a DC (raw keys). random64 gives the 64 random header
 * bytes (tag and DC are written over them; they are used as given, even if
 * they break the spec A.2.5 rules); NULL draws fresh ones that obey A.2.5.
 * On success enc is at keystream offset 64 and dec at 0. Returns 0, or -1
 * on an unknown tag or an OpenSSL failure (out is then zeroed).
 */
int o2_connect(uint8_t wire[O2_HEADER_LEN], uint32_t tag, int16_t dc,
    const uint8_t *secret, const uint8_t *random64, struct o2_session *out);

/*
 * Initiator towards a DC in passthrough ("fast") mode, spec B.1.4: the
 * header is chosen so that the DC's reply stream is exactly the client's
 * stream (p2c_key, p2c_iv: enc_key/enc_iv of the client's session), so the
 * proxy can copy DC bytes to the client untouched. random64 as for
 * o2_connect (only bytes 0..7 and 62..63 survive). Only enc (proxy to DC,
 * at offset 64) is created; dec is NULL, dec_key/dec_iv equal p2c_key/iv.
 * Returns 0, or -1 as o2_connect.
 */
int
o2_connect_passthrough(uint8_t wire[O2_HEADER_LEN], uint32_t tag, int16_t dc,
    const uint8_t p2c_key[O2_KEY_LEN], const uint8_t p2c_iv[O2_IV_LEN],
    const uint8_t *random64, struct o2_session *out);

/* Frees both streams and wipes the keys; safe on a zeroed session. */
void o2_session_free(struct o2_session *);

/*
 * 1 if the first 8 plaintext header bytes obey spec A.2.5 (cannot be
 * mistaken for another protocol), 0 otherwise.
 */
int o2_header_allowed(const uint8_t first8[8]);

/* 1 if tag is one of the three O2_TAG_* values. */
int o2_tag_valid(uint32_t tag);

#endif
