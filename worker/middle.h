/*
 * Middle-proxy mode in a worker (spec B.2, DESIGN.md "Workers"), shared
 * by its three parts:
 *   mlink.c    the links: I/O, RPC framing, dispatch of what the middle
 *              proxy (ME) sends, their death and their reaper;
 *   mpool.c    the pools (one per DC), link requests to the dcpool and
 *              their time-outs, the once-a-second tick;
 *   mclient.c  the client side: packets to PROXY_REQs, answers back in
 *              the client's transport, per-client flow control.
 *
 * The dcpool builds an RPC link (connect, nonce, keys, handshake) and
 * hands the socket and the CBC state to us; from then on the link lives
 * here, so a dcpool restart drops nobody.
 *
 * Ownership: like sessions (session.c), a link is freed in one place,
 * its reaper, after the callback in flight has returned; link_close()
 * only tears it down and moves or closes its clients.
 *
 * Flow control, with every bound hard:
 * - a client whose queued answers pass client_queue_max is not read (so
 *   answers to it dry up); past client_hard_max() (more than its link
 *   can hold back, so never for a client that reads) it is closed at once,
 *   and it is closed when it stays over client_queue_max for
 *   client_queue_timeout;
 * - a link stops reading while the answers queued for all its clients
 *   pass link_queue_max, and resumes below half of it; if it is still
 *   stopped after LINK_STALL_MS, the clients that hold it up (over
 *   their own bound, or not reading at all for LINK_STALL_MS) are
 *   closed, most queued first, until it can go on: no client holds up
 *   the others for long;
 * - clients stop being read while their link's own output queue is over
 *   link_queue_max.
 */
#ifndef MTP_MIDDLE_H
#define MTP_MIDDLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "framing.h"
#include "rpc.h"
#include "session_int.h"

#define MIDDLE_MAX_POOLS 64
#define MIDDLE_HASH_SIZE (1 << 16) /* conn_id buckets */
/* One read takes many frames. */
#define LINK_RBUF_MIN (256 * 1024)
/* The largest frame a link takes: a whole packet plus RPC headers. */
#define LINK_FRAME_MAX (FRAME_MAX_PACKET + 4096)
/* A partial frame of LINK_FRAME_MAX plus room for one read. */
#define LINK_RBUF_MAX (LINK_FRAME_MAX + LINK_RBUF_MIN)
/* A link stopped for its clients' sake is unblocked within this. */
#define LINK_STALL_MS  500
#define MIDDLE_TICK_MS 1000
/* Link requests the dcpool has not answered within this are lost. */
#define LINK_REQ_TIMEOUT_MS(cfg) ((uint64_t)(cfg)->connect_timeout * 3000)
/* A waiting client gets a link within this, or is closed. */
#define WAIT_MAX_MS(cfg) ((uint64_t)(cfg)->connect_timeout * 2000)
/* Link requests in flight per pool. */
#define POOL_REQS_MAX 8

/*
 * A link's output: a chain of chunks, filled at the tail and written
 * from the head with one writev. A frame never straddles two chunks (it
 * is framed and encrypted in place), bytes never move, and chunks are
 * recycled through a small per-worker free list, so queueing allocates
 * nothing in the steady state. A drained queue holds no memory.
 *
 * Frames are encrypted at the end of the event-loop turn, those of every
 * link at once (rpc_links_encrypt: the CBC chains run side by side), so
 * a chunk holds sent bytes, then encrypted ones, then framed ones.
 */
#define WQ_CHUNK    (256 * 1024)
#define WQ_FREE_MAX 8 /* recycled chunks kept per worker */
#define WQ_IOV_MAX  64
struct wchunk {
	struct wchunk *next;
	size_t off, enc, len, cap; /* sent, encrypted, filled, size */
	uint8_t data[];
};
struct wqueue {
	struct wchunk *head, *tail;
	size_t pending; /* filled and not sent, over all chunks */
};

TAILQ_HEAD(mlink_list, mlink);

struct mlink {
	TAILQ_ENTRY(mlink) entry; /* its pool's links, or the reap list */
	struct mpool *pool;
	int fd;
	struct event rev, wev;
	TAILQ_ENTRY(mlink) flush_entry; /* on M.flushq */
	struct event stall; /* reading stopped for LINK_STALL_MS */
	struct rpc_link rpc;
	struct sockaddr_storage me;
	uint8_t *rbuf;
	size_t rlen, rcap;
	size_t rdec; /* bytes of rbuf already decrypted */
	struct wqueue wq;
	uint64_t queued_total; /* bytes ever queued to the ME */
	uint64_t written_total; /* bytes ever written to the ME */
	struct session_list clients;
	size_t nclients;
	size_t client_bytes; /* sum of its clients' link_counted */
	uint64_t last_rx_ms;
	uint64_t last_ping_ms;
	unsigned reading : 1;
	unsigned writing : 1;
	unsigned clients_paused : 1;
	unsigned held : 1; /* adopted, not read until its clients came */
	unsigned flush_queued : 1; /* on M.flushq */
	int error; /* errno of a failed write: dies next turn */
	unsigned closed : 1; /* torn down; the reaper frees it */
};

