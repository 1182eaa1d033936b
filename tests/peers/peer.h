/*
 * Shared helpers for the test peers (fake_dc, tclient) and the
 * benchmarks: byte buffers, deterministic payloads, sockets, the client
 * side of every transport an app speaks (obfuscated2 with its three
 * framings, fake TLS around it) and the MTProto messages the fake DC
 * understands. Built on the codecs in common/ (o2.h, framing.h, tls.h),
 * never on copies of them, so the peers exercise the same code paths a
 * second time from the other side.
 */
#ifndef MTP_PEER_H
#define MTP_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "framing.h"
#include "o2.h"
#include "tls.h"

/* ------------------------------------------------------------ buffers */

/* A growable byte buffer; the data is p[off .. len). */
struct peer_buf {
	uint8_t *p;
	size_t off;
	size_t len;
	size_t cap;
};

void peer_buf_free(struct peer_buf *);
/* Room for n more bytes at the end; commit what was written. */
uint8_t *peer_buf_reserve(struct peer_buf *, size_t n);
void peer_buf_commit(struct peer_buf *, size_t n);
void peer_buf_append(struct peer_buf *, const void *, size_t);
void peer_buf_consume(struct peer_buf *, size_t n);
void peer_buf_reset(struct peer_buf *);
#define peer_buf_data(b) ((b)->p + (b)->off)
#define peer_buf_size(b) ((b)->len - (b)->off)

/* ------------------------------------------------------------ payloads */

/*
 * A deterministic byte stream from a seed, the same however it is cut
 * into pieces, so a receiver can regenerate what a sender sent and
 * compare byte for byte.
 */
struct peer_prng {
	uint64_t state;
	uint8_t left[8];
	unsigned nleft;
};

void peer_prng_init(struct peer_prng *, uint64_t seed);
void peer_prng_fill(struct peer_prng *, uint8_t *out, size_t len);
/* 0 if the next len bytes of the stream equal buf, else 1 + offset. */
size_t peer_prng_check(struct peer_prng *, const uint8_t *buf, size_t len);

/* The seed of fake_dc's "source" mode stream. */
#define PEER_SOURCE_SEED 0x736f75726365ull

/* ------------------------------------------------------------ sockets */

/*
 * A non-blocking listening socket (SO_REUSEADDR) on host:port; port 0
 * picks one. *bound gets the port. Returns the fd or -1 (errno set).
 */
int peer_listen(const char *host, uint16_t port, uint16_t *bound);
/* host (an address literal) and port into ss; -1 if malformed. */
int peer_addr(
    const char *host, uint16_t port, struct sockaddr_storage *, socklen_t *);
void peer_tcp_nodelay(int fd);

/* ------------------------------------------------------------ transports */

enum peer_proto {
	PEER_ABRIDGED, /* obfuscated2, tag ef (spec A.3.1) */
	PEER_INTERMEDIATE, /* obfuscated2, tag ee (spec A.3.2) */
	PEER_SECURE, /* obfuscated2, tag dd (spec A.3.3) */
	PEER_TLS, /* fake TLS, tag dd inside (spec A.4) */
};

/* "abridged" ... "tls"; -1 if unknown. */
int peer_proto_from_name(const char *);
const char *peer_proto_name(enum peer_proto);

/* tdlib's largest application-data payload, spec A.4.7. */
#define PEER_TLS_RECORD_MAX 2878

/*
 * The client end of one connection: what an app does, step by step.
 * Non-TLS: peer_client_init() makes the header, the caller sends it
 * (peer_client_header) and then peer_client_seal()ed data. TLS: the
 * caller sends peer_client_hello()'s ClientHello, feeds the answer to
 * peer_client_server_hello() until it returns 1, then sends the
 * ChangeCipherSpec and records made by peer_client_wrap(): the header
 * first, then sealed data.
 */
