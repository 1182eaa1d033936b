/*
 * The policy zone (policy.h).
 *
 * Layout of the memfd: header, user records, per-user address lists,
 * then the count table: open addressing with linear probing, each entry
 * a key and a count; an entry whose count drops to zero is removed by
 * shifting its successors back, so no tombstones pile up.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/random.h>

#include "log.h"
#include "policy.h"
#include "util.h"

#define POLICY_MAGIC   "MTPPOL02" /* 02: first-contact hints */
#define TABLE_BITS     20
#define TABLE_SIZE     (1u << TABLE_BITS)
#define TABLE_MAX_FILL (TABLE_SIZE / 4 * 3)
#define SLOT_TOTAL     0xffff

enum key_kind { K_IP = 1, K_SUBNET, K_USER };

/* policy_claim.bits */
#define CLAIM_GIP  0x01
#define CLAIM_GNET 0x02
#define CLAIM_LIP  0x04
#define CLAIM_LNET 0x08
#define CLAIM_USER 0x10

struct pkey {
	uint8_t kind;
	uint8_t plen;
	uint16_t scope; /* 0 global, listener index + 1 */
	uint16_t slot; /* SLOT_TOTAL, or the owner's share */
	uint16_t pad;
	uint8_t addr[16]; /* masked address, or the user index */
};

struct pent {
	struct pkey k;
	uint32_t count; /* 0 = free */
	uint32_t pad;
};

struct pip {
	uint64_t h; /* keyed hash of the address; 0 = free */
	int64_t seen;
};

struct phdr {
	char magic[8];
	uint32_t nslots;
	uint32_t nusers; /* records made */
	uint64_t seed; /* hashes of client-chosen keys */
	uint32_t fill; /* table entries in use */
	uint32_t full_warned;
	pthread_mutex_t lock;
};

struct policy {
	int fd;
	size_t size;
	struct phdr *h;
	struct policy_user *users;
	struct pip (*ips)[CONFIG_MAX_UNIQUE_IPS];
	struct pent *tab;
	uint64_t *hints; /* POLICY_HINTS: tag << 32 | record + 1; 0 free */
	/* supervisor: record index by name (private, rebuilt on attach) */
	int32_t *byname;
	size_t nbyname;
};

static size_t
zone_size(void)
{
	return sizeof(struct phdr) + 64 +
	    (size_t)POLICY_MAX_USERS * sizeof(struct policy_user) +
	    (size_t)POLICY_MAX_USERS * sizeof(struct pip) *
	    CONFIG_MAX_UNIQUE_IPS +
	    (size_t)TABLE_SIZE * sizeof(struct pent) +
	    (size_t)POLICY_HINTS * sizeof(uint64_t);
}

static int
map_zone(struct policy *p, int fd)
{
	uint8_t *base;

	p->fd = fd;
	p->size = zone_size();
	base = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -1;
	p->h = (struct phdr *)base;
	size_t off = (sizeof(struct phdr) + 63) & ~(size_t)63;
	p->users = (struct policy_user *)(base + off);
	off += (size_t)POLICY_MAX_USERS * sizeof(struct policy_user);
	p->ips = (void *)(base + off);
	off += (size_t)POLICY_MAX_USERS * sizeof(struct pip) *
	    CONFIG_MAX_UNIQUE_IPS;
	p->tab = (struct pent *)(base + off);
	off += (size_t)TABLE_SIZE * sizeof(struct pent);
	p->hints = (uint64_t *)(base + off);
	return 0;
}

struct policy *
policy_create_fd(size_t nslots, int *fd_out)
{
	struct policy *p = calloc(1, sizeof(*p));
	pthread_mutexattr_t ma;
	int fd;

	if (p == NULL)
		return NULL;
	fd = memfd_create("mtprotod-policy", MFD_CLOEXEC);
	if (fd == -1 || ftruncate(fd, (off_t)zone_size()) == -1 ||
	    map_zone(p, fd) == -1) {
		if (fd != -1)
			close(fd);
		free(p);
		return NULL;
	}
	memcpy(p->h->magic, POLICY_MAGIC, 8);
	p->h->nslots = (uint32_t)nslots;
	if (getrandom(&p->h->seed, sizeof(p->h->seed), 0) != sizeof(p->h->seed))
		p->h->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&p->h->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	if (fd_out)
		*fd_out = fd;
	return p;
}

