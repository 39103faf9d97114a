/* power_qmp: qmp:PATH[?nic=DEVICE_ID], QEMU's QMP on a unix socket.
 *
 * One connection, opened on demand: greeting, qmp_capabilities, then one
 * command at a time for the head of the queue, each command tagged with an
 * id and its reply matched by it.  An op that needs several commands
 * (reset = system_reset, query-status, cont) walks its steps in
 * qmp_step().  When the socket is missing or the connection drops, every
 * queued request fails and the next request connects again, so a
 * restarted QEMU is picked up.  Each request has one deadline for all its
 * commands (QMP_TIMEOUT_MS), counted from when it was queued.
 *
 * QEMU has no one-time boot device over QMP: bootindex is kept until set
 * again, and the firmware's boot order (fw_cfg "bootorder") is rebuilt at
 * every reset, the guest's own too: SeaBIOS resets the machine once more
 * itself ~10 ms after ours, so putting the NIC back right after our reset
 * made the lab's server netboot.  So a one-time disk boot takes the NIC out
 * of the boot order (bootindex -1: the firmware boots the next entry, the
 * disk, as the local iPXE script's `exit` would) for the reset that
 * follows, and puts it back before rescued's next reset, power on or off,
 * or netboot of this server.  docs/internals/power.md. */
#include "log.h"
#include "loop.h"
#include "power_driver.h"
#include "uri.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_MAX_LINE (1024 * 1024)
#define QMP_TIMEOUT_MS 5000

enum qmp_state {
    QMP_IDLE,       /* no connection */
    QMP_CONNECTING, /* non-blocking connect in progress */
    QMP_GREETING,   /* waiting for {"QMP": ...} */
    QMP_CAPS,       /* qmp_capabilities sent */
    QMP_READY,
};

struct qmp {
    int fd;
    enum qmp_state state;
    uint64_t conn_gen; /* bumped when a connection closes */
    struct buf in, out;
    uint64_t next_id;
    uint64_t caps_id;
    /* The NIC is out of the boot order for a one-time disk boot: its
     * bootindex to put back, or -1.  Kept across connections, not
     * restarts. */
    int restore_nic;
    bool disk_armed; /* set, and the reset that carries it out not begun */
};

static struct qmp *
qmp_of(const struct power *p)
{
    return p->drv;
}

/* "qmp /run/lab/srv1.qmp: connection refused" */
static char *
qmp_errdetail(const struct power *p, int err)
{
    char *d = xasprintf("qmp %s: %s", p->u->path, strerror(err));
    char *c = d + strlen(p->u->path) + 6;
    *c = (char)tolower((unsigned char)*c);
    return d;
}

/* --- connection ------------------------------------------------------- */

static void qmp_on_fd(struct loop *l, int fd, uint32_t events, void *arg);
static void qmp_pump(struct power *p);

static void
qmp_close(struct power *p)
{
    struct qmp *q = qmp_of(p);
    if (!q)
        return;
    loop_close_fd(p->l, &q->fd);
    q->state = QMP_IDLE;
    q->conn_gen++;
    buf_reset(&q->in);
    buf_reset(&q->out);
    for (struct power_req *r = p->head; r; r = r->next) {
        r->cmd_id = 0;
        r->step = 0;
    }
}

/* The connection failed or dropped: every queued request fails. */
static void
qmp_fail(struct power *p, int err, const char *why)
{
    qmp_close(p);
    log_debug("%s: qmp %s: %s", p->name, p->u->path, why ? why : strerror(err));
    while (p->head)
        power_req_complete(p->head, -err,
                           why ? xasprintf("qmp %s: %s", p->u->path, why)
                               : qmp_errdetail(p, err));
}

