/* The HTTP API in-process: a real config, store and fleet, the API on
 * http on 127.0.0.1:0, and libcurl's multi interface as the client, both
 * driven from this thread (httpclient.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api.h"
#include "config.h"
#include "fleet.h"
#include "http.h"
#include "ipmitool.h"
#include "loop.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "httpclient.h"
#include "fleetenv.h"

extern int api_sse_keepalive_ms;
void store_test_set_busy_timeout(int ms);

#define ACME "acme-secret-0123456789"
#define OTHER "other-secret-0123456789"
#define KEY                                                                    \
    "ssh-ed25519 "                                                             \
    "AAAAC3NzaC1lZDI1NTE5AAAAIL/8vzGNCpIQIPK+p7NoM73ZDLWF6tZAb3DPdMsVH8Ks "    \
    "test@api"
#define RESCUE_BODY                                                            \
    "{\"type\":\"rescue\",\"ttl\":\"15m\",\"ssh_keys\":[\"" KEY "\"]}"

static int
setup(void **state)
{
    *state = env_face_new("[project:acme]\n"
                          "token = " ACME "\n"
                          "[project:other]\n"
                          "token = " OTHER "\n"
                          "[server:srv1]\n"
                          "mac = 52:54:00:00:00:01\n"
                          "project = acme\n"
                          "power = manual:\n"
                          "[server:srv2]\n"
                          "mac = 52:54:00:00:00:02\n"
                          "project = other\n"
                          "power = manual:\n",
                          "x", api_register);
    return 0;
}

static int
count_event(void *arg, const struct store_event *ev)
{
    int64_t *v = arg;
    v[0]++;
    v[1] = ev->id;
    return 0;
}

/* Number of events and the last id, over every server. */
static void
store_snapshot(int64_t out[2])
{
    out[0] = out[1] = 0;
    assert_int_equal(store_list_events(E->st, NULL, 0, 0, count_event, out), 0);
}

