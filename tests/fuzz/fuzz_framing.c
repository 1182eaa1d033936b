/*
 * Fuzz target for common/framing.c. The first byte picks the framing, the
 * rest is a stream to decode frame by frame, both as the proxy and as a
 * client; answers must stay within the buffer and agree with a decode of
 * every shorter prefix. Lengths taken from the input are also encoded and
 * decoded back.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"

#define MAX_FRAMES 64

typedef int (*decode_fn)(
    enum frame_kind, const uint8_t *, size_t, struct frame_info *);

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

/* Decodes buf frame by frame with one decoder, checking each answer. */
static void
walk(decode_fn decode, int proxy_side, enum frame_kind kind, const uint8_t *buf,
    size_t len)
{
	struct frame_info fi, pre;
	size_t max = proxy_side ? FRAME_MAX_PACKET : FRAME_CLIENT_MAX_PACKET;
	int rc, n;

	for (n = 0; n < MAX_FRAMES; n++) {
		rc = decode(kind, buf, len, &fi);
		if (rc == FRAME_ERROR) {
			check(fi.total == 0 && fi.pktlen == 0);
			return;
		}
		if (rc == FRAME_NEED_MORE) {
			check(fi.total == 0 || fi.total > len);
			check(fi.total <= 4 + max + 3);
			return;
		}
		check(rc == FRAME_OK);
		check(fi.total > 0 && fi.total <= len);
		check(fi.hdrlen + fi.pktlen <= fi.total);
		check(fi.total - fi.hdrlen - fi.pktlen <= 3);
		check(fi.pktlen % 4 == 0 && fi.pktlen <= max);
		if (!(fi.quickack && !proxy_side))
			check(fi.pktlen > 0);
		/* The frame minus one byte needs more, and says how much. */
		rc = decode(kind, buf, fi.total - 1, &pre);
		check(rc == FRAME_NEED_MORE);
		check(pre.total == 0 || pre.total == fi.total);
		if (proxy_side)
			(void)frame_packet_check(buf + fi.hdrlen, fi.pktlen);
		buf += fi.total;
		len -= fi.total;
	}
}

/* Encode a header for pktlen and decode it back on the other side. */
static void
round_trip(enum frame_kind kind, size_t pktlen, int quickack)
{
	struct frame_info fi;
	uint8_t hdr[4];
	size_t n, padlen;
	int rc;

	n = frame_encode_header(kind, pktlen, hdr, &padlen);
	if (n != 0) {
		check(n == 1 || n == 4);
		check(kind == FRAME_PADDED ? padlen >= 1 && padlen <= 3
		                           : padlen == 0);
		rc = frame_client_decode(kind, hdr, n, &fi);
		if (pktlen + padlen > FRAME_CLIENT_MAX_PACKET)
			check(rc == FRAME_ERROR);
		else {
			check(rc == FRAME_NEED_MORE);
			check(fi.total == n + pktlen + padlen);
			check(fi.hdrlen == n && fi.pktlen == pktlen);
			check(!fi.quickack);
		}
	} else
		check(pktlen == 0 || pktlen % 4 != 0 ||
		    (kind == FRAME_ABRIDGED && pktlen / 4 > 0xffffff));

	n = frame_client_encode_header(kind, pktlen, quickack, hdr, &padlen);
	if (n == 0)
		return;
	check(kind == FRAME_PADDED ? padlen <= 15 : padlen == 0);
	rc = frame_decode(kind, hdr, n, &fi);
	if (pktlen + padlen > FRAME_MAX_PACKET) {
		check(rc == FRAME_ERROR);
		return;
	}
	check(rc == FRAME_NEED_MORE);
	check(fi.total == n + pktlen + padlen);
	check(fi.hdrlen == n);
	check(fi.pktlen == pktlen + (padlen & ~(size_t)3));
	check(fi.quickack == (quickack != 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum frame_kind kind;
	struct frame_info fi;
	uint8_t ack[4];
	uint32_t v;

	if (size < 1)
		return 0;
	kind = (enum frame_kind)(data[0] % 3);
	walk(frame_decode, 1, kind, data + 1, size - 1);
	walk(frame_client_decode, 0, kind, data + 1, size - 1);
	(void)frame_packet_check(data + 1, size - 1);

	if (size >= 5) {
		v = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
		    (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
		round_trip(kind, v & 0x3fffffff, data[0] & 0x80);
		round_trip(kind, (v & 0x3ff) * 4, data[0] & 0x40);
		/* A quick ack reaches the client with the same value. */
		frame_quickack(kind, data + 1, ack);
		if (data[4] & 0x80) {
			check(
			    frame_client_decode(kind, ack, 4, &fi) == FRAME_OK);
			check(fi.quickack && fi.confirm == v && fi.total == 4);
		}
	}
	return 0;
}
