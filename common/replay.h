/*
 * The replay cache (spec A.5): handshake keys seen recently, shared by every
 * worker because a replayed handshake may land on any of them.
 *
 * The whole cache is one MAP_SHARED anonymous mapping that the supervisor
 * creates before forking, so every child sees the same table at the same
 * address. Its size is fixed at creation: a full bucket evicts its oldest
 * entry. Locks are striped process-shared robust mutexes, so a worker that
 * dies while holding one never wedges the others.
 */
#ifndef MTP_REPLAY_H
#define MTP_REPLAY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a handshake key (spec A.5: 16 bytes of the client random etc.). */
#define REPLAY_KEY_LEN 16

struct replay_cache;

/*
 * Map a cache holding at least `entries` keys, each remembered for
 * window_seconds. Returns NULL with errno set (EINVAL, ENOMEM, ...).
 * Call before fork(); the children inherit the mapping.
 */
struct replay_cache *replay_create(size_t entries, int window_seconds);
void replay_destroy(struct replay_cache *);
/*
 * replay_create() whose zone is a memfd; *fd_out is it (close-on-exec),
 * for a binary upgrade to take over with replay_attach().
 */
struct replay_cache *
replay_create_fd(size_t entries, int window_seconds, int *fd_out);
/* The cache in another process's memfd; NULL when it is not one of
 * this version (the caller then makes a new one). */
struct replay_cache *replay_attach(int fd);
/*
 * A forked process maps the shared table lazily, page by page, as it
 * touches entries; calling this once after fork maps it all, so the
 * fixed cost shows at start instead of growing with every client.
 */
void replay_prefault(const struct replay_cache *);

/*
 * Atomically across processes: 1 if key was inserted less than the window
 * ago (a replay), else remember it with time `now` (unix seconds, > 0) and
 * return 0. Of two processes racing with the same key exactly one gets 0.
 * A replay does not refresh the entry's time.
 */
int replay_check_insert(
    struct replay_cache *, const uint8_t key[REPLAY_KEY_LEN], int64_t now);

/* Occupied slots, expired ones included (metrics, tests). */
size_t replay_count(struct replay_cache *);
/* Slots in the table (>= the entries asked for). */
size_t replay_capacity(const struct replay_cache *);
/* Bytes of the shared mapping. */
size_t replay_mapsize(const struct replay_cache *);
/*
 * Entries evicted while still inside the window: nonzero means the cache
 * is too small for the load (replay.entries in the config).
 */
uint64_t replay_early_evictions(struct replay_cache *);

/* Exposed for the unit tests only. */
/* SipHash-2-4 of a 16-byte message under a 16-byte key. */
uint64_t replay_siphash16(const uint8_t k[16], const uint8_t m[16]);
/*
 * Take the lock covering key and return without releasing it, so a test
 * can kill the holder; 0 or an errno value.
 */
int replay_test_lock_bucket(
    struct replay_cache *, const uint8_t key[REPLAY_KEY_LEN]);
/*
 * Take the lock covering key and release it at once, without marking it
 * consistent if its holder had died: as a process does that dies right
 * after being handed a dead holder's lock, this leaves the lock
 * ENOTRECOVERABLE. Returns the lock's result (EOWNERDEAD for that).
 */
int replay_test_poison_bucket(
    struct replay_cache *, const uint8_t key[REPLAY_KEY_LEN]);

#endif
