/*
 * mtprotod.conf parsing: every option of CONFIG.md read back, the
 * defaults, the built-in default config and its kept secret, and the
 * exact "FILE:LINE: option: ..." message of every kind of error.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "tables.h"
#include "util.h"

#define SECRET_A "00112233445566778899aabbccddeeff"
#define SECRET_B "5224c74533123f5d68c832d0dfec65ae"
#define TAG      "0123456789abcdef0123456789abcdef"

/* A small valid file (lines 1-6) to put errors before or after. */
#define GOOD_LISTENERS \
	"listeners = (\n" \
	"  { name = \"a\"; port = 443; tls_domain = \"www.example.com\";\n" \
	"    users = (\n" \
	"      { name = \"u\"; secret = \"" SECRET_A "\"; }\n" \
	"    ); }\n" \
	");\n"

static char tmpdir[PATH_MAX];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_config.XXXXXX");
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
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

/* The text must fail with a message starting with want. */
static void
expect_err(const char *text, const char *want)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;

	err[0] = '\0';
	cfg = config_load_string(text, "t.conf", err, sizeof(err));
	if (cfg != NULL)
		config_free(cfg);
	ck_assert_msg(cfg == NULL, "accepted, wanted error %s", want);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
	    "got \"%s\", wanted \"%s...\"", err, want);
}

static struct config *
expect_ok(const char *text)
{
	char err[CONFIG_ERR_MAX] = "";
	struct config *cfg =
	    config_load_string(text, "t.conf", err, sizeof(err));

	ck_assert_msg(cfg != NULL, "rejected: %s", err);
	return cfg;
}

static const char full_conf[] =
    "# every option of CONFIG.md, none at its default\n"
    "user = \"mtp\";\n"
    "group = \"mtpgroup\";\n"
    "chroot = \"/var/empty\";\n"
    "workers = 3;\n"
    "pidfile = \"/tmp/x/mtprotod.pid\";\n"
    "state_dir = \"/tmp/x/state\";\n"
    "shutdown_timeout = 61;\n"
    "max_restarts = 11;\n"
    "restart_period = 62;\n"
    "handshake_timeout = 12;\n"
    "idle_timeout = 601;\n"
    "backend = \"middle\";\n"
    "resolv_conf = \"/etc/mtprotod/resolv.conf\";\n"
    "limits = {\n"
    "  max_connections = 5000;\n"
    "  handshake_memory = \"16M\";\n"
    "};\n"
    "log = {\n"
    "  target = \"/var/log/mtprotod.log\";\n"
    "  level = \"debug\";\n"
    "};\n"
    "listeners = (\n"
    "  {\n"
    "    name = \"main\";\n"
    "    address = \"::\";\n"
    "    port = 444;\n"
    "    protocols = [ \"fake_tls\", \"secure\" ];\n"
    "    tls_domain = \"www.example.com\";\n"
    "    fronting = \"front.example.net:8443\";\n"
    "    ad_tag = \"" TAG "\";\n"
    "    backend = \"direct\";\n"
    "    limits = { max_connections = 100; };\n"
    "    users = (\n"
    "      { name = \"alice\"; secret = \"" SECRET_A "\"; },\n"
    "      { name = \"bob\"; secret = \"" SECRET_B "\";\n"
    "        ad_tag = \"ffeeddccbbaa99887766554433221100\"; }\n"
    "    );\n"
    "  },\n"
    "  {\n"
    "    name = \"second\";\n"
    "    address = \"127.0.0.1\";\n"
    "    port = 8443;\n"
    "    protocols = [ \"classic\" ];\n"
    "    users = ( { name = \"carol\"; secret = \"" SECRET_B "\"; } );\n"
    "  }\n"
    ");\n"
    "replay = {\n"
    "  entries = 2048;\n"
    "  window = 3600;\n"
    "};\n"
    "tls = {\n"
    "  time_skew_past = 300;\n"
    "  time_skew_future = 30;\n"
    "  cert_len_min = 1000;\n"
    "  cert_len_max = 2000;\n"
    "};\n"
    "telegram = {\n"
    "  dc = (\n"
    "    { id = 2; address = \"149.154.167.51:443\"; },\n"
    "    { id = 4; address = \"[2001:67c:4e8:f004::a]:443\"; }\n"
    "  );\n"
    "  default_dc = 4;\n"
    "  proxy_secret_url = \"https://example.org/secret\";\n"
    "  proxy_config_url = \"https://example.org/config\";\n"
    "  proxy_config_v6_url = \"http://example.org/config6\";\n"
    "  proxy_secret_file = \"/etc/mtprotod/proxy-secret\";\n"
    "  proxy_config_file = \"/etc/mtprotod/proxy-multi.conf\";\n"
    "  refresh = 3600;\n"
    "  nat_ip = \"203.0.113.7\";\n"
    "  connect_timeout = 5;\n"
    "  ca_file = \"/etc/ssl/private-ca.pem\";\n"
    "  http_timeout = 7;\n"
    "  proxy_config_v6_file = \"/etc/mtprotod/proxy-multi-v6.conf\";\n"
    "};\n"
    "metrics = {\n"
    "  address = \"::1\";\n"
    "  port = 9999;\n"
    "};\n"
    "middle = {\n"
    "  min_links = 0;\n"
    "  clients_per_link = 50;\n"
    "  ping_interval = 20;\n"
    "  ping_timeout = 60;\n"
    "  client_queue_max = 65536;\n"
    "  client_queue_timeout = 5;\n"
    "  link_queue_max = 4194304;\n"
    "  fallback_direct = true;\n"
    "  pool_idle_timeout = 30;\n"
    "};\n";

START_TEST(test_full_file)
{
	char path[PATH_MAX + 16], err[CONFIG_ERR_MAX] = "", buf[64];
	struct config *c;
	const struct config_listener *l;
	uint8_t sa[16], sb[16], tag[16];

	snprintf(path, sizeof(path), "%s/full.conf", tmpdir);
	write_file(path, full_conf);
	c = config_load(path, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->path, path);
	ck_assert_str_eq(c->user, "mtp");
	ck_assert_str_eq(c->group, "mtpgroup");
	ck_assert_str_eq(c->chroot, "/var/empty");
	ck_assert_int_eq(c->workers, 3);
	ck_assert_int_eq(c->workers_auto, 0);
	ck_assert_str_eq(c->pidfile, "/tmp/x/mtprotod.pid");
	ck_assert_str_eq(c->state_dir, "/tmp/x/state");
	ck_assert_int_eq(c->shutdown_timeout, 61);
	ck_assert_int_eq(c->max_restarts, 11);
	ck_assert_int_eq(c->restart_period, 62);
	ck_assert_int_eq(c->handshake_timeout, 12);
	ck_assert_int_eq(c->idle_timeout, 601);
	ck_assert_int_eq(c->backend, BACKEND_MIDDLE);
	ck_assert_int_eq(c->log_target, LOG_TARGET_FILE);
	ck_assert_str_eq(c->log_file, "/var/log/mtprotod.log");
	ck_assert_int_eq(c->log_level, LOG_DEBUG);

	ck_assert_uint_eq(c->nlisteners, 2);
	hex_decode(SECRET_A, sa, 16);
	hex_decode(SECRET_B, sb, 16);
	l = &c->listeners[0];
	ck_assert_str_eq(l->name, "main");
	ck_assert_str_eq(l->address, "::");
	ck_assert_uint_eq(l->port, 444);
	ck_assert_str_eq(
	    addr_str((const struct sockaddr *)&l->addr, buf, sizeof(buf)),
	    "[::]:444");
	ck_assert_uint_eq(l->protocols, PROTO_FAKE_TLS | PROTO_SECURE);
	ck_assert_str_eq(l->tls_domain, "www.example.com");
	ck_assert_str_eq(l->fronting_host, "front.example.net");
	ck_assert_uint_eq(l->fronting_port, 8443);
	ck_assert_int_eq(l->has_ad_tag, 1);
	hex_decode(TAG, tag, 16);
	ck_assert_mem_eq(l->ad_tag, tag, 16);
	ck_assert_int_eq(l->backend, BACKEND_DIRECT);
	ck_assert_int_eq(config_listener_backend(c, l), BACKEND_DIRECT);
	ck_assert_int_eq(l->max_connections, 100);
	ck_assert_int_eq(l->shm_index, -1);
	ck_assert_uint_eq(l->nusers, 2);
	ck_assert_str_eq(l->users[0].name, "alice");
	ck_assert_mem_eq(l->users[0].secret, sa, 16);
	ck_assert_int_eq(l->users[0].has_ad_tag, 0);
	ck_assert_str_eq(l->users[1].name, "bob");
	ck_assert_mem_eq(l->users[1].secret, sb, 16);
	ck_assert_int_eq(l->users[1].has_ad_tag, 1);
	hex_decode("ffeeddccbbaa99887766554433221100", tag, 16);
	ck_assert_mem_eq(l->users[1].ad_tag, tag, 16);

	l = &c->listeners[1];
	ck_assert_str_eq(l->name, "second");
	ck_assert_str_eq(
	    addr_str((const struct sockaddr *)&l->addr, buf, sizeof(buf)),
	    "127.0.0.1:8443");
	ck_assert_uint_eq(l->protocols, PROTO_CLASSIC);
	ck_assert_str_eq(l->tls_domain, "");
	ck_assert_str_eq(l->fronting_host, "");
	ck_assert_int_eq(l->backend, BACKEND_INHERIT);
	ck_assert_int_eq(config_listener_backend(c, l), BACKEND_MIDDLE);
	ck_assert_int_eq(l->max_connections, 0);
	ck_assert_uint_eq(l->nusers, 1);
	ck_assert_str_eq(l->users[0].name, "carol");

	ck_assert_str_eq(c->resolv_conf, "/etc/mtprotod/resolv.conf");
	ck_assert_int_eq(c->max_connections, 5000);
	ck_assert_uint_eq(c->handshake_memory, 16 << 20);

	ck_assert_uint_eq(c->replay_entries, 2048);
	ck_assert_int_eq(c->replay_window, 3600);
	ck_assert_int_eq(c->tls_time_skew_past, 300);
	ck_assert_int_eq(c->tls_time_skew_future, 30);
	ck_assert_int_eq(c->tls_cert_len_min, 1000);
	ck_assert_int_eq(c->tls_cert_len_max, 2000);

	ck_assert_uint_eq(c->ndcs, 2);
	ck_assert_int_eq(c->dcs[0].id, 2);
	ck_assert_str_eq(c->dcs[0].address, "149.154.167.51:443");
	ck_assert_str_eq(addr_str((const struct sockaddr *)&c->dcs[0].addr, buf,
	                     sizeof(buf)),
	    "149.154.167.51:443");
	ck_assert_int_eq(c->dcs[1].id, 4);
	ck_assert_str_eq(addr_str((const struct sockaddr *)&c->dcs[1].addr, buf,
	                     sizeof(buf)),
	    "[2001:67c:4e8:f004::a]:443");
	ck_assert_int_eq(c->default_dc, 4);
	ck_assert_str_eq(c->proxy_secret_url, "https://example.org/secret");
	ck_assert_str_eq(c->proxy_config_url, "https://example.org/config");
	ck_assert_str_eq(c->proxy_config_v6_url, "http://example.org/config6");
	ck_assert_str_eq(c->proxy_secret_file, "/etc/mtprotod/proxy-secret");
	ck_assert_str_eq(
	    c->proxy_config_file, "/etc/mtprotod/proxy-multi.conf");
	ck_assert_int_eq(c->refresh, 3600);
	ck_assert_str_eq(c->nat_ip, "203.0.113.7");
	ck_assert_int_eq(c->connect_timeout, 5);
	ck_assert_str_eq(c->ca_file, "/etc/ssl/private-ca.pem");
	ck_assert_int_eq(c->http_timeout, 7);
	ck_assert_str_eq(
	    c->proxy_config_v6_file, "/etc/mtprotod/proxy-multi-v6.conf");
	ck_assert_str_eq(c->metrics_address, "::1");
	ck_assert_uint_eq(c->metrics_port, 9999);
	ck_assert_int_eq(c->middle_min_links, 0);
	ck_assert_int_eq(c->middle_clients_per_link, 50);
	ck_assert_int_eq(c->middle_ping_interval, 20);
	ck_assert_int_eq(c->middle_ping_timeout, 60);
	ck_assert_uint_eq(c->middle_client_queue_max, 65536);
	ck_assert_int_eq(c->middle_client_queue_timeout, 5);
	ck_assert_uint_eq(c->middle_link_queue_max, 4194304);
	ck_assert_int_eq(c->middle_fallback_direct, 1);
	ck_assert_int_eq(c->middle_pool_idle_timeout, 30);
	config_free(c);
}
END_TEST

