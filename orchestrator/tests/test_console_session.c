/* test_console_session: the console user's rules with bytes in and bytes
 * out, no SSH: a console on a unix-socket source the test serves itself,
 * sessions whose transport is a buffer, the daemon's answers as test
 * callbacks; and fleet's side of authorization, for a key and a token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "console.h"
#include "console_session.h"
#include "fleet.h"
#include "log.h"
#include "loop.h"
#include "recording.h"
#include "sshkey.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include "consolehelp.h"
#include "fleetenv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One user's transport: what it was sent, and how much more it takes. */
struct user {
    struct console_session *cs;
    struct buf got;
    size_t room; /* bytes write() still takes; SIZE_MAX: all */
    int err;     /* write() fails with -err when set */
    int closes, flushes;
};

struct fx {
    struct fake_daemon dm; /* dir, loop, console, serial port; cb_arg */
    struct user u[3];
};

/* --- the transport's side ------------------------------------------------- */

static ssize_t
u_write(void *arg, const void *data, size_t n)
{
    struct user *u = arg;
    if (u->err)
        return -u->err;
    if (n > u->room)
        n = u->room;
    buf_append(&u->got, data, n);
    if (u->room != SIZE_MAX)
        u->room -= n;
    return (ssize_t)n;
}

static void
u_flushed(void *arg)
{
    struct user *u = arg;
    u->flushes++;
}

static void
u_close(void *arg)
{
    struct user *u = arg;
    u->closes++;
}

static const struct console_session_io test_io = {
    .write = u_write,
    .flushed = u_flushed,
    .close = u_close,
};

/* The WebSocket's kind of transport: notices and roles as their own
 * messages, appended to got as "<notice ...>" and "<role ...>". */
static void
u_notice(void *arg, const char *text)
{
    struct user *u = arg;
    buf_printf(&u->got, "<notice %s>", text);
}

static void
u_role(void *arg, bool writer, bool ro, const char *reason)
{
    struct user *u = arg;
    buf_printf(&u->got, "<role %s ro=%d %s>", writer ? "writer" : "watcher", ro,
               reason);
}

static const struct console_session_io ws_io = {
    .write = u_write,
    .close = u_close,
    .notice = u_notice,
    .role = u_role,
};

/* --- plumbing ---------------------------------------------------------------
 */

static void
source_turn(void *arg)
{
    struct fx *f = arg;
    tu_source_pump(f->dm.src, f->dm.l);
}

/* Pump until needle shows in *b, or 5 s. */
static bool
pump_for(struct fx *f, const struct buf *b, const char *needle)
{
    return tu_until_text(5000, b, needle, source_turn, f);
}

/* Connected, and its connection taken. */
static bool
source_taken(void *arg)
{
    struct fx *f = arg;
    return f->dm.src->fd >= 0 && console_connected(f->dm.c);
}

static bool
saw(const struct buf *b, const char *needle)
{
    return b->data && strstr(b->data, needle);
}

static void
type(struct user *u, const char *s)
{
    console_session_input(u->cs, s, strlen(s));
}

/* User i attaches to srv1 from 10.0.0.i:i. */
static struct user *
attach(struct fx *f, int i, bool ro, int writer_idle_s)
{
    struct user *u = &f->u[i];
    u->room = SIZE_MAX;
    char addr[32], label[32];
    snprintf(addr, sizeof(addr), "10.0.0.%d:%d", i, i);
    snprintf(label, sizeof(label), "user=u%d fp=SHA256:k%d", i, i);
    struct console_who who = {
        .kind = CONSOLE_WHO_SSH_KEY, .fingerprint = "SHA256:k", .label = label};
    struct console_session_config cfg = {.server = "srv1",
                                         .who = &who,
                                         .role = "project:acme",
                                         .addr = addr,
                                         .ro = ro,
                                         .replay = 2,
                                         .writer_idle_s = writer_idle_s};
    u->cs = console_session_new(f->dm.l, &cfg, &fake_cbs, &f->dm, &test_io, u);
    assert_non_null(u->cs);
    return u;
}

static int
setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    fake_daemon_init(&f->dm);
    tu_until(2000, source_taken, f, source_turn, f);
    assert_true(f->dm.src->fd >= 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < sizeof(f->u) / sizeof(f->u[0]); i++) {
        console_session_free(f->u[i].cs);
        buf_free(&f->u[i].got);
    }
    fake_daemon_free(&f->dm);
    free(f);
    return 0;
}

