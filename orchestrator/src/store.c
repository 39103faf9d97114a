/* store: the public interface (store.h).  It picks the backend the URL
 * names and reaches it only through its ops table (store_backend.h); what
 * holds for every backend is checked here, once. */
#include "store.h"
#include "store_backend.h"
#include "uri.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One backend per store URL kind (uri.h). */
static const struct store_ops *const backends[] = {
    [URI_STORE_SQLITE] = &store_sqlite_ops,
    [URI_STORE_PG] = &store_pg_ops,
};

struct store *
store_open(const char *url, const char *data_dir, char *err, size_t errlen)
{
    struct uri_store *u = uri_store_parse(url ? url : "sqlite:", err, errlen);
    struct store *st = NULL;

    if (!u)
        return NULL;
    const struct store_ops *ops =
        (size_t)u->kind < sizeof(backends) / sizeof(backends[0])
            ? backends[u->kind]
            : NULL;
    if (!ops)
        seterr(err, errlen, "no store backend for this URL");
    else
        st = ops->open(u, data_dir, err, errlen);
    uri_store_free(u);
    return st;
}

const char *
store_last_error(const struct store *st)
{
    return st->last_error;
}

void
store_attach_loop(struct store *st, struct loop *l)
{
    if (st->ops->attach_loop)
        st->ops->attach_loop(st, l);
}

void
store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

int
store_schema_version(struct store *st)
{
    return st->ops->schema_version(st);
}

int
store_begin(struct store *st)
{
    return st->ops->begin(st);
}

int
store_commit(struct store *st)
{
    return st->ops->commit(st);
}

void
store_rollback(struct store *st)
{
    st->ops->rollback(st);
}

int
store_load_server(struct store *st, const char *id, struct server_row *out)
{
    return st->ops->load_server(st, id, out);
}

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void
server_row_copy(struct server_row *dst, const struct server_row *src)
{
    *dst = *src;
    dst->ssh_keys = dup_or_null(src->ssh_keys);
    dst->rescue_json = dup_or_null(src->rescue_json);
    dst->project = dup_or_null(src->project);
}

void
server_row_clear(struct server_row *row)
{
    free(row->ssh_keys);
    free(row->rescue_json);
    free(row->project);
    row->ssh_keys = NULL;
    row->rescue_json = NULL;
    row->project = NULL;
}

int
store_save_server(struct store *st, const char *id,
                  const struct server_row *row)
{
    return st->ops->save_server(st, id, row);
}

int64_t
store_transition(struct store *st, const char *id, const struct server_row *row,
                 enum fsm_state from, const char *why)
{
    return st->ops->transition(st, id, row, from, why);
}

int64_t
store_append_event(struct store *st, const char *server, const char *kind,
                   const char *actor, const char *message)
{
    return st->ops->append_event(st, server, kind, actor, message);
}

int
store_list_events(struct store *st, const char *server, int64_t after_id,
                  int limit, store_event_cb *cb, void *arg)
{
    /* A backend walks a cursor (SQLite: one shared statement) that a
     * nested list would reset under the outer walk's feet. */
    if (st->listing)
        return -EBUSY;
    st->listing = true;
    int ret = st->ops->list_events(st, server, after_id, limit, cb, arg);
    st->listing = false;
    return ret;
}

int
store_token_add(struct store *st, const char *token, const char *server,
                int64_t created_ms)
{
    return st->ops->token_add(st, token, server, created_ms);
}

int
store_token_lookup(struct store *st, const char *token, char *server,
                   size_t len)
{
    return st->ops->token_lookup(st, token, server, len);
}

int
store_token_of_server(struct store *st, const char *server, char *token,
                      size_t len)
{
    return st->ops->token_of_server(st, server, token, len);
}

int
store_token_revoke_server(struct store *st, const char *server)
{
    return st->ops->token_revoke_server(st, server);
}

int64_t
store_prune(struct store *st, int64_t before_ms, int keep_per_server,
            int max_rows)
{
    return st->ops->prune(st, before_ms, keep_per_server, max_rows);
}

int
store_token_get(struct store *st, const char *token, struct store_token *out)
{
    return st->ops->token_get(st, token, out);
}

int
store_token_mark(struct store *st, const char *token, const char *addr,
                 int64_t overlay_ms)
{
    return st->ops->token_mark(st, token, addr, overlay_ms);
}

int
store_token_last_addr(struct store *st, const char *server, char *addr,
                      size_t len)
{
    return st->ops->token_last_addr(st, server, addr, len);
}

int
store_session_add(struct store *st, const struct store_session *s)
{
    return st->ops->session_add(st, s);
}

int
store_session_delete(struct store *st, const char *id_hash)
{
    return st->ops->session_delete(st, id_hash);
}

int
store_session_list(struct store *st, int64_t now_ms, store_session_cb *cb,
                   void *arg)
{
    return st->ops->session_list(st, now_ms, cb, arg);
}

int64_t
store_session_expire(struct store *st, int64_t now_ms)
{
    return st->ops->session_expire(st, now_ms);
}

