/*
 * Middle-proxy (RPC) links, spec B.2: frame codec, CRCs, the link's two
 * AES-256-CBC chains and a plain snapshot of them (so the dcpool can hand a
 * built link to a worker), the nonce / key derivation / handshake that
 * build a link, and every message carried on it, for both ends (the proxy
 * and, for the fake middle proxy of the tests, the ME).
 *
 * Everything here works on caller-owned buffers; no I/O, no globals.
 * Builders return the number of bytes written, or 0 when the output does
 * not fit or an argument is invalid. Parsers return 0, or -1 when the
 * input is not that message (wrong type, wrong length); pointers they
 * return point into the input.
 */
#ifndef MTP_RPC_H
#define MTP_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crypto.h"

/* Message types, LE32 at offset 0 of a payload (spec C, B.2.4-B.2.8). */
#define RPC_NONCE           0x7acb87aaU /* B.2.4 */
#define RPC_HANDSHAKE       0x7682eef5U /* B.2.6 */
#define RPC_HANDSHAKE_ERROR 0x6a27bedaU /* B.2.6 */
#define RPC_PROXY_REQ       0x36cef1eeU /* B.2.7 */
#define RPC_PROXY_ANS       0x4403da0dU /* B.2.8 */
#define RPC_SIMPLE_ACK      0x3bac409bU /* B.2.8 */
#define RPC_CLOSE_EXT       0x5eb634a2U /* B.2.8 */
#define RPC_CLOSE_CONN      0x1fcf425dU /* B.2.8 */
#define RPC_PING            0x5730a2dfU /* B.2.8 */
#define RPC_PONG            0x8430eaa7U /* B.2.8 */
#define RPC_TL_PROXY_TAG    0xdb1e26aeU /* B.2.7, extra block */

/* B.2.2 framing. */
#define RPC_FRAME_HDR         8 /* LE32 total, i32 seq */
#define RPC_FRAME_OVERHEAD    12 /* header + LE32 CRC */
#define RPC_FRAME_MIN         16 /* smallest real frame (C) */
#define RPC_FILLER            4 /* `04 00 00 00`: a "frame" of 4 */
#define RPC_BLOCK             16 /* CBC block, padding boundary */
#define RPC_FRAME_MAX_DEFAULT (1U << 24) /* Py/Erl cap on total */
#define RPC_SEQ_NONCE         (-2)
#define RPC_SEQ_HANDSHAKE     (-1)
/* Room a frame of a len-byte payload needs, fillers included. */
#define RPC_FRAME_SPACE(len) ((len) + RPC_FRAME_OVERHEAD + 12)

/* B.2.4 */
#define RPC_NONCE_LEN      32
#define RPC_CRYPTO_AES     1 /* crypto schema */
#define RPC_NONCE_MAX_SKEW 30 /* seconds, C */
/* B.2.1: C accepts proxy secrets of 32..256 bytes. */
#define RPC_SECRET_MIN 32
#define RPC_SECRET_MAX 256
/* B.2.5: 86 + S for IPv4, 118 + S for IPv6. */
#define RPC_KDF_MAX (118 + RPC_SECRET_MAX)
/* B.2.6 */
#define RPC_HANDSHAKE_LEN       32
#define RPC_HANDSHAKE_ERROR_LEN 20
#define RPC_HANDSHAKE_CRC32C    0x800U /* flag: use CRC32C from seq 0 */
#define RPC_PID_LEN             12
/* B.2.7 */
#define RPC_PROXY_REQ_HDR     56 /* without an ad tag */
#define RPC_PROXY_REQ_HDR_TAG 84 /* with the 4 + 24 byte extra block */
#define RPC_AD_TAG_LEN        16
/* B.2.8 */
#define RPC_PROXY_ANS_HDR  16
#define RPC_SIMPLE_ACK_LEN 16
#define RPC_CLOSE_LEN      12 /* CLOSE_EXT, CLOSE_CONN */
#define RPC_PING_LEN       12 /* PING, PONG */

