/* sshd: Serial over SSH (docs/design.md §9).  `ssh -p PORT
 * SERVER@host` attaches to SERVER's console.  libssh 0.10 server API inside
 * our event loop: the bind fd and every session's fd are loop watchers; no
 * thread or process per session.  Public-key authentication only, granted
 * only on the signed attempt (SSH_PUBLICKEY_STATE_VALID), never on the
 * probe; an unknown server and a wrong key get the same refusal.  The host
 * key (ed25519) is made on first start and kept; libssh's global server
 * config is not read.
 *
 * User name: SERVER[.ro][.replay=N]   (replay default 24 lines)
 *
 * sshd owns the SSH side only: bind, accept, authentication (the key's
 * fingerprint as a console_who), the channel and its flow control (the
 * peer's window, POLLOUT).  Once the shell request comes, the bytes go both
 * ways through a console_session, which holds the rules: seat, menu,
 * read-only window, audit (console_session.h).
 *
 * sshd knows servers only through struct console_session_cbs, so it does
 * not depend on fleet.  Nothing here blocks. */
#ifndef RESCUED_SSHD_H
#define RESCUED_SSHD_H

#include <stdbool.h>
#include <stddef.h>

struct loop;
struct sshd;
struct console_session_cbs;

#define SSHD_DEFAULT_REPLAY 24
#define SSHD_DEFAULT_MAX_STARTUPS 10
#define SSHD_DEFAULT_MAX_STARTUPS_PER_SOURCE 3
#define SSHD_DEFAULT_LOGIN_GRACE_S 60
#define SSHD_DEFAULT_MAX_AUTH_TRIES 6

struct sshd_config {
    const char *listen;        /* "HOST:PORT"; port 0 picks one */
    const char *host_key_path; /* DATA_DIR/ssh_host_ed25519_key */
    int writer_idle_s;         /* drop the writer seat after this; 0 off */
    /* Like OpenSSH's MaxStartups (a fixed cap), LoginGraceTime and
     * MaxAuthTries; 0 takes the default (SSHD_DEFAULT_*).  A connection
     * past a cap is closed at accept, before any SSH byte. */
    int max_startups;            /* not yet authenticated, in all */
    int max_startups_per_source; /* ... from one address */
    int login_grace_s;           /* accept to an attached console */
    int max_auth_tries;          /* refused attempts, then disconnect */
    const char *record_dir;    /* recordings (console_session.h); NULL off */
    int record_days;
    const struct console_session_cbs *cbs; /* copied */
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

/* The daemon calls this when server's writable() answer may have changed
 * (state settled, grace over): viewers that were told "read-only" are told
 * that writing is allowed again. */
void sshd_writable_changed(struct sshd *d, const char *server);

/* Parse a user name "srv1.ro.replay=50" into server (out, at most 64
 * bytes), ro and replay.  false when malformed.  Exposed for tests. */
bool sshd_parse_user(const char *user, char *server, size_t serverlen, bool *ro,
                     int *replay);

#endif
