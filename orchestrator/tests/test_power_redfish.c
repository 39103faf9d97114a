/* test_power_redfish: redfish.c's parsing of every resource the driver
 * reads (with redfish_bmc.py's bodies and odd ones: missing fields,
 * unknown ResetTypes, huge bodies, not JSON), its request bodies and its
 * choices (ResetType, If-Match); then the redfish:// driver on a real
 * loop against qemu-tests/redfish_bmc.py over TLS (a certificate made with
 * openssl for the test): power ops, the one-time boot with its quirks,
 * pre-flight's refusals.  qemu-tests/cases/080-082 and 084 run it in rescued.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "power.h"
#include "power_driver.h"
#include "redfish.h"
#include "testutil.h"
#include "uri.h"
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
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

/* --- the resources ---------------------------------------------------- */

/* redfish_bmc.py's service root, as it sends it. */
static const char root_body[] =
    "{\"Id\": \"RootService\", \"RedfishVersion\": \"1.15.0\","
    " \"Systems\": {\"@odata.id\": \"/redfish/v1/Systems\"},"
    " \"Managers\": {\"@odata.id\": \"/redfish/v1/Managers\"},"
    " \"SessionService\": {\"@odata.id\": \"/redfish/v1/SessionService\"},"
    " \"Links\": {\"Sessions\": {\"@odata.id\":"
    " \"/redfish/v1/SessionService/Sessions\"}},"
    " \"@odata.id\": \"/redfish/v1\"}";

static const char system_body[] =
    "{\"Id\": \"1\", \"PowerState\": \"On\","
    " \"Boot\": {\"BootSourceOverrideEnabled\": \"Disabled\","
    "  \"BootSourceOverrideTarget\": \"None\","
    "  \"BootSourceOverrideTarget@Redfish.AllowableValues\":"
    "   [\"None\", \"Pxe\", \"Hdd\", \"Cd\", \"BiosSetup\"],"
    "  \"BootSourceOverrideMode\": \"Legacy\"},"
    " \"Actions\": {\"#ComputerSystem.Reset\": {"
    "  \"target\": \"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset\","
    "  \"ResetType@Redfish.AllowableValues\": [\"On\", \"ForceOff\","
    "   \"GracefulShutdown\", \"GracefulRestart\", \"ForceRestart\","
    "   \"Nmi\", \"PowerCycle\"]}},"
    " \"Links\": {\"ManagedBy\": [{\"@odata.id\": "
    "\"/redfish/v1/Managers/1\"}]},"
    " \"@Redfish.Settings\": {\"SettingsObject\": {\"@odata.id\":"
    "  \"/redfish/v1/Systems/1/Settings\"}}}";

#define LEN(s) (sizeof(s) - 1)

static void
test_root(void **state)
{
    (void)state;
    char err[128];
    struct redfish_root r;
    assert_int_equal(
        redfish_parse_root(root_body, LEN(root_body), &r, err, sizeof(err)), 0);
    assert_string_equal(r.systems, "/redfish/v1/Systems");
    assert_string_equal(r.managers, "/redfish/v1/Managers");
    assert_string_equal(r.sessions, "/redfish/v1/SessionService/Sessions");
    redfish_root_clear(&r);

    /* Only the SessionService named: its Sessions under it. */
    static const char svc[] = "{\"SessionService\": {\"@odata.id\":"
                              " \"/redfish/v1/SessionService/\"}}";
    assert_int_equal(redfish_parse_root(svc, LEN(svc), &r, err, sizeof(err)),
                     0);
    assert_string_equal(r.sessions, "/redfish/v1/SessionService/Sessions");
    assert_null(r.systems);
    redfish_root_clear(&r);

    /* No session service (HTTP Basic only), links of the wrong type. */
    static const char odd[] = "{\"Systems\": \"/redfish/v1/Systems\","
                              " \"Links\": {\"Sessions\": 7}}";
    assert_int_equal(redfish_parse_root(odd, LEN(odd), &r, err, sizeof(err)),
                     0);
    assert_null(r.systems);
    assert_null(r.sessions);
    redfish_root_clear(&r);

    assert_int_equal(redfish_parse_root("[1]", 3, &r, err, sizeof(err)),
                     -EPROTO);
    assert_string_equal(err, "answer is not a JSON object");
    assert_int_equal(redfish_parse_root("<html>", 6, &r, err, sizeof(err)),
                     -EPROTO);
    assert_non_null(strstr(err, "answer is not a JSON object: "));
}

