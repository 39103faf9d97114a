#include "overlay.h"
#include "sshkey.h"
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

/* One archive member, held in memory until all are known and sorted. */
struct entry {
    char *path;  /* relative, no trailing slash */
    mode_t type; /* AE_IFREG, AE_IFDIR or AE_IFLNK */
    mode_t perm;
    char *data; /* file contents or link target */
    size_t len;
};

struct entries {
    struct entry *v;
    size_t n, cap;
};

static void
entries_free(struct entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        free(es->v[i].path);
        free(es->v[i].data);
    }
    free(es->v);
    memset(es, 0, sizeof(*es));
}

static void
entries_remove(struct entries *es, const char *path)
{
    for (size_t i = 0; i < es->n; i++) {
        if (strcmp(es->v[i].path, path) != 0)
            continue;
        free(es->v[i].path);
        free(es->v[i].data);
        es->v[i] = es->v[--es->n];
        return;
    }
}

/* Add an entry (replacing one of the same path); takes ownership of data. */
static void
entries_add(struct entries *es, const char *path, mode_t type, mode_t perm,
            char *data, size_t len)
{
    entries_remove(es, path);
    if (es->n == es->cap) {
        es->cap = es->cap ? es->cap * 2 : 32;
        es->v = xrealloc(es->v, es->cap * sizeof(*es->v));
    }
    es->v[es->n++] = (struct entry){xstrdup(path), type, perm, data, len};
}

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->path,
                  ((const struct entry *)b)->path);
}

/* Paths of the skeleton that the overlay never takes from it. */
static bool
skipped(const char *rel)
{
    static const char *const paths[] = {
        "README.md", "etc/.default_boot_services", "etc/hostname",
        "etc/hosts", "root/.ssh/authorized_keys",
    };

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (strcmp(rel, paths[i]) == 0)
            return true;
    return false;
}

