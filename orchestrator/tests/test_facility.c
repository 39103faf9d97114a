/* Facilities and nodes: the store's lease and handed-on actions, on two
 * store handles of one SQLite file (two nodes on one machine), with the
 * clock passed in (the lease takes now_ms); then fleets of two or three
 * nodes on one shared file and one loop (fleetenv.h): an action asked on
 * a node of another facility is run by the active node, once; the other
 * nodes' views and streams follow the feed; a standby takes over.  All of
 * it again on the PostgreSQL that RESCUED_TEST_PG names (make unit starts
 * one with scripts/test-pg run; without it skipped, loudly), each test on
 * an empty schema. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api.h"
#include "bootpath.h"
#include "config.h"
#include "fleet.h"
#include "loop.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httpclient.h"

#include "fleetenv.h"

#define KEY                                                                    \
    "ssh-ed25519 "                                                             \
    "AAAAC3NzaC1lZDI1NTE5AAAAIL/8vzGNCpIQIPK+p7NoM73ZDLWF6tZAb3DPdMsVH8Ks "    \
    "test@facility"

/* The PostgreSQL of the second run (NULL: none), and whether this run is
 * on it. */
static const char *pg_url;
static bool on_pg;

static void
quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* An empty schema: the store migrates it from nothing at its open. */
static void
pg_reset(void)
{
    PGconn *c = PQconnectdb(pg_url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("raw connect: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL); /* DROP ... CASCADE's notices */
    PGresult *r = PQexec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("reset: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

/* The store the nodes of a test share: the file name under dir, or the
 * PostgreSQL.  The caller frees it. */
static char *
shared_url(const char *dir, const char *file)
{
    return on_pg ? xstrdup(pg_url) : xasprintf("sqlite:%s/%s", dir, file);
}

/* --- the store: two handles on one file ---------------------------------- */

struct two {
    char *dir;
    struct store *a, *b;
};

static int
two_setup(void **state)
{
    struct two *t = xcalloc(1, sizeof(*t));
    char err[256] = "";
    t->dir = tu_tmpdir_new("test_facility");
    if (on_pg)
        pg_reset();
    char *url = shared_url(t->dir, "shared.db");
    t->a = store_open(url, t->dir, err, sizeof(err));
    t->b = store_open(url, t->dir, err, sizeof(err));
    free(url);
    if (!t->a || !t->b)
        fail_msg("store_open: %s", err);
    *state = t;
    return 0;
}

static int
two_teardown(void **state)
{
    struct two *t = *state;
    store_close(t->a);
    store_close(t->b);
    int rc = tu_tmpdir_free(t->dir);
    free(t);
    return rc;
}

#define T0 1000000 /* any wall clock: the lease compares what it is given */
#define TTL 10000

static void
test_lease_take_renew_lapse(void **state)
{
    struct two *t = *state;
    struct store_lease l;

    /* Free: the first asker gets it; the other hears who has it. */
    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, T0, &l), 1);
    assert_string_equal(l.holder, "n1");
    assert_int_equal(l.expires_ms, T0 + TTL);
    assert_int_equal(store_lease_take(t->b, "fra", "n2", TTL, T0 + 1, &l), 0);
    assert_string_equal(l.holder, "n1");
    assert_int_equal(l.expires_ms, T0 + TTL);

    /* Renewed before it lapses: n2 still waits past the first expiry. */
    assert_int_equal(
        store_lease_take(t->a, "fra", "n1", TTL, T0 + TTL - 100, &l), 1);
    assert_int_equal(l.expires_ms, T0 + 2 * TTL - 100);
    assert_int_equal(store_lease_take(t->b, "fra", "n2", TTL, T0 + TTL, &l), 0);
    assert_string_equal(l.holder, "n1");

    /* n1 stops renewing (killed): at the expiry n2 takes it over... */
    int64_t lapse = T0 + 2 * TTL - 100;
    assert_int_equal(store_lease_take(t->b, "fra", "n2", TTL, lapse, &l), 1);
    assert_string_equal(l.holder, "n2");
    /* ...and n1, back, is refused and told who holds it now. */
    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, lapse + 1, &l),
                     0);
    assert_string_equal(l.holder, "n2");

    /* Another facility's lease is its own. */
    assert_int_equal(store_lease_take(t->a, "ams", "n1", TTL, lapse + 2, &l),
                     1);
    assert_int_equal(store_lease_take(t->b, "fra", "n2", TTL, lapse + 3, &l),
                     1);

    /* Released (a clean stop): the next asker gets it at once; a release
     * by a node that does not hold it changes nothing. */
    assert_int_equal(store_lease_release(t->a, "fra", "n1"), 0);
    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, lapse + 4, &l),
                     0);
    assert_int_equal(store_lease_release(t->b, "fra", "n2"), 0);
    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, lapse + 5, &l),
                     1);
}

/* The store's clock (what rescued's nodes use): PostgreSQL's, read from
 * the database, which all nodes share; sqlite's, this machine's. */
static int64_t
store_clock_ms(void)
{
    if (!on_pg)
        return now_wall_ms();
    PGconn *c = PQconnectdb(pg_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(
        c, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int64_t ms = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return ms;
}

/* Asked with STORE_NOW, as the nodes ask, the lease runs on the store's
 * clock: its expiry is that clock plus the ttl, it lapses by that clock,
 * and the actions are taken by it. */
static void
test_lease_store_clock(void **state)
{
    struct two *t = *state;
    struct store_lease l;
    int64_t before = store_clock_ms();
    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, STORE_NOW, &l),
                     1);
    int64_t after = store_clock_ms();
    assert_true(l.expires_ms >= before + TTL && l.expires_ms <= after + TTL);
    assert_int_equal(store_lease_take(t->b, "fra", "n2", TTL, STORE_NOW, &l),
                     0);
    assert_string_equal(l.holder, "n1");

    assert_int_equal(store_lease_take(t->a, "ams", "n1", 200, STORE_NOW, &l),
                     1);
    int64_t lapse = l.expires_ms;
    while (store_clock_ms() <= lapse)
        usleep(50 * 1000);
    assert_int_equal(store_lease_take(t->b, "ams", "n2", TTL, STORE_NOW, &l),
                     1);
    int64_t id = store_action_add(t->a, "ams", "srv9", "n3", "admin", "{}");
    struct store_action sa;
    assert_int_equal(store_action_take(t->a, "ams", "n1", STORE_NOW, &sa), 0);
    assert_int_equal(store_action_take(t->b, "ams", "n2", STORE_NOW, &sa), 1);
    assert_int_equal(sa.id, id);
    store_action_clear(&sa);
}

