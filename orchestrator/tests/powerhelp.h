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

#endif
