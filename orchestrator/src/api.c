/* api: the HTTP API on libmicrohttpd in external-epoll mode, driven by our
 * loop: MHD's epoll fd is one watcher, MHD_get_timeout one timer.  Routing
 * is a small table over the raw request path (before MHD unescapes it, so
 * "%00" cannot cut a path short).  The event stream parks its connection
 * with MHD_suspend_connection and resumes it when fleet publishes. */
#include "api.h"
#include "config.h"
#include "console.h"
#include "fleet.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Per-connection pool: bounds the request line and headers.  A 4 KB junk
 * path must still reach us (and get a JSON 404); 32 KB and more get MHD's
 * own 414. */
#define API_MEMORY_LIMIT (32 * 1024)
#define API_CONN_TIMEOUT_S 60
#define API_CONN_LIMIT 1024
/* Tests shorten the keepalive to watch a dead client being noticed. */
#ifdef UNITTEST
int api_sse_keepalive_ms = 15000;
#else
static const int api_sse_keepalive_ms = 15000;
#endif
#define EVENTS_LIMIT_DEFAULT 1000
#define EVENTS_LIMIT_MAX 1000
#define ID_MAX 63
#define CAP_MAX 64 /* a boot token: 64 hex digits */
#define MAX_CAPS 2

enum method { M_GET = 1, M_HEAD = 2, M_POST = 4, M_PUT = 8, M_DELETE = 16 };

struct req;
typedef void route_fn(struct req *r);

struct route {
    const char *pattern; /* "/v1/servers/{}/actions": {} captures an id */
    unsigned methods;
    bool auth;      /* needs a bearer token */
    bool json_body; /* POST with a JSON body (checked type and size) */
    route_fn *fn;
};

/* Who is calling: the admin, or a project (project != NULL). */
struct caller {
    bool admin;
    char *project;
    char *actor; /* "admin" or "project:NAME" */
};

struct req {
    struct api *a;
    struct MHD_Connection *conn;
    char *uri; /* raw, as received */
    struct timespec t0;
    char method_name[8];
    unsigned method;
    bool started, answered, too_large;
    const struct route *route;
    char caps[MAX_CAPS][CAP_MAX + 1];
    struct caller who;
    struct buf body;
    size_t discarded;
    unsigned status;

    /* The event stream (GET .../events with Accept: text/event-stream). */
    bool streaming, suspended, closing;
    struct buf out; /* SSE text not yet handed to MHD */
    size_t off;
    int64_t last_id;
    uint64_t sub, keepalive;
    int hup_fd; /* the client socket, watched for a hang-up while parked */
    struct req *prev, *next; /* api's list of streams */
};

struct req_count {
    char method[8];
    unsigned code;
    uint64_t n;
};

static const double latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof(latency_buckets) / sizeof(latency_buckets[0]))

struct api {
    struct loop *loop;
    struct fleet *fleet;
    struct MHD_Daemon *mhd;
    int epfd;
    int port;
    uint64_t timer;
    int64_t timer_due; /* monotonic ms at which timer fires */
    bool kicked;       /* a connection was resumed: MHD_run again at once */
    struct req *streams;
    size_t nstreams;
    struct req_count *counts;
    size_t ncounts;
    uint64_t hist[NBUCKETS]; /* per bucket, not cumulative */
    uint64_t hist_count;
    double hist_sum;
};

static void api_rearm(struct api *a);
static void api_kick(struct api *a);

/* --- small helpers --- */

static bool
id_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* What a path capture may hold, after %-decoding (so %2e%2e and %00 fail):
 * "{}" a server id [A-Za-z0-9_-]{1,63}; "{mac}" hex digits, ':' and '-';
 * "{token}" lower-case hex; "{file}" an id that may hold dots inside. */
static bool
capture_char(char kind, int c, size_t pos)
{
    switch (kind) {
    case 'm':
        return hexval(c) >= 0 || c == ':' || c == '-';
    case 't':
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    case 'f':
        return id_char(c) || (c == '.' && pos > 0);
    default:
        return id_char(c);
    }
}

/* Decode one raw path segment into out[CAP_MAX + 1]; false unless every
 * character fits the capture's kind. */
static bool
segment_capture(char kind, const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n)
                return false;
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return false;
            c = h * 16 + l;
            i += 2;
        }
        if (!capture_char(kind, c, o) || o >= (kind == 't' ? CAP_MAX : ID_MAX))
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return o > 0;
}

/* Constant time in the length of the secret. */
static bool
token_equal(const char *given, const char *secret)
{
    size_t lg = strlen(given), ls = strlen(secret);
    volatile unsigned char d = lg != ls;
    for (size_t i = 0; i < ls; i++)
        d |= (unsigned char)(i < lg ? given[i] : 0) ^ (unsigned char)secret[i];
    return d == 0;
}

