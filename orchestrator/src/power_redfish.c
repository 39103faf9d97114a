/* power_redfish: redfish://[USER:PASS@]HOST[:PORT]/Systems/ID
 * [?ca=FILE|tls=insecure&boot=uefi|legacy], a BMC's Redfish service over
 * HTTPS.
 *
 * libcurl's multi interface on the daemon's loop (its socket and timer
 * callbacks become loop fd watchers and timers): one multi and one easy
 * handle per BMC, so one keep-alive connection, and one request at a time
 * (the queue of power_driver.c).  Every HTTP exchange has a timeout, no
 * redirect is followed, only https is spoken, and the certificate is
 * checked unless the URI says tls=insecure (logged as a warning).
 *
 * Discovery, before the first op and after a BMC restart: the service
 * root, the system (the URI's, or the only member of Systems), its
 * ActionInfo when the Reset action points at one, and a session
 * (X-Auth-Token) when there is a SessionService; HTTP Basic otherwise.  A
 * 401 logs in again once and replays the request; a 503 or a refused
 * connection is retried a few times a second apart.  The ops, their
 * ResetType choices and the one-time boot with its read-backs are in
 * docs/internals/power.md.  Passwords and tokens reach no log line: the
 * debug log shows method, path and status only.  Nothing here blocks. */
#include "log.h"
#include "loop.h"
#include "power_driver.h"
#include "redfish.h"
#include "uri.h"
#include "util.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define RF_HTTP_MS 15000    /* one exchange */
#define RF_CONNECT_MS 5000  /* its connect and TLS handshake */
#define RF_REQ_MS 120000    /* a whole op, task monitors included */
#define RF_TASK_POLL_MS 500 /* between two looks at a task monitor */
#define RF_RETRY_MS 1000    /* after a 503 or a refused connection */
#define RF_RETRIES 5
#define RF_BOOT_TRIES 3   /* PATCH + read back, for one override */
#define RF_STALE_MS 30000 /* pre-flight's answer is refreshed after this */

enum rf_step {
    ST_IDLE,
    ST_ROOT,
    ST_LOGIN,
    ST_SYSTEMS,
    ST_SYSTEM,
    ST_ACTIONINFO,
    ST_OP_GET,     /* the system, for the op */
    ST_RESET,      /* POST Reset */
    ST_TASK,       /* GET the task monitor */
    ST_BOOT_GET,   /* GET where Boot is PATCHed: its ETag */
    ST_BOOT_PATCH, /* PATCH Boot */
    ST_BOOT_READ,  /* GET it back */
    ST_CLEAR,      /* PATCH Boot back to None after the exit's reset */
    ST_VM_MANAGER, /* GET the manager: its VirtualMedia */
    ST_VM_LIST,    /* GET the VirtualMedia collection */
    ST_VM_MEMBER,  /* GET one member: a CD? */
    ST_VM_GET,     /* GET the CD before inserting or ejecting */
    ST_VM_EJECT,   /* EjectMedia (or PATCH Image null) */
    ST_VM_INSERT,  /* InsertMedia (or PATCH Image) */
    ST_VM_READ,    /* GET the CD back */
};

struct rf {
    struct rf_curl *c;
    CURL *easy;
    struct curl_slist *hdrs;
    uint64_t wait_timer;
    bool busy; /* the easy handle is in the multi */
    struct buf in;
    char *etag, *location, *token_hdr; /* from the answer's headers */
    bool too_big;
    char errbuf[CURL_ERROR_SIZE];

    char *base;  /* "https://host:port" */
    char *where; /* "host:port", for messages */
    char *user, *pass;

    /* discovery */
    bool discovered;
    char *sessions; /* the session collection, NULL: Basic */
    char *system;   /* the system's path */
    char *patch;    /* where Boot is PATCHed: @Redfish.Settings or system */
    char *fw_mode;  /* BootSourceOverrideMode to send, NULL: none */
    const char *fw_hint; /* from the config's firmware, or NULL */
    bool mode_refused;
    struct redfish_system sys;  /* the system's last answer */
    struct redfish_system boot; /* where Boot is PATCHed: its last answer */
    char *token;                /* X-Auth-Token, or NULL */
    char *session;              /* its session's path, DELETEd at stop */

    /* the exchange in flight, kept to replay after a login or a 503 */
    const char *q_method;
    char *q_path, *q_body, *q_ifm;
    enum rf_step q_step;
    bool replay_login; /* the login is for r_*, not discovery */
    const char *r_method;
    char *r_path, *r_body, *r_ifm;
    enum rf_step r_step;
    bool relogged; /* once per request */
    int retries;

    /* the op */
    enum redfish_want want;
    int reset_i;
    int off_then_on; /* 1: ForceOff sent, 2: On sent */
    const char *boot_want;
    const char *sent_mode;
    bool verify; /* the boot read inside a reset, before it */
    bool was_off;
    int boot_tries, ifm_stage;
    char *boot_etag;
    char *words; /* what the BMC said last, for the failure */

    /* virtual media: the manager's CD, found on first use */
    char *vm;          /* its path, or NULL */
    char **vm_members; /* while looking for it */
    int vm_i;
    struct redfish_media media; /* its last answer */
    bool vm_plain;       /* InsertMedia without Inserted/WriteProtected */
    bool vm_then_insert; /* ejecting an old image before the insert */

    /* the one-time boot set and not yet carried out by a reset */
    const char *armed;
    bool armed_continuous;

    /* pre-flight */
    char *pre_err;
    bool answered, probing;
    bool said_ok; /* the last probe worked, and the log said so */
    int64_t answered_at;
    uint64_t start_timer;
};

static struct rf *
rf_of(const struct power *p)
{
    return p->drv;
}

static void rf_step(struct power *p, struct power_req *r, long code);
static void rf_pump(struct power *p);
static void rf_send(struct power *p, enum rf_step step, const char *method,
                    const char *path, char *body, const char *ifm);

/* --- curl on the loop ----------------------------------------------- */

/* One multi on the loop: its sockets become fd watchers, its timer a loop
 * timer, and done(arg) runs after curl did its part.  A driver's, until
 * its stop hands it (with its easy handle and keep-alive connection) to
 * the session's logout. */
struct rf_curl {
    struct loop *l;
    CURLM *multi;
    uint64_t timer;
    void (*done)(void *arg);
    void *arg;
};

static void
rf_on_sock(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    struct rf_curl *c = arg;
    int mask = 0, running;
    if (events & EPOLLIN)
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(c->multi, fd, mask, &running);
    c->done(c->arg);
}

