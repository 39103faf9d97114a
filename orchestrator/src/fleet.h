/* fleet: each server's life.  Feeds events to the state machine, stores
 * every transition before acting on it, runs the actions through the power
 * drivers and the boot path, arms step timeouts and the console's
 * read-only window, and tells subscribers (the SSE stream, the console
 * faces) what happened.
 *
 * fleet.c holds the lifecycle; fleet_view.c the API's JSON view and the
 * metrics; fleet_boot.c the boot path's fetches.  Everything runs on the
 * loop.  Calls that change a server store it first (SQLite, one fsync);
 * fleet_overlay and console authorization also read key files. */
#ifndef RESCUED_FLEET_H
#define RESCUED_FLEET_H

#include "config.h"
#include "fsm.h"
#include "power.h"
#include "store.h"

#include <jansson.h>
#include <stdint.h>

struct loop;
struct fleet;
struct buf;

/* A rescue's ttl is at most a year; it brings at most FLEET_MAX_KEYS keys
 * (what the overlay adds to the project's). */
#define FLEET_MAX_TTL_S (365LL * 86400)
#define FLEET_MAX_KEYS 64

struct fleet_action {
    enum fsm_event event; /* FSM_EV_RESCUE ... FSM_EV_POWER_OFF */
    /* Instead of the event: an NMI, straight to the power driver (no
     * state change), asked of the facility's active node like the events
     * when it is another node.  At most once per ask, except when that
     * node dies between sending it and marking it done. */
    bool nmi;
    int64_t ttl_s;         /* rescue only; 0: none */
    const char **ssh_keys; /* rescue only: keys added to the project's */
    size_t nkeys;
    const char *actor; /* "admin" or "project:NAME", for the audit */
    /* The queued action (store_action_take) this runs, stored with its
     * change as the row's action_id; 0: asked on this node. */
    int64_t queued_id;
};

/* Takes ownership of cfg; st stays the caller's.  Resumes every server's
 * stored transition (re-arming deadlines, re-running a lost action). */
struct fleet *fleet_new(struct loop *l, struct config *cfg, struct store *st,
                        char *err, size_t errlen);
void fleet_free(struct fleet *f);
/* Swap in a new inventory (SIGHUP); takes ownership of cfg. */
void fleet_reload(struct fleet *f, struct config *cfg);

const struct config *fleet_config(const struct fleet *f);
struct store *fleet_store(struct fleet *f);

/* The API's view of one server (docs/design.md §2.2), new reference.
 * In fleet_view.c. */
json_t *fleet_server_json(struct fleet *f, const struct config_server *srv);
/* The same view as compact JSON text and a newline (what GET
 * /v1/servers/{id} answers), appended to out.  Kept per server and made
 * again only when what it shows changed (a hash of every input), so a
 * poll costs no JSON building.  0, or -ENOMEM. */
int fleet_server_json_text(struct fleet *f, const struct config_server *srv,
                           struct buf *out);

/* The verdict of fleet_action_async: 0 (the action was taken) or what
 * fleet_action returns, with the reason in err. */
typedef void fleet_action_cb(void *arg, int rc, const char *err);
/* fleet_action with the power pre-flight on the loop (an ipmi ping):
 * what needs no network is checked now (a refusal returned, as
 * fleet_action's, with cb never run); else 0, and cb(arg, ...) runs
 * later from the loop, once, after the state is checked again: the
 * action is taken or refused then.  a is copied. */
int fleet_action_async(struct fleet *f, const char *id,
                       const struct fleet_action *a, fleet_action_cb *cb,
                       void *arg, char *err, size_t errlen);
/* Run a user action.  Returns 0 (accepted: HTTP 202), -ENOENT (404),
 * -EINVAL (400: bad keys, bad ttl), -EBUSY (409: does not fit the state or
 * a pre-flight check failed), -EIO (503: the store refused the change,
 * nothing ran); err says why in words a user reads. */
