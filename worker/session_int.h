/*
 * A client session, inside the worker: the state shared by session.c
 * (handshake, decisions, backend set-up) and relay.c (moving bytes).
 *
 * Memory: an idle session holds no data buffers. The worker reads into one
 * scratch buffer, transforms in place and writes at once; only what a
 * socket does not take right away is kept, in a heap buffer of exactly
 * that size, and the other side is not read again until it drains
 * (high water = anything pending, low water = empty).
 */
#ifndef MTP_SESSION_INT_H
#define MTP_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>

struct evdns_getaddrinfo_request;

#include "config.h"
#include "crypto.h"
#include "o2.h"
#include "policy.h"
#include "tls.h"

enum session_state {
	SS_PROXY, /* reading a PROXY header (listener proxy_protocol) */
	SS_HANDSHAKE, /* reading the ClientHello or o2 header */
	SS_TLS_INNER, /* ServerHello sent, reading the o2 header */
	SS_CONNECTING, /* connecting to the DC or fronting site */
	SS_RELAY, /* moving bytes both ways */
	SS_HOLD, /* bad client: read and discard until timeout */
	SS_RESOLVING, /* fronting host name lookup */
};

enum relay_mode {
	RELAY_RAW, /* fronting: bytes untouched both ways */
	RELAY_DIRECT, /* direct mode: re-encrypt up, passthrough down */
	RELAY_MIDDLE, /* middle mode: packets over a shared RPC link */
};

struct mlink;
struct mpool;

/* An IPv4 or IPv6 address, without sockaddr_storage's 100 spare bytes. */
union sockaddr_any {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/*
 * The payload size of proxy-to-client record number index of s
 * (relay.c, tls.record_sizing).
 */
#define TLS_DRS_SMALL          1369 /* one segment with headers */
#define TLS_DRS_SMALL_RECORDS  8
#define TLS_DRS_MEDIUM         4096
#define TLS_DRS_MEDIUM_RECORDS 16
#define TLS_DRS_MIN            (TLS_DRS_SMALL - 31)
struct session;
size_t tls_record_size(const struct session *, uint32_t index);

/* Bytes a socket did not take yet. */
struct pending {
	uint8_t *buf;
	size_t off, len, cap;
};

/* One side of the relay. */
struct side {
	struct session *owner;
	int fd;
	struct event rev; /* readable */
	struct event wev; /* writable */
	struct pending out; /* waiting to be written to fd */
	unsigned eof : 1; /* read EOF from fd */
	unsigned shut : 1; /* we shut down fd for writing */
	unsigned reading : 1; /* rev is added */
	unsigned writing : 1; /* wev is added */
	unsigned throttled : 1; /* paused by its user's rate */
};

/* BSD's sys/queue.h has it; glibc's does not. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar) \
	for ((var) = TAILQ_FIRST(head); \
	     (var) && ((tvar) = TAILQ_NEXT(var, field), 1); (var) = (tvar))
#endif

TAILQ_HEAD(session_list, session);
struct front_target;

struct session {
	TAILQ_ENTRY(session) entry; /* the worker's live or reap list */
	TAILQ_ENTRY(session) hs_entry; /* handshake queue, oldest first */
	const struct config_listener *l;
	enum session_state state;
	enum relay_mode mode;
	struct side c; /* the client */
	struct side s; /* DC or fronting site */
	struct event timer;
	uint64_t last_active_ms;
	union sockaddr_any peer;

	unsigned closed : 1; /* torn down; freed by the reaper */
	unsigned in_hs_queue : 1; /* on the handshake queue */
	unsigned counted_listener : 1; /* in the listener's gauge */
	unsigned handed_over : 1; /* closed here, lives on elsewhere */
	unsigned kept : 1; /* the new generation could not take it */

	/* the client's SNI: -1 tls_domain (or none), k tls_domains[k] */
	int8_t sni;

	/* fronting: waiting for the target's address */
	struct front_target *front_wait;
	TAILQ_ENTRY(session) front_entry;

