/* test_console: a console against a unix-socket source the test serves
 * itself, pumped through the real event loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "console.h"
#include "loop.h"
#include "testutil.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

struct fixture {
    char *dir;
    char sock[128];
    char logdir[128];
    struct tu_source *src; /* the serial port's side */
    struct loop *l;
    struct console *c;
};

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    f->dir = tu_tmpdir_new("test_console");
    assert_non_null(f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/serial.sock", f->dir);
    snprintf(f->logdir, sizeof(f->logdir), "%s/console", f->dir);
    f->src = tu_source_new(f->sock);
    assert_non_null(f->src);
    f->l = loop_new();
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    console_free(f->c);
    loop_free(f->l);
    tu_source_free(f->src);
    assert_int_equal(tu_tmpdir_free(f->dir), 0);
    free(f);
    return 0;
}

static bool
is_connected(void *arg)
{
    return console_connected(arg);
}

static void
start(struct fixture *f)
{
    char err[256] = "";
    char *uri = xasprintf("unix:%s", f->sock);
    f->c = console_new(f->l, "srv1", uri, f->logdir, 4096, err, sizeof(err));
    free(uri);
    assert_non_null(f->c);
    console_set_backoff_ms(f->c, 100, 400);
    assert_true(tu_pump_until(f->l, 2000, is_connected, f->c));
    assert_true(tu_source_accept(f->src));
}

/* Write all of data to the source side while pumping the loop. */
static void
source_send(struct fixture *f, const char *data, size_t n)
{
    assert_int_equal(tu_source_write(f->src, f->l, data, n, 5000), n);
    /* Let the console read what is left in the socket. */
    tu_pump_turns(f->l, 20, 5);
}

struct sink {
    struct console_viewer *v;
    struct buf got;
    bool drain; /* a stuck viewer never drains */
    int outputs;
};

static void
sink_output(struct console_viewer *v, void *arg)
{
    struct sink *s = arg;
    s->outputs++;
    if (!s->drain)
        return;
    const char *d;
    size_t n;
    while ((n = console_viewer_peek(v, &d)) > 0) {
        buf_append(&s->got, d, n);
        console_viewer_consume(v, n);
    }
}

static const struct console_viewer_cbs sink_cbs = {.output = sink_output};

static void
sink_drain(struct sink *s)
{
    bool d = s->drain;
    s->drain = true;
    sink_output(s->v, s);
    s->drain = d;
}

static char *
slurp(const char *path)
{
    char *data = NULL;
    size_t len;
    if (read_file(path, &data, &len) < 0)
        return NULL;
    return data;
}

static void
test_bytes_reach_ring_log_and_viewer(void **state)
{
    struct fixture *f = *state;
    start(f);
    struct sink s = {.drain = true};
    s.v = console_attach(f->c, 0, &sink_cbs, &s);
    source_send(f, "boot line 1\r\nboot line 2\r\nlogin: ", 33);
    assert_string_equal(s.got.data, "boot line 1\r\nboot line 2\r\nlogin: ");

    char *path = xasprintf("%s/srv1.log", f->logdir);
    char *log = slurp(path);
    assert_non_null(log);
    assert_string_equal(log, "boot line 1\r\nboot line 2\r\nlogin: ");
    free(log);
    free(path);

    struct buf r = {0};
    console_replay_lines(f->c, 2, &r);
    assert_string_equal(r.data, "boot line 2\r\nlogin: ");
    buf_reset(&r);
    console_replay_lines(f->c, 10, &r);
    assert_string_equal(r.data, "boot line 1\r\nboot line 2\r\nlogin: ");

    /* A new viewer starts with the replay, then live bytes. */
    struct sink s2 = {.drain = true};
    s2.v = console_attach(f->c, 1, &sink_cbs, &s2);
    sink_drain(&s2);
    source_send(f, "root\r\n", 6);
    assert_string_equal(s2.got.data, "login: root\r\n");
    buf_free(&r);
    buf_free(&s.got);
    buf_free(&s2.got);
}

