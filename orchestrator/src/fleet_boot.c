/* fleet_boot.c: the boot path's fetches (iPXE script, kernel, initrd,
 * overlay, phone-home) as events of the server's state machine.  A live
 * boot token names the server; it is bound to the boot it was minted for
 * (docs/design.md §3, "Who may speak for a server"): the first kernel or
 * initrd fetch binds it to its address (which must be the address
 * rescued's dnsmasq leased to the MAC, when it leased one), the overlay and
 * the phone-home are taken from that address only, in rescue_booting, the
 * overlay once.  A refusal changes nothing but an audit event.  Each
 * event is stored before it is acted on (fleet_srv_feed); fleet_overlay
 * also reads the project's key file, and a lease check reads dnsmasq's
 * lease file. */
#include "fleet.h"
#include "fleet_internal.h"
#include "store.h"
#include "bootscript.h"
#include "dnsmasq.h"
#include "inventory.h"
#include "log.h"
#include "overlay.h"
#include "sshkey.h"
#include "util.h"
#include "vmiso.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the iPXE script sends the server: the rescue image while it is on
 * its way into rescue or in it, else its own disk. */
static bool
target_is_rescue(enum fsm_state st)
{
    return st == FSM_RESCUE_REQUESTED || st == FSM_REBOOTING ||
           st == FSM_PXE_BOOTING || st == FSM_RESCUE_BOOTING ||
           st == FSM_RESCUE;
}

static const char *
base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static uint64_t
note_hash(const char *kind, const char *msg)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = kind; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const char *p = msg; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

/* Remember a note as made in this step; false when it was already, or
 * when this step's notes are full (a flood of different words). */
static bool
note_remember(struct srv *s, uint64_t h)
{
    size_t max = sizeof(s->boot_noted) / sizeof(s->boot_noted[0]);
    for (size_t i = 0; i < s->nboot_noted; i++)
        if (s->boot_noted[i] == h)
            return false;
    if (s->nboot_noted == max)
        return false;
    s->boot_noted[s->nboot_noted++] = h;
    return true;
}

static bool
note_is_news(const struct srv *s, uint64_t h)
{
    size_t max = sizeof(s->boot_noted) / sizeof(s->boot_noted[0]);
    for (size_t i = 0; i < s->nboot_noted; i++)
        if (s->boot_noted[i] == h)
            return false;
    return s->nboot_noted < max;
}

/* Note a boot-path event once per step: the same words again (a retrying
 * client, a flood) append nothing and cost no fsync.  True when noted. */
static bool
boot_note(struct srv *s, const char *kind, const char *msg)
{
    if (!note_remember(s, note_hash(kind, msg)))
        return false;
    fleet_srv_note(s, kind, strcmp(kind, "audit") == 0 ? "rescued" : "server",
                   msg);
    return true;
}

/* A fetch that moves the state: noted (once) before the event is fed, and
 * remembered in the step it led to, so its repeats are not news there. */
static void
boot_note_feed(struct srv *s, const char *msg, enum fsm_event ev)
{
    uint64_t h = note_hash("boot", msg);
    bool news = note_is_news(s, h);
    if (news)
        fleet_srv_note(s, "boot", "server", msg);
    fleet_srv_feed(s, ev);
    note_remember(s, h);
}

/* A refusal: an audit event (once per step and words) and the words for
 * the asker, which name no server, project or state. */
static int
refuse(struct srv *s, int rc, const char *what, const char *peer,
       const char *why, char *err, size_t errlen)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "refused %s from %s: %s", what,
             peer && *peer ? peer : "?", why);
    s->f->boot_refused[rc == -EACCES ? 0 : 1]++;
    /* Logged with its event: a flood is one line, not one per request. */
    if (boot_note(s, "audit", msg))
        log_warnx("%s: %s", s->cfg->id, msg);
    if (err)
        snprintf(err, errlen, "%s",
                 rc == -EACCES ? "this boot token belongs to another address"
                               : "this boot token is spent or not usable now");
    return rc;
}

/* A boot of a server another node runs (a standby, a node of another
 * facility): nothing is stored here, the asker is told to go elsewhere
 * in words that name no server. */
static int
not_here(char *err, size_t errlen)
{
    if (err)
        snprintf(err, errlen,
                 "this node does not run this boot now: its facility's "
                 "active node does");
    return -EBUSY;
}

/* May peer speak for s?  The dnsmasq lease decides when rescued's dnsmasq
 * leased the MAC an address; else bound (the boot's address; NULL or "":
 * none known) does. */
