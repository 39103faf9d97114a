/* session: the portal's sign-in sessions (see session.h).  A flat array:
 * the store holds at most SESSION_MAX, and a lookup is one pass of
 * constant-time compares (an id is never compared with an early exit). */
#include "session.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session_store {
    struct session **v;
    size_t n, cap;
};

struct session_store *
session_store_new(void)
{
    return xcalloc(1, sizeof(struct session_store));
}

static void
session_free(struct session *s)
{
    if (!s)
        return;
    /* The token is a secret: do not leave it in freed memory. */
    explicit_bzero(s->token, strlen(s->token));
    free(s->token);
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

static void
remove_at(struct session_store *ss, size_t i)
{
    session_free(ss->v[i]);
    ss->v[i] = ss->v[--ss->n];
}

int
session_create(struct session_store *ss, const char *token, int64_t now_ms,
               int64_t ttl_ms, const struct session **out)
{
    struct session *s = xcalloc(1, sizeof(*s));
    int rc = random_hex(s->id, SESSION_ID_LEN / 2);
    if (rc == 0)
        rc = random_hex(s->csrf, SESSION_ID_LEN / 2);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->token = xstrdup(token);
    s->expires_ms = now_ms + ttl_ms;
    /* Expired sessions go first; when the store is still full, the one
     * that would end soonest makes room. */
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
    ss->v[ss->n++] = s;
    *out = s;
    return 0;
}

static bool
id_form(const char *id)
{
    if (!id || strlen(id) != SESSION_ID_LEN)
        return false;
    for (size_t i = 0; i < SESSION_ID_LEN; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

static ssize_t
find_index(struct session_store *ss, const char *id)
{
    ssize_t found = -1;
    if (!id_form(id))
        return -1;
    for (size_t i = 0; i < ss->n; i++)
        if (token_equal(id, ss->v[i]->id))
            found = (ssize_t)i;
    return found;
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
