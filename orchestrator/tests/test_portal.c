/* The portal's face in-process: its files from [ui] dir (types, ETag,
 * no listing, no way out of the directory) and the sign-in: the cookie's
 * attributes, the API accepting it like the token, the CSRF header on
 * every change, a project's session seeing its own servers only, the live
 * list stream, sign-out and a revoked token. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api.h"
#include "config.h"
#include "fleet.h"
#include "http.h"
#include "loop.h"
#include "portal.h"
#include "session.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpclient.h"
#include "fleetenv.h"

#define ACME "acme-secret-0123456789"
#define OTHER "other-secret-0123456789"
#define SERVERS                                                                \
    "[server:srv1]\n"                                                          \
    "mac = 52:54:00:00:00:01\n"                                                \
    "project = acme\n"                                                         \
    "power = manual:\n"                                                        \
    "[server:srv2]\n"                                                          \
    "mac = 52:54:00:00:00:02\n"                                                \
    "project = other\n"                                                        \
    "power = manual:\n"

static void
put(const char *dir, const char *name, const char *text)
{
    char *p = xasprintf("%s/%s", dir, name);
    assert_int_equal(write_file_atomic(p, text, strlen(text), 0644), 0);
    free(p);
}

#define KEY                                                                    \
    "ssh-ed25519 "                                                             \
    "AAAAC3NzaC1lZDI1NTE5AAAAIL/8vzGNCpIQIPK+p7NoM73ZDLWF6tZAb3DPdMsVH8Ks "    \
    "test@portal"

static char *
sections(const char *dir, const char *acme_token)
{
    return xasprintf("[ui]\ndir = %s/ui\nsession_ttl = 1h\n"
                     "[project:acme]\ntoken = %s\nkeys_file = %s/acme.keys\n"
                     "[project:other]\ntoken = " OTHER "\n" SERVERS,
                     dir, acme_token, dir);
}

static int
setup(void **state)
{
    struct env *e = env_dir_new("x");
    char *ui = xasprintf("%s/ui", e->dir), *assets = xasprintf("%s/assets", ui);
    assert_int_equal(mkdir(ui, 0755), 0);
    assert_int_equal(mkdir(assets, 0755), 0);
    put(ui, "index.html", "<!doctype html><title>rescued</title>");
    put(assets, "app.js", "console.log(1)");
    put(assets, "app.css", "body{}");
    put(assets, "notes.unknown", "x");
    put(e->dir, "secret.js", "the secret");
    put(e->dir, "acme.keys", "# acme's keys\n" KEY "\n");
    char *sub = xasprintf("%s/dir.js", assets);
    assert_int_equal(mkdir(sub, 0755), 0);
    char *link = xasprintf("%s/link.js", assets);
    assert_int_equal(symlink("../../secret.js", link), 0);
    free(sub);
    free(link);
    free(assets);
    free(ui);
    char *secs = sections(e->dir, ACME);
    env_start(e, NULL, secs);
    free(secs);
    e->http = hc_serve(e->loop);
    api_register(e->http, e->fleet);
    portal_register(e->http, e->fleet);
    *state = e;
    return 0;
}

/* A header's value in a response ("" when absent), copied to out. */
static const char *
header_of(const struct resp *r, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    char *pat = xasprintf("\n%s: ", name);
    const char *h = r->headers.data ? strcasestr(r->headers.data, pat) : NULL;
    if (h) {
        h += strlen(pat);
        size_t n = strcspn(h, "\r\n");
        snprintf(out, len, "%.*s", (int)n, h);
    }
    free(pat);
    return out;
}