struct policy *
policy_attach(int fd)
{
	struct policy *p = calloc(1, sizeof(*p));
	struct stat st;

	if (p == NULL)
		return NULL;
	if (fstat(fd, &st) == -1 || (size_t)st.st_size != zone_size() ||
	    map_zone(p, fd) == -1 || memcmp(p->h->magic, POLICY_MAGIC, 8)) {
		if (p->h)
			munmap(p->h, p->size);
		free(p);
		return NULL;
	}
	return p;
}

void
policy_destroy(struct policy *p)
{
	if (p == NULL)
		return;
	munmap(p->h, p->size);
	close(p->fd);
	free(p->byname);
	free(p);
}

static void
lock(struct policy *p)
{
	int r = pthread_mutex_lock(&p->h->lock);
	/* Its last holder died: the counts it changed are whole (each a
	 * single store), so the table is usable as it is. */
	if (r == EOWNERDEAD)
		pthread_mutex_consistent(&p->h->lock);
}

static void
unlock(struct policy *p)
{
	pthread_mutex_unlock(&p->h->lock);
}

/* ------------------------------------------------------------ hashing */

static uint64_t
mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	return h;
}

static uint64_t
hash_bytes(uint64_t seed, const void *b, size_t n)
{
	const uint8_t *q = b;
	uint64_t h = seed;

	while (n >= 8) {
		uint64_t v;
		memcpy(&v, q, 8);
		h = mix(h, v);
		q += 8;
		n -= 8;
	}
	uint64_t v = 0;
	memcpy(&v, q, n);
	return mix(mix(h, v), 0x51);
}

/* ------------------------------------------------------------ table */

static size_t
home(const struct policy *p, const struct pkey *k)
{
	return hash_bytes(p->h->seed, k, sizeof(*k)) & (TABLE_SIZE - 1);
}

static long
tab_find(struct policy *p, const struct pkey *k)
{
	for (size_t i = home(p, k);; i = (i + 1) & (TABLE_SIZE - 1)) {
		if (p->tab[i].count == 0)
			return -1;
		if (memcmp(&p->tab[i].k, k, sizeof(*k)) == 0)
			return (long)i;
	}
}

static void
tab_remove(struct policy *p, size_t i)
{
	size_t j = i;

	p->tab[i].count = 0;
	p->h->fill--;
	for (;;) {
		j = (j + 1) & (TABLE_SIZE - 1);
		if (p->tab[j].count == 0)
			return;
		size_t h = home(p, &p->tab[j].k);
		/* Can j's entry move to the hole at i? Only if its home is
		 * not in (i, j] (cyclically). */
		int inside = i <= j ? (h > i && h <= j) : (h > i || h <= j);
		if (inside)
			continue;
		p->tab[i] = p->tab[j];
		p->tab[j].count = 0;
		i = j;
	}
}

static uint32_t
tab_get(struct policy *p, const struct pkey *k)
{
	long i = tab_find(p, k);
	return i < 0 ? 0 : p->tab[i].count;
}

/* Add delta (+1 / -1) to k's count; -1 when the table is full. */
static int
tab_add(struct policy *p, const struct pkey *k, int delta)
{
	long i = tab_find(p, k);

	if (i >= 0) {
		if (delta < 0 && p->tab[i].count <= (uint32_t)-delta)
			tab_remove(p, (size_t)i);
		else
			p->tab[i].count += (uint32_t)delta;
		return 0;
	}
	if (delta < 0)
		return 0;
	if (p->h->fill >= TABLE_MAX_FILL) {
		if (!p->h->full_warned) {
			p->h->full_warned = 1;
			log_warn("policy table full (%u entries): further "
			         "connections are not counted for limits",
			    p->h->fill);
		}
		return -1;
	}
	size_t j = home(p, k);
	while (p->tab[j].count != 0)
		j = (j + 1) & (TABLE_SIZE - 1);
	p->tab[j].k = *k;
	p->tab[j].count = (uint32_t)delta;
	p->h->fill++;
	return 0;
}

/* Count both the total and slot's share. */
static int
count(struct policy *p, struct pkey k, int slot, int delta)
{
	k.slot = SLOT_TOTAL;
	if (tab_add(p, &k, delta) == -1)
		return -1;
	k.slot = (uint16_t)slot;
	if (tab_add(p, &k, delta) == -1) {
		k.slot = SLOT_TOTAL;
		tab_add(p, &k, -delta);
		return -1;
	}
	return 0;
}

