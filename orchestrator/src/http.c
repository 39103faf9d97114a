/* http: libmicrohttpd in external-epoll mode, driven by our loop: MHD's
 * epoll fd is one watcher, MHD_get_timeout one timer.  Routing is a table
 * per face over the raw request path (before MHD unescapes it, so "%00"
 * cannot cut a path short).  A stream parks its connection with
 * MHD_suspend_connection and resumes it when the face writes to it. */
#include "http.h"
#include "log.h"
#include "loop.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Per-connection pool: bounds the request line and headers.  A 4 KB junk
 * path must still reach us (and get a JSON 404); 32 KB and more get MHD's
 * own 414. */
#define HTTP_MEMORY_LIMIT (32 * 1024)
#define HTTP_CONN_TIMEOUT_S 60

struct http_answer {
    struct MHD_Response *resp;
};

struct http_stream {
    struct http_req *r;
    struct buf out; /* text not yet handed to MHD */
    size_t off;
    bool suspended, closing;
    char caller[64]; /* the request's actor, for the per-caller cap */
    void (*drained)(void *);
    int hup_fd; /* the client socket, watched for a hang-up while parked */
    http_closed_fn *closed;
    void *arg;
    struct http_stream *prev, *next; /* http's list of streams */
};

struct http_upgrade {
    struct http *h;
    struct MHD_UpgradeResponseHandle *urh;
    int fd;
    char *extra;
    size_t nextra;
    http_closed_fn *closed;
    void *arg;
    struct http_upgrade *prev, *next;
};

/* One client connection, from accept to close: its request deadline. */
struct http_conn {
    struct http *h;
    struct MHD_Connection *conn;
    int64_t since; /* monotonic ms: accept, or the end of the last answer */
    bool pending;  /* on h's deadline list: no answer queued yet */
    bool upgraded;
    struct http_conn *prev, *next; /* h's deadline list, oldest first */
};

struct http_req {
    struct http *h;
    struct MHD_Connection *conn;
    char *uri; /* raw, as received */
    struct timespec t0;
    char method_name[8];
    unsigned method;
    bool started, answered, too_large, streaming;
    const struct http_face *face;
    const struct http_route *route;
    unsigned allow; /* the methods the path's routes take */
    char caps[HTTP_MAX_CAPS][HTTP_CAP_MAX + 1];
    char *actor;
    void *data;
    void (*data_free)(void *);
    struct buf body;
    size_t discarded;
    http_closed_fn *up_closed; /* what http_answer_upgrade was given */
    void *up_arg;
    /* http_req_defer's: parked until resumed, then fn answers */
    http_handler_fn *defer_fn;
    http_closed_fn *defer_gone;
    void *defer_arg;
    bool deferred, resumed;
    struct http_req *dprev, *dnext; /* h's deferred requests */
    struct http_stream stream;
};

struct req_count {
    char method[8];
    unsigned code;
    uint64_t n;
};

static const double latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof(latency_buckets) / sizeof(latency_buckets[0]))

struct http {
    struct loop *loop;
    struct MHD_Daemon *mhd;
    int epfd;
    int port;
    bool sendfile; /* file answers by sendfile(2): http_sendfile */
    uint64_t timer;
    int64_t timer_due; /* monotonic ms at which timer fires */
    bool kicked;       /* a connection was resumed: MHD_run again at once */
    struct http_face **faces;
    size_t nfaces;
    struct http_stream *streams;
    size_t nstreams;
    struct http_upgrade *upgrades;
    struct http_req *deferred; /* parked by http_req_defer */
    bool stopping;             /* in http_free */
    struct http_limits lim;
    /* connections waiting for a whole request, oldest first: the deadline
     * of the first is the next to come */
    struct http_conn *pend_head, *pend_tail;
    uint64_t cut_timer;
    uint64_t ncut;      /* connections cut at the request deadline */
    size_t stream_peak; /* the most bytes one stream had queued */
    size_t nconns;      /* client connections open */
    struct req_count *counts;
    size_t ncounts;
    uint64_t hist[NBUCKETS]; /* per bucket, not cumulative */
    uint64_t hist_count;
    double hist_sum;
};

static void http_rearm(struct http *h);

/* Have MHD_run soon, from the loop (we may be inside MHD_run or a face).
 * With 0.9.75 in external-epoll mode a resume did not make MHD's epoll fd
 * readable (the test's live event never arrived), so ask for it. */
static void
http_kick(struct http *h)
{
    h->kicked = true;
    http_rearm(h);
}

/* --- small helpers --- */

