#include "autoconf.h"

#include <sys/mman.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "crypto.h"
#include "replay.h"
#include "util.h"

/* Distinct, well-spread test keys: SHA256(label || i)[0:16]. */
static void
key_of(uint32_t i, uint8_t key[REPLAY_KEY_LEN])
{
	static const char label[] = "replay test key";
	uint8_t d[32];

	crypto_sha256(label, sizeof(label) - 1, &i, sizeof(i), d);
	memcpy(key, d, REPLAY_KEY_LEN);
}

START_TEST(test_siphash_reference)
{
	/* SipHash-2-4 paper, appendix A vectors: k = 00..0f, m = 00..0f. */
	uint8_t k[16], m[16];

	for (int i = 0; i < 16; i++)
		k[i] = m[i] = (uint8_t)i;
	ck_assert_uint_eq(replay_siphash16(k, m), 0x3f2acc7f57c29bdbULL);
}
END_TEST

START_TEST(test_siphash_openssl)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
	ck_assert_ptr_nonnull(mac);

	for (int n = 0; n < 200; n++) {
		uint8_t k[16], m[16], out[8];
		size_t outlen = 0;
		size_t size = 8;
		OSSL_PARAM params[2] = {
			OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
			OSSL_PARAM_construct_end(),
		};
		EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
		uint64_t want = 0;

		random_bytes(k, sizeof(k));
		random_bytes(m, sizeof(m));
		ck_assert_ptr_nonnull(ctx);
		ck_assert_int_eq(EVP_MAC_init(ctx, k, sizeof(k), params), 1);
		ck_assert_int_eq(EVP_MAC_update(ctx, m, sizeof(m)), 1);
		ck_assert_int_eq(
		    EVP_MAC_final(ctx, out, &outlen, sizeof(out)), 1);
		ck_assert_uint_eq(outlen, 8);
		EVP_MAC_CTX_free(ctx);
		for (int i = 7; i >= 0; i--)
			want = (want << 8) | out[i];
		ck_assert_uint_eq(replay_siphash16(k, m), want);
	}
	EVP_MAC_free(mac);
}
END_TEST

