/*
 * Messages between mtprotod's processes: AF_UNIX SOCK_SEQPACKET
 * socketpairs made by the supervisor before each fork. One message per
 * datagram: a small header, a typed payload, and optionally one file
 * descriptor (SCM_RIGHTS). Every message type is listed here, with its
 * payload; each receiver handles them in one switch.
 */
#ifndef MTP_MSG_H
#define MTP_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Integers are in host order (both ends are the same binary on the same
 * host); a DC number travels as its int16 sign-extended to 32 bits.
 */
enum msg_type {
	MSG_NONE = 0,

	/* supervisor -> child */
	MSG_DRAIN, /* (none) stop accepting; exit when idle or
				 * after shutdown_timeout */
	MSG_QUIT, /* (none) exit now */
	MSG_REOPEN_LOG, /* (none); fd = the reopened log file
				 * (SIGUSR1), none for syslog/stderr */
	MSG_DCPOOL_PEER, /* u32 slot, u32 generation; fd = a socket to
				 * the dcpool (to a worker) or to the worker of
				 * that slot (to the dcpool) */
	MSG_TABLES, /* (none); fd = a memfd with the tables a reload
				 * changes in place (tables.h) */
	MSG_HANDOFF_TO, /* (none); fd = a channel to a worker of the new
				 * generation: stop accepting, hand every
				 * session over on it, exit when none is left */
	MSG_HANDOFF_FROM, /* (none); fd = a channel from a worker of the
				 * old generation: adopt what comes on it */

	/* old supervisor <-> new supervisor (binary upgrade) */
	MSG_UPGRADE_LSOCK, /* old: char key[96], struct sockaddr_storage,
				 * u32 addrlen, u32 n, u32 fd[n]: a listener's
				 * slot sockets, inherited across exec (the
				 * numbers are valid in the new process) */
	MSG_UPGRADE_STATE, /* old, last: u32 metrics memfd, u32 replay
				 * memfd (inherited), u32 old workers, u32
				 * metrics page socket (~0: none), char
				 * key[96] (its address:port), u32 policy
				 * memfd (~0: none; absent from older ones) */
	MSG_UPGRADE_HANDOFF, /* new: u32 old worker slot; fd = a handoff
				 * channel to one of the new workers */
	MSG_UPGRADE_READY, /* new: (none) it serves; the old one goes */

	/* child -> supervisor */
	MSG_READY, /* (none) the child serves */

	/* worker <-> dcpool (middle-proxy links) */
	MSG_LINK_REQUEST, /* worker: u32 dc, u32 request id */
	MSG_LINK_GRANT, /* dcpool: u32 dc, u32 request id, struct
				 * rpc_link_keys, u32 address length, struct
				 * sockaddr_storage (the middle proxy);
				 * fd = the link */
	MSG_LINK_REFUSED, /* dcpool: u32 dc, u32 request id, u32
				 * retry after (ms) */

	/* old worker <-> new worker (handoff channel) */
	MSG_SESSION, /* u32 flags, the session image (handoff.h);
				 * fds: the client, the backend when
				 * flags & MSG_SESSION_BACKEND, and a memfd
				 * holding the image instead of the payload
				 * when flags & MSG_SESSION_MEMFD */
	MSG_SESSION_BACK, /* new -> old: could not adopt it; as
				 * MSG_SESSION, the old worker keeps it */
	MSG_LINK_MOVE, /* old -> new: a middle-proxy link, before the
				 * sessions on it; as MSG_SESSION with the link
				 * image and socket (as the client fd) */

	/* dcpool -> supervisor (after the others: upgrades keep numbers) */
	MSG_PUBADDR, /* struct pubaddr_state (discover.h): the public
				 * address changed */
	/* dcpool -> worker */
	MSG_TLS_SHAPE, /* char key[264] ("host:port" of a fronting
				 * target), struct tls_shape: its profile */
	/* worker -> dcpool */
	MSG_FINGERPRINTS, /* u32 n, n struct fp_entry, u64 other[3]
				 * (fptable.h): ClientHello fingerprints
				 * counted since the last one */
	/* dcpool <-> supervisor: the management API's changes */
	MSG_API_REQUEST, /* u32 id, u32 0, JSON text: a change to apply */
	MSG_API_REPLY, /* u32 id, u32 HTTP status, JSON text; id 0 with
				 * status 0: the users file's new revision
				 * (after a reload), unasked */

	MSG_TYPE_MAX
};

#define MSG_SESSION_BACKEND 0x1
#define MSG_SESSION_MEMFD   0x2
/* The most descriptors one message carries (MSG_SESSION*). */
#define MSG_FDS_MAX 3
/* The largest session image a receiver takes. */
#define MSG_SESSION_IMAGE_MAX (64 * 1024 * 1024)

#define MSG_PAYLOAD_MAX (64 * 1024)

