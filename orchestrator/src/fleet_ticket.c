/* fleet_ticket: the browser console's tickets, kept by the fleet so that
 * the face that issues them (api) and the face that redeems them
 * (webconsole) share them without knowing each other.  Memory only. */
#include "console_session.h"
#include "fleet.h"
#include "fleet_internal.h"
#include "ticket.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct console_who
who_of(const char *principal)
{
    struct console_who w = {.kind = CONSOLE_WHO_TOKEN, .label = principal};
    if (strcmp(principal, "admin") == 0)
        w.admin = true;
    else if (strncmp(principal, "project:", 8) == 0)
        w.project = principal + 8;
    return w;
}

int
fleet_console_ticket(struct fleet *f, const char *id, const char *principal,
                     char *out, size_t outlen, int64_t *expires_wall_s)
{
    char role[80];
    struct console_who w = who_of(principal);
    if (!fleet_console_authorize(f, id, &w, role, sizeof(role)))
        return -ENOENT;
    if (!f->tickets)
        f->tickets = ticket_store_new();
    int64_t now = now_mono_ms(), exp = 0;
    int r = ticket_issue(f->tickets, id, principal, now, out, outlen, &exp);
    if (r == 0 && expires_wall_s)
        *expires_wall_s = now_wall_s() + (exp - now) / 1000;
    return r;
}

bool
fleet_console_redeem(struct fleet *f, const char *id, const char *ticket,
                     char *principal, size_t len)
{
    char who[80] = "";
    if (!f->tickets || !ticket_redeem(f->tickets, ticket, id, NULL,
                                      now_mono_ms(), who, sizeof(who)))
        return false;
    /* Rights are asked again: a reload may have moved the server. */
    char role[80];
    struct console_who w = who_of(who);
    if (!fleet_console_authorize(f, id, &w, role, sizeof(role)))
        return false;
    strlcpy_s(principal, who, len);
    return true;
}
