/* test_power: the manual: driver, and the qmp: driver against a real
 * QEMU (TCG, 64 MB, no disk, a NIC without any network backend).  The
 * effects are checked through a second QMP socket of the same QEMU,
 * since QEMU serves one client per QMP socket. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "power.h"
#include "testutil.h"
#include "util.h"

#include "powerhelp.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

void power_test_set_timeout(int ms);

static char *dir;
static char sock_path[128], check_path[128], log_path[128];
static pid_t qemu_pid = -1;
static int check_fd = -1;
static FILE *check_f;
static char events[64][32];
static int nevents;
/* Set while a test runs: a failed test may leave a driver connected to
 * QEMU's one-client QMP socket, so the next test gets a fresh QEMU. */
static bool dirty;

/* --- QEMU ------------------------------------------------------------- */

static void
qemu_kill(void)
{
    if (check_f)
        fclose(check_f);
    check_f = NULL;
    check_fd = -1;
    if (qemu_pid > 0) {
        kill(qemu_pid, SIGKILL);
        waitpid(qemu_pid, NULL, 0);
    }
    qemu_pid = -1;
}

static int
check_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strlcpy_s(sa.sun_path, check_path, sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    check_fd = fd;
    check_f = fdopen(fd, "r+");
    return 0;
}

/* Read one message from the check socket; records events. */
static json_t *
check_read(void)
{
    char line[65536];
    if (!fgets(line, sizeof(line), check_f))
        return NULL;
    json_t *m = json_loads(line, 0, NULL);
    const char *ev = json_string_value(json_object_get(m, "event"));
    if (ev && nevents < 64)
        strlcpy_s(events[nevents++], ev, sizeof(events[0]));
    return m;
}

/* Run a command on the check socket; returns its "return" (or the whole
 * message on error), to be json_decref'd. */
static json_t *
check_cmd(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    fprintf(check_f, "%s\n", cmd);
    fflush(check_f);
    for (;;) {
        json_t *m = check_read();
        assert_non_null(m);
        if (json_object_get(m, "event")) {
            json_decref(m);
            continue;
        }
        json_t *ret = json_object_get(m, "return");
        if (!ret)
            return m;
        json_incref(ret);
        json_decref(m);
        return ret;
    }
}

static char *
check_status(void)
{
    json_t *r = check_cmd("{\"execute\":\"query-status\"}");
    const char *s = json_string_value(json_object_get(r, "status"));
    char *out = xstrdup(s ? s : "?");
    json_decref(r);
    return out;
}

static bool
saw_event(const char *name)
{
    for (int i = 0; i < nevents; i++)
        if (!strcmp(events[i], name))
            return true;
    return false;
}

/* Wait up to 5 s for an event on the check socket. */
static bool
check_wait_event(const char *name)
{
    int64_t deadline = now_mono_ms() + 5000;
    while (!saw_event(name) && now_mono_ms() < deadline) {
        json_decref(check_cmd("{\"execute\":\"query-status\"}"));
        if (!saw_event(name))
            usleep(50000);
    }
    return saw_event(name);
}

static int
qemu_start(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char q1[160], q2[160];
        snprintf(q1, sizeof(q1), "unix:%s,server=on,wait=off", sock_path);
        snprintf(q2, sizeof(q2), "unix:%s,server=on,wait=off", check_path);
        /* No netdev: the NIC has no peer and sends nothing anywhere. */
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel", "tcg",
               "-nodefaults", "-display", "none", "-m", "64", "-qmp", q1,
               "-qmp", q2, "-device",
               "virtio-net-pci,id=net0,romfile=", "-chardev", "null,id=serial0",
               "-device", "isa-serial,chardev=serial0", (char *)NULL);
        _exit(127);
    }
    qemu_pid = pid;
    /* Ready when the check socket answers. */
    int64_t deadline = now_mono_ms() + 15000;
    while (now_mono_ms() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            qemu_pid = -1;
            return -1;
        }
        if (check_connect() == 0) {
            json_t *g = check_read();
            json_decref(g);
            nevents = 0;
            json_decref(check_cmd("{\"execute\":\"qmp_capabilities\"}"));
            return 0;
        }
        usleep(50000);
    }
    return -1;
}

