/* fleet.c: each server's life (see fleet.h); the views and the boot path
 * are in fleet_view.c and fleet_boot.c. */
#include "fleet.h"
#include "fleet_internal.h"
#include "console.h"
#include "console_session.h"
#include "dnsmasq.h"
#include "log.h"
#include "sshkey.h"
#include "loop.h"
#include "power.h"
#include "session.h"
#include "ticket.h"
#include "util.h"
#include "vmiso.h"

#include <errno.h>
#include <search.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void apply(struct srv *s, const struct fsm_input *in, const char *actor);
typedef void apply_cb(void *arg, int rc, const char *why);
static void apply_then(struct srv *s, const struct fsm_input *given,
                       const char *actor, apply_cb *cb, void *arg);

/* A store that refuses writes (disk full, locked by another process) is
 * retried no sooner than this, doubling up to the max, and logged once per
 * interval per server. */
#define STORE_RETRY_MIN_MS 1000
#define STORE_RETRY_MAX_MS 60000
#define STORE_LOG_INTERVAL_MS 10000

static void
limits_from_config(struct fsm_limits *l, const struct config *c)
{
    fsm_limits_default(l);
    if (c->timeout_rebooting > 0)
        l->timeout_ms[FSM_REBOOTING] = c->timeout_rebooting * 1000LL;
    if (c->timeout_pxe_booting > 0)
        l->timeout_ms[FSM_PXE_BOOTING] = c->timeout_pxe_booting * 1000LL;
    if (c->timeout_rescue_booting > 0)
        l->timeout_ms[FSM_RESCUE_BOOTING] = c->timeout_rescue_booting * 1000LL;
    if (c->timeout_exiting > 0)
        l->timeout_ms[FSM_EXITING] = c->timeout_exiting * 1000LL;
    if (c->timeout_booting_local > 0)
        l->timeout_ms[FSM_BOOTING_LOCAL] = c->timeout_booting_local * 1000LL;
    if (c->max_retries >= 0)
        l->max_retries = c->max_retries;
    if (c->local_settle >= 0)
        l->local_settle_ms = c->local_settle * 1000LL;
}

static void tell_subs(struct fleet *f, const struct store_event *ev);
static void feed_follow(struct fleet *f);

/* Tell subscribers about an event that is already committed.  What other
 * nodes stored before it is told first (the streams keep ids in order). */
static void
publish(struct fleet *f, int64_t id, const char *server, const char *kind,
        const char *from, const char *to, const char *actor, const char *msg)
{
    struct store_event ev = {.id = id,
                             .server = server,
                             .at_ms = now_wall_ms(),
                             .kind = kind,
                             .from_state = from,
                             .to_state = to,
                             .actor = actor,
                             .message = msg};
    /* Another node's events come first: the feed tells them, and this
     * one after them, in order. */
    if (id > f->feed_cursor + 1) {
        feed_follow(f);
        return;
    }
    if (id > f->feed_cursor)
        f->feed_cursor = id;
    tell_subs(f, &ev);
}

static void
tell_subs(struct fleet *f, const struct store_event *ev)
{
    for (struct sub *u = f->subs; u; u = u->next)
        if (u->cb && (!u->server || strcmp(u->server, ev->server) == 0))
            u->cb(u->arg, ev);
}

/* Tell the console faces that server's writable answer may have changed. */
static void
tell_writable(struct fleet *f, const char *server)
{
    for (struct sub *u = f->subs; u; u = u->next)
        if (u->writable)
            u->writable(u->arg, server);
}

/* Milliseconds left of the read-only window after a settled change. */
static int64_t
readonly_left_ms(const struct srv *s)
{
    if (!fsm_state_is_stable(s->row.fsm.state))
        return 0;
    int64_t left = s->row.fsm.since_ms + s->f->cfg->readonly_grace * 1000LL -
                   now_wall_ms();
    return left > 0 ? left : 0;
}

static int64_t
grace_over(struct loop *l, void *arg)
{
    (void)l;
    struct srv *s = arg;
    s->grace = 0;
    tell_writable(s->f, s->cfg->id);
    return -1;
}

/* A transition makes the console read-only; the end of the window after a
 * stable state makes it writable again, and the faces hear both.  The
 * window is wall-clock, the loop's timers monotonic: 50 ms of slack. */
static void
arm_grace(struct srv *s)
{
    loop_del_timer(s->f->loop, s->grace);
    s->grace = 0;
    int64_t left = readonly_left_ms(s);
    if (left > 0)
        s->grace = loop_add_timer(s->f->loop, left + 50, grace_over, s);
}

/* A note on its way to the store: told to the subscribers once stored
 * (with its id, in the order the notes were asked). */
struct note {
    struct fleet *f;
    char *server, *kind, *actor, *msg;
};

static void
note_stored(void *arg, int64_t id)
{
    struct note *n = arg;
    /* -ECANCELED: the store closed after the fleet; n->f is gone. */
    if (id > 0 && !n->f->stopping)
        publish(n->f, id, n->server, n->kind, NULL, NULL, n->actor, n->msg);
    free(n->server);
    free(n->kind);
    free(n->actor);
    free(n->msg);
    free(n);
}

void
fleet_srv_note(struct srv *s, const char *kind, const char *actor,
               const char *msg)
{
    struct note *n = xcalloc(1, sizeof(*n));
    n->f = s->f;
    n->server = xstrdup(s->cfg->id);
    n->kind = xstrdup(kind);
    n->actor = actor ? xstrdup(actor) : NULL;
    n->msg = msg ? xstrdup(msg) : NULL;
    store_append_event_async(s->f->st, n->server, n->kind, n->actor, n->msg,
                             note_stored, n);
}

static void arm_deadline(struct srv *s);

static int64_t deadline_fired(struct loop *l, void *arg);

/* The timeout's verdict.  Not stored: try again later, not at once (the
 * deadline has passed, and a 0 ms timer would spin on a full disk). */
static void
deadline_applied(void *arg, int rc, const char *why)
{
    struct srv *s = arg;
    (void)why;
    if (rc == -ECANCELED)
        return;
    if (rc == -EIO) {
        int64_t wait =
            s->store_backoff_ms ? s->store_backoff_ms * 2 : STORE_RETRY_MIN_MS;
        s->store_backoff_ms =
            wait > STORE_RETRY_MAX_MS ? STORE_RETRY_MAX_MS : wait;
        loop_del_timer(s->f->loop, s->timer);
        s->timer =
            loop_add_timer(s->f->loop, s->store_backoff_ms, deadline_fired, s);
        return;
    }
    s->store_backoff_ms = 0;
    /* The loop's clock is monotonic, deadlines are wall-clock: a timer can
     * fire a millisecond before the deadline it stands for, and the state
     * machine then ignores it.  Arm it again rather than lose it. */
    if (!s->timer && s->row.fsm.deadline_ms && s->runs && !s->f->stopping)
        arm_deadline(s);
}

static int64_t
deadline_fired(struct loop *l, void *arg)
{
    (void)l;
    struct srv *s = arg;
    s->timer = 0;
    struct fsm_input in = {.event = FSM_EV_TIMEOUT};
    apply_then(s, &in, "rescued", deadline_applied, s);
    return -1;
}

static void
arm_deadline(struct srv *s)
{
    loop_del_timer(s->f->loop, s->timer);
    s->timer = 0;
    if (s->row.fsm.deadline_ms == 0)
        return;
    int64_t wait = s->row.fsm.deadline_ms - now_wall_ms();
    s->timer =
        loop_add_timer(s->f->loop, wait < 0 ? 0 : wait, deadline_fired, s);
}

/* One power request: which server, and which stored action it completes. */
struct power_call {
    struct srv *s;
    unsigned action;
};

/* The stored action ran: a restart must not run it again. */
static void
action_done(struct srv *s, unsigned action)
{
    if (!(s->row.pending_actions & action))
        return;
    s->row.pending_actions &= ~action;
    s->row.sent_actions &= ~action;
    fleet_srv_save(s);
}

/* The driver is about to send the reset: stored first, so a restart knows
 * the BMC may have carried it out and does not send it again blindly.
 * Not stored, the restart sends it again (at least once, as before). */
static void
reset_sending(void *arg)
{
    struct power_call *pc = arg;
    struct srv *s = pc->s;
    if (s->closing || !(s->row.pending_actions & pc->action) ||
        (s->row.sent_actions & pc->action))
        return;
    s->row.sent_actions |= pc->action;
    /* Blocking, so it is stored before the reset goes (once a reset, and
     * not at all while the store is not answering, which would only hold
     * the loop for its bound); behind a step still waiting for the store
     * (a new input meanwhile), with it. */
    if (s->step)
        s->dirty = true;
    else if (!store_answering(s->f->st) ||
             store_save_server(s->f->st, s->cfg->id, &s->row) < 0)
        log_warnx("%s: cannot store that its reset is on its way", s->cfg->id);
}

static void
power_done(void *arg, int status, const char *detail)
{
    struct power_call *pc = arg;
    struct srv *s = pc->s;
    unsigned action = pc->action;
    free(pc);
    if (status == -ECANCELED || s->closing)
        return;
    bool to_disk = action == FSM_ACT_POWER_RESET && s->disk_boot;
    if (action == FSM_ACT_POWER_RESET)
        s->disk_boot = false;
    if (status == 0) {
        action_done(s, action);
        /* Reset with its disk boot set: it is on its way home now. */
        if (to_disk)
            fleet_srv_feed(s, FSM_EV_RESET_TO_DISK);
        return;
    }
    char why[256];
    snprintf_utf8(why, sizeof(why), "power: %s",
                  detail ? detail : strerror(-status));
    log_warnx("%s: %s", s->cfg->id, why);
    action_done(s, action);
    fleet_srv_note(s, "error", "rescued", why);
    struct fsm_input in = {.event = FSM_EV_STEP_FAILED, .detail = why};
    apply(s, &in, "rescued");
}

static void
power_call(struct srv *s, enum power_op op, unsigned action)
{
    struct power_call *pc = xmalloc(sizeof(*pc));
    pc->s = s;
    pc->action = action;
    power_request_notify(s->power, op, NULL, power_done,
                         op == POWER_RESET ? reset_sending : NULL, pc);
}

static void
netboot_set(void *arg, int status, const char *detail)
{
    struct srv *s = arg;
    if (status == -ECANCELED || s->closing)
        return;
    /* A driver that cannot set it leaves the decision to the iPXE script. */
    if (status != 0 && status != -ENOTSUP) {
        char why[256];
        snprintf_utf8(why, sizeof(why), "one-time network boot: %s",
                      detail ? detail : strerror(-status));
        struct fsm_input in = {.event = FSM_EV_STEP_FAILED, .detail = why};
        apply(s, &in, "rescued");
        return;
    }
    struct fsm_input in = {.event = FSM_EV_PREPARED};
    apply(s, &in, "rescued");
}

/* Virtual media: the CD is in; now the one-time boot from it, whose
 * answer moves the rescue on as the netboot's does. */
static void
media_set(void *arg, int status, const char *detail)
{
    struct srv *s = arg;
    if (status == -ECANCELED || s->closing)
        return;
    if (status != 0) {
        char why[256];
        snprintf(why, sizeof(why), "virtual media: %s",
                 detail ? detail : strerror(-status));
        struct fsm_input in = {.event = FSM_EV_STEP_FAILED, .detail = why};
        apply(s, &in, "rescued");
        return;
    }
    power_request(s->power, POWER_CD_BOOT_ONCE, NULL, netboot_set, s);
}

/* This boot's CD is written (vmiso.c): into the BMC's virtual CD drive,
 * named by the boot's token. */
static void
vm_cd_made(void *arg, int status, const char *err)
{
    struct srv *s = arg;
    char token[FLEET_TOKEN_SIZE];
    s->vm_job = NULL;
    if (status == 0 && fleet_srv_token(s, token, sizeof(token)) < 0)
        status = -ENOENT, err = "no boot token";
    if (status < 0) {
        char why[600];
        snprintf(why, sizeof(why), "virtual media: %s",
                 err ? err : strerror(-status));
        struct fsm_input in = {.event = FSM_EV_STEP_FAILED, .detail = why};
        apply(s, &in, "rescued");
        return;
    }
    char *url = xasprintf("%s/media/%s.iso", s->f->cfg->boot_url, token);
    power_request(s->power, POWER_MEDIA_INSERT, url, media_set, s);
    free(url);
}

/* On the way home the CD comes out first; a BMC that fails it is an
 * error event, and the disk boot goes on.  Out, this boot's CD goes. */
