/* fleet: each server's life, driven through fleet.h.  A real config, store
 * and loop in a temp dir (fleetenv.h), and two stand-ins brought in by
 * -Wl,--wrap (LDFLAGS_test_fleet in the Makefile):
 * - power: every qmp: server gets a driver double that records each
 *   request and answers only when a test says so (manual: servers keep the
 *   real manual driver);
 * - the clock: now_mono_ms and now_wall_ms are the real ones plus an
 *   offset the tests move forward, so a 300 s deadline passes at once and
 *   the loop's timers fire as they would.
 * A check that nothing happened (yet) waits for a marker timer that fires
 * after everything then due (settle), never for a guessed while. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "console.h"
#include "console_session.h"
#include "fleet.h"
#include "log.h"
#include "loop.h"
#include "power.h"
#include "power_driver.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetenv.h"

/* --- the clock ------------------------------------------------------------ */

/* How far the tests moved both clocks.  Only ever forward, across tests
 * too, so no timer of the loop goes back in time. */
static int64_t clock_skew_ms;

int64_t __real_now_mono_ms(void);
int64_t __real_now_wall_ms(void);
int64_t __wrap_now_mono_ms(void);
int64_t __wrap_now_wall_ms(void);

int64_t
__wrap_now_mono_ms(void)
{
    return __real_now_mono_ms() + clock_skew_ms;
}

int64_t
__wrap_now_wall_ms(void)
{
    return __real_now_wall_ms() + clock_skew_ms;
}

static void
clock_skip_s(int64_t s)
{
    clock_skew_ms += s * 1000;
}

/* --- the store's transitions, counted ------------------------------------ */

/* Every transition fleet asks the store for, stored or not. */
static int transitions_asked;

void __real_store_transition_async(struct store *st, const char *id,
                                   const struct server_row *row,
                                   enum fsm_state from, const char *why,
                                   store_done_cb *cb, void *arg);
void __wrap_store_transition_async(struct store *st, const char *id,
                                   const struct server_row *row,
                                   enum fsm_state from, const char *why,
                                   store_done_cb *cb, void *arg);

void
__wrap_store_transition_async(struct store *st, const char *id,
                              const struct server_row *row,
                              enum fsm_state from, const char *why,
                              store_done_cb *cb, void *arg)
{
    transitions_asked++;
    __real_store_transition_async(st, id, row, from, why, cb, arg);
}

/* --- the power driver double ---------------------------------------------- */

enum req_state { REQ_PENDING, REQ_DONE, REQ_CANCELLED };

/* One request a server's driver got, in the order they came. */
struct fake_req {
    char server[64]; /* the driver's name: the server's id */
    char uri[128];   /* the driver's uri */
    enum power_op op;
    enum req_state state;
    const struct power *p;
    struct power_req *r;        /* while pending */
    int64_t stored_deadline_ms; /* the server's, in the store, when asked */
};

static int64_t stored_deadline(const char *id);

static struct fake_req reqs[256];
static size_t nreqs;
/* Set: power_reachable() fails with these words. */
static const char *fake_unreachable;
/* Set: the driver takes POWER_BOOT_DISK_ONCE (and waits for the test, as
 * every request); unset it cannot choose, -ENOTSUP at once. */
static bool fake_disk_boot;

static char *
fake_check(const struct power *p, const struct power_req *r, int *status)
{
    (void)p;
    if (r->op != POWER_BOOT_DISK_ONCE || fake_disk_boot)
        return NULL;
    *status = -ENOTSUP;
    return xstrdup("fake: cannot choose the boot device");
}

static int
fake_init(struct power *p, char *err, size_t errlen)
{
    (void)p;
    (void)err;
    (void)errlen;
    return 0;
}

static void
fake_request(struct power *p, struct power_req *r)
{
    assert_true(nreqs < sizeof(reqs) / sizeof(reqs[0]));
    struct fake_req *q = &reqs[nreqs++];
    strlcpy_s(q->server, p->name, sizeof(q->server));
    strlcpy_s(q->uri, p->uri, sizeof(q->uri));
    q->op = r->op;
    q->state = REQ_PENDING;
    q->p = p;
    q->r = r;
    /* What a restart would load as the step's deadline at this moment:
     * stored before acting. */
    q->stored_deadline_ms = stored_deadline(p->name);
}

static void
fake_nothing(struct power *p)
{
    (void)p;
}

/* No deadline is ever armed: a request waits for the test. */
static char *
fake_timeout(struct power *p, struct power_req *r)
{
    (void)p;
    (void)r;
    return NULL;
}

static bool
fake_reachable(struct power *p, char *err, size_t errlen)
{
    (void)p;
    if (fake_unreachable)
        snprintf(err, errlen, "%s", fake_unreachable);
    return !fake_unreachable;
}

/* power_free: what is still queued is cancelled right after this. */
static void
fake_stop(struct power *p)
{
    for (size_t i = 0; i < nreqs; i++)
        if (reqs[i].p == p && reqs[i].state == REQ_PENDING) {
            reqs[i].state = REQ_CANCELLED;
            reqs[i].r = NULL;
        }
}

static const struct power_ops fake_ops = {
    .name = "fake",
    .init = fake_init,
    .check = fake_check,
    .request = fake_request,
    .pump = fake_nothing,
    .timeout = fake_timeout,
    .reachable = fake_reachable,
    .stop = fake_stop,
    .free = fake_nothing,
};

struct power *__real_power_new(struct loop *l, const char *uri, char *err,
                               size_t errlen);
struct power *__wrap_power_new(struct loop *l, const char *uri, char *err,
                               size_t errlen);

struct power *
__wrap_power_new(struct loop *l, const char *uri, char *err, size_t errlen)
{
    if (strncmp(uri, "qmp:", 4) != 0)
        return __real_power_new(l, uri, err, errlen);
    struct power *p = power_alloc(l, uri);
    p->ops = &fake_ops;
    return p;
}

/* Requests of server for op, in state st (-1: in any state). */
static int
nreq(const char *server, enum power_op op, int st)
{
    int n = 0;
    for (size_t i = 0; i < nreqs; i++)
        n += reqs[i].op == op && strcmp(reqs[i].server, server) == 0 &&
             (st < 0 || (int)reqs[i].state == st);
    return n;
}

/* Requests of server since request number from, of any op. */
static int
nreq_since(size_t from, const char *server)
{
    int n = 0;
    for (size_t i = from; i < nreqs; i++)
        n += strcmp(reqs[i].server, server) == 0;
    return n;
}

/* The driver answers the oldest pending op of server.  The fleet hears it
 * later, from the loop (settle). */
static void
fake_answer(const char *server, enum power_op op, int status,
            const char *detail)
{
    for (size_t i = 0; i < nreqs; i++) {
        struct fake_req *q = &reqs[i];
        if (q->state != REQ_PENDING || q->op != op ||
            strcmp(q->server, server) != 0)
            continue;
        q->state = REQ_DONE;
        power_req_complete(q->r, status, detail ? xstrdup(detail) : NULL);
        q->r = NULL;
        return;
    }
    fail_msg("%s: no pending %s request", server, power_op_name(op));
}

/* The driver is about to send the command of server's oldest pending op
 * (a reset's goes out to the BMC): what the fleet stores before a BMC can
 * act.  A request never "sent" stands for one still queued at a kill. */
static void
fake_send(const char *server, enum power_op op)
{
    for (size_t i = 0; i < nreqs; i++) {
        struct fake_req *q = &reqs[i];
        if (q->state == REQ_PENDING && q->op == op &&
            strcmp(q->server, server) == 0) {
            power_req_sending(q->r);
            return;
        }
    }
    fail_msg("%s: no pending %s request", server, power_op_name(op));
}

/* --- the console's writable-changed notification ----------------------
 * One manual: server (the real driver) and readonly_grace = 1; the boot
 * path takes it into rescue, and the loop is pumped until the read-only
 * window after that transition ends. */

#define KEY                                                                    \
    "ssh-ed25519 "                                                             \
    "AAAAC3NzaC1lZDI1NTE5AAAAIL/8vzGNCpIQIPK+p7NoM73ZDLWF6tZAb3DPdMsVH8Ks "    \
    "test@fleet"

/* The inventory in the ini: one manual: server, with a 1 s read-only
 * window after each transition. */
#define INVENTORY(server)                                                      \
    "[console]\n"                                                              \
    "readonly_grace = 1\n"                                                     \
    "[project:acme]\n"                                                         \
    "token = acme-secret-0123456789\n"                                         \
    "[server:" server "]\n"                                                    \
    "mac = 52:54:00:00:00:01\n"                                                \
    "project = acme\n"                                                         \
    "power = manual:\n"

struct fx {
    struct env *env;
    uint64_t listener;
    int calls;       /* writable-changed notifications so far */
    int srv1_calls;  /* those for srv1 */
    bool writable;   /* fleet_console_writable() at the last one */
    char server[64]; /* the server of the last one */
};

static void
on_writable(void *arg, const char *server)
{
    struct fx *f = arg;
    char why[256];
    f->calls++;
    f->srv1_calls += strcmp(server, "srv1") == 0;
    strlcpy_s(f->server, server, sizeof(f->server));
    f->writable =
        fleet_console_writable(f->env->fleet, server, why, sizeof(why));
}

static int
setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    f->env = env_new(INVENTORY("srv1"), "x");
    f->listener = fleet_on_writable_changed(f->env->fleet, on_writable, f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    fleet_unsubscribe(f->env->fleet, f->listener);
    env_free(f->env);
    free(f);
    return 0;
}

/* Pump the loop until f->calls reaches n or ms pass. */
static bool
pump_until_calls(struct fx *f, int n, int ms)
{
    struct tu_count c = {.n = &f->calls, .want = n};
    return tu_pump_until(f->env->loop, ms, tu_at_least, &c);
}

/* rescue_requested -> rebooting -> (phone home) rescue: three transitions,
 * the last one into a stable state, whose read-only window is running. */