static void
test_actions_taken_once(void **state)
{
    struct two *t = *state;
    struct store_action sa;
    struct store_lease l;

    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, T0, &l), 1);
    int64_t id1 = store_action_add(t->b, "fra", "srv1", "n3", "admin",
                                   "{\"event\":\"rescue\"}");
    int64_t id2 = store_action_add(t->b, "fra", "srv2", "n3", "project:acme",
                                   "{\"event\":\"reboot\"}");
    int64_t id3 = store_action_add(t->b, "ams", "srv9", "n3", "admin", "{}");
    assert_true(id1 > 0 && id2 > id1 && id3 > id2);

    /* A node that does not hold the facility's lease takes nothing: not
     * the standby, not a node of another facility, not a lapsed holder. */
    assert_int_equal(store_action_take(t->b, "fra", "n2", T0, &sa), 0);
    assert_int_equal(store_action_take(t->b, "fra", "n3", T0, &sa), 0);
    assert_int_equal(store_action_take(t->a, "fra", "n1", T0 + TTL, &sa), 0);

    /* The holder takes them oldest first, each once, whatever handle
     * asks next. */
    assert_int_equal(store_action_take(t->a, "fra", "n1", T0 + 1, &sa), 1);
    assert_int_equal(sa.id, id1);
    assert_string_equal(sa.server, "srv1");
    assert_string_equal(sa.origin, "n3");
    assert_string_equal(sa.actor, "admin");
    assert_string_equal(sa.body, "{\"event\":\"rescue\"}");
    store_action_clear(&sa);
    assert_int_equal(store_action_take(t->b, "fra", "n1", T0 + 2, &sa), 1);
    assert_int_equal(sa.id, id2);
    assert_string_equal(sa.actor, "project:acme");
    store_action_clear(&sa);
    assert_int_equal(store_action_take(t->a, "fra", "n1", T0 + 3, &sa), 0);
    assert_int_equal(store_action_take(t->b, "fra", "n1", T0 + 3, &sa), 0);
    /* n1 finishes the first and dies with the second unfinished. */
    assert_int_equal(store_action_done(t->a, id1), 0);

    /* The next holder gets what n1 did not finish, once; not what it did. */
    assert_int_equal(store_lease_take(t->b, "fra", "n2", TTL, T0 + TTL + 1, &l),
                     1);
    assert_int_equal(store_action_take(t->b, "fra", "n2", T0 + TTL + 2, &sa),
                     1);
    assert_int_equal(sa.id, id2);
    store_action_clear(&sa);
    assert_int_equal(store_action_take(t->b, "fra", "n2", T0 + TTL + 3, &sa),
                     0);
    assert_int_equal(store_action_done(t->b, id2), 0);
    /* Done is done, for any holder after. */
    assert_int_equal(store_lease_take(t->a, "fra", "n1", TTL, T0 + 3 * TTL, &l),
                     1);
    assert_int_equal(store_action_take(t->a, "fra", "n1", T0 + 3 * TTL, &sa),
                     0);
    /* The other facility's is still there for its own holder. */
    assert_int_equal(store_lease_take(t->a, "ams", "n4", TTL, T0, &l), 1);
    assert_int_equal(store_action_take(t->a, "ams", "n4", T0 + 1, &sa), 1);
    assert_int_equal(sa.id, id3);
    store_action_clear(&sa);
}

static void
feed_told(void *arg)
{
    (*(int *)arg)++;
}

static bool
told_once(void *arg)
{
    return *(int *)arg > 0;
}

/* Until a backend waits for an advisory lock (true), or ms pass. */
static bool
wait_lock_waiter(int ms)
{
    PGconn *c = PQconnectdb(pg_url);
    bool seen = false;
    for (int64_t end = now_mono_ms() + ms; !seen && now_mono_ms() < end;) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM pg_locks"
                                " WHERE locktype = 'advisory' AND NOT granted");
        seen = PQresultStatus(r) == PGRES_TUPLES_OK &&
               strcmp(PQgetvalue(r, 0, 0), "0") != 0;
        PQclear(r);
        if (!seen)
            usleep(20000); /* a poll of the state, not a stand-in for it */
    }
    PQfinish(c);
    return seen;
}

static void
test_feed_head(void **state)
{
    struct two *t = *state;
    assert_int_equal(store_feed_head(t->a), 0);
    int64_t id = store_append_event(t->a, "srv1", "audit", "admin", "x");
    assert_true(id > 0);
    /* The other handle sees it: the follower's poll. */
    assert_int_equal(store_feed_head(t->b), id);
    if (!on_pg) {
        /* SQLite cannot notify another process: the caller polls. */
        assert_int_equal(store_feed_notify(t->b, NULL, NULL), -ENOTSUP);
        return;
    }
    /* PostgreSQL: b LISTENs on its loop; a's commit, a single event or a
     * batch, tells it, and nothing before the batch's commit. */
    struct loop *l = loop_new();
    store_attach_loop(t->b, l);
    int told = 0;
    assert_int_equal(store_feed_notify(t->b, feed_told, &told), 0);
    assert_true(store_append_event(t->a, "srv1", "audit", "admin", "y") > 0);
    assert_true(tu_pump_until(l, 5000, told_once, &told));
    told = 0;
    assert_int_equal(store_begin(t->a), 0);
    assert_true(store_append_event(t->a, "srv1", "audit", "admin", "z") > 0);
    tu_pump_for(l, 300);
    assert_int_equal(told, 0);
    assert_int_equal(store_commit(t->a), 0);
    assert_true(tu_pump_until(l, 5000, told_once, &told));
    assert_int_equal(store_feed_head(t->b), id + 2);
    store_close(t->b); /* its watchers go before the loop */
    t->b = NULL;
    loop_free(l);
}

/* PostgreSQL stopped and started again: b's LISTEN connection is lost
 * with it, made again once the server is back (the callback runs once for
 * what it may have missed), and the next commit by a node tells b again. */
static void
test_feed_notify_after_outage(void **state)
{
    struct two *t = *state;
    const char *dir = getenv("RESCUED_TEST_PG_DIR");
    if (!on_pg || !dir)
        skip(); /* sqlite: no notifications; no dir: nothing to stop */
    struct loop *l = loop_new();
    store_attach_loop(t->b, l);
    int told = 0;
    assert_int_equal(store_feed_notify(t->b, feed_told, &told), 0);
    char *stop = xasprintf("scripts/test-pg stop '%s'", dir);
    char *start = xasprintf("scripts/test-pg start '%s'", dir);
    assert_int_equal(system(stop), 0);
    tu_pump_for(l, 1500); /* b sees its LISTEN connection go */
    assert_int_equal(told, 0);
    assert_int_equal(system(start), 0);
    assert_true(tu_pump_until(l, 15000, told_once, &told));
    told = 0;
    /* A node that came up after the outage (a's own connection died with
     * the server; its first call after is store_pg's reconnect story). */
    char err[256] = "";
    struct store *c = store_open(pg_url, t->dir, err, sizeof(err));
    assert_non_null(c);
    assert_true(store_append_event(c, "srv1", "audit", "admin", "x") > 0);
    assert_true(tu_pump_until(l, 5000, told_once, &told));
    store_close(c);
    free(stop);
    free(start);
    store_close(t->b);
    t->b = NULL;
    loop_free(l);
}

/* PostgreSQL: events of two writers commit in id order, so a follower
 * that read up to the head has missed none.  a holds an event in an open
 * batch; a child appends one: it waits for a's commit instead of
 * committing a greater id first (the head stays behind a's event), then
 * lands after it. */
