/*
 * Session handoff (DESIGN.md "Reload", issue 8): a worker of the old
 * generation hands every live session to a worker of the new one, so a
 * reload cuts nobody.
 *
 * The supervisor gives each old worker a channel to a new worker
 * (MSG_HANDOFF_TO) and the new worker the other end (MSG_HANDOFF_FROM).
 * The old worker stops accepting and sends, for each session that is
 * relaying, its image (simage.h) and its descriptors in one MSG_SESSION;
 * once sent, its own copies close and the session is gone from here
 * (nothing is read from a socket in between: what the client or the DC
 * sends meanwhile waits in the kernel for the new worker). A session
 * still in its handshake or connecting finishes that here first
 * (bounded by handshake_timeout / connect_timeout), then moves. When the
 * channel is full, the rest wait for it to drain and keep being served
 * meanwhile.
 *
 * The new worker adopts what comes; what it cannot take (an image of
 * another version, a listener the new configuration removed) it sends
 * back (MSG_SESSION_BACK), and the old worker keeps that session until
 * shutdown_timeout, saying why. A session whose user the new
 * configuration removed is closed, with a log line.
 *
 * Ending: when the old worker holds nothing more, it shuts its side of
 * the channel; the new worker answers the same way, and the old worker
 * exits (it cannot exit earlier: a session may still come back).
 */
#include "autoconf.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "crypto.h"
#include "keyidx.h"
#include "log.h"
#include "middle.h"
#include "msg.h"
#include "session_int.h"
#include "shm.h"
#include "simage.h"
#include "util.h"
#include "worker.h"

/* The old worker's side: at most one channel out. */
static struct {
	int fd; /* -1 when not handing off */
	struct event *rev, *wev;
	struct event *pump; /* run the pump from the loop, not from
			     * inside a session's callback */
	int shut; /* we shut our side: nothing more goes */
	int moving; /* move_links() runs: not done even at 0 sessions */
	size_t nin; /* channels in still open: more may come, to pass on */
	uint64_t began_ms;
	size_t moved, kept;
} H = { .fd = -1 };

/* The new worker's side: channels in (one per old worker, and from
 * several generations when reloads follow each other quickly). */
struct hin_link {
	uint32_t id;
	struct mlink *l; /* check link_alive() before use */
};

struct hin {
	int fd;
	struct event *ev;
	size_t adopted, links;
	struct hin_link *lk; /* links adopted from this channel */
	size_t nlk, caplk;
	/* The link whose clients are arriving (held until they are in:
	 * its answers to them would find no one). */
	struct mlink *held;
	uint32_t held_id, held_left;
};

static void
hin_release(struct hin *h)
{
	if (h->held && link_alive(h->held))
		link_hold(h->held, 0);
	h->held = NULL;
	handoff_kick(); /* we may be handing over ourselves: pass it on */
}

static void pump_cb(evutil_socket_t, short, void *);
static void move_links(void);

/* ------------------------------------------------------------ image */

static int
ctr_out(crypto_stream *cs, const uint8_t key[32], struct ctr_image *ci)
{
	if (cs == NULL)
		return 0;
	ci->present = 1;
	memcpy(ci->key, key, 32);
	return crypto_ctr_export(cs, ci->ctr, &ci->num);
}

static void
side_out(const struct side *sd, struct side_image *si)
{
	si->eof = sd->eof;
	si->shut = sd->shut;
	si->out = sd->out.buf ? sd->out.buf + sd->out.off : NULL;
	si->outlen = sd->out.len - sd->out.off;
}

/* The image of a relaying session (link: its link's id, or ~0); 0 or
 * -1. */
