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
#include "portal.h"
#include "power.h"
#include "sshd.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "webconsole.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
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
    struct http *boot_http; /* [rescued] boot_listen, beside a TLS listen */
    bool tls;               /* listen speaks TLS */
    int64_t watchdog_ms;    /* systemd's WatchDogSec, halved; 0: none */
    struct sshd *sshd;
    struct webconsole *webconsole;
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
    webconsole_writable_changed(d->webconsole, server);
}

/* Each server holds a console source, its log and a power connection,
 * and every HTTP or SSH client a socket: take the hard limit of open
 * files, and say what we got (and what a large fleet would want). */
static void
raise_nofile(size_t nservers)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)nservers * 4 + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warn("getrlimit NOFILE");
        return;
    }
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (old < rl.rlim_max && setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warn("setrlimit NOFILE");
        rl.rlim_cur = old;
    }
    log_info("open files limit %llu (was %llu, hard limit %llu)%s",
             (unsigned long long)rl.rlim_cur, (unsigned long long)old,
             (unsigned long long)rl.rlim_max,
             rl.rlim_cur < want ? ": too few for this fleet" : "");
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: rescued [-n] [-c FILE] [--sim-power]\n"
                 "       rescued --help | --version\n"
                 "  -c FILE     config file (default " DEFAULT_CONFIG ")\n"
                 "  -n          check the config file and exit\n"
                 "  --sim-power benchmarks only: manual: power resets at "
                 "once (refused with any other power)\n"
                 "  -h, --help  this text\n"
                 "  --version   print the version and exit\n");
}

/* [rescued]'s client limits for http; 0 is no limit of ours. */
static struct http_limits
http_limits_of(const struct config *c)
{
    unsigned none = 1u << 30;
#define LIM(v) ((v) > 0 ? (unsigned)(v) : none)
    struct http_limits lim = {
        .max_conns = LIM(c->max_connections),
        .per_ip_conns = c->max_connections_per_ip > 0
                            ? (unsigned)c->max_connections_per_ip
                            : 0, /* MHD's 0: no limit */
        .request_timeout_s = c->request_timeout,
        .max_streams = LIM(c->max_event_streams),
        .max_streams_per_caller = LIM(c->max_event_streams_per_token)};
#undef LIM
    return lim;
}

/* systemd (Type=notify): READY=1 once every listener is up, RELOADING=1
 * then READY=1 around a SIGHUP, STOPPING=1, and WATCHDOG=1 at half of
 * WATCHDOG_USEC from the loop, so a loop that hangs gets the daemon
 * restarted.  Without NOTIFY_SOCKET each call does nothing. */
static void
notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL +
                   (unsigned long long)ts.tv_nsec / 1000);
}

static int64_t
on_watchdog(struct loop *l, void *arg)
{
    (void)l;
    struct daemon *d = arg;
    sd_notify(0, "WATCHDOG=1");
    return d->watchdog_ms;
}

static void
watchdog_start(struct daemon *d)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec < 2000)
        return;
    d->watchdog_ms = (int64_t)(usec / 2000);
    loop_add_timer(d->loop, d->watchdog_ms, on_watchdog, d);
    log_info("systemd watchdog: every %lld ms", (long long)d->watchdog_ms);
}

/* The certificate files are read again at each reload (a renewed one
 * replaces the old from the next handshake on); turning TLS on or off
 * takes a restart, as a new listen address does. */