static void
test_feed_ids_commit_in_order(void **state)
{
    struct two *t = *state;
    if (!on_pg)
        skip(); /* sqlite: one writer at a time */
    assert_int_equal(store_begin(t->a), 0);
    int64_t id1 = store_append_event(t->a, "srv1", "audit", "admin", "1");
    assert_true(id1 > 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        char err[256] = "";
        struct store *c = store_open(pg_url, t->dir, err, sizeof(err));
        int64_t id2 =
            c ? store_append_event(c, "srv2", "audit", "admin", "2") : -1;
        _exit(id2 > id1 ? 0 : 1);
    }
    /* The child's writer is queued behind a's batch: a lock wait. */
    assert_true(wait_lock_waiter(10000));
    assert_int_equal(store_feed_head(t->b), 0);
    assert_int_equal(store_commit(t->a), 0);
    int status;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(store_feed_head(t->b) > id1);
}

/* Nodes started at the same moment on a fresh shared file: each opens
 * it, the schema is migrated once, none fails on a table the other just
 * made.  Four processes, let go together through a pipe. */
static void
test_nodes_migrate_at_once(void **state)
{
    struct two *t = *state;
    char *url = shared_url(t->dir, "fresh.db");
    if (on_pg)
        pg_reset(); /* t's handles are idle: nothing of theirs is locked */
    int go[2];
    pid_t kids[4];
    assert_int_equal(pipe(go), 0);
    for (size_t i = 0; i < 4; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            char c, err[256] = "";
            close(go[1]);
            if (read(go[0], &c, 1) < 0)
                _exit(2);
            struct store *st = store_open(url, t->dir, err, sizeof(err));
            if (!st)
                fprintf(stderr, "child %zu: %s\n", i, err);
            int ok =
                st && store_schema_version(st) == store_schema_version(t->a);
            store_close(st);
            _exit(ok ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]); /* all read EOF at once */
    int failed = 0;
    for (size_t i = 0; i < 4; i++) {
        int status;
        assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    free(url);
    assert_int_equal(failed, 0);
}

/* --- fleets of several nodes on one file and one loop --------------------- */

/* Two facilities, one server in each; manual: power (the real driver,
 * which answers at once). */
#define SECTIONS                                                               \
    "[project:acme]\n"                                                         \
    "[server:srv1]\n"                                                          \
    "mac = 52:54:00:00:00:01\n"                                                \
    "project = acme\n"                                                         \
    "power = manual:\n"                                                        \
    "facility = fra\n"                                                         \
    "[server:srv2]\n"                                                          \
    "mac = 52:54:00:00:00:02\n"                                                \
    "project = acme\n"                                                         \
    "power = manual:\n"                                                        \
    "facility = ams\n"                                                         \
    "[facility:fra]\n"                                                         \
    "console_host = sos.fra.example.net\n"                                     \
    "[timeouts]\n"                                                             \
    "rebooting = 2\n"                                                          \
    "retries = 0\n"

struct node {
    struct store *st;
    struct fleet *fleet;
    uint64_t sub;
    struct buf seen; /* "server:from>to\n" of every transition it told */
};

struct nodes {
    struct env *e; /* node 0's env: the dir and the loop */
    struct node n[3];
    size_t count;
};

static void
seen_event(void *arg, const struct store_event *ev)
{
    struct node *n = arg;
    if (strcmp(ev->kind, "transition") == 0)
        buf_printf(&n->seen, "%s:%s>%s\n", ev->server, ev->from_state,
                   ev->to_state);
}

static void
node_start(struct nodes *ns, size_t i, const char *name, const char *facility)
{
    char *url = shared_url(ns->e->dir, "shared.db");
    char *rescued = xasprintf("node = %s\nfacility = %s\nlease = 1\n"
                              "store = %s\n",
                              name, facility, url);
    free(url);
    struct config *cfg = env_config(ns->e, rescued, SECTIONS);
    free(rescued);
    char err[512] = "";
    struct node *n = &ns->n[i];
    n->st = store_open(cfg->store, cfg->data_dir, err, sizeof(err));
    if (!n->st)
        fail_msg("store: %s", err);
    store_attach_loop(n->st, ns->e->loop); /* as rescued.c: PG's LISTEN */
    n->fleet = fleet_new(ns->e->loop, cfg, n->st, err, sizeof(err));
    if (!n->fleet)
        fail_msg("fleet: %s", err);
    n->sub = fleet_subscribe(n->fleet, NULL, seen_event, n);
    if (i >= ns->count)
        ns->count = i + 1;
}

static void
node_stop(struct node *n)
{
    if (!n->fleet)
        return;
    fleet_unsubscribe(n->fleet, n->sub);
    fleet_free(n->fleet);
    store_close(n->st);
    buf_free(&n->seen);
    memset(n, 0, sizeof(*n));
}

static int
nodes_setup(void **state)
{
    struct nodes *ns = xcalloc(1, sizeof(*ns));
    ns->e = env_dir_new("kernel");
    ns->e->loop = loop_new();
    if (on_pg)
        pg_reset();
    *state = ns;
    return 0;
}

static int
nodes_teardown(void **state)
{
    struct nodes *ns = *state;
    for (size_t i = 0; i < 3; i++)
        node_stop(&ns->n[i]);
    loop_free(ns->e->loop);
    ns->e->loop = NULL;
    assert_int_equal(tu_tmpdir_free(ns->e->dir), 0);
    free(ns->e);
    free(ns);
    return 0;
}

/* One string field of a server's JSON on a node. */
static const char *
json_field(struct node *n, const char *id, const char *key)
{
    static char v[128];
    const struct config_server *cs =
        config_find_server(fleet_config(n->fleet), id);
    json_t *o = fleet_server_json(n->fleet, cs);
    const char *s = json_string_value(json_object_get(o, key));
    strlcpy_s(v, s ? s : "(null)", sizeof(v));
    json_decref(o);
    return v;
}

static int
act_on(struct node *n, const char *id, enum fsm_event ev, char *err,
       size_t errlen)
{
    const char *keys[] = {KEY};
    struct fleet_action a = {.event = ev,
                             .ssh_keys = keys,
                             .nkeys = ev == FSM_EV_RESCUE,
                             .actor = "admin"};
    return fleet_action(n->fleet, id, &a, err, errlen);
}

struct state_wait {
    struct node *n;
    const char *id, *state;
};

static bool
in_state(void *arg)
{
    struct state_wait *w = arg;
    return strcmp(json_field(w->n, w->id, "state"), w->state) == 0;
}

static bool
wait_state(struct nodes *ns, struct node *n, const char *id, const char *st)
{
    struct state_wait w = {n, id, st};
    return tu_pump_until(ns->e->loop, 10000, in_state, &w);
}

struct count {
    const char *to;
    int n;
};

static int
count_cb(void *arg, const struct store_event *ev)
{
    struct count *c = arg;
    if (strcmp(ev->kind, "transition") == 0 && strcmp(ev->to_state, c->to) == 0)
        c->n++;
    return 0;
}

static int
transitions_into(struct store *st, const char *id, const char *to)
{
    struct count c = {to, 0};
    assert_int_equal(store_list_events(st, id, 0, 0, count_cb, &c), 0);
    return c.n;
}

struct like {
    const char *text;
    int n;
};

static int
like_cb(void *arg, const struct store_event *ev)
{
    struct like *c = arg;
    if (ev->message && strstr(ev->message, c->text))
        c->n++;
    return 0;
}

static int told_rc;

static void
told_cb(void *arg, int rc, const char *err)
{
    (void)err;
    told_rc = rc;
    *(bool *)arg = true;
}

static void
set_true(void *arg, int rc)
{
    assert_int_equal(rc, 0);
    *(bool *)arg = true;
}

static bool
is_true(void *arg)
{
    return *(bool *)arg;
}

/* How many of id's stored events say text. */
static int
messages_like(struct store *st, const char *id, const char *text)
{
    struct like c = {text, 0};
    assert_int_equal(store_list_events(st, id, 0, 0, like_cb, &c), 0);
    return c.n;
}

static void
test_action_through_another_facility(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    node_start(ns, 0, "fra-1", "fra");
    node_start(ns, 1, "ams-1", "ams");
    struct node *fra = &ns->n[0], *ams = &ns->n[1];

    /* Each runs its own facility's server, and only that one. */
    assert_non_null(strstr(json_field(fra, "srv1", "facility"), "fra"));
    assert_string_equal(json_field(fra, "srv1", "console_host"),
                        "sos.fra.example.net");
    assert_string_equal(json_field(ams, "srv2", "console_host"), "(null)");
    assert_string_equal(json_field(ams, "srv1", "console"),
                        "ssh -p 2222 srv1@sos.fra.example.net");
    assert_string_equal(json_field(ams, "srv2", "console"),
                        "ssh -p 2222 srv2@127.0.0.1");
    struct buf m = {0};
    fleet_metrics(ams->fleet, &m);
    assert_non_null(strstr(
        m.data, "rescued_facility_active{facility=\"ams\",node=\"ams-1\"} 1"));
    buf_free(&m);

    /* Asked on ams for fra's server: queued, not run there, and told
     * from the loop as the API needs (not before the call returns)... */
    bool told = false;
    const char *keys[] = {KEY};
    struct fleet_action a = {
        .event = FSM_EV_RESCUE, .ssh_keys = keys, .nkeys = 1, .actor = "admin"};
    assert_int_equal(fleet_action_async(ams->fleet, "srv1", &a, told_cb, &told,
                                        err, sizeof(err)),
                     0);
    assert_false(told);
    assert_true(tu_pump_until(ns->e->loop, 5000, is_true, &told));
    assert_int_equal(told_rc, 0);
    assert_string_equal(json_field(ams, "srv1", "state"), "active");
    /* ...taken by fra's active node, which moves it; ams's view and
     * stream follow. */
    assert_true(wait_state(ns, fra, "srv1", "rebooting"));
    assert_true(wait_state(ns, ams, "srv1", "rebooting"));
    assert_true(tu_until_text(5000, &ams->seen,
                              "srv1:active>rescue_requested\n"
                              "srv1:rescue_requested>rebooting\n",
                              tu_loop_turn, ns->e->loop));
    assert_non_null(
        strstr(fra->seen.data, "srv1:rescue_requested>rebooting\n"));
    /* Once, though both nodes looked at the feed many times. */
    tu_pump_for(ns->e->loop, 600);
    assert_int_equal(transitions_into(fra->st, "srv1", "rescue_requested"), 1);

    /* A refusal of the active node lands in the server's history: a
     * second enter, queued before ams heard of the first, is refused
     * there (not in this state), and nothing moves. */
    assert_true(store_action_add(ams->st, "fra", "srv1", "ams-1", "admin",
                                 "{\"event\":\"rescue\",\"ttl_s\":0,"
                                 "\"ssh_keys\":[]}") > 0);
    store_append_event(ams->st, "srv1", "audit", "admin", "poke");
    tu_pump_for(ns->e->loop, 800);
    assert_int_equal(transitions_into(fra->st, "srv1", "rescue_requested"), 1);
    assert_string_equal(json_field(fra, "srv1", "state"), "rebooting");
    assert_int_equal(messages_like(fra->st, "srv1",
                                   "rescue asked on node ams-1 refused: "
                                   "server is busy: rebooting"),
                     1);

    /* The boot path of fra's server is fra's: on ams it is refused and
     * stores nothing (the kernel fetch would bind the token there). */
    char token[65];
    assert_int_equal(
        store_token_of_server(ams->st, "srv1", token, sizeof(token)), 0);
    int64_t head = store_feed_head(ams->st);
    assert_int_equal(fleet_image_fetched(ams->fleet, "vmlinuz", token,
                                         "127.0.0.1", false, err, sizeof(err)),
                     -EBUSY);
    assert_non_null(strstr(err, "its facility's active node does"));
    struct buf script = {0};
    assert_int_equal(fleet_boot_script(ams->fleet, "52:54:00:00:00:01",
                                       "127.0.0.1", false, &script),
                     0);
    buf_free(&script);
    assert_int_equal(store_feed_head(ams->st), head);
    struct store_token tk;
    assert_int_equal(store_token_get(ams->st, token, &tk), 0);
    assert_string_equal(tk.addr, "");
    /* On fra the same fetch moves it. */
    assert_int_equal(fleet_image_fetched(fra->fleet, "vmlinuz", token,
                                         "127.0.0.1", false, err, sizeof(err)),
                     0);
    /* ams's view follows when the feed tells it (it reads no store per
     * look). */
    assert_true(wait_state(ns, ams, "srv1", "rescue_booting"));

    /* The ams node has no driver of fra's servers... */
    assert_int_equal(fleet_console_power(ams->fleet, "srv1", POWER_NMI, NULL),
                     -EREMOTE);
    /* ...so an NMI asked there is handed to fra, which sends it (it was
     * refused with 409). */
    told = false;
    struct fleet_action nmi = {.nmi = true, .actor = "admin"};
    assert_int_equal(fleet_action_async(ams->fleet, "srv1", &nmi, told_cb,
                                        &told, err, sizeof(err)),
                     0);
    assert_true(tu_pump_until(ns->e->loop, 5000, is_true, &told));
    assert_int_equal(told_rc, 0);
    /* Two audits: where it was asked, and fra's as it sends it. */
    for (int i = 0;
         i < 100 && messages_like(fra->st, "srv1", "nmi requested") < 2; i++)
        tu_pump_for(ns->e->loop, 50);
    assert_int_equal(messages_like(fra->st, "srv1", "nmi requested"), 2);
    assert_int_equal(messages_like(fra->st, "srv1",
                                   "nmi requested on node ams-1, for the "
                                   "active node of facility fra"),
                     1);
    assert_string_equal(json_field(fra, "srv1", "state"), "rescue_booting");
}

static void
test_standby_takes_over(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    node_start(ns, 0, "fra-1", "fra");
    node_start(ns, 1, "fra-2", "fra");
    node_start(ns, 2, "ams-1", "ams");
    struct node *act = &ns->n[0], *standby = &ns->n[1], *ams = &ns->n[2];
    struct buf m = {0};
    fleet_metrics(standby->fleet, &m);
    assert_non_null(strstr(
        m.data, "rescued_facility_active{facility=\"fra\",node=\"fra-2\"} 0"));
    buf_free(&m);

    /* Asked on the standby: the active node runs it. */
    assert_int_equal(act_on(standby, "srv1", FSM_EV_RESCUE, err, sizeof(err)),
                     0);
    assert_true(wait_state(ns, act, "srv1", "rebooting"));
    assert_true(wait_state(ns, standby, "srv1", "rebooting"));

    /* The active node stops; the standby takes the lease, resumes srv1
     * from where the store has it, and takes the next action itself. */
    node_stop(act);
    m = (struct buf){0};
    bool active = false;
    for (int i = 0; i < 100 && !active; i++) {
        tu_pump_for(ns->e->loop, 50);
        fleet_metrics(standby->fleet, &m);
        active = strstr(m.data, "rescued_facility_active{facility=\"fra\","
                                "node=\"fra-2\"} 1") != NULL;
        buf_reset(&m);
    }
    buf_free(&m);
    assert_true(active);
    /* Its rebooting deadline, resumed here, passes (nobody power-cycles a
     * manual: server in a test); then an exit asked on ams runs here. */
    assert_true(wait_state(ns, standby, "srv1", "rescue_failed"));
    assert_int_equal(act_on(ams, "srv1", FSM_EV_EXIT_RESCUE, err, sizeof(err)),
                     0);
    assert_true(wait_state(ns, standby, "srv1", "exiting"));
    assert_true(wait_state(ns, ams, "srv1", "exiting"));
    assert_int_equal(transitions_into(standby->st, "srv1", "rescue_requested"),
                     1);
}

/* Another session holds tables (a database that stopped answering for
 * them) until unlock_tables; the server lets go by itself should the test
 * fail before (the next test's reset would wait for it forever). */
static PGconn *
lock_tables(const char *tables)
{
    PGconn *c = PQconnectdb(pg_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SET idle_in_transaction_session_timeout = '5s'; BEGIN;"
             " LOCK TABLE %s IN ACCESS EXCLUSIVE MODE",
             tables);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    return c;
}

static void
unlock_tables(PGconn *c)
{
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
}

/* Two boot-path fetches back to back, before the store has answered the
 * first one's change (a network store answers from the loop): the second
 * waits for it and is applied to the stored state, so both changes are
 * stored once each, in order, and the stream tells them in that order. */
static void
test_inputs_wait_for_the_step_before(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    node_start(ns, 0, "fra-1", "fra");
    struct node *fra = &ns->n[0];
    assert_int_equal(act_on(fra, "srv1", FSM_EV_RESCUE, err, sizeof(err)), 0);
    assert_true(wait_state(ns, fra, "srv1", "rebooting"));
    char token[65];
    assert_int_equal(
        store_token_of_server(fra->st, "srv1", token, sizeof(token)), 0);
    struct buf script = {0};
    assert_int_equal(fleet_boot_script(fra->fleet, "52:54:00:00:00:01",
                                       "127.0.0.1", false, &script),
                     0);
    buf_free(&script);
    assert_int_equal(fleet_image_fetched(fra->fleet, "vmlinuz", token,
                                         "127.0.0.1", false, err, sizeof(err)),
                     0);
    /* A fast client's overlay fetch, right after: it waits until the
     * kernel's step is stored (told by fleet_boot_settle), then is served,
     * not refused as "not this step". */
    bool settled = false;
    if (!fleet_boot_settle(fra->fleet, token, NULL, set_true, &settled))
        assert_true(tu_pump_until(ns->e->loop, 5000, is_true, &settled));
    struct buf ovl = {0};
    assert_int_equal(fleet_overlay(fra->fleet, token, "127.0.0.1", &ovl, err,
                                   sizeof(err)),
                     0);
    buf_free(&ovl);
    assert_true(wait_state(ns, fra, "srv1", "rescue_booting"));
    assert_true(tu_until_text(5000, &fra->seen,
                              "srv1:rebooting>pxe_booting\n"
                              "srv1:pxe_booting>rescue_booting\n",
                              tu_loop_turn, ns->e->loop));
    assert_int_equal(store_flush(fra->st), 0);
    assert_int_equal(transitions_into(fra->st, "srv1", "pxe_booting"), 1);
    assert_int_equal(transitions_into(fra->st, "srv1", "rescue_booting"), 1);
    struct server_row row;
    assert_int_equal(store_load_server(fra->st, "srv1", &row), 0);
    assert_int_equal(row.fsm.state, FSM_RESCUE_BOOTING);
    server_row_clear(&row);
}

/* The boot path never waits on the store: with the tables held by
 * another session (a database that has stopped answering), the iPXE
 * script and the kernel fetch are answered at once, their writes still
 * waiting, and the loop is never held; once the database answers, both
 * changes are stored, in order.  (Before: the token reads waited out
 * the bound, and the kernel fetch was lost.) */
static void
test_boot_path_waits_on_no_store(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    if (!on_pg)
        skip(); /* sqlite's writes are local: nothing to wait on */
    node_start(ns, 0, "fra-1", "fra");
    struct node *fra = &ns->n[0];
    assert_int_equal(act_on(fra, "srv1", FSM_EV_RESCUE, err, sizeof(err)), 0);
    assert_true(wait_state(ns, fra, "srv1", "rebooting"));
    char token[65];
    assert_int_equal(
        store_token_of_server(fra->st, "srv1", token, sizeof(token)), 0);
    uint64_t stalls = loop_stats(ns->e->loop)->stalls;

    PGconn *locker = lock_tables("servers, events, tokens");
    struct buf script = {0};
    assert_int_equal(fleet_boot_script(fra->fleet, "52:54:00:00:00:01",
                                       "127.0.0.1", false, &script),
                     0);
    assert_non_null(strstr(script.data, token));
    buf_free(&script);
    assert_int_equal(fleet_image_fetched(fra->fleet, "vmlinuz", token,
                                         "127.0.0.1", false, err, sizeof(err)),
                     0);
    assert_true(store_waiting_ms(fra->st) > 0); /* asked, not waited for */
    assert_string_equal(json_field(fra, "srv1", "state"), "rebooting");
    tu_pump_for(ns->e->loop, 300);
    assert_string_equal(json_field(fra, "srv1", "state"), "rebooting");
    unlock_tables(locker);

    assert_true(wait_state(ns, fra, "srv1", "rescue_booting"));
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
    assert_int_equal(store_flush(fra->st), 0);
    assert_int_equal(transitions_into(fra->st, "srv1", "pxe_booting"), 1);
    assert_int_equal(transitions_into(fra->st, "srv1", "rescue_booting"), 1);
}

/* Another facility's server is shown from memory: with the servers
 * table held by another session, ams answers its view of fra's server at
 * once and the loop is never held (before: each look read the row, and
 * waited out the bound); the rest of the row (the phone-home report, not
 * only the state) follows the feed once the database answers.  An action
 * asked meanwhile on ams for it waits without holding the loop either. */
static void
test_other_facility_from_memory(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    if (!on_pg)
        skip(); /* sqlite's reads are local: nothing to wait on */
    node_start(ns, 0, "fra-1", "fra");
    node_start(ns, 1, "ams-1", "ams");
    struct node *fra = &ns->n[0], *ams = &ns->n[1];
    assert_int_equal(act_on(ams, "srv1", FSM_EV_RESCUE, err, sizeof(err)), 0);
    assert_true(wait_state(ns, fra, "srv1", "rebooting"));
    assert_true(wait_state(ns, ams, "srv1", "rebooting"));
    char token[65];
    assert_int_equal(
        store_token_of_server(fra->st, "srv1", token, sizeof(token)), 0);
    uint64_t stalls = loop_stats(ns->e->loop)->stalls;

    PGconn *locker = lock_tables("servers");
    int64_t t0 = now_mono_ms();
    for (int i = 0; i < 50; i++)
        assert_string_equal(json_field(ams, "srv1", "state"), "rebooting");
    struct buf text = {0};
    const struct config_server *cs =
        config_find_server(fleet_config(ams->fleet), "srv1");
    assert_int_equal(fleet_server_json_text(ams->fleet, cs, &text), 0);
    assert_non_null(strstr(text.data, "\"rebooting\""));
    buf_free(&text);
    /* One read waiting for the lock would take the store's whole bound
     * (2000 ms) by itself, and fail. */
    assert_true(now_mono_ms() - t0 < 1500);
    assert_null(strstr(store_last_error(ams->st), "loading server"));
    /* An exit asked on ams, judged by the row it reads first: refused
     * once the read comes (rebooting takes no exit), the loop free. */
    bool told = false;
    struct fleet_action a = {.event = FSM_EV_EXIT_RESCUE, .actor = "admin"};
    assert_int_equal(fleet_action_async(ams->fleet, "srv1", &a, told_cb, &told,
                                        err, sizeof(err)),
                     0);
    tu_pump_for(ns->e->loop, 300);
    assert_false(told);
    unlock_tables(locker);
    assert_true(tu_pump_until(ns->e->loop, 5000, is_true, &told));
    assert_int_equal(told_rc, -EBUSY);

    /* fra boots it to rescue; ams shows the rescue OS's report. */
    struct buf script = {0};
    assert_int_equal(fleet_boot_script(fra->fleet, "52:54:00:00:00:01",
                                       "127.0.0.1", false, &script),
                     0);
    buf_free(&script);
    assert_int_equal(fleet_image_fetched(fra->fleet, "vmlinuz", token,
                                         "127.0.0.1", false, err, sizeof(err)),
                     0);
    assert_true(wait_state(ns, fra, "srv1", "rescue_booting"));
    json_t *report = json_pack("{s:s}", "ip", "127.0.0.1");
    assert_int_equal(fleet_phone_home(fra->fleet, token, "127.0.0.1", report,
                                      err, sizeof(err)),
                     0);
    json_decref(report);
    assert_true(wait_state(ns, ams, "srv1", "rescue"));
    json_t *o = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(o);
        o = fleet_server_json(ams->fleet, cs);
        if (json_object_get(json_object_get(o, "rescue"), "ip"))
            break;
        tu_pump_for(ns->e->loop, 50);
    }
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "rescue"), "ip")),
        "127.0.0.1");
    json_decref(o);
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
}

