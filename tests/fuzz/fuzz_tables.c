/*
 * Fuzz target for common/tables.c, the tables a reload sends to running
 * children. Any blob must be safe to decode; what decodes must have its
 * strings terminated and its counts within the config's bounds.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tables.h"

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
	struct tables *t = tables_decode(data, size);

	if (t == NULL)
		return 0;
	check(t->nl <= CONFIG_MAX_LISTENERS);
	for (size_t i = 0; i < t->nl; i++) {
		struct tables_listener *l = &t->l[i];
		check(memchr(l->name, 0, sizeof(l->name)) != NULL);
		check(memchr(l->fronting_host, 0, sizeof(l->fronting_host)) !=
		    NULL);
		check(l->nusers <= CONFIG_MAX_USERS);
		for (size_t u = 0; u < l->nusers; u++)
			check(memchr(l->users[u].name, 0,
			          sizeof(l->users[u].name)) != NULL);
		check(tables_find(t, l->name) != NULL);
	}
	tables_free(t);
	return 0;
}