static void
into_rescue(struct fx *f)
{
    struct env *e = f->env;
    const char *keys[] = {KEY};
    struct fleet_action a = {
        .event = FSM_EV_RESCUE, .ssh_keys = keys, .nkeys = 1, .actor = "admin"};
    char err[256] = "";
    assert_int_equal(fleet_action(e->fleet, "srv1", &a, err, sizeof(err)), 0);
    assert_int_equal(f->calls, 1); /* active -> rescue_requested */
    assert_false(f->writable);
    assert_string_equal(f->server, "srv1");
    assert_true(pump_until_calls(f, 2, 2000)); /* -> rebooting */
    assert_false(f->writable);

    char token[65];
    assert_int_equal(store_token_of_server(e->st, "srv1", token, sizeof(token)),
                     0);
    /* Its kernel, then its rescue OS phones home from that address. */
    assert_int_equal(fleet_image_fetched(e->fleet, "vmlinuz", token,
                                         "192.0.2.9", false, err, sizeof(err)),
                     0);
    assert_int_equal(f->calls, 3); /* -> rescue_booting */
    json_t *report = json_pack("{s:s}", "ip", "192.0.2.9");
    assert_int_equal(fleet_phone_home(e->fleet, token, "192.0.2.9", report, err,
                                      sizeof(err)),
                     0);
    json_decref(report);
    assert_int_equal(f->calls, 4); /* -> rescue, read-only for 1 s */
    assert_false(f->writable);
    char why[256];
    assert_false(fleet_console_writable(e->fleet, "srv1", why, sizeof(why)));
}

/* Each transition tells the listener, and so does the window's end. */
static void
test_writable_changed_fires(void **state)
{
    struct fx *f = *state;
    into_rescue(f);
    int64_t t0 = now_mono_ms();
    assert_true(pump_until_calls(f, 5, 3000));
    assert_true(now_mono_ms() - t0 >= 900);
    assert_true(f->writable);
    assert_string_equal(f->server, "srv1");
    /* One timer per window: nothing more comes. */
    tu_pump_turns(f->env->loop, 20, 10);
    assert_int_equal(f->calls, 5);
}

/* A server dropped at reload takes its pending window with it. */
static void
test_reload_drops_grace(void **state)
{
    struct fx *f = *state;
    struct env *e = f->env;
    into_rescue(f);
    int before = f->srv1_calls;
    fleet_reload(e->fleet, env_config(e, NULL, INVENTORY("srv2")));
    assert_null(config_find_server(fleet_config(e->fleet), "srv1"));
    /* The reload itself tells the faces once (srv1 is gone: its sessions
     * end); srv2 is new, so its own window may end meanwhile; srv1's must
     * not. */
    assert_int_equal(f->srv1_calls, before + 1);
    tu_pump_for(e->loop, 1500);
    assert_int_equal(f->srv1_calls, before + 1);
}

/* --- a server's life, with the double and the clock ------------------- */

/* [timeouts]: each step its own length, so a message shows which ran. */
#define TIMEOUTS                                                               \
    "[timeouts]\n"                                                             \
    "rebooting = 100\n"                                                        \
    "pxe_booting = 110\n"                                                      \
    "rescue_booting = 120\n"                                                   \
    "exiting = 130\n"                                                          \
    "booting_local = 140\n"                                                    \
    "retries = 2\n"
#define PROJECTS                                                               \
    "[project:acme]\n"                                                         \
    "token = acme-secret-0123456789\n"                                         \
    "[project:beta]\n"                                                         \
    "token = beta-secret-0123456789\n"
/* A server on the double; n is its MAC's last digit. */
#define SERVER(id, n, project, power)                                          \
    "[server:" id "]\n"                                                        \
    "mac = 52:54:00:00:00:0" n "\n"                                            \
    "project = " project "\n"                                                  \
    "power = " power "\n"
#define TWO                                                                    \
    TIMEOUTS PROJECTS SERVER("srv1", "1", "acme", "qmp:/fake/srv1")            \
        SERVER("srv2", "2", "acme", "qmp:/fake/srv2")

/* Every live event of the fleet, one line each: "SERVER KIND: MESSAGE" or
 * "SERVER transition FROM->TO: MESSAGE". */
static struct buf events;
/* The ini's sections now, for a restart. */
static char *sections_now;
/* What the console shows, from a viewer of the test's own (console tests). */
static struct buf screen;
static struct tu_source *serial; /* srv1's serial port (console tests) */

static void
event_line(struct buf *b, const struct store_event *ev)
{
    buf_printf(b, "%s %s", ev->server, ev->kind);
    if (ev->from_state)
        buf_printf(b, " %s->%s", ev->from_state, ev->to_state);
    buf_printf(b, ": %s\n", ev->message ? ev->message : "");
}

static void
on_event(void *arg, const struct store_event *ev)
{
    (void)arg;
    event_line(&events, ev);
}

static bool
saw(const char *text)
{
    return events.data && strstr(events.data, text);
}

static int
stored_event(void *arg, const struct store_event *ev)
{
    event_line(arg, ev);
    return 0;
}

/* In the stored history (GET .../events), which also has what a restart
 * said before anyone could subscribe. */
static bool
saw_stored(const char *text)
{
    struct buf b = {0};
    assert_int_equal(store_list_events(E->st, NULL, 0, 0, stored_event, &b), 0);
    bool seen = b.data && strstr(b.data, text);
    buf_free(&b);
    return seen;
}

/* How many event lines start with "SERVER ". */
static int
events_of(const char *server)
{
    char *key = xasprintf("%s ", server);
    int n = 0;
    for (const char *l = events.data; l && *l; l = strchr(l, '\n') + 1)
        n += strncmp(l, key, strlen(key)) == 0;
    free(key);
    return n;
}

static void
life_start(struct env *e, const char *sections)
{
    free(sections_now);
    sections_now = xstrdup(sections);
    env_start(e, NULL, sections);
    fleet_subscribe(e->fleet, NULL, on_event, NULL);
}

static void
life_reset(void)
{
    nreqs = 0;
    fake_unreachable = NULL;
    fake_disk_boot = false;
    buf_reset(&events);
    buf_reset(&screen);
}

/* A fresh env on these sections, in *state. */
static int
life_setup_with(void **state, const char *sections)
{
    life_reset();
    struct env *e = env_dir_new("kernel");
    life_start(e, sections);
    *state = e;
    return 0;
}

static int
life_setup(void **state)
{
    return life_setup_with(state, TWO);
}

static int
life_teardown(void **state)
{
    tu_source_free(serial);
    serial = NULL;
    env_free(*state);
    free(sections_now);
    sections_now = NULL;
    return 0;
}

/* Run the loop until every timer due now has fired (a completion's
 * deferred callback, a deadline the clock just passed): a 0 ms timer added
 * now fires in the same turn as those or after it.  Twice, so that a
 * 0 ms timer those add (a refused request's answer) has run too. */
static int64_t
marker_fired(struct loop *l, void *arg)
{
    (void)l;
    *(bool *)arg = true;
    return -1;
}

static void
settle(void)
{
    for (int i = 0; i < 2; i++) {
        bool fired = false;
        loop_add_timer(E->loop, 0, marker_fired, &fired);
        assert_true(tu_pump_until(E->loop, 5000, tu_flag, &fired));
    }
}

/* The driver answers, and the fleet has heard it. */
static void
answer(const char *server, enum power_op op, int status, const char *detail)
{
    fake_answer(server, op, status, detail);
    settle();
}

/* Swap in this inventory, as SIGHUP does. */
static void
reload(const char *sections)
{
    free(sections_now);
    sections_now = xstrdup(sections);
    fleet_reload(E->fleet, env_config(E, NULL, sections));
}

/* The daemon stops and a new one starts: a new loop, the same store file
 * opened again.  What the driver had not answered is lost with the old. */
static void
restart(void)
{
    struct env *e = E;
    char *sections = sections_now;
    sections_now = NULL;
    env_stop(e);
    life_start(e, sections);
    free(sections);
}

/* A string member of the server's API view ("" for null), into out. */
static const char *
field(const char *id, const char *key, char *out, size_t len)
{
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), id);
    assert_non_null(cs);
    json_t *o = fleet_server_json(E->fleet, cs);
    const char *v = json_string_value(json_object_get(o, key));
    strlcpy_s(out, v ? v : "", len);
    json_decref(o);
    return out;
}

static const char *
state_of(const char *id)
{
    static char v[64];
    return field(id, "state", v, sizeof(v));
}

static const char *
last_error(const char *id)
{
    static char v[300];
    return field(id, "last_error", v, sizeof(v));
}

static int
retries_of(const char *id)
{
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), id);
    json_t *o = fleet_server_json(E->fleet, cs);
    int n = (int)json_integer_value(json_object_get(o, "retries"));
    json_decref(o);
    return n;
}

/* The value of one series of fleet_metrics ("name{label=\"v\"}"), or -1. */
static long long
metric(const char *series)
{
    struct buf m = {0};
    fleet_metrics(E->fleet, &m);
    char *key = xasprintf("\n%s ", series);
    const char *at = strstr(m.data, key);
    long long v = at ? strtoll(at + strlen(key), NULL, 10) : -1;
    free(key);
    buf_free(&m);
    return v;
}

static long long
step_metric(const char *name, const char *step)
{
    char *series = xasprintf("%s{step=\"%s\"}", name, step);
    long long v = metric(series);
    free(series);
    return v;
}

/* The server's row as the store has it (what a restart would load). */
static void
stored(const char *id, enum fsm_state *st, unsigned *pending)
{
    struct server_row row = {0};
    assert_int_equal(store_load_server(E->st, id, &row), 0);
    *st = row.fsm.state;
    *pending = row.pending_actions;
    server_row_clear(&row);
}

/* The stored actions whose command may have reached the BMC. */
static unsigned
stored_sent(const char *id)
{
    struct server_row row = {0};
    assert_int_equal(store_load_server(E->st, id, &row), 0);
    unsigned sent = row.sent_actions;
    server_row_clear(&row);
    return sent;
}

/* The server's deadline as the store has it; 0 without a store or row. */
static int64_t
stored_deadline(const char *id)
{
    struct server_row row = {0};
    if (!E || !E->st || store_load_server(E->st, id, &row) < 0)
        return 0;
    int64_t d = row.fsm.deadline_ms;
    server_row_clear(&row);
    return d;
}

static char action_err[256];

/* A user action as admin (a rescue brings one key); 0 or the refusal,
 * whose words are in action_err. */
static int
act(const char *id, enum fsm_event ev, int64_t ttl_s)
{
    const char *keys[] = {KEY};
    struct fleet_action a = {.event = ev,
                             .ttl_s = ttl_s,
                             .ssh_keys = keys,
                             .nkeys = ev == FSM_EV_RESCUE,
                             .actor = "admin"};
    action_err[0] = '\0';
    return fleet_action(E->fleet, id, &a, action_err, sizeof(action_err));
}

