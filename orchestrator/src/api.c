/* api: the authenticated /v1 handlers on http: the servers, one server,
 * its actions, its events (as JSON, or live as Server-Sent Events), its
 * console log; /healthz and /metrics; and who a Bearer token is (the
 * admin, or a project that sees its own servers only).  See
 * docs/design.md for the contract.  The store's reads here (the history,
 * an event stream's pages) are asked without waiting, the request parked
 * (http_wait) or the stream's state kept until the store answers. */
#include "api.h"
#include "config.h"
#include "console.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "power.h"
#include "session.h"
#include "sshkey.h"
#include "openapi.h"
#include "loop.h"
#include "recording.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tests shorten the keepalive to watch a dead client being noticed. */
#ifdef UNITTEST
int api_sse_keepalive_ms = 15000;
#else
static const int api_sse_keepalive_ms = 15000;
#endif
#define EVENTS_LIMIT_DEFAULT 1000
#define EVENTS_LIMIT_MAX 1000

/* Who is calling: the admin, or a project (project != NULL). */
struct caller {
    bool admin;
    char *project;
    char *actor; /* "admin" or "project:NAME" */
};

static void
caller_free(void *p)
{
    struct caller *c = p;
    free(c->project);
    free(c->actor);
    free(c);
}

/* The caller that authenticate() found (every /v1 route has it). */
static const struct caller *
who(struct http_req *r)
{
    return http_req_data(r);
}

/* --- who is calling --- */

/* The caller of a token, or NULL. */
static struct caller *
caller_of(const struct config *cfg, const char *h)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return NULL;
    struct caller *c = xcalloc(1, sizeof(*c));
    if (cfg->admin_token && token_equal(tok, cfg->admin_token)) {
        c->admin = true;
        c->actor = xstrdup("admin");
        return c;
    }
    const struct config_project *p = config_find_project_by_token(cfg, tok);
    if (!p) {
        free(c);
        return NULL;
    }
    c->project = xstrdup(p->name);
    c->actor = xasprintf("project:%s", p->name);
    return c;
}

/* The portal's cookie: the caller of the session's token, as the config
 * has it now (a reload that revokes the token ends the session; the
 * session keeps only the token's hash, fleet_session_token).  A
 * request that changes something must carry the session's CSRF token too,
 * which a page of another site cannot read; else 403.  NULL once it
 * answered. */
static struct caller *
caller_of_cookie(struct http_req *r, struct fleet *f, const char *cookie)
{
    char id[SESSION_ID_LEN + 1];
    const struct session *s = NULL;
    struct caller *c = NULL;
    if (session_cookie_id(cookie, id))
        s = session_find(fleet_sessions(f), id, now_wall_ms());
    const char *tok = s ? fleet_session_token(f, s) : NULL;
    if (tok) {
        char *h = xasprintf("Bearer %s", tok);
        c = caller_of(fleet_config(f), h);
        explicit_bzero(h, strlen(h));
        free(h);
    }
    if (!c) {
        http_respond_error(r, 401, "signed out, or the session expired");
        return NULL;
    }
    if (!(http_req_method(r) & (HTTP_GET | HTTP_HEAD)) &&
        !session_csrf_ok(s, http_req_header(r, SESSION_CSRF_HEADER))) {
        caller_free(c);
        http_respond_error(r, 403,
                           "missing or wrong " SESSION_CSRF_HEADER " header");
        return NULL;
    }
    return c;
}

/* The check of every /v1 route: the Authorization header names a caller
 * (without one, the portal's session cookie does), or the answer is 401. */
static bool
authenticate(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const char *authz = http_req_header(r, "Authorization");
    const char *cookie = http_req_header(r, "Cookie");
    struct caller *c;
    if (!authz && cookie && strstr(cookie, SESSION_COOKIE "=")) {
        if (!(c = caller_of_cookie(r, f, cookie)))
            return false;
    } else {
        c = caller_of(fleet_config(f), authz);
    }
    if (!c) {
        http_respond_error(
            r, 401, "missing or wrong token (Authorization: Bearer TOKEN)");
        return false;
    }
    http_req_set_data(r, c, caller_free);
    http_req_set_actor(r, c->actor);
    return true;
}

static bool
may_see(const struct caller *c, const struct config_server *cs)
{
    return c->admin || (c->project && !strcmp(c->project, cs->project));
}

/* The server the path names, if the caller may see it; else answers 404
 * with the same words whether it does not exist or is someone else's. */
