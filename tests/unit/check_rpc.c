#include "autoconf.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "util.h"
#include "vectors.h"

#define B2 "B2_middle_proxy."

/* ---------------------------------------------------------------- helpers */

static void
ck_bytes(const uint8_t *got, size_t glen, const uint8_t *want, size_t wlen,
    const char *what)
{
	char *g, *w;

	if (glen == wlen && memcmp(got, want, wlen) == 0)
		return;
	g = malloc(2 * glen + 1);
	w = malloc(2 * wlen + 1);
	ck_assert(g != NULL && w != NULL);
	hex_encode(got, glen, g);
	hex_encode(want, wlen, w);
	ck_abort_msg("%s:\n got  %s\n want %s", what, g, w);
}

/* A vector's bytes compared with ours. */
static void
ck_vec(const uint8_t *got, size_t glen, const char *path)
{
	size_t wlen;
	uint8_t *want = vec_hex(path, &wlen);

	ck_bytes(got, glen, want, wlen, path);
	free(want);
}

/* Hex in a literal (published known answers not in vectors.json). */
static uint8_t *
unhex(const char *s, size_t *len)
{
	size_t n = strlen(s) / 2;
	uint8_t *out = malloc(n + 1);

	ck_assert(out != NULL);
	ck_assert_int_eq(hex_decode(s, out, n), 0);
	*len = n;
	return out;
}

static uint32_t
vec_u32hex(const char *path)
{
	return (uint32_t)strtoul(vec_str(path), NULL, 16);
}

static uint64_t
vec_u64hex(const char *path)
{
	return strtoull(vec_str(path), NULL, 16);
}

static void
sa(const char *ip, int port, struct sockaddr_storage *ss)
{
	socklen_t len;

	ck_assert_int_eq(addr_from_ip_port(ip, (uint16_t)port, ss, &len), 0);
}

/* Inputs of B2_middle_proxy.kdf_ipv4 or kdf_ipv6, owned by the caller. */
struct kdf_case {
	uint8_t *nonce_srv, *nonce_clt, *secret;
	size_t secret_len;
	struct sockaddr_storage me, us;
	struct rpc_kdf_params p;
};

static void
kdf_case_load(struct kdf_case *c, const char *which)
{
	char path[128];
	size_t n;

	snprintf(path, sizeof(path), B2 "%s.nonce_srv", which);
	c->nonce_srv = vec_hex(path, &n);
	ck_assert_uint_eq(n, 16);
	snprintf(path, sizeof(path), B2 "%s.nonce_clt", which);
	c->nonce_clt = vec_hex(path, &n);
	ck_assert_uint_eq(n, 16);
	/* kdf_ipv6 says "same as kdf_ipv4". */
	c->secret = vec_hex(B2 "kdf_ipv4.secret", &c->secret_len);
	snprintf(path, sizeof(path), B2 "%s.srv_ip", which);
	const char *srv_ip = vec_str(path);
	snprintf(path, sizeof(path), B2 "%s.srv_port", which);
	sa(srv_ip, (int)vec_int(path), &c->me);
	snprintf(path, sizeof(path), B2 "%s.clt_ip", which);
	const char *clt_ip = vec_str(path);
	snprintf(path, sizeof(path), B2 "%s.clt_port", which);
	sa(clt_ip, (int)vec_int(path), &c->us);
	snprintf(path, sizeof(path), B2 "%s.clt_ts", which);
	c->p.clt_ts = (uint32_t)vec_int(path);
	c->p.nonce_srv = c->nonce_srv;
	c->p.nonce_clt = c->nonce_clt;
	c->p.me_addr = (struct sockaddr *)&c->me;
	c->p.proxy_addr = (struct sockaddr *)&c->us;
	c->p.secret = c->secret;
	c->p.secret_len = c->secret_len;
}

static void
kdf_case_free(struct kdf_case *c)
{
	free(c->nonce_srv);
	free(c->nonce_clt);
	free(c->secret);
}

/* The proxy's and the ME's ends of the kdf_ipv4 link, at seq -1. */
static void
links_ipv4(struct rpc_link *proxy, struct rpc_link *me)
{
	struct kdf_case c;
	struct rpc_link_keys k;

	kdf_case_load(&c, "kdf_ipv4");
	ck_assert_int_eq(rpc_link_keys_derive(&k, &c.p, 0), 0);
	ck_assert_int_eq(rpc_link_restore(proxy, &k, RPC_FRAME_MAX_DEFAULT), 0);
	if (me) {
		ck_assert_int_eq(rpc_link_keys_derive(&k, &c.p, 1), 0);
		ck_assert_int_eq(
		    rpc_link_restore(me, &k, RPC_FRAME_MAX_DEFAULT), 0);
	}
	kdf_case_free(&c);
}

/* The handshake payload of the vectors (gen_vectors.py: pid 4242). */
static void
vector_pids(uint8_t sender[RPC_PID_LEN], uint8_t peer[RPC_PID_LEN])
{
	struct sockaddr_storage us, me;

	sa(vec_str(B2 "kdf_ipv4.clt_ip"), (int)vec_int(B2 "kdf_ipv4.clt_port"),
	    &us);
	sa(vec_str(B2 "kdf_ipv4.srv_ip"), (int)vec_int(B2 "kdf_ipv4.srv_port"),
	    &me);
	rpc_pid_make(sender, (struct sockaddr *)&us, 4242,
	    (uint32_t)vec_int(B2 "kdf_ipv4.clt_ts"));
	rpc_pid_make(peer, (struct sockaddr *)&me, 0, 0);
}

/* The PROXY_REQ payload of B2_middle_proxy.rpc_proxy_req into out. */
static size_t
vector_proxy_req(uint8_t *out, size_t cap)
{
	struct sockaddr_storage client, proxy;
	socklen_t sl;
	size_t taglen, dlen, n;
	uint8_t *tag = vec_hex(B2 "rpc_proxy_req.ad_tag", &taglen);
	uint8_t *data = vec_hex(B2 "rpc_proxy_req.data", &dlen);
	uint32_t flags;

	ck_assert_uint_eq(taglen, RPC_AD_TAG_LEN);
	ck_assert_int_eq(
	    addr_parse(vec_str(B2 "rpc_proxy_req.client"), 0, &client, &sl), 0);
	ck_assert_int_eq(
	    addr_parse(vec_str(B2 "rpc_proxy_req.proxy"), 0, &proxy, &sl), 0);
	flags = rpc_proxy_req_flags(RPC_TRANSPORT_ABRIDGED, 0, 1, data, dlen);
	ck_assert_uint_eq(flags, vec_u32hex(B2 "rpc_proxy_req.flags"));
	n = rpc_proxy_req_build(out, cap, flags,
	    vec_u64hex(B2 "rpc_proxy_req.conn_id"), (struct sockaddr *)&client,
	    (struct sockaddr *)&proxy, tag, data, dlen);
	free(tag);
	free(data);
	return n;
}

/* A receiver: bytes accumulate in buf, frames are taken from its start. */
struct rx {
	uint8_t buf[4096];
	size_t have;
	struct rpc_decoder dec;
	int nframes;
	uint8_t payloads[16][64];
	size_t lens[16];
	int error;
};

static void
rx_feed(struct rx *r, const uint8_t *p, size_t len)
{
	struct rpc_frame f;
	enum rpc_decode_status st;

	ck_assert_uint_le(len, sizeof(r->buf) - r->have);
	memcpy(r->buf + r->have, p, len);
	r->have += len;
	for (;;) {
		st = rpc_frame_decode(&r->dec, r->buf, r->have, &f);
		ck_assert_uint_le(f.consumed, r->have);
		if (st == RPC_DECODE_ERROR) {
			r->error = 1;
			return;
		}
		if (st == RPC_DECODE_OK) {
			ck_assert_int_lt(r->nframes, 16);
			ck_assert_uint_le(f.len, 64);
			ck_assert(f.payload >= r->buf &&
			    f.payload + f.len <= r->buf + r->have);
			memcpy(r->payloads[r->nframes], f.payload, f.len);
			r->lens[r->nframes++] = f.len;
		}
		memmove(r->buf, r->buf + f.consumed, r->have - f.consumed);
		r->have -= f.consumed;
		if (st == RPC_DECODE_NEED_MORE)
			return;
	}
}

/* ---------------------------------------------------------------- CRCs */

/* Bit by bit, to check the table of rpc_crc32c. */
static uint32_t
crc32c_bitwise(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffU;

	while (len--) {
		crc ^= *p++;
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0x82f63b78U & (0U - (crc & 1)));
	}
	return crc ^ 0xffffffffU;
}

