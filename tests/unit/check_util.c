#include "autoconf.h"

#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

START_TEST(hex)
{
	uint8_t b[4] = { 0x00, 0xab, 0xCD, 0x7f }, o[4];
	char s[9];
	hex_encode(b, 4, s);
	ck_assert_str_eq(s, "00abcd7f");
	ck_assert_int_eq(hex_decode("00ABcd7F", o, 4), 0);
	ck_assert_mem_eq(o, b, 4);
	ck_assert_int_eq(hex_decode("00abcd7", o, 4), -1);
	ck_assert_int_eq(hex_decode("00abcd7g", o, 4), -1);
	ck_assert_int_eq(hex_decode("00abcd7f00", o, 4), -1);
}
END_TEST

START_TEST(addresses)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char buf[ADDR_STRLEN];

	ck_assert_int_eq(addr_parse("149.154.167.51:443", 0, &ss, &len), 0);
	ck_assert_str_eq(
	    addr_str((void *)&ss, buf, sizeof(buf)), "149.154.167.51:443");
	ck_assert_int_eq(
	    addr_parse("[2001:67c:4e8:f002::a]:8888", 0, &ss, &len), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_str_eq(addr_str((void *)&ss, buf, sizeof(buf)),
	    "[2001:67c:4e8:f002::a]:8888");
	ck_assert_int_eq(addr_parse("127.0.0.1", 443, &ss, &len), 0);
	ck_assert_str_eq(
	    addr_str((void *)&ss, buf, sizeof(buf)), "127.0.0.1:443");
	ck_assert_int_eq(addr_parse("::1", 443, &ss, &len), 0);
	ck_assert_str_eq(addr_str((void *)&ss, buf, sizeof(buf)), "[::1]:443");
	ck_assert_int_eq(addr_parse("1.2.3.4:0", 0, &ss, &len), -1);
	ck_assert_int_eq(addr_parse("1.2.3.4:65536", 0, &ss, &len), -1);
	ck_assert_int_eq(addr_parse("1.2.3.4:x", 0, &ss, &len), -1);
	ck_assert_int_eq(addr_parse("example.com:443", 0, &ss, &len), -1);
	ck_assert_int_eq(addr_parse("[::1", 0, &ss, &len), -1);
	ck_assert_int_eq(addr_parse("", 443, &ss, &len), -1);
	ck_assert_int_eq(addr_parse("1.2.3.4", 0, &ss, &len), -1);
}
END_TEST

START_TEST(random_differs)
{
	uint8_t a[32], b[32];
	random_bytes(a, sizeof(a));
	random_bytes(b, sizeof(b));
	ck_assert_int_ne(memcmp(a, b, sizeof(a)), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("util");
	tcase_add_test(tc, hex);
	tcase_add_test(tc, addresses);
	tcase_add_test(tc, random_differs);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