/* --- tests ------------------------------------------------------------------
 */

static void
test_attach_replay_and_audit(void **state)
{
    struct fx *f = *state;
    assert_int_equal(write(f->dm.src->fd, "one\r\ntwo\r\nthree\r\n", 17), 17);
    tu_until(50, NULL, NULL, source_turn, f);
    struct user *w = attach(f, 0, false, 0);
    struct user *r = attach(f, 1, true, 0);
    /* Replay first, then where the user stands. */
    assert_string_equal(w->got.data,
                        "two\r\nthree\r\n"
                        "\r\n[rescued: srv1 as writer; Ctrl-] ? for help]\r\n");
    assert_true(saw(&r->got, "[rescued: srv1 as watcher (read-only); "));
    assert_true(w->flushes > 0);
    assert_true(console_session_is_writer(w->cs));
    assert_false(console_session_is_writer(r->cs));
    assert_string_equal(console_session_server(w->cs), "srv1");
    assert_true(saw(&f->dm.audit, "srv1 console_attach user=u0 fp=SHA256:k0 "
                                  "addr=10.0.0.0:0 role=writer\n"));
    assert_true(saw(&f->dm.audit, "srv1 console_attach user=u1 fp=SHA256:k1 "
                                  "addr=10.0.0.1:1 role=watcher\n"));
    assert_int_equal(console_viewer_count(f->dm.c), 2);

    /* Live output reaches both; the transport's writes are the stream. */
    assert_int_equal(write(f->dm.src->fd, "live\r\n", 6), 6);
    assert_true(pump_for(f, &w->got, "]\r\nlive\r\n"));
    assert_true(pump_for(f, &r->got, "]\r\nlive\r\n"));

    console_session_free(r->cs);
    r->cs = NULL;
    assert_true(saw(&f->dm.audit, "srv1 console_detach user=u1"));
    assert_int_equal(console_viewer_count(f->dm.c), 1);
}

static void
test_typing_and_menu_keys(void **state)
{
    struct fx *f = *state;
    struct user *w = attach(f, 0, false, 0);
    type(w, "echo hi\n");
    assert_true(pump_for(f, &f->dm.src->got, "echo hi\n"));

    /* Ctrl-] twice sends one; the bytes around it go as typed. */
    buf_reset(&f->dm.src->got);
    type(w, "a\x1d\x1d"
            "b");
    assert_true(pump_for(f, &f->dm.src->got,
                         "a\x1d"
                         "b"));
    assert_int_equal(f->dm.src->got.len, 3);

    /* The menu key may arrive alone: the next input finishes it. */
    buf_reset(&w->got);
    type(w, "\x1d");
    type(w, "?");
    assert_true(saw(&w->got, "[rescued: Ctrl-] then: b break, s KEY SysRq, "
                             "n NMI, w take the writer seat, . disconnect"));
    type(w, "\x1dz");
    assert_true(saw(&w->got, "unknown menu key; Ctrl-] ? for help"));
    type(w, "\x1dw");
    assert_true(saw(&w->got, "you hold the writer seat"));

    /* Ctrl-] . closes the transport once; what follows is ignored. */
    buf_reset(&f->dm.src->got);
    type(w, "\x1d.after");
    assert_true(saw(&w->got, "[rescued: disconnecting]"));
    assert_int_equal(w->closes, 1);
    type(w, "more");
    tu_until(100, NULL, NULL, source_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);
    assert_int_equal(w->closes, 1);
}

static void
test_takeover(void **state)
{
    struct fx *f = *state;
    struct user *a = attach(f, 0, false, 0);
    struct user *b = attach(f, 1, false, 0);
    assert_true(saw(&a->got, "[rescued: project:acme@10.0.0.1:1 took the "
                             "writer seat; you are now watching]"));
    assert_true(saw(&f->dm.audit, "srv1 console_takeover user=u1 fp=SHA256:k1 "
                                  "addr=10.0.0.1:1 role=writer\n"));
    assert_false(console_session_is_writer(a->cs));
    assert_true(console_session_is_writer(b->cs));

    /* The former writer is read-only now, and told so when it types. */
    buf_reset(&a->got);
    type(a, "x");
    assert_true(saw(&a->got, "you are watching; Ctrl-] w takes the writer"));
    type(a, "\x1d"
            "b");
    assert_int_equal(f->dm.power_calls, 0);
    type(b, "y");
    assert_true(pump_for(f, &f->dm.src->got, "y"));
    assert_null(strchr(f->dm.src->got.data, 'x'));

    /* Ctrl-] w takes it back; a menu half-typed by the loser is dropped. */
    type(b, "\x1dn");
    assert_true(saw(&b->got, "press y to confirm"));
    type(a, "\x1dw");
    assert_true(saw(&b->got, "[rescued: project:acme@10.0.0.0:0 took the "
                             "writer seat; you are now watching]"));
    assert_true(console_session_is_writer(a->cs));
    buf_reset(&f->dm.src->got);
    type(b, "y");
    assert_int_equal(f->dm.power_calls, 0);
    assert_true(saw(&b->got, "you are watching"));
    type(a, "z");
    assert_true(pump_for(f, &f->dm.src->got, "z"));
    assert_int_equal(f->dm.src->got.len, 1);
}