static void
media_ejected(void *arg, int status, const char *detail)
{
    struct srv *s = arg;
    if (status == -ECANCELED || s->closing)
        return;
    if (status == 0) {
        if (s->vm_iso)
            unlink(s->vm_iso);
        return;
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "virtual media not ejected: %s",
             detail ? detail : strerror(-status));
    fleet_srv_note(s, "error", "rescued", msg);
}

/* The one-time disk boot before an exit's reset.  Not set, the server
 * netboots and its iPXE script sends it home: slower, no less right. */
static void
disk_boot_set(void *arg, int status, const char *detail)
{
    struct srv *s = arg;
    if (status == -ECANCELED || s->closing)
        return;
    action_done(s, FSM_ACT_BOOT_DISK);
    s->disk_boot = status == 0;
    if (status == 0)
        return;
    char msg[300];
    snprintf_utf8(msg, sizeof(msg),
                  "%s: %s; it boots through the network and its iPXE script "
                  "sends it home",
                  status == -ENOTSUP ? "no one-time disk boot"
                                     : "one-time disk boot failed",
                  detail ? detail : strerror(-status));
    fleet_srv_note(s, status == -ENOTSUP ? "action" : "error", "rescued", msg);
}

/* --- boot tokens ------------------------------------------------------------
 * While this node runs a server it alone writes the server's tokens, so
 * it keeps the live one in s->tok: read from the store when the server
 * starts here, then changed in memory and stored without waiting (a
 * network store answers later), in the order asked.  The boot path reads
 * s->tok, never the store.  A write the store refuses: the add fails the
 * step (no token, no rescue), a mark or revoke is logged (the memory is
 * the stricter: a revoked or spent token stays so here). */

static int
token_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The index holds s->tok.token exactly while the token is live and the
 * server runs here: call after either changes (and before the token's
 * text does). */
static void
token_index(struct srv *s)
{
    bool want = s->tok.live && s->runs;
    if (want == s->tok.indexed)
        return;
    if (want)
        tsearch(s->tok.token, &s->f->tokens, token_cmp);
    else
        tdelete(s->tok.token, &s->f->tokens, token_cmp);
    s->tok.indexed = want;
}

static void
token_set_live(struct srv *s, bool live)
{
    s->tok.live = live;
    token_index(s);
}

/* Read at start, blocking (the server is not running yet). */
static void
token_load(struct srv *s)
{
    struct store *st = s->f->st;
    struct store_token t;
    if (s->tok.read) { /* by the takeover, for all of them at once */
        s->tok.read = false;
        return;
    }
    token_set_live(s, false);
    memset(&s->tok, 0, sizeof(s->tok));
    if (store_token_of_server(st, s->cfg->id, s->tok.token,
                              sizeof(s->tok.token)) == 0 &&
        store_token_get(st, s->tok.token, &t) == 0) {
        s->tok.live = true;
        strlcpy_s(s->tok.addr, t.addr, sizeof(s->tok.addr));
        s->tok.overlay_ms = t.overlay_ms;
    }
    store_token_last_addr(st, s->cfg->id, s->tok.last_addr,
                          sizeof(s->tok.last_addr));
}

/* The server run here whose live token this is (memory only), or NULL. */
static struct srv *
srv_of_live_token(struct fleet *f, const char *token)
{
    char *const *key = tfind(token, &f->tokens, token_cmp);
    if (!key)
        return NULL;
    return (struct srv *)(*key - offsetof(struct srv, tok.token));
}

int
fleet_srv_token(struct srv *s, char *token, size_t len)
{
    if (!s->runs)
        return store_token_of_server(s->f->st, s->cfg->id, token, len);
    if (!s->tok.live)
        return -ENOENT;
    strlcpy_s(token, s->tok.token, len);
    return 0;
}

/* An answer of the store's for token, as the request it was looked up
 * for finds it: the newest not taken, at most TOKEN_ANSWER_KEEP_MS old
 * (one a re-run never took is not another request's). */
struct token_answer {
    char token[FLEET_TOKEN_SIZE];
    int rc; /* store_token_get's */
    struct store_token t;
    int64_t at_ms; /* monotonic; 0: free or taken */
};
/* As many as connections may be parked at once (http's default cap): a
 * re-run comes a loop turn after its answer, and finds it. */
#define TOKEN_ANSWERS 1024
#define TOKEN_ANSWER_KEEP_MS 2000

static bool
token_answer_take(struct fleet *f, const char *token, struct store_token *t,
                  int *rc)
{
    int64_t now = now_mono_ms();
    for (size_t k = 1; f->token_answers && k <= TOKEN_ANSWERS; k++) {
        struct token_answer *a =
            &f->token_answers[(f->token_answer_next + TOKEN_ANSWERS - k) %
                              TOKEN_ANSWERS];
        if (!a->at_ms || now - a->at_ms > TOKEN_ANSWER_KEEP_MS ||
            strcmp(a->token, token) != 0)
            continue;
        a->at_ms = 0;
        *rc = a->rc;
        *t = a->t;
        return true;
    }
    return false;
}

struct srv *
fleet_srv_of_token(struct fleet *f, const char *token, struct store_token *t)
{
    memset(t, 0, sizeof(*t));
    if (!token)
        return NULL;
    struct srv *s = srv_of_live_token(f, token);
    if (s) {
        strlcpy_s(t->server, s->cfg->id, sizeof(t->server));
        strlcpy_s(t->addr, s->tok.addr, sizeof(t->addr));
        t->overlay_ms = s->tok.overlay_ms;
        return s;
    }
    /* Another facility's (the caller says "not here"), or no token at
     * all.  Of a server run here, the store may still have one this node
     * revoked: not live.  The store's answer was looked up while the
     * request waited (fleet_boot_settle); else asked now. */
    int rc;
    if (strlen(token) >= FLEET_TOKEN_SIZE) /* longer than any minted */
        return NULL;
    if (!token_answer_take(f, token, t, &rc))
        rc = store_waiting_ms(f->st) > 0 ? -EAGAIN
                                         : store_token_get(f->st, token, t);
    if (rc < 0)
        return NULL;
    s = fleet_srv_find(f, t->server);
    return s && !s->runs ? s : NULL;
}

/* A boot request waiting for the store's answer on a token not live
 * here. */
struct token_lookup {
    struct fleet *f;
    char token[FLEET_TOKEN_SIZE];
    void (*cb)(void *arg, int rc);
    void *arg;
    bool returned, answered;
};

static void
token_looked_up(void *arg, int rc, const struct store_token *t)
{
    struct token_lookup *lk = arg;
    struct fleet *f = lk->f;
    /* -ECANCELED: the store closed after the fleet, which is gone. */
    bool gone = rc == -ECANCELED || f->stopping;
    if (!gone) {
        if (!f->token_answers)
            f->token_answers =
                xcalloc(TOKEN_ANSWERS, sizeof(*f->token_answers));
        struct token_answer *a = &f->token_answers[f->token_answer_next];
        f->token_answer_next = (f->token_answer_next + 1) % TOKEN_ANSWERS;
        memset(a, 0, sizeof(*a));
        strlcpy_s(a->token, lk->token, sizeof(a->token));
        a->rc = rc;
        if (t)
            a->t = *t;
        a->at_ms = now_mono_ms();
    }
    lk->answered = true;
    if (!lk->returned)
        return; /* answered inline: fleet_boot_settle frees lk */
    lk->cb(lk->arg, gone ? -ECANCELED : 0);
    free(lk);
}

/* fleet_boot_settle of a token not live here: 1 when the answer can be
 * given now (the store answered at once, or is slow: then "unknown", as
 * fleet_srv_of_token without a lookup), else 0 and cb runs once the
 * store answered. */
static int
token_settle(struct fleet *f, const char *token, void (*cb)(void *, int),
             void *arg)
{
    if (strlen(token) >= FLEET_TOKEN_SIZE || store_waiting_ms(f->st) > 0)
        return 1;
    struct token_lookup *lk = xcalloc(1, sizeof(*lk));
    lk->f = f;
    lk->cb = cb;
    lk->arg = arg;
    strlcpy_s(lk->token, token, sizeof(lk->token));
    store_token_get_async(f->st, token, token_looked_up, lk);
    if (lk->answered) {
        free(lk);
        return 1;
    }
    lk->returned = true;
    return 0;
}

/* The boot path's answers depend on the server's state and token: while
 * a step of it waits for the store (or inputs are held behind one), a
 * boot request waits too, in order with them, so it is answered from the
 * state the store has (a fast client's overlay fetch would otherwise meet
 * the state before its kernel fetch's step). */
struct settle {
    struct fleet *f;
    void (*cb)(void *arg, int rc);
    void *arg;
};

static void hold(struct srv *s, void (*run)(struct srv *, void *),
                 void (*cancel)(void *), void *arg);

static void
settle_run(struct srv *s, void *arg)
{
    (void)s;
    struct settle *w = arg;
    w->cb(w->arg, 0);
    free(w);
}

/* The server stopped: ask again, unless the fleet itself is going. */
static void
settle_cancel(void *arg)
{
    struct settle *w = arg;
    w->cb(w->arg, w->f->stopping ? -ECANCELED : 0);
    free(w);
}

int
fleet_boot_settle(struct fleet *f, const char *token, const char *mac,
                  void (*cb)(void *arg, int rc), void *arg)
{
    struct srv *s = NULL;
    if (token) {
        s = srv_of_live_token(f, token);
        if (!s)
            return token_settle(f, token, cb, arg);
    } else if (mac) {
        const struct config_server *cs = config_find_server_by_mac(f->cfg, mac);
        s = cs ? fleet_srv_of(f, cs) : NULL;
    }
    if (!s || !s->runs || (!s->step && !s->held))
        return 1;
    struct settle *w = xcalloc(1, sizeof(*w));
    w->f = f;
    w->cb = cb;
    w->arg = arg;
    hold(s, settle_run, settle_cancel, w);
    return 0;
}

/* A token write on its way: which server, and which token. */
struct token_write {
    struct fleet *f;
    char id[ID_MAX + 1];
    char token[FLEET_TOKEN_SIZE];
    bool returned; /* fleet_srv_new_token returned before the answer */
    int64_t rc;
    void (*done)(struct srv *s); /* the revoke's, when stored */
};

static struct token_write *
token_write_new(struct srv *s)
{
    struct token_write *w = xcalloc(1, sizeof(*w));
    w->f = s->f;
    strlcpy_s(w->id, s->cfg->id, sizeof(w->id));
    strlcpy_s(w->token, s->tok.token, sizeof(w->token));
    return w;
}

/* The server the write was for, if it still runs here with that token. */
static struct srv *
token_write_srv(struct token_write *w)
{
    struct srv *s = fleet_srv_find(w->f, w->id);
    return s && s->runs && strcmp(s->tok.token, w->token) == 0 ? s : NULL;
}

static void
token_added(void *arg, int64_t rc)
{
    struct token_write *w = arg;
    if (rc == -ECANCELED) {
        free(w);
        return;
    }
    struct srv *s = rc < 0 ? token_write_srv(w) : NULL;
    if (rc < 0 && s) {
        token_set_live(s, false);
        log_warnx("%s: cannot store a new boot token", w->id);
    }
    if (!w->returned) {
        w->rc = rc; /* told before the return: the caller acts on it */
        return;
    }
    /* Told later: the step it was for fails (no token, no rescue). */
    if (rc < 0 && s) {
        struct fsm_input in = {.event = FSM_EV_STEP_FAILED,
                               .detail = "cannot store a boot token"};
        apply(s, &in, "rescued");
    }
    free(w);
}

int
fleet_srv_new_token(struct srv *s)
{
    char token[FLEET_TOKEN_SIZE];
    int r = random_hex(token, FLEET_TOKEN_BYTES);
    if (r < 0) {
        log_warnx("%s: getrandom: %s", s->cfg->id, strerror(-r));
        return r;
    }
    token_set_live(s, false); /* out of the index under its old text */
    strlcpy_s(s->tok.token, token, sizeof(s->tok.token));
    token_set_live(s, true);
    s->tok.addr[0] = '\0';
    s->tok.overlay_ms = 0;
    struct token_write *w = token_write_new(s);
    w->rc = 1; /* not told yet */
    store_token_add_async(s->f->st, token, s->cfg->id, now_wall_ms(),
                          token_added, w);
    if (w->rc == 1) {
        w->returned = true;
        return 0;
    }
    r = (int)w->rc;
    free(w);
    return r < 0 ? r : 0;
}

static void
token_marked(void *arg, int64_t rc)
{
    struct token_write *w = arg;
    if (rc < 0 && rc != -ECANCELED)
        log_warnx("%s: cannot store what its boot did with its token: %s",
                  w->id, store_last_error(w->f->st));
    free(w);
}

