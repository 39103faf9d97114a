#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "overlay.h"
#include "util.h"

#include "keyhelp.h"
#include "testutil.h"

/* Tests run from the repository root; ALPINE_OVERLAY may point elsewhere. */
static const char *skeleton;

static struct {
    char *dir;
    char *ed25519, *ecdsa, *rsa1024;
} k;

/* One member of an archive, as read back with libarchive. */
struct member {
    char *path, *link, *data;
    size_t len;
    mode_t type, perm;
    int64_t uid, gid, mtime;
    char *uname, *gname;
};

struct listing {
    struct member m[128];
    size_t n;
};

static void
listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->m[i].path);
        free(l->m[i].link);
        free(l->m[i].data);
        free(l->m[i].uname);
        free(l->m[i].gname);
    }
    l->n = 0;
}

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void
read_back(const struct buf *tgz, struct listing *l)
{
    struct archive *a = archive_read_new();
    struct archive_entry *ae;

    l->n = 0;
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_memory(a, tgz->data, tgz->len),
                     ARCHIVE_OK);
    while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
        struct member *m = &l->m[l->n++];
        assert_true(l->n < 128);
        memset(m, 0, sizeof(*m));
        m->path = xstrdup(archive_entry_pathname(ae));
        m->link = dup_or_null(archive_entry_symlink(ae));
        m->type = archive_entry_filetype(ae);
        m->perm = archive_entry_perm(ae);
        m->uid = archive_entry_uid(ae);
        m->gid = archive_entry_gid(ae);
        m->uname = dup_or_null(archive_entry_uname(ae));
        m->gname = dup_or_null(archive_entry_gname(ae));
        m->mtime = archive_entry_mtime(ae);
        m->len = (size_t)archive_entry_size(ae);
        m->data = xmalloc(m->len + 1);
        assert_int_equal(archive_read_data(a, m->data, m->len),
                         (la_ssize_t)m->len);
        m->data[m->len] = '\0';
    }
    assert_int_equal(archive_read_free(a), ARCHIVE_OK);
}

static const struct member *
find(const struct listing *l, const char *path)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->m[i].path, path) == 0)
            return &l->m[i];
    return NULL;
}

static const struct member *
must_find(const struct listing *l, const char *path)
{
    const struct member *m = find(l, path);
    if (!m)
        fail_msg("%s missing from the overlay", path);
    return m;
}

static int
group_setup(void **state)
{
    struct stat st;

    (void)state;
    skeleton = getenv("ALPINE_OVERLAY");
    if (!skeleton)
        skeleton = "alpine-overlay";
    if (stat(skeleton, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "no skeleton at %s: run from the repository root\n",
                skeleton);
        return -1;
    }
    unsetenv("SOURCE_DATE_EPOCH");
    k.dir = tu_tmpdir_new("test_overlay");
    if (!k.dir)
        return -1;
    k.ed25519 = keygen(k.dir, "ed", "ed25519", 0, "alice@laptop");
    k.ecdsa = keygen(k.dir, "ec", "ecdsa", 256, "carol@desk");
    k.rsa1024 = keygen(k.dir, "r1024", "rsa", 1024, "old@box");
    return k.ed25519 && k.ecdsa && k.rsa1024 ? 0 : -1;
}

static int
group_teardown(void **state)
{
    (void)state;
    int rc = tu_tmpdir_free(k.dir);
    free(k.ed25519);
    free(k.ecdsa);
    free(k.rsa1024);
    return rc;
}

static void
build_ok(const char *hostname, const char *const *keys, size_t n,
         struct buf *out)
{
    char err[256] = "";
    int rc = overlay_build(skeleton, hostname, keys, n, out, err, sizeof(err));
    if (rc != 0)
        fail_msg("overlay_build: %d %s", rc, err);
}

