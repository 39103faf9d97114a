/* config: load the INI file of docs/design.md §8 and check it.
 *
 * iniparser parses the values (quotes, inline comments, continued lines),
 * but it lowercases names, merges duplicate sections, keeps only the last
 * of duplicate keys, cannot list "[server:ID]" sections (a name with ':'
 * looks like a key to it) and forgets line numbers.  So scan() walks the
 * text once more by iniparser's own line rules and lists every section
 * header and key with its line; the checks run over that list, in file
 * order, and take each key's value from iniparser.
 *
 * iniparser 4.1's dictionary is an array that dictionary_set scans whole
 * on every insert, so one iniparser_load of N keys costs O(N^2): 0.6-1 s
 * for 10,000 servers.  So iniparser gets the file in pieces of about
 * INI_CHUNK entries, each cut just before a section header (where it
 * starts afresh anyway), through a memfd. */

#include "config.h"
#include "tls.h"
#include "log.h"
#include "uri.h"
#include "util.h"

#include <errno.h>
#include <iniparser.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define INI_CHUNK 512 /* entries per iniparser_load */

/* One section header or key line of the file. */
struct entry {
    char *name;        /* "section" or "section:key", as written */
    const char *value; /* keys: iniparser's value */
    int line;
    size_t off; /* sections: offset of their line in the text */
    size_t sec; /* keys: index of their section's entry */
    bool is_section;
};

struct loader {
    const char *path;
    char *err;
    size_t errlen;
    struct entry *ents; /* in file order */
    size_t nents, cap;
    struct entry **byname; /* sorted by name, case-insensitively */
    const char *text;      /* the file as read, for iniparser */
    size_t len;
    dictionary **dicts; /* iniparser's, one per piece; hold the values */
    size_t ndicts;
    struct config *c;
};

enum kind {
    K_STR,    /* non-empty string */
    K_TEXT,   /* any string, even "" */
    K_OPTSTR, /* string, "" means unset (NULL) */
    K_LISTEN, /* host:port */
    K_URL,    /* http(s)://..., stored without trailing '/' */
    K_LOGLEVEL,
    K_SIZE,    /* long long bytes > 0 */
    K_SECONDS, /* int seconds >= 0 */
    K_TIMEOUT, /* int seconds > 0 */
    K_COUNT,   /* int >= 0 */
    K_PXEMODE,
    K_FIRMWARE,
    K_BOOT,
    K_ARCH,
    K_MAC,
    K_POWER,
    K_CONSOLE, /* "" means none */
    K_STORE,   /* a store URL (uri.h) */
    K_ONOFF,   /* "on" or "off", into a bool */
    K_NAME,    /* a node or facility name: [A-Za-z0-9._-]{1,63} */
};

struct key_spec {
    const char *key;
    enum kind kind;
    size_t off; /* into struct config, config_project or config_server */
    const char *def;
    bool required;
};

#define CFG(f) offsetof(struct config, f)
#define PRJ(f) offsetof(struct config_project, f)
#define SRV(f) offsetof(struct config_server, f)

static const struct key_spec rescued_keys[] = {
    {"listen", K_LISTEN, CFG(listen), NULL, true},
    {"boot_url", K_URL, CFG(boot_url), NULL, true},
    {"data_dir", K_STR, CFG(data_dir), NULL, true},
    {"admin_token", K_STR, CFG(admin_token), NULL, false},
    {"admin_token_file", K_OPTSTR, CFG(admin_token_file), NULL, false},
    {"log_level", K_LOGLEVEL, CFG(log_level), "info", false},
    {"max_body", K_SIZE, CFG(max_body), "64K", false},
    {"admin_keys_file", K_OPTSTR, CFG(admin_keys_file), NULL, false},
    {"store", K_STORE, CFG(store), "sqlite:", false},
    {"store_file", K_OPTSTR, CFG(store_file), NULL, false},
    {"max_connections", K_COUNT, CFG(max_connections), "1024", false},
    {"max_connections_per_ip", K_COUNT, CFG(max_connections_per_ip), "32",
     false},
    {"request_timeout", K_TIMEOUT, CFG(request_timeout), "30", false},
    {"max_event_streams", K_COUNT, CFG(max_event_streams), "256", false},
    {"max_event_streams_per_token", K_COUNT, CFG(max_event_streams_per_token),
     "8", false},
    {"retention_days", K_COUNT, CFG(retention_days), "90", false},
    {"retention_events", K_COUNT, CFG(retention_events), "100000", false},
    {"metrics_token", K_OPTSTR, CFG(metrics_token), NULL, false},
    {"tls_cert", K_OPTSTR, CFG(tls_cert), NULL, false},
    {"tls_key", K_OPTSTR, CFG(tls_key), NULL, false},
    {"boot_listen", K_LISTEN, CFG(boot_listen), NULL, false},
    {"node", K_NAME, CFG(node), NULL, false}, /* default: the host name */
    {"facility", K_NAME, CFG(facility), "default", false},
    {"lease", K_TIMEOUT, CFG(lease), "10", false},
    {NULL, 0, 0, NULL, false},
};

static const struct key_spec pxe_keys[] = {
    {"mode", K_PXEMODE, CFG(pxe_mode), "off", false},
    {"interface", K_OPTSTR, CFG(pxe_interface), NULL, false},
    {"dhcp_range", K_OPTSTR, CFG(dhcp_range), NULL, false},
    {"tftp_root", K_STR, CFG(tftp_root), "/usr/lib/ipxe", false},
    {NULL, 0, 0, NULL, false},
};

