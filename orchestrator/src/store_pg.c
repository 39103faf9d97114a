/* store_pg: the postgresql:// backend of store (store_backend.h), on libpq.
 * The same tables and migrations as SQLite (store_migrations.c); every
 * write outside a batch is one statement, so one round trip and atomic by
 * itself (a transition is a data-modifying WITH: the row and its event).
 *
 * Two ways to talk to the server, both on libpq's asynchronous API
 * (PQconnectStart / PQconnectPoll, PQsendQueryParams, PQconsumeInput,
 * PQisBusy, PQgetResult), never its blocking calls, which can wait for a
 * TCP timeout:
 *   - the asynchronous writes (store.h) are jobs queued on the connection,
 *     sent one at a time in the order asked, the socket watched by the
 *     loop, each asker called back with the answer: the loop never waits
 *     ("asynchronous writes on the loop" below);
 *     The feed's reads and the actions' takes are jobs too, with rows;
 *   - every other call (the API's history reads, start-up, batches)
 *     waits, polling the socket with a deadline: at most
 *     PG_OP_TIMEOUT_MS for a query, PG_CONNECT_TIMEOUT_MS for a connect,
 *     after the queued jobs (whose order it keeps); fleet makes none of
 *     them while the store is not answering (store_answering), so a hung
 *     database holds nobody.
 *
 * Unreachable: a query that fails on a lost connection drops it, and the
 * next call reconnects, at most once per back-off interval (0.5 s doubling
 * to 5 s); between tries every call fails at once with -EIO and the
 * reason in libpq's words (store_last_error), which fleet turns into its
 * 503.  A batch whose connection was lost fails to its end.
 *
 * The change feed (store.h, "facilities"): event ids are drawn under an
 * advisory lock held to the commit, so they commit in id order, and each
 * commit that wrote events NOTIFYs; a second connection LISTENs, its
 * socket watched on the loop (pgs_feed_notify); connecting it again after
 * a loss is the same bounded wait, tried only while the main connection
 * is up.
 *
 * The URL's password never reaches a log line: the store is named by its
 * redacted URL. */
#include "store_backend.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_OP_TIMEOUT_MS 2000
#define PG_CONNECT_TIMEOUT_MS 2000
/* At open a migration may wait for another node's (the advisory lock). */
#define PG_OPEN_TIMEOUT_MS 30000
#define PG_RETRY_MIN_MS 500
#define PG_RETRY_MAX_MS 5000
#define PG_LOG_INTERVAL_MS 10000
/* pg_advisory_xact_lock's key for migrations: "rescued" in ASCII. */
#define PG_MIGRATION_LOCK "7306086953432998912"

static int op_timeout_ms = PG_OP_TIMEOUT_MS;
static int connect_timeout_ms = PG_CONNECT_TIMEOUT_MS;
static int retry_min_ms = PG_RETRY_MIN_MS;

#ifdef UNITTEST
void store_pg_test_set_timeouts(int op_ms, int retry_ms);
/* For the stores opened after it. */
void
store_pg_test_set_timeouts(int op_ms, int retry_ms)
{
    op_timeout_ms = op_ms;
    connect_timeout_ms = op_ms;
    retry_min_ms = retry_ms;
}
#endif

struct pg_store {
    struct store base; /* first: store.c hands us &base */
    PGconn *conn;      /* NULL while the server is unreachable */
    /* With a loop (store_attach_loop): reconnects run on it, not inline. */
    struct loop *loop;
    PGconn *pending; /* a connection being made on the loop */
    int pending_fd;  /* its socket, watched; -1 */
    uint64_t retry_timer;
    uint64_t connect_timer; /* gives up on the pending connection */
    char *url;              /* for libpq, with its password */
    char *name;             /* for logs, without */
    int version;
    int timeout_ms;     /* this call's bound */
    bool in_batch;      /* between begin and commit/rollback */
    bool batch_lost;    /* ...and its connection went away */
    int64_t retry_at;   /* no reconnect before (monotonic ms) */
    int64_t backoff_ms; /* 0 while connected */
    int64_t logged_ms;  /* when pg_fail last logged, 0: never */
    unsigned quiet;     /* failures not logged since */
    /* The change feed's LISTEN (pgs_feed_notify): a second connection,
     * its socket watched on the loop. */
    PGconn *listen;
    int listen_fd; /* -1 */
    uint64_t listen_timer;
    store_feed_cb *feed_cb;
    void *feed_arg;
    /* The asynchronous writes (store.h): queued, the head sent when
     * job_out; the connection's socket watched meanwhile (conn_fd). */
    struct pg_job *jobs, **jobs_tail;
    bool job_out;
    int conn_fd; /* -1 */
    uint64_t job_timer;
    /* Failed with the connection, answered from failed_timer. */
    struct pg_job *failed;
    uint64_t failed_timer;
};

static struct pg_store *
pg(struct store *st)
{
    return (struct pg_store *)st;
}

/* Query parameters, all sent as text: numbers formatted here. */
#define PG_MAX_ARGS 20
struct pgargs {
    const char *v[PG_MAX_ARGS];
    char num[PG_MAX_ARGS][24];
    int n;
};

static void
arg_text(struct pgargs *a, const char *s)
{
    a->v[a->n++] = s;
}

static void
arg_int(struct pgargs *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof(a->num[a->n]), "%lld", (long long)x);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

/* A caller's clock, or NULL for STORE_NOW: then PG_NOW(param) is the
 * database server's clock, the one all nodes share (their own may not
 * agree). */
static void
arg_now(struct pgargs *a, int64_t now_ms)
{
    if (now_ms == STORE_NOW)
        arg_text(a, NULL);
    else
        arg_int(a, now_ms);
}
#define PG_NOW(param)                                                          \
    "COALESCE(" param "::bigint,"                                              \
    " (extract(epoch FROM clock_timestamp()) * 1000)::bigint)"

/* libpq's messages end in a newline and may span lines: one line. */
static void
one_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

/* Keep the reason (store_last_error) and log it, once per interval while
 * the same failure repeats; always -EIO for the caller. */
static int
pg_fail(struct pg_store *st, const char *what, const char *msg)
{
    char why[sizeof(st->base.last_error)];
    snprintf_utf8(why, sizeof(why), "%s: %s", what, msg);
    one_line(why);
    int64_t now = now_mono_ms();
    if (strcmp(why, st->base.last_error) != 0 || st->logged_ms == 0 ||
        now - st->logged_ms >= PG_LOG_INTERVAL_MS) {
        if (st->quiet)
            log_warnx("store %s: %s (and %u more failures since the last "
                      "report)",
                      st->name, why, st->quiet);
        else
            log_warnx("store %s: %s", st->name, why);
        st->logged_ms = now;
        st->quiet = 0;
    } else {
        st->quiet++;
    }
    strlcpy_s(st->base.last_error, why, sizeof(st->base.last_error));
    return -EIO;
}

/* The connection is gone (or in a state nobody can trust, after a
 * timeout): drop it; the next call reconnects. */
static void reconnect_later(struct pg_store *st);

static void jobs_fail_all(struct pg_store *st);

static void
pg_drop(struct pg_store *st)
{
    if (st->loop)
        jobs_fail_all(st); /* unwatches the socket before it closes */
    PQfinish(st->conn);
    st->conn = NULL;
    if (st->in_batch)
        st->batch_lost = true;
    reconnect_later(st);
}

/* The connection was lost under what: dropped, with libpq's reason
 * (read before the drop frees it).  -EIO. */
static int
pg_lost(struct pg_store *st, const char *what)
{
    char l[300];
    snprintf_utf8(l, sizeof(l), "database unreachable: %s",
                  PQerrorMessage(st->conn));
    pg_drop(st);
    return pg_fail(st, what, l);
}

/* No answer within the bound: what the server did with what was sent is
 * unknown, so a write not confirmed is not done, and the connection is
 * not to be trusted any more.  -EIO. */
static int
pg_timed_out(struct pg_store *st, const char *what)
{
    char t[80];
    snprintf(t, sizeof(t), "database unreachable: no answer within %d ms",
             st->timeout_ms);
    pg_drop(st);
    return pg_fail(st, what, t);
}

/* A server that went away since the connection was last used (a restart,
 * a stop) has closed the socket: noticed now, before anything is sent and
 * in doubt, and dropped.  Not while a job is out: its answer is read on
 * the loop, and reading here would leave the socket quiet for epoll. */
static bool
pg_drop_if_closed(struct pg_store *st)
{
    struct pollfd p = {.fd = st->conn ? PQsocket(st->conn) : -1,
                       .events = POLLIN};
    if (!st->conn || st->job_out || poll(&p, 1, 0) <= 0 ||
        (PQconsumeInput(st->conn) && PQstatus(st->conn) != CONNECTION_BAD))
        return false;
    pg_drop(st);
    return true;
}

/* Results of one query, as they come: the first failure stays, else the
 * last result. */
static void
keep_result(PGresult **keep, PGresult *r)
{
    ExecStatusType ks = *keep ? PQresultStatus(*keep) : PGRES_COMMAND_OK;
    if (ks == PGRES_COMMAND_OK || ks == PGRES_TUPLES_OK) {
        PQclear(*keep);
        *keep = r;
    } else {
        PQclear(r);
    }
}

/* Stop watching *fd on the loop (the socket is libpq's to close). */
static void
unwatch(struct pg_store *st, int *fd)
{
    if (*fd >= 0)
        loop_del_fd(st->loop, *fd);
    *fd = -1;
}

/* Wait until the socket is ready for ev or the deadline passes. */
static int
wait_sock(PGconn *c, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_mono_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = PQsocket(c), .events = ev};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static void
no_notices(void *arg, const char *msg)
{
    (void)arg;
    log_debug("store: %s", msg);
}

