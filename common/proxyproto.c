#include "autoconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

static const uint8_t sig[PROXY_V2_SIG_LEN] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
	0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* The IPv4 address of sa (also IPv4-mapped IPv6) and its port: 0, -1. */
static int
as_v4(const struct sockaddr *sa, uint8_t a[4], uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;

		memcpy(a, &s->sin_addr, 4);
		*port = s->sin_port;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;

		if (!IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
			return -1;
		memcpy(a, s->sin6_addr.s6_addr + 12, 4);
		*port = s->sin6_port;
		return 0;
	}
	return -1;
}

size_t
proxy_v2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst)
{
	uint8_t s4[4], d4[4];
	uint16_t sp, dp; /* network order */
	size_t len;

	if (cap < 16)
		return 0;
	memcpy(out, sig, sizeof(sig));
	out[12] = 0x21; /* version 2, PROXY */
	if (as_v4(src, s4, &sp) == 0 && as_v4(dst, d4, &dp) == 0) {
		len = 12;
		if (cap < 16 + len)
			return 0;
		out[13] = 0x11; /* TCP over IPv4 */
		memcpy(out + 16, s4, 4);
		memcpy(out + 20, d4, 4);
		memcpy(out + 24, &sp, 2);
		memcpy(out + 26, &dp, 2);
	} else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)src;
		const struct sockaddr_in6 *d = (const void *)dst;

		len = 36;
		if (cap < 16 + len)
			return 0;
		out[13] = 0x21; /* TCP over IPv6 */
		memcpy(out + 16, &s->sin6_addr, 16);
		memcpy(out + 32, &d->sin6_addr, 16);
		memcpy(out + 48, &s->sin6_port, 2);
		memcpy(out + 50, &d->sin6_port, 2);
	} else {
		len = 0;
		out[13] = 0x00; /* UNSPEC: no addresses */
	}
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	return 16 + len;
}

/* ------------------------------------------------------------ parsing */

static void
set_addr(struct sockaddr_storage *ss, socklen_t *len, int family,
    const void *ip, uint16_t port_be)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (void *)ss;

		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, ip, 4);
		a->sin_port = port_be;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (void *)ss;

		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, ip, 16);
		a->sin6_port = port_be;
		*len = sizeof(*a);
	}
}

/* A decimal port 0..65535, digits only, no leading zero but "0". */
static int
v1_port(const char *s, uint16_t *be)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v > 65535)
		return -1;
	*be = htons((uint16_t)v);
	return 0;
}

/* "PROXY TCP4 src dst sport dport\r\n" (or TCP6, or UNKNOWN ...). */
static int
parse_v1(const uint8_t *buf, size_t len, struct proxy_hdr *out)
{
	static const char pre[] = "PROXY ";
	char line[108], *tok[6], *save = NULL;
	uint8_t sip[16], dip[16];
	uint16_t sp, dp;
	size_t n, end, max;
	int family, ntok = 0;

	n = len < sizeof(pre) - 1 ? len : sizeof(pre) - 1;
	if (memcmp(buf, pre, n) != 0)
		return -1;
	/* At most 107 bytes with the CRLF (proxy-protocol.txt 2.1). */
	max = len < 107 ? len : 107;
	for (end = 0; end + 1 < max; end++)
		if (buf[end] == '\r' && buf[end + 1] == '\n')
			break;
	if (end + 1 >= max)
		return len >= 107 ? -1 : 0;
	memcpy(line, buf, end);
	line[end] = '\0';
	if (strlen(line) != end) /* a NUL inside */
		return -1;
	for (char *t = strtok_r(line, " ", &save); t != NULL;
	     t = strtok_r(NULL, " ", &save)) {
		if (ntok == 6 && strcmp(tok[1], "UNKNOWN") == 0)
			break; /* the rest of an UNKNOWN line is ignored */
		if (ntok == 6)
			return -1; /* more than a v1 line has */
		tok[ntok++] = t;
	}
	if (ntok < 2)
		return -1;
	memset(out, 0, sizeof(*out));
	out->version = 1;
	if (strcmp(tok[1], "UNKNOWN") == 0)
		return (int)end + 2; /* the rest of the line is ignored */
	if (ntok != 6)
		return -1;
	if (strcmp(tok[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(tok[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return -1;
	if (inet_pton(family, tok[2], sip) != 1 ||
	    inet_pton(family, tok[3], dip) != 1 || v1_port(tok[4], &sp) == -1 ||
	    v1_port(tok[5], &dp) == -1)
		return -1;
	set_addr(&out->src, &out->srclen, family, sip, sp);
	set_addr(&out->dst, &out->dstlen, family, dip, dp);
	out->has_addr = 1;
	return (int)end + 2;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct proxy_hdr *out)
{
	size_t n = len < sizeof(sig) ? len : sizeof(sig), total, alen;
	uint8_t cmd, fam;

	if (memcmp(buf, sig, n) != 0)
		return -1;
	if (len < 16)
		return 0;
	if ((buf[12] & 0xf0) != 0x20)
		return -1;
	cmd = buf[12] & 0x0f;
	fam = buf[13];
	alen = (size_t)buf[14] << 8 | buf[15];
	total = 16 + alen;
	if (cmd > 1 || total > PROXY_HDR_MAX)
		return -1;
	if (len < total)
		return 0;
	memset(out, 0, sizeof(*out));
	out->version = 2;
	if (cmd == 0 || fam == 0x00)
		return (int)total; /* LOCAL, or no addresses: ours stand */
	uint16_t sp, dp; /* network order, as on the wire */
	if (fam == 0x11 && alen >= 12) {
		memcpy(&sp, buf + 24, 2);
		memcpy(&dp, buf + 26, 2);
		set_addr(&out->src, &out->srclen, AF_INET, buf + 16, sp);
		set_addr(&out->dst, &out->dstlen, AF_INET, buf + 20, dp);
	} else if (fam == 0x21 && alen >= 36) {
		memcpy(&sp, buf + 48, 2);
		memcpy(&dp, buf + 50, 2);
		set_addr(&out->src, &out->srclen, AF_INET6, buf + 16, sp);
		set_addr(&out->dst, &out->dstlen, AF_INET6, buf + 32, dp);
	} else
		return -1; /* UDP, UNIX, or addresses cut short */
	out->has_addr = 1;
	return (int)total;
}

int
proxy_parse(
    const uint8_t *buf, size_t len, unsigned versions, struct proxy_hdr *out)
{
	if (len == 0)
		return 0;
	if (buf[0] == 'P' && (versions & PROXY_V1))
		return parse_v1(buf, len, out);
	if (buf[0] == sig[0] && (versions & PROXY_V2))
		return parse_v2(buf, len, out);
	return -1;
}