static const struct config_server *
visible_server(struct http_req *r, struct fleet *f)
{
    const char *id = http_req_cap(r, 0);
    const struct config_server *cs = config_find_server(fleet_config(f), id);
    if (!cs || !may_see(who(r), cs)) {
        http_respond_error(r, 404, "no such server: %s", id);
        return NULL;
    }
    return cs;
}

/* --- handlers --- */

static void
h_healthz(struct http_req *r, void *arg)
{
    (void)arg;
    json_t *o = json_pack("{s:s}", "status", "ok");
    if (power_sim()) /* a benchmark's daemon must not pass for a real one */
        json_object_set_new(o, "sim_power", json_true());
    http_respond_json(r, 200, o);
}

/* /metrics: the admin token or [rescued] metrics_token; the states and
 * counts of the fleet are no stranger's business. */
static bool
metrics_check(struct http_req *r, void *arg)
{
    const struct config *cfg = fleet_config(arg);
    const char *h = http_req_header(r, "Authorization");
    const char *tok = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    while (tok && *tok == ' ')
        tok++;
    bool admin = tok && cfg->admin_token && token_equal(tok, cfg->admin_token);
    if (admin ||
        (tok && cfg->metrics_token && token_equal(tok, cfg->metrics_token))) {
        http_req_set_actor(r, admin ? "admin" : "metrics");
        return true;
    }
    http_respond_error(r, 401,
                       "missing or wrong token (Authorization: Bearer TOKEN, "
                       "the metrics_token or the admin token)");
    return false;
}

static void
h_metrics(struct http_req *r, void *arg)
{
    struct buf b = {0};
    fleet_metrics(arg, &b);
    http_metrics(http_req_http(r), &b);
    http_respond_buf(r, 200, &b, "text/plain; version=0.0.4");
}

/* docs/openapi.yaml, as the build converted it. */
static void
h_openapi(struct http_req *r, void *arg)
{
    (void)arg;
    struct buf b = {0};
    buf_append(&b, openapi_json, openapi_json_len);
    http_respond_buf(r, 200, &b, "application/json");
}

static void
h_servers(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config *cfg = fleet_config(f);
    struct buf b = {0};
    bool first = true;
    /* The same text as {"servers": [...]} dumped whole, but one server's
     * objects at a time: 10,000 at once cost ~20 MB of RSS. */
    buf_append(&b, "{\"servers\":[", 12);
    for (size_t i = 0; i < cfg->nservers; i++) {
        if (!may_see(who(r), &cfg->servers[i]))
            continue;
        json_t *o = fleet_server_json(f, &cfg->servers[i]);
        if (!first)
            buf_append(&b, ",", 1);
        first = false;
        http_json_append(&b, o);
        json_decref(o);
    }
    buf_append(&b, "]}\n", 3);
    http_respond_buf(r, 200, &b, "application/json");
}

static void
h_server(struct http_req *r, void *arg)
{
    const struct config_server *cs = visible_server(r, arg);
    struct buf b = {0};
    if (!cs)
        return;
    if (fleet_server_json_text(arg, cs, &b) < 0) {
        buf_free(&b);
        http_respond_error(r, 500, "cannot show the server");
        return;
    }
    http_respond_buf(r, 200, &b, "application/json");
}

static const struct {
    const char *name;
    enum fsm_event ev;
} action_types[] = {
    {"rescue", FSM_EV_RESCUE},       {"exit_rescue", FSM_EV_EXIT_RESCUE},
    {"reboot", FSM_EV_REBOOT},       {"power_on", FSM_EV_POWER_ON},
    {"power_off", FSM_EV_POWER_OFF},
};