/* Where the servers' boots come from. */
#define SERVER_ADDR "192.0.2.1"

/* The server fetches its iPXE script: true when it is the rescue one. */
static bool
fetch_script(const char *id)
{
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), id);
    struct buf b = {0};
    assert_int_equal(
        fleet_boot_script(E->fleet, cs->mac, SERVER_ADDR, false, &b), 0);
    bool rescue = strstr(b.data, "boots the rescue image") != NULL;
    buf_free(&b);
    return rescue;
}

static void
token_of(const char *id, char token[65])
{
    assert_int_equal(store_token_of_server(E->st, id, token, 65), 0);
}

/* active -> rescue_requested -> (netboot set) rebooting; its reset is
 * asked and not answered. */
static void
to_rebooting(const char *id, int64_t ttl_s)
{
    int resets = nreq(id, POWER_RESET, -1);
    assert_int_equal(act(id, FSM_EV_RESCUE, ttl_s), 0);
    assert_string_equal(state_of(id), "rescue_requested");
    assert_int_equal(nreq(id, POWER_NETBOOT_ONCE, REQ_PENDING), 1);
    assert_int_equal(nreq(id, POWER_RESET, -1), resets);
    answer(id, POWER_NETBOOT_ONCE, 0, NULL);
    assert_string_equal(state_of(id), "rebooting");
    assert_int_equal(nreq(id, POWER_RESET, REQ_PENDING), 1);
}

/* ... the reset done, the rescue script fetched: pxe_booting. */
static void
to_pxe_booting(const char *id, int64_t ttl_s)
{
    to_rebooting(id, ttl_s);
    answer(id, POWER_RESET, 0, NULL);
    assert_true(fetch_script(id));
    assert_string_equal(state_of(id), "pxe_booting");
}

/* ... the kernel fetched with its token: rescue_booting. */
static void
to_rescue_booting(const char *id, int64_t ttl_s)
{
    char token[65], err[128];
    to_pxe_booting(id, ttl_s);
    token_of(id, token);
    assert_int_equal(fleet_image_fetched(E->fleet, "vmlinuz", token,
                                         SERVER_ADDR, false, err, sizeof(err)),
                     0);
    assert_string_equal(state_of(id), "rescue_booting");
}

/* ... the rescue OS phones home: rescue. */
static void
to_rescue(const char *id, int64_t ttl_s)
{
    char token[65], err[256];
    to_rescue_booting(id, ttl_s);
    token_of(id, token);
    json_t *report = json_pack("{s:s}", "ip", SERVER_ADDR);
    assert_int_equal(fleet_phone_home(E->fleet, token, SERVER_ADDR, report, err,
                                      sizeof(err)),
                     0);
    json_decref(report);
    assert_string_equal(state_of(id), "rescue");
}

/* ... exit_rescue: exiting, its reset asked and not answered. */
static void
to_exiting(const char *id)
{
    to_rescue(id, 0);
    int resets = nreq(id, POWER_RESET, -1);
    assert_int_equal(act(id, FSM_EV_EXIT_RESCUE, 0), 0);
    assert_string_equal(state_of(id), "exiting");
    assert_int_equal(nreq(id, POWER_RESET, -1), resets + 1);
    assert_int_equal(nreq(id, POWER_RESET, REQ_PENDING), 1);
    settle(); /* the double's answer to the disk boot, when it has one */
}

/* The step's deadline passes, retries (2) times: each time the server is
 * reset, a retry event and the metric say so and a full new deadline
 * runs.  Then it fails with last_error naming the step. */
static void
retries_then_fail(const char *id, const char *step, int64_t timeout_s,
                  const char *failed)
{
    int resets = nreq(id, POWER_RESET, -1);
    assert_int_equal(step_metric("rescued_step_retries_total", step), 0);
    for (int k = 1; k <= 2; k++) {
        char before[64], after[64];
        field(id, "deadline", before, sizeof(before));
        assert_string_not_equal(before, "");
        clock_skip_s(timeout_s - 5);
        settle();
        assert_string_equal(state_of(id), step);
        assert_int_equal(nreq(id, POWER_RESET, -1), resets + k - 1);
        assert_int_equal(retries_of(id), k - 1);

        clock_skip_s(10);
        settle();
        assert_string_equal(state_of(id), step);
        assert_int_equal(nreq(id, POWER_RESET, -1), resets + k);
        assert_int_equal(nreq(id, POWER_RESET, REQ_PENDING), 1);
        assert_int_equal(retries_of(id), k);
        assert_int_equal(step_metric("rescued_step_retries_total", step), k);
        assert_string_not_equal(field(id, "deadline", after, sizeof(after)),
                                before);
        char *msg =
            xasprintf("%s retry: %s: timed out after %lld s; reset, retry %d "
                      "of 2\n",
                      id, step, (long long)timeout_s, k);
        if (!saw(msg))
            fail_msg("no '%s' in:\n%s", msg, events.data);
        free(msg);
        answer(id, POWER_RESET, 0, NULL);
        assert_string_equal(state_of(id), step);
    }
    clock_skip_s(timeout_s - 5);
    settle();
    assert_string_equal(state_of(id), step);
    clock_skip_s(10);
    settle();
    assert_string_equal(state_of(id), failed);
    char *why = xasprintf("%s: timed out after %lld s (2 retries)", step,
                          (long long)timeout_s);
    assert_string_equal(last_error(id), why);
    free(why);
    assert_int_equal(nreq(id, POWER_RESET, -1), resets + 2);
    assert_int_equal(step_metric("rescued_step_retries_total", step), 2);
    assert_int_equal(step_metric("rescued_step_failures_total", step), 1);
    char dl[64];
    assert_string_equal(field(id, "deadline", dl, sizeof(dl)), "");
}

/* Preparing is rescued's own work: its 30 s pass without a retry. */
static void
test_rescue_requested_times_out(void **state)
{
    (void)state;
    assert_int_equal(act("srv1", FSM_EV_RESCUE, 0), 0);
    clock_skip_s(25);
    settle();
    assert_string_equal(state_of("srv1"), "rescue_requested");
    clock_skip_s(10);
    settle();
    assert_string_equal(state_of("srv1"), "rescue_failed");
    assert_string_equal(last_error("srv1"),
                        "rescue_requested: timed out after 30 s (0 retries)");
    assert_int_equal(nreq("srv1", POWER_RESET, -1), 0);
    assert_int_equal(
        step_metric("rescued_step_retries_total", "rescue_requested"), 0);
    assert_int_equal(
        step_metric("rescued_step_failures_total", "rescue_requested"), 1);
    /* The late answer moves nothing. */
    answer("srv1", POWER_NETBOOT_ONCE, 0, NULL);
    assert_string_equal(state_of("srv1"), "rescue_failed");
    assert_int_equal(nreq("srv1", POWER_RESET, -1), 0);
}

static void
test_rebooting_retries_then_fails(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    answer("srv1", POWER_RESET, 0, NULL);
    retries_then_fail("srv1", "rebooting", 100, "rescue_failed");
    /* The other server saw none of it. */
    assert_string_equal(state_of("srv2"), "active");
    assert_int_equal(events_of("srv2"), 0);
}

static void
test_pxe_booting_retries_then_fails(void **state)
{
    (void)state;
    to_pxe_booting("srv1", 0);
    retries_then_fail("srv1", "pxe_booting", 110, "rescue_failed");
}

static void
test_rescue_booting_retries_then_fails(void **state)
{
    (void)state;
    to_rescue_booting("srv1", 0);
    retries_then_fail("srv1", "rescue_booting", 120, "rescue_failed");
}

/* A boot token lives with its boot: a failed step revokes it, and a
 * retry's reset of a boot that used its token gets a fresh one, which the
 * retried boot binds anew (the old one is no key any more). */
static void
test_tokens_follow_the_boot(void **state)
{
    (void)state;
    char used[65], fresh[65], err[128];
    to_rescue_booting("srv1", 0);
    token_of("srv1", used);
    clock_skip_s(125);
    settle(); /* rescue_booting timed out: reset, retry 1 */
    assert_int_equal(retries_of("srv1"), 1);
    token_of("srv1", fresh);
    assert_string_not_equal(fresh, used);
    struct buf b = {0};
    assert_int_equal(
        fleet_overlay(E->fleet, used, SERVER_ADDR, &b, err, sizeof(err)),
        -ENOENT);
    buf_free(&b);
    /* The retried boot: its script carries the fresh token. */
    answer("srv1", POWER_RESET, 0, NULL);
    assert_true(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "pxe_booting");
    assert_int_equal(fleet_image_fetched(E->fleet, "vmlinuz", fresh,
                                         "192.0.2.77", false, err, sizeof(err)),
                     0);
    assert_string_equal(state_of("srv1"), "rescue_booting");
    json_t *report = json_pack("{s:s}", "ip", SERVER_ADDR);
    assert_int_equal(fleet_phone_home(E->fleet, fresh, SERVER_ADDR, report, err,
                                      sizeof(err)),
                     -EACCES);
    assert_string_equal(state_of("srv1"), "rescue_booting");
    /* Failed (its retries used up): the token dies with the step. */
    for (int i = 0; i < 3; i++) {
        clock_skip_s(125);
        settle();
        if (nreq("srv1", POWER_RESET, REQ_PENDING))
            answer("srv1", POWER_RESET, 0, NULL);
    }
    assert_string_equal(state_of("srv1"), "rescue_failed");
    assert_int_equal(store_token_of_server(E->st, "srv1", fresh, 65), -ENOENT);
    assert_int_equal(fleet_phone_home(E->fleet, fresh, "192.0.2.77", report,
                                      err, sizeof(err)),
                     -ENOENT);
    json_decref(report);
    assert_string_equal(state_of("srv1"), "rescue_failed");
}

/* A rescue OS that restarts by itself netboots again: its own fetch of
 * the script is a new boot (pxe_booting, a fresh token, the old report
 * gone); a stranger's fetch moves nothing. */