static int
group_setup(void **state)
{
    (void)state;
    log_init(getenv("POWER_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
             "test_power");
    if (!(dir = tu_tmpdir_new("test_power")))
        return -1;
    snprintf(sock_path, sizeof(sock_path), "%s/q.sock", dir);
    snprintf(check_path, sizeof(check_path), "%s/check.sock", dir);
    snprintf(log_path, sizeof(log_path), "%s/qemu.log", dir);
    return qemu_start();
}

static int
group_teardown(void **state)
{
    (void)state;
    qemu_kill();
    return tu_tmpdir_free(dir);
}

/* Each test starts with a running QEMU. */
static int
test_setup(void **state)
{
    (void)state;
    power_test_set_timeout(5000);
    bool was_dirty = dirty;
    dirty = true;
    if (!was_dirty && qemu_pid > 0 && kill(qemu_pid, 0) == 0 && check_f) {
        kill(qemu_pid, SIGCONT);
        json_decref(check_cmd("{\"execute\":\"cont\"}"));
        return 0;
    }
    qemu_kill();
    return qemu_start();
}

/* --- driving the loop ------------------------------------------------- */

static struct power *
qmp_new(struct loop *l, const char *suffix)
{
    char uri[256], err[256] = "";
    snprintf(uri, sizeof(uri), "qmp:%s%s", sock_path, suffix);
    struct power *p = power_new(l, uri, err, sizeof(err));
    if (!p)
        fail_msg("power_new(%s): %s", uri, err);
    return p;
}

/* --- tests ------------------------------------------------------------ */

static void
test_manual(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char err[256] = "";
    struct power *p = power_new(l, "manual:", err, sizeof(err));
    assert_non_null(p);
    power_set_name(p, "srv9");
    assert_true(power_is_manual(p));
    assert_true(power_reachable(p, err, sizeof(err)));
    struct result r;
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), -ENOTSUP);
    /* The operator's reset boots what the firmware picks. */
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), -ENOTSUP);
    assert_string_equal(r.detail, "manual: cannot choose the boot device");
    /* An op past the enum is refused the same way by every driver. */
    assert_int_equal(run_op(l, p, (enum power_op)99, NULL, &r), -EINVAL);
    assert_string_equal(r.detail, "unknown power op");
    power_free(p);
    loop_free(l);
    dirty = false;
}

/* --sim-power: the simulated hand answers the power it left the server
 * in, and still cannot choose the boot device (exit goes through iPXE as
 * with a person). */
static void
test_manual_sim(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char err[256] = "";
    power_sim_set(true);
    struct power *p = power_new(l, "manual:", err, sizeof(err));
    assert_non_null(p);
    struct result r;
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "shutdown");
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "running");
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), -ENOTSUP);
    power_free(p);
    power_sim_set(false);
    loop_free(l);
    dirty = false;
}

static void
test_bad_uri(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    const char *bad[] = {"qmp:",
                         "qmp:relative.sock",
                         "bogus:/x",
                         "qmp:/x?nic=",
                         "qmp:/x?bootdev=net0",
                         "",
                         "redfish://bmc/Systems/1?tls=off"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        struct power *p = power_new(l, bad[i], err, sizeof(err));
        if (p)
            fail_msg("accepted %s", bad[i]);
        assert_true(strlen(err) > 0);
    }
    char err[256] = "";
    struct power *p = power_new(l, "qmp:/run/x.qmp?nic=net0", err, sizeof(err));
    assert_non_null(p);
    assert_false(power_is_manual(p));
    struct result r;
    assert_int_equal(run_op(l, p, (enum power_op)99, NULL, &r), -EINVAL);
    assert_string_equal(r.detail, "unknown power op");
    power_free(p);
    /* Only redfish takes a credentials file. */
    p = power_new(l, "manual:", err, sizeof(err));
    assert_int_equal(power_set_credentials(p, "/nonexistent", err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "power_credentials: the manual driver takes its "
                             "credentials in the power uri");
    power_free(p);
    loop_free(l);
    dirty = false;
}

static void
test_status_off_on(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct power *p = qmp_new(l, "");
    char err[256] = "";
    assert_true(power_reachable(p, err, sizeof(err)));
    struct result r;

    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "running");

    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    char *s = check_status();
    assert_string_equal(s, "paused");
    free(s);
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "paused");

    assert_int_equal(run_op(l, p, POWER_ON, NULL, &r), 0);
    s = check_status();
    assert_string_equal(s, "running");
    free(s);

    /* On when already on: nothing happens, no reset. */
    nevents = 0;
    assert_int_equal(run_op(l, p, POWER_ON, NULL, &r), 0);
    s = check_status();
    assert_string_equal(s, "running");
    free(s);
    assert_false(saw_event("RESET"));

    power_free(p);
    loop_free(l);
    dirty = false;
}