/* The installed example must load as it is. */
START_TEST(test_example_file)
{
	char err[CONFIG_ERR_MAX] = "", path[PATH_MAX];
	struct config *c;
	const char *v = VECTORS_JSON, *end = strstr(v, "tests/vectors.json");

	/* The source tree is where the vectors are. */
	ck_assert_ptr_nonnull(end);
	snprintf(
	    path, sizeof(path), "%.*setc/mtprotod.conf", (int)(end - v), v);
	/* As installed, all commented out, plus a private state_dir: it
	 * runs the built-in fake-TLS listener. */
	FILE *in = fopen(path, "r");
	char copy[PATH_MAX + 16], line[1024];
	ck_assert_ptr_nonnull(in);
	snprintf(copy, sizeof(copy), "%s/example.conf", tmpdir);
	FILE *out = fopen(copy, "w");
	ck_assert_ptr_nonnull(out);
	while (fgets(line, sizeof(line), in))
		fputs(line, out);
	fprintf(out, "state_dir = \"%s/state\";\n", tmpdir);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
	c = config_load(copy, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->nlisteners, 1);
	ck_assert_uint_eq(c->listeners[0].nusers, 1);
	ck_assert_uint_eq(c->listeners[0].protocols, PROTO_FAKE_TLS);
	config_free(c);
}
END_TEST

/* A file without listeners gets the built-in one, secret kept. */
START_TEST(test_no_listeners_builtin)
{
	char text[PATH_MAX + 64], path[PATH_MAX + 16];
	struct config *c, *c2;
	struct stat st;

	snprintf(text, sizeof(text), "state_dir = \"%s/st\";\nworkers = 1;\n",
	    tmpdir);
	c = expect_ok(text);
	ck_assert_uint_eq(c->nlisteners, 1);
	ck_assert_uint_eq(c->listeners[0].protocols, PROTO_FAKE_TLS);
	ck_assert_int_eq(c->workers, 1);
	snprintf(path, sizeof(path), "%s/st/secret", tmpdir);
	ck_assert_int_eq(stat(path, &st), 0);
	c2 = expect_ok(text);
	ck_assert_mem_eq(c->listeners[0].users[0].secret,
	    c2->listeners[0].users[0].secret, 16);
	config_free(c);
	config_free(c2);
}
END_TEST

START_TEST(test_defaults)
{
	struct config *c = expect_ok(GOOD_LISTENERS);
	const struct config_listener *l = &c->listeners[0];
	int root = geteuid() == 0;
	int n = ncpus();

	ck_assert_str_eq(c->user, "mtprotod");
	ck_assert_str_eq(c->group, "mtprotod");
	ck_assert_int_eq(c->user_given, 0);
	ck_assert_int_eq(c->group_given, 0);
	ck_assert_str_eq(c->chroot, "");
	ck_assert_int_eq(c->workers_auto, 1);
	ck_assert_int_eq(
	    c->workers, n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : n);
	ck_assert_str_eq(
	    c->pidfile, root ? "/run/mtprotod.pid" : "./mtprotod.pid");
	ck_assert_str_eq(
	    c->state_dir, root ? "/var/lib/mtprotod" : "./mtprotod-state");
	ck_assert_int_eq(c->shutdown_timeout, 60);
	ck_assert_int_eq(c->max_restarts, 10);
	ck_assert_int_eq(c->restart_period, 60);
	ck_assert_int_eq(c->handshake_timeout, 10);
	ck_assert_int_eq(c->idle_timeout, 600);
	ck_assert_int_eq(c->backend, BACKEND_AUTO);
	ck_assert_int_eq(c->log_target, LOG_TARGET_STDERR);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert_uint_eq(c->replay_entries, 1000000);
	ck_assert_int_eq(c->replay_window, 7200);
	ck_assert_int_eq(c->tls_time_skew_past, 600);
	ck_assert_int_eq(c->tls_time_skew_future, 120);
	ck_assert_int_eq(c->tls_cert_len_min, 2500);
	ck_assert_int_eq(c->tls_cert_len_max, 4700);
	ck_assert_uint_eq(c->ndcs, 0);
	ck_assert_int_eq(c->default_dc, 2);
	ck_assert_str_eq(
	    c->proxy_secret_url, "https://core.telegram.org/getProxySecret");
	ck_assert_str_eq(
	    c->proxy_config_url, "https://core.telegram.org/getProxyConfig");
	ck_assert_str_eq(c->proxy_config_v6_url,
	    "https://core.telegram.org/getProxyConfigV6");
	ck_assert_str_eq(c->proxy_secret_file, "");
	ck_assert_str_eq(c->proxy_config_file, "");
	ck_assert_int_eq(c->refresh, 86400);
	ck_assert_str_eq(c->nat_ip, "");
	ck_assert_int_eq(c->connect_timeout, 10);
	ck_assert_str_eq(c->ca_file, "");
	ck_assert_int_eq(c->http_timeout, 10);
	ck_assert_str_eq(c->proxy_config_v6_file, "");
	ck_assert_str_eq(c->metrics_address, "127.0.0.1");
	ck_assert_uint_eq(c->metrics_port, 9173);
	ck_assert_int_eq(c->middle_min_links, 2);
	ck_assert_int_eq(c->middle_clients_per_link, 300);
	ck_assert_int_eq(c->middle_ping_interval, 30);
	ck_assert_int_eq(c->middle_ping_timeout, 90);
	ck_assert_uint_eq(c->middle_client_queue_max, 1048576);
	ck_assert_int_eq(c->middle_client_queue_timeout, 10);
	ck_assert_uint_eq(c->middle_link_queue_max, 8388608);
	ck_assert_int_eq(c->middle_fallback_direct, 0);
	ck_assert_int_eq(c->middle_pool_idle_timeout, 120);
	ck_assert_ptr_null(c->resolv_conf);
	ck_assert_int_eq(c->max_connections, 0);
	ck_assert_uint_eq(c->handshake_memory, 64 << 20);

	ck_assert_str_eq(l->address, "0.0.0.0");
	ck_assert_int_eq(l->max_connections, 0);
	ck_assert_int_eq(l->shm_index, -1);
	ck_assert_uint_eq(
	    l->protocols, PROTO_CLASSIC | PROTO_SECURE | PROTO_FAKE_TLS);
	ck_assert_str_eq(l->fronting_host, "www.example.com");
	ck_assert_uint_eq(l->fronting_port, 443);
	ck_assert_int_eq(l->has_ad_tag, 0);
	ck_assert_int_eq(l->backend, BACKEND_INHERIT);
	ck_assert_int_eq(config_listener_backend(c, l), BACKEND_DIRECT);
	config_free(c);

	/* Unnamed listeners and users get names from their position. */
	c = expect_ok("listeners = ( { port = 1; protocols = [\"secure\"];\n"
	              "users = ( { secret = \"" SECRET_A "\"; },\n"
	              "{ secret = \"" SECRET_B "\"; } ); } );\n");
	ck_assert_str_eq(c->listeners[0].name, "listener0");
	ck_assert_str_eq(c->listeners[0].users[0].name, "user0");
	ck_assert_str_eq(c->listeners[0].users[1].name, "user1");
	config_free(c);
}
END_TEST

START_TEST(test_workers_and_log)
{
	struct config *c;

	c = expect_ok("workers = \"auto\";\nlog = { target = \"syslog\"; "
	              "level = \"warning\"; };\n" GOOD_LISTENERS);
	ck_assert_int_eq(c->workers_auto, 1);
	ck_assert_int_ge(c->workers, 1);
	ck_assert_int_eq(c->log_target, LOG_TARGET_SYSLOG);
	ck_assert_int_eq(c->log_level, LOG_WARNING);
	config_free(c);
	c = expect_ok("workers = 256;\nlog = { target = \"stderr\"; "
	              "level = \"error\"; };\n" GOOD_LISTENERS);
	ck_assert_int_eq(c->workers, 256);
	ck_assert_int_eq(c->log_target, LOG_TARGET_STDERR);
	ck_assert_int_eq(c->log_level, LOG_ERR);
	config_free(c);
	c = expect_ok("log = { level = \"notice\"; };\n" GOOD_LISTENERS);
	ck_assert_int_eq(c->log_level, LOG_NOTICE);
	config_free(c);
}
END_TEST

