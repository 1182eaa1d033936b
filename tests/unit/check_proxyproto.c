/* common/proxyproto.c: PROXY protocol v2 headers, byte for byte. */
#include "autoconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"
#include "util.h"

static struct sockaddr_storage
addr(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;

	ck_assert_int_eq(addr_from_ip_port(ip, port, &ss, &len), 0);
	return ss;
}

START_TEST(test_v4)
{
	/* HAProxy's proxy-protocol.txt 2.2: signature, 0x21, 0x11, BE16
	 * length 12, source and destination addresses, then ports. */
	static const uint8_t want[] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
		0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 192,
		0, 2, 7, 198, 51, 100, 1, 0xc3, 0x50, 0x01, 0xbb };
	struct sockaddr_storage s = addr("192.0.2.7", 50000);
	struct sockaddr_storage d = addr("198.51.100.1", 443);
	uint8_t out[PROXY_V2_MAX];

	ck_assert_uint_eq(proxy_v2_build(out, sizeof(out),
	                      (struct sockaddr *)&s, (struct sockaddr *)&d),
	    sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
	/* IPv4-mapped on a dual-stack listener: still TCP over IPv4. */
	s = addr("::ffff:192.0.2.7", 50000);
	d = addr("::ffff:198.51.100.1", 443);
	ck_assert_uint_eq(proxy_v2_build(out, sizeof(out),
	                      (struct sockaddr *)&s, (struct sockaddr *)&d),
	    sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
	/* Too short a buffer. */
	ck_assert_uint_eq(proxy_v2_build(out, 20, (struct sockaddr *)&s,
	                      (struct sockaddr *)&d),
	    0);
}
END_TEST

START_TEST(test_v6_and_unspec)
{
	struct sockaddr_storage s = addr("2001:db8::7", 50000);
	struct sockaddr_storage d = addr("2001:db8::1", 443);
	struct sockaddr_storage v4 = addr("192.0.2.7", 1);
	uint8_t out[PROXY_V2_MAX];
	struct in6_addr a;

	ck_assert_uint_eq(proxy_v2_build(out, sizeof(out),
	                      (struct sockaddr *)&s, (struct sockaddr *)&d),
	    16 + 36);
	ck_assert_uint_eq(out[12], 0x21);
	ck_assert_uint_eq(out[13], 0x21);
	ck_assert_uint_eq(out[14] << 8 | out[15], 36);
	inet_pton(AF_INET6, "2001:db8::7", &a);
	ck_assert_mem_eq(out + 16, &a, 16);
	inet_pton(AF_INET6, "2001:db8::1", &a);
	ck_assert_mem_eq(out + 32, &a, 16);
	ck_assert_uint_eq(out[48] << 8 | out[49], 50000);
	ck_assert_uint_eq(out[50] << 8 | out[51], 443);
	/* Mixed families: UNSPEC, no addresses. */
	ck_assert_uint_eq(proxy_v2_build(out, sizeof(out),
	                      (struct sockaddr *)&v4, (struct sockaddr *)&d),
	    16);
	ck_assert_uint_eq(out[13], 0x00);
	ck_assert_uint_eq(out[15], 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proxyproto");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_v4);
	tcase_add_test(tc, test_v6_and_unspec);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
