#include "autoconf.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "aescbc.h"
#include "rpc.h"
#include "util.h"

/* The KDF's purpose strings, B.2.5. */
#define KDF_PURPOSE_LEN 6
static const char kdf_purpose[2][KDF_PURPOSE_LEN + 1] = {
	[RPC_KDF_CLIENT] = "CLIENT",
	[RPC_KDF_SERVER] = "SERVER",
};

/* An IPv4 address as IPv6, B.2.7: 10 zero bytes, ff ff, the 4 octets. */
static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
	0xff };

static inline void
put16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static inline void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

static inline void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* ---------------------------------------------------------------- frames */

size_t
rpc_frame_finish(uint8_t *frame, size_t len, int32_t seq, int use_crc32c)
{
	size_t total = len + RPC_FRAME_OVERHEAD;
	uint32_t crc;

	if (len % 4 != 0 || len > UINT32_MAX - RPC_FRAME_OVERHEAD)
		return 0;
	put32(frame, (uint32_t)total);
	put32(frame + 4, (uint32_t)seq);
	crc = use_crc32c ? rpc_crc32c(frame, total - 4)
	                 : rpc_crc32(frame, total - 4);
	put32(frame + total - 4, crc);
	return total;
}

size_t
rpc_frame_encode(uint8_t *out, size_t cap, int32_t seq, const uint8_t *payload,
    size_t len, int use_crc32c)
{
	if (len % 4 != 0 || cap < RPC_FRAME_OVERHEAD ||
	    len > cap - RPC_FRAME_OVERHEAD)
		return 0;
	memmove(out + RPC_FRAME_HDR, payload, len);
	return rpc_frame_finish(out, len, seq, use_crc32c);
}

size_t
rpc_frame_pad_len(size_t n)
{
	return (RPC_BLOCK - n % RPC_BLOCK) % RPC_BLOCK;
}

int
rpc_frame_pad(uint8_t *out, size_t cap, size_t n)
{
	size_t pad = rpc_frame_pad_len(n);

	if (pad > cap)
		return -1;
	for (size_t i = 0; i + 4 <= pad; i += 4)
		put32(out + i, RPC_FILLER);
	return (int)pad;
}

void
rpc_decoder_init(struct rpc_decoder *d, int32_t seq, size_t max_total)
{
	d->seq = seq;
	d->crc32c = 0;
	d->max_total = max_total;
}

static enum rpc_decode_status
decode_error(struct rpc_frame *f, const char *why)
{
	f->error = why;
	return RPC_DECODE_ERROR;
}

enum rpc_decode_status
rpc_frame_decode(
    struct rpc_decoder *d, const uint8_t *buf, size_t len, struct rpc_frame *f)
{
	size_t off = 0;
	uint32_t total, crc;
	int32_t seq;

	memset(f, 0, sizeof(*f));
	while (len - off >= 4 && get_le32(buf + off) == RPC_FILLER)
		off += 4;
	f->consumed = off;
	if (len - off < 4)
		return RPC_DECODE_NEED_MORE;
	total = get_le32(buf + off);
	if (total % 4 != 0)
		return decode_error(f, "frame length not a multiple of 4");
	if (total < RPC_FRAME_MIN)
		return decode_error(f, "frame too short");
	if (total > d->max_total)
		return decode_error(f, "frame too long");
	if (len - off >= RPC_FRAME_HDR) {
		seq = (int32_t)get_le32(buf + off + 4);
		if (seq != d->seq)
			return decode_error(f, "unexpected sequence number");
	}
	if (len - off < total)
		return RPC_DECODE_NEED_MORE;
	seq = (int32_t)get_le32(buf + off + 4);
	crc = d->crc32c && seq >= 0 ? rpc_crc32c(buf + off, total - 4)
	                            : rpc_crc32(buf + off, total - 4);
	if (crc != get_le32(buf + off + total - 4))
		return decode_error(f, "frame CRC mismatch");
	f->payload = buf + off + RPC_FRAME_HDR;
	f->len = total - RPC_FRAME_OVERHEAD;
	f->seq = seq;
	f->consumed = off + total;
	d->seq = (int32_t)((uint32_t)seq + 1);
	return RPC_DECODE_OK;
}

