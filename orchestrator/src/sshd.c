#include "sshd.h"
#include "console_session.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh/callbacks.h>
#include <libssh/server.h>

#define SWEEP_MS 1000
/* accept failed for want of descriptors or memory: stop watching the
 * bind fd (it stays readable: the loop would spin) and try again after
 * this, doubling up to the most. */
#define ACCEPT_BACKOFF_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1000

struct session {
    struct sshd *d;
    struct session *next;
    ssh_session s;
    ssh_event ev; /* this session alone, after key exchange */
    int fd;
    uint32_t events; /* fd's epoll mask as last set */
    bool kex_done, authed, dead;
    int64_t started_ms;
    int auth_fails;
    char host[INET6_ADDRSTRLEN]; /* the peer's address, for the caps */
    /* libssh keeps these by pointer: they live as long as the session */
    struct ssh_server_callbacks_struct scb;
    struct ssh_channel_callbacks_struct ccb;
    ssh_channel ch;
    char user[128], server[64], role[40], fp[128], addr[64];
    bool ro;
    int replay;
    struct console_session *cs; /* once the shell request attached it */
};

struct sshd {
    struct loop *l;
    struct console_session_cbs cbs;
    void *cb_arg;
    int writer_idle_s;
    int max_startups, max_startups_per_source, login_grace_s, max_auth_tries;
    char *record_dir;
    int record_days;
    ssh_bind bind;
    int bind_fd, port;
    struct session *sessions;
    uint64_t sweep_timer, reap_timer;
    uint64_t backoff_timer; /* while accept is paused */
    int backoff_ms;
    int in_libssh; /* inside a libssh call that may run our callbacks */
};

/* --- helpers ------------------------------------------------------------ */

bool
sshd_parse_user(const char *user, char *server, size_t serverlen, bool *ro,
                int *replay)
{
    *ro = false;
    *replay = SSHD_DEFAULT_REPLAY;
    const char *dot = strchr(user, '.');
    size_t sl = dot ? (size_t)(dot - user) : strlen(user);
    if (sl == 0 || sl >= serverlen)
        return false;
    memcpy(server, user, sl);
    server[sl] = '\0';
    while (dot) {
        const char *opt = dot + 1;
        dot = strchr(opt, '.');
        size_t ol = dot ? (size_t)(dot - opt) : strlen(opt);
        if (ol == 2 && strncmp(opt, "ro", 2) == 0) {
            *ro = true;
        } else if (ol > 7 && strncmp(opt, "replay=", 7) == 0) {
            long n = 0;
            for (size_t i = 7; i < ol; i++) {
                if (opt[i] < '0' || opt[i] > '9' || n > 1000000)
                    return false;
                n = n * 10 + (opt[i] - '0');
            }
            *replay = (int)n;
        } else {
            return false;
        }
    }
    return true;
}

static int64_t reap_cb(struct loop *l, void *arg);

static void
session_kill(struct session *ss)
{
    ss->dead = true;
    if (!ss->d->reap_timer)
        ss->d->reap_timer = loop_add_timer(ss->d->l, 0, reap_cb, ss->d);
}

/* Run libssh's poll of this session's socket (no waiting); false when the
 * session is over. */
static bool
session_dopoll(struct session *ss)
{
    ss->d->in_libssh++;
    int r = ssh_event_dopoll(ss->ev, 0);
    ss->d->in_libssh--;
    if (ss->dead)
        return false;
    if (r == SSH_ERROR ||
        (ssh_get_status(ss->s) & (SSH_CLOSED | SSH_CLOSED_ERROR))) {
        session_kill(ss);
        return false;
    }
    return true;
}

static void
session_update_events(struct session *ss)
{
    if (ss->dead || ss->fd < 0)
        return;
    /* libssh waits for POLLOUT after every send, even one that left
     * nothing buffered, and holds the next packet until it comes.  One
     * poll now lets it see the socket writable (and send what it holds),
     * where EPOLLOUT would cost two epoll_ctl and a loop pass per echoed
     * keystroke; only a full socket still needs EPOLLOUT.  Not from inside
     * libssh's callbacks: the pass that runs them ends here anyway. */
    if (ss->ev && ss->d->in_libssh == 0 &&
        (ssh_get_poll_flags(ss->s) & SSH_WRITE_PENDING) && !session_dopoll(ss))
        return;
    uint32_t ev = EPOLLIN;
    if (ssh_get_poll_flags(ss->s) & SSH_WRITE_PENDING)
        ev |= EPOLLOUT;
    if (ev != ss->events && loop_mod_fd(ss->d->l, ss->fd, ev) == 0)
        ss->events = ev;
}