START_TEST(test_upper_case_secret)
{
	struct config *c;
	uint8_t want[16];

	c = expect_ok(
	    "listeners = ( { port = 1; protocols = [\"secure\"];\n"
	    "users = ( { secret = \"5224C74533123F5D68C832D0DFEC65AE\"; }"
	    " ); } );\n");
	hex_decode(SECRET_B, want, 16);
	ck_assert_mem_eq(c->listeners[0].users[0].secret, want, 16);
	config_free(c);
}
END_TEST

START_TEST(test_backend_resolution)
{
	struct config *c;

	/* auto: middle as soon as the listener or one user has a tag. */
	c = expect_ok(
	    "listeners = (\n"
	    "{ name = \"plain\"; port = 1; protocols = [\"secure\"];\n"
	    "  users = ( { secret = \"" SECRET_A "\"; } ); },\n"
	    "{ name = \"ltag\"; port = 2; protocols = [\"secure\"];\n"
	    "  ad_tag = \"" TAG "\";\n"
	    "  users = ( { secret = \"" SECRET_A "\"; } ); },\n"
	    "{ name = \"utag\"; port = 3; protocols = [\"secure\"];\n"
	    "  users = ( { secret = \"" SECRET_A "\"; },\n"
	    "    { secret = \"" SECRET_B "\"; ad_tag = \"" TAG "\"; } ); },\n"
	    "{ name = \"emptytag\"; port = 4; protocols = [\"secure\"];\n"
	    "  ad_tag = \"\";\n"
	    "  users = ( { secret = \"" SECRET_A "\"; } ); },\n"
	    "{ name = \"forced\"; port = 5; protocols = [\"secure\"];\n"
	    "  ad_tag = \"" TAG "\"; backend = \"direct\";\n"
	    "  users = ( { secret = \"" SECRET_A "\"; } ); }\n"
	    ");\n");
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[0]), BACKEND_DIRECT);
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[1]), BACKEND_MIDDLE);
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[2]), BACKEND_MIDDLE);
	ck_assert_int_eq(c->listeners[3].has_ad_tag, 0);
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[3]), BACKEND_DIRECT);
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[4]), BACKEND_DIRECT);
	/* The global one is what INHERIT means. */
	c->backend = BACKEND_DIRECT;
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[1]), BACKEND_DIRECT);
	c->backend = BACKEND_MIDDLE;
	ck_assert_int_eq(
	    config_listener_backend(c, &c->listeners[0]), BACKEND_MIDDLE);
	config_free(c);
}
END_TEST

START_TEST(test_parse_secret)
{
	uint8_t s[16], want[16];

	hex_decode(SECRET_B, want, 16);
	ck_assert_int_eq(config_parse_secret(SECRET_B, s), 0);
	ck_assert_mem_eq(s, want, 16);
	ck_assert_int_eq(
	    config_parse_secret("5224c74533123F5D68C832D0DFEC65AE", s), 0);
	ck_assert_mem_eq(s, want, 16);
	ck_assert_int_eq(
	    config_parse_secret("5224c74533123f5d68c832d0dfec65a", s), -1);
	ck_assert_int_eq(
	    config_parse_secret("5224c74533123f5d68c832d0dfec65ae0", s), -1);
	ck_assert_int_eq(
	    config_parse_secret("5224c74533123f5d68c832d0dfec65ag", s), -1);
	ck_assert_int_eq(
	    config_parse_secret("dd5224c74533123f5d68c832d0dfec65", s), 0);
	ck_assert_int_eq(config_parse_secret("", s), -1);
	ck_assert_int_eq(config_parse_secret(NULL, s), -1);
	ck_assert_str_eq(config_proto_name(PROTO_CLASSIC), "classic");
	ck_assert_str_eq(config_proto_name(PROTO_SECURE), "secure");
	ck_assert_str_eq(config_proto_name(PROTO_FAKE_TLS), "fake_tls");
}
END_TEST

static void
read_text(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	n = read(fd, buf, cap - 1);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	close(fd);
}

START_TEST(test_builtin_default)
{
	char dir[PATH_MAX + 16], file[PATH_MAX + 32], err[CONFIG_ERR_MAX];
	char text[128], hex[33];
	struct config *a, *b;
	const struct config_listener *l;
	struct stat st;

	/* A state dir two levels down that does not exist yet. */
	snprintf(dir, sizeof(dir), "%s/state/sub", tmpdir);
	snprintf(file, sizeof(file), "%s/" CONFIG_SECRET_FILE, dir);
	a = config_default_in(dir, err, sizeof(err));
	ck_assert_msg(a != NULL, "%s", err);
	ck_assert_str_eq(a->path, "");
	ck_assert_str_eq(a->state_dir, dir);
	ck_assert_uint_eq(a->nlisteners, 1);
	l = &a->listeners[0];
	ck_assert_str_eq(l->name, "default");
	ck_assert_str_eq(l->address, "0.0.0.0");
	ck_assert_uint_eq(l->port, geteuid() == 0 ? 443 : 8443);
	ck_assert_uint_eq(l->protocols, PROTO_FAKE_TLS);
	ck_assert_str_eq(l->tls_domain, "www.google.com");
	ck_assert_str_eq(l->fronting_host, "www.google.com");
	ck_assert_uint_eq(l->fronting_port, 443);
	ck_assert_uint_eq(l->nusers, 1);
	ck_assert_str_eq(l->users[0].name, "default");
	ck_assert_int_eq(a->workers_auto, 1);
	ck_assert_int_eq(config_listener_backend(a, l), BACKEND_DIRECT);

	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	read_text(file, text, sizeof(text));
	hex_encode(l->users[0].secret, 16, hex);
	ck_assert_uint_eq(strlen(text), 33);
	ck_assert_int_eq(strncmp(text, hex, 32), 0);
	ck_assert_int_eq(text[32], '\n');

	/* The second start hands out the same links. */
	b = config_default_in(dir, err, sizeof(err));
	ck_assert_msg(b != NULL, "%s", err);
	ck_assert_mem_eq(
	    b->listeners[0].users[0].secret, l->users[0].secret, 16);
	config_free(b);
	config_free(a);

	/* An owner-written upper-case secret without newline is used. */
	write_file(file, "5224C74533123F5D68C832D0DFEC65AE");
	a = config_default_in(dir, err, sizeof(err));
	ck_assert_msg(a != NULL, "%s", err);
	hex_encode(a->listeners[0].users[0].secret, 16, hex);
	ck_assert_str_eq(hex, SECRET_B);
	config_free(a);
}
END_TEST

START_TEST(test_builtin_default_errors)
{
	char dir[PATH_MAX + 16], file[PATH_MAX + 32], err[CONFIG_ERR_MAX];
	struct config *c;

	snprintf(dir, sizeof(dir), "%s/st", tmpdir);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(file, sizeof(file), "%s/" CONFIG_SECRET_FILE, dir);
	write_file(file, "not a secret\n");
	c = config_default_in(dir, err, sizeof(err));
	ck_assert_ptr_null(c);
	ck_assert_msg(strncmp(err, file, strlen(file)) == 0, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "32 hex digits"));

	/* A state dir below a regular file cannot be made. */
	snprintf(dir, sizeof(dir), "%s/st/" CONFIG_SECRET_FILE "/x", tmpdir);
	c = config_default_in(dir, err, sizeof(err));
	ck_assert_ptr_null(c);
	ck_assert_msg(strncmp(err, dir, strlen(dir)) == 0, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "cannot create state directory"));
}
END_TEST

