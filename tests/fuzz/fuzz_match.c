/*
 * Fuzz target for common/match.c and common/match16.c: the same input
 * matched against the same users scanned 16 at a time (AVX-512), 8 at a
 * time (AVX2) and one at a time must give the same user, whatever the
 * input. Input: a mode byte (bit 0: fake TLS, else obfuscated2; bit 1:
 * give the hint), a user byte (below NUSERS: the input is made valid for
 * that user, so that matches happen; else left as it is), a hint byte,
 * then the header or the ClientHello.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "match.h"
#include "match16.h"
#include "o2.h"
#include "tls.h"

#define NUSERS 40 /* two groups and a half */

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

static uint8_t secrets[NUSERS][16];
static struct match_keys keys[3]; /* 16 lanes, 8, 1 (those the CPU has) */
static int nkeys;

static void
setup(void)
{
	for (size_t u = 0; u < NUSERS; u++)
		for (int i = 0; i < 16; i++)
			secrets[u][i] = (uint8_t)(u * 37 + (size_t)i * 101 + 7);
	memcpy(secrets[30], secrets[5], 16); /* a twin: 5 comes first */
	for (int pass = 0; pass < 3; pass++) {
		if (pass == 1)
			setenv("MTPROTOD_NO_AVX512", "1", 1);
		if (pass == 2)
			setenv("MTPROTOD_NO_AVX2", "1", 1);
		check(match_keys_init(
		          &keys[nkeys], (const void *)secrets, NUSERS) == 0);
		/* Keep each width once. */
		if (nkeys > 0 && keys[nkeys].lanes == keys[nkeys - 1].lanes)
			match_keys_free(&keys[nkeys]);
		else
			nkeys++;
	}
	check(keys[nkeys - 1].lanes == 0);
}

/* Make the header's tag (spec A.2.1) valid for secret s. */
static void
o2_sign(uint8_t wire[64], const uint8_t s[16])
{
	uint8_t m[48], key[32], ctr[16], ks[16];
	unsigned carry = 3;
	int outl = 0;
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();

	memcpy(m, wire + O2_KEY_OFF, O2_KEY_LEN);
	memcpy(m + O2_KEY_LEN, s, 16);
	check(EVP_Digest(m, sizeof(m), key, NULL, EVP_sha256(), NULL) == 1);
	for (int i = 15; i >= 0; i--) {
		carry += wire[O2_KEY_OFF + O2_KEY_LEN + i];
		ctr[i] = carry & 0xff;
		carry >>= 8;
	}
	check(x != NULL &&
	    EVP_EncryptInit_ex(x, EVP_aes_256_ecb(), NULL, key, NULL) == 1 &&
	    EVP_EncryptUpdate(x, ks, &outl, ctr, 16) == 1 && outl == 16);
	EVP_CIPHER_CTX_free(x);
	for (int i = 0; i < 4; i++)
		wire[O2_TAG_OFF + i] =
		    (uint8_t)(ks[O2_TAG_OFF - 48 + i] ^ 0xdd);
}

/* Make the hello's random (spec A.4.3) the HMAC of secret s. */
static void
tls_sign(uint8_t *hello, size_t len, const uint8_t s[16])
{
	uint8_t *msg = malloc(len), mac[32];
	unsigned maclen = 0;

	check(msg != NULL);
	memcpy(msg, hello, len);
	memset(msg + TLS_RANDOM_OFF, 0, TLS_RANDOM_LEN);
	check(HMAC(EVP_sha256(), s, 16, msg, len, mac, &maclen) != NULL &&
	    maclen == 32);
	/* The timestamp's 4 bytes are the input's, XORed in. */
	for (int i = 0; i < 28; i++)
		hello[TLS_RANDOM_OFF + i] = mac[i];
	for (int i = 28; i < 32; i++)
		hello[TLS_RANDOM_OFF + i] ^= mac[i];
	free(msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[TLS_HELLO_MAX];
	long found[3] = { -1, -1, -1 }, hint;
	uint32_t ts[3] = { 0, 0, 0 };
	size_t len;

	if (nkeys == 0)
		setup();
	if (size < 3)
		return 0;
	int tls = data[0] & 1;
	size_t nhint = (data[0] & 2) != 0, user = data[1];
	hint = data[2] % (NUSERS + 4); /* some past the end */
	data += 3;
	size -= 3;
	if (!tls) {
		len = O2_HEADER_LEN;
		memset(buf, 0, len);
		memcpy(buf, data, size < len ? size : len);
		if (user < NUSERS)
			o2_sign(buf, secrets[user]);
		for (int i = 0; i < nkeys; i++)
			found[i] = match_o2(&keys[i], buf, &hint, nhint);
	} else {
		len = size < sizeof(buf) ? size : sizeof(buf);
		if (len < TLS_RANDOM_OFF + TLS_RANDOM_LEN)
			return 0;
		memcpy(buf, data, len);
		if (user < NUSERS)
			tls_sign(buf, len, secrets[user]);
		for (int i = 0; i < nkeys; i++) {
			ts[i] = 0;
			found[i] =
			    match_tls(&keys[i], buf, len, &hint, nhint, &ts[i]);
		}
	}
	for (int i = 1; i < nkeys; i++) {
		check(found[i] == found[0]);
		check(!tls || found[0] == -1 || ts[i] == ts[0]);
	}
	/* A user it was made for is found: it, an earlier one that fits
	 * too (the twin), or the hint if that fits (a later twin). */
	if (user < NUSERS)
		check(found[0] != -1 &&
		    (found[0] <= (long)user || (nhint && found[0] == hint)));
	return 0;
}