/* --- the console session's transport ------------------------------------ */

/* As much as the peer's window allows; console_session keeps the rest in
 * the viewer's bounded queue until the window opens (cb_write_wontblock). */
static ssize_t
io_write(void *arg, const void *data, size_t n)
{
    struct session *ss = arg;
    if (ss->dead || !ss->ch)
        return 0;
    uint32_t win = ssh_channel_window_size(ss->ch);
    if (win == 0)
        return 0;
    if (n > win)
        n = win;
    int w = ssh_channel_write(ss->ch, data, (uint32_t)n);
    if (w == SSH_ERROR)
        return -EIO;
    return w > 0 ? w : 0;
}

static void
io_flushed(void *arg)
{
    session_update_events(arg);
}

static void
io_close(void *arg)
{
    session_kill(arg);
}

static const struct console_session_io session_io = {
    .write = io_write,
    .flushed = io_flushed,
    .close = io_close,
};

static void
session_flush(struct session *ss)
{
    if (!ss->dead && ss->cs)
        console_session_flush(ss->cs);
}

/* --- libssh callbacks --------------------------------------------------- */

static int
cb_channel_data(ssh_session s, ssh_channel ch, void *data, uint32_t len,
                int is_stderr, void *ud)
{
    (void)s;
    (void)ch;
    (void)is_stderr;
    struct session *ss = ud;
    if (ss->cs && !ss->dead)
        console_session_input(ss->cs, data, len);
    return (int)len;
}

static void
cb_channel_close(ssh_session s, ssh_channel ch, void *ud)
{
    (void)s;
    (void)ch;
    session_kill(ud);
}

static int
cb_pty_request(ssh_session s, ssh_channel ch, const char *term, int w, int h,
               int pw, int ph, void *ud)
{
    (void)s, (void)ch, (void)term, (void)w, (void)h, (void)pw, (void)ph;
    (void)ud;
    return 0;
}

/* Accepted and ignored: a serial console has no window size. */
static int
cb_window_change(ssh_session s, ssh_channel ch, int w, int h, int pw, int ph,
                 void *ud)
{
    (void)s, (void)ch, (void)w, (void)h, (void)pw, (void)ph, (void)ud;
    return 0;
}

static int
cb_env_request(ssh_session s, ssh_channel ch, const char *name,
               const char *value, void *ud)
{
    (void)s, (void)ch, (void)name, (void)value, (void)ud;
    return 0;
}

static int
cb_write_wontblock(ssh_session s, ssh_channel ch, uint32_t bytes, void *ud)
{
    (void)s, (void)ch, (void)bytes;
    session_flush(ud);
    return 0;
}

static int
cb_shell_request(ssh_session s, ssh_channel ch, void *ud)
{
    (void)s;
    (void)ch;
    struct session *ss = ud;
    if (ss->cs)
        return -1; /* one console per connection */
    char label[sizeof(ss->user) + sizeof(ss->fp) + 16];
    snprintf(label, sizeof(label), "user=%s fp=%s", ss->user, ss->fp);
    struct console_who who = {
        .kind = CONSOLE_WHO_SSH_KEY, .fingerprint = ss->fp, .label = label};
    struct console_session_config cfg = {.server = ss->server,
                                         .who = &who,
                                         .role = ss->role,
                                         .addr = ss->addr,
                                         .ro = ss->ro,
                                         .replay = (size_t)ss->replay,
                                         .writer_idle_s = ss->d->writer_idle_s,
                                         .record_dir = ss->d->record_dir,
                                         .record_days = ss->d->record_days,
                                         .transport = "ssh"};
    ss->cs = console_session_new(ss->d->l, &cfg, &ss->d->cbs, ss->d->cb_arg,
                                 &session_io, ss);
    if (!ss->cs)
        return -1;
    log_info("sshd: %s attached to %s from %s (%s)", ss->fp, ss->server,
             ss->addr, ss->ro ? "watcher" : "writer");
    return 0;
}

static int
cb_exec_request(ssh_session s, ssh_channel ch, const char *cmd, void *ud)
{
    (void)s, (void)ch, (void)cmd, (void)ud;
    return -1; /* a console, not a shell */
}

