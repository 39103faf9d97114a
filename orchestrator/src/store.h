/* store: each server's current state, the event history (transitions,
 * boot-path fetches, actions, audit) and the one-time boot tokens, behind
 * one interface.  The URL picks the backend (store_backend.h): sqlite:
 * (store_sqlite.c, WAL in the data dir, the default) or postgresql://
 * (store_pg.c, libpq).  Both run the same migrations (store_migrations.c).
 * Every write is its own committed transaction, except inside a batch
 * (store_begin).
 *
 * Blocking, except the asynchronous writes below.  Every other call runs
 * on the caller's thread (the loop's) and returns when it is done: a write
 * has been committed, durably, by then.  fleet depends on "committed
 * before it acts": a transition is committed before its actions run
 * (power, tokens), so a daemon killed at any moment resumes where it was
 * (docs/design.md §5, §6).  Each call below is marked with what it
 * may wait for:
 *   [none]   no I/O;
 *   [read]   sqlite: the page cache, at worst a few disk reads (us to ms);
 *   [commit] sqlite: one fsync of the WAL at commit (a few ms on SSD, tens
 *            of ms on a spinning disk);
 *   [open]   start-up only: open, create, migrate (ms; a migration of a
 *            large file can take seconds).
 * With sqlite a [read] or [commit] also waits, up to 5 s, while another
 * process (an administrator's sqlite3 shell) holds the write lock; then it
 * fails with -EIO.
 * A network backend's [read] and [commit] are a round trip to the server
 * (plus its fsync), so store_pg bounds each (2 s, libpq's asynchronous
 * calls polled with a deadline; its blocking calls can hang for a TCP
 * timeout), fails with -EIO when the bound is reached or the server is
 * unreachable (a transition not stored is not done, the API answers 503
 * with store_last_error), and reconnects by itself on the loop with a
 * back-off, failing at once in between.  The loop's hot path uses the
 * asynchronous writes instead, which never wait (see "asynchronous
 * writes"): the callback says when the write is committed. */
#ifndef RESCUED_STORE_H
#define RESCUED_STORE_H

#include "fsm.h"
#include "store_records.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Why the last failed call failed, in the backend's words ("database is
 * locked"); "" before any failure.  [none] */
const char *store_last_error(const struct store *st);

/* Open (creating and migrating) the store url names:
 *   sqlite:PATH   the SQLite file PATH; its directory is made (0700, the
 *                 parents 0755) when missing
 *   sqlite:       DATA_DIR/rescued.db (also when url is NULL)
 *   postgresql://...  a PostgreSQL database (libpq's URI; data_dir unused);
 *                 the server must answer at open (30 s at most, a
 *                 migration by another node included)
 * Any other URL is refused, NULL with the reason in err (uri_store_parse's
 * words: "unknown store URL scheme 'mysql:' ...").  [open] */
struct store *store_open(const char *url, const char *data_dir, char *err,
                         size_t errlen);
struct loop;
/* Let the store do its background work on l (store_pg: reconnecting
 * after the database went away, so that no call waits for a connect);
 * before store_close, l must outlive the store.  Without it a call
 * reconnects inline, bounded.  [none] */
void store_attach_loop(struct store *st, struct loop *l);
/* Accepts NULL.  [commit]: sqlite checkpoints its WAL. */
void store_close(struct store *st);
/* The schema version the store is at (migrations applied).  [none] */
int store_schema_version(struct store *st);

/* A batch: the loads and saves between store_begin and store_commit run
 * in one transaction, so saving N rows costs one fsync, not N.  Only
 * store_load_server and store_save_server may be called inside it.
 * store_rollback drops what the batch saved.  begin [read] (takes the
 * write lock), commit [commit], rollback [read]. */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);

