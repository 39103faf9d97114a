/* testutil: what the unit tests share, so that each file does not grow its
 * own copy: a temporary directory made and removed whole, pumping the real
 * event loop until a condition holds or a deadline passes, and a fake
 * console source (a unix socket the console under test connects to, with
 * the test playing the serial port's side).
 *
 * Everything here is for tests only and runs on the test's one thread.
 * Nothing blocks longer than the milliseconds a caller passes (the pumps,
 * tu_source_write); tu_tmpdir_free walks the tree once.  Errors come back
 * as NULL, false or a negative errno, never as a cmocka failure, so the
 * callers say what they expected (assert_true(tu_pump_until(...))). */
#ifndef RESCUED_TEST_TESTUTIL_H
#define RESCUED_TEST_TESTUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "util.h"
#include <fcntl.h>

/* --- temporary directories --------------------------------------------- */

/* A fresh, empty directory /tmp/NAME.XXXXXX; free with tu_tmpdir_free, or
 * NULL with errno set.  /tmp, not $TMPDIR: the tests put unix sockets in
 * it, and a socket's path must fit the 108 bytes of sun_path. */
static inline char *
tu_tmpdir_new(const char *name)
{
    char *dir = xasprintf("/tmp/%s.XXXXXX", name);
    if (!mkdtemp(dir)) {
        int e = errno;
        free(dir);
        errno = e;
        return NULL;
    }
    return dir;
}

/* The first failure of one tu_tmpdir_free (nftw gives its callback no
 * argument of ours). */
static int tu_rm_first_errno;

static inline int
tu_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && tu_rm_first_errno == 0)
        tu_rm_first_errno = errno;
    return 0; /* go on: remove what can be removed */
}

/* Remove dir and everything below it (symlinks are not followed), then
 * free the string.  0, or the negative errno of the first entry that
 * could not be removed.  NULL is fine. */
static inline int
tu_tmpdir_free(char *dir)
{
    if (!dir)
        return 0;
    tu_rm_first_errno = 0;
    if (nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 &&
        tu_rm_first_errno == 0)
        tu_rm_first_errno = errno;
    free(dir);
    return -tu_rm_first_errno;
}

/* --- pumping the loop ---------------------------------------------------- */

/* A condition the pumps wait for, and one turn of whatever the test drives
 * (the loop, and maybe a client on the other side: curl's multi handle, a
 * child's pipes). */
typedef bool tu_cond(void *arg);
typedef void tu_turn(void *arg);

/* Run turn(targ) until cond(carg) holds or ms pass; returns cond's last
 * value.  cond is asked first, so one already true costs no turn; with
 * cond NULL it runs for the whole ms (at least one turn when ms > 0) and
 * returns false. */
static inline bool
tu_until(int ms, tu_cond *cond, void *carg, tu_turn *turn, void *targ)
{
    int64_t end = now_mono_ms() + ms;
    while (!(cond && cond(carg))) {
        if (now_mono_ms() >= end)
            return false;
        turn(targ);
    }
    return true;
}

/* One turn of the loop alone (arg is the struct loop *), at most 10 ms. */
static inline void
tu_loop_turn(void *l)
{
    loop_run_once(l, 10);
}

/* The loop alone, in turns of at most 10 ms, until cond(arg) or ms pass. */
static inline bool
tu_pump_until(struct loop *l, int ms, tu_cond *cond, void *arg)
{
    return tu_until(ms, cond, arg, tu_loop_turn, l);
}

/* Run the loop for ms: the timers due meanwhile fire. */
static inline void
tu_pump_for(struct loop *l, int ms)
{
    tu_until(ms, NULL, NULL, tu_loop_turn, l);
}

/* n turns of at most wait_ms each: lets what is already pending (a peer's
 * bytes, a deferred completion) run without waiting for a timer. */
static inline void
tu_pump_turns(struct loop *l, int n, int wait_ms)
{
    for (int i = 0; i < n; i++)
        loop_run_once(l, wait_ms);
}

/* Conditions most waits need. */

/* arg is a bool *: a flag a callback sets (done, exited). */
static inline bool
tu_flag(void *arg)
{
    return *(const bool *)arg;
}

/* Text in a buffer that fills up meanwhile, at or after byte from. */
struct tu_needle {
    const struct buf *b;
    size_t from;
    const char *text;
};

/* arg is a struct tu_needle *. */
static inline bool
tu_buf_has(void *arg)
{
    const struct tu_needle *n = arg;
    if (!n->b->data || n->b->len < n->from)
        return false;
    return memmem(n->b->data + n->from, n->b->len - n->from, n->text,
                  strlen(n->text)) != NULL;
}

/* Turn until text shows in b (which fills meanwhile) or ms pass.  On a
 * timeout it says on stderr what b held, for the failure that follows. */
