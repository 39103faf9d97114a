/* power: the manual:, qmp: and ipmi: drivers.
 *
 * qmp keeps one connection to QEMU's QMP socket, opened on demand:
 * greeting, qmp_capabilities, then one command at a time from a FIFO of
 * requests, each command tagged with an id and its reply matched by it.
 * An op that needs several commands (reset = system_reset, query-status,
 * cont) walks its steps in qmp_step().  When the socket is missing or the
 * connection drops, every queued request fails and the next request
 * connects again, so a restarted QEMU is picked up.  Results are handed
 * to callbacks from a 0 ms timer, never from inside power_request().
 *
 * ipmi runs the real `ipmitool -I lanplus` as a child per command, one at
 * a time per BMC (BMCs allow few sessions), its stdout and stderr on
 * pipes and its exit on a pidfd in the loop, with a deadline per command.
 * The password goes through IPMI_PASSWORD (-E), never argv, which ps
 * shows to everyone.  Pre-flight is a synchronous RMCP presence ping
 * (UDP, at most IPMI_PING_MS) plus the outcome of the last `power status`
 * (the driver asks once at start), so wrong credentials are refused before
 * any state moves. */
#include "power.h"
#include "log.h"
#include "loop.h"
#include "uri.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define QMP_MAX_LINE (1024 * 1024)

#ifdef UNITTEST
void power_test_set_timeout(int ms);
void power_test_set_ipmitool(const char *path);
#endif
static int qmp_timeout_ms = 5000;

/* A BMC answers a command in well under a second; ipmitool's own retries
 * (-N 1 -R 3) give up on a dead one after about 4 s. */
static int ipmi_timeout_ms = 15000;
static const char *ipmitool_bin = "ipmitool";
#define IPMI_PING_MS 300
#define IPMI_STOP_GRACE_MS 200
#define IPMI_MAX_OUTPUT 65536

enum qmp_state {
    QMP_IDLE,       /* no connection */
    QMP_CONNECTING, /* non-blocking connect in progress */
    QMP_GREETING,   /* waiting for {"QMP": ...} */
    QMP_CAPS,       /* qmp_capabilities sent */
    QMP_READY,
};

struct req {
    struct req *next;
    struct power *p;
    enum power_op op;
    char *arg;
    power_done_cb *cb;
    void *cbarg;
    int step;        /* commands of the op sent so far */
    uint64_t cmd_id; /* id of the command in flight, 0 when none */
    uint64_t timer;  /* deadline */
    int status;      /* result, once done */
    char *detail;
};

struct power {
    struct loop *l;
    struct uri_power *u; /* parsed once, by uri.c: path, nic */
    char *uri;
    char *name;

    int fd;
    enum qmp_state state;
    uint64_t conn_gen; /* bumped when a connection closes */
    struct buf in, out;
    uint64_t next_id;
    uint64_t caps_id;

    struct req *head, *tail;      /* queued, head is the active one */
    struct req *done, *done_tail; /* finished, callback not yet run */
    uint64_t defer_timer;
    /* ipmi: the one ipmitool in flight, for p->head */
    pid_t child;
    int child_pidfd, child_out, child_err;
    struct buf cout, cerr;
    const char *const *child_cmd; /* what it runs, for messages */
    char *bmc;                    /* "HOST:PORT", for messages */
    char *status_err; /* why the last power status failed, or NULL */
    bool probing;     /* a status probe of ours is queued */

    bool draining; /* inside the callbacks of done requests */
    bool closing;  /* inside power_free() */
    bool dead;     /* power_free() called from a callback */
};

static const char *const op_names[] = {
    [POWER_RESET] = "reset",
    [POWER_ON] = "power on",
    [POWER_OFF] = "power off",
    [POWER_STATUS] = "status",
    [POWER_NMI] = "nmi",
    [POWER_SYSRQ] = "sysrq",
    [POWER_SERIAL_BREAK] = "serial break",
    [POWER_NETBOOT_ONCE] = "netboot once",
};

