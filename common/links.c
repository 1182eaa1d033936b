/*
 * Links the apps understand (PROTOCOL.md A.1.2) and QR codes of them, so an
 * owner can hand a proxy out by copy-paste or by phone camera.
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <qrencode.h>

#include "config.h"
#include "discover.h"
#include "links.h"
#include "match.h"
#include "util.h"

/* A.1.1: link prefixes in front of the 16-byte secret. */
#define LINK_PREFIX_SECURE   0xdd
#define LINK_PREFIX_FAKE_TLS 0xee
/* A.1.1: tdlib truncates the fake-TLS domain to this many bytes. */
#define LINK_DOMAIN_MAX 182

/* Quiet zone, in modules, around the QR code. */
#define QR_MARGIN 2
/* Half blocks: light modules are ink on a light-on-dark terminal. */
#define QR_BOTH_LIGHT   "\xe2\x96\x88" /* U+2588 full */
#define QR_TOP_LIGHT    "\xe2\x96\x80" /* U+2580 upper */
#define QR_BOTTOM_LIGHT "\xe2\x96\x84" /* U+2584 lower */
#define QR_BOTH_DARK    " "
/* On a terminal, force white on black so light themes show it right. */
#define QR_ANSI_ON  "\033[40;97m"
#define QR_ANSI_OFF "\033[0m"

/* Print order: the form hardest to detect first. */
static const unsigned link_protos[] = { PROTO_FAKE_TLS, PROTO_SECURE,
	PROTO_CLASSIC };

static int
put(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
	if (*pos + len >= cap)
		return -1;
	memcpy(out + *pos, s, len);
	*pos += len;
	out[*pos] = '\0';
	return 0;
}

int
links_secret(char *out, size_t cap, unsigned proto_bit,
    const uint8_t secret[16], const char *tls_domain, int base64)
{
	uint8_t raw[1 + CONFIG_SECRET_LEN + LINK_DOMAIN_MAX];
	unsigned char b64[4 * ((sizeof(raw) + 2) / 3) + 1];
	size_t rawlen = 0, dl, n;

	if (cap == 0)
		return -1;
	out[0] = '\0';
	switch (proto_bit) {
	case PROTO_CLASSIC:
		base64 = 0;
		break;
	case PROTO_SECURE:
		base64 = 0;
		raw[rawlen++] = LINK_PREFIX_SECURE;
		break;
	case PROTO_FAKE_TLS:
		raw[rawlen++] = LINK_PREFIX_FAKE_TLS;
		break;
	default:
		return -1;
	}
	memcpy(raw + rawlen, secret, CONFIG_SECRET_LEN);
	rawlen += CONFIG_SECRET_LEN;
	if (proto_bit == PROTO_FAKE_TLS) {
		if (tls_domain == NULL || (dl = strlen(tls_domain)) == 0 ||
		    dl > LINK_DOMAIN_MAX)
			return -1;
		memcpy(raw + rawlen, tls_domain, dl);
		rawlen += dl;
	}
	if (!base64) {
		if (2 * rawlen >= cap)
			return -1;
		hex_encode(raw, rawlen, out);
		return (int)(2 * rawlen);
	}
	/* base64url, no padding (RFC 4648 section 5). */
	n = (size_t)EVP_EncodeBlock(b64, raw, (int)rawlen);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	if (n >= cap)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = b64[i] == '+' ? '-'
		    : b64[i] == '/'    ? '_'
		                       : (char)b64[i];
	out[n] = '\0';
	return (int)n;
}

/* Query-safe: unreserved characters, and ':' for IPv6 literals. */
static int
put_server(char *out, size_t cap, size_t *pos, const char *server)
{
	static const char hexd[] = "0123456789ABCDEF";

	for (const unsigned char *s = (const void *)server; *s; s++) {
		char enc[3];

		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' ||
		    *s == '_' || *s == '~' || *s == ':') {
			if (put(out, cap, pos, (const char *)s, 1) == -1)
				return -1;
			continue;
		}
		enc[0] = '%';
		enc[1] = hexd[*s >> 4];
		enc[2] = hexd[*s & 0xf];
		if (put(out, cap, pos, enc, 3) == -1)
			return -1;
	}
	return 0;
}

