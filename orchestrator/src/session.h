/* session: the portal's sign-in sessions, in memory, with a hook the
 * fleet uses to keep them in the store across a restart.  A session is
 * made from a token the user pasted once (POST /v1/session) and is named
 * by a random id the browser keeps in an HttpOnly cookie; it also holds
 * the CSRF token the page sends back in X-CSRF-Token on every request that
 * changes something.  The id and the token are kept only as SHA-256
 * hashes (the id's is the session's key, here and in the store), so
 * neither a core dump nor the database hands out a working cookie or the
 * token; each request is authorized by the token the config has now for
 * the session's project (or the admin's) when its hash still matches: a
 * reload that revokes a token or removes its project ends its sessions.
 *
 * Ground module: no I/O but getrandom; the caller gives the clock. */
#ifndef RESCUED_SESSION_H
#define RESCUED_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_LEN 64   /* hex digits of 32 random bytes */
#define SESSION_HASH_LEN 64 /* hex digits of a SHA-256 */
#define SESSION_COOKIE "rescued_session"
#define SESSION_CSRF_HEADER "X-CSRF-Token"
/* At most this many live sessions: a new one past it ends the one that
 * expires first (a flood of sign-ins cannot grow the daemon). */
#define SESSION_MAX 4096

struct session_store;

struct session {
    char id_hash[SESSION_HASH_LEN + 1];    /* of the cookie's id */
    char csrf[SESSION_ID_LEN + 1];         /* sent back in the header */
    char token_hash[SESSION_HASH_LEN + 1]; /* of the token signed in with */
    char *project;                         /* NULL: the admin */
    int64_t expires_ms;                    /* wall clock */
};

/* Called with the id hash of each session the store ends by itself or by
 * session_delete and session_filter (expired, made room for, signed out,
 * revoked); not at session_store_free.  May be NULL. */
typedef void session_drop_cb(void *arg, const char *id_hash);

struct session_store *session_store_new(session_drop_cb *dropped, void *arg);
void session_store_free(struct session_store *ss);
size_t session_count(const struct session_store *ss);

/* The hex SHA-256 of a secret (a session id, a token). */
void session_hash(const char *secret, char out[SESSION_HASH_LEN + 1]);

/* A new session for token (kept as its hash) of project (copied; NULL:
 * the admin) that ends ttl_ms after now_ms; its id, which only the
 * cookie carries, into id; *out points into the store until the session
 * ends.  0, or a negative errno (getrandom failed). */
int session_create(struct session_store *ss, const char *token,
                   const char *project, int64_t now_ms, int64_t ttl_ms,
                   char id[SESSION_ID_LEN + 1], const struct session **out);
/* A session as the store kept it (after a restart), copied in: 0,
 * -ESTALE when it has expired, -EEXIST when it is there already, -EINVAL
 * when its hashes or CSRF token are not of the right form. */
int session_restore(struct session_store *ss, const struct session *s,
                    int64_t now_ms);
/* The live session with this id, or NULL (unknown or expired; an expired
 * one is ended here). */
const struct session *session_find(struct session_store *ss, const char *id,
                                   int64_t now_ms);
/* Sign-out: true when there was such a session. */
bool session_delete(struct session_store *ss, const char *id);
/* Ends every session keep() says false for (a reload). */
void session_filter(struct session_store *ss,
                    bool (*keep)(void *arg, const struct session *s),
                    void *arg);
/* Was the session made with this token (constant time)? */
bool session_token_is(const struct session *s, const char *token);
/* Does the header carry this session's CSRF token (constant time)? */
bool session_csrf_ok(const struct session *s, const char *header);

/* The session id in a Cookie header ("a=b; rescued_session=ID"), into
 * out[SESSION_ID_LEN + 1]; false when there is none of the right form. */
bool session_cookie_id(const char *cookie, char out[SESSION_ID_LEN + 1]);

#endif
