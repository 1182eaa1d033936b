/*
 * Finding the public address (issue 13), the pure parts: the STUN
 * binding request and the parsing of its answer (RFC 8489; RFC 5389 and
 * RFC 3489 servers answer the same request), the text answer of a "what
 * is my IP" URL, and the vote that takes an address only when the
 * sources agree. dcpool/pubaddr.c does the I/O.
 */
#ifndef MTP_DISCOVER_H
#define MTP_DISCOVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define STUN_HEADER_LEN          20
#define STUN_TXID_LEN            12
#define STUN_MAGIC_COOKIE        0x2112A442u
#define STUN_BINDING_REQUEST     0x0001
#define STUN_BINDING_SUCCESS     0x0101
#define STUN_ATTR_MAPPED         0x0001
#define STUN_ATTR_XOR_MAPPED     0x0020
#define STUN_ATTR_XOR_MAPPED_OLD 0x8020 /* before RFC 5389 was final */
/* Answers with more than this are not a binding answer we can use. */
#define STUN_MESSAGE_MAX 1280

/* A binding request without attributes: STUN_HEADER_LEN bytes. */
void stun_binding_request(
    uint8_t out[STUN_HEADER_LEN], const uint8_t txid[STUN_TXID_LEN]);

/*
 * A binding success answer to txid: 0 and the mapped address (port
 * included) in *out, from XOR-MAPPED-ADDRESS when present, else
 * MAPPED-ADDRESS. -1 and why when it is not such an answer (another
 * transaction, an error answer, malformed, no usable address).
 */
int stun_binding_parse(const uint8_t *msg, size_t len,
    const uint8_t txid[STUN_TXID_LEN], struct sockaddr_storage *out,
    const char **why);

/*
 * The body of a "what is my IP" answer: one IPv4 or IPv6 literal with
 * optional white space around it. 0 and the address as text (and its
 * family), or -1.
 */
int myip_parse(
    const uint8_t *body, size_t len, char out[INET6_ADDRSTRLEN], int *family);

/* One answer of one source. */
struct discover_answer {
	const char *source; /* "stun HOST:PORT" or the URL */
	char addr[INET6_ADDRSTRLEN];
};

/*
 * The address n answers (of one family) agree on: a source whose
 * answers differ is ignored; with two or more sources, the address
 * that most sources give, given by at least two and by more sources
 * than any other; with one source, its address when it gave it twice.
 * 0 with the address in out and the sources that gave it in from
 * ("stun a:1, https://b"), or -1 and why in from.
 */
int discover_vote(const struct discover_answer *, size_t n,
    char out[INET6_ADDRSTRLEN], char *from, size_t fromcap);

/*
 * What is known of the public address, as the dcpool tells the
 * supervisor (MSG_PUBADDR) and keeps in state_dir. All strings are
 * NUL-terminated.
 */
struct pubaddr_state {
	char v4[INET6_ADDRSTRLEN]; /* "" = unknown */
	char v6[INET6_ADDRSTRLEN];
	char from4[256]; /* "config", "cache", or the sources that agreed */
	char from6[256];
	char why[512]; /* why v4 or v6 is unknown, when it is */
	int64_t when; /* Unix time the last one was found */
	uint32_t rounds; /* discovery rounds done */
};

/* The name of the copy in state_dir. */
#define PUBADDR_CACHE "public-address"

/*
 * The cache file's text ("ipv4 ADDR\nipv6 ADDR\nwhen N\n", a line per
 * known one) into out (cap >= 256): its length.
 */
size_t pubaddr_format(const struct pubaddr_state *, char *out, size_t cap);
/* The reverse, from = "cache": 0, or -1 if malformed. */
int pubaddr_parse(const uint8_t *text, size_t len, struct pubaddr_state *);

#endif
