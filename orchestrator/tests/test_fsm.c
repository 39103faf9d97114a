/* The state machine, exhaustively: every (state, event) pair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fsm.h"

#include <errno.h>
#include <string.h>

#define NOW 1000000

static struct fsm_limits lim;
/* What feed() says of the server: it has no console to watch. */
static bool no_console;

static int
setup(void **state)
{
    (void)state;
    fsm_limits_default(&lim);
    return 0;
}

static struct fsm_server
at(enum fsm_state st)
{
    struct fsm_server s;
    fsm_server_init(&s, 0);
    s.state = st;
    s.deadline_ms = lim.timeout_ms[st] ? lim.timeout_ms[st] : 0;
    return s;
}

static struct fsm_output
feed(struct fsm_server *s, enum fsm_event ev, int64_t now)
{
    struct fsm_input in = {.event = ev, .no_console = no_console};
    struct fsm_output out;
    fsm_step(&lim, s, &in, now, &out);
    return out;
}

/* Expected outcome of every pair; anything not listed is "ignored". */
struct expect {
    enum fsm_state from;
    enum fsm_event ev;
    enum fsm_state to;
    unsigned actions;
};

static const struct expect moves[] = {
    {FSM_ACTIVE, FSM_EV_RESCUE, FSM_RESCUE_REQUESTED,
     FSM_ACT_PREPARE_RESCUE | FSM_ACT_CLEAR_RESCUE_INFO},
    {FSM_RESCUE_FAILED, FSM_EV_RESCUE, FSM_RESCUE_REQUESTED,
     FSM_ACT_PREPARE_RESCUE | FSM_ACT_CLEAR_RESCUE_INFO},
    {FSM_EXIT_FAILED, FSM_EV_RESCUE, FSM_RESCUE_REQUESTED,
     FSM_ACT_PREPARE_RESCUE | FSM_ACT_CLEAR_RESCUE_INFO},
    {FSM_RESCUE, FSM_EV_EXIT_RESCUE, FSM_EXITING,
     FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK | FSM_ACT_POWER_RESET},
    {FSM_RESCUE_FAILED, FSM_EV_EXIT_RESCUE, FSM_EXITING,
     FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK | FSM_ACT_POWER_RESET},
    {FSM_EXIT_FAILED, FSM_EV_EXIT_RESCUE, FSM_EXITING,
     FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK | FSM_ACT_POWER_RESET},
    {FSM_RESCUE, FSM_EV_REBOOT, FSM_REBOOTING,
     FSM_ACT_POWER_RESET | FSM_ACT_CLEAR_RESCUE_INFO},
    {FSM_RESCUE_REQUESTED, FSM_EV_PREPARED, FSM_REBOOTING, FSM_ACT_POWER_RESET},
    {FSM_REBOOTING, FSM_EV_IPXE_FETCHED, FSM_PXE_BOOTING, 0},
    {FSM_RESCUE_BOOTING, FSM_EV_IPXE_FETCHED, FSM_PXE_BOOTING, 0},
    /* The rescue OS restarted by itself: a new boot. */
    {FSM_RESCUE, FSM_EV_IPXE_FETCHED, FSM_PXE_BOOTING,
     FSM_ACT_CLEAR_RESCUE_INFO},
    {FSM_EXITING, FSM_EV_IPXE_FETCHED, FSM_BOOTING_LOCAL, 0},
    /* GRUB's config (arm64 UEFI) moves the same states as iPXE's script. */
    {FSM_REBOOTING, FSM_EV_GRUB_FETCHED, FSM_PXE_BOOTING, 0},
    {FSM_RESCUE_BOOTING, FSM_EV_GRUB_FETCHED, FSM_PXE_BOOTING, 0},
    {FSM_RESCUE, FSM_EV_GRUB_FETCHED, FSM_PXE_BOOTING,
     FSM_ACT_CLEAR_RESCUE_INFO},
    {FSM_EXITING, FSM_EV_GRUB_FETCHED, FSM_BOOTING_LOCAL, 0},
    {FSM_EXITING, FSM_EV_RESET_TO_DISK, FSM_BOOTING_LOCAL, 0},
    {FSM_REBOOTING, FSM_EV_KERNEL_FETCHED, FSM_RESCUE_BOOTING, 0},
    {FSM_PXE_BOOTING, FSM_EV_KERNEL_FETCHED, FSM_RESCUE_BOOTING, 0},
    /* boot = virtualmedia: the kernel is on the CD, the overlay's fetch
     * says it booted; not from a server still in its PXE steps. */
    {FSM_REBOOTING, FSM_EV_CD_BOOTED, FSM_RESCUE_BOOTING, 0},
    /* Only the booted rescue OS phones home: not a server still
     * rebooting or fetching its script (issue 12). */
    {FSM_RESCUE_BOOTING, FSM_EV_PHONE_HOME, FSM_RESCUE, 0},
    {FSM_EXITING, FSM_EV_LOCAL_OS_SEEN, FSM_ACTIVE, 0},
    {FSM_BOOTING_LOCAL, FSM_EV_LOCAL_OS_SEEN, FSM_ACTIVE, 0},
    {FSM_RESCUE_REQUESTED, FSM_EV_STEP_FAILED, FSM_RESCUE_FAILED, 0},
    {FSM_REBOOTING, FSM_EV_STEP_FAILED, FSM_RESCUE_FAILED, 0},
    {FSM_EXITING, FSM_EV_STEP_FAILED, FSM_EXIT_FAILED, 0},
};

