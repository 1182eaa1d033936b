/*
 * dcpool/tgconf: the checks of Telegram's proxy secret and middle-proxy
 * lists (spec B.2.1), the state comparison, the HTTP Date clock check,
 * the atomic cache files, and start-up from the cache and from files
 * (no network: the URLs point at a closed port and are never reached).
 */
#include "autoconf.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "dcpool/fetch.h"
#include "dcpool/tgconf.h"
#include "proxyconf.h"
#include "util.h"

/* The example of spec B.2.1 (from the Erlang proxy's tests). */
static const char conf_v4[] = "# force_probability 1 10\n"
                              "default 2;\n"
                              "proxy_for 1 149.154.175.50:8888;\n"
                              "proxy_for -1 149.154.175.50:8888;\n"
                              "proxy_for 2 149.154.162.39:80;\n"
                              "proxy_for 2 149.154.162.33:80;\n";
static const char conf_v6[] = "proxy_for 1 [2001:b28:f23d:f001::d]:8888;\n"
                              "proxy_for 2 [2001:67c:4e8:f002::d]:80;\n";

/* IMF-fixdate example of RFC 7231 7.1.1.1 and its Unix time. */
#define RFC_DATE "Sun, 06 Nov 1994 08:49:37 GMT"
#define RFC_TIME 784111777

static char tmpdir[PATH_MAX];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_tgconf.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void
write_file(const char *name, const void *data, size_t len)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	ck_assert_ptr_nonnull(f = fopen(path, "wb"));
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

/* Names in tmpdir, sorted, joined by spaces. */
static const char *
dir_list(void)
{
	static char out[1024];
	struct dirent **ents;
	int n;

	out[0] = '\0';
	n = scandir(tmpdir, &ents, NULL, alphasort);
	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") != 0 &&
		    strcmp(ents[i]->d_name, "..") != 0) {
			if (out[0] != '\0')
				strcat(out, " ");
			strcat(out, ents[i]->d_name);
		}
		free(ents[i]);
	}
	free(ents);
	return out;
}