int
links_format(char *out, size_t cap, const char *scheme_host, const char *server,
    uint16_t port, unsigned proto_bit, const uint8_t secret[16],
    const char *tls_domain, int base64)
{
	char sec[2 * (1 + CONFIG_SECRET_LEN + LINK_DOMAIN_MAX) + 1];
	char num[32];
	size_t pos = 0;
	int n;

	if (cap == 0)
		return -1;
	out[0] = '\0';
	if (links_secret(
	        sec, sizeof(sec), proto_bit, secret, tls_domain, base64) == -1)
		return -1;
	n = snprintf(num, sizeof(num), "&port=%u&secret=", (unsigned)port);
	if (put(out, cap, &pos, scheme_host, strlen(scheme_host)) == -1 ||
	    put(out, cap, &pos, "?server=", 8) == -1 ||
	    put_server(out, cap, &pos, server) == -1 ||
	    put(out, cap, &pos, num, (size_t)n) == -1 ||
	    put(out, cap, &pos, sec, strlen(sec)) == -1) {
		out[0] = '\0';
		return -1;
	}
	return (int)pos;
}

static int
is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)ss)
		           ->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
		    &((const struct sockaddr_in6 *)(const void *)ss)
		         ->sin6_addr);
	return 1;
}

/* First usable address of family af on this host, as a literal. */
static int
host_address(int af, char *out, size_t cap)
{
	struct ifaddrs *ifs, *i;
	int found = 0;

	if (getifaddrs(&ifs) == -1)
		return 0;
	for (i = ifs; i != NULL && !found; i = i->ifa_next) {
		const void *a;

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != af ||
		    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		if (af == AF_INET) {
			const struct sockaddr_in *sin =
			    (const void *)i->ifa_addr;
			if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127)
				continue;
			a = &sin->sin_addr;
		} else {
			const struct sockaddr_in6 *sin6 =
			    (const void *)i->ifa_addr;
			if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr) ||
			    IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
			    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
				continue;
			a = &sin6->sin6_addr;
		}
		found = inet_ntop(af, a, out, (socklen_t)cap) != NULL;
	}
	freeifaddrs(ifs);
	return found;
}

int
links_guess_server(const struct config_listener *l, char *out, size_t cap)
{
	if (!is_wildcard(&l->addr)) {
		snprintf(out, cap, "%s", l->address);
		return 0;
	}
	if (host_address(AF_INET, out, cap))
		return 1;
	/* A 0.0.0.0 socket cannot take IPv6 clients. */
	if (l->addr.ss_family == AF_INET6 && host_address(AF_INET6, out, cap))
		return 1;
	snprintf(out, cap, "%s", LINKS_UNKNOWN_SERVER);
	return 1;
}

char *
links_qr_text(const char *text)
{
	QRcode *qr;
	char *buf, *p;
	int w, size;
	size_t cap;

	qr = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
	if (qr == NULL)
		return NULL;
	w = qr->width;
	size = w + 2 * QR_MARGIN;
	/* Each cell is at most 3 bytes; one "\n" per line. */
	cap = (size_t)((size + 1) / 2) * ((size_t)size * 3 + 1) + 1;
	if ((buf = malloc(cap)) == NULL) {
		QRcode_free(qr);
		return NULL;
	}
	p = buf;
	for (int y = 0; y < size; y += 2) {
		for (int x = 0; x < size; x++) {
			int top = 0, bot = 0, mx = x - QR_MARGIN;
			int ty = y - QR_MARGIN, by = y + 1 - QR_MARGIN;
			const char *cell;

			if (mx >= 0 && mx < w) {
				if (ty >= 0 && ty < w)
					top = qr->data[ty * w + mx] & 1;
				if (by >= 0 && by < w)
					bot = qr->data[by * w + mx] & 1;
			}
			if (!top && !bot)
				cell = QR_BOTH_LIGHT;
			else if (!top)
				cell = QR_TOP_LIGHT;
			else if (!bot)
				cell = QR_BOTTOM_LIGHT;
			else
				cell = QR_BOTH_DARK;
			memcpy(p, cell, strlen(cell));
			p += strlen(cell);
		}
		*p++ = '\n';
	}
	*p = '\0';
	QRcode_free(qr);
	return buf;
}

