/* common/apiuser.c: the API's user bodies and the users file. */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiuser.h"
#include "config.h"

static int
parse(const char *body, enum api_body k, struct api_user_patch *p, char *err)
{
	return api_user_parse(body, strlen(body), k, p, err, 256);
}

static void
refused(const char *body, enum api_body k, const char *want)
{
	struct api_user_patch p;
	char err[256] = "";

	ck_assert_int_eq(parse(body, k, &p, err), -1);
	ck_assert_msg(strstr(err, want) != NULL,
	    "%s: got \"%s\", wanted \"%s\"", body, err, want);
}

START_TEST(test_create_and_patch)
{
	struct api_user_patch p;
	struct config_user u;
	char err[256];

	ck_assert_int_eq(
	    parse("{\"username\":\"carol\",\"max_tcp_conns\":3,"
	          "\"data_quota_bytes\":1000,\"expiration_rfc3339\":"
	          "\"2027-01-31T00:00:00Z\",\"rate_limit_up_bps\":"
	          "8000,\"max_unique_ips\":2,\"enabled\":false,"
	          "\"user_ad_tag\":\"0123456789abcdef0123456789abcdef"
	          "\",\"quota_period\":\"monthly:5\"}",
	        API_BODY_CREATE, &p, err),
	    0);
	ck_assert_str_eq(p.u.name, "carol");
	ck_assert_uint_eq(p.set & AU_SECRET, 0); /* made by the supervisor */
	api_user_defaults(&u);
	api_user_apply(&u, &p);
	ck_assert_int_eq(u.max_connections, 3);
	ck_assert_uint_eq(u.quota, 1000);
	ck_assert_int_eq(u.expires, 1801353600);
	ck_assert_uint_eq(u.rate, 1000); /* bits to bytes */
	ck_assert_int_eq(u.max_unique_ips, 2);
	ck_assert_int_eq(u.enabled, 0);
	ck_assert_int_eq(u.has_ad_tag, 1);
	ck_assert_int_eq(u.quota_period, QUOTA_MONTHLY);
	ck_assert_int_eq(u.quota_day, 5);

	/* merge patch: null clears, absent keeps */
	ck_assert_int_eq(parse("{\"max_tcp_conns\":null,\"user_ad_tag\":null,"
	                       "\"enabled\":null}",
	                     API_BODY_PATCH, &p, err),
	    0);
	api_user_apply(&u, &p);
	ck_assert_int_eq(u.max_connections, 0);
	ck_assert_int_eq(u.has_ad_tag, 0);
	ck_assert_int_eq(u.enabled, 1);
	ck_assert_uint_eq(u.quota, 1000);
	ck_assert_int_eq(u.max_unique_ips, 2);
	/* empty bodies */
	ck_assert_int_eq(parse("", API_BODY_PATCH, &p, err), 0);
	ck_assert_uint_eq(p.set | p.cleared, 0);
	ck_assert_int_eq(parse("", API_BODY_ROTATE, &p, err), 0);
}
END_TEST