static void
test_entries_and_generated_files(void **state)
{
    const char *keys[] = {k.ed25519, k.ecdsa};
    struct buf out = {0};
    struct listing l;
    const struct member *m;
    char *want;

    (void)state;
    build_ok("srv1", keys, 2, &out);
    read_back(&out, &l);

    /* The skeleton's files. */
    m = must_find(&l, "etc/motd");
    assert_int_equal(m->type, AE_IFREG);
    assert_int_equal(m->perm, 0644);
    assert_non_null(strstr(m->data, "resize2fs"));
    m = must_find(&l, "etc/network/interfaces");
    assert_non_null(strstr(m->data, "iface eth0 inet dhcp"));
    m = must_find(&l, "etc/ssh/sshd_config");
    assert_non_null(strstr(m->data, "PasswordAuthentication no"));
    m = must_find(&l, "etc/apk/world");
    assert_non_null(strstr(m->data, "openssh\n"));
    must_find(&l, "etc/");
    must_find(&l, "etc/runlevels/default/");

    /* Runlevel links stay links to /etc/init.d. */
    m = must_find(&l, "etc/runlevels/default/sshd");
    assert_int_equal(m->type, AE_IFLNK);
    assert_string_equal(m->link, "/etc/init.d/sshd");
    m = must_find(&l, "etc/runlevels/boot/networking");
    assert_int_equal(m->type, AE_IFLNK);
    assert_string_equal(m->link, "/etc/init.d/networking");

    /* Per-server files. */
    m = must_find(&l, "etc/hostname");
    assert_string_equal(m->data, "srv1\n");
    m = must_find(&l, "etc/hosts");
    assert_non_null(strstr(m->data, "127.0.0.1\tlocalhost"));
    assert_non_null(strstr(m->data, "\tsrv1\n"));
    m = must_find(&l, "root/");
    assert_int_equal(m->type, AE_IFDIR);
    assert_int_equal(m->perm, 0700);
    m = must_find(&l, "root/.ssh/");
    assert_int_equal(m->type, AE_IFDIR);
    assert_int_equal(m->perm, 0700);
    m = must_find(&l, "root/.ssh/authorized_keys");
    assert_int_equal(m->type, AE_IFREG);
    assert_int_equal(m->perm, 0600);
    want = xasprintf("%s\n%s\n", k.ed25519, k.ecdsa);
    assert_string_equal(m->data, want);
    free(want);

    /* Never shipped: it would make Alpine add its defaults and ssh_key=. */
    assert_null(find(&l, "etc/.default_boot_services"));
    assert_null(find(&l, "README.md"));

    listing_free(&l);
    buf_free(&out);
}

static void
test_paths_owners_order(void **state)
{
    const char *keys[] = {k.ed25519};
    struct buf out = {0};
    struct listing l;

    (void)state;
    build_ok("srv1.example.com", keys, 1, &out);
    read_back(&out, &l);
    assert_true(l.n > 10);
    for (size_t i = 0; i < l.n; i++) {
        const struct member *m = &l.m[i];
        assert_true(m->path[0] != '/');
        assert_null(strstr(m->path, ".."));
        assert_int_equal(m->uid, 0);
        assert_int_equal(m->gid, 0);
        assert_string_equal(m->uname, "root");
        assert_string_equal(m->gname, "root");
        assert_int_equal(m->mtime, 0);
        if (i > 0) {
            /* Sorted by path (directories compared without their '/'). */
            char *a = xstrdup(l.m[i - 1].path), *b = xstrdup(m->path);
            if (a[strlen(a) - 1] == '/')
                a[strlen(a) - 1] = '\0';
            if (b[strlen(b) - 1] == '/')
                b[strlen(b) - 1] = '\0';
            if (strcmp(a, b) >= 0)
                fail_msg("'%s' before '%s'", l.m[i - 1].path, m->path);
            free(a);
            free(b);
        }
    }
    assert_string_equal(must_find(&l, "etc/hostname")->data,
                        "srv1.example.com\n");
    assert_non_null(
        strstr(must_find(&l, "etc/hosts")->data, "\tsrv1.example.com srv1\n"));
    listing_free(&l);
    buf_free(&out);
}