static void
print_qr(FILE *f, const char *link)
{
	int tty = isatty(fileno(f));
	char *qr, *line, *nl;

	if ((qr = links_qr_text(link)) == NULL) {
		fprintf(f, "# (QR code failed)\n");
		return;
	}
	for (line = qr; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
		fprintf(f, "%s%.*s%s\n", tty ? QR_ANSI_ON : "",
		    (int)(nl - line), line, tty ? QR_ANSI_OFF : "");
	free(qr);
}

int
links_hosts(const struct config_listener *l, const char *server,
    const struct pubaddr_state *pub, char hosts[2][LINKS_HOST_MAX], size_t *n,
    char *note, size_t notecap)
{
	int dual = l->addr.ss_family == AF_INET6;

	*n = 0;
	note[0] = '\0';
	if (server != NULL && server[0] != '\0') {
		snprintf(hosts[(*n)++], LINKS_HOST_MAX, "%s", server);
		return 0;
	}
	if (l->server[0] != '\0') {
		snprintf(hosts[(*n)++], LINKS_HOST_MAX, "%s", l->server);
		return 0;
	}
	if (!is_wildcard(&l->addr)) {
		snprintf(hosts[(*n)++], LINKS_HOST_MAX, "%s", l->address);
		return 0;
	}
	/* A 0.0.0.0 socket cannot take IPv6 clients; "::" takes both. */
	if (pub != NULL && pub->v4[0] != '\0') {
		snprintf(hosts[(*n)++], LINKS_HOST_MAX, "%s", pub->v4);
		snprintf(note, notecap, "public IPv4 address %s (%s)", pub->v4,
		    pub->from4);
	}
	if (pub != NULL && pub->v6[0] != '\0' && dual) {
		size_t k = strlen(note);

		snprintf(hosts[(*n)++], LINKS_HOST_MAX, "%s", pub->v6);
		snprintf(note + k, notecap - k, "%spublic IPv6 address %s (%s)",
		    k ? ", " : "", pub->v6, pub->from6);
	}
	if (*n > 0)
		return 0;
	links_guess_server(l, hosts[0], LINKS_HOST_MAX);
	*n = 1;
	snprintf(note, notecap,
	    "server address %s guessed from the interfaces: %s (give the "
	    "public one with server = or network.public_ipv4)",
	    hosts[0],
	    pub != NULL && pub->why[0] != '\0'
	        ? pub->why
	        : "the public address is not known (yet)");
	return 1;
}

size_t
links_hosts_key(const struct config *cfg, const char *server,
    const struct pubaddr_state *pub, char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		char hosts[2][LINKS_HOST_MAX], note[LINKS_NOTE_MAX];
		size_t n;

		links_hosts(&cfg->listeners[i], server, pub, hosts, &n, note,
		    sizeof(note));
		for (size_t k = 0; k < n; k++) {
			int w = snprintf(out + len, cap - len, "%s%s",
			    len ? " " : "", hosts[k]);

			if (w < 0 || (size_t)w >= cap - len)
				return len;
			len += (size_t)w;
		}
	}
	return len;
}

/*
 * The secret a user's link carries for proto and the name it names: with
 * per_sni_secrets, a fake-TLS link carries the key derived for that name.
 */
static const uint8_t *
link_key(const struct config_listener *l, const struct config_user *cu,
    unsigned proto, const char *name, uint8_t buf[CONFIG_SECRET_LEN])
{
	if (proto != PROTO_FAKE_TLS || !l->per_sni_secrets)
		return cu->secret;
	match_sni_secret(cu->secret, l->per_sni_salt, name, buf);
	return buf;
}

/* A user's fake-TLS links for the listener's tls_domains (no QR). */
static void
print_other_names(FILE *f, const struct config_listener *l,
    const struct config_user *cu, const char *host)
{
	uint8_t kb[CONFIG_SECRET_LEN];
	char link[LINKS_MAX];

	for (size_t n = 0; n < l->nsnis; n++) {
		const uint8_t *key =
		    link_key(l, cu, PROTO_FAKE_TLS, l->snis[n].name, kb);

		fprintf(f, "# listener %s, user %s, fake_tls as %s%s\n",
		    l->name, cu->name, l->snis[n].name,
		    l->per_sni_secrets ? " (per-SNI secret)" : "");
		if (links_format(link, sizeof(link), LINKS_SCHEME_TG, host,
		        l->port, PROTO_FAKE_TLS, key, l->snis[n].name, 0) > 0)
			fprintf(f, "%s\n", link);
		if (links_format(link, sizeof(link), LINKS_SCHEME_HTTPS, host,
		        l->port, PROTO_FAKE_TLS, key, l->snis[n].name, 0) > 0)
			fprintf(f, "%s\n", link);
		fprintf(f, "\n");
	}
	explicit_bzero(kb, sizeof(kb));
}