int fleet_action(struct fleet *f, const char *id, const struct fleet_action *a,
                 char *err, size_t errlen);

/* The boot path, in fleet_boot.c.  Each fetch is an event for the
 * server's state machine, so `rescuectl events` shows the boot's own
 * timeline. */

/* GET or HEAD /boot/<mac>.ipxe from peer: the script for the server's
 * current target into out.  Returns 0, or -ENOENT for a MAC not in the
 * inventory.  A HEAD, or a fetch from an address that is not the server's
 * (the lease, the address of its boot), moves nothing. */
/* Before a boot-path request of the server with this live token (or,
 * token NULL, this MAC): 1 when its answer can be given now; 0 when a
 * change of the server's is still on its way to the store, and cb(arg, 0)
 * runs (from the loop) once it is stored or the server stopped: then ask
 * again; cb(arg, -ECANCELED) when the fleet is being freed.  A token
 * not live here is looked up in the store meanwhile (its answer kept for
 * the request's re-run: fleet_srv_of_token).  Always 1 with a local
 * store. */
int fleet_boot_settle(struct fleet *f, const char *token, const char *mac,
                      void (*cb)(void *arg, int rc), void *arg);
int fleet_boot_script(struct fleet *f, const char *mac, const char *peer,
                      bool head, struct buf *out);
/* The same for GET or HEAD /boot/<mac>.grub: a GRUB config (arm64 UEFI
 * servers, whose network loader is GRUB); the same states move. */
int fleet_boot_grub(struct fleet *f, const char *mac, const char *peer,
                    bool head, struct buf *out);
/* The rescue image files of a server of this arch ("x86_64", "aarch64"):
 * paths owned by the config, each NULL when not configured. */
void fleet_image_files(const struct fleet *f, const char *arch,
                       const char **kernel, const char **initrd,
                       const char **tools);
/* GET /images/<name>: the file's path (owned by the config), or NULL when
 * name is not one of the image files.  aarch64's are named
 * aarch64-<file name>. */
const char *fleet_image_path(struct fleet *f, const char *name);
/* The virtual CD of the boot of token (a server with boot =
 * virtualmedia), served at /media/TOKEN.iso; NULL when none. */
const char *fleet_vm_cd_path(struct fleet *f, const char *token);
/* The image file was opened for a fetch with ?token=T from peer: a live
 * token marks the kernel or initrd fetch of that server's boot, and the
 * first one binds the token to peer.  0 (serve it; also for no token, an
 * unknown one, or a HEAD, which moves nothing), or a refusal with err:
 * -EACCES (403: another address), -EBUSY (409: not this step), -EIO. */
int fleet_image_fetched(struct fleet *f, const char *name, const char *token,
                        const char *peer, bool head, char *err, size_t errlen);
/* GET /overlay/<token>.tar.gz from peer: the server's apkovl into out,
 * once per boot.  -ENOENT for a token that is not live; -EACCES, -EBUSY as
 * above; -EIO with err. */
int fleet_overlay(struct fleet *f, const char *token, const char *peer,
                  struct buf *out, char *err, size_t errlen);
/* POST /v1/phone-home/<token> from peer: the rescue OS is up; report is
 * its JSON object (ip, mac, ssh_host_keys, disks, md_arrays, nics).
 * Taken once, in rescue_booting, from the boot's address.  -ENOENT for a
 * token that is not live, -EACCES, -EBUSY as above, -EINVAL for a report
 * without ip. */
int fleet_phone_home(struct fleet *f, const char *token, const char *peer,
                     json_t *report, char *err, size_t errlen);

/* Serial over SSH: what sshd and the API need to know about a console. */
struct console;
/* The server's console, or NULL when it has none or does not exist. */
struct console *fleet_console(struct fleet *f, const char *id);
struct console_who;
/* May who open the server's console: an SSH key (by SHA256 fingerprint) in
 * the admin keys or the server's project's keys, or an API token that is
 * admin or of the server's project?  role gets "admin" or "project:NAME".
 * An unknown server answers false, like a wrong key. */
