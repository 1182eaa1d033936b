/* common/discover.c: STUN, "what is my IP" bodies, the vote. */
#include "autoconf.h"

#include <netinet/in.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discover.h"
#include "util.h"

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = 0;

	for (; *h != '\0'; h++) {
		unsigned v;

		if (*h == ' ' || *h == '\n')
			continue;
		ck_assert(n < cap);
		ck_assert_int_eq(sscanf(h, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		h++;
	}
	return n;
}

/* RFC 5769 2.2 and 2.3: the sample IPv4 and IPv6 responses. */
static const char rfc5769_v4[] = "0101003c 2112a442 b7e7a701 bc34d686 "
                                 "fa87dfae 8022000b 74657374 20766563 "
                                 "746f7220 00200008 0001a147 e112a643 "
                                 "00080014 2b91f599 fd9e90c3 8c7489f9 "
                                 "2af9ba53 f06be7d7 80280004 c07d4c96";
static const char rfc5769_v6[] = "01010048 2112a442 b7e7a701 bc34d686 "
                                 "fa87dfae 8022000b 74657374 20766563 "
                                 "746f7220 00200014 0002a147 0113a9fa "
                                 "a5d3f179 bc25f4b5 bed2b9d9 00080014 "
                                 "a382954e 4be67bf1 1784c97c 8292c275 "
                                 "bfe3ed41 80280004 c8fb0b4c";
static const uint8_t rfc5769_txid[STUN_TXID_LEN] = { 0xb7, 0xe7, 0xa7, 0x01,
	0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae };

static const char *
parse_str(const uint8_t *m, size_t n, const uint8_t *txid, char *buf,
    const char **why)
{
	struct sockaddr_storage ss;

	if (stun_binding_parse(m, n, txid, &ss, why) == -1)
		return "";
	return addr_str((struct sockaddr *)&ss, buf, ADDR_STRLEN);
}

START_TEST(test_rfc5769_vectors)
{
	uint8_t m[256];
	char buf[ADDR_STRLEN];
	const char *why = NULL;
	size_t n;

	n = unhex(rfc5769_v4, m, sizeof(m));
	ck_assert_uint_eq(n, 80);
	ck_assert_str_eq(
	    parse_str(m, n, rfc5769_txid, buf, &why), "192.0.2.1:32853");
	n = unhex(rfc5769_v6, m, sizeof(m));
	ck_assert_uint_eq(n, 92);
	ck_assert_str_eq(parse_str(m, n, rfc5769_txid, buf, &why),
	    "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}
END_TEST

START_TEST(test_request)
{
	uint8_t req[STUN_HEADER_LEN];
	static const uint8_t want[STUN_HEADER_LEN] = { 0x00, 0x01, 0x00, 0x00,
		0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
		0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae };

	stun_binding_request(req, rfc5769_txid);
	ck_assert_mem_eq(req, want, sizeof(want));
}
END_TEST

START_TEST(test_refused)
{
	uint8_t m[256], other[STUN_TXID_LEN];
	char buf[ADDR_STRLEN];
	const char *why;
	size_t n = unhex(rfc5769_v4, m, sizeof(m));

	/* Another transaction. */
	memcpy(other, rfc5769_txid, sizeof(other));
	other[11] ^= 1;
	why = NULL;
	ck_assert_str_eq(parse_str(m, n, other, buf, &why), "");
	ck_assert_str_eq(why, "another transaction");
	/* Every truncation. */
	for (size_t k = 0; k < n; k++) {
		why = NULL;
		ck_assert_str_eq(parse_str(m, k, rfc5769_txid, buf, &why), "");
		ck_assert_ptr_nonnull(why);
	}
	/* An error answer. */
	m[1] = 0x11;
	why = NULL;
	ck_assert_str_eq(parse_str(m, n, rfc5769_txid, buf, &why), "");
	ck_assert_str_eq(why, "binding error answer");
	m[1] = 0x01;
	/* A wrong cookie. */
	m[4] = 0;
	ck_assert_str_eq(parse_str(m, n, rfc5769_txid, buf, &why), "");
	m[4] = 0x21;
	/* An attribute longer than the message. */
	m[38] = 0x01;
	ck_assert_str_eq(parse_str(m, n, rfc5769_txid, buf, &why), "");
	ck_assert_str_eq(why, "truncated attribute");
	m[38] = 0x00;
	/* No address at all: the XOR-MAPPED-ADDRESS (at 36) renamed. */
	m[36] = 0x7f;
	ck_assert_str_eq(parse_str(m, n, rfc5769_txid, buf, &why), "");
	ck_assert_str_eq(why, "no mapped address in the answer");
}
END_TEST

START_TEST(test_plain_mapped)
{
	/* An RFC 3489 server: MAPPED-ADDRESS only. */
	uint8_t m[] = { 0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3,
		4, 5, 6, 7, 8, 9, 10, 11, 12, 0x00, 0x01, 0x00, 0x08, 0x00,
		0x01, 0x04, 0xd2, 198, 51, 100, 9 };
	static const uint8_t txid[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	char buf[ADDR_STRLEN];
	const char *why;

	ck_assert_str_eq(
	    parse_str(m, sizeof(m), txid, buf, &why), "198.51.100.9:1234");
	/* A bad family is no address. */
	m[25] = 0x03;
	ck_assert_str_eq(parse_str(m, sizeof(m), txid, buf, &why), "");
}
END_TEST

START_TEST(test_myip)
{
	char out[INET6_ADDRSTRLEN];
	int fam;

#define OK(s, want, f) \
	do { \
		ck_assert_int_eq( \
		    myip_parse((const uint8_t *)s, strlen(s), out, &fam), 0); \
		ck_assert_str_eq(out, want); \
		ck_assert_int_eq(fam, f); \
	} while (0)
#define BAD(s) \
	ck_assert_int_eq( \
	    myip_parse((const uint8_t *)s, sizeof(s) - 1, out, &fam), -1)
	OK("203.0.113.5", "203.0.113.5", AF_INET);
	OK(" 203.0.113.5\r\n", "203.0.113.5", AF_INET);
	OK("2001:DB8:0::7\n", "2001:db8::7", AF_INET6);
	BAD("");
	BAD("  \n");
	BAD("<html>203.0.113.5</html>");
	BAD("203.0.113.5 203.0.113.6");
	BAD("203.0.113.5\0");
	BAD("2001:db8::7::1");
	BAD("999.0.0.1");
#undef OK
#undef BAD
}
END_TEST

static const char *
vote(const struct discover_answer *a, size_t n, char *from, size_t cap)
{
	static char out[INET6_ADDRSTRLEN];

	if (discover_vote(a, n, out, from, cap) == -1)
		return "";
	return out;
}

START_TEST(test_vote)
{
	char from[256];
	const struct discover_answer agree[] = {
		{ "stun a:1", "203.0.113.5" },
		{ "https://b/", "203.0.113.5" },
	};
	const struct discover_answer disagree[] = {
		{ "stun a:1", "203.0.113.5" },
		{ "https://b/", "198.51.100.1" },
		{ "stun a:1", "203.0.113.5" },
		{ "https://b/", "198.51.100.1" },
	};
	const struct discover_answer majority[] = {
		{ "stun a:1", "203.0.113.5" },
		{ "stun c:1", "198.51.100.1" },
		{ "https://b/", "203.0.113.5" },
	};
	const struct discover_answer once[] = {
		{ "stun a:1", "203.0.113.5" },
	};
	const struct discover_answer twice[] = {
		{ "stun a:1", "203.0.113.5" },
		{ "stun a:1", "203.0.113.5" },
	};
	const struct discover_answer fickle[] = {
		{ "stun a:1", "203.0.113.5" },
		{ "stun a:1", "203.0.113.6" },
		{ "https://b/", "203.0.113.6" },
	};

	ck_assert_str_eq(vote(agree, 2, from, sizeof(from)), "203.0.113.5");
	ck_assert_str_eq(from, "stun a:1, https://b/");
	ck_assert_str_eq(vote(disagree, 4, from, sizeof(from)), "");
	ck_assert_str_eq(from,
	    "the sources disagree: stun a:1 says 203.0.113.5, https://b/ "
	    "says 198.51.100.1");
	ck_assert_str_eq(vote(majority, 3, from, sizeof(from)), "203.0.113.5");
	ck_assert_str_eq(vote(once, 1, from, sizeof(from)), "");
	ck_assert_str_eq(from, "only stun a:1 answered (203.0.113.5), once");
	ck_assert_str_eq(vote(twice, 2, from, sizeof(from)), "203.0.113.5");
	ck_assert_str_eq(from, "stun a:1, twice");
	/* A source that changes its mind counts for nothing; one left,
	 * once: not enough. */
	ck_assert_str_eq(vote(fickle, 3, from, sizeof(from)), "");
	ck_assert_str_eq(vote(NULL, 0, from, sizeof(from)), "");
	ck_assert_str_eq(from, "no source answered");
	/* A short buffer truncates the reason, nothing more. */
	ck_assert_str_eq(vote(disagree, 4, from, 10), "");
	ck_assert_uint_eq(strlen(from), 9);
}
END_TEST

static Suite *
discover_suite(void)
{
	Suite *s = suite_create("discover");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_rfc5769_vectors);
	tcase_add_test(tc, test_request);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_plain_mapped);
	tcase_add_test(tc, test_myip);
	tcase_add_test(tc, test_vote);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(discover_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
