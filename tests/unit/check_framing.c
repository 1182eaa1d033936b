#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "o2.h"
#include "util.h"
#include "vectors.h"

static const enum frame_kind all_kinds[] = {
	FRAME_ABRIDGED,
	FRAME_INTERMEDIATE,
	FRAME_PADDED,
};

typedef int (*decode_fn)(
    enum frame_kind, const uint8_t *, size_t, struct frame_info *);

static uint8_t *
vh(const char *name, size_t *len)
{
	char path[128];

	snprintf(path, sizeof(path), "A3_framing.%s", name);
	return vec_hex(path, len);
}

/*
 * Every proper prefix of a complete frame needs more (knowing the total
 * once the header is in), the frame itself decodes, and bytes after it do
 * not change the answer.
 */
static void
check_splits(decode_fn decode, enum frame_kind kind, const uint8_t *frame,
    size_t len, const struct frame_info *want)
{
	struct frame_info fi;
	uint8_t *buf;
	size_t k;

	for (k = 0; k < len; k++) {
		ck_assert_int_eq(decode(kind, frame, k, &fi), FRAME_NEED_MORE);
		ck_assert_msg(fi.total == 0 || fi.total == len,
		    "prefix %zu: total %zu, want 0 or %zu", k, fi.total, len);
		if (k >= want->hdrlen && want->hdrlen > 0)
			ck_assert_uint_eq(fi.total, len);
	}
	ck_assert_int_eq(decode(kind, frame, len, &fi), FRAME_OK);
	ck_assert_uint_eq(fi.hdrlen, want->hdrlen);
	ck_assert_uint_eq(fi.pktlen, want->pktlen);
	ck_assert_uint_eq(fi.total, len);
	ck_assert_int_eq(fi.quickack, want->quickack);
	ck_assert_uint_eq(fi.confirm, want->confirm);
	buf = malloc(len + 7);
	ck_assert_ptr_nonnull(buf);
	memcpy(buf, frame, len);
	random_bytes(buf + len, 7);
	ck_assert_int_eq(decode(kind, buf, len + 7, &fi), FRAME_OK);
	ck_assert_uint_eq(fi.total, len);
	ck_assert_uint_eq(fi.pktlen, want->pktlen);
	free(buf);
}

static struct frame_info
info(size_t hdrlen, size_t pktlen, int quickack)
{
	struct frame_info fi;

	memset(&fi, 0, sizeof(fi));
	fi.hdrlen = hdrlen;
	fi.pktlen = pktlen;
	fi.total = 0;
	fi.quickack = quickack;
	return fi;
}

START_TEST(test_kind_from_tag)
{
	ck_assert_int_eq(frame_kind_from_tag(O2_TAG_ABRIDGED), FRAME_ABRIDGED);
	ck_assert_int_eq(
	    frame_kind_from_tag(O2_TAG_INTERMEDIATE), FRAME_INTERMEDIATE);
	ck_assert_int_eq(frame_kind_from_tag(O2_TAG_PADDED), FRAME_PADDED);
	ck_assert_int_eq(frame_kind_from_tag(0), -1);
	ck_assert_int_eq(frame_kind_from_tag(0xefefefeeu), -1);
}
END_TEST