static ssh_channel
cb_channel_open(ssh_session s, void *ud)
{
    struct session *ss = ud;
    if (!ss->authed || ss->ch)
        return NULL;
    ss->ch = ssh_channel_new(s);
    if (!ss->ch)
        return NULL;
    memset(&ss->ccb, 0, sizeof(ss->ccb));
    ss->ccb.userdata = ss;
    ss->ccb.channel_data_function = cb_channel_data;
    ss->ccb.channel_close_function = cb_channel_close;
    ss->ccb.channel_pty_request_function = cb_pty_request;
    ss->ccb.channel_pty_window_change_function = cb_window_change;
    ss->ccb.channel_env_request_function = cb_env_request;
    ss->ccb.channel_shell_request_function = cb_shell_request;
    ss->ccb.channel_exec_request_function = cb_exec_request;
    ss->ccb.channel_write_wontblock_function = cb_write_wontblock;
    ssh_callbacks_init(&ss->ccb);
    ssh_set_channel_callbacks(ss->ch, &ss->ccb);
    return ss->ch;
}

/* One more refused attempt; at max_auth_tries the connection goes (the
 * client sees it closed, as OpenSSH's "Too many authentication
 * failures"). */
static int
auth_refused(struct session *ss)
{
    ss->auth_fails++;
    if (ss->d->max_auth_tries > 0 && ss->auth_fails >= ss->d->max_auth_tries &&
        !ss->dead) {
        log_info("sshd: %s: %d authentication attempts refused, disconnecting",
                 ss->addr, ss->auth_fails);
        session_kill(ss);
    }
    return SSH_AUTH_DENIED;
}

/* Passwords are never accepted, and count as refused attempts. */
static int
cb_auth_password(ssh_session s, const char *user, const char *password,
                 void *ud)
{
    (void)s, (void)user, (void)password;
    return auth_refused(ud);
}

/* Called for the probe (state NONE: answer "this key would do") and for
 * the signed attempt (VALID: grant).  An unknown server and a key that is
 * not allowed take the same path to SSH_AUTH_DENIED. */
static int
cb_auth_pubkey(ssh_session s, const char *user, struct ssh_key_struct *pubkey,
               char state, void *ud)
{
    (void)s;
    struct session *ss = ud;
    if (ss->dead)
        return SSH_AUTH_DENIED;
    if (state != SSH_PUBLICKEY_STATE_NONE && state != SSH_PUBLICKEY_STATE_VALID)
        return auth_refused(ss);
    char server[64], role[40] = "", fp[128] = "";
    bool ro;
    int replay;
    if (!sshd_parse_user(user, server, sizeof(server), &ro, &replay))
        return auth_refused(ss);
    unsigned char *hash = NULL;
    size_t hlen = 0;
    if (ssh_get_publickey_hash(pubkey, SSH_PUBLICKEY_HASH_SHA256, &hash,
                               &hlen) == 0) {
        char *f =
            ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
        if (f)
            strlcpy_s(fp, f, sizeof(fp));
        ssh_string_free_char(f);
        ssh_clean_pubkey_hash(&hash);
    }
    struct sshd *d = ss->d;
    struct console_who who = {.kind = CONSOLE_WHO_SSH_KEY, .fingerprint = fp};
    bool ok = d->cbs.authorize &&
              d->cbs.authorize(d->cb_arg, server, &who, role, sizeof(role)) &&
              d->cbs.find_console && d->cbs.find_console(d->cb_arg, server);
    if (!ok) {
        if (state == SSH_PUBLICKEY_STATE_VALID)
            log_info("sshd: refused %s for %s from %s", fp, user, ss->addr);
        return auth_refused(ss);
    }
    if (state == SSH_PUBLICKEY_STATE_VALID) {
        ss->authed = true;
        strlcpy_s(ss->user, user, sizeof(ss->user));
        strlcpy_s(ss->server, server, sizeof(ss->server));
        strlcpy_s(ss->role, role[0] ? role : "user", sizeof(ss->role));
        strlcpy_s(ss->fp, fp, sizeof(ss->fp));
        ss->ro = ro;
        ss->replay = replay;
    }
    return SSH_AUTH_SUCCESS;
}

/* --- sessions ----------------------------------------------------------- */

