/* store_records: what the store keeps, as store.h's callers and the
 * backends (store_backend.h) both read it: a server's row, an event of its
 * history and the callback that walks them.  Types only, no code; both
 * headers include it, so neither includes the other. */
#ifndef RESCUED_STORE_RECORDS_H
#define RESCUED_STORE_RECORDS_H

#include "fsm.h"

#include <stddef.h>
#include <stdint.h>

/* What is kept per server beyond the state machine's own fields. */
struct server_row {
    struct fsm_server fsm;
    char *ssh_keys;    /* keys added for this rescue, newline-separated */
    char *rescue_json; /* the rescue OS's phone-home report (JSON text) */
    unsigned pending_actions; /* fsm_action bits stored, not yet done */
    /* Of those, the ones whose command may have reached the BMC (stored
     * right before it was sent, power_sending_cb): a restart does not
     * send them again blindly. */
    unsigned sent_actions;
    char *project; /* the project it was last in (NULL: not stored yet) */
    /* Its project sees events after this id (0: all): a move stored an
     * event, and what came before is the old project's. */
    int64_t project_since_id;
    /* The newest queued action (store_action_take) applied or refused
     * for it, stored with the change it made: a new active node does not
     * run it again.  0: none. */
    int64_t action_id;
};

struct store_event {
    int64_t id; /* increasing; use as a cursor */
    const char *server;
    int64_t at_ms;          /* wall clock */
    const char *kind;       /* "transition", "boot", "action", "audit", ... */
    const char *from_state; /* transitions only, else NULL */
    const char *to_state;   /* transitions only, else NULL */
    const char *actor;      /* who: "admin", "project:acme", "rescued", ... */
    const char *message;
};

/* A live boot token: whose, the address that fetched its kernel ("" while
 * unbound), when its overlay was served (0: not yet). */
struct store_token {
    char server[64];
    char addr[64];
    int64_t overlay_ms;
};

/* store_list_events calls it per event; non-zero stops the walk. */
typedef int store_event_cb(void *arg, const struct store_event *ev);

/* A portal sign-in session as kept (session.h): hashes of its id and of
 * the token, never either itself. */
struct store_session {
    const char *id_hash;    /* hex SHA-256 of the cookie's id: the key */
    const char *token_hash; /* hex SHA-256 of the token signed in with */
    const char *csrf;
    const char *project; /* NULL: the admin */
    int64_t expires_ms;  /* wall clock */
};

/* store_session_list calls it per session; non-zero stops the walk. */
typedef int store_session_cb(void *arg, const struct store_session *s);
/* A facility's lease (store_lease_take): who holds it, until when (wall
 * clock ms). */
struct store_lease {
    char holder[64];
    int64_t expires_ms;
};

/* An action asked on one node for a server its facility's active node
 * runs (store_action_add, store_action_take). */
struct store_action {
    int64_t id;
    char server[64];
    char origin[64]; /* the node that took the request */
    char actor[128]; /* who asked: "admin", "project:acme" */
    char *body;      /* the action as fleet wrote it (JSON text); freed by
                        store_action_clear */
};

/* A lease's or a take's now_ms: the store's own clock (store.h). */
#define STORE_NOW 0

/* The store tells its follower that the change feed may have moved. */
typedef void store_feed_cb(void *arg);
/* The asynchronous writes' answers (store.h). */
typedef void store_done_cb(void *arg, int64_t rc);
typedef void store_lease_cb(void *arg, int rc, const struct store_lease *l);
/* Events read (store_list_events_async): valid during the call only. */
typedef void store_events_cb(void *arg, int rc, const struct store_event *evs,
                             size_t n);
/* Servers' rows read (store_load_servers_async): once per row found, rc 0
 * with its id and row (valid during the call); then once with id NULL:
 * rc 0, or a negative errno. */
typedef void store_row_cb(void *arg, int rc, const char *id,
                          const struct server_row *row);
/* A server's boot tokens as a node that starts running it needs them
 * (store_server_tokens_async): its live token (NULL: none) with the
 * address its boot is bound to ("" none) and when its overlay was served
 * (0 not yet), and the newest bound address of any of its tokens ("" none).
 * The strings are valid during the call. */
struct store_server_tokens {
    const char *server;
    const char *token;
    const char *addr;
    int64_t overlay_ms;
    const char *last_addr;
};
/* Once per server asked, rc 0 with t; then once with t NULL: rc 0, or a
 * negative errno. */
typedef void store_tokens_cb(void *arg, int rc,
                             const struct store_server_tokens *t);
struct store_action;
/* An action taken (store_action_take_async): rc 1 with a (valid during the
 * call), 0 none, or a negative errno. */
typedef void store_action_cb(void *arg, int rc, const struct store_action *a);
/* A token looked up (store_token_get_async): what store_token_get
 * returns, with t (valid during the call) when 0. */
typedef void store_token_cb(void *arg, int rc, const struct store_token *t);

#endif
