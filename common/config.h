/*
 * The parsed configuration (CONFIG.md is the interface). The supervisor
 * parses and validates the file; children are forked with the result in
 * memory and never parse a file themselves.
 */
#ifndef MTP_CONFIG_H
#define MTP_CONFIG_H

#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#include "acl.h"
#include "util.h"

#define CONFIG_SECRET_LEN    16
#define CONFIG_AD_TAG_LEN    16
#define CONFIG_MAX_WORKERS   256
#define CONFIG_MAX_LISTENERS 64
#define CONFIG_MAX_USERS     250000
#define CONFIG_MAX_DCS       64
#define CONFIG_NAME_MAX      64
#define CONFIG_DOMAIN_MAX    253
#define CONFIG_SALT_MAX      256 /* per_sni_salt, bytes */
#define CONFIG_ERR_MAX       512
#define CONFIG_MAX_SOURCES   16 /* network.stun_servers, ip_urls */
#define CONFIG_IP_MAX        46 /* INET6_ADDRSTRLEN */

/* Protocols a listener accepts (bit set). */
#define PROTO_CLASSIC  0x1 /* obfuscated2, tags ef / ee */
#define PROTO_SECURE   0x2 /* obfuscated2, tag dd ("dd" secrets) */
#define PROTO_FAKE_TLS 0x4 /* fake TLS, tag dd inside ("ee" secrets) */

enum backend_mode {
	BACKEND_INHERIT = 0, /* listener: use the global one */
	BACKEND_AUTO, /* middle if an ad_tag is set, else direct */
	BACKEND_MIDDLE,
	BACKEND_DIRECT,
};

enum log_target_kind { LOG_TARGET_STDERR, LOG_TARGET_SYSLOG, LOG_TARGET_FILE };

/* quota_period */
enum quota_period { QUOTA_NEVER = 0, QUOTA_DAILY, QUOTA_MONTHLY };
/* The most addresses max_unique_ips may allow (the policy zone keeps as
 * many per user). */
#define CONFIG_MAX_UNIQUE_IPS 64

struct config_user {
	char name[CONFIG_NAME_MAX];
	uint8_t secret[CONFIG_SECRET_LEN];
	int has_ad_tag;
	uint8_t ad_tag[CONFIG_AD_TAG_LEN];
	/* limits; 0 = none */
	int enabled; /* bool, 1 unless "enabled = false" */
	int max_connections;
	int max_unique_ips; /* within unique_ips_window seconds */
	int unique_ips_window;
	uint64_t quota; /* bytes both ways per period */
	int quota_period; /* enum quota_period */
	int quota_day; /* QUOTA_MONTHLY: the day it resets (1..31) */
	int64_t expires; /* Unix time; 0 = never */
	uint64_t rate; /* bytes per second each way */
	/* Index of the user's record in the policy zone (policy.h), stable
	 * for its listener and name; set by the supervisor, -1 none. */
	int pidx;
};

/* limits = { per_ip; per_subnet; subnet_v4; subnet_v6; }: connections
 * one client address or subnet may hold; 0 = unlimited. */
struct config_limits {
	int per_ip;
	int per_subnet;
	int subnet_v4; /* prefix lengths of a "subnet" */
	int subnet_v6;
};

/* access = { allow; deny; allow_file; deny_file; } (global, listener) */
struct config_access {
	struct acl allow; /* non-empty: only these may connect */
	struct acl deny;
};

/* Address blocks in one allow list (metrics.allow, proxy_protocol_trusted). */
#define CONFIG_MAX_ALLOW 32

/* tls_domains: a name the listener also answers to, and its site. */
#define CONFIG_MAX_TLS_DOMAINS 16
struct config_sni {
	char name[CONFIG_DOMAIN_MAX + 1];
	char fronting_host[CONFIG_DOMAIN_MAX + 1]; /* "": the listener's */
	uint16_t fronting_port;
};