static void
test_members(void **state)
{
    (void)state;
    char err[128];
    size_t n;
    static const char one[] =
        "{\"Members@odata.count\": 1,"
        " \"Members\": [{\"@odata.id\": \"/redfish/v1/Systems/1\"}]}";
    char **m = redfish_parse_members(one, LEN(one), &n, err, sizeof(err));
    assert_int_equal(n, 1);
    assert_string_equal(m[0], "/redfish/v1/Systems/1");
    assert_null(m[1]);
    strv_free(m);

    /* Members without an id are skipped; no Members is none. */
    static const char odd[] =
        "{\"Members\": [{\"Name\": \"x\"}, {\"@odata.id\": \"/a\"}, 3]}";
    m = redfish_parse_members(odd, LEN(odd), &n, err, sizeof(err));
    assert_int_equal(n, 1);
    assert_string_equal(m[0], "/a");
    strv_free(m);
    m = redfish_parse_members("{}", 2, &n, err, sizeof(err));
    assert_int_equal(n, 0);
    assert_null(m[0]);
    strv_free(m);
    assert_null(redfish_parse_members("nope", 4, &n, err, sizeof(err)));
}

static void
test_system(void **state)
{
    (void)state;
    char err[128];
    struct redfish_system s;
    assert_int_equal(redfish_parse_system(system_body, LEN(system_body), &s,
                                          err, sizeof(err)),
                     0);
    assert_string_equal(s.power_state, "On");
    assert_string_equal(s.reset_uri,
                        "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset");
    assert_true(s.resets_listed);
    assert_int_equal(s.nresets, 7);
    assert_true(redfish_listed(s.resets, "Nmi"));
    assert_string_equal(s.settings, "/redfish/v1/Systems/1/Settings");
    assert_string_equal(s.manager, "/redfish/v1/Managers/1");
    assert_true(s.has_boot);
    assert_string_equal(s.boot_target, "None");
    assert_string_equal(s.boot_enabled, "Disabled");
    assert_string_equal(s.boot_mode, "Legacy");
    assert_int_equal(s.ntargets, 5);
    assert_true(redfish_listed(s.targets, "Pxe"));
    redfish_system_clear(&s);

    /* A system with nothing in it: every field absent, not an error. */
    assert_int_equal(redfish_parse_system("{}", 2, &s, err, sizeof(err)), 0);
    assert_null(s.power_state);
    assert_null(s.reset_uri);
    assert_false(s.resets_listed);
    assert_false(s.has_boot);
    assert_null(s.targets);
    redfish_system_clear(&s);

    /* Fields of the wrong types, and an ActionInfo instead of a list. */
    static const char odd[] =
        "{\"PowerState\": 1, \"Boot\": {\"BootSourceOverrideTarget\": null,"
        " \"BootSourceOverrideTarget@Redfish.AllowableValues\": \"Pxe\"},"
        " \"Actions\": {\"#ComputerSystem.Reset\": {\"target\": \"/r\","
        "  \"@Redfish.ActionInfo\": \"/redfish/v1/Systems/1/ResetActionInfo\""
        " }}, \"Links\": {\"ManagedBy\": []}}";
    assert_int_equal(redfish_parse_system(odd, LEN(odd), &s, err, sizeof(err)),
                     0);
    assert_null(s.power_state);
    assert_true(s.has_boot);
    assert_null(s.boot_target);
    assert_null(s.targets);
    assert_null(s.manager);
    assert_false(s.resets_listed);
    assert_string_equal(s.action_info, "/redfish/v1/Systems/1/ResetActionInfo");

    /* The ActionInfo, with an unknown ResetType kept as listed. */
    static const char info[] =
        "{\"Parameters\": [{\"Name\": \"Other\", \"AllowableValues\": [\"x\"]},"
        " {\"Name\": \"ResetType\", \"AllowableValues\": [\"On\","
        " \"ForceOff\", \"FancyReboot\"]}]}";
    assert_int_equal(
        redfish_parse_action_info(info, LEN(info), &s, err, sizeof(err)), 0);
    assert_true(s.resets_listed);
    assert_int_equal(s.nresets, 3);
    assert_true(redfish_listed(s.resets, "FancyReboot"));
    /* Neither ForceRestart nor PowerCycle: ForceOff then On. */
    assert_string_equal(redfish_pick_reset(&s, REDFISH_RESTART, 0),
                        "ForceOff+On");
    assert_null(redfish_pick_reset(&s, REDFISH_RESTART, 1));
    assert_null(redfish_pick_reset(&s, REDFISH_NMI, 0));
    redfish_system_clear(&s);

    assert_int_equal(redfish_parse_system("\"On\"", 4, &s, err, sizeof(err)),
                     -EPROTO);
}