static int
rf_sockfn(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    struct rf_curl *c = userp;
    if (what == CURL_POLL_REMOVE) {
        /* curl forgets the socket's pointer itself (and may be inside
         * curl_multi_cleanup). */
        loop_del_fd(c->l, s);
        return 0;
    }
    uint32_t ev = (what & CURL_POLL_IN ? EPOLLIN : 0) |
                  (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (socketp) {
        loop_mod_fd(c->l, s, ev);
    } else if (loop_add_fd(c->l, s, ev, rf_on_sock, c) == 0) {
        curl_multi_assign(c->multi, s, c);
    }
    return 0;
}

static int64_t
rf_on_curl_timer(struct loop *l, void *arg)
{
    (void)l;
    struct rf_curl *c = arg;
    int running;
    c->timer = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    c->done(c->arg);
    return -1;
}

static int
rf_timerfn(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    struct rf_curl *c = userp;
    loop_del_timer(c->l, c->timer);
    c->timer = 0;
    if (timeout_ms >= 0)
        c->timer = loop_add_timer(c->l, timeout_ms, rf_on_curl_timer, c);
    return 0;
}

static struct rf_curl *
rf_curl_new(struct loop *l, void (*done)(void *arg), void *arg)
{
    struct rf_curl *c = xcalloc(1, sizeof(*c));
    c->l = l;
    c->done = done;
    c->arg = arg;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, rf_sockfn);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, rf_timerfn);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    return c;
}

/* Closes its connections (easy handles removed first). */
static void
rf_curl_free(struct rf_curl *c)
{
    if (!c)
        return;
    curl_multi_cleanup(c->multi);
    loop_del_timer(c->l, c->timer);
    free(c);
}

static size_t
rf_on_body(char *data, size_t size, size_t n, void *arg)
{
    struct rf *f = arg;
    if (f->in.len + n > REDFISH_MAX_BODY) {
        f->too_big = true;
        return 0;
    }
    buf_append(&f->in, data, n);
    return n * size;
}

/* value of "Name: value\r\n" when the line is that header, else NULL */
static char *
header_value(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return NULL;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    char *out = xmalloc((size_t)(end - v) + 1);
    memcpy(out, v, (size_t)(end - v));
    out[end - v] = '\0';
    return out;
}

static size_t
rf_on_header(char *line, size_t size, size_t n, void *arg)
{
    struct rf *f = arg;
    char *v;
    if ((v = header_value(line, n, "ETag"))) {
        free(f->etag);
        f->etag = v;
    } else if ((v = header_value(line, n, "Location"))) {
        free(f->location);
        f->location = v;
    } else if ((v = header_value(line, n, "X-Auth-Token"))) {
        free(f->token_hdr);
        f->token_hdr = v;
    }
    return n * size;
}

/* Start the saved exchange (q_*). */
static void
rf_start(struct power *p)
{
    struct rf *f = rf_of(p);
    CURL *e = f->easy;
    char *url = xasprintf("%s%s", f->base, f->q_path);
    curl_easy_reset(e);
    buf_reset(&f->in);
    free(f->etag);
    free(f->location);
    free(f->token_hdr);
    f->etag = f->location = f->token_hdr = NULL;
    f->too_big = false;
    f->errbuf[0] = '\0';

    curl_slist_free_all(f->hdrs);
    f->hdrs = curl_slist_append(NULL, "Accept: application/json");
    f->hdrs = curl_slist_append(f->hdrs, "OData-Version: 4.0");
    /* sushy: a compressed answer gets a weak ETag from some BMCs. */
    f->hdrs = curl_slist_append(f->hdrs, "Accept-Encoding: identity");
    if (f->q_body)
        f->hdrs = curl_slist_append(f->hdrs, "Content-Type: application/json");
    if (f->q_ifm) {
        char *h = xasprintf("If-Match: %s", f->q_ifm);
        f->hdrs = curl_slist_append(f->hdrs, h);
        free(h);
    }
    bool login = f->q_step == ST_LOGIN;
    if (f->token && !login) {
        char *h = xasprintf("X-Auth-Token: %s", f->token);
        f->hdrs = curl_slist_append(f->hdrs, h);
        free(h);
    } else if (!f->sessions && f->user && f->q_step != ST_ROOT) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, f->user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, f->pass ? f->pass : "");
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, f->q_method);
    if (strcmp(f->q_method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (f->q_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, f->q_body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(f->q_body));
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdrs);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)RF_HTTP_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)RF_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, rf_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, rf_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "rescued");
    if (p->u->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (p->u->ca) {
        curl_easy_setopt(e, CURLOPT_CAINFO, p->u->ca);
    }
    free(url);
    log_debug("%s: redfish %s %s", p->name, f->q_method, f->q_path);
    f->busy = true;
    curl_multi_add_handle(f->c->multi, e);
}

/* Send an exchange for step; takes body.  path is absolute ("/..."). */
static void
rf_send(struct power *p, enum rf_step step, const char *method,
        const char *path, char *body, const char *ifm)
{
    struct rf *f = rf_of(p);
    char *q = xstrdup(path);
    free(f->q_path);
    free(f->q_body);
    free(f->q_ifm);
    f->q_path = q;
    f->q_body = body;
    f->q_ifm = ifm ? xstrdup(ifm) : NULL;
    f->q_method = method;
    f->q_step = step;
    if (p->head)
        p->head->step = (int)step;
    rf_start(p);
}

static void
rf_abort(struct power *p)
{
    struct rf *f = rf_of(p);
    if (f && f->busy) {
        curl_multi_remove_handle(f->c->multi, f->easy);
        f->busy = false;
    }
    if (f) {
        loop_del_timer(p->l, f->wait_timer);
        f->wait_timer = 0;
    }
}

/* --- failures -------------------------------------------------------- */

/* The step a failure names: what the exchange of step was for, in the
 * op r ("discovery", "login", "one-time boot Pxe: PATCH Boot", "reset",
 * "insert media: read-back", ...). */
static char *
rf_step_name(const struct rf *f, enum rf_step step, const struct power_req *r)
{
    const char *op = power_op_name(r->op);
    const char *bw = f->boot_want ? f->boot_want : "-";
    switch (step) {
    case ST_ROOT:
    case ST_SYSTEMS:
    case ST_SYSTEM:
    case ST_ACTIONINFO:
        return xstrdup("discovery");
    case ST_LOGIN:
        return xstrdup("login");
    case ST_OP_GET:
        return xasprintf("%s: reading the system", op);
    case ST_RESET:
        return xasprintf("%s: Reset action", op);
    case ST_TASK:
        return xasprintf("%s: Reset action's task monitor", op);
    case ST_BOOT_GET:
        return xasprintf("one-time boot %s: reading Boot", bw);
    case ST_BOOT_PATCH:
        return xasprintf("one-time boot %s: PATCH Boot", bw);
    case ST_BOOT_READ:
        return xasprintf("one-time boot %s: read-back%s", bw,
                         f->verify ? " before the reset" : "");
    case ST_CLEAR:
        return xstrdup("clearing Boot");
    case ST_VM_MANAGER:
    case ST_VM_LIST:
    case ST_VM_MEMBER:
        return xasprintf("%s: finding the virtual CD", op);
    case ST_VM_GET:
        return xasprintf("%s: reading the virtual CD", op);
    case ST_VM_EJECT:
        return xstrdup(f->vm_then_insert ? "insert media: ejecting the old "
                                           "image"
                                         : "eject");
    case ST_VM_INSERT:
        return xstrdup("insert media");
    case ST_VM_READ:
        return xasprintf("%s: read-back", op);
    case ST_IDLE:
        break;
    }
    return xstrdup(op);
}

