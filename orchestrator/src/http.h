/* http: libmicrohttpd on our event loop (MHD's epoll fd is one watcher,
 * MHD_get_timeout one timer), each request's lifetime, its body and limits,
 * the router and the replies.  The faces (api, bootpath, later a web
 * console) each hand it a table of routes; http knows nothing of what they
 * serve.  See docs/design.md for the HTTP contracts.
 *
 * Everything runs from the loop and nothing here blocks: a handler answers
 * at once (or starts a stream, or an upgrade, or parks the request until
 * an asynchronous answer: http_wait) and must not wait on the network
 * itself. */
#ifndef RESCUED_HTTP_H
#define RESCUED_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct buf;
struct http;
struct http_req;
struct http_answer;
struct http_stream;
struct http_upgrade;

enum http_method {
    HTTP_GET = 1,
    HTTP_HEAD = 2,
    HTTP_POST = 4,
    HTTP_PUT = 8,
    HTTP_DELETE = 16,
};

enum http_route_flag {
    /* A body of Content-Type application/json, at most the face's max_body
     * bytes (415 and 413 otherwise); the handler reads it whole. */
    HTTP_JSON_BODY = 1,
    /* An HTTP upgrade (WebSocket): the handler may answer with
     * http_answer_upgrade, after which the route's upgrade callback owns
     * the socket. */
    HTTP_UPGRADE = 2,
};

#define HTTP_MAX_CAPS 2
#define HTTP_CAP_MAX 64 /* a boot token: 64 hex digits */

/* Headers are in, before any body: true to go on; false once it answered
 * (say 401).  Routes without one go straight on. */
typedef bool http_check_fn(struct http_req *r, void *face_arg);
/* The whole request is in (body included): answer it. */
typedef void http_handler_fn(struct http_req *r, void *face_arg);
/* The 101 has gone out: u is the caller's until http_upgrade_close. */
typedef void http_upgrade_fn(struct http_upgrade *u, void *arg);
/* A stream or an upgrade that http itself ended; it is gone. */
typedef void http_closed_fn(void *arg);

struct http_route {
    /* "/v1/servers/{}/actions": each {kind} captures one path segment,
     * %-decoded and checked: {} a server id ([A-Za-z0-9_-]{1,63}), {mac}
     * hex digits, ':' and '-', {token} lower-case hex, {file} an id that
     * may hold dots inside.  A literal suffix may follow: "{mac}.ipxe". */
    const char *pattern;
    unsigned methods; /* enum http_method bits */
    unsigned flags;   /* enum http_route_flag bits */
    http_check_fn *check;
    http_handler_fn *fn;
    http_upgrade_fn *upgrade; /* HTTP_UPGRADE routes only */
};

/* Does the raw request path (plen bytes, before %-decoding) name rt?  1,
 * with each capture decoded into caps; -EINVAL: it names rt but a capture
 * is not of its kind (the router answers 400); 0: it does not. */
int http_route_match(const struct http_route *rt, const char *path, size_t plen,
                     char caps[HTTP_MAX_CAPS][HTTP_CAP_MAX + 1]);

/* One face's routes; each handler gets arg. */
struct http_face {
    const struct http_route *routes;
    size_t nroutes;
    void *arg;
    /* The limit of an HTTP_JSON_BODY body, asked at each request (a reload
     * may change it); NULL: no body at all. */
    size_t (*max_body)(void *arg);
};

/* What clients may hold (docs/design.md §8, [rescued]). */
struct http_limits {
    unsigned max_conns;    /* connections at once, in all (at start only) */
    unsigned per_ip_conns; /* from one address (at start only) */
    /* From accept, or from the end of the last answer on a kept-alive
     * connection, to a whole request (head and body) handled: a client
     * sending a byte now and then is cut at this deadline, not held. */
    int request_timeout_s;
    unsigned max_streams;            /* event streams in all */
    unsigned max_streams_per_caller; /* per http_req_set_actor (a token) */
};
#define HTTP_LIMITS_DEFAULT                                                    \
    {                                                                          \
        1024, 32, 30, 256, 8                                                   \
    }

