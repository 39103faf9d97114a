#include "recording.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct recording {
    FILE *f;
    char *meta_path;
    json_t *meta;
    int n;
    int64_t t0_ms;
    uint64_t bytes;
    unsigned char carry[4]; /* a UTF-8 sequence cut by the chunk's end */
    size_t ncarry;
    struct buf line; /* the event line being written */
};

/* The number of a file named "N.cast", else 0. */
static int
cast_number(const char *name)
{
    char *end;
    long n = strtol(name, &end, 10);
    if (name[0] < '1' || name[0] > '9' || strcmp(end, ".cast") != 0 ||
        n > 1000000000)
        return 0;
    return (int)n;
}

static void
prune(const char *sdir, int keep_days)
{
    DIR *d = opendir(sdir);
    if (!d)
        return;
    time_t cutoff = (time_t)(now_wall_s() - (int64_t)keep_days * 86400);
    struct dirent *e;
    while ((e = readdir(d))) {
        int n = cast_number(e->d_name);
        struct stat st;
        if (n <= 0 || fstatat(dirfd(d), e->d_name, &st, 0) < 0 ||
            st.st_mtime >= cutoff)
            continue;
        char meta[32];
        snprintf(meta, sizeof(meta), "%d.json", n);
        unlinkat(dirfd(d), e->d_name, 0);
        unlinkat(dirfd(d), meta, 0);
    }
    closedir(d);
}

static int
highest(const char *sdir)
{
    DIR *d = opendir(sdir);
    if (!d)
        return 0;
    int max = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int n = cast_number(e->d_name);
        if (n > max)
            max = n;
    }
    closedir(d);
    return max;
}

static void
iso_now(char *buf, size_t len)
{
    format_time_iso(now_wall_s(), buf, len);
}

static void
write_meta(struct recording *r)
{
    json_object_set_new(r->meta, "bytes", json_integer((json_int_t)r->bytes));
    char *s = json_dumps(r->meta, JSON_COMPACT);
    if (!s)
        return;
    if (write_file_atomic(r->meta_path, s, strlen(s), 0600) < 0)
        log_warnx("recording: cannot write %s", r->meta_path);
    free(s);
}

struct recording *
recording_open(const char *dir, const struct recording_meta *m, char *err,
               size_t errlen)
{
    if (!id_valid(m->server)) {
        seterr(err, errlen, "bad server id");
        return NULL;
    }
    char *sdir = xasprintf("%s/%s", dir, m->server);
    struct recording *r = NULL;
    if (mkdir_p(sdir, 0700, err, errlen) < 0)
        goto out;
    if (m->keep_days > 0)
        prune(sdir, m->keep_days);
    /* O_EXCL: two sessions opened in one loop turn cannot share a number. */
    int n = highest(sdir), fd = -1;
    char *path = NULL;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        free(path);
        path = xasprintf("%s/%d.cast", sdir, ++n);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        free(path);
        goto out;
    }
    free(path);
    r = xcalloc(1, sizeof(*r));
    r->f = fdopen(fd, "w");
    if (!r->f)
        fatal("fdopen");
    /* Fewer writes for a busy console; recording_flush empties it. */
    setvbuf(r->f, NULL, _IOFBF, 64 * 1024);
    r->n = n;
    r->t0_ms = now_mono_ms();
    r->meta_path = xasprintf("%s/%d.json", sdir, n);
    char started[32];
    iso_now(started, sizeof(started));
    r->meta = json_pack("{s:i,s:s,s:s,s:s,s:s,s:n,s:i}", "n", n, "who",
                        m->who ? m->who : "-", "role", m->role ? m->role : "-",
                        "transport", m->transport ? m->transport : "-",
                        "started_at", started, "ended_at", "bytes", 0);
    json_t *hdr = json_pack("{s:i,s:i,s:i,s:I,s:s}", "version", 2, "width", 80,
                            "height", 24, "timestamp", (json_int_t)now_wall_s(),
                            "title", m->server);
    char *h = json_dumps(hdr, JSON_COMPACT);
    fprintf(r->f, "%s\n", h);
    free(h);
    json_decref(hdr);
    fflush(r->f);
    write_meta(r);