/* Returns 0, -ENOENT when the server has no row yet, or -EIO.  [read] */
int store_load_server(struct store *st, const char *id, struct server_row *out);
/* Frees the strings of a row loaded by store_load_server.  [none] */
void server_row_clear(struct server_row *row);
/* dst becomes a copy of src with strings of its own.  [none] */
void server_row_copy(struct server_row *dst, const struct server_row *src);
/* Insert or replace the row, without an event.  [commit] (inside a batch:
 * [read], committed by store_commit) */
int store_save_server(struct store *st, const char *id,
                      const struct server_row *row);
/* In one transaction: save the row and append a "transition" event
 * from -> row->fsm.state with message why.  Returns the event id (> 0)
 * or a negative errno.  [commit]: once it returns the id, the new state
 * and its pending_actions survive a crash, and the actions may run. */
int64_t store_transition(struct store *st, const char *id,
                         const struct server_row *row, enum fsm_state from,
                         const char *why);
/* Append an event of another kind; returns its id or a negative errno.
 * [commit] */
int64_t store_append_event(struct store *st, const char *server,
                           const char *kind, const char *actor,
                           const char *message);

/* Events of one server (or all when server is NULL) with id > after_id,
 * oldest first, at most limit (0: no limit).  A non-zero return from cb
 * stops the walk and is returned.  The event's strings are valid only
 * during the callback; cb must not list events itself (-EBUSY).  [read],
 * per row: a long history is read while the loop waits. */
int store_list_events(struct store *st, const char *server, int64_t after_id,
                      int limit, store_event_cb *cb, void *arg);

/* One-time boot tokens: minted per rescue boot, revoked on exit.  The add
 * retires the server's earlier token in the same transaction.  [commit] */
int store_token_add(struct store *st, const char *token, const char *server,
                    int64_t created_ms);
/* The server of a live token into server[64]; -ENOENT if none.  [read],
 * on the boot path: every kernel, initrd and overlay fetch, phone-home. */
int store_token_lookup(struct store *st, const char *token, char *server,
                       size_t len);
/* The live token of a server into token[65]; -ENOENT if none.  [read],
 * on the boot path: every iPXE script. */
int store_token_of_server(struct store *st, const char *server, char *token,
                          size_t len);
/* Revoke the server's live token, if any.  [commit] */
int store_token_revoke_server(struct store *st, const char *server);
/* A live token and what its boot did with it; -ENOENT if none.  [read],
 * on the boot path. */
int store_token_get(struct store *st, const char *token,
                    struct store_token *out);
/* Bind a live token to addr and/or mark its overlay served at overlay_ms
 * (NULL / 0: leave that one); what is set stays set.  -ENOENT when the
 * token is not live.  [commit] */
int store_token_mark(struct store *st, const char *token, const char *addr,
                     int64_t overlay_ms);
/* The address the server's last bound token (live or not) was bound to,
 * into addr; -ENOENT if none.  [read] */
int store_token_last_addr(struct store *st, const char *server, char *addr,
                          size_t len);

/* Retention: delete events older than before_ms (0: none for age) and
 * each server's events past its newest keep_per_server (0: no cap), and
 * tokens revoked before before_ms; at most max_rows events per call, the
 * rest at the next.  Returns the rows deleted or a negative errno.
 * [commit], after reads of the oldest max_rows events and of each
 * server's two ends of the index (plus keep_per_server index steps for a
 * server that has more). */
int64_t store_prune(struct store *st, int64_t before_ms, int keep_per_server,
                    int max_rows);

/* The portal's sign-in sessions, kept so a restart does not sign anyone
 * out.  Add one [commit]; delete the one of this id hash (none is not an
 * error) [commit]; the live ones (expires_ms > now_ms), a non-zero return
 * of cb stopping the walk and returned [read], per row (start-up only);
 * delete the expired ones, returning how many or a negative errno
 * [commit]. */
int store_session_add(struct store *st, const struct store_session *s);
int store_session_delete(struct store *st, const char *id_hash);
int store_session_list(struct store *st, int64_t now_ms, store_session_cb *cb,
                       void *arg);