static void
expect_file(const char *path, const char *type, const char *body)
{
    struct resp r;
    char v[256];
    http(&(struct call){"GET", path}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Content-Type", v, sizeof(v)), type);
    assert_string_equal(r.body.data, body);
    assert_string_equal(header_of(&r, "X-Content-Type-Options", v, sizeof(v)),
                        "nosniff");
    assert_string_equal(header_of(&r, "Cache-Control", v, sizeof(v)),
                        "no-cache");
    resp_clear(&r);
}

static void
test_files(void **state)
{
    (void)state;
    expect_file("/", "text/html; charset=utf-8",
                "<!doctype html><title>rescued</title>");
    expect_file("/assets/app.js", "text/javascript; charset=utf-8",
                "console.log(1)");
    expect_file("/assets/app.css", "text/css; charset=utf-8", "body{}");

    struct resp r;
    char v[512];
    http(&(struct call){"GET", "/"}, &r);
    assert_non_null(
        strstr(header_of(&r, "Content-Security-Policy", v, sizeof(v)),
               "default-src 'self'"));
    resp_clear(&r);

    /* Revalidation: the ETag answers 304 with no body; HEAD, no body. */
    http(&(struct call){"GET", "/assets/app.js"}, &r);
    char etag[80], *inm;
    header_of(&r, "ETag", etag, sizeof(etag));
    assert_true(strlen(etag) > 2 && etag[0] == '"');
    resp_clear(&r);
    inm = xasprintf("If-None-Match: %s", etag);
    http(&(struct call){"GET", "/assets/app.js", NULL, NULL, NULL, false, inm},
         &r);
    assert_int_equal(r.status, 304);
    assert_true(r.body.len == 0);
    resp_clear(&r);
    free(inm);
    http(&(struct call){"GET", "/assets/app.js", NULL, NULL, NULL, false,
                        "If-None-Match: \"0-0\""},
         &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    http(&(struct call){"HEAD", "/assets/app.js"}, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.body.len == 0);
    resp_clear(&r);

    /* A file changed is a new version. */
    char *p = xasprintf("%s/ui/assets/app.js", E->dir);
    assert_int_equal(write_file_atomic(p, "console.log(22)", 15, 0644), 0);
    free(p);
    http(&(struct call){"GET", "/assets/app.js"}, &r);
    assert_string_not_equal(header_of(&r, "ETag", v, sizeof(v)), etag);
    assert_string_equal(r.body.data, "console.log(22)");
    resp_clear(&r);
}

static void
test_files_refused(void **state)
{
    (void)state;
    const char *paths[] = {
        "/assets/",        /* no listing */
        "/assets",         /* nor of the directory itself */
        "/assets/dir.js",  /* a directory named like a file */
        "/assets/link.js", /* a symlink out of the directory */
        "/assets/../../secret.js",
        "/assets/%2e%2e%2fsecret.js",
        "/assets/..%2f..%2fsecret.js",
        "/assets/.hidden.js",
        "/assets/nope.js",       /* missing */
        "/assets/notes.unknown", /* a type we do not serve */
        "/index.html/x",
        "/secret.js",
        "/assets/app.js%00.css",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct resp r;
        http(&(struct call){"GET", paths[i]}, &r);
        if (r.status != 404)
            fail_msg("%s: %ld, not 404", paths[i], r.status);
        if (r.body.data && strstr(r.body.data, "secret"))
            fail_msg("%s: leaked the file", paths[i]);
        resp_clear(&r);
    }
    expect_error(&(struct call){"POST", "/assets/app.js", NULL, NULL, "{}"},
                 405, "method_not_allowed");
}

/* A missing index.html says where it was looked for. */
static void
test_not_installed(void **state)
{
    (void)state;
    char *p = xasprintf("%s/ui/index.html", E->dir);
    assert_int_equal(unlink(p), 0);
    free(p);
    struct resp r;
    http(&(struct call){"GET", "/"}, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(jstr(r.json, "error"), "not installed"));
    assert_non_null(strstr(jstr(r.json, "error"), "/ui"));
    resp_clear(&r);
}

struct signin {
    char cookie[128]; /* "Cookie: rescued_session=..." */
    char csrf[128];   /* "X-CSRF-Token: ..." */
    char set_cookie[256];
};

static void
sign_in(const char *token, struct signin *s)
{
    struct resp r;
    char *body = xasprintf("{\"token\":\"%s\"}", token);
    http(&(struct call){"POST", "/v1/session", NULL, NULL, body}, &r);
    free(body);
    assert_int_equal(r.status, 201);
    header_of(&r, "Set-Cookie", s->set_cookie, sizeof(s->set_cookie));
    size_t n = strcspn(s->set_cookie, ";");
    snprintf(s->cookie, sizeof(s->cookie), "Cookie: %.*s", (int)n,
             s->set_cookie);
    assert_non_null(jstr(r.json, "csrf_token"));
    snprintf(s->csrf, sizeof(s->csrf), SESSION_CSRF_HEADER ": %s",
             jstr(r.json, "csrf_token"));
    /* The token itself is nowhere in the answer. */
    assert_null(strstr(r.body.data, token));
    assert_null(strstr(r.headers.data, token));
    resp_clear(&r);
}

static void
test_sign_in(void **state)
{
    (void)state;
    struct signin s;
    sign_in(ACME, &s);
    assert_non_null(strstr(s.set_cookie, SESSION_COOKIE "="));
    assert_non_null(strstr(s.set_cookie, "HttpOnly"));
    assert_non_null(strstr(s.set_cookie, "SameSite=Strict"));
    assert_non_null(strstr(s.set_cookie, "Max-Age=3600"));
    assert_non_null(strstr(s.set_cookie, "Path=/"));
    /* Plain HTTP here: a Secure cookie would never come back. */
    assert_null(strstr(s.set_cookie, "Secure"));

    struct resp r;
    http(
        &(struct call){"GET", "/v1/session", NULL, NULL, NULL, false, s.cookie},
        &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "role"), "project");
    assert_string_equal(jstr(r.json, "project"), "acme");
    assert_string_equal(jstr(r.json, "csrf_token"),
                        s.csrf + strlen(SESSION_CSRF_HEADER ": "));
    resp_clear(&r);

    expect_error(&(struct call){"POST", "/v1/session", NULL, NULL,
                                "{\"token\":\"nope\"}"},
                 401, "unauthorized");
    expect_error(
        &(struct call){"POST", "/v1/session", NULL, NULL, "{\"token\":\"\"}"},
        401, "unauthorized");
    expect_error(
        &(struct call){"POST", "/v1/session", NULL, NULL, "{\"token\":1}"}, 400,
        "bad_request");
    expect_error(&(struct call){"POST", "/v1/session", NULL, NULL,
                                "{\"token\":\"" ACME "\",\"x\":1}"},
                 400, "bad_request");
    expect_error(&(struct call){"GET", "/v1/session"}, 401, "unauthorized");
    assert_int_equal(session_count(fleet_sessions(E->fleet)), 1);

    struct signin a;
    sign_in(ADMIN, &a);
    http(
        &(struct call){"GET", "/v1/session", NULL, NULL, NULL, false, a.cookie},
        &r);
    assert_string_equal(jstr(r.json, "role"), "admin");
    assert_true(json_is_null(json_object_get(r.json, "project")));
    resp_clear(&r);
}

static size_t
servers_in(const struct resp *r)
{
    return json_array_size(json_object_get(r->json, "servers"));
}

/* The cookie is the token: a project's session sees its servers only. */
static void
test_cookie_is_the_token(void **state)
{
    (void)state;
    struct signin s;
    sign_in(ACME, &s);
    struct resp r;
    http(
        &(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false, s.cookie},
        &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(servers_in(&r), 1);
    assert_string_equal(
        jstr(json_array_get(json_object_get(r.json, "servers"), 0), "id"),
        "srv1");
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/v1/servers/srv2", NULL, NULL, NULL,
                                false, s.cookie},
                 404, "not_found");
    expect_error(&(struct call){"POST", "/v1/servers/srv2/actions", NULL, NULL,
                                "{\"type\":\"reboot\"}", false, s.cookie,
                                s.csrf},
                 404, "not_found");
    /* A made-up session is no one. */
    expect_error(&(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false,
                                "Cookie: " SESSION_COOKIE
                                "=00000000000000000000000000000000000000000000"
                                "00000000000000000000"},
                 401, "unauthorized");
    /* The token beside the cookie wins (rescuectl never sends cookies). */
    http(&(struct call){"GET", "/v1/servers", OTHER, NULL, NULL, false,
                        s.cookie},
         &r);
    assert_int_equal(servers_in(&r), 1);
    assert_string_equal(
        jstr(json_array_get(json_object_get(r.json, "servers"), 0), "id"),
        "srv2");
    resp_clear(&r);
}