static int
reload_tls(struct daemon *d, const struct config *c)
{
    char err[512];
    if (!c->tls_cert != !d->tls)
        log_warnx("reload: TLS %s takes a restart", d->tls ? "off" : "on");
    if (!c->tls_cert || !d->tls)
        return 0;
    struct tls_pair *p =
        tls_pair_load(c->tls_cert, c->tls_key, err, sizeof(err));
    if (!p) {
        log_warnx("reload refused, old config stays in force: %s", err);
        return -1;
    }
    log_info("TLS: serving %s", tls_pair_describe(p));
    tls_serve(p);
    return 0;
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
    if (power_sim() && config_check_sim_power(c, err, sizeof(err)) < 0) {
        log_warnx("reload refused, old config stays in force: %s", err);
        config_free(c);
        return;
    }
    if (reload_tls(d, c) < 0) {
        config_free(c);
        return;
    }
    log_set_level(c->log_level);
    struct http_limits lim = http_limits_of(c);
    http_set_limits(d->http, &lim);
    if (d->boot_http)
        http_set_limits(d->boot_http, &lim);
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
            notify_reloading();
            reload(d);
            sd_notify(0, "READY=1");
            break;
        case SIGTERM:
        case SIGINT:
            log_info("%s: shutting down",
                     si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            sd_notify(0, "STOPPING=1");
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
        {"sim-power", no_argument, NULL, 'S'},
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
        case 'S':
            power_sim_set(true);
            break;
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
    if (power_sim() && config_check_sim_power(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "rescued: %s\n", err);
        config_free(cfg);
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
    if (power_sim())
        log_warnx("SIM-POWER: benchmark mode, no server is really reset "
                  "(--sim-power; /healthz says so)");
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
    store_attach_loop(st, d.loop);
    const char *listen = cfg->listen;
    d.fleet = fleet_new(d.loop, cfg, st, err, sizeof(err));
    if (!d.fleet)
        fatalx("%s", err);
    const struct config *c = fleet_config(d.fleet);
    if (c->tls_cert) {
        struct tls_pair *p =
            tls_pair_load(c->tls_cert, c->tls_key, err, sizeof(err));
        if (!p)
            fatalx("%s", err);
        log_info("TLS: serving %s", tls_pair_describe(p));
        tls_serve(p);
        d.tls = true;
    }
    struct http_limits lim = http_limits_of(c);
    d.http = http_new_limited(d.loop, listen, d.tls, &lim, err, sizeof(err));
    if (!d.http)
        fatalx("%s", err);
    api_register(d.http, d.fleet);
    bootpath_register(d.http, d.fleet);
    portal_register(d.http, d.fleet);
    if (c->boot_listen) {
        d.boot_http = http_new_limited(d.loop, c->boot_listen, false, &lim, err,
                                       sizeof(err));
        if (!d.boot_http)
            fatalx("boot_listen: %s", err);
        bootpath_register(d.boot_http, d.fleet);
        log_info("boot path also on %s (HTTP)", c->boot_listen);
    }
    char *host_key = xasprintf("%s/ssh_host_ed25519_key", c->data_dir);
    /* Both console faces record into one place (api lists it). */
    char *rec_dir =
        c->console_record ? xasprintf("%s/recordings", c->data_dir) : NULL;
    struct sshd_config sc = {
        .listen = c->console_listen,
        .host_key_path = host_key,
        .writer_idle_s = c->writer_idle,
        /* the config's 0, no limit, is sshd's < 0 */
        .max_startups = c->max_startups ? c->max_startups : -1,
        .max_startups_per_source =
            c->max_startups_per_source ? c->max_startups_per_source : -1,
        .login_grace_s = c->login_grace,
        .max_auth_tries = c->max_auth_tries ? c->max_auth_tries : -1,
        .record_dir = rec_dir,
        .record_days = c->record_days,
        .cbs = &sos_cbs,
        .cb_arg = &d};
    d.sshd = sshd_new(d.loop, &sc, err, sizeof(err));
    free(host_key);
    struct webconsole_config wcc = {.fleet = d.fleet,
                                    .cbs = &sos_cbs,
                                    .cb_arg = &d,
                                    .writer_idle_s = c->writer_idle,
                                    .record_dir = rec_dir,
                                    .record_days = c->record_days,
                                    .origin = c->ui_origin};
    d.webconsole = webconsole_register(d.http, &wcc);
    free(rec_dir);
    if (!d.sshd)
        fatalx("console: %s", err);
    d.sub = fleet_on_writable_changed(d.fleet, on_writable_changed, &d);
    loop_add_fd(d.loop, d.sigfd, EPOLLIN, on_signal, &d);
    log_info("listening on %s (%s) and %s (Serial over SSH), %zu %s, "
             "data in %s",
             listen, d.tls ? "HTTPS" : "HTTP", c->console_listen, c->nservers,
             plural(c->nservers, "server", "servers"), c->data_dir);

    watchdog_start(&d);
    sd_notifyf(0, "READY=1\nSTATUS=%zu %s", c->nservers,
               plural(c->nservers, "server", "servers"));
    int r = loop_run(d.loop);

    /* Every transition is already stored: stopping loses nothing. */
    loop_close_fd(d.loop, &d.sigfd);
    fleet_unsubscribe(d.fleet, d.sub);
    sshd_free(d.sshd);
    http_free(d.boot_http);
    webconsole_free(d.webconsole);
    http_free(d.http);
    tls_serve_end();
    fleet_free(d.fleet);
    power_drain(d.loop, 3000); /* Redfish logouts, each bounded */
    store_close(st);
    loop_free(d.loop);
    log_info("stopped");
    return r < 0 ? 1 : 0;
}