int
api_parse_action(json_t *root, struct fleet_action *fa, char *err,
                 size_t errlen)
{
    if (!json_is_object(root)) {
        snprintf(err, errlen, "the body must be a JSON object");
        return -EINVAL;
    }
    json_t *type = json_object_get(root, "type");
    if (!type) {
        snprintf(err, errlen, "missing field: type");
        return -EINVAL;
    }
    if (!json_is_string(type)) {
        snprintf(err, errlen, "type must be a string");
        return -EINVAL;
    }
    size_t i, n = sizeof(action_types) / sizeof(action_types[0]);
    for (i = 0; i < n; i++)
        if (!strcmp(json_string_value(type), action_types[i].name))
            break;
    if (i == n) {
        snprintf(err, errlen,
                 "unknown action type: %.64s (rescue, exit_rescue, reboot, "
                 "power_on, power_off)",
                 json_string_value(type));
        return -EINVAL;
    }
    fa->event = action_types[i].ev;
    bool rescue = fa->event == FSM_EV_RESCUE;

    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "type"))
            continue;
        if (!strcmp(key, "ssh_keys") || !strcmp(key, "ttl")) {
            if (!rescue) {
                snprintf(err, errlen, "%s is only for a rescue action", key);
                return -EINVAL;
            }
            continue;
        }
        snprintf(err, errlen, "unknown field: %.64s", key);
        return -EINVAL;
    }

    json_t *keys = json_object_get(root, "ssh_keys");
    if (keys) {
        if (!json_is_array(keys)) {
            snprintf(err, errlen, "ssh_keys must be an array of strings");
            return -EINVAL;
        }
        fa->nkeys = json_array_size(keys);
        fa->ssh_keys = xcalloc(fa->nkeys + 1, sizeof(*fa->ssh_keys));
        for (size_t k = 0; k < fa->nkeys; k++) {
            json_t *s = json_array_get(keys, k);
            if (!json_is_string(s)) {
                snprintf(err, errlen, "ssh_keys[%zu] must be a string", k);
                return -EINVAL;
            }
            fa->ssh_keys[k] = json_string_value(s);
        }
    }

    json_t *ttl = json_object_get(root, "ttl");
    if (ttl) {
        long long secs = 0;
        if (json_is_integer(ttl)) {
            secs = json_integer_value(ttl);
        } else if (json_is_string(ttl)) {
            if (parse_duration(json_string_value(ttl), &secs) < 0) {
                snprintf(err, errlen,
                         "ttl: not a duration: %.64s (like 90, 15m, 2h, 1d)",
                         json_string_value(ttl));
                return -EINVAL;
            }
        } else {
            snprintf(err, errlen,
                     "ttl must be seconds (an integer) or a duration string");
            return -EINVAL;
        }
        if (secs <= 0) {
            snprintf(err, errlen, "ttl must be greater than 0");
            return -EINVAL;
        }
        fa->ttl_s = secs;
    }
    return 0;
}

/* fleet_action's answer in HTTP words. */
static void
respond_action(struct http_req *r, int rc, const char *err)
{
    if (rc == -ENOENT)
        http_respond_error(r, 404, "%s", err);
    else if (rc == -EINVAL)
        http_respond_error(r, 400, "%s", err);
    else if (rc == -EBUSY)
        http_respond_error(r, 409, "%s", err);
    else if (rc == -EIO)
        http_respond_error(r, 503, "%s", err); /* the store refused it */
    else
        http_respond_error(r, 500, "%s", err[0] ? err : strerror(-rc));
}

/* An action whose pre-flight is out: once it came, the verdict. */
struct pending_answer {
    struct fleet *f;
    char id[ID_MAX + 1];
    char err[512];
};

static void
action_done(void *arg, int rc, const char *err)
{
    struct pending_answer *pa = http_wait_data(arg);
    strlcpy_s(pa->err, err ? err : "", sizeof(pa->err));
    http_wait_done(arg, rc);
}

static void
action_answer(struct http_req *r, void *arg, int rc)
{
    struct pending_answer *pa = arg;
    if (rc < 0) {
        respond_action(r, rc, pa->err);
        return;
    }
    const struct config_server *cs =
        config_find_server(fleet_config(pa->f), pa->id);
    if (cs)
        http_respond_json(r, 202, fleet_server_json(pa->f, cs));
    else
        http_respond_error(r, 404, "no such server: %s", pa->id);
}

static void
h_actions(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    json_t *root = http_req_json(r);
    if (!root)
        return;
    const char *actor = who(r)->actor;
    struct fleet_action fa = {.actor = actor};
    char err[512] = "";
    json_t *type = json_object_get(root, "type");
    int rc = 0;
    if (json_is_string(type) && !strcmp(json_string_value(type), "nmi") &&
        json_object_size(root) == 1)
        /* An NMI moves no state: it asks a hung kernel for a crash dump or
         * a backtrace.  Straight to the power driver (of its facility's
         * active node), and to the audit. */
        fa.nmi = true;
    else
        rc = api_parse_action(root, &fa, err, sizeof(err));
    if (rc == 0) {
        /* The pre-flight may ping a BMC: the answer waits for it, the
         * loop does not. */
        struct pending_answer *pa = xcalloc(1, sizeof(*pa));
        pa->f = f;
        strlcpy_s(pa->id, cs->id, sizeof(pa->id));
        struct http_wait *w = http_wait_new(r, action_answer, pa, free);
        rc = fleet_action_async(f, pa->id, &fa, action_done, w, err,
                                sizeof(err));
        if (rc == 0)
            http_wait_park(w);
        else
            http_wait_drop(w);
    }
    if (rc < 0)
        respond_action(r, rc, err);
    free(fa.ssh_keys);
    json_decref(root);
}

