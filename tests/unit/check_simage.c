/*
 * Session handoff pieces: the session image's byte layout (round trip,
 * truncation, wrong version, bad fields), a CTR stream continued from its
 * exported state, and MSG_SESSION with its descriptors (inline and in a
 * memfd).
 */
#include "autoconf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "crypto.h"
#include "msg.h"
#include "worker/simage.h"

static uint8_t out_c[3000], out_s[70000], inb[100];

static void
sample(struct session_image *im)
{
	memset(im, 0, sizeof(*im));
	strcpy(im->listener, "main");
	strcpy(im->user, "alice");
	im->mode = 1;
	im->flags = SIMAGE_TLS | SIMAGE_HELLO_SENT;
	im->dc = -2;
	im->tag = 0xdddddddd;
	memcpy(im->tls_hdr, "\x17\x03\x03", 3);
	im->tls_hdr_len = 3;
	im->tls_flags = 1;
	im->tls_left = 777;
	im->tls_out_records = 12345;
	im->c_dec.present = 1;
	memset(im->c_dec.key, 0xab, 32);
	memset(im->c_dec.ctr, 0xcd, 16);
	im->c_dec.num = 7;
	im->s_enc.present = 1;
	memset(im->s_enc.key, 0x11, 32);
	im->s_enc.num = 15;
	memset(im->peer, 0x22, sizeof(im->peer));
	memset(im->local, 0x33, sizeof(im->local));
	im->idle_ms = 123456789;
	for (size_t i = 0; i < sizeof(out_c); i++)
		out_c[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(out_s); i++)
		out_s[i] = (uint8_t)(i * 13);
	im->c.eof = 1;
	im->c.out = out_c;
	im->c.outlen = sizeof(out_c);
	im->s.shut = 1;
	im->s.out = out_s;
	im->s.outlen = sizeof(out_s);
	im->conn_id = 0x0102030405060708ULL;
	im->link = 3;
	im->mflags = SIMAGE_M_HAD_LINK;
	im->sent_mark = 0xabcdef;
	memset(inb, 0x44, sizeof(inb));
	im->inbuf = inb;
	im->inlen = sizeof(inb);
}

START_TEST(image_round_trip)
{
	struct session_image a, b;
	uint8_t *blob;
	size_t len;

	sample(&a);
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(session_image_decode(blob, len, &b), 0);
	ck_assert_str_eq(b.listener, "main");
	ck_assert_str_eq(b.user, "alice");
	ck_assert_uint_eq(b.mode, 1);
	ck_assert_uint_eq(b.flags, SIMAGE_TLS | SIMAGE_HELLO_SENT);
	ck_assert_int_eq(b.dc, -2);
	ck_assert_uint_eq(b.tag, 0xdddddddd);
	ck_assert_mem_eq(b.tls_hdr, a.tls_hdr, 5);
	ck_assert_uint_eq(b.tls_hdr_len, 3);
	ck_assert_uint_eq(b.tls_flags, 1);
	ck_assert_uint_eq(b.tls_left, 777);
	ck_assert_uint_eq(b.tls_out_records, 12345);
	ck_assert_mem_eq(&b.c_dec, &a.c_dec, sizeof(a.c_dec));
	ck_assert_mem_eq(&b.s_enc, &a.s_enc, sizeof(a.s_enc));
	ck_assert_uint_eq(b.c_enc.present, 0);
	ck_assert_mem_eq(b.peer, a.peer, sizeof(a.peer));
	ck_assert_mem_eq(b.local, a.local, sizeof(a.local));
	ck_assert_uint_eq(b.idle_ms, 123456789);
	ck_assert_uint_eq(b.c.eof, 1);
	ck_assert_uint_eq(b.c.shut, 0);
	ck_assert_uint_eq(b.c.outlen, sizeof(out_c));
	ck_assert_mem_eq(b.c.out, out_c, sizeof(out_c));
	ck_assert_uint_eq(b.s.shut, 1);
	ck_assert_uint_eq(b.s.outlen, sizeof(out_s));
	ck_assert_mem_eq(b.s.out, out_s, sizeof(out_s));
	ck_assert_uint_eq(b.conn_id, 0x0102030405060708ULL);
	ck_assert_uint_eq(b.link, 3);
	ck_assert_uint_eq(b.mflags, SIMAGE_M_HAD_LINK);
	ck_assert_uint_eq(b.sent_mark, 0xabcdef);
	ck_assert_uint_eq(b.inlen, sizeof(inb));
	ck_assert_mem_eq(b.inbuf, inb, sizeof(inb));
	free(blob);
}
END_TEST

START_TEST(image_empty_runs)
{
	struct session_image a, b;
	uint8_t *blob;
	size_t len;

	memset(&a, 0, sizeof(a));
	strcpy(a.listener, "l");
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(session_image_decode(blob, len, &b), 0);
	ck_assert_str_eq(b.user, "");
	ck_assert_uint_eq(b.c.outlen, 0);
	ck_assert_ptr_null(b.c.out);
	free(blob);
}
END_TEST