int
store_lease_take(struct store *st, const char *facility, const char *node,
                 int64_t ttl_ms, int64_t now_ms, struct store_lease *out)
{
    struct store_lease ignored;
    /* A backend without facilities yet (store_pg): -ENOTSUP, and fleet
     * runs this node's facility alone. */
    if (!st->ops->lease_take)
        return -ENOTSUP;
    return st->ops->lease_take(st, facility, node, ttl_ms, now_ms,
                               out ? out : &ignored);
}

int
store_lease_release(struct store *st, const char *facility, const char *node)
{
    return st->ops->lease_release ? st->ops->lease_release(st, facility, node)
                                  : -ENOTSUP;
}

int64_t
store_action_add(struct store *st, const char *facility, const char *server,
                 const char *origin, const char *actor, const char *body)
{
    if (!st->ops->action_add)
        return -ENOTSUP;
    return st->ops->action_add(st, facility, server, origin, actor, body);
}

int
store_action_take(struct store *st, const char *facility, const char *node,
                  int64_t now_ms, struct store_action *out)
{
    memset(out, 0, sizeof(*out));
    if (!st->ops->action_take)
        return 0;
    return st->ops->action_take(st, facility, node, now_ms, out);
}

int
store_action_done(struct store *st, int64_t id)
{
    return st->ops->action_done ? st->ops->action_done(st, id) : -ENOTSUP;
}

void
store_action_clear(struct store_action *a)
{
    free(a->body);
    a->body = NULL;
}

int64_t
store_feed_head(struct store *st)
{
    return st->ops->feed_head ? st->ops->feed_head(st) : -ENOTSUP;
}

int
store_feed_notify(struct store *st, store_feed_cb *cb, void *arg)
{
    return st->ops->feed_notify ? st->ops->feed_notify(st, cb, arg) : -ENOTSUP;
}

void
store_transition_async(struct store *st, const char *id,
                       const struct server_row *row, enum fsm_state from,
                       const char *why, store_done_cb *cb, void *arg)
{
    if (st->ops->transition_async) {
        st->ops->transition_async(st, id, row, from, why, cb, arg);
        return;
    }
    int64_t rc = st->ops->transition(st, id, row, from, why);
    if (cb)
        cb(arg, rc);
}

void
store_save_server_async(struct store *st, const char *id,
                        const struct server_row *row, store_done_cb *cb,
                        void *arg)
{
    if (st->ops->save_server_async) {
        st->ops->save_server_async(st, id, row, cb, arg);
        return;
    }
    int64_t rc = st->ops->save_server(st, id, row);
    if (cb)
        cb(arg, rc);
}

void
store_append_event_async(struct store *st, const char *server, const char *kind,
                         const char *actor, const char *message,
                         store_done_cb *cb, void *arg)
{
    if (st->ops->append_event_async) {
        st->ops->append_event_async(st, server, kind, actor, message, cb, arg);
        return;
    }
    int64_t rc = st->ops->append_event(st, server, kind, actor, message);
    if (cb)
        cb(arg, rc);
}

void
store_lease_take_async(struct store *st, const char *facility, const char *node,
                       int64_t ttl_ms, int64_t now_ms, store_lease_cb *cb,
                       void *arg)
{
    if (st->ops->lease_take_async) {
        st->ops->lease_take_async(st, facility, node, ttl_ms, now_ms, cb, arg);
        return;
    }
    struct store_lease l = {0};
    int rc = store_lease_take(st, facility, node, ttl_ms, now_ms, &l);
    if (cb)
        cb(arg, rc, &l);
}

void
store_token_add_async(struct store *st, const char *token, const char *server,
                      int64_t created_ms, store_done_cb *cb, void *arg)
{
    if (st->ops->token_add_async) {
        st->ops->token_add_async(st, token, server, created_ms, cb, arg);
        return;
    }
    int64_t rc = store_token_add(st, token, server, created_ms);
    if (cb)
        cb(arg, rc);
}

void
store_token_mark_async(struct store *st, const char *token, const char *addr,
                       int64_t overlay_ms, store_done_cb *cb, void *arg)
{
    if (st->ops->token_mark_async) {
        st->ops->token_mark_async(st, token, addr, overlay_ms, cb, arg);
        return;
    }
    int64_t rc = store_token_mark(st, token, addr, overlay_ms);
    if (cb)
        cb(arg, rc);
}

void
store_token_revoke_server_async(struct store *st, const char *server,
                                store_done_cb *cb, void *arg)
{
    if (st->ops->token_revoke_server_async) {
        st->ops->token_revoke_server_async(st, server, cb, arg);
        return;
    }
    int64_t rc = store_token_revoke_server(st, server);
    if (cb)
        cb(arg, rc);
}

/* The blocking walk's events, copied, for one answer. */
struct events_copy {
    struct store_event *evs;
    size_t n, cap;
};