static void
test_reset(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct power *p = qmp_new(l, "");
    struct result r;

    nevents = 0;
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(check_wait_event("RESET"));
    char *s = check_status();
    assert_string_equal(s, "running");
    free(s);

    /* Reset powers on a server that is off. */
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    s = check_status();
    assert_string_equal(s, "paused");
    free(s);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    s = check_status();
    assert_string_equal(s, "running");
    free(s);

    power_free(p);
    loop_free(l);
    dirty = false;
}

static void
test_nmi_sysrq_break(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct power *p = qmp_new(l, "");
    struct result r;

    assert_int_equal(run_op(l, p, POWER_NMI, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_SYSRQ, "h", &r), 0);
    assert_int_equal(run_op(l, p, POWER_SYSRQ, "7", &r), 0);
    assert_int_equal(run_op(l, p, POWER_SYSRQ, "F1", &r), -EINVAL);
    assert_int_equal(run_op(l, p, POWER_SYSRQ, NULL, &r), -EINVAL);
    assert_int_equal(run_op(l, p, POWER_SERIAL_BREAK, "serial0", &r), 0);
    /* QMP's own error reaches the caller. */
    assert_int_equal(run_op(l, p, POWER_SERIAL_BREAK, "nope", &r), -EIO);
    assert_non_null(strstr(r.detail, "nope"));
    /* The connection is still good after an error. */
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "running");

    power_free(p);
    loop_free(l);
    dirty = false;
}

static void
test_netboot_once(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct result r;

    struct power *p = qmp_new(l, "");
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), -ENOTSUP);
    power_free(p);

    json_t *v = check_cmd("{\"execute\":\"qom-get\",\"arguments\":"
                          "{\"path\":\"net0\",\"property\":\"bootindex\"}}");
    assert_int_equal(json_integer_value(v), -1);
    json_decref(v);

    p = qmp_new(l, "?nic=net0");
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), 0);
    v = check_cmd("{\"execute\":\"qom-get\",\"arguments\":"
                  "{\"path\":\"net0\",\"property\":\"bootindex\"}}");
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), 0);
    json_decref(v);
    /* A second rescue finds it set already: still fine, still 0. */
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), 0);
    v = check_cmd("{\"execute\":\"qom-get\",\"arguments\":"
                  "{\"path\":\"net0\",\"property\":\"bootindex\"}}");
    assert_int_equal(json_integer_value(v), 0);
    json_decref(v);
    json_decref(
        check_cmd("{\"execute\":\"qom-set\",\"arguments\":{\"path\":"
                  "\"net0\",\"property\":\"bootindex\",\"value\":-1}}"));
    power_free(p);

    p = qmp_new(l, "?nic=nosuch0");
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), -EIO);
    assert_true(strlen(r.detail) > 0);
    power_free(p);
    loop_free(l);
    dirty = false;
}

static int
nic_bootindex(void)
{
    json_t *v = check_cmd("{\"execute\":\"qom-get\",\"arguments\":"
                          "{\"path\":\"net0\",\"property\":\"bootindex\"}}");
    assert_true(json_is_integer(v));
    int n = (int)json_integer_value(v);
    json_decref(v);
    return n;
}

