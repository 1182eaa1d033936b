/*
 * The tables a reload changes in place (config_inplace_only): each
 * listener's users, ad tag, tls_domain and fronting target, and the log
 * level. The supervisor encodes them from the new config into a memfd
 * (MSG_TABLES); every worker and the dcpool decode them and swap them
 * in between two events, with no new process.
 *
 * Layout (host byte order): "MTPT", u32 version, i32 log level, u32
 * listeners, then per listener: name, tls_domain, fronting_host (each
 * u32 length + bytes), u32 fronting_port, u32 has_ad_tag, 16 bytes
 * ad_tag, u32 users, and per user: name (u32 length + bytes), 16 bytes
 * secret, u32 has_ad_tag, 16 bytes ad_tag, and the limits: u32 enabled,
 * max_connections, max_unique_ips, unique_ips_window, u64 quota, u32
 * quota_period, quota_day, u64 expires, rate, u32 pidx (the policy
 * zone's index).
 */
#ifndef MTP_TABLES_H
#define MTP_TABLES_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define TABLES_VERSION 2

struct tables_listener {
	char name[CONFIG_NAME_MAX];
	char tls_domain[CONFIG_DOMAIN_MAX + 1];
	char fronting_host[CONFIG_DOMAIN_MAX + 1];
	uint16_t fronting_port;
	int has_ad_tag;
	uint8_t ad_tag[CONFIG_AD_TAG_LEN];
	struct config_user *users; /* malloc'd; tables_take_users() */
	size_t nusers;
};

struct tables {
	int log_level;
	struct tables_listener *l;
	size_t nl;
};

/* The blob for cfg (malloc'd). 0, or -1 when out of memory. */
int tables_encode(const struct config *, uint8_t **out, size_t *len);
/* NULL when the blob is not whole tables of this version. */
struct tables *tables_decode(const uint8_t *blob, size_t len);
void tables_free(struct tables *);
/* tables_decode() of a memfd's content (MSG_TABLES); closes fd. */
struct tables *tables_from_fd(int fd);
/* l takes its users and ad tag from tl (which keeps none after). */
void tables_listener_take(struct config_listener *, struct tables_listener *);
/* Each listener of cfg takes its users and ad tag from t (which keeps
 * none of them after). */
void tables_take_users(struct config *cfg, struct tables *t);
/* The tables of the listener of that name, or NULL. */
struct tables_listener *tables_find(struct tables *, const char *name);

#endif
