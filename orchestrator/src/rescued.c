/* rescued: the rescue-mode netboot orchestrator daemon. */
#include "api.h"
#include "bootpath.h"
#include "console.h"
#include "config.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "sshd.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/rescued/rescued.ini"

struct daemon {
    struct loop *loop;
    struct fleet *fleet;
    struct http *http;
    struct sshd *sshd;
    uint64_t sub;         /* transitions, for the console's read-only window */
    struct grace *graces; /* pending ends of read-only windows */
    const char *config_path;
    int sigfd;
};

/* Serial over SSH asks the fleet; these adapt sshd's callbacks. */
static bool
sos_authorize(void *arg, const char *server, ssh_key pubkey,
              const char *fingerprint, char *role_out)
{
    (void)pubkey;
    struct daemon *d = arg;
    return fleet_console_authorize(d->fleet, server, fingerprint, role_out, 32);
}

static struct console *
sos_find_console(void *arg, const char *server)
{
    struct daemon *d = arg;
    return fleet_console(d->fleet, server);
}

static bool
sos_writable(void *arg, const char *server, char *why, size_t whylen)
{
    struct daemon *d = arg;
    return fleet_console_writable(d->fleet, server, why, whylen);
}

static void
sos_audit(void *arg, const char *server, const char *action, const char *detail)
{
    struct daemon *d = arg;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s %s", action, detail ? detail : "");
    fleet_audit(d->fleet, server, "console", msg);
}

static int
sos_power(void *arg, const char *server, enum sshd_power_op op, const char *key)
{
    struct daemon *d = arg;
    switch (op) {
    case SSHD_POWER_BREAK:
        /* The lab's and most QEMU serial chardevs are named serial0. */
        return fleet_console_power(d->fleet, server, POWER_SERIAL_BREAK,
                                   "serial0");
    case SSHD_POWER_SYSRQ:
        return fleet_console_power(d->fleet, server, POWER_SYSRQ, key);
    case SSHD_POWER_NMI:
        return fleet_console_power(d->fleet, server, POWER_NMI, NULL);
    }
    return -ENOTSUP;
}

static const struct sshd_cbs sos_cbs = {
    .authorize = sos_authorize,
    .find_console = sos_find_console,
    .writable = sos_writable,
    .audit = sos_audit,
    .power = sos_power,
};

/* One pending end of a read-only window; listed so that shutdown frees
 * those whose timer has not fired. */
struct grace {
    struct grace *next, *prev;
    struct daemon *d;
    uint64_t timer;
    char server[64];
};

static void
grace_unlink(struct grace *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        g->d->graces = g->next;
    if (g->next)
        g->next->prev = g->prev;
}

static int64_t
grace_over(struct loop *l, void *arg)
{
    (void)l;
    struct grace *g = arg;
    grace_unlink(g);
    sshd_writable_changed(g->d->sshd, g->server);
    free(g);
    return -1;
}

static void
graces_free(struct daemon *d)
{
    while (d->graces) {
        struct grace *g = d->graces;
        grace_unlink(g);
        loop_del_timer(d->loop, g->timer);
        free(g);
    }
}

/* A transition makes the console read-only; the end of the grace period
 * after a stable state makes it writable again.  Tell the viewers both. */
static void
on_transition(void *arg, const struct store_event *ev)
{
    struct daemon *d = arg;
    if (strcmp(ev->kind, "transition") != 0 || !d->sshd)
        return;
    sshd_writable_changed(d->sshd, ev->server);
    int64_t left = fleet_readonly_left_ms(d->fleet, ev->server);
    if (left > 0) {
        struct grace *g = xcalloc(1, sizeof(*g));
        g->d = d;
        strlcpy_s(g->server, ev->server, sizeof(g->server));
        g->next = d->graces;
        if (g->next)
            g->next->prev = g;
        d->graces = g;
        g->timer = loop_add_timer(d->loop, left + 50, grace_over, g);
    }
}

/* Each server holds a console source, its log and a power connection: a
 * large fleet needs more than the usual soft limit of 1024 descriptors. */
