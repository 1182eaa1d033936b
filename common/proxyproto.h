/*
 * The PROXY protocol header, version 2 (HAProxy's proxy-protocol.txt,
 * section 2.2), as mtprotod sends it to a fronting target
 * (fronting_proxy_protocol = "v2"), so that the site logs the prober's
 * address instead of ours.
 */
#ifndef MTP_PROXYPROTO_H
#define MTP_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_V2_SIG_LEN 12
#define PROXY_V2_MAX     (16 + 36)

/*
 * A PROXY (command 0x21) header for a TCP connection from src to dst:
 * TCP over IPv4 (IPv4-mapped IPv6 addresses on both sides count as
 * IPv4), TCP over IPv6, or for other pairs the UNSPEC family without
 * addresses. Its length (16 + 12, 16 + 36 or 16), or 0 if cap is short.
 */
size_t proxy_v2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst);

#endif
