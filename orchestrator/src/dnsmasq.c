#include "dnsmasq.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <pwd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define DNSMASQ_BIN "/usr/sbin/dnsmasq"
/* arm64 UEFI's loader by TFTP when [image] grub_aarch64 names none. */
#define GRUB_AA64 "grubnetaa64.efi"
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define STABLE_MS 60000 /* up this long: the next crash restarts quickly */

struct dnsmasq {
    struct loop *loop;
    char *dir;
    char *conf_path;
    char *hosts_path;
    char *pid_path; /* our child's pid, for the next rescued after a crash */
    pid_t pid;
    int pidfd;
    int64_t started_ms;
    int64_t backoff_ms;
    uint64_t restart_timer;
    unsigned restarts;
    bool reloading; /* stopped to read a new host file: start it at once */
};

/* The user dnsmasq drops to once it holds its sockets and lease file:
 * Debian's dnsmasq-base makes "dnsmasq"; without it "nobody".  It reads
 * its files as root at start (the data dir is 0700), so a new host file
 * means a restart, not a SIGHUP. */
static void
dnsmasq_user(char *user, size_t ulen, char *group, size_t glen)
{
    const struct passwd *pw = getpwnam("dnsmasq");
    if (!pw)
        pw = getpwnam("nobody");
    const struct group *gr = pw ? getgrgid(pw->pw_gid) : NULL;
    strlcpy_s(user, pw ? pw->pw_name : "nobody", ulen);
    strlcpy_s(group, gr ? gr->gr_name : "nogroup", glen);
}

void
dnsmasq_write_conf(const struct config *c, const char *dir,
                   const char *next_server, struct buf *out)
{
    buf_printf(out, "# Written by rescued from %s; edits are overwritten.\n",
               c->path);
    /* DNS off, no /etc/hosts or resolv.conf: we only do DHCP and TFTP. */
    char user[64], group[64];
    dnsmasq_user(user, sizeof(user), group, sizeof(group));
    buf_printf(out, "port=0\nno-hosts\nno-resolv\nuser=%s\ngroup=%s\n", user,
               group);
    buf_printf(out, "interface=%s\nbind-interfaces\n", c->pxe_interface);
    buf_printf(out, "dhcp-leasefile=%s/leases\n", dir);
    /* Its host lines as a conf-file: read with the options, as root (a
     * dhcp-hostsfile is read after the drop, and the data dir is 0700). */
    buf_printf(out, "conf-file=%s/hosts\n", dir);
    /* Only servers of the inventory get an answer. */
    buf_printf(out, "dhcp-ignore=tag:!known\n");
    buf_printf(out, "enable-tftp\ntftp-root=%s\n", c->tftp_root);
    buf_printf(out, "dhcp-match=set:ipxe,175\n"
                    "dhcp-userclass=set:ipxe,iPXE\n"
                    "dhcp-match=set:efi64,option:client-arch,7\n"
                    "dhcp-match=set:efi64,option:client-arch,9\n");
    /* arm64 UEFI (RFC 4578 and IANA's list): 11 PXE, 19 HTTP boot.  No
     * arm64 iPXE exists in Debian: they get GRUB, which finds rescued's
     * host:port in option 17 (root-path), sent to the inventory's aarch64
     * servers (tagged in the host file: GRUB's own DHCP sends no arch). */
    const char *grub = c->grub_aarch64 ? strrchr(c->grub_aarch64, '/') : NULL;
    grub = grub ? grub + 1 : c->grub_aarch64 ? c->grub_aarch64 : GRUB_AA64;
    const char *hostport =
        strncmp(c->boot_url, "http://", 7) == 0 ? c->boot_url + 7 : c->boot_url;
    buf_printf(out, "dhcp-match=set:arm64,option:client-arch,11\n"
                    "dhcp-match=set:arm64http,option:client-arch,19\n");
    buf_printf(out, "dhcp-option-force=tag:aarch64,17,\"%s\"\n", hostport);
    /* iPXE expands ${net0/mac} in the file name it is given. */
    char *script = xasprintf("%s/boot/${net0/mac}.ipxe", c->boot_url);
    if (c->pxe_mode == PXE_PROXY) {
        buf_printf(out, "dhcp-range=%s,proxy\n", c->dhcp_range);
        buf_printf(out, "pxe-prompt=\"rescued\",0\n");
        buf_printf(out,
                   "pxe-service=tag:!ipxe,x86PC,\"rescued\",undionly.kpxe\n");
        buf_printf(out,
                   "pxe-service=tag:!ipxe,x86-64_EFI,\"rescued\",ipxe.efi\n");
        buf_printf(out, "pxe-service=ARM64_EFI,\"rescued\",%s\n", grub);
        /* iPXE takes a proxy's file name only with a next server
         * (siaddr), which dnsmasq's proxy mode leaves empty unless told. */
        if (next_server)
            buf_printf(out, "dhcp-boot=tag:ipxe,%s,,%s\n", script, next_server);
        else
            buf_printf(out, "dhcp-boot=tag:ipxe,%s\n", script);
    } else {
        buf_printf(out, "dhcp-range=%s\n", c->dhcp_range);
        buf_printf(out, "dhcp-boot=tag:!ipxe,tag:!efi64,tag:!arm64,"
                        "tag:!arm64http,undionly.kpxe\n");
        buf_printf(out, "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi\n");
        buf_printf(out, "dhcp-boot=tag:arm64,%s\n", grub);
        /* HTTP boot takes a URL, and the answer must say HTTPClient. */
        if (c->grub_aarch64) {
            buf_printf(out, "dhcp-boot=tag:arm64http,%s/images/aarch64-%s\n",
                       c->boot_url, grub);
            buf_printf(out, "dhcp-option-force=tag:arm64http,60,HTTPClient\n");
        }
        buf_printf(out, "dhcp-boot=tag:ipxe,%s\n", script);
    }
    free(script);
}

