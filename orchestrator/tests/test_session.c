/* The portal's session store: ids and CSRF tokens, only hashes kept,
 * expiry, sign-out, the cap and the drop hook the fleet stores by, what a
 * restart restores, a reload's filter, and the Cookie header's parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "util.h"

#define HOUR (3600 * 1000LL)

/* The ids the store dropped (its hook), as the fleet sees them. */
struct drops {
    size_t n;
    char last[SESSION_HASH_LEN + 1];
};

static void
on_drop(void *arg, const char *id_hash)
{
    struct drops *d = arg;
    d->n++;
    strlcpy_s(d->last, id_hash, sizeof(d->last));
}

/* session_create for project "acme"; the id into id. */
static const struct session *
mk(struct session_store *ss, const char *token, int64_t now, int64_t ttl,
   char id[SESSION_ID_LEN + 1])
{
    const struct session *s;
    assert_int_equal(session_create(ss, token, "acme", now, ttl, id, &s), 0);
    return s;
}

static void
test_create_and_find(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new(NULL, NULL);
    char ida[SESSION_ID_LEN + 1], idb[SESSION_ID_LEN + 1];
    const struct session *a = mk(ss, "tok-a", 1000, HOUR, ida);
    const struct session *b = mk(ss, "tok-b", 1000, HOUR, idb);
    assert_int_equal(strlen(ida), SESSION_ID_LEN);
    assert_int_equal(strlen(a->csrf), SESSION_ID_LEN);
    /* Random ids: two sessions never share an id, nor id and CSRF. */
    assert_string_not_equal(ida, idb);
    assert_string_not_equal(ida, a->csrf);
    assert_string_not_equal(a->csrf, b->csrf);
    const struct session *f = session_find(ss, ida, 2000);
    assert_ptr_equal(f, a);
    assert_string_equal(f->project, "acme");
    assert_true(session_token_is(f, "tok-a"));
    assert_false(session_token_is(f, "tok-b"));
    assert_false(session_token_is(f, NULL));
    assert_int_equal(session_count(ss), 2);
    session_store_free(ss);
}

/* The session keeps hashes, never the id or the token themselves (what
 * the fleet stores is these fields). */
