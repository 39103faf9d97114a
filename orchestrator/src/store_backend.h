/* store_backend: what store.c and its backends (store_sqlite.c,
 * store_pg.c) share, and nobody else includes.  store.c owns the public
 * interface (store.h) and reaches a backend only through its ops table;
 * a backend never calls back into store.c.
 *
 * A backend's own struct begins with struct store, so store.c can hand the
 * same pointer to every op.  Each op has the contract of the store.h call
 * of the same name (return values, blocking, committed before return);
 * store.c adds only what holds for every backend (NULL checks, the guard
 * against listing events from inside a walk). */
#ifndef RESCUED_STORE_BACKEND_H
#define RESCUED_STORE_BACKEND_H

#include "fsm.h"
#include "store_records.h"
#include "uri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

struct store_ops {
    /* Open (creating and migrating) what u names; a backend with a
     * default location puts it under data_dir.  NULL with err written. */
    struct store *(*open)(const struct uri_store *u, const char *data_dir,
                          char *err, size_t errlen);
    void (*close)(struct store *st); /* st is not NULL */
    /* Optional: background work (store_pg's reconnects) on l. */
    void (*attach_loop)(struct store *st, struct loop *l);
    int (*schema_version)(struct store *st);
    int (*begin)(struct store *st);
    int (*commit)(struct store *st);
    void (*rollback)(struct store *st);
    int (*load_server)(struct store *st, const char *id,
                       struct server_row *out);
    int (*save_server)(struct store *st, const char *id,
                       const struct server_row *row);
    int64_t (*transition)(struct store *st, const char *id,
                          const struct server_row *row, enum fsm_state from,
                          const char *why);
    int64_t (*append_event)(struct store *st, const char *server,
                            const char *kind, const char *actor,
                            const char *message);
    int (*list_events)(struct store *st, const char *server, int64_t after_id,
                       int limit, store_event_cb *cb, void *arg);
    int (*token_add)(struct store *st, const char *token, const char *server,
                     int64_t created_ms);
    int (*token_lookup)(struct store *st, const char *token, char *server,
                        size_t len);
    int (*token_of_server)(struct store *st, const char *server, char *token,
                           size_t len);
    int (*token_revoke_server)(struct store *st, const char *server);
    int64_t (*prune)(struct store *st, int64_t before_ms, int keep_per_server,
                     int max_rows);
    int (*token_get)(struct store *st, const char *token,
                     struct store_token *out);
    int (*token_mark)(struct store *st, const char *token, const char *addr,
                      int64_t overlay_ms);
    int (*token_last_addr)(struct store *st, const char *server, char *addr,
                           size_t len);
    int (*session_add)(struct store *st, const struct store_session *s);
    int (*session_delete)(struct store *st, const char *id_hash);
    int (*session_list)(struct store *st, int64_t now_ms, store_session_cb *cb,
                        void *arg);
    int64_t (*session_expire)(struct store *st, int64_t now_ms);
    /* Facilities and nodes (store.h, "facilities"): the lease, the
     * actions handed to the active node, the change feed.  NULL in a
     * backend without them yet (store_pg): store.c answers -ENOTSUP (the
     * take: none), and a node runs its facility alone. */
    int (*lease_take)(struct store *st, const char *facility, const char *node,
                      int64_t ttl_ms, int64_t now_ms, struct store_lease *out);
    int (*lease_release)(struct store *st, const char *facility,
                         const char *node);
    int64_t (*action_add)(struct store *st, const char *facility,
                          const char *server, const char *origin,
                          const char *actor, const char *body);
    int (*action_take)(struct store *st, const char *facility, const char *node,
                       int64_t now_ms, struct store_action *out);
    int (*action_done)(struct store *st, int64_t id);
    int64_t (*feed_head)(struct store *st);
    int (*feed_notify)(struct store *st, store_feed_cb *cb, void *arg);
    /* Optional: the asynchronous writes (store.h).  NULL: store.c runs
     * the blocking op and cb at once.  A backend that has them may still
     * run one inline (no loop, a batch) and call cb before returning. */
    void (*transition_async)(struct store *st, const char *id,
                             const struct server_row *row, enum fsm_state from,
                             const char *why, store_done_cb *cb, void *arg);
    void (*save_server_async)(struct store *st, const char *id,
                              const struct server_row *row, store_done_cb *cb,
                              void *arg);
    void (*append_event_async)(struct store *st, const char *server,
                               const char *kind, const char *actor,
                               const char *message, store_done_cb *cb,
                               void *arg);
    void (*lease_take_async)(struct store *st, const char *facility,
                             const char *node, int64_t ttl_ms, int64_t now_ms,
                             store_lease_cb *cb, void *arg);
    void (*token_add_async)(struct store *st, const char *token,
                            const char *server, int64_t created_ms,
                            store_done_cb *cb, void *arg);
    void (*token_mark_async)(struct store *st, const char *token,
                             const char *addr, int64_t overlay_ms,
                             store_done_cb *cb, void *arg);
    void (*token_revoke_server_async)(struct store *st, const char *server,
                                      store_done_cb *cb, void *arg);
    void (*load_servers_async)(struct store *st, const char *const *ids,
                               size_t n, store_row_cb *cb, void *arg);
    void (*server_tokens_async)(struct store *st, const char *const *ids,
                                size_t n, store_tokens_cb *cb, void *arg);
    void (*list_events_async)(struct store *st, const char *server,
                              int64_t after_id, int limit, store_events_cb *cb,
                              void *arg);
    void (*action_add_async)(struct store *st, const char *facility,
                             const char *server, const char *origin,
                             const char *actor, const char *body,
                             store_done_cb *cb, void *arg);
    void (*action_take_async)(struct store *st, const char *facility,
                              const char *node, int64_t now_ms,
                              store_action_cb *cb, void *arg);
    void (*action_done_async)(struct store *st, int64_t id, store_done_cb *cb,
                              void *arg);
    void (*token_get_async)(struct store *st, const char *token,
                            store_token_cb *cb, void *arg);
    int64_t (*waiting_ms)(const struct store *st);
    /* Optional: false while the backend knows its writes would fail. */
    bool (*connected)(struct store *st);
    int (*flush)(struct store *st);
};

/* The first member of every backend's struct. */
struct store {
    const struct store_ops *ops;
    bool listing; /* inside store_list_events: a nested list is refused */
    /* Why the last failed call failed, in the backend's words ("database
     * is locked", "database or disk is full"); the backend writes it. */
    char last_error[256];
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;

/* The schema (store_migrations.c): migration i takes a database from
 * version i to i + 1 on every backend.  .pg is PostgreSQL's text where it
 * differs from .sql (NULL: .sql runs on both). */
struct store_migration {
    const char *sql;
    const char *pg;
};
enum store_dialect {
    STORE_DIALECT_SQLITE,
    STORE_DIALECT_PG,
};
extern const struct store_migration store_migrations[];
/* How many migrations there are: the version a migrated store is at. */
extern const int store_schema_latest;
/* Migration i's text for dialect d (0 <= i < store_schema_latest). */
const char *store_migration_sql(int i, enum store_dialect d);

#endif
