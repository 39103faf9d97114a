/* A fleet in a temp dir, for the tests of fleet and of its faces
 * (test_fleet, test_api, test_bootpath, test_console_session): the image
 * files, an ini of the common [rescued] and [image] sections plus the
 * caller's, and a loop, a store and a fleet on it.  With httpclient.h
 * included first, env_face_new also serves a face on http there, with HC
 * pointed at it.  The dir is /tmp/<test binary>.XXXXXX.  Nothing here
 * blocks but the files it writes; a failure fails the test.  Include
 * after cmocka.h, config.h, fleet.h, store.h and testutil.h. */
#ifndef RESCUED_TEST_FLEETENV_H
#define RESCUED_TEST_FLEETENV_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define ADMIN "admin-secret-0123456789"

struct env {
    char *dir;
    struct loop *loop;
    struct store *st;
    struct fleet *fleet;
    struct http *http; /* env_face_new's, or NULL */
};

/* The one env_new made last, for helpers that take no argument. */
static struct env *E;

/* e->dir with the image files the rescue pre-flight wants (kernel: the
 * kernel's bytes; the initrd holds "x"); nothing loaded yet. */
static inline struct env *
env_dir_new(const char *kernel)
{
    struct env *e = xcalloc(1, sizeof(*e));
    e->dir = tu_tmpdir_new(program_invocation_short_name);
    assert_non_null(e->dir);
    const char *files[] = {"vmlinuz", "initrd"};
    const char *bytes[] = {kernel, "x"};
    for (size_t i = 0; i < 2; i++) {
        char *f = xasprintf("%s/%s", e->dir, files[i]);
        assert_int_equal(write_file_atomic(f, bytes[i], strlen(bytes[i]), 0644),
                         0);
        free(f);
    }
    return e;
}

/* Write e->dir/rescued.ini (the common [rescued] lines, then rescued's,
 * [image], then sections: the projects and servers; both may be NULL) and
 * load it. */
static inline struct config *
env_config(const struct env *e, const char *rescued, const char *sections)
{
    char *ini = xasprintf("%s/rescued.ini", e->dir);
    char *text = xasprintf("[rescued]\n"
                           "listen = 127.0.0.1:8080\n"
                           "boot_url = http://127.0.0.1:8080\n"
                           "data_dir = %s/data\n"
                           "admin_token = " ADMIN "\n"
                           "log_level = error\n"
                           "max_body = 1K\n"
                           "%s"
                           "[image]\n"
                           "kernel = %s/vmlinuz\n"
                           "initrd = %s/initrd\n"
                           "%s",
                           e->dir, rescued ? rescued : "", e->dir, e->dir,
                           sections ? sections : "");
    assert_int_equal(write_file_atomic(ini, text, strlen(text), 0600), 0);
    free(text);
    char err[512] = "";
    struct config *cfg = config_load(ini, err, sizeof(err));
    free(ini);
    if (!cfg)
        fail_msg("config: %s", err);
    return cfg;
}

/* Load the ini (as env_config) and start the loop, the store and the
 * fleet. */
static inline void
env_start(struct env *e, const char *rescued, const char *sections)
{
    struct config *cfg = env_config(e, rescued, sections);
    char err[512] = "";
    e->loop = loop_new();
    e->st = store_open(cfg->store, cfg->data_dir, err, sizeof(err));
    if (!e->st)
        fail_msg("store: %s", err);
    e->fleet = fleet_new(e->loop, cfg, e->st, err, sizeof(err));
    if (!e->fleet)
        fail_msg("fleet: %s", err);
    E = e;
}

/* Both, with no more [rescued] lines. */
static inline struct env *
env_new(const char *sections, const char *kernel)
{
    struct env *e = env_dir_new(kernel);
    env_start(e, NULL, sections);
    return e;
}

/* The daemon stopped (a restart's first half: env_start again on the same
 * dir is the second): the http, the fleet, the store, the loop. */
static inline void
env_stop(struct env *e)
{
    http_free(e->http);
    e->http = NULL;
    fleet_free(e->fleet);
    store_close(e->st);
    loop_free(e->loop);
}

/* The http, the fleet, the store, the loop, and the dir with all in it. */
static inline void
env_free(struct env *e)
{
    env_stop(e);
    assert_int_equal(tu_tmpdir_free(e->dir), 0);
    free(e);
    if (E == e)
        E = NULL;
}

#ifdef RESCUED_TEST_HTTPCLIENT_H
/* env_new, then http on its loop with HC pointed at it, and the face's
 * routes by reg (api_register, bootpath_register). */
static inline struct env *
env_face_new(const char *sections, const char *kernel,
             void (*reg)(struct http *, struct fleet *))
{
    struct env *e = env_new(sections, kernel);
    e->http = hc_serve(e->loop);
    reg(e->http, e->fleet);
    return e;
}

/* The cmocka teardown of an env_face_new in *state. */
static inline int
env_face_teardown(void **state)
{
    hc_stop();
    env_free(*state);
    return 0;
}
#endif

#endif