void
fleet_srv_token_mark(struct srv *s, const char *addr, int64_t overlay_ms)
{
    if (!s->tok.live)
        return;
    if (addr && !s->tok.addr[0]) {
        strlcpy_s(s->tok.addr, addr, sizeof(s->tok.addr));
        strlcpy_s(s->tok.last_addr, addr, sizeof(s->tok.last_addr));
    }
    if (overlay_ms > 0 && !s->tok.overlay_ms)
        s->tok.overlay_ms = overlay_ms;
    store_token_mark_async(s->f->st, s->tok.token, addr, overlay_ms,
                           token_marked, token_write_new(s));
}

static void
token_revoked(void *arg, int64_t rc)
{
    struct token_write *w = arg;
    if (rc == -ECANCELED) {
        free(w);
        return;
    }
    struct srv *s = fleet_srv_find(w->f, w->id);
    if (rc < 0)
        log_warnx("%s: cannot store that its boot token is revoked: %s", w->id,
                  store_last_error(w->f->st));
    else if (w->done && s && s->runs)
        w->done(s);
    free(w);
}

/* Revoke its live token (none: nothing to store); done(s) once stored. */
static void
token_revoke(struct srv *s, void (*done)(struct srv *s))
{
    bool was = s->tok.live;
    token_set_live(s, false);
    if (!was && !done)
        return;
    struct token_write *w = token_write_new(s);
    w->done = done;
    store_token_revoke_server_async(s->f->st, s->cfg->id, token_revoked, w);
}

/* A reset that starts a rescue boot gets a token no boot has used: the
 * last one stays with the boot it was bound to. */
static void
fresh_token_for_reset(struct srv *s)
{
    enum fsm_state st = s->row.fsm.state;
    if ((st == FSM_REBOOTING || st == FSM_PXE_BOOTING ||
         st == FSM_RESCUE_BOOTING) &&
        s->tok.live && (s->tok.addr[0] || s->tok.overlay_ms))
        fleet_srv_new_token(s);
}

static void
target_local_stored(struct srv *s)
{
    action_done(s, FSM_ACT_TARGET_LOCAL);
}

static void
run_actions(struct srv *s, unsigned acts)
{
    if (acts & FSM_ACT_CLEAR_RESCUE_INFO) {
        free(s->row.rescue_json);
        s->row.rescue_json = NULL;
        action_done(s, FSM_ACT_CLEAR_RESCUE_INFO);
    }
    if (acts & FSM_ACT_TARGET_LOCAL)
        token_revoke(s, target_local_stored);
    if (acts & FSM_ACT_PREPARE_RESCUE) {
        /* No token, no rescue: this server fails, the daemon goes on. */
        if (fleet_srv_new_token(s) < 0) {
            struct fsm_input in = {.event = FSM_EV_STEP_FAILED,
                                   .detail = "cannot make a boot token"};
            apply(s, &in, "rescued");
            return;
        }
        if (s->cfg->boot == BOOT_VIRTUALMEDIA) {
            char err[512];
            if (fleet_vm_cd_make(s, vm_cd_made, err, sizeof(err)) < 0) {
                char why[600];
                snprintf(why, sizeof(why), "virtual media: %s", err);
                struct fsm_input in = {.event = FSM_EV_STEP_FAILED,
                                       .detail = why};
                apply(s, &in, "rescued");
                return;
            }
        } else {
            power_request(s->power, POWER_NETBOOT_ONCE, NULL, netboot_set, s);
        }
    }
    if (acts & FSM_ACT_BOOT_DISK) {
        if (s->cfg->boot == BOOT_VIRTUALMEDIA)
            power_request(s->power, POWER_MEDIA_EJECT, NULL, media_ejected, s);
        /* Queued before the reset, so the driver sets it first. */
        s->disk_boot = false;
        power_request(s->power, POWER_BOOT_DISK_ONCE, NULL, disk_boot_set, s);
    }
    if (acts & FSM_ACT_POWER_OFF)
        power_call(s, POWER_OFF, FSM_ACT_POWER_OFF);
    if (acts & FSM_ACT_POWER_ON)
        power_call(s, POWER_ON, FSM_ACT_POWER_ON);
    if (acts & FSM_ACT_POWER_RESET) {
        fresh_token_for_reset(s);
        power_call(s, POWER_RESET, FSM_ACT_POWER_RESET);
    }
}

/* Tokens live while a rescue boot needs them: a failure or the way home
 * revokes the server's. */
static bool
holds_token(enum fsm_state st)
{
    return st == FSM_RESCUE_REQUESTED || st == FSM_REBOOTING ||
           st == FSM_PXE_BOOTING || st == FSM_RESCUE_BOOTING ||
           st == FSM_RESCUE;
}

/* The store refused what (a change to a state, a retry): last_error says
 * why, and the log too, once per interval while it goes on. */
static void
store_refused(struct srv *s, const char *what, enum fsm_state state)
{
    snprintf_utf8(s->store_error, sizeof(s->store_error),
                  "cannot store %s %s: %s", what, fsm_state_name(state),
                  store_last_error(s->f->st));
    int64_t now = now_mono_ms();
    if (s->store_logged_ms &&
        now - s->store_logged_ms < STORE_LOG_INTERVAL_MS) {
        s->store_quiet++;
        return;
    }
    if (s->store_quiet)
        log_warnx("%s: %s (%u more times since the last report)", s->cfg->id,
                  s->store_error, s->store_quiet);
    else
        log_warnx("%s: %s", s->cfg->id, s->store_error);
    s->store_logged_ms = now;
    s->store_quiet = 0;
}

/* The one place a server's state changes: step the machine, store the
 * result, and once the store has it, log it and act.  A network store
 * answers later, from the loop (store.h, asynchronous writes): the step
 * waits in s->step, and the server's inputs that come meanwhile are held
 * and applied, in order, to the state the store answered for.  Refused by
 * the store, nothing changed and nothing ran.  cb (may be NULL) hears the
 * verdict once: 0, -EIO (not stored), -ECANCELED (the server stopped
 * first: s may be gone); it may hear it before apply_then returns. */
struct step {
    struct srv *s; /* NULL: the server stopped before the answer */
    struct fsm_server before;
    unsigned pending_before, sent_before;
    struct fsm_output out;
    char actor[64];
    apply_cb *cb;
    void *arg;
};

/* What came while a step waited for the store: an input, or an action
 * (its keys are set when it runs), run in order once the step is
 * answered; cancel when the server stops first. */
struct held {
    struct held *next;
    void (*run)(struct srv *s, void *arg);
    void (*cancel)(void *arg);
    void *arg;
};

static void
hold(struct srv *s, void (*run)(struct srv *, void *), void (*cancel)(void *),
     void *arg)
{
    struct held *h = xcalloc(1, sizeof(*h));
    h->run = run;
    h->cancel = cancel;
    h->arg = arg;
    if (!s->held_tail)
        s->held_tail = &s->held;
    *s->held_tail = h;
    s->held_tail = &h->next;
}

struct held_input {
    struct fsm_input in;
    char detail[256];
    char actor[64];
    apply_cb *cb;
    void *arg;
};

static void
held_input_run(struct srv *s, void *arg)
{
    struct held_input *hi = arg;
    apply_then(s, &hi->in, hi->actor, hi->cb, hi->arg);
    free(hi);
}

static void
held_input_cancel(void *arg)
{
    struct held_input *hi = arg;
    if (hi->cb)
        hi->cb(hi->arg, -ECANCELED, "the server stopped");
    free(hi);
}

static void
hold_input(struct srv *s, const struct fsm_input *in, const char *actor,
           apply_cb *cb, void *arg)
{
    struct held_input *hi = xcalloc(1, sizeof(*hi));
    hi->in = *in;
    if (in->detail) {
        strlcpy_s(hi->detail, in->detail, sizeof(hi->detail));
        hi->in.detail = hi->detail;
    }
    strlcpy_s(hi->actor, actor ? actor : "rescued", sizeof(hi->actor));
    hi->cb = cb;
    hi->arg = arg;
    hold(s, held_input_run, held_input_cancel, hi);
}

/* The step is answered: what was held meanwhile, in order, until one
 * waits for the store in its turn. */
static void
release_held(struct srv *s)
{
    while (s->held && !s->step) {
        struct held *h = s->held;
        s->held = h->next;
        if (!s->held)
            s->held_tail = &s->held;
        h->run(s, h->arg);
        free(h);
    }
}

/* The server stops (dropped, rebuilt, another node's now): a step still
 * waiting is let go, and what was held hears it cancelled. */
static void
steps_cancel(struct srv *s)
{
    if (s->step)
        s->step->s = NULL;
    s->step = NULL;
    while (s->held) {
        struct held *h = s->held;
        s->held = h->next;
        h->cancel(h->arg);
        free(h);
    }
    s->held_tail = &s->held;
}

const struct fsm_server *
fleet_srv_stored_fsm(const struct srv *s)
{
    return s->step ? &s->step->before : &s->row.fsm;
}

/* Save the row, unless a step waits for the store: then after it. */
void
fleet_srv_save(struct srv *s)
{
    if (s->step) {
        s->dirty = true;
        return;
    }
    s->dirty = false;
    store_save_server_async(s->f->st, s->cfg->id, &s->row, NULL, NULL);
}

static void
step_stored(void *arg, int64_t rc)
{
    struct step *t = arg;
    struct srv *s = t->s;
    const struct fsm_output *out = &t->out;
    int verdict = 0;
    if (!s) {
        verdict = -ECANCELED;
        goto out_tell;
    }
    struct fleet *f = s->f;
    s->step = NULL;
    if (rc < 0 && rc != -ECANCELED) {
        /* Not stored means not done: the old state stands. */
        enum fsm_state at = s->row.fsm.state;
        s->row.fsm = t->before;
        s->row.pending_actions = t->pending_before;
        s->row.sent_actions = t->sent_before;
        store_refused(s, out->changed ? "the change to" : "the retry of", at);
        verdict = -EIO;
    } else if (rc == -ECANCELED) {
        verdict = -ECANCELED;
    } else if (out->changed) {
        s->store_error[0] = '\0';
        s->store_logged_ms = 0;
        s->store_quiet = 0;
        enum fsm_state from = t->before.state, to = s->row.fsm.state;
        log_info("%s: %s -> %s (%s)", s->cfg->id, fsm_state_name(from),
                 fsm_state_name(to), out->reason);
        f->entered[to]++;
        if (to == FSM_RESCUE_FAILED || to == FSM_EXIT_FAILED)
            f->failed[from]++;
        publish(f, rc, s->cfg->id, "transition", fsm_state_name(from),
                fsm_state_name(to), "rescued", out->reason);
        tell_writable(f, s->cfg->id);
        arm_grace(s);
        if (holds_token(from) && !holds_token(to))
            token_revoke(s, NULL);
    } else if (s->row.fsm.retries != t->before.retries) {
        f->retried[s->row.fsm.state]++;
        log_warnx("%s: %s", s->cfg->id, out->reason);
        fleet_srv_note(s, "retry", "rescued", out->reason);
    } else {
        fleet_srv_note(s, "action", t->actor, out->reason);
    }
    if (verdict == 0 && !f->stopping) {
        if (s->row.fsm.deadline_ms != t->before.deadline_ms || out->changed)
            arm_deadline(s);
        run_actions(s, out->actions);
    }
    if (s->dirty && !s->step)
        fleet_srv_save(s);
out_tell:
    if (t->cb)
        t->cb(t->arg, verdict, s ? s->store_error : "the server stopped");
    if (s && !s->step)
        release_held(s);
    free(t);
}

static void
apply_then(struct srv *s, const struct fsm_input *given, const char *actor,
           apply_cb *cb, void *arg)
{
    struct fleet *f = s->f;
    struct fsm_input in = *given;
    in.no_console = !s->cfg->console;
    /* Only the facility's active node moves a server. */
    if (!s->runs || f->stopping) {
        if (cb)
            cb(arg, f->stopping ? -ECANCELED : 0, "not run here");
        return;
    }
    if (s->step) {
        hold_input(s, given, actor, cb, arg);
        return;
    }
    struct step *t = xcalloc(1, sizeof(*t));
    t->s = s;
    t->before = s->row.fsm;
    t->pending_before = s->row.pending_actions;
    t->sent_before = s->row.sent_actions;
    t->cb = cb;
    t->arg = arg;
    strlcpy_s(t->actor, actor ? actor : "rescued", sizeof(t->actor));
    fsm_step(&f->limits, &s->row.fsm, &in, now_wall_ms(), &t->out);
    const struct fsm_output *out = &t->out;
    if (out->status < 0 || (!out->changed && !out->actions)) {
        if (out->status == 0 && s->row.fsm.deadline_ms != t->before.deadline_ms)
            arm_deadline(s);
        if (cb)
            cb(arg, out->status < 0 ? -EBUSY : 0, out->reason);
        free(t);
        return;
    }
    /* Stored with the step, cleared as each completes: a restart re-runs
     * exactly what was not done.  A new step drops the old step's; an
     * action asked again is not sent yet. */
    s->row.pending_actions =
        out->changed ? out->actions : t->pending_before | out->actions;
    s->row.sent_actions = out->changed ? 0 : t->sent_before & ~out->actions;
    s->nboot_noted = 0; /* a new step: its fetches are news again */
    s->step = t;
    if (out->changed)
        store_transition_async(f->st, s->cfg->id, &s->row, t->before.state,
                               out->reason, step_stored, t);
    else
        /* A retry not stored is not run: its count and deadline would be
         * lost to a restart. */
        store_save_server_async(f->st, s->cfg->id, &s->row, step_stored, t);
}

