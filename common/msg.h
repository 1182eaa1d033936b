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

	/* child -> supervisor */
	MSG_READY, /* (none) the child serves */

	/* worker <-> dcpool (middle-proxy links) */
	MSG_LINK_REQUEST, /* worker: u32 dc (i16 as u32), u32 count */
	MSG_LINK_GRANT, /* dcpool: u32 dc, rpc link state; fd = link */
	MSG_LINK_REFUSED, /* dcpool: u32 dc, u32 retry_after_ms */
	MSG_TG_CONFIG, /* dcpool: Telegram config for workers */

	MSG_TYPE_MAX
};

#define MSG_PAYLOAD_MAX (64 * 1024)

/* A received message; read the payload with the msg_get_* helpers. */
struct msg {
	uint32_t type;
	uint32_t len;
	int fd; /* -1 when none came */
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
/* Releases what a handler did not take (the fd). */
void msg_done(struct msg *);

/* MSG_DCPOOL_PEER: a worker slot and generation, and the channel fd. */
int msg_send_dcpool_peer(int sock, uint32_t slot, uint32_t generation, int fd);
/* The channel fd (caller owns it), or -1 when the message is malformed. */
int msg_get_dcpool_peer(struct msg *, uint32_t *slot, uint32_t *generation);

#endif
