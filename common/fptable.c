/* Bounded fingerprint counts (fptable.h). */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "fptable.h"

static uint64_t
total(const struct fp_entry *e)
{
	uint64_t t = 0;

	for (int r = 0; r < FP_RESULTS; r++)
		t += e->n[r];
	return t;
}

void
fptable_init(struct fptable *t, size_t max)
{
	memset(t, 0, sizeof(*t));
	t->max = max == 0 || max > FPTABLE_MAX ? FPTABLE_MAX : max;
}

void
fptable_clear(struct fptable *t)
{
	fptable_init(t, t->max);
}

void
fptable_add(struct fptable *t, const char *ja3, const char *ja4,
    enum fp_result r, uint64_t n)
{
	struct fp_entry *e = NULL;
	size_t i;

	if ((unsigned)r >= FP_RESULTS || n == 0)
		return;
	if (strcmp(ja3, FPTABLE_OTHER) == 0 &&
	    strcmp(ja4, FPTABLE_OTHER) == 0) {
		t->other[r] += n;
		return;
	}
	for (i = 0; i < t->n; i++)
		if (strncmp(t->e[i].ja4, ja4, FP_JA4_MAX) == 0 &&
		    strncmp(t->e[i].ja3, ja3, FP_JA3_MAX) == 0) {
			t->e[i].n[r] += n;
			return;
		}
	if (t->n < t->max)
		e = &t->e[t->n++];
	else {
		/* Full: the entry seen least makes room. */
		e = &t->e[0];
		for (i = 1; i < t->n; i++)
			if (total(&t->e[i]) < total(e))
				e = &t->e[i];
		for (int k = 0; k < FP_RESULTS; k++)
			t->other[k] += e->n[k];
	}
	memset(e, 0, sizeof(*e));
	snprintf(e->ja3, sizeof(e->ja3), "%s", ja3);
	snprintf(e->ja4, sizeof(e->ja4), "%s", ja4);
	e->n[r] = n;
}

void
fptable_merge(struct fptable *dst, const struct fptable *src)
{
	for (size_t i = 0; i < src->n; i++)
		for (int r = 0; r < FP_RESULTS; r++)
			fptable_add(dst, src->e[i].ja3, src->e[i].ja4,
			    (enum fp_result)r, src->e[i].n[r]);
	for (int r = 0; r < FP_RESULTS; r++)
		dst->other[r] += src->other[r];
}

const char *
fp_result_name(enum fp_result r)
{
	static const char *const names[] = { "served", "fronted", "refused" };

	return (unsigned)r < FP_RESULTS ? names[r] : "?";
}