/* PROXY_REQ flags, B.2.7. */
#define RPC_FLAG_NOT_ENCRYPTED 0x00000002U
#define RPC_FLAG_HTTP_QUERY    0x00000004U
#define RPC_FLAG_HAS_AD_TAG    0x00000008U
#define RPC_FLAG_MAGIC         0x00001000U
#define RPC_FLAG_EXTMODE1      0x00010000U
#define RPC_FLAG_EXTMODE2      0x00020000U
#define RPC_FLAG_PAD           0x08000000U
#define RPC_FLAG_DROPPED       0x10000000U
#define RPC_FLAG_INTERMEDIATE  0x20000000U
#define RPC_FLAG_ABRIDGED      0x40000000U
#define RPC_FLAG_QUICKACK      0x80000000U

/* ---------------------------------------------------------------- CRCs */

/* zlib/IEEE CRC32 (zlib's crc32()) and Castagnoli CRC32C. */
uint32_t rpc_crc32(const uint8_t *, size_t);
uint32_t rpc_crc32c(const uint8_t *, size_t);
/* How rpc_crc32c computes: "sse4.2" (the CPU's instruction) or "table";
 * MTPROTOD_NO_SSE42 in the environment forces the table (tests). */
const char *rpc_crc32c_impl(void);

/* ---------------------------------------------------------------- frames */

/*
 * Writes one frame (no fillers): total, seq, payload, CRC. len must be a
 * multiple of 4; payload may overlap out (it is moved to out + 8). The CRC
 * is CRC32C when use_crc32c, whatever the seq. Returns 12 + len, or 0.
 */
size_t rpc_frame_encode(uint8_t *out, size_t cap, int32_t seq,
    const uint8_t *payload, size_t len, int use_crc32c);
/*
 * The zero-copy form: the payload is already at frame + 8; writes the
 * header and CRC around it. frame must have room for 12 + len bytes.
 */
size_t
rpc_frame_finish(uint8_t *frame, size_t len, int32_t seq, int use_crc32c);
/* Filler bytes (0, 4, 8 or 12) that bring a stream of n bytes to 16. */
size_t rpc_frame_pad_len(size_t n);
/*
 * Writes rpc_frame_pad_len(n) filler bytes at out, for a stream that has
 * n bytes so far. Returns their count, or -1 if cap is too small.
 */
int rpc_frame_pad(uint8_t *out, size_t cap, size_t n);

/* What a link expects from the next frame it receives. */
struct rpc_decoder {
	int32_t seq; /* sequence number of the next frame */
	int crc32c; /* frames with seq >= 0 carry CRC32C */
	size_t max_total; /* largest accepted total */
};

enum rpc_decode_status {
	RPC_DECODE_OK,
	RPC_DECODE_NEED_MORE,
	RPC_DECODE_ERROR
};

struct rpc_frame {
	const uint8_t *payload; /* into the input; type at offset 0 */
	size_t len; /* payload length, >= 4 */
	int32_t seq;
	/*
	 * Bytes of the input used: fillers plus the frame on OK, the
	 * fillers skipped on NEED_MORE (the caller may drop them).
	 */
	size_t consumed;
	const char *error; /* why, on ERROR */
};

/* A decoder for the first frame (seq -2, CRC32). */
void rpc_decoder_init(struct rpc_decoder *, int32_t seq, size_t max_total);
/*
 * Looks for one frame at the start of a plaintext stream, skipping any
 * number of fillers. On OK the decoder expects the next seq. Checks:
 * total a multiple of 4, 16..max_total, seq as expected, CRC. Every
 * ERROR is fatal for the link.
 */
enum rpc_decode_status rpc_frame_decode(
    struct rpc_decoder *, const uint8_t *buf, size_t len, struct rpc_frame *);

/* ---------------------------------------------------------------- link */

/*
 * A link's whole crypto and framing state, plain bytes of a fixed size:
 * what the dcpool sends a worker with the link's fd (MSG_LINK_GRANT).
 * The IVs are the last ciphertext block sent / received (the initial IV
 * before the first one), so a new CBC context continues each chain.
 */