/* Abridged and intermediate 16-byte frames, with and without quick ack. */
START_TEST(test_vectors_small)
{
	static const struct {
		const char *name;
		enum frame_kind kind;
		int quickack;
		size_t hdrlen;
	} cases[] = {
		{ "abridged_16", FRAME_ABRIDGED, 0, 1 },
		{ "abridged_16_quickack", FRAME_ABRIDGED, 1, 1 },
		{ "intermediate_16", FRAME_INTERMEDIATE, 0, 4 },
	};
	struct frame_info want, fi;
	uint8_t *frame, hdr[4];
	size_t len, n, padlen, i;

	for (i = 0; i < nitems(cases); i++) {
		frame = vh(cases[i].name, &len);
		ck_assert_uint_gt(len, cases[i].hdrlen);
		want = info(
		    cases[i].hdrlen, len - cases[i].hdrlen, cases[i].quickack);
		check_splits(frame_decode, cases[i].kind, frame, len, &want);
		ck_assert_int_eq(
		    frame_decode(cases[i].kind, frame, len, &fi), FRAME_OK);
		ck_assert_uint_eq(fi.pktlen, 16);

		/* The client encodes the same header. */
		n = frame_client_encode_header(
		    cases[i].kind, 16, cases[i].quickack, hdr, &padlen);
		ck_assert_uint_eq(n, cases[i].hdrlen);
		ck_assert_uint_eq(padlen, 0);
		ck_assert_mem_eq(hdr, frame, n);

		/* So does the proxy, which never asks for quick acks. */
		if (!cases[i].quickack) {
			n = frame_encode_header(
			    cases[i].kind, 16, hdr, &padlen);
			ck_assert_uint_eq(n, cases[i].hdrlen);
			ck_assert_uint_eq(padlen, 0);
			ck_assert_mem_eq(hdr, frame, n);
			check_splits(frame_client_decode, cases[i].kind, frame,
			    len, &want);
		}
		free(frame);
	}
}
END_TEST

START_TEST(test_vectors_headers)
{
	static const struct {
		const char *name;
		enum frame_kind kind;
		size_t pktlen;
		int quickack;
	} cases[] = {
		{ "abridged_600_header", FRAME_ABRIDGED, 600, 0 },
		{ "abridged_600_quickack_header", FRAME_ABRIDGED, 600, 1 },
		{ "intermediate_16_quickack_header", FRAME_INTERMEDIATE, 16,
		    1 },
	};
	struct frame_info want;
	uint8_t *hdr, out[4], *frame;
	size_t len, n, padlen, i;

	for (i = 0; i < nitems(cases); i++) {
		hdr = vh(cases[i].name, &len);
		ck_assert_uint_eq(len, 4);
		n = frame_client_encode_header(cases[i].kind, cases[i].pktlen,
		    cases[i].quickack, out, &padlen);
		ck_assert_uint_eq(n, 4);
		ck_assert_mem_eq(out, hdr, 4);
		if (!cases[i].quickack) {
			ck_assert_uint_eq(frame_encode_header(cases[i].kind,
			                      cases[i].pktlen, out, &padlen),
			    4);
			ck_assert_mem_eq(out, hdr, 4);
		}
		frame = malloc(4 + cases[i].pktlen);
		ck_assert_ptr_nonnull(frame);
		memcpy(frame, hdr, 4);
		random_bytes(frame + 4, cases[i].pktlen);
		want = info(4, cases[i].pktlen, cases[i].quickack);
		check_splits(frame_decode, cases[i].kind, frame,
		    4 + cases[i].pktlen, &want);
		free(frame);
		free(hdr);
	}
}
END_TEST

START_TEST(test_vectors_padded)
{
	struct frame_info want, fi;
	uint8_t *frame, *payload, hdr[4];
	size_t len, plen, padlen, n;
	int seen[16] = { 0 }, i;

	frame = vh("padded_16_plus_3", &len);
	payload = vh("padded_16_plus_3_forwarded_payload", &plen);
	want = info(4, plen, 0);
	check_splits(frame_decode, FRAME_PADDED, frame, len, &want);
	check_splits(frame_client_decode, FRAME_PADDED, frame, len, &want);
	ck_assert_int_eq(frame_decode(FRAME_PADDED, frame, len, &fi), FRAME_OK);
	ck_assert_uint_ge(len, fi.hdrlen + fi.pktlen);
	ck_assert_mem_eq(frame + fi.hdrlen, payload, plen);
	/* Intermediate refuses the same length (not a multiple of 4). */
	ck_assert_int_eq(
	    frame_decode(FRAME_INTERMEDIATE, frame, len, &fi), FRAME_ERROR);

	/* The proxy pads 1..3 bytes: 3 gives the vector's header. */
	for (i = 0; i < 300; i++) {
		n = frame_encode_header(FRAME_PADDED, plen, hdr, &padlen);
		ck_assert_uint_eq(n, 4);
		ck_assert_uint_ge(padlen, 1);
		ck_assert_uint_le(padlen, 3);
		seen[padlen] = 1;
		if (padlen == len - 4 - plen)
			ck_assert_mem_eq(hdr, frame, 4);
	}
	ck_assert(seen[1] && seen[2] && seen[3]);
	ck_assert(!seen[0]);

	/* Clients pad 0..15 bytes. */
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 2000; i++) {
		n = frame_client_encode_header(
		    FRAME_PADDED, plen, 0, hdr, &padlen);
		ck_assert_uint_eq(n, 4);
		ck_assert_uint_le(padlen, 15);
		seen[padlen] = 1;
		if (padlen == len - 4 - plen)
			ck_assert_mem_eq(hdr, frame, 4);
	}
	for (i = 0; i < 16; i++)
		ck_assert_msg(seen[i], "client padding %d never drawn", i);
	free(frame);
	free(payload);
}
END_TEST

