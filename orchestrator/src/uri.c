#include "uri.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* The reason into err; -EINVAL. */
static int __attribute__((format(printf, 3, 4)))
bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static char *
dup_range(const char *from, const char *to)
{
    size_t n = (size_t)(to - from);
    char *s = xmalloc(n + 1);
    memcpy(s, from, n);
    s[n] = '\0';
    return s;
}

static bool
has_blank(const char *from, const char *to)
{
    for (const char *p = from; p < to; p++)
        if (*p == ' ' || *p == '\t')
            return true;
    return false;
}

int
uri_parse_port(const char *s)
{
    long v = 0;
    if (!*s || strlen(s) > 5)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

static bool
all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

static const struct {
    unsigned baud;
    speed_t speed;
} speeds[] = {{1200, B1200},     {2400, B2400},     {4800, B4800},
              {9600, B9600},     {19200, B19200},   {38400, B38400},
              {57600, B57600},   {115200, B115200}, {230400, B230400},
              {460800, B460800}, {921600, B921600}};

static bool
parse_speed(const char *s, struct uri_console *u)
{
    if (!all_digits(s) || strlen(s) > 7)
        return false;
    unsigned long n = strtoul(s, NULL, 10);
    for (size_t i = 0; i < sizeof(speeds) / sizeof(speeds[0]); i++)
        if (speeds[i].baud == n) {
            u->baud = speeds[i].baud;
            u->speed = speeds[i].speed;
            return true;
        }
    return false;
}

/* "USER:PASS" in [from, to) into user and pass; the user must not be
 * empty, the password may. */
static bool
split_creds(const char *from, const char *to, char **user, char **pass)
{
    const char *colon = memchr(from, ':', (size_t)(to - from));
    if (!colon || colon == from)
        return false;
    *user = dup_range(from, colon);
    *pass = dup_range(colon + 1, to);
    return true;
}

/* --- console ------------------------------------------------------------ */

static int
parse_unix(struct uri_console *u, const char *p, char *err, size_t errlen)
{
    if (!*p)
        return bad(err, errlen, "unix: needs a socket path");
    if (strlen(p) > SUN_PATH_MAX)
        return bad(err, errlen, "unix: socket path longer than %zu bytes",
                   SUN_PATH_MAX);
    u->kind = URI_CONSOLE_UNIX;
    u->path = xstrdup(p);
    return 0;
}

static int
parse_tcp(struct uri_console *u, const char *p, char *err, size_t errlen)
{
    const char *colon = strrchr(p, ':');
    if (!colon || colon == p || has_blank(p, colon))
        return bad(err, errlen, "tcp: needs HOST:PORT");
    if (uri_parse_port(colon + 1) < 0)
        return bad(err, errlen, "tcp: port '%s' is not 1-65535", colon + 1);
    const char *h = p, *hend = colon;
    if (*h == '[') {
        if (hend[-1] != ']' || hend - h < 3)
            return bad(err, errlen, "tcp: bad [IPv6] host");
        h++, hend--;
    }
    u->kind = URI_CONSOLE_TCP;
    u->host = dup_range(h, hend);
    u->port = xstrdup(colon + 1);
    return 0;
}

static int
parse_tty(struct uri_console *u, const char *p, char *err, size_t errlen)
{
    const char *at = strrchr(p, '@');
    const char *end = at ? at : p + strlen(p);
    if (end == p)
        return bad(err, errlen, "tty: needs a device, as tty:/dev/ttyS0");
    if (!at) {
        u->baud = 115200;
        u->speed = B115200;
    } else if (!parse_speed(at + 1, u)) {
        return bad(err, errlen,
                   "tty: unsupported speed '%s' (1200 to 921600, as "
                   "115200)",
                   at + 1);
    }
    u->kind = URI_CONSOLE_TTY;
    u->path = dup_range(p, end);
    return 0;
}

/* HOST[:PORT] or [V6]:PORT in [p, end) into *host and *port ("623" when
 * not given); NULL, or the reason a user reads. */
static const char *
split_bmc(const char *p, const char *end, char **host, char **port,
          const char *defport)
{
    const char *hend, *pp = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return "unclosed '['";
        if (rb + 1 < end && rb[1] != ':')
            return "junk after ']'";
        if (rb + 1 < end)
            pp = rb + 2;
        hend = rb;
        p++;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hend = colon ? colon : end;
        if (colon)
            pp = colon + 1;
    }
    if (hend == p || has_blank(p, hend) || memchr(p, '/', (size_t)(hend - p)))
        return "needs a BMC host";
    *host = dup_range(p, hend);
    *port = pp ? dup_range(pp, end) : xstrdup(defport);
    if (uri_parse_port(*port) < 0)
        return "bad port";
    return NULL;
}

