/*
 * MTProto transport framings inside the obfuscated2 streams (spec A.3):
 * abridged, intermediate and padded intermediate. Pure functions over
 * plaintext buffers; the caller does the decryption and the I/O.
 */
#ifndef MTP_FRAMING_H
#define MTP_FRAMING_H

#include <stddef.h>
#include <stdint.h>

enum frame_kind {
	FRAME_ABRIDGED, /* tag ef ef ef ef, spec A.3.1 */
	FRAME_INTERMEDIATE, /* tag ee ee ee ee, spec A.3.2 */
	FRAME_PADDED, /* tag dd dd dd dd, spec A.3.3 */
};

/* Largest client packet (C's MAX_POST_SIZE), spec A.3.2 and A.3.4. */
#define FRAME_MAX_PACKET 1044480u
/*
 * Largest packet frame_client_decode() accepts from the proxy: a bound
 * for test clients' buffers, not a protocol constant.
 */
#define FRAME_CLIENT_MAX_PACKET (16u << 20)

/* Results of frame_decode() and frame_client_decode(). */
#define FRAME_OK        0
#define FRAME_NEED_MORE 1
#define FRAME_ERROR     (-1)

struct frame_info {
	size_t hdrlen; /* the packet starts at buf + hdrlen */
	size_t pktlen; /* bytes of packet to use (no padding) */
	size_t total; /* bytes the frame occupies in buf */
	/*
	 * frame_decode: the client asks for a quick ack of this packet.
	 * frame_client_decode: the frame is a quick-ack answer; confirm
	 * holds its value and pktlen is 0.
	 */
	int quickack;
	uint32_t confirm; /* the value as RPC_SIMPLE_ACK carries it */
};

/* The framing for an obfuscated2 tag (O2_TAG_*), or -1. */
int frame_kind_from_tag(uint32_t tag);

/*
 * Proxy: the next client-to-proxy frame at the start of buf[0..len).
 * FRAME_OK: fi describes it (for padded frames pktlen is the length
 * rounded down to a multiple of 4, total includes the padding).
 * FRAME_NEED_MORE: read more; fi->total is the whole frame's length when
 * the header is complete, else 0. FRAME_ERROR: the client breaks the
 * framing rules (empty packet, length over FRAME_MAX_PACKET or not a
 * multiple of 4, over-long abridged length, bit 30 set) and must be
 * closed. Any bytes are safe.
 */
int frame_decode(
    enum frame_kind, const uint8_t *buf, size_t len, struct frame_info *fi);

/*
 * Proxy: header of a proxy-to-client frame carrying pktlen bytes. Returns
 * the header length (1 or 4), or 0 if pktlen cannot be framed (abridged:
 * not a multiple of 4 or too long; zero or too long for any kind).
 * *padlen is the number of random bytes the caller must append after the
 * packet: 1..3 for padded (spec A.3.3), else 0.
 */
size_t frame_encode_header(
    enum frame_kind, size_t pktlen, uint8_t hdr[4], size_t *padlen);

/*
 * Proxy: the quick-ack answer for confirm, the 4 bytes of an
 * RPC_SIMPLE_ACK as they arrived (spec B.2.8, A.3.1, A.3.2).
 */
void frame_quickack(enum frame_kind, const uint8_t confirm[4], uint8_t out[4]);

/*
 * Proxy in middle mode: whether a whole client packet (framing removed)
 * is worth forwarding, spec A.3.4. 1 forward, 0 drop silently.
 */
int frame_packet_check(const uint8_t *pkt, size_t len);

/*
 * Client: header of a client-to-proxy frame, optionally asking for a
 * quick ack. Returns the header length (1 or 4), or 0 as
 * frame_encode_header(). *padlen is the number of random bytes to append:
 * 0..15 for padded (as tdlib), else 0.
 */
size_t frame_client_encode_header(enum frame_kind, size_t pktlen, int quickack,
    uint8_t hdr[4], size_t *padlen);

/*
 * Client: the next proxy-to-client frame, a packet or a quick-ack answer;
 * results as frame_decode(). Padded frames lose their padding modulo 4
 * (pktlen = length & ~3).
 */
int frame_client_decode(
    enum frame_kind, const uint8_t *buf, size_t len, struct frame_info *fi);

#endif
