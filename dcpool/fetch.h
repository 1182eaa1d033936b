/*
 * HTTP(S) GET on the dcpool's event loop, for Telegram's config files
 * (tgconf.c) and the "what is my IP" URLs (pubaddr.c): libevent's evhttp
 * over an OpenSSL bufferevent that checks the server's certificate
 * against the system's CA store (or ca_file) and the URL's host. DNS,
 * TLS and HTTP never block. Several fetches may run at once.
 */
#ifndef MTP_FETCH_H
#define MTP_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct fetcher;
struct fetch;

/* What a fetch ended with. body is malloc'd and the callback's to keep
 * or free; NULL when failed. */
struct fetch_result {
	int failed;
	const char *reason; /* why, when failed */
	uint8_t *body;
	size_t len;
	const char *url;
	const char *host; /* the Host header we sent */
	const char *ip; /* the address we connected to ("" before) */
	const char *date; /* the answer's Date header, or NULL */
	int tls; /* https */
};

typedef void (*fetch_cb)(void *arg, struct fetch_result *);

/*
 * ca_file "" = the system's store; timeout in seconds for the whole
 * fetch; answers above body_max bytes fail. NULL when out of memory.
 */
struct fetcher *fetcher_new(
    struct event_base *, const char *ca_file, int timeout, size_t body_max);
/* Cancels every fetch (no callback runs after this) and frees it. */
void fetcher_free(struct fetcher *);

/*
 * Starts a GET of url. When the host has several addresses, IPv4 ones
 * first, pick % n chooses one (so retries can walk them). cb runs once,
 * from its own event, never from within this call, unless the fetch is
 * cancelled first. NULL only when out of memory.
 */
struct fetch *fetcher_get(
    struct fetcher *, const char *url, unsigned pick, fetch_cb, void *arg);
/* No callback for it after this. */
void fetch_cancel(struct fetch *);

/*
 * The resolver file for fetches (the config's resolv_conf; tests point
 * it at a server of their own); NULL = the system's. Read when a
 * fetcher first resolves, so it must be readable after privileges are
 * dropped.
 */
extern const char *fetch_resolv_conf;

/* A resolver of its own, as fetches use (fetch_resolv_conf). */
struct evdns_base;
struct evdns_base *fetch_dns_new(struct event_base *);

#endif