/* Bigger than REDFISH_MAX_BODY: refused without parsing. */
static void
test_huge(void **state)
{
    (void)state;
    size_t n = REDFISH_MAX_BODY + 100;
    char *big = xmalloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    char err[128];
    struct redfish_system s;
    assert_int_equal(redfish_parse_system(big, n, &s, err, sizeof(err)),
                     -EPROTO);
    assert_string_equal(err, "answer larger than 1048576 bytes");
    free(big);

    /* A long array of ResetTypes just under the limit parses. */
    struct buf b = {0};
    buf_printf(&b, "{\"Actions\": {\"#ComputerSystem.Reset\": {"
                   "\"ResetType@Redfish.AllowableValues\": [");
    for (int i = 0; i < 20000; i++)
        buf_printf(&b, "%s\"Type%d\"", i ? "," : "", i);
    buf_printf(&b, ",\"PowerCycle\"]}}}");
    assert_int_equal(redfish_parse_system(b.data, b.len, &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.nresets, 20001);
    assert_string_equal(redfish_pick_reset(&s, REDFISH_RESTART, 0),
                        "PowerCycle");
    redfish_system_clear(&s);
    buf_free(&b);
}

static void
test_task_and_error(void **state)
{
    (void)state;
    char *msg;
    static const char run[] = "{\"Id\": \"3\", \"TaskState\": \"Running\"}";
    char *st = redfish_parse_task(run, LEN(run), &msg);
    assert_string_equal(st, "Running");
    assert_null(msg);
    free(st);
    static const char bad[] =
        "{\"TaskState\": \"Exception\", \"Messages\": [{\"Message\":"
        " \"The power supply failed.\"}]}";
    st = redfish_parse_task(bad, LEN(bad), &msg);
    assert_string_equal(st, "Exception");
    assert_string_equal(msg, "The power supply failed.");
    free(st);
    free(msg);
    assert_null(redfish_parse_task("", 0, &msg));
    assert_null(msg);

    /* The emulator's error body: ExtendedInfo first, else message. */
    static const char e1[] =
        "{\"error\": {\"code\": \"Base.1.16.PropertyNotWritable\","
        " \"message\": \"general\", \"@Message.ExtendedInfo\":"
        " [{\"Message\": \"The property BootSourceOverrideMode is a read"
        " only property.\"}]}}";
    char *w = redfish_error_words(e1, LEN(e1));
    assert_string_equal(w, "The property BootSourceOverrideMode is a read "
                           "only property.");
    free(w);
    static const char e2[] = "{\"error\": {\"message\": \"line1\\nline2\"}}";
    w = redfish_error_words(e2, LEN(e2));
    assert_string_equal(w, "line1 line2");
    free(w);
    assert_null(redfish_error_words("{}", 2));
    assert_null(redfish_error_words("Service Unavailable", 19));
    /* Cut to 200 bytes. */
    struct buf b = {0};
    buf_printf(&b, "{\"error\": {\"message\": \"");
    for (int i = 0; i < 500; i++)
        buf_printf(&b, "x");
    buf_printf(&b, "\"}}");
    w = redfish_error_words(b.data, b.len);
    assert_int_equal(strlen(w), 200);
    assert_string_equal(w + 197, "...");
    free(w);
    buf_free(&b);
}

static void
test_bodies(void **state)
{
    (void)state;
    char *s = redfish_boot_body("Pxe", "UEFI");
    assert_string_equal(s, "{\"Boot\":{\"BootSourceOverrideTarget\":\"Pxe\","
                           "\"BootSourceOverrideEnabled\":\"Once\","
                           "\"BootSourceOverrideMode\":\"UEFI\"}}");
    free(s);
    s = redfish_boot_body("Hdd", NULL);
    assert_string_equal(s, "{\"Boot\":{\"BootSourceOverrideTarget\":\"Hdd\","
                           "\"BootSourceOverrideEnabled\":\"Once\"}}");
    free(s);
    s = redfish_boot_clear_body();
    assert_string_equal(s, "{\"Boot\":{\"BootSourceOverrideTarget\":\"None\","
                           "\"BootSourceOverrideEnabled\":\"Disabled\"}}");
    free(s);
    s = redfish_reset_body("ForceRestart");
    assert_string_equal(s, "{\"ResetType\":\"ForceRestart\"}");
    free(s);
    /* A password with JSON's specials is escaped, not spliced. */
    s = redfish_login_body("admin", "p\"w\\x");
    json_t *j = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "Password")),
                        "p\"w\\x");
    json_decref(j);
    free(s);
}

