/*
 * Middle-proxy link building in the dcpool (spec B.2.3-B.2.6).
 *
 * One build per request: pick a middle proxy of the DC (the `default`
 * DC when it has none), connect, send RPC_NONCE in the clear, check the
 * answer, derive the AES-CBC keys from both nonces and both addresses,
 * send RPC_HANDSHAKE encrypted, check the answer; then the socket and a
 * snapshot of both CBC chains go to the worker, which runs the link.
 *
 * Ownership (issue 7): a build is on P.builds from mplink_request until
 * build_free, which only build_fail, build_done and mplink_peer_gone
 * call; a callback that calls the first two returns at once and never
 * touches the build again, and a build holds no DNS request (middle
 * proxies are addresses). The link socket belongs to the build until
 * build_done hands it to the worker's msg_outq, which keeps it open
 * until the grant is sent (then our copy closes) or dropped (closed and
 * logged). Every answer to a worker goes through that queue, so a full
 * channel delays an answer instead of losing it; the queue belongs to
 * dcpool.c's peer, which drops the builds naming it before freeing it.
 */
#include "autoconf.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "config.h"
#include "log.h"
#include "dcpool.h"
#include "mplink.h"
#include "shm.h"
#include "msg.h"
#include "proxyconf.h"
#include "pubaddr.h"
#include "rpc.h"
#include "tgconf.h"
#include "util.h"

#define BUILD_BUF    1024
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000
/* No state from Telegram yet: workers ask again after this. */
#define RETRY_NO_CONFIG_MS 2000

enum build_state { B_CONNECTING, B_NONCE, B_HANDSHAKE };

/*
 * The addresses a middle proxy may see us at, per family, tried in
 * order: the public one (by hand or discovered), then the local one
 * (no NAT). The one that last worked goes first.
 */
#define CAND_MAX 2
struct cand {
	char ip[INET6_ADDRSTRLEN]; /* "" = the link's local address */
	const char *what; /* for the log: "nat_ip", "discovered", ... */
};

struct build {
	struct build *next;
	struct msg_outq *peer; /* to the worker that asked */
	int16_t dc;
	uint32_t req;
	enum build_state state;
	int fd;
	struct event ev, timer;
	struct sockaddr_storage me, local, ours; /* ours: for the KDF */
	socklen_t melen;
	struct cand cands[CAND_MAX];
	int ncand, cand; /* tried: cands[cand] */
	int other_family; /* the DC's other family was tried */
	uint32_t ts;
	uint8_t nonce_clt[16];
	uint8_t pid[RPC_PID_LEN];
	struct rpc_link link;
	int have_link;
	uint8_t buf[BUILD_BUF];
	size_t len, dec; /* received; decrypted */
	size_t stream_pos; /* bytes of the ME's stream
						 * consumed so far */
};

static struct {
	struct event_base *base;
	const struct config *cfg;
	struct tgconf *tg;
	struct pubaddr *pub;
	/* per family ([0] IPv4): the address that worked last ("" =
	 * the local one), and whether it is known */
	char works[2][INET6_ADDRSTRLEN];
	int works_known[2];
	struct build *builds;
	uint32_t failures[65536]; /* per DC, as uint16 */
	uint32_t start_time;
} P;

void
mplink_init(struct event_base *base, const struct config *cfg,
    struct tgconf *tg, struct pubaddr *pub)
{
	P.base = base;
	P.cfg = cfg;
	P.tg = tg;
	P.pub = pub;
	P.start_time = (uint32_t)now_unix();
}

/* The worker's queue sends it when the channel has room (item 9). */
static void
reply_refused(
    struct msg_outq *peer, int16_t dc, uint32_t req, uint32_t retry_ms)
{
	struct msgbuf mb;

	msg_build_link_refused(&mb, dc, req, retry_ms);
	if (msg_outq_send(peer, &mb, -1) == -1)
		log_warn("telling a worker there is no link to DC %d (request "
		         "%u)",
		    dc, req);
}

