/* Tests for tls: a PEM pair loads and is described; a key that is not the
 * certificate's, an unreadable file and a file that is no PEM are refused
 * with the path and the reason; [rescued] tls_cert/tls_key/boot_listen are
 * refused with FILE:LINE by config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "testutil.h"
#include "tls.h"
#include "util.h"

static char *tmpdir;

/* A self-signed certificate for CN=name and its key, as PEM files
 * DIR/name.pem and DIR/name.key; returns the paths in cert and key. */
static void
make_pair(const char *name, char cert[256], char key[256])
{
    gnutls_x509_privkey_t k;
    gnutls_x509_crt_t c;
    unsigned char buf[8192];
    size_t n;
    time_t now = time(NULL);
    unsigned char serial[] = {1};

    assert_int_equal(gnutls_x509_privkey_init(&k), 0);
    assert_int_equal(gnutls_x509_privkey_generate(
                         k, GNUTLS_PK_ECDSA,
                         GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    assert_int_equal(gnutls_x509_crt_init(&c), 0);
    gnutls_x509_crt_set_version(c, 3);
    gnutls_x509_crt_set_serial(c, serial, sizeof(serial));
    gnutls_x509_crt_set_activation_time(c, now - 60);
    gnutls_x509_crt_set_expiration_time(c, now + 3600);
    gnutls_x509_crt_set_dn_by_oid(c, GNUTLS_OID_X520_COMMON_NAME, 0, name,
                                  (unsigned)strlen(name));
    gnutls_x509_crt_set_key(c, k);
    assert_int_equal(gnutls_x509_crt_sign2(c, c, k, GNUTLS_DIG_SHA256, 0), 0);

    snprintf(cert, 256, "%s/%s.pem", tmpdir, name);
    snprintf(key, 256, "%s/%s.key", tmpdir, name);
    n = sizeof(buf);
    assert_int_equal(gnutls_x509_crt_export(c, GNUTLS_X509_FMT_PEM, buf, &n),
                     0);
    assert_int_equal(write_file_atomic(cert, buf, n, 0644), 0);
    n = sizeof(buf);
    assert_int_equal(
        gnutls_x509_privkey_export(k, GNUTLS_X509_FMT_PEM, buf, &n), 0);
    assert_int_equal(write_file_atomic(key, buf, n, 0600), 0);
    gnutls_x509_crt_deinit(c);
    gnutls_x509_privkey_deinit(k);
}

static int
setup_dir(void **state)
{
    (void)state;
    return (tmpdir = tu_tmpdir_new("test_tls")) ? 0 : -1;
}

static int
remove_dir(void **state)
{
    (void)state;
    return tu_tmpdir_free(tmpdir);
}

static void
test_pair(void **state)
{
    (void)state;
    char c1[256], k1[256], c2[256], k2[256], err[512] = "";
    make_pair("one", c1, k1);
    make_pair("two", c2, k2);

    struct tls_pair *p = tls_pair_load(c1, k1, err, sizeof(err));
    if (!p)
        fail_msg("refused: %s", err);
    assert_non_null(strstr(tls_pair_describe(p), "CN=one"));
    assert_non_null(strstr(tls_pair_describe(p), "expires 20"));
    tls_serve(p);
    p = tls_pair_load(c2, k2, err, sizeof(err));
    assert_non_null(p);
    tls_serve(p); /* the first one is kept until the end */
    tls_serve_end();

    assert_null(tls_pair_load(c1, k2, err, sizeof(err)));
    assert_non_null(strstr(err, k2));
    assert_non_null(strstr(err, "the key is not the certificate's"));

    char missing[300];
    snprintf(missing, sizeof(missing), "%s/none.pem", tmpdir);
    assert_null(tls_pair_load(missing, k1, err, sizeof(err)));
    assert_non_null(strstr(err, "none.pem: cannot read: No such file"));
    /* A key where the certificate should be, and the reverse. */
    assert_null(tls_pair_load(k1, k1, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM certificate"));
    assert_null(tls_pair_load(c1, c1, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM private key"));
}

/* FILE:LINE for each refusal, against the key that is wrong. */
static void
expect_config(const char *extra, const char *want)
{
    char path[300], err[512] = "";
    snprintf(path, sizeof(path), "%s/rescued.ini", tmpdir);
    char *text = xasprintf("[rescued]\n"
                           "listen = 127.0.0.1:8443\n"
                           "boot_url = http://127.0.0.1:8080\n"
                           "data_dir = /var/lib/rescued\n"
                           "admin_token = admintok\n"
                           "%s",
                           extra);
    assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
    free(text);
    struct config *c = config_load(path, err, sizeof(err));
    if (!want) {
        if (!c)
            fail_msg("refused: %s", err);
        config_free(c);
        return;
    }
    if (c)
        fail_msg("loaded, expected '%s'", want);
    if (!strstr(err, want))
        fail_msg("got '%s', wanted '...%s...'", err, want);
}

static void
test_config_keys(void **state)
{
    (void)state;
    char c1[256], k1[256], c2[256], k2[256], buf[1200];
    make_pair("one", c1, k1);
    make_pair("two", c2, k2);

    snprintf(buf, sizeof(buf),
             "tls_cert = %s\ntls_key = %s\nboot_listen = 127.0.0.1:8080\n", c1,
             k1);
    expect_config(buf, NULL);
    snprintf(buf, sizeof(buf), "tls_cert = %s\n", c1);
    expect_config(buf, "rescued.ini:6: [rescued] tls_key: required with "
                       "tls_cert");
    snprintf(buf, sizeof(buf), "tls_cert = %s\ntls_key = %s\n", c1, k2);
    expect_config(buf, ":7: [rescued] tls_key: ");
    snprintf(buf, sizeof(buf), "tls_cert = %s/none.pem\ntls_key = %s\n", tmpdir,
             k1);
    expect_config(buf, ":6: [rescued] tls_cert: ");
    /* TLS on and the boot path on plain HTTP: it needs its own listener. */
    snprintf(buf, sizeof(buf), "tls_cert = %s\ntls_key = %s\n", c1, k1);
    expect_config(buf, ":3: [rescued] boot_url: plain HTTP");
    expect_config("boot_listen = 127.0.0.1:8080\n",
                  ":6: [rescued] boot_listen: only with tls_cert");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
