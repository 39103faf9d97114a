/* resolve: host names to addresses without blocking the loop, for the
 * sources and drivers that connect to a host:port (the tcp: console, the
 * ipmi pre-flight).  An address ("10.0.0.5", "::1") is parsed at once; a
 * name goes to glibc's getaddrinfo_a, which resolves it on a thread of
 * its own (the one way glibc offers to ask without waiting) and tells us
 * through a pipe the loop watches.  Everything else runs on the loop's
 * thread; nothing here blocks. */
#ifndef RESCUED_RESOLVE_H
#define RESCUED_RESOLVE_H

#include <netdb.h>

struct loop;
struct resolve;

/* rc 0 and the addresses (valid during the call only), or a negative
 * errno with err ("no such host", gai_strerror's words). */
typedef void resolve_cb(void *arg, int rc, const struct addrinfo *ai,
                        const char *err);

/* Resolve host and port for socktype (SOCK_STREAM, SOCK_DGRAM); cb runs
 * once, later, from the loop, never before this returns.  The handle is
 * the caller's until cb runs or resolve_cancel. */
struct resolve *resolve_start(struct loop *l, const char *host,
                              const char *port, int socktype, resolve_cb *cb,
                              void *arg);
/* cb will not run; the lookup's thread may still finish, its answer is
 * dropped.  Accepts NULL. */
void resolve_cancel(struct resolve *q);

#endif