/*
 * Each test runs in a process of its own (check forks), so the CRC32C
 * implementation is picked again: the table (forced) and, where the CPU
 * has it, SSE4.2. Odd offsets and lengths cover the unaligned head and
 * tail of both.
 */
static void
crc_checks(void)
{
	const uint8_t *s = (const uint8_t *)"123456789";
	static uint8_t buf[20000 + 8];

	ck_assert_uint_eq(rpc_crc32(s, 9), vec_u32hex(B2 "crc32_of_123456789"));
	ck_assert_uint_eq(
	    rpc_crc32c(s, 9), vec_u32hex(B2 "crc32c_of_123456789"));
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 3));
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n <= 4096; n += 37)
			ck_assert_uint_eq(rpc_crc32c(buf + off, n),
			    crc32c_bitwise(buf + off, n));
	/* Around the 3 x 1024-byte blocks of the SSE4.2 code, and a whole
	 * 16 KiB packet's frame. */
	static const size_t big[] = { 3071, 3072, 3073, 6143, 6144, 6151, 9216,
		16384 + 64, 20000 };
	for (size_t off = 0; off < 8; off += 3)
		for (size_t k = 0; k < sizeof(big) / sizeof(big[0]); k++)
			ck_assert_uint_eq(rpc_crc32c(buf + off, big[k]),
			    crc32c_bitwise(buf + off, big[k]));
	for (int b = 0; b < 256; b++) {
		buf[0] = (uint8_t)b;
		ck_assert_uint_eq(rpc_crc32c(buf, 1), crc32c_bitwise(buf, 1));
	}
	ck_assert_uint_eq(rpc_crc32(s, 0), 0);
	ck_assert_uint_eq(rpc_crc32c(s, 0), 0);
}

START_TEST(test_crc32c_table)
{
	setenv("MTPROTOD_NO_SSE42", "1", 1);
	crc_checks();
	ck_assert_str_eq(rpc_crc32c_impl(), "table");
}
END_TEST

START_TEST(test_crc32c_cpu)
{
	unsetenv("MTPROTOD_NO_SSE42");
	crc_checks();
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		ck_assert_str_eq(rpc_crc32c_impl(), "sse4.2");
#endif
}
END_TEST

START_TEST(test_crc)
{
	const uint8_t *s = (const uint8_t *)"123456789";
	uint8_t buf[1024];

	ck_assert_uint_eq(rpc_crc32(s, 9), vec_u32hex(B2 "crc32_of_123456789"));
	ck_assert_uint_eq(
	    rpc_crc32c(s, 9), vec_u32hex(B2 "crc32c_of_123456789"));
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 3));
	for (size_t n = 0; n <= sizeof(buf); n += 37)
		ck_assert_uint_eq(rpc_crc32c(buf, n), crc32c_bitwise(buf, n));
	for (int b = 0; b < 256; b++) {
		buf[0] = (uint8_t)b;
		ck_assert_uint_eq(rpc_crc32c(buf, 1), crc32c_bitwise(buf, 1));
	}
	ck_assert_uint_eq(rpc_crc32(s, 0), 0);
	ck_assert_uint_eq(rpc_crc32c(s, 0), 0);
}
END_TEST

/* ---------------------------------------------------------------- KDF */

static void
check_kdf(const char *which)
{
	char path[128];
	struct kdf_case c;
	struct rpc_link_keys k, km;
	uint8_t s[RPC_KDF_MAX], key[32], iv[16];
	size_t n;

	kdf_case_load(&c, which);
	n = rpc_kdf_string(s, sizeof(s), &c.p, RPC_KDF_CLIENT);
	snprintf(path, sizeof(path), B2 "%s.kdf_string_len", which);
	ck_assert_uint_eq(n, (size_t)vec_int(path));
	snprintf(path, sizeof(path), B2 "%s.kdf_string_client", which);
	ck_vec(s, n, path);
	rpc_kdf_key_iv(s, n, key, iv);
	snprintf(path, sizeof(path), B2 "%s.client_key_write", which);
	ck_vec(key, 32, path);
	snprintf(path, sizeof(path), B2 "%s.client_iv_write", which);
	ck_vec(iv, 16, path);

	/* The SERVER string differs only in its purpose bytes. */
	uint8_t s2[RPC_KDF_MAX];
	ck_assert_uint_eq(
	    rpc_kdf_string(s2, sizeof(s2), &c.p, RPC_KDF_SERVER), n);
	ck_assert_int_eq(memcmp(s2 + 42, "SERVER", 6), 0);
	ck_assert_int_eq(memcmp(s2, s, 42), 0);
	ck_assert_int_eq(memcmp(s2 + 48, s + 48, n - 48), 0);
	rpc_kdf_key_iv(s2, n, key, iv);
	snprintf(path, sizeof(path), B2 "%s.server_key_read", which);
	ck_vec(key, 32, path);
	snprintf(path, sizeof(path), B2 "%s.server_iv_read", which);
	ck_vec(iv, 16, path);

	/* Whole snapshots, both ends. */
	ck_assert_int_eq(rpc_link_keys_derive(&k, &c.p, 0), 0);
	snprintf(path, sizeof(path), B2 "%s.client_key_write", which);
	ck_vec(k.enc_key, 32, path);
	snprintf(path, sizeof(path), B2 "%s.client_iv_write", which);
	ck_vec(k.enc_iv, 16, path);
	snprintf(path, sizeof(path), B2 "%s.server_key_read", which);
	ck_vec(k.dec_key, 32, path);
	snprintf(path, sizeof(path), B2 "%s.server_iv_read", which);
	ck_vec(k.dec_iv, 16, path);
	ck_assert_int_eq(k.seq_out, -1);
	ck_assert_int_eq(k.seq_in, -1);
	ck_assert_uint_eq(k.crc32c, 0);
	ck_assert_int_eq(rpc_link_keys_derive(&km, &c.p, 1), 0);
	ck_assert_int_eq(memcmp(km.enc_key, k.dec_key, 32), 0);
	ck_assert_int_eq(memcmp(km.enc_iv, k.dec_iv, 16), 0);
	ck_assert_int_eq(memcmp(km.dec_key, k.enc_key, 32), 0);
	ck_assert_int_eq(memcmp(km.dec_iv, k.enc_iv, 16), 0);

	/* Too small a buffer, mixed families, bad secret, bad purpose. */
	ck_assert_uint_eq(rpc_kdf_string(s, n - 1, &c.p, RPC_KDF_CLIENT), 0);
	ck_assert_uint_eq(rpc_kdf_string(s, sizeof(s), &c.p, 2), 0);
	struct rpc_kdf_params bad = c.p;
	bad.secret_len = RPC_SECRET_MIN - 1;
	ck_assert_uint_eq(
	    rpc_kdf_string(s, sizeof(s), &bad, RPC_KDF_CLIENT), 0);
	bad.secret_len = RPC_SECRET_MAX + 1;
	ck_assert_uint_eq(
	    rpc_kdf_string(s, sizeof(s), &bad, RPC_KDF_CLIENT), 0);
	ck_assert_int_eq(rpc_link_keys_derive(&k, &bad, 0), -1);
	struct sockaddr_storage other;
	sa(c.me.ss_family == AF_INET ? "::1" : "127.0.0.1", 1, &other);
	bad = c.p;
	bad.me_addr = (struct sockaddr *)&other;
	ck_assert_uint_eq(
	    rpc_kdf_string(s, sizeof(s), &bad, RPC_KDF_CLIENT), 0);
	kdf_case_free(&c);
}

START_TEST(test_kdf_ipv4)
{
	uint8_t s[RPC_KDF_MAX];
	struct kdf_case c;
	size_t n;

	check_kdf("kdf_ipv4");
	kdf_case_load(&c, "kdf_ipv4");
	n = rpc_kdf_string(s, sizeof(s), &c.p, RPC_KDF_CLIENT);
	ck_vec(s + 36, 4, B2 "kdf_ipv4.srv_ip_kdf_bytes");
	ck_vec(s + 48, 4, B2 "kdf_ipv4.clt_ip_kdf_bytes");

	/* A dual-stack socket's IPv4-mapped addresses give the same. */
	struct sockaddr_storage me6, us6;
	char ip[64];
	uint8_t s6[RPC_KDF_MAX];
	snprintf(ip, sizeof(ip), "::ffff:%s", vec_str(B2 "kdf_ipv4.srv_ip"));
	sa(ip, (int)vec_int(B2 "kdf_ipv4.srv_port"), &me6);
	snprintf(ip, sizeof(ip), "::ffff:%s", vec_str(B2 "kdf_ipv4.clt_ip"));
	sa(ip, (int)vec_int(B2 "kdf_ipv4.clt_port"), &us6);
	c.p.me_addr = (struct sockaddr *)&me6;
	c.p.proxy_addr = (struct sockaddr *)&us6;
	ck_assert_uint_eq(
	    rpc_kdf_string(s6, sizeof(s6), &c.p, RPC_KDF_CLIENT), n);
	ck_bytes(s6, n, s, n, "kdf string from mapped addresses");
	kdf_case_free(&c);
}
END_TEST

