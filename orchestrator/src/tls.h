/* tls: a certificate chain and its private key, read from PEM files and
 * checked to be a pair, and the one pair the TLS listener serves.  Ground
 * floor: reads files, no network; nothing here blocks beyond that read.
 *
 * libmicrohttpd cannot change the certificate of a running daemon, so the
 * listener asks for it at each handshake (MHD_OPTION_HTTPS_CERT_CALLBACK,
 * tls_retrieve): a reload swaps the pair served, connections already open
 * (event streams, consoles) go on with the one they began with. */
#ifndef RESCUED_TLS_H
#define RESCUED_TLS_H

#include <stddef.h>

struct tls_pair;

/* Load cert (a PEM chain, the server's first) and key (PEM).  NULL and
 * "PATH: reason" in err when a file cannot be read or parsed, or when the
 * key is not the certificate's. */
struct tls_pair *tls_pair_load(const char *cert, const char *key, char *err,
                               size_t errlen);
void tls_pair_free(struct tls_pair *p);
/* The subject and expiry of the first certificate, for a log line. */
const char *tls_pair_describe(const struct tls_pair *p);

/* Serve p from the next handshake on (takes it).  The pairs it replaces are
 * kept, since a handshake under way may still use one, until tls_serve_end. */
void tls_serve(struct tls_pair *p);
void tls_serve_end(void);
/* The MHD_OPTION_HTTPS_CERT_CALLBACK (gnutls_certificate_retrieve_function2).
 */
void *tls_retrieve_fn(void);

#endif