static const struct key_spec console_keys[] = {
    {"listen", K_LISTEN, CFG(console_listen), "127.0.0.1:2222", false},
    {"readonly_grace", K_SECONDS, CFG(readonly_grace), "30", false},
    {"scrollback", K_SIZE, CFG(scrollback), "1M", false},
    {"writer_idle", K_SECONDS, CFG(writer_idle), "0", false},
    {"max_startups", K_COUNT, CFG(max_startups), "10", false},
    {"max_startups_per_source", K_COUNT, CFG(max_startups_per_source), "3",
     false},
    {"login_grace", K_TIMEOUT, CFG(login_grace), "60", false},
    {"max_auth_tries", K_COUNT, CFG(max_auth_tries), "6", false},
    {"record", K_ONOFF, CFG(console_record), "on", false},
    {"record_days", K_COUNT, CFG(record_days), "30", false},
    {NULL, 0, 0, NULL, false},
};

/* [ui]: the portal's files and sign-ins; origin is the browser console's
 * Origin check: the page's origin when it is not the Host the browser
 * connected to (a proxy in front). */
static const struct key_spec ui_keys[] = {
    {"origin", K_OPTSTR, CFG(ui_origin), NULL, false},
    {"dir", K_OPTSTR, CFG(ui_dir), NULL, false},
    {"session_ttl", K_TIMEOUT, CFG(session_ttl), "8h", false},
    {NULL, 0, 0, NULL, false},
};

/* kernel and initrd default to DATA_DIR/images/..., set after loading;
 * tools has no default (none offered). */
static const struct key_spec image_keys[] = {
    {"kernel", K_OPTSTR, CFG(kernel), NULL, false},
    {"initrd", K_OPTSTR, CFG(initrd), NULL, false},
    {"tools", K_OPTSTR, CFG(tools), NULL, false},
    {"iso", K_OPTSTR, CFG(iso), NULL, false},
    {"cmdline", K_TEXT, CFG(cmdline), "", false},
    {"kernel_aarch64", K_OPTSTR, CFG(kernel_aarch64), NULL, false},
    {"initrd_aarch64", K_OPTSTR, CFG(initrd_aarch64), NULL, false},
    {"tools_aarch64", K_OPTSTR, CFG(tools_aarch64), NULL, false},
    {"grub_aarch64", K_OPTSTR, CFG(grub_aarch64), NULL, false},
    {"overlay", K_STR, CFG(overlay_dir), "alpine-overlay", false},
    {NULL, 0, 0, NULL, false},
};

static const struct key_spec timeout_keys[] = {
    {"rebooting", K_TIMEOUT, CFG(timeout_rebooting), "180", false},
    {"pxe_booting", K_TIMEOUT, CFG(timeout_pxe_booting), "120", false},
    {"rescue_booting", K_TIMEOUT, CFG(timeout_rescue_booting), "300", false},
    {"exiting", K_TIMEOUT, CFG(timeout_exiting), "180", false},
    {"booting_local", K_TIMEOUT, CFG(timeout_booting_local), "300", false},
    {"retries", K_COUNT, CFG(max_retries), "2", false},
    {"local_boot_pattern", K_STR, CFG(local_boot_pattern), "login:", false},
    {"local_settle", K_SECONDS, CFG(local_settle), "60", false},
    {NULL, 0, 0, NULL, false},
};

static const struct key_spec project_keys[] = {
    {"token", K_OPTSTR, PRJ(token), NULL, false},
    {"keys_file", K_OPTSTR, PRJ(keys_file), NULL, false},
    {NULL, 0, 0, NULL, false},
};

/* name defaults to the id, set after loading. */
static const struct key_spec server_keys[] = {
    {"mac", K_MAC, SRV(mac), NULL, true},
    {"project", K_STR, SRV(project), NULL, true},
    {"power", K_POWER, SRV(power), NULL, true},
    {"name", K_STR, SRV(name), NULL, false},
    {"arch", K_ARCH, SRV(arch), "x86_64", false},
    {"firmware", K_FIRMWARE, SRV(firmware), "bios", false},
    {"console", K_CONSOLE, SRV(console), NULL, false},
    {"console_tty", K_STR, SRV(console_tty), "ttyS0,115200n8", false},
    {"power_credentials", K_OPTSTR, SRV(power_credentials), NULL, false},
    {"boot", K_BOOT, SRV(boot), "pxe", false},
    {"facility", K_NAME, SRV(facility), NULL, false}, /* default: node's */
    {NULL, 0, 0, NULL, false},
};

#define FAC(f) offsetof(struct config_facility, f)
static const struct key_spec facility_keys[] = {
    {"console_host", K_OPTSTR, FAC(console_host), NULL, false},
    {NULL, 0, 0, NULL, false},
};

enum section_type { SEC_SINGLE, SEC_PROJECT, SEC_SERVER, SEC_FACILITY };

struct section_spec {
    const char *name; /* "rescued"; "project" stands for "[project:NAME]" */
    enum section_type type;
    const struct key_spec *keys;
};

