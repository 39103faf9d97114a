/* Helpers shared by test_sshd.c and test_console_session.c: the daemon's
 * answers to a console face (struct console_session_cbs), as a fake that
 * records what it was asked, and what the daemon would hold around them:
 * a temp dir, the loop, and srv1's console on a fake serial port that the
 * test plays.  Pass the struct fake_daemon as cb_arg.  Include after
 * cmocka.h, console.h, console_session.h, testutil.h and util.h. */
#ifndef RESCUED_TEST_CONSOLEHELP_H
#define RESCUED_TEST_CONSOLEHELP_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct fake_daemon {
    char *dir; /* /tmp/<test binary>.XXXXXX */
    struct loop *l;
    struct tu_source *src; /* the serial port; got: what it received */
    struct console *c;     /* srv1's console; no other server has one */
    char allowed_fp[128];  /* the one SSH key authorize() lets in */
    bool writable;         /* false: "srv1 is rebooting" */
    struct buf audit;      /* "SERVER ACTION DETAIL\n" per line */
    int power_calls;
    enum console_power_op power_op; /* of the last call */
    char power_key[8];
};

static bool
fake_authorize(void *arg, const char *server, const struct console_who *who,
               char *role, size_t rolelen)
{
    struct fake_daemon *dm = arg;
    assert_int_equal(who->kind, CONSOLE_WHO_SSH_KEY);
    assert_non_null(strstr(who->fingerprint, "SHA256:"));
    if (strcmp(server, "srv1") != 0 ||
        strcmp(who->fingerprint, dm->allowed_fp) != 0)
        return false;
    snprintf(role, rolelen, "project:acme");
    return true;
}

static struct console *
fake_find_console(void *arg, const char *server)
{
    struct fake_daemon *dm = arg;
    return strcmp(server, "srv1") == 0 ? dm->c : NULL;
}

static bool
fake_writable(void *arg, const char *server, char *why, size_t len)
{
    (void)server;
    struct fake_daemon *dm = arg;
    if (!dm->writable)
        snprintf(why, len, "srv1 is rebooting");
    return dm->writable;
}

static void
fake_audit(void *arg, const char *server, const char *action,
           const char *detail)
{
    struct fake_daemon *dm = arg;
    buf_printf(&dm->audit, "%s %s %s\n", server, action, detail);
}

static int
fake_power(void *arg, const char *server, enum console_power_op op,
           const char *key)
{
    (void)server;
    struct fake_daemon *dm = arg;
    dm->power_calls++;
    dm->power_op = op;
    snprintf(dm->power_key, sizeof(dm->power_key), "%s", key ? key : "");
    return 0;
}

static const struct console_session_cbs fake_cbs = {
    .authorize = fake_authorize,
    .find_console = fake_find_console,
    .writable = fake_writable,
    .audit = fake_audit,
    .power = fake_power,
};

/* dm's dir and loop, and srv1's console (dm->c, writable) on a fake
 * serial port at dir/serial.sock (dm->src) that it starts connecting to;
 * it logs in dir/console. */
static void
fake_daemon_init(struct fake_daemon *dm)
{
    dm->dir = tu_tmpdir_new(program_invocation_short_name);
    assert_non_null(dm->dir);
    dm->l = loop_new();
    char *sock = xasprintf("%s/serial.sock", dm->dir);
    char *uri = xasprintf("unix:%s", sock);
    char *logdir = xasprintf("%s/console", dm->dir);
    dm->src = tu_source_new(sock);
    assert_non_null(dm->src);
    char err[256] = "";
    dm->writable = true;
    dm->c = console_new(dm->l, "srv1", uri, logdir, 0, err, sizeof(err));
    if (!dm->c)
        fail_msg("console_new: %s", err);
    free(logdir);
    free(uri);
    free(sock);
}

/* The console, what was recorded, the loop, the serial port and the dir
 * with all in it. */
static void
fake_daemon_free(struct fake_daemon *dm)
{
    console_free(dm->c);
    dm->c = NULL;
    buf_free(&dm->audit);
    loop_free(dm->l);
    tu_source_free(dm->src);
    assert_int_equal(tu_tmpdir_free(dm->dir), 0);
}

#endif