/* A received message; read the payload with the msg_get_* helpers. */
struct msg {
	uint32_t type;
	uint32_t len;
	int fd; /* -1 when none came */
	int xfd[MSG_FDS_MAX - 1]; /* more, in order (MSG_SESSION*) */
	unsigned nxfd;
	size_t rpos;
	int error; /* a get ran past the end */
	uint8_t data[MSG_PAYLOAD_MAX];
};

/* A message being built. */
struct msgbuf {
	uint32_t type;
	size_t len;
	int overflow;
	uint8_t data[MSG_PAYLOAD_MAX];
};

const char *msg_type_name(uint32_t type);

void msgbuf_init(struct msgbuf *, uint32_t type);
void msgbuf_put_u32(struct msgbuf *, uint32_t);
void msgbuf_put_u64(struct msgbuf *, uint64_t);
void msgbuf_put_bytes(struct msgbuf *, const void *, size_t);
/* Sends the message with fd (or -1). 0 on success, -1 with errno. */
int msgbuf_send(int sock, const struct msgbuf *, int fd);
/* A message with no payload. */
int msg_send_simple(int sock, uint32_t type);

/*
 * Receives one message. Returns 1 with *m filled, 0 on EOF, -1 on error
 * (errno; EAGAIN when none is waiting), -2 when the datagram is malformed
 * (truncated, unknown type, length mismatch); a malformed message's fd is
 * closed.
 */
int msg_recv(int sock, struct msg *m);

int msg_get_u32(struct msg *, uint32_t *);
int msg_get_u64(struct msg *, uint64_t *);
int msg_get_bytes(struct msg *, void *, size_t);
/* 0 if every get succeeded and the whole payload was read, else -1. */
int msg_end(struct msg *);
/* Takes the fd out of the message (caller owns it); -1 if none. */
int msg_take_fd(struct msg *);
/* Takes every fd (m->fd, then the others); returns how many. */
unsigned msg_take_fds(struct msg *, int fds[MSG_FDS_MAX]);
/* Releases what a handler did not take (the fds). */
void msg_done(struct msg *);

/*
 * Typed pairs, one per message type. Send functions return 0, or -1
 * with errno as msgbuf_send (they never take the fd: the caller closes
 * its copy). Get functions check the type and that the payload is
 * exactly what the type carries; 0 or -1 (malformed), unless they say
 * otherwise. The msg_build_* functions fill a msgbuf for msg_outq_send.
 */

/* MSG_DRAIN, MSG_QUIT, MSG_READY: no payload, no fd. */
int msg_send_drain(int sock);
int msg_send_quit(int sock);
int msg_send_ready(int sock);
/* 0 if m is of that type with an empty payload, else -1. */
int msg_get_empty(struct msg *, uint32_t type);

/* MSG_REOPEN_LOG: fd = the new log file, or -1 when there is none. */
int msg_send_reopen_log(int sock, int fd);
/* 0 with *fd the log file (caller owns it) or -1 if none came. */
int msg_get_reopen_log(struct msg *, int *fd);

/* MSG_DCPOOL_PEER: a worker slot and generation, and the channel fd. */
int msg_send_dcpool_peer(int sock, uint32_t slot, uint32_t generation, int fd);
/* The channel fd (caller owns it), or -1 when the message is malformed. */
int msg_get_dcpool_peer(struct msg *, uint32_t *slot, uint32_t *generation);

/* MSG_TABLES: fd = the memfd. */
int msg_send_tables(int sock, int memfd);
/* The memfd (caller owns it), or -1 when malformed. */
int msg_get_tables(struct msg *);

/* MSG_HANDOFF_TO, MSG_HANDOFF_FROM: fd = the handoff channel. */
int msg_send_handoff(int sock, uint32_t type, int fd);
/* The channel fd (caller owns it), or -1 when malformed. */
int msg_get_handoff(struct msg *, uint32_t type);

/*
 * MSG_SESSION, MSG_SESSION_BACK, MSG_LINK_MOVE: an image of len bytes and its
 * descriptors (client, and backend unless it is -1). An image too big
 * for one message goes in a memfd. 0, or -1 with errno (EAGAIN: the
 * channel is full, nothing was sent).
 */
int msg_send_session(int sock, uint32_t type, const uint8_t *image, size_t len,
    int client_fd, int backend_fd);
/*
 * The image (malloc'd, *len bytes; the caller frees it) and the
 * descriptors (caller owns them; *backend_fd -1 when none came).
 * 0, or -1 when malformed (nothing is kept then).
 */
int msg_get_session(struct msg *, uint32_t type, uint8_t **image, size_t *len,
    int *client_fd, int *backend_fd);

/* MSG_TLS_SHAPE */
#define MSG_SHAPE_KEY 264
struct tls_shape;
void
msg_build_tls_shape(struct msgbuf *, const char *key, const struct tls_shape *);
/* 0 with key terminated, or -1. */
int
msg_get_tls_shape(struct msg *, char key[MSG_SHAPE_KEY], struct tls_shape *);

