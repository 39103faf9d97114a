/* fleet_boot.c: the boot path's fetches (iPXE script, kernel, initrd,
 * overlay, phone-home) as events of the server's state machine.  A live
 * boot token names the server.  Each event is stored before it is acted
 * on (fleet_srv_feed); fleet_overlay also reads the project's key file. */
#include "fleet.h"
#include "fleet_internal.h"
#include "bootscript.h"
#include "inventory.h"
#include "log.h"
#include "overlay.h"
#include "sshkey.h"
#include "util.h"

#include <errno.h>
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

int
fleet_boot_script(struct fleet *f, const char *mac, const char *peer,
                  struct buf *out)
{
    const struct config_server *cs = config_find_server_by_mac(f->cfg, mac);
    if (!cs)
        return -ENOENT;
    struct srv *s = fleet_srv_of(f, cs);
    char token[65];
    bool rescue =
        target_is_rescue(s->row.fsm.state) &&
        store_token_of_server(f->st, cs->id, token, sizeof(token)) == 0;
    if (rescue) {
        struct bootscript_rescue r = {
            .server_id = cs->id,
            .boot_url = f->cfg->boot_url,
            .token = token,
            .kernel_name = base_name(f->cfg->kernel),
            .initrd_name = base_name(f->cfg->initrd),
            .tools_name = f->cfg->tools ? base_name(f->cfg->tools) : NULL,
            .console_tty = cs->console_tty,
            .cmdline = f->cfg->cmdline,
            .firmware = cs->firmware};
        bootscript_rescue(&r, out);
    } else {
        bootscript_local(cs->id, cs->firmware, out);
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "fetched its iPXE script (%s) from %s",
             rescue ? "rescue image" : "local disk", peer ? peer : "?");
    fleet_srv_note(s, "boot", "server", msg);
    fleet_srv_feed(s, FSM_EV_IPXE_FETCHED);
    return 0;
}

static struct srv *
srv_of_token(struct fleet *f, const char *token)
{
    char id[64];
    if (!token || store_token_lookup(f->st, token, id, sizeof(id)) < 0)
        return NULL;
    return fleet_srv_find(f, id);
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
    /* The virtual-media CD: fetched by BMCs, without a token. */
    if (f->cfg->iso && strcmp(name, base_name(f->cfg->iso)) == 0)
        return f->cfg->iso;
    return NULL;
}

void
fleet_image_fetched(struct fleet *f, const char *name, const char *token)
{
    struct srv *s = srv_of_token(f, token);
    const char *path = fleet_image_path(f, name);
    if (!s || !path)
        return;
    bool kernel = path == f->cfg->kernel, tools = path == f->cfg->tools;
    char msg[160];
    snprintf(msg, sizeof(msg), "fetching the %s %s",
             kernel  ? "kernel"
             : tools ? "tools archive"
                     : "initrd",
             name);
    fleet_srv_note(s, "boot", "server", msg);
    /* The tools archive is fetched by the running rescue OS: no step. */
    if (!tools)
        fleet_srv_feed(s,
                       kernel ? FSM_EV_KERNEL_FETCHED : FSM_EV_INITRD_FETCHED);
}

int
fleet_overlay(struct fleet *f, const char *token, struct buf *out, char *err,
              size_t errlen)
{
    struct srv *s = srv_of_token(f, token);
    if (!s) {
        snprintf(err, errlen, "no such overlay");
        return -ENOENT;
    }
    /* The project's keys, then the ones given with this rescue. */
    char **pkeys = NULL;
    size_t npkeys = 0;
    const struct config_project *p =
        config_find_project(f->cfg, s->cfg->project);
    int r = -EIO;
    if (!p || !p->keys_file ||
        sshkey_load_file(p->keys_file, &pkeys, &npkeys, err, errlen) == 0) {
        const char **keys = xcalloc(npkeys + 64, sizeof(*keys));
        size_t n = 0;
        for (size_t i = 0; i < npkeys; i++)
            keys[n++] = pkeys[i];
        char *extra = s->row.ssh_keys ? xstrdup(s->row.ssh_keys) : NULL;
        char *save = NULL;
        for (char *line = extra ? strtok_r(extra, "\n", &save) : NULL;
             line && n < npkeys + 64; line = strtok_r(NULL, "\n", &save))
            keys[n++] = line;
        r = overlay_build(f->cfg->overlay_dir, s->cfg->id, keys, n, out, err,
                          errlen);
        free(extra);
        free(keys);
        sshkey_list_free(pkeys);
    }
    if (r == 0) {
        fleet_srv_note(s, "boot", "server", "fetched its overlay (apkovl)");
        fleet_srv_feed(s, FSM_EV_OVERLAY_FETCHED);
    } else {
        /* The rescue OS boots without the user's keys: say why, loudly. */
        char msg[600];
        snprintf(msg, sizeof(msg), "cannot build its overlay: %s", err);
        log_warnx("%s: %s", s->cfg->id, msg);
        fleet_srv_note(s, "error", "rescued", msg);
    }
    return r;
}

int
fleet_phone_home(struct fleet *f, const char *token, json_t *report, char *err,
                 size_t errlen)
{
    struct srv *s = srv_of_token(f, token);
    if (!s) {
        snprintf(err, errlen, "no such boot token");
        return -ENOENT;
    }
    if (!json_is_object(report) ||
        !json_is_string(json_object_get(report, "ip"))) {
        snprintf(err, errlen, "the report must be an object with an \"ip\"");
        return -EINVAL;
    }
    /* The API's names and shapes (docs/design.md §2.2). */
    int rc = inventory_normalize(report, err, errlen);
    if (rc < 0)
        return rc;
    free(s->row.rescue_json);
    s->row.rescue_json = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
    store_save_server(f->st, s->cfg->id, &s->row);
    char msg[160];
    snprintf(msg, sizeof(msg), "rescue OS phoned home from %s",
             json_string_value(json_object_get(report, "ip")));
    fleet_srv_note(s, "boot", "server", msg);
    fleet_srv_feed(s, FSM_EV_PHONE_HOME);
    return 0;
}
