/*
 * The cost of an access-list lookup (common/acl.c): load N random IPv4
 * blocks (and N/4 IPv6 ones), then time lookups of random addresses.
 * Prints numbers only; nothing passes or fails here.
 *
 *   tests/bench/aclbench [N]      (default 100000)
 */
#include "autoconf.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl.h"
#include "util.h"

static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	enum { LOOKUPS = 2000000 };
	struct acl a = { 0 };
	struct sockaddr_in6 *probes6;
	struct sockaddr_in *probes;
	double t0, t1;
	long hits = 0;

	if (n < 1)
		return 2;
	t0 = cpu_s();
	for (long i = 0; i < n + n / 4; i++) {
		struct cidr c = { 0 };
		uint8_t r[17];

		random_bytes(r, sizeof(r));
		c.family = i < n ? AF_INET : AF_INET6;
		c.prefix = i < n ? 16 + r[16] % 17 : 32 + r[16] % 97;
		memcpy(c.addr, r, i < n ? 4 : 16);
		for (unsigned bit = c.prefix; bit < (i < n ? 32u : 128u); bit++)
			c.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
		if (acl_add(&a, &c) == -1)
			return 1;
	}
	acl_finish(&a);
	t1 = cpu_s();
	printf("blocks=%ld ranges=%zu load_ms=%.1f\n", n + n / 4, acl_size(&a),
	    (t1 - t0) * 1e3);
	probes = calloc(4096, sizeof(*probes));
	probes6 = calloc(4096, sizeof(*probes6));
	if (probes == NULL || probes6 == NULL) {
		free(probes);
		free(probes6);
		return 1;
	}
	for (int i = 0; i < 4096; i++) {
		probes[i].sin_family = AF_INET;
		random_bytes(&probes[i].sin_addr, 4);
		probes6[i].sin6_family = AF_INET6;
		random_bytes(&probes6[i].sin6_addr, 16);
	}
	t0 = cpu_s();
	for (long i = 0; i < LOOKUPS; i++)
		hits += acl_match(&a, (struct sockaddr *)&probes[i & 4095]);
	t1 = cpu_s();
	printf("ipv4 lookups=%d hits=%ld ns_per_lookup=%.1f\n", LOOKUPS, hits,
	    (t1 - t0) * 1e9 / LOOKUPS);
	hits = 0;
	t0 = cpu_s();
	for (long i = 0; i < LOOKUPS; i++)
		hits += acl_match(&a, (struct sockaddr *)&probes6[i & 4095]);
	t1 = cpu_s();
	printf("ipv6 lookups=%d hits=%ld ns_per_lookup=%.1f\n", LOOKUPS, hits,
	    (t1 - t0) * 1e9 / LOOKUPS);
	acl_free(&a);
	free(probes);
	free(probes6);
	return 0;
}