static void
session_free(struct session *ss)
{
    struct sshd *d = ss->d;
    console_session_free(ss->cs);
    ss->cs = NULL;
    if (ss->fd >= 0)
        loop_del_fd(d->l, ss->fd);
    if (ss->ev) {
        ssh_event_remove_session(ss->ev, ss->s);
        ssh_event_free(ss->ev);
    }
    if (ss->ch && ssh_channel_is_open(ss->ch)) {
        ssh_channel_request_send_exit_status(ss->ch, 0);
        ssh_channel_send_eof(ss->ch);
        ssh_channel_close(ss->ch);
    }
    ssh_disconnect(ss->s);
    ssh_free(ss->s);
    free(ss);
}

static void
reap(struct sshd *d)
{
    struct session **pp = &d->sessions;
    while (*pp) {
        struct session *ss = *pp;
        if (ss->dead) {
            *pp = ss->next;
            session_free(ss);
        } else {
            pp = &ss->next;
        }
    }
}

static int64_t
reap_cb(struct loop *l, void *arg)
{
    (void)l;
    struct sshd *d = arg;
    d->reap_timer = 0;
    reap(d);
    return -1;
}

static void
session_event(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct session *ss = arg;
    if (ss->dead)
        return;
    if (!ss->kex_done) {
        ss->d->in_libssh++;
        int r = ssh_handle_key_exchange(ss->s);
        ss->d->in_libssh--;
        if (r == SSH_AGAIN) {
            session_update_events(ss);
            return;
        }
        if (r != SSH_OK) {
            log_debug("sshd: key exchange with %s: %s", ss->addr,
                      ssh_get_error(ss->s));
            session_kill(ss);
            return;
        }
        ss->kex_done = true;
        ss->ev = ssh_event_new();
        if (!ss->ev || ssh_event_add_session(ss->ev, ss->s) != SSH_OK) {
            session_kill(ss);
            return;
        }
    }
    if (!session_dopoll(ss))
        return;
    session_flush(ss);
}

static void bind_event(struct loop *l, int fd, uint32_t events, void *arg);

static int64_t
backoff_cb(struct loop *l, void *arg)
{
    struct sshd *d = arg;
    d->backoff_timer = 0;
    if (loop_add_fd(l, d->bind_fd, EPOLLIN, bind_event, d) < 0)
        log_warnx("sshd: cannot watch the listening socket again");
    return -1;
}

/* Out of descriptors (or memory): the pending connection stays in the
 * backlog, the bind fd readable; pause rather than spin on it. */
static void
accept_back_off(struct sshd *d, int err)
{
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : ACCEPT_BACKOFF_MS;
    if (d->backoff_ms > ACCEPT_BACKOFF_MAX_MS)
        d->backoff_ms = ACCEPT_BACKOFF_MAX_MS;
    if (d->backoff_ms == ACCEPT_BACKOFF_MS)
        log_warnx("sshd: accept: %s: pausing new connections", strerror(err));
    loop_del_fd(d->l, d->bind_fd);
    d->backoff_timer = loop_add_timer(d->l, d->backoff_ms, backoff_cb, d);
}

/* The peer's address into host; false if it cannot be read. */
static bool
peer_host(int fd, char *host, size_t len, int *port)
{
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    *port = 0;
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) < 0)
        return false;
    if (sa.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&sa;
        inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)len);
        *port = ntohs(in->sin_port);
    } else if (sa.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)len);
        *port = ntohs(in6->sin6_port);
    } else {
        return false;
    }
    return true;
}

/* MaxStartups: room for one more connection not yet authenticated, in
 * all and from host? */
static bool
startup_allowed(struct sshd *d, const char *host)
{
    int all = 0, mine = 0;
    for (struct session *ss = d->sessions; ss; ss = ss->next) {
        if (ss->dead || ss->authed)
            continue;
        all++;
        mine += !strcmp(ss->host, host);
    }
    if (d->max_startups > 0 && all >= d->max_startups) {
        log_info("sshd: %s: %d connections not yet authenticated (the most), "
                 "refused",
                 host, all);
        return false;
    }
    if (d->max_startups_per_source > 0 && mine >= d->max_startups_per_source) {
        log_info("sshd: %s: %d connections not yet authenticated from there "
                 "(the most), refused",
                 host, mine);
        return false;
    }
    return true;
}

