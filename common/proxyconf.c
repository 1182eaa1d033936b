#include "autoconf.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyconf.h"

/* Longer than any statement word or address of the grammar (B.2.1). */
#define TOKEN_MAX 96

struct lexer {
	const char *text;
	size_t len;
	size_t pos;
	int line;
	char *err;
	size_t errlen;
	int failed;
};

static void fail(struct lexer *lx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fail(struct lexer *lx, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (lx->failed)
		return;
	lx->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (lx->err && lx->errlen > 0)
		snprintf(lx->err, lx->errlen, "line %d: %s", lx->line, msg);
}

/*
 * The next token into tok: ";" or a run of other visible characters.
 * Returns 1, 0 at the end of the text, -1 on an error.
 */
static int
next_token(struct lexer *lx, char tok[TOKEN_MAX + 1])
{
	size_t n = 0;
	unsigned char c;

	for (;;) {
		if (lx->pos == lx->len)
			return 0;
		c = (unsigned char)lx->text[lx->pos];
		if (c == '#') {
			while (lx->pos < lx->len && lx->text[lx->pos] != '\n')
				lx->pos++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (c == '\n')
				lx->line++;
			lx->pos++;
		} else
			break;
	}
	if (c == ';') {
		lx->pos++;
		memcpy(tok, ";", 2);
		return 1;
	}
	while (lx->pos < lx->len) {
		c = (unsigned char)lx->text[lx->pos];
		if (c == ';' || c == '#' || c == ' ' || c == '\t' ||
		    c == '\r' || c == '\n')
			break;
		if (c < 0x21 || c > 0x7e) {
			fail(lx, "unexpected byte 0x%02x", c);
			return -1;
		}
		if (n == TOKEN_MAX) {
			fail(lx, "word too long");
			return -1;
		}
		tok[n++] = (char)c;
		lx->pos++;
	}
	tok[n] = '\0';
	return 1;
}

/* A token that must be there (not ";" unless want_semicolon). */
static int
expect(struct lexer *lx, char tok[TOKEN_MAX + 1], const char *stmt,
    int want_semicolon)
{
	int rc = next_token(lx, tok);

	if (rc == -1)
		return -1;
	if (rc == 0) {
		fail(lx, "unexpected end of text in \"%s\"", stmt);
		return -1;
	}
	if (want_semicolon && strcmp(tok, ";") != 0) {
		fail(lx, "\"%s\": expected \";\", got \"%s\"", stmt, tok);
		return -1;
	}
	if (!want_semicolon && strcmp(tok, ";") == 0) {
		fail(lx, "\"%s\": missing argument", stmt);
		return -1;
	}
	return 0;
}

/* A decimal integer in [min, max], optionally signed. */
static int
parse_int(const char *s, long min, long max, long *out)
{
	const char *p = s;
	long v = 0;
	int neg = 0;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (*p == '\0')
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > 1000000000L) /* beyond any range we accept */
			return -1;
	}
	if (neg)
		v = -v;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "a.b.c.d:port" or "[ipv6]:port", numeric only, port 1..65535. */
static int
parse_addr(const char *s, struct proxyconf_entry *e)
{
	char host[TOKEN_MAX + 1];
	const char *colon;
	size_t hl;
	long port;

	memset(&e->addr, 0, sizeof(e->addr));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		hl = (size_t)(end - s - 1);
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		colon = end + 1;
		if (inet_pton(AF_INET6, host, &e->addr.sin6.sin6_addr) != 1)
			return -1;
		e->addr.sin6.sin6_family = AF_INET6;
		e->addrlen = sizeof(e->addr.sin6);
	} else {
		colon = strchr(s, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL)
			return -1;
		hl = (size_t)(colon - s);
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET, host, &e->addr.sin.sin_addr) != 1)
			return -1;
		e->addr.sin.sin_family = AF_INET;
		e->addrlen = sizeof(e->addr.sin);
	}
	if (parse_int(colon + 1, 1, 65535, &port) == -1 || colon[1] == '-' ||
	    colon[1] == '+')
		return -1;
	if (e->addr.sa.sa_family == AF_INET)
		e->addr.sin.sin_port = htons((uint16_t)port);
	else
		e->addr.sin6.sin6_port = htons((uint16_t)port);
	return 0;
}