/* ---------------------------------------------------------------- link */

/* Sent between processes as raw bytes: no hidden padding. */
_Static_assert(
    sizeof(struct rpc_link_keys) == 112, "struct rpc_link_keys has padding");

int
rpc_link_restore(
    struct rpc_link *l, const struct rpc_link_keys *k, size_t max_total)
{
	memset(l, 0, sizeof(*l));
	l->enc = crypto_cbc_new(k->enc_key, k->enc_iv, 1);
	l->dec = crypto_cbc_new(k->dec_key, k->dec_iv, 0);
	if (l->enc == NULL || l->dec == NULL) {
		rpc_link_free(l);
		return -1;
	}
	if (aescbc_available() && (l->ek = malloc(sizeof(*l->ek))) != NULL)
		aescbc_key_init(l->ek, k->enc_key);
	l->keys = *k;
	rpc_decoder_init(&l->rx, k->seq_in, max_total);
	rpc_link_set_crc32c(l, k->crc32c != 0);
	return 0;
}

void
rpc_link_capture(const struct rpc_link *l, struct rpc_link_keys *k)
{
	*k = l->keys;
	k->seq_in = l->rx.seq;
	k->crc32c = l->rx.crc32c != 0;
	k->reserved = 0;
}

void
rpc_link_free(struct rpc_link *l)
{
	crypto_stream_free(l->enc);
	crypto_stream_free(l->dec);
	l->enc = l->dec = NULL;
	if (l->ek) {
		OPENSSL_cleanse(l->ek, sizeof(*l->ek));
		free(l->ek);
		l->ek = NULL;
	}
	OPENSSL_cleanse(&l->keys, sizeof(l->keys));
}

void
rpc_link_set_crc32c(struct rpc_link *l, int on)
{
	l->keys.crc32c = on != 0;
	l->rx.crc32c = on != 0;
}

size_t
rpc_link_frame(struct rpc_link *l, uint8_t *frame, size_t cap, size_t len)
{
	int32_t seq = l->keys.seq_out;
	size_t n;
	int pad;

	if (len % 4 != 0 || cap < RPC_FRAME_OVERHEAD ||
	    len > cap - RPC_FRAME_OVERHEAD)
		return 0;
	n = rpc_frame_finish(frame, len, seq, l->keys.crc32c && seq >= 0);
	if (n == 0 || (pad = rpc_frame_pad(frame + n, cap - n, n)) < 0)
		return 0;
	l->keys.seq_out = (int32_t)((uint32_t)seq + 1);
	return n + (size_t)pad;
}

int
rpc_link_encrypt(struct rpc_link *l, uint8_t *buf, size_t len)
{
	struct rpc_link_bytes b = { l, buf, len };

	return rpc_links_encrypt(&b, 1);
}

int
rpc_links_encrypt(struct rpc_link_bytes *b, size_t n)
{
	struct aescbc_job jobs[64]; /* aescbc_encrypt takes them in turns */
	size_t nj = 0;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		struct rpc_link *l = b[i].link;
		if (b[i].len % RPC_BLOCK != 0)
			return -1;
		if (b[i].len == 0)
			continue;
		if (l->ek == NULL) {
			if (crypto_stream_apply(
			        l->enc, b[i].buf, b[i].buf, b[i].len) == -1)
				rc = -1;
			memcpy(l->keys.enc_iv, b[i].buf + b[i].len - RPC_BLOCK,
			    RPC_BLOCK);
			continue;
		}
		jobs[nj++] = (struct aescbc_job){ l->ek, l->keys.enc_iv,
			b[i].buf, b[i].len };
		if (nj == sizeof(jobs) / sizeof(jobs[0])) {
			aescbc_encrypt(jobs, nj);
			nj = 0;
		}
	}
	if (nj)
		aescbc_encrypt(jobs, nj);
	return rc;
}

