/* util: the shared checks that must behave one way everywhere (tokens,
 * ids, hex digits, decimal numbers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "log.h"
#include "testutil.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
test_token_equal(void **state)
{
    (void)state;
    assert_true(token_equal("admin-secret", "admin-secret"));
    assert_true(token_equal("", ""));
    /* Shorter, longer, a prefix either way, one byte off, empty. */
    assert_false(token_equal("admin-secre", "admin-secret"));
    assert_false(token_equal("admin-secretx", "admin-secret"));
    assert_false(token_equal("admin-secret", "admin-secre"));
    assert_false(token_equal("admin-secreT", "admin-secret"));
    assert_false(token_equal("", "admin-secret"));
    assert_false(token_equal("admin-secret", ""));
    assert_false(token_equal("\x80", "\x81"));
}

static void
test_ids(void **state)
{
    (void)state;
    char id[80];
    memset(id, 'a', sizeof(id));
    id[ID_MAX] = '\0';
    assert_true(id_valid(id));
    id[ID_MAX] = 'a';
    id[ID_MAX + 1] = '\0';
    assert_false(id_valid(id));
    assert_true(id_valid("srv1"));
    assert_true(id_valid("A-z-09"));
    assert_true(id_valid("db-1"));
    assert_true(id_valid("12hx"));
    assert_true(id_valid("cafe-g1"));
    const char *bad[] = {"",     ".",      "..",       "a.b",    "a/b",
                         "a b",  "srv1\n", "\xc3\xa9", "A-z_09", "db_1",
                         "-srv", "srv-",   "infinite", "ignore", "12h",
                         "600",  "5m",     "7W"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(id_valid(bad[i]));
    assert_false(id_valid(NULL));
    assert_true(id_char('_') && id_char('-') && id_char('Z'));
    assert_false(id_char('.') || id_char('%') || id_char(0) || id_char(0xe9));
}

static void
test_numbers(void **state)
{
    (void)state;
    assert_int_equal(hexval('0'), 0);
    assert_int_equal(hexval('9'), 9);
    assert_int_equal(hexval('a'), 10);
    assert_int_equal(hexval('F'), 15);
    assert_int_equal(hexval('g'), -1);
    assert_int_equal(hexval(-1), -1);
    int64_t v = -1;
    assert_true(parse_u63("0", &v) && v == 0);
    /* The bound is a little under INT64_MAX: no digit can overflow. */
    assert_true(parse_u63("9223372036854775799", &v) && v == INT64_MAX - 8);
    assert_false(parse_u63("9223372036854775808", &v));
    const char *bad[] = {"", "-1", "+1", "1x", " 1", "1 ", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(parse_u63(bad[i], &v));
    assert_false(parse_u63(NULL, &v));
}

/* A bounded copy cut inside a character, and bytes that are not UTF-8
 * (a Latin-1 name): what goes into JSON is valid UTF-8, cut at a
 * character's boundary, each bad byte one U+FFFD. */
static void
test_utf8(void **state)
{
    (void)state;
    char cut[7];
    /* "ab€€" in 7 bytes: "ab", one €, and one byte of the next would fit;
     * the byte is not kept. */
    assert_int_equal(snprintf_utf8(cut, sizeof(cut), "ab%s", "\u20ac\u20ac"),
                     8);
    assert_string_equal(cut, "ab\u20ac");
    /* A plain copy keeps it: replaced. */
    strlcpy_s(cut, "ab\u20ac\u20ac", sizeof(cut));
    assert_int_equal(strlen(cut), 6);
    char *v = utf8_valid_dup(cut);
    assert_string_equal(v, "ab\u20ac\ufffd");
    free(v);
    assert_int_equal(utf8_cut_len("ab\u20ac", 4), 2);
    assert_int_equal(utf8_cut_len("ab\u20ac", 5), 5);
    assert_int_equal(utf8_cut_len("ab\u20ac", 3), 2);
    char dst[5];
    assert_int_equal(strlcpy_utf8(dst, "ab\u20acx", sizeof(dst)), 6);
    assert_string_equal(dst, "ab");

    /* Latin-1 "café crème". */
    v = utf8_valid_dup("caf\xe9 cr\xe8me");
    assert_string_equal(v, "caf\ufffd cr\ufffdme");
    free(v);
    /* Overlong "/", a surrogate, a lone continuation byte, an F5. */
    v = utf8_valid_dup("\xc0\xaf|\xed\xa0\x80|\x80|\xf5");
    assert_string_equal(v, "\ufffd\ufffd|\ufffd\ufffd\ufffd|\ufffd|\ufffd");
    free(v);
    /* Valid text of every length is kept as it is. */
    const char *ok = "a\u00e9\u20ac\U0001F600z";
    v = utf8_valid_dup(ok);
    assert_string_equal(v, ok);
    free(v);
    assert_int_equal(utf8_cut_len(ok, strlen(ok)), strlen(ok));
}

/* What others wrote (an ssh user name, a phone-home string) is one log
 * line, with no escape sequence for the terminal that reads it. */
static void
test_log_escapes(void **state)
{
    (void)state;
    char *dir = tu_tmpdir_new("test_util");
    assert_non_null(dir);
    char *path = xasprintf("%s/log", dir);
    int saved = tu_log_capture(path, LOG_LEVEL_INFO);
    log_info("sshd: %s: no such server",
             "srv1\x1b[2J\r\n2026-01-01T00:00:00Z rescued info: forged\x07"
             "\xc2\x9b"
             "31m\ttab");
    char *text = NULL;
    size_t n = 0;
    int r = read_file(path, &text, &n);
    tu_log_release(saved, LOG_LEVEL_ERROR);
    assert_int_equal(r, 0);
    const char *want = "sshd: srv1\\x1b[2J\\x0d\\x0a2026-01-01T00:00:00Z "
                       "rescued info: forged\\x07\\u009b31m\ttab: no such "
                       "server\n";
    assert_non_null(strstr(text, want));
    assert_int_equal(strchr(text, '\n') - text + 1, (long)n); /* one line */
    free(text);
    free(path);
    assert_int_equal(tu_tmpdir_free(dir), 0);

    struct buf b = {0};
    buf_append_visible(&b, "a\nb\x7f", 4, "\n");
    assert_string_equal(b.data, "a\nb\\x7f");
    buf_free(&b);
}

/* random_hex: 2n hex digits and a NUL, a new secret each call, and a
 * refusal past what it holds. */
static void
test_random_hex(void **state)
{
    (void)state;
    char a[65], b[65];
    memset(a, 'x', sizeof(a));
    assert_int_equal(random_hex(a, 32), 0);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_int_equal(random_hex(b, 32), 0);
    assert_string_not_equal(a, b);
    char big[200];
    assert_int_equal(random_hex(big, 65), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_equal), cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_ids),         cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_utf8),        cmocka_unit_test(test_log_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
