/*
 * A fake-TLS server's X25519 key share, cheaply (spec A.4.5).
 *
 * A real server's share is the u-coordinate of [a]B for a secret scalar
 * a: a point of the curve's prime-order subgroup. Nothing is ever
 * agreed with that key (the proxy does not speak TLS), so any point of
 * the subgroup will do, as long as a new one is independent of the last:
 * a random point of the curve (a random u whose u^3 + A u^2 + u is a
 * square mod p), multiplied by the cofactor 8. That costs a square test,
 * three doublings and an inversion, about a fifth of the scalar
 * multiplication of a real key pair (which OpenSSL does in some 39 us
 * here, over a third of a fake-TLS handshake's CPU).
 */
#ifndef MTP_CURVE_H
#define MTP_CURVE_H

#include <stdint.h>

/* A random point of curve25519's prime-order subgroup, its u-coordinate
 * little-endian (as X25519 public keys are sent). */
void curve25519_share(uint8_t out[32]);

#endif