struct rpc_link_keys {
	uint8_t enc_key[32]; /* proxy -> ME ("CLIENT" on a proxy) */
	uint8_t enc_iv[16];
	uint8_t dec_key[32]; /* ME -> proxy ("SERVER" on a proxy) */
	uint8_t dec_iv[16];
	int32_t seq_out; /* seq of the next frame sent */
	int32_t seq_in; /* seq of the next frame received */
	uint32_t crc32c; /* 1: frames from seq 0 use CRC32C */
	uint32_t reserved; /* 0; keeps the size free of padding */
};

/* A running link: the two CBC chains and the framing state. */
struct aescbc_key;
struct rpc_link {
	crypto_stream *enc;
	crypto_stream *dec;
	/* With AES-NI the sending chain runs here (aescbc.h), from
	 * keys.enc_iv, so that several links can encrypt side by side;
	 * else enc does. */
	struct aescbc_key *ek;
	struct rpc_link_keys keys; /* IVs and seq_out kept current */
	struct rpc_decoder rx; /* seq_in and crc32c live here */
};

/*
 * Starts (or, from a snapshot, continues) both chains. 0, or -1 on an
 * OpenSSL error (nothing allocated then). max_total bounds received frames.
 */
int rpc_link_restore(
    struct rpc_link *, const struct rpc_link_keys *, size_t max_total);
/* The snapshot that rpc_link_restore continues from. */
void rpc_link_capture(const struct rpc_link *, struct rpc_link_keys *);
void rpc_link_free(struct rpc_link *);
/* After the handshake answer: CRC32C from seq 0 on, both directions. */
void rpc_link_set_crc32c(struct rpc_link *, int on);
/*
 * Makes the payload already at frame + 8 into the bytes to send: header,
 * CRC (seq_out, which then advances), fillers to a multiple of 16, all
 * encrypted in place. cap must be at least RPC_FRAME_SPACE(len). Returns
 * the bytes to send, or 0 (len not a multiple of 4, no room, OpenSSL).
 */
size_t rpc_link_seal(struct rpc_link *, uint8_t *frame, size_t cap, size_t len);
/* rpc_link_seal in two steps: the frame around the payload at frame + 8
 * (header, CRC, fillers; seq_out advances), returned length as
 * rpc_link_seal's, and later, in the order they were framed, the
 * encryption of the bytes of one or more frames (a multiple of 16). */
size_t
rpc_link_frame(struct rpc_link *, uint8_t *frame, size_t cap, size_t len);
int rpc_link_encrypt(struct rpc_link *, uint8_t *buf, size_t len);
/* rpc_link_encrypt of several links at once (side by side with AES-NI);
 * one entry per link. 0, or -1 (OpenSSL: those links are broken). */
struct rpc_link_bytes {
	struct rpc_link *link;
	uint8_t *buf;
	size_t len;
};
int rpc_links_encrypt(struct rpc_link_bytes *, size_t n);
/* rpc_link_seal of a copy of payload. */
size_t rpc_link_encode(struct rpc_link *, uint8_t *out, size_t cap,
    const uint8_t *payload, size_t len);
/*
 * Decrypts received bytes in place; len must be a multiple of 16 (keep
 * the rest for later). 0 or -1.
 */
int rpc_link_decrypt(struct rpc_link *, uint8_t *buf, size_t len);
/* rpc_frame_decode on decrypted bytes, with the link's decoder. */
enum rpc_decode_status rpc_link_decode(
    struct rpc_link *, const uint8_t *buf, size_t len, struct rpc_frame *);

/* ---------------------------------------------------------------- nonce */

struct rpc_nonce {
	uint8_t key_selector[4]; /* the secret's first 4 bytes */
	uint32_t schema;
	uint32_t ts; /* Unix time of the sender */
	uint8_t nonce[16];
};

/*
 * RPC_NONCE payload (32 bytes), schema AES. The same layout answers it on
 * the ME side (with the ME's time and nonce_srv).
 */
size_t rpc_nonce_build(uint8_t *out, size_t cap, const uint8_t *secret,
    size_t secret_len, uint32_t ts, const uint8_t nonce[16]);
