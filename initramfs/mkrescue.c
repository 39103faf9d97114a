/* mkrescue: unpack Debian packages and write a reproducible initramfs.
 *
 *   mkrescue extract DIR DEB...
 *       Unpack the data.tar.* member of each .deb (an ar archive) into
 *       DIR/NAME, NAME being the package name (the file name up to '_').
 *       No root needed: owners are not restored, modes are.
 *   mkrescue pack [-c lz4|zstd|gzip|none] [-l LEVEL] OUT ROOT SPEC
 *       Write a newc cpio of the entries SPEC names, compressed, to OUT.
 *       lz4 is the legacy frame format, the only lz4 the kernel reads.
 *
 * SPEC has one entry a line ('#' starts a comment), in the spirit of the
 * kernel's gen_init_cpio:
 *   file DEST [SRC]                SRC defaults to ROOT/DEST; a symlink stays
 *                                  a symlink, a directory becomes a directory
 *   dir DEST MODE
 *   slink DEST TARGET
 *   nod DEST MODE c|b MAJOR MINOR
 * A later line for the same DEST replaces an earlier one. Parent
 * directories are added (0755). Entries are written sorted by path, owned
 * by 0:0, with mtime SOURCE_DATE_EPOCH (0 when unset) and inode numbers in
 * that order, so the same inputs give the same bytes. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct ent {
    char *path; /* relative, no leading "/" */
    mode_t mode; /* type and permission bits */
    char *src;   /* regular file: where to read it */
    char *target; /* symlink */
    dev_t rdev;
    size_t seq; /* spec order, so a later line wins */
};

struct entlist {
    struct ent *v;
    size_t n, cap;
};

static const char *
base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- extract ---- */

static int
copy_data(struct archive *in, struct archive *out)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    int r;

    for (;;) {
        r = archive_read_data_block(in, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r != ARCHIVE_OK)
            return -EIO;
        if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK)
            return -EIO;
    }
}

/* Unpack one tar (any compression libarchive knows) held in memory. */
static int
extract_tar(const char *deb, const void *data, size_t len, const char *dir)
{
    struct archive *in, *out;
    struct archive_entry *e;
    int r, ret = 0, n = 0;

    in = archive_read_new();
    archive_read_support_format_tar(in);
    archive_read_support_filter_all(in);
    out = archive_write_disk_new();
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_PERM |
                                            ARCHIVE_EXTRACT_TIME |
                                            ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                            ARCHIVE_EXTRACT_SECURE_SYMLINKS);
    if (archive_read_open_memory(in, data, len) != ARCHIVE_OK) {
        log_warnx("%s: data.tar: %s", deb, archive_error_string(in));
        ret = -EINVAL;
        goto out_free;
    }
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
        char *p = xasprintf("%s/%s", dir, archive_entry_pathname(e));
        const char *hl = archive_entry_hardlink(e);
        char *hp = hl ? xasprintf("%s/%s", dir, hl) : NULL;

        archive_entry_set_pathname(e, p);
        if (hp)
            archive_entry_set_hardlink(e, hp);
        free(p);
        free(hp);
        r = archive_write_header(out, e);
        if (r < ARCHIVE_WARN) {
            log_warnx("%s: %s", deb, archive_error_string(out));
            ret = -EIO;
            goto out_free;
        }
        if (archive_entry_size(e) > 0 && copy_data(in, out) < 0) {
            log_warnx("%s: %s", deb, archive_error_string(out));
            ret = -EIO;
            goto out_free;
        }
        archive_write_finish_entry(out);
        n++;
    }
    if (r != ARCHIVE_EOF) {
        log_warnx("%s: %s", deb, archive_error_string(in));
        ret = -EIO;
    }
out_free:
    archive_read_free(in);
    archive_write_free(out);
    return ret < 0 ? ret : n;
}

/* A .deb is an ar archive: debian-binary, control.tar.*, data.tar.*. */
static int
extract_deb(const char *deb, const char *dir)
{
    struct archive *ar;
    struct archive_entry *e;
    struct buf data = {0};
    int r, ret = -ENOENT;

    ar = archive_read_new();
    archive_read_support_format_ar(ar);
    if (archive_read_open_filename(ar, deb, 1 << 16) != ARCHIVE_OK) {
        log_warnx("%s: %s", deb, archive_error_string(ar));
        archive_read_free(ar);
        return -EINVAL;
    }
    while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
        char chunk[1 << 16];
        ssize_t got;

        if (strncmp(archive_entry_pathname(e), "data.tar", 8) != 0)
            continue;
        while ((got = archive_read_data(ar, chunk, sizeof(chunk))) > 0)
            buf_append(&data, chunk, (size_t)got);
        if (got < 0) {
            log_warnx("%s: %s", deb, archive_error_string(ar));
            ret = -EIO;
            break;
        }
        ret = extract_tar(deb, data.data, data.len, dir);
        break;
    }
    if (ret == -ENOENT)
        log_warnx("%s: no data.tar member", deb);
    buf_free(&data);
    archive_read_free(ar);
    return ret;
}

