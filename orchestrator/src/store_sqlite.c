/* store_sqlite: the sqlite: backend of store (store_backend.h).  SQLite in
 * WAL mode, synchronous=FULL, so a committed write survives a killed daemon
 * (and a power cut).  Every statement is prepared once at open; each write
 * outside a batch is one transaction.  Blocking: see store.h. */
#include "store_backend.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* rescued is its store's only writer: a lock held by another process is a
 * fault, and the daemon's whole loop waits while sqlite does, so a write
 * gives up soon (fleet backs off and tries again, 503 to the API). */
#define STORE_BUSY_TIMEOUT_MS 250
/* Opening waits longer: nodes sharing a fresh file take turns migrating
 * it (each migration its own transaction, an fsync each), and start-up is
 * the one time the loop does not run yet. */
#define STORE_OPEN_BUSY_TIMEOUT_MS 10000
#define STORE_LOG_INTERVAL_MS 10000

/* How long a write waits for another process's lock; tests shorten it. */
static int busy_timeout_ms = STORE_BUSY_TIMEOUT_MS;

#ifdef UNITTEST
void store_test_set_busy_timeout(int ms);
/* For the stores opened after it. */
void
store_test_set_busy_timeout(int ms)
{
    busy_timeout_ms = ms;
}
#endif

/* The schema is store_migrations.c's list, shared with store_pg. */
#define STORE_SCHEMA_VERSION store_schema_latest

#define EVENT_COLUMNS                                                          \
    "id, server, at_ms, kind, from_state, to_state, actor, message"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SERVER_LOAD,
    ST_SERVER_SAVE,
    ST_EVENT_ADD,
    ST_EVENTS_SERVER,
    ST_EVENTS_ALL,
    ST_TOKEN_ADD,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_OF_SERVER,
    ST_TOKEN_REVOKE,
    ST_TOKEN_GET,
    ST_TOKEN_MARK,
    ST_TOKEN_LAST_ADDR,
    ST_SESSION_ADD,
    ST_SESSION_DELETE,
    ST_SESSION_LIST,
    ST_SESSION_EXPIRE,
    ST_LEASE_GET,
    ST_LEASE_PUT,
    ST_LEASE_RELEASE,
    ST_ACTION_ADD,
    ST_ACTION_NEXT,
    ST_ACTION_MARK,
    ST_ACTION_DONE,
    ST_FEED_HEAD,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SERVER_LOAD] =
        "SELECT state, since_ms, deadline_ms, retries, ttl_s,"
        " expires_at_ms, last_error, ssh_keys, rescue_json,"
        " pending_actions, sent_actions, project,"
        " project_since_id, action_id FROM servers WHERE id = ?1",
    [ST_SERVER_SAVE] =
        "INSERT INTO servers (id, state, since_ms, deadline_ms, retries,"
        " ttl_s, expires_at_ms, last_error, ssh_keys, rescue_json, updated_ms,"
        " pending_actions, sent_actions, project, project_since_id, action_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
        " ?14, ?15, ?16)"
        " ON CONFLICT (id) DO UPDATE SET state = ?2, since_ms = ?3,"
        " deadline_ms = ?4, retries = ?5, ttl_s = ?6, expires_at_ms = ?7,"
        " last_error = ?8, ssh_keys = ?9, rescue_json = ?10,"
        " updated_ms = ?11, pending_actions = ?12, sent_actions = ?13,"
        " project = ?14, project_since_id = ?15, action_id = ?16",
    [ST_EVENT_ADD] = "INSERT INTO events (server, at_ms, kind, from_state,"
                     " to_state, actor, message)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_EVENTS_SERVER] = "SELECT " EVENT_COLUMNS " FROM events"
                         " WHERE server = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    [ST_EVENTS_ALL] = "SELECT " EVENT_COLUMNS " FROM events"
                      " WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_TOKEN_ADD] = "INSERT INTO tokens (token, server, created_ms)"
                     " VALUES (?1, ?2, ?3)",
    [ST_TOKEN_LOOKUP] = "SELECT server FROM tokens"
                        " WHERE token = ?1 AND revoked_ms IS NULL",
    [ST_TOKEN_OF_SERVER] = "SELECT token FROM tokens"
                           " WHERE server = ?1 AND revoked_ms IS NULL"
                           " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
    [ST_TOKEN_REVOKE] = "UPDATE tokens SET revoked_ms = ?2"
                        " WHERE server = ?1 AND revoked_ms IS NULL",
    [ST_TOKEN_GET] = "SELECT server, addr, overlay_ms FROM tokens"
                     " WHERE token = ?1 AND revoked_ms IS NULL",
    [ST_TOKEN_MARK] = "UPDATE tokens SET addr = COALESCE(addr, ?2),"
                      " overlay_ms = COALESCE(overlay_ms, ?3)"
                      " WHERE token = ?1 AND revoked_ms IS NULL",
    [ST_TOKEN_LAST_ADDR] = "SELECT addr FROM tokens"
                           " WHERE server = ?1 AND addr IS NOT NULL"
                           " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
    [ST_SESSION_ADD] =
        "INSERT INTO portal_sessions (id_hash, token_hash,"
        " csrf, project, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_SESSION_DELETE] = "DELETE FROM portal_sessions WHERE id_hash = ?1",
    [ST_SESSION_LIST] = "SELECT id_hash, token_hash, csrf, project, expires_ms"
                        " FROM portal_sessions WHERE expires_ms > ?1"
                        " ORDER BY expires_ms",
    [ST_SESSION_EXPIRE] = "DELETE FROM portal_sessions WHERE expires_ms <= ?1",
    [ST_LEASE_GET] =
        "SELECT holder, expires_ms FROM leases WHERE facility = ?1",
    /* since_ms moves only when the holder changes. */
    [ST_LEASE_PUT] = "INSERT INTO leases (facility, holder, expires_ms,"
                     " since_ms) VALUES (?1, ?2, ?3, ?4)"
                     " ON CONFLICT (facility) DO UPDATE SET holder = ?2,"
                     " expires_ms = ?3, since_ms = CASE WHEN holder = ?2"
                     " THEN since_ms ELSE ?4 END",
    [ST_LEASE_RELEASE] = "DELETE FROM leases WHERE facility = ?1"
                         " AND holder = ?2",
    [ST_ACTION_ADD] = "INSERT INTO actions (facility, server, origin, actor,"
                      " body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* Not done, and not taken by this node: new ones, and those a node
     * that held the lease before took and did not finish. */
    [ST_ACTION_NEXT] = "SELECT id, server, origin, actor, body FROM actions"
                       " WHERE facility = ?1 AND done_ms IS NULL"
                       " AND (taken_by IS NULL OR taken_by != ?2)"
                       " ORDER BY id LIMIT 1",
    [ST_ACTION_MARK] = "UPDATE actions SET taken_by = ?2, taken_ms = ?3"
                       " WHERE id = ?1",
    [ST_ACTION_DONE] = "UPDATE actions SET done_ms = ?2 WHERE id = ?1",
    [ST_FEED_HEAD] = "SELECT COALESCE(MAX(id), 0) FROM events",
};