static void
bind_event(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    struct sshd *d = arg;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
            accept_back_off(d, e);
        else if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR)
            log_debug("sshd: accept: %s", strerror(e));
        return;
    }
    d->backoff_ms = 0;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    peer_host(cfd, host, sizeof(host), &port);
    if (!startup_allowed(d, host)) {
        close(cfd);
        return;
    }
    ssh_session s = ssh_new();
    if (!s) {
        close(cfd);
        return;
    }
    /* libssh owns cfd from here: ssh_free closes it. */
    if (ssh_bind_accept_fd(d->bind, s, cfd) != SSH_OK) {
        log_debug("sshd: accept: %s", ssh_get_error(d->bind));
        ssh_free(s);
        return;
    }
    struct session *ss = xcalloc(1, sizeof(*ss));
    ss->d = d;
    ss->s = s;
    ss->fd = ssh_get_fd(s);
    ss->started_ms = now_mono_ms();
    /* A console is interactive: one keystroke, one packet, no Nagle wait
     * (OpenSSH's sshd does the same for interactive sessions). */
    int one = 1;
    setsockopt(ss->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    strlcpy_s(ss->host, host, sizeof(ss->host));
    snprintf(ss->addr, sizeof(ss->addr), "%s:%d", host, port);
    strlcpy_s(ss->fp, "-", sizeof(ss->fp));
    strlcpy_s(ss->role, "-", sizeof(ss->role));

    ss->scb.userdata = ss;
    ss->scb.auth_pubkey_function = cb_auth_pubkey;
    ss->scb.auth_password_function = cb_auth_password;
    ss->scb.channel_open_request_session_function = cb_channel_open;
    ssh_callbacks_init(&ss->scb);
    ssh_set_server_callbacks(s, &ss->scb);
    ssh_set_auth_methods(s, SSH_AUTH_METHOD_PUBLICKEY);
    ssh_set_blocking(s, 0);

    ss->next = d->sessions;
    d->sessions = ss;
    ss->events = EPOLLIN;
    if (loop_add_fd(l, ss->fd, EPOLLIN, session_event, ss) < 0) {
        session_kill(ss);
        return;
    }
    /* Sends our banner and starts the key exchange. */
    session_event(l, ss->fd, 0, ss);
}

static int64_t
sweep_cb(struct loop *l, void *arg)
{
    (void)l;
    struct sshd *d = arg;
    int64_t now = now_mono_ms();
    for (struct session *ss = d->sessions; ss; ss = ss->next) {
        if (ss->dead)
            continue;
        if (!ss->cs &&
            now - ss->started_ms > (int64_t)d->login_grace_s * 1000) {
            log_info("sshd: %s: no console attached within %d s, "
                     "disconnecting",
                     ss->addr, d->login_grace_s);
            session_kill(ss);
        }
    }
    return SWEEP_MS;
}

/* --- public ------------------------------------------------------------- */

static int
load_host_key(const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return 0;
    ssh_key key = NULL;
    char *b64 = NULL;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK ||
        ssh_pki_export_privkey_base64(key, NULL, NULL, NULL, &b64) != SSH_OK) {
        snprintf(err, errlen, "cannot make an ed25519 host key");
        ssh_key_free(key);
        return -EIO;
    }
    int r = write_file_atomic(path, b64, strlen(b64), 0600);
    ssh_string_free_char(b64);
    ssh_key_free(key);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    log_info("sshd: made host key %s", path);
    return 0;
}

struct sshd *
sshd_new(struct loop *l, const struct sshd_config *cfg, char *err,
         size_t errlen)
{
    const char *colon = cfg->listen ? strrchr(cfg->listen, ':') : NULL;
    if (!colon || colon == cfg->listen) {
        snprintf(err, errlen, "%s: expected HOST:PORT",
                 cfg->listen ? cfg->listen : "");
        return NULL;
    }
    char host[128];
    size_t hl = (size_t)(colon - cfg->listen);
    if (cfg->listen[0] == '[' && hl >= 2 && cfg->listen[hl - 1] == ']')
        snprintf(host, sizeof(host), "%.*s", (int)hl - 2, cfg->listen + 1);
    else
        snprintf(host, sizeof(host), "%.*s", (int)hl, cfg->listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err, errlen, "%s: bad port", cfg->listen);
        return NULL;
    }
    if (load_host_key(cfg->host_key_path, err, errlen) < 0)
        return NULL;

    struct sshd *d = xcalloc(1, sizeof(*d));
    d->l = l;
    if (cfg->cbs)
        d->cbs = *cfg->cbs;
    d->cb_arg = cfg->cb_arg;
    d->writer_idle_s = cfg->writer_idle_s;
