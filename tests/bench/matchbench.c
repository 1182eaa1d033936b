/*
 * The cost of finding a first-contact client's user among N (common/
 * match.c): match_o2() on obfuscated2 headers and match_tls() on fake-TLS
 * ClientHellos of 517 bytes, each made with a random user's secret and no
 * hint, so that on average half the users are tried. Prints CPU µs per
 * match and ns per user tried, with the 16-lane scans (match16.h,
 * AVX-512), the 8-lane ones (AVX2) where this CPU has them, and one user
 * at a time. Prints numbers only; nothing passes or fails here.
 *
 *   tests/bench/matchbench [N]      (default 10000)
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "match.h"
#include "match16.h"
#include "o2.h"
#include "tls.h"
#include "util.h"

#define SAMPLES 64 /* distinct handshakes, used in turn */

static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sample {
	uint8_t msg[TLS_HELLO_MAX];
	size_t len;
	long user;
};

/* Match samples in turn for about a second of CPU; prints the rate. */
static int
run(const char *what, const struct match_keys *k, const struct sample *s,
    int tls)
{
	double t0 = cpu_s(), t;
	long calls = 0, tried = 0;
	uint32_t ts;

	do {
		for (int i = 0; i < SAMPLES; i++) {
			long u = tls
			    ? match_tls(k, s[i].msg, s[i].len, NULL, 0, &ts)
			    : match_o2(k, s[i].msg, NULL, 0);
			if (u != s[i].user) {
				fprintf(stderr,
				    "%s: sample %d: user %ld, want %ld\n", what,
				    i, u, s[i].user);
				return -1;
			}
			tried += u + 1;
		}
		calls += SAMPLES;
	} while ((t = cpu_s() - t0) < 1);
	printf("%-26s users=%zu lanes=%d us_per_match=%.1f "
	       "ns_per_user_tried=%.1f\n",
	    what, k->n, k->lanes ? k->lanes : 1, t * 1e6 / (double)calls,
	    t * 1e9 / (double)tried);
	return 0;
}

/* Samples of both kinds for random users; 0, or -1 on failure. */
static int
samples_make(struct sample *o2, struct sample *hello,
    const uint8_t (*secrets)[16], long n)
{
	for (int i = 0; i < SAMPLES; i++) {
		struct o2_session c;
		uint8_t r[8];

		random_bytes(r, sizeof(r));
		o2[i].user = hello[i].user = (long)(get_le64(r) % (uint64_t)n);
		if (o2_connect(o2[i].msg, O2_TAG_PADDED, 2, secrets[o2[i].user],
		        NULL, &c) == -1)
			return -1;
		o2_session_free(&c);
		hello[i].len = tls_client_hello_build(hello[i].msg,
		    sizeof(hello[i].msg), secrets[hello[i].user],
		    "www.example.com", (uint32_t)time(NULL), 517);
		if (hello[i].len == 0)
			return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000;
	struct sample *o2 = calloc(SAMPLES, sizeof(*o2));
	struct sample *hello = calloc(SAMPLES, sizeof(*hello));
	uint8_t(*secrets)[16] = calloc(n > 0 ? (size_t)n : 1, 16);
	struct match_keys k;
	int rc = 1;

	if (n < 1 || o2 == NULL || hello == NULL || secrets == NULL)
		goto done;
	random_bytes(secrets, (size_t)n * 16);
	if (samples_make(o2, hello, (const void *)secrets, n) == -1)
		goto done;
	/* 16 lanes, 8, one at a time: what the CPU has of them. */
	rc = 0;
	for (int pass = 0; pass < 3 && rc == 0; pass++) {
		if (pass == 1)
			setenv("MTPROTOD_NO_AVX512", "1", 1);
		if (pass == 2)
			setenv("MTPROTOD_NO_AVX2", "1", 1);
		if (match_keys_init(&k, (const void *)secrets, (size_t)n) ==
		    -1) {
			rc = 1;
			break;
		}
		if ((pass == 0 && k.lanes != 16) || (pass == 1 && k.lanes != 8))
			printf("(no %d lanes on this CPU)\n", pass ? 8 : 16);
		else if (run("obfuscated2 (match_o2)", &k, o2, 0) == -1 ||
		    run("fake TLS (match_tls)", &k, hello, 1) == -1)
			rc = 1;
		match_keys_free(&k);
	}
done:
	free(o2);
	free(hello);
	free(secrets);
	return rc;
}