static void
addr_key(
    struct pkey *k, const struct sockaddr *sa, int kind, int plen, int scope)
{
	memset(k, 0, sizeof(*k));
	k->kind = (uint8_t)kind;
	k->scope = (uint16_t)scope;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		uint32_t a = ntohl(in->sin_addr.s_addr);
		if (plen < 32)
			a &= plen == 0 ? 0 : ~(uint32_t)0 << (32 - plen);
		a = htonl(a);
		memcpy(k->addr, &a, 4);
		k->plen = (uint8_t)plen;
		k->pad = 4;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)sa;
		const uint8_t *b = in6->sin6_addr.s6_addr;
		/* IPv4-mapped: as the IPv4 address */
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0,
			0, 0xff, 0xff };
		if (memcmp(b, mapped, 12) == 0) {
			struct sockaddr_in in = { .sin_family = AF_INET };
			memcpy(&in.sin_addr, b + 12, 4);
			addr_key(k, (struct sockaddr *)&in, kind,
			    kind == K_IP ? 32 : plen, scope);
			return;
		}
		memcpy(k->addr, b, 16);
		for (int bit = plen; bit < 128; bit++)
			k->addr[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
		k->plen = (uint8_t)plen;
		k->pad = 6;
	}
}

static int
is_v4(const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
		0xff };
	return sa->sa_family == AF_INET ||
	    (sa->sa_family == AF_INET6 &&
	        memcmp(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr,
	            mapped, 12) == 0);
}

static void
user_key(struct pkey *k, int idx)
{
	memset(k, 0, sizeof(*k));
	k->kind = K_USER;
	memcpy(k->addr, &idx, sizeof(idx));
}

/* The keys a claim holds, in CLAIM_* order. */
static int
claim_keys(const struct policy_claim *c, const struct sockaddr *sa,
    struct pkey keys[5], uint16_t bits[5])
{
	int n = 0;

	if (c->bits & CLAIM_GIP) {
		addr_key(&keys[n], sa, K_IP, is_v4(sa) ? 32 : 128, 0);
		bits[n++] = CLAIM_GIP;
	}
	if (c->bits & CLAIM_GNET) {
		addr_key(&keys[n], sa, K_SUBNET, c->gplen, 0);
		bits[n++] = CLAIM_GNET;
	}
	if (c->bits & CLAIM_LIP) {
		addr_key(
		    &keys[n], sa, K_IP, is_v4(sa) ? 32 : 128, c->scope + 1);
		bits[n++] = CLAIM_LIP;
	}
	if (c->bits & CLAIM_LNET) {
		addr_key(&keys[n], sa, K_SUBNET, c->lplen, c->scope + 1);
		bits[n++] = CLAIM_LNET;
	}
	return n;
}

/* ------------------------------------------------------------ admission */

const char *
policy_reason_name(enum policy_verdict v)
{
	switch (v) {
	case POLICY_OK:
		return "ok";
	case POLICY_PER_IP:
		return "limits.per_ip";
	case POLICY_PER_SUBNET:
		return "limits.per_subnet";
	case POLICY_USER_CONNS:
		return "max_connections";
	case POLICY_USER_IPS:
		return "max_unique_ips";
	case POLICY_USER_QUOTA:
		return "quota";
	case POLICY_USER_EXPIRED:
		return "expired";
	case POLICY_USER_DISABLED:
		return "disabled";
	}
	return "?";
}

