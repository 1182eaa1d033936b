/*
 * The relay: moves bytes between a client and its backend once both are
 * connected, with bounded buffers (session_int.h says how) and clean
 * half-close. Direct mode transforms in place in the scratch buffer:
 * upload is decrypted with the client's stream and encrypted with the
 * DC's; download needs no crypto (spec B.1.4), only TLS record headers
 * for fake-TLS clients (spec A.4.7).
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "log.h"
#include "session_int.h"
#include "shm.h"
#include "tls.h"
#include "worker.h"

/* Reads per wake-up before yielding to other sessions. */
#define PUMP_ROUNDS      4
#define TLS_MAX_SEGMENTS 16

/*
 * Proxy-to-client record sizes (tls.record_sizing = "dynamic"), as a web
 * server's dynamic record sizing does: records that fit one TCP segment
 * first, then a few of 4 KiB, then full ones; each a little smaller by a
 * noise of its own, so that no size repeats exactly.
 */
size_t
tls_record_size(const struct session *s, uint32_t index)
{
	uint32_t x = index * 2654435761u ^ (uint32_t)(uintptr_t)s;

	if (W.cfg->tls_record_fixed)
		return TLS_RECORD_MAX_PAYLOAD;
	/* xorshift: cheap, and noise needs no cryptography */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	if (index < TLS_DRS_SMALL_RECORDS)
		return TLS_DRS_SMALL - (x & 31);
	if (index < TLS_DRS_MEDIUM_RECORDS)
		return TLS_DRS_MEDIUM - (x & 63);
	return TLS_RECORD_MAX_PAYLOAD - (x & 255);
}

void
side_want_read(struct session *s, struct side *sd, int on)
{
	if (on && sd->throttled)
		return; /* the user's rate: the throttle timer resumes it */
	if (sd->fd != -1)
		sd->reading = event_want(&sd->rev, sd->reading, on);
}

void
side_want_write(struct session *s, struct side *sd, int on)
{
	if (sd->fd != -1)
		sd->writing = event_want(&sd->wev, sd->writing, on);
}

uint8_t *
side_room(struct side *sd, size_t need)
{
	struct pending *q = &sd->out;

	if (q->off && q->off == q->len)
		q->off = q->len = 0;
	if (q->cap - q->len >= need)
		return q->buf + q->len;
	/* Move the unsent bytes down only when at least as many went out:
	 * each byte moves at most once on average. */
	if (q->off && q->off >= q->len - q->off) {
		memmove(q->buf, q->buf + q->off, q->len - q->off);
		q->len -= q->off;
		q->off = 0;
		if (q->cap - q->len >= need)
			return q->buf + q->len;
	}
	size_t cap = q->cap * 2;
	if (cap < q->len + need)
		cap = q->len + need;
	uint8_t *nb = realloc(q->buf, cap);
	if (nb == NULL)
		return NULL;
	q->buf = nb;
	q->cap = cap;
	return q->buf + q->len;
}

int
side_queue(struct side *sd, const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	uint8_t *b = side_room(sd, n);
	if (b == NULL)
		return -1;
	memcpy(b, p, n);
	sd->out.len += n;
	return 0;
}

static struct side *
other(struct session *s, struct side *sd)
{
	return sd == &s->c ? &s->s : &s->c;
}

/* Both directions finished: the session is over. */
static int
maybe_finish(struct session *s)
{
	if (s->c.eof && s->s.eof && s->c.out.len == s->c.out.off &&
	    s->s.out.len == s->s.out.off) {
		session_close(s, "both sides closed");
		return 1;
	}
	return 0;
}

/* The peer of sd sent EOF and all its data reached sd: pass it on. */
static void
pass_eof(struct side *sd)
{
	if (!sd->shut && sd->fd != -1) {
		shutdown(sd->fd, SHUT_WR);
		sd->shut = 1;
	}
}

int
side_send(struct session *s, struct side *sd, const uint8_t *p, size_t n)
{
	ssize_t w = 0;

	if (sd->out.len > sd->out.off)
		return side_queue(sd, p, n); /* keep the order */
	if (s->state == SS_RELAY || s->state == SS_TLS_INNER ||
	    s->state == SS_HANDSHAKE) {
		do {
			w = send(sd->fd, p, n, MSG_NOSIGNAL);
		} while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (errno != EAGAIN)
				return -1;
			w = 0;
		}
	}
	if ((size_t)w < n) {
		if (side_queue(sd, p + w, n - w) == -1)
			return -1;
		side_want_write(s, sd, 1);
		/* High water: stop reading whoever feeds this side. */
		if (s->state == SS_RELAY)
			side_want_read(s, other(s, sd), 0);
	}
	return 0;
}

void
relay_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct side *sd = arg;
	struct session *s = sd->owner;
	struct pending *q = &sd->out;

	size_t done = 0;
	while (q->off < q->len) {
		ssize_t w =
		    send(fd, q->buf + q->off, q->len - q->off, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			session_close(s, "write error");
			return;
		}
		q->off += w;
		done += w;
	}
	if (s->mode == RELAY_MIDDLE && done) {
		middle_client_drained(s, done);
		if (s->closed)
			return;
	}
	if (q->off < q->len)
		return;
	/* Low water: drained. Free the buffer, read the feeder again. */
	free(q->buf);
	memset(q, 0, sizeof(*q));
	side_want_write(s, sd, 0);
	if (s->state != SS_RELAY)
		return;
	struct side *src = other(s, sd);
	if (src->eof)
		pass_eof(sd);
	else
		side_want_read(s, src, 1);
	maybe_finish(s);
}

/*
 * Read from the DC for a fake-TLS client: read straight into record
 * payload slots separated by 5-byte gaps, then write the record headers
 * into the gaps, so the payload is never copied.
 */