struct sqlite_store {
    struct store base; /* first: store.c hands us &base */
    sqlite3 *db;
    int version;
    sqlite3_stmt *stmt[ST_COUNT];
    int64_t logged_ms; /* when sq_fail last logged, 0: never */
    unsigned quiet;    /* failures not logged since */
};

static struct sqlite_store *
sq(struct store *st)
{
    return (struct sqlite_store *)st;
}

/* Keep SQLite's own words for what failed (store_last_error) and log
 * them, once per STORE_LOG_INTERVAL_MS while the same failure repeats (a
 * full disk fails every write); always -EIO for the caller. */
static int
sq_fail(struct sqlite_store *st, const char *what)
{
    char why[sizeof(st->base.last_error)];
    snprintf(why, sizeof(why), "%s: %s", what, sqlite3_errmsg(st->db));
    int64_t now = now_mono_ms();
    if (strcmp(why, st->base.last_error) != 0 || st->logged_ms == 0 ||
        now - st->logged_ms >= STORE_LOG_INTERVAL_MS) {
        if (st->quiet)
            log_warnx("store: %s (and %u more failures since the last "
                      "report)",
                      why, st->quiet);
        else
            log_warnx("store: %s", why);
        st->logged_ms = now;
        st->quiet = 0;
    } else {
        st->quiet++;
    }
    strlcpy_s(st->base.last_error, why, sizeof(st->base.last_error));
    return -EIO;
}

/* Reset the statement so it holds no read lock, then clear its bindings
 * (text is bound SQLITE_STATIC and must not be remembered). */
static void
stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Run a statement that returns no rows. */
static int
stmt_run(struct sqlite_store *st, enum stmt_id id, const char *what)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s);

    stmt_done(s);
    if (rc != SQLITE_DONE)
        return sq_fail(st, what);
    return 0;
}

static int
tx_begin(struct sqlite_store *st)
{
    return stmt_run(st, ST_BEGIN, "begin");
}

static int
tx_commit(struct sqlite_store *st)
{
    return stmt_run(st, ST_COMMIT, "commit");
}

/* After a failed step or commit: undo whatever the transaction did.  The
 * caller already logged the cause. */
static void
tx_rollback(struct sqlite_store *st)
{
    if (sqlite3_get_autocommit(st->db))
        return; /* SQLite already rolled it back */
    stmt_run(st, ST_ROLLBACK, "rollback");
}

/* The first column of the first row of a one-row query, as text; on
 * failure sqlite3_errmsg(db) says why. */
static int
query_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        strlcpy_s(out, t ? (const char *)t : "", len);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

