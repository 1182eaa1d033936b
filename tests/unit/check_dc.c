#include "autoconf.h"

#include <netinet/in.h>

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dc.h"
#include "util.h"

/* The tables of spec B.1.1, as written there. */
static const struct {
	int16_t index;
	const char *ipv4;
	const char *ipv6;
} spec_dcs[] = {
	{ 1, "149.154.175.50:443", "[2001:b28:f23d:f001::a]:443" },
	{ 2, "149.154.167.51:443", "[2001:67c:4e8:f002::a]:443" },
	{ 3, "149.154.175.100:443", "[2001:b28:f23d:f003::a]:443" },
	{ 4, "149.154.167.91:443", "[2001:67c:4e8:f004::a]:443" },
	{ 5, "149.154.171.5:443", "[2001:b28:f23f:f005::a]:443" },
	{ 203, "91.105.192.100:443", "[2a0a:f280:203:a:5000::100]:443" },
	{ 10001, "149.154.175.10:443", "[2001:b28:f23d:f001::e]:443" },
	{ 10002, "149.154.167.40:443", "[2001:67c:4e8:f002::e]:443" },
	{ 10003, "149.154.175.117:443", "[2001:b28:f23d:f003::e]:443" },
};

/* dc_lookup() as text; "" when it fails. */
static const char *
lookup_str(
    const struct dc_table *t, int16_t index, int v6, int *dflt, char *buf)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;

	*dflt = -1;
	if (dc_lookup(t, index, v6, &ss, &len, dflt) == -1)
		return "";
	if (ss.ss_family == AF_INET)
		ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
	else
		ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
	return addr_str((struct sockaddr *)&ss, buf, ADDR_STRLEN);
}

static void
check_lookup(const struct dc_table *t, int16_t index, int v6, const char *want,
    int want_default)
{
	char buf[ADDR_STRLEN];
	int dflt;

	ck_assert_str_eq(lookup_str(t, index, v6, &dflt, buf), want);
	ck_assert_msg(
	    dflt == want_default, "index %d: used_default %d", index, dflt);
}

static void
set_over(struct config_dc *o, int id, const char *addr)
{
	memset(o, 0, sizeof(*o));
	o->id = id;
	snprintf(o->address, sizeof(o->address), "%s", addr);
	ck_assert_int_eq(addr_parse(addr, 443, &o->addr, &o->addrlen), 0);
}

START_TEST(test_builtin)
{
	struct dc_table *t = dc_table_new(NULL, 0, 2);

	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < nitems(spec_dcs); i++) {
		check_lookup(t, spec_dcs[i].index, 0, spec_dcs[i].ipv4, 0);
		check_lookup(t, spec_dcs[i].index, 1, spec_dcs[i].ipv6, 0);
	}
	dc_table_free(t);
}
END_TEST

START_TEST(test_media_same_address)
{
	struct dc_table *t = dc_table_new(NULL, 0, 2);

	ck_assert_ptr_nonnull(t);
	check_lookup(t, -4, 0, "149.154.167.91:443", 0);
	check_lookup(t, -4, 1, "[2001:67c:4e8:f004::a]:443", 0);
	for (size_t i = 0; i < nitems(spec_dcs); i++) {
		int16_t m = (int16_t)-spec_dcs[i].index;

		check_lookup(t, m, 0, spec_dcs[i].ipv4, 0);
		check_lookup(t, m, 1, spec_dcs[i].ipv6, 0);
	}
	dc_table_free(t);
}
END_TEST

START_TEST(test_test_dcs)
{
	struct dc_table *t = dc_table_new(NULL, 0, 2);

	ck_assert_ptr_nonnull(t);
	/* Test DC 2, main and media: not production DC 2. */
	check_lookup(t, 10002, 0, "149.154.167.40:443", 0);
	check_lookup(t, 10002, 1, "[2001:67c:4e8:f002::e]:443", 0);
	check_lookup(t, -10002, 0, "149.154.167.40:443", 0);
	check_lookup(t, -10002, 1, "[2001:67c:4e8:f002::e]:443", 0);
	check_lookup(t, 2, 0, "149.154.167.51:443", 0);
	/* There is no test DC 4. */
	check_lookup(t, 10004, 0, "149.154.167.51:443", 1);
	dc_table_free(t);
}
END_TEST

