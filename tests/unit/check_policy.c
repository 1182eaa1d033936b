/* common/policy.c: the shared counts behind limits, and quota periods. */
#include "autoconf.h"

#include <netinet/in.h>
#include <sys/wait.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "policy.h"
#include "util.h"

static struct sockaddr_storage
ip(const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;

	ck_assert_int_eq(addr_from_ip_port(text, 1, &ss, &len), 0);
	return ss;
}

#define SA(x) ((struct sockaddr *)&(x))

START_TEST(test_per_ip_and_subnet)
{
	struct policy *p = policy_create_fd(4, NULL);
	struct config_limits g = { 2, 3, 24, 64 };
	struct policy_claim c[8] = { 0 };
	struct sockaddr_storage a = ip("10.0.0.1"), b = ip("10.0.0.2"),
	                        d = ip("10.0.1.1");

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 0, &g, NULL, 0, &c[0]), POLICY_OK);
	ck_assert_int_eq(
	    policy_admit_addr(p, 1, SA(a), 0, &g, NULL, 0, &c[1]), POLICY_OK);
	ck_assert_uint_eq(policy_addr_conns(p, SA(a)), 2);
	/* a third from the same address: per_ip */
	ck_assert_int_eq(policy_admit_addr(p, 0, SA(a), 0, &g, NULL, 0, &c[2]),
	    POLICY_PER_IP);
	/* another in the same /24: the subnet has room for one more */
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(b), 0, &g, NULL, 0, &c[3]), POLICY_OK);
	ck_assert_int_eq(policy_admit_addr(p, 0, SA(b), 0, &g, NULL, 0, &c[4]),
	    POLICY_PER_SUBNET);
	/* another /24 is apart */
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(d), 0, &g, NULL, 0, &c[5]), POLICY_OK);
	/* a release makes room */
	policy_release(p, 0, SA(a), &c[0]);
	ck_assert_uint_eq(c[0].bits, 0);
	ck_assert_uint_eq(policy_addr_conns(p, SA(a)), 1);
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 0, &g, NULL, 0, &c[0]), POLICY_OK);
	/* forced (a handed-over session): counted over the limit */
	ck_assert_int_eq(
	    policy_admit_addr(p, 2, SA(a), 0, &g, NULL, 1, &c[6]), POLICY_OK);
	ck_assert_uint_eq(policy_addr_conns(p, SA(a)), 3);
	/* slot 0 dies: its share (a: 1, b: 1, d: 1) comes back */
	policy_reclaim(p, 0);
	ck_assert_uint_eq(policy_addr_conns(p, SA(a)), 2);
	ck_assert_uint_eq(policy_addr_conns(p, SA(b)), 0);
	ck_assert_uint_eq(policy_addr_conns(p, SA(d)), 0);
	policy_release(p, 1, SA(a), &c[1]);
	policy_release(p, 2, SA(a), &c[6]);
	ck_assert_uint_eq(policy_addr_conns(p, SA(a)), 0);
	policy_destroy(p);
}
END_TEST

START_TEST(test_listener_scope_and_v6)
{
	struct policy *p = policy_create_fd(4, NULL);
	struct config_limits g = { 0, 0, 24, 64 }, l = { 1, 2, 24, 48 };
	struct policy_claim c[4] = { 0 };
	struct sockaddr_storage a = ip("2001:db8:1:2::1"),
	                        b = ip("2001:db8:1:3::1"),
	                        e = ip("2001:db8:1:4::1");

	/* listener 3's per_ip of 1; listener 4 counts apart */
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 3, &g, &l, 0, &c[0]), POLICY_OK);
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 3, &g, &l, 0, &c[1]), POLICY_PER_IP);
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 4, &g, &l, 0, &c[1]), POLICY_OK);
	/* a /48 on listener 3: b is in it, then the third is refused */
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(b), 3, &g, &l, 0, &c[2]), POLICY_OK);
	ck_assert_int_eq(policy_admit_addr(p, 0, SA(e), 3, &g, &l, 0, &c[3]),
	    POLICY_PER_SUBNET);
	policy_release(p, 0, SA(a), &c[0]);
	policy_release(p, 0, SA(a), &c[1]);
	policy_release(p, 0, SA(b), &c[2]);
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(e), 3, &g, &l, 0, &c[3]), POLICY_OK);
	policy_destroy(p);
}
END_TEST