/* What a path capture may hold, after %-decoding (so %2e%2e and %00 fail):
 * "{}" a server id; "{mac}" hex digits, ':' and '-'; "{token}" lower-case
 * hex; "{file}" an id that may hold dots inside. */
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

/* Decode one raw path segment into out[HTTP_CAP_MAX + 1]; false unless
 * every character fits the capture's kind. */
static bool
segment_capture(char kind, const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return false;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = hi * 16 + lo;
            i += 2;
        }
        if (!capture_char(kind, c, o) ||
            o >= (kind == 't' ? HTTP_CAP_MAX : ID_MAX))
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return o > 0;
}

static double
elapsed_s(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* --- metrics --- */

static void
metrics_count(struct http *h, const char *method, unsigned code, double secs)
{
    struct req_count *c = NULL;
    for (size_t i = 0; i < h->ncounts; i++)
        if (h->counts[i].code == code && !strcmp(h->counts[i].method, method))
            c = &h->counts[i];
    if (!c) {
        h->counts = xrealloc(h->counts, sizeof(*h->counts) * (h->ncounts + 1));
        c = &h->counts[h->ncounts++];
        memset(c, 0, sizeof(*c));
        strlcpy_s(c->method, method, sizeof(c->method));
        c->code = code;
    }
    c->n++;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (secs <= latency_buckets[i]) {
            h->hist[i]++;
            break;
        }
    h->hist_count++;
    h->hist_sum += secs;
}

void
http_metrics(struct http *h, struct buf *out)
{
    buf_printf(out, "# HELP rescued_http_requests_total HTTP requests "
                    "answered, by method and status code.\n"
                    "# TYPE rescued_http_requests_total counter\n");
    for (size_t i = 0; i < h->ncounts; i++)
        buf_printf(out,
                   "rescued_http_requests_total{method=\"%s\",code=\"%u\"} "
                   "%llu\n",
                   h->counts[i].method, h->counts[i].code,
                   (unsigned long long)h->counts[i].n);
    buf_printf(out,
               "# HELP rescued_http_event_streams Open event streams.\n"
               "# TYPE rescued_http_event_streams gauge\n"
               "rescued_http_event_streams %zu\n",
               h->nstreams);
    buf_printf(out,
               "# HELP rescued_http_connections Client connections open.\n"
               "# TYPE rescued_http_connections gauge\n"
               "rescued_http_connections %zu\n",
               h->nconns);
    buf_printf(out,
               "# HELP rescued_http_requests_cut_total Connections closed "
               "because no whole request came within request_timeout.\n"
               "# TYPE rescued_http_requests_cut_total counter\n"
               "rescued_http_requests_cut_total %llu\n",
               (unsigned long long)h->ncut);
    buf_printf(out,
               "# HELP rescued_http_stream_queue_peak_bytes The most bytes "
               "one event stream held unsent.\n"
               "# TYPE rescued_http_stream_queue_peak_bytes gauge\n"
               "rescued_http_stream_queue_peak_bytes %zu\n",
               h->stream_peak);
    buf_printf(out, "# HELP rescued_http_request_duration_seconds Time from "
                    "the request line to the queued answer.\n"
                    "# TYPE rescued_http_request_duration_seconds "
                    "histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += h->hist[i];
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
               (unsigned long long)h->hist_count, h->hist_sum,
               (unsigned long long)h->hist_count);
}

/* --- the request deadline --- */

/* The list is in order of since, and every deadline is since plus the one
 * request_timeout (a reload moves them all alike): the first is next. */
static void
pend_unlink(struct http_conn *c)
{
    struct http *h = c->h;
    if (!c->pending)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->pend_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        h->pend_tail = c->prev;
    c->prev = c->next = NULL;
    c->pending = false;
}

static int64_t on_cut_timer(struct loop *l, void *arg);

static void
cut_rearm(struct http *h)
{
    if (h->cut_timer || !h->pend_head)
        return;
    int64_t due =
        h->pend_head->since + (int64_t)h->lim.request_timeout_s * 1000;
    int64_t wait = due - now_mono_ms();
    h->cut_timer =
        loop_add_timer(h->loop, wait > 0 ? wait : 0, on_cut_timer, h);
}

static void
pend_append(struct http_conn *c)
{
    struct http *h = c->h;
    pend_unlink(c);
    c->since = now_mono_ms();
    c->pending = true;
    c->prev = h->pend_tail;
    if (h->pend_tail)
        h->pend_tail->next = c;
    else
        h->pend_head = c;
    h->pend_tail = c;
    cut_rearm(h);
}

/* Deadline passed: shut the socket down under MHD, which then sees the
 * end of its stream and closes the connection as a client's hang-up
 * (MHD has no call to close one connection). */
static int64_t
on_cut_timer(struct loop *l, void *arg)
{
    (void)l;
    struct http *h = arg;
    h->cut_timer = 0;
    int64_t limit = now_mono_ms() - (int64_t)h->lim.request_timeout_s * 1000;
    while (h->pend_head && h->pend_head->since <= limit) {
        struct http_conn *c = h->pend_head;
        pend_unlink(c);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            shutdown(ci->connect_fd, SHUT_RDWR);
        h->ncut++;
        log_debug("http: no whole request within %d s: connection cut",
                  h->lim.request_timeout_s);
    }
    cut_rearm(h);
    http_kick(h);
    return -1;
}

static struct http_conn *
conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* An answer is queued: the client is no longer waiting on its request. */
static void
conn_answered(struct MHD_Connection *conn)
{
    struct http_conn *c = conn_of(conn);
    if (c)
        pend_unlink(c);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    struct http *h = cls;
    struct http_conn *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c = xcalloc(1, sizeof(*c));
        c->h = h;
        c->conn = conn;
        *socket_context = c;
        h->nconns++;
        pend_append(c);
    } else if (c) {
        h->nconns--;
        pend_unlink(c);
        free(c);
        *socket_context = NULL;
        /* Out of descriptors, MHD stops accepting, and only puts its
         * listening socket back at the start of a later MHD_run: have
         * that run now, or a connection waiting in the backlog waits for
         * some other event (seen in case 057: never came). */
        if (!h->stopping)
            http_kick(h);
    }
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
    case 403:
        return "forbidden";
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
    case 429:
        return "too_many_requests";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

static struct http_answer *
answer_of(struct MHD_Response *resp)
{
    if (!resp)
        return NULL;
    struct http_answer *a = xmalloc(sizeof(*a));
    a->resp = resp;
    return a;
}

void
http_answer_header(struct http_answer *a, const char *name, const char *value)
{
    if (a)
        MHD_add_response_header(a->resp, name, value);
}

void
http_respond(struct http_req *r, unsigned status, struct http_answer *a)
{
    if (!a) {
        log_warnx("http: cannot create a response");
        return;
    }
    if (MHD_queue_response(r->conn, status, a->resp) != MHD_YES)
        log_warnx("http: %s %s: cannot queue a %u response", r->method_name,
                  r->uri, status);
    MHD_destroy_response(a->resp);
    free(a);
    r->answered = true;
    conn_answered(r->conn);
    double secs = elapsed_s(&r->t0);
    metrics_count(r->h, r->method_name, status, secs);
    log_debug("http: %s %.200s %u %.1f ms%s%s", r->method_name, r->uri, status,
              secs * 1000, r->actor ? " " : "", r->actor ? r->actor : "");
}

/* text (malloc'd) is taken, freed by MHD or here. */
static struct http_answer *
text_answer(char *text, size_t len, const char *type)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return answer_of(resp);
}

