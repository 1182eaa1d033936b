/*
 * The metrics zone: shared memory created by the supervisor before any
 * fork. Each live child owns one cache-line-aligned slot and is its only
 * writer (no locks on the data path); readers sum the slots. When a child
 * exits, the supervisor folds its monotonic counters into the "retired"
 * slot and frees its slot, so totals never go backwards and gauges of a
 * dead process drop to zero.
 */
#ifndef MTP_SHM_H
#define MTP_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum shm_counter {
	/* monotonic counters */
	M_ACCEPTED = 0, /* client connections accepted */
	M_HANDSHAKE_OK, /* clients that passed the handshake */
	M_HANDSHAKE_BAD, /* bad clients (no secret matched, malformed) */
	M_REPLAYS, /* replayed handshakes caught */
	M_FRONTED, /* connections relayed to the fronting site */
	M_HANDSHAKE_TIMEOUT,
	M_BYTES_C2S, /* client -> Telegram payload bytes */
	M_BYTES_S2C, /* Telegram -> client */
	M_DC_CONNECT_FAIL,
	M_LINKS_MIGRATED, /* middle mode: clients moved to another link */
	M_LINKS_DROPPED, /* middle mode: clients closed with their link */
	M_COUNTERS_MONOTONIC, /* --- gauges below --- */
	M_CURRENT = M_COUNTERS_MONOTONIC, /* open client connections */
	M_CURRENT_DC, /* open connections to Telegram */
	M_COUNTER_MAX
};

#define SHM_SLOT_WORDS 16 /* 128 bytes: two cache lines */

struct shm_slot {
	_Alignas(64) uint64_t v[SHM_SLOT_WORDS];
	/* owner bookkeeping, written by the supervisor only */
	int32_t pid;
	int32_t in_use;
	int32_t role; /* 0 worker, 1 dcpool */
	int32_t index; /* worker slot number */
};

struct shm_metrics;

struct shm_metrics *shm_metrics_create(size_t nslots);
void shm_metrics_destroy(struct shm_metrics *);
size_t shm_metrics_nslots(const struct shm_metrics *);
/* Supervisor: a free slot for a new child (zeroed), or -1 when full. */
int shm_metrics_alloc(struct shm_metrics *, pid_t, int role, int index);
/* Supervisor: fold a dead child's counters into the totals, free it. */
void shm_metrics_release(struct shm_metrics *, int slot);
struct shm_slot *shm_metrics_slot(struct shm_metrics *, int slot);
/* Reader: sum of every slot and the retired totals. */
void shm_metrics_sum(const struct shm_metrics *, uint64_t out[M_COUNTER_MAX]);

/* The owner's fast path: plain relaxed atomics on its own slot. */
static inline void
shm_add(struct shm_slot *s, enum shm_counter c, uint64_t n)
{
	if (s)
		__atomic_store_n(&s->v[c], s->v[c] + n, __ATOMIC_RELAXED);
}

static inline void
shm_sub(struct shm_slot *s, enum shm_counter c, uint64_t n)
{
	if (s)
		__atomic_store_n(&s->v[c], s->v[c] - n, __ATOMIC_RELAXED);
}

#endif
