/*
 * Telegram's middle-proxy list (getProxyConfig / getProxyConfigV6, the C
 * proxy's proxy-multi.conf), spec B.2.1:
 *
 *	# comment
 *	default 2;
 *	proxy_for 2 149.154.162.39:80;
 *	proxy_for -1 [2001:b28:f23d:f001::d]:8888;
 *
 * `proxy`, `timeout`, `min_connections` and `max_connections` statements
 * are checked and ignored. A text without any proxy_for is an error, so a
 * broken download never replaces a good list. The result is one plain,
 * fixed-size struct (no pointers): it can be copied into a message.
 */
#ifndef MTP_PROXYCONF_H
#define MTP_PROXYCONF_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define PROXYCONF_MAX_ENTRIES 512

struct proxyconf_entry {
	int16_t dc; /* negative: media */
	uint16_t pad;
	socklen_t addrlen;
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} addr;
};

struct proxyconf {
	size_t n; /* entries, sorted by dc, file order
					 * within a dc */
	int has_default;
	int16_t default_dc;
	struct proxyconf_entry entries[PROXYCONF_MAX_ENTRIES];
};

/*
 * Parses len bytes of text (no NUL needed). 0, or -1 with a message such
 * as "line 3: bad port in \"1.2.3.4:0\"" in err (errlen bytes).
 * Several texts (the IPv4 and IPv6 files) can be parsed as one, joined by
 * a newline; a repeated `default` keeps the last.
 */
int proxyconf_parse(
    const char *text, size_t len, struct proxyconf *, char *err, size_t errlen);
/*
 * The entries for dc (*out, count returned); if it has none, those of the
 * default DC; 0 if neither has any.
 */
size_t proxyconf_lookup(
    const struct proxyconf *, int dc, const struct proxyconf_entry **out);

#endif