static void
test_ring_keeps_only_its_size(void **state)
{
    struct fixture *f = *state;
    start(f); /* ring of 4096 bytes */
    struct buf in = {0};
    for (int i = 0; i < 1000; i++)
        buf_printf(&in, "line %04d\n", i);
    source_send(f, in.data, in.len);
    struct buf r = {0};
    console_replay_lines(f->c, 3, &r);
    assert_string_equal(r.data, "line 0997\nline 0998\nline 0999\n");
    buf_reset(&r);
    console_replay_lines(f->c, 100000, &r);
    assert_true(r.len <= 4096);
    assert_true(r.len > 4000);
    assert_memory_equal(r.data + r.len - 10, "line 0999\n", 10);
    buf_free(&r);
    buf_free(&in);
}

static void
test_rotation_keeps_tail_working(void **state)
{
    struct fixture *f = *state;
    start(f);
    console_set_log_max(f->c, 1000);
    struct buf in = {0};
    /* 10 bytes a line, written in small pieces so rotation can happen
     * between them. */
    for (int i = 0; i < 250; i++) {
        char line[32];
        snprintf(line, sizeof(line), "line %04d\n", i);
        buf_append(&in, line, 10);
        if (i % 10 == 9) {
            source_send(f, in.data, in.len);
            buf_reset(&in);
        }
    }
    char *p1 = xasprintf("%s/srv1.log.1", f->logdir);
    char *p2 = xasprintf("%s/srv1.log.2", f->logdir);
    char *p3 = xasprintf("%s/srv1.log.3", f->logdir);
    char *cur = xasprintf("%s/srv1.log", f->logdir);
    assert_int_equal(access(p1, F_OK), 0);
    assert_int_equal(access(p2, F_OK), 0);
    assert_int_equal(access(p3, F_OK), -1); /* keeps two */
    char *c0 = slurp(cur);
    assert_true(strlen(c0) <= 1000);
    free(c0);

    /* More lines than the current file holds: read back into .1 and .2. */
    struct buf t = {0};
    assert_int_equal(console_tail_log(f->logdir, "srv1", 150, &t), 0);
    struct buf want = {0};
    for (int i = 100; i < 250; i++)
        buf_printf(&want, "line %04d\n", i);
    assert_string_equal(t.data, want.data);
    buf_reset(&t);
    assert_int_equal(console_tail_log(f->logdir, "srv1", 1, &t), 0);
    assert_string_equal(t.data, "line 0249\n");
    /* Asking for more than is kept gives all that is kept. */
    buf_reset(&t);
    assert_int_equal(console_tail_log(f->logdir, "srv1", 100000, &t), 0);
    assert_true(t.len >= 2000 && t.len <= 3000);
    assert_memory_equal(t.data + t.len - 10, "line 0249\n", 10);

    buf_reset(&t);
    assert_int_equal(console_tail_log(f->logdir, "nosuch", 5, &t), -ENOENT);
    assert_int_equal(console_tail_log(f->logdir, "../x", 5, &t), -EINVAL);
    free(p1);
    free(p2);
    free(p3);
    free(cur);
    buf_free(&t);
    buf_free(&want);
    buf_free(&in);
}

static bool
is_disconnected(void *arg)
{
    return !console_connected(arg);
}

static void
test_reconnect_marks_gap(void **state)
{
    struct fixture *f = *state;
    start(f);
    struct sink s = {.drain = true};
    s.v = console_attach(f->c, 0, &sink_cbs, &s);
    source_send(f, "before\n", 7);
    tu_source_hangup(f->src);
    assert_true(tu_pump_until(f->l, 2000, is_disconnected, f->c));
    /* The source stays away for a while: attempts fail and back off. */
    tu_source_free(f->src);
    f->src = NULL;
    tu_pump_turns(f->l, 30, 50);
    assert_false(console_connected(f->c));
    f->src = tu_source_new(f->sock);
    assert_non_null(f->src);
    assert_true(tu_pump_until(f->l, 3000, is_connected, f->c));
    assert_true(tu_source_accept(f->src));
    source_send(f, "after\n", 6);

    assert_non_null(strstr(s.got.data, "before\n"));
    const char *m = strstr(s.got.data, "[console source lost at ");
    assert_non_null(m);
    assert_non_null(strstr(m, "; back after "));
    assert_non_null(strstr(m, " s]\r\nafter\n"));
    assert_true(strstr(s.got.data, "before\n") < m);

    char *path = xasprintf("%s/srv1.log", f->logdir);
    char *log = slurp(path);
    assert_non_null(strstr(log, "[console source lost at "));
    free(log);
    free(path);
    buf_free(&s.got);
}

