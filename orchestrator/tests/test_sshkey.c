#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sshkey.h"
#include "util.h"

#include "keyhelp.h"
#include "testutil.h"

/* Real keys, made once by ssh-keygen for the whole group. */
static struct {
    char *dir;
    char *ed25519, *ecdsa256, *ecdsa384, *ecdsa521, *rsa2048, *rsa1024;
    char *dsa; /* from ssh-keygen if it still makes DSA keys, else by hand */
    char *sk_ed25519, *sk_ecdsa; /* hand-made: no FIDO token here */
} k;

/* A FIDO key line built from a plain key's blob: same public key, the sk
 * type name, and an application string at the end. */
static char *
make_sk(const char *plain, const char *sk_type, bool ecdsa)
{
    size_t len;
    unsigned char *blob = line_blob(plain, &len);
    struct buf b = {0};
    size_t off = 4 + ((size_t)blob[2] << 8 | blob[3]); /* skip type */
    char *b64, *line;

    wire_put(&b, sk_type, strlen(sk_type));
    buf_append(&b, blob + off, len - off); /* key (ECDSA: curve + point) */
    wire_put(&b, "ssh:", 4);
    b64 = b64_enc((unsigned char *)b.data, b.len);
    line = xasprintf("%s %s %s", sk_type, b64, ecdsa ? "yubi@desk" : "fido");
    free(b64);
    buf_free(&b);
    free(blob);
    return line;
}

static int
group_setup(void **state)
{
    (void)state;
    k.dir = tu_tmpdir_new("test_sshkey");
    if (!k.dir)
        return -1;
    k.ed25519 = keygen(k.dir, "ed", "ed25519", 0, "alice@laptop");
    k.ecdsa256 = keygen(k.dir, "e256", "ecdsa", 256, "e256");
    k.ecdsa384 = keygen(k.dir, "e384", "ecdsa", 384, "e384");
    k.ecdsa521 = keygen(k.dir, "e521", "ecdsa", 521, "e521");
    k.rsa2048 = keygen(k.dir, "r2048", "rsa", 2048, "bob@server");
    k.rsa1024 = keygen(k.dir, "r1024", "rsa", 1024, "old@box");
    k.dsa = keygen(k.dir, "dsa", "dsa", 0, "dsa@box");
    if (!k.dsa) {
        /* Hand-made ssh-dss blob: type and four small mpints. */
        struct buf b = {0};
        unsigned char one = 1;
        wire_put(&b, "ssh-dss", 7);
        for (int i = 0; i < 4; i++)
            wire_put(&b, &one, 1);
        char *b64 = b64_enc((unsigned char *)b.data, b.len);
        k.dsa = xasprintf("ssh-dss %s dsa@box", b64);
        free(b64);
        buf_free(&b);
    }
    if (!k.ed25519 || !k.ecdsa256 || !k.ecdsa384 || !k.ecdsa521 || !k.rsa2048 ||
        !k.rsa1024)
        return -1;
    k.sk_ed25519 = make_sk(k.ed25519, "sk-ssh-ed25519@openssh.com", false);
    k.sk_ecdsa =
        make_sk(k.ecdsa256, "sk-ecdsa-sha2-nistp256@openssh.com", true);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    int rc = tu_tmpdir_free(k.dir);
    free(k.ed25519);
    free(k.ecdsa256);
    free(k.ecdsa384);
    free(k.ecdsa521);
    free(k.rsa2048);
    free(k.rsa1024);
    free(k.dsa);
    free(k.sk_ed25519);
    free(k.sk_ecdsa);
    return rc;
}

static void
assert_refused(const char *line, const char *why)
{
    char err[256] = "";

    assert_false(sshkey_valid(line, err, sizeof(err)));
    if (!strstr(err, why))
        fail_msg("error '%s' does not contain '%s'", err, why);
}

static void
test_supported_types_accepted(void **state)
{
    const char *keys[] = {k.ed25519, k.ecdsa256,   k.ecdsa384, k.ecdsa521,
                          k.rsa2048, k.sk_ed25519, k.sk_ecdsa};
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        err[0] = '\0';
        if (!sshkey_valid(keys[i], err, sizeof(err)))
            fail_msg("%.40s refused: %s", keys[i], err);
    }
}

