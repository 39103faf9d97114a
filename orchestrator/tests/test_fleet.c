/* fleet: the console's writable-changed notification.  A real config,
 * store and fleet (fleetenv.h) with one manual: server and readonly_grace
 * = 1; the boot path takes it into rescue, and the loop is pumped until
 * the read-only window after that transition ends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "fleet.h"
#include "loop.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetenv.h"

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
    "token = acme-secret\n"                                                    \
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
    json_t *report = json_pack("{s:s}", "ip", "192.0.2.9");
    assert_int_equal(
        fleet_phone_home(e->fleet, token, report, err, sizeof(err)), 0);
    json_decref(report);
    assert_int_equal(f->calls, 3); /* -> rescue, read-only for 1 s */
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
    assert_true(pump_until_calls(f, 4, 3000));
    assert_true(now_mono_ms() - t0 >= 900);
    assert_true(f->writable);
    assert_string_equal(f->server, "srv1");
    /* One timer per window: nothing more comes. */
    tu_pump_turns(f->env->loop, 20, 10);
    assert_int_equal(f->calls, 4);
}

/* A server dropped at reload takes its pending window with it. */
static void
test_reload_drops_grace(void **state)
{
    struct fx *f = *state;
    struct env *e = f->env;
    into_rescue(f);
    fleet_reload(e->fleet, env_config(e, NULL, INVENTORY("srv2")));
    assert_null(config_find_server(fleet_config(e->fleet), "srv1"));
    /* srv2 is new, so its own window may end meanwhile; srv1's must not. */
    tu_pump_for(e->loop, 1500);
    assert_int_equal(f->srv1_calls, 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writable_changed_fires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_drops_grace, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
