/* The event loop: timers fire in order and repeat, fds wake callbacks, and
 * a watcher removed from inside a callback never fires again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "loop.h"
#include "testutil.h"
#include "util.h"

#include <unistd.h>

static int order[8];
static int norder;

static int64_t
record(struct loop *l, void *arg)
{
    (void)l;
    order[norder++] = (int)(intptr_t)arg;
    return -1;
}

static void
test_timers_fire_in_deadline_order(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    norder = 0;
    loop_add_timer(l, 30, record, (void *)3);
    loop_add_timer(l, 10, record, (void *)1);
    uint64_t gone = loop_add_timer(l, 15, record, (void *)9);
    loop_add_timer(l, 20, record, (void *)2);
    loop_del_timer(l, gone);
    tu_pump_until(l, 1000, tu_at_least,
                  &(struct tu_count){.n = &norder, .want = 3});
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
    loop_free(l);
}

static int repeats;

static int64_t
repeat_three_times(struct loop *l, void *arg)
{
    (void)l;
    (void)arg;
    return ++repeats < 3 ? 5 : -1;
}

static void
test_timer_repeats_until_minus_one(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    repeats = 0;
    loop_add_timer(l, 0, repeat_three_times, NULL);
    tu_pump_for(l, 500);
    assert_int_equal(repeats, 3);
    loop_free(l);
}

struct pair {
    int fds[2][2];
    int calls[2];
};

/* The first readable pipe removes the other's watcher. */
static void
on_read(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    struct pair *p = arg;
    int which = fd == p->fds[0][0] ? 0 : 1;
    char c;
    assert_int_equal(read(fd, &c, 1), 1);
    p->calls[which]++;
    loop_del_fd(l, p->fds[1 - which][0]);
}

static void
test_fd_removed_inside_callback_does_not_fire(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct pair p = {0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pipe(p.fds[i]), 0);
        assert_int_equal(loop_add_fd(l, p.fds[i][0], EPOLLIN, on_read, &p), 0);
        assert_int_equal(write(p.fds[i][1], "x", 1), 1);
    }
    loop_run_once(l, 100);
    loop_run_once(l, 20);
    assert_int_equal(p.calls[0] + p.calls[1], 1);
    for (int i = 0; i < 2; i++) {
        close(p.fds[i][0]);
        close(p.fds[i][1]);
    }
    loop_free(l);
}

static int64_t
stop_it(struct loop *l, void *arg)
{
    (void)arg;
    loop_stop(l);
    return -1;
}

static void
test_run_returns_after_stop(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    loop_add_timer(l, 5, stop_it, NULL);
    assert_int_equal(loop_run(l), 0);
    loop_free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_timer_repeats_until_minus_one),
        cmocka_unit_test(test_fd_removed_inside_callback_does_not_fire),
        cmocka_unit_test(test_run_returns_after_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
