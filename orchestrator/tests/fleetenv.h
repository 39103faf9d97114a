/* A fleet behind http for the tests of its faces (test_api,
 * test_bootpath): a temp dir with an ini of the common [rescued] and
 * [image] sections plus the caller's, the image files, a store, a fleet,
 * http on 127.0.0.1:0 and HC pointed at it.  The caller registers its
 * face.  Include after httpclient.h, config.h, fleet.h and store.h. */
#ifndef RESCUED_TEST_FLEETENV_H
#define RESCUED_TEST_FLEETENV_H

#include <ftw.h>
#include <sys/stat.h>

#define ADMIN "admin-secret"

struct env {
    char dir[64];
    struct loop *loop;
    struct store *st;
    struct fleet *fleet;
    struct http *http;
    CURLM *multi;
};

static struct env *E;

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* sections: the projects and servers; kernel: the kernel file's bytes. */
static struct env *
env_new(const char *sections, const char *kernel)
{
    struct env *e = xcalloc(1, sizeof(*e));
    strcpy(e->dir, "/tmp/test_face.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    char *ini = xasprintf("%s/rescued.ini", e->dir);
    char *text = xasprintf("[rescued]\n"
                           "listen = 127.0.0.1:8080\n"
                           "boot_url = http://127.0.0.1:8080\n"
                           "data_dir = %s/data\n"
                           "admin_token = " ADMIN "\n"
                           "log_level = error\n"
                           "max_body = 1K\n"
                           "[image]\n"
                           "kernel = %s/vmlinuz\n"
                           "initrd = %s/initrd\n"
                           "%s",
                           e->dir, e->dir, e->dir, sections);
    assert_int_equal(write_file_atomic(ini, text, strlen(text), 0600), 0);
    free(text);
    /* The rescue pre-flight wants the image files to exist. */
    const char *files[] = {"vmlinuz", "initrd"};
    const char *bytes[] = {kernel, "x"};
    for (size_t i = 0; i < 2; i++) {
        char *f = xasprintf("%s/%s", e->dir, files[i]);
        assert_int_equal(write_file_atomic(f, bytes[i], strlen(bytes[i]), 0644),
                         0);
        free(f);
    }
    char err[512] = "";
    struct config *cfg = config_load(ini, err, sizeof(err));
    free(ini);
    if (!cfg)
        fail_msg("config: %s", err);
    e->loop = loop_new();
    e->st = store_open(cfg->store, cfg->data_dir, err, sizeof(err));
    if (!e->st)
        fail_msg("store: %s", err);
    e->fleet = fleet_new(e->loop, cfg, e->st, err, sizeof(err));
    if (!e->fleet)
        fail_msg("fleet: %s", err);
    e->http = http_new(e->loop, "127.0.0.1:0", err, sizeof(err));
    if (!e->http)
        fail_msg("http: %s", err);
    assert_true(http_port(e->http) > 0);
    e->multi = curl_multi_init();
    HC.loop = e->loop;
    HC.multi = e->multi;
    HC.port = http_port(e->http);
    E = e;
    return e;
}

static void
env_free(struct env *e)
{
    curl_multi_cleanup(e->multi);
    http_free(e->http);
    fleet_free(e->fleet);
    store_close(e->st);
    loop_free(e->loop);
    nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
    E = NULL;
}

#endif