static void
test_stuck_viewer_loses_only_its_own_bytes(void **state)
{
    struct fixture *f = *state;
    start(f);
    struct sink fast = {.drain = true}, stuck = {.drain = false};
    fast.v = console_attach(f->c, 0, &sink_cbs, &fast);
    stuck.v = console_attach(f->c, 0, &sink_cbs, &stuck);
    size_t total = 3 * CONSOLE_VIEWER_QUEUE;
    char *data = xmalloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (char)('a' + i % 26);
    source_send(f, data, total);

    assert_int_equal(fast.got.len, total);
    assert_memory_equal(fast.got.data, data, total);
    assert_int_equal(console_viewer_dropped(fast.v), 0);

    const char *d;
    size_t queued = console_viewer_peek(stuck.v, &d);
    assert_true(queued <= CONSOLE_VIEWER_QUEUE);
    assert_true(console_viewer_dropped(stuck.v) > 0);
    assert_int_equal(queued + console_viewer_dropped(stuck.v), total);
    /* What it kept is the start of the stream, intact. */
    assert_memory_equal(d, data, queued);

    /* Catching up shows the marker, and the stream goes on. */
    sink_drain(&stuck);
    char want[64];
    snprintf(want, sizeof(want), "[%llu bytes dropped]",
             console_viewer_dropped(stuck.v));
    assert_non_null(strstr(stuck.got.data + queued, want));
    source_send(f, "tail\n", 5);
    sink_drain(&stuck);
    assert_memory_equal(stuck.got.data + stuck.got.len - 5, "tail\n", 5);
    free(data);
    buf_free(&fast.got);
    buf_free(&stuck.got);
}

static void
test_writer_seat(void **state)
{
    struct fixture *f = *state;
    start(f);
    struct sink a = {.drain = true}, b = {.drain = true};
    a.v = console_attach(f->c, 0, &sink_cbs, &a);
    b.v = console_attach(f->c, 0, &sink_cbs, &b);
    assert_int_equal(console_write(a.v, "x", 1), -EPERM);
    assert_null(console_take_writer(f->c, a.v));
    assert_int_equal(console_write(a.v, "ls\r", 3), 0);
    assert_ptr_equal(console_take_writer(f->c, b.v), a.v);
    assert_int_equal(console_write(a.v, "no", 2), -EPERM);
    assert_int_equal(console_write(b.v, "pwd\r", 4), 0);
    tu_pump_turns(f->l, 5, 5);
    char got[64] = "";
    ssize_t n = read(f->src->fd, got, sizeof(got) - 1);
    assert_int_equal(n, 7);
    assert_string_equal(got, "ls\rpwd\r");
    /* Detaching the writer frees the seat. */
    console_detach(b.v);
    assert_null(console_writer(f->c));
    assert_int_equal(console_viewer_count(f->c), 1);
    assert_int_equal(console_send_break(f->c), -ENOTSUP);
    buf_free(&a.got);
    buf_free(&b.got);
}

/* Detaching itself from inside output() is allowed. */
static void
detach_output(struct console_viewer *v, void *arg)
{
    int *calls = arg;
    (*calls)++;
    console_detach(v);
}

static int closed_calls;
static void
count_closed(struct console_viewer *v, void *arg)
{
    (void)v;
    (void)arg;
    closed_calls++;
}