/* [USER:PASS@]HOST[:PORT][?cipher=N] */
static int
parse_ipmi_sol(struct uri_console *u, const char *p, char *err, size_t errlen)
{
    const char *at = strrchr(p, '@');
    const char *q = strchr(at ? at : p, '?');
    const char *end = q ? q : p + strlen(p);

    if (at) {
        if (!split_creds(p, at, &u->user, &u->pass))
            return bad(err, errlen, "ipmi-sol: credentials must be USER:PASS@");
        p = at + 1;
    }
    const char *why = split_bmc(p, end, &u->host, &u->port, "623");
    if (why && strcmp(why, "bad port") == 0)
        return bad(err, errlen, "ipmi-sol: port '%s' is not 1-65535", u->port);
    if (why)
        return bad(err, errlen, "ipmi-sol: %s", why);
    if (q) {
        if (strncmp(q, "?cipher=", 8) != 0 || !all_digits(q + 8))
            return bad(err, errlen, "ipmi-sol: the only option is ?cipher=N");
        u->cipher = xstrdup(q + 8);
    }
    u->kind = URI_CONSOLE_IPMI_SOL;
    return 0;
}

struct uri_console *
uri_console_parse(const char *s, char *err, size_t errlen)
{
    struct uri_console *u = xcalloc(1, sizeof(*u));
    int r;

    if (!s || !*s) {
        r = bad(err, errlen, "empty console URI");
    } else if (strncmp(s, "unix:", 5) == 0) {
        r = parse_unix(u, s + 5, err, errlen);
    } else if (strncmp(s, "tcp:", 4) == 0) {
        r = parse_tcp(u, s + 4, err, errlen);
    } else if (strncmp(s, "tty:", 4) == 0) {
        r = parse_tty(u, s + 4, err, errlen);
    } else if (strncmp(s, "ipmi-sol:", 9) == 0) {
        r = parse_ipmi_sol(u, s + 9, err, errlen);
    } else {
        r = bad(err, errlen,
                "unknown console URI scheme in '%s' (want unix:PATH, "
                "tcp:HOST:PORT, tty:DEV[@SPEED] or ipmi-sol:...)",
                s);
    }
    if (r < 0) {
        uri_console_free(u);
        return NULL;
    }
    return u;
}

void
uri_console_free(struct uri_console *u)
{
    if (!u)
        return;
    free(u->path);
    free(u->host);
    free(u->port);
    free(u->user);
    free(u->pass);
    free(u->cipher);
    free(u);
}

/* --- power -------------------------------------------------------------- */

static int
parse_qmp(struct uri_power *u, const char *p, char *err, size_t errlen)
{
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    if (end == p || *p != '/')
        return bad(err, errlen,
                   "qmp: needs an absolute socket path, as "
                   "qmp:/run/srv1.qmp");
    if ((size_t)(end - p) > SUN_PATH_MAX)
        return bad(err, errlen, "qmp: socket path longer than %zu bytes",
                   SUN_PATH_MAX);
    if (q && (strncmp(q, "?nic=", 5) != 0 || !q[5] || strpbrk(q + 5, "&?=")))
        return bad(err, errlen,
                   "qmp: the only option is ?nic=DEVICE_ID, got '%s'", q);
    u->kind = URI_POWER_QMP;
    u->path = dup_range(p, end);
    u->nic = q ? xstrdup(q + 5) : NULL;
    return 0;
}

