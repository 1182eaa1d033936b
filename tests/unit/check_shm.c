#include "autoconf.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

#include "shm.h"

START_TEST(slots_are_cache_aligned)
{
	struct shm_metrics *m = shm_metrics_create(8);
	ck_assert_ptr_nonnull(m);
	for (int i = 0; i < 8; i++) {
		struct shm_slot *s = shm_metrics_slot(m, i);
		ck_assert_uint_eq((uintptr_t)s % 64, 0);
	}
	ck_assert_ptr_null(shm_metrics_slot(m, 8));
	ck_assert_ptr_null(shm_metrics_slot(m, -1));
	shm_metrics_destroy(m);
}
END_TEST

START_TEST(alloc_until_full)
{
	struct shm_metrics *m = shm_metrics_create(3);
	ck_assert_int_eq(shm_metrics_alloc(m, 10, 0, 0), 0);
	ck_assert_int_eq(shm_metrics_alloc(m, 11, 0, 1), 1);
	ck_assert_int_eq(shm_metrics_alloc(m, 12, 1, 0), 2);
	ck_assert_int_eq(shm_metrics_alloc(m, 13, 0, 2), -1);
	shm_metrics_release(m, 1);
	ck_assert_int_eq(shm_metrics_alloc(m, 14, 0, 1), 1);
	ck_assert_int_eq(shm_metrics_slot(m, 1)->pid, 14);
	shm_metrics_destroy(m);
}
END_TEST

START_TEST(sum_across_processes)
{
	struct shm_metrics *m = shm_metrics_create(4);
	uint64_t out[M_COUNTER_MAX];
	int a = shm_metrics_alloc(m, 0, 0, 0);
	int b = shm_metrics_alloc(m, 0, 0, 1);

	/* Two children write their own slots; the parent reads the sum. */
	for (int k = 0; k < 2; k++) {
		pid_t pid = fork();
		ck_assert_int_ne(pid, -1);
		if (pid == 0) {
			struct shm_slot *s = shm_metrics_slot(m, k ? b : a);
			for (int i = 0; i < 1000; i++)
				shm_add(s, M_ACCEPTED, 1);
			shm_add(s, M_CURRENT, 5 + k);
			_exit(0);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	}
	shm_metrics_sum(m, out);
	ck_assert_uint_eq(out[M_ACCEPTED], 2000);
	ck_assert_uint_eq(out[M_CURRENT], 11);
	/* A released slot keeps its monotonic counters in the totals and
	 * drops its gauges. */
	shm_metrics_release(m, a);
	shm_metrics_sum(m, out);
	ck_assert_uint_eq(out[M_ACCEPTED], 2000);
	ck_assert_uint_eq(out[M_CURRENT], 6);
	shm_sub(shm_metrics_slot(m, b), M_CURRENT, 6);
	shm_metrics_sum(m, out);
	ck_assert_uint_eq(out[M_CURRENT], 0);
	shm_metrics_destroy(m);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("shm");
	TCase *tc = tcase_create("metrics");
	tcase_add_test(tc, slots_are_cache_aligned);
	tcase_add_test(tc, alloc_until_full);
	tcase_add_test(tc, sum_across_processes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