START_TEST(test_kdf_ipv6)
{
	check_kdf("kdf_ipv6");
}
END_TEST

/* Inputs of Erl's mtp_down_conn middle_key_test (see gen_vectors.py). */
START_TEST(test_kdf_erlang)
{
	struct sockaddr_storage me, us;
	struct rpc_kdf_params p;
	uint8_t s[RPC_KDF_MAX], key[32], iv[16], *ns, *nc, *secret;
	size_t n, slen;

	ns = unhex("f728d238410c65aad89b0efdfaeedbe2", &n);
	nc = unhex("1831356fc60aebb4e6705c4e01c96a69", &n);
	secret = vec_hex(B2 "kdf_ipv4.secret", &slen);
	sa("149.154.162.38", 80, &me);
	sa("80.211.29.34", 54208, &us);
	memset(&p, 0, sizeof(p));
	p.nonce_srv = ns;
	p.nonce_clt = nc;
	p.clt_ts = 1528396015;
	p.me_addr = (struct sockaddr *)&me;
	p.proxy_addr = (struct sockaddr *)&us;
	p.secret = secret;
	p.secret_len = slen;
	n = rpc_kdf_string(s, sizeof(s), &p, RPC_KDF_CLIENT);
	ck_assert_uint_eq(n, 86 + slen);
	rpc_kdf_key_iv(s, n, key, iv);
	ck_vec(key, 32, "known_answers.erlang_middle_key_values.key");
	ck_vec(iv, 16, "known_answers.erlang_middle_key_values.iv");
	free(ns);
	free(nc);
	free(secret);
}
END_TEST

/* ---------------------------------------------------------------- nonce */

START_TEST(test_nonce)
{
	uint8_t out[128], *secret, *nc, *ns, *ans;
	size_t slen, n, alen, m;
	uint32_t ts = (uint32_t)vec_int(B2 "kdf_ipv4.clt_ts");
	struct rpc_nonce rn;
	const char *why = NULL;
	int pad;

	secret = vec_hex(B2 "kdf_ipv4.secret", &slen);
	nc = vec_hex(B2 "kdf_ipv4.nonce_clt", &n);
	ns = vec_hex(B2 "kdf_ipv4.nonce_srv", &n);
	n = rpc_nonce_build(out, sizeof(out), secret, slen, ts, nc);
	ck_vec(out, n, B2 "rpc_nonce_payload");
	ck_assert_uint_eq(rpc_nonce_build(out, 31, secret, slen, ts, nc), 0);

	m = rpc_frame_encode(out, sizeof(out), RPC_SEQ_NONCE, out, n, 0);
	ck_vec(out, m, B2 "rpc_nonce_frame_unpadded");
	pad = rpc_frame_pad(out + m, sizeof(out) - m, m);
	ck_assert_int_eq(pad, 4);
	ck_vec(out, m + (size_t)pad, B2 "rpc_nonce_frame_padded");

	/* The ME's answer, and what the ME side builds for it. */
	ans = vec_hex(B2 "rpc_nonce_answer_payload_example", &alen);
	ck_assert_int_eq(rpc_nonce_parse(ans, alen, &rn), 0);
	ck_assert_int_eq(memcmp(rn.key_selector, secret, 4), 0);
	ck_assert_uint_eq(rn.schema, RPC_CRYPTO_AES);
	ck_assert_uint_eq(rn.ts, ts + 1);
	ck_assert_int_eq(memcmp(rn.nonce, ns, 16), 0);
	ck_assert_int_eq(
	    rpc_nonce_check(&rn, secret, slen, ts, RPC_NONCE_MAX_SKEW, &why),
	    0);
	n = rpc_nonce_build(out, sizeof(out), secret, slen, rn.ts, rn.nonce);
	ck_bytes(out, n, ans, alen, "nonce answer rebuilt");

	/* Checks: time, selector, schema; parse: type and length. */
	ck_assert_int_eq(
	    rpc_nonce_check(&rn, secret, slen, ts + 1 + 31, 30, &why), -1);
	ck_assert_ptr_nonnull(why);
	ck_assert_int_eq(
	    rpc_nonce_check(&rn, secret, slen, ts + 1 + 30, 30, &why), 0);
	ck_assert_int_eq(
	    rpc_nonce_check(&rn, secret, slen, ts + 1 - 30, 30, &why), 0);
	ck_assert_int_eq(
	    rpc_nonce_check(&rn, secret, slen, ts + 1 - 31, 30, &why), -1);
	secret[2] ^= 1;
	ck_assert_int_eq(rpc_nonce_check(&rn, secret, slen, ts, 30, &why), -1);
	secret[2] ^= 1;
	rn.schema = 2;
	ck_assert_int_eq(rpc_nonce_check(&rn, secret, slen, ts, 30, &why), -1);
	for (size_t l = 0; l < alen + 8; l++)
		if (l != alen)
			ck_assert_int_eq(rpc_nonce_parse(ans, l, &rn), -1);
	ans[0] ^= 1;
	ck_assert_int_eq(rpc_nonce_parse(ans, alen, &rn), -1);
	free(secret);
	free(nc);
	free(ns);
	free(ans);
}
END_TEST

/* ---------------------------------------------------------------- handshake */

START_TEST(test_handshake_vectors)
{
	uint8_t sender[RPC_PID_LEN], peer[RPC_PID_LEN], pl[64], out[256];
	struct rpc_link link;
	size_t n, m;
	int pad;

	vector_pids(sender, peer);
	n = rpc_handshake_build(pl, sizeof(pl), 0, sender, peer);
	ck_vec(pl, n, B2 "rpc_handshake_payload");
	ck_assert_uint_eq(rpc_handshake_build(pl, 31, 0, sender, peer), 0);

	m = rpc_frame_encode(out, sizeof(out), RPC_SEQ_HANDSHAKE, pl, n, 0);
	pad = rpc_frame_pad(out + m, sizeof(out) - m, m);
	ck_assert_int_ge(pad, 0);
	ck_vec(out, m + (size_t)pad, B2 "rpc_handshake_frame_plain");

	links_ipv4(&link, NULL);
	m = rpc_link_encode(&link, out, sizeof(out), pl, n);
	ck_vec(out, m, B2 "rpc_handshake_frame_wire");
	ck_assert_int_eq(link.keys.seq_out, 0);
	rpc_link_free(&link);
}
END_TEST

/*
 * The PROXY_REQ frame continues the handshake's CBC chain; also when the
 * link moved (capture, bytes over a socket, restore) in between, and when
 * built without a copy (header at frame + 8, packet after it).
 */