START_TEST(test_users)
{
	struct policy *p = policy_create_fd(4, NULL);
	struct config_user u = { .max_connections = 2,
		.max_unique_ips = 2,
		.unique_ips_window = 60,
		.enabled = 1 };
	struct policy_claim c[6] = { 0 };
	struct sockaddr_storage a = ip("10.0.0.1"), b = ip("10.0.0.2"),
	                        d = ip("10.0.0.3");

	u.pidx = policy_user_index(p, "l1", "alice");
	ck_assert_int_eq(u.pidx, 0);
	ck_assert_int_eq(policy_user_index(p, "l1", "bob"), 1);
	ck_assert_int_eq(policy_user_index(p, "l2", "alice"), 2);
	ck_assert_int_eq(policy_user_index(p, "l1", "alice"), 0);
	ck_assert_int_eq(policy_user_count(p), 3);

	ck_assert_int_eq(
	    policy_admit_user(p, 0, SA(a), &u, 1000, 0, &c[0]), POLICY_OK);
	ck_assert_int_eq(
	    policy_admit_user(p, 1, SA(b), &u, 1000, 0, &c[1]), POLICY_OK);
	ck_assert_uint_eq(policy_user_conns(p, u.pidx), 2);
	ck_assert_int_eq(policy_admit_user(p, 0, SA(a), &u, 1000, 0, &c[2]),
	    POLICY_USER_CONNS);
	policy_release(p, 0, SA(a), &c[0]);
	/* a third address while two are fresh: max_unique_ips */
	ck_assert_int_eq(policy_admit_user(p, 0, SA(d), &u, 1010, 0, &c[2]),
	    POLICY_USER_IPS);
	ck_assert_int_eq(policy_user_ips(p, u.pidx, 60, 1010), 2);
	/* a known one is fine */
	ck_assert_int_eq(
	    policy_admit_user(p, 0, SA(a), &u, 1010, 0, &c[2]), POLICY_OK);
	policy_release(p, 0, SA(a), &c[2]);
	/* after the window (b is kept fresh by its open connection) */
	policy_user_seen(p, SA(b), &u, 1065);
	ck_assert_int_eq(
	    policy_admit_user(p, 0, SA(d), &u, 1071, 0, &c[3]), POLICY_OK);
	ck_assert_int_eq(policy_user_ips(p, u.pidx, 60, 1071), 2);
	policy_reclaim(p, 1);
	ck_assert_uint_eq(policy_user_conns(p, u.pidx), 1);
	policy_release(p, 0, SA(d), &c[3]);
	ck_assert_uint_eq(policy_user_conns(p, u.pidx), 0);
	policy_destroy(p);
}
END_TEST

START_TEST(test_many_keys_and_reclaim)
{
	struct policy *p = policy_create_fd(4, NULL);
	struct config_limits g = { 5, 0, 24, 64 };
	static struct policy_claim c[30000];
	char text[64];

	for (int i = 0; i < 30000; i++) {
		snprintf(text, sizeof(text), "10.%d.%d.%d", i >> 16,
		    (i >> 8) & 255, i & 255);
		struct sockaddr_storage a = ip(text);
		ck_assert_int_eq(
		    policy_admit_addr(p, i % 3, SA(a), 0, &g, NULL, 0, &c[i]),
		    POLICY_OK);
	}
	/* slot 1 dies; release the rest one by one: all back to zero */
	policy_reclaim(p, 1);
	for (int i = 0; i < 30000; i++) {
		snprintf(text, sizeof(text), "10.%d.%d.%d", i >> 16,
		    (i >> 8) & 255, i & 255);
		struct sockaddr_storage a = ip(text);
		ck_assert_uint_eq(
		    policy_addr_conns(p, SA(a)), i % 3 == 1 ? 0 : 1);
		if (i % 3 != 1)
			policy_release(p, i % 3, SA(a), &c[i]);
		ck_assert_uint_eq(policy_addr_conns(p, SA(a)), 0);
	}
	policy_destroy(p);
}
END_TEST