START_TEST(image_truncated_or_long_refused)
{
	struct session_image a, b;
	uint8_t *blob, *big;
	size_t len;

	sample(&a);
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	/* Every cut is refused, at every length. */
	for (size_t n = 0; n < len; n += (n < 400 ? 1 : 997))
		ck_assert_int_eq(session_image_decode(blob, n, &b), -1);
	ck_assert_int_eq(session_image_decode(blob, len - 1, &b), -1);
	big = malloc(len + 1);
	memcpy(big, blob, len);
	big[len] = 0;
	ck_assert_int_eq(session_image_decode(big, len + 1, &b), -1);
	free(big);
	free(blob);
}
END_TEST

START_TEST(image_wrong_version_or_magic_refused)
{
	struct session_image a, b;
	uint8_t *blob;
	size_t len;
	uint32_t v;

	sample(&a);
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	memcpy(&v, blob + 4, 4);
	ck_assert_uint_eq(v, SESSION_IMAGE_VERSION);
	v++;
	memcpy(blob + 4, &v, 4);
	ck_assert_int_eq(session_image_decode(blob, len, &b), -1);
	v--;
	memcpy(blob + 4, &v, 4);
	ck_assert_int_eq(session_image_decode(blob, len, &b), 0);
	blob[0] ^= 1;
	ck_assert_int_eq(session_image_decode(blob, len, &b), -1);
	free(blob);
}
END_TEST

START_TEST(image_bad_fields_refused)
{
	struct session_image a, b;
	uint8_t *blob;
	size_t len;

	/* A name without room for its NUL is not encoded. */
	sample(&a);
	memset(a.user, 'x', sizeof(a.user));
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), -1);
	/* Out-of-range fields written by a broken peer are refused. */
	sample(&a);
	a.c_dec.num = 16;
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(session_image_decode(blob, len, &b), -1);
	free(blob);
	sample(&a);
	a.dc = 40000;
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(session_image_decode(blob, len, &b), -1);
	free(blob);
	sample(&a);
	a.flags |= 0x80;
	ck_assert_int_eq(session_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(session_image_decode(blob, len, &b), -1);
	free(blob);
}
END_TEST