/* Listen on "host:port" ("[v6]:port" too; port 0: any, see http_port),
 * with HTTP_LIMITS_DEFAULT. */
struct http *http_new(struct loop *l, const char *listen, char *err,
                      size_t errlen);
/* The same over TLS when tls: the pair tls_serve gave, at each handshake. */
struct http *http_new_tls(struct loop *l, const char *listen, bool tls,
                          char *err, size_t errlen);
/* The same with these limits (copied). */
struct http *http_new_limited(struct loop *l, const char *listen, bool tls,
                              const struct http_limits *lim, char *err,
                              size_t errlen);
/* Does h send file answers (http_answer_file) with sendfile(2)?  Plain
 * HTTP only, and only when SIGPIPE was ignored before http_new (as
 * rescued does): sendfile has no MSG_NOSIGNAL.  Otherwise MHD copies
 * them through a 4 KiB buffer. */
bool http_sendfile(const struct http *h);
/* A reload's limits: the deadline and the stream caps apply from now on;
 * the connection caps stay as they were at start. */
void http_set_limits(struct http *h, const struct http_limits *lim);
/* Ends every stream and upgrade still open (their closed callbacks run
 * from here), then stops MHD.  Free the faces after it. */
void http_free(struct http *h);
int http_port(const struct http *h);
struct loop *http_loop(const struct http *h);
/* Routes are tried face by face, in the order added; face is copied, its
 * route table kept by pointer. */
void http_add_face(struct http *h, const struct http_face *face);

/* Prometheus text: requests by method and status, open streams, the
 * latency histogram. */
void http_metrics(struct http *h, struct buf *out);

/* --- the request --- */

struct http *http_req_http(const struct http_req *r);
const char *http_req_header(struct http_req *r, const char *name);
/* Did it come over TLS (a cookie set on it is then Secure)? */
bool http_req_tls(const struct http_req *r);
const char *http_req_query(struct http_req *r, const char *name);
/* The i-th capture of the route's pattern, decoded. */
const char *http_req_cap(const struct http_req *r, int i);
/* The body of an HTTP_JSON_BODY route as JSON; NULL once it answered 400
 * (malformed JSON, with line and column). */
json_t *http_req_json(struct http_req *r);
/* The request's method (an enum http_method bit; 0 for another). */
unsigned http_req_method(const struct http_req *r);
/* The client's IPv4 address into buf ("" for another family). */
const char *http_req_peer(struct http_req *r, char *buf, size_t len);
/* Who is calling, for the request's log line ("admin"); copied. */
void http_req_set_actor(struct http_req *r, const char *actor);
/* A face's state for this request, freed with free_fn when it ends. */
void http_req_set_data(struct http_req *r, void *data, void (*free_fn)(void *));
void *http_req_data(const struct http_req *r);

/* The answer comes later, from the loop (a pre-flight on the network):
 * from a handler, park the connection; once the answer is known, call
 * http_req_resume, and fn(r, arg) runs from MHD to give it.  If the
 * request ends first (the client went, http_free), gone(arg) runs
 * instead, and r is gone.  A deferred request no longer counts against
 * request_timeout. */
void http_req_defer(struct http_req *r, http_handler_fn *fn,
                    http_closed_fn *gone, void *arg);
void http_req_resume(struct http_req *r);

