/* echoclient: the echo bench's one client for every path (make
 * bench-console), so that the client's own cost is the same on each: a
 * small C program, one connection per path, the same loop (one byte out,
 * poll until it is back) timed here in-process.  SSH through libssh (as a
 * client: key auth, a session channel, a shell, no pty), the WebSocket
 * through libwslay (the HTTP upgrade by hand, then wslay's client framing,
 * masked frames out).  Paths are measured interleaved, sample by sample,
 * alternating the order, so the machine's load falls on all alike.
 *
 *   echoclient SAMPLES GAP_US PATH...
 *     PATH = ssh:NAME:PORT:USER:KEYFILE    (127.0.0.1)
 *          | ws:NAME:PORT:URLPATH:TICKET   (subprotocol rescued.console)
 *
 * Prints "NAME SECONDS" per sample, after the last one (no output while
 * timing).  Exit 1 with the reason on stderr.  Blocks (poll) throughout. */
#include <arpa/inet.h>
#include <errno.h>
#include <libssh/libssh.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define MAX_PATHS 8

struct path {
    char name[32];
    int fd;
    ssh_session ssh;
    ssh_channel ch;
    wslay_event_context_ptr ws;
    unsigned char got[4096]; /* bytes received since the last take */
    size_t ngot;
    double *t;
};

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("echoclient: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
tcp_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect to port %d: %s", port, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* --- SSH (libssh) ------------------------------------------------------- */

static void
ssh_open(struct path *p, int port, const char *user, const char *keyfile)
{
    ssh_key key;
    p->ssh = ssh_new();
    int verbosity = SSH_LOG_NOLOG;
    ssh_options_set(p->ssh, SSH_OPTIONS_HOST, "127.0.0.1");
    ssh_options_set(p->ssh, SSH_OPTIONS_PORT, &port);
    ssh_options_set(p->ssh, SSH_OPTIONS_USER, user);
    ssh_options_set(p->ssh, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
    if (ssh_connect(p->ssh) != SSH_OK)
        die("%s: ssh connect: %s", p->name, ssh_get_error(p->ssh));
    /* A bench on loopback against a host key made a moment ago. */
    if (ssh_pki_import_privkey_file(keyfile, NULL, NULL, NULL, &key) != SSH_OK)
        die("%s: cannot read the key %s", p->name, keyfile);
    if (ssh_userauth_publickey(p->ssh, NULL, key) != SSH_AUTH_SUCCESS)
        die("%s: ssh auth: %s", p->name, ssh_get_error(p->ssh));
    ssh_key_free(key);
    p->ch = ssh_channel_new(p->ssh);
    if (!p->ch || ssh_channel_open_session(p->ch) != SSH_OK ||
        ssh_channel_request_shell(p->ch) != SSH_OK)
        die("%s: ssh channel: %s", p->name, ssh_get_error(p->ssh));
    p->fd = ssh_get_fd(p->ssh);
    int one = 1;
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* --- WebSocket (libwslay) ------------------------------------------------ */

static ssize_t
ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
        void *user)
{
    (void)flags;
    struct path *p = user;
    ssize_t n = recv(p->fd, buf, len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        n = -1;
    }
    return n;
}

static ssize_t
ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
        void *user)
{
    (void)flags;
    struct path *p = user;
    ssize_t n = send(p->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else if (n < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return n;
}

static int
ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)random();
    return 0;
}

static void
ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m,
       void *user)
{
    (void)ctx;
    struct path *p = user;
    if (m->opcode != WSLAY_BINARY_FRAME) /* control messages: JSON */
        return;
    size_t n = m->msg_length;
    if (n > sizeof(p->got) - p->ngot)
        n = sizeof(p->got) - p->ngot;
    memcpy(p->got + p->ngot, m->msg, n);
    p->ngot += n;
}

static void
ws_open(struct path *p, int port, const char *urlpath, const char *ticket)
{
    p->fd = tcp_connect(port);
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Origin: http://127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: ZWNob2NsaWVudCBiZW5jaA==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: rescued.console, ticket.%s\r\n"
                     "\r\n",
                     urlpath, port, port, ticket);
    if (write(p->fd, req, (size_t)n) != n)
        die("%s: cannot send the upgrade", p->name);
    /* The answer's head, a byte at a time: frames may follow at once. */
    char head[2048];
    size_t h = 0;
    while (h < sizeof(head) - 1 &&
           (h < 4 || memcmp(head + h - 4, "\r\n\r\n", 4) != 0)) {
        if (read(p->fd, head + h, 1) != 1)
            die("%s: the upgrade was not answered", p->name);
        h++;
    }
    head[h] = '\0';
    if (!strstr(head, " 101 "))
        die("%s: upgrade refused: %.80s", p->name, head);
    struct wslay_event_callbacks cbs = {.recv_callback = ws_recv,
                                        .send_callback = ws_send,
                                        .genmask_callback = ws_genmask,
                                        .on_msg_recv_callback = ws_msg};
    if (wslay_event_context_client_init(&p->ws, &cbs, p) != 0)
        die("%s: wslay", p->name);
}