/* One connection attempt, bounded by timeout_ms; the reason in why. */
static PGconn *
pg_connect(const char *url, int timeout_ms, char *why, size_t len)
{
    PGconn *c = PQconnectStart(url);
    if (!c) {
        seterr(why, len, "out of memory");
        return NULL;
    }
    int64_t deadline = now_mono_ms() + timeout_ms;
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
           ps != PGRES_POLLING_FAILED) {
        int r = wait_sock(c, ps == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                          deadline);
        if (r < 0) {
            seterr(why, len, "connecting: no answer within %d ms", timeout_ms);
            PQfinish(c);
            return NULL;
        }
        ps = PQconnectPoll(c);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf_utf8(why, len, "%s", PQerrorMessage(c));
        one_line(why);
        PQfinish(c);
        return NULL;
    }
    PQsetnonblocking(c, 1);
    PQsetNoticeProcessor(c, no_notices, NULL);
    return c;
}

/* --- reconnecting on the loop ---------------------------------------------
 * With a loop attached, a lost connection is made again there: a timer
 * (the back-off) starts PQconnectStart, the socket is watched and
 * PQconnectPoll driven from its events, so no call ever waits for a
 * connect; meanwhile every call fails at once with the last reason. */

static void pending_fd_cb(struct loop *l, int fd, uint32_t events, void *arg);

static void
pending_free(struct pg_store *st)
{
    loop_del_timer(st->loop, st->connect_timer);
    st->connect_timer = 0;
    unwatch(st, &st->pending_fd);
    PQfinish(st->pending);
    st->pending = NULL;
}

static void
backoff_step(struct pg_store *st)
{
    int64_t b = st->backoff_ms ? st->backoff_ms * 2 : retry_min_ms;
    st->backoff_ms = b > PG_RETRY_MAX_MS ? PG_RETRY_MAX_MS : b;
    st->retry_at = now_mono_ms() + st->backoff_ms;
}

/* A try failed (why): keep its reason for the calls that fail meanwhile,
 * and try again after the back-off. */
static void
pending_failed(struct pg_store *st, const char *why)
{
    char msg[300];
    pending_free(st);
    snprintf(msg, sizeof(msg), "database unreachable: %s", why);
    pg_fail(st, "reconnecting", msg);
    backoff_step(st);
    reconnect_later(st);
}

/* Watch the pending connection's socket for what PQconnectPoll wants. */
static void
pending_step(struct pg_store *st, PostgresPollingStatusType ps)
{
    char why[256];
    if (ps == PGRES_POLLING_OK) {
        loop_del_timer(st->loop, st->connect_timer);
        st->connect_timer = 0;
        unwatch(st, &st->pending_fd);
        st->conn = st->pending;
        st->pending = NULL;
        PQsetnonblocking(st->conn, 1);
        PQsetNoticeProcessor(st->conn, no_notices, NULL);
        log_info("store %s: connected again", st->name);
        st->backoff_ms = 0;
        return;
    }
    if (ps == PGRES_POLLING_FAILED) {
        snprintf_utf8(why, sizeof(why), "%s", PQerrorMessage(st->pending));
        one_line(why);
        pending_failed(st, why);
        return;
    }
    /* The socket may change between polls (another address tried). */
    int fd = PQsocket(st->pending);
    uint32_t ev = ps == PGRES_POLLING_READING ? EPOLLIN : EPOLLOUT;
    if (fd != st->pending_fd) {
        unwatch(st, &st->pending_fd);
        if (loop_add_fd(st->loop, fd, ev, pending_fd_cb, st) < 0) {
            pending_failed(st, "cannot watch the connection's socket");
            return;
        }
        st->pending_fd = fd;
    } else {
        loop_mod_fd(st->loop, fd, ev);
    }
}

static void
pending_fd_cb(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct pg_store *st = arg;
    pending_step(st, PQconnectPoll(st->pending));
}

/* A server that accepted the socket but never answers (a hung host, a
 * stray listener): no connect waits longer than the bound, on the loop
 * either. */
static int64_t
connect_expired(struct loop *l, void *arg)
{
    (void)l;
    struct pg_store *st = arg;
    char why[80];
    st->connect_timer = 0;
    snprintf(why, sizeof(why), "connecting: no answer within %d ms",
             connect_timeout_ms);
    if (st->pending)
        pending_failed(st, why);
    return -1;
}

static int64_t
retry_fired(struct loop *l, void *arg)
{
    (void)l;
    struct pg_store *st = arg;
    st->retry_timer = 0;
    if (st->conn || st->pending)
        return -1;
    st->pending = PQconnectStart(st->url);
    if (!st->pending || PQstatus(st->pending) == CONNECTION_BAD) {
        char why[256];
        snprintf_utf8(why, sizeof(why), "%s",
                      st->pending ? PQerrorMessage(st->pending)
                                  : "out of memory");
        one_line(why);
        pending_failed(st, why);
        return -1;
    }
    st->connect_timer =
        loop_add_timer(st->loop, connect_timeout_ms, connect_expired, st);
    pending_step(st, PGRES_POLLING_WRITING);
    return -1;
}

/* Without a loop (start-up, tests): nothing; the next call reconnects. */
static void
reconnect_later(struct pg_store *st)
{
    if (!st->loop || st->retry_timer || st->pending || st->conn)
        return;
    int64_t wait = st->backoff_ms ? st->retry_at - now_mono_ms() : 0;
    st->retry_timer =
        loop_add_timer(st->loop, wait > 0 ? wait : 0, retry_fired, st);
}

static void
pgs_attach_loop(struct store *base, struct loop *l)
{
    struct pg_store *st = pg(base);
    st->loop = l;
    reconnect_later(st);
}

/* Connect again if the back-off allows; else fail at once with the
 * reason of the last try.  With a loop, the loop reconnects: fail now. */
static int
pg_reconnect(struct pg_store *st, const char *what)
{
    char why[200];
    int64_t now = now_mono_ms();
    if (st->loop) {
        reconnect_later(st);
        st->quiet++;
        return -EIO;
    }
    if (st->backoff_ms && now < st->retry_at) {
        /* The reason stays the last try's: store_last_error keeps it. */
        st->quiet++;
        return -EIO;
    }
    st->conn = pg_connect(st->url, connect_timeout_ms, why, sizeof(why));
    if (!st->conn) {
        backoff_step(st);
        char msg[300];
        snprintf(msg, sizeof(msg), "database unreachable: %s", why);
        return pg_fail(st, what, msg);
    }
    if (st->backoff_ms)
        log_info("store %s: connected again", st->name);
    st->backoff_ms = 0;
    return 0;
}

/* Run sql (with a: one statement, parameters as text; without: the simple
 * protocol, several statements) and wait for all of its results, up to
 * the call's bound.  The result to read (the first failure, else the
 * last), or NULL with -EIO's reason recorded. */
static int jobs_drain(struct pg_store *st, int64_t deadline);

static PGresult *
pg_query(struct pg_store *st, const char *what, const char *sql,
         const struct pgargs *a)
{
    /* The writes asked before this call go first (their order). */
    if (st->jobs && jobs_drain(st, now_mono_ms() + st->timeout_ms) < 0)
        return NULL;
    /* Gone since the last call: connect again at once. */
    pg_drop_if_closed(st);
    if (st->batch_lost) {
        pg_fail(st, what, "the batch's connection to the database was lost");
        return NULL;
    }
    if (!st->conn && pg_reconnect(st, what) < 0)
        return NULL;
    PGconn *c = st->conn;
    int64_t deadline = now_mono_ms() + st->timeout_ms;
    int ok = a ? PQsendQueryParams(c, sql, a->n, NULL, a->v, NULL, NULL, 0)
               : PQsendQuery(c, sql);
    if (!ok)
        goto out_lost;
    int f;
    while ((f = PQflush(c)) == 1) {
        if (wait_sock(c, POLLIN | POLLOUT, deadline) < 0)
            goto out_timeout;
        if (!PQconsumeInput(c))
            goto out_lost;
    }
    if (f < 0)
        goto out_lost;
    PGresult *keep = NULL, *r;
    for (;;) {
        while (PQisBusy(c)) {
            if (wait_sock(c, POLLIN, deadline) < 0) {
                PQclear(keep);
                goto out_timeout;
            }
            if (!PQconsumeInput(c)) {
                PQclear(keep);
                goto out_lost;
            }
        }
        if (!(r = PQgetResult(c)))
            break;
        keep_result(&keep, r);
    }
    ExecStatusType s = keep ? PQresultStatus(keep) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
        return keep;
    char msg[256];
    snprintf_utf8(msg, sizeof(msg), "%s",
                  keep ? PQresultErrorMessage(keep) : PQerrorMessage(c));
    PQclear(keep);
    if (PQstatus(c) == CONNECTION_BAD) {
        pg_drop(st);
        char lost[300];
        snprintf(lost, sizeof(lost), "database unreachable: %s", msg);
        pg_fail(st, what, lost);
        return NULL;
    }
    pg_fail(st, what, msg);
    return NULL;

out_timeout:
    pg_timed_out(st, what);
    return NULL;
out_lost:
    pg_lost(st, what);
    return NULL;
}

/* A statement whose rows do not matter; 0 or -EIO.  *changed (if given)
 * gets the rows it touched. */