static void
test_media(void **state)
{
    (void)state;
    char err[128];
    struct redfish_media m;
    static const char cd[] =
        "{\"Id\": \"CD1\", \"MediaTypes\": [\"CD\", \"DVD\"], \"Image\": null,"
        " \"Inserted\": false, \"Actions\": {\"#VirtualMedia.InsertMedia\":"
        " {\"target\": \"/vm/CD1/Actions/VirtualMedia.InsertMedia\"},"
        " \"#VirtualMedia.EjectMedia\": {\"target\":"
        " \"/vm/CD1/Actions/VirtualMedia.EjectMedia\"}}}";
    assert_int_equal(redfish_parse_media(cd, LEN(cd), &m, err, sizeof(err)), 0);
    assert_true(m.cd);
    assert_null(m.image);
    assert_false(m.inserted);
    assert_string_equal(m.insert, "/vm/CD1/Actions/VirtualMedia.InsertMedia");
    assert_string_equal(m.eject, "/vm/CD1/Actions/VirtualMedia.EjectMedia");
    redfish_media_clear(&m);
    /* A USB stick, no actions (PATCH), Inserted absent: an Image is in. */
    static const char usb[] = "{\"MediaTypes\": [\"USBStick\"],"
                              " \"Image\": \"http://x/a.img\"}";
    assert_int_equal(redfish_parse_media(usb, LEN(usb), &m, err, sizeof(err)),
                     0);
    assert_false(m.cd);
    assert_true(m.inserted);
    assert_null(m.insert);
    redfish_media_clear(&m);
    static const char mgr[] = "{\"VirtualMedia\": {\"@odata.id\":"
                              " \"/redfish/v1/Managers/1/VirtualMedia\"}}";
    char *l = redfish_parse_link(mgr, LEN(mgr), "VirtualMedia");
    assert_string_equal(l, "/redfish/v1/Managers/1/VirtualMedia");
    free(l);
    assert_null(redfish_parse_link("{}", 2, "VirtualMedia"));
    char *b = redfish_media_body("http://r/rescue.iso", false);
    assert_string_equal(b, "{\"Image\":\"http://r/rescue.iso\",\"Inserted\":"
                           "true,\"WriteProtected\":true}");
    free(b);
    b = redfish_media_body("http://r/rescue.iso", true);
    assert_string_equal(b, "{\"Image\":\"http://r/rescue.iso\"}");
    free(b);
    b = redfish_media_body(NULL, false);
    assert_string_equal(b, "{\"Image\":null}");
    free(b);
}

static void
test_choices(void **state)
{
    (void)state;
    /* Nothing listed: the standard ones, in order. */
    assert_string_equal(redfish_pick_reset(NULL, REDFISH_RESTART, 0),
                        "ForceRestart");
    assert_string_equal(redfish_pick_reset(NULL, REDFISH_RESTART, 1),
                        "PowerCycle");
    assert_string_equal(redfish_pick_reset(NULL, REDFISH_RESTART, 2),
                        "ForceOff+On");
    assert_null(redfish_pick_reset(NULL, REDFISH_RESTART, 3));
    assert_string_equal(redfish_pick_reset(NULL, REDFISH_ON, 0), "On");
    assert_string_equal(redfish_pick_reset(NULL, REDFISH_OFF, 0), "ForceOff");
    assert_string_equal(redfish_pick_reset(NULL, REDFISH_NMI, 0), "Nmi");
    /* Dell without ForceRestart... */
    char *pc[] = {"On", "PowerCycle", "ForceOff", NULL};
    struct redfish_system s = {.resets = pc, .resets_listed = true};
    assert_string_equal(redfish_pick_reset(&s, REDFISH_RESTART, 0),
                        "PowerCycle");
    assert_string_equal(redfish_pick_reset(&s, REDFISH_RESTART, 1),
                        "ForceOff+On");
    /* ...and a BMC that allows only GracefulShutdown to power off. */
    char *gs[] = {"GracefulShutdown", "On", NULL};
    s.resets = gs;
    assert_string_equal(redfish_pick_reset(&s, REDFISH_OFF, 0),
                        "GracefulShutdown");
    assert_null(redfish_pick_reset(&s, REDFISH_RESTART, 0));
    /* A listed empty set allows nothing. */
    char *none[] = {NULL};
    s.resets = none;
    assert_null(redfish_pick_reset(&s, REDFISH_ON, 0));

    /* sushy's 412 ladder: as given, a weak one as strong, then none. */
    assert_string_equal(redfish_if_match("W/\"ab\"", 0), "W/\"ab\"");
    assert_string_equal(redfish_if_match("W/\"ab\"", 1), "\"ab\"");
    assert_null(redfish_if_match("W/\"ab\"", 2));
    assert_string_equal(redfish_if_match("\"ab\"", 0), "\"ab\"");
    assert_null(redfish_if_match("\"ab\"", 1));
    assert_null(redfish_if_match(NULL, 0));
}

/* --- the driver against redfish_bmc.py -------------------------------- */

static char *dir;
static char cert[256], key[256], bmclog[256];
static pid_t bmc_pid = -1;
static int bmc_port;
static struct loop *l;

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &n);
    close(fd);
    return ntohs(sa.sin_port);
}

static void
bmc_stop(void)
{
    if (bmc_pid > 0) {
        kill(bmc_pid, SIGTERM);
        waitpid(bmc_pid, NULL, 0);
    }
    bmc_pid = -1;
}

