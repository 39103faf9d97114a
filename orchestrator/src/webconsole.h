/* webconsole: the browser console's face (docs/design.md §9).  GET
 * /v1/servers/{id}/console/ws[?mode=watch] upgrades to a WebSocket (ws.h)
 * when the Origin is the Host's (or [ui] origin) and the subprotocols
 * offered are "rescued.console" and "ticket.<TICKET>" with a ticket the
 * fleet redeems for this server; anything else is refused before the
 * upgrade exactly like an unknown server (404).  Each connection is one
 * console_session (the rules Serial over SSH lives by): binary frames are
 * console bytes both ways, text frames JSON control messages (take_seat,
 * break, sysrq, nmi, resize in; role and notice out).
 *
 * On http and the loop; nothing blocks but console_session's recording
 * writes and the fleet's audit store. */
#ifndef RESCUED_WEBCONSOLE_H
#define RESCUED_WEBCONSOLE_H

#include <stddef.h>

struct http;
struct fleet;
struct webconsole;
struct console_session_cbs;

#define WEBCONSOLE_MAX_MSG (64 * 1024) /* a bigger message: close 1009 */

struct webconsole_config {
    struct fleet *fleet; /* redeems tickets */
    const struct console_session_cbs *cbs;
    void *cb_arg;
    int writer_idle_s;
    const char *record_dir; /* NULL: not recorded */
    int record_days;
    const char *origin; /* accepted besides the Host's; may be NULL */
};

/* Add the route to h.  cfg's strings are copied.  Free before http_free:
 * open sockets get a close frame (1001) and are handed back to http. */
struct webconsole *webconsole_register(struct http *h,
                                       const struct webconsole_config *cfg);
void webconsole_free(struct webconsole *w);
/* The fleet's "writable changed" for server, to its sessions. */
void webconsole_writable_changed(struct webconsole *w, const char *server);
/* Open WebSocket consoles (tests, status). */
size_t webconsole_count(const struct webconsole *w);

#endif
