/* test_sshd: loop + console + sshd in this process on 127.0.0.1:0, and the
 * real OpenSSH client forked as a child while the test pumps the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "console.h"
#include "console_session.h"
#include "loop.h"
#include "sshd.h"
#include "testutil.h"
#include "util.h"

#include "consolehelp.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libssh/libssh.h>

#define MAX_CLIENTS 8

struct client {
    pid_t pid;
    int out; /* ssh's stdout, read here */
    int in;  /* ssh's stdin, or -1 (/dev/null) */
    struct buf got;
    char errpath[128];
    int status;
    bool exited;
};

struct fx {
    char key_ok[128], key_bad[128], hostkey[128];
    struct fake_daemon dm; /* dir, loop, console, serial port; cb_arg */
    struct sshd *d;
    struct client clients[MAX_CLIENTS];
    int nclients;
};

/* --- plumbing ------------------------------------------------------------ */

static void
run(const char *cmd)
{
    assert_int_equal(system(cmd), 0);
}

static void
pump_clients(struct fx *f)
{
    for (int i = 0; i < f->nclients; i++) {
        struct client *c = &f->clients[i];
        char b[8192];
        ssize_t n;
        while (c->out >= 0 && (n = read(c->out, b, sizeof(b))) > 0)
            buf_append(&c->got, b, (size_t)n);
        if (!c->exited && waitpid(c->pid, &c->status, WNOHANG) == c->pid)
            c->exited = true;
    }
}

/* One turn: the loop, the serial port, the ssh clients. */
static void
sshd_turn(void *arg)
{
    struct fx *f = arg;
    tu_source_pump(f->dm.src, f->dm.l);
    pump_clients(f);
}

/* Pump until needle shows in *b, or 10 s. */
static bool
pump_for(struct fx *f, const struct buf *b, const char *needle)
{
    return tu_until_text(10000, b, needle, sshd_turn, f);
}

static void
source_send(struct fx *f, const char *s)
{
    assert_true(f->dm.src->fd >= 0);
    assert_int_equal(tu_source_write(f->dm.src, f->dm.l, s, strlen(s), 1000),
                     strlen(s));
}

