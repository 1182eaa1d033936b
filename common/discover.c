#include "autoconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <string.h>

#include "discover.h"
#include "util.h"

#define SOURCES_MAX 64

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

void
stun_binding_request(
    uint8_t out[STUN_HEADER_LEN], const uint8_t txid[STUN_TXID_LEN])
{
	out[0] = STUN_BINDING_REQUEST >> 8;
	out[1] = STUN_BINDING_REQUEST & 0xff;
	out[2] = out[3] = 0; /* no attributes */
	out[4] = STUN_MAGIC_COOKIE >> 24;
	out[5] = (STUN_MAGIC_COOKIE >> 16) & 0xff;
	out[6] = (STUN_MAGIC_COOKIE >> 8) & 0xff;
	out[7] = STUN_MAGIC_COOKIE & 0xff;
	memcpy(out + 8, txid, STUN_TXID_LEN);
}

/*
 * An address attribute's value: 0 with the address, -1 if malformed.
 * xor: the port is XORed with the cookie's top half and the address
 * with the cookie and (IPv6) the transaction id (RFC 8489 14.2).
 */
static int
address_attr(const uint8_t *v, size_t len, int xor, const uint8_t *hdr,
    struct sockaddr_storage *out)
{
	uint16_t port;

	if (len < 4)
		return -1;
	port = be16(v + 2);
	if (xor)
		port ^= STUN_MAGIC_COOKIE >> 16;
	memset(out, 0, sizeof(*out));
	if (v[1] == 0x01 && len == 8) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, v + 4, 4);
		if (xor)
			for (int i = 0; i < 4; i++)
				((uint8_t *)&sin->sin_addr)[i] ^= hdr[4 + i];
		return 0;
	}
	if (v[1] == 0x02 && len == 20) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, v + 4, 16);
		if (xor) /* cookie || transaction id */
			for (int i = 0; i < 16; i++)
				((uint8_t *)&sin6->sin6_addr)[i] ^= hdr[4 + i];
		return 0;
	}
	return -1;
}

int
stun_binding_parse(const uint8_t *msg, size_t len,
    const uint8_t txid[STUN_TXID_LEN], struct sockaddr_storage *out,
    const char **why)
{
	struct sockaddr_storage plain;
	int have_xor = 0, have_plain = 0;
	size_t body, pos;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	if (len < STUN_HEADER_LEN || len > STUN_MESSAGE_MAX) {
		*why = "not a STUN message (size)";
		return -1;
	}
	if ((msg[0] & 0xc0) != 0 || be32(msg + 4) != STUN_MAGIC_COOKIE) {
		*why = "not a STUN message";
		return -1;
	}
	if (memcmp(msg + 8, txid, STUN_TXID_LEN) != 0) {
		*why = "another transaction";
		return -1;
	}
	if (be16(msg) != STUN_BINDING_SUCCESS) {
		*why = be16(msg) == 0x0111 ? "binding error answer"
		                           : "not a binding success answer";
		return -1;
	}
	body = be16(msg + 2);
	if (body % 4 != 0 || STUN_HEADER_LEN + body != len) {
		*why = "STUN length does not match the datagram";
		return -1;
	}
	for (pos = STUN_HEADER_LEN; pos < len;) {
		uint16_t type, alen;

		if (len - pos < 4) {
			*why = "truncated attribute";
			return -1;
		}
		type = be16(msg + pos);
		alen = be16(msg + pos + 2);
		pos += 4;
		if (alen > len - pos) {
			*why = "truncated attribute";
			return -1;
		}
		if ((type == STUN_ATTR_XOR_MAPPED ||
		        type == STUN_ATTR_XOR_MAPPED_OLD) &&
		    !have_xor)
			have_xor =
			    address_attr(msg + pos, alen, 1, msg, out) == 0;
		else if (type == STUN_ATTR_MAPPED && !have_plain)
			have_plain =
			    address_attr(msg + pos, alen, 0, msg, &plain) == 0;
		pos += ((size_t)alen + 3) & ~(size_t)3;
		if (pos > len) {
			*why = "truncated attribute padding";
			return -1;
		}
	}
	if (have_xor)
		return 0;
	if (have_plain) {
		*out = plain;
		return 0;
	}
	*why = "no mapped address in the answer";
	return -1;
}

static int
is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int
myip_parse(
    const uint8_t *body, size_t len, char out[INET6_ADDRSTRLEN], int *family)
{
	char text[INET6_ADDRSTRLEN + 16];
	struct in6_addr a6;
	struct in_addr a4;
	size_t s = 0, e = len;

	while (s < e && is_space(body[s]))
		s++;
	while (e > s && is_space(body[e - 1]))
		e--;
	if (e == s || e - s >= sizeof(text))
		return -1;
	memcpy(text, body + s, e - s);
	text[e - s] = '\0';
	if (memchr(text, '\0', e - s) != NULL)
		return -1;
	if (inet_pton(AF_INET, text, &a4) == 1) {
		*family = AF_INET;
		inet_ntop(AF_INET, &a4, out, INET6_ADDRSTRLEN);
		return 0;
	}
	if (inet_pton(AF_INET6, text, &a6) == 1) {
		*family = AF_INET6;
		inet_ntop(AF_INET6, &a6, out, INET6_ADDRSTRLEN);
		return 0;
	}
	return -1;
}

