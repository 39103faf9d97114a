/* fsm: each server's rescue state machine, pure: (state, event, now) ->
 * (new state, actions).  No I/O; fleet stores the result and runs the
 * actions.  Times are wall-clock milliseconds so they survive a restart. */
#ifndef RESCUED_FSM_H
#define RESCUED_FSM_H

#include <stdbool.h>
#include <stdint.h>

enum fsm_state {
    FSM_ACTIVE,           /* running its own OS (or we believe so) */
    FSM_RESCUE_REQUESTED, /* token, overlay and boot target being prepared */
    FSM_REBOOTING,        /* reset sent; waiting for its iPXE script fetch */
    FSM_PXE_BOOTING,      /* fetched the script; waiting for the kernel */
    FSM_RESCUE_BOOTING,   /* rescue kernel fetched; waiting for phone-home */
    FSM_RESCUE,           /* the rescue OS phoned home */
    FSM_EXITING,          /* target local, reset sent; waiting for script */
    FSM_BOOTING_LOCAL,    /* local-boot script fetched; waiting for the OS */
    FSM_RESCUE_FAILED,
    FSM_EXIT_FAILED,
    FSM_NSTATES
};

enum fsm_event {
    /* What a user asks for. */
    FSM_EV_RESCUE,
    FSM_EV_EXIT_RESCUE,
    FSM_EV_REBOOT,
    FSM_EV_POWER_ON,
    FSM_EV_POWER_OFF,
    /* What the daemon observes. */
    FSM_EV_PREPARED,       /* rescue prepared: token, target, overlay */
    FSM_EV_STEP_FAILED,    /* an action of this step failed; detail says why */
    FSM_EV_IPXE_FETCHED,   /* GET /boot/<mac>.ipxe */
    FSM_EV_KERNEL_FETCHED, /* GET /images/<kernel> */
    FSM_EV_INITRD_FETCHED,
    FSM_EV_OVERLAY_FETCHED,
    FSM_EV_PHONE_HOME,    /* POST /v1/phone-home/<token> */
    FSM_EV_LOCAL_OS_SEEN, /* the console shows the installed OS booting */
    FSM_EV_RESET_TO_DISK, /* reset done with a one-time disk boot set */
    FSM_EV_TIMEOUT,       /* the state's deadline passed */
    /* boot = virtualmedia: the rescue OS booted from the boot's CD asks for
     * its overlay (no kernel was fetched: it is on the CD) */
    FSM_EV_CD_BOOTED,
    FSM_EV_GRUB_FETCHED, /* GET /boot/<mac>.grub: as FSM_EV_IPXE_FETCHED */
    FSM_NEVENTS
};

/* Actions, as bits; fleet runs them in this order. */
enum fsm_action {
    FSM_ACT_PREPARE_RESCUE = 1u << 0, /* mint token, target rescue, netboot */
    FSM_ACT_TARGET_LOCAL = 1u << 1,   /* target local disk, revoke token */
    FSM_ACT_POWER_OFF = 1u << 2,
    FSM_ACT_POWER_ON = 1u << 3,
    FSM_ACT_POWER_RESET = 1u << 4,
    FSM_ACT_CLEAR_RESCUE_INFO = 1u << 5, /* forget ip, fingerprints, disks */
    /* ask the driver for a one-time disk boot, before the reset */
    FSM_ACT_BOOT_DISK = 1u << 6,
};

struct fsm_server {
    enum fsm_state state;
    int64_t since_ms;      /* when the state was entered */
    int64_t deadline_ms;   /* when FSM_EV_TIMEOUT is due; 0: none */
    int retries;           /* retries used in the current step */
    int64_t ttl_s;         /* requested rescue ttl; 0: none */
    int64_t expires_at_ms; /* in rescue with a ttl: when it exits itself */
    char last_error[256];  /* "rebooting: timed out after 120 s, 2 retries" */
};

struct fsm_limits {
    int64_t timeout_ms[FSM_NSTATES]; /* 0: the state has no timeout */
    int max_retries;                 /* per step */
    /* A server without a console: booting_local lasts this long, then
     * it counts as up.  0: at once. */
    int64_t local_settle_ms;
};

struct fsm_input {
    enum fsm_event event;
    int64_t ttl_s;      /* FSM_EV_RESCUE: 0 for none */
    const char *detail; /* FSM_EV_STEP_FAILED: the cause; may be NULL */
    bool no_console;    /* every event: the server has no console to watch */
};

struct fsm_output {
    int status;       /* 0 accepted; -EBUSY: the action does not fit */
    bool changed;     /* the state changed: store a transition */
    unsigned actions; /* enum fsm_action bits */
    char reason[256]; /* why refused, or what moved the state */
};

/* Defaults: the timeouts of the steps in docs/design.md §5, 2 retries. */
void fsm_limits_default(struct fsm_limits *l);
/* A new server: FSM_ACTIVE since now. */
void fsm_server_init(struct fsm_server *s, int64_t now_ms);
/* Feed one event.  Updates *s in place and fills *out. */
void fsm_step(const struct fsm_limits *l, struct fsm_server *s,
              const struct fsm_input *in, int64_t now_ms,
              struct fsm_output *out);
/* A resumed step (after a restart, or on a rebuilt driver) runs its
 * pending actions again, which starts its wait again: it gets a fresh
 * deadline, its retries kept.  Stable states keep theirs: the rescue ttl
 * is the user's clock, and one that ran out meanwhile ends now.  True when
 * s->deadline_ms was renewed. */
bool fsm_resume(const struct fsm_limits *l, struct fsm_server *s,
                unsigned pending, int64_t now_ms);

const char *fsm_state_name(enum fsm_state s);
const char *fsm_event_name(enum fsm_event e);
/* Returns -1 for an unknown name. */
int fsm_state_parse(const char *name);
/* Stable states accept user actions; the others are transitions. */
bool fsm_state_is_stable(enum fsm_state s);

#endif