struct link_req {
	uint32_t id;
	uint64_t sent_ms;
};

struct mpool {
	int16_t dc;
	struct mlink_list links;
	size_t nlinks;
	struct link_req reqs[POOL_REQS_MAX]; /* requests in flight */
	size_t inflight;
	uint64_t retry_at_ms;
	uint32_t failures;
	struct session_list waiting; /* clients without a link */
	size_t nwaiting;
	uint64_t idle_since_ms; /* no clients since; 0 = has some */
};

LIST_HEAD(session_hash_bucket, session);

struct middle {
	struct mpool pools[MIDDLE_MAX_POOLS];
	size_t npools;
	struct session_hash_bucket hash[MIDDLE_HASH_SIZE];
	uint32_t next_req;
	struct event tick;
	struct session_list dirty; /* answers queued, not sent yet */
	struct mlink_list reap; /* closed links, to be freed */
	/* Links with frames queued this turn: encrypted together and
	 * flushed by flush_ev, after every read that was ready. */
	TAILQ_HEAD(, mlink) flushq;
	struct event flush_ev;
	struct event cflush_ev; /* client_flush_dirty(), once per turn */
	struct event reaper;
	/* Handing over (reload): the links left with their clients; no
	 * new links are asked for, new clients wait and move too. */
	int frozen;
};
extern struct middle M;

/* mlink.c */
void mlink_init(void);
/* A link from a dcpool grant; NULL (fd closed) when it cannot be. */
struct mlink *link_new(struct mpool *, const struct rpc_link_keys *,
    const struct sockaddr_storage *me, int fd);
/* Tears the link down, moves or closes its clients; idempotent. */
void link_close(struct mlink *, const char *why);
/* Queue a small message of ours (PONG, PING, CLOSE_CONN) and flush. */
void link_send_small(struct mlink *, const uint8_t *payload, size_t len);
/*
 * Flush after queueing, once per link per event-loop turn (after every
 * client read that is ready now), unless the socket is known to be full.
 */
void link_kick(struct mlink *);
/* The output waiting for its clients changed. */
void link_clients_changed(struct mlink *);
/* need contiguous bytes at the queue's tail; NULL when out of memory. */
uint8_t *wq_room(struct wqueue *, size_t need);
/* Seal the payload already at frame + RPC_FRAME_HDR (frame from
 * wq_room(&l->wq, cap)) and queue it. */
int link_queue_frame(struct mlink *, uint8_t *frame, size_t cap, size_t len);
void link_ping(struct mlink *);
struct link_image;
/* The link's image for a handoff, as id (byte runs point into l). */
void link_to_image(struct mlink *, uint32_t id, struct link_image *);
/* A link from another worker's image and socket; NULL (fd closed). */
struct mlink *link_adopt(const struct link_image *, int fd);
/* 1 if l is a live link of one of our pools (not closed or freed). */
int link_alive(const struct mlink *);
/*
 * An adopted link is not read until its clients are adopted too (what
 * the middle proxy sends them meanwhile waits in the socket).
 */
void link_hold(struct mlink *, int on);

/* mclient.c */
struct session *middle_conn_find(uint64_t conn_id);
void client_deliver(struct session *, const uint8_t *, size_t);
void client_quickack(struct session *, uint32_t confirm);
void client_flush_dirty(void);
/* Puts a client on a link; may close it. */
void client_attach(struct session *, struct mlink *);
/* Takes a client off its link. */
void client_detach(struct session *);
/*
 * l stopped reading LINK_STALL_MS ago: close the clients that hold it
 * up (biggest queue first) until it can read again. 1 if it still
 * cannot (its clients read, only slowly).
 */
int client_shed(struct mlink *);
size_t client_hard_max(void);
struct session_image;
/* The middle-mode part of a session's image (link: its link's id). */
int middle_to_image(struct session *, uint32_t link, struct session_image *);
/*
 * Resumes a handed-over middle-mode session on l (an adopted link) or,
 * without one, through its pool. May close it.
 */
void middle_adopt(struct session *, const struct session_image *,
    struct mlink *l, int link_lost);

/* mpool.c */
void mpool_init(void);
/* The pool of a client's DC (unknown DCs share the default DC's). */
struct mpool *pool_of(int16_t dc);
/* Puts a client on the least loaded link of its pool, or makes it
 * wait; may close it (or send it direct, middle.fallback_direct). */
void pool_place(struct session *);
void pool_wait_remove(struct session *);
void pool_maintain(struct mpool *);

#endif