static bool
addr_ok(struct srv *s, const char *peer, const char *bound)
{
    int r = dnsmasq_leased(s->f->dnsmasq, s->cfg->mac, peer);
    if (r >= 0)
        return r == 1 && (!bound || !*bound || strcmp(bound, peer) == 0);
    return !bound || !*bound || strcmp(bound, peer) == 0;
}

/* The address the server's live token is bound to into t ("" if none). */
static void
live_token_addr(struct srv *s, struct store_token *t)
{
    memset(t, 0, sizeof(*t));
    if (s->tok.live)
        strlcpy_s(t->addr, s->tok.addr, sizeof(t->addr));
}

/* What the rescue image's kernel command line is made of, for s's boot
 * of token (iPXE's script or the virtual CD). */
static struct bootscript_rescue
rescue_params(const struct srv *s, const char *token)
{
    const struct config *c = s->f->cfg;
    return (struct bootscript_rescue){.boot_url = c->boot_url,
                                      .token = token,
                                      .kernel_name = base_name(c->kernel),
                                      .initrd_name = base_name(c->initrd),
                                      .tools_name =
                                          c->tools ? base_name(c->tools) : NULL,
                                      .console_tty = s->cfg->console_tty,
                                      .cmdline = c->cmdline,
                                      .firmware = s->cfg->firmware};
}

/* Does this fetch of the script come from the server itself?  Only then
 * may it move the state: a stranger who knows the MAC gets the same
 * answer and moves nothing.  In the states a fetch does not move, any. */
static bool
script_may_move(struct srv *s, const char *peer)
{
    struct store_token t;
    switch (s->row.fsm.state) {
    case FSM_REBOOTING:
        return addr_ok(s, peer, NULL);
    case FSM_RESCUE_BOOTING:
        /* Started again mid-boot: from the address its kernel went to. */
        live_token_addr(s, &t);
        return addr_ok(s, peer, t.addr);
    case FSM_RESCUE:
        /* The rescue OS restarted: only from its boot's address. */
        live_token_addr(s, &t);
        return t.addr[0] && addr_ok(s, peer, t.addr);
    case FSM_EXITING:
        /* On its way home: from the address its rescue boot had. */
        return addr_ok(s, peer, s->tok.last_addr);
    default:
        return true;
    }
}

/* The prefix of aarch64's image files under /images/: their names are
 * those of x86's (make image ARCH=arm64 writes vmlinuz, initramfs...). */
#define AARCH64_PREFIX "aarch64-"

static bool
is_aarch64(const char *arch)
{
    return arch && strcmp(arch, "aarch64") == 0;
}

void
fleet_image_files(const struct fleet *f, const char *arch, const char **kernel,
                  const char **initrd, const char **tools)
{
    const struct config *c = f->cfg;
    bool a64 = is_aarch64(arch);
    *kernel = a64 ? c->kernel_aarch64 : c->kernel;
    *initrd = a64 ? c->initrd_aarch64 : c->initrd;
    *tools = a64 ? c->tools_aarch64 : c->tools;
}

/* An image file's name under /images/ (into a buffer of the caller's). */
static const char *
image_name(const char *arch, const char *path, char *out, size_t outlen)
{
    if (!path)
        return NULL;
    snprintf(out, outlen, "%s%s", is_aarch64(arch) ? AARCH64_PREFIX : "",
             base_name(path));
    return out;
}