static void
test_rescue_os_restarts_itself(void **state)
{
    (void)state;
    char old[65], now[65];
    to_rescue("srv1", 0);
    token_of("srv1", old);
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), "srv1");
    struct buf b = {0};
    assert_int_equal(
        fleet_boot_script(E->fleet, cs->mac, "192.0.2.66", false, &b), 0);
    buf_free(&b);
    assert_string_equal(state_of("srv1"), "rescue");
    token_of("srv1", now);
    assert_string_equal(now, old);
    assert_true(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "pxe_booting");
    token_of("srv1", now);
    assert_string_not_equal(now, old);
    json_t *o = fleet_server_json(E->fleet, cs);
    assert_true(json_is_null(json_object_get(o, "rescue")) ||
                !json_object_get(o, "rescue"));
    json_decref(o);
    /* ...and it comes back into rescue with the new token. */
    char err[128];
    assert_int_equal(fleet_image_fetched(E->fleet, "vmlinuz", now, SERVER_ADDR,
                                         false, err, sizeof(err)),
                     0);
    json_t *report = json_pack("{s:s}", "ip", SERVER_ADDR);
    assert_int_equal(
        fleet_phone_home(E->fleet, now, SERVER_ADDR, report, err, sizeof(err)),
        0);
    json_decref(report);
    assert_string_equal(state_of("srv1"), "rescue");
}

/* A reboot from rescue is a new boot: a new token, the old one spent. */
static void
test_reboot_from_rescue_mints_a_token(void **state)
{
    (void)state;
    char old[65], now[65];
    to_rescue("srv1", 0);
    token_of("srv1", old);
    assert_int_equal(act("srv1", FSM_EV_REBOOT, 0), 0);
    assert_string_equal(state_of("srv1"), "rebooting");
    token_of("srv1", now);
    assert_string_not_equal(now, old);
}

static void
test_exiting_retries_then_fails(void **state)
{
    (void)state;
    to_exiting("srv1");
    answer("srv1", POWER_RESET, 0, NULL);
    retries_then_fail("srv1", "exiting", 130, "exit_failed");
    /* exit_failed takes exit_rescue again: a fresh step, a new reset. */
    assert_int_equal(act("srv1", FSM_EV_EXIT_RESCUE, 0), 0);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_int_equal(retries_of("srv1"), 0);
    assert_string_equal(last_error("srv1"), "");
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_PENDING), 1);
}

/* A failed reset fails the step at once, in the driver's words. */
static void
test_power_failure_fails_rescue(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    answer("srv1", POWER_RESET, -EIO, "qmp /fake/srv1: connection refused");
    assert_string_equal(state_of("srv1"), "rescue_failed");
    assert_string_equal(last_error("srv1"),
                        "rebooting: power: qmp /fake/srv1: connection refused");
    assert_true(saw("srv1 error: power: qmp /fake/srv1: connection refused\n"));
    assert_int_equal(step_metric("rescued_step_failures_total", "rebooting"),
                     1);
    /* Nothing more is waited for, and a new rescue is taken. */
    char dl[64];
    assert_string_equal(field("srv1", "deadline", dl, sizeof(dl)), "");
    assert_int_equal(act("srv1", FSM_EV_RESCUE, 0), 0);
    assert_string_equal(state_of("srv1"), "rescue_requested");
    assert_string_equal(last_error("srv1"), "");
}

/* A driver's words longer than last_error holds, with "€" where they are
 * cut: last_error and the error event end before the character, and the
 * server's JSON (which jansson would refuse to make) is there. */
static void
test_long_detail_cut_between_characters(void **state)
{
    (void)state;
    char detail[400];
    size_t n = 0;
    while (n + 3 < sizeof(detail)) {
        memcpy(detail + n, "\u20ac", 3);
        n += 3;
    }
    detail[n] = '\0';
    to_rebooting("srv1", 0);
    answer("srv1", POWER_RESET, -EIO, detail);
    assert_string_equal(state_of("srv1"), "rescue_failed");
    const char *le = last_error("srv1");
    const char *head = "rebooting: power: ";
    assert_int_equal(strncmp(le, head, strlen(head)), 0);
    size_t euros = strlen(le + strlen(head));
    assert_true(euros > 200 && euros % 3 == 0);
    assert_memory_equal(le + strlen(head), detail, euros);
    char *valid = utf8_valid_dup(le);
    assert_string_equal(valid, le);
    free(valid);
    /* The error event, as stored, ends between characters too. */
    const char *ev = strstr(events.data, "srv1 error: power: ");
    assert_non_null(ev);
    const char *end = strchr(ev, '\n');
    size_t evn = (size_t)(end - ev) - strlen("srv1 error: power: ");
    assert_int_equal(evn % 3, 0);
}

/* The one-time netboot: a failure fails the rescue before any reset; a
 * driver that cannot set it leaves the choice to the iPXE script. */
static void
test_netboot_failure_and_unsupported(void **state)
{
    (void)state;
    assert_int_equal(act("srv1", FSM_EV_RESCUE, 0), 0);
    answer("srv1", POWER_NETBOOT_ONCE, -EIO, "bootdev pxe refused");
    assert_string_equal(state_of("srv1"), "rescue_failed");
    assert_string_equal(
        last_error("srv1"),
        "rescue_requested: one-time network boot: bootdev pxe refused");
    assert_int_equal(nreq("srv1", POWER_RESET, -1), 0);
    assert_int_equal(
        step_metric("rescued_step_failures_total", "rescue_requested"), 1);

    assert_int_equal(act("srv2", FSM_EV_RESCUE, 0), 0);
    answer("srv2", POWER_NETBOOT_ONCE, -ENOTSUP, NULL);
    assert_string_equal(state_of("srv2"), "rebooting");
    assert_int_equal(nreq("srv2", POWER_RESET, REQ_PENDING), 1);
}

/* The way out fails in the driver's words too. */
static void
test_exit_power_failure(void **state)
{
    (void)state;
    to_exiting("srv1");
    answer("srv1", POWER_RESET, -ETIMEDOUT, "qmp /fake/srv1: no answer");
    assert_string_equal(state_of("srv1"), "exit_failed");
    assert_string_equal(last_error("srv1"),
                        "exiting: power: qmp /fake/srv1: no answer");
    assert_int_equal(step_metric("rescued_step_failures_total", "exiting"), 1);
    /* The target was set to the local disk before the reset failed. */
    assert_false(fetch_script("srv1"));
}

/* A pre-flight refusal moves nothing and asks the driver nothing. */
static void
test_preflight_refuses_unreachable(void **state)
{
    (void)state;
    fake_unreachable = "qmp /fake/srv1: no such socket";
    assert_int_equal(act("srv1", FSM_EV_RESCUE, 0), -EBUSY);
    assert_string_equal(action_err, "qmp /fake/srv1: no such socket");
    assert_string_equal(state_of("srv1"), "active");
    assert_int_equal(nreq_since(0, "srv1"), 0);
    assert_int_equal(events_of("srv1"), 0);
}

/* A rescue with a ttl exits by itself when the ttl runs out. */
static void
test_ttl_expiry_exits(void **state)
{
    (void)state;
    to_rescue("srv1", 3600);
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), "srv1");
    json_t *o = fleet_server_json(E->fleet, cs);
    assert_true(json_is_string(
        json_object_get(json_object_get(o, "rescue"), "expires_at")));
    json_decref(o);
    int resets = nreq("srv1", POWER_RESET, -1);

    clock_skip_s(3595);
    settle();
    assert_string_equal(state_of("srv1"), "rescue");
    assert_int_equal(nreq("srv1", POWER_RESET, -1), resets);
    clock_skip_s(10);
    settle();
    assert_string_equal(state_of("srv1"), "exiting");
    assert_true(
        saw("srv1 transition rescue->exiting: rescue ttl of 3600 s expired\n"));
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_PENDING), 1);
    char token[65];
    assert_int_equal(store_token_of_server(E->st, "srv1", token, sizeof(token)),
                     -ENOENT);
    /* Its way home: the double cannot choose the disk, so the local
     * script moves it; no console to watch, so it counts as up after
     * local_settle (60 s by default), and the events say so. */
    assert_true(saw("srv1 action: no one-time disk boot: fake: cannot choose "
                    "the boot device; it boots through the network and its "
                    "iPXE script sends it home\n"));
    answer("srv1", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");
    assert_true(saw("srv1 transition exiting->booting_local: ipxe script "
                    "fetched; no console to watch: counted as up in 60 s "
                    "(local_settle)\n"));
    clock_skip_s(55);
    settle();
    assert_string_equal(state_of("srv1"), "booting_local");
    clock_skip_s(10);
    settle();
    assert_string_equal(state_of("srv1"), "active");
    assert_true(saw("srv1 transition booting_local->active: no console to "
                    "watch: counted as up 60 s after it headed for its disk "
                    "(local_settle)\n"));
    assert_int_equal(retries_of("srv1"), 0);
}

/* A reload from two servers to three (the faces hear each old and new
 * one; case 014 found an overrun of the old list here). */
static void
test_reload_grows(void **state)
{
    (void)state;
    reload(TIMEOUTS PROJECTS SERVER("srv1", "1", "acme", "qmp:/fake/srv1")
               SERVER("srv2", "2", "acme", "qmp:/fake/srv2")
                   SERVER("srv3", "3", "beta", "qmp:/fake/srv3"));
    assert_string_equal(state_of("srv3"), "active");
    assert_int_equal(metric("rescued_servers{state=\"active\"}"), 3);
}

/* Reload: a new server appears active, a removed one is gone with its
 * request and its deadline; the rest keep going. */
static void
test_reload_adds_and_removes(void **state)
{
    (void)state;
    to_rebooting("srv2", 0);
    reload(TIMEOUTS PROJECTS SERVER("srv1", "1", "acme", "qmp:/fake/srv1")
               SERVER("srv3", "3", "beta", "qmp:/fake/srv3"));
    assert_string_equal(state_of("srv3"), "active");
    assert_null(config_find_server(fleet_config(E->fleet), "srv2"));
    assert_int_equal(act("srv2", FSM_EV_RESCUE, 0), -ENOENT);
    assert_int_equal(nreq("srv2", POWER_RESET, REQ_CANCELLED), 1);
    assert_int_equal(metric("rescued_servers{state=\"active\"}"), 2);
    assert_int_equal(metric("rescued_servers{state=\"rebooting\"}"), 0);

    /* srv2's deadline went with it. */
    int srv2_events = events_of("srv2");
    clock_skip_s(200);
    settle();
    assert_int_equal(events_of("srv2"), srv2_events);
    assert_int_equal(nreq_since(0, "srv2"), 2); /* netboot, reset */

    /* The new one works like any other. */
    to_rebooting("srv3", 0);
    assert_string_equal(state_of("srv1"), "active");
}

/* A server moved to another project keeps its state, its token and its
 * timers (same power, same console); only who may see it changes. */