static const struct section_spec sections[] = {
    {"rescued", SEC_SINGLE, rescued_keys},
    {"pxe", SEC_SINGLE, pxe_keys},
    {"console", SEC_SINGLE, console_keys},
    {"image", SEC_SINGLE, image_keys},
    {"timeouts", SEC_SINGLE, timeout_keys},
    {"ui", SEC_SINGLE, ui_keys}, /* the portal */
    {"project", SEC_PROJECT, project_keys},
    {"server", SEC_SERVER, server_keys},
    {"facility", SEC_FACILITY, facility_keys},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

static const char *const pxe_modes[] = {"dhcp", "proxy", "off", NULL};
static const char *const firmwares[] = {"bios", "uefi", NULL};
static const char *const boots[] = {"pxe", "virtualmedia", NULL};
static const char *const arches[] = {"x86_64", "aarch64", NULL};
static const char *const onoff[] = {"off", "on", NULL};

/* Write "FILE[:LINE]: [[sec] [key]: ]reason" into the caller's err. */
static int __attribute__((format(printf, 5, 6)))
fail(struct loader *ld, int line, const char *sec, const char *key,
     const char *fmt, ...)
{
    char where[24] = "", reason[512];
    va_list ap;

    if (line > 0)
        snprintf(where, sizeof(where), ":%d", line);
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (sec && key)
        snprintf(ld->err, ld->errlen, "%s%s: [%s] %s: %s", ld->path, where, sec,
                 key, reason);
    else if (sec)
        snprintf(ld->err, ld->errlen, "%s%s: [%s]: %s", ld->path, where, sec,
                 reason);
    else
        snprintf(ld->err, ld->errlen, "%s%s: %s", ld->path, where, reason);
    return -EINVAL;
}

/* For the value checks: the reason alone, completed by fail(). */
static int __attribute__((format(printf, 3, 4)))
why(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static char *
strip(char *s)
{
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
        *--e = '\0';
    return s;
}

static void
add_entry(struct loader *ld, char *name, int line, size_t off, bool is_section,
          size_t sec)
{
    if (ld->nents == ld->cap) {
        ld->cap = ld->cap ? 2 * ld->cap : 64;
        ld->ents = xrealloc(ld->ents, ld->cap * sizeof(*ld->ents));
    }
    ld->ents[ld->nents++] = (struct entry){.name = name,
                                           .line = line,
                                           .off = off,
                                           .is_section = is_section,
                                           .sec = sec};
}

/* List section headers and keys of text (modified in place), classifying
 * lines as iniparser_load does: a line ending in '\' continues on the
 * next; blank and ';'/'#' lines are skipped; "[...]" is a section;
 * anything else needs "key =". */
static int
scan(struct loader *ld, char *text)
{
    size_t cur = SIZE_MAX;
    bool cont = false;
    int lineno = 0;

    for (char *p = text, *nl; p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *s = strip(p);
        size_t n = strlen(s);
        bool continued = cont;
        cont = n > 0 && s[n - 1] == '\\';
        if (continued || n == 0 || s[0] == ';' || s[0] == '#')
            continue;
        char *eq = strchr(s, '=');
        if (s[0] == '[' && s[n - 1] == ']') {
            s[strcspn(s, "]")] = '\0';
            char *name = strip(s + 1);
            if (*name) {
                cur = ld->nents;
                add_entry(ld, xstrdup(name), lineno, (size_t)(p - text), true,
                          cur);
                continue;
            }
        } else if (eq) {
            *eq = '\0';
            char *key = strip(s);
            if (*key && cur == SIZE_MAX)
                return fail(ld, lineno, NULL, NULL,
                            "%s: key outside any section", key);
            if (*key) {
                add_entry(ld, xasprintf("%s:%s", ld->ents[cur].name, key),
                          lineno, 0, false, cur);
                continue;
            }
        }
        return fail(ld, lineno, NULL, NULL, "syntax error: %s", s);
    }
    return 0;
}

static int
cmp_entry(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a;
    const struct entry *y = *(struct entry *const *)b;
    int r = strcasecmp(x->name, y->name);
    return r ? r : (x->line > y->line) - (x->line < y->line);
}

static int
cmp_entry_name(const void *key, const void *elem)
{
    return strcasecmp(key, (*(struct entry *const *)elem)->name);
}

/* The entry of "section" or "section:key" (any case), or NULL. */
static struct entry *
find_entry(const struct loader *ld, const char *name)
{
    struct entry **e = bsearch(name, ld->byname, ld->nents, sizeof(*ld->byname),
                               cmp_entry_name);
    return e ? *e : NULL;
}

/* The line of key in section sec, or 0. */
static int
key_line(const struct loader *ld, const char *sec, const char *key)
{
    char *name = xasprintf("%s:%s", sec, key);
    struct entry *e = find_entry(ld, name);
    free(name);
    return e ? e->line : 0;
}

/* Sort the entries by name and refuse names that appear twice, which
 * iniparser would merge silently.  Reports the earliest repeat. */
static int
index_entries(struct loader *ld)
{
    struct entry *dup = NULL, *first = NULL;

    ld->byname = xcalloc(ld->nents ? ld->nents : 1, sizeof(*ld->byname));
    for (size_t i = 0; i < ld->nents; i++)
        ld->byname[i] = &ld->ents[i];
    qsort(ld->byname, ld->nents, sizeof(*ld->byname), cmp_entry);
    for (size_t i = 1; i < ld->nents; i++) {
        struct entry *a = ld->byname[i - 1], *b = ld->byname[i];
        if (strcasecmp(a->name, b->name) == 0 && (!dup || b->line < dup->line))
            dup = b, first = a;
    }
    if (!dup)
        return 0;
    if (dup->is_section) {
        const char *what =
            strncasecmp(dup->name, "server:", 7) == 0    ? "duplicate server id"
            : strncasecmp(dup->name, "project:", 8) == 0 ? "duplicate project"
                                                         : "duplicate section";
        return fail(ld, dup->line, dup->name, NULL, "%s (first at line %d)",
                    what, first->line);
    }
    const char *sec = ld->ents[dup->sec].name;
    return fail(ld, dup->line, sec, dup->name + strlen(sec) + 1,
                "duplicate key (first at line %d)", first->line);
}

/* Capture iniparser's complaint instead of letting it print. */
static char ini_error[512];

static int
ini_errback(const char *fmt, ...)
{
    va_list ap;
    if (ini_error[0])
        return 0;
    va_start(ap, fmt);
    vsnprintf(ini_error, sizeof(ini_error), fmt, ap);
    va_end(ap);
    return 0;
}

/* Parse one piece, path, whose first line is line first of the file, and
 * hand its values to their entries. */
static int
load_piece(struct loader *ld, const char *path, int first)
{
    ini_error[0] = '\0';
    iniparser_set_error_callback(ini_errback);
    dictionary *d = iniparser_load(path);
    iniparser_set_error_callback(NULL);
    if (!d) {
        /* scan() refuses every line iniparser calls a syntax error; what
         * is left is a line over its 1024 bytes, or no memory.  Its
         * message reads "iniparser: WHAT in FILE (LINE)\n...", FILE being
         * the piece. */
        char *msg = ini_error, *paren, *in;
        int line = 0;
        msg[strcspn(msg, "\n")] = '\0';
        if ((paren = strrchr(msg, '(')) && sscanf(paren, "(%d)", &line) == 1)
            line += first - 1;
        if ((in = strstr(msg, " in ")))
            *in = '\0';
        if (strstr(msg, "too long"))
            return fail(ld, line, NULL, NULL,
                        "line too long (iniparser reads at most 1023 bytes)");
        return fail(ld, line, NULL, NULL, "cannot parse: %s",
                    *msg ? msg : "iniparser failed");
    }
    ld->dicts = xrealloc(ld->dicts, (ld->ndicts + 1) * sizeof(*ld->dicts));
    ld->dicts[ld->ndicts++] = d;
    for (ssize_t i = 0; i < d->size; i++) {
        struct entry *e;
        if (d->key[i] && d->val[i] && (e = find_entry(ld, d->key[i])))
            e->value = d->val[i];
    }
    return 0;
}

static int
write_piece(int fd, const char *p, size_t n)
{
    if (ftruncate(fd, 0) < 0)
        return -errno;
    for (off_t at = 0; n > 0;) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w, n -= (size_t)w, at += w;
    }
    return 0;
}

/* Without memfd or /proc, iniparser reads the whole file at once. */
static int
load_ini(struct loader *ld)
{
    char path[40];
    size_t from = 0, first_ent = 0;
    int first = 1, ret = 0;

    int fd = memfd_create("rescued.ini", MFD_CLOEXEC);
    if (fd < 0)
        return load_piece(ld, ld->path, 1);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (access(path, R_OK) < 0) {
        close(fd);
        return load_piece(ld, ld->path, 1);
    }
    for (size_t i = 0; i <= ld->nents; i++) {
        const struct entry *e = i < ld->nents ? &ld->ents[i] : NULL;
        if (e && !(e->is_section && i - first_ent >= INI_CHUNK))
            continue;
        size_t to = e ? e->off : ld->len;
        if ((ret = write_piece(fd, ld->text + from, to - from)) < 0) {
            fail(ld, 0, NULL, NULL, "cannot parse: %s", strerror(-ret));
            break;
        }
        if ((ret = load_piece(ld, path, first)) < 0 || !e)
            break;
        from = to, first = e->line, first_ent = i;
    }
    close(fd);
    return ret;
}

static int
lookup(const char *v, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* "host:port": a non-empty host without blanks, a port 1-65535. */
static bool
valid_hostport(const char *s)
{
    const char *colon = strrchr(s, ':');
    return colon && colon > s && strcspn(s, " \t") == strlen(s) &&
           uri_parse_port(colon + 1) > 0;
}

/* The one parser of console and power decides (uri.h): config refuses
 * what console and power would refuse when they attach. */
static int
check_power(const char *v, char *buf, size_t len)
{
    struct uri_power *u = uri_power_parse(v, buf, len);
    int r = u ? 0 : -EINVAL;
    uri_power_free(u);
    return r;
}

static int
check_console(const char *v, char *buf, size_t len)
{
    struct uri_console *u = uri_console_parse(v, buf, len);
    int r = u ? 0 : -EINVAL;
    uri_console_free(u);
    return r;
}

/* A node's or a facility's name (a host name's characters). */
static int
check_name(const char *v, char *buf, size_t len)
{
    size_t n = strlen(v);
    if (n == 0 || n > 63 ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789._-") != n ||
        v[0] == '-' || v[0] == '.')
        return why(buf, len,
                   "'%s' is not a name: 1 to 63 letters, digits, '.', '_' "
                   "or '-', not beginning with '-' or '.'",
                   v);
    return 0;
}

static void
set_str(char **p, const char *v)
{
    free(*p);
    *p = v ? xstrdup(v) : NULL;
}

/* Check v for key k and store it into base; on error a reason in buf. */
static int
set_value(const struct key_spec *k, void *base, const char *v, char *buf,
          size_t len)
{
    void *p = (char *)base + k->off;
    long long n;
    int i;

    switch (k->kind) {
    case K_STR:
        if (!*v)
            return why(buf, len, "must not be empty");
        break;
    case K_TEXT:
        break;
    case K_OPTSTR:
        if (!*v)
            v = NULL;
        break;
    case K_NAME:
        if (check_name(v, buf, len) < 0)
            return -EINVAL;
        break;
    case K_LISTEN:
        if (!valid_hostport(v))
            return why(buf, len, "'%s' is not host:port", v);
        break;
    case K_URL: {
        size_t skip = strncmp(v, "http://", 7) == 0    ? 7
                      : strncmp(v, "https://", 8) == 0 ? 8
                                                       : 0;
        if (!skip || !v[skip] || v[skip] == '/')
            return why(buf, len, "'%s' is not an http:// or https:// URL", v);
        size_t end = strlen(v);
        while (v[end - 1] == '/')
            end--;
        free(*(char **)p);
        *(char **)p = xasprintf("%.*s", (int)end, v);
        return 0;
    }
    case K_LOGLEVEL:
        if ((i = log_level_parse(v)) < 0) {
            char words[128];
            log_level_words(words, sizeof(words));
            return why(buf, len, "'%s' is not %s", v, words);
        }
        *(int *)p = i;
        return 0;
    case K_SIZE:
        if (parse_size(v, &n) < 0 || n <= 0)
            return why(buf, len, "'%s' is not a size, as 65536, 64K or 1M", v);
        *(long long *)p = n;
        return 0;
    case K_SECONDS:
    case K_TIMEOUT:
        if (parse_duration(v, &n) < 0 || n > INT_MAX ||
            (k->kind == K_TIMEOUT && n == 0))
            return why(buf, len, "'%s' is not a %sduration, as 90, 90s or 5m",
                       v, k->kind == K_TIMEOUT ? "positive " : "");
        *(int *)p = (int)n;
        return 0;
    case K_COUNT:
        if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 6)
            return why(buf, len, "'%s' is not a number", v);
        *(int *)p = atoi(v);
        return 0;
    case K_PXEMODE:
        if ((i = lookup(v, pxe_modes)) < 0)
            return why(buf, len, "'%s' is not dhcp, proxy or off", v);
        *(enum pxe_mode *)p = (enum pxe_mode)i;
        return 0;
    case K_FIRMWARE:
        if ((i = lookup(v, firmwares)) < 0)
            return why(buf, len, "'%s' is not bios or uefi", v);
        *(enum firmware *)p = (enum firmware)i;
        return 0;
    case K_BOOT:
        if ((i = lookup(v, boots)) < 0)
            return why(buf, len, "'%s' is not pxe or virtualmedia", v);
        *(enum boot_mode *)p = (enum boot_mode)i;
        return 0;
    case K_ARCH:
        if (lookup(v, arches) < 0)
            return why(buf, len, "'%s' is not x86_64 or aarch64", v);
        break;
    case K_ONOFF:
        if ((i = lookup(v, onoff)) < 0)
            return why(buf, len, "'%s' is not on or off", v);
        *(bool *)p = i == 1;
        return 0;
    case K_MAC:
        if (!config_parse_mac(v, p))
            return why(buf, len, "'%s' is not a MAC address", v);
        return 0;
    case K_POWER:
        if (check_power(v, buf, len) < 0)
            return -EINVAL;
        break;
    case K_CONSOLE:
        if (!*v)
            v = NULL;
        else if (check_console(v, buf, len) < 0)
            return -EINVAL;
        break;
    case K_STORE: {
        /* A scheme without a backend is refused here, with FILE:LINE. */
        struct uri_store *u = uri_store_parse(v, buf, len);
        if (!u)
            return -EINVAL;
        uri_store_free(u);
        break;
    }
    }
    set_str(p, v);
    return 0;
}

static void
set_defaults(const struct key_spec *keys, void *base)
{
    char buf[8];
    for (const struct key_spec *k = keys; k->key; k++)
        if (k->def)
            set_value(k, base, k->def, buf, sizeof(buf));
}

/* Apply the keys that follow section entry si, then check that the
 * required ones were there. */
static int
apply_keys(struct loader *ld, size_t si, const struct key_spec *keys,
           void *base)
{
    const char *sec = ld->ents[si].name;
    uint32_t seen = 0;
    char buf[256];

    for (size_t j = si + 1; j < ld->nents && !ld->ents[j].is_section; j++) {
        const struct entry *e = &ld->ents[j];
        const char *key = e->name + strlen(sec) + 1;
        const struct key_spec *k = keys;
        while (k->key && strcasecmp(k->key, key) != 0)
            k++;
        if (!k->key)
            return fail(ld, e->line, sec, key, "unknown key");
        if (!e->value)
            return fail(ld, e->line, sec, key, "iniparser lost this value");
        if (set_value(k, base, e->value, buf, sizeof(buf)) < 0)
            return fail(ld, e->line, sec, key, "%s", buf);
        seen |= 1u << (k - keys);
    }
    for (const struct key_spec *k = keys; k->key; k++)
        if (k->required && !(seen & (1u << (k - keys))))
            return fail(ld, ld->ents[si].line, sec, k->key,
                        "missing required key");
    return 0;
}

/* "[kind:ARG]" -> ARG, or NULL when name is not of that kind. */
static const char *
section_arg(const char *name, const char *kind)
{
    size_t n = strlen(kind);
    return strncasecmp(name, kind, n) == 0 && name[n] == ':' ? name + n + 1
                                                             : NULL;
}

static size_t
count_sections(const struct loader *ld, const char *kind)
{
    size_t n = 0;
    for (size_t i = 0; i < ld->nents; i++)
        if (ld->ents[i].is_section && section_arg(ld->ents[i].name, kind))
            n++;
    return n;
}

static int
load_sections(struct loader *ld)
{
    struct config *c = ld->c;
    bool present[NSECTIONS] = {false};

    c->projects =
        xcalloc(count_sections(ld, "project") + 1, sizeof(*c->projects));
    c->servers = xcalloc(count_sections(ld, "server") + 1, sizeof(*c->servers));
    c->facilities =
        xcalloc(count_sections(ld, "facility") + 1, sizeof(*c->facilities));
    for (size_t s = 0; s < NSECTIONS; s++)
        if (sections[s].type == SEC_SINGLE)
            set_defaults(sections[s].keys, c);

    for (size_t i = 0; i < ld->nents; i++) {
        const struct entry *e = &ld->ents[i];
        const struct section_spec *spec = NULL;
        const char *arg = NULL;
        void *base = c;

        if (!e->is_section)
            continue;
        for (size_t s = 0; s < NSECTIONS && !spec; s++) {
            if (sections[s].type == SEC_SINGLE
                    ? strcasecmp(e->name, sections[s].name) == 0
                    : (arg = section_arg(e->name, sections[s].name)) != NULL) {
                spec = &sections[s];
                present[s] = true;
            }
        }
        if (!spec)
            return fail(ld, e->line, e->name, NULL, "unknown section");
        if (spec->type == SEC_PROJECT) {
            struct config_project *p = &c->projects[c->nprojects++];
            if (!*arg)
                return fail(ld, e->line, e->name, NULL,
                            "project name "
                            "missing");
            p->name = xstrdup(arg);
            base = p;
        } else if (spec->type == SEC_SERVER) {
            struct config_server *srv = &c->servers[c->nservers++];
            char bad[160];
            if (!id_valid_why(arg, bad, sizeof(bad)))
                return fail(ld, e->line, e->name, NULL, "%s", bad);
            srv->id = xstrdup(arg);
            base = srv;
        } else if (spec->type == SEC_FACILITY) {
            char bad[160];
            if (check_name(arg, bad, sizeof(bad)) < 0)
                return fail(ld, e->line, e->name, NULL, "%s", bad);
            struct config_facility *fa = &c->facilities[c->nfacilities++];
            fa->name = xstrdup(arg);
            base = fa;
        }
        if (spec->type != SEC_SINGLE)
            set_defaults(spec->keys, base);
        if (apply_keys(ld, i, spec->keys, base) < 0)
            return -EINVAL;
    }

    for (size_t s = 0; s < NSECTIONS; s++)
        for (const struct key_spec *k = sections[s].keys; k->key; k++)
            if (k->required && sections[s].type == SEC_SINGLE && !present[s])
                return fail(ld, 0, sections[s].name, k->key,
                            "missing required key");
    return 0;
}

static int
cmp_server_id(const void *a, const void *b)
{
    return strcmp(((const struct config_server *)a)->id,
                  ((const struct config_server *)b)->id);
}

static int
cmp_server_mac(const void *a, const void *b)
{
    return strcmp((*(const struct config_server *const *)a)->mac,
                  (*(const struct config_server *const *)b)->mac);
}

/* The first line of a file that holds a secret (a token, a store URL with
 * its password), into *out: it must exist, be the owner's only and have
 * something on its first line; else the refusal, naming key. */
static int
read_secret_file(struct loader *ld, int line, const char *key, const char *file,
                 const char *what, char **out)
{
    struct stat st;
    char *text;
    size_t len;
    int rc = read_file(file, &text, &len);
    if (rc < 0)
        return fail(ld, line, "rescued", key, "%s: cannot read: %s", file,
                    strerror(-rc));
    if (stat(file, &st) == 0 && (st.st_mode & 077)) {
        explicit_bzero(text, len);
        free(text);
        return fail(ld, line, "rescued", key,
                    "%s: readable by others (mode %03o): chmod 600", file,
                    (unsigned)(st.st_mode & 0777));
    }
    text[strcspn(text, "\r\n")] = '\0';
    if (!*text) {
        free(text);
        return fail(ld, line, "rescued", key, "%s: no %s on its first line",
                    file, what);
    }
    *out = text;
    return 0;
}

/* admin_token, or admin_token_file naming a file that holds it (what a
 * package writes at install, so that the config holds no secret): one of
 * them.  The file must not be readable by group or others. */
static int
load_admin_token(struct loader *ld)
{
    struct config *c = ld->c;
    const char *file = c->admin_token_file;
    int line = key_line(ld, "rescued", "admin_token_file");
    if (!file && !c->admin_token)
        return fail(
            ld, find_entry(ld, "rescued") ? find_entry(ld, "rescued")->line : 0,
            "rescued", "admin_token",
            "missing required key (or admin_token_file)");
    if (!file)
        return 0;
    if (c->admin_token)
        return fail(ld, line, "rescued", "admin_token_file",
                    "admin_token is set too: one of them");
    return read_secret_file(ld, line, "admin_token_file", file, "token",
                            &c->admin_token);
}

/* store_file: a file holding the store URL, so that a PostgreSQL password
 * stays out of the main config (and out of messages: uri_store_parse names
 * only the scheme).  Private like admin_token_file; store or store_file. */
static int
load_store_file(struct loader *ld)
{
    struct config *c = ld->c;
    int line = key_line(ld, "rescued", "store_file");
    char *url, why[256];
    if (!c->store_file)
        return 0;
    if (key_line(ld, "rescued", "store"))
        return fail(ld, line, "rescued", "store_file",
                    "store is set too: one of them");
    if (read_secret_file(ld, line, "store_file", c->store_file, "store URL",
                         &url) < 0)
        return -EINVAL;
    struct uri_store *u = uri_store_parse(url, why, sizeof(why));
    if (!u) {
        explicit_bzero(url, strlen(url));
        free(url);
        return fail(ld, line, "rescued", "store_file", "%s: %s", c->store_file,
                    why);
    }
    uri_store_free(u);
    free(c->store);
    c->store = url;
    return 0;
}

/* tls_cert and tls_key come together and are a pair; with TLS on, a boot
 * path over plain HTTP needs its own listener (iPXE and the rescue OS cannot
 * check our certificate). */
static int
check_tls(struct loader *ld)
{
    struct config *c = ld->c;
    char err[512];
    if (!c->tls_cert != !c->tls_key) {
        const char *has = c->tls_cert ? "tls_cert" : "tls_key";
        return fail(ld, key_line(ld, "rescued", has), "rescued",
                    c->tls_cert ? "tls_key" : "tls_cert", "required with %s",
                    has);
    }
    if (!c->tls_cert) {
        if (c->boot_listen)
            return fail(ld, key_line(ld, "rescued", "boot_listen"), "rescued",
                        "boot_listen", "only with tls_cert and tls_key");
        return 0;
    }
    struct tls_pair *p =
        tls_pair_load(c->tls_cert, c->tls_key, err, sizeof(err));
    if (!p) {
        /* Blame the key line unless the certificate is what failed. */
        bool cert = strncmp(err, c->tls_cert, strlen(c->tls_cert)) == 0 &&
                    err[strlen(c->tls_cert)] == ':';
        const char *k = cert ? "tls_cert" : "tls_key";
        return fail(ld, key_line(ld, "rescued", k), "rescued", k, "%s", err);
    }
    tls_pair_free(p);
    if (strncmp(c->boot_url, "http://", 7) == 0 && !c->boot_listen)
        return fail(ld, key_line(ld, "rescued", "boot_url"), "rescued",
                    "boot_url",
                    "plain HTTP while listen is TLS: set boot_listen to "
                    "serve the boot path there");
    return 0;
}

/* Defaults that depend on other keys, and checks across sections. */
static int
finish(struct loader *ld)
{
    struct config *c = ld->c;
    char sec[96], other[96];

    const char *sep = c->data_dir[strlen(c->data_dir) - 1] == '/' ? "" : "/";
    if (!c->kernel)
        c->kernel = xasprintf("%s%simages/vmlinuz", c->data_dir, sep);
    if (!c->initrd)
        c->initrd = xasprintf("%s%simages/initramfs", c->data_dir, sep);
    if (check_tls(ld) < 0 || load_admin_token(ld) < 0 ||
        load_store_file(ld) < 0)
        return -EINVAL;
    if (c->pxe_mode != PXE_OFF && !c->pxe_interface)
        return fail(ld, key_line(ld, "pxe", "mode"), "pxe", "interface",
                    "required when mode is dhcp or proxy");

    /* /metrics shows the fleet's states to whoever holds it. */
    if (c->metrics_token && strlen(c->metrics_token) < CONFIG_TOKEN_MIN)
        return fail(ld, key_line(ld, "rescued", "metrics_token"), "rescued",
                    "metrics_token", "at least %d characters",
                    CONFIG_TOKEN_MIN);
    if (strlen(c->admin_token) < CONFIG_TOKEN_MIN) {
        /* the key that gave it: the token itself or the file holding it */
        const char *key =
            c->admin_token_file ? "admin_token_file" : "admin_token";
        return fail(ld, key_line(ld, "rescued", key), "rescued", key,
                    "shorter than %d characters, too easy to guess (make "
                    "one with: openssl rand -hex 16)",
                    CONFIG_TOKEN_MIN);
    }
    if (c->local_boot_pattern &&
        strlen(c->local_boot_pattern) > CONFIG_PATTERN_MAX)
        return fail(ld, key_line(ld, "timeouts", "local_boot_pattern"),
                    "timeouts", "local_boot_pattern",
                    "longer than %d bytes, more than the console matcher "
                    "holds",
                    CONFIG_PATTERN_MAX);

    for (size_t i = 0; i < c->nprojects; i++) {
        const struct config_project *p = &c->projects[i];
        if (!p->token)
            continue;
        snprintf(sec, sizeof(sec), "project:%s", p->name);
        int line = key_line(ld, sec, "token");
        if (strlen(p->token) < CONFIG_TOKEN_MIN)
            return fail(ld, line, sec, "token",
                        "shorter than %d characters, too easy to guess (make "
                        "one with: openssl rand -hex 16)",
                        CONFIG_TOKEN_MIN);
        if (strcmp(p->token, c->admin_token) == 0)
            return fail(ld, line, sec, "token",
                        "same as [rescued] admin_token");
        for (size_t j = 0; j < i; j++)
            if (c->projects[j].token &&
                strcmp(p->token, c->projects[j].token) == 0)
                return fail(ld, line, sec, "token",
                            "same as the token of [project:%s]",
                            c->projects[j].name);
    }

    if (!c->node) {
        char host[256] = "", bad[160];
        if (gethostname(host, sizeof(host) - 1) < 0 ||
            check_name(host, bad, sizeof(bad)) < 0)
            return fail(ld, 0, "rescued", "node",
                        "the host name '%s' is no node name: set node", host);
        c->node = xstrdup(host);
    }
    for (size_t i = 0; i < c->nservers; i++) {
        struct config_server *s = &c->servers[i];
        if (!s->name)
            s->name = xstrdup(s->id);
        if (!s->facility)
            s->facility = xstrdup(c->facility);
        if (!config_find_project(c, s->project)) {
            snprintf(sec, sizeof(sec), "server:%s", s->id);
            return fail(ld, key_line(ld, sec, "project"), sec, "project",
                        "no [project:%s] section", s->project);
        }
        /* Virtual media: a BMC that has it, and a CD to put in. */
        if (s->boot == BOOT_VIRTUALMEDIA &&
            (strncmp(s->power, "redfish://", 10) != 0 || !c->iso)) {
            snprintf(sec, sizeof(sec), "server:%s", s->id);
            return fail(ld, key_line(ld, sec, "boot"), sec, "boot",
                        "virtualmedia needs power = redfish://... and "
                        "[image] iso (make image: build/image/rescue.iso)");
        }
    }

    qsort(c->servers, c->nservers, sizeof(*c->servers), cmp_server_id);
    c->by_mac = xcalloc(c->nservers + 1, sizeof(*c->by_mac));
    for (size_t i = 0; i < c->nservers; i++)
        c->by_mac[i] = &c->servers[i];
    qsort(c->by_mac, c->nservers, sizeof(*c->by_mac), cmp_server_mac);
    for (size_t i = 1; i < c->nservers; i++) {
        const struct config_server *a = c->by_mac[i - 1], *b = c->by_mac[i];
        if (strcmp(a->mac, b->mac) != 0)
            continue;
        snprintf(sec, sizeof(sec), "server:%s", a->id);
        snprintf(other, sizeof(other), "server:%s", b->id);
        int la = key_line(ld, sec, "mac"), lb = key_line(ld, other, "mac");
        /* Blame the later of the two. */
        if (la > lb)
            return fail(ld, la, sec, "mac", "duplicate MAC %s (also [%s])",
                        a->mac, other);
        return fail(ld, lb, other, "mac", "duplicate MAC %s (also [%s])",
                    b->mac, sec);
    }
    return 0;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
    struct loader ld = {.path = path, .err = err, .errlen = errlen};
    struct config *c = NULL;
    char *text, *copy;
    size_t len;

    int r = read_file(path, &text, &len);
    if (r < 0) {
        fail(&ld, 0, NULL, NULL, "cannot read: %s", strerror(-r));
        return NULL;
    }
    /* scan() cuts its copy into lines; iniparser reads the original. */
    copy = xmalloc(len + 1);
    memcpy(copy, text, len + 1);
    ld.text = text;
    ld.len = len;
    if (scan(&ld, copy) < 0 || index_entries(&ld) < 0)
        goto out_free_entries;
    if (load_ini(&ld) < 0)
        goto out_free_dicts;

    ld.c = xcalloc(1, sizeof(*ld.c));
    ld.c->path = xstrdup(path);
    if (load_sections(&ld) < 0 || finish(&ld) < 0)
        config_free(ld.c);
    else
        c = ld.c;
out_free_dicts:
    for (size_t i = 0; i < ld.ndicts; i++)
        iniparser_freedict(ld.dicts[i]);
    free(ld.dicts);
out_free_entries:
    for (size_t i = 0; i < ld.nents; i++)
        free(ld.ents[i].name);
    free(ld.ents);
    free(ld.byname);
    free(copy);
    free(text);
    return c;
}

static bool
holds_string(enum kind k)
{
    return k == K_STR || k == K_TEXT || k == K_OPTSTR || k == K_LISTEN ||
           k == K_URL || k == K_ARCH || k == K_POWER || k == K_CONSOLE ||
           k == K_STORE || k == K_NAME;
}

static void
free_strings(const struct key_spec *keys, void *base)
{
    for (const struct key_spec *k = keys; k->key; k++)
        if (holds_string(k->kind))
            free(*(char **)((char *)base + k->off));
}

void
config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NSECTIONS; i++)
        if (sections[i].type == SEC_SINGLE)
            free_strings(sections[i].keys, c);
    for (size_t i = 0; i < c->nprojects; i++) {
        free(c->projects[i].name);
        free_strings(project_keys, &c->projects[i]);
    }
    for (size_t i = 0; i < c->nservers; i++) {
        free(c->servers[i].id);
        free_strings(server_keys, &c->servers[i]);
    }
    for (size_t i = 0; i < c->nfacilities; i++) {
        free(c->facilities[i].name);
        free_strings(facility_keys, &c->facilities[i]);
    }
    free(c->facilities);
    free(c->projects);
    free(c->servers);
    free(c->by_mac);
    free(c->path);
    free(c);
}

