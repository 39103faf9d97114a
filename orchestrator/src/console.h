/* console: one server's serial console.  A source (by URI) is kept
 * attached on the event loop and reconnected with backoff (1 s doubling to
 * 30 s); every byte it sends goes into a ring buffer (scrollback, allocated
 * at the first byte), an on-disk log LOG_DIR/ID.log rotated by size
 * (ID.log -> ID.log.1 -> ID.log.2), and the output queue of every viewer.
 *
 * Sources (grammar and parser in uri.h):
 *           unix:PATH        QEMU chardev socket (connected non-blocking)
 *           tcp:HOST:PORT    ser2net raw (HOST resolved at each connect)
 *           tty:DEV[@SPEED]  local serial device, raw 8N1, 115200 default
 *           ipmi-sol:[USER:PASS@]HOST[:PORT][?cipher=N]
 *                            `ipmitool -I lanplus ... sol activate` as a
 *                            child on a pty (after `sol deactivate` ends a
 *                            stale session); restarted like a reconnect,
 *                            killed by PID on console_free.  The password
 *                            goes by IPMI_PASSWORD (-E); ?cipher=N is -C N
 *                            (without it ipmitool asks the BMC, which
 *                            costs ~10 s on BMCs that cannot answer)
 *
 * A gap in the source is written into the stream, the ring and the log as
 * "[console source lost at <ISO time>; back after N s]" when it returns.
 *
 * Viewers pull: each has its own bounded queue (CONSOLE_VIEWER_QUEUE).  A
 * viewer that does not drain loses its own bytes, counted, and gets
 * "[N bytes dropped]" in its stream once there is room again; it never
 * slows the source or other viewers.  One viewer at a time holds the
 * writer seat; only it may console_write().
 *
 * Single-threaded: every function runs on the loop's thread. */
#ifndef RESCUED_CONSOLE_H
#define RESCUED_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct loop;
struct console;
struct console_viewer;

#define CONSOLE_VIEWER_QUEUE (256 * 1024)
#define CONSOLE_DEFAULT_RING (1024 * 1024)
#define CONSOLE_DEFAULT_LOG_MAX (8 * 1024 * 1024)
#define CONSOLE_LOG_KEEP 2             /* ID.log.1 and ID.log.2 */
#define CONSOLE_TAIL_MAX (1024 * 1024) /* console_tail_log's most bytes */

/* Callbacks of one viewer.  They run from the loop, inside the console's
 * own processing.  They MAY: peek/consume/inject on any viewer, detach any
 * viewer (their own too; the struct is freed after the callback returns),
 * console_write(), take or drop the writer seat.  They MUST NOT free the
 * console (console_free) nor the loop.  Either member may be NULL. */
struct console_viewer_cbs {
    /* New bytes were queued for v: drain with console_viewer_peek() and
     * console_viewer_consume(), now or later. */
    void (*output)(struct console_viewer *v, void *arg);
    /* The console is being freed: v is already detached and gone when
     * this returns; do not use it again (nor detach it). */
    void (*closed)(struct console_viewer *v, void *arg);
};

/* Parse uri (uri_console_parse) and start connecting; log_dir is
 * created if missing.
 * ring_size 0 means CONSOLE_DEFAULT_RING.  id names the log file
 * ([A-Za-z0-9_.-], no "/").  NULL with a reason in err on a bad uri, a
 * bad id. */
struct console *console_new(struct loop *l, const char *id, const char *uri,
                            const char *log_dir, size_t ring_size, char *err,
                            size_t errlen);
/* Closes the source and the log; every viewer's closed() runs first.
 * Accepts NULL.  Never call from a viewer callback of this console. */
void console_free(struct console *c);

/* Rotate LOG_DIR/ID.log when it would grow past max_bytes (default
 * CONSOLE_DEFAULT_LOG_MAX); keep CONSOLE_LOG_KEEP older files. */
void console_set_log_max(struct console *c, size_t max_bytes);

/* Is the source connected right now? */
bool console_connected(const struct console *c);
/* Number of attached viewers (for status and tests). */
size_t console_viewer_count(const struct console *c);

/* Attach a viewer.  Its queue starts with the last replay_lines lines of
 * the ring (0: none), so nothing is lost or repeated between replay and
 * live output; output() is not called for them: peek after attaching.
 * cbs is copied. */
struct console_viewer *console_attach(struct console *c, size_t replay_lines,
                                      const struct console_viewer_cbs *cbs,
                                      void *arg);
/* Detach and free v; frees the writer seat if v held it.  Accepts NULL. */
void console_detach(struct console_viewer *v);

/* The queued bytes of v, contiguous: *data and the length (0: empty). */
size_t console_viewer_peek(struct console_viewer *v, const char **data);
/* Remove n bytes (n <= what peek returned) after they were delivered. */
void console_viewer_consume(struct console_viewer *v, size_t n);
/* Queue bytes for v alone (notices), after what is queued, within the
 * same bound (dropped and counted when the queue is full); output() is
 * not called: the caller drains. */
void console_viewer_inject(struct console_viewer *v, const void *data,
                           size_t len);
/* Bytes dropped from v's queue so far (for tests and status). */
unsigned long long console_viewer_dropped(const struct console_viewer *v);

/* Give v the writer seat; returns the viewer that held it before (now a
 * watcher), or NULL.  v == NULL frees the seat. */
struct console_viewer *console_take_writer(struct console *c,
                                           struct console_viewer *v);
struct console_viewer *console_writer(const struct console *c);

/* Send bytes to the source.  -EPERM unless v holds the writer seat,
 * -ENOTCONN while the source is away, -ENOBUFS when the source's input
 * queue (64 KiB) is full; else 0 (everything queued). */
int console_write(struct console_viewer *v, const void *data, size_t len);
/* A serial break: tcsendbreak on tty:, ipmitool's ~B on ipmi-sol:;
 * -ENOTSUP for sources that cannot (unix:, tcp:): the caller then asks the
 * power driver. */
int console_send_break(struct console *c);

/* Append the last n lines of the ring to out (a trailing partial line
 * counts as a line). */
void console_replay_lines(const struct console *c, size_t n, struct buf *out);
/* Forget what the console showed so far: the ring is emptied and the log
 * files are renamed aside (ID.log.TAG, ID.log.1.TAG, ...: kept on disk for
 * an administrator, out of replay and console_tail_log's reach).  For a
 * server moved to another project.  Blocks on the renames. */
void console_forget(struct console *c, const char *tag);
/* Append the last n lines of LOG_DIR/ID.log, reading back into ID.log.1
 * and ID.log.2 when the current file holds fewer; for the HTTP API's
 * console/log?tail=N.  Reads from the end, at most CONSOLE_TAIL_MAX bytes
 * (then from the first line start within them).  Works without a console
 * object.  0, or -ENOENT when there is no log, or another negative errno. */
int console_tail_log(const char *log_dir, const char *id, size_t n,
                     struct buf *out);

/* Change the reconnect backoff (default 1000 doubling to 30000 ms). */
void console_set_backoff_ms(struct console *c, int first_ms, int max_ms);

#endif