	/* handshake: every byte the client sent so far (for fronting) */
	uint8_t *hs;
	size_t hs_len, hs_cap;
	unsigned is_tls : 1;
	unsigned hello_sent : 1; /* ServerHello gone: no fronting */
	unsigned hello_wait : 1; /* tls.hello_delay: the answer is in hs */
	unsigned failed : 1; /* a bad client, not fronted (rst_on_failed) */
	unsigned access_checked : 1; /* access lists looked at */
	unsigned counted_dc : 1;
	unsigned other_family : 1; /* a DC tried on its other family */

	/* fake TLS record layer */
	struct tls_reader tls_in; /* client -> proxy records */
	uint32_t tls_out_records; /* proxy -> client, for sizing */

	/* direct mode crypto (upload only; download is passthrough) */
	crypto_stream *c_dec; /* client -> proxy */
	crypto_stream *s_enc; /* proxy -> DC */
	/* their keys, for a handoff (OpenSSL does not give them back) */
	uint8_t c_dec_key[32], s_enc_key[32];
	int16_t dc;
	uint32_t tag;
	int user; /* index in l->users */
	/* limits (limits.c) */
	struct policy_claim claim; /* counts to give back at close */
	struct policy_user *urec; /* the user's record, once admitted */
	int64_t period_start, period_end; /* its quota period */
	int64_t seen_at; /* its address last refreshed */
	struct event throttle; /* reads paused by the user's rate */

	/* middle mode (mclient.c) */
	crypto_stream *c_enc; /* proxy -> client */
	struct mlink *link; /* NULL while waiting for one */
	struct mpool *pool; /* its DC's pool, once placed */
	TAILQ_ENTRY(session) link_entry; /* link->clients */
	TAILQ_ENTRY(session) wait_entry; /* pool->waiting */
	TAILQ_ENTRY(session) dirty_entry; /* answers queued, send pending */
	LIST_ENTRY(session) hash_entry; /* conn_id table */
	uint64_t conn_id;
	uint64_t sent_mark; /* link output offset of our
						 * last packet's end */
	uint8_t *inbuf; /* a partial client frame */
	size_t inlen, incap;
	uint64_t wait_since_ms; /* waiting for a link */
	unsigned waiting : 1; /* on its pool's wait list */
	unsigned conn_id_dead : 1; /* the ME forgot conn_id */
	unsigned had_link : 1; /* its stream went through one */
	unsigned dirty : 1; /* on the dirty list */
	size_t dirty_mark; /* queue length when marked */
	size_t link_counted; /* its queue bytes counted in
						 * link->client_bytes */
	uint64_t over_since_ms; /* output over its bound */
	uint64_t drained_ms; /* last took some of its output */
	union sockaddr_any local; /* address the client used */
	/* Client-facing key/IV, kept only while waiting for a link, for
	 * a fallback to direct mode (passthrough needs them). */
	uint8_t p2c_key[32], p2c_iv[16];
	uint8_t c_enc_key[32]; /* c_enc's key, for a handoff */
};

/*
 * Add or delete ev so that it matches on; returns on, for the caller to
 * keep as the event's state (was), so that unchanged interest costs
 * nothing.
 */
static inline int
event_want(struct event *ev, int was, int on)
{
	if (on != was) {
		if (on)
			event_add(ev, NULL);
		else
			event_del(ev);
	}
	return on;
}

/* limits.c */
void limits_init(void);
/* limits.per_ip / per_subnet for a new client: POLICY_OK, or why not
 * (counted, logged; the caller treats it as a bad client). */
enum policy_verdict limits_admit_addr(struct session *);
/* The user (index in s->l->users) may connect: POLICY_OK, or why not. */
enum policy_verdict limits_admit_user(struct session *, int idx);
/* A session handed over by a reload: counted, never refused. */
void limits_adopt(struct session *);
void limits_release(struct session *);
/* Count n bytes of the session's user; may throttle its reads; -1
 * when the session was closed (quota used up). */
int limits_charge(struct session *, int up, size_t n);

