/* ticket: one-time tickets for the browser console.  POST
 * /v1/servers/{id}/console/ticket issues one for a server and a principal
 * (the caller: "admin" or "project:NAME"); the WebSocket handshake redeems
 * it, once, within TICKET_TTL_MS, for that server (and, when the handshake
 * knows one, that principal).  Anything else (unknown, reused, expired,
 * another server, another principal) is one answer: not redeemed, so the
 * face can refuse it exactly like an unknown server.
 *
 * Ground floor: memory only, no I/O but getrandom(2) for the secret; the
 * clock is the caller's (now_ms, monotonic), so tests move it.  Tickets
 * are compared in constant time; at most TICKET_MAX are live at once. */
#ifndef RESCUED_TICKET_H
#define RESCUED_TICKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ticket_store;

#define TICKET_TTL_MS 60000
#define TICKET_MAX 4096
#define TICKET_LEN 32 /* hex digits: 128 random bits */

struct ticket_store *ticket_store_new(void);
void ticket_store_free(struct ticket_store *t);

/* A new ticket for server and principal into out (at least TICKET_LEN + 1
 * bytes); *expires_ms is now_ms + TICKET_TTL_MS.  0, or -EBUSY when
 * TICKET_MAX tickets are live, -EIO when no random bytes came. */
int ticket_issue(struct ticket_store *t, const char *server,
                 const char *principal, int64_t now_ms, char *out,
                 size_t outlen, int64_t *expires_ms);

/* Use ticket for server: true once, within its lifetime, for the server
 * it was issued for and, if principal is not NULL, for that principal.
 * The bound principal goes into principal_out (may be NULL).  A ticket that
 * is tried against the wrong server is spent all the same. */
bool ticket_redeem(struct ticket_store *t, const char *ticket,
                   const char *server, const char *principal, int64_t now_ms,
                   char *principal_out, size_t outlen);

/* Live tickets (tests, metrics). */
size_t ticket_count(const struct ticket_store *t);

#endif
