#include "autoconf.h"

#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

static struct sockaddr_storage
sa_of(const char *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;

	ck_assert_int_eq(addr_from_ip_port(ip, 1, &ss, &len), 0);
	return ss;
}

START_TEST(cidrs)
{
	struct cidr c[4];
	struct sockaddr_storage ss;

	ck_assert_int_eq(cidr_parse("10.1.2.3/8", &c[0]), 0);
	ck_assert_int_eq(c[0].family, AF_INET);
	ck_assert_uint_eq(c[0].prefix, 8);
	ck_assert_uint_eq(c[0].addr[1], 0); /* host bits cleared */
	ck_assert_int_eq(cidr_parse("2001:db8::/33", &c[1]), 0);
	ck_assert_int_eq(cidr_parse("192.0.2.7", &c[2]), 0);
	ck_assert_uint_eq(c[2].prefix, 32);
	ck_assert_int_eq(cidr_parse("0.0.0.0/0", &c[3]), 0);
	ss = sa_of("10.200.0.1");
	ck_assert_int_eq(cidr_match(c, 1, (struct sockaddr *)&ss), 1);
	ss = sa_of("11.0.0.1");
	ck_assert_int_eq(cidr_match(c, 3, (struct sockaddr *)&ss), 0);
	ck_assert_int_eq(cidr_match(c, 4, (struct sockaddr *)&ss), 1);
	ss = sa_of("2001:db8:7fff::1");
	ck_assert_int_eq(cidr_match(c, 3, (struct sockaddr *)&ss), 1);
	ss = sa_of("2001:db8:8000::1"); /* bit 33 set */
	ck_assert_int_eq(cidr_match(c, 3, (struct sockaddr *)&ss), 0);
	/* An IPv4-mapped IPv6 peer (a dual-stack socket) is IPv4. */
	ss = sa_of("::ffff:192.0.2.7");
	ck_assert_int_eq(cidr_match(c, 3, (struct sockaddr *)&ss), 1);
	ss = sa_of("::ffff:192.0.2.8");
	ck_assert_int_eq(cidr_match(c, 3, (struct sockaddr *)&ss), 0);
	ck_assert_int_eq(cidr_parse("10.0.0.0/33", &c[0]), -1);
	ck_assert_int_eq(cidr_parse("10.0.0.0/", &c[0]), -1);
	ck_assert_int_eq(cidr_parse("10.0.0.0/8x", &c[0]), -1);
	ck_assert_int_eq(cidr_parse("::/129", &c[0]), -1);
	ck_assert_int_eq(cidr_parse("example.com/8", &c[0]), -1);
	ck_assert_int_eq(cidr_parse("", &c[0]), -1);
}
END_TEST

/* cheap_rand64(): no two draws alike, and a fork child draws its own
 * numbers (reseeded), not its parent's next ones. */
START_TEST(cheap_random)
{
	uint64_t a = cheap_rand64(), b = cheap_rand64();
	uint8_t buf[13] = { 0 }, zero[13] = { 0 };
	int fds[2];

	ck_assert(a != b);
	cheap_rand_bytes(buf, sizeof(buf));
	ck_assert(memcmp(buf, zero, sizeof(buf)) != 0);
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t c = cheap_rand64();
		_exit(write(fds[1], &c, sizeof(c)) == sizeof(c) ? 0 : 1);
	}
	uint64_t mine = cheap_rand64(), child = 0;
	ck_assert_int_eq(read(fds[0], &child, sizeof(child)), sizeof(child));
	waitpid(pid, NULL, 0);
	ck_assert(child != mine);
	close(fds[0]);
	close(fds[1]);
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
	tcase_add_test(tc, cheap_random);
	tcase_add_test(tc, cidrs);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
