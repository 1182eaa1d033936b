/*
 * Fuzz target for common/proxyproto.c's parser: the first bytes a load
 * balancer (or anyone who can reach a proxy_protocol listener) sends.
 * Nothing may crash or read out of bounds; a header is decided exactly at
 * its last byte (every shorter prefix needs more); what it names is a
 * whole IPv4 or IPv6 address.
 */
#include "autoconf.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h, h2;
	int n, m;

	for (unsigned v = PROXY_V1; v <= (PROXY_V1 | PROXY_V2); v++) {
		n = proxy_parse(data, size, v, &h);
		check(n >= -1 && n <= (int)size && n <= PROXY_HDR_MAX);
		if (n <= 0)
			continue;
		check(h.version == 1 || h.version == 2);
		check((h.version == 1 && (v & PROXY_V1)) ||
		    (h.version == 2 && (v & PROXY_V2)));
		if (h.has_addr) {
			check(h.src.ss_family == h.dst.ss_family);
			check((h.src.ss_family == AF_INET &&
			          h.srclen == sizeof(struct sockaddr_in)) ||
			    (h.src.ss_family == AF_INET6 &&
			        h.srclen == sizeof(struct sockaddr_in6)));
		}
		/* One byte less: more needed; the header alone: the same. */
		check(proxy_parse(data, (size_t)n - 1, v, &h2) == 0);
		m = proxy_parse(data, (size_t)n, v, &h2);
		check(m == n && h2.has_addr == h.has_addr);
	}
	return 0;
}