static void
test_fingerprint_matches_ssh_keygen(void **state)
{
    const char *keys[] = {k.ed25519, k.ecdsa256,   k.ecdsa384, k.ecdsa521,
                          k.rsa2048, k.sk_ed25519, k.sk_ecdsa};
    char fp[SSHKEY_FP_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *want = keygen_fingerprint(k.dir, keys[i]);
        assert_non_null(want);
        assert_int_equal(sshkey_fingerprint(keys[i], fp, sizeof(fp)), 0);
        assert_string_equal(fp, want);
        assert_int_equal(strncmp(fp, "SHA256:", 7), 0);
        free(want);
    }
}

static void
test_fingerprint_errors(void **state)
{
    char fp[SSHKEY_FP_LEN], tiny[10];

    (void)state;
    assert_int_equal(sshkey_fingerprint(k.rsa1024, fp, sizeof(fp)), -EINVAL);
    assert_int_equal(sshkey_fingerprint("garbage", fp, sizeof(fp)), -EINVAL);
    assert_int_equal(sshkey_fingerprint(k.ed25519, tiny, sizeof(tiny)),
                     -ENOSPC);
}

static void
test_small_rsa_refused(void **state)
{
    (void)state;
    assert_refused(k.rsa1024, "RSA key is 1024 bits; at least 2048 required");
}

static void
test_dsa_refused(void **state)
{
    (void)state;
    assert_refused(k.dsa, "unsupported key type 'ssh-dss'");
}

static void
test_other_types_refused(void **state)
{
    (void)state;
    assert_refused("ssh-ed25519-cert-v01@openssh.com AAAAC3Nz x",
                   "unsupported key type 'ssh-ed25519-cert-v01@openssh.com'");
    assert_refused("foo", "unsupported key type 'foo'");
    assert_refused("", "empty key");
    assert_refused("   \t ", "empty key");
    assert_refused("ssh-ed25519", "missing key data");
}

static void
test_options_prefix_refused(void **state)
{
    const char *prefixes[] = {
        "command=\"echo hi\" ", "no-pty ",
        "restrict,pty ",        "from=\"10.0.0.1\" ",
        "environment=\"A=b\" ",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char *line =
            xasprintf("%s%s", prefixes[i], i % 2 ? k.rsa2048 : k.ed25519);
        assert_refused(line, "options prefix not allowed");
        free(line);
    }
}

static void
test_bad_base64_refused(void **state)
{
    char *line = xstrdup(k.ed25519);
    char *b64 = strchr(line, ' ') + 1;

    (void)state;
    b64[10] = '!';
    assert_refused(line, "not valid base64");
    free(line);

    /* Cut short: no longer a multiple of four characters. */
    line = xstrdup(k.ed25519);
    b64 = strchr(line, ' ') + 1;
    memmove(b64 + 20, b64 + 21, strlen(b64 + 21) + 1);
    assert_refused(line, "not valid base64");
    free(line);

    /* Padding in the middle. */
    line = xstrdup(k.ed25519);
    b64 = strchr(line, ' ') + 1;
    b64[8] = '=';
    assert_refused(line, "not valid base64");
    free(line);
}

static void
test_truncated_and_trailing_blob_refused(void **state)
{
    size_t len;
    unsigned char *blob = line_blob(k.ed25519, &len);
    unsigned char *longer = xmalloc(len + 3);
    char *b64, *line;

    (void)state;
    b64 = b64_enc(blob, len - 5);
    line = xasprintf("ssh-ed25519 %s", b64);
    assert_refused(line, "key data is truncated");
    free(line);
    free(b64);

    memcpy(longer, blob, len);
    memset(longer + len, 'x', 3);
    b64 = b64_enc(longer, len + 3);
    line = xasprintf("ssh-ed25519 %s", b64);
    assert_refused(line, "trailing bytes");
    free(line);
    free(b64);
    free(longer);
    free(blob);
}