static int
session_to_image(struct session *s, uint32_t link, struct session_image *im)
{
	memset(im, 0, sizeof(*im));
	snprintf(im->listener, sizeof(im->listener), "%s", s->l->name);
	if (s->user >= 0 && (size_t)s->user < s->l->nusers)
		snprintf(im->user, sizeof(im->user), "%s",
		    s->l->users[s->user].name);
	im->mode = s->mode;
	im->flags = (s->is_tls ? SIMAGE_TLS : 0) |
	    (s->hello_sent ? SIMAGE_HELLO_SENT : 0);
	im->dc = s->dc;
	im->tag = s->tag;
	memcpy(im->tls_hdr, s->tls_in.hdr, sizeof(im->tls_hdr));
	im->tls_hdr_len = s->tls_in.hdr_len;
	im->tls_flags = s->tls_in.flags;
	im->tls_left = s->tls_in.left;
	im->tls_out_records = s->tls_out_records;
	if (ctr_out(s->c_dec, s->c_dec_key, &im->c_dec) == -1 ||
	    ctr_out(s->s_enc, s->s_enc_key, &im->s_enc) == -1)
		return -1;
	memcpy(im->peer, &s->peer,
	    sizeof(s->peer) < sizeof(im->peer) ? sizeof(s->peer)
	                                       : sizeof(im->peer));
	memcpy(im->local, &s->local,
	    sizeof(s->local) < sizeof(im->local) ? sizeof(s->local)
	                                         : sizeof(im->local));
	im->idle_ms = coarse_now_ms() - s->last_active_ms;
	side_out(&s->c, &im->c);
	side_out(&s->s, &im->s);
	im->link = UINT32_MAX;
	if (s->mode == RELAY_MIDDLE)
		return middle_to_image(s, link, im);
	return 0;
}

static const struct config_listener *
listener_named(const char *name)
{
	for (size_t i = 0; i < W.cfg->nlisteners; i++)
		if (strcmp(W.cfg->listeners[i].name, name) == 0)
			return &W.cfg->listeners[i];
	return NULL;
}

/*
 * A user of l by name. Many sessions arrive in a handoff: with many
 * users, an index per listener (made again when its users change, as an
 * in-place reload does) instead of a walk for each.
 */
static int
user_named(const struct config_listener *l, const char *name)
{
	static struct {
		const struct config_listener *l;
		const struct config_user *users;
		size_t n;
		struct keyidx idx;
	} cache[CONFIG_MAX_LISTENERS];

	if (l->nusers < 32) {
		for (size_t u = 0; u < l->nusers; u++)
			if (strcmp(l->users[u].name, name) == 0)
				return (int)u;
		return -1;
	}
	size_t i = (size_t)(l - W.cfg->listeners);
	if (i >= CONFIG_MAX_LISTENERS)
		return -1;
	if (cache[i].l != l || cache[i].users != l->users ||
	    cache[i].n != l->nusers) {
		keyidx_free(&cache[i].idx);
		cache[i].l = NULL;
		if (keyidx_init(&cache[i].idx, l->nusers, l->users,
		        sizeof(*l->users), offsetof(struct config_user, name),
		        0) == -1)
			return -1;
		for (size_t u = 0; u < l->nusers; u++)
			(void)keyidx_add(&cache[i].idx, u);
		cache[i].l = l;
		cache[i].users = l->users;
		cache[i].n = l->nusers;
	}
	char key[CONFIG_NAME_MAX] = { 0 };
	snprintf(key, sizeof(key), "%s", name);
	long k = keyidx_find(&cache[i].idx, key);
	if (k >= 0 && (size_t)k < l->nusers &&
	    strcmp(l->users[k].name, name) == 0)
		return (int)k;
	/* Not there, or an index of an earlier array at the same address:
	 * the walk decides, and the index is made again next time. */
	cache[i].l = NULL;
	for (size_t u = 0; u < l->nusers; u++)
		if (strcmp(l->users[u].name, name) == 0)
			return (int)u;
	return -1;
}

static int
side_in(struct side *sd, const struct side_image *si)
{
	sd->eof = si->eof;
	sd->shut = si->shut;
	if (si->outlen == 0)
		return 0;
	return side_queue(sd, si->out, si->outlen);
}

/*
 * Why an image cannot be adopted here (it goes back), or NULL. *l is
 * its listener.
 */