static void
test_reload_moves_project(void **state)
{
    (void)state;
    to_rescue("srv1", 3600);
    char token[65], now[65];
    token_of("srv1", token);
    size_t before = nreqs;
    reload(TIMEOUTS PROJECTS SERVER("srv1", "1", "beta", "qmp:/fake/srv1")
               SERVER("srv2", "2", "acme", "qmp:/fake/srv2"));
    assert_string_equal(state_of("srv1"), "rescue");
    char project[32];
    assert_string_equal(field("srv1", "project", project, sizeof(project)),
                        "beta");
    token_of("srv1", now);
    assert_string_equal(now, token);
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), "srv1");
    struct buf b = {0};
    assert_int_equal(
        fleet_boot_script(E->fleet, cs->mac, SERVER_ADDR, true, &b), 0);
    assert_non_null(strstr(b.data, "boots the rescue image"));
    buf_free(&b);
    assert_int_equal(nreqs, before); /* the same driver, nothing re-run */
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_CANCELLED), 0);

    char role[64] = "";
    struct console_who beta = {.kind = CONSOLE_WHO_TOKEN, .project = "beta"};
    struct console_who acme = {.kind = CONSOLE_WHO_TOKEN, .project = "acme"};
    assert_true(
        fleet_console_authorize(E->fleet, "srv1", &beta, role, sizeof(role)));
    assert_string_equal(role, "project:beta");
    assert_false(
        fleet_console_authorize(E->fleet, "srv1", &acme, role, sizeof(role)));

    /* The ttl armed before the reload still ends the rescue. */
    clock_skip_s(3605);
    settle();
    assert_string_equal(state_of("srv1"), "exiting");
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_PENDING), 1);
}

/* The id of the newest stored event whose line has text; 0 if none. */
static int64_t
stored_event_id(const char *text)
{
    struct buf b = {0};
    assert_int_equal(store_list_events(E->st, NULL, 0, 0, stored_event, &b), 0);
    int64_t id = 0, at = 0;
    for (const char *l = b.data; l && *l; l = strchr(l, '\n') + 1) {
        at++; /* a fresh store: the ids are 1, 2, ... */
        if (strncmp(l, text, strlen(text)) == 0)
            id = at;
    }
    buf_free(&b);
    return id;
}

#define MOVED                                                                  \
    TIMEOUTS PROJECTS SERVER("srv1", "1", "beta", "qmp:/fake/srv1")            \
        SERVER("srv2", "2", "acme", "qmp:/fake/srv2")

/* A move's cut-off is stored with the server: after a restart its new
 * project still sees only the events from the move on.  Before, it lived
 * in memory: the restart gave 0, and beta read acme's history. */
static void
test_move_cutoff_survives_restart(void **state)
{
    (void)state;
    to_rescue("srv1", 0);
    reload(MOVED);
    int64_t since = fleet_project_since(E->fleet, "srv1");
    assert_int_equal(since, stored_event_id("srv1 audit: moved from project "
                                            "acme to project beta"));
    assert_true(since > 1);
    restart();
    settle();
    assert_int_equal(fleet_project_since(E->fleet, "srv1"), since);
    assert_int_equal(fleet_project_since(E->fleet, "srv2"), 0);
    /* The same project again: no new move. */
    reload(MOVED);
    assert_int_equal(fleet_project_since(E->fleet, "srv1"), since);
}

/* Moved while the daemon was down (the ini edited, then a start), or by
 * a reload that also gives it a new driver: the start (the rebuild)
 * records the move as a reload would.  Before, neither was seen. */
static void
test_move_while_down_or_rebuilt(void **state)
{
    (void)state;
    to_rescue("srv1", 0);
    free(sections_now);
    sections_now = xstrdup(MOVED);
    restart();
    settle();
    int64_t since = fleet_project_since(E->fleet, "srv1");
    assert_int_equal(since, stored_event_id("srv1 audit: moved from project "
                                            "acme to project beta"));
    assert_true(since > 1);
    assert_string_equal(state_of("srv1"), "rescue");

    reload(TIMEOUTS PROJECTS SERVER("srv1", "1", "beta", "qmp:/fake/srv1")
               SERVER("srv2", "2", "beta", "qmp:/fake/srv2-new"));
    int64_t since2 = fleet_project_since(E->fleet, "srv2");
    assert_int_equal(since2, stored_event_id("srv2 audit: moved from project "
                                             "acme to project beta"));
    assert_true(since2 > since);
    assert_int_equal(fleet_project_since(E->fleet, "srv1"), since);
}

/* A server with a new power uri gets a new driver and resumes from the
 * store: its unanswered reset runs again, once, on the new driver, and
 * the step waits for that reset a full timeout again (not the 70 s left
 * of the old one, which would reset it a second time). */
static void
test_reload_new_power_resumes(void **state)
{
    (void)state;
    to_exiting("srv1");
    clock_skip_s(60);
    size_t from = nreqs;
    int64_t t0 = now_wall_ms();
    reload(TIMEOUTS PROJECTS SERVER("srv1", "1", "acme", "qmp:/fake/srv1-new")
               SERVER("srv2", "2", "acme", "qmp:/fake/srv2"));
    int64_t t1 = now_wall_ms();
    settle();
    assert_string_equal(state_of("srv1"), "exiting");
    int64_t d = stored_deadline("srv1");
    assert_in_range(d, t0 + 130000, t1 + 130000);
    assert_int_equal(reqs[from].stored_deadline_ms, d);
    assert_true(saw("srv1 action: exiting: deadline renewed, 130 s from now: "
                    "its unfinished actions run again\n"));
    assert_int_equal(retries_of("srv1"), 0);
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_CANCELLED), 1);
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_int_equal(reqs[from].op, POWER_RESET);
    assert_string_equal(reqs[from].uri, "qmp:/fake/srv1-new");
    assert_int_equal(nreq_since(from, "srv2"), 0);
    answer("srv1", POWER_RESET, 0, NULL);
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");
}

/* A reload that gives srv1 a new driver and `exiting` a new timeout: the
 * rebuilt server's renewed deadline is the new config's, not the old. */
static void
test_reload_new_timeout_renews_with_it(void **state)
{
    (void)state;
    to_exiting("srv1");
    clock_skip_s(60);
    int64_t t0 = now_wall_ms();
    reload("[timeouts]\n"
           "rebooting = 100\n"
           "pxe_booting = 110\n"
           "rescue_booting = 120\n"
           "exiting = 300\n"
           "booting_local = 140\n"
           "retries = 2\n" PROJECTS SERVER("srv1", "1", "acme",
                                           "qmp:/fake/srv1-new")
               SERVER("srv2", "2", "acme", "qmp:/fake/srv2"));
    int64_t t1 = now_wall_ms();
    settle();
    int64_t d = stored_deadline("srv1");
    assert_in_range(d, t0 + 300000, t1 + 300000);
    assert_true(saw("srv1 action: exiting: deadline renewed, 300 s from now: "
                    "its unfinished actions run again\n"));
}

/* A reload that drops or rebuilds a server whose driver has answered but
 * whose answer the fleet has not yet heard: the dropped server's answer
 * must not act on a server that is gone (its timers would outlive it). */
static void
test_reload_drops_unheard_answers(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    to_rebooting("srv2", 0);
    fake_answer("srv1", POWER_RESET, -EIO, "qmp /fake/srv1: gone");
    fake_answer("srv2", POWER_RESET, -EIO, "qmp /fake/srv2: gone");
    int srv2_events = events_of("srv2");
    size_t from = nreqs;
    reload(TIMEOUTS PROJECTS SERVER("srv1", "1", "acme", "qmp:/fake/srv1-new"));
    settle();
    /* srv1 resumes from the store on its new driver: still rebooting, its
     * reset asked again there. */
    assert_string_equal(state_of("srv1"), "rebooting");
    enum fsm_state st;
    unsigned pending;
    stored("srv1", &st, &pending);
    assert_int_equal(st, FSM_REBOOTING);
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_string_equal(reqs[from].uri, "qmp:/fake/srv1-new");
    /* srv2 is gone: nothing more is said or stored about it. */
    assert_int_equal(events_of("srv2"), srv2_events);
    stored("srv2", &st, &pending);
    assert_int_equal(st, FSM_REBOOTING);
    /* Past every window and deadline the gone servers had. */
    clock_skip_s(200);
    settle();
    assert_int_equal(events_of("srv2"), srv2_events);
}

/* Restart: each stored but unfinished action runs again exactly once; a
 * finished one does not; deadlines are armed again. */
#define FOUR                                                                   \
    TIMEOUTS PROJECTS SERVER("srv1", "1", "acme", "qmp:/fake/srv1")            \
        SERVER("srv2", "2", "acme", "qmp:/fake/srv2")                          \
            SERVER("srv3", "3", "acme", "qmp:/fake/srv3")                      \
                SERVER("srv4", "4", "acme", "qmp:/fake/srv4")

static int
four_setup(void **state)
{
    return life_setup_with(state, FOUR);
}