/* One metric of a node, as /metrics shows it ("" when absent). */
static bool
metric_is(struct node *n, const char *line)
{
    struct buf m = {0};
    fleet_metrics(n->fleet, &m);
    bool is = strstr(m.data, line) != NULL;
    buf_free(&m);
    return is;
}

/* A takeover reads the facility's servers without waiting: with their
 * rows and tokens held by another session, the standby wins the lease,
 * says it is not running them yet, and its loop is never held (before:
 * three blocking reads a server, each waiting out the bound); once the
 * database answers, it runs them from their stored state. */
static void
test_takeover_reads_without_waiting(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    if (!on_pg)
        skip(); /* sqlite's reads are local: nothing to wait on */
    node_start(ns, 0, "fra-1", "fra");
    node_start(ns, 1, "fra-2", "fra");
    struct node *act = &ns->n[0], *standby = &ns->n[1];
    assert_int_equal(act_on(act, "srv1", FSM_EV_RESCUE, err, sizeof(err)), 0);
    assert_true(wait_state(ns, act, "srv1", "rebooting"));
    assert_true(wait_state(ns, standby, "srv1", "rebooting"));
    assert_int_equal(store_flush(act->st), 0);
    node_stop(act); /* a clean stop: the lease is free at once */
    uint64_t stalls = loop_stats(ns->e->loop)->stalls;

    PGconn *locker = lock_tables("servers, tokens");
    for (int i = 0;
         i < 60 && !metric_is(standby, "rescued_lease_changes_total 1"); i++)
        tu_pump_for(ns->e->loop, 50);
    assert_true(metric_is(standby, "rescued_lease_changes_total 1"));
    tu_pump_for(ns->e->loop, 300);
    assert_true(metric_is(
        standby, "rescued_facility_active{facility=\"fra\",node=\"fra-2\"} 0"));
    assert_int_equal(
        fleet_console_power(standby->fleet, "srv1", POWER_NMI, NULL), -EREMOTE);
    unlock_tables(locker);

    for (int i = 0; i < 100 && !metric_is(standby, "rescued_facility_active{"
                                                   "facility=\"fra\",node="
                                                   "\"fra-2\"} 1");
         i++)
        tu_pump_for(ns->e->loop, 50);
    assert_true(metric_is(
        standby, "rescued_facility_active{facility=\"fra\",node=\"fra-2\"} 1"));
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
    /* It runs srv1 now, from where the store has it, with its token. */
    assert_string_equal(json_field(standby, "srv1", "state"), "rebooting");
    assert_int_equal(
        fleet_console_power(standby->fleet, "srv1", POWER_NMI, NULL), 0);
    char token[65];
    assert_int_equal(
        store_token_of_server(standby->st, "srv1", token, sizeof(token)), 0);
    struct buf script = {0};
    assert_int_equal(fleet_boot_script(standby->fleet, "52:54:00:00:00:01",
                                       "127.0.0.1", false, &script),
                     0);
    assert_non_null(strstr(script.data, token));
    buf_free(&script);
    assert_true(wait_state(ns, standby, "srv1", "pxe_booting"));
}

