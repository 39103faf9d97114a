/* power_manual: manual:, the operator power-cycles.  Every op but status
 * succeeds at once with a log line that tells the operator what to do;
 * the state machine then waits for them (power_is_manual). */
#include "log.h"
#include "power_driver.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>

static int
manual_init(struct power *p, char *err, size_t errlen)
{
    (void)p;
    (void)err;
    (void)errlen;
    return 0;
}

static char *
manual_check(const struct power *p, const struct power_req *r, int *status)
{
    (void)p;
    *status = -ENOTSUP;
    if (r->op == POWER_STATUS)
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
    .free = manual_nothing,
};
