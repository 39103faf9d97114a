/* test_ticket: the browser console's one-time tickets: one use, 60 s,
 * bound to a server and a principal; every refusal looks the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ticket.h"

#include <errno.h>
#include <string.h>

static int
setup(void **state)
{
    *state = ticket_store_new();
    return 0;
}

static int
teardown(void **state)
{
    ticket_store_free(*state);
    return 0;
}

static void
issue(struct ticket_store *t, const char *srv, const char *who, int64_t now,
      char tk[TICKET_LEN + 1])
{
    int64_t exp = 0;
    assert_int_equal(ticket_issue(t, srv, who, now, tk, TICKET_LEN + 1, &exp),
                     0);
    assert_int_equal(exp, now + TICKET_TTL_MS);
    assert_int_equal(strlen(tk), TICKET_LEN);
    assert_int_equal(strspn(tk, "0123456789abcdef"), TICKET_LEN);
}

/* Redeemed once for its server, naming who got it; the second try fails. */
static void
test_one_use(void **state)
{
    struct ticket_store *t = *state;
    char tk[TICKET_LEN + 1], who[80] = "";
    issue(t, "srv1", "project:acme", 1000, tk);
    assert_true(ticket_redeem(t, tk, "srv1", NULL, 2000, who, sizeof(who)));
    assert_string_equal(who, "project:acme");
    assert_false(ticket_redeem(t, tk, "srv1", NULL, 2001, NULL, 0));
    assert_int_equal(ticket_count(t), 0);
}

/* Valid until 60 s after issue, not at 60 s. */
static void
test_expiry(void **state)
{
    struct ticket_store *t = *state;
    char a[TICKET_LEN + 1], b[TICKET_LEN + 1];
    issue(t, "srv1", "admin", 0, a);
    issue(t, "srv1", "admin", 0, b);
    assert_true(ticket_redeem(t, a, "srv1", NULL, TICKET_TTL_MS - 1, NULL, 0));
    assert_false(ticket_redeem(t, b, "srv1", NULL, TICKET_TTL_MS, NULL, 0));
    assert_int_equal(ticket_count(t), 0);
}

/* Another server's ticket is refused, and spent: it cannot be retried on
 * the right server after a probe. */
static void
test_other_server(void **state)
{
    struct ticket_store *t = *state;
    char tk[TICKET_LEN + 1], who[80] = "untouched";
    issue(t, "srv1", "project:acme", 0, tk);
    assert_false(ticket_redeem(t, tk, "srv2", NULL, 1, who, sizeof(who)));
    assert_string_equal(who, "untouched");
    assert_false(ticket_redeem(t, tk, "srv1", NULL, 2, NULL, 0));
}

/* Bound to the principal: another project presenting it is refused. */
static void
test_other_project(void **state)
{
    struct ticket_store *t = *state;
    char tk[TICKET_LEN + 1], tk2[TICKET_LEN + 1];
    issue(t, "srv1", "project:acme", 0, tk);
    assert_false(ticket_redeem(t, tk, "srv1", "project:other", 1, NULL, 0));
    issue(t, "srv1", "project:acme", 0, tk2);
    assert_true(ticket_redeem(t, tk2, "srv1", "project:acme", 1, NULL, 0));
}

/* Unknown, truncated, empty: refused; tickets differ from each other. */
static void
test_unknown(void **state)
{
    struct ticket_store *t = *state;
    char a[TICKET_LEN + 1], b[TICKET_LEN + 1];
    issue(t, "srv1", "admin", 0, a);
    issue(t, "srv1", "admin", 0, b);
    assert_string_not_equal(a, b);
    char wrong[TICKET_LEN + 1];
    memcpy(wrong, a, sizeof(wrong));
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    assert_false(ticket_redeem(t, wrong, "srv1", NULL, 1, NULL, 0));
    char shorter[TICKET_LEN];
    memcpy(shorter, a, TICKET_LEN - 1);
    shorter[TICKET_LEN - 1] = '\0';
    assert_false(ticket_redeem(t, shorter, "srv1", NULL, 1, NULL, 0));
    assert_false(ticket_redeem(t, "", "srv1", NULL, 1, NULL, 0));
    assert_false(ticket_redeem(t, NULL, "srv1", NULL, 1, NULL, 0));
    assert_int_equal(ticket_count(t), 2); /* the real ones still stand */
}

/* A flood of tickets stops at TICKET_MAX; expired ones make room. */
static void
test_bounded(void **state)
{
    struct ticket_store *t = *state;
    char tk[TICKET_LEN + 1];
    for (int i = 0; i < TICKET_MAX; i++)
        assert_int_equal(
            ticket_issue(t, "srv1", "admin", 0, tk, sizeof(tk), NULL), 0);
    assert_int_equal(ticket_issue(t, "srv1", "admin", 1, tk, sizeof(tk), NULL),
                     -EBUSY);
    assert_int_equal(
        ticket_issue(t, "srv1", "admin", TICKET_TTL_MS, tk, sizeof(tk), NULL),
        0);
    assert_int_equal(ticket_count(t), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_project, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
