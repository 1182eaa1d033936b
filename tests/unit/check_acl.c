/* common/acl.c: address lists as sorted, merged ranges. */
#include "autoconf.h"

#include <netinet/in.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl.h"
#include "util.h"

static void
add(struct acl *a, const char *text)
{
	struct cidr c;

	ck_assert_int_eq(cidr_parse(text, &c), 0);
	ck_assert_int_eq(acl_add(a, &c), 0);
}

static int
has(const struct acl *a, const char *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;

	ck_assert_int_eq(addr_from_ip_port(ip, 1, &ss, &len), 0);
	return acl_match(a, (struct sockaddr *)&ss);
}

START_TEST(test_ranges)
{
	struct acl a = { 0 };

	ck_assert_int_eq(has(&a, "10.0.0.1"), 0);
	add(&a, "10.0.0.0/8");
	add(&a, "10.20.0.0/16"); /* inside the first */
	add(&a, "11.0.0.0/8"); /* adjacent: merged */
	add(&a, "192.0.2.7");
	add(&a, "0.0.0.0/32");
	add(&a, "2001:db8::/32");
	add(&a, "2001:db9::/32"); /* adjacent */
	add(&a, "::1");
	acl_finish(&a);
	ck_assert_uint_eq(a.n4, 3);
	ck_assert_uint_eq(a.n6, 2);
	ck_assert_uint_eq(acl_size(&a), 5);
	ck_assert_int_eq(has(&a, "10.0.0.0"), 1);
	ck_assert_int_eq(has(&a, "11.255.255.255"), 1);
	ck_assert_int_eq(has(&a, "12.0.0.0"), 0);
	ck_assert_int_eq(has(&a, "9.255.255.255"), 0);
	ck_assert_int_eq(has(&a, "192.0.2.7"), 1);
	ck_assert_int_eq(has(&a, "192.0.2.8"), 0);
	ck_assert_int_eq(has(&a, "0.0.0.0"), 1);
	ck_assert_int_eq(has(&a, "0.0.0.1"), 0);
	ck_assert_int_eq(has(&a, "::ffff:10.1.2.3"), 1); /* mapped: IPv4 */
	ck_assert_int_eq(has(&a, "2001:db9:ffff::1"), 1);
	ck_assert_int_eq(has(&a, "2001:dba::"), 0);
	ck_assert_int_eq(has(&a, "::1"), 1);
	ck_assert_int_eq(has(&a, "::2"), 0);
	acl_free(&a);
	/* Everything, both families. */
	add(&a, "0.0.0.0/0");
	add(&a, "::/0");
	acl_finish(&a);
	ck_assert_int_eq(has(&a, "255.255.255.255"), 1);
	ck_assert_int_eq(has(&a, "ffff::"), 1);
	acl_free(&a);
}
END_TEST

/* 100,000 random blocks: the same answers as a scan of the blocks. */
START_TEST(test_large_against_a_scan)
{
	enum { N = 100000, PROBES = 2000 };
	struct cidr *c = malloc(N * sizeof(*c));
	struct acl a = { 0 };
	uint32_t r[3];

	ck_assert_ptr_nonnull(c);
	for (int i = 0; i < N; i++) {
		char text[32];

		random_bytes(r, sizeof(r));
		snprintf(text, sizeof(text), "%u.%u.%u.%u/%u", r[0] >> 24,
		    (r[0] >> 16) & 255, (r[0] >> 8) & 255, r[0] & 255,
		    8 + r[1] % 25);
		ck_assert_int_eq(cidr_parse(text, &c[i]), 0);
		ck_assert_int_eq(acl_add(&a, &c[i]), 0);
	}
	acl_finish(&a);
	ck_assert_uint_le(a.n4, N);
	for (int k = 0; k < PROBES; k++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		int want = 0;

		random_bytes(&sin.sin_addr, 4);
		/* Half the probes inside a block, half anywhere. */
		if (k % 2 == 0)
			memcpy(&sin.sin_addr, c[k % N].addr, 4);
		want = cidr_match(c, N, (struct sockaddr *)&sin);
		ck_assert_int_eq(acl_match(&a, (struct sockaddr *)&sin), want);
	}
	acl_free(&a);
	free(c);
}
END_TEST

START_TEST(test_file_and_equal)
{
	char path[] = "/tmp/check-acl-XXXXXX", err[256] = "";
	struct acl a = { 0 }, b = { 0 };
	int fd = mkstemp(path);
	FILE *f;

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs("# blocked\n10.0.0.0/8  # a comment\n\n  2001:db8::/32\t\n"
	      "192.0.2.7\n",
	    f);
	fclose(f);
	ck_assert_int_eq(acl_load_file(&a, path, err, sizeof(err)), 0);
	acl_finish(&a);
	ck_assert_uint_eq(acl_size(&a), 3);
	ck_assert_int_eq(has(&a, "10.9.9.9"), 1);
	ck_assert_int_eq(has(&a, "2001:db8::5"), 1);
	add(&b, "192.0.2.7/32");
	add(&b, "2001:db8::/32");
	add(&b, "10.0.0.0/8");
	acl_finish(&b);
	ck_assert_int_eq(acl_equal(&a, &b), 1);
	add(&b, "10.0.0.0/7");
	acl_finish(&b);
	ck_assert_int_eq(acl_equal(&a, &b), 0);
	acl_free(&a);
	/* A bad line names the file and line. */
	f = fopen(path, "w");
	fputs("10.0.0.0/8\n\nnot-an-address\n", f);
	fclose(f);
	ck_assert_int_eq(acl_load_file(&a, path, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":3: \"not-an-address\" is not"));
	unlink(path);
	ck_assert_int_eq(acl_load_file(&a, path, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	acl_free(&a);
	acl_free(&b);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("acl");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_ranges);
	tcase_add_test(tc, test_large_against_a_scan);
	tcase_add_test(tc, test_file_and_equal);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
