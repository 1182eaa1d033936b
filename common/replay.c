#include "autoconf.h"

#include <sys/mman.h>

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "log.h"
#include "replay.h"
#include "util.h"

/*
 * Layout of the one shared mapping:
 *
 *	struct replay_cache	header, read-only after creation but for
 *				the repair lock
 *	struct replay_stripe	nstripes locks, two cache lines each
 *	struct replay_bucket	nbuckets buckets of REPLAY_WAYS slots
 *
 * A key lives in exactly one bucket (a keyed hash picks it), so a lookup
 * reads one 192-byte bucket (three cache lines) under one lock. Buckets map
 * onto stripes by their low bits; with more stripes than workers two
 * workers rarely contend.
 *
 * A robust mutex whose owner died is handed to the next locker with
 * EOWNERDEAD; if that one dies too before pthread_mutex_consistent(), the
 * mutex is ENOTRECOVERABLE for good and no lock can ever take it again.
 * So each stripe has two mutexes and a generation saying which is in
 * use: an unrecoverable one is retired by initialising the other and
 * moving the generation on, under one cache-wide robust repair lock.
 * Only lockers that read an old generation can still touch a retired
 * mutex while it is reinitialised, and every locker checks the
 * generation again once it holds the mutex, so they let go and retry.
 */
#define REPLAY_WAYS        8
#define REPLAY_MAX_STRIPES 1024
#define REPLAY_LINE        64
#define REPLAY_LOCKS       2 /* per stripe: in use, and its replacement */
#define REPLAY_LOCK_TRIES  64 /* replacements one lookup waits through */

struct replay_bucket {
	alignas(REPLAY_LINE) uint8_t key[REPLAY_WAYS][REPLAY_KEY_LEN];
	int64_t ts[REPLAY_WAYS]; /* 0 = empty slot */
};

_Static_assert(sizeof(struct replay_bucket) == 3 * REPLAY_LINE,
    "a bucket is three cache lines");

struct replay_stripe {
	alignas(REPLAY_LINE) pthread_mutex_t mu[REPLAY_LOCKS];
	uint32_t gen; /* mu[gen % REPLAY_LOCKS] is the one in use */
	uint64_t early_evictions;
};

struct replay_cache {
	alignas(REPLAY_LINE) size_t mapsize;
	size_t nbuckets;
	size_t nstripes; /* a power of two */
	int64_t window;
	uint8_t seed[16]; /* SipHash key */
	/* Offsets from the start, not pointers: another process (a binary
	 * upgrade) may map the zone elsewhere. */
	size_t stripes_off, buckets_off;
	uint32_t magic, version;
	pthread_mutex_t repair; /* held while a stripe's mutex is replaced */
};

#define REPLAY_MAGIC   0x6d747272 /* "mtrr" */
#define REPLAY_VERSION 1
#define STRIPES(rc)    ((struct replay_stripe *)((char *)(rc) + (rc)->stripes_off))
#define BUCKETS(rc)    ((struct replay_bucket *)((char *)(rc) + (rc)->buckets_off))

