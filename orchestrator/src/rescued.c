/* rescued: the rescue-mode netboot orchestrator daemon. */
#include "api.h"
#include "config.h"
#include "fleet.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/rescued/rescued.ini"

struct daemon {
    struct loop *loop;
    struct fleet *fleet;
    struct api *api;
    const char *config_path;
    int sigfd;
};

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
    d.api = api_new(d.loop, d.fleet, listen, err, sizeof(err));
    if (!d.api)
        fatalx("%s", err);
    loop_add_fd(d.loop, d.sigfd, EPOLLIN, on_signal, &d);
    log_info("listening on %s, %zu servers, data in %s", listen,
             fleet_config(d.fleet)->nservers, fleet_config(d.fleet)->data_dir);

    int r = loop_run(d.loop);

    /* Every transition is already stored: stopping loses nothing. */
    loop_del_fd(d.loop, d.sigfd);
    close(d.sigfd);
    api_free(d.api);
    fleet_free(d.fleet);
    store_close(st);
    loop_free(d.loop);
    log_info("stopped");
    return r < 0 ? 1 : 0;
}