/* A non-negative decimal integer, nothing else. */
static bool
parse_u63(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

static double
elapsed_s(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static const char *
header(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static const char *
query(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* --- metrics --- */

static void
metrics_count(struct api *a, const char *method, unsigned code, double secs)
{
    struct req_count *c = NULL;
    for (size_t i = 0; i < a->ncounts; i++)
        if (a->counts[i].code == code && !strcmp(a->counts[i].method, method))
            c = &a->counts[i];
    if (!c) {
        a->counts = xrealloc(a->counts, sizeof(*a->counts) * (a->ncounts + 1));
        c = &a->counts[a->ncounts++];
        memset(c, 0, sizeof(*c));
        strlcpy_s(c->method, method, sizeof(c->method));
        c->code = code;
    }
    c->n++;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (secs <= latency_buckets[i]) {
            a->hist[i]++;
            break;
        }
    a->hist_count++;
    a->hist_sum += secs;
}

static void
metrics_write(struct api *a, struct buf *out)
{
    buf_printf(out, "# HELP rescued_http_requests_total HTTP requests "
                    "answered, by method and status code.\n"
                    "# TYPE rescued_http_requests_total counter\n");
    for (size_t i = 0; i < a->ncounts; i++)
        buf_printf(out,
                   "rescued_http_requests_total{method=\"%s\",code=\"%u\"} "
                   "%llu\n",
                   a->counts[i].method, a->counts[i].code,
                   (unsigned long long)a->counts[i].n);
    buf_printf(out,
               "# HELP rescued_http_event_streams Open event streams.\n"
               "# TYPE rescued_http_event_streams gauge\n"
               "rescued_http_event_streams %zu\n",
               a->nstreams);
    buf_printf(out, "# HELP rescued_http_request_duration_seconds Time from "
                    "the request line to the queued answer.\n"
                    "# TYPE rescued_http_request_duration_seconds "
                    "histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += a->hist[i];
        buf_printf(out,
                   "rescued_http_request_duration_seconds_bucket{le=\"%g\"} "
                   "%llu\n",
                   latency_buckets[i], (unsigned long long)cum);
    }
    buf_printf(out,
               "rescued_http_request_duration_seconds_bucket{le=\"+Inf\"} "
               "%llu\n"
               "rescued_http_request_duration_seconds_sum %.6f\n"
               "rescued_http_request_duration_seconds_count %llu\n",
               (unsigned long long)a->hist_count, a->hist_sum,
               (unsigned long long)a->hist_count);
}

/* --- answers --- */

static const char *
status_code_name(unsigned status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
        return "payload_too_large";
    case 415:
        return "unsupported_media_type";
    case 416:
        return "range_not_satisfiable";
    default:
        return "internal";
    }
}

/* Queue resp (consumed) and account for the request. */
static void
respond(struct req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp) {
        log_warnx("api: cannot create a response");
        return;
    }
    if (MHD_queue_response(r->conn, status, resp) != MHD_YES)
        log_warnx("api: %s %s: cannot queue a %u response", r->method_name,
                  r->uri, status);
    MHD_destroy_response(resp);
    r->answered = true;
    r->status = status;
    double secs = elapsed_s(&r->t0);
    metrics_count(r->a, r->method_name, status, secs);
    log_debug("api: %s %.200s %u %.1f ms%s%s", r->method_name, r->uri, status,
              secs * 1000, r->who.actor ? " " : "",
              r->who.actor ? r->who.actor : "");
}

static struct MHD_Response *
text_response(char *text, size_t len, const char *type)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return resp;
}

static int
dump_to_buf(const char *p, size_t n, void *arg)
{
    buf_append(arg, p, n);
    return 0;
}

/* Dumped straight into the answer's buffer: no copy to add the newline. */
static struct MHD_Response *
json_response(json_t *o)
{
    struct buf b = {0};
    int rc = o ? json_dump_callback(o, dump_to_buf, &b, JSON_COMPACT) : -1;
    json_decref(o);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    buf_append(&b, "\n", 1);
    return text_response(b.data, b.len, "application/json");
}

/* Answer with o (consumed). */
static void
respond_json(struct req *r, unsigned status, json_t *o)
{
    respond(r, status, json_response(o));
}

static struct MHD_Response *
error_response(unsigned status, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return json_response(json_pack("{s:s, s:s}", "error", msg, "code",
                                   status_code_name(status)));
}

static struct MHD_Response *
error_response_s(unsigned status, const char *msg)
{
    return json_response(json_pack("{s:s, s:s}", "error", msg, "code",
                                   status_code_name(status)));
}

static void __attribute__((format(printf, 3, 4)))
respond_error(struct req *r, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct MHD_Response *resp = error_response(status, fmt, ap);
    va_end(ap);
    if (resp && status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer");
    if (resp && status == 405) {
        char allow[64] = "";
        unsigned m = r->route ? r->route->methods : 0;
        static const struct {
            unsigned bit;
            const char *name;
        } names[] = {{M_GET, "GET"},
                     {M_HEAD, "HEAD"},
                     {M_POST, "POST"},
                     {M_PUT, "PUT"},
                     {M_DELETE, "DELETE"}};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (m & names[i].bit) {
                if (allow[0])
                    strcat(allow, ", ");
                strcat(allow, names[i].name);
            }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    respond(r, status, resp);
}

/* --- who is calling --- */

/* Fills r->who from the Authorization header; false: answer 401. */
static bool
authenticate(struct req *r)
{
    const struct config *cfg = fleet_config(r->a->fleet);
    const char *h = header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return false;
    if (cfg->admin_token && token_equal(tok, cfg->admin_token)) {
        r->who.admin = true;
        r->who.actor = xstrdup("admin");
        return true;
    }
    const struct config_project *p = config_find_project_by_token(cfg, tok);
    if (!p)
        return false;
    r->who.project = xstrdup(p->name);
    r->who.actor = xasprintf("project:%s", p->name);
    return true;
}

static bool
may_see(const struct caller *who, const struct config_server *cs)
{
    return who->admin || (who->project && !strcmp(who->project, cs->project));
}

/* The server the path names, if the caller may see it; else answers 404
 * with the same words whether it does not exist or is someone else's. */
static const struct config_server *
visible_server(struct req *r, const char *id)
{
    const struct config_server *cs =
        config_find_server(fleet_config(r->a->fleet), id);
    if (!cs || !may_see(&r->who, cs)) {
        respond_error(r, 404, "no such server: %s", id);
        return NULL;
    }
    return cs;
}

/* --- handlers --- */

static void
h_healthz(struct req *r)
{
    respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void
h_metrics(struct req *r)
{
    struct buf b = {0};
    fleet_metrics(r->a->fleet, &b);
    metrics_write(r->a, &b);
    if (!b.data)
        buf_append(&b, "", 0);
    respond(r, 200, text_response(b.data, b.len, "text/plain; version=0.0.4"));
}

static void
h_servers(struct req *r)
{
    const struct config *cfg = fleet_config(r->a->fleet);
    struct buf b = {0};
    bool first = true;
    /* The same text as {"servers": [...]} dumped whole, but one server's
     * objects at a time: 10,000 at once cost ~20 MB of RSS. */
    buf_append(&b, "{\"servers\":[", 12);
    for (size_t i = 0; i < cfg->nservers; i++) {
        if (!may_see(&r->who, &cfg->servers[i]))
            continue;
        json_t *o = fleet_server_json(r->a->fleet, &cfg->servers[i]);
        if (!first)
            buf_append(&b, ",", 1);
        first = false;
        json_dump_callback(o, dump_to_buf, &b, JSON_COMPACT);
        json_decref(o);
    }
    buf_append(&b, "]}\n", 3);
    respond(r, 200, text_response(b.data, b.len, "application/json"));
}

static void
h_server(struct req *r)
{
    const struct config_server *cs = visible_server(r, r->caps[0]);
    if (cs)
        respond_json(r, 200, fleet_server_json(r->a->fleet, cs));
}

static const struct {
    const char *name;
    enum fsm_event ev;
} action_types[] = {
    {"rescue", FSM_EV_RESCUE},       {"exit_rescue", FSM_EV_EXIT_RESCUE},
    {"reboot", FSM_EV_REBOOT},       {"power_on", FSM_EV_POWER_ON},
    {"power_off", FSM_EV_POWER_OFF},
};

/* Parse the action body into *fa (keys point into root); 0, or -EINVAL
 * with err. */
static int
parse_action(json_t *root, struct fleet_action *fa, char *err, size_t errlen)
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
h_actions(struct req *r)
{
    const struct config_server *cs = visible_server(r, r->caps[0]);
    if (!cs)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        respond_error(r, 400, "malformed JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
        return;
    }
    struct fleet_action fa = {.actor = r->who.actor};
    char err[512] = "";
    json_t *type = json_object_get(root, "type");
    if (json_is_string(type) && !strcmp(json_string_value(type), "nmi") &&
        json_object_size(root) == 1) {
        /* An NMI moves no state: it asks a hung kernel for a crash dump or
         * a backtrace.  Straight to the power driver, and to the audit. */
        fleet_audit(r->a->fleet, cs->id, r->who.actor, "nmi requested");
        int prc = fleet_console_power(r->a->fleet, cs->id, POWER_NMI, NULL);
        if (prc < 0)
            respond_error(r, 409, "cannot send an NMI: %s", strerror(-prc));
        else
            respond_json(r, 202, fleet_server_json(r->a->fleet, cs));
        json_decref(root);
        return;
    }
    int rc = parse_action(root, &fa, err, sizeof(err));
    if (rc == 0) {
        /* The id is copied: a reload inside fleet_action may free cs. */
        char id[ID_MAX + 1];
        strlcpy_s(id, cs->id, sizeof(id));
        rc = fleet_action(r->a->fleet, id, &fa, err, sizeof(err));
        if (rc == 0) {
            cs = config_find_server(fleet_config(r->a->fleet), id);
            if (cs)
                respond_json(r, 202, fleet_server_json(r->a->fleet, cs));
            else
                respond_error(r, 404, "no such server: %s", id);
        }
    }
    if (rc == -ENOENT)
        respond_error(r, 404, "%s", err);
    else if (rc == -EINVAL)
        respond_error(r, 400, "%s", err);
    else if (rc == -EBUSY)
        respond_error(r, 409, "%s", err);
    else if (rc < 0)
        respond_error(r, 500, "%s", err[0] ? err : strerror(-rc));
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

/* Append one event to a stream in SSE framing. */
static void
stream_event(struct req *r, const struct store_event *ev)
{
    if (ev->id <= r->last_id)
        return;
    r->last_id = ev->id;
    json_t *o = event_json(ev);
    char *data = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!data)
        return;
    buf_printf(&r->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)ev->id,
               ev->kind, data);
    free(data);
}

static void
stream_unwatch(struct req *r)
{
    if (r->hup_fd >= 0) {
        loop_del_fd(r->a->loop, r->hup_fd);
        r->hup_fd = -1;
    }
}

static void
stream_wake(struct req *r)
{
    stream_unwatch(r);
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        api_kick(r->a);
    }
}

/* The client hung up while its stream was parked: end it now rather than
 * at the next keepalive's failed write. */
static void
stream_hup(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct req *r = arg;
    r->closing = true;
    stream_wake(r);
}

/* Park the connection; only a hang-up (not data) wakes us from the
 * socket, so a chatty client cannot make us spin. */
static void
stream_park(struct req *r)
{
    r->suspended = true;
    MHD_suspend_connection(r->conn);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci &&
        loop_add_fd(r->a->loop, ci->connect_fd, EPOLLRDHUP, stream_hup, r) == 0)
        r->hup_fd = ci->connect_fd;
}

static int
stream_history(void *arg, const struct store_event *ev)
{
    stream_event(arg, ev);
    return 0;
}

static void
stream_live(void *arg, const struct store_event *ev)
{
    struct req *r = arg;
    stream_event(r, ev);
    stream_wake(r);
}

static int64_t
stream_keepalive(struct loop *l, void *arg)
{
    (void)l;
    struct req *r = arg;
    buf_printf(&r->out, ": keepalive\n\n");
    stream_wake(r);
    return api_sse_keepalive_ms;
}

/* MHD pulls the stream from here; with nothing to send, park the
 * connection (no polling) until an event or the keepalive wakes it. */
static ssize_t
stream_read(void *cls, uint64_t pos, char *dst, size_t max)
{
    (void)pos;
    struct req *r = cls;
    if (r->off < r->out.len) {
        size_t n = r->out.len - r->off;
        if (n > max)
            n = max;
        memcpy(dst, r->out.data + r->off, n);
        r->off += n;
        if (r->off == r->out.len) {
            buf_reset(&r->out);
            r->off = 0;
        }
        return (ssize_t)n;
    }
    if (r->closing)
        return MHD_CONTENT_READER_END_OF_STREAM;
    stream_park(r);
    return 0;
}

static void
stream_start(struct req *r, const char *id, int64_t after)
{
    struct api *a = r->a;
    r->streaming = true;
    r->last_id = after;
    buf_printf(&r->out, ": rescued events of %s\n\n", id);
    int rc = store_list_events(fleet_store(a->fleet), id, after, 0,
                               stream_history, r);
    if (rc < 0) {
        r->streaming = false;
        respond_error(r, 500, "cannot read the event history: %s",
                      strerror(-rc));
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, stream_read, r, NULL);
    if (!resp) {
        r->streaming = false;
        respond_error(r, 500, "cannot start the stream");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    r->sub = fleet_subscribe(a->fleet, id, stream_live, r);
    r->keepalive =
        loop_add_timer(a->loop, api_sse_keepalive_ms, stream_keepalive, r);
    r->next = a->streams;
    if (a->streams)
        a->streams->prev = r;
    a->streams = r;
    a->nstreams++;
    respond(r, 200, resp);
}

static void
stream_stop(struct req *r)
{
    struct api *a = r->a;
    if (!r->streaming)
        return;
    r->streaming = false;
    stream_unwatch(r);
    fleet_unsubscribe(a->fleet, r->sub);
    loop_del_timer(a->loop, r->keepalive);
    if (r->prev)
        r->prev->next = r->next;
    else
        a->streams = r->next;
    if (r->next)
        r->next->prev = r->prev;
    a->nstreams--;
    buf_free(&r->out);
}

static void
h_events(struct req *r)
{
    const struct config_server *cs = visible_server(r, r->caps[0]);
    if (!cs)
        return;
    int64_t after = 0, limit = EVENTS_LIMIT_DEFAULT;
    const char *s = query(r, "after");
    if (s && !parse_u63(s, &after)) {
        respond_error(r, 400, "after must be an event id (an integer >= 0)");
        return;
    }
    s = query(r, "limit");
    if (s && (!parse_u63(s, &limit) || limit < 1 || limit > EVENTS_LIMIT_MAX)) {
        respond_error(r, 400, "limit must be an integer from 1 to %d",
                      EVENTS_LIMIT_MAX);
        return;
    }
    const char *accept = header(r, MHD_HTTP_HEADER_ACCEPT);
    if (accept && strstr(accept, "text/event-stream")) {
        const char *last = header(r, "Last-Event-ID");
        if (!query(r, "after") && last && !parse_u63(last, &after)) {
            respond_error(r, 400, "Last-Event-ID must be an event id");
            return;
        }
        stream_start(r, cs->id, after);
        return;
    }
    json_t *arr = json_array();
    int rc = store_list_events(fleet_store(r->a->fleet), cs->id, after,
                               (int)limit, collect_event, arr);
    if (rc < 0) {
        json_decref(arr);
        respond_error(r, 500, "cannot read the event history: %s",
                      strerror(-rc));
        return;
    }
    respond_json(r, 200, json_pack("{s:o}", "events", arr));
}

/* --- the boot path: no token, and nothing beyond public keys --- */

static const char *
peer_addr(struct req *r, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    buf[0] = '\0';
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET,
                  &((const struct sockaddr_in *)ci->client_addr)->sin_addr, buf,
                  (socklen_t)len);
    return buf;
}

static void
h_boot_script(struct req *r)
{
    char mac[18], peer[64];
    struct buf b = {0};
    if (!config_parse_mac(r->caps[0], mac) ||
        fleet_boot_script(r->a->fleet, mac, peer_addr(r, peer, sizeof(peer)),
                          &b) < 0) {
        /* iPXE then falls through to the next boot device. */
        respond_error(r, 404, "no server with this MAC");
        return;
    }
    respond(r, 200, text_response(b.data, b.len, "text/plain"));
}

/* "bytes=A-B", "bytes=A-" or "bytes=-N" against size; false: not one
 * satisfiable range. */
static bool
parse_range(const char *h, int64_t size, int64_t *from, int64_t *to)
{
    char *end;
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return false;
    h += 6;
    if (*h == '-') {
        long long n = strtoll(h + 1, &end, 10);
        if (*end || n <= 0)
            return false;
        *from = n >= size ? 0 : size - n;
        *to = size - 1;
        return size > 0;
    }
    long long a = strtoll(h, &end, 10);
    if (end == h || *end != '-' || a < 0 || a >= size)
        return false;
    const char *b = end + 1;
    long long z = size - 1;
    if (*b) {
        z = strtoll(b, &end, 10);
        if (*end || z < a)
            return false;
        if (z >= size)
            z = size - 1;
    }
    *from = a;
    *to = z;
    return true;
}

static void
h_image(struct req *r)
{
    const char *path = fleet_image_path(r->a->fleet, r->caps[0]);
    if (!path) {
        respond_error(r, 404, "no such image file");
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        respond_error(r, 404, "image file %s is missing", r->caps[0]);
        return;
    }
    /* Only a fetch that gets the file moves the boot forward. */
    fleet_image_fetched(r->a->fleet, r->caps[0], query(r, "token"));
    int64_t from = 0, to = st.st_size - 1;
    const char *range = header(r, MHD_HTTP_HEADER_RANGE);
    unsigned status = 200;
    if (range) {
        if (!parse_range(range, st.st_size, &from, &to)) {
            close(fd);
            struct MHD_Response *resp =
                error_response_s(416, "range not satisfiable");
            char cr[64];
            snprintf(cr, sizeof(cr), "bytes */%lld", (long long)st.st_size);
            if (resp)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE,
                                        cr);
            respond(r, 416, resp);
            return;
        }
        status = 206;
    }
    /* MHD sends Content-Length from the size and closes fd when done. */
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(
        (uint64_t)(to - from + 1), fd, (uint64_t)from);
    if (!resp) {
        close(fd);
        respond_error(r, 500, "cannot send %s", r->caps[0]);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (status == 206) {
        char cr[96];
        snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)from,
                 (long long)to, (long long)st.st_size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    respond(r, status, resp);
}

static void
h_overlay(struct req *r)
{
    struct buf b = {0};
    char err[512] = "";
    int rc = fleet_overlay(r->a->fleet, r->caps[0], &b, err, sizeof(err));
    if (rc == -ENOENT) {
        respond_error(r, 404, "no such overlay");
        return;
    }
    if (rc < 0) {
        buf_free(&b);
        respond_error(r, 500, "cannot build the overlay: %s", err);
        return;
    }
    if (!b.data)
        buf_append(&b, "", 0);
    respond(r, 200, text_response(b.data, b.len, "application/gzip"));
}

static void
h_phone_home(struct req *r)
{
    json_error_t jerr;
    json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        respond_error(r, 400, "malformed JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
        return;
    }
    char err[256] = "";
    int rc = fleet_phone_home(r->a->fleet, r->caps[0], root, err, sizeof(err));
    json_decref(root);
    if (rc == -ENOENT)
        respond_error(r, 404, "no such boot token");
    else if (rc < 0)
        respond_error(r, 400, "%s", err);
    else
        respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void
h_console_log(struct req *r)
{
    const struct config_server *cs = visible_server(r, r->caps[0]);
    if (!cs)
        return;
    int64_t tail = 100;
    const char *q = query(r, "tail");
    if (q && (!parse_u63(q, &tail) || tail < 1 || tail > 100000)) {
        respond_error(r, 400, "tail must be a number of lines, 1 to 100000");
        return;
    }
    if (!cs->console) {
        respond_error(r, 404, "server %s has no console", cs->id);
        return;
    }
    char *dir = xasprintf("%s/console", fleet_config(r->a->fleet)->data_dir);
    struct buf b = {0};
    int rc = console_tail_log(dir, cs->id, (size_t)tail, &b);
    free(dir);
    if (rc < 0 && rc != -ENOENT) {
        buf_free(&b);
        respond_error(r, 500, "cannot read the console log: %s", strerror(-rc));
        return;
    }
    if (!b.data)
        buf_append(&b, "", 0);
    respond(r, 200, text_response(b.data, b.len, "text/plain; charset=utf-8"));
}

static const struct route routes[] = {
    {"/healthz", M_GET | M_HEAD, false, false, h_healthz},
    {"/metrics", M_GET | M_HEAD, false, false, h_metrics},
    {"/v1/servers", M_GET | M_HEAD, true, false, h_servers},
    {"/v1/servers/{}", M_GET | M_HEAD, true, false, h_server},
    {"/v1/servers/{}/actions", M_POST, true, true, h_actions},
    {"/v1/servers/{}/events", M_GET | M_HEAD, true, false, h_events},
    {"/v1/servers/{}/console/log", M_GET | M_HEAD, true, false, h_console_log},
    {"/boot/{mac}.ipxe", M_GET | M_HEAD, false, false, h_boot_script},
    {"/images/{file}", M_GET | M_HEAD, false, false, h_image},
    {"/overlay/{token}.tar.gz", M_GET | M_HEAD, false, false, h_overlay},
    {"/v1/phone-home/{token}", M_POST, false, true, h_phone_home},
};

/* --- routing --- */

enum match { MATCH_NONE, MATCH_BAD_ID, MATCH_OK };

static enum match
route_match(const struct route *rt, const char *path, size_t plen,
            char caps[MAX_CAPS][CAP_MAX + 1])
{
    const char *p = rt->pattern, *u = path, *uend = path + plen;
    int ncap = 0;
    bool bad = false;
    while (*p) {
        if (*p != '/' || u >= uend || *u != '/')
            return MATCH_NONE;
        p++, u++;
        const char *pe = strchrnul(p, '/');
        const char *ue = memchr(u, '/', (size_t)(uend - u));
        if (!ue)
            ue = uend;
        if (p[0] == '{') {
            /* "{kind}suffix": the segment ends with suffix, the rest is
             * the capture. */
            const char *close = memchr(p, '}', (size_t)(pe - p));
            const char *suffix = close + 1;
            size_t slen = (size_t)(pe - suffix), ulen = (size_t)(ue - u);
            if (ulen < slen || memcmp(ue - slen, suffix, slen) != 0)
                return MATCH_NONE;
            char kind = close - p > 1 ? p[1] : 'i';
            if (ncap >= MAX_CAPS ||
                !segment_capture(kind, u, ulen - slen, caps[ncap]))
                bad = true;
            ncap++;
        } else if (pe - p != ue - u || memcmp(p, u, (size_t)(pe - p)) != 0) {
            return MATCH_NONE;
        }
        p = pe;
        u = ue;
    }
    if (u != uend)
        return MATCH_NONE;
    return bad ? MATCH_BAD_ID : MATCH_OK;
}

static unsigned
method_bit(const char *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } ms[] = {{"GET", M_GET},
              {"HEAD", M_HEAD},
              {"POST", M_POST},
              {"PUT", M_PUT},
              {"DELETE", M_DELETE}};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        if (!strcmp(m, ms[i].name))
            return ms[i].bit;
    return 0;
}

static bool
is_json_type(const char *ct)
{
    if (!ct || strncasecmp(ct, "application/json", 16) != 0)
        return false;
    return ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ';
}

/* Headers are in: route, check, and answer what can be answered now. */
static void
req_begin(struct req *r, const char *method)
{
    r->method = method_bit(method);
    /* Bounded label values for the metrics. */
    strlcpy_s(r->method_name, r->method ? method : "OTHER",
              sizeof(r->method_name));
    const char *path = r->uri;
    size_t plen = strcspn(path, "?#");

    enum match m = MATCH_NONE;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        m = route_match(&routes[i], path, plen, r->caps);
        if (m != MATCH_NONE) {
            r->route = &routes[i];
            break;
        }
    }
    if (m != MATCH_OK) {
        /* Never echo the path: it may be anything. */
        respond_error(
            r, 404, m == MATCH_BAD_ID ? "no such server" : "no such endpoint");
        return;
    }
    if (!(r->method & r->route->methods)) {
        respond_error(r, 405, "method %s not allowed here", r->method_name);
        return;
    }
    if (r->route->auth && !authenticate(r)) {
        respond_error(r, 401,
                      "missing or wrong token (Authorization: Bearer TOKEN)");
        return;
    }
    if (r->route->json_body) {
        long long max = fleet_config(r->a->fleet)->max_body;
        const char *len = header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t n;
        if (!is_json_type(header(r, MHD_HTTP_HEADER_CONTENT_TYPE))) {
            respond_error(r, 415, "the body must be application/json");
            return;
        }
        if (len && parse_u63(len, &n) && n > max) {
            respond_error(r, 413, "the body is larger than %lld bytes", max);
            return;
        }
        return; /* the body follows */
    }
    /* Answered in req_end, on MHD's next call: an answer queued in this
     * first call makes MHD drop the rest of the request and send
     * "Connection: close", so no client could keep its connection. */
}