static void
qmp_flush(struct power *p)
{
    struct qmp *q = qmp_of(p);
    while (q->out.len > 0) {
        ssize_t n = send(q->fd, q->out.data, q->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            qmp_fail(p, errno, NULL);
            return;
        }
        memmove(q->out.data, q->out.data + n, q->out.len - (size_t)n + 1);
        q->out.len -= (size_t)n;
    }
    loop_mod_fd(p->l, q->fd, EPOLLIN | (q->out.len ? EPOLLOUT : 0));
}

/* Queue {"execute": cmd, "arguments": args, "id": N}; steals args.  The
 * id, or 0 when jansson could not make the message (out of memory):
 * nothing was sent. */
static uint64_t
qmp_send(struct power *p, const char *cmd, json_t *args)
{
    struct qmp *q = qmp_of(p);
    json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id",
                            (json_int_t)(q->next_id + 1));
    if (msg && args)
        json_object_set_new(msg, "arguments", args);
    else
        json_decref(args);
    char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!s)
        return 0;
    log_debug("%s: qmp -> %s", p->name, s);
    buf_append(&q->out, s, strlen(s));
    buf_append(&q->out, "\n", 1);
    free(s);
    qmp_flush(p);
    return ++q->next_id;
}

static void
qmp_connect(struct power *p)
{
    struct qmp *q = qmp_of(p);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strlcpy_s(sa.sun_path, p->u->path, sizeof(sa.sun_path));
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0) {
        qmp_fail(p, errno, NULL);
        return;
    }
    uint32_t ev = EPOLLIN;
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        q->state = QMP_GREETING;
    } else if (errno == EINPROGRESS) {
        q->state = QMP_CONNECTING;
        ev = EPOLLOUT;
    } else {
        qmp_fail(p, errno, NULL);
        return;
    }
    int r = loop_add_fd(p->l, q->fd, ev, qmp_on_fd, p);
    if (r < 0)
        qmp_fail(p, -r, NULL);
}

/* --- ops as QMP commands ---------------------------------------------- */

/* Send the next command of r's op, or complete r.  ret is the "return"
 * of the previous command (NULL before the first). */
