/* Small helpers shared by every process: hex, fds, addresses, titles. */
#ifndef MTP_UTIL_H
#define MTP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Exactly 2*len hex digits (either case) -> len bytes; -1 if malformed. */
int hex_decode(const char *in, uint8_t *out, size_t len);

int fd_set_nonblock(int fd);
int fd_set_blocking(int fd);
int fd_clear_cloexec(int fd);
/*
 * A memfd (close-on-exec) holding n bytes of p, to pass a blob bigger
 * than a message to another process; -1 with errno on failure.
 */
int memfd_of(const char *name, const void *p, size_t n);
/*
 * The whole content of such a memfd (1 to max bytes), malloc'd, *n its
 * size; NULL when it cannot be read or is empty or larger than max.
 */
uint8_t *memfd_read(int fd, size_t max, size_t *n);
int fd_set_cloexec(int fd);

/* "1.2.3.4:443", "[::1]:443" or "host:443" with a numeric host. */
int addr_parse(const char *text, uint16_t default_port,
    struct sockaddr_storage *ss, socklen_t *len);
/* An address literal and a port. */
int addr_from_ip_port(
    const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);
/* "1.2.3.4:443" / "[::1]:443" into buf; returns buf. */
const char *addr_str(const struct sockaddr *sa, char *buf, size_t len);
#define ADDR_STRLEN 64

/* Little-endian integers on the wire (spec 0), at any alignment. */
static inline uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static inline uint64_t
get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static inline void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

/* Monotonic and wall clock, in micro- or milliseconds / seconds. */
uint64_t now_us(void);
uint64_t now_ms(void);
int64_t now_unix(void);

/* Cryptographically strong random bytes (OpenSSL); aborts on failure. */
void random_bytes(void *buf, size_t len);
/*
 * Randomness that needs no secrecy and is asked for per packet (padding
 * lengths and bytes that the client's cipher then covers, connection
 * ids on an encrypted link): a fast generator per process, seeded from
 * random_bytes(). RAND_bytes costs about 1 us a call, a padded answer
 * needed two.
 */
uint64_t cheap_rand64(void);
void cheap_rand_bytes(void *buf, size_t len);

/* Process title, as ps shows it ("mtprotod: worker 0"). */
void proctitle_init(int argc, char **argv);
void proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An address block ("10.0.0.0/8", "2001:db8::/32", or an address). */
struct cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned prefix; /* bits */
	uint8_t addr[16]; /* network byte order; host bits zero */
};
/* 0, or -1 when text is not an address with an optional /prefix. */
int cidr_parse(const char *text, struct cidr *);
/* 1 when sa (an IPv4-mapped IPv6 address counts as IPv4) is in one of
 * the n blocks. */
int cidr_match(const struct cidr *, size_t n, const struct sockaddr *sa);

/* Number of online CPUs, at least 1. */
int ncpus(void);

#endif
