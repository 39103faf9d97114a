#include "ws.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define CLOSE_WAIT_MS 2000 /* for the peer's close frame after ours */
#define LOW_MARK (16 * 1024)

struct ws {
    struct loop *l;
    int fd;
    uint32_t events;
    wslay_event_context_ptr ctx;
    struct ws_cbs cbs;
    void *arg;
    char *extra;
    size_t nextra, extra_off;
    bool done, want_drained;
    int busy; /* inside pump: callbacks only queue */
    int code;
    int ping_ms;
    int64_t last_rx_ms;
    uint64_t ping_timer, close_timer, drain_timer;
};

static void finish(struct ws *w, int code);
static void pump_locked(struct ws *w, bool readable, bool notify);
static void pump(struct ws *w, bool readable, bool notify);

static ssize_t
recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
        void *ud)
{
    (void)flags;
    struct ws *w = ud;
    if (w->extra_off < w->nextra) {
        size_t n = w->nextra - w->extra_off;
        if (n > len)
            n = len;
        memcpy(buf, w->extra + w->extra_off, n);
        w->extra_off += n;
        return (ssize_t)n;
    }
    ssize_t r = recv(w->fd, buf, len, 0);
    if (r > 0) {
        w->last_rx_ms = now_mono_ms();
        return r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t
send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
        void *ud)
{
    struct ws *w = ud;
    ssize_t r = send(w->fd, data, len,
                     MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0));
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static void
msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
       void *ud)
{
    (void)ctx;
    struct ws *w = ud;
    if (w->done)
        return;
    if (a->opcode == WSLAY_TEXT_FRAME && w->cbs.text)
        w->cbs.text(w->arg, (const char *)a->msg, a->msg_length);
    else if (a->opcode == WSLAY_BINARY_FRAME && w->cbs.binary)
        w->cbs.binary(w->arg, a->msg, a->msg_length);
    else if (a->opcode == WSLAY_CONNECTION_CLOSE)
        w->code = a->status_code ? a->status_code : WS_CLOSE_NORMAL;
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_msg_recv_callback = msg_cb,
};

static void
update_events(struct ws *w)
{
    if (w->done)
        return;
    uint32_t ev = 0;
    if (wslay_event_want_read(w->ctx))
        ev |= EPOLLIN;
    if (wslay_event_want_write(w->ctx))
        ev |= EPOLLOUT;
    if (ev == 0) { /* both ways shut: the closing handshake is over */
        finish(w, w->code ? w->code : wslay_event_get_status_code_sent(w->ctx));
        return;
    }
    if (ev != w->events) {
        w->events = ev;
        loop_mod_fd(w->l, w->fd, ev);
    }
}

static int64_t
drain_cb(struct loop *l, void *arg)
{
    (void)l;
    struct ws *w = arg;
    w->drain_timer = 0;
    pump(w, false, true);
    return -1;
}

/* notify: the drained callback may run (from the loop's events only: a
 * sender inside ws_send must not be re-entered with its own bytes still
 * unconsumed). */
static void
pump(struct ws *w, bool readable, bool notify)
{
    if (w->done || w->busy)
        return;
    w->busy++;
    pump_locked(w, readable, notify);
    w->busy--;
    if (w->done)
        return;
    /* Drained while the sender was inside ws_send: tell it from the loop. */
    if (!notify && w->want_drained && ws_queued(w) < LOW_MARK &&
        !w->drain_timer)
        w->drain_timer = loop_add_timer(w->l, 0, drain_cb, w);
    update_events(w);
}

static void
pump_locked(struct ws *w, bool readable, bool notify)
{
    if (readable && wslay_event_recv(w->ctx) < 0) {
        finish(w, WS_CLOSE_ABNORMAL);
        return;
    }
    if (w->done)
        return;
    if (wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) < 0) {
        finish(w, WS_CLOSE_ABNORMAL);
        return;
    }
    if (notify && w->want_drained && ws_queued(w) < LOW_MARK) {
        w->want_drained = false;
        if (w->cbs.drained)
            w->cbs.drained(w->arg);
    }
}

static void
on_fd(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    struct ws *w = arg;
    /* A hang-up still has bytes to read (the peer's close frame). */
    pump(w, events & (EPOLLIN | EPOLLHUP | EPOLLERR), true);
}

static int64_t
ping_cb(struct loop *l, void *arg)
{
    (void)l;
    struct ws *w = arg;
    if (w->done)
        return -1;
    if (now_mono_ms() - w->last_rx_ms > 3 * (int64_t)w->ping_ms) {
        w->ping_timer = 0;
        finish(w, WS_CLOSE_ABNORMAL);
        return -1;
    }
    struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"", 0};
    wslay_event_queue_msg(w->ctx, &m);
    pump(w, false, true);
    return w->ping_ms;
}