/* Start c without waiting for its answer (hc_stream_open waits for it). */
static void
stream_start(struct hc_stream *s, const struct call *c)
{
    memset(s, 0, sizeof(*s));
    s->h = easy_new(c, &s->r, &s->hdrs, &s->up);
    curl_multi_add_handle(HC.multi, s->h);
}

/* Is each of texts in b once, in this order? */
static bool
once_in_order(const struct buf *b, const char *const *texts, size_t n)
{
    const char *at = b->data ? b->data : "";
    for (size_t i = 0; i < n; i++) {
        const char *p = strstr(at, texts[i]);
        if (!p || strstr(p + 1, texts[i]))
            return false;
        at = p + strlen(texts[i]);
    }
    return true;
}

/* PostgreSQL with the events table held by another session (longer than
 * a stall, shorter than the store's bound): opening an event stream with
 * history does not hold the loop (the first page is read without
 * waiting, the request parked); once the table is let go, the history
 * comes, in order, then a live event, each once.  (Before: the page was
 * read with the blocking call, and the loop waited the bound.) */
static void
test_stream_history_waits_on_no_store(void **state)
{
    struct nodes *ns = *state;
    if (!on_pg)
        skip(); /* sqlite's reads are local: nothing to wait on */
    node_start(ns, 0, "fra-1", "fra");
    struct node *fra = &ns->n[0];
    struct http *h = hc_serve(ns->e->loop);
    api_register(h, fra->fleet);
    for (int i = 1; i <= 3; i++) {
        char m[16];
        snprintf(m, sizeof(m), "h%d", i);
        assert_true(store_append_event(fra->st, "srv1", "audit", "admin", m) >
                    0);
    }
    tu_pump_for(ns->e->loop, 100); /* the feed, the retention have looked */
    uint64_t stalls = loop_stats(ns->e->loop)->stalls;

    PGconn *locker = lock_tables("events");
    struct hc_stream s;
    stream_start(&s, &(struct call){"GET", "/v1/servers/srv1/events?after=0",
                                    ADMIN, NULL, NULL, false,
                                    "Accept: text/event-stream"});
    assert_false(tu_until_text(800, &s.r.body, "\"h1\"", hc_turn, NULL));
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
    unlock_tables(locker);

    assert_true(tu_until_text(5000, &s.r.body, "\"h3\"", hc_turn, NULL));
    fleet_audit(fra->fleet, "srv1", "admin", "live1");
    assert_true(tu_until_text(5000, &s.r.body, "live1", hc_turn, NULL));
    const char *order[] = {"\"h1\"", "\"h2\"", "\"h3\"", "live1"};
    if (!once_in_order(&s.r.body, order, 4))
        fail_msg("not once each in order: %s", s.r.body.data);
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
    hc_stream_close(&s);
    http_free(h);
    hc_stop();
}

