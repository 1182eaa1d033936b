#include "autoconf.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyconf.h"
#include "util.h"

static struct proxyconf pc;
static char err[256];

static int
parse(const char *text)
{
	return proxyconf_parse(text, strlen(text), &pc, err, sizeof(err));
}

/* The i-th entry of dc as "ip:port", or "" when there is none. */
static const char *
entry(int dc, size_t i)
{
	static char buf[ADDR_STRLEN];
	const struct proxyconf_entry *e;
	size_t n = proxyconf_lookup(&pc, dc, &e);

	if (i >= n)
		return "";
	addr_str(&e[i].addr.sa, buf, sizeof(buf));
	return buf;
}

static size_t
count(int dc)
{
	const struct proxyconf_entry *e;

	return proxyconf_lookup(&pc, dc, &e);
}

/* The example of spec B.2.1 (Erl's tests). */
START_TEST(test_erlang_example)
{
	const char *text = "# force_probability 1 10\n"
	                   "default 2;\n"
	                   "proxy_for 1 149.154.175.50:8888;\n"
	                   "proxy_for -1 149.154.175.50:8888;\n"
	                   "proxy_for 2 149.154.162.39:80;\n"
	                   "proxy_for 2 149.154.162.33:80;\n";

	ck_assert_msg(parse(text) == 0, "%s", err);
	ck_assert_uint_eq(pc.n, 4);
	ck_assert_int_eq(pc.has_default, 1);
	ck_assert_int_eq(pc.default_dc, 2);
	ck_assert_uint_eq(count(1), 1);
	ck_assert_str_eq(entry(1, 0), "149.154.175.50:8888");
	ck_assert_uint_eq(count(-1), 1);
	ck_assert_str_eq(entry(-1, 0), "149.154.175.50:8888");
	ck_assert_uint_eq(count(2), 2);
	ck_assert_str_eq(entry(2, 0), "149.154.162.39:80");
	ck_assert_str_eq(entry(2, 1), "149.154.162.33:80");
	/* Unknown DCs fall back to the default. */
	ck_assert_uint_eq(count(5), 2);
	ck_assert_str_eq(entry(5, 1), "149.154.162.33:80");
	ck_assert_uint_eq(count(-2), 2);
	ck_assert_str_eq(entry(-2, 0), "149.154.162.39:80");
	const struct proxyconf_entry *e;
	ck_assert_uint_eq(proxyconf_lookup(&pc, 1, &e), 1);
	ck_assert_int_eq(e->dc, 1);
	ck_assert_int_eq(e->addr.sa.sa_family, AF_INET);
	ck_assert_uint_eq(e->addrlen, sizeof(struct sockaddr_in));
}
END_TEST

/*
 * The C proxy's full grammar, as Telegram serves it: tuning statements,
 * CRLF, tabs, comments after statements, DCs not consecutive, IPv6,
 * a statement split over lines.
 */
START_TEST(test_full_grammar)
{
	const char *text =
	    "# proxy-multi.conf\r\n"
	    "timeout 5000;\r\n"
	    "min_connections 4;\tmax_connections 8;\r\n"
	    "proxy 149.154.175.50:8888;\r\n"
	    "proxy_for 4 91.108.4.136:8888;  # DC 4\r\n"
	    "proxy_for\t-4 149.154.165.109:8888 ;\n"
	    "proxy_for 1 [2001:b28:f23d:f001::d]:8888;\n"
	    "proxy_for 4\n  91.108.4.137:8888\n;\n"
	    "proxy_for -32768 1.2.3.4:1;proxy_for 32767 [::1]:65535;\n"
	    ";\n"
	    "default 4;default 1;";

	ck_assert_msg(parse(text) == 0, "%s", err);
	ck_assert_uint_eq(pc.n, 6);
	ck_assert_int_eq(pc.default_dc, 1);
	/* Sorted by DC. */
	for (size_t i = 1; i < pc.n; i++)
		ck_assert_int_le(pc.entries[i - 1].dc, pc.entries[i].dc);
	ck_assert_uint_eq(count(4), 2);
	ck_assert_str_eq(entry(4, 0), "91.108.4.136:8888");
	ck_assert_str_eq(entry(4, 1), "91.108.4.137:8888");
	ck_assert_str_eq(entry(-4, 0), "149.154.165.109:8888");
	ck_assert_str_eq(entry(1, 0), "[2001:b28:f23d:f001::d]:8888");
	ck_assert_str_eq(entry(-32768, 0), "1.2.3.4:1");
	ck_assert_str_eq(entry(32767, 0), "[::1]:65535");
	ck_assert_str_eq(entry(3, 0), "[2001:b28:f23d:f001::d]:8888");
	const struct proxyconf_entry *e;
	ck_assert_uint_eq(proxyconf_lookup(&pc, 1, &e), 1);
	ck_assert_int_eq(e->addr.sa.sa_family, AF_INET6);
	ck_assert_uint_eq(e->addrlen, sizeof(struct sockaddr_in6));
}
END_TEST

