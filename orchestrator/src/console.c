#include "console.h"
#include "ipmitool.h"
#include "log.h"
#include "loop.h"
#include "resolve.h"
#include "uri.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define SOURCE_INPUT_MAX (64 * 1024)
#define READ_CHUNK (64 * 1024)
#define READS_PER_EVENT 16 /* then yield to other fds */

#define IPMI_STABLE_MS 5000 /* a session this long resets the backoff */

struct console_viewer {
    struct console *c;
    struct console_viewer *next;
    struct console_viewer_cbs cbs;
    void *arg;
    char *q; /* queued bytes are q[qstart, qstart + qlen) */
    size_t qstart, qlen, qcap;
    unsigned long long dropped_total, dropped_pending;
    bool dead; /* detached during dispatch; freed when it ends */
};

/* tcp: how many of a host's addresses a connect tries. */
#define CONSOLE_TCP_ADDRS 4

struct console {
    struct loop *l;
    char *id, *log_dir, *log_path;
    struct uri_console *src; /* parsed once, by uri.c */
    pid_t child;             /* ipmitool, by PID */
    int child_out;           /* sol deactivate's output; EOF: it ended */
    bool last_cr;            /* for doubling ipmitool's ~ escape */
    int64_t up_mono;

    int fd;
    bool connecting, connected, ever_connected;
    bool want_out; /* EPOLLOUT is in fd's mask: input waits to be written */
    uint64_t retry_timer;
    struct resolve *resolving; /* tcp: the host's lookup in flight */
    /* tcp: the lookup's addresses, tried in order until one connects
     * ("localhost" is ::1 first on Debian, a console server often IPv4
     * only) */
    struct sockaddr_storage addrs[CONSOLE_TCP_ADDRS];
    socklen_t addr_lens[CONSOLE_TCP_ADDRS];
    int naddrs, next_addr;
    int backoff_ms, first_ms, max_ms;
    int64_t lost_wall, lost_mono; /* 0: no gap to report */

    char *ring; /* allocated at the first byte */
    size_t ring_size, ring_head, ring_len;

    int log_fd;
    size_t log_size, log_max;
    struct buf log_pending; /* bytes for the log file, written by log_flush */
    uint64_t log_timer;
    int64_t log_first_ms, log_last_ms; /* when pending bytes came (mono) */

    struct buf in; /* bytes on their way to the source */
    size_t in_off;

    struct console_viewer *viewers;
    size_t nviewers;
    struct console_viewer *writer;
    int dispatching;
};

static void source_connect(struct console *c);

/* --- viewer queues ------------------------------------------------------ */

static void
vq_put(struct console_viewer *v, const void *data, size_t n)
{
    if (v->qlen == 0)
        v->qstart = 0;
    if (v->qstart + v->qlen + n > v->qcap) {
        if (v->qstart > 0) {
            memmove(v->q, v->q + v->qstart, v->qlen);
            v->qstart = 0;
        }
        if (v->qlen + n > v->qcap) {
            size_t cap = v->qcap ? v->qcap : 4096;
            while (cap < v->qlen + n)
                cap *= 2;
            v->q = xrealloc(v->q, cap);
            v->qcap = cap;
        }
    }
    memcpy(v->q + v->qstart + v->qlen, data, n);
    v->qlen += n;
}

static int
drop_marker(const struct console_viewer *v, char *m, size_t mlen)
{
    return snprintf(m, mlen, "\r\n[%llu bytes dropped]\r\n",
                    v->dropped_pending);
}

/* Source bytes for one viewer: all of them or none.  Once dropping, go on
 * until the viewer has drained half its queue, so a stuck viewer's stream
 * is one gap, not a comb of fragments. */