/* Power actions in a stable state run without moving the state. */
static bool
is_power_in_place(enum fsm_state st, enum fsm_event ev, unsigned *acts)
{
    if (!fsm_state_is_stable(st))
        return false;
    if (ev == FSM_EV_POWER_ON)
        *acts = FSM_ACT_POWER_ON;
    else if (ev == FSM_EV_POWER_OFF)
        *acts = FSM_ACT_POWER_OFF;
    else if (ev == FSM_EV_REBOOT && st != FSM_RESCUE)
        *acts = FSM_ACT_POWER_RESET;
    else
        return false;
    return true;
}

/* Every pair, for a server with a console and for one without: the same
 * moves (booting_local's own wait differs, tested below). */
static void
test_every_pair(void **state)
{
    (void)state;
    for (int nc = 0; nc < 2; nc++)
        for (int st = 0; st < FSM_NSTATES; st++) {
            no_console = nc;
            for (int ev = 0; ev < FSM_NEVENTS; ev++) {
                if (ev == FSM_EV_TIMEOUT)
                    continue; /* its own tests below */
                struct fsm_server s = at(st);
                struct fsm_output out = feed(&s, ev, NOW);
                const struct expect *m = NULL;
                for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++)
                    if (moves[i].from == (enum fsm_state)st &&
                        moves[i].ev == (enum fsm_event)ev)
                        m = &moves[i];
                unsigned acts = 0;
                bool user = ev <= FSM_EV_POWER_OFF;
                if (m) {
                    assert_int_equal(out.status, 0);
                    assert_true(out.changed);
                    assert_int_equal(s.state, m->to);
                    assert_int_equal(out.actions, m->actions);
                    assert_int_equal(s.since_ms, NOW);
                    assert_true(out.reason[0] != '\0');
                } else if (is_power_in_place(st, ev, &acts)) {
                    assert_int_equal(out.status, 0);
                    assert_false(out.changed);
                    assert_int_equal(out.actions, acts);
                    assert_int_equal(s.state, st);
                } else if (user) {
                    /* Does not fit: 409 with a reason, nothing moves. */
                    assert_int_equal(out.status, -EBUSY);
                    assert_false(out.changed);
                    assert_int_equal(out.actions, 0);
                    assert_int_equal(s.state, st);
                    assert_true(strlen(out.reason) > 10);
                } else {
                    assert_int_equal(out.status, 0);
                    assert_false(out.changed);
                    assert_int_equal(out.actions, 0);
                    assert_int_equal(s.state, st);
                }
            }
        }
    no_console = false;
}

/* exiting is left when the reset into the disk is done or the local
 * script is fetched, whichever comes first; the other then moves
 * nothing, and the console's local OS ends booting_local. */
static void
test_exit_direct_or_through_the_script(void **state)
{
    (void)state;
    static const enum fsm_event first[] = {FSM_EV_RESET_TO_DISK,
                                           FSM_EV_IPXE_FETCHED};
    for (size_t i = 0; i < 2; i++) {
        struct fsm_server s = at(FSM_EXITING);
        struct fsm_output out = feed(&s, first[i], NOW);
        assert_int_equal(s.state, FSM_BOOTING_LOCAL);
        assert_string_equal(out.reason, fsm_event_name(first[i]));
        assert_int_equal(s.deadline_ms,
                         NOW + lim.timeout_ms[FSM_BOOTING_LOCAL]);
        out = feed(&s, first[1 - i], NOW + 5);
        assert_false(out.changed);
        assert_int_equal(s.since_ms, NOW);
        feed(&s, FSM_EV_LOCAL_OS_SEEN, NOW + 10);
        assert_int_equal(s.state, FSM_ACTIVE);
    }
}