static int
pg_run(struct pg_store *st, const char *what, const char *sql,
       const struct pgargs *a, int64_t *changed)
{
    PGresult *r = pg_query(st, what, sql, a);
    if (!r)
        return -EIO;
    if (changed)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

static int64_t
get_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *
get_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* --- asynchronous writes on the loop (store.h) ----------------------------
 * A write asked with a loop attached is a job: its statement and a copy of
 * its parameters, queued on the connection.  The head is sent with
 * PQsendQueryParams, the connection's socket watched on the loop while it
 * is out, and its answer read there with PQconsumeInput / PQgetResult;
 * then the next is sent.  One at a time keeps the order asked and the
 * statements' own atomicity (each is its own transaction).  A job not
 * answered within the bound from when it was asked puts the connection in
 * doubt, as a blocking call's timeout does: dropped, and every job queued
 * fails.  The answers of failed jobs are told from a 0 ms timer, never
 * from inside whichever call found the connection lost. */

enum pg_job_kind {
    JOB_RUN,   /* rows do not matter: 0 */
    JOB_ID,    /* RETURNING id: the id */
    JOB_LEASE, /* the lease statement: taken, holder, expiry */
    JOB_TOUCH, /* an UPDATE of one row: 0, -ENOENT when none matched */
    JOB_ROWS,  /* rows for j->rows to hand on (events, an action) */
};

struct pg_job {
    struct pg_job *next;
    enum pg_job_kind kind;
    const char *what; /* for store_last_error: "storing transition" */
    const char *sql;  /* static text */
    int nargs;
    char *argv[PG_MAX_ARGS]; /* owned copies; NULL is SQL NULL */
    int64_t asked, deadline; /* monotonic ms */
    PGresult *keep;          /* the first failure, else the last result */
    store_done_cb *done;
    store_lease_cb *lease_done;
    /* JOB_ROWS: hands r (NULL: failed, rc the errno) to j->rows_cb. */
    void (*rows)(struct pg_job *j, const PGresult *r, int rc);
    void *rows_cb;
    void *arg;
};

static void
job_free(struct pg_job *j)
{
    for (int i = 0; i < j->nargs; i++)
        free(j->argv[i]);
    PQclear(j->keep);
    free(j);
}

/* Tell the asker: r is the job's result (NULL: it failed, and
 * store_last_error says why; rc then is the errno). */
static void
job_answer(struct pg_store *st, struct pg_job *j, const PGresult *r, int rc)
{
    if (j->kind == JOB_ROWS) {
        j->rows(j, r, r ? 0 : rc);
        return;
    }
    struct store_lease l = {0};
    int64_t v = rc;
    if (r && j->kind == JOB_ID) {
        v = PQntuples(r) > 0 ? get_int(r, 0, 0) : 0;
        if (v <= 0)
            v = pg_fail(st, j->what, "no id returned");
    } else if (r && j->kind == JOB_LEASE) {
        v = 0;
        if (PQntuples(r) > 0) {
            const char *h = get_text(r, 0, 0);
            strlcpy_s(l.holder, h ? h : "", sizeof(l.holder));
            l.expires_ms = get_int(r, 0, 1);
            v = strcmp(get_text(r, 0, 2) ? get_text(r, 0, 2) : "", "t") == 0;
        }
    } else if (r && j->kind == JOB_TOUCH) {
        v = strtoll(PQcmdTuples((PGresult *)r), NULL, 10) > 0 ? 0 : -ENOENT;
    } else if (r) {
        v = 0;
    }
    if (j->kind == JOB_LEASE) {
        if (j->lease_done)
            j->lease_done(j->arg, (int)v, &l);
    } else if (j->done) {
        j->done(j->arg, v);
    }
}

static void jobs_send(struct pg_store *st);

/* The failed jobs' askers hear rc, in the order they asked. */
static void
jobs_answer_failed(struct pg_store *st, int rc)
{
    loop_del_timer(st->loop, st->failed_timer);
    st->failed_timer = 0;
    struct pg_job *j;
    while ((j = st->failed)) {
        st->failed = j->next;
        job_answer(st, j, NULL, rc);
        job_free(j);
    }
}

/* Every job queued fails (the connection went), answered from the loop. */
static int64_t
jobs_failed_fire(struct loop *l, void *arg)
{
    (void)l;
    struct pg_store *st = arg;
    st->failed_timer = 0;
    jobs_answer_failed(st, -EIO);
    return -1;
}

static void
jobs_fail_all(struct pg_store *st)
{
    unwatch(st, &st->conn_fd);
    loop_del_timer(st->loop, st->job_timer);
    st->job_timer = 0;
    st->job_out = false;
    if (!st->jobs)
        return;
    struct pg_job **tail = &st->failed;
    while (*tail)
        tail = &(*tail)->next;
    *tail = st->jobs;
    st->jobs = NULL;
    st->jobs_tail = &st->jobs;
    if (!st->failed_timer)
        st->failed_timer = loop_add_timer(st->loop, 0, jobs_failed_fire, st);
}

/* The head job's bound passed: what the server did with it is unknown. */
static int64_t
job_expired(struct loop *l, void *arg)
{
    (void)l;
    struct pg_store *st = arg;
    st->job_timer = 0;
    pg_timed_out(st, st->jobs ? st->jobs->what : "writing");
    return -1;
}

/* The head job is answered: off the queue, told, the next one sent. */
static void
job_finished(struct pg_store *st)
{
    struct pg_job *j = st->jobs;
    st->jobs = j->next;
    if (!st->jobs)
        st->jobs_tail = &st->jobs;
    st->job_out = false;
    loop_del_timer(st->loop, st->job_timer);
    st->job_timer = 0;
    PGresult *r = j->keep;
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        job_answer(st, j, r, 0);
    } else {
        pg_fail(st, j->what,
                r ? PQresultErrorMessage(r) : "no result from the server");
        job_answer(st, j, NULL, -EIO);
    }
    job_free(j);
    if (!st->jobs)
        unwatch(st, &st->conn_fd);
    jobs_send(st);
}

/* Read what the server sent for the head job: 1 when it is answered,
 * 0 when more is to come, -1 when the connection was lost (dropped). */
static int
jobs_read(struct pg_store *st)
{
    PGconn *c = st->conn;
    if (!PQconsumeInput(c)) {
        pg_lost(st, st->jobs ? st->jobs->what : "writing");
        return -1;
    }
    struct pg_job *j = st->jobs;
    while (j && st->job_out && !PQisBusy(c)) {
        PGresult *r = PQgetResult(c);
        if (!r)
            return 1;
        keep_result(&j->keep, r);
    }
    return 0;
}

static void
conn_fd_cb(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    struct pg_store *st = arg;
    if (!st->conn || !st->job_out)
        return;
    if (events & EPOLLOUT) {
        int f = PQflush(st->conn);
        if (f == 0)
            loop_mod_fd(st->loop, st->conn_fd, EPOLLIN);
    }
    if (jobs_read(st) == 1)
        job_finished(st);
}

/* Send the head job if none is out; the connection is up. */
static void
jobs_send(struct pg_store *st)
{
    struct pg_job *j = st->jobs;
    if (!j || st->job_out || !st->conn)
        return;
    PGconn *c = st->conn;
    if (!PQsendQueryParams(c, j->sql, j->nargs, NULL,
                           (const char *const *)j->argv, NULL, NULL, 0)) {
        pg_lost(st, j->what);
        return;
    }
    st->job_out = true;
    int f = PQflush(c);
    uint32_t ev = EPOLLIN | (f == 1 ? EPOLLOUT : 0);
    if (st->conn_fd < 0) {
        if (loop_add_fd(st->loop, PQsocket(c), ev, conn_fd_cb, st) == 0)
            st->conn_fd = PQsocket(c);
    } else {
        loop_mod_fd(st->loop, st->conn_fd, ev);
    }
    int64_t left = j->deadline - now_mono_ms();
    st->job_timer =
        loop_add_timer(st->loop, left > 0 ? left : 0, job_expired, st);
}

/* Before a blocking call: wait for the jobs queued before it (its order),
 * within its bound; 0, or -EIO when the bound passed or the connection
 * was lost (dropped, every job failed). */
static int
jobs_drain(struct pg_store *st, int64_t deadline)
{
    while (st->jobs && st->conn) {
        if (!st->job_out) {
            jobs_send(st);
            continue;
        }
        short ev = POLLIN | (PQflush(st->conn) == 1 ? POLLOUT : 0);
        if (wait_sock(st->conn, ev, deadline) < 0)
            return pg_timed_out(st, st->jobs->what);
        int r = jobs_read(st);
        if (r < 0)
            return -EIO;
        if (r == 1)
            job_finished(st);
    }
    return st->conn ? 0 : -EIO;
}

static void job_queue(struct pg_store *st, struct pg_job *j,
                      const struct pgargs *a);

static struct pg_job *
job_new(enum pg_job_kind kind, const char *what, const char *sql, void *arg)
{
    struct pg_job *j = xcalloc(1, sizeof(*j));
    j->kind = kind;
    j->what = what;
    j->sql = sql;
    j->arg = arg;
    return j;
}

/* Queue a write (sync when the store cannot: no loop, a batch). */
static void
job_submit(struct pg_store *st, enum pg_job_kind kind, const char *what,
           const char *sql, const struct pgargs *a, store_done_cb *done,
           store_lease_cb *lease_done, void *arg)
{
    struct pg_job *j = job_new(kind, what, sql, arg);
    j->done = done;
    j->lease_done = lease_done;
    job_queue(st, j, a);
}

/* Queue a read whose rows rows() hands to cb. */
static void
job_submit_rows(struct pg_store *st, const char *what, const char *sql,
                const struct pgargs *a,
                void (*rows)(struct pg_job *, const PGresult *, int), void *cb,
                void *arg)
{
    struct pg_job *j = job_new(JOB_ROWS, what, sql, arg);
    j->rows = rows;
    j->rows_cb = cb;
    job_queue(st, j, a);
}

static void
job_queue(struct pg_store *st, struct pg_job *j, const struct pgargs *a)
{
    const char *what = j->what, *sql = j->sql;
    j->nargs = a->n;
    for (int i = 0; i < a->n; i++)
        j->argv[i] = a->v[i] ? xstrdup(a->v[i]) : NULL;
    j->asked = now_mono_ms();
    j->deadline = j->asked + st->timeout_ms;
    if (!st->loop || st->in_batch) {
        /* Nothing to wait on but the call itself: the blocking one. */
        PGresult *r = pg_query(st, what, sql, a);
        job_answer(st, j, r, -EIO);
        PQclear(r);
        job_free(j);
        return;
    }
    pg_drop_if_closed(st);
    if (!st->conn && pg_reconnect(st, what) < 0) {
        job_answer(st, j, NULL, -EIO);
        job_free(j);
        return;
    }
    *st->jobs_tail = j;
    st->jobs_tail = &j->next;
    jobs_send(st);
}

