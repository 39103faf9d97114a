/* power_ipmi: ipmi://USER:PASS@HOST[:PORT][?cipher=N&boot=efi|legacy].
 *
 * Runs the real ipmitool (ipmitool.h: argv, IPMI_PASSWORD, spawn, stop)
 * as a child per command, one at a time per BMC (BMCs allow few
 * sessions), its stdout and stderr on pipes and its exit on a pidfd in
 * the loop, with a deadline per command.  Pre-flight is an RMCP presence
 * ping (UDP, at most IPMI_PING_MS: on the loop for power_preflight,
 * blocking for power_reachable) plus the outcome of the last `power
 * status` (the driver asks once at start), so wrong credentials are
 * refused before any state moves.  power_reachable's lookup of a BMC
 * named by a host name blocks (getaddrinfo); power_preflight's does not
 * (resolve.h). */
#include "ipmitool.h"
#include "log.h"
#include "loop.h"
#include "power_driver.h"
#include "resolve.h"
#include "uri.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A BMC answers a command in well under a second; ipmitool's own retries
 * (-N 1 -R 3) give up on a dead one after about 4 s. */
#define IPMI_TIMEOUT_MS 15000
#define IPMI_PING_MS 300
#define IPMI_MAX_OUTPUT 65536

struct ipmi {
    struct ipmitool_bmc bmc; /* points into p->u */
    char *where;             /* "HOST:PORT", for messages */
    /* the one ipmitool in flight, for p->head */
    pid_t child;
    int pidfd, out, err;
    struct buf cout, cerr;
    const char *const *cmd; /* what it runs, for messages */
    char *status_err;       /* why the last power status failed, or NULL */
    bool probing;           /* a status probe of ours is queued */
    /* the pre-flight's RMCP ping on the loop, for every check waiting */
    int ping_fd;
    uint64_t ping_timer;
    int ping_tries;
    struct resolve *resolving; /* the BMC's name, looked up off the loop */
};

static struct ipmi *
ipmi_of(const struct power *p)
{
    return p->drv;
}

static const char *const cmd_status[] = {"power", "status", NULL};
static const char *const cmd_on[] = {"power", "on", NULL};
static const char *const cmd_off[] = {"power", "off", NULL};
static const char *const cmd_reset[] = {"power", "reset", NULL};
static const char *const cmd_diag[] = {"chassis", "power", "diag", NULL};
/* A one-time boot device, as Ironic sets it: clear the boot-flag-valid
 * timer first (Set System Boot Options, parameter 3; not every BMC has
 * it, so a refusal only goes to the debug log), set the device (no
 * options=persistent: the next boot only; the BMC forgets it about 60 s
 * later, so the state machine resets right after), and read parameter 5
 * back: some BMCs accept and drop it. */
static const char *const cmd_clear_valid[] = {"raw",  "0x00", "0x08",
                                              "0x03", "0x08", NULL};
static const char *const cmd_pxe_efi[] = {"chassis", "bootdev", "pxe",
                                          "options=efiboot", NULL};
static const char *const cmd_pxe_legacy[] = {"chassis", "bootdev", "pxe", NULL};
static const char *const cmd_disk_efi[] = {"chassis", "bootdev", "disk",
                                           "options=efiboot", NULL};
static const char *const cmd_disk_legacy[] = {"chassis", "bootdev", "disk",
                                              NULL};
static const char *const cmd_bootparam[] = {"chassis", "bootparam", "get", "5",
                                            NULL};

const char *
power_ipmi_parse_bootdev(const char *out)
{
    /* "Boot parameter data: 0008000000": byte 2, bits 5-2, the device. */
    static const char key[] = "Boot parameter data: ";
    const char *v = out ? strstr(out, key) : NULL;
    if (!v)
        return NULL;
    v += sizeof(key) - 1;
    unsigned b;
    if (strspn(v, "0123456789abcdefABCDEF") < 4 ||
        sscanf(v + 2, "%2x", &b) != 1)
        return NULL;
    switch ((b >> 2) & 0x0f) {
    case 0:
        return "none";
    case 1:
        return "pxe";
    case 2:
        return "disk";
    default:
        return "other";
    }
}

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

/* --- the child -------------------------------------------------------- */