bool fleet_console_authorize(struct fleet *f, const char *id,
                             const struct console_who *who, char *role,
                             size_t rolelen);
/* Writing is refused while the server changes state and for readonly_grace
 * after it settles; why says until when. */
bool fleet_console_writable(struct fleet *f, const char *id, char *why,
                            size_t whylen);
/* An audit event: attach, detach, takeover, break, SysRq, NMI. */
void fleet_audit(struct fleet *f, const char *id, const char *actor,
                 const char *message);
/* NMI, SysRq KEY or a serial break through the power driver. */
int fleet_console_power(struct fleet *f, const char *id, enum power_op op,
                        const char *arg);
/* The event id after which the server's project may read its history
 * (0: all of it): a reload that moved it to another project stored an
 * event, and what came before belongs to the old project. */
int64_t fleet_project_since(struct fleet *f, const char *id);
/* The browser console's one-time tickets (ticket.h), in fleet_ticket.c.
 * Issue one for a caller who may open the server's console (principal
 * "admin" or "project:NAME"): 0 with the ticket and its expiry (wall
 * seconds), -ENOENT when the server is not the caller's, -EBUSY when too
 * many are live.  Redeem: true once for that server, with the principal
 * the ticket was issued to. */
int fleet_console_ticket(struct fleet *f, const char *id, const char *principal,
                         char *out, size_t outlen, int64_t *expires_wall_s);
bool fleet_console_redeem(struct fleet *f, const char *id, const char *ticket,
                          char *principal, size_t len);

/* Milliseconds until the read-only window ends (0: writable or busy). */
int64_t fleet_readonly_left_ms(struct fleet *f, const char *id);

/* Live events (SSE).  server NULL: every server.  cb runs from the loop
 * after the event is committed. */
typedef void fleet_event_cb(void *arg, const struct store_event *ev);
uint64_t fleet_subscribe(struct fleet *f, const char *server,
                         fleet_event_cb *cb, void *arg);
/* The console faces (sshd, a web console): cb runs from the loop when
 * fleet_console_writable() may have changed for server, on each transition
 * and when the read-only window after it ends; and after a reload, for
 * every server old and new, since who may reach it may have changed (a
 * move, a token or key removed): the faces check their sessions again.  The
 * fleet owns the timers.  fleet_unsubscribe() removes it. */
typedef void fleet_writable_cb(void *arg, const char *server);
uint64_t fleet_on_writable_changed(struct fleet *f, fleet_writable_cb *cb,
                                   void *arg);
/* Ends a subscription or a writable listener. */
void fleet_unsubscribe(struct fleet *f, uint64_t id);

/* The portal's sign-in sessions (session.h), the fleet's to free: the
 * API's cookie check and the portal's sign-in share them. */
struct session_store;
struct session_store *fleet_sessions(struct fleet *f);
/* In fleet_session.c: they are kept in the store too, so a restart signs
 * no one out.  A new session for token (of project, NULL: the admin),
 * stored before it is handed out: 0 with its id (the cookie's, into
 * id[SESSION_ID_LEN + 1]) and *out,
 * or a negative errno (nothing made).  [commit] */
struct session;
int fleet_session_new(struct fleet *f, const char *token, const char *project,
                      int64_t ttl_ms, char *id, const struct session **out);
/* The token the config has now for the session's project (or the
 * admin's) if it is the one the session was made with, else NULL (revoked
 * or gone: the session is worth nothing).  [none] */
const char *fleet_session_token(struct fleet *f, const struct session *s);

/* Prometheus text: servers per state, transitions and failures per step.
 * In fleet_view.c. */
void fleet_metrics(struct fleet *f, struct buf *out);

#endif