START_TEST(test_err_file_and_syntax)
{
	char path[PATH_MAX + 16], want[PATH_MAX + 64], err[CONFIG_ERR_MAX];
	struct config *c;

	/* Errors from a file name the file as given. */
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	write_file(path, "# comment\n" GOOD_LISTENERS "\nworkerz = 2;\n");
	c = config_load(path, err, sizeof(err));
	ck_assert_ptr_null(c);
	snprintf(want, sizeof(want), "%s:9: workerz: unknown option", path);
	ck_assert_str_eq(err, want);

	write_file(
	    path, "user = \"x\";\n\nlisteners = (\n  { port = ; }\n);\n");
	c = config_load(path, err, sizeof(err));
	ck_assert_ptr_null(c);
	snprintf(want, sizeof(want), "%s:4: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);

	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	c = config_load(path, err, sizeof(err));
	ck_assert_ptr_null(c);
	snprintf(want, sizeof(want), "%s: cannot open: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);

	expect_err("user = \"x\";\ngroup = ;\n", "t.conf:2: syntax error");
	expect_err("\n\nlisteners = (\n{ port = 1; ] }\n);\n",
	    "t.conf:4: syntax error");
	expect_err("a = 1;\na = 2;\n", "t.conf:2: ");
}
END_TEST

START_TEST(test_err_unknown)
{
	expect_err("user = \"x\";\nbogus = 1;\n" GOOD_LISTENERS,
	    "t.conf:2: bogus: unknown option");
	expect_err(
	    "listeners = (\n"
	    "  { name = \"a\"; port = 443; tls_domain = \"www.example.com\";\n"
	    "    prot = 5;\n"
	    "    users = ( { secret = \"" SECRET_A "\"; } ); }\n);\n",
	    "t.conf:3: listeners.[0].prot: unknown option");
	expect_err(
	    "listeners = (\n"
	    "  { name = \"a\"; port = 443; tls_domain = \"www.example.com\";\n"
	    "    users = (\n"
	    "      { secret = \"" SECRET_A "\"; },\n"
	    "      { secret = \"" SECRET_B "\";\n"
	    "        password = \"x\"; }\n"
	    "    ); }\n);\n",
	    "t.conf:6: listeners.[0].users.[1].password: unknown option");
	expect_err(GOOD_LISTENERS "log = {\n  lvl = \"info\";\n};\n",
	    "t.conf:8: log.lvl: unknown option");
	expect_err(GOOD_LISTENERS
	    "telegram = {\n  dc = (\n"
	    "    { id = 1; addr = \"1.2.3.4:443\"; }\n  );\n};\n",
	    "t.conf:9: telegram.dc.[0].addr: unknown option");
	expect_err(GOOD_LISTENERS "tls = { skew = 1; };\n",
	    "t.conf:7: tls.skew: unknown option");
	expect_err(GOOD_LISTENERS "metrics = { addr = \"::1\"; };\n",
	    "t.conf:7: metrics.addr: unknown option");
	expect_err(GOOD_LISTENERS "replay = { size = 4096; };\n",
	    "t.conf:7: replay.size: unknown option");
}
END_TEST

START_TEST(test_err_secret)
{
	/* 31 digits */
	expect_err("listeners = (\n"
	           "  { port = 443; protocols = [\"secure\"];\n"
	           "    users = (\n"
	           "      { name = \"ok\"; secret = \"" SECRET_A "\"; },\n"
	           "      { name = \"short\";\n"
	           "        secret = \"5224c74533123f5d68c832d0dfec65a\"; }\n"
	           "    ); }\n);\n",
	    "t.conf:6: listeners.[0].users.[1].secret: must be 32 hex digits");
	/* not hex */
	expect_err("listeners = (\n"
	           "  { port = 443; protocols = [\"secure\"];\n"
	           "    users = (\n"
	           "      { secret = \"5224c74533123f5d68c832d0dfec65zz\"; }\n"
	           "    ); }\n);\n",
	    "t.conf:4: listeners.[0].users.[0].secret: must be 32 hex digits");
	/* an ee link secret is not a config secret */
	expect_err("listeners = ( { port = 443; protocols = [\"secure\"];\n"
	           "users = ( { secret = \"dd" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].users.[0].secret: must be 32 hex digits");
	/* not a string */
	expect_err("listeners = ( { port = 443; protocols = [\"secure\"];\n"
	           "users = ( { secret = 12; } ); } );\n",
	    "t.conf:2: listeners.[0].users.[0].secret: must be a string");
	expect_err("listeners = ( { port = 443; protocols = [\"secure\"];\n"
	           "users = ( { name = \"x\"; } ); } );\n",
	    "t.conf:2: listeners.[0].users.[0].secret: missing");
	expect_err("listeners = ( { port = 443; protocols = [\"secure\"];\n"
	           "users = ( { secret = \"" SECRET_A "\"; },\n"
	           "{ secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:3: listeners.[0].users.[1].secret: same secret as "
	    "users.[0]");
	expect_err("listeners = ( { port = 443; protocols = [\"secure\"];\n"
	           "users = ( { secret = \"" SECRET_A "\";\n"
	           "ad_tag = \"1234\"; } ); } );\n",
	    "t.conf:3: listeners.[0].users.[0].ad_tag: must be 32 hex digits");
}
END_TEST

static void
two_listeners(char *buf, size_t cap, const char *second)
{
	snprintf(buf, cap,
	    "listeners = (\n"
	    "  { name = \"a\"; port = 443; protocols = [\"secure\"];\n"
	    "    users = ( { secret = \"" SECRET_A "\"; } ); },\n"
	    "  {\n%s"
	    "    users = ( { secret = \"" SECRET_A "\"; } ); }\n"
	    ");\n",
	    second);
}

static void
expect_listener_err(const char *second, const char *want)
{
	char buf[2048];

	two_listeners(buf, sizeof(buf), second);
	expect_err(buf, want);
}

START_TEST(test_err_listener_values)
{
	char buf[2048];
	struct config *c;

	/* The template itself is fine. */
	two_listeners(buf, sizeof(buf),
	    "    name = \"b\"; port = 444; protocols = [\"secure\"];\n");
	c = expect_ok(buf);
	ck_assert_uint_eq(c->nlisteners, 2);
	config_free(c);

	expect_listener_err("    name = \"a\"; port = 444;\n"
	                    "    protocols = [\"secure\"];\n",
	    "t.conf:5: listeners.[1].name: duplicate listener name \"a\"");
	expect_listener_err("    name = \"b\";\n    port = 443;\n"
	                    "    protocols = [\"secure\"];\n",
	    "t.conf:6: listeners.[1].port: address 0.0.0.0 port 443 is "
	    "already used by listeners.[0]");
	expect_listener_err("    name = \"b\";\n"
	                    "    port = 0; protocols = [\"secure\"];\n",
	    "t.conf:6: listeners.[1].port: must be between 1 and 65535");
	expect_listener_err("    name = \"b\";\n"
	                    "    port = 65536; protocols = [\"secure\"];\n",
	    "t.conf:6: listeners.[1].port: must be between 1 and 65535");
	expect_listener_err("    name = \"b\";\n"
	                    "    port = \"444\"; protocols = [\"secure\"];\n",
	    "t.conf:6: listeners.[1].port: must be an integer");
	expect_listener_err("    name = \"b\"; protocols = [\"secure\"];\n",
	    "t.conf:4: listeners.[1].port: missing");
	expect_listener_err(
	    "    name = \"b\"; port = 444;\n"
	    "    address = \"1.2.3\"; protocols = [\"secure\"];\n",
	    "t.conf:6: listeners.[1].address: must be an IPv4 or IPv6 "
	    "address literal");
	expect_listener_err(
	    "    name = \"b\"; port = 444;\n"
	    "    address = \"localhost\"; protocols = [\"secure\"];\n",
	    "t.conf:6: listeners.[1].address: must be an IPv4 or IPv6 "
	    "address literal");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    protocols = [\"secure\",\n      \"tls\"];\n",
	    "t.conf:7: listeners.[1].protocols.[1]: unknown protocol \"tls\"");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    protocols = [];\n",
	    "t.conf:6: listeners.[1].protocols: must name at least one");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    protocols = \"secure\";\n",
	    "t.conf:6: listeners.[1].protocols: must be an array");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    protocols = [\"secure\", \"secure\"];\n",
	    "t.conf:6: listeners.[1].protocols.[1]: \"secure\" listed twice");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    protocols = [\"fake_tls\"];\n",
	    "t.conf:6: listeners.[1].tls_domain: missing: protocol fake_tls "
	    "needs it");
	/* protocols defaults to all three, fake_tls among them */
	expect_listener_err("    name = \"b\"; port = 444;\n",
	    "t.conf:4: listeners.[1].tls_domain: missing");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    tls_domain = \"a b\";\n",
	    "t.conf:6: listeners.[1].tls_domain: must be a host name");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    tls_domain = \"a.b\";\n",
	    "t.conf:6: listeners.[1].tls_domain: must be 4 to 182 characters");
	expect_listener_err(
	    "    name = \"b\"; port = 444;\n"
	    "    tls_domain = \"www.example.com\"; fronting = \"x:99999\";\n",
	    "t.conf:6: listeners.[1].fronting: must be \"host:port\"");
	expect_listener_err("    name = \"b\"; port = 444;\n"
	                    "    protocols = [\"secure\"]; ad_tag = \"xyz\";\n",
	    "t.conf:6: listeners.[1].ad_tag: must be 32 hex digits or \"\"");
	expect_listener_err(
	    "    name = \"b\"; port = 444;\n"
	    "    protocols = [\"secure\"]; backend = \"fast\";\n",
	    "t.conf:6: listeners.[1].backend: must be \"auto\", \"middle\" "
	    "or \"direct\"");
	expect_listener_err("    name = \"b c\"; port = 444;\n",
	    "t.conf:5: listeners.[1].name: must be letters, digits");

	/* The same port on another address is fine; fronting parsed. */
	two_listeners(buf, sizeof(buf),
	    "    name = \"b\"; port = 443; address = \"::\";\n"
	    "    tls_domain = \"www.example.com\";\n"
	    "    fronting = \"[2001:db8::1]:8443\";\n");
	c = expect_ok(buf);
	ck_assert_str_eq(c->listeners[1].fronting_host, "2001:db8::1");
	ck_assert_uint_eq(c->listeners[1].fronting_port, 8443);
	config_free(c);
	two_listeners(buf, sizeof(buf),
	    "    name = \"b\"; port = 444; tls_domain = \"www.example.com\";\n"
	    "    fronting = \"127.0.0.1\";\n");
	c = expect_ok(buf);
	ck_assert_str_eq(c->listeners[1].fronting_host, "127.0.0.1");
	ck_assert_uint_eq(c->listeners[1].fronting_port, 443);
	config_free(c);
}
END_TEST

START_TEST(test_err_structure)
{
	expect_err("listeners = ();\n",
	    "t.conf:1: listeners: must contain at least one listener");
	expect_err("listeners = { port = 1; };\n",
	    "t.conf:1: listeners: must be a list");
	expect_err("listeners = (\n  { port = 443; protocols = [\"secure\"]; }"
	           "\n);\n",
	    "t.conf:2: listeners.[0].users: missing");
	/* no users yet (an API-managed list): allowed, serves nobody */
	struct config *none = expect_ok(
	    "listeners = (\n  { port = 443; protocols = [\"secure\"];\n"
	    "    users = (); }\n);\n");
	ck_assert_uint_eq(none->listeners[0].nusers, 0);
	config_free(none);
	expect_err("listeners = (\n  { port = 443; protocols = [\"secure\"];\n"
	           "    users = ( \"x\" ); }\n);\n",
	    "t.conf:3: listeners.[0].users.[0]: must be a group");
	expect_err("listeners = (\n  { port = 443; protocols = [\"secure\"];\n"
	           "    users = (\n"
	           "      { name = \"u\"; secret = \"" SECRET_A "\"; },\n"
	           "      { name = \"u\"; secret = \"" SECRET_B "\"; }\n"
	           "    ); }\n);\n",
	    "t.conf:5: listeners.[0].users.[1].name: duplicate user name "
	    "\"u\"");
	expect_err("log = \"syslog\";\n" GOOD_LISTENERS,
	    "t.conf:1: log: must be a group");
}
END_TEST