/* One option of redfish://...?OPT&OPT: ca=FILE, tls=insecure,
 * boot=uefi|legacy. */
static bool
redfish_option(struct uri_power *u, const char *o, const char *end)
{
    size_t n = (size_t)(end - o);
    if (n > 3 && strncmp(o, "ca=", 3) == 0 && !u->ca && !u->insecure) {
        u->ca = dup_range(o + 3, end);
        return true;
    }
    if (n == 12 && strncmp(o, "tls=insecure", 12) == 0 && !u->ca) {
        u->insecure = true;
        return true;
    }
    if (n == 9 && strncmp(o, "boot=uefi", 9) == 0) {
        u->boot_mode = "UEFI";
        return true;
    }
    if (n == 11 && strncmp(o, "boot=legacy", 11) == 0) {
        u->boot_mode = "Legacy";
        return true;
    }
    return false;
}

/* [USER:PASS@]HOST[:PORT][/PATH][?ca=FILE|tls=insecure&boot=uefi|legacy] */
static int
parse_redfish(struct uri_power *u, const char *p, char *err, size_t errlen)
{
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *hend = slash ? slash : end;
    const char *at = memrchr(p, '@', (size_t)(hend - p));
    if (at) {
        if (!split_creds(p, at, &u->user, &u->pass))
            return bad(err, errlen,
                       "redfish:// credentials must be user:pass@");
        p = at + 1;
    }
    if (p == hend || has_blank(p, hend))
        return bad(err, errlen, "redfish:// needs a host");
    const char *why = split_bmc(p, hend, &u->host, &u->port, "443");
    if (why && strcmp(why, "bad port") == 0)
        return bad(err, errlen, "redfish:// port '%s' is not 1-65535", u->port);
    if (why)
        return bad(err, errlen, "redfish:// needs a host (%s)", why);
    for (const char *o = q; o && *o; o = strchr(o, '&')) {
        o++;
        const char *oend = o + strcspn(o, "&");
        if (!redfish_option(u, o, oend))
            return bad(err, errlen,
                       "redfish:// options are ?ca=FILE or tls=insecure, and "
                       "boot=uefi|legacy, got '%s'",
                       q);
    }
    u->kind = URI_POWER_REDFISH;
    u->path = slash ? dup_range(slash, end) : NULL;
    return 0;
}

/* One option of ipmi://...?OPT&OPT: cipher=N, boot=efi|legacy. */
static bool
ipmi_option(struct uri_power *u, const char *o, const char *end)
{
    size_t n = (size_t)(end - o);
    if (n > 7 && strncmp(o, "cipher=", 7) == 0 &&
        strspn(o + 7, "0123456789") == n - 7 && !u->cipher) {
        u->cipher = dup_range(o + 7, end);
        return true;
    }
    if (n == 8 && strncmp(o, "boot=efi", 8) == 0) {
        u->boot_legacy = false;
        return true;
    }
    if (n == 11 && strncmp(o, "boot=legacy", 11) == 0) {
        u->boot_legacy = true;
        return true;
    }
    return false;
}

/* USER:PASS@HOST[:PORT][?cipher=N&boot=efi|legacy] */
static int
parse_ipmi(struct uri_power *u, const char *p, char *err, size_t errlen)
{
    const char *at = strrchr(p, '@');
    if (!at || !split_creds(p, at, &u->user, &u->pass))
        return bad(err, errlen, "ipmi:// must be ipmi://user:pass@host[:port]");
    const char *q = strchr(at, '?');
    const char *end = q ? q : at + strlen(at);
    const char *why = split_bmc(at + 1, end, &u->host, &u->port, "623");
    if (why && strcmp(why, "bad port") == 0)
        return bad(err, errlen, "ipmi:// port '%s' is not 1-65535", u->port);
    if (why)
        return bad(err, errlen,
                   "ipmi:// must be ipmi://user:pass@host[:port] (%s)", why);
    for (const char *o = q; o && *o; o = strchr(o, '&')) {
        o++;
        const char *oend = o + strcspn(o, "&");
        if (!ipmi_option(u, o, oend))
            return bad(err, errlen,
                       "ipmi:// options are ?cipher=N and boot=efi|legacy, "
                       "got '%s'",
                       q);
    }
    u->kind = URI_POWER_IPMI;
    return 0;
}