void
dnsmasq_write_hosts(const struct config *c, struct buf *out)
{
    /* Only this node's facility's: another facility's servers boot
     * from their own network. */
    for (size_t i = 0; i < c->nservers; i++)
        if (!c->servers[i].facility ||
            strcmp(c->servers[i].facility, c->facility) == 0)
            buf_printf(out, "dhcp-host=%s,set:known,%s%s\n", c->servers[i].mac,
                       strcmp(c->servers[i].arch, "aarch64") == 0
                           ? "set:aarch64,"
                           : "",
                       c->servers[i].id);
}

/* The first IPv4 address of interface ifname, as text; false if none. */
static bool
iface_ipv4(const char *ifname, char *out, size_t outlen)
{
    struct ifaddrs *all;
    bool found = false;
    if (!ifname || getifaddrs(&all) < 0)
        return false;
    for (struct ifaddrs *i = all; i && !found; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
            strcmp(i->ifa_name, ifname) == 0)
            found = inet_ntop(AF_INET,
                              &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
                              out, (socklen_t)outlen) != NULL;
    freeifaddrs(all);
    return found;
}

static int
write_buf(const char *path, struct buf *b)
{
    int r = write_file_atomic(path, b->data ? b->data : "", b->len, 0600);
    buf_free(b);
    return r;
}

static int start(struct dnsmasq *d);

static int64_t
restart_due(struct loop *l, void *arg)
{
    (void)l;
    struct dnsmasq *d = arg;
    d->restart_timer = 0;
    if (start(d) < 0) {
        d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                           : d->backoff_ms * 2;
        d->restart_timer =
            loop_add_timer(d->loop, d->backoff_ms, restart_due, d);
    }
    return -1;
}