static void
test_reproducible(void **state)
{
    const char *keys[] = {k.ed25519, k.ecdsa};
    const char *other[] = {k.ecdsa};
    struct buf a = {0}, b = {0}, c = {0}, d = {0};
    struct listing l;

    (void)state;
    build_ok("srv1", keys, 2, &a);
    build_ok("srv1", keys, 2, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);

    /* gzip header: magic, deflate, no flags (no name), no timestamp. */
    assert_true(a.len > 18);
    assert_int_equal((unsigned char)a.data[0], 0x1f);
    assert_int_equal((unsigned char)a.data[1], 0x8b);
    assert_int_equal(a.data[3], 0);
    assert_memory_equal(a.data + 4, "\0\0\0\0", 4);

    build_ok("srv1", other, 1, &c);
    assert_true(c.len != a.len || memcmp(c.data, a.data, a.len) != 0);
    build_ok("srv2", keys, 2, &d);
    assert_true(d.len != a.len || memcmp(d.data, a.data, a.len) != 0);

    /* SOURCE_DATE_EPOCH sets every mtime. */
    setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
    buf_reset(&c);
    build_ok("srv1", keys, 2, &c);
    unsetenv("SOURCE_DATE_EPOCH");
    read_back(&c, &l);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.m[i].mtime, 1700000000);
    listing_free(&l);

    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    buf_free(&d);
}

static void
assert_bad_key(const char *const *keys, size_t n, const char *want1,
               const char *want2)
{
    struct buf out = {0};
    char err[256] = "";

    assert_int_equal(
        overlay_build(skeleton, "srv1", keys, n, &out, err, sizeof(err)),
        -EINVAL);
    assert_int_equal(out.len, 0);
    assert_null(out.data);
    if (!strstr(err, want1) || !strstr(err, want2))
        fail_msg("error '%s' lacks '%s' or '%s'", err, want1, want2);
}

static void
test_bad_keys_refused(void **state)
{
    char *opt = xasprintf("command=\"/bin/sh\" %s", k.ed25519);
    char *mismatch = xasprintf("ssh-rsa %s", strchr(k.ed25519, ' ') + 1);
    char *nocomment = xstrdup(k.ed25519);
    char *broken = xstrdup(k.ed25519);

    (void)state;
    *strrchr(nocomment, ' ') = '\0';
    strchr(broken, ' ')[5] = '*';

    const char *small[] = {k.ed25519, k.rsa1024};
    assert_bad_key(small, 2, "key 2 (old@box)",
                   "RSA key is 1024 bits; at least 2048 required");
    const char *opts[] = {opt, k.ecdsa};
    assert_bad_key(opts, 2, "key 1 (alice@laptop)",
                   "options prefix not allowed");
    const char *mis[] = {k.ecdsa, k.ecdsa, mismatch};
    assert_bad_key(mis, 3, "key 3 (alice@laptop)", "does not match");
    const char *b64[] = {k.ecdsa, broken};
    assert_bad_key(b64, 2, "key 2 (alice@laptop)", "not valid base64");
    const char *nl[] = {"ssh-dss AAAAB3NzaC1kc3M= x\nssh-ed25519 AAAA"};
    assert_bad_key(nl, 1, "key 1", "line break");
    const char *dss[] = {"ssh-dss AAAAB3NzaC1kc3M="};
    assert_bad_key(dss, 1, "key 1: ", "unsupported key type 'ssh-dss'");
    assert_bad_key(NULL, 0, "no SSH key", "");

    free(opt);
    free(mismatch);
    free(nocomment);
    free(broken);
}