static int
pgs_flush(struct store *base)
{
    struct pg_store *st = pg(base);
    int rc = st->jobs ? jobs_drain(st, now_mono_ms() + st->timeout_ms) : 0;
    if (st->loop)
        jobs_answer_failed(st, -EIO);
    return rc;
}

/* Up, as far as a look at the socket tells: a server that went away
 * (a restart, a stop) closed it, and that is noticed now. */
static bool
pgs_connected(struct store *base)
{
    struct pg_store *st = pg(base);
    if (pg_drop_if_closed(st))
        pg_fail(st, "writing",
                "database unreachable: the server closed the "
                "connection");
    return st->conn != NULL;
}

static int64_t
pgs_waiting_ms(const struct store *base)
{
    const struct pg_store *st = (const struct pg_store *)base;
    /* At least 1 while one waits, though asked this very millisecond. */
    int64_t w = st->jobs ? now_mono_ms() - st->jobs->asked : 0;
    return st->jobs && w < 1 ? 1 : w;
}

/* At close: whoever still waits hears -ECANCELED. */
static void
jobs_cancel(struct pg_store *st)
{
    if (!st->loop)
        return;
    jobs_fail_all(st);
    jobs_answer_failed(st, -ECANCELED);
}

/* --- open, migrate, close ------------------------------------------------ */

/* Under one transaction-scoped advisory lock: two nodes starting at once
 * run each migration once, the second waits and finds it done. */
static int
migrate(struct pg_store *st, char *err, size_t errlen)
{
    PGresult *r;
    if (pg_run(st, "migrating", "BEGIN", NULL, NULL) < 0)
        goto out_fail;
    if (pg_run(st, "migrating",
               "SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ");"
               "CREATE TABLE IF NOT EXISTS schema_version ("
               "  version INTEGER NOT NULL);",
               NULL, NULL) < 0)
        goto out_rollback;
    if (!(r = pg_query(st, "reading schema version",
                       "SELECT version FROM schema_version", NULL)))
        goto out_rollback;
    bool have = PQntuples(r) > 0;
    st->version = have ? (int)get_int(r, 0, 0) : 0;
    PQclear(r);
    if (!have &&
        pg_run(st, "migrating", "INSERT INTO schema_version VALUES (0)", NULL,
               NULL) < 0)
        goto out_rollback;
    if (st->version > store_schema_latest) {
        pg_run(st, "migrating", "ROLLBACK", NULL, NULL);
        seterr(err, errlen,
               "%s: database schema version %d is newer than this rescued "
               "knows (%d); refusing to touch it",
               st->name, st->version, store_schema_latest);
        return -EPROTO;
    }
    int from = st->version;
    while (st->version < store_schema_latest) {
        struct pgargs a = {0};
        arg_int(&a, st->version + 1);
        if (pg_run(st, "migrating",
                   store_migration_sql(st->version, STORE_DIALECT_PG), NULL,
                   NULL) < 0 ||
            pg_run(st, "migrating", "UPDATE schema_version SET version = $1",
                   &a, NULL) < 0)
            goto out_rollback;
        st->version++;
    }
    if (pg_run(st, "migrating", "COMMIT", NULL, NULL) < 0)
        goto out_fail;
    if (st->version != from)
        log_info("store %s: schema migrated from version %d to %d", st->name,
                 from, st->version);
    return 0;

out_rollback:
    if (st->conn)
        pg_run(st, "migrating", "ROLLBACK", NULL, NULL);
out_fail:
    seterr(err, errlen, "%s: %s", st->name, st->base.last_error);
    return -EIO;
}

/* The URL for logs: no password, neither user:PASS@ nor password=. */
static char *
redact(const char *url)
{
    char *s = uri_redact(url);
    char *p = s;
    while ((p = strstr(p, "password="))) {
        if (p > s && p[-1] != '?' && p[-1] != '&') {
            p++;
            continue;
        }
        p += strlen("password=");
        size_t n = strcspn(p, "&#");
        char *t = xasprintf("%.*sxxx%s", (int)(p - s), s, p + n);
        p = t + (p - s) + 3;
        free(s);
        s = t;
    }
    return s;
}

static void pgs_close(struct store *base);
static void listen_drop(struct pg_store *st);

static struct store *
pgs_open(const struct uri_store *u, const char *data_dir, char *err,
         size_t errlen)
{
    (void)data_dir;
    struct pg_store *st = xcalloc(1, sizeof(*st));
    char why[256];
    st->base.ops = &store_pg_ops;
    st->pending_fd = -1;
    st->listen_fd = -1;
    st->conn_fd = -1;
    st->jobs_tail = &st->jobs;
    st->url = xstrdup(u->url);
    st->name = redact(u->url);
    st->timeout_ms = PG_OPEN_TIMEOUT_MS;
    st->conn = pg_connect(st->url, PG_OPEN_TIMEOUT_MS, why, sizeof(why));
    if (!st->conn) {
        seterr(err, errlen, "%s: %s", st->name, why);
        goto out_close;
    }
    if (migrate(st, err, errlen) < 0)
        goto out_close;
    st->timeout_ms = op_timeout_ms;
    log_info("store: %s, schema version %d", st->name, st->version);
    return &st->base;

out_close:
    pgs_close(&st->base);
    return NULL;
}

static void
pgs_close(struct store *base)
{
    struct pg_store *st = pg(base);
    jobs_cancel(st);
    if (st->loop) {
        loop_del_timer(st->loop, st->retry_timer);
        pending_free(st);
        loop_del_timer(st->loop, st->listen_timer);
        listen_drop(st);
    }
    PQfinish(st->conn);
    free(st->url);
    free(st->name);
    free(st);
}

static int
pgs_schema_version(struct store *base)
{
    return pg(base)->version;
}

/* --- batches ------------------------------------------------------------- */

static int
pgs_begin(struct store *base)
{
    struct pg_store *st = pg(base);
    int r = pg_run(st, "begin", "BEGIN", NULL, NULL);
    st->in_batch = r == 0;
    st->batch_lost = false;
    return r;
}

static int
pgs_commit(struct store *base)
{
    struct pg_store *st = pg(base);
    int r = pg_run(st, "commit", "COMMIT", NULL, NULL);
    /* A COMMIT of a failed transaction answers ROLLBACK, not an error. */
    st->in_batch = false;
    st->batch_lost = false;
    return r;
}

static void
pgs_rollback(struct store *base)
{
    struct pg_store *st = pg(base);
    if (st->conn && !st->batch_lost)
        pg_run(st, "rollback", "ROLLBACK", NULL, NULL);
    st->in_batch = false;
    st->batch_lost = false;
}

/* --- servers and events -------------------------------------------------- */

#define SERVER_UPSERT                                                          \
    "INSERT INTO servers (id, state, since_ms, deadline_ms, retries,"          \
    " ttl_s, expires_at_ms, last_error, ssh_keys, rescue_json, updated_ms,"    \
    " pending_actions, sent_actions, project, project_since_id, action_id)"    \
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"    \
    " $15, $16)"                                                               \
    " ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state,"                  \
    " since_ms = EXCLUDED.since_ms, deadline_ms = EXCLUDED.deadline_ms,"       \
    " retries = EXCLUDED.retries, ttl_s = EXCLUDED.ttl_s,"                     \
    " expires_at_ms = EXCLUDED.expires_at_ms,"                                 \
    " last_error = EXCLUDED.last_error, ssh_keys = EXCLUDED.ssh_keys,"         \
    " rescue_json = EXCLUDED.rescue_json, updated_ms = EXCLUDED.updated_ms,"   \
    " pending_actions = EXCLUDED.pending_actions,"                             \
    " sent_actions = EXCLUDED.sent_actions, project = EXCLUDED.project,"       \
    " project_since_id = EXCLUDED.project_since_id,"                           \
    " action_id = EXCLUDED.action_id"

static void
server_args(struct pgargs *a, const char *id, const struct server_row *row,
            char *last_error, size_t len)
{
    const struct fsm_server *f = &row->fsm;
    arg_text(a, id);
    arg_int(a, f->state);
    arg_int(a, f->since_ms);
    arg_int(a, f->deadline_ms);
    arg_int(a, f->retries);
    arg_int(a, f->ttl_s);
    arg_int(a, f->expires_at_ms);
    strlcpy_s(last_error, f->last_error,
              len < sizeof(f->last_error) ? len : sizeof(f->last_error));
    arg_text(a, last_error);
    arg_text(a, row->ssh_keys);
    arg_text(a, row->rescue_json);
    arg_int(a, now_wall_ms());
    arg_int(a, row->pending_actions);
    arg_int(a, row->sent_actions);
    arg_text(a, row->project);
    arg_int(a, row->project_since_id);
    arg_int(a, row->action_id);
}

#define SERVER_COLUMNS                                                         \
    "state, since_ms, deadline_ms, retries, ttl_s, expires_at_ms,"             \
    " last_error, ssh_keys, rescue_json, pending_actions, sent_actions,"       \
    " project, project_since_id, action_id"

/* Row i of a SERVER_COLUMNS answer, from column c on, into out: 0 or
 * -EIO.  Its strings copied, or (!copy) r's own, valid while r is. */
