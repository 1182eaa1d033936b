#include "autoconf.h"

#include <netinet/in.h>

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