/* Fail the head with "redfish HOST:PORT: STEP: WHAT[: the BMC's words]",
 * STEP the op's last exchange (rf_step_name), or the op before any. */
static void
rf_fail(struct power *p, int status, const char *what)
{
    struct rf *f = rf_of(p);
    struct power_req *r = p->head;
    rf_abort(p);
    if (!r)
        return;
    char *step = rf_step_name(f, (enum rf_step)r->step, r);
    char *d = f->words ? xasprintf("redfish %s: %s: %s: %s", f->where, step,
                                   what, f->words)
                       : xasprintf("redfish %s: %s: %s", f->where, step, what);
    free(step);
    power_req_complete(r, status, d);
    rf_pump(p);
}

/* The answer was HTTP code: "METHOD PATH: HTTP code[: words]". */
static void
rf_fail_http(struct power *p, int status, long code)
{
    struct rf *f = rf_of(p);
    char *w = xasprintf("%s %s: HTTP %ld", f->q_method, f->q_path, code);
    rf_fail(p, status, w);
    free(w);
}

/* The BMC's own words of the last answer, kept for rf_fail. */
static void
rf_keep_words(struct rf *f)
{
    free(f->words);
    f->words = redfish_error_words(f->in.data, f->in.len);
}

/* --- discovery ------------------------------------------------------- */

static bool
path_ok(const char *s)
{
    return s && s[0] == '/' && !strpbrk(s, " \t\r\n");
}

/* The session a login made: its Location (a path, or a URL on the BMC),
 * else the answer's @odata.id. */
static void
rf_keep_session(struct rf *f)
{
    const char *loc = f->location;
    size_t nb = strlen(f->base);
    if (loc && strncmp(loc, f->base, nb) == 0)
        loc += nb;
    free(f->session);
    f->session = NULL;
    if (path_ok(loc)) {
        f->session = xstrdup(loc);
        return;
    }
    json_error_t je;
    json_t *j = json_loadb(f->in.data, f->in.len, 0, &je);
    const char *id = json_string_value(json_object_get(j, "@odata.id"));
    if (path_ok(id))
        f->session = xstrdup(id);
    json_decref(j);
}

static void
rf_login(struct power *p, bool replay)
{
    struct rf *f = rf_of(p);
    free(f->token);
    f->token = NULL;
    f->replay_login = replay;
    if (replay) {
        /* what to send again once logged in */
        free(f->r_path);
        free(f->r_body);
        free(f->r_ifm);
        f->r_method = f->q_method;
        f->r_path = f->q_path;
        f->r_body = f->q_body;
        f->r_ifm = f->q_ifm;
        f->r_step = f->q_step;
        f->q_path = f->q_body = f->q_ifm = NULL;
    }
    rf_send(p, ST_LOGIN, "POST", f->sessions,
            redfish_login_body(f->user, f->pass), NULL);
}

static void
rf_discover_system(struct power *p)
{
    struct rf *f = rf_of(p);
    if (f->system)
        rf_send(p, ST_SYSTEM, "GET", f->system, NULL, NULL);
    else
        rf_send(p, ST_SYSTEMS, "GET", "/redfish/v1/Systems", NULL, NULL);
}

static void rf_op_start(struct power *p, struct power_req *r);

static void
rf_discovered(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    f->discovered = true;
    free(f->patch);
    f->patch = xstrdup(path_ok(f->sys.settings) ? f->sys.settings : f->system);
    if (!f->fw_mode) {
        /* The uri's boot=, else the config's firmware, else the BMC's. */
        const char *m = p->u->boot_mode ? p->u->boot_mode
                        : f->fw_hint    ? f->fw_hint
                                        : f->sys.boot_mode;
        if (m && (strcmp(m, "UEFI") == 0 || strcmp(m, "Legacy") == 0))
            f->fw_mode = xstrdup(m);
    }
    log_info("%s: redfish %s: system %s, Boot PATCHed at %s, %s%s", p->name,
             f->where, f->system, f->patch,
             f->sessions ? "session login" : "HTTP Basic",
             f->sys.resets_listed ? "" : ", ResetTypes not listed");
    rf_op_start(p, r);
}

/* --- the ops --------------------------------------------------------- */

static void
rf_get_system(struct power *p, enum rf_step step)
{
    rf_send(p, step, "GET", rf_of(p)->system, NULL, NULL);
}

static void
rf_reset_next(struct power *p)
{
    struct rf *f = rf_of(p);
    const char *kind = redfish_pick_reset(&f->sys, f->want, f->reset_i);
    if (!kind) {
        static const char *const names[] = {"restart", "power on", "power off",
                                            "NMI"};
        char *what = xasprintf("no ResetType for %s among the allowed ones",
                               names[f->want]);
        rf_fail(p, -ENOTSUP, what);
        free(what);
        return;
    }
    if (strcmp(kind, "ForceOff+On") == 0)
        kind = f->off_then_on == 2 ? "On" : (f->off_then_on = 1, "ForceOff");
    if (!path_ok(f->sys.reset_uri)) {
        rf_fail(p, -EPROTO, "the system has no Reset action");
        return;
    }
    log_debug("%s: redfish reset %s", p->name, kind);
    rf_send(p, ST_RESET, "POST", f->sys.reset_uri, redfish_reset_body(kind),
            NULL);
}

static void
rf_boot_patch(struct power *p)
{
    struct rf *f = rf_of(p);
    const char *ifm = redfish_if_match(f->boot_etag, f->ifm_stage);
    if (f->ifm_stage == 1 && !ifm) /* a strong ETag: straight to none */
        f->ifm_stage = 2;
    f->sent_mode = f->mode_refused ? NULL : f->fw_mode;
    rf_send(p, ST_BOOT_PATCH, "PATCH", f->patch,
            redfish_boot_body(f->boot_want, f->sent_mode), ifm);
}

static void
rf_boot_start(struct power *p)
{
    rf_send(p, ST_BOOT_GET, "GET", rf_of(p)->patch, NULL, NULL);
}

/* The reset itself, after its checks. */
static void
rf_do_reset(struct power *p)
{
    struct rf *f = rf_of(p);
    f->want = f->was_off ? REDFISH_ON : REDFISH_RESTART;
    f->reset_i = 0;
    rf_reset_next(p);
}

static void
rf_op_start(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    switch (r->op) {
    case POWER_NETBOOT_ONCE:
    case POWER_BOOT_DISK_ONCE:
    case POWER_CD_BOOT_ONCE:
        f->boot_want = r->op == POWER_NETBOOT_ONCE     ? "Pxe"
                       : r->op == POWER_BOOT_DISK_ONCE ? "Hdd"
                                                       : "Cd";
        f->armed = NULL;
        rf_boot_start(p);
        return;
    case POWER_MEDIA_INSERT:
    case POWER_MEDIA_EJECT:
        if (f->vm) {
            rf_send(p, ST_VM_GET, "GET", f->vm, NULL, NULL);
        } else if (path_ok(f->sys.manager)) {
            rf_send(p, ST_VM_MANAGER, "GET", f->sys.manager, NULL, NULL);
        } else {
            rf_fail(p, -ENOTSUP,
                    "the system names no manager (Links."
                    "ManagedBy): no virtual media");
        }
        return;
    default:
        rf_get_system(p, ST_OP_GET);
        return;
    }
}