/* apply_then for whoever needs no verdict. */
static void
apply(struct srv *s, const struct fsm_input *given, const char *actor)
{
    apply_then(s, given, actor, NULL, NULL);
}

void
fleet_srv_feed(struct srv *s, enum fsm_event ev)
{
    struct fsm_input in = {.event = ev};
    apply(s, &in, "rescued");
}

/* Running a step's actions again starts its wait again: a fresh deadline,
 * stored before they run.  Not stored, the old one stands. */
static void
renew_deadline(struct srv *s, unsigned pending)
{
    struct fsm_server *fs = &s->row.fsm;
    int64_t now = now_wall_ms(), old = fs->deadline_ms;
    if (!fsm_resume(&s->f->limits, fs, pending, now))
        return;
    if (store_save_server(s->f->st, s->cfg->id, &s->row) < 0) {
        fs->deadline_ms = old;
        log_warnx("%s: cannot store its renewed deadline", s->cfg->id);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof(msg),
             "%s: deadline renewed, %lld s from now: %sits unfinished "
             "actions run again",
             fsm_state_name(fs->state),
             (long long)(fs->deadline_ms - now) / 1000,
             old && old <= now ? "the daemon was down past it; " : "");
    log_info("%s: %s", s->cfg->id, msg);
    fleet_srv_note(s, "action", "rescued", msg);
}

/* A reset that was on its way when the daemon stopped may have been
 * carried out (the BMC took it, the answer was lost): not sent again.
 * The step waits for its evidence (the boot path's fetches, the console)
 * until its own deadline, whose retry resets if none came. */
static void
note_unsure(struct srv *s)
{
    const struct fsm_server *fs = &s->row.fsm;
    char msg[300];
    if (fs->deadline_ms)
        snprintf(msg, sizeof(msg),
                 "%s: its reset was sent before rescued stopped and may "
                 "have been carried out: not sent again; waiting for the "
                 "server's boot until the step's deadline (%lld s from now)",
                 fsm_state_name(fs->state),
                 (long long)(fs->deadline_ms > now_wall_ms()
                                 ? (fs->deadline_ms - now_wall_ms()) / 1000
                                 : 0));
    else
        snprintf(msg, sizeof(msg),
                 "%s: its reset was sent before rescued stopped and may "
                 "have been carried out: not sent again",
                 fsm_state_name(fs->state));
    log_info("%s: %s", s->cfg->id, msg);
    fleet_srv_note(s, "action", "rescued", msg);
}

/* Pick up where a stopped daemon left off: re-arm the step's deadline and
 * re-run the actions that were stored with it but not known done, but a
 * reset that may have reached the BMC (note_unsure). */
static void
resume(struct srv *s)
{
    const struct fsm_server *fs = &s->row.fsm;
    unsigned pending = s->row.pending_actions;
    arm_grace(s); /* a restart inside the window still ends it */
    if (fs->deadline_ms == 0 && pending == 0)
        return;
    unsigned unsure = pending & s->row.sent_actions & FSM_ACT_POWER_RESET;
    pending &= ~unsure;
    log_info("%s: resuming in %s%s", s->cfg->id, fsm_state_name(fs->state),
             pending ? ", re-running its unfinished actions" : "");
    renew_deadline(s, pending);
    if (unsure)
        note_unsure(s);
    arm_deadline(s);
    /* Whether the way home's disk boot was set lived in the old daemon's
     * memory (s->disk_boot): a reset still to run asks for it again, so
     * its reset done ends exiting as it would have. */
    if (fs->state == FSM_EXITING && (pending & FSM_ACT_POWER_RESET))
        pending |= FSM_ACT_BOOT_DISK;
    run_actions(s, pending);
}

/* Does pat occur in the console stream, given this chunk?  A match may
 * straddle chunks, so the last plen - 1 bytes are kept in s->tail. */
static bool
pattern_seen(struct srv *s, const char *data, size_t n, const char *pat,
             size_t plen)
{
    char joint[2 * sizeof(s->tail)];
    size_t keep = s->tail_len, head = n < plen - 1 ? n : plen - 1;
    memcpy(joint, s->tail, keep);
    memcpy(joint + keep, data, head);
    bool seen =
        memmem(joint, keep + head, pat, plen) || memmem(data, n, pat, plen);
    if (n >= plen - 1) {
        memcpy(s->tail, data + n - (plen - 1), plen - 1);
        s->tail_len = plen - 1;
    } else {
        size_t total = keep + head,
               from = total > plen - 1 ? total - (plen - 1) : 0;
        memmove(s->tail, joint + from, total - from);
        s->tail_len = total - from;
    }
    return seen;
}

/* The installed OS is up when its console shows local_boot_pattern after
 * the server fetched its local-boot script. */
static void
watch_console(struct console_viewer *v, void *arg)
{
    struct srv *s = arg;
    const char *pat = s->f->cfg->local_boot_pattern, *data;
    size_t plen = strlen(pat), n;
    bool seen = false;
    while ((n = console_viewer_peek(v, &data)) > 0) {
        if (s->row.fsm.state == FSM_BOOTING_LOCAL && plen > 0 &&
            plen <= sizeof(s->tail))
            seen = seen || pattern_seen(s, data, n, pat, plen);
        console_viewer_consume(v, n);
    }
    if (seen) {
        s->tail_len = 0;
        struct fsm_input in = {.event = FSM_EV_LOCAL_OS_SEEN};
        apply(s, &in, "rescued");
    }
}

static void
watcher_closed(struct console_viewer *v, void *arg)
{
    (void)v;
    struct srv *s = arg;
    s->watcher = NULL;
}

static const struct console_viewer_cbs watcher_cbs = {
    .output = watch_console,
    .closed = watcher_closed,
};

static int
console_open(struct srv *s, char *err, size_t errlen)
{
    const struct config *c = s->f->cfg;
    char *dir = xasprintf("%s/console", c->data_dir);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        free(dir);
        return -errno;
    }
    s->console = console_new(s->f->loop, s->cfg->id, s->cfg->console, dir,
                             (size_t)c->scrollback, err, errlen);
    free(dir);
    if (!s->console)
        return -EINVAL;
    s->watcher = console_attach(s->console, 0, &watcher_cbs, s);
    return 0;
}

/* A reload (or a config changed while the daemon was down) moved s from
 * project from to project to: say so in its history, and from then on its
 * new project sees only what follows.  The cut-off is stored with the
 * row, so it holds after a restart. */
static void
moved(struct srv *s, const char *from, const char *to)
{
    char msg[200];
    snprintf_utf8(msg, sizeof(msg), "moved from project %s to project %s", from,
                  to);
    log_info("%s: %s", s->cfg->id, msg);
    /* Its console's past is the old project's: out of replay and tail. */
    if (s->console) {
        char tag[64];
        snprintf(tag, sizeof(tag), "before-move-%lld",
                 (long long)now_wall_ms());
        console_forget(s->console, tag);
    }
    int64_t id =
        store_append_event(s->f->st, s->cfg->id, "audit", "rescued", msg);
    if (id <= 0) {
        /* Not stored: hide all of the history rather than show the old
         * project's; the row keeps the old project, so a restart records
         * the move again. */
        s->move_unrecorded = true;
        return;
    }
    s->move_unrecorded = false;
    free(s->row.project);
    s->row.project = xstrdup(to);
    s->row.project_since_id = id;
    if (store_save_server(s->f->st, s->cfg->id, &s->row) < 0)
        log_warnx("%s: cannot store its move's cut-off", s->cfg->id);
    publish(s->f, id, s->cfg->id, "audit", NULL, NULL, "rescued", msg);
}

static struct srv *
srv_new(struct fleet *f, const struct config_server *cs, char *err,
        size_t errlen)
{
    struct srv *s = xcalloc(1, sizeof(*s));
    s->f = f;
    s->cfg = cs;
    int r = store_load_server(f->st, cs->id, &s->row);
    if (r == -ENOENT) {
        fsm_server_init(&s->row.fsm, now_wall_ms());
        s->row.project = xstrdup(cs->project);
        store_save_server(f->st, cs->id, &s->row);
    } else if (r < 0) {
        snprintf(err, errlen, "%s: cannot load its stored state", cs->id);
        free(s);
        return NULL;
    } else if (!s->row.project) {
        /* Stored before projects were: where the config says it is. */
        s->row.project = xstrdup(cs->project);
        store_save_server(f->st, cs->id, &s->row);
    } else if (strcmp(s->row.project, cs->project) != 0) {
        /* Moved while the daemon was down, or by a reload that also gave
         * it a new driver. */
        char *from = xstrdup(s->row.project);
        moved(s, from, cs->project);
        free(from);
    }
    return s;
}

/* Open its driver and console: this node runs it from now on. */
static int
srv_start(struct srv *s, char *err, size_t errlen)
{
    const struct config_server *cs = s->cfg;
    s->power = power_new(s->f->loop, cs->power, err, errlen);
    if (!s->power)
        return -EINVAL;
    power_set_name(s->power, cs->id);
    power_set_firmware(s->power, cs->firmware == FW_UEFI);
    if ((cs->power_credentials &&
         power_set_credentials(s->power, cs->power_credentials, err, errlen) <
             0) ||
        (cs->console && console_open(s, err, errlen) < 0)) {
        power_free(s->power);
        s->power = NULL;
        return -EINVAL;
    }
    token_load(s);
    s->runs = true;
    token_index(s);
    return 0;
}

/* Close its driver, console and timers: another node runs it now. */
static void
srv_stop(struct srv *s)
{
    /* power_free delivers the answers not yet heard: a server being
     * dropped (or rebuilt, reading the store afresh) must not act on them,
     * nor arm timers that would outlive it.  Not heard means not known
     * done: a rebuilt server or a restart runs the action again. */
    s->closing = true;
    steps_cancel(s);
    loop_del_timer(s->f->loop, s->timer);
    loop_del_timer(s->f->loop, s->grace);
    s->timer = s->grace = 0;
    if (s->watcher)
        console_detach(s->watcher);
    s->watcher = NULL;
    console_free(s->console);
    s->console = NULL;
    power_free(s->power);
    s->power = NULL;
    vmiso_cancel(s->vm_job);
    s->vm_job = NULL;
    s->runs = false;
    token_index(s);
    s->closing = false;
}

static void
srv_free(struct srv *s)
{
    if (!s)
        return;
    srv_stop(s);
    free(s->vm_iso);
    server_row_clear(&s->row);
    buf_free(&s->view);
    free(s);
}

/* Does this node's facility run it (whether or not it is active now)? */
static bool
srv_ours(const struct fleet *f, const struct config_server *cs)
{
    return strcmp(cs->facility, f->facility) == 0;
}

/* --- facilities: the lease, the change feed, actions handed on ------------
 * One node of a facility is active: it holds the facility's lease in the
 * store, renewed LEASE_RENEWS times per [rescued] lease, and alone runs the
 * facility's servers, dnsmasq, drivers and consoles.  A standby tries to
 * take the lease as often; it gets it once the lease lapsed (the active
 * node killed: within lease + lease / LEASE_RENEWS of its last renewal)
 * and starts them, each server resuming from its stored state as after a
 * restart.  Servers of other facilities are never started here.
 *
 * Every node follows the change feed (what any node stored, in id order):
 * events of servers it does not run reload their row from the store and go
 * to its subscribers, so its API and SSE show every facility.  The store
 * calls feed_notified when it can tell (PostgreSQL's NOTIFY); sqlite
 * cannot, and the feed is polled every FEED_POLL_MS (a max(id) read).
 *
 * An action for a server this node does not run is queued in the store
 * (store_action_add), and the facility's active node takes it at its
 * next look at the feed (the queueing stores an audit event, which moves
 * the feed) and runs it as if asked itself.  Exactly once: the take is
 * marked in the store under the lease; the change the action makes is
 * stored with its id (the row's action_id), and a refusal stores the id
 * too; then it is marked done.  A node killed before the change was
 * stored leaves it taken, not done: the next holder takes it again and
 * runs it; killed after, the next holder finds the id in the row and only
 * marks it done.  From the change on, the rule of every action holds:
 * the transition is stored before its actions run. */