START_TEST(test_err_globals)
{
	expect_err("log = {\n  level = \"verbose\";\n};\n" GOOD_LISTENERS,
	    "t.conf:2: log.level: must be \"debug\", \"info\", \"notice\", "
	    "\"warning\" or \"error\"");
	expect_err("log = {\n  level = \"warn\";\n};\n" GOOD_LISTENERS,
	    "t.conf:2: log.level: must be");
	expect_err("log = {\n  target = \"mtprotod.log\";\n};\n" GOOD_LISTENERS,
	    "t.conf:2: log.target: must be \"stderr\", "
	    "\"syslog\" or an absolute file path");
	expect_err("workers = 0;\n" GOOD_LISTENERS,
	    "t.conf:1: workers: must be \"auto\" or an integer from 1 to 256");
	expect_err("workers = 257;\n" GOOD_LISTENERS,
	    "t.conf:1: workers: must be \"auto\"");
	expect_err("workers = \"all\";\n" GOOD_LISTENERS,
	    "t.conf:1: workers: must be \"auto\"");
	expect_err("\nhandshake_timeout = 0;\n" GOOD_LISTENERS,
	    "t.conf:2: handshake_timeout: must be at least 1");
	expect_err("idle_timeout = -5;\n" GOOD_LISTENERS,
	    "t.conf:1: idle_timeout: must be at least 1");
	expect_err("shutdown_timeout = 1.5;\n" GOOD_LISTENERS,
	    "t.conf:1: shutdown_timeout: must be an integer");
	expect_err("restart_period = 0;\n" GOOD_LISTENERS,
	    "t.conf:1: restart_period: must be at least 1");
	expect_err("max_restarts = -1;\n" GOOD_LISTENERS,
	    "t.conf:1: max_restarts: must be at least 0");
	expect_err("backend = \"relay\";\n" GOOD_LISTENERS,
	    "t.conf:1: backend: must be \"auto\", \"middle\" or \"direct\"");
	expect_err("user = \"\";\n" GOOD_LISTENERS,
	    "t.conf:1: user: must not be empty");
	expect_err(
	    "group = 5;\n" GOOD_LISTENERS, "t.conf:1: group: must be a string");
	expect_err("chroot = \"jail\";\n" GOOD_LISTENERS,
	    "t.conf:1: chroot: must be an absolute path");
	expect_err("pidfile = \"\";\n" GOOD_LISTENERS,
	    "t.conf:1: pidfile: must not be empty");
	expect_err(GOOD_LISTENERS "replay = {\n  entries = 1023;\n};\n",
	    "t.conf:8: replay.entries: must be at least 1024");
	expect_err(GOOD_LISTENERS "replay = { window = 0; };\n",
	    "t.conf:7: replay.window: must be at least 1");
	expect_err(GOOD_LISTENERS "tls = {\n cert_len_min = 3000;\n"
	                          " cert_len_max = 2000;\n};\n",
	    "t.conf:9: tls.cert_len_max: cert_len_min (3000) is larger");
	expect_err(GOOD_LISTENERS "tls = { cert_len_max = 20000; };\n",
	    "t.conf:7: tls.cert_len_max: must be between 1 and 16384");
	expect_err(GOOD_LISTENERS "tls = { time_skew_past = -1; };\n",
	    "t.conf:7: tls.time_skew_past: must be at least 0");
	expect_err(GOOD_LISTENERS
	    "telegram = {\n  dc = (\n"
	    "    { id = 2; address = \"149.154.167.51\"; }\n  );\n};\n",
	    "t.conf:9: telegram.dc.[0].address: must be \"ip:port\"");
	expect_err(GOOD_LISTENERS
	    "telegram = {\n  dc = (\n"
	    "    { id = 0; address = \"149.154.167.51:443\"; }\n  );\n};\n",
	    "t.conf:9: telegram.dc.[0].id: must be between 1 and 32767");
	expect_err(GOOD_LISTENERS
	    "telegram = {\n  dc = (\n"
	    "    { address = \"149.154.167.51:443\"; }\n  );\n};\n",
	    "t.conf:9: telegram.dc.[0].id: missing");
	expect_err(GOOD_LISTENERS "telegram = { default_dc = 0; };\n",
	    "t.conf:7: telegram.default_dc: must be between 1 and 32767");
	expect_err(GOOD_LISTENERS "telegram = { refresh = 0; };\n",
	    "t.conf:7: telegram.refresh: must be at least 1");
	expect_err(GOOD_LISTENERS "telegram = { connect_timeout = 0; };\n",
	    "t.conf:7: telegram.connect_timeout: must be at least 1");
	expect_err(GOOD_LISTENERS "telegram = { nat_ip = \"my.host\"; };\n",
	    "t.conf:7: telegram.nat_ip: must be an IPv4 or IPv6 address");
	expect_err(GOOD_LISTENERS
	    "telegram = { proxy_config_url = \"ftp://x\"; };\n",
	    "t.conf:7: telegram.proxy_config_url: must be an http:// or "
	    "https:// URL");
	expect_err(GOOD_LISTENERS "telegram = { http_timeout = 0; };\n",
	    "t.conf:7: telegram.http_timeout: must be at least 1");
	expect_err(GOOD_LISTENERS "telegram = { ca_file = 1; };\n",
	    "t.conf:7: telegram.ca_file: must be a string");
	expect_err(GOOD_LISTENERS
	    "telegram = { proxy_config_v6_file = [ \"x\" ]; };\n",
	    "t.conf:7: telegram.proxy_config_v6_file: must be a string");
	expect_err(GOOD_LISTENERS "metrics = { port = 70000; };\n",
	    "t.conf:7: metrics.port: must be between 0 and 65535");
	expect_err(GOOD_LISTENERS "metrics = { address = \"any\"; };\n",
	    "t.conf:7: metrics.address: must be an IPv4 or IPv6 address");
}
END_TEST