static bool
bmc_ready(void *arg)
{
    (void)arg;
    char *text = NULL;
    size_t n = 0;
    bool ok = read_file(bmclog, &text, &n) == 0 && strstr(text, "ready");
    free(text);
    return ok;
}

/* redfish_bmc.py with quirks (up to 4, NULL-terminated), a fresh log. */
static void
bmc_start_argv(const char *const *q)
{
    bmc_stop();
    bmc_port = free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", bmc_port);
    unlink(bmclog);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A test that crashes takes its BMC with it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        FILE *f = freopen(bmclog, "a", stdout);
        (void)f;
        dup2(1, 2);
        char *argv[14] = {"python3",  "qemu-tests/redfish_bmc.py",
                          "--listen", listen,
                          "--cert",   cert,
                          "--key",    key};
        int n = 8;
        for (int i = 0; q && q[i] && i < 4; i++)
            argv[n++] = (char *)q[i];
        argv[n] = NULL;
        execvp("python3", argv);
        _exit(127);
    }
    bmc_pid = pid;
    assert_true(tu_pump_until(l, 5000, bmc_ready, NULL));
}

static void
bmc_start(const char *q1, const char *q2)
{
    const char *q[] = {q1, q1 ? q2 : NULL, NULL};
    bmc_start_argv(q);
}

static bool
log_has(const char *what)
{
    char *text = NULL;
    size_t n = 0;
    bool ok = read_file(bmclog, &text, &n) == 0 && strstr(text, what);
    free(text);
    return ok;
}

/* How many lines of the BMC's log hold what. */
static int
log_count(const char *what)
{
    char *text = NULL;
    size_t n = 0;
    int k = 0;
    if (read_file(bmclog, &text, &n) == 0)
        for (const char *c = text; (c = strstr(c, what)); c++)
            k++;
    free(text);
    return k;
}

static int
setup_bmc(void **state)
{
    (void)state;
    dir = tu_tmpdir_new("test_power_redfish");
    snprintf(cert, sizeof(cert), "%s/bmc.pem", dir);
    snprintf(key, sizeof(key), "%s/bmc.key", dir);
    snprintf(bmclog, sizeof(bmclog), "%s/bmc.log", dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -days 2 -subj /CN=bmc.test "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        return -1;
    l = loop_new();
    return 0;
}

static int
teardown_bmc(void **state)
{
    (void)state;
    bmc_stop();
    loop_free(l);
    tu_tmpdir_free(dir);
    return 0;
}

static struct power *
power_at(const char *creds, const char *opts)
{
    char uri[512], err[256] = "";
    snprintf(uri, sizeof(uri), "redfish://%s127.0.0.1:%d/Systems/1?ca=%s%s",
             creds, bmc_port, cert, opts);
    struct power *p = power_new(l, uri, err, sizeof(err));
    if (!p)
        fail_msg("power_new: %s", err);
    return p;
}

/* Pump until pre-flight has its first answer. */
static bool
preflight(struct power *p, char *err, size_t errlen)
{
    for (int i = 0; i < 500; i++) {
        if (power_reachable(p, err, errlen))
            return true;
        if (!strstr(err, "no answer from the BMC yet"))
            return false;
        loop_run_once(l, 10);
    }
    return false;
}

static void
test_driver_power(void **state)
{
    (void)state;
    /* Boot through @Redfish.Settings, resets as 202 + task monitor. */
    bmc_start("--settings", "--task-reset");
    struct power *p = power_at("admin:s3cret@", "");
    char err[256];
    assert_true(preflight(p, err, sizeof(err)));
    struct result r;
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "on");
    assert_int_equal(run_op(l, p, POWER_OFF, NULL, &r), 0);
    assert_true(log_has("reset ForceOff"));
    assert_int_equal(run_op(l, p, POWER_STATUS, NULL, &r), 0);
    assert_string_equal(r.detail, "off");
    /* A reset of a server that is off powers it on. */
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has("reset On"));
    assert_false(log_has("reset ForceRestart"));
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has("reset ForceRestart"));
    assert_int_equal(run_op(l, p, POWER_NMI, NULL, &r), 0);
    assert_true(log_has("reset Nmi"));
    /* The override goes to the Settings object; the reset (a task) still
     * goes to the system's Reset action, and carries it out. */
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), 0);
    assert_true(log_has("PATCH /redfish/v1/Systems/1/Settings 204"));
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has(" for reset ForceRestart"));
    assert_true(log_has("apply Pxe"));
    assert_int_equal(run_op(l, p, POWER_SYSRQ, "h", &r), -ENOTSUP);
    /* One session for all of it: one connection, one login. */
    assert_int_equal(log_count(" created"), 1);
    assert_int_equal(log_count("connection\n"), 1);
    power_free(p);
}

