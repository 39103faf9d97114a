/* redfish: the resources the power driver reads and the bodies it sends,
 * pure (redfish.h).  Nothing here trusts a BMC's JSON: every field is
 * looked up by type, and a missing one is NULL, never an error, unless
 * the whole answer is not a JSON object. */
#include "redfish.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *
load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    if (!body || len > REDFISH_MAX_BODY) {
        seterr(err, errlen, "answer larger than %d bytes", REDFISH_MAX_BODY);
        return NULL;
    }
    json_t *j = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(j)) {
        seterr(err, errlen, "answer is not a JSON object%s%s", j ? "" : ": ",
               j ? "" : jerr.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

static char *
dup_str(json_t *v)
{
    const char *s = json_string_value(v);
    return s ? xstrdup(s) : NULL;
}

/* obj[key]["@odata.id"] */
static char *
link_of(json_t *obj, const char *key)
{
    return dup_str(json_object_get(json_object_get(obj, key), "@odata.id"));
}

/* The strings of a JSON array, NULL-terminated (non-strings skipped). */
static char **
strings_of(json_t *arr, size_t *n)
{
    size_t k = 0, i;
    json_t *v;
    char **out = xcalloc(json_array_size(arr) + 1, sizeof(*out));
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v))
            out[k++] = xstrdup(json_string_value(v));
    }
    *n = k;
    return out;
}

int
redfish_parse_root(const char *body, size_t len, struct redfish_root *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len, err, errlen);
    if (!j)
        return -EPROTO;
    out->systems = link_of(j, "Systems");
    out->managers = link_of(j, "Managers");
    /* Links.Sessions is where DSP0266 says the collection is; some BMCs
     * only name the SessionService: its Sessions under it. */
    out->sessions = link_of(json_object_get(j, "Links"), "Sessions");
    if (!out->sessions) {
        char *svc = link_of(j, "SessionService");
        if (svc)
            out->sessions =
                xasprintf("%s%sSessions", svc,
                          svc[0] && svc[strlen(svc) - 1] == '/' ? "" : "/");
        free(svc);
    }
    json_decref(j);
    return 0;
}

void
redfish_root_clear(struct redfish_root *r)
{
    free(r->systems);
    free(r->managers);
    free(r->sessions);
    memset(r, 0, sizeof(*r));
}

char **
redfish_parse_members(const char *body, size_t len, size_t *n, char *err,
                      size_t errlen)
{
    json_t *j = load(body, len, err, errlen);
    *n = 0;
    if (!j)
        return NULL;
    json_t *m = json_object_get(j, "Members"), *v;
    size_t i, k = 0;
    char **out = xcalloc(json_array_size(m) + 1, sizeof(*out));
    json_array_foreach(m, i, v)
    {
        char *id = dup_str(json_object_get(v, "@odata.id"));
        if (id)
            out[k++] = id;
    }
    *n = k;
    json_decref(j);
    return out;
}

int
redfish_parse_system(const char *body, size_t len, struct redfish_system *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len, err, errlen);
    if (!j)
        return -EPROTO;
    out->power_state = dup_str(json_object_get(j, "PowerState"));
    json_t *reset =
        json_object_get(json_object_get(j, "Actions"), "#ComputerSystem.Reset");
    out->reset_uri = dup_str(json_object_get(reset, "target"));
    json_t *allowed =
        json_object_get(reset, "ResetType@Redfish.AllowableValues");
    if (json_is_array(allowed)) {
        out->resets = strings_of(allowed, &out->nresets);
        out->resets_listed = true;
    }
    out->action_info = dup_str(json_object_get(reset, "@Redfish.ActionInfo"));
    out->settings =
        link_of(json_object_get(j, "@Redfish.Settings"), "SettingsObject");
    out->manager = dup_str(json_object_get(
        json_array_get(
            json_object_get(json_object_get(j, "Links"), "ManagedBy"), 0),
        "@odata.id"));
    json_t *boot = json_object_get(j, "Boot");
    if (json_is_object(boot)) {
        out->has_boot = true;
        out->boot_target =
            dup_str(json_object_get(boot, "BootSourceOverrideTarget"));
        out->boot_enabled =
            dup_str(json_object_get(boot, "BootSourceOverrideEnabled"));
        out->boot_mode =
            dup_str(json_object_get(boot, "BootSourceOverrideMode"));
        json_t *t = json_object_get(
            boot, "BootSourceOverrideTarget@Redfish.AllowableValues");
        if (json_is_array(t))
            out->targets = strings_of(t, &out->ntargets);
    }
    json_decref(j);
    return 0;
}

void
redfish_system_clear(struct redfish_system *s)
{
    free(s->power_state);
    free(s->reset_uri);
    strv_free(s->resets);
    free(s->action_info);
    free(s->settings);
    free(s->manager);
    free(s->boot_target);
    free(s->boot_enabled);
    free(s->boot_mode);
    strv_free(s->targets);
    memset(s, 0, sizeof(*s));
}

int
redfish_parse_action_info(const char *body, size_t len,
                          struct redfish_system *s, char *err, size_t errlen)
{
    json_t *j = load(body, len, err, errlen);
    if (!j)
        return -EPROTO;
    json_t *params = json_object_get(j, "Parameters"), *v;
    size_t i;
    json_array_foreach(params, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "Name"));
        json_t *allowed = json_object_get(v, "AllowableValues");
        if (name && strcmp(name, "ResetType") == 0 && json_is_array(allowed)) {
            strv_free(s->resets);
            s->resets = strings_of(allowed, &s->nresets);
            s->resets_listed = true;
            break;
        }
    }
    json_decref(j);
    return 0;
}

