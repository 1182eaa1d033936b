/*
 * The policy zone: shared memory the supervisor creates before any fork,
 * with what every worker must see alike to enforce limits.
 *
 * - One record per user (listener name + user name), at an index the
 *   supervisor assigns and keeps for that name over reloads: the quota
 *   used in the current period, bytes each way, the rate limiter's state
 *   and the addresses seen lately (max_unique_ips).
 * - First-contact hints: the user record each client address (and its
 *   subnet) last matched, so that any worker tries that user first.
 * - A table of open-connection counts by key: a client address, its
 *   subnet (globally or per listener) or a user. Each count is kept
 *   twice: the total, and the share of the slot (the worker) that holds
 *   the connections, so that when a worker dies the supervisor takes its
 *   share back (policy_reclaim) and the totals stay right.
 *
 * Counts change under one robust process-shared mutex, taken once when a
 * connection is admitted and once when it closes; a process that dies
 * holding it does not wedge the others (EOWNERDEAD). Bytes and quota are
 * plain atomics, on the data path.
 */
#ifndef MTP_POLICY_H
#define MTP_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* The quota state in state_dir (policy_save). */
#define POLICY_STATE_FILE "quota.state"

/* Users told apart over the daemon's life (records are kept). */
#define POLICY_MAX_USERS 65536

struct policy;

struct policy_user {
	char listener[CONFIG_NAME_MAX];
	char name[CONFIG_NAME_MAX];
	int32_t in_use;
	int32_t pad_;
	/* the data path's (atomics) */
	_Alignas(64) int64_t period; /* start of the period `used` is of */
	uint64_t used; /* quota bytes in that period */
	uint64_t bytes_c2s; /* totals since the record was made */
	uint64_t bytes_s2c;
	uint64_t tat[2]; /* rate: theoretical arrival time, ns, per way */
};

/* Why a connection is refused (policy_reason_name). */
enum policy_verdict {
	POLICY_OK = 0,
	POLICY_PER_IP, /* limits.per_ip */
	POLICY_PER_SUBNET, /* limits.per_subnet */
	POLICY_USER_CONNS, /* the user's max_connections */
	POLICY_USER_IPS, /* the user's max_unique_ips */
	POLICY_USER_QUOTA, /* quota used up */
	POLICY_USER_EXPIRED,
	POLICY_USER_DISABLED,
};
const char *policy_reason_name(enum policy_verdict);

/*
 * What a connection holds in the table, to give back when it closes.
 * Kept by its session; zeroed = nothing.
 */
struct policy_claim {
	uint16_t bits; /* CLAIM_* */
	uint8_t gplen, lplen; /* subnet prefix lengths used */
	int16_t scope; /* listener shm index */
	int32_t user; /* user record index */
};

/* Creation (supervisor) and attachment (a binary upgrade's memfd). */
struct policy *policy_create_fd(size_t nslots, int *fd_out);
struct policy *policy_attach(int fd);
void policy_destroy(struct policy *);

/*
 * Supervisor: the record index of user name on listener, made when new;
 * -1 when the zone is full.
 */
int policy_user_index(struct policy *, const char *listener, const char *name);
struct policy_user *policy_user(struct policy *, int idx);
/* The records in use (for persistence, status). */
int policy_user_count(const struct policy *);

/*
 * Admit a client at addr on a listener (scope = its shm index) against
 * the global and the listener's per_ip / per_subnet: POLICY_OK (counted
 * in c) or why not (nothing counted). force counts without refusing
 * (a session handed over by a reload).
 */
enum policy_verdict policy_admit_addr(struct policy *, int slot,
    const struct sockaddr *addr, int scope, const struct config_limits *glim,
    const struct config_limits *llim, int force, struct policy_claim *c);
/*
 * Admit a user's connection (record u->pidx) against its max_connections
 * and max_unique_ips (the caller checks enabled, expiry and quota):
 * POLICY_OK (counted in c) or why not.
 */
enum policy_verdict policy_admit_user(struct policy *, int slot,
    const struct sockaddr *addr, const struct config_user *u, int64_t now,
    int force, struct policy_claim *c);
/* Give back everything c holds (addr: as admitted); c is zeroed. */
void policy_release(struct policy *, int slot, const struct sockaddr *addr,
    struct policy_claim *c);
/* A user's address is still in use (open connections refresh it). */
void policy_user_seen(struct policy *, const struct sockaddr *addr,
    const struct config_user *u, int64_t now);
/* Supervisor: slot's process is gone; take its counts back. */
void policy_reclaim(struct policy *, int slot);

/*
 * First-contact hints, shared by the workers: the user record a client
 * key (an address or its subnet: 17 bytes, see the worker's hint_key)
 * last matched on a listener (scope: its index), so that the client's
 * next connection, whichever worker takes it, tries that user first
 * (match.h). A slot is one word: a newer key evicts an older one.
 */
#define POLICY_HINTS (1u << 18) /* 2 MiB, pages touched as used */
void
policy_hint_put(struct policy *, int scope, const uint8_t key[17], int rec);
/* The record, or -1 when the key has none. */
int policy_hint_get(const struct policy *, int scope, const uint8_t key[17]);

/* What the readers (metrics, /status, the API) show of a user. */
struct policy_stats {
	uint64_t conns; /* open connections */
	uint64_t c2s, s2c; /* bytes each way, since the record was made */
	uint64_t used; /* quota used in the current period */
	int ips; /* distinct addresses within unique_ips_window */
};
/* u's counters at now: 0, or -1 (zeroed) when it has no record. */
int policy_user_stats(struct policy *, const struct config_user *u, int64_t now,
    struct policy_stats *out);

/* Open connections counted for a user (-1 idx: 0). */
uint32_t policy_user_conns(struct policy *, int idx);
/* Distinct addresses of a user seen within window seconds. */
int policy_user_ips(struct policy *, int idx, int window, int64_t now);
/* Open connections of addr (per_ip, global scope), for tests / status. */
uint32_t policy_addr_conns(struct policy *, const struct sockaddr *addr);

/*
 * The start of the quota period containing now, for a user's
 * quota_period: 0 for QUOTA_NEVER; 00:00 UTC of the day; 00:00 UTC of
 * the last reset day (a day past a month's end is its last day).
 */
int64_t policy_period_start(int period, int day, int64_t now);
/* The start of the period after the one starting at start. */
int64_t policy_period_next(int period, int day, int64_t start);

/*
 * Data path: count n bytes of a user (up: client -> Telegram) and return
 * the quota used in the current period, after them.
 */
uint64_t
policy_charge(struct policy_user *, int up, uint64_t n, int64_t period_start);
/* Quota used in the period starting at period_start (0 if another). */
uint64_t policy_used(const struct policy_user *, int64_t period_start);
/* Reset a user's quota (the API's reset-quota). */
void policy_reset_quota(struct policy_user *);
/*
 * Rate limiter (a shared token bucket, as GCRA): n bytes went one way at
 * now_ns; returns how long, in ns, the reader should wait before reading
 * again (0: go on).
 */
uint64_t policy_rate_take(
    struct policy_user *, int up, uint64_t n, uint64_t rate, uint64_t now_ns);

/*
 * Persistence: write the records' period and used bytes to path
 * (atomically), and read them back into the zone (records made for the
 * names found). 0, or -1 with errno.
 */
int policy_save(struct policy *, const char *path);
int policy_load(struct policy *, const char *path);

#endif
