#include "fsm.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[FSM_NSTATES] = {
    [FSM_ACTIVE] = "active",
    [FSM_RESCUE_REQUESTED] = "rescue_requested",
    [FSM_REBOOTING] = "rebooting",
    [FSM_PXE_BOOTING] = "pxe_booting",
    [FSM_RESCUE_BOOTING] = "rescue_booting",
    [FSM_RESCUE] = "rescue",
    [FSM_EXITING] = "exiting",
    [FSM_BOOTING_LOCAL] = "booting_local",
    [FSM_RESCUE_FAILED] = "rescue_failed",
    [FSM_EXIT_FAILED] = "exit_failed",
};

static const char *const event_names[FSM_NEVENTS] = {
    [FSM_EV_RESCUE] = "rescue",
    [FSM_EV_EXIT_RESCUE] = "exit_rescue",
    [FSM_EV_REBOOT] = "reboot",
    [FSM_EV_POWER_ON] = "power_on",
    [FSM_EV_POWER_OFF] = "power_off",
    [FSM_EV_PREPARED] = "rescue prepared",
    [FSM_EV_STEP_FAILED] = "step failed",
    [FSM_EV_IPXE_FETCHED] = "ipxe script fetched",
    [FSM_EV_KERNEL_FETCHED] = "kernel fetched",
    [FSM_EV_INITRD_FETCHED] = "initrd fetched",
    [FSM_EV_OVERLAY_FETCHED] = "overlay fetched",
    [FSM_EV_PHONE_HOME] = "rescue OS phoned home",
    [FSM_EV_LOCAL_OS_SEEN] = "local OS seen on the console",
    [FSM_EV_RESET_TO_DISK] = "reset done, one-time disk boot set",
    [FSM_EV_TIMEOUT] = "timeout",
    [FSM_EV_CD_BOOTED] = "booted from the virtual CD",
    [FSM_EV_GRUB_FETCHED] = "grub config fetched",
};

const char *
fsm_state_name(enum fsm_state s)
{
    return (unsigned)s < FSM_NSTATES ? state_names[s] : "unknown";
}

const char *
fsm_event_name(enum fsm_event e)
{
    return (unsigned)e < FSM_NEVENTS ? event_names[e] : "unknown";
}

