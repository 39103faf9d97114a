/* store: SQLite (WAL) in the data dir: each server's current state, the
 * event history (transitions, boot-path fetches, actions, audit), and the
 * one-time boot tokens.  One interface, so PostgreSQL can stand behind it
 * later.  Every write is its own committed transaction, except inside a
 * batch (store_begin). */
#ifndef RESCUED_STORE_H
#define RESCUED_STORE_H

#include "fsm.h"

#include <stddef.h>
#include <stdint.h>

struct store;

/* What is kept per server beyond the state machine's own fields. */
struct server_row {
    struct fsm_server fsm;
    char *ssh_keys;    /* keys added for this rescue, newline-separated */
    char *rescue_json; /* the rescue OS's phone-home report (JSON text) */
    unsigned pending_actions; /* fsm_action bits stored, not yet done */
};

struct store_event {
    int64_t id;         /* increasing; use as a cursor */
    const char *server;
    int64_t at_ms;      /* wall clock */
    const char *kind;   /* "transition", "boot", "action", "audit", ... */
    const char *from_state; /* transitions only, else NULL */
    const char *to_state;   /* transitions only, else NULL */
    const char *actor;  /* who: "admin", "project:acme", "rescued", ... */
    const char *message;
};

/* Open (creating and migrating) data_dir/rescued.db. */
struct store *store_open(const char *data_dir, char *err, size_t errlen);
void store_close(struct store *st);
int store_schema_version(struct store *st);

/* A batch: the loads and saves between store_begin and store_commit run
 * in one transaction, so saving N rows costs one fsync, not N.  Only
 * store_load_server and store_save_server may be called inside it.
 * store_rollback drops what the batch saved. */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);

/* Returns 0, -ENOENT when the server has no row yet, or -EIO. */
int store_load_server(struct store *st, const char *id, struct server_row *out);
/* Frees the strings of a row loaded by store_load_server. */
void server_row_clear(struct server_row *row);
/* Insert or replace the row, without an event. */
int store_save_server(struct store *st, const char *id,
                      const struct server_row *row);
/* In one transaction: save the row and append a "transition" event
 * from -> row->fsm.state with message why.  Returns the event id (> 0)
 * or a negative errno. */
int64_t store_transition(struct store *st, const char *id,
                         const struct server_row *row, enum fsm_state from,
                         const char *why);
/* Append an event of another kind; returns its id or a negative errno. */
int64_t store_append_event(struct store *st, const char *server,
                           const char *kind, const char *actor,
                           const char *message);

typedef int store_event_cb(void *arg, const struct store_event *ev);
/* Events of one server (or all when server is NULL) with id > after_id,
 * oldest first, at most limit (0: no limit).  A non-zero return from cb
 * stops the walk and is returned.  The event's strings are valid only
 * during the callback; cb must not list events itself (-EBUSY). */
int store_list_events(struct store *st, const char *server, int64_t after_id,
                      int limit, store_event_cb *cb, void *arg);

/* One-time boot tokens: minted per rescue boot, revoked on exit. */
int store_token_add(struct store *st, const char *token, const char *server,
                    int64_t created_ms);
/* The server of a live token into server[64]; -ENOENT if none. */
int store_token_lookup(struct store *st, const char *token, char *server,
                       size_t len);
/* The live token of a server into token[65]; -ENOENT if none. */
int store_token_of_server(struct store *st, const char *server, char *token,
                          size_t len);
int store_token_revoke_server(struct store *st, const char *server);

#endif