START_TEST(test_proxy_req_vectors)
{
	uint8_t sender[RPC_PID_LEN], peer[RPC_PID_LEN], hs[64];
	uint8_t pl[512], out[512], wire[sizeof(struct rpc_link_keys)];
	struct rpc_link link, moved;
	struct rpc_link_keys k, k2;
	size_t n, hn, m, dlen;
	int pad;

	n = vector_proxy_req(pl, sizeof(pl));
	ck_vec(pl, n, B2 "rpc_proxy_req.payload");
	m = rpc_frame_encode(out, sizeof(out), 0, pl, n, 0);
	pad = rpc_frame_pad(out + m, sizeof(out) - m, m);
	ck_assert_int_eq(pad, 8);
	ck_vec(out, m + (size_t)pad, B2 "rpc_proxy_req.frame_plain");

	vector_pids(sender, peer);
	hn = rpc_handshake_build(hs, sizeof(hs), 0, sender, peer);

	/* 1: one link. */
	links_ipv4(&link, NULL);
	ck_assert_uint_eq(rpc_link_encode(&link, out, sizeof(out), hs, hn), 48);
	m = rpc_link_encode(&link, out, sizeof(out), pl, n);
	ck_vec(out, m, B2 "rpc_proxy_req.frame_wire_after_handshake");
	rpc_link_free(&link);

	/* 2: captured after the handshake, restored from raw bytes. */
	links_ipv4(&link, NULL);
	ck_assert_uint_eq(rpc_link_encode(&link, out, sizeof(out), hs, hn), 48);
	rpc_link_capture(&link, &k);
	ck_bytes(k.enc_iv, 16, out + 32, 16, "enc_iv = last block sent");
	ck_assert_int_eq(k.seq_out, 0);
	ck_assert_int_eq(k.seq_in, -1);
	rpc_link_free(&link);
	memcpy(wire, &k, sizeof(wire));
	memset(&k, 0xa5, sizeof(k));
	memcpy(&k2, wire, sizeof(k2));
	ck_assert_int_eq(
	    rpc_link_restore(&moved, &k2, RPC_FRAME_MAX_DEFAULT), 0);
	m = rpc_link_encode(&moved, out, sizeof(out), pl, n);
	ck_vec(out, m, B2 "rpc_proxy_req.frame_wire_after_handshake");

	/* 3: zero-copy after a second move; the packet placed by hand. */
	rpc_link_free(&moved);
	links_ipv4(&link, NULL);
	ck_assert_uint_eq(rpc_link_encode(&link, out, sizeof(out), hs, hn), 48);
	rpc_link_capture(&link, &k);
	rpc_link_free(&link);
	ck_assert_int_eq(
	    rpc_link_restore(&moved, &k, RPC_FRAME_MAX_DEFAULT), 0);
	struct sockaddr_storage client, proxy;
	socklen_t sl;
	uint8_t *tag = vec_hex(B2 "rpc_proxy_req.ad_tag", &dlen);
	uint8_t *data = vec_hex(B2 "rpc_proxy_req.data", &dlen);
	ck_assert_int_eq(
	    addr_parse(vec_str(B2 "rpc_proxy_req.client"), 0, &client, &sl), 0);
	ck_assert_int_eq(
	    addr_parse(vec_str(B2 "rpc_proxy_req.proxy"), 0, &proxy, &sl), 0);
	size_t h = rpc_proxy_req_header(out + RPC_FRAME_HDR,
	    sizeof(out) - RPC_FRAME_HDR, vec_u32hex(B2 "rpc_proxy_req.flags"),
	    vec_u64hex(B2 "rpc_proxy_req.conn_id"), (struct sockaddr *)&client,
	    (struct sockaddr *)&proxy, tag);
	ck_assert_uint_eq(h, RPC_PROXY_REQ_HDR_TAG);
	memcpy(out + RPC_FRAME_HDR + h, data, dlen);
	/* 8 + 124 + 4, 8 bytes of fillers; one byte less: nothing done. */
	ck_assert_uint_eq(rpc_link_seal(&moved, out, 143, h + dlen), 0);
	ck_assert_int_eq(moved.keys.seq_out, 0);
	m = rpc_link_seal(&moved, out, RPC_FRAME_SPACE(h + dlen), h + dlen);
	ck_vec(out, m, B2 "rpc_proxy_req.frame_wire_after_handshake");
	ck_assert_int_eq(moved.keys.seq_out, 1);
	rpc_link_free(&moved);
	free(tag);
	free(data);
}
END_TEST

/*
 * Both ends of a link: the fake ME reads what the proxy sends (vectors),
 * answers the handshake, and sends every ME message back.
 */
START_TEST(test_link_both_ends)
{
	struct rpc_link px, me;
	uint8_t sender[RPC_PID_LEN], peer[RPC_PID_LEN], me_pid[RPC_PID_LEN];
	uint8_t buf[512], pl[512], *wire, *vdata, *tag;
	size_t n, wlen, dlen, tlen;
	struct rpc_frame f;
	struct rpc_handshake h;
	struct rpc_proxy_req r;
	const char *why = NULL;
	int crc32c = -1;

	links_ipv4(&px, &me);
	vector_pids(sender, peer);

	/* The proxy sends its handshake (the vector); the ME reads it. */
	n = rpc_handshake_build(pl, sizeof(pl), 0, sender, peer);
	n = rpc_link_encode(&px, buf, sizeof(buf), pl, n);
	ck_vec(buf, n, B2 "rpc_handshake_frame_wire");
	wire = vec_hex(B2 "rpc_handshake_frame_wire", &wlen);
	ck_assert_int_eq(rpc_link_decrypt(&me, wire, wlen), 0);
	ck_assert_int_eq(rpc_link_decode(&me, wire, wlen, &f), RPC_DECODE_OK);
	ck_assert_int_eq(f.seq, -1);
	ck_assert_uint_eq(f.consumed, 44);
	ck_assert_int_eq(rpc_handshake_parse(f.payload, f.len, &h), 0);
	ck_assert_uint_eq(h.flags, 0);
	ck_assert_int_eq(memcmp(h.sender_pid, sender, RPC_PID_LEN), 0);
	ck_assert_int_eq(memcmp(h.peer_pid, peer, RPC_PID_LEN), 0);
	ck_assert_int_eq(rpc_link_decode(&me, wire + 44, wlen - 44, &f),
	    RPC_DECODE_NEED_MORE);
	ck_assert_uint_eq(f.consumed, 4);
	free(wire);

	/* ME answers; the proxy accepts it. */
	rpc_pid_make(me_pid, NULL, 7, 1700000001);
	n = rpc_handshake_build(pl, sizeof(pl), 0, me_pid, h.sender_pid);
	n = rpc_link_encode(&me, buf, sizeof(buf), pl, n);
	ck_assert_uint_eq(n, 48);
	ck_assert_int_eq(rpc_link_decrypt(&px, buf, n), 0);
	ck_assert_int_eq(rpc_link_decode(&px, buf, n, &f), RPC_DECODE_OK);
	ck_assert_int_eq(rpc_handshake_parse(f.payload, f.len, &h), 0);
	ck_assert_int_eq(rpc_handshake_check(&h, 0, sender, &crc32c, &why), 0);
	ck_assert_int_eq(crc32c, 0);
	ck_assert_int_eq(rpc_handshake_check(&h, 0, peer, &crc32c, &why), -1);
	ck_assert_ptr_nonnull(why);
	h.flags = 1;
	ck_assert_int_eq(rpc_handshake_check(&h, 0, sender, &crc32c, &why), -1);

	/* The worker takes over the proxy end; ME reads the PROXY_REQ. */
	struct rpc_link_keys k;
	rpc_link_capture(&px, &k);
	ck_assert_int_eq(k.seq_in, 0);
	ck_assert_int_eq(k.seq_out, 0);
	rpc_link_free(&px);
	ck_assert_int_eq(rpc_link_restore(&px, &k, 4096), 0);
	n = vector_proxy_req(pl, sizeof(pl));
	n = rpc_link_encode(&px, buf, sizeof(buf), pl, n);
	ck_vec(buf, n, B2 "rpc_proxy_req.frame_wire_after_handshake");
	wire = vec_hex(B2 "rpc_proxy_req.frame_wire_after_handshake", &wlen);
	ck_assert_int_eq(rpc_link_decrypt(&me, wire, wlen), 0);
	ck_vec(wire, wlen, B2 "rpc_proxy_req.frame_plain");
	ck_assert_int_eq(rpc_link_decode(&me, wire, wlen, &f), RPC_DECODE_OK);
	ck_assert_int_eq(f.seq, 0);
	ck_assert_int_eq(rpc_proxy_req_parse(f.payload, f.len, &r), 0);
	ck_assert_uint_eq(r.flags, vec_u32hex(B2 "rpc_proxy_req.flags"));
	ck_assert(r.conn_id == vec_u64hex(B2 "rpc_proxy_req.conn_id"));
	ck_assert_int_eq(r.has_ad_tag, 1);
	tag = vec_hex(B2 "rpc_proxy_req.ad_tag", &tlen);
	ck_bytes(r.ad_tag, 16, tag, tlen, "parsed ad tag");
	vdata = vec_hex(B2 "rpc_proxy_req.data", &dlen);
	ck_bytes(r.data, r.len, vdata, dlen, "parsed packet");
	struct sockaddr_storage ss;
	socklen_t sl;
	char str[ADDR_STRLEN];
	rpc_addr_from_ip16(r.client_ip, r.client_port, &ss, &sl);
	ck_assert_str_eq(addr_str((struct sockaddr *)&ss, str, sizeof(str)),
	    vec_str(B2 "rpc_proxy_req.client"));
	rpc_addr_from_ip16(r.proxy_ip, r.proxy_port, &ss, &sl);
	ck_assert_str_eq(addr_str((struct sockaddr *)&ss, str, sizeof(str)),
	    vec_str(B2 "rpc_proxy_req.proxy"));
	free(wire);
	free(tag);

	/* ME -> proxy: every message, decoded by the moved proxy end. */
	uint64_t cid = r.conn_id, id;
	uint32_t confirm;
	struct rpc_proxy_ans a;
	n = rpc_proxy_ans_build(pl, sizeof(pl), 8, cid, vdata, dlen);
	n = rpc_link_encode(&me, buf, sizeof(buf), pl, n);
	ck_assert_uint_eq(n % 16, 0);
	n += rpc_link_encode(&me, buf + n, sizeof(buf) - n, pl,
	    rpc_simple_ack_build(pl, sizeof(pl), cid, 0x8abcdef1));
	n += rpc_link_encode(&me, buf + n, sizeof(buf) - n, pl,
	    rpc_ping_build(pl, sizeof(pl), 42));
	n += rpc_link_encode(&me, buf + n, sizeof(buf) - n, pl,
	    rpc_close_ext_build(pl, sizeof(pl), cid));
	ck_assert_int_eq(rpc_link_decrypt(&px, buf, n), 0);
	size_t off = 0;
	ck_assert_int_eq(rpc_link_decode(&px, buf, n, &f), RPC_DECODE_OK);
	ck_assert_int_eq(f.seq, 0);
	ck_assert_int_eq(rpc_proxy_ans_parse(f.payload, f.len, &a), 0);
	ck_assert_uint_eq(a.flags, 8);
	ck_assert(a.conn_id == cid);
	ck_bytes(a.data, a.len, vdata, dlen, "PROXY_ANS data");
	off += f.consumed;
	ck_assert_int_eq(
	    rpc_link_decode(&px, buf + off, n - off, &f), RPC_DECODE_OK);
	ck_assert_int_eq(
	    rpc_simple_ack_parse(f.payload, f.len, &id, &confirm), 0);
	ck_assert(id == cid);
	ck_assert_uint_eq(confirm, 0x8abcdef1);
	off += f.consumed;
	ck_assert_int_eq(
	    rpc_link_decode(&px, buf + off, n - off, &f), RPC_DECODE_OK);
	ck_assert_int_eq(rpc_ping_parse(f.payload, f.len, &id), 0);
	ck_assert(id == 42);
	off += f.consumed;
	ck_assert_int_eq(
	    rpc_link_decode(&px, buf + off, n - off, &f), RPC_DECODE_OK);
	ck_assert_int_eq(f.seq, 3);
	ck_assert_int_eq(rpc_close_ext_parse(f.payload, f.len, &id), 0);
	ck_assert(id == cid);
	off += f.consumed;
	ck_assert_int_eq(
	    rpc_link_decode(&px, buf + off, n - off, &f), RPC_DECODE_NEED_MORE);
	ck_assert_uint_eq(off + f.consumed, n);

	/* A frame larger than the worker's max_total (4096) is fatal. */
	static uint8_t big[5000];
	n = rpc_proxy_ans_build(big, sizeof(big), 0, cid, big + 100, 4096);
	n = rpc_link_encode(&me, big, sizeof(big), big, n);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(rpc_link_decrypt(&px, big, 16), 0);
	ck_assert_int_eq(rpc_link_decode(&px, big, 16, &f), RPC_DECODE_ERROR);
	ck_assert_ptr_nonnull(f.error);

	ck_assert_int_eq(rpc_link_decrypt(&px, big, 15), -1);
	free(vdata);
	rpc_link_free(&px);
	rpc_link_free(&me);
}
END_TEST

