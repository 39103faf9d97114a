/* rescuectl: a thin libcurl client of rescued's HTTP API (docs/design.md §7).
 * Uses only libcurl, jansson, util.h, log.h and inventory.h (the disks
 * table).
 *
 * Exit codes: 0 ok, 1 the operation failed (refused by the daemon, failed
 * state, timeout), 2 usage, 3 daemon unreachable or an HTTP error. */
#include "inventory.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:8080"
#define DEFAULT_WAIT_S (15 * 60)
#ifndef RESCUED_VERSION /* the Makefile's VERSION, its one place */
#error "build with make, which passes -DRESCUED_VERSION"
#endif

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_HTTP = 3 };

struct ctl {
    char *url; /* base, no trailing slash */
    const char *token;
    const char *cacert; /* PEM CA bundle for an https:// URL; NULL: system's */
    bool json;
    CURL *curl;
};

struct reply {
    long status;
    struct buf body;
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: rescuectl [--url URL] [--token T] [--cacert FILE] [--json] "
            "COMMAND\n"
            "       rescuectl --help | --version\n"
            "  list\n"
            "  status SERVER\n"
            "  enter SERVER [--key FILE]... [--ttl DURATION] [--wait] "
            "[--timeout DURATION]\n"
            "  exit SERVER [--wait] [--timeout DURATION]\n"
            "  reboot SERVER | power-on SERVER | power-off SERVER\n"
            "  events SERVER [--follow]\n"
            "  console SERVER [--tail N]\n"
            "environment: RESCUED_URL (default " DEFAULT_URL
            "), RESCUED_TOKEN, RESCUED_CACERT\n"
            "exit: 0 ok, 1 operation failed, 2 usage, 3 daemon unreachable "
            "or HTTP error\n");
}

static void __attribute__((format(printf, 2, 3), noreturn))
die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("rescuectl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static double
elapsed_s(int64_t t0)
{
    return (double)(now_mono_ms() - t0) / 1000.0;
}

/* ---- HTTP ---- */

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    buf_append(arg, p, size * n);
    return size * n;
}

/* The server id as one path segment: "../" must not climb. */
static char *
path_for(struct ctl *c, const char *id, const char *suffix)
{
    char *esc = curl_easy_escape(c->curl, id, 0);
    if (!esc)
        die(EXIT_USAGE, "cannot encode server id");
    char *p = xasprintf("/v1/servers/%s%s", esc, suffix ? suffix : "");
    curl_free(esc);
    return p;
}

static struct curl_slist *
headers_new(struct ctl *c, const char *accept, bool has_body)
{
    struct curl_slist *h = NULL;
    char *line;
    if (c->token && *c->token) {
        line = xasprintf("Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, line);
        free(line);
    }
    line = xasprintf("Accept: %s", accept);
    h = curl_slist_append(h, line);
    free(line);
    if (has_body)
        h = curl_slist_append(h, "Content-Type: application/json");
    return h;
}

static void
unreachable(struct ctl *c, CURLcode rc, const char *errbuf)
{
    die(EXIT_HTTP, "cannot reach rescued at %s: %s", c->url,
        *errbuf ? errbuf : curl_easy_strerror(rc));
}

/* One request; the daemon being unreachable is fatal (exit 3). */
static void
http(struct ctl *c, const char *method, const char *path, const char *body,
     struct reply *r)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    char *url = xasprintf("%s%s", c->url, path);
    struct curl_slist *h = headers_new(c, "application/json", body != NULL);

    buf_reset(&r->body);
    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 5L);
    if (c->cacert)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &r->body);
    if (body)
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK)
        unreachable(c, rc, errbuf);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    free(url);
}

static json_t *
parse_json(const struct reply *r)
{
    json_error_t e;
    json_t *j =
        json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &e);
    if (!j)
        die(EXIT_HTTP, "bad JSON from rescued (HTTP %ld): %s", r->status,
            e.text);
    return j;
}

