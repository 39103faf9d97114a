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
        execlp("ssh", "ssh", "-F", "/dev/null", "-T", "-p", port, "-i", key,
               "-o", "StrictHostKeyChecking=no", "-o",
               "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
               "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o",
               "ConnectTimeout=10", dest, (char *)NULL);
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
        cmocka_unit_test(test_parse_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
