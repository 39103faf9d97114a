#include "util.h"

#include <errno.h>
#include <sys/random.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
out_of_memory(size_t n)
{
    fprintf(stderr, "out of memory allocating %zu bytes\n", n);
    abort();
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory(n);
    return p;
}

void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory(n * size);
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory(n);
    return q;
}

char *
xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        out_of_memory(strlen(s) + 1);
    return p;
}

char *
xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p;
    va_start(ap, fmt);
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0)
        out_of_memory(0);
    return p;
}

void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *
plural(unsigned long long n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

size_t
strlcpy_s(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

int64_t
now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
now_wall_s(void)
{
    return (int64_t)time(NULL);
}

int64_t
now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
format_time_iso(int64_t wall_s, char *buf, size_t len)
{
    time_t t = (time_t)wall_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A number followed by an optional unit from units[] with factors[]. */
static int
parse_with_units(const char *s, const char *units, const long long *factors,
                 long long *out)
{
    char *end;
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -EINVAL;
    long long f = 1;
    if (*end) {
        const char *u = strchr(units, *end);
        if (!u || end[1] != '\0')
            return -EINVAL;
        f = factors[u - units];
    }
    if (v > LLONG_MAX / f)
        return -ERANGE;
    *out = v * f;
    return 0;
}

int
parse_duration(const char *s, long long *out_s)
{
    static const long long f[] = {1, 60, 3600, 86400};
    return parse_with_units(s, "smhd", f, out_s);
}

int
parse_size(const char *s, long long *out_bytes)
{
    static const long long f[] = {1024, 1024 * 1024, 1024LL * 1024 * 1024,
                                  1024, 1024 * 1024, 1024LL * 1024 * 1024};
    return parse_with_units(s, "KMGkmg", f, out_bytes);
}

bool
parse_u63(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool
id_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Does s read, to dnsmasq's dhcp-host, as a lease time ("45", "12h") or a
 * keyword ("infinite", "ignore")?  (Only a field with ':' is read as a
 * hardware address, and ids have none.) */
static bool
id_dnsmasq_word(const char *s)
{
    if (!strcasecmp(s, "infinite") || !strcasecmp(s, "ignore") ||
        !strcasecmp(s, "deleted"))
        return true;
    size_t d = strspn(s, "0123456789");
    return d > 0 && (!s[d] || (strchr("smhdwSMHDW", s[d]) && !s[d + 1]));
}

bool
id_valid_why(const char *s, char *why, size_t whylen)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ID_MAX) {
        seterr(why, whylen, "server id must be 1 to %d characters", ID_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!id_char(c) || c == '_') {
            seterr(why, whylen,
                   "server id must be letters, digits and '-' (it becomes the "
                   "rescue OS's hostname)");
            return false;
        }
    }
    if (s[0] == '-' || s[n - 1] == '-') {
        seterr(why, whylen, "server id must not begin or end with '-'");
        return false;
    }
    if (id_dnsmasq_word(s)) {
        seterr(why, whylen,
               "server id '%s' reads to dnsmasq as a lease time or a keyword",
               s);
        return false;
    }
    return true;
}

bool
id_valid(const char *s)
{
    return id_valid_why(s, NULL, 0);
}

int
random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof(raw))
        return -EINVAL;
    ssize_t n = getrandom(raw, nbytes, 0);
    if (n != (ssize_t)nbytes)
        return n < 0 ? -errno : -EIO;
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    explicit_bzero(raw, sizeof(raw));
    return 0;
}

/* Every byte up to the longer length is compared, with no early return:
 * the time depends on the lengths only, never on how much of a guess was
 * right.  Strings of different lengths differ at the shorter one's end
 * (a NUL against a byte that is not), so no separate length test. */
bool
token_equal(const char *given, const char *secret)
{
    size_t lg = strlen(given), ls = strlen(secret);
    size_t n = lg > ls ? lg : ls;
    volatile unsigned char d = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = i < lg ? (unsigned char)given[i] : 0;
        unsigned char b = i < ls ? (unsigned char)secret[i] : 0;
        d |= a ^ b;
    }
    return d == 0;
}

