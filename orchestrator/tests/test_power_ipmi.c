/* test_power_ipmi: the ipmi: driver's pure part (the `power status`
 * answer), and the driver on a real loop against a stand-in ipmitool (a
 * shell script that logs its argv and IPMI_PASSWORD and answers like
 * ipmitool).  ipmitool's argv itself: test_ipmitool.c.
 * qemu-tests/cases/015-ipmi-power drives the real ipmitool against
 * ipmi_sim. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ipmitool.h"
#include "log.h"
#include "loop.h"
#include "power.h"
#include "power_driver.h"
#include "testutil.h"
#include "uri.h"
#include "util.h"

#include "powerhelp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dir;
static char tool[128], argv_log[128];

static const char fake[] =
    "#!/bin/sh\n"
    "echo \"$* pw=$IPMI_PASSWORD\" >> \"$(dirname \"$0\")/argv.log\"\n"
    "case \"$*\" in\n"
    "*'power status') cat \"$(dirname \"$0\")/status\" ;;\n"
    "*'power diag') echo 'Set Chassis Power Control to Diag failed: "
    "Invalid data field in request' >&2; exit 1 ;;\n"
    "*'power off') sleep 30 ;;\n"
    /* A BMC gone in the middle of the reset (ipmitool's words then). */
    "*'power reset') [ ! -e \"$(dirname \"$0\")/gone\" ] || "
    "{ echo 'Unable to set Chassis Power Control to Reset' >&2; "
    "echo 'Close Session command failed' >&2; exit 1; } ;;\n"
    /* The boot device, kept in a file unless the BMC drops it, and read
     * back as ipmitool shows parameter 5; the valid-timer clear refused
     * when the file noraw exists. */
    "*'raw 0x00 0x08 0x03 0x08') [ ! -e \"$(dirname \"$0\")/noraw\" ] || "
    "{ echo 'Unable to send RAW command' >&2; exit 1; } ;;\n"
    "*'bootdev pxe'*) echo 04 > \"$(dirname \"$0\")/dev\" ;;\n"
    "*'bootdev disk'*) echo 08 > \"$(dirname \"$0\")/dev\" ;;\n"
    "*'bootparam get 5') [ -e \"$(dirname \"$0\")/drop\" ] && "
    "echo 00 > \"$(dirname \"$0\")/dev\";\n"
    "  echo \"Boot parameter data: 80$(cat \"$(dirname \"$0\")/dev\")000000\" "
    ";;\n"
    "*) echo ok ;;\n"
    "esac\n";

static int
setup(void **state)
{
    (void)state;
    dir = tu_tmpdir_new("test_power_ipmi");
    assert_non_null(dir);
    snprintf(tool, sizeof(tool), "%s/ipmitool", dir);
    snprintf(argv_log, sizeof(argv_log), "%s/argv.log", dir);
    assert_int_equal(write_file_atomic(tool, fake, strlen(fake), 0755), 0);
    char st[128];
    snprintf(st, sizeof(st), "%s/status", dir);
    const char *on = "Chassis Power is on\n";
    assert_int_equal(write_file_atomic(st, on, strlen(on), 0644), 0);
    ipmitool_test_set_program(tool);
    power_test_set_timeout(2000);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    int rc = tu_tmpdir_free(dir);
    dir = NULL;
    return rc;
}

static void
test_parse_status(void **state)
{
    (void)state;
    assert_string_equal(power_ipmi_parse_status("Chassis Power is on\n"), "on");
    assert_string_equal(power_ipmi_parse_status("Chassis Power is off"), "off");
    assert_string_equal(
        power_ipmi_parse_status("warning: x\nChassis Power is off\r\n"), "off");
    assert_null(power_ipmi_parse_status(""));
    assert_null(power_ipmi_parse_status("Chassis Power is onward\n"));
    assert_null(power_ipmi_parse_status("Chassis Power Control: Up/On\n"));
}

/* `chassis bootparam get 5` as ipmitool prints it (from ipmi_sim). */
static void
test_parse_bootdev(void **state)
{
    (void)state;
    assert_string_equal(
        power_ipmi_parse_bootdev("Boot parameter version: 1\n"
                                 "Boot parameter data: 0008000000\n"
                                 " Boot Flags :\n"),
        "disk");
    assert_string_equal(
        power_ipmi_parse_bootdev("Boot parameter data: a004000000\n"), "pxe");
    assert_string_equal(
        power_ipmi_parse_bootdev("Boot parameter data: 0000000000\n"), "none");
    assert_string_equal(
        power_ipmi_parse_bootdev("Boot parameter data: 8014000000\n"), "other");
    assert_null(power_ipmi_parse_bootdev("Boot parameter data: 0\n"));
    assert_null(power_ipmi_parse_bootdev("Set Boot Device to disk\n"));
    assert_null(power_ipmi_parse_bootdev(NULL));
}

