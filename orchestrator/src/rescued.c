/* rescued: the rescue-mode netboot orchestrator daemon. */
#include "api.h"
#include "bootpath.h"
#include "console.h"
#include "console_session.h"
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
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/rescued/rescued.ini"
#ifndef RESCUED_VERSION /* the Makefile's VERSION, its one place */
#error "build with make, which passes -DRESCUED_VERSION"
#endif

struct daemon {
    struct loop *loop;
    struct fleet *fleet;
    struct http *http;
    struct sshd *sshd;
    uint64_t sub; /* the fleet tells when a console turns writable */
    const char *config_path;
    int sigfd;
};

/* The console faces ask the fleet; these adapt console_session's
 * callbacks. */
static bool
sos_authorize(void *arg, const char *server, const struct console_who *who,
              char *role, size_t rolelen)
{
    struct daemon *d = arg;
    return fleet_console_authorize(d->fleet, server, who, role, rolelen);
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
sos_power(void *arg, const char *server, enum console_power_op op,
          const char *key)
{
    struct daemon *d = arg;
    switch (op) {
    case CONSOLE_POWER_BREAK:
        /* The lab's and most QEMU serial chardevs are named serial0. */
        return fleet_console_power(d->fleet, server, POWER_SERIAL_BREAK,
                                   "serial0");
    case CONSOLE_POWER_SYSRQ:
        return fleet_console_power(d->fleet, server, POWER_SYSRQ, key);
    case CONSOLE_POWER_NMI:
        return fleet_console_power(d->fleet, server, POWER_NMI, NULL);
    }
    return -ENOTSUP;
}

static const struct console_session_cbs sos_cbs = {
    .authorize = sos_authorize,
    .find_console = sos_find_console,
    .writable = sos_writable,
    .audit = sos_audit,
    .power = sos_power,
};

/* The fleet says when a console's read-only window opens or ends. */
static void
on_writable_changed(void *arg, const char *server)
{
    struct daemon *d = arg;
    sshd_writable_changed(d->sshd, server);
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
    log_info("open files limit raised from %llu to %llu for %zu %s%s",
             (unsigned long long)old, (unsigned long long)rl.rlim_cur, nservers,
             plural(nservers, "server", "servers"),
             rl.rlim_cur < want ? " (the hard limit)" : "");
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: rescued [-n] [-c FILE]\n"
                 "       rescued --help | --version\n"
                 "  -c FILE     config file (default " DEFAULT_CONFIG ")\n"
                 "  -n          check the config file and exit\n"
                 "  -h, --help  this text\n"
                 "  --version   print the version and exit\n");
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
    /* A file that may not grow (RLIMIT_FSIZE) fails the write with EFBIG,
     * which the store reports; the signal would kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int
main(int argc, char **argv)
{
    struct daemon d = {.config_path = DEFAULT_CONFIG};
    bool check_only = false;
    char err[512];
    int ch;
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };

    while ((ch = getopt_long(argc, argv, "c:nh", longopts, NULL)) != -1) {
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
        case 'V':
            printf("rescued %s\n", RESCUED_VERSION);
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
        printf("%s: ok (%zu %s, %zu %s)\n", d.config_path, cfg->nservers,
               plural(cfg->nservers, "server", "servers"), cfg->nprojects,
               plural(cfg->nprojects, "project", "projects"));
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
    /* Console logs and the host key live there, wherever the store is. */
    if (mkdir_p(cfg->data_dir, 0700, err, sizeof(err)) < 0)
        fatalx("%s", err);
    /* Private whoever made it (a package, an operator's mkdir). */
    if (chmod(cfg->data_dir, 0700) < 0)
        fatal("%s: chmod 0700", cfg->data_dir);
    struct store *st = store_open(cfg->store, cfg->data_dir, err, sizeof(err));
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
    d.sub = fleet_on_writable_changed(d.fleet, on_writable_changed, &d);
    loop_add_fd(d.loop, d.sigfd, EPOLLIN, on_signal, &d);
    log_info("listening on %s (HTTP) and %s (Serial over SSH), %zu %s, "
             "data in %s",
             listen, c->console_listen, c->nservers,
             plural(c->nservers, "server", "servers"), c->data_dir);

    int r = loop_run(d.loop);

    /* Every transition is already stored: stopping loses nothing. */
    loop_close_fd(d.loop, &d.sigfd);
    fleet_unsubscribe(d.fleet, d.sub);
    sshd_free(d.sshd);
    http_free(d.http);
    fleet_free(d.fleet);
    store_close(st);
    loop_free(d.loop);
    log_info("stopped");
    return r < 0 ? 1 : 0;
}