#define LEASE_RENEWS 5
#define FEED_POLL_MS 250
#define FEED_NOTIFIED_POLL_MS 5000 /* in case a notification was lost */
#define FEED_BATCH 1000            /* events per look, the rest next time */
#define TAKE_BATCH 64              /* actions taken per look */

static int64_t
lease_every_ms(const struct fleet *f)
{
    int64_t ms = f->cfg->lease * 1000LL / LEASE_RENEWS;
    return ms > 0 ? ms : 1;
}

#define MIRROR_BATCH 1000 /* rows per read */

static void mirror_read(struct fleet *f);

/* A row the store answered for server id, kept if another node still runs
 * it (looked up by id: a reload may free it; one run here since has its
 * own, newer row). */
static void
mirror_row(struct fleet *f, const char *id, const struct server_row *row)
{
    struct srv *s = fleet_srv_find(f, id);
    if (s && !s->runs) {
        server_row_clear(&s->row);
        server_row_copy(&s->row, row);
    }
}

static void
row_read(void *arg, int rc, const char *id, const struct server_row *row)
{
    struct fleet *f = arg;
    if (rc == -ECANCELED || f->stopping)
        return; /* the store closed after the fleet: f is gone */
    if (id) {
        mirror_row(f, id, row);
        return;
    }
    /* Unreadable: the rows stand as they were until their next event. */
    f->rows_reading = false;
    mirror_read(f);
}

/* Read again, without waiting and in one read, the rows of the servers
 * other nodes run that the feed told an event of: what GET answers of
 * them, kept so a look at the fleet reads no store. */
static void
mirror_read(struct fleet *f)
{
    if (f->rows_reading || f->stopping)
        return;
    const char *ids[MIRROR_BATCH];
    size_t n = 0;
    for (size_t i = 0; i < f->nsrvs && n < MIRROR_BATCH; i++) {
        struct srv *s = f->srvs[i];
        if (!s->row_stale)
            continue;
        s->row_stale = false; /* an event told meanwhile reads it again */
        if (!s->runs)
            ids[n++] = s->cfg->id;
    }
    if (!n)
        return;
    f->rows_reading = true;
    store_load_servers_async(f->st, ids, n, row_read, f);
}

/* What the feed says of a server another node runs: the state of a
 * transition at once (the counts and the streams agree with it), and the
 * rest of the row, which its event may have changed, read again. */
static void
mirror_event(struct srv *s, const struct store_event *ev)
{
    int st = ev->to_state && strcmp(ev->kind, "transition") == 0
                 ? fsm_state_parse(ev->to_state)
                 : -1;
    if (st >= 0) {
        s->row.fsm.state = (enum fsm_state)st;
        s->row.fsm.since_ms = ev->at_ms;
    }
    s->row_stale = true;
}

static void take_actions(struct fleet *f);

static int64_t
feed_again(struct loop *l, void *arg)
{
    (void)l;
    struct fleet *f = arg;
    f->feed_again_timer = 0;
    feed_follow(f);
    return -1;
}

/* A page of the feed: what it has not told yet, told in id order (an
 * event told already by publish is skipped); then the actions handed on,
 * and the next page at once (from the loop) if this one came full or a
 * look was asked meanwhile.  Unreadable: the next look tries again. */
static void
feed_page(void *arg, int rc, const struct store_event *evs, size_t n)
{
    struct fleet *f = arg;
    if (rc == -ECANCELED)
        return; /* the store closed after the fleet: f is gone */
    f->feed_reading = false;
    if (f->stopping)
        return;
    for (size_t i = 0; i < n; i++) {
        const struct store_event *ev = &evs[i];
        if (ev->id <= f->feed_cursor)
            continue;
        f->feed_cursor = ev->id;
        struct srv *s = fleet_srv_find(f, ev->server);
        if (s && !s->runs)
            mirror_event(s, ev);
        tell_subs(f, ev);
    }
    mirror_read(f);
    if (rc < 0)
        return;
    if (f->active)
        take_actions(f);
    if ((n >= FEED_BATCH || f->feed_pending) && !f->feed_again_timer) {
        f->feed_pending = false;
        f->feed_again_timer = loop_add_timer(f->loop, 0, feed_again, f);
    }
}

/* Read the feed past the cursor without waiting: one read at a time, a
 * look asked meanwhile made when it is answered. */
static void
feed_follow(struct fleet *f)
{
    if (f->stopping)
        return;
    if (f->feed_reading) {
        f->feed_pending = true;
        return;
    }
    f->feed_reading = true;
    store_list_events_async(f->st, NULL, f->feed_cursor, FEED_BATCH, feed_page,
                            f);
}

static void
feed_notified(void *arg)
{
    feed_follow(arg);
}

/* sqlite's feed, polled; a notifying store's is followed on its
 * notifications and on each lease answer (lease_answered), and this
 * timer reads on only while a batch came full. */
static int64_t
feed_cb(struct loop *l, void *arg)
{
    (void)l;
    struct fleet *f = arg;
    feed_follow(f);
    return f->feed_notifies ? -1 : FEED_POLL_MS;
}

/* A takeover reads without waiting (the node that stood by goes on
 * answering its API and streams): the rows of the facility's servers,
 * then their tokens, one read each for them all; then they start.  A read
 * refused: the node stays a standby, and takes over at its next renewal
 * (the lease is still its own). */
static int start_ours(struct fleet *f, bool at_start, char *err, size_t errlen);
static void takeover_rows(void *arg, int rc, const char *id,
                          const struct server_row *row);
static void takeover_tokens(void *arg, int rc,
                            const struct store_server_tokens *t);

/* The ids of the facility's servers not running here yet (the caller
 * frees the array, not the ids). */
static size_t
takeover_ids(struct fleet *f, const char ***ids)
{
    size_t n = 0;
    *ids = xcalloc(f->nsrvs ? f->nsrvs : 1, sizeof(**ids));
    for (size_t i = 0; i < f->nsrvs; i++)
        if (srv_ours(f, f->srvs[i]->cfg) && !f->srvs[i]->runs)
            (*ids)[n++] = f->srvs[i]->cfg->id;
    return n;
}

static void
takeover_read(struct fleet *f)
{
    const char **ids;
    size_t n = takeover_ids(f, &ids);
    f->taking_over = true;
    store_load_servers_async(f->st, ids, n, takeover_rows, f);
    free(ids);
}

/* Still taking over (not stood down or stopping meanwhile)?  Else the
 * reads' answers go unheard. */
static bool
takeover_goes_on(struct fleet *f, int rc, const char *what)
{
    if (rc == -ECANCELED || f->stopping || !f->active || !f->taking_over)
        return false;
    if (rc < 0) {
        log_warnx("facility %s: node %s cannot read its servers' %s (%s): "
                  "it stands by and takes over at its next renewal",
                  f->facility, f->node, what, store_last_error(f->st));
        f->taking_over = false;
        f->active = false;
        return false;
    }
    return true;
}

static void
takeover_rows(void *arg, int rc, const char *id, const struct server_row *row)
{
    struct fleet *f = arg;
    if (id) {
        if (rc != -ECANCELED && !f->stopping)
            mirror_row(f, id, row);
        return;
    }
    if (!takeover_goes_on(f, rc, "rows"))
        return;
    const char **ids;
    size_t n = takeover_ids(f, &ids);
    store_server_tokens_async(f->st, ids, n, takeover_tokens, f);
    free(ids);
}

static void
takeover_tokens(void *arg, int rc, const struct store_server_tokens *t)
{
    struct fleet *f = arg;
    if (t) {
        struct srv *s = rc == -ECANCELED || f->stopping
                            ? NULL
                            : fleet_srv_find(f, t->server);
        if (!s || s->runs)
            return;
        memset(&s->tok, 0, sizeof(s->tok)); /* not running: not indexed */
        s->tok.read = true;
        s->tok.live = t->token != NULL;
        strlcpy_s(s->tok.token, t->token ? t->token : "", sizeof(s->tok.token));
        strlcpy_s(s->tok.addr, t->addr, sizeof(s->tok.addr));
        s->tok.overlay_ms = t->overlay_ms;
        strlcpy_s(s->tok.last_addr, t->last_addr, sizeof(s->tok.last_addr));
        return;
    }
    if (!takeover_goes_on(f, rc, "tokens"))
        return;
    f->taking_over = false;
    char err[256];
    start_ours(f, false, err, sizeof(err));
}

/* The lease is ours: start the facility's servers where the store left
 * them, then dnsmasq.  A server that cannot start is logged and left (at
 * start, the daemon's failure: err). */
static int
become_active(struct fleet *f, bool at_start, char *err, size_t errlen)
{
    f->active = true;
    f->lease_changes++;
    log_info("facility %s: node %s is active (lease until %lld%s%s)",
             f->facility, f->node, (long long)f->lease_expires_ms,
             f->lease_holder[0] && strcmp(f->lease_holder, f->node) != 0
                 ? ", taken over from "
                 : "",
             f->lease_holder[0] && strcmp(f->lease_holder, f->node) != 0
                 ? f->lease_holder
                 : "");
    strlcpy_s(f->lease_holder, f->node, sizeof(f->lease_holder));
    if (!at_start) {
        takeover_read(f);
        return 0;
    }
    return start_ours(f, true, err, errlen);
}

/* Start the facility's servers where the store left them (their rows and
 * tokens read), then dnsmasq, then resume each. */
static int
start_ours(struct fleet *f, bool at_start, char *err, size_t errlen)
{
    for (size_t i = 0; i < f->nsrvs; i++) {
        struct srv *s = f->srvs[i];
        if (!srv_ours(f, s->cfg) || s->runs)
            continue;
        if (srv_start(s, err, errlen) < 0) {
            if (at_start)
                return -EINVAL;
            log_warnx("%s: %s", s->cfg->id, err);
        }
    }
    if (f->cfg->pxe_mode != PXE_OFF && !f->dnsmasq) {
        f->dnsmasq = dnsmasq_new(f->loop, f->cfg, err, errlen);
        if (!f->dnsmasq) {
            if (at_start)
                return -EINVAL;
            log_warnx("facility %s: dnsmasq: %s", f->facility, err);
        }
    }
    for (size_t i = 0; i < f->nsrvs; i++)
        if (f->srvs[i]->runs)
            resume(f->srvs[i]);
    if (!at_start)
        take_actions(f);
    return 0;
}

/* The lease is another's (or lapsed while the store refused us): stop
 * acting at once. */
static void
stand_down(struct fleet *f, const char *why)
{
    f->active = false;
    f->taking_over = false;
    f->lease_changes++;
    log_warnx("facility %s: node %s stands by: %s", f->facility, f->node, why);
    dnsmasq_free(f->dnsmasq);
    f->dnsmasq = NULL;
    for (size_t i = 0; i < f->nsrvs; i++)
        if (f->srvs[i]->runs)
            srv_stop(f->srvs[i]);
}

/* The lease as the store answered: r is store_lease_take's. */
static int
lease_verdict(struct fleet *f, int r, struct store_lease l, bool at_start,
              char *err, size_t errlen)
{
    if (r == -ENOTSUP) {
        /* A store without leases yet: this node runs its facility alone,
         * as a single rescued always did. */
        strlcpy_s(l.holder, f->node, sizeof(l.holder));
        l.expires_ms = INT64_MAX;
        r = 1;
    }
    if (r == 1) {
        f->lease_expires_ms = l.expires_ms;
        if (!f->active)
            return become_active(f, at_start, err, errlen);
        return 0;
    }
    if (r == 0) {
        if (f->active) {
            char why[128];
            snprintf(why, sizeof(why), "node %s holds the lease", l.holder);
            stand_down(f, why);
        } else if (strcmp(f->lease_holder, l.holder) != 0) {
            log_info("facility %s: node %s stands by; node %s is active",
                     f->facility, f->node, l.holder);
        }
        strlcpy_s(f->lease_holder, l.holder, sizeof(f->lease_holder));
        return 0;
    }
    /* The store refused (locked, unreachable): an active node stays so.
     * While the store refuses, no transition can be stored, so nothing
     * moves here; the consoles keep working.  Should another node take
     * the lapsed lease meanwhile, the first renewal that reaches the store
     * hears it and stands down. */
    return 0;
}

