/* fleet's insides, for its own files only (nothing but fleet*.c includes
 * this): fleet.c keeps each server's life, fleet_view.c shows it (API JSON,
 * metrics), fleet_boot.c turns the boot path's fetches into events.
 * fleet_view.c and fleet_boot.c use fleet.c through the functions below;
 * fleet.c calls neither of them, so the calls run one way.  This header
 * stands below fleet.h and does not include it. */
#ifndef RESCUED_FLEET_INTERNAL_H
#define RESCUED_FLEET_INTERNAL_H

#include "config.h"
#include "fsm.h"
#include "store_records.h"
#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct console;
struct console_viewer;
struct dnsmasq;
struct ticket_store;
struct loop;
struct power;
struct store;

/* A boot token: random bytes, written as twice as many hex characters
 * (store.h's token[65]). */
#define FLEET_TOKEN_BYTES 32
#define FLEET_TOKEN_SIZE (2 * FLEET_TOKEN_BYTES + 1)

/* A server's boot token as the store has it, kept while this node runs
 * the server (fleet.c, "boot tokens"). */
struct srv_token {
    bool live;
    bool indexed; /* in f->tokens: live while the server runs here */
    bool read;    /* read by a takeover: srv_start keeps it */
    char token[FLEET_TOKEN_SIZE];
    char addr[64];      /* the address its boot is bound to, "" none yet */
    int64_t overlay_ms; /* when its overlay was served, 0 not yet */
    char last_addr[64]; /* the newest bound token's address (live or not) */
};

/* One server's live state: its stored row, its driver, its timers. */
struct srv {
    struct fleet *f;
    const struct config_server *cfg; /* points into f->cfg */
    struct server_row row;
    struct power *power;
    uint64_t timer;                 /* the deadline timer, 0 when none */
    uint64_t grace;                 /* end of the console's read-only window */
    struct console *console;        /* NULL: no console configured */
    struct console_viewer *watcher; /* looks for the local OS booting */
    char tail[CONFIG_PATTERN_MAX];  /* console text kept across chunks */
    size_t tail_len;
    bool closing; /* in srv_free: its driver's last answers go unheard */
    /* the driver set a one-time disk boot for the reset queued after it */
    bool disk_boot;
    /* The boot path's notes of this step (hashes of their words): a
     * repeated fetch is noted once, a flood not at all.  A transition or
     * an action starts a new step (fleet_boot.c). */
    uint64_t boot_noted[8];
    size_t nboot_noted;
    /* The last change the store refused, "" when the last one was stored:
     * the API shows it as last_error until a change is stored again. */
    char store_error[320];
    int64_t store_backoff_ms; /* the next retry of a refused deadline */
    int64_t store_logged_ms;  /* when the refusal was last logged */
    unsigned store_quiet;     /* refusals not logged since */
    /* A move the store did not record (row.project is still the old
     * one, so a restart records it again): hide all of the history. */
    bool move_unrecorded;
    /* boot = virtualmedia: the child making this boot's CD, and the CD's
     * path (DATA/media/ID.iso), served as /media/TOKEN.iso. */
    struct vmiso_job *vm_job;
    char *vm_iso;
    /* fleet_server_json_text's: the text, and the hash of what it shows */
    struct buf view;
    uint64_t view_key;
    /* This node runs it (its facility's active node): its driver and
     * console are open.  Otherwise row mirrors the store: read again,
     * without waiting, after the feed told an event of it (row_stale
     * until asked; fleet.c, mirror_read). */
    bool runs;
    bool row_stale;
    /* A step whose change the store has not answered yet (a network
     * store answers from the loop): the inputs that come meanwhile wait
     * in held, in order, and row saves are put off (dirty) until it is
     * answered (fleet.c, apply). */
    struct step *step;
    struct held *held, **held_tail;
    bool dirty;
    /* Its boot token while it runs here: read at start, then kept with
     * each write (this node alone writes it), so the boot path reads no
     * store. */
    struct srv_token tok;
};

/* A subscriber: live events (cb) or writable changes (writable). */
struct sub {
    uint64_t id;
    char *server; /* NULL: all */
    /* fleet_event_cb and fleet_writable_cb of fleet.h, spelled out */
    void (*cb)(void *arg, const struct store_event *ev);
    void (*writable)(void *arg, const char *server);
    void *arg;
    struct sub *next;
};