static void
test_ro_session(void **state)
{
    struct fx *f = *state;
    struct user *r = attach(f, 0, true, 0);
    assert_null(console_writer(f->dm.c));
    type(r, "rm -rf /\n");
    assert_true(saw(&r->got, "read-only session (.ro): input ignored"));
    type(r, "\x1dw");
    assert_true(saw(&r->got, "read-only session (.ro) cannot take the writer"));
    type(r, "\x1dsh");
    tu_until(100, NULL, NULL, source_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);
    assert_int_equal(f->dm.power_calls, 0);
    assert_null(console_writer(f->dm.c));
}

static void
test_read_only_window(void **state)
{
    struct fx *f = *state;
    f->dm.writable = false;
    struct user *w = attach(f, 0, false, 0);
    assert_true(saw(&w->got, "[rescued: read-only: srv1 is rebooting]"));
    buf_reset(&w->got);
    type(w, "a");
    assert_true(saw(&w->got, "[rescued: read-only: srv1 is rebooting]"));
    type(w, "\x1dn");
    assert_false(saw(&w->got, "press y"));
    tu_until(100, NULL, NULL, source_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);

    /* Still closed: a change call says nothing. */
    buf_reset(&w->got);
    console_session_writable_changed(w->cs);
    assert_int_equal(w->got.len, 0);
    f->dm.writable = true;
    console_session_writable_changed(w->cs);
    assert_string_equal(w->got.data,
                        "\r\n[rescued: console writable again]\r\n");
    /* Told once. */
    console_session_writable_changed(w->cs);
    assert_string_equal(w->got.data,
                        "\r\n[rescued: console writable again]\r\n");
    type(w, "b");
    assert_true(pump_for(f, &f->dm.src->got, "b"));
    assert_int_equal(f->dm.src->got.len, 1);
}

static void
test_read_only_window_ends_by_tick(void **state)
{
    struct fx *f = *state;
    f->dm.writable = false;
    struct user *w = attach(f, 0, false, 0);
    assert_true(saw(&w->got, "read-only: srv1 is rebooting"));
    f->dm.writable = true;
    assert_true(pump_for(f, &w->got, "[rescued: console writable again]"));
}

static void
test_break_sysrq_nmi(void **state)
{
    struct fx *f = *state;
    struct user *w = attach(f, 0, false, 0);
    /* A unix: source cannot break: the power callback does. */
    type(w, "\x1d"
            "b");
    assert_true(saw(&w->got, "[rescued: break sent]"));
    assert_int_equal(f->dm.power_calls, 1);
    assert_int_equal(f->dm.power_op, CONSOLE_POWER_BREAK);
    type(w, "\x1dsh");
    assert_true(saw(&w->got, "[rescued: SysRq h sent]"));
    assert_int_equal(f->dm.power_op, CONSOLE_POWER_SYSRQ);
    assert_string_equal(f->dm.power_key, "h");
    type(w, "\x1ds\r");
    assert_true(saw(&w->got, "SysRq cancelled"));
    assert_int_equal(f->dm.power_calls, 2);
    type(w, "\x1dn");
    assert_true(saw(&w->got, "send an NMI to srv1? press y to confirm"));
    type(w, "q");
    assert_true(saw(&w->got, "NMI cancelled"));
    assert_int_equal(f->dm.power_calls, 2);
    type(w, "\x1dny");
    assert_true(saw(&w->got, "[rescued: NMI sent]"));
    assert_int_equal(f->dm.power_calls, 3);
    assert_int_equal(f->dm.power_op, CONSOLE_POWER_NMI);
    assert_true(saw(&f->dm.audit, "srv1 console_break user=u0 fp=SHA256:k0 "
                                  "addr=10.0.0.0:0 role=writer\n"));
    assert_true(saw(&f->dm.audit, "srv1 console_sysrq user=u0 fp=SHA256:k0 "
                                  "addr=10.0.0.0:0 role=writer key=h\n"));
    assert_true(saw(&f->dm.audit, "srv1 console_nmi user=u0 fp=SHA256:k0 "
                                  "addr=10.0.0.0:0 role=writer\n"));
    /* None of the menu keys reached the console. */
    tu_until(100, NULL, NULL, source_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);
}