static void
child_exited(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct dnsmasq *d = arg;
    int status = 0;
    pid_t pid = d->pid;
    loop_close_fd(d->loop, &d->pidfd);
    waitpid(pid, &status, 0);
    d->pid = 0;
    if (d->reloading) {
        d->reloading = false;
        if (start(d) == 0)
            return;
        log_warnx("dnsmasq: cannot start it again with the new host file");
    }
    if (now_mono_ms() - d->started_ms > STABLE_MS)
        d->backoff_ms = BACKOFF_MIN_MS;
    d->restarts++;
    if (WIFSIGNALED(status))
        log_warnx("dnsmasq (pid %d) killed by signal %d; restarting in %lld "
                  "ms",
                  (int)pid, WTERMSIG(status), (long long)d->backoff_ms);
    else
        log_warnx("dnsmasq (pid %d) exited with status %d; restarting in %lld "
                  "ms",
                  (int)pid, WEXITSTATUS(status), (long long)d->backoff_ms);
    d->restart_timer = loop_add_timer(d->loop, d->backoff_ms, restart_due, d);
    d->backoff_ms =
        d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d->backoff_ms * 2;
}

static int
start(struct dnsmasq *d)
{
    char *conf_arg = xasprintf("--conf-file=%s", d->conf_path);
    pid_t pid = fork();
    if (pid < 0) {
        free(conf_arg);
        return -errno;
    }
    if (pid == 0) {
        /* rescued blocks these for its signalfd; dnsmasq needs them. */
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        execl(DNSMASQ_BIN, "dnsmasq", "--keep-in-foreground",
              "--log-facility=-", conf_arg, (char *)NULL);
        fprintf(stderr, "rescued: exec %s: %s\n", DNSMASQ_BIN, strerror(errno));
        _exit(127);
    }
    free(conf_arg);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -e;
    }
    d->pid = pid;
    d->pidfd = pidfd;
    d->started_ms = now_mono_ms();
    char pidtxt[32];
    int n = snprintf(pidtxt, sizeof(pidtxt), "%d\n", (int)pid);
    write_file_atomic(d->pid_path, pidtxt, (size_t)n, 0644);
    loop_add_fd(d->loop, pidfd, EPOLLIN, child_exited, d);
    log_info("dnsmasq started (pid %d) with %s", (int)pid, d->conf_path);
    return 0;
}

/* A rescued killed with -9 leaves its dnsmasq running (dnsmasq changes
 * credentials, which clears PR_SET_PDEATHSIG), holding the DHCP port.  Stop
 * it if the pid file names a dnsmasq running our own config file. */