static char *
log_text(void)
{
    char *s = NULL;
    size_t n;
    if (read_file(argv_log, &s, &n) < 0)
        return xstrdup("");
    return s;
}

/* What ipmitool had run when the reset's sending callback came. */
static void
log_at_sending(struct watch *w)
{
    free(w->then);
    w->then = log_text();
}

/* The reset's sending callback runs once, after `power status` and right
 * before the command that resets (`power reset`, or `power on` for a
 * chassis that is off), and never for another op: what the fleet stores
 * so that a restart does not reset again a server the BMC may have reset
 * (case 069). */
static void
test_reset_sending(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char err[256] = "";
    struct power *p =
        power_new(l, "ipmi://admin:s3cret@127.0.0.1:1", err, sizeof(err));
    assert_non_null(p);
    struct watch w = {.at_sending = log_at_sending};
    char st[128];
    snprintf(st, sizeof(st), "%s/status", dir);
    for (int off = 0; off < 2; off++) {
        const char *says =
            off ? "Chassis Power is off\n" : "Chassis Power is on\n";
        const char *resets = off ? "power on" : "power reset";
        write_file_atomic(st, says, strlen(says), 0644);
        unlink(argv_log);
        assert_int_equal(run_watched(l, p, POWER_RESET, &w), 0);
        assert_int_equal(w.sendings, 1);
        assert_non_null(strstr(w.then, "power status"));
        assert_null(strstr(w.then, resets));
        char *s = log_text();
        assert_non_null(strstr(s, resets));
        free(s);
    }
    assert_int_equal(run_watched(l, p, POWER_STATUS, &w), 0);
    assert_int_equal(w.sendings, 0);
    free(w.then);
    power_free(p);
    loop_free(l);
}

static void
test_driver(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char err[256] = "";
    struct power *p = power_new(l, "ipmi://admin:s3cret@127.0.0.1:1?cipher=3",
                                err, sizeof(err));
    assert_non_null(p);
    power_set_name(p, "srv1");
    assert_false(power_is_manual(p));
    struct result r;

    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "on");
    char *s = log_text();
    /* The start-up probe and ours; the password only in the environment. */
    assert_non_null(strstr(s, "-U admin -E -N 1 -R 3 -C 3 power status "
                              "pw=s3cret"));
    free(s);

    /* Reset of a server that is on: status, then reset. */
    unlink(argv_log);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    s = log_text();
    assert_non_null(strstr(s, "power status"));
    assert_non_null(strstr(s, "power reset"));
    assert_null(strstr(s, "power on"));
    free(s);

    /* Of one that is off: powered on instead. */
    char st[128];
    snprintf(st, sizeof(st), "%s/status", dir);
    write_file_atomic(st, "Chassis Power is off\n", 21, 0644);
    unlink(argv_log);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    s = log_text();
    assert_non_null(strstr(s, "power on"));
    assert_null(strstr(s, "power reset"));
    free(s);

    /* A one-time boot device: the valid timer cleared, the device set,
     * read back, in that order. */
    static const enum power_op bootops[] = {POWER_NETBOOT_ONCE,
                                            POWER_BOOT_DISK_ONCE};
    static const char *const bootdevs[] = {"pxe", "disk"};
    for (size_t i = 0; i < 2; i++) {
        unlink(argv_log);
        if (run_op(l, p, bootops[i], NULL, &r) != 0)
            fail_msg("%s", r.detail);
        s = log_text();
        char *set =
            xasprintf("chassis bootdev %s options=efiboot pw=", bootdevs[i]);
        const char *clear = strstr(s, "raw 0x00 0x08 0x03 0x08 pw=");
        const char *dev = strstr(s, set);
        const char *back = strstr(s, "chassis bootparam get 5 pw=");
        assert_true(clear && dev && back && clear < dev && dev < back);
        free(set);
        free(s);
    }
    /* A BMC without the timer parameter still gets the device. */
    char flag[128];
    snprintf(flag, sizeof(flag), "%s/noraw", dir);
    assert_int_equal(write_file_atomic(flag, "", 0, 0644), 0);
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    unlink(flag);
    /* One that accepts it and drops it: the read-back says so. */
    snprintf(flag, sizeof(flag), "%s/drop", dir);
    assert_int_equal(write_file_atomic(flag, "", 0, 0644), 0);
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), -EIO);
    assert_string_equal(r.detail,
                        "ipmi 127.0.0.1:1: chassis bootdev disk: the BMC did "
                        "not keep it (boot parameter 5 reads none)");
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), -EIO);
    unlink(flag);

    /* A BMC gone mid-command: the reason is the command's failure, not
     * the session close ipmitool tries after it. */
    write_file_atomic(st, "Chassis Power is on\n", 20, 0644);
    snprintf(flag, sizeof(flag), "%s/gone", dir);
    assert_int_equal(write_file_atomic(flag, "", 0, 0644), 0);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), -EIO);
    assert_string_equal(r.detail, "ipmi 127.0.0.1:1: power reset: Unable to "
                                  "set Chassis Power Control to Reset");
    unlink(flag);

    /* A refusal names the command and carries ipmitool's own words. */
    assert_int_equal(run_op(l, p, POWER_NMI, NULL, &r), -EIO);
    assert_string_equal(r.detail,
                        "ipmi 127.0.0.1:1: chassis power diag: Set Chassis "
                        "Power Control to Diag failed: Invalid data field in "
                        "request");

    /* What IPMI has no command for is refused, nothing run. */
    unlink(argv_log);
    assert_int_equal(run_op(l, p, POWER_SYSRQ, "h", &r), -ENOTSUP);
    assert_non_null(strstr(r.detail, "IPMI has no sysrq"));
    assert_int_equal(run_op(l, p, POWER_SERIAL_BREAK, NULL, &r), -ENOTSUP);
    assert_int_equal(access(argv_log, F_OK), -1);

    /* A BMC that never answers: the child (sleep 30) is killed at the
     * deadline, not before it; had the deadline not fired, the child's own
     * end would have been a success.  run_op's bound is a hang guard. */
    int64_t t0 = now_mono_ms();
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), -ETIMEDOUT);
    assert_true(now_mono_ms() - t0 >= 2000);
    assert_string_equal(r.detail,
                        "ipmi 127.0.0.1:1: power off: no answer in 2000 ms");

    /* Pending requests are cancelled by power_free, the child ended. */
    memset(&r, 0, sizeof(r));
    power_request(p, POWER_OFF, NULL, on_done, &r);
    loop_run_once(l, 50);
    power_free(p);
    assert_int_equal(r.status, -ECANCELED);
    loop_free(l);
}

