/*
 * Fuzz target for common/tls.c's site-profile parsers: a server's first
 * flight (tls_flight_parse: the bytes a fronted site, or whatever sits
 * at the fronting address, answers the dcpool's probe with) and the
 * profile text kept in state_dir (tls_shape_parse). Nothing may crash
 * or read out of bounds; what parses must be within its bounds.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_flight fl;
	struct tls_shape sh;
	char *text;

	if (tls_flight_parse(data, size, &fl) == 1 &&
	    (fl.consumed > size || fl.next > TLS_SHAPE_EXT_MAX ||
	        fl.nrecords > sizeof(fl.records)))
		abort();
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (tls_shape_parse(text, &sh) == 0 &&
	    (sh.next > TLS_SHAPE_EXT_MAX || sh.flight == 0 ||
	        sh.flight > TLS_RECORD_MAX_PAYLOAD))
		abort();
	free(text);
	return 0;
}
