/* Tests for config: every refusal names file, line, section and key;
 * a full file and a minimal one load with the documented values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "testutil.h"
#include "util.h"

static char *tmpdir;
static char path[64];

/* The smallest good file: 7 lines, so added lines start at line 8. */
#define HEAD                                                                   \
    "[rescued]\n"                                                              \
    "listen = 127.0.0.1:8080\n"                                                \
    "boot_url = http://127.0.0.1:8080/\n"                                      \
    "data_dir = /var/lib/rescued\n"                                            \
    "admin_token = admintok-0123456789\n"                                      \
    "[project:acme]\n"                                                         \
    "token = acmetok-0123456789\n"

/* A good server, 4 lines. */
#define SERVER(id, mac)                                                        \
    "[server:" id "]\n"                                                        \
    "mac = " mac "\n"                                                          \
    "project = acme\n"                                                         \
    "power = manual:\n"

static int
setup_dir(void **state)
{
    (void)state;
    if (!(tmpdir = tu_tmpdir_new("test_config")))
        return -1;
    snprintf(path, sizeof(path), "%s/rescued.ini", tmpdir);
    return 0;
}

static int
remove_dir(void **state)
{
    (void)state;
    return tu_tmpdir_free(tmpdir);
}

static struct config *
load_text(const char *text, char *err, size_t errlen)
{
    assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
    return config_load(path, err, errlen);
}

/* The file must be refused with "PATH<where>" followed by reason text. */
static void
expect_refusal(const char *text, const char *where, const char *reason)
{
    char err[512] = "", want[512];
    struct config *c = load_text(text, err, sizeof(err));
    if (c)
        fail_msg("loaded, expected refusal '%s'", where);
    snprintf(want, sizeof(want), "%s%s", path, where);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, reason))
        fail_msg("got     '%s'\nwanted  '%s...%s'", err, want, reason);
    assert_null(strchr(err, '\n'));
}

static struct config *
expect_load(const char *text)
{
    char err[512] = "";
    struct config *c = load_text(text, err, sizeof(err));
    if (!c)
        fail_msg("refused: %s", err);
    return c;
}

static void
test_full_file(void **state)
{
    (void)state;
    struct config *c = expect_load(
        "; a comment\n"
        "[rescued]\n"
        "listen = 0.0.0.0:8081\n"
        "boot_url = https://10.0.0.1:8443//   ; trailing slashes go\n"
        "data_dir = /srv/rescued\n"
        "admin_token = \"adm;in-0123456789abc\"\n"
        "log_level = debug\n"
        "max_body = 128K\n"
        "[PXE]\n"
        "Mode = proxy\n"
        "interface = br0\n"
        "dhcp_range = 10.0.0.100,10.0.0.200,12h\n"
        "[console]\n"
        "listen = 0.0.0.0:2223\n"
        "readonly_grace = 1m\n"
        "scrollback = 2M\n"
        "[image]\n"
        "kernel = /img/vmlinuz-lts\n"
        "initrd = /img/initramfs-lts\n"
        "tools = /img/tools.squashfs\n"
        "cmdline = quiet modloop=x\n"
        "[timeouts]\n"
        "rebooting = 90\n"
        "pxe_booting = 2m\n"
        "rescue_booting = 10m\n"
        "exiting = 45s\n"
        "booting_local = 1h\n"
        "retries = 0\n"
        "local_boot_pattern = \"Welcome to\"\n"
        "local_settle = 2m\n"
        "[project:acme]\n"
        "token = acmetok-0123456789\n"
        "keys_file = /etc/rescued/acme.keys\n"
        "[project:beta]\n"
        "[server:srv-2]\n"
        "mac = 52-54-00-AB-CD-02\n"
        "project = beta\n"
        "power = qmp:/run/lab/srv2.qmp\n"
        "[server:Srv-1]\n"
        "name = First server\n"
        "mac = 52:54:00:ab:cd:01\n"
        "project = acme\n"
        "arch = aarch64\n"
        "firmware = uefi\n"
        "power = ipmi://root:calvin@bmc1:6230?cipher=3\n"
        "console = tcp:127.0.0.1:7001\n"
        "console_tty = ttyAMA0,115200\n");

    assert_string_equal(c->path, path);
    assert_string_equal(c->listen, "0.0.0.0:8081");
    assert_string_equal(c->boot_url, "https://10.0.0.1:8443");
    assert_string_equal(c->data_dir, "/srv/rescued");
    assert_string_equal(c->admin_token, "adm;in-0123456789abc");
    assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(c->max_body, 128 * 1024);
    assert_int_equal(c->pxe_mode, PXE_PROXY);
    assert_string_equal(c->pxe_interface, "br0");
    assert_string_equal(c->dhcp_range, "10.0.0.100,10.0.0.200,12h");
    assert_string_equal(c->console_listen, "0.0.0.0:2223");
    assert_int_equal(c->readonly_grace, 60);
    assert_int_equal(c->scrollback, 2 * 1024 * 1024);
    assert_string_equal(c->kernel, "/img/vmlinuz-lts");
    assert_string_equal(c->initrd, "/img/initramfs-lts");
    assert_string_equal(c->tools, "/img/tools.squashfs");
    assert_string_equal(c->cmdline, "quiet modloop=x");
    assert_int_equal(c->timeout_rebooting, 90);
    assert_int_equal(c->timeout_pxe_booting, 120);
    assert_int_equal(c->timeout_rescue_booting, 600);
    assert_int_equal(c->timeout_exiting, 45);
    assert_int_equal(c->timeout_booting_local, 3600);
    assert_int_equal(c->max_retries, 0);
    assert_string_equal(c->local_boot_pattern, "Welcome to");
    assert_int_equal(c->local_settle, 120);

    assert_int_equal(c->nprojects, 2);
    assert_string_equal(c->projects[0].name, "acme");
    assert_string_equal(c->projects[0].token, "acmetok-0123456789");
    assert_string_equal(c->projects[0].keys_file, "/etc/rescued/acme.keys");
    assert_string_equal(c->projects[1].name, "beta");
    assert_null(c->projects[1].token);
    assert_null(c->projects[1].keys_file);

    /* Sorted by id, case kept. */
    assert_int_equal(c->nservers, 2);
    const struct config_server *s = &c->servers[0];
    assert_string_equal(s->id, "Srv-1");
    assert_string_equal(s->name, "First server");
    assert_string_equal(s->mac, "52:54:00:ab:cd:01");
    assert_string_equal(s->project, "acme");
    assert_string_equal(s->arch, "aarch64");
    assert_int_equal(s->firmware, FW_UEFI);
    assert_string_equal(s->power, "ipmi://root:calvin@bmc1:6230?cipher=3");
    assert_string_equal(s->console, "tcp:127.0.0.1:7001");
    assert_string_equal(s->console_tty, "ttyAMA0,115200");
    s = &c->servers[1];
    assert_string_equal(s->id, "srv-2");
    assert_string_equal(s->name, "srv-2");
    assert_string_equal(s->mac, "52:54:00:ab:cd:02");
    assert_string_equal(s->project, "beta");
    assert_string_equal(s->arch, "x86_64");
    assert_int_equal(s->firmware, FW_BIOS);
    assert_string_equal(s->power, "qmp:/run/lab/srv2.qmp");
    assert_null(s->console);
    assert_string_equal(s->console_tty, "ttyS0,115200n8");
    config_free(c);
}