static void
qmp_step(struct power *p, struct power_req *r, json_t *ret)
{
    const char *cmd = NULL;
    json_t *args = NULL;
    struct qmp *q = qmp_of(p);
    bool running = json_is_true(json_object_get(ret, "running"));
    int step = r->step++;

    bool power =
        r->op == POWER_RESET || r->op == POWER_ON || r->op == POWER_OFF;
    if (power && step == 0 && q->disk_armed) {
        q->disk_armed = false; /* this one carries the disk boot out */
    } else if (power && step == 0 && q->restore_nic >= 0) {
        /* The disk boot was carried out: the NIC back first, then the
         * op from its first step. */
        r->step = 0;
        r->cmd_id =
            qmp_send(p, "qom-set",
                     json_pack("{s:s,s:s,s:i}", "path", p->u->nic, "property",
                               "bootindex", "value", q->restore_nic));
        q->restore_nic = -1;
        if (r->cmd_id == 0)
            power_req_complete(r, -ENOMEM,
                               xasprintf("qmp %s: qom-set: cannot encode the "
                                         "command",
                                         p->u->path));
        return;
    }

    switch (r->op) {
    case POWER_RESET:
        /* A paused or shut-down VM stays stopped after system_reset. */
        cmd = step == 0               ? "system_reset"
              : step == 1             ? "query-status"
              : step == 2 && !running ? "cont"
                                      : NULL;
        break;
    case POWER_ON:
        cmd = step == 0               ? "query-status"
              : step == 1 && !running ? "system_reset"
              : step == 2             ? "cont"
                                      : NULL;
        break;
    case POWER_OFF:
        /* QEMU cannot power off without exiting: reset and hold the VM
         * paused, which power on undoes.  Reset first: a stopped VM goes
         * to "prelaunch" on reset, a reset one to "paused" on stop. */
        cmd = step == 0 ? "system_reset" : step == 1 ? "stop" : NULL;
        break;
    case POWER_STATUS:
        if (step == 0) {
            cmd = "query-status";
        } else {
            const char *st = json_string_value(json_object_get(ret, "status"));
            power_req_complete(r, 0, xstrdup(st ? st : "unknown"));
            return;
        }
        break;
    case POWER_NMI:
        cmd = step == 0 ? "inject-nmi" : NULL;
        break;
    case POWER_SYSRQ:
        if (step == 0) {
            cmd = "send-key";
            args = json_pack("{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "keys",
                             "type", "qcode", "data", "alt", "type", "qcode",
                             "data", "sysrq", "type", "qcode", "data", r->arg);
        }
        break;
    case POWER_SERIAL_BREAK:
        if (step == 0) {
            cmd = "chardev-send-break";
            args = json_pack("{s:s}", "id", r->arg);
        }
        break;
    case POWER_NETBOOT_ONCE:
        /* Takes effect at the next system_reset.  QEMU refuses to set a
         * bootindex the device already holds, so read it first.  The NIC
         * goes to the front: a one-time disk boot not yet carried out is
         * void. */
        if (step == 0) {
            q->restore_nic = -1;
            q->disk_armed = false;
            cmd = "qom-get";
            args = json_pack("{s:s,s:s}", "path", p->u->nic, "property",
                             "bootindex");
        } else if (step == 1 && json_integer_value(ret) != 0) {
            cmd = "qom-set";
            args = json_pack("{s:s,s:s,s:i}", "path", p->u->nic, "property",
                             "bootindex", "value", 0);
        }
        break;
    case POWER_BOOT_DISK_ONCE:
        /* Out of the boot order for one reset; the reset puts it back.
         * Already out (a disk boot not yet carried out): keep what is to
         * be put back. */
        if (step == 0) {
            cmd = "qom-get";
            args = json_pack("{s:s,s:s}", "path", p->u->nic, "property",
                             "bootindex");
        } else if (step == 1 && json_integer_value(ret) >= 0) {
            q->restore_nic = (int)json_integer_value(ret);
            cmd = "qom-set";
            args = json_pack("{s:s,s:s,s:i}", "path", p->u->nic, "property",
                             "bootindex", "value", -1);
        }
        if (step == 1)
            q->disk_armed = true;
        break;
    case POWER_MEDIA_INSERT: /* refused by power_driver.c */
    case POWER_MEDIA_EJECT:
    case POWER_CD_BOOT_ONCE:
    case POWER_NOPS:
        break;
    }
    if (!cmd) {
        power_req_complete(r, 0, NULL);
        return;
    }
    if (r->op == POWER_RESET && step == 0)
        power_req_sending(r); /* system_reset: stored before it is written */
    /* A run-time failure fails the request, never the daemon. */
    r->cmd_id = qmp_send(p, cmd, args);
    if (r->cmd_id == 0)
        power_req_complete(r, -ENOMEM,
                           xasprintf("qmp %s: %s: cannot encode the command",
                                     p->u->path, cmd));
}

/* Start the active request when the connection is ready. */
static void
qmp_pump(struct power *p)
{
    struct qmp *q = qmp_of(p);
    if (!p->head)
        return;
    if (q->state == QMP_IDLE) {
        qmp_connect(p);
        return;
    }
    if (q->state == QMP_READY && p->head->cmd_id == 0 && p->head->step == 0)
        qmp_step(p, p->head, NULL);
}

/* --- replies ---------------------------------------------------------- */

static void
qmp_on_event(struct power *p, json_t *msg)
{
    const char *ev = json_string_value(json_object_get(msg, "event"));
    if (ev && (!strcmp(ev, "RESET") || !strcmp(ev, "SHUTDOWN") ||
               !strcmp(ev, "POWERDOWN")))
        log_debug("%s: qmp event %s", p->name, ev);
}