/* --- the loop both share ------------------------------------------------ */

static void
put_byte(struct path *p, unsigned char c)
{
    if (p->ch) {
        if (ssh_channel_write(p->ch, &c, 1) != 1)
            die("%s: ssh write: %s", p->name, ssh_get_error(p->ssh));
        return;
    }
    struct wslay_event_msg m = {WSLAY_BINARY_FRAME, &c, 1};
    if (wslay_event_queue_msg(p->ws, &m) != 0 || wslay_event_send(p->ws) != 0)
        die("%s: ws send", p->name);
}

static int
ssh_read(struct path *p)
{
    int n = ssh_channel_read_nonblocking(
        p->ch, p->got + p->ngot, (uint32_t)(sizeof(p->got) - p->ngot), 0);
    if (n < 0 || (n == 0 && ssh_channel_is_eof(p->ch)))
        die("%s: ssh read: %s", p->name, ssh_get_error(p->ssh));
    p->ngot += (size_t)n;
    return n;
}

/* What arrived, into p->got; waits up to ms for the socket. */
static void
take(struct path *p, int ms)
{
    struct pollfd pf = {.fd = p->fd, .events = POLLIN};
    /* libssh may hold bytes it read already: those first, no poll. */
    if (p->ch && ssh_read(p) > 0)
        return;
    if (poll(&pf, 1, ms) <= 0)
        return;
    if (p->ch) {
        ssh_read(p);
    } else if (wslay_event_recv(p->ws) != 0) {
        die("%s: the WebSocket closed", p->name);
    }
    if (p->ngot == sizeof(p->got))
        p->ngot = 0; /* a notice we do not wait for */
}

static int
got(struct path *p, unsigned char c)
{
    return memchr(p->got, c, p->ngot) != NULL;
}

/* Until a keystroke comes back (the seat, the read-only grace), then the
 * notices drained. */
static void
ready(struct path *p)
{
    double end = now_s() + 30;
    p->ngot = 0;
    while (!got(p, 'w')) {
        if (now_s() > end)
            die("%s: no echo within 30 s", p->name);
        put_byte(p, 'w');
        take(p, 500);
    }
    for (double q = now_s() + 0.3; now_s() < q;)
        take(p, 50);
    p->ngot = 0;
}

static double
once(struct path *p, unsigned char c)
{
    p->ngot = 0;
    double t0 = now_s();
    put_byte(p, c);
    while (!got(p, c)) {
        if (now_s() - t0 > 5)
            die("%s: no echo within 5 s", p->name);
        take(p, 5000);
    }
    return now_s() - t0;
}

int
main(int argc, char **argv)
{
    if (argc < 4 || argc - 3 > MAX_PATHS)
        die("usage: echoclient SAMPLES GAP_US PATH...");
    int samples = atoi(argv[1]), gap_us = atoi(argv[2]), np = argc - 3;
    struct path paths[MAX_PATHS] = {0};
    ssh_init();
    for (int i = 0; i < np; i++) {
        struct path *p = &paths[i];
        char *spec = strdup(argv[3 + i]), *save = NULL;
        char *kind = strtok_r(spec, ":", &save);
        char *name = strtok_r(NULL, ":", &save);
        char *port = strtok_r(NULL, ":", &save);
        char *a = strtok_r(NULL, ":", &save);
        char *b = strtok_r(NULL, "", &save);
        if (!kind || !name || !port || !a || !b)
            die("bad path %s", argv[3 + i]);
        snprintf(p->name, sizeof(p->name), "%s", name);
        if (strcmp(kind, "ssh") == 0)
            ssh_open(p, atoi(port), a, b);
        else if (strcmp(kind, "ws") == 0)
            ws_open(p, atoi(port), a, b);
        else
            die("bad path kind %s", kind);
        p->t = calloc((size_t)samples, sizeof(double));
        free(spec);
    }
    for (int i = 0; i < np; i++)
        ready(&paths[i]);
    for (int s = 0; s < samples; s++) {
        for (int k = 0; k < np; k++) {
            struct path *p = &paths[s % 2 ? np - 1 - k : k];
            p->t[s] = once(p, (unsigned char)('a' + s % 26));
            usleep((useconds_t)gap_us);
        }
    }
    for (int i = 0; i < np; i++) {
        for (int s = 0; s < samples; s++)
            printf("%s %.9f\n", paths[i].name, paths[i].t[s]);
        if (paths[i].ch) {
            ssh_channel_close(paths[i].ch);
            ssh_channel_free(paths[i].ch);
            ssh_disconnect(paths[i].ssh);
            ssh_free(paths[i].ssh);
        } else {
            wslay_event_context_free(paths[i].ws);
            close(paths[i].fd);
        }
        free(paths[i].t);
    }
    ssh_finalize();
    return 0;
}