static int
server_of_result(const PGresult *r, int i, int c, const char *id, bool copy,
                 struct server_row *out)
{
    memset(out, 0, sizeof(*out));
    int64_t state = get_int(r, i, c);
    if (state < 0 || state >= FSM_NSTATES) {
        log_warnx("store: server %s has unknown state %lld", id,
                  (long long)state);
        return -EIO;
    }
    out->fsm.state = (enum fsm_state)state;
    out->fsm.since_ms = get_int(r, i, c + 1);
    out->fsm.deadline_ms = get_int(r, i, c + 2);
    out->fsm.retries = (int)get_int(r, i, c + 3);
    out->fsm.ttl_s = get_int(r, i, c + 4);
    out->fsm.expires_at_ms = get_int(r, i, c + 5);
    const char *le = get_text(r, i, c + 6);
    strlcpy_s(out->fsm.last_error, le ? le : "", sizeof(out->fsm.last_error));
    const char *k = get_text(r, i, c + 7), *j = get_text(r, i, c + 8);
    const char *pr = get_text(r, i, c + 11);
    out->ssh_keys = (char *)(k && copy ? xstrdup(k) : k);
    out->rescue_json = (char *)(j && copy ? xstrdup(j) : j);
    out->project = (char *)(pr && copy ? xstrdup(pr) : pr);
    out->pending_actions = (unsigned)get_int(r, i, c + 9);
    out->sent_actions = (unsigned)get_int(r, i, c + 10);
    out->project_since_id = get_int(r, i, c + 12);
    out->action_id = get_int(r, i, c + 13);
    return 0;
}

static int
pgs_load_server(struct store *base, const char *id, struct server_row *out)
{
    struct pgargs a = {0};
    memset(out, 0, sizeof(*out));
    arg_text(&a, id);
    PGresult *r =
        pg_query(pg(base), "loading server",
                 "SELECT " SERVER_COLUMNS " FROM servers WHERE id = $1", &a);
    if (!r)
        return -EIO;
    int ret = PQntuples(r) ? server_of_result(r, 0, 0, id, true, out) : -ENOENT;
    PQclear(r);
    return ret;
}

static void
rows_of_servers(struct pg_job *j, const PGresult *r, int rc)
{
    store_row_cb *cb = (store_row_cb *)j->rows_cb;
    for (int i = 0; r && i < PQntuples(r); i++) {
        const char *id = get_text(r, i, 0);
        struct server_row row;
        if (server_of_result(r, i, 1, id, false, &row) == 0)
            cb(j->arg, 0, id, &row); /* else logged; the others count */
    }
    cb(j->arg, r ? 0 : rc, NULL, NULL);
}

/* Queue a read of many servers: sql's $1 is their ids, as one text[]
 * literal. */