/* No console: nothing shows the local OS, so booting_local waits
 * local_settle and then counts it up, and both transitions say so; 0
 * counts it up at once.  booting_local's own timeout is not used. */
static void
test_no_console_settles(void **state)
{
    (void)state;
    no_console = true;
    lim.local_settle_ms = 45000;
    struct fsm_server s = at(FSM_EXITING);
    struct fsm_output out = feed(&s, FSM_EV_RESET_TO_DISK, NOW);
    assert_int_equal(s.state, FSM_BOOTING_LOCAL);
    assert_int_equal(s.deadline_ms, NOW + 45000);
    assert_string_equal(out.reason,
                        "reset done, one-time disk boot set; no console to "
                        "watch: counted as up in 45 s (local_settle)");
    out = feed(&s, FSM_EV_TIMEOUT, NOW + 44999);
    assert_false(out.changed);
    out = feed(&s, FSM_EV_TIMEOUT, NOW + 45000);
    assert_true(out.changed);
    assert_int_equal(out.actions, 0);
    assert_int_equal(s.state, FSM_ACTIVE);
    assert_int_equal(s.deadline_ms, 0);
    assert_string_equal(out.reason,
                        "no console to watch: counted as up 45 s after it "
                        "headed for its disk (local_settle)");
    assert_string_equal(s.last_error, "");

    lim.local_settle_ms = 0;
    s = at(FSM_EXITING);
    out = feed(&s, FSM_EV_IPXE_FETCHED, NOW);
    assert_int_equal(s.state, FSM_ACTIVE);
    assert_int_equal(s.deadline_ms, 0);
    assert_non_null(strstr(out.reason, "ipxe script fetched; no console"));
    assert_non_null(strstr(out.reason, "at once (local_settle 0)"));

    /* With a console, booting_local's timeout retries as before. */
    no_console = false;
    fsm_limits_default(&lim);
    s = at(FSM_EXITING);
    feed(&s, FSM_EV_RESET_TO_DISK, NOW);
    out = feed(&s, FSM_EV_TIMEOUT, NOW + lim.local_settle_ms);
    assert_false(out.changed);
    assert_int_equal(s.state, FSM_BOOTING_LOCAL);
}

static void
test_refusal_reasons(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_ACTIVE);
    struct fsm_output out = feed(&s, FSM_EV_EXIT_RESCUE, NOW);
    assert_string_equal(out.reason, "server is not in rescue");
    s = at(FSM_RESCUE);
    out = feed(&s, FSM_EV_RESCUE, NOW);
    assert_string_equal(out.reason, "server is already in rescue");
    s = at(FSM_PXE_BOOTING);
    out = feed(&s, FSM_EV_REBOOT, NOW);
    assert_non_null(strstr(out.reason, "busy: pxe_booting"));
}

static void
test_entering_sets_deadline_and_resets_retries(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_REBOOTING);
    s.retries = 2;
    feed(&s, FSM_EV_IPXE_FETCHED, NOW);
    assert_int_equal(s.retries, 0);
    assert_int_equal(s.deadline_ms, NOW + lim.timeout_ms[FSM_PXE_BOOTING]);
}

static void
test_timeout_before_deadline_is_ignored(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_REBOOTING);
    s.deadline_ms = NOW + 1;
    struct fsm_output out = feed(&s, FSM_EV_TIMEOUT, NOW);
    assert_false(out.changed);
    assert_int_equal(out.actions, 0);
    assert_int_equal(s.retries, 0);
}

static void
test_timeout_retries_then_fails(void **state)
{
    (void)state;
    static const enum fsm_state steps[] = {FSM_REBOOTING, FSM_PXE_BOOTING,
                                           FSM_RESCUE_BOOTING, FSM_EXITING,
                                           FSM_BOOTING_LOCAL};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct fsm_server s = at(steps[i]);
        int64_t t = s.deadline_ms;
        /* On the way home each retry asks for the disk boot again. */
        unsigned acts = FSM_ACT_POWER_RESET;
        if (steps[i] == FSM_EXITING || steps[i] == FSM_BOOTING_LOCAL)
            acts |= FSM_ACT_BOOT_DISK;
        for (int r = 1; r <= lim.max_retries; r++) {
            struct fsm_output out = feed(&s, FSM_EV_TIMEOUT, t);
            assert_false(out.changed);
            assert_int_equal(out.actions, acts);
            assert_int_equal(s.retries, r);
            assert_int_equal(s.state, steps[i]);
            assert_int_equal(s.deadline_ms, t + lim.timeout_ms[steps[i]]);
            assert_non_null(strstr(out.reason, "retry"));
            t = s.deadline_ms;
        }
        struct fsm_output out = feed(&s, FSM_EV_TIMEOUT, t);
        assert_true(out.changed);
        assert_int_equal(out.actions, 0);
        bool enter = steps[i] != FSM_EXITING && steps[i] != FSM_BOOTING_LOCAL;
        assert_int_equal(s.state, enter ? FSM_RESCUE_FAILED : FSM_EXIT_FAILED);
        assert_int_equal(s.deadline_ms, 0);
        /* last_error names the step and the cause. */
        assert_int_equal(strncmp(s.last_error, fsm_state_name(steps[i]),
                                 strlen(fsm_state_name(steps[i]))),
                         0);
        assert_non_null(strstr(s.last_error, "timed out after"));
        assert_non_null(strstr(s.last_error, "2 retries"));
    }
}

