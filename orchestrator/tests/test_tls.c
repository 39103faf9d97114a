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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "loop.h"
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
                           "admin_token = admintok-0123456789\n"
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

/* --- an upgraded connection (the console's WebSocket) over TLS --- */

struct up_env {
    struct http_upgrade *up;
    int port;
    atomic_int client_state; /* 0 running, 1 got its pong, -1 failed */
    char status_line[64];
};

static void
on_up(struct http_upgrade *u, void *arg)
{
    ((struct up_env *)arg)->up = u;
}

static void
h_up(struct http_req *r, void *arg)
{
    struct http_answer *a = http_answer_upgrade(r, "echo", NULL, arg);
    assert_non_null(a);
    http_respond(r, 101, a);
}

static const struct http_route up_routes[] = {
    {"/up", HTTP_GET, HTTP_UPGRADE, NULL, h_up, on_up},
};

/* The client, in a thread of its own since it blocks: TLS (no check of
 * the self-signed certificate: what is tested is the server's side), the
 * upgrade, "ping" out and "pong" back through the upgraded socket. */
static void *
up_client(void *arg)
{
    struct up_env *e = arg;
    gnutls_session_t s;
    gnutls_certificate_credentials_t cred;
    char buf[512];
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)e->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out_close;
    gnutls_certificate_allocate_credentials(&cred);
    gnutls_init(&s, GNUTLS_CLIENT);
    gnutls_set_default_priority(s);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, 5000);
    if (gnutls_handshake(s) < 0)
        goto out_tls;
    const char *req = "GET /up HTTP/1.1\r\nHost: t\r\n"
                      "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n";
    if (gnutls_record_send(s, req, strlen(req)) < 0)
        goto out_tls;
    while (got < sizeof(buf) - 1) {
        ssize_t n = gnutls_record_recv(s, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            goto out_tls;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    snprintf(e->status_line, sizeof(e->status_line), "%.*s",
             (int)strcspn(buf, "\r"), buf);
    if (gnutls_record_send(s, "ping", 4) != 4)
        goto out_tls;
    got = 0;
    while (got < 4) {
        ssize_t n = gnutls_record_recv(s, buf + got, 4 - got);
        if (n <= 0)
            goto out_tls;
        got += (size_t)n;
    }
    ok = memcmp(buf, "pong", 4) == 0 ? 1 : -1;
out_tls:
    gnutls_bye(s, GNUTLS_SHUT_WR);
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
out_close:
    close(fd);
    atomic_store(&e->client_state, ok);
    return NULL;
}

static bool
upgraded(void *arg)
{
    return ((struct up_env *)arg)->up != NULL ||
           atomic_load(&((struct up_env *)arg)->client_state) != 0;
}

static bool
upgrade_readable(void *arg)
{
    struct pollfd p = {.fd = http_upgrade_fd(((struct up_env *)arg)->up),
                       .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static bool
client_done(void *arg)
{
    return atomic_load(&((struct up_env *)arg)->client_state) != 0;
}

static void
test_upgrade_over_tls(void **state)
{
    (void)state;
    char c1[256], k1[256], err[512] = "";
    make_pair("up", c1, k1);
    struct tls_pair *p = tls_pair_load(c1, k1, err, sizeof(err));
    assert_non_null(p);
    tls_serve(p);
    struct loop *l = loop_new();
    struct http *h = http_new_tls(l, "127.0.0.1:0", true, err, sizeof(err));
    if (!h)
        fail_msg("%s", err);
    struct up_env e = {.port = http_port(h)};
    struct http_face face = {up_routes, 1, &e, NULL};
    http_add_face(h, &face);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, up_client, &e), 0);
    assert_true(tu_pump_until(l, 5000, upgraded, &e));
    assert_non_null(e.up);
    /* MHD carries the bytes between TLS and our socket from its runs. */
    assert_true(tu_pump_until(l, 5000, upgrade_readable, &e));
    char got[8] = "";
    int fd = http_upgrade_fd(e.up);
    assert_int_equal(read(fd, got, sizeof(got)), 4);
    assert_memory_equal(got, "ping", 4);
    assert_int_equal(write(fd, "pong", 4), 4);
    assert_true(tu_pump_until(l, 5000, client_done, &e));
    pthread_join(t, NULL);
    assert_string_equal(e.status_line, "HTTP/1.1 101 Switching Protocols");
    assert_int_equal(atomic_load(&e.client_state), 1);

    http_upgrade_close(e.up);
    http_free(h);
    loop_free(l);
    tls_serve_end();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair),
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_upgrade_over_tls),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