enum policy_verdict
policy_admit_addr(struct policy *p, int slot, const struct sockaddr *sa,
    int scope, const struct config_limits *glim,
    const struct config_limits *llim, int force, struct policy_claim *c)
{
	struct {
		uint16_t bit;
		int limit;
		enum policy_verdict why;
	} want[4] = {
		{ CLAIM_GIP, glim ? glim->per_ip : 0, POLICY_PER_IP },
		{ CLAIM_GNET, glim ? glim->per_subnet : 0, POLICY_PER_SUBNET },
		{ CLAIM_LIP, llim ? llim->per_ip : 0, POLICY_PER_IP },
		{ CLAIM_LNET, llim ? llim->per_subnet : 0, POLICY_PER_SUBNET },
	};
	struct policy_claim nc = *c;
	struct pkey keys[5];
	uint16_t bits[5];
	int v4 = is_v4(sa);

	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return POLICY_OK;
	nc.bits = 0;
	nc.scope = (int16_t)scope;
	nc.gplen = glim ? (uint8_t)(v4 ? glim->subnet_v4 : glim->subnet_v6) : 0;
	nc.lplen = llim ? (uint8_t)(v4 ? llim->subnet_v4 : llim->subnet_v6) : 0;
	for (int i = 0; i < 4; i++)
		if (want[i].limit > 0 && (scope >= 0 || i < 2))
			nc.bits |= want[i].bit;
	if (nc.bits == 0)
		return POLICY_OK;
	int n = claim_keys(&nc, sa, keys, bits);
	lock(p);
	if (!force)
		for (int i = 0; i < n; i++) {
			int limit = 0;
			enum policy_verdict why = POLICY_OK;
			for (int w = 0; w < 4; w++)
				if (want[w].bit == bits[i]) {
					limit = want[w].limit;
					why = want[w].why;
				}
			keys[i].slot = SLOT_TOTAL;
			if (tab_get(p, &keys[i]) >= (uint32_t)limit) {
				unlock(p);
				return why;
			}
		}
	uint16_t got = 0;
	for (int i = 0; i < n; i++)
		if (count(p, keys[i], slot, 1) == 0)
			got |= bits[i];
	unlock(p);
	c->bits = (uint16_t)((c->bits & CLAIM_USER) | got);
	c->scope = nc.scope;
	c->gplen = nc.gplen;
	c->lplen = nc.lplen;
	return POLICY_OK;
}

static uint64_t
ip_hash(const struct policy *p, const struct sockaddr *sa)
{
	struct pkey k;

	addr_key(&k, sa, K_IP, is_v4(sa) ? 32 : 128, 0);
	uint64_t h = hash_bytes(p->h->seed ^ 0x1234, &k, sizeof(k));
	return h ? h : 1;
}

/* ------------------------------------------------------------ hints */

/*
 * One word a slot, so that readers never see half an entry: the upper
 * 32 bits of the key's hash tell keys sharing the slot apart, the lower
 * hold the record + 1. Relaxed atomics: a lost or stale hint costs the
 * reader one wrong try, never a wrong user (match.h checks every try).
 */
static uint64_t
hint_hash(const struct policy *p, int scope, const uint8_t key[17])
{
	uint8_t k[20] = { 0 };

	k[0] = (uint8_t)scope;
	k[1] = (uint8_t)(scope >> 8);
	memcpy(k + 3, key, 17);
	return hash_bytes(p->h->seed ^ 0x4817, k, sizeof(k));
}

void
policy_hint_put(struct policy *p, int scope, const uint8_t key[17], int rec)
{
	uint64_t h = hint_hash(p, scope, key);

	if (rec < 0 || rec >= POLICY_MAX_USERS)
		return;
	__atomic_store_n(&p->hints[h % POLICY_HINTS],
	    (h >> 32) << 32 | (uint64_t)(rec + 1), __ATOMIC_RELAXED);
}

int
policy_hint_get(const struct policy *p, int scope, const uint8_t key[17])
{
	uint64_t h = hint_hash(p, scope, key);
	uint64_t v =
	    __atomic_load_n(&p->hints[h % POLICY_HINTS], __ATOMIC_RELAXED);

	if (v == 0 || v >> 32 != h >> 32)
		return -1;
	return (int)(uint32_t)v - 1;
}

/* Under the lock: may addr (hash h) use record idx now? Notes it. */
static int
ips_admit(struct policy *p, int idx, uint64_t h, int max, int window,
    int64_t now, int force)
{
	struct pip *ips = p->ips[idx];
	int live = 0, free_i = -1, stale_i = -1;

	for (int i = 0; i < CONFIG_MAX_UNIQUE_IPS; i++) {
		if (ips[i].h == h) {
			ips[i].seen = now;
			return 1;
		}
		if (ips[i].h == 0) {
			if (free_i < 0)
				free_i = i;
		} else if (ips[i].seen > now - window)
			live++;
		else if (stale_i < 0 || ips[i].seen < ips[stale_i].seen)
			stale_i = i;
	}
	if (!force && max > 0 && live >= max)
		return 0;
	int at = free_i >= 0 ? free_i : stale_i;
	if (at < 0) { /* forced past the list: the oldest goes */
		at = 0;
		for (int i = 1; i < CONFIG_MAX_UNIQUE_IPS; i++)
			if (ips[i].seen < ips[at].seen)
				at = i;
	}
	ips[at].h = h;
	ips[at].seen = now;
	return 1;
}

