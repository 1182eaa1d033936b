#include "autoconf.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>

#include "fptable.h"
#include "msg.h"
#include "rpc.h"

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

START_TEST(fingerprints_round_trip)
{
	static struct fptable a, b;
	struct msgbuf mb;

	fptable_init(&a, 0);
	fptable_init(&b, 0);
	fptable_add(&a, "0123", "t13d1516h2_aaa_bbb", FP_SERVED, 3);
	fptable_add(&a, "4567", "t13i0000h2_ccc_ddd", FP_FRONTED, 2);
	fptable_add(&a, FPTABLE_OTHER, FPTABLE_OTHER, FP_REFUSED, 9);
	fptable_add(&b, "0123", "t13d1516h2_aaa_bbb", FP_SERVED, 1);
	ck_assert_int_eq(msg_send_fingerprints(sv[0], &a), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_str_eq(msg_type_name(m.type), "fingerprints");
	ck_assert_int_eq(msg_get_fingerprints(&m, &b), 0);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_str_eq(b.e[0].ja4, "t13d1516h2_aaa_bbb");
	ck_assert_uint_eq(b.e[0].n[FP_SERVED], 4);
	ck_assert_str_eq(b.e[1].ja3, "4567");
	ck_assert_uint_eq(b.e[1].n[FP_FRONTED], 2);
	ck_assert_uint_eq(b.other[FP_REFUSED], 9);
	/* Malformed: too many entries, short, trailing bytes; b unchanged. */
	msgbuf_init(&mb, MSG_FINGERPRINTS);
	msgbuf_put_u32(&mb, FPTABLE_MAX + 1);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_fingerprints(&m, &b), -1);
	msgbuf_init(&mb, MSG_FINGERPRINTS);
	msgbuf_put_u32(&mb, 1);
	msgbuf_put_bytes(&mb, &a.e[0], sizeof(a.e[0]));
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_fingerprints(&m, &b), -1);
	msgbuf_init(&mb, MSG_FINGERPRINTS);
	msgbuf_put_u32(&mb, 0);
	for (int r = 0; r < FP_RESULTS + 1; r++)
		msgbuf_put_u64(&mb, 1);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_fingerprints(&m, &b), -1);
	ck_assert_uint_eq(b.e[0].n[FP_SERVED], 4);
	ck_assert_uint_eq(b.other[FP_REFUSED], 9);
	ck_assert_uint_eq(b.other[FP_SERVED], 0);
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

	msgbuf_init(&mb, MSG_LINK_GRANT);
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

/* Sends type with the first n bytes of payload p, and fd (or -1). */
static void
send_raw_payload(uint32_t type, const void *p, size_t n, int fd)
{
	static struct msgbuf mb;

	msgbuf_init(&mb, type);
	msgbuf_put_bytes(&mb, p, n);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, fd), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
}

