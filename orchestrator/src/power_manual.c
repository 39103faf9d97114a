/* power_manual: manual:, the operator power-cycles.  Every op but status
 * succeeds at once with a log line that tells the operator what to do;
 * the state machine then waits for them (power_is_manual).  Under
 * --sim-power (power_sim) a simulated hand acts at once instead: a debug
 * line, and POWER_STATUS answers the power it left the server in. */
#include "log.h"
#include "power.h"
#include "power_driver.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

/* The simulated hand's memory: is the server on? */
struct manual_sim {
    bool on;
};

static int
manual_init(struct power *p, char *err, size_t errlen)
{
    if (power_sim())
        p->drv = xcalloc(1, sizeof(struct manual_sim));
    (void)err;
    (void)errlen;
    return 0;
}

static char *
manual_check(const struct power *p, const struct power_req *r, int *status)
{
    *status = -ENOTSUP;
    if (r->op == POWER_STATUS && !p->drv)
        return xstrdup("manual: power status is not known");
    /* The operator's reset boots whatever the firmware picks: the iPXE
     * script sends the server home. */
    if (r->op == POWER_BOOT_DISK_ONCE)
        return xstrdup("manual: cannot choose the boot device");
    return NULL;
}

static void
manual_request(struct power *p, struct power_req *r)
{
    struct manual_sim *sim = p->drv;
    if (sim) {
        if (r->op == POWER_RESET || r->op == POWER_ON)
            sim->on = true;
        else if (r->op == POWER_OFF)
            sim->on = false;
        log_debug("%s: sim-power: %s done at once", p->name,
                  power_op_name(r->op));
        const char *st = sim->on ? "running" : "shutdown";
        /* the detail is the queue's to free */
        power_req_complete(r, 0, r->op == POWER_STATUS ? xstrdup(st) : NULL);
        return;
    }
    log_info("%s: operator must power-cycle (%s)", p->name,
             power_op_name(r->op));
    power_req_complete(r, 0, NULL);
}

/* Nothing ever waits: no deadline, nothing to start or stop. */
static void
manual_nothing(struct power *p)
{
    (void)p;
}

static void
manual_free(struct power *p)
{
    free(p->drv);
    p->drv = NULL;
}

static char *
manual_timeout(struct power *p, struct power_req *r)
{
    (void)p;
    (void)r;
    return NULL;
}

static bool
manual_reachable(struct power *p, char *err, size_t errlen)
{
    (void)p;
    (void)err;
    (void)errlen;
    return true;
}

const struct power_ops power_manual_ops = {
    .name = "manual",
    .manual = true,
    .init = manual_init,
    .check = manual_check,
    .request = manual_request,
    .pump = manual_nothing,
    .timeout = manual_timeout,
    .reachable = manual_reachable,
    .stop = manual_nothing,
    .free = manual_free,
};