static int
dump_to_buf(const char *p, size_t n, void *arg)
{
    buf_append(arg, p, n);
    return 0;
}

int
http_json_append(struct buf *b, const json_t *o)
{
    return json_dump_callback(o, dump_to_buf, b, JSON_COMPACT) < 0 ? -1 : 0;
}

/* Dumped straight into the answer's buffer: no copy to add the newline. */
struct http_answer *
http_answer_json(json_t *o)
{
    struct buf b = {0};
    int rc = o ? http_json_append(&b, o) : -1;
    json_decref(o);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    buf_append(&b, "\n", 1);
    return text_answer(b.data, b.len, "application/json");
}

void
http_respond_json(struct http_req *r, unsigned status, json_t *o)
{
    http_respond(r, status, http_answer_json(o));
}

void
http_respond_buf(struct http_req *r, unsigned status, struct buf *b,
                 const char *type)
{
    if (!b->data)
        buf_append(b, "", 0);
    struct http_answer *a = text_answer(b->data, b->len, type);
    memset(b, 0, sizeof(*b));
    http_respond(r, status, a);
}

static struct http_answer *
error_answer(unsigned status, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* Cut inside a character, or a user's bytes: jansson wants UTF-8. */
    char *valid = utf8_valid_dup(msg);
    json_t *j = json_pack("{s:s, s:s}", "error", valid, "code",
                          status_code_name(status));
    free(valid);
    return http_answer_json(j);
}

struct http_answer *
http_answer_error(unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct http_answer *a = error_answer(status, fmt, ap);
    va_end(ap);
    return a;
}

