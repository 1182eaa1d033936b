#include "autoconf.h"

#include <string.h>

#include "framing.h"
#include "o2.h"
#include "util.h"

/* Abridged, spec A.3.1. */
#define ABRIDGED_QUICKACK  0x80 /* bit 7 of the first byte */
#define ABRIDGED_LONG      0x7f /* then a LE24 word count */
#define ABRIDGED_MAX_WORDS 0xffffffu
/* Intermediate and padded, spec A.3.2 and A.3.3. */
#define INTERMEDIATE_QUICKACK 0x80000000u
#define INTERMEDIATE_BAD_BIT  0x40000000u /* C rejects it */
#define INTERMEDIATE_MAX_LEN  0x3fffffffu /* neither bit 30 nor 31 */
#define PADDED_CLIENT_MAXPAD  15 /* tdlib: 0..15 bytes, spec A.3.3 */
#define PADDED_PROXY_MAXPAD   3 /* ours: 1..3 bytes, spec A.3.3 */

/* Content checks of a client packet in middle mode, spec A.3.4. */
#define PKT_MIN_LEN           28
#define PKT_MIN_ENCRYPTED_LEN 56 /* auth_key_id, msg_key, header */
#define PKT_AUTH_KEY_ID_LEN   8
#define PKT_MSGLEN_OFF        16 /* unencrypted: message_length */
#define PKT_CONSTRUCTOR_OFF   20 /* unencrypted: first constructor */
#define PKT_MIN_MSGLEN        20
#define PKT_PLAIN_HDR_LEN     20 /* auth_key_id, msg_id, length */
static const uint32_t pkt_plain_constructors[] = {
	0x60469778u, /* req_pq */
	0xbe7e8ef1u, /* req_pq_multi */
	0xd712e4beu, /* req_DH_params */
	0xf5045f1fu, /* set_client_DH_params */
};

