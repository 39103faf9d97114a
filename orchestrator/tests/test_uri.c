/* Tests for uri: every accepted console, power and store URI form with the
 * fields console, power and store attach with, and every refused one with
 * the reason config shows after FILE:LINE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "uri.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>

static void
expect_str(const char *got, const char *want)
{
    if (!want)
        assert_null(got);
    else
        assert_string_equal(got ? got : "(null)", want);
}

/* --- console ------------------------------------------------------------ */

struct console_case {
    const char *uri;
    enum uri_console_kind kind;
    const char *path, *host, *port;
    unsigned baud;
    const char *user, *pass, *cipher;
};

static void
test_console_accepted(void **state)
{
    (void)state;
    static const struct console_case good[] = {
        {.uri = "unix:/run/lab/srv1.serial",
         .kind = URI_CONSOLE_UNIX,
         .path = "/run/lab/srv1.serial"},
        {.uri = "unix:relative.sock",
         .kind = URI_CONSOLE_UNIX,
         .path = "relative.sock"},
        {.uri = "unix:/tmp/a b", .kind = URI_CONSOLE_UNIX, .path = "/tmp/a b"},
        {.uri = "tcp:127.0.0.1:7001",
         .kind = URI_CONSOLE_TCP,
         .host = "127.0.0.1",
         .port = "7001"},
        {.uri = "tcp:ser2net.lab:65535",
         .kind = URI_CONSOLE_TCP,
         .host = "ser2net.lab",
         .port = "65535"},
        {.uri = "tcp:h:1", .kind = URI_CONSOLE_TCP, .host = "h", .port = "1"},
        {.uri = "tcp:[::1]:7001",
         .kind = URI_CONSOLE_TCP,
         .host = "::1",
         .port = "7001"},
        {.uri = "tcp:::1:7001",
         .kind = URI_CONSOLE_TCP,
         .host = "::1",
         .port = "7001"},
        {.uri = "tty:/dev/ttyS0@115200",
         .kind = URI_CONSOLE_TTY,
         .path = "/dev/ttyS0",
         .baud = 115200},
        {.uri = "tty:/dev/ttyUSB0",
         .kind = URI_CONSOLE_TTY,
         .path = "/dev/ttyUSB0",
         .baud = 115200},
        {.uri = "tty:/dev/ttyS1@9600",
         .kind = URI_CONSOLE_TTY,
         .path = "/dev/ttyS1",
         .baud = 9600},
        {.uri = "tty:/dev/serial/by-id/a@b@921600",
         .kind = URI_CONSOLE_TTY,
         .path = "/dev/serial/by-id/a@b",
         .baud = 921600},
        {.uri = "ipmi-sol:bmc1",
         .kind = URI_CONSOLE_IPMI_SOL,
         .host = "bmc1",
         .port = "623"},
        {.uri = "ipmi-sol:u:p@h",
         .kind = URI_CONSOLE_IPMI_SOL,
         .host = "h",
         .port = "623",
         .user = "u",
         .pass = "p"},
        {.uri = "ipmi-sol:u:@h:6230",
         .kind = URI_CONSOLE_IPMI_SOL,
         .host = "h",
         .port = "6230",
         .user = "u",
         .pass = ""},
        {.uri = "ipmi-sol:u:p:x@[::1]:6230?cipher=3",
         .kind = URI_CONSOLE_IPMI_SOL,
         .host = "::1",
         .port = "6230",
         .user = "u",
         .pass = "p:x",
         .cipher = "3"},
        {.uri = "ipmi-sol:u:p@x@bmc1?cipher=17",
         .kind = URI_CONSOLE_IPMI_SOL,
         .host = "bmc1",
         .port = "623",
         .user = "u",
         .pass = "p@x",
         .cipher = "17"},
        {.uri = "ipmi-sol:[fe80::1]",
         .kind = URI_CONSOLE_IPMI_SOL,
         .host = "fe80::1",
         .port = "623"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const struct console_case *k = &good[i];
        char err[256] = "";
        struct uri_console *u = uri_console_parse(k->uri, err, sizeof(err));
        if (!u)
            fail_msg("%s refused: %s", k->uri, err);
        assert_int_equal(u->kind, k->kind);
        expect_str(u->path, k->path);
        expect_str(u->host, k->host);
        expect_str(u->port, k->port);
        expect_str(u->user, k->user);
        expect_str(u->pass, k->pass);
        expect_str(u->cipher, k->cipher);
        if (k->kind == URI_CONSOLE_TTY)
            assert_int_equal(u->baud, k->baud);
        uri_console_free(u);
    }
    uri_console_free(NULL);
}

/* The termios constant console sets the line to. */
static void
test_console_tty_speed(void **state)
{
    (void)state;
    static const struct {
        const char *uri;
        speed_t speed;
    } cases[] = {
        {"tty:/dev/ttyS0", B115200},        {"tty:/dev/ttyS0@1200", B1200},
        {"tty:/dev/ttyS0@38400", B38400},   {"tty:/dev/ttyS0@57600", B57600},
        {"tty:/dev/ttyS0@460800", B460800},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct uri_console *u = uri_console_parse(cases[i].uri, NULL, 0);
        assert_non_null(u);
        assert_int_equal(u->speed, cases[i].speed);
        uri_console_free(u);
    }
}

static void
test_console_refused(void **state)
{
    (void)state;
    char long_path[160];
    snprintf(long_path, sizeof(long_path), "unix:/%0120d", 0);
    const struct {
        const char *uri, *reason;
    } bad[] = {
        {"", "empty console URI"},
        {"serial:/dev/ttyS0", "unknown console URI scheme in "
                              "'serial:/dev/ttyS0'"},
        {"UNIX:/x", "unknown console URI scheme"},
        {"unix", "unknown console URI scheme"},
        {"unix:", "unix: needs a socket path"},
        {"tcp:", "tcp: needs HOST:PORT"},
        {"tcp:host", "tcp: needs HOST:PORT"},
        {"tcp::7001", "tcp: needs HOST:PORT"},
        {"tcp:my host:7001", "tcp: needs HOST:PORT"},
        {"tcp:host:", "tcp: port '' is not 1-65535"},
        {"tcp:host:0", "tcp: port '0' is not 1-65535"},
        {"tcp:host:65536", "tcp: port '65536' is not 1-65535"},
        {"tcp:host:070010", "tcp: port '070010' is not 1-65535"},
        {"tcp:host:+80", "tcp: port '+80' is not 1-65535"},
        {"tcp:host: 80", "tcp: port ' 80' is not 1-65535"},
        {"tcp:host:70a", "tcp: port '70a' is not 1-65535"},
        {"tcp:host:7001?telnet", "tcp: port '7001?telnet' is not 1-65535"},
        {"tcp:[]:7001", "tcp: bad [IPv6] host"},
        {"tcp:[::1:7001", "tcp: bad [IPv6] host"},
        {"tty:", "tty: needs a device"},
        {"tty:@115200", "tty: needs a device"},
        {"tty:/dev/ttyS0@", "tty: unsupported speed ''"},
        {"tty:/dev/ttyS0@fast", "tty: unsupported speed 'fast'"},
        {"tty:/dev/ttyS0@123", "tty: unsupported speed '123'"},
        {"tty:/dev/ttyS0@115200n8", "tty: unsupported speed '115200n8'"},
        {"tty:/dev/ttyS0@+9600", "tty: unsupported speed '+9600'"},
        {"tty:/dev/ttyS0@11520000", "tty: unsupported speed '11520000'"},
        {"ipmi-sol:", "ipmi-sol: needs a BMC host"},
        {"ipmi-sol:u:p@", "ipmi-sol: needs a BMC host"},
        {"ipmi-sol:[]", "ipmi-sol: needs a BMC host"},
        {"ipmi-sol:b mc", "ipmi-sol: needs a BMC host"},
        {"ipmi-sol:up@h", "ipmi-sol: credentials must be USER:PASS@"},
        {"ipmi-sol::p@h", "ipmi-sol: credentials must be USER:PASS@"},
        {"ipmi-sol:[::1", "ipmi-sol: unclosed '['"},
        {"ipmi-sol:[::1]x", "ipmi-sol: junk after ']'"},
        {"ipmi-sol:h:0", "ipmi-sol: port '0' is not 1-65535"},
        {"ipmi-sol:h:", "ipmi-sol: port '' is not 1-65535"},
        {"ipmi-sol:h:623:1", "ipmi-sol: port '623:1' is not 1-65535"},
        {"ipmi-sol:h:65536", "ipmi-sol: port '65536' is not 1-65535"},
        {"ipmi-sol:h?x=1", "ipmi-sol: the only option is ?cipher=N"},
        {"ipmi-sol:h?cipher=", "ipmi-sol: the only option is ?cipher=N"},
        {"ipmi-sol:h?cipher=3x", "ipmi-sol: the only option is ?cipher=N"},
        {"ipmi-sol:h?cipher=3&x", "ipmi-sol: the only option is ?cipher=N"},
        {long_path, "unix: socket path longer than 107 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        struct uri_console *u = uri_console_parse(bad[i].uri, err, sizeof(err));
        if (u)
            fail_msg("accepted '%s'", bad[i].uri);
        if (!strstr(err, bad[i].reason))
            fail_msg("'%s': got '%s', wanted '%s'", bad[i].uri, err,
                     bad[i].reason);
    }
    /* No err buffer, no NULL uri crash. */
    assert_null(uri_console_parse(NULL, NULL, 0));
    assert_null(uri_console_parse("tcp:h:0", NULL, 0));
}

/* --- power -------------------------------------------------------------- */

struct power_case {
    const char *uri;
    enum uri_power_kind kind;
    const char *path, *nic, *host, *user, *pass, *port, *cipher;
    bool boot_legacy;
};

static void
test_power_accepted(void **state)
{
    (void)state;
    static const struct power_case good[] = {
        {.uri = "manual:", .kind = URI_POWER_MANUAL},
        {.uri = "qmp:/run/lab/srv1.qmp",
         .kind = URI_POWER_QMP,
         .path = "/run/lab/srv1.qmp"},
        {.uri = "qmp:/run/x.qmp?nic=net0",
         .kind = URI_POWER_QMP,
         .path = "/run/x.qmp",
         .nic = "net0"},
        {.uri = "redfish://bmc1",
         .kind = URI_POWER_REDFISH,
         .host = "bmc1",
         .port = "443"},
        {.uri = "redfish://u:p@[fd00::7]:8443/Systems/2?ca=/etc/ca.pem",
         .kind = URI_POWER_REDFISH,
         .path = "/Systems/2",
         .host = "fd00::7",
         .user = "u",
         .pass = "p",
         .port = "8443"},
        {.uri = "redfish://bmc1/redfish/v1/Systems/1",
         .kind = URI_POWER_REDFISH,
         .path = "/redfish/v1/Systems/1",
         .host = "bmc1",
         .port = "443"},
        {.uri = "redfish://root:calvin@10.0.0.5/redfish/v1/Systems/1",
         .kind = URI_POWER_REDFISH,
         .path = "/redfish/v1/Systems/1",
         .host = "10.0.0.5",
         .user = "root",
         .pass = "calvin",
         .port = "443"},
        {.uri = "redfish://root:p@ss@bmc/x",
         .kind = URI_POWER_REDFISH,
         .path = "/x",
         .host = "bmc",
         .user = "root",
         .pass = "p@ss",
         .port = "443"},
        {.uri = "redfish://bmc/a@b",
         .kind = URI_POWER_REDFISH,
         .path = "/a@b",
         .host = "bmc",
         .port = "443"},
        {.uri = "ipmi://admin:secret@10.0.0.5",
         .kind = URI_POWER_IPMI,
         .host = "10.0.0.5",
         .user = "admin",
         .pass = "secret",
         .port = "623"},
        {.uri = "ipmi://admin:s@c@bmc:6230",
         .kind = URI_POWER_IPMI,
         .host = "bmc",
         .user = "admin",
         .pass = "s@c",
         .port = "6230"},
        {.uri = "ipmi://a:b@[fd00::5]:624?cipher=3&boot=legacy",
         .kind = URI_POWER_IPMI,
         .host = "fd00::5",
         .user = "a",
         .pass = "b",
         .port = "624",
         .cipher = "3",
         .boot_legacy = true},
        {.uri = "ipmi://a:b@bmc?boot=efi",
         .kind = URI_POWER_IPMI,
         .host = "bmc",
         .user = "a",
         .pass = "b",
         .port = "623"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const struct power_case *k = &good[i];
        char err[256] = "";
        struct uri_power *u = uri_power_parse(k->uri, err, sizeof(err));
        if (!u)
            fail_msg("%s refused: %s", k->uri, err);
        assert_int_equal(u->kind, k->kind);
        expect_str(u->path, k->path);
        expect_str(u->nic, k->nic);
        expect_str(u->host, k->host);
        expect_str(u->user, k->user);
        expect_str(u->pass, k->pass);
        expect_str(u->port, k->port);
        expect_str(u->cipher, k->cipher);
        assert_int_equal(u->boot_legacy, k->boot_legacy);
        uri_power_free(u);
    }
    uri_power_free(NULL);
}

/* redfish's options: a CA bundle or no check, and the boot mode. */
static void
test_redfish_options(void **state)
{
    (void)state;
    char err[256] = "";
    struct uri_power *u =
        uri_power_parse("redfish://bmc/Systems/1?ca=/etc/bmc.pem&boot=legacy",
                        err, sizeof(err));
    assert_non_null(u);
    assert_string_equal(u->ca, "/etc/bmc.pem");
    assert_false(u->insecure);
    assert_string_equal(u->boot_mode, "Legacy");
    assert_string_equal(u->path, "/Systems/1");
    uri_power_free(u);
    u = uri_power_parse("redfish://bmc?tls=insecure&boot=uefi", err,
                        sizeof(err));
    assert_non_null(u);
    assert_null(u->ca);
    assert_true(u->insecure);
    assert_string_equal(u->boot_mode, "UEFI");
    assert_null(u->path);
    uri_power_free(u);
}

static void
test_power_refused(void **state)
{
    (void)state;
    char long_path[160];
    snprintf(long_path, sizeof(long_path), "qmp:/%0120d", 0);
    const struct {
        const char *uri, *reason;
    } bad[] = {
        {"", "unknown power URI scheme in ''"},
        {"wol:52:54:00:00:00:01", "unknown power URI scheme"},
        {"http://bmc/", "unknown power URI scheme"},
        {"manual", "unknown power URI scheme"},
        {"manual:now", "manual: takes nothing after the ':'"},
        {"qmp:", "qmp: needs an absolute socket path"},
        {"qmp:run/x.qmp", "qmp: needs an absolute socket path"},
        {"qmp:?nic=net0", "qmp: needs an absolute socket path"},
        {"qmp:/x?nic=", "qmp: the only option is ?nic=DEVICE_ID"},
        {"qmp:/x?", "qmp: the only option is ?nic=DEVICE_ID"},
        {"qmp:/x?bootdev=net0", "qmp: the only option is ?nic=DEVICE_ID"},
        {"qmp:/x?nic=a&b=c", "qmp: the only option is ?nic=DEVICE_ID"},
        {"qmp:/x?nic=a?", "qmp: the only option is ?nic=DEVICE_ID"},
        {"redfish://", "redfish:// needs a host"},
        {"redfish:///Systems/1", "redfish:// needs a host"},
        {"redfish://u:p@/x", "redfish:// needs a host"},
        {"redfish://b mc/x", "redfish:// needs a host"},
        {"redfish://root@bmc/x", "redfish:// credentials must be user:pass@"},
        {"redfish://bmc:0/x", "redfish:// port '0' is not 1-65535"},
        {"redfish://bmc/x?tls=off", "redfish:// options are ?ca=FILE or "
                                    "tls=insecure, and boot=uefi|legacy"},
        {"redfish://bmc/x?ca=/a&tls=insecure", "redfish:// options are"},
        {"redfish://bmc/x?ca=", "redfish:// options are"},
        {"redfish://:p@bmc/x", "redfish:// credentials must be user:pass@"},
        {"ipmi://", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://10.0.0.5", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://a:b@", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://ab@h", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://:b@h", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://a:b@h/x", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://a:b@h x", "ipmi:// must be ipmi://user:pass@host"},
        {"ipmi://a:b@h:0", "ipmi:// port '0' is not 1-65535"},
        {"ipmi://a:b@h:62x", "ipmi:// port '62x' is not 1-65535"},
        {"ipmi://a:b@[::1", "ipmi:// must be ipmi://user:pass@host[:port] "
                            "(unclosed '[')"},
        {"ipmi://a:b@h?cipher=", "ipmi:// options are ?cipher=N and boot="},
        {"ipmi://a:b@h?boot=pxe", "ipmi:// options are ?cipher=N and boot="},
        {"ipmi://a:b@h?cipher=3&cipher=4", "ipmi:// options are"},
        {long_path, "qmp: socket path longer than 107 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        struct uri_power *u = uri_power_parse(bad[i].uri, err, sizeof(err));
        if (u)
            fail_msg("accepted '%s'", bad[i].uri);
        if (!strstr(err, bad[i].reason))
            fail_msg("'%s': got '%s', wanted '%s'", bad[i].uri, err,
                     bad[i].reason);
    }
    assert_null(uri_power_parse(NULL, NULL, 0));
}

/* --- store -------------------------------------------------------------- */

static void
test_store_parse(void **state)
{
    (void)state;
    char err[256] = "";
    struct uri_store *u = uri_store_parse("sqlite:/var/lib/r/x.db", err, 256);
    assert_non_null(u);
    assert_int_equal(u->kind, URI_STORE_SQLITE);
    expect_str(u->path, "/var/lib/r/x.db");
    uri_store_free(u);
    u = uri_store_parse("sqlite:rel/x.db", err, sizeof(err));
    expect_str(u->path, "rel/x.db");
    uri_store_free(u);
    u = uri_store_parse("sqlite:", err, sizeof(err));
    assert_int_equal(u->kind, URI_STORE_SQLITE);
    expect_str(u->path, NULL); /* the default, under data_dir */
    uri_store_free(u);
    /* PostgreSQL: the whole URL goes to libpq as written. */
    u = uri_store_parse("postgresql://u:secret@h/db?sslmode=require", err,
                        sizeof(err));
    assert_non_null(u);
    assert_int_equal(u->kind, URI_STORE_PG);
    expect_str(u->url, "postgresql://u:secret@h/db?sslmode=require");
    uri_store_free(u);
    u = uri_store_parse("postgres:///db?host=/run/pg", err, sizeof(err));
    assert_non_null(u);
    assert_int_equal(u->kind, URI_STORE_PG);
    uri_store_free(u);

    static const struct {
        const char *uri, *reason;
    } bad[] = {
        {"mysql://u:secret@h/db", "unknown store URL scheme 'mysql:'"},
        {"postgresql:u:secret@h/db",
         "the postgresql: store URL must begin postgresql://"},
        {"postgres:h/db", "the postgres: store URL must begin postgres://"},
        {"postgresqlx://h", "unknown store URL scheme 'postgresqlx:'"},
        {"sqlite3:/x.db", "unknown store URL scheme 'sqlite3:'"},
        {"/var/lib/rescued/rescued.db", "is not a store URL"},
        {"", "'' is not a store URL"},
        {"sqlite:/var/lib/", "names the database file, not a directory"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if ((u = uri_store_parse(bad[i].uri, err, sizeof(err))))
            fail_msg("accepted '%s'", bad[i].uri);
        if (!strstr(err, bad[i].reason) || strstr(err, "secret"))
            fail_msg("'%s': got '%s', wanted '%s'", bad[i].uri, err,
                     bad[i].reason);
    }
    assert_null(uri_store_parse(NULL, NULL, 0));
    uri_store_free(NULL);
}

static void
test_parse_port(void **state)
{
    (void)state;
    assert_int_equal(uri_parse_port("1"), 1);
    assert_int_equal(uri_parse_port("623"), 623);
    assert_int_equal(uri_parse_port("65535"), 65535);
    assert_int_equal(uri_parse_port("00080"), 80);
    assert_int_equal(uri_parse_port(""), -1);
    assert_int_equal(uri_parse_port("0"), -1);
    assert_int_equal(uri_parse_port("65536"), -1);
    assert_int_equal(uri_parse_port("99999"), -1);
    assert_int_equal(uri_parse_port("100000"), -1);
    assert_int_equal(uri_parse_port("-1"), -1);
    assert_int_equal(uri_parse_port("8o"), -1);
}

/* A URI for a log line: the password left out, the rest as it is. */
static void
test_redact(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"ipmi://admin:s3cret@bmc1:623?cipher=3",
         "ipmi://admin@bmc1:623?cipher=3"},
        {"ipmi://admin:p@ss@[fe80::1]:623", "ipmi://admin@[fe80::1]:623"},
        {"ipmi://admin@bmc1", "ipmi://admin@bmc1"},
        {"ipmi://bmc1:623", "ipmi://bmc1:623"},
        {"qmp:/run/lab/srv1.qmp", "qmp:/run/lab/srv1.qmp"},
        {"manual:", "manual:"},
        {"ipmi://u:pw@h/x@y", "ipmi://u@h/x@y"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *r = uri_redact(cases[i][0]);
        assert_string_equal(r, cases[i][1]);
        free(r);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_accepted),
        cmocka_unit_test(test_console_tty_speed),
        cmocka_unit_test(test_console_refused),
        cmocka_unit_test(test_power_accepted),
        cmocka_unit_test(test_power_refused),
        cmocka_unit_test(test_redfish_options),
        cmocka_unit_test(test_parse_port),
        cmocka_unit_test(test_store_parse),
        cmocka_unit_test(test_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