static void
build_free(struct build *b)
{
	for (struct build **pp = &P.builds; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	event_del(&b->ev);
	evtimer_del(&b->timer);
	if (b->fd != -1)
		close(b->fd);
	if (b->have_link)
		rpc_link_free(&b->link);
	free(b);
}

static void build_connect(struct build *);
static void fill_cands(struct build *);

static const char *
ip_of(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	const void *a = ss->ss_family == AF_INET
	    ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
	    : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

	if (inet_ntop(ss->ss_family, a, buf, (socklen_t)cap) == NULL)
		snprintf(buf, cap, "?");
	return buf;
}

/* The address candidate i as the log names it: "IP (what)". */
static const char *
cand_str(const struct build *b, int i, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	snprintf(buf, cap, "%s (%s)",
	    b->cands[i].ip[0] ? b->cands[i].ip
	                      : ip_of(&b->local, ip, sizeof(ip)),
	    b->cands[i].what);
	return buf;
}

/* Back to a fresh connect, to b->me; its result goes through the usual
 * callbacks. */
static void
build_restart(struct build *b)
{
	event_del(&b->ev);
	evtimer_del(&b->timer);
	if (b->fd != -1)
		close(b->fd);
	b->fd = -1;
	if (b->have_link)
		rpc_link_free(&b->link);
	b->have_link = 0;
	b->len = b->dec = b->stream_pos = 0;
	b->state = B_CONNECTING;
	build_connect(b);
}

/*
 * A failed handshake may be a wrong address in the key derivation: the
 * middle proxy derives the keys from the address it sees us at, and
 * then cannot read our RPC_HANDSHAKE and closes. 1 if another
 * candidate is being tried.
 */
static int
retry_address(struct build *b, const char *why)
{
	char a[ADDR_STRLEN], c1[96], c2[96], ip[INET6_ADDRSTRLEN];
	int next = b->cand + 1;

	if (b->state != B_HANDSHAKE || next >= b->ncand)
		return 0;
	/* No NAT: the local address was tried already. */
	if (b->cands[next].ip[0] == '\0' &&
	    strcmp(b->cands[b->cand].ip, ip_of(&b->local, ip, sizeof(ip))) == 0)
		return 0;
	log_warnx("link to DC %d via %s: %s after our handshake with keys "
	          "for %s: the middle proxy may see us at another address; "
	          "trying %s",
	    b->dc, addr_str((struct sockaddr *)&b->me, a, sizeof(a)), why,
	    cand_str(b, b->cand, c1, sizeof(c1)),
	    cand_str(b, next, c2, sizeof(c2)));
	b->cand = next;
	build_restart(b);
	return 1;
}

/* A DC's middle proxy that cannot be reached on one family is tried on
 * the other (issue 13). 1 if it is. */
static int
retry_family(struct build *b, const char *why)
{
	const struct tg_state *st = tgconf_state(P.tg);
	const struct proxyconf_entry *e;
	char a[ADDR_STRLEN], n[ADDR_STRLEN];
	size_t cnt;
	uint32_t r;

	if (b->state != B_CONNECTING || b->other_family)
		return 0;
	cnt = proxyconf_lookup(
	    b->me.ss_family == AF_INET ? &st->v6 : &st->v4, b->dc, &e);
	if (cnt == 0)
		return 0;
	random_bytes(&r, sizeof(r));
	e += r % cnt;
	b->other_family = 1;
	log_info("link to DC %d via %s failed: %s; trying %s", b->dc,
	    addr_str((struct sockaddr *)&b->me, a, sizeof(a)), why,
	    addr_str(&e->addr.sa, n, sizeof(n)));
	memcpy(&b->me, &e->addr, e->addrlen);
	b->melen = e->addrlen;
	fill_cands(b);
	build_restart(b);
	return 1;
}

static void
build_fail(struct build *b, const char *why)
{
	char a[ADDR_STRLEN], tried[256] = "";
	uint32_t *f = &P.failures[(uint16_t)b->dc];
	uint32_t retry = RETRY_MIN_MS << (*f > 5 ? 5 : *f);

	if (retry_address(b, why) || retry_family(b, why))
		return;
	shm_add(dcpool_slot(), M_LINKS_BUILD_FAILED, 1);
	if (retry > RETRY_MAX_MS)
		retry = RETRY_MAX_MS;
	(*f)++;
	if (b->state == B_HANDSHAKE) {
		char c[96];
		size_t n = 0;

		for (int i = 0; i <= b->cand && n < sizeof(tried); i++) {
			int w = snprintf(tried + n, sizeof(tried) - n, "%s%s",
			    i ? ", " : "", cand_str(b, i, c, sizeof(c)));
			if (w < 0)
				break;
			n += (size_t)w;
		}
		log_warnx("link to DC %d via %s failed: %s after our "
		          "handshake; the keys were derived for %s: if the "
		          "middle proxy sees us at another address, set "
		          "network.public_ipv%d; retry in %u ms",
		    b->dc, addr_str((struct sockaddr *)&b->me, a, sizeof(a)),
		    why, tried, b->me.ss_family == AF_INET ? 4 : 6, retry);
	} else
		log_warnx("link to DC %d via %s failed: %s; retry in %u ms",
		    b->dc, addr_str((struct sockaddr *)&b->me, a, sizeof(a)),
		    why, retry);
	reply_refused(b->peer, b->dc, b->req, retry);
	build_free(b);
}

/* The address the middle proxy saw us at goes first from now on. */
static void
works_note(struct build *b)
{
	int fi = b->me.ss_family == AF_INET6;
	const char *ip = b->cands[b->cand].ip;
	char c[96], c0[96];

	if (P.works_known[fi] && strcmp(P.works[fi], ip) == 0)
		return;
	if (b->cand > 0)
		log_notice("middle proxies see us at %s, not %s: using it "
		           "for IPv%d links%s",
		    cand_str(b, b->cand, c, sizeof(c)),
		    cand_str(b, 0, c0, sizeof(c0)), fi ? 6 : 4,
		    strcmp(b->cands[0].what, "discovered") == 0
		        ? ""
		        : "; fix the configured address");
	else
		log_info("middle-proxy links over IPv%d work with %s",
		    fi ? 6 : 4, cand_str(b, 0, c, sizeof(c)));
	snprintf(P.works[fi], sizeof(P.works[fi]), "%s", ip);
	P.works_known[fi] = 1;
}

/* Who the middle proxies may see us as, for a link of b->me's family. */
static void
fill_cands(struct build *b)
{
	const struct pubaddr_state *ps = pubaddr_state(P.pub);
	int v6 = b->me.ss_family == AF_INET6, fi = v6;
	const char *hand = v6 ? P.cfg->public_ipv6 : P.cfg->public_ipv4;
	const char *found = v6 ? ps->v6 : ps->v4;

	b->ncand = 0;
	if (hand[0] != '\0') {
		snprintf(b->cands[0].ip, sizeof(b->cands[0].ip), "%s", hand);
		b->cands[0].what = strcmp(P.cfg->nat_ip, hand) == 0
		    ? "telegram.nat_ip"
		    : v6 ? "network.public_ipv6"
		         : "network.public_ipv4";
		b->ncand++;
	} else if (found[0] != '\0') {
		snprintf(b->cands[0].ip, sizeof(b->cands[0].ip), "%s", found);
		b->cands[0].what = "discovered";
		b->ncand++;
	}
	b->cands[b->ncand].ip[0] = '\0';
	b->cands[b->ncand].what = "the local address";
	b->ncand++;
	/* What worked last goes first. */
	if (P.works_known[fi] && b->ncand == 2 &&
	    strcmp(P.works[fi], b->cands[1].ip) == 0) {
		struct cand t = b->cands[0];

		b->cands[0] = b->cands[1];
		b->cands[1] = t;
	}
	b->cand = 0;
}

static void
build_done(struct build *b)
{
	struct rpc_link_keys keys;
	struct msgbuf mb;
	char a[ADDR_STRLEN];

	rpc_link_capture(&b->link, &keys);
	msg_build_link_grant(&mb, b->dc, b->req, &keys, &b->me, b->melen);
	explicit_bzero(&keys, sizeof(keys));
	/* The queue owns the socket now: it stays open until the grant
	 * is sent, and is closed if the grant cannot be. */
	int fd = b->fd;
	b->fd = -1;
	if (msg_outq_send(b->peer, &mb, fd) == -1)
		log_warn("handing a link to DC %d to a worker", b->dc);
	else
		log_info("link to DC %d via %s handed to a worker", b->dc,
		    addr_str((struct sockaddr *)&b->me, a, sizeof(a)));
	explicit_bzero(mb.data, mb.len);
	P.failures[(uint16_t)b->dc] = 0;
	shm_add(dcpool_slot(), M_LINKS_BUILT, 1);
	works_note(b);
	build_free(b);
}

static int
send_all(int fd, const uint8_t *p, size_t n)
{
	/* A fresh socket takes a few hundred bytes at once. */
	ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
	return w == (ssize_t)n ? 0 : -1;
}

static void
send_handshake(struct build *b)
{
	const struct tg_state *st = tgconf_state(P.tg);
	struct rpc_link_keys keys;
	uint8_t payload[RPC_HANDSHAKE_LEN], peer_pid[RPC_PID_LEN];
	uint8_t out[RPC_FRAME_SPACE(RPC_HANDSHAKE_LEN)];
	struct rpc_kdf_params kp = {
		.nonce_clt = b->nonce_clt,
		.clt_ts = b->ts,
		.me_addr = (struct sockaddr *)&b->me,
		.proxy_addr = (struct sockaddr *)&b->ours,
		.secret = st->secret,
		.secret_len = st->secret_len,
	};
	struct rpc_nonce ans;
	struct rpc_frame fr;
	struct rpc_decoder rx;
	const char *err;

	/* The ME's nonce answer, in the clear. */
	rpc_decoder_init(&rx, RPC_SEQ_NONCE, BUILD_BUF);
	switch (rpc_frame_decode(&rx, b->buf, b->len, &fr)) {
	case RPC_DECODE_NEED_MORE:
		return;
	case RPC_DECODE_ERROR:
		build_fail(b, fr.error ? fr.error : "bad nonce frame");
		return;
	case RPC_DECODE_OK:
		break;
	}
	if (rpc_nonce_parse(fr.payload, fr.len, &ans) == -1 ||
	    rpc_nonce_check(&ans, st->secret, st->secret_len, b->ts,
	        RPC_NONCE_MAX_SKEW, &err) == -1) {
		build_fail(b,
		    "bad nonce answer (wrong proxy secret, or "
		    "clock off by more than 30 s?)");
		return;
	}
	/* Plain fillers may pad it to a block; encryption starts at the
	 * next block boundary or right after the frame. */
	size_t pos = fr.consumed;
	while (pos % RPC_BLOCK && pos + 4 <= b->len &&
	    memcmp(b->buf + pos, "\x04\0\0\0", 4) == 0)
		pos += 4;
	if (pos % RPC_BLOCK && pos + 4 > b->len && pos < b->len)
		return; /* a filler may still be coming */
	memmove(b->buf, b->buf + pos, b->len - pos);
	b->len -= pos;
	b->dec = 0;

	kp.nonce_srv = ans.nonce;
	if (rpc_link_keys_derive(&keys, &kp, 0) == -1 ||
	    rpc_link_restore(&b->link, &keys, BUILD_BUF) == -1) {
		build_fail(b, "key derivation failed");
		return;
	}
	b->have_link = 1;
	explicit_bzero(&keys, sizeof(keys));
	rpc_pid_make(b->pid, (struct sockaddr *)&b->ours, (uint16_t)getpid(),
	    P.start_time);
	rpc_pid_make(peer_pid, (struct sockaddr *)&b->me, 0, 0);
	size_t n = rpc_handshake_build(
	    payload, sizeof(payload), RPC_HANDSHAKE_CRC32C, b->pid, peer_pid);
	n = rpc_link_encode(&b->link, out, sizeof(out), payload, n);
	if (n == 0 || send_all(b->fd, out, n) == -1) {
		build_fail(b, "sending the handshake failed");
		return;
	}
	b->state = B_HANDSHAKE;
}

static void
check_handshake(struct build *b)
{
	struct rpc_frame fr;
	struct rpc_handshake hs;
	struct rpc_handshake_error he;
	const char *err;
	int crc32c = 0;

	size_t dec = (b->len - b->dec) & ~(size_t)(RPC_BLOCK - 1);
	if (dec && rpc_link_decrypt(&b->link, b->buf + b->dec, dec) == -1) {
		build_fail(b, "decryption failed");
		return;
	}
	b->dec += dec;
	switch (rpc_link_decode(&b->link, b->buf, b->dec, &fr)) {
	case RPC_DECODE_NEED_MORE:
		return;
	case RPC_DECODE_ERROR:
		build_fail(b, fr.error ? fr.error : "bad handshake frame");
		return;
	case RPC_DECODE_OK:
		break;
	}
	if (rpc_msg_type(fr.payload, fr.len) == RPC_HANDSHAKE_ERROR) {
		char why[64];
		rpc_handshake_error_parse(fr.payload, fr.len, &he);
		snprintf(
		    why, sizeof(why), "handshake refused (error %d)", he.code);
		build_fail(b, why);
		return;
	}
	if (rpc_handshake_parse(fr.payload, fr.len, &hs) == -1 ||
	    rpc_handshake_check(
	        &hs, RPC_HANDSHAKE_CRC32C, b->pid, &crc32c, &err) == -1) {
		build_fail(b, "bad handshake answer");
		return;
	}
	/* CRC32C from seq 0 when the middle proxy took it (B.2.6): with
	 * the CPU's instruction, a twentieth of zlib's CRC32. */
	rpc_link_set_crc32c(&b->link, crc32c);
	/* Only fillers may follow: the ME says nothing more until asked,
	 * and the worker continues the chains from here. */
	for (size_t p = fr.consumed; p < b->len; p += 4)
		if (p + 4 > b->dec || memcmp(b->buf + p, "\x04\0\0\0", 4)) {
			build_fail(b, "unexpected data after the handshake");
			return;
		}
	build_done(b);
}

static void
build_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct build *b = arg;

	if (b->state == B_CONNECTING) {
		const struct tg_state *st = tgconf_state(P.tg);
		int err = 0;
		socklen_t el = sizeof(err), sl = sizeof(b->local);
		uint8_t payload[RPC_NONCE_LEN], out[64];

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1)
			err = errno;
		if (err) {
			build_fail(b, strerror(err));
			return;
		}
		getsockname(fd, (struct sockaddr *)&b->local, &sl);
		/* Behind NAT the ME sees our public address, with our real
		 * port; the candidate says which address. */
		b->ours = b->local;
		if (b->cands[b->cand].ip[0] != '\0') {
			struct sockaddr_storage ss;
			socklen_t l;
			uint16_t port = b->local.ss_family == AF_INET
			    ? ntohs(((struct sockaddr_in *)&b->local)->sin_port)
			    : ntohs(((struct sockaddr_in6 *)&b->local)
			                ->sin6_port);
			if (addr_from_ip_port(
			        b->cands[b->cand].ip, port, &ss, &l) == 0 &&
			    ss.ss_family == b->local.ss_family)
				b->ours = ss;
		}
		b->ts = (uint32_t)now_unix();
		random_bytes(b->nonce_clt, sizeof(b->nonce_clt));
		size_t n = rpc_nonce_build(payload, sizeof(payload), st->secret,
		    st->secret_len, b->ts, b->nonce_clt);
		n = rpc_frame_encode(
		    out, sizeof(out), RPC_SEQ_NONCE, payload, n, 0);
		int pad = rpc_frame_pad(out + n, sizeof(out) - n, n);
		if (n == 0 || pad < 0 || send_all(fd, out, n + pad) == -1) {
			build_fail(b, "sending the nonce failed");
			return;
		}
		b->state = B_NONCE;
		event_del(&b->ev);
		event_assign(
		    &b->ev, P.base, fd, EV_READ | EV_PERSIST, build_read_cb, b);
		event_add(&b->ev, NULL);
		return;
	}
	ssize_t n = read(fd, b->buf + b->len, sizeof(b->buf) - b->len);
	if (n == 0) {
		build_fail(b, "closed by the middle proxy");
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			build_fail(b, strerror(errno));
		return;
	}
	b->len += n;
	if (b->state == B_NONCE)
		send_handshake(b);
	else
		check_handshake(b);
	/* b may be gone now. */
}

