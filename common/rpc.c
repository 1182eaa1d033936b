#include "autoconf.h"

#include <netinet/in.h>
#include <string.h>
#include <zlib.h>

#include <openssl/crypto.h>

#include "crypto.h"
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

/* ---------------------------------------------------------------- CRCs */

uint32_t
rpc_crc32(const uint8_t *p, size_t len)
{
	return (uint32_t)crc32_z(0, p, len);
}

/* Reflected Castagnoli polynomial 0x82f63b78, one byte per step. */
static const uint32_t crc32c_table[256] = {
	0x00000000,
	0xf26b8303,
	0xe13b70f7,
	0x1350f3f4,
	0xc79a971f,
	0x35f1141c,
	0x26a1e7e8,
	0xd4ca64eb,
	0x8ad958cf,
	0x78b2dbcc,
	0x6be22838,
	0x9989ab3b,
	0x4d43cfd0,
	0xbf284cd3,
	0xac78bf27,
	0x5e133c24,
	0x105ec76f,
	0xe235446c,
	0xf165b798,
	0x030e349b,
	0xd7c45070,
	0x25afd373,
	0x36ff2087,
	0xc494a384,
	0x9a879fa0,
	0x68ec1ca3,
	0x7bbcef57,
	0x89d76c54,
	0x5d1d08bf,
	0xaf768bbc,
	0xbc267848,
	0x4e4dfb4b,
	0x20bd8ede,
	0xd2d60ddd,
	0xc186fe29,
	0x33ed7d2a,
	0xe72719c1,
	0x154c9ac2,
	0x061c6936,
	0xf477ea35,
	0xaa64d611,
	0x580f5512,
	0x4b5fa6e6,
	0xb93425e5,
	0x6dfe410e,
	0x9f95c20d,
	0x8cc531f9,
	0x7eaeb2fa,
	0x30e349b1,
	0xc288cab2,
	0xd1d83946,
	0x23b3ba45,
	0xf779deae,
	0x05125dad,
	0x1642ae59,
	0xe4292d5a,
	0xba3a117e,
	0x4851927d,
	0x5b016189,
	0xa96ae28a,
	0x7da08661,
	0x8fcb0562,
	0x9c9bf696,
	0x6ef07595,
	0x417b1dbc,
	0xb3109ebf,
	0xa0406d4b,
	0x522bee48,
	0x86e18aa3,
	0x748a09a0,
	0x67dafa54,
	0x95b17957,
	0xcba24573,
	0x39c9c670,
	0x2a993584,
	0xd8f2b687,
	0x0c38d26c,
	0xfe53516f,
	0xed03a29b,
	0x1f682198,
	0x5125dad3,
	0xa34e59d0,
	0xb01eaa24,
	0x42752927,
	0x96bf4dcc,
	0x64d4cecf,
	0x77843d3b,
	0x85efbe38,
	0xdbfc821c,
	0x2997011f,
	0x3ac7f2eb,
	0xc8ac71e8,
	0x1c661503,
	0xee0d9600,
	0xfd5d65f4,
	0x0f36e6f7,
	0x61c69362,
	0x93ad1061,
	0x80fde395,
	0x72966096,
	0xa65c047d,
	0x5437877e,
	0x4767748a,
	0xb50cf789,
	0xeb1fcbad,
	0x197448ae,
	0x0a24bb5a,
	0xf84f3859,
	0x2c855cb2,
	0xdeeedfb1,
	0xcdbe2c45,
	0x3fd5af46,
	0x7198540d,
	0x83f3d70e,
	0x90a324fa,
	0x62c8a7f9,
	0xb602c312,
	0x44694011,
	0x5739b3e5,
	0xa55230e6,
	0xfb410cc2,
	0x092a8fc1,
	0x1a7a7c35,
	0xe811ff36,
	0x3cdb9bdd,
	0xceb018de,
	0xdde0eb2a,
	0x2f8b6829,
	0x82f63b78,
	0x709db87b,
	0x63cd4b8f,
	0x91a6c88c,
	0x456cac67,
	0xb7072f64,
	0xa457dc90,
	0x563c5f93,
	0x082f63b7,
	0xfa44e0b4,
	0xe9141340,
	0x1b7f9043,
	0xcfb5f4a8,
	0x3dde77ab,
	0x2e8e845f,
	0xdce5075c,
	0x92a8fc17,
	0x60c37f14,
	0x73938ce0,
	0x81f80fe3,
	0x55326b08,
	0xa759e80b,
	0xb4091bff,
	0x466298fc,
	0x1871a4d8,
	0xea1a27db,
	0xf94ad42f,
	0x0b21572c,
	0xdfeb33c7,
	0x2d80b0c4,
	0x3ed04330,
	0xccbbc033,
	0xa24bb5a6,
	0x502036a5,
	0x4370c551,
	0xb11b4652,
	0x65d122b9,
	0x97baa1ba,
	0x84ea524e,
	0x7681d14d,
	0x2892ed69,
	0xdaf96e6a,
	0xc9a99d9e,
	0x3bc21e9d,
	0xef087a76,
	0x1d63f975,
	0x0e330a81,
	0xfc588982,
	0xb21572c9,
	0x407ef1ca,
	0x532e023e,
	0xa145813d,
	0x758fe5d6,
	0x87e466d5,
	0x94b49521,
	0x66df1622,
	0x38cc2a06,
	0xcaa7a905,
	0xd9f75af1,
	0x2b9cd9f2,
	0xff56bd19,
	0x0d3d3e1a,
	0x1e6dcdee,
	0xec064eed,
	0xc38d26c4,
	0x31e6a5c7,
	0x22b65633,
	0xd0ddd530,
	0x0417b1db,
	0xf67c32d8,
	0xe52cc12c,
	0x1747422f,
	0x49547e0b,
	0xbb3ffd08,
	0xa86f0efc,
	0x5a048dff,
	0x8ecee914,
	0x7ca56a17,
	0x6ff599e3,
	0x9d9e1ae0,
	0xd3d3e1ab,
	0x21b862a8,
	0x32e8915c,
	0xc083125f,
	0x144976b4,
	0xe622f5b7,
	0xf5720643,
	0x07198540,
	0x590ab964,
	0xab613a67,
	0xb831c993,
	0x4a5a4a90,
	0x9e902e7b,
	0x6cfbad78,
	0x7fab5e8c,
	0x8dc0dd8f,
	0xe330a81a,
	0x115b2b19,
	0x020bd8ed,
	0xf0605bee,
	0x24aa3f05,
	0xd6c1bc06,
	0xc5914ff2,
	0x37faccf1,
	0x69e9f0d5,
	0x9b8273d6,
	0x88d28022,
	0x7ab90321,
	0xae7367ca,
	0x5c18e4c9,
	0x4f48173d,
	0xbd23943e,
	0xf36e6f75,
	0x0105ec76,
	0x12551f82,
	0xe03e9c81,
	0x34f4f86a,
	0xc69f7b69,
	0xd5cf889d,
	0x27a40b9e,
	0x79b737ba,
	0x8bdcb4b9,
	0x988c474d,
	0x6ae7c44e,
	0xbe2da0a5,
	0x4c4623a6,
	0x5f16d052,
	0xad7d5351,
};

uint32_t
rpc_crc32c(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffU;

	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffU;
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
	OPENSSL_cleanse(&l->keys, sizeof(l->keys));
}

void
rpc_link_set_crc32c(struct rpc_link *l, int on)
{
	l->keys.crc32c = on != 0;
	l->rx.crc32c = on != 0;
}

size_t
rpc_link_seal(struct rpc_link *l, uint8_t *frame, size_t cap, size_t len)
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
	n += (size_t)pad;
	/* A failure here breaks the chain: the caller must drop the link. */
	if (crypto_stream_apply(l->enc, frame, frame, n) == -1)
		return 0;
	memcpy(l->keys.enc_iv, frame + n - RPC_BLOCK, RPC_BLOCK);
	l->keys.seq_out = (int32_t)((uint32_t)seq + 1);
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