static ssize_t
read_into_records(struct session *s, uint8_t *buf, size_t cap, size_t *outlen)
{
	struct iovec iov[TLS_MAX_SEGMENTS];

	*outlen = 0;
	size_t pos = 0;
	int n = 0;

	while (n < TLS_MAX_SEGMENTS && pos + TLS_RECORD_HEADER_LEN < cap) {
		size_t sz = tls_record_size(s, s->tls_out_records + n);
		if (sz > cap - pos - TLS_RECORD_HEADER_LEN)
			sz = cap - pos - TLS_RECORD_HEADER_LEN;
		iov[n].iov_base = buf + pos + TLS_RECORD_HEADER_LEN;
		iov[n].iov_len = sz;
		pos += TLS_RECORD_HEADER_LEN + sz;
		n++;
	}
	ssize_t r = readv(s->s.fd, iov, n);
	if (r <= 0)
		return r;
	size_t left = r, out = 0;
	for (int i = 0; left > 0 && i < n; i++) {
		size_t take = left < iov[i].iov_len ? left : iov[i].iov_len;
		tls_record_header(buf + out, take);
		out += TLS_RECORD_HEADER_LEN + take;
		left -= take;
		s->tls_out_records++;
	}
	*outlen = out;
	return r;
}

/*
 * Read what src has, transform it in place, send it to the other side.
 * Stops at EAGAIN, after a few rounds, or when the destination backs up.
 */
void
relay_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct side *src = arg;
	struct session *s = src->owner;
	struct side *dst = other(s, src);
	int up = src == &s->c;
	uint8_t *buf = session_scratch;

	session_touch(s);
	for (int round = 0; round < PUMP_ROUNDS; round++) {
		size_t len;
		ssize_t n;

		if (dst->out.len > dst->out.off) {
			side_want_read(s, src, 0);
			return;
		}
		if (!up && s->is_tls && s->mode == RELAY_DIRECT) {
			n = read_into_records(
			    s, buf, SESSION_SCRATCH_LEN, &len);
		} else {
			n = read(fd, buf, SESSION_SCRATCH_LEN);
			len = n;
		}
		if (n == 0) {
			src->eof = 1;
			side_want_read(s, src, 0);
			if (dst->out.len == dst->out.off)
				pass_eof(dst);
			maybe_finish(s);
			return;
		}
		if (n == -1) {
			if (errno == EAGAIN)
				return;
			if (errno == EINTR)
				continue;
			session_close(
			    s, up ? "client read error" : "backend read error");
			return;
		}
		if (s->mode == RELAY_DIRECT) {
			if (up) {
				if (s->is_tls) {
					ssize_t m =
					    tls_reader_feed(&s->tls_in, buf, n);
					if (m < 0) {
						session_close(s,
						    "bad TLS "
						    "record from the client");
						return;
					}
					len = m;
				}
				if (crypto_stream_apply(
				        s->c_dec, buf, buf, len) ||
				    crypto_stream_apply(
				        s->s_enc, buf, buf, len)) {
					session_close(s, "crypto failure");
					return;
				}
				shm_add(W.metrics, M_BYTES_C2S, len);
				shm_listener_stat_add(W.metrics,
				    s->l->shm_index, LS_BYTES_C2S, len);
			} else {
				shm_add(W.metrics, M_BYTES_S2C, n);
				shm_listener_stat_add(W.metrics,
				    s->l->shm_index, LS_BYTES_S2C, n);
			}
			/* The user's quota and rate (may close or pause). */
			if (s->urec &&
			    limits_charge(s, up, up ? len : (size_t)n) == -1)
				return;
		}
		if (len > 0 && side_send(s, dst, buf, len) == -1) {
			session_close(s, "write error");
			return;
		}
		if (src->throttled)
			return;
		if ((size_t)n < SESSION_SCRATCH_LEN / 2)
			return; /* drained the socket, most likely */
	}
}

void
relay_start(struct session *s)
{
	s->state = SS_RELAY;
	s->c.owner = s->s.owner = s;
	session_touch(s);
	event_del(&s->c.rev);
	event_del(&s->c.wev);
	event_del(&s->s.rev);
	event_del(&s->s.wev);
	s->c.reading = s->c.writing = s->s.reading = s->s.writing = 0;
	event_assign(&s->c.rev, W.base, s->c.fd, EV_READ | EV_PERSIST,
	    relay_read_cb, &s->c);
	event_assign(&s->c.wev, W.base, s->c.fd, EV_WRITE | EV_PERSIST,
	    relay_write_cb, &s->c);
	event_assign(&s->s.rev, W.base, s->s.fd, EV_READ | EV_PERSIST,
	    relay_read_cb, &s->s);
	event_assign(&s->s.wev, W.base, s->s.fd, EV_WRITE | EV_PERSIST,
	    relay_write_cb, &s->s);
	struct timeval tv = { W.cfg->idle_timeout, 0 };
	evtimer_add(&s->timer, &tv);
	/* Queued bytes (our header, the client's first bytes, what a
	 * fronted client sent, or what a handed-over session carried) go
	 * first; reading waits for them. A side that already saw EOF (a
	 * handed-over session) is not read again. */
	if (s->s.out.len > s->s.out.off)
		side_want_write(s, &s->s, 1);
	else if (!s->c.eof)
		side_want_read(s, &s->c, 1);
	else
		pass_eof(&s->s);
	if (s->c.out.len > s->c.out.off)
		side_want_write(s, &s->c, 1);
	else if (!s->s.eof)
		side_want_read(s, &s->s, 1);
	else
		pass_eof(&s->c);
	if (maybe_finish(s))
		return;
	handoff_kick();
}