static void
test_restart_reruns_unfinished(void **state)
{
    (void)state;
    enum fsm_state st;
    unsigned pending;
    /* srv3: rebooting, its reset done; its deadline is the oldest. */
    to_rebooting("srv3", 0);
    answer("srv3", POWER_RESET, 0, NULL);
    stored("srv3", &st, &pending);
    assert_int_equal(st, FSM_REBOOTING);
    assert_int_equal(pending, 0);
    clock_skip_s(50);
    /* srv1: exiting, the target set, the reset not answered. */
    to_exiting("srv1");
    stored("srv1", &st, &pending);
    assert_int_equal(st, FSM_EXITING);
    assert_int_equal(pending, FSM_ACT_POWER_RESET);
    /* srv2: powered off (done), then on (not answered). */
    assert_int_equal(act("srv2", FSM_EV_POWER_OFF, 0), 0);
    answer("srv2", POWER_OFF, 0, NULL);
    assert_int_equal(act("srv2", FSM_EV_POWER_ON, 0), 0);
    stored("srv2", &st, &pending);
    assert_int_equal(st, FSM_ACTIVE);
    assert_int_equal(pending, FSM_ACT_POWER_ON);
    /* srv4: rescue asked, the netboot not answered. */
    assert_int_equal(act("srv4", FSM_EV_RESCUE, 0), 0);
    stored("srv4", &st, &pending);
    assert_int_equal(st, FSM_RESCUE_REQUESTED);
    assert_int_equal(pending, FSM_ACT_PREPARE_RESCUE);

    size_t from = nreqs;
    restart();
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_PENDING), 1);
    assert_int_equal(nreq_since(from, "srv2"), 1);
    assert_int_equal(nreq("srv2", POWER_ON, REQ_PENDING), 1);
    assert_int_equal(nreq("srv2", POWER_OFF, -1), 1);
    assert_int_equal(nreq_since(from, "srv3"), 0);
    assert_int_equal(nreq_since(from, "srv4"), 1);
    assert_int_equal(nreq("srv4", POWER_NETBOOT_ONCE, REQ_PENDING), 1);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_string_equal(state_of("srv4"), "rescue_requested");

    /* Each answer clears its own stored bit. */
    answer("srv1", POWER_RESET, 0, NULL);
    answer("srv2", POWER_ON, 0, NULL);
    answer("srv4", POWER_NETBOOT_ONCE, 0, NULL);
    assert_string_equal(state_of("srv4"), "rebooting");
    answer("srv4", POWER_RESET, 0, NULL);
    const char *ids[] = {"srv1", "srv2", "srv3", "srv4"};
    for (size_t i = 0; i < 4; i++) {
        stored(ids[i], &st, &pending);
        assert_int_equal(pending, 0);
    }

    /* srv3's deadline was armed again: it runs out first, and alone. */
    clock_skip_s(55);
    settle();
    assert_int_equal(retries_of("srv3"), 1);
    assert_int_equal(nreq("srv3", POWER_RESET, REQ_PENDING), 1);
    assert_int_equal(retries_of("srv1"), 0);
    assert_int_equal(retries_of("srv4"), 0);
    answer("srv3", POWER_RESET, 0, NULL);

    /* Nothing left undone: a second restart asks nothing. */
    from = nreqs;
    restart();
    settle();
    assert_int_equal(nreqs, from);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_string_equal(state_of("srv2"), "active");
    assert_string_equal(state_of("srv3"), "rebooting");
    assert_string_equal(state_of("srv4"), "rebooting");
}

/* rescued is down for down_s, starts again and has done what was due at
 * once; returns the number of requests before the restart. */
static size_t
down_for_s(int64_t down_s)
{
    clock_skip_s(down_s);
    size_t from = nreqs;
    restart();
    settle();
    return from;
}

/* rescued killed in rebooting with the reset not known done, and down
 * past the step's deadline: the restart resets once, on a fresh deadline
 * stored before the reset; the daemon's absence costs no retry, and the
 * step times out from its new deadline as usual. */
static void
test_restart_past_deadline_renews(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    int64_t t0 = now_wall_ms() + 120 * 1000;
    size_t from = down_for_s(120); /* the step has 100 s */
    int64_t t1 = now_wall_ms();
    assert_string_equal(state_of("srv1"), "rebooting");
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_int_equal(reqs[from].op, POWER_RESET);
    assert_int_equal(retries_of("srv1"), 0);
    assert_int_equal(step_metric("rescued_step_retries_total", "rebooting"), 0);
    int64_t d = stored_deadline("srv1");
    assert_in_range(d, t0 + 100000, t1 + 100000);
    assert_int_equal(reqs[from].stored_deadline_ms, d);
    assert_true(
        saw_stored("srv1 action: rebooting: deadline renewed, 100 s from "
                   "now: the daemon was down past it; its unfinished "
                   "actions run again\n"));
    answer("srv1", POWER_RESET, 0, NULL);
    retries_then_fail("srv1", "rebooting", 100, "rescue_failed");
}

/* Down past the deadline with nothing left undone (the reset was done,
 * the server never fetched its script): a real timeout, at once. */
static void
test_restart_past_deadline_times_out(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    answer("srv1", POWER_RESET, 0, NULL);
    size_t from = down_for_s(120);
    assert_string_equal(state_of("srv1"), "rebooting");
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_int_equal(reqs[from].op, POWER_RESET);
    assert_int_equal(retries_of("srv1"), 1);
    assert_int_equal(step_metric("rescued_step_retries_total", "rebooting"), 1);
    assert_true(saw("srv1 retry: rebooting: timed out after 100 s; reset, "
                    "retry 1 of 2\n"));
    assert_false(saw_stored("renewed"));
}

/* Killed with srv1's reset sent and not answered (the BMC may have carried
 * it out: case 069): the restarts do not reset it again, and its own boot
 * (the script fetch) moves it on.  Before, each restart reset it once
 * more.  srv2, killed with its reset asked but not yet sent (queued), is
 * reset by the restart, once. */
static void
test_restart_sent_reset_not_repeated(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    assert_int_equal(stored_sent("srv1"), 0);
    fake_send("srv1", POWER_RESET);
    assert_int_equal(stored_sent("srv1"), FSM_ACT_POWER_RESET);
    to_rebooting("srv2", 0);
    size_t from = nreqs;
    restart();
    settle();
    assert_int_equal(nreq_since(from, "srv2"), 1);
    assert_int_equal(nreq("srv2", POWER_RESET, REQ_PENDING), 1);
    restart(); /* and again: still not sent */
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 0);
    assert_string_equal(state_of("srv1"), "rebooting");
    assert_true(saw_stored("srv1 action: rebooting: its reset was sent "
                           "before rescued stopped and may have been carried "
                           "out: not sent again; waiting for the server's "
                           "boot until the step's deadline"));
    assert_true(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "pxe_booting");
    assert_int_equal(nreq_since(from, "srv1"), 0);
    assert_int_equal(retries_of("srv1"), 0);
    enum fsm_state st;
    unsigned pending;
    stored("srv1", &st, &pending);
    assert_int_equal(pending, 0);
    assert_int_equal(stored_sent("srv1"), 0);
}

/* ... and when no boot comes (the reset never reached the BMC after all),
 * the step's own deadline, not renewed by the restart, retries: one
 * reset.  The retry's reset counts as not sent until its command goes
 * out, so a kill before that resets at the restart. */
static void
test_restart_sent_reset_retried_at_deadline(void **state)
{
    (void)state;
    to_rebooting("srv1", 0);
    fake_send("srv1", POWER_RESET);
    clock_skip_s(30);
    size_t from = nreqs;
    restart();
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 0);
    clock_skip_s(65); /* 95 s of rebooting's 100 */
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 0);
    assert_int_equal(retries_of("srv1"), 0);
    clock_skip_s(10);
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_PENDING), 1);
    assert_int_equal(retries_of("srv1"), 1);
    assert_true(saw("srv1 retry: rebooting: timed out after 100 s; reset, "
                    "retry 1 of 2\n"));
    assert_int_equal(stored_sent("srv1"), 0);
    from = nreqs;
    restart();
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 1);
    assert_int_equal(nreq("srv1", POWER_RESET, REQ_PENDING), 1);
}

/* The way home, its reset sent: the restart asks neither the disk boot
 * nor the reset again; the local script's fetch moves it on. */
static void
test_restart_sent_exit_reset_not_repeated(void **state)
{
    (void)state;
    to_exiting("srv1");
    fake_send("srv1", POWER_RESET);
    size_t from = nreqs;
    restart();
    settle();
    assert_int_equal(nreq_since(from, "srv1"), 0);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");
    assert_int_equal(nreq_since(from, "srv1"), 0);
}

/* A ttl that ran out while the daemon was down ends the rescue at once,
 * even with a power action of the user's still to run: the ttl is the
 * user's clock, not a wait on the server. */
static void
test_restart_past_ttl_exits(void **state)
{
    (void)state;
    to_rescue("srv1", 600);
    assert_int_equal(act("srv1", FSM_EV_POWER_OFF, 0), 0);
    size_t from = down_for_s(700);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_true(
        saw("srv1 transition rescue->exiting: rescue ttl of 600 s expired\n"));
    assert_false(saw_stored("renewed"));
    assert_int_equal(nreq_since(from, "srv1"), 2);
    assert_int_equal(reqs[from].op, POWER_OFF);
    assert_int_equal(reqs[from + 1].op, POWER_RESET);
    assert_false(fetch_script("srv1"));
}

/* --- the console: the local OS seen ----------------------------------------
 */

static void
screen_output(struct console_viewer *v, void *arg)
{
    (void)arg;
    const char *data;
    size_t n;
    while ((n = console_viewer_peek(v, &data)) > 0) {
        buf_append(&screen, data, n);
        console_viewer_consume(v, n);
    }
}

static const struct console_viewer_cbs screen_cbs = {.output = screen_output};

static void
serial_turn(void *arg)
{
    (void)arg;
    tu_source_pump(serial, E->loop);
}

static bool
serial_up(void *arg)
{
    (void)arg;
    return serial->fd >= 0 &&
           console_connected(fleet_console(E->fleet, "srv1"));
}

/* srv1 with a console on a fake serial port, a pattern of its own. */
static int
console_setup(void **state)
{
    life_reset();
    struct env *e = env_dir_new("kernel");
    char *sock = xasprintf("%s/srv1.sock", e->dir);
    serial = tu_source_new(sock);
    assert_non_null(serial);
    char *sections =
        xasprintf(TIMEOUTS "local_boot_pattern = Welcome to Debian\n" PROJECTS
                           "[server:srv1]\n"
                           "mac = 52:54:00:00:00:01\n"
                           "project = acme\n"
                           "power = qmp:/fake/srv1\n"
                           "console = unix:%s\n",
                  sock);
    life_start(e, sections);
    free(sections);
    free(sock);
    assert_true(tu_until(5000, serial_up, NULL, serial_turn, NULL));
    console_attach(fleet_console(e->fleet, "srv1"), 0, &screen_cbs, NULL);
    *state = e;
    return 0;
}

/* The serial port prints text, and the console (so the fleet's watcher,
 * in the same dispatch) has seen all of it. */
static void
serial_print(const char *text)
{
    size_t n = strlen(text), from = screen.len;
    assert_int_equal(tu_source_write(serial, E->loop, text, n, 5000), n);
    struct tu_needle nd = {.b = &screen, .from = from, .text = text};
    assert_true(tu_until(5000, tu_buf_has, &nd, serial_turn, NULL));
}

/* exiting -> booting_local: the local script fetched, a console to watch. */
static void
to_booting_local(const char *id)
{
    to_exiting(id);
    answer(id, POWER_RESET, 0, NULL);
    assert_false(fetch_script(id));
    assert_string_equal(state_of(id), "booting_local");
}

