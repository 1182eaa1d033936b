#include "autoconf.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "shm.h"

_Static_assert(M_COUNTER_MAX <= SHM_SLOT_WORDS, "too many counters");
_Static_assert(sizeof(struct shm_slot) % 64 == 0, "slot not cache aligned");

/*
 * A reader retries while a release is under way. The supervisor finishes
 * one in microseconds; if it died in the middle, the daemon is going
 * down anyway, so after this many tries a reader takes what it has
 * rather than spin forever.
 */
#define SHM_READ_TRIES 100000

#define SHM_MAGIC 0x6d74736d /* "mtsm" */
/* 2: 32 words; 3: listener totals; 4: 48; 5: dclinks; 6: user scans */
#define SHM_VERSION 6

struct shm_metrics {
	uint32_t magic, version;
	size_t nslots;
	size_t maplen;
	/* odd while the supervisor folds and frees a slot (seqlock) */
	uint32_t seq;
	/* listener name -> index; "" = free; written by the supervisor */
	char lnames[SHM_MAX_LISTENERS][SHM_NAME_MAX];
	uint64_t sup[SHM_SUP_MAX]; /* the supervisor's counters */
	struct shm_slot retired; /* counters of children that exited */
	struct shm_slot slots[];
};

struct shm_metrics *
shm_metrics_create_fd(size_t nslots, int *fd_out)
{
	size_t len =
	    sizeof(struct shm_metrics) + nslots * sizeof(struct shm_slot);
	struct shm_metrics *m;
	/* In a memfd, so that a binary upgrade can take it over. */
	int fd = memfd_create("mtprotod-metrics", MFD_CLOEXEC);

	if (fd == -1)
		return NULL;
	if (ftruncate(fd, (off_t)len) == -1 ||
	    (m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
	        MAP_FAILED) {
		close(fd);
		return NULL;
	}
	memset(m, 0, len);
	m->magic = SHM_MAGIC;
	m->version = SHM_VERSION;
	m->nslots = nslots;
	m->maplen = len;
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	return m;
}

struct shm_metrics *
shm_metrics_create(size_t nslots)
{
	return shm_metrics_create_fd(nslots, NULL);
}

struct shm_metrics *
shm_metrics_attach(int fd)
{
	struct stat st;
	struct shm_metrics *m;

	if (fstat(fd, &st) == -1 || st.st_size < (off_t)sizeof(*m))
		return NULL;
	m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
	    fd, 0);
	if (m == MAP_FAILED)
		return NULL;
	if (m->magic != SHM_MAGIC || m->version != SHM_VERSION ||
	    m->maplen != (size_t)st.st_size ||
	    m->maplen !=
	        sizeof(struct shm_metrics) +
	            m->nslots * sizeof(struct shm_slot)) {
		munmap(m, (size_t)st.st_size);
		return NULL;
	}
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

/* Readers may be looking: every word is written atomically. */
static void
slot_clear(struct shm_slot *s)
{
	for (int c = 0; c < SHM_SLOT_WORDS; c++)
		__atomic_store_n(&s->v[c], 0, __ATOMIC_RELAXED);
	for (int i = 0; i < SHM_MAX_LISTENERS; i++) {
		__atomic_store_n(&s->lconns[i], 0, __ATOMIC_RELAXED);
		for (int k = 0; k < SHM_LSTATS; k++)
			__atomic_store_n(&s->lstats[i][k], 0, __ATOMIC_RELAXED);
	}
}

int
shm_metrics_alloc(struct shm_metrics *m, pid_t pid, int role, int index)
{
	for (size_t i = 0; i < m->nslots; i++) {
		struct shm_slot *s = &m->slots[i];
		if (s->in_use)
			continue;
		slot_clear(s);
		s->pid = pid;
		s->role = role;
		s->index = index;
		/* A reader that sees it in use sees it zeroed. */
		__atomic_store_n(&s->in_use, 1, __ATOMIC_RELEASE);
		return (int)i;
	}
	return -1;
}

/*
 * Seqlock writer (the supervisor is the only one): between the two
 * increments a reader may see the totals with or without the slot, so
 * it reads again.
 */
void
shm_metrics_release(struct shm_metrics *m, int slot)
{
	if (slot < 0 || (size_t)slot >= m->nslots)
		return;
	struct shm_slot *s = &m->slots[slot];
	uint32_t seq = __atomic_load_n(&m->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&m->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (int c = 0; c < M_COUNTERS_MONOTONIC; c++)
		__atomic_store_n(&m->retired.v[c],
		    __atomic_load_n(&m->retired.v[c], __ATOMIC_RELAXED) +
		        __atomic_load_n(&s->v[c], __ATOMIC_RELAXED),
		    __ATOMIC_RELAXED);
	for (int i = 0; i < SHM_MAX_LISTENERS; i++)
		for (int k = 0; k < SHM_LSTATS; k++)
			__atomic_store_n(&m->retired.lstats[i][k],
			    __atomic_load_n(
			        &m->retired.lstats[i][k], __ATOMIC_RELAXED) +
			        __atomic_load_n(
			            &s->lstats[i][k], __ATOMIC_RELAXED),
			    __ATOMIC_RELAXED);
	__atomic_store_n(&s->in_use, 0, __ATOMIC_RELAXED);
	slot_clear(s);
	__atomic_store_n(&m->seq, seq + 2, __ATOMIC_RELEASE);
}

struct shm_slot *
shm_metrics_slot(struct shm_metrics *m, int slot)
{
	if (slot < 0 || (size_t)slot >= m->nslots)
		return NULL;
	return &m->slots[slot];
}

struct shm_slot *
shm_metrics_own(struct shm_metrics *m, pid_t pid)
{
	for (size_t i = 0; m != NULL && i < m->nslots; i++)
		if (__atomic_load_n(&m->slots[i].in_use, __ATOMIC_ACQUIRE) &&
		    m->slots[i].pid == pid)
			return &m->slots[i];
	return NULL;
}

static void
sum_once(const struct shm_metrics *m, uint64_t out[M_COUNTER_MAX])
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

void
shm_metrics_sum(const struct shm_metrics *m, uint64_t out[M_COUNTER_MAX])
{
	for (int tries = 0; tries < SHM_READ_TRIES; tries++) {
		uint32_t seq = __atomic_load_n(&m->seq, __ATOMIC_ACQUIRE);

		if (seq & 1) {
			sched_yield();
			continue;
		}
		sum_once(m, out);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&m->seq, __ATOMIC_RELAXED) == seq)
			return;
	}
	sum_once(m, out);
}