/* Both ask for CRC32C: frames from seq 0 carry it, the handshake not. */
START_TEST(test_crc32c_link)
{
	struct rpc_link px, me;
	uint8_t sender[RPC_PID_LEN], peer[RPC_PID_LEN], pl[64], buf[256];
	uint8_t plain[256];
	struct rpc_handshake h;
	struct rpc_frame f;
	struct rpc_decoder d;
	const char *why;
	int on = -1;
	size_t n;

	links_ipv4(&px, &me);
	vector_pids(sender, peer);
	n = rpc_handshake_build(
	    pl, sizeof(pl), RPC_HANDSHAKE_CRC32C, sender, peer);
	n = rpc_link_encode(&px, buf, sizeof(buf), pl, n);
	ck_assert_int_eq(rpc_link_decrypt(&me, buf, n), 0);
	ck_assert_int_eq(rpc_link_decode(&me, buf, n, &f), RPC_DECODE_OK);
	ck_assert_int_eq(rpc_handshake_parse(f.payload, f.len, &h), 0);
	ck_assert_uint_eq(h.flags, RPC_HANDSHAKE_CRC32C);
	rpc_link_set_crc32c(&me, 1);
	/* The answer is seq -1: still CRC32 although the ME switched. */
	n = rpc_handshake_build(
	    pl, sizeof(pl), RPC_HANDSHAKE_CRC32C, peer, sender);
	n = rpc_link_encode(&me, buf, sizeof(buf), pl, n);
	ck_assert_int_eq(rpc_link_decrypt(&px, buf, n), 0);
	ck_assert_int_eq(rpc_link_decode(&px, buf, n, &f), RPC_DECODE_OK);
	ck_assert_int_eq(rpc_handshake_parse(f.payload, f.len, &h), 0);
	ck_assert_int_eq(
	    rpc_handshake_check(&h, RPC_HANDSHAKE_CRC32C, sender, &on, &why),
	    0);
	ck_assert_int_eq(on, 1);
	ck_assert_int_eq(rpc_handshake_check(&h, 0, sender, &on, &why), 0);
	ck_assert_int_eq(on, 0);
	rpc_link_set_crc32c(&px, 1);

	/* Survives a capture/restore. */
	struct rpc_link_keys k;
	rpc_link_capture(&px, &k);
	ck_assert_uint_eq(k.crc32c, 1);
	rpc_link_free(&px);
	ck_assert_int_eq(rpc_link_restore(&px, &k, RPC_FRAME_MAX_DEFAULT), 0);

	n = rpc_link_encode(&px, buf, sizeof(buf), pl,
	    rpc_ping_build(pl, sizeof(pl), 0x1122334455667788ULL));
	ck_assert_int_eq(rpc_link_decrypt(&me, buf, n), 0);
	memcpy(plain, buf, n);
	ck_assert_int_eq(rpc_link_decode(&me, buf, n, &f), RPC_DECODE_OK);
	ck_assert_uint_eq(rpc_crc32c(plain, 20),
	    (uint32_t)plain[20] | (uint32_t)plain[21] << 8 |
	        (uint32_t)plain[22] << 16 | (uint32_t)plain[23] << 24);
	/* A CRC32 decoder rejects it. */
	rpc_decoder_init(&d, 0, 1024);
	ck_assert_int_eq(rpc_frame_decode(&d, plain, n, &f), RPC_DECODE_ERROR);
	rpc_link_free(&px);
	rpc_link_free(&me);
}
END_TEST

/* ---------------------------------------------------------------- messages */

