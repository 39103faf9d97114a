#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_level current = LOG_LEVEL_INFO;
static const char *prog = "rescued";
/* stderr is systemd's journal stream (JOURNAL_STREAM names its device and
 * inode): each line starts with its syslog priority, "<4>", and no time
 * stamp, which the journal keeps itself. */
static bool to_journal;

/* Syslog priorities by level: err, warning, info, debug. */
static const int level_prio[] = {3, 4, 6, 7};

static bool
stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
        fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

/* Our four words first, then the syslog names users write, each on the
 * nearest level we have.  notice goes to info, not warn: transitions and
 * reloads are logged at info, and a notice level should still show them. */
static const struct {
    const char *name;
    enum log_level level;
} level_names[] = {
    {"error", LOG_LEVEL_ERROR},  {"warn", LOG_LEVEL_WARN},
    {"info", LOG_LEVEL_INFO},    {"debug", LOG_LEVEL_DEBUG},
    {"emerg", LOG_LEVEL_ERROR},  {"alert", LOG_LEVEL_ERROR},
    {"crit", LOG_LEVEL_ERROR},   {"err", LOG_LEVEL_ERROR},
    {"warning", LOG_LEVEL_WARN}, {"notice", LOG_LEVEL_INFO},
};
#define NLEVEL_NAMES (sizeof(level_names) / sizeof(level_names[0]))

int
log_level_parse(const char *name)
{
    for (size_t i = 0; i < NLEVEL_NAMES; i++)
        if (strcmp(name, level_names[i].name) == 0)
            return (int)level_names[i].level;
    return -1;
}

void
log_level_words(char *buf, size_t len)
{
    size_t used = 0;
    if (!len)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < NLEVEL_NAMES && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == NLEVEL_NAMES ? " or " : ", ";
        int n =
            snprintf(buf + used, len - used, "%s%s", sep, level_names[i].name);
        if (n < 0)
            return;
        used += (size_t)n;
    }
}

void
log_init(enum log_level level, const char *progname)
{
    current = level;
    prog = progname;
    to_journal = stderr_is_journal();
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
    char raw[2048];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* A user name, a phone-home string, a BMC's words: one line, and no
     * escape sequence reaches the terminal that reads the log. */
    struct buf msg = {0};
    buf_append_visible(&msg, raw, strlen(raw), "\t");
    if (to_journal) {
        fprintf(stderr, "<%d>%s: %s%s%s\n", level_prio[level], tag, msg.data,
                err ? ": " : "", err ? strerror(err) : "");
        buf_free(&msg);
        return;
    }
    if (err)
        fprintf(stderr, "%s.%03ldZ %s %s: %s: %s\n", stamp,
                ts.tv_nsec / 1000000, prog, tag, msg.data, strerror(err));
    else
        fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp, ts.tv_nsec / 1000000,
                prog, tag, msg.data);
    buf_free(&msg);
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
