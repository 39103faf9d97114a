#include "ticket.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ticket {
    char secret[TICKET_LEN + 1];
    char server[ID_MAX + 1];
    char principal[80];
    int64_t expires_ms;
};

struct ticket_store {
    struct ticket *v;
    size_t n, cap;
};

struct ticket_store *
ticket_store_new(void)
{
    return xcalloc(1, sizeof(struct ticket_store));
}

void
ticket_store_free(struct ticket_store *t)
{
    if (!t)
        return;
    explicit_bzero(t->v, t->cap * sizeof(*t->v));
    free(t->v);
    free(t);
}

static void
drop(struct ticket_store *t, size_t i)
{
    t->v[i] = t->v[--t->n];
    explicit_bzero(&t->v[t->n], sizeof(t->v[t->n]));
}

static void
prune(struct ticket_store *t, int64_t now_ms)
{
    for (size_t i = 0; i < t->n;)
        if (t->v[i].expires_ms <= now_ms)
            drop(t, i);
        else
            i++;
}

int
ticket_issue(struct ticket_store *t, const char *server, const char *principal,
             int64_t now_ms, char *out, size_t outlen, int64_t *expires_ms)
{
    if (outlen < TICKET_LEN + 1)
        return -EINVAL;
    prune(t, now_ms);
    if (t->n >= TICKET_MAX)
        return -EBUSY;
    char secret[TICKET_LEN + 1];
    if (random_hex(secret, TICKET_LEN / 2) < 0)
        return -EIO;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    struct ticket *k = &t->v[t->n++];
    memset(k, 0, sizeof(*k));
    strlcpy_s(k->secret, secret, sizeof(k->secret));
    explicit_bzero(secret, sizeof(secret));
    strlcpy_s(k->server, server, sizeof(k->server));
    strlcpy_s(k->principal, principal, sizeof(k->principal));
    k->expires_ms = now_ms + TICKET_TTL_MS;
    strlcpy_s(out, k->secret, outlen);
    if (expires_ms)
        *expires_ms = k->expires_ms;
    return 0;
}

bool
ticket_redeem(struct ticket_store *t, const char *ticket, const char *server,
              const char *principal, int64_t now_ms, char *principal_out,
              size_t outlen)
{
    prune(t, now_ms);
    if (!ticket || strlen(ticket) != TICKET_LEN)
        return false;
    for (size_t i = 0; i < t->n; i++) {
        if (!token_equal(ticket, t->v[i].secret))
            continue;
        bool ok = strcmp(t->v[i].server, server) == 0 &&
                  (!principal || strcmp(t->v[i].principal, principal) == 0);
        if (ok && principal_out)
            strlcpy_s(principal_out, t->v[i].principal, outlen);
        drop(t, i); /* one use, whatever it was tried for */
        return ok;
    }
    return false;
}

size_t
ticket_count(const struct ticket_store *t)
{
    return t->n;
}