/* ISO-8601 UTC with milliseconds. */
static void
format_time_ms(int64_t ms, char *buf, size_t len)
{
    char s[32];
    format_time_iso(ms / 1000, s, sizeof(s));
    size_t n = strlen(s);
    if (n && s[n - 1] == 'Z')
        s[n - 1] = '\0';
    snprintf(buf, len, "%s.%03dZ", s, (int)(ms % 1000));
}

/* A JSON string of s made valid UTF-8 (a message cut inside a character,
 * bytes from a console or a BMC), or null. */
static json_t *
str_or_null(const char *s)
{
    if (!s)
        return json_null();
    char *v = utf8_valid_dup(s);
    json_t *j = json_string(v);
    free(v);
    return j;
}

static json_t *
event_json(const struct store_event *ev)
{
    char at[40];
    format_time_ms(ev->at_ms, at, sizeof(at));
    return json_pack("{s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "id",
                     (json_int_t)ev->id, "server", str_or_null(ev->server),
                     "at", at, "kind", str_or_null(ev->kind), "from",
                     str_or_null(ev->from_state), "to",
                     str_or_null(ev->to_state), "actor", str_or_null(ev->actor),
                     "message", str_or_null(ev->message));
}

/* A history page on its way from the store: once read, the events. */
struct history {
    struct store *st;
    json_t *events;
};

static void
history_free(void *arg)
{
    struct history *h = arg;
    json_decref(h->events);
    free(h);
}

static void
history_read(void *arg, int rc, const struct store_event *evs, size_t n)
{
    struct history *h = http_wait_data(arg);
    if (rc == 0) {
        h->events = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(h->events, event_json(&evs[i]));
    }
    http_wait_done(arg, rc);
}

/* The history could not be read (rc): 503 with the store's reason when
 * it failed, else 500 (-ECANCELED: st is gone). */
static void
respond_history_failed(struct http_req *r, struct store *st, int rc)
{
    http_respond_error(r, rc == -EIO ? 503 : 500,
                       "cannot read the event history: %s",
                       rc == -EIO ? store_last_error(st) : strerror(-rc));
}

static void
history_answer(struct http_req *r, void *arg, int rc)
{
    struct history *h = arg;
    if (rc < 0)
        respond_history_failed(r, h->st, rc);
    else
        http_respond_json(r, 200, json_pack("{s:O}", "events", h->events));
}

/* --- the event stream (GET .../events, Accept: text/event-stream) --- */

struct sse {
    struct fleet *f;
    struct loop *loop;
    struct http_stream *s; /* NULL until the answer has started */
    struct buf out;        /* SSE text not yet written to s */
    int64_t last_id;
    uint64_t sub, keepalive;
    uint64_t access; /* fleet's writable listener: access re-checked */
    char *auth;      /* the Authorization header it was opened with */
    bool ended;
    char id[ID_MAX + 1];
    /* Paging through the history: live events wait in the store (they are
     * stored before they are published) until a short page says it is
     * read to the end. */
    bool live;
    char *project; /* GET /v1/events of a project: its servers' only */
    /* A page read on its way (it keeps e until answered, even past the
     * stream's end: closed), or one to ask again after SSE_RETRY_MS. */
    bool reading, closed;
    uint64_t retry;
};

/* History events read at once: what an SSE stream holds in memory. */
#define SSE_PAGE 200
/* A page the store could not read is asked again after this. */
#define SSE_RETRY_MS 1000

static void
sse_flush(struct sse *e)
{
    if (e->s && e->out.len) {
        http_stream_write(e->s, e->out.data, e->out.len);
        buf_reset(&e->out);
    }
}

/* One event in SSE framing, each once. */
static void
sse_event(struct sse *e, const struct store_event *ev)
{
    if (ev->id <= e->last_id)
        return;
    e->last_id = ev->id;
    json_t *o = event_json(ev);
    char *data = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!data)
        return;
    buf_printf(&e->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)ev->id,
               ev->kind, data);
    free(data);
}

/* A page of history into e->out; a short one ends the paging. */
static void
sse_paged(struct sse *e, const struct store_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sse_event(e, &evs[i]);
    if (n < SSE_PAGE)
        e->live = true;
}