static void
test_defaults(void **state)
{
    (void)state;
    struct config *c = expect_load(HEAD SERVER("srv1", "52:54:00:00:00:01"));
    assert_string_equal(c->boot_url, "http://127.0.0.1:8080");
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    assert_int_equal(c->max_body, 64 * 1024);
    assert_int_equal(c->pxe_mode, PXE_OFF);
    assert_null(c->pxe_interface);
    assert_null(c->dhcp_range);
    assert_string_equal(c->console_listen, "127.0.0.1:2222");
    assert_int_equal(c->readonly_grace, 30);
    assert_int_equal(c->scrollback, 1024 * 1024);
    /* what clients may hold, and how long history is kept */
    assert_int_equal(c->max_connections, 1024);
    assert_int_equal(c->max_connections_per_ip, 32);
    assert_int_equal(c->request_timeout, 30);
    assert_int_equal(c->max_event_streams, 256);
    assert_int_equal(c->max_event_streams_per_token, 8);
    assert_int_equal(c->retention_days, 90);
    assert_int_equal(c->retention_events, 100000);
    assert_int_equal(c->max_startups, 10);
    assert_int_equal(c->max_startups_per_source, 3);
    assert_int_equal(c->login_grace, 60);
    assert_int_equal(c->max_auth_tries, 6);
    assert_true(c->console_record); /* recordings on unless turned off */
    assert_int_equal(c->record_days, 30);
    assert_null(c->ui_origin);
    assert_string_equal(c->kernel, "/var/lib/rescued/images/vmlinuz");
    assert_string_equal(c->initrd, "/var/lib/rescued/images/initramfs");
    assert_null(c->tools); /* no tools archive unless one is named */
    assert_string_equal(c->cmdline, "");
    assert_int_equal(c->timeout_rebooting, 180);
    assert_int_equal(c->timeout_pxe_booting, 120);
    assert_int_equal(c->timeout_rescue_booting, 300);
    assert_int_equal(c->timeout_exiting, 180);
    assert_int_equal(c->timeout_booting_local, 300);
    assert_int_equal(c->max_retries, 2);
    assert_string_equal(c->local_boot_pattern, "login:");
    assert_int_equal(c->local_settle, 60);
    assert_null(c->projects[0].keys_file);
    assert_int_equal(c->nservers, 1);
    assert_string_equal(c->servers[0].name, "srv1");
    assert_string_equal(c->servers[0].arch, "x86_64");
    assert_int_equal(c->servers[0].firmware, FW_BIOS);
    assert_null(c->servers[0].console);
    assert_string_equal(c->servers[0].console_tty, "ttyS0,115200n8");
    config_free(c);
}

static void
test_example_file(void **state)
{
    (void)state;
    char err[512] = "";
    /* Tests run from the repository root (make). */
    struct config *c =
        config_load("orchestrator/rescued.example.ini", err, sizeof(err));
    if (!c)
        fail_msg("example refused: %s", err);
    assert_string_equal(c->listen, "127.0.0.1:8080");
    assert_string_equal(c->boot_url, "http://127.0.0.1:8080");
    assert_string_equal(c->data_dir, "build/run/data");
    assert_string_equal(c->store, "sqlite:");
    assert_int_equal(c->pxe_mode, PXE_OFF);
    assert_string_equal(c->cmdline, "");
    assert_string_equal(c->local_boot_pattern, "login:");
    assert_int_equal(c->timeout_rescue_booting, 300);
    assert_non_null(config_find_project(c, "demo"));
    assert_string_equal(config_find_project(c, "demo")->keys_file,
                        "orchestrator/demo.keys");
    assert_non_null(config_find_server(c, "srv1"));
    assert_non_null(config_find_server(c, "srv2"));
    assert_string_equal(config_find_server(c, "srv2")->power, "manual:");
    config_free(c);
}

static void
test_unreadable_file(void **state)
{
    (void)state;
    char err[512], want[600];
    snprintf(want, sizeof(want), "%s/missing.ini: cannot read: %s", tmpdir,
             "No such file or directory");
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing.ini", tmpdir);
    assert_null(config_load(missing, err, sizeof(err)));
    assert_string_equal(err, want);
}