static void
test_full_transport_keeps_order(void **state)
{
    struct fx *f = *state;
    struct user *w = attach(f, 0, true, 0);
    buf_reset(&w->got);
    w->room = 4;
    assert_int_equal(write(f->dm.src->fd, "0123456789\r\n", 12), 12);
    tu_until(100, NULL, NULL, source_turn, f);
    assert_string_equal(w->got.data, "0123");
    /* Room again: the transport asks for the rest. */
    w->room = SIZE_MAX;
    console_session_flush(w->cs);
    assert_string_equal(w->got.data, "0123456789\r\n");

    /* A broken transport is closed, once. */
    w->err = EPIPE;
    assert_int_equal(write(f->dm.src->fd, "x", 1), 1);
    tu_until(100, NULL, NULL, source_turn, f);
    assert_int_equal(w->closes, 1);
    console_session_flush(w->cs);
    assert_int_equal(w->closes, 1);
}

/* A read-only user who types into a zero window: each key's notice is
 * queued for it, and the queue holds no more than its bound (before, it
 * grew by a notice per key until the daemon aborted). */
static void
test_notices_bounded(void **state)
{
    struct fx *f = *state;
    struct user *r = attach(f, 0, true, 0);
    buf_reset(&r->got);
    r->room = 0;
    for (int i = 0; i < 20000; i++)
        type(r, "x");
    r->room = SIZE_MAX;
    console_session_flush(r->cs);
    /* the queue, then the "[N bytes dropped]" line that follows it */
    if (r->got.len > CONSOLE_VIEWER_QUEUE + 64)
        fail_msg("%zu bytes queued for one viewer (the bound is %d)",
                 r->got.len, CONSOLE_VIEWER_QUEUE);
    assert_true(saw(&r->got, "read-only session (.ro): input ignored"));
    /* The stream goes on: source bytes still arrive. */
    buf_reset(&r->got);
    assert_int_equal(write(f->dm.src->fd, "after\r\n", 7), 7);
    assert_true(pump_for(f, &r->got, "after\r\n"));
}

static void
test_idle_writer(void **state)
{
    struct fx *f = *state;
    struct user *w = attach(f, 0, false, 1);
    assert_true(console_session_is_writer(w->cs));
    assert_true(pump_for(f, &w->got,
                         "[rescued: writer seat released after 1 s "
                         "without input; Ctrl-] w takes it]"));
    assert_null(console_writer(f->dm.c));
    assert_true(saw(&f->dm.audit, "srv1 console_idle user=u0"));
    type(w, "z");
    assert_true(saw(&w->got, "you are watching"));
    type(w, "\x1dw");
    assert_true(console_session_is_writer(w->cs));
    tu_until(100, NULL, NULL, source_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);
}

static void
test_console_gone(void **state)
{
    struct fx *f = *state;
    struct user *w = attach(f, 0, false, 0);
    console_free(f->dm.c);
    f->dm.c = NULL;
    assert_int_equal(w->closes, 1);
    type(w, "ignored");
    console_session_flush(w->cs);
    console_session_free(w->cs);
    w->cs = NULL;
    /* The console went first: no detach line for a viewer it dropped. */
    assert_false(saw(&f->dm.audit, "console_detach"));
}

static void
test_no_console(void **state)
{
    struct fx *f = *state;
    struct console_who who = {.kind = CONSOLE_WHO_SSH_KEY, .label = "user=x"};
    struct console_session_config cfg = {.server = "nosuch", .who = &who};
    assert_null(console_session_new(f->dm.l, &cfg, &fake_cbs, &f->dm, &test_io,
                                    &f->u[0]));
    assert_null(f->dm.audit.data);
}

