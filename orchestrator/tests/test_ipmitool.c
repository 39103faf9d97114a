/* test_ipmitool: the one ipmitool command line that the ipmi power driver
 * and the ipmi-sol console share: its argv (never the password), the
 * child's environment (IPMI_PASSWORD), and spawn/stop against a stand-in
 * ipmitool (a shell script that records what it was given). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ipmitool.h"
#include "testutil.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *
join(char **v)
{
    struct buf b = {0};
    for (size_t i = 0; v[i]; i++)
        buf_printf(&b, "%s%s", i ? " " : "", v[i]);
    return b.data;
}

static const char *
env_get(char **envp, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp[i]; i++)
        if (!strncmp(envp[i], name, len) && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/* ipmitool_argv(b, cmd) joined by spaces is want, and never holds the
 * password: argv is what ps shows everyone. */
static void
expect_argv(const struct ipmitool_bmc *b, const char *const *cmd,
            const char *want)
{
    char **v = ipmitool_argv(b, cmd);
    char *s = join(v);
    assert_string_equal(s, want);
    assert_null(strstr(s, "s3cret"));
    free(s);
    strv_free(v);
}

static void
test_argv(void **state)
{
    (void)state;
    ipmitool_test_set_program("ipmitool");
    static const char *const status[] = {"power", "status", NULL};
    struct ipmitool_bmc b = {.host = "127.0.0.1",
                             .port = "6230",
                             .user = "admin",
                             .pass = "s3cret",
                             .cipher = "3"};
    expect_argv(&b, status,
                "ipmitool -I lanplus -H 127.0.0.1 -p 6230 -U admin "
                "-E -N 1 -R 3 -C 3 power status");

    /* The console's form, without a cipher. */
    static const char *const sol[] = {"sol", "activate", NULL};
    b.cipher = NULL;
    b.host = "bmc1";
    b.port = "623";
    expect_argv(&b, sol,
                "ipmitool -I lanplus -H bmc1 -p 623 -U admin -E "
                "-N 1 -R 3 sol activate");

    /* No user: neither -U nor -E (ipmitool then uses no password). */
    b.user = b.pass = NULL;
    b.cipher = "17";
    expect_argv(&b, sol,
                "ipmitool -I lanplus -H bmc1 -p 623 -N 1 -R 3 "
                "-C 17 sol activate");
}

static void
test_envp(void **state)
{
    (void)state;
    setenv("IPMI_PASSWORD", "inherited", 1);
    setenv("TEST_IPMITOOL_KEEP", "yes", 1);
    struct ipmitool_bmc b = {
        .host = "h", .port = "623", .user = "u", .pass = "s3cret"};
    char **e = ipmitool_envp(&b);
    assert_string_equal(env_get(e, "IPMI_PASSWORD"), "s3cret");
    assert_string_equal(env_get(e, "TEST_IPMITOOL_KEEP"), "yes");
    size_t n = 0;
    for (size_t i = 0; e[i]; i++)
        n += !strncmp(e[i], "IPMI_PASSWORD=", 14);
    assert_int_equal(n, 1);
    strv_free(e);

    /* No credentials: ours is not handed on. */
    b.user = b.pass = NULL;
    e = ipmitool_envp(&b);
    assert_null(env_get(e, "IPMI_PASSWORD"));
    strv_free(e);
    unsetenv("IPMI_PASSWORD");
    unsetenv("TEST_IPMITOOL_KEEP");
}

/* A child's stdout, read in turns of at most 10 ms. */
struct child_out {
    int fd;
    struct buf got;
};

static void
child_read(void *arg)
{
    struct child_out *c = arg;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    char b[256];
    if (poll(&p, 1, 10) <= 0)
        return;
    ssize_t n = read(c->fd, b, sizeof(b));
    if (n > 0)
        buf_append(&c->got, b, (size_t)n);
}

static void
test_spawn_stop(void **state)
{
    (void)state;
    char *dir = tu_tmpdir_new("test_ipmitool");
    assert_non_null(dir);
    char *tool = xasprintf("%s/ipmitool", dir);
    char *out = xasprintf("%s/out", dir);
    const char *script = "#!/bin/sh\n"
                         "echo \"$* pw=$IPMI_PASSWORD\"\n"
                         "case \"$*\" in *hang*) trap '' TERM; "
                         "echo trapped; exec sleep 60 ;; esac\n";
    assert_int_equal(write_file_atomic(tool, script, strlen(script), 0755), 0);
    ipmitool_test_set_program(tool);

    FILE *f = fopen(out, "w");
    assert_non_null(f);
    const int fds[3] = {-1, fileno(f), -1};
    struct ipmitool_bmc b = {
        .host = "bmc1", .port = "623", .user = "admin", .pass = "s3cret"};
    static const char *const status[] = {"power", "status", NULL};
    int pid = ipmitool_spawn(&b, status, fds, false, NULL);
    assert_true(pid > 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fclose(f);
    char *got = NULL;
    assert_int_equal(read_file(out, &got, NULL), 0);
    assert_string_equal(got, "-I lanplus -H bmc1 -p 623 -U admin -E -N 1 -R 3 "
                             "power status pw=s3cret\n");
    free(got);

    /* A child that ignores SIGTERM is killed after the grace, and reaped:
     * stop returns after the grace, long before the child (60 s) would
     * end by itself; the upper bound is only a hang guard. */
    static const char *const hang[] = {"hang", NULL};
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    pid = ipmitool_spawn(&b, hang, (const int[3]){-1, pfd[1], -1}, false, NULL);
    assert_true(pid > 0);
    close(pfd[1]);
    struct child_out co = {.fd = pfd[0]};
    assert_true(tu_until_text(10000, &co.got, "trapped\n", child_read, &co));
    int64_t t0 = now_mono_ms();
    ipmitool_stop(pid);
    int64_t took = now_mono_ms() - t0;
    assert_true(took >= IPMITOOL_STOP_GRACE_MS - 20);
    assert_true(took < 30000);
    close(pfd[0]);
    buf_free(&co.got);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);

    /* Nothing to run: the child says so the way execvp does. */
    ipmitool_test_set_program("/nonexistent/ipmitool");
    pid = ipmitool_spawn(&b, status, (const int[3]){-1, -1, -1}, false, NULL);
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(WEXITSTATUS(st), 127);
    ipmitool_test_set_program("ipmitool");

    assert_int_equal(tu_tmpdir_free(dir), 0);
    free(out);
    free(tool);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv),
        cmocka_unit_test(test_envp),
        cmocka_unit_test(test_spawn_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
