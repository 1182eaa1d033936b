/*
 * A client session: handshake (fake TLS / obfuscated2), then the backend
 * (direct to a DC, fronting, or held until the timeout).
 */
#ifndef MTP_SESSION_H
#define MTP_SESSION_H

#include <sys/socket.h>

#include "config.h"

void session_init(void);
/*
 * The dcpool learned the answer shape of a fronting target ("host:port",
 * config_fronting_key): the fake-TLS listeners fronting there answer
 * with it from now on.
 */
struct tls_shape;
void session_tls_shape(const char *key, const struct tls_shape *);
/* Takes ownership of fd (non-blocking, accepted on listener l). */
void session_accept(int fd, const struct sockaddr *peer, socklen_t len,
    const struct config_listener *l);

#endif