static void
test_bad_hostname_and_skeleton(void **state)
{
    const char *keys[] = {k.ed25519};
    const char *bad[] = {"",      "srv1\nevil", "-srv",  "srv-", "a..b",
                         "srv 1", "srv/1",      "srv1.", "sr_v1"};
    struct buf out = {0};
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            overlay_build(skeleton, bad[i], keys, 1, &out, err, sizeof(err)),
            -EINVAL);
        assert_non_null(strstr(err, "invalid hostname"));
    }
    /* The overlay takes exactly the server ids config takes (util.h's
     * grammar): config once took "db_1" and the overlay refused it. */
    const char *ids[] = {"db_1",     "db-1",  "Srv-1", "a",  "12h",
                         "infinite", "srv.1", "-a",    "a-", "x9"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        assert_int_equal(overlay_hostname_valid(ids[i]), id_valid(ids[i]));
    assert_int_equal(overlay_build("/nonexistent/skel", "srv1", keys, 1, &out,
                                   err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/skel"));
    assert_int_equal(out.len, 0);
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A skeleton carrying files the overlay must not take from it. */
static void
test_skeleton_files_overridden(void **state)
{
    const char *keys[] = {k.ed25519};
    char *skel = xasprintf("%s/skel", k.dir), *p;
    struct buf out = {0};
    struct listing l;

    (void)state;
    p = xasprintf("%s/etc", skel);
    mkdir(skel, 0755);
    mkdir(p, 0755);
    free(p);
    p = xasprintf("%s/etc/.default_boot_services", skel);
    write_text(p, "");
    free(p);
    p = xasprintf("%s/etc/hostname", skel);
    write_text(p, "skeleton\n");
    free(p);
    p = xasprintf("%s/README.md", skel);
    write_text(p, "# skel\n");
    free(p);
    p = xasprintf("%s/etc/local.sh", skel);
    write_text(p, "#!/bin/sh\n");
    chmod(p, 0700);
    free(p);

    assert_int_equal(overlay_build(skel, "srv9", keys, 1, &out, NULL, 0), 0);
    read_back(&out, &l);
    assert_null(find(&l, "etc/.default_boot_services"));
    assert_null(find(&l, "README.md"));
    assert_string_equal(must_find(&l, "etc/hostname")->data, "srv9\n");
    assert_int_equal(must_find(&l, "etc/local.sh")->perm, 0755);
    listing_free(&l);
    buf_free(&out);
    free(skel);
}

/* What Alpine's init does with it: tar -zxvf as root, over /. */
static void
test_real_tar_reads_it(void **state)
{
    const char *keys[] = {k.ed25519};
    char *tgz = xasprintf("%s/srv1.tar.gz", k.dir);
    char *root = xasprintf("%s/root", k.dir);
    char *cmd, *listing, *p;
    struct buf out = {0};
    struct stat st;
    FILE *f;

    (void)state;
    build_ok("srv1", keys, 1, &out);
    f = fopen(tgz, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(out.data, 1, out.len, f), out.len);
    fclose(f);

    cmd =
        xasprintf("gzip -t %s 2>&1 && LC_ALL=C TZ=UTC tar -tzvf %s", tgz, tgz);
    p = run_capture(cmd);
    free(cmd);
    assert_non_null(p);
    listing = xasprintf("%s\n", p); /* every line ends in a newline */
    free(p);
    assert_null(strstr(listing, "trailing garbage"));
    assert_non_null(strstr(listing, "drwx------ root/root         0 "
                                    "1970-01-01 00:00 root/\n"));
    assert_non_null(strstr(listing, "-rw------- root/root"));
    assert_non_null(strstr(listing, " root/.ssh/authorized_keys\n"));
    assert_non_null(strstr(listing, "lrwxrwxrwx root/root         0 "
                                    "1970-01-01 00:00 "
                                    "etc/runlevels/default/sshd -> "
                                    "/etc/init.d/sshd\n"));
    assert_non_null(strstr(listing, " etc/runlevels/boot/networking -> "
                                    "/etc/init.d/networking\n"));
    assert_null(strstr(listing, ":00 /")); /* no absolute path */
    free(listing);

    mkdir(root, 0755);
    cmd = xasprintf("tar -C %s -zxf %s", root, tgz);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    p = xasprintf("%s/root/.ssh", root);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    free(p);
    p = xasprintf("%s/root/.ssh/authorized_keys", root);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    free(p);
    p = xasprintf("%s/etc/runlevels/default/sshd", root);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    free(p);

    buf_free(&out);
    free(root);
    free(tgz);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_and_generated_files),
        cmocka_unit_test(test_paths_owners_order),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_bad_keys_refused),
        cmocka_unit_test(test_bad_hostname_and_skeleton),
        cmocka_unit_test(test_skeleton_files_overridden),
        cmocka_unit_test(test_real_tar_reads_it),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
