/*
 * Links (vectors A1_secrets, byte for byte), the terminal QR code (read
 * back module by module) and links_print over a parsed config.
 */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <qrencode.h>

#include "config.h"
#include "discover.h"
#include "links.h"
#include "util.h"
#include "vectors.h"

#define V(name) vec_str("A1_secrets." name)

static uint8_t secret[16];
static char domain[256];
static char server[256];
static unsigned port;

/* Secret and domain from ee_hex, server and port from a vector link. */
static void
setup(void)
{
	const char *link, *p, *e;
	uint8_t *ee, *s;
	size_t len, slen;

	vec_load();
	s = vec_hex("A1_secrets.secret16_hex", &slen);
	ck_assert_uint_eq(slen, 16);
	memcpy(secret, s, 16);
	free(s);
	ee = vec_hex("A1_secrets.ee_hex", &len);
	ck_assert_uint_gt(len, 17);
	ck_assert_uint_lt(len - 17, sizeof(domain));
	ck_assert_uint_eq(ee[0], 0xee);
	ck_assert_mem_eq(ee + 1, secret, 16);
	memcpy(domain, ee + 17, len - 17);
	domain[len - 17] = '\0';
	free(ee);

	link = V("link_plain");
	ck_assert_ptr_nonnull(p = strstr(link, "server="));
	p += 7;
	ck_assert_ptr_nonnull(e = strchr(p, '&'));
	ck_assert_uint_lt((size_t)(e - p), sizeof(server));
	memcpy(server, p, (size_t)(e - p));
	server[e - p] = '\0';
	ck_assert_ptr_nonnull(p = strstr(link, "port="));
	port = (unsigned)strtoul(p + 5, NULL, 10);
	ck_assert_uint_gt(port, 0);
}

START_TEST(test_secret_forms)
{
	char out[LINKS_MAX];
	int n;

	n = links_secret(out, sizeof(out), PROTO_CLASSIC, secret, NULL, 0);
	ck_assert_str_eq(out, V("plain_hex"));
	ck_assert_int_eq(n, (int)strlen(V("plain_hex")));
	n = links_secret(out, sizeof(out), PROTO_SECURE, secret, NULL, 0);
	ck_assert_str_eq(out, V("dd_hex"));
	ck_assert_int_eq(n, (int)strlen(V("dd_hex")));
	n = links_secret(out, sizeof(out), PROTO_FAKE_TLS, secret, domain, 0);
	ck_assert_str_eq(out, V("ee_hex"));
	ck_assert_int_eq(n, (int)strlen(V("ee_hex")));
	n = links_secret(out, sizeof(out), PROTO_FAKE_TLS, secret, domain, 1);
	ck_assert_str_eq(out, V("ee_base64url"));
	ck_assert_int_eq(n, (int)strlen(V("ee_base64url")));
	/* base64 is for ee only; the others stay hex. */
	links_secret(out, sizeof(out), PROTO_SECURE, secret, NULL, 1);
	ck_assert_str_eq(out, V("dd_hex"));
	links_secret(out, sizeof(out), PROTO_CLASSIC, secret, NULL, 1);
	ck_assert_str_eq(out, V("plain_hex"));
}
END_TEST

/* Our base64url, undone with OpenSSL's decoder, is the ee bytes. */
START_TEST(test_base64url_roundtrip)
{
	static const char *domains[] = { "a.bc", "ab.cd", "abc.de",
		"www.example.com", "x-y.example.org" };
	char out[LINKS_MAX], hex[LINKS_MAX];
	unsigned char std[LINKS_MAX], dec[LINKS_MAX];
	uint8_t want[LINKS_MAX];
	size_t n, wl;
	int dl;

	for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
		n = (size_t)links_secret(
		    out, sizeof(out), PROTO_FAKE_TLS, secret, domains[i], 1);
		ck_assert_ptr_null(strpbrk(out, "+/="));
		memcpy(std, out, n);
		for (size_t k = 0; k < n; k++)
			std[k] = std[k] == '-' ? '+'
			    : std[k] == '_'    ? '/'
			                       : std[k];
		while (n % 4)
			std[n++] = '=';
		std[n] = '\0';
		dl = EVP_DecodeBlock(dec, std, (int)n);
		ck_assert_int_gt(dl, 0);
		links_secret(
		    hex, sizeof(hex), PROTO_FAKE_TLS, secret, domains[i], 0);
		wl = strlen(hex) / 2;
		ck_assert_int_eq(hex_decode(hex, want, wl), 0);
		/* EVP_DecodeBlock counts padding bytes as zeros. */
		ck_assert_int_eq(dl - (int)((3 - wl % 3) % 3), (int)wl);
		ck_assert_mem_eq(dec, want, wl);
		ck_assert_uint_eq(want[0], 0xee);
		ck_assert_mem_eq(want + 17, domains[i], strlen(domains[i]));
	}
}
END_TEST