enum policy_verdict
policy_admit_user(struct policy *p, int slot, const struct sockaddr *sa,
    const struct config_user *u, int64_t now, int force, struct policy_claim *c)
{
	struct pkey k;

	if (u->pidx < 0 || u->pidx >= POLICY_MAX_USERS)
		return POLICY_OK;
	user_key(&k, u->pidx);
	lock(p);
	if (!force && u->max_connections > 0) {
		k.slot = SLOT_TOTAL;
		if (tab_get(p, &k) >= (uint32_t)u->max_connections) {
			unlock(p);
			return POLICY_USER_CONNS;
		}
	}
	if (u->max_unique_ips > 0 &&
	    !ips_admit(p, u->pidx, ip_hash(p, sa), u->max_unique_ips,
	        u->unique_ips_window, now, force)) {
		unlock(p);
		return POLICY_USER_IPS;
	}
	if (count(p, k, slot, 1) == 0) {
		c->bits |= CLAIM_USER;
		c->user = u->pidx;
	}
	unlock(p);
	return POLICY_OK;
}

void
policy_user_seen(struct policy *p, const struct sockaddr *sa,
    const struct config_user *u, int64_t now)
{
	if (u->pidx < 0 || u->pidx >= POLICY_MAX_USERS ||
	    u->max_unique_ips <= 0)
		return;
	lock(p);
	ips_admit(p, u->pidx, ip_hash(p, sa), 0, u->unique_ips_window, now, 1);
	unlock(p);
}

void
policy_release(struct policy *p, int slot, const struct sockaddr *sa,
    struct policy_claim *c)
{
	struct pkey keys[5];
	uint16_t bits[5];
	int n = 0;

	if (c->bits == 0)
		return;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		n = claim_keys(c, sa, keys, bits);
	if (c->bits & CLAIM_USER)
		user_key(&keys[n++], c->user);
	lock(p);
	for (int i = 0; i < n; i++)
		count(p, keys[i], slot, -1);
	unlock(p);
	memset(c, 0, sizeof(*c));
}

void
policy_reclaim(struct policy *p, int slot)
{
	size_t taken = 0;

	lock(p);
	/* Removal shifts entries back, so an index is looked at again
	 * after a removal there; one pass finds every share. */
	for (size_t i = 0; i < TABLE_SIZE; i++) {
		while (p->tab[i].count != 0 && p->tab[i].k.slot == slot) {
			struct pkey k = p->tab[i].k;
			uint32_t n = p->tab[i].count;
			tab_remove(p, i);
			k.slot = SLOT_TOTAL;
			long t = tab_find(p, &k);
			if (t >= 0) {
				if (p->tab[t].count <= n)
					tab_remove(p, (size_t)t);
				else
					p->tab[t].count -= n;
			}
			taken += n;
		}
	}
	unlock(p);
	if (taken)
		log_info(
		    "policy: %zu counts of a dead worker taken back", taken);
}

uint32_t
policy_user_conns(struct policy *p, int idx)
{
	struct pkey k;
	uint32_t n;

	if (idx < 0 || idx >= POLICY_MAX_USERS)
		return 0;
	user_key(&k, idx);
	k.slot = SLOT_TOTAL;
	lock(p);
	n = tab_get(p, &k);
	unlock(p);
	return n;
}

int
policy_user_ips(struct policy *p, int idx, int window, int64_t now)
{
	int n = 0;

	if (idx < 0 || idx >= POLICY_MAX_USERS)
		return 0;
	lock(p);
	for (int i = 0; i < CONFIG_MAX_UNIQUE_IPS; i++)
		if (p->ips[idx][i].h != 0 && p->ips[idx][i].seen > now - window)
			n++;
	unlock(p);
	return n;
}

uint32_t
policy_addr_conns(struct policy *p, const struct sockaddr *sa)
{
	struct pkey k;
	uint32_t n;

	addr_key(&k, sa, K_IP, is_v4(sa) ? 32 : 128, 0);
	k.slot = SLOT_TOTAL;
	lock(p);
	n = tab_get(p, &k);
	unlock(p);
	return n;
}

