/*
 * Where Telegram's middle proxies are (spec B.2.1): the proxy secret and
 * the IPv4 / IPv6 middle-proxy lists, from local files or fetched over
 * HTTPS, checked, kept in state_dir and refreshed. Start-up never waits
 * for Telegram: the cached copies are used at once and failed fetches
 * are retried with back-off while the daemon serves.
 */
#ifndef MTP_TGCONF_H
#define MTP_TGCONF_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "proxyconf.h"

/* B.2.1: the C proxy accepts a proxy secret of 32..256 bytes. */
#define TGCONF_SECRET_MIN 32
#define TGCONF_SECRET_MAX 256
/* No answer of Telegram's is near this; a bigger one is not theirs. */
#define TGCONF_BODY_MAX (1024 * 1024)
/* B.2.1: the RPC nonce (B.2.4) needs a clock within this of theirs. */
#define TGCONF_CLOCK_SKEW_MAX 30

/* Names of the last good copies in state_dir. */
#define TGCONF_CACHE_SECRET    "proxy-secret"
#define TGCONF_CACHE_CONFIG    "proxy-multi.conf"
#define TGCONF_CACHE_CONFIG_V6 "proxy-multi-v6.conf"

struct tg_state {
	uint8_t secret[TGCONF_SECRET_MAX]; /* "aes-pwd" */
	size_t secret_len; /* 32..256; 0 = none yet */
	struct proxyconf v4, v6; /* v6 may be empty (n == 0) */
	const char *source; /* "file", "cache", "https", "http" */
};

struct event_base;
struct tgconf;

/*
 * Loads the cached copies (or the configured files) and, when they make a
 * whole state (a secret and an IPv4 list), calls changed before
 * returning; then keeps the state fresh on base. changed is called only
 * when the secret or a list really changed; the state it gets is valid
 * until the next call or tgconf_free. NULL only when out of memory.
 */
struct tgconf *tgconf_start(struct event_base *, const struct config *,
    void (*changed)(void *arg, const struct tg_state *), void *arg);
/* Never NULL (for a NULL tgconf too): secret_len is 0 until known. */
const struct tg_state *tgconf_state(const struct tgconf *);
/* Cancels fetches in flight; no callback after this. */
void tgconf_free(struct tgconf *);

/* The pure parts, for the unit tests. */

/* 0 if len bytes are a usable proxy secret, else -1 and why in err. */
int
tgconf_check_secret(const uint8_t *body, size_t len, char *err, size_t errlen);
/*
 * Parses a middle-proxy list into *out: 0, or -1 and why in err (a list
 * without any proxy_for is refused, so it never replaces a good one).
 */
int tgconf_check_config(const uint8_t *body, size_t len, struct proxyconf *out,
    char *err, size_t errlen);
/* 1 if both states hold the same secret and lists (source ignored). */
int tgconf_state_equal(const struct tg_state *, const struct tg_state *);
/*
 * An HTTP Date header (RFC 7231 IMF-fixdate, "Sun, 06 Nov 1994 08:49:37
 * GMT"; the obsolete forms too) as Unix time, by curl_getdate (which
 * also takes a missing zone as GMT and ignores what follows a date):
 * 0, or -1 if it is no date.
 */
int tgconf_parse_http_date(const char *, int64_t *out);
/*
 * Our clock minus the server's, from its Date header; 0 with the skew in
 * *skew, -1 if the header is missing or malformed.
 */
int tgconf_clock_skew(const char *date, int64_t now, int64_t *skew);
/*
 * Writes len bytes to dir/name so that a reader sees the old or the new
 * file, never a part (temporary file, fsync, rename). 0 or -1 (errno).
 */
int tgconf_cache_write(
    const char *dir, const char *name, const uint8_t *body, size_t len);
/*
 * Reads dir/name (at most TGCONF_BODY_MAX bytes) into a malloc'ed *body.
 * 0, or -1 with errno (ENOENT: no such copy; EFBIG: too large).
 */
int tgconf_cache_read(
    const char *dir, const char *name, uint8_t **body, size_t *len);

#endif
