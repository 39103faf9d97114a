/* tls: PEM pairs through GnuTLS, and the pair a handshake is given.  The
 * served pair is process-wide: GnuTLS's retrieve callback has no argument
 * of ours, and rescued has one TLS listener. */
#include "tls.h"
#include "util.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TLS_MAX_CHAIN 16

struct tls_pair {
    gnutls_pcert_st certs[TLS_MAX_CHAIN];
    unsigned ncerts;
    gnutls_privkey_t key;
    char desc[320];
    struct tls_pair *older; /* pairs served before this one */
};

static struct tls_pair *serving;

/* The key ids of the certificate's public key and of the private key's
 * own public part are the same exactly when they are a pair. */
static int
pair_matches(struct tls_pair *p, char *why, size_t whylen)
{
    gnutls_pubkey_t pub;
    unsigned char a[64], b[64];
    size_t alen = sizeof(a), blen = sizeof(b);
    int rc = gnutls_pubkey_init(&pub);
    if (rc < 0)
        goto fail;
    rc = gnutls_pubkey_import_privkey(pub, p->key, 0, 0);
    if (rc >= 0)
        rc = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &alen);
    gnutls_pubkey_deinit(pub);
    if (rc < 0)
        goto fail;
    rc = gnutls_pubkey_get_key_id(p->certs[0].pubkey, GNUTLS_KEYID_USE_SHA256,
                                  b, &blen);
    if (rc < 0)
        goto fail;
    if (alen != blen || memcmp(a, b, alen) != 0) {
        snprintf(why, whylen, "the key is not the certificate's");
        return -1;
    }
    return 0;
fail:
    snprintf(why, whylen, "%s", gnutls_strerror(rc));
    return -1;
}

static void
describe(struct tls_pair *p)
{
    gnutls_x509_crt_t crt;
    char dn[256] = "?";
    size_t dnlen = sizeof(dn);
    time_t exp = 0;
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &p->certs[0].cert, GNUTLS_X509_FMT_DER) >=
        0) {
        if (gnutls_x509_crt_get_dn(crt, dn, &dnlen) < 0)
            strlcpy_s(dn, "?", sizeof(dn));
        exp = gnutls_x509_crt_get_expiration_time(crt);
    }
    gnutls_x509_crt_deinit(crt);
    char when[32];
    format_time_iso((int64_t)exp, when, sizeof(when));
    snprintf(p->desc, sizeof(p->desc), "%s, expires %s", dn, when);
}

struct tls_pair *
tls_pair_load(const char *cert, const char *key, char *err, size_t errlen)
{
    struct tls_pair *p = xcalloc(1, sizeof(*p));
    char *text = NULL, why[256];
    size_t len;
    int rc = read_file(cert, &text, &len);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", cert, strerror(-rc));
        goto out_free;
    }
    gnutls_datum_t d = {(unsigned char *)text, (unsigned)len};
    p->ncerts = TLS_MAX_CHAIN;
    rc = gnutls_pcert_list_import_x509_raw(p->certs, &p->ncerts, &d,
                                           GNUTLS_X509_FMT_PEM, 0);
    free(text);
    text = NULL;
    if (rc < 0 || p->ncerts == 0) {
        p->ncerts = 0;
        snprintf(err, errlen, "%s: not a PEM certificate: %s", cert,
                 rc < 0 ? gnutls_strerror(rc) : "none in the file");
        goto out_free;
    }
    rc = read_file(key, &text, &len);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", key, strerror(-rc));
        goto out_free;
    }
    d = (gnutls_datum_t){(unsigned char *)text, (unsigned)len};
    rc = gnutls_privkey_init(&p->key);
    if (rc >= 0)
        rc = gnutls_privkey_import_x509_raw(p->key, &d, GNUTLS_X509_FMT_PEM,
                                            NULL, 0);
    explicit_bzero(text, len);
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "%s: not a PEM private key: %s", key,
                 gnutls_strerror(rc));
        goto out_free;
    }
    if (pair_matches(p, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s (%s)", key, why, cert);
        goto out_free;
    }
    describe(p);
    return p;

out_free:
    tls_pair_free(p);
    return NULL;
}

void
tls_pair_free(struct tls_pair *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < p->ncerts; i++)
        gnutls_pcert_deinit(&p->certs[i]);
    if (p->key)
        gnutls_privkey_deinit(p->key);
    free(p);
}

const char *
tls_pair_describe(const struct tls_pair *p)
{
    return p->desc;
}

void
tls_serve(struct tls_pair *p)
{
    p->older = serving;
    serving = p;
}

void
tls_serve_end(void)
{
    while (serving) {
        struct tls_pair *p = serving;
        serving = p->older;
        tls_pair_free(p);
    }
}

static int
retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
         const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
         gnutls_pcert_st **pcert, unsigned int *pcert_length,
         gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_dn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    if (!serving)
        return -1; /* ends the handshake */
    *pcert = serving->certs;
    *pcert_length = serving->ncerts;
    *privkey = serving->key;
    return 0;
}

void *
tls_retrieve_fn(void)
{
    return (void *)retrieve;
}
