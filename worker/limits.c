/*
 * Limits in the worker: per-address and per-user admission, the quota
 * and rate on the data path, and a sweep that closes open connections of
 * users that ran out of quota, expired or were disabled. The counts are
 * in the policy zone (policy.h), shared by every worker.
 */
#include "autoconf.h"

#include <stdio.h>
#include <time.h>

#include "log.h"
#include "policy.h"
#include "session_int.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

/* Open connections refresh their address in max_unique_ips this often. */
#define SEEN_REFRESH_S 30

static struct event sweep;

static int64_t
wall_now(void)
{
	return (int64_t)time(NULL);
}

static const struct config_user *
user_of(const struct session *s)
{
	if (s->user < 0 || (size_t)s->user >= s->l->nusers)
		return NULL;
	return &s->l->users[s->user];
}

static void
log_refusal(
    const struct session *s, const struct config_user *u, enum policy_verdict v)
{
	char a[ADDR_STRLEN];

	addr_str((const struct sockaddr *)&s->peer, a, sizeof(a));
	if (u)
		log_info("%s: user %s of %s refused: %s", a, u->name,
		    s->l->name, policy_reason_name(v));
	else
		log_info("%s: refused on %s: %s", a, s->l->name,
		    policy_reason_name(v));
}

enum policy_verdict
limits_admit_addr(struct session *s)
{
	struct policy *p = W.a->policy;
	enum policy_verdict v;

	if (p == NULL)
		return POLICY_OK;
	v = policy_admit_addr(p, W.a->pslot, &s->peer.sa, s->l->shm_index,
	    &W.cfg->limits, &s->l->limits, 0, &s->claim);
	if (v != POLICY_OK) {
		shm_add(W.metrics, M_LIM_PER_IP + (v - POLICY_PER_IP), 1);
		log_refusal(s, NULL, v);
	}
	return v;
}

/* The quota period of s's user, kept current in the session. */
static void
period_update(struct session *s, const struct config_user *u, int64_t now)
{
	if (now >= s->period_end || now < s->period_start) {
		s->period_start =
		    policy_period_start(u->quota_period, u->quota_day, now);
		s->period_end = policy_period_next(
		    u->quota_period, u->quota_day, s->period_start);
	}
}

/* Why u may not connect now (besides counts), or POLICY_OK. */
static enum policy_verdict
user_state(struct session *s, const struct config_user *u, int64_t now)
{
	if (!u->enabled)
		return POLICY_USER_DISABLED;
	if (u->expires && now >= u->expires)
		return POLICY_USER_EXPIRED;
	if (u->quota && s->urec) {
		period_update(s, u, now);
		if (policy_used(s->urec, s->period_start) >= u->quota)
			return POLICY_USER_QUOTA;
	}
	return POLICY_OK;
}

enum policy_verdict
limits_admit_user(struct session *s, int idx)
{
	const struct config_user *u = &s->l->users[idx];
	struct policy *p = W.a->policy;
	int64_t now = wall_now();
	enum policy_verdict v;

	s->urec = p ? policy_user(p, u->pidx) : NULL;
	s->period_start = s->period_end = 0;
	if ((v = user_state(s, u, now)) == POLICY_OK && p)
		v = policy_admit_user(
		    p, W.a->pslot, &s->peer.sa, u, now, 0, &s->claim);
	if (v != POLICY_OK) {
		shm_add(W.metrics, M_LIM_PER_IP + (v - POLICY_PER_IP), 1);
		log_refusal(s, u, v);
		s->urec = NULL;
		return v;
	}
	s->seen_at = now;
	return POLICY_OK;
}

void
limits_adopt(struct session *s)
{
	struct policy *p = W.a->policy;
	const struct config_user *u = user_of(s);

	if (p == NULL)
		return;
	(void)policy_admit_addr(p, W.a->pslot, &s->peer.sa, s->l->shm_index,
	    &W.cfg->limits, &s->l->limits, 1, &s->claim);
	if (u == NULL)
		return;
	s->urec = policy_user(p, u->pidx);
	s->seen_at = wall_now();
	(void)policy_admit_user(
	    p, W.a->pslot, &s->peer.sa, u, s->seen_at, 1, &s->claim);
}