static void
test_driver_boot_quirks(void **state)
{
    (void)state;
    /* Mode refused, and Basic only, and ForceOff then On. */
    bmc_start("--refuse-mode", "--no-sessions");
    struct power *p = power_at("admin:s3cret@", "&boot=legacy");
    char err[256];
    assert_true(preflight(p, err, sizeof(err)));
    struct result r;
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), 0);
    assert_true(log_has("refused Mode (quirk)"));
    assert_true(log_has("patch Boot Pxe Once -"));
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has("apply Pxe"));
    assert_false(log_has("session"));
    power_free(p);

    /* Reverted once, weak ETags, a stale one, a task for the reset. */
    bmc_start("--revert-once", "--weak-etag");
    p = power_at("admin:s3cret@", "");
    /* The server's firmware from the config decides the Mode. */
    power_set_firmware(p, true);
    assert_true(preflight(p, err, sizeof(err)));
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    assert_true(log_has("reverted (quirk)"));
    assert_true(log_has("412 If-Match W/"));
    assert_true(log_has("patch Boot Hdd Once UEFI"));
    assert_false(log_has("patch Boot Hdd Once Legacy"));
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has("apply Hdd"));
    power_free(p);

    /* A BMC that keeps Continuous: the exit's Hdd is set back to None
     * after its reset, so nothing stays overridden. */
    bmc_start("--continuous", NULL);
    p = power_at("admin:s3cret@", "");
    assert_true(preflight(p, err, sizeof(err)));
    assert_int_equal(run_op(l, p, POWER_BOOT_DISK_ONCE, NULL, &r), 0);
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has("apply Hdd"));
    assert_true(log_has("patch Boot None Disabled"));
    power_free(p);
}

static void
test_driver_refusals(void **state)
{
    (void)state;
    bmc_start("--revert-always", NULL);
    char err[256];
    struct power *p = power_at("admin:wrong@", "");
    assert_false(preflight(p, err, sizeof(err)));
    assert_non_null(strstr(err, "login: credentials refused (HTTP 401): "
                                "Invalid username or password."));
    assert_null(strstr(err, "wrong"));
    power_free(p);

    p = power_at("admin:s3cret@", "");
    assert_true(preflight(p, err, sizeof(err)));
    struct result r;
    assert_int_equal(run_op(l, p, POWER_NETBOOT_ONCE, NULL, &r), -EIO);
    assert_non_null(strstr(r.detail, "one-time boot Pxe: read-back: the BMC "
                                     "did not keep it after 3 tries (reads "
                                     "Target None"));
    power_free(p);

    /* No certificate given: the system's CAs do not know ours. */
    char uri[256];
    snprintf(uri, sizeof(uri), "redfish://admin:s3cret@127.0.0.1:%d/Systems/1",
             bmc_port);
    p = power_new(l, uri, err, sizeof(err));
    assert_non_null(p);
    assert_false(preflight(p, err, sizeof(err)));
    assert_non_null(strstr(err, "SSL certificate problem"));
    power_free(p);
    /* Insecure passes the same certificate. */
    snprintf(uri, sizeof(uri),
             "redfish://admin:s3cret@127.0.0.1:%d/Systems/1?tls=insecure",
             bmc_port);
    p = power_new(l, uri, err, sizeof(err));
    assert_true(preflight(p, err, sizeof(err)));
    power_free(p);

    /* Credentials from a file: used, and refused when others may read
     * it or it is not USER:PASSWORD; the reason never holds them. */
    char creds[300];
    snprintf(creds, sizeof(creds), "%s/creds", dir);
    assert_int_equal(write_file_atomic(creds, "admin:s3cret\n", 13, 0600), 0);
    p = power_at("", "");
    assert_int_equal(power_set_credentials(p, creds, err, sizeof(err)), 0);
    assert_true(preflight(p, err, sizeof(err)));
    power_free(p);
    chmod(creds, 0644);
    p = power_at("", "");
    assert_int_equal(power_set_credentials(p, creds, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "readable by others (chmod 600 it)"));
    assert_null(strstr(err, "s3cret"));
    power_free(p);
    assert_int_equal(write_file_atomic(creds, "s3cret\n", 7, 0600), 0);
    p = power_at("", "");
    assert_int_equal(power_set_credentials(p, creds, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "the first line must be USER:PASSWORD"));
    assert_null(strstr(err, "s3cret"));
    power_free(p);

    bmc_stop();
    p = power_at("admin:s3cret@", "");
    assert_false(preflight(p, err, sizeof(err)));
    snprintf(uri, sizeof(uri),
             "redfish 127.0.0.1:%d: discovery: GET /redfish/v1/: Failed to "
             "connect to 127.0.0.1 port %d",
             bmc_port, bmc_port);
    if (!strstr(err, uri))
        fail_msg("\"%s\" does not hold \"%s\"", err, uri);
    power_free(p);
}

