/*
 * Fuzz target for common/discover.c: a STUN answer (any datagram a
 * server, or anyone, sends to the dcpool's discovery socket), a "what is
 * my IP" body, and the cached address file (pubaddr_parse). Nothing may crash or read out of bounds, and a
 * parsed address must be a whole IPv4 or IPv6 one.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discover.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t txid[STUN_TXID_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9,
		10, 11, 12 };
	struct sockaddr_storage ss;
	const char *why = NULL;
	char text[INET6_ADDRSTRLEN];
	uint8_t *copy;
	int family;

	/* The test's transaction id, so the attribute parser is reached. */
	if ((copy = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	if (size >= STUN_HEADER_LEN)
		memcpy(copy + 8, txid, STUN_TXID_LEN);
	if (stun_binding_parse(copy, size, txid, &ss, &why) == 0) {
		if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
			abort();
	} else if (why == NULL)
		abort();
	free(copy);
	{
		struct pubaddr_state st;

		if (pubaddr_parse(data, size, &st) == 0 &&
		    (memchr(st.v4, 0, sizeof(st.v4)) == NULL ||
		        memchr(st.v6, 0, sizeof(st.v6)) == NULL ||
		        (st.v4[0] == 0 && st.v6[0] == 0)))
			abort();
	}
	if (myip_parse(data, size, text, &family) == 0 &&
	    (memchr(text, 0, sizeof(text)) == NULL ||
	        (family != AF_INET && family != AF_INET6)))
		abort();
	return 0;
}
