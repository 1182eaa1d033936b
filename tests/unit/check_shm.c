#include "autoconf.h"

#include <sys/mman.h>
#include <sys/wait.h>

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* A binary upgrade maps the same memfd: the counters go on. */
START_TEST(attach_shares_the_zone)
{
	int fd = -1;
	struct shm_metrics *a = shm_metrics_create_fd(4, &fd), *b;

	ck_assert_ptr_nonnull(a);
	ck_assert_int_ge(fd, 0);
	int s = shm_metrics_alloc(a, 10, 0, 0);
	shm_add(shm_metrics_slot(a, s), M_ACCEPTED, 5);
	b = shm_metrics_attach(fd);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	ck_assert_uint_eq(shm_metrics_nslots(b), 4);
	ck_assert_uint_eq(shm_metrics_slot(b, s)->v[M_ACCEPTED], 5);
	shm_add(shm_metrics_slot(b, s), M_ACCEPTED, 1);
	ck_assert_uint_eq(shm_metrics_slot(a, s)->v[M_ACCEPTED], 6);
	shm_metrics_destroy(b);
	shm_metrics_destroy(a);
	close(fd);
	fd = memfd_create("junk", 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 16), 0);
	ck_assert_ptr_null(shm_metrics_attach(fd));
	close(fd);
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
	/* One counter alone, as the data path reads a gauge. */
	shm_add(shm_metrics_slot(m, b), M_HANDSHAKE_BYTES, 16384);
	ck_assert_uint_eq(shm_metrics_sum1(m, M_HANDSHAKE_BYTES), 16384);
	ck_assert_uint_eq(shm_metrics_sum1(m, M_ACCEPTED), 2000);
	ck_assert_uint_eq(shm_metrics_sum1(m, M_COUNTER_MAX), 0);
	shm_metrics_release(m, b);
	ck_assert_uint_eq(shm_metrics_sum1(m, M_HANDSHAKE_BYTES), 0);
	ck_assert_uint_eq(shm_metrics_sum1(m, M_ACCEPTED), 2000);
	shm_metrics_destroy(m);
}
END_TEST

/* As the supervisor makes it. */
#define ZONE_SLOTS 520

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Issue 7 item 11: a reader summing while the supervisor releases a dead
 * child's slot saw its counts either in the retired totals and in the
 * slot (double), or in neither (backwards). A reader process checks that
 * the sum never decreases nor exceeds what was written, while the parent
 * plays supervisor and child: alloc, count, release, over and over, in
 * the last slot so the reader's walk is as long as it gets.
 */
