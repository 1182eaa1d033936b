#include "autoconf.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "shm.h"

_Static_assert(M_COUNTER_MAX <= SHM_SLOT_WORDS, "too many counters");
_Static_assert(sizeof(struct shm_slot) % 64 == 0, "slot not cache aligned");

struct shm_metrics {
	size_t nslots;
	size_t maplen;
	struct shm_slot retired; /* counters of children that exited */
	struct shm_slot slots[];
};

struct shm_metrics *
shm_metrics_create(size_t nslots)
{
	size_t len =
	    sizeof(struct shm_metrics) + nslots * sizeof(struct shm_slot);
	struct shm_metrics *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	memset(m, 0, len);
	m->nslots = nslots;
	m->maplen = len;
	return m;
}

void
shm_metrics_destroy(struct shm_metrics *m)
{
	if (m)
		munmap(m, m->maplen);
}

size_t
shm_metrics_nslots(const struct shm_metrics *m)
{
	return m->nslots;
}

int
shm_metrics_alloc(struct shm_metrics *m, pid_t pid, int role, int index)
{
	for (size_t i = 0; i < m->nslots; i++) {
		struct shm_slot *s = &m->slots[i];
		if (s->in_use)
			continue;
		memset(s->v, 0, sizeof(s->v));
		s->pid = pid;
		s->role = role;
		s->index = index;
		__atomic_store_n(&s->in_use, 1, __ATOMIC_RELEASE);
		return (int)i;
	}
	return -1;
}

void
shm_metrics_release(struct shm_metrics *m, int slot)
{
	if (slot < 0 || (size_t)slot >= m->nslots)
		return;
	struct shm_slot *s = &m->slots[slot];
	for (int c = 0; c < M_COUNTERS_MONOTONIC; c++)
		m->retired.v[c] += __atomic_load_n(&s->v[c], __ATOMIC_RELAXED);
	__atomic_store_n(&s->in_use, 0, __ATOMIC_RELEASE);
	memset(s->v, 0, sizeof(s->v));
}

struct shm_slot *
shm_metrics_slot(struct shm_metrics *m, int slot)
{
	if (slot < 0 || (size_t)slot >= m->nslots)
		return NULL;
	return &m->slots[slot];
}

void
shm_metrics_sum(const struct shm_metrics *m, uint64_t out[M_COUNTER_MAX])
{
	for (int c = 0; c < M_COUNTER_MAX; c++)
		out[c] = __atomic_load_n(&m->retired.v[c], __ATOMIC_RELAXED);
	for (size_t i = 0; i < m->nslots; i++) {
		const struct shm_slot *s = &m->slots[i];
		if (!__atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE))
			continue;
		for (int c = 0; c < M_COUNTER_MAX; c++)
			out[c] += __atomic_load_n(&s->v[c], __ATOMIC_RELAXED);
	}
}