static inline bool
tu_until_text(int ms, const struct buf *b, const char *text, tu_turn *turn,
              void *targ)
{
    struct tu_needle n = {.b = b, .text = text};
    if (tu_until(ms, tu_buf_has, &n, turn, targ))
        return true;
    fprintf(stderr, "never saw '%s' in '%s'\n", text, b->data ? b->data : "");
    return false;
}

/* A counter a callback bumps, and how far it must get. */
struct tu_count {
    const int *n;
    int want;
};

/* arg is a struct tu_count *. */
static inline bool
tu_at_least(void *arg)
{
    const struct tu_count *c = arg;
    return *c->n >= c->want;
}

/* --- a fake console source ------------------------------------------------ */

/* A listening unix socket at path, for a console made with "unix:PATH":
 * the console connects, the test writes what the "serial port" prints and
 * reads what the console types.  The fields are for the tests to read. */
struct tu_source {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int lfd;        /* listening, non-blocking */
    int fd;         /* the accepted console, non-blocking; -1 until then */
    struct buf got; /* what the console wrote, by tu_source_read */
};

/* Listen at path (a stale socket file there is replaced); NULL with errno
 * set.  Free with tu_source_free. */
static inline struct tu_source *
tu_source_new(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    struct tu_source *s = xcalloc(1, sizeof(*s));
    strlcpy_s(s->path, path, sizeof(s->path));
    strlcpy_s(sa.sun_path, path, sizeof(sa.sun_path));
    s->fd = -1;
    unlink(path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(s->lfd, 4) < 0) {
        int e = errno;
        if (s->lfd >= 0)
            close(s->lfd);
        free(s);
        errno = e;
        return NULL;
    }
    return s;
}

/* Take the console's connection if one is waiting; true once connected. */
static inline bool
tu_source_accept(struct tu_source *s)
{
    if (s->fd < 0)
        s->fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return s->fd >= 0;
}

/* Append what the console has written to got.  When the console hung up,
 * close our end, so that tu_source_accept takes its next connection. */
static inline void
tu_source_read(struct tu_source *s)
{
    char b[4096];
    ssize_t n;
    if (s->fd < 0)
        return;
    while ((n = read(s->fd, b, sizeof(b))) > 0)
        buf_append(&s->got, b, (size_t)n);
    if (n == 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* Write data as the serial port, with one turn(targ) (which runs the
 * loop) between writes while the socket is full, for at most ms; returns
 * how many bytes went out (n when all did). */
static inline size_t
tu_source_write_with(struct tu_source *s, const void *data, size_t n, int ms,
                     tu_turn *turn, void *targ)
{
    size_t off = 0;
    int64_t end = now_mono_ms() + ms;
    while (off < n && s->fd >= 0) {
        ssize_t w = write(s->fd, (const char *)data + off, n - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR)
            break;
        if (off < n) {
            if (now_mono_ms() >= end)
                break;
            turn(targ);
        }
    }
    return off;
}

/* The same, pumping the loop alone. */
static inline size_t
tu_source_write(struct tu_source *s, struct loop *l, const void *data, size_t n,
                int ms)
{
    return tu_source_write_with(s, data, n, ms, tu_loop_turn, l);
}

/* One turn as the serial port sees it: the loop for at most 5 ms, then
 * take the console's connection if one waits and read what it wrote. */
static inline void
tu_source_pump(struct tu_source *s, struct loop *l)
{
    loop_run_once(l, 5);
    tu_source_accept(s);
    tu_source_read(s);
}

/* The serial port drops the console (it reconnects; the socket still
 * listens). */
static inline void
tu_source_hangup(struct tu_source *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Close both sockets and remove the socket file; NULL is fine.  For a
 * source that goes away and comes back, free it and make a new one. */
static inline void
tu_source_free(struct tu_source *s)
{
    if (!s)
        return;
    tu_source_hangup(s);
    close(s->lfd);
    unlink(s->path);
    buf_free(&s->got);
    free(s);
}

/* --- reading the log -------------------------------------------------- */

/* stderr (where log.c writes) into the file path at level, until
 * tu_log_release; returns the saved stderr. */
static inline int
tu_log_capture(const char *path, enum log_level level)
{
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (saved < 0 || fd < 0)
        return -1;
    dup2(fd, 2);
    close(fd);
    log_set_level(level);
    return saved;
}

/* Lines of the captured log at path that hold text. */
static inline int
tu_log_lines(const char *path, const char *text)
{
    fflush(stderr);
    char *data = NULL;
    size_t len = 0;
    if (read_file(path, &data, &len) < 0)
        return -1;
    int n = 0;
    for (char *l = data; l && *l;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        n += strstr(l, text) != NULL;
        l = nl ? nl + 1 : NULL;
    }
    free(data);
    return n;
}

/* stderr back, and the log at level. */
static inline void
tu_log_release(int saved, enum log_level level)
{
    fflush(stderr);
    log_set_level(level);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
}

#endif
