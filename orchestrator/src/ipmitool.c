/* ipmitool: argv, environment, spawn and stop of the real ipmitool, shared
 * by the ipmi:// power driver and the ipmi-sol: console source. */
#include "ipmitool.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>

static const char *program = "ipmitool";

const char *
ipmitool_program(void)
{
    return program;
}

#ifdef UNITTEST
void
ipmitool_test_set_program(const char *path)
{
    program = path;
}
#endif

char **
ipmitool_argv(const struct ipmitool_bmc *b, const char *const *cmd)
{
    size_t n = 0;
    while (cmd[n])
        n++;
    /* At most 16 words of ours, then cmd, then the NULL. */
    char **argv = xcalloc(16 + n + 1, sizeof(*argv));
    size_t k = 0;
    const char *head[] = {program, "-I", "lanplus", "-H",
                          b->host, "-p", b->port};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
        argv[k++] = xstrdup(head[i]);
    if (b->user) {
        argv[k++] = xstrdup("-U");
        argv[k++] = xstrdup(b->user);
        argv[k++] = xstrdup("-E");
    }
    const char *retry[] = {"-N", "1", "-R", "3"};
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
        argv[k++] = xstrdup(retry[i]);
    if (b->cipher) {
        argv[k++] = xstrdup("-C");
        argv[k++] = xstrdup(b->cipher);
    }
    for (size_t i = 0; i < n; i++)
        argv[k++] = xstrdup(cmd[i]);
    return argv;
}

char **
ipmitool_envp(const struct ipmitool_bmc *b)
{
    return env_with("IPMI_PASSWORD", b->user ? b->pass : NULL);
}

int
ipmitool_spawn(const struct ipmitool_bmc *b, const char *const *cmd,
               const int fds[3], bool new_session, const char *tty)
{
    char **argv = ipmitool_argv(b, cmd), **envp = ipmitool_envp(b);
    int pid = child_spawn(argv, envp, fds, new_session, tty);
    int e = errno;
    strv_free(argv);
    strv_free(envp);
    return pid < 0 ? -e : pid;
}

void
ipmitool_stop(int pid)
{
    child_stop(pid, IPMITOOL_STOP_GRACE_MS);
}