static void
test_syntax_error(void **state)
{
    (void)state;
    expect_refusal(HEAD "[pxe]\nmode off\n", ":9: ", "syntax error: mode off");
    expect_refusal(HEAD "[pxe\n", ":8: ", "syntax error");
    expect_refusal("listen = x\n[rescued]\n",
                   ":1: ", "listen: key outside any section");
    /* What iniparser itself refuses. */
    char text[2048];
    snprintf(text, sizeof(text), HEAD "[image]\ncmdline = %01500d\n", 0);
    expect_refusal(text, ":9: ", "line too long");
}

static void
test_unknown_section(void **state)
{
    (void)state;
    expect_refusal(HEAD "[bogus]\n", ":8: [bogus]: ", "unknown section");
    expect_refusal(HEAD "[server]\n", ":8: [server]: ", "unknown section");
}

static void
test_unknown_key(void **state)
{
    (void)state;
    expect_refusal(HEAD "[pxe]\nmod = off\n", ":9: [pxe] mod: ", "unknown key");
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01") "colour = red\n",
                   ":12: [server:srv1] colour: ", "unknown key");
}

static void
test_missing_required_key(void **state)
{
    (void)state;
    /* No such section: no line. */
    expect_refusal("[pxe]\nmode = off\n",
                   ": [rescued] listen: ", "missing required key");
    /* The section's line when it exists. */
    expect_refusal("\n[rescued]\nlisten = 127.0.0.1:1\n"
                   "boot_url = http://x\ndata_dir = /d\n",
                   ":2: [rescued] admin_token: ", "missing required key");
    expect_refusal(HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                        "project = acme\n",
                   ":8: [server:srv1] power: ", "missing required key");
    /* Empty is not there. */
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01") "name =\n",
                   ":12: [server:srv1] name: ", "must not be empty");
}

static void
test_duplicate_server(void **state)
{
    (void)state;
    expect_refusal(
        HEAD SERVER("srv1", "52:54:00:00:00:01")
            SERVER("srv1", "52:54:00:00:00:02"),
        ":12: [server:srv1]: ", "duplicate server id (first at line 8)");
    /* iniparser would merge these too. */
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01")
                       SERVER("SRV1", "52:54:00:00:00:02"),
                   ":12: [server:SRV1]: ", "duplicate server id");
}

static void
test_duplicate_key(void **state)
{
    (void)state;
    expect_refusal(HEAD "[pxe]\nmode = off\nMODE = dhcp\n",
                   ":10: [pxe] MODE: ", "duplicate key (first at line 9)");
    expect_refusal(HEAD "[rescued]\n",
                   ":8: [rescued]: ", "duplicate section (first at line 1)");
}

static void
test_duplicate_mac(void **state)
{
    (void)state;
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01")
                       SERVER("srv0", "52-54-00-00-00-01"),
                   ":13: [server:srv0] mac: ",
                   "duplicate MAC 52:54:00:00:00:01 (also [server:srv1])");
}

static void
test_bad_mac(void **state)
{
    (void)state;
    expect_refusal(
        HEAD SERVER("srv1", "52:54:00:00:00"),
        ":9: [server:srv1] mac: ", "'52:54:00:00:00' is not a MAC address");
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:0g"),
                   ":9: [server:srv1] mac: ", "not a MAC address");
}

static void
test_bad_server_id(void **state)
{
    (void)state;
    expect_refusal(
        HEAD SERVER("srv.1", "52:54:00:00:00:01"),
        ":8: [server:srv.1]: ", "server id must be letters, digits and '-'");
    /* Config took '_' and the overlay refused it: a rescue with no keys. */
    expect_refusal(
        HEAD SERVER("db_1", "52:54:00:00:00:01"),
        ":8: [server:db_1]: ", "server id must be letters, digits and '-'");
    expect_refusal(HEAD SERVER("-db", "52:54:00:00:00:01"),
                   ":8: [server:-db]: ", "must not begin or end with '-'");
    /* What dnsmasq's dhcp-host would read as something else. */
    const char *dnsmasq[] = {"infinite", "Ignore", "12h", "45", "3600s"};
    for (size_t i = 0; i < sizeof(dnsmasq) / sizeof(dnsmasq[0]); i++) {
        char text[1024], where[128];
        snprintf(text, sizeof(text), HEAD "[server:%s]\n", dnsmasq[i]);
        snprintf(where, sizeof(where), ":8: [server:%s]: ", dnsmasq[i]);
        expect_refusal(text, where,
                       "reads to dnsmasq as a lease time or a keyword");
    }
    expect_refusal(HEAD SERVER("", "52:54:00:00:00:01"),
                   ":8: [server:]: ", "server id must be 1 to 63 characters");
    char text[1024], sec[80];
    memset(sec, 'a', 64);
    sec[64] = '\0';
    snprintf(text, sizeof(text), HEAD "[server:%s]\n", sec);
    expect_refusal(text, ":8: [server:aaaa", "server id must be 1 to 63");
    /* 63 is fine. */
    sec[63] = '\0';
    snprintf(text, sizeof(text),
             HEAD "[server:%s]\nmac = 52:54:00:00:00:01\nproject = acme\n"
                  "power = manual:\n",
             sec);
    config_free(expect_load(text));
}

/* Bearer tokens of fewer than 16 characters are refused with FILE:LINE;
 * so is a local_boot_pattern longer than the console matcher holds (it
 * would never be seen, and the server never settle). */
static void
test_short_tokens_long_pattern(void **state)
{
    (void)state;
    expect_refusal("[rescued]\n"
                   "listen = 127.0.0.1:8080\n"
                   "boot_url = http://127.0.0.1:8080/\n"
                   "data_dir = /var/lib/rescued\n"
                   "admin_token = 0123456789abcde\n",
                   ":5: [rescued] admin_token: ", "shorter than 16 characters");
    expect_refusal(HEAD "[project:beta]\ntoken = 0123456789abcde\n",
                   ":9: [project:beta] token: ", "shorter than 16 characters");
    config_free(expect_load(HEAD "[project:beta]\ntoken = 0123456789abcdef\n"));

    char text[1024], pat[200];
    memset(pat, 'x', 129);
    pat[129] = '\0';
    snprintf(text, sizeof(text), HEAD "[timeouts]\nlocal_boot_pattern = %s\n",
             pat);
    expect_refusal(
        text, ":9: [timeouts] local_boot_pattern: ", "longer than 128 bytes");
    pat[128] = '\0';
    snprintf(text, sizeof(text), HEAD "[timeouts]\nlocal_boot_pattern = %s\n",
             pat);
    struct config *c = expect_load(text);
    assert_int_equal(strlen(c->local_boot_pattern), 128);
    config_free(c);
}

