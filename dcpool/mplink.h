/*
 * Building middle-proxy links for workers (spec B.2.4-B.2.6): connect,
 * RPC_NONCE, key derivation, RPC_HANDSHAKE; then the socket and the CBC
 * state go to the worker that asked (MSG_LINK_GRANT) and our copy closes.
 */
#ifndef MTP_MPLINK_H
#define MTP_MPLINK_H

#include <stdint.h>

struct event_base;
struct config;
struct tgconf;
struct msg_outq;
struct pubaddr;

/*
 * pub: the public addresses, for the key derivation (B.2.5): a middle
 * proxy derives the link's keys from the address it sees us at.
 */
void mplink_init(struct event_base *, const struct config *, struct tgconf *,
    struct pubaddr *);
/*
 * A worker asks for a link to dc; the answer (grant or refusal), tagged
 * with req, goes into the worker's queue, which must outlive the build
 * (mplink_peer_gone before freeing it).
 */
void mplink_request(struct msg_outq *, int16_t dc, uint32_t req);
/* The worker's channel closed: links being built for it are dropped. */
void mplink_peer_gone(struct msg_outq *);

#endif