static int
copy_event(void *arg, const struct store_event *ev)
{
    struct events_copy *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->evs = xrealloc(c->evs, c->cap * sizeof(*c->evs));
    }
    struct store_event *e = &c->evs[c->n++];
    *e = *ev;
    e->server = dup_or_null(ev->server);
    e->kind = dup_or_null(ev->kind);
    e->from_state = dup_or_null(ev->from_state);
    e->to_state = dup_or_null(ev->to_state);
    e->actor = dup_or_null(ev->actor);
    e->message = dup_or_null(ev->message);
    return 0;
}

void
store_list_events_async(struct store *st, const char *server, int64_t after_id,
                        int limit, store_events_cb *cb, void *arg)
{
    if (st->ops->list_events_async) {
        st->ops->list_events_async(st, server, after_id, limit, cb, arg);
        return;
    }
    struct events_copy c = {0};
    int rc = store_list_events(st, server, after_id, limit, copy_event, &c);
    cb(arg, rc < 0 ? rc : 0, c.evs, rc < 0 ? 0 : c.n);
    for (size_t i = 0; i < c.n; i++) {
        struct store_event *e = &c.evs[i];
        free((char *)e->server);
        free((char *)e->kind);
        free((char *)e->from_state);
        free((char *)e->to_state);
        free((char *)e->actor);
        free((char *)e->message);
    }
    free(c.evs);
}

void
store_load_servers_async(struct store *st, const char *const *ids, size_t n,
                         store_row_cb *cb, void *arg)
{
    if (st->ops->load_servers_async) {
        st->ops->load_servers_async(st, ids, n, cb, arg);
        return;
    }
    int rc = 0;
    for (size_t i = 0; i < n && (rc == 0 || rc == -ENOENT); i++) {
        struct server_row row;
        if ((rc = store_load_server(st, ids[i], &row)) < 0)
            continue;
        cb(arg, 0, ids[i], &row);
        server_row_clear(&row);
    }
    cb(arg, rc == -ENOENT ? 0 : rc, NULL, NULL);
}

void
store_server_tokens_async(struct store *st, const char *const *ids, size_t n,
                          store_tokens_cb *cb, void *arg)
{
    if (st->ops->server_tokens_async) {
        st->ops->server_tokens_async(st, ids, n, cb, arg);
        return;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char token[128] = "", last[64] = "";
        struct store_token t = {0};
        int r = store_token_of_server(st, ids[i], token, sizeof(token));
        if (r == 0)
            r = store_token_get(st, token, &t);
        if (r < 0 && r != -ENOENT) {
            rc = r;
            break;
        }
        int la = store_token_last_addr(st, ids[i], last, sizeof(last));
        if (la < 0 && la != -ENOENT) {
            rc = la;
            break;
        }
        struct store_server_tokens v = {.server = ids[i],
                                        .token = r == 0 ? token : NULL,
                                        .addr = t.addr,
                                        .overlay_ms = t.overlay_ms,
                                        .last_addr = last};
        cb(arg, 0, &v);
    }
    cb(arg, rc, NULL);
}

void
store_action_add_async(struct store *st, const char *facility,
                       const char *server, const char *origin,
                       const char *actor, const char *body, store_done_cb *cb,
                       void *arg)
{
    if (st->ops->action_add_async) {
        st->ops->action_add_async(st, facility, server, origin, actor, body, cb,
                                  arg);
        return;
    }
    int64_t rc = store_action_add(st, facility, server, origin, actor, body);
    if (cb)
        cb(arg, rc);
}

void
store_action_take_async(struct store *st, const char *facility,
                        const char *node, int64_t now_ms, store_action_cb *cb,
                        void *arg)
{
    if (st->ops->action_take_async) {
        st->ops->action_take_async(st, facility, node, now_ms, cb, arg);
        return;
    }
    struct store_action a;
    int rc = store_action_take(st, facility, node, now_ms, &a);
    cb(arg, rc, rc == 1 ? &a : NULL);
    if (rc == 1)
        store_action_clear(&a);
}

void
store_action_done_async(struct store *st, int64_t id, store_done_cb *cb,
                        void *arg)
{
    if (st->ops->action_done_async) {
        st->ops->action_done_async(st, id, cb, arg);
        return;
    }
    int64_t rc = store_action_done(st, id);
    if (cb)
        cb(arg, rc);
}

void
store_token_get_async(struct store *st, const char *token, store_token_cb *cb,
                      void *arg)
{
    if (st->ops->token_get_async) {
        st->ops->token_get_async(st, token, cb, arg);
        return;
    }
    struct store_token t;
    int rc = store_token_get(st, token, &t);
    cb(arg, rc, rc == 0 ? &t : NULL);
}

int64_t
store_waiting_ms(const struct store *st)
{
    return st->ops->waiting_ms ? st->ops->waiting_ms(st) : 0;
}

int
store_flush(struct store *st)
{
    return st->ops->flush ? st->ops->flush(st) : 0;
}

bool
store_answering(struct store *st)
{
    if (st->ops->connected && !st->ops->connected(st))
        return false;
    return store_waiting_ms(st) <= STORE_SLOW_MS;
}