static void
test_unknown_project(void **state)
{
    (void)state;
    expect_refusal(HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                        "project = nope\npower = manual:\n",
                   ":10: [server:srv1] project: ", "no [project:nope]");
}

/* --sim-power resets nothing real: one server with a real power driver
 * among manual: ones is refused, by name; manual: only is accepted. */
static void
test_sim_power_refuses_real_power(void **state)
{
    (void)state;
    static const char manual_only[] = HEAD SERVER("srv1", "52:54:00:00:00:01")
        SERVER("srv2", "52:54:00:00:00:02");
    static const char one_real[] =
        HEAD SERVER("srv1", "52:54:00:00:00:01") "[server:srv2]\n"
                                                 "mac = 52:54:00:00:00:02\n"
                                                 "project = acme\n"
                                                 "power = qmp:/run/x.qmp\n";
    char err[256] = "";
    struct config *c = expect_load(manual_only);
    assert_int_equal(config_check_sim_power(c, err, sizeof(err)), 0);
    config_free(c);
    c = expect_load(one_real);
    assert_int_equal(config_check_sim_power(c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "[server:srv2]"));
    assert_non_null(strstr(err, "qmp:/run/x.qmp"));
    assert_non_null(strstr(err, "--sim-power"));
    config_free(c);
}

static void
test_power_uri(void **state)
{
    (void)state;
    static const char *good[] = {
        "qmp:/run/lab/srv1.qmp",
        "ipmi://admin:secret@10.0.0.5",
        "ipmi://admin:secret@10.0.0.5:6230?cipher=3&boot=legacy",
        "manual:",
        "qmp:/run/lab/srv1.qmp?nic=net0",
        "redfish://root:calvin@10.0.0.5/Systems/1",
        "redfish://10.0.0.5:8443/Systems/1?ca=/etc/bmc.pem&boot=uefi",
    };
    static const char *bad[] = {
        "wol:52:54:00:00:00:01",
        "qmp:",
        "qmp:run/x.qmp",
        "redfish://",
        "redfish://root@bmc/x",
        "ipmi://10.0.0.5",
        "ipmi://a:b@",
        "ipmi://a:b@h:0",
        "ipmi://a:b@h?cipher=x",
        "http://bmc/",
        "manual:now",
        "qmp:/x?bootdev=net0",
        "qmp:/x?nic=",
        "redfish://bmc/Systems/1?tls=off",
        "redfish://bmc/Systems/1?ca=/x&tls=insecure",
    };
    char text[1024];
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        snprintf(text, sizeof(text),
                 HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                      "project = acme\npower = %s\n",
                 good[i]);
        struct config *c = expect_load(text);
        assert_string_equal(c->servers[0].power, good[i]);
        config_free(c);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        snprintf(text, sizeof(text),
                 HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                      "project = acme\npower = %s\n",
                 bad[i]);
        expect_refusal(text, ":11: [server:srv1] power: ", "");
    }
    expect_refusal(HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                        "project = acme\npower = wol:x\n",
                   ":11: [server:srv1] power: ", "unknown power URI scheme");
    /* power_credentials names a file; the driver reads it. */
    struct config *c =
        expect_load(HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                         "project = acme\n"
                         "power = redfish://10.0.0.5/Systems/1\n"
                         "power_credentials = /etc/rescued/bmc1\n");
    assert_string_equal(c->servers[0].power_credentials, "/etc/rescued/bmc1");
    config_free(c);
}

/* boot = pxe | virtualmedia; virtualmedia only with redfish and a CD. */
static void
test_boot_mode(void **state)
{
    (void)state;
    struct config *c = expect_load(HEAD SERVER("srv1", "52:54:00:00:00:01"));
    assert_int_equal(c->servers[0].boot, BOOT_PXE);
    assert_null(c->iso);
    config_free(c);
    c = expect_load(HEAD "[image]\niso = /srv/rescue.iso\n"
                         "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                         "project = acme\n"
                         "power = redfish://10.0.0.5/Systems/1\n"
                         "boot = virtualmedia\n");
    assert_int_equal(c->servers[0].boot, BOOT_VIRTUALMEDIA);
    assert_string_equal(c->iso, "/srv/rescue.iso");
    config_free(c);
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01") "boot = usb\n",
                   ":12: [server:srv1] boot: ",
                   "'usb' is not pxe or "
                   "virtualmedia");
    /* A driver without virtual media, or no CD to put in. */
    expect_refusal(HEAD "[image]\niso = /srv/rescue.iso\n" SERVER(
                       "srv1", "52:54:00:00:00:01") "boot = virtualmedia\n",
                   ":14: [server:srv1] boot: ",
                   "virtualmedia needs power = redfish://... and [image] iso");
    expect_refusal(HEAD "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                        "project = acme\n"
                        "power = redfish://10.0.0.5/Systems/1\n"
                        "boot = virtualmedia\n",
                   ":12: [server:srv1] boot: ",
                   "virtualmedia needs power = redfish://... and [image] iso");
}

/* Facilities: [rescued] node (default the host name), facility (default
 * "default"), lease; [server:ID] facility (default the node's);
 * [facility:NAME] console_host.  Bad names refused with FILE:LINE. */