size_t
rpc_link_seal(struct rpc_link *l, uint8_t *frame, size_t cap, size_t len)
{
	size_t n = rpc_link_frame(l, frame, cap, len);

	/* A failure here breaks the chain: the caller must drop the link. */
	if (n == 0 || rpc_link_encrypt(l, frame, n) == -1)
		return 0;
	return n;
}

size_t
rpc_link_encode(struct rpc_link *l, uint8_t *out, size_t cap,
    const uint8_t *payload, size_t len)
{
	if (cap < RPC_FRAME_OVERHEAD || len > cap - RPC_FRAME_OVERHEAD)
		return 0;
	memmove(out + RPC_FRAME_HDR, payload, len);
	return rpc_link_seal(l, out, cap, len);
}

int
rpc_link_decrypt(struct rpc_link *l, uint8_t *buf, size_t len)
{
	uint8_t last[RPC_BLOCK];

	if (len % RPC_BLOCK != 0)
		return -1;
	if (len == 0)
		return 0;
	memcpy(last, buf + len - RPC_BLOCK, RPC_BLOCK);
	if (crypto_stream_apply(l->dec, buf, buf, len) == -1)
		return -1;
	memcpy(l->keys.dec_iv, last, RPC_BLOCK);
	return 0;
}

enum rpc_decode_status
rpc_link_decode(
    struct rpc_link *l, const uint8_t *buf, size_t len, struct rpc_frame *f)
{
	return rpc_frame_decode(&l->rx, buf, len, f);
}

/* ---------------------------------------------------------------- nonce */

size_t
rpc_nonce_build(uint8_t *out, size_t cap, const uint8_t *secret,
    size_t secret_len, uint32_t ts, const uint8_t nonce[16])
{
	if (cap < RPC_NONCE_LEN || secret_len < 4)
		return 0;
	put32(out, RPC_NONCE);
	memcpy(out + 4, secret, 4);
	put32(out + 8, RPC_CRYPTO_AES);
	put32(out + 12, ts);
	memcpy(out + 16, nonce, 16);
	return RPC_NONCE_LEN;
}

int
rpc_nonce_parse(const uint8_t *p, size_t len, struct rpc_nonce *n)
{
	if (len != RPC_NONCE_LEN || get_le32(p) != RPC_NONCE)
		return -1;
	memcpy(n->key_selector, p + 4, 4);
	n->schema = get_le32(p + 8);
	n->ts = get_le32(p + 12);
	memcpy(n->nonce, p + 16, 16);
	return 0;
}