static void
test_type_mismatch_refused(void **state)
{
    char *line;
    const char *b64 = strchr(k.ed25519, ' ') + 1;

    (void)state;
    line = xasprintf("ssh-rsa %s", b64);
    assert_refused(line, "does not match key data ('ssh-ed25519')");
    free(line);

    /* P-384 data under the P-256 name. */
    line = xasprintf("ecdsa-sha2-nistp256 %s", strchr(k.ecdsa384, ' ') + 1);
    assert_refused(line, "does not match");
    free(line);
}

static void
test_control_characters_refused(void **state)
{
    char *line;
    char err[256] = "";

    (void)state;
    line = xasprintf("%s\n%s", k.ed25519, k.rsa2048);
    assert_refused(line, "line break");
    free(line);

    line = xasprintf("%s\rx", k.ed25519);
    assert_refused(line, "line break");
    free(line);

    line = xasprintf("%s\x1b[2J", k.ed25519);
    assert_refused(line, "control character");
    free(line);

    /* A NUL inside a counted string (as JSON can carry). */
    line = xasprintf("%s x", k.ed25519);
    size_t n = strlen(line);
    line[n - 2] = '\0';
    assert_false(sshkey_valid_n(line, n, err, sizeof(err)));
    assert_non_null(strstr(err, "NUL"));
    free(line);

    /* A single trailing newline, as read from a file, is fine. */
    line = xasprintf("  %s\n", k.ed25519);
    assert_true(sshkey_valid(line, err, sizeof(err)));
    free(line);
}

static void
test_comment_and_canonical(void **state)
{
    char comment[64];
    char *line, *canon;

    (void)state;
    sshkey_comment(k.ed25519, comment, sizeof(comment));
    assert_string_equal(comment, "alice@laptop");

    /* No comment at all is allowed. */
    line = xstrdup(k.ed25519);
    *strrchr(line, ' ') = '\0';
    assert_true(sshkey_valid(line, NULL, 0));
    sshkey_comment(line, comment, sizeof(comment));
    assert_string_equal(comment, "");
    free(line);

    /* Comment with spaces; names the key even behind an options prefix. */
    line = xasprintf("no-pty %s and more", k.rsa2048);
    sshkey_comment(line, comment, sizeof(comment));
    assert_string_equal(comment, "bob@server and more");
    free(line);

    line = xasprintf("\t%s \n", k.ed25519);
    canon = sshkey_canonical(line);
    assert_non_null(canon);
    assert_string_equal(canon, k.ed25519);
    free(canon);
    free(line);
    assert_null(sshkey_canonical(k.rsa1024));
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_load_file(void **state)
{
    char *path = xasprintf("%s/authorized_keys", k.dir);
    char *text;
    char **keys = NULL;
    size_t n = 99;
    char err[256] = "";

    (void)state;
    text = xasprintf("# project acme\n\n%s\n   \n  # old key gone\n%s\n",
                     k.ed25519, k.ecdsa256);
    write_text(path, text);
    free(text);
    assert_int_equal(sshkey_load_file(path, &keys, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(keys[0], k.ed25519);
    assert_string_equal(keys[1], k.ecdsa256);
    assert_null(keys[2]);
    sshkey_list_free(keys);

    keys = NULL;
    text = xasprintf("%s\n# ok\n\n%s\n", k.ed25519, k.rsa1024);
    write_text(path, text);
    free(text);
    assert_int_equal(sshkey_load_file(path, &keys, &n, err, sizeof(err)),
                     -EINVAL);
    assert_null(keys);
    assert_non_null(strstr(err, "line 4: RSA key is 1024 bits"));

    unlink(path);
    assert_int_equal(sshkey_load_file(path, &keys, &n, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "authorized_keys"));
    free(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supported_types_accepted),
        cmocka_unit_test(test_fingerprint_matches_ssh_keygen),
        cmocka_unit_test(test_fingerprint_errors),
        cmocka_unit_test(test_small_rsa_refused),
        cmocka_unit_test(test_dsa_refused),
        cmocka_unit_test(test_other_types_refused),
        cmocka_unit_test(test_options_prefix_refused),
        cmocka_unit_test(test_bad_base64_refused),
        cmocka_unit_test(test_truncated_and_trailing_blob_refused),
        cmocka_unit_test(test_type_mismatch_refused),
        cmocka_unit_test(test_control_characters_refused),
        cmocka_unit_test(test_comment_and_canonical),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
