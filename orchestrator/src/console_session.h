/* console_session: the rules a console user lives by, whatever carries the
 * bytes (sshd today, a WebSocket console later; docs/design.md, console).
 * A session is one user attached to one server's console as a viewer
 * (console.h).  The transport feeds it what the user typed
 * (console_session_input) and takes what the user should see through its
 * write callback; the session owns the rest:
 *
 *   - the writer seat: a non-read-only session takes it on attach; the
 *     former writer is told ("... took the writer seat; you are now
 *     watching") and keeps watching; only the writer's input reaches the
 *     console;
 *   - the read-only window: input is refused with the daemon's reason while
 *     writable() says no; console_session_writable_changed() (and a 1 s
 *     tick) tells a session that was refused when writing is allowed again;
 *   - the idle writer: after writer_idle_s without input the seat is
 *     released (0: never);
 *   - the menu, after CONSOLE_SESSION_MENU_KEY (Ctrl-]): b break, s KEY
 *     SysRq, n NMI (y to confirm), w take the writer seat, . disconnect,
 *     ? help; the menu key twice sends one;
 *   - break, SysRq and NMI: a serial break from the console source itself
 *     when it can, else the daemon's power callback;
 *   - notices to this user ("\r\n[rescued: ...]\r\n", in its own stream)
 *     and audit lines (console_attach, console_detach, console_takeover,
 *     console_break, console_sysrq, console_nmi, console_idle).
 *
 * Sessions of every transport know each other (one list in this module),
 * so a writer is told of a takeover whoever took the seat.  Single-threaded:
 * everything runs on the loop's thread; nothing here blocks. */
#ifndef RESCUED_CONSOLE_SESSION_H
#define RESCUED_CONSOLE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct loop;
struct console;
struct console_session;

#define CONSOLE_SESSION_MENU_KEY 0x1d /* Ctrl-] */

/* Who asks for a console.  Strings are borrowed for the call. */
struct console_who {
    enum console_who_kind {
        CONSOLE_WHO_SSH_KEY, /* fingerprint is set */
        CONSOLE_WHO_TOKEN,   /* an API token: admin, or project */
    } kind;
    const char *fingerprint; /* "SHA256:..." (SSH_KEY) */
    const char *project;     /* the token's project (TOKEN, not admin) */
    bool admin;              /* an admin token (TOKEN) */
    /* How audit lines name this user: "user=srv1 fp=SHA256:..." */
    const char *label;
};

enum console_power_op {
    CONSOLE_POWER_BREAK, /* serial break (QMP chardev-send-break, SOL) */
    CONSOLE_POWER_SYSRQ, /* key: one character */
    CONSOLE_POWER_NMI,
};

/* What a console face asks the daemon; the same for every transport.
 * Called from the loop; none may free a session.  arg is the cb_arg given
 * with them. */
struct console_session_cbs {
    /* May who open server's console?  true with a role in role ("admin",
     * "project:acme"...) to allow; false for a server that does not exist,
     * like for a wrong key.  Faces call this before making a session. */
    bool (*authorize)(void *arg, const char *server,
                      const struct console_who *who, char *role,
                      size_t rolelen);
    /* The server's console, or NULL (refused like an unknown server). */
    struct console *(*find_console)(void *arg, const char *server);
    /* May anyone type now?  false with a one-line reason in why during a
     * state change and its grace period.  NULL member: always writable. */
    bool (*writable)(void *arg, const char *server, char *why, size_t whylen);
    /* action: one of the audit actions above; detail says who
     * ("user=srv1 fp=SHA256:... addr=127.0.0.1:5555 role=writer"). */
    void (*audit)(void *arg, const char *server, const char *action,
                  const char *detail);
    /* Ask the power driver (asynchronous; 0 when requested or a negative
     * errno, e.g. -ENOTSUP).  key is NULL except for SysRq. */
    int (*power)(void *arg, const char *server, enum console_power_op op,
                 const char *key);
};

/* The transport's side.  arg is io_arg. */
struct console_session_io {
    /* Deliver bytes to the user: return how many were taken (0 when the
     * transport is full; it calls console_session_flush() when it has
     * room), or a negative errno when it is broken (the session then
     * calls close).  What is not taken waits in the viewer's bounded
     * queue (console.h). */
    ssize_t (*write)(void *arg, const void *data, size_t n);
    /* After a run of write() calls: a transport that holds bytes back may
     * send them now.  May be NULL. */
    void (*flushed)(void *arg);
    /* End the transport: the user asked (Ctrl-] .), the transport broke or
     * the console is gone.  Must not free the session from inside; free it
     * later (from the loop).  Input after this is ignored. */
    void (*close)(void *arg);
    /* Optional (the WebSocket console): notices as text of their own
     * instead of lines in the byte stream. */
    void (*notice)(void *arg, const char *text);
    /* Optional: where the user stands changed (attach, a takeover, the
     * idle release, the read-only window); reason is "" when writable. */
    void (*role)(void *arg, bool writer, bool read_only, const char *reason);
};

struct console_session_config {
    const char *server;
    const struct console_who *who; /* label is used in audit lines */
    const char *role;              /* authorize()'s answer */
    const char *addr;              /* the user's "HOST:PORT" */
    bool ro;                       /* a watcher that never writes */
    size_t replay;                 /* lines of scrollback to start with */
    int writer_idle_s;             /* release the seat after this; 0 off */
    /* Record what the user is shown as asciicast v2 (recording.h) under
     * this directory; NULL: no recording. */
    const char *record_dir;
    int record_days;       /* retention of recordings; 0: keep */
    const char *transport; /* "ssh" or "ws", in the recording's list */
};

/* Attach to find_console(server): replay, take the seat unless ro, audit
 * console_attach, tell the user where they stand, and write it out.  NULL
 * when the server has no console.  cfg's strings, cbs and io are copied. */
struct console_session *
console_session_new(struct loop *l, const struct console_session_config *cfg,
                    const struct console_session_cbs *cbs, void *cb_arg,
                    const struct console_session_io *io, void *io_arg);
/* Audit console_detach and leave the console.  Accepts NULL.  Never from
 * inside one of this session's io callbacks. */
void console_session_free(struct console_session *cs);

/* What the user typed: menu keys are acted on, the rest goes to the
 * console if this session may write (else a notice says why). */
void console_session_input(struct console_session *cs, const void *data,
                           size_t n);
/* Write what is queued for the user, as far as write() takes it. */
void console_session_flush(struct console_session *cs);
/* The daemon's writable() answer may have changed: a session told
 * "read-only" is told when writing is allowed again. */
void console_session_writable_changed(struct console_session *cs);

/* The menu's actions without the menu (the WebSocket console's control
 * messages): the same checks, audit lines and notices as Ctrl-] w, b,
 * s KEY and n y. */
void console_session_take_seat(struct console_session *cs);
void console_session_break(struct console_session *cs);
void console_session_sysrq(struct console_session *cs, char key);
void console_session_nmi(struct console_session *cs);
/* The number of this session's recording (0: none). */
int console_session_recording(const struct console_session *cs);

const char *console_session_server(const struct console_session *cs);
/* Does this session hold its console's writer seat? */
bool console_session_is_writer(const struct console_session *cs);

#endif