static const char *
jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* Turn a non-2xx reply into one line and an exit code. */
static void __attribute__((noreturn))
http_fail(const struct reply *r, const char *server)
{
    json_t *j =
        json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : 0;
    const char *code = j ? json_string_value(json_object_get(j, "code")) : 0;

    if (r->status == 401 || r->status == 403)
        die(EXIT_HTTP, "not authorized (check RESCUED_TOKEN)");
    if (r->status == 404 && server && (!code || !strcmp(code, "not_found")))
        die(EXIT_HTTP, "no such server: %s", server);
    if (r->status == 400 || r->status == 409)
        die(EXIT_FAILED, "%s", msg ? msg : "request refused");
    die(EXIT_HTTP, "HTTP %ld from rescued%s%s", r->status, msg ? ": " : "",
        msg ? msg : "");
}

/* GET a JSON document; any error ends the program. */
static json_t *
get_json(struct ctl *c, const char *path, const char *server)
{
    struct reply r = {0};
    http(c, "GET", path, NULL, &r);
    if (r.status / 100 != 2)
        http_fail(&r, server);
    json_t *j = parse_json(&r);
    buf_free(&r.body);
    return j;
}

static void
print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(s);
    free(s);
}

/* ---- SSE: "id:", "event:", "data:" lines, a blank line ends an event ---- */

struct sse;
/* Returns 0 to go on, 1 to stop the stream. */
typedef int sse_cb(struct sse *s, json_t *ev);

struct sse {
    struct buf line, data;
    int64_t last_id;    /* the newest event handled: the cursor */
    int64_t pending_id; /* from the "id:" line of the event being read */
    bool stopped;
    int result; /* set by cb when it stops */
    sse_cb *cb;
    void *arg;
};

static bool
sse_dispatch(struct sse *s)
{
    if (s->data.len == 0)
        return false;
    json_t *ev = json_loadb(s->data.data, s->data.len, 0, NULL);
    buf_reset(&s->data);
    if (!ev)
        return false;
    json_int_t id = json_integer_value(json_object_get(ev, "id"));
    if (!id)
        id = s->pending_id;
    s->pending_id = 0;
    /* A daemon that ignores ?after= replays history: skip what we saw. */
    if (id && id <= s->last_id) {
        json_decref(ev);
        return false;
    }
    if (id)
        s->last_id = id;
    int stop = s->cb(s, ev);
    json_decref(ev);
    return stop != 0;
}

static bool
sse_line(struct sse *s, char *l)
{
    size_t n = strlen(l);
    if (n && l[n - 1] == '\r')
        l[--n] = '\0';
    if (n == 0)
        return sse_dispatch(s);
    char *v = strchr(l, ':');
    if (v == l) /* a comment, e.g. a keep-alive */
        return false;
    if (v) {
        *v++ = '\0';
        if (*v == ' ')
            v++;
    } else {
        v = l + n;
    }
    if (!strcmp(l, "data")) {
        if (s->data.len)
            buf_append(&s->data, "\n", 1);
        buf_append(&s->data, v, strlen(v));
    } else if (!strcmp(l, "id")) {
        s->pending_id = strtoll(v, NULL, 10);
    }
    return false;
}

static size_t
on_sse(char *p, size_t size, size_t n, void *arg)
{
    struct sse *s = arg;
    buf_append(&s->line, p, size * n);
    char *start = s->line.data, *nl;
    while ((nl = memchr(start, '\n', s->line.len - (start - s->line.data)))) {
        *nl = '\0';
        if (sse_line(s, start)) {
            s->stopped = true;
            return 0; /* abort the transfer */
        }
        start = nl + 1;
    }
    size_t rest = s->line.len - (start - s->line.data);
    memmove(s->line.data, start, rest);
    s->line.len = rest;
    s->line.data[rest] = '\0';
    return size * n;
}

/* Stream a server's events after s->last_id until cb stops it, the stream
 * ends, or timeout_ms passes (0: never).  Returns the curl code. */
