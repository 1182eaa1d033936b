/* Bounded fingerprint counts (common/fptable.c). */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fptable.h"

static uint64_t
sum(const struct fptable *t)
{
	uint64_t s = 0;

	for (size_t i = 0; i < t->n; i++)
		for (int r = 0; r < FP_RESULTS; r++)
			s += t->e[i].n[r];
	for (int r = 0; r < FP_RESULTS; r++)
		s += t->other[r];
	return s;
}

static const struct fp_entry *
find(const struct fptable *t, const char *ja4)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i].ja4, ja4) == 0)
			return &t->e[i];
	return NULL;
}

START_TEST(test_counts)
{
	struct fptable t;
	const struct fp_entry *e;

	fptable_init(&t, 0);
	ck_assert_uint_eq(t.max, FPTABLE_MAX);
	fptable_add(&t, "aa", "t13d1516h2_x_y", FP_SERVED, 1);
	fptable_add(&t, "aa", "t13d1516h2_x_y", FP_SERVED, 2);
	fptable_add(&t, "aa", "t13d1516h2_x_y", FP_FRONTED, 1);
	fptable_add(&t, "bb", "t13d1516h2_x_y", FP_REFUSED, 1);
	fptable_add(&t, "aa", "t13d1516h2_x_y", FP_SERVED, 0); /* nothing */
	fptable_add(&t, "aa", "t13d1516h2_x_y", FP_RESULTS, 5); /* bad */
	ck_assert_uint_eq(t.n, 2);
	e = &t.e[0];
	ck_assert_str_eq(e->ja3, "aa");
	ck_assert_uint_eq(e->n[FP_SERVED], 3);
	ck_assert_uint_eq(e->n[FP_FRONTED], 1);
	ck_assert_uint_eq(e->n[FP_REFUSED], 0);
	ck_assert_str_eq(t.e[1].ja3, "bb");
	ck_assert_uint_eq(t.e[1].n[FP_REFUSED], 1);
	/* "other" is counted apart. */
	fptable_add(&t, FPTABLE_OTHER, FPTABLE_OTHER, FP_FRONTED, 7);
	ck_assert_uint_eq(t.n, 2);
	ck_assert_uint_eq(t.other[FP_FRONTED], 7);
	ck_assert_uint_eq(sum(&t), 12);
	/* Too long: cut, and still one entry. */
	char longer[100];
	memset(longer, 'j', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	fptable_add(&t, longer, longer, FP_SERVED, 1);
	fptable_add(&t, longer, longer, FP_SERVED, 1);
	ck_assert_uint_eq(t.n, 3);
	ck_assert_uint_eq(strlen(t.e[2].ja4), FP_JA4_MAX);
	ck_assert_uint_eq(strlen(t.e[2].ja3), FP_JA3_MAX);
	ck_assert_uint_eq(t.e[2].n[FP_SERVED], 2);
	fptable_clear(&t);
	ck_assert_uint_eq(t.n, 0);
	ck_assert_uint_eq(sum(&t), 0);
}
END_TEST

START_TEST(test_bounded_keeps_the_frequent)
{
	struct fptable t;
	char ja4[FP_JA4_MAX + 1];
	uint64_t added = 0;

	fptable_init(&t, 10);
	/* Five fingerprints seen often... */
	for (int k = 0; k < 5; k++) {
		snprintf(ja4, sizeof(ja4), "app%d", k);
		fptable_add(&t, "x", ja4, FP_SERVED, 50);
		added += 50;
	}
	/* ...then a flood of 10000 that are seen once each. */
	for (int k = 0; k < 10000; k++) {
		snprintf(ja4, sizeof(ja4), "probe%d", k);
		fptable_add(&t, "y", ja4, FP_FRONTED, 1);
		added++;
		ck_assert_uint_le(t.n, 10);
	}
	for (int k = 0; k < 5; k++) {
		snprintf(ja4, sizeof(ja4), "app%d", k);
		const struct fp_entry *e = find(&t, ja4);
		ck_assert_ptr_nonnull(e);
		ck_assert_uint_eq(e->n[FP_SERVED], 50);
	}
	ck_assert_uint_eq(sum(&t), added);
	ck_assert_uint_ge(t.other[FP_FRONTED], 10000 - 5);
	/* The apps still count after the flood. */
	fptable_add(&t, "x", "app0", FP_SERVED, 1);
	ck_assert_uint_eq(find(&t, "app0")->n[FP_SERVED], 51);
}
END_TEST

START_TEST(test_merge)
{
	struct fptable a, b;

	fptable_init(&a, 3);
	fptable_init(&b, 0);
	fptable_add(&a, "1", "one", FP_SERVED, 4);
	fptable_add(&a, "2", "two", FP_FRONTED, 2);
	fptable_add(&a, FPTABLE_OTHER, FPTABLE_OTHER, FP_REFUSED, 3);
	fptable_add(&b, "1", "one", FP_SERVED, 1);
	fptable_merge(&b, &a);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(find(&b, "one")->n[FP_SERVED], 5);
	ck_assert_uint_eq(find(&b, "two")->n[FP_FRONTED], 2);
	ck_assert_uint_eq(b.other[FP_REFUSED], 3);
	ck_assert_uint_eq(sum(&b), 10);
	ck_assert_str_eq(fp_result_name(FP_FRONTED), "fronted");
	ck_assert_str_eq(fp_result_name(FP_RESULTS), "?");
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("fptable");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_counts);
	tcase_add_test(tc, test_bounded_keeps_the_frequent);
	tcase_add_test(tc, test_merge);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