/* The child is gone or given up on: stop watching it, reap it. */
static void
ipmi_reap(struct power *p)
{
    struct ipmi *m = ipmi_of(p);
    if (!m)
        return;
    loop_close_fd(p->l, &m->out);
    loop_close_fd(p->l, &m->err);
    loop_close_fd(p->l, &m->pidfd);
    ipmitool_stop(m->child);
    m->child = 0;
    m->cmd = NULL;
    buf_reset(&m->cout);
    buf_reset(&m->cerr);
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
    struct ipmi *m = ipmi_of(p);
    int *which = fd == m->out ? &m->out : &m->err;
    if (!ipmi_drain(fd, which == &m->out ? &m->cout : &m->cerr))
        loop_close_fd(p->l, which);
}

/* The last line ipmitool wrote to stderr: its own words for the failure.
 * Not its session close after a failed command (a BMC gone mid-command):
 * that line says nothing of the command, the one before it does. */
static char *
last_line(const struct buf *b)
{
    static const char close_failed[] = "Close Session command failed";
    if (!b->data)
        return NULL;
    const char *end = b->data + b->len;
    for (;;) {
        while (end > b->data &&
               (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
            end--;
        const char *start = end;
        while (start > b->data && start[-1] != '\n')
            start--;
        if (start == end)
            return NULL;
        size_t n = (size_t)(end - start);
        if (n == strlen(close_failed) && memcmp(start, close_failed, n) == 0 &&
            start > b->data) {
            end = start;
            continue;
        }
        return xasprintf("%.*s", (int)n, start);
    }
}

/* Remember how the last `power status` went, for pre-flight. */
static void
set_status_err(struct ipmi *m, const char *detail)
{
    free(m->status_err);
    m->status_err = detail ? xstrdup(detail) : NULL;
}

static void ipmi_step(struct power *p, struct power_req *r, const char *out);
static void ipmi_pump(struct power *p);

static void
ipmi_on_exit(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct power *p = arg;
    struct ipmi *m = ipmi_of(p);
    struct power_req *r = p->head;
    int st = 0;
    pid_t w = waitpid(m->child, &st, WNOHANG);
    if (w == 0)
        return; /* spurious: not yet */
    m->child = 0;
    if (m->out >= 0)
        ipmi_drain(m->out, &m->cout);
    if (m->err >= 0)
        ipmi_drain(m->err, &m->cerr);
    char *what = cmd_text(m->cmd);
    bool was_status = m->cmd == cmd_status;
    bool was_clear = m->cmd == cmd_clear_valid;
    char *out = xstrdup(m->cout.data ? m->cout.data : "");
    char *why = last_line(&m->cerr);
    ipmi_reap(p);
    power_req_disarm(r);

    bool failed = w < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    if (failed && was_clear && w > 0 && WIFEXITED(st) &&
        WEXITSTATUS(st) != 127) {
        /* Not every BMC has parameter 3: set the device all the same. */
        log_debug("%s: ipmitool %s: %s", p->name, what, why ? why : "refused");
        failed = false;
    }
    if (failed) {
        char *detail;
        if (w > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127)
            detail = xasprintf("ipmi %s: %s: cannot run %s", m->where, what,
                               ipmitool_program());
        else
            detail = xasprintf("ipmi %s: %s: %s", m->where, what,
                               why ? why : "ipmitool failed");
        if (was_status)
            set_status_err(m, detail);
        power_req_complete(r, -EIO, detail);
    } else {
        set_status_err(m, NULL);
        if (why)
            log_debug("%s: ipmitool %s: %s", p->name, what, why);
        ipmi_step(p, r, out);
    }
    free(what);
    free(why);
    free(out);
    ipmi_pump(p);
}

/* Start ipmitool for cmd on behalf of r, the head of the queue. */
static void
ipmi_spawn(struct power *p, struct power_req *r, const char *const *cmd)
{
    struct ipmi *m = ipmi_of(p);
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    int e;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        e = errno;
        goto out_close_pipes;
    }
    const int fds[3] = {-1, out[1], err[1]};
    int pid = ipmitool_spawn(&m->bmc, cmd, fds, false, NULL);
    if (pid < 0) {
        e = -pid;
        goto out_close_pipes;
    }
    close(out[1]);
    close(err[1]);
    m->child = pid;
    m->cmd = cmd;
    m->out = out[0];
    m->err = err[0];
    m->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    char *what = cmd_text(cmd);
    if (m->pidfd < 0 || fd_set_nonblock(out[0]) < 0 ||
        fd_set_nonblock(err[0]) < 0 ||
        loop_add_fd(p->l, out[0], EPOLLIN, ipmi_on_pipe, p) < 0 ||
        loop_add_fd(p->l, err[0], EPOLLIN, ipmi_on_pipe, p) < 0 ||
        loop_add_fd(p->l, m->pidfd, EPOLLIN, ipmi_on_exit, p) < 0) {
        e = errno;
        ipmi_reap(p);
        power_req_complete(
            r, -e, xasprintf("ipmi %s: %s: %s", m->where, what, strerror(e)));
        free(what);
        return;
    }
    log_debug("%s: ipmitool %s (pid %d)", p->name, what, pid);
    free(what);
    power_req_arm(r, IPMI_TIMEOUT_MS);
    return;

out_close_pipes:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    power_req_complete(
        r, -e,
        xasprintf("ipmi %s: cannot start ipmitool: %s", m->where, strerror(e)));
}

/* --- ops as ipmitool commands ----------------------------------------- */

/* Run the next command of r's op, or complete r.  out is the stdout of
 * the previous command (NULL before the first). */
static void
ipmi_step(struct power *p, struct power_req *r, const char *out)
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
            power_req_complete(r, 0, xstrdup(st ? st : "unknown"));
            return;
        }
        break;
    case POWER_NMI:
        cmd = step == 0 ? cmd_diag : NULL;
        break;
    case POWER_NETBOOT_ONCE:
    case POWER_BOOT_DISK_ONCE: {
        bool pxe = r->op == POWER_NETBOOT_ONCE;
        if (step == 0) {
            cmd = cmd_clear_valid;
        } else if (step == 1) {
            cmd = pxe ? (p->u->boot_legacy ? cmd_pxe_legacy : cmd_pxe_efi)
                      : (p->u->boot_legacy ? cmd_disk_legacy : cmd_disk_efi);
        } else if (step == 2) {
            cmd = cmd_bootparam;
        } else {
            const char *want = pxe ? "pxe" : "disk";
            const char *got = power_ipmi_parse_bootdev(out);
            if (!got || strcmp(got, want) != 0) {
                power_req_complete(
                    r, -EIO,
                    xasprintf("ipmi %s: chassis bootdev %s: the BMC did not "
                              "keep it (boot parameter 5 reads %s)",
                              ipmi_of(p)->where, want, got ? got : "nothing"));
                return;
            }
        }
        break;
    }
    default:
        break;
    }
    if (step == 1 && r->op == POWER_RESET && !st) {
        power_req_complete(r, -EIO,
                           xasprintf("ipmi %s: power status: unexpected answer",
                                     ipmi_of(p)->where));
        return;
    }
    if (!cmd) {
        power_req_complete(r, 0, NULL);
        return;
    }
    if (r->op == POWER_RESET && (cmd == cmd_reset || cmd == cmd_on))
        power_req_sending(r); /* stored before ipmitool can reach the BMC */
    ipmi_spawn(p, r, cmd);
}

