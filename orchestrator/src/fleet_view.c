/* fleet_view.c: what the fleet shows: one server as the API's JSON and the
 * Prometheus text.  Reads fleet's insides, changes nothing, never blocks. */
#include "fleet.h"
#include "fleet_internal.h"
#include "dnsmasq.h"
#include "loop.h"
#include "store.h"
#include "uri.h"
#include "util.h"

#include <errno.h>

#include <stdlib.h>
#include <string.h>

static json_t *
time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[32];
    format_time_iso(ms / 1000, buf, sizeof(buf));
    return json_string(buf);
}

/* A JSON string of s made valid UTF-8: a name in Latin-1, a message cut
 * inside a character. */
static json_t *
text(const char *s)
{
    char *v = utf8_valid_dup(s);
    json_t *j = json_string(v);
    free(v);
    return j;
}

static char *
uri_scheme(const char *uri)
{
    const char *c = strchr(uri, ':');
    return c ? strndup(uri, (size_t)(c - uri)) : xstrdup(uri);
}

/* The view of s as its row stands. */
static json_t *
view_json(struct fleet *f, struct srv *s, const struct config_server *cs)
{
    const struct fsm_server *fs = fleet_srv_stored_fsm(s);
    char *scheme = uri_scheme(cs->power);
    const char *listen = f->cfg->console_listen;
    const char *colon = strrchr(listen, ':');
    /* A facility's consoles are reached at its console_host when set. */
    const struct config_facility *fa =
        config_find_facility(f->cfg, cs->facility);
    const char *host = fa ? fa->console_host : NULL;
    char *console =
        host ? xasprintf("ssh -p %s %s@%s", colon ? colon + 1 : "2222", cs->id,
                         host)
             : xasprintf("ssh -p %s %s@%.*s", colon ? colon + 1 : "2222",
                         cs->id, colon ? (int)(colon - listen) : 0, listen);
    /* What comes from the config or a driver's words may be any bytes:
     * each through text(), so the object is never NULL. */
    json_t *o = json_pack(
        "{s:o, s:o, s:o, s:o, s:s, s:o, s:s, s:o, s:o, s:o, s:i, s:o, s:o}",
        "id", text(cs->id), "name", text(cs->name), "mac", text(cs->mac),
        "arch", text(cs->arch), "firmware",
        cs->firmware == FW_UEFI ? "uefi" : "bios", "project", text(cs->project),
        "state", fsm_state_name(fs->state), "state_since",
        time_or_null(fs->since_ms), "last_error",
        s->store_error[0]   ? text(s->store_error)
        : fs->last_error[0] ? text(fs->last_error)
                            : json_null(),
        "deadline", time_or_null(fs->deadline_ms), "retries", fs->retries,
        "power", text(scheme), "console", text(console));
    free(scheme);
    free(console);
    /* A BMC whose certificate goes unchecked says so wherever it shows. */
    char perr[160];
    struct uri_power *pu = uri_power_parse(cs->power, perr, sizeof(perr));
    if (pu && pu->insecure)
        json_object_set_new(o, "power_warning",
                            json_string("tls=insecure: the BMC's certificate "
                                        "is not checked"));
    uri_power_free(pu);
    /* Its facility, and where that facility's consoles are reached. */
    json_object_set_new(o, "facility", text(cs->facility));
    json_object_set_new(o, "console_host",
                        fa && fa->console_host ? text(fa->console_host)
                                               : json_null());
    if (fs->state == FSM_RESCUE) {
        json_t *r = NULL;
        if (s->row.rescue_json)
            r = json_loads(s->row.rescue_json, 0, NULL);
        if (!json_is_object(r)) {
            json_decref(r);
            r = json_object();
        }
        json_object_set_new(r, "expires_at", time_or_null(fs->expires_at_ms));
        json_object_set_new(o, "rescue", r);
    }
    return o;
}

json_t *
fleet_server_json(struct fleet *f, const struct config_server *cs)
{
    /* Another node moves it: its row as the feed's last event left it. */
    return view_json(f, fleet_srv_of(f, cs), cs);
}

static uint64_t
mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ULL; /* FNV-1a */
    return h;
}

static uint64_t
mix_str(uint64_t h, const char *s)
{
    /* the NUL too: "ab"+"c" is not "a"+"bc" */
    return s ? mix(h, s, strlen(s) + 1) : mix(h, "\xff", 1);
}

/* Everything fleet_server_json reads, hashed: equal keys, equal views. */
static uint64_t
view_key(struct fleet *f, const struct srv *s, const struct config_server *cs)
{
    const struct fsm_server *fs = fleet_srv_stored_fsm(s);
    const struct config_facility *fa =
        config_find_facility(f->cfg, cs->facility);
    uint64_t h = 1469598103934665603ULL;
    const char *strs[] = {cs->id,
                          cs->name,
                          cs->mac,
                          cs->arch,
                          cs->project,
                          cs->power,
                          f->cfg->console_listen,
                          s->store_error,
                          fs->last_error,
                          cs->facility,
                          fa ? fa->console_host : NULL};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        h = mix_str(h, strs[i]);
    int64_t nums[] = {cs->firmware,    fs->state,   fs->since_ms,
                      fs->deadline_ms, fs->retries, fs->expires_at_ms};
    h = mix(h, nums, sizeof(nums));
    if (fs->state == FSM_RESCUE)
        h = mix_str(h, s->row.rescue_json);
    return h;
}