START_TEST(link_image_round_trip_and_refusals)
{
	struct link_image a, b;
	uint8_t rb[300], wq[5000], *blob;
	size_t len;

	memset(&a, 0, sizeof(a));
	a.id = 7;
	a.dc = -4;
	for (size_t i = 0; i < sizeof(a.keys); i++)
		a.keys[i] = (uint8_t)i;
	memset(a.me, 0x5a, sizeof(a.me));
	memset(rb, 0x61, sizeof(rb));
	memset(wq, 0x62, sizeof(wq));
	a.rbuf = rb;
	a.rlen = sizeof(rb);
	a.rdec = 288;
	a.wq = wq;
	a.wqlen = sizeof(wq);
	a.queued_total = 1000000;
	a.written_total = 995000;
	a.nclients = 42;
	a.rx_age_ms = 15;
	a.ping_age_ms = 20000;
	ck_assert_int_eq(link_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(link_image_decode(blob, len, &b), 0);
	ck_assert_uint_eq(b.id, 7);
	ck_assert_int_eq(b.dc, -4);
	ck_assert_mem_eq(b.keys, a.keys, sizeof(a.keys));
	ck_assert_mem_eq(b.me, a.me, sizeof(a.me));
	ck_assert_uint_eq(b.rlen, sizeof(rb));
	ck_assert_mem_eq(b.rbuf, rb, sizeof(rb));
	ck_assert_uint_eq(b.rdec, 288);
	ck_assert_uint_eq(b.wqlen, sizeof(wq));
	ck_assert_mem_eq(b.wq, wq, sizeof(wq));
	ck_assert_uint_eq(b.queued_total, 1000000);
	ck_assert_uint_eq(b.written_total, 995000);
	ck_assert_uint_eq(b.nclients, 42);
	ck_assert_uint_eq(b.rx_age_ms, 15);
	ck_assert_uint_eq(b.ping_age_ms, 20000);
	for (size_t n = 0; n < len; n += (n < 300 ? 1 : 401))
		ck_assert_int_eq(link_image_decode(blob, n, &b), -1);
	/* A session image is not a link image, nor the reverse. */
	struct session_image si;
	ck_assert_int_eq(session_image_decode(blob, len, &si), -1);
	blob[4] ^= 1; /* version */
	ck_assert_int_eq(link_image_decode(blob, len, &b), -1);
	free(blob);
	/* More written than queued, or decrypted past what was read:
	 * refused. */
	a.written_total = a.queued_total + 1;
	ck_assert_int_eq(link_image_encode(&a, &blob, &len), 0);
	ck_assert_int_eq(link_image_decode(blob, len, &b), -1);
	free(blob);
	a.written_total = 0;
	a.rdec = a.rlen + 1;
	ck_assert_int_eq(link_image_encode(&a, &blob, &len), -1);
}
END_TEST

/* A CTR stream cut anywhere and resumed from its export gives the same
 * keystream as one that never stopped. */
START_TEST(ctr_resume_continues_the_stream)
{
	uint8_t key[32], iv[16], a[1000], b[1000], ctr[16];
	uint32_t num;

	srand(7);
	for (int t = 0; t < 300; t++) {
		for (int i = 0; i < 32; i++)
			key[i] = (uint8_t)rand();
		for (int i = 0; i < 16; i++)
			iv[i] = (uint8_t)(t % 3 == 0 ? 0xff : rand());
		size_t cut = (size_t)rand() % sizeof(a);
		memset(a, 0, sizeof(a));
		memset(b, 0, sizeof(b));
		crypto_stream *s = crypto_ctr_new(key, iv);
		ck_assert_int_eq(crypto_stream_apply(s, a, a, sizeof(a)), 0);
		crypto_stream_free(s);
		s = crypto_ctr_new(key, iv);
		ck_assert_int_eq(crypto_stream_apply(s, b, b, cut), 0);
		ck_assert_int_eq(crypto_ctr_export(s, ctr, &num), 0);
		ck_assert_uint_le(num, 15);
		crypto_stream_free(s);
		s = crypto_ctr_resume(key, ctr, num);
		ck_assert_ptr_nonnull(s);
		ck_assert_int_eq(
		    crypto_stream_apply(s, b + cut, b + cut, sizeof(b) - cut),
		    0);
		crypto_stream_free(s);
		ck_assert_mem_eq(a, b, sizeof(a));
	}
	ck_assert_ptr_null(crypto_ctr_resume(key, iv, 16));
}
END_TEST

static int
fd_inode_eq(int a, int b)
{
	struct stat sa, sb;
	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 &&
	    sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static void
session_msg(size_t len, int with_backend)
{
	int sv[2], p1[2], p2[2], cfd, bfd;
	uint8_t *img = malloc(len), *got;
	size_t glen;
	static struct msg m;

	for (size_t i = 0; i < len; i++)
		img[i] = (uint8_t)(i * 31 + 1);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	ck_assert_int_eq(pipe(p1), 0);
	ck_assert_int_eq(pipe(p2), 0);
	ck_assert_int_eq(msg_send_session(sv[0], MSG_SESSION, img, len, p1[0],
	                     with_backend ? p2[0] : -1),
	    0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(m.type, MSG_SESSION);
	/* The wrong type is refused. */
	ck_assert_int_eq(
	    msg_get_session(&m, MSG_SESSION_BACK, &got, &glen, &cfd, &bfd), -1);
	ck_assert_int_eq(
	    msg_get_session(&m, MSG_SESSION, &got, &glen, &cfd, &bfd), 0);
	ck_assert_uint_eq(glen, len);
	ck_assert_mem_eq(got, img, len);
	ck_assert(fd_inode_eq(cfd, p1[0]));
	if (with_backend)
		ck_assert(fd_inode_eq(bfd, p2[0]));
	else
		ck_assert_int_eq(bfd, -1);
	msg_done(&m);
	close(cfd);
	if (bfd != -1)
		close(bfd);
	free(got);
	free(img);
	close(sv[0]);
	close(sv[1]);
	close(p1[0]);
	close(p1[1]);
	close(p2[0]);
	close(p2[1]);
}

START_TEST(session_message_inline)
{
	session_msg(1000, 1);
	session_msg(1000, 0);
}
END_TEST

START_TEST(session_message_memfd)
{
	/* Bigger than a message: the image travels in a memfd. */
	session_msg(300000, 1);
	session_msg(MSG_PAYLOAD_MAX, 0);
}
END_TEST

/* A session message whose flags do not match its descriptors is
 * refused. */
START_TEST(session_flags_must_match_fds)
{
	int sv[2], p[2];
	static struct msg m;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	ck_assert_int_eq(pipe(p), 0);
	/* An unknown flag. */
	uint32_t bad = 0x80;
	struct msgbuf mb;
	msgbuf_init(&mb, MSG_SESSION);
	msgbuf_put_u32(&mb, bad);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, p[0]), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	uint8_t *img;
	size_t len;
	int cfd, bfd;
	ck_assert_int_eq(
	    msg_get_session(&m, MSG_SESSION, &img, &len, &cfd, &bfd), -1);
	msg_done(&m);
	/* flags say a backend fd, none came: refused. */
	msgbuf_init(&mb, MSG_SESSION);
	msgbuf_put_u32(&mb, MSG_SESSION_BACKEND);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, p[0]), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(
	    msg_get_session(&m, MSG_SESSION, &img, &len, &cfd, &bfd), -1);
	msg_done(&m);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("simage");
	TCase *tc = tcase_create("simage");
	tcase_add_test(tc, image_round_trip);
	tcase_add_test(tc, image_empty_runs);
	tcase_add_test(tc, image_truncated_or_long_refused);
	tcase_add_test(tc, image_wrong_version_or_magic_refused);
	tcase_add_test(tc, image_bad_fields_refused);
	tcase_add_test(tc, link_image_round_trip_and_refusals);
	tcase_add_test(tc, ctr_resume_continues_the_stream);
	tcase_add_test(tc, session_message_inline);
	tcase_add_test(tc, session_message_memfd);
	tcase_add_test(tc, session_flags_must_match_fds);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