static int
boot_script(struct fleet *f, const char *mac, const char *peer, bool head,
            bool grub, struct buf *out)
{
    const struct config_server *cs = config_find_server_by_mac(f->cfg, mac);
    if (!cs)
        return -ENOENT;
    struct srv *s = fleet_srv_of(f, cs);
    if (!peer || !*peer)
        peer = "?";
    /* HEAD asks what a GET would get: it moves nothing. */
    bool moves = !head && s->runs && script_may_move(s, peer);
    /* The step this fetch takes cannot be stored now (the database is
     * unreachable or has not answered for a while): the disk is not where
     * it is going, so it waits in iPXE (or GRUB) and asks again; nothing
     * moves. */
    if (moves && target_is_rescue(s->row.fsm.state) &&
        !store_answering(f->st)) {
        (grub ? bootscript_grub_wait : bootscript_wait)(f->cfg->boot_url,
                                                        cs->mac, out);
        return 0;
    }
    /* A rescue OS that restarted itself boots anew: its last token is
     * spent, this boot gets its own. */
    if (moves && s->row.fsm.state == FSM_RESCUE)
        fleet_srv_new_token(s);
    char token[FLEET_TOKEN_SIZE], kn[128], in[128], tn[128];
    const char *kernel, *initrd, *tools;
    fleet_image_files(f, cs->arch, &kernel, &initrd, &tools);
    int tr = target_is_rescue(s->row.fsm.state) && kernel && initrd
                 ? fleet_srv_token(s, token, sizeof(token))
                 : -ENOENT;
    if (tr == -EIO) {
        /* No token to hand out, and the disk is not where it is going:
         * it waits in iPXE (or GRUB) and asks again; nothing moves. */
        (grub ? bootscript_grub_wait : bootscript_wait)(f->cfg->boot_url,
                                                        cs->mac, out);
        return 0;
    }
    bool rescue = tr == 0;
    const char *what = grub ? "GRUB config" : "iPXE script";
    if (rescue) {
        /* The arch's own files: aarch64's are under /images/aarch64-. */
        struct bootscript_rescue r = rescue_params(s, token);
        r.kernel_name = image_name(cs->arch, kernel, kn, sizeof(kn));
        r.initrd_name = image_name(cs->arch, initrd, in, sizeof(in));
        r.tools_name = image_name(cs->arch, tools, tn, sizeof(tn));
        if (grub) {
            r.mac = cs->mac;
            bootscript_grub_rescue(&r, out);
        } else {
            bootscript_rescue(&r, out);
        }
    } else if (grub) {
        bootscript_grub_local(out);
    } else {
        bootscript_local(cs->firmware, out);
    }
    if (head || !s->runs)
        return 0; /* another node's: the script as things stand, no note */
    char msg[160];
    if (!moves) {
        snprintf(msg, sizeof(msg),
                 "%s fetched from %s, not this server's address: "
                 "moves nothing",
                 what, peer);
        boot_note(s, "audit", msg);
        return 0;
    }
    snprintf(msg, sizeof(msg), "fetched its %s (%s) from %s", what,
             rescue ? "rescue image" : "local disk", peer);
    boot_note_feed(s, msg, grub ? FSM_EV_GRUB_FETCHED : FSM_EV_IPXE_FETCHED);
    return 0;
}

int
fleet_boot_script(struct fleet *f, const char *mac, const char *peer, bool head,
                  struct buf *out)
{
    return boot_script(f, mac, peer, head, false, out);
}

int
fleet_boot_grub(struct fleet *f, const char *mac, const char *peer, bool head,
                struct buf *out)
{
    return boot_script(f, mac, peer, head, true, out);
}

int
fleet_vm_cd_make(struct srv *s,
                 void (*cb)(void *s, int status, const char *err), char *err,
                 size_t errlen)
{
    struct fleet *f = s->f;
    const struct config_server *cs = s->cfg;
    struct vmiso_slots slots;
    char token[FLEET_TOKEN_SIZE];
    int r = vmiso_slots_load(f->cfg->iso, &slots, err, errlen);
    if (r < 0)
        return r;
    if (fleet_srv_token(s, token, sizeof(token)) < 0) {
        seterr(err, errlen, "no boot token");
        return -ENOENT;
    }
    char *dir = xasprintf("%s/media", f->cfg->data_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        seterr(err, errlen, "%s: %s", dir, strerror(-r));
        free(dir);
        return r;
    }
    free(s->vm_iso);
    s->vm_iso = xasprintf("%s/%s.iso", dir, cs->id);
    free(dir);
    struct bootscript_rescue br = rescue_params(s, token);
    br.mac = cs->mac; /* no iPXE to fill BOOTIF in */
    struct buf line = {0};
    bootscript_cmdline(&br, &line);
    vmiso_cancel(s->vm_job);
    s->vm_job = vmiso_build(f->loop, f->cfg->iso, &slots, s->vm_iso, line.data,
                            cb, s, err, errlen);
    buf_free(&line);
    return s->vm_job ? 0 : -EIO;
}

const char *
fleet_vm_cd_path(struct fleet *f, const char *token)
{
    struct store_token t;
    if (!f->cfg->iso)
        return NULL;
    struct srv *s = fleet_srv_of_token(f, token, &t);
    if (!s || s->cfg->boot != BOOT_VIRTUALMEDIA)
        return NULL;
    if (!s->vm_iso) /* made before a reload rebuilt the server */
        s->vm_iso = xasprintf("%s/media/%s.iso", f->cfg->data_dir, s->cfg->id);
    return s->vm_iso;
}

