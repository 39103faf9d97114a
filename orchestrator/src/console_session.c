#include "console_session.h"
#include "console.h"
#include "log.h"
#include "loop.h"
#include "recording.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 1000 /* idle writer and the read-only window's end */

enum menu { MENU_NONE, MENU_CMD, MENU_SYSRQ, MENU_NMI };

struct console_session {
    struct console_session *next, *prev; /* every session, all transports */
    struct loop *l;
    struct console_session_cbs cbs;
    void *cb_arg;
    struct console_session_io io;
    void *io_arg;
    struct console *con;
    struct console_viewer *v;
    char server[64], label[320], role[40], addr[64];
    bool ro;
    int writer_idle_s;
    int64_t last_input_ms;
    uint64_t tick;
    enum menu menu;
    bool told_ro; /* told "read-only": tell when it is lifted */
    bool closed;  /* close() asked: nothing more in or out */
    struct recording *rec;
    int told_role; /* last role() sent: -1 none, else writer | ro << 1 */
    char told_reason[256];
};

static struct console_session *sessions;

static void notice(struct console_session *cs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A line for this user only, in its stream. */
static void
notice(struct console_session *cs, const char *fmt, ...)
{
    if (!cs->v)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cs->io.notice) {
        if (!cs->closed)
            cs->io.notice(cs->io_arg, msg);
        return;
    }
    char *line = xasprintf("\r\n[rescued: %s]\r\n", msg);
    console_viewer_inject(cs->v, line, strlen(line));
    free(line);
    console_session_flush(cs);
}

static void
audit(struct console_session *cs, const char *action, const char *extra)
{
    if (!cs->cbs.audit)
        return;
    char *detail =
        xasprintf("%s addr=%s role=%s%s%s", cs->label, cs->addr,
                  console_session_is_writer(cs) ? "writer" : "watcher",
                  extra ? " " : "", extra ? extra : "");
    cs->cbs.audit(cs->cb_arg, cs->server, action, detail);
    free(detail);
}

static void
close_transport(struct console_session *cs)
{
    if (cs->closed)
        return;
    cs->closed = true;
    cs->menu = MENU_NONE;
    cs->io.close(cs->io_arg);
}

static bool
writable(struct console_session *cs, char *why, size_t whylen)
{
    return !cs->cbs.writable ||
           cs->cbs.writable(cs->cb_arg, cs->server, why, whylen);
}

/* Tell a transport that has role() where the user stands, if it changed. */
static void
report_role(struct console_session *cs)
{
    if (!cs->io.role || cs->closed || !cs->v)
        return;
    char why[256] = "";
    bool writer = console_session_is_writer(cs);
    bool ro = cs->ro || !writable(cs, why, sizeof(why));
    if (cs->ro)
        strlcpy_s(why, "watch-only session", sizeof(why));
    else if (ro && !why[0])
        strlcpy_s(why, "server is changing state", sizeof(why));
    int now = (writer ? 1 : 0) | (ro ? 2 : 0);
    if (now == cs->told_role && strcmp(why, cs->told_reason) == 0)
        return;
    cs->told_role = now;
    strlcpy_s(cs->told_reason, why, sizeof(cs->told_reason));
    cs->io.role(cs->io_arg, writer, ro, why);
}

static void
tell_read_only(struct console_session *cs, const char *why)
{
    notice(cs, "read-only: %s", why[0] ? why : "server is changing state");
    cs->told_ro = true;
}

/* May this session act on the console now?  Tells the user why not. */
static bool
may_write(struct console_session *cs)
{
    if (cs->ro) {
        notice(cs, "read-only session (.ro): input ignored");
        return false;
    }
    if (!console_session_is_writer(cs)) {
        notice(cs, "you are watching; Ctrl-] w takes the writer seat");
        return false;
    }
    char why[256] = "";
    if (!writable(cs, why, sizeof(why))) {
        tell_read_only(cs, why);
        return false;
    }
    return true;
}