int
rpc_nonce_check(const struct rpc_nonce *n, const uint8_t *secret,
    size_t secret_len, uint32_t our_ts, uint32_t max_skew, const char **errstr)
{
	int64_t skew = (int64_t)n->ts - (int64_t)our_ts;

	if (secret_len < 4 || memcmp(n->key_selector, secret, 4) != 0) {
		*errstr = "nonce answer for another proxy secret";
		return -1;
	}
	if (n->schema != RPC_CRYPTO_AES) {
		*errstr = "nonce answer with an unknown crypto schema";
		return -1;
	}
	if (skew > (int64_t)max_skew || -skew > (int64_t)max_skew) {
		*errstr = "nonce answer time too far from ours (clock?)";
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- keys */

/* An address as the KDF wants it; IPv4-mapped IPv6 counts as IPv4. */
struct kdf_addr {
	int family;
	uint8_t ip4[4]; /* octets reversed */
	uint8_t ip6[16];
	uint16_t port;
};

static int
kdf_addr_get(const struct sockaddr *sa, struct kdf_addr *a)
{
	const uint8_t *o;

	memset(a, 0, sizeof(*a));
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		o = (const uint8_t *)&sin->sin_addr;
		a->port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		a->port = ntohs(sin6->sin6_port);
		o = sin6->sin6_addr.s6_addr;
		if (memcmp(o, v4mapped_prefix, 12) != 0) {
			a->family = AF_INET6;
			memcpy(a->ip6, o, 16);
			return 0;
		}
		o += 12;
	} else
		return -1;
	a->family = AF_INET;
	for (int i = 0; i < 4; i++)
		a->ip4[i] = o[3 - i];
	return 0;
}

size_t
rpc_kdf_string(
    uint8_t *out, size_t cap, const struct rpc_kdf_params *p, int purpose)
{
	struct kdf_addr me, us;
	size_t need, off = 0;

	if (kdf_addr_get(p->me_addr, &me) == -1 ||
	    kdf_addr_get(p->proxy_addr, &us) == -1 || me.family != us.family ||
	    (purpose != RPC_KDF_CLIENT && purpose != RPC_KDF_SERVER) ||
	    p->secret_len < RPC_SECRET_MIN || p->secret_len > RPC_SECRET_MAX)
		return 0;
	need = 86 + p->secret_len + (me.family == AF_INET6 ? 32 : 0);
	if (cap < need)
		return 0;
	memcpy(out + off, p->nonce_srv, 16);
	off += 16;
	memcpy(out + off, p->nonce_clt, 16);
	off += 16;
	put32(out + off, p->clt_ts);
	off += 4;
	memcpy(out + off, me.ip4, 4); /* zero for IPv6 */
	off += 4;
	put16(out + off, us.port);
	off += 2;
	memcpy(out + off, kdf_purpose[purpose], KDF_PURPOSE_LEN);
	off += KDF_PURPOSE_LEN;
	memcpy(out + off, us.ip4, 4);
	off += 4;
	put16(out + off, me.port);
	off += 2;
	memcpy(out + off, p->secret, p->secret_len);
	off += p->secret_len;
	memcpy(out + off, p->nonce_srv, 16);
	off += 16;
	if (me.family == AF_INET6) {
		memcpy(out + off, us.ip6, 16);
		off += 16;
		memcpy(out + off, me.ip6, 16);
		off += 16;
	}
	memcpy(out + off, p->nonce_clt, 16);
	off += 16;
	return off;
}

void
rpc_kdf_key_iv(const uint8_t *s, size_t len, uint8_t key[32], uint8_t iv[16])
{
	uint8_t md5[16];

	crypto_md5(s + 1, len - 1, md5);
	memcpy(key, md5, 12);
	crypto_sha1(s, len, key + 12);
	crypto_md5(s + 2, len - 2, iv);
	OPENSSL_cleanse(md5, sizeof(md5));
}

int
rpc_link_keys_derive(
    struct rpc_link_keys *k, const struct rpc_kdf_params *p, int me_side)
{
	uint8_t s[RPC_KDF_MAX];
	size_t len;
	int rc = -1;

	memset(k, 0, sizeof(*k));
	if ((len = rpc_kdf_string(s, sizeof(s), p, RPC_KDF_CLIENT)) == 0)
		goto out;
	if (me_side)
		rpc_kdf_key_iv(s, len, k->dec_key, k->dec_iv);
	else
		rpc_kdf_key_iv(s, len, k->enc_key, k->enc_iv);
	if ((len = rpc_kdf_string(s, sizeof(s), p, RPC_KDF_SERVER)) == 0)
		goto out;
	if (me_side)
		rpc_kdf_key_iv(s, len, k->enc_key, k->enc_iv);
	else
		rpc_kdf_key_iv(s, len, k->dec_key, k->dec_iv);
	k->seq_out = RPC_SEQ_HANDSHAKE;
	k->seq_in = RPC_SEQ_HANDSHAKE;
	rc = 0;
out:
	OPENSSL_cleanse(s, sizeof(s));
	if (rc == -1)
		OPENSSL_cleanse(k, sizeof(*k));
	return rc;
}

/* ---------------------------------------------------------------- handshake */

void
rpc_pid_make(uint8_t out[RPC_PID_LEN], const struct sockaddr *addr,
    uint16_t pid, uint32_t start_time)
{
	struct kdf_addr a;

	if (kdf_addr_get(addr, &a) == -1)
		memset(&a, 0, sizeof(a));
	memcpy(out, a.ip4, 4); /* zero for IPv6 */
	put16(out + 4, a.port);
	put16(out + 6, pid);
	put32(out + 8, start_time);
}

size_t
rpc_handshake_build(uint8_t *out, size_t cap, uint32_t flags,
    const uint8_t sender_pid[RPC_PID_LEN], const uint8_t peer_pid[RPC_PID_LEN])
{
	if (cap < RPC_HANDSHAKE_LEN)
		return 0;
	put32(out, RPC_HANDSHAKE);
	put32(out + 4, flags);
	memcpy(out + 8, sender_pid, RPC_PID_LEN);
	memcpy(out + 20, peer_pid, RPC_PID_LEN);
	return RPC_HANDSHAKE_LEN;
}

int
rpc_handshake_parse(const uint8_t *p, size_t len, struct rpc_handshake *h)
{
	if (len != RPC_HANDSHAKE_LEN || get_le32(p) != RPC_HANDSHAKE)
		return -1;
	h->flags = get_le32(p + 4);
	memcpy(h->sender_pid, p + 8, RPC_PID_LEN);
	memcpy(h->peer_pid, p + 20, RPC_PID_LEN);
	return 0;
}

int
rpc_handshake_check(const struct rpc_handshake *h, uint32_t our_flags,
    const uint8_t our_pid[RPC_PID_LEN], int *crc32c, const char **errstr)
{
	if ((h->flags & 0xff) != 0) {
		*errstr = "handshake answer with unknown flags";
		return -1;
	}
	if (memcmp(h->peer_pid, our_pid, RPC_PID_LEN) != 0) {
		*errstr = "handshake answer for another peer";
		return -1;
	}
	*crc32c = (h->flags & our_flags & RPC_HANDSHAKE_CRC32C) != 0;
	return 0;
}

size_t
rpc_handshake_error_build(uint8_t *out, size_t cap, int32_t code,
    const uint8_t sender_pid[RPC_PID_LEN])
{
	if (cap < RPC_HANDSHAKE_ERROR_LEN)
		return 0;
	put32(out, RPC_HANDSHAKE_ERROR);
	put32(out + 4, (uint32_t)code);
	memcpy(out + 8, sender_pid, RPC_PID_LEN);
	return RPC_HANDSHAKE_ERROR_LEN;
}

int
rpc_handshake_error_parse(
    const uint8_t *p, size_t len, struct rpc_handshake_error *e)
{
	if (len != RPC_HANDSHAKE_ERROR_LEN ||
	    get_le32(p) != RPC_HANDSHAKE_ERROR)
		return -1;
	e->code = (int32_t)get_le32(p + 4);
	memcpy(e->sender_pid, p + 8, RPC_PID_LEN);
	return 0;
}

/* ---------------------------------------------------------------- messages */

uint32_t
rpc_msg_type(const uint8_t *p, size_t len)
{
	return len < 4 ? 0 : get_le32(p);
}

uint32_t
rpc_proxy_req_flags(enum rpc_transport t, int quickack, int has_ad_tag,
    const uint8_t *packet, size_t len)
{
	uint32_t f = RPC_FLAG_MAGIC | RPC_FLAG_EXTMODE2;
	static const uint8_t zero_id[8];

	switch (t) {
	case RPC_TRANSPORT_ABRIDGED:
		f |= RPC_FLAG_ABRIDGED;
		break;
	case RPC_TRANSPORT_INTERMEDIATE:
		f |= RPC_FLAG_INTERMEDIATE;
		break;
	case RPC_TRANSPORT_PADDED:
		f |= RPC_FLAG_INTERMEDIATE | RPC_FLAG_PAD;
		break;
	}
	if (has_ad_tag)
		f |= RPC_FLAG_HAS_AD_TAG;
	if (len >= 8 && memcmp(packet, zero_id, 8) == 0)
		f |= RPC_FLAG_NOT_ENCRYPTED;
	if (quickack)
		f |= RPC_FLAG_QUICKACK;
	return f;
}

/* 16-byte IPv6 (IPv4 mapped) address and LE32 port, B.2.7. */
static int
put_ip_port(uint8_t *out, const struct sockaddr *sa)
{
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		memcpy(out, v4mapped_prefix, 12);
		memcpy(out + 12, &sin->sin_addr, 4);
		put32(out + 16, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		memcpy(out, sin6->sin6_addr.s6_addr, 16);
		put32(out + 16, ntohs(sin6->sin6_port));
	} else
		return -1;
	return 0;
}

size_t
rpc_proxy_req_header(uint8_t *out, size_t cap, uint32_t flags, uint64_t conn_id,
    const struct sockaddr *client, const struct sockaddr *proxy,
    const uint8_t *ad_tag)
{
	size_t need = ad_tag ? RPC_PROXY_REQ_HDR_TAG : RPC_PROXY_REQ_HDR;

	if (cap < need || put_ip_port(out + 16, client) == -1 ||
	    put_ip_port(out + 36, proxy) == -1)
		return 0;
	flags &= ~(RPC_FLAG_HTTP_QUERY | RPC_FLAG_HAS_AD_TAG);
	if (ad_tag)
		flags |= RPC_FLAG_HAS_AD_TAG;
	put32(out, RPC_PROXY_REQ);
	put32(out + 4, flags);
	put64(out + 8, conn_id);
	if (ad_tag) {
		/* extra_size, then TL_PROXY_TAG and a TL string of 16. */
		put32(out + 56, 24);
		put32(out + 60, RPC_TL_PROXY_TAG);
		out[64] = RPC_AD_TAG_LEN;
		memcpy(out + 65, ad_tag, RPC_AD_TAG_LEN);
		memset(out + 81, 0, 3);
	}
	return need;
}

size_t
rpc_proxy_req_build(uint8_t *out, size_t cap, uint32_t flags, uint64_t conn_id,
    const struct sockaddr *client, const struct sockaddr *proxy,
    const uint8_t *ad_tag, const uint8_t *data, size_t len)
{
	size_t n;

	if (len % 4 != 0 ||
	    (n = rpc_proxy_req_header(
	         out, cap, flags, conn_id, client, proxy, ad_tag)) == 0 ||
	    len > cap - n)
		return 0;
	memmove(out + n, data, len);
	return n + len;
}

int
rpc_proxy_req_parse(const uint8_t *p, size_t len, struct rpc_proxy_req *r)
{
	size_t off = RPC_PROXY_REQ_HDR;

	memset(r, 0, sizeof(*r));
	if (len < RPC_PROXY_REQ_HDR || get_le32(p) != RPC_PROXY_REQ)
		return -1;
	r->flags = get_le32(p + 4);
	r->conn_id = get_le64(p + 8);
	memcpy(r->client_ip, p + 16, 16);
	r->client_port = get_le32(p + 32);
	memcpy(r->proxy_ip, p + 36, 16);
	r->proxy_port = get_le32(p + 52);
	if (r->flags & (RPC_FLAG_HAS_AD_TAG | RPC_FLAG_HTTP_QUERY)) {
		const uint8_t *extra;
		uint32_t extra_size;

		if (len - off < 4)
			return -1;
		extra_size = get_le32(p + off);
		off += 4;
		extra = p + off;
		if (extra_size % 4 != 0 || extra_size > len - off)
			return -1;
		if (r->flags & RPC_FLAG_HAS_AD_TAG) {
			if (extra_size < 5 + RPC_AD_TAG_LEN ||
			    get_le32(extra) != RPC_TL_PROXY_TAG ||
			    extra[4] != RPC_AD_TAG_LEN)
				return -1;
			memcpy(r->ad_tag, extra + 5, RPC_AD_TAG_LEN);
			r->has_ad_tag = 1;
		}
		off += extra_size;
	}
	r->data = p + off;
	r->len = len - off;
	return 0;
}

void
rpc_addr_from_ip16(const uint8_t ip[16], uint32_t port,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	memset(ss, 0, sizeof(*ss));
	if (memcmp(ip, v4mapped_prefix, 12) == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, ip + 12, 4);
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		memcpy(sin6->sin6_addr.s6_addr, ip, 16);
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*sin6);
	}
}