int rpc_nonce_parse(const uint8_t *, size_t, struct rpc_nonce *);
/*
 * The ME's answer: our key selector, schema AES, its time within max_skew
 * seconds of ours. 0, or -1 with *errstr saying why.
 */
int rpc_nonce_check(const struct rpc_nonce *answer, const uint8_t *secret,
    size_t secret_len, uint32_t our_ts, uint32_t max_skew, const char **errstr);

/* ---------------------------------------------------------------- keys */

/* Inputs of the key derivation, B.2.5; all as the proxy sees them. */
struct rpc_kdf_params {
	const uint8_t *nonce_srv; /* 16, the ME's */
	const uint8_t *nonce_clt; /* 16, the proxy's */
	uint32_t clt_ts; /* the proxy's nonce time */
	const struct sockaddr *me_addr; /* the ME's address and port */
	/* the proxy's public address (after NAT) and local port */
	const struct sockaddr *proxy_addr;
	const uint8_t *secret;
	size_t secret_len;
};

#define RPC_KDF_CLIENT 0 /* proxy -> ME keys */
#define RPC_KDF_SERVER 1 /* ME -> proxy keys */

/*
 * The byte string s of B.2.5 for purpose RPC_KDF_CLIENT or _SERVER.
 * Both addresses must be of one family (IPv4-mapped IPv6 counts as IPv4).
 * Returns its length (86 + S or 118 + S), or 0.
 */
size_t rpc_kdf_string(
    uint8_t *out, size_t cap, const struct rpc_kdf_params *, int purpose);
/* key = MD5(s[1:])[0:12] || SHA1(s), iv = MD5(s[2:]); len >= 2. */
void
rpc_kdf_key_iv(const uint8_t *s, size_t len, uint8_t key[32], uint8_t iv[16]);
/*
 * A new link's snapshot: both key/IV pairs, seq -1 both ways, CRC32.
 * me_side = 0 for the proxy; 1 for the ME end of the same link (the same
 * params, the directions swapped). 0 or -1.
 */
int rpc_link_keys_derive(
    struct rpc_link_keys *, const struct rpc_kdf_params *, int me_side);

/* ---------------------------------------------------------------- handshake */

/*
 * A 12-byte PID, B.2.6: IPv4 reversed (zero for IPv6), port LE16, pid
 * LE16, start time LE32. addr may be NULL (all zero: "any").
 */
void rpc_pid_make(uint8_t out[RPC_PID_LEN], const struct sockaddr *addr,
    uint16_t pid, uint32_t start_time);

struct rpc_handshake {
	uint32_t flags;
	uint8_t sender_pid[RPC_PID_LEN];
	uint8_t peer_pid[RPC_PID_LEN];
};

/* RPC_HANDSHAKE payload; on the ME side the answer (its PID as sender). */
size_t rpc_handshake_build(uint8_t *out, size_t cap, uint32_t flags,
    const uint8_t sender_pid[RPC_PID_LEN], const uint8_t peer_pid[RPC_PID_LEN]);
int rpc_handshake_parse(const uint8_t *, size_t, struct rpc_handshake *);
/*
 * The ME's answer to our handshake (flags, sender PID as sent): low 8 bits
 * of its flags 0, its peer PID our sender PID. *crc32c = 1 if both sides
 * asked for CRC32C. 0, or -1 with *errstr.
 */
int rpc_handshake_check(const struct rpc_handshake *answer, uint32_t our_flags,
    const uint8_t our_pid[RPC_PID_LEN], int *crc32c, const char **errstr);

struct rpc_handshake_error {
	int32_t code;
	uint8_t sender_pid[RPC_PID_LEN];
};

size_t rpc_handshake_error_build(uint8_t *out, size_t cap, int32_t code,
    const uint8_t sender_pid[RPC_PID_LEN]);
int rpc_handshake_error_parse(
    const uint8_t *, size_t, struct rpc_handshake_error *);

/* ---------------------------------------------------------------- messages */

/* The LE32 type of a payload, 0 if shorter than 4 bytes. */
uint32_t rpc_msg_type(const uint8_t *, size_t);