static void
build_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	build_fail(arg, "timed out");
}

static void
build_connect(struct build *b)
{
	int one = 1;
	struct timeval tv = { P.cfg->connect_timeout, 0 };

	b->fd = socket(
	    b->me.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	evtimer_assign(&b->timer, P.base, build_timeout_cb, b);
	event_assign(&b->ev, P.base, b->fd, EV_WRITE, build_read_cb, b);
	if (b->fd == -1) {
		build_fail(b, strerror(errno));
		return;
	}
	setsockopt(b->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* TCP keep-alive: an ME that vanishes is noticed by the worker. */
	setsockopt(b->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if (connect(b->fd, (struct sockaddr *)&b->me, b->melen) == -1 &&
	    errno != EINPROGRESS) {
		build_fail(b, strerror(errno));
		return;
	}
	evtimer_add(&b->timer, &tv);
	event_add(&b->ev, NULL);
}

void
mplink_request(struct msg_outq *peer, int16_t dc, uint32_t req)
{
	const struct tg_state *st = tgconf_state(P.tg);
	const struct proxyconf_entry *e;
	const struct proxyconf *first, *second;
	struct build *b;
	size_t n;

	if (st == NULL || st->secret_len == 0) {
		reply_refused(peer, dc, req, RETRY_NO_CONFIG_MS);
		return;
	}
	/* network.prefer_ipv6: the IPv6 middle proxies first. */
	first = P.cfg->prefer_ipv6 ? &st->v6 : &st->v4;
	second = P.cfg->prefer_ipv6 ? &st->v4 : &st->v6;
	n = proxyconf_lookup(first, dc, &e);
	if (n == 0)
		n = proxyconf_lookup(second, dc, &e);
	if (n == 0) {
		log_warnx("no middle proxy known for DC %d", dc);
		reply_refused(peer, dc, req, RETRY_MAX_MS);
		return;
	}
	uint32_t r;
	random_bytes(&r, sizeof(r));
	e += r % n;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		reply_refused(peer, dc, req, RETRY_MIN_MS);
		return;
	}
	b->peer = peer;
	b->dc = dc;
	b->req = req;
	b->fd = -1;
	memcpy(&b->me, &e->addr, e->addrlen);
	b->melen = e->addrlen;
	b->next = P.builds;
	P.builds = b;
	fill_cands(b);
	build_connect(b);
}

void
mplink_peer_gone(struct msg_outq *peer)
{
	struct build *b = P.builds, *next;
	for (; b; b = next) {
		next = b->next;
		if (b->peer == peer)
			build_free(b);
	}
}
