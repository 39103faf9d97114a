/* power_driver: what power.c and its drivers (power_qmp.c, power_ipmi.c,
 * power_redfish.c, power_manual.c) share, and only they (and their tests)
 * include: the request, the per-server queue, completion, deadlines, and the
 * ops table through which power.c reaches a driver.  power_driver.c implements
 * the queue; it reaches drivers only through p->ops, so no driver calls into
 * power.c and power.c names no driver function.  docs/internals/power.md.
 *
 * One request at a time per server: the head of the queue is the active
 * one.  A request completes exactly once, through power_req_complete(),
 * and its callback runs later from a 0 ms timer, never inside
 * power_request().  Nothing here blocks. */
#ifndef RESCUED_POWER_DRIVER_H
#define RESCUED_POWER_DRIVER_H

#include "power_op.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct uri_power;

struct power_req {
    struct power_req *next;
    struct power *p;
    enum power_op op;
    char *arg;
    power_done_cb *cb;
    void *cbarg;
    int step;        /* driver: commands of the op started so far */
    uint64_t cmd_id; /* driver: its tag of the command in flight, 0 none */
    uint64_t timer;  /* the deadline (power_req_arm), 0 none */
    int deadline_ms; /* its length, for messages */
    int status;      /* result, once done */
    char *detail;
};

/* One power_preflight waiting for its verdict. */
struct power_check {
    struct power_check *next;
    struct power *p;
    void (*cb)(void *arg, int status,
               const char *err); /* power.h's power_preflight_cb */
    void *arg;
    uint64_t timer; /* the verdict's delivery */
    int status;
    char err[256];
};

struct power {
    const struct power_ops *ops;
    void *drv; /* the driver's own state, made by ops->init */
    struct loop *l;
    struct uri_power *u; /* parsed once, by uri.c */
    char *uri;
    char *name; /* for log lines; the uri by default */

    struct power_req *head, *tail;      /* queued, head is the active one */
    struct power_req *done, *done_tail; /* finished, callback not yet run */
    uint64_t defer_timer;
    bool draining;              /* inside the callbacks of done requests */
    bool closing;               /* inside power_free() */
    bool dead;                  /* power_free() called from a callback */
    struct power_check *checks; /* power_preflight's, waiting */
};

/* A driver.  power.c picks one by the uri's kind and calls nothing else of
 * it.  Every function runs on the loop and must not block, but reachable
 * (pre-flight), which says how long it may. */
struct power_ops {
    const char *name; /* "qmp", "ipmi", "manual" */
    bool manual;      /* the operator acts: power_is_manual() */
    bool media; /* has virtual media (POWER_MEDIA_*, POWER_CD_BOOT_ONCE) */
    /* Make p->drv from p->u; 0, or a negative errno with the reason in
     * err (then stop and free still run).  May queue requests of its own
     * (power_submit). */
    int (*init)(struct power *p, char *err, size_t errlen);
    /* Refuse what the driver cannot do before anything is touched: NULL,
     * or the reason (the caller frees it) with *status set (-ENOTSUP for
     * an op the driver has no command for: POWER_BOOT_DISK_ONCE on a
     * driver that cannot choose the boot device).  Unknown ops never get
     * here.  May be NULL: all accepted.  redfish answers
     * POWER_BOOT_DISK_ONCE in its request (Hdd, Once, read back). */
    char *(*check)(const struct power *p, const struct power_req *r,
                   int *status);
    /* r was just queued (at the tail) and checked: arm its deadline if
     * the driver times whole requests, start it when it is the head. */
    void (*request)(struct power *p, struct power_req *r);
    /* Start the head of the queue if nothing runs (after a timeout). */
    void (*pump)(struct power *p);
    /* r's deadline passed: stop what runs for it and return the detail
     * ("qmp PATH: no answer in N ms"); r then fails with -ETIMEDOUT and
     * ->pump starts the next. */
    char *(*timeout)(struct power *p, struct power_req *r);
    /* Pre-flight: see power_reachable() in power.h. */
    bool (*reachable)(struct power *p, char *err, size_t errlen);
    /* Credentials from FILE (power_set_credentials), right after init;
     * NULL: the driver takes none that way. */
    int (*credentials)(struct power *p, const char *file, char *err,
                       size_t errlen);
    /* The server's firmware from its config (power_set_firmware), right
     * after init; NULL: the driver has no use for it. */
    void (*firmware)(struct power *p, bool uefi);
    /* The same without blocking: start finding out, and call
     * power_check_done(c, ...) later from the loop.  NULL: reachable's
     * verdict is given at once.  stop forgets every check. */
    void (*preflight)(struct power *p, struct power_check *c);
    /* Close connections, end children: no I/O after this.  Idempotent;
     * p->drv may be NULL. */
    void (*stop)(struct power *p);
    /* Free p->drv (NULL is fine); stop has run. */
    void (*free)(struct power *p);
};

extern const struct power_ops power_qmp_ops;
extern const struct power_ops power_ipmi_ops;
extern const struct power_ops power_manual_ops;
extern const struct power_ops power_redfish_ops;

/* power_ipmi.c, pure, for tests: "on"/"off" from `power status` output
 * ("Chassis Power is on"), or NULL. */
const char *power_ipmi_parse_status(const char *out);
/* power_ipmi.c, pure, for tests: the boot device `chassis bootparam get 5`
 * shows ("pxe", "disk", "none", "other"), or NULL. */
const char *power_ipmi_parse_bootdev(const char *out);

/* "reset", "power on", ... for messages. */
const char *power_op_name(enum power_op op);

/* A struct power for l and uri, no driver yet; free with power_destroy. */
struct power *power_alloc(struct loop *l, const char *uri);
/* Free p at once: ops->stop and ops->free, then what power_alloc made. */
void power_destroy(struct power *p);

/* Queue a request: refused at once (unknown op, ops->check, closing) or
 * handed to ops->request.  power_request() is this; the ipmi driver's own
 * status probe uses it too. */
void power_submit(struct power *p, enum power_op op, const char *arg,
                  power_done_cb *cb, void *cbarg);
/* Take r off the queue (its deadline too) and hand it to the deferred
 * callbacks.  Takes ownership of detail (may be NULL). */
void power_req_complete(struct power_req *r, int status, char *detail);
/* (Re)arm r's deadline to ms from now; ops->timeout runs when it passes.
 * The length is in r->deadline_ms. */
void power_req_arm(struct power_req *r, int ms);
/* Stop r's deadline. */
void power_req_disarm(struct power_req *r);

/* A driver's work that outlives its struct power (redfish's logout of its
 * session): +1 when it starts, -1 when it ends.  power_lingering() and
 * power_drain() in power.h count them. */
void power_linger(int delta);
int power_linger_count(void);

/* c's verdict (err may be NULL when status is 0): cb runs from a 0 ms
 * timer. */
void power_check_done(struct power_check *c, int status, const char *err);

/* power_free() after ops->stop: cancel what is queued, run every callback
 * now (cancelling what they request), then free p, or mark it dead when
 * called from a callback (the deferred drain frees it). */
void power_close(struct power *p);

#ifdef UNITTEST
/* Every deadline armed from now on lasts ms (0: the driver's own). */
void power_test_set_timeout(int ms);
#endif

#endif