static void
test_driver_media(void **state)
{
    (void)state;
    /* The image, served over HTTP as rescued serves it. */
    char iso[300], port[16], url[128];
    snprintf(iso, sizeof(iso), "%s/www/rescue.iso", dir);
    char www[300];
    snprintf(www, sizeof(www), "%s/www", dir);
    mkdir(www, 0755);
    assert_int_equal(write_file_atomic(iso, "CD001", 5, 0644), 0);
    snprintf(port, sizeof(port), "%d", free_port());
    snprintf(url, sizeof(url), "http://127.0.0.1:%s/rescue.iso", port);
    pid_t web = fork();
    assert_true(web >= 0);
    if (web == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("python3", "python3", "-m", "http.server", "--bind", "127.0.0.1",
               "--directory", www, port, (char *)NULL);
        _exit(127);
    }
    /* Supermicro X11: InsertMedia without Inserted / WriteProtected. */
    bmc_start("--vm-strict", NULL);
    struct power *p = power_at("admin:s3cret@", "");
    char err[256];
    assert_true(preflight(p, err, sizeof(err)));
    struct result r;
    /* The web server may still be starting: the BMC's fetch says so. */
    for (int i = 0; i < 50; i++) {
        if (run_op(l, p, POWER_MEDIA_INSERT, url, &r) == 0)
            break;
        tu_pump_for(l, 100);
    }
    assert_int_equal(r.status, 0);
    assert_true(log_has("refused Inserted/WriteProtected (quirk)"));
    assert_true(log_has("media inserted http://127.0.0.1:"));
    /* Inserted already: nothing to do. */
    int before = log_count("media inserted");
    assert_int_equal(run_op(l, p, POWER_MEDIA_INSERT, url, &r), 0);
    assert_int_equal(log_count("media inserted"), before);
    assert_int_equal(run_op(l, p, POWER_CD_BOOT_ONCE, NULL, &r), 0);
    assert_true(log_has("patch Boot Cd Once Legacy"));
    assert_int_equal(run_op(l, p, POWER_RESET, NULL, &r), 0);
    assert_true(log_has("apply Cd"));
    assert_int_equal(run_op(l, p, POWER_MEDIA_EJECT, NULL, &r), 0);
    assert_true(log_has("media ejected"));
    assert_int_equal(run_op(l, p, POWER_MEDIA_INSERT, "file:///x.iso", &r),
                     -EINVAL);
    power_free(p);
    kill(web, SIGTERM);
    waitpid(web, NULL, 0);

    /* Drivers without virtual media refuse it. */
    p = power_new(l, "manual:", err, sizeof(err));
    assert_int_equal(run_op(l, p, POWER_MEDIA_INSERT, url, &r), -ENOTSUP);
    assert_string_equal(r.detail, "manual: no virtual media");
    power_free(p);
}

static bool
nothing_lingers(void *arg)
{
    (void)arg;
    return power_lingering() == 0;
}

static void
test_driver_logout(void **state)
{
    (void)state;
    /* A stop DELETEs the session, after the driver is gone. */
    bmc_start(NULL, NULL);
    struct power *p = power_at("admin:s3cret@", "");
    char err[256];
    assert_true(preflight(p, err, sizeof(err)));
    assert_true(log_has("session 1 created (1 open)"));
    power_free(p);
    assert_int_equal(power_lingering(), 1);
    assert_true(tu_pump_until(l, 5000, nothing_lingers, NULL));
    /* (written before the answer) */
    assert_true(log_has("session 1 deleted (0 open)"));

    /* HTTP Basic: no session, nothing to DELETE. */
    bmc_start("--no-sessions", NULL);
    p = power_at("admin:s3cret@", "");
    assert_true(preflight(p, err, sizeof(err)));
    power_free(p);
    assert_int_equal(power_lingering(), 0);

    /* A BMC that never answers the DELETE holds the stop 2 s, no more. */
    bmc_start("--hang-delete", NULL);
    p = power_at("admin:s3cret@", "");
    assert_true(preflight(p, err, sizeof(err)));
    power_free(p);
    int64_t t0 = now_mono_ms();
    power_drain(l, 20000);
    int64_t took = now_mono_ms() - t0;
    assert_int_equal(power_lingering(), 0);
    assert_true(log_has("no answer (quirk)"));
    assert_true(took >= 1500 && took < 5000);
}

/* Every failure names its step and what the BMC or the transport said:
 * --fail answers a request with an error (its @Message.ExtendedInfo
 * differs from its message), closes the connection, or never answers. */