out:
    free(sdir);
    return r;
}

/* Bytes copied as they are inside a JSON string: printable ASCII but the
 * quote and the backslash. */
static bool
plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* JSON string body of what can be written now; the rest stays in carry.
 * Runs of plain bytes go in one copy: a flood seen by many recorded
 * viewers is mostly plain text. */
static void
escape(struct recording *r, const unsigned char *p, size_t n, struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && plain(p[run]))
            run++;
        if (run > i) {
            buf_append(out, p + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        int l = utf8_seq(p + i, n - i);
        if (l == 0) {
            r->ncarry = n - i;
            memcpy(r->carry, p + i, r->ncarry);
            return;
        }
        if (l < 0) {
            buf_append(out, "\\ufffd", 6);
            i++;
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_append(out, e, 2);
            i++;
        } else if (c == '\r' || c == '\n' || c == '\t') {
            char e[2] = {'\\', c == '\r' ? 'r' : c == '\n' ? 'n' : 't'};
            buf_append(out, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 6);
            i++;
        } else {
            buf_append(out, p + i, (size_t)l);
            i += (size_t)l;
        }
    }
}

void
recording_write(struct recording *r, const void *data, size_t n)
{
    if (!r || n == 0)
        return;
    r->bytes += n;
    const unsigned char *p = data;
    unsigned char *joined = NULL;
    if (r->ncarry) { /* the cut sequence goes first */
        joined = xmalloc(r->ncarry + n);
        memcpy(joined, r->carry, r->ncarry);
        memcpy(joined + r->ncarry, data, n);
        n += r->ncarry;
        p = joined;
        r->ncarry = 0;
    }
    /* One line, built in a buffer kept between calls. */
    struct buf *out = &r->line;
    out->len = 0;
    char head[32];
    int hl = snprintf(head, sizeof(head), "[%.3f, \"o\", \"",
                      (double)(now_mono_ms() - r->t0_ms) / 1000.0);
    buf_append(out, head, (size_t)hl);
    escape(r, p, n, out);
    free(joined);
    if (out->len > (size_t)hl) {
        buf_append(out, "\"]\n", 3);
        fwrite(out->data, 1, out->len, r->f);
    }
}

void
recording_flush(struct recording *r)
{
    if (r)
        fflush(r->f);
}

void
recording_close(struct recording *r)
{
    if (!r)
        return;
    fclose(r->f);
    char ended[32];
    iso_now(ended, sizeof(ended));
    json_object_set_new(r->meta, "ended_at", json_string(ended));
    write_meta(r);
    json_decref(r->meta);
    free(r->meta_path);
    buf_free(&r->line);
    free(r);
}

int
recording_n(const struct recording *r)
{
    return r ? r->n : 0;
}

static int
cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

int
recording_list(const char *dir, const char *server, json_t **out)
{
    json_t *arr = json_array();
    *out = json_pack("{s:o}", "recordings", arr);
    if (!id_valid(server))
        return -EINVAL;
    char *sdir = xasprintf("%s/%s", dir, server);
    DIR *d = opendir(sdir);
    if (!d) {
        free(sdir);
        return errno == ENOENT ? 0 : -errno;
    }
    int *ns = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int n = cast_number(e->d_name);
        if (n <= 0)
            continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 16;
            ns = xrealloc(ns, cap * sizeof(*ns));
        }
        ns[nn++] = n;
    }
    closedir(d);
    qsort(ns, nn, sizeof(*ns), cmp_int);
    for (size_t i = 0; i < nn; i++) {
        char *mp = xasprintf("%s/%d.json", sdir, ns[i]);
        json_t *m = json_load_file(mp, 0, NULL);
        free(mp);
        if (json_is_object(m))
            json_array_append(arr, m);
        json_decref(m);
    }
    free(ns);
    free(sdir);
    return 0;
}

char *
recording_path(const char *dir, const char *server, int n)
{
    if (!id_valid(server) || n <= 0)
        return NULL;
    char *p = xasprintf("%s/%s/%d.cast", dir, server, n);
    if (access(p, R_OK) < 0) {
        free(p);
        return NULL;
    }
    return p;
}
