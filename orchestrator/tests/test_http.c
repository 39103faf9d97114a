/* http alone: a face of test routes on 127.0.0.1:0, no fleet.  The
 * router and its captures, the checks before a body, the body limits,
 * the reply shapes, a stream, and an upgrade over a real socket. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http.h"
#include "loop.h"
#include "testutil.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpclient.h"

struct env {
    struct loop *loop;
    struct http *h;
    size_t max_body;
    /* the stream route's */
    struct http_stream *stream;
    int stream_closed;
    /* the upgrade route's */
    struct http_upgrade *up;
    int up_calls, up_closed;
    /* the deferred route's */
    struct http_req *parked;
    int answers, gones;
    /* the wait route's (http_wait) */
    struct http_wait *wait;
    int wait_answers, wait_freed, wait_rc;
    char up_extra[64];
};

static struct env *E;

/* {"route": name, "caps": [...], "body": parsed body or null} */
static void
h_echo(struct http_req *r, void *arg)
{
    (void)arg;
    json_t *caps = json_array();
    for (int i = 0; i < HTTP_MAX_CAPS && http_req_cap(r, i)[0]; i++)
        json_array_append_new(caps, json_string(http_req_cap(r, i)));
    json_t *body = json_null();
    if (http_req_header(r, "Content-Type")) {
        body = http_req_json(r);
        if (!body) {
            json_decref(caps);
            return;
        }
    }
    http_respond_json(r, 200,
                      json_pack("{s:o, s:o}", "caps", caps, "body", body));
}

static bool
check_token(struct http_req *r, void *arg)
{
    (void)arg;
    const char *t = http_req_header(r, "Authorization");
    if (!t || strcmp(t, "Bearer ok") != 0) {
        http_respond_error(r, 401, "no");
        return false;
    }
    http_req_set_actor(r, "tester");
    http_req_set_data(r, xstrdup("data"), free);
    return true;
}

static void
h_data(struct http_req *r, void *arg)
{
    (void)arg;
    http_respond_json(r, 200, json_pack("{s:s}", "data", http_req_data(r)));
}

static void
h_silent(struct http_req *r, void *arg)
{
    (void)r;
    (void)arg;
}

static void
h_text(struct http_req *r, void *arg)
{
    (void)arg;
    struct buf b = {0};
    http_respond_buf(r, 200, &b, "text/plain");
}

static void
stream_closed(void *arg)
{
    struct env *e = arg;
    e->stream_closed++;
    e->stream = NULL;
}

static void
h_stream(struct http_req *r, void *arg)
{
    struct env *e = arg;
    e->stream = http_respond_stream(r, 200, "text/x-test", stream_closed, e);
    if (!e->stream) /* refused: http answered */
        return;
    http_stream_write(e->stream, "hello\n", 6);
}

static void
up_closed(void *arg)
{
    struct env *e = arg;
    e->up_closed++;
    e->up = NULL;
}

static void
on_up(struct http_upgrade *u, void *arg)
{
    struct env *e = arg;
    e->up = u;
    e->up_calls++;
    size_t n;
    const char *x = http_upgrade_extra(u, &n);
    snprintf(e->up_extra, sizeof(e->up_extra), "%.*s", (int)n, x);
}

static void
h_up(struct http_req *r, void *arg)
{
    const char *proto = http_req_header(r, "Upgrade");
    if (!proto || strcmp(proto, "echo") != 0) {
        http_respond_error(r, 400, "upgrade to echo only");
        return;
    }
    struct http_answer *a = http_answer_upgrade(r, "echo", up_closed, arg);
    assert_non_null(a);
    http_answer_header(a, "X-Up", "yes");
    http_respond(r, 101, a);
}

/* http_answer_upgrade on a route without HTTP_UPGRADE: refused. */
static void
h_not_up(struct http_req *r, void *arg)
{
    assert_null(http_answer_upgrade(r, "echo", up_closed, arg));
    http_respond_error(r, 400, "not an upgrade route");
}

static void
deferred_answer(struct http_req *r, void *arg)
{
    struct env *e = arg;
    e->answers++;
    e->parked = NULL;
    http_respond_json(r, 200, json_pack("{s:s}", "later", "yes"));
}