static void
set_nic_bootindex(int n)
{
    json_decref(check_cmd("{\"execute\":\"qom-set\",\"arguments\":{\"path\":"
                          "\"net0\",\"property\":\"bootindex\",\"value\":%d}}",
                          n));
}

/* QEMU has no one-time boot device, and rebuilds the firmware's boot
 * order at every reset (SeaBIOS's own too): the NIC leaves the boot order
 * for the reset after the disk boot, and is put back before the next
 * reset, power op or netboot, so that one netboots again. */
static void
test_disk_boot_once(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct result r;

    struct power *p = qmp_new(l, "");
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), -ENOTSUP);
    assert_non_null(strstr(r.detail, "disk boot needs ?nic=DEVICE_ID"));
    power_free(p);

    set_nic_bootindex(1);
    p = qmp_new(l, "?nic=net0");
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), -1);
    /* Asked twice before the reset: what is put back is still 1. */
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), -1);
    nevents = 0;
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(check_wait_event("RESET"));
    /* Out until the firmware is surely past it: the next reset. */
    assert_int_equal(nic_bootindex(), -1);
    nevents = 0;
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(check_wait_event("RESET"));
    assert_int_equal(nic_bootindex(), 1);
    /* A reset with no disk boot asked changes nothing. */
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), 1);
    /* Power off after a carried-out disk boot puts it back too. */
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), -1);
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), 1);
    assert_int_equal(run_op(l, p, POWER_ON, NULL, &r), 0);

    /* A rescue's netboot voids a disk boot not yet carried out. */
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), 0);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_int_equal(nic_bootindex(), 0);
    set_nic_bootindex(-1);
    power_free(p);
    loop_free(l);
    dirty = false;
}

static void
test_missing_socket(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char uri[256], err[256] = "", path[160];
    struct result r;

    snprintf(path, sizeof(path), "%s/none.sock", dir);
    snprintf(uri, sizeof(uri), "qmp:%s", path);
    struct power *p = power_new(l, uri, err, sizeof(err));
    assert_non_null(p);
    assert_false(power_reachable(p, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), -ENOENT);
    assert_non_null(strstr(r.detail, path));
    power_free(p);

    /* A socket file nobody listens on, as a killed QEMU leaves it. */
    snprintf(path, sizeof(path), "%s/stale.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strlcpy_s(sa.sun_path, path, sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    snprintf(uri, sizeof(uri), "qmp:%s", path);
    p = power_new(l, uri, err, sizeof(err));
    assert_non_null(p);
    assert_false(power_reachable(p, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), -ECONNREFUSED);
    char want[200];
    snprintf(want, sizeof(want), "qmp %s: connection refused", path);
    assert_string_equal(r.detail, want);
    power_free(p);
    unlink(path);
    loop_free(l);
    dirty = false;
}

/* A peer that accepts and closes before its first byte (a QEMU dying as
 * it starts, or any other program on the socket): the request fails with
 * the reason, the daemon goes on. */
static void
test_peer_closes_at_once(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char uri[256], err[256] = "", path[160];
    struct result r;

    snprintf(path, sizeof(path), "%s/mute.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strlcpy_s(sa.sun_path, path, sizeof(sa.sun_path));
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    snprintf(uri, sizeof(uri), "qmp:%s", path);
    struct power *p = power_new(l, uri, err, sizeof(err));
    assert_non_null(p);

    memset(&r, 0, sizeof(r));
    power_request(p, POWER_STATUS, NULL, on_done, &r);
    /* The connect is queued in the backlog as soon as the request is. */
    tu_pump_turns(l, 3, 10);
    int cfd = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0);
    close(cfd);
    wait_done(l, &r);
    assert_int_equal(r.status, -ECONNRESET);
    snprintf(err, sizeof(err), "qmp %s: connection closed", path);
    assert_string_equal(r.detail, err);

    power_free(p);
    close(lfd);
    unlink(path);
    loop_free(l);
}

static void
test_qemu_restart(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct power *p = qmp_new(l, "");
    char err[256];
    struct result r;

    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);

    /* Killed, and the loop notices the drop: the socket file stays. */
    qemu_kill();
    tu_pump_turns(l, 5, 20);
    assert_false(power_reachable(p, err, sizeof(err)));
    assert_non_null(strstr(err, sock_path));
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), -ECONNREFUSED);
    assert_non_null(strstr(r.detail, sock_path));

    /* Restarted at the same path: the next request connects again. */
    assert_int_equal(qemu_start(), 0);
    assert_true(power_reachable(p, err, sizeof(err)));
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    char *s = check_status();
    assert_string_equal(s, "paused");
    free(s);

    /* Restarted while the loop was not looking. */
    qemu_kill();
    assert_int_equal(qemu_start(), 0);
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "running");

    /* Killed with a request in flight: it fails, it does not hang. */
    memset(&r, 0, sizeof(r));
    power_request(p, POWER_RESET, NULL, on_done, &r);
    qemu_kill();
    wait_done(l, &r);
    assert_true(r.status < 0);
    assert_non_null(strstr(r.detail, sock_path));

    power_free(p);
    loop_free(l);
    dirty = false;
}