struct config_listener {
	char name[CONFIG_NAME_MAX];
	char address[64]; /* literal, as written */
	uint16_t port;
	struct sockaddr_storage addr; /* parsed address:port */
	socklen_t addrlen;
	unsigned protocols; /* PROTO_* bits */
	char tls_domain[CONFIG_DOMAIN_MAX + 1];
	char fronting_host[CONFIG_DOMAIN_MAX + 1];
	uint16_t fronting_port;
	int has_ad_tag;
	uint8_t ad_tag[CONFIG_AD_TAG_LEN];
	enum backend_mode backend;
	char server[CONFIG_DOMAIN_MAX + 1]; /* for links; "" = found */
	int fronting_proxy_v2; /* fronting_proxy_protocol = "v2" */
	enum unknown_sni { SNI_FRONT, SNI_DROP, SNI_REJECT } unknown_sni;
	struct config_sni snis[CONFIG_MAX_TLS_DOMAINS]; /* tls_domains */
	size_t nsnis;
	/* per_sni_secrets: a fake-TLS user's key for a name is
	 * tls_sni_secret(secret, per_sni_salt, name) (tls.h) */
	int per_sni_secrets;
	char per_sni_salt[CONFIG_SALT_MAX + 1];
	struct config_user *users;
	size_t nusers;
	int max_connections; /* limits.max_connections here; 0 = unlimited */
	struct config_limits limits; /* this listener's per_ip, per_subnet */
	int handshake_mss; /* TCP_MAXSEG of the listening socket; 0 = kernel's */
	/* proxy_protocol: PROXY_V1 / PROXY_V2 bits (proxyproto.h); 0 off */
	unsigned proxy_protocol;
	struct cidr proxy_trusted[CONFIG_MAX_ALLOW]; /* who may send one */
	size_t nproxy_trusted;
	struct config_access access; /* this listener's own lists */
	int rst_on_failed; /* failed, non-fronted handshakes end with a RST */
	/*
	 * Index of this listener's connection gauges in shared memory
	 * (shm_listener_index), stable for its name across reloads; set by
	 * the supervisor after parsing, -1 when the table is full.
	 */
	int shm_index;
};