/* The IPv4 and IPv6 files parsed as one text; no default: no fallback. */
START_TEST(test_joined_no_default)
{
	const char *text = "proxy_for 2 149.154.161.144:8888;\n"
	                   "proxy_for 5 91.108.56.183:8888;\n"
	                   "\n"
	                   "proxy_for 2 [2001:67c:4e8:f002::d]:80;\n"
	                   "proxy_for 5 [2001:b28:f23f:f005::d]:8888;\n";

	ck_assert_msg(parse(text) == 0, "%s", err);
	ck_assert_int_eq(pc.has_default, 0);
	ck_assert_uint_eq(count(2), 2);
	ck_assert_str_eq(entry(2, 1), "[2001:67c:4e8:f002::d]:80");
	ck_assert_uint_eq(count(5), 2);
	ck_assert_uint_eq(count(3), 0);
	const struct proxyconf_entry *e = (void *)&pc;
	ck_assert_uint_eq(proxyconf_lookup(&pc, 3, &e), 0);
	ck_assert_ptr_null(e);

	/* A default with no entries of its own gives nothing either. */
	ck_assert_msg(
	    parse("default 9; proxy_for 2 1.2.3.4:5;") == 0, "%s", err);
	ck_assert_uint_eq(count(3), 0);
	ck_assert_uint_eq(count(9), 0);
	ck_assert_uint_eq(count(2), 1);
}
END_TEST