/* At start: the blocking take (nothing else runs yet). */
static int
lease_check(struct fleet *f, bool at_start, char *err, size_t errlen)
{
    struct store_lease l = {0};
    int r = store_lease_take(f->st, f->facility, f->node,
                             f->cfg->lease * 1000LL, STORE_NOW, &l);
    return lease_verdict(f, r, l, at_start, err, errlen);
}

/* A renewal answered.  The store answering is also the moment to look at
 * the feed and the actions handed on, whose reads block: a notifying
 * store is not polled on a timer of its own, so a store that hangs costs
 * the loop no blocked read (the renewal fails on its bound instead). */
static void
lease_answered(void *arg, int r, const struct store_lease *l)
{
    struct fleet *f = arg;
    if (r == -ECANCELED)
        return; /* the store closed after the fleet: f is gone */
    f->lease_asking = false;
    if (f->stopping)
        return;
    char err[256];
    lease_verdict(f, r, *l, false, err, sizeof(err));
    if (r >= 0 && f->feed_notifies)
        feed_follow(f);
    else if (r >= 0 && f->active)
        take_actions(f);
}

static int64_t
lease_cb(struct loop *l, void *arg)
{
    (void)l;
    struct fleet *f = arg;
    /* One renewal at a time: a slow store's answer is still to come. */
    if (!f->lease_asking) {
        f->lease_asking = true;
        store_lease_take_async(f->st, f->facility, f->node,
                               f->cfg->lease * 1000LL, STORE_NOW,
                               lease_answered, f);
    }
    return lease_every_ms(f);
}

static bool preflight_rest(struct fleet *f, struct srv *s,
                           const struct fleet_action *a, char *err,
                           size_t errlen);

/* A taken action's verdict, in the server's history when refused. */
struct taken {
    struct fleet *f;
    int64_t id;
    char server[64];
    char origin[64];
    char event[32];
};

/* Applied (its change stored the row's action_id) or refused (the
 * refusal stored as handled, so a later holder does not run it in a
 * state where it would fit): done. */
static void
taken_done(void *arg, int rc, const char *err)
{
    struct taken *t = arg;
    struct srv *s = fleet_srv_find(t->f, t->server);
    if (rc < 0 && s) {
        char msg[600];
        snprintf_utf8(msg, sizeof(msg), "%s asked on node %s refused: %s",
                      t->event, t->origin, err);
        log_warnx("%s: %s", t->server, msg);
        if (s->runs && t->id > s->row.action_id) {
            s->row.action_id = t->id;
            fleet_srv_save(s);
        }
        fleet_srv_note(s, "error", "rescued", msg);
    }
    store_action_done_async(t->f->st, t->id, NULL, NULL);
    free(t);
}

/* Run what was asked elsewhere for the servers we run, each once. */
static void
run_taken(struct fleet *f, const struct store_action *sa)
{
    json_t *o = sa->body ? json_loads(sa->body, 0, NULL) : NULL;
    const char *ev = json_string_value(json_object_get(o, "event"));
    json_t *keys = json_object_get(o, "ssh_keys");
    struct fleet_action a = {
        .event = FSM_NEVENTS,
        .actor = sa->actor,
        .queued_id = sa->id,
        .ttl_s = json_integer_value(json_object_get(o, "ttl_s"))};
    for (int e = 0; ev && e <= FSM_EV_POWER_OFF; e++)
        if (strcmp(fsm_event_name(e), ev) == 0)
            a.event = e;
    if (ev && strcmp(ev, "nmi") == 0) {
        a.nmi = true;
        a.event = 0;
    }
    a.nkeys = json_array_size(keys);
    a.ssh_keys = xcalloc(a.nkeys + 1, sizeof(*a.ssh_keys));
    for (size_t i = 0; i < a.nkeys; i++)
        a.ssh_keys[i] = json_string_value(json_array_get(keys, i));
    struct taken *t = xcalloc(1, sizeof(*t));
    t->f = f;
    t->id = sa->id;
    strlcpy_s(t->server, sa->server, sizeof(t->server));
    strlcpy_s(t->origin, sa->origin, sizeof(t->origin));
    strlcpy_s(t->event, ev ? ev : "?", sizeof(t->event));
    char err[512] = "";
    struct srv *s = fleet_srv_find(f, sa->server);
    int rc;
    if (a.event == FSM_NEVENTS) {
        snprintf(err, sizeof(err), "not an action this node knows");
        rc = -EINVAL;
    } else if (!s || !s->runs) {
        snprintf(err, sizeof(err), "server %s is not run by node %s",
                 sa->server, f->node);
        rc = -ENOENT;
    } else if (s->row.action_id >= sa->id) {
        /* Its change is stored: the node that took it died before it
         * said done.  Not again. */
        log_info("%s: %s asked on node %s was applied before the takeover",
                 sa->server, t->event, sa->origin);
        store_action_done_async(f->st, sa->id, NULL, NULL);
        free(t);
        rc = 0;
    } else {
        log_info("%s: %s asked on node %s, taken by node %s", sa->server,
                 t->event, sa->origin, f->node);
        rc = fleet_action_async(f, sa->server, &a, taken_done, t, err,
                                sizeof(err));
    }
    if (rc < 0)
        taken_done(t, rc, err);
    free(a.ssh_keys);
    json_decref(o);
}

static void
action_taken(void *arg, int rc, const struct store_action *sa)
{
    struct fleet *f = arg;
    if (rc == -ECANCELED)
        return; /* the store closed after the fleet: f is gone */
    f->taking = false;
    if (f->stopping || !f->active)
        return;
    if (rc == 1) {
        run_taken(f, sa);
        /* The next one, up to a batch a look (the rest at the next). */
        if (++f->taken_in_row < TAKE_BATCH) {
            take_actions(f);
            return;
        }
    }
    f->taken_in_row = 0;
    if (f->take_again) {
        f->take_again = false;
        take_actions(f);
    }
}

/* Take the actions handed on to this node's facility, one at a time,
 * without waiting; a look asked meanwhile is made after. */
static void
take_actions(struct fleet *f)
{
    if (!f->active || f->taking_over || f->stopping)
        return; /* taking over: not until its servers run here */
    if (f->taking) {
        f->take_again = true;
        return;
    }
    f->taking = true;
    store_action_take_async(f->st, f->facility, f->node, STORE_NOW,
                            action_taken, f);
}

/* Retention ([rescued] retention_days, retention_events): a bounded
 * batch at a time, so the loop waits a few ms, not the whole backlog;
 * again at once while batches come full, else hourly. */
#define RETENTION_BATCH 2000
#define RETENTION_EVERY_MS 3600000
#define RETENTION_BUSY_RETRY_MS 1000

static int64_t
retention_cb(struct loop *l, void *arg)
{
    (void)l;
    struct fleet *f = arg;
    /* Its deletes would wait behind writes not answered yet: later. */
    if (store_waiting_ms(f->st) > 0)
        return RETENTION_BUSY_RETRY_MS;
    int64_t before =
        f->cfg->retention_days > 0
            ? now_wall_ms() - (int64_t)f->cfg->retention_days * 86400000
            : 0;
    fleet_sessions_expire(f);
    int64_t n =
        store_prune(f->st, before, f->cfg->retention_events, RETENTION_BATCH);
    if (n < 0)
        log_warnx("retention: cannot prune the store: %s", strerror((int)-n));
    else if (n > 0)
        log_info("retention: %lld old events and tokens deleted", (long long)n);
    return n >= RETENTION_BATCH ? 100 : RETENTION_EVERY_MS;
}

struct fleet *
fleet_new(struct loop *l, struct config *cfg, struct store *st, char *err,
          size_t errlen)
{
    struct fleet *f = xcalloc(1, sizeof(*f));
    f->loop = l;
    f->cfg = cfg;
    f->st = st;
    f->next_sub = 1;
    f->sessions = fleet_sessions_load(f); /* the ones stored, still live */
    limits_from_config(&f->limits, cfg);
    f->srvs = xcalloc(cfg->nservers, sizeof(*f->srvs));
    /* One transaction for every row: one fsync, not one per new server. */
    if (store_begin(st) < 0) {
        snprintf(err, errlen, "cannot begin loading the servers' state");
        goto out_free;
    }
    for (size_t i = 0; i < cfg->nservers; i++) {
        f->srvs[i] = srv_new(f, &cfg->servers[i], err, errlen);
        if (!f->srvs[i]) {
            store_rollback(st);
            goto out_free;
        }
        f->nsrvs++;
    }
    if (store_commit(st) < 0) {
        snprintf(err, errlen, "cannot store the servers' state");
        goto out_free;
    }
    f->node = xstrdup(cfg->node);
    f->facility = xstrdup(cfg->facility);
    int64_t head = store_feed_head(st);
    f->feed_cursor = head > 0 ? head : 0;
    /* Active at once when the lease is free or ours (a restart): a
     * failure to start then is the daemon's, as it always was. */
    if (lease_check(f, true, err, errlen) < 0)
        goto out_free;
    f->lease_timer = loop_add_timer(l, lease_every_ms(f), lease_cb, f);
    f->feed_notifies = store_feed_notify(st, feed_notified, f) == 0;
    f->feed_timer = loop_add_timer(
        l, f->feed_notifies ? FEED_NOTIFIED_POLL_MS : FEED_POLL_MS, feed_cb, f);
    f->retention_timer = loop_add_timer(l, 0, retention_cb, f);
    return f;
out_free:
    fleet_free(f);
    return NULL;
}

void
fleet_free(struct fleet *f)
{
    if (!f)
        return;
    /* The writes on their way are answered first (bounded), while
     * everything their answers touch is still here; nothing new starts. */
    f->stopping = true;
    if (f->st)
        store_flush(f->st);
    dnsmasq_free(f->dnsmasq);
    loop_del_timer(f->loop, f->retention_timer);
    loop_del_timer(f->loop, f->lease_timer);
    loop_del_timer(f->loop, f->feed_timer);
    loop_del_timer(f->loop, f->feed_again_timer);
    for (size_t i = 0; i < f->nsrvs; i++)
        srv_free(f->srvs[i]);
    /* A clean stop hands the facility on at once, not after a lapse:
     * once its drivers and consoles are closed. */
    if (f->active && store_lease_release(f->st, f->facility, f->node) == 0)
        log_info("facility %s: node %s gives up its lease", f->facility,
                 f->node);
    free(f->srvs);
    while (f->subs) {
        struct sub *u = f->subs;
        f->subs = u->next;
        free(u->server);
        free(u);
    }
    session_store_free(f->sessions);
    config_free(f->cfg);
    ticket_store_free(f->tickets);
    free(f->token_answers);
    free(f->node);
    free(f->facility);
    free(f);
}

struct session_store *
fleet_sessions(struct fleet *f)
{
    return f->sessions;
}

struct srv *
fleet_srv_find(struct fleet *f, const char *id)
{
    const struct config_server *cs = config_find_server(f->cfg, id);
    return cs ? fleet_srv_of(f, cs) : NULL;
}