/* Collect dir/rel recursively (rel is "" at the top). */
static int
walk(const char *top, const char *rel, struct entries *es, char *err,
     size_t errlen)
{
    char *dir = *rel ? xasprintf("%s/%s", top, rel) : xstrdup(top);
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (!d) {
        rc = -errno;
        seterr(err, errlen, "skeleton %s: %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    while ((de = readdir(d))) {
        char *path, *sub;
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        sub = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        path = xasprintf("%s/%s", top, sub);
        if (skipped(sub)) {
            /* nothing: generated or never shipped */
        } else if (lstat(path, &st) < 0) {
            rc = -errno;
            seterr(err, errlen, "skeleton %s: %s", path, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            entries_add(es, sub, AE_IFDIR, 0755, NULL, 0);
            rc = walk(top, sub, es, err, errlen);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlink(path, target, sizeof(target) - 1);
            if (n < 0) {
                rc = -errno;
                seterr(err, errlen, "skeleton %s: %s", path, strerror(errno));
            } else {
                target[n] = '\0';
                entries_add(es, sub, AE_IFLNK, 0777, xstrdup(target),
                            (size_t)n);
            }
        } else if (S_ISREG(st.st_mode)) {
            char *data;
            size_t len;
            rc = read_file(path, &data, &len);
            if (rc < 0)
                seterr(err, errlen, "skeleton %s: %s", path, strerror(-rc));
            else
                entries_add(es, sub, AE_IFREG,
                            (st.st_mode & 0111) ? 0755 : 0644, data, len);
        } else {
            rc = -EINVAL;
            seterr(err, errlen, "skeleton %s: not a file, directory or link",
                   path);
        }
        free(path);
        free(sub);
        if (rc < 0)
            break;
    }
    closedir(d);
    free(dir);
    return rc;
}

/* Each label by the server id grammar (util.h id_valid): the id is the
 * hostname, so what config takes the overlay takes. */
bool
overlay_hostname_valid(const char *hostname)
{
    if (!hostname || !*hostname || strlen(hostname) > 253)
        return false;
    char label[ID_MAX + 2];
    for (const char *p = hostname;; p++) {
        size_t n = strcspn(p, ".");
        if (n == 0 || n > ID_MAX)
            return false;
        memcpy(label, p, n);
        label[n] = '\0';
        if (!id_valid(label))
            return false;
        p += n;
        if (!*p)
            return true;
    }
}

/* Every key must be valid before anything is built. */
static int
check_keys(const char *const *keys, size_t nkeys, char *err, size_t errlen)
{
    char why[160], comment[64];

    if (nkeys == 0) {
        seterr(err, errlen, "no SSH key given: nobody could log in");
        return -EINVAL;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (sshkey_valid(keys[i], why, sizeof(why)))
            continue;
        sshkey_comment(keys[i], comment, sizeof(comment));
        if (*comment)
            seterr(err, errlen, "key %zu (%s): %s", i + 1, comment, why);
        else
            seterr(err, errlen, "key %zu: %s", i + 1, why);
        return -EINVAL;
    }
    return 0;
}

/* The per-server files. */
static void
add_generated(struct entries *es, const char *hostname, const char *const *keys,
              size_t nkeys)
{
    struct buf b = {0};
    const char *dot = strchr(hostname, '.');

    entries_add(es, "etc", AE_IFDIR, 0755, NULL, 0);
    buf_printf(&b, "%s\n", hostname);
    entries_add(es, "etc/hostname", AE_IFREG, 0644, b.data, b.len);

    b = (struct buf){0};
    buf_printf(&b, "127.0.0.1\tlocalhost localhost.localdomain\n"
                   "::1\t\tlocalhost localhost.localdomain\n");
    if (dot)
        buf_printf(&b, "127.0.1.1\t%s %.*s\n", hostname, (int)(dot - hostname),
                   hostname);
    else
        buf_printf(&b, "127.0.1.1\t%s\n", hostname);
    entries_add(es, "etc/hosts", AE_IFREG, 0644, b.data, b.len);

    entries_add(es, "root", AE_IFDIR, 0700, NULL, 0);
    entries_add(es, "root/.ssh", AE_IFDIR, 0700, NULL, 0);
    b = (struct buf){0};
    for (size_t i = 0; i < nkeys; i++) {
        char *line = sshkey_canonical(keys[i]);
        buf_printf(&b, "%s\n", line);
        free(line);
    }
    entries_add(es, "root/.ssh/authorized_keys", AE_IFREG, 0600, b.data, b.len);
}

static int64_t
fixed_mtime(void)
{
    const char *s = getenv("SOURCE_DATE_EPOCH");
    char *end;
    long long v;

    if (!s || !*s)
        return 0;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < 0)
        return 0;
    return v;
}

static la_ssize_t
write_cb(struct archive *a, void *arg, const void *p, size_t n)
{
    (void)a;
    buf_append(arg, p, n);
    return (la_ssize_t)n;
}

static int
write_entries(const struct entries *es, struct buf *out, char *err,
              size_t errlen)
{
    struct archive *a = archive_write_new();
    struct archive_entry *ae = archive_entry_new();
    int64_t mtime = fixed_mtime();
    int rc = 0;

    if (!a || !ae) {
        rc = -ENOMEM;
        seterr(err, errlen, "out of memory");
        goto out_free;
    }
    if (archive_write_set_format_ustar(a) != ARCHIVE_OK ||
        archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL) !=
            ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open2(a, out, NULL, write_cb, NULL, NULL) != ARCHIVE_OK)
        goto out_archive_error;
    for (size_t i = 0; i < es->n; i++) {
        const struct entry *e = &es->v[i];
        char *name =
            e->type == AE_IFDIR ? xasprintf("%s/", e->path) : xstrdup(e->path);
        archive_entry_clear(ae);
        archive_entry_set_pathname(ae, name);
        free(name);
        archive_entry_set_filetype(ae, e->type);
        archive_entry_set_perm(ae, e->perm);
        archive_entry_set_uid(ae, 0);
        archive_entry_set_gid(ae, 0);
        archive_entry_set_uname(ae, "root");
        archive_entry_set_gname(ae, "root");
        archive_entry_set_mtime(ae, mtime, 0);
        if (e->type == AE_IFLNK)
            archive_entry_set_symlink(ae, e->data);
        archive_entry_set_size(ae, e->type == AE_IFREG ? (int64_t)e->len : 0);
        if (archive_write_header(a, ae) != ARCHIVE_OK)
            goto out_archive_error;
        if (e->type == AE_IFREG && e->len &&
            archive_write_data(a, e->data, e->len) != (la_ssize_t)e->len)
            goto out_archive_error;
    }
    if (archive_write_close(a) != ARCHIVE_OK)
        goto out_archive_error;
    goto out_free;
out_archive_error:
    rc = -EIO;
    seterr(err, errlen, "writing the overlay: %s", archive_error_string(a));
out_free:
    archive_entry_free(ae);
    archive_write_free(a);
    return rc;
}

int
overlay_build(const char *skeleton_dir, const char *hostname,
              const char *const *keys, size_t nkeys, struct buf *out, char *err,
              size_t errlen)
{
    struct entries es = {0};
    struct buf tgz = {0};
    int rc;

    if (!overlay_hostname_valid(hostname)) {
        seterr(err, errlen, "invalid hostname '%.64s'",
               hostname ? hostname : "");
        return -EINVAL;
    }
    rc = check_keys(keys, nkeys, err, errlen);
    if (rc < 0)
        return rc;
    rc = walk(skeleton_dir, "", &es, err, errlen);
    if (rc < 0)
        goto out_free_entries;
    add_generated(&es, hostname, keys, nkeys);
    qsort(es.v, es.n, sizeof(*es.v), entry_cmp);
    rc = write_entries(&es, &tgz, err, errlen);
    if (rc == 0)
        buf_append(out, tgz.data, tgz.len);
    buf_free(&tgz);
out_free_entries:
    entries_free(&es);
    return rc;
}