START_TEST(test_create_invalid)
{
	errno = 0;
	ck_assert_ptr_null(replay_create(0, 60));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(replay_create(100, 0));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(replay_create(SIZE_MAX, 60));
	ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(test_insert_then_replay)
{
	struct replay_cache *rc = replay_create(1000, 3600);
	uint8_t key[REPLAY_KEY_LEN];

	ck_assert_ptr_nonnull(rc);
	key_of(1, key);
	ck_assert_uint_eq(replay_count(rc), 0);
	ck_assert_int_eq(replay_check_insert(rc, key, 1000000), 0);
	ck_assert_uint_eq(replay_count(rc), 1);
	ck_assert_int_eq(replay_check_insert(rc, key, 1000000), 1);
	ck_assert_int_eq(replay_check_insert(rc, key, 1000001), 1);
	ck_assert_uint_eq(replay_count(rc), 1);
	replay_destroy(rc);
}
END_TEST

/* A binary upgrade maps the same memfd (at another address): it sees
 * what was inserted, and what it inserts is seen. A memfd that is not
 * a cache is refused. */
START_TEST(test_attach_shares_the_cache)
{
	int fd = -1;
	struct replay_cache *a = replay_create_fd(1000, 3600, &fd), *b;
	uint8_t key[REPLAY_KEY_LEN];

	ck_assert_ptr_nonnull(a);
	ck_assert_int_ge(fd, 0);
	key_of(1, key);
	ck_assert_int_eq(replay_check_insert(a, key, 1000000), 0);
	b = replay_attach(fd);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	ck_assert_int_eq(replay_check_insert(b, key, 1000001), 1);
	key_of(2, key);
	ck_assert_int_eq(replay_check_insert(b, key, 1000001), 0);
	ck_assert_int_eq(replay_check_insert(a, key, 1000002), 1);
	ck_assert_uint_eq(replay_count(a), 2);
	replay_destroy(b);
	replay_destroy(a);
	close(fd);
	fd = memfd_create("junk", 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
	ck_assert_ptr_null(replay_attach(fd));
	close(fd);
}
END_TEST

START_TEST(test_different_keys)
{
	struct replay_cache *rc = replay_create(4096, 3600);
	uint8_t key[REPLAY_KEY_LEN], other[REPLAY_KEY_LEN];

	ck_assert_ptr_nonnull(rc);
	key_of(7, key);
	ck_assert_int_eq(replay_check_insert(rc, key, 5000), 0);
	/* Every key one bit away is a different handshake. */
	for (int bit = 0; bit < REPLAY_KEY_LEN * 8; bit++) {
		memcpy(other, key, sizeof(other));
		other[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		ck_assert_int_eq(replay_check_insert(rc, other, 5000), 0);
	}
	for (int bit = 0; bit < REPLAY_KEY_LEN * 8; bit++) {
		memcpy(other, key, sizeof(other));
		other[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		ck_assert_int_eq(replay_check_insert(rc, other, 5001), 1);
	}
	ck_assert_int_eq(replay_check_insert(rc, key, 5001), 1);
	ck_assert_uint_eq(replay_count(rc), 1 + REPLAY_KEY_LEN * 8);
	replay_destroy(rc);
}
END_TEST

START_TEST(test_expiry)
{
	struct replay_cache *rc = replay_create(100, 60);
	uint8_t key[REPLAY_KEY_LEN];

	ck_assert_ptr_nonnull(rc);
	key_of(3, key);
	ck_assert_int_eq(replay_check_insert(rc, key, 1000), 0);
	ck_assert_int_eq(replay_check_insert(rc, key, 1059), 1);
	/* Older than the window: forgotten, so accepted and re-remembered. */
	ck_assert_int_eq(replay_check_insert(rc, key, 1060), 0);
	ck_assert_int_eq(replay_check_insert(rc, key, 1061), 1);
	ck_assert_int_eq(replay_check_insert(rc, key, 1119), 1);
	ck_assert_int_eq(replay_check_insert(rc, key, 1120), 0);
	/* Re-remembering reused the slot. */
	ck_assert_uint_eq(replay_count(rc), 1);
	replay_destroy(rc);
}
END_TEST

START_TEST(test_replay_keeps_first_time)
{
	struct replay_cache *rc = replay_create(100, 60);
	uint8_t key[REPLAY_KEY_LEN];

	ck_assert_ptr_nonnull(rc);
	key_of(4, key);
	ck_assert_int_eq(replay_check_insert(rc, key, 2000), 0);
	ck_assert_int_eq(replay_check_insert(rc, key, 2050), 1);
	/* The replay at 2050 did not extend the entry's life. */
	ck_assert_int_eq(replay_check_insert(rc, key, 2060), 0);
	replay_destroy(rc);
}
END_TEST

START_TEST(test_capacity)
{
	const size_t entries = 1024;
	struct replay_cache *rc = replay_create(entries, 1 << 30);
	uint8_t key[REPLAY_KEY_LEN];
	size_t mapsize, cap;
	uint32_t i, n = 10 * entries;

	ck_assert_ptr_nonnull(rc);
	mapsize = replay_mapsize(rc);
	cap = replay_capacity(rc);
	ck_assert_uint_ge(cap, entries);
	ck_assert_uint_lt(cap, entries + 8);
	ck_assert_uint_le(mapsize, entries * 64);
	for (i = 0; i < n; i++) {
		key_of(i, key);
		ck_assert_int_eq(replay_check_insert(rc, key, 1000000 + i), 0);
		ck_assert_uint_le(replay_count(rc), cap);
	}
	ck_assert_uint_eq(replay_mapsize(rc), mapsize);
	ck_assert_uint_eq(replay_count(rc), cap);
	/* Everything is inside the window, so evictions were early ones. */
	ck_assert_uint_eq(replay_early_evictions(rc), n - cap);
	/*
	 * The newest keys survive: a bucket keeps its 8 newest keys, and 32
	 * keys over 128 buckets put 9 in one with odds near 1e-8.
	 */
	for (i = n - 32; i < n; i++) {
		key_of(i, key);
		ck_assert_int_eq(replay_check_insert(rc, key, 1000000 + n), 1);
	}
	/* The oldest are gone (each bucket saw about 80 keys). */
	key_of(0, key);
	ck_assert_int_eq(replay_check_insert(rc, key, 1000000 + n), 0);
	replay_destroy(rc);

	/* A production size stays near 24 bytes an entry. */
	rc = replay_create(1000000, 7200);
	ck_assert_ptr_nonnull(rc);
	ck_assert_uint_le(replay_mapsize(rc), 1000000 * 32);
	replay_destroy(rc);
}
END_TEST

#define RACE_PROCS 4
#define RACE_KEYS  10000

START_TEST(test_cross_process_race)
{
	struct replay_cache *rc = replay_create(1 << 20, 3600);
	uint32_t *accepted;
	pid_t pids[RACE_PROCS];
	int go[2];

	ck_assert_ptr_nonnull(rc);
	accepted = mmap(NULL, RACE_KEYS * sizeof(*accepted),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(accepted, MAP_FAILED);
	ck_assert_int_eq(pipe(go), 0);

	for (int p = 0; p < RACE_PROCS; p++) {
		pids[p] = fork();
		ck_assert_int_ge(pids[p], 0);
		if (pids[p] == 0) {
			char c;
			uint8_t key[REPLAY_KEY_LEN];

			close(go[1]);
			/* Start together: EOF arrives for all at once. */
			if (read(go[0], &c, 1) != 0)
				_exit(2);
			for (uint32_t i = 0; i < RACE_KEYS; i++) {
				key_of(i, key);
				if (replay_check_insert(rc, key, 100000) == 0)
					__atomic_fetch_add(
					    &accepted[i], 1, __ATOMIC_SEQ_CST);
			}
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int p = 0; p < RACE_PROCS; p++) {
		int st;

		ck_assert_int_eq(waitpid(pids[p], &st, 0), pids[p]);
		ck_assert(WIFEXITED(st));
		ck_assert_int_eq(WEXITSTATUS(st), 0);
	}
	for (uint32_t i = 0; i < RACE_KEYS; i++)
		ck_assert_msg(accepted[i] == 1, "key %u accepted %u times", i,
		    accepted[i]);
	ck_assert_uint_eq(replay_count(rc), RACE_KEYS);
	ck_assert_uint_eq(replay_early_evictions(rc), 0);
	munmap(accepted, RACE_KEYS * sizeof(*accepted));
	replay_destroy(rc);
}
END_TEST

START_TEST(test_dead_lock_holder)
{
	struct replay_cache *rc = replay_create(4096, 3600);
	uint8_t key[REPLAY_KEY_LEN];
	pid_t holder, waiter;
	int ready[2], st;
	char c;

	ck_assert_ptr_nonnull(rc);
	key_of(42, key);
	ck_assert_int_eq(pipe(ready), 0);

	holder = fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		close(ready[0]);
		if (replay_test_lock_bucket(rc, key) != 0)
			_exit(1);
		if (write(ready[1], "L", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);

	/* The lock really is held: another process blocks on it. */
	waiter = fork();
	ck_assert_int_ge(waiter, 0);
	if (waiter == 0) {
		/* check's own SIGALRM handler would kill the whole group. */
		signal(SIGALRM, SIG_DFL);
		alarm(1);
		replay_check_insert(rc, key, 100000);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(waiter, &st, 0), waiter);
	ck_assert(WIFSIGNALED(st));
	ck_assert_int_eq(WTERMSIG(st), SIGALRM);

	/* The holder dies with the lock; the others carry on. */
	ck_assert_int_eq(kill(holder, SIGKILL), 0);
	ck_assert_int_eq(waitpid(holder, &st, 0), holder);
	ck_assert(WIFSIGNALED(st));
	/* A wedge here ends in the test case's timeout. */
	ck_assert_int_eq(replay_check_insert(rc, key, 100000), 0);
	ck_assert_int_eq(replay_check_insert(rc, key, 100001), 1);
	/* And the lock is released normally afterwards. */
	waiter = fork();
	ck_assert_int_ge(waiter, 0);
	if (waiter == 0) {
		signal(SIGALRM, SIG_DFL);
		alarm(5);
		_exit(replay_check_insert(rc, key, 100002) == 1 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(waiter, &st, 0), waiter);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	replay_destroy(rc);
}
END_TEST

/* A process dies holding the lock covering key; 0 when it is dead. */
static int
die_holding(struct replay_cache *rc, const uint8_t key[REPLAY_KEY_LEN])
{
	pid_t holder = fork();
	int st;

	if (holder == -1)
		return -1;
	if (holder == 0)
		_exit(replay_test_lock_bucket(rc, key) == 0 ? 0 : 1);
	if (waitpid(holder, &st, 0) != holder || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return -1;
	return 0;
}

/*
 * 1 if another process sees key as a replay at time now within secs
 * seconds (0 if it is blocked that long).
 */
static int
replay_in_child(struct replay_cache *rc, const uint8_t key[REPLAY_KEY_LEN],
    int64_t now, unsigned secs)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		signal(SIGALRM, SIG_DFL);
		alarm(secs);
		_exit(replay_check_insert(rc, key, now) == 1 ? 0 : 1);
	}
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	    WEXITSTATUS(st) == 0;
}

/*
 * Issue 7 item 11: a process handed a dead holder's lock (EOWNERDEAD)
 * that dies before pthread_mutex_consistent() leaves it ENOTRECOVERABLE.
 * The stripe then failed open forever: every replay of its keys passed.
 * Several rounds, as the stripe's spare lock is reused.
 */
START_TEST(test_unrecoverable_lock)
{
	struct replay_cache *rc = replay_create(4096, 3600);
	uint8_t key[REPLAY_KEY_LEN], first[REPLAY_KEY_LEN];
	int64_t t = 100000;

	ck_assert_ptr_nonnull(rc);
	key_of(7, first);
	ck_assert_int_eq(replay_check_insert(rc, first, t), 0);
	for (int round = 0; round < 5; round++) {
		key_of(7, key);
		ck_assert_int_eq(die_holding(rc, key), 0);
		ck_assert_int_eq(
		    replay_test_poison_bucket(rc, key), EOWNERDEAD);
		/* What was remembered before is still there... */
		ck_assert_int_eq(replay_check_insert(rc, first, ++t), 1);
		/* ...and new keys are remembered, here and elsewhere. */
		key_of(1000 + (uint32_t)round, key);
		ck_assert_int_eq(replay_check_insert(rc, key, ++t), 0);
		ck_assert_int_eq(replay_check_insert(rc, key, ++t), 1);
		ck_assert_int_eq(replay_in_child(rc, key, ++t, 5), 1);
		ck_assert_int_eq(replay_in_child(rc, first, ++t, 5), 1);
	}
	/* The stripe's lock works normally afterwards. */
	ck_assert_int_eq(replay_test_lock_bucket(rc, first), 0);
	ck_assert_int_eq(replay_in_child(rc, first, ++t, 1), 0); /* blocked */
	replay_destroy(rc);
}
END_TEST

/*
 * The same under load: processes race for one stripe's lock while others
 * die holding it and leave it unrecoverable, again and again. Each key
 * must still be accepted exactly once, i.e. no process ever failed open
 * and no two held the lock together.
 */
#define LOAD_PROCS  3
#define LOAD_ROUNDS 20000
#define LOAD_LAG    3 /* rounds one process may run ahead of the others */

struct load {
	int progress[LOAD_PROCS]; /* rounds done */
	int stop; /* last round + 1, once the parent has seen enough */
	int accepted[LOAD_ROUNDS];
};

static void
load_key(int round, uint8_t key[REPLAY_KEY_LEN])
{
	memset(key, 0, REPLAY_KEY_LEN);
	memcpy(key, &round, sizeof(round));
	key[REPLAY_KEY_LEN - 1] = 0x5a;
}

static int
load_min_progress(struct load *ld)
{
	int m = INT_MAX;

	for (int j = 0; j < LOAD_PROCS; j++) {
		int p = __atomic_load_n(&ld->progress[j], __ATOMIC_ACQUIRE);
		if (p < m)
			m = p;
	}
	return m;
}

static void
load_run(struct replay_cache *rc, struct load *ld, int me)
{
	uint8_t key[REPLAY_KEY_LEN];

	for (int r = 0; r < __atomic_load_n(&ld->stop, __ATOMIC_ACQUIRE); r++) {
		/* Keys of the last rounds must stay in the 8-way bucket. */
		while (load_min_progress(ld) < r - LOAD_LAG)
			sched_yield();
		load_key(r, key);
		/* Times grow with the rounds, so the oldest is evicted. */
		if (replay_check_insert(rc, key, 1000 + r) == 0)
			__atomic_fetch_add(
			    &ld->accepted[r], 1, __ATOMIC_RELAXED);
		__atomic_store_n(&ld->progress[me], r + 1, __ATOMIC_RELEASE);
	}
	_exit(0);
}

START_TEST(test_unrecoverable_lock_under_load)
{
	/* One bucket, one stripe: every lookup contends. */
	struct replay_cache *rc = replay_create(8, 3600);
	struct load *ld = mmap(NULL, sizeof(*ld), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint8_t key[REPLAY_KEY_LEN];
	pid_t pids[LOAD_PROCS];
	int broken = 0, cycles = 0, st, last;

	ck_assert_ptr_nonnull(rc);
	ck_assert_ptr_ne(ld, MAP_FAILED);
	memset(ld, 0, sizeof(*ld));
	ld->stop = LOAD_ROUNDS;
	for (int i = 0; i < LOAD_PROCS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0)
			load_run(rc, ld, i);
	}
	load_key(-1, key);
	/* Until 20 locks were left unrecoverable, or the rounds run out. */
	while (broken < 20 && load_min_progress(ld) < LOAD_ROUNDS / 2) {
		ck_assert_int_eq(die_holding(rc, key), 0);
		/* A racing process may take the dead holder's lock first. */
		if (replay_test_poison_bucket(rc, key) == EOWNERDEAD)
			broken++;
		cycles++;
	}
	last = 0;
	for (int j = 0; j < LOAD_PROCS; j++)
		if (ld->progress[j] > last)
			last = ld->progress[j];
	__atomic_store_n(&ld->stop, last + LOAD_LAG + 1, __ATOMIC_RELEASE);
	for (int i = 0; i < LOAD_PROCS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	last = ld->stop;
	for (int r = 0; r < last; r++)
		ck_assert_msg(ld->accepted[r] == 1,
		    "round %d of %d: key accepted %d times (%d of %d "
		    "locks broken)",
		    r, last, ld->accepted[r], broken, cycles);
	munmap(ld, sizeof(*ld));
	replay_destroy(rc);
}
END_TEST

static Suite *
replay_suite(void)
{
	Suite *s = suite_create("replay");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_siphash_reference);
	tcase_add_test(tc, test_siphash_openssl);
	tcase_add_test(tc, test_create_invalid);
	tcase_add_test(tc, test_insert_then_replay);
	tcase_add_test(tc, test_different_keys);
	tcase_add_test(tc, test_attach_shares_the_cache);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_replay_keeps_first_time);
	tcase_add_test(tc, test_capacity);
	tcase_add_test(tc, test_cross_process_race);
	tcase_add_test(tc, test_dead_lock_holder);
	tcase_add_test(tc, test_unrecoverable_lock);
	tcase_add_test(tc, test_unrecoverable_lock_under_load);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(replay_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
