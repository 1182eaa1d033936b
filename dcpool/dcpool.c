/*
 * dcpool: the Telegram-facing control plane (DESIGN.md "dcpool"). It
 * owns the DC table and, in middle-proxy mode, builds RPC links and hands
 * them to workers. It is never on the data path.
 */
#include "autoconf.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "dcpool.h"
#include "fetch.h"
#include "log.h"
#include "metrics.h"
#include "mplink.h"
#include "msg.h"
#include "priv.h"
#include "api.h"
#include "pubaddr.h"
#include "shm.h"
#include "tlsprobe.h"
#include "tables.h"
#include "tgconf.h"
#include "util.h"

#define DCPOOL_MAX_PEERS (2 * CONFIG_MAX_WORKERS)
/*
 * Answers waiting for room in one worker's channel. A worker has at
 * most a few requests in flight per pool; past this the worker is not
 * reading, and its requests time out on its side.
 */
#define DCPOOL_OUTQ_MAX 256

struct peer {
	int fd;
	int slot;
	int generation;
	struct event *ev;
	struct msg_outq *out; /* answers to the worker */
};

static struct {
	struct event_base *base;
	struct dcpool_args *a;
	struct peer peers[DCPOOL_MAX_PEERS];
	struct tgconf *tg;
	struct pubaddr *pub;
	struct tlsprobe *probe;
	struct event *chan_ev;
	int64_t tg_since; /* Telegram's config in use since */
} D;

int
dcpool_workers_connected(void)
{
	int n = 0;

	for (size_t i = 0; i < DCPOOL_MAX_PEERS; i++)
		n += D.peers[i].ev != NULL;
	return n;
}

const struct tg_state *
dcpool_tg_state(int64_t *since)
{
	*since = D.tg_since;
	return D.tg != NULL ? tgconf_state(D.tg) : NULL;
}

const struct dcpool_args *
dcpool_args(void)
{
	return D.a;
}

struct shm_slot *
dcpool_slot(void)
{
	static struct shm_slot *own;

	/* The supervisor fills the slot in after the fork: look until
	 * it is there. */
	if (own == NULL && D.a != NULL)
		own = shm_metrics_own(D.a->metrics, getpid());
	return own;
}

static void
peer_close(struct peer *p)
{
	mplink_peer_gone(p->out);
	msg_outq_free(p->out);
	event_free(p->ev);
	close(p->fd);
	p->fd = -1;
	p->ev = NULL;
	p->out = NULL;
}

static void
peer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	static struct msg m;
	int r;

	int16_t dc;
	uint32_t req;

	while ((r = msg_recv(fd, &m)) == 1) {
		switch (m.type) {
		case MSG_LINK_REQUEST:
			if (msg_get_link_request(&m, &dc, &req) == -1) {
				log_warnx("malformed %s from worker %d",
				    msg_type_name(m.type), p->slot);
				break;
			}
			mplink_request(p->out, dc, req);
			break;
		case MSG_FINGERPRINTS:
			if (msg_get_fingerprints(&m, metrics_fingerprints()) ==
			    -1)
				log_warnx("malformed %s from worker %d",
				    msg_type_name(m.type), p->slot);
			break;
		default:
			log_warnx("unexpected message %s from worker %d",
			    msg_type_name(m.type), p->slot);
		}
		msg_done(&m);
	}
	if (r == 0 || (r == -1 && errno != EAGAIN))
		peer_close(p);
}

/* A site profile, to one worker's channel. */
static void
shape_to_peer(void *arg, const char *key, const struct tls_shape *sh)
{
	struct peer *p = arg;
	struct msgbuf mb;

	msg_build_tls_shape(&mb, key, sh);
	if (msg_outq_send(p->out, &mb, -1) == -1)
		log_warn(
		    "giving the TLS profile of %s to worker %d", key, p->slot);
}

/* A new or changed site profile: every worker gets it. */
static void
shape_changed(void *arg, const char *key, const struct tls_shape *sh)
{
	for (size_t i = 0; i < DCPOOL_MAX_PEERS; i++)
		if (D.peers[i].ev != NULL)
			shape_to_peer(&D.peers[i], key, sh);
}

static void
add_peer(int fd, int slot, int generation)
{
	size_t i;

	for (i = 0; i < DCPOOL_MAX_PEERS; i++) {
		struct peer *p = &D.peers[i];
		if (p->ev)
			continue;
		fd_set_nonblock(fd);
		p->out = msg_outq_new(D.base, fd, DCPOOL_OUTQ_MAX);
		p->ev = event_new(D.base, fd, EV_READ | EV_PERSIST, peer_cb, p);
		if (p->out == NULL || p->ev == NULL) {
			log_warnx(
			    "out of memory for the channel of worker %d", slot);
			msg_outq_free(p->out);
			if (p->ev)
				event_free(p->ev);
			p->out = NULL;
			p->ev = NULL;
			break;
		}
		p->fd = fd;
		p->slot = slot;
		p->generation = generation;
		event_add(p->ev, NULL);
		/* What is known of the fronted sites so far. */
		tlsprobe_each(D.probe, shape_to_peer, p);
		return;
	}
	if (i == DCPOOL_MAX_PEERS)
		log_warnx("too many workers; dropping the channel of worker "
		          "%d",
		    slot);
	close(fd);
}

