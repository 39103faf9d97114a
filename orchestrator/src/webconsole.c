#include "webconsole.h"
#include "console_session.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "ws.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HIGH_MARK                                                              \
    (64 * 1024) /* queued in ws: the viewer's queue holds more                 \
                 */
#define SUBPROTOCOL "rescued.console"
#define MAX_SYSRQ_KEYS 16
#define REPLAY_LINES 24 /* a screenful, as Serial over SSH */

enum conn_state { CONN_PENDING, CONN_OPEN, CONN_DEAD };

struct conn {
    struct webconsole *wc;
    struct conn *next;
    enum conn_state state;
    struct conn **holder; /* the request's pointer to us while pending */
    struct http_upgrade *u;
    struct ws *ws;
    struct console_session *cs;
    char server[64], principal[80], addr[64];
    bool ro;
};

struct webconsole {
    struct http *h;
    struct loop *l;
    struct fleet *fleet;
    struct console_session_cbs cbs;
    void *cb_arg;
    int writer_idle_s;
    char *record_dir;
    int record_days;
    char *origin;
    struct conn *conns;
    uint64_t reap_timer;
};

static void conn_free(struct conn *c);

/* --- reaping: connections end from callbacks, are freed from the loop --- */

static void
reap(struct webconsole *wc)
{
    struct conn **pp = &wc->conns;
    while (*pp) {
        struct conn *c = *pp;
        if (c->state == CONN_DEAD) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
}

static int64_t
reap_cb(struct loop *l, void *arg)
{
    (void)l;
    struct webconsole *wc = arg;
    wc->reap_timer = 0;
    reap(wc);
    return -1;
}

static void
conn_kill(struct conn *c)
{
    c->state = CONN_DEAD;
    if (!c->wc->reap_timer)
        c->wc->reap_timer = loop_add_timer(c->wc->l, 0, reap_cb, c->wc);
}

static void
conn_free(struct conn *c)
{
    if (c->holder) /* still pending: the request must not reach us */
        *c->holder = NULL;
    console_session_free(c->cs);
    ws_free(c->ws);
    if (c->u)
        http_upgrade_close(c->u);
    free(c);
}

/* --- console_session's transport ----------------------------------------- */

static void
send_json(struct conn *c, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s && c->ws)
        ws_send(c->ws, true, s, strlen(s));
    free(s);
}

static ssize_t
io_write(void *arg, const void *data, size_t n)
{
    struct conn *c = arg;
    if (c->state != CONN_OPEN || !c->ws)
        return 0;
    size_t q = ws_queued(c->ws);
    if (q >= HIGH_MARK)
        return 0; /* the viewer's own queue holds it; drained() resumes */
    if (n > HIGH_MARK - q)
        n = HIGH_MARK - q;
    return ws_send(c->ws, false, data, n) < 0 ? -EPIPE : (ssize_t)n;
}

static void
io_close(void *arg)
{
    struct conn *c = arg;
    if (c->ws)
        ws_close(c->ws, WS_CLOSE_NORMAL, "console closed");
}

static void
io_notice(void *arg, const char *text)
{
    send_json(arg, json_pack("{s:s,s:s}", "type", "notice", "text", text));
}

static void
io_role(void *arg, bool writer, bool read_only, const char *reason)
{
    send_json(arg, json_pack("{s:s,s:s,s:b,s:s}", "type", "role", "role",
                             writer ? "writer" : "watcher", "read_only",
                             read_only, "reason", reason));
}

static const struct console_session_io conn_io = {
    .write = io_write,
    .close = io_close,
    .notice = io_notice,
    .role = io_role,
};

/* --- the WebSocket's side ------------------------------------------------- */

static void
on_binary(void *arg, const void *data, size_t n)
{
    struct conn *c = arg;
    if (c->cs)
        console_session_input(c->cs, data, n);
}

static void
on_text(void *arg, const char *data, size_t n)
{
    struct conn *c = arg;
    json_error_t e;
    json_t *o = json_loadb(data, n, 0, &e);
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type) {
        json_decref(o);
        ws_close(c->ws, WS_CLOSE_POLICY, "control messages are JSON objects");
        return;
    }
    if (!c->cs) {
        json_decref(o);
        return;
    }
    if (strcmp(type, "take_seat") == 0) {
        console_session_take_seat(c->cs);
    } else if (strcmp(type, "break") == 0) {
        console_session_break(c->cs);
    } else if (strcmp(type, "nmi") == 0) {
        console_session_nmi(c->cs);
    } else if (strcmp(type, "sysrq") == 0) {
        const char *keys = json_string_value(json_object_get(o, "keys"));
        size_t nk = keys ? strlen(keys) : 0;
        if (nk == 0 || nk > MAX_SYSRQ_KEYS)
            io_notice(c, "sysrq: keys must be 1 to 16 characters");
        for (size_t i = 0; i < nk && nk <= MAX_SYSRQ_KEYS && c->cs; i++)
            console_session_sysrq(c->cs, keys[i]); /* key by key */
    } else if (strcmp(type, "resize") == 0) {
        /* A serial console has no window size: accepted, nothing to do. */
    } else {
        io_notice(c, "unknown control message");
    }
    json_decref(o);
}

