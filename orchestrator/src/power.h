/* power: a server's power and boot device, behind one interface.  The
 * drivers, one file each behind an ops table (power_driver.h):
 * qmp:PATH (power_qmp.c, QEMU QMP on a unix socket), ipmi:// (power_ipmi.c,
 * the real ipmitool -I lanplus, as a child) and manual: (power_manual.c,
 * the operator power-cycles) and redfish:// (power_redfish.c, libcurl
 * multi on the loop).  Requests are
 * asynchronous on the event loop, one at a time per server; each completes
 * exactly once.  Nothing blocks but power_reachable (see there).
 * docs/internals/power.md. */
#ifndef RESCUED_POWER_H
#define RESCUED_POWER_H

#include "power_op.h"

#include <stdbool.h>
#include <stddef.h>

struct loop;
struct power;

/* Parse uri and make a driver; NULL with a reason in err for a bad uri. */
struct power *power_new(struct loop *l, const char *uri, char *err,
                        size_t errlen);
/* The driver's user and password from FILE (first line USER:PASSWORD,
 * mode 0600), instead of the uri's; right after power_new.  Only redfish
 * takes them (-EINVAL otherwise); 0, or a negative errno with the reason
 * in err, which never holds the password. */
int power_set_credentials(struct power *p, const char *file, char *err,
                          size_t errlen);
/* The server's firmware (config's firmware =), right after power_new:
 * redfish sends BootSourceOverrideMode UEFI or Legacy from it unless the
 * uri says boot=; other drivers ignore it. */
void power_set_firmware(struct power *p, bool uefi);
/* Pending requests complete with -ECANCELED before this returns. */
void power_free(struct power *p);
/* What freed drivers still do on the loop (a Redfish logout, bounded by
 * its own deadline of a few seconds): how many. */
int power_lingering(void);
/* At the daemon's stop, after every power_free: run the loop until nothing
 * lingers, at most ms. */
void power_drain(struct loop *l, int ms);

/* Start op.  cb runs later from the loop, never before this returns. */
void power_request(struct power *p, enum power_op op, const char *arg,
                   power_done_cb *cb, void *cbarg);

/* rescued --sim-power, for benchmarks only (scripts/bench-fleet): manual:
 * power is played by a simulated hand that acts at once, quietly (no
 * "operator must power-cycle" line per server), and answers
 * POWER_STATUS from what it did.  rescued refuses it with any other
 * driver in the config (config_check_sim_power). */
void power_sim_set(bool on);
bool power_sim(void);

/* True for manual: the state machine waits for the operator. */
bool power_is_manual(const struct power *p);
/* Pre-flight, cheap and synchronous: can the driver be reached now?
 * (qmp: the socket exists and accepts a connection.  ipmi: the BMC
 * answers an RMCP ping, blocking at most 300 ms, and the last
 * `power status` worked; a failed one is asked again in the background.)
 * QEMU serves one QMP client per socket at a time: other tools need a
 * second -qmp socket. */
bool power_reachable(struct power *p, char *err, size_t errlen);
/* The pre-flight's verdict: status 0 (reachable), a negative errno with
 * the reason in err, or -ECANCELED when p was freed first. */
typedef void power_preflight_cb(void *arg, int status, const char *err);
/* power_reachable without blocking the loop: cb runs later from the loop
 * (never before this returns), once.  ipmi looks the BMC up (resolve.h)
 * and pings it on the loop; the other drivers answer power_reachable's
 * verdict from a 0 ms timer. */
void power_preflight(struct power *p, power_preflight_cb *cb, void *arg);
/* Name used in log lines ("srv1: operator must power-cycle"); the
 * default is the uri. */
void power_set_name(struct power *p, const char *name);

#endif
