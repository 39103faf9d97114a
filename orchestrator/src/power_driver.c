/* power_driver: the per-server request queue, deferred completion and
 * deadlines that power.c and every driver share.  Drivers are reached
 * through p->ops only. */
#include "power_driver.h"
#include "log.h"
#include "loop.h"
#include "uri.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int test_timeout_ms; /* 0: each driver's own */

static const char *const op_names[] = {
    [POWER_RESET] = "reset",
    [POWER_ON] = "power on",
    [POWER_OFF] = "power off",
    [POWER_STATUS] = "status",
    [POWER_NMI] = "nmi",
    [POWER_SYSRQ] = "sysrq",
    [POWER_SERIAL_BREAK] = "serial break",
    [POWER_NETBOOT_ONCE] = "netboot once",
    [POWER_BOOT_DISK_ONCE] = "disk boot once",
    [POWER_MEDIA_INSERT] = "insert media",
    [POWER_MEDIA_EJECT] = "eject media",
    [POWER_CD_BOOT_ONCE] = "cd boot once",
};

const char *
power_op_name(enum power_op op)
{
    if ((unsigned)op < sizeof(op_names) / sizeof(op_names[0]) && op_names[op])
        return op_names[op];
    return "unknown op";
}

struct power *
power_alloc(struct loop *l, const char *uri)
{
    struct power *p = xcalloc(1, sizeof(*p));
    p->l = l;
    p->uri = xstrdup(uri ? uri : "");
    /* The name is for log lines: never the BMC's password. */
    p->name = uri_redact(p->uri);
    return p;
}

/* --- pre-flight checks ------------------------------------------------- */

static void
check_unlink(struct power_check *c)
{
    for (struct power_check **pp = &c->p->checks; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
}

static int64_t
check_fire(struct loop *l, void *arg)
{
    (void)l;
    struct power_check *c = arg;
    c->timer = 0;
    check_unlink(c);
    c->cb(c->arg, c->status, c->err);
    free(c);
    return -1;
}

void
power_check_done(struct power_check *c, int status, const char *err)
{
    c->status = status;
    strlcpy_s(c->err, err ? err : "", sizeof(c->err));
    /* Closing: power_close's loop delivers it (no timer to outlive p). */
    if (!c->p->closing && !c->timer)
        c->timer = loop_add_timer(c->p->l, 0, check_fire, c);
}

/* Every waiting check ends cancelled, callbacks now (a callback may ask
 * again: it is cancelled too). */
static void
checks_cancel(struct power *p)
{
    while (p->checks) {
        struct power_check *c = p->checks;
        p->checks = c->next;
        loop_del_timer(p->l, c->timer);
        c->cb(c->arg, -ECANCELED, "power driver closed");
        free(c);
    }
}

void
power_destroy(struct power *p)
{
    loop_del_timer(p->l, p->defer_timer);
    checks_cancel(p);
    if (p->ops) {
        p->ops->stop(p);
        p->ops->free(p);
    }
    free(p->uri);
    free(p->name);
    uri_power_free(p->u);
    free(p);
}

/* --- completion ------------------------------------------------------- */

static void
req_free(struct power_req *r)
{
    if (!r)
        return;
    free(r->arg);
    free(r->detail);
    free(r);
}

/* Run the callback of the oldest done request; false when none. */
static bool
deliver_one(struct power *p)
{
    struct power_req *r = p->done;
    if (!r)
        return false;
    p->done = r->next;
    if (!p->done)
        p->done_tail = NULL;
    r->cb(r->cbarg, r->status, r->detail);
    req_free(r);
    return true;
}

static int64_t
defer_fire(struct loop *l, void *arg)
{
    (void)l;
    struct power *p = arg;
    p->defer_timer = 0;
    p->draining = true;
    while (!p->dead && deliver_one(p))
        ;
    p->draining = false;
    if (p->dead)
        power_destroy(p);
    return -1;
}

void
power_req_disarm(struct power_req *r)
{
    loop_del_timer(r->p->l, r->timer);
    r->timer = 0;
}

void
power_req_complete(struct power_req *r, int status, char *detail)
{
    struct power *p = r->p;
    struct power_req **pp = &p->head, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = r->next;
        if (p->tail == r)
            p->tail = prev;
    }
    power_req_disarm(r);
    r->next = NULL;
    r->status = status;
    free(r->detail);
    r->detail = detail;
    if (status < 0)
        log_debug("%s: %s failed: %s", p->name, power_op_name(r->op),
                  detail ? detail : strerror(-status));
    if (p->done_tail)
        p->done_tail->next = r;
    else
        p->done = r;
    p->done_tail = r;
    if (!p->defer_timer && !p->draining)
        p->defer_timer = loop_add_timer(p->l, 0, defer_fire, p);
}

/* --- deadlines -------------------------------------------------------- */

static int64_t
req_deadline(struct loop *l, void *arg)
{
    (void)l;
    struct power_req *r = arg;
    struct power *p = r->p;
    r->timer = 0;
    power_req_complete(r, -ETIMEDOUT, p->ops->timeout(p, r));
    p->ops->pump(p);
    return -1;
}

void
power_req_arm(struct power_req *r, int ms)
{
    power_req_disarm(r);
    r->deadline_ms = test_timeout_ms ? test_timeout_ms : ms;
    r->timer = loop_add_timer(r->p->l, r->deadline_ms, req_deadline, r);
}

/* --- the queue -------------------------------------------------------- */

void
power_submit(struct power *p, enum power_op op, const char *arg,
             power_done_cb *cb, void *cbarg)
{
    struct power_req *r = xcalloc(1, sizeof(*r));
    r->p = p;
    r->op = op;
    r->arg = arg ? xstrdup(arg) : NULL;
    r->cb = cb;
    r->cbarg = cbarg;
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;

    int status = -EINVAL;
    char *why = NULL;
    if ((unsigned)op >= POWER_NOPS) {
        why = xstrdup("unknown power op");
    } else if (!p->ops->media &&
               (op == POWER_MEDIA_INSERT || op == POWER_MEDIA_EJECT ||
                op == POWER_CD_BOOT_ONCE)) {
        status = -ENOTSUP;
        why = xasprintf("%s: no virtual media", p->ops->name);
    } else if (p->ops->check)
        why = p->ops->check(p, r, &status);
    if (why)
        power_req_complete(r, status, why);
    else if (p->closing)
        power_req_complete(r, -ECANCELED, xstrdup("power driver stopped"));
    else
        p->ops->request(p, r);
}

static void
cancel_queued(struct power *p)
{
    while (p->head)
        power_req_complete(p->head, -ECANCELED,
                           xstrdup("power driver stopped"));
}

static int lingering;

void
power_linger(int delta)
{
    lingering += delta;
}

int
power_linger_count(void)
{
    return lingering;
}

void
power_close(struct power *p)
{
    /* Finished ones report what happened; the rest are cancelled. */
    cancel_queued(p);
    bool in_cb = p->draining;
    p->draining = true;
    while (deliver_one(p))
        cancel_queued(p); /* requested from a callback just now */
    if (in_cb)
        p->dead = true; /* defer_fire() frees it on the way out */
    else
        power_destroy(p);
}

#ifdef UNITTEST
void
power_test_set_timeout(int ms)
{
    test_timeout_ms = ms;
}
#endif