static const char *
image_unusable(const struct session_image *im, const struct config_listener **l)
{
	*l = listener_named(im->listener);
	if (*l == NULL)
		return "its listener is not in the new configuration";
	if (im->mode != RELAY_DIRECT && im->mode != RELAY_RAW &&
	    im->mode != RELAY_MIDDLE)
		return "an unknown relay mode";
	if (im->mode == RELAY_MIDDLE &&
	    (!im->c_dec.present || !im->c_enc.present || im->conn_id == 0))
		return "a middle-mode session without its state";
	/* A direct session stays direct even when its listener now goes
	 * through the middle proxies: its DC stream is already there. */
	if (im->mode == RELAY_DIRECT &&
	    (!im->c_dec.present || !im->s_enc.present))
		return "a direct session without its cipher state";
	return NULL;
}

/*
 * A session from an image and its descriptors (which it then owns).
 * Returns 0, 1 when it was closed on purpose (user removed), -1 when
 * it could not be built (the descriptors are closed then).
 */
static int
session_from_image(const struct session_image *im,
    const struct config_listener *l, int cfd, int bfd, struct mlink *link,
    int link_lost)
{
	int user = -1;
	struct session *s;
	char a[ADDR_STRLEN];

	if (im->user[0] != '\0' && (user = user_named(l, im->user)) == -1) {
		log_info("%s: closed: user %s removed by reload",
		    addr_str((const struct sockaddr *)im->peer, a, sizeof(a)),
		    im->user);
		close(cfd);
		if (bfd != -1)
			close(bfd);
		return 1;
	}
	s = session_adopt(l, cfd, bfd, (const struct sockaddr *)im->peer);
	if (s == NULL) {
		if (bfd != -1)
			close(bfd);
		return -1;
	}
	s->user = user;
	limits_adopt(s); /* counted here now, over a limit or not */
	s->mode = im->mode;
	s->is_tls = (im->flags & SIMAGE_TLS) != 0;
	s->hello_sent = (im->flags & SIMAGE_HELLO_SENT) != 0;
	s->dc = (int16_t)im->dc;
	s->tag = im->tag;
	memcpy(s->tls_in.hdr, im->tls_hdr, sizeof(im->tls_hdr));
	s->tls_in.hdr_len = im->tls_hdr_len;
	s->tls_in.flags = im->tls_flags;
	s->tls_in.left = im->tls_left;
	s->tls_out_records = im->tls_out_records;
	memcpy(&s->local, im->local,
	    sizeof(s->local) < sizeof(im->local) ? sizeof(s->local)
	                                         : sizeof(im->local));
	if (im->c_dec.present) {
		memcpy(s->c_dec_key, im->c_dec.key, 32);
		s->c_dec = crypto_ctr_resume(
		    im->c_dec.key, im->c_dec.ctr, im->c_dec.num);
	}
	if (im->s_enc.present) {
		memcpy(s->s_enc_key, im->s_enc.key, 32);
		s->s_enc = crypto_ctr_resume(
		    im->s_enc.key, im->s_enc.ctr, im->s_enc.num);
	}
	if (im->c_enc.present) {
		memcpy(s->c_enc_key, im->c_enc.key, 32);
		s->c_enc = crypto_ctr_resume(
		    im->c_enc.key, im->c_enc.ctr, im->c_enc.num);
	}
	if ((im->c_dec.present && s->c_dec == NULL) ||
	    (im->s_enc.present && s->s_enc == NULL) ||
	    (im->c_enc.present && s->c_enc == NULL)) {
		session_close(s, "crypto failure while adopting it");
		return -1;
	}
	if (side_in(&s->c, &im->c) == -1 || side_in(&s->s, &im->s) == -1) {
		session_close(s, "out of memory while adopting it");
		return -1;
	}
	if (s->mode == RELAY_MIDDLE) {
		middle_adopt(s, im, link, link_lost);
		if (!s->closed)
			s->last_active_ms = coarse_now_ms() - im->idle_ms;
		return 0;
	}
	if (s->mode == RELAY_DIRECT) {
		s->counted_dc = 1;
		shm_add(W.metrics, M_CURRENT_DC, 1);
	}
	relay_start(s);
	if (!s->closed)
		s->last_active_ms = coarse_now_ms() - im->idle_ms;
	return 0;
}