static void
stop_stale(struct dnsmasq *d)
{
    char *txt = NULL, *cmd = NULL, path[64];
    size_t n = 0;
    if (read_file(d->pid_path, &txt, NULL) < 0)
        return;
    pid_t pid = (pid_t)atoi(txt);
    free(txt);
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (pid <= 1 || read_file(path, &cmd, &n) < 0)
        return;
    for (size_t i = 0; i + 1 < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    bool ours = strstr(cmd, "dnsmasq") && strstr(cmd, d->conf_path);
    free(cmd);
    if (!ours)
        return;
    log_warnx("dnsmasq: stopping pid %d left by an earlier rescued", (int)pid);
    kill(pid, SIGTERM);
    for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
        usleep(10000);
    if (kill(pid, 0) == 0)
        kill(pid, SIGKILL);
}

struct dnsmasq *
dnsmasq_new(struct loop *l, const struct config *c, char *err, size_t errlen)
{
    struct dnsmasq *d = xcalloc(1, sizeof(*d));
    struct buf b = {0};
    int r;

    d->loop = l;
    d->pidfd = -1;
    d->backoff_ms = BACKOFF_MIN_MS;
    d->dir = xasprintf("%s/dnsmasq", c->data_dir);
    d->conf_path = xasprintf("%s/dnsmasq.conf", d->dir);
    d->hosts_path = xasprintf("%s/hosts", d->dir);
    d->pid_path = xasprintf("%s/dnsmasq.pid", d->dir);
    if (mkdir(d->dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", d->dir, strerror(errno));
        goto out_free;
    }
    /* The proxy names this host as the boot server, as dnsmasq does by
     * itself in dhcp mode. */
    char addr[INET_ADDRSTRLEN];
    const char *next_server = NULL;
    if (c->pxe_mode == PXE_PROXY) {
        if (iface_ipv4(c->pxe_interface, addr, sizeof(addr)))
            next_server = addr;
        else
            log_warnx("dnsmasq: %s has no IPv4 address: iPXE will ignore "
                      "the proxy's answers",
                      c->pxe_interface);
    }
    dnsmasq_write_conf(c, d->dir, next_server, &b);
    if ((r = write_buf(d->conf_path, &b)) < 0) {
        snprintf(err, errlen, "%s: %s", d->conf_path, strerror(-r));
        goto out_free;
    }
    dnsmasq_write_hosts(c, &b);
    if ((r = write_buf(d->hosts_path, &b)) < 0) {
        snprintf(err, errlen, "%s: %s", d->hosts_path, strerror(-r));
        goto out_free;
    }
    stop_stale(d);
    if ((r = start(d)) < 0) {
        snprintf(err, errlen, "cannot start dnsmasq: %s", strerror(-r));
        goto out_free;
    }
    return d;
out_free:
    dnsmasq_free(d);
    return NULL;
}

void
dnsmasq_free(struct dnsmasq *d)
{
    if (!d)
        return;
    loop_del_timer(d->loop, d->restart_timer);
    if (d->pid > 0) {
        /* dnsmasq exits at once on SIGTERM; do not wait forever. */
        child_stop(d->pid, 2000);
        d->pid = 0;
        unlink(d->pid_path);
        log_info("dnsmasq stopped");
    }
    loop_close_fd(d->loop, &d->pidfd);
    free(d->dir);
    free(d->conf_path);
    free(d->hosts_path);
    free(d->pid_path);
    free(d);
}

void
dnsmasq_update(struct dnsmasq *d, const struct config *c)
{
    struct buf b = {0};
    dnsmasq_write_hosts(c, &b);
    char *old = NULL;
    bool same = read_file(d->hosts_path, &old, NULL) == 0 && b.data &&
                strcmp(old, b.data) == 0;
    free(old);
    if (same) {
        buf_free(&b);
        return;
    }
    int r = write_buf(d->hosts_path, &b);
    if (r < 0) {
        log_warnx("%s: %s", d->hosts_path, strerror(-r));
        return;
    }
    /* Read as root at its start only (see dnsmasq_user): start it again.
     * Not running (waiting out a back-off), its next start reads it. */
    if (d->pid > 0 && kill(d->pid, SIGTERM) == 0) {
        d->reloading = true;
        log_info("dnsmasq: host file rewritten, restarting it to read it");
    }
}

int
dnsmasq_lease_match(const char *leases, const char *mac, const char *addr,
                    int64_t now_s)
{
    int r = -ENOENT;
    for (const char *l = leases; l && *l && r != 1;) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        char line[256], lmac[32], laddr[64];
        if (n < sizeof(line)) {
            memcpy(line, l, n);
            line[n] = '\0';
            long long expiry;
            /* Expiry 0 is an infinite lease; a past one is no lease. */
            if (sscanf(line, "%lld %31s %63s", &expiry, lmac, laddr) == 3 &&
                (expiry == 0 || expiry >= now_s) && strcasecmp(lmac, mac) == 0)
                r = strcmp(laddr, addr) == 0 ? 1 : 0;
        }
        l = nl ? nl + 1 : l + n;
    }
    return r;
}

int
dnsmasq_leased(const struct dnsmasq *d, const char *mac, const char *addr)
{
    if (!d)
        return -ENOENT;
    char *path = xasprintf("%s/leases", d->dir), *text = NULL;
    int r = read_file(path, &text, NULL) < 0
                ? -ENOENT
                : dnsmasq_lease_match(text, mac, addr, now_wall_ms() / 1000);
    free(text);
    free(path);
    return r;
}

int
dnsmasq_pid(const struct dnsmasq *d)
{
    return d ? (int)d->pid : 0;
}

unsigned
dnsmasq_restarts(const struct dnsmasq *d)
{
    return d ? d->restarts : 0;
}