static void
deferred_gone(void *arg)
{
    struct env *e = arg;
    e->gones++;
    e->parked = NULL;
}

static void
h_defer(struct http_req *r, void *arg)
{
    struct env *e = arg;
    e->parked = r;
    http_req_defer(r, deferred_answer, deferred_gone, e);
}

static void
wait_answer(struct http_req *r, void *data, int rc)
{
    struct env *e = data;
    e->wait_answers++;
    e->wait_rc = rc;
    http_respond_json(r, rc < 0 ? 503 : 200, json_pack("{s:i}", "rc", rc));
}

static void
wait_free(void *data)
{
    struct env *e = data;
    e->wait_freed++;
    e->wait = NULL;
}

/* /wait?now=1: the call answers before the park (SQLite's inline
 * callback); /wait: the test answers later with http_wait_done. */
static void
h_wait(struct http_req *r, void *arg)
{
    struct env *e = arg;
    struct http_wait *w = http_wait_new(r, wait_answer, e, wait_free);
    e->wait = w;
    if (http_req_query(r, "now"))
        http_wait_done(w, 0);
    http_wait_park(w);
}

/* A file answer from an offset, as bootpath's Range answers are: bytes
 * BLOB_OFF .. size - BLOB_TAIL of the env's blob file. */
#define BLOB_SIZE (3 * 1024 * 1024 + 17)
#define BLOB_OFF 1000
#define BLOB_TAIL 7
static char blob_path[64];

static void
h_blob(struct http_req *r, void *arg)
{
    (void)arg;
    int fd = open(blob_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    http_respond(r, 200,
                 http_answer_file(fd, BLOB_OFF,
                                  BLOB_SIZE - BLOB_OFF - BLOB_TAIL,
                                  "application/octet-stream"));
}

static const struct http_route routes[] = {
    {"/defer", HTTP_GET, 0, NULL, h_defer, NULL},
    {"/wait", HTTP_GET, 0, NULL, h_wait, NULL},
    {"/blob", HTTP_GET, 0, NULL, h_blob, NULL},
    {"/plain", HTTP_GET | HTTP_HEAD, 0, NULL, h_echo, NULL},
    {"/item/{}", HTTP_GET | HTTP_DELETE, 0, NULL, h_echo, NULL},
    {"/two/{}/and/{}", HTTP_GET, 0, NULL, h_echo, NULL},
    {"/mac/{mac}.txt", HTTP_GET, 0, NULL, h_echo, NULL},
    {"/tok/{token}", HTTP_GET, 0, NULL, h_echo, NULL},
    {"/file/{file}", HTTP_GET, 0, NULL, h_echo, NULL},
    {"/post", HTTP_POST, HTTP_JSON_BODY, check_token, h_echo, NULL},
    {"/data", HTTP_GET, 0, check_token, h_data, NULL},
    {"/silent", HTTP_GET, 0, NULL, h_silent, NULL},
    {"/text", HTTP_GET, 0, NULL, h_text, NULL},
    {"/stream", HTTP_GET, 0, NULL, h_stream, NULL},
    {"/up", HTTP_GET, HTTP_UPGRADE, NULL, h_up, on_up},
    {"/notup", HTTP_GET, 0, NULL, h_not_up, NULL},
    /* One path, a route per method: a JSON POST beside a bodiless GET. */
    {"/both", HTTP_POST, HTTP_JSON_BODY, NULL, h_echo, NULL},
    {"/both", HTTP_GET | HTTP_DELETE, 0, NULL, h_text, NULL},
};

static size_t
max_body(void *arg)
{
    return ((struct env *)arg)->max_body;
}

static int
setup(void **state)
{
    struct env *e = xcalloc(1, sizeof(*e));
    e->loop = loop_new();
    e->max_body = 64;
    e->h = hc_serve(e->loop);
    struct http_face face = {routes, sizeof(routes) / sizeof(routes[0]), e,
                             max_body};
    http_add_face(e->h, &face);
    E = e;
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    hc_stop();
    http_free(e->h);
    loop_free(e->loop);
    free(e);
    E = NULL;
    return 0;
}

/* rescued ignores SIGPIPE before it starts http: then file answers go by
 * sendfile(2), and must be the same bytes as the copying path gives. */
static int
setup_sigpipe_ignored(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    return setup(state);
}

static int
teardown_sigpipe(void **state)
{
    signal(SIGPIPE, SIG_DFL);
    return teardown(state);
}

/* The blob's bytes from BLOB_OFF, served by E->h; sendfile or not. */
static void
expect_blob(bool sendfile)
{
    assert_int_equal(http_sendfile(E->h), sendfile);
    char *want = xmalloc(BLOB_SIZE);
    for (size_t i = 0; i < BLOB_SIZE; i++)
        want[i] = (char)(i * 2654435761u >> 13);
    snprintf(blob_path, sizeof(blob_path), "/tmp/test_http_blob.%d",
             (int)getpid());
    assert_int_equal(write_file_atomic(blob_path, want, BLOB_SIZE, 0600), 0);
    struct resp r;
    http(&(struct call){"GET", "/blob"}, &r);
    unlink(blob_path);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, BLOB_SIZE - BLOB_OFF - BLOB_TAIL);
    assert_memory_equal(r.body.data, want + BLOB_OFF, r.body.len);
    resp_clear(&r);
    free(want);
}