int
fleet_server_json_text(struct fleet *f, const struct config_server *cs,
                       struct buf *out)
{
    struct srv *s = fleet_srv_of(f, cs);
    uint64_t key = view_key(f, s, cs);
    if (!s->view.len || key != s->view_key) {
        buf_reset(&s->view);
        json_t *o = view_json(f, s, cs);
        char *text = json_dumps(o, JSON_COMPACT); /* as http dumps it */
        json_decref(o);
        if (!text)
            return -ENOMEM;
        buf_printf(&s->view, "%s\n", text);
        free(text);
        s->view_key = key;
    }
    buf_append(out, s->view.data, s->view.len);
    return 0;
}

void
fleet_metrics(struct fleet *f, struct buf *out)
{
    size_t count[FSM_NSTATES] = {0};
    for (size_t i = 0; i < f->nsrvs; i++)
        count[fleet_srv_stored_fsm(f->srvs[i])->state]++;
    buf_printf(out, "# HELP rescued_servers Servers per state.\n"
                    "# TYPE rescued_servers gauge\n");
    for (int i = 0; i < FSM_NSTATES; i++)
        buf_printf(out, "rescued_servers{state=\"%s\"} %zu\n",
                   fsm_state_name(i), count[i]);
    buf_printf(out, "# HELP rescued_transitions_total Transitions into each "
                    "state.\n# TYPE rescued_transitions_total counter\n");
    for (int i = 0; i < FSM_NSTATES; i++)
        buf_printf(out, "rescued_transitions_total{to=\"%s\"} %llu\n",
                   fsm_state_name(i), (unsigned long long)f->entered[i]);
    buf_printf(out, "# HELP rescued_step_failures_total Failures by the step "
                    "that failed.\n# TYPE rescued_step_failures_total "
                    "counter\n");
    for (int i = 0; i < FSM_NSTATES; i++)
        if (!fsm_state_is_stable(i))
            buf_printf(out, "rescued_step_failures_total{step=\"%s\"} %llu\n",
                       fsm_state_name(i), (unsigned long long)f->failed[i]);
    buf_printf(out, "# HELP rescued_step_retries_total Step timeouts that "
                    "reset the server and retried.\n"
                    "# TYPE rescued_step_retries_total counter\n");
    for (int i = 0; i < FSM_NSTATES; i++)
        if (!fsm_state_is_stable(i))
            buf_printf(out, "rescued_step_retries_total{step=\"%s\"} %llu\n",
                       fsm_state_name(i), (unsigned long long)f->retried[i]);
    buf_printf(out,
               "# HELP rescued_dnsmasq_restarts_total Times dnsmasq died "
               "and was restarted.\n"
               "# TYPE rescued_dnsmasq_restarts_total counter\n"
               "rescued_dnsmasq_restarts_total %u\n"
               "# HELP rescued_dnsmasq_up Whether the dnsmasq child runs.\n"
               "# TYPE rescued_dnsmasq_up gauge\n"
               "rescued_dnsmasq_up %d\n",
               dnsmasq_restarts(f->dnsmasq), dnsmasq_pid(f->dnsmasq) > 0);
    buf_printf(out,
               "# HELP rescued_boot_refusals_total Boot-path requests refused "
               "(403: another address, 409: not this step or spent).\n"
               "# TYPE rescued_boot_refusals_total counter\n"
               "rescued_boot_refusals_total{code=\"403\"} %llu\n"
               "rescued_boot_refusals_total{code=\"409\"} %llu\n",
               (unsigned long long)f->boot_refused[0],
               (unsigned long long)f->boot_refused[1]);
    buf_printf(out,
               "# HELP rescued_facility_active Whether this node holds its "
               "facility's lease and runs its servers (0 while a takeover "
               "still reads them).\n"
               "# TYPE rescued_facility_active gauge\n"
               "rescued_facility_active{facility=\"%s\",node=\"%s\"} %d\n"
               "# HELP rescued_lease_changes_total Times this node became "
               "its facility's active node or stood down.\n"
               "# TYPE rescued_lease_changes_total counter\n"
               "rescued_lease_changes_total %llu\n",
               f->facility, f->node, f->active && !f->taking_over,
               (unsigned long long)f->lease_changes);
    const struct loop_stats *ls = loop_stats(f->loop);
    buf_printf(out,
               "# HELP rescued_loop_stalls_total Callbacks that held the "
               "event loop %d ms or more (consoles and the boot path "
               "waited).\n"
               "# TYPE rescued_loop_stalls_total counter\n"
               "rescued_loop_stalls_total %llu\n"
               "# HELP rescued_loop_longest_stall_ms The longest of them.\n"
               "# TYPE rescued_loop_longest_stall_ms gauge\n"
               "rescued_loop_longest_stall_ms %lld\n"
               "# HELP rescued_store_waiting_ms How long the oldest write "
               "not yet answered by the store has waited.\n"
               "# TYPE rescued_store_waiting_ms gauge\n"
               "rescued_store_waiting_ms %lld\n",
               LOOP_STALL_MS, (unsigned long long)ls->stalls,
               (long long)ls->longest_ms, (long long)store_waiting_ms(f->st));
}