enum rpc_transport {
	RPC_TRANSPORT_ABRIDGED = 1, /* ef */
	RPC_TRANSPORT_INTERMEDIATE, /* ee */
	RPC_TRANSPORT_PADDED /* dd; PAD flag set as Py/Erl/telemt */
};

/*
 * PROXY_REQ flags for one client packet: MAGIC | EXTMODE2 | the transport,
 * HAS_AD_TAG, NOT_ENCRYPTED when the packet's auth_key_id (first 8 bytes)
 * is zero, QUICKACK.
 */
uint32_t rpc_proxy_req_flags(enum rpc_transport, int quickack, int has_ad_tag,
    const uint8_t *packet, size_t len);

/* RPC_PROXY_REQ, B.2.7. Addresses as IPv6 (IPv4 mapped), ports LE32. */
struct rpc_proxy_req {
	uint32_t flags;
	uint64_t conn_id;
	uint8_t client_ip[16];
	uint32_t client_port;
	uint8_t proxy_ip[16];
	uint32_t proxy_port;
	int has_ad_tag;
	uint8_t ad_tag[RPC_AD_TAG_LEN];
	const uint8_t *data; /* the client's packet */
	size_t len;
};

/*
 * The 56-byte header, or 84 with ad_tag (NULL: none). HAS_AD_TAG is set or
 * cleared to match ad_tag, HTTP_QUERY cleared. client and proxy are
 * AF_INET or AF_INET6. The packet follows the header.
 */
size_t rpc_proxy_req_header(uint8_t *out, size_t cap, uint32_t flags,
    uint64_t conn_id, const struct sockaddr *client,
    const struct sockaddr *proxy, const uint8_t *ad_tag);
/* Header and packet (len a multiple of 4). */
size_t
rpc_proxy_req_build(uint8_t *out, size_t cap, uint32_t flags, uint64_t conn_id,
    const struct sockaddr *client, const struct sockaddr *proxy,
    const uint8_t *ad_tag, const uint8_t *data, size_t len);
/*
 * ME side. With HAS_AD_TAG or HTTP_QUERY the extra block must fit (size a
 * multiple of 4); an ad tag is a TL_PROXY_TAG + TL string of 16 bytes at
 * its start.
 */
int rpc_proxy_req_parse(const uint8_t *, size_t, struct rpc_proxy_req *);
/* An address of a PROXY_REQ as a sockaddr (mapped IPv4 -> AF_INET). */
void rpc_addr_from_ip16(const uint8_t ip[16], uint32_t port,
    struct sockaddr_storage *ss, socklen_t *sslen);

struct rpc_proxy_ans {
	uint32_t flags;
	uint64_t conn_id;
	const uint8_t *data;
	size_t len;
};

int rpc_proxy_ans_parse(const uint8_t *, size_t, struct rpc_proxy_ans *);
/* ME side: header and data (len a multiple of 4). */
size_t rpc_proxy_ans_build(uint8_t *out, size_t cap, uint32_t flags,
    uint64_t conn_id, const uint8_t *data, size_t len);

/*
 * confirm is the LE32 value: send it big-endian to abridged clients,
 * little-endian to intermediate/padded ones (A.3).
 */
int rpc_simple_ack_parse(
    const uint8_t *, size_t, uint64_t *conn_id, uint32_t *confirm);
size_t rpc_simple_ack_build(
    uint8_t *out, size_t cap, uint64_t conn_id, uint32_t confirm);

int rpc_close_ext_parse(const uint8_t *, size_t, uint64_t *conn_id);
size_t rpc_close_ext_build(uint8_t *out, size_t cap, uint64_t conn_id);
int rpc_close_conn_parse(const uint8_t *, size_t, uint64_t *conn_id);
size_t rpc_close_conn_build(uint8_t *out, size_t cap, uint64_t conn_id);

int rpc_ping_parse(const uint8_t *, size_t, uint64_t *ping_id);
size_t rpc_ping_build(uint8_t *out, size_t cap, uint64_t ping_id);
int rpc_pong_parse(const uint8_t *, size_t, uint64_t *ping_id);
size_t rpc_pong_build(uint8_t *out, size_t cap, uint64_t ping_id);

#endif
