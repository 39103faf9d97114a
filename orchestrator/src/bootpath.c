/* bootpath: the unauthenticated routes that iPXE and the rescue OS use.
 * A boot token (64 hex digits, minted by fleet for one boot and bound to
 * it: fleet_boot.c) is the only key; what is served holds nothing secret,
 * and what is refused (403, 409) names no server.  A request whose answer
 * waits on the store (its server's change on its way, or the store's look
 * at a token not live here) is parked meanwhile (fleet_boot_settle,
 * http_wait): nothing here waits on the network. */
#include "bootpath.h"
#include "config.h"
#include "fleet.h"
#include "http.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A refusal of the boot path: 403 for another address, 409 for a token
 * spent or out of its step, in words that name no server. */
static void
respond_refusal(struct http_req *r, int rc, const char *err)
{
    unsigned status = rc == -EACCES   ? 403
                      : rc == -EBUSY  ? 409
                      : rc == -EAGAIN ? 503 /* the store cannot record it */
                                      : 500;
    http_respond_error(r, status, "%s", err);
}

static bool
is_head(const struct http_req *r)
{
    return http_req_method(r) == HTTP_HEAD;
}

/* A boot request parked while its server's last change is on its way to
 * the store (fleet_boot_settle): answered by answer(r, fleet) once it is
 * stored; 503 when the fleet stopped first. */
struct boot_wait {
    struct fleet *f;
    http_handler_fn *answer;
};

static void
boot_woke(void *arg, int rc)
{
    http_wait_done(arg, rc);
}

static void
boot_resumed(struct http_req *r, void *arg, int rc)
{
    struct boot_wait *w = arg;
    if (rc == -ECANCELED)
        http_respond_error(r, 503, "rescued is stopping");
    else
        w->answer(r, w->f);
}

/* answer(r, f) now, or once the server of token or mac is settled (the
 * request parked meanwhile). */
static void
boot_answer(struct http_req *r, struct fleet *f, const char *token,
            const char *mac, http_handler_fn *answer)
{
    if (!token && !mac) {
        answer(r, f);
        return;
    }
    struct boot_wait *bw = xcalloc(1, sizeof(*bw));
    bw->f = f;
    bw->answer = answer;
    struct http_wait *w = http_wait_new(r, boot_resumed, bw, free);
    if (fleet_boot_settle(f, token, mac, boot_woke, w)) {
        http_wait_drop(w);
        answer(r, f);
        return;
    }
    http_wait_park(w);
}

/* /boot/<mac>.ipxe or .grub: script is fleet_boot_script or _grub. */
static void
boot_script(struct http_req *r, void *arg,
            int (*script)(struct fleet *, const char *, const char *, bool,
                          struct buf *))
{
    char mac[18], peer[64];
    struct buf b = {0};
    if (!config_parse_mac(http_req_cap(r, 0), mac) ||
        script(arg, mac, http_req_peer(r, peer, sizeof(peer)), is_head(r), &b) <
            0) {
        buf_free(&b);
        /* iPXE then falls through to the next boot device. */
        http_respond_error(r, 404, "no server with this MAC");
        return;
    }
    http_respond_buf(r, 200, &b, "text/plain");
}

static void
ipxe_answer(struct http_req *r, void *arg)
{
    boot_script(r, arg, fleet_boot_script);
}

static void
grub_answer(struct http_req *r, void *arg)
{
    boot_script(r, arg, fleet_boot_grub);
}

/* The scripts' requests settle by the MAC in their path. */
static void
boot_answer_by_mac(struct http_req *r, struct fleet *f, http_handler_fn *answer)
{
    char mac[18];
    boot_answer(r, f, NULL,
                config_parse_mac(http_req_cap(r, 0), mac) ? mac : NULL, answer);
}

static void
h_boot_script(struct http_req *r, void *arg)
{
    boot_answer_by_mac(r, arg, ipxe_answer);
}

/* GRUB's, arm64 UEFI servers' network loader. */
static void
h_boot_grub(struct http_req *r, void *arg)
{
    boot_answer_by_mac(r, arg, grub_answer);
}

bool
bootpath_parse_range(const char *h, int64_t size, int64_t *from, int64_t *to)
{
    char *end;
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return false;
    h += 6;
    if (*h == '-') {
        long long n = strtoll(h + 1, &end, 10);
        if (*end || n <= 0)
            return false;
        *from = n >= size ? 0 : size - n;
        *to = size - 1;
        return size > 0;
    }
    long long a = strtoll(h, &end, 10);
    if (end == h || *end != '-' || a < 0 || a >= size)
        return false;
    const char *b = end + 1;
    long long z = size - 1;
    if (*b) {
        z = strtoll(b, &end, 10);
        if (*end || z < a)
            return false;
        if (z >= size)
            z = size - 1;
    }
    *from = a;
    *to = z;
    return true;
}

static void send_file(struct http_req *r, int fd, const struct stat *sp,
                      const char *name);

/* /media/TOKEN.iso: the virtual CD of the live token's boot, which BMCs
 * fetch (and read ranges of while the server boots from it). */
static void
media_answer(struct http_req *r, void *arg)
{
    const char *path = fleet_vm_cd_path(arg, http_req_cap(r, 0));
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_respond_error(r, 404, "no such virtual CD");
        return;
    }
    send_file(r, fd, &st, "the virtual CD");
}

static void
h_media(struct http_req *r, void *arg)
{
    boot_answer(r, arg, http_req_cap(r, 0), NULL, media_answer);
}