static void
test_detach_in_callback_and_free_tells_viewers(void **state)
{
    struct fixture *f = *state;
    start(f);
    int calls = 0;
    struct console_viewer_cbs dcbs = {.output = detach_output};
    console_attach(f->c, 0, &dcbs, &calls);
    struct console_viewer_cbs ccbs = {.closed = count_closed};
    console_attach(f->c, 0, &ccbs, NULL);
    source_send(f, "one\n", 4);
    source_send(f, "two\n", 4);
    assert_int_equal(calls, 1);
    assert_int_equal(console_viewer_count(f->c), 1);
    closed_calls = 0;
    console_free(f->c);
    f->c = NULL;
    assert_int_equal(closed_calls, 1);
}

/* The speed the line is set to: the URI's, else 115200. */
static void
tty_speed(struct fixture *f, const char *suffix, speed_t want)
{
    int master, slave;
    char name[64];
    struct termios t;
    assert_int_equal(openpty(&master, &slave, name, NULL, NULL), 0);
    char err[256] = "";
    char *uri = xasprintf("tty:%s%s", name, suffix);
    f->c = console_new(f->l, "tty1", uri, f->logdir, 0, err, sizeof(err));
    free(uri);
    assert_non_null(f->c);
    assert_int_equal(tcgetattr(slave, &t), 0);
    assert_int_equal(cfgetospeed(&t), want);
    console_free(f->c);
    f->c = NULL;
    close(slave);
    close(master);
}

static void
test_tty_speed(void **state)
{
    struct fixture *f = *state;
    tty_speed(f, "@9600", B9600);
    tty_speed(f, "", B115200);
    tty_speed(f, "@57600", B57600);
}

static void
test_tty_source(void **state)
{
    struct fixture *f = *state;
    int master, slave;
    char name[64];
    assert_int_equal(openpty(&master, &slave, name, NULL, NULL), 0);
    char err[256] = "";
    char *uri = xasprintf("tty:%s@115200", name);
    f->c = console_new(f->l, "tty1", uri, f->logdir, 0, err, sizeof(err));
    free(uri);
    assert_non_null(f->c);
    assert_true(console_connected(f->c));
    struct sink s = {.drain = true};
    s.v = console_attach(f->c, 0, &sink_cbs, &s);
    assert_int_equal(write(master, "hello\n", 6), 6);
    tu_pump_until(f->l, 200, tu_buf_has,
                  &(struct tu_needle){.b = &s.got, .text = "hello\n"});
    assert_non_null(s.got.data);
    assert_memory_equal(s.got.data, "hello\n", 6); /* raw: no \r added */
    console_take_writer(f->c, s.v);
    assert_int_equal(console_write(s.v, "k", 1), 0);
    char c = 0;
    assert_int_equal(read(master, &c, 1), 1);
    assert_int_equal(c, 'k');
    assert_int_equal(console_send_break(f->c), 0);
    console_free(f->c);
    f->c = NULL;
    close(slave);
    close(master);
    buf_free(&s.got);
}

/* console_new refuses what the shared parser (test_uri) refuses, with
 * its reason. */
static void
test_bad_uri(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    assert_null(console_new(f->l, "srv1", "tty:/dev/ttyS0@123", f->logdir, 0,
                            err, sizeof(err)));
    assert_non_null(strstr(err, "speed"));
    assert_null(console_new(f->l, "srv1", "tcp:127.0.0.1:0", f->logdir, 0, err,
                            sizeof(err)));
    assert_non_null(strstr(err, "port"));
    assert_null(
        console_new(f->l, "srv1", "ftp:x", f->logdir, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "unknown console URI scheme"));
}

/* A tcp: source the test serves on 127.0.0.1. */
static void
test_tcp_source(void **state)
{
    struct fixture *f = *state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    char err[256] = "";
    char *uri = xasprintf("tcp:127.0.0.1:%d", ntohs(sa.sin_port));
    f->c = console_new(f->l, "tcp1", uri, f->logdir, 0, err, sizeof(err));
    free(uri);
    assert_non_null(f->c);
    assert_true(tu_pump_until(f->l, 2000, is_connected, f->c));
    /* The unix source's plumbing, on the tcp listener. */
    struct tu_source tcp = {.lfd = lfd, .fd = -1};
    assert_true(tu_source_accept(&tcp));
    struct sink s = {.drain = true};
    s.v = console_attach(f->c, 0, &sink_cbs, &s);
    assert_int_equal(tu_source_write(&tcp, f->l, "tcp bytes\n", 10, 5000), 10);
    tu_pump_turns(f->l, 20, 5);
    assert_string_equal(s.got.data, "tcp bytes\n");
    tu_source_hangup(&tcp);
    close(lfd);
    buf_free(&s.got);
}