static int
migrate(struct sqlite_store *st, const char *path, char *err, size_t errlen)
{
    char buf[32];

    if (query_text(st->db, "PRAGMA user_version", buf, sizeof(buf)) < 0) {
        snprintf(err, errlen, "%s: reading schema version: %s", path,
                 sqlite3_errmsg(st->db));
        return -EIO;
    }
    st->version = atoi(buf);
    if (st->version > STORE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%s: database schema version %d is newer than this rescued "
                 "knows (%d); refusing to touch it",
                 path, st->version, STORE_SCHEMA_VERSION);
        return -EPROTO;
    }
    while (st->version < STORE_SCHEMA_VERSION) {
        int to = st->version + 1;
        /* Under the write lock, the version again: another node sharing
         * the file may have migrated it since our first look. */
        int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        int now_at =
            rc == SQLITE_OK && query_text(st->db, "PRAGMA user_version", buf,
                                          sizeof(buf)) == 0
                ? atoi(buf)
                : -1;
        if (rc == SQLITE_OK && now_at < 0)
            rc = SQLITE_ERROR;
        if (now_at >= to) {
            rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
            if (rc == SQLITE_OK && now_at > STORE_SCHEMA_VERSION) {
                snprintf(err, errlen,
                         "%s: database schema version %d is newer than this "
                         "rescued knows (%d); refusing to touch it",
                         path, now_at, STORE_SCHEMA_VERSION);
                return -EPROTO;
            }
            if (rc == SQLITE_OK) {
                st->version = now_at;
                continue;
            }
        }
        char *sql = NULL;
        if (rc == SQLITE_OK) {
            sql = xasprintf(
                "%s; PRAGMA user_version = %d; COMMIT;",
                store_migration_sql(st->version, STORE_DIALECT_SQLITE), to);
            rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
        }
        free(sql);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "%s: migrating schema to version %d: %s",
                     path, to, sqlite3_errmsg(st->db));
            if (!sqlite3_get_autocommit(st->db))
                sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -EIO;
        }
        log_info("store: schema migrated to version %d", to);
        st->version = to;
    }
    return 0;
}

/* The file u names, and the directory it lives in (NULL: the working
 * directory), without trailing '/'. */
static char *
db_path(const struct uri_store *u, const char *data_dir, char **dir, char *err,
        size_t errlen)
{
    char *path;

    if (u->path) {
        path = xstrdup(u->path);
    } else if (data_dir && *data_dir) {
        path = xasprintf("%s/rescued.db", data_dir);
    } else {
        seterr(err, errlen, "empty data_dir");
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (slash && n == 0)
        n = 1; /* "/x.db": the root */
    *dir = slash ? xasprintf("%.*s", (int)n, path) : NULL;
    return path;
}

static void sq_close(struct store *base);

/* The store holds tokens and keys: the file and SQLite's -wal and -shm
 * (made with the file's mode) are the owner's only, whatever the umask
 * and whoever made them; so is the data dir it lives in by default. */
static int
make_private(const char *path, const char *data_dir_of_db, char *err,
             size_t errlen)
{
    if (data_dir_of_db && chmod(data_dir_of_db, 0700) < 0) {
        seterr(err, errlen, "%s: cannot make it private (0700): %s",
               data_dir_of_db, strerror(errno));
        return -errno;
    }
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char *p = xasprintf("%s%s", path, suffix[i]);
        int r = chmod(p, 0600) < 0 && errno != ENOENT ? -errno : 0;
        free(p);
        if (r < 0) {
            seterr(err, errlen, "%s%s: cannot make it private (0600): %s", path,
                   suffix[i], strerror(-r));
            return r;
        }
    }
    return 0;
}

static struct store *
sq_open(const struct uri_store *u, const char *data_dir, char *err,
        size_t errlen)
{
    struct sqlite_store *st = xcalloc(1, sizeof(*st));
    char *dir = NULL, *path;
    char mode[16];
    int rc;

    st->base.ops = &store_sqlite_ops;
    if (!(path = db_path(u, data_dir, &dir, err, errlen)))
        goto out_free;
    /* It holds tokens and keys: a directory made here is private. */
    if (dir && mkdir_p(dir, 0700, err, errlen) < 0)
        goto out_free;
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto out_close_db;
    }
    /* Before the WAL is made: SQLite gives it the file's mode. */
    if (make_private(path, u->path ? NULL : dir, err, errlen) < 0)
        goto out_close_db;
    sqlite3_busy_timeout(st->db, STORE_OPEN_BUSY_TIMEOUT_MS);
    /* Turning a fresh file to WAL while another node does the same can
     * fail busy at once, past the busy handler (a lock it cannot wait
     * for): try again, a while. */
    int tries = 0;
    while (query_text(st->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode)) <
           0) {
        if (sqlite3_errcode(st->db) != SQLITE_BUSY ||
            ++tries * 20 > STORE_OPEN_BUSY_TIMEOUT_MS) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
            goto out_close_db;
        }
        usleep(20000);
    }
    if (strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL mode (got %s)", path, mode);
        goto out_close_db;
    }
    if (sqlite3_exec(st->db,
                     "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
        goto out_close_db;
    }
    if (make_private(path, NULL, err, errlen) < 0 ||
        migrate(st, path, err, errlen) < 0)
        goto out_close_db;
    sqlite3_busy_timeout(st->db, busy_timeout_ms);
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: preparing \"%s\": %s", path, stmt_sql[i],
                     sqlite3_errmsg(st->db));
            goto out_close_db;
        }
    }
    free(dir);
    free(path);
    return &st->base;