/* ------------------------------------------------------------ old side */

static int
movable(const struct session *s)
{
	if (s->closed || s->kept || s->state != SS_RELAY)
		return 0;
	if (s->mode == RELAY_MIDDLE) /* one waiting for a link */
		return M.frozen && s->link == NULL && s->conn_id != 0;
	return s->mode == RELAY_DIRECT || s->mode == RELAY_RAW;
}

/* Sends one session; 1 sent (and gone from here), 0 channel full, -1
 * failed (it stays). */
static int
send_one(struct session *s, uint32_t link)
{
	struct session_image im;
	uint8_t *blob;
	size_t len;
	int r;

	if (session_to_image(s, link, &im) == -1 ||
	    session_image_encode(&im, &blob, &len) == -1) {
		explicit_bzero(&im, sizeof(im));
		return -1;
	}
	explicit_bzero(&im, sizeof(im));
	r = msg_send_session(H.fd, MSG_SESSION, blob, len, s->c.fd, s->s.fd);
	explicit_bzero(blob, len);
	free(blob);
	if (r == -1)
		return errno == EAGAIN || errno == ENOBUFS ? 0 : -1;
	H.moved++;
	s->handed_over = 1;
	session_close(s, "handed over to the new generation");
	return 1;
}

static void
maybe_finish(void)
{
	if (H.fd == -1 || H.shut || H.moving)
		return;
	if (W.nsessions > 0 || H.nin > 0)
		return;
	/* Nothing more to send: tell the new worker, and wait for its
	 * answer (a session may still come back). */
	log_info("handoff done: %zu sessions moved, %zu kept in %llu ms",
	    H.moved, H.kept,
	    (unsigned long long)(coarse_now_ms() - H.began_ms));
	shutdown(H.fd, SHUT_WR);
	H.shut = 1;
}

static void
pump(void)
{
	struct session *s, *next;
	int blocked = 0;

	if (H.fd == -1 || H.shut)
		return;
	/* Links first (their clients go with them): also those adopted
	 * since, from a generation older than ours. */
	move_links();
	for (s = TAILQ_FIRST(session_live_list()); s; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (!movable(s))
			continue;
		int r = send_one(s, UINT32_MAX);
		if (r == 0) {
			blocked = 1;
			break;
		}
		if (r == -1) {
			char a[ADDR_STRLEN];
			log_warn("%s: cannot hand the session over; it stays",
			    addr_str(
			        (struct sockaddr *)&s->peer, a, sizeof(a)));
			s->kept = 1;
			H.kept++;
		}
	}
	if (blocked)
		event_add(H.wev, NULL);
	/* Closing the last one may exit via worker_session_closed(); the
	 * worker asks us first (handoff_holds_exit). */
	maybe_finish();
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	pump();
}

/* Sessions that come back, and the new worker's end of the channel. */
static void
old_read_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct msg m;
	int r;

	while ((r = msg_recv(fd, &m)) == 1) {
		uint8_t *blob;
		size_t len;
		int cfd, bfd;
		struct session_image im;
		const struct config_listener *l;

		if (m.type != MSG_SESSION_BACK ||
		    msg_get_session(
		        &m, MSG_SESSION_BACK, &blob, &len, &cfd, &bfd) == -1) {
			log_warnx(
			    "handoff: unexpected %s", msg_type_name(m.type));
			msg_done(&m);
			continue;
		}
		msg_done(&m);
		if (session_image_decode(blob, len, &im) == -1 ||
		    (l = listener_named(im.listener)) == NULL ||
		    session_from_image(
		        &im, l, cfd, bfd, NULL, im.link != UINT32_MAX) == -1) {
			log_warnx("handoff: a session came back and cannot "
			          "be resumed; closed");
		} else {
			struct session *s =
			    TAILQ_LAST(session_live_list(), session_list);
			if (s && !s->closed)
				s->kept = 1;
			H.kept++;
		}
		explicit_bzero(&im, sizeof(im));
		explicit_bzero(blob, len);
		free(blob);
	}
	if (r == 0 || (r == -1 && errno != EAGAIN)) {
		/* The new worker is done with us. */
		event_del(H.rev);
		event_del(H.wev);
		close(H.fd);
		H.fd = -1;
		worker_handoff_ended();
	}
}