static void
send_keys(struct console_session *cs, const char *data, size_t n)
{
    if (n == 0 || !may_write(cs))
        return;
    int r = console_write(cs->v, data, n);
    if (r == -ENOTCONN)
        notice(cs, "console source is away; input dropped");
    else if (r == -ENOBUFS)
        notice(cs, "console input queue full; input dropped");
}

static struct console_session *
session_of_viewer(struct console_viewer *v)
{
    for (struct console_session *cs = sessions; cs; cs = cs->next)
        if (cs->v == v)
            return cs;
    return NULL;
}

static void
take_seat(struct console_session *cs)
{
    struct console_viewer *old = console_take_writer(cs->con, cs->v);
    if (!old)
        return;
    struct console_session *o = session_of_viewer(old);
    if (o) {
        o->menu = MENU_NONE;
        notice(o, "%s@%s took the writer seat; you are now watching", cs->role,
               cs->addr);
        report_role(o);
    }
    audit(cs, "console_takeover", NULL);
}

static void
do_power(struct console_session *cs, enum console_power_op op, const char *key)
{
    static const char *const names[] = {"break", "SysRq", "NMI"};
    static const char *const actions[] = {"console_break", "console_sysrq",
                                          "console_nmi"};
    int r = -ENOTSUP;
    if (op == CONSOLE_POWER_BREAK || op == CONSOLE_POWER_SYSRQ) {
        /* A tty can send the break itself; SysRq is break then key. */
        r = console_send_break(cs->con);
        if (r == 0 && op == CONSOLE_POWER_SYSRQ)
            r = console_write(cs->v, key, 1);
    }
    if (r < 0 && cs->cbs.power)
        r = cs->cbs.power(cs->cb_arg, cs->server, op, key);
    char extra[32] = "";
    if (key)
        snprintf(extra, sizeof(extra), "key=%s", key);
    audit(cs, actions[op], key ? extra : NULL);
    if (r < 0)
        notice(cs, "%s failed: %s", names[op], strerror(-r));
    else if (key)
        notice(cs, "%s %s sent", names[op], key);
    else
        notice(cs, "%s sent", names[op]);
}

void
console_session_take_seat(struct console_session *cs)
{
    if (!cs->v || cs->closed)
        return;
    if (cs->ro) {
        notice(cs, "watch-only session cannot take the writer seat");
    } else if (!console_session_is_writer(cs)) {
        take_seat(cs);
        cs->last_input_ms = now_mono_ms();
        notice(cs, "you hold the writer seat");
    }
    report_role(cs);
}

void
console_session_break(struct console_session *cs)
{
    if (cs->v && !cs->closed && may_write(cs))
        do_power(cs, CONSOLE_POWER_BREAK, NULL);
}

void
console_session_sysrq(struct console_session *cs, char key)
{
    char k[2] = {key, '\0'};
    if (!cs->v || cs->closed)
        return;
    if ((unsigned char)key < 0x20 || key == 0x7f)
        notice(cs, "SysRq: not a key");
    else if (may_write(cs))
        do_power(cs, CONSOLE_POWER_SYSRQ, k);
}

void
console_session_nmi(struct console_session *cs)
{
    if (cs->v && !cs->closed && may_write(cs))
        do_power(cs, CONSOLE_POWER_NMI, NULL);
}

int
console_session_recording(const struct console_session *cs)
{
    return recording_n(cs->rec);
}

static const char help_text[] =
    "Ctrl-] then: b break, s KEY SysRq, n NMI, w take the writer seat, "
    ". disconnect, ? help; Ctrl-] Ctrl-] sends Ctrl-]";