static char *
lower(const char *s)
{
    char *d = xstrdup(s ? s : "unknown");
    for (char *c = d; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return d;
}

static void
rf_after_op_get(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    bool on = f->sys.power_state && strcmp(f->sys.power_state, "On") == 0;
    f->was_off = !on;
    switch (r->op) {
    case POWER_STATUS:
        power_req_complete(r, 0, lower(f->sys.power_state));
        rf_pump(p);
        return;
    case POWER_ON:
        if (on) {
            power_req_complete(r, 0, NULL);
            rf_pump(p);
            return;
        }
        f->want = REDFISH_ON;
        rf_reset_next(p);
        return;
    case POWER_OFF:
        if (f->sys.power_state && strcmp(f->sys.power_state, "Off") == 0) {
            power_req_complete(r, 0, NULL);
            rf_pump(p);
            return;
        }
        f->want = REDFISH_OFF;
        rf_reset_next(p);
        return;
    case POWER_NMI:
        f->want = REDFISH_NMI;
        rf_reset_next(p);
        return;
    case POWER_RESET:
        if (f->armed) {
            /* Read the override back right before the reset. */
            f->boot_want = f->armed;
            f->verify = true;
            rf_send(p, ST_BOOT_READ, "GET", f->patch, NULL, NULL);
            return;
        }
        rf_do_reset(p);
        return;
    default:
        rf_fail(p, -ENOTSUP, "not a Redfish op");
        return;
    }
}

/* One reset of the op is done (answered, or its task completed). */
static void
rf_reset_done(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    if (f->off_then_on == 1) {
        f->off_then_on = 2;
        rf_reset_next(p);
        return;
    }
    bool powers = r->op == POWER_RESET || r->op == POWER_ON;
    if (powers && f->armed) {
        bool home = strcmp(f->armed, "Hdd") == 0;
        bool cont = f->armed_continuous;
        f->armed = NULL;
        f->armed_continuous = false;
        if (home && cont) {
            /* A BMC that keeps Continuous: nothing stays overridden once
             * the server is on its way home. */
            rf_send(p, ST_CLEAR, "PATCH", f->patch, redfish_boot_clear_body(),
                    NULL);
            return;
        }
    }
    power_req_complete(r, 0, NULL);
    rf_pump(p);
}

static int64_t
rf_on_wait(struct loop *l, void *arg)
{
    (void)l;
    struct power *p = arg;
    rf_of(p)->wait_timer = 0;
    if (p->head)
        rf_start(p);
    return -1;
}

/* Send the saved exchange again after ms (a task poll, a 503). */
static void
rf_again(struct power *p, int ms)
{
    struct rf *f = rf_of(p);
    loop_del_timer(p->l, f->wait_timer);
    f->wait_timer = loop_add_timer(p->l, ms, rf_on_wait, p);
}

static bool
boot_stuck(const struct rf *f)
{
    const struct redfish_system *s = &f->boot;
    if (!s->boot_target || strcmp(s->boot_target, f->boot_want) != 0)
        return false;
    /* FACTS.md: some BMCs keep Continuous whatever was PATCHed. */
    if (!s->boot_enabled || (strcmp(s->boot_enabled, "Once") != 0 &&
                             strcmp(s->boot_enabled, "Continuous") != 0))
        return false;
    return !f->sent_mode || !s->boot_mode ||
           strcmp(s->boot_mode, f->sent_mode) == 0;
}

static void
rf_after_boot_read(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    if (boot_stuck(f)) {
        f->armed = f->boot_want;
        f->armed_continuous = strcmp(f->boot.boot_enabled, "Continuous") == 0;
        if (f->verify) {
            f->verify = false;
            rf_do_reset(p);
            return;
        }
        power_req_complete(r, 0, NULL);
        rf_pump(p);
        return;
    }
    /* Did not stick: PATCH again, with a fresh ETag; with Mode again
     * where it was dropped (Supermicro), unless the BMC refused it. */
    if (++f->boot_tries >= RF_BOOT_TRIES) {
        char *what = xasprintf(
            "the BMC did not keep it after %d tries "
            "(reads Target %s, Enabled %s, Mode %s)",
            f->boot_tries, f->boot.boot_target ? f->boot.boot_target : "-",
            f->boot.boot_enabled ? f->boot.boot_enabled : "-",
            f->boot.boot_mode ? f->boot.boot_mode : "-");
        f->armed = NULL;
        rf_fail(p, -EIO, what);
        free(what);
        return;
    }
    log_info("%s: redfish %s: one-time boot %s did not stick (reads Target "
             "%s, Enabled %s, Mode %s); again",
             p->name, f->where, f->boot_want,
             f->boot.boot_target ? f->boot.boot_target : "-",
             f->boot.boot_enabled ? f->boot.boot_enabled : "-",
             f->boot.boot_mode ? f->boot.boot_mode : "-");
    f->ifm_stage = 0;
    rf_boot_start(p);
}

/* The last answer into f->sys (the system) or f->boot (the PATCH
 * target); false when it failed the request. */
static bool
parse_into(struct power *p, const char *what, bool boot)
{
    struct rf *f = rf_of(p);
    char err[128];
    struct redfish_system s;
    struct redfish_system *into = boot ? &f->boot : &f->sys;
    if (redfish_parse_system(f->in.data, f->in.len, &s, err, sizeof(err)) < 0) {
        char *w = xasprintf("%s: %s", what, err);
        rf_fail(p, -EPROTO, w);
        free(w);
        return false;
    }
    /* An ActionInfo's list outlives the system's answers. */
    if (!boot && !s.resets_listed && into->resets_listed && into->action_info &&
        s.action_info && strcmp(s.action_info, into->action_info) == 0) {
        s.resets = into->resets;
        s.nresets = into->nresets;
        s.resets_listed = true;
        into->resets = NULL;
    }
    redfish_system_clear(into);
    *into = s;
    return true;
}

static bool
parse_sys(struct power *p, const char *what)
{
    return parse_into(p, what, false);
}

static bool
parse_boot(struct power *p, const char *what)
{
    return parse_into(p, what, true);
}

/* --- virtual media -------------------------------------------------- */

static bool
parse_media(struct power *p)
{
    struct rf *f = rf_of(p);
    char err[128];
    redfish_media_clear(&f->media);
    if (redfish_parse_media(f->in.data, f->in.len, &f->media, err,
                            sizeof(err)) < 0) {
        char *w = xasprintf("virtual media %s: %s", f->q_path, err);
        rf_fail(p, -EPROTO, w);
        free(w);
        return false;
    }
    return true;
}

static void
rf_vm_member(struct power *p)
{
    struct rf *f = rf_of(p);
    const char *m = f->vm_members ? f->vm_members[f->vm_i] : NULL;
    if (!m) {
        strv_free(f->vm_members);
        f->vm_members = NULL;
        rf_fail(p, -ENOTSUP, "the manager has no virtual CD");
        return;
    }
    if (!path_ok(m)) {
        f->vm_i++;
        rf_vm_member(p);
        return;
    }
    rf_send(p, ST_VM_MEMBER, "GET", m, NULL, NULL);
}

static void
rf_vm_eject(struct power *p)
{
    struct rf *f = rf_of(p);
    if (path_ok(f->media.eject))
        rf_send(p, ST_VM_EJECT, "POST", f->media.eject, xstrdup("{}"), NULL);
    else
        rf_send(p, ST_VM_EJECT, "PATCH", f->vm, redfish_media_body(NULL, 0),
                NULL);
}

static void
rf_vm_insert(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    if (path_ok(f->media.insert))
        rf_send(p, ST_VM_INSERT, "POST", f->media.insert,
                redfish_media_body(r->arg, f->vm_plain), NULL);
    else
        rf_send(p, ST_VM_INSERT, "PATCH", f->vm,
                redfish_media_body(r->arg, true), NULL);
}

/* The CD's answer before the op (ST_VM_GET) or after it (ST_VM_READ). */
static void
rf_vm_state(struct power *p, struct power_req *r, bool after)
{
    struct rf *f = rf_of(p);
    bool insert = r->op == POWER_MEDIA_INSERT;
    bool has = f->media.inserted && f->media.image &&
               (!insert || strcmp(f->media.image, r->arg) == 0);
    bool empty = !f->media.inserted;
    if (!after) {
        if (insert && has) {
            power_req_complete(r, 0, NULL); /* already in */
            rf_pump(p);
        } else if (insert && !empty) {
            f->vm_then_insert = true; /* another image: out first */
            rf_vm_eject(p);
        } else if (insert) {
            rf_vm_insert(p, r);
        } else if (empty) {
            power_req_complete(r, 0, NULL);
            rf_pump(p);
        } else {
            rf_vm_eject(p);
        }
        return;
    }
    if ((insert && has) || (!insert && empty)) {
        power_req_complete(r, 0, NULL);
        rf_pump(p);
        return;
    }
    char *w = xasprintf("the BMC did not keep it (reads Image %s, "
                        "Inserted %s)",
                        f->media.image ? f->media.image : "none",
                        f->media.inserted ? "true" : "false");
    rf_fail(p, -EIO, w);
    free(w);
}

/* The answer to one exchange of the virtual media ops. */
static void
rf_vm_step(struct power *p, struct power_req *r, enum rf_step step, long code)
{
    struct rf *f = rf_of(p);
    bool ok = code >= 200 && code < 300;
    char err[128];
    if (!ok && step != ST_VM_INSERT) {
        rf_fail_http(p, -EIO, code);
        return;
    }
    switch (step) {
    case ST_VM_MANAGER: {
        char *l = redfish_parse_link(f->in.data, f->in.len, "VirtualMedia");
        if (!path_ok(l)) {
            free(l);
            rf_fail(p, -ENOTSUP, "the manager has no VirtualMedia");
            return;
        }
        rf_send(p, ST_VM_LIST, "GET", l, NULL, NULL);
        free(l);
        return;
    }
    case ST_VM_LIST: {
        size_t n;
        strv_free(f->vm_members);
        f->vm_members =
            redfish_parse_members(f->in.data, f->in.len, &n, err, sizeof(err));
        f->vm_i = 0;
        rf_vm_member(p);
        return;
    }
    case ST_VM_MEMBER:
        if (!parse_media(p))
            return;
        if (!f->media.cd) {
            f->vm_i++;
            rf_vm_member(p);
            return;
        }
        f->vm = xstrdup(f->vm_members[f->vm_i]);
        strv_free(f->vm_members);
        f->vm_members = NULL;
        log_info("%s: redfish %s: virtual CD %s (%s)", p->name, f->where, f->vm,
                 f->media.insert ? "InsertMedia" : "PATCH");
        rf_vm_state(p, r, false);
        return;
    case ST_VM_GET:
        if (parse_media(p))
            rf_vm_state(p, r, false);
        return;
    case ST_VM_EJECT:
        if (f->vm_then_insert) {
            f->vm_then_insert = false;
            rf_vm_insert(p, r);
            return;
        }
        rf_send(p, ST_VM_READ, "GET", f->vm, NULL, NULL);
        return;
    case ST_VM_INSERT:
        if (code == 400 && !f->vm_plain && path_ok(f->media.insert)) {
            /* Supermicro X11: no Inserted / WriteProtected. */
            f->vm_plain = true;
            log_info("%s: redfish %s: InsertMedia refused (%s); again with "
                     "Image only",
                     p->name, f->where, f->words ? f->words : "HTTP 400");
            rf_vm_insert(p, r);
            return;
        }
        if (!ok) {
            rf_fail_http(p, -EIO, code);
            return;
        }
        rf_send(p, ST_VM_READ, "GET", f->vm, NULL, NULL);
        return;
    case ST_VM_READ:
        if (parse_media(p))
            rf_vm_state(p, r, true);
        return;
    default:
        rf_fail(p, -EPROTO, "answer out of step");
        return;
    }
}

/* The answer to the exchange of step, with HTTP status code. */
static void
rf_step(struct power *p, struct power_req *r, long code)
{
    struct rf *f = rf_of(p);
    bool ok = code >= 200 && code < 300;
    char err[160];
    enum rf_step step = (enum rf_step)r->step;

    if (!ok)
        rf_keep_words(f);
    switch (step) {
    case ST_ROOT: {
        struct redfish_root root;
        if (!ok || redfish_parse_root(f->in.data, f->in.len, &root, err,
                                      sizeof(err)) < 0) {
            if (!ok) {
                rf_fail_http(p, -EPROTO, code);
                return;
            }
            char *w = xasprintf("GET %s: %s", f->q_path, err);
            rf_fail(p, -EPROTO, w);
            free(w);
            return;
        }
        free(f->sessions);
        f->sessions = path_ok(root.sessions) ? xstrdup(root.sessions) : NULL;
        redfish_root_clear(&root);
        if (f->sessions && f->user)
            rf_login(p, false);
        else
            rf_discover_system(p);
        return;
    }
    case ST_LOGIN:
        if (!ok || !f->token_hdr) {
            if (!ok) {
                rf_fail_http(p, -EPROTO, code);
                return;
            }
            rf_fail(p, -EPROTO, "no X-Auth-Token in the answer");
            return;
        }
        f->token = f->token_hdr;
        f->token_hdr = NULL;
        rf_keep_session(f);
        log_debug("%s: redfish %s: logged in", p->name, f->where);
        if (f->replay_login) {
            char *path = f->r_path, *body = f->r_body, *ifm = f->r_ifm;
            f->replay_login = false;
            f->r_path = f->r_body = f->r_ifm = NULL;
            rf_send(p, f->r_step, f->r_method, path, body, ifm);
            free(path);
            free(ifm);
            return;
        }
        rf_discover_system(p);
        return;
    case ST_SYSTEMS: {
        size_t n = 0;
        char **m = ok ? redfish_parse_members(f->in.data, f->in.len, &n, err,
                                              sizeof(err))
                      : NULL;
        if (!m || n != 1 || !path_ok(m[0])) {
            char *w = !ok  ? xasprintf("GET %s: HTTP %ld", f->q_path, code)
                      : !m ? xasprintf("Systems: %s", err)
                           : xasprintf("Systems has %zu members: name one in "
                                       "the uri (/Systems/ID)",
                                       n);
            strv_free(m);
            rf_fail(p, -EPROTO, w);
            free(w);
            return;
        }
        f->system = xstrdup(m[0]);
        strv_free(m);
        rf_send(p, ST_SYSTEM, "GET", f->system, NULL, NULL);
        return;
    }
    case ST_SYSTEM:
        if (!ok) {
            rf_fail_http(p, code == 404 ? -ENOENT : -EPROTO, code);
            return;
        }
        if (!parse_sys(p, f->system))
            return;
        if (!f->sys.resets_listed && path_ok(f->sys.action_info)) {
            rf_send(p, ST_ACTIONINFO, "GET", f->sys.action_info, NULL, NULL);
            return;
        }
        rf_discovered(p, r);
        return;
    case ST_ACTIONINFO:
        /* Not there: try the standard ResetTypes in order. */
        if (ok && redfish_parse_action_info(f->in.data, f->in.len, &f->sys, err,
                                            sizeof(err)) < 0)
            log_info("%s: redfish %s: ActionInfo: %s", p->name, f->where, err);
        rf_discovered(p, r);
        return;
    case ST_OP_GET:
        if (!ok) {
            rf_fail_http(p, -EIO, code);
            return;
        }
        if (parse_sys(p, f->system))
            rf_after_op_get(p, r);
        return;
    case ST_RESET:
        if (code == 202 && path_ok(f->location)) {
            char *loc = xstrdup(f->location);
            rf_send(p, ST_TASK, "GET", loc, NULL, NULL);
            free(loc);
            return;
        }
        if (ok) {
            rf_reset_done(p, r);
            return;
        }
        if (code == 400 && !f->sys.resets_listed) {
            /* Not listed, and not this one: the next in order. */
            f->reset_i++;
            rf_reset_next(p);
            return;
        }
        rf_fail_http(p, -EIO, code);
        return;
    case ST_TASK: {
        if (code == 202) {
            rf_again(p, RF_TASK_POLL_MS);
            return;
        }
        char *msg = NULL;
        char *st = ok ? redfish_parse_task(f->in.data, f->in.len, &msg) : NULL;
        bool done = ok && (!st || strcmp(st, "Completed") == 0);
        if (ok && st &&
            (strcmp(st, "Running") == 0 || strcmp(st, "New") == 0 ||
             strcmp(st, "Pending") == 0 || strcmp(st, "Starting") == 0)) {
            free(st);
            free(msg);
            rf_again(p, RF_TASK_POLL_MS);
            return;
        }
        if (done) {
            free(st);
            free(msg);
            rf_reset_done(p, r);
            return;
        }
        if (msg) {
            free(f->words);
            f->words = msg;
            msg = NULL;
        }
        char *w = ok ? xasprintf("the task ended %s", st)
                     : xasprintf("GET %s: HTTP %ld", f->q_path, code);
        free(st);
        free(msg);
        rf_fail(p, -EIO, w);
        free(w);
        return;
    }
    case ST_BOOT_GET:
        if (!ok) {
            rf_fail_http(p, -EIO, code);
            return;
        }
        if (!parse_boot(p, f->patch))
            return;
        if (f->boot.targets && !redfish_listed(f->boot.targets, f->boot_want)) {
            char *w = xasprintf("the BMC offers no BootSourceOverrideTarget "
                                "%s",
                                f->boot_want);
            rf_fail(p, -ENOTSUP, w);
            free(w);
            return;
        }
        free(f->boot_etag);
        f->boot_etag = f->etag ? xstrdup(f->etag) : NULL;
        if (!f->boot_etag) {
            /* @odata.etag, when the header is missing */
            json_error_t je;
            json_t *j = json_loadb(f->in.data, f->in.len, 0, &je);
            const char *t =
                json_string_value(json_object_get(j, "@odata.etag"));
            f->boot_etag = t ? xstrdup(t) : NULL;
            json_decref(j);
        }
        rf_boot_patch(p);
        return;
    case ST_BOOT_PATCH:
        if (ok) {
            rf_send(p, ST_BOOT_READ, "GET", f->patch, NULL, NULL);
            return;
        }
        if (code == 412 && f->ifm_stage < 2) {
            /* sushy: a weak ETag again as strong, then none. */
            f->ifm_stage++;
            log_info("%s: redfish %s: 412 on PATCH Boot; again %s", p->name,
                     f->where,
                     f->ifm_stage == 1 ? "with the ETag as strong"
                                       : "without If-Match");
            rf_boot_patch(p);
            return;
        }
        if (code == 400 && f->sent_mode) {
            /* HPE DL160: no Mode in a PATCH. */
            f->mode_refused = true;
            log_info("%s: redfish %s: PATCH Boot with Mode refused (%s); "
                     "again without",
                     p->name, f->where, f->words ? f->words : "HTTP 400");
            rf_boot_patch(p);
            return;
        }
        rf_fail_http(p, -EIO, code);
        return;
    case ST_BOOT_READ:
        if (!ok) {
            rf_fail_http(p, -EIO, code);
            return;
        }
        if (parse_boot(p, f->patch))
            rf_after_boot_read(p, r);
        return;
    case ST_CLEAR:
        if (!ok)
            log_warnx("%s: redfish %s: could not set Boot back to None: "
                      "HTTP %ld%s%s",
                      p->name, f->where, code, f->words ? ": " : "",
                      f->words ? f->words : "");
        power_req_complete(r, 0, NULL);
        rf_pump(p);
        return;
    case ST_VM_MANAGER:
    case ST_VM_LIST:
    case ST_VM_MEMBER:
    case ST_VM_GET:
    case ST_VM_EJECT:
    case ST_VM_INSERT:
    case ST_VM_READ:
        rf_vm_step(p, r, step, code);
        return;
    case ST_IDLE:
        break;
    }
    rf_fail(p, -EPROTO, "answer out of step");
}

/* A transfer ended: transport errors, 401 and 503 here, the rest in
 * rf_step. */
static void
rf_done(struct power *p, CURLcode cc)
{
    struct rf *f = rf_of(p);
    struct power_req *r = p->head;
    long code = 0;
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(f->c->multi, f->easy);
    f->busy = false;
    if (!r)
        return;
    log_debug("%s: redfish %s %s: %ld", p->name, f->q_method, f->q_path, code);
    bool refused = cc == CURLE_COULDNT_CONNECT;
    if ((refused || code == 503) && f->retries < RF_RETRIES && f->discovered) {
        /* A BMC restarting: again in a second, discovering afresh. */
        f->retries++;
        rf_again(p, RF_RETRY_MS);
        return;
    }
    if (cc != CURLE_OK) {
        char *w;
        if (f->too_big)
            w = xasprintf("%s %s: answer larger than %d bytes", f->q_method,
                          f->q_path, REDFISH_MAX_BODY);
        else
            w = xasprintf("%s %s: %s", f->q_method, f->q_path,
                          f->errbuf[0] ? f->errbuf : curl_easy_strerror(cc));
        free(f->words);
        f->words = NULL;
        f->discovered = false; /* a new connection discovers again */
        rf_fail(p,
                cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
                : cc == CURLE_PEER_FAILED_VERIFICATION ||
                        cc == CURLE_SSL_CACERT_BADFILE
                    ? -EACCES
                    : -EIO,
                w);
        free(w);
        return;
    }
    if (code == 401 && f->q_step != ST_LOGIN && f->sessions && f->user &&
        !f->relogged) {
        f->relogged = true;
        log_info("%s: redfish %s: 401, logging in again", p->name, f->where);
        rf_login(p, true);
        return;
    }
    if (code == 401 || code == 403) {
        rf_keep_words(f);
        char *w = f->q_step == ST_LOGIN
                      ? xasprintf("credentials refused (HTTP %ld)", code)
                      : xasprintf("%s %s: credentials refused (HTTP %ld)",
                                  f->q_method, f->q_path, code);
        rf_fail(p, -EACCES, w);
        free(w);
        return;
    }
    if (code == 503)
        f->discovered = false;
    rf_step(p, r, code);
}

static void
rf_check_done(struct power *p)
{
    struct rf *f = rf_of(p);
    CURLMsg *m;
    int left;
    while (f->c && (m = curl_multi_info_read(f->c->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == f->easy && f->busy)
            rf_done(p, m->data.result);
}

static void
rf_curl_done(void *arg)
{
    rf_check_done(arg);
}

/* --- the queue ------------------------------------------------------- */

static void
rf_begin(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    f->relogged = false;
    f->retries = 0;
    f->reset_i = 0;
    f->off_then_on = 0;
    f->verify = false;
    f->boot_tries = 0;
    f->ifm_stage = 0;
    free(f->words);
    f->words = NULL;
    if (!f->discovered) {
        free(f->token);
        f->token = NULL;
        rf_send(p, ST_ROOT, "GET", "/redfish/v1/", NULL, NULL);
        return;
    }
    rf_op_start(p, r);
}

static void
rf_pump(struct power *p)
{
    struct rf *f = rf_of(p);
    if (!f || p->closing || !p->head || f->busy || f->wait_timer)
        return;
    if (p->head->step == ST_IDLE)
        rf_begin(p, p->head);
}

/* --- pre-flight ------------------------------------------------------ */

static void
probe_done(void *arg, int status, const char *detail)
{
    struct power *p = arg;
    if (status == -ECANCELED)
        return;
    struct rf *f = rf_of(p);
    f->probing = false;
    f->answered = true;
    f->answered_at = now_mono_ms();
    free(f->pre_err);
    f->pre_err = NULL;
    if (status < 0) {
        f->pre_err = xstrdup(detail ? detail : strerror(-status));
        log_warnx("%s: pre-flight: %s", p->name, f->pre_err);
    } else if (!f->said_ok) {
        log_info("%s: pre-flight: redfish %s answers (power %s)", p->name,
                 f->where, detail ? detail : "unknown");
    }
    f->said_ok = status == 0;
}

static void
rf_probe(struct power *p)
{
    struct rf *f = rf_of(p);
    if (f->probing || p->closing)
        return;
    f->probing = true;
    power_submit(p, POWER_STATUS, NULL, probe_done, p);
}

static int64_t
rf_on_start(struct loop *l, void *arg)
{
    (void)l;
    struct power *p = arg;
    rf_of(p)->start_timer = 0;
    rf_probe(p);
    return -1;
}

static bool
rf_reachable(struct power *p, char *err, size_t errlen)
{
    struct rf *f = rf_of(p);
    if (f->pre_err) {
        seterr(err, errlen, "%s (checking again: retry in a few seconds)",
               f->pre_err);
        rf_probe(p);
        return false;
    }
    if (!f->answered) {
        seterr(err, errlen,
               "redfish %s: no answer from the BMC yet (retry in a few "
               "seconds)",
               f->where);
        return false;
    }
    if (now_mono_ms() - f->answered_at > RF_STALE_MS)
        rf_probe(p);
    return true;
}

/* --- ops ------------------------------------------------------------- */

static int
rf_init(struct power *p, char *err, size_t errlen)
{
    static bool curl_ready;
    const struct uri_power *u = p->u;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
            seterr(err, errlen, "redfish: libcurl did not start");
            return -EIO;
        }
        curl_ready = true;
    }
    struct rf *f = xcalloc(1, sizeof(*f));
    p->drv = f;
    bool v6 = strchr(u->host, ':') != NULL;
    f->where = v6 ? xasprintf("[%s]:%s", u->host, u->port)
                  : xasprintf("%s:%s", u->host, u->port);
    f->base = xasprintf("https://%s", f->where);
    f->user = u->user ? xstrdup(u->user) : NULL;
    f->pass = u->pass ? xstrdup(u->pass) : NULL;
    if (u->path) {
        /* "/Systems/1" is under the service root; a full path as is. */
        const char *s = u->path;
        size_t n = strlen(s);
        while (n > 1 && s[n - 1] == '/')
            n--;
        f->system = strncmp(s, "/redfish/", 9) == 0
                        ? xasprintf("%.*s", (int)n, s)
                        : xasprintf("/redfish/v1%.*s", (int)n, s);
    }
    f->c = rf_curl_new(p->l, rf_curl_done, p);
    f->easy = curl_easy_init();
    if (!f->c || !f->easy) {
        seterr(err, errlen, "redfish: libcurl: out of memory");
        return -ENOMEM;
    }
    if (u->insecure)
        log_warnx("redfish %s: tls=insecure: the BMC's certificate is NOT "
                  "checked",
                  f->where);
    /* After power_set_credentials, which follows power_new at once. */
    f->start_timer = loop_add_timer(p->l, 0, rf_on_start, p);
    return 0;
}

static int
rf_credentials(struct power *p, const char *file, char *err, size_t errlen)
{
    struct rf *f = rf_of(p);
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    if (stat(file, &st) < 0 || read_file(file, &data, &len) < 0) {
        int e = errno;
        seterr(err, errlen, "power_credentials %s: %s", file, strerror(e));
        free(data);
        return -e;
    }
    if (st.st_mode & 077) {
        seterr(err, errlen,
               "power_credentials %s: readable by others (chmod 600 it)", file);
        free(data);
        return -EPERM;
    }
    data[strcspn(data, "\r\n")] = '\0';
    char *colon = strchr(data, ':');
    if (!colon || colon == data) {
        seterr(err, errlen,
               "power_credentials %s: the first line must be USER:PASSWORD",
               file);
        free(data);
        return -EINVAL;
    }
    *colon = '\0';
    free(f->user);
    free(f->pass);
    f->user = xstrdup(data);
    f->pass = xstrdup(colon + 1);
    explicit_bzero(data, len);
    free(data);
    return 0;
}

static void
rf_firmware(struct power *p, bool uefi)
{
    rf_of(p)->fw_hint = uefi ? "UEFI" : "Legacy";
}

static char *
rf_check(const struct power *p, const struct power_req *r, int *status)
{
    const struct rf *f = rf_of(p);
    *status = -ENOTSUP;
    if (r->op == POWER_SYSRQ || r->op == POWER_SERIAL_BREAK)
        return xasprintf("redfish %s: Redfish has no %s; send it on the "
                         "serial console",
                         f->where, power_op_name(r->op));
    if (r->op == POWER_MEDIA_INSERT &&
        (!r->arg || (strncmp(r->arg, "http://", 7) != 0 &&
                     strncmp(r->arg, "https://", 8) != 0))) {
        *status = -EINVAL;
        return xstrdup("insert media: needs the image's http(s):// URL");
    }
    if (r->op == POWER_NMI && f->discovered && f->sys.resets_listed &&
        !redfish_listed(f->sys.resets, "Nmi"))
        return xasprintf("redfish %s: the BMC does not allow ResetType Nmi",
                         f->where);
    return NULL;
}

static void
rf_request(struct power *p, struct power_req *r)
{
    power_req_arm(r, RF_REQ_MS);
    rf_pump(p);
}

static char *
rf_timeout(struct power *p, struct power_req *r)
{
    struct rf *f = rf_of(p);
    char *step = p->head == r && r->step != ST_IDLE
                     ? rf_step_name(f, (enum rf_step)r->step, r)
                     : xstrdup(power_op_name(r->op));
    char *d =
        p->head == r && f->q_path
            ? xasprintf("redfish %s: %s: %s %s: no answer in %d ms", f->where,
                        step, f->q_method, f->q_path, r->deadline_ms)
            : xasprintf("redfish %s: %s: no answer in %d ms", f->where, step,
                        r->deadline_ms);
    free(step);
    if (p->head == r)
        rf_abort(p);
    f->discovered = false;
    return d;
}

/* --- logout at stop ---------------------------------------------------- */

/* A BMC holds few sessions (4 to 16 on most): each stop of a driver that
 * logged in DELETEs its session, on the driver's own connection, after
 * the driver is gone.  Bounded: a BMC that does not answer in
 * RF_LOGOUT_MS is given up on (the session then times out on the BMC).
 * power_lingering() counts them; rescued's stop waits for them. */
#define RF_LOGOUT_MS 2000

struct rf_logout {
    struct rf_curl *c;
    CURL *easy;
    struct curl_slist *hdrs;
    uint64_t deadline;
    char *who; /* "srv1: redfish HOST:PORT" */
    char *path;
    char errbuf[CURL_ERROR_SIZE];
};

static size_t
logout_discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static void
logout_free(struct rf_logout *o)
{
    curl_multi_remove_handle(o->c->multi, o->easy);
    curl_easy_cleanup(o->easy);
    loop_del_timer(o->c->l, o->deadline);
    rf_curl_free(o->c);
    curl_slist_free_all(o->hdrs);
    free(o->who);
    free(o->path);
    free(o);
    power_linger(-1);
}

static void
logout_done(void *arg)
{
    struct rf_logout *o = arg;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(o->c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        long code = 0;
        curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &code);
        if (m->data.result != CURLE_OK)
            log_warnx("%s: logout: DELETE %s: %s", o->who, o->path,
                      o->errbuf[0] ? o->errbuf
                                   : curl_easy_strerror(m->data.result));
        else if (code >= 200 && code < 300)
            log_info("%s: logged out (DELETE %s: %ld)", o->who, o->path, code);
        else
            log_warnx("%s: logout: DELETE %s: HTTP %ld", o->who, o->path, code);
        logout_free(o);
        return;
    }
}