static int
cmd_extract(int argc, char **argv)
{
    const char *dir;
    int i, n;
    char *sub, *us;

    if (argc < 2) {
        fprintf(stderr, "usage: mkrescue extract DIR DEB...\n");
        return 2;
    }
    dir = argv[0];
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        fatal("mkdir %s", dir);
    for (i = 1; i < argc; i++) {
        fprintf(stderr, "  unpack [%d/%d] %s\n", i, argc - 1,
                base_name(argv[i]));
        /* Each package into DIR/NAME, NAME being the file name up to '_'. */
        sub = xasprintf("%s/%s", dir, base_name(argv[i]));
        if ((us = strchr(sub + strlen(dir) + 1, '_')))
            *us = '\0';
        n = extract_deb(argv[i], sub);
        free(sub);
        if (n < 0)
            return 1;
    }
    return 0;
}

/* ---- pack ---- */

static void
entlist_add(struct entlist *l, const struct ent *e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n] = *e;
    l->v[l->n].seq = l->n;
    l->n++;
}

/* Strip leading "/" and "./"; refuse empty and ".." components. */
static char *
clean_path(const char *p, char *err, size_t errlen)
{
    while (*p == '/' || (p[0] == '.' && p[1] == '/'))
        p += (*p == '/') ? 1 : 2;
    if (!*p || strstr(p, "..")) {
        snprintf(err, errlen, "bad path '%s'", p);
        return NULL;
    }
    char *s = xstrdup(p);
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

static int
spec_file(struct entlist *l, const char *root, char *dest, const char *src,
          char *err, size_t errlen)
{
    struct ent e = {.path = dest};
    struct stat st;
    char *from = src ? xstrdup(src) : xasprintf("%s/%s", root, dest);

    if (lstat(from, &st) < 0) {
        snprintf(err, errlen, "%s: %s", from, strerror(errno));
        free(from);
        return -ENOENT;
    }
    /* Keep permission bits but drop set-id: everything runs as root. */
    e.mode = st.st_mode & ~(mode_t)(S_ISUID | S_ISGID);
    if (S_ISLNK(st.st_mode)) {
        char t[4096];
        ssize_t n = readlink(from, t, sizeof(t) - 1);
        if (n < 0) {
            snprintf(err, errlen, "%s: %s", from, strerror(errno));
            free(from);
            return -errno;
        }
        t[n] = '\0';
        e.target = xstrdup(t);
        free(from);
    } else if (S_ISREG(st.st_mode)) {
        e.src = from;
    } else if (S_ISDIR(st.st_mode)) {
        free(from);
    } else {
        snprintf(err, errlen, "%s: not a file, link or directory", from);
        free(from);
        return -EINVAL;
    }
    entlist_add(l, &e);
    return 0;
}

static int
spec_read(struct entlist *l, const char *root, const char *spec, char *err,
          size_t errlen)
{
    FILE *f = fopen(spec, "r");
    char line[8192];
    int lineno = 0, ret = 0;

    if (!f) {
        snprintf(err, errlen, "%s: %s", spec, strerror(errno));
        return -errno;
    }
    while (ret == 0 && fgets(line, sizeof(line), f)) {
        char *tok[7] = {0}, *save = NULL, *p;
        char lerr[512];
        int n = 0;

        lineno++;
        if ((p = strchr(line, '#')))
            *p = '\0';
        for (p = strtok_r(line, " \t\r\n", &save); p && n < 7;
             p = strtok_r(NULL, " \t\r\n", &save))
            tok[n++] = p;
        if (n == 0)
            continue;
        char *dest = n > 1 ? clean_path(tok[1], lerr, sizeof(lerr)) : NULL;
        if (!dest) {
            snprintf(err, errlen, "%s:%d: %s", spec, lineno,
                     n > 1 ? lerr : "missing path");
            ret = -EINVAL;
            break;
        }
        struct ent e = {.path = dest};
        if (strcmp(tok[0], "file") == 0 && n <= 3) {
            ret = spec_file(l, root, dest, tok[2], lerr, sizeof(lerr));
            if (ret < 0) {
                snprintf(err, errlen, "%s:%d: %s", spec, lineno, lerr);
                free(dest);
            }
            continue;
        } else if (strcmp(tok[0], "dir") == 0 && n == 3) {
            e.mode = S_IFDIR | (mode_t)strtoul(tok[2], NULL, 8);
        } else if (strcmp(tok[0], "slink") == 0 && n == 3) {
            e.mode = S_IFLNK | 0777;
            e.target = xstrdup(tok[2]);
        } else if (strcmp(tok[0], "nod") == 0 && n == 6 &&
                   (tok[3][0] == 'c' || tok[3][0] == 'b')) {
            e.mode = (tok[3][0] == 'c' ? S_IFCHR : S_IFBLK) |
                     (mode_t)strtoul(tok[2], NULL, 8);
            e.rdev = makedev(strtoul(tok[4], NULL, 10),
                             strtoul(tok[5], NULL, 10));
        } else {
            snprintf(err, errlen, "%s:%d: cannot parse '%s' line", spec,
                     lineno, tok[0]);
            free(dest);
            ret = -EINVAL;
            break;
        }
        entlist_add(l, &e);
    }
    fclose(f);
    return ret;
}

static int
ent_cmp(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
ent_clear(struct ent *e)
{
    free(e->path);
    free(e->src);
    free(e->target);
}

/* Sort, let the later of two equal paths win, and add missing parents. */
static void
entlist_finish(struct entlist *l)
{
    size_t i, j, n = l->n;

    for (i = 0; i < n; i++) {
        char *p = xstrdup(l->v[i].path), *s;
        while ((s = strrchr(p, '/'))) {
            *s = '\0';
            struct ent d = {.path = xstrdup(p), .mode = S_IFDIR | 0755};
            entlist_add(l, &d);
            /* Implicit parents lose to any explicit line. */
            l->v[l->n - 1].seq = 0;
        }
        free(p);
    }
    qsort(l->v, l->n, sizeof(*l->v), ent_cmp);
    for (i = 0, j = 0; i < l->n; i++) {
        if (j > 0 && strcmp(l->v[j - 1].path, l->v[i].path) == 0) {
            ent_clear(&l->v[j - 1]);
            l->v[j - 1] = l->v[i];
            continue;
        }
        l->v[j++] = l->v[i];
    }
    l->n = j;
}

static int
write_entry(struct archive *a, const struct ent *e, unsigned ino,
            time_t mtime)
{
    struct archive_entry *ae = archive_entry_new();
    int fd = -1, ret = 0;
    struct stat st;

    archive_entry_set_pathname(ae, e->path);
    archive_entry_set_mode(ae, e->mode);
    archive_entry_set_uid(ae, 0);
    archive_entry_set_gid(ae, 0);
    archive_entry_set_mtime(ae, mtime, 0);
    archive_entry_set_ino(ae, ino);
    archive_entry_set_dev(ae, 0);
    archive_entry_set_nlink(ae, S_ISDIR(e->mode) ? 2 : 1);
    archive_entry_set_size(ae, 0);
    if (S_ISLNK(e->mode)) {
        archive_entry_set_symlink(ae, e->target);
        archive_entry_set_size(ae, 0);
    } else if (S_ISCHR(e->mode) || S_ISBLK(e->mode)) {
        archive_entry_set_rdev(ae, e->rdev);
    } else if (S_ISREG(e->mode)) {
        fd = open(e->src, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
            log_warn("%s", e->src);
            ret = -EIO;
            goto out_free;
        }
        archive_entry_set_size(ae, st.st_size);
    }
    if (archive_write_header(a, ae) != ARCHIVE_OK) {
        log_warnx("%s: %s", e->path, archive_error_string(a));
        ret = -EIO;
        goto out_close;
    }
    if (fd >= 0) {
        char chunk[1 << 16];
        ssize_t n;
        while ((n = read(fd, chunk, sizeof(chunk))) > 0)
            if (archive_write_data(a, chunk, (size_t)n) != n) {
                log_warnx("%s: %s", e->path, archive_error_string(a));
                ret = -EIO;
                break;
            }
        if (n < 0) {
            log_warn("%s", e->src);
            ret = -EIO;
        }
    }
out_close:
    if (fd >= 0)
        close(fd);
out_free:
    archive_entry_free(ae);
    return ret;
}

static int
cmd_pack(int argc, char **argv)
{
    const char *comp = "zstd", *level = NULL, *epoch;
    struct entlist l = {0};
    struct archive *a;
    char err[1024], *tmp;
    time_t mtime = 0;
    size_t i;
    int opt, ret = 1;
    long long bytes = 0;

    optind = 1;
    while ((opt = getopt(argc, argv, "c:l:")) != -1) {
        if (opt == 'c')
            comp = optarg;
        else if (opt == 'l')
            level = optarg;
        else
            goto usage;
    }
    argc -= optind;
    argv += optind;
    if (argc != 3)
        goto usage;
    if ((epoch = getenv("SOURCE_DATE_EPOCH")) && *epoch)
        mtime = (time_t)strtoll(epoch, NULL, 10);

    if (spec_read(&l, argv[1], argv[2], err, sizeof(err)) < 0) {
        log_warnx("%s", err);
        goto out_free;
    }
    entlist_finish(&l);

    a = archive_write_new();
    archive_write_set_format_cpio_newc(a);
    if (strcmp(comp, "lz4") == 0) {
        /* The kernel decompresses lz4 about twice as fast as zstd, which
         * is boot time; but it reads only lz4's legacy format, which
         * libarchive's own lz4 filter does not write: it runs the lz4
         * tool for it (no time or name in that format: same bytes). */
        char *cmd = xasprintf("lz4 -l -%s -q -c", level ? level : "12");
        int r = archive_write_add_filter_program(a, cmd);
        free(cmd);
        if (r != ARCHIVE_OK) {
            log_warnx("lz4: %s", archive_error_string(a));
            archive_write_free(a);
            goto out_free;
        }
    } else if (strcmp(comp, "zstd") == 0) {
        archive_write_add_filter_zstd(a);
        if (level) {
            char *o = xasprintf("zstd:compression-level=%s", level);
            archive_write_set_options(a, o);
            free(o);
        }
    } else if (strcmp(comp, "gzip") == 0) {
        archive_write_add_filter_gzip(a);
        /* No name or time in the gzip header: same bytes every time. */
        archive_write_set_options(a, "gzip:!timestamp");
        if (level) {
            char *o = xasprintf("gzip:compression-level=%s", level);
            archive_write_set_options(a, o);
            free(o);
        }
    } else if (strcmp(comp, "none") != 0) {
        log_warnx("unknown compression '%s'", comp);
        archive_write_free(a);
        goto out_free;
    }
    /* The kernel's initramfs reader wants no padding past the trailer. */
    archive_write_set_bytes_in_last_block(a, 1);
    tmp = xasprintf("%s.tmp", argv[0]);
    if (archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
        log_warnx("%s: %s", tmp, archive_error_string(a));
        goto out_archive;
    }
    for (i = 0; i < l.n; i++) {
        if (write_entry(a, &l.v[i], (unsigned)i + 1, mtime) < 0)
            goto out_archive;
        if (S_ISREG(l.v[i].mode)) {
            struct stat st;
            if (stat(l.v[i].src, &st) == 0)
                bytes += st.st_size;
        }
        if ((i + 1) % 500 == 0 || i + 1 == l.n)
            fprintf(stderr, "  pack [%zu/%zu] %.1f MB\n", i + 1, l.n,
                    bytes / 1e6);
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        log_warnx("%s: %s", tmp, archive_error_string(a));
        goto out_archive;
    }
    if (rename(tmp, argv[0]) < 0) {
        log_warn("rename %s", argv[0]);
        goto out_archive;
    }
    ret = 0;
out_archive:
    if (ret)
        unlink(tmp);
    free(tmp);
    archive_write_free(a);
out_free:
    for (i = 0; i < l.n; i++)
        ent_clear(&l.v[i]);
    free(l.v);
    return ret;
usage:
    fprintf(stderr, "usage: mkrescue pack [-c zstd|gzip|none] [-l LEVEL] "
                    "OUT ROOT SPEC\n");
    return 2;
}

int
main(int argc, char **argv)
{
    log_init(LOG_LEVEL_INFO, "mkrescue");
    if (argc >= 2 && strcmp(argv[1], "extract") == 0)
        return cmd_extract(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "pack") == 0)
        return cmd_pack(argc - 1, argv + 1);
    fprintf(stderr, "usage: mkrescue extract DIR DEB...\n"
                    "       mkrescue pack [-c zstd|gzip|none] [-l LEVEL] "
                    "OUT ROOT SPEC\n");
    return 2;
}