START_TEST(test_check_secret)
{
	uint8_t buf[TGCONF_SECRET_MAX + 1];
	char err[128];

	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(tgconf_check_secret(buf, 32, err, sizeof(err)), 0);
	ck_assert_int_eq(tgconf_check_secret(buf, 128, err, sizeof(err)), 0);
	ck_assert_int_eq(tgconf_check_secret(buf, 256, err, sizeof(err)), 0);
	err[0] = '\0';
	ck_assert_int_eq(tgconf_check_secret(buf, 31, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "31 bytes, not 32 to 256");
	ck_assert_int_eq(tgconf_check_secret(buf, 257, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "257 bytes, not 32 to 256");
	ck_assert_int_eq(tgconf_check_secret(buf, 0, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_check_config)
{
	struct proxyconf *pc = calloc(1, sizeof(*pc));
	char err[256], buf[ADDR_STRLEN];
	uint8_t *big;

	ck_assert_ptr_nonnull(pc);
	err[0] = 'x';
	ck_assert_int_eq(tgconf_check_config((const uint8_t *)conf_v4,
	                     strlen(conf_v4), pc, err, sizeof(err)),
	    0);
	ck_assert_uint_eq(pc->n, 4);
	ck_assert_int_eq(pc->has_default, 1);
	ck_assert_int_eq(pc->default_dc, 2);
	ck_assert_int_eq(pc->entries[0].dc, -1);
	ck_assert_str_eq(addr_str(&pc->entries[3].addr.sa, buf, sizeof(buf)),
	    "149.154.162.33:80");

	ck_assert_int_eq(tgconf_check_config((const uint8_t *)conf_v6,
	                     strlen(conf_v6), pc, err, sizeof(err)),
	    0);
	ck_assert_uint_eq(pc->n, 2);
	ck_assert_str_eq(addr_str(&pc->entries[0].addr.sa, buf, sizeof(buf)),
	    "[2001:b28:f23d:f001::d]:8888");

	/* What a broken download looks like: never a good list. */
	err[0] = '\0';
	ck_assert_int_eq(tgconf_check_config((const uint8_t *)"default 2;\n",
	                     11, pc, err, sizeof(err)),
	    -1);
	ck_assert_uint_gt(strlen(err), 0);
	err[0] = '\0';
	ck_assert_int_eq(
	    tgconf_check_config(
	        (const uint8_t *)"<html>busy</html>", 17, pc, err, sizeof(err)),
	    -1);
	ck_assert_uint_gt(strlen(err), 0);
	ck_assert_int_eq(
	    tgconf_check_config((const uint8_t *)"", 0, pc, err, sizeof(err)),
	    -1);
	ck_assert_int_eq(tgconf_check_config(
	                     (const uint8_t *)"proxy_for 2 149.154.162.39:0;\n",
	                     30, pc, err, sizeof(err)),
	    -1);

	ck_assert_ptr_nonnull(big = malloc(TGCONF_BODY_MAX + 1));
	memset(big, ' ', TGCONF_BODY_MAX + 1);
	memcpy(big, conf_v4, strlen(conf_v4));
	ck_assert_int_eq(
	    tgconf_check_config(big, TGCONF_BODY_MAX, pc, err, sizeof(err)), 0);
	ck_assert_int_eq(
	    tgconf_check_config(big, TGCONF_BODY_MAX + 1, pc, err, sizeof(err)),
	    -1);
	ck_assert_str_eq(err, "1048577 bytes, more than 1048576");
	free(big);
	free(pc);
}
END_TEST

static void
make_state(struct tg_state *s, uint8_t fill)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	memset(s->secret, fill, 128);
	s->secret_len = 128;
	ck_assert_int_eq(
	    proxyconf_parse(conf_v4, strlen(conf_v4), &s->v4, err, sizeof(err)),
	    0);
	ck_assert_int_eq(
	    proxyconf_parse(conf_v6, strlen(conf_v6), &s->v6, err, sizeof(err)),
	    0);
}

START_TEST(test_state_equal)
{
	static const char respaced[] =
	    "default 2; proxy_for 1 "
	    "149.154.175.50:8888; proxy_for -1 149.154.175.50:8888;\n"
	    "# x\nproxy_for 2 149.154.162.39:80;\tproxy_for 2 "
	    "149.154.162.33:80;";
	static const char other_default[] =
	    "default 1; proxy_for 1 "
	    "149.154.175.50:8888; proxy_for -1 149.154.175.50:8888;\n"
	    "proxy_for 2 149.154.162.39:80; proxy_for 2 149.154.162.33:80;";
	struct tg_state *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	char err[256];

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	make_state(a, 1);
	make_state(b, 1);
	a->source = "cache";
	b->source = "https";
	ck_assert_int_eq(tgconf_state_equal(a, b), 1);

	b->secret[127] ^= 1;
	ck_assert_int_eq(tgconf_state_equal(a, b), 0);
	b->secret[127] ^= 1;
	b->secret_len = 127;
	ck_assert_int_eq(tgconf_state_equal(a, b), 0);
	b->secret_len = 128;

	b->v4.entries[2].addr.sin.sin_port ^= 1;
	ck_assert_int_eq(tgconf_state_equal(a, b), 0);
	b->v4.entries[2].addr.sin.sin_port ^= 1;
	b->v6.entries[1].addr.sin6.sin6_addr.s6_addr[15] ^= 1;
	ck_assert_int_eq(tgconf_state_equal(a, b), 0);
	b->v6.entries[1].addr.sin6.sin6_addr.s6_addr[15] ^= 1;
	ck_assert_int_eq(tgconf_state_equal(a, b), 1);

	/* The same list with comments and spacing changed is equal... */
	ck_assert_int_eq(proxyconf_parse(respaced, strlen(respaced), &b->v4,
	                     err, sizeof(err)),
	    0);
	ck_assert_int_eq(tgconf_state_equal(a, b), 1);
	/* ...another default DC is not, nor a missing IPv6 list. */
	ck_assert_int_eq(proxyconf_parse(other_default, strlen(other_default),
	                     &b->v4, err, sizeof(err)),
	    0);
	ck_assert_int_eq(tgconf_state_equal(a, b), 0);
	b->v4 = a->v4;
	memset(&b->v6, 0, sizeof(b->v6));
	ck_assert_int_eq(tgconf_state_equal(a, b), 0);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_http_date)
{
	int64_t t = 0, skew = 0;

	ck_assert_int_eq(tgconf_parse_http_date(RFC_DATE, &t), 0);
	ck_assert_int_eq(t, RFC_TIME);
	t = 0;
	ck_assert_int_eq(
	    tgconf_parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
	ck_assert_int_eq(t, RFC_TIME);
	t = 0;
	ck_assert_int_eq(
	    tgconf_parse_http_date("Sun Nov  6 08:49:37 1994", &t), 0);
	ck_assert_int_eq(t, RFC_TIME);
	ck_assert_int_eq(
	    tgconf_parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", &t), 0);
	ck_assert_int_eq(t, 0);
	ck_assert_int_eq(
	    tgconf_parse_http_date("Tue, 19 Jan 2038 03:14:08 GMT", &t), 0);
	ck_assert_int_eq(t, 2147483648LL);

	ck_assert_int_eq(tgconf_parse_http_date(NULL, &t), -1);
	ck_assert_int_eq(tgconf_parse_http_date("", &t), -1);
	ck_assert_int_eq(tgconf_parse_http_date("yesterday", &t), -1);
	/* curl_getdate's leniency: no zone is GMT, a tail is ignored. */
	t = 0;
	ck_assert_int_eq(
	    tgconf_parse_http_date("Sun, 06 Nov 1994 08:49:37", &t), 0);
	ck_assert_int_eq(t, RFC_TIME);
	ck_assert_int_eq(
	    tgconf_parse_http_date("Sun, 32 Nov 1994 08:49:37 GMT", &t), -1);
	ck_assert_int_eq(
	    tgconf_parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT", &t), -1);

	/* Our clock minus theirs: ahead is positive. */
	ck_assert_int_eq(tgconf_clock_skew(RFC_DATE, RFC_TIME + 45, &skew), 0);
	ck_assert_int_eq(skew, 45);
	ck_assert_int_eq(tgconf_clock_skew(RFC_DATE, RFC_TIME - 31, &skew), 0);
	ck_assert_int_eq(skew, -31);
	ck_assert_int_eq(tgconf_clock_skew(RFC_DATE, RFC_TIME, &skew), 0);
	ck_assert_int_eq(skew, 0);
	ck_assert_int_eq(tgconf_clock_skew(NULL, RFC_TIME, &skew), -1);
	ck_assert_int_eq(tgconf_clock_skew("garbage", RFC_TIME, &skew), -1);
}
END_TEST

START_TEST(test_cache_round_trip)
{
	uint8_t secret[128], *body = NULL;
	char path[PATH_MAX + 64];
	struct stat st;
	size_t len = 0;

	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (uint8_t)(i * 7 + 3);
	ck_assert_int_eq(tgconf_cache_write(tmpdir, TGCONF_CACHE_SECRET, secret,
	                     sizeof(secret)),
	    0);
	ck_assert_int_eq(
	    tgconf_cache_read(tmpdir, TGCONF_CACHE_SECRET, &body, &len), 0);
	ck_assert_uint_eq(len, sizeof(secret));
	ck_assert_mem_eq(body, secret, sizeof(secret));
	free(body);
	/* Only the file itself is left, readable by its owner only. */
	ck_assert_str_eq(dir_list(), "proxy-secret");
	snprintf(path, sizeof(path), "%s/proxy-secret", tmpdir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);

	/* Replacing it. */
	ck_assert_int_eq(tgconf_cache_write(tmpdir, TGCONF_CACHE_SECRET,
	                     (const uint8_t *)conf_v4, strlen(conf_v4)),
	    0);
	ck_assert_int_eq(
	    tgconf_cache_read(tmpdir, TGCONF_CACHE_SECRET, &body, &len), 0);
	ck_assert_uint_eq(len, strlen(conf_v4));
	ck_assert_mem_eq(body, conf_v4, len);
	free(body);
	ck_assert_str_eq(dir_list(), "proxy-secret");

	/* Empty. */
	ck_assert_int_eq(tgconf_cache_write(tmpdir, TGCONF_CACHE_CONFIG,
	                     (const uint8_t *)"", 0),
	    0);
	ck_assert_int_eq(
	    tgconf_cache_read(tmpdir, TGCONF_CACHE_CONFIG, &body, &len), 0);
	ck_assert_uint_eq(len, 0);
	free(body);
	ck_assert_str_eq(dir_list(), "proxy-multi.conf proxy-secret");

	/* Missing. */
	errno = 0;
	ck_assert_int_eq(
	    tgconf_cache_read(tmpdir, TGCONF_CACHE_CONFIG_V6, &body, &len), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

START_TEST(test_cache_errors)
{
	char dir[PATH_MAX + 16];
	uint8_t *body = NULL, *big;
	size_t len = 0;

	/* No such directory: nothing written, the error tells. */
	snprintf(dir, sizeof(dir), "%s/none", tmpdir);
	errno = 0;
	ck_assert_int_eq(tgconf_cache_write(
	                     dir, TGCONF_CACHE_SECRET, (const uint8_t *)"x", 1),
	    -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_str_eq(dir_list(), "");

	/* More than TGCONF_BODY_MAX on disk is refused. */
	ck_assert_ptr_nonnull(big = calloc(1, TGCONF_BODY_MAX + 1));
	write_file("big", big, TGCONF_BODY_MAX + 1);
	errno = 0;
	ck_assert_int_eq(tgconf_cache_read(tmpdir, "big", &body, &len), -1);
	ck_assert_int_eq(errno, EFBIG);
	write_file("big", big, TGCONF_BODY_MAX);
	ck_assert_int_eq(tgconf_cache_read(tmpdir, "big", &body, &len), 0);
	ck_assert_uint_eq(len, TGCONF_BODY_MAX);
	free(body);
	free(big);

	/* A directory is not a copy. */
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(tgconf_cache_read(tmpdir, "none", &body, &len), -1);
}
END_TEST

/* ---------------------------------------------------- start-up */

static int ncalls;
static struct tg_state seen;

static void
on_changed(void *arg, const struct tg_state *st)
{
	ck_assert_ptr_eq(arg, &ncalls);
	ncalls++;
	seen = *st;
}

static struct config *
load_config(const char *telegram)
{
	char text[4 * PATH_MAX], err[CONFIG_ERR_MAX] = "";
	struct config *cfg;

	snprintf(text, sizeof(text),
	    "state_dir = \"%s\";\n"
	    "backend = \"middle\";\n"
	    "listeners = ( { port = 443; protocols = [ \"secure\" ];\n"
	    "  users = ( { secret = \"00112233445566778899aabbccddeeff\"; } );"
	    " } );\n"
	    "telegram = { %s };\n",
	    tmpdir, telegram);
	cfg = config_load_string(text, "t.conf", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	return cfg;
}

#define CLOSED_URLS \
	"proxy_secret_url = \"http://127.0.0.1:1/s\";" \
	"proxy_config_url = \"http://127.0.0.1:1/c\";" \
	"proxy_config_v6_url = \"http://127.0.0.1:1/c6\";"

START_TEST(test_start_from_cache)
{
	struct event_base *base = event_base_new();
	struct config *cfg = load_config(CLOSED_URLS);
	struct tgconf *t;
	uint8_t secret[64];
	struct tg_state *want = malloc(sizeof(*want));

	ck_assert_ptr_nonnull(base);
	ck_assert_ptr_nonnull(want);
	memset(secret, 0xa5, sizeof(secret));
	ck_assert_int_eq(tgconf_cache_write(tmpdir, TGCONF_CACHE_SECRET, secret,
	                     sizeof(secret)),
	    0);
	ck_assert_int_eq(tgconf_cache_write(tmpdir, TGCONF_CACHE_CONFIG,
	                     (const uint8_t *)conf_v4, strlen(conf_v4)),
	    0);
	ck_assert_int_eq(tgconf_cache_write(tmpdir, TGCONF_CACHE_CONFIG_V6,
	                     (const uint8_t *)conf_v6, strlen(conf_v6)),
	    0);

	ck_assert_ptr_eq(tgconf_state(NULL)->source, NULL);
	ck_assert_uint_eq(tgconf_state(NULL)->secret_len, 0);
	ncalls = 0;
	t = tgconf_start(base, cfg, on_changed, &ncalls);
	ck_assert_ptr_nonnull(t);
	/* Reported at once, before anything is fetched. */
	ck_assert_int_eq(ncalls, 1);
	ck_assert_str_eq(seen.source, "cache");
	make_state(want, 0xa5);
	want->secret_len = sizeof(secret);
	ck_assert_int_eq(tgconf_state_equal(&seen, want), 1);
	ck_assert_int_eq(tgconf_state_equal(tgconf_state(t), want), 1);
	ck_assert_uint_eq(tgconf_state(t)->v6.n, 2);
	tgconf_free(t);
	ck_assert_int_eq(ncalls, 1);

	/* A bad cached secret: nothing reported, nothing known. */
	ck_assert_int_eq(
	    tgconf_cache_write(tmpdir, TGCONF_CACHE_SECRET, secret, 16), 0);
	ncalls = 0;
	t = tgconf_start(base, cfg, on_changed, &ncalls);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(ncalls, 0);
	ck_assert_uint_eq(tgconf_state(t)->secret_len, 0);
	tgconf_free(t);
	free(want);
	config_free(cfg);
	event_base_free(base);
}
END_TEST

START_TEST(test_start_from_files)
{
	struct event_base *base = event_base_new();
	char tele[2 * PATH_MAX + 512];
	struct config *cfg;
	struct tgconf *t;
	uint8_t secret[200];

	ck_assert_ptr_nonnull(base);
	memset(secret, 0x3c, sizeof(secret));
	write_file("my-secret", secret, sizeof(secret));
	write_file("my.conf", conf_v4, strlen(conf_v4));
	snprintf(tele, sizeof(tele),
	    CLOSED_URLS "proxy_secret_file = \"%s/my-secret\";"
	                "proxy_config_file = \"%s/my.conf\";",
	    tmpdir, tmpdir);
	cfg = load_config(tele);
	ncalls = 0;
	t = tgconf_start(base, cfg, on_changed, &ncalls);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(ncalls, 0); /* files are read by the loop */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 0);
	ck_assert_int_eq(ncalls, 1);
	ck_assert_str_eq(seen.source, "file");
	ck_assert_uint_eq(seen.secret_len, sizeof(secret));
	ck_assert_mem_eq(seen.secret, secret, sizeof(secret));
	ck_assert_uint_eq(seen.v4.n, 4);
	/* No proxy_config_v6_file with a proxy_config_file: no IPv6. */
	ck_assert_uint_eq(seen.v6.n, 0);
	/* Files are not copied into the cache. */
	ck_assert_str_eq(dir_list(), "my-secret my.conf");
	tgconf_free(t);
	config_free(cfg);
	event_base_free(base);
}
END_TEST

/* Freed while a fetch waits on a server that never answers. */
START_TEST(test_free_in_flight)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	char tele[512];
	struct config *cfg;
	struct tgconf *t;
	int fd;

	ck_assert_ptr_nonnull(base);
	ck_assert_int_ge(fd = socket(AF_INET, SOCK_STREAM, 0), 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(tele, sizeof(tele),
	    "proxy_secret_url = \"http://127.0.0.1:%d/s\";"
	    "proxy_config_url = \"http://127.0.0.1:%d/c\";"
	    "proxy_config_v6_url = \"http://127.0.0.1:%d/c6\";",
	    ntohs(sin.sin_port), ntohs(sin.sin_port), ntohs(sin.sin_port));
	cfg = load_config(tele);
	ncalls = 0;
	t = tgconf_start(base, cfg, on_changed, &ncalls);
	ck_assert_ptr_nonnull(t);
	/* Start the round, connect, send the request. */
	for (int i = 0; i < 20; i++)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_NONBLOCK), -1);
	tgconf_free(t);
	/* Nothing of it may run any more. */
	for (int i = 0; i < 5; i++)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_NONBLOCK), -1);
	ck_assert_int_eq(ncalls, 0);
	ck_assert_str_eq(dir_list(), "");
	close(fd);
	config_free(cfg);
	event_base_free(base);
}
END_TEST

/*
 * Issue 7 item 2: a fetch whose DNS lookup never answers is closed by
 * its deadline; the cancelled lookup's callback comes later and must
 * find the fetch still there (before the fix: a use after free, which
 * ASan reports; configure --enable-sanitizers). Then the tgconf is
 * freed while the next lookup waits: the same again, and no leak.
 */
START_TEST(test_dns_never_answers)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	char conf[] = "/tmp/check_tgconf_resolv.XXXXXX";
	char line[128];
	struct timeval tv = { 1, 500000 };
	struct config *cfg;
	struct tgconf *t;
	int fd, cfd;

	ck_assert_ptr_nonnull(base);
	/* A name server that reads nothing and never answers. */
	ck_assert_int_ge(fd = socket(AF_INET, SOCK_DGRAM, 0), 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	ck_assert_int_ge(cfd = mkstemp(conf), 0);
	snprintf(line, sizeof(line),
	    "nameserver 127.0.0.1:%d\noptions timeout:60 attempts:1\n",
	    ntohs(sin.sin_port));
	ck_assert_int_eq(write(cfd, line, strlen(line)), (ssize_t)strlen(line));
	close(cfd);
	fetch_resolv_conf = conf;
	cfg = load_config("http_timeout = 1;"
	                  "proxy_secret_url = \"http://never.invalid/s\";"
	                  "proxy_config_url = \"http://never.invalid/c\";"
	                  "proxy_config_v6_url = \"http://never.invalid/c6\";");
	ncalls = 0;
	t = tgconf_start(base, cfg, on_changed, &ncalls);
	ck_assert_ptr_nonnull(t);
	/* The first fetch times out after 1 s; the next one starts. */
	ck_assert_int_eq(event_base_loopexit(base, &tv), 0);
	ck_assert_int_eq(event_base_dispatch(base), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_NONBLOCK), -1);
	/* Freed while the second lookup waits. */
	tgconf_free(t);
	for (int i = 0; i < 5; i++)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_NONBLOCK), -1);
	ck_assert_int_eq(ncalls, 0);
	fetch_resolv_conf = NULL;
	unlink(conf);
	close(fd);
	config_free(cfg);
	event_base_free(base);
}
END_TEST

static Suite *
tgconf_suite(void)
{
	Suite *s = suite_create("tgconf");
	TCase *tc = tcase_create("tgconf");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_check_secret);
	tcase_add_test(tc, test_check_config);
	tcase_add_test(tc, test_state_equal);
	tcase_add_test(tc, test_http_date);
	tcase_add_test(tc, test_cache_round_trip);
	tcase_add_test(tc, test_cache_errors);
	tcase_add_test(tc, test_start_from_cache);
	tcase_add_test(tc, test_start_from_files);
	tcase_add_test(tc, test_free_in_flight);
	tcase_add_test(tc, test_dns_never_answers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(tgconf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