static int
cmp_id_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct config_server *)elem)->id);
}

const struct config_server *
config_find_server(const struct config *c, const char *id)
{
    if (!id || !c->nservers)
        return NULL;
    return bsearch(id, c->servers, c->nservers, sizeof(*c->servers),
                   cmp_id_key);
}

static int
cmp_mac_key(const void *key, const void *elem)
{
    return strcmp(key, (*(const struct config_server *const *)elem)->mac);
}

const struct config_server *
config_find_server_by_mac(const struct config *c, const char *mac)
{
    char norm[18];
    if (!mac || !c->nservers || !config_parse_mac(mac, norm))
        return NULL;
    const struct config_server *const *s =
        bsearch(norm, c->by_mac, c->nservers, sizeof(*c->by_mac), cmp_mac_key);
    return s ? *s : NULL;
}

const struct config_project *
config_find_project(const struct config *c, const char *name)
{
    for (size_t i = 0; name && i < c->nprojects; i++)
        if (strcmp(c->projects[i].name, name) == 0)
            return &c->projects[i];
    return NULL;
}

const struct config_facility *
config_find_facility(const struct config *c, const char *name)
{
    for (size_t i = 0; name && i < c->nfacilities; i++)
        if (strcmp(c->facilities[i].name, name) == 0)
            return &c->facilities[i];
    return NULL;
}

