/*
 * Fuzz target for worker/simage.c, the session and link images a worker
 * hands to the next generation. Input: one byte choosing the kind, then
 * the blob. Any blob must be safe to decode; one that decodes must
 * encode back to exactly the same bytes (one layout, no slack).
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/simage.h"

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
	uint8_t *out = NULL;
	size_t len = 0;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		struct link_image li;
		if (link_image_decode(data + 1, size - 1, &li) == 0) {
			check(link_image_encode(&li, &out, &len) == 0);
			check(
			    len == size - 1 && memcmp(out, data + 1, len) == 0);
		}
	} else {
		struct session_image si;
		if (session_image_decode(data + 1, size - 1, &si) == 0) {
			check(session_image_encode(&si, &out, &len) == 0);
			check(
			    len == size - 1 && memcmp(out, data + 1, len) == 0);
		}
	}
	free(out);
	return 0;
}