static void
test_prepare_timeout_fails_without_retry(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_RESCUE_REQUESTED);
    struct fsm_output out = feed(&s, FSM_EV_TIMEOUT, s.deadline_ms);
    assert_true(out.changed);
    assert_int_equal(s.state, FSM_RESCUE_FAILED);
    assert_non_null(strstr(s.last_error, "rescue_requested: timed out"));
}

static void
test_zero_retries(void **state)
{
    (void)state;
    lim.max_retries = 0;
    struct fsm_server s = at(FSM_REBOOTING);
    feed(&s, FSM_EV_TIMEOUT, s.deadline_ms);
    assert_int_equal(s.state, FSM_RESCUE_FAILED);
    assert_non_null(strstr(s.last_error, "(0 retries)"));
    fsm_limits_default(&lim);
}

static void
test_step_failed_keeps_detail(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_REBOOTING);
    struct fsm_input in = {.event = FSM_EV_STEP_FAILED,
                           .detail = "qmp /x.sock: connection refused"};
    struct fsm_output out;
    fsm_step(&lim, &s, &in, NOW, &out);
    assert_int_equal(s.state, FSM_RESCUE_FAILED);
    assert_string_equal(s.last_error,
                        "rebooting: qmp /x.sock: connection refused");
    /* A new rescue clears the error. */
    struct fsm_output o2 = feed(&s, FSM_EV_RESCUE, NOW + 1);
    assert_int_equal(o2.status, 0);
    assert_string_equal(s.last_error, "");
}

static void
test_ttl(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_ACTIVE);
    struct fsm_input in = {.event = FSM_EV_RESCUE, .ttl_s = 60};
    struct fsm_output out;
    fsm_step(&lim, &s, &in, NOW, &out);
    assert_int_equal(s.ttl_s, 60);
    feed(&s, FSM_EV_PREPARED, NOW);
    feed(&s, FSM_EV_IPXE_FETCHED, NOW);
    feed(&s, FSM_EV_KERNEL_FETCHED, NOW);
    feed(&s, FSM_EV_PHONE_HOME, NOW + 10);
    assert_int_equal(s.state, FSM_RESCUE);
    assert_int_equal(s.expires_at_ms, NOW + 10 + 60000);
    assert_int_equal(s.deadline_ms, s.expires_at_ms);
    out = feed(&s, FSM_EV_TIMEOUT, NOW + 10 + 59999);
    assert_false(out.changed);
    out = feed(&s, FSM_EV_TIMEOUT, NOW + 10 + 60000);
    assert_true(out.changed);
    assert_int_equal(s.state, FSM_EXITING);
    assert_int_equal(out.actions, FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK |
                                      FSM_ACT_POWER_RESET);
    assert_non_null(strstr(out.reason, "ttl"));
    assert_int_equal(s.expires_at_ms, 0);
}

static void
test_rescue_without_ttl_never_expires(void **state)
{
    (void)state;
    struct fsm_server s = at(FSM_RESCUE_BOOTING);
    feed(&s, FSM_EV_PHONE_HOME, NOW);
    assert_int_equal(s.deadline_ms, 0);
    struct fsm_output out = feed(&s, FSM_EV_TIMEOUT, NOW * 1000);
    assert_false(out.changed);
    assert_int_equal(s.state, FSM_RESCUE);
}