static int64_t
logout_late(struct loop *l, void *arg)
{
    (void)l;
    struct rf_logout *o = arg;
    o->deadline = 0;
    log_warnx("%s: logout: DELETE %s: no answer in %d ms, given up (the "
              "BMC times the session out)",
              o->who, o->path, RF_LOGOUT_MS);
    logout_free(o);
    return -1;
}

/* Hand f's connection to a logout of its session; f keeps neither. */
static void
rf_logout(struct power *p)
{
    struct rf *f = rf_of(p);
    struct rf_logout *o = xcalloc(1, sizeof(*o));
    o->c = f->c;
    o->easy = f->easy;
    f->c = NULL;
    f->easy = NULL;
    o->c->done = logout_done;
    o->c->arg = o;
    o->who = xasprintf("%s: redfish %s", p->name, f->where);
    o->path = f->session;
    f->session = NULL;
    char *url = xasprintf("%s%s", f->base, o->path);
    char *h = xasprintf("X-Auth-Token: %s", f->token);
    CURL *e = o->easy;
    /* Keep the TLS options and the connection: reset nothing. */
    o->hdrs = curl_slist_append(NULL, "Accept: application/json");
    o->hdrs = curl_slist_append(o->hdrs, "OData-Version: 4.0");
    o->hdrs = curl_slist_append(o->hdrs, h);
    explicit_bzero(h, strlen(h));
    free(h);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* no body of the last */
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->hdrs);
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_NONE);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)RF_LOGOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)RF_LOGOUT_MS);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, logout_discard);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, logout_discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, o->errbuf);
    o->deadline = loop_add_timer(p->l, RF_LOGOUT_MS + 500, logout_late, o);
    power_linger(1);
    log_debug("%s: redfish DELETE %s", p->name, o->path);
    curl_multi_add_handle(o->c->multi, e);
}

