/* common/proxyproto.c: PROXY protocol v2 headers, byte for byte, and the
 * parser of v1 and v2 headers. */
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

static const char *
addr_text(const struct sockaddr_storage *ss)
{
	static char buf[ADDR_STRLEN];

	return addr_str((const struct sockaddr *)ss, buf, sizeof(buf));
}

START_TEST(test_parse_v1)
{
	static const char *const good =
	    "PROXY TCP4 192.0.2.7 198.51.100.1 50000 443\r\nHELLO";
	static const char *const good6 =
	    "PROXY TCP6 2001:db8::7 2001:db8::1 1 0\r\n";
	struct proxy_hdr h;
	size_t n = strlen(good) - 5;

	ck_assert_int_eq(
	    proxy_parse((const uint8_t *)good, strlen(good), PROXY_V1, &h),
	    (int)n);
	ck_assert_int_eq(h.version, 1);
	ck_assert_int_eq(h.has_addr, 1);
	ck_assert_str_eq(addr_text(&h.src), "192.0.2.7:50000");
	ck_assert_str_eq(addr_text(&h.dst), "198.51.100.1:443");
	/* Every prefix: more needed, never an error or a header. */
	for (size_t k = 0; k < n; k++)
		ck_assert_int_eq(
		    proxy_parse((const uint8_t *)good, k, PROXY_V1, &h), 0);
	ck_assert_int_eq(proxy_parse((const uint8_t *)good6, strlen(good6),
	                     PROXY_V1 | PROXY_V2, &h),
	    (int)strlen(good6));
	ck_assert_str_eq(addr_text(&h.src), "[2001:db8::7]:1");
	ck_assert_int_eq(
	    proxy_parse((const uint8_t *)"PROXY UNKNOWN whatever\r\n", 24,
	        PROXY_V1, &h),
	    24);
	ck_assert_int_eq(h.has_addr, 0);
	static const char *const unknown = "PROXY UNKNOWN a b c d e f g\r\n";
	ck_assert_int_eq(proxy_parse((const uint8_t *)unknown, strlen(unknown),
	                     PROXY_V1, &h),
	    (int)strlen(unknown));
	/* Refused: v1 not allowed, a family mismatch, bad ports, spaces,
	 * no CRLF within 107 bytes, garbage. */
	ck_assert_int_eq(
	    proxy_parse((const uint8_t *)good, strlen(good), PROXY_V2, &h), -1);
	static const char *const bad[] = {
		"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
		"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
		"PROXX TCP4",
		"GET / HTTP/1.1\r\n",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		ck_assert_msg(
		    proxy_parse((const uint8_t *)bad[k], strlen(bad[k]),
		        PROXY_V1 | PROXY_V2, &h) == -1,
		    "%s", bad[k]);
	char longline[200];
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "PROXY ", 6);
	ck_assert_int_eq(proxy_parse((const uint8_t *)longline,
	                     sizeof(longline), PROXY_V1, &h),
	    -1);
	/* A CR at byte 107 with no LF after it is no end of line (found by
	 * fuzz_proxyproto), nor is a CRLF that ends past 107 bytes. */
	longline[107] = '\r';
	ck_assert_int_eq(proxy_parse((const uint8_t *)longline,
	                     sizeof(longline), PROXY_V1, &h),
	    -1);
	longline[108] = '\n';
	ck_assert_int_eq(proxy_parse((const uint8_t *)longline,
	                     sizeof(longline), PROXY_V1, &h),
	    -1);
	memcpy(longline, "PROXY UNKNOWN ", 14);
	longline[105] = '\r';
	longline[106] = '\n';
	ck_assert_int_eq(proxy_parse((const uint8_t *)longline,
	                     sizeof(longline), PROXY_V1, &h),
	    107);
}
END_TEST

START_TEST(test_parse_v2)
{
	struct sockaddr_storage s = addr("192.0.2.7", 50000);
	struct sockaddr_storage d = addr("198.51.100.1", 443);
	uint8_t hdr[PROXY_V2_MAX + 8];
	struct proxy_hdr h;
	size_t n = proxy_v2_build(
	    hdr, sizeof(hdr), (struct sockaddr *)&s, (struct sockaddr *)&d);

	/* Our own builder's headers parse back, IPv4 and IPv6. */
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), (int)n);
	ck_assert_int_eq(h.version, 2);
	ck_assert_int_eq(h.has_addr, 1);
	ck_assert_str_eq(addr_text(&h.src), "192.0.2.7:50000");
	ck_assert_str_eq(addr_text(&h.dst), "198.51.100.1:443");
	for (size_t k = 0; k < n; k++)
		ck_assert_int_eq(proxy_parse(hdr, k, PROXY_V2, &h), 0);
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V1, &h), -1);
	s = addr("2001:db8::7", 1);
	d = addr("2001:db8::1", 2);
	n = proxy_v2_build(
	    hdr, sizeof(hdr), (struct sockaddr *)&s, (struct sockaddr *)&d);
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), (int)n);
	ck_assert_str_eq(addr_text(&h.src), "[2001:db8::7]:1");
	/* TLVs after the addresses are skipped with them. */
	hdr[15] += 4;
	memcpy(hdr + n, "\x04\x00\x01\x00", 4);
	ck_assert_int_eq(proxy_parse(hdr, n + 4, PROXY_V2, &h), (int)n + 4);
	hdr[15] -= 4;
	/* LOCAL: the connection's own addresses stand. */
	hdr[12] = 0x20;
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), (int)n);
	ck_assert_int_eq(h.has_addr, 0);
	/* Refused: version 1 in the byte, command 2, UDP, short addresses,
	 * a length past PROXY_HDR_MAX, a broken signature. */
	hdr[12] = 0x11;
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), -1);
	hdr[12] = 0x22;
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), -1);
	hdr[12] = 0x21;
	hdr[13] = 0x22;
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), -1);
	hdr[13] = 0x21;
	hdr[15] = 20;
	ck_assert_int_eq(proxy_parse(hdr, 16 + 20, PROXY_V2, &h), -1);
	hdr[14] = 0x10;
	ck_assert_int_eq(proxy_parse(hdr, sizeof(hdr), PROXY_V2, &h), -1);
	hdr[14] = 0;
	hdr[3] = 0x0b;
	ck_assert_int_eq(proxy_parse(hdr, n, PROXY_V2, &h), -1);
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
	tcase_add_test(tc, test_parse_v1);
	tcase_add_test(tc, test_parse_v2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
