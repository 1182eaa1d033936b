/*
 * JA3 and JA4 of a ClientHello (fingerprint.h).
 *
 * JA3: MD5 of "version,ciphers,extensions,groups,point formats", each
 * list in wire order, decimal, "-"-joined.
 * JA4: "t", the version (highest of supported_versions, else the
 * hello's), "d" with SNI / "i" without, two-digit counts of ciphers and
 * extensions, the first and last characters of the first ALPN value
 * ("00" without), then the first 12 hex digits of the SHA-256 of the
 * sorted ciphers and of the sorted extensions (less SNI and ALPN) with
 * "_" and the signature algorithms in wire order.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fingerprint.h"
#include "util.h"

#define MAX_ITEMS 256 /* more ciphers or extensions: not a hello we take */

struct hello {
	uint16_t version; /* legacy_version */
	uint16_t ciphers[MAX_ITEMS], exts[MAX_ITEMS], groups[MAX_ITEMS];
	uint16_t sigs[MAX_ITEMS], versions[MAX_ITEMS];
	uint8_t formats[MAX_ITEMS];
	size_t nciphers, nexts, ngroups, nsigs, nversions, nformats;
	int has_sni;
	const uint8_t *alpn; /* the first ALPN value, or NULL */
	size_t alpn_len;
};

struct cur {
	const uint8_t *p;
	size_t len, at;
	int bad;
};