START_TEST(test_parse_size)
{
	uint64_t v;

	ck_assert_int_eq(config_parse_size("0", &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(config_parse_size("1234", &v), 0);
	ck_assert_uint_eq(v, 1234);
	ck_assert_int_eq(config_parse_size("3K", &v), 0);
	ck_assert_uint_eq(v, 3072);
	ck_assert_int_eq(config_parse_size("64M", &v), 0);
	ck_assert_uint_eq(v, 64 << 20);
	ck_assert_int_eq(config_parse_size("2g", &v), 0);
	ck_assert_uint_eq(v, (uint64_t)2 << 30);
	ck_assert_int_eq(config_parse_size("5T", &v), 0);
	ck_assert_uint_eq(v, (uint64_t)5 << 40);
	ck_assert_int_eq(config_parse_size("18446744073709551615", &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	v = 7;
	ck_assert_int_eq(config_parse_size("18446744073709551616", &v), -1);
	ck_assert_int_eq(config_parse_size("16777216T", &v), -1);
	ck_assert_int_eq(config_parse_size("", &v), -1);
	ck_assert_int_eq(config_parse_size("M", &v), -1);
	ck_assert_int_eq(config_parse_size("-1", &v), -1);
	ck_assert_int_eq(config_parse_size(" 1", &v), -1);
	ck_assert_int_eq(config_parse_size("1 M", &v), -1);
	ck_assert_int_eq(config_parse_size("1MB", &v), -1);
	ck_assert_int_eq(config_parse_size("1KM", &v), -1);
	ck_assert_int_eq(config_parse_size("1.5M", &v), -1);
	ck_assert_int_eq(config_parse_size("1P", &v), -1);
	ck_assert_uint_eq(v, 7);
}
END_TEST

/* limits, resolv_conf and middle.pool_idle_timeout (issue 7). */
/* A user's limits (CONFIG.md "Users, limits and access"). */
#define USER_LIMITS(body) \
	"listeners = (\n  { port = 443; protocols = [\"secure\"];\n" \
	"    users = ( { name = \"a\"; secret = \"" SECRET_A "\";\n" body \
	" } ); }\n);\n"

START_TEST(test_user_limits)
{
	struct config *cfg;
	const struct config_user *u;
	int64_t t;

	cfg = expect_ok(USER_LIMITS(""));
	u = &cfg->listeners[0].users[0];
	ck_assert_int_eq(u->enabled, 1);
	ck_assert_int_eq(u->max_connections, 0);
	ck_assert_int_eq(u->unique_ips_window, 600);
	ck_assert_uint_eq(u->quota, 0);
	ck_assert_int_eq(u->quota_period, QUOTA_NEVER);
	ck_assert_int_eq(u->expires, 0);
	ck_assert_uint_eq(u->rate, 0);
	config_free(cfg);

	cfg = expect_ok(USER_LIMITS(
	    "enabled = false; max_connections = 3; max_unique_ips = 2;\n"
	    "unique_ips_window = 60; quota = \"10G\"; quota_period = "
	    "\"monthly:15\";\nexpires = \"2027-01-31T00:00:00Z\"; rate = "
	    "\"512K\";"));
	u = &cfg->listeners[0].users[0];
	ck_assert_int_eq(u->enabled, 0);
	ck_assert_int_eq(u->max_connections, 3);
	ck_assert_int_eq(u->max_unique_ips, 2);
	ck_assert_int_eq(u->unique_ips_window, 60);
	ck_assert_uint_eq(u->quota, 10ull << 30);
	ck_assert_int_eq(u->quota_period, QUOTA_MONTHLY);
	ck_assert_int_eq(u->quota_day, 15);
	ck_assert_int_eq(u->expires, 1801353600);
	ck_assert_uint_eq(u->rate, 512 * 1024);
	config_free(cfg);

	cfg = expect_ok(USER_LIMITS("quota = 1000; quota_period = \"daily\";"
	                            " expires = \"\";"));
	u = &cfg->listeners[0].users[0];
	ck_assert_uint_eq(u->quota, 1000);
	ck_assert_int_eq(u->quota_period, QUOTA_DAILY);
	ck_assert_int_eq(u->expires, 0);
	config_free(cfg);
	cfg = expect_ok(USER_LIMITS("quota_period = \"monthly\";"));
	ck_assert_int_eq(cfg->listeners[0].users[0].quota_day, 1);
	config_free(cfg);

	expect_err(USER_LIMITS("quota_period = \"weekly\";"),
	    "t.conf:4: listeners.[0].users.[0].quota_period: must be "
	    "\"never\", \"daily\", \"monthly\" or \"monthly:DAY\"");
	expect_err(USER_LIMITS("quota_period = \"monthly:32\";"),
	    "t.conf:4: listeners.[0].users.[0].quota_period: the day of "
	    "\"monthly:DAY\" must be 1 to 31");
	expect_err(USER_LIMITS("quota = \"10GB\";"),
	    "t.conf:4: listeners.[0].users.[0].quota: must be a number of "
	    "bytes");
	expect_err(USER_LIMITS("expires = \"tomorrow\";"),
	    "t.conf:4: listeners.[0].users.[0].expires: must be an RFC 3339 "
	    "time");
	expect_err(USER_LIMITS("max_unique_ips = 65;"),
	    "t.conf:4: listeners.[0].users.[0].max_unique_ips: must be "
	    "between 0 and 64");
	expect_err(USER_LIMITS("enabled = 1;"),
	    "t.conf:4: listeners.[0].users.[0].enabled: must be true or "
	    "false");
	expect_err(USER_LIMITS("unique_ips_window = 0;"),
	    "t.conf:4: listeners.[0].users.[0].unique_ips_window: must be "
	    "between 1 and");
	expect_err(USER_LIMITS("maxconn = 1;"),
	    "t.conf:4: listeners.[0].users.[0].maxconn: unknown option");
	ck_assert_int_eq(config_parse_time("2027-01-31T00:00:00Z", &t), 0);
	ck_assert_int_eq(t, 1801353600);
}
END_TEST

START_TEST(test_limits)
{
	struct config *c, *cfg;

	/* An integer size, and 0 = no bound / unlimited. */
	c = expect_ok(
	    "limits = { handshake_memory = 1000; };\n" GOOD_LISTENERS);
	ck_assert_uint_eq(c->handshake_memory, 1000);
	config_free(c);
	c = expect_ok("limits = { handshake_memory = \"0\";\n"
	              "  max_connections = 0; };\n"
	              "resolv_conf = \"\";\n"
	              "middle = { pool_idle_timeout = 0; };\n" GOOD_LISTENERS);
	ck_assert_uint_eq(c->handshake_memory, 0);
	ck_assert_int_eq(c->max_connections, 0);
	ck_assert_ptr_null(c->resolv_conf);
	ck_assert_int_eq(c->middle_pool_idle_timeout, 0);
	config_free(c);
	c = expect_ok(
	    "limits = { handshake_memory = 8589934592L; };\n" GOOD_LISTENERS);
	ck_assert_uint_eq(c->handshake_memory, (uint64_t)8 << 30);
	config_free(c);
	/* An empty block keeps the defaults. */
	c = expect_ok("limits = { };\n" GOOD_LISTENERS);
	ck_assert_int_eq(c->max_connections, 0);
	ck_assert_uint_eq(c->handshake_memory, 64 << 20);
	config_free(c);

	expect_err("limits = {\n  max_connections = -1;\n};\n" GOOD_LISTENERS,
	    "t.conf:2: limits.max_connections: must be at least 0");
	expect_err("limits = { max_connections = \"10\"; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.max_connections: must be an integer");
	expect_err(
	    "limits = { max_connections = 3000000000L; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.max_connections: must be at least 0");
	expect_err("limits = { handshake_memory = -1; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.handshake_memory: must be at least 0");
	expect_err(
	    "limits = { handshake_memory = \"64MB\"; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.handshake_memory: must be a number of bytes, "
	    "or a string with a K, M, G or T suffix such as \"64M\"");
	expect_err("limits = { handshake_memory = 1.5; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.handshake_memory: must be a number of bytes");
	/* per_ip, per_subnet and the subnets' prefix lengths */
	cfg =
	    expect_ok("limits = {\n  per_ip = 10; per_subnet = 50;\n"
	              "  subnet_v4 = 16; subnet_v6 = 48;\n};\n" GOOD_LISTENERS);
	ck_assert_int_eq(cfg->limits.per_ip, 10);
	ck_assert_int_eq(cfg->limits.per_subnet, 50);
	ck_assert_int_eq(cfg->limits.subnet_v4, 16);
	ck_assert_int_eq(cfg->limits.subnet_v6, 48);
	ck_assert_int_eq(cfg->listeners[0].limits.per_ip, 0);
	ck_assert_int_eq(cfg->listeners[0].limits.subnet_v4, 24);
	config_free(cfg);
	cfg = expect_ok(GOOD_LISTENERS);
	ck_assert_int_eq(cfg->limits.per_ip, 0);
	ck_assert_int_eq(cfg->limits.subnet_v4, 24);
	ck_assert_int_eq(cfg->limits.subnet_v6, 64);
	config_free(cfg);
	expect_err("limits = {\n  per_ip = -1;\n};\n" GOOD_LISTENERS,
	    "t.conf:2: limits.per_ip: must be at least 0");
	expect_err("limits = { subnet_v4 = 33; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.subnet_v4: must be between 1 and 32");
	expect_err("limits = { subnet_v6 = 0; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.subnet_v6: must be between 1 and 128");
	expect_err("limits = { per_subnet = \"5\"; };\n" GOOD_LISTENERS,
	    "t.conf:1: limits.per_subnet: must be an integer");
	expect_err("limits = 5;\n" GOOD_LISTENERS,
	    "t.conf:1: limits: must be a group");

	/* Per listener: only max_connections. */
	expect_err("listeners = (\n"
	           "  { port = 443; protocols = [\"secure\"];\n"
	           "    limits = {\n"
	           "      max_connections = -3; };\n"
	           "    users = ( { secret = \"" SECRET_A "\"; } ); }\n);\n",
	    "t.conf:4: listeners.[0].limits.max_connections: must be at "
	    "least 0");
	expect_err("listeners = (\n"
	           "  { port = 443; protocols = [\"secure\"];\n"
	           "    limits = { handshake_memory = \"1M\"; };\n"
	           "    users = ( { secret = \"" SECRET_A "\"; } ); }\n);\n",
	    "t.conf:3: listeners.[0].limits.handshake_memory: only in the "
	    "global limits block");
	cfg = expect_ok(
	    "listeners = (\n"
	    "  { port = 443; protocols = [\"secure\"];\n"
	    "    limits = { per_ip = 1; per_subnet = 3; "
	    "subnet_v6 = 56; };\n"
	    "    users = ( { secret = \"" SECRET_A "\"; } ); }\n);\n");
	ck_assert_int_eq(cfg->listeners[0].limits.per_ip, 1);
	ck_assert_int_eq(cfg->listeners[0].limits.per_subnet, 3);
	ck_assert_int_eq(cfg->listeners[0].limits.subnet_v6, 56);
	config_free(cfg);
	expect_err("listeners = (\n"
	           "  { port = 443; protocols = [\"secure\"];\n"
	           "    limits = { per_ip = 1; bogus = 2; };\n"
	           "    users = ( { secret = \"" SECRET_A "\"; } ); }\n);\n",
	    "t.conf:3: listeners.[0].limits.bogus: unknown option");
	expect_err("listeners = (\n"
	           "  { port = 443; protocols = [\"secure\"];\n"
	           "    limits = ( );\n"
	           "    users = ( { secret = \"" SECRET_A "\"; } ); }\n);\n",
	    "t.conf:3: listeners.[0].limits: must be a group");

	expect_err("resolv_conf = \"resolv.conf\";\n" GOOD_LISTENERS,
	    "t.conf:1: resolv_conf: must be an absolute path or \"\"");
	expect_err("\nresolv_conf = 1;\n" GOOD_LISTENERS,
	    "t.conf:2: resolv_conf: must be a string");
	expect_err(GOOD_LISTENERS "middle = { pool_idle_timeout = -1; };\n",
	    "t.conf:7: middle.pool_idle_timeout: must be at least 0");
}
END_TEST

START_TEST(test_metrics_off)
{
	struct config *c;

	c = expect_ok(GOOD_LISTENERS "metrics = { port = 0; };\n");

	ck_assert_uint_eq(c->metrics_port, 0);
	config_free(c);
}
END_TEST

START_TEST(test_err_middle)
{
	expect_err(GOOD_LISTENERS "middle = {\n  min_links = -1;\n};\n",
	    "t.conf:8: middle.min_links: must be at least 0");
	expect_err(GOOD_LISTENERS "middle = { clients_per_link = 0; };\n",
	    "t.conf:7: middle.clients_per_link: must be at least 1");
	expect_err(GOOD_LISTENERS "middle = { ping_interval = 0; };\n",
	    "t.conf:7: middle.ping_interval: must be at least 1");
	expect_err(GOOD_LISTENERS "middle = { ping_timeout = 0; };\n",
	    "t.conf:7: middle.ping_timeout: must be at least 1");
	expect_err(GOOD_LISTENERS "middle = {\n ping_interval = 40;\n"
	                          " ping_timeout = 40;\n};\n",
	    "t.conf:9: middle.ping_timeout: ping_timeout (40) must be larger "
	    "than ping_interval (40)");
	expect_err(GOOD_LISTENERS "middle = { ping_interval = 100; };\n",
	    "t.conf:7: middle.ping_interval: ping_timeout (90) must be larger "
	    "than ping_interval (100)");
	expect_err(GOOD_LISTENERS "middle = { client_queue_max = 65535; };\n",
	    "t.conf:7: middle.client_queue_max: must be at least 65536");
	expect_err(GOOD_LISTENERS "middle = { client_queue_timeout = 0; };\n",
	    "t.conf:7: middle.client_queue_timeout: must be at least 1");
	expect_err(GOOD_LISTENERS "middle = { link_queue_max = 1000; };\n",
	    "t.conf:7: middle.link_queue_max: must be at least 65536");
	expect_err(GOOD_LISTENERS "middle = { fallback_direct = 1; };\n",
	    "t.conf:7: middle.fallback_direct: must be true or false");
	expect_err(GOOD_LISTENERS "middle = { fallback = true; };\n",
	    "t.conf:7: middle.fallback: unknown option");
	expect_err(GOOD_LISTENERS "middle = 5;\n",
	    "t.conf:7: middle: must be a group");
}
END_TEST

/* What a reload can take in place, and what needs new workers. */
static int
inplace(const char *a, const char *b)
{
	struct config *x = expect_ok(a), *y = expect_ok(b);
	int r = config_inplace_only(x, y);

	config_free(x);
	config_free(y);
	return r;
}

#define INPLACE_BASE(users, extra, lextra) \
	"workers = 2;\nlog = { level = \"info\"; };\n" extra \
	"listeners = ( { name = \"m\"; port = 8443; protocols = [ " \
	"\"fake_tls\", \"secure\" ]; tls_domain = \"a.example\"; " \
	"fronting = \"127.0.0.1:9\"; " lextra " users = ( " users " ); } );\n"
#define U1 \
	"{ name = \"alice\"; secret = \"0123456789abcdef0123456789abcdef\"; }"
#define U2 "{ name = \"bob\"; secret = \"ffeeddccbbaa99887766554433221100\"; }"

START_TEST(test_inplace_only)
{
	const char *base = INPLACE_BASE(U1, "", "");

	ck_assert_int_eq(inplace(base, base), 1);
	/* users, log level, fronting target, TLS domain: in place */
	ck_assert_int_eq(inplace(base, INPLACE_BASE(U1 ", " U2, "", "")), 1);
	ck_assert_int_eq(
	    inplace(INPLACE_BASE(U1 ", " U2, "", ""), INPLACE_BASE(U2, "", "")),
	    1);
	ck_assert_int_eq(
	    inplace(base,
	        "workers = 2;\nlog = { level = \"debug\"; };\n"
	        "listeners = ( { name = \"m\"; port = 8443; protocols = [ "
	        "\"fake_tls\", \"secure\" ]; tls_domain = \"b.example\"; "
	        "fronting = \"127.0.0.1:10\"; users = ( " U1 " ); } );\n"),
	    1);
	/* anything else: a new generation */
	ck_assert_int_eq(
	    inplace(base, INPLACE_BASE(U1, "handshake_timeout = 11;\n", "")),
	    0);
	ck_assert_int_eq(inplace(base,
	                     "workers = 3;\nlog = { level = \"info\"; };\n"
	                     "listeners = ( { name = \"m\"; port = 8443; "
	                     "protocols = [ \"fake_tls\", \"secure\" ]; "
	                     "tls_domain = \"a.example\"; fronting = "
	                     "\"127.0.0.1:9\"; users = ( " U1 " ); } );\n"),
	    0);
	ck_assert_int_eq(
	    inplace(base,
	        INPLACE_BASE(U1, "", "limits = { max_connections = 5; };")),
	    0);
	/* An ad tag on an "auto" listener switches it to the middle
	 * proxies: new workers. With backend fixed, it is in place. */
	ck_assert_int_eq(
	    inplace(base,
	        INPLACE_BASE(
	            U1, "", "ad_tag = \"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\";")),
	    0);
	ck_assert_int_eq(
	    inplace(INPLACE_BASE(U1, "backend = \"middle\";\n", ""),
	        INPLACE_BASE(U1, "backend = \"middle\";\n",
	            "ad_tag = \"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\";")),
	    1);
}
END_TEST

/* Leaves a pattern in the stack that the next call will reuse. */
static void __attribute__((noinline)) poison_stack(int v)
{
	volatile uint8_t junk[64 * 1024];
	memset((void *)junk, v, sizeof(junk));
}

/*
 * The same file loaded twice is the same config, byte for byte, whatever
 * was on the stack: the log file's path was copied with its buffer's
 * stack garbage (4 KiB), so a reload of an unchanged file did not look
 * unchanged to config_inplace_only. Failed before the fix.
 */
START_TEST(test_same_text_same_bytes)
{
	const char *text =
	    "log = { target = \"/var/log/m.log\"; };\n"
	    "listeners = ( { name = \"m\"; port = 8443; protocols = [ "
	    "\"secure\" ]; users = ( " U1 " ); } );\n";
	struct config *a, *b;

	poison_stack(0xaa);
	a = expect_ok(text);
	poison_stack(0x55);
	b = expect_ok(text);
	ck_assert_int_eq(config_inplace_only(a, b), 1);
	ck_assert_mem_eq(a->log_file, b->log_file, sizeof(a->log_file));
	config_free(a);
	config_free(b);
}
END_TEST

START_TEST(test_tables_round_trip)
{
	struct config *c = expect_ok(INPLACE_BASE(
	    U1 ", " U2, "", "ad_tag = \"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\";"));
	uint8_t *blob;
	size_t len;
	struct tables *t;

	ck_assert_int_eq(tables_encode(c, &blob, &len), 0);
	t = tables_decode(blob, len);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->log_level, c->log_level);
	ck_assert_uint_eq(t->nl, 1);
	struct tables_listener *l = tables_find(t, "m");
	ck_assert_ptr_nonnull(l);
	ck_assert_ptr_null(tables_find(t, "other"));
	ck_assert_str_eq(l->tls_domain, "a.example");
	ck_assert_str_eq(l->fronting_host, "127.0.0.1");
	ck_assert_uint_eq(l->fronting_port, 9);
	ck_assert_int_eq(l->has_ad_tag, 1);
	ck_assert_mem_eq(l->ad_tag, c->listeners[0].ad_tag, 16);
	ck_assert_uint_eq(l->nusers, 2);
	ck_assert_str_eq(l->users[0].name, "alice");
	ck_assert_str_eq(l->users[1].name, "bob");
	ck_assert_mem_eq(
	    l->users[1].secret, c->listeners[0].users[1].secret, 16);
	tables_free(t);
	/* Every cut, a wrong version, a byte too many: refused. */
	for (size_t n = 0; n < len; n++)
		ck_assert_ptr_null(tables_decode(blob, n));
	uint8_t *big = malloc(len + 1);
	memcpy(big, blob, len);
	big[len] = 0;
	ck_assert_ptr_null(tables_decode(big, len + 1));
	big[4]++;
	ck_assert_ptr_null(tables_decode(big, len));
	free(big);
	free(blob);
	config_free(c);
}
END_TEST

/* Issue 13: network = { ... }, nat_ip as its alias, a listener's server. */
START_TEST(test_network)
{
	struct config *c;

	c = expect_ok(GOOD_LISTENERS);
	ck_assert_int_eq(c->discover, 1);
	ck_assert_int_eq(c->discover_interval, 3600);
	ck_assert_uint_ge(c->nstun_servers, 2);
	ck_assert_uint_ge(c->nip_urls, 2);
	ck_assert_str_eq(c->public_ipv4, "");
	ck_assert_int_eq(c->prefer_ipv6, 0);
	config_free(c);

	c = expect_ok(GOOD_LISTENERS
	    "network = { public_ipv6 = \"2001:db8::5\";\n"
	    "  stun_servers = [ \"127.0.0.1:3478\", \"[::1]:1\", "
	    "\"stun.example\" ];\n"
	    "  ip_urls = [ \"https://ip.example/\" ]; prefer_ipv6 = true;\n"
	    "  discover = false; discover_interval = 60; };\n"
	    "telegram = { nat_ip = \"203.0.113.7\"; };\n");
	ck_assert_str_eq(c->public_ipv4, "203.0.113.7"); /* the alias */
	ck_assert_str_eq(c->public_ipv6, "2001:db8::5");
	ck_assert_uint_eq(c->nstun_servers, 3);
	ck_assert_str_eq(c->stun_servers[2], "stun.example");
	ck_assert_uint_eq(c->nip_urls, 1);
	ck_assert_str_eq(c->ip_urls[0], "https://ip.example/");
	ck_assert_int_eq(c->prefer_ipv6, 1);
	ck_assert_int_eq(c->discover, 0);
	ck_assert_int_eq(c->discover_interval, 60);
	config_free(c);

	/* [ ] keeps the built-in lists. */
	c = expect_ok(GOOD_LISTENERS
	    "network = { stun_servers = [ ]; ip_urls = [ ]; };\n");
	ck_assert_uint_ge(c->nstun_servers, 2);
	ck_assert_uint_ge(c->nip_urls, 2);
	config_free(c);

	/* An IPv6 nat_ip goes to public_ipv6. */
	c = expect_ok(
	    GOOD_LISTENERS "telegram = { nat_ip = \"2001:db8::9\"; };\n");
	ck_assert_str_eq(c->public_ipv4, "");
	ck_assert_str_eq(c->public_ipv6, "2001:db8::9");
	config_free(c);

	c = expect_ok("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	              "  server = \"proxy.example.net\";\n"
	              "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_str_eq(c->listeners[0].server, "proxy.example.net");
	config_free(c);

	expect_err(GOOD_LISTENERS
	    "network = { public_ipv4 = \"2001:db8::1\"; };\n",
	    "t.conf:7: network.public_ipv4: must be an IPv4 address or \"\"");
	expect_err(GOOD_LISTENERS "network = { public_ipv6 = \"1.2.3.4\"; };\n",
	    "t.conf:7: network.public_ipv6: must be an IPv6 address or \"\"");
	expect_err(GOOD_LISTENERS
	    "network = { stun_servers = [ \"a:b:c\" ]; };\n",
	    "t.conf:7: network.stun_servers.[0]: must be \"host:port\"");
	expect_err(GOOD_LISTENERS
	    "network = { stun_servers = [ \"h:0\" ]; };\n",
	    "t.conf:7: network.stun_servers.[0]: must be \"host:port\"");
	expect_err(GOOD_LISTENERS
	    "network = { ip_urls = [ \"ftp://x/\" ]; };\n",
	    "t.conf:7: network.ip_urls.[0]: must be an http:// or https:// "
	    "URL");
	expect_err(GOOD_LISTENERS "network = { ip_urls = \"https://x/\"; };\n",
	    "t.conf:7: network.ip_urls: must be an array of strings");
	expect_err(GOOD_LISTENERS "network = { discover_interval = 5; };\n",
	    "t.conf:7: network.discover_interval:");
	c = expect_ok(GOOD_LISTENERS);
	ck_assert_int_eq(c->tls_profile_learn, 1);
	ck_assert_int_eq(c->tls_profile_refresh, 21600);
	config_free(c);
	c = expect_ok(GOOD_LISTENERS "tls = { profile = \"static\"; "
	                             "profile_refresh = 600; };\n");
	ck_assert_int_eq(c->tls_profile_learn, 0);
	ck_assert_int_eq(c->tls_profile_refresh, 600);
	ck_assert_int_eq(c->tls_record_fixed, 0);
	config_free(c);
	c = expect_ok(GOOD_LISTENERS "tls = { record_sizing = \"fixed\"; };\n");
	ck_assert_int_eq(c->tls_record_fixed, 1);
	config_free(c);
	expect_err(GOOD_LISTENERS "tls = { record_sizing = \"big\"; };\n",
	    "t.conf:7: tls.record_sizing: must be \"dynamic\" or \"fixed\"");
	c = expect_ok(GOOD_LISTENERS);
	ck_assert_int_eq(c->tls_split_hello, 0);
	ck_assert_int_eq(c->tls_hello_delay_site, 1);
	ck_assert_int_eq(c->listeners[0].handshake_mss, 0);
	ck_assert_int_eq(c->listeners[0].rst_on_failed, 0);
	config_free(c);
	c = expect_ok(GOOD_LISTENERS);
	ck_assert_int_eq(c->log_json, 0);
	ck_assert_int_eq(c->log_facility, LOG_DAEMON);
	config_free(c);
	c = expect_ok(GOOD_LISTENERS
	    "log = { format = \"json\"; facility = \"local3\"; };\n");
	ck_assert_int_eq(c->log_json, 1);
	ck_assert_int_eq(c->log_facility, LOG_LOCAL3);
	config_free(c);
	c = expect_ok(GOOD_LISTENERS
	    "log = { syslog_socket = \"/run/systemd/journal/syslog\"; };\n");
	ck_assert_str_eq(c->log_syslog_socket, "/run/systemd/journal/syslog");
	config_free(c);
	expect_err(GOOD_LISTENERS "log = { syslog_socket = \"dev/log\"; };\n",
	    "t.conf:7: log.syslog_socket: must be an absolute path");
	expect_err(GOOD_LISTENERS "log = { format = \"xml\"; };\n",
	    "t.conf:7: log.format: must be \"text\" or \"json\"");
	expect_err(GOOD_LISTENERS "log = { facility = \"kern\"; };\n",
	    "t.conf:7: log.facility: must be \"daemon\", \"user\", "
	    "\"local0\"");
	c = expect_ok(GOOD_LISTENERS "metrics = { allow = [ \"127.0.0.1\", "
	                             "\"10.0.0.0/8\", \"::1/128\" ]; };\n");
	ck_assert_uint_eq(c->nmetrics_allow, 3);
	ck_assert_uint_eq(c->metrics_allow[1].prefix, 8);
	config_free(c);
	expect_err(GOOD_LISTENERS
	    "metrics = { allow = [ \"10.0.0.0/40\" ]; };\n",
	    "t.conf:7: metrics.allow.[0]: must be an address or "
	    "address/prefix");
	expect_err(GOOD_LISTENERS "metrics = { allow = \"10.0.0.0/8\"; };\n",
	    "t.conf:7: metrics.allow: must be an array");
	c = expect_ok(GOOD_LISTENERS);
	ck_assert_uint_eq(c->listeners[0].proxy_protocol, 0);
	ck_assert_uint_eq(c->listeners[0].nproxy_trusted, 2);
	config_free(c);
	c = expect_ok("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	              "  proxy_protocol = \"any\";\n"
	              "  proxy_protocol_trusted = [ \"10.1.0.0/16\" ];\n"
	              "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_uint_eq(c->listeners[0].proxy_protocol, 3);
	ck_assert_uint_eq(c->listeners[0].nproxy_trusted, 1);
	ck_assert_uint_eq(c->listeners[0].proxy_trusted[0].prefix, 16);
	config_free(c);
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  proxy_protocol = \"v3\";\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].proxy_protocol: must be \"off\", "
	    "\"v1\", \"v2\" or \"any\"");
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  proxy_protocol_trusted = [ \"nowhere\" ];\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].proxy_protocol_trusted.[0]: must be an "
	    "address");
	c = expect_ok("access = { deny = [ \"10.0.0.0/8\", \"::1\" ]; };\n"
	              "listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	              "  access = { allow = [ \"192.0.2.0/24\" ]; };\n"
	              "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_uint_eq(acl_size(&c->access.deny), 2);
	ck_assert_uint_eq(acl_size(&c->listeners[0].access.allow), 1);
	{
		struct sockaddr_storage ss;
		socklen_t sl;

		addr_from_ip_port("10.1.1.1", 1, &ss, &sl);
		ck_assert_int_eq(config_access_denied(c, &c->listeners[0],
		                     (struct sockaddr *)&ss),
		    1);
		addr_from_ip_port("192.0.2.9", 1, &ss, &sl);
		ck_assert_int_eq(config_access_denied(c, &c->listeners[0],
		                     (struct sockaddr *)&ss),
		    0);
		addr_from_ip_port("198.51.100.1", 1, &ss, &sl);
		ck_assert_int_eq(config_access_denied(c, &c->listeners[0],
		                     (struct sockaddr *)&ss),
		    1);
	}
	config_free(c);
	expect_err(GOOD_LISTENERS "access = { deny = [ \"10.0.0.0/33\" ]; };\n",
	    "t.conf:7: access.deny.[0]: must be an address or address/prefix");
	expect_err(GOOD_LISTENERS
	    "access = { allow_file = \"/nonexistent/allow\"; };\n",
	    "t.conf:7: access.allow_file: /nonexistent/allow: No such file");
	expect_err(GOOD_LISTENERS "access = { block = [ ]; };\n",
	    "t.conf:7: access.block: unknown option");
	c = expect_ok("user = \"daemon\";\n" GOOD_LISTENERS);
	ck_assert_str_eq(c->user, "daemon");
	ck_assert_int_eq(c->user_given, 1);
	ck_assert_str_eq(c->group, "mtprotod");
	ck_assert_int_eq(c->group_given, 0);
	config_free(c);
	c = expect_ok(GOOD_LISTENERS "tls = { split_hello = true; "
	                             "hello_delay = \"0\"; };\n");
	ck_assert_int_eq(c->tls_split_hello, 1);
	ck_assert_int_eq(c->tls_hello_delay_site, 0);
	config_free(c);
	expect_err(GOOD_LISTENERS "tls = { hello_delay = 5; };\n",
	    "t.conf:7: tls.hello_delay: must be a string");
	expect_err(GOOD_LISTENERS "tls = { hello_delay = \"10ms\"; };\n",
	    "t.conf:7: tls.hello_delay: must be \"0\" or \"site\"");
	expect_err(GOOD_LISTENERS "tls = { split_hello = 1; };\n",
	    "t.conf:7: tls.split_hello: must be true or false");
	c = expect_ok("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	              "  handshake_mss = 88; rst_on_failed = true;\n"
	              "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_int_eq(c->listeners[0].handshake_mss, 88);
	ck_assert_int_eq(c->listeners[0].rst_on_failed, 1);
	config_free(c);
	c = expect_ok(
	    "listeners = ( { port = 1; tls_domain = \"a.example\";\n"
	    "  tls_domains = [ \"B.example\",\n"
	    "    \"c.example=10.0.0.1:8443\", \"d.example=e.example\" ];\n"
	    "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_uint_eq(c->listeners[0].nsnis, 3);
	ck_assert_str_eq(c->listeners[0].snis[0].name, "B.example");
	ck_assert_str_eq(c->listeners[0].snis[0].fronting_host, "");
	ck_assert_str_eq(c->listeners[0].snis[1].fronting_host, "10.0.0.1");
	ck_assert_uint_eq(c->listeners[0].snis[1].fronting_port, 8443);
	ck_assert_str_eq(c->listeners[0].snis[2].fronting_host, "e.example");
	ck_assert_uint_eq(c->listeners[0].snis[2].fronting_port, 443);
	config_free(c);
	expect_err("listeners = ( { port = 1; tls_domain = \"a.example\";\n"
	           "  tls_domains = [ \"b.example\", \"B.EXAMPLE\" ];\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].tls_domains.[1]: \"B.EXAMPLE\" listed "
	    "twice");
	expect_err("listeners = ( { port = 1; tls_domain = \"a.example\";\n"
	           "  tls_domains = [ \"A.example\" ];\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].tls_domains.[0]: \"A.example\" is the "
	    "tls_domain");
	expect_err("listeners = ( { port = 1; tls_domain = \"a.example\";\n"
	           "  tls_domains = [ \"b.example=x:99999\" ];\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].tls_domains.[0]: must be \"name\" or "
	    "\"name=host:port\"");
	expect_err("listeners = ( { port = 1; tls_domain = \"a.example\";\n"
	           "  tls_domains = [ \"bad name\" ];\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].tls_domains.[0]: must be a host name");
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  tls_domains = [ \"b.example\" ];\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].tls_domains: needs protocol fake_tls");
	expect_err("listeners = ( { port = 1; tls_domain = \"a.example\";\n"
	           "  tls_domains = \"b.example\";\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].tls_domains: must be an array");
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  handshake_mss = 40;\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].handshake_mss: must be 0 or 88 to 65535");
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  handshake_mss = 70000;\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].handshake_mss:");
	c = expect_ok("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	              "  fronting_proxy_protocol = \"v2\";\n"
	              "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_int_eq(c->listeners[0].fronting_proxy_v2, 1);
	ck_assert_int_eq(c->listeners[0].unknown_sni, SNI_FRONT);
	config_free(c);
	c = expect_ok("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	              "  unknown_sni = \"reject\";\n"
	              "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n");
	ck_assert_int_eq(c->listeners[0].unknown_sni, SNI_REJECT);
	config_free(c);
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  unknown_sni = \"ignore\";\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].unknown_sni: must be \"front\", "
	    "\"drop\" or \"reject\"");
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  fronting_proxy_protocol = \"v1\";\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].fronting_proxy_protocol: must be "
	    "\"off\" or \"v2\"");
	expect_err(GOOD_LISTENERS "tls = { profile = \"copy\"; };\n",
	    "t.conf:7: tls.profile: must be \"learn\" or \"static\"");
	expect_err(GOOD_LISTENERS "tls = { profile_refresh = 5; };\n",
	    "t.conf:7: tls.profile_refresh:");
	expect_err(GOOD_LISTENERS "network = { stun = 1; };\n",
	    "t.conf:7: network.stun: unknown option");
	expect_err(GOOD_LISTENERS
	    "network = { public_ipv4 = \"203.0.113.1\"; };\n"
	    "telegram = { nat_ip = \"203.0.113.2\"; };\n",
	    "t.conf:8: telegram.nat_ip: \"203.0.113.2\" differs from "
	    "network.public_ipv4 \"203.0.113.1\"");
	expect_err("listeners = ( { port = 1; protocols = [ \"secure\" ];\n"
	           "  server = \"bad host!\";\n"
	           "  users = ( { secret = \"" SECRET_A "\"; } ); } );\n",
	    "t.conf:2: listeners.[0].server: must be a host name");
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_file);
	tcase_add_test(tc, test_example_file);
	tcase_add_test(tc, test_no_listeners_builtin);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_workers_and_log);
	tcase_add_test(tc, test_upper_case_secret);
	tcase_add_test(tc, test_backend_resolution);
	tcase_add_test(tc, test_parse_secret);
	tcase_add_test(tc, test_builtin_default);
	tcase_add_test(tc, test_builtin_default_errors);
	tcase_add_test(tc, test_err_file_and_syntax);
	tcase_add_test(tc, test_err_unknown);
	tcase_add_test(tc, test_err_secret);
	tcase_add_test(tc, test_err_listener_values);
	tcase_add_test(tc, test_err_structure);
	tcase_add_test(tc, test_err_globals);
	tcase_add_test(tc, test_metrics_off);
	tcase_add_test(tc, test_parse_size);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_user_limits);
	tcase_add_test(tc, test_err_middle);
	tcase_add_test(tc, test_inplace_only);
	tcase_add_test(tc, test_tables_round_trip);
	tcase_add_test(tc, test_same_text_same_bytes);
	tcase_add_test(tc, test_network);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
