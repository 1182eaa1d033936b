/*
 * Fuzz target for common/rpc.c. Input: one control byte (bits 0-1: the
 * first expected seq, -2..1; bit 2: CRC32C), then a plaintext link stream.
 * The frame decoder runs over the stream; every frame's payload, and the
 * whole input, go through every message parser. What parses must rebuild
 * to the same bytes; what is encoded must decode to the same payload,
 * also through a pair of encrypted link ends.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

#define MAX_TOTAL 4096

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

static void
check_same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	check(alen == blen && memcmp(a, b, alen) == 0);
}

/* Every parser on p; what parses must rebuild to p. */
static void
parse_all(const uint8_t *p, size_t len)
{
	static uint8_t out[MAX_TOTAL + 128];
	struct rpc_nonce n;
	struct rpc_handshake h;
	struct rpc_handshake_error he;
	struct rpc_proxy_req r, r2;
	struct rpc_proxy_ans a;
	uint64_t id;
	uint32_t confirm;
	size_t m;

	if (rpc_nonce_parse(p, len, &n) == 0 && n.schema == RPC_CRYPTO_AES) {
		m = rpc_nonce_build(
		    out, sizeof(out), n.key_selector, 4, n.ts, n.nonce);
		check_same(out, m, p, len);
	}
	if (rpc_handshake_parse(p, len, &h) == 0) {
		m = rpc_handshake_build(
		    out, sizeof(out), h.flags, h.sender_pid, h.peer_pid);
		check_same(out, m, p, len);
	}
	if (rpc_handshake_error_parse(p, len, &he) == 0) {
		m = rpc_handshake_error_build(
		    out, sizeof(out), he.code, he.sender_pid);
		check_same(out, m, p, len);
	}
	if (rpc_proxy_ans_parse(p, len, &a) == 0) {
		check(a.data == p + RPC_PROXY_ANS_HDR &&
		    a.data + a.len == p + len);
		if (a.len % 4 == 0 && a.len <= MAX_TOTAL) {
			m = rpc_proxy_ans_build(out, sizeof(out), a.flags,
			    a.conn_id, a.data, a.len);
			check_same(out, m, p, len);
		}
	}
	if (rpc_simple_ack_parse(p, len, &id, &confirm) == 0)
		check_same(out,
		    rpc_simple_ack_build(out, sizeof(out), id, confirm), p,
		    len);
	if (rpc_close_ext_parse(p, len, &id) == 0)
		check_same(
		    out, rpc_close_ext_build(out, sizeof(out), id), p, len);
	if (rpc_close_conn_parse(p, len, &id) == 0)
		check_same(
		    out, rpc_close_conn_build(out, sizeof(out), id), p, len);
	if (rpc_ping_parse(p, len, &id) == 0)
		check_same(out, rpc_ping_build(out, sizeof(out), id), p, len);
	if (rpc_pong_parse(p, len, &id) == 0)
		check_same(out, rpc_pong_build(out, sizeof(out), id), p, len);
	if (rpc_proxy_req_parse(p, len, &r) == 0) {
		check(r.data >= p + RPC_PROXY_REQ_HDR &&
		    r.data + r.len == p + len);
		if (r.client_port > 65535 || r.proxy_port > 65535 ||
		    r.len % 4 != 0 || r.len > MAX_TOTAL)
			return;
		/* Rebuilt from the parsed fields, it parses the same. */
		struct sockaddr_storage c, px;
		socklen_t sl;
		rpc_addr_from_ip16(r.client_ip, r.client_port, &c, &sl);
		rpc_addr_from_ip16(r.proxy_ip, r.proxy_port, &px, &sl);
		m = rpc_proxy_req_build(out, sizeof(out), r.flags, r.conn_id,
		    (struct sockaddr *)&c, (struct sockaddr *)&px,
		    r.has_ad_tag ? r.ad_tag : NULL, r.data, r.len);
		check(m ==
		    (r.has_ad_tag ? RPC_PROXY_REQ_HDR_TAG : RPC_PROXY_REQ_HDR) +
		        r.len);
		check(rpc_proxy_req_parse(out, m, &r2) == 0);
		check(r2.flags ==
		    ((r.flags & ~(RPC_FLAG_HTTP_QUERY | RPC_FLAG_HAS_AD_TAG)) |
		        (r.has_ad_tag ? RPC_FLAG_HAS_AD_TAG : 0)));
		check(r2.conn_id == r.conn_id);
		check(memcmp(r2.client_ip, r.client_ip, 16) == 0);
		check(memcmp(r2.proxy_ip, r.proxy_ip, 16) == 0);
		check(r2.client_port == r.client_port);
		check(r2.proxy_port == r.proxy_port);
		check(r2.has_ad_tag == r.has_ad_tag);
		check(!r.has_ad_tag || memcmp(r2.ad_tag, r.ad_tag, 16) == 0);
		check_same(r2.data, r2.len, r.data, r.len);
	}
}