static void
rf_stop(struct power *p)
{
    struct rf *f = rf_of(p);
    if (!f)
        return;
    rf_abort(p);
    loop_del_timer(p->l, f->start_timer);
    f->start_timer = 0;
    if (f->token && f->session && f->c && f->easy)
        rf_logout(p);
    if (f->easy)
        curl_easy_cleanup(f->easy);
    f->easy = NULL;
    rf_curl_free(f->c);
    f->c = NULL;
}

static void
rf_free(struct power *p)
{
    struct rf *f = rf_of(p);
    if (!f)
        return;
    curl_slist_free_all(f->hdrs);
    buf_free(&f->in);
    free(f->etag);
    free(f->location);
    free(f->token_hdr);
    free(f->base);
    free(f->where);
    free(f->user);
    if (f->pass)
        explicit_bzero(f->pass, strlen(f->pass));
    free(f->pass);
    free(f->sessions);
    free(f->system);
    free(f->patch);
    free(f->fw_mode);
    redfish_system_clear(&f->sys);
    redfish_system_clear(&f->boot);
    free(f->token);
    free(f->session);
    free(f->q_path);
    free(f->q_body);
    free(f->q_ifm);
    free(f->r_path);
    free(f->r_body);
    free(f->r_ifm);
    free(f->boot_etag);
    free(f->words);
    free(f->vm);
    strv_free(f->vm_members);
    redfish_media_clear(&f->media);
    free(f->pre_err);
    free(f);
    p->drv = NULL;
}

const struct power_ops power_redfish_ops = {
    .name = "redfish",
    .media = true,
    .init = rf_init,
    .check = rf_check,
    .request = rf_request,
    .pump = rf_pump,
    .timeout = rf_timeout,
    .reachable = rf_reachable,
    .credentials = rf_credentials,
    .firmware = rf_firmware,
    .stop = rf_stop,
    .free = rf_free,
};