const struct config_project *
config_find_project_by_token(const struct config *c, const char *token)
{
    const struct config_project *found = NULL;
    for (size_t i = 0; token && i < c->nprojects; i++)
        if (c->projects[i].token && token_equal(c->projects[i].token, token))
            found = &c->projects[i];
    return found;
}

int
config_check_sim_power(const struct config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nservers; i++) {
        const struct config_server *s = &c->servers[i];
        if (strncmp(s->power, "manual:", 7) != 0) {
            snprintf(err, errlen,
                     "--sim-power is for benchmarks and takes manual: power "
                     "only: [server:%s] has power = %.40s",
                     s->id, s->power);
            return -EINVAL;
        }
    }
    return 0;
}

bool
config_parse_mac(const char *s, char out[18])
{
    static const char hex[] = "0123456789abcdef";
    char buf[18];

    if (!s || strlen(s) != 17 || (s[2] != ':' && s[2] != '-'))
        return false;
    for (int i = 0; i < 6; i++) {
        const char *g = s + 3 * i;
        int hi = hexval(g[0]), lo = hexval(g[1]);
        if (hi < 0 || lo < 0 || (i < 5 && g[2] != s[2]))
            return false;
        buf[3 * i] = hex[hi];
        buf[3 * i + 1] = hex[lo];
        buf[3 * i + 2] = i < 5 ? ':' : '\0';
    }
    memcpy(out, buf, sizeof(buf));
    return true;
}