/* MSG_FINGERPRINTS */
struct fptable;
int msg_send_fingerprints(int sock, const struct fptable *);
/* Into t (initialised with fptable_init first; entries added to it);
 * 0, or -1 when malformed. */
int msg_get_fingerprints(struct msg *, struct fptable *t);

/* MSG_API_REQUEST, MSG_API_REPLY: json is NUL-terminated (at most
 * MSG_PAYLOAD_MAX - 16 bytes). */
int msg_send_api(
    int sock, uint32_t type, uint32_t id, uint32_t status, const char *json);
/* json: cap bytes at least, NUL-terminated on success. */
int msg_get_api(struct msg *, uint32_t type, uint32_t *id, uint32_t *status,
    char *json, size_t cap);

/* MSG_PUBADDR */
struct pubaddr_state;
int msg_send_pubaddr(int sock, const struct pubaddr_state *);
/* 0 with the strings terminated, or -1. */
int msg_get_pubaddr(struct msg *, struct pubaddr_state *);

/* Binary upgrade (supervisor.c). */
#define MSG_LSOCK_KEY 96
#define MSG_LSOCK_FDS ((MSG_PAYLOAD_MAX - 512) / 4)
int msg_send_upgrade_lsock(int sock, const char *key,
    const struct sockaddr_storage *addr, socklen_t addrlen, const int *fds,
    uint32_t n);
/* fds (at most max of them): the numbers as sent; 0 or -1. */
int msg_get_upgrade_lsock(struct msg *, char key[MSG_LSOCK_KEY],
    struct sockaddr_storage *addr, socklen_t *addrlen, int *fds, uint32_t max,
    uint32_t *n);
/* policy_fd: the policy zone's memfd, -1 none (an older binary's
 * message has no such field: -1). */
int msg_send_upgrade_state(int sock, int metrics_fd, int replay_fd,
    uint32_t old_workers, int page_fd, const char *page_key, int policy_fd);
int msg_get_upgrade_state(struct msg *, int *metrics_fd, int *replay_fd,
    uint32_t *old_workers, int *page_fd, char page_key[MSG_LSOCK_KEY],
    int *policy_fd);
int msg_send_upgrade_handoff(int sock, uint32_t old_slot, int fd);
/* The channel fd (caller owns it), or -1 when malformed. */
int msg_get_upgrade_handoff(struct msg *, uint32_t *old_slot);

struct rpc_link_keys;

/* MSG_LINK_REQUEST: a worker asks the dcpool for a link to dc. */
int msg_send_link_request(int sock, int16_t dc, uint32_t req_id);
int msg_get_link_request(struct msg *, int16_t *dc, uint32_t *req_id);

/*
 * MSG_LINK_GRANT: a built link to dc for request req_id: its CBC state,
 * the middle proxy's address, and the socket (fd).
 */
void msg_build_link_grant(struct msgbuf *, int16_t dc, uint32_t req_id,
    const struct rpc_link_keys *keys, const struct sockaddr_storage *me,
    socklen_t melen);
int msg_send_link_grant(int sock, int16_t dc, uint32_t req_id,
    const struct rpc_link_keys *keys, const struct sockaddr_storage *me,
    socklen_t melen, int fd);
/* returns the link fd (caller owns it), or -1 when malformed */
int msg_get_link_grant(struct msg *, int16_t *dc, uint32_t *req_id,
    struct rpc_link_keys *keys, struct sockaddr_storage *me);

/* MSG_LINK_REFUSED: no link for request req_id; ask after retry_ms. */
void msg_build_link_refused(
    struct msgbuf *, int16_t dc, uint32_t req_id, uint32_t retry_ms);
int
msg_send_link_refused(int sock, int16_t dc, uint32_t req_id, uint32_t retry_ms);
int msg_get_link_refused(
    struct msg *, int16_t *dc, uint32_t *req_id, uint32_t *retry_ms);

/*
 * A bounded queue of messages to one peer, for a sender that must not
 * lose a message when the peer's socket is full (EAGAIN): what cannot
 * go now waits and is sent on EV_WRITE, in order. The queue owns each
 * fd handed to it: it closes it once the message is sent or dropped.
 */
struct event_base;
struct msg_outq;

struct msg_outq *msg_outq_new(struct event_base *, int sock, size_t max);
/*
 * Sends mb (with fd, or -1) now, or queues it. 0 when sent or queued;
 * -1 when dropped (queue full: ENOBUFS; the socket failed: its errno),
 * fd then closed.
 */
int msg_outq_send(struct msg_outq *, const struct msgbuf *, int fd);
/* Messages waiting. */
size_t msg_outq_len(const struct msg_outq *);
int msg_outq_sock(const struct msg_outq *);
/* Drops what waits (closing the fds); the socket stays open. */
void msg_outq_free(struct msg_outq *);

#endif