int64_t store_session_expire(struct store *st, int64_t now_ms);
/* --- facilities: several nodes on one store ------------------------------
 * One node of a facility is active at a time: it holds the facility's
 * lease, runs the facility's servers, and takes the actions other nodes
 * were asked for.  Every node follows the change feed (the events table:
 * what any node stored) to show what the others did.  A backend without
 * notifications is polled (sqlite: a max(id) read, one index step); one
 * with them (PostgreSQL: LISTEN/NOTIFY) calls the feed callback. */

/* Take or renew facility's lease for node.  Free, lapsed (expires_ms <=
 * now_ms) or node's own already, it becomes node's until now_ms + ttl_ms:
 * 1.  Held by another node until later: 0, nothing written.  Either way
 * out (may be NULL) gets the holder and the expiry as they now stand.
 * One transaction: of two nodes asking at once one gets it.  now_ms is
 * the caller's clock, or STORE_NOW: the store's own, which the nodes
 * share so their clocks need not agree (PostgreSQL: the database
 * server's; sqlite, on one machine: its wall clock).  [commit] */
int store_lease_take(struct store *st, const char *facility, const char *node,
                     int64_t ttl_ms, int64_t now_ms, struct store_lease *out);
/* Give it up if node holds it (a clean stop): the next take by anyone
 * gets it at once.  0 or a negative errno.  [commit] */
int store_lease_release(struct store *st, const char *facility,
                        const char *node);
/* Queue an action asked on node origin for a server of facility, for the
 * facility's active node; body is the caller's text, kept as it is.  The
 * new action's id (> 0) or a negative errno.  [commit] */
int64_t store_action_add(struct store *st, const char *facility,
                         const char *server, const char *origin,
                         const char *actor, const char *body);
/* The oldest action of facility not done and not taken by node already
 * (new, or taken by a node that held the lease before and did not say
 * done), marked taken by node in the same transaction, and only while
 * node holds the facility's lease at now_ms (STORE_NOW: by the store's
 * clock, as the lease): 1 with it in out
 * (store_action_clear frees it), 0 when there is none (or node is not the
 * holder), a negative errno.  So an action is handed out once per holder;
 * the taker tells a re-take of one it already applied by the server row's
 * action_id, stored with the change it made.  [commit] */
int store_action_take(struct store *st, const char *facility, const char *node,
                      int64_t now_ms, struct store_action *out);
/* The action was applied or refused: nobody takes it again.  [commit] */
int store_action_done(struct store *st, int64_t id);
void store_action_clear(struct store_action *a);
/* The change feed's head: the newest event's id (0: none), or a negative
 * errno.  Read the events past a cursor with store_list_events.  The
 * followers keep a cursor, so ids must become visible in increasing order:
 * an event committed after another has a greater id (sqlite: one writer at
 * a time; a backend whose ids can commit out of order, as PostgreSQL
 * sequences do, must order them, e.g. give the id under a lock taken in
 * the writing transaction).  [read] */
int64_t store_feed_head(struct store *st);
/* Ask to be told when the feed may have moved: 0, and cb(arg) runs from
 * the loop after each commit by any node; -ENOTSUP when the backend cannot
 * (sqlite): the caller polls store_feed_head on a timer.  [none] */
int store_feed_notify(struct store *st, store_feed_cb *cb, void *arg);

