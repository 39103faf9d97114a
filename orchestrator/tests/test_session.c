/* The portal's session store: ids and CSRF tokens, expiry, sign-out, the
 * cap, and the Cookie header's parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "util.h"

#define HOUR (3600 * 1000LL)

static void
test_create_and_find(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new();
    const struct session *a, *b;
    assert_int_equal(session_create(ss, "tok-a", 1000, HOUR, &a), 0);
    assert_int_equal(session_create(ss, "tok-b", 1000, HOUR, &b), 0);
    assert_int_equal(strlen(a->id), SESSION_ID_LEN);
    assert_int_equal(strlen(a->csrf), SESSION_ID_LEN);
    /* Random ids: two sessions never share an id, nor id and CSRF. */
    assert_string_not_equal(a->id, b->id);
    assert_string_not_equal(a->id, a->csrf);
    assert_string_not_equal(a->csrf, b->csrf);
    char id[SESSION_ID_LEN + 1];
    strlcpy_s(id, a->id, sizeof(id));
    const struct session *f = session_find(ss, id, 2000);
    assert_non_null(f);
    assert_string_equal(f->token, "tok-a");
    assert_int_equal(session_count(ss), 2);
    session_store_free(ss);
}

static void
test_unknown_and_malformed_ids(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new();
    const struct session *a;
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &a), 0);
    char id[SESSION_ID_LEN + 1];
    strlcpy_s(id, a->id, sizeof(id));
    id[0] = id[0] == 'a' ? 'b' : 'a';
    assert_null(session_find(ss, id, 1));
    assert_null(session_find(ss, "", 1));
    assert_null(session_find(ss, NULL, 1));
    /* The id's prefix is not the id. */
    char half[33];
    strlcpy_s(half, a->id, sizeof(half));
    assert_null(session_find(ss, half, 1));
    /* Upper case is another string. */
    char up[SESSION_ID_LEN + 1];
    strlcpy_s(up, a->id, sizeof(up));
    for (char *p = up; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    if (strcmp(up, a->id) != 0)
        assert_null(session_find(ss, up, 1));
    session_store_free(ss);
}

static void
test_expiry(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new();
    const struct session *a;
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &a), 0);
    char id[SESSION_ID_LEN + 1];
    strlcpy_s(id, a->id, sizeof(id));
    assert_non_null(session_find(ss, id, HOUR - 1));
    assert_null(session_find(ss, id, HOUR));
    /* Ended, not only hidden: gone from the store. */
    assert_int_equal(session_count(ss), 0);
    assert_null(session_find(ss, id, 0));
    session_store_free(ss);
}

static void
test_delete(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new();
    const struct session *a, *b;
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &a), 0);
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &b), 0);
    char ida[SESSION_ID_LEN + 1], idb[SESSION_ID_LEN + 1];
    strlcpy_s(ida, a->id, sizeof(ida));
    strlcpy_s(idb, b->id, sizeof(idb));
    assert_true(session_delete(ss, ida));
    assert_false(session_delete(ss, ida));
    assert_null(session_find(ss, ida, 1));
    /* Signing out one tab's session leaves the other's. */
    assert_non_null(session_find(ss, idb, 1));
    session_store_free(ss);
}

static void
test_csrf(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new();
    const struct session *a, *b;
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &a), 0);
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &b), 0);
    assert_true(session_csrf_ok(a, a->csrf));
    assert_false(session_csrf_ok(a, NULL));
    assert_false(session_csrf_ok(a, ""));
    assert_false(session_csrf_ok(a, b->csrf));
    assert_false(session_csrf_ok(a, a->id));
    char longer[SESSION_ID_LEN + 2];
    snprintf(longer, sizeof(longer), "%sx", a->csrf);
    assert_false(session_csrf_ok(a, longer));
    session_store_free(ss);
}

static void
test_cap_ends_the_soonest(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new();
    const struct session *s;
    char first[SESSION_ID_LEN + 1], second[SESSION_ID_LEN + 1];
    /* The first ends soonest; every other lasts longer. */
    assert_int_equal(session_create(ss, "tok", 0, HOUR, &s), 0);
    strlcpy_s(first, s->id, sizeof(first));
    assert_int_equal(session_create(ss, "tok", 0, 2 * HOUR, &s), 0);
    strlcpy_s(second, s->id, sizeof(second));
    for (size_t i = 2; i < SESSION_MAX; i++)
        assert_int_equal(session_create(ss, "tok", 0, 3 * HOUR, &s), 0);
    assert_int_equal(session_count(ss), SESSION_MAX);
    assert_int_equal(session_create(ss, "tok", 0, 3 * HOUR, &s), 0);
    assert_int_equal(session_count(ss), SESSION_MAX);
    assert_null(session_find(ss, first, 1));
    assert_non_null(session_find(ss, second, 1));
    /* Expired ones make room before any live one is ended. */
    assert_int_equal(session_create(ss, "tok", 2 * HOUR, HOUR, &s), 0);
    assert_null(session_find(ss, second, 2 * HOUR));
    assert_int_equal(session_count(ss), SESSION_MAX);
    session_store_free(ss);
}

static void
test_cookie_header(void **state)
{
    (void)state;
    char id[SESSION_ID_LEN + 1];
    char good[SESSION_ID_LEN + 1];
    memset(good, 'a', SESSION_ID_LEN);
    good[SESSION_ID_LEN] = '\0';
    good[3] = '7';
    char *h = xasprintf(SESSION_COOKIE "=%s", good);
    assert_true(session_cookie_id(h, id));
    assert_string_equal(id, good);
    free(h);
    h = xasprintf("theme=dark; " SESSION_COOKIE "=%s; lang=en", good);
    assert_true(session_cookie_id(h, id));
    assert_string_equal(id, good);
    free(h);
    /* A cookie whose name only ends or starts like ours is not ours. */
    h = xasprintf("x" SESSION_COOKIE "=%s", good);
    assert_false(session_cookie_id(h, id));
    free(h);
    h = xasprintf(SESSION_COOKIE "x=%s", good);
    assert_false(session_cookie_id(h, id));
    free(h);
    /* Wrong length, wrong characters, none at all. */
    h = xasprintf(SESSION_COOKIE "=%.63s", good);
    assert_false(session_cookie_id(h, id));
    free(h);
    h = xasprintf(SESSION_COOKIE "=%sa", good);
    assert_false(session_cookie_id(h, id));
    free(h);
    good[5] = 'G';
    h = xasprintf(SESSION_COOKIE "=%s", good);
    assert_false(session_cookie_id(h, id));
    free(h);
    assert_false(session_cookie_id(NULL, id));
    assert_false(session_cookie_id("", id));
    assert_false(session_cookie_id(SESSION_COOKIE "=", id));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_find),
        cmocka_unit_test(test_unknown_and_malformed_ids),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_cap_ends_the_soonest),
        cmocka_unit_test(test_cookie_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
