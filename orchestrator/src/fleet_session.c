/* fleet_session: the portal's sign-in sessions (session.h), kept by the
 * fleet in memory and in the store, so a restart signs no one out: each
 * session made is stored (hashes of its id and token, never either), each
 * one ended (signed out, expired, made room for, its token or project
 * gone at a reload) is deleted, and fleet_new reads the live ones back.
 * A session names its project; each request is authorized by the token
 * the config has for it now, when that token's hash is the session's.
 *
 * Runs from the loop; blocks on the store ([commit] per sign-in and
 * sign-out, [read] per row at start-up). */
#include "config.h"
#include "fleet.h"
#include "fleet_internal.h"
#include "log.h"
#include "session.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* session.h's drop hook: what memory ends, the store forgets. */
static void
dropped(void *arg, const char *id_hash)
{
    struct fleet *f = arg;
    int rc = store_session_delete(f->st, id_hash);
    if (rc < 0)
        log_warnx("portal: cannot delete a session from the store: %s",
                  strerror(-rc));
}

const char *
fleet_session_token(struct fleet *f, const struct session *s)
{
    const char *tok = f->cfg->admin_token;
    if (s->project) {
        const struct config_project *p =
            config_find_project(f->cfg, s->project);
        tok = p ? p->token : NULL;
    }
    return tok && session_token_is(s, tok) ? tok : NULL;
}

static bool
still_valid(void *arg, const struct session *s)
{
    return fleet_session_token(arg, s) != NULL;
}

void
fleet_sessions_recheck(struct fleet *f)
{
    size_t before = session_count(f->sessions);
    session_filter(f->sessions, still_valid, f);
    size_t ended = before - session_count(f->sessions);
    if (ended)
        log_info("portal: %zu %s ended (token or project gone)", ended,
                 plural(ended, "session", "sessions"));
}

static int
restore_one(void *arg, const struct store_session *ps)
{
    struct fleet *f = arg;
    struct session s = {.expires_ms = ps->expires_ms,
                        .project = (char *)ps->project};
    strlcpy_s(s.id_hash, ps->id_hash ? ps->id_hash : "", sizeof(s.id_hash));
    strlcpy_s(s.token_hash, ps->token_hash ? ps->token_hash : "",
              sizeof(s.token_hash));
    strlcpy_s(s.csrf, ps->csrf ? ps->csrf : "", sizeof(s.csrf));
    int rc = session_restore(f->sessions, &s, now_wall_ms());
    if (rc == -EINVAL && ps->id_hash)
        store_session_delete(f->st, ps->id_hash); /* of no use to anyone */
    explicit_bzero(&s, sizeof(s));
    return 0;
}

struct session_store *
fleet_sessions_load(struct fleet *f)
{
    f->sessions = session_store_new(dropped, f);
    int64_t now = now_wall_ms();
    int64_t n = store_session_expire(f->st, now);
    int rc = n < 0 ? (int)n : store_session_list(f->st, now, restore_one, f);
    if (rc < 0)
        log_warnx("portal: cannot read the stored sessions: %s "
                  "(their users sign in again)",
                  strerror(-rc));
    /* The config may have changed while rescued was down. */
    fleet_sessions_recheck(f);
    return f->sessions;
}

int
fleet_session_new(struct fleet *f, const char *token, const char *project,
                  int64_t ttl_ms, char *id, const struct session **out)
{
    int rc = session_create(f->sessions, token, project, now_wall_ms(), ttl_ms,
                            id, out);
    if (rc < 0)
        return rc;
    const struct session *s = *out;
    struct store_session ps = {.id_hash = s->id_hash,
                               .token_hash = s->token_hash,
                               .csrf = s->csrf,
                               .project = s->project,
                               .expires_ms = s->expires_ms};
    rc = store_session_add(f->st, &ps);
    if (rc < 0) {
        /* Not kept: it would not survive a restart, so it is not made. */
        session_delete(f->sessions, id);
        explicit_bzero(id, SESSION_ID_LEN + 1);
        *out = NULL;
    }
    return rc;
}

static bool
unexpired(void *arg, const struct session *s)
{
    return s->expires_ms > *(const int64_t *)arg;
}

void
fleet_sessions_expire(struct fleet *f)
{
    int64_t now = now_wall_ms();
    session_filter(f->sessions, unexpired, &now);
}
