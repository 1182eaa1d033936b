/*
 * Where Telegram's DCs are (spec B.1.1, B.1.2): the built-in production and
 * test addresses, overridden or extended by the config's telegram.dc list,
 * and the mapping from the DC index a client sends (A.2.4) to an address.
 * A table belongs to one process; nothing here is shared.
 */
#ifndef MTP_DC_H
#define MTP_DC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* A.2.4: apps send 10000 + n for test DC n. */
#define DC_TEST_OFFSET 10000
/* B.1.1: every built-in DC listens on 443. */
#define DC_PORT 443

struct dc_table;

/*
 * The built-in table plus the overrides: the overrides of an id replace
 * its built-in entry whole (an IPv6-only override leaves no IPv4
 * address), one address per family (the last one wins), or add a new
 * id. Ids are 1..32767; test DC n is id 10000 + n. default_dc must be
 * in the result. NULL with errno EINVAL (bad id, family or default_dc) or
 * ENOMEM.
 */
struct dc_table *
dc_table_new(const struct config_dc *over, size_t n, int default_dc);
void dc_table_free(struct dc_table *);

/*
 * The address for a client's DC index: abs(index), so media (negative)
 * indexes share their DC's address and 10000 + n is test DC n. 0 and ids
 * the table lacks give default_dc's address with *used_default = 1 (else
 * 0). prefer_ipv6 picks the IPv6 address when the DC has one; a DC known
 * only by one family yields that family either way. Returns 0, or -1 if
 * there is no address at all.
 */
int dc_lookup(const struct dc_table *, int16_t dc_index, int prefer_ipv6,
    struct sockaddr_storage *out, socklen_t *len, int *used_default);

/*
 * The same DC's address in the family other than family (the one that
 * failed), for a second try: 0, or -1 if it has none.
 */
int dc_lookup_other(const struct dc_table *, int16_t dc_index, int family,
    struct sockaddr_storage *out, socklen_t *len);

/*
 * 1 the first time an index without an entry of its own (0 or unknown)
 * is seen, so the caller logs one line per id; 0 afterwards and for known
 * ids. Media and main indexes of a DC count as one id.
 */
int dc_table_warn_once(struct dc_table *, int16_t dc_index);

#endif