void
http_respond_error(struct http_req *r, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct http_answer *a = error_answer(status, fmt, ap);
    va_end(ap);
    if (status == 401)
        http_answer_header(a, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405) {
        char allow[64] = "";
        unsigned m = r->allow;
        static const struct {
            unsigned bit;
            const char *name;
        } names[] = {{HTTP_GET, "GET"},
                     {HTTP_HEAD, "HEAD"},
                     {HTTP_POST, "POST"},
                     {HTTP_PUT, "PUT"},
                     {HTTP_DELETE, "DELETE"}};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (m & names[i].bit) {
                if (allow[0])
                    strcat(allow, ", ");
                strcat(allow, names[i].name);
            }
        http_answer_header(a, MHD_HTTP_HEADER_ALLOW, allow);
    }
    http_respond(r, status, a);
}

struct http_answer *
http_answer_file(int fd, uint64_t off, uint64_t len, const char *type)
{
    /* MHD sends Content-Length from the size and closes fd when done. */
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64(len, fd, off);
    if (!resp) {
        close(fd);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    return answer_of(resp);
}

/* --- the request --- */

struct http *
http_req_http(const struct http_req *r)
{
    return r->h;
}

const char *
http_req_header(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

bool
http_req_tls(const struct http_req *r)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(r->h->mhd, MHD_DAEMON_INFO_FLAGS);
    return i && (i->flags & MHD_USE_TLS);
}

const char *
http_req_query(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *
http_req_cap(const struct http_req *r, int i)
{
    return i >= 0 && i < HTTP_MAX_CAPS ? r->caps[i] : "";
}

json_t *
http_req_json(struct http_req *r)
{
    json_error_t jerr;
    json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        http_respond_error(r, 400, "malformed JSON: %s (line %d, column %d)",
                           jerr.text, jerr.line, jerr.column);
    return root;
}

unsigned
http_req_method(const struct http_req *r)
{
    return r->method;
}

const char *
http_req_peer(struct http_req *r, char *buf, size_t len)
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

void
http_req_set_actor(struct http_req *r, const char *actor)
{
    free(r->actor);
    r->actor = actor ? xstrdup(actor) : NULL;
}

void
http_req_set_data(struct http_req *r, void *data, void (*free_fn)(void *))
{
    if (r->data_free)
        r->data_free(r->data);
    r->data = data;
    r->data_free = free_fn;
}

void *
http_req_data(const struct http_req *r)
{
    return r->data;
}

/* --- streams --- */

static void
stream_unwatch(struct http_stream *s)
{
    if (s->hup_fd >= 0) {
        loop_del_fd(s->r->h->loop, s->hup_fd);
        s->hup_fd = -1;
    }
}

static void
stream_wake(struct http_stream *s)
{
    stream_unwatch(s);
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->r->conn);
        http_kick(s->r->h);
    }
}

/* The client hung up while its stream was parked: end it now rather than
 * at the next write that fails. */
static void
stream_hup(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct http_stream *s = arg;
    s->closing = true;
    stream_wake(s);
}

/* Park the connection; only a hang-up (not data) wakes us from the
 * socket, so a chatty client cannot make us spin. */
static void
stream_park(struct http_stream *s)
{
    struct http_req *r = s->r;
    s->suspended = true;
    MHD_suspend_connection(r->conn);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci &&
        loop_add_fd(r->h->loop, ci->connect_fd, EPOLLRDHUP, stream_hup, s) == 0)
        s->hup_fd = ci->connect_fd;
}

/* MHD pulls the stream from here; with nothing to send, park the
 * connection (no polling) until a write wakes it. */
static ssize_t
stream_read(void *cls, uint64_t pos, char *dst, size_t max)
{
    (void)pos;
    struct http_stream *s = cls;
    if (s->off < s->out.len) {
        size_t n = s->out.len - s->off;
        if (n > max)
            n = max;
        memcpy(dst, s->out.data + s->off, n);
        s->off += n;
        if (s->off == s->out.len) {
            buf_reset(&s->out);
            s->off = 0;
        }
        return (ssize_t)n;
    }
    if (s->drained && !s->closing) {
        s->drained(s->arg);
        if (s->off < s->out.len)
            return stream_read(cls, pos, dst, max);
    }
    if (s->closing)
        return MHD_CONTENT_READER_END_OF_STREAM;
    stream_park(s);
    return 0;
}