out_close_db:
    sq_close(&st->base);
    st = NULL;
out_free:
    free(dir);
    free(path);
    free(st);
    return NULL;
}

static void
sq_close(struct store *base)
{
    struct sqlite_store *st = sq(base);

    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    /* The last connection to close checkpoints the WAL and removes it. */
    if (sqlite3_close(st->db) != SQLITE_OK)
        log_warnx("store: close: %s", sqlite3_errmsg(st->db));
    free(st);
}

static int
sq_schema_version(struct store *base)
{
    return sq(base)->version;
}

static char *
column_strdup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    return t ? xstrdup((const char *)t) : NULL;
}

static int
sq_load_server(struct store *base, const char *id, struct server_row *out)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_SERVER_LOAD];
    int ret = 0, rc;

    memset(out, 0, sizeof(*out));
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ret = -ENOENT;
        goto out_reset;
    }
    if (rc != SQLITE_ROW) {
        ret = sq_fail(st, "loading server");
        goto out_reset;
    }
    int state = sqlite3_column_int(s, 0);
    if (state < 0 || state >= FSM_NSTATES) {
        log_warnx("store: server %s has unknown state %d", id, state);
        ret = -EIO;
        goto out_reset;
    }
    out->fsm.state = (enum fsm_state)state;
    out->fsm.since_ms = sqlite3_column_int64(s, 1);
    out->fsm.deadline_ms = sqlite3_column_int64(s, 2);
    out->fsm.retries = sqlite3_column_int(s, 3);
    out->fsm.ttl_s = sqlite3_column_int64(s, 4);
    out->fsm.expires_at_ms = sqlite3_column_int64(s, 5);
    const unsigned char *le = sqlite3_column_text(s, 6);
    strlcpy_s(out->fsm.last_error, le ? (const char *)le : "",
              sizeof(out->fsm.last_error));
    out->ssh_keys = column_strdup(s, 7);
    out->rescue_json = column_strdup(s, 8);
    out->pending_actions = (unsigned)sqlite3_column_int64(s, 9);
    out->sent_actions = (unsigned)sqlite3_column_int64(s, 10);
    out->project = column_strdup(s, 11);
    out->project_since_id = sqlite3_column_int64(s, 12);
    out->action_id = sqlite3_column_int64(s, 13);

out_reset:
    stmt_done(s);
    return ret;
}

/* The upsert itself, inside the caller's transaction (or its own). */
static int
server_save(struct sqlite_store *st, const char *id,
            const struct server_row *row)
{
    sqlite3_stmt *s = st->stmt[ST_SERVER_SAVE];
    const struct fsm_server *f = &row->fsm;

    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)f->state);
    sqlite3_bind_int64(s, 3, f->since_ms);
    sqlite3_bind_int64(s, 4, f->deadline_ms);
    sqlite3_bind_int(s, 5, f->retries);
    sqlite3_bind_int64(s, 6, f->ttl_s);
    sqlite3_bind_int64(s, 7, f->expires_at_ms);
    sqlite3_bind_text(s, 8, f->last_error,
                      (int)strnlen(f->last_error, sizeof(f->last_error)),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 9, row->ssh_keys, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 10, row->rescue_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, now_wall_ms());
    sqlite3_bind_int64(s, 12, row->pending_actions);
    sqlite3_bind_int64(s, 13, row->sent_actions);
    sqlite3_bind_text(s, 14, row->project, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 15, row->project_since_id);
    sqlite3_bind_int64(s, 16, row->action_id);
    return stmt_run(st, ST_SERVER_SAVE, "saving server");
}

static int64_t
event_add(struct sqlite_store *st, const char *server, const char *kind,
          const char *from, const char *to, const char *actor,
          const char *message)
{
    sqlite3_stmt *s = st->stmt[ST_EVENT_ADD];
    int ret;

    sqlite3_bind_text(s, 1, server, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_wall_ms());
    sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, to, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, actor ? actor : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, message ? message : "", -1, SQLITE_STATIC);
    ret = stmt_run(st, ST_EVENT_ADD, "appending event");
    if (ret < 0)
        return ret;
    return sqlite3_last_insert_rowid(st->db);
}

static int
sq_begin(struct store *base)
{
    struct sqlite_store *st = sq(base);
    return tx_begin(st);
}

static int
sq_commit(struct store *base)
{
    struct sqlite_store *st = sq(base);
    int ret = tx_commit(st);
    if (ret < 0)
        tx_rollback(st);
    return ret;
}