static void
qmp_on_message(struct power *p, json_t *msg)
{
    struct qmp *q = qmp_of(p);
    if (json_object_get(msg, "event")) {
        qmp_on_event(p, msg);
        return;
    }
    if (q->state == QMP_GREETING) {
        if (!json_object_get(msg, "QMP")) {
            qmp_fail(p, EPROTO, "no QMP greeting");
            return;
        }
        q->state = QMP_CAPS;
        q->caps_id = qmp_send(p, "qmp_capabilities", NULL);
        if (q->caps_id == 0)
            qmp_fail(p, ENOMEM, "cannot encode qmp_capabilities");
        return;
    }
    json_t *jid = json_object_get(msg, "id");
    if (!json_is_integer(jid))
        return;
    uint64_t id = (uint64_t)json_integer_value(jid);
    json_t *err = json_object_get(msg, "error");
    const char *desc = json_string_value(json_object_get(err, "desc"));

    if (q->state == QMP_CAPS) {
        if (id != q->caps_id)
            return;
        if (err) {
            char *why =
                xasprintf("qmp_capabilities: %s", desc ? desc : "error");
            qmp_fail(p, EPROTO, why);
            free(why);
            return;
        }
        q->state = QMP_READY;
        qmp_pump(p);
        return;
    }
    struct power_req *r = p->head;
    if (!r || r->cmd_id != id) {
        /* The answer to a request that already timed out. */
        log_debug("%s: qmp reply to unknown id %llu", p->name,
                  (unsigned long long)id);
        return;
    }
    r->cmd_id = 0;
    if (err) {
        power_req_complete(r, -EIO, xstrdup(desc ? desc : "QMP error"));
    } else {
        qmp_step(p, r, json_object_get(msg, "return"));
        if (p->head == r)
            return;
    }
    qmp_pump(p);
}