static void
test_timeout(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct power *p = qmp_new(l, "");
    struct result r;

    power_test_set_timeout(1000);
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    kill(qemu_pid, SIGSTOP);
    int64_t t0 = now_mono_ms();
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), -ETIMEDOUT);
    assert_true(now_mono_ms() - t0 >= 900);
    assert_non_null(strstr(r.detail, sock_path));
    kill(qemu_pid, SIGCONT);
    /* The wedged connection was dropped; a fresh one works. */
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "running");
    power_free(p);
    loop_free(l);
    dirty = false;
}

struct two {
    struct power *p;
    struct result a, b;
};

static void
on_done_free(void *arg, int status, const char *detail)
{
    struct two *t = arg;
    on_done(&t->a, status, detail);
    power_free(t->p);
    t->p = NULL;
}

static void
test_free_cancels(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct result r = {0};

    /* Pending when freed: cancelled before power_free returns. */
    struct power *p = qmp_new(l, "");
    power_request(p, POWER_STATUS, NULL, on_done, &r);
    power_free(p);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, -ECANCELED);

    /* Freed from a callback while another request waits. */
    struct two t = {0};
    t.p = qmp_new(l, "");
    power_request(t.p, POWER_STATUS, NULL, on_done_free, &t);
    power_request(t.p, POWER_STATUS, NULL, on_done, &t.b);
    wait_done(l, &t.a);
    assert_null(t.p);
    assert_int_equal(t.a.status, 0);
    assert_int_equal(t.b.calls, 1);
    assert_int_equal(t.b.status, -ECANCELED);
    tu_pump_turns(l, 5, 10);
    assert_int_equal(t.a.calls, 1);

    /* Manual requests not yet delivered are delivered by power_free. */
    char err[64];
    p = power_new(l, "manual:", err, sizeof(err));
    memset(&r, 0, sizeof(r));
    power_request(p, POWER_RESET, NULL, on_done, &r);
    assert_false(r.done);
    power_free(p);
    assert_int_equal(r.calls, 1);
    loop_free(l);
    dirty = false;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manual),
        cmocka_unit_test(test_manual_sim),
        cmocka_unit_test(test_bad_uri),
        cmocka_unit_test_setup(test_status_off_on, test_setup),
        cmocka_unit_test_setup(test_reset, test_setup),
        cmocka_unit_test_setup(test_nmi_sysrq_break, test_setup),
        cmocka_unit_test_setup(test_netboot_once, test_setup),
        cmocka_unit_test_setup(test_disk_boot_once, test_setup),
        cmocka_unit_test_setup(test_missing_socket, test_setup),
        cmocka_unit_test(test_peer_closes_at_once),
        cmocka_unit_test_setup(test_qemu_restart, test_setup),
        cmocka_unit_test_setup(test_timeout, test_setup),
        cmocka_unit_test_setup(test_free_cancels, test_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