static void
vq_deliver(struct console_viewer *v, const char *data, size_t n)
{
    if (v->dropped_pending) {
        char m[64];
        size_t ml = (size_t)drop_marker(v, m, sizeof(m));
        if (v->qlen + ml + n > CONSOLE_VIEWER_QUEUE / 2) {
            v->dropped_pending += n;
            v->dropped_total += n;
            return;
        }
        vq_put(v, m, ml);
        v->dropped_pending = 0;
    }
    if (v->qlen + n > CONSOLE_VIEWER_QUEUE) {
        v->dropped_pending += n;
        v->dropped_total += n;
        return;
    }
    vq_put(v, data, n);
}

size_t
console_viewer_peek(struct console_viewer *v, const char **data)
{
    *data = v->q ? v->q + v->qstart : "";
    return v->qlen;
}

void
console_viewer_consume(struct console_viewer *v, size_t n)
{
    if (n > v->qlen)
        n = v->qlen;
    v->qstart += n;
    v->qlen -= n;
    if (v->qlen == 0) {
        v->qstart = 0;
        /* An idle viewer keeps no big buffer. */
        if (v->qcap > 64 * 1024) {
            free(v->q);
            v->q = NULL;
            v->qcap = 0;
        }
        /* Caught up: say what was lost now, not at the next byte. */
        if (v->dropped_pending) {
            char m[64];
            size_t ml = (size_t)drop_marker(v, m, sizeof(m));
            vq_put(v, m, ml);
            v->dropped_pending = 0;
        }
    }
}

void
console_viewer_inject(struct console_viewer *v, const void *data, size_t len)
{
    /* A notice counts against the bound like the source's bytes: a user
     * typing into a zero window must not grow the queue without end. */
    if (v->qlen + len > CONSOLE_VIEWER_QUEUE) {
        v->dropped_pending += len;
        v->dropped_total += len;
        return;
    }
    vq_put(v, data, len);
}

unsigned long long
console_viewer_dropped(const struct console_viewer *v)
{
    return v->dropped_total;
}

static void
viewer_free(struct console_viewer *v)
{
    free(v->q);
    free(v);
}

static void
reap_viewers(struct console *c)
{
    struct console_viewer **pp = &c->viewers;
    while (*pp) {
        struct console_viewer *v = *pp;
        if (v->dead) {
            *pp = v->next;
            viewer_free(v);
        } else {
            pp = &v->next;
        }
    }
}

/* --- ring and log ------------------------------------------------------- */

static void
ring_put(struct console *c, const char *data, size_t n)
{
    if (!c->ring)
        c->ring = xmalloc(c->ring_size);
    if (n >= c->ring_size) {
        memcpy(c->ring, data + n - c->ring_size, c->ring_size);
        c->ring_head = 0;
        c->ring_len = c->ring_size;
        return;
    }
    size_t first = c->ring_size - c->ring_head;
    if (first > n)
        first = n;
    memcpy(c->ring + c->ring_head, data, first);
    memcpy(c->ring, data + first, n - first);
    c->ring_head = (c->ring_head + n) % c->ring_size;
    c->ring_len += n;
    if (c->ring_len > c->ring_size)
        c->ring_len = c->ring_size;
}

static char
ring_at(const struct console *c, size_t i)
{
    size_t start = (c->ring_head + c->ring_size - c->ring_len) % c->ring_size;
    return c->ring[(start + i) % c->ring_size];
}

void
console_replay_lines(const struct console *c, size_t n, struct buf *out)
{
    if (n == 0 || c->ring_len == 0)
        return;
    size_t end = c->ring_len, i = end, count = 0, from = 0;
    if (ring_at(c, i - 1) == '\n')
        i--; /* the final newline ends the last line */
    while (i > 0) {
        if (ring_at(c, i - 1) == '\n' && ++count == n) {
            from = i;
            break;
        }
        i--;
    }
    size_t start = (c->ring_head + c->ring_size - c->ring_len) % c->ring_size;
    size_t p = (start + from) % c->ring_size, len = end - from;
    size_t first = c->ring_size - p;
    if (first > len)
        first = len;
    buf_append(out, c->ring + p, first);
    buf_append(out, c->ring, len - first);
}