static int
grease(uint16_t v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

static uint32_t
get(struct cur *c, size_t n)
{
	uint32_t v = 0;

	if (c->bad || c->len - c->at < n) {
		c->bad = 1;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v = v << 8 | c->p[c->at++];
	return v;
}

/* A sub-cursor over the next n bytes (skipped in c). */
static struct cur
sub(struct cur *c, size_t n)
{
	struct cur s = { c->p + c->at, n, 0, 0 };

	if (c->bad || c->len - c->at < n) {
		c->bad = 1;
		s.len = 0;
		s.bad = 1;
		return s;
	}
	c->at += n;
	return s;
}

/* A list of 16-bit values filling s, into v (GREASE kept: JA3 and JA4
 * drop it themselves). */
static void
list16(struct cur *s, uint16_t *v, size_t *n)
{
	if (s->len % 2 != 0)
		s->bad = 1;
	while (!s->bad && s->at < s->len) {
		uint16_t x = (uint16_t)get(s, 2);
		if (*n == MAX_ITEMS) {
			s->bad = 1;
			return;
		}
		v[(*n)++] = x;
	}
}

static int
ext_parse(struct hello *h, uint16_t type, struct cur *e)
{
	struct cur l;

	switch (type) {
	case 0x0000:
		h->has_sni = 1;
		break;
	case 0x000a: /* supported_groups */
		l = sub(e, get(e, 2));
		list16(&l, h->groups, &h->ngroups);
		return l.bad || e->bad || e->at != e->len ? -1 : 0;
	case 0x000b: /* ec_point_formats */
		l = sub(e, get(e, 1));
		while (!l.bad && l.at < l.len && h->nformats < MAX_ITEMS)
			h->formats[h->nformats++] = (uint8_t)get(&l, 1);
		return l.bad || l.at != l.len || e->bad || e->at != e->len ? -1
		                                                           : 0;
	case 0x000d: /* signature_algorithms */
		l = sub(e, get(e, 2));
		list16(&l, h->sigs, &h->nsigs);
		return l.bad || e->bad || e->at != e->len ? -1 : 0;
	case 0x0010: /* ALPN: every name's length checked, the first kept */
		l = sub(e, get(e, 2));
		if (e->bad || e->at != e->len)
			return -1;
		while (!l.bad && l.at < l.len) {
			size_t n = get(&l, 1);
			struct cur v = sub(&l, n);

			if (!l.bad && h->alpn == NULL) {
				h->alpn = v.p;
				h->alpn_len = n;
			}
		}
		return l.bad ? -1 : 0;
	case 0x002b: /* supported_versions */
		l = sub(e, get(e, 1));
		list16(&l, h->versions, &h->nversions);
		return l.bad || e->bad || e->at != e->len ? -1 : 0;
	}
	return 0;
}

static int
hello_parse(const uint8_t *rec, size_t len, struct hello *h)
{
	struct cur c = { rec, len, 0, 0 }, hs, l;

	memset(h, 0, sizeof(*h));
	if (get(&c, 1) != 0x16)
		return -1;
	get(&c, 2);
	hs = sub(&c, get(&c, 2));
	if (c.bad || c.at != c.len || get(&hs, 1) != 0x01)
		return -1;
	hs = sub(&hs, get(&hs, 3));
	h->version = (uint16_t)get(&hs, 2);
	sub(&hs, 32); /* random */
	sub(&hs, get(&hs, 1)); /* session id */
	l = sub(&hs, get(&hs, 2));
	list16(&l, h->ciphers, &h->nciphers);
	if (l.bad || hs.bad)
		return -1;
	sub(&hs, get(&hs, 1)); /* compression methods */
	if (hs.bad)
		return -1;
	if (hs.at == hs.len)
		return 0; /* no extensions at all */
	l = sub(&hs, get(&hs, 2));
	if (hs.bad || hs.at != hs.len)
		return -1;
	while (l.at < l.len) {
		uint16_t type = (uint16_t)get(&l, 2);
		struct cur e = sub(&l, get(&l, 2));

		if (l.bad || h->nexts == MAX_ITEMS ||
		    ext_parse(h, type, &e) == -1)
			return -1;
		h->exts[h->nexts++] = type;
	}
	return l.bad ? -1 : 0;
}

/* ------------------------------------------------------------ JA3 */

/* "-"-joined decimals of the non-GREASE values. */
static size_t
dec_list(char *out, size_t cap, const uint16_t *v, size_t n)
{
	size_t at = 0;
	const char *sep = "";

	for (size_t i = 0; i < n; i++) {
		if (grease(v[i]))
			continue;
		at += (size_t)snprintf(
		    out + at, at < cap ? cap - at : 0, "%s%u", sep, v[i]);
		sep = "-";
	}
	return at;
}

/*
 * One digest with the algorithm fetched once and one context reused:
 * EVP_Digest fetches both anew each time, a cost on every handshake.
 */
static int
digest(const char *alg, const void *p, size_t n, uint8_t *md, unsigned *len)
{
	static EVP_MD *md5, *sha256;
	static EVP_MD_CTX *ctx;
	EVP_MD **m = strcmp(alg, "MD5") == 0 ? &md5 : &sha256;

	if (*m == NULL && (*m = EVP_MD_fetch(NULL, alg, NULL)) == NULL)
		return -1;
	if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	return EVP_DigestInit_ex2(ctx, *m, NULL) == 1 &&
	        EVP_DigestUpdate(ctx, p, n) == 1 &&
	        EVP_DigestFinal_ex(ctx, md, len) == 1
	    ? 0
	    : -1;
}

static int
ja3_of(const struct hello *h, char out[TLS_JA3_LEN + 1])
{
	/* 5 lists of up to 256 values of up to 5 digits and a "-" each */
	static char text[5 * MAX_ITEMS * 6 + 16];
	uint16_t formats[MAX_ITEMS];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	size_t at;

	out[0] = '\0';
	for (size_t i = 0; i < h->nformats; i++)
		formats[i] = h->formats[i];
	/* At most 256 values of 5 digits and a "-" per list: text holds
	 * them all, so nothing below is cut. */
	at = (size_t)snprintf(text, sizeof(text), "%u,", h->version);
	at += dec_list(text + at, sizeof(text) - at, h->ciphers, h->nciphers);
	text[at++] = ',';
	at += dec_list(text + at, sizeof(text) - at, h->exts, h->nexts);
	text[at++] = ',';
	at += dec_list(text + at, sizeof(text) - at, h->groups, h->ngroups);
	text[at++] = ',';
	at += dec_list(text + at, sizeof(text) - at, formats, h->nformats);
	if (at >= sizeof(text) || digest("MD5", text, at, md, &mdlen) == -1 ||
	    mdlen != 16)
		return -1;
	hex_encode(md, 16, out);
	return 0;
}

/* ------------------------------------------------------------ JA4 */

static int
cmp16(const void *a, const void *b)
{
	uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;

	return (x > y) - (x < y);
}

/* The non-GREASE values (less those in skip), sorted when asked, as
 * ","-joined 4-digit hex. */
static size_t
hex_list(char *out, size_t cap, const uint16_t *v, size_t n, int sort,
    int skip_sni_alpn)
{
	uint16_t tmp[MAX_ITEMS];
	size_t k = 0, at = 0;

	for (size_t i = 0; i < n; i++)
		if (!grease(v[i]) &&
		    !(skip_sni_alpn && (v[i] == 0x0000 || v[i] == 0x0010)))
			tmp[k++] = v[i];
	if (sort)
		qsort(tmp, k, sizeof(tmp[0]), cmp16);
	for (size_t i = 0; i < k; i++)
		at += (size_t)snprintf(out + at, at < cap ? cap - at : 0,
		    "%s%04x", i ? "," : "", tmp[i]);
	return at;
}

static size_t
count(const uint16_t *v, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += !grease(v[i]);
	return k > 99 ? 99 : k;
}

/* The first 12 hex digits of SHA-256(text), or twelve 0s for "". */
static int
hash12(const char *text, size_t len, char out[13])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hx[2 * EVP_MAX_MD_SIZE + 1];

	if (len == 0) {
		memcpy(out, "000000000000", 13);
		return 0;
	}
	if (digest("SHA256", text, len, md, &mdlen) == -1 || mdlen != 32)
		return -1;
	hex_encode(md, 6, hx);
	memcpy(out, hx, 13);
	return 0;
}

static int
alnum(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z');
}

/*
 * The ALPN part: the first and last bytes of the first ALPN value when
 * both are ASCII alphanumerics, else the first and last digits of its
 * hex ("0x30 0xAB" gives "3b"), as JA4.md's "ALPN Extension Value" says.
 * FoxIO's own tools print "99" for a non-ASCII first byte instead.
 */
static void
alpn_part(const uint8_t *v, size_t n, char out[3])
{
	static const char hx[] = "0123456789abcdef";

	if (v == NULL || n == 0) {
		memcpy(out, "00", 3);
		return;
	}
	if (alnum(v[0]) && alnum(v[n - 1])) {
		out[0] = (char)v[0];
		out[1] = (char)v[n - 1];
	} else {
		out[0] = hx[v[0] >> 4];
		out[1] = hx[v[n - 1] & 15];
	}
	out[2] = '\0';
}

static int
ja4_of(const struct hello *h, char out[TLS_JA4_LEN + 1])
{
	static char text[2 * MAX_ITEMS * 5 + 8];
	char b[13], c[13], ver[3] = "00", alpn[3];
	uint16_t v = 0;
	size_t at;

	out[0] = '\0';
	for (size_t i = 0; i < h->nversions; i++)
		if (!grease(h->versions[i]) && h->versions[i] > v)
			v = h->versions[i];
	if (h->nversions == 0 || v == 0)
		v = h->version;
	/* JA4.md, "TLS and DTLS Version"; anything else is "00". */
	switch (v) {
	case 0x0304:
		memcpy(ver, "13", 3);
		break;
	case 0x0303:
		memcpy(ver, "12", 3);
		break;
	case 0x0302:
		memcpy(ver, "11", 3);
		break;
	case 0x0301:
		memcpy(ver, "10", 3);
		break;
	case 0x0300:
		memcpy(ver, "s3", 3);
		break;
	case 0x0002:
		memcpy(ver, "s2", 3);
		break;
	case 0xfeff:
		memcpy(ver, "d1", 3);
		break;
	case 0xfefd:
		memcpy(ver, "d2", 3);
		break;
	case 0xfefc:
		memcpy(ver, "d3", 3);
		break;
	}
	alpn_part(h->alpn, h->alpn_len, alpn);
	at = hex_list(text, sizeof(text), h->ciphers, h->nciphers, 1, 0);
	if (at >= sizeof(text) || hash12(text, at, b) == -1)
		return -1;
	at = hex_list(text, sizeof(text), h->exts, h->nexts, 1, 1);
	if (h->nsigs > 0 && at < sizeof(text)) {
		text[at++] = '_';
		at += hex_list(
		    text + at, sizeof(text) - at, h->sigs, h->nsigs, 0, 0);
	}
	if (at >= sizeof(text) || hash12(text, at, c) == -1)
		return -1;
	snprintf(out, TLS_JA4_LEN + 1, "t%s%c%02zu%02zu%s_%s_%s", ver,
	    h->has_sni ? 'd' : 'i', count(h->ciphers, h->nciphers),
	    count(h->exts, h->nexts), alpn, b, c);
	return 0;
}

static struct hello parsed; /* 2.5 KB: not on the stack */

int
tls_ja3(const uint8_t *rec, size_t len, char out[TLS_JA3_LEN + 1])
{
	out[0] = '\0';
	return hello_parse(rec, len, &parsed) == -1 ? -1 : ja3_of(&parsed, out);
}

int
tls_ja4(const uint8_t *rec, size_t len, char out[TLS_JA4_LEN + 1])
{
	out[0] = '\0';
	return hello_parse(rec, len, &parsed) == -1 ? -1 : ja4_of(&parsed, out);
}

int
tls_fingerprints(const uint8_t *rec, size_t len, char ja3[TLS_JA3_LEN + 1],
    char ja4[TLS_JA4_LEN + 1])
{
	ja3[0] = ja4[0] = '\0';
	if (hello_parse(rec, len, &parsed) == -1 ||
	    ja3_of(&parsed, ja3) == -1 || ja4_of(&parsed, ja4) == -1) {
		ja3[0] = ja4[0] = '\0';
		return -1;
	}
	return 0;
}