START_TEST(test_me_messages)
{
	uint8_t *v, out[128];
	size_t vlen, n;
	uint64_t cid = vec_u64hex(B2 "rpc_proxy_req.conn_id"), id;
	uint32_t confirm;
	struct rpc_proxy_ans a;

	v = vec_hex(B2 "rpc_proxy_ans_example", &vlen);
	ck_assert_uint_eq(rpc_msg_type(v, vlen), RPC_PROXY_ANS);
	ck_assert_int_eq(rpc_proxy_ans_parse(v, vlen, &a), 0);
	ck_assert_uint_eq(a.flags, 0);
	ck_assert(a.conn_id == cid);
	ck_assert(a.data == v + 16);
	ck_assert_uint_eq(a.len, vlen - 16);
	n = rpc_proxy_ans_build(
	    out, sizeof(out), a.flags, a.conn_id, a.data, a.len);
	ck_vec(out, n, B2 "rpc_proxy_ans_example");
	ck_assert_int_eq(rpc_proxy_ans_parse(v, 15, &a), -1);
	ck_assert_int_eq(rpc_proxy_ans_parse(v, 16, &a), 0);
	ck_assert_uint_eq(a.len, 0);
	ck_assert_uint_eq(
	    rpc_proxy_ans_build(out, 16 + a.len - 1, 0, 0, v, a.len), 0);
	v[3] ^= 0x80;
	ck_assert_int_eq(rpc_proxy_ans_parse(v, vlen, &a), -1);
	free(v);

	v = vec_hex(B2 "rpc_simple_ack_example", &vlen);
	ck_assert_uint_eq(rpc_msg_type(v, vlen), RPC_SIMPLE_ACK);
	ck_assert_int_eq(rpc_simple_ack_parse(v, vlen, &id, &confirm), 0);
	ck_assert(id == cid);
	ck_assert_uint_eq(confirm, 0x8abcdef1); /* gen_vectors.py */
	n = rpc_simple_ack_build(out, sizeof(out), id, confirm);
	ck_vec(out, n, B2 "rpc_simple_ack_example");
	ck_assert_int_eq(rpc_simple_ack_parse(v, vlen - 4, &id, &confirm), -1);
	free(v);

	v = vec_hex(B2 "rpc_close_ext_example", &vlen);
	ck_assert_int_eq(rpc_close_ext_parse(v, vlen, &id), 0);
	ck_assert(id == cid);
	ck_assert_int_eq(rpc_close_conn_parse(v, vlen, &id), -1);
	n = rpc_close_ext_build(out, sizeof(out), cid);
	ck_vec(out, n, B2 "rpc_close_ext_example");
	free(v);

	n = rpc_close_conn_build(out, sizeof(out), cid);
	ck_vec(out, n, B2 "rpc_close_conn_example");
	ck_assert_int_eq(rpc_close_conn_parse(out, n, &id), 0);
	ck_assert(id == cid);
	ck_assert_uint_eq(rpc_close_conn_build(out, 11, cid), 0);

	v = vec_hex(B2 "rpc_ping_example", &vlen);
	ck_assert_int_eq(rpc_ping_parse(v, vlen, &id), 0);
	ck_assert(id == 0x1122334455667788ULL);
	ck_assert_int_eq(rpc_pong_parse(v, vlen, &id), -1);
	n = rpc_pong_build(out, sizeof(out), id);
	ck_vec(out, n, B2 "rpc_pong_reply");
	ck_assert_int_eq(rpc_pong_parse(out, n, &id), 0);
	ck_assert(id == 0x1122334455667788ULL);
	n = rpc_ping_build(out, sizeof(out), id);
	ck_vec(out, n, B2 "rpc_ping_example");
	for (size_t l = 0; l < 16; l++)
		if (l != 12)
			ck_assert_int_eq(rpc_ping_parse(v, l, &id), -1);
	free(v);

	ck_assert_uint_eq(rpc_msg_type(out, 3), 0);
}
END_TEST

START_TEST(test_handshake_error)
{
	uint8_t pid[RPC_PID_LEN], out[64];
	struct rpc_handshake_error e;
	struct rpc_handshake h;
	size_t n;

	for (int i = 0; i < RPC_PID_LEN; i++)
		pid[i] = (uint8_t)(0x30 + i);
	n = rpc_handshake_error_build(out, sizeof(out), -3, pid);
	ck_assert_uint_eq(n, RPC_HANDSHAKE_ERROR_LEN);
	ck_assert_uint_eq(rpc_msg_type(out, n), RPC_HANDSHAKE_ERROR);
	ck_assert(memcmp(out, "\xda\xbe\x27\x6a\xfd\xff\xff\xff", 8) == 0);
	ck_assert_int_eq(rpc_handshake_error_parse(out, n, &e), 0);
	ck_assert_int_eq(e.code, -3);
	ck_assert_int_eq(memcmp(e.sender_pid, pid, RPC_PID_LEN), 0);
	ck_assert_int_eq(rpc_handshake_parse(out, n, &h), -1);
	ck_assert_int_eq(rpc_handshake_error_parse(out, n - 4, &e), -1);
	ck_assert_uint_eq(rpc_handshake_error_build(out, 19, 1, pid), 0);
}
END_TEST

START_TEST(test_proxy_req_layout)
{
	uint8_t out[256], pkt[32];
	struct sockaddr_storage c4, c6, p4;
	struct rpc_proxy_req r;
	size_t n;
	uint32_t f;

	memset(pkt, 0, sizeof(pkt));
	f = rpc_proxy_req_flags(RPC_TRANSPORT_ABRIDGED, 0, 1, pkt, 32);
	ck_assert_uint_eq(f, 0x4002100a);
	pkt[3] = 1;
	f = rpc_proxy_req_flags(RPC_TRANSPORT_ABRIDGED, 0, 1, pkt, 32);
	ck_assert_uint_eq(f, 0x40021008);
	f = rpc_proxy_req_flags(RPC_TRANSPORT_INTERMEDIATE, 0, 1, pkt, 32);
	ck_assert_uint_eq(f, 0x20021008);
	f = rpc_proxy_req_flags(RPC_TRANSPORT_PADDED, 0, 1, pkt, 32);
	ck_assert_uint_eq(f, 0x28021008);
	f = rpc_proxy_req_flags(RPC_TRANSPORT_PADDED, 1, 0, pkt, 32);
	ck_assert_uint_eq(f, 0xa8021000);
	/* Shorter than an auth_key_id: never "not encrypted". */
	memset(pkt, 0, sizeof(pkt));
	f = rpc_proxy_req_flags(RPC_TRANSPORT_INTERMEDIATE, 0, 0, pkt, 4);
	ck_assert_uint_eq(f, 0x20021000);

	sa("198.51.100.23", 51234, &c4);
	sa("2001:db8::1", 443, &c6);
	sa("203.0.113.7", 443, &p4);

	/* No ad tag: 56 bytes, flag 0x8 cleared even if asked for. */
	n = rpc_proxy_req_build(out, sizeof(out), 0x2002100c, 5,
	    (struct sockaddr *)&c6, (struct sockaddr *)&p4, NULL, pkt, 8);
	ck_assert_uint_eq(n, RPC_PROXY_REQ_HDR + 8);
	ck_assert_int_eq(rpc_proxy_req_parse(out, n, &r), 0);
	ck_assert_uint_eq(r.flags, 0x20021000);
	ck_assert(r.conn_id == 5);
	ck_assert_int_eq(r.has_ad_tag, 0);
	ck_assert(r.data == out + RPC_PROXY_REQ_HDR);
	ck_assert_uint_eq(r.len, 8);
	ck_assert_int_eq(
	    memcmp(r.client_ip, &((struct sockaddr_in6 *)&c6)->sin6_addr, 16),
	    0);
	ck_assert_uint_eq(r.client_port, 443);
	ck_assert(memcmp(r.proxy_ip,
	              "\0\0\0\0\0\0\0\0\0\0\xff\xff\xcb\0\x71\x07", 16) == 0);
	struct sockaddr_storage back;
	socklen_t bl;
	char str[ADDR_STRLEN];
	rpc_addr_from_ip16(r.client_ip, r.client_port, &back, &bl);
	ck_assert_str_eq(addr_str((struct sockaddr *)&back, str, sizeof(str)),
	    "[2001:db8::1]:443");

	/* Errors: room, family, packet length. */
	ck_assert_uint_eq(
	    rpc_proxy_req_header(out, 55, 0, 1, (struct sockaddr *)&c4,
	        (struct sockaddr *)&p4, NULL),
	    0);
	ck_assert_uint_eq(
	    rpc_proxy_req_header(out, 83, 0, 1, (struct sockaddr *)&c4,
	        (struct sockaddr *)&p4, pkt),
	    0);
	struct sockaddr_storage un;
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	ck_assert_uint_eq(
	    rpc_proxy_req_header(out, sizeof(out), 0, 1, (struct sockaddr *)&un,
	        (struct sockaddr *)&p4, NULL),
	    0);
	ck_assert_uint_eq(
	    rpc_proxy_req_build(out, sizeof(out), 0, 1, (struct sockaddr *)&c4,
	        (struct sockaddr *)&p4, NULL, pkt, 6),
	    0);
	ck_assert_uint_eq(
	    rpc_proxy_req_build(out, 56 + 7, 0, 1, (struct sockaddr *)&c4,
	        (struct sockaddr *)&p4, NULL, pkt, 8),
	    0);

	/* Parse errors: ad tag flag without a (valid) extra block. */
	n = rpc_proxy_req_build(out, sizeof(out), 0, 1, (struct sockaddr *)&c4,
	    (struct sockaddr *)&p4, pkt, pkt, 8);
	ck_assert_uint_eq(n, RPC_PROXY_REQ_HDR_TAG + 8);
	ck_assert_int_eq(rpc_proxy_req_parse(out, n, &r), 0);
	ck_assert_int_eq(r.has_ad_tag, 1);
	ck_assert_int_eq(rpc_proxy_req_parse(out, 59, &r), -1);
	ck_assert_int_eq(rpc_proxy_req_parse(out, 83, &r), -1);
	ck_assert_int_eq(rpc_proxy_req_parse(out, 55, &r), -1);
	out[64] = 15;
	ck_assert_int_eq(rpc_proxy_req_parse(out, n, &r), -1);
	out[64] = 16;
	out[56] = 25;
	ck_assert_int_eq(rpc_proxy_req_parse(out, n, &r), -1);
	out[56] = 28; /* extra block eats 4 bytes of the packet */
	ck_assert_int_eq(rpc_proxy_req_parse(out, n, &r), 0);
	ck_assert_uint_eq(r.len, 4);
	out[56] = 36;
	ck_assert_int_eq(rpc_proxy_req_parse(out, n, &r), -1);
}
END_TEST