/* PostgreSQL: a page of a long history that the store cannot read (the
 * events table held by another session past the store's bound) does not
 * end the paging with a gap: the stream says why, asks again, and once
 * the table is let go goes on; every event comes once, in order, and the
 * loop never waited.  (Before: the read held the loop for the bound, then
 * the stream went live, the rest of the history never sent.) */
static void
test_stream_pages_wait_for_the_store(void **state)
{
    struct nodes *ns = *state;
    if (!on_pg)
        skip(); /* sqlite's reads are local: nothing to wait on */
    node_start(ns, 0, "fra-1", "fra");
    struct node *fra = &ns->n[0];
    struct http *h = hc_serve(ns->e->loop);
    api_register(h, fra->fleet);
    enum { N = 3000 };
    assert_int_equal(store_begin(fra->st), 0);
    for (int i = 0; i < N; i++) {
        char m[32];
        snprintf(m, sizeof(m), "n%04d ", i);
        assert_true(store_append_event(fra->st, "srv1", "audit", "admin", m) >
                    0);
    }
    assert_int_equal(store_commit(fra->st), 0);
    tu_pump_for(ns->e->loop, 100); /* the feed, the retention have looked */
    uint64_t stalls = loop_stats(ns->e->loop)->stalls;

    struct hc_stream s;
    assert_true(hc_stream_open(
        &s,
        &(struct call){"GET", "/v1/servers/srv1/events?after=0", ADMIN, NULL,
                       NULL, false, "Accept: text/event-stream"},
        "n0000 "));
    PGconn *locker = lock_tables("events");
    bool said = tu_until_text(6000, &s.r.body, "the store is not answering",
                              hc_turn, NULL);
    unlock_tables(locker);
    assert_true(said);
    assert_null(strstr(s.r.body.data, "n2999 "));
    assert_true(tu_until_text(20000, &s.r.body, "n2999 ", hc_turn, NULL));
    size_t n = 0;
    long long last = 0;
    for (const char *p = s.r.body.data; (p = strstr(p, "\nid: ")); p++) {
        long long id = atoll(p + 5);
        assert_true(id > last);
        last = id;
        n++;
    }
    assert_int_equal(n, N);
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
    hc_stream_close(&s);
    http_free(h);
    hc_stop();
}