START_TEST(sum_consistent_during_release)
{
	struct shm_metrics *m = shm_metrics_create(ZONE_SLOTS);
	struct shared {
		uint64_t written;
		int done;
		uint64_t reads;
	} *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t start, n = 0;
	pid_t reader;
	int st;

	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_ne(sh, MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	for (int i = 0; i < ZONE_SLOTS - 1; i++)
		ck_assert_int_eq(shm_metrics_alloc(m, 0, 0, i), i);

	reader = fork();
	ck_assert_int_ne(reader, -1);
	if (reader == 0) {
		uint64_t out[M_COUNTER_MAX], last = 0, reads = 0;

		while (!__atomic_load_n(&sh->done, __ATOMIC_ACQUIRE)) {
			/* Both readers, in turn. */
			if (reads % 2)
				out[M_ACCEPTED] =
				    shm_metrics_sum1(m, M_ACCEPTED);
			else
				shm_metrics_sum(m, out);
			/* Bumped before each count, so an upper bound. */
			uint64_t w =
			    __atomic_load_n(&sh->written, __ATOMIC_ACQUIRE);
			if (out[M_ACCEPTED] < last)
				_exit(1); /* backwards */
			if (out[M_ACCEPTED] > w)
				_exit(2); /* counted twice */
			last = out[M_ACCEPTED];
			reads++;
		}
		__atomic_store_n(&sh->reads, reads, __ATOMIC_RELEASE);
		_exit(0);
	}
	start = mono_ms();
	while (mono_ms() - start < 2000 || n < 1000) {
		int k = shm_metrics_alloc(m, 1, 0, 99);
		ck_assert_int_eq(k, ZONE_SLOTS - 1);
		__atomic_store_n(&sh->written, ++n, __ATOMIC_RELEASE);
		shm_add(shm_metrics_slot(m, k), M_ACCEPTED, 1);
		shm_metrics_release(m, k);
	}
	__atomic_store_n(&sh->done, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(waitpid(reader, &st, 0), reader);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "reader saw the sum %s",
	    WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "go backwards"
	        : WIFEXITED(st) && WEXITSTATUS(st) == 2
	        ? "count a released slot twice"
	        : "crash");
	ck_assert_uint_gt(sh->reads, 0);
	uint64_t out[M_COUNTER_MAX];
	shm_metrics_sum(m, out);
	ck_assert_uint_eq(out[M_ACCEPTED], n);
	munmap(sh, sizeof(*sh));
	shm_metrics_destroy(m);
}
END_TEST

START_TEST(listener_index_stable)
{
	struct shm_metrics *m = shm_metrics_create(4);
	char name[SHM_NAME_MAX + 1];

	ck_assert_int_eq(shm_listener_index(m, "main"), 0);
	ck_assert_int_eq(shm_listener_index(m, "second"), 1);
	/* A reload asks again, in another order: same indexes. */
	ck_assert_int_eq(shm_listener_index(m, "second"), 1);
	ck_assert_int_eq(shm_listener_index(m, "third"), 2);
	ck_assert_int_eq(shm_listener_index(m, "main"), 0);
	ck_assert_int_eq(shm_listener_index(m, ""), -1);
	ck_assert_int_eq(shm_listener_index(m, NULL), -1);
	memset(name, 'x', SHM_NAME_MAX);
	name[SHM_NAME_MAX] = '\0';
	ck_assert_int_eq(shm_listener_index(m, name), -1);
	name[SHM_NAME_MAX - 1] = '\0'; /* the longest a config allows */
	ck_assert_int_eq(shm_listener_index(m, name), 3);
	for (int i = 4; i < SHM_MAX_LISTENERS; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		ck_assert_int_eq(shm_listener_index(m, name), i);
	}
	ck_assert_int_eq(shm_listener_index(m, "one-too-many"), -1);
	ck_assert_int_eq(shm_listener_index(m, "second"), 1);

	/* A name whose index still counts connections is kept... */
	int slot = shm_metrics_alloc(m, 0, 0, 0);
	shm_listener_conn_add(shm_metrics_slot(m, slot), 2, 1);
	ck_assert_int_eq(shm_listener_forget(m, 2), -1);
	ck_assert_int_eq(shm_listener_index(m, "third"), 2);
	/* ...an idle one is freed for the next new name. */
	ck_assert_int_eq(shm_listener_forget(m, 1), 0);
	ck_assert_int_eq(shm_listener_index(m, "one-too-many"), 1);
	ck_assert_int_eq(shm_listener_index(m, "second"), -1);
	ck_assert_int_eq(shm_listener_forget(m, -1), -1);
	ck_assert_int_eq(shm_listener_forget(m, SHM_MAX_LISTENERS), -1);
	/* Once its connections are gone with its worker, it can go too. */
	shm_metrics_release(m, slot);
	ck_assert_int_eq(shm_listener_forget(m, 2), 0);
	ck_assert_int_eq(shm_listener_index(m, "second"), 2);
	shm_metrics_destroy(m);
}
END_TEST

START_TEST(listener_gauges)
{
	struct shm_metrics *m = shm_metrics_create(4);
	int a = shm_metrics_alloc(m, 0, 0, 0);
	int b = shm_metrics_alloc(m, 0, 0, 1);
	int x = shm_listener_index(m, "x"), y = shm_listener_index(m, "y");
	int last = SHM_MAX_LISTENERS - 1;
	pid_t pid;
	int st;

	/* Each worker counts in its own slot, in its own process. */
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		struct shm_slot *s = shm_metrics_slot(m, a);
		for (int i = 0; i < 10; i++)
			shm_listener_conn_add(s, x, 1);
		shm_listener_conn_add(s, x, -3);
		shm_listener_conn_add(s, y, 2);
		shm_listener_conn_add(s, last, 1);
		/* Out of range (a listener without an index): ignored. */
		shm_listener_conn_add(s, -1, 5);
		shm_listener_conn_add(s, SHM_MAX_LISTENERS, 5);
		shm_listener_conn_add(NULL, x, 5);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_int_eq(st, 0);
	shm_listener_conn_add(shm_metrics_slot(m, b), x, 4);

	ck_assert_uint_eq(shm_listener_conns(m, x), 11);
	ck_assert_uint_eq(shm_listener_conns(m, y), 2);
	ck_assert_uint_eq(shm_listener_conns(m, last), 1);
	ck_assert_uint_eq(shm_listener_conns(m, 5), 0);
	ck_assert_uint_eq(shm_listener_conns(m, -1), 14);
	ck_assert_uint_eq(shm_listener_conns(m, -2), 0);
	ck_assert_uint_eq(shm_listener_conns(m, SHM_MAX_LISTENERS), 0);

	/* One owner's miscount below zero does not poison the sum. */
	shm_listener_conn_add(shm_metrics_slot(m, b), y, -1);
	ck_assert_uint_eq(shm_listener_conns(m, y), 2);
	shm_listener_conn_add(shm_metrics_slot(m, b), y, 1);

	/* A dead worker's connections are gone with it... */
	shm_metrics_release(m, a);
	ck_assert_uint_eq(shm_listener_conns(m, x), 4);
	ck_assert_uint_eq(shm_listener_conns(m, y), 0);
	ck_assert_uint_eq(shm_listener_conns(m, -1), 4);
	/* ...and its slot starts from zero for the next one. */
	a = shm_metrics_alloc(m, 0, 0, 0);
	ck_assert_int_ge(a, 0);
	for (int i = 0; i < SHM_MAX_LISTENERS; i++)
		ck_assert_uint_eq(shm_metrics_slot(m, a)->lconns[i], 0);
	ck_assert_uint_eq(shm_listener_conns(m, -1), 4);
	shm_metrics_destroy(m);
}
END_TEST

START_TEST(listener_totals_survive_release)
{
	struct shm_metrics *m = shm_metrics_create(4);
	uint64_t st[SHM_LSTATS];
	int a = shm_metrics_alloc(m, 100, 0, 0),
	    b = shm_metrics_alloc(m, 101, 0, 1);
	int idx = shm_listener_index(m, "main");

	ck_assert_int_ge(idx, 0);
	shm_listener_stat_add(shm_metrics_slot(m, a), idx, LS_OK_SECURE, 3);
	shm_listener_stat_add(shm_metrics_slot(m, b), idx, LS_OK_SECURE, 2);
	shm_listener_stat_add(shm_metrics_slot(m, b), idx, LS_BYTES_S2C, 1000);
	shm_listener_stat_add(shm_metrics_slot(m, b), -1, LS_BYTES_S2C, 7);
	shm_listener_stat_add(
	    shm_metrics_slot(m, b), SHM_MAX_LISTENERS, LS_BYTES_S2C, 7);
	shm_listener_stats(m, idx, st);
	ck_assert_uint_eq(st[LS_OK_SECURE], 5);
	ck_assert_uint_eq(st[LS_BYTES_S2C], 1000);
	/* A child that exits: its totals stay, in the retired slot. */
	shm_metrics_release(m, b);
	shm_listener_stats(m, idx, st);
	ck_assert_uint_eq(st[LS_OK_SECURE], 5);
	ck_assert_uint_eq(st[LS_BYTES_S2C], 1000);
	/* A new slot in its place starts from zero. */
	b = shm_metrics_alloc(m, 102, 0, 1);
	ck_assert_int_ge(b, 0);
	ck_assert_uint_eq(shm_metrics_slot(m, b)->lstats[idx][LS_OK_SECURE], 0);
	shm_listener_stats(m, idx, st);
	ck_assert_uint_eq(st[LS_OK_SECURE], 5);
	/* Forgotten (no open connection): a new name starts from zero. */
	shm_metrics_release(m, a);
	ck_assert_int_eq(shm_listener_forget(m, idx), 0);
	shm_listener_stats(m, idx, st);
	ck_assert_uint_eq(st[LS_OK_SECURE], 0);
	shm_listener_stats(m, -1, st);
	ck_assert_uint_eq(st[LS_BYTES_S2C], 0);
	/* The supervisor's counters. */
	ck_assert_uint_eq(shm_sup_get(m, SUP_RELOADS_FAILED), 0);
	shm_sup_add(m, SUP_RELOADS_FAILED);
	shm_sup_add(m, SUP_RELOADS_FAILED);
	shm_sup_add(m, SHM_SUP_MAX);
	ck_assert_uint_eq(shm_sup_get(m, SUP_RELOADS_FAILED), 2);
	ck_assert_uint_eq(shm_sup_get(m, SHM_SUP_MAX), 0);
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
	tcase_add_test(tc, attach_shares_the_zone);
	tcase_add_test(tc, sum_across_processes);
	tcase_add_test(tc, sum_consistent_during_release);
	tcase_add_test(tc, listener_index_stable);
	tcase_add_test(tc, listener_gauges);
	tcase_add_test(tc, listener_totals_survive_release);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
