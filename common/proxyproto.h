/*
 * The PROXY protocol header (HAProxy's proxy-protocol.txt): version 2 as
 * mtprotod sends it to a fronting target (fronting_proxy_protocol =
 * "v2"), so that the site logs the prober's address instead of ours;
 * versions 1 and 2 as a load balancer in front of mtprotod sends them
 * (a listener's proxy_protocol).
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

/* The longest header proxy_parse waits for (v1: 107; v2: 16 + TLVs). */
#define PROXY_HDR_MAX 1024
#define PROXY_V1      1 /* versions accepted, for proxy_parse */
#define PROXY_V2      2

struct proxy_hdr {
	int version; /* 1 or 2 */
	/* 0: the connection's own addresses stand (v2 LOCAL, UNSPEC, or
	 * v1 UNKNOWN); 1: src and dst are the client's and ours */
	int has_addr;
	struct sockaddr_storage src, dst;
	socklen_t srclen, dstlen;
};

/*
 * A PROXY header at the start of buf, of one of the versions (a mask of
 * PROXY_V1 / PROXY_V2): the bytes it took (> 0) with *out filled, 0 when
 * more bytes are needed, -1 when buf does not start with a well-formed
 * header of those versions (TCP over IPv4 or IPv6, UNKNOWN / LOCAL).
 */
int proxy_parse(
    const uint8_t *buf, size_t len, unsigned versions, struct proxy_hdr *out);

#endif