static struct client *
ssh_client(struct fx *f, const char *user, const char *key, bool with_stdin)
{
    assert_true(f->nclients < MAX_CLIENTS);
    struct client *c = &f->clients[f->nclients++];
    memset(c, 0, sizeof(*c));
    char *ep = xasprintf("%s/err.%d", f->dm.dir, f->nclients);
    strlcpy_s(c->errpath, ep, sizeof(c->errpath));
    free(ep);
    int out[2], in[2] = {-1, -1};
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    if (with_stdin)
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    char port[16], dest[128];
    snprintf(port, sizeof(port), "%d", sshd_port(f->d));
    snprintf(dest, sizeof(dest), "%s@127.0.0.1", user);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(with_stdin ? in[0] : null, 0);
        dup2(out[1], 1);
        int err = open(c->errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(err, 2);
        /* key may be a list "k1,k2": each offered in turn */
        const char *argv[48] = {"ssh",       "-F",
                                "/dev/null", "-T",
                                "-p",        port,
                                "-o",        "StrictHostKeyChecking=no",
                                "-o",        "UserKnownHostsFile=/dev/null",
                                "-o",        "BatchMode=yes",
                                "-o",        "IdentitiesOnly=yes",
                                "-o",        "LogLevel=ERROR",
                                "-o",        "ConnectTimeout=10"};
        int n = 18;
        char *keys = xstrdup(key), *save = NULL;
        for (char *k = strtok_r(keys, ",", &save); k && n < 44;
             k = strtok_r(NULL, ",", &save)) {
            argv[n++] = "-i";
            argv[n++] = k;
        }
        argv[n++] = dest;
        argv[n] = NULL;
        execvp("ssh", (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    c->out = out[0];
    fcntl(c->out, F_SETFL, O_NONBLOCK);
    if (with_stdin) {
        close(in[0]);
        c->in = in[1];
    } else {
        c->in = -1;
    }
    return c;
}

static void
type(struct client *c, const char *s)
{
    assert_int_equal(write(c->in, s, strlen(s)), (ssize_t)strlen(s));
}

static char *
slurp(const char *path)
{
    char *d = NULL;
    size_t n;
    if (read_file(path, &d, &n) < 0)
        return xstrdup("");
    return d;
}

static int
setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct fx *f = xcalloc(1, sizeof(*f));
    fake_daemon_init(&f->dm);
    snprintf(f->key_ok, sizeof(f->key_ok), "%s/id_ok", f->dm.dir);
    snprintf(f->key_bad, sizeof(f->key_bad), "%s/id_bad", f->dm.dir);
    snprintf(f->hostkey, sizeof(f->hostkey), "%s/ssh_host_ed25519_key",
             f->dm.dir);
    char *cmd = xasprintf("ssh-keygen -q -t ed25519 -N '' -f %s && "
                          "ssh-keygen -q -t ed25519 -N '' -f %s",
                          f->key_ok, f->key_bad);
    run(cmd);
    free(cmd);
    char *pub = xasprintf("%s.pub", f->key_ok);
    ssh_key allowed = NULL;
    assert_int_equal(ssh_pki_import_pubkey_file(pub, &allowed), SSH_OK);
    free(pub);
    unsigned char *hash = NULL;
    size_t hlen = 0;
    assert_int_equal(ssh_get_publickey_hash(allowed, SSH_PUBLICKEY_HASH_SHA256,
                                            &hash, &hlen),
                     0);
    char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    strlcpy_s(f->dm.allowed_fp, fp, sizeof(f->dm.allowed_fp));
    ssh_string_free_char(fp);
    ssh_clean_pubkey_hash(&hash);
    ssh_key_free(allowed);

    char err[256] = "";
    struct sshd_config cfg = {.listen = "127.0.0.1:0",
                              .host_key_path = f->hostkey,
                              .cbs = &fake_cbs,
                              .cb_arg = &f->dm};
    f->d = sshd_new(f->dm.l, &cfg, err, sizeof(err));
    if (!f->d)
        fprintf(stderr, "sshd_new: %s\n", err);
    assert_non_null(f->d);
    assert_true(sshd_port(f->d) > 0);
    tu_until(50, NULL, NULL, sshd_turn, f);
    assert_true(f->dm.src->fd >= 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < f->nclients; i++) {
        struct client *c = &f->clients[i];
        if (!c->exited) {
            kill(c->pid, SIGTERM);
            waitpid(c->pid, NULL, 0);
        }
        if (c->out >= 0)
            close(c->out);
        if (c->in >= 0)
            close(c->in);
        buf_free(&c->got);
    }
    sshd_free(f->d);
    fake_daemon_free(&f->dm);
    free(f);
    return 0;
}

/* --- tests --------------------------------------------------------------- */

static void
test_watch_and_replay(void **state)
{
    struct fx *f = *state;
    source_send(f, "line one\r\nline two\r\nline three\r\n");
    tu_until(50, NULL, NULL, sshd_turn, f);
    struct client *a = ssh_client(f, "srv1.ro.replay=2", f->key_ok, false);
    assert_true(pump_for(f, &a->got, "srv1 as watcher"));
    assert_non_null(strstr(a->got.data, "line two\r\nline three\r\n"));
    assert_null(strstr(a->got.data, "line one"));
    source_send(f, "live bytes\r\n");
    assert_true(pump_for(f, &a->got, "live bytes\r\n"));
    assert_non_null(strstr(f->dm.audit.data, "srv1 console_attach user=srv1"));
    assert_non_null(strstr(f->dm.audit.data, "role=watcher"));
}

/* What came after the attach notice. */
static const char *
after_notice(struct client *c)
{
    const char *p = strstr(c->got.data, "; Ctrl-] ? for help]\r\n");
    assert_non_null(p);
    return p + strlen("; Ctrl-] ? for help]\r\n");
}

static void
test_two_viewers_identical_bytes(void **state)
{
    struct fx *f = *state;
    struct client *a = ssh_client(f, "srv1.ro", f->key_ok, false);
    struct client *b = ssh_client(f, "srv1.ro", f->key_ok, false);
    assert_true(pump_for(f, &a->got, "for help]"));
    assert_true(pump_for(f, &b->got, "for help]"));
    struct buf sent = {0};
    for (int i = 0; i < 2000; i++)
        buf_printf(&sent, "boot message %05d: some kernel text\r\n", i);
    assert_int_equal(tu_source_write_with(f->dm.src, sent.data, sent.len, 10000,
                                          sshd_turn, f),
                     sent.len);
    assert_true(pump_for(f, &a->got, "boot message 01999"));
    assert_true(pump_for(f, &b->got, "boot message 01999"));
    tu_until(100, NULL, NULL, sshd_turn, f);
    assert_string_equal(after_notice(a), sent.data);
    assert_string_equal(after_notice(b), sent.data);
    buf_free(&sent);
}

static void
test_writer_types_and_takeover(void **state)
{
    struct fx *f = *state;
    struct client *w1 = ssh_client(f, "srv1", f->key_ok, true);
    assert_true(pump_for(f, &w1->got, "srv1 as writer"));
    type(w1, "echo hi\n");
    assert_true(pump_for(f, &f->dm.src->got, "echo hi\n"));

    struct client *w2 = ssh_client(f, "srv1", f->key_ok, true);
    assert_true(pump_for(f, &w2->got, "srv1 as writer"));
    assert_true(pump_for(f, &w1->got, "[rescued: project:acme@127.0.0.1:"));
    assert_true(
        pump_for(f, &w1->got, "took the writer seat; you are now watching]"));
    assert_non_null(strstr(f->dm.audit.data, "console_takeover"));

    buf_reset(&f->dm.src->got);
    type(w1, "x");
    assert_true(pump_for(f, &w1->got, "you are watching; Ctrl-] w takes"));
    type(w2, "y");
    assert_true(pump_for(f, &f->dm.src->got, "y"));
    assert_null(strchr(f->dm.src->got.data, 'x'));

    /* Ctrl-] w takes the seat back; Ctrl-] Ctrl-] sends one Ctrl-]. */
    type(w1, "\x1dw");
    assert_true(pump_for(f, &w2->got, "you are now watching"));
    buf_reset(&f->dm.src->got);
    type(w1, "a\x1d\x1d"
             "b");
    assert_true(pump_for(f, &f->dm.src->got,
                         "a\x1d"
                         "b"));

    /* Ctrl-] . disconnects. */
    type(w1, "\x1d.");
    assert_true(tu_until(10000, tu_flag, &w1->exited, sshd_turn, f));
    tu_until(50, NULL, NULL, sshd_turn, f);
    assert_non_null(strstr(f->dm.audit.data, "console_detach"));
}

static void
test_ro_cannot_type(void **state)
{
    struct fx *f = *state;
    struct client *r = ssh_client(f, "srv1.ro", f->key_ok, true);
    assert_true(pump_for(f, &r->got, "srv1 as watcher"));
    type(r, "rm -rf /\n");
    assert_true(pump_for(f, &r->got, "read-only session (.ro)"));
    type(r, "\x1dw");
    assert_true(pump_for(f, &r->got, "cannot take the writer seat"));
    tu_until(100, NULL, NULL, sshd_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);
    assert_null(console_writer(f->dm.c));
}

static void
test_refusals_are_identical(void **state)
{
    struct fx *f = *state;
    struct client *bad = ssh_client(f, "srv1", f->key_bad, false);
    struct client *unk = ssh_client(f, "nosuch", f->key_ok, false);
    assert_true(tu_until(10000, tu_flag, &bad->exited, sshd_turn, f));
    assert_true(tu_until(10000, tu_flag, &unk->exited, sshd_turn, f));
    assert_int_equal(WEXITSTATUS(bad->status), 255);
    assert_int_equal(WEXITSTATUS(unk->status), 255);
    char *e1 = slurp(bad->errpath), *e2 = slurp(unk->errpath);
    const char *p1 = strstr(e1, "Permission denied");
    const char *p2 = strstr(e2, "Permission denied");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_string_equal(p1, p2);
    assert_string_equal(p1, "Permission denied (publickey).\r\n");
    assert_int_equal(bad->got.len, 0);
    assert_int_equal(unk->got.len, 0);
    assert_null(f->dm.audit.data);
    free(e1);
    free(e2);
}

static void
test_read_only_window(void **state)
{
    struct fx *f = *state;
    f->dm.writable = false;
    struct client *w = ssh_client(f, "srv1", f->key_ok, true);
    assert_true(
        pump_for(f, &w->got, "[rescued: read-only: srv1 is rebooting]"));
    type(w, "a");
    tu_until(300, NULL, NULL, sshd_turn, f);
    assert_int_equal(f->dm.src->got.len, 0);
    f->dm.writable = true;
    sshd_writable_changed(f->d, "srv1");
    assert_true(pump_for(f, &w->got, "[rescued: console writable again]"));
    type(w, "b");
    assert_true(pump_for(f, &f->dm.src->got, "b"));
    assert_int_equal(f->dm.src->got.len, 1);
}

static void
test_menu_power(void **state)
{
    struct fx *f = *state;
    struct client *w = ssh_client(f, "srv1", f->key_ok, true);
    assert_true(pump_for(f, &w->got, "srv1 as writer"));
    type(w, "\x1dn");
    assert_true(pump_for(f, &w->got, "press y to confirm"));
    assert_int_equal(f->dm.power_calls, 0);
    type(w, "y");
    assert_true(pump_for(f, &w->got, "[rescued: NMI sent]"));
    assert_int_equal(f->dm.power_calls, 1);
    assert_int_equal(f->dm.power_op, CONSOLE_POWER_NMI);
    type(w, "\x1dnq");
    assert_true(pump_for(f, &w->got, "NMI cancelled"));
    assert_int_equal(f->dm.power_calls, 1);
    type(w, "\x1dsh");
    assert_true(pump_for(f, &w->got, "SysRq h sent"));
    assert_int_equal(f->dm.power_op, CONSOLE_POWER_SYSRQ);
    assert_string_equal(f->dm.power_key, "h");
    type(w, "\x1d"
            "b");
    assert_true(pump_for(f, &w->got, "break sent"));
    assert_int_equal(f->dm.power_op, CONSOLE_POWER_BREAK);
    type(w, "\x1d?");
    assert_true(pump_for(f, &w->got, "b break, s KEY SysRq"));
    assert_non_null(strstr(f->dm.audit.data, "console_nmi"));
    assert_non_null(strstr(f->dm.audit.data, "console_sysrq"));
    assert_non_null(strstr(f->dm.audit.data, "key=h"));
    /* None of the menu keys reached the console. */
    assert_int_equal(f->dm.src->got.len, 0);
}

static void
test_host_key_kept(void **state)
{
    struct fx *f = *state;
    char *k1 = slurp(f->hostkey);
    assert_non_null(strstr(k1, "PRIVATE KEY"));
    sshd_free(f->d);
    char err[256];
    struct sshd_config cfg = {.listen = "127.0.0.1:0",
                              .host_key_path = f->hostkey,
                              .cbs = &fake_cbs,
                              .cb_arg = &f->dm};
    f->d = sshd_new(f->dm.l, &cfg, err, sizeof(err));
    assert_non_null(f->d);
    char *k2 = slurp(f->hostkey);
    assert_string_equal(k1, k2);
    free(k1);
    free(k2);
}

static void
test_writer_idle_timeout(void **state)
{
    struct fx *f = *state;
    sshd_free(f->d);
    char err[256];
    struct sshd_config cfg = {.listen = "127.0.0.1:0",
                              .host_key_path = f->hostkey,
                              .writer_idle_s = 1,
                              .cbs = &fake_cbs,
                              .cb_arg = &f->dm};
    f->d = sshd_new(f->dm.l, &cfg, err, sizeof(err));
    assert_non_null(f->d);
    struct client *w = ssh_client(f, "srv1", f->key_ok, true);
    assert_true(pump_for(f, &w->got, "srv1 as writer"));
    assert_non_null(console_writer(f->dm.c));
    assert_true(pump_for(f, &w->got, "writer seat released after 1 s"));
    assert_null(console_writer(f->dm.c));
    type(w, "z");
    assert_true(pump_for(f, &w->got, "you are watching"));
    assert_int_equal(f->dm.src->got.len, 0);
}

static bool
client_exited(void *arg)
{
    return ((struct client *)arg)->exited;
}

/* A reload removed the key (or moved the server away from its project):
 * fleet says the server's access may have changed, and the session that
 * key opened ends within a second; a key still allowed keeps its own. */
static void
test_revoked_key_closes_session(void **state)
{
    struct fx *f = *state;
    struct client *a = ssh_client(f, "srv1.ro", f->key_ok, false);
    assert_true(pump_for(f, &a->got, "for help]"));
    /* Still allowed: the session stays (a marker byte comes through). */
    sshd_writable_changed(f->d, "srv1");
    source_send(f, "still here\r\n");
    assert_true(pump_for(f, &a->got, "still here\r\n"));
    assert_false(a->exited);

    f->dm.allowed_fp[0] = '\0';
    int64_t t0 = now_mono_ms();
    sshd_writable_changed(f->d, "srv1");
    assert_true(tu_until(1000, client_exited, a, sshd_turn, f));
    assert_true(now_mono_ms() - t0 < 1000);
    source_send(f, "after the revocation\r\n");
    tu_until(100, NULL, NULL, sshd_turn, f);
    assert_null(strstr(a->got.data, "after the revocation"));
}

/* A raw TCP client: what sshd sent, and whether it hung up. */
struct raw {
    int fd;
    struct buf in;
    bool end;
};

/* Connect to sshd from src (a loopback address: each is a source of its
 * own). */
static void
raw_connect(struct fx *f, struct raw *r, const char *src)
{
    memset(r, 0, sizeof(*r));
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &sa.sin_addr);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    sa.sin_port = htons((uint16_t)sshd_port(f->d));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(r->fd, F_SETFL, O_NONBLOCK);
}

static void
raw_close(struct raw *r)
{
    close(r->fd);
    buf_free(&r->in);
}

struct raw_turn {
    struct fx *f;
    struct raw *r;
    int n;
};

/* The loop, then what each raw client got. */
static void
raw_turn(void *arg)
{
    struct raw_turn *t = arg;
    sshd_turn(t->f);
    for (int i = 0; i < t->n; i++) {
        struct raw *r = &t->r[i];
        char b[512];
        while (!r->end) {
            ssize_t n = read(r->fd, b, sizeof(b));
            if (n > 0) {
                buf_append(&r->in, b, (size_t)n);
                continue;
            }
            if (n == 0 || errno != EAGAIN)
                r->end = true;
            break;
        }
    }
}

static bool
raw_ended(void *arg)
{
    return ((struct raw *)arg)->end;
}

static void
restart_sshd(struct fx *f, const struct sshd_config *over)
{
    sshd_free(f->d);
    char err[256];
    struct sshd_config cfg = *over;
    cfg.listen = "127.0.0.1:0";
    cfg.host_key_path = f->hostkey;
    cfg.cbs = &fake_cbs;
    cfg.cb_arg = &f->dm;
    f->d = sshd_new(f->dm.l, &cfg, err, sizeof(err));
    assert_non_null(f->d);
}

/* MaxStartups: per source, the third connection not yet authenticated
 * is closed before the banner; another source is still served; past
 * the cap in all, any source is refused. */
static void
test_max_startups(void **state)
{
    struct fx *f = *state;
    restart_sshd(f, &(struct sshd_config){.max_startups = 4,
                                          .max_startups_per_source = 2});
    struct raw r[5];
    struct raw_turn t = {f, r, 0};
    const char *src[] = {"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2",
                         "127.0.0.3"};
    bool served[] = {true, true, false, true, true};
    for (int i = 0; i < 4; i++) {
        raw_connect(f, &r[i], src[i]);
        t.n = i + 1;
        if (served[i])
            assert_true(
                tu_until_text(5000, &r[i].in, "SSH-2.0-", raw_turn, &t));
        else
            assert_true(tu_until(5000, raw_ended, &r[i], raw_turn, &t));
    }
    assert_null(r[2].in.data);
    /* 127.0.0.3 has none yet, but there are three in all; one more. */
    raw_connect(f, &r[4], "127.0.0.4");
    t.n = 5;
    assert_true(tu_until_text(5000, &r[4].in, "SSH-2.0-", raw_turn, &t));
    struct raw x;
    raw_connect(f, &x, src[4]);
    struct raw_turn tx = {f, &x, 1};
    assert_true(tu_until(5000, raw_ended, &x, raw_turn, &tx));
    assert_null(x.in.data);
    raw_close(&x);
    /* An authenticated viewer does not count: one goes, one comes. */
    raw_close(&r[0]);
    struct client *c = ssh_client(f, "srv1", f->key_ok, false);
    assert_true(pump_for(f, &c->got, "srv1 as"));
    for (int i = 1; i < 5; i++)
        raw_close(&r[i]);
}

/* LoginGraceTime: a connection that never authenticates is closed. */
static void
test_login_grace(void **state)
{
    struct fx *f = *state;
    restart_sshd(f, &(struct sshd_config){.login_grace_s = 1});
    struct raw r;
    raw_connect(f, &r, "127.0.0.1");
    struct raw_turn t = {f, &r, 1};
    int64_t t0 = now_mono_ms();
    assert_true(tu_until_text(5000, &r.in, "SSH-2.0-", raw_turn, &t));
    assert_true(tu_until(5000, raw_ended, &r, raw_turn, &t));
    assert_true(now_mono_ms() - t0 >= 900);
    raw_close(&r);
}

/* MaxAuthTries: two keys refused, the connection goes before the third
 * (the right one) is offered. */
static void
test_max_auth_tries(void **state)
{
    struct fx *f = *state;
    char bad2[160];
    snprintf(bad2, sizeof(bad2), "%s/id_bad2", f->dm.dir);
    char *cmd = xasprintf("ssh-keygen -q -t ed25519 -N '' -f %s", bad2);
    run(cmd);
    free(cmd);
    restart_sshd(f, &(struct sshd_config){.max_auth_tries = 2});
    char *keys = xasprintf("%s,%s,%s", f->key_bad, bad2, f->key_ok);
    struct client *c = ssh_client(f, "srv1", keys, false);
    free(keys);
    assert_true(tu_until(10000, tu_flag, &c->exited, sshd_turn, f));
    assert_int_equal(WEXITSTATUS(c->status), 255);
    assert_null(strstr(c->got.data ? c->got.data : "", "srv1 as"));
    /* Three tries allowed: the same client gets in. */
    restart_sshd(f, &(struct sshd_config){.max_auth_tries = 3});
    keys = xasprintf("%s,%s,%s", f->key_bad, bad2, f->key_ok);
    c = ssh_client(f, "srv1", keys, false);
    free(keys);
    assert_true(pump_for(f, &c->got, "srv1 as"));
}

/* Loop turns in ms of the loop alone, each waiting up to 1 s. */
static int
idle_turns(struct fx *f, int ms)
{
    int turns = 0;
    int64_t end = now_mono_ms() + ms;
    while (now_mono_ms() < end) {
        loop_run_once(f->dm.l, 1000);
        turns++;
    }
    return turns;
}

/* Out of descriptors with a connection waiting: accept backs off
 * instead of spinning on the readable bind fd, and takes the connection
 * once descriptors are free again. */
static void
test_accept_emfile(void **state)
{
    struct fx *f = *state;
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct raw r;
    raw_connect(f, &r, "127.0.0.1");
    /* Lower the soft limit near what is open, then fill the rest. */
    int probe = dup(0);
    low = old;
    low.rlim_cur = (rlim_t)probe + 16;
    close(probe);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fill[32], nfill = 0;
    while (nfill < 32 && (fill[nfill] = dup(0)) >= 0)
        nfill++;
    assert_true(nfill < 32); /* the limit was reached */
    int turns = idle_turns(f, 1000);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    if (turns > 100)
        fail_msg("accept without descriptors: %d loop turns in 1 s", turns);
    struct raw_turn t = {f, &r, 1};
    assert_true(tu_until_text(5000, &r.in, "SSH-2.0-", raw_turn, &t));
    raw_close(&r);
}

static void
test_parse_user(void **state)
{
    (void)state;
    char s[64];
    bool ro;
    int replay;
    assert_true(sshd_parse_user("srv1", s, sizeof(s), &ro, &replay));
    assert_string_equal(s, "srv1");
    assert_false(ro);
    assert_int_equal(replay, SSHD_DEFAULT_REPLAY);
    assert_true(
        sshd_parse_user("srv1.replay=200.ro", s, sizeof(s), &ro, &replay));
    assert_true(ro);
    assert_int_equal(replay, 200);
    assert_false(sshd_parse_user("srv1.rw", s, sizeof(s), &ro, &replay));
    assert_false(sshd_parse_user(".ro", s, sizeof(s), &ro, &replay));
    assert_false(sshd_parse_user("srv1.replay=x", s, sizeof(s), &ro, &replay));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watch_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_viewers_identical_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_writer_types_and_takeover, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ro_cannot_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_are_identical, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_only_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_menu_power, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_key_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_idle_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_revoked_key_closes_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_startups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_auth_tries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_emfile, setup, teardown),
        cmocka_unit_test(test_parse_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