static void
sq_rollback(struct store *base)
{
    struct sqlite_store *st = sq(base);
    tx_rollback(st);
}

static int
sq_save_server(struct store *base, const char *id, const struct server_row *row)
{
    struct sqlite_store *st = sq(base);
    return server_save(st, id, row);
}

static int64_t
sq_transition(struct store *base, const char *id, const struct server_row *row,
              enum fsm_state from, const char *why)
{
    struct sqlite_store *st = sq(base);
    int64_t ev;
    int ret;

    if ((ret = tx_begin(st)) < 0)
        return ret;
    if ((ret = server_save(st, id, row)) < 0)
        goto out_rollback;
    ev = event_add(st, id, "transition", fsm_state_name(from),
                   fsm_state_name(row->fsm.state), "rescued", why);
    if (ev < 0) {
        ret = (int)ev;
        goto out_rollback;
    }
    if ((ret = tx_commit(st)) < 0)
        goto out_rollback;
    return ev;

out_rollback:
    tx_rollback(st);
    return ret;
}

static int64_t
sq_append_event(struct store *base, const char *server, const char *kind,
                const char *actor, const char *message)
{
    struct sqlite_store *st = sq(base);
    return event_add(st, server, kind, NULL, NULL, actor, message);
}

static const char *
column_text(sqlite3_stmt *s, int col)
{
    return (const char *)sqlite3_column_text(s, col);
}

static int
sq_list_events(struct store *base, const char *server, int64_t after_id,
               int limit, store_event_cb *cb, void *arg)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[server ? ST_EVENTS_SERVER : ST_EVENTS_ALL];
    int n = 1, ret = 0, rc;

    if (server)
        sqlite3_bind_text(s, n++, server, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, n++, after_id);
    sqlite3_bind_int(s, n, limit > 0 ? limit : -1);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_event ev = {
            .id = sqlite3_column_int64(s, 0),
            .server = column_text(s, 1),
            .at_ms = sqlite3_column_int64(s, 2),
            .kind = column_text(s, 3),
            .from_state = column_text(s, 4),
            .to_state = column_text(s, 5),
            .actor = column_text(s, 6),
            .message = column_text(s, 7),
        };
        if ((ret = cb(arg, &ev)) != 0)
            goto out_reset;
    }
    if (rc != SQLITE_DONE)
        ret = sq_fail(st, "listing events");
out_reset:
    stmt_done(s);
    return ret;
}

static int
token_revoke(struct sqlite_store *st, const char *server, int64_t at_ms)
{
    sqlite3_stmt *s = st->stmt[ST_TOKEN_REVOKE];

    sqlite3_bind_text(s, 1, server, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, at_ms);
    return stmt_run(st, ST_TOKEN_REVOKE, "revoking tokens");
}

static int
sq_token_add(struct store *base, const char *token, const char *server,
             int64_t created_ms)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_TOKEN_ADD];
    int ret;

    if ((ret = tx_begin(st)) < 0)
        return ret;
    /* At most one live token per server: the new one replaces the old. */
    if ((ret = token_revoke(st, server, created_ms)) < 0)
        goto out_rollback;
    sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, server, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, created_ms);
    if ((ret = stmt_run(st, ST_TOKEN_ADD, "adding token")) < 0)
        goto out_rollback;
    if ((ret = tx_commit(st)) < 0)
        goto out_rollback;
    return 0;

out_rollback:
    tx_rollback(st);
    return ret;
}

/* One text column of a one-row lookup keyed by key, into out[len]. */
static int
lookup_text(struct sqlite_store *st, enum stmt_id id, const char *key,
            char *out, size_t len)
{
    sqlite3_stmt *s = st->stmt[id];
    int ret = 0, rc;

    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ret = -ENOENT;
    } else if (rc != SQLITE_ROW) {
        ret = sq_fail(st, "looking up token");
    } else {
        const unsigned char *t = sqlite3_column_text(s, 0);
        /* A cut-off name would point at another server: refuse it. */
        if (strlcpy_s(out, t ? (const char *)t : "", len) >= len)
            ret = -ENOSPC;
    }
    stmt_done(s);
    return ret;
}

static int
sq_token_lookup(struct store *base, const char *token, char *server, size_t len)
{
    struct sqlite_store *st = sq(base);
    return lookup_text(st, ST_TOKEN_LOOKUP, token, server, len);
}

static int
sq_token_of_server(struct store *base, const char *server, char *token,
                   size_t len)
{
    struct sqlite_store *st = sq(base);
    return lookup_text(st, ST_TOKEN_OF_SERVER, server, token, len);
}

static int
sq_token_revoke_server(struct store *base, const char *server)
{
    struct sqlite_store *st = sq(base);
    return token_revoke(st, server, now_wall_ms());
}

/* --- retention ---------------------------------------------------------- */

/* One ad hoc statement (retention runs seldom: no need to keep it
 * prepared), its int64 parameters bound in order; steps once.  Returns
 * SQLITE_ROW with the first column in *col0, SQLITE_DONE, or -EIO. */
