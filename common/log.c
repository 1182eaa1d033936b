#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "config.h"
#include "log.h"

static struct {
	int target; /* LOG_TARGET_* */
	int level;
	int fd; /* stderr or the file */
	char file[4096];
	char ident[64];
	int detached; /* no stderr any more: it goes to syslog */
	int json; /* one JSON object per line */
	int facility; /* syslog's */
	char syslog_path[108]; /* the syslog socket, /dev/log by default */
	int sock; /* datagram socket to it, or -1 */
	pid_t sock_pid; /* the process that opened sock */
} L = { LOG_TARGET_STDERR, LOG_INFO, 2, "", "mtprotod", 0, 0, LOG_DAEMON,
	"/dev/log", -1, 0 };

/*
 * Our own syslog client (RFC 3164 over the local datagram socket, as
 * glibc's): the socket's path can be set (log.syslog_socket), and it is
 * opened at once, before a chroot or a drop of privileges.
 */
static void
syslog_close(void)
{
	/* A child forgets its parent's socket (closed when it started)
	 * rather than close a number that may be reused. */
	if (L.sock != -1 && L.sock_pid == getpid())
		close(L.sock);
	L.sock = -1;
}

static void
syslog_open(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	syslog_close();
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", L.syslog_path);
	L.sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	L.sock_pid = getpid();
	if (L.sock != -1 &&
	    connect(L.sock, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(L.sock);
		L.sock = -1;
	}
}

static void
syslog_send(int level, const char *msg)
{
	char line[4608], ts[32];
	time_t now = time(NULL);
	struct tm tm;
	int n;

	localtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "<%d>%s %s[%d]: %s",
	    L.facility | level, ts, L.ident, (int)getpid(), msg);
	if (n < 0)
		return;
	if (n >= (int)sizeof(line))
		n = sizeof(line) - 1;
	/*
	 * Never wait for a slow syslog daemon (a worker's loop would stop
	 * with it): a full socket drops the line. One that went away
	 * (restarted) is connected again, once.
	 */
	for (int tries = 0; tries < 2; tries++) {
		if (L.sock == -1)
			syslog_open();
		if (L.sock == -1 ||
		    send(L.sock, line, (size_t)n,
		        MSG_DONTWAIT | MSG_NOSIGNAL) != -1 ||
		    errno == EAGAIN || errno == EINTR)
			return;
		syslog_close();
	}
}

static const char *level_names[] = {
	[LOG_EMERG] = "emerg",
	[LOG_ALERT] = "alert",
	[LOG_CRIT] = "crit",
	[LOG_ERR] = "error",
	[LOG_WARNING] = "warning",
	[LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

int
log_level_from_name(const char *name)
{
	for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	if (strcmp(name, "warn") == 0)
		return LOG_WARNING;
	return -1;
}

const char *
log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG)
		return "?";
	return level_names[level];
}

static int
open_file(void)
{
	int fd = open(L.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (L.fd > 2)
		close(L.fd);
	L.fd = fd;
	return 0;
}

int
log_init(int target, const char *file, int level, const char *ident)
{
	if (L.target == LOG_TARGET_SYSLOG)
		syslog_close();
	if (L.detached && target == LOG_TARGET_STDERR)
		target = LOG_TARGET_SYSLOG;
	L.target = target;
	L.level = level;
	if (ident)
		log_set_ident(ident);
	switch (target) {
	case LOG_TARGET_SYSLOG:
		syslog_open();
		break;
	case LOG_TARGET_FILE:
		snprintf(L.file, sizeof(L.file), "%s", file);
		return open_file();
	default:
		if (L.fd > 2)
			close(L.fd);
		L.fd = 2;
	}
	return 0;
}

void
log_set_style(int json, int facility, const char *syslog_path)
{
	L.json = json;
	L.facility = facility;
	if (syslog_path != NULL && syslog_path[0] != '\0')
		snprintf(
		    L.syslog_path, sizeof(L.syslog_path), "%s", syslog_path);
}

void
log_detach(void)
{
	L.detached = 1;
	if (L.target == LOG_TARGET_STDERR)
		log_init(LOG_TARGET_SYSLOG, NULL, L.level, NULL);
}

void
log_set_ident(const char *ident)
{
	snprintf(L.ident, sizeof(L.ident), "%s", ident);
}

void
log_set_level(int level)
{
	L.level = level;
}

int
log_get_level(void)
{
	return L.level;
}

int
log_fd(void)
{
	return L.target == LOG_TARGET_SYSLOG ? -1 : L.fd;
}

void
log_set_fd(int fd)
{
	if (L.target != LOG_TARGET_FILE) {
		close(fd);
		return;
	}
	if (L.fd > 2)
		close(L.fd);
	L.fd = fd;
}

int
log_reopen(void)
{
	if (L.target != LOG_TARGET_FILE)
		return 0;
	return open_file();
}

/* text as a JSON string's contents (quotes, backslashes, controls). */
static size_t
json_escape(char *out, size_t cap, const char *text)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)text;
	     *p != '\0' && n + 7 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p < 0x20 || *p == 0x7f)
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
		else
			out[n++] = (char)*p;
	}
	out[n] = '\0';
	return n;
}

void
log_vmsg(int level, const char *fmt, va_list ap)
{
	char msg[2048], esc[4096], line[4608];
	int n, saved = errno;

	if (level > L.level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (L.json)
		json_escape(esc, sizeof(esc), msg);
	if (L.target == LOG_TARGET_SYSLOG) {
		/* The syslog header has the time, ident and pid. */
		if (L.json) {
			char j[4200];

			snprintf(j, sizeof(j),
			    "{\"level\":\"%s\",\"msg\":\"%s\"}",
			    log_level_name(level), esc);
			syslog_send(level, j);
		} else
			syslog_send(level, msg);
		errno = saved;
		return;
	}
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	if (L.json) {
		char ts[32], tz[8];

		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		strftime(tz, sizeof(tz), "%z", &tm);
		n = snprintf(line, sizeof(line),
		    "{\"time\":\"%s.%03d%.3s:%s\",\"level\":\"%s\","
		    "\"ident\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}",
		    ts, (int)(tv.tv_usec / 1000), tz, tz + 3,
		    log_level_name(level), L.ident, (int)getpid(), esc);
	} else {
		n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - n, ".%03d %s[%d] %s: %s",
		    (int)(tv.tv_usec / 1000), L.ident, (int)getpid(),
		    log_level_name(level), msg);
	}
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so that processes sharing the fd interleave
	 * whole lines only. */
	ssize_t w = write(L.fd, line, n);
	(void)w;
	errno = saved;
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

static void
vlog_errno(int level, const char *fmt, va_list ap)
{
	char buf[1024];
	int saved = errno;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	log_msg(level, "%s: %s", buf, strerror(saved));
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog_errno(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog_errno(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}