static CURLcode
sse_stream(struct ctl *c, const char *id, struct sse *s, int64_t timeout_ms)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    char *path = path_for(c, id, "/events");
    char *url = xasprintf("%s%s?after=%" PRId64, c->url, path, s->last_id);
    struct curl_slist *h = headers_new(c, "text/event-stream", false);
    char *lei = xasprintf("Last-Event-ID: %" PRId64, s->last_id);
    h = curl_slist_append(h, lei);

    buf_reset(&s->line);
    buf_reset(&s->data);
    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 5L);
    if (c->cacert)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_sse);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, s);
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
        unreachable(c, rc, errbuf);
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status / 100 != 2) {
            struct reply r = {.status = status};
            buf_append(&r.body, s->line.data ? s->line.data : "", s->line.len);
            http_fail(&r, id);
        }
    }
    curl_slist_free_all(h);
    free(lei);
    free(url);
    free(path);
    return rc;
}

static int64_t
last_event_id(struct ctl *c, const char *id)
{
    char *path = path_for(c, id, "/events");
    json_t *j = get_json(c, path, id);
    int64_t last = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(j, "events"), i, ev)
    {
        json_int_t n = json_integer_value(json_object_get(ev, "id"));
        if (n > last)
            last = n;
    }
    json_decref(j);
    free(path);
    return last;
}

/* ---- output ---- */

static void
format_at(const json_t *ev, char *out, size_t len)
{
    const json_t *at = json_object_get(ev, "at");
    if (json_is_integer(at)) {
        int64_t v = json_integer_value(at);
        format_time_iso(v > 100000000000LL ? v / 1000 : v, out, len);
    } else {
        strlcpy_s(out, json_string_value(at) ? json_string_value(at) : "-",
                  len);
    }
}

static void
print_event(const json_t *ev)
{
    char at[40];
    format_at(ev, at, sizeof(at));
    const char *from = json_string_value(json_object_get(ev, "from"));
    const char *to = json_string_value(json_object_get(ev, "to"));
    const char *msg = jstr(ev, "message");
    const char *actor = jstr(ev, "actor");
    if (to)
        printf("%s  %s -> %s%s%s%s", at, from ? from : "?", to,
               *msg ? " (" : "", msg, *msg ? ")" : "");
    else
        printf("%s  %s%s%s", at, jstr(ev, "kind"), *msg ? ": " : "", msg);
    if (*actor)
        printf(" [%s]", actor);
    putchar('\n');
}

/* Disks, md arrays, NICs: strings as they are, objects as key=value. */
static void
print_item(const char *label, const json_t *v)
{
    printf("%-14s", label);
    if (json_is_string(v)) {
        fputs(json_string_value(v), stdout);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x)
        {
            char *s = json_is_string(x)
                          ? xstrdup(json_string_value(x))
                          : json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("%s%s=%s", first ? "" : " ", k, s);
            free(s);
            first = false;
        }
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        fputs(s, stdout);
        free(s);
    }
    putchar('\n');
}

static void
print_kv(const char *key, const json_t *v)
{
    char label[32];
    snprintf(label, sizeof(label), "%s:", key);
    if (!v || json_is_null(v))
        return;
    print_item(label, v);
}

static void
print_status(const json_t *s)
{
    static const char *keys[] = {
        "id",      "name",  "mac",         "arch",       "firmware",
        "project", "state", "state_since", "last_error", "console"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        print_kv(keys[i], json_object_get(s, keys[i]));
    const json_t *r = json_object_get(s, "rescue");
    if (!json_is_object(r))
        return;
    print_kv("rescue_ip", json_object_get(r, "ip"));
    print_kv("rescue_mac", json_object_get(r, "mac"));
    print_kv("expires_at", json_object_get(r, "expires_at"));
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "ssh_host_keys"), i, x)
    {
        char *line =
            xasprintf("%s %s", jstr(x, "type"), jstr(x, "fingerprint"));
        json_t *v = json_string(line);
        print_item("host_key:", v);
        json_decref(v);
        free(line);
    }
    json_array_foreach(json_object_get(r, "nics"), i, x) print_item("nic:", x);
    /* Disks as a table like lsblk -f, arrays, LVM, the root guess. */
    struct buf b = {0};
    inventory_format(r, &b);
    fputs(b.data ? b.data : "", stdout);
    buf_free(&b);
}