static int
prune_step(struct sqlite_store *st, const char *sql, const char *text,
           const int64_t *args, int nargs, int64_t *col0)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return sq_fail(st, "retention");
    int n = 1;
    if (text)
        sqlite3_bind_text(s, n++, text, -1, SQLITE_STATIC);
    for (int i = 0; i < nargs; i++)
        sqlite3_bind_int64(s, n++, args[i]);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && col0)
        *col0 = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(st, "retention");
    return rc;
}

/* Events of one server past its newest keep, at most max of them.  The
 * first and last ids (the index's two ends) tell when there cannot be
 * more than keep, so a small history costs two lookups. */
static int64_t
prune_server(struct sqlite_store *st, const char *server, int keep, int64_t max)
{
    int64_t lo = 0, hi = 0, cut = 0;
    if (prune_step(
            st, "SELECT id FROM events WHERE server = ?1 ORDER BY id LIMIT 1",
            server, NULL, 0, &lo) != SQLITE_ROW ||
        prune_step(st,
                   "SELECT id FROM events WHERE server = ?1"
                   " ORDER BY id DESC LIMIT 1",
                   server, NULL, 0, &hi) != SQLITE_ROW)
        return 0;
    if (hi - lo < keep)
        return 0;
    int64_t off = keep;
    int rc = prune_step(st,
                        "SELECT id FROM events WHERE server = ?1"
                        " ORDER BY id DESC LIMIT 1 OFFSET ?2",
                        server, &off, 1, &cut);
    if (rc != SQLITE_ROW)
        return rc < 0 ? rc : 0;
    int64_t args[2] = {cut, max};
    rc = prune_step(st,
                    "DELETE FROM events WHERE id IN (SELECT id FROM events"
                    " WHERE server = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)",
                    server, args, 2, NULL);
    return rc < 0 ? rc : sqlite3_changes(st->db);
}

static int64_t
sq_prune(struct store *base, int64_t before_ms, int keep_per_server,
         int max_rows)
{
    struct sqlite_store *st = sq(base);
    int64_t done = 0;
    int rc = tx_begin(st);
    if (rc < 0)
        return rc;
    if (before_ms > 0) {
        /* The oldest max_rows by id, those older than the cut: ids grow
         * with time, so this never scans the young part of the table. */
        int64_t args[2] = {before_ms, max_rows};
        rc = prune_step(st,
                        "DELETE FROM events WHERE id IN (SELECT id FROM"
                        " (SELECT id, at_ms FROM events ORDER BY id LIMIT ?2)"
                        " WHERE at_ms < ?1)",
                        NULL, args, 2, NULL);
        if (rc < 0)
            goto out_rollback;
        done += sqlite3_changes(st->db);
        rc = prune_step(st,
                        "DELETE FROM tokens WHERE revoked_ms IS NOT NULL"
                        " AND revoked_ms < ?1",
                        NULL, &before_ms, 1, NULL);
        if (rc < 0)
            goto out_rollback;
        done += sqlite3_changes(st->db);
    }
    if (keep_per_server > 0) {
        /* The servers first: no statement open while deleting. */
        char **ids = NULL;
        size_t nids = 0;
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(st->db, "SELECT DISTINCT id FROM servers", -1,
                               &s, NULL) != SQLITE_OK) {
            rc = sq_fail(st, "retention");
            goto out_rollback;
        }
        while (sqlite3_step(s) == SQLITE_ROW) {
            ids = xrealloc(ids, sizeof(*ids) * (nids + 1));
            ids[nids++] = xstrdup(column_text(s, 0));
        }
        sqlite3_finalize(s);
        for (size_t i = 0; i < nids; i++) {
            int64_t n =
                done < max_rows
                    ? prune_server(st, ids[i], keep_per_server, max_rows - done)
                    : 0;
            if (n < 0)
                rc = (int)n;
            else
                done += n;
            free(ids[i]);
        }
        free(ids);
        if (rc < 0)
            goto out_rollback;
    }
    rc = tx_commit(st);
    if (rc < 0)
        goto out_rollback;
    return done;

out_rollback:
    tx_rollback(st);
    return rc;
}

static int
sq_token_get(struct store *base, const char *token, struct store_token *out)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_TOKEN_GET];
    int ret = 0, rc;

    memset(out, 0, sizeof(*out));
    sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ret = -ENOENT;
    } else if (rc != SQLITE_ROW) {
        ret = sq_fail(st, "looking up token");
    } else {
        const unsigned char *srv = sqlite3_column_text(s, 0),
                            *addr = sqlite3_column_text(s, 1);
        if (strlcpy_s(out->server, srv ? (const char *)srv : "",
                      sizeof(out->server)) >= sizeof(out->server))
            ret = -ENOSPC;
        strlcpy_s(out->addr, addr ? (const char *)addr : "", sizeof(out->addr));
        out->overlay_ms = sqlite3_column_int64(s, 2);
    }
    stmt_done(s);
    return ret;
}