START_TEST(test_links)
{
	char out[LINKS_MAX];
	int n;

	n = links_format(out, sizeof(out), LINKS_SCHEME_TG, server,
	    (uint16_t)port, PROTO_CLASSIC, secret, NULL, 0);
	ck_assert_str_eq(out, V("link_plain"));
	ck_assert_int_eq(n, (int)strlen(out));
	links_format(out, sizeof(out), LINKS_SCHEME_TG, server, (uint16_t)port,
	    PROTO_SECURE, secret, NULL, 0);
	ck_assert_str_eq(out, V("link_dd"));
	links_format(out, sizeof(out), LINKS_SCHEME_TG, server, (uint16_t)port,
	    PROTO_FAKE_TLS, secret, domain, 0);
	ck_assert_str_eq(out, V("link_ee_hex"));
	links_format(out, sizeof(out), LINKS_SCHEME_HTTPS, server,
	    (uint16_t)port, PROTO_FAKE_TLS, secret, domain, 1);
	ck_assert_str_eq(out, V("link_ee_base64url"));
}
END_TEST

START_TEST(test_links_errors)
{
	char out[LINKS_MAX], big[300];
	size_t need;

	/* fake_tls without a usable domain */
	ck_assert_int_eq(links_format(out, sizeof(out), LINKS_SCHEME_TG, server,
	                     443, PROTO_FAKE_TLS, secret, NULL, 0),
	    -1);
	ck_assert_int_eq(links_format(out, sizeof(out), LINKS_SCHEME_TG, server,
	                     443, PROTO_FAKE_TLS, secret, "", 0),
	    -1);
	memset(big, 'a', 183);
	big[183] = '\0';
	ck_assert_int_eq(
	    links_secret(out, sizeof(out), PROTO_FAKE_TLS, secret, big, 0), -1);
	big[182] = '\0';
	ck_assert_int_eq(
	    links_secret(out, sizeof(out), PROTO_FAKE_TLS, secret, big, 0),
	    2 * (17 + 182));
	ck_assert_int_eq(
	    links_secret(out, sizeof(out), 0, secret, NULL, 0), -1);
	ck_assert_int_eq(links_secret(out, sizeof(out),
	                     PROTO_CLASSIC | PROTO_SECURE, secret, NULL, 0),
	    -1);

	/* Exactly fitting works, one byte less does not. */
	need = strlen(V("link_dd")) + 1;
	ck_assert_int_eq(links_format(out, need, LINKS_SCHEME_TG, server,
	                     (uint16_t)port, PROTO_SECURE, secret, NULL, 0),
	    (int)need - 1);
	ck_assert_str_eq(out, V("link_dd"));
	for (size_t cap = 0; cap < need; cap++) {
		memset(out, 'X', sizeof(out));
		ck_assert_int_eq(
		    links_format(out, cap, LINKS_SCHEME_TG, server,
		        (uint16_t)port, PROTO_SECURE, secret, NULL, 0),
		    -1);
		ck_assert_int_eq(out[cap], 'X');
	}
	ck_assert_int_eq(
	    links_secret(out, 33, PROTO_CLASSIC, secret, NULL, 0), 32);
	ck_assert_int_eq(
	    links_secret(out, 32, PROTO_CLASSIC, secret, NULL, 0), -1);
	ck_assert_int_eq(
	    links_secret(out, 0, PROTO_CLASSIC, secret, NULL, 0), -1);

	/* A host with odd characters is percent-encoded. */
	links_format(out, sizeof(out), LINKS_SCHEME_TG, "a b&c", 1,
	    PROTO_CLASSIC, secret, NULL, 0);
	ck_assert_int_eq(
	    strncmp(out, "tg://proxy?server=a%20b%26c&port=1&", 35), 0);
	links_format(out, sizeof(out), LINKS_SCHEME_TG, "2001:db8::1", 443,
	    PROTO_CLASSIC, secret, NULL, 0);
	ck_assert_int_eq(
	    strncmp(out, "tg://proxy?server=2001:db8::1&port=443&", 39), 0);
}
END_TEST