static void
test_facilities(void **state)
{
    (void)state;
#define NODE(lines)                                                            \
    "[rescued]\n"                                                              \
    "listen = 127.0.0.1:8080\n"                                                \
    "boot_url = http://127.0.0.1:8080/\n"                                      \
    "data_dir = /var/lib/rescued\n"                                            \
    "admin_token = admintok-0123456789\n" lines "[project:acme]\n"
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
    struct config *c = expect_load(HEAD SERVER("srv1", "52:54:00:00:00:01"));
    assert_string_equal(c->node, host);
    assert_string_equal(c->facility, "default");
    assert_int_equal(c->lease, 10);
    assert_string_equal(c->servers[0].facility, "default");
    assert_int_equal(c->nfacilities, 0);
    config_free(c);

    c = expect_load(
        NODE("node = fra-1.example.net\nfacility = fra\n"
             "lease = 6s\n") SERVER("srv1", "52:54:00:00:00:01")
            SERVER("srv2", "52:54:00:00:00:02") "facility = ams\n"
                                                "[facility:ams]\nconsole_host "
                                                "= sos.ams.example.net\n"
                                                "[facility:fra]\n");
    assert_string_equal(c->node, "fra-1.example.net");
    assert_string_equal(c->facility, "fra");
    assert_int_equal(c->lease, 6);
    assert_string_equal(config_find_server(c, "srv1")->facility, "fra");
    assert_string_equal(config_find_server(c, "srv2")->facility, "ams");
    assert_int_equal(c->nfacilities, 2);
    assert_string_equal(config_find_facility(c, "ams")->console_host,
                        "sos.ams.example.net");
    assert_null(config_find_facility(c, "fra")->console_host);
    assert_null(config_find_facility(c, "lhr"));
    config_free(c);

    expect_refusal(NODE("node = fra 1\n"),
                   ":6: [rescued] node: ", "'fra 1' is not a name");
    expect_refusal(NODE("facility = -fra\n"),
                   ":6: [rescued] facility: ", "not beginning with '-'");
    expect_refusal(NODE("lease = 0\n"), ":6: [rescued] lease: ", "");
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01") "facility = a/b\n",
                   ":12: [server:srv1] facility: ", "'a/b' is not a name");
    expect_refusal(HEAD "[facility:a b]\n",
                   ":8: [facility:a b]: ", "'a b' is not a name");
    expect_refusal(HEAD "[facility:fra]\nhost = x\n",
                   ":9: [facility:fra] host: ", "unknown key");
#undef NODE
}

/* [rescued] store: a URL with a backend, default "sqlite:"; any other
 * scheme refused at start with FILE:LINE, never echoing what follows it. */
static void
test_store_url(void **state)
{
    (void)state;
#define RESCUED_WITH(line)                                                     \
    "[rescued]\n"                                                              \
    "listen = 127.0.0.1:8080\n"                                                \
    "boot_url = http://127.0.0.1:8080/\n"                                      \
    "data_dir = /var/lib/rescued\n"                                            \
    "admin_token = admintok-0123456789\n" line "\n"                            \
    "[project:acme]\n"
    struct config *c = expect_load(HEAD);
    assert_string_equal(c->store, "sqlite:");
    config_free(c);
    c = expect_load(RESCUED_WITH("store = sqlite:/srv/rescued/state.db"));
    assert_string_equal(c->store, "sqlite:/srv/rescued/state.db");
    config_free(c);
    c = expect_load(RESCUED_WITH("Store = sqlite:"));
    assert_string_equal(c->store, "sqlite:");
    config_free(c);

    expect_refusal(
        RESCUED_WITH("store = mysql://root:hunter2@db/rescued"),
        ":6: [rescued] store: ", "unknown store URL scheme 'mysql:'");
    expect_refusal(RESCUED_WITH("store = postgresql:rescued:pw@db/rescued"),
                   ":6: [rescued] store: ",
                   "postgresql: store URL must begin postgresql://");
    c = expect_load(RESCUED_WITH("store = postgresql://rescued@db/rescued"));
    assert_string_equal(c->store, "postgresql://rescued@db/rescued");
    config_free(c);
    expect_refusal(RESCUED_WITH("store = /var/lib/rescued/rescued.db"),
                   ":6: [rescued] store: ", "is not a store URL");
    expect_refusal(RESCUED_WITH("store = sqlite:/var/lib/rescued/"),
                   ":6: [rescued] store: ", "not a directory");
    expect_refusal(RESCUED_WITH("store ="),
                   ":6: [rescued] store: ", "is not a store URL");
    /* The password in a refused URL stays out of the message (and logs). */
    char err[512] = "";
    assert_null(load_text(RESCUED_WITH("store = mysql://root:hunter2@db/x"),
                          err, sizeof(err)));
    assert_null(strstr(err, "hunter2"));
#undef RESCUED_WITH
}

static void
test_console_uri(void **state)
{
    (void)state;
    static const char *good[] = {
        "unix:/run/lab/srv1.serial",
        "tcp:127.0.0.1:7001",
        "tcp:ser2net.lab:65535",
        "tty:/dev/ttyUSB0",
        "tty:/dev/ttyS0@115200",
        "ipmi-sol:bmc1",
        "tcp:[::1]:7001",
        "ipmi-sol:admin:pw@bmc1:623?cipher=3",
    };
    /* From "ipmi-sol:" on, accepted here and refused by console at start. */
    static const char *bad[] = {
        "serial:/dev/ttyS0",
        "unix:",
        "tcp:host",
        "tcp:host:0",
        "tcp:host:65536",
        "tcp::7001",
        "tcp:host:70a",
        "tty:",
        "tty:/dev/ttyS0@fast",
        "ipmi-sol:",
        "tty:/dev/ttyS0@123",
        "ipmi-sol:u:p@h:0",
        "ipmi-sol:h?x=1",
    };
    char text[1024];
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        snprintf(text, sizeof(text),
                 HEAD SERVER("srv1", "52:54:00:00:00:01") "console = %s\n",
                 good[i]);
        struct config *c = expect_load(text);
        assert_string_equal(c->servers[0].console, good[i]);
        config_free(c);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        snprintf(text, sizeof(text),
                 HEAD SERVER("srv1", "52:54:00:00:00:01") "console = %s\n",
                 bad[i]);
        expect_refusal(text, ":12: [server:srv1] console: ", "");
    }
    expect_refusal(
        HEAD SERVER("srv1", "52:54:00:00:00:01") "console = serial:x\n",
        ":12: [server:srv1] console: ", "unknown console URI scheme");
    expect_refusal(
        HEAD SERVER("srv1", "52:54:00:00:00:01") "console = "
                                                 "tty:/dev/ttyS0@"
                                                 "14400\n",
        ":12: [server:srv1] console: ", "tty: unsupported speed '14400'");
}