static bool
same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void
fleet_reload(struct fleet *f, struct config *cfg)
{
    /* This node's place is read at start: its lease, feed and servers
     * hang on it. */
    if (strcmp(cfg->node, f->node) != 0 ||
        strcmp(cfg->facility, f->facility) != 0) {
        log_warnx("reload: [rescued] node and facility are read at start "
                  "only (node %s of facility %s): restart to change them; "
                  "keeping the old inventory",
                  f->node, f->facility);
        config_free(cfg);
        return;
    }
    /* First make what is new, so a failure leaves the old inventory. */
    struct srv **next = xcalloc(cfg->nservers, sizeof(*next));
    bool *kept = xcalloc(f->nsrvs ? f->nsrvs : 1, sizeof(*kept));
    char err[256];
    if (store_begin(f->st) < 0) {
        snprintf(err, sizeof(err), "cannot begin storing the new servers");
        goto out_free_next;
    }
    for (size_t i = 0; i < cfg->nservers; i++) {
        const struct config_server *cs = &cfg->servers[i];
        struct srv *old = fleet_srv_find(f, cs->id);
        if (old && strcmp(old->cfg->power, cs->power) == 0 &&
            same_str(old->cfg->console, cs->console) &&
            same_str(old->cfg->power_credentials, cs->power_credentials) &&
            strcmp(old->cfg->facility, cs->facility) == 0) {
            kept[old->cfg - f->cfg->servers] = true;
            continue;
        }
        next[i] = srv_new(f, cs, err, sizeof(err));
        if (!next[i]) {
            store_rollback(f->st);
            goto out_free_next;
        }
    }
    if (store_commit(f->st) < 0) {
        snprintf(err, sizeof(err), "cannot store the new servers");
        goto out_free_next;
    }
    /* The new timeouts before any server resumes: a rebuilt server's
     * renewed deadline is the new config's. */
    limits_from_config(&f->limits, cfg);
    /* Then keep the live state, timers and connections of the others. */
    for (size_t i = 0; i < cfg->nservers; i++) {
        if (next[i]) {
            if (f->active && srv_ours(f, next[i]->cfg)) {
                if (srv_start(next[i], err, sizeof(err)) < 0)
                    log_warnx("%s: %s", next[i]->cfg->id, err);
                else
                    resume(next[i]);
            }
            continue;
        }
        next[i] = fleet_srv_find(f, cfg->servers[i].id);
        if (strcmp(next[i]->cfg->project, cfg->servers[i].project) != 0)
            moved(next[i], next[i]->cfg->project, cfg->servers[i].project);
        next[i]->cfg = &cfg->servers[i];
    }
    for (size_t j = 0; j < f->nsrvs; j++)
        if (!kept[j])
            srv_free(f->srvs[j]); /* gone or with a new driver */
    free(kept);
    free(f->srvs);
    f->srvs = next;
    f->nsrvs = cfg->nservers;
    /* Who may see each server may have changed (a move, a token or a key
     * gone): the faces check their sessions and streams again. */
    char **ids = xcalloc(f->cfg->nservers + 1, sizeof(*ids));
    for (size_t j = 0; j < f->cfg->nservers; j++)
        ids[j] = xstrdup(f->cfg->servers[j].id);
    config_free(f->cfg);
    f->cfg = cfg;
    fleet_sessions_recheck(f); /* a token or project gone ends its own */
    for (size_t j = 0; ids[j]; j++)
        if (!config_find_server(cfg, ids[j]))
            tell_writable(f, ids[j]); /* gone: its sessions end */
    strv_free(ids);
    for (size_t j = 0; j < cfg->nservers; j++)
        tell_writable(f, cfg->servers[j].id);
    if (f->dnsmasq)
        dnsmasq_update(f->dnsmasq, cfg);
    log_info("inventory reloaded: %zu %s", f->nsrvs,
             plural(f->nsrvs, "server", "servers"));
    return;

out_free_next:
    log_warnx("reload: %s; keeping the old inventory", err);
    for (size_t j = 0; j < cfg->nservers; j++)
        srv_free(next[j]);
    free(next);
    free(kept);
    config_free(cfg);
}

const struct config *
fleet_config(const struct fleet *f)
{
    return f->cfg;
}

struct store *
fleet_store(struct fleet *f)
{
    return f->st;
}

/* What pre-flight checks besides the power driver: a rescue needs a key
 * and the image files. */
static bool
preflight_rest(struct fleet *f, struct srv *s, const struct fleet_action *a,
               char *err, size_t errlen)
{
    if (!a->nmi && a->event == FSM_EV_RESCUE) {
        /* A rescue nobody can log in to is no rescue. */
        const struct config_project *p =
            config_find_project(f->cfg, s->cfg->project);
        char **keys = NULL;
        size_t n = 0;
        if (p && p->keys_file &&
            sshkey_load_file(p->keys_file, &keys, &n, err, errlen) < 0)
            return false;
        sshkey_list_free(keys);
        if (n + a->nkeys == 0) {
            snprintf(err, errlen,
                     "no SSH key to put in the rescue image: pass ssh_keys "
                     "(rescuectl enter --key FILE) or add keys to project "
                     "%s's keys_file",
                     s->cfg->project);
            return false;
        }
        const char *files[3];
        fleet_image_files(f, s->cfg->arch, &files[0], &files[1], &files[2]);
        if (!files[0] || !files[1]) {
            snprintf(err, errlen,
                     "no %s rescue image: set [image] kernel_aarch64 and "
                     "initrd_aarch64 (make image ARCH=arm64 builds them)",
                     s->cfg->arch);
            return false;
        }
        for (size_t i = 0; i < 3; i++)
            if (files[i] && access(files[i], R_OK) != 0) {
                snprintf(err, errlen, "rescue image file %s: %s", files[i],
                         strerror(errno));
                return false;
            }
    }
    return true;
}

static int action_fits(struct srv *s, const struct fleet_action *a, char *err,
                       size_t errlen);

/* What an action is called in the store and the history. */
static const char *
action_name(const struct fleet_action *a)
{
    return a->nmi ? "nmi" : fsm_event_name(a->event);
}

/* The checks that need no state: the server and the request.  0 with the
 * server in *sp, or the refusal. */
static int
action_validate(struct fleet *f, const char *id, const struct fleet_action *a,
                struct srv **sp, char *err, size_t errlen)
{
    struct srv *s = *sp = fleet_srv_find(f, id);
    if (!s) {
        snprintf(err, errlen, "no such server: %s", id);
        return -ENOENT;
    }
    if (!a->nmi && a->event > FSM_EV_POWER_OFF) {
        snprintf(err, errlen, "not a user action");
        return -EINVAL;
    }
    if (a->ttl_s < 0) {
        snprintf(err, errlen, "ttl must be positive");
        return -EINVAL;
    }
    if (a->ttl_s > FLEET_MAX_TTL_S) {
        snprintf(err, errlen, "ttl must be at most a year (%lld s)",
                 FLEET_MAX_TTL_S);
        return -EINVAL;
    }
    if (a->nkeys > FLEET_MAX_KEYS) {
        snprintf(err, errlen,
                 "ssh_keys: %zu keys, at most %d (more would not reach the "
                 "rescue OS)",
                 a->nkeys, FLEET_MAX_KEYS);
        return -EINVAL;
    }
    for (size_t i = 0; i < a->nkeys; i++) {
        char why[200];
        if (!sshkey_valid(a->ssh_keys[i], why, sizeof(why))) {
            snprintf(err, errlen, "ssh_keys[%zu]: %s", i, why);
            return -EINVAL;
        }
    }
    return 0;
}

/* Does the state machine take the event now?  Asked on a copy, so a
 * refusal runs no check.  Of a server another node runs, by its row as
 * this node last read it. */
static int
action_fits(struct srv *s, const struct fleet_action *a, char *err,
            size_t errlen)
{
    if (a->nmi)
        return 0; /* any state: it asks a hung kernel for a dump */
    struct fsm_server probe = s->row.fsm;
    struct fsm_input in = {.event = a->event, .ttl_s = a->ttl_s};
    struct fsm_output out;
    fsm_step(&s->f->limits, &probe, &in, now_wall_ms(), &out);
    if (out.status < 0) {
        snprintf(err, errlen, "%s", out.reason);
        return -EBUSY;
    }
    return 0;
}

/* An action checked and on its way: what it sets, and who hears how it
 * went.  Applied at once, or held until the step before it is stored. */
struct applying {
    struct fleet *f;
    struct srv *s; /* once started; read only on -EIO (s is alive then) */
    enum fsm_event event;
    int64_t ttl_s, queued_id, queued_before;
    bool sets_keys;
    char *keys, *keys_before;
    char *actor;
    char id[ID_MAX + 1];
    fleet_action_cb *cb;
    void *arg;
};

static void
applying_free(struct applying *ap)
{
    free(ap->keys);
    free(ap->keys_before);
    free(ap->actor);
    free(ap);
}

/* The change is stored (0), refused by the store (-EIO: the keys and the
 * action id go back, nothing was done), no longer fits (-EBUSY), or the
 * server stopped first. */
static void
action_applied(void *arg, int rc, const char *why)
{
    struct applying *ap = arg;
    char err[512] = "";
    if (rc == -EIO) {
        struct srv *s = ap->s;
        s->row.action_id = ap->queued_before;
        if (ap->sets_keys) {
            free(s->row.ssh_keys);
            s->row.ssh_keys = ap->keys_before;
            ap->keys_before = NULL;
        }
        snprintf(err, sizeof(err), "%s; nothing was done", why);
    } else if (rc == -EBUSY) {
        snprintf(err, sizeof(err), "%s", why);
    } else if (rc == -ECANCELED) {
        snprintf(err, sizeof(err),
                 "server %s was reconfigured meanwhile; try again", ap->id);
        rc = -EBUSY;
    }
    ap->cb(ap->arg, rc, err);
    applying_free(ap);
}

static void
action_start(struct srv *s, void *arg)
{
    struct applying *ap = arg;
    ap->s = s;
    if (ap->sets_keys) {
        ap->keys_before = s->row.ssh_keys;
        s->row.ssh_keys = ap->keys;
        ap->keys = NULL;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "%s requested", fsm_event_name(ap->event));
    fleet_srv_note(s, "audit", ap->actor, msg);
    struct fsm_input in = {.event = ap->event, .ttl_s = ap->ttl_s};
    /* A queued action is known applied by the change it stores. */
    ap->queued_before = s->row.action_id;
    if (ap->queued_id > s->row.action_id)
        s->row.action_id = ap->queued_id;
    apply_then(s, &in, ap->actor, action_applied, ap);
}

static void
action_cancel(void *arg)
{
    action_applied(arg, -ECANCELED, "");
}

/* Checked: store the keys, note who asked, and feed the event; cb hears
 * the verdict (maybe before the return): 0, -EIO when the store refused
 * the change (then nothing was done), -EBUSY. */
static void
action_apply(struct srv *s, const struct fleet_action *a, fleet_action_cb *cb,
             void *arg)
{
    struct applying *ap = xcalloc(1, sizeof(*ap));
    ap->f = s->f;
    ap->event = a->event;
    ap->ttl_s = a->ttl_s;
    ap->queued_id = a->queued_id;
    ap->actor = a->actor ? xstrdup(a->actor) : NULL;
    strlcpy_s(ap->id, s->cfg->id, sizeof(ap->id));
    ap->cb = cb;
    ap->arg = arg;
    if (a->event == FSM_EV_RESCUE) {
        struct buf keys = {0};
        for (size_t i = 0; i < a->nkeys; i++)
            buf_printf(&keys, "%s\n", a->ssh_keys[i]);
        ap->sets_keys = true;
        ap->keys = keys.data;
    }
    if (s->step)
        hold(s, action_start, action_cancel, ap);
    else
        action_start(s, ap);
}

struct pending_action;
static struct pending_action *pending_new(struct fleet *f, struct srv *s,
                                          const struct fleet_action *a,
                                          fleet_action_cb *cb, void *arg);
static void handoff(struct pending_action *pa);

/* fleet_action's verdict: kept if it comes before the return. */
struct verdict {
    bool told, gone;
    int rc;
    char err[512];
};

static void
verdict_told(void *arg, int rc, const char *err)
{
    struct verdict *v = arg;
    if (v->gone) {
        free(v);
        return;
    }
    v->told = true;
    v->rc = rc;
    snprintf(v->err, sizeof(v->err), "%s", err ? err : "");
}

/* The verdict if it came before the return (else 0: taken, and told to
 * nobody); v is freed now or when it comes. */
static int
verdict_of(struct verdict *v, char *err, size_t errlen)
{
    if (!v->told) {
        v->gone = true;
        return 0;
    }
    int rc = v->rc;
    if (rc < 0)
        snprintf(err, errlen, "%s", v->err);
    free(v);
    return rc;
}

int
fleet_action(struct fleet *f, const char *id, const struct fleet_action *a,
             char *err, size_t errlen)
{
    struct srv *s;
    int rc = action_validate(f, id, a, &s, err, errlen);
    if (rc < 0)
        return rc;
    /* A network store answers later: then the action is taken, and how
     * its change was stored shows in the server's state and history. */
    struct verdict *v = xcalloc(1, sizeof(*v));
    if (!s->runs || a->nmi) {
        handoff(pending_new(f, s, a, verdict_told, v));
        return verdict_of(v, err, errlen);
    }
    if ((rc = action_fits(s, a, err, errlen)) == 0 &&
        (!power_reachable(s->power, err, errlen) ||
         !preflight_rest(f, s, a, err, errlen)))
        rc = -EBUSY;
    if (rc < 0) {
        free(v);
        return rc;
    }
    action_apply(s, a, verdict_told, v);
    return verdict_of(v, err, errlen);
}

/* An action waiting for its power pre-flight: a copy of the request. */
struct pending_action {
    struct fleet *f;
    char id[ID_MAX + 1];
    struct power *power; /* the server's when asked: a rebuilt one differs */
    struct fleet_action a;
    char *actor;
    char **keys;
    fleet_action_cb *cb;
    void *arg;
};