int
rpc_proxy_ans_parse(const uint8_t *p, size_t len, struct rpc_proxy_ans *a)
{
	if (len < RPC_PROXY_ANS_HDR || get_le32(p) != RPC_PROXY_ANS)
		return -1;
	a->flags = get_le32(p + 4);
	a->conn_id = get_le64(p + 8);
	a->data = p + RPC_PROXY_ANS_HDR;
	a->len = len - RPC_PROXY_ANS_HDR;
	return 0;
}

size_t
rpc_proxy_ans_build(uint8_t *out, size_t cap, uint32_t flags, uint64_t conn_id,
    const uint8_t *data, size_t len)
{
	if (len % 4 != 0 || cap < RPC_PROXY_ANS_HDR ||
	    len > cap - RPC_PROXY_ANS_HDR)
		return 0;
	memmove(out + RPC_PROXY_ANS_HDR, data, len);
	put32(out, RPC_PROXY_ANS);
	put32(out + 4, flags);
	put64(out + 8, conn_id);
	return RPC_PROXY_ANS_HDR + len;
}

int
rpc_simple_ack_parse(
    const uint8_t *p, size_t len, uint64_t *conn_id, uint32_t *confirm)
{
	if (len != RPC_SIMPLE_ACK_LEN || get_le32(p) != RPC_SIMPLE_ACK)
		return -1;
	*conn_id = get_le64(p + 4);
	*confirm = get_le32(p + 12);
	return 0;
}

