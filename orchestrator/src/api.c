/* api: the authenticated /v1 handlers on http: the servers, one server,
 * its actions, its events (as JSON, or live as Server-Sent Events), its
 * console log; /healthz and /metrics; and who a Bearer token is (the
 * admin, or a project that sees its own servers only).  See
 * docs/design.md for the contract. */
#include "api.h"
#include "config.h"
#include "console.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* The check of every /v1 route: the Authorization header names a caller,
 * or the answer is 401. */
static bool
authenticate(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    struct caller *c =
        caller_of(fleet_config(f), http_req_header(r, "Authorization"));
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
    http_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void
h_metrics(struct http_req *r, void *arg)
{
    struct buf b = {0};
    fleet_metrics(arg, &b);
    http_metrics(http_req_http(r), &b);
    http_respond_buf(r, 200, &b, "text/plain; version=0.0.4");
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
    if (cs)
        http_respond_json(r, 200, fleet_server_json(arg, cs));
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
    if (json_is_string(type) && !strcmp(json_string_value(type), "nmi") &&
        json_object_size(root) == 1) {
        /* An NMI moves no state: it asks a hung kernel for a crash dump or
         * a backtrace.  Straight to the power driver, and to the audit. */
        fleet_audit(f, cs->id, actor, "nmi requested");
        int prc = fleet_console_power(f, cs->id, POWER_NMI, NULL);
        if (prc < 0)
            http_respond_error(r, 409, "cannot send an NMI: %s",
                               strerror(-prc));
        else
            http_respond_json(r, 202, fleet_server_json(f, cs));
        json_decref(root);
        return;
    }
    int rc = api_parse_action(root, &fa, err, sizeof(err));
    if (rc == 0) {
        /* The id is copied: a reload inside fleet_action may free cs. */
        char id[ID_MAX + 1];
        strlcpy_s(id, cs->id, sizeof(id));
        rc = fleet_action(f, id, &fa, err, sizeof(err));
        if (rc == 0) {
            cs = config_find_server(fleet_config(f), id);
            if (cs)
                http_respond_json(r, 202, fleet_server_json(f, cs));
            else
                http_respond_error(r, 404, "no such server: %s", id);
        }
    }
    if (rc == -ENOENT)
        http_respond_error(r, 404, "%s", err);
    else if (rc == -EINVAL)
        http_respond_error(r, 400, "%s", err);
    else if (rc == -EBUSY)
        http_respond_error(r, 409, "%s", err);
    else if (rc < 0)
        http_respond_error(r, 500, "%s", err[0] ? err : strerror(-rc));
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

static json_t *
str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *
event_json(const struct store_event *ev)
{
    char at[40];
    format_time_ms(ev->at_ms, at, sizeof(at));
    return json_pack("{s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id",
                     (json_int_t)ev->id, "server", ev->server, "at", at, "kind",
                     ev->kind, "from", str_or_null(ev->from_state), "to",
                     str_or_null(ev->to_state), "actor", str_or_null(ev->actor),
                     "message", str_or_null(ev->message));
}

static int
collect_event(void *arg, const struct store_event *ev)
{
    json_array_append_new(arg, event_json(ev));
    return 0;
}

/* --- the event stream (GET .../events, Accept: text/event-stream) --- */

struct sse {
    struct fleet *f;
    struct loop *loop;
    struct http_stream *s; /* NULL until the answer has started */
    struct buf out;        /* SSE text not yet written to s */
    int64_t last_id;
    uint64_t sub, keepalive;
};

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

static int
sse_history(void *arg, const struct store_event *ev)
{
    sse_event(arg, ev);
    return 0;
}

static void
sse_live(void *arg, const struct store_event *ev)
{
    sse_event(arg, ev);
    sse_flush(arg);
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

/* http ended the stream (the client went away, or shutdown). */
static void
sse_closed(void *arg)
{
    struct sse *e = arg;
    fleet_unsubscribe(e->f, e->sub);
    loop_del_timer(e->loop, e->keepalive);
    buf_free(&e->out);
    free(e);
}

/* The history after `after`, then live events; the history is read
 * before the answer starts, so a store failure can still be a 500. */
static void
sse_start(struct http_req *r, struct fleet *f, const char *id, int64_t after)
{
    struct sse *e = xcalloc(1, sizeof(*e));
    e->f = f;
    e->loop = http_loop(http_req_http(r));
    e->last_id = after;
    buf_printf(&e->out, ": rescued events of %s\n\n", id);
    int rc = store_list_events(fleet_store(f), id, after, 0, sse_history, e);
    if (rc < 0) {
        buf_free(&e->out);
        free(e);
        http_respond_error(r, 500, "cannot read the event history: %s",
                           strerror(-rc));
        return;
    }
    e->s = http_respond_stream(r, 200, "text/event-stream", sse_closed, e);
    if (!e->s) {
        buf_free(&e->out);
        free(e);
        return;
    }
    e->sub = fleet_subscribe(f, id, sse_live, e);
    e->keepalive =
        loop_add_timer(e->loop, api_sse_keepalive_ms, sse_keepalive, e);
    sse_flush(e);
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
    const char *accept = http_req_header(r, "Accept");
    if (accept && strstr(accept, "text/event-stream")) {
        const char *last = http_req_header(r, "Last-Event-ID");
        if (!http_req_query(r, "after") && last && !parse_u63(last, &after)) {
            http_respond_error(r, 400, "Last-Event-ID must be an event id");
            return;
        }
        sse_start(r, f, cs->id, after);
        return;
    }
    json_t *arr = json_array();
    int rc = store_list_events(fleet_store(f), cs->id, after, (int)limit,
                               collect_event, arr);
    if (rc < 0) {
        json_decref(arr);
        http_respond_error(r, 500, "cannot read the event history: %s",
                           strerror(-rc));
        return;
    }
    http_respond_json(r, 200, json_pack("{s:o}", "events", arr));
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

static const struct http_route routes[] = {
    {"/healthz", HTTP_GET | HTTP_HEAD, 0, NULL, h_healthz, NULL},
    {"/metrics", HTTP_GET | HTTP_HEAD, 0, NULL, h_metrics, NULL},
    {"/v1/servers", HTTP_GET | HTTP_HEAD, 0, authenticate, h_servers, NULL},
    {"/v1/servers/{}", HTTP_GET | HTTP_HEAD, 0, authenticate, h_server, NULL},
    {"/v1/servers/{}/actions", HTTP_POST, HTTP_JSON_BODY, authenticate,
     h_actions, NULL},
    {"/v1/servers/{}/events", HTTP_GET | HTTP_HEAD, 0, authenticate, h_events,
     NULL},
    {"/v1/servers/{}/console/log", HTTP_GET | HTTP_HEAD, 0, authenticate,
     h_console_log, NULL},
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
