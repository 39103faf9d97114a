/* fleet: the console's writable-changed notification.  A real config,
 * store and fleet with one manual: server and readonly_grace = 1; the boot
 * path takes it into rescue, and the loop is pumped until the read-only
 * window after that transition ends. */
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

#define KEY                                                                    \
    "ssh-ed25519 "                                                             \
    "AAAAC3NzaC1lZDI1NTE5AAAAIL/8vzGNCpIQIPK+p7NoM73ZDLWF6tZAb3DPdMsVH8Ks "    \
    "test@fleet"

struct env {
    char *dir;
    struct loop *loop;
    struct store *st;
    struct fleet *fleet;
    uint64_t listener;
    int calls;       /* writable-changed notifications so far */
    int srv1_calls;  /* those for srv1 */
    bool writable;   /* fleet_console_writable() at the last one */
    char server[64]; /* the server of the last one */
};

static void
on_writable(void *arg, const char *server)
{
    struct env *e = arg;
    char why[256];
    e->calls++;
    e->srv1_calls += strcmp(server, "srv1") == 0;
    strlcpy_s(e->server, server, sizeof(e->server));
    e->writable = fleet_console_writable(e->fleet, server, why, sizeof(why));
}

/* The inventory: srv1 alone, or (without_srv1) a srv2 in its place. */
static struct config *
config_write(struct env *e, bool without_srv1)
{
    char *ini = xasprintf("%s/rescued.ini", e->dir);
    char *text =
        xasprintf("[rescued]\n"
                  "listen = 127.0.0.1:8080\n"
                  "boot_url = http://127.0.0.1:8080\n"
                  "data_dir = %s/data\n"
                  "admin_token = admin-secret\n"
                  "log_level = error\n"
                  "[console]\n"
                  "readonly_grace = 1\n"
                  "[image]\n"
                  "kernel = %s/vmlinuz\n"
                  "initrd = %s/initrd\n"
                  "[project:acme]\n"
                  "token = acme-secret\n"
                  "[server:%s]\n"
                  "mac = 52:54:00:00:00:01\n"
                  "project = acme\n"
                  "power = manual:\n",
                  e->dir, e->dir, e->dir, without_srv1 ? "srv2" : "srv1");
    assert_int_equal(write_file_atomic(ini, text, strlen(text), 0600), 0);
    free(text);
    char err[512] = "";
    struct config *cfg = config_load(ini, err, sizeof(err));
    free(ini);
    if (!cfg)
        fail_msg("config: %s", err);
    return cfg;
}

static int
setup(void **state)
{
    struct env *e = xcalloc(1, sizeof(*e));
    e->dir = tu_tmpdir_new("test_fleet");
    assert_non_null(e->dir);
    /* The rescue pre-flight wants the image files to exist. */
    const char *files[] = {"vmlinuz", "initrd"};
    for (size_t i = 0; i < 2; i++) {
        char *f = xasprintf("%s/%s", e->dir, files[i]);
        assert_int_equal(write_file_atomic(f, "x", 1, 0644), 0);
        free(f);
    }
    struct config *cfg = config_write(e, false);
    char err[512] = "";
    e->loop = loop_new();
    e->st = store_open(cfg->store, cfg->data_dir, err, sizeof(err));
    if (!e->st)
        fail_msg("store: %s", err);
    e->fleet = fleet_new(e->loop, cfg, e->st, err, sizeof(err));
    if (!e->fleet)
        fail_msg("fleet: %s", err);
    e->listener = fleet_on_writable_changed(e->fleet, on_writable, e);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    fleet_unsubscribe(e->fleet, e->listener);
    fleet_free(e->fleet);
    store_close(e->st);
    loop_free(e->loop);
    assert_int_equal(tu_tmpdir_free(e->dir), 0);
    free(e);
    return 0;
}

/* Pump the loop until e->calls reaches n or ms pass. */
static bool
pump_until_calls(struct env *e, int n, int ms)
{
    struct tu_count c = {.n = &e->calls, .want = n};
    return tu_pump_until(e->loop, ms, tu_at_least, &c);
}

/* rescue_requested -> rebooting -> (phone home) rescue: three transitions,
 * the last one into a stable state, whose read-only window is running. */
static void
into_rescue(struct env *e)
{
    const char *keys[] = {KEY};
    struct fleet_action a = {
        .event = FSM_EV_RESCUE, .ssh_keys = keys, .nkeys = 1, .actor = "admin"};
    char err[256] = "";
    assert_int_equal(fleet_action(e->fleet, "srv1", &a, err, sizeof(err)), 0);
    assert_int_equal(e->calls, 1); /* active -> rescue_requested */
    assert_false(e->writable);
    assert_string_equal(e->server, "srv1");
    assert_true(pump_until_calls(e, 2, 2000)); /* -> rebooting */
    assert_false(e->writable);

    char token[65];
    assert_int_equal(store_token_of_server(e->st, "srv1", token, sizeof(token)),
                     0);
    json_t *report = json_pack("{s:s}", "ip", "192.0.2.9");
    assert_int_equal(
        fleet_phone_home(e->fleet, token, report, err, sizeof(err)), 0);
    json_decref(report);
    assert_int_equal(e->calls, 3); /* -> rescue, read-only for 1 s */
    assert_false(e->writable);
    char why[256];
    assert_false(fleet_console_writable(e->fleet, "srv1", why, sizeof(why)));
}

/* Each transition tells the listener, and so does the window's end. */
static void
test_writable_changed_fires(void **state)
{
    struct env *e = *state;
    into_rescue(e);
    int64_t t0 = now_mono_ms();
    assert_true(pump_until_calls(e, 4, 3000));
    assert_true(now_mono_ms() - t0 >= 900);
    assert_true(e->writable);
    assert_string_equal(e->server, "srv1");
    /* One timer per window: nothing more comes. */
    tu_pump_turns(e->loop, 20, 10);
    assert_int_equal(e->calls, 4);
}

/* A server dropped at reload takes its pending window with it. */
static void
test_reload_drops_grace(void **state)
{
    struct env *e = *state;
    into_rescue(e);
    fleet_reload(e->fleet, config_write(e, true));
    assert_null(config_find_server(fleet_config(e->fleet), "srv1"));
    /* srv2 is new, so its own window may end meanwhile; srv1's must not. */
    tu_pump_for(e->loop, 1500);
    assert_int_equal(e->srv1_calls, 3);
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
