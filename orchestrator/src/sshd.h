/* sshd: Serial over SSH (DESIGN.md).  `ssh -p PORT SERVER@host` attaches
 * to SERVER's console.  libssh 0.10 server API inside our event loop: the
 * bind fd and every session's fd are loop watchers; no thread or process
 * per session.  Public-key authentication only, granted only on the
 * signed attempt (SSH_PUBLICKEY_STATE_VALID), never on the probe; an
 * unknown server and a wrong key get the same refusal.  The host key
 * (ed25519) is made on first start and kept; libssh's global server config
 * is not read.
 *
 * User name: SERVER[.ro][.replay=N]   (replay default 24 lines)
 *
 * A non-.ro session takes the writer seat on attach; the former writer is
 * told and keeps watching.  Ctrl-] then: b break, s KEY SysRq, n NMI (then
 * y to confirm), w take the writer seat, . disconnect, ? help; Ctrl-]
 * twice sends one Ctrl-].
 *
 * sshd knows servers only through struct sshd_cbs, so it does not depend
 * on fleet. */
#ifndef RESCUED_SSHD_H
#define RESCUED_SSHD_H

#include <stdbool.h>
#include <stddef.h>

#include <libssh/libssh.h>

struct loop;
struct console;
struct sshd;

#define SSHD_DEFAULT_REPLAY 24
#define SSHD_MENU_KEY 0x1d /* Ctrl-] */

enum sshd_power_op {
    SSHD_POWER_BREAK, /* serial break (QMP chardev-send-break, SOL) */
    SSHD_POWER_SYSRQ, /* key: one character */
    SSHD_POWER_NMI,
};

/* Everything sshd asks the daemon.  Called from the loop; none may call
 * sshd_free().  arg is sshd_config.cb_arg. */
struct sshd_cbs {
    /* May this key open server's console?  Called for the probe and for
     * the signed attempt; return true and write a role into role_out
     * (at most 32 bytes: "admin", "project:acme"...) to allow.  Must also
     * return false for a server that does not exist. */
    bool (*authorize)(void *arg, const char *server, ssh_key pubkey,
                      const char *fingerprint, char *role_out);
    /* The server's console, or NULL (then the session is refused with the
     * same words as an unknown server). */
    struct console *(*find_console)(void *arg, const char *server);
    /* May anyone type now?  false with a one-line reason in why during a
     * state change and its grace period.  NULL member: always writable. */
    bool (*writable)(void *arg, const char *server, char *why, size_t whylen);
    /* For the audit log: action is one of "console_attach",
     * "console_detach", "console_takeover", "console_break",
     * "console_sysrq", "console_nmi", "console_idle"; detail says who
     * ("user=srv1 fp=SHA256:... addr=127.0.0.1:5555 role=writer"). */
    void (*audit)(void *arg, const char *server, const char *action,
                  const char *detail);
    /* Ask the power driver (asynchronous; return 0 when requested or a
     * negative errno, e.g. -ENOTSUP).  key is NULL except for SysRq. */
    int (*power)(void *arg, const char *server, enum sshd_power_op op,
                 const char *key);
};

struct sshd_config {
    const char *listen;         /* "HOST:PORT"; port 0 picks one */
    const char *host_key_path;  /* DATA_DIR/ssh_host_ed25519_key */
    int writer_idle_s;          /* drop the writer seat after this; 0 off */
    const struct sshd_cbs *cbs; /* copied */
    void *cb_arg;
};

/* Load or make the host key, bind and listen, and watch the bind fd.  NULL
 * with a reason in err. */
struct sshd *sshd_new(struct loop *l, const struct sshd_config *cfg, char *err,
                      size_t errlen);
/* Closes every session (their consoles' viewers are detached first) and
 * the listener.  Accepts NULL. */
void sshd_free(struct sshd *d);

/* The port actually bound (useful with port 0). */
int sshd_port(const struct sshd *d);
/* Number of open SSH connections (any stage). */
size_t sshd_session_count(const struct sshd *d);

/* The daemon calls this when server's writable() answer may have changed
 * (state settled, grace over): viewers that were told "read-only" are told
 * that writing is allowed again. */
void sshd_writable_changed(struct sshd *d, const char *server);

/* Parse a user name "srv1.ro.replay=50" into server (out, at most 64
 * bytes), ro and replay.  false when malformed.  Exposed for tests. */
bool sshd_parse_user(const char *user, char *server, size_t serverlen, bool *ro,
                     int *replay);

#endif