START_TEST(test_vectors_quickack)
{
	struct frame_info want;
	uint8_t *confirm, *ack, *want_ab, *want_im, out[4];
	size_t len, alen;
	uint32_t value;

	/* The confirm bytes exactly as an RPC_SIMPLE_ACK carries them. */
	ack = vec_hex("B2_middle_proxy.rpc_simple_ack_example", &alen);
	ck_assert_uint_eq(alen, 16);
	confirm = ack + 12;
	value = (uint32_t)strtoul(
	    vec_str("A3_framing.quick_ack_confirm_value"), NULL, 16);
	ck_assert_uint_eq(value,
	    (uint32_t)confirm[0] | confirm[1] << 8 | confirm[2] << 16 |
	        (uint32_t)confirm[3] << 24);

	want_ab = vh("quick_ack_to_client_abridged", &len);
	ck_assert_uint_eq(len, 4);
	frame_quickack(FRAME_ABRIDGED, confirm, out);
	ck_assert_mem_eq(out, want_ab, 4);
	want_im = vh("quick_ack_to_client_intermediate", &len);
	ck_assert_uint_eq(len, 4);
	frame_quickack(FRAME_INTERMEDIATE, confirm, out);
	ck_assert_mem_eq(out, want_im, 4);
	frame_quickack(FRAME_PADDED, confirm, out);
	ck_assert_mem_eq(out, want_im, 4);

	/* What the client makes of them. */
	want = info(4, 0, 1);
	want.confirm = value;
	check_splits(frame_client_decode, FRAME_ABRIDGED, want_ab, 4, &want);
	check_splits(
	    frame_client_decode, FRAME_INTERMEDIATE, want_im, 4, &want);
	check_splits(frame_client_decode, FRAME_PADDED, want_im, 4, &want);
	free(ack);
	free(want_ab);
	free(want_im);
}
END_TEST

START_TEST(test_malformed)
{
	static const struct {
		enum frame_kind kind;
		const char *hex;
	} cases[] = {
		{ FRAME_ABRIDGED, "00" },
		{ FRAME_ABRIDGED, "80" },
		{ FRAME_ABRIDGED, "7f000000" },
		{ FRAME_ABRIDGED, "7f7e0000" }, /* over-long */
		{ FRAME_ABRIDGED, "ff7e0000" },
		{ FRAME_ABRIDGED, "7f01fc03" }, /* MAX + 4 */
		{ FRAME_ABRIDGED, "7fffffff" },
		{ FRAME_INTERMEDIATE, "00000000" },
		{ FRAME_INTERMEDIATE, "00000080" },
		{ FRAME_INTERMEDIATE, "02000000" },
		{ FRAME_INTERMEDIATE, "11000000" },
		{ FRAME_INTERMEDIATE, "10000040" }, /* bit 30 */
		{ FRAME_INTERMEDIATE, "100000c0" },
		{ FRAME_INTERMEDIATE, "04f00f00" }, /* MAX + 4 */
		{ FRAME_INTERMEDIATE, "ffffff7f" },
		{ FRAME_PADDED, "00000000" },
		{ FRAME_PADDED, "00000080" },
		{ FRAME_PADDED, "01000000" }, /* nothing left */
		{ FRAME_PADDED, "03000080" },
		{ FRAME_PADDED, "13000040" },
		{ FRAME_PADDED, "01f00f00" }, /* MAX + 1 */
		{ FRAME_PADDED, "ffffffff" },
	};
	struct frame_info fi;
	uint8_t buf[4];
	size_t i, n;

	for (i = 0; i < nitems(cases); i++) {
		n = strlen(cases[i].hex) / 2;
		ck_assert_int_eq(hex_decode(cases[i].hex, buf, n), 0);
		memset(&fi, 0x5a, sizeof(fi));
		ck_assert_msg(
		    frame_decode(cases[i].kind, buf, n, &fi) == FRAME_ERROR,
		    "%d %s", cases[i].kind, cases[i].hex);
		ck_assert_uint_eq(fi.total, 0);
		ck_assert_uint_eq(fi.pktlen, 0);
	}
}
END_TEST