static void
test_csrf(void **state)
{
    (void)state;
    struct signin s, o;
    sign_in(ACME, &s);
    sign_in(ACME, &o);
    const char *reboot = "{\"type\":\"reboot\"}";
    expect_error(&(struct call){"POST", "/v1/servers/srv1/actions", NULL, NULL,
                                reboot, false, s.cookie},
                 403, "forbidden");
    /* Another session's CSRF token is not this one's. */
    expect_error(&(struct call){"POST", "/v1/servers/srv1/actions", NULL, NULL,
                                reboot, false, s.cookie, o.csrf},
                 403, "forbidden");
    expect_error(&(struct call){"POST", "/v1/servers/srv1/actions", NULL, NULL,
                                reboot, false, s.cookie,
                                SESSION_CSRF_HEADER ": "},
                 403, "forbidden");
    /* Nothing happened: still active, no reboot in the timeline. */
    struct resp r;
    http(&(struct call){"GET", "/v1/servers/srv1/events", ADMIN}, &r);
    assert_null(strstr(r.body.data, "reboot requested"));
    resp_clear(&r);
    http(&(struct call){"POST", "/v1/servers/srv1/actions", NULL, NULL, reboot,
                        false, s.cookie, s.csrf},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    /* Reads need no CSRF header. */
    http(&(struct call){"GET", "/v1/servers/srv1/events", NULL, NULL, NULL,
                        false, s.cookie},
         &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "reboot requested"));
    assert_non_null(strstr(r.body.data, "project:acme"));
    resp_clear(&r);
}