static void
old_write_cb(evutil_socket_t fd, short what, void *arg)
{
	pump();
}

/*
 * Middle mode: each link goes with all its clients at once (they share
 * its CBC chain and its output counters), so the channel blocks for the
 * time of a link and its clients (the new worker only reads it).
 */
static void
move_links(void)
{
	struct timeval tmo = { 5, 0 };
	static uint32_t id;
	size_t links = 0, clients = 0, lost = 0, ready = 0;

	M.frozen = 1;
	for (size_t i = 0; i < M.npools; i++) {
		struct mlink *l;
		TAILQ_FOREACH(l, &M.pools[i].links, entry)
		ready += !l->closed && !l->held;
	}
	if (ready == 0)
		return; /* nothing (more) to move */
	H.moving = 1;
	fd_set_blocking(H.fd);
	setsockopt(H.fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
	for (size_t i = 0; i < M.npools; i++) {
		struct mlink *l, *ln;
		TAILQ_FOREACH_SAFE(l, &M.pools[i].links, entry, ln)
		{
			struct link_image li;
			uint8_t *blob;
			size_t len;
			struct session *s, *sn;

			if (l->closed || l->held)
				continue; /* held: its clients are coming in */
			link_to_image(l, ++id, &li);
			int r = link_image_encode(&li, &blob, &len);
			explicit_bzero(&li, sizeof(li));
			if (r == -1)
				continue;
			r = msg_send_session(
			    H.fd, MSG_LINK_MOVE, blob, len, l->fd, -1);
			explicit_bzero(blob, len);
			free(blob);
			if (r == -1) {
				log_warn("handoff: a link to DC %d stays",
				    l->pool->dc);
				continue;
			}
			links++;
			TAILQ_FOREACH_SAFE(s, &l->clients, link_entry, sn)
			{
				if (send_one(s, id) == 1) {
					clients++;
					continue;
				}
				/* Its link is gone with the others. */
				lost++;
				s->handed_over = 1;
				session_close(s, "lost in the handoff");
			}
			link_close(l, "handed over to the new generation");
		}
	}
	fd_set_nonblock(H.fd);
	H.moving = 0;
	log_info("handoff: %zu middle-proxy links moved with %zu clients "
	         "(%zu lost)",
	    links, clients, lost);
}

void
handoff_to(int fd)
{
	if (H.fd != -1) {
		log_warnx("handoff: a second channel out; closing it");
		close(fd);
		return;
	}
	fd_set_nonblock(fd);
	H.fd = fd;
	H.began_ms = coarse_now_ms();
	H.rev = event_new(W.base, fd, EV_READ | EV_PERSIST, old_read_cb, NULL);
	H.wev = event_new(W.base, fd, EV_WRITE, old_write_cb, NULL);
	H.pump = event_new(W.base, -1, 0, pump_cb, NULL);
	if (H.rev == NULL || H.wev == NULL || H.pump == NULL)
		fatalx("event_new");
	event_add(H.rev, NULL);
	log_info(
	    "handing %zu sessions over to the new generation", W.nsessions);
	pump();
}

int
handoff_active(void)
{
	return H.fd != -1;
}

void
handoff_kick(void)
{
	if (H.fd != -1 && !H.shut)
		event_active(H.pump, 0, 1);
}

void
handoff_sessions_gone(void)
{
	maybe_finish();
}

/* ------------------------------------------------------------ new side */

static struct mlink *
hin_link(struct hin *h, uint32_t id)
{
	if (id == UINT32_MAX)
		return NULL;
	for (size_t i = 0; i < h->nlk; i++)
		if (h->lk[i].id == id)
			return link_alive(h->lk[i].l) ? h->lk[i].l : NULL;
	return NULL;
}

static void
adopt_link(struct hin *h, struct msg *m)
{
	uint8_t *blob;
	size_t len;
	int fd, none;
	struct link_image li;
	struct mlink *l = NULL;

	if (msg_get_session(m, MSG_LINK_MOVE, &blob, &len, &fd, &none) == -1) {
		log_warnx("handoff: malformed link-move");
		return;
	}
	if (none != -1)
		close(none);
	hin_release(h); /* the previous link's clients are all in */
	if (link_image_decode(blob, len, &li) == -1) {
		log_warnx("handoff: a link image of another version; its "
		          "clients will go through new links");
		close(fd);
	} else if ((l = link_adopt(&li, fd)) != NULL) {
		if (h->nlk == h->caplk) {
			size_t cap = h->caplk ? h->caplk * 2 : 8;
			struct hin_link *n = realloc(h->lk, cap * sizeof(*n));
			if (n == NULL)
				fatal("realloc");
			h->lk = n;
			h->caplk = cap;
		}
		h->lk[h->nlk].id = li.id;
		h->lk[h->nlk].l = l;
		h->nlk++;
		h->links++;
		h->held = l;
		h->held_id = li.id;
		h->held_left = li.nclients;
		if (h->held_left == 0)
			hin_release(h);
	}
	explicit_bzero(&li, sizeof(li));
	explicit_bzero(blob, len);
	free(blob);
}

static void
new_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hin *h = arg;
	static struct msg m;
	int r;

	while ((r = msg_recv(fd, &m)) == 1) {
		uint8_t *blob;
		size_t len;
		int cfd, bfd;
		struct session_image im;
		const struct config_listener *l = NULL;
		const char *why;

		if (m.type == MSG_LINK_MOVE) {
			adopt_link(h, &m);
			msg_done(&m);
			continue;
		}
		if (msg_get_session(&m, MSG_SESSION, &blob, &len, &cfd, &bfd) ==
		    -1) {
			log_warnx("handoff: malformed %s from an old worker",
			    msg_type_name(m.type));
			msg_done(&m);
			continue;
		}
		msg_done(&m);
		if (session_image_decode(blob, len, &im) == -1)
			why = "an image of another version";
		else
			why = image_unusable(&im, &l);
		if (why != NULL) {
			char a[ADDR_STRLEN];
			log_notice("%s: not adopted (%s): the old worker keeps "
			           "it until shutdown_timeout",
			    addr_str(
			        (const struct sockaddr *)im.peer, a, sizeof(a)),
			    why);
			if (msg_send_session(fd, MSG_SESSION_BACK, blob, len,
			        cfd, bfd) == -1)
				log_warn("handoff: sending a session back");
			close(cfd);
			if (bfd != -1)
				close(bfd);
		} else {
			if (session_from_image(&im, l, cfd, bfd,
			        hin_link(h, im.link),
			        im.link != UINT32_MAX) == 0) {
				h->adopted++;
				shm_add(W.metrics, M_HANDED_OVER, 1);
			}
		}
		/* The held link goes when its last client came, or when
		 * something else comes (a client was lost on the way). */
		if (h->held && (im.link != h->held_id || --h->held_left == 0))
			hin_release(h);
		explicit_bzero(&im, sizeof(im));
		explicit_bzero(blob, len);
		free(blob);
	}
	if (r == 0 || (r == -1 && errno != EAGAIN)) {
		hin_release(h);
		log_info("handoff: adopted %zu sessions and %zu middle-proxy "
		         "links from an old worker",
		    h->adopted, h->links);
		event_free(h->ev);
		free(h->lk);
		H.nin--;
		/* Closing our end tells the old worker it may go. */
		close(h->fd);
		free(h);
		maybe_finish(); /* if we hand over too, and hold nothing */
	}
}

void
handoff_from(int fd)
{
	struct hin *h = calloc(1, sizeof(*h));

	if (h == NULL) {
		close(fd);
		return;
	}
	fd_set_nonblock(fd);
	h->fd = fd;
	H.nin++;
	h->ev = event_new(W.base, fd, EV_READ | EV_PERSIST, new_read_cb, h);
	if (h->ev == NULL)
		fatalx("event_new");
	event_add(h->ev, NULL);
}
