/* Tests for store: the URL forms store_open takes and refuses, persistence
 * across reopen, schema migrations, row round-trips, atomic transitions,
 * event listing, boot tokens, and that a daemon killed with SIGKILL loses
 * nothing it was told was committed.  The cases that hold for every backend
 * run twice: on SQLite in a temp dir, and on the PostgreSQL that
 * RESCUED_TEST_PG names (make unit starts one with scripts/test-pg run;
 * without it they are skipped, loudly).  Then what only PostgreSQL has:
 * losing the server and getting it back, two openers racing to migrate,
 * the bound on a wait. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "loop.h"
#include "store.h"
#include "store_backend.h"
#include "testutil.h"
#include "util.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct fixture {
    char *dir;
    char *db_path;
    const char *url; /* "sqlite:" (under dir) or the PostgreSQL URL */
    struct store *st;
};

void store_pg_test_set_timeouts(int op_ms, int retry_ms);

/* The test PostgreSQL (scripts/test-pg): its URL as the store takes it,
 * its dir (to stop and start it), NULL when there is none. */
static const char *pg_url, *pg_dir;

/* The same server through libpq's own URL (postgresql://...). */
static void
quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *
pg_raw(void)
{
    PGconn *c = PQconnectdb(pg_url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("raw connect: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL); /* DROP ... CASCADE's notices */
    return c;
}

static void
pg_raw_exec(const char *sql)
{
    PGconn *c = pg_raw();
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static int64_t
pg_raw_int(const char *sql)
{
    PGconn *c = pg_raw();
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

static void
pg_ctl(const char *verb)
{
    const char *ctl = getenv("RESCUED_TEST_PG_CTL");
    char *cmd =
        xasprintf("'%s' %s '%s'", ctl ? ctl : "scripts/test-pg", verb, pg_dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

/* Tests that craft the database themselves start from an empty dir. */
static int
setup_empty(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));

    if (!(f->dir = tu_tmpdir_new("test_store"))) {
        free(f);
        return -1;
    }
    f->db_path = xasprintf("%s/rescued.db", f->dir);
    f->url = "sqlite:";
    *state = f;
    return 0;
}

/* PostgreSQL from nothing: an empty schema, then (setup_pg) the store. */
static int
setup_pg_empty(void **state)
{
    if (!pg_url) {
        fprintf(stderr, "RESCUED_TEST_PG is not set: no PostgreSQL to test "
                        "(make unit runs scripts/test-pg)\n");
        skip();
    }
    if (setup_empty(state) < 0)
        return -1;
    struct fixture *f = *state;
    f->url = pg_url;
    store_pg_test_set_timeouts(2000, 500);
    pg_raw_exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
    return 0;
}

static int
setup_pg(void **state)
{
    char err[256] = "";
    if (setup_pg_empty(state) < 0)
        return -1;
    struct fixture *f = *state;
    f->st = store_open(pg_url, NULL, err, sizeof(err));
    if (!f->st) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    return 0;
}

static bool
is_pg(const struct fixture *f)
{
    return strncmp(f->url, "postgres", 8) == 0;
}

/* One number from the database, whichever backend: the test's own look. */
static sqlite3 *raw_open(const char *path);
static int64_t raw_int(sqlite3 *db, const char *sql);
static int64_t
f_int(struct fixture *f, const char *sql)
{
    if (is_pg(f))
        return pg_raw_int(sql);
    sqlite3 *db = raw_open(f->db_path);
    int64_t v = raw_int(db, sql);
    sqlite3_close(db);
    return v;
}

static int
setup(void **state)
{
    char err[256] = "";

    if (setup_empty(state) < 0)
        return -1;
    struct fixture *f = *state;
    f->url = "sqlite:";
    f->st = store_open("sqlite:", f->dir, err, sizeof(err));
    if (!f->st) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    store_close(f->st);
    int rc = tu_tmpdir_free(f->dir);
    free(f->db_path);
    free(f);
    return rc;
}

static struct store *
reopen(struct fixture *f)
{
    char err[256] = "";

    store_close(f->st);
    f->st = store_open(f->url, f->dir, err, sizeof(err));
    if (!f->st)
        fail_msg("reopen: %s", err);
    return f->st;
}

/* A second, raw connection, as an administrator with sqlite3 would have. */
static sqlite3 *
raw_open(const char *path)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void
raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

static char *
raw_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    char *out;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    out = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

static int64_t
raw_int(sqlite3 *db, const char *sql)
{
    char *t = raw_text(db, sql);
    int64_t v = strtoll(t, NULL, 10);

    free(t);
    return v;
}

static void
row_fill(struct server_row *r, enum fsm_state state, int64_t base)
{
    memset(r, 0, sizeof(*r));
    r->fsm.state = state;
    r->fsm.since_ms = base + 1;
    r->fsm.deadline_ms = base + 2;
    r->fsm.retries = (int)(base % 7) + 1;
    r->fsm.ttl_s = base + 4;
    r->fsm.expires_at_ms = base + 5;
    snprintf(r->fsm.last_error, sizeof(r->fsm.last_error), "error %lld",
             (long long)base);
}

static void
row_assert_equal(const struct server_row *a, const struct server_row *b)
{
    assert_int_equal(a->fsm.state, b->fsm.state);
    assert_int_equal(a->fsm.since_ms, b->fsm.since_ms);
    assert_int_equal(a->fsm.deadline_ms, b->fsm.deadline_ms);
    assert_int_equal(a->fsm.retries, b->fsm.retries);
    assert_int_equal(a->fsm.ttl_s, b->fsm.ttl_s);
    assert_int_equal(a->fsm.expires_at_ms, b->fsm.expires_at_ms);
    assert_string_equal(a->fsm.last_error, b->fsm.last_error);
    assert_int_equal(a->pending_actions, b->pending_actions);
    assert_int_equal(a->sent_actions, b->sent_actions);
    assert_int_equal(a->project_since_id, b->project_since_id);
    if (a->project && b->project)
        assert_string_equal(a->project, b->project);
    else
        assert_ptr_equal(a->project, b->project);
    if (a->ssh_keys && b->ssh_keys)
        assert_string_equal(a->ssh_keys, b->ssh_keys);
    else
        assert_ptr_equal(a->ssh_keys, b->ssh_keys);
    if (a->rescue_json && b->rescue_json)
        assert_string_equal(a->rescue_json, b->rescue_json);
    else
        assert_ptr_equal(a->rescue_json, b->rescue_json);
}

/* Collects the events a walk hands out (copies: strings die after cb). */
#define MAX_EVENTS 64
struct seen {
    int n;
    int stop_after; /* return 42 after this many; 0: never */
    int64_t id[MAX_EVENTS];
    char server[MAX_EVENTS][32];
    char kind[MAX_EVENTS][32];
    char from[MAX_EVENTS][32];
    char to[MAX_EVENTS][32];
    char actor[MAX_EVENTS][32];
    char message[MAX_EVENTS][64];
    int64_t at_ms[MAX_EVENTS];
};

static int
collect(void *arg, const struct store_event *ev)
{
    struct seen *s = arg;

    assert_true(s->n < MAX_EVENTS);
    s->id[s->n] = ev->id;
    s->at_ms[s->n] = ev->at_ms;
    strlcpy_s(s->server[s->n], ev->server, 32);
    strlcpy_s(s->kind[s->n], ev->kind, 32);
    strlcpy_s(s->from[s->n], ev->from_state ? ev->from_state : "(null)", 32);
    strlcpy_s(s->to[s->n], ev->to_state ? ev->to_state : "(null)", 32);
    strlcpy_s(s->actor[s->n], ev->actor, 32);
    strlcpy_s(s->message[s->n], ev->message, 64);
    s->n++;
    if (s->stop_after && s->n == s->stop_after)
        return 42;
    return 0;
}

static void
test_open_creates_dir_and_keeps_data(void **state)
{
    struct fixture *f = *state;
    struct server_row r, got;
    char err[256] = "", *sub = xasprintf("%s/a/b", f->dir);
    struct stat sb;

    /* A data dir that does not exist yet is made, private. */
    struct store *st = store_open("sqlite:", sub, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(store_schema_version(st), store_schema_latest);
    store_close(st);
    free(sub);

    row_fill(&r, FSM_RESCUE, 1000);
    r.ssh_keys = "ssh-ed25519 AAAA user@host";
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    assert_true(store_append_event(f->st, "srv1", "audit", "admin", "hi") > 0);
    reopen(f);
    assert_int_equal(store_load_server(f->st, "srv1", &got), 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);
    struct seen s = {0};
    assert_int_equal(store_list_events(f->st, "srv1", 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.message[0], "hi");

    /* The file is really in WAL mode, with the pragmas this asks for. */
    sqlite3 *db = raw_open(f->db_path);
    char *mode = raw_text(db, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    sqlite3_close(db);
}

static void
test_open_refuses_garbage(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    FILE *fp = fopen(f->db_path, "w");

    assert_non_null(fp);
    for (int i = 0; i < 100; i++)
        fputs("this is not an SQLite database\n", fp);
    fclose(fp);
    assert_null(store_open("sqlite:", f->dir, err, sizeof(err)));
    assert_non_null(strstr(err, "rescued.db"));
    assert_non_null(strstr(err, "not a database"));
}

/* sqlite:PATH is that file, its directory made private; sqlite: (or no
 * URL) is DATA_DIR/rescued.db. */
static void
test_open_url_forms(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct server_row r, got;
    struct stat sb;
    char *data = xasprintf("%s/data", f->dir);
    char *url = xasprintf("sqlite:%s/else/where//state.db", f->dir);
    char *file = xasprintf("%s/else/where//state.db", f->dir);
    char *where = xasprintf("%s/else/where", f->dir);

    f->st = store_open(url, data, err, sizeof(err));
    if (!f->st)
        fail_msg("%s: %s", url, err);
    assert_int_equal(store_schema_version(f->st), store_schema_latest);
    assert_int_equal(stat(file, &sb), 0);
    assert_int_equal(stat(where, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* The file is named by the URL; data_dir is not the store's to make. */
    assert_int_equal(stat(data, &sb), -1);
    row_fill(&r, FSM_RESCUE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    store_close(f->st);
    f->st = store_open(url, data, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(store_load_server(f->st, "srv1", &got), 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);
    store_close(f->st);

    /* The default in the same directory is another file: rescued.db. */
    f->st = store_open("sqlite:", where, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(store_load_server(f->st, "srv1", &got), -ENOENT);
    store_close(f->st);
    /* And no URL is the default too. */
    f->st = store_open(NULL, f->dir, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(stat(f->db_path, &sb), 0);
    store_close(f->st);
    f->st = NULL;
    assert_null(store_open("sqlite:", "", err, sizeof(err)));
    assert_non_null(strstr(err, "empty data_dir"));
    free(data);
    free(url);
    free(file);
    free(where);
}

/* A scheme without a backend is refused with its words, touching nothing,
 * and what follows the scheme (a password) stays out of the message. */
static void
test_open_refuses_unknown_scheme(void **state)
{
    struct fixture *f = *state;
    char *dir_url = xasprintf("sqlite:%s/sub/", f->dir);
    const struct {
        const char *url, *words;
    } bad[] = {
        {"mysql://root:hunter2@db/rescued",
         "unknown store URL scheme 'mysql:'"},
        {"postgresql:rescued:hunter2@db/rescued",
         "the postgresql: store URL must begin postgresql://"},
        {"SQLite:hunter2.db", "unknown store URL scheme 'SQLite:'"},
        {f->db_path, "is not a store URL"},
        {"", "is not a store URL"},
        {dir_url, "names the database file, not a directory"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        struct stat sb;

        f->st = store_open(bad[i].url, f->dir, err, sizeof(err));
        if (f->st)
            fail_msg("opened '%s'", bad[i].url);
        if (!strstr(err, bad[i].words))
            fail_msg("'%s': got '%s', wanted '%s'", bad[i].url, err,
                     bad[i].words);
        assert_null(strstr(err, "hunter2"));
        assert_int_equal(stat(f->db_path, &sb), -1);
    }
    char err[256] = "";
    assert_null(store_open("mysql:", f->dir, err, sizeof(err)));
    assert_non_null(strstr(err, "want sqlite:PATH"));
    free(dir_url);
}

/* What the version-1 code created: servers and events, no tokens. */
static const char v1_schema[] =
    "CREATE TABLE servers (id TEXT PRIMARY KEY, state INTEGER NOT NULL,"
    " since_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL,"
    " retries INTEGER NOT NULL, ttl_s INTEGER NOT NULL,"
    " expires_at_ms INTEGER NOT NULL, last_error TEXT NOT NULL,"
    " ssh_keys TEXT, rescue_json TEXT, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " server TEXT NOT NULL, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,"
    " from_state TEXT, to_state TEXT, actor TEXT NOT NULL,"
    " message TEXT NOT NULL);"
    "CREATE INDEX events_server ON events (server, id);"
    "PRAGMA user_version = 1;";

static void
test_migrates_older_schema(void **state)
{
    struct fixture *f = *state;
    struct server_row got;
    char err[256] = "", srv[64];
    sqlite3 *db = raw_open(f->db_path);

    raw_exec(db, v1_schema);
    raw_exec(db, "INSERT INTO servers VALUES ('old', 5, 10, 20, 1, 3600,"
                 " 30, 'none', 'key1', '{\"ip\":\"10.0.0.9\"}', 40);"
                 "INSERT INTO events (server, at_ms, kind, from_state,"
                 " to_state, actor, message) VALUES ('old', 50,"
                 " 'transition', 'rescue_booting', 'rescue', 'rescued',"
                 " 'phoned home');");
    sqlite3_close(db);

    f->st = store_open("sqlite:", f->dir, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(store_schema_version(f->st), store_schema_latest);

    /* The old data is still there, with nothing pending... */
    assert_int_equal(store_load_server(f->st, "old", &got), 0);
    assert_int_equal(got.fsm.state, FSM_RESCUE);
    assert_int_equal(got.fsm.ttl_s, 3600);
    assert_string_equal(got.ssh_keys, "key1");
    assert_string_equal(got.rescue_json, "{\"ip\":\"10.0.0.9\"}");
    assert_int_equal(got.pending_actions, 0);
    assert_int_equal(got.sent_actions, 0);
    assert_null(got.project); /* fleet fills it in from the config */
    assert_int_equal(got.project_since_id, 0);
    server_row_clear(&got);
    struct seen s = {0};
    assert_int_equal(store_list_events(f->st, NULL, 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.message[0], "phoned home");

    /* ...and what version 2 added works, and stays after a reopen. */
    assert_int_equal(store_token_add(f->st, "tok", "old", 60), 0);
    reopen(f);
    assert_int_equal(store_schema_version(f->st), store_schema_latest);
    assert_int_equal(store_token_lookup(f->st, "tok", srv, sizeof(srv)), 0);
    assert_string_equal(srv, "old");

    db = raw_open(f->db_path);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), store_schema_latest);
    sqlite3_close(db);
}

static void
test_refuses_newer_schema(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    sqlite3 *db = raw_open(f->db_path);

    raw_exec(db, "CREATE TABLE future (x); PRAGMA user_version = 99;");
    sqlite3_close(db);

    assert_null(store_open("sqlite:", f->dir, err, sizeof(err)));
    assert_non_null(strstr(err, "99"));
    assert_non_null(strstr(err, "newer"));

    /* Refused means untouched. */
    db = raw_open(f->db_path);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 99);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master"
                                 " WHERE name = 'servers'"),
                     0);
    sqlite3_close(db);
}

static void
test_server_round_trip(void **state)
{
    struct fixture *f = *state;
    struct server_row r, got;

    assert_int_equal(store_load_server(f->st, "nope", &got), -ENOENT);

    /* Every field, with awkward text and a last_error at full length. */
    row_fill(&r, FSM_EXIT_FAILED, 1700000000000LL);
    r.fsm.ttl_s = INT64_MAX;
    r.fsm.deadline_ms = -1;
    memset(r.fsm.last_error, 'x', sizeof(r.fsm.last_error) - 1);
    r.fsm.last_error[0] = '\'';
    r.ssh_keys = "ssh-ed25519 AAAA a@b\nssh-rsa BBBB 'c'@\"d\"\n";
    r.rescue_json = "{\"ip\": \"192.0.2.1\", \"disks\": [\"sda\"]}";
    r.pending_actions = FSM_ACT_POWER_RESET | FSM_ACT_TARGET_LOCAL;
    r.sent_actions = FSM_ACT_POWER_RESET;
    r.project = "o'ther";
    r.project_since_id = INT64_MAX - 1;
    assert_int_equal(store_save_server(f->st, "srv-1", &r), 0);
    assert_int_equal(store_load_server(f->st, "srv-1", &got), 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);
    assert_null(got.ssh_keys);

    /* Saving again replaces; NULL strings come back as NULL. */
    row_fill(&r, FSM_ACTIVE, 5);
    assert_int_equal(store_save_server(f->st, "srv-1", &r), 0);
    reopen(f);
    assert_int_equal(store_load_server(f->st, "srv-1", &got), 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);

    /* Saving a row writes no event. */
    struct seen s = {0};
    assert_int_equal(store_list_events(f->st, NULL, 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 0);
}

static int
count_events(struct store *st, const char *server)
{
    struct seen s = {0};

    assert_int_equal(store_list_events(st, server, 0, 0, collect, &s), 0);
    return s.n;
}

/* A batch stores its rows at commit, all or none; a rolled-back one
 * leaves nothing behind. */
static void
test_batch(void **state)
{
    struct fixture *f = *state;
    struct server_row r, got;
    char id[16];

    row_fill(&r, FSM_ACTIVE, 7);
    assert_int_equal(store_begin(f->st), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "srv%d", i);
        assert_int_equal(store_load_server(f->st, id, &got), -ENOENT);
        assert_int_equal(store_save_server(f->st, id, &r), 0);
    }
    /* Inside the batch, the batch's own rows are seen. */
    assert_int_equal(store_load_server(f->st, "srv999", &got), 0);
    server_row_clear(&got);
    assert_int_equal(store_commit(f->st), 0);
    reopen(f);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "srv%d", i);
        assert_int_equal(store_load_server(f->st, id, &got), 0);
        row_assert_equal(&r, &got);
        server_row_clear(&got);
    }

    assert_int_equal(store_begin(f->st), 0);
    assert_int_equal(store_save_server(f->st, "gone", &r), 0);
    store_rollback(f->st);
    assert_int_equal(store_load_server(f->st, "gone", &got), -ENOENT);
    /* Writes after it are their own transactions again. */
    assert_int_equal(store_transition(f->st, "srv1", &r, FSM_ACTIVE, "x") > 0,
                     1);
    reopen(f);
    assert_int_equal(store_load_server(f->st, "gone", &got), -ENOENT);
    assert_int_equal(count_events(f->st, "srv1"), 1);
}

static void
test_transition_is_atomic(void **state)
{
    struct fixture *f = *state;
    struct server_row r, got;
    int64_t id;

    row_fill(&r, FSM_REBOOTING, 100);
    id = store_transition(f->st, "srv1", &r, FSM_RESCUE_REQUESTED,
                          "rescue prepared");
    assert_true(id > 0);
    assert_int_equal(store_load_server(f->st, "srv1", &got), 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);

    struct seen s = {0};
    assert_int_equal(store_list_events(f->st, "srv1", 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.id[0], id);
    assert_string_equal(s.kind[0], "transition");
    assert_string_equal(s.from[0], fsm_state_name(FSM_RESCUE_REQUESTED));
    assert_string_equal(s.to[0], fsm_state_name(FSM_REBOOTING));
    assert_string_equal(s.actor[0], "rescued");
    assert_string_equal(s.message[0], "rescue prepared");
    assert_true(s.at_ms[0] > 1600000000000LL); /* wall clock, in ms */

    /* Make the event insert fail: the row must not change either. */
    sqlite3 *db = NULL;
    if (is_pg(f)) {
        pg_raw_exec("ALTER TABLE events ADD CONSTRAINT no_events"
                    " CHECK (false) NOT VALID");
    } else {
        db = raw_open(f->db_path);
        raw_exec(db, "CREATE TRIGGER no_events BEFORE INSERT ON events"
                     " BEGIN SELECT RAISE(ABORT, 'events are closed'); END;");
    }
    struct server_row next;
    row_fill(&next, FSM_PXE_BOOTING, 200);
    assert_int_equal(
        store_transition(f->st, "srv1", &next, FSM_REBOOTING, "ipxe fetched"),
        -EIO);
    assert_int_equal(store_load_server(f->st, "srv1", &got), 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);
    assert_int_equal(store_transition(f->st, "new", &next, FSM_ACTIVE, "x"),
                     -EIO);
    assert_int_equal(store_load_server(f->st, "new", &got), -ENOENT);
    assert_int_equal(count_events(f->st, NULL), 1);

    /* And the store still works once the obstacle is gone. */
    if (is_pg(f)) {
        pg_raw_exec("ALTER TABLE events DROP CONSTRAINT no_events");
    } else {
        raw_exec(db, "DROP TRIGGER no_events;");
        sqlite3_close(db);
    }
    assert_true(store_transition(f->st, "srv1", &next, FSM_REBOOTING,
                                 "ipxe fetched") > id);
    assert_int_equal(store_load_server(f->st, "srv1", &got), 0);
    row_assert_equal(&next, &got);
    server_row_clear(&got);
    assert_int_equal(count_events(f->st, "srv1"), 2);
}

static int
list_again(void *arg, const struct store_event *ev)
{
    struct store *st = arg;
    struct seen s = {0};

    (void)ev;
    return store_list_events(st, NULL, 0, 0, collect, &s);
}

static void
test_events_order_cursor_limit(void **state)
{
    struct fixture *f = *state;
    int64_t ids[6];
    struct server_row r;

    /* a, b, a, b, a, b: three each, interleaved. */
    for (int i = 0; i < 6; i++) {
        char msg[16];
        const char *srv = i % 2 ? "b" : "a";

        snprintf(msg, sizeof(msg), "m%d", i);
        if (i == 4) {
            row_fill(&r, FSM_RESCUE, i);
            ids[i] = store_transition(f->st, srv, &r, FSM_RESCUE_BOOTING, msg);
        } else {
            ids[i] =
                store_append_event(f->st, srv, "boot", "project:acme", msg);
        }
        assert_true(ids[i] > 0);
        if (i > 0)
            assert_true(ids[i] > ids[i - 1]);
    }

    /* All, oldest first. */
    struct seen s = {0};
    assert_int_equal(store_list_events(f->st, NULL, 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 6);
    for (int i = 0; i < 6; i++) {
        char msg[16];

        snprintf(msg, sizeof(msg), "m%d", i);
        assert_int_equal(s.id[i], ids[i]);
        assert_string_equal(s.message[i], msg);
    }
    assert_string_equal(s.kind[0], "boot");
    assert_string_equal(s.actor[0], "project:acme");
    assert_string_equal(s.from[0], "(null)");
    assert_string_equal(s.to[0], "(null)");
    assert_string_equal(s.kind[4], "transition");

    /* One server only. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_list_events(f->st, "a", 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.id[0], ids[0]);
    assert_int_equal(s.id[1], ids[2]);
    assert_int_equal(s.id[2], ids[4]);
    for (int i = 0; i < 3; i++)
        assert_string_equal(s.server[i], "a");

    /* Cursor: strictly after the given id. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_list_events(f->st, "b", ids[1], 0, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.id[0], ids[3]);
    assert_int_equal(s.id[1], ids[5]);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_list_events(f->st, NULL, ids[5], 0, collect, &s), 0);
    assert_int_equal(s.n, 0);

    /* Limit, and paging with it. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_list_events(f->st, NULL, ids[0], 2, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.id[0], ids[1]);
    assert_int_equal(s.id[1], ids[2]);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_list_events(f->st, "a", 0, 1, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.id[0], ids[0]);

    /* The callback stops the walk and its value comes back. */
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    assert_int_equal(store_list_events(f->st, NULL, 0, 0, collect, &s), 42);
    assert_int_equal(s.n, 2);

    /* Listing from inside a walk is refused, not corrupted. */
    assert_int_equal(store_list_events(f->st, NULL, 0, 0, list_again, f->st),
                     -EBUSY);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_list_events(f->st, NULL, 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 6);
}

static void
test_tokens(void **state)
{
    struct fixture *f = *state;
    char srv[64], tok[65];

    assert_int_equal(store_token_lookup(f->st, "t1", srv, sizeof(srv)),
                     -ENOENT);
    assert_int_equal(store_token_of_server(f->st, "srv1", tok, sizeof(tok)),
                     -ENOENT);

    assert_int_equal(store_token_add(f->st, "t1", "srv1", 1000), 0);
    assert_int_equal(store_token_lookup(f->st, "t1", srv, sizeof(srv)), 0);
    assert_string_equal(srv, "srv1");
    assert_int_equal(store_token_of_server(f->st, "srv1", tok, sizeof(tok)), 0);
    assert_string_equal(tok, "t1");

    /* A new token for the same server retires the old one. */
    assert_int_equal(store_token_add(f->st, "t2", "srv1", 2000), 0);
    assert_int_equal(store_token_lookup(f->st, "t1", srv, sizeof(srv)),
                     -ENOENT);
    assert_int_equal(store_token_lookup(f->st, "t2", srv, sizeof(srv)), 0);
    assert_int_equal(store_token_of_server(f->st, "srv1", tok, sizeof(tok)), 0);
    assert_string_equal(tok, "t2");

    /* Other servers' tokens are their own. */
    assert_int_equal(store_token_add(f->st, "t3", "srv2", 3000), 0);
    assert_int_equal(store_token_lookup(f->st, "t2", srv, sizeof(srv)), 0);
    assert_string_equal(srv, "srv1");

    /* A token can never be minted twice; the failed add changes nothing
     * (the revoke it started is rolled back). */
    assert_int_equal(store_token_add(f->st, "t3", "srv1", 4000), -EIO);
    assert_int_equal(store_token_lookup(f->st, "t2", srv, sizeof(srv)), 0);
    assert_string_equal(srv, "srv1");
    assert_int_equal(store_token_lookup(f->st, "t3", srv, sizeof(srv)), 0);
    assert_string_equal(srv, "srv2");

    /* Revoke on exit, and it stays revoked after a restart. */
    assert_int_equal(store_token_revoke_server(f->st, "srv1"), 0);
    reopen(f);
    assert_int_equal(store_token_lookup(f->st, "t2", srv, sizeof(srv)),
                     -ENOENT);
    assert_int_equal(store_token_of_server(f->st, "srv1", tok, sizeof(tok)),
                     -ENOENT);
    assert_int_equal(store_token_lookup(f->st, "t3", srv, sizeof(srv)), 0);
    assert_string_equal(srv, "srv2");
    assert_int_equal(store_token_revoke_server(f->st, "nobody"), 0);

    /* At most one live token per server, as the database sees it. */
    assert_int_equal(
        f_int(f, "SELECT count(*) FROM tokens WHERE revoked_ms IS NULL"), 1);
}

/* The portal's sessions as the store keeps them (collected by a walk). */
struct sessions_seen {
    int n;
    char id[4][8], project[4][8];
    int64_t expires[4];
};

static int
collect_session(void *arg, const struct store_session *ps)
{
    struct sessions_seen *s = arg;
    if (s->n < 4) {
        strlcpy_s(s->id[s->n], ps->id_hash, sizeof(s->id[0]));
        strlcpy_s(s->project[s->n], ps->project ? ps->project : "(admin)",
                  sizeof(s->project[0]));
        s->expires[s->n] = ps->expires_ms;
    }
    s->n++;
    return 0;
}

static struct sessions_seen
sessions_at(struct store *st, int64_t now)
{
    struct sessions_seen s = {0};
    assert_int_equal(store_session_list(st, now, collect_session, &s), 0);
    return s;
}

/* Added, listed live only (soonest first), kept across a reopen, deleted
 * one by one or when expired; one id hash once. */
static void
test_sessions(void **state)
{
    struct fixture *f = *state;
    struct store_session a = {"ha", "ta", "ca", "acme", 3000},
                         b = {"hb", "tb", "cb", NULL, 2000},
                         c = {"hc", "tc", "cc", "other", 1000};
    assert_int_equal(store_session_add(f->st, &a), 0);
    assert_int_equal(store_session_add(f->st, &b), 0);
    assert_int_equal(store_session_add(f->st, &c), 0);
    assert_int_equal(store_session_add(f->st, &a), -EIO);
    reopen(f);
    struct sessions_seen s = sessions_at(f->st, 1000);
    assert_int_equal(s.n, 2); /* c ended at 1000 */
    assert_string_equal(s.id[0], "hb");
    assert_string_equal(s.project[0], "(admin)");
    assert_int_equal(s.expires[0], 2000);
    assert_string_equal(s.id[1], "ha");
    assert_string_equal(s.project[1], "acme");
    assert_int_equal(sessions_at(f->st, 0).n, 3);
    assert_int_equal(store_session_expire(f->st, 2000), 2);
    assert_int_equal(sessions_at(f->st, 0).n, 1);
    assert_int_equal(store_session_expire(f->st, 2000), 0);
    assert_int_equal(store_session_delete(f->st, "ha"), 0);
    assert_int_equal(store_session_delete(f->st, "ha"), 0); /* none: fine */
    assert_int_equal(sessions_at(f->st, 0).n, 0);
    /* What the row holds: the given hashes and fields, nothing else. */
    assert_int_equal(store_session_add(f->st, &a), 0);
    assert_int_equal(f_int(f, "SELECT count(*) FROM portal_sessions"
                              " WHERE id_hash = 'ha' AND token_hash = 'ta'"
                              " AND csrf = 'ca' AND project = 'acme'"
                              " AND expires_ms = 3000"),
                     1);
}

/* The child: a daemon that records transitions as fast as it can and
 * reports each event id once store_transition has returned it. */
static void __attribute__((noreturn))
crash_child(const char *url, const char *dir, int wfd)
{
    char err[256];
    struct store *st = store_open(url, dir, err, sizeof(err));
    struct server_row r;

    if (!st)
        _exit(2);
    for (int64_t i = 0;; i++) {
        char srv[16], why[32];

        snprintf(srv, sizeof(srv), "srv%d", (int)(i % 3));
        snprintf(why, sizeof(why), "step %lld", (long long)i);
        row_fill(&r, (enum fsm_state)(i % FSM_NSTATES), i);
        r.rescue_json = "{\"padding\": \"some text to make pages move\"}";
        int64_t id = store_transition(
            st, srv, &r, (enum fsm_state)((i + 1) % FSM_NSTATES), why);
        if (id <= 0 || write(wfd, &id, sizeof(id)) != sizeof(id))
            _exit(3);
    }
}

/* Read one id; 1 on success, 0 on EOF or after 30 s of silence. */
static int
read_id(int fd, int64_t *id)
{
    size_t got = 0;

    while (got < sizeof(*id)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, 30000) <= 0)
            return 0;
        ssize_t n = read(fd, (char *)id + got, sizeof(*id) - got);
        if (n <= 0)
            return 0;
        got += (size_t)n;
    }
    return 1;
}

static int
find_id(void *arg, const struct store_event *ev)
{
    int64_t *want = arg;

    return ev->id == *want ? 1 : 2;
}

/* A takeover's token read, one for many servers: what the three
 * per-server reads say of each (the live token and its binding, the last
 * bound address of any), through the loop. */
struct tok_seen {
    struct buf text;
    int ends, end_rc;
};

static void
tok_seen(void *arg, int rc, const struct store_server_tokens *t)
{
    struct tok_seen *w = arg;
    if (!t) {
        w->ends++;
        w->end_rc = rc;
        return;
    }
    buf_printf(&w->text, "%s %s %s %lld %s\n", t->server,
               t->token ? t->token : "-", t->addr[0] ? t->addr : "-",
               (long long)t->overlay_ms, t->last_addr[0] ? t->last_addr : "-");
}

static bool
tok_ended(void *arg)
{
    return ((struct tok_seen *)arg)->ends > 0;
}

static void
test_server_tokens_at_once(void **state)
{
    struct fixture *f = *state;
    struct loop *l = loop_new();
    store_attach_loop(f->st, l);
    assert_int_equal(store_token_add(f->st, "t1", "srv1", 1000), 0);
    assert_int_equal(store_token_mark(f->st, "t1", "10.0.0.5", 0), 0);
    assert_int_equal(store_token_add(f->st, "t2", "srv1", 2000), 0);
    assert_int_equal(store_token_add(f->st, "t3", "srv2", 3000), 0);
    assert_int_equal(store_token_mark(f->st, "t3", "10.0.0.9", 7000), 0);
    const char *ids[] = {"srv1", "srv2", "srv3"};
    struct tok_seen w = {0};
    store_server_tokens_async(f->st, ids, 3, tok_seen, &w);
    assert_true(tu_pump_until(l, 5000, tok_ended, &w));
    assert_int_equal(w.ends, 1);
    assert_int_equal(w.end_rc, 0);
    /* In the order asked. */
    assert_string_equal(w.text.data, "srv1 t2 - 0 10.0.0.5\n"
                                     "srv2 t3 10.0.0.9 7000 10.0.0.9\n"
                                     "srv3 - - 0 -\n");
    buf_free(&w.text);
    store_attach_loop(f->st, NULL);
    loop_free(l);
}

/* A token bound to its boot: the first address stays, the overlay is
 * marked once, both survive a reopen, and a revoked token cannot be
 * marked; the server's last address outlives the revocation. */
static void
test_token_binding(void **state)
{
    struct fixture *f = *state;
    struct store_token t;
    char addr[64];
    assert_int_equal(store_token_last_addr(f->st, "srv1", addr, sizeof(addr)),
                     -ENOENT);
    assert_int_equal(store_token_add(f->st, "t1", "srv1", 1000), 0);
    assert_int_equal(store_token_get(f->st, "t1", &t), 0);
    assert_string_equal(t.server, "srv1");
    assert_string_equal(t.addr, "");
    assert_int_equal(t.overlay_ms, 0);
    assert_int_equal(store_token_mark(f->st, "t1", "10.0.0.5", 0), 0);
    assert_int_equal(store_token_mark(f->st, "t1", "10.0.0.6", 0), 0);
    assert_int_equal(store_token_mark(f->st, "t1", NULL, 5000), 0);
    assert_int_equal(store_token_mark(f->st, "t1", NULL, 6000), 0);
    reopen(f);
    assert_int_equal(store_token_get(f->st, "t1", &t), 0);
    assert_string_equal(t.addr, "10.0.0.5");
    assert_int_equal(t.overlay_ms, 5000);
    assert_int_equal(store_token_revoke_server(f->st, "srv1"), 0);
    assert_int_equal(store_token_get(f->st, "t1", &t), -ENOENT);
    assert_int_equal(store_token_mark(f->st, "t1", "10.0.0.7", 0), -ENOENT);
    assert_int_equal(store_token_mark(f->st, "nope", "10.0.0.7", 0), -ENOENT);
    assert_int_equal(store_token_last_addr(f->st, "srv1", addr, sizeof(addr)),
                     0);
    assert_string_equal(addr, "10.0.0.5");
    /* A new boot's token, unbound: the last address is still the old. */
    assert_int_equal(store_token_add(f->st, "t2", "srv1", 2000), 0);
    assert_int_equal(store_token_last_addr(f->st, "srv1", addr, sizeof(addr)),
                     0);
    assert_string_equal(addr, "10.0.0.5");
}

static void
test_kill9_loses_nothing_committed(void **state)
{
    struct fixture *f = *state;
    enum { WANT = 150, MAX = 100000 };
    int64_t *ids = xcalloc(MAX, sizeof(*ids));
    int pfd[2], n = 0, status;
    pid_t pid;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        crash_child(f->url, f->dir, pfd[1]);
    }
    close(pfd[1]);
    int64_t t0 = 0;
    while (n < WANT && read_id(pfd[0], &ids[n])) {
        if (n++ == 0)
            t0 = now_mono_ms();
    }
    /* A figure, not a check: each transition is one commit (and, on
     * PostgreSQL, one round trip; its test server runs with fsync off). */
    print_message("%s: %d transitions committed one by one in %lld ms\n",
                  f->url, n - 1, (long long)(now_mono_ms() - t0));
    /* Kill it mid-flight: it is most likely inside a transaction. */
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* Whatever it reported before dying counts too. */
    while (n < MAX && read_id(pfd[0], &ids[n]))
        n++;
    close(pfd[0]);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_true(n >= WANT);

    f->st = store_open(f->url, f->dir, (char[256]){0}, 256);
    assert_non_null(f->st);
    for (int i = 0; i < n; i++) {
        /* The first event after id - 1 must be id itself. */
        assert_int_equal(
            store_list_events(f->st, NULL, ids[i] - 1, 1, find_id, &ids[i]), 1);
    }
    if (!is_pg(f)) {
        sqlite3 *db = raw_open(f->db_path);
        char *ok = raw_text(db, "PRAGMA integrity_check");
        assert_string_equal(ok, "ok");
        free(ok);
        sqlite3_close(db);
    }
    /* Nothing half-done either: every transition event has its row. */
    assert_int_equal(f_int(f, "SELECT count(*) FROM events e"
                              " WHERE NOT EXISTS (SELECT 1 FROM servers"
                              " WHERE id = e.server)"),
                     0);
    free(ids);
}

/* Retention: events past the age go, then each server's past its cap
 * (the newest stay), revoked tokens that old go, live ones stay; a call
 * deletes at most max_rows events, the next goes on. */
static void
test_retention(void **state)
{
    struct fixture *f = *state;
    struct server_row r;
    row_fill(&r, FSM_ACTIVE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    assert_int_equal(store_save_server(f->st, "srv2", &r), 0);
    assert_int_equal(store_begin(f->st), 0);
    for (int i = 0; i < 30; i++) {
        char m[32];
        snprintf(m, sizeof(m), "one %d", i);
        assert_true(store_append_event(f->st, "srv1", "audit", "t", m) > 0);
        if (i < 5)
            assert_true(store_append_event(f->st, "srv2", "audit", "t", m) > 0);
    }
    assert_int_equal(store_commit(f->st), 0);
    assert_int_equal(store_token_add(f->st, "old", "srv1", 1000), 0);
    assert_int_equal(store_token_revoke_server(f->st, "srv1"), 0);
    assert_int_equal(store_token_add(f->st, "live", "srv2", 1000), 0);
    int64_t day = 86400000, now = now_wall_ms();
    /* The ten oldest events (ids grow with time: srv2's five and srv1's
     * first five) and the revoked token: 100 days old. */
    char *sql = xasprintf(
        "UPDATE events SET at_ms = %lld WHERE id IN (SELECT id FROM events"
        " ORDER BY id LIMIT 10);"
        "UPDATE tokens SET revoked_ms = %lld WHERE token = 'old';",
        (long long)(now - 100 * day), (long long)(now - 100 * day));
    if (is_pg(f)) {
        pg_raw_exec(sql);
    } else {
        sqlite3 *db = raw_open(f->db_path);
        raw_exec(db, sql);
        sqlite3_close(db);
    }
    free(sql);

    /* Nothing is old enough or past the cap: nothing goes. */
    assert_int_equal(store_prune(f->st, now - 200 * day, 100, 1000), 0);
    assert_int_equal(count_events(f->st, "srv1"), 30);
    /* 90 days, at most 15 a server, 4 rows a call. */
    int64_t total = 0, n;
    int calls = 0;
    while ((n = store_prune(f->st, now - 90 * day, 15, 4)) > 0) {
        assert_true(n <= 4 + 1); /* the token rides with a call */
        total += n;
        calls++;
    }
    assert_int_equal(n, 0);
    assert_true(calls >= 4);
    assert_int_equal(total, 10 + 10 + 1);
    assert_int_equal(count_events(f->st, "srv1"), 15);
    assert_int_equal(count_events(f->st, "srv2"), 0);
    /* The newest 15 stayed. */
    char srv[64];
    assert_int_equal(store_token_lookup(f->st, "live", srv, sizeof(srv)), 0);
    assert_int_equal(f_int(f, "SELECT count(*) FROM tokens"), 1);
    struct seen seen = {0};
    assert_int_equal(store_list_events(f->st, "srv1", 0, 1, collect, &seen), 0);
    assert_string_equal(seen.message[0], "one 15");
}

/* The data dir and the store are the owner's only, whoever made the dir
 * and whatever the umask: an operator's `mkdir` (0755) and a 0644 database
 * and WAL left by an older rescued become 0700 and 0600. */
static void
test_open_makes_it_private(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    mode_t old = umask(022);
    assert_int_equal(chmod(f->dir, 0755), 0);
    struct store *st = store_open("sqlite:", f->dir, err, sizeof(err));
    assert_non_null(st);
    assert_true(store_append_event(st, "srv1", "audit", "admin", "x") > 0);
    struct stat sb;
    assert_int_equal(stat(f->dir, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char *p = xasprintf("%s%s", f->db_path, suffix[i]);
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0600);
        /* As an older rescued left them. */
        assert_int_equal(chmod(p, 0644), 0);
        free(p);
    }
    assert_int_equal(chmod(f->dir, 0755), 0);
    /* Opened again while the first holds the WAL: private again. */
    struct store *again = store_open("sqlite:", f->dir, err, sizeof(err));
    assert_non_null(again);
    assert_int_equal(stat(f->dir, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    for (size_t i = 0; i < 3; i++) {
        char *p = xasprintf("%s%s", f->db_path, suffix[i]);
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0600);
        free(p);
    }
    store_close(again);
    store_close(st);
    umask(old);
}

/* Another process holding the write lock: a write gives up within a
 * fraction of a second, since the daemon's loop waits with it (the API,
 * the consoles, the boot path) and fleet retries with its own back-off.
 * Seen failing before: the write waited 5 s, and case 068's API calls
 * timed out while the lock was held. */
static void
test_foreign_lock_fails_fast(void **state)
{
    struct fixture *f = *state;
    struct server_row r = {0};
    row_fill(&r, FSM_ACTIVE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    sqlite3 *db = raw_open(f->db_path);
    raw_exec(db, "BEGIN EXCLUSIVE");
    int64_t t0 = now_mono_ms();
    r.fsm.state = FSM_RESCUE_REQUESTED;
    assert_true(store_save_server(f->st, "srv1", &r) < 0);
    assert_true(store_append_event(f->st, "srv1", "audit", "admin", "x") < 0);
    int64_t waited = now_mono_ms() - t0;
    assert_true(waited < 1000);
    assert_non_null(strstr(store_last_error(f->st), "locked"));
    raw_exec(db, "ROLLBACK");
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    sqlite3_close(db);
}

/* --- what only PostgreSQL has ------------------------------------------- */

/* A fresh database is migrated to the same version as SQLite's, recorded
 * in schema_version; a reopen migrates nothing; a newer one is refused and
 * left as it was. */
static void
test_pg_schema_versions(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    f->st = store_open(pg_url, NULL, err, sizeof(err));
    if (!f->st)
        fail_msg("%s", err);
    assert_int_equal(store_schema_version(f->st), store_schema_latest);
    assert_int_equal(pg_raw_int("SELECT version FROM schema_version"),
                     store_schema_latest);
    assert_int_equal(pg_raw_int("SELECT count(*) FROM schema_version"), 1);
    reopen(f);
    assert_int_equal(store_schema_version(f->st), store_schema_latest);
    store_close(f->st);
    f->st = NULL;
    pg_raw_exec("UPDATE schema_version SET version = 99");
    assert_null(store_open(pg_url, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "99"));
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(pg_raw_int("SELECT version FROM schema_version"), 99);
}

/* Two nodes start at the same moment on an empty database: both open it,
 * the schema is made once.  Seen failing without the advisory lock: the
 * other openers died on "duplicate key value violates unique constraint
 * \"pg_type_typname_nsp_index\"", a
 * duplicate key in pg_type (both making schema_version at once). */
static void
test_pg_migration_raced(void **state)
{
    struct fixture *f = *state;
    (void)f;
    enum { N = 4 };
    for (int round = 0; round < 3; round++) {
        pg_raw_exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
        int go[2];
        pid_t pid[N];
        assert_int_equal(pipe(go), 0);
        for (int i = 0; i < N; i++) {
            pid[i] = fork();
            assert_true(pid[i] >= 0);
            if (pid[i] == 0) {
                char c, err[256];
                close(go[1]);
                /* All wait for the same byte-less EOF: released at once. */
                if (read(go[0], &c, 1) != 0)
                    _exit(4);
                struct store *st = store_open(pg_url, NULL, err, sizeof(err));
                if (!st) {
                    fprintf(stderr, "opener %d: %s\n", i, err);
                    _exit(2);
                }
                int v = store_schema_version(st);
                store_close(st);
                _exit(v == store_schema_latest ? 0 : 3);
            }
        }
        close(go[0]);
        close(go[1]);
        for (int i = 0; i < N; i++) {
            int status;
            assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
        }
        assert_int_equal(pg_raw_int("SELECT count(*) FROM schema_version"), 1);
        assert_int_equal(pg_raw_int("SELECT version FROM schema_version"),
                         store_schema_latest);
    }
}

/* The server goes away: every call fails at once with -EIO and libpq's
 * reason (the 503's words), none waits for a connect; when it is back the
 * store reconnects by itself (after its back-off) and nothing committed
 * was lost. */
static void
test_pg_reconnects(void **state)
{
    struct fixture *f = *state;
    struct server_row r, got;
    row_fill(&r, FSM_RESCUE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    assert_true(store_append_event(f->st, "srv1", "audit", "admin", "a") > 0);

    pg_ctl("stop");
    int64_t t0 = now_mono_ms();
    for (int i = 0; i < 20; i++) {
        assert_int_equal(store_load_server(f->st, "srv1", &got), -EIO);
        assert_true(store_transition(f->st, "srv1", &r, FSM_ACTIVE, "x") < 0);
    }
    int64_t spent = now_mono_ms() - t0;
    print_message("40 calls with the server down: %lld ms\n", (long long)spent);
    assert_true(spent < 2000);
    const char *why = store_last_error(f->st);
    assert_non_null(strstr(why, "database unreachable"));
    assert_non_null(strstr(why, "sock")); /* libpq names the socket */

    pg_ctl("start");
    int64_t deadline = now_mono_ms() + 20000;
    int ret;
    while ((ret = store_load_server(f->st, "srv1", &got)) == -EIO &&
           now_mono_ms() < deadline) {
        struct pollfd none = {.fd = -1};
        poll(&none, 1, 50); /* the back-off's next try, not a state */
    }
    assert_int_equal(ret, 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);
    /* The event committed before the outage is there; none of the refused
     * transitions is. */
    assert_int_equal(count_events(f->st, "srv1"), 1);
    assert_true(store_transition(f->st, "srv1", &r, FSM_ACTIVE, "x") > 0);
    assert_int_equal(count_events(f->st, "srv1"), 2);
}

/* With a loop attached (the daemon's case), reconnecting is the loop's
 * work, never a call's: with the server back, calls keep failing at once
 * until the loop has made the new connection, then they work. */
static void
test_pg_reconnects_on_the_loop(void **state)
{
    struct fixture *f = *state;
    struct server_row r, got;
    char err[256];
    store_close(f->st);
    store_pg_test_set_timeouts(2000, 50);
    f->st = store_open(pg_url, NULL, err, sizeof(err));
    assert_non_null(f->st);
    struct loop *l = loop_new();
    store_attach_loop(f->st, l);
    row_fill(&r, FSM_RESCUE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);

    pg_ctl("stop");
    assert_int_equal(store_load_server(f->st, "srv1", &got), -EIO);
    pg_ctl("start");
    /* Well past the 50 ms back-off: a call still does not connect. */
    struct pollfd none = {.fd = -1};
    poll(&none, 1, 300);
    assert_int_equal(store_load_server(f->st, "srv1", &got), -EIO);
    assert_non_null(strstr(store_last_error(f->st), "database unreachable"));

    int64_t deadline = now_mono_ms() + 20000;
    int ret;
    while ((ret = store_load_server(f->st, "srv1", &got)) == -EIO &&
           now_mono_ms() < deadline)
        loop_run_once(l, 50);
    assert_int_equal(ret, 0);
    row_assert_equal(&r, &got);
    server_row_clear(&got);
    store_close(f->st);
    f->st = NULL;
    loop_free(l);
}

/* What answers on the socket may never speak (a hung host, a stray
 * listener): the loop's connect gives up after the bound, says so, and
 * tries again later; the calls meanwhile fail at once.  Seen failing
 * before the connect had its own timer: the pending connection waited on
 * the listener for as long as the test ran. */
static void
test_pg_loop_connect_is_bounded(void **state)
{
    struct fixture *f = *state;
    char err[256];
    store_close(f->st);
    store_pg_test_set_timeouts(300, 50);
    f->st = store_open(pg_url, NULL, err, sizeof(err));
    assert_non_null(f->st);
    struct loop *l = loop_new();
    store_attach_loop(f->st, l);

    pg_ctl("stop");
    /* The server's socket path, now held by a listener that never
     * accepts: connect() succeeds, the startup packet gets no answer. */
    char *path = xasprintf("%s/sock/.s.PGSQL.5432", pg_dir);
    struct tu_source *src = tu_source_new(path);
    assert_non_null(src);
    struct server_row got;
    assert_int_equal(store_load_server(f->st, "srv1", &got), -EIO);
    int64_t t0 = now_mono_ms(), deadline = t0 + 10000;
    while (!strstr(store_last_error(f->st), "connecting: no answer within") &&
           now_mono_ms() < deadline) {
        int64_t c0 = now_mono_ms();
        assert_int_equal(store_load_server(f->st, "srv1", &got), -EIO);
        assert_true(now_mono_ms() - c0 < 100); /* no call waits */
        loop_run_once(l, 50);
    }
    print_message("the loop's connect gave up after %lld ms (bound 300)\n",
                  (long long)(now_mono_ms() - t0));
    assert_non_null(
        strstr(store_last_error(f->st), "connecting: no answer within 300 ms"));
    tu_source_free(src);
    unlink(path);
    free(path);
    pg_ctl("start");
    while (store_load_server(f->st, "srv1", &got) == -EIO &&
           now_mono_ms() < deadline + 10000)
        loop_run_once(l, 50);
    assert_int_equal(store_load_server(f->st, "srv1", &got), -ENOENT);
    store_close(f->st);
    f->st = NULL;
    loop_free(l);
}

/* A server that holds the call up (here: another session's lock) costs
 * the loop the bound and no more: -EIO, "no answer within", and the store
 * works again once the lock is gone.  The batch whose connection it
 * dropped fails to its end rather than commit half on a new connection. */
static void
test_pg_wait_is_bounded(void **state)
{
    struct fixture *f = *state;
    struct server_row r;
    char err[256];
    row_fill(&r, FSM_ACTIVE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);
    store_close(f->st);
    store_pg_test_set_timeouts(300, 100);
    f->st = store_open(pg_url, NULL, err, sizeof(err));
    assert_non_null(f->st);

    PGconn *locker = pg_raw();
    PQclear(PQexec(locker, "BEGIN; LOCK TABLE servers IN ACCESS EXCLUSIVE"
                           " MODE;"));
    int64_t t0 = now_mono_ms();
    assert_int_equal(store_save_server(f->st, "srv1", &r), -EIO);
    int64_t waited = now_mono_ms() - t0;
    print_message("held-up write gave up after %lld ms (bound 300)\n",
                  (long long)waited);
    assert_true(waited >= 290 && waited < 1500);
    assert_non_null(strstr(store_last_error(f->st), "no answer within 300"));

    /* A batch cut the same way does not commit on the next connection. */
    PQclear(PQexec(locker, "ROLLBACK"));
    assert_int_equal(store_begin(f->st), 0);
    assert_int_equal(store_save_server(f->st, "in-batch", &r), 0);
    /* (The batch holds the table: the other session holds one row.) */
    PQclear(PQexec(locker, "BEGIN; INSERT INTO servers SELECT 'in-batch-2', "
                           "state, since_ms, deadline_ms, retries, ttl_s, "
                           "expires_at_ms, last_error, ssh_keys, rescue_json, "
                           "updated_ms, pending_actions FROM servers "
                           "WHERE id = 'srv1';"));
    assert_int_equal(store_save_server(f->st, "in-batch-2", &r), -EIO);
    PQclear(PQexec(locker, "ROLLBACK"));
    assert_int_equal(store_save_server(f->st, "in-batch-3", &r), -EIO);
    assert_int_equal(store_commit(f->st), -EIO);
    PQfinish(locker);

    struct server_row got;
    int64_t deadline = now_mono_ms() + 10000;
    int ret;
    while ((ret = store_load_server(f->st, "srv1", &got)) == -EIO &&
           now_mono_ms() < deadline) {
        struct pollfd none = {.fd = -1};
        poll(&none, 1, 20);
    }
    assert_int_equal(ret, 0);
    server_row_clear(&got);
    assert_int_equal(store_load_server(f->st, "in-batch", &got), -ENOENT);
    assert_int_equal(store_save_server(f->st, "srv2", &r), 0);
}

/* --- asynchronous writes (store.h) --------------------------------------- */

/* The answers of asynchronous writes, in the order they came. */
#define MAX_ANSWERS 16
struct answers {
    int n;
    int64_t rc[MAX_ANSWERS];
    int tag[MAX_ANSWERS];
};

struct ask {
    struct answers *a;
    int tag;
};

static void
answered(void *arg, int64_t rc)
{
    struct ask *k = arg;
    assert_true(k->a->n < MAX_ANSWERS);
    k->a->rc[k->a->n] = rc;
    k->a->tag[k->a->n] = k->tag;
    k->a->n++;
}

static bool
all_answered(struct loop *l, struct answers *a, int want, int64_t ms)
{
    int64_t deadline = now_mono_ms() + ms;
    while (a->n < want && now_mono_ms() < deadline)
        loop_run_once(l, 20);
    return a->n == want;
}

struct got_events {
    bool told;
    int rc;
    size_t n;
    char last_message[64];
};

static void
got_events(void *arg, int rc, const struct store_event *evs, size_t n)
{
    struct got_events *g = arg;
    g->told = true;
    g->rc = rc;
    g->n = n;
    if (n)
        strlcpy_s(g->last_message, evs[n - 1].message, sizeof(g->last_message));
}

struct lease_answer {
    int rc;
    struct store_lease l;
    bool told;
};

static void
lease_told(void *arg, int rc, const struct store_lease *l)
{
    struct lease_answer *la = arg;
    la->rc = rc;
    la->l = *l;
    la->told = true;
}

struct tok_answer {
    bool told;
    int rc;
    struct store_token t;
};

static void
tok_told(void *arg, int rc, const struct store_token *t)
{
    struct tok_answer *a = arg;
    a->told = true;
    a->rc = rc;
    if (t)
        a->t = *t;
}

/* Written in the order asked, answered in that order with what the
 * blocking calls return (ids rising), and a blocking call made before the
 * answers came sees every write asked before it. */
static void
test_async_writes_in_order(void **state)
{
    struct fixture *f = *state;
    struct loop *l = loop_new();
    store_attach_loop(f->st, l);
    struct answers a = {0};
    struct ask k[5];
    for (int i = 0; i < 5; i++)
        k[i] = (struct ask){&a, i};
    struct server_row r, got;
    row_fill(&r, FSM_RESCUE_REQUESTED, 1000);
    store_transition_async(f->st, "srv1", &r, FSM_ACTIVE, "rescue asked",
                           answered, &k[0]);
    store_append_event_async(f->st, "srv1", "audit", "admin", "one", answered,
                             &k[1]);
    store_append_event_async(f->st, "srv1", "audit", "admin", "two", answered,
                             &k[2]);
    r.fsm.retries = 5;
    store_save_server_async(f->st, "srv1", &r, answered, &k[3]);
    store_append_event_async(f->st, "srv1", "audit", "admin", "three", NULL,
                             NULL);
    /* The blocking read waits for the queue: all four, in order. */
    struct seen s = {0};
    assert_int_equal(store_list_events(f->st, "srv1", 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.kind[0], "transition");
    assert_string_equal(s.message[1], "one");
    assert_string_equal(s.message[2], "two");
    assert_string_equal(s.message[3], "three");
    assert_true(all_answered(l, &a, 4, 5000));
    for (int i = 0; i < 4; i++)
        assert_int_equal(a.tag[i], i);
    assert_int_equal(a.rc[0], s.id[0]);
    assert_int_equal(a.rc[1], s.id[1]);
    assert_int_equal(a.rc[2], s.id[2]);
    assert_int_equal(a.rc[3], 0);
    assert_int_equal(store_load_server(f->st, "srv1", &got), 0);
    assert_int_equal(got.fsm.state, FSM_RESCUE_REQUESTED);
    assert_int_equal(got.fsm.retries, 5);
    server_row_clear(&got);
    assert_int_equal(store_waiting_ms(f->st), 0);

    /* A read asked that way comes behind the write asked before it. */
    struct got_events ge = {0};
    store_append_event_async(f->st, "srv1", "audit", "admin", "four", NULL,
                             NULL);
    store_list_events_async(f->st, "srv1", s.id[3], 0, got_events, &ge);
    int64_t until = now_mono_ms() + 5000;
    while (!ge.told && now_mono_ms() < until)
        loop_run_once(l, 20);
    assert_true(ge.told);
    assert_int_equal(ge.rc, 0);
    assert_int_equal(ge.n, 1);
    assert_string_equal(ge.last_message, "four");

    /* The lease, asked the same way. */
    struct lease_answer la = {0};
    store_lease_take_async(f->st, "fra", "fra-1", 10000, now_wall_ms(),
                           lease_told, &la);
    int64_t deadline = now_mono_ms() + 5000;
    while (!la.told && now_mono_ms() < deadline)
        loop_run_once(l, 20);
    assert_true(la.told);
    assert_int_equal(la.rc, 1);
    assert_string_equal(la.l.holder, "fra-1");
    la.told = false;
    store_lease_take_async(f->st, "fra", "fra-2", 10000, now_wall_ms(),
                           lease_told, &la);
    deadline = now_mono_ms() + 5000;
    while (!la.told && now_mono_ms() < deadline)
        loop_run_once(l, 20);
    assert_int_equal(la.rc, 0);
    assert_string_equal(la.l.holder, "fra-1");

    /* A token looked up that way comes behind its add; one never added
     * is -ENOENT, as store_token_get says. */
    const char *tok = "ab12ab12ab12ab12ab12ab12ab12ab12"
                      "ab12ab12ab12ab12ab12ab12ab12ab12";
    struct tok_answer ta[2] = {{0}, {0}};
    store_token_add_async(f->st, tok, "srv1", 1000, NULL, NULL);
    store_token_get_async(f->st, tok, tok_told, &ta[0]);
    store_token_get_async(f->st, "cd34", tok_told, &ta[1]);
    deadline = now_mono_ms() + 5000;
    while (!(ta[0].told && ta[1].told) && now_mono_ms() < deadline)
        loop_run_once(l, 20);
    assert_int_equal(ta[0].rc, 0);
    assert_string_equal(ta[0].t.server, "srv1");
    assert_string_equal(ta[0].t.addr, "");
    assert_int_equal(ta[1].rc, -ENOENT);
    assert_true(ta[1].told);
    store_close(f->st);
    f->st = NULL;
    loop_free(l);
}

static int64_t
tick(struct loop *l, void *arg)
{
    (void)l;
    (*(int *)arg)++;
    return 20;
}

/* A database that holds a write up (another session's lock) never holds
 * the loop: the write returns at once, the loop goes on turning while it
 * waits (a 20 ms ticker keeps ticking, no callback is counted as a stall),
 * and after the bound it fails, with every write queued behind it, in
 * order.  The store works again once the lock is gone; with the database
 * down a write is answered at once.  Closed with writes queued, their
 * askers hear -ECANCELED. */
static void
test_pg_async_hung_never_holds_loop(void **state)
{
    struct fixture *f = *state;
    struct server_row r;
    char err[256];
    store_close(f->st);
    store_pg_test_set_timeouts(600, 50);
    f->st = store_open(pg_url, NULL, err, sizeof(err));
    assert_non_null(f->st);
    struct loop *l = loop_new();
    store_attach_loop(f->st, l);
    row_fill(&r, FSM_ACTIVE, 1000);
    assert_int_equal(store_save_server(f->st, "srv1", &r), 0);

    PGconn *locker = pg_raw();
    /* Let go by the server should the test fail before its ROLLBACK. */
    PQclear(PQexec(locker, "SET idle_in_transaction_session_timeout = '5s'"));
    PQclear(PQexec(locker, "BEGIN; LOCK TABLE servers IN ACCESS EXCLUSIVE"
                           " MODE;"));
    struct answers a = {0};
    struct ask k[3] = {{&a, 0}, {&a, 1}, {&a, 2}};
    int ticks = 0;
    uint64_t ticker = loop_add_timer(l, 20, tick, &ticks);
    store_save_server_async(f->st, "srv1", &r, answered, &k[0]);
    store_transition_async(f->st, "srv1", &r, FSM_ACTIVE, "x", answered, &k[1]);
    store_append_event_async(f->st, "srv1", "audit", "admin", "y", answered,
                             &k[2]);
    assert_int_equal(a.n, 0); /* asked, not waited for */
    assert_true(all_answered(l, &a, 3, 10000));
    print_message("held-up async write failed after %d ticks of the loop "
                  "(bound 600 ms, a tick every 20 ms)\n",
                  ticks);
    assert_true(ticks >= 10);
    assert_int_equal(loop_stats(l)->stalls, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a.tag[i], i);
        assert_int_equal(a.rc[i], -EIO);
    }
    assert_non_null(strstr(store_last_error(f->st), "no answer within 600"));
    PQclear(PQexec(locker, "ROLLBACK"));

    /* Back: the loop reconnects, and a write is stored. */
    a.n = 0;
    int64_t deadline = now_mono_ms() + 10000;
    while (now_mono_ms() < deadline) {
        store_save_server_async(f->st, "srv1", &r, answered, &k[0]);
        assert_true(all_answered(l, &a, 1, 5000));
        if (a.rc[0] == 0)
            break;
        a.n = 0;
        loop_run_once(l, 50);
    }
    assert_int_equal(a.rc[0], 0);

    /* Down: answered at once, with the reason. */
    pg_ctl("stop");
    store_load_server(f->st, "srv1", &(struct server_row){0});
    a.n = 0;
    store_save_server_async(f->st, "srv1", &r, answered, &k[0]);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.rc[0], -EIO);
    assert_non_null(strstr(store_last_error(f->st), "database unreachable"));
    pg_ctl("start");

    /* Closed with a write queued (held up again): -ECANCELED. */
    deadline = now_mono_ms() + 20000;
    do {
        a.n = 0;
        loop_run_once(l, 50);
        store_save_server_async(f->st, "srv1", &r, answered, &k[0]);
        all_answered(l, &a, 1, 5000);
    } while (a.rc[0] != 0 && now_mono_ms() < deadline);
    assert_int_equal(a.rc[0], 0);
    PQclear(PQexec(locker, "BEGIN; LOCK TABLE servers IN ACCESS EXCLUSIVE"
                           " MODE;"));
    a.n = 0;
    store_save_server_async(f->st, "srv1", &r, answered, &k[0]);
    assert_int_equal(a.n, 0);
    store_close(f->st);
    f->st = NULL;
    assert_int_equal(a.n, 1);
    assert_int_equal(a.rc[0], -ECANCELED);
    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);
    loop_del_timer(l, ticker);
    loop_free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_dir_and_keeps_data,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_makes_it_private, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_garbage, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_url_forms, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_unknown_scheme,
                                        setup_empty, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_older_schema, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_server_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transition_is_atomic, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_events_order_cursor_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_lock_fails_fast, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_committed,
                                        setup_empty, teardown),
        cmocka_unit_test_setup_teardown(test_async_writes_in_order, setup,
                                        teardown),
    };

    /* The same cases on PostgreSQL: what holds for every backend. */
#define BOTH(t) cmocka_unit_test_setup_teardown(t, setup_pg, teardown)
    const struct CMUnitTest pg_tests[] = {
        BOTH(test_server_round_trip),
        BOTH(test_transition_is_atomic),
        BOTH(test_events_order_cursor_limit),
        BOTH(test_batch),
        BOTH(test_tokens),
        BOTH(test_retention),
        BOTH(test_token_binding),
        BOTH(test_server_tokens_at_once),
        BOTH(test_sessions),
        cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_committed,
                                        setup_pg_empty, teardown),
        cmocka_unit_test_setup_teardown(test_pg_schema_versions, setup_pg_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pg_migration_raced, setup_pg_empty,
                                        teardown),
        BOTH(test_pg_reconnects),
        BOTH(test_pg_reconnects_on_the_loop),
        BOTH(test_pg_loop_connect_is_bounded),
        BOTH(test_pg_wait_is_bounded),
        BOTH(test_async_writes_in_order),
        BOTH(test_pg_async_hung_never_holds_loop),
    };
    pg_url = getenv("RESCUED_TEST_PG");
    pg_dir = getenv("RESCUED_TEST_PG_DIR");
    int failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    return failed +
           cmocka_run_group_tests_name("postgresql", pg_tests, NULL, NULL);
}
