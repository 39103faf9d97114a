/* Helpers shared by test_power.c and test_power_ipmi.c: run one power
 * request through a real loop and collect its single completion. Include
 * after cmocka.h, loop.h, power.h, testutil.h and util.h. */
#ifndef RESCUED_TEST_POWERHELP_H
#define RESCUED_TEST_POWERHELP_H

#include <stdbool.h>
#include <string.h>

struct result {
    bool done;
    int calls;
    int status;
    char detail[512];
};

static void
on_done(void *arg, int status, const char *detail)
{
    struct result *r = arg;
    r->done = true;
    r->calls++;
    r->status = status;
    strlcpy_s(r->detail, detail ? detail : "", sizeof(r->detail));
}

static void __attribute__((unused)) wait_done(struct loop *l, struct result *r)
{
    assert_true(tu_pump_until(l, 15000, tu_flag, &r->done));
}

/* One request; its status. The callback never runs before power_request
 * returns, and runs exactly once. */
static int __attribute__((unused))
run_op(struct loop *l, struct power *p, enum power_op op, const char *arg,
       struct result *r)
{
    memset(r, 0, sizeof(*r));
    power_request(p, op, arg, on_done, r);
    assert_false(r->done);
    wait_done(l, r);
    loop_run_once(l, 0);
    assert_int_equal(r->calls, 1);
    return r->status;
}

/* A request's answer, and how often its sending callback ran
 * (power_request_notify); at_sending, when set, runs at each, and may
 * keep what it saw in then (freed by the test). */
struct watch {
    struct result r;
    int sendings;
    void (*at_sending)(struct watch *w);
    char *then;
};

static void __attribute__((unused))
watch_done(void *arg, int status, const char *detail)
{
    on_done(&((struct watch *)arg)->r, status, detail);
}

static void __attribute__((unused)) watch_sending(void *arg)
{
    struct watch *w = arg;
    w->sendings++;
    if (w->at_sending)
        w->at_sending(w);
}

/* run_op with a sending callback; the counts start again at 0. */
static int __attribute__((unused))
run_watched(struct loop *l, struct power *p, enum power_op op, struct watch *w)
{
    memset(&w->r, 0, sizeof(w->r));
    w->sendings = 0;
    power_request_notify(p, op, NULL, watch_done, watch_sending, w);
    wait_done(l, &w->r);
    loop_run_once(l, 0);
    assert_int_equal(w->r.calls, 1);
    return w->r.status;
}

#endif