/* A piece of the body: keep up to max_body, then only count. */
static bool
req_body(struct req *r, const char *data, size_t n)
{
    long long max = fleet_config(r->a->fleet)->max_body;
    if (r->answered || !r->route || !r->route->json_body)
        return true;
    if (!r->too_large && (long long)(r->body.len + n) <= max) {
        buf_append(&r->body, data, n);
        return true;
    }
    if (!r->too_large) {
        r->too_large = true;
        r->discarded = r->body.len;
        buf_free(&r->body);
    }
    r->discarded += n;
    /* Swallow a modest overrun to answer 413; hang up on a flood. */
    return r->discarded <= (size_t)max * 4 + 1024 * 1024;
}

static void
req_end(struct req *r)
{
    if (r->too_large) {
        respond_error(r, 413, "the body is larger than %lld bytes",
                      fleet_config(r->a->fleet)->max_body);
        return;
    }
    r->route->fn(r);
}

/* --- MHD callbacks --- */

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct req *r = xcalloc(1, sizeof(*r));
    r->a = cls;
    r->conn = conn;
    r->uri = xstrdup(uri);
    r->hup_fd = -1;
    strlcpy_s(r->method_name, "OTHER", sizeof(r->method_name));
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    return r;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **con_cls)
{
    (void)version;
    struct req *r = *con_cls;
    if (!r) /* on_uri always runs first; be safe anyway */
        r = *con_cls = on_uri(cls, url, conn);
    if (!r->started) {
        r->started = true;
        r->conn = conn;
        req_begin(r, method);
        return MHD_YES;
    }
    if (*upload_size) {
        bool ok = req_body(r, upload, *upload_size);
        *upload_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (!r->answered)
        req_end(r);
    return MHD_YES;
}

static void
req_free(struct req *r)
{
    if (!r)
        return;
    stream_stop(r);
    buf_free(&r->body);
    free(r->who.project);
    free(r->who.actor);
    free(r->uri);
    free(r);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)conn;
    struct req *r = *con_cls;
    if (r && r->streaming)
        log_debug("api: event stream closed (%d)", (int)why);
    req_free(r);
    *con_cls = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_debug("api: mhd: %s", msg);
}