/* Reads the half-block drawing back into a dark/light module grid. */
static int
qr_read_back(const char *text, int size, unsigned char *grid)
{
	const char *p = text;
	int y = 0;

	memset(grid, 0, (size_t)size * (size_t)(size + 1));
	while (*p != '\0') {
		int x = 0;

		while (*p != '\n') {
			int top, bot;

			if (strncmp(p, "\xe2\x96\x88", 3) == 0) {
				top = 0, bot = 0, p += 3;
			} else if (strncmp(p, "\xe2\x96\x80", 3) == 0) {
				top = 0, bot = 1, p += 3;
			} else if (strncmp(p, "\xe2\x96\x84", 3) == 0) {
				top = 1, bot = 0, p += 3;
			} else if (*p == ' ') {
				top = 1, bot = 1, p += 1;
			} else
				return -1;
			if (x >= size || y + 1 > size)
				return -1;
			grid[y * size + x] = (unsigned char)top;
			grid[(y + 1) * size + x] = (unsigned char)bot;
			x++;
		}
		if (x != size)
			return -1;
		p++;
		y += 2;
	}
	return y;
}

START_TEST(test_qr)
{
	const char *link = V("link_ee_base64url");
	char *a, *b, *c;
	unsigned char *grid;
	QRcode *qr;
	int w, size, margin = -1, rows;

	a = links_qr_text(link);
	b = links_qr_text(link);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_gt(strlen(a), 0);
	ck_assert_str_eq(a, b);
	c = links_qr_text(V("link_ee_hex"));
	ck_assert_ptr_nonnull(c);
	ck_assert_str_ne(a, c);

	/* The drawing holds exactly the symbol libqrencode makes. */
	qr = QRcode_encodeString(link, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
	ck_assert_ptr_nonnull(qr);
	w = qr->width;
	/* Width of the first line in cells gives the quiet zone. */
	size = 0;
	for (const char *p = a; *p != '\n'; size++)
		p += *p == ' ' ? 1 : 3;
	margin = (size - w) / 2;
	ck_assert_int_ge(margin, 1);
	ck_assert_int_eq(size, w + 2 * margin);
	grid = malloc((size_t)size * (size_t)(size + 1));
	ck_assert_ptr_nonnull(grid);
	rows = qr_read_back(a, size, grid);
	ck_assert_int_eq(rows, (size + 1) / 2 * 2);
	for (int y = 0; y < size + 1 && y < rows; y++)
		for (int x = 0; x < size; x++) {
			int mx = x - margin, my = y - margin, want = 0;

			if (mx >= 0 && mx < w && my >= 0 && my < w)
				want = qr->data[my * w + mx] & 1;
			ck_assert_msg(
			    grid[y * size + x] == want, "module %d,%d", x, y);
		}
	QRcode_free(qr);
	free(grid);
	free(a);
	free(b);
	free(c);
}
END_TEST

static char *
print_to_string(const struct config *cfg, const char *srv, int qr)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	links_print(f, cfg, srv, NULL, qr);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_ptr_nonnull(buf);
	return buf;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

START_TEST(test_print)
{
	char conf[1024], err[CONFIG_ERR_MAX] = "", want[LINKS_MAX];
	char hex[33];
	struct config *cfg;
	char *out;

	hex_encode(secret, 16, hex);
	snprintf(conf, sizeof(conf),
	    "listeners = (\n"
	    "  { name = \"front\"; address = \"127.0.0.2\"; port = %u;\n"
	    "    protocols = [ \"classic\", \"fake_tls\", \"secure\" ];\n"
	    "    tls_domain = \"%s\";\n"
	    "    users = ( { name = \"alice\"; secret = \"%s\"; },\n"
	    "      { name = \"bob\";\n"
	    "        secret = \"ffeeddccbbaa99887766554433221100\"; } ); },\n"
	    "  { name = \"back\"; port = 8443; protocols = [ \"secure\" ];\n"
	    "    users = ( { name = \"carol\"; secret = \"%s\"; } ); }\n"
	    ");\n",
	    port, domain, hex, hex);
	cfg = config_load_string(conf, "links.conf", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);

	out = print_to_string(cfg, server, 0);
	ck_assert_ptr_nonnull(
	    strstr(out, "# listener front, user alice, protocol fake_tls\n"));
	ck_assert_ptr_nonnull(
	    strstr(out, "# listener front, user bob, protocol classic\n"));
	ck_assert_ptr_nonnull(
	    strstr(out, "# listener back, user carol, protocol secure\n"));
	/* 2 users x 3 protocols + 1 user x 1 protocol */
	ck_assert_uint_eq(count(out, "# listener "), 7);
	ck_assert_uint_eq(count(out, "tg://proxy?"), 7);
	ck_assert_uint_eq(count(out, "https://t.me/proxy?"), 7 + 2);
	snprintf(want, sizeof(want), "%s\n", V("link_plain"));
	ck_assert_ptr_nonnull(strstr(out, want));
	snprintf(want, sizeof(want), "%s\n", V("link_dd"));
	ck_assert_ptr_nonnull(strstr(out, want));
	snprintf(want, sizeof(want), "%s\n", V("link_ee_hex"));
	ck_assert_ptr_nonnull(strstr(out, want));
	snprintf(want, sizeof(want), "%s\n", V("link_ee_base64url"));
	ck_assert_ptr_nonnull(strstr(out, want));
	/* Without QR no block characters appear. */
	ck_assert_ptr_null(strstr(out, "\xe2\x96"));
	/* fake_tls comes first. */
	ck_assert_ptr_nonnull(strstr(out, "protocol secure"));
	ck_assert_int_lt(strstr(out, "protocol fake_tls") - out,
	    strstr(out, "protocol secure") - out);
	free(out);

	/* No server given: the listener's own address, else a guess. */
	out = print_to_string(cfg, NULL, 1);
	ck_assert_ptr_nonnull(strstr(out, "tg://proxy?server=127.0.0.2&port="));
	ck_assert_ptr_nonnull(strstr(out, "# listener back: server address "));
	ck_assert_ptr_null(strstr(out, "# listener front: server address"));
	ck_assert_uint_gt(count(out, "\xe2\x96\x88"), 7 * 20);
	free(out);
	config_free(cfg);
}
END_TEST

START_TEST(test_print_tls_domains)
{
	char conf[1024], err[CONFIG_ERR_MAX] = "", want[LINKS_MAX];
	char hex[33];
	struct config *cfg;
	char *out;

	hex_encode(secret, 16, hex);
	snprintf(conf, sizeof(conf),
	    "listeners = (\n"
	    "  { name = \"front\"; port = 443;\n"
	    "    protocols = [ \"fake_tls\" ]; tls_domain = \"a.example\";\n"
	    "    tls_domains = [ \"b.example\", \"c.example=[::1]:8443\" ];\n"
	    "    users = ( { name = \"alice\"; secret = \"%s\"; } ); }\n"
	    ");\n",
	    hex);
	cfg = config_load_string(conf, "links.conf", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	out = print_to_string(cfg, "p.example", 0);
	/* One tg link per name; each name's in its secret. */
	ck_assert_uint_eq(count(out, "tg://proxy?"), 3);
	ck_assert_ptr_nonnull(strstr(
	    out, "# listener front, user alice, fake_tls as b.example\n"));
	snprintf(want, sizeof(want),
	    "tg://proxy?server=p.example&port=443&secret=ee%s%s\n", hex,
	    "632e6578616d706c65");
	ck_assert_ptr_nonnull(strstr(out, want));
	free(out);
	config_free(cfg);
}
END_TEST

START_TEST(test_gen_secret)
{
	char a[33], b[33], buf[64];
	uint8_t s[16];
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	ck_assert_int_eq(links_gen_secret(a), 0);
	ck_assert_int_eq(links_gen_secret(b), 0);
	ck_assert_uint_eq(strlen(a), 32);
	ck_assert_int_eq(config_parse_secret(a, s), 0);
	ck_assert_str_ne(a, b);

	f = open_memstream(&out, &len);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(links_print_secret(f, secret, domain), 0);
	fclose(f);
	snprintf(buf, sizeof(buf), "secret = \"%s\";", V("plain_hex"));
	ck_assert_ptr_nonnull(strstr(out, buf));
	snprintf(buf, sizeof(buf), "classic:  %s\n", V("plain_hex"));
	ck_assert_ptr_nonnull(strstr(out, buf));
	snprintf(buf, sizeof(buf), "secure:   %s\n", V("dd_hex"));
	ck_assert_ptr_nonnull(strstr(out, buf));
	ck_assert_ptr_nonnull(strstr(out, V("ee_hex")));
	ck_assert_ptr_nonnull(strstr(out, V("ee_base64url")));
	free(out);

	out = NULL;
	f = open_memstream(&out, &len);
	ck_assert_int_eq(links_print_secret(f, secret, NULL), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(out, V("dd_hex")));
	ck_assert_ptr_null(strstr(out, "fake_tls: ee"));
	free(out);
}
END_TEST

/* Issue 13: which hosts a listener's links name. */
START_TEST(test_hosts)
{
	char err[CONFIG_ERR_MAX] = "", hosts[2][LINKS_HOST_MAX];
	char note[LINKS_NOTE_MAX], key[256];
	struct pubaddr_state pub;
	struct config *cfg;
	size_t n;

	cfg = config_load_string(
	    "listeners = (\n"
	    "  { name = \"v4\"; address = \"0.0.0.0\"; port = 1;\n"
	    "    protocols = [ \"secure\" ];\n"
	    "    users = ( { secret = \"00112233445566778899aabbccddeeff\"; "
	    "} ); },\n"
	    "  { name = \"dual\"; address = \"::\"; port = 2;\n"
	    "    protocols = [ \"secure\" ];\n"
	    "    users = ( { secret = \"00112233445566778899aabbccddeeff\"; "
	    "} ); },\n"
	    "  { name = \"named\"; address = \"::\"; port = 3;\n"
	    "    server = \"proxy.example.net\"; protocols = [ \"secure\" ];\n"
	    "    users = ( { secret = \"00112233445566778899aabbccddeeff\"; "
	    "} ); }\n"
	    ");\n",
	    "hosts.conf", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	memset(&pub, 0, sizeof(pub));
	snprintf(pub.v4, sizeof(pub.v4), "203.0.113.5");
	snprintf(pub.from4, sizeof(pub.from4), "stun a:1, https://b/");
	snprintf(pub.v6, sizeof(pub.v6), "2001:db8::5");
	snprintf(pub.from6, sizeof(pub.from6), "stun a:1, twice");

	ck_assert_int_eq(links_hosts(&cfg->listeners[0], NULL, &pub, hosts, &n,
	                     note, sizeof(note)),
	    0);
	ck_assert_uint_eq(n, 1); /* 0.0.0.0 takes no IPv6 client */
	ck_assert_str_eq(hosts[0], "203.0.113.5");
	ck_assert_str_eq(
	    note, "public IPv4 address 203.0.113.5 (stun a:1, https://b/)");
	links_hosts(
	    &cfg->listeners[1], NULL, &pub, hosts, &n, note, sizeof(note));
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(hosts[1], "2001:db8::5");
	links_hosts(
	    &cfg->listeners[2], NULL, &pub, hosts, &n, note, sizeof(note));
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(hosts[0], "proxy.example.net");
	ck_assert_str_eq(note, "");
	/* --server wins over everything. */
	links_hosts(&cfg->listeners[2], "cli.example", &pub, hosts, &n, note,
	    sizeof(note));
	ck_assert_str_eq(hosts[0], "cli.example");
	links_hosts_key(cfg, NULL, &pub, key, sizeof(key));
	ck_assert_str_eq(
	    key, "203.0.113.5 203.0.113.5 2001:db8::5 proxy.example.net");
	/* Nothing found: a guess, with the reason. */
	memset(&pub, 0, sizeof(pub));
	snprintf(pub.why, sizeof(pub.why), "IPv4: no source answered");
	ck_assert_int_eq(links_hosts(&cfg->listeners[0], NULL, &pub, hosts, &n,
	                     note, sizeof(note)),
	    1);
	ck_assert_ptr_nonnull(strstr(note,
	    "guessed from the interfaces: "
	    "IPv4: no source answered"));
	config_free(cfg);
}
END_TEST

static Suite *
links_suite(void)
{
	Suite *s = suite_create("links");
	TCase *tc = tcase_create("links");

	tcase_add_unchecked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_secret_forms);
	tcase_add_test(tc, test_base64url_roundtrip);
	tcase_add_test(tc, test_links);
	tcase_add_test(tc, test_links_errors);
	tcase_add_test(tc, test_qr);
	tcase_add_test(tc, test_print);
	tcase_add_test(tc, test_print_tls_domains);
	tcase_add_test(tc, test_hosts);
	tcase_add_test(tc, test_gen_secret);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(links_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