void
child_stop(int pid, int grace_ms)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < grace_ms / 10; i++) {
        pid_t w = waitpid(pid, NULL, WNOHANG);
        if (w == pid || (w < 0 && errno == ECHILD))
            return;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int
mkdir_p(const char *dir, int mode, char *err, size_t errlen)
{
    int ret = 0;

    if (!*dir) {
        seterr(err, errlen, "empty directory name");
        return -EINVAL;
    }
    char *path = xstrdup(dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, c ? 0755 : (mode_t)mode) < 0 && errno != EEXIST) {
            ret = -errno;
            seterr(err, errlen, "cannot create %s: %s", path, strerror(errno));
            break;
        }
        *p = c;
        if (!c)
            break;
    }
    free(path);
    return ret;
}

int
write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
        sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return -e;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

int
read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n + 1)
            c *= 2;
        b->data = xrealloc(b->data, c);
        b->cap = c;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        buf_append(b, small, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_append(b, big, (size_t)n);
    free(big);
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int
child_spawn(char *const argv[], char *const envp[], const int fds[3],
            bool new_session, const char *tty)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: only async-signal-safe calls from here. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (new_session)
        setsid();
    int use[3] = {fds[0], fds[1], fds[2]};
    if (tty) {
        int t = open(tty, O_RDWR);
        if (t < 0)
            _exit(126);
        use[0] = use[1] = use[2] = t;
    }
    for (int i = 0; i < 3; i++) {
        if (use[i] < 0 && (use[i] = open("/dev/null", O_RDWR)) < 0)
            _exit(126);
        if (dup2(use[i], i) < 0)
            _exit(126);
    }
    close_range(3, ~0U, 0);
    execvpe(argv[0], argv, envp);
    _exit(127);
}

int
fd_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

char **
env_with(const char *name, const char *value)
{
    extern char **environ;
    size_t n = 0, k = 0, len = strlen(name);
    while (environ[n])
        n++;
    char **envp = xcalloc(n + 2, sizeof(*envp));
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], name, len) != 0 || environ[i][len] != '=')
            envp[k++] = xstrdup(environ[i]);
    if (value)
        envp[k++] = xasprintf("%s=%s", name, value);
    return envp;
}

void
strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* --- UTF-8 ------------------------------------------------------------ */

int
utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    int len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= avail)
            return 0;
        unsigned char lim_lo = i == 1 ? lo : 0x80, lim_hi = i == 1 ? hi : 0xbf;
        if (p[i] < lim_lo || p[i] > lim_hi)
            return -1;
    }
    return len;
}

/* Could s (n bytes, at the string's end) be the start of a character a cut
 * went through? */
static bool
utf8_cut_tail(const unsigned char *s, size_t n)
{
    if (n == 0 || n > 3 || s[0] < 0xC2 || s[0] > 0xF4)
        return false;
    size_t want = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    if (n >= want)
        return false;
    for (size_t i = 1; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return false;
    return true;
}

size_t
utf8_cut_len(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    size_t i = 0;
    while (i < n) {
        int l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l <= 0 && utf8_cut_tail((const unsigned char *)s + i, n - i))
            return i;
        i += l > 0 ? (size_t)l : 1;
    }
    return n;
}

int
snprintf_utf8(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n >= 0 && size > 0 && (size_t)n >= size)
        buf[utf8_cut_len(buf, size - 1)] = '\0';
    return n;
}

size_t
strlcpy_utf8(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size == 0)
        return n;
    size_t k = utf8_cut_len(src, size - 1);
    memcpy(dst, src, k);
    dst[k] = '\0';
    return n;
}

char *
utf8_valid_dup(const char *s)
{
    struct buf b = {0};
    size_t n = strlen(s), i = 0;
    while (i < n) {
        const unsigned char *p = (const unsigned char *)s + i;
        int l = utf8_seq(p, n - i);
        if (l > 0) {
            buf_append(&b, p, (size_t)l);
            i += (size_t)l;
        } else {
            buf_append(&b, "\xEF\xBF\xBD", 3); /* U+FFFD */
            i++;
        }
    }
    if (!b.data)
        return xstrdup("");
    return b.data;
}

void
buf_append_visible(struct buf *b, const char *s, size_t n, const char *keep)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 || c == 0x7f) && !(c && keep && strchr(keep, c))) {
            buf_printf(b, "\\x%02x", c);
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9f) {
            buf_printf(b, "\\u%04x", (unsigned char)s[++i]);
        } else {
            buf_append(b, &s[i], 1);
        }
    }
    if (!b->data)
        buf_append(b, "", 0);
}