static char *
log_file(const char *dir, const char *id, int gen)
{
    if (gen == 0)
        return xasprintf("%s/%s.log", dir, id);
    return xasprintf("%s/%s.log.%d", dir, id, gen);
}

static int
log_open(struct console *c)
{
    c->log_fd =
        open(c->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (c->log_fd < 0) {
        log_warn("console %s: %s", c->id, c->log_path);
        return -errno;
    }
    struct stat st;
    c->log_size = fstat(c->log_fd, &st) == 0 ? (size_t)st.st_size : 0;
    return 0;
}

static void
log_rotate(struct console *c)
{
    close(c->log_fd);
    c->log_fd = -1;
    for (int g = CONSOLE_LOG_KEEP; g >= 1; g--) {
        char *from = log_file(c->log_dir, c->id, g - 1);
        char *to = log_file(c->log_dir, c->id, g);
        if (rename(from, to) < 0 && errno != ENOENT)
            log_warn("console %s: rename %s", c->id, from);
        free(from);
        free(to);
    }
    log_open(c);
}

static void
log_write(struct console *c, const char *data, size_t n)
{
    if (c->log_fd < 0 && log_open(c) < 0)
        return;
    if (c->log_size > 0 && c->log_size + n > c->log_max) {
        log_rotate(c);
        if (c->log_fd < 0)
            return;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(c->log_fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            log_warn("console %s: write %s", c->id, c->log_path);
            return;
        }
        off += (size_t)w;
    }
    c->log_size += n;
}

/* Console bytes reach the log file once the console has been quiet for
 * LOG_QUIET_MS, at most LOG_MAX_DELAY_MS (or LOG_FLUSH_BYTES) after the
 * first of them, in one write: an echoed keystroke should not wait on a
 * file write and its inode update, and a burst costs one write. A crash
 * loses at most that much of the log (the console itself is not lost). */
#define LOG_QUIET_MS 20
#define LOG_MAX_DELAY_MS 1000
#define LOG_FLUSH_BYTES 65536

static void
log_flush(struct console *c)
{
    loop_del_timer(c->l, c->log_timer);
    c->log_timer = 0;
    if (c->log_pending.len)
        log_write(c, c->log_pending.data, c->log_pending.len);
    buf_free(&c->log_pending); /* idle consoles hold no buffer */
}

static int64_t
log_timer_cb(struct loop *l, void *arg)
{
    (void)l;
    struct console *c = arg;
    int64_t now = now_mono_ms(), quiet = now - c->log_last_ms;
    if (quiet < LOG_QUIET_MS && now - c->log_first_ms < LOG_MAX_DELAY_MS)
        return LOG_QUIET_MS - quiet;
    c->log_timer = 0;
    log_flush(c);
    return -1;
}

static void
log_put(struct console *c, const char *data, size_t n)
{
    int64_t now = now_mono_ms();
    if (c->log_pending.len == 0)
        c->log_first_ms = now;
    c->log_last_ms = now;
    buf_append(&c->log_pending, data, n);
    if (c->log_pending.len >= LOG_FLUSH_BYTES)
        log_flush(c);
    else if (!c->log_timer)
        c->log_timer = loop_add_timer(c->l, LOG_QUIET_MS, log_timer_cb, c);
}

/* One chunk of a file, read backwards by console_tail_log. */
struct chunk {
    char *data;
    size_t len;
};

int
console_tail_log(const char *log_dir, const char *id, size_t n, struct buf *out)
{
    if (!id_valid(id))
        return -EINVAL;
    struct chunk *chunks = NULL;
    size_t nchunks = 0;
    bool any = false, first_byte = true, found = n == 0;
    size_t count = 0, total = 0;
    int r = 0;
    for (int g = 0; g <= CONSOLE_LOG_KEEP && !found; g++) {
        char *path = log_file(log_dir, id, g);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        free(path);
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            r = -errno;
            break;
        }
        any = true;
        struct stat st;
        off_t pos = fstat(fd, &st) == 0 ? st.st_size : 0;
        while (pos > 0 && !found) {
            size_t blk = pos > 65536 ? 65536 : (size_t)pos;
            /* At most CONSOLE_TAIL_MAX bytes per request, the newest. */
            bool last = false;
            if (total + blk >= CONSOLE_TAIL_MAX) {
                blk = CONSOLE_TAIL_MAX - total;
                last = true;
            }
            pos -= (off_t)blk;
            char *d = xmalloc(blk);
            ssize_t got = pread(fd, d, blk, pos);
            if (got != (ssize_t)blk) {
                free(d);
                r = got < 0 ? -errno : -EIO;
                found = true;
                break;
            }
            size_t keep_from = 0;
            for (size_t j = blk; j > 0; j--) {
                if (first_byte) {
                    first_byte = false;
                    if (d[j - 1] == '\n')
                        continue;
                }
                if (d[j - 1] == '\n' && ++count == n) {
                    keep_from = j;
                    found = true;
                    break;
                }
            }
            if (last && !found) {
                /* Cut at the bound: start at a line if the chunk has one. */
                found = true;
                char *nl = memchr(d, '\n', blk);
                if (nl && (size_t)(nl - d) + 1 < blk)
                    keep_from = (size_t)(nl - d) + 1;
            }
            total += blk - keep_from;
            chunks = xrealloc(chunks, sizeof(*chunks) * (nchunks + 1));
            chunks[nchunks].data = d;
            chunks[nchunks].len = blk;
            if (keep_from) {
                memmove(d, d + keep_from, blk - keep_from);
                chunks[nchunks].len = blk - keep_from;
            }
            nchunks++;
        }
        close(fd);
    }
    if (r == 0 && !any)
        r = -ENOENT;
    for (size_t i = nchunks; i > 0; i--) {
        if (r == 0)
            buf_append(out, chunks[i - 1].data, chunks[i - 1].len);
        free(chunks[i - 1].data);
    }
    free(chunks);
    return r;
}

