#include "autoconf.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "msg.h"

static int sv[2];
static struct msg m;

static void
setup(void)
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
}

static void
teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

START_TEST(round_trip)
{
	struct msgbuf mb;
	uint32_t a, b;
	uint64_t c;
	char s[6];

	msgbuf_init(&mb, MSG_LINK_REQUEST);
	msgbuf_put_u32(&mb, 0xdeadbeef);
	msgbuf_put_u32(&mb, (uint32_t)-4);
	msgbuf_put_u64(&mb, 0x0102030405060708ULL);
	msgbuf_put_bytes(&mb, "hello", 6);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_uint_eq(m.type, MSG_LINK_REQUEST);
	ck_assert_int_eq(m.fd, -1);
	ck_assert_int_eq(msg_get_u32(&m, &a), 0);
	ck_assert_int_eq(msg_get_u32(&m, &b), 0);
	ck_assert_int_eq(msg_get_u64(&m, &c), 0);
	ck_assert_int_eq(msg_get_bytes(&m, s, 6), 0);
	ck_assert_int_eq(msg_end(&m), 0);
	ck_assert_uint_eq(a, 0xdeadbeef);
	ck_assert_int_eq((int32_t)b, -4);
	ck_assert_uint_eq(c, 0x0102030405060708ULL);
	ck_assert_str_eq(s, "hello");
	ck_assert_str_eq(msg_type_name(m.type), "link-request");
}
END_TEST

START_TEST(simple_and_eof)
{
	ck_assert_int_eq(msg_send_simple(sv[0], MSG_DRAIN), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_uint_eq(m.type, MSG_DRAIN);
	ck_assert_int_eq(msg_end(&m), 0);
	close(sv[0]);
	sv[0] = open("/dev/null", O_RDONLY);
	ck_assert_int_eq(msg_recv(sv[1], &m), 0);
}
END_TEST

START_TEST(fd_passing)
{
	struct msgbuf mb;
	int p[2];
	char buf[8] = "";

	ck_assert_int_eq(pipe(p), 0);
	msgbuf_init(&mb, MSG_DCPOOL_PEER);
	msgbuf_put_u32(&mb, 3);
	msgbuf_put_u32(&mb, 7);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, p[1]), 0);
	close(p[1]);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_ne(m.fd, -1);
	int fd = msg_take_fd(&m);
	ck_assert_int_eq(m.fd, -1);
	/* The passed fd is the pipe's write end: what we write arrives. */
	ck_assert_int_eq(write(fd, "ok", 3), 3);
	close(fd);
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 3);
	ck_assert_str_eq(buf, "ok");
	close(p[0]);
	msg_done(&m);
}
END_TEST

START_TEST(short_payload_rejected_by_getters)
{
	struct msgbuf mb;
	uint32_t a;
	uint64_t c;

	msgbuf_init(&mb, MSG_LINK_REFUSED);
	msgbuf_put_u32(&mb, 1);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_u32(&m, &a), 0);
	ck_assert_int_eq(msg_get_u64(&m, &c), -1); /* past the end */
	ck_assert_int_eq(msg_end(&m), -1);
	/* Trailing bytes are an error too. */
	msgbuf_init(&mb, MSG_LINK_REFUSED);
	msgbuf_put_u32(&mb, 1);
	msgbuf_put_u32(&mb, 2);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_u32(&m, &a), 0);
	ck_assert_int_eq(msg_end(&m), -1);
}
END_TEST

static int
count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return n;
}

START_TEST(malformed_rejected)
{
	uint32_t raw[4];
	int p[2];

	/* Unknown type. */
	raw[0] = 9999;
	raw[1] = 0;
	ck_assert_int_eq(send(sv[0], raw, 8, 0), 8);
	ck_assert_int_eq(msg_recv(sv[1], &m), -2);
	/* Length field disagrees with the datagram. */
	raw[0] = MSG_DRAIN;
	raw[1] = 12;
	raw[2] = 0;
	ck_assert_int_eq(send(sv[0], raw, 12, 0), 12);
	ck_assert_int_eq(msg_recv(sv[1], &m), -2);
	/* Shorter than a header. */
	ck_assert_int_eq(send(sv[0], raw, 3, 0), 3);
	ck_assert_int_eq(msg_recv(sv[1], &m), -2);
	/* Type zero. */
	raw[0] = MSG_NONE;
	raw[1] = 0;
	ck_assert_int_eq(send(sv[0], raw, 8, 0), 8);
	ck_assert_int_eq(msg_recv(sv[1], &m), -2);
	/* A malformed message's fd is closed, not leaked. */
	ck_assert_int_eq(pipe(p), 0);
	int before = count_fds();
	struct msgbuf mb;
	msgbuf_init(&mb, MSG_DRAIN);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, p[0]), 0);
	raw[0] = 4242;
	raw[1] = 0;
	/* forge: unknown type with an fd */
	{
		struct iovec iov = { raw, 8 };
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct msghdr mh = { .msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cbuf,
			.msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &p[1], sizeof(int));
		ck_assert_int_eq(sendmsg(sv[0], &mh, 0), 8);
	}
	ck_assert_int_eq(msg_recv(sv[1], &m), 1); /* the good one */
	ck_assert_int_ne(m.fd, -1);
	msg_done(&m);
	ck_assert_int_eq(msg_recv(sv[1], &m), -2); /* the forged one */
	ck_assert_int_eq(count_fds(), before);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(overflow_refused)
{
	static struct msgbuf mb;
	static uint8_t big[MSG_PAYLOAD_MAX + 1];

	msgbuf_init(&mb, MSG_TG_CONFIG);
	msgbuf_put_bytes(&mb, big, sizeof(big));
	ck_assert_int_eq(mb.overflow, 1);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(dcpool_peer_helpers)
{
	uint32_t slot = 0, gen = 0;
	int p[2], fd;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(msg_send_dcpool_peer(sv[0], 3, 7, p[0]), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	fd = msg_get_dcpool_peer(&m, &slot, &gen);
	ck_assert_int_ne(fd, -1);
	ck_assert_uint_eq(slot, 3);
	ck_assert_uint_eq(gen, 7);
	ck_assert_int_eq(m.fd, -1); /* taken */
	close(fd);
	/* No fd: malformed. */
	ck_assert_int_eq(msg_send_dcpool_peer(sv[0], 1, 2, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_dcpool_peer(&m, &slot, &gen), -1);
	/* Another type with the same payload: malformed. */
	struct msgbuf mb;
	msgbuf_init(&mb, MSG_LINK_REFUSED);
	msgbuf_put_u32(&mb, 1);
	msgbuf_put_u32(&mb, 2);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, p[1]), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_dcpool_peer(&m, &slot, &gen), -1);
	msg_done(&m);
	close(p[0]);
	close(p[1]);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("msg");
	TCase *tc = tcase_create("msg");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, simple_and_eof);
	tcase_add_test(tc, fd_passing);
	tcase_add_test(tc, short_payload_rejected_by_getters);
	tcase_add_test(tc, malformed_rejected);
	tcase_add_test(tc, overflow_refused);
	tcase_add_test(tc, dcpool_peer_helpers);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