static void
job_submit_ids(struct pg_store *st, const char *what, const char *sql,
               const char *const *ids, size_t n,
               void (*rows)(struct pg_job *, const PGresult *, int), void *cb,
               void *arg)
{
    struct buf list = {0};
    buf_append(&list, "{", 1);
    for (size_t i = 0; i < n; i++) {
        buf_append(&list, i ? ",\"" : "\"", i ? 2 : 1);
        for (const char *c = ids[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                buf_append(&list, "\\", 1);
            buf_append(&list, c, 1);
        }
        buf_append(&list, "\"", 1);
    }
    buf_append(&list, "}", 2); /* and its NUL */
    struct pgargs a = {0};
    arg_text(&a, list.data);
    job_submit_rows(st, what, sql, &a, rows, cb, arg);
    buf_free(&list);
}

static void
pgs_load_servers_async(struct store *base, const char *const *ids, size_t n,
                       store_row_cb *cb, void *arg)
{
    job_submit_ids(pg(base), "loading servers",
                   "SELECT id, " SERVER_COLUMNS
                   " FROM servers WHERE id = ANY($1::text[])",
                   ids, n, rows_of_servers, (void *)cb, arg);
}

static int
pgs_save_server(struct store *base, const char *id,
                const struct server_row *row)
{
    struct pgargs a = {0};
    char le[sizeof(row->fsm.last_error)];
    server_args(&a, id, row, le, sizeof(le));
    return pg_run(pg(base), "saving server", SERVER_UPSERT, &a, NULL);
}

/* A statement that returns one id (RETURNING id). */
static int64_t
returning_id(struct pg_store *st, const char *what, const char *sql,
             const struct pgargs *a)
{
    PGresult *r = pg_query(st, what, sql, a);
    if (!r)
        return -EIO;
    int64_t id = PQntuples(r) > 0 ? get_int(r, 0, 0) : 0;
    PQclear(r);
    if (id <= 0)
        return pg_fail(st, what, "no id returned");
    return id;
}

/* The change feed's order (store.h, store_feed_head): an event's id is
 * drawn under a transaction-level advisory lock, held to the commit, so
 * events commit in id order and a follower's cursor skips none (a
 * sequence alone hands out ids that may commit out of order).  The CTE is
 * MATERIALIZED so the lock is taken before nextval runs.  The same CTE
 * queues a NOTIFY, sent by the server at the commit, for the nodes that
 * LISTEN (pgs_feed_notify).  Writers of events queue behind each other's
 * transactions: a batch (store_begin) holds the lock to its end. */
#define FEED_LOCK_KEY "7306086953432998913"
#define FEED_CHANNEL "rescued_feed"
#define FEED_LOCK                                                              \
    "l AS MATERIALIZED (SELECT pg_advisory_xact_lock(" FEED_LOCK_KEY "),"      \
    " pg_notify('" FEED_CHANNEL "', ''))"

/* One statement: the row and its event commit together or not at all. */
#define TRANSITION_SQL                                                         \
    "WITH s AS (" SERVER_UPSERT "), " FEED_LOCK                                \
    " INSERT INTO events (id, server, at_ms, kind,"                            \
    " from_state, to_state, actor, message)"                                   \
    " SELECT nextval('events_id_seq'), $1, $11,"                               \
    " 'transition', $17, $18, 'rescued', $19 FROM l"                           \
    " RETURNING id"

static void transition_args(struct pgargs *a, const char *id,
                            const struct server_row *row, enum fsm_state from,
                            const char *why, char *le, size_t lelen);

static int64_t
pgs_transition(struct store *base, const char *id, const struct server_row *row,
               enum fsm_state from, const char *why)
{
    struct pgargs a = {0};
    char le[sizeof(row->fsm.last_error)];
    transition_args(&a, id, row, from, why, le, sizeof(le));
    return returning_id(pg(base), "storing transition", TRANSITION_SQL, &a);
}

static void
transition_args(struct pgargs *a, const char *id, const struct server_row *row,
                enum fsm_state from, const char *why, char *le, size_t lelen)
{
    server_args(a, id, row, le, lelen);
    arg_text(a, fsm_state_name(from));
    arg_text(a, fsm_state_name(row->fsm.state));
    arg_text(a, why ? why : "");
}

static void
pgs_transition_async(struct store *base, const char *id,
                     const struct server_row *row, enum fsm_state from,
                     const char *why, store_done_cb *cb, void *arg)
{
    struct pgargs a = {0};
    char le[sizeof(row->fsm.last_error)];
    transition_args(&a, id, row, from, why, le, sizeof(le));
    job_submit(pg(base), JOB_ID, "storing transition", TRANSITION_SQL, &a, cb,
               NULL, arg);
}

static void
pgs_save_server_async(struct store *base, const char *id,
                      const struct server_row *row, store_done_cb *cb,
                      void *arg)
{
    struct pgargs a = {0};
    char le[sizeof(row->fsm.last_error)];
    server_args(&a, id, row, le, sizeof(le));
    job_submit(pg(base), JOB_RUN, "saving server", SERVER_UPSERT, &a, cb, NULL,
               arg);
}

#define APPEND_EVENT_SQL                                                       \
    "WITH " FEED_LOCK " INSERT INTO events (id, server, at_ms, kind, actor,"   \
    " message) SELECT nextval('events_id_seq'), $1, $2,"                       \
    " $3, $4, $5 FROM l RETURNING id"

static void
event_args(struct pgargs *a, const char *server, const char *kind,
           const char *actor, const char *message)
{
    arg_text(a, server);
    arg_int(a, now_wall_ms());
    arg_text(a, kind);
    arg_text(a, actor ? actor : "");
    arg_text(a, message ? message : "");
}

static int64_t
pgs_append_event(struct store *base, const char *server, const char *kind,
                 const char *actor, const char *message)
{
    struct pgargs a = {0};
    event_args(&a, server, kind, actor, message);
    return returning_id(pg(base), "appending event", APPEND_EVENT_SQL, &a);
}

static void
pgs_append_event_async(struct store *base, const char *server, const char *kind,
                       const char *actor, const char *message,
                       store_done_cb *cb, void *arg)
{
    struct pgargs a = {0};
    event_args(&a, server, kind, actor, message);
    job_submit(pg(base), JOB_ID, "appending event", APPEND_EVENT_SQL, &a, cb,
               NULL, arg);
}

#define EVENT_COLUMNS                                                          \
    "id, server, at_ms, kind, from_state, to_state, actor, message"

#define LIST_SERVER_EVENTS_SQL                                                 \
    "SELECT " EVENT_COLUMNS " FROM events"                                     \
    " WHERE server = $1 AND id > $2 ORDER BY id LIMIT $3"
#define LIST_EVENTS_SQL                                                        \
    "SELECT " EVENT_COLUMNS " FROM events WHERE id > $1 ORDER BY id LIMIT $2"

static int
pgs_list_events(struct store *base, const char *server, int64_t after_id,
                int limit, store_event_cb *cb, void *arg)
{
    struct pg_store *st = pg(base);
    struct pgargs a = {0};
    if (server)
        arg_text(&a, server);
    arg_int(&a, after_id);
    if (limit > 0)
        arg_int(&a, limit);
    else
        arg_text(&a, NULL); /* LIMIT NULL: all */
    PGresult *r =
        pg_query(st, "listing events",
                 server ? LIST_SERVER_EVENTS_SQL : LIST_EVENTS_SQL, &a);
    if (!r)
        return -EIO;
    int ret = 0;
    for (int i = 0; i < PQntuples(r) && ret == 0; i++) {
        struct store_event ev = {
            .id = get_int(r, i, 0),
            .server = get_text(r, i, 1),
            .at_ms = get_int(r, i, 2),
            .kind = get_text(r, i, 3),
            .from_state = get_text(r, i, 4),
            .to_state = get_text(r, i, 5),
            .actor = get_text(r, i, 6),
            .message = get_text(r, i, 7),
        };
        ret = cb(arg, &ev);
    }
    PQclear(r);
    return ret;
}

static void
events_rows(struct pg_job *j, const PGresult *r, int rc)
{
    store_events_cb *cb = (store_events_cb *)j->rows_cb;
    if (!r) {
        cb(j->arg, rc, NULL, 0);
        return;
    }
    size_t n = (size_t)PQntuples(r);
    struct store_event *evs = xcalloc(n ? n : 1, sizeof(*evs));
    for (size_t i = 0; i < n; i++)
        evs[i] = (struct store_event){
            .id = get_int(r, (int)i, 0),
            .server = get_text(r, (int)i, 1),
            .at_ms = get_int(r, (int)i, 2),
            .kind = get_text(r, (int)i, 3),
            .from_state = get_text(r, (int)i, 4),
            .to_state = get_text(r, (int)i, 5),
            .actor = get_text(r, (int)i, 6),
            .message = get_text(r, (int)i, 7),
        };
    cb(j->arg, 0, evs, n);
    free(evs);
}

static void
pgs_list_events_async(struct store *base, const char *server, int64_t after_id,
                      int limit, store_events_cb *cb, void *arg)
{
    struct pgargs a = {0};
    if (server)
        arg_text(&a, server);
    arg_int(&a, after_id);
    if (limit > 0)
        arg_int(&a, limit);
    else
        arg_text(&a, NULL);
    job_submit_rows(pg(base), "listing events",
                    server ? LIST_SERVER_EVENTS_SQL : LIST_EVENTS_SQL, &a,
                    events_rows, (void *)cb, arg);
}

/* --- tokens -------------------------------------------------------------- */

/* At most one live token per server: the new one replaces the old, in the
 * same statement (a refused insert revokes nothing). */
#define TOKEN_ADD_SQL                                                          \
    "WITH r AS (UPDATE tokens SET revoked_ms = $3"                             \
    " WHERE server = $2 AND revoked_ms IS NULL)"                               \
    " INSERT INTO tokens (token, server, created_ms)"                          \
    " VALUES ($1, $2, $3)"

static int
pgs_token_add(struct store *base, const char *token, const char *server,
              int64_t created_ms)
{
    struct pgargs a = {0};
    arg_text(&a, token);
    arg_text(&a, server);
    arg_int(&a, created_ms);
    return pg_run(pg(base), "adding token", TOKEN_ADD_SQL, &a, NULL);
}

static void
pgs_token_add_async(struct store *base, const char *token, const char *server,
                    int64_t created_ms, store_done_cb *cb, void *arg)
{
    struct pgargs a = {0};
    arg_text(&a, token);
    arg_text(&a, server);
    arg_int(&a, created_ms);
    job_submit(pg(base), JOB_RUN, "adding token", TOKEN_ADD_SQL, &a, cb, NULL,
               arg);
}

/* One text column of a one-row lookup keyed by key, into out[len]. */
static int
lookup_text(struct pg_store *st, const char *sql, const char *key, char *out,
            size_t len)
{
    struct pgargs a = {0};
    arg_text(&a, key);
    PGresult *r = pg_query(st, "looking up token", sql, &a);
    if (!r)
        return -EIO;
    int ret = 0;
    if (PQntuples(r) == 0) {
        ret = -ENOENT;
    } else {
        const char *t = get_text(r, 0, 0);
        /* A cut-off name would point at another server: refuse it. */
        if (strlcpy_s(out, t ? t : "", len) >= len)
            ret = -ENOSPC;
    }
    PQclear(r);
    return ret;
}

static int
pgs_token_lookup(struct store *base, const char *token, char *server,
                 size_t len)
{
    return lookup_text(pg(base),
                       "SELECT server FROM tokens"
                       " WHERE token = $1 AND revoked_ms IS NULL",
                       token, server, len);
}

static int
pgs_token_of_server(struct store *base, const char *server, char *token,
                    size_t len)
{
    return lookup_text(pg(base),
                       "SELECT token FROM tokens"
                       " WHERE server = $1 AND revoked_ms IS NULL"
                       " ORDER BY created_ms DESC, seq DESC LIMIT 1",
                       server, token, len);
}

#define TOKEN_REVOKE_SQL                                                       \
    "UPDATE tokens SET revoked_ms = $2"                                        \
    " WHERE server = $1 AND revoked_ms IS NULL"

static int
pgs_token_revoke_server(struct store *base, const char *server)
{
    struct pgargs a = {0};
    arg_text(&a, server);
    arg_int(&a, now_wall_ms());
    return pg_run(pg(base), "revoking tokens", TOKEN_REVOKE_SQL, &a, NULL);
}

static void
pgs_token_revoke_server_async(struct store *base, const char *server,
                              store_done_cb *cb, void *arg)
{
    struct pgargs a = {0};
    arg_text(&a, server);
    arg_int(&a, now_wall_ms());
    job_submit(pg(base), JOB_RUN, "revoking tokens", TOKEN_REVOKE_SQL, &a, cb,
               NULL, arg);
}

#define TOKEN_GET_SQL                                                          \
    "SELECT server, addr, overlay_ms FROM tokens"                              \
    " WHERE token = $1 AND revoked_ms IS NULL"

/* TOKEN_GET_SQL's answer into out: 0, -ENOENT, -ENOSPC. */
static int
token_parse(const PGresult *r, struct store_token *out)
{
    memset(out, 0, sizeof(*out));
    if (PQntuples(r) == 0)
        return -ENOENT;
    int ret = 0;
    const char *srv = get_text(r, 0, 0), *addr = get_text(r, 0, 1);
    if (strlcpy_s(out->server, srv ? srv : "", sizeof(out->server)) >=
        sizeof(out->server))
        ret = -ENOSPC;
    strlcpy_s(out->addr, addr ? addr : "", sizeof(out->addr));
    out->overlay_ms = get_int(r, 0, 2);
    return ret;
}

static int
pgs_token_get(struct store *base, const char *token, struct store_token *out)
{
    struct pgargs a = {0};
    memset(out, 0, sizeof(*out));
    arg_text(&a, token);
    PGresult *r = pg_query(pg(base), "looking up token", TOKEN_GET_SQL, &a);
    if (!r)
        return -EIO;
    int ret = token_parse(r, out);
    PQclear(r);
    return ret;
}

static void
token_rows(struct pg_job *j, const PGresult *r, int rc)
{
    store_token_cb *cb = (store_token_cb *)j->rows_cb;
    struct store_token t;
    if (r)
        rc = token_parse(r, &t);
    cb(j->arg, rc, r && rc == 0 ? &t : NULL);
}

static void
pgs_token_get_async(struct store *base, const char *token, store_token_cb *cb,
                    void *arg)
{
    struct pgargs a = {0};
    arg_text(&a, token);
    job_submit_rows(pg(base), "looking up token", TOKEN_GET_SQL, &a, token_rows,
                    (void *)cb, arg);
}

#define TOKEN_MARK_SQL                                                         \
    "UPDATE tokens SET addr = COALESCE(addr, $2),"                             \
    " overlay_ms = COALESCE(overlay_ms, $3)"                                   \
    " WHERE token = $1 AND revoked_ms IS NULL"

static void
mark_args(struct pgargs *a, const char *token, const char *addr,
          int64_t overlay_ms)
{
    arg_text(a, token);
    arg_text(a, addr);
    if (overlay_ms > 0)
        arg_int(a, overlay_ms);
    else
        arg_text(a, NULL);
}

static int
pgs_token_mark(struct store *base, const char *token, const char *addr,
               int64_t overlay_ms)
{
    struct pgargs a = {0};
    mark_args(&a, token, addr, overlay_ms);
    int64_t n = 0;
    int ret = pg_run(pg(base), "marking token", TOKEN_MARK_SQL, &a, &n);
    if (ret == 0 && n == 0)
        ret = -ENOENT;
    return ret;
}

static void
pgs_token_mark_async(struct store *base, const char *token, const char *addr,
                     int64_t overlay_ms, store_done_cb *cb, void *arg)
{
    struct pgargs a = {0};
    mark_args(&a, token, addr, overlay_ms);
    job_submit(pg(base), JOB_TOUCH, "marking token", TOKEN_MARK_SQL, &a, cb,
               NULL, arg);
}

static int
pgs_token_last_addr(struct store *base, const char *server, char *addr,
                    size_t len)
{
    return lookup_text(pg(base),
                       "SELECT addr FROM tokens"
                       " WHERE server = $1 AND addr IS NOT NULL"
                       " ORDER BY created_ms DESC, seq DESC LIMIT 1",
                       server, addr, len);
}

/* The three token reads of each server (pgs_token_of_server, _get,
 * _last_addr) as one statement for them all. */
#define SERVER_TOKENS_SQL                                                      \
    "SELECT s.id, l.token, l.addr, l.overlay_ms, b.addr"                       \
    " FROM unnest($1::text[]) WITH ORDINALITY AS s(id, n)"                     \
    " LEFT JOIN LATERAL (SELECT token, addr, overlay_ms FROM tokens"           \
    " WHERE server = s.id AND revoked_ms IS NULL"                              \
    " ORDER BY created_ms DESC, seq DESC LIMIT 1) l ON true"                   \
    " LEFT JOIN LATERAL (SELECT addr FROM tokens"                              \
    " WHERE server = s.id AND addr IS NOT NULL"                                \
    " ORDER BY created_ms DESC, seq DESC LIMIT 1) b ON true ORDER BY s.n"

static void
rows_of_tokens(struct pg_job *j, const PGresult *r, int rc)
{
    store_tokens_cb *cb = (store_tokens_cb *)j->rows_cb;
    for (int i = 0; r && i < PQntuples(r); i++) {
        const char *addr = get_text(r, i, 2), *last = get_text(r, i, 4);
        struct store_server_tokens t = {.server = get_text(r, i, 0),
                                        .token = get_text(r, i, 1),
                                        .addr = addr ? addr : "",
                                        .overlay_ms = get_int(r, i, 3),
                                        .last_addr = last ? last : ""};
        cb(j->arg, 0, &t);
    }
    cb(j->arg, r ? 0 : rc, NULL);
}

static void
pgs_server_tokens_async(struct store *base, const char *const *ids, size_t n,
                        store_tokens_cb *cb, void *arg)
{
    job_submit_ids(pg(base), "reading tokens", SERVER_TOKENS_SQL, ids, n,
                   rows_of_tokens, (void *)cb, arg);
}

/* --- retention ----------------------------------------------------------- */

static int64_t
pgs_prune(struct store *base, int64_t before_ms, int keep_per_server,
          int max_rows)
{
    struct pg_store *st = pg(base);
    int64_t done = 0, n;
    if (pg_run(st, "retention", "BEGIN", NULL, NULL) < 0)
        return -EIO;
    if (before_ms > 0) {
        /* The oldest max_rows by id, those older than the cut: ids grow
         * with time, so this never scans the young part of the table. */
        struct pgargs a = {0};
        arg_int(&a, before_ms);
        arg_int(&a, max_rows);
        if (pg_run(st, "retention",
                   "DELETE FROM events WHERE id IN (SELECT id FROM"
                   " (SELECT id, at_ms FROM events ORDER BY id LIMIT $2) o"
                   " WHERE at_ms < $1)",
                   &a, &n) < 0)
            goto out_rollback;
        done += n;
        a.n = 1;
        if (pg_run(st, "retention",
                   "DELETE FROM tokens WHERE revoked_ms IS NOT NULL"
                   " AND revoked_ms < $1",
                   &a, &n) < 0)
            goto out_rollback;
        done += n;
    }
    if (keep_per_server > 0) {
        PGresult *ids = pg_query(st, "retention",
                                 "SELECT id FROM servers ORDER BY id", NULL);
        if (!ids)
            goto out_rollback;
        for (int i = 0; i < PQntuples(ids) && done < max_rows; i++) {
            /* Past the server's newest keep, the oldest first. */
            struct pgargs a = {0};
            arg_text(&a, get_text(ids, i, 0));
            arg_int(&a, keep_per_server);
            arg_int(&a, max_rows - done);
            if (pg_run(st, "retention",
                       "DELETE FROM events WHERE id IN (SELECT id FROM events"
                       " WHERE server = $1 AND id <= (SELECT id FROM events"
                       " WHERE server = $1 ORDER BY id DESC LIMIT 1"
                       " OFFSET $2) ORDER BY id LIMIT $3)",
                       &a, &n) < 0) {
                PQclear(ids);
                goto out_rollback;
            }
            done += n;
        }
        PQclear(ids);
    }
    if (pg_run(st, "retention", "COMMIT", NULL, NULL) < 0)
        return -EIO;
    return done;

out_rollback:
    if (st->conn)
        pg_run(st, "retention", "ROLLBACK", NULL, NULL);
    return -EIO;
}

/* --- the portal's sessions ---------------------------------------------- */

static int
pgs_session_add(struct store *base, const struct store_session *ps)
{
    struct pgargs a = {0};
    arg_text(&a, ps->id_hash);
    arg_text(&a, ps->token_hash);
    arg_text(&a, ps->csrf);
    arg_text(&a, ps->project); /* NULL: the admin's */
    arg_int(&a, ps->expires_ms);
    return pg_run(pg(base), "adding session",
                  "INSERT INTO portal_sessions (id_hash, token_hash, csrf,"
                  " project, expires_ms) VALUES ($1, $2, $3, $4, $5)",
                  &a, NULL);
}

static int
pgs_session_delete(struct store *base, const char *id_hash)
{
    struct pgargs a = {0};
    arg_text(&a, id_hash);
    return pg_run(pg(base), "deleting session",
                  "DELETE FROM portal_sessions WHERE id_hash = $1", &a, NULL);
}

static int
pgs_session_list(struct store *base, int64_t now_ms, store_session_cb *cb,
                 void *arg)
{
    struct pgargs a = {0};
    arg_int(&a, now_ms);
    PGresult *r = pg_query(pg(base), "listing sessions",
                           "SELECT id_hash, token_hash, csrf, project,"
                           " expires_ms FROM portal_sessions"
                           " WHERE expires_ms > $1 ORDER BY expires_ms",
                           &a);
    if (!r)
        return -EIO;
    int ret = 0;
    for (int i = 0; i < PQntuples(r) && ret == 0; i++) {
        struct store_session ps = {
            .id_hash = get_text(r, i, 0),
            .token_hash = get_text(r, i, 1),
            .csrf = get_text(r, i, 2),
            .project = get_text(r, i, 3),
            .expires_ms = get_int(r, i, 4),
        };
        ret = cb(arg, &ps);
    }
    PQclear(r);
    return ret;
}

static int64_t
pgs_session_expire(struct store *base, int64_t now_ms)
{
    struct pgargs a = {0};
    arg_int(&a, now_ms);
    int64_t n = 0;
    int ret =
        pg_run(pg(base), "expiring sessions",
               "DELETE FROM portal_sessions WHERE expires_ms <= $1", &a, &n);
    return ret < 0 ? ret : n;
}

/* --- facilities ---------------------------------------------------------- */

/* One statement: the upsert's WHERE is store.h's rule (free, lapsed, or
 * the node's own), and since_ms moves only when the holder changes.  Not
 * taken, the holder as it stood (the upsert's CTE sees the table before
 * it): one row either way, holder, expiry, taken. */
#define LEASE_SQL                                                              \
    "WITH c AS (SELECT " PG_NOW(                                               \
        "$4") " AS now),"                                                      \
              " t AS (INSERT INTO leases AS o (facility, holder, expires_ms, " \
              "since_ms)"                                                      \
              " SELECT $1, $2, c.now + $3::bigint, c.now FROM c"               \
              " ON CONFLICT (facility) DO UPDATE"                              \
              " SET holder = $2, expires_ms = EXCLUDED.expires_ms,"            \
              " since_ms = CASE WHEN o.holder = $2 THEN o.since_ms"            \
              " ELSE EXCLUDED.since_ms END"                                    \
              " WHERE o.holder = $2 OR o.expires_ms <= EXCLUDED.since_ms"      \
              " RETURNING holder, expires_ms)"                                 \
              " SELECT holder, expires_ms, true FROM t UNION ALL"              \
              " SELECT holder, expires_ms, false FROM leases WHERE facility "  \
              "= $1"                                                           \
              " AND NOT EXISTS (SELECT 1 FROM t)"

static void
lease_args(struct pgargs *a, const char *facility, const char *node,
           int64_t ttl_ms, int64_t now_ms)
{
    arg_text(a, facility);
    arg_text(a, node);
    arg_int(a, ttl_ms);
    arg_now(a, now_ms);
}

/* The blocking take answers through the same parse (job_answer). */
struct lease_got {
    int rc;
    struct store_lease l;
};

static void
lease_got(void *arg, int rc, const struct store_lease *l)
{
    struct lease_got *g = arg;
    g->rc = rc;
    g->l = *l;
}

static int
pgs_lease_take(struct store *base, const char *facility, const char *node,
               int64_t ttl_ms, int64_t now_ms, struct store_lease *out)
{
    struct pg_store *st = pg(base);
    struct pgargs a = {0};
    lease_args(&a, facility, node, ttl_ms, now_ms);
    PGresult *r = pg_query(st, "taking lease", LEASE_SQL, &a);
    struct pg_job j = {.kind = JOB_LEASE, .what = "taking lease"};
    struct lease_got g = {.rc = -EIO};
    j.lease_done = lease_got;
    j.arg = &g;
    job_answer(st, &j, r, -EIO);
    PQclear(r);
    if (out)
        *out = g.l;
    return g.rc;
}

static void
pgs_lease_take_async(struct store *base, const char *facility, const char *node,
                     int64_t ttl_ms, int64_t now_ms, store_lease_cb *cb,
                     void *arg)
{
    struct pgargs a = {0};
    lease_args(&a, facility, node, ttl_ms, now_ms);
    job_submit(pg(base), JOB_LEASE, "taking lease", LEASE_SQL, &a, NULL, cb,
               arg);
}

static int
pgs_lease_release(struct store *base, const char *facility, const char *node)
{
    struct pgargs a = {0};
    arg_text(&a, facility);
    arg_text(&a, node);
    return pg_run(pg(base), "releasing lease",
                  "DELETE FROM leases WHERE facility = $1 AND holder = $2", &a,
                  NULL);
}

#define ACTION_ADD_SQL                                                         \
    "INSERT INTO actions (facility, server, origin, actor, body, created_ms)"  \
    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"

static void
action_args(struct pgargs *a, const char *facility, const char *server,
            const char *origin, const char *actor, const char *body)
{
    arg_text(a, facility);
    arg_text(a, server);
    arg_text(a, origin);
    arg_text(a, actor ? actor : "");
    arg_text(a, body);
    arg_int(a, now_wall_ms());
}

static int64_t
pgs_action_add(struct store *base, const char *facility, const char *server,
               const char *origin, const char *actor, const char *body)
{
    struct pgargs a = {0};
    action_args(&a, facility, server, origin, actor, body);
    return returning_id(pg(base), "queueing action", ACTION_ADD_SQL, &a);
}

static void
pgs_action_add_async(struct store *base, const char *facility,
                     const char *server, const char *origin, const char *actor,
                     const char *body, store_done_cb *cb, void *arg)
{
    struct pgargs a = {0};
    action_args(&a, facility, server, origin, actor, body);
    job_submit(pg(base), JOB_ID, "queueing action", ACTION_ADD_SQL, &a, cb,
               NULL, arg);
}

/* One statement: the lease row is read FOR SHARE, so a takeover waits for
 * this take's commit (a node that lost the lease takes nothing), and the
 * oldest action not done and not this node's already is marked. */
#define ACTION_TAKE_SQL                                                        \
    "WITH l AS (SELECT 1 FROM leases WHERE facility = $1 AND holder = $2"      \
    " AND expires_ms > " PG_NOW(                                               \
        "$3") " FOR SHARE),"                                                   \
              " n AS (SELECT id FROM actions WHERE facility = $1"              \
              " AND done_ms IS NULL AND (taken_by IS NULL OR taken_by <> $2)"  \
              " AND EXISTS (SELECT 1 FROM l) ORDER BY id LIMIT 1"              \
              " FOR UPDATE SKIP LOCKED)"                                       \
              " UPDATE actions SET taken_by = $2, taken_ms = " PG_NOW(         \
                  "$3") " FROM n"                                              \
                        " WHERE actions.id = n.id"                             \
                        " RETURNING actions.id, server, origin, actor, body"

/* The taken row into out: 1, or 0 when none was taken. */
static int
action_parse(const PGresult *r, struct store_action *out)
{
    if (PQntuples(r) == 0)
        return 0;
    out->id = get_int(r, 0, 0);
    const char *c[4] = {get_text(r, 0, 1), get_text(r, 0, 2), get_text(r, 0, 3),
                        get_text(r, 0, 4)};
    strlcpy_s(out->server, c[0] ? c[0] : "", sizeof(out->server));
    strlcpy_s(out->origin, c[1] ? c[1] : "", sizeof(out->origin));
    strlcpy_s(out->actor, c[2] ? c[2] : "", sizeof(out->actor));
    out->body = xstrdup(c[3] ? c[3] : "");
    return 1;
}

static int
pgs_action_take(struct store *base, const char *facility, const char *node,
                int64_t now_ms, struct store_action *out)
{
    struct pg_store *st = pg(base);
    struct pgargs a = {0};
    arg_text(&a, facility);
    arg_text(&a, node);
    arg_now(&a, now_ms);
    PGresult *r = pg_query(st, "taking action", ACTION_TAKE_SQL, &a);
    if (!r)
        return -EIO;
    int ret = action_parse(r, out);
    PQclear(r);
    return ret;
}

static void
action_rows(struct pg_job *j, const PGresult *r, int rc)
{
    store_action_cb *cb = (store_action_cb *)j->rows_cb;
    struct store_action a = {0};
    if (!r) {
        cb(j->arg, rc, NULL);
        return;
    }
    int got = action_parse(r, &a);
    cb(j->arg, got, got ? &a : NULL);
    free(a.body);
}

static void
pgs_action_take_async(struct store *base, const char *facility,
                      const char *node, int64_t now_ms, store_action_cb *cb,
                      void *arg)
{
    struct pgargs a = {0};
    arg_text(&a, facility);
    arg_text(&a, node);
    arg_now(&a, now_ms);
    job_submit_rows(pg(base), "taking action", ACTION_TAKE_SQL, &a, action_rows,
                    (void *)cb, arg);
}

#define ACTION_DONE_SQL "UPDATE actions SET done_ms = $2 WHERE id = $1"

static int
pgs_action_done(struct store *base, int64_t id)
{
    struct pgargs a = {0};
    arg_int(&a, id);
    arg_int(&a, now_wall_ms());
    return pg_run(pg(base), "finishing action", ACTION_DONE_SQL, &a, NULL);
}

static void
pgs_action_done_async(struct store *base, int64_t id, store_done_cb *cb,
                      void *arg)
{
    struct pgargs a = {0};
    arg_int(&a, id);
    arg_int(&a, now_wall_ms());
    job_submit(pg(base), JOB_RUN, "finishing action", ACTION_DONE_SQL, &a, cb,
               NULL, arg);
}

/* Ids commit in order (FEED_LOCK), so the greatest committed one is the
 * head: the primary key's last entry. */
static int64_t
pgs_feed_head(struct store *base)
{
    struct pg_store *st = pg(base);
    PGresult *r = pg_query(st, "reading the feed",
                           "SELECT COALESCE(MAX(id), 0) FROM events", NULL);
    if (!r)
        return -EIO;
    int64_t head = get_int(r, 0, 0);
    PQclear(r);
    return head;
}

/* --- the feed's LISTEN ----------------------------------------------------
 * A second connection that only LISTENs; its socket is watched on the
 * loop and every notification (one per committed transaction that wrote
 * events, FEED_LOCK) calls the feed callback.  Lost (a restart of the
 * server): dropped, and made again on a timer, only while the main
 * connection is up, so the bounded connect is quick (a reachable server);
 * after it the callback runs once for what was missed meanwhile.  The
 * follower also polls slowly (fleet's FEED_NOTIFIED_POLL_MS). */
#define LISTEN_RETRY_MS 1000

static void
listen_drop(struct pg_store *st)
{
    unwatch(st, &st->listen_fd);
    PQfinish(st->listen);
    st->listen = NULL;
}

static void listen_fd_cb(struct loop *l, int fd, uint32_t events, void *arg);

/* Connect and LISTEN, each bounded by connect_timeout_ms; 0 or -EIO. */
static int
listen_start(struct pg_store *st)
{
    char why[256];
    PGconn *c = pg_connect(st->url, connect_timeout_ms, why, sizeof(why));
    if (!c)
        goto out_fail;
    int64_t deadline = now_mono_ms() + connect_timeout_ms;
    if (!PQsendQuery(c, "LISTEN " FEED_CHANNEL))
        goto out_finish;
    while (PQflush(c) == 1)
        if (wait_sock(c, POLLOUT, deadline) < 0)
            goto out_finish;
    bool ok = false;
    PGresult *r;
    for (;;) {
        while (PQisBusy(c))
            if (wait_sock(c, POLLIN, deadline) < 0 || !PQconsumeInput(c))
                goto out_finish;
        if (!(r = PQgetResult(c)))
            break;
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok ||
        loop_add_fd(st->loop, PQsocket(c), EPOLLIN, listen_fd_cb, st) < 0)
        goto out_finish;
    st->listen = c;
    st->listen_fd = PQsocket(c);
    return 0;

out_finish:
    snprintf_utf8(why, sizeof(why), "%s", PQerrorMessage(c));
    one_line(why);
    PQfinish(c);
out_fail:
    log_debug("store %s: cannot listen to the feed: %s", st->name, why);
    return -EIO;
}

static int64_t
listen_retry(struct loop *l, void *arg)
{
    (void)l;
    struct pg_store *st = arg;
    if (!st->conn || listen_start(st) < 0)
        return LISTEN_RETRY_MS;
    st->listen_timer = 0;
    st->feed_cb(st->feed_arg); /* what was missed meanwhile */
    return -1;
}

static void
listen_fd_cb(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)fd;
    (void)events;
    struct pg_store *st = arg;
    bool told = false;
    if (!PQconsumeInput(st->listen) || PQstatus(st->listen) == CONNECTION_BAD) {
        /* Lost: unwatched, freed, made again on the timer. */
        listen_drop(st);
        if (!st->listen_timer)
            st->listen_timer =
                loop_add_timer(l, LISTEN_RETRY_MS, listen_retry, st);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(st->listen))) {
        PQfreemem(n);
        told = true;
    }
    if (told)
        st->feed_cb(st->feed_arg);
}

