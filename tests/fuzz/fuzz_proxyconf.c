/*
 * Fuzz target for common/proxyconf.c: the getProxyConfig parser on any
 * text. A failure must say where; a success must give sorted entries that
 * every lookup finds, and printing them back must parse to the same list.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyconf.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check(int ok)
{
	if (!ok)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct proxyconf pc, pc2;
	static char text[PROXYCONF_MAX_ENTRIES * 80 + 64];
	const struct proxyconf_entry *e;
	char err[128], addr[ADDR_STRLEN];
	size_t n = 0, cnt;

	if (proxyconf_parse((const char *)data, size, &pc, err, sizeof(err)) ==
	    -1) {
		check(pc.n == 0);
		check(strncmp(err, "line ", 5) == 0);
		check(memchr(err, '\0', sizeof(err)) != NULL);
		return 0;
	}
	check(pc.n > 0 && pc.n <= PROXYCONF_MAX_ENTRIES);
	for (size_t i = 0; i < pc.n; i++) {
		e = &pc.entries[i];
		check(i == 0 || pc.entries[i - 1].dc <= e->dc);
		check((e->addr.sa.sa_family == AF_INET &&
		          e->addrlen == sizeof(e->addr.sin)) ||
		    (e->addr.sa.sa_family == AF_INET6 &&
		        e->addrlen == sizeof(e->addr.sin6)));
		cnt = proxyconf_lookup(&pc, e->dc, &e);
		check(cnt > 0 && e >= pc.entries &&
		    e + cnt <= pc.entries + pc.n && e <= &pc.entries[i] &&
		    &pc.entries[i] < e + cnt);
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "proxy_for %d %s;\n", pc.entries[i].dc,
		    addr_str(&pc.entries[i].addr.sa, addr, sizeof(addr)));
	}
	if (pc.has_default)
		n += (size_t)snprintf(
		    text + n, sizeof(text) - n, "default %d;\n", pc.default_dc);
	check(n < sizeof(text));
	check(proxyconf_parse(text, n, &pc2, err, sizeof(err)) == 0);
	check(pc2.n == pc.n && pc2.has_default == pc.has_default &&
	    pc2.default_dc == pc.default_dc);
	for (size_t i = 0; i < pc.n; i++) {
		check(pc2.entries[i].dc == pc.entries[i].dc);
		check(pc2.entries[i].addrlen == pc.entries[i].addrlen);
		check(memcmp(&pc2.entries[i].addr, &pc.entries[i].addr,
		          pc.entries[i].addrlen) == 0);
	}
	return 0;
}