static void
test_full_round_trip(void **state)
{
    (void)state;
    static const enum fsm_event path[] = {
        FSM_EV_RESCUE,         FSM_EV_PREPARED,       FSM_EV_IPXE_FETCHED,
        FSM_EV_KERNEL_FETCHED, FSM_EV_INITRD_FETCHED, FSM_EV_OVERLAY_FETCHED,
        FSM_EV_PHONE_HOME,     FSM_EV_EXIT_RESCUE,    FSM_EV_IPXE_FETCHED,
        FSM_EV_LOCAL_OS_SEEN};
    static const enum fsm_state want[] = {
        FSM_RESCUE_REQUESTED, FSM_REBOOTING,
        FSM_PXE_BOOTING,      FSM_RESCUE_BOOTING,
        FSM_RESCUE_BOOTING,   FSM_RESCUE_BOOTING,
        FSM_RESCUE,           FSM_EXITING,
        FSM_BOOTING_LOCAL,    FSM_ACTIVE};
    struct fsm_server s;
    fsm_server_init(&s, 0);
    for (size_t i = 0; i < sizeof(path) / sizeof(path[0]); i++) {
        feed(&s, path[i], NOW + (int64_t)i);
        assert_int_equal(s.state, want[i]);
    }
}

/* A resumed step with actions to run again waits its full timeout from
 * now, on the retries it had; with none, or in a stable state (a rescue
 * whose ttl ran out), its deadline stands and fires as it would. */
static void
test_resume_renews_only_a_step_that_acts_again(void **state)
{
    (void)state;
    for (int st = 0; st < FSM_NSTATES; st++) {
        struct fsm_server s = at(st);
        if (st == FSM_RESCUE)
            s.deadline_ms = s.expires_at_ms = 5000; /* the ttl */
        s.retries = 1;
        struct fsm_server none = s;
        assert_false(fsm_resume(&lim, &none, 0, NOW));
        assert_memory_equal(&none, &s, sizeof(s));

        struct fsm_server again = s;
        bool renews = st == FSM_RESCUE_REQUESTED || st == FSM_REBOOTING ||
                      st == FSM_PXE_BOOTING || st == FSM_RESCUE_BOOTING ||
                      st == FSM_EXITING || st == FSM_BOOTING_LOCAL;
        assert_int_equal(fsm_resume(&lim, &again, FSM_ACT_POWER_RESET, NOW),
                         renews);
        assert_int_equal(again.deadline_ms,
                         renews ? NOW + lim.timeout_ms[st] : s.deadline_ms);
        assert_int_equal(again.retries, 1);
        assert_int_equal(again.state, st);
        assert_int_equal(again.since_ms, s.since_ms);
    }
    /* From there the step times out on its new deadline as usual. */
    struct fsm_server s = at(FSM_REBOOTING);
    assert_true(fsm_resume(&lim, &s, FSM_ACT_POWER_RESET, NOW));
    assert_int_equal(feed(&s, FSM_EV_TIMEOUT, NOW + 179000).actions, 0);
    assert_int_equal(feed(&s, FSM_EV_TIMEOUT, NOW + 180000).actions,
                     FSM_ACT_POWER_RESET);
    assert_int_equal(s.retries, 1);

    /* The ttl that ran out meanwhile ends the rescue now. */
    s = at(FSM_RESCUE);
    s.ttl_s = 5;
    s.deadline_ms = s.expires_at_ms = 5000;
    assert_false(fsm_resume(&lim, &s, FSM_ACT_POWER_OFF, NOW));
    struct fsm_output out = feed(&s, FSM_EV_TIMEOUT, NOW);
    assert_int_equal(s.state, FSM_EXITING);
    assert_int_equal(out.actions, FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK |
                                      FSM_ACT_POWER_RESET);
}

static void
test_names_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < FSM_NSTATES; i++)
        assert_int_equal(fsm_state_parse(fsm_state_name(i)), i);
    assert_int_equal(fsm_state_parse("bogus"), -1);
    assert_string_equal(fsm_state_name(FSM_PXE_BOOTING), "pxe_booting");
    for (int e = 0; e < FSM_NEVENTS; e++)
        assert_string_not_equal(fsm_event_name(e), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),
        cmocka_unit_test(test_exit_direct_or_through_the_script),
        cmocka_unit_test(test_no_console_settles),
        cmocka_unit_test(test_refusal_reasons),
        cmocka_unit_test(test_entering_sets_deadline_and_resets_retries),
        cmocka_unit_test(test_timeout_before_deadline_is_ignored),
        cmocka_unit_test(test_timeout_retries_then_fails),
        cmocka_unit_test(test_prepare_timeout_fails_without_retry),
        cmocka_unit_test(test_zero_retries),
        cmocka_unit_test(test_step_failed_keeps_detail),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_rescue_without_ttl_never_expires),
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_resume_renews_only_a_step_that_acts_again),
        cmocka_unit_test(test_names_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