/* Largest and smallest lengths that are still fine. */
START_TEST(test_limits)
{
	static const struct {
		enum frame_kind kind;
		const char *hex;
		size_t hdrlen, pktlen, total;
	} cases[] = {
		{ FRAME_ABRIDGED, "01", 1, 4, 5 },
		{ FRAME_ABRIDGED, "7e", 1, 504, 505 },
		{ FRAME_ABRIDGED, "fe", 1, 504, 505 },
		{ FRAME_ABRIDGED, "7f7f0000", 4, 508, 512 },
		{ FRAME_ABRIDGED, "7f00fc03", 4, FRAME_MAX_PACKET,
		    4 + FRAME_MAX_PACKET },
		{ FRAME_INTERMEDIATE, "04000000", 4, 4, 8 },
		{ FRAME_INTERMEDIATE, "00f00f00", 4, FRAME_MAX_PACKET,
		    4 + FRAME_MAX_PACKET },
		{ FRAME_PADDED, "04000000", 4, 4, 8 },
		{ FRAME_PADDED, "07000080", 4, 4, 11 },
		{ FRAME_PADDED, "00f00f00", 4, FRAME_MAX_PACKET,
		    4 + FRAME_MAX_PACKET },
	};
	struct frame_info fi;
	uint8_t buf[4];
	size_t i, n;

	ck_assert_uint_eq(FRAME_MAX_PACKET, 0x0ff000);
	for (i = 0; i < nitems(cases); i++) {
		n = strlen(cases[i].hex) / 2;
		ck_assert_int_eq(hex_decode(cases[i].hex, buf, n), 0);
		ck_assert_msg(
		    frame_decode(cases[i].kind, buf, n, &fi) == FRAME_NEED_MORE,
		    "%s", cases[i].hex);
		ck_assert_uint_eq(fi.hdrlen, cases[i].hdrlen);
		ck_assert_uint_eq(fi.pktlen, cases[i].pktlen);
		ck_assert_uint_eq(fi.total, cases[i].total);
	}
}
END_TEST

