/*
 * Which user a handshake belongs to. A client names no user: the proxy
 * finds the one whose secret makes the handshake valid, which is crypto
 * per user (spec A.2.2: SHA-256 of key material and secret, then AES; spec
 * A.4.3: HMAC-SHA256 over the ClientHello). So the per-user work is cut
 * to the bone and done in the order most likely to hit first: the caller
 * passes the user this client's address matched last time.
 *
 * Per user, struct match_keys keeps the SHA-256 states after the HMAC
 * key blocks (key ^ ipad, key ^ opad; RFC 2104), so a try is the hash
 * of the message and one block, not two more key blocks and an HMAC
 * set-up.
 */
#ifndef MTP_MATCH_H
#define MTP_MATCH_H

#include <stddef.h>
#include <stdint.h>

#define MATCH_SECRET_LEN 16

struct match_keys {
	size_t n;
	uint8_t (*secret)[MATCH_SECRET_LEN];
	uint32_t (*mid)[16]; /* per user: inner state, outer state (NULL
	                      * with the lanes, which hold them) */
	/* Where the CPU can (match16.h), the same in groups of 16 users,
	 * as match16.h lays them out, scanned lanes at a time; else NULL
	 * and 0. */
	int lanes;
	size_t ngroups;
	uint32_t *o2_lanes;
	uint32_t *tls_lanes;
};

/*
 * Keys for n secrets (copied), with their lanes for match16.h when this
 * CPU can run them. 0, or -1 when out of memory (k is then empty, and
 * safe to free).
 */
int match_keys_init(
    struct match_keys *k, const uint8_t (*secrets)[MATCH_SECRET_LEN], size_t n);
/* Wipes and frees; leaves k empty. */
void match_keys_free(struct match_keys *k);

/* The most hints a caller may give (an address's user, its subnet's). */
#define MATCH_MAX_HINTS 4

/*
 * Fake TLS (spec A.4.3): the index of the key whose HMAC signs the joined
 * ClientHello rec, with the timestamp it carries in *ts; -1 when none
 * does. The nhint indices in hint (those in 0..n-1) are tried first,
 * then every other key in order.
 */
long match_tls(const struct match_keys *k, const uint8_t *rec, size_t len,
    const long *hint, size_t nhint, uint32_t *ts);

/*
 * Obfuscated2 (spec A.2.2): the index of the key whose secret decrypts
 * the 64-byte header to a valid protocol tag (the hints first, then the
 * others in order); -1 when none does. o2_accept() with that one secret
 * then sets up the session.
 */
long match_o2(const struct match_keys *k, const uint8_t wire[64],
    const long *hint, size_t nhint);

/*
 * per_sni_secrets: a user's key for the name sni, as the Erlang
 * mtproto_proxy derives it: SHA256(salt || hex(secret) || sni)[0:16],
 * the secret's hex in lowercase, salt and sni as bytes.
 */
void match_sni_secret(const uint8_t secret[MATCH_SECRET_LEN], const char *salt,
    const char *sni, uint8_t out[MATCH_SECRET_LEN]);

#endif