static const char *
op_name(enum power_op op)
{
    if ((unsigned)op < sizeof(op_names) / sizeof(op_names[0]) && op_names[op])
        return op_names[op];
    return "unknown op";
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

/* --- completion ------------------------------------------------------- */

static void
req_free(struct req *r)
{
    if (!r)
        return;
    free(r->arg);
    free(r->detail);
    free(r);
}

static void power_destroy(struct power *p);

static int64_t
defer_fire(struct loop *l, void *arg)
{
    (void)l;
    struct power *p = arg;
    p->defer_timer = 0;
    p->draining = true;
    while (p->done && !p->dead) {
        struct req *r = p->done;
        p->done = r->next;
        if (!p->done)
            p->done_tail = NULL;
        r->cb(r->cbarg, r->status, r->detail);
        req_free(r);
    }
    p->draining = false;
    if (p->dead)
        power_destroy(p);
    return -1;
}

/* Take r off the queue and hand it to the deferred callbacks.  Takes
 * ownership of detail. */
static void
req_complete(struct req *r, int status, char *detail)
{
    struct power *p = r->p;
    struct req **pp = &p->head, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = r->next;
        if (p->tail == r)
            p->tail = prev;
    }
    loop_del_timer(p->l, r->timer);
    r->timer = 0;
    r->next = NULL;
    r->status = status;
    free(r->detail);
    r->detail = detail;
    if (status < 0)
        log_debug("%s: %s failed: %s", p->name, op_name(r->op),
                  detail ? detail : strerror(-status));
    if (p->done_tail)
        p->done_tail->next = r;
    else
        p->done = r;
    p->done_tail = r;
    if (!p->defer_timer && !p->draining)
        p->defer_timer = loop_add_timer(p->l, 0, defer_fire, p);
}

/* --- qmp connection --------------------------------------------------- */

static void qmp_on_fd(struct loop *l, int fd, uint32_t events, void *arg);
static void qmp_pump(struct power *p);

static void
qmp_close(struct power *p)
{
    loop_close_fd(p->l, &p->fd);
    p->state = QMP_IDLE;
    p->conn_gen++;
    buf_reset(&p->in);
    buf_reset(&p->out);
    for (struct req *r = p->head; r; r = r->next) {
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
        req_complete(p->head, -err,
                     why ? xasprintf("qmp %s: %s", p->u->path, why)
                         : qmp_errdetail(p, err));
}

static void
qmp_flush(struct power *p)
{
    while (p->out.len > 0) {
        ssize_t n = send(p->fd, p->out.data, p->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            qmp_fail(p, errno, NULL);
            return;
        }
        memmove(p->out.data, p->out.data + n, p->out.len - (size_t)n + 1);
        p->out.len -= (size_t)n;
    }
    loop_mod_fd(p->l, p->fd, EPOLLIN | (p->out.len ? EPOLLOUT : 0));
}

/* Queue {"execute": cmd, "arguments": args, "id": N}; steals args. */
static uint64_t
qmp_send(struct power *p, const char *cmd, json_t *args)
{
    uint64_t id = ++p->next_id;
    json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)id);
    if (args)
        json_object_set_new(msg, "arguments", args);
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!s)
        fatalx("json_dumps: out of memory");
    log_debug("%s: qmp -> %s", p->name, s);
    buf_append(&p->out, s, strlen(s));
    buf_append(&p->out, "\n", 1);
    free(s);
    qmp_flush(p);
    return id;
}

static void
qmp_connect(struct power *p)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strlcpy_s(sa.sun_path, p->u->path, sizeof(sa.sun_path));
    p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        qmp_fail(p, errno, NULL);
        return;
    }
    uint32_t ev = EPOLLIN;
    if (connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        p->state = QMP_GREETING;
    } else if (errno == EINPROGRESS) {
        p->state = QMP_CONNECTING;
        ev = EPOLLOUT;
    } else {
        qmp_fail(p, errno, NULL);
        return;
    }
    int r = loop_add_fd(p->l, p->fd, ev, qmp_on_fd, p);
    if (r < 0)
        qmp_fail(p, -r, NULL);
}

/* Send the next command of r's op, or complete r.  ret is the "return"
 * of the previous command (NULL before the first). */