/* --- the stream --------------------------------------------------------- */

static void
feed(struct console *c, const char *data, size_t n)
{
    ring_put(c, data, n);
    c->dispatching++;
    for (struct console_viewer *v = c->viewers; v; v = v->next) {
        if (v->dead)
            continue;
        vq_deliver(v, data, n);
        if (v->cbs.output && !v->dead)
            v->cbs.output(v, v->arg);
    }
    if (--c->dispatching == 0)
        reap_viewers(c);
    log_put(c, data, n);
}

/* --- the source --------------------------------------------------------- */

static int64_t
retry_cb(struct loop *l, void *arg)
{
    (void)l;
    struct console *c = arg;
    c->retry_timer = 0;
    source_connect(c);
    return -1;
}

static void
schedule_retry(struct console *c)
{
    if (c->retry_timer)
        return;
    c->retry_timer = loop_add_timer(c->l, c->backoff_ms, retry_cb, c);
    c->backoff_ms *= 2;
    if (c->backoff_ms > c->max_ms)
        c->backoff_ms = c->max_ms;
}

static void ipmi_stop(struct console *c);

static void
source_close(struct console *c)
{
    loop_close_fd(c->l, &c->fd);
    if (c->src->kind == URI_CONSOLE_IPMI_SOL)
        ipmi_stop(c);
    c->connecting = false;
    c->connected = false;
    c->want_out = false;
    buf_reset(&c->in);
    c->in_off = 0;
}

static void
source_lost(struct console *c, const char *why)
{
    if (c->connected) {
        c->lost_wall = now_wall_s();
        c->lost_mono = now_mono_ms();
        log_warnx("console %s: source lost (%s); reconnecting", c->id, why);
        /* ipmitool starts even when the BMC will refuse it: only a
         * session that lasted resets the backoff. */
        if (c->src->kind == URI_CONSOLE_IPMI_SOL &&
            c->lost_mono - c->up_mono >= IPMI_STABLE_MS)
            c->backoff_ms = c->first_ms;
    }
    source_close(c);
    schedule_retry(c);
}

