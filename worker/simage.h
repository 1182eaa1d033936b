/*
 * A session's image: everything a worker needs to take over a live
 * session from another worker (session handoff on reload and upgrade,
 * DESIGN.md "Reload"), apart from its descriptors, which travel beside
 * it (SCM_RIGHTS). session_image_encode/decode are the one pair of
 * functions that know the byte layout; handoff.c fills and applies the
 * image.
 *
 * Layout (host byte order: both ends run on the same host): "MTPS",
 * u32 version, then the fields in the order of struct session_image,
 * strings and byte runs as u32 length + bytes. A blob of another
 * version, truncated, or with bytes left over is refused whole, and the
 * sender then keeps the session (it drains as before handoff existed).
 */
#ifndef MTP_SIMAGE_H
#define MTP_SIMAGE_H

#include <stddef.h>
#include <stdint.h>

#define SESSION_IMAGE_MAGIC   "MTPS"
#define SESSION_IMAGE_VERSION 1
#define SESSION_IMAGE_NAME    64 /* CONFIG_NAME_MAX */
#define SESSION_IMAGE_ADDR    28 /* sockaddr_in6 */
#define SIMAGE_LINK_KEYS      112 /* sizeof(struct rpc_link_keys) */
#define LINK_IMAGE_MAGIC      "MTPL"

/* Where an AES-256-CTR stream stands (crypto_ctr_export). */
struct ctr_image {
	uint8_t present;
	uint8_t key[32];
	uint8_t ctr[16];
	uint32_t num;
};

/* One side of the relay: its half-close flags and the bytes read from
 * the other side that it has not taken yet. */
struct side_image {
	uint8_t eof, shut;
	const uint8_t *out; /* into the blob (decode) or the session */
	size_t outlen;
};

#define SIMAGE_TLS        0x01 /* fake-TLS client */
#define SIMAGE_HELLO_SENT 0x02

struct session_image {
	char listener[SESSION_IMAGE_NAME]; /* its listener's name */
	char user[SESSION_IMAGE_NAME]; /* its user's name */
	uint32_t mode; /* enum relay_mode */
	uint32_t flags; /* SIMAGE_* */
	int32_t dc;
	uint32_t tag;
	/* fake TLS: the client's record reader, our record count */
	uint8_t tls_hdr[5];
	uint8_t tls_hdr_len, tls_flags;
	uint16_t tls_left;
	uint32_t tls_out_records;
	struct ctr_image c_dec, s_enc, c_enc;
	uint8_t peer[SESSION_IMAGE_ADDR]; /* sockaddr, zero padded */
	uint8_t local[SESSION_IMAGE_ADDR];
	uint64_t idle_ms; /* since it last moved a byte */
	struct side_image c, s;
	/* middle mode */
	uint64_t conn_id;
	uint32_t link; /* id of its link in the handoff, or ~0 */
	uint32_t mflags; /* SIMAGE_M_* */
	uint64_t sent_mark; /* its last packet's end in the link output */
	const uint8_t *inbuf; /* a partial client frame */
	size_t inlen;
};

#define SIMAGE_M_HAD_LINK     0x01
#define SIMAGE_M_CONN_ID_DEAD 0x02

/*
 * A middle-proxy link's image ("MTPL", the same version): the CBC chains
 * and sequence numbers (rpc_link_capture), what was read and not yet
 * taken (the first rdec bytes decrypted), the sealed output not yet
 * written, and its output counters (clients' sent_mark refer to them).
 * The socket travels beside it.
 */
struct link_image {
	uint32_t id;
	int32_t dc;
	uint8_t keys[SIMAGE_LINK_KEYS]; /* struct rpc_link_keys */
	uint8_t me[SESSION_IMAGE_ADDR];
	const uint8_t *rbuf;
	size_t rlen;
	uint64_t rdec;
	const uint8_t *wq;
	size_t wqlen;
	uint64_t queued_total, written_total;
	uint32_t nclients; /* sessions that follow it */
	uint64_t rx_age_ms, ping_age_ms;
};

int link_image_encode(const struct link_image *, uint8_t **out, size_t *len);
int link_image_decode(const uint8_t *blob, size_t len, struct link_image *);

/*
 * The blob of an image (malloc'd; *len bytes). 0, or -1 when out of
 * memory or a field is out of range.
 */
int
session_image_encode(const struct session_image *, uint8_t **out, size_t *len);
/*
 * Reads a blob into an image whose byte runs point into blob (keep it
 * while the image is used). 0, or -1 when it is not a whole image of
 * this version.
 */
int
session_image_decode(const uint8_t *blob, size_t len, struct session_image *);

#endif
