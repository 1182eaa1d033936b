/*
 * Proxy links for the apps (PROTOCOL.md A.1, CONFIG.md): tg:// and
 * https://t.me links per listener, user and protocol, optionally with a
 * terminal QR code, and fresh secrets for --gen-secret.
 */
#ifndef MTP_LINKS_H
#define MTP_LINKS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct config_listener;
struct pubaddr_state;

#define LINKS_SCHEME_TG    "tg://proxy"
#define LINKS_SCHEME_HTTPS "https://t.me/proxy"
/* Enough for any link: a percent-encoded host and a 182-byte domain. */
#define LINKS_MAX            2048
#define LINKS_UNKNOWN_SERVER "YOUR_SERVER_IP"

/*
 * The secret as the link carries it (A.1.1): 32 hex digits for classic,
 * "dd" + hex for secure, "ee" + hex + hex(tls_domain) for fake_tls, or
 * with base64 set the fake_tls bytes as base64url without padding (base64
 * applies to fake_tls only; the other forms are always hex). Returns the
 * length written (NUL not counted) or -1 if it does not fit in cap, the
 * protocol is unknown, or fake_tls has no domain.
 */
int links_secret(char *out, size_t cap, unsigned proto_bit,
    const uint8_t secret[16], const char *tls_domain, int base64);

/*
 * "<scheme_host>?server=<server>&port=<port>&secret=<secret>", the secret
 * as links_secret() makes it; server is percent-encoded where needed.
 * Same return convention.
 */
int links_format(char *out, size_t cap, const char *scheme_host,
    const char *server, uint16_t port, unsigned proto_bit,
    const uint8_t secret[16], const char *tls_domain, int base64);

/*
 * The host clients should connect to for a listener: its address unless
 * it is a wildcard, else the first non-loopback address of this host
 * (IPv4 preferred, then global IPv6), else LINKS_UNKNOWN_SERVER.
 * Returns 1 if the result is a guess from the interfaces (or unknown),
 * 0 if it is the listener's own address.
 */
int links_guess_server(const struct config_listener *, char *out, size_t cap);

/*
 * A QR code of text drawn with Unicode half blocks, two module rows per
 * text line, light modules as blocks (for light-on-dark terminals) and a
 * quiet zone around it. Malloc'd, NUL-terminated, lines end in "\n";
 * NULL on failure.
 */
char *links_qr_text(const char *text);

/* A link's host: a name or an address literal. */
#define LINKS_HOST_MAX 256
#define LINKS_NOTE_MAX 1024

/*
 * The hosts a listener's links name (issue 13), first that applies:
 * server (--server), the listener's server option, its own address
 * when it is not a wildcard, the public address (pub, may be NULL:
 * IPv4 for 0.0.0.0, both families for "::"), else a guess from the
 * interfaces. *n hosts (1 or 2) and, for a public address or a guess,
 * a note on where it came from (else ""). 1 for a guess, else 0.
 */
int links_hosts(const struct config_listener *, const char *server,
    const struct pubaddr_state *pub, char hosts[2][LINKS_HOST_MAX], size_t *n,
    char *note, size_t notecap);
/* Every listener's hosts, space-separated: to see whether links change. */
size_t links_hosts_key(const struct config *, const char *server,
    const struct pubaddr_state *pub, char *out, size_t cap);

/*
 * For every listener: a note on its server address when there is one
 * ("# listener L: public IPv4 address ..."), then for each of its hosts
 * and every user and allowed protocol (fake_tls, secure, classic): a
 * header line "# listener L, user U, protocol P", the tg:// and
 * https://t.me links (fake_tls also as base64url), and with qr a QR
 * code of the https://t.me link. Hosts as links_hosts() picks them.
 */
void links_print(FILE *, const struct config *, const char *server,
    const struct pubaddr_state *pub, int qr);

/* A random secret as 32 lower-case hex digits (and a NUL). */
int links_gen_secret(char out[33]);

/*
 * For --gen-secret: the secret for the config file and its link-ready
 * forms (plain, dd, and ee when tls_domain is not NULL or "").
 * Returns 0, or -1 if tls_domain is unusable.
 */
int
links_print_secret(FILE *, const uint8_t secret[16], const char *tls_domain);

/*
 * links_print() as the daemon does at start and when its public address
 * changes; with more than LINKS_PRINT_USERS_MAX users in all, one line
 * that points at --links instead (megabytes on stdout would fill a
 * journal, or block the daemon on a pipe nobody reads).
 */
#define LINKS_PRINT_USERS_MAX 100
void links_print_start(FILE *f, const struct config *cfg, const char *server,
    const struct pubaddr_state *pub, int qr);

#endif
