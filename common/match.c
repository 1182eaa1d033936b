/*
 * Matching a handshake to its user (match.h).
 *
 * OpenSSL 3 marks the SHA256_* functions deprecated, but EVP has no way
 * to restart a hash from a saved state without a context allocation per
 * copy, and with thousands of users that allocation costs more than the
 * hash itself (one or a few blocks). The low-level functions run the
 * same assembly (SHA extensions, AVX2) as EVP.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "log.h"
#include "match.h"
#include "match16.h"
#include "o2.h"
#include "tls.h"
#include "util.h"

#define HMAC_BLOCK 64 /* SHA-256's block, RFC 2104's B */

/* ------------------------------------------------------------ keys */

/* The state after hashing one block: 8 chaining words, 512 bits in. */
static void
state_save(const SHA256_CTX *c, uint32_t out[8])
{
	for (int i = 0; i < 8; i++)
		out[i] = c->h[i];
}

static void
state_load(SHA256_CTX *c, const uint32_t in[8])
{
	SHA256_Init(c);
	for (int i = 0; i < 8; i++)
		c->h[i] = in[i];
	c->Nl = HMAC_BLOCK * 8;
}

/* n words, zeroed, each group's rows on whole cache lines. */
static uint32_t *
lanes_alloc(size_t n)
{
	uint32_t *p = aligned_alloc(64, n * sizeof(uint32_t));

	if (p != NULL)
		memset(p, 0, n * sizeof(uint32_t));
	return p;
}

/* The same keys in match16.h's groups; users past n are zeros. */
static int
lanes_init(struct match_keys *k)
{
	const size_t L = MATCH16_LANES;

	k->ngroups = (k->n + L - 1) / L;
	k->o2_lanes = lanes_alloc(k->ngroups * MATCH16_O2_WORDS * L);
	k->tls_lanes = lanes_alloc(k->ngroups * MATCH16_TLS_WORDS * L);
	if (k->o2_lanes == NULL || k->tls_lanes == NULL)
		return -1;
	for (size_t u = 0; u < k->n; u++) {
		size_t g = u / L, j = u % L;
		for (size_t i = 0; i < MATCH16_O2_WORDS; i++)
			k->o2_lanes[(g * MATCH16_O2_WORDS + i) * L + j] =
			    (uint32_t)k->secret[u][4 * i] << 24 |
			    (uint32_t)k->secret[u][4 * i + 1] << 16 |
			    (uint32_t)k->secret[u][4 * i + 2] << 8 |
			    k->secret[u][4 * i + 3];
		for (size_t i = 0; i < MATCH16_TLS_WORDS; i++)
			k->tls_lanes[(g * MATCH16_TLS_WORDS + i) * L + j] =
			    k->mid[u][i];
	}
	return 0;
}

int
match_keys_init(
    struct match_keys *k, const uint8_t (*secrets)[MATCH_SECRET_LEN], size_t n)
{
	uint8_t pad[HMAC_BLOCK];
	SHA256_CTX c;

	memset(k, 0, sizeof(*k));
	k->secret = calloc(n + 1, sizeof(*k->secret));
	k->mid = calloc(n + 1, sizeof(*k->mid));
	if (k->secret == NULL || k->mid == NULL) {
		match_keys_free(k);
		return -1;
	}
	k->n = n;
	for (size_t u = 0; u < n; u++) {
		memcpy(k->secret[u], secrets[u], MATCH_SECRET_LEN);
		memset(pad, 0x36, sizeof(pad));
		for (int i = 0; i < MATCH_SECRET_LEN; i++)
			pad[i] ^= secrets[u][i];
		SHA256_Init(&c);
		SHA256_Update(&c, pad, sizeof(pad));
		state_save(&c, k->mid[u]);
		memset(pad, 0x5c, sizeof(pad));
		for (int i = 0; i < MATCH_SECRET_LEN; i++)
			pad[i] ^= secrets[u][i];
		SHA256_Init(&c);
		SHA256_Update(&c, pad, sizeof(pad));
		state_save(&c, k->mid[u] + 8);
	}
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(&c, sizeof(c));
	if (n >= MATCH16_MIN_USERS && (k->lanes = match16_available()) != 0) {
		if (lanes_init(k) == -1) {
			match_keys_free(k);
			return -1;
		}
		/* The lanes hold the states now (mid_of). */
		OPENSSL_cleanse(k->mid, k->n * sizeof(*k->mid));
		free(k->mid);
		k->mid = NULL;
	}
	return 0;
}

void
match_keys_free(struct match_keys *k)
{
	if (k->secret)
		OPENSSL_cleanse(k->secret, k->n * sizeof(*k->secret));
	if (k->mid)
		OPENSSL_cleanse(k->mid, k->n * sizeof(*k->mid));
	if (k->o2_lanes)
		OPENSSL_cleanse(k->o2_lanes,
		    k->ngroups * MATCH16_O2_WORDS * MATCH16_LANES * 4);
	if (k->tls_lanes)
		OPENSSL_cleanse(k->tls_lanes,
		    k->ngroups * MATCH16_TLS_WORDS * MATCH16_LANES * 4);
	free(k->secret);
	free(k->mid);
	free(k->o2_lanes);
	free(k->tls_lanes);
	memset(k, 0, sizeof(*k));
}

