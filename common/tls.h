/*
 * Fake TLS (spec A.4): the ClientHello a Telegram app opens with, its HMAC
 * check, the ServerHello the proxy answers with, and the record layer that
 * wraps the obfuscated2 stream afterwards. Also the client side of the
 * same, for the test client and the benchmarks.
 *
 * All functions work on caller buffers and keep no state between calls
 * (beyond an OpenSSL HMAC method fetched once), so they can be unit-tested
 * and fuzzed directly.
 */
#ifndef MTP_TLS_H
#define MTP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Record layer, spec A.4.1, A.4.7, C. */
#define TLS_RECORD_HEADER_LEN 5
/* We send at most the TLS plaintext limit, accept up to 2^14 + 256. */
#define TLS_RECORD_MAX_PAYLOAD 16384
#define TLS_RECORD_MAX_CIPHER  16640

/* ClientHello fields, spec A.4.2, A.4.3. */
#define TLS_RANDOM_OFF     11
#define TLS_RANDOM_LEN     32
#define TLS_SESSION_ID_MAX 32
#define TLS_SNI_MAX        255
#define TLS_SECRET_LEN     16
#define TLS_HMAC_CHECK_LEN 28 /* random XOR HMAC: zero bytes */

/*
 * Joined ClientHello: one record header and a handshake message of at most
 * TLS_RECORD_MAX_PAYLOAD bytes. On the wire it may come in up to
 * TLS_HELLO_MAX_FRAGMENTS handshake records, so a caller that buffers
 * TLS_HELLO_WIRE_MAX bytes always gets a decision from tls_hello_assemble.
 */
#define TLS_HELLO_MAX           (TLS_RECORD_HEADER_LEN + TLS_RECORD_MAX_PAYLOAD)
#define TLS_HELLO_MAX_FRAGMENTS 64
#define TLS_HELLO_WIRE_MAX \
	(TLS_RECORD_MAX_PAYLOAD + \
	    TLS_HELLO_MAX_FRAGMENTS * TLS_RECORD_HEADER_LEN)

/* The classic tdlib ClientHello length, spec A.4.1. */
#define TLS_HELLO_CLASSIC_LEN 517
/* The site profiler's ClientHello, with an X25519MLKEM768 key share. */
#define TLS_HELLO_PQ_LEN    1600
#define TLS_MLKEM768_EK_LEN 1184

/* TLS 1.3 cipher suites a ServerHello may echo, spec A.4.5, C. */
#define TLS_SUITE_13_FIRST 0x1301 /* TLS_AES_128_GCM_SHA256 */
#define TLS_SUITE_13_LAST  0x1303 /* TLS_CHACHA20_POLY1305_... */

/* tls_hello_assemble results. */
#define TLS_HELLO_OK        0
#define TLS_HELLO_NEED_MORE 1
#define TLS_HELLO_NOT_TLS   2 /* not a TLS handshake record */
#define TLS_HELLO_BAD       3 /* TLS-looking but unusable */

/*
 * Find a complete ClientHello in the first len bytes a client sent (all of
 * them, from the start of the connection, each call). The handshake message
 * may be split over several handshake records (`16 03 01` or `16 03 03`,
 * all with the first record's version, each 1..16384 bytes, at most
 * TLS_HELLO_MAX_FRAGMENTS); the last record must end where the message
 * ends.
 * TLS_HELLO_OK: joined holds the single-record form over which the HMAC is
 * computed (spec A.4.3): the first record's 3 header bytes, BE16 message
 * length, message; for a hello sent as one record this is the record
 * itself. *joined_len is its length, *consumed the wire bytes it took
 * (bytes after that are the caller's business).
 * TLS_HELLO_NEED_MORE: nothing wrong yet, call again with more bytes.
 * TLS_HELLO_NOT_TLS: decided from the first 3 bytes (one is enough for a
 * first byte other than 0x16).
 * TLS_HELLO_BAD: any other record type or version, an empty or oversized
 * record or message, not a ClientHello, too many fragments, extra bytes in
 * the last record, or joined_cap too small (TLS_HELLO_MAX always fits).
 * joined_len and consumed are set only on TLS_HELLO_OK.
 */
int tls_hello_assemble(const uint8_t *buf, size_t len, uint8_t *joined,
    size_t joined_cap, size_t *joined_len, size_t *consumed);

/* What the proxy needs from a ClientHello (spec A.4.2). */
struct tls_hello {
	/* As received, the timestamp XOR included. */
	uint8_t random[TLS_RANDOM_LEN];
	uint8_t session_id[TLS_SESSION_ID_MAX];
	uint8_t session_id_len; /* 0..32 */
	int has_sni;
	char sni[TLS_SNI_MAX + 1]; /* "" without SNI */
	/* First of 0x1301..0x1303 in the client's list; 0 if none. */
	uint16_t cipher_suite;
	uint8_t suites13; /* bit n: 0x1301 + n offered */
	int tls13; /* supported_versions has 0x0304 */
};

