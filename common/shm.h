/*
 * The metrics zone: shared memory created by the supervisor before any
 * fork. Each live child owns one cache-line-aligned slot and is its only
 * writer (no locks on the data path); readers sum the slots. When a child
 * exits, the supervisor folds its monotonic counters into the "retired"
 * slot and frees its slot, so totals never go backwards and gauges of a
 * dead process drop to zero. For readers the fold and the free are one
 * step: the supervisor bumps a sequence number around them and a reader
 * that saw it move sums again (a seqlock), so a dead child is never
 * counted twice or not at all.
 *
 * Each slot also holds one connection gauge per listener, for admission
 * control across workers. Listeners are known by an index into a table
 * of names the supervisor keeps in the zone, so a listener keeps its
 * index across reloads and old and new workers count it together.
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
	M_REFUSED, /* closed at accept: limits.max_connections */
	M_ACCEPT_PAUSED, /* accepts paused: out of descriptors */
	M_SLOW_CLIENTS, /* middle mode: closed for not reading answers */
	M_HANDSHAKE_EVICTED, /* closed: limits.handshake_memory */
	M_HANDED_OVER, /* sessions adopted from an older worker (reload) */
	/* why handshakes failed (each also in M_HANDSHAKE_BAD) */
	M_HS_BAD_SECRET, /* no secret matched (obfuscated2 or TLS HMAC) */
	M_HS_CLOCK_SKEW, /* fake-TLS timestamp out of the window */
	M_HS_PROTOCOL, /* a transport the listener does not take */
	M_HS_MALFORMED, /* not a well-formed hello */
	M_HS_UNKNOWN_SNI, /* another name, dropped or rejected */
	M_HS_PROXY, /* PROXY header untrusted or malformed */
	M_HS_DENIED, /* refused by access.allow / access.deny */
	M_LINKS_BUILT, /* dcpool: middle-proxy links built and handed on */
	M_LINKS_BUILD_FAILED, /* dcpool: attempts that failed */
	/* connections refused by a limit (policy.h; each also a bad
	 * client, so also in M_HANDSHAKE_BAD), in policy_verdict order */
	M_LIM_PER_IP,
	M_LIM_PER_SUBNET,
	M_LIM_USER_CONNS,
	M_LIM_USER_IPS,
	M_LIM_QUOTA,
	M_LIM_EXPIRED,
	M_LIM_DISABLED,
	/* open connections closed for their user */
	M_CLOSED_QUOTA,
	M_CLOSED_EXPIRED,
	M_CLOSED_DISABLED,
	M_THROTTLED, /* reads paused by a user's rate */
	M_HS_USER_SCANS, /* handshakes that tried the users in turn */
	M_COUNTERS_MONOTONIC, /* --- gauges below --- */
	M_CURRENT = M_COUNTERS_MONOTONIC, /* open client connections */
	M_CURRENT_DC, /* open connections to Telegram */
	M_HANDSHAKES, /* client connections still in their handshake */
	M_HANDSHAKE_BYTES, /* bytes those hold (limits.handshake_memory) */
	M_OPEN_FDS, /* the process's open descriptors (every 2 s) */
	M_COUNTER_MAX
};

#define SHM_SLOT_WORDS 48 /* 384 bytes: six cache lines */
/* Listener names the zone tells apart over the daemon's life. */
#define SHM_MAX_LISTENERS 64
#define SHM_NAME_MAX      64 /* with the NUL, as CONFIG_NAME_MAX */
/* Link pools (DCs) a worker reports, middle mode. */
#define SHM_DC_POOLS 16

/* The supervisor's own counters (it is their only writer). */
enum shm_sup {
	SUP_RELOADS_ROLLING, /* a new generation took over */
	SUP_RELOADS_IN_PLACE, /* tables changed in the children */
	SUP_RELOADS_FAILED, /* the running configuration kept */
	SUP_RESTARTS_WORKER, /* crashed children restarted */
	SUP_RESTARTS_DCPOOL,
	SHM_SUP_MAX
};

/* Per listener totals (monotonic), each slot's own. */
enum shm_lstat {
	LS_OK_CLASSIC, /* handshakes passed, by protocol */
	LS_OK_SECURE,
	LS_OK_FAKE_TLS,
	LS_BYTES_C2S, /* payload bytes client -> Telegram */
	LS_BYTES_S2C,
	SHM_LSTATS
};

struct shm_slot {
	_Alignas(64) uint64_t v[SHM_SLOT_WORDS];
	/* owner bookkeeping, written by the supervisor only */
	int32_t pid;
	int32_t in_use;
	int32_t role; /* 0 worker, 1 dcpool */
	int32_t index; /* worker slot number */
	/* open connections per listener index; the owner writes them */
	_Alignas(64) uint32_t lconns[SHM_MAX_LISTENERS];
	/* totals per listener index; the owner writes them */
	_Alignas(64) uint64_t lstats[SHM_MAX_LISTENERS][SHM_LSTATS];
	/* middle mode: the owner's link pools (dc 0 = unused entry) */
	_Alignas(64) struct shm_dclinks {
		int32_t dc;
		uint32_t up; /* links serving */
		uint32_t pending; /* asked of the dcpool, not granted yet */
		uint32_t waiting; /* clients waiting for a link */
	} dclinks[SHM_DC_POOLS];
};