/* --- the loop --- */

static int64_t
on_timer(struct loop *l, void *arg)
{
    (void)l;
    struct api *a = arg;
    a->timer = 0;
    a->kicked = false;
    MHD_run(a->mhd);
    api_rearm(a);
    return -1;
}

static void
on_epoll(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct api *a = arg;
    a->kicked = false;
    MHD_run(a->mhd);
    api_rearm(a);
}

/* Have MHD_run soon, from the loop (we may be inside MHD_run or fleet).
 * With 0.9.75 in external-epoll mode a resume did not make MHD's epoll fd
 * readable (the test's live event never arrived), so ask for it. */
static void
api_kick(struct api *a)
{
    a->kicked = true;
    api_rearm(a);
}

/* Keep one timer at MHD's own next deadline (none when it has none).
 * Under load that deadline only moves later, request after request: a
 * timer already due no later is kept, since firing early costs one
 * MHD_run and deleting a timer costs a search of the loop's heap. */
static void
api_rearm(struct api *a)
{
    MHD_UNSIGNED_LONG_LONG t;
    int64_t now = now_mono_ms(), due = -1;
    if (a->kicked)
        due = now;
    else if (MHD_get_timeout(a->mhd, &t) == MHD_YES)
        due = now + (t > 86400000 ? 86400000 : (int64_t)t);
    if (a->timer && due >= 0 && a->timer_due <= due)
        return;
    loop_del_timer(a->loop, a->timer);
    a->timer = 0;
    if (due >= 0) {
        a->timer = loop_add_timer(a->loop, due - now, on_timer, a);
        a->timer_due = due;
    }
}