static void sse_free(struct sse *e);
static void sse_read_next(struct sse *e);

static int64_t
sse_retry(struct loop *l, void *arg)
{
    (void)l;
    struct sse *e = arg;
    e->retry = 0;
    sse_read_next(e);
    return -1;
}

/* The next page has come.  Unreadable: the stream says why and asks
 * again (live events stay in the store meanwhile: none is lost, none
 * comes out of order). */
static void
sse_page_read(void *arg, int rc, const struct store_event *evs, size_t n)
{
    struct sse *e = arg;
    e->reading = false;
    if (e->closed) {
        sse_free(e);
        return;
    }
    if (e->ended)
        return;
    if (rc == -ECANCELED) { /* the store closed first */
        http_stream_end(e->s);
        return;
    }
    if (rc < 0) {
        const char *why =
            rc == -EIO ? store_last_error(fleet_store(e->f)) : strerror(-rc);
        log_warnx("api: events of %s: cannot read the history: %s", e->id, why);
        buf_printf(&e->out,
                   ": the store is not answering (%s); the history goes on "
                   "when it does\n\n",
                   why);
        e->retry = loop_add_timer(e->loop, SSE_RETRY_MS, sse_retry, e);
    } else {
        sse_paged(e, evs, n);
        if (e->live)
            http_stream_on_drained(e->s, NULL);
    }
    sse_flush(e);
}

/* Ask for the page after the last event sent.  The read is queued on the
 * store behind every write and feed read asked before it and answered
 * before any asked after: an event told live while it is on its way is
 * in it or in a later page, and one told after a short page is newer
 * than all of it. */
static void
sse_read_next(struct sse *e)
{
    if (e->live || e->ended || e->reading || e->retry)
        return;
    e->reading = true;
    store_list_events_async(fleet_store(e->f), e->id, e->last_id, SSE_PAGE,
                            sse_page_read, e);
}

/* The stream sent what it had: the next page, until live. */
static void
sse_drained(void *arg)
{
    sse_read_next(arg);
}

static void
sse_live(void *arg, const struct store_event *ev)
{
    struct sse *e = arg;
    if (!e->live)
        return;
    if (e->project) {
        const struct config_server *cs =
            config_find_server(fleet_config(e->f), ev->server);
        if (!cs || strcmp(cs->project, e->project) != 0)
            return;
    }
    sse_event(e, ev);
    sse_flush(e);
}

static int64_t
sse_keepalive(struct loop *l, void *arg)
{
    (void)l;
    struct sse *e = arg;
    buf_printf(&e->out, ": keepalive\n\n");
    sse_flush(e);
    return api_sse_keepalive_ms;
}

/* The credentials a stream was opened with, to ask again later: the
 * Authorization header, or the token behind the portal's session cookie. */
static char *
stream_auth(struct http_req *r, struct fleet *f)
{
    const char *authz = http_req_header(r, "Authorization");
    if (authz)
        return xstrdup(authz);
    const char *cookie = http_req_header(r, "Cookie");
    char id[SESSION_ID_LEN + 1];
    const struct session *s = NULL;
    if (cookie && session_cookie_id(cookie, id))
        s = session_find(fleet_sessions(f), id, now_wall_ms());
    const char *tok = s ? fleet_session_token(f, s) : NULL;
    return tok ? xasprintf("Bearer %s", tok) : xstrdup("");
}

/* After a reload (and each transition): may the stream's token still see
 * its server?  A token removed, or the server moved to another project:
 * the stream ends now. */
static void
sse_recheck(void *arg, const char *server)
{
    struct sse *e = arg;
    bool list = !e->id[0]; /* GET /v1/events: the token itself */
    if (e->ended || (!list && strcmp(server, e->id) != 0))
        return;
    struct caller *c = caller_of(fleet_config(e->f), e->auth);
    const struct config_server *cs =
        list ? NULL : config_find_server(fleet_config(e->f), e->id);
    bool ok =
        list ? c && (e->project ? c->project && !strcmp(c->project, e->project)
                                : c->admin)
             : c && cs && may_see(c, cs);
    if (c)
        caller_free(c);
    if (ok)
        return;
    e->ended = true;
    fleet_unsubscribe(e->f, e->sub);
    e->sub = 0;
    http_stream_on_drained(e->s, NULL);
    buf_printf(&e->out, ": access to %s revoked\n\n",
               list ? "the event stream" : e->id);
    sse_flush(e);
    http_stream_end(e->s);
}