static void
test_reachable(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char err[256] = "";
    /* Nobody on this UDP port: refused at once, with the reason. */
    struct power *p = power_new(l, "ipmi://a:b@127.0.0.1:9", err, sizeof(err));
    assert_non_null(p);
    power_free(p);
    p = power_new(l, "ipmi://a:b@127.0.0.1:9", err, sizeof(err));
    /* The start-up probe done (it succeeds: the stand-in answers): a status
     * request queued behind it completes after it.  The ping decides. */
    struct result r;
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    char *s = log_text();
    const char *first = strstr(s, "power status");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "power status"));
    free(s);
    assert_false(power_reachable(p, err, sizeof(err)));
    assert_string_equal(err, "ipmi 127.0.0.1:9: BMC unreachable: Connection "
                             "refused");
    power_free(p);
    loop_free(l);
}

/* The BMC's password never reaches a log line, even at debug and before
 * the driver has its server's name: power_new's first status probe logged
 * the whole ipmi://user:pass@host. */
static void
test_password_not_logged(void **state)
{
    (void)state;
    char *logf = xasprintf("%s/rescued.log", dir);
    int saved = tu_log_capture(logf, LOG_LEVEL_DEBUG);
    struct loop *l = loop_new();
    char err[256] = "";
    struct power *p = power_new(
        l, "ipmi://admin:s3cret-pw@127.0.0.1:1?cipher=3", err, sizeof(err));
    assert_non_null(p);
    struct result r;
    int st = run_op(l, p, POWER_STATUS, NULL, &r);
    power_free(p);
    loop_free(l);
    int spawned = tu_log_lines(logf, "ipmitool power status");
    int leaked = tu_log_lines(logf, "s3cret-pw");
    int named =
        tu_log_lines(logf, "ipmi://admin@127.0.0.1:1?cipher=3: ipmitool");
    tu_log_release(saved, LOG_LEVEL_WARN);
    char *text = NULL;
    size_t n;
    assert_int_equal(read_file(logf, &text, &n), 0);
    free(logf);
    if (spawned < 1 || leaked || named < 1)
        fail_msg("the log:\n%s", text);
    free(text);
    assert_int_equal(st, 0);
    assert_true(spawned >= 1); /* the log was read */
    assert_int_equal(leaked, 0);
    assert_true(named >= 1);
}

/* A stand-in BMC's RMCP port: a UDP socket on 127.0.0.1 that answers
 * pings with a pong when asked to, or stays silent. */
struct bmc {
    int fd, port;
    bool answer;
    int pings;
};