static void
qmp_step(struct power *p, struct req *r, json_t *ret)
{
    const char *cmd = NULL;
    json_t *args = NULL;
    bool running = json_is_true(json_object_get(ret, "running"));
    int step = r->step++;

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
            req_complete(r, 0, xstrdup(st ? st : "unknown"));
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
         * bootindex the device already holds, so read it first. */
        if (step == 0) {
            cmd = "qom-get";
            args = json_pack("{s:s,s:s}", "path", p->u->nic, "property",
                             "bootindex");
        } else if (step == 1 && json_integer_value(ret) != 0) {
            cmd = "qom-set";
            args = json_pack("{s:s,s:s,s:i}", "path", p->u->nic, "property",
                             "bootindex", "value", 0);
        }
        break;
    }
    if (!cmd) {
        req_complete(r, 0, NULL);
        return;
    }
    r->cmd_id = qmp_send(p, cmd, args);
}

/* Start the active request when the connection is ready. */
static void
qmp_pump(struct power *p)
{
    if (!p->head)
        return;
    if (p->state == QMP_IDLE) {
        qmp_connect(p);
        return;
    }
    if (p->state == QMP_READY && p->head->cmd_id == 0 && p->head->step == 0)
        qmp_step(p, p->head, NULL);
}

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
    if (json_object_get(msg, "event")) {
        qmp_on_event(p, msg);
        return;
    }
    if (p->state == QMP_GREETING) {
        if (!json_object_get(msg, "QMP")) {
            qmp_fail(p, EPROTO, "no QMP greeting");
            return;
        }
        p->state = QMP_CAPS;
        p->caps_id = qmp_send(p, "qmp_capabilities", NULL);
        return;
    }
    json_t *jid = json_object_get(msg, "id");
    if (!json_is_integer(jid))
        return;
    uint64_t id = (uint64_t)json_integer_value(jid);
    json_t *err = json_object_get(msg, "error");
    const char *desc = json_string_value(json_object_get(err, "desc"));

    if (p->state == QMP_CAPS) {
        if (id != p->caps_id)
            return;
        if (err) {
            char *why =
                xasprintf("qmp_capabilities: %s", desc ? desc : "error");
            qmp_fail(p, EPROTO, why);
            free(why);
            return;
        }
        p->state = QMP_READY;
        qmp_pump(p);
        return;
    }
    struct req *r = p->head;
    if (!r || r->cmd_id != id) {
        /* The answer to a request that already timed out. */
        log_debug("%s: qmp reply to unknown id %llu", p->name,
                  (unsigned long long)id);
        return;
    }
    r->cmd_id = 0;
    if (err) {
        req_complete(r, -EIO, xstrdup(desc ? desc : "QMP error"));
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
    uint64_t gen = p->conn_gen;
    bool eof = false;
    int rerr = 0;
    for (;;) {
        char chunk[4096];
        ssize_t n = recv(p->fd, chunk, sizeof(chunk), 0);
        if (n > 0) {
            buf_append(&p->in, chunk, (size_t)n);
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
    while ((nl = memchr(p->in.data + off, '\n', p->in.len - off))) {
        size_t len = (size_t)(nl - (p->in.data + off));
        json_error_t jerr;
        json_t *msg = json_loadb(p->in.data + off, len, 0, &jerr);
        off += len + 1;
        if (!json_is_object(msg)) {
            log_debug("%s: qmp: bad message: %s", p->name, jerr.text);
            json_decref(msg);
            continue;
        }
        qmp_on_message(p, msg);
        json_decref(msg);
        if (p->conn_gen != gen)
            return; /* the connection closed under us */
    }
    memmove(p->in.data, p->in.data + off, p->in.len - off + 1);
    p->in.len -= off;
    if (rerr)
        qmp_fail(p, rerr, NULL);
    else if (eof)
        qmp_fail(p, ECONNRESET, "connection closed");
    else if (p->in.len > QMP_MAX_LINE)
        qmp_fail(p, EPROTO, "message too long");
}

static void
qmp_on_fd(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    struct power *p = arg;
    if (p->state == QMP_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            qmp_fail(p, err, NULL);
            return;
        }
        p->state = QMP_GREETING;
        loop_mod_fd(p->l, p->fd, EPOLLIN);
        return;
    }
    if (events & EPOLLOUT) {
        uint64_t gen = p->conn_gen;
        qmp_flush(p);
        if (p->conn_gen != gen)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        qmp_read(p);
}

static bool
qmp_alive(struct power *p)
{
    char c;
    ssize_t n = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

static int64_t
req_timeout(struct loop *l, void *arg)
{
    (void)l;
    struct req *r = arg;
    struct power *p = r->p;
    r->timer = 0;
    /* A connection that swallowed a command or a handshake is dropped;
     * the requests behind r then connect afresh. */
    bool stuck = p->head == r && p->state != QMP_IDLE &&
                 (r->cmd_id != 0 || p->state != QMP_READY);
    req_complete(
        r, -ETIMEDOUT,
        xasprintf("qmp %s: no answer in %d ms", p->u->path, qmp_timeout_ms));
    if (stuck)
        qmp_close(p);
    qmp_pump(p);
    return -1;
}

/* --- ipmi ------------------------------------------------------------- */

static const char *const cmd_status[] = {"power", "status", NULL};
static const char *const cmd_on[] = {"power", "on", NULL};
static const char *const cmd_off[] = {"power", "off", NULL};
static const char *const cmd_reset[] = {"power", "reset", NULL};
static const char *const cmd_diag[] = {"chassis", "power", "diag", NULL};
/* One-time (no options=persistent); the BMC forgets it about 60 s later,
 * so the state machine resets right after. */
static const char *const cmd_pxe_efi[] = {"chassis", "bootdev", "pxe",
                                          "options=efiboot", NULL};
static const char *const cmd_pxe_legacy[] = {"chassis", "bootdev", "pxe", NULL};

/* ipmitool's argv for cmd; NULL-terminated, free with strv_free().  No
 * password: -E makes ipmitool read IPMI_PASSWORD. */
char **
power_ipmi_argv(const struct uri_power *u, const char *const *cmd)
{
    size_t n = 0;
    while (cmd[n])
        n++;
    char **argv = xcalloc(n + 20, sizeof(*argv));
    size_t k = 0;
    const char *head[] = {ipmitool_bin, "-I",    "lanplus", "-H",    u->host,
                          "-p",         u->port, "-U",      u->user, "-E",
                          "-N",         "1",     "-R",      "3"};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
        argv[k++] = xstrdup(head[i]);
    if (u->cipher) {
        argv[k++] = xstrdup("-C");
        argv[k++] = xstrdup(u->cipher);
    }
    for (size_t i = 0; i < n; i++)
        argv[k++] = xstrdup(cmd[i]);
    return argv;
}

/* "on" or "off" from `power status` output ("Chassis Power is on"). */
const char *
power_ipmi_parse_status(const char *out)
{
    static const char key[] = "Chassis Power is ";
    for (const char *l = out; l && *l; l = strchr(l, '\n')) {
        l += *l == '\n';
        if (strncmp(l, key, sizeof(key) - 1) != 0)
            continue;
        const char *v = l + sizeof(key) - 1;
        size_t len = strcspn(v, " \r\n");
        if (len == 2 && !strncmp(v, "on", 2))
            return "on";
        if (len == 3 && !strncmp(v, "off", 3))
            return "off";
    }
    return NULL;
}

static char *
cmd_text(const char *const *cmd)
{
    struct buf b = {0};
    for (size_t i = 0; cmd[i]; i++)
        buf_printf(&b, "%s%s", i ? " " : "", cmd[i]);
    return b.data;
}

/* The child is gone or given up on: stop watching it, reap it. */
static void
ipmi_reap(struct power *p)
{
    loop_close_fd(p->l, &p->child_out);
    loop_close_fd(p->l, &p->child_err);
    loop_close_fd(p->l, &p->child_pidfd);
    if (p->child > 0)
        child_stop(p->child, IPMI_STOP_GRACE_MS);
    p->child = 0;
    p->child_cmd = NULL;
    buf_reset(&p->cout);
    buf_reset(&p->cerr);
}

/* Read what is there; false at EOF or error. */
static bool
ipmi_drain(int fd, struct buf *b)
{
    for (;;) {
        char chunk[1024];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n > 0) {
            if (b->len < IPMI_MAX_OUTPUT)
                buf_append(b, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

static void
ipmi_on_pipe(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    struct power *p = arg;
    int *which = fd == p->child_out ? &p->child_out : &p->child_err;
    if (!ipmi_drain(fd, which == &p->child_out ? &p->cout : &p->cerr))
        loop_close_fd(p->l, which);
}

/* The last line ipmitool wrote to stderr: its own words for the failure. */
static char *
last_line(const struct buf *b)
{
    if (!b->data)
        return NULL;
    const char *end = b->data + b->len;
    while (end > b->data &&
           (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > b->data && start[-1] != '\n')
        start--;
    if (start == end)
        return NULL;
    return xasprintf("%.*s", (int)(end - start), start);
}

static void ipmi_step(struct power *p, struct req *r, const char *out);
static void ipmi_pump(struct power *p);

static void
ipmi_on_exit(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct power *p = arg;
    struct req *r = p->head;
    int st = 0;
    pid_t w = waitpid(p->child, &st, WNOHANG);
    if (w == 0)
        return; /* spurious: not yet */
    p->child = 0;
    if (p->child_out >= 0)
        ipmi_drain(p->child_out, &p->cout);
    if (p->child_err >= 0)
        ipmi_drain(p->child_err, &p->cerr);
    char *what = cmd_text(p->child_cmd);
    bool was_status = p->child_cmd == cmd_status;
    char *out = xstrdup(p->cout.data ? p->cout.data : "");
    char *why = last_line(&p->cerr);
    ipmi_reap(p);
    loop_del_timer(p->l, r->timer);
    r->timer = 0;

    if (w < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *detail;
        if (w > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127)
            detail = xasprintf("ipmi %s: %s: cannot run %s", p->bmc, what,
                               ipmitool_bin);
        else
            detail = xasprintf("ipmi %s: %s: %s", p->bmc, what,
                               why ? why : "ipmitool failed");
        if (was_status) {
            free(p->status_err);
            p->status_err = xstrdup(detail);
        }
        req_complete(r, -EIO, detail);
    } else {
        free(p->status_err);
        p->status_err = NULL;
        if (why)
            log_debug("%s: ipmitool %s: %s", p->name, what, why);
        ipmi_step(p, r, out);
    }
    free(what);
    free(why);
    free(out);
    ipmi_pump(p);
}

static int64_t
ipmi_timeout(struct loop *l, void *arg)
{
    (void)l;
    struct req *r = arg;
    struct power *p = r->p;
    r->timer = 0;
    char *what = cmd_text(p->child_cmd ? p->child_cmd : cmd_status);
    bool was_status = p->child_cmd == cmd_status;
    ipmi_reap(p);
    char *detail = xasprintf("ipmi %s: %s: no answer in %d ms", p->bmc, what,
                             ipmi_timeout_ms);
    if (was_status) {
        free(p->status_err);
        p->status_err = xstrdup(detail);
    }
    req_complete(r, -ETIMEDOUT, detail);
    free(what);
    ipmi_pump(p);
    return -1;
}

/* Start ipmitool for cmd on behalf of r, the head of the queue. */
static void
ipmi_spawn(struct power *p, struct req *r, const char *const *cmd)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
        goto out_fail;
    char **argv = power_ipmi_argv(p->u, cmd),
         **envp = env_with("IPMI_PASSWORD", p->u->pass);
    const int fds[3] = {-1, out[1], err[1]};
    pid_t pid = child_spawn(argv, envp, fds, false, NULL);
    int e = errno;
    strv_free(argv);
    strv_free(envp);
    if (pid < 0) {
        errno = e;
        goto out_fail;
    }
    close(out[1]);
    close(err[1]);
    p->child = pid;
    p->child_cmd = cmd;
    p->child_out = out[0];
    p->child_err = err[0];
    p->child_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (p->child_pidfd < 0 || fd_set_nonblock(out[0]) < 0 ||
        fd_set_nonblock(err[0]) < 0 ||
        loop_add_fd(p->l, out[0], EPOLLIN, ipmi_on_pipe, p) < 0 ||
        loop_add_fd(p->l, err[0], EPOLLIN, ipmi_on_pipe, p) < 0 ||
        loop_add_fd(p->l, p->child_pidfd, EPOLLIN, ipmi_on_exit, p) < 0) {
        e = errno;
        ipmi_reap(p);
        char *what = cmd_text(cmd);
        req_complete(r, -e,
                     xasprintf("ipmi %s: %s: %s", p->bmc, what, strerror(e)));
        free(what);
        return;
    }
    char *what = cmd_text(cmd);
    log_debug("%s: ipmitool %s (pid %d)", p->name, what, (int)pid);
    free(what);
    loop_del_timer(p->l, r->timer);
    r->timer = loop_add_timer(p->l, ipmi_timeout_ms, ipmi_timeout, r);
    return;

out_fail:;
    e = errno;
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    req_complete(
        r, -e,
        xasprintf("ipmi %s: cannot start ipmitool: %s", p->bmc, strerror(e)));
}

/* Run the next command of r's op, or complete r.  out is the stdout of
 * the previous command (NULL before the first). */
static void
ipmi_step(struct power *p, struct req *r, const char *out)
{
    const char *const *cmd = NULL;
    int step = r->step++;
    const char *st = out ? power_ipmi_parse_status(out) : NULL;

    switch (r->op) {
    case POWER_RESET:
        /* Many BMCs refuse a reset of a chassis that is off. */
        cmd = step == 0                               ? cmd_status
              : step == 1 && st && !strcmp(st, "off") ? cmd_on
              : step == 1                             ? cmd_reset
                                                      : NULL;
        break;
    case POWER_ON:
        cmd = step == 0 ? cmd_on : NULL;
        break;
    case POWER_OFF:
        cmd = step == 0 ? cmd_off : NULL;
        break;
    case POWER_STATUS:
        if (step == 0) {
            cmd = cmd_status;
        } else {
            req_complete(r, 0, xstrdup(st ? st : "unknown"));
            return;
        }
        break;
    case POWER_NMI:
        cmd = step == 0 ? cmd_diag : NULL;
        break;
    case POWER_NETBOOT_ONCE:
        if (step == 0)
            cmd = p->u->boot_legacy ? cmd_pxe_legacy : cmd_pxe_efi;
        break;
    default:
        break;
    }
    if (step == 1 && r->op == POWER_RESET && !st) {
        req_complete(
            r, -EIO,
            xasprintf("ipmi %s: power status: unexpected answer", p->bmc));
        return;
    }
    if (!cmd) {
        req_complete(r, 0, NULL);
        return;
    }
    ipmi_spawn(p, r, cmd);
}

static void
ipmi_pump(struct power *p)
{
    while (p->head && p->child == 0 && p->head->step == 0 && !p->closing)
        ipmi_step(p, p->head, NULL);
}

/* Refuse what IPMI cannot do before running anything. */
static char *
ipmi_check(const struct power *p, const struct req *r, int *status)
{
    *status = -EINVAL;
    if ((unsigned)r->op > POWER_NETBOOT_ONCE)
        return xstrdup("unknown power op");
    *status = -ENOTSUP;
    if (r->op == POWER_SYSRQ || r->op == POWER_SERIAL_BREAK)
        return xasprintf("ipmi %s: IPMI has no %s; send it on an ipmi-sol: "
                         "console (a SOL break)",
                         p->bmc, op_name(r->op));
    return NULL;
}

static void
probe_done(void *arg, int status, const char *detail)
{
    struct power *p = arg;
    if (status == -ECANCELED)
        return;
    p->probing = false;
    if (status < 0)
        log_warnx("%s: %s", p->name, detail ? detail : strerror(-status));
}

/* Ask the BMC for its power status, in the background. */
static void
ipmi_probe(struct power *p)
{
    if (p->probing || p->closing)
        return;
    p->probing = true;
    power_request(p, POWER_STATUS, NULL, probe_done, p);
}

/* An RMCP presence ping (ASF, DMTF DSP0136) to the BMC's port: a pong
 * proves a BMC listens there, without a session.  Blocks at most
 * IPMI_PING_MS. */
static bool
ipmi_ping(const struct power *p, char *err, size_t errlen)
{
    static const unsigned char ping[] = {0x06, 0x00, 0xff, 0x06, 0x00, 0x00,
                                         0x11, 0xbe, 0x80, 0x5a, 0x00, 0x00};
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(p->u->host, p->u->port, &hints, &ai);
    if (g != 0) {
        seterr(err, errlen, "ipmi %s: %s", p->bmc, gai_strerror(g));
        return false;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int e = 0;
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        e = errno;
    freeaddrinfo(ai);
    int64_t deadline = now_mono_ms() + IPMI_PING_MS;
    bool pong = false;
    /* Twice: one lost datagram is no verdict. */
    for (int tries = 0; !e && !pong && tries < 2; tries++) {
        if (send(fd, ping, sizeof(ping), 0) < 0) {
            e = errno;
            break;
        }
        int64_t until = tries ? deadline : now_mono_ms() + IPMI_PING_MS / 2;
        for (;;) {
            int64_t left = until - now_mono_ms();
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                break;
            unsigned char in[64];
            ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                e = errno;
                break;
            }
            /* RMCP class ASF, message type pong, our tag. */
            if (n >= 12 && in[3] == 0x06 && in[8] == 0x40 && in[9] == 0x5a) {
                pong = true;
                break;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    if (pong)
        return true;
    if (e)
        seterr(err, errlen, "ipmi %s: BMC unreachable: %s", p->bmc,
               strerror(e));
    else
        seterr(err, errlen,
               "ipmi %s: BMC unreachable: no answer to an RMCP ping in %d ms",
               p->bmc, IPMI_PING_MS);
    return false;
}

static bool
ipmi_reachable(struct power *p, char *err, size_t errlen)
{
    if (!ipmi_ping(p, err, errlen))
        return false;
    if (p->status_err) {
        /* It answers pings but not ipmitool: credentials, cipher, a
         * full session table.  Look again for the next attempt. */
        seterr(err, errlen, "%s (checking again: retry in a few seconds)",
               p->status_err);
        ipmi_probe(p);
        return false;
    }
    return true;
}

/* --- public ----------------------------------------------------------- */

struct power *
power_new(struct loop *l, const char *uri, char *err, size_t errlen)
{
    struct power *p = xcalloc(1, sizeof(*p));
    p->l = l;
    p->fd = -1;
    p->child_pidfd = p->child_out = p->child_err = -1;
    p->uri = xstrdup(uri ? uri : "");
    p->name = xstrdup(p->uri);
    p->u = uri_power_parse(uri, err, errlen);
    if (!p->u)
        goto out_free;
    if (p->u->kind == URI_POWER_REDFISH) {
        snprintf(err, errlen, "power: redfish driver not implemented yet");
        goto out_free;
    }
    if (p->u->kind == URI_POWER_IPMI) {
        p->bmc = strchr(p->u->host, ':')
                     ? xasprintf("[%s]:%s", p->u->host, p->u->port)
                     : xasprintf("%s:%s", p->u->host, p->u->port);
        /* Learn early whether ipmitool gets in: pre-flight reports it. */
        ipmi_probe(p);
    }
    return p;

out_free:
    power_destroy(p);
    return NULL;
}

void
power_set_name(struct power *p, const char *name)
{
    free(p->name);
    p->name = xstrdup(name);
}

static void
power_destroy(struct power *p)
{
    loop_del_timer(p->l, p->defer_timer);
    qmp_close(p);
    ipmi_reap(p);
    buf_free(&p->in);
    buf_free(&p->out);
    buf_free(&p->cout);
    buf_free(&p->cerr);
    free(p->bmc);
    free(p->status_err);
    free(p->uri);
    free(p->name);
    uri_power_free(p->u);
    free(p);
}

void
power_free(struct power *p)
{
    if (!p || p->dead || p->closing)
        return;
    p->closing = true;
    qmp_close(p);
    ipmi_reap(p);
    /* Finished ones report what happened; the rest are cancelled. */
    while (p->head)
        req_complete(p->head, -ECANCELED, xstrdup("power driver stopped"));
    bool in_cb = p->draining;
    p->draining = true;
    while (p->done) {
        struct req *r = p->done;
        p->done = r->next;
        if (!p->done)
            p->done_tail = NULL;
        r->cb(r->cbarg, r->status, r->detail);
        req_free(r);
        while (p->head) /* requested from a callback just now */
            req_complete(p->head, -ECANCELED, xstrdup("power driver stopped"));
    }
    if (in_cb)
        p->dead = true; /* defer_fire() frees it on the way out */
    else
        power_destroy(p);
}

static void
manual_request(struct power *p, struct req *r)
{
    if (r->op == POWER_STATUS) {
        req_complete(r, -ENOTSUP, xstrdup("manual: power status is not known"));
        return;
    }
    log_info("%s: operator must power-cycle (%s)", p->name, op_name(r->op));
    req_complete(r, 0, NULL);
}

/* Refuse what the qmp driver cannot do before touching the socket. */
static char *
qmp_check(const struct power *p, const struct req *r, int *status)
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
        if (!p->u->nic) {
            *status = -ENOTSUP;
            return xasprintf("qmp %s: netboot needs ?nic=DEVICE_ID in the "
                             "power uri",
                             p->u->path);
        }
        break;
    default:
        break;
    }
    return NULL;
}

void
power_request(struct power *p, enum power_op op, const char *arg,
              power_done_cb *cb, void *cbarg)
{
    struct req *r = xcalloc(1, sizeof(*r));
    r->p = p;
    r->op = op;
    r->arg = arg ? xstrdup(arg) : NULL;
    r->cb = cb;
    r->cbarg = cbarg;
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;

    if (p->u->kind == URI_POWER_MANUAL) {
        manual_request(p, r);
        return;
    }
    if (p->u->kind == URI_POWER_IPMI) {
        int status;
        char *why = ipmi_check(p, r, &status);
        if (why)
            req_complete(r, status, why);
        else if (p->closing)
            req_complete(r, -ECANCELED, xstrdup("power driver stopped"));
        else
            ipmi_pump(p);
        return;
    }
    /* An idle connection may have died unnoticed (QEMU restarted while
     * the loop was busy): find out now rather than fail this request. */
    if (p->head == r && p->state == QMP_READY && !qmp_alive(p))
        qmp_close(p);
    int status;
    char *why = (unsigned)op > POWER_NETBOOT_ONCE ? xstrdup("unknown power op")
                                                  : qmp_check(p, r, &status);
    if (why) {
        req_complete(r, (unsigned)op > POWER_NETBOOT_ONCE ? -EINVAL : status,
                     why);
        return;
    }
    if (p->closing) {
        req_complete(r, -ECANCELED, xstrdup("power driver stopped"));
        return;
    }
    r->timer = loop_add_timer(p->l, qmp_timeout_ms, req_timeout, r);
    qmp_pump(p);
}

bool
power_is_manual(const struct power *p)
{
    return p->u->kind == URI_POWER_MANUAL;
}

bool
power_reachable(struct power *p, char *err, size_t errlen)
{
    if (p->u->kind == URI_POWER_MANUAL)
        return true;
    if (p->u->kind == URI_POWER_IPMI)
        return ipmi_reachable(p, err, errlen);
    /* QEMU serves one QMP client at a time: our live connection is the
     * proof, and a second connect would queue behind it. */
    if (p->state != QMP_IDLE)
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

#ifdef UNITTEST
void
power_test_set_timeout(int ms)
{
    qmp_timeout_ms = ms;
    ipmi_timeout_ms = ms;
}

void
power_test_set_ipmitool(const char *path)
{
    ipmitool_bin = path;
}
#endif