static void
print_list(const json_t *arr)
{
    static const char *cols[] = {"id",    "project",     "arch",
                                 "state", "state_since", "last_error"};
    static const char *heads[] = {"SERVER", "PROJECT", "ARCH",
                                  "STATE",  "SINCE",   "LAST ERROR"};
    enum { NCOLS = 6 };
    int w[NCOLS];
    size_t i;
    json_t *s;
    for (int k = 0; k < NCOLS; k++)
        w[k] = (int)strlen(heads[k]);
    json_array_foreach(arr, i, s) for (int k = 0; k < NCOLS - 1; k++)
    {
        int n = (int)strlen(jstr(s, cols[k]));
        if (n > w[k])
            w[k] = n;
    }
    for (int k = 0; k < NCOLS; k++)
        printf("%-*s%s", k < NCOLS - 1 ? w[k] : 0, heads[k],
               k < NCOLS - 1 ? "  " : "\n");
    json_array_foreach(arr, i, s) for (int k = 0; k < NCOLS; k++)
    {
        const char *v = jstr(s, cols[k]);
        if (k < NCOLS - 1)
            printf("%-*s  ", w[k], *v ? v : "-");
        else
            printf("%s\n", *v ? v : "-");
    }
}

/* ---- commands ---- */

static int
cmd_list(struct ctl *c)
{
    json_t *j = get_json(c, "/v1/servers", NULL);
    if (c->json)
        print_json(j);
    else
        print_list(json_is_array(j) ? j : json_object_get(j, "servers"));
    json_decref(j);
    return EXIT_OK;
}

static int
cmd_status(struct ctl *c, const char *id)
{
    char *path = path_for(c, id, NULL);
    json_t *j = get_json(c, path, id);
    if (c->json)
        print_json(j);
    else
        print_status(j);
    json_decref(j);
    free(path);
    return EXIT_OK;
}

/* on_wait_event saw the failed state; the caller reports it. */
#define WAIT_FAILED_STATE (-2)

struct waiter {
    struct ctl *c;
    const char *id;
    const char *target, *failed, *verb;
    int64_t t0;
};

static int
report_failure(struct waiter *w)
{
    char *path = path_for(w->c, w->id, NULL);
    json_t *j = get_json(w->c, path, w->id);
    const char *e = json_string_value(json_object_get(j, "last_error"));
    const char *colon = e ? strstr(e, ": ") : NULL;
    if (!e)
        fprintf(stderr, "rescuectl: %s failed\n", w->verb);
    else if (colon)
        fprintf(stderr, "rescuectl: %s failed at step %.*s: %s\n", w->verb,
                (int)(colon - e), e, colon + 2);
    else
        fprintf(stderr, "rescuectl: %s failed: %s\n", w->verb, e);
    json_decref(j);
    free(path);
    return EXIT_FAILED;
}

static int
on_wait_event(struct sse *s, json_t *ev)
{
    struct waiter *w = s->arg;
    const char *to = json_string_value(json_object_get(ev, "to"));
    if (!to)
        return 0;
    if (w->c->json) {
        char *d = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
        puts(d);
        free(d);
    } else {
        const char *msg = jstr(ev, "message");
        printf("[%6.1fs] %s -> %s%s%s%s\n", elapsed_s(w->t0), jstr(ev, "from"),
               to, *msg ? " (" : "", msg, *msg ? ")" : "");
    }
    fflush(stdout);
    if (!strcmp(to, w->target)) {
        s->result = EXIT_OK;
        return 1;
    }
    if (!strcmp(to, w->failed)) {
        /* Not here: the handle is busy with the stream. */
        s->result = WAIT_FAILED_STATE;
        return 1;
    }
    return 0;
}

static const char *
current_state(struct ctl *c, const char *id, json_t **hold)
{
    char *path = path_for(c, id, NULL);
    *hold = get_json(c, path, id);
    free(path);
    return jstr(*hold, "state");
}

