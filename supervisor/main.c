/*
 * mtprotod [-c FILE] [-f] [-t] [-s reload|stop|quit|upgrade] [-V] [-h]
 * mtprotod --links [-c FILE] [--server HOST]
 * mtprotod --gen-secret [--tls-domain NAME]
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "config.h"
#include "dcpool/pubaddr.h"
#include "dcpool/selfcheck.h"
#include "dcpool/tgconf.h"
#include "discover.h"
#include "links.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

#define DEFAULT_CONFIG SYSCONFDIR "/mtprotod/mtprotod.conf"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mtprotod [-c FILE] [-f] [-t] [-s reload|stop|quit|upgrade] "
	    "[-V] [-h]\n"
	    "       mtprotod --links [-c FILE] [--server HOST]\n"
	    "       mtprotod --gen-secret [--tls-domain NAME]\n"
	    "\n"
	    "  -c FILE   configuration file (default " DEFAULT_CONFIG ";\n"
	    "            without it, a built-in fake-TLS listener is used)\n"
	    "  -f        stay in the foreground, log to stderr\n"
	    "  -t        check the configuration and exit (0 good, 1 bad)\n"
	    "  --check   as -t, then find the public address (behind NAT?),\n"
	    "            and check the clock, the DCs, the middle proxies,\n"
	    "            the fronting sites and the TLS names (exit 1 on\n"
	    "            a FAIL)\n"
	    "  -s SIG    signal the running daemon (via its pidfile):\n"
	    "            reload (SIGHUP), stop (SIGTERM), quit (SIGQUIT),\n"
	    "            reopen (SIGUSR1: log file), upgrade (SIGUSR2: run\n"
	    "            the installed binary, keeping every connection)\n"
	    "  -V        print the version\n"
	    "  --print-pidfile  print the pidfile path of the config\n"
	    "  --links   print the tg:// and t.me links (and QR codes)\n"
	    "  --server HOST  the address clients use, for --links\n"
	    "  --gen-secret   print a new random secret\n"
	    "  --tls-domain NAME  with --gen-secret: also the ee form\n");
}

/*
 * The config: -c FILE, else the default path when it exists, else the
 * built-in default. *path_out is NULL for the built-in one.
 */
static struct config *
load_config(const char *cfile, const char **path_out)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg;
	struct stat st;

	if (cfile == NULL && stat(DEFAULT_CONFIG, &st) == 0)
		cfile = DEFAULT_CONFIG;
	if (cfile) {
		char *abs = realpath(cfile, NULL);
		if (abs == NULL) {
			fprintf(stderr, "mtprotod: %s: %s\n", cfile,
			    strerror(errno));
			return NULL;
		}
		cfg = config_load(abs, err, sizeof(err));
		*path_out = abs;
	} else {
		cfg = config_default(err, sizeof(err));
		*path_out = NULL;
	}
	if (cfg == NULL)
		fprintf(stderr, "mtprotod: %s\n", err);
	return cfg;
}

