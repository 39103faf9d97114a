/* portal: the portal's files and its sign-in (see portal.h).  Files are
 * looked up by one path segment that the router has already checked (id
 * characters and inner dots: no '/', no "..", no leading dot), opened
 * beneath the directory and served only when they are regular files. */
#include "portal.h"
#include "config.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "session.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
};

/* The page's policy: its own scripts and sockets only (xterm.js sets
 * inline styles). */
#define PORTAL_CSP                                                             \
    "default-src 'self'; script-src 'self'; style-src 'self' "                 \
    "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "              \
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

static const char *
type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return NULL;
}

const char *
portal_dir(const struct config *cfg)
{
    static char beside[PATH_MAX];
    if (cfg->ui_dir)
        return cfg->ui_dir;
    if (!beside[0]) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0) {
            strlcpy_s(beside, "ui", sizeof(beside));
        } else {
            exe[n] = '\0';
            snprintf(beside, sizeof(beside), "%.4000s/ui", dirname(exe));
        }
    }
    return beside;
}

/* Serve dir/name (name is one checked segment). */
static void
serve_file(struct http_req *r, struct fleet *f, const char *sub,
           const char *name)
{
    const char *type = type_of(name);
    if (!type) {
        http_respond_error(r, 404, "no such file");
        return;
    }
    const char *dir = portal_dir(fleet_config(f));
    char *path = xasprintf("%s%s/%s", dir, sub, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        if (!strcmp(name, "index.html"))
            http_respond_error(r, 404,
                               "the portal is not installed here (no "
                               "index.html in [ui] dir %s)",
                               dir);
        else
            http_respond_error(r, 404, "no such file");
        return;
    }
    /* Size and mtime name the version; the browser revalidates each time
     * (the names carry no hash) and mostly hears 304. */
    char etag[64];
    snprintf(etag, sizeof(etag), "\"%llx-%llx\"",
             (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ULL +
                 (unsigned long long)st.st_mtim.tv_nsec);
    const char *inm = http_req_header(r, "If-None-Match");
    bool fresh = inm && strstr(inm, etag);
    struct http_answer *a =
        http_answer_file(fd, 0, fresh ? 0 : (uint64_t)st.st_size, type);
    http_answer_header(a, "ETag", etag);
    http_answer_header(a, "Cache-Control", "no-cache");
    http_answer_header(a, "X-Content-Type-Options", "nosniff");
    if (!strcmp(name, "index.html")) {
        http_answer_header(a, "Content-Security-Policy", PORTAL_CSP);
        http_answer_header(a, "X-Frame-Options", "DENY");
        http_answer_header(a, "Referrer-Policy", "no-referrer");
    }
    http_respond(r, fresh ? 304 : 200, a);
}

static void
h_index(struct http_req *r, void *arg)
{
    serve_file(r, arg, "", "index.html");
}

static void
h_asset(struct http_req *r, void *arg)
{
    serve_file(r, arg, "/assets", http_req_cap(r, 0));
}

/* --- sign-in --- */

/* The session the request's cookie names, or NULL. */
static const struct session *
cookie_session(struct http_req *r, struct fleet *f)
{
    char id[SESSION_ID_LEN + 1];
    if (!session_cookie_id(http_req_header(r, "Cookie"), id))
        return NULL;
    return session_find(fleet_sessions(f), id, now_wall_ms());
}

/* Who a token is: "admin", a project's name into *project, or NULL. */
static const char *
token_role(const struct config *cfg, const char *tok, const char **project)
{
    *project = NULL;
    if (!tok || !*tok)
        return NULL;
    if (cfg->admin_token && token_equal(tok, cfg->admin_token))
        return "admin";
    const struct config_project *p = config_find_project_by_token(cfg, tok);
    if (!p)
        return NULL;
    *project = p->name;
    return "project";
}

/* The answer of POST and GET: the CSRF token and who this is. */
static json_t *
session_json(const struct session *s, const char *role, const char *project)
{
    char at[40];
    format_time_iso(s->expires_ms / 1000, at, sizeof(at));
    return json_pack("{s:s, s:s, s:s, s:o}", "csrf_token", s->csrf,
                     "expires_at", at, "role", role, "project",
                     project ? json_string(project) : json_null());
}

static void
set_cookie(struct http_req *r, struct http_answer *a, const char *id,
           long long max_age)
{
    char *c = xasprintf(SESSION_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; "
                                       "SameSite=Strict%s",
                        id, max_age, http_req_tls(r) ? "; Secure" : "");
    http_answer_header(a, "Set-Cookie", c);
    http_answer_header(a, "Cache-Control", "no-store");
    free(c);
}

static void
h_session_new(struct http_req *r, struct fleet *f)
{
    json_t *root = http_req_json(r);
    if (!root)
        return;
    const struct config *cfg = fleet_config(f);
    json_t *t = json_object_get(root, "token");
    if (!json_is_object(root) || !json_is_string(t) ||
        json_object_size(root) != 1) {
        json_decref(root);
        http_respond_error(r, 400, "the body must be {\"token\": \"...\"}");
        return;
    }
    const char *project;
    const char *role = token_role(cfg, json_string_value(t), &project);
    if (!role) {
        json_decref(root);
        http_respond_error(r, 401, "wrong token");
        return;
    }
    const struct session *s;
    char id[SESSION_ID_LEN + 1];
    int64_t ttl_ms = (int64_t)cfg->session_ttl * 1000;
    int rc =
        fleet_session_new(f, json_string_value(t), project, ttl_ms, id, &s);
    json_decref(root);
    if (rc < 0) {
        http_respond_error(r, 500, "cannot make a session: %s", strerror(-rc));
        return;
    }
    http_req_set_actor(r, project ? project : "admin");
    struct http_answer *a = http_answer_json(session_json(s, role, project));
    set_cookie(r, a, id, cfg->session_ttl);
    explicit_bzero(id, sizeof(id));
    http_respond(r, 201, a);
}

static void
h_session_get(struct http_req *r, struct fleet *f)
{
    const struct session *s = cookie_session(r, f);
    const char *project, *role = NULL;
    if (s)
        role = token_role(fleet_config(f), fleet_session_token(f, s), &project);
    if (!role) {
        http_respond_error(r, 401, "signed out, or the session expired");
        return;
    }
    struct http_answer *a = http_answer_json(session_json(s, role, project));
    http_answer_header(a, "Cache-Control", "no-store");
    http_respond(r, 200, a);
}

/* Sign-out changes something: it needs the CSRF header like any other
 * change made with the cookie (else a page elsewhere could sign one out). */
static void
h_session_end(struct http_req *r, struct fleet *f)
{
    const struct session *s = cookie_session(r, f);
    if (!s) {
        http_respond_error(r, 401, "signed out, or the session expired");
        return;
    }
    if (!session_csrf_ok(s, http_req_header(r, SESSION_CSRF_HEADER))) {
        http_respond_error(r, 403,
                           "missing or wrong " SESSION_CSRF_HEADER " header");
        return;
    }
    char id[SESSION_ID_LEN + 1];
    if (session_cookie_id(http_req_header(r, "Cookie"), id))
        session_delete(fleet_sessions(f), id); /* and from the store */
    struct http_answer *a =
        http_answer_json(json_pack("{s:b}", "signed_in", 0));
    set_cookie(r, a, "", 0);
    http_respond(r, 200, a);
}

static void
h_session(struct http_req *r, void *arg)
{
    unsigned m = http_req_method(r);
    if (m == HTTP_POST)
        h_session_new(r, arg);
    else if (m == HTTP_DELETE)
        h_session_end(r, arg);
    else
        h_session_get(r, arg);
}

static const struct http_route routes[] = {
    {"/", HTTP_GET | HTTP_HEAD, 0, NULL, h_index, NULL},
    {"/assets/{file}", HTTP_GET | HTTP_HEAD, 0, NULL, h_asset, NULL},
    {"/v1/session", HTTP_POST, HTTP_JSON_BODY, NULL, h_session, NULL},
    {"/v1/session", HTTP_GET | HTTP_DELETE, 0, NULL, h_session, NULL},
};

/* {"token": "..."} is all a sign-in holds. */
static size_t
portal_max_body(void *arg)
{
    (void)arg;
    return 4096;
}

void
portal_register(struct http *h, struct fleet *f)
{
    struct http_face face = {routes, sizeof(routes) / sizeof(routes[0]), f,
                             portal_max_body};
    http_add_face(h, &face);
}