START_TEST(test_client_malformed)
{
	static const struct {
		enum frame_kind kind;
		const char *hex;
	} cases[] = {
		{ FRAME_ABRIDGED, "00" },
		{ FRAME_ABRIDGED, "7f000000" },
		{ FRAME_ABRIDGED, "7f7e0000" },
		{ FRAME_ABRIDGED, "7f010040" }, /* CLIENT_MAX + 4 */
		{ FRAME_INTERMEDIATE, "00000000" },
		{ FRAME_INTERMEDIATE, "06000000" },
		{ FRAME_INTERMEDIATE, "04000001" }, /* CLIENT_MAX + 4 */
		{ FRAME_PADDED, "00000000" },
		{ FRAME_PADDED, "03000000" },
		{ FRAME_PADDED, "01000001" },
	};
	struct frame_info fi;
	uint8_t buf[4];
	size_t i, n;

	for (i = 0; i < nitems(cases); i++) {
		n = strlen(cases[i].hex) / 2;
		ck_assert_int_eq(hex_decode(cases[i].hex, buf, n), 0);
		ck_assert_msg(frame_client_decode(cases[i].kind, buf, n, &fi) ==
		        FRAME_ERROR,
		    "%d %s", cases[i].kind, cases[i].hex);
	}
	/* The largest one it takes. */
	put_le32(buf, FRAME_CLIENT_MAX_PACKET);
	ck_assert_int_eq(frame_client_decode(FRAME_INTERMEDIATE, buf, 4, &fi),
	    FRAME_NEED_MORE);
	ck_assert_uint_eq(fi.total, 4 + FRAME_CLIENT_MAX_PACKET);
	/* An abridged quick ack needs all four bytes. */
	buf[0] = 0x80;
	ck_assert_int_eq(
	    frame_client_decode(FRAME_ABRIDGED, buf, 1, &fi), FRAME_NEED_MORE);
	ck_assert_int_eq(fi.quickack, 1);
	ck_assert_uint_eq(fi.total, 4);
}
END_TEST

START_TEST(test_encode_limits)
{
	uint8_t hdr[4], want[4];
	size_t padlen, k;

	for (k = 0; k < nitems(all_kinds); k++) {
		/* Empty or ragged packets cannot be framed. */
		ck_assert_uint_eq(
		    frame_encode_header(all_kinds[k], 0, hdr, &padlen), 0);
		ck_assert_uint_eq(padlen, 0);
		ck_assert_uint_eq(
		    frame_encode_header(all_kinds[k], 18, hdr, &padlen), 0);
		ck_assert_uint_eq(frame_client_encode_header(
		                      all_kinds[k], 0, 0, hdr, &padlen),
		    0);
		ck_assert_uint_eq(frame_client_encode_header(
		                      all_kinds[k], 7, 1, hdr, &padlen),
		    0);
		ck_assert_uint_eq(padlen, 0);
	}
	/* Abridged switches to the long form at 0x7f words. */
	ck_assert_uint_eq(
	    frame_encode_header(FRAME_ABRIDGED, 0x7e * 4, hdr, &padlen), 1);
	ck_assert_uint_eq(hdr[0], 0x7e);
	ck_assert_uint_eq(
	    frame_encode_header(FRAME_ABRIDGED, 0x7f * 4, hdr, &padlen), 4);
	ck_assert_int_eq(hex_decode("7f7f0000", want, 4), 0);
	ck_assert_mem_eq(hdr, want, 4);
	ck_assert_uint_eq(frame_encode_header(FRAME_ABRIDGED,
	                      (size_t)0xffffff * 4, hdr, &padlen),
	    4);
	ck_assert_int_eq(hex_decode("7fffffff", want, 4), 0);
	ck_assert_mem_eq(hdr, want, 4);
	ck_assert_uint_eq(frame_encode_header(FRAME_ABRIDGED,
	                      (size_t)0x1000000 * 4, hdr, &padlen),
	    0);
	ck_assert_uint_eq(frame_client_encode_header(FRAME_ABRIDGED,
	                      (size_t)0x1000000 * 4, 0, hdr, &padlen),
	    0);
	/* Intermediate lengths never reach bit 30. */
	ck_assert_uint_eq(
	    frame_encode_header(FRAME_INTERMEDIATE, 0x3ffffffc, hdr, &padlen),
	    4);
	ck_assert_int_eq(hex_decode("fcffff3f", want, 4), 0);
	ck_assert_mem_eq(hdr, want, 4);
	ck_assert_uint_eq(
	    frame_encode_header(FRAME_INTERMEDIATE, 0x40000000, hdr, &padlen),
	    0);
	ck_assert_uint_eq(
	    frame_encode_header(FRAME_PADDED, 0x40000000, hdr, &padlen), 0);
	ck_assert_uint_eq(frame_client_encode_header(
	                      FRAME_INTERMEDIATE, 0x3ffffffc, 1, hdr, &padlen),
	    4);
	ck_assert_int_eq(hex_decode("fcffffbf", want, 4), 0);
	ck_assert_mem_eq(hdr, want, 4);
}
END_TEST

