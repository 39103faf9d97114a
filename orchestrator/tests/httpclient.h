/* An HTTP client for the tests of http and its faces: libcurl's multi
 * interface and our loop, both driven from the test's thread in turn
 * (loop_run_once and curl_multi_perform).  hc_serve starts http on
 * 127.0.0.1:0 and points HC at it; hc_stop undoes HC before the http is
 * freed.  A request waits at most 5 s, a stream's first bytes 3 s.
 * Include after cmocka.h. */
#ifndef RESCUED_TEST_HTTPCLIENT_H
#define RESCUED_TEST_HTTPCLIENT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "loop.h"
#include "testutil.h"
#include "util.h"

/* Calls are written (struct call){method, path, token, ...}: the fields
 * left out are NULL/false on purpose. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
/* Not every test file calls every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

static struct {
    struct loop *loop;
    CURLM *multi;
    int port;
} HC;

/* http on l at 127.0.0.1:0, and HC (with a new multi handle) on it. */
static struct http *
hc_serve(struct loop *l)
{
    char err[256] = "";
    struct http *h = http_new(l, "127.0.0.1:0", err, sizeof(err));
    if (!h)
        fail_msg("http: %s", err);
    assert_true(http_port(h) > 0);
    HC.loop = l;
    HC.multi = curl_multi_init();
    HC.port = http_port(h);
    return h;
}

/* The multi handle goes; the http is the caller's to free. */
static void
hc_stop(void)
{
    curl_multi_cleanup(HC.multi);
    memset(&HC, 0, sizeof(HC));
}

struct resp {
    long status;
    long connects; /* new connections this request opened */
    struct buf body;
    struct buf headers;
    json_t *json;
};

/* One turn of both sides (a tu_turn; arg is unused). */
static void
hc_turn(void *arg)
{
    (void)arg;
    int running;
    loop_run_once(HC.loop, 2);
    curl_multi_perform(HC.multi, &running);
    curl_multi_poll(HC.multi, NULL, 0, 2, NULL);
    curl_multi_perform(HC.multi, &running);
}

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
    buf_append(arg, p, size * n);
    return size * n;
}

struct upload {
    const char *data;
    size_t len, off;
};

static size_t
on_read(char *p, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t k = u->len - u->off;
    if (k > size * n)
        k = size * n;
    memcpy(p, u->data + u->off, k);
    u->off += k;
    return k;
}

struct call {
    const char *method;
    const char *path;
    const char *token;
    const char *ctype; /* NULL: application/json for a body */
    const char *body;
    bool chunked;       /* send the body chunked, without Content-Length */
    const char *header; /* one extra request header */
    /* and a second one */
    const char *header2;
    const char *from;   /* the source address (127.0.0.2); NULL: any */
};

static CURL *
easy_new(const struct call *c, struct resp *r, struct curl_slist **hdrs,
         struct upload *up)
{
    CURL *h = curl_easy_init();
    char *url = xasprintf("http://127.0.0.1:%d%s", HC.port, c->path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    if (c->from) {
        /* Its own connection, closed after: never reused by another call. */
        curl_easy_setopt(h, CURLOPT_INTERFACE, c->from);
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    }
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    if (!strcmp(c->method, "HEAD")) /* else curl waits for the body */
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r->headers);
    *hdrs = NULL;
    if (c->token) {
        char *a = xasprintf("Authorization: Bearer %s", c->token);
        *hdrs = curl_slist_append(*hdrs, a);
        free(a);
    }
    if (c->header)
        *hdrs = curl_slist_append(*hdrs, c->header);
    if (c->header2)
        *hdrs = curl_slist_append(*hdrs, c->header2);
    if (c->body) {
        char *ct = xasprintf("Content-Type: %s",
                             c->ctype ? c->ctype : "application/json");
        *hdrs = curl_slist_append(*hdrs, ct);
        free(ct);
        if (c->chunked) {
            up->data = c->body;
            up->len = strlen(c->body);
            up->off = 0;
            curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(h, CURLOPT_READDATA, up);
            *hdrs = curl_slist_append(*hdrs, "Transfer-Encoding: chunked");
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
        }
        *hdrs = curl_slist_append(*hdrs, "Expect:");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
    return h;
}

/* A request on its way: done once curl has finished it. */
struct hc_wait {
    const struct call *c;
    CURL *h;
    bool done;
};

/* hc_turn, then whether w's request is over (a failed one fails the
 * test). */
static void
hc_wait_turn(void *arg)
{
    struct hc_wait *w = arg;
    hc_turn(NULL);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(HC.multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == w->h) {
            if (m->data.result != CURLE_OK)
                fail_msg("%s %.80s: %s", w->c->method, w->c->path,
                         curl_easy_strerror(m->data.result));
            w->done = true;
        }
}

/* Run one request to the end; fills r (json when the body parses). */
static void
http(const struct call *c, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    struct curl_slist *hdrs;
    struct upload up;
    struct hc_wait w = {.c = c, .h = easy_new(c, r, &hdrs, &up)};
    curl_multi_add_handle(HC.multi, w.h);
    if (!tu_until(5000, tu_flag, &w.done, hc_wait_turn, &w))
        fail_msg("%s %.80s: no answer in 5 s", c->method, c->path);
    curl_easy_getinfo(w.h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(w.h, CURLINFO_NUM_CONNECTS, &r->connects);
    curl_multi_remove_handle(HC.multi, w.h);
    curl_easy_cleanup(w.h);
    curl_slist_free_all(hdrs);
    if (r->body.data)
        r->json = json_loads(r->body.data, 0, NULL);
}

static void
resp_clear(struct resp *r)
{
    buf_free(&r->body);
    buf_free(&r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* A request left running, as a client of a stream keeps it: r fills as
 * both sides turn. */
struct hc_stream {
    CURL *h;
    struct curl_slist *hdrs;
    struct upload up;
    struct resp r;
};

/* Start c and turn until text shows in the body ("": any byte) or 3 s
 * pass; false then. */
static bool
hc_stream_open(struct hc_stream *s, const struct call *c, const char *text)
{
    memset(s, 0, sizeof(*s));
    s->h = easy_new(c, &s->r, &s->hdrs, &s->up);
    curl_multi_add_handle(HC.multi, s->h);
    return tu_until_text(3000, &s->r.body, text, hc_turn, NULL);
}

/* The client hangs up: the handle and what it got go. */
static void
hc_stream_close(struct hc_stream *s)
{
    curl_multi_remove_handle(HC.multi, s->h);
    curl_easy_cleanup(s->h);
    curl_slist_free_all(s->hdrs);
    resp_clear(&s->r);
}

static const char *
jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A JSON object of size - 1 bytes in buf ("{", spaces, "}"), for the body
 * limits. */
static void
hc_big_body(char *buf, size_t size)
{
    memset(buf, ' ', size - 1);
    buf[0] = '{';
    buf[size - 2] = '}';
    buf[size - 1] = '\0';
}

/* A JSON error with this status and code. */
static void
expect_error(const struct call *c, long status, const char *code)
{
    struct resp r;
    http(c, &r);
    if (r.status != status || !r.json || !jstr(r.json, "code") ||
        strcmp(jstr(r.json, "code"), code) != 0 || !jstr(r.json, "error"))
        fail_msg("%s %.80s: expected %ld %s, got %ld %.300s", c->method,
                 c->path, status, code, r.status,
                 r.body.data ? r.body.data : "(no body)");
    resp_clear(&r);
}

#endif