/*
 * Parse a joined ClientHello (as tls_hello_assemble makes it; len is the
 * whole record). Every length must fit exactly; at most one SNI extension
 * with at most one host_name (1..255 bytes, no NUL); at most one
 * supported_versions. Returns 0, or -1 on anything malformed (out is then
 * zeroed).
 */
int tls_hello_parse(const uint8_t *rec, size_t len, struct tls_hello *out);

/*
 * The HMAC check of spec A.4.3 on a joined ClientHello, against each of
 * nsecrets secrets in order. Returns the index of the first secret that
 * matches and sets *ts to the embedded timestamp, or returns -1 (*ts
 * untouched). The 28-byte comparison is constant-time.
 */
int tls_hello_verify(const uint8_t *rec, size_t len,
    const uint8_t (*secrets)[TLS_SECRET_LEN], size_t nsecrets, uint32_t *ts);

/*
 * Spec A.4.4: 1 if now - max_past <= ts <= now + max_future, else 0.
 * mtprotod's defaults are 600 and 120.
 */
int tls_timestamp_ok(uint32_t ts, int64_t now, int max_past, int max_future);

/* Length of the ServerHello flight for ch and cert_len; 0 if invalid. */
size_t tls_server_hello_len(const struct tls_hello *ch, size_t cert_len);

/*
 * Build the proxy's answer to ch (spec A.4.5, A.4.6): a ServerHello record
 * echoing the client's session id, the CCS record and one application-data
 * record of cert_len (1..16384) bytes; server random =
 * HMAC(secret, client random || answer with a zero random).
 * The cipher suite is ch->cipher_suite, or 0x1301 when the client offered
 * no TLS 1.3 suite (the app checks only the HMAC; a caller that wants C's
 * strictness rejects cipher_suite == 0 first). key_share: 32 bytes, or
 * NULL for a fresh X25519 public key. cert: cert_len bytes, or NULL for
 * random bytes. supported_versions_first puts that extension before
 * key_share. Returns the length written (tls_server_hello_len), or 0 if
 * cap is too small, cert_len is out of range or OpenSSL fails.
 */
size_t
tls_server_hello_build(uint8_t *out, size_t cap, const struct tls_hello *ch,
    const uint8_t secret[TLS_SECRET_LEN], const uint8_t *key_share,
    const uint8_t *cert, size_t cert_len, int supported_versions_first);

/*
 * The shape of the answer, learned from the fronted site (issue 9): the
 * cipher it picks (used when the client offered it), its key-share group
 * and length, its ServerHello extensions in order (key_share and
 * supported_versions; others are not copied), and its encrypted flight:
 * the total payload of its application-data records and their spread
 * over a few connections.
 */
#define TLS_SHAPE_EXT_MAX        8
#define TLS_SHAPE_DEFAULT_FLIGHT 3900
#define TLS_SHAPE_NOISE          8 /* our own variation, at least */
#define TLS_GROUP_SECP256R1      0x0017
#define TLS_GROUP_SECP384R1      0x0018
#define TLS_GROUP_X25519         0x001d
#define TLS_GROUP_X25519MLKEM768 0x11ec
#define TLS_MLKEM768_CT_LEN      1088
struct tls_shape {
	uint16_t cipher; /* 0: the client's first TLS 1.3 suite */
	uint16_t group;
	uint16_t ks_len;
	uint16_t ext[TLS_SHAPE_EXT_MAX]; /* 0x0033 and 0x002b, in order */
	uint8_t next;
	uint32_t flight; /* bytes of the one application-data record */
	uint32_t spread; /* max - min of the site's flights */
	/* The site's own answer time (its ServerHello's delay after our
	 * ClientHello, less one connect round trip), microseconds. */
	uint32_t answer_us;
};
/* When nothing is learned (yet): documented in mtprotod.conf(5). */
extern const struct tls_shape tls_shape_default;

/* The answer's length for this client, shape and record length; 0 if
 * they cannot be used. */
size_t tls_shaped_hello_len(
    const struct tls_hello *ch, const struct tls_shape *, size_t app_len);
/* The suite we answer with: the site's when ch offered it. */
uint16_t tls_shape_cipher(const struct tls_hello *ch, const struct tls_shape *);
/*
 * As tls_server_hello_build, shaped: the cipher (tls_shape_cipher), the
 * extensions in the shape's order, a key share of its group and length
 * (a real X25519 or EC key; for X25519MLKEM768 random bytes shaped like
 * the ML-KEM ciphertext, then a real X25519 key), then CCS and one
 * application-data record of app_len random bytes. Returns the length
 * written, or 0.
 */
size_t tls_shaped_hello_build(uint8_t *out, size_t cap,
    const struct tls_hello *ch, const uint8_t secret[TLS_SECRET_LEN],
    const struct tls_shape *, size_t app_len);
/* The record length to send: the shape's flight, varied a little. */
size_t tls_shape_app_len(const struct tls_shape *);

