/*
 * Logging to stderr, syslog or a file. Levels are syslog's.
 * fatal() logs with errno and exits; fatalx() without errno.
 */
#ifndef MTP_LOG_H
#define MTP_LOG_H

#include <syslog.h>
#include <stdarg.h>

#define LOG_ATTR(f, a) __attribute__((format(printf, f, a)))

int log_init(int target, const char *file, int level, const char *ident);
/* log.format = "json" (1) or text; log.facility and log.syslog_socket
 * (NULL or "": /dev/log) for syslog. Before log_init. */
void log_set_style(int json, int facility, const char *syslog_path);
/*
 * The process detached (daemon()): stderr is /dev/null from now on, so
 * the stderr target becomes syslog, here and in every child forked
 * later (their log_init with the config's target follows this).
 */
void log_detach(void);
void log_set_ident(const char *ident);
void log_set_level(int level);
int log_get_level(void);
int log_reopen(void);
/* The fd log lines go to (-1 for syslog), to keep open across fork. */
int log_fd(void);
/* Log to this already open file from now on (children get the
 * supervisor's reopened log this way, as they may not open it). */
void log_set_fd(int fd);
int log_level_from_name(const char *name); /* -1 if unknown */
const char *log_level_name(int level);

void log_msg(int level, const char *fmt, ...) LOG_ATTR(2, 3);
void log_vmsg(int level, const char *fmt, va_list ap);
#define log_debug(...) \
	do { \
		if (log_get_level() >= LOG_DEBUG) \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warnx(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_errorx(...) log_msg(LOG_ERR, __VA_ARGS__)
/* As above, with ": strerror(errno)" appended. */
void log_warn(const char *fmt, ...) LOG_ATTR(1, 2);
void fatal(const char *fmt, ...) LOG_ATTR(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_ATTR(1, 2) __attribute__((noreturn));

#endif