static void
bmc_open(struct bmc *b, bool answer)
{
    memset(b, 0, sizeof(*b));
    b->answer = answer;
    b->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(b->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(b->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(b->fd, (struct sockaddr *)&sa, &sl);
    b->port = ntohs(sa.sin_port);
}

struct turn {
    struct loop *l;
    struct bmc *b;
    int ticks; /* a 10 ms timer's firings: the loop is not blocked */
};

static void
bmc_turn(void *arg)
{
    struct turn *t = arg;
    loop_run_once(t->l, 5);
    unsigned char in[64];
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t n =
        recvfrom(t->b->fd, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
    if (n < 12)
        return;
    t->b->pings++;
    if (t->b->answer) {
        unsigned char pong[28] = {0x06, 0x00, 0xff, 0x06, 0,
                                  0,    0x11, 0xbe, 0x40, 0x5a};
        sendto(t->b->fd, pong, sizeof(pong), 0, (struct sockaddr *)&from, fl);
    }
}

static int64_t
tick(struct loop *l, void *arg)
{
    (void)l;
    ((struct turn *)arg)->ticks++;
    return 10;
}

struct verdict {
    int calls, status;
    char err[256];
};

static void
on_verdict(void *arg, int status, const char *err)
{
    struct verdict *v = arg;
    v->calls++;
    v->status = status;
    snprintf(v->err, sizeof(v->err), "%s", err ? err : "");
}

static bool
have_verdict(void *arg)
{
    return ((struct verdict *)arg)->calls > 0;
}

/* power_preflight pings on the loop: it returns at once, the loop keeps
 * turning (a 10 ms timer fires meanwhile), and the verdict comes from the
 * loop: a pong is reachable, silence is "unreachable" after 300 ms, two
 * checks share one ping, and a check still waiting when the driver goes
 * is cancelled. */
static void
test_preflight_async(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char err[256] = "", uri[64];
    struct bmc b;
    bmc_open(&b, true);
    snprintf(uri, sizeof(uri), "ipmi://a:b@127.0.0.1:%d", b.port);
    struct power *p = power_new(l, uri, err, sizeof(err));
    assert_non_null(p);
    struct turn t = {l, &b, 0};
    /* the start-up status probe first (the stand-in answers "on") */
    struct result r;
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);

    struct verdict v1 = {0}, v2 = {0};
    int64_t t0 = now_mono_ms();
    power_preflight(p, on_verdict, &v1);
    power_preflight(p, on_verdict, &v2);
    assert_true(now_mono_ms() - t0 < 50);
    assert_int_equal(v1.calls, 0); /* never before it returns */
    assert_true(tu_until(2000, have_verdict, &v2, bmc_turn, &t));
    assert_true(tu_until(100, have_verdict, &v1, bmc_turn, &t));
    assert_int_equal(v1.status, 0);
    assert_int_equal(v2.status, 0);
    assert_int_equal(b.pings, 1);
    power_free(p);
    close(b.fd);

    /* A silent BMC: 300 ms with the loop free, then the reason. */
    bmc_open(&b, false);
    snprintf(uri, sizeof(uri), "ipmi://a:b@127.0.0.1:%d", b.port);
    p = power_new(l, uri, err, sizeof(err));
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    uint64_t timer = loop_add_timer(l, 10, tick, &t);
    struct verdict v = {0};
    t0 = now_mono_ms();
    power_preflight(p, on_verdict, &v);
    assert_true(now_mono_ms() - t0 < 50);
    assert_true(tu_until(2000, have_verdict, &v, bmc_turn, &t));
    int64_t took = now_mono_ms() - t0;
    assert_true(took >= 250 && took < 1500);
    assert_true(t.ticks >= 10); /* the loop ran all along */
    assert_int_equal(v.status, -EHOSTUNREACH);
    char want[128];
    snprintf(want, sizeof(want),
             "ipmi 127.0.0.1:%d: BMC unreachable: no answer to an RMCP ping "
             "in 300 ms",
             b.port);
    assert_string_equal(v.err, want);
    assert_int_equal(b.pings, 2);
    loop_del_timer(l, timer);

    /* Waiting when the driver goes: cancelled, once. */
    memset(&v, 0, sizeof(v));
    power_preflight(p, on_verdict, &v);
    power_free(p);
    assert_int_equal(v.calls, 1);
    assert_int_equal(v.status, -ECANCELED);
    tu_pump_for(l, 50);
    assert_int_equal(v.calls, 1);
    close(b.fd);
    loop_free(l);
}

int
main(void)
{
    log_init(getenv("POWER_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
             "test_power_ipmi");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_parse_bootdev),
        cmocka_unit_test_setup_teardown(test_driver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_not_logged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preflight_async, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