int
policy_user_stats(struct policy *p, const struct config_user *u, int64_t now,
    struct policy_stats *out)
{
	struct policy_user *r = p ? policy_user(p, u->pidx) : NULL;

	memset(out, 0, sizeof(*out));
	if (r == NULL)
		return -1;
	out->conns = policy_user_conns(p, u->pidx);
	out->c2s = __atomic_load_n(&r->bytes_c2s, __ATOMIC_RELAXED);
	out->s2c = __atomic_load_n(&r->bytes_s2c, __ATOMIC_RELAXED);
	out->used = policy_used(
	    r, policy_period_start(u->quota_period, u->quota_day, now));
	out->ips = policy_user_ips(p, u->pidx, u->unique_ips_window, now);
	return 0;
}

/* ------------------------------------------------------------ users */

static size_t
name_hash(const char *l, const char *n)
{
	uint64_t h = 1469598103934665603ull;

	for (; *l; l++)
		h = (h ^ (uint8_t)*l) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (; *n; n++)
		h = (h ^ (uint8_t)*n) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

/* The supervisor's private index of records by name. */
static int
byname_grow(struct policy *p)
{
	size_t cap = p->nbyname ? p->nbyname * 2 : 1024;
	int32_t *nb = malloc(cap * sizeof(*nb));

	if (nb == NULL)
		return -1;
	for (size_t i = 0; i < cap; i++)
		nb[i] = -1;
	for (uint32_t u = 0; u < p->h->nusers; u++) {
		size_t j = name_hash(p->users[u].listener, p->users[u].name) &
		    (cap - 1);
		while (nb[j] != -1)
			j = (j + 1) & (cap - 1);
		nb[j] = (int32_t)u;
	}
	free(p->byname);
	p->byname = nb;
	p->nbyname = cap;
	return 0;
}

int
policy_user_index(struct policy *p, const char *listener, const char *name)
{
	if (strlen(listener) >= CONFIG_NAME_MAX ||
	    strlen(name) >= CONFIG_NAME_MAX)
		return -1;
	if ((p->h->nusers + 1) * 2 > p->nbyname && byname_grow(p) == -1)
		return -1;
	size_t j = name_hash(listener, name) & (p->nbyname - 1);
	for (; p->byname[j] != -1; j = (j + 1) & (p->nbyname - 1)) {
		struct policy_user *r = &p->users[p->byname[j]];
		if (strcmp(r->listener, listener) == 0 &&
		    strcmp(r->name, name) == 0)
			return p->byname[j];
	}
	if (p->h->nusers >= POLICY_MAX_USERS)
		return -1;
	int idx = (int)p->h->nusers;
	struct policy_user *r = &p->users[idx];
	memset(r, 0, sizeof(*r));
	snprintf(r->listener, sizeof(r->listener), "%s", listener);
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->in_use = 1;
	p->byname[j] = idx;
	__atomic_store_n(&p->h->nusers, p->h->nusers + 1, __ATOMIC_RELEASE);
	return idx;
}

struct policy_user *
policy_user(struct policy *p, int idx)
{
	if (idx < 0 || (uint32_t)idx >= p->h->nusers)
		return NULL;
	return &p->users[idx];
}

int
policy_user_count(const struct policy *p)
{
	return (int)__atomic_load_n(&p->h->nusers, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------ quota */

static int
days_in_month(int year, int mon /* 0..11 */)
{
	static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
		31 };
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	return d[mon] + (mon == 1 && leap);
}

/* 00:00 UTC of the reset day of year/mon (day clamped to its end). */
static int64_t
month_reset(int year, int mon, int day)
{
	struct tm tm = { 0 };
	int dim = days_in_month(year, mon);

	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day > dim ? dim : day;
	return (int64_t)timegm(&tm);
}

int64_t
policy_period_start(int period, int day, int64_t now)
{
	struct tm tm;
	time_t t = (time_t)now;

	switch (period) {
	case QUOTA_DAILY:
		return now - ((now % 86400) + 86400) % 86400;
	case QUOTA_MONTHLY:
		gmtime_r(&t, &tm);
		int y = tm.tm_year + 1900, m = tm.tm_mon;
		int64_t r = month_reset(y, m, day);
		if (r > now) {
			if (--m < 0) {
				m = 11;
				y--;
			}
			r = month_reset(y, m, day);
		}
		return r;
	default:
		return 0;
	}
}

int64_t
policy_period_next(int period, int day, int64_t start)
{
	struct tm tm;
	time_t t = (time_t)start;

	switch (period) {
	case QUOTA_DAILY:
		return start + 86400;
	case QUOTA_MONTHLY:
		gmtime_r(&t, &tm);
		int y = tm.tm_year + 1900, m = tm.tm_mon + 1;
		if (m > 11) {
			m = 0;
			y++;
		}
		return month_reset(y, m, day);
	default:
		return INT64_MAX;
	}
}

uint64_t
policy_charge(struct policy_user *r, int up, uint64_t n, int64_t start)
{
	int64_t cur = __atomic_load_n(&r->period, __ATOMIC_ACQUIRE);

	/* A new period: the first to see it zeroes the count. */
	if (cur != start &&
	    __atomic_compare_exchange_n(
	        &r->period, &cur, start, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		__atomic_store_n(&r->used, 0, __ATOMIC_RELEASE);
	__atomic_fetch_add(
	    up ? &r->bytes_c2s : &r->bytes_s2c, n, __ATOMIC_RELAXED);
	return __atomic_add_fetch(&r->used, n, __ATOMIC_RELAXED);
}

uint64_t
policy_used(const struct policy_user *r, int64_t start)
{
	if (__atomic_load_n(&r->period, __ATOMIC_ACQUIRE) != start)
		return 0;
	return __atomic_load_n(&r->used, __ATOMIC_RELAXED);
}

void
policy_reset_quota(struct policy_user *r)
{
	__atomic_store_n(&r->used, 0, __ATOMIC_RELEASE);
}

uint64_t
policy_rate_take(
    struct policy_user *r, int up, uint64_t n, uint64_t rate, uint64_t now_ns)
{
	/* A burst of a tenth of a second's worth may go at once. */
	const uint64_t burst_ns = 100000000ull;
	uint64_t cost = rate ? (uint64_t)((double)n * 1e9 / (double)rate) : 0;
	uint64_t *tat = &r->tat[up ? 0 : 1];
	uint64_t old = __atomic_load_n(tat, __ATOMIC_RELAXED), nt;

	if (rate == 0)
		return 0;
	do {
		nt = (old > now_ns ? old : now_ns) + cost;
	} while (!__atomic_compare_exchange_n(
	    tat, &old, nt, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return nt > now_ns + burst_ns ? nt - now_ns - burst_ns : 0;
}

/* ------------------------------------------------------------ state file */

int
policy_save(struct policy *p, const char *path)
{
	char tmp[4200];
	FILE *f;
	int n = policy_user_count(p);

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "we")) == NULL)
		return -1;
	fprintf(f,
	    "# mtprotod quota state: listener user period used "
	    "bytes_c2s bytes_s2c\n");
	for (int i = 0; i < n; i++) {
		struct policy_user *r = &p->users[i];
		fprintf(f, "%s %s %lld %llu %llu %llu\n", r->listener, r->name,
		    (long long)__atomic_load_n(&r->period, __ATOMIC_ACQUIRE),
		    (unsigned long long)__atomic_load_n(
		        &r->used, __ATOMIC_RELAXED),
		    (unsigned long long)r->bytes_c2s,
		    (unsigned long long)r->bytes_s2c);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		int e = errno;
		fclose(f);
		unlink(tmp);
		errno = e;
		return -1;
	}
	if (fclose(f) != 0 || rename(tmp, path) == -1) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

int
policy_load(struct policy *p, const char *path)
{
	char line[512], l[CONFIG_NAME_MAX], u[CONFIG_NAME_MAX];
	long long period;
	unsigned long long used, c2s, s2c;
	FILE *f = fopen(path, "re");

	if (f == NULL)
		return errno == ENOENT ? 0 : -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#')
			continue;
		if (sscanf(line, "%63s %63s %lld %llu %llu %llu", l, u, &period,
		        &used, &c2s, &s2c) != 6)
			continue;
		int idx = policy_user_index(p, l, u);
		if (idx < 0)
			break;
		struct policy_user *r = &p->users[idx];
		r->period = period;
		r->used = used;
		r->bytes_c2s = c2s;
		r->bytes_s2c = s2c;
	}
	fclose(f);
	return 0;
}