static void
ipmi_pump(struct power *p)
{
    while (p->head && ipmi_of(p)->child == 0 && p->head->step == 0 &&
           !p->closing)
        ipmi_step(p, p->head, NULL);
}

/* --- pre-flight ------------------------------------------------------- */

static void
probe_done(void *arg, int status, const char *detail)
{
    struct power *p = arg;
    if (status == -ECANCELED)
        return;
    ipmi_of(p)->probing = false;
    if (status < 0)
        log_warnx("%s: %s", p->name, detail ? detail : strerror(-status));
}

/* Ask the BMC for its power status, in the background. */
static void
ipmi_probe(struct power *p)
{
    struct ipmi *m = ipmi_of(p);
    if (m->probing || p->closing)
        return;
    m->probing = true;
    power_submit(p, POWER_STATUS, NULL, probe_done, p);
}

/* An RMCP presence ping (ASF, DMTF DSP0136) to the BMC's port: a pong
 * proves a BMC listens there, without a session. */
static const unsigned char rmcp_ping[] = {0x06, 0x00, 0xff, 0x06, 0x00, 0x00,
                                          0x11, 0xbe, 0x80, 0x5a, 0x00, 0x00};

/* RMCP class ASF, message type pong, our tag. */
static bool
is_pong(const unsigned char *in, ssize_t n)
{
    return n >= 12 && in[3] == 0x06 && in[8] == 0x40 && in[9] == 0x5a;
}