/* Turn until s's request is over (curl is done with it). */
static bool
stream_done(struct hc_stream *s, const struct call *c, int ms)
{
    struct hc_wait w = {.c = c, .h = s->h};
    bool done = tu_until(ms, tu_flag, &w.done, hc_wait_turn, &w);
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->r.status);
    return done;
}

/* The boot path's look at a token not live on this node waits for the
 * store without holding the loop: with the tokens table held by another
 * session (PostgreSQL), a kernel fetch with a token nobody minted is
 * parked, the loop turning, and once the table is let go it gets
 * today's answer (the file, no event).  Another facility's token gets
 * its 409, for the kernel and the overlay.  (Before: each such request
 * read the token with the blocking call, and the loop waited on the
 * database once per request.) */
static void
test_stranger_token_waits_on_no_store(void **state)
{
    struct nodes *ns = *state;
    node_start(ns, 0, "fra-1", "fra");
    struct node *fra = &ns->n[0];
    struct http *h = hc_serve(ns->e->loop);
    bootpath_register(h, fra->fleet);
    const char *ams_tok = "a1b2c3d4a1b2c3d4a1b2c3d4a1b2c3d4"
                          "a1b2c3d4a1b2c3d4a1b2c3d4a1b2c3d4";
    assert_int_equal(store_token_add(fra->st, ams_tok, "srv2", now_wall_ms()),
                     0);
    tu_pump_for(ns->e->loop, 100); /* the start's retention pass is done */
    uint64_t stalls = loop_stats(ns->e->loop)->stalls;
    struct call stranger = {"GET",
                            "/images/vmlinuz?token=0123456789abcdef0123456789"
                            "abcdef0123456789abcdef0123456789abcdef"};
    if (on_pg) {
        PGconn *locker = lock_tables("tokens");
        struct hc_stream s;
        stream_start(&s, &stranger);
        assert_false(stream_done(&s, &stranger, 800));
        assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
        unlock_tables(locker);
        assert_true(stream_done(&s, &stranger, 5000));
        assert_int_equal(s.r.status, 200);
        assert_string_equal(s.r.body.data, "kernel");
        hc_stream_close(&s);
    }
    struct resp r;
    http(&stranger, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "kernel");
    resp_clear(&r);
    char *path = xasprintf("/images/vmlinuz?token=%s", ams_tok);
    http(&(struct call){"GET", path}, &r);
    free(path);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(jstr(r.json, "error"), "active node does"));
    resp_clear(&r);
    path = xasprintf("/overlay/%s.tar.gz", ams_tok);
    http(&(struct call){"GET", path}, &r);
    free(path);
    assert_int_equal(r.status, 409);
    resp_clear(&r);
    http(&(struct call){"GET", "/overlay/0123abcd.tar.gz"}, &r);
    assert_int_equal(r.status, 404);
    resp_clear(&r);
    assert_int_equal(loop_stats(ns->e->loop)->stalls, stalls);
    /* Nothing moved for the stranger: no event of its fetch. */
    struct count c = {"pxe_booting", 0};
    assert_int_equal(store_list_events(fra->st, NULL, 0, 0, count_cb, &c), 0);
    assert_int_equal(c.n, 0);
    http_free(h);
    hc_stop();
}

