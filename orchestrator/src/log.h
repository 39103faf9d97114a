/* log: leveled logging to stderr, in the manner of OpenBSD's log.c. */
#ifndef RESCUED_LOG_H
#define RESCUED_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG
};

/* Parse "error", "warn", "info", "debug" or a syslog name ("emerg",
 * "alert", "crit", "err", "warning", "notice") into the nearest level;
 * returns -1 for anything else. */
int log_level_parse(const char *name);
/* Every word log_level_parse takes, as "error, warn, ... or notice", for a
 * refusal the user reads; truncated to len. */
void log_level_words(char *buf, size_t len);
void log_init(enum log_level level, const char *progname);
void log_set_level(enum log_level level);

/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Start-up only: log and exit(1). */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