/* Only len bytes are read; no NUL needed. */
START_TEST(test_length_bound)
{
	const char *text = "proxy_for 2 1.2.3.4:80;proxy_for 3 garbage";

	ck_assert_msg(
	    proxyconf_parse(text, 23, &pc, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(pc.n, 1);
	ck_assert_int_eq(
	    proxyconf_parse(text, strlen(text), &pc, err, sizeof(err)), -1);
	ck_assert_uint_eq(pc.n, 0);
	/* Cut inside the port: "1.2.3.4:8" is still valid and complete. */
	ck_assert_int_eq(proxyconf_parse(text, 21, &pc, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "end of text"));
	/* Works without an error buffer too. */
	ck_assert_int_eq(proxyconf_parse(text, strlen(text), &pc, NULL, 0), -1);
}
END_TEST

struct bad_case {
	const char *text;
	const char *want; /* substring of the error */
};

static const struct bad_case bad_cases[] = {
	{ "", "line 1: no proxy_for entries" },
	{ "# only a comment\n\ndefault 2;\n", "line 4: no proxy_for" },
	{ "timeout 10;\nmin_connections 1;\n", "no proxy_for" },
	{ "proxy_for 2 1.2.3.4:80", "line 1: unexpected end of text" },
	{ "proxy_for 2 1.2.3.4:80\nproxy_for 3 1.2.3.5:80;",
	    "line 2: \"proxy_for\": expected \";\", got \"proxy_for\"" },
	{ "proxy_for 2;", "missing argument" },
	{ "proxy_for 2 1.2.3.4:80 5.6.7.8:80;", "expected \";\"" },
	{ "proxy_for x 1.2.3.4:80;", "bad DC \"x\"" },
	{ "proxy_for 32768 1.2.3.4:80;", "bad DC \"32768\"" },
	{ "proxy_for -32769 1.2.3.4:80;", "bad DC" },
	{ "proxy_for 99999999999999999999 1.2.3.4:80;", "bad DC" },
	{ "proxy_for - 1.2.3.4:80;", "bad DC" },
	{ "proxy_for 2 1.2.3.4:0;", "bad address \"1.2.3.4:0\"" },
	{ "proxy_for 2 1.2.3.4:65536;", "bad address" },
	{ "proxy_for 2 1.2.3.4:+80;", "bad address" },
	{ "proxy_for 2 1.2.3.4:;", "bad address" },
	{ "proxy_for 2 1.2.3.4;", "bad address" },
	{ "proxy_for 2 1.2.3:80;", "bad address" },
	{ "proxy_for 2 1.2.3.256:80;", "bad address" },
	{ "proxy_for 2 example.com:80;", "bad address" },
	{ "proxy_for 2 2001:db8::1:80;", "bad address" },
	{ "proxy_for 2 [2001:db8::1]80;", "bad address" },
	{ "proxy_for 2 [2001:db8::1:80;", "bad address" },
	{ "proxy_for 2 [1.2.3.4]:80;", "bad address" },
	{ "proxy_for 2 []:80;", "bad address" },
	{ "proxy_for 2 1.2.3.4:80;\n\nproxy 1.2.3.4;", "line 3: proxy: bad" },
	{ "proxy_for 2 1.2.3.4:80;\ntimeout x;", "line 2: timeout: bad" },
	{ "proxy_for 2 1.2.3.4:80;\ntimeout -5;", "timeout: bad number" },
	{ "proxy_for 2 1.2.3.4:80;\nmax_connections;", "missing argument" },
	{ "proxy_for 2 1.2.3.4:80;\ndefault;", "missing argument" },
	{ "proxy_for 2 1.2.3.4:80;\ndefault 40000;", "default: bad DC" },
	{ "proxy_for 2 1.2.3.4:80;\n\n\nproxy_fro 2 1.2.3.4:80;",
	    "line 4: unknown statement \"proxy_fro\"" },
	{ "<html><body>502 Bad Gateway</body></html>", "unknown statement" },
	{ "proxy_for 2 1.2.3.4:80;\n\x01", "line 2: unexpected byte 0x01" },
	{ "proxy_for 2 1.2.3.4:80;\xc3\xa9", "unexpected byte 0xc3" },
	{ "proxy_for 2 1.2.3.4:80;\n"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    "line 2: word too long" },
};

START_TEST(test_malformed)
{
	const struct bad_case *c = &bad_cases[_i];

	memset(err, 'X', sizeof(err));
	ck_assert_msg(parse(c->text) == -1, "accepted: %s", c->text);
	ck_assert_uint_eq(pc.n, 0);
	ck_assert_msg(strstr(err, c->want) != NULL,
	    "text %s: error \"%s\", "
	    "want \"%s\"",
	    c->text, err, c->want);
	ck_assert_int_eq(strncmp(err, "line ", 5), 0);
}
END_TEST

/* A NUL byte in the middle (a binary download). */
START_TEST(test_nul_byte)
{
	static const char text[] = "proxy_for 2 1.2.3.4:80;\0proxy_for 3 x;";

	ck_assert_int_eq(
	    proxyconf_parse(text, sizeof(text) - 1, &pc, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "unexpected byte 0x00"));
}
END_TEST

START_TEST(test_too_many)
{
	size_t cap = (PROXYCONF_MAX_ENTRIES + 1) * 40, n = 0;
	char *text = malloc(cap);

	ck_assert_ptr_nonnull(text);
	for (int i = 0; i < PROXYCONF_MAX_ENTRIES; i++)
		n += (size_t)snprintf(text + n, cap - n,
		    "proxy_for %d 10.0.%d.%d:443;\n", 700 - i, i / 256,
		    i % 256);
	ck_assert_msg(
	    proxyconf_parse(text, n, &pc, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(pc.n, PROXYCONF_MAX_ENTRIES);
	ck_assert_int_eq(pc.entries[0].dc, 700 - PROXYCONF_MAX_ENTRIES + 1);
	ck_assert_str_eq(entry(700, 0), "10.0.0.0:443");
	n += (size_t)snprintf(text + n, cap - n, "proxy_for 1 10.1.0.0:443;\n");
	ck_assert_int_eq(proxyconf_parse(text, n, &pc, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "more than"));
	free(text);
}
END_TEST

/* A small error buffer is never overrun, always terminated. */
START_TEST(test_small_err)
{
	char small[8];

	memset(small, 'X', sizeof(small));
	ck_assert_int_eq(
	    proxyconf_parse("bogus;", 6, &pc, small, sizeof(small)), -1);
	ck_assert_str_eq(small, "line 1:");
}
END_TEST

static Suite *
proxyconf_suite(void)
{
	Suite *s = suite_create("proxyconf");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_erlang_example);
	tcase_add_test(tc, test_full_grammar);
	tcase_add_test(tc, test_joined_no_default);
	tcase_add_test(tc, test_length_bound);
	tcase_add_loop_test(tc, test_malformed, 0, (int)nitems(bad_cases));
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_too_many);
	tcase_add_test(tc, test_small_err);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proxyconf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
