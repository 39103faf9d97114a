/* ipmitool: the one way rescued runs the real `ipmitool -I lanplus`
 * against a BMC, for both its users: the ipmi:// power driver
 * (power_ipmi.c, one child per command) and the ipmi-sol: console source
 * (console.c, `sol deactivate` then `sol activate` on a pty).  Both get
 * the same command line, the same password handling and the same stop.
 *
 * The password never goes on the command line, which ps shows to every
 * local user: -E makes ipmitool read it from IPMI_PASSWORD, which only the
 * child's environment carries.  Ground floor: only util.  Nothing here
 * blocks but ipmitool_stop (at most IPMITOOL_STOP_GRACE_MS). */
#ifndef RESCUED_IPMITOOL_H
#define RESCUED_IPMITOOL_H

#include <stdbool.h>

/* A BMC as a power or console URI gives it; the strings stay the
 * caller's. */
struct ipmitool_bmc {
    const char *host;   /* without the [] of IPv6 */
    const char *port;   /* digits, "623" by default */
    const char *user;   /* NULL: no -U, no -E (no password either) */
    const char *pass;   /* goes to IPMI_PASSWORD only */
    const char *cipher; /* -C N, or NULL: ipmitool asks the BMC */
};

/* ipmitool ends at SIGTERM (it catches only SIGINT), so the grace only
 * bounds how long a wedged child holds the loop before SIGKILL. */
#define IPMITOOL_STOP_GRACE_MS 200

/* argv (NULL-terminated; free with strv_free) to run cmd, e.g. {"power",
 * "status", NULL}:  PROGRAM -I lanplus -H HOST -p PORT [-U USER -E]
 * -N 1 -R 3 [-C N] CMD...  (-N 1 -R 3: a dead BMC is given up on after
 * about 4 s, not ipmitool's longer default).  Pure. */
char **ipmitool_argv(const struct ipmitool_bmc *b, const char *const *cmd);
/* The child's environment: ours with IPMI_PASSWORD set to b's password,
 * or removed when there is none.  Free with strv_free. */
char **ipmitool_envp(const struct ipmitool_bmc *b);

/* Fork and exec ipmitool for cmd with child_spawn (util.h: fds, session,
 * tty).  Returns the pid, or a negative errno.  Does not block. */
int ipmitool_spawn(const struct ipmitool_bmc *b, const char *const *cmd,
                   const int fds[3], bool new_session, const char *tty);
/* End a child from ipmitool_spawn: SIGTERM, IPMITOOL_STOP_GRACE_MS, then
 * SIGKILL; always reaped.  pid <= 0 is ignored.  Blocks for at most the
 * grace. */
void ipmitool_stop(int pid);

/* The program run ("ipmitool", found in PATH), for messages. */
const char *ipmitool_program(void);

#ifdef UNITTEST
/* Run path instead of ipmitool (a stand-in script). */
void ipmitool_test_set_program(const char *path);
#endif

#endif