void
limits_release(struct session *s)
{
	if (W.a->policy && s->claim.bits)
		policy_release(W.a->policy, W.a->pslot, &s->peer.sa, &s->claim);
	if (evtimer_initialized(&s->throttle))
		evtimer_del(&s->throttle);
	s->urec = NULL;
}

static void
close_for(struct session *s, const struct config_user *u, enum policy_verdict v)
{
	char a[ADDR_STRLEN];
	enum shm_counter c = v == POLICY_USER_QUOTA ? M_CLOSED_QUOTA
	    : v == POLICY_USER_EXPIRED              ? M_CLOSED_EXPIRED
	                                            : M_CLOSED_DISABLED;

	shm_add(W.metrics, c, 1);
	log_info("%s: closed: user %s of %s %s",
	    addr_str((struct sockaddr *)&s->peer, a, sizeof(a)), u->name,
	    s->l->name,
	    v == POLICY_USER_QUOTA         ? "used up its quota"
	        : v == POLICY_USER_EXPIRED ? "expired"
	                                   : "was disabled");
	session_close(s, policy_reason_name(v));
}

static void
throttle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	for (int i = 0; i < 2; i++) {
		struct side *sd = i ? &s->s : &s->c;
		struct side *to = i ? &s->c : &s->s;
		if (!sd->throttled)
			continue;
		sd->throttled = 0;
		if (!sd->eof && to->out.len == to->out.off)
			side_want_read(s, sd, 1);
	}
}

int
limits_charge(struct session *s, int up, size_t n)
{
	const struct config_user *u;

	if (s->urec == NULL || (u = user_of(s)) == NULL)
		return 0;
	int64_t now = wall_now();
	period_update(s, u, now);
	uint64_t used = policy_charge(s->urec, up, n, s->period_start);
	if (u->quota && used >= u->quota) {
		close_for(s, u, POLICY_USER_QUOTA);
		return -1;
	}
	/* Only what we read can wait: in middle mode the answers come
	 * on a shared link, so only the upload is throttled. */
	if (u->rate && (up || s->mode == RELAY_DIRECT)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns =
		    (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		uint64_t wait = policy_rate_take(s->urec, up, n, u->rate, ns);
		if (wait) {
			struct side *sd = up ? &s->c : &s->s;
			struct timeval tv = { (time_t)(wait / 1000000000ull),
				(suseconds_t)(wait % 1000000000ull / 1000) };
			side_want_read(s, sd, 0);
			sd->throttled = 1;
			if (!evtimer_initialized(&s->throttle))
				evtimer_assign(
				    &s->throttle, W.base, throttle_cb, s);
			evtimer_add(&s->throttle, &tv);
			shm_add(W.metrics, M_THROTTLED, 1);
		}
	}
	return 0;
}

/* Once a second: users that ran out, expired or were disabled lose
 * their open connections; open connections keep their address fresh. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s, *next;
	int64_t now = wall_now();

	for (s = TAILQ_FIRST(session_live_list()); s; s = next) {
		const struct config_user *u;
		next = TAILQ_NEXT(s, entry);
		if (s->closed || s->urec == NULL || (u = user_of(s)) == NULL)
			continue;
		enum policy_verdict v = user_state(s, u, now);
		if (v != POLICY_OK) {
			close_for(s, u, v);
			continue;
		}
		if (u->max_unique_ips && now - s->seen_at >= SEEN_REFRESH_S) {
			s->seen_at = now;
			policy_user_seen(W.a->policy, &s->peer.sa, u, now);
		}
	}
}

void
limits_init(void)
{
	struct timeval tv = { 1, 0 };

	event_assign(&sweep, W.base, -1, EV_PERSIST, sweep_cb, NULL);
	event_add(&sweep, &tv);
}