char *
redfish_parse_task(const char *body, size_t len, char **msg)
{
    char err[64];
    *msg = NULL;
    json_t *j = load(body, len, err, sizeof(err));
    if (!j)
        return NULL;
    char *st = dup_str(json_object_get(j, "TaskState"));
    *msg = dup_str(json_object_get(
        json_array_get(json_object_get(j, "Messages"), 0), "Message"));
    json_decref(j);
    return st;
}

char *
redfish_error_words(const char *body, size_t len)
{
    char err[64];
    json_t *j = load(body, len, err, sizeof(err));
    if (!j)
        return NULL;
    json_t *e = json_object_get(j, "error");
    const char *w = json_string_value(json_object_get(
        json_array_get(json_object_get(e, "@Message.ExtendedInfo"), 0),
        "Message"));
    if (!w)
        w = json_string_value(json_object_get(e, "message"));
    char *out = NULL;
    if (w) {
        out = xstrdup(w);
        if (strlen(out) > 200)
            strcpy(out + 197, "...");
        /* One line in the events and the log. */
        for (char *c = out; *c; c++)
            if (*c == '\n' || *c == '\r' || *c == '\t')
                *c = ' ';
    }
    json_decref(j);
    return out;
}

static char *
dump(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        fatalx("out of memory encoding a Redfish body");
    return s;
}

char *
redfish_login_body(const char *user, const char *pass)
{
    return dump(json_pack("{s:s,s:s}", "UserName", user ? user : "", "Password",
                          pass ? pass : ""));
}

char *
redfish_reset_body(const char *reset_type)
{
    return dump(json_pack("{s:s}", "ResetType", reset_type));
}

char *
redfish_boot_body(const char *target, const char *mode)
{
    json_t *boot = json_pack("{s:s,s:s}", "BootSourceOverrideTarget", target,
                             "BootSourceOverrideEnabled", "Once");
    if (boot && mode)
        json_object_set_new(boot, "BootSourceOverrideMode", json_string(mode));
    return dump(json_pack("{s:o}", "Boot", boot));
}

char *
redfish_boot_clear_body(void)
{
    return dump(json_pack("{s:{s:s,s:s}}", "Boot", "BootSourceOverrideTarget",
                          "None", "BootSourceOverrideEnabled", "Disabled"));
}

bool
redfish_listed(char *const *v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

const char *
redfish_pick_reset(const struct redfish_system *s, enum redfish_want want,
                   int i)
{
    static const char *const restart[] = {"ForceRestart", "PowerCycle",
                                          "ForceOff+On", NULL};
    static const char *const on[] = {"On", "ForceOn", "PushPowerButton", NULL};
    static const char *const off[] = {"ForceOff", "GracefulShutdown",
                                      "PushPowerButton", NULL};
    static const char *const nmi[] = {"Nmi", NULL};
    const char *const *c = want == REDFISH_RESTART ? restart
                           : want == REDFISH_ON    ? on
                           : want == REDFISH_OFF   ? off
                                                   : nmi;
    int k = 0;
    for (; *c; c++) {
        bool ok = !s || !s->resets_listed;
        if (!ok && strcmp(*c, "ForceOff+On") == 0)
            ok = redfish_listed(s->resets, "ForceOff") &&
                 redfish_listed(s->resets, "On");
        else if (!ok)
            ok = redfish_listed(s->resets, *c);
        if (ok && k++ == i)
            return *c;
    }
    return NULL;
}

const char *
redfish_if_match(const char *etag, int stage)
{
    if (!etag || stage >= 2)
        return NULL;
    if (stage == 0)
        return etag;
    return strncmp(etag, "W/", 2) == 0 ? etag + 2 : NULL;
}

int
redfish_parse_media(const char *body, size_t len, struct redfish_media *m,
                    char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    json_t *j = load(body, len, err, errlen);
    if (!j)
        return -EPROTO;
    json_t *types = json_object_get(j, "MediaTypes"), *v;
    size_t i;
    json_array_foreach(types, i, v)
    {
        const char *t = json_string_value(v);
        if (t && (strcmp(t, "CD") == 0 || strcmp(t, "DVD") == 0))
            m->cd = true;
    }
    const char *img = json_string_value(json_object_get(j, "Image"));
    m->image = img && *img ? xstrdup(img) : NULL;
    json_t *ins = json_object_get(j, "Inserted");
    m->inserted = json_is_boolean(ins) ? json_is_true(ins) : m->image != NULL;
    json_t *acts = json_object_get(j, "Actions");
    m->insert = dup_str(json_object_get(
        json_object_get(acts, "#VirtualMedia.InsertMedia"), "target"));
    m->eject = dup_str(json_object_get(
        json_object_get(acts, "#VirtualMedia.EjectMedia"), "target"));
    json_decref(j);
    return 0;
}

void
redfish_media_clear(struct redfish_media *m)
{
    free(m->image);
    free(m->insert);
    free(m->eject);
    memset(m, 0, sizeof(*m));
}

char *
redfish_parse_link(const char *body, size_t len, const char *key)
{
    char err[64];
    json_t *j = load(body, len, err, sizeof(err));
    if (!j)
        return NULL;
    char *l = link_of(j, key);
    json_decref(j);
    return l;
}

char *
redfish_media_body(const char *image, bool plain)
{
    if (!image)
        return dump(json_pack("{s:n}", "Image"));
    if (plain)
        return dump(json_pack("{s:s}", "Image", image));
    return dump(json_pack("{s:s,s:b,s:b}", "Image", image, "Inserted", 1,
                          "WriteProtected", 1));
}