static void
sse_free(struct sse *e)
{
    if (e->auth)
        explicit_bzero(e->auth, strlen(e->auth));
    free(e->auth);
    buf_free(&e->out);
    free(e->project);
    free(e);
}

/* http ended the stream (the client went away, or shutdown).  A page
 * read on its way keeps e until it is answered. */
static void
sse_closed(void *arg)
{
    struct sse *e = arg;
    fleet_unsubscribe(e->f, e->access);
    fleet_unsubscribe(e->f, e->sub);
    loop_del_timer(e->loop, e->keepalive);
    loop_del_timer(e->loop, e->retry);
    e->s = NULL;
    e->closed = true;
    if (!e->reading)
        sse_free(e);
}

/* The stream's answer: 200 and its first bytes, then live or paging. */
static void
sse_begin(struct http_req *r, struct sse *e)
{
    e->s = http_respond_stream(r, 200, "text/event-stream", sse_closed, e);
    if (!e->s)
        return; /* answered 5xx or 429: the caller frees e */
    if (!e->live)
        http_stream_on_drained(e->s, sse_drained);
    if (!e->sub)
        e->sub = fleet_subscribe(e->f, NULL, sse_live, e);
    e->auth = stream_auth(r, e->f);
    e->access = fleet_on_writable_changed(e->f, sse_recheck, e);
    e->keepalive =
        loop_add_timer(e->loop, api_sse_keepalive_ms, sse_keepalive, e);
    sse_flush(e);
}

/* The first page, before the answer starts (http_wait's data: e until
 * the stream has it). */
static void
sse_first_read(void *arg, int rc, const struct store_event *evs, size_t n)
{
    struct sse *e = http_wait_data(arg);
    if (rc == 0)
        sse_paged(e, evs, n);
    e->closed = rc == -ECANCELED; /* and the fleet may be gone */
    http_wait_done(arg, rc);
}

static void
sse_first_answer(struct http_req *r, void *arg, int rc)
{
    struct sse *e = arg;
    if (rc < 0)
        respond_history_failed(r, rc == -EIO ? fleet_store(e->f) : NULL, rc);
    else
        sse_begin(r, e);
}

static void
sse_first_free(void *arg)
{
    struct sse *e = arg;
    if (e->s)
        return; /* the stream's now */
    if (!e->closed)
        fleet_unsubscribe(e->f, e->sub);
    sse_free(e);
}

/* Server id's history after `after`, then live events; the first page is
 * read (the request parked meanwhile) before the answer starts, so a
 * store failure can still be a 503 or a 500.  id NULL: the live events of
 * every server the caller sees, no history (the portal's list). */
static void
sse_start(struct http_req *r, struct fleet *f, const char *id, int64_t after)
{
    struct sse *e = xcalloc(1, sizeof(*e));
    e->f = f;
    e->loop = http_loop(http_req_http(r));
    e->last_id = after;
    if (!id) {
        e->live = true; /* no history to page through */
        if (!who(r)->admin)
            e->project = xstrdup(who(r)->project);
        buf_printf(&e->out, ": rescued events\n\n");
        sse_begin(r, e);
        if (!e->s)
            sse_free(e);
        return;
    }
    strlcpy_s(e->id, id, sizeof(e->id));
    buf_printf(&e->out, ": rescued events of %s\n\n", id);
    /* Subscribed now: an event told once a short first page is in, but
     * before the stream starts (the answer comes a turn later), waits in
     * e->out. */
    e->sub = fleet_subscribe(f, e->id, sse_live, e);
    struct http_wait *w = http_wait_new(r, sse_first_answer, e, sse_first_free);
    store_list_events_async(fleet_store(f), e->id, e->last_id, SSE_PAGE,
                            sse_first_read, w);
    http_wait_park(w);
}

