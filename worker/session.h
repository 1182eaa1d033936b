/*
 * A client session: handshake (fake TLS / obfuscated2), then the backend
 * (direct to a DC, fronting, or held until the timeout).
 */
#ifndef MTP_SESSION_H
#define MTP_SESSION_H

#include <sys/socket.h>

#include "config.h"

void session_init(void);
/* Takes ownership of fd (non-blocking, accepted on listener l). */
void session_accept(int fd, const struct sockaddr *peer, socklen_t len,
    const struct config_listener *l);

#endif