static int
signal_daemon(struct config *cfg, const char *what)
{
	static const struct {
		const char *name;
		int sig;
	} sigs[] = {
		{ "reload", SIGHUP },
		{ "stop", SIGTERM },
		{ "quit", SIGQUIT },
		{ "reopen", SIGUSR1 },
		{ "upgrade", SIGUSR2 },
	};
	int sig = 0;
	char buf[32] = "";

	for (size_t i = 0; i < nitems(sigs); i++)
		if (strcmp(what, sigs[i].name) == 0)
			sig = sigs[i].sig;
	if (sig == 0) {
		fprintf(stderr,
		    "mtprotod: -s takes reload, stop, quit, reopen or "
		    "upgrade, not \"%s\"\n",
		    what);
		return 1;
	}
	FILE *f = fopen(cfg->pidfile, "r");
	if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
		fprintf(stderr, "mtprotod: cannot read pidfile %s: %s\n",
		    cfg->pidfile, f ? "empty" : strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	long pid = strtol(buf, NULL, 10);
	if (pid <= 1 || kill((pid_t)pid, sig) == -1) {
		fprintf(stderr, "mtprotod: cannot signal pid %ld: %s\n", pid,
		    pid <= 1 ? "bad pidfile" : strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * What the links can name before the dcpool has looked: the addresses
 * given by hand, else the copy the dcpool keeps in state_dir.
 */
static void
known_pubaddr(const struct config *cfg, struct pubaddr_state *st)
{
	uint8_t *body;
	size_t len;

	memset(st, 0, sizeof(*st));
	if (tgconf_cache_read(cfg->state_dir, PUBADDR_CACHE, &body, &len) ==
	    0) {
		if (pubaddr_parse(body, len, st) == -1)
			memset(st, 0, sizeof(*st));
		free(body);
	}
	if (cfg->public_ipv4[0] != '\0') {
		snprintf(st->v4, sizeof(st->v4), "%s", cfg->public_ipv4);
		snprintf(st->from4, sizeof(st->from4), "config");
	}
	if (cfg->public_ipv6[0] != '\0') {
		snprintf(st->v6, sizeof(st->v6), "%s", cfg->public_ipv6);
		snprintf(st->from6, sizeof(st->from6), "config");
	}
	if (st->v4[0] == '\0' && st->v6[0] == '\0')
		snprintf(st->why, sizeof(st->why), "%s",
		    cfg->discover ? "not found yet (the daemon looks for it "
		                    "at start, and prints the links again)"
		                  : "network.discover is off");
}

/* Everything after the config is read; frees it. */
static int
run(struct config *cfg, const char *path, int test, const char *sig, int links,
    const char *server, struct sup_options *opt)
{
	int rc;

	if (cfg == NULL)
		return 1;
	if (test) {
		printf("mtprotod: configuration %s is ok\n",
		    path ? path : "(built-in default)");
		rc = 0;
		if (test == 2 && pubaddr_report(cfg, stdout) == -1)
			rc = 1;
		if (test == 2 && check_run(cfg, stdout) == -1)
			rc = 1;
		config_free(cfg);
		return rc;
	}
	if (getcwd(opt->cwd, sizeof(opt->cwd)) == NULL)
		snprintf(opt->cwd, sizeof(opt->cwd), "/");
	config_absolutize(cfg, opt->cwd);
	known_pubaddr(cfg, &opt->pub);
	opt->server = server;
	if (sig || links) {
		rc = 0;
		if (sig)
			rc = signal_daemon(cfg, sig);
		else
			links_print(stdout, cfg, server, &opt->pub, 1);
		config_free(cfg);
		return rc;
	}
	log_set_style(cfg->log_json, cfg->log_facility, cfg->log_syslog_socket);
	if (log_init(cfg->log_target, cfg->log_file, cfg->log_level,
	        "mtprotod") == -1) {
		fprintf(stderr, "mtprotod: cannot open log file %s: %s\n",
		    cfg->log_file, strerror(errno));
		config_free(cfg);
		return 1;
	}
	opt->config_path = path;
	links_print_start(
	    stdout, cfg, server, &opt->pub, isatty(STDOUT_FILENO));
	fflush(stdout);
	/* The supervisor owns cfg from here (a reload replaces it). */
	return supervisor_run(cfg, opt);
}

int
main(int argc, char **argv)
{
	enum {
		OPT_LINKS = 256,
		OPT_GEN_SECRET,
		OPT_TLS_DOMAIN,
		OPT_SERVER,
		OPT_UPGRADE_FD,
		OPT_CHECK,
		OPT_PRINT_PIDFILE
	};
	static const struct option longopts[] = {
		{ "links", no_argument, NULL, OPT_LINKS },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ "print-pidfile", no_argument, NULL, OPT_PRINT_PIDFILE },
		{ "gen-secret", no_argument, NULL, OPT_GEN_SECRET },
		{ "tls-domain", required_argument, NULL, OPT_TLS_DOMAIN },
		{ "server", required_argument, NULL, OPT_SERVER },
		/* internal: a binary upgrade runs us with it */
		{ "upgrade-fd", required_argument, NULL, OPT_UPGRADE_FD },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct sup_options opt = { .upgrade_fd = -1 };
	const char *cfile = NULL, *sig = NULL, *tls_domain = NULL;
	const char *server = NULL, *path = NULL;
	int test = 0, links = 0, gen = 0, print_pidfile = 0, ch, rc;
	struct config *cfg;

	proctitle_init(argc, argv);
	while (
	    (ch = getopt_long(argc, argv, "c:fts:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cfile = optarg;
			opt.config_explicit = 1;
			break;
		case 'f':
			opt.foreground = 1;
			break;
		case 't':
			test = 1;
			break;
		case 's':
			sig = optarg;
			break;
		case 'V':
			printf("mtprotod %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_LINKS:
			links = 1;
			break;
		case OPT_CHECK:
			test = 2;
			break;
		case OPT_PRINT_PIDFILE:
			print_pidfile = 1;
			break;
		case OPT_GEN_SECRET:
			gen = 1;
			break;
		case OPT_TLS_DOMAIN:
			tls_domain = optarg;
			break;
		case OPT_SERVER:
			server = optarg;
			break;
		case OPT_UPGRADE_FD: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 3 || v > 65535) {
				usage(stderr);
				return 1;
			}
			opt.upgrade_fd = (int)v;
			break;
		}
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	if (gen) {
		uint8_t secret[16];
		random_bytes(secret, sizeof(secret));
		if (links_print_secret(stdout, secret, tls_domain) == -1) {
			fprintf(stderr,
			    "mtprotod: unusable --tls-domain \"%s\"\n",
			    tls_domain);
			return 1;
		}
		return 0;
	}

	cfg = load_config(cfile, &path);
	if (print_pidfile) {
		/* For init scripts: where the running daemon's pid is. */
		if (cfg == NULL)
			return 1;
		printf("%s\n", cfg->pidfile);
		config_free(cfg);
		free((char *)path);
		return 0;
	}
	rc = run(cfg, path, test, sig, links, server, &opt);
	free((char *)path);
	return rc;
}