/* A tcp: source by host name: looked up off the loop (resolve.c, glibc's
 * getaddrinfo_a), then connected; console_new returns before any of it,
 * and a console freed while the lookup is out never connects. */
static void
test_tcp_source_by_name(void **state)
{
    struct fixture *f = *state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    char err[256] = "";
    char *uri = xasprintf("tcp:localhost:%d", ntohs(sa.sin_port));
    f->c = console_new(f->l, "tcp2", uri, f->logdir, 0, err, sizeof(err));
    assert_non_null(f->c);
    assert_false(console_connected(f->c)); /* nothing waited for yet */
    assert_true(tu_pump_until(f->l, 3000, is_connected, f->c));
    struct tu_source tcp = {.lfd = lfd, .fd = -1};
    assert_true(tu_source_accept(&tcp));
    tu_source_hangup(&tcp);
    console_free(f->c);
    /* Freed with the lookup out: no connection comes, nothing leaks. */
    f->c = console_new(f->l, "tcp3", uri, f->logdir, 0, err, sizeof(err));
    assert_non_null(f->c);
    console_free(f->c);
    f->c = NULL;
    tu_pump_for(f->l, 200);
    assert_true(accept(lfd, NULL, NULL) < 0 && errno == EAGAIN);
    free(uri);
    close(lfd);
}

static bool
sink_has(struct fixture *f, struct sink *s, const char *text, int ms)
{
    return tu_until_text(ms, &s->got, text, tu_loop_turn, f->l);
}

/* ipmi-sol: against a STAND-IN for ipmitool (a shell script found first on
 * PATH): it records its arguments and its PID, and for "sol activate"
 * prints a banner and echoes what it reads.  This checks our side (the
 * deactivate-then-activate order, the password kept off the command line,
 * the pty, ~ doubling, restart with the gap marker, kill on free); the
 * real ipmitool against ipmi_sim is the integration case 011-ipmi-sol. */