/* Keeps entries sorted by dc, in file order within a dc. */
static int
add_entry(struct proxyconf *pc, const struct proxyconf_entry *e)
{
	size_t i = pc->n;

	if (pc->n == PROXYCONF_MAX_ENTRIES)
		return -1;
	while (i > 0 && pc->entries[i - 1].dc > e->dc)
		i--;
	memmove(&pc->entries[i + 1], &pc->entries[i],
	    (pc->n - i) * sizeof(pc->entries[0]));
	pc->entries[i] = *e;
	pc->n++;
	return 0;
}

static int
statement(struct lexer *lx, struct proxyconf *pc, const char *kw)
{
	char tok[TOKEN_MAX + 1];
	struct proxyconf_entry e;
	long v;

	memset(&e, 0, sizeof(e));
	if (strcmp(kw, "proxy_for") == 0) {
		if (expect(lx, tok, kw, 0) == -1)
			return -1;
		if (parse_int(tok, INT16_MIN, INT16_MAX, &v) == -1) {
			fail(lx, "proxy_for: bad DC \"%s\"", tok);
			return -1;
		}
		e.dc = (int16_t)v;
		if (expect(lx, tok, kw, 0) == -1)
			return -1;
		if (parse_addr(tok, &e) == -1) {
			fail(lx, "proxy_for: bad address \"%s\"", tok);
			return -1;
		}
		if (add_entry(pc, &e) == -1) {
			fail(lx, "more than %d proxy_for entries",
			    PROXYCONF_MAX_ENTRIES);
			return -1;
		}
	} else if (strcmp(kw, "default") == 0) {
		if (expect(lx, tok, kw, 0) == -1)
			return -1;
		if (parse_int(tok, INT16_MIN, INT16_MAX, &v) == -1) {
			fail(lx, "default: bad DC \"%s\"", tok);
			return -1;
		}
		pc->has_default = 1;
		pc->default_dc = (int16_t)v;
	} else if (strcmp(kw, "proxy") == 0) {
		/* C's DC-0 proxy: checked, not used. */
		if (expect(lx, tok, kw, 0) == -1)
			return -1;
		if (parse_addr(tok, &e) == -1) {
			fail(lx, "proxy: bad address \"%s\"", tok);
			return -1;
		}
	} else if (strcmp(kw, "timeout") == 0 ||
	    strcmp(kw, "min_connections") == 0 ||
	    strcmp(kw, "max_connections") == 0) {
		/* C's tuning knobs: checked, not used (ours are in CONFIG). */
		if (expect(lx, tok, kw, 0) == -1)
			return -1;
		if (parse_int(tok, 0, 1000000, &v) == -1) {
			fail(lx, "%s: bad number \"%s\"", kw, tok);
			return -1;
		}
	} else {
		fail(lx, "unknown statement \"%s\"", kw);
		return -1;
	}
	return expect(lx, tok, kw, 1);
}

int
proxyconf_parse(const char *text, size_t len, struct proxyconf *pc, char *err,
    size_t errlen)
{
	struct lexer lx = { text, len, 0, 1, err, errlen, 0 };
	char kw[TOKEN_MAX + 1];
	int rc;

	memset(pc, 0, sizeof(*pc));
	if (err && errlen > 0)
		err[0] = '\0';
	while ((rc = next_token(&lx, kw)) == 1) {
		if (strcmp(kw, ";") == 0)
			continue; /* an empty statement */
		if (statement(&lx, pc, kw) == -1) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && pc->n == 0) {
		fail(&lx, "no proxy_for entries");
		rc = -1;
	}
	if (rc == -1) {
		pc->n = 0;
		return -1;
	}
	return 0;
}

size_t
proxyconf_lookup(
    const struct proxyconf *pc, int dc, const struct proxyconf_entry **out)
{
	size_t i, j;

	for (int pass = 0; pass < 2; pass++) {
		for (i = 0; i < pc->n && pc->entries[i].dc != dc; i++)
			;
		for (j = i; j < pc->n && pc->entries[j].dc == dc; j++)
			;
		if (j > i) {
			*out = &pc->entries[i];
			return j - i;
		}
		if (!pc->has_default || pc->default_dc == dc)
			break;
		dc = pc->default_dc;
	}
	*out = NULL;
	return 0;
}
