/* power: the public interface (power.h).  It picks a driver by the uri's
 * kind and reaches it only through its ops table (power_driver.h); the
 * queue, completion and deadlines it shares with the drivers are in
 * power_driver.c.  docs/internals/power.md. */
#include "power.h"
#include "loop.h"
#include "power_driver.h"
#include "uri.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const struct {
    const char *scheme;
    const struct power_ops *ops; /* NULL: not written yet */
} drivers[] = {
    [URI_POWER_MANUAL] = {"manual", &power_manual_ops},
    [URI_POWER_QMP] = {"qmp", &power_qmp_ops},
    [URI_POWER_REDFISH] = {"redfish", &power_redfish_ops},
    [URI_POWER_IPMI] = {"ipmi", &power_ipmi_ops},
};

struct power *
power_new(struct loop *l, const char *uri, char *err, size_t errlen)
{
    struct power *p = power_alloc(l, uri);
    p->u = uri_power_parse(uri, err, errlen);
    if (!p->u)
        goto out_free;
    /* uri.c gives only the kinds of the table. */
    p->ops = drivers[p->u->kind].ops;
    if (!p->ops) {
        snprintf(err, errlen, "power: %s driver not implemented yet",
                 drivers[p->u->kind].scheme);
        goto out_free;
    }
    if (p->ops->init(p, err, errlen) < 0)
        goto out_free;
    return p;

out_free:
    power_destroy(p);
    return NULL;
}

void
power_set_name(struct power *p, const char *name)
{
    free(p->name);
    p->name = xstrdup(name);
}

int
power_set_credentials(struct power *p, const char *file, char *err,
                      size_t errlen)
{
    if (!p->ops->credentials) {
        snprintf(err, errlen,
                 "power_credentials: the %s driver takes its "
                 "credentials in the power uri",
                 p->ops->name);
        return -EINVAL;
    }
    return p->ops->credentials(p, file, err, errlen);
}

void
power_set_firmware(struct power *p, bool uefi)
{
    if (p->ops->firmware)
        p->ops->firmware(p, uefi);
}

void
power_free(struct power *p)
{
    if (!p || p->dead || p->closing)
        return;
    p->closing = true;
    p->ops->stop(p);
    power_close(p);
}

int
power_lingering(void)
{
    return power_linger_count();
}

void
power_drain(struct loop *l, int ms)
{
    int64_t end = now_mono_ms() + ms;
    while (power_lingering() > 0) {
        int64_t left = end - now_mono_ms();
        if (left <= 0)
            break;
        loop_run_once(l, left > 100 ? 100 : (int)left);
    }
}

void
power_request(struct power *p, enum power_op op, const char *arg,
              power_done_cb *cb, void *cbarg)
{
    power_submit(p, op, arg, cb, cbarg);
}

static bool sim_power; /* a process-wide command-line flag */

void
power_sim_set(bool on)
{
    sim_power = on;
}

bool
power_sim(void)
{
    return sim_power;
}

bool
power_is_manual(const struct power *p)
{
    return p->ops->manual;
}

bool
power_reachable(struct power *p, char *err, size_t errlen)
{
    return p->ops->reachable(p, err, errlen);
}

void
power_preflight(struct power *p, power_preflight_cb *cb, void *arg)
{
    struct power_check *c = xcalloc(1, sizeof(*c));
    c->p = p;
    c->cb = cb;
    c->arg = arg;
    c->next = p->checks;
    p->checks = c;
    if (p->closing || p->dead) {
        power_check_done(c, -ECANCELED, "power driver closing");
    } else if (p->ops->preflight) {
        p->ops->preflight(p, c);
    } else {
        char err[256] = "";
        bool ok = p->ops->reachable(p, err, sizeof(err));
        power_check_done(c, ok ? 0 : -EHOSTUNREACH, err);
    }
}