/* Follow the stream from event `after` until target or failed. */
static int
wait_for(struct waiter *w, int64_t after, long long timeout_s)
{
    struct sse s = {.last_id = after, .cb = on_wait_event, .arg = w};
    int64_t deadline = w->t0 + timeout_s * 1000;
    int rc = -1;
    while (rc < 0) {
        int64_t left = deadline - now_mono_ms();
        if (left > 0) {
            sse_stream(w->c, w->id, &s, left);
            if (s.stopped) {
                rc = s.result == WAIT_FAILED_STATE ? report_failure(w)
                                                   : s.result;
                break;
            }
        }
        /* The stream ended or timed out: ask for the state itself. */
        json_t *hold;
        const char *st = current_state(w->c, w->id, &hold);
        if (!strcmp(st, w->target))
            rc = EXIT_OK;
        else if (!strcmp(st, w->failed))
            rc = report_failure(w);
        else if (now_mono_ms() >= deadline) {
            fprintf(stderr,
                    "rescuectl: timed out after %llds waiting for %s "
                    "(state: %s)\n",
                    timeout_s, w->target, st);
            rc = EXIT_FAILED;
        } else {
            sleep(1);
        }
        json_decref(hold);
    }
    buf_free(&s.line);
    buf_free(&s.data);
    return rc;
}

struct action_opts {
    const char **keys;
    size_t nkeys;
    long long ttl;
    bool wait;
    long long timeout;
};

static int
cmd_action(struct ctl *c, const char *id, const char *type,
           const struct action_opts *o)
{
    int64_t t0 = now_mono_ms();
    int64_t after = o->wait ? last_event_id(c, id) : 0;

    json_t *body = json_pack("{s:s}", "type", type);
    if (o->nkeys) {
        json_t *keys = json_array();
        for (size_t i = 0; i < o->nkeys; i++)
            json_array_append_new(keys, json_string(o->keys[i]));
        json_object_set_new(body, "ssh_keys", keys);
    }
    if (o->ttl > 0)
        json_object_set_new(body, "ttl", json_integer(o->ttl));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    char *path = path_for(c, id, "/actions");
    struct reply r = {0};
    http(c, "POST", path, text, &r);
    free(path);
    free(text);
    if (r.status / 100 != 2)
        http_fail(&r, id);
    json_t *j = parse_json(&r);
    buf_free(&r.body);
    if (c->json)
        print_json(j);
    else
        printf("%s: %s\n", id, jstr(j, "state"));
    fflush(stdout);
    json_decref(j);
    if (!o->wait)
        return EXIT_OK;

    bool enter = !strcmp(type, "rescue");
    struct waiter w = {
        .c = c,
        .id = id,
        .target = enter ? "rescue" : "active",
        .failed = enter ? "rescue_failed" : "exit_failed",
        .verb = enter ? "rescue" : "exit",
        .t0 = t0,
    };
    return wait_for(&w, after, o->timeout);
}

static int
on_follow_event(struct sse *s, json_t *ev)
{
    struct ctl *c = s->arg;
    if (c->json) {
        char *d = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
        puts(d);
        free(d);
    } else {
        print_event(ev);
    }
    fflush(stdout);
    return 0;
}

static int
cmd_events(struct ctl *c, const char *id, bool follow)
{
    char *path = path_for(c, id, "/events");
    json_t *j = get_json(c, path, id);
    free(path);
    json_t *evs = json_object_get(j, "events");
    int64_t last = 0;
    size_t i;
    json_t *ev;
    if (c->json && !follow)
        print_json(j);
    json_array_foreach(evs, i, ev)
    {
        json_int_t n = json_integer_value(json_object_get(ev, "id"));
        if (n > last)
            last = n;
        if (follow)
            on_follow_event(&(struct sse){.arg = c}, ev);
        else if (!c->json)
            print_event(ev);
    }
    json_decref(j);
    if (!follow)
        return EXIT_OK;
    struct sse s = {.last_id = last, .cb = on_follow_event, .arg = c};
    for (;;) { /* forever: reconnect when the daemon restarts */
        sse_stream(c, id, &s, 0);
        sleep(1);
    }
}