/* Erl's published frames and CBC stream (gen_vectors.py known_answers). */
START_TEST(test_erlang_known_answers)
{
	static const char *frames[][3] = {
		{ "0", "01010101",
		    "100000000000000001010101162"
		    "7afa0" },
		{ "0", "0101010101010101",
		    "14000000000000000101010101010101f6c42e95"
		    "040000000400000004000000" },
		{ "1", "0808080808080808",
		    "14000000010000000808080808080808309284"
		    "74040000000400000004000000" },
	};
	uint8_t out[512], *pl, *want;
	size_t plen, wlen, n;
	int pad;

	for (size_t i = 0; i < nitems(frames); i++) {
		pl = unhex(frames[i][1], &plen);
		want = unhex(frames[i][2], &wlen);
		n = rpc_frame_encode(
		    out, sizeof(out), atoi(frames[i][0]), pl, plen, 0);
		pad = rpc_frame_pad(out + n, sizeof(out) - n, n);
		ck_bytes(out, n + (size_t)pad, want, wlen, "Erl frame");
		free(pl);
		free(want);
	}

	struct rpc_link_keys k;
	struct rpc_link l;
	uint8_t *ek, *eiv, hs[32];
	memset(&k, 0, sizeof(k));
	ek = unhex("595448f7ac38cc0b0af28ff06f3521a2"
	           "dd8d94f36415a7a084633dbd80498a59",
	    &n);
	eiv = unhex("f8c32a35eb684ee154abb67d12c0fb4d", &n);
	memcpy(k.enc_key, ek, 32);
	memcpy(k.enc_iv, eiv, 16);
	memcpy(k.dec_key, ek, 32);
	memcpy(k.dec_iv, eiv, 16);
	k.seq_out = k.seq_in = -1;
	ck_assert_int_eq(rpc_link_restore(&l, &k, RPC_FRAME_MAX_DEFAULT), 0);
	n = rpc_handshake_build(hs, sizeof(hs), 0,
	    (const uint8_t *)"IPIPPRPDTIME", (const uint8_t *)"IPIPPRPDTIME");
	n = rpc_link_encode(&l, out, sizeof(out), hs, n);
	want = unhex("a1cec6bfaff030a2f5c0ead268c3a1d6"
	             "3793919dae21f3c654bc1dc97480b995"
	             "49f1957af4c13b7099bc8d865a184bd8",
	    &wlen);
	ck_bytes(out, n, want, wlen, "Erl CBC handshake");
	free(want);

	uint8_t *frame =
	    unhex("8800000000000000eef1ce3608100240c32b6a7fd3da9c66"
	          "4141414141414141414141414141414141414141"
	          "4242424242424242424242424242424242424242"
	          "18000000ae261edb10dcbe8f1493fa4cd9ab300891c0b5b326000000"
	          "00000000000000000000000038dc175b14000000789746601a31604a"
	          "ddf3680dad0d84c0ee16617ef7e997160400000004000000",
	        &wlen);
	ck_assert_uint_eq(wlen, 0x88 + 8);
	struct rpc_proxy_req r;
	ck_assert_int_eq(rpc_proxy_req_parse(frame + 8, 0x88 - 12, &r), 0);
	ck_assert_uint_eq(r.flags, 0x40021008);
	ck_assert(r.conn_id == 0x669cdad37f6a2bc3ULL);
	ck_assert_int_eq(r.has_ad_tag, 1);
	uint8_t *tag = unhex("dcbe8f1493fa4cd9ab300891c0b5b326", &n);
	ck_bytes(r.ad_tag, 16, tag, 16, "Erl ad tag");
	uint8_t *data =
	    unhex("000000000000000000000000"
	          "38dc175b14000000789746601a31604addf3680dad0d84c0ee16617e",
	        &n);
	ck_bytes(r.data, r.len, data, n, "Erl packet");
	n = rpc_frame_encode(out, sizeof(out), 0, frame + 8, 0x88 - 12, 0);
	pad = rpc_frame_pad(out + n, sizeof(out) - n, n);
	ck_bytes(out, n + (size_t)pad, frame, wlen, "Erl PROXY_REQ frame");
	n = rpc_link_encode(&l, out, sizeof(out), frame + 8, 0x88 - 12);
	want = unhex(
	    "5cad8bf70193306ca2627dd7aab95783411a5acd2b3673d85a6503bc97a57e90"
	    "68f73941206bf59a4dc2a19d3fe8a944714060c50ad14275fb0f0a8df87a28f2"
	    "c326c4ed4484bd3166351f8b3840d56b4f69d2b69d49cb69a586a374315e8fab"
	    "5884547bc4262335dcb6e8c75c1db681ef74fc1f481d78cb39312e818e5ecc79"
	    "1571d30ac17eb4e38b2855df867c9851",
	    &wlen);
	ck_bytes(out, n, want, wlen, "Erl CBC PROXY_REQ");
	free(want);
	free(frame);
	rpc_link_free(&l);

	/* Erl's mtp_rpc encode_test sample. */
	struct sockaddr_storage c, p;
	sa("109.238.131.159", 1128, &c);
	sa("80.211.29.34", 53634, &p);
	free(data);
	data = unhex("000000000000000000000000"
	             "3d02185b140000007897466099c58eeef58b55d0a0f144596a0776a7",
	    &plen);
	n = rpc_proxy_req_build(out, sizeof(out),
	    rpc_proxy_req_flags(RPC_TRANSPORT_ABRIDGED, 0, 1, data, plen), 1,
	    (struct sockaddr *)&c, (struct sockaddr *)&p, tag, data, plen);
	want = unhex(
	    "eef1ce360a10024001000000000000000000000000000000"
	    "0000ffff6dee839f6804000000000000000000000000ffff50d31d2282d10000"
	    "18000000ae261edb10dcbe8f1493fa4cd9ab300891c0b5b326000000"
	    "0000000000000000000000003d02185b140000007897466099c58eeef58b55d0"
	    "a0f144596a0776a7",
	    &wlen);
	ck_bytes(out, n, want, wlen, "Erl PROXY_REQ");
	free(want);
	free(data);
	free(tag);
	free(ek);
	free(eiv);
}
END_TEST

/* ---------------------------------------------------------------- decoder */

/*
 * A plaintext stream: the padded nonce frame, a handshake frame without
 * fillers, three fillers, then frames 0..2 of various sizes, each padded.
 */
static size_t
build_stream(uint8_t *s, size_t cap, uint8_t payloads[][64], size_t *lens)
{
	size_t n = 0, m;
	int pad;

	for (int i = 0; i < 5; i++) {
		lens[i] = 4 + 4 * (size_t)(i * 3 % 7);
		if (i == 0)
			lens[i] = 32;
		for (size_t j = 0; j < lens[i]; j++)
			payloads[i][j] = (uint8_t)(i * 31 + j);
		m = rpc_frame_encode(
		    s + n, cap - n, i - 2, payloads[i], lens[i], 0);
		ck_assert_uint_gt(m, 0);
		n += m;
		if (i == 1) {
			for (int f = 0; f < 3; f++) {
				memcpy(s + n, "\x04\0\0\0", 4);
				n += 4;
			}
		} else {
			pad = rpc_frame_pad(s + n, cap - n, n);
			ck_assert_int_ge(pad, 0);
			n += (size_t)pad;
		}
	}
	return n;
}