struct config_dc {
	int id; /* 1..5, 203, 10001.. test */
	char address[80]; /* "host:port" as written */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct config {
	char path[4096]; /* file it came from, "" = built-in */
	char user[CONFIG_NAME_MAX];
	char group[CONFIG_NAME_MAX];
	int user_given, group_given; /* 1: in the file, 0: the default */
	char chroot[4096];
	int workers; /* resolved: >= 1 */
	int workers_auto;
	char pidfile[4096];
	char state_dir[4096];
	int shutdown_timeout;
	int max_restarts;
	int restart_period;
	int handshake_timeout;
	int idle_timeout;
	enum backend_mode backend;
	char *resolv_conf; /* resolver file; NULL = /etc/resolv.conf */

	/* limits: admission control */
	int max_connections; /* whole daemon; 0 = unlimited */
	struct config_limits limits; /* per_ip, per_subnet over all listeners */
	uint64_t handshake_memory; /* bytes, whole daemon; 0 = no bound */

	enum log_target_kind log_target;
	char log_file[4096];
	int log_level; /* LOG_DEBUG .. LOG_ERR (syslog.h) */
	int log_json; /* log.format = "json" */
	int log_facility; /* log.facility, LOG_DAEMON by default */
	char log_syslog_socket[108]; /* log.syslog_socket; "" = /dev/log */

	struct config_listener *listeners;
	size_t nlisteners;

	size_t replay_entries;
	int replay_window;

	/* fake TLS */
	int tls_time_skew_past; /* accept ts >= now - this */
	int tls_time_skew_future; /* accept ts <= now + this */
	int tls_cert_len_min; /* app-data record length range */
	int tls_cert_len_max;
	int tls_profile_learn; /* tls.profile: 1 "learn", 0 "static" */
	int tls_profile_refresh; /* seconds */
	int tls_record_fixed; /* tls.record_sizing = "fixed" */
	int tls_split_hello; /* ServerHello and CCS+data in two segments */
	int tls_hello_delay_site; /* tls.hello_delay: 1 "site", 0 "0" */

	/* telegram */
	struct config_dc *dcs; /* overrides of the built-in table */
	size_t ndcs;
	int default_dc;
	char proxy_secret_url[1024];
	char proxy_config_url[1024];
	char proxy_config_v6_url[1024];
	char proxy_secret_file[4096];
	char proxy_config_file[4096];
	int refresh;
	char nat_ip[64];
	int connect_timeout;

	/* network: the public address and IPv6 (issue 13) */
	char public_ipv4[CONFIG_IP_MAX]; /* "" = discover (nat_ip too) */
	char public_ipv6[CONFIG_IP_MAX];
	int discover; /* bool: ask stun_servers and ip_urls */
	int discover_interval; /* seconds between rounds */
	char stun_servers[CONFIG_MAX_SOURCES][CONFIG_DOMAIN_MAX + 8];
	size_t nstun_servers; /* the built-in list when none given */
	char ip_urls[CONFIG_MAX_SOURCES][512];
	size_t nip_urls;
	int prefer_ipv6; /* bool: for DCs and middle proxies */

	/* metrics */
	char metrics_address[64];
	uint16_t metrics_port; /* 0 = off */
	struct config_access access; /* every listener's */
	struct cidr metrics_allow[CONFIG_MAX_ALLOW]; /* none: everyone */
	size_t nmetrics_allow;
	int metrics_max_user_series; /* per-user series; the rest "other" */

	/* api: the management API (dcpool/api.c) */
	char api_address[64];
	uint16_t api_port; /* 0 = off */
	struct cidr api_allow[CONFIG_MAX_ALLOW];
	size_t napi_allow;
	char api_token[256]; /* "" = no Authorization needed */
	int api_read_only;
	char api_users_file[4096]; /* resolved: state_dir/users.conf */

	/* telegram: fetching the middle-proxy secret and lists */
	char ca_file[4096]; /* PEM CAs; "" = system store */
	int http_timeout;
	char proxy_config_v6_file[4096];

	/* middle: the worker's link pool to the middle proxies */
	int middle_min_links; /* per DC per worker */
	int middle_clients_per_link;
	int middle_ping_interval;
	int middle_ping_timeout;
	size_t middle_client_queue_max; /* bytes */
	int middle_client_queue_timeout;
	size_t middle_link_queue_max; /* bytes */
	int middle_fallback_direct; /* bool */
	int middle_pool_idle_timeout; /* seconds; 0 = keep min_links */
};

/*
 * Parse and validate a config file. On error returns NULL and writes
 * "FILE:LINE: option: what is wrong" into err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
/* Parse from a string (tests); name is used in error messages. */
struct config *config_load_string(
    const char *text, const char *name, char *err, size_t errlen);
/*
 * The built-in default used when no config file exists: one fake-TLS
 * listener (443 as root, else 8443) with a secret kept in state_dir.
 */
struct config *config_default(char *err, size_t errlen);
void config_free(struct config *);

/*
 * A size: decimal digits with an optional K, M, G or T suffix (1024-based,
 * either case), e.g. "64M". -1 if malformed or above UINT64_MAX.
 */
int config_parse_size(const char *text, uint64_t *out);
/*
 * "host:port", "[v6]:port", or a bare host (then default_port), the host
 * a name or an address literal: 0, or -1 if malformed.
 */
int config_host_port(const char *text, uint16_t default_port, char *host,
    size_t hostcap, uint16_t *port);
/* The STUN port (RFC 8489), for network.stun_servers without one. */
#define CONFIG_STUN_PORT 3478
/* "0123..." (32 hex digits, any case) -> 16 bytes; -1 if malformed. */
int config_parse_secret(const char *hex, uint8_t out[16]);
/*
 * RFC 3339 ("2027-01-31T00:00:00Z", "2027-01-31T03:00:00+03:00",
 * fractions of a second ignored) -> Unix time; -1 if malformed.
 */
int config_parse_time(const char *text, int64_t *out);
/*
 * api.users_file: the users it lists (a list's inside, as a listener's
 * "users = ( @include ... )" takes it), checked as a listener's users
 * are. A missing file is no users. 0, or -1 with "FILE:LINE: ..." in err.
 */
int config_users_load(const char *path, struct config_user **out, size_t *n,
    char *err, size_t errlen);
/*
 * quota_period's text ("never", "daily", "monthly", "monthly:DAY") into
 * its enum quota_period and day: 0, -2 for a day outside 1..31, -1 if
 * malformed.
 */
int config_parse_quota_period(const char *text, int *period, int *day);
/* Is a client at sa refused by access (the global lists, then l's)? */
int config_access_denied(const struct config *, const struct config_listener *,
    const struct sockaddr *);
/* Some listener goes through the middle proxies. */
int config_middle_used(const struct config *);
/* The effective backend of a listener (resolves INHERIT and AUTO). */
enum backend_mode
config_listener_backend(const struct config *, const struct config_listener *);
const char *config_proto_name(unsigned proto_bit);
/* "host:port" of a listener's fronting target (site profiles' key). */
void config_fronting_key(const struct config_listener *, char *out, size_t cap);
/*
 * 1 if b differs from a only in what running children take in place:
 * each listener's users, ad_tag, tls_domain and fronting target, and
 * log.level (listeners in the same order; no "auto" listener changing
 * its backend). Anything else needs a new generation.
 */
int config_inplace_only(const struct config *a, const struct config *b);

/*
 * config_default() with an explicit state directory (tests; also for a
 * --state-dir option). The secret is kept in STATE_DIR/secret.
 */
struct config *
config_default_in(const char *state_dir, char *err, size_t errlen);
/* api.users_file's default name, in state_dir. */
#define CONFIG_USERS_FILE "users.conf"
/* Name of the file that holds the built-in default's secret. */
#define CONFIG_SECRET_FILE "secret"

#endif