static int
cmd_console(struct ctl *c, const char *id, long long tail)
{
    char suffix[64];
    snprintf(suffix, sizeof(suffix), "/console/log?tail=%lld", tail);
    char *path = path_for(c, id, NULL);
    char *full = xasprintf("%s%s", path, suffix);
    struct reply r = {0};
    http(c, "GET", full, NULL, &r);
    if (r.status / 100 != 2)
        http_fail(&r, id);
    fwrite(r.body.data ? r.body.data : "", 1, r.body.len, stdout);
    buf_free(&r.body);
    free(full);
    free(path);
    return EXIT_OK;
}

/* authorized_keys format: every line that is not blank or a comment. */
static void
read_keys(const char *file, struct action_opts *o)
{
    char *text;
    size_t len;
    int rc = read_file(file, &text, &len);
    if (rc < 0)
        die(EXIT_USAGE, "%s: %s", file, strerror(-rc));
    size_t before = o->nkeys;
    for (char *save, *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        while (*l == ' ' || *l == '\t')
            l++;
        size_t n = strlen(l);
        while (n && (l[n - 1] == '\r' || l[n - 1] == ' '))
            l[--n] = '\0';
        if (!n || *l == '#')
            continue;
        o->keys = xrealloc(o->keys, (o->nkeys + 1) * sizeof(*o->keys));
        o->keys[o->nkeys++] = xstrdup(l);
    }
    free(text);
    if (o->nkeys == before)
        die(EXIT_USAGE, "%s: no keys in file", file);
}

static const char *
need_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "rescuectl: %s needs a value\n", argv[*i]);
        usage(stderr);
        exit(EXIT_USAGE);
    }
    return argv[++*i];
}

static long long
duration_arg(const char *opt, const char *v)
{
    long long s;
    if (parse_duration(v, &s) < 0 || s <= 0)
        die(EXIT_USAGE, "%s: bad duration '%s'", opt, v);
    return s;
}

/* ---- output: nothing the server sent drives the terminal ----
 * A server's name, an event's message, a BMC's words, the console log:
 * stdout and stderr go through a filter that shows control characters as
 * \xNN / \u00NN (util.h buf_append_visible); newline and tab stay, and CR
 * only before LF (a serial console's line ends).  A CR or a 0xC2 at the
 * end of a write waits for the next one. */
struct visible {
    int fd;
    char held; /* 0: none */
};

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static ssize_t
visible_write(void *cookie, const char *data, size_t n)
{
    struct visible *v = cookie;
    struct buf in = {0}, out = {0};
    if (v->held)
        buf_append(&in, &v->held, 1);
    v->held = 0;
    buf_append(&in, data, n);
    size_t len = in.len;
    if (len &&
        (in.data[len - 1] == '\r' || (unsigned char)in.data[len - 1] == 0xc2))
        v->held = in.data[--len];
    size_t from = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (in.data[i] == '\r' && in.data[i + 1] == '\n') {
            buf_append_visible(&out, in.data + from, i - from, "\n\t");
            from = i + 1; /* the CR, kept, then the LF */
            buf_append(&out, "\r", 1);
        }
    buf_append_visible(&out, in.data + from, len - from, "\n\t");
    int r = write_all(v->fd, out.data, out.len);
    buf_free(&in);
    buf_free(&out);
    return r < 0 ? -1 : (ssize_t)n;
}

static int
visible_close(void *cookie)
{
    struct visible *v = cookie;
    if (v->held) {
        struct buf out = {0};
        buf_append_visible(&out, &v->held, 1, NULL);
        write_all(v->fd, out.data, out.len);
        buf_free(&out);
    }
    free(v);
    return 0;
}

static FILE *
visible_stream(int fd, int mode)
{
    struct visible *v = xcalloc(1, sizeof(*v));
    v->fd = fd;
    cookie_io_functions_t io = {.write = visible_write, .close = visible_close};
    FILE *f = fopencookie(v, "w", io);
    if (!f) {
        free(v);
        return fd == 1 ? stdout : stderr;
    }
    setvbuf(f, NULL, mode, 0);
    return f;
}

static void
visible_end(void)
{
    fclose(stdout);
    fclose(stderr);
}

