#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum log_level current = LOG_LEVEL_INFO;
static const char *prog = "rescued";

int
log_level_parse(const char *name)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void
log_init(enum log_level level, const char *progname)
{
    current = level;
    prog = progname;
}

void
log_set_level(enum log_level level)
{
    current = level;
}

static void
vlog(enum log_level level, const char *tag, int err, const char *fmt,
     va_list ap)
{
    char stamp[32];
    struct timespec ts;
    struct tm tm;

    if (level > current)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line so concurrent writers do not interleave. */
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (err)
        fprintf(stderr, "%s.%03ldZ %s %s: %s: %s\n", stamp,
                ts.tv_nsec / 1000000, prog, tag, msg, strerror(err));
    else
        fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp, ts.tv_nsec / 1000000,
                prog, tag, msg);
}

#define LOGGER(name, level, tag, witherr)                                      \
    void name(const char *fmt, ...)                                            \
    {                                                                          \
        int saved = errno;                                                     \
        va_list ap;                                                            \
        va_start(ap, fmt);                                                     \
        vlog(level, tag, witherr ? saved : 0, fmt, ap);                        \
        va_end(ap);                                                            \
        errno = saved;                                                         \
    }

LOGGER(log_warn, LOG_LEVEL_WARN, "warn", 1)
LOGGER(log_warnx, LOG_LEVEL_WARN, "warn", 0)
LOGGER(log_info, LOG_LEVEL_INFO, "info", 0)
LOGGER(log_debug, LOG_LEVEL_DEBUG, "debug", 0)

void
fatal(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_LEVEL_ERROR, "fatal", saved, fmt, ap);
    va_end(ap);
    exit(1);
}

void
fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_LEVEL_ERROR, "fatal", 0, fmt, ap);
    va_end(ap);
    exit(1);
}