START_TEST(test_default_fallback)
{
	static const int16_t unknown[] = {
		0,
		6,
		-6,
		7,
		100,
		202,
		204,
		-204,
		10000,
		10004,
		-10004,
		INT16_MAX,
		INT16_MIN,
	};
	struct dc_table *t2 = dc_table_new(NULL, 0, 2);
	struct dc_table *t4 = dc_table_new(NULL, 0, 4);

	ck_assert_ptr_nonnull(t2);
	ck_assert_ptr_nonnull(t4);
	for (size_t i = 0; i < nitems(unknown); i++) {
		check_lookup(t2, unknown[i], 0, "149.154.167.51:443", 1);
		check_lookup(
		    t2, unknown[i], 1, "[2001:67c:4e8:f002::a]:443", 1);
		check_lookup(t4, unknown[i], 0, "149.154.167.91:443", 1);
	}
	/* A known id is not the default even when it equals it. */
	check_lookup(t4, 4, 0, "149.154.167.91:443", 0);
	check_lookup(t4, 2, 0, "149.154.167.51:443", 0);
	dc_table_free(t2);
	dc_table_free(t4);
}
END_TEST

START_TEST(test_overrides)
{
	struct config_dc over[8];
	struct dc_table *t;

	set_over(&over[0], 2, "10.0.0.1:443");
	set_over(&over[1], 2, "10.0.0.2:8443"); /* the last one wins */
	set_over(&over[2], 3, "[2001:db8::3]:444");
	set_over(&over[3], 7, "10.0.0.7:443"); /* a new id, IPv4 */
	set_over(&over[4], 10004, "[2001:db8::4]:443"); /* new, IPv6 only */
	set_over(&over[5], 203, "192.0.2.203:443");
	set_over(&over[6], 4, "10.0.0.4:443"); /* both families */
	set_over(&over[7], 4, "[2001:db8::44]:443");
	t = dc_table_new(over, nitems(over), 7);
	ck_assert_ptr_nonnull(t);

	/*
	 * Issue 13: an override replaces the built-in entry of its DC
	 * whole, whatever its family; before, an IPv6-only override kept
	 * the built-in IPv4 address, and direct mode went to Telegram.
	 */
	check_lookup(t, 2, 0, "10.0.0.2:8443", 0);
	check_lookup(t, -2, 0, "10.0.0.2:8443", 0);
	check_lookup(t, 2, 1, "10.0.0.2:8443", 0);
	check_lookup(t, 3, 0, "[2001:db8::3]:444", 0);
	check_lookup(t, 3, 1, "[2001:db8::3]:444", 0);
	check_lookup(t, 203, 0, "192.0.2.203:443", 0);
	check_lookup(t, 203, 1, "192.0.2.203:443", 0);
	/* Several overrides of one DC: one address per family. */
	check_lookup(t, 4, 0, "10.0.0.4:443", 0);
	check_lookup(t, 4, 1, "[2001:db8::44]:443", 0);
	/* The other family, for a second try; none for a one-family DC. */
	{
		struct sockaddr_storage ss;
		socklen_t len;
		char buf[ADDR_STRLEN];

		ck_assert_int_eq(dc_lookup_other(t, -4, AF_INET, &ss, &len), 0);
		ck_assert_str_eq(
		    addr_str((struct sockaddr *)&ss, buf, sizeof(buf)),
		    "[2001:db8::44]:443");
		ck_assert_int_eq(dc_lookup_other(t, 4, AF_INET6, &ss, &len), 0);
		ck_assert_str_eq(
		    addr_str((struct sockaddr *)&ss, buf, sizeof(buf)),
		    "10.0.0.4:443");
		ck_assert_int_eq(
		    dc_lookup_other(t, 3, AF_INET6, &ss, &len), -1);
		ck_assert_int_eq(dc_lookup_other(t, 2, AF_INET, &ss, &len), -1);
		ck_assert_int_eq(dc_lookup_other(t, 1, AF_INET, &ss, &len), 0);
	}
	/* New ids: the only family they have, whatever is preferred. */
	check_lookup(t, 7, 0, "10.0.0.7:443", 0);
	check_lookup(t, 7, 1, "10.0.0.7:443", 0);
	check_lookup(t, -7, 1, "10.0.0.7:443", 0);
	check_lookup(t, 10004, 0, "[2001:db8::4]:443", 0);
	check_lookup(t, -10004, 1, "[2001:db8::4]:443", 0);
	/* Untouched ones stay built-in; the default is the new id 7. */
	check_lookup(t, 1, 0, "149.154.175.50:443", 0);
	check_lookup(t, 10002, 0, "149.154.167.40:443", 0);
	check_lookup(t, 0, 0, "10.0.0.7:443", 1);
	check_lookup(t, 9, 1, "10.0.0.7:443", 1);
	ck_assert_int_eq(dc_table_warn_once(t, 7), 0);
	ck_assert_int_eq(dc_table_warn_once(t, 10004), 0);
	dc_table_free(t);
}
END_TEST