int
main(int argc, char **argv)
{
    stdout = visible_stream(STDOUT_FILENO, _IOLBF);
    stderr = visible_stream(STDERR_FILENO, _IONBF);
    atexit(visible_end);
    struct ctl c = {.json = false};
    const char *url = getenv("RESCUED_URL");
    const char *cmd = NULL, *server = NULL;
    struct action_opts ao = {.timeout = DEFAULT_WAIT_S};
    bool follow = false;
    long long tail = 100;

    c.token = getenv("RESCUED_TOKEN");
    c.cacert = getenv("RESCUED_CACERT");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--url"))
            url = need_arg(argc, argv, &i);
        else if (!strcmp(a, "--token"))
            c.token = need_arg(argc, argv, &i);
        else if (!strcmp(a, "--cacert"))
            c.cacert = need_arg(argc, argv, &i);
        else if (!strcmp(a, "--json"))
            c.json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "--version")) {
            printf("rescuectl %s\n", RESCUED_VERSION);
            return EXIT_OK;
        } else if (!strcmp(a, "--key"))
            read_keys(need_arg(argc, argv, &i), &ao);
        else if (!strcmp(a, "--ttl"))
            ao.ttl = duration_arg(a, need_arg(argc, argv, &i));
        else if (!strcmp(a, "--timeout"))
            ao.timeout = duration_arg(a, need_arg(argc, argv, &i));
        else if (!strcmp(a, "--wait"))
            ao.wait = true;
        else if (!strcmp(a, "--follow"))
            follow = true;
        else if (!strcmp(a, "--tail")) {
            const char *v = need_arg(argc, argv, &i);
            char *end;
            tail = strtoll(v, &end, 10);
            if (*end || tail < 0)
                die(EXIT_USAGE, "--tail: bad number '%s'", v);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rescuectl: unknown option %s\n", a);
            usage(stderr);
            return EXIT_USAGE;
        } else if (!cmd)
            cmd = a;
        else if (!server)
            server = a;
        else {
            fprintf(stderr, "rescuectl: unexpected argument %s\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!cmd) {
        usage(stderr);
        return EXIT_USAGE;
    }

    static const struct {
        const char *name, *action;
        bool server;
    } cmds[] = {
        {"list", NULL, false},
        {"status", NULL, true},
        {"enter", "rescue", true},
        {"exit", "exit_rescue", true},
        {"reboot", "reboot", true},
        {"power-on", "power_on", true},
        {"power-off", "power_off", true},
        {"events", NULL, true},
        {"console", NULL, true},
    };
    size_t k;
    for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
        if (!strcmp(cmds[k].name, cmd))
            break;
    if (k == sizeof(cmds) / sizeof(cmds[0])) {
        fprintf(stderr, "rescuectl: unknown command %s\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (cmds[k].server != (server != NULL)) {
        fprintf(stderr, "rescuectl: %s %s\n", cmd,
                server ? "takes no server" : "needs a SERVER");
        usage(stderr);
        return EXIT_USAGE;
    }
    bool is_enter = !strcmp(cmd, "enter");
    if ((ao.nkeys || ao.ttl) && !is_enter)
        die(EXIT_USAGE, "--key and --ttl go with enter");
    if (ao.wait && !is_enter && strcmp(cmd, "exit"))
        die(EXIT_USAGE, "--wait goes with enter and exit");

    c.url = xstrdup(url && *url ? url : DEFAULT_URL);
    size_t n = strlen(c.url);
    while (n > 0 && c.url[n - 1] == '/')
        c.url[--n] = '\0';
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
        !(c.curl = curl_easy_init()))
        die(EXIT_HTTP, "cannot initialise libcurl");

    int rc;
    if (cmds[k].action)
        rc = cmd_action(&c, server, cmds[k].action, &ao);
    else if (!strcmp(cmd, "list"))
        rc = cmd_list(&c);
    else if (!strcmp(cmd, "status"))
        rc = cmd_status(&c, server);
    else if (!strcmp(cmd, "events"))
        rc = cmd_events(&c, server, follow);
    else
        rc = cmd_console(&c, server, tail);

    for (size_t i = 0; i < ao.nkeys; i++)
        free((char *)ao.keys[i]);
    free(ao.keys);
    curl_easy_cleanup(c.curl);
    curl_global_cleanup();
    free(c.url);
    return rc;
}