/* --- asynchronous writes: the loop's hot path ---------------------------
 * The same writes as store_transition, store_save_server,
 * store_append_event, store_lease_take and the token writes, for a caller that
 * must not wait on a network: cb(arg, ...) runs exactly once, with what the
 * blocking call would have returned (a transition or an event: its id;
 * the lease: taken or not, and the holder), once the write is committed
 * or has failed (store_last_error says why; -ECANCELED: the store was
 * closed first).  Each copies what it needs; cb may be NULL.
 *   sqlite, or no loop attached, or inside a batch: the blocking call,
 *     cb run before the call returns (the write is local);
 *   PostgreSQL with a loop: queued on the connection, sent in the order
 *     asked, and cb runs from the loop when the server answers.  Each
 *     write is bounded (2 s from when it was asked, as a blocking call);
 *     past it, or when the connection is lost, it and every write queued
 *     behind it fail.  A blocking call made meanwhile first waits for the
 *     queue, within its own bound, so it sees what was asked before it.
 *     With the database down, cb runs at once with the reason.
 * cb may run before the call returns in every case: a caller does its
 * part of the work in cb, not after the call. */
void store_transition_async(struct store *st, const char *id,
                            const struct server_row *row, enum fsm_state from,
                            const char *why, store_done_cb *cb, void *arg);
void store_save_server_async(struct store *st, const char *id,
                             const struct server_row *row, store_done_cb *cb,
                             void *arg);
void store_append_event_async(struct store *st, const char *server,
                              const char *kind, const char *actor,
                              const char *message, store_done_cb *cb,
                              void *arg);
void store_lease_take_async(struct store *st, const char *facility,
                            const char *node, int64_t ttl_ms, int64_t now_ms,
                            store_lease_cb *cb, void *arg);
void store_token_add_async(struct store *st, const char *token,
                           const char *server, int64_t created_ms,
                           store_done_cb *cb, void *arg);
void store_token_mark_async(struct store *st, const char *token,
                            const char *addr, int64_t overlay_ms,
                            store_done_cb *cb, void *arg);
void store_token_revoke_server_async(struct store *st, const char *server,
                                     store_done_cb *cb, void *arg);
/* The change feed's reads, servers' rows (ids copied; one read for all)
 * and the actions handed on, the same way (the reads queue behind the
 * writes asked before them, so they see them). */
void store_load_servers_async(struct store *st, const char *const *ids,
                              size_t n, store_row_cb *cb, void *arg);
/* What store_token_of_server, store_token_get and store_token_last_addr
 * say of each server, in one read for them all (a takeover's). */
void store_server_tokens_async(struct store *st, const char *const *ids,
                               size_t n, store_tokens_cb *cb, void *arg);
void store_list_events_async(struct store *st, const char *server,
                             int64_t after_id, int limit, store_events_cb *cb,
                             void *arg);
void store_action_add_async(struct store *st, const char *facility,
                            const char *server, const char *origin,
                            const char *actor, const char *body,
                            store_done_cb *cb, void *arg);
void store_action_take_async(struct store *st, const char *facility,
                             const char *node, int64_t now_ms,
                             store_action_cb *cb, void *arg);
void store_action_done_async(struct store *st, int64_t id, store_done_cb *cb,
                             void *arg);
/* store_token_get, the same way: the boot path's look at a token not live
 * on this node (another facility's, or none at all). */
void store_token_get_async(struct store *st, const char *token,
                           store_token_cb *cb, void *arg);
/* How long the oldest write asked and not yet answered has waited, in ms
 * (0: none; always 0 with sqlite): a caller about to make a blocking call
 * that can wait (a periodic read) puts it off while the store is slow. */
int64_t store_waiting_ms(const struct store *st);
/* Is the store answering now?  False while the database is unreachable
 * (every call fails at once) or its oldest write has waited over
 * STORE_SLOW_MS: a write asked now would likely not be stored, a read
 * would wait behind it.  For a caller that can put its step off (the
 * boot path's iPXE, which asks again) or answer 503 at once (a history
 * read).  Always true with sqlite. */
#define STORE_SLOW_MS 1000
bool store_answering(struct store *st);
/* Wait (bounded, as a blocking call) until every write asked is answered,
 * their callbacks run: before the asker goes away.  0 or -EIO. */
int store_flush(struct store *st);

#endif