START_TEST(empty_messages)
{
	static const uint32_t types[] = { MSG_DRAIN, MSG_QUIT, MSG_READY };
	int (*const send[])(
	    int) = { msg_send_drain, msg_send_quit, msg_send_ready };
	uint32_t junk = 1;
	int p[2], before;

	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(send[i](sv[0]), 0);
		ck_assert_int_eq(msg_recv(sv[1], &m), 1);
		ck_assert_uint_eq(m.type, types[i]);
		ck_assert_int_eq(msg_get_empty(&m, types[i]), 0);
		/* The wrong type, a payload, an fd: malformed. */
		ck_assert_int_eq(msg_get_empty(&m, MSG_REOPEN_LOG), -1);
		send_raw_payload(types[i], &junk, sizeof(junk), -1);
		ck_assert_int_eq(msg_get_empty(&m, types[i]), -1);
	}
	ck_assert_int_eq(pipe(p), 0);
	before = count_fds();
	send_raw_payload(MSG_QUIT, NULL, 0, p[0]);
	ck_assert_int_eq(msg_get_empty(&m, MSG_QUIT), -1);
	msg_done(&m);
	ck_assert_int_eq(count_fds(), before);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(reopen_log_helpers)
{
	uint32_t junk = 0;
	int p[2], fd = 7;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(msg_send_reopen_log(sv[0], p[1]), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_reopen_log(&m, &fd), 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(m.fd, -1); /* taken */
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	/* No fd: fine (syslog), *fd = -1. */
	ck_assert_int_eq(msg_send_reopen_log(sv[0], -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_reopen_log(&m, &fd), 0);
	ck_assert_int_eq(fd, -1);
	/* A payload: malformed. */
	send_raw_payload(MSG_REOPEN_LOG, &junk, sizeof(junk), -1);
	ck_assert_int_eq(msg_get_reopen_log(&m, &fd), -1);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(link_request_helpers)
{
	int16_t dc = 0;
	uint32_t req = 0, raw[3] = { (uint32_t)-2, 77, 0 };

	ck_assert_int_eq(msg_send_link_request(sv[0], -2, 0xfeedf00d), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_uint_eq(m.type, MSG_LINK_REQUEST);
	ck_assert_int_eq(msg_get_link_request(&m, &dc, &req), 0);
	ck_assert_int_eq(dc, -2);
	ck_assert_uint_eq(req, 0xfeedf00d);
	/* The wire layout the worker sends today: u32 dc, u32 id. */
	send_raw_payload(MSG_LINK_REQUEST, raw, 8, -1);
	ck_assert_int_eq(msg_get_link_request(&m, &dc, &req), 0);
	ck_assert_int_eq(dc, -2);
	ck_assert_uint_eq(req, 77);
	/* Truncated, too long, a DC out of int16 range, the wrong type. */
	send_raw_payload(MSG_LINK_REQUEST, raw, 7, -1);
	ck_assert_int_eq(msg_get_link_request(&m, &dc, &req), -1);
	send_raw_payload(MSG_LINK_REQUEST, raw, 12, -1);
	ck_assert_int_eq(msg_get_link_request(&m, &dc, &req), -1);
	raw[0] = 40000;
	send_raw_payload(MSG_LINK_REQUEST, raw, 8, -1);
	ck_assert_int_eq(msg_get_link_request(&m, &dc, &req), -1);
	raw[0] = 2;
	send_raw_payload(MSG_LINK_REFUSED, raw, 8, -1);
	ck_assert_int_eq(msg_get_link_request(&m, &dc, &req), -1);
}
END_TEST

static void
make_keys(
    struct rpc_link_keys *k, struct sockaddr_storage *me, socklen_t *melen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)me;

	memset(k, 0, sizeof(*k));
	memset(k->enc_key, 0x11, sizeof(k->enc_key));
	memset(k->dec_iv, 0x22, sizeof(k->dec_iv));
	k->seq_out = 5;
	k->seq_in = -2;
	k->crc32c = 1;
	memset(me, 0, sizeof(*me));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(8888);
	sin->sin_addr.s_addr = htonl(0x7f000001);
	*melen = sizeof(*sin);
}

START_TEST(link_grant_helpers)
{
	struct rpc_link_keys k, got;
	struct sockaddr_storage me, gotme;
	socklen_t melen;
	int16_t dc = 0;
	uint32_t req = 0;
	int p[2], fd, before;
	char buf[4] = "";
	static struct msgbuf mb;

	make_keys(&k, &me, &melen);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(
	    msg_send_link_grant(sv[0], 203, 9, &k, &me, melen, p[1]), 0);
	close(p[1]);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_uint_eq(m.type, MSG_LINK_GRANT);
	/* The layout: dc, req, keys, addrlen, sockaddr_storage. */
	ck_assert_uint_eq(m.len, 4 + 4 + sizeof(k) + 4 + sizeof(me));
	fd = msg_get_link_grant(&m, &dc, &req, &got, &gotme);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(m.fd, -1);
	ck_assert_int_eq(dc, 203);
	ck_assert_uint_eq(req, 9);
	ck_assert_mem_eq(&got, &k, sizeof(k));
	ck_assert_mem_eq(&gotme, &me, sizeof(me));
	ck_assert_int_eq(write(fd, "ok", 3), 3);
	close(fd);
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 3);
	ck_assert_str_eq(buf, "ok");
	/* A grant needs an fd, on both sides. */
	ck_assert_int_eq(
	    msg_send_link_grant(sv[0], 2, 1, &k, &me, melen, -1), -1);
	msg_build_link_grant(&mb, 2, 1, &k, &me, melen);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, -1), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_link_grant(&m, &dc, &req, &got, &gotme), -1);
	/* Truncated: refused, and the fd stays for msg_done to close. */
	before = count_fds();
	send_raw_payload(MSG_LINK_GRANT, mb.data, mb.len - 1, p[0]);
	ck_assert_int_eq(msg_get_link_grant(&m, &dc, &req, &got, &gotme), -1);
	msg_done(&m);
	ck_assert_int_eq(count_fds(), before);
	/* An address length past the storage. */
	msg_build_link_grant(&mb, 2, 1, &k, &me, sizeof(me) + 1);
	ck_assert_int_eq(msgbuf_send(sv[0], &mb, p[0]), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_link_grant(&m, &dc, &req, &got, &gotme), -1);
	msg_done(&m);
	ck_assert_int_eq(count_fds(), before);
	close(p[0]);
}
END_TEST

