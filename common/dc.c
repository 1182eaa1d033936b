#include "autoconf.h"

#include <netinet/in.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dc.h"
#include "util.h"

/* abs() of an i16 index lies in 0..32768. */
#define DC_INDEX_SPAN (INT16_MAX + 2)

/* B.1.1, from tdesktop's built-in list; test DCs at DC_TEST_OFFSET + n. */
static const struct {
	int id;
	const char *ipv4;
	const char *ipv6;
} dc_builtin[] = {
	{ 1, "149.154.175.50", "2001:b28:f23d:f001::a" },
	{ 2, "149.154.167.51", "2001:67c:4e8:f002::a" },
	{ 3, "149.154.175.100", "2001:b28:f23d:f003::a" },
	{ 4, "149.154.167.91", "2001:67c:4e8:f004::a" },
	{ 5, "149.154.171.5", "2001:b28:f23f:f005::a" },
	{ 203, "91.105.192.100", "2a0a:f280:203:a:5000::100" },
	{ DC_TEST_OFFSET + 1, "149.154.175.10", "2001:b28:f23d:f001::e" },
	{ DC_TEST_OFFSET + 2, "149.154.167.40", "2001:67c:4e8:f002::e" },
	{ DC_TEST_OFFSET + 3, "149.154.175.117", "2001:b28:f23d:f003::e" },
};

struct dc_entry {
	int id;
	struct sockaddr_storage v4, v6;
	socklen_t v4len, v6len; /* 0 = none */
	int overridden; /* the config named it: built-in addresses gone */
};

struct dc_table {
	struct dc_entry *entries;
	size_t nentries;
	int default_dc;
	/* Indexes already reported by dc_table_warn_once(). */
	uint8_t warned[(DC_INDEX_SPAN + 7) / 8];
};

static struct dc_entry *
dc_find(const struct dc_table *t, int id)
{
	for (size_t i = 0; i < t->nentries; i++)
		if (t->entries[i].id == id)
			return &t->entries[i];
	return NULL;
}

static int
dc_set_addr(
    struct dc_entry *e, const struct sockaddr_storage *ss, socklen_t len)
{
	if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in) &&
	    len <= sizeof(*ss)) {
		e->v4 = *ss;
		e->v4len = len;
		return 0;
	}
	if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6) &&
	    len <= sizeof(*ss)) {
		e->v6 = *ss;
		e->v6len = len;
		return 0;
	}
	return -1;
}

struct dc_table *
dc_table_new(const struct config_dc *over, size_t n, int default_dc)
{
	struct dc_table *t;
	size_t i;

	if (n > 0 && over == NULL) {
		errno = EINVAL;
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (n > SIZE_MAX / sizeof(struct dc_entry) - nitems(dc_builtin) ||
	    (t->entries = calloc(
	         nitems(dc_builtin) + n, sizeof(struct dc_entry))) == NULL) {
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	t->default_dc = default_dc;

	for (i = 0; i < nitems(dc_builtin); i++) {
		struct dc_entry *e = &t->entries[t->nentries++];

		e->id = dc_builtin[i].id;
		if (addr_from_ip_port(
		        dc_builtin[i].ipv4, DC_PORT, &e->v4, &e->v4len) == -1 ||
		    addr_from_ip_port(
		        dc_builtin[i].ipv6, DC_PORT, &e->v6, &e->v6len) == -1)
			goto invalid;
	}
	for (i = 0; i < n; i++) {
		struct dc_entry *e;

		if (over[i].id < 1 || over[i].id > INT16_MAX)
			goto invalid;
		if ((e = dc_find(t, over[i].id)) == NULL) {
			e = &t->entries[t->nentries++];
			e->id = over[i].id;
		}
		/* The first override of a DC drops both built-in addresses:
		 * an IPv6-only override must not leave Telegram's IPv4
		 * one in use (issue 13). */
		if (!e->overridden) {
			e->v4len = e->v6len = 0;
			e->overridden = 1;
		}
		if (dc_set_addr(e, &over[i].addr, over[i].addrlen) == -1)
			goto invalid;
	}
	if (dc_find(t, default_dc) == NULL)
		goto invalid;
	return t;

invalid:
	dc_table_free(t);
	errno = EINVAL;
	return NULL;
}

void
dc_table_free(struct dc_table *t)
{
	if (t == NULL)
		return;
	free(t->entries);
	free(t);
}

int
dc_lookup(const struct dc_table *t, int16_t dc_index, int prefer_ipv6,
    struct sockaddr_storage *out, socklen_t *len, int *used_default)
{
	int d = abs((int)dc_index);
	const struct dc_entry *e = d == 0 ? NULL : dc_find(t, d);
	int dflt = 0;

	if (e == NULL) {
		e = dc_find(t, t->default_dc);
		dflt = 1;
	}
	if (used_default != NULL)
		*used_default = dflt;
	if (e == NULL)
		return -1;
	if (e->v6len != 0 && (prefer_ipv6 || e->v4len == 0)) {
		memcpy(out, &e->v6, sizeof(*out));
		*len = e->v6len;
	} else if (e->v4len != 0) {
		memcpy(out, &e->v4, sizeof(*out));
		*len = e->v4len;
	} else
		return -1;
	return 0;
}

int
dc_lookup_other(const struct dc_table *t, int16_t dc_index, int family,
    struct sockaddr_storage *out, socklen_t *len)
{
	int d = abs((int)dc_index);
	const struct dc_entry *e = d == 0 ? NULL : dc_find(t, d);

	if (e == NULL)
		e = dc_find(t, t->default_dc);
	if (e == NULL)
		return -1;
	if (family == AF_INET && e->v6len != 0) {
		memcpy(out, &e->v6, sizeof(*out));
		*len = e->v6len;
		return 0;
	}
	if (family == AF_INET6 && e->v4len != 0) {
		memcpy(out, &e->v4, sizeof(*out));
		*len = e->v4len;
		return 0;
	}
	return -1;
}

int
dc_table_warn_once(struct dc_table *t, int16_t dc_index)
{
	int d = abs((int)dc_index);
	uint8_t bit = (uint8_t)(1u << (d % 8));

	if (d != 0 && dc_find(t, d) != NULL)
		return 0;
	if (t->warned[d / 8] & bit)
		return 0;
	t->warned[d / 8] |= bit;
	return 1;
}