struct http_stream *
http_respond_stream(struct http_req *r, unsigned status, const char *type,
                    http_closed_fn *closed, void *arg)
{
    struct http *h = r->h;
    struct http_stream *s = &r->stream;
    const char *caller = r->actor ? r->actor : "";
    size_t mine = 0;
    for (struct http_stream *o = h->streams; o; o = o->next)
        mine += !strcmp(o->caller, caller);
    if (h->nstreams >= h->lim.max_streams) {
        http_respond_error(r, 429, "too many event streams open (%u in all)",
                           h->lim.max_streams);
        return NULL;
    }
    if (mine >= h->lim.max_streams_per_caller) {
        http_respond_error(r, 429,
                           "too many event streams open for this token (%u)",
                           h->lim.max_streams_per_caller);
        return NULL;
    }
    strlcpy_s(s->caller, caller, sizeof(s->caller));
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, stream_read, s, NULL);
    if (!resp) {
        http_respond_error(r, 500, "cannot start the stream");
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    r->streaming = true;
    s->closed = closed;
    s->arg = arg;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->nstreams++;
    http_respond(r, status, answer_of(resp));
    return s;
}

void
http_stream_write(struct http_stream *s, const void *data, size_t n)
{
    buf_append(&s->out, data, n);
    if (s->out.len - s->off > s->r->h->stream_peak)
        s->r->h->stream_peak = s->out.len - s->off;
    stream_wake(s);
}

void
http_stream_end(struct http_stream *s)
{
    s->closing = true;
    stream_wake(s);
}

void
http_stream_on_drained(struct http_stream *s, void (*drained)(void *))
{
    s->drained = drained;
}

static void
stream_stop(struct http_req *r)
{
    struct http *h = r->h;
    struct http_stream *s = &r->stream;
    if (!r->streaming)
        return;
    r->streaming = false;
    stream_unwatch(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->nstreams--;
    buf_free(&s->out);
    if (s->closed)
        s->closed(s->arg);
}

/* --- upgrades --- */

static void
on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls,
           const char *extra, size_t nextra, MHD_socket sock,
           struct MHD_UpgradeResponseHandle *urh)
{
    struct http *h = cls;
    struct http_req *r = con_cls;
    struct http_conn *c = conn_of(conn);
    if (c)
        c->upgraded = true;
    struct http_upgrade *u = xcalloc(1, sizeof(*u));
    u->h = h;
    u->urh = urh;
    u->fd = sock;
    u->extra = xmalloc(nextra + 1);
    memcpy(u->extra, extra, nextra);
    u->nextra = nextra;
    u->closed = r->up_closed;
    u->arg = r->up_arg;
    u->next = h->upgrades;
    if (h->upgrades)
        h->upgrades->prev = u;
    h->upgrades = u;
    r->route->upgrade(u, r->up_arg);
}

struct http_answer *
http_answer_upgrade(struct http_req *r, const char *proto,
                    http_closed_fn *closed, void *arg)
{
    if (!r->route || !(r->route->flags & HTTP_UPGRADE) || !r->route->upgrade)
        return NULL;
    struct MHD_Response *resp =
        MHD_create_response_for_upgrade(on_upgrade, r->h);
    if (!resp)
        return NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, proto);
    r->up_closed = closed;
    r->up_arg = arg;
    return answer_of(resp);
}

int
http_upgrade_fd(const struct http_upgrade *u)
{
    return u->fd;
}

const char *
http_upgrade_extra(const struct http_upgrade *u, size_t *len)
{
    *len = u->nextra;
    return u->extra;
}

void
http_upgrade_close(struct http_upgrade *u)
{
    struct http *h = u->h;
    if (u->prev)
        u->prev->next = u->next;
    else
        h->upgrades = u->next;
    if (u->next)
        u->next->prev = u->prev;
    MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(u->extra);
    free(u);
    /* The connection is resumed to be cleaned up: have MHD_run see it. */
    http_kick(h);
}

/* --- routing --- */

enum match { MATCH_NONE, MATCH_BAD_ID, MATCH_OK };

