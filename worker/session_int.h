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
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>

struct evdns_getaddrinfo_request;

#include "config.h"
#include "crypto.h"
#include "o2.h"
#include "tls.h"

enum session_state {
	SS_HANDSHAKE,		/* reading the ClientHello or o2 header */
	SS_TLS_INNER,		/* ServerHello sent, reading the o2 header */
	SS_CONNECTING,		/* connecting to the DC or fronting site */
	SS_RELAY,		/* moving bytes both ways */
	SS_HOLD,		/* bad client: read and discard until timeout */
	SS_RESOLVING,		/* fronting host name lookup */
};

enum relay_mode {
	RELAY_RAW,		/* fronting: bytes untouched both ways */
	RELAY_DIRECT,		/* direct mode: re-encrypt up, passthrough down */
};


/* Bytes a socket did not take yet. */
struct pending {
	uint8_t		*buf;
	size_t		 off, len;
};

/* One side of the relay. */
struct side {
	struct session	*owner;
	int		 fd;
	struct event	 rev;		/* readable */
	struct event	 wev;		/* writable */
	struct pending	 out;		/* waiting to be written to fd */
	unsigned	 eof:1;		/* read EOF from fd */
	unsigned	 shut:1;	/* we shut down fd for writing */
	unsigned	 reading:1;	/* rev is added */
	unsigned	 writing:1;	/* wev is added */
};

struct session {
	struct session		*next, *prev;	/* the worker's list */
	const struct config_listener *l;
	enum session_state	 state;
	enum relay_mode		 mode;
	struct side		 c;		/* the client */
	struct side		 s;		/* DC or fronting site */
	struct event		 timer;
	uint64_t		 last_active_ms;
	struct sockaddr_storage	 peer;
	struct evdns_getaddrinfo_request *dns_req; /* fronting lookup */

	/* handshake: every byte the client sent so far (for fronting) */
	uint8_t			*hs;
	size_t			 hs_len, hs_cap;
	unsigned		 is_tls:1;
	unsigned		 hello_sent:1;	/* ServerHello gone: no fronting */
	unsigned		 counted_dc:1;

	/* fake TLS record layer */
	struct tls_reader	 tls_in;	/* client -> proxy records */
	uint32_t		 tls_out_records; /* proxy -> client, for sizing */

	/* direct mode crypto (upload only; download is passthrough) */
	crypto_stream		*c_dec;		/* client -> proxy */
	crypto_stream		*s_enc;		/* proxy -> DC */
	int16_t			 dc;
	uint32_t		 tag;
	int			 user;		/* index in l->users */

};

/* relay.c */
void	relay_start(struct session *);
void	relay_read_cb(evutil_socket_t, short, void *);
void	relay_write_cb(evutil_socket_t, short, void *);
void	side_want_read(struct session *, struct side *, int on);
void	side_want_write(struct session *, struct side *, int on);
/* Queue bytes for a side (copies them); 0, or -1 when out of memory. */
int	side_queue(struct side *, const uint8_t *, size_t);
/* Write what can be written now of buf; queue the rest. -1 on error. */
int	side_send(struct session *, struct side *, const uint8_t *, size_t);

/* session.c */
void	session_close(struct session *, const char *why);
uint64_t coarse_now_ms(void);
void	session_touch(struct session *);
/* The worker's scratch buffer for reads and in-place transforms. */
extern uint8_t	*session_scratch;
#define SESSION_SCRATCH_LEN	(128 * 1024)

#endif