static void
raise_nofile(size_t nservers)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)nservers * 4 + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warn("setrlimit NOFILE");
        return;
    }
    log_info("open files limit raised from %llu to %llu for %zu servers%s",
             (unsigned long long)old, (unsigned long long)rl.rlim_cur, nservers,
             rl.rlim_cur < want ? " (the hard limit)" : "");
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: rescued [-n] [-c FILE]\n"
                 "  -c FILE  config file (default " DEFAULT_CONFIG ")\n"
                 "  -n       check the config file and exit\n");
}

/* SIGHUP reloads the inventory; a bad file keeps the old one in force. */
static void
reload(struct daemon *d)
{
    char err[512];
    struct config *c = config_load(d->config_path, err, sizeof(err));
    if (!c) {
        log_warnx("reload refused, old config stays in force: %s", err);
        return;
    }
    log_set_level(c->log_level);
    fleet_reload(d->fleet, c);
}

static void
on_signal(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    struct daemon *d = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGHUP:
            log_info("SIGHUP: reloading %s", d->config_path);
            reload(d);
            break;
        case SIGTERM:
        case SIGINT:
            log_info("%s: shutting down",
                     si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            loop_stop(l);
            break;
        }
    }
}

static int
signals_open(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int
main(int argc, char **argv)
{
    struct daemon d = {.config_path = DEFAULT_CONFIG};
    bool check_only = false;
    char err[512];
    int ch;

    while ((ch = getopt(argc, argv, "c:nh")) != -1) {
        switch (ch) {
        case 'c':
            d.config_path = optarg;
            break;
        case 'n':
            check_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    struct config *cfg = config_load(d.config_path, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "rescued: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("%s: ok (%zu servers, %zu projects)\n", d.config_path,
               cfg->nservers, cfg->nprojects);
        config_free(cfg);
        return 0;
    }
    log_init(cfg->log_level, "rescued");
    raise_nofile(cfg->nservers);

    d.sigfd = signals_open();
    if (d.sigfd < 0)
        fatal("signalfd");
    d.loop = loop_new();
    if (!d.loop)
        fatal("epoll");
    struct store *st = store_open(cfg->data_dir, err, sizeof(err));
    if (!st)
        fatalx("%s", err);
    const char *listen = cfg->listen;
    d.fleet = fleet_new(d.loop, cfg, st, err, sizeof(err));
    if (!d.fleet)
        fatalx("%s", err);
    d.http = http_new(d.loop, listen, err, sizeof(err));
    if (!d.http)
        fatalx("%s", err);
    api_register(d.http, d.fleet);
    bootpath_register(d.http, d.fleet);
    const struct config *c = fleet_config(d.fleet);
    char *host_key = xasprintf("%s/ssh_host_ed25519_key", c->data_dir);
    struct sshd_config sc = {.listen = c->console_listen,
                             .host_key_path = host_key,
                             .writer_idle_s = c->writer_idle,
                             .cbs = &sos_cbs,
                             .cb_arg = &d};
    d.sshd = sshd_new(d.loop, &sc, err, sizeof(err));
    free(host_key);
    if (!d.sshd)
        fatalx("console: %s", err);
    d.sub = fleet_subscribe(d.fleet, NULL, on_transition, &d);
    loop_add_fd(d.loop, d.sigfd, EPOLLIN, on_signal, &d);
    log_info("listening on %s (HTTP) and %s (Serial over SSH), %zu servers, "
             "data in %s",
             listen, c->console_listen, c->nservers, c->data_dir);

    int r = loop_run(d.loop);

    /* Every transition is already stored: stopping loses nothing. */
    loop_close_fd(d.loop, &d.sigfd);
    fleet_unsubscribe(d.fleet, d.sub);
    graces_free(&d);
    sshd_free(d.sshd);
    http_free(d.http);
    fleet_free(d.fleet);
    store_close(st);
    loop_free(d.loop);
    log_info("stopped");
    return r < 0 ? 1 : 0;
}