/* Only local_boot_pattern, only in booting_local, even split across
 * chunks, says the local OS is up; the default "login:" does not. */
static void
test_local_boot_pattern(void **state)
{
    (void)state;
    to_exiting("srv1");
    serial_print("Welcome to Debian (the rescue OS going down)\r\n");
    assert_string_equal(state_of("srv1"), "exiting");
    answer("srv1", POWER_RESET, 0, NULL);
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");

    serial_print("Debian GNU/Linux 12 srv1 ttyS0\r\n\r\nsrv1 login: ");
    assert_string_equal(state_of("srv1"), "booting_local");
    serial_print("\r\nWelcome to");
    assert_string_equal(state_of("srv1"), "booting_local");
    serial_print(" Debian\r\n");
    assert_string_equal(state_of("srv1"), "active");
    assert_true(saw("srv1 transition booting_local->active: local OS seen on "
                    "the console\n"));
}

/* A console that never shows the pattern: booting_local retries, then
 * exit_failed. */
static void
test_booting_local_retries_then_fails(void **state)
{
    (void)state;
    to_booting_local("srv1");
    retries_then_fail("srv1", "booting_local", 140, "exit_failed");
}

/* Index in reqs of server's first request for op since from, or -1. */
static int
req_index(size_t from, const char *server, enum power_op op)
{
    for (size_t i = from; i < nreqs; i++)
        if (reqs[i].op == op && strcmp(reqs[i].server, server) == 0)
            return (int)i;
    return -1;
}

/* A driver that can choose: exit asks for the disk boot before the reset,
 * and the reset done ends exiting at once; booting_local lasts until the
 * console shows the local OS, and a late netboot's local script moves
 * nothing. */