static void
test_bad_numbers(void **state)
{
    (void)state;
    expect_refusal(HEAD "[timeouts]\nrebooting = 5x\n",
                   ":9: [timeouts] rebooting: ",
                   "'5x' is not a positive "
                   "duration");
    expect_refusal(HEAD "[timeouts]\npxe_booting = 0\n",
                   ":9: [timeouts] pxe_booting: ", "not a positive duration");
    expect_refusal(HEAD "[timeouts]\nretries = -1\n",
                   ":9: [timeouts] retries: ", "'-1' is not a number");
    expect_refusal(HEAD "[timeouts]\nlocal_settle = -5\n",
                   ":9: [timeouts] local_settle: ", "not a duration");
    expect_refusal(HEAD "[console]\nreadonly_grace = soon\n",
                   ":9: [console] readonly_grace: ", "not a duration");
    expect_refusal(HEAD "[console]\nscrollback = 1Q\n",
                   ":9: [console] scrollback: ", "'1Q' is not a size");
    expect_refusal("[rescued]\nmax_body = lots\n",
                   ":2: [rescued] max_body: ", "not a size");
    expect_refusal(
        "[rescued]\nrequest_timeout = 0\n",
        ":2: [rescued] request_timeout: ", "not a positive duration");
    expect_refusal("[rescued]\nmax_connections_per_ip = many\n",
                   ":2: [rescued] max_connections_per_ip: ", "not a number");
    expect_refusal("[rescued]\nretention_days = -1\n",
                   ":2: [rescued] retention_days: ", "not a number");
    expect_refusal(HEAD "[console]\nlogin_grace = 0\n",
                   ":9: [console] login_grace: ", "not a positive duration");
    expect_refusal(HEAD "[console]\nmax_auth_tries = x\n",
                   ":9: [console] max_auth_tries: ", "not a number");
}

static void
test_bad_enums(void **state)
{
    (void)state;
    expect_refusal(HEAD "[pxe]\nmode = on\n",
                   ":9: [pxe] mode: ", "'on' is not dhcp, proxy or off");
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01") "firmware = efi\n",
                   ":12: [server:srv1] firmware: ",
                   "'efi' is not bios or "
                   "uefi");
    expect_refusal(HEAD SERVER("srv1", "52:54:00:00:00:01") "arch = arm64\n",
                   ":12: [server:srv1] arch: ",
                   "'arm64' is not x86_64 or "
                   "aarch64");
    expect_refusal(HEAD "[console]\nrecord = yes\n",
                   ":9: [console] record: ", "'yes' is not on or off");
    expect_refusal("[rescued]\nlog_level = verbose\n",
                   ":2: [rescued] log_level: ", "'verbose' is not error");
    /* dhcp and proxy need an interface. */
    expect_refusal(HEAD "[pxe]\nmode = dhcp\n", ":9: [pxe] interface: ",
                   "required when mode is dhcp or proxy");
}

/* The browser console's settings: record off, retention, [ui] origin. */
static void
test_console_record(void **state)
{
    (void)state;
    struct config *c =
        expect_load(HEAD "[console]\nrecord = off\n"
                         "record_days = 7\n"
                         "[ui]\norigin = https://portal.example\n" SERVER(
                             "srv1", "52:54:00:00:00:01"));
    assert_false(c->console_record);
    assert_int_equal(c->record_days, 7);
    assert_string_equal(c->ui_origin, "https://portal.example");
    config_free(c);
}

/* The portal's keys: its files' dir (default: beside the binary, so
 * unset here) and how long a sign-in lasts. */
static void
test_ui(void **state)
{
    (void)state;
    struct config *c = expect_load(HEAD SERVER("srv1", "52:54:00:00:00:01"));
    assert_null(c->ui_dir);
    assert_int_equal(c->session_ttl, 8 * 3600);
    config_free(c);
    c = expect_load(HEAD "[ui]\ndir = /srv/ui\nsession_ttl = 15m\n" SERVER(
        "srv1", "52:54:00:00:00:01"));
    assert_string_equal(c->ui_dir, "/srv/ui");
    assert_int_equal(c->session_ttl, 15 * 60);
    config_free(c);
    expect_refusal(HEAD "[ui]\nsession_ttl = 0\n",
                   ":9: [ui] session_ttl: ", "");
    expect_refusal(HEAD "[ui]\nsession_ttl = soon\n",
                   ":9: [ui] session_ttl: ", "");
}

/* Our four words and the syslog names, each on the nearest level. */
static void
test_log_levels(void **state)
{
    (void)state;
    static const struct {
        const char *word;
        enum log_level level;
    } words[] = {
        {"error", LOG_LEVEL_ERROR},  {"err", LOG_LEVEL_ERROR},
        {"crit", LOG_LEVEL_ERROR},   {"alert", LOG_LEVEL_ERROR},
        {"emerg", LOG_LEVEL_ERROR},  {"warn", LOG_LEVEL_WARN},
        {"warning", LOG_LEVEL_WARN}, {"notice", LOG_LEVEL_INFO},
        {"info", LOG_LEVEL_INFO},    {"debug", LOG_LEVEL_DEBUG},
    };
    const char *rest = HEAD + strlen("[rescued]\n");
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        char *text =
            xasprintf("[rescued]\nlog_level = %s\n%s", words[i].word, rest);
        struct config *c = expect_load(text);
        if (c->log_level != (int)words[i].level)
            fail_msg("log_level = %s gave %d, wanted %d", words[i].word,
                     c->log_level, words[i].level);
        config_free(c);
        free(text);
    }
    /* A refusal lists every word taken; values are case-sensitive, as the
     * other words of the file. */
    expect_refusal("[rescued]\nlog_level = verbose\n",
                   ":2: [rescued] log_level: ",
                   "'verbose' is not error, warn, info, debug, emerg, alert, "
                   "crit, err, warning or notice");
    expect_refusal("[rescued]\nlog_level = Warning\n",
                   ":2: [rescued] log_level: ", "'Warning' is not error");
    expect_refusal("[rescued]\nlog_level = \n",
                   ":2: [rescued] log_level: ", "'' is not error");
    char small[8];
    log_level_words(small, sizeof(small));
    assert_string_equal(small, "error, ");
}