const char *
fleet_image_path(struct fleet *f, const char *name)
{
    if (strcmp(name, base_name(f->cfg->kernel)) == 0)
        return f->cfg->kernel;
    if (strcmp(name, base_name(f->cfg->initrd)) == 0)
        return f->cfg->initrd;
    if (f->cfg->tools && strcmp(name, base_name(f->cfg->tools)) == 0)
        return f->cfg->tools;
    if (strncmp(name, AARCH64_PREFIX, strlen(AARCH64_PREFIX)) == 0) {
        const char *c = f->cfg->kernel_aarch64,
                   *files[] = {c, f->cfg->initrd_aarch64, f->cfg->tools_aarch64,
                               f->cfg->grub_aarch64};
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            if (files[i] &&
                strcmp(name + strlen(AARCH64_PREFIX), base_name(files[i])) == 0)
                return files[i];
    }
    return NULL;
}

int
fleet_image_fetched(struct fleet *f, const char *name, const char *token,
                    const char *peer, bool head, char *err, size_t errlen)
{
    struct store_token t;
    const char *path = fleet_image_path(f, name);
    /* The files are public: without a live token a fetch is no event;
     * the GRUB loader (fetched by the firmware's HTTP boot) never is. */
    if (head || !path || path == f->cfg->grub_aarch64)
        return 0;
    struct srv *s = fleet_srv_of_token(f, token, &t);
    if (!s)
        return 0;
    if (!s->runs)
        return not_here(err, errlen);
    if (!peer || !*peer)
        peer = "?";
    bool kernel = path == f->cfg->kernel || path == f->cfg->kernel_aarch64;
    bool tools = path == f->cfg->tools || path == f->cfg->tools_aarch64;
    const char *what = kernel ? "kernel" : tools ? "tools archive" : "initrd";
    char subject[64];
    snprintf(subject, sizeof(subject), "the %s", what);
    enum fsm_state st = s->row.fsm.state;
    /* The tools archive is fetched by the running rescue OS: no step. */
    bool fits = tools ? st == FSM_RESCUE_BOOTING || st == FSM_RESCUE
                      : st == FSM_REBOOTING || st == FSM_PXE_BOOTING ||
                            st == FSM_RESCUE_BOOTING;
    if (!fits)
        return refuse(s, -EBUSY, subject, peer,
                      "its boot token does not fit this step", err, errlen);
    if (!addr_ok(s, peer, t.addr))
        return refuse(s, -EACCES, subject, peer,
                      t.addr[0] ? "its boot token is bound to another address"
                                : "not the address leased to this server",
                      err, errlen);
    if (!tools && !store_answering(f->st)) {
        /* Its step could not be stored: not served, so iPXE tries again
         * (and, out of tries, boots anew into the waiting script). */
        snprintf(err, errlen, "cannot store this boot's step now: %s",
                 store_last_error(f->st));
        return -EAGAIN;
    }
    if (!t.addr[0]) {
        if (tools)
            return refuse(s, -EBUSY, subject, peer,
                          "its boot token is bound to no boot yet", err,
                          errlen);
        /* The first fetch of this boot's images binds its token. */
        fleet_srv_token_mark(s, peer, 0);
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "fetching the %s %s from %s", what, name, peer);
    if (tools)
        boot_note(s, "boot", msg);
    else
        boot_note_feed(s, msg,
                       kernel ? FSM_EV_KERNEL_FETCHED : FSM_EV_INITRD_FETCHED);
    return 0;
}

/* The checks of the rescue OS's own requests (overlay, phone-home): its
 * boot's token, its step, its address.  0 or a refusal. */
static int
rescue_os_may(struct srv *s, const struct store_token *t, const char *what,
              const char *peer, char *err, size_t errlen)
{
    if (s->row.fsm.state != FSM_RESCUE_BOOTING)
        return refuse(s, -EBUSY, what, peer,
                      "its boot token does not fit this step", err, errlen);
    if (!t->addr[0])
        return refuse(s, -EBUSY, what, peer,
                      "its boot token is bound to no boot yet", err, errlen);
    if (!addr_ok(s, peer, t->addr))
        return refuse(s, -EACCES, what, peer,
                      "its boot token is bound to another address", err,
                      errlen);
    return 0;
}