START_TEST(test_across_processes)
{
	int fd;
	struct policy *p = policy_create_fd(4, &fd);
	struct config_limits g = { 1, 0, 24, 64 };
	struct sockaddr_storage a = ip("192.0.2.7");
	struct policy_claim c = { 0 };

	pid_t pid = fork();
	if (pid == 0) {
		struct policy_claim cc = { 0 };
		_exit(policy_admit_addr(p, 1, SA(a), 0, &g, NULL, 0, &cc) ==
		            POLICY_OK
		        ? 0
		        : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* the child's connection holds the address */
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 0, &g, NULL, 0, &c), POLICY_PER_IP);
	/* and an attached view sees the same */
	struct policy *q = policy_attach(dup(fd));
	ck_assert_ptr_nonnull(q);
	ck_assert_uint_eq(policy_addr_conns(q, SA(a)), 1);
	policy_reclaim(q, 1);
	ck_assert_int_eq(
	    policy_admit_addr(p, 0, SA(a), 0, &g, NULL, 0, &c), POLICY_OK);
	policy_destroy(q);
	policy_destroy(p);
}
END_TEST

/* First-contact hints: per scope and key, shared with a child process
 * and an attached view; a later put wins; a bad record is not kept. */
START_TEST(test_hints)
{
	int fd;
	struct policy *p = policy_create_fd(4, &fd);
	uint8_t k1[17] = { 4, 192, 0, 2, 7 }, k2[17] = { 3, 192, 0, 2 };

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(policy_hint_get(p, 0, k1), -1);
	pid_t pid = fork();
	if (pid == 0) {
		policy_hint_put(p, 0, k1, 42);
		policy_hint_put(p, 3, k2, 0);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(policy_hint_get(p, 0, k1), 42);
	ck_assert_int_eq(policy_hint_get(p, 3, k2), 0);
	/* Another listener, another key: nothing. */
	ck_assert_int_eq(policy_hint_get(p, 1, k1), -1);
	ck_assert_int_eq(policy_hint_get(p, 0, k2), -1);
	policy_hint_put(p, 0, k1, 7);
	ck_assert_int_eq(policy_hint_get(p, 0, k1), 7);
	policy_hint_put(p, 0, k1, -1);
	policy_hint_put(p, 0, k1, POLICY_MAX_USERS);
	ck_assert_int_eq(policy_hint_get(p, 0, k1), 7);
	struct policy *q = policy_attach(dup(fd));
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(policy_hint_get(q, 0, k1), 7);
	policy_destroy(q);
	policy_destroy(p);
}
END_TEST

static int64_t
t(const char *rfc3339)
{
	int64_t v;
	ck_assert_int_eq(config_parse_time(rfc3339, &v), 0);
	return v;
}

START_TEST(test_periods)
{
	int64_t now = t("2027-03-15T13:45:00Z");

	ck_assert_int_eq(policy_period_start(QUOTA_NEVER, 0, now), 0);
	ck_assert_int_eq(policy_period_start(QUOTA_DAILY, 0, now),
	    t("2027-03-15T00:00:00Z"));
	ck_assert_int_eq(
	    policy_period_next(QUOTA_DAILY, 0, t("2027-03-15T00:00:00Z")),
	    t("2027-03-16T00:00:00Z"));
	ck_assert_int_eq(policy_period_start(QUOTA_MONTHLY, 1, now),
	    t("2027-03-01T00:00:00Z"));
	ck_assert_int_eq(policy_period_start(QUOTA_MONTHLY, 20, now),
	    t("2027-02-20T00:00:00Z"));
	ck_assert_int_eq(
	    policy_period_next(QUOTA_MONTHLY, 20, t("2027-02-20T00:00:00Z")),
	    t("2027-03-20T00:00:00Z"));
	/* day 31 in February is its last day; 2028 is a leap year */
	ck_assert_int_eq(
	    policy_period_start(QUOTA_MONTHLY, 31, t("2027-03-15T00:00:00Z")),
	    t("2027-02-28T00:00:00Z"));
	ck_assert_int_eq(
	    policy_period_start(QUOTA_MONTHLY, 31, t("2028-03-15T00:00:00Z")),
	    t("2028-02-29T00:00:00Z"));
	ck_assert_int_eq(
	    policy_period_next(QUOTA_MONTHLY, 31, t("2027-02-28T00:00:00Z")),
	    t("2027-03-31T00:00:00Z"));
	/* January from December */
	ck_assert_int_eq(
	    policy_period_start(QUOTA_MONTHLY, 5, t("2027-01-02T00:00:00Z")),
	    t("2026-12-05T00:00:00Z"));
	ck_assert_int_eq(
	    policy_period_next(QUOTA_MONTHLY, 5, t("2026-12-05T00:00:00Z")),
	    t("2027-01-05T00:00:00Z"));
	/* RFC 3339 forms */
	ck_assert_int_eq(
	    t("2027-01-31T03:00:00+03:00"), t("2027-01-31T00:00:00Z"));
	ck_assert_int_eq(
	    t("2027-01-31T00:00:00.250Z"), t("2027-01-31T00:00:00Z"));
	int64_t v;
	ck_assert_int_eq(config_parse_time("2027-02-30T00:00:00Z", &v), -1);
	ck_assert_int_eq(config_parse_time("2027-01-31", &v), -1);
	ck_assert_int_eq(config_parse_time("2027-01-31T00:00:00", &v), -1);
	ck_assert_int_eq(config_parse_time("2027-01-31T00:00:00Zx", &v), -1);
}
END_TEST

START_TEST(test_quota_and_persistence)
{
	struct policy *p = policy_create_fd(4, NULL);
	int idx = policy_user_index(p, "main", "alice");
	struct policy_user *r = policy_user(p, idx);
	char path[] = "/tmp/check_policy.XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_uint_eq(policy_charge(r, 1, 100, 86400), 100);
	ck_assert_uint_eq(policy_charge(r, 0, 50, 86400), 150);
	ck_assert_uint_eq(policy_used(r, 86400), 150);
	/* the next day starts from zero; the totals go on */
	ck_assert_uint_eq(policy_used(r, 2 * 86400), 0);
	ck_assert_uint_eq(policy_charge(r, 1, 10, 2 * 86400), 10);
	ck_assert_uint_eq(r->bytes_c2s, 110);
	ck_assert_uint_eq(r->bytes_s2c, 50);
	ck_assert_int_eq(policy_save(p, path), 0);

	struct policy *q = policy_create_fd(4, NULL);
	(void)policy_user_index(q, "main", "bob"); /* other indices */
	ck_assert_int_eq(policy_load(q, path), 0);
	int qi = policy_user_index(q, "main", "alice");
	ck_assert_int_eq(qi, 1);
	ck_assert_uint_eq(policy_used(policy_user(q, qi), 2 * 86400), 10);
	ck_assert_uint_eq(policy_user(q, qi)->bytes_c2s, 110);
	policy_reset_quota(policy_user(q, qi));
	ck_assert_uint_eq(policy_used(policy_user(q, qi), 2 * 86400), 0);
	unlink(path);
	policy_destroy(p);
	policy_destroy(q);
}
END_TEST

START_TEST(test_rate)
{
	struct policy *p = policy_create_fd(4, NULL);
	struct policy_user *r = policy_user(p, policy_user_index(p, "l", "u"));
	uint64_t now = 1000000000000ull;

	/* 1000 B/s: 50 bytes fit the 0.1 s burst; 200 more must wait */
	ck_assert_uint_eq(policy_rate_take(r, 1, 50, 1000, now), 0);
	uint64_t w = policy_rate_take(r, 1, 200, 1000, now);
	ck_assert_uint_eq(w, 150000000ull); /* 0.25 s owed - 0.1 s burst */
	/* the other way has its own bucket */
	ck_assert_uint_eq(policy_rate_take(r, 0, 50, 1000, now), 0);
	/* after the wait, the same again */
	ck_assert_uint_eq(policy_rate_take(r, 1, 0, 1000, now + w), 0);
	ck_assert_uint_eq(policy_rate_take(r, 1, 1, 0, now), 0); /* no rate */
	policy_destroy(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_per_ip_and_subnet);
	tcase_add_test(tc, test_listener_scope_and_v6);
	tcase_add_test(tc, test_users);
	tcase_add_test(tc, test_many_keys_and_reclaim);
	tcase_add_test(tc, test_across_processes);
	tcase_add_test(tc, test_hints);
	tcase_add_test(tc, test_periods);
	tcase_add_test(tc, test_quota_and_persistence);
	tcase_add_test(tc, test_rate);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