struct shm_metrics;

struct shm_metrics *shm_metrics_create(size_t nslots);
/* The same in a memfd; *fd_out is it (close-on-exec), for a binary
 * upgrade to take over with shm_metrics_attach(). */
struct shm_metrics *shm_metrics_create_fd(size_t nslots, int *fd_out);
/* The zone in another process's memfd; NULL when it is not one of this
 * version (the caller then makes a new one). */
struct shm_metrics *shm_metrics_attach(int fd);
void shm_metrics_destroy(struct shm_metrics *);
size_t shm_metrics_nslots(const struct shm_metrics *);
/* Supervisor: a free slot for a new child (zeroed), or -1 when full. */
int shm_metrics_alloc(struct shm_metrics *, pid_t, int role, int index);
/*
 * Supervisor: fold a dead child's counters into the totals, free its slot
 * (its gauges, listener gauges included, drop to zero).
 */
void shm_metrics_release(struct shm_metrics *, int slot);
struct shm_slot *shm_metrics_slot(struct shm_metrics *, int slot);
/* A child's own slot, found by its pid (NULL if none). */
struct shm_slot *shm_metrics_own(struct shm_metrics *, pid_t);
/*
 * Reader: sum of every slot and the retired totals. Successive sums never
 * see a monotonic counter go backwards, releases included.
 */
void shm_metrics_sum(const struct shm_metrics *, uint64_t out[M_COUNTER_MAX]);
/*
 * Reader: one counter of shm_metrics_sum, for a check on the data path
 * (a gauge against a limit) that needs no other.
 */
uint64_t shm_metrics_sum1(const struct shm_metrics *, enum shm_counter);

/*
 * Supervisor, at config load: the stable index of a listener name, or -1
 * when the table is full (or the name is empty or too long). The table
 * only grows: it tells SHM_MAX_LISTENERS names apart over the daemon's
 * life.
 */
int shm_listener_index(struct shm_metrics *, const char *name);
/*
 * Supervisor: free index idx for another name, unless a live slot still
 * counts connections on it; 0 if freed, -1 if not. For a table filled
 * by renames over many reloads.
 */
int shm_listener_forget(struct shm_metrics *, int idx);
/*
 * Reader: sum over live slots of listener idx's gauge (idx -1 = all
 * listeners); 0 for any other idx out of range.
 */
uint64_t shm_listener_conns(const struct shm_metrics *, int idx);
/* Reader: the middle-mode link pools of every live slot, summed by DC
 * into out (at most max DCs); the number of DCs. */
size_t
shm_dclinks(const struct shm_metrics *, struct shm_dclinks *out, size_t max);
void shm_sup_add(struct shm_metrics *, enum shm_sup);
uint64_t shm_sup_get(const struct shm_metrics *, enum shm_sup);
/* Reader: listener idx's totals over live slots and those that exited
 * (zeros for an idx out of range). */
void shm_listener_stats(
    const struct shm_metrics *, int idx, uint64_t out[SHM_LSTATS]);

/* The owner's fast path: plain relaxed atomics on its own slot. */
static inline void
shm_add(struct shm_slot *s, enum shm_counter c, uint64_t n)
{
	if (s)
		__atomic_store_n(&s->v[c], s->v[c] + n, __ATOMIC_RELAXED);
}

static inline void
shm_set(struct shm_slot *s, enum shm_counter c, uint64_t v)
{
	if (s)
		__atomic_store_n(&s->v[c], v, __ATOMIC_RELAXED);
}

static inline void
shm_sub(struct shm_slot *s, enum shm_counter c, uint64_t n)
{
	if (s)
		__atomic_store_n(&s->v[c], s->v[c] - n, __ATOMIC_RELAXED);
}

/*
 * Owner fast path: its own slot's gauge for listener idx (from
 * config_listener.shm_index; -1 or any idx out of range is ignored).
 */
static inline void
shm_listener_conn_add(struct shm_slot *s, int idx, int32_t delta)
{
	if (s && idx >= 0 && idx < SHM_MAX_LISTENERS)
		__atomic_store_n(&s->lconns[idx],
		    s->lconns[idx] + (uint32_t)delta, __ATOMIC_RELAXED);
}

/* Owner fast path: add n to listener idx's stat (idx -1 ignored). */
static inline void
shm_listener_stat_add(
    struct shm_slot *s, int idx, enum shm_lstat st, uint64_t n)
{
	if (s && idx >= 0 && idx < SHM_MAX_LISTENERS)
		__atomic_store_n(&s->lstats[idx][st], s->lstats[idx][st] + n,
		    __ATOMIC_RELAXED);
}

#endif