int
fleet_overlay(struct fleet *f, const char *token, const char *peer,
              struct buf *out, char *err, size_t errlen)
{
    struct store_token t;
    struct srv *s = fleet_srv_of_token(f, token, &t);
    if (!s) {
        snprintf(err, errlen, "no such overlay");
        return -ENOENT;
    }
    if (!s->runs)
        return not_here(err, errlen);
    if (!peer || !*peer)
        peer = "?";
    if (s->cfg->boot == BOOT_VIRTUALMEDIA &&
        s->row.fsm.state == FSM_REBOOTING && !t.addr[0] &&
        addr_ok(s, peer, NULL)) {
        /* Booted from its virtual CD: nothing was fetched before the
         * overlay, whose fetch binds the token to this boot. */
        fleet_srv_token_mark(s, peer, 0);
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "booted the rescue image from its virtual CD (%s)", peer);
        boot_note_feed(s, msg, FSM_EV_CD_BOOTED);
        strlcpy_s(t.addr, s->tok.addr, sizeof(t.addr));
    }
    int r = rescue_os_may(s, &t, "the overlay", peer, err, errlen);
    if (r < 0)
        return r;
    if (!store_answering(f->st)) {
        /* Served once, and that must be stored: not now. */
        snprintf(err, errlen, "cannot store that the overlay was served: %s",
                 store_last_error(f->st));
        return -EAGAIN;
    }
    if (t.overlay_ms)
        return refuse(s, -EBUSY, "the overlay", peer,
                      "served once already, to this boot", err, errlen);
    /* The project's keys, then the ones given with this rescue. */
    char **pkeys = NULL;
    size_t npkeys = 0;
    const struct config_project *p =
        config_find_project(f->cfg, s->cfg->project);
    r = -EIO;
    if (!p || !p->keys_file ||
        sshkey_load_file(p->keys_file, &pkeys, &npkeys, err, errlen) == 0) {
        /* Room for every key a rescue may bring (fleet_action's bound). */
        const char **keys = xcalloc(npkeys + FLEET_MAX_KEYS, sizeof(*keys));
        size_t n = 0;
        for (size_t i = 0; i < npkeys; i++)
            keys[n++] = pkeys[i];
        char *extra = s->row.ssh_keys ? xstrdup(s->row.ssh_keys) : NULL;
        char *save = NULL;
        for (char *line = extra ? strtok_r(extra, "\n", &save) : NULL;
             line && n < npkeys + FLEET_MAX_KEYS;
             line = strtok_r(NULL, "\n", &save))
            keys[n++] = line;
        r = overlay_build(f->cfg->overlay_dir, s->cfg->id, keys, n, out, err,
                          errlen);
        free(extra);
        free(keys);
        sshkey_list_free(pkeys);
    }
    /* Served once: marked before it goes out, so a second asker finds it
     * spent (and a restarted daemon, once the store has it). */
    if (r == 0)
        fleet_srv_token_mark(s, NULL, now_wall_ms());
    if (r == 0) {
        fleet_srv_note(s, "boot", "server", "fetched its overlay (apkovl)");
        fleet_srv_feed(s, FSM_EV_OVERLAY_FETCHED);
    } else {
        /* The rescue OS boots without the user's keys: say why, loudly. */
        char msg[600];
        snprintf(msg, sizeof(msg), "cannot build its overlay: %s", err);
        log_warnx("%s: %s", s->cfg->id, msg);
        fleet_srv_note(s, "error", "rescued", msg);
        snprintf(err, errlen, "cannot build the overlay");
    }
    return r;
}

int
fleet_phone_home(struct fleet *f, const char *token, const char *peer,
                 json_t *report, char *err, size_t errlen)
{
    struct store_token t;
    struct srv *s = fleet_srv_of_token(f, token, &t);
    if (!s) {
        snprintf(err, errlen, "no such boot token");
        return -ENOENT;
    }
    if (!s->runs)
        return not_here(err, errlen);
    if (!peer || !*peer)
        peer = "?";
    int rc = rescue_os_may(s, &t, "a phone-home", peer, err, errlen);
    if (rc < 0)
        return rc;
    if (!json_is_object(report) ||
        !json_is_string(json_object_get(report, "ip"))) {
        snprintf(err, errlen, "the report must be an object with an \"ip\"");
        return -EINVAL;
    }
    /* The API's names and shapes (docs/design.md §2.2). */
    rc = inventory_normalize(report, err, errlen);
    if (rc < 0)
        return rc;
    free(s->row.rescue_json);
    s->row.rescue_json = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
    fleet_srv_save(s);
    char msg[160];
    const char *ip = json_string_value(json_object_get(report, "ip"));
    if (strcmp(ip, peer) == 0)
        snprintf(msg, sizeof(msg), "rescue OS phoned home from %s", ip);
    else
        snprintf(msg, sizeof(msg),
                 "rescue OS phoned home from %s (its request came from %s)", ip,
                 peer);
    fleet_srv_note(s, "boot", "server", msg);
    /* Into rescue: the step is over, so is this token's phone-home. */
    fleet_srv_feed(s, FSM_EV_PHONE_HOME);
    return 0;
}