static void
menu_key(struct console_session *cs, char c)
{
    enum menu m = cs->menu;
    cs->menu = MENU_NONE;
    if (m == MENU_SYSRQ) {
        char key[2] = {c, '\0'};
        if ((unsigned char)c < 0x20 || c == 0x7f)
            notice(cs, "SysRq cancelled");
        else if (may_write(cs))
            do_power(cs, CONSOLE_POWER_SYSRQ, key);
        return;
    }
    if (m == MENU_NMI) {
        if ((c == 'y' || c == 'Y') && may_write(cs))
            do_power(cs, CONSOLE_POWER_NMI, NULL);
        else if (c != 'y' && c != 'Y')
            notice(cs, "NMI cancelled");
        return;
    }
    switch (c) {
    case CONSOLE_SESSION_MENU_KEY:
        send_keys(cs, &c, 1);
        break;
    case 'b':
        if (may_write(cs))
            do_power(cs, CONSOLE_POWER_BREAK, NULL);
        break;
    case 's':
        if (may_write(cs)) {
            cs->menu = MENU_SYSRQ;
            notice(cs, "SysRq: press the key");
        }
        break;
    case 'n':
        if (may_write(cs)) {
            cs->menu = MENU_NMI;
            notice(cs, "send an NMI to %s? press y to confirm", cs->server);
        }
        break;
    case 'w':
        if (cs->ro) {
            notice(cs, "read-only session (.ro) cannot take the writer seat");
        } else if (console_session_is_writer(cs)) {
            notice(cs, "you hold the writer seat");
        } else {
            take_seat(cs);
            cs->last_input_ms = now_mono_ms();
            notice(cs, "you hold the writer seat");
            report_role(cs);
        }
        break;
    case '.':
        notice(cs, "disconnecting");
        close_transport(cs);
        break;
    case '?':
        notice(cs, "%s", help_text);
        break;
    default:
        notice(cs, "unknown menu key; Ctrl-] ? for help");
        break;
    }
}

void
console_session_input(struct console_session *cs, const void *data, size_t n)
{
    if (!cs->v || cs->closed)
        return;
    const char *p = data;
    size_t run = 0; /* start of plain bytes not yet sent */
    for (size_t i = 0; i < n && !cs->closed; i++) {
        if (cs->menu != MENU_NONE) {
            menu_key(cs, p[i]);
            run = i + 1;
        } else if (p[i] == CONSOLE_SESSION_MENU_KEY) {
            send_keys(cs, p + run, i - run);
            cs->menu = MENU_CMD;
            run = i + 1;
        }
    }
    if (!cs->closed && run < n)
        send_keys(cs, p + run, n - run);
    if (!cs->ro && console_session_is_writer(cs))
        cs->last_input_ms = now_mono_ms();
}

void
console_session_flush(struct console_session *cs)
{
    if (cs->closed || !cs->v)
        return;
    const char *data;
    size_t n;
    while ((n = console_viewer_peek(cs->v, &data)) > 0) {
        ssize_t w = cs->io.write(cs->io_arg, data, n);
        if (w < 0) {
            close_transport(cs);
            return;
        }
        if (w == 0)
            break;
        recording_write(cs->rec, data, (size_t)w);
        console_viewer_consume(cs->v, (size_t)w);
    }
    if (cs->io.flushed)
        cs->io.flushed(cs->io_arg);
}

void
console_session_writable_changed(struct console_session *cs)
{
    char why[256] = "";
    report_role(cs);
    if (!cs->v || cs->closed || !cs->told_ro || !writable(cs, why, sizeof(why)))
        return;
    cs->told_ro = false;
    notice(cs, "console writable again");
}

const char *
console_session_server(const struct console_session *cs)
{
    return cs->server;
}

bool
console_session_is_writer(const struct console_session *cs)
{
    return !cs->ro && cs->con && cs->v && console_writer(cs->con) == cs->v;
}

/* --- the console's side ------------------------------------------------- */

static void
viewer_output(struct console_viewer *v, void *arg)
{
    (void)v;
    console_session_flush(arg);
}

static void
viewer_closed(struct console_viewer *v, void *arg)
{
    (void)v;
    struct console_session *cs = arg;
    cs->v = NULL;
    cs->con = NULL;
    close_transport(cs);
}