/* The decoder over a stream; returns the number of frames found. */
static int
decode_stream(const uint8_t *s, size_t len, int32_t seq, int crc32c)
{
	static uint8_t re[MAX_TOTAL + 64];
	struct rpc_decoder d, d2;
	struct rpc_frame f, f2;
	enum rpc_decode_status st;
	size_t off = 0;
	int frames = 0;

	rpc_decoder_init(&d, seq, MAX_TOTAL);
	d.crc32c = crc32c;
	for (;;) {
		d2 = d;
		st = rpc_frame_decode(&d, s + off, len - off, &f);
		check(f.consumed <= len - off);
		if (st == RPC_DECODE_ERROR) {
			check(f.error != NULL);
			return frames;
		}
		if (st == RPC_DECODE_NEED_MORE) {
			check(len - off - f.consumed < MAX_TOTAL);
			return frames;
		}
		check(st == RPC_DECODE_OK);
		check(f.payload > s + off &&
		    f.payload + f.len + 4 == s + off + f.consumed);
		check(f.len >= 4 && f.len % 4 == 0 &&
		    f.len + RPC_FRAME_OVERHEAD <= MAX_TOTAL);
		check(
		    f.seq == d2.seq && d.seq == (int32_t)((uint32_t)f.seq + 1));
		/* Any shorter prefix just needs more. */
		check(rpc_frame_decode(&d2, s + off, f.consumed - 1, &f2) ==
		    RPC_DECODE_NEED_MORE);
		/* The frame re-encodes to its own bytes. */
		size_t m = rpc_frame_encode(re, sizeof(re), f.seq, f.payload,
		    f.len, crc32c && f.seq >= 0);
		check_same(re, m, f.payload - RPC_FRAME_HDR,
		    f.len + RPC_FRAME_OVERHEAD);
		parse_all(f.payload, f.len);
		off += f.consumed;
		frames++;
	}
}

/* Two ends of a link with fixed keys: what one seals, the other opens. */
static void
link_round_trip(const uint8_t *p, size_t len, int crc32c)
{
	static uint8_t buf[MAX_TOTAL + 64];
	struct rpc_link_keys k, km;
	struct rpc_link a, b;
	struct rpc_frame f;
	size_t n;

	memset(&k, 0, sizeof(k));
	for (size_t i = 0; i < 32; i++) {
		k.enc_key[i] = (uint8_t)i;
		k.dec_key[i] = (uint8_t)(i * 3);
	}
	memset(k.enc_iv, 0x11, 16);
	memset(k.dec_iv, 0x22, 16);
	k.seq_out = k.seq_in = 0;
	k.crc32c = (uint32_t)crc32c;
	km = k;
	memcpy(km.enc_key, k.dec_key, 32);
	memcpy(km.enc_iv, k.dec_iv, 16);
	memcpy(km.dec_key, k.enc_key, 32);
	memcpy(km.dec_iv, k.enc_iv, 16);
	check(rpc_link_restore(&a, &k, MAX_TOTAL) == 0);
	check(rpc_link_restore(&b, &km, MAX_TOTAL) == 0);
	len &= ~(size_t)3;
	if (len > MAX_TOTAL - RPC_FRAME_OVERHEAD)
		len = MAX_TOTAL - RPC_FRAME_OVERHEAD;
	n = rpc_link_encode(&a, buf, sizeof(buf), p, len);
	check(n > 0 && n % RPC_BLOCK == 0 && n <= RPC_FRAME_SPACE(len));
	check(rpc_link_decrypt(&b, buf, n) == 0);
	check(rpc_link_decode(&b, buf, n, &f) == RPC_DECODE_OK);
	check(f.consumed + rpc_frame_pad_len(f.consumed) == n);
	check_same(f.payload, f.len, p, len);
	/* The state moves to a new context and the chains go on. */
	rpc_link_capture(&a, &k);
	rpc_link_free(&a);
	check(rpc_link_restore(&a, &k, MAX_TOTAL) == 0);
	n = rpc_link_encode(&a, buf, sizeof(buf), p, len);
	check(n > 0 && rpc_link_decrypt(&b, buf, n) == 0);
	check(rpc_link_decode(&b, buf, n, &f) == RPC_DECODE_OK);
	check(f.seq == 1);
	check_same(f.payload, f.len, p, len);
	rpc_link_free(&a);
	rpc_link_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t enc[MAX_TOTAL + 64];
	int32_t seq;
	int crc32c;

	if (size < 1)
		return 0;
	seq = (int32_t)(data[0] & 3) - 2;
	crc32c = (data[0] >> 2) & 1;
	data++;
	size--;

	decode_stream(data, size, seq, crc32c);
	parse_all(data, size);

	/* Encode the input as a payload: it must decode back. */
	size_t len = size & ~(size_t)3;
	if (len > MAX_TOTAL - RPC_FRAME_OVERHEAD)
		len = MAX_TOTAL - RPC_FRAME_OVERHEAD;
	if (len >= 4) {
		size_t n = rpc_frame_encode(
		    enc, sizeof(enc), seq, data, len, crc32c && seq >= 0);
		int pad = rpc_frame_pad(enc + n, sizeof(enc) - n, n);
		check(n == len + RPC_FRAME_OVERHEAD && pad >= 0);
		check((n + (size_t)pad) % RPC_BLOCK == 0);
		check(decode_stream(enc, n + (size_t)pad, seq, crc32c) >= 1);
		if (data[0] & 1)
			link_round_trip(data, len, crc32c);
	}
	return 0;
}
