#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#endif

#include <openssl/rand.h>

#include "log.h"
#include "util.h"

void
hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

static int
hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hex_decode(const char *in, uint8_t *out, size_t len)
{
	if (strlen(in) != 2 * len)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int hi = hex_nibble(in[2 * i]), lo = hex_nibble(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int
fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int
fd_clear_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl == -1)
		return -1;
	return fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
}

int
memfd_of(const char *name, const void *p, size_t n)
{
	const uint8_t *b = p;
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd == -1)
		return -1;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w == 0 ? EIO : errno;
			close(fd);
			errno = e;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return fd;
}

uint8_t *
memfd_read(int fd, size_t max, size_t *n)
{
	struct stat st;
	uint8_t *b;

	if (fstat(fd, &st) == -1 || st.st_size <= 0 ||
	    (uint64_t)st.st_size > max ||
	    (b = malloc((size_t)st.st_size)) == NULL)
		return NULL;
	if (pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		free(b);
		return NULL;
	}
	*n = (size_t)st.st_size;
	return b;
}

int
fd_set_blocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

int
fd_set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl == -1)
		return -1;
	return fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

int
addr_from_ip_port(
    const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int
addr_parse(const char *text, uint16_t default_port, struct sockaddr_storage *ss,
    socklen_t *len)
{
	char host[80];
	const char *port = NULL;
	size_t hl;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (end == NULL)
			return -1;
		hl = end - text - 1;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -1;
		text++;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon && strchr(text, ':') != colon)
			colon = NULL; /* bare IPv6 without brackets */
		hl = colon ? (size_t)(colon - text) : strlen(text);
		port = colon ? colon + 1 : NULL;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, text, hl);
	host[hl] = '\0';
	long p = default_port;
	if (port) {
		char *end;
		errno = 0;
		p = strtol(port, &end, 10);
		if (*port == '\0' || *end != '\0' || errno || p < 1 ||
		    p > 65535)
			return -1;
	}
	if (p < 1 || p > 65535)
		return -1;
	return addr_from_ip_port(host, (uint16_t)p, ss, len);
}

const char *
addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "unix");
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

uint64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t
now_ms(void)
{
	return now_us() / 1000;
}

int64_t
now_unix(void)
{
	return (int64_t)time(NULL);
}

void
random_bytes(void *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1)
		fatalx("RAND_bytes failed");
}

/*
 * xoshiro256** (Blackman and Vigna), seeded from random_bytes() at the
 * first call in each process: a fork child reseeds (pthread_atfork), so
 * no two workers draw the same numbers.
 */
static uint64_t cheap_s[4];
static int cheap_seeded;

static void
cheap_forked(void)
{
	cheap_seeded = 0;
}

static uint64_t
rotl64(uint64_t x, int k)
{
	return x << k | x >> (64 - k);
}

uint64_t
cheap_rand64(void)
{
	static int atfork;

	if (!cheap_seeded) {
		if (!atfork)
			atfork = pthread_atfork(NULL, NULL, cheap_forked) == 0;
		do
			random_bytes(cheap_s, sizeof(cheap_s));
		while (
		    (cheap_s[0] | cheap_s[1] | cheap_s[2] | cheap_s[3]) == 0);
		cheap_seeded = 1;
	}
	uint64_t r = rotl64(cheap_s[1] * 5, 7) * 9;
	uint64_t t = cheap_s[1] << 17;
	cheap_s[2] ^= cheap_s[0];
	cheap_s[3] ^= cheap_s[1];
	cheap_s[1] ^= cheap_s[2];
	cheap_s[0] ^= cheap_s[3];
	cheap_s[2] ^= t;
	cheap_s[3] = rotl64(cheap_s[3], 45);
	return r;
}

void
cheap_rand_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		uint64_t r = cheap_rand64();
		size_t n = len < 8 ? len : 8;
		memcpy(p, &r, n);
		p += n;
		len -= n;
	}
}

/*
 * Process titles: overwrite the argv area (and the environment after it,
 * which is moved out of the way first), as nginx and OpenSSH do, so that
 * ps shows "mtprotod: worker 0". prctl(PR_SET_NAME) sets the short comm.
 */
static char *title_base;
static size_t title_len;

void
proctitle_init(int argc, char **argv)
{
	extern char **environ;
	char *base, *end;
	int i, n;

	if (argc == 0 || argv[0] == NULL)
		return;
	base = argv[0];
	end = base + strlen(base);
	for (i = 1; i < argc; i++)
		if (argv[i] == end + 1)
			end = argv[i] + strlen(argv[i]);
	for (n = 0; environ[n]; n++)
		;
	for (i = 0; i < n; i++)
		if (environ[i] == end + 1)
			end = environ[i] + strlen(environ[i]);
	char **newenv = calloc(n + 1, sizeof(char *));
	if (newenv == NULL)
		return;
	for (i = 0; i < n; i++)
		if ((newenv[i] = strdup(environ[i])) == NULL) {
			/* No title then, but no copy lost either. */
			while (i-- > 0)
				free(newenv[i]);
			free(newenv);
			return;
		}
	environ = newenv;
	/* argv must stay valid for getopt: move the strings too. */
	for (i = 0; i < argc; i++) {
		char *copy = strdup(argv[i]);

		/* argv[i] keeps pointing somewhere valid; no title then. */
		if (copy == NULL)
			return;
		argv[i] = copy;
	}
	title_base = base;
	title_len = end - base;
}

void
proctitle_set(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
#ifdef HAVE_PRCTL
	/* comm is 15 bytes: keep the distinctive tail ("worker 0"). */
	const char *comm = strncmp(buf, "mtprotod: ", 10) == 0 ? buf + 10 : buf;
	prctl(PR_SET_NAME, comm, 0, 0, 0);
#endif
	if (title_base == NULL || title_len < 2)
		return;
	size_t n = strlen(buf);
	if (n >= title_len)
		n = title_len - 1;
	memcpy(title_base, buf, n);
	memset(title_base + n, 0, title_len - n);
}

int
ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : (int)n;
}

int
cidr_parse(const char *text, struct cidr *c)
{
	char buf[64], *slash, *end;
	unsigned long prefix;
	size_t max;

	if (strlen(text) >= sizeof(buf))
		return -1;
	memset(c, 0, sizeof(*c));
	snprintf(buf, sizeof(buf), "%s", text);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		return -1;
	prefix = max;
	if (slash != NULL) {
		errno = 0;
		prefix = strtoul(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno != 0 ||
		    prefix > max)
			return -1;
	}
	c->prefix = (unsigned)prefix;
	for (size_t bit = prefix; bit < max; bit++)
		c->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	return 0;
}

int
cidr_match(const struct cidr *c, size_t n, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
		0xff };
	const uint8_t *a;
	int family = sa->sa_family;

	if (family == AF_INET)
		a = (const uint8_t *)&(
		    (const struct sockaddr_in *)(const void *)sa)
		        ->sin_addr;
	else if (family == AF_INET6) {
		a = (const uint8_t *)&(
		    (const struct sockaddr_in6 *)(const void *)sa)
		        ->sin6_addr;
		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			a += 12;
			family = AF_INET;
		}
	} else
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned p = c[i].prefix, full = p / 8, rest = p % 8;

		if (c[i].family != family || memcmp(a, c[i].addr, full) != 0)
			continue;
		if (rest == 0 ||
		    ((a[full] ^ c[i].addr[full]) &
		        (uint8_t)(0xff00u >> rest)) == 0)
			return 1;
	}
	return 0;
}