START_TEST(link_refused_helpers)
{
	int16_t dc = 0;
	uint32_t req = 0, retry = 0, raw[4] = { 2, 3, 4, 5 };

	ck_assert_int_eq(msg_send_link_refused(sv[0], -1, 41, 2000), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_uint_eq(m.type, MSG_LINK_REFUSED);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), 0);
	ck_assert_int_eq(dc, -1);
	ck_assert_uint_eq(req, 41); /* the request id comes back */
	ck_assert_uint_eq(retry, 2000);
	send_raw_payload(MSG_LINK_REFUSED, raw, 11, -1);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), -1);
	send_raw_payload(MSG_LINK_REFUSED, raw, 16, -1);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), -1);
	send_raw_payload(MSG_LINK_REQUEST, raw, 12, -1);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), -1);
}
END_TEST

static int
fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

/*
 * Item 9: a grant or refusal that meets a full worker channel waits in
 * the queue (the link's fd open) and goes out when there is room.
 */
START_TEST(outq_survives_a_full_channel)
{
	struct event_base *base = event_base_new();
	struct rpc_link_keys k, got;
	struct sockaddr_storage me, gotme;
	socklen_t melen;
	static struct msgbuf mb;
	struct msg_outq *q;
	int p[2], x[2], fd, before, filled = 0;
	int16_t dc;
	uint32_t req, retry;
	char buf[4] = "";

	ck_assert_ptr_nonnull(base);
	make_keys(&k, &me, &melen);
	ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	ck_assert_ptr_nonnull(q = msg_outq_new(base, sv[0], 3));
	ck_assert_int_eq(msg_outq_sock(q), sv[0]);
	/* Nothing waits: sent at once, our fd closed by the queue. */
	ck_assert_int_eq(pipe(p), 0);
	msg_build_link_refused(&mb, 2, 1, 100);
	ck_assert_int_eq(msg_outq_send(q, &mb, -1), 0);
	ck_assert_uint_eq(msg_outq_len(q), 0);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), 0);

	/* Fill the channel as a worker that does not read would. */
	while (msg_send_drain(sv[0]) == 0)
		filled++;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_gt(filled, 0);

	before = count_fds();
	msg_build_link_grant(&mb, 4, 10, &k, &me, melen);
	ck_assert_int_eq(msg_outq_send(q, &mb, p[1]), 0);
	ck_assert_uint_eq(msg_outq_len(q), 1);
	ck_assert(fd_open(p[1])); /* kept until sent */
	msg_build_link_refused(&mb, 5, 11, 250);
	ck_assert_int_eq(msg_outq_send(q, &mb, -1), 0);
	msg_build_link_refused(&mb, 6, 12, 250);
	ck_assert_int_eq(msg_outq_send(q, &mb, -1), 0);
	ck_assert_uint_eq(msg_outq_len(q), 3);
	/* Full: dropped, and its fd closed. */
	ck_assert_int_eq(pipe(x), 0);
	msg_build_link_grant(&mb, 7, 13, &k, &me, melen);
	ck_assert_int_eq(msg_outq_send(q, &mb, x[1]), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	ck_assert(!fd_open(x[1]));
	close(x[0]);
	/* Nothing moves while the channel stays full. */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	ck_assert_uint_eq(msg_outq_len(q), 3);

	/* The worker reads: the queue drains on EV_WRITE, in order. */
	for (int i = 0; i < filled; i++) {
		ck_assert_int_eq(msg_recv(sv[1], &m), 1);
		ck_assert_uint_eq(m.type, MSG_DRAIN);
	}
	for (int i = 0; i < 5 && msg_outq_len(q) > 0; i++)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_NONBLOCK), -1);
	ck_assert_uint_eq(msg_outq_len(q), 0);
	ck_assert(!fd_open(p[1])); /* our copy went with the grant */
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	fd = msg_get_link_grant(&m, &dc, &req, &got, &gotme);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dc, 4);
	ck_assert_uint_eq(req, 10);
	ck_assert_mem_eq(&got, &k, sizeof(k));
	ck_assert_int_eq(write(fd, "ok", 3), 3);
	close(fd);
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 3);
	ck_assert_str_eq(buf, "ok");
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), 0);
	ck_assert_uint_eq(req, 11);
	ck_assert_int_eq(msg_recv(sv[1], &m), 1);
	ck_assert_int_eq(msg_get_link_refused(&m, &dc, &req, &retry), 0);
	ck_assert_uint_eq(req, 12);
	ck_assert_int_eq(msg_recv(sv[1], &m), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(count_fds(), before - 1); /* p[1] is gone */
	close(p[0]);

	/* Freed with a grant waiting: the fd is closed, nothing leaks. */
	while (msg_send_drain(sv[0]) == 0)
		;
	ck_assert_int_eq(pipe(p), 0);
	msg_build_link_grant(&mb, 4, 14, &k, &me, melen);
	ck_assert_int_eq(msg_outq_send(q, &mb, p[1]), 0);
	ck_assert_uint_eq(msg_outq_len(q), 1);
	msg_outq_free(q);
	ck_assert(!fd_open(p[1]));
	close(p[0]);
	event_base_free(base);
}
END_TEST