/* ------------------------------------------------------------ fake TLS */

/* User u's saved states (inner, outer): from the lanes when there are
 * lanes (mid is then gone), else from mid. */
static void
mid_of(const struct match_keys *k, size_t u, uint32_t out[16])
{
	if (k->tls_lanes == NULL) {
		memcpy(out, k->mid[u], 16 * sizeof(uint32_t));
		return;
	}
	for (size_t i = 0; i < MATCH16_TLS_WORDS; i++)
		out[i] =
		    k->tls_lanes[((u / MATCH16_LANES) * MATCH16_TLS_WORDS + i) *
		            MATCH16_LANES +
		        u % MATCH16_LANES];
}

/* HMAC-SHA256 of msg with user u's key, from the saved states. */
static void
hmac_from_states(const struct match_keys *k, size_t u, const uint8_t *msg,
    size_t len, uint8_t out[32])
{
	uint32_t mid[16];
	SHA256_CTX c;

	mid_of(k, u, mid);
	state_load(&c, mid);
	SHA256_Update(&c, msg, len);
	SHA256_Final(out, &c);
	state_load(&c, mid + 8);
	SHA256_Update(&c, out, 32);
	SHA256_Final(out, &c);
	OPENSSL_cleanse(&c, sizeof(c));
	OPENSSL_cleanse(mid, sizeof(mid));
}

static int
tls_try(const struct match_keys *k, size_t u, const uint8_t *msg, size_t len,
    const uint8_t *rnd, uint32_t *ts)
{
	uint8_t d[32];

	hmac_from_states(k, u, msg, len, d);
	if (CRYPTO_memcmp(rnd, d, TLS_HMAC_CHECK_LEN) != 0)
		return 0;
	/* The last 4 bytes carry LE32(ts) XOR the HMAC (spec A.4.3). */
	*ts = (uint32_t)(rnd[28] ^ d[28]) | (uint32_t)(rnd[29] ^ d[29]) << 8 |
	    (uint32_t)(rnd[30] ^ d[30]) << 16 |
	    (uint32_t)(rnd[31] ^ d[31]) << 24;
	OPENSSL_cleanse(d, sizeof(d));
	return 1;
}

/* Is u one of the hints (tried already)? */
static int
hinted(long u, const long *hint, size_t nhint)
{
	for (size_t i = 0; i < nhint; i++)
		if (hint[i] == u)
			return 1;
	return 0;
}

/*
 * The next candidate of group g from a match16.h scan's lanes m (taken
 * out of m): a user, not a hint (tried already); SIZE_MAX when no lane
 * is left. A candidate is only that: the caller tries it in full.
 */
static size_t
next_candidate(const struct match_keys *k, size_t g, unsigned *m,
    const long *hint, size_t nhint)
{
	while (*m != 0) {
		size_t u = g * MATCH16_LANES + (size_t)__builtin_ctz(*m);
		*m &= *m - 1;
		if (u < k->n && !hinted((long)u, hint, nhint))
			return u;
	}
	return SIZE_MAX;
}

/* match_tls's walk over all users but the hints, 16 at a time. */
static long
tls_scan16(const struct match_keys *k, const uint8_t *msg, size_t len,
    const uint8_t *rnd, const long *hint, size_t nhint, uint32_t *ts)
{
	struct match16_tls c;
	unsigned m = 0;
	long found = -1;

	if (match16_tls_prepare(&c, msg, len, rnd) == -1)
		fatal("malloc");
	for (size_t g = 0; found == -1 &&
	     (g = match16_tls_scan(
	          &c, k->tls_lanes, g, k->ngroups, k->lanes, &m)) < k->ngroups;
	     g++)
		for (size_t u; found == -1 &&
		     (u = next_candidate(k, g, &m, hint, nhint)) != SIZE_MAX;)
			if (tls_try(k, u, msg, len, rnd, ts))
				found = (long)u;
	match16_tls_free(&c);
	return found;
}

