#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "framing.h"
#include "o2.h"
#include "peer.h"
#include "tls.h"
#include "util.h"

/* ------------------------------------------------------------ buffers */

void
peer_buf_free(struct peer_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

uint8_t *
peer_buf_reserve(struct peer_buf *b, size_t n)
{
	if (b->off > 0 && (b->off == b->len || b->cap - b->len < n)) {
		/* Slide the live bytes down before growing. */
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (p == NULL)
			abort(); /* a test peer can only give up */
		b->p = p;
		b->cap = cap;
	}
	return b->p + b->len;
}

void
peer_buf_commit(struct peer_buf *b, size_t n)
{
	b->len += n;
}

void
peer_buf_append(struct peer_buf *b, const void *data, size_t n)
{
	if (n == 0)
		return;
	memcpy(peer_buf_reserve(b, n), data, n);
	b->len += n;
}

void
peer_buf_consume(struct peer_buf *b, size_t n)
{
	if (n > b->len - b->off)
		n = b->len - b->off;
	b->off += n;
	if (b->off == b->len)
		b->off = b->len = 0;
}

void
peer_buf_reset(struct peer_buf *b)
{
	b->off = b->len = 0;
}

/* ------------------------------------------------------------ payloads */

/* splitmix64: fast, and every seed gives a different stream. */
static uint64_t
prng_next(struct peer_prng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
peer_prng_init(struct peer_prng *r, uint64_t seed)
{
	memset(r, 0, sizeof(*r));
	r->state = seed;
}

void
peer_prng_fill(struct peer_prng *r, uint8_t *out, size_t len)
{
	while (len > 0 && r->nleft > 0) {
		*out++ = r->left[8 - r->nleft];
		r->nleft--;
		len--;
	}
	while (len >= 8) {
		uint64_t v = prng_next(r);
		memcpy(out, &v, 8);
		out += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t v = prng_next(r);
		memcpy(r->left, &v, 8);
		memcpy(out, r->left, len);
		r->nleft = 8 - len;
	}
}

size_t
peer_prng_check(struct peer_prng *r, const uint8_t *buf, size_t len)
{
	uint8_t tmp[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(tmp) ? len - done : sizeof(tmp);
		peer_prng_fill(r, tmp, n);
		if (memcmp(tmp, buf + done, n) != 0) {
			for (size_t i = 0; i < n; i++)
				if (tmp[i] != buf[done + i])
					return done + i + 1;
		}
		done += n;
	}
	return 0;
}

/* ------------------------------------------------------------ sockets */

int
peer_addr(const char *host, uint16_t port, struct sockaddr_storage *ss,
    socklen_t *len)
{
	return addr_from_ip_port(host, port, ss, len);
}

int
peer_listen(const char *host, uint16_t port, uint16_t *bound)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (peer_addr(host, port, &ss, &len) == -1) {
		errno = EINVAL;
		return -1;
	}
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, 4096) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*bound = ntohs(ss.ss_family == AF_INET
	        ? ((struct sockaddr_in *)&ss)->sin_port
	        : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

void
peer_tcp_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------ transports */

static const char *const proto_names[] = {
	[PEER_ABRIDGED] = "abridged",
	[PEER_INTERMEDIATE] = "intermediate",
	[PEER_SECURE] = "secure",
	[PEER_TLS] = "tls",
};

int
peer_proto_from_name(const char *name)
{
	for (size_t i = 0; i < nitems(proto_names); i++)
		if (strcmp(name, proto_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
peer_proto_name(enum peer_proto p)
{
	return (size_t)p < nitems(proto_names) ? proto_names[p] : "?";
}

const uint8_t peer_tls_ccs[6] = { 0x14, 0x03, 0x03, 0x00, 0x01, 0x01 };

int
peer_client_init(struct peer_client *c, enum peer_proto proto,
    const uint8_t secret[O2_SECRET_LEN], int16_t dc)
{
	uint32_t tag;

	memset(c, 0, sizeof(*c));
	switch (proto) {
	case PEER_ABRIDGED:
		tag = O2_TAG_ABRIDGED;
		break;
	case PEER_INTERMEDIATE:
		tag = O2_TAG_INTERMEDIATE;
		break;
	case PEER_SECURE:
	case PEER_TLS:
		tag = O2_TAG_PADDED; /* spec A.1.1, A.1.3 */
		break;
	default:
		return -1;
	}
	c->proto = proto;
	c->kind = frame_kind_from_tag(tag);
	memcpy(c->secret, secret, O2_SECRET_LEN);
	if (o2_connect(c->header, tag, dc, secret, NULL, &c->o2) == -1)
		return -1;
	tls_reader_init(&c->reader, TLS_READER_FROM_SERVER);
	return 0;
}

void
peer_client_free(struct peer_client *c)
{
	o2_session_free(&c->o2);
}

size_t
peer_client_hello(struct peer_client *c, uint8_t *out, size_t cap,
    const char *sni, uint32_t ts, size_t hello_len)
{
	size_t n =
	    tls_client_hello_build(out, cap, c->secret, sni, ts, hello_len);

	if (n >= TLS_RANDOM_OFF + TLS_RANDOM_LEN)
		memcpy(c->client_random, out + TLS_RANDOM_OFF, TLS_RANDOM_LEN);
	return n;
}

int
peer_client_server_hello(
    struct peer_client *c, const uint8_t *buf, size_t len, size_t *used)
{
	return tls_server_hello_check(
	    buf, len, c->client_random, c->secret, used);
}

int
peer_client_seal(struct peer_client *c, uint8_t *buf, size_t len)
{
	if (len == 0)
		return 0;
	return crypto_stream_apply(c->o2.enc, buf, buf, len);
}

void
peer_client_wrap(const uint8_t *buf, size_t len, struct peer_buf *out)
{
	while (len > 0) {
		size_t n =
		    len < PEER_TLS_RECORD_MAX ? len : PEER_TLS_RECORD_MAX;
		uint8_t *p = peer_buf_reserve(out, TLS_RECORD_HEADER_LEN + n);
		tls_record_header(p, n);
		memcpy(p + TLS_RECORD_HEADER_LEN, buf, n);
		peer_buf_commit(out, TLS_RECORD_HEADER_LEN + n);
		buf += n;
		len -= n;
	}
}

ssize_t
peer_client_open(struct peer_client *c, uint8_t *buf, size_t len)
{
	ssize_t n = (ssize_t)len;

	if (c->proto == PEER_TLS) {
		n = tls_reader_feed(&c->reader, buf, len);
		if (n < 0)
			return -1;
	}
	if (n > 0 && crypto_stream_apply(c->o2.dec, buf, buf, n) == -1)
		return -1;
	return n;
}

int
peer_client_frame(struct peer_client *c, const uint8_t *pkt, size_t pktlen,
    struct peer_buf *out)
{
	uint8_t hdr[4];
	size_t padlen, hl;

	hl = frame_client_encode_header(c->kind, pktlen, 0, hdr, &padlen);
	if (hl == 0)
		return -1;
	uint8_t *p = peer_buf_reserve(out, hl + pktlen + padlen);
	memcpy(p, hdr, hl);
	memcpy(p + hl, pkt, pktlen);
	if (padlen)
		random_bytes(p + hl + pktlen, padlen);
	peer_buf_commit(out, hl + pktlen + padlen);
	return 0;
}

/* ------------------------------------------------------------ MTProto */

/* Offsets of an unencrypted MTProto message, spec A.3.4. */
#define MSG_AUTH_KEY_ID 0
#define MSG_ID          8
#define MSG_LENGTH      16
#define MSG_BODY        20
#define MSG_NONCE       24

/* resPQ body after the constructor and nonce (MTProto auth docs). */
#define RESPQ_SERVER_NONCE 40
#define RESPQ_PQ           56 /* TL string: 1 length byte, 8, pad 3 */
#define RESPQ_VECTOR       68
#define RESPQ_COUNT        72
#define RESPQ_FINGERPRINT  76
#define RESPQ_BODY_LEN     (PEER_RES_PQ_LEN - MSG_BODY)

/* The pq of the MTProto documentation's example exchange. */
static const uint8_t respq_pq[8] = { 0x17, 0xed, 0x48, 0x94, 0x1a, 0x08, 0xf9,
	0x81 };
/* A server public key fingerprint as DCs send them (LE64). */
static const uint8_t respq_fingerprint[8] = { 0x21, 0x6b, 0xe8, 0x6c, 0x02,
	0x2b, 0xb4, 0xc3 };

/* An MTProto msg_id: Unix time << 32, low bits as mod4 wants. */
static void
put_msg_id(uint8_t *p, unsigned mod4)
{
	uint32_t lo;

	random_bytes(&lo, sizeof(lo));
	lo = (lo & ~3u) | mod4;
	put_le32(p, lo);
	put_le32(p + 4, (uint32_t)now_unix());
}

static int
is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

void
peer_req_pq(uint8_t out[PEER_REQ_PQ_LEN], const uint8_t nonce[PEER_NONCE_LEN])
{
	memset(out, 0, PEER_REQ_PQ_LEN);
	put_msg_id(out + MSG_ID, 0); /* client ids are 0 mod 4 */
	put_le32(out + MSG_LENGTH, PEER_REQ_PQ_LEN - MSG_BODY);
	put_le32(out + MSG_BODY, PEER_REQ_PQ_MULTI);
	memcpy(out + MSG_NONCE, nonce, PEER_NONCE_LEN);
}

int
peer_is_req_pq(const uint8_t *pkt, size_t len, uint8_t nonce[PEER_NONCE_LEN])
{
	if (len < PEER_REQ_PQ_LEN || !is_zero(pkt + MSG_AUTH_KEY_ID, 8))
		return 0;
	uint32_t mlen = get_le32(pkt + MSG_LENGTH);
	if (mlen < PEER_REQ_PQ_LEN - MSG_BODY || mlen > len - MSG_BODY ||
	    get_le32(pkt + MSG_BODY) != PEER_REQ_PQ_MULTI)
		return 0;
	memcpy(nonce, pkt + MSG_NONCE, PEER_NONCE_LEN);
	return 1;
}

void
peer_res_pq(uint8_t out[PEER_RES_PQ_LEN], const uint8_t nonce[PEER_NONCE_LEN])
{
	memset(out, 0, PEER_RES_PQ_LEN);
	put_msg_id(out + MSG_ID, 1); /* server answers are 1 mod 4 */
	put_le32(out + MSG_LENGTH, RESPQ_BODY_LEN);
	put_le32(out + MSG_BODY, PEER_RES_PQ);
	memcpy(out + MSG_NONCE, nonce, PEER_NONCE_LEN);
	random_bytes(out + RESPQ_SERVER_NONCE, PEER_NONCE_LEN);
	out[RESPQ_PQ] = sizeof(respq_pq);
	memcpy(out + RESPQ_PQ + 1, respq_pq, sizeof(respq_pq));
	put_le32(out + RESPQ_VECTOR, PEER_VECTOR);
	put_le32(out + RESPQ_COUNT, 1);
	memcpy(out + RESPQ_FINGERPRINT, respq_fingerprint,
	    sizeof(respq_fingerprint));
}

int
peer_is_res_pq(
    const uint8_t *pkt, size_t len, const uint8_t nonce[PEER_NONCE_LEN])
{
	if (len < PEER_RES_PQ_LEN || !is_zero(pkt + MSG_AUTH_KEY_ID, 8))
		return 0;
	return get_le32(pkt + MSG_LENGTH) == RESPQ_BODY_LEN &&
	    (get_le32(pkt + MSG_ID) & 3) == 1 &&
	    get_le32(pkt + MSG_BODY) == PEER_RES_PQ &&
	    memcmp(pkt + MSG_NONCE, nonce, PEER_NONCE_LEN) == 0 &&
	    pkt[RESPQ_PQ] == sizeof(respq_pq) &&
	    get_le32(pkt + RESPQ_VECTOR) == PEER_VECTOR &&
	    get_le32(pkt + RESPQ_COUNT) == 1;
}

/* ------------------------------------------------------------ misc */

const char *
peer_hex(const uint8_t *buf, size_t len, size_t max)
{
	static char out[2 * 256 + 1];

	if (max > 256)
		max = 256;
	if (len > max)
		len = max;
	hex_encode(buf, len, out);
	return out;
}

double
peer_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