static void
test_bad_boot_url(void **state)
{
    (void)state;
    expect_refusal(
        "[rescued]\nboot_url = ftp://10.0.0.1/\n",
        ":2: [rescued] boot_url: ", "is not an http:// or https:// URL");
    expect_refusal("[rescued]\nboot_url = http://\n",
                   ":2: [rescued] boot_url: ", "not an http://");
}

static void
test_bad_listen(void **state)
{
    (void)state;
    expect_refusal("[rescued]\nlisten = 8080\n",
                   ":2: [rescued] listen: ", "'8080' is not host:port");
    expect_refusal("[rescued]\nlisten = localhost:http\n",
                   ":2: [rescued] listen: ", "not host:port");
    expect_refusal(HEAD "[console]\nlisten = :2222\n",
                   ":9: [console] listen: ", "not host:port");
}

/* /metrics's own token is a secret like the others: 16 characters. */
static void
test_metrics_token_short(void **state)
{
    (void)state;
    expect_refusal("[rescued]\nlisten = 127.0.0.1:8080\n"
                   "boot_url = http://127.0.0.1:8080/\n"
                   "data_dir = /var/lib/rescued\nadmin_token = admintok\n"
                   "metrics_token = short\n",
                   ":6: [rescued] metrics_token: ", "at least 16 characters");
}

static void
test_token_clash(void **state)
{
    (void)state;
    expect_refusal(
        HEAD "[project:beta]\ntoken = admintok-0123456789\n",
        ":9: [project:beta] token: ", "same as [rescued] admin_token");
    expect_refusal(
        HEAD "[project:beta]\nkeys_file = /k\ntoken = acmetok-0123456789\n",
        ":10: [project:beta] token: ", "same as the token of [project:acme]");
}

static void
test_parse_mac(void **state)
{
    (void)state;
    char out[18];
    assert_true(config_parse_mac("52-54-00-AB-cd-01", out));
    assert_string_equal(out, "52:54:00:ab:cd:01");
    assert_true(config_parse_mac("52:54:00:AB:CD:EF", out));
    assert_string_equal(out, "52:54:00:ab:cd:ef");
    assert_false(config_parse_mac("52:54-00:ab:cd:01", out));
    assert_false(config_parse_mac("52:54:00:ab:cd:01:02", out));
    assert_false(config_parse_mac("52:54:00:ab:cd:1", out));
    assert_false(config_parse_mac("5254.00ab.cd01", out));
    assert_false(config_parse_mac("52:54:00:ab:cd:0x", out));
    assert_false(config_parse_mac("", out));
}

static void
test_find(void **state)
{
    (void)state;
    struct config *c =
        expect_load(HEAD "[project:beta]\ntoken = betatok-0123456789\n" SERVER(
            "srv3", "52:54:00:00:00:03") SERVER("srv1", "52:54:00:00:00:01")
                        SERVER("srv2", "52:54:00:00:00:02"));
    assert_string_equal(config_find_server(c, "srv1")->id, "srv1");
    assert_string_equal(config_find_server(c, "srv2")->id, "srv2");
    assert_string_equal(config_find_server(c, "srv3")->id, "srv3");
    assert_null(config_find_server(c, "srv4"));
    assert_null(config_find_server(c, "SRV1"));
    assert_string_equal(config_find_server_by_mac(c, "52:54:00:00:00:02")->id,
                        "srv2");
    assert_string_equal(config_find_server_by_mac(c, "52-54-00-00-00-03")->id,
                        "srv3");
    assert_null(config_find_server_by_mac(c, "52:54:00:00:00:04"));
    assert_null(config_find_server_by_mac(c, "junk"));
    assert_string_equal(config_find_project(c, "beta")->name, "beta");
    assert_null(config_find_project(c, "gamma"));
    assert_string_equal(
        config_find_project_by_token(c, "acmetok-0123456789")->name, "acme");
    assert_string_equal(
        config_find_project_by_token(c, "betatok-0123456789")->name, "beta");
    assert_null(config_find_project_by_token(c, "admintok-0123456789"));
    assert_null(config_find_project_by_token(c, "acmetok-01234567892"));
    assert_null(config_find_project_by_token(c, ""));
    config_free(c);
}

/* The benchmark's fleet: 10,000 servers load, and every one is found. */
static void
test_many_servers(void **state)
{
    (void)state;
    struct buf b = {0};
    buf_printf(&b, HEAD);
    for (int i = 0; i < 10000; i++)
        buf_printf(&b,
                   "[server:s%d]\nmac = 02:00:00:00:%02x:%02x\n"
                   "project = acme\npower = manual:\n",
                   i, i >> 8, i & 0xff);
    struct config *c = expect_load(b.data);
    buf_free(&b);
    assert_int_equal(c->nservers, 10000);
    char id[16], mac[18];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        snprintf(mac, sizeof(mac), "02:00:00:00:%02x:%02x", i >> 8, i & 0xff);
        const struct config_server *s = config_find_server(c, id);
        assert_non_null(s);
        assert_ptr_equal(config_find_server_by_mac(c, mac), s);
    }
    config_free(c);
}