static void
test_exit_through_disk_boot(void **state)
{
    (void)state;
    fake_disk_boot = true;
    to_rescue("srv1", 0);
    size_t from = nreqs;
    assert_int_equal(act("srv1", FSM_EV_EXIT_RESCUE, 0), 0);
    int disk = req_index(from, "srv1", POWER_BOOT_DISK_ONCE);
    int reset = req_index(from, "srv1", POWER_RESET);
    assert_true(disk >= 0 && reset > disk);
    answer("srv1", POWER_BOOT_DISK_ONCE, 0, NULL);
    assert_string_equal(state_of("srv1"), "exiting");
    answer("srv1", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv1"), "booting_local");
    assert_true(saw("srv1 transition exiting->booting_local: reset done, "
                    "one-time disk boot set\n"));
    enum fsm_state st;
    unsigned pending;
    stored("srv1", &st, &pending);
    assert_int_equal(pending, 0);
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");
    serial_print("Debian GNU/Linux 12\r\nWelcome to Debian\r\n");
    assert_string_equal(state_of("srv1"), "active");

    /* The next exit asks again; a retry of the way home does too. */
    to_rescue("srv1", 0);
    from = nreqs;
    assert_int_equal(act("srv1", FSM_EV_EXIT_RESCUE, 0), 0);
    answer("srv1", POWER_BOOT_DISK_ONCE, 0, NULL);
    answer("srv1", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv1"), "booting_local");
    clock_skip_s(145);
    settle();
    assert_int_equal(retries_of("srv1"), 1);
    disk = req_index(nreqs - 2, "srv1", POWER_BOOT_DISK_ONCE);
    reset = req_index(nreqs - 2, "srv1", POWER_RESET);
    assert_true(disk >= 0 && reset > disk);
}

/* Killed between the disk boot done and its reset: the restart asks for
 * the disk boot again before the reset (whether it was set lived in the
 * old daemon's memory), so the reset done still ends exiting.  Before,
 * the restarted reset moved nothing: exiting until the step timed out
 * without a console (the server had booted its disk, no script to fetch). */
static void
test_restart_between_disk_boot_and_reset(void **state)
{
    (void)state;
    fake_disk_boot = true;
    to_rescue("srv2", 0);
    assert_int_equal(act("srv2", FSM_EV_EXIT_RESCUE, 0), 0);
    answer("srv2", POWER_BOOT_DISK_ONCE, 0, NULL);
    enum fsm_state st;
    unsigned pending;
    stored("srv2", &st, &pending);
    assert_int_equal(st, FSM_EXITING);
    assert_int_equal(pending, FSM_ACT_POWER_RESET);
    size_t from = nreqs;
    restart();
    settle();
    int disk = req_index(from, "srv2", POWER_BOOT_DISK_ONCE);
    int reset = req_index(from, "srv2", POWER_RESET);
    assert_true(disk >= 0 && reset > disk);
    answer("srv2", POWER_BOOT_DISK_ONCE, 0, NULL);
    answer("srv2", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv2"), "booting_local");
    assert_int_equal(nreq("srv2", POWER_RESET, REQ_DONE), 2);
}

/* A driver that cannot choose (-ENOTSUP) keeps today's path: the reset
 * done moves nothing, the local script ends exiting.  One that fails, or
 * whose BMC does not keep it, costs time, not the exit: an error event,
 * the reset all the same, and the local script sends it home. */
static void
test_exit_without_disk_boot(void **state)
{
    (void)state;
    to_exiting("srv1");
    assert_true(saw("srv1 action: no one-time disk boot: fake: cannot "
                    "choose the boot device"));
    answer("srv1", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");
    assert_true(saw("srv1 transition exiting->booting_local: ipxe script "
                    "fetched\n"));
    serial_print("Welcome to Debian\r\n");
    assert_string_equal(state_of("srv1"), "active");

    fake_disk_boot = true;
    to_rescue("srv1", 0);
    assert_int_equal(act("srv1", FSM_EV_EXIT_RESCUE, 0), 0);
    answer("srv1", POWER_BOOT_DISK_ONCE, -EIO,
           "ipmi 10.0.0.5:623: chassis bootdev disk: the BMC did not keep "
           "it (boot parameter 5 reads none)");
    assert_true(saw("srv1 error: one-time disk boot failed: ipmi "
                    "10.0.0.5:623: chassis bootdev disk: the BMC did not "
                    "keep it (boot parameter 5 reads none); it boots through "
                    "the network and its iPXE script sends it home\n"));
    assert_string_equal(state_of("srv1"), "exiting");
    answer("srv1", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv1"), "exiting");
    assert_string_equal(last_error("srv1"), "");
    assert_false(fetch_script("srv1"));
    assert_string_equal(state_of("srv1"), "booting_local");
    serial_print("Welcome to Debian\r\n");
    assert_string_equal(state_of("srv1"), "active");
}

/* No console, a driver that can choose: booting_local from the reset,
 * then local_settle (60 s by default) and active, each saying why. */
static void
test_exit_no_console_settles(void **state)
{
    (void)state;
    fake_disk_boot = true;
    to_exiting("srv2");
    answer("srv2", POWER_BOOT_DISK_ONCE, 0, NULL);
    answer("srv2", POWER_RESET, 0, NULL);
    assert_string_equal(state_of("srv2"), "booting_local");
    assert_true(saw("srv2 transition exiting->booting_local: reset done, "
                    "one-time disk boot set; no console to watch: counted "
                    "as up in 60 s (local_settle)\n"));
    clock_skip_s(55);
    settle();
    assert_string_equal(state_of("srv2"), "booting_local");
    clock_skip_s(10);
    settle();
    assert_string_equal(state_of("srv2"), "active");
    assert_int_equal(nreq("srv2", POWER_RESET, -1), 2);
}

static int
count_one(void *arg, const struct store_event *ev)
{
    (void)ev;
    ++*(int *)arg;
    return 0;
}

struct kept {
    struct store *st;
    int max;
};

static bool
events_at_most(void *arg)
{
    struct kept *k = arg;
    int n = 0;
    store_list_events(k->st, "srv1", 0, 0, count_one, &n);
    return n <= k->max;
}

/* [rescued] retention_events: the fleet prunes each server's history
 * down to its newest N, from the loop, without a restart. */
static void
test_retention_prunes(void **state)
{
    (void)state;
    struct env *e = env_dir_new("x");
    env_start(e, "retention_events = 5\n", INVENTORY("srv1"));
    assert_int_equal(store_begin(e->st), 0);
    for (int i = 0; i < 40; i++)
        assert_true(store_append_event(e->st, "srv1", "audit", "t", "x") > 0);
    assert_int_equal(store_commit(e->st), 0);
    struct kept k = {e->st, 5};
    assert_true(tu_pump_until(e->loop, 3000, events_at_most, &k));
    int n = 0;
    store_list_events(e->st, "srv1", 0, 0, count_one, &n);
    assert_int_equal(n, 5);
    env_free(e);
}

/* More keys than the overlay carries: refused (the API's 400) with the
 * limit, not accepted with some silently dropped; the limit itself is
 * taken. */
static void
test_too_many_keys(void **state)
{
    (void)state;
    const char *keys[FLEET_MAX_KEYS + 1];
    for (size_t i = 0; i < FLEET_MAX_KEYS + 1; i++)
        keys[i] = KEY;
    struct fleet_action a = {.event = FSM_EV_RESCUE,
                             .ssh_keys = keys,
                             .nkeys = FLEET_MAX_KEYS + 1,
                             .actor = "admin"};
    char err[256] = "";
    assert_int_equal(fleet_action(E->fleet, "srv1", &a, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "ssh_keys: 65 keys, at most 64 (more would not "
                             "reach the rescue OS)");
    assert_string_equal(state_of("srv1"), "active");
    a.nkeys = FLEET_MAX_KEYS;
    assert_int_equal(fleet_action(E->fleet, "srv1", &a, err, sizeof(err)), 0);
    assert_string_equal(state_of("srv1"), "rescue_requested");
}

/* Every key a rescue may bring reaches the overlay's authorized_keys.
 * The overlay's room for them was a literal 64 beside FLEET_MAX_KEYS: with
 * the limit raised to 65, the 65th key was accepted and left out. */
static void
test_max_keys_reach_overlay(void **state)
{
    (void)state;
    const char *keys[FLEET_MAX_KEYS];
    for (size_t i = 0; i < FLEET_MAX_KEYS; i++)
        keys[i] = KEY;
    struct fleet_action a = {.event = FSM_EV_RESCUE,
                             .ssh_keys = keys,
                             .nkeys = FLEET_MAX_KEYS,
                             .actor = "admin"};
    char err[256] = "", token[65];
    assert_int_equal(fleet_action(E->fleet, "srv1", &a, err, sizeof(err)), 0);
    answer("srv1", POWER_NETBOOT_ONCE, 0, NULL);
    answer("srv1", POWER_RESET, 0, NULL);
    assert_true(fetch_script("srv1"));
    token_of("srv1", token);
    assert_int_equal(fleet_image_fetched(E->fleet, "vmlinuz", token,
                                         SERVER_ADDR, false, err, sizeof(err)),
                     0);
    struct buf b = {0};
    assert_int_equal(
        fleet_overlay(E->fleet, token, SERVER_ADDR, &b, err, sizeof(err)), 0);
    char *tgz = xasprintf("%s/overlay.tar.gz", E->dir);
    assert_int_equal(write_file_atomic(tgz, b.data, b.len, 0600), 0);
    buf_free(&b);
    char *cmd = xasprintf("tar -xzOf %s root/.ssh/authorized_keys | "
                          "grep -c 'test@fleet'",
                          tgz);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    assert_int_equal(n, FLEET_MAX_KEYS);
    free(cmd);
    free(tgz);
}

/* A reload moves the server to another project: what its console showed
 * before (the ring a new viewer replays, the log the API tails) is not the
 * new project's to read; what follows is. */
static void
test_reload_move_forgets_console(void **state)
{
    (void)state;
    serial_print("acme's secret output\r\n");
    struct console *c = fleet_console(E->fleet, "srv1");
    struct buf b = {0};
    console_replay_lines(c, 10, &b);
    assert_non_null(strstr(b.data, "acme's secret"));
    buf_free(&b);
    char *sock = xasprintf("%s/srv1.sock", E->dir);
    char *sections =
        xasprintf(TIMEOUTS "local_boot_pattern = Welcome to Debian\n" PROJECTS
                           "[server:srv1]\n"
                           "mac = 52:54:00:00:00:01\n"
                           "project = beta\n"
                           "power = qmp:/fake/srv1\n"
                           "console = unix:%s\n",
                  sock);
    reload(sections);
    free(sections);
    free(sock);
    assert_ptr_equal(fleet_console(E->fleet, "srv1"), c); /* kept */
    console_replay_lines(c, 10, &b);
    assert_true(!b.data || !strstr(b.data, "acme's secret"));
    buf_free(&b);
    char *dir = xasprintf("%s/data/console", E->dir);
    int r = console_tail_log(dir, "srv1", 10, &b);
    assert_true(r == 0 || r == -ENOENT);
    assert_true(!b.data || !strstr(b.data, "acme's secret"));
    buf_free(&b);

    serial_print("beta's own output\r\n");
    clock_skip_s(2); /* the log's write, held back for a burst, is due */
    settle();
    console_replay_lines(c, 10, &b);
    assert_non_null(strstr(b.data, "beta's own"));
    buf_free(&b);
    assert_int_equal(console_tail_log(dir, "srv1", 10, &b), 0);
    assert_non_null(strstr(b.data, "beta's own"));
    assert_null(strstr(b.data, "acme's secret"));
    buf_free(&b);
    free(dir);
    assert_true(saw("srv1 audit: moved from project acme to project beta\n"));
    /* The old past is kept aside on disk, for an administrator. */
    struct buf cmd = {0};
    buf_printf(
        &cmd,
        "grep -q \"acme's secret\" %s/data/console/srv1.log.before-move-*",
        E->dir);
    assert_int_equal(system(cmd.data), 0);
    buf_free(&cmd);
}

/* --- a store that refuses writes ------------------------------------------
 * Another process (an administrator's sqlite3 shell) holds the write lock;
 * the store waits 0 ms for it (store_test_set_busy_timeout), so each write
 * fails at once, as on a full disk. */

void store_test_set_busy_timeout(int ms);

static sqlite3 *locker;

static void
store_lock(void)
{
    char *path = xasprintf("%s/data/rescued.db", E->dir);
    assert_int_equal(sqlite3_open(path, &locker), SQLITE_OK);
    free(path);
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", 0, 0, 0),
                     SQLITE_OK);
}

static void
store_unlock(void)
{
    assert_int_equal(sqlite3_exec(locker, "ROLLBACK", 0, 0, 0), SQLITE_OK);
    sqlite3_close(locker);
    locker = NULL;
}

static int
locked_setup(void **state)
{
    store_test_set_busy_timeout(0);
    return life_setup(state);
}

static int
locked_teardown(void **state)
{
    if (locker)
        store_unlock();
    store_test_set_busy_timeout(5000);
    return life_teardown(state);
}

/* An action the store cannot record is refused with the reason (the API's
 * 503) and runs nothing; a deadline whose change cannot be stored is tried
 * again with a growing back-off, not at once; the server's last_error says
 * why and the log says it once per interval; when the lock goes the step
 * goes on. */
static void
test_store_refuses_writes(void **state)
{
    (void)state;
    store_lock();
    assert_int_equal(act("srv1", FSM_EV_RESCUE, 0), -EIO);
    if (!strstr(action_err, "cannot store the change to rescue_requested") ||
        !strstr(action_err, "database is locked"))
        fail_msg("action_err: %s", action_err);
    assert_string_equal(state_of("srv1"), "active");
    assert_int_equal(nreqs, 0);
    assert_non_null(strstr(last_error("srv1"), "database is locked"));
    store_unlock();

    /* Stored: last_error is the state machine's again. */
    assert_int_equal(act("srv1", FSM_EV_RESCUE, 0), 0);
    assert_string_equal(state_of("srv1"), "rescue_requested");
    assert_string_equal(last_error("srv1"), "");

    /* The 30 s of rescue_requested pass while the lock is held. */
    char *logf = xasprintf("%s/log", E->dir);
    int saved = tu_log_capture(logf, LOG_LEVEL_WARN);
    store_lock();
    int n0 = transitions_asked;
    clock_skip_s(31);
    settle();
    tu_pump_for(E->loop, 300); /* a 0 ms re-arm would try thousands */
    assert_int_equal(transitions_asked - n0, 1);
    assert_string_equal(state_of("srv1"), "rescue_requested");
    if (!strstr(last_error("srv1"),
                "cannot store the change to rescue_failed: ") ||
        !strstr(last_error("srv1"), "database is locked"))
        fail_msg("last_error: %s", last_error("srv1"));
    /* Back-off 1, 2, 4 s: tries at +1, +3, +7 s. */
    int64_t tries_at[] = {1, 3, 7}, t = 0;
    for (size_t k = 0; k < 3; k++) {
        clock_skip_s(tries_at[k] - t);
        t = tries_at[k];
        settle();
        assert_int_equal(transitions_asked - n0, (int)k + 2);
    }
    clock_skip_s(1); /* +8: the next is at +15 */
    settle();
    assert_int_equal(transitions_asked - n0, 4);
    int said =
        tu_log_lines(logf, "srv1: cannot store the change to rescue_failed");
    int store_said = tu_log_lines(logf, "database is locked");
    clock_skip_s(7); /* +15: 10 s after the first report, said again */
    settle();
    assert_int_equal(transitions_asked - n0, 5);
    int said_again = tu_log_lines(logf, "more times since the last report");
    store_unlock();
    clock_skip_s(16); /* +31, the try after +15 */
    settle();
    tu_log_release(saved, LOG_LEVEL_ERROR);
    free(logf);
    assert_int_equal(said, 1);
    assert_int_equal(store_said, 2); /* the store's line, fleet's line */
    assert_int_equal(said_again, 1);
    assert_string_equal(state_of("srv1"), "rescue_failed");
    assert_string_equal(last_error("srv1"),
                        "rescue_requested: timed out after 30 s (0 retries)");
    assert_int_equal(nreq("srv1", POWER_RESET, -1), 0);
}

int
main(void)
{
    log_set_level(LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writable_changed_fires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_drops_grace, setup,
                                        teardown),
#define LIFE(t) cmocka_unit_test_setup_teardown(t, life_setup, life_teardown)
        LIFE(test_rescue_requested_times_out),
        LIFE(test_rebooting_retries_then_fails),
        LIFE(test_pxe_booting_retries_then_fails),
        LIFE(test_rescue_booting_retries_then_fails),
        LIFE(test_exiting_retries_then_fails),
        LIFE(test_tokens_follow_the_boot),
        LIFE(test_reboot_from_rescue_mints_a_token),
        LIFE(test_rescue_os_restarts_itself),
        LIFE(test_power_failure_fails_rescue),
        LIFE(test_too_many_keys),
        LIFE(test_max_keys_reach_overlay),
        LIFE(test_long_detail_cut_between_characters),
        LIFE(test_netboot_failure_and_unsupported),
        LIFE(test_exit_power_failure),
        LIFE(test_preflight_refuses_unreachable),
        LIFE(test_ttl_expiry_exits),
        LIFE(test_reload_adds_and_removes),
        LIFE(test_reload_grows),
        LIFE(test_reload_moves_project),
        LIFE(test_reload_new_power_resumes),
        LIFE(test_move_cutoff_survives_restart),
        LIFE(test_move_while_down_or_rebuilt),
        LIFE(test_reload_new_timeout_renews_with_it),
        LIFE(test_reload_drops_unheard_answers),
        cmocka_unit_test_setup_teardown(test_restart_reruns_unfinished,
                                        four_setup, life_teardown),
        LIFE(test_restart_past_deadline_renews),
        LIFE(test_restart_past_deadline_times_out),
        LIFE(test_restart_past_ttl_exits),
        LIFE(test_restart_sent_reset_not_repeated),
        LIFE(test_restart_sent_reset_retried_at_deadline),
        LIFE(test_restart_sent_exit_reset_not_repeated),
        cmocka_unit_test_setup_teardown(test_local_boot_pattern, console_setup,
                                        life_teardown),
        cmocka_unit_test_setup_teardown(test_booting_local_retries_then_fails,
                                        console_setup, life_teardown),
        cmocka_unit_test_setup_teardown(test_exit_through_disk_boot,
                                        console_setup, life_teardown),
        cmocka_unit_test_setup_teardown(test_exit_without_disk_boot,
                                        console_setup, life_teardown),
        cmocka_unit_test_setup_teardown(test_reload_move_forgets_console,
                                        console_setup, life_teardown),
        LIFE(test_restart_between_disk_boot_and_reset),
        LIFE(test_exit_no_console_settles),
        cmocka_unit_test(test_retention_prunes),
        cmocka_unit_test_setup_teardown(test_store_refuses_writes, locked_setup,
                                        locked_teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    buf_free(&events);
    buf_free(&screen);
    return r;
}