static int
sq_token_mark(struct store *base, const char *token, const char *addr,
              int64_t overlay_ms)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_TOKEN_MARK];

    sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
    if (addr)
        sqlite3_bind_text(s, 2, addr, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    if (overlay_ms > 0)
        sqlite3_bind_int64(s, 3, overlay_ms);
    else
        sqlite3_bind_null(s, 3);
    int ret = stmt_run(st, ST_TOKEN_MARK, "marking token");
    if (ret == 0 && sqlite3_changes(st->db) == 0)
        ret = -ENOENT;
    return ret;
}

static int
sq_token_last_addr(struct store *base, const char *server, char *addr,
                   size_t len)
{
    struct sqlite_store *st = sq(base);
    return lookup_text(st, ST_TOKEN_LAST_ADDR, server, addr, len);
}

/* --- portal sessions ---------------------------------------------------- */

static int
sq_session_add(struct store *base, const struct store_session *ps)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_SESSION_ADD];

    sqlite3_bind_text(s, 1, ps->id_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, ps->token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, ps->csrf, -1, SQLITE_STATIC);
    if (ps->project)
        sqlite3_bind_text(s, 4, ps->project, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 4);
    sqlite3_bind_int64(s, 5, ps->expires_ms);
    return stmt_run(st, ST_SESSION_ADD, "adding session");
}

static int
sq_session_delete(struct store *base, const char *id_hash)
{
    struct sqlite_store *st = sq(base);
    sqlite3_bind_text(st->stmt[ST_SESSION_DELETE], 1, id_hash, -1,
                      SQLITE_STATIC);
    return stmt_run(st, ST_SESSION_DELETE, "deleting session");
}

static int
sq_session_list(struct store *base, int64_t now_ms, store_session_cb *cb,
                void *arg)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_SESSION_LIST];
    int ret = 0, rc;

    sqlite3_bind_int64(s, 1, now_ms);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_session ps = {
            .id_hash = column_text(s, 0),
            .token_hash = column_text(s, 1),
            .csrf = column_text(s, 2),
            .project = column_text(s, 3),
            .expires_ms = sqlite3_column_int64(s, 4),
        };
        if ((ret = cb(arg, &ps)) != 0)
            goto out_reset;
    }
    if (rc != SQLITE_DONE)
        ret = sq_fail(st, "listing sessions");
out_reset:
    stmt_done(s);
    return ret;
}

static int64_t
sq_session_expire(struct store *base, int64_t now_ms)
{
    struct sqlite_store *st = sq(base);
    sqlite3_bind_int64(st->stmt[ST_SESSION_EXPIRE], 1, now_ms);
    int rc = stmt_run(st, ST_SESSION_EXPIRE, "expiring sessions");
    return rc < 0 ? rc : sqlite3_changes(st->db);
}

/* --- facilities ---------------------------------------------------------- */

/* The lease row of facility into out; 0, -ENOENT when there is none. */
static int
lease_get(struct sqlite_store *st, const char *facility,
          struct store_lease *out)
{
    sqlite3_stmt *s = st->stmt[ST_LEASE_GET];
    int ret = 0;

    memset(out, 0, sizeof(*out));
    sqlite3_bind_text(s, 1, facility, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ret = -ENOENT;
    } else if (rc != SQLITE_ROW) {
        ret = sq_fail(st, "reading lease");
    } else {
        const char *h = (const char *)sqlite3_column_text(s, 0);
        strlcpy_s(out->holder, h ? h : "", sizeof(out->holder));
        out->expires_ms = sqlite3_column_int64(s, 1);
    }
    stmt_done(s);
    return ret;
}

/* Inside BEGIN IMMEDIATE: no other node reads the row between our read
 * and our write. */
static int
sq_lease_take(struct store *base, const char *facility, const char *node,
              int64_t ttl_ms, int64_t now_ms, struct store_lease *out)
{
    struct sqlite_store *st = sq(base);
    int ret;

    if (now_ms == STORE_NOW)
        now_ms = now_wall_ms(); /* one machine: one clock */
    if ((ret = tx_begin(st)) < 0)
        return ret;
    ret = lease_get(st, facility, out);
    if (ret < 0 && ret != -ENOENT)
        goto out_rollback;
    if (ret == 0 && strcmp(out->holder, node) != 0 &&
        out->expires_ms > now_ms) {
        tx_rollback(st);
        return 0;
    }
    sqlite3_stmt *s = st->stmt[ST_LEASE_PUT];
    sqlite3_bind_text(s, 1, facility, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms + ttl_ms);
    sqlite3_bind_int64(s, 4, now_ms);
    if ((ret = stmt_run(st, ST_LEASE_PUT, "taking lease")) < 0)
        goto out_rollback;
    if ((ret = tx_commit(st)) < 0)
        goto out_rollback;
    strlcpy_s(out->holder, node, sizeof(out->holder));
    out->expires_ms = now_ms + ttl_ms;
    return 1;

out_rollback:
    tx_rollback(st);
    return ret;
}

