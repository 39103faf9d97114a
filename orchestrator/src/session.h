/* session: the portal's sign-in sessions, in memory.  A session is made
 * from a token the user pasted once (POST /v1/session) and is named by a
 * random id the browser keeps in an HttpOnly cookie; it also holds the
 * CSRF token the page sends back in X-CSRF-Token on every request that
 * changes something.  The session keeps the token itself, so each request
 * is authorized by the token as the config has it now: a reload that
 * revokes a token ends its sessions too.  Sessions do not survive a
 * restart (the user signs in again).
 *
 * Ground module: no I/O but getrandom; the caller gives the clock. */
#ifndef RESCUED_SESSION_H
#define RESCUED_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_LEN 64 /* hex digits of 32 random bytes */
#define SESSION_COOKIE "rescued_session"
#define SESSION_CSRF_HEADER "X-CSRF-Token"
/* At most this many live sessions: a new one past it ends the one that
 * expires first (a flood of sign-ins cannot grow the daemon). */
#define SESSION_MAX 4096

struct session_store;

struct session {
    char id[SESSION_ID_LEN + 1];
    char csrf[SESSION_ID_LEN + 1];
    char *token;        /* what the user signed in with */
    int64_t expires_ms; /* wall clock */
};

struct session_store *session_store_new(void);
void session_store_free(struct session_store *ss);
size_t session_count(const struct session_store *ss);

/* A new session for token (copied) that ends ttl_ms after now_ms; *out
 * points into the store until the session ends.  0, or a negative errno
 * (getrandom failed). */
int session_create(struct session_store *ss, const char *token, int64_t now_ms,
                   int64_t ttl_ms, const struct session **out);
/* The live session with this id, or NULL (unknown or expired; an expired
 * one is ended here). */
const struct session *session_find(struct session_store *ss, const char *id,
                                   int64_t now_ms);
/* Sign-out: true when there was such a session. */
bool session_delete(struct session_store *ss, const char *id);
/* Does the header carry this session's CSRF token (constant time)? */
bool session_csrf_ok(const struct session *s, const char *header);

/* The session id in a Cookie header ("a=b; rescued_session=ID"), into
 * out[SESSION_ID_LEN + 1]; false when there is none of the right form. */
bool session_cookie_id(const char *cookie, char out[SESSION_ID_LEN + 1]);

#endif
