/* uri: the console and power URIs of a [server:ID] section and the store
 * URL of [rescued] (docs/design.md §8), parsed in one place.  config
 * refuses at start-up and reload, with FILE:LINE, exactly what console,
 * power and store would refuse when they attach, and they attach with the
 * parsed fields, never parsing again.  Pure: no I/O, depends only on util.
 *
 * Console sources:
 *   unix:PATH                 PATH non-empty, fits a sockaddr_un
 *   tcp:HOST:PORT             HOST without blanks ("[::1]" for IPv6)
 *   tty:DEVICE[@SPEED]        SPEED a termios rate, default 115200
 *   ipmi-sol:[USER:PASS@]HOST[:PORT][?cipher=N]   PORT default 623
 * Power drivers:
 *   qmp:/ABS/PATH[?nic=DEVICE_ID]
 *   redfish://[USER:PASS@]HOST[:PORT][/PATH][?ca=FILE|tls=insecure
 *             &boot=uefi|legacy]   PORT 443; PATH /Systems/ID or
 *             /redfish/v1/Systems/ID (none: the only system)
 *   ipmi://USER:PASS@HOST[:PORT][?cipher=N&boot=efi|legacy]   PORT 623
 *   manual:
 * Store ([rescued] store):
 *   sqlite:PATH               PATH as written (relative: to the working
 *                             directory), naming a file, not a directory
 *   sqlite:                   DATA_DIR/rescued.db
 *   postgresql://... (or postgres://...)   a libpq connection URI, passed
 *                             to libpq whole (it checks the rest at connect)
 * Every PORT is digits only, 1-65535. */
#ifndef RESCUED_URI_H
#define RESCUED_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

enum uri_console_kind {
    URI_CONSOLE_UNIX,
    URI_CONSOLE_TCP,
    URI_CONSOLE_TTY,
    URI_CONSOLE_IPMI_SOL,
};

struct uri_console {
    enum uri_console_kind kind;
    char *path;        /* unix: socket, tty: device */
    char *host;        /* tcp:, ipmi-sol: (without the [] of IPv6) */
    char *port;        /* tcp:, ipmi-sol: (default "623") */
    unsigned baud;     /* tty: (default 115200) */
    speed_t speed;     /* tty: baud as termios's B* constant */
    char *user, *pass; /* ipmi-sol:, NULL when not given */
    char *cipher;      /* ipmi-sol: ?cipher=N, or NULL */
};

/* Parse a console URI; NULL with a reason in err when it is not one. */
struct uri_console *uri_console_parse(const char *s, char *err, size_t errlen);
/* Accepts NULL. */
void uri_console_free(struct uri_console *u);

enum uri_power_kind {
    URI_POWER_MANUAL,
    URI_POWER_QMP,
    URI_POWER_REDFISH,
    URI_POWER_IPMI,
};

struct uri_power {
    enum uri_power_kind kind;
    char *path;        /* qmp: socket; redfish: resource ("/..."), or NULL */
    char *nic;         /* qmp: ?nic=DEVICE_ID, or NULL */
    char *host;        /* redfish, ipmi */
    char *user, *pass; /* redfish (NULL when not given), ipmi */
    char *port;        /* ipmi (default "623"), redfish (default "443") */
    char *cipher;      /* ipmi ?cipher=N (ipmitool -C), or NULL */
    bool boot_legacy;  /* ipmi ?boot=legacy: PXE without the EFI flag */
    char *ca;          /* redfish ?ca=FILE: the CA bundle, or NULL */
    bool insecure;     /* redfish ?tls=insecure: no certificate check */
    /* redfish ?boot=: "UEFI" or "Legacy" (static), NULL: the BMC's own */
    const char *boot_mode;
};

/* Parse a power URI; NULL with a reason in err when it is not one. */
struct uri_power *uri_power_parse(const char *s, char *err, size_t errlen);
/* Accepts NULL. */
void uri_power_free(struct uri_power *u);

enum uri_store_kind {
    URI_STORE_SQLITE,
    URI_STORE_PG,
};

struct uri_store {
    enum uri_store_kind kind;
    char *path; /* sqlite: the file, NULL for the default under data_dir */
    char *url;  /* postgresql: the whole URL, as libpq takes it */
};

/* Parse a store URL; NULL with a reason in err when it is not one this
 * rescued has a backend for.  The reason names only the scheme, never the
 * rest, which may hold a password. */
struct uri_store *uri_store_parse(const char *s, char *err, size_t errlen);
/* Accepts NULL. */
void uri_store_free(struct uri_store *u);

/* A port: digits only, 1-65535; else -1. */
int uri_parse_port(const char *s);

/* A copy of uri fit for a log line: the password of a
 * "scheme://user:password@host..." left out ("ipmi://admin@bmc1:623");
 * anything else as it is.  Free it. */
char *uri_redact(const char *uri);

#endif