/* A request parked until an asynchronous call answers (a store read, a
 * pre-flight, a step on its way to the store), on http_req_defer, with
 * who frees what in one place: the client may go while it waits, and
 * the call may answer after what it waited on closed.
 *   w = http_wait_new(r, answer, data, data_free);
 *   start the call with w as its argument; its callback keeps what it
 *   was told in http_wait_data(w), then calls http_wait_done(w, rc);
 *   then http_wait_park(w) (or http_wait_drop(w): no call started).
 * Once both are done, answer(r, data, rc) gives the answer: at once from
 * http_wait_park when the callback ran first (SQLite's run inline),
 * else from MHD.  If the request ended first, nothing answers.  Either
 * way data_free(data) (NULL: none) and w go after, never before the
 * callback came.  rc -ECANCELED: what the call waited on (the fleet, the
 * store) closed first and may be gone: answer from data alone. */
struct http_wait;
typedef void http_wait_fn(struct http_req *r, void *data, int rc);
struct http_wait *http_wait_new(struct http_req *r, http_wait_fn *answer,
                                void *data, void (*data_free)(void *));
void *http_wait_data(const struct http_wait *w);
void http_wait_done(struct http_wait *w, int rc);
void http_wait_park(struct http_wait *w);
void http_wait_drop(struct http_wait *w);

/* --- answers --- */

/* Answer with a (consumed; NULL: MHD could not make it, logged). */
void http_respond(struct http_req *r, unsigned status, struct http_answer *a);
/* JSON o (consumed) and a newline. */
void http_respond_json(struct http_req *r, unsigned status, json_t *o);
/* {"error": "...", "code": "not_found"}, with WWW-Authenticate on a 401
 * and Allow on a 405. */
void http_respond_error(struct http_req *r, unsigned status, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));
/* b's bytes (taken: b is left empty) as a body of this type. */
void http_respond_buf(struct http_req *r, unsigned status, struct buf *b,
                      const char *type);

/* Answers to add headers to before http_respond. */
struct http_answer *http_answer_json(json_t *o);
struct http_answer *http_answer_error(unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* len bytes of fd from off (fd is taken, closed when sent). */
struct http_answer *http_answer_file(int fd, uint64_t off, uint64_t len,
                                     const char *type);
/* 101 Switching Protocols to proto ("websocket"), for an HTTP_UPGRADE
 * route; once sent, the route's upgrade callback gets arg.  closed(arg)
 * runs if http_free ends the upgrade before http_upgrade_close did.  NULL
 * for another route. */
struct http_answer *http_answer_upgrade(struct http_req *r, const char *proto,
                                        http_closed_fn *closed, void *arg);
void http_answer_header(struct http_answer *a, const char *name,
                        const char *value);

/* Compact JSON of o appended to b; 0 or -1. */
int http_json_append(struct buf *b, const json_t *o);

/* --- streams: a body of unknown length, written as it goes (SSE) --- */

/* Answer status with a stream of this type.  The connection is parked
 * (no polling) while nothing is queued.  closed(arg) runs once when the
 * stream ends (the client hung up or a write failed, or http_free); s is
 * gone after it.  NULL, having answered 500, when MHD cannot start it, or
 * 503/429 when the limits' streams in all, or this request's actor's,
 * are open already. */
struct http_stream *http_respond_stream(struct http_req *r, unsigned status,
                                        const char *type,
                                        http_closed_fn *closed, void *arg);
/* Queue n bytes and wake the connection to send them. */
void http_stream_write(struct http_stream *s, const void *data, size_t n);
/* End it from our side: what is queued is sent, then the body ends and
 * closed(arg) runs, from the loop, as for a hang-up. */
void http_stream_end(struct http_stream *s);
/* drained(arg) runs when everything queued has gone to MHD, before the
 * connection parks: the moment to queue the next page of a history.  It
 * may write to s. */
void http_stream_on_drained(struct http_stream *s, void (*drained)(void *));

/* --- upgraded connections --- */

/* The socket, to read and write (never to close); the bytes the client
 * sent after its request, already read by MHD. */
int http_upgrade_fd(const struct http_upgrade *u);
const char *http_upgrade_extra(const struct http_upgrade *u, size_t *len);
/* Done: MHD closes the socket; u is gone. */
void http_upgrade_close(struct http_upgrade *u);

#endif
