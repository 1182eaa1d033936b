#include "autoconf.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "crypto.h"
#include "log.h"

static EVP_CIPHER *ctr_cipher, *cbc_cipher;
static EVP_MD *md_sha256, *md_md5, *md_sha1;
static EVP_MAC *hmac;

static void
crypto_fetch(void)
{
	if (ctr_cipher)
		return;
	ctr_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
	cbc_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
	md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!ctr_cipher || !cbc_cipher || !md_sha256 || !md_md5 || !md_sha1 ||
	    !hmac)
		fatalx(
		    "OpenSSL: cannot fetch AES-256-CTR/CBC, SHA256, MD5, SHA1");
}

static crypto_stream *
stream_new(
    const EVP_CIPHER *c, const uint8_t key[32], const uint8_t iv[16], int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return NULL;
	if (EVP_CipherInit_ex2(ctx, c, key, iv, enc, NULL) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	EVP_CIPHER_CTX_set_padding(ctx, 0);
	return ctx;
}

crypto_stream *
crypto_ctr_new(const uint8_t key[32], const uint8_t iv[16])
{
	crypto_fetch();
	return stream_new(ctr_cipher, key, iv, 1);
}

crypto_stream *
crypto_cbc_new(const uint8_t key[32], const uint8_t iv[16], int enc)
{
	crypto_fetch();
	return stream_new(cbc_cipher, key, iv, enc);
}

int
crypto_stream_apply(
    crypto_stream *s, const uint8_t *in, uint8_t *out, size_t len)
{
	while (len > 0) {
		int chunk = len > (1u << 30) ? (1 << 30) : (int)len, outl;
		if (EVP_CipherUpdate(s, out, &outl, in, chunk) != 1 ||
		    outl != chunk)
			return -1;
		in += chunk;
		out += chunk;
		len -= chunk;
	}
	return 0;
}

/*
 * OpenSSL's CTR keeps the next counter block and how much of the current
 * keystream block was used (num). With num > 0 the block in use is the
 * one before the stored counter.
 */
int
crypto_ctr_export(crypto_stream *s, uint8_t ctr[16], uint32_t *num)
{
	int n = EVP_CIPHER_CTX_get_num(s);

	if (n < 0 || n > 15 || EVP_CIPHER_CTX_get_updated_iv(s, ctr, 16) != 1)
		return -1;
	if (n > 0)
		for (int i = 15; i >= 0; i--)
			if (ctr[i]-- != 0)
				break;
	*num = (uint32_t)n;
	return 0;
}

crypto_stream *
crypto_ctr_resume(const uint8_t key[32], const uint8_t ctr[16], uint32_t num)
{
	uint8_t skip[16] = { 0 };
	crypto_stream *s;

	if (num > 15 || (s = crypto_ctr_new(key, ctr)) == NULL)
		return NULL;
	if (num && crypto_stream_apply(s, skip, skip, num) == -1) {
		crypto_stream_free(s);
		return NULL;
	}
	return s;
}

void
crypto_stream_free(crypto_stream *s)
{
	EVP_CIPHER_CTX_free(s);
}

static void
digest2(const EVP_MD *md, const void *a, size_t alen, const void *b,
    size_t blen, uint8_t *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n;
	if (ctx == NULL || EVP_DigestInit_ex2(ctx, md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, a, alen) != 1 ||
	    (b && EVP_DigestUpdate(ctx, b, blen) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1)
		fatalx("OpenSSL digest failed");
	EVP_MD_CTX_free(ctx);
}

void
crypto_sha256(
    const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
	crypto_fetch();
	digest2(md_sha256, a, alen, b, blen, out);
}

void
crypto_md5(const void *in, size_t len, uint8_t out[16])
{
	crypto_fetch();
	digest2(md_md5, in, len, NULL, 0, out);
}

void
crypto_sha1(const void *in, size_t len, uint8_t out[20])
{
	crypto_fetch();
	digest2(md_sha1, in, len, NULL, 0, out);
}

void
crypto_hmac_sha256(const uint8_t *key, size_t keylen, const void *a,
    size_t alen, const void *b, size_t blen, uint8_t out[32])
{
	crypto_fetch();
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	size_t outl;
	if (ctx == NULL || EVP_MAC_init(ctx, key, keylen, params) != 1 ||
	    EVP_MAC_update(ctx, a, alen) != 1 ||
	    (b && EVP_MAC_update(ctx, b, blen) != 1) ||
	    EVP_MAC_final(ctx, out, &outl, 32) != 1)
		fatalx("OpenSSL HMAC failed");
	EVP_MAC_CTX_free(ctx);
}

int
crypto_memcmp(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) != 0;
}