static void
test_ipmi_sol_child(void **state)
{
    struct fixture *f = *state;
    char *bin = xasprintf("%s/bin", f->dir);
    char *tool = xasprintf("%s/ipmitool", bin);
    char *args = xasprintf("%s/args", f->dir);
    char *pidf = xasprintf("%s/pid", f->dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    char *script = xasprintf(
        "#!/bin/sh\n"
        "echo \"$* pw=$IPMI_PASSWORD\" >>%s\n"
        "case \"$*\" in *deactivate*) echo 'Info: already de-activated'; "
        "exit 0;; esac\n"
        "echo $$ >%s\n"
        "printf 'FAKE-SOL up\\r\\n'\n"
        "exec cat\n",
        args, pidf);
    assert_int_equal(write_file_atomic(tool, script, strlen(script), 0755), 0);
    const char *old = getenv("PATH");
    char *path = xasprintf("%s:%s", bin, old ? old : "/usr/bin:/bin");
    setenv("PATH", path, 1);

    char err[256] = "";
    f->c = console_new(f->l, "srv1", "ipmi-sol:admin:s3cret@bmc1:6230",
                       f->logdir, 4096, err, sizeof(err));
    assert_non_null(f->c);
    console_set_backoff_ms(f->c, 100, 400);
    struct sink s = {.drain = true};
    s.v = console_attach(f->c, 0, &sink_cbs, &s);
    assert_true(sink_has(f, &s, "FAKE-SOL up", 5000));

    char *a = slurp(args);
    assert_non_null(a);
    assert_non_null(strstr(a, "-I lanplus -H bmc1 -p 6230 -U admin -E -N 1 "
                              "-R 3 sol deactivate pw=s3cret\n"));
    assert_non_null(strstr(a, "sol deactivate pw=s3cret\n-I lanplus -H bmc1 "
                              "-p 6230 -U admin -E -N 1 -R 3 sol activate "
                              "pw=s3cret"));
    assert_null(strstr(a, "-P"));
    free(a);

    /* Typed bytes reach the child through the pty; a ~ at a line start is
     * doubled (ipmitool's escape), so "~." cannot end the session. */
    console_take_writer(f->c, s.v);
    assert_int_equal(console_write(s.v, "ls\r~.x", 6), 0);
    assert_true(sink_has(f, &s, "ls\r~~.x", 3000));

    /* The child dies: the gap is marked and ipmitool runs again. */
    char *p = slurp(pidf);
    assert_non_null(p);
    pid_t pid1 = (pid_t)atoi(p);
    free(p);
    assert_int_equal(kill(pid1, SIGKILL), 0);
    assert_true(sink_has(f, &s, "[console source lost at", 5000));
    s.got.len = 0;
    s.got.data[0] = '\0';
    assert_true(sink_has(f, &s, "FAKE-SOL up", 5000));
    assert_true(console_connected(f->c));
    p = slurp(pidf);
    pid_t pid2 = (pid_t)atoi(p);
    free(p);
    assert_true(pid2 != pid1);

    /* console_free ends the child (and reaps it: no zombie left). */
    console_free(f->c);
    f->c = NULL;
    assert_int_equal(kill(pid2, 0), -1);
    assert_int_equal(errno, ESRCH);

    setenv("PATH", old ? old : "/usr/bin:/bin", 1);
    buf_free(&s.got);
    free(path);
    free(script);
    free(pidf);
    free(args);
    free(tool);
    free(bin);
}

/* console/log?tail=N reads from the end and at most CONSOLE_TAIL_MAX
 * bytes: an 8 MB log of one endless line gives its last bytes, a log of
 * many lines gives whole lines up to the bound, ending with the last. */
static void
test_tail_bounded(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mkdir_p(f->logdir, 0700, NULL, 0), 0);
    size_t big = 8 * 1024 * 1024;
    char *x = xmalloc(big);
    memset(x, 'x', big);
    memcpy(x + big - 4, "END!", 4);
    char *path = xasprintf("%s/srv2.log", f->logdir);
    assert_int_equal(write_file_atomic(path, x, big, 0600), 0);
    struct buf t = {0};
    assert_int_equal(console_tail_log(f->logdir, "srv2", 100000, &t), 0);
    if (t.len > CONSOLE_TAIL_MAX)
        fail_msg("tail read %zu bytes (the bound is %d)", t.len,
                 CONSOLE_TAIL_MAX);
    assert_memory_equal(t.data + t.len - 4, "END!", 4);
    buf_free(&t);
    /* 2 MB of 100-byte lines in .1 and the current file */
    struct buf lines = {0};
    for (int i = 0; i < 20000; i++)
        buf_printf(&lines, "%-98d|\n", i);
    assert_int_equal(write_file_atomic(path, lines.data, lines.len, 0600), 0);
    char *p1 = xasprintf("%s/srv2.log.1", f->logdir);
    assert_int_equal(write_file_atomic(p1, lines.data, lines.len, 0600), 0);
    assert_int_equal(console_tail_log(f->logdir, "srv2", 100000, &t), 0);
    assert_true(t.len <= CONSOLE_TAIL_MAX && t.len > CONSOLE_TAIL_MAX - 200);
    assert_int_equal(t.len % 100, 0); /* whole lines */
    assert_memory_equal(t.data + t.len - 100, lines.data + lines.len - 100,
                        100);
    buf_free(&t);
    buf_free(&lines);
    free(p1);
    free(path);
    free(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bytes_reach_ring_log_and_viewer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_keeps_only_its_size, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tail_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_source_by_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_tail_working, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_marks_gap, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_stuck_viewer_loses_only_its_own_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_seat, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_detach_in_callback_and_free_tells_viewers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tty_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tty_speed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipmi_sol_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_uri, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