long
match_tls(const struct match_keys *k, const uint8_t *rec, size_t len,
    const long *hint, size_t nhint, uint32_t *ts)
{
	const size_t rest = TLS_RANDOM_OFF + TLS_RANDOM_LEN;
	uint8_t *msg;
	long found = -1;

	if (len < rest || k->n == 0)
		return -1;
	/* The signed message: the hello with its random zeroed, in one
	 * piece so that each try is a single pass. */
	if ((msg = malloc(len)) == NULL)
		fatal("malloc");
	memcpy(msg, rec, len);
	memset(msg + TLS_RANDOM_OFF, 0, TLS_RANDOM_LEN);
	for (size_t i = 0; i < nhint && found == -1; i++)
		if (hint[i] >= 0 && (size_t)hint[i] < k->n &&
		    !hinted(hint[i], hint, i) &&
		    tls_try(
		        k, (size_t)hint[i], msg, len, rec + TLS_RANDOM_OFF, ts))
			found = hint[i];
	if (found == -1 && k->tls_lanes != NULL)
		found = tls_scan16(
		    k, msg, len, rec + TLS_RANDOM_OFF, hint, nhint, ts);
	else
		for (size_t u = 0; u < k->n && found == -1; u++)
			if (!hinted((long)u, hint, nhint) &&
			    tls_try(k, u, msg, len, rec + TLS_RANDOM_OFF, ts))
				found = (long)u;
	free(msg);
	return found;
}

/* ------------------------------------------------------------ obfuscated2 */

static EVP_CIPHER *aes_ecb;

static int
o2_try(const SHA256_CTX *material, const uint8_t secret[MATCH_SECRET_LEN],
    EVP_CIPHER_CTX *ecb, const struct match16_o2 *hdr)
{
	uint8_t key[32], ks[16];
	SHA256_CTX c = *material;
	int outl = 0, ok;

	SHA256_Update(&c, secret, MATCH_SECRET_LEN);
	SHA256_Final(key, &c);
	if (EVP_EncryptInit_ex2(ecb, NULL, key, NULL, NULL) != 1 ||
	    EVP_EncryptUpdate(ecb, ks, &outl, hdr->ctr, 16) != 1 || outl != 16)
		fatalx("OpenSSL: AES-256-ECB failed");
	ok = o2_tag_valid(
	    get_le32(ks + (O2_TAG_OFF - MATCH16_TAG_BLOCK * 16)) ^ hdr->tag);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(ks, sizeof(ks));
	OPENSSL_cleanse(&c, sizeof(c));
	return ok;
}

long
match_o2(const struct match_keys *k, const uint8_t wire[64], const long *hint,
    size_t nhint)
{
	struct match16_o2 hdr; /* the counter block and tag, for both */
	SHA256_CTX material;
	EVP_CIPHER_CTX *ecb;
	long found = -1;
	unsigned m = 0;

	if (k->n == 0)
		return -1;
	if (aes_ecb == NULL &&
	    (aes_ecb = EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL)) == NULL)
		fatalx("OpenSSL: cannot fetch AES-256-ECB");
	match16_o2_prepare(&hdr, wire);
	if ((ecb = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex2(ecb, aes_ecb, NULL, NULL, NULL) != 1)
		fatalx("OpenSSL: cannot set up AES-256-ECB");
	EVP_CIPHER_CTX_set_padding(ecb, 0);
	SHA256_Init(&material);
	SHA256_Update(&material, wire + O2_KEY_OFF, O2_KEY_LEN);
	for (size_t i = 0; i < nhint && found == -1; i++)
		if (hint[i] >= 0 && (size_t)hint[i] < k->n &&
		    !hinted(hint[i], hint, i) &&
		    o2_try(&material, k->secret[hint[i]], ecb, &hdr))
			found = hint[i];
	if (found == -1 && k->o2_lanes != NULL) {
		for (size_t g = 0; found == -1 &&
		     (g = match16_o2_scan(&hdr, k->o2_lanes, g, k->ngroups,
		          k->lanes, &m)) < k->ngroups;
		     g++)
			for (size_t u; found == -1 &&
			     (u = next_candidate(k, g, &m, hint, nhint)) !=
			         SIZE_MAX;)
				if (o2_try(&material, k->secret[u], ecb, &hdr))
					found = (long)u;
	} else {
		for (size_t u = 0; u < k->n && found == -1; u++)
			if (!hinted((long)u, hint, nhint) &&
			    o2_try(&material, k->secret[u], ecb, &hdr))
				found = (long)u;
	}
	EVP_CIPHER_CTX_free(ecb);
	OPENSSL_cleanse(&material, sizeof(material));
	return found;
}

/* ------------------------------------------------------------ per SNI */

void
match_sni_secret(const uint8_t secret[MATCH_SECRET_LEN], const char *salt,
    const char *sni, uint8_t out[MATCH_SECRET_LEN])
{
	char hex[2 * MATCH_SECRET_LEN + 1];
	uint8_t d[32];
	SHA256_CTX c;

	hex_encode(secret, MATCH_SECRET_LEN, hex);
	SHA256_Init(&c);
	SHA256_Update(&c, salt, strlen(salt));
	SHA256_Update(&c, hex, 2 * MATCH_SECRET_LEN);
	SHA256_Update(&c, sni, strlen(sni));
	SHA256_Final(d, &c);
	memcpy(out, d, MATCH_SECRET_LEN);
	OPENSSL_cleanse(hex, sizeof(hex));
	OPENSSL_cleanse(d, sizeof(d));
	OPENSSL_cleanse(&c, sizeof(c));
}