/* Does any listener use the middle proxies? Then Telegram's config is
 * needed; direct mode alone never fetches it. */
static void
tg_changed(void *arg, const struct tg_state *st)
{
	D.tg_since = now_unix();
	log_info("Telegram config in use (%s): %zu middle proxies (%zu "
	         "IPv6), secret of %zu bytes",
	    st->source, st->v4.n, st->v6.n, st->secret_len);
}

/* The supervisor prints the links and logs with it. */
static void
pub_changed(void *arg, const struct pubaddr_state *st)
{
	api_pubaddr(st);
	if (msg_send_pubaddr(D.a->chan, st) == -1)
		log_warn("telling the supervisor the public address");
}

/* After MSG_QUIT: time for the scrapes in flight to be answered. */
#define DCPOOL_LINGER_MS 300

static void
chan_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct msg m;
	uint32_t slot, gen;
	int pfd;
	int r;

	while ((r = msg_recv(fd, &m)) == 1) {
		switch (m.type) {
		case MSG_QUIT:
		case MSG_DRAIN: {
			struct timeval tv = { 0, DCPOOL_LINGER_MS * 1000 };
			if (msg_get_empty(&m, m.type) == -1)
				goto bad;
			/* The next dcpool accepts already; a scrape being
			 * served here gets its answer first. */
			metrics_stop();
			api_stop();
			log_info("dcpool exiting");
			event_base_loopexit(D.base, &tv);
			break;
		}
		case MSG_TABLES: {
			/* Of the in-place tables the log level and the
			 * fronting targets are ours. */
			struct tables *t;
			if ((pfd = msg_get_tables(&m)) == -1)
				goto bad;
			if ((t = tables_from_fd(pfd)) != NULL) {
				log_set_level(t->log_level);
				log_info("log level %d (reload in place)",
				    t->log_level);
				/* Fronting targets may have changed. */
				tlsprobe_retarget(D.probe, t);
				/* Users, for the API's views. */
				tables_take_users(D.a->cfg, t);
			} else {
				log_warnx("reload: unreadable tables");
			}
			tables_free(t);
			break;
		}
		case MSG_REOPEN_LOG:
			if (msg_get_reopen_log(&m, &pfd) == -1)
				goto bad;
			if (pfd != -1)
				log_set_fd(pfd);
			break;
		case MSG_API_REPLY: {
			static char json[MSG_PAYLOAD_MAX];
			uint32_t id, st;
			if (msg_get_api(&m, MSG_API_REPLY, &id, &st, json,
			        sizeof(json)) == -1)
				goto bad;
			api_answer(id, st, json);
			break;
		}
		case MSG_DCPOOL_PEER:
			if ((pfd = msg_get_dcpool_peer(&m, &slot, &gen)) == -1)
				goto bad;
			add_peer(pfd, (int)slot, (int)gen);
			break;
bad:
			log_warnx("malformed %s", msg_type_name(m.type));
			break;
		default:
			log_warnx("unexpected message %s from the supervisor",
			    msg_type_name(m.type));
		}
		msg_done(&m);
	}
	if (r == 0) {
		log_info("supervisor gone; dcpool exiting");
		exit(0);
	}
}

void
dcpool_main(struct dcpool_args *a)
{
	D.a = a;
	log_set_style(
	    a->cfg->log_json, a->cfg->log_facility, a->cfg->log_syslog_socket);
	log_init(a->cfg->log_target, a->cfg->log_file, a->cfg->log_level,
	    "mtprotod");
	proctitle_set("mtprotod: dcpool");
	fetch_resolv_conf = a->cfg->resolv_conf;
	priv_drop(&a->priv);
	D.base = event_base_new();
	if (D.base == NULL)
		fatalx("event_base_new failed");
	if (config_middle_used(a->cfg)) {
		D.tg = tgconf_start(D.base, a->cfg, tg_changed, NULL);
		if (D.tg == NULL)
			log_warnx("cannot start fetching Telegram's config");
	}
	D.pub = pubaddr_start(D.base, a->cfg, pub_changed, NULL);
	if (D.pub == NULL)
		log_warnx("cannot start finding the public address");
	mplink_init(D.base, a->cfg, D.tg, D.pub);
	D.probe = tlsprobe_start(D.base, a->cfg, shape_changed, NULL);
	metrics_start(
	    D.base, a->cfg, a->metrics, a->replay, a->policy, a->metrics_fd);
	api_start(D.base, a->cfg, a->policy, a->metrics, a->chan);
	fd_set_nonblock(a->chan);
	D.chan_ev =
	    event_new(D.base, a->chan, EV_READ | EV_PERSIST, chan_cb, NULL);
	event_add(D.chan_ev, NULL);
	if (msg_send_ready(a->chan) == -1)
		log_warn("telling the supervisor we are ready");
	log_info("dcpool serving (generation %d)", a->generation);
	event_base_dispatch(D.base);
	exit(0);
}