static void
source_up(struct console *c)
{
    c->connecting = false;
    c->connected = true;
    c->want_out = false; /* every way up watches EPOLLIN alone */
    c->up_mono = now_mono_ms();
    if (c->src->kind != URI_CONSOLE_IPMI_SOL)
        c->backoff_ms = c->first_ms;
    c->last_cr = true;
    if (c->lost_wall) {
        char when[32], m[128];
        format_time_iso(c->lost_wall, when, sizeof(when));
        long long secs = (now_mono_ms() - c->lost_mono + 500) / 1000;
        int ml = snprintf(m, sizeof(m),
                          "\r\n[console source lost at %s; back after %lld "
                          "s]\r\n",
                          when, secs);
        log_info("console %s: source back after %lld s", c->id, secs);
        c->lost_wall = 0;
        feed(c, m, (size_t)ml);
    } else if (!c->ever_connected) {
        log_debug("console %s: source attached", c->id);
    }
    c->ever_connected = true;
}

static void
source_flush(struct console *c)
{
    while (c->in_off < c->in.len) {
        ssize_t w = write(c->fd, c->in.data + c->in_off, c->in.len - c->in_off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            source_lost(c, strerror(errno));
            return;
        }
        c->in_off += (size_t)w;
    }
    bool want_out = c->in_off < c->in.len;
    if (!want_out) {
        buf_reset(&c->in);
        c->in_off = 0;
    }
    /* Most keystrokes are written at once: no epoll_ctl for them. */
    if (want_out != c->want_out) {
        loop_mod_fd(c->l, c->fd, want_out ? EPOLLIN | EPOLLOUT : EPOLLIN);
        c->want_out = want_out;
    }
}

static void tcp_try_next(struct console *c);

