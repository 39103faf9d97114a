/* config: the INI file of docs/design.md §8, read with iniparser and checked.
 * A bad file is refused with "FILE:LINE: [section] key: reason". */
#ifndef RESCUED_CONFIG_H
#define RESCUED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* A bearer token shorter than this is refused (a guessable secret). */
#define CONFIG_TOKEN_MIN 16
/* The longest local_boot_pattern the console matcher holds (fleet). */
#define CONFIG_PATTERN_MAX 128

enum pxe_mode { PXE_DHCP, PXE_PROXY, PXE_OFF };
enum firmware { FW_BIOS, FW_UEFI };
enum boot_mode { BOOT_PXE, BOOT_VIRTUALMEDIA };

struct config_project {
    char *name;      /* from [project:NAME] */
    char *token;     /* bearer token; may be NULL (no API access) */
    char *keys_file; /* authorized_keys file; may be NULL */
};

/* [facility:NAME]: what every node knows of a facility. */
struct config_facility {
    char *name;
    char *console_host; /* where its consoles are reached; NULL: unset */
};

struct config_server {
    /* from [server:ID], case as written; [A-Za-z0-9_-]{1,63} */
    char *id;
    char *name;    /* display name, default id */
    char mac[18];  /* normalised lower-case aa:bb:cc:dd:ee:ff */
    char *project; /* must name a [project:...] */
    char *arch;    /* "x86_64" | "aarch64" */
    enum firmware firmware;
    char *power; /* qmp:PATH | redfish://... | ipmi://... | manual: */
    /* unix:PATH | tcp:H:P | tty:DEV@SPEED | ipmi-sol:..., or NULL */
    char *console;
    char *console_tty; /* what the kernel writes to, default ttyS0,115200n8 */
    /* redfish: USER:PASSWORD on the first line of this file (0600), not
     * in the power uri; NULL: the uri's */
    char *power_credentials;
    /* pxe (default), or virtualmedia: the [image] iso on the BMC's virtual
     * CD, a one-time boot from it; redfish only */
    enum boot_mode boot;
    /* the facility whose active node runs it; default [rescued] facility */
    char *facility;
};

struct config {
    char *path;
    /* [rescued] */
    char *listen;   /* host:port */
    char *boot_url; /* http://host:port, no trailing slash */
    char *data_dir;
    char *admin_token; /* from the file when admin_token_file is set */
    char *admin_token_file;
    int log_level;         /* enum log_level */
    long long max_body;    /* request-body limit, bytes (default 64K) */
    char *admin_keys_file; /* SSH keys with console access to all */
    /* store URL (uri.h); default "sqlite:", DATA_DIR/rescued.db */
    char *store;
    /* a file holding the store URL instead (its password out of here) */
    char *store_file;
    /* what clients may hold (0: no limit of ours) */
    int max_connections, max_connections_per_ip; /* at start only */
    int request_timeout; /* s from accept to a whole request, > 0 */
    int max_event_streams, max_event_streams_per_token;
    /* history kept: events younger than this many days (0: all), at most
     * this many per server (0: all); tokens that old go too */
    int retention_days, retention_events;
    /* a Bearer token for /metrics only (>= 16 chars); NULL: admin only */
    char *metrics_token;
    /* PEM files: the API listener speaks TLS with them (both or neither) */
    char *tls_cert, *tls_key;
    /* host:port of a plain-HTTP listener for the boot path alone, beside a
     * TLS listen; NULL: none */
    char *boot_listen;
    /* this node's name (default the host name) and facility (default
     * "default"); lease: seconds a facility's lease lasts unrenewed */
    char *node, *facility;
    int lease;
    /* [pxe] */
    enum pxe_mode pxe_mode; /* default off */
    char *pxe_interface;
    char *dhcp_range;
    char *tftp_root; /* dnsmasq's TFTP files, default /usr/lib/ipxe */
    /* [console] */
    char *console_listen; /* default 127.0.0.1:2222 */
    int readonly_grace;   /* seconds, default 30 */
    long long scrollback; /* bytes, default 1M */
    int writer_idle;      /* seconds a writer may idle; 0: forever */
    /* like OpenSSH's MaxStartups, LoginGraceTime, MaxAuthTries (0: no
     * limit) */
    int max_startups, max_startups_per_source;
    int login_grace; /* s from accept to an attached console, > 0 */
    int max_auth_tries;
    bool console_record; /* asciicast recordings of sessions, default on */
    int record_days;     /* recordings older than this are removed */
    /* [ui] */
    char *ui_origin; /* the Origin the browser console accepts besides Host */
    /* [image] */
    char *kernel;
    char *initrd;
    char *tools;       /* the tools archive (squashfs), or NULL for none */
    char *iso;         /* the virtual-media boot CD (scripts/mkiso), or NULL */
    char *cmdline;     /* extra kernel arguments, may be "" */
    char *overlay_dir; /* apkovl skeleton, default alpine-overlay */
    /* aarch64 servers' image (make image ARCH=arm64), served as
     * /images/aarch64-<file name>; NULL: none (their rescue is refused),
     * and their GRUB network loader (for UEFI HTTP boot) */
    char *kernel_aarch64, *initrd_aarch64, *tools_aarch64, *grub_aarch64;
    /* [ui]: the portal */
    char *ui_dir;    /* its files; NULL: "ui" beside the rescued binary */
    int session_ttl; /* seconds a sign-in lasts, default 8h */
    /* [timeouts]: seconds per step, and retries per step */
    int timeout_rebooting, timeout_pxe_booting, timeout_rescue_booting;
    int timeout_exiting, timeout_booting_local;
    int max_retries;          /* default 2 */
    char *local_boot_pattern; /* console text that shows the OS is up */
    /* a server without a console counts as up this long (s, >= 0) after
     * it heads for its disk */
    int local_settle;

    struct config_project *projects;
    size_t nprojects;
    struct config_facility *facilities;
    size_t nfacilities;
    struct config_server *servers; /* sorted by id (strcmp) */
    size_t nservers;
    const struct config_server **by_mac; /* the same servers, by MAC */
};

/* Load and check a file.  On error returns NULL and writes one line,
 * "FILE:LINE: [section] key: reason" (LINE omitted when unknown), to err. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *c);

/* Section names are case-insensitive in the file (iniparser), so two ids
 * that differ only in case are refused as duplicates; lookups by id and
 * project name are exact. */
const struct config_server *config_find_server(const struct config *c,
                                               const char *id);
/* mac in any form config_parse_mac accepts. */
const struct config_server *config_find_server_by_mac(const struct config *c,
                                                      const char *mac);
const struct config_project *config_find_project(const struct config *c,
                                                 const char *name);
/* The [facility:NAME] section, or NULL. */
const struct config_facility *config_find_facility(const struct config *c,
                                                   const char *name);
/* The project whose token this is, or NULL. */
const struct config_project *
config_find_project_by_token(const struct config *c, const char *token);

/* rescued --sim-power (benchmarks only): every server must have manual:
 * power, so that no real machine is ever reset by a simulation.  0, or
 * -EINVAL with the first other server named in err. */
int config_check_sim_power(const struct config *c, char *err, size_t errlen);

/* Normalise "52-54-00-AB-cd-01" or "52:54:00:ab:cd:01" into out[18];
 * returns false when s is not a MAC address. */
bool config_parse_mac(const char *s, char out[18]);

#endif