static int64_t
close_timeout_cb(struct loop *l, void *arg)
{
    (void)l;
    struct ws *w = arg;
    w->close_timer = 0;
    finish(w, w->code ? w->code : wslay_event_get_status_code_sent(w->ctx));
    return -1;
}

/* Stop the fd and the timers; tell the owner once. */
static void
finish(struct ws *w, int code)
{
    if (w->done)
        return;
    w->done = true;
    loop_del_fd(w->l, w->fd);
    loop_del_timer(w->l, w->ping_timer);
    loop_del_timer(w->l, w->close_timer);
    loop_del_timer(w->l, w->drain_timer);
    w->ping_timer = w->close_timer = w->drain_timer = 0;
    if (w->cbs.closed)
        w->cbs.closed(w->arg, code);
}

struct ws *
ws_new(struct loop *l, int fd, const void *extra, size_t nextra, size_t max_msg,
       const struct ws_cbs *cbs, void *arg)
{
    struct ws *w = xcalloc(1, sizeof(*w));
    w->l = l;
    w->fd = fd;
    w->cbs = *cbs;
    w->arg = arg;
    w->ping_ms = WS_DEFAULT_PING_MS;
    w->last_rx_ms = now_mono_ms();
    if (nextra) {
        w->extra = xmalloc(nextra);
        memcpy(w->extra, extra, nextra);
        w->nextra = nextra;
    }
    if (wslay_event_context_server_init(&w->ctx, &wslay_cbs, w) != 0)
        fatalx("wslay: out of memory");
    wslay_event_config_set_max_recv_msg_length(w->ctx, max_msg);
    fd_set_nonblock(fd);
    /* A console is interactive: a keystroke's echo goes out at once (as
     * sshd does; a unix socket in the tests just refuses the option). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    w->events = EPOLLIN;
    if (loop_add_fd(l, fd, EPOLLIN, on_fd, w) < 0) {
        w->done = true;
        return w;
    }
    w->ping_timer = loop_add_timer(l, w->ping_ms, ping_cb, w);
    if (nextra)
        pump(w, true, true);
    return w;
}

void
ws_free(struct ws *w)
{
    if (!w)
        return;
    if (!w->done) {
        w->done = true;
        loop_del_fd(w->l, w->fd);
        loop_del_timer(w->l, w->ping_timer);
        loop_del_timer(w->l, w->close_timer);
        loop_del_timer(w->l, w->drain_timer);
    }
    wslay_event_context_free(w->ctx);
    free(w->extra);
    free(w);
}

int
ws_send(struct ws *w, bool text, const void *data, size_t n)
{
    if (w->done)
        return -EPIPE;
    struct wslay_event_msg m = {text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
                                data, n};
    if (wslay_event_queue_msg(w->ctx, &m) != 0)
        return -EPIPE;
    if (ws_queued(w) >= LOW_MARK)
        w->want_drained = true;
    pump(w, false, false);
    return 0;
}

size_t
ws_queued(const struct ws *w)
{
    return wslay_event_get_queued_msg_length(w->ctx);
}

void
ws_close(struct ws *w, int code, const char *reason)
{
    if (w->done)
        return;
    wslay_event_queue_close(w->ctx, (uint16_t)code, (const uint8_t *)reason,
                            reason ? strlen(reason) : 0);
    if (!w->close_timer)
        w->close_timer =
            loop_add_timer(w->l, CLOSE_WAIT_MS, close_timeout_cb, w);
    pump(w, false, false);
}

void
ws_set_ping_ms(struct ws *w, int ms)
{
    w->ping_ms = ms;
    if (w->done)
        return;
    loop_del_timer(w->l, w->ping_timer);
    w->ping_timer = loop_add_timer(w->l, ms, ping_cb, w);
}

int
ws_accept_key(const char *key, char *out, size_t outlen)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char *cat = xasprintf("%s%s", key, guid);
    unsigned char sha[20];
    int r = gnutls_hash_fast(GNUTLS_DIG_SHA1, cat, strlen(cat), sha);
    free(cat);
    if (r < 0)
        return -EIO;
    gnutls_datum_t in = {sha, sizeof(sha)}, b64 = {NULL, 0};
    if (gnutls_base64_encode2(&in, &b64) < 0)
        return -EIO;
    int ret = b64.size < outlen ? 0 : -ENOSPC;
    if (ret == 0) {
        memcpy(out, b64.data, b64.size);
        out[b64.size] = '\0';
    }
    gnutls_free(b64.data);
    return ret;
}
