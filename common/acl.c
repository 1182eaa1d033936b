/* Address lists as sorted, merged ranges (acl.h). */
#include "autoconf.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"

static void *
grow(void *v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return v;
	size_t c = *cap ? *cap * 2 : 16;
	void *p = realloc(v, c * size);

	if (p != NULL)
		*cap = c;
	return p;
}

int
acl_add(struct acl *a, const struct cidr *c)
{
	if (c->family == AF_INET) {
		struct acl_range4 *v = grow(a->v4, &a->cap4, a->n4, sizeof(*v));
		uint32_t ip, mask;

		if (v == NULL)
			return -1;
		a->v4 = v;
		ip = (uint32_t)c->addr[0] << 24 | (uint32_t)c->addr[1] << 16 |
		    (uint32_t)c->addr[2] << 8 | c->addr[3];
		mask = c->prefix == 0 ? 0 : 0xffffffffu << (32 - c->prefix);
		v[a->n4].lo = ip & mask;
		v[a->n4].hi = (ip & mask) | ~mask;
		a->n4++;
		return 0;
	}
	struct acl_range6 *v = grow(a->v6, &a->cap6, a->n6, sizeof(*v));

	if (v == NULL)
		return -1;
	a->v6 = v;
	memcpy(v[a->n6].lo, c->addr, 16); /* host bits are zero (cidr) */
	memcpy(v[a->n6].hi, c->addr, 16);
	for (unsigned bit = c->prefix; bit < 128; bit++)
		v[a->n6].hi[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
	a->n6++;
	return 0;
}

static int
cmp4(const void *x, const void *y)
{
	const struct acl_range4 *a = x, *b = y;

	return (a->lo > b->lo) - (a->lo < b->lo);
}

static int
cmp6(const void *x, const void *y)
{
	const struct acl_range6 *a = x, *b = y;

	return memcmp(a->lo, b->lo, 16);
}

/* a + 1 == b, 128-bit. */
static int
next6(const uint8_t a[16], const uint8_t b[16])
{
	uint8_t c[16];
	int i;

	memcpy(c, a, 16);
	for (i = 15; i >= 0 && ++c[i] == 0; i--)
		;
	return i >= 0 && memcmp(c, b, 16) == 0;
}

void
acl_finish(struct acl *a)
{
	size_t k = 0;

	if (a->n4 > 1) /* qsort's base may not be NULL, even for none */
		qsort(a->v4, a->n4, sizeof(a->v4[0]), cmp4);
	for (size_t i = 0; i < a->n4; i++) {
		if (k > 0 &&
		    (a->v4[i].lo <= a->v4[k - 1].hi ||
		        a->v4[i].lo == a->v4[k - 1].hi + 1)) {
			if (a->v4[i].hi > a->v4[k - 1].hi)
				a->v4[k - 1].hi = a->v4[i].hi;
			continue;
		}
		a->v4[k++] = a->v4[i];
	}
	a->n4 = k;
	k = 0;
	if (a->n6 > 1)
		qsort(a->v6, a->n6, sizeof(a->v6[0]), cmp6);
	for (size_t i = 0; i < a->n6; i++) {
		if (k > 0 &&
		    (memcmp(a->v6[i].lo, a->v6[k - 1].hi, 16) <= 0 ||
		        next6(a->v6[k - 1].hi, a->v6[i].lo))) {
			if (memcmp(a->v6[i].hi, a->v6[k - 1].hi, 16) > 0)
				memcpy(a->v6[k - 1].hi, a->v6[i].hi, 16);
			continue;
		}
		a->v6[k++] = a->v6[i];
	}
	a->n6 = k;
}

int
acl_match(const struct acl *a, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
		0xff };
	const uint8_t *p;
	size_t lo = 0, hi;

	if (sa->sa_family == AF_INET6) {
		p = ((const struct sockaddr_in6 *)(const void *)sa)
		        ->sin6_addr.s6_addr;
		if (memcmp(p, mapped, 12) != 0) {
			hi = a->n6;
			while (lo < hi) { /* the last range with lo <= ip */
				size_t mid = lo + (hi - lo) / 2;
				if (memcmp(a->v6[mid].lo, p, 16) <= 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			return lo > 0 && memcmp(p, a->v6[lo - 1].hi, 16) <= 0;
		}
		p += 12;
	} else if (sa->sa_family == AF_INET)
		p = (const uint8_t *)&(
		    (const struct sockaddr_in *)(const void *)sa)
		        ->sin_addr;
	else
		return 0;
	uint32_t ip = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	hi = a->n4;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->v4[mid].lo <= ip)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && ip <= a->v4[lo - 1].hi;
}

size_t
acl_size(const struct acl *a)
{
	return a->n4 + a->n6;
}

int
acl_load_file(struct acl *a, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[256];
	unsigned n = 0;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *s = line, *end;
		struct cidr c;

		n++;
		s[strcspn(s, "#\r\n")] = '\0';
		s += strspn(s, " \t");
		end = s + strlen(s);
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*s == '\0')
			continue;
		if (cidr_parse(s, &c) == -1) {
			snprintf(err, errlen,
			    "%s:%u: \"%.64s\" is not an address or "
			    "address/prefix",
			    path, n, s);
			fclose(f);
			return -1;
		}
		if (acl_add(a, &c) == -1) {
			snprintf(err, errlen, "%s:%u: out of memory", path, n);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

int
acl_equal(const struct acl *a, const struct acl *b)
{
	return a->n4 == b->n4 && a->n6 == b->n6 &&
	    (a->n4 == 0 || memcmp(a->v4, b->v4, a->n4 * sizeof(*a->v4)) == 0) &&
	    (a->n6 == 0 || memcmp(a->v6, b->v6, a->n6 * sizeof(*a->v6)) == 0);
}

void
acl_free(struct acl *a)
{
	free(a->v4);
	free(a->v6);
	memset(a, 0, sizeof(*a));
}