static void
test_sign_out(void **state)
{
    (void)state;
    struct signin s, t;
    sign_in(ACME, &s);
    sign_in(ACME, &t);
    /* Sign-out is a change: without the header it is refused. */
    expect_error(&(struct call){"DELETE", "/v1/session", NULL, NULL, NULL,
                                false, s.cookie},
                 403, "forbidden");
    struct resp r;
    http(&(struct call){"DELETE", "/v1/session", NULL, NULL, NULL, false,
                        s.cookie, s.csrf},
         &r);
    assert_int_equal(r.status, 200);
    char v[256];
    header_of(&r, "Set-Cookie", v, sizeof(v));
    assert_non_null(strstr(v, SESSION_COOKIE "=;"));
    assert_non_null(strstr(v, "Max-Age=0"));
    resp_clear(&r);
    expect_error(
        &(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false, s.cookie},
        401, "unauthorized");
    expect_error(
        &(struct call){"GET", "/v1/session", NULL, NULL, NULL, false, s.cookie},
        401, "unauthorized");
    expect_error(&(struct call){"DELETE", "/v1/session", NULL, NULL, NULL,
                                false, s.cookie, s.csrf},
                 401, "unauthorized");
    /* The other tab's session goes on. */
    http(
        &(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false, t.cookie},
        &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
}

/* A reload that changes the project's token ends its sessions. */
static void
test_revoked_token(void **state)
{
    (void)state;
    struct signin s;
    sign_in(ACME, &s);
    char *secs = sections(E->dir, "acme-new-secret-0123456789");
    fleet_reload(E->fleet, env_config(E, NULL, secs));
    free(secs);
    expect_error(
        &(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false, s.cookie},
        401, "unauthorized");
}

/* rescued stopped and started again on the same data dir, with this
 * config's sections (NULL: the setup's). */
static void
restart(struct env *e, const char *secs)
{
    hc_stop();
    env_stop(e);
    char *mine = secs ? NULL : sections(e->dir, ACME);
    env_start(e, NULL, secs ? secs : mine);
    free(mine);
    e->http = hc_serve(e->loop);
    api_register(e->http, e->fleet);
    portal_register(e->http, e->fleet);
}

static int
count_row(void *arg, const struct store_session *ps)
{
    (void)ps;
    (*(int *)arg)++;
    return 0;
}

/* The sessions in the store, expired or not. */
static int
stored_sessions(void)
{
    int n = 0;
    assert_int_equal(store_session_list(E->st, 0, count_row, &n), 0);
    return n;
}

/* Does the data dir's database (or its WAL) hold these bytes? */
static bool
db_holds(const char *text)
{
    bool found = false;
    const char *files[] = {"rescued.db", "rescued.db-wal"};
    for (size_t i = 0; i < 2; i++) {
        char *path = xasprintf("%s/data/%s", E->dir, files[i]), *data = NULL;
        size_t len = 0;
        if (read_file(path, &data, &len) == 0 && len &&
            memmem(data, len, text, strlen(text)))
            found = true;
        free(data);
        free(path);
    }
    return found;
}

static void
expect_servers(const struct signin *s, int status)
{
    struct resp r;
    http(&(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false,
                        s->cookie},
         &r);
    assert_int_equal(r.status, status);
    resp_clear(&r);
}

/* A restart signs no one out: the cookie and its CSRF token go on, as
 * the same project; the store holds hashes, never the id or the token.
 * A signed-out session stays signed out after one. */
static void
test_sessions_survive_restart(void **state)
{
    struct env *e = *state;
    struct signin s, a, out;
    sign_in(ACME, &s);
    sign_in(ADMIN, &a);
    sign_in(ACME, &out);
    struct resp r;
    http(&(struct call){"DELETE", "/v1/session", NULL, NULL, NULL, false,
                        out.cookie, out.csrf},
         &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    assert_int_equal(stored_sessions(), 2);
    const char *id = s.cookie + strlen("Cookie: " SESSION_COOKIE "=");
    char hash[SESSION_HASH_LEN + 1];
    session_hash(id, hash);
    assert_true(db_holds(hash));
    assert_false(db_holds(id));
    assert_false(db_holds(ACME));
    assert_false(db_holds(ADMIN));

    restart(e, NULL);
    assert_int_equal(session_count(fleet_sessions(E->fleet)), 2);
    http(
        &(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false, s.cookie},
        &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(servers_in(&r), 1); /* still acme's, not more */
    resp_clear(&r);
    http(
        &(struct call){"GET", "/v1/session", NULL, NULL, NULL, false, a.cookie},
        &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "role"), "admin");
    resp_clear(&r);
    /* The CSRF token was kept too: a change goes through. */
    http(&(struct call){"POST", "/v1/servers/srv1/actions", NULL, NULL,
                        "{\"type\":\"reboot\"}", false, s.cookie, s.csrf},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    expect_servers(&out, 401);

    /* Signed out, then restarted: still out, and gone from the store. */
    http(&(struct call){"DELETE", "/v1/session", NULL, NULL, NULL, false,
                        s.cookie, s.csrf},
         &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    assert_int_equal(stored_sessions(), 1);
    restart(e, NULL);
    expect_servers(&s, 401);
    expect_servers(&a, 200);
    assert_int_equal(stored_sessions(), 1);
}

/* An expired session is not restored, and a restart deletes it. */
static void
test_expired_session_deleted(void **state)
{
    struct env *e = *state;
    char id[SESSION_ID_LEN + 1], hash[SESSION_HASH_LEN + 1],
        thash[SESSION_HASH_LEN + 1], csrf[SESSION_ID_LEN + 1];
    memset(id, '7', SESSION_ID_LEN);
    id[SESSION_ID_LEN] = '\0';
    memset(csrf, 'c', SESSION_ID_LEN);
    csrf[SESSION_ID_LEN] = '\0';
    session_hash(id, hash);
    session_hash(ACME, thash);
    struct store_session ps = {hash, thash, csrf, "acme", now_wall_ms() - 1};
    assert_int_equal(store_session_add(E->st, &ps), 0);
    /* The same row with a live expiry would have worked: */
    char hash2[SESSION_HASH_LEN + 1], id2[SESSION_ID_LEN + 1];
    memset(id2, '8', SESSION_ID_LEN);
    id2[SESSION_ID_LEN] = '\0';
    session_hash(id2, hash2);
    struct store_session live = {hash2, thash, csrf, "acme",
                                 now_wall_ms() + 3600000};
    assert_int_equal(store_session_add(E->st, &live), 0);
    assert_int_equal(stored_sessions(), 2);
    restart(e, NULL);
    assert_int_equal(stored_sessions(), 1);
    struct signin old = {0}, ok = {0};
    snprintf(old.cookie, sizeof(old.cookie), "Cookie: " SESSION_COOKIE "=%s",
             id);
    snprintf(ok.cookie, sizeof(ok.cookie), "Cookie: " SESSION_COOKIE "=%s",
             id2);
    expect_servers(&old, 401);
    expect_servers(&ok, 200);
}

/* A reload that removes a project ends its sessions, in the store too:
 * a restart does not bring them back. */
static void
test_project_removed_ends_sessions(void **state)
{
    struct env *e = *state;
    struct signin o, s;
    sign_in(OTHER, &o);
    sign_in(ACME, &s);
    char *secs = xasprintf("[ui]\ndir = %s/ui\nsession_ttl = 1h\n"
                           "[project:acme]\ntoken = " ACME "\n"
                           "[server:srv1]\nmac = 52:54:00:00:00:01\n"
                           "project = acme\npower = manual:\n",
                           e->dir);
    fleet_reload(E->fleet, env_config(E, NULL, secs));
    expect_servers(&o, 401);
    expect_servers(&s, 200);
    assert_int_equal(stored_sessions(), 1);
    restart(e, secs);
    expect_servers(&o, 401);
    expect_servers(&s, 200);
    free(secs);
}

/* GET /v1/events: the list's live stream, the project's servers only. */
static void
test_list_stream(void **state)
{
    (void)state;
    struct signin s;
    sign_in(ACME, &s);
    struct hc_stream sse;
    assert_true(hc_stream_open(
        &sse,
        &(struct call){"GET", "/v1/events", NULL, NULL, NULL, false, s.cookie},
        ": rescued events"));
    struct resp r;
    http(&(struct call){"POST", "/v1/servers/srv2/actions", OTHER, NULL,
                        "{\"type\":\"reboot\"}"},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    http(&(struct call){"POST", "/v1/servers/srv1/actions", ACME, NULL,
                        "{\"type\":\"reboot\"}"},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    assert_true(
        tu_until_text(3000, &sse.r.body, "\"server\":\"srv1\"", hc_turn, NULL));
    assert_null(strstr(sse.r.body.data, "srv2"));
    hc_stream_close(&sse);
}

/* The Rescue dialog's keys: the project's, and a check of pasted ones. */
static void
test_keys(void **state)
{
    (void)state;
    struct signin s;
    sign_in(ACME, &s);
    struct resp r;
    http(&(struct call){"GET", "/v1/servers/srv1/keys", NULL, NULL, NULL, false,
                        s.cookie},
         &r);
    assert_int_equal(r.status, 200);
    json_t *keys = json_object_get(r.json, "keys");
    assert_int_equal(json_array_size(keys), 1);
    json_t *k = json_array_get(keys, 0);
    assert_string_equal(jstr(k, "type"), "ssh-ed25519");
    assert_string_equal(jstr(k, "comment"), "test@portal");
    assert_true(strncmp(jstr(k, "fingerprint"), "SHA256:", 7) == 0);
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/v1/servers/srv2/keys", NULL, NULL,
                                NULL, false, s.cookie},
                 404, "not_found");
    /* srv2's project has no keys file: none. */
    http(&(struct call){"GET", "/v1/servers/srv2/keys", OTHER}, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "keys")), 0);
    resp_clear(&r);

    const char *body = "{\"ssh_keys\":[\"" KEY "\", \"ssh-ed25519 AAAAnope "
                       "x\", \"ssh-dss AAAAB3NzaC1kc3MAAACBAP x\", 7]}";
    expect_error(&(struct call){"POST", "/v1/keys/check", NULL, NULL, body,
                                false, s.cookie},
                 403, "forbidden");
    http(&(struct call){"POST", "/v1/keys/check", NULL, NULL, body, false,
                        s.cookie, s.csrf},
         &r);
    assert_int_equal(r.status, 200);
    keys = json_object_get(r.json, "keys");
    assert_int_equal(json_array_size(keys), 4);
    assert_true(json_is_true(json_object_get(json_array_get(keys, 0), "ok")));
    for (size_t i = 1; i < 4; i++) {
        json_t *bad = json_array_get(keys, i);
        assert_true(json_is_false(json_object_get(bad, "ok")));
        assert_non_null(jstr(bad, "error"));
    }
    assert_non_null(strstr(jstr(json_array_get(keys, 2), "error"), "ssh-dss"));
    resp_clear(&r);
    expect_error(&(struct call){"POST", "/v1/keys/check", NULL, NULL,
                                "{\"keys\":1}", false, s.cookie, s.csrf},
                 400, "bad_request");
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, env_face_teardown)
    const struct CMUnitTest tests[] = {
        T(test_files),
        T(test_files_refused),
        T(test_not_installed),
        T(test_sign_in),
        T(test_cookie_is_the_token),
        T(test_csrf),
        T(test_sign_out),
        T(test_revoked_token),
        T(test_list_stream),
        T(test_keys),
        T(test_sessions_survive_restart),
        T(test_expired_session_deleted),
        T(test_project_removed_ends_sessions),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