static void
test_driver_failure_steps(void **state)
{
    (void)state;
    const struct {
        const char *q[4]; /* quirks */
        int op;           /* -1: the pre-flight's words */
        const char *want;
    } cases[] = {
        {{"--fail", "GET:/redfish/v1:0"},
         -1,
         "redfish 127.0.0.1:%d: discovery: GET /redfish/v1/: Empty reply "
         "from server"},
        {{"--fail", "POST:/redfish/v1/SessionService/Sessions:500"},
         -1,
         "redfish 127.0.0.1:%d: login: POST "
         "/redfish/v1/SessionService/Sessions: HTTP 500: Injected failure of "
         "POST /redfish/v1/SessionService/Sessions."},
        {{"--fail", "GET:/redfish/v1/Systems/1:0"},
         -1,
         "discovery: GET /redfish/v1/Systems/1: Empty reply from server"},
        {{"--settings", "--fail", "GET:/redfish/v1/Systems/1/Settings:500"},
         POWER_NETBOOT_ONCE,
         "one-time boot Pxe: reading Boot: GET /redfish/v1/Systems/1/Settings: "
         "HTTP 500: Injected failure of GET /redfish/v1/Systems/1/Settings."},
        {{"--settings", "--fail", "PATCH:/redfish/v1/Systems/1/Settings:0"},
         POWER_NETBOOT_ONCE,
         "one-time boot Pxe: PATCH Boot: PATCH /redfish/v1/Systems/1/Settings: "
         "Empty reply from server"},
        {{"--settings", "--fail", "GET:/redfish/v1/Systems/1/Settings:503:1"},
         POWER_BOOT_DISK_ONCE,
         "one-time boot Hdd: read-back: GET /redfish/v1/Systems/1/Settings: "
         "HTTP 503: Injected failure"},
        {{"--fail", "POST:/redfish/v1/Systems/1/Actions/"
                    "ComputerSystem.Reset:500"},
         POWER_RESET,
         "reset: Reset action: POST /redfish/v1/Systems/1/Actions/"
         "ComputerSystem.Reset: HTTP 500: Injected failure of POST"},
        {{"--fail", "POST:/redfish/v1/Managers/1/VirtualMedia/CD1/Actions/"
                    "VirtualMedia.InsertMedia:500"},
         POWER_MEDIA_INSERT,
         "insert media: POST /redfish/v1/Managers/1/VirtualMedia/CD1/Actions/"
         "VirtualMedia.InsertMedia: HTTP 500: Injected failure of POST"},
        {{"--fail", "GET:/redfish/v1/Managers/1/VirtualMedia:0"},
         POWER_MEDIA_EJECT,
         "eject media: finding the virtual CD: GET "
         "/redfish/v1/Managers/1/VirtualMedia: Empty reply from server"},
        {{"--fail", "GET:/redfish/v1/Systems/1:-1:2"},
         POWER_STATUS,
         "status: reading the system: GET /redfish/v1/Systems/1: no answer in "
         "1500 ms"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bmc_start_argv(cases[i].q);
        struct power *p = power_at("admin:s3cret@", "");
        char err[512], want[512];
        snprintf(want, sizeof(want), cases[i].want, bmc_port);
        bool up = preflight(p, err, sizeof(err));
        const char *got = err;
        struct result r = {0};
        if (cases[i].op >= 0) {
            if (!up)
                fail_msg("case %zu: pre-flight: %s", i, err);
            if (cases[i].op == POWER_STATUS)
                power_test_set_timeout(1500);
            run_op(l, p, (enum power_op)cases[i].op,
                   cases[i].op == POWER_MEDIA_INSERT
                       ? "http://127.0.0.1:9/x.iso"
                       : NULL,
                   &r);
            power_test_set_timeout(0);
            assert_true(r.status < 0);
            got = r.detail;
        } else if (up) {
            fail_msg("case %zu: the pre-flight passed", i);
        }
        if (!strstr(got, want))
            fail_msg("case %zu: \"%s\" does not hold \"%s\"", i, got, want);
        power_free(p);
        power_drain(l, 5000);
    }
}

int
main(void)
{
    log_init(getenv("TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR,
             "test_power_redfish");
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_root),           cmocka_unit_test(test_members),
        cmocka_unit_test(test_system),         cmocka_unit_test(test_huge),
        cmocka_unit_test(test_task_and_error), cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_choices),        cmocka_unit_test(test_media),
    };
    const struct CMUnitTest driver[] = {
        cmocka_unit_test(test_driver_power),
        cmocka_unit_test(test_driver_boot_quirks),
        cmocka_unit_test(test_driver_refusals),
        cmocka_unit_test(test_driver_media),
        cmocka_unit_test(test_driver_logout),
        cmocka_unit_test(test_driver_failure_steps),
    };
    int fails = cmocka_run_group_tests_name("redfish", pure, NULL, NULL);
    fails += cmocka_run_group_tests_name("redfish driver", driver, setup_bmc,
                                         teardown_bmc);
    return fails;
}