static void
on_drained(void *arg)
{
    struct conn *c = arg;
    if (c->cs)
        console_session_flush(c->cs);
}

static void
on_closed(void *arg, int code)
{
    struct conn *c = arg;
    log_debug("webconsole: %s from %s closed (%d)", c->server, c->addr, code);
    conn_kill(c);
}

static const struct ws_cbs conn_ws_cbs = {
    .binary = on_binary,
    .text = on_text,
    .drained = on_drained,
    .closed = on_closed,
};

/* --- the handshake ------------------------------------------------------- */

static bool
has_token(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t l = strcspn(p, ", ");
        if (l == wl && strncasecmp(p, word, l) == 0)
            return true;
        p += l;
    }
    return false;
}

/* The ticket from "rescued.console, ticket.XXXX" into out. */
static bool
offered_ticket(const char *list, char *out, size_t outlen)
{
    if (!list || !has_token(list, SUBPROTOCOL))
        return false;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t l = strcspn(p, ", ");
        if (l > 7 && strncmp(p, "ticket.", 7) == 0 && l - 7 < outlen) {
            memcpy(out, p + 7, l - 7);
            out[l - 7] = '\0';
            return true;
        }
        p += l;
    }
    return false;
}

static bool
origin_ok(struct webconsole *wc, struct http_req *r)
{
    const char *origin = http_req_header(r, "Origin");
    const char *host = http_req_header(r, "Host");
    if (!origin)
        return false;
    if (wc->origin && strcmp(origin, wc->origin) == 0)
        return true;
    if (!host)
        return false;
    const char *rest = strncmp(origin, "http://", 7) == 0    ? origin + 7
                       : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                             : NULL;
    return rest && strcasecmp(rest, host) == 0;
}

static void
holder_free(void *p)
{
    struct conn **holder = p;
    if (*holder) { /* never upgraded: the client left before the 101 */
        (*holder)->holder = NULL;
        conn_kill(*holder);
    }
    free(holder);
}

static void
on_upgrade_closed(void *arg)
{
    /* http_free ends the upgrade itself: the socket is not ours now. */
    struct conn *c = arg;
    c->u = NULL;
    ws_free(c->ws);
    c->ws = NULL;
    conn_kill(c);
}

static void
h_ws(struct http_req *r, void *arg)
{
    struct webconsole *wc = arg;
    const char *id = http_req_cap(r, 0);
    const char *key = http_req_header(r, "Sec-WebSocket-Key");
    const char *upg = http_req_header(r, "Upgrade");
    const char *ver = http_req_header(r, "Sec-WebSocket-Version");
    const char *mode = http_req_query(r, "mode");
    if (!upg || !has_token(upg, "websocket") || !key || !ver ||
        strcmp(ver, "13") != 0) {
        http_respond_error(r, 400, "a WebSocket (version 13) handshake only");
        return;
    }
    if (mode && strcmp(mode, "watch") != 0) {
        http_respond_error(r, 400, "mode must be watch");
        return;
    }
    char ticket[80], principal[80] = "", accept[64];
    /* The ticket is spent even when the Origin is wrong (checked after). */
    bool ok = offered_ticket(http_req_header(r, "Sec-WebSocket-Protocol"),
                             ticket, sizeof(ticket)) &&
              fleet_console_redeem(wc->fleet, id, ticket, principal,
                                   sizeof(principal));
    ok = ok && origin_ok(wc, r) && wc->cbs.find_console &&
         wc->cbs.find_console(wc->cb_arg, id);
    if (!ok || ws_accept_key(key, accept, sizeof(accept)) < 0) {
        http_respond_error(r, 404, "no such server: %s", id);
        return;
    }
    http_req_set_actor(r, principal);
    struct conn *c = xcalloc(1, sizeof(*c));
    c->wc = wc;
    strlcpy_s(c->server, id, sizeof(c->server));
    strlcpy_s(c->principal, principal, sizeof(c->principal));
    char peer[64];
    snprintf(c->addr, sizeof(c->addr), "%s",
             http_req_peer(r, peer, sizeof(peer))[0] ? peer : "-");
    c->ro = mode != NULL;
    c->next = wc->conns;
    wc->conns = c;
    struct conn **holder = xmalloc(sizeof(*holder));
    *holder = c;
    c->holder = holder;
    http_req_set_data(r, holder, holder_free);
    struct http_answer *a =
        http_answer_upgrade(r, "websocket", on_upgrade_closed, c);
    if (!a) {
        http_respond_error(r, 500, "cannot upgrade");
        return;
    }
    http_answer_header(a, "Sec-WebSocket-Accept", accept);
    http_answer_header(a, "Sec-WebSocket-Protocol", SUBPROTOCOL);
    http_respond(r, 101, a);
}