/* iniparser reads a big file in pieces: values and line numbers far into
 * the file are still those of the whole file. */
static void
test_many_servers_far_lines(void **state)
{
    (void)state;
    struct buf b = {0};
    buf_printf(&b, HEAD);
    for (int i = 0; i < 3000; i++)
        buf_printf(&b, SERVER("s%d", "02:00:00:00:%02x:%02x"), i, i >> 8,
                   i & 0xff);
    size_t good = b.len;
    /* Line 7 + 12000 + 1 is "[image]". */
    buf_printf(&b, "[image]\ncmdline = \"quiet  a\" ; note\n");
    struct config *c = expect_load(b.data);
    assert_string_equal(c->cmdline, "quiet  a");
    assert_string_equal(config_find_server(c, "s2999")->mac,
                        "02:00:00:00:0b:b7");
    config_free(c);

    b.len = good;
    buf_printf(&b, "[image]\ncmdline = %01500d\n", 0);
    expect_refusal(b.data, ":12009: ", "line too long");
    buf_free(&b);
}

/* admin_token_file: the token from the file's first line, the file kept
 * from group and others; one of admin_token and admin_token_file. */
static void
test_admin_token_file(void **state)
{
    (void)state;
    char tok[128], text[512];
    snprintf(tok, sizeof(tok), "%s/admin.token", tmpdir);
#define WITH_FILE(extra)                                                       \
    snprintf(text, sizeof(text),                                               \
             "[rescued]\nlisten = 127.0.0.1:1\nboot_url = http://x\n"          \
             "data_dir = /d\nadmin_token_file = %s\n%s",                       \
             tok, extra)
    assert_int_equal(write_file_atomic(tok, "s3cret\n", 7, 0600), 0);
    WITH_FILE("");
    expect_refusal(
        text, ":5: [rescued] admin_token_file: ", "shorter than 16 characters");
    assert_int_equal(write_file_atomic(tok, "s3cret-0123456789\n", 18, 0600),
                     0);
    WITH_FILE("");
    struct config *c = expect_load(text);
    assert_string_equal(c->admin_token, "s3cret-0123456789");
    config_free(c);
    WITH_FILE("admin_token = x\n");
    expect_refusal(
        text, ":5: [rescued] admin_token_file: ", "admin_token is set too");
    assert_int_equal(write_file_atomic(tok, "s3cret-0123456789\n", 18, 0640),
                     0);
    WITH_FILE("");
    expect_refusal(text, ":5: [rescued] admin_token_file: ",
                   "readable by others (mode 640)");
    assert_int_equal(write_file_atomic(tok, "\n", 1, 0600), 0);
    expect_refusal(
        text, ":5: [rescued] admin_token_file: ", "no token on its first line");
    unlink(tok);
    expect_refusal(
        text, ":5: [rescued] admin_token_file: ", "cannot read: No such file");
#undef WITH_FILE
}

/* store_file: the store URL from the file's first line (a PostgreSQL
 * password out of the main config), kept from group and others; one of
 * store and store_file; a refused URL's password is not in the message. */
static void
test_store_file(void **state)
{
    (void)state;
    char file[128], text[512];
    snprintf(file, sizeof(file), "%s/store.url", tmpdir);
#define WITH_FILE(extra)                                                       \
    snprintf(text, sizeof(text),                                               \
             "[rescued]\nlisten = 127.0.0.1:1\nboot_url = http://x\n"          \
             "data_dir = /d\nadmin_token = 0123456789abcdef\n"                 \
             "store_file = %s\n%s",                                            \
             file, extra)
    const char *url = "postgresql://rescued:hunter2@db/rescued\n";
    assert_int_equal(write_file_atomic(file, url, strlen(url), 0600), 0);
    WITH_FILE("");
    struct config *c = expect_load(text);
    assert_string_equal(c->store, "postgresql://rescued:hunter2@db/rescued");
    config_free(c);
    WITH_FILE("store = sqlite:\n");
    expect_refusal(text, ":6: [rescued] store_file: ", "store is set too");
    assert_int_equal(write_file_atomic(file, url, strlen(url), 0644), 0);
    WITH_FILE("");
    expect_refusal(
        text, ":6: [rescued] store_file: ", "readable by others (mode 644)");
    const char *bad = "mysql://root:hunter2@db/x\n";
    assert_int_equal(write_file_atomic(file, bad, strlen(bad), 0600), 0);
    expect_refusal(text, ":6: [rescued] store_file: ",
                   "unknown store URL scheme 'mysql:'");
    char err[512] = "";
    assert_null(load_text(text, err, sizeof(err)));
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(write_file_atomic(file, "\n", 1, 0600), 0);
    expect_refusal(
        text, ":6: [rescued] store_file: ", "no store URL on its first line");
#undef WITH_FILE
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_missing_required_key),
        cmocka_unit_test(test_duplicate_server),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_mac),
        cmocka_unit_test(test_bad_mac),
        cmocka_unit_test(test_bad_server_id),
        cmocka_unit_test(test_short_tokens_long_pattern),
        cmocka_unit_test(test_unknown_project),
        cmocka_unit_test(test_power_uri),
        cmocka_unit_test(test_sim_power_refuses_real_power),
        cmocka_unit_test(test_console_uri),
        cmocka_unit_test(test_store_url),
        cmocka_unit_test(test_facilities),
        cmocka_unit_test(test_boot_mode),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_enums),
        cmocka_unit_test(test_console_record),
        cmocka_unit_test(test_ui),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_bad_boot_url),
        cmocka_unit_test(test_bad_listen),
        cmocka_unit_test(test_token_clash),
        cmocka_unit_test(test_metrics_token_short),
        cmocka_unit_test(test_parse_mac),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_many_servers),
        cmocka_unit_test(test_many_servers_far_lines),
        cmocka_unit_test(test_admin_token_file),
        cmocka_unit_test(test_store_file),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