/* fleet_console_authorize: a key by the keys files, a token by its role. */
/* User i attaches as the WebSocket console does, recorded in dir. */
static struct user *
attach_ws(struct fx *f, int i, bool ro, const char *dir)
{
    struct user *u = &f->u[i];
    u->room = SIZE_MAX;
    struct console_who who = {.kind = CONSOLE_WHO_TOKEN,
                              .project = "acme",
                              .label = "user=project:acme via=ws"};
    char addr[32];
    snprintf(addr, sizeof(addr), "10.0.1.%d", i);
    struct console_session_config cfg = {.server = "srv1",
                                         .who = &who,
                                         .role = "project:acme",
                                         .addr = addr,
                                         .ro = ro,
                                         .replay = 2,
                                         .record_dir = dir,
                                         .transport = "ws"};
    u->cs = console_session_new(f->dm.l, &cfg, &fake_cbs, &f->dm, &ws_io, u);
    assert_non_null(u->cs);
    return u;
}

/* The WebSocket side: role and notices as messages (not in the bytes),
 * take_seat/break/sysrq/nmi without the menu under the same rules, the
 * read-only window in the role, and the session recorded as asciicast
 * with the attach's audit naming it. */
static void
test_ws_transport(void **state)
{
    struct fx *f = *state;
    char *rec = xasprintf("%s/rec", f->dm.dir);
    struct user *a = attach_ws(f, 0, false, rec);
    assert_true(saw(&a->got, "<role writer ro=0 >"));
    assert_true(saw(&a->got, "<notice srv1 as writer; Ctrl-] ? for help>"));
    assert_false(saw(&a->got, "[rescued:"));
    assert_int_equal(console_session_recording(a->cs), 1);
    assert_true(saw(&f->dm.audit, "srv1 console_attach user=project:acme "
                                  "via=ws addr=10.0.1.0 role=writer "
                                  "recording=1\n"));
    struct user *w = attach_ws(f, 1, true, rec);
    assert_true(saw(&w->got, "<role watcher ro=1 watch-only session>"));
    console_session_take_seat(w->cs);
    assert_true(saw(&w->got, "<notice watch-only session cannot take the "
                             "writer seat>"));
    console_session_sysrq(w->cs, 'h');
    assert_int_equal(f->dm.power_calls, 0);

    struct user *b = attach_ws(f, 2, false, rec);
    assert_true(saw(&a->got, "took the writer seat; you are now watching>"));
    assert_true(saw(&a->got, "<role watcher ro=0 >"));
    console_session_break(a->cs); /* a watcher may not */
    assert_int_equal(f->dm.power_calls, 0);
    console_session_take_seat(a->cs);
    assert_true(saw(&a->got, "<role writer ro=0 >"));
    assert_true(saw(&b->got, "<role watcher ro=0 >"));
    assert_true(saw(&f->dm.audit, "console_takeover user=project:acme via=ws "
                                  "addr=10.0.1.0 role=writer"));
    for (const char *k = "RE"; *k; k++)
        console_session_sysrq(a->cs, *k);
    console_session_nmi(a->cs);
    assert_int_equal(f->dm.power_calls, 3);
    assert_true(saw(&f->dm.audit, "console_sysrq user=project:acme via=ws "
                                  "addr=10.0.1.0 role=writer key=E\n"));
    assert_true(saw(&f->dm.audit, "console_nmi user=project:acme via=ws "));

    /* The read-only window shows in the role, with the reason. */
    buf_reset(&a->got);
    f->dm.writable = false;
    console_session_writable_changed(a->cs);
    assert_true(saw(&a->got, "<role writer ro=1 srv1 is rebooting>"));
    f->dm.writable = true;
    console_session_writable_changed(a->cs);
    assert_true(saw(&a->got, "<role writer ro=0 >"));

    /* What a saw is in its recording, as asciicast v2. */
    assert_int_equal(write(f->dm.src->fd, "caf\xc3", 4), 4);
    assert_true(pump_for(f, &a->got, "caf"));
    assert_int_equal(write(f->dm.src->fd, "\xa9 \"ok\"\r\n", 8), 8);
    assert_true(pump_for(f, &a->got, "ok\"\r\n"));
    console_session_free(a->cs);
    a->cs = NULL;
    char *cast = xasprintf("%s/srv1/1.cast", rec), *text = NULL;
    size_t len = 0;
    assert_int_equal(read_file(cast, &text, &len), 0);
    assert_non_null(strstr(text, "{\"version\":2,\"width\":80,"));
    /* the cut UTF-8 sequence joined again, quotes escaped */
    assert_non_null(strstr(text, "\"o\", \"caf\"]\n"));
    assert_non_null(strstr(text, "\"o\", \"\xc3\xa9 \\\"ok\\\"\\r\\n\"]"));
    free(text);
    free(cast);
    json_t *list = NULL;
    assert_int_equal(recording_list(rec, "srv1", &list), 0);
    json_t *r1 = json_array_get(json_object_get(list, "recordings"), 0);
    assert_int_equal(json_array_size(json_object_get(list, "recordings")), 3);
    assert_string_equal(json_string_value(json_object_get(r1, "transport")),
                        "ws");
    assert_string_equal(json_string_value(json_object_get(r1, "role")),
                        "writer");
    assert_string_equal(json_string_value(json_object_get(r1, "who")),
                        "project:acme");
    assert_true(json_is_string(json_object_get(r1, "ended_at")));
    assert_int_equal(json_integer_value(json_object_get(r1, "bytes")), 12);
    json_t *r2 = json_array_get(json_object_get(list, "recordings"), 1);
    assert_true(json_is_null(json_object_get(r2, "ended_at")));
    json_decref(list);
    free(rec);
}