/* A holder died with two actions of srv1 taken: the first applied (its
 * id stored in the row with its change), the second not yet.  The standby
 * that takes the lease runs the second and not the first. */
static void
test_takeover_runs_unfinished_once(void **state)
{
    struct nodes *ns = *state;
    char err[512] = "";
    char *url = shared_url(ns->e->dir, "shared.db");
    struct store *g = store_open(url, ns->e->dir, err, sizeof(err));
    free(url);
    assert_non_null(g);
    struct store_lease l;
    assert_int_equal(
        store_lease_take(g, "fra", "ghost", 1500, now_wall_ms(), &l), 1);
    node_start(ns, 0, "fra-2", "fra");
    struct node *n = &ns->n[0];
    assert_string_equal(json_field(n, "srv1", "state"), "active");

    int64_t id1 = store_action_add(g, "fra", "srv1", "ams-1", "admin",
                                   "{\"event\":\"power_off\",\"ttl_s\":0,"
                                   "\"ssh_keys\":[]}");
    int64_t id2 = store_action_add(g, "fra", "srv1", "ams-1", "admin",
                                   "{\"event\":\"rescue\",\"ttl_s\":0,"
                                   "\"ssh_keys\":[\"" KEY "\"]}");
    struct store_action sa;
    assert_int_equal(store_action_take(g, "fra", "ghost", now_wall_ms(), &sa),
                     1);
    assert_int_equal(sa.id, id1);
    store_action_clear(&sa);
    struct server_row row;
    assert_int_equal(store_load_server(g, "srv1", &row), 0);
    row.action_id = id1; /* the ghost's power off, stored */
    assert_int_equal(store_save_server(g, "srv1", &row), 0);
    server_row_clear(&row);
    assert_int_equal(store_action_take(g, "fra", "ghost", now_wall_ms(), &sa),
                     1);
    assert_int_equal(sa.id, id2);
    store_action_clear(&sa);

    /* The ghost's lease lapses; fra-2 takes it and the unfinished one. */
    assert_true(wait_state(ns, n, "srv1", "rebooting"));
    tu_pump_for(ns->e->loop, 500);
    assert_int_equal(messages_like(n->st, "srv1", "power_off requested"), 0);
    assert_int_equal(transitions_into(n->st, "srv1", "rescue_requested"), 1);
    assert_int_equal(store_action_take(g, "fra", "ghost", now_wall_ms(), &sa),
                     0);
    store_close(g);
}

/* SIGHUP: a server moved into this node's facility is run here from
 * then on, one moved out no longer; a reload that changes the node's own
 * facility is refused whole. */
static void
test_reload_moves_servers(void **state)
{
    struct nodes *ns = *state;
    node_start(ns, 0, "fra-1", "fra");
    struct fleet *f = ns->n[0].fleet;
    assert_int_equal(fleet_console_power(f, "srv1", POWER_NMI, NULL), 0);
    assert_int_equal(fleet_console_power(f, "srv2", POWER_NMI, NULL), -EREMOTE);

    char *swapped = xstrdup(SECTIONS);
    char *a = strstr(swapped, "facility = ams"),
         *b = strstr(swapped, "facility = fra");
    memcpy(a + 11, "fra", 3);
    memcpy(b + 11, "ams", 3);
    char *url = shared_url(ns->e->dir, "shared.db");
    char *rescued = xasprintf("node = fra-1\nfacility = fra\nlease = 1\n"
                              "store = %s\n",
                              url);
    fleet_reload(f, env_config(ns->e, rescued, swapped));
    assert_int_equal(fleet_console_power(f, "srv1", POWER_NMI, NULL), -EREMOTE);
    assert_int_equal(fleet_console_power(f, "srv2", POWER_NMI, NULL), 0);
    assert_string_equal(json_field(&ns->n[0], "srv2", "facility"), "fra");
    free(rescued);

    rescued = xasprintf("node = fra-1\nfacility = ams\nlease = 1\n"
                        "store = %s\n",
                        url);
    free(url);
    fleet_reload(f, env_config(ns->e, rescued, swapped));
    assert_string_equal(fleet_config(f)->facility, "fra");
    assert_int_equal(fleet_console_power(f, "srv2", POWER_NMI, NULL), 0);
    free(rescued);
    free(swapped);
    tu_pump_for(ns->e->loop, 100); /* the NMI answers */
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lease_take_renew_lapse, two_setup,
                                        two_teardown),
        cmocka_unit_test_setup_teardown(test_lease_store_clock, two_setup,
                                        two_teardown),
        cmocka_unit_test_setup_teardown(test_actions_taken_once, two_setup,
                                        two_teardown),
        cmocka_unit_test_setup_teardown(test_feed_head, two_setup,
                                        two_teardown),
        cmocka_unit_test_setup_teardown(test_nodes_migrate_at_once, two_setup,
                                        two_teardown),
        cmocka_unit_test_setup_teardown(test_feed_ids_commit_in_order,
                                        two_setup, two_teardown),
        cmocka_unit_test_setup_teardown(test_feed_notify_after_outage,
                                        two_setup, two_teardown),
        cmocka_unit_test_setup_teardown(test_action_through_another_facility,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_standby_takes_over, nodes_setup,
                                        nodes_teardown),
        cmocka_unit_test_setup_teardown(test_inputs_wait_for_the_step_before,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_boot_path_waits_on_no_store,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_other_facility_from_memory,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_takeover_reads_without_waiting,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_stream_history_waits_on_no_store,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_stream_pages_wait_for_the_store,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_stranger_token_waits_on_no_store,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_takeover_runs_unfinished_once,
                                        nodes_setup, nodes_teardown),
        cmocka_unit_test_setup_teardown(test_reload_moves_servers, nodes_setup,
                                        nodes_teardown),
    };
    int failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    if (!(pg_url = getenv("RESCUED_TEST_PG"))) {
        fprintf(stderr, "RESCUED_TEST_PG is not set: the postgresql group "
                        "is skipped (make unit runs scripts/test-pg)\n");
        return failed;
    }
    on_pg = true;
    return failed +
           cmocka_run_group_tests_name("postgresql", tests, NULL, NULL);
}