START_TEST(test_invalid)
{
	struct config_dc over[1];

	errno = 0;
	ck_assert_ptr_null(dc_table_new(NULL, 0, 6));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dc_table_new(NULL, 0, 0));
	ck_assert_ptr_null(dc_table_new(NULL, 0, -2));
	ck_assert_ptr_null(dc_table_new(NULL, 1, 2));

	set_over(&over[0], 0, "10.0.0.1:443");
	errno = 0;
	ck_assert_ptr_null(dc_table_new(over, 1, 2));
	ck_assert_int_eq(errno, EINVAL);
	set_over(&over[0], 40000, "10.0.0.1:443");
	ck_assert_ptr_null(dc_table_new(over, 1, 2));
	set_over(&over[0], -3, "10.0.0.1:443");
	ck_assert_ptr_null(dc_table_new(over, 1, 2));
	set_over(&over[0], 8, "10.0.0.1:443");
	over[0].addr.ss_family = AF_UNIX;
	ck_assert_ptr_null(dc_table_new(over, 1, 2));
	set_over(&over[0], 8, "10.0.0.1:443");
	over[0].addrlen = 4;
	ck_assert_ptr_null(dc_table_new(over, 1, 2));
	/* The same override, well formed, is accepted. */
	set_over(&over[0], 8, "10.0.0.1:443");
	struct dc_table *t = dc_table_new(over, 1, 8);
	ck_assert_ptr_nonnull(t);
	dc_table_free(t);
}
END_TEST

START_TEST(test_warn_once)
{
	struct dc_table *t = dc_table_new(NULL, 0, 2);

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(dc_table_warn_once(t, 6), 1);
	ck_assert_int_eq(dc_table_warn_once(t, 6), 0);
	ck_assert_int_eq(dc_table_warn_once(t, -6), 0); /* same DC */
	ck_assert_int_eq(dc_table_warn_once(t, -9), 1);
	ck_assert_int_eq(dc_table_warn_once(t, 9), 0);
	ck_assert_int_eq(dc_table_warn_once(t, 0), 1);
	ck_assert_int_eq(dc_table_warn_once(t, 0), 0);
	ck_assert_int_eq(dc_table_warn_once(t, INT16_MIN), 1);
	ck_assert_int_eq(dc_table_warn_once(t, INT16_MIN), 0);
	ck_assert_int_eq(dc_table_warn_once(t, INT16_MAX), 1);
	ck_assert_int_eq(dc_table_warn_once(t, INT16_MAX), 0);
	ck_assert_int_eq(dc_table_warn_once(t, 10004), 1);
	/* Known DCs are never reported. */
	for (size_t i = 0; i < nitems(spec_dcs); i++) {
		ck_assert_int_eq(dc_table_warn_once(t, spec_dcs[i].index), 0);
		ck_assert_int_eq(
		    dc_table_warn_once(t, (int16_t)-spec_dcs[i].index), 0);
	}
	/* Every other index once, however often it comes. */
	int first = 0;
	for (int round = 0; round < 2; round++)
		for (int i = INT16_MIN; i <= INT16_MAX; i++)
			first += dc_table_warn_once(t, (int16_t)i);
	/* 32769 distinct DCs, minus 9 known and the 6 reported above. */
	ck_assert_int_eq(first, 32769 - 9 - 6);
	dc_table_free(t);
}
END_TEST

static Suite *
dc_suite(void)
{
	Suite *s = suite_create("dc");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_builtin);
	tcase_add_test(tc, test_media_same_address);
	tcase_add_test(tc, test_test_dcs);
	tcase_add_test(tc, test_default_fallback);
	tcase_add_test(tc, test_overrides);
	tcase_add_test(tc, test_invalid);
	tcase_add_test(tc, test_warn_once);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