static void image_answer(struct http_req *r, void *arg);

static void
h_image(struct http_req *r, void *arg)
{
    boot_answer(r, arg, http_req_query(r, "token"), NULL, image_answer);
}

static void
image_answer(struct http_req *r, void *arg)
{
    struct fleet *f = arg;
    const char *name = http_req_cap(r, 0);
    const char *path = fleet_image_path(f, name);
    if (!path) {
        http_respond_error(r, 404, "no such image file");
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_respond_error(r, 404, "image file %s is missing", name);
        return;
    }
    /* Only a fetch that gets the file moves the boot forward. */
    char peer[64], err[128] = "";
    int rc = fleet_image_fetched(f, name, http_req_query(r, "token"),
                                 http_req_peer(r, peer, sizeof(peer)),
                                 is_head(r), err, sizeof(err));
    if (rc < 0) {
        close(fd);
        respond_refusal(r, rc, err);
        return;
    }
    send_file(r, fd, &st, name);
}

/* fd (st its stat) as the answer, whole or the Range asked for; takes
 * fd. */
static void
send_file(struct http_req *r, int fd, const struct stat *sp, const char *name)
{
    struct stat st = *sp;
    int64_t from = 0, to = st.st_size - 1;
    const char *range = http_req_header(r, "Range");
    unsigned status = 200;
    char cr[96];
    if (range) {
        if (!bootpath_parse_range(range, st.st_size, &from, &to)) {
            close(fd);
            struct http_answer *a =
                http_answer_error(416, "range not satisfiable");
            snprintf(cr, sizeof(cr), "bytes */%lld", (long long)st.st_size);
            http_answer_header(a, "Content-Range", cr);
            http_respond(r, 416, a);
            return;
        }
        status = 206;
    }
    struct http_answer *a =
        http_answer_file(fd, (uint64_t)from, (uint64_t)(to - from + 1),
                         "application/octet-stream");
    if (!a) {
        http_respond_error(r, 500, "cannot send %s", name);
        return;
    }
    http_answer_header(a, "Accept-Ranges", "bytes");
    if (status == 206) {
        snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)from,
                 (long long)to, (long long)st.st_size);
        http_answer_header(a, "Content-Range", cr);
    }
    http_respond(r, status, a);
}

static void overlay_answer(struct http_req *r, void *arg);

static void
h_overlay(struct http_req *r, void *arg)
{
    boot_answer(r, arg, http_req_cap(r, 0), NULL, overlay_answer);
}

static void
overlay_answer(struct http_req *r, void *arg)
{
    struct buf b = {0};
    char err[512] = "", peer[64];
    int rc = fleet_overlay(arg, http_req_cap(r, 0),
                           http_req_peer(r, peer, sizeof(peer)), &b, err,
                           sizeof(err));
    if (rc == -ENOENT) {
        buf_free(&b);
        http_respond_error(r, 404, "no such overlay");
        return;
    }
    if (rc < 0) {
        buf_free(&b);
        respond_refusal(r, rc, err);
        return;
    }
    http_respond_buf(r, 200, &b, "application/gzip");
}

static void phone_home_answer(struct http_req *r, void *arg);

static void
h_phone_home(struct http_req *r, void *arg)
{
    boot_answer(r, arg, http_req_cap(r, 0), NULL, phone_home_answer);
}

static void
phone_home_answer(struct http_req *r, void *arg)
{
    json_t *root = http_req_json(r);
    if (!root)
        return;
    char err[256] = "", peer[64];
    int rc = fleet_phone_home(arg, http_req_cap(r, 0),
                              http_req_peer(r, peer, sizeof(peer)), root, err,
                              sizeof(err));
    json_decref(root);
    if (rc == -ENOENT)
        http_respond_error(r, 404, "no such boot token");
    else if (rc == -EINVAL)
        http_respond_error(r, 400, "%s", err);
    else if (rc < 0)
        respond_refusal(r, rc, err);
    else
        http_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct http_route routes[] = {
    {"/boot/{mac}.ipxe", HTTP_GET | HTTP_HEAD, 0, NULL, h_boot_script, NULL},
    {"/boot/{mac}.grub", HTTP_GET | HTTP_HEAD, 0, NULL, h_boot_grub, NULL},
    {"/images/{file}", HTTP_GET | HTTP_HEAD, 0, NULL, h_image, NULL},
    {"/media/{token}.iso", HTTP_GET | HTTP_HEAD, 0, NULL, h_media, NULL},
    /* GET only: the overlay is served once, and a HEAD must not spend it. */
    {"/overlay/{token}.tar.gz", HTTP_GET, 0, NULL, h_overlay, NULL},
    {"/v1/phone-home/{token}", HTTP_POST, HTTP_JSON_BODY, NULL, h_phone_home,
     NULL},
};

/* The phone-home is the one body here: an inventory grows with the disks
 * (a 60-disk JBOD with multipath is some 100 KB), so at least 1 MiB. */
#define PHONE_HOME_MAX_BODY (1024 * 1024)

static size_t
bootpath_max_body(void *arg)
{
    size_t max = (size_t)fleet_config(arg)->max_body;
    return max > PHONE_HOME_MAX_BODY ? max : PHONE_HOME_MAX_BODY;
}

void
bootpath_register(struct http *h, struct fleet *f)
{
    struct http_face face = {routes, sizeof(routes) / sizeof(routes[0]), f,
                             bootpath_max_body};
    http_add_face(h, &face);
}