static void
test_fleet_authorize_who(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_WARN);
    struct env *e = env_dir_new("x");
    const char *dir = e->dir;
    char *cmd = xasprintf("ssh-keygen -q -t ed25519 -N '' -f %s/admin && "
                          "ssh-keygen -q -t ed25519 -N '' -f %s/acme && "
                          "ssh-keygen -q -t ed25519 -N '' -f %s/stranger",
                          dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char fp[3][SSHKEY_FP_LEN];
    const char *names[] = {"admin", "acme", "stranger"};
    for (int i = 0; i < 3; i++) {
        char *path = xasprintf("%s/%s.pub", dir, names[i]), *line = NULL;
        size_t n;
        assert_int_equal(read_file(path, &line, &n), 0);
        line[strcspn(line, "\n")] = '\0';
        assert_int_equal(sshkey_fingerprint(line, fp[i], sizeof(fp[i])), 0);
        free(line);
        free(path);
    }
    char *rescued = xasprintf("admin_keys_file = %s/admin.pub\n", dir);
    char *sections = xasprintf("[project:acme]\n"
                               "token = acmetok-0123456789\n"
                               "keys_file = %s/acme.pub\n"
                               "[project:other]\n"
                               "token = othertok-0123456789\n"
                               "[server:srv1]\n"
                               "mac = 52:54:00:00:00:01\n"
                               "project = acme\n"
                               "power = manual:\n",
                               dir);
    env_start(e, rescued, sections);
    free(rescued);
    free(sections);
    struct fleet *fl = e->fleet;

    char role[40];
    struct console_who key = {.kind = CONSOLE_WHO_SSH_KEY};
    key.fingerprint = fp[0];
    assert_true(fleet_console_authorize(fl, "srv1", &key, role, sizeof(role)));
    assert_string_equal(role, "admin");
    key.fingerprint = fp[1];
    assert_true(fleet_console_authorize(fl, "srv1", &key, role, sizeof(role)));
    assert_string_equal(role, "project:acme");
    key.fingerprint = fp[2];
    assert_false(fleet_console_authorize(fl, "srv1", &key, role, sizeof(role)));
    key.fingerprint = "";
    assert_false(fleet_console_authorize(fl, "srv1", &key, role, sizeof(role)));
    key.fingerprint = fp[0];
    assert_false(
        fleet_console_authorize(fl, "nosuch", &key, role, sizeof(role)));

    struct console_who tok = {.kind = CONSOLE_WHO_TOKEN, .admin = true};
    assert_true(fleet_console_authorize(fl, "srv1", &tok, role, sizeof(role)));
    assert_string_equal(role, "admin");
    tok = (struct console_who){.kind = CONSOLE_WHO_TOKEN, .project = "acme"};
    assert_true(fleet_console_authorize(fl, "srv1", &tok, role, sizeof(role)));
    assert_string_equal(role, "project:acme");
    tok.project = "other";
    assert_false(fleet_console_authorize(fl, "srv1", &tok, role, sizeof(role)));
    tok.project = NULL;
    assert_false(fleet_console_authorize(fl, "srv1", &tok, role, sizeof(role)));
    tok.project = "acme";
    assert_false(
        fleet_console_authorize(fl, "nosuch", &tok, role, sizeof(role)));

    env_free(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_replay_and_audit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_typing_and_menu_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ro_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_window_ends_by_tick,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_break_sysrq_nmi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_transport_keeps_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notices_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_console, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_transport, setup, teardown),
        cmocka_unit_test(test_fleet_authorize_who),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