static struct pending_action *
pending_new(struct fleet *f, struct srv *s, const struct fleet_action *a,
            fleet_action_cb *cb, void *arg)
{
    struct pending_action *pa = xcalloc(1, sizeof(*pa));
    pa->f = f;
    strlcpy_s(pa->id, s->cfg->id, sizeof(pa->id));
    pa->power = s->power;
    pa->a = *a;
    pa->actor = a->actor ? xstrdup(a->actor) : NULL;
    pa->a.actor = pa->actor;
    pa->keys = xcalloc(a->nkeys ? a->nkeys : 1, sizeof(*pa->keys));
    for (size_t i = 0; i < a->nkeys; i++)
        pa->keys[i] = xstrdup(a->ssh_keys[i]);
    pa->a.ssh_keys = (const char **)pa->keys;
    pa->cb = cb;
    pa->arg = arg;
    return pa;
}

static void
pending_free(struct pending_action *pa)
{
    for (size_t i = 0; i < pa->a.nkeys; i++)
        free(pa->keys[i]);
    free(pa->keys);
    free(pa->actor);
    free(pa);
}

/* Tell the asker the verdict; the action is done with. */
static void
pending_told(struct pending_action *pa, int rc, const char *err)
{
    pa->cb(pa->arg, rc, err);
    pending_free(pa);
}

/* The verdict came: check again what may have moved meanwhile (a reload,
 * another action), then act or refuse. */
static void
on_preflight(void *arg, int status, const char *perr)
{
    struct pending_action *pa = arg;
    char err[512] = "";
    int rc = 0;
    struct srv *s = NULL;
    if (status == -ECANCELED) {
        /* The driver went (reload, shutdown): look nothing up. */
        snprintf(err, sizeof(err),
                 "server %s was reconfigured meanwhile; try again", pa->id);
        rc = -EBUSY;
    } else if ((rc = action_validate(pa->f, pa->id, &pa->a, &s, err,
                                     sizeof(err))) < 0 ||
               (rc = action_fits(s, &pa->a, err, sizeof(err))) < 0) {
        /* refused as it stands now */
    } else if (s->power != pa->power) {
        snprintf(err, sizeof(err),
                 "server %s was reconfigured meanwhile; try again", pa->id);
        rc = -EBUSY;
    } else if (status < 0) {
        snprintf(err, sizeof(err), "%s", perr);
        rc = -EBUSY;
    } else if (!preflight_rest(pa->f, s, &pa->a, err, sizeof(err))) {
        rc = -EBUSY;
    } else {
        action_apply(s, &pa->a, pa->cb, pa->arg);
        pending_free(pa);
        return;
    }
    pending_told(pa, rc, err);
}

/* An action for a server this node does not run goes into the store for
 * its facility's active node, without waiting: its row is read first, so
 * it is judged by what the store has, not by the feed's last look; then
 * it is queued, with an audit event that says where it was asked (and
 * moves the feed, which wakes that node).  That node judges it again when
 * it takes it. */
static void forward_read(void *arg, int rc, const char *id,
                         const struct server_row *row);
static void forward_added(void *arg, int64_t id);
static void forward(struct pending_action *pa);

/* An NMI for a server run here: audited and sent; the driver's failure
 * shows as an error event (console_power_done). */
static void
nmi_send(struct pending_action *pa)
{
    struct srv *s = fleet_srv_find(pa->f, pa->id);
    if (!s || !s->runs) {
        forward(pa); /* stood down meanwhile: for the node that runs it */
        return;
    }
    fleet_srv_note(s, "audit", pa->a.actor, "nmi requested");
    int rc = fleet_console_power(pa->f, pa->id, POWER_NMI, NULL);
    char err[256] = "";
    if (rc < 0)
        snprintf(err, sizeof(err), "cannot send an NMI: %s", strerror(-rc));
    pending_told(pa, rc < 0 ? -EBUSY : 0, err);
}

static void
forward(struct pending_action *pa)
{
    const char *ids[] = {pa->id};
    store_load_servers_async(pa->f->st, ids, 1, forward_read, pa);
}

/* What neither the state machine nor this node's pre-flight takes: an NMI
 * (sent here, or handed on) or an action for a server another node runs
 * (handed on). */
static void
handoff(struct pending_action *pa)
{
    if (pa->a.nmi)
        nmi_send(pa);
    else
        forward(pa);
}

/* fleet_action_async's handoff: from the loop, so its verdict never comes
 * before the call returns (sqlite answers inline). */
static int64_t
handoff_cb(struct loop *l, void *arg)
{
    (void)l;
    handoff(arg);
    return -1;
}

static void
forward_read(void *arg, int rc, const char *id, const struct server_row *row)
{
    struct pending_action *pa = arg;
    if (rc == -ECANCELED) {
        pending_told(pa, -EIO, "the node is stopping; nothing was done");
        return;
    }
    struct fleet *f = pa->f;
    if (id) {
        if (!f->stopping)
            mirror_row(f, id, row);
        return;
    }
    struct srv *s;
    char err[512];
    if (rc < 0) {
        snprintf(err, sizeof(err),
                 "cannot read server %s's state: %s; nothing was done", pa->id,
                 store_last_error(f->st));
        pending_told(pa, -EIO, err);
        return;
    }
    if ((rc = action_validate(f, pa->id, &pa->a, &s, err, sizeof(err))) < 0 ||
        (rc = action_fits(s, &pa->a, err, sizeof(err))) < 0) {
        pending_told(pa, rc, err);
        return;
    }
    if (s->runs) { /* taken over meanwhile: this node runs it now */
        pa->power = s->power;
        if (pa->a.nmi)
            nmi_send(pa);
        else
            power_preflight(s->power, on_preflight, pa);
        return;
    }
    if (!preflight_rest(f, s, &pa->a, err, sizeof(err))) {
        pending_told(pa, -EBUSY, err);
        return;
    }
    json_t *keys = json_array();
    for (size_t i = 0; i < pa->a.nkeys; i++)
        json_array_append_new(keys, json_string(pa->a.ssh_keys[i]));
    json_t *o = json_pack("{s:s, s:I, s:o}", "event", action_name(&pa->a),
                          "ttl_s", (json_int_t)pa->a.ttl_s, "ssh_keys", keys);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body) {
        pending_told(pa, -EIO, "out of memory; nothing was done");
        return;
    }
    store_action_add_async(f->st, s->cfg->facility, s->cfg->id, f->node,
                           pa->a.actor, body, forward_added, pa);
    free(body);
}

static void
forward_added(void *arg, int64_t id)
{
    struct pending_action *pa = arg;
    if (id == -ECANCELED) {
        pending_told(pa, -EIO, "the node is stopping; nothing was done");
        return;
    }
    struct fleet *f = pa->f;
    struct srv *s = f->stopping ? NULL : fleet_srv_find(f, pa->id);
    const char *facility = s ? s->cfg->facility : "?";
    char msg[512];
    if (id < 0) {
        snprintf(msg, sizeof(msg),
                 "cannot hand the action to facility %s's active node: %s; "
                 "nothing was done",
                 facility, store_last_error(f->st));
        pending_told(pa, -EIO, msg);
        return;
    }
    if (s) {
        snprintf(msg, sizeof(msg),
                 "%s requested on node %s, for the active node of facility %s",
                 action_name(&pa->a), f->node, facility);
        fleet_srv_note(s, "audit", pa->a.actor, msg);
    }
    pending_told(pa, 0, "");
}

int
fleet_action_async(struct fleet *f, const char *id,
                   const struct fleet_action *a, fleet_action_cb *cb, void *arg,
                   char *err, size_t errlen)
{
    struct srv *s;
    int rc = action_validate(f, id, a, &s, err, errlen);
    if (rc < 0 || (s->runs && (rc = action_fits(s, a, err, errlen)) < 0))
        return rc;
    struct pending_action *pa = pending_new(f, s, a, cb, arg);
    if (s->runs && !a->nmi)
        power_preflight(s->power, on_preflight, pa);
    else
        loop_add_timer(f->loop, 0, handoff_cb, pa);
    return 0;
}

static uint64_t
sub_add(struct fleet *f, const char *server, fleet_event_cb *cb,
        fleet_writable_cb *writable, void *arg)
{
    struct sub *u = xcalloc(1, sizeof(*u));
    u->id = f->next_sub++;
    u->server = server ? xstrdup(server) : NULL;
    u->cb = cb;
    u->writable = writable;
    u->arg = arg;
    u->next = f->subs;
    f->subs = u;
    return u->id;
}

uint64_t
fleet_subscribe(struct fleet *f, const char *server, fleet_event_cb *cb,
                void *arg)
{
    return sub_add(f, server, cb, NULL, arg);
}

uint64_t
fleet_on_writable_changed(struct fleet *f, fleet_writable_cb *cb, void *arg)
{
    return sub_add(f, NULL, NULL, cb, arg);
}

void
fleet_unsubscribe(struct fleet *f, uint64_t id)
{
    for (struct sub **p = &f->subs; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            struct sub *u = *p;
            *p = u->next;
            free(u->server);
            free(u);
            return;
        }
}

struct console *
fleet_console(struct fleet *f, const char *id)
{
    struct srv *s = fleet_srv_find(f, id);
    return s ? s->console : NULL;
}

/* Is a key with this fingerprint in an authorized_keys file? */
static bool
keys_file_has(const char *path, const char *fingerprint)
{
    char **keys = NULL, err[256];
    size_t n = 0;
    bool found = false;
    if (!path || sshkey_load_file(path, &keys, &n, err, sizeof(err)) < 0)
        return false;
    for (size_t i = 0; i < n && !found; i++) {
        char fp[SSHKEY_FP_LEN];
        found = sshkey_fingerprint(keys[i], fp, sizeof(fp)) == 0 &&
                strcmp(fp, fingerprint) == 0;
    }
    sshkey_list_free(keys);
    return found;
}

/* A key is looked up in the admin keys, then the project's; a token comes
 * with its role (admin or a project) already known. */
bool
fleet_console_authorize(struct fleet *f, const char *id,
                        const struct console_who *who, char *role,
                        size_t rolelen)
{
    struct srv *s = fleet_srv_find(f, id);
    if (!s || !who)
        return false;
    const struct config_project *p =
        config_find_project(f->cfg, s->cfg->project);
    bool admin = false, member = false;
    switch (who->kind) {
    case CONSOLE_WHO_SSH_KEY:
        if (!who->fingerprint || !*who->fingerprint)
            return false;
        admin = keys_file_has(f->cfg->admin_keys_file, who->fingerprint);
        member = !admin && p && keys_file_has(p->keys_file, who->fingerprint);
        break;
    case CONSOLE_WHO_TOKEN:
        admin = who->admin;
        member = p && who->project && strcmp(who->project, p->name) == 0;
        break;
    }
    if (admin)
        snprintf(role, rolelen, "admin");
    else if (member)
        snprintf(role, rolelen, "project:%s", p->name);
    return admin || member;
}

int64_t
fleet_project_since(struct fleet *f, const char *id)
{
    struct srv *s = fleet_srv_find(f, id);
    if (!s)
        return 0;
    return s->move_unrecorded ? INT64_MAX - 1 : s->row.project_since_id;
}

int64_t
fleet_readonly_left_ms(struct fleet *f, const char *id)
{
    struct srv *s = fleet_srv_find(f, id);
    return s ? readonly_left_ms(s) : 0;
}

bool
fleet_console_writable(struct fleet *f, const char *id, char *why,
                       size_t whylen)
{
    struct srv *s = fleet_srv_find(f, id);
    if (!s)
        return false;
    if (!fsm_state_is_stable(s->row.fsm.state)) {
        snprintf(why, whylen,
                 "read-only while the server is %s; writable %d s after it "
                 "settles",
                 fsm_state_name(s->row.fsm.state), f->cfg->readonly_grace);
        return false;
    }
    int64_t left = fleet_readonly_left_ms(f, id);
    if (left > 0) {
        snprintf(
            why, whylen, "read-only for %lld more s after the change to %s",
            (long long)(left + 999) / 1000, fsm_state_name(s->row.fsm.state));
        return false;
    }
    return true;
}

void
fleet_audit(struct fleet *f, const char *id, const char *actor,
            const char *message)
{
    struct srv *s = fleet_srv_find(f, id);
    if (s)
        fleet_srv_note(s, "audit", actor, message);
}

static void
console_power_done(void *arg, int status, const char *detail)
{
    struct srv *s = arg;
    if (status != 0 && status != -ECANCELED && !s->closing) {
        char msg[256];
        snprintf_utf8(msg, sizeof(msg), "console power request failed: %s",
                      detail ? detail : strerror(-status));
        fleet_srv_note(s, "error", "rescued", msg);
    }
}

int
fleet_console_power(struct fleet *f, const char *id, enum power_op op,
                    const char *arg)
{
    struct srv *s = fleet_srv_find(f, id);
    if (!s)
        return -ENOENT;
    if (!s->runs)
        return -EREMOTE; /* its facility's active node has its driver */
    power_request(s->power, op, arg, console_power_done, s);
    return 0;
}