static uint32_t
le24(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

/* Uniform random integer in [0, n), n <= 256 (padding lengths: no
 * secret, cheap_rand64()). */
static size_t
random_below(unsigned n)
{
	unsigned limit = 256 - 256 % n;
	uint8_t b;

	do
		b = (uint8_t)(cheap_rand64() >> 56);
	while (b >= limit);
	return b % n;
}

int
frame_kind_from_tag(uint32_t tag)
{
	switch (tag) {
	case O2_TAG_ABRIDGED:
		return FRAME_ABRIDGED;
	case O2_TAG_INTERMEDIATE:
		return FRAME_INTERMEDIATE;
	case O2_TAG_PADDED:
		return FRAME_PADDED;
	default:
		return -1;
	}
}

/* Sets total and says whether the whole frame is in buf. */
static int
frame_complete(struct frame_info *fi, size_t total, size_t len)
{
	fi->total = total;
	return len >= total ? FRAME_OK : FRAME_NEED_MORE;
}

static int
frame_error(struct frame_info *fi)
{
	memset(fi, 0, sizeof(*fi));
	return FRAME_ERROR;
}

int
frame_decode(
    enum frame_kind kind, const uint8_t *buf, size_t len, struct frame_info *fi)
{
	uint32_t words, l;

	memset(fi, 0, sizeof(*fi));
	switch (kind) {
	case FRAME_ABRIDGED:
		if (len < 1)
			return FRAME_NEED_MORE;
		fi->quickack = (buf[0] & ABRIDGED_QUICKACK) != 0;
		words = buf[0] & ~ABRIDGED_QUICKACK;
		if (words == 0)
			return frame_error(fi);
		fi->hdrlen = 1;
		if (words == ABRIDGED_LONG) {
			if (len < 4)
				return FRAME_NEED_MORE;
			words = le24(buf + 1);
			/* Over-long encoding: C treats it as an attack. */
			if (words < ABRIDGED_LONG)
				return frame_error(fi);
			fi->hdrlen = 4;
		}
		if (words > FRAME_MAX_PACKET / 4)
			return frame_error(fi);
		fi->pktlen = (size_t)words * 4;
		return frame_complete(fi, fi->hdrlen + fi->pktlen, len);
	case FRAME_INTERMEDIATE:
	case FRAME_PADDED:
		if (len < 4)
			return FRAME_NEED_MORE;
		l = get_le32(buf);
		fi->quickack = (l & INTERMEDIATE_QUICKACK) != 0;
		l &= ~INTERMEDIATE_QUICKACK;
		if (l == 0 || (l & INTERMEDIATE_BAD_BIT) ||
		    l > FRAME_MAX_PACKET)
			return frame_error(fi);
		/* Only the padded framing has room for odd lengths. */
		if (kind == FRAME_INTERMEDIATE && l % 4 != 0)
			return frame_error(fi);
		fi->hdrlen = 4;
		fi->pktlen = l & ~(size_t)3;
		if (fi->pktlen == 0)
			return frame_error(fi);
		return frame_complete(fi, fi->hdrlen + l, len);
	}
	return frame_error(fi);
}

/*
 * Common part of both encoders; padlen is already chosen, quickack is the
 * client's request (never set by the proxy).
 */
static size_t
frame_header(enum frame_kind kind, size_t pktlen, int quickack, size_t padlen,
    uint8_t hdr[4])
{
	size_t words = pktlen / 4;
	uint8_t qa = quickack ? ABRIDGED_QUICKACK : 0;

	if (pktlen == 0 || pktlen % 4 != 0)
		return 0;
	switch (kind) {
	case FRAME_ABRIDGED:
		if (words < ABRIDGED_LONG) {
			hdr[0] = (uint8_t)words | qa;
			return 1;
		}
		if (words > ABRIDGED_MAX_WORDS)
			return 0;
		put_le32(hdr, (uint32_t)words << 8 | ABRIDGED_LONG | qa);
		return 4;
	case FRAME_INTERMEDIATE:
	case FRAME_PADDED:
		if (pktlen > INTERMEDIATE_MAX_LEN - padlen)
			return 0;
		put_le32(hdr,
		    (uint32_t)(pktlen + padlen) |
		        (quickack ? INTERMEDIATE_QUICKACK : 0));
		return 4;
	}
	return 0;
}

size_t
frame_encode_header(
    enum frame_kind kind, size_t pktlen, uint8_t hdr[4], size_t *padlen)
{
	size_t n;

	/* Never 0 bytes, so the length alone says the frame is padded. */
	*padlen =
	    kind == FRAME_PADDED ? 1 + random_below(PADDED_PROXY_MAXPAD) : 0;
	if ((n = frame_header(kind, pktlen, 0, *padlen, hdr)) == 0)
		*padlen = 0;
	return n;
}

size_t
frame_client_encode_header(enum frame_kind kind, size_t pktlen, int quickack,
    uint8_t hdr[4], size_t *padlen)
{
	size_t n;

	*padlen =
	    kind == FRAME_PADDED ? random_below(PADDED_CLIENT_MAXPAD + 1) : 0;
	if ((n = frame_header(kind, pktlen, quickack, *padlen, hdr)) == 0)
		*padlen = 0;
	return n;
}

void
frame_quickack(enum frame_kind kind, const uint8_t confirm[4], uint8_t out[4])
{
	int i;

	/* Abridged clients read the value big-endian, spec A.3.1. */
	if (kind == FRAME_ABRIDGED)
		for (i = 0; i < 4; i++)
			out[i] = confirm[3 - i];
	else
		memcpy(out, confirm, 4);
}

int
frame_packet_check(const uint8_t *pkt, size_t len)
{
	static const uint8_t zero_id[PKT_AUTH_KEY_ID_LEN];
	uint32_t msglen, constructor;
	size_t i;

	if (pkt == NULL || len < PKT_MIN_LEN || len % 4 != 0 ||
	    len > FRAME_MAX_PACKET)
		return 0;
	if (memcmp(pkt, zero_id, sizeof(zero_id)) != 0)
		return len >= PKT_MIN_ENCRYPTED_LEN;
	/* Unencrypted: only the key exchange may come this way. */
	msglen = get_le32(pkt + PKT_MSGLEN_OFF);
	if (msglen < PKT_MIN_MSGLEN || msglen > len - PKT_PLAIN_HDR_LEN)
		return 0;
	constructor = get_le32(pkt + PKT_CONSTRUCTOR_OFF);
	for (i = 0; i < nitems(pkt_plain_constructors); i++)
		if (constructor == pkt_plain_constructors[i])
			return 1;
	return 0;
}

/* A quick-ack answer: 4 raw bytes, the value in either byte order. */
static int
frame_client_ack(
    struct frame_info *fi, const uint8_t *buf, size_t len, int big_endian)
{
	fi->quickack = 1;
	fi->hdrlen = 4;
	if (len < 4)
		return frame_complete(fi, 4, len);
	fi->confirm = big_endian ? (uint32_t)buf[0] << 24 |
	        (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3]
	                         : get_le32(buf);
	return frame_complete(fi, 4, len);
}

int
frame_client_decode(
    enum frame_kind kind, const uint8_t *buf, size_t len, struct frame_info *fi)
{
	uint32_t words, l;

	memset(fi, 0, sizeof(*fi));
	switch (kind) {
	case FRAME_ABRIDGED:
		if (len < 1)
			return FRAME_NEED_MORE;
		/* Data frames never set bit 7; a quick ack always does. */
		if (buf[0] & ABRIDGED_QUICKACK)
			return frame_client_ack(fi, buf, len, 1);
		words = buf[0];
		if (words == 0)
			return frame_error(fi);
		fi->hdrlen = 1;
		if (words == ABRIDGED_LONG) {
			if (len < 4)
				return FRAME_NEED_MORE;
			words = le24(buf + 1);
			if (words < ABRIDGED_LONG)
				return frame_error(fi);
			fi->hdrlen = 4;
		}
		if (words > FRAME_CLIENT_MAX_PACKET / 4)
			return frame_error(fi);
		fi->pktlen = (size_t)words * 4;
		return frame_complete(fi, fi->hdrlen + fi->pktlen, len);
	case FRAME_INTERMEDIATE:
	case FRAME_PADDED:
		if (len < 4)
			return FRAME_NEED_MORE;
		l = get_le32(buf);
		if (l & INTERMEDIATE_QUICKACK)
			return frame_client_ack(fi, buf, len, 0);
		if (l == 0 || l > FRAME_CLIENT_MAX_PACKET ||
		    (kind == FRAME_INTERMEDIATE && l % 4 != 0))
			return frame_error(fi);
		fi->hdrlen = 4;
		fi->pktlen = l & ~(size_t)3;
		if (fi->pktlen == 0)
			return frame_error(fi);
		return frame_complete(fi, fi->hdrlen + l, len);
	}
	return frame_error(fi);
}