static int
sq_lease_release(struct store *base, const char *facility, const char *node)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_LEASE_RELEASE];

    sqlite3_bind_text(s, 1, facility, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC);
    return stmt_run(st, ST_LEASE_RELEASE, "releasing lease");
}

static int64_t
sq_action_add(struct store *base, const char *facility, const char *server,
              const char *origin, const char *actor, const char *body)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_ACTION_ADD];

    sqlite3_bind_text(s, 1, facility, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, origin, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, actor ? actor : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now_wall_ms());
    int ret = stmt_run(st, ST_ACTION_ADD, "queueing action");
    return ret < 0 ? ret : sqlite3_last_insert_rowid(st->db);
}

/* The row the caller's take found, copied out (the statement's strings
 * die with its reset). */
static void
action_row(sqlite3_stmt *s, struct store_action *out)
{
    out->id = sqlite3_column_int64(s, 0);
    const char *cols[3] = {column_text(s, 1), column_text(s, 2),
                           column_text(s, 3)};
    strlcpy_s(out->server, cols[0] ? cols[0] : "", sizeof(out->server));
    strlcpy_s(out->origin, cols[1] ? cols[1] : "", sizeof(out->origin));
    strlcpy_s(out->actor, cols[2] ? cols[2] : "", sizeof(out->actor));
    out->body = column_strdup(s, 4);
}

static int
sq_action_take(struct store *base, const char *facility, const char *node,
               int64_t now_ms, struct store_action *out)
{
    struct sqlite_store *st = sq(base);
    struct store_lease l;
    int ret;

    if (now_ms == STORE_NOW)
        now_ms = now_wall_ms();
    if ((ret = tx_begin(st)) < 0)
        return ret;
    /* The lease checked in the transaction that marks the action: a node
     * that lost it meanwhile takes nothing. */
    ret = lease_get(st, facility, &l);
    if (ret < 0 || strcmp(l.holder, node) != 0 || l.expires_ms <= now_ms) {
        tx_rollback(st);
        return ret == -ENOENT ? 0 : ret < 0 ? ret : 0;
    }
    sqlite3_stmt *s = st->stmt[ST_ACTION_NEXT];
    sqlite3_bind_text(s, 1, facility, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        action_row(s, out);
    stmt_done(s);
    if (rc == SQLITE_DONE) {
        tx_rollback(st);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        ret = sq_fail(st, "taking action");
        goto out_rollback;
    }
    s = st->stmt[ST_ACTION_MARK];
    sqlite3_bind_int64(s, 1, out->id);
    sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms);
    if ((ret = stmt_run(st, ST_ACTION_MARK, "taking action")) < 0)
        goto out_rollback;
    if ((ret = tx_commit(st)) < 0)
        goto out_rollback;
    return 1;

out_rollback:
    tx_rollback(st);
    free(out->body);
    out->body = NULL;
    return ret;
}

static int
sq_action_done(struct store *base, int64_t id)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_ACTION_DONE];

    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now_wall_ms());
    return stmt_run(st, ST_ACTION_DONE, "finishing action");
}

/* max(id) of the rowid: one step down the table's b-tree. */
static int64_t
sq_feed_head(struct store *base)
{
    struct sqlite_store *st = sq(base);
    sqlite3_stmt *s = st->stmt[ST_FEED_HEAD];
    int64_t ret;

    int rc = sqlite3_step(s);
    ret = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0)
                           : sq_fail(st, "reading the feed");
    stmt_done(s);
    return ret;
}

/* SQLite tells no other process of a commit: the follower polls
 * sq_feed_head on a timer. */
static int
sq_feed_notify(struct store *base, store_feed_cb *cb, void *arg)
{
    (void)base, (void)cb, (void)arg;
    return -ENOTSUP;
}

const struct store_ops store_sqlite_ops = {
    .open = sq_open,
    .close = sq_close,
    .schema_version = sq_schema_version,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .load_server = sq_load_server,
    .save_server = sq_save_server,
    .transition = sq_transition,
    .append_event = sq_append_event,
    .list_events = sq_list_events,
    .token_add = sq_token_add,
    .token_lookup = sq_token_lookup,
    .token_of_server = sq_token_of_server,
    .token_revoke_server = sq_token_revoke_server,
    .prune = sq_prune,
    .token_get = sq_token_get,
    .token_mark = sq_token_mark,
    .token_last_addr = sq_token_last_addr,
    .session_add = sq_session_add,
    .session_delete = sq_session_delete,
    .session_list = sq_session_list,
    .session_expire = sq_session_expire,
    .lease_take = sq_lease_take,
    .lease_release = sq_lease_release,
    .action_add = sq_action_add,
    .action_take = sq_action_take,
    .action_done = sq_action_done,
    .feed_head = sq_feed_head,
    .feed_notify = sq_feed_notify,
};