static void
h_events(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    int64_t after = 0, limit = EVENTS_LIMIT_DEFAULT;
    const char *s = http_req_query(r, "after");
    if (s && !parse_u63(s, &after)) {
        http_respond_error(r, 400,
                           "after must be an event id (an integer >= 0)");
        return;
    }
    s = http_req_query(r, "limit");
    if (s && (!parse_u63(s, &limit) || limit < 1 || limit > EVENTS_LIMIT_MAX)) {
        http_respond_error(r, 400, "limit must be an integer from 1 to %d",
                           EVENTS_LIMIT_MAX);
        return;
    }
    /* A server moved here by a reload: its old project's history is not
     * this project's to read. */
    int64_t since = who(r)->admin ? 0 : fleet_project_since(f, cs->id);
    /* The history is read from the store: not while it is not answering
     * (the read would hold the loop until its bound). */
    if (!store_answering(fleet_store(f))) {
        const char *why = store_last_error(fleet_store(f));
        http_respond_error(r, 503,
                           "the store is not answering (its oldest write "
                           "waiting %lld ms%s%s); try again",
                           (long long)store_waiting_ms(fleet_store(f)),
                           *why ? "; last error: " : "", why);
        return;
    }
    const char *accept = http_req_header(r, "Accept");
    if (accept && strstr(accept, "text/event-stream")) {
        const char *last = http_req_header(r, "Last-Event-ID");
        if (!http_req_query(r, "after") && last && !parse_u63(last, &after)) {
            http_respond_error(r, 400, "Last-Event-ID must be an event id");
            return;
        }
        sse_start(r, f, cs->id, after > since ? after : since);
        return;
    }
    if (after < since)
        after = since;
    /* Read without waiting (a network store answers from the loop): the
     * request is parked until then, unless the answer came at once. */
    struct history *h = xcalloc(1, sizeof(*h));
    h->st = fleet_store(f);
    struct http_wait *w = http_wait_new(r, history_answer, h, history_free);
    store_list_events_async(fleet_store(f), cs->id, after, (int)limit,
                            history_read, w);
    http_wait_park(w);
}

/* --- SSH keys, for the portal's Rescue dialog --- */

/* One key's view: its type, fingerprint and comment, or why it is no key. */
static json_t *
key_json(const char *line, size_t len)
{
    char err[256], fp[SSHKEY_FP_LEN], comment[256];
    if (!sshkey_valid_n(line, len, err, sizeof(err)))
        return json_pack("{s:b, s:s}", "ok", 0, "error", err);
    char *canon = sshkey_canonical(line);
    sshkey_comment(canon, comment, sizeof(comment));
    json_t *o = json_pack(
        "{s:b, s:s%, s:s, s:s}", "ok", 1, "type", canon, strcspn(canon, " "),
        "fingerprint", sshkey_fingerprint(canon, fp, sizeof(fp)) == 0 ? fp : "",
        "comment", comment);
    free(canon);
    return o;
}

/* GET /v1/servers/{id}/keys: the project's keys a rescue puts in (public
 * keys: fingerprints and comments). */
static void
h_keys(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    const struct config_project *p =
        config_find_project(fleet_config(f), cs->project);
    char **keys = NULL, err[512] = "";
    size_t n = 0;
    if (p && p->keys_file &&
        sshkey_load_file(p->keys_file, &keys, &n, err, sizeof(err)) < 0) {
        http_respond_error(r, 500, "cannot read the project's keys");
        log_warnx("%s", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, key_json(keys[i], strlen(keys[i])));
    sshkey_list_free(keys);
    http_respond_json(r, 200, json_pack("{s:o}", "keys", arr));
}

/* POST /v1/keys/check {"ssh_keys": [...]}: each key as a rescue would
 * take it or refuse it, before the rescue is asked for. */
static void
h_keys_check(struct http_req *r, void *arg)
{
    (void)arg;
    json_t *root = http_req_json(r);
    if (!root)
        return;
    json_t *keys = json_object_get(root, "ssh_keys");
    if (!json_is_array(keys)) {
        json_decref(root);
        http_respond_error(r, 400, "the body must be {\"ssh_keys\": [...]}");
        return;
    }
    json_t *arr = json_array();
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) json_array_append_new(
        arr, json_is_string(k)
                 ? key_json(json_string_value(k), json_string_length(k))
                 : json_pack("{s:b, s:s}", "ok", 0, "error", "not a string"));
    json_decref(root);
    http_respond_json(r, 200, json_pack("{s:o}", "keys", arr));
}

/* GET /v1/events: the live transitions of every server the caller sees
 * (the portal's list); no history, GET /v1/servers is the present. */
static void
h_all_events(struct http_req *r, void *arg)
{
    sse_start(r, arg, NULL, 0);
}

static void
h_console_log(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    int64_t tail = 100;
    const char *q = http_req_query(r, "tail");
    if (q && (!parse_u63(q, &tail) || tail < 1 || tail > 100000)) {
        http_respond_error(r, 400,
                           "tail must be a number of lines, 1 to 100000");
        return;
    }
    if (!cs->console) {
        http_respond_error(r, 404, "server %s has no console", cs->id);
        return;
    }
    char *dir = xasprintf("%s/console", fleet_config(f)->data_dir);
    struct buf b = {0};
    int rc = console_tail_log(dir, cs->id, (size_t)tail, &b);
    free(dir);
    if (rc < 0 && rc != -ENOENT) {
        buf_free(&b);
        http_respond_error(r, 500, "cannot read the console log: %s",
                           strerror(-rc));
        return;
    }
    http_respond_buf(r, 200, &b, "text/plain; charset=utf-8");
}