static void
test_only_hashes_kept(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new(NULL, NULL);
    char id[SESSION_ID_LEN + 1], hash[SESSION_HASH_LEN + 1];
    const struct session *a = mk(ss, "tok-secret", 0, HOUR, id);
    session_hash(id, hash);
    assert_string_equal(a->id_hash, hash);
    assert_string_not_equal(a->id_hash, id);
    session_hash("tok-secret", hash);
    assert_string_equal(a->token_hash, hash);
    /* SHA-256 of "abc", the standard's own example. */
    session_hash("abc", hash);
    assert_string_equal(
        hash,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    session_store_free(ss);
}

static void
test_unknown_and_malformed_ids(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new(NULL, NULL);
    char ida[SESSION_ID_LEN + 1];
    const struct session *a = mk(ss, "tok", 0, HOUR, ida);
    char id[SESSION_ID_LEN + 1];
    strlcpy_s(id, ida, sizeof(id));
    id[0] = id[0] == 'a' ? 'b' : 'a';
    assert_null(session_find(ss, id, 1));
    assert_null(session_find(ss, "", 1));
    assert_null(session_find(ss, NULL, 1));
    /* The id's hash is not the id. */
    assert_null(session_find(ss, a->id_hash, 1));
    /* The id's prefix is not the id. */
    char half[33];
    strlcpy_s(half, ida, sizeof(half));
    assert_null(session_find(ss, half, 1));
    /* Upper case is another string. */
    char up[SESSION_ID_LEN + 1];
    strlcpy_s(up, ida, sizeof(up));
    for (char *p = up; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    if (strcmp(up, ida) != 0)
        assert_null(session_find(ss, up, 1));
    session_store_free(ss);
}

static void
test_expiry(void **state)
{
    (void)state;
    struct drops d = {0};
    struct session_store *ss = session_store_new(on_drop, &d);
    char id[SESSION_ID_LEN + 1];
    const struct session *a = mk(ss, "tok", 0, HOUR, id);
    char hash[SESSION_HASH_LEN + 1];
    strlcpy_s(hash, a->id_hash, sizeof(hash));
    assert_non_null(session_find(ss, id, HOUR - 1));
    assert_int_equal(d.n, 0);
    assert_null(session_find(ss, id, HOUR));
    /* Ended, not only hidden: gone from the store, and the hook told. */
    assert_int_equal(session_count(ss), 0);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.last, hash);
    assert_null(session_find(ss, id, 0));
    session_store_free(ss);
}

static void
test_delete(void **state)
{
    (void)state;
    struct drops d = {0};
    struct session_store *ss = session_store_new(on_drop, &d);
    char ida[SESSION_ID_LEN + 1], idb[SESSION_ID_LEN + 1];
    const struct session *a = mk(ss, "tok", 0, HOUR, ida);
    mk(ss, "tok", 0, HOUR, idb);
    char hash[SESSION_HASH_LEN + 1];
    strlcpy_s(hash, a->id_hash, sizeof(hash));
    assert_true(session_delete(ss, ida));
    assert_int_equal(d.n, 1);
    assert_string_equal(d.last, hash);
    assert_false(session_delete(ss, ida));
    assert_int_equal(d.n, 1);
    assert_null(session_find(ss, ida, 1));
    /* Signing out one tab's session leaves the other's. */
    assert_non_null(session_find(ss, idb, 1));
    /* Freeing the store is no sign-out: the hook is not called. */
    session_store_free(ss);
    assert_int_equal(d.n, 1);
}

/* What the store gave back after a restart: found by the cookie's id,
 * whose hash it is; refused when expired, doubled or malformed. */
static void
test_restore(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new(NULL, NULL);
    char id[SESSION_ID_LEN + 1];
    const struct session *a = mk(ss, "tok", 0, HOUR, id);
    struct session kept = *a;
    kept.project = NULL; /* the admin's */
    struct session_store *after = session_store_new(NULL, NULL);
    assert_null(session_find(after, id, 1));
    assert_int_equal(session_restore(after, &kept, 1), 0);
    assert_int_equal(session_restore(after, &kept, 1), -EEXIST);
    const struct session *f = session_find(after, id, 1);
    assert_non_null(f);
    assert_null(f->project);
    assert_string_equal(f->csrf, a->csrf);
    assert_true(session_token_is(f, "tok"));
    struct session_store *later = session_store_new(NULL, NULL);
    assert_int_equal(session_restore(later, &kept, HOUR), -ESTALE);
    kept.id_hash[3] = 'X';
    assert_int_equal(session_restore(later, &kept, 1), -EINVAL);
    assert_int_equal(session_count(later), 0);
    session_store_free(later);
    session_store_free(after);
    session_store_free(ss);
}

static bool
keep_new(void *arg, const struct session *s)
{
    (void)arg;
    return session_token_is(s, "new-token");
}

/* A reload's recheck: the sessions keep() refuses end, through the hook. */
static void
test_filter(void **state)
{
    (void)state;
    struct drops d = {0};
    struct session_store *ss = session_store_new(on_drop, &d);
    char ida[SESSION_ID_LEN + 1], idb[SESSION_ID_LEN + 1];
    mk(ss, "old-token", 0, HOUR, ida);
    mk(ss, "new-token", 0, HOUR, idb);
    session_filter(ss, keep_new, NULL);
    assert_int_equal(d.n, 1);
    assert_null(session_find(ss, ida, 1));
    assert_non_null(session_find(ss, idb, 1));
    session_store_free(ss);
}

static void
test_csrf(void **state)
{
    (void)state;
    struct session_store *ss = session_store_new(NULL, NULL);
    char ida[SESSION_ID_LEN + 1], idb[SESSION_ID_LEN + 1];
    const struct session *a = mk(ss, "tok", 0, HOUR, ida);
    const struct session *b = mk(ss, "tok", 0, HOUR, idb);
    assert_true(session_csrf_ok(a, a->csrf));
    assert_false(session_csrf_ok(a, NULL));
    assert_false(session_csrf_ok(a, ""));
    assert_false(session_csrf_ok(a, b->csrf));
    assert_false(session_csrf_ok(a, ida));
    char longer[SESSION_ID_LEN + 2];
    snprintf(longer, sizeof(longer), "%sx", a->csrf);
    assert_false(session_csrf_ok(a, longer));
    session_store_free(ss);
}

static void
test_cap_ends_the_soonest(void **state)
{
    (void)state;
    struct drops d = {0};
    struct session_store *ss = session_store_new(on_drop, &d);
    char first[SESSION_ID_LEN + 1], second[SESSION_ID_LEN + 1];
    char id[SESSION_ID_LEN + 1];
    /* The first ends soonest; every other lasts longer. */
    mk(ss, "tok", 0, HOUR, first);
    mk(ss, "tok", 0, 2 * HOUR, second);
    for (size_t i = 2; i < SESSION_MAX; i++)
        mk(ss, "tok", 0, 3 * HOUR, id);
    assert_int_equal(session_count(ss), SESSION_MAX);
    assert_int_equal(d.n, 0);
    mk(ss, "tok", 0, 3 * HOUR, id);
    assert_int_equal(session_count(ss), SESSION_MAX);
    assert_int_equal(d.n, 1); /* the one made room for leaves the store */
    assert_null(session_find(ss, first, 1));
    assert_non_null(session_find(ss, second, 1));
    /* Expired ones make room before any live one is ended. */
    mk(ss, "tok", 2 * HOUR, HOUR, id);
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
        cmocka_unit_test(test_only_hashes_kept),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_unknown_and_malformed_ids),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_cap_ends_the_soonest),
        cmocka_unit_test(test_cookie_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
