/*
 * Fuzz target for common/apiuser.c: the bodies of the management API's
 * user requests (from anyone allowed to reach api.port). Nothing may
 * crash or leak; a body that is accepted gives values within their
 * bounds, and merging it into a user and writing the users file's text
 * from it works and names the user.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apiuser.h"

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
	static const enum api_body kinds[] = { API_BODY_CREATE, API_BODY_PATCH,
		API_BODY_ROTATE };
	struct api_user_patch p;
	char err[512];

	for (size_t k = 0; k < 3; k++) {
		err[0] = '\0';
		if (api_user_parse((const char *)data, size, kinds[k], &p, err,
		        sizeof(err)) == -1) {
			check(err[0] != '\0');
			continue;
		}
		check(size <= API_BODY_MAX);
		check((p.set & p.cleared) == 0);
		check(kinds[k] != API_BODY_CREATE || (p.set & AU_NAME));
		check(kinds[k] != API_BODY_ROTATE ||
		    (p.set & ~(unsigned)AU_SECRET) == 0);
		check(p.u.max_connections >= 0);
		check(p.u.max_unique_ips >= 0 &&
		    p.u.max_unique_ips <= CONFIG_MAX_UNIQUE_IPS);
		check(p.u.unique_ips_window >= 1);
		check(p.u.quota_period >= QUOTA_NEVER &&
		    p.u.quota_period <= QUOTA_MONTHLY);
		check(p.u.quota_period != QUOTA_MONTHLY ||
		    (p.u.quota_day >= 1 && p.u.quota_day <= 31));

		struct config_user u;
		api_user_defaults(&u);
		memcpy(u.name, "fuzz", 5);
		if (p.set & AU_NAME)
			memcpy(u.name, p.u.name, sizeof(u.name));
		api_user_apply(&u, &p);
		char *text = api_users_text(&u, 1);
		check(text != NULL);
		check(strstr(text, u.name) != NULL);
		free(text);
	}
	return 0;
}