#define OR_DEFAULT(v, def) ((v) != 0 ? (v) : (def)) /* < 0: no limit */
    d->max_startups = OR_DEFAULT(cfg->max_startups, SSHD_DEFAULT_MAX_STARTUPS);
    d->max_startups_per_source = OR_DEFAULT(
        cfg->max_startups_per_source, SSHD_DEFAULT_MAX_STARTUPS_PER_SOURCE);
    d->login_grace_s =
        OR_DEFAULT(cfg->login_grace_s, SSHD_DEFAULT_LOGIN_GRACE_S);
    d->max_auth_tries =
        OR_DEFAULT(cfg->max_auth_tries, SSHD_DEFAULT_MAX_AUTH_TRIES);
#undef OR_DEFAULT
    d->record_dir = cfg->record_dir ? xstrdup(cfg->record_dir) : NULL;
    d->record_days = cfg->record_days;
    d->bind_fd = -1;
    d->bind = ssh_bind_new();
    if (!d->bind) {
        snprintf(err, errlen, "ssh_bind_new failed");
        goto out_free;
    }
    bool no = false;
    int iport = (int)port;
    if (ssh_bind_options_set(d->bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no) <
            0 ||
        ssh_bind_options_set(d->bind, SSH_BIND_OPTIONS_BINDADDR, host) < 0 ||
        ssh_bind_options_set(d->bind, SSH_BIND_OPTIONS_BINDPORT, &iport) < 0 ||
        ssh_bind_options_set(d->bind, SSH_BIND_OPTIONS_HOSTKEY,
                             cfg->host_key_path) < 0) {
        snprintf(err, errlen, "sshd options: %s", ssh_get_error(d->bind));
        goto out_bind;
    }
    if (ssh_bind_listen(d->bind) < 0) {
        snprintf(err, errlen, "%s: %s", cfg->listen, ssh_get_error(d->bind));
        goto out_bind;
    }
    d->bind_fd = ssh_bind_get_fd(d->bind);
    fd_set_nonblock(d->bind_fd);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    if (getsockname(d->bind_fd, (struct sockaddr *)&sa, &sl) == 0)
        d->port = ntohs(sa.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&sa)->sin6_port
                            : ((struct sockaddr_in *)&sa)->sin_port);
    int r = loop_add_fd(l, d->bind_fd, EPOLLIN, bind_event, d);
    if (r < 0) {
        snprintf(err, errlen, "loop: %s", strerror(-r));
        goto out_bind;
    }
    d->sweep_timer = loop_add_timer(l, SWEEP_MS, sweep_cb, d);
    log_info("sshd: Serial over SSH on %s (port %d)", cfg->listen, d->port);
    return d;

out_bind:
    ssh_bind_free(d->bind);
out_free:
    free(d->record_dir);
    free(d);
    return NULL;
}

void
sshd_free(struct sshd *d)
{
    if (!d)
        return;
    for (struct session *ss = d->sessions; ss; ss = ss->next)
        ss->dead = true;
    reap(d);
    loop_del_timer(d->l, d->sweep_timer);
    loop_del_timer(d->l, d->reap_timer);
    loop_del_timer(d->l, d->backoff_timer);
    if (d->bind_fd >= 0)
        loop_del_fd(d->l, d->bind_fd);
    ssh_bind_free(d->bind);
    free(d->record_dir);
    free(d);
}

int
sshd_port(const struct sshd *d)
{
    return d->port;
}

/* Does the key that logged ss in still open its server (a reload may have
 * removed the key, moved the server or dropped it)? */
static bool
session_still_allowed(struct session *ss)
{
    struct sshd *d = ss->d;
    char role[40];
    struct console_who who = {.kind = CONSOLE_WHO_SSH_KEY,
                              .fingerprint = ss->fp};
    return d->cbs.authorize &&
           d->cbs.authorize(d->cb_arg, ss->server, &who, role, sizeof(role)) &&
           d->cbs.find_console && d->cbs.find_console(d->cb_arg, ss->server);
}

void
sshd_writable_changed(struct sshd *d, const char *server)
{
    for (struct session *ss = d->sessions; ss; ss = ss->next) {
        if (ss->dead || !ss->authed || strcmp(ss->server, server) != 0)
            continue;
        if (!session_still_allowed(ss)) {
            log_info("sshd: %s: %s no longer opens it; closing %s's session",
                     server, ss->fp, ss->user);
            session_kill(ss);
            continue;
        }
        if (ss->cs)
            console_session_writable_changed(ss->cs);
    }
}