static void
test_file_answer_copied(void **state)
{
    (void)state;
    expect_blob(false);
}

static void
test_file_answer_sendfile(void **state)
{
    (void)state;
    expect_blob(true);
}

/* GET path: 200 with these captures ("a,b"). */
static void
expect_caps(const char *path, const char *caps)
{
    struct resp r;
    http(&(struct call){"GET", path}, &r);
    struct buf got = {0};
    json_t *arr = json_object_get(r.json, "caps");
    for (size_t i = 0; i < json_array_size(arr); i++)
        buf_printf(&got, "%s%s", i ? "," : "",
                   json_string_value(json_array_get(arr, i)));
    if (r.status != 200 || strcmp(got.data ? got.data : "", caps) != 0)
        fail_msg("GET %s: expected 200 [%s], got %ld %s", path, caps, r.status,
                 r.body.data ? r.body.data : "");
    buf_free(&got);
    resp_clear(&r);
}

static void
test_router(void **state)
{
    (void)state;
    expect_caps("/plain", "");
    expect_caps("/plain?x=1#y", "");
    expect_caps("/item/srv1", "srv1");
    expect_caps("/item/a%31", "a1");
    expect_caps("/two/a/and/b", "a,b");
    expect_caps("/mac/52-54-00-00-00-01.txt", "52-54-00-00-00-01");
    expect_caps("/mac/52:54:00:AA:bb:01.txt", "52:54:00:AA:bb:01");
    expect_caps("/file/vmlinuz", "vmlinuz");
    expect_caps("/file/initrd.gz", "initrd.gz");
    char tok[80] = "/tok/";
    memset(tok + 5, 'a', 64);
    tok[69] = '\0';
    expect_caps(tok, tok + 5);
    char id[80] = "/item/";
    memset(id + 6, 'x', 63);
    id[69] = '\0';
    expect_caps(id, id + 6);

    /* A path that names no route, and a capture that is no id. */
    expect_error(&(struct call){"GET", "/nope"}, 404, "not_found");
    expect_error(&(struct call){"GET", "/plain/"}, 404, "not_found");
    expect_error(&(struct call){"GET", "/plainx"}, 404, "not_found");
    const char *bad[] = {
        "/item/",      "/item/a.b",   "/item/%2e%2e",
        "/item/a%00",  "/item/a%2",   "/item/a%zz",
        "/item/a%2Fb", "/two/a/and/", "/mac/52:54:00:00:00:0g.txt",
        "/mac/.txt",   "/tok/ABCDEF", "/tok/abc-def",
        "/file/.hide", "/file/..",    "/file/a%2f..",
        "/item/a/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(&(struct call){"GET", bad[i]}, 404, "not_found");
    id[6 + 63] = 'x';
    id[6 + 64] = '\0';
    expect_error(&(struct call){"GET", id}, 404, "not_found");
    tok[5 + 64] = 'a';
    tok[5 + 65] = '\0';
    expect_error(&(struct call){"GET", tok}, 404, "not_found");

    /* The methods a route takes; the others get 405 and Allow. */
    struct resp r;
    http(&(struct call){"HEAD", "/plain"}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    http(&(struct call){"DELETE", "/item/x"}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    http(&(struct call){"PUT", "/item/x"}, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(jstr(r.json, "code"), "method_not_allowed");
    assert_non_null(strstr(r.headers.data, "Allow: GET, DELETE\r\n"));
    resp_clear(&r);
    http(&(struct call){"BREW", "/plain"}, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers.data, "Allow: GET, HEAD\r\n"));
    resp_clear(&r);

    /* A route per method on one path: each method finds its own (the GET
     * needs no JSON body), one no route takes is 405. */
    http(&(struct call){"GET", "/both"}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "text/plain"));
    resp_clear(&r);
    http(&(struct call){"DELETE", "/both"}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    http(&(struct call){"POST", "/both", NULL, NULL, "{\"a\":1}"}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"a\""));
    resp_clear(&r);
    expect_error(&(struct call){"POST", "/both", NULL, "text/plain", "x"}, 415,
                 "unsupported_media_type");
    http(&(struct call){"PUT", "/both"}, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers.data, "Allow: GET, POST, DELETE\r\n"));
    resp_clear(&r);
}

static void
test_check_and_body(void **state)
{
    (void)state;
    /* The check runs first: no token and the wrong type is a 401. */
    struct resp r;
    http(&(struct call){"POST", "/post", NULL, "text/plain", "x"}, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(jstr(r.json, "code"), "unauthorized");
    assert_string_equal(jstr(r.json, "error"), "no");
    assert_non_null(strstr(r.headers.data, "WWW-Authenticate: Bearer"));
    resp_clear(&r);
    expect_error(&(struct call){"POST", "/post", "ok", "text/plain", "{}"}, 415,
                 "unsupported_media_type");
    expect_error(
        &(struct call){"POST", "/post", "ok", "application/jsonx", "{}"}, 415,
        "unsupported_media_type");

    /* Within max_body (64): parsed; with a charset too. */
    http(&(struct call){"POST", "/post", "ok",
                        "application/json; charset=utf-8", "{\"a\": 1}"},
         &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(r.json, "body"), "a")),
                     1);
    resp_clear(&r);
    http(&(struct call){"POST", "/post", "ok", NULL, "{\"a\": [1, 2]}", true},
         &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    http(&(struct call){"POST", "/post", "ok", NULL, "{\"a\":\n x}"}, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(jstr(r.json, "error"), "malformed JSON"));
    assert_non_null(strstr(jstr(r.json, "error"), "line 2, column"));
    resp_clear(&r);
    expect_error(
        &(struct call){"POST", "/post", "ok", NULL, "{\"a\":1,\"a\":2}"}, 400,
        "bad_request");

    /* Over it: 413, with Content-Length and chunked; the limit is asked
     * at each request. */
    char big[200];
    hc_big_body(big, sizeof(big));
    http(&(struct call){"POST", "/post", "ok", NULL, big}, &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(jstr(r.json, "error"),
                        "the body is larger than 64 bytes");
    resp_clear(&r);
    expect_error(&(struct call){"POST", "/post", "ok", NULL, big, true}, 413,
                 "payload_too_large");
    E->max_body = 1024;
    http(&(struct call){"POST", "/post", "ok", NULL, big}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);

    /* A check's data and actor live as long as the request. */
    http(&(struct call){"GET", "/data", "ok"}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "data"), "data");
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/data", "bad"}, 401, "unauthorized");
}

static void
test_answers(void **state)
{
    (void)state;
    struct resp r;
    /* A handler that forgets to answer still ends the request. */
    expect_error(&(struct call){"GET", "/silent"}, 500, "internal");
    http(&(struct call){"GET", "/text"}, &r);
    assert_int_equal(r.status, 200);
    assert_null(r.body.data);
    assert_non_null(strstr(r.headers.data, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(r.headers.data, "Cache-Control: no-store\r\n"));
    assert_non_null(strstr(r.headers.data, "Content-Length: 0\r\n"));
    resp_clear(&r);
    /* Error bodies are {"error", "code"} and a newline, nothing else. */
    http(&(struct call){"GET", "/nope"}, &r);
    assert_string_equal(r.body.data, "{\"error\":\"no such endpoint\","
                                     "\"code\":\"not_found\"}\n");
    resp_clear(&r);
    http(&(struct call){"GET", "/notup", NULL, NULL, NULL, false,
                        "Upgrade: echo"},
         &r);
    assert_int_equal(r.status, 400);
    resp_clear(&r);

    /* Every answer above was counted, by method and status. */
    struct buf m = {0};
    http_metrics(E->h, &m);
    assert_non_null(
        strstr(m.data,
               "rescued_http_requests_total{method=\"GET\",code=\"500\"} 1\n"));
    assert_non_null(
        strstr(m.data,
               "rescued_http_requests_total{method=\"GET\",code=\"404\"} 1\n"));
    assert_non_null(strstr(
        m.data,
        "rescued_http_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(m.data, "rescued_http_event_streams 0\n"));
    buf_free(&m);

    /* Listen addresses that are none. */
    char err[256] = "";
    assert_null(http_new(E->loop, "nowhere", err, sizeof(err)));
    assert_non_null(strstr(err, "not host:port"));
    assert_null(http_new(E->loop, "127.0.0.1:", err, sizeof(err)));
    assert_null(http_new(E->loop, "no.such.host.invalid:80", err, sizeof(err)));
}

/* arg is the struct env *: the stream route's stream closed n times. */
static bool
stream_closed_once(void *arg)
{
    return ((struct env *)arg)->stream_closed >= 1;
}

static void
test_stream(void **state)
{
    (void)state;
    struct hc_stream sse;
    assert_true(
        hc_stream_open(&sse, &(struct call){"GET", "/stream"}, "hello\n"));
    assert_non_null(strstr(sse.r.headers.data, "Content-Type: text/x-test"));
    assert_non_null(E->stream);
    struct buf m = {0};
    http_metrics(E->h, &m);
    assert_non_null(strstr(m.data, "rescued_http_event_streams 1\n"));
    buf_free(&m);

    /* A write later, from outside any request, wakes the parked stream. */
    tu_pump_turns(E->loop, 20, 5);
    http_stream_write(E->stream, "more\n", 5);
    tu_until_text(3000, &sse.r.body, "more\n", hc_turn, NULL);
    assert_non_null(strstr(sse.r.body.data, "hello\nmore\n"));

    /* The client hangs up: closed runs once, and the stream is gone. */
    hc_stream_close(&sse);
    tu_pump_until(E->loop, 3000, stream_closed_once, E);
    assert_int_equal(E->stream_closed, 1);
    assert_null(E->stream);

    /* One left open is ended by http_free, closed included. */
    assert_true(
        hc_stream_open(&sse, &(struct call){"GET", "/stream"}, "hello\n"));
    assert_non_null(E->stream);
    http_free(E->h);
    E->h = NULL;
    assert_int_equal(E->stream_closed, 2);
    hc_stream_close(&sse);
}

/* A client on a raw socket to http: what the server sent, how it ended. */
struct peer {
    int fd;
    struct buf in;
    int end; /* 0 while open, 1 at EOF, -1 when a read failed */
};

static void
peer_connect_to(struct peer *p, int port)
{
    memset(p, 0, sizeof(*p));
    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(p->fd >= 0);
    assert_int_equal(connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void
peer_connect(struct peer *p)
{
    peer_connect_to(p, HC.port);
}

static void
peer_close(struct peer *p)
{
    close(p->fd);
    buf_free(&p->in);
}

/* One turn: the loop, then what the server sent (5 ms at most each). */
static void
peer_turn(void *arg)
{
    struct peer *p = arg;
    loop_run_once(E->loop, 5);
    struct pollfd pf = {.fd = p->fd, .events = POLLIN};
    if (p->end || poll(&pf, 1, 5) <= 0)
        return;
    char tmp[512];
    ssize_t n = read(p->fd, tmp, sizeof(tmp));
    if (n > 0)
        buf_append(&p->in, tmp, (size_t)n);
    else
        p->end = n == 0 ? 1 : -1;
}

static bool
peer_ended(void *arg)
{
    return ((struct peer *)arg)->end != 0;
}

/* Turn until the server has sent text, or 3 s. */
static bool
peer_until(struct peer *p, const char *text)
{
    return tu_until_text(3000, &p->in, text, peer_turn, p);
}

/* arg is the struct env *: the upgrade route has its connection. */
static bool
upgraded(void *arg)
{
    return ((struct env *)arg)->up != NULL;
}

static void
test_upgrade(void **state)
{
    (void)state;
    /* Not asked for the right protocol: the handler's own 400. */
    expect_error(&(struct call){"GET", "/up"}, 400, "bad_request");
    assert_int_equal(E->up_calls, 0);

    /* 101, then the socket is the route's: bytes both ways. */
    struct peer c;
    peer_connect(&c);
    const char *req = "GET /up HTTP/1.1\r\nHost: test\r\n"
                      "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n";
    assert_int_equal(write(c.fd, req, strlen(req)), (ssize_t)strlen(req));
    assert_true(peer_until(&c, "\r\n\r\n"));
    assert_true(!strncmp(c.in.data, "HTTP/1.1 101 ", 13));
    assert_non_null(strcasestr(c.in.data, "\r\nUpgrade: echo\r\n"));
    assert_non_null(strcasestr(c.in.data, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(c.in.data, "\r\nX-Up: yes\r\n"));
    tu_pump_until(E->loop, 2000, upgraded, E);
    assert_int_equal(E->up_calls, 1);
    assert_non_null(E->up);

    int sfd = http_upgrade_fd(E->up);
    assert_int_equal(write(c.fd, "ping", 4), 4);
    struct pollfd p = {.fd = sfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    char got[8] = "";
    assert_int_equal(read(sfd, got, sizeof(got)), 4);
    assert_memory_equal(got, "ping", 4);
    assert_int_equal(write(sfd, "pong", 4), 4);
    buf_reset(&c.in);
    assert_true(peer_until(&c, "pong"));

    /* Closed by the route: the client sees the end; closed is not run. */
    http_upgrade_close(E->up);
    E->up = NULL;
    buf_reset(&c.in);
    assert_true(tu_until(3000, peer_ended, &c, peer_turn, &c));
    assert_int_equal(c.end, 1);
    assert_int_equal(E->up_closed, 0);
    peer_close(&c);

    /* Bytes sent right after the request reach the route as extra; one
     * left open is closed by http_free, which runs closed. */
    peer_connect(&c);
    char *req2 = xasprintf("%searly", req);
    assert_int_equal(write(c.fd, req2, strlen(req2)), (ssize_t)strlen(req2));
    free(req2);
    tu_pump_until(E->loop, 3000, upgraded, E);
    assert_non_null(E->up);
    assert_string_equal(E->up_extra, "early");
    http_free(E->h);
    E->h = NULL;
    assert_int_equal(E->up_closed, 1);
    assert_null(E->up);
    peer_close(&c);
}

static void
peer_send(struct peer *p, const char *text)
{
    assert_int_equal(write(p->fd, text, strlen(text)), (ssize_t)strlen(text));
}

static void
set_limits(int timeout_s, unsigned streams, unsigned per_caller)
{
    struct http_limits lim = HTTP_LIMITS_DEFAULT;
    lim.request_timeout_s = timeout_s;
    lim.max_streams = streams;
    lim.max_streams_per_caller = per_caller;
    http_set_limits(E->h, &lim);
}

static bool
metric_has(const char *line)
{
    struct buf m = {0};
    http_metrics(E->h, &m);
    bool ok = strstr(m.data, line) != NULL;
    buf_free(&m);
    return ok;
}

/* A byte every 200 ms keeps MHD's idle timeout at bay but not the
 * request deadline: the connection is cut within it; one idle from
 * accept too; a request that comes whole in time is answered, and the
 * next on the same connection has a deadline of its own. */
static void
test_request_deadline(void **state)
{
    (void)state;
    set_limits(1, 256, 8);
    struct peer slow, idle, good;
    peer_connect(&idle);
    peer_connect(&good);
    /* good: a request every 400 ms, 1.6 s in all, each answered: the
     * deadline runs from the last answer, not from accept. */
    const char *req = "GET /plain HTTP/1.1\r\nHost: test\r\n\r\n";
    for (int i = 0; i < 5; i++) {
        if (i)
            tu_until(400, NULL, NULL, peer_turn, &good);
        buf_reset(&good.in);
        peer_send(&good, req);
        assert_true(peer_until(&good, "\r\n\r\n{"));
        assert_true(!strncmp(good.in.data, "HTTP/1.1 200 ", 13));
    }
    peer_close(&good);
    assert_true(tu_until(2000, peer_ended, &idle, peer_turn, &idle));
    peer_connect(&slow);
    int64_t t0 = now_mono_ms();
    const char *trickle = "GET /plain HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaaa";
    for (size_t i = 0; i < strlen(trickle) && !slow.end; i++) {
        if (write(slow.fd, trickle + i, 1) != 1)
            break;
        tu_until(200, peer_ended, &slow, peer_turn, &slow);
    }
    assert_int_equal(slow.end, 1);
    int64_t took = now_mono_ms() - t0;
    assert_true(took >= 900 && took < 3000);
    assert_true(metric_has("rescued_http_requests_cut_total 2\n"));
    peer_close(&slow);
    peer_close(&idle);
}

/* A body that trickles is cut at the deadline too. */
static void
test_body_deadline(void **state)
{
    (void)state;
    set_limits(1, 256, 8);
    struct peer p;
    peer_connect(&p);
    peer_send(&p, "POST /post HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                  "ok\r\nContent-Type: application/json\r\n"
                  "Content-Length: 40\r\n\r\n{");
    int64_t t0 = now_mono_ms();
    for (int i = 0; i < 30 && !p.end; i++) {
        if (write(p.fd, " ", 1) != 1)
            break;
        tu_until(200, peer_ended, &p, peer_turn, &p);
    }
    assert_int_equal(p.end, 1);
    assert_true(now_mono_ms() - t0 < 3000);
    assert_true(metric_has("rescued_http_requests_cut_total 1\n"));
    peer_close(&p);
}

static bool
streams_are(void *arg)
{
    char line[64];
    snprintf(line, sizeof(line), "rescued_http_event_streams %d\n",
             *(int *)arg);
    return metric_has(line);
}

/* Streams past the per-caller cap, then past the cap in all: 429. */
static void
test_stream_caps(void **state)
{
    (void)state;
    set_limits(30, 256, 1);
    struct hc_stream a;
    assert_true(
        hc_stream_open(&a, &(struct call){"GET", "/stream"}, "hello\n"));
    expect_error(&(struct call){"GET", "/stream"}, 429, "too_many_requests");
    set_limits(30, 1, 8);
    expect_error(&(struct call){"GET", "/stream"}, 429, "too_many_requests");
    assert_true(metric_has("rescued_http_event_streams 1\n"));
    hc_stream_close(&a);
    int zero = 0;
    assert_true(tu_pump_until(E->loop, 3000, streams_are, &zero));
    struct hc_stream b;
    assert_true(
        hc_stream_open(&b, &(struct call){"GET", "/stream"}, "hello\n"));
    hc_stream_close(&b);
}

/* MHD_OPTION_PER_IP_CONNECTION_LIMIT: the third connection from one
 * address is closed at once, the first two are served. */
static void
test_per_ip_limit(void **state)
{
    (void)state;
    struct http_limits lim = HTTP_LIMITS_DEFAULT;
    lim.per_ip_conns = 2;
    char err[256] = "";
    struct http *h2 =
        http_new_limited(E->loop, "127.0.0.1:0", false, &lim, err, sizeof(err));
    assert_non_null(h2);
    struct http_face face = {routes, sizeof(routes) / sizeof(routes[0]), E,
                             max_body};
    http_add_face(h2, &face);
    struct peer p[3];
    for (int i = 0; i < 3; i++)
        peer_connect_to(&p[i], http_port(h2));
    assert_true(tu_until(3000, peer_ended, &p[2], peer_turn, &p[2]));
    for (int i = 0; i < 2; i++) {
        peer_send(&p[i], "GET /plain HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_true(peer_until(&p[i], "\r\n\r\n{"));
        assert_true(!strncmp(p[i].in.data, "HTTP/1.1 200 ", 13));
    }
    for (int i = 0; i < 3; i++)
        peer_close(&p[i]);
    http_free(h2);
}

static bool
parked(void *arg)
{
    return ((struct env *)arg)->parked != NULL;
}

static bool
gone_once(void *arg)
{
    return ((struct env *)arg)->gones >= 1;
}

/* A deferred answer: parked while others are served, answered when
 * resumed; a client that left meanwhile gets gone, not the answer; one
 * still parked at http_free gets gone too. */
static void
test_deferred(void **state)
{
    (void)state;
    struct peer p;
    peer_connect(&p);
    peer_send(&p, "GET /defer HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(tu_until(2000, parked, E, peer_turn, &p));
    expect_caps("/plain", ""); /* served meanwhile */
    assert_null(p.in.data);
    http_req_resume(E->parked);
    assert_true(peer_until(&p, "\"later\""));
    assert_true(!strncmp(p.in.data, "HTTP/1.1 200 ", 13));
    assert_int_equal(E->answers, 1);
    peer_close(&p);

    peer_connect(&p);
    peer_send(&p, "GET /defer HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(tu_until(2000, parked, E, peer_turn, &p));
    peer_close(&p);
    http_req_resume(E->parked);
    assert_true(tu_pump_until(E->loop, 2000, gone_once, E));
    assert_int_equal(E->answers, 1);

    peer_connect(&p);
    peer_send(&p, "GET /defer HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(tu_until(2000, parked, E, peer_turn, &p));
    http_free(E->h);
    E->h = NULL;
    assert_int_equal(E->gones, 2);
    assert_int_equal(E->answers, 1);
    peer_close(&p);
}

static bool
freed_thrice(void *arg)
{
    return ((struct env *)arg)->wait_freed >= 3;
}

static bool
waiting(void *arg)
{
    return ((struct env *)arg)->wait != NULL;
}

/* http_wait: an answer that came before the park is given at once; one
 * that comes later, from the loop; a client gone meanwhile gets none,
 * and its data goes when the late answer comes (-ECANCELED: what it
 * waited on closed), never before, and once. */
static void
test_wait(void **state)
{
    (void)state;
    struct resp r;
    http(&(struct call){"GET", "/wait?now=1"}, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(E->wait_answers, 1);
    assert_int_equal(E->wait_freed, 1);
    resp_clear(&r);

    struct peer p;
    peer_connect(&p);
    peer_send(&p, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(tu_until(2000, waiting, E, peer_turn, &p));
    expect_caps("/plain", ""); /* served meanwhile */
    assert_null(p.in.data);
    http_wait_done(E->wait, -ECANCELED);
    assert_true(peer_until(&p, "\"rc\""));
    assert_true(!strncmp(p.in.data, "HTTP/1.1 503 ", 13));
    assert_int_equal(E->wait_rc, -ECANCELED);
    assert_int_equal(E->wait_answers, 2);
    assert_int_equal(E->wait_freed, 2);
    peer_close(&p);

    peer_connect(&p);
    peer_send(&p, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(tu_until(2000, waiting, E, peer_turn, &p));
    peer_close(&p);
    /* A parked connection is not polled: http hears of the hang-up once
     * resumed by the answer, and w's data goes then. */
    http_wait_done(E->wait, -ECANCELED);
    assert_true(tu_pump_until(E->loop, 2000, freed_thrice, E));
    assert_int_equal(E->wait_answers, 2);
    /* Gone at http_free while parked: freed when the answer comes. */
    peer_connect(&p);
    peer_send(&p, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(tu_until(2000, waiting, E, peer_turn, &p));
    struct http_wait *w = E->wait;
    http_free(E->h);
    E->h = NULL;
    assert_int_equal(E->wait_freed, 3); /* the call still holds w */
    http_wait_done(w, -ECANCELED);
    assert_int_equal(E->wait_freed, 4);
    assert_int_equal(E->wait_answers, 2);
    peer_close(&p);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_router, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_ip_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_answer_copied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_file_answer_sendfile, setup_sigpipe_ignored, teardown_sigpipe),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