static int
pgs_feed_notify(struct store *base, store_feed_cb *cb, void *arg)
{
    struct pg_store *st = pg(base);
    if (!st->loop)
        return -ENOTSUP;
    st->feed_cb = cb;
    st->feed_arg = arg;
    if (!st->listen && !st->listen_timer && listen_start(st) < 0)
        st->listen_timer =
            loop_add_timer(st->loop, LISTEN_RETRY_MS, listen_retry, st);
    return 0;
}

const struct store_ops store_pg_ops = {
    .open = pgs_open,
    .close = pgs_close,
    .schema_version = pgs_schema_version,
    .attach_loop = pgs_attach_loop,
    .begin = pgs_begin,
    .commit = pgs_commit,
    .rollback = pgs_rollback,
    .load_server = pgs_load_server,
    .save_server = pgs_save_server,
    .transition = pgs_transition,
    .append_event = pgs_append_event,
    .list_events = pgs_list_events,
    .token_add = pgs_token_add,
    .token_lookup = pgs_token_lookup,
    .token_of_server = pgs_token_of_server,
    .token_revoke_server = pgs_token_revoke_server,
    .prune = pgs_prune,
    .token_get = pgs_token_get,
    .token_mark = pgs_token_mark,
    .token_last_addr = pgs_token_last_addr,
    .session_add = pgs_session_add,
    .session_delete = pgs_session_delete,
    .session_list = pgs_session_list,
    .session_expire = pgs_session_expire,
    .lease_take = pgs_lease_take,
    .lease_release = pgs_lease_release,
    .action_add = pgs_action_add,
    .action_take = pgs_action_take,
    .action_done = pgs_action_done,
    .feed_head = pgs_feed_head,
    .feed_notify = pgs_feed_notify,
    .transition_async = pgs_transition_async,
    .save_server_async = pgs_save_server_async,
    .append_event_async = pgs_append_event_async,
    .lease_take_async = pgs_lease_take_async,
    .token_add_async = pgs_token_add_async,
    .token_mark_async = pgs_token_mark_async,
    .token_revoke_server_async = pgs_token_revoke_server_async,
    .load_servers_async = pgs_load_servers_async,
    .server_tokens_async = pgs_server_tokens_async,
    .list_events_async = pgs_list_events_async,
    .action_add_async = pgs_action_add_async,
    .action_take_async = pgs_action_take_async,
    .token_get_async = pgs_token_get_async,
    .action_done_async = pgs_action_done_async,
    .waiting_ms = pgs_waiting_ms,
    .connected = pgs_connected,
    .flush = pgs_flush,
};