struct peer_client {
	enum peer_proto proto;
	enum frame_kind kind;
	uint8_t secret[O2_SECRET_LEN];
	uint8_t header[O2_HEADER_LEN]; /* as on the wire */
	struct o2_session o2;
	uint8_t client_random[TLS_RANDOM_LEN];
	struct tls_reader reader;
};

int peer_client_init(struct peer_client *, enum peer_proto,
    const uint8_t secret[O2_SECRET_LEN], int16_t dc);
void peer_client_free(struct peer_client *);

/*
 * TLS: the ClientHello for sni at time ts (the app's clock) of hello_len
 * bytes (517 for the classic one). Returns its length, 0 on failure.
 */
size_t peer_client_hello(struct peer_client *, uint8_t *out, size_t cap,
    const char *sni, uint32_t ts, size_t hello_len);

/*
 * TLS: check the server's answer so far (the first len bytes it sent).
 * 1: valid, *used = its length (record stream bytes may follow); 0: need
 * more; -1: not our ServerHello (wrong secret, fronted, garbage).
 */
int peer_client_server_hello(
    struct peer_client *, const uint8_t *buf, size_t len, size_t *used);

/* `14 03 03 00 01 01`, what an app sends after the ServerHello. */
extern const uint8_t peer_tls_ccs[6];

/* Encrypt len bytes to the proxy in place (client-to-proxy stream). */
int peer_client_seal(struct peer_client *, uint8_t *buf, size_t len);

/*
 * TLS: wrap len bytes (already sealed) into application-data records of
 * at most PEER_TLS_RECORD_MAX bytes, appended to out.
 */
void peer_client_wrap(const uint8_t *buf, size_t len, struct peer_buf *out);

/*
 * Received wire bytes after the handshake: TLS records are unwrapped
 * (TLS) and the payload decrypted; the plaintext is moved to the front of
 * buf. Returns its length, or -1 on a TLS record error.
 */
ssize_t peer_client_open(struct peer_client *, uint8_t *buf, size_t len);

/*
 * A client-to-proxy frame (spec A.3) for a packet of pktlen bytes, in
 * plaintext: header, packet, padding (secure: 0..15 random bytes, as
 * tdlib). Appended to out; returns 0, or -1 if the length cannot be
 * framed.
 */
int peer_client_frame(struct peer_client *, const uint8_t *pkt, size_t pktlen,
    struct peer_buf *out);

/* ------------------------------------------------------------ MTProto */

/* Unencrypted MTProto messages, spec A.3.4 (and the MTProto docs). */
#define PEER_REQ_PQ_MULTI 0xbe7e8ef1u
#define PEER_RES_PQ       0x05162463u
#define PEER_VECTOR       0x1cb5c415u
#define PEER_REQ_PQ_LEN   40 /* 8 + 8 + 4 + 4 + 16 */
#define PEER_RES_PQ_LEN   84 /* 20 + 64 */
#define PEER_NONCE_LEN    16

/* req_pq_multi with nonce, as an app opens a new auth key. */
void
peer_req_pq(uint8_t out[PEER_REQ_PQ_LEN], const uint8_t nonce[PEER_NONCE_LEN]);
/* 1 if pkt is a req_pq_multi; nonce then gets its nonce. */
int
peer_is_req_pq(const uint8_t *pkt, size_t len, uint8_t nonce[PEER_NONCE_LEN]);
/* A DC's resPQ answer to nonce. */
void
peer_res_pq(uint8_t out[PEER_RES_PQ_LEN], const uint8_t nonce[PEER_NONCE_LEN]);
/* 1 if pkt is a well-formed resPQ for nonce. */
int peer_is_res_pq(
    const uint8_t *pkt, size_t len, const uint8_t nonce[PEER_NONCE_LEN]);

/* ------------------------------------------------------------ misc */

/* Lower-case hex of at most max bytes of buf, in a static buffer. */
const char *peer_hex(const uint8_t *buf, size_t len, size_t max);
/* Seconds since an arbitrary start, as a double (for reports). */
double peer_now(void);

#endif