static uint64_t
sum1_once(const struct shm_metrics *m, enum shm_counter c)
{
	uint64_t n = __atomic_load_n(&m->retired.v[c], __ATOMIC_RELAXED);

	for (size_t i = 0; i < m->nslots; i++) {
		const struct shm_slot *s = &m->slots[i];
		if (__atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE))
			n += __atomic_load_n(&s->v[c], __ATOMIC_RELAXED);
	}
	return n;
}

/* As shm_metrics_sum, for one counter. */
uint64_t
shm_metrics_sum1(const struct shm_metrics *m, enum shm_counter c)
{
	if ((int)c < 0 || c >= M_COUNTER_MAX)
		return 0;
	for (int tries = 0; tries < SHM_READ_TRIES; tries++) {
		uint32_t seq = __atomic_load_n(&m->seq, __ATOMIC_ACQUIRE);
		uint64_t n;

		if (seq & 1) {
			sched_yield();
			continue;
		}
		n = sum1_once(m, c);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&m->seq, __ATOMIC_RELAXED) == seq)
			return n;
	}
	return sum1_once(m, c);
}

int
shm_listener_index(struct shm_metrics *m, const char *name)
{
	int free_idx = -1;

	if (name == NULL || name[0] == '\0' || strlen(name) >= SHM_NAME_MAX)
		return -1;
	for (int i = 0; i < SHM_MAX_LISTENERS; i++) {
		if (m->lnames[i][0] == '\0') {
			if (free_idx == -1)
				free_idx = i;
		} else if (strcmp(m->lnames[i], name) == 0)
			return i;
	}
	if (free_idx != -1)
		strcpy(m->lnames[free_idx], name);
	return free_idx;
}

int
shm_listener_forget(struct shm_metrics *m, int idx)
{
	if (idx < 0 || idx >= SHM_MAX_LISTENERS ||
	    shm_listener_conns(m, idx) != 0)
		return -1;
	m->lnames[idx][0] = '\0';
	/* A new name on this index starts from zero (what live slots of
	 * old workers still count under it is theirs to lose). */
	for (int k = 0; k < SHM_LSTATS; k++)
		__atomic_store_n(
		    &m->retired.lstats[idx][k], 0, __ATOMIC_RELAXED);
	return 0;
}