static void
source_event(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    struct console *c = arg;
    if (c->connecting) {
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        if (e) {
            source_close(c);
            if (c->src->kind == URI_CONSOLE_TCP && c->next_addr < c->naddrs)
                tcp_try_next(c); /* the lookup's next address */
            else
                schedule_retry(c);
            return;
        }
        loop_mod_fd(c->l, fd, EPOLLIN);
        source_up(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        char data[READ_CHUNK];
        for (int i = 0; i < READS_PER_EVENT; i++) {
            ssize_t r = read(fd, data, sizeof(data));
            if (r > 0) {
                feed(c, data, (size_t)r);
                if (c->fd != fd) /* a viewer callback cannot close us, */
                    return;      /* but stay safe */
                /* A short read drained it; epoll is level-triggered, so
                 * a read that would only say EAGAIN is saved. */
                if ((size_t)r < sizeof(data))
                    break;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (c->src->kind ==
                URI_CONSOLE_IPMI_SOL) /* EIO: the pty's child side closed */
                source_lost(c, "ipmitool exited");
            else
                source_lost(c, r == 0 ? "closed" : strerror(errno));
            return;
        }
    }
    if ((events & EPOLLOUT) && c->fd >= 0)
        source_flush(c);
}

static int
open_tty(struct console *c)
{
    int fd = open(c->src->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct termios t;
    if (tcgetattr(fd, &t) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~(tcflag_t)(CSTOPB | CRTSCTS);
    cfsetispeed(&t, c->src->speed);
    cfsetospeed(&t, c->src->speed);
    if (tcsetattr(fd, TCSANOW, &t) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* --- ipmi-sol: ipmitool as a child on a pty ------------------------------ */

/* Start ipmitool `sol ACTION` (ipmitool.h: the same argv, password and
 * stop as the ipmi power driver) with stdin/stdout/stderr on fd, after
 * setsid, so a pty slave opened by path becomes its controlling terminal.
 * The pid, or -1 with errno set. */
static pid_t
ipmi_spawn(const struct console *c, const char *action, const char *slave,
           int fd)
{
    const struct uri_console *u = c->src;
    const struct ipmitool_bmc bmc = {.host = u->host,
                                     .port = u->port,
                                     .user = u->user,
                                     .pass = u->pass,
                                     .cipher = u->cipher};
    const char *const cmd[] = {"sol", action, NULL};
    const int fds[3] = {fd, fd, fd};
    int pid = ipmitool_spawn(&bmc, cmd, fds, true, slave);
    if (pid < 0)
        errno = -pid;
    return pid < 0 ? -1 : pid;
}

/* End the child by PID: SIGTERM, a short grace, then SIGKILL; reap it. */
static void
ipmi_stop(struct console *c)
{
    loop_close_fd(c->l, &c->child_out);
    pid_t pid = c->child;
    c->child = 0;
    ipmitool_stop(pid);
}

static int
ipmi_activate(struct console *c)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    char slave[64];
    struct termios t;
    if (grantpt(m) < 0 || unlockpt(m) < 0 ||
        ptsname_r(m, slave, sizeof(slave)) != 0 || tcgetattr(m, &t) < 0)
        goto out_close;
    /* Raw from the start: no echo or newline mangling before ipmitool
     * sets its own modes. */
    cfmakeraw(&t);
    if (tcsetattr(m, TCSANOW, &t) < 0)
        goto out_close;
    if (fd_set_nonblock(m) < 0)
        goto out_close;
    pid_t pid = ipmi_spawn(c, "activate", slave, -1);
    if (pid < 0)
        goto out_close;
    int r = loop_add_fd(c->l, m, EPOLLIN, source_event, c);
    if (r < 0) {
        c->child = pid;
        ipmi_stop(c);
        close(m);
        return r;
    }
    c->child = pid;
    c->fd = m;
    log_debug("console %s: ipmitool sol activate, pid %d", c->id, (int)pid);
    source_up(c);
    return 0;

out_close:;
    int e = errno;
    close(m);
    return -e;
}

/* sol deactivate's output pipe: log it; at EOF the child has ended, and
 * the session proper starts. */
static void
ipmi_deactivate_event(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    struct console *c = arg;
    char data[512];
    ssize_t r;
    while ((r = read(fd, data, sizeof(data) - 1)) > 0) {
        data[r] = '\0';
        data[strcspn(data, "\n")] = '\0';
        log_debug("console %s: sol deactivate: %s", c->id, data);
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    ipmi_stop(c); /* reaps the ended child */
    int e = ipmi_activate(c);
    if (e < 0) {
        log_warnx("console %s: ipmitool: %s", c->id, strerror(-e));
        schedule_retry(c);
    }
}

/* A stale SOL session (ours from before a restart, or anyone's) would make
 * activate fail: deactivate first, then activate when that ends. */
static int
ipmi_start(struct console *c)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = ipmi_spawn(c, "deactivate", NULL, p[1]);
    int e = errno;
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -e;
    }
    c->child = pid;
    fd_set_nonblock(p[0]);
    int r = loop_add_fd(c->l, p[0], EPOLLIN, ipmi_deactivate_event, c);
    if (r < 0) {
        close(p[0]);
        ipmi_stop(c);
        return r;
    }
    c->child_out = p[0];
    return 0;
}

static void source_watch(struct console *c, int fd, bool pending, int r);

/* tcp: connect to the next address the lookup gave; when none is left,
 * the source is down (and retried later). */
static void
tcp_try_next(struct console *c)
{
    int r = -EHOSTUNREACH;
    while (c->next_addr < c->naddrs) {
        int i = c->next_addr++;
        int fd = socket(c->addrs[i].ss_family,
                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        if (connect(fd, (struct sockaddr *)&c->addrs[i], c->addr_lens[i]) ==
            0) {
            source_watch(c, fd, false, 0);
            return;
        }
        if (errno == EINPROGRESS) {
            source_watch(c, fd, true, 0);
            return;
        }
        r = -errno;
        close(fd);
    }
    source_watch(c, -1, false, r);
}

/* tcp: the host's addresses came (resolve.h: never a blocking lookup). */
static void
tcp_resolved(void *arg, int rc, const struct addrinfo *ai, const char *err)
{
    struct console *c = arg;
    c->resolving = NULL;
    c->naddrs = c->next_addr = 0;
    if (rc < 0) {
        log_debug("console %s: %s", c->id, err);
        source_watch(c, -1, false, -EHOSTUNREACH);
        return;
    }
    for (; ai && c->naddrs < CONSOLE_TCP_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(c->addrs[0]))
            continue;
        memcpy(&c->addrs[c->naddrs], ai->ai_addr, ai->ai_addrlen);
        c->addr_lens[c->naddrs++] = ai->ai_addrlen;
    }
    tcp_try_next(c);
}

static void
source_connect(struct console *c)
{
    int fd = -1, r = 0;
    bool pending = false;
    switch (c->src->kind) {
    case URI_CONSOLE_UNIX: {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strlcpy_s(sa.sun_path, c->src->path, sizeof(sa.sun_path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r = -errno;
            break;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            if (errno == EINPROGRESS || errno == EAGAIN)
                pending = true;
            else
                r = -errno;
        }
        break;
    }
    case URI_CONSOLE_TCP:
        /* The host is looked up again at each connect, off the loop. */
        c->resolving = resolve_start(c->l, c->src->host, c->src->port,
                                     SOCK_STREAM, tcp_resolved, c);
        return;
    case URI_CONSOLE_TTY:
        fd = open_tty(c);
        if (fd < 0)
            r = fd;
        break;
    case URI_CONSOLE_IPMI_SOL:
        r = ipmi_start(c);
        if (r < 0) {
            log_warnx("console %s: ipmitool: %s", c->id, strerror(-r));
            schedule_retry(c);
        }
        return;
    }
    source_watch(c, fd, pending, r);
}

/* A socket (or tty) opened, r its error: watch it, or retry later. */
static void
source_watch(struct console *c, int fd, bool pending, int r)
{
    if (r == 0) {
        r = loop_add_fd(c->l, fd, pending ? EPOLLOUT : EPOLLIN, source_event,
                        c);
    }
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        log_debug("console %s: connect: %s", c->id, strerror(-r));
        schedule_retry(c);
        return;
    }
    c->fd = fd;
    if (pending)
        c->connecting = true;
    else
        source_up(c);
}

/* --- public ------------------------------------------------------------- */

struct console *
console_new(struct loop *l, const char *id, const char *uri,
            const char *log_dir, size_t ring_size, char *err, size_t errlen)
{
    if (!id_valid(id)) {
        snprintf(err, errlen, "console id '%s' is not a valid name",
                 id ? id : "");
        return NULL;
    }
    struct uri_console *src = uri_console_parse(uri, err, errlen);
    if (!src)
        return NULL;
    if (mkdir(log_dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", log_dir, strerror(errno));
        uri_console_free(src);
        return NULL;
    }
    struct console *c = xcalloc(1, sizeof(*c));
    c->src = src;
    c->l = l;
    c->id = xstrdup(id);
    c->log_dir = xstrdup(log_dir);
    c->log_path = log_file(log_dir, id, 0);
    c->log_fd = -1;
    c->log_max = CONSOLE_DEFAULT_LOG_MAX;
    c->ring_size = ring_size ? ring_size : CONSOLE_DEFAULT_RING;
    c->fd = -1;
    c->child_out = -1;
    c->first_ms = c->backoff_ms = 1000;
    c->max_ms = 30000;
    source_connect(c);
    return c;
}

void
console_free(struct console *c)
{
    if (!c)
        return;
    while (c->viewers) {
        struct console_viewer *v = c->viewers;
        c->viewers = v->next;
        if (!v->dead && v->cbs.closed)
            v->cbs.closed(v, v->arg);
        viewer_free(v);
    }
    loop_del_timer(c->l, c->retry_timer);
    resolve_cancel(c->resolving);
    source_close(c);
    log_flush(c);
    if (c->log_fd >= 0)
        close(c->log_fd);
    buf_free(&c->in);
    free(c->ring);
    free(c->id);
    free(c->log_dir);
    free(c->log_path);
    uri_console_free(c->src);
    free(c);
}

void
console_set_log_max(struct console *c, size_t max_bytes)
{
    c->log_max = max_bytes ? max_bytes : CONSOLE_DEFAULT_LOG_MAX;
}

void
console_set_backoff_ms(struct console *c, int first_ms, int max_ms)
{
    c->first_ms = c->backoff_ms = first_ms;
    c->max_ms = max_ms;
}

bool
console_connected(const struct console *c)
{
    return c->connected;
}

size_t
console_viewer_count(const struct console *c)
{
    return c->nviewers;
}

struct console_viewer *
console_attach(struct console *c, size_t replay_lines,
               const struct console_viewer_cbs *cbs, void *arg)
{
    struct console_viewer *v = xcalloc(1, sizeof(*v));
    v->c = c;
    if (cbs)
        v->cbs = *cbs;
    v->arg = arg;
    if (replay_lines) {
        struct buf b = {0};
        console_replay_lines(c, replay_lines, &b);
        if (b.len)
            vq_put(v, b.data, b.len);
        buf_free(&b);
    }
    v->next = c->viewers;
    c->viewers = v;
    c->nviewers++;
    return v;
}

void
console_detach(struct console_viewer *v)
{
    if (!v || v->dead)
        return;
    struct console *c = v->c;
    if (c->writer == v)
        c->writer = NULL;
    c->nviewers--;
    v->dead = true;
    if (c->dispatching == 0)
        reap_viewers(c);
}

struct console_viewer *
console_take_writer(struct console *c, struct console_viewer *v)
{
    struct console_viewer *old = c->writer;
    c->writer = v;
    return old == v ? NULL : old;
}

struct console_viewer *
console_writer(const struct console *c)
{
    return c->writer;
}

int
console_write(struct console_viewer *v, const void *data, size_t len)
{
    struct console *c = v->c;
    if (c->writer != v || v->dead)
        return -EPERM;
    if (!c->connected)
        return -ENOTCONN;
    if (c->in.len - c->in_off + len > SOURCE_INPUT_MAX)
        return -ENOBUFS;
    if (c->src->kind == URI_CONSOLE_IPMI_SOL) {
        /* ipmitool reads ~ after a newline as its escape: double it so the
         * user's bytes reach the server as typed. */
        const char *p = data;
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '~' && c->last_cr)
                buf_append(&c->in, "~", 1);
            buf_append(&c->in, p + i, 1);
            c->last_cr = p[i] == '\r' || p[i] == '\n';
        }
    } else {
        buf_append(&c->in, data, len);
    }
    source_flush(c);
    return 0;
}

int
console_send_break(struct console *c)
{
    if (c->src->kind != URI_CONSOLE_TTY && c->src->kind != URI_CONSOLE_IPMI_SOL)
        return -ENOTSUP;
    if (!c->connected)
        return -ENOTCONN;
    if (c->src->kind == URI_CONSOLE_IPMI_SOL) {
        /* ipmitool's own escape: ~B at a line start sends a SOL break. */
        buf_append(&c->in, c->last_cr ? "~B" : "\r~B", c->last_cr ? 2 : 3);
        c->last_cr = false;
        source_flush(c);
        return 0;
    }
    if (tcsendbreak(c->fd, 0) < 0)
        return -errno;
    return 0;
}

void
console_forget(struct console *c, const char *tag)
{
    c->ring_head = c->ring_len = 0;
    log_flush(c); /* what is held back belongs to the old files */
    if (c->log_fd >= 0)
        close(c->log_fd);
    c->log_fd = -1;
    c->log_size = 0;
    for (int g = 0; g <= CONSOLE_LOG_KEEP; g++) {
        char *from = log_file(c->log_dir, c->id, g);
        char *to = xasprintf("%s.%s", from, tag);
        if (rename(from, to) < 0 && errno != ENOENT)
            log_warn("console %s: rename %s", c->id, from);
        free(from);
        free(to);
    }
    log_open(c);
}