static const struct console_viewer_cbs viewer_cbs = {
    .output = viewer_output,
    .closed = viewer_closed,
};

static int64_t
tick_cb(struct loop *l, void *arg)
{
    (void)l;
    struct console_session *cs = arg;
    if (!cs->v || cs->closed)
        return TICK_MS;
    if (cs->writer_idle_s > 0 && console_session_is_writer(cs) &&
        now_mono_ms() - cs->last_input_ms > (int64_t)cs->writer_idle_s * 1000) {
        console_take_writer(cs->con, NULL);
        audit(cs, "console_idle", NULL);
        notice(cs,
               "writer seat released after %d s without input; "
               "Ctrl-] w takes it",
               cs->writer_idle_s);
    }
    recording_flush(cs->rec);
    /* The grace after start-up has no transition to end it: a session
     * told "read-only" hears when writing is allowed. */
    console_session_writable_changed(cs);
    return TICK_MS;
}

/* --- life --------------------------------------------------------------- */

struct console_session *
console_session_new(struct loop *l, const struct console_session_config *cfg,
                    const struct console_session_cbs *cbs, void *cb_arg,
                    const struct console_session_io *io, void *io_arg)
{
    struct console *con =
        cbs->find_console ? cbs->find_console(cb_arg, cfg->server) : NULL;
    if (!con)
        return NULL;
    struct console_session *cs = xcalloc(1, sizeof(*cs));
    cs->l = l;
    cs->cbs = *cbs;
    cs->cb_arg = cb_arg;
    cs->io = *io;
    cs->io_arg = io_arg;
    cs->con = con;
    strlcpy_s(cs->server, cfg->server, sizeof(cs->server));
    strlcpy_s(cs->label,
              cfg->who && cfg->who->label ? cfg->who->label : "user=-",
              sizeof(cs->label));
    strlcpy_s(cs->role, cfg->role ? cfg->role : "user", sizeof(cs->role));
    strlcpy_s(cs->addr, cfg->addr ? cfg->addr : "-", sizeof(cs->addr));
    cs->ro = cfg->ro;
    cs->writer_idle_s = cfg->writer_idle_s;
    cs->next = sessions;
    if (sessions)
        sessions->prev = cs;
    sessions = cs;

    cs->told_role = -1;
    cs->v = console_attach(con, cfg->replay, &viewer_cbs, cs);
    cs->last_input_ms = now_mono_ms();
    if (!cs->ro)
        take_seat(cs);
    char extra[32] = "";
    if (cfg->record_dir) {
        char err[256];
        struct recording_meta m = {
            .server = cs->server,
            .who = cs->role,
            .role = console_session_is_writer(cs) ? "writer" : "watcher",
            .transport = cfg->transport ? cfg->transport : "-",
            .keep_days = cfg->record_days};
        cs->rec = recording_open(cfg->record_dir, &m, err, sizeof(err));
        if (cs->rec)
            snprintf(extra, sizeof(extra), "recording=%d",
                     recording_n(cs->rec));
        else
            log_warnx("console %s: not recorded: %s", cs->server, err);
    }
    audit(cs, "console_attach", extra[0] ? extra : NULL);
    report_role(cs);
    notice(cs, "%s as %s; Ctrl-] ? for help", cs->server,
           cs->ro ? "watcher (read-only)" : "writer");
    char why[256] = "";
    if (!cs->ro && !writable(cs, why, sizeof(why)))
        tell_read_only(cs, why);
    console_session_flush(cs);
    cs->tick = loop_add_timer(l, TICK_MS, tick_cb, cs);
    return cs;
}

void
console_session_free(struct console_session *cs)
{
    if (!cs)
        return;
    if (cs->v) {
        audit(cs, "console_detach", NULL);
        console_detach(cs->v);
    }
    loop_del_timer(cs->l, cs->tick);
    recording_close(cs->rec);
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        sessions = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    free(cs);
}