/* One listener's links for one host. */
static void
print_listener(
    FILE *f, const struct config_listener *l, const char *host, int qr)
{
	uint8_t kb[CONFIG_SECRET_LEN];
	char link[LINKS_MAX];

	for (size_t u = 0; u < l->nusers; u++) {
		const struct config_user *cu = &l->users[u];

		for (size_t k = 0; k < nitems(link_protos); k++) {
			unsigned proto = link_protos[k];
			const uint8_t *key =
			    link_key(l, cu, proto, l->tls_domain, kb);

			if (!(l->protocols & proto))
				continue;
			fprintf(f, "# listener %s, user %s, protocol %s%s\n",
			    l->name, cu->name, config_proto_name(proto),
			    key != cu->secret ? " (per-SNI secret)" : "");
			if (links_format(link, sizeof(link), LINKS_SCHEME_TG,
			        host, l->port, proto, key, l->tls_domain,
			        0) > 0)
				fprintf(f, "%s\n", link);
			if (proto == PROTO_FAKE_TLS &&
			    links_format(link, sizeof(link), LINKS_SCHEME_HTTPS,
			        host, l->port, proto, key, l->tls_domain,
			        1) > 0)
				fprintf(f, "%s\n", link);
			/* Hex last: it is the one the QR code holds. */
			if (links_format(link, sizeof(link), LINKS_SCHEME_HTTPS,
			        host, l->port, proto, key, l->tls_domain,
			        0) <= 0)
				continue;
			fprintf(f, "%s\n", link);
			if (qr)
				print_qr(f, link);
			fprintf(f, "\n");
			if (proto == PROTO_FAKE_TLS)
				print_other_names(f, l, cu, host);
		}
	}
	explicit_bzero(kb, sizeof(kb));
}

void
links_print(FILE *f, const struct config *cfg, const char *server,
    const struct pubaddr_state *pub, int qr)
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		char hosts[2][LINKS_HOST_MAX], note[LINKS_NOTE_MAX];
		size_t n;

		links_hosts(l, server, pub, hosts, &n, note, sizeof(note));
		if (note[0] != '\0')
			fprintf(f, "# listener %s: %s\n", l->name, note);
		for (size_t k = 0; k < n; k++)
			print_listener(f, l, hosts[k], qr);
	}
}

void
links_print_start(FILE *f, const struct config *cfg, const char *server,
    const struct pubaddr_state *pub, int qr)
{
	size_t users = 0;

	for (size_t i = 0; i < cfg->nlisteners; i++)
		users += cfg->listeners[i].nusers;
	if (users <= LINKS_PRINT_USERS_MAX) {
		links_print(f, cfg, server, pub, qr);
		return;
	}
	fprintf(f,
	    "# %zu users: links not printed here; "
	    "mtprotod --links -c %s prints them\n",
	    users, cfg->path[0] ? cfg->path : "FILE");
}

int
links_gen_secret(char out[33])
{
	uint8_t s[CONFIG_SECRET_LEN];

	random_bytes(s, sizeof(s));
	hex_encode(s, sizeof(s), out);
	return 0;
}

int
links_print_secret(FILE *f, const uint8_t secret[16], const char *tls_domain)
{
	char buf[2 * (1 + CONFIG_SECRET_LEN + LINK_DOMAIN_MAX) + 1];
	int tls = tls_domain != NULL && tls_domain[0] != '\0';

	if (tls &&
	    links_secret(
	        buf, sizeof(buf), PROTO_FAKE_TLS, secret, tls_domain, 0) == -1)
		return -1;
	links_secret(buf, sizeof(buf), PROTO_CLASSIC, secret, NULL, 0);
	fprintf(f, "# in mtprotod.conf: secret = \"%s\";\n", buf);
	fprintf(f, "# link secrets (the secret= part of a link):\n");
	fprintf(f, "classic:  %s\n", buf);
	links_secret(buf, sizeof(buf), PROTO_SECURE, secret, NULL, 0);
	fprintf(f, "secure:   %s\n", buf);
	if (!tls) {
		fprintf(f, "# fake_tls: needs a domain (--tls-domain NAME)\n");
		return 0;
	}
	links_secret(buf, sizeof(buf), PROTO_FAKE_TLS, secret, tls_domain, 0);
	fprintf(f, "fake_tls: %s\n", buf);
	links_secret(buf, sizeof(buf), PROTO_FAKE_TLS, secret, tls_domain, 1);
	fprintf(f, "fake_tls_base64url: %s\n", buf);
	return 0;
}
