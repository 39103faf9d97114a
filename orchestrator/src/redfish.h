/* redfish: the Redfish resources the power driver reads and the bodies it
 * sends, as pure functions over JSON text (jansson): the service root, a
 * collection's members, a ComputerSystem (power state, Reset action and
 * its allowed ResetTypes, @Redfish.Settings, Boot), an ActionInfo, a Task,
 * a Redfish error's words; the login, reset and boot-override bodies; the
 * choice of ResetType.  Ground floor: no I/O, depends only on util and
 * jansson.  power_redfish.c does the HTTP.  docs/internals/power.md. */
#ifndef RESCUED_REDFISH_H
#define RESCUED_REDFISH_H

#include <stdbool.h>
#include <stddef.h>

/* Answers bigger than this are refused (a BMC's are a few KB). */
#define REDFISH_MAX_BODY (1024 * 1024)

struct redfish_root {
    char *systems;  /* "@odata.id" of Systems, NULL if absent */
    char *managers; /* of Managers, or NULL */
    char *sessions; /* the session collection, NULL: HTTP Basic only */
};

struct redfish_system {
    char *power_state; /* "On", "Off", ... or NULL */
    char *reset_uri;   /* the Reset action's target, or NULL */
    char **resets;     /* allowed ResetTypes when listed inline */
    size_t nresets;
    bool resets_listed; /* listed (inline or by ActionInfo) */
    char *action_info;  /* @Redfish.ActionInfo, or NULL */
    char *settings;     /* @Redfish.Settings' SettingsObject, or NULL */
    char *manager;      /* Links.ManagedBy[0], or NULL */
    bool has_boot;
    char *boot_target, *boot_enabled, *boot_mode; /* NULL when absent */
    char **targets; /* BootSourceOverrideTarget@Redfish.AllowableValues */
    size_t ntargets;
};

/* 0, or -EPROTO with the reason in err (not JSON, not an object). */
int redfish_parse_root(const char *body, size_t len, struct redfish_root *out,
                       char *err, size_t errlen);
void redfish_root_clear(struct redfish_root *r);

/* The members of a collection ("Members": [{"@odata.id": ...}]): a NULL-
 * terminated vector (strv_free), *n how many; NULL on a parse error. */
char **redfish_parse_members(const char *body, size_t len, size_t *n, char *err,
                             size_t errlen);

int redfish_parse_system(const char *body, size_t len,
                         struct redfish_system *out, char *err, size_t errlen);
void redfish_system_clear(struct redfish_system *s);

/* A virtual media resource (Managers/ID/VirtualMedia/X). */
struct redfish_media {
    bool cd;       /* MediaTypes holds CD or DVD */
    char *image;   /* Image, NULL when none */
    bool inserted; /* Inserted, or an Image when Inserted is absent */
    char *insert;  /* the InsertMedia action's target, or NULL: PATCH */
    char *eject;   /* the EjectMedia action's target, or NULL: PATCH */
};
int redfish_parse_media(const char *body, size_t len, struct redfish_media *m,
                        char *err, size_t errlen);
void redfish_media_clear(struct redfish_media *m);
/* obj[key]["@odata.id"] of an answer (a manager's "VirtualMedia"), or
 * NULL. */
char *redfish_parse_link(const char *body, size_t len, const char *key);
/* InsertMedia's body: {Image, Inserted: true, WriteProtected: true}, or
 * only {Image} when plain (Supermicro X11 refuses the others); a PATCH's
 * when image is NULL: {"Image": null} (eject). */
char *redfish_media_body(const char *image, bool plain);

/* An ActionInfo's ResetType AllowableValues into s (resets_listed). */
int redfish_parse_action_info(const char *body, size_t len,
                              struct redfish_system *s, char *err,
                              size_t errlen);

/* A Task's TaskState ("Completed", "Running", "Exception"...), or NULL;
 * *msg its first message (Messages[0].Message), or NULL.  Both to free. */
char *redfish_parse_task(const char *body, size_t len, char **msg);

/* What the BMC said in an error body ({"error": {"@Message.ExtendedInfo":
 * [{"Message"}], "message"}}), cut to 200 bytes, or NULL. */
char *redfish_error_words(const char *body, size_t len);

/* The bodies sent, compact JSON (to free). */
char *redfish_login_body(const char *user, const char *pass);
char *redfish_reset_body(const char *reset_type);
/* {"Boot": {Target, Enabled: "Once", Mode (left out when NULL)}} */
char *redfish_boot_body(const char *target, const char *mode);
/* {"Boot": {Target: "None", Enabled: "Disabled"}} */
char *redfish_boot_clear_body(void);

enum redfish_want {
    REDFISH_RESTART, /* ForceRestart, PowerCycle, else ForceOff then On */
    REDFISH_ON,
    REDFISH_OFF,
    REDFISH_NMI,
};

/* The i-th ResetType to try for want (i from 0), among the allowed ones
 * when s lists them (all standard ones otherwise), or NULL when there is
 * none left.  For REDFISH_RESTART the value "ForceOff+On" stands for the
 * two resets in a row. */
const char *redfish_pick_reset(const struct redfish_system *s,
                               enum redfish_want want, int i);
/* Is v in the vector (NULL-terminated)? */
bool redfish_listed(char *const *v, const char *s);

/* The If-Match to send for an ETag at stage 0 (as given), 1 (a weak one
 * as strong; NULL when it was strong: skip), 2 (none: NULL). */
const char *redfish_if_match(const char *etag, int stage);

#endif