struct uri_power *
uri_power_parse(const char *s, char *err, size_t errlen)
{
    struct uri_power *u = xcalloc(1, sizeof(*u));
    int r;

    if (!s)
        s = "";
    if (strncmp(s, "qmp:", 4) == 0) {
        r = parse_qmp(u, s + 4, err, errlen);
    } else if (strncmp(s, "redfish://", 10) == 0) {
        r = parse_redfish(u, s + 10, err, errlen);
    } else if (strncmp(s, "ipmi://", 7) == 0) {
        r = parse_ipmi(u, s + 7, err, errlen);
    } else if (strcmp(s, "manual:") == 0) {
        u->kind = URI_POWER_MANUAL;
        r = 0;
    } else if (strncmp(s, "manual:", 7) == 0) {
        r = bad(err, errlen, "manual: takes nothing after the ':'");
    } else {
        r = bad(err, errlen,
                "unknown power URI scheme in '%s' (want qmp:PATH, "
                "redfish://[user:pass@]host[:port]/Systems/ID, "
                "ipmi://user:pass@host[:port] or "
                "manual:)",
                s);
    }
    if (r < 0) {
        uri_power_free(u);
        return NULL;
    }
    return u;
}

void
uri_power_free(struct uri_power *u)
{
    if (!u)
        return;
    free(u->path);
    free(u->nic);
    free(u->host);
    free(u->port);
    free(u->cipher);
    free(u->ca);
    free(u->user);
    free(u->pass);
    free(u);
}

/* --- store -------------------------------------------------------------- */

#define STORE_WANT                                                             \
    "want sqlite:PATH, sqlite: for DATA_DIR/rescued.db, or postgresql://..."

struct uri_store *
uri_store_parse(const char *s, char *err, size_t errlen)
{
    if (!s)
        s = "";
    if (strncmp(s, "sqlite:", 7) == 0) {
        const char *path = s + 7;
        size_t n = strlen(path);
        if (n > 0 && path[n - 1] == '/') {
            bad(err, errlen,
                "sqlite: PATH names the database file, not a directory");
            return NULL;
        }
        struct uri_store *u = xcalloc(1, sizeof(*u));
        u->kind = URI_STORE_SQLITE;
        u->path = n > 0 ? xstrdup(path) : NULL;
        return u;
    }
    /* Only the scheme goes into err: what follows may hold a password. */
    int scheme = (int)strcspn(s, ":");
    if (!s[scheme])
        bad(err, errlen, "'%s' is not a store URL (" STORE_WANT ")", s);
    else if (((scheme == 10 && strncmp(s, "postgresql", 10) == 0) ||
              (scheme == 8 && strncmp(s, "postgres", 8) == 0)) &&
             strncmp(s + scheme, "://", 3) == 0) {
        struct uri_store *u = xcalloc(1, sizeof(*u));
        u->kind = URI_STORE_PG;
        u->url = xstrdup(s);
        return u;
    } else if ((scheme == 10 && strncmp(s, "postgresql", 10) == 0) ||
               (scheme == 8 && strncmp(s, "postgres", 8) == 0))
        bad(err, errlen,
            "the %.*s: store URL must begin %.*s:// (" STORE_WANT ")", scheme,
            s, scheme, s);
    else
        bad(err, errlen, "unknown store URL scheme '%.*s:' (" STORE_WANT ")",
            scheme, s);
    return NULL;
}

void
uri_store_free(struct uri_store *u)
{
    if (!u)
        return;
    free(u->path);
    free(u->url);
    free(u);
}

char *
uri_redact(const char *uri)
{
    const char *auth = uri ? strstr(uri, "://") : NULL;
    if (!auth)
        return xstrdup(uri ? uri : "");
    auth += 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', alen);
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon)
        return xstrdup(uri);
    return xasprintf("%.*s%s", (int)(colon - uri), uri, at);
}