static void
test_healthz_and_metrics(void **state)
{
    (void)state;
    struct resp r;
    http(&(struct call){"GET", "/healthz"}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "ok");
    assert_non_null(strstr(r.headers.data, "application/json"));
    resp_clear(&r);

    http(&(struct call){"GET", "/metrics", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "text/plain"));
    /* fleet's own, then ours: the healthz above was counted. */
    assert_non_null(strstr(r.body.data, "rescued_servers{state=\"active\"} 2"));
    assert_non_null(
        strstr(r.body.data,
               "rescued_http_requests_total{method=\"GET\",code=\"200\"} 1\n"));
    assert_non_null(strstr(
        r.body.data,
        "rescued_http_request_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
    assert_non_null(
        strstr(r.body.data, "rescued_http_request_duration_seconds_count 1\n"));
    assert_non_null(
        strstr(r.body.data, "rescued_http_request_duration_seconds_sum "));
    resp_clear(&r);

    /* The fleet's states are no stranger's business (issue 12): the
     * admin token or metrics_token (test_metrics_token), no other. */
    expect_error(&(struct call){"GET", "/metrics"}, 401, "unauthorized");
    http(&(struct call){"HEAD", "/metrics"}, &r);
    assert_int_equal(r.status, 401);
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/metrics", ACME}, 401, "unauthorized");

    expect_error(&(struct call){"POST", "/healthz", NULL, NULL, "{}"}, 405,
                 "method_not_allowed");
    http(&(struct call){"DELETE", "/metrics"}, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers.data, "Allow: GET, HEAD"));
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/nope"}, 404, "not_found");
}

/* A client keeps its connection across requests (HTTP/1.1 keep-alive):
 * MHD must not be told to close after an answer. */
static void
test_keep_alive(void **state)
{
    (void)state;
    const struct call calls[] = {
        {"GET", "/healthz"},
        {"GET", "/v1/servers/srv1", ADMIN},
        {"GET", "/v1/servers", ADMIN},
        {"GET", "/metrics", ADMIN},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        struct resp r;
        http(&calls[i], &r);
        assert_int_equal(r.status, 200);
        if (strcasestr(r.headers.data, "connection: close"))
            fail_msg("%s: the answer closes the connection", calls[i].path);
        assert_int_equal(r.connects, i == 0 ? 1 : 0);
        resp_clear(&r);
    }
}

static void
test_token_matrix(void **state)
{
    (void)state;
    struct resp r;
    /* No token, a wrong one, a wrong scheme: 401 with the challenge. */
    const char *bad[] = {NULL, "wrong", ADMIN "x", "admin-secre"};
    for (size_t i = 0; i < 4; i++) {
        http(&(struct call){"GET", "/v1/servers", bad[i]}, &r);
        assert_int_equal(r.status, 401);
        assert_string_equal(jstr(r.json, "code"), "unauthorized");
        assert_non_null(strstr(r.headers.data, "WWW-Authenticate: Bearer"));
        resp_clear(&r);
    }
    expect_error(&(struct call){"GET", "/v1/servers", NULL, NULL, NULL, false,
                                "Authorization: Basic YWRtaW46eA=="},
                 401, "unauthorized");
    expect_error(&(struct call){"GET", "/v1/servers/srv1"}, 401,
                 "unauthorized");

    /* Admin sees both. */
    http(&(struct call){"GET", "/v1/servers", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    json_t *list = json_object_get(r.json, "servers");
    assert_int_equal(json_array_size(list), 2);
    resp_clear(&r);

    /* A project sees its own only. */
    http(&(struct call){"GET", "/v1/servers", ACME}, &r);
    assert_int_equal(r.status, 200);
    list = json_object_get(r.json, "servers");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(jstr(json_array_get(list, 0), "id"), "srv1");
    resp_clear(&r);

    http(&(struct call){"GET", "/v1/servers/srv1", ACME}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "id"), "srv1");
    assert_string_equal(jstr(r.json, "state"), "active");
    resp_clear(&r);
    http(&(struct call){"GET", "/v1/servers/srv2", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);

    /* Another project's server is a server that does not exist: the same
     * status and the same body, byte for byte. */
    struct resp other, none;
    http(&(struct call){"GET", "/v1/servers/srv2", ACME}, &other);
    http(&(struct call){"GET", "/v1/servers/srv2", "nobody"}, &r);
    assert_int_equal(r.status, 401);
    resp_clear(&r);
    assert_int_equal(other.status, 404);
    assert_string_equal(jstr(other.json, "code"), "not_found");
    /* srv3 does not exist; compare with the same id length's words. */
    http(&(struct call){"GET", "/v1/servers/srv3", ACME}, &none);
    assert_int_equal(none.status, 404);
    char *want = xasprintf("{\"error\":\"no such server: srv2\","
                           "\"code\":\"not_found\"}\n");
    assert_string_equal(other.body.data, want);
    free(want);
    assert_string_equal(none.body.data, "{\"error\":\"no such server: srv3\","
                                        "\"code\":\"not_found\"}\n");
    resp_clear(&other);
    resp_clear(&none);
    /* And the same for its events and actions. */
    expect_error(&(struct call){"GET", "/v1/servers/srv2/events", OTHER "x"},
                 401, "unauthorized");
    expect_error(&(struct call){"GET", "/v1/servers/srv2/events", ACME}, 404,
                 "not_found");
    expect_error(&(struct call){"POST", "/v1/servers/srv2/actions", ACME, NULL,
                                "{\"type\":\"reboot\"}"},
                 404, "not_found");
}

static void
test_bad_input(void **state)
{
    (void)state;
    int64_t before[2], after[2];
    store_snapshot(before);
    const char *act = "/v1/servers/srv1/actions";
    struct {
        const char *body;
        const char *words;
    } bad[] = {
        {"{\"type\":", "malformed JSON"},
        {"{\"type\": \"reboot\",}", "line 1"},
        {"", "malformed JSON"},
        {"[1,2]", "must be a JSON object"},
        {"{}", "missing field: type"},
        {"{\"type\": 7}", "type must be a string"},
        {"{\"type\": \"explode\"}", "unknown action type: explode"},
        {"{\"type\": \"reboot\", \"force\": true}", "unknown field: force"},
        {"{\"type\": \"reboot\", \"ttl\": 60}", "only for a rescue"},
        {"{\"type\": \"rescue\", \"ttl\": -5}", "greater than 0"},
        {"{\"type\": \"rescue\", \"ttl\": 0}", "greater than 0"},
        {"{\"type\": \"rescue\", \"ttl\": 1.5}", "ttl must be"},
        {"{\"type\": \"rescue\", \"ttl\": \"soon\"}", "not a duration"},
        /* A year is the most; 366 days ran until a restart then. */
        {"{\"type\": \"rescue\", \"ttl\": \"366d\"}",
         "ttl must be at most a year"},
        {"{\"type\": \"rescue\", \"ttl\": 9223372036854775000}",
         "ttl must be at most a year"},
        {"{\"type\": \"rescue\", \"ssh_keys\": \"ssh-ed25519 AAAA\"}",
         "ssh_keys must be an array"},
        {"{\"type\": \"rescue\", \"ssh_keys\": [1]}", "ssh_keys[0] must be"},
        {"{\"type\": \"reboot\", \"type\": \"reboot\"}", "duplicate"},
        /* fleet's own refusal of a key that is no key: -EINVAL */
        {"{\"type\": \"rescue\", \"ssh_keys\": [\"not a key\"]}",
         "ssh_keys[0]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct resp r;
        http(&(struct call){"POST", act, ADMIN, NULL, bad[i].body}, &r);
        if (r.status != 400 || !jstr(r.json, "error") ||
            !strstr(jstr(r.json, "error"), bad[i].words))
            fail_msg("body %s: got %ld %s", bad[i].body, r.status, r.body.data);
        assert_string_equal(jstr(r.json, "code"), "bad_request");
        resp_clear(&r);
    }
    /* Malformed JSON names line and column. */
    struct resp r;
    http(&(struct call){"POST", act, ADMIN, NULL, "{\n  \"type\": x\n}"}, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(jstr(r.json, "error"), "line 2, column"));
    resp_clear(&r);

    /* Not JSON at all: 415. */
    expect_error(
        &(struct call){"POST", act, ADMIN, "text/plain", "type=reboot"}, 415,
        "unsupported_media_type");
    expect_error(&(struct call){"POST", act, ADMIN,
                                "application/x-www-form-urlencoded",
                                "type=reboot"},
                 415, "unsupported_media_type");

    /* Over max_body (1K): with Content-Length, and chunked without it. */
    char *big = xmalloc(4097);
    memset(big, ' ', 4096);
    big[0] = '{';
    memcpy(big + 4090, "}     ", 6);
    big[4096] = '\0';
    expect_error(&(struct call){"POST", act, ADMIN, NULL, big}, 413,
                 "payload_too_large");
    expect_error(&(struct call){"POST", act, ADMIN, NULL, big, true}, 413,
                 "payload_too_large");
    /* A chunked body under the limit is fine (and still wrong here). */
    expect_error(
        &(struct call){"POST", act, ADMIN, NULL, "{\"type\": \"nope\"}", true},
        400, "bad_request");
    free(big);

    /* Ids that are not ids: 404 JSON, whatever they decode to. */
    const char *paths[] = {
        "/v1/servers/../servers/srv1",
        "/v1/servers/srv1/../../healthz",
        "/v1/servers/..",
        "/v1/servers/%2e%2e",
        "/v1/servers/%2e%2e/actions",
        "/v1/servers/%2E%2E%2Fsrv1",
        "/v1/servers/srv1%00",
        "/v1/servers/srv1%00/events",
        "/v1/servers/srv1%2",
        "/v1/servers/srv1%zz",
        "/v1/servers/",
        "/v1/servers//events",
        "/v1/servers/srv1/",
        "/v1/servers/a.b",
        "/v1/servers/"
        "0123456789012345678901234567890123456789012345678901234567890123",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        expect_error(&(struct call){"GET", paths[i], ADMIN}, 404, "not_found");
        expect_error(&(struct call){"POST", paths[i], ADMIN, NULL,
                                    "{\"type\":\"reboot\"}"},
                     404, "not_found");
    }
    /* 63 characters is still an id (of no server). */
    expect_error(&(struct call){"GET",
                                "/v1/servers/"
                                "01234567890123456789012345678901234567890123"
                                "4567890123456789",
                                ADMIN},
                 404, "not_found");
    /* An escaped id character is that character. */
    http(&(struct call){"GET", "/v1/servers/srv%31", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);

    /* 4 KB of junk. */
    static const char junk_chars[] = "abc$;:@!~*'()+,=.%zZ9_-/..%00%2e";
    char *path = xmalloc(4200);
    strcpy(path, "/v1/servers/");
    size_t n = strlen(path);
    srand(7);
    while (n < 4096 + 12)
        path[n++] = junk_chars[rand() % (sizeof(junk_chars) - 1)];
    path[n] = '\0';
    expect_error(&(struct call){"GET", path, ADMIN}, 404, "not_found");
    expect_error(&(struct call){"POST", path, ADMIN, NULL, "{}"}, 404,
                 "not_found");
    free(path);

    /* Bad query arguments. */
    expect_error(
        &(struct call){"GET", "/v1/servers/srv1/events?after=x", ADMIN}, 400,
        "bad_request");
    expect_error(
        &(struct call){"GET", "/v1/servers/srv1/events?limit=0", ADMIN}, 400,
        "bad_request");
    expect_error(
        &(struct call){"GET", "/v1/servers/srv1/events?limit=-1", ADMIN}, 400,
        "bad_request");

    /* Nothing reached the store, and the daemon still answers. */
    store_snapshot(after);
    assert_int_equal(after[0], before[0]);
    assert_int_equal(after[1], before[1]);
    http(&(struct call){"GET", "/healthz"}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    http(&(struct call){"GET", "/v1/servers/srv1", ADMIN}, &r);
    assert_string_equal(jstr(r.json, "state"), "active");
    resp_clear(&r);
}

static void
test_actions_and_events(void **state)
{
    (void)state;
    struct resp r;
    const char *act = "/v1/servers/srv1/actions";
    /* No key anywhere: fleet's pre-flight refuses with 409 and its words. */
    http(&(struct call){"POST", act, ACME, NULL, "{\"type\":\"rescue\"}"}, &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(jstr(r.json, "code"), "conflict");
    assert_non_null(strstr(jstr(r.json, "error"), "no SSH key"));
    resp_clear(&r);

    /* Accepted: 202 with the server's JSON after the action. */
    http(&(struct call){"POST", act, ACME, "application/json; charset=utf-8",
                        "{\"type\":\"reboot\"}"},
         &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(jstr(r.json, "id"), "srv1");
    assert_string_equal(jstr(r.json, "state"), "active"); /* a reset only */
    resp_clear(&r);

    /* The history: an audit line by project:acme. */
    http(&(struct call){"GET", "/v1/servers/srv1/events", ACME}, &r);
    assert_int_equal(r.status, 200);
    json_t *evs = json_object_get(r.json, "events");
    assert_true(json_array_size(evs) >= 1);
    json_t *audit = json_array_get(evs, 0);
    assert_string_equal(jstr(audit, "kind"), "audit");
    assert_string_equal(jstr(audit, "actor"), "project:acme");
    assert_string_equal(jstr(audit, "server"), "srv1");
    assert_true(json_is_null(json_object_get(audit, "from")));
    /* "2026-11-23T19:00:00.123Z" */
    const char *at = jstr(audit, "at");
    assert_int_equal(strlen(at), 24);
    assert_int_equal(at[19], '.');
    assert_int_equal(at[23], 'Z');
    json_int_t first = json_integer_value(json_object_get(audit, "id"));
    size_t total = json_array_size(evs);
    resp_clear(&r);

    /* limit and after page through it. */
    http(&(struct call){"GET", "/v1/servers/srv1/events?limit=1", ADMIN}, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 1);
    resp_clear(&r);
    char *p = xasprintf("/v1/servers/srv1/events?after=%lld", (long long)first);
    http(&(struct call){"GET", p, ADMIN}, &r);
    free(p);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")),
                     total - 1);
    resp_clear(&r);
    /* srv2's history has none of srv1's. */
    http(&(struct call){"GET", "/v1/servers/srv2/events", OTHER}, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 0);
    resp_clear(&r);

    /* A rescue with a key, a ttl as a duration string: accepted, and the
     * server is on its way; a second rescue does not fit any more: 409. */
    http(&(struct call){"POST", act, ACME, NULL, RESCUE_BODY}, &r);
    assert_int_equal(r.status, 202);
    assert_string_not_equal(jstr(r.json, "state"), "active");
    resp_clear(&r);
    http(&(struct call){"POST", act, ADMIN, NULL, RESCUE_BODY}, &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(jstr(r.json, "code"), "conflict");
    resp_clear(&r);
    http(&(struct call){"GET", "/v1/servers/srv1/events?after=0", ADMIN}, &r);
    assert_non_null(strstr(r.body.data, "\"to\":\"rescue_requested\""));
    resp_clear(&r);

    /* Every one of them was counted. */
    http(&(struct call){"GET", "/metrics", ADMIN}, &r);
    assert_non_null(strstr(
        r.body.data,
        "rescued_http_requests_total{method=\"POST\",code=\"202\"} 2\n"));
    assert_non_null(strstr(
        r.body.data,
        "rescued_http_requests_total{method=\"POST\",code=\"409\"} 2\n"));
    resp_clear(&r);
}

static bool
metrics_has(const char *s)
{
    struct resp r;
    http(&(struct call){"GET", "/metrics", ADMIN}, &r);
    bool yes = r.body.data && strstr(r.body.data, s);
    resp_clear(&r);
    return yes;
}

/* Every event stream is gone, by /metrics. */
static bool
no_streams(void *arg)
{
    (void)arg;
    return metrics_has("rescued_http_event_streams 0\n");
}

/* n turns of the loop alone (arg is an int *). */
static void
loop_turns(void *n)
{
    tu_pump_turns(E->loop, *(const int *)n, 10);
}

/* The client went away: until /metrics counts no stream or ms pass, n
 * turns of the loop alone between asks. */
static bool
streams_gone(int ms, int n)
{
    return tu_until(ms, no_streams, NULL, loop_turns, &n);
}

static void
test_event_stream(void **state)
{
    (void)state;
    api_sse_keepalive_ms = 300;
    /* History: srv2's rescue (not ours to see), srv1's reboot request. */
    struct resp r;
    http(&(struct call){"POST", "/v1/servers/srv2/actions", OTHER, NULL,
                        RESCUE_BODY},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    http(&(struct call){"POST", "/v1/servers/srv1/actions", ACME, NULL,
                        "{\"type\":\"reboot\"}"},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);

    struct hc_stream sse;
    hc_stream_open(&sse,
                   &(struct call){"GET", "/v1/servers/srv1/events", ACME, NULL,
                                  NULL, false, "Accept: text/event-stream"},
                   "event: audit\n");
    const struct buf *body = &sse.r.body;
    assert_non_null(body->data);
    assert_non_null(strstr(sse.r.headers.data, "text/event-stream"));
    assert_non_null(strstr(body->data, "event: audit\ndata: {"));
    assert_non_null(strstr(body->data, "reboot requested"));
    assert_null(strstr(body->data, "srv2"));
    assert_true(metrics_has("rescued_http_event_streams 1\n"));

    /* Idle: parked, not spinning.  Only the loop runs for 1.5 s, each turn
     * waiting up to 1 s for I/O or a timer: a parked stream wakes it for
     * its keepalive (every 300 ms) and little else; a spinning one (a
     * writable socket always ready, a timer re-armed at 0) turns it
     * thousands of times.  Turns, not CPU time: a busy machine can only
     * make them fewer. */
    int turns = 0;
    int64_t end = now_mono_ms() + 1500;
    while (now_mono_ms() < end) {
        loop_run_once(E->loop, 1000);
        turns++;
    }
    if (turns > 50)
        fail_msg("idle stream: %d loop turns in 1.5 s", turns);

    /* The keepalive arrived meanwhile. */
    tu_until_text(2000, body, ": keepalive\n\n", hc_turn, NULL);
    assert_non_null(strstr(body->data, ": keepalive\n\n"));

    /* A transition arrives live, in SSE framing. */
    size_t mark = body->len;
    http(&(struct call){"POST", "/v1/servers/srv1/actions", ACME, NULL,
                        RESCUE_BODY},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    struct tu_needle live_to = {body, mark, "\"to\":\"rescue_requested\""};
    tu_until(3000, tu_buf_has, &live_to, hc_turn, NULL);
    const char *live = strstr(body->data + mark, "event: transition\n");
    assert_non_null(live);
    assert_non_null(strstr(body->data + mark, "\"to\":\"rescue_requested\""));
    /* "id: N\nevent: transition\ndata: {...}\n\n" */
    assert_true(live - body->data >= 4);
    assert_null(strstr(body->data, "srv2"));

    /* The client goes away: the next keepalive finds out, and the stream
     * is unsubscribed and freed. */
    hc_stream_close(&sse);
    assert_true(streams_gone(3000, 50));
}

/* A client that hangs up on a parked stream is noticed at once, not at the
 * next keepalive: unsubscribed and freed. */
static void
test_stream_client_hangup(void **state)
{
    (void)state;
    api_sse_keepalive_ms = 15000;
    struct hc_stream sse;
    hc_stream_open(&sse,
                   &(struct call){"GET", "/v1/servers/srv1/events", ADMIN, NULL,
                                  NULL, false, "Accept: text/event-stream"},
                   "");
    assert_non_null(sse.r.body.data);
    tu_pump_turns(E->loop, 20, 5);
    assert_true(metrics_has("rescued_http_event_streams 1\n"));
    hc_stream_close(&sse);
    assert_true(streams_gone(2000, 10));
}

/* A stream left open is ended cleanly by http_free (teardown). */
static void
test_stream_open_at_shutdown(void **state)
{
    (void)state;
    struct hc_stream sse;
    hc_stream_open(&sse,
                   &(struct call){"GET", "/v1/servers/srv1/events?after=0",
                                  ADMIN, NULL, NULL, false,
                                  "Accept: text/event-stream"},
                   "");
    assert_non_null(sse.r.body.data);
    http_free(E->http);
    E->http = NULL;
    hc_stream_close(&sse);
}

/* The setup's inventory with srv1 in project proj and other's token. */
static void
reload_with(const char *proj, const char *other_token)
{
    char *sections =
        xasprintf("[project:acme]\n"
                  "token = " ACME "\n"
                  "[project:other]\n"
                  "%s%s%s"
                  "[server:srv1]\n"
                  "mac = 52:54:00:00:00:01\n"
                  "project = %s\n"
                  "power = manual:\n"
                  "[server:srv2]\n"
                  "mac = 52:54:00:00:00:02\n"
                  "project = other\n"
                  "power = manual:\n",
                  other_token ? "token = " : "", other_token ? other_token : "",
                  other_token ? "\n" : "", proj);
    fleet_reload(E->fleet, env_config(E, NULL, sections));
    free(sections);
}

/* GET /v1/servers/srv1 as text, and srv1's object of the list (which
 * builds the view afresh each time) dumped the same way: equal. */
static char *
server_text_matches_list(void)
{
    struct resp one, all;
    http(&(struct call){"GET", "/v1/servers/srv1", ADMIN}, &one);
    http(&(struct call){"GET", "/v1/servers", ADMIN}, &all);
    assert_int_equal(one.status, 200);
    json_t *list = json_object_get(all.json, "servers");
    json_t *o = NULL;
    for (size_t i = 0; i < json_array_size(list); i++)
        if (!strcmp(jstr(json_array_get(list, i), "id"), "srv1"))
            o = json_array_get(list, i);
    assert_non_null(o);
    char *fresh = json_dumps(o, JSON_COMPACT);
    char *want = xasprintf("%s\n", fresh);
    assert_string_equal(one.body.data, want);
    char *state = xstrdup(jstr(one.json, "state"));
    free(want);
    free(fresh);
    resp_clear(&one);
    resp_clear(&all);
    return state;
}

/* The one server's view is kept between requests (fleet_server_json_text):
 * it must never show what changed since: a state, a store error, a move
 * to another project by a reload. */
static void
test_server_view_follows_changes(void **state)
{
    (void)state;
    struct resp r;
    free(server_text_matches_list());
    free(server_text_matches_list()); /* from the kept text */
    http(&(struct call){"POST", "/v1/servers/srv1/actions", ACME, NULL,
                        RESCUE_BODY},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    char *st = server_text_matches_list();
    assert_string_not_equal(st, "active");
    free(st);
    reload_with("other", OTHER);
    http(&(struct call){"GET", "/v1/servers/srv1", OTHER}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "project"), "other");
    resp_clear(&r);
    free(server_text_matches_list());
}

/* A reload that moves a server to another project ends the old project's
 * event streams of it within a second, and the new project reads only
 * what follows the move; one that removes a token ends that token's
 * streams. */
static void
test_reload_revokes_streams(void **state)
{
    (void)state;
    api_sse_keepalive_ms = 60000; /* no keepalive to find a dead client */
    struct resp r;
    http(&(struct call){"POST", "/v1/servers/srv1/actions", ACME, NULL,
                        "{\"type\":\"reboot\"}"},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    struct hc_stream sse;
    assert_true(hc_stream_open(&sse,
                               &(struct call){"GET", "/v1/servers/srv1/events",
                                              ACME, NULL, NULL, false,
                                              "Accept: text/event-stream"},
                               "reboot requested"));
    assert_true(metrics_has("rescued_http_event_streams 1\n"));

    reload_with("other", OTHER);
    int64_t t0 = now_mono_ms();
    assert_true(tu_until(1000, no_streams, NULL, hc_turn, NULL));
    assert_true(now_mono_ms() - t0 < 1000);
    assert_non_null(strstr(sse.r.body.data, ": access to srv1 revoked\n"));
    hc_stream_close(&sse);

    /* acme lost it; other sees it from the move on; admin sees it all. */
    http(&(struct call){"GET", "/v1/servers/srv1/events", ACME}, &r);
    assert_int_equal(r.status, 404);
    resp_clear(&r);
    http(&(struct call){"GET", "/v1/servers/srv1/events", OTHER}, &r);
    assert_int_equal(r.status, 200);
    json_t *evs = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(evs), 0);
    resp_clear(&r);
    http(&(struct call){"GET", "/v1/servers/srv1/events", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "reboot requested"));
    assert_non_null(
        strstr(r.body.data, "moved from project acme to project other"));
    resp_clear(&r);
    /* Its stream too starts after the move. */
    assert_true(hc_stream_open(&sse,
                               &(struct call){"GET", "/v1/servers/srv1/events",
                                              OTHER, NULL, NULL, false,
                                              "Accept: text/event-stream"},
                               ": rescued events of srv1\n\n"));
    http(&(struct call){"POST", "/v1/servers/srv1/actions", OTHER, NULL,
                        "{\"type\":\"reboot\"}"},
         &r);
    assert_int_equal(r.status, 202);
    resp_clear(&r);
    assert_true(
        tu_until_text(2000, &sse.r.body, "reboot requested", hc_turn, NULL));
    assert_null(strstr(sse.r.body.data, "project:acme"));

    /* other's token removed: its stream ends too. */
    reload_with("other", NULL);
    assert_true(tu_until(1000, no_streams, NULL, hc_turn, NULL));
    hc_stream_close(&sse);
    http(&(struct call){"GET", "/v1/servers/srv1/events", OTHER}, &r);
    assert_int_equal(r.status, 401);
    resp_clear(&r);
}

/* Another process holds the store's write lock: an action cannot be
 * recorded, so it is refused with 503 and the store's words, and nothing
 * was done (no audit, no reset). */
static void
test_action_store_locked(void **state)
{
    (void)state;
    struct resp r;
    int64_t before[2], after[2];
    store_snapshot(before);
    sqlite3 *locker;
    char *path = xasprintf("%s/data/rescued.db", E->dir);
    assert_int_equal(sqlite3_open(path, &locker), SQLITE_OK);
    free(path);
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", 0, 0, 0),
                     SQLITE_OK);
    http(&(struct call){"POST", "/v1/servers/srv1/actions", ACME,
                        "application/json", "{\"type\":\"reboot\"}"},
         &r);
    sqlite3_exec(locker, "ROLLBACK", 0, 0, 0);
    sqlite3_close(locker);
    assert_int_equal(r.status, 503);
    assert_string_equal(jstr(r.json, "code"), "unavailable");
    const char *e = jstr(r.json, "error");
    if (!strstr(e, "database is locked") || !strstr(e, "nothing was done"))
        fail_msg("error: %s", e);
    resp_clear(&r);
    store_snapshot(after);
    assert_int_equal(after[0], before[0]);
}

/* A server named in Latin-1, and an event message cut at 160 bytes inside
 * a "€" by a plain copy: /v1/servers stays valid JSON and the event is
 * listed, each bad byte a U+FFFD. */
static int
latin1_setup(void **state)
{
    *state = env_face_new("[project:acme]\n"
                          "token = " ACME "\n"
                          "[server:srv1]\n"
                          "name = caf\xe9\n"
                          "mac = 52:54:00:00:00:01\n"
                          "project = acme\n"
                          "power = manual:\n",
                          "x", api_register);
    return 0;
}

static void
test_text_not_utf8(void **state)
{
    (void)state;
    struct resp r;
    http(&(struct call){"GET", "/v1/servers", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    if (!r.json)
        fail_msg("not JSON: %s", r.body.data);
    json_t *srv = json_array_get(json_object_get(r.json, "servers"), 0);
    assert_string_equal(jstr(srv, "name"), "caf\ufffd");
    resp_clear(&r);

    /* 157 bytes of "x", then "€": the 160-byte buffer ends inside the €
     * (two of its three bytes). */
    char msg[160], text[200];
    memset(text, 'x', 157);
    snprintf(text + 157, sizeof(text) - 157, "\u20ac");
    strlcpy_s(msg, text, sizeof(msg)); /* as snprintf into msg[160] */
    assert_int_equal(strlen(msg), 159);
    fleet_audit(E->fleet, "srv1", "admin", msg);
    http(&(struct call){"GET", "/v1/servers/srv1/events", ADMIN}, &r);
    assert_int_equal(r.status, 200);
    if (!r.json)
        fail_msg("not JSON: %s", r.body.data);
    json_t *evs = json_object_get(r.json, "events");
    const char *got =
        jstr(json_array_get(evs, json_array_size(evs) - 1), "message");
    assert_non_null(got);
    memcpy(text + 157, "\ufffd\ufffd", 7); /* the € cut to two bytes */
    assert_string_equal(got, text);
    resp_clear(&r);
}

/* A metric's value from /metrics, or -1. */
static long long
metric_value(const char *name)
{
    struct resp r;
    http(&(struct call){"GET", "/metrics", ADMIN}, &r);
    long long v = -1;
    char *pat = xasprintf("\n%s ", name);
    const char *p = r.body.data ? strstr(r.body.data, pat) : NULL;
    if (p)
        v = atoll(p + strlen(pat));
    free(pat);
    resp_clear(&r);
    return v;
}

/* after=0 over a long history: every event once, in order, and the
 * stream never holds more than a page or so of it (the whole history,
 * 1,500 events of some 230 bytes, would be 340 KB). */
static void
test_event_stream_pages(void **state)
{
    (void)state;
    char msg[160];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    /* One transaction (sqlite takes the appends into the batch): 1,500
     * fsyncs would take seconds. */
    assert_int_equal(store_begin(E->st), 0);
    for (int i = 0; i < 1500; i++) {
        char m[200];
        snprintf(m, sizeof(m), "n%04d %s", i, msg);
        assert_true(store_append_event(E->st, "srv1", "audit", "test", m) > 0);
    }
    assert_int_equal(store_commit(E->st), 0);
    int64_t snap[2] = {0, 0};
    assert_int_equal(store_list_events(E->st, "srv1", 0, 0, count_event, snap),
                     0);
    struct hc_stream sse;
    assert_true(hc_stream_open(
        &sse,
        &(struct call){"GET", "/v1/servers/srv1/events?after=0", ADMIN, NULL,
                       NULL, false, "Accept: text/event-stream"},
        "n1499 "));
    const struct buf *body = &sse.r.body;
    size_t n = 0;
    long long last = 0;
    /* The body opens with a comment line: every id follows a newline. */
    for (const char *p = body->data; (p = strstr(p, "\nid: ")); p++) {
        long long id = atoll(p + 5);
        assert_true(id > last);
        last = id;
        n++;
    }
    assert_int_equal(n, (size_t)snap[0]);
    assert_int_equal(last, snap[1]);
    long long peak = metric_value("rescued_http_stream_queue_peak_bytes");
    if (peak < 0 || peak > 100000)
        fail_msg("an event stream held %lld bytes at once", peak);
    hc_stream_close(&sse);
}

/* An action on an ipmi server whose BMC never answers its RMCP ping:
 * the loop goes on serving meanwhile (a /healthz is answered at once,
 * before the action's answer), and the action answers 409 with the
 * reason once the ping's 300 ms are over. */
static void
test_action_preflight_async(void **state)
{
    (void)state;
    ipmitool_test_set_program("/bin/false");
    int bmc = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(bmc, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(bmc, (struct sockaddr *)&sa, &sl);
    char *sections = xasprintf("[server:srv9]\n"
                               "mac = 52:54:00:00:00:09\n"
                               "project = acme\n"
                               "power = ipmi://a:b@127.0.0.1:%d\n"
                               "[project:acme]\n"
                               "token = " ACME "\n",
                               ntohs(sa.sin_port));
    struct env *e = env_face_new(sections, "x", api_register);
    free(sections);

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)HC.port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    const char *body = "{\"type\":\"reboot\"}";
    char *req = xasprintf("POST /v1/servers/srv9/actions HTTP/1.1\r\n"
                          "Host: t\r\nAuthorization: Bearer " ADMIN "\r\n"
                          "Content-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n%s",
                          strlen(body), body);
    int64_t t0 = now_mono_ms();
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    free(req);
    tu_pump_turns(e->loop, 5, 2); /* the POST is in, its ping out */
    struct resp r;
    http(&(struct call){"GET", "/healthz"}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    int64_t healthz_at = now_mono_ms() - t0;
    if (healthz_at >= 250)
        fail_msg("/healthz waited %lld ms behind the pre-flight",
                 (long long)healthz_at);

    struct buf got = {0};
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int64_t end = now_mono_ms() + 3000;
    while (now_mono_ms() < end && !(got.data && strstr(got.data, "}\n"))) {
        loop_run_once(e->loop, 5);
        char tmp[1024];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n > 0)
            buf_append(&got, tmp, (size_t)n);
    }
    assert_non_null(got.data);
    assert_true(!strncmp(got.data, "HTTP/1.1 409 ", 13));
    assert_non_null(strstr(got.data, "no answer to an RMCP ping in 300 ms"));
    assert_true(now_mono_ms() - t0 >= 250);
    buf_free(&got);
    close(fd);
    close(bmc);
    void *st = e;
    env_face_teardown(&st);
}

/* [rescued] metrics_token opens /metrics, and nothing else. */
static void
test_metrics_token(void **state)
{
    struct env *e = env_dir_new("K");
    *state = e; /* for the teardown, whatever fails below */
    env_start(e, "metrics_token = scrape-0123456789abcdef\n",
              "[project:acme]\n"
              "token = " ACME "\n");
    e->http = hc_serve(e->loop);
    api_register(e->http, e->fleet);
    struct resp r;
    http(&(struct call){"GET", "/metrics", "scrape-0123456789abcdef"}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "rescued_servers{state=\"active\"}"));
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/metrics", "scrape-0123456789abcdeX"},
                 401, "unauthorized");
    expect_error(
        &(struct call){"GET", "/v1/servers", "scrape-0123456789abcdef"}, 401,
        "unauthorized");
}

int
main(void)
{
    store_test_set_busy_timeout(0); /* a held lock fails a write at once */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_token, NULL,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_healthz_and_metrics, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_server_view_follows_changes, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_token_matrix, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_reload_revokes_streams, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_action_store_locked, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_text_not_utf8, latin1_setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_actions_and_events, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_event_stream, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_stream_client_hangup, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_stream_open_at_shutdown, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_event_stream_pages, setup,
                                        env_face_teardown),
        cmocka_unit_test(test_action_preflight_async),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