/*
 * A shape as text, for state_dir ("cipher N\ngroup N\nks_len N\nflight N
 * \nspread N\next N N\n"): its length. And back: 0, or -1 when
 * malformed or not usable (an extension other than 43 or 51, a flight
 * outside 1..16384).
 */
size_t tls_shape_format(const struct tls_shape *, char *out, size_t cap);
int tls_shape_parse(const char *text, struct tls_shape *out);

/* What a server answered a ClientHello with (the site profile). */
struct tls_flight {
	size_t legacy_version;
	uint16_t version; /* supported_versions, else legacy */
	uint16_t cipher;
	uint16_t group; /* 0: no key_share */
	uint16_t ks_len;
	uint16_t ext[TLS_SHAPE_EXT_MAX];
	uint8_t next;
	uint8_t sid_len;
	int hrr; /* a HelloRetryRequest */
	int ccs;
	unsigned app_records;
	uint32_t app_bytes; /* payload of the application-data records */
	unsigned extra_handshake; /* plaintext handshake records (TLS 1.2) */
	uint8_t records[16]; /* content types, in order */
	size_t nrecords;
	size_t consumed;
};
/*
 * The server's first flight at the start of p: a ServerHello record,
 * then whatever whole records followed. 1 (out filled), 0 if the
 * ServerHello is not whole yet, -2 for an alert, -1 if malformed.
 */
int tls_flight_parse(const uint8_t *p, size_t len, struct tls_flight *out);

/* A random length in [min, max] (clamped to 1..16384; max < min: min). */
size_t tls_cert_len_pick(int min, int max);

/*
 * Incremental reader of the record stream after the handshake (spec
 * A.4.7). From the client: one optional CCS `14 03 03 00 01 01` before the
 * first data record, then only `17 03 03` records of 1..16640 bytes. From
 * the server (proxy to client, for the client side): only `17 03 03`
 * records. Records and headers may be split anywhere across feeds.
 */
struct tls_reader {
	uint8_t hdr[TLS_RECORD_HEADER_LEN]; /* partial */
	uint8_t hdr_len;
	uint8_t flags; /* direction and private bits */
	uint16_t left; /* bytes due in this record */
};

#define TLS_READER_FROM_CLIENT 0
#define TLS_READER_FROM_SERVER 1

void tls_reader_init(struct tls_reader *, int direction);

/*
 * Consume len wire bytes in buf: the payload bytes are moved to the front
 * of buf. Returns their number (<= len, may be 0), or -1 on a protocol
 * error; after an error every call returns -1.
 */
ssize_t tls_reader_feed(struct tls_reader *, uint8_t *buf, size_t len);

/* 1 if the reader stands between records (a clean place for EOF). */
int tls_reader_at_boundary(const struct tls_reader *);

/* `17 03 03 BE16(payload_len)`; payload_len <= TLS_RECORD_MAX_PAYLOAD. */
void tls_record_header(uint8_t hdr[TLS_RECORD_HEADER_LEN], size_t payload_len);

/*
 * Client side: a ClientHello shaped like the classic tdlib one (GREASE,
 * suites 1301..1303 first, SNI if sni is non-NULL and non-empty, a real
 * X25519 key share, supported_versions with 1.3) padded with a padding
 * extension to exactly target_len bytes, carrying HMAC and ts as spec A.4.3
 * says. The client random is then out[TLS_RANDOM_OFF..+32). Returns
 * target_len, or 0 if cap < target_len, target_len is too small for the
 * fixed part or above TLS_HELLO_MAX, sni is longer than 255 bytes, or
 * OpenSSL fails.
 */
size_t tls_client_hello_build(uint8_t *out, size_t cap,
    const uint8_t secret[TLS_SECRET_LEN], const char *sni, uint32_t ts,
    size_t target_len);
/*
 * The same with what the apps now offer too: X25519MLKEM768 first in
 * supported_groups, and its key share (a well-formed random ML-KEM-768
 * encapsulation key and an X25519 key, 1216 bytes) before the X25519
 * one. target_len must leave room for it (TLS_HELLO_PQ_LEN does).
 */
size_t tls_client_hello_build_pq(uint8_t *out, size_t cap,
    const uint8_t secret[TLS_SECRET_LEN], const char *sni, uint32_t ts,
    size_t target_len);

/*
 * Client side: check the proxy's answer (spec A.4.5, A.4.6) at the start
 * of resp: a `16 03 03` record, `14 03 03 00 01 01`, a `17 03 03` record,
 * and the server random HMAC. Returns 1 with *resp_total = length of the
 * three records (the record stream follows), 0 if more bytes are needed,
 * -1 if malformed or the HMAC is wrong.
 */
int tls_server_hello_check(const uint8_t *resp, size_t len,
    const uint8_t client_random[TLS_RANDOM_LEN],
    const uint8_t secret[TLS_SECRET_LEN], size_t *resp_total);

#endif
