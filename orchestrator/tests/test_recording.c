/* test_recording: asciicast v2 files of console sessions: numbering, what
 * is written for bytes that are not UTF-8 or are cut between chunks, the
 * metadata and the list, retention, and paths that cannot leave the
 * directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "recording.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

static const struct recording_meta meta = {.server = "srv1",
                                           .who = "project:acme",
                                           .role = "writer",
                                           .transport = "ssh",
                                           .keep_days = 30};

static int
setup(void **state)
{
    *state = tu_tmpdir_new("test_recording");
    return *state ? 0 : -1;
}

static int
teardown(void **state)
{
    return tu_tmpdir_free(*state);
}

/* The event lines of recording n, without their times. */
static char *
events(const char *dir, int n)
{
    char *p = recording_path(dir, "srv1", n), *text = NULL;
    size_t len;
    assert_non_null(p);
    assert_int_equal(read_file(p, &text, &len), 0);
    free(p);
    struct buf out = {0};
    char *line = strchr(text, '\n'); /* after the header */
    while (line && line[1]) {
        char *end = strchr(line + 1, '\n');
        char *ev = strstr(line + 1, ", \"o\", ");
        assert_non_null(ev);
        buf_append(&out, ev + 7, (size_t)(end - ev - 7));
        buf_append(&out, "\n", 1);
        line = end;
    }
    free(text);
    return out.data ? out.data : xstrdup("");
}

static void
test_utf8_and_escapes(void **state)
{
    const char *dir = *state;
    char err[256];
    struct recording *r = recording_open(dir, &meta, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(recording_n(r), 1);
    recording_write(r, "a\"b\\c\x1b[0m\r\n", 11);
    recording_write(r, "\xff\xc3(", 3);        /* not UTF-8 */
    recording_write(r, "\xe2\x82", 2);         /* € cut ... */
    recording_write(r, "\xac!", 2);            /* ... and finished */
    recording_write(r, "\xed\xa0\x80", 3);     /* a surrogate */
    recording_write(r, "\xf0\x9f\x98\x80", 4); /* 😀 whole */
    recording_close(r);
    char *ev = events(dir, 1);
    assert_string_equal(ev, "\"a\\\"b\\\\c\\u001b[0m\\r\\n\"]\n"
                            "\"\\ufffd\\ufffd(\"]\n"
                            "\"\xe2\x82\xac!\"]\n"
                            "\"\\ufffd\\ufffd\\ufffd\"]\n"
                            "\"\xf0\x9f\x98\x80\"]\n");
    free(ev);
    json_t *list;
    assert_int_equal(recording_list(dir, "srv1", &list), 0);
    json_t *m = json_array_get(json_object_get(list, "recordings"), 0);
    assert_int_equal(json_integer_value(json_object_get(m, "bytes")), 25);
    assert_string_equal(json_string_value(json_object_get(m, "who")),
                        "project:acme");
    assert_string_equal(json_string_value(json_object_get(m, "transport")),
                        "ssh");
    json_decref(list);
}

/* Numbers go up from the highest there; the list is in order; an old
 * recording goes when the next one starts. */
static void
test_numbers_and_retention(void **state)
{
    const char *dir = *state;
    char err[256];
    for (int i = 0; i < 3; i++)
        recording_close(recording_open(dir, &meta, err, sizeof(err)));
    /* make 2 older than 30 days */
    char *p2 = xasprintf("%s/srv1/2.cast", dir);
    struct timespec old[2] = {{.tv_sec = now_wall_s() - 31 * 86400},
                              {.tv_sec = now_wall_s() - 31 * 86400}};
    assert_int_equal(utimensat(AT_FDCWD, p2, old, 0), 0);
    struct recording *r = recording_open(dir, &meta, err, sizeof(err));
    assert_int_equal(recording_n(r), 4);
    assert_int_equal(access(p2, F_OK), -1);
    json_t *list;
    assert_int_equal(recording_list(dir, "srv1", &list), 0);
    json_t *a = json_object_get(list, "recordings");
    assert_int_equal(json_array_size(a), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "n")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 1), "n")), 3);
    json_t *open4 = json_array_get(a, 2);
    assert_true(json_is_null(json_object_get(open4, "ended_at")));
    json_decref(list);
    recording_close(r);
    free(p2);
}

/* Nothing outside DIR/SERVER is named, whatever the id or number. */
static void
test_paths(void **state)
{
    const char *dir = *state;
    char err[256];
    recording_close(recording_open(dir, &meta, err, sizeof(err)));
    char *p = recording_path(dir, "srv1", 1);
    assert_non_null(p);
    free(p);
    assert_null(recording_path(dir, "srv1", 2));
    assert_null(recording_path(dir, "srv1", 0));
    assert_null(recording_path(dir, "../srv1", 1));
    assert_null(recording_path(dir, "srv1/..", 1));
    struct recording_meta bad = meta;
    bad.server = "../x";
    assert_null(recording_open(dir, &bad, err, sizeof(err)));
    json_t *list;
    assert_int_equal(recording_list(dir, "nosuch", &list), 0);
    assert_int_equal(json_array_size(json_object_get(list, "recordings")), 0);
    json_decref(list);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_utf8_and_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers_and_retention, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
