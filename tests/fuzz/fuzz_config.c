/*
 * Config text in, a validated config or a well-formed error out. A config
 * that passes must satisfy every invariant the daemon relies on.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);
const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5's scanner leaks the string it was reading when the parse
 * fails (input: ""); that is its bug, not one the fuzzer can find in ours.
 */
const char *
__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

static void
check_str(const char *s, size_t cap)
{
	if (memchr(s, '\0', cap) == NULL)
		abort();
}

static void
check_config(const struct config *c)
{
	if (c->nlisteners < 1 || c->nlisteners > CONFIG_MAX_LISTENERS)
		abort();
	if (c->workers < 1 || c->workers > CONFIG_MAX_WORKERS)
		abort();
	if (c->shutdown_timeout < 1 || c->handshake_timeout < 1 ||
	    c->idle_timeout < 1 || c->restart_period < 1 ||
	    c->max_restarts < 0 || c->replay_window < 1 ||
	    c->replay_entries < 1024 || c->refresh < 1 ||
	    c->connect_timeout < 1)
		abort();
	if (c->tls_cert_len_min < 1 ||
	    c->tls_cert_len_min > c->tls_cert_len_max ||
	    c->tls_cert_len_max > 16384)
		abort();
	if (c->log_level < LOG_ERR || c->log_level > LOG_DEBUG)
		abort();
	if (c->log_target == LOG_TARGET_FILE && c->log_file[0] != '/')
		abort();
	if (c->ndcs > CONFIG_MAX_DCS || (c->ndcs > 0 && c->dcs == NULL))
		abort();
	for (size_t i = 0; i < c->ndcs; i++)
		if (c->dcs[i].id < 1 || c->dcs[i].addrlen == 0)
			abort();
	check_str(c->user, sizeof(c->user));
	check_str(c->pidfile, sizeof(c->pidfile));
	check_str(c->metrics_address, sizeof(c->metrics_address));
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct config_listener *l = &c->listeners[i];
		enum backend_mode b = config_listener_backend(c, l);

		if (b != BACKEND_MIDDLE && b != BACKEND_DIRECT)
			abort();
		if (l->port == 0 || l->addrlen == 0)
			abort();
		if (l->protocols == 0 ||
		    (l->protocols &
		        ~(unsigned)(PROTO_CLASSIC | PROTO_SECURE |
		            PROTO_FAKE_TLS)))
			abort();
		if ((l->protocols & PROTO_FAKE_TLS) &&
		    (strlen(l->tls_domain) < 4 || strlen(l->tls_domain) > 182))
			abort();
		if (l->nusers < 1 || l->nusers > CONFIG_MAX_USERS)
			abort();
		check_str(l->name, sizeof(l->name));
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->listeners[j].name, l->name) == 0)
				abort();
		for (size_t u = 0; u < l->nusers; u++) {
			check_str(l->users[u].name, sizeof(l->users[u].name));
			for (size_t v = 0; v < u; v++)
				if (strcmp(l->users[u].name,
				        l->users[v].name) == 0)
					abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERR_MAX];
	struct config *c;
	char *text;

	/* An @include could read any file, or block on a FIFO. */
	if (size > 65536 || memmem(data, size, "@", 1) != NULL)
		return 0;
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(err, 0x55, sizeof(err));
	c = config_load_string(text, "fuzz.conf", err, sizeof(err));
	if (c == NULL) {
		/* Always a terminated message naming the input. */
		if (memchr(err, '\0', sizeof(err)) == NULL ||
		    strncmp(err, "fuzz.conf", 9) != 0)
			abort();
	} else {
		check_config(c);
		config_free(c);
	}
	free(text);
	return 0;
}
