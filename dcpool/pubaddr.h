/*
 * The public IPv4 and IPv6 addresses (issue 13), found by the dcpool:
 * STUN binding requests to network.stun_servers and GETs of
 * network.ip_urls, at start and every network.discover_interval
 * seconds (sooner after a round that found nothing). An address is
 * taken only when the sources agree (discover_vote); it is kept in
 * state_dir, so a restart has it at once. network.public_ipv4 / _ipv6
 * (or telegram.nat_ip) set one by hand: that family is not asked.
 */
#ifndef MTP_PUBADDR_H
#define MTP_PUBADDR_H

#include <stdio.h>

#include "config.h"
#include "discover.h"

struct event_base;
struct pubaddr;

/*
 * Loads the cached copy, then keeps the state fresh on base; changed
 * runs whenever it changes (also before returning, when the cache or
 * the config gives an address). NULL only when out of memory.
 */
struct pubaddr *pubaddr_start(struct event_base *, const struct config *,
    void (*changed)(void *arg, const struct pubaddr_state *), void *arg);
/* Never NULL (for a NULL pubaddr: an empty state). */
const struct pubaddr_state *pubaddr_state(const struct pubaddr *);
void pubaddr_free(struct pubaddr *);

/*
 * For --check: one discovery round now (with the config's sources, no
 * cache), then what was found and whether an interface has it (no NAT)
 * or not (NAT), on f. 0, or -1 when it cannot run.
 */
int pubaddr_report(const struct config *, FILE *f);

#endif
