/* power_op: the words power.h's callers and the drivers (power_driver.h)
 * share: what can be asked of a server's power, and how the answer comes
 * back.  Types only, no code; both headers include it, so neither
 * includes the other. */
#ifndef RESCUED_POWER_OP_H
#define RESCUED_POWER_OP_H

enum power_op {
    POWER_RESET, /* hard reset; powers on when off */
    POWER_ON,
    POWER_OFF,    /* hard off */
    POWER_STATUS, /* detail: "running", "paused", "shutdown", ... */
    POWER_NMI,
    POWER_SYSRQ,        /* arg: one key, e.g. "h" */
    POWER_SERIAL_BREAK, /* arg: chardev id, e.g. "serial0" */
    POWER_NETBOOT_ONCE, /* next boot from the network, if the driver can */
    /* Next boot from the local disk, if the driver can (-ENOTSUP: it
     * cannot choose; the iPXE script then sends the server home).  Asked
     * right before POWER_RESET, which carries it out: qmp takes the NIC
     * out of the boot order for that one reset and puts it back once the
     * reset is done; ipmi sets `chassis bootdev disk` and reads it back;
     * redfish PATCHes BootSourceOverrideTarget Hdd, Once and reads it
     * back. */
    POWER_BOOT_DISK_ONCE,
    /* Virtual media (redfish: the manager's virtual CD; other drivers
     * refuse them, -ENOTSUP): arg the image's URL; read back. */
    POWER_MEDIA_INSERT,
    POWER_MEDIA_EJECT,
    POWER_CD_BOOT_ONCE, /* next boot from the (virtual) CD */
    POWER_NOPS          /* not an op: how many there are */
};

/* status: 0 done; negative errno on failure (-ENOTSUP: the driver cannot).
 * detail: on failure the reason a user reads; on POWER_STATUS the state. */
typedef void power_done_cb(void *arg, int status, const char *detail);
/* The driver is about to send the command that carries a POWER_RESET out
 * (ipmitool `power reset` or `power on`, QMP system_reset, Redfish's Reset
 * POST): from here on the BMC may do it whatever becomes of rescued. */
typedef void power_sending_cb(void *arg);

#endif