static inline uint64_t
rotl64(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND \
	do { \
		v0 += v1; \
		v1 = rotl64(v1, 13); \
		v1 ^= v0; \
		v0 = rotl64(v0, 32); \
		v2 += v3; \
		v3 = rotl64(v3, 16); \
		v3 ^= v2; \
		v0 += v3; \
		v3 = rotl64(v3, 21); \
		v3 ^= v0; \
		v2 += v1; \
		v1 = rotl64(v1, 17); \
		v1 ^= v2; \
		v2 = rotl64(v2, 32); \
	} while (0)

/*
 * Keys are chosen by clients, so the bucket index must not be predictable
 * without the per-daemon seed, or one client could flood a bucket and evict
 * other clients' keys. OpenSSL has SipHash behind EVP_MAC, but that costs
 * context allocations on every handshake; this fixed 16-byte case is a few
 * lines and the unit test checks it against OpenSSL.
 */
uint64_t
replay_siphash16(const uint8_t k[16], const uint8_t m[16])
{
	uint64_t k0 = get_le64(k), k1 = get_le64(k + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t w;

	for (int i = 0; i < 2; i++) {
		w = get_le64(m + 8 * i);
		v3 ^= w;
		SIPROUND;
		SIPROUND;
		v0 ^= w;
	}
	w = (uint64_t)16 << 56; /* message length, no tail bytes */
	v3 ^= w;
	SIPROUND;
	SIPROUND;
	v0 ^= w;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Process-shared and robust: a dead holder must not wedge the others. */
static int
lock_init(pthread_mutex_t *mu)
{
	pthread_mutexattr_t attr;
	int e;

	if ((e = pthread_mutexattr_init(&attr)) != 0)
		return e;
	if ((e = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) ==
	        0 &&
	    (e = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0)
		e = pthread_mutex_init(mu, &attr);
	pthread_mutexattr_destroy(&attr);
	return e;
}

struct replay_cache *
replay_create_fd(size_t entries, int window_seconds, int *fd_out)
{
	struct replay_cache *rc;
	size_t nbuckets, nstripes, hdr, stripes_sz, size;
	int e;

	if (entries == 0 || window_seconds <= 0) {
		errno = EINVAL;
		return NULL;
	}
	nbuckets = entries / REPLAY_WAYS + (entries % REPLAY_WAYS != 0);
	if (nbuckets > (SIZE_MAX / 2) / sizeof(struct replay_bucket)) {
		errno = ENOMEM;
		return NULL;
	}
	nstripes = 1;
	while (nstripes < REPLAY_MAX_STRIPES && nstripes * 2 <= nbuckets)
		nstripes *= 2;

	hdr = sizeof(struct replay_cache);
	stripes_sz = nstripes * sizeof(struct replay_stripe);
	size = hdr + stripes_sz + nbuckets * sizeof(struct replay_bucket);

	/*
	 * MAP_POPULATE: the whole table is resident from the start, a fixed
	 * cost paid once, instead of page faults on the handshake path and
	 * memory that seems to grow with every new client.
	 */
	/* In a memfd, so that a binary upgrade can take it over. */
	int fd = memfd_create("mtprotod-replay", MFD_CLOEXEC);
	if (fd == -1)
		return NULL;
	if (ftruncate(fd, (off_t)size) == -1 ||
	    (rc = mmap(NULL, size, PROT_READ | PROT_WRITE,
	         MAP_SHARED | MAP_POPULATE, fd, 0)) == MAP_FAILED) {
		e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	rc->magic = REPLAY_MAGIC;
	rc->version = REPLAY_VERSION;
	rc->mapsize = size;
	rc->nbuckets = nbuckets;
	rc->nstripes = nstripes;
	rc->window = window_seconds;
	random_bytes(rc->seed, sizeof(rc->seed));
	rc->stripes_off = hdr;
	rc->buckets_off = hdr + stripes_sz;

	if ((e = lock_init(&rc->repair)) != 0)
		goto fail;
	/* The spare mutex is initialised when it is put to use. */
	for (size_t i = 0; i < nstripes; i++)
		if ((e = lock_init(&STRIPES(rc)[i].mu[0])) != 0)
			goto fail;
	return rc;

fail:
	munmap(rc, size);
	if (fd_out) {
		close(*fd_out);
		*fd_out = -1;
	}
	errno = e;
	return NULL;
}

struct replay_cache *
replay_create(size_t entries, int window_seconds)
{
	return replay_create_fd(entries, window_seconds, NULL);
}

struct replay_cache *
replay_attach(int fd)
{
	struct stat st;
	struct replay_cache *rc;

	if (fstat(fd, &st) == -1 || st.st_size < (off_t)sizeof(*rc))
		return NULL;
	rc = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_POPULATE, fd, 0);
	if (rc == MAP_FAILED)
		return NULL;
	if (rc->magic != REPLAY_MAGIC || rc->version != REPLAY_VERSION ||
	    rc->mapsize != (size_t)st.st_size || rc->nstripes == 0 ||
	    (rc->nstripes & (rc->nstripes - 1)) != 0 ||
	    rc->buckets_off + rc->nbuckets * sizeof(struct replay_bucket) !=
	        rc->mapsize) {
		munmap(rc, (size_t)st.st_size);
		errno = EINVAL;
		return NULL;
	}
	return rc;
}

/*
 * Unmaps in the calling process only. The mutexes are not destroyed: other
 * processes may still use them, and a process-shared mutex in anonymous
 * memory holds nothing beyond its bytes.
 */
void
replay_prefault(const struct replay_cache *rc)
{
	const volatile uint8_t *p = (const volatile uint8_t *)rc;
	long page = sysconf(_SC_PAGESIZE);

	if (rc == NULL || page <= 0)
		return;
	for (size_t off = 0; off < rc->mapsize; off += (size_t)page)
		(void)p[off];
}

void
replay_destroy(struct replay_cache *rc)
{
	if (rc != NULL)
		munmap(rc, rc->mapsize);
}

static size_t
bucket_of(const struct replay_cache *rc, const uint8_t key[REPLAY_KEY_LEN])
{
	uint64_t h = replay_siphash16(rc->seed, key);

#ifdef __SIZEOF_INT128__
	/* Lemire's multiply-shift: uniform over any bucket count. */
	return (size_t)(((unsigned __int128)h * rc->nbuckets) >> 64);
#else
	return (size_t)(h % rc->nbuckets);
#endif
}

static struct replay_stripe *
stripe_of(struct replay_cache *rc, size_t bucket)
{
	return &STRIPES(rc)[bucket & (rc->nstripes - 1)];
}

/*
 * Retire the stripe's mutex of generation gen, found ENOTRECOVERABLE.
 * Whoever holds the repair lock does it once; the others find the
 * generation moved on. A repairer that died leaves the repair lock
 * EOWNERDEAD and its work half done, which the next one redoes: the
 * spare is initialised again before the generation moves.
 */
static int
stripe_replace(struct replay_cache *rc, struct replay_stripe *s, uint32_t gen)
{
	static int replace_logged;
	int e = pthread_mutex_lock(&rc->repair);

	if (e == EOWNERDEAD)
		e = pthread_mutex_consistent(&rc->repair);
	if (e != 0)
		return e;
	if (__atomic_load_n(&s->gen, __ATOMIC_RELAXED) == gen &&
	    (e = lock_init(&s->mu[(gen + 1) % REPLAY_LOCKS])) == 0) {
		__atomic_store_n(&s->gen, gen + 1, __ATOMIC_RELEASE);
		if (!replace_logged) {
			replace_logged = 1;
			log_warnx("replay cache: replaced a lock that a dead "
			          "process left unrecoverable");
		}
	}
	pthread_mutex_unlock(&rc->repair);
	return e;
}

/*
 * The stripe's mutex in use, locked, in *held; 0 or an errno value.
 *
 * A holder that died (EOWNERDEAD) cannot leave a bucket inconsistent:
 * a slot is emptied before its key is written and dated after, so at
 * worst a slot is empty that was about to hold a key. The lock is
 * marked consistent again and that is all the repair needed.
 */
static int
stripe_lock(
    struct replay_cache *rc, struct replay_stripe *s, pthread_mutex_t **held)
{
	int e = ENOTRECOVERABLE;

	for (int tries = 0; tries < REPLAY_LOCK_TRIES; tries++) {
		uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
		pthread_mutex_t *mu = &s->mu[gen % REPLAY_LOCKS];

		e = pthread_mutex_lock(mu);
		if (e == EOWNERDEAD &&
		    (e = pthread_mutex_consistent(mu)) != 0) {
			/* Let go: unrecoverable now, replaced next time. */
			(void)pthread_mutex_unlock(mu);
			e = ENOTRECOVERABLE;
			continue;
		}
		if (e == ENOTRECOVERABLE) {
			if ((e = stripe_replace(rc, s, gen)) != 0)
				return e;
			continue;
		}
		if (e != 0)
			return e;
		/* Retired while we waited: not the lock in use any more. */
		if (__atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != gen) {
			(void)pthread_mutex_unlock(mu);
			e = ENOTRECOVERABLE;
			continue;
		}
		*held = mu;
		return 0;
	}
	return e;
}

int
replay_check_insert(
    struct replay_cache *rc, const uint8_t key[REPLAY_KEY_LEN], int64_t now)
{
	static int lock_warned;
	size_t bi = bucket_of(rc, key);
	struct replay_bucket *b = &BUCKETS(rc)[bi];
	struct replay_stripe *s = stripe_of(rc, bi);
	pthread_mutex_t *mu;
	int victim = 0, found = 0, e;

	if (now < 1)
		now = 1; /* 0 marks an empty slot */
	if ((e = stripe_lock(rc, s, &mu)) != 0) {
		/*
		 * Only when the repair lock itself is unrecoverable, or
		 * processes keep dying in the few instructions between
		 * EOWNERDEAD and pthread_mutex_consistent(). Failing open
		 * keeps serving honest clients; a replay goes unnoticed.
		 */
		if (!lock_warned) {
			lock_warned = 1;
			errno = e;
			log_warn("replay cache lock");
		}
		return 0;
	}
	/* Evict an empty slot, else the oldest one, unless the key is here. */
	for (int i = 0; i < REPLAY_WAYS; i++) {
		int64_t ts = b->ts[i];

		if (ts != 0 && memcmp(b->key[i], key, REPLAY_KEY_LEN) == 0) {
			if (now - ts < rc->window) {
				pthread_mutex_unlock(mu);
				return 1;
			}
			victim = i;
			found = 1;
			break;
		}
		if (b->ts[victim] != 0 && (ts == 0 || ts < b->ts[victim]))
			victim = i;
	}
	if (!found && b->ts[victim] != 0 && now - b->ts[victim] < rc->window)
		__atomic_fetch_add(&s->early_evictions, 1, __ATOMIC_RELAXED);
	/* Emptied first: a holder dying half way leaves no torn key. */
	__atomic_store_n(&b->ts[victim], 0, __ATOMIC_RELAXED);
	memcpy(b->key[victim], key, REPLAY_KEY_LEN);
	__atomic_store_n(&b->ts[victim], now, __ATOMIC_RELAXED);
	pthread_mutex_unlock(mu);
	return 0;
}

/* Without locks: a metrics reading may be off by the inserts under way. */
size_t
replay_count(struct replay_cache *rc)
{
	size_t n = 0;

	for (size_t i = 0; i < rc->nbuckets; i++)
		for (int j = 0; j < REPLAY_WAYS; j++)
			if (__atomic_load_n(
			        &BUCKETS(rc)[i].ts[j], __ATOMIC_RELAXED) != 0)
				n++;
	return n;
}

size_t
replay_capacity(const struct replay_cache *rc)
{
	return rc->nbuckets * REPLAY_WAYS;
}

size_t
replay_mapsize(const struct replay_cache *rc)
{
	return rc->mapsize;
}

uint64_t
replay_early_evictions(struct replay_cache *rc)
{
	uint64_t n = 0;

	for (size_t i = 0; i < rc->nstripes; i++)
		n += __atomic_load_n(
		    &STRIPES(rc)[i].early_evictions, __ATOMIC_RELAXED);
	return n;
}

int
replay_test_lock_bucket(
    struct replay_cache *rc, const uint8_t key[REPLAY_KEY_LEN])
{
	pthread_mutex_t *mu;

	return stripe_lock(rc, stripe_of(rc, bucket_of(rc, key)), &mu);
}

int
replay_test_poison_bucket(
    struct replay_cache *rc, const uint8_t key[REPLAY_KEY_LEN])
{
	struct replay_stripe *s = stripe_of(rc, bucket_of(rc, key));
	pthread_mutex_t *mu =
	    &s->mu[__atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) % REPLAY_LOCKS];
	int e = pthread_mutex_lock(mu);

	/* Unlocked without pthread_mutex_consistent(): unrecoverable. */
	if (e == 0 || e == EOWNERDEAD)
		pthread_mutex_unlock(mu);
	return e;
}