struct fleet {
    struct loop *loop;
    struct config *cfg;
    struct store *st;
    struct fsm_limits limits;
    struct srv **srvs; /* same order as cfg->servers */
    size_t nsrvs;
    struct sub *subs;
    uint64_t next_sub;
    struct dnsmasq *dnsmasq;       /* NULL when [pxe] mode = off */
    uint64_t entered[FSM_NSTATES]; /* transitions into each state */
    uint64_t failed[FSM_NSTATES];  /* failures by the step that failed */
    uint64_t retried[FSM_NSTATES]; /* timeouts that reset and retried */
    uint64_t retention_timer;      /* prunes the store by [rescued] retention */
    uint64_t boot_refused[2];      /* boot-path refusals: 403, 409 */
    struct ticket_store *tickets;  /* browser console (fleet_ticket.c) */
    /* the portal's sign-ins */
    struct session_store *sessions;
    /* Facilities (fleet.c, "the lease"): this node's names, read at
     * start; whether it holds its facility's lease; the change feed's
     * cursor (every event up to it was told to the subscribers). */
    char *node, *facility;
    bool active;
    bool stopping;      /* in fleet_free: answers come, no action starts */
    bool lease_asking;  /* a renewal is on its way to the store */
    bool feed_notifies; /* the store tells of commits (store_feed_notify) */
    /* The feed's read and the actions' take are asked without waiting,
     * one at a time; a look asked meanwhile is made after. */
    /* The live tokens of the servers run here (tsearch's tree of
     * srv_token.token), so a boot request finds its server without a scan
     * of the fleet (fleet.c, token_index). */
    void *tokens;
    bool feed_reading, feed_pending;
    bool rows_reading; /* mirror_read's read is on its way */
    bool taking_over;  /* active, its servers' reads on their way */
    uint64_t feed_again_timer;
    bool taking, take_again;
    int taken_in_row;
    char lease_holder[64]; /* who held it at the last look, "" unknown */
    int64_t lease_expires_ms;
    uint64_t lease_timer, feed_timer;
    uint64_t lease_changes; /* became active or stood down */
    /* The store's answers for tokens not live here, each looked up for one
     * parked boot request (fleet_boot_settle) and taken by its re-run
     * (fleet_srv_of_token): a ring of TOKEN_ANSWERS (made at the first),
     * the oldest overwritten. */
    struct token_answer *token_answers;
    size_t token_answer_next;
    int64_t feed_cursor;
};

/* The live server of an inventory entry of f->cfg. */
static inline struct srv *
fleet_srv_of(struct fleet *f, const struct config_server *cs)
{
    return f->srvs[cs - f->cfg->servers];
}

/* The live server with this id, or NULL. */
struct srv *fleet_srv_find(struct fleet *f, const char *id);

/* fleet_session.c: the session store, with the stored sessions read back
 * (fleet_new); a reload's recheck (each session whose token or project is
 * gone ends); retention's sweep of the expired ones.  Each session ended
 * is deleted from the store. */
struct session_store *fleet_sessions_load(struct fleet *f);
void fleet_sessions_recheck(struct fleet *f);
void fleet_sessions_expire(struct fleet *f);

/* Store an event in the server's timeline (kind "boot", "audit", "error",
 * ...) and tell the subscribers.  Writes the store. */
/* boot = virtualmedia (fleet_boot.c): start making this boot's CD from the
 * image's ([image] iso) with its kernel command line; cb(s, ...) runs when
 * it is written.  0, or a negative errno with the reason in err. */
int fleet_vm_cd_make(struct srv *s,
                     void (*cb)(void *s, int status, const char *err),
                     char *err, size_t errlen);

/* The state as the store has it: the row's, or while a step waits for
 * the store, the one before it (the API shows nothing not stored). */
const struct fsm_server *fleet_srv_stored_fsm(const struct srv *s);
/* Boot tokens (fleet.c).  The server's live token into token (0), or
 * -ENOENT; a server not run here asks the store. */
int fleet_srv_token(struct srv *s, char *token, size_t len);
/* The server a live token is of, with what its boot did with it; NULL
 * when none.  A token of a server not run here is the store's answer
 * that fleet_boot_settle looked up for this request, or else looked up
 * now (not while the store is slow: then NULL). */
struct srv *fleet_srv_of_token(struct fleet *f, const char *token,
                               struct store_token *t);
/* Bind the live token to addr and/or mark its overlay served (NULL / 0:
 * leave that one): kept at once, stored without waiting. */
void fleet_srv_token_mark(struct srv *s, const char *addr, int64_t overlay_ms);
/* Store the row (without waiting: a network store answers later), after
 * the step that waits for the store if there is one. */
void fleet_srv_save(struct srv *s);
void fleet_srv_note(struct srv *s, const char *kind, const char *actor,
                    const char *msg);

/* Mint a fresh boot token for the server's next boot (the old one dies in
 * the same write).  0, or a negative errno, logged. */
int fleet_srv_new_token(struct srv *s);

/* Feed an event to the server's state machine: the transition is stored
 * before its actions run.  Writes the store. */
void fleet_srv_feed(struct srv *s, enum fsm_event ev);

#endif