static void
on_upgrade(struct http_upgrade *u, void *arg)
{
    struct conn *c = arg;
    struct webconsole *wc = c->wc;
    if (c->holder) {
        *c->holder = NULL;
        c->holder = NULL;
    }
    c->u = u;
    if (c->state == CONN_DEAD)
        return;
    size_t nextra = 0;
    const char *extra = http_upgrade_extra(u, &nextra);
    c->state = CONN_OPEN;
    c->ws = ws_new(wc->l, http_upgrade_fd(u), extra, nextra, WEBCONSOLE_MAX_MSG,
                   &conn_ws_cbs, c);
    if (c->state != CONN_OPEN)
        return;
    char label[160];
    snprintf(label, sizeof(label), "user=%s via=ws", c->principal);
    struct console_who who = {.kind = CONSOLE_WHO_TOKEN,
                              .admin = strcmp(c->principal, "admin") == 0,
                              .label = label};
    if (strncmp(c->principal, "project:", 8) == 0)
        who.project = c->principal + 8;
    struct console_session_config cfg = {.server = c->server,
                                         .who = &who,
                                         .role = c->principal,
                                         .addr = c->addr,
                                         .ro = c->ro,
                                         .replay = REPLAY_LINES,
                                         .writer_idle_s = wc->writer_idle_s,
                                         .record_dir = wc->record_dir,
                                         .record_days = wc->record_days,
                                         .transport = "ws"};
    c->cs = console_session_new(wc->l, &cfg, &wc->cbs, wc->cb_arg, &conn_io, c);
    if (!c->cs) {
        ws_close(c->ws, WS_CLOSE_POLICY, "no console");
        return;
    }
    log_info("webconsole: %s attached to %s from %s (%s)", c->principal,
             c->server, c->addr, c->ro ? "watcher" : "writer");
}

static const struct http_route routes[] = {
    {"/v1/servers/{}/console/ws", HTTP_GET, HTTP_UPGRADE, NULL, h_ws,
     on_upgrade},
};

struct webconsole *
webconsole_register(struct http *h, const struct webconsole_config *cfg)
{
    struct webconsole *wc = xcalloc(1, sizeof(*wc));
    wc->h = h;
    wc->l = http_loop(h);
    wc->fleet = cfg->fleet;
    if (cfg->cbs)
        wc->cbs = *cfg->cbs;
    wc->cb_arg = cfg->cb_arg;
    wc->writer_idle_s = cfg->writer_idle_s;
    wc->record_dir = cfg->record_dir ? xstrdup(cfg->record_dir) : NULL;
    wc->record_days = cfg->record_days;
    wc->origin = cfg->origin ? xstrdup(cfg->origin) : NULL;
    struct http_face face = {routes, sizeof(routes) / sizeof(routes[0]), wc,
                             NULL};
    http_add_face(h, &face);
    return wc;
}

void
webconsole_free(struct webconsole *wc)
{
    if (!wc)
        return;
    /* A close frame, so that browsers see a stop (1001), not a break. */
    for (struct conn *c = wc->conns; c; c = c->next) {
        if (c->state == CONN_OPEN && c->ws)
            ws_close(c->ws, WS_CLOSE_GOING_AWAY, "rescued is stopping");
        c->state = CONN_DEAD;
    }
    reap(wc);
    loop_del_timer(wc->l, wc->reap_timer);
    free(wc->record_dir);
    free(wc->origin);
    free(wc);
}

void
webconsole_writable_changed(struct webconsole *wc, const char *server)
{
    for (struct conn *c = wc->conns; c; c = c->next)
        if (c->state == CONN_OPEN && c->cs && strcmp(c->server, server) == 0)
            console_session_writable_changed(c->cs);
}

size_t
webconsole_count(const struct webconsole *wc)
{
    size_t n = 0;
    for (const struct conn *c = wc->conns; c; c = c->next)
        n += c->state == CONN_OPEN;
    return n;
}
