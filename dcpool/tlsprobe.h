/*
 * Site profiles (issue 9): what each fake-TLS listener's fronting target
 * answers a ClientHello shaped like the apps' (GREASE, X25519, TLS 1.3),
 * learned by the unprivileged dcpool, never on a client's path. At start
 * and every tls.profile_refresh seconds (with jitter) each target is
 * asked PROBE_SAMPLES times; its ServerHello (version, cipher, group,
 * key-share length, extension order, CCS) and the size of its encrypted
 * flight (records, total bytes, spread) make a tls_shape for the
 * workers, keyed by config_fronting_key(). Profiles are kept in state_dir, so an offline start uses the
 * last one; a target that cannot be reached keeps its last profile.
 */
#ifndef MTP_TLSPROBE_H
#define MTP_TLSPROBE_H

#include "config.h"
#include "tls.h"

#define TLSPROBE_KEY_MAX (CONFIG_DOMAIN_MAX + 8)

struct event_base;
struct tlsprobe;

/*
 * Starts (nothing when tls.profile is "static" or no listener has
 * fake_tls). changed runs for every new or changed profile, also for
 * those loaded from the cache before this returns.
 */
struct tlsprobe *tlsprobe_start(struct event_base *, const struct config *,
    void (*changed)(void *arg, const char *key, const struct tls_shape *),
    void *arg);
/* Calls fn for every known profile (to brief a new worker). */
void tlsprobe_each(struct tlsprobe *,
    void (*fn)(void *arg, const char *key, const struct tls_shape *),
    void *arg);
void tlsprobe_free(struct tlsprobe *);
/*
 * A reload in place changed listeners' fronting targets (tables.h): the
 * new ones are learned (now, or after the round under way), and every
 * known profile is told again through changed.
 */
struct tables;
void tlsprobe_retarget(struct tlsprobe *, const struct tables *);

#endif