/* Whatever one side encodes, the other side decodes. */
START_TEST(test_round_trip)
{
	static const size_t lens[] = {
		4,
		8,
		16,
		28,
		0x7e * 4,
		0x7f * 4,
		1000,
		4096,
		65536,
		FRAME_MAX_PACKET - 4,
		FRAME_MAX_PACKET,
	};
	struct frame_info fi;
	uint8_t *buf, hdr[4];
	size_t k, i, n, padlen;
	int qa, rc;

	buf = calloc(1, 4 + FRAME_MAX_PACKET + 16);
	ck_assert_ptr_nonnull(buf);
	for (k = 0; k < nitems(all_kinds); k++)
		for (i = 0; i < nitems(lens); i++) {
			/* Proxy to client. */
			n = frame_encode_header(
			    all_kinds[k], lens[i], hdr, &padlen);
			ck_assert_uint_ne(n, 0);
			memcpy(buf, hdr, n);
			rc = frame_client_decode(
			    all_kinds[k], buf, n + lens[i] + padlen, &fi);
			ck_assert_int_eq(rc, FRAME_OK);
			ck_assert_uint_eq(fi.hdrlen, n);
			ck_assert_uint_eq(fi.pktlen, lens[i]);
			ck_assert_uint_eq(fi.total, n + lens[i] + padlen);
			ck_assert_int_eq(fi.quickack, 0);
			/* Client to proxy, with and without quick ack. */
			for (qa = 0; qa < 2; qa++) {
				n = frame_client_encode_header(
				    all_kinds[k], lens[i], qa, hdr, &padlen);
				ck_assert_uint_ne(n, 0);
				memcpy(buf, hdr, n);
				rc = frame_decode(all_kinds[k], buf,
				    n + lens[i] + padlen, &fi);
				if (lens[i] + padlen > FRAME_MAX_PACKET) {
					/* Padding past the limit. */
					ck_assert_int_eq(rc, FRAME_ERROR);
					continue;
				}
				ck_assert_int_eq(rc, FRAME_OK);
				ck_assert_uint_eq(fi.hdrlen, n);
				ck_assert_uint_eq(
				    fi.total, n + lens[i] + padlen);
				ck_assert_int_eq(fi.quickack, qa);
				/* Whole words of padding stay attached. */
				ck_assert_uint_eq(
				    fi.pktlen, lens[i] + (padlen & ~(size_t)3));
			}
		}
	free(buf);
}
END_TEST

/* An unencrypted packet: auth_key_id 0, msg_id, length, constructor. */
static void
plain_packet(uint8_t *pkt, size_t len, uint32_t msglen, uint32_t ctor)
{
	memset(pkt, 0, len);
	random_bytes(pkt + 8, 8);
	put_le32(pkt + 16, msglen);
	put_le32(pkt + 20, ctor);
	random_bytes(pkt + 24, len - 24);
}