struct source {
	const char *name;
	const char *addr;
	unsigned answers;
	int mixed; /* gave different addresses */
};

int
discover_vote(const struct discover_answer *a, size_t n,
    char out[INET6_ADDRSTRLEN], char *from, size_t fromcap)
{
	struct source src[SOURCES_MAX];
	size_t ns = 0, good = 0, best = 0, votes[SOURCES_MAX];
	size_t bestv = 0, secondv = 0, used = 0;

	for (size_t i = 0; i < n; i++) {
		size_t k;

		for (k = 0; k < ns; k++)
			if (strcmp(src[k].name, a[i].source) == 0)
				break;
		if (k == ns) {
			if (ns == SOURCES_MAX)
				continue;
			src[ns++] =
			    (struct source){ a[i].source, a[i].addr, 0, 0 };
		}
		src[k].answers++;
		if (strcmp(src[k].addr, a[i].addr) != 0)
			src[k].mixed = 1;
	}
	for (size_t k = 0; k < ns; k++)
		if (!src[k].mixed)
			good++;
	if (good == 0) {
		snprintf(from, fromcap, "%s",
		    ns == 0 ? "no source answered"
		            : "every source changed its answer");
		return -1;
	}
	if (good == 1) {
		for (size_t k = 0; k < ns; k++) {
			if (src[k].mixed)
				continue;
			if (src[k].answers < 2) {
				snprintf(from, fromcap,
				    "only %s answered (%s), once", src[k].name,
				    src[k].addr);
				return -1;
			}
			snprintf(out, INET6_ADDRSTRLEN, "%s", src[k].addr);
			snprintf(from, fromcap, "%s, twice", src[k].name);
			return 0;
		}
	}
	/* Votes per address, one per source. */
	for (size_t k = 0; k < ns; k++) {
		votes[k] = 0;
		if (src[k].mixed)
			continue;
		for (size_t j = 0; j < ns; j++)
			if (!src[j].mixed &&
			    strcmp(src[j].addr, src[k].addr) == 0)
				votes[k]++;
	}
	for (size_t k = 0; k < ns; k++) {
		if (src[k].mixed)
			continue;
		if (votes[k] > bestv) {
			bestv = votes[k];
			best = k;
		}
	}
	for (size_t k = 0; k < ns; k++)
		if (!src[k].mixed && strcmp(src[k].addr, src[best].addr) != 0 &&
		    votes[k] > secondv)
			secondv = votes[k];
	if (bestv < 2 || bestv == secondv) {
		int w = snprintf(from, fromcap, "the sources disagree:");

		for (size_t k = 0; k < ns && w >= 0 && (size_t)w < fromcap; k++)
			if (!src[k].mixed)
				w += snprintf(from + w, fromcap - (size_t)w,
				    "%s %s says %s", used++ ? "," : "",
				    src[k].name, src[k].addr);
		return -1;
	}
	snprintf(out, INET6_ADDRSTRLEN, "%s", src[best].addr);
	from[0] = '\0';
	for (size_t k = 0, w = 0; k < ns && w < fromcap; k++) {
		int r;

		if (src[k].mixed || strcmp(src[k].addr, out) != 0)
			continue;
		r = snprintf(from + w, fromcap - w, "%s%s", used++ ? ", " : "",
		    src[k].name);
		if (r < 0)
			break;
		w += (size_t)r;
	}
	return 0;
}

size_t
pubaddr_format(const struct pubaddr_state *st, char *out, size_t cap)
{
	size_t n = 0;
	int r;

	out[0] = '\0';
	if (st->v4[0] != '\0' &&
	    (r = snprintf(out + n, cap - n, "ipv4 %s\n", st->v4)) > 0)
		n += (size_t)r;
	if (n < cap && st->v6[0] != '\0' &&
	    (r = snprintf(out + n, cap - n, "ipv6 %s\n", st->v6)) > 0)
		n += (size_t)r;
	if (n < cap &&
	    (r = snprintf(
	         out + n, cap - n, "when %lld\n", (long long)st->when)) > 0)
		n += (size_t)r;
	return n < cap ? n : cap - 1;
}

int
pubaddr_parse(const uint8_t *text, size_t len, struct pubaddr_state *st)
{
	size_t pos = 0;

	memset(st, 0, sizeof(*st));
	while (pos < len) {
		const uint8_t *nl = memchr(text + pos, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char line[128], addr[INET6_ADDRSTRLEN];
		long long when;
		int fam;

		if (l >= sizeof(line))
			return -1;
		memcpy(line, text + pos, l);
		line[l] = '\0';
		pos += l + 1;
		if (l == 0)
			continue;
		if (strncmp(line, "ipv4 ", 5) == 0 ||
		    strncmp(line, "ipv6 ", 5) == 0) {
			int want = line[3] == '4' ? AF_INET : AF_INET6;

			if (myip_parse((const uint8_t *)line + 5, l - 5, addr,
			        &fam) == -1 ||
			    fam != want)
				return -1;
			snprintf(want == AF_INET ? st->v4 : st->v6,
			    INET6_ADDRSTRLEN, "%s", addr);
			snprintf(want == AF_INET ? st->from4 : st->from6,
			    sizeof(st->from4), "cache");
		} else if (sscanf(line, "when %lld", &when) == 1)
			st->when = when;
		else
			return -1;
	}
	return st->v4[0] || st->v6[0] ? 0 : -1;
}