START_TEST(test_refusals)
{
	refused("{", API_BODY_PATCH, "invalid JSON");
	refused("[1]", API_BODY_PATCH, "must be a JSON object");
	refused("{\"colour\":1}", API_BODY_PATCH, "unknown field \"colour\"");
	refused("{\"max_tcp_conns\":\"2\"}", API_BODY_PATCH,
	    "field \"max_tcp_conns\": must be an integer");
	refused("{\"max_tcp_conns\":-1}", API_BODY_PATCH, "max_tcp_conns");
	refused("{\"max_unique_ips\":65}", API_BODY_PATCH, "from 0 to 64");
	refused("{\"secret\":\"xyz\"}", API_BODY_PATCH, "32 hex digits");
	refused("{\"secret\":null}", API_BODY_PATCH, "32 hex digits");
	refused("{\"enabled\":1}", API_BODY_PATCH, "true, false or null");
	refused("{\"expiration_rfc3339\":\"tomorrow\"}", API_BODY_PATCH,
	    "RFC 3339");
	refused(
	    "{\"quota_period\":\"monthly:0\"}", API_BODY_PATCH, "quota_period");
	refused("{\"username\":\"x\"}", API_BODY_PATCH, "cannot change");
	refused("{}", API_BODY_CREATE, "\"username\" required");
	refused("{\"username\":\"a b\"}", API_BODY_CREATE, "[A-Za-z0-9_.-]");
	refused("{\"max_tcp_conns\":1}", API_BODY_ROTATE, "only \"secret\"");
	refused("{\"rate_limit_up_bps\":8,\"rate_limit_down_bps\":16}",
	    API_BODY_PATCH, "one rate for both directions");
	refused("{\"enabled\":true,\"enabled\":false}", API_BODY_PATCH,
	    "invalid JSON");
	char *big = malloc(API_BODY_MAX + 2);
	memset(big, ' ', API_BODY_MAX + 1);
	big[API_BODY_MAX + 1] = '\0';
	refused(big, API_BODY_PATCH, "body over");
	free(big);
}
END_TEST

START_TEST(test_users_file_round_trip)
{
	struct config_user us[3], *back = NULL;
	char path[] = "/tmp/check_apiuser.XXXXXX", err[CONFIG_ERR_MAX];
	size_t n = 0;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < 3; i++) {
		api_user_defaults(&us[i]);
		snprintf(us[i].name, sizeof(us[i].name), "u%d", i);
		memset(us[i].secret, i + 1, 16);
	}
	us[1].enabled = 0;
	us[1].quota = 5ull << 30;
	us[1].quota_period = QUOTA_DAILY;
	us[1].expires = 1801353600;
	us[1].rate = 1000;
	us[1].max_connections = 4;
	us[1].max_unique_ips = 3;
	us[1].unique_ips_window = 60;
	us[2].has_ad_tag = 1;
	memset(us[2].ad_tag, 0xab, 16);
	us[2].quota_period = QUOTA_MONTHLY;
	us[2].quota_day = 31;
	char *text = api_users_text(us, 3);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
	free(text);
	ck_assert_msg(config_users_load(path, &back, &n, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_uint_eq(n, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(back[i].name, us[i].name);
		ck_assert_mem_eq(back[i].secret, us[i].secret, 16);
		ck_assert_int_eq(back[i].enabled, us[i].enabled);
		ck_assert_uint_eq(back[i].quota, us[i].quota);
		ck_assert_int_eq(back[i].quota_period, us[i].quota_period);
		ck_assert_int_eq(back[i].quota_day, us[i].quota_day);
		ck_assert_int_eq(back[i].expires, us[i].expires);
		ck_assert_uint_eq(back[i].rate, us[i].rate);
		ck_assert_int_eq(
		    back[i].max_connections, us[i].max_connections);
		ck_assert_int_eq(back[i].max_unique_ips, us[i].max_unique_ips);
		ck_assert_int_eq(
		    back[i].unique_ips_window, us[i].unique_ips_window);
		ck_assert_int_eq(back[i].has_ad_tag, us[i].has_ad_tag);
	}
	free(back);
	/* an error names the file and line */
	FILE *f = fopen(path, "w");
	fputs("# two users\n{ name = \"a\"; secret = \"00\"; }\n", f);
	fclose(f);
	ck_assert_int_eq(
	    config_users_load(path, &back, &n, err, sizeof(err)), -1);
	ck_assert_msg(
	    strstr(err, ":2: users.[0].secret: must be 32 hex") != NULL, "%s",
	    err);
	/* no file: no users */
	unlink(path);
	ck_assert_int_eq(
	    config_users_load(path, &back, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 0);
	free(back);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("apiuser");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_create_and_patch);
	tcase_add_test(tc, test_refusals);
	tcase_add_test(tc, test_users_file_round_trip);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