START_TEST(test_packet_check)
{
	static const uint32_t ctors[] = {
		0x60469778,
		0xbe7e8ef1,
		0xd712e4be,
		0xf5045f1f,
	};
	/* Requests from mtproto_proxy's (Erlang) test suite, spec B.2.7. */
	static const char *erl[] = {
		"0000000000000000000000003d02185b14000000789746609"
		"9c58eeef58b55d0a0f144596a0776a7",
		"00000000000000000000000038dc175b14000000789746601"
		"a31604addf3680dad0d84c0ee16617e",
	};
	uint8_t pkt[128], *big;
	size_t i;

	for (i = 0; i < nitems(erl); i++) {
		ck_assert_int_eq(hex_decode(erl[i], pkt, 40), 0);
		ck_assert_int_eq(frame_packet_check(pkt, 40), 1);
		pkt[20] ^= 1; /* unknown constructor */
		ck_assert_int_eq(frame_packet_check(pkt, 40), 0);
	}
	for (i = 0; i < nitems(ctors); i++) {
		plain_packet(pkt, 40, 20, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 40), 1);
		plain_packet(pkt, 128, 108, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 128), 1);
		plain_packet(pkt, 128, 109, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 128), 0);
		plain_packet(pkt, 128, 19, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 128), 0);
		plain_packet(pkt, 128, 0xffffffff, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 128), 0);
		/* 28 bytes leave no room for a 20-byte message. */
		plain_packet(pkt, 28, 20, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 28), 0);
		plain_packet(pkt, 28, 8, ctors[i]);
		ck_assert_int_eq(frame_packet_check(pkt, 28), 0);
	}
	plain_packet(pkt, 40, 20, 0xc4b9f9bb);
	ck_assert_int_eq(frame_packet_check(pkt, 40), 0);

	/* Encrypted: anything of at least 56 bytes. */
	random_bytes(pkt, sizeof(pkt));
	pkt[7] |= 1;
	ck_assert_int_eq(frame_packet_check(pkt, 56), 1);
	ck_assert_int_eq(frame_packet_check(pkt, 128), 1);
	ck_assert_int_eq(frame_packet_check(pkt, 52), 0);
	ck_assert_int_eq(frame_packet_check(pkt, 28), 0);
	ck_assert_int_eq(frame_packet_check(pkt, 24), 0);
	ck_assert_int_eq(frame_packet_check(pkt, 58), 0);
	ck_assert_int_eq(frame_packet_check(pkt, 0), 0);
	ck_assert_int_eq(frame_packet_check(NULL, 56), 0);
	memset(pkt, 0, 8);
	pkt[0] = 1;
	ck_assert_int_eq(frame_packet_check(pkt, 56), 1);

	big = malloc(FRAME_MAX_PACKET + 4);
	ck_assert_ptr_nonnull(big);
	random_bytes(big, 64);
	big[0] |= 1;
	ck_assert_int_eq(frame_packet_check(big, FRAME_MAX_PACKET), 1);
	ck_assert_int_eq(frame_packet_check(big, FRAME_MAX_PACKET + 4), 0);
	free(big);
}
END_TEST

START_TEST(test_random_bytes_safe)
{
	struct frame_info fi;
	uint8_t buf[64];
	size_t k, len;
	int i, rc;

	/* Random input never yields an impossible answer. */
	for (i = 0; i < 20000; i++) {
		len = (size_t)(i % 9);
		random_bytes(buf, len);
		for (k = 0; k < nitems(all_kinds); k++) {
			rc = frame_decode(all_kinds[k], buf, len, &fi);
			if (rc == FRAME_OK) {
				ck_assert_uint_le(fi.total, len);
				ck_assert_uint_le(
				    fi.hdrlen + fi.pktlen, fi.total);
				ck_assert_uint_gt(fi.pktlen, 0);
				ck_assert_uint_eq(fi.pktlen % 4, 0);
			} else if (rc == FRAME_NEED_MORE) {
				ck_assert(fi.total == 0 || fi.total > len);
				ck_assert_uint_le(
				    fi.total, 4 + FRAME_MAX_PACKET);
			} else
				ck_assert_int_eq(rc, FRAME_ERROR);
			rc = frame_client_decode(all_kinds[k], buf, len, &fi);
			if (rc == FRAME_OK)
				ck_assert_uint_le(fi.total, len);
			else if (rc == FRAME_NEED_MORE)
				ck_assert(fi.total == 0 || fi.total > len);
		}
	}
}
END_TEST

static Suite *
framing_suite(void)
{
	Suite *s = suite_create("framing");
	TCase *tc = tcase_create("framing");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_kind_from_tag);
	tcase_add_test(tc, test_vectors_small);
	tcase_add_test(tc, test_vectors_headers);
	tcase_add_test(tc, test_vectors_padded);
	tcase_add_test(tc, test_vectors_quickack);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_client_malformed);
	tcase_add_test(tc, test_encode_limits);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_packet_check);
	tcase_add_test(tc, test_random_bytes_safe);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(framing_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
