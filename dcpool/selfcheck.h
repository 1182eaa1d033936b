/*
 * mtprotod --check, after the config and the public address: the clock
 * (Date of telegram.proxy_config_url), each DC's address, each middle
 * proxy (an RPC nonce exchange, when the secret and list are at hand),
 * each fake-TLS name (does it resolve here) and fronting site (TLS 1.3,
 * a flight in one record). One line per check: OK, WARN or FAIL.
 */
#ifndef MTP_SELFCHECK_H
#define MTP_SELFCHECK_H

#include <stdio.h>

#include "config.h"

/* 0, or -1 when a check failed. */
int check_run(const struct config *, FILE *);

#endif