/* --- the browser console: tickets and recordings (docs/design.md §9) --- */

/* POST /v1/servers/{id}/console/ticket: the WebSocket handshake's one-time
 * ticket, for a caller who may open this console. */
static void
h_console_ticket(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    if (!cs->console) {
        http_respond_error(r, 404, "server %s has no console", cs->id);
        return;
    }
    char tk[80], exp[32];
    int64_t exp_s = 0;
    int rc =
        fleet_console_ticket(f, cs->id, who(r)->actor, tk, sizeof(tk), &exp_s);
    if (rc == -ENOENT) {
        http_respond_error(r, 404, "no such server: %s", cs->id);
        return;
    }
    if (rc < 0) {
        http_respond_error(r, 503, "no ticket now: %s", strerror(-rc));
        return;
    }
    format_time_iso(exp_s, exp, sizeof(exp));
    http_respond_json(r, 201,
                      json_pack("{s:s,s:s}", "ticket", tk, "expires_at", exp));
}

static char *
recordings_dir(struct fleet *f)
{
    return xasprintf("%s/recordings", fleet_config(f)->data_dir);
}

static void
h_console_recordings(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    char *dir = recordings_dir(f);
    json_t *o = NULL;
    int rc = recording_list(dir, cs->id, &o);
    free(dir);
    if (rc < 0) {
        json_decref(o);
        http_respond_error(r, 500, "cannot list recordings: %s", strerror(-rc));
        return;
    }
    http_respond_json(r, 200, o);
}

static void
h_console_recording(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const struct config_server *cs = visible_server(r, f);
    if (!cs)
        return;
    int64_t n = 0;
    char *dir = recordings_dir(f);
    char *path = parse_u63(http_req_cap(r, 1), &n) && n < 1000000000
                     ? recording_path(dir, cs->id, (int)n)
                     : NULL;
    free(dir);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_respond_error(r, 404, "no such recording: %s", http_req_cap(r, 1));
        return;
    }
    http_respond(r, 200,
                 http_answer_file(fd, 0, (uint64_t)st.st_size,
                                  "application/x-asciicast"));
}

static const struct http_route routes[] = {
    {"/healthz", HTTP_GET | HTTP_HEAD, 0, NULL, h_healthz, NULL},
    {"/metrics", HTTP_GET | HTTP_HEAD, 0, metrics_check, h_metrics, NULL},
    {"/v1/openapi.json", HTTP_GET | HTTP_HEAD, 0, NULL, h_openapi, NULL},
    {"/v1/servers", HTTP_GET | HTTP_HEAD, 0, authenticate, h_servers, NULL},
    {"/v1/servers/{}", HTTP_GET | HTTP_HEAD, 0, authenticate, h_server, NULL},
    {"/v1/servers/{}/actions", HTTP_POST, HTTP_JSON_BODY, authenticate,
     h_actions, NULL},
    {"/v1/servers/{}/events", HTTP_GET | HTTP_HEAD, 0, authenticate, h_events,
     NULL},
    {"/v1/servers/{}/console/log", HTTP_GET | HTTP_HEAD, 0, authenticate,
     h_console_log, NULL},
    {"/v1/servers/{}/console/ticket", HTTP_POST, 0, authenticate,
     h_console_ticket, NULL},
    {"/v1/servers/{}/console/recordings", HTTP_GET | HTTP_HEAD, 0, authenticate,
     h_console_recordings, NULL},
    {"/v1/servers/{}/console/recordings/{file}.cast", HTTP_GET | HTTP_HEAD, 0,
     authenticate, h_console_recording, NULL},
    {"/v1/events", HTTP_GET, 0, authenticate, h_all_events, NULL},
    {"/v1/servers/{}/keys", HTTP_GET, 0, authenticate, h_keys, NULL},
    {"/v1/keys/check", HTTP_POST, HTTP_JSON_BODY, authenticate, h_keys_check,
     NULL},
};

static size_t
api_max_body(void *arg)
{
    return (size_t)fleet_config(arg)->max_body;
}

void
api_register(struct http *h, struct fleet *f)
{
    struct http_face face = {routes, sizeof(routes) / sizeof(routes[0]), f,
                             api_max_body};
    http_add_face(h, &face);
}