/* A UDP socket connected to the BMC (an address: no lookup; a name:
 * getaddrinfo, blocking); -1 with err written. */
static int
ping_socket(const struct power *p, int *e, char *err, size_t errlen)
{
    const char *where = ipmi_of(p)->where;
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(p->u->host, p->u->port, &hints, &ai);
    if (g == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        g = getaddrinfo(p->u->host, p->u->port, &hints, &ai);
    }
    if (g != 0) {
        seterr(err, errlen, "ipmi %s: %s", where, gai_strerror(g));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    *e = 0;
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        *e = errno;
    freeaddrinfo(ai);
    return fd;
}

/* The blocking ping of power_reachable: at most IPMI_PING_MS. */
static bool
ipmi_ping(const struct power *p, char *err, size_t errlen)
{
    const unsigned char *ping = rmcp_ping;
    const char *where = ipmi_of(p)->where;
    int e = 0;
    int fd = ping_socket(p, &e, err, errlen);
    if (fd < 0 && !e)
        return false;
    int64_t deadline = now_mono_ms() + IPMI_PING_MS;
    bool pong = false;
    /* Twice: one lost datagram is no verdict. */
    for (int tries = 0; !e && !pong && tries < 2; tries++) {
        if (send(fd, ping, sizeof(rmcp_ping), 0) < 0) {
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
            if (is_pong(in, n)) {
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
        seterr(err, errlen, "ipmi %s: BMC unreachable: %s", where, strerror(e));
    else
        seterr(err, errlen,
               "ipmi %s: BMC unreachable: no answer to an RMCP ping in %d ms",
               where, IPMI_PING_MS);
    return false;
}

/* --- the pre-flight on the loop -------------------------------------- */

static void
ping_stop(struct power *p)
{
    struct ipmi *m = ipmi_of(p);
    if (!m)
        return;
    resolve_cancel(m->resolving);
    m->resolving = NULL;
    loop_close_fd(p->l, &m->ping_fd);
    loop_del_timer(p->l, m->ping_timer);
    m->ping_timer = 0;
}

/* The ping's answer for every check still waiting: a pong is not enough
 * when ipmitool itself could not get in (credentials, cipher, a full
 * session table): that is refused, and looked at again. */
static void
ping_finish(struct power *p, int status, const char *err)
{
    struct ipmi *m = ipmi_of(p);
    ping_stop(p);
    char why[256] = "";
    if (status == 0 && m->status_err) {
        seterr(why, sizeof(why), "%s (checking again: retry in a few seconds)",
               m->status_err);
        status = -EACCES;
        err = why;
        ipmi_probe(p);
    }
    for (struct power_check *c = p->checks; c; c = c->next)
        if (!c->timer)
            power_check_done(c, status, err);
}

static void
ping_read(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    struct power *p = arg;
    unsigned char in[64];
    ssize_t n;
    while ((n = recv(fd, in, sizeof(in), MSG_DONTWAIT)) >= 0)
        if (is_pong(in, n)) {
            ping_finish(p, 0, NULL);
            return;
        }
    if (errno != EAGAIN && errno != EINTR) {
        char err[256];
        seterr(err, sizeof(err), "ipmi %s: BMC unreachable: %s",
               ipmi_of(p)->where, strerror(errno));
        ping_finish(p, -EHOSTUNREACH, err);
    }
}

/* Twice, half the time each: one lost datagram is no verdict. */
static int64_t
ping_tick(struct loop *l, void *arg)
{
    (void)l;
    struct power *p = arg;
    struct ipmi *m = ipmi_of(p);
    if (m->ping_tries < 2 &&
        send(m->ping_fd, rmcp_ping, sizeof(rmcp_ping), 0) >= 0) {
        m->ping_tries++;
        return IPMI_PING_MS / 2;
    }
    m->ping_timer = 0;
    char err[256];
    seterr(err, sizeof(err),
           "ipmi %s: BMC unreachable: no answer to an RMCP ping in %d ms",
           m->where, IPMI_PING_MS);
    ping_finish(p, -EHOSTUNREACH, err);
    return -1;
}

/* The BMC's address came: send the ping. */
static void
ping_resolved(void *arg, int rc, const struct addrinfo *ai, const char *rerr)
{
    struct power *p = arg;
    struct ipmi *m = ipmi_of(p);
    m->resolving = NULL;
    char err[256] = "";
    if (rc < 0) {
        seterr(err, sizeof(err), "ipmi %s: %s", m->where, rerr);
        ping_finish(p, -EHOSTUNREACH, err);
        return;
    }
    int fd =
        socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        seterr(err, sizeof(err), "ipmi %s: BMC unreachable: %s", m->where,
               strerror(errno));
        if (fd >= 0)
            close(fd);
        ping_finish(p, -EHOSTUNREACH, err);
        return;
    }
    if (loop_add_fd(p->l, fd, EPOLLIN, ping_read, p) < 0) {
        close(fd);
        ping_finish(p, -EIO, "cannot watch the ping socket");
        return;
    }
    m->ping_fd = fd;
    m->ping_tries = 0;
    m->ping_timer = loop_add_timer(p->l, 0, ping_tick, p);
}

static void
ipmi_preflight(struct power *p, struct power_check *c)
{
    (void)c; /* it waits on p->checks with the others */
    struct ipmi *m = ipmi_of(p);
    if (m->ping_fd >= 0 || m->resolving)
        return; /* a ping is out: its answer is everyone's */
    m->resolving = resolve_start(p->l, p->u->host, p->u->port, SOCK_DGRAM,
                                 ping_resolved, p);
}

static void
ipmi_stop(struct power *p)
{
    ping_stop(p);
    ipmi_reap(p);
}

/* --- ops -------------------------------------------------------------- */

static int
ipmi_init(struct power *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct ipmi *m = xcalloc(1, sizeof(*m));
    const struct uri_power *u = p->u;
    m->bmc = (struct ipmitool_bmc){.host = u->host,
                                   .port = u->port,
                                   .user = u->user,
                                   .pass = u->pass,
                                   .cipher = u->cipher};
    m->where = strchr(u->host, ':') ? xasprintf("[%s]:%s", u->host, u->port)
                                    : xasprintf("%s:%s", u->host, u->port);
    m->pidfd = m->out = m->err = m->ping_fd = -1;
    p->drv = m;
    /* Learn early whether ipmitool gets in: pre-flight reports it. */
    ipmi_probe(p);
    return 0;
}

/* Refuse what IPMI cannot do before running anything. */
static char *
ipmi_check(const struct power *p, const struct power_req *r, int *status)
{
    *status = -ENOTSUP;
    if (r->op == POWER_SYSRQ || r->op == POWER_SERIAL_BREAK)
        return xasprintf("ipmi %s: IPMI has no %s; send it on an ipmi-sol: "
                         "console (a SOL break)",
                         ipmi_of(p)->where, power_op_name(r->op));
    return NULL;
}

static void
ipmi_request(struct power *p, struct power_req *r)
{
    (void)r;
    ipmi_pump(p);
}

static char *
ipmi_timeout(struct power *p, struct power_req *r)
{
    struct ipmi *m = ipmi_of(p);
    char *what = cmd_text(m->cmd ? m->cmd : cmd_status);
    bool was_status = m->cmd == cmd_status;
    ipmi_reap(p);
    char *detail = xasprintf("ipmi %s: %s: no answer in %d ms", m->where, what,
                             r->deadline_ms);
    if (was_status)
        set_status_err(m, detail);
    free(what);
    return detail;
}

static bool
ipmi_reachable(struct power *p, char *err, size_t errlen)
{
    struct ipmi *m = ipmi_of(p);
    if (!ipmi_ping(p, err, errlen))
        return false;
    if (m->status_err) {
        /* It answers pings but not ipmitool: credentials, cipher, a
         * full session table.  Look again for the next attempt. */
        seterr(err, errlen, "%s (checking again: retry in a few seconds)",
               m->status_err);
        ipmi_probe(p);
        return false;
    }
    return true;
}

static void
ipmi_free(struct power *p)
{
    struct ipmi *m = ipmi_of(p);
    if (!m)
        return;
    buf_free(&m->cout);
    buf_free(&m->cerr);
    free(m->where);
    free(m->status_err);
    free(m);
    p->drv = NULL;
}

const struct power_ops power_ipmi_ops = {
    .name = "ipmi",
    .init = ipmi_init,
    .check = ipmi_check,
    .request = ipmi_request,
    .pump = ipmi_pump,
    .timeout = ipmi_timeout,
    .reachable = ipmi_reachable,
    .preflight = ipmi_preflight,
    .stop = ipmi_stop,
    .free = ipmi_free,
};