/* relay.c */
void relay_start(struct session *);
void relay_read_cb(evutil_socket_t, short, void *);
void relay_write_cb(evutil_socket_t, short, void *);
void side_want_read(struct session *, struct side *, int on);
void side_want_write(struct session *, struct side *, int on);
/* Queue bytes for a side (copies them); 0, or -1 when out of memory. */
int side_queue(struct side *, const uint8_t *, size_t);
/* need bytes of room after what sd has queued (the caller fills them and
 * adds to sd->out.len); NULL when out of memory. */
uint8_t *side_room(struct side *, size_t need);
/* Write what can be written now of buf; queue the rest. -1 on error. */
int side_send(struct session *, struct side *, const uint8_t *, size_t);

/* mclient.c: middle-proxy mode, the client side */
void middle_init(void);
/*
 * Takes over a client whose obfuscated2 header was accepted. May close
 * the session: check s->closed afterwards.
 */
void middle_start(
    struct session *, struct o2_session *, uint8_t *rest, size_t restlen);
/* Teardown of the middle-mode part of a session that is closing. */
void middle_session_closed(struct session *);
void middle_client_drained(struct session *, size_t n);
/* mpool.c */
void middle_dcpool_connected(void);
struct msg;
void middle_dcpool_msg(struct msg *);
/* Closes every link and empties every pool (tests, exit). */
void middle_close_all(void);

/* front.c: fronting targets, resolved once and kept with their TTL */
void front_init(void);
/*
 * Relays a bad client to its listener's real site (spec A.4.8). May
 * close the session.
 */
void front_session(struct session *);
/* A closing session leaves the target's wait list. */
void front_session_closed(struct session *);

/* session.c */
/*
 * The ownership rule (see the top of session.c): closing tears the
 * session down and queues it; only the reaper frees it, after the
 * current callback has returned. Idempotent.
 */
void session_close(struct session *, const char *why);
/* The session passed its handshake (or was fronted): its handshake
 * buffer and its place on the handshake queue go. */
void session_handshake_done(struct session *);
/* The DC whose middle-proxy pool serves a client's DC index: itself
 * when the DC table knows it, else the default DC. */
int16_t session_pool_dc(int16_t dc);
/* Closes every session (tests, exit); the reaper frees them. */
void session_close_all(const char *why);
/* Connects the backend side to sa. May close the session. */
void
session_backend_connect(struct session *, const struct sockaddr *, socklen_t);
/*
 * Middle mode gave up on this waiting client's DC: go direct. plain is
 * what the client sent so far, decrypted. May close the session.
 */
void session_direct_fallback(struct session *, uint8_t *plain, size_t len);
uint64_t coarse_now_ms(void);
struct tables;
/*
 * A reload in place (MSG_TABLES): take each listener's new users, ad
 * tag, TLS domain and fronting target, and the log level; close the
 * sessions of users that are gone or have a new secret. Takes the
 * users arrays out of t.
 */
void session_apply_tables(struct tables *);
/* front.c: a listener's fronting target changed (reload in place). */
void front_listener_changed(const struct config_listener *);
/* What the open sessions are doing, for a log line. */
void session_census(char *buf, size_t len);
/* Every open session, oldest first (handoff.c walks it). */
struct session_list *session_live_list(void);
/*
 * A session for a connection another worker handed over: the client
 * (and backend, or -1) descriptors, owned from now on; the caller
 * restores its state and calls relay_start(). NULL (cfd closed) when
 * out of memory.
 */
struct session *session_adopt(const struct config_listener *, int cfd, int bfd,
    const struct sockaddr *peer);

/* handoff.c: live sessions move to the next generation (reload) */
/* Hand every session over on fd (MSG_HANDOFF_TO). */
void handoff_to(int fd);
/* Adopt the sessions that come on fd (MSG_HANDOFF_FROM). */
void handoff_from(int fd);
/* 1 while handing over: the worker may not exit yet. */
int handoff_active(void);
/* A session became movable (it started relaying). */
void handoff_kick(void);
/* The worker holds no session any more. */
void handoff_sessions_gone(void);
void session_touch(struct session *);
/* The worker's scratch buffer for reads and in-place transforms. */
extern uint8_t *session_scratch;
#define SESSION_SCRATCH_LEN (128 * 1024)

#endif