size_t
rpc_simple_ack_build(
    uint8_t *out, size_t cap, uint64_t conn_id, uint32_t confirm)
{
	if (cap < RPC_SIMPLE_ACK_LEN)
		return 0;
	put32(out, RPC_SIMPLE_ACK);
	put64(out + 4, conn_id);
	put32(out + 12, confirm);
	return RPC_SIMPLE_ACK_LEN;
}

/* The 12-byte messages: a type and a 64-bit id. */
static int
id_parse(uint32_t type, const uint8_t *p, size_t len, uint64_t *id)
{
	if (len != 12 || get_le32(p) != type)
		return -1;
	*id = get_le64(p + 4);
	return 0;
}

static size_t
id_build(uint32_t type, uint8_t *out, size_t cap, uint64_t id)
{
	if (cap < 12)
		return 0;
	put32(out, type);
	put64(out + 4, id);
	return 12;
}

int
rpc_close_ext_parse(const uint8_t *p, size_t len, uint64_t *conn_id)
{
	return id_parse(RPC_CLOSE_EXT, p, len, conn_id);
}

size_t
rpc_close_ext_build(uint8_t *out, size_t cap, uint64_t conn_id)
{
	return id_build(RPC_CLOSE_EXT, out, cap, conn_id);
}

int
rpc_close_conn_parse(const uint8_t *p, size_t len, uint64_t *conn_id)
{
	return id_parse(RPC_CLOSE_CONN, p, len, conn_id);
}

size_t
rpc_close_conn_build(uint8_t *out, size_t cap, uint64_t conn_id)
{
	return id_build(RPC_CLOSE_CONN, out, cap, conn_id);
}

int
rpc_ping_parse(const uint8_t *p, size_t len, uint64_t *ping_id)
{
	return id_parse(RPC_PING, p, len, ping_id);
}

size_t
rpc_ping_build(uint8_t *out, size_t cap, uint64_t ping_id)
{
	return id_build(RPC_PING, out, cap, ping_id);
}

int
rpc_pong_parse(const uint8_t *p, size_t len, uint64_t *ping_id)
{
	return id_parse(RPC_PONG, p, len, ping_id);
}

size_t
rpc_pong_build(uint8_t *out, size_t cap, uint64_t ping_id)
{
	return id_build(RPC_PONG, out, cap, ping_id);
}