/* --- setup --- */

/* Bind and listen on "host:port" ("[v6]:port" too); returns the fd. */
static int
listen_on(const char *addr, bool *v6, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) {
        snprintf(err, errlen, "listen %s: not host:port", addr);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        h++, hl -= 2;
    if (hl >= sizeof(host)) {
        snprintf(err, errlen, "listen %s: host too long", addr);
        return -EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s: %s", addr, gai_strerror(rc));
        return -EINVAL;
    }
    int fd =
        socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "listen %s: socket: %s", addr, strerror(errno));
        goto out_free;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        close(fd);
        goto out_free;
    }
    *v6 = res->ai_family == AF_INET6;
    rc = fd;
out_free:
    freeaddrinfo(res);
    return rc;
}

static int
bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct api *
api_new(struct loop *l, struct fleet *f, const char *listen, char *err,
        size_t errlen)
{
    bool v6 = false;
    int fd = listen_on(listen, &v6, err, errlen);
    if (fd < 0)
        return NULL;
    struct api *a = xcalloc(1, sizeof(*a));
    a->loop = l;
    a->fleet = f;
    a->port = bound_port(fd);
    /* MHD_USE_EPOLL without an internal thread: we poll its epoll fd. */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    a->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_MEMORY_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONN_LIMIT,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, a, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, a, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a,
        MHD_OPTION_END);
    if (!a->mhd) {
        snprintf(err, errlen, "listen %s: cannot start the HTTP server",
                 listen);
        close(fd);
        goto out_free;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    a->epfd = info ? info->epoll_fd : -1;
    int rc = loop_add_fd(l, a->epfd, EPOLLIN, on_epoll, a);
    if (rc < 0) {
        snprintf(err, errlen, "listen %s: cannot watch MHD: %s", listen,
                 strerror(-rc));
        goto out_stop;
    }
    api_rearm(a);
    return a;

out_stop:
    MHD_stop_daemon(a->mhd);
out_free:
    free(a);
    return NULL;
}

void
api_free(struct api *a)
{
    if (!a)
        return;
    /* MHD refuses to stop with parked connections: wake every stream so
     * it ends, then stop (which completes and frees each request). */
    for (struct req *r = a->streams; r; r = r->next) {
        r->closing = true;
        stream_wake(r);
    }
    loop_del_fd(a->loop, a->epfd);
    loop_del_timer(a->loop, a->timer);
    MHD_stop_daemon(a->mhd);
    free(a->counts);
    free(a);
}

int
api_port(const struct api *a)
{
    return a ? a->port : -1;
}