static void
qmp_read(struct power *p)
{
    struct qmp *q = qmp_of(p);
    uint64_t gen = q->conn_gen;
    bool eof = false;
    int rerr = 0;
    for (;;) {
        char chunk[4096];
        ssize_t n = recv(q->fd, chunk, sizeof(chunk), 0);
        if (n > 0) {
            buf_append(&q->in, chunk, (size_t)n);
            continue;
        }
        if (n == 0) {
            eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            rerr = errno; /* after the replies that came before it */
        break;
    }
    size_t off = 0;
    char *nl;
    /* Nothing read yet (a peer that closed before its first byte): no
     * buffer either, and nothing to parse or keep. */
    while (q->in.len > off &&
           (nl = memchr(q->in.data + off, '\n', q->in.len - off))) {
        size_t len = (size_t)(nl - (q->in.data + off));
        json_error_t jerr;
        json_t *msg = json_loadb(q->in.data + off, len, 0, &jerr);
        off += len + 1;
        if (!json_is_object(msg)) {
            log_debug("%s: qmp: bad message: %s", p->name, jerr.text);
            json_decref(msg);
            continue;
        }
        qmp_on_message(p, msg);
        json_decref(msg);
        if (q->conn_gen != gen)
            return; /* the connection closed under us */
    }
    if (off > 0) {
        memmove(q->in.data, q->in.data + off, q->in.len - off + 1);
        q->in.len -= off;
    }
    if (rerr)
        qmp_fail(p, rerr, NULL);
    else if (eof)
        qmp_fail(p, ECONNRESET, "connection closed");
    else if (q->in.len > QMP_MAX_LINE)
        qmp_fail(p, EPROTO, "message too long");
}

static void
qmp_on_fd(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    struct power *p = arg;
    struct qmp *q = qmp_of(p);
    if (q->state == QMP_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            qmp_fail(p, err, NULL);
            return;
        }
        q->state = QMP_GREETING;
        loop_mod_fd(p->l, q->fd, EPOLLIN);
        return;
    }
    if (events & EPOLLOUT) {
        uint64_t gen = q->conn_gen;
        qmp_flush(p);
        if (q->conn_gen != gen)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        qmp_read(p);
}

static bool
qmp_alive(const struct qmp *q)
{
    char c;
    ssize_t n = recv(q->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* --- ops -------------------------------------------------------------- */

static int
qmp_init(struct power *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct qmp *q = xcalloc(1, sizeof(*q));
    q->fd = -1;
    q->restore_nic = -1;
    p->drv = q;
    return 0;
}

/* Refuse what the qmp driver cannot do before touching the socket. */
static char *
qmp_check(const struct power *p, const struct power_req *r, int *status)
{
    *status = -EINVAL;
    switch (r->op) {
    case POWER_SYSRQ:
        if (!r->arg || strlen(r->arg) != 1 ||
            !(islower((unsigned char)r->arg[0]) ||
              isdigit((unsigned char)r->arg[0])))
            return xasprintf("sysrq: key must be one of a-z, 0-9, got '%s'",
                             r->arg ? r->arg : "");
        break;
    case POWER_SERIAL_BREAK:
        if (!r->arg || !*r->arg)
            return xstrdup("serial break: needs a chardev id");
        break;
    case POWER_NETBOOT_ONCE:
    case POWER_BOOT_DISK_ONCE:
        if (!p->u->nic) {
            *status = -ENOTSUP;
            return xasprintf("qmp %s: %s needs ?nic=DEVICE_ID in the "
                             "power uri",
                             p->u->path,
                             r->op == POWER_NETBOOT_ONCE ? "netboot"
                                                         : "disk boot");
        }
        break;
    default:
        break;
    }
    return NULL;
}

static void
qmp_request(struct power *p, struct power_req *r)
{
    struct qmp *q = qmp_of(p);
    /* An idle connection may have died unnoticed (QEMU restarted while
     * the loop was busy): find out now rather than fail this request. */
    if (p->head == r && q->state == QMP_READY && !qmp_alive(q))
        qmp_close(p);
    power_req_arm(r, QMP_TIMEOUT_MS);
    qmp_pump(p);
}

static char *
qmp_timeout(struct power *p, struct power_req *r)
{
    struct qmp *q = qmp_of(p);
    /* A connection that swallowed a command or a handshake is dropped;
     * the requests behind r then connect afresh. */
    if (p->head == r && q->state != QMP_IDLE &&
        (r->cmd_id != 0 || q->state != QMP_READY))
        qmp_close(p);
    return xasprintf("qmp %s: no answer in %d ms", p->u->path, r->deadline_ms);
}

/* QEMU serves one QMP client at a time: our live connection is the proof,
 * and a second connect would queue behind it. */
static bool
qmp_reachable(struct power *p, char *err, size_t errlen)
{
    if (qmp_of(p)->state != QMP_IDLE)
        return true;
    struct stat st;
    if (stat(p->u->path, &st) < 0) {
        char *d = qmp_errdetail(p, errno);
        strlcpy_s(err, d, errlen);
        free(d);
        return false;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strlcpy_s(sa.sun_path, p->u->path, sizeof(sa.sun_path));
    /* Non-blocking: a full backlog (EAGAIN) still means someone listens. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
                   errno != EAGAIN)) {
        char *d = qmp_errdetail(p, errno);
        strlcpy_s(err, d, errlen);
        free(d);
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    return true;
}

static void
qmp_free(struct power *p)
{
    struct qmp *q = qmp_of(p);
    if (!q)
        return;
    buf_free(&q->in);
    buf_free(&q->out);
    free(q);
    p->drv = NULL;
}

const struct power_ops power_qmp_ops = {
    .name = "qmp",
    .init = qmp_init,
    .check = qmp_check,
    .request = qmp_request,
    .pump = qmp_pump,
    .timeout = qmp_timeout,
    .reachable = qmp_reachable,
    .stop = qmp_close,
    .free = qmp_free,
};
