/* session: the portal's sign-in sessions (see session.h).  A flat array:
 * the store holds at most SESSION_MAX, and a lookup hashes the id and
 * makes one pass of constant-time compares (never an early exit). */
#include "session.h"
#include "util.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session_store {
    struct session **v;
    size_t n, cap;
    session_drop_cb *dropped;
    void *arg;
};

struct session_store *
session_store_new(session_drop_cb *dropped, void *arg)
{
    struct session_store *ss = xcalloc(1, sizeof(struct session_store));
    ss->dropped = dropped;
    ss->arg = arg;
    return ss;
}

static void
session_free(struct session *s)
{
    if (!s)
        return;
    free(s->project);
    explicit_bzero(s, sizeof(*s));
    free(s);
}

void
session_store_free(struct session_store *ss)
{
    if (!ss)
        return;
    for (size_t i = 0; i < ss->n; i++)
        session_free(ss->v[i]);
    free(ss->v);
    free(ss);
}

size_t
session_count(const struct session_store *ss)
{
    return ss->n;
}

void
session_hash(const char *secret, char out[SESSION_HASH_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char h[32];
    /* SHA-256 is always there in GnuTLS; on a failure (none known) the
     * hash is of no secret, and matches no 64-digit id's. */
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, strlen(secret), h) < 0)
        memset(h, 0, sizeof(h));
    for (size_t i = 0; i < sizeof(h); i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[SESSION_HASH_LEN] = '\0';
}

static void
remove_at(struct session_store *ss, size_t i)
{
    if (ss->dropped)
        ss->dropped(ss->arg, ss->v[i]->id_hash);
    session_free(ss->v[i]);
    ss->v[i] = ss->v[--ss->n];
}

/* Room for one more: expired sessions go first; when the store is still
 * full, the one that would end soonest. */
static void
make_room(struct session_store *ss, int64_t now_ms)
{
    for (size_t i = 0; i < ss->n;)
        if (ss->v[i]->expires_ms <= now_ms)
            remove_at(ss, i);
        else
            i++;
    if (ss->n >= SESSION_MAX) {
        size_t first = 0;
        for (size_t i = 1; i < ss->n; i++)
            if (ss->v[i]->expires_ms < ss->v[first]->expires_ms)
                first = i;
        remove_at(ss, first);
    }
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? ss->cap * 2 : 16;
        ss->v = xrealloc(ss->v, ss->cap * sizeof(*ss->v));
    }
}

int
session_create(struct session_store *ss, const char *token, const char *project,
               int64_t now_ms, int64_t ttl_ms, char id[SESSION_ID_LEN + 1],
               const struct session **out)
{
    int rc = random_hex(id, SESSION_ID_LEN / 2);
    struct session *s = xcalloc(1, sizeof(*s));
    if (rc == 0)
        rc = random_hex(s->csrf, SESSION_ID_LEN / 2);
    if (rc < 0) {
        free(s);
        return rc;
    }
    session_hash(id, s->id_hash);
    session_hash(token, s->token_hash);
    s->project = project ? xstrdup(project) : NULL;
    s->expires_ms = now_ms + ttl_ms;
    make_room(ss, now_ms);
    ss->v[ss->n++] = s;
    *out = s;
    return 0;
}

static bool
hex_form(const char *id, size_t len)
{
    if (!id || strlen(id) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

static bool
id_form(const char *id)
{
    return hex_form(id, SESSION_ID_LEN);
}

static ssize_t
find_hash(struct session_store *ss, const char *hash)
{
    ssize_t found = -1;
    for (size_t i = 0; i < ss->n; i++)
        if (token_equal(hash, ss->v[i]->id_hash))
            found = (ssize_t)i;
    return found;
}

static ssize_t
find_index(struct session_store *ss, const char *id)
{
    char hash[SESSION_HASH_LEN + 1];
    if (!id_form(id))
        return -1;
    session_hash(id, hash);
    return find_hash(ss, hash);
}

int
session_restore(struct session_store *ss, const struct session *s,
                int64_t now_ms)
{
    if (!hex_form(s->id_hash, SESSION_HASH_LEN) ||
        !hex_form(s->token_hash, SESSION_HASH_LEN) ||
        !hex_form(s->csrf, SESSION_ID_LEN))
        return -EINVAL;
    if (s->expires_ms <= now_ms)
        return -ESTALE;
    if (find_hash(ss, s->id_hash) >= 0)
        return -EEXIST;
    struct session *c = xcalloc(1, sizeof(*c));
    *c = *s;
    c->project = s->project ? xstrdup(s->project) : NULL;
    make_room(ss, now_ms);
    ss->v[ss->n++] = c;
    return 0;
}

const struct session *
session_find(struct session_store *ss, const char *id, int64_t now_ms)
{
    ssize_t i = find_index(ss, id);
    if (i < 0)
        return NULL;
    if (ss->v[i]->expires_ms <= now_ms) {
        remove_at(ss, (size_t)i);
        return NULL;
    }
    return ss->v[i];
}

bool
session_delete(struct session_store *ss, const char *id)
{
    ssize_t i = find_index(ss, id);
    if (i < 0)
        return false;
    remove_at(ss, (size_t)i);
    return true;
}

void
session_filter(struct session_store *ss,
               bool (*keep)(void *arg, const struct session *s), void *arg)
{
    for (size_t i = 0; i < ss->n;)
        if (!keep(arg, ss->v[i]))
            remove_at(ss, i);
        else
            i++;
}

bool
session_token_is(const struct session *s, const char *token)
{
    char hash[SESSION_HASH_LEN + 1];
    if (!token)
        return false;
    session_hash(token, hash);
    return token_equal(hash, s->token_hash);
}

bool
session_csrf_ok(const struct session *s, const char *header)
{
    return header && token_equal(header, s->csrf);
}

bool
session_cookie_id(const char *cookie, char out[SESSION_ID_LEN + 1])
{
    const size_t nlen = strlen(SESSION_COOKIE);
    const char *p = cookie;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t len = strcspn(p, ";");
        if (len > nlen && !strncmp(p, SESSION_COOKIE, nlen) && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = len - nlen - 1;
            while (vlen && v[vlen - 1] == ' ')
                vlen--;
            if (vlen == SESSION_ID_LEN) {
                memcpy(out, v, vlen);
                out[vlen] = '\0';
                if (id_form(out))
                    return true;
            }
        }
        p += len;
    }
    return false;
}