START_TEST(test_decode_split)
{
	uint8_t s[1024], payloads[5][64];
	size_t lens[5], n;
	static struct rx r;

	n = build_stream(s, sizeof(s), payloads, lens);
	for (size_t k = 0; k <= n; k++) {
		memset(&r, 0, sizeof(r));
		rpc_decoder_init(&r.dec, RPC_SEQ_NONCE, 1024);
		rx_feed(&r, s, k);
		rx_feed(&r, s + k, n - k);
		ck_assert_int_eq(r.error, 0);
		ck_assert_int_eq(r.nframes, 5);
		ck_assert_uint_eq(r.have, 0);
		for (int i = 0; i < 5; i++) {
			ck_assert_uint_eq(r.lens[i], lens[i]);
			ck_assert_int_eq(
			    memcmp(r.payloads[i], payloads[i], lens[i]), 0);
		}
		ck_assert_int_eq(r.dec.seq, 3);
	}
	/* One byte at a time. */
	memset(&r, 0, sizeof(r));
	rpc_decoder_init(&r.dec, RPC_SEQ_NONCE, 1024);
	for (size_t k = 0; k < n; k++)
		rx_feed(&r, s + k, 1);
	ck_assert_int_eq(r.error, 0);
	ck_assert_int_eq(r.nframes, 5);
}
END_TEST

START_TEST(test_decode_errors)
{
	uint8_t s[1024], payloads[5][64], bad[1024];
	size_t lens[5], n, first;
	struct rpc_decoder d;
	struct rpc_frame f;

	n = build_stream(s, sizeof(s), payloads, lens);
	first = 44;
	/* Any changed byte of the first frame is an error, never OK. */
	for (size_t i = 0; i < first; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, s, n);
			bad[i] ^= (uint8_t)(1 << bit);
			rpc_decoder_init(&d, RPC_SEQ_NONCE, 1024);
			enum rpc_decode_status st =
			    rpc_frame_decode(&d, bad, n, &f);
			/* A length that grew past what is here may wait. */
			if (i < 4 && st == RPC_DECODE_NEED_MORE)
				continue;
			ck_assert_msg(st == RPC_DECODE_ERROR,
			    "byte %zu bit %d: %d", i, bit, st);
			ck_assert_ptr_nonnull(f.error);
		}
	}

	/* Unexpected seq, even before the frame is complete. */
	rpc_decoder_init(&d, 0, 1024);
	ck_assert_int_eq(rpc_frame_decode(&d, s, n, &f), RPC_DECODE_ERROR);
	ck_assert_int_eq(rpc_frame_decode(&d, s, 8, &f), RPC_DECODE_ERROR);
	ck_assert_int_eq(rpc_frame_decode(&d, s, 7, &f), RPC_DECODE_NEED_MORE);

	/* Lengths: not a multiple of 4, too short, 0, over max. */
	static const uint32_t totals[] = { 5, 8, 12, 0, 17, 1028, 0xffffffff };
	for (size_t i = 0; i < nitems(totals); i++) {
		memcpy(bad, s, n);
		bad[0] = totals[i] & 0xff;
		bad[1] = (totals[i] >> 8) & 0xff;
		bad[2] = (totals[i] >> 16) & 0xff;
		bad[3] = totals[i] >> 24;
		rpc_decoder_init(&d, RPC_SEQ_NONCE, 1024);
		ck_assert_int_eq(
		    rpc_frame_decode(&d, bad, 4, &f), RPC_DECODE_ERROR);
	}
	/* Exactly max_total is fine. */
	rpc_decoder_init(&d, RPC_SEQ_NONCE, 44);
	ck_assert_int_eq(rpc_frame_decode(&d, s, n, &f), RPC_DECODE_OK);
	rpc_decoder_init(&d, RPC_SEQ_NONCE, 40);
	ck_assert_int_eq(rpc_frame_decode(&d, s, n, &f), RPC_DECODE_ERROR);

	/* Frame 2 after frame 0 (frame 1 lost): seq error. */
	rpc_decoder_init(&d, RPC_SEQ_NONCE, 1024);
	ck_assert_int_eq(rpc_frame_decode(&d, s, n, &f), RPC_DECODE_OK);
	size_t off = f.consumed;
	ck_assert_int_eq(
	    rpc_frame_decode(&d, s + off, n - off, &f), RPC_DECODE_OK);
	uint8_t frame[64];
	size_t m = rpc_frame_encode(frame, sizeof(frame), 1, payloads[0], 8, 0);
	ck_assert_int_eq(rpc_frame_decode(&d, frame, m, &f), RPC_DECODE_ERROR);

	/* Only fillers, and nothing: NEED_MORE, fillers consumed. */
	rpc_decoder_init(&d, 0, 1024);
	ck_assert_int_eq(rpc_frame_decode(&d, s, 0, &f), RPC_DECODE_NEED_MORE);
	ck_assert_uint_eq(f.consumed, 0);
	ck_assert_int_eq(rpc_frame_decode(&d,
	                     (const uint8_t *)"\4\0\0\0\4\0\0\0\4\0", 10, &f),
	    RPC_DECODE_NEED_MORE);
	ck_assert_uint_eq(f.consumed, 8);
}
END_TEST

START_TEST(test_frame_encode)
{
	uint8_t out[64], pl[16] = "abcdefghijklmnop";

	ck_assert_uint_eq(rpc_frame_encode(out, sizeof(out), 0, pl, 6, 0), 0);
	ck_assert_uint_eq(rpc_frame_encode(out, 27, 0, pl, 16, 0), 0);
	ck_assert_uint_eq(rpc_frame_encode(out, 28, 0, pl, 16, 0), 28);
	ck_assert_uint_eq(rpc_frame_encode(out, 11, 0, pl, 0, 0), 0);
	ck_assert_uint_eq(rpc_frame_pad_len(0), 0);
	ck_assert_uint_eq(rpc_frame_pad_len(44), 4);
	ck_assert_uint_eq(rpc_frame_pad_len(40), 8);
	ck_assert_uint_eq(rpc_frame_pad_len(36), 12);
	ck_assert_uint_eq(rpc_frame_pad_len(48), 0);
	ck_assert_int_eq(rpc_frame_pad(out, 11, 36), -1);
	ck_assert_int_eq(rpc_frame_pad(out, 12, 36), 12);
	ck_assert(memcmp(out, "\4\0\0\0\4\0\0\0\4\0\0\0", 12) == 0);
	ck_assert_int_eq(rpc_frame_pad(out, 0, 32), 0);

	/* CRC32C frame: decodable by a CRC32C decoder only (seq >= 0). */
	struct rpc_decoder d;
	struct rpc_frame f;
	size_t n = rpc_frame_encode(out, sizeof(out), 5, pl, 16, 1);
	rpc_decoder_init(&d, 5, 64);
	ck_assert_int_eq(rpc_frame_decode(&d, out, n, &f), RPC_DECODE_ERROR);
	rpc_decoder_init(&d, 5, 64);
	d.crc32c = 1;
	ck_assert_int_eq(rpc_frame_decode(&d, out, n, &f), RPC_DECODE_OK);
	ck_assert_int_eq(memcmp(f.payload, pl, 16), 0);
	ck_assert_int_eq(d.seq, 6);
	/* Frames before seq 0 keep CRC32 on a CRC32C decoder. */
	n = rpc_frame_encode(out, sizeof(out), -1, pl, 16, 0);
	rpc_decoder_init(&d, -1, 64);
	d.crc32c = 1;
	ck_assert_int_eq(rpc_frame_decode(&d, out, n, &f), RPC_DECODE_OK);
	ck_assert_int_eq(d.seq, 0);

	/* Link: payload length must be a multiple of 4. */
	struct rpc_link l;
	links_ipv4(&l, NULL);
	ck_assert_uint_eq(rpc_link_encode(&l, out, sizeof(out), pl, 6), 0);
	ck_assert_int_eq(l.keys.seq_out, -1);
	rpc_link_free(&l);
}
END_TEST

static Suite *
rpc_suite(void)
{
	Suite *s = suite_create("rpc");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_crc);
	tcase_add_test(tc, test_crc32c_table);
	tcase_add_test(tc, test_crc32c_cpu);
	tcase_add_test(tc, test_kdf_ipv4);
	tcase_add_test(tc, test_kdf_ipv6);
	tcase_add_test(tc, test_kdf_erlang);
	tcase_add_test(tc, test_nonce);
	tcase_add_test(tc, test_handshake_vectors);
	tcase_add_test(tc, test_proxy_req_vectors);
	tcase_add_test(tc, test_link_both_ends);
	tcase_add_test(tc, test_crc32c_link);
	tcase_add_test(tc, test_me_messages);
	tcase_add_test(tc, test_handshake_error);
	tcase_add_test(tc, test_proxy_req_layout);
	tcase_add_test(tc, test_erlang_known_answers);
	tcase_add_test(tc, test_decode_split);
	tcase_add_test(tc, test_decode_errors);
	tcase_add_test(tc, test_frame_encode);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(rpc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