static enum match
route_match(const struct http_route *rt, const char *path, size_t plen,
            char caps[HTTP_MAX_CAPS][HTTP_CAP_MAX + 1])
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
            if (ncap >= HTTP_MAX_CAPS ||
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

int
http_route_match(const struct http_route *rt, const char *path, size_t plen,
                 char caps[HTTP_MAX_CAPS][HTTP_CAP_MAX + 1])
{
    enum match m = route_match(rt, path, plen, caps);
    return m == MATCH_OK ? 1 : m == MATCH_BAD_ID ? -EINVAL : 0;
}

static unsigned
method_bit(const char *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } ms[] = {{"GET", HTTP_GET},
              {"HEAD", HTTP_HEAD},
              {"POST", HTTP_POST},
              {"PUT", HTTP_PUT},
              {"DELETE", HTTP_DELETE}};
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

static size_t
max_body(const struct http_req *r)
{
    return r->face->max_body ? r->face->max_body(r->face->arg) : 0;
}

/* The first route of any face that the path names (even with a capture
 * that is no id); of those, the first that takes the method, so one path
 * may have a route per method (a JSON POST beside a GET). */
static enum match
route_find(struct http_req *r, const char *path, size_t plen)
{
    struct http *h = r->h;
    enum match found = MATCH_NONE;
    for (size_t f = 0; f < h->nfaces; f++)
        for (size_t i = 0; i < h->faces[f]->nroutes; i++) {
            const struct http_route *rt = &h->faces[f]->routes[i];
            enum match m = route_match(rt, path, plen, r->caps);
            if (m == MATCH_NONE)
                continue;
            r->allow |= rt->methods; /* a 405's Allow: every route's */
            bool takes = (r->method & rt->methods) != 0;
            if (found == MATCH_NONE || takes) {
                r->face = h->faces[f];
                r->route = rt;
                found = m;
            }
            if (takes)
                return m;
        }
    return found;
}

/* Headers are in: route, check, and answer what can be answered now. */
static void
req_begin(struct http_req *r, const char *method)
{
    r->method = method_bit(method);
    /* Bounded label values for the metrics. */
    strlcpy_s(r->method_name, r->method ? method : "OTHER",
              sizeof(r->method_name));
    enum match m = route_find(r, r->uri, strcspn(r->uri, "?#"));
    if (m != MATCH_OK) {
        /* Never echo the path: it may be anything. */
        http_respond_error(
            r, 404, m == MATCH_BAD_ID ? "no such server" : "no such endpoint");
        return;
    }
    if (!(r->method & r->route->methods)) {
        http_respond_error(r, 405, "method %s not allowed here",
                           r->method_name);
        return;
    }
    if (r->route->check && !r->route->check(r, r->face->arg))
        return;
    if (r->route->flags & HTTP_JSON_BODY) {
        size_t max = max_body(r);
        const char *len = http_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t n;
        if (!is_json_type(http_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE))) {
            http_respond_error(r, 415, "the body must be application/json");
            return;
        }
        if (len && parse_u63(len, &n) && (uint64_t)n > max) {
            http_respond_error(r, 413, "the body is larger than %zu bytes",
                               max);
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
req_body(struct http_req *r, const char *data, size_t n)
{
    if (r->answered || !r->route || !(r->route->flags & HTTP_JSON_BODY))
        return true;
    size_t max = max_body(r);
    if (!r->too_large && r->body.len + n <= max) {
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
    return r->discarded <= max * 4 + 1024 * 1024;
}

static void
defer_unlink(struct http_req *r)
{
    struct http *h = r->h;
    if (r->dprev)
        r->dprev->dnext = r->dnext;
    else
        h->deferred = r->dnext;
    if (r->dnext)
        r->dnext->dprev = r->dprev;
    r->dprev = r->dnext = NULL;
}

void
http_req_defer(struct http_req *r, http_handler_fn *fn, http_closed_fn *gone,
               void *arg)
{
    struct http *h = r->h;
    r->defer_fn = fn;
    r->defer_gone = gone;
    r->defer_arg = arg;
    r->deferred = true;
    r->resumed = false;
    r->dnext = h->deferred;
    if (h->deferred)
        h->deferred->dprev = r;
    h->deferred = r;
    conn_answered(r->conn); /* the whole request is in */
    MHD_suspend_connection(r->conn);
}

void
http_req_resume(struct http_req *r)
{
    if (!r->deferred || r->resumed)
        return;
    r->resumed = true;
    MHD_resume_connection(r->conn);
    http_kick(r->h);
}

struct http_wait {
    struct http_req *r; /* NULL once the request ended */
    http_wait_fn *answer;
    void *data;
    void (*data_free)(void *);
    int rc;
    bool parked, done;
};

struct http_wait *
http_wait_new(struct http_req *r, http_wait_fn *answer, void *data,
              void (*data_free)(void *))
{
    struct http_wait *w = xcalloc(1, sizeof(*w));
    w->r = r;
    w->answer = answer;
    w->data = data;
    w->data_free = data_free;
    return w;
}

void *
http_wait_data(const struct http_wait *w)
{
    return w->data;
}

void
http_wait_drop(struct http_wait *w)
{
    if (!w)
        return;
    if (w->data_free)
        w->data_free(w->data);
    free(w);
}

static void
wait_answer(struct http_req *r, void *arg)
{
    struct http_wait *w = arg;
    w->answer(r, w->data, w->rc);
    http_wait_drop(w);
}

static void
wait_gone(void *arg)
{
    struct http_wait *w = arg;
    w->r = NULL;
    if (w->done)
        http_wait_drop(w);
}

void
http_wait_done(struct http_wait *w, int rc)
{
    w->done = true;
    w->rc = rc;
    if (!w->parked)
        return; /* before http_wait_park: it answers */
    if (w->r)
        http_req_resume(w->r);
    else
        http_wait_drop(w);
}

void
http_wait_park(struct http_wait *w)
{
    if (w->done) {
        wait_answer(w->r, w);
        return;
    }
    w->parked = true;
    http_req_defer(w->r, wait_answer, wait_gone, w);
}

/* MHD calls again after a resume: the deferred answer. */
static void
req_deferred_answer(struct http_req *r)
{
    r->deferred = false;
    defer_unlink(r);
    r->defer_fn(r, r->defer_arg);
    if (!r->answered) {
        log_warnx("http: %s %.200s: the deferred handler gave no answer",
                  r->method_name, r->uri);
        http_respond_error(r, 500, "no answer");
    }
}

static void
req_end(struct http_req *r)
{
    if (r->too_large) {
        http_respond_error(r, 413, "the body is larger than %zu bytes",
                           max_body(r));
        return;
    }
    r->route->fn(r, r->face->arg);
    if (!r->answered && !r->deferred) {
        log_warnx("http: %s %.200s: the handler gave no answer", r->method_name,
                  r->uri);
        http_respond_error(r, 500, "no answer");
    }
}

/* --- MHD callbacks --- */

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_req *r = xcalloc(1, sizeof(*r));
    r->h = cls;
    r->conn = conn;
    r->uri = xstrdup(uri);
    r->stream.r = r;
    r->stream.hup_fd = -1;
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
    struct http_req *r = *con_cls;
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
    if (r->deferred) {
        if (r->h->stopping)
            return MHD_NO; /* no answer at shutdown: gone runs */
        if (r->resumed)
            req_deferred_answer(r);
    } else if (!r->answered) {
        req_end(r);
    }
    return MHD_YES;
}

static void
req_free(struct http_req *r)
{
    if (!r)
        return;
    if (r->deferred) {
        /* Ended before its answer: the face hears it. */
        r->deferred = false;
        defer_unlink(r);
        if (r->defer_gone)
            r->defer_gone(r->defer_arg);
    }
    stream_stop(r);
    if (r->data_free)
        r->data_free(r->data);
    buf_free(&r->body);
    free(r->actor);
    free(r->uri);
    free(r);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode why)
{
    (void)cls;
    struct http_req *r = *con_cls;
    if (r && r->streaming)
        log_debug("http: stream closed (%d)", (int)why);
    /* Kept alive: the next request's deadline runs from here. */
    struct http_conn *c = conn_of(conn);
    if (c && !c->upgraded && why == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        pend_append(c);
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
    log_debug("http: mhd: %s", msg);
}

/* --- the loop --- */

static int64_t
on_timer(struct loop *l, void *arg)
{
    (void)l;
    struct http *h = arg;
    h->timer = 0;
    h->kicked = false;
    MHD_run(h->mhd);
    http_rearm(h);
    return -1;
}

static void
on_epoll(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct http *h = arg;
    h->kicked = false;
    MHD_run(h->mhd);
    http_rearm(h);
}

/* Keep one timer at MHD's own next deadline (none when it has none).
 * Under load that deadline only moves later, request after request: a
 * timer already due no later is kept, since firing early costs one
 * MHD_run and deleting a timer costs a search of the loop's heap. */
static void
http_rearm(struct http *h)
{
    MHD_UNSIGNED_LONG_LONG t;
    int64_t now = now_mono_ms(), due = -1;
    if (h->kicked)
        due = now;
    else if (MHD_get_timeout(h->mhd, &t) == MHD_YES)
        due = now + (t > 86400000 ? 86400000 : (int64_t)t);
    if (h->timer && due >= 0 && h->timer_due <= due)
        return;
    loop_del_timer(h->loop, h->timer);
    h->timer = 0;
    if (due >= 0) {
        h->timer = loop_add_timer(h->loop, due - now, on_timer, h);
        h->timer_due = due;
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
    const char *hp = addr;
    if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']')
        hp++, hl -= 2;
    if (hl >= sizeof(host)) {
        snprintf(err, errlen, "listen %s: host too long", addr);
        return -EINVAL;
    }
    memcpy(host, hp, hl);
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
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
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

struct http *
http_new(struct loop *l, const char *listen, char *err, size_t errlen)
{
    return http_new_tls(l, listen, false, err, errlen);
}

struct http *
http_new_tls(struct loop *l, const char *listen, bool tls, char *err,
             size_t errlen)
{
    const struct http_limits lim = HTTP_LIMITS_DEFAULT;
    return http_new_limited(l, listen, tls, &lim, err, errlen);
}

void
http_set_limits(struct http *h, const struct http_limits *lim)
{
    h->lim.request_timeout_s = lim->request_timeout_s;
    h->lim.max_streams = lim->max_streams;
    h->lim.max_streams_per_caller = lim->max_streams_per_caller;
    /* The first deadline may now come sooner. */
    loop_del_timer(h->loop, h->cut_timer);
    h->cut_timer = 0;
    cut_rearm(h);
}

/* SIGPIPE cannot kill us: MHD may then use sendfile(2). */
static bool
sigpipe_ignored(void)
{
    struct sigaction sa;
    return sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

bool
http_sendfile(const struct http *h)
{
    return h->sendfile;
}

struct http *
http_new_limited(struct loop *l, const char *listen, bool tls,
                 const struct http_limits *lim, char *err, size_t errlen)
{
    /* TLS: the certificate is asked for at each handshake (tls.h); 1.2
     * and 1.3 only (GnuTLS's NORMAL still offers 1.0 and 1.1). */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_CERT_CALLBACK, 0, tls_retrieve_fn()},
        {MHD_OPTION_HTTPS_PRIORITIES, 0,
         (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    bool v6 = false;
    int fd = listen_on(listen, &v6, err, errlen);
    if (fd < 0)
        return NULL;
    struct http *h = xcalloc(1, sizeof(*h));
    h->loop = l;
    h->lim = *lim;
    h->port = bound_port(fd);
    h->sendfile = !tls && sigpipe_ignored();
    /* MHD_USE_EPOLL without an internal thread: we poll its epoll fd. */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG |
                     (v6 ? MHD_USE_IPv6 : 0) | (tls ? MHD_USE_TLS : 0);
    h->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, lim->max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim->per_ip_conns,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)h->sendfile, MHD_OPTION_ARRAY,
        tls ? tls_opts : &tls_opts[2], MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "listen %s: cannot start the HTTP server",
                 listen);
        close(fd);
        goto out_free;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    h->epfd = info ? info->epoll_fd : -1;
    int rc = loop_add_fd(l, h->epfd, EPOLLIN, on_epoll, h);
    if (rc < 0) {
        snprintf(err, errlen, "listen %s: cannot watch MHD: %s", listen,
                 strerror(-rc));
        goto out_stop;
    }
    http_rearm(h);
    return h;

out_stop:
    MHD_stop_daemon(h->mhd);
out_free:
    free(h);
    return NULL;
}

void
http_add_face(struct http *h, const struct http_face *face)
{
    h->faces = xrealloc(h->faces, sizeof(*h->faces) * (h->nfaces + 1));
    h->faces[h->nfaces] = xmalloc(sizeof(*face));
    *h->faces[h->nfaces++] = *face;
}

void
http_free(struct http *h)
{
    if (!h)
        return;
    /* MHD refuses to stop with parked connections: wake every stream so
     * it ends, then stop (which completes and frees each request). */
    for (struct http_stream *s = h->streams; s; s = s->next) {
        s->closing = true;
        stream_wake(s);
    }
    /* Parked requests too: resumed, MHD ends them (gone runs). */
    h->stopping = true;
    for (struct http_req *r = h->deferred; r; r = r->dnext)
        if (!r->resumed) {
            r->resumed = true;
            MHD_resume_connection(r->conn);
        }
    while (h->upgrades) {
        struct http_upgrade *u = h->upgrades;
        http_closed_fn *closed = u->closed;
        void *arg = u->arg;
        http_upgrade_close(u);
        if (closed)
            closed(arg);
    }
    loop_del_fd(h->loop, h->epfd);
    loop_del_timer(h->loop, h->timer);
    loop_del_timer(h->loop, h->cut_timer);
    MHD_stop_daemon(h->mhd);
    for (size_t i = 0; i < h->nfaces; i++)
        free(h->faces[i]);
    free(h->faces);
    free(h->counts);
    free(h);
}

int
http_port(const struct http *h)
{
    return h ? h->port : -1;
}

struct loop *
http_loop(const struct http *h)
{
    return h->loop;
}