int
fsm_state_parse(const char *name)
{
    for (int i = 0; i < FSM_NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return -1;
}

bool
fsm_state_is_stable(enum fsm_state s)
{
    return s == FSM_ACTIVE || s == FSM_RESCUE || s == FSM_RESCUE_FAILED ||
           s == FSM_EXIT_FAILED;
}

void
fsm_limits_default(struct fsm_limits *l)
{
    memset(l, 0, sizeof(*l));
    l->timeout_ms[FSM_RESCUE_REQUESTED] = 30 * 1000;
    l->timeout_ms[FSM_REBOOTING] = 180 * 1000;
    l->timeout_ms[FSM_PXE_BOOTING] = 120 * 1000;
    l->timeout_ms[FSM_RESCUE_BOOTING] = 300 * 1000;
    l->timeout_ms[FSM_EXITING] = 180 * 1000;
    l->timeout_ms[FSM_BOOTING_LOCAL] = 300 * 1000;
    l->max_retries = 2;
    l->local_settle_ms = 60 * 1000;
}

void
fsm_server_init(struct fsm_server *s, int64_t now_ms)
{
    memset(s, 0, sizeof(*s));
    s->state = FSM_ACTIVE;
    s->since_ms = now_ms;
}

/* Enter a state: a fresh step with its own deadline and retry budget. */
static void
enter(const struct fsm_limits *l, struct fsm_server *s, enum fsm_state to,
      int64_t now, struct fsm_output *out)
{
    s->state = to;
    s->since_ms = now;
    s->retries = 0;
    s->deadline_ms = l->timeout_ms[to] ? now + l->timeout_ms[to] : 0;
    out->changed = true;
}

static void
refuse(struct fsm_output *out, const char *fmt, const char *a)
{
    out->status = -EBUSY;
    snprintf(out->reason, sizeof(out->reason), fmt, a);
}

static void
fail(const struct fsm_limits *l, struct fsm_server *s, enum fsm_state to,
     const char *why, int64_t now, struct fsm_output *out)
{
    /* why may be a driver's words of any length: cut between characters. */
    snprintf_utf8(s->last_error, sizeof(s->last_error), "%s: %s",
                  fsm_state_name(s->state), why);
    strlcpy_utf8(out->reason, s->last_error, sizeof(out->reason));
    enter(l, s, to, now, out);
    s->deadline_ms = 0;
}

/* Into booting_local (why: what moved it).  A server with no console
 * shows nothing to wait for: it counts as up after local_settle. */
static void
to_booting_local(const struct fsm_limits *l, struct fsm_server *s,
                 const struct fsm_input *in, const char *why, int64_t now,
                 struct fsm_output *out)
{
    int64_t settle = l->local_settle_ms / 1000;
    if (!in->no_console) {
        enter(l, s, FSM_BOOTING_LOCAL, now, out);
        strlcpy_s(out->reason, why, sizeof(out->reason));
    } else if (l->local_settle_ms > 0) {
        enter(l, s, FSM_BOOTING_LOCAL, now, out);
        s->deadline_ms = now + l->local_settle_ms;
        snprintf(out->reason, sizeof(out->reason),
                 "%s; no console to watch: counted as up in %lld s "
                 "(local_settle)",
                 why, (long long)settle);
    } else {
        enter(l, s, FSM_ACTIVE, now, out);
        snprintf(out->reason, sizeof(out->reason),
                 "%s; no console to watch: counted as up at once "
                 "(local_settle 0)",
                 why);
    }
}

static bool
entering_rescue(enum fsm_state s)
{
    return s == FSM_RESCUE_REQUESTED || s == FSM_REBOOTING ||
           s == FSM_PXE_BOOTING || s == FSM_RESCUE_BOOTING;
}

/* A step's deadline passed: reset and wait again, or give up. */
static void
step_timed_out(const struct fsm_limits *l, struct fsm_server *s, int64_t now,
               struct fsm_output *out)
{
    enum fsm_state failed =
        entering_rescue(s->state) ? FSM_RESCUE_FAILED : FSM_EXIT_FAILED;
    int64_t secs = l->timeout_ms[s->state] / 1000;

    /* Preparing is our own work: resetting again would not help. */
    if (s->state != FSM_RESCUE_REQUESTED && s->retries < l->max_retries) {
        s->retries++;
        s->deadline_ms = now + l->timeout_ms[s->state];
        out->actions |= FSM_ACT_POWER_RESET;
        if (!entering_rescue(s->state))
            out->actions |= FSM_ACT_BOOT_DISK;
        snprintf(out->reason, sizeof(out->reason),
                 "%s: timed out after %lld s; reset, retry %d of %d",
                 fsm_state_name(s->state), (long long)secs, s->retries,
                 l->max_retries);
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "timed out after %lld s (%d %s)",
             (long long)secs, s->retries,
             s->retries == 1 ? "retry" : "retries");
    fail(l, s, failed, why, now, out);
}

bool
fsm_resume(const struct fsm_limits *l, struct fsm_server *s, unsigned pending,
           int64_t now_ms)
{
    if (pending == 0 || fsm_state_is_stable(s->state) ||
        l->timeout_ms[s->state] == 0)
        return false;
    s->deadline_ms = now_ms + l->timeout_ms[s->state];
    return true;
}

static void
user_action(const struct fsm_limits *l, struct fsm_server *s,
            const struct fsm_input *in, int64_t now, struct fsm_output *out)
{
    enum fsm_state st = s->state;

    if (!fsm_state_is_stable(st)) {
        refuse(out, "server is busy: %s; wait until it settles",
               fsm_state_name(st));
        return;
    }
    switch (in->event) {
    case FSM_EV_RESCUE:
        if (st == FSM_RESCUE) {
            refuse(out, "server is already in rescue%s", "");
            return;
        }
        s->ttl_s = in->ttl_s > 0 ? in->ttl_s : 0;
        s->expires_at_ms = 0;
        s->last_error[0] = '\0';
        enter(l, s, FSM_RESCUE_REQUESTED, now, out);
        out->actions = FSM_ACT_PREPARE_RESCUE | FSM_ACT_CLEAR_RESCUE_INFO;
        snprintf(out->reason, sizeof(out->reason), "rescue requested");
        break;
    case FSM_EV_EXIT_RESCUE:
        if (st == FSM_ACTIVE) {
            refuse(out, "server is not in rescue%s", "");
            return;
        }
        s->last_error[0] = '\0';
        s->expires_at_ms = 0;
        enter(l, s, FSM_EXITING, now, out);
        out->actions =
            FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK | FSM_ACT_POWER_RESET;
        snprintf(out->reason, sizeof(out->reason),
                 "exit from rescue requested");
        break;
    case FSM_EV_REBOOT:
        out->actions = FSM_ACT_POWER_RESET;
        if (st == FSM_RESCUE) {
            /* Reboot into rescue again, with the same token and overlay. */
            enter(l, s, FSM_REBOOTING, now, out);
            out->actions |= FSM_ACT_CLEAR_RESCUE_INFO;
        }
        snprintf(out->reason, sizeof(out->reason), "reboot requested");
        break;
    case FSM_EV_POWER_ON:
        out->actions = FSM_ACT_POWER_ON;
        snprintf(out->reason, sizeof(out->reason), "power on requested");
        break;
    case FSM_EV_POWER_OFF:
        out->actions = FSM_ACT_POWER_OFF;
        snprintf(out->reason, sizeof(out->reason), "power off requested");
        break;
    default:
        break;
    }
}

void
fsm_step(const struct fsm_limits *l, struct fsm_server *s,
         const struct fsm_input *in, int64_t now, struct fsm_output *out)
{
    memset(out, 0, sizeof(*out));
    enum fsm_state st = s->state;
    const char *why = fsm_event_name(in->event);

    if (in->event <= FSM_EV_POWER_OFF) {
        user_action(l, s, in, now, out);
        return;
    }

    switch (in->event) {
    case FSM_EV_PREPARED:
        if (st == FSM_RESCUE_REQUESTED) {
            enter(l, s, FSM_REBOOTING, now, out);
            out->actions = FSM_ACT_POWER_RESET;
        }
        break;
    case FSM_EV_STEP_FAILED:
        if (st == FSM_RESCUE_REQUESTED || st == FSM_REBOOTING ||
            st == FSM_EXITING)
            fail(l, s, st == FSM_EXITING ? FSM_EXIT_FAILED : FSM_RESCUE_FAILED,
                 in->detail ? in->detail : "failed", now, out);
        return;
    case FSM_EV_IPXE_FETCHED:
    case FSM_EV_GRUB_FETCHED:
        if (st == FSM_REBOOTING || st == FSM_RESCUE_BOOTING) {
            enter(l, s, FSM_PXE_BOOTING, now, out);
        } else if (st == FSM_RESCUE) {
            /* The rescue OS restarted itself (fleet feeds only the
             * server's own fetch): a new boot, which reports anew. */
            s->expires_at_ms = 0;
            enter(l, s, FSM_PXE_BOOTING, now, out);
            out->actions = FSM_ACT_CLEAR_RESCUE_INFO;
        } else if (st == FSM_EXITING) {
            to_booting_local(l, s, in, why, now, out);
            return;
        }
        break;
    case FSM_EV_RESET_TO_DISK:
        /* Heading for its disk already: the local script, if it still
         * netboots, finds it in booting_local and moves nothing. */
        if (st == FSM_EXITING) {
            to_booting_local(l, s, in, why, now, out);
            return;
        }
        break;
    case FSM_EV_KERNEL_FETCHED:
        if (st == FSM_PXE_BOOTING || st == FSM_REBOOTING)
            enter(l, s, FSM_RESCUE_BOOTING, now, out);
        break;
    case FSM_EV_CD_BOOTED:
        if (st == FSM_REBOOTING)
            enter(l, s, FSM_RESCUE_BOOTING, now, out);
        break;
    case FSM_EV_PHONE_HOME:
        /* Only the rescue OS the kernel fetch started can phone home. */
        if (st == FSM_RESCUE_BOOTING) {
            enter(l, s, FSM_RESCUE, now, out);
            if (s->ttl_s > 0) {
                s->expires_at_ms = now + s->ttl_s * 1000;
                s->deadline_ms = s->expires_at_ms;
            }
        }
        break;
    case FSM_EV_LOCAL_OS_SEEN:
        if (st == FSM_BOOTING_LOCAL || st == FSM_EXITING)
            enter(l, s, FSM_ACTIVE, now, out);
        break;
    case FSM_EV_TIMEOUT:
        if (s->deadline_ms == 0 || now < s->deadline_ms)
            break;
        if (st == FSM_RESCUE) {
            s->expires_at_ms = 0;
            enter(l, s, FSM_EXITING, now, out);
            out->actions =
                FSM_ACT_TARGET_LOCAL | FSM_ACT_BOOT_DISK | FSM_ACT_POWER_RESET;
            snprintf(out->reason, sizeof(out->reason),
                     "rescue ttl of %lld s expired", (long long)s->ttl_s);
            return;
        }
        if (st == FSM_BOOTING_LOCAL && in->no_console) {
            enter(l, s, FSM_ACTIVE, now, out);
            snprintf(out->reason, sizeof(out->reason),
                     "no console to watch: counted as up %lld s after it "
                     "headed for its disk (local_settle)",
                     (long long)(l->local_settle_ms / 1000));
            return;
        }
        if (!fsm_state_is_stable(st))
            step_timed_out(l, s, now, out);
        return;
    default:
        break;
    }
    if (out->changed)
        strlcpy_s(out->reason, why, sizeof(out->reason));
}