/*
 * A gauge is read as signed so that one owner's miscount below zero
 * costs its own slot only, instead of adding four billion to the sum
 * and refusing every client.
 */
static uint64_t
slot_conns(const struct shm_slot *s, int idx)
{
	int32_t v = (int32_t)__atomic_load_n(&s->lconns[idx], __ATOMIC_RELAXED);

	return v > 0 ? (uint64_t)v : 0;
}

uint64_t
shm_listener_conns(const struct shm_metrics *m, int idx)
{
	uint64_t n = 0;

	if (idx < -1 || idx >= SHM_MAX_LISTENERS)
		return 0;
	for (size_t i = 0; i < m->nslots; i++) {
		const struct shm_slot *s = &m->slots[i];
		if (!__atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE))
			continue;
		if (idx >= 0)
			n += slot_conns(s, idx);
		else
			for (int k = 0; k < SHM_MAX_LISTENERS; k++)
				n += slot_conns(s, k);
	}
	return n;
}

size_t
shm_dclinks(const struct shm_metrics *m, struct shm_dclinks *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nslots; i++) {
		const struct shm_slot *s = &m->slots[i];
		if (!__atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE))
			continue;
		for (int k = 0; k < SHM_DC_POOLS; k++) {
			const struct shm_dclinks *g = &s->dclinks[k];
			int32_t dc = __atomic_load_n(&g->dc, __ATOMIC_ACQUIRE);
			size_t j;
			if (dc == 0)
				continue;
			for (j = 0; j < n && out[j].dc != dc; j++)
				;
			if (j == n) {
				if (n == max)
					continue;
				memset(&out[n++], 0, sizeof(*out));
				out[j].dc = dc;
			}
			out[j].up += __atomic_load_n(&g->up, __ATOMIC_RELAXED);
			out[j].pending +=
			    __atomic_load_n(&g->pending, __ATOMIC_RELAXED);
			out[j].waiting +=
			    __atomic_load_n(&g->waiting, __ATOMIC_RELAXED);
		}
	}
	return n;
}

static void
lstats_once(const struct shm_metrics *m, int idx, uint64_t out[SHM_LSTATS])
{
	for (int k = 0; k < SHM_LSTATS; k++)
		out[k] = __atomic_load_n(
		    &m->retired.lstats[idx][k], __ATOMIC_RELAXED);
	for (size_t i = 0; i < m->nslots; i++) {
		const struct shm_slot *s = &m->slots[i];

		if (!__atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE))
			continue;
		for (int k = 0; k < SHM_LSTATS; k++)
			out[k] += __atomic_load_n(
			    &s->lstats[idx][k], __ATOMIC_RELAXED);
	}
}

void
shm_listener_stats(
    const struct shm_metrics *m, int idx, uint64_t out[SHM_LSTATS])
{
	memset(out, 0, SHM_LSTATS * sizeof(out[0]));
	if (idx < 0 || idx >= SHM_MAX_LISTENERS)
		return;
	/* The same seqlock as shm_metrics_sum: a release moves counts from
	 * a slot to the retired totals. */
	for (int tries = 0; tries < SHM_READ_TRIES; tries++) {
		uint32_t seq = __atomic_load_n(&m->seq, __ATOMIC_ACQUIRE);

		if (seq & 1) {
			sched_yield();
			continue;
		}
		lstats_once(m, idx, out);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&m->seq, __ATOMIC_RELAXED) == seq)
			return;
	}
	lstats_once(m, idx, out);
}

void
shm_sup_add(struct shm_metrics *m, enum shm_sup c)
{
	if (m != NULL && (unsigned)c < SHM_SUP_MAX)
		__atomic_store_n(&m->sup[c], m->sup[c] + 1, __ATOMIC_RELAXED);
}

uint64_t
shm_sup_get(const struct shm_metrics *m, enum shm_sup c)
{
	return (unsigned)c < SHM_SUP_MAX
	    ? __atomic_load_n(&m->sup[c], __ATOMIC_RELAXED)
	    : 0;
}