/* A worker that is gone: the answer is dropped, its fd closed. */
START_TEST(outq_peer_gone)
{
	struct event_base *base = event_base_new();
	struct rpc_link_keys k;
	struct sockaddr_storage me;
	socklen_t melen;
	static struct msgbuf mb;
	struct msg_outq *q;
	int p[2];

	ck_assert_ptr_nonnull(base);
	make_keys(&k, &me, &melen);
	ck_assert_ptr_nonnull(q = msg_outq_new(base, sv[0], 3));
	close(sv[1]);
	sv[1] = open("/dev/null", O_RDONLY);
	ck_assert_int_eq(pipe(p), 0);
	msg_build_link_grant(&mb, 4, 1, &k, &me, melen);
	ck_assert_int_eq(msg_outq_send(q, &mb, p[1]), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert(!fd_open(p[1]));
	msg_build_link_refused(&mb, 4, 2, 1);
	ck_assert_int_eq(msg_outq_send(q, &mb, -1), -1);
	msg_outq_free(q);
	close(p[0]);
	event_base_free(base);
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
	tcase_add_test(tc, empty_messages);
	tcase_add_test(tc, reopen_log_helpers);
	tcase_add_test(tc, link_request_helpers);
	tcase_add_test(tc, link_grant_helpers);
	tcase_add_test(tc, link_refused_helpers);
	tcase_add_test(tc, outq_survives_a_full_channel);
	tcase_add_test(tc, outq_peer_gone);
	tcase_add_test(tc, fingerprints_round_trip);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
