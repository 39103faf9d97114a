/* The boot path in-process: a real config, store and fleet, bootpath on
 * http on 127.0.0.1:0, and curl playing iPXE and the rescue OS: the
 * script, the kernel with Range, the overlay, phone-home. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "bootpath.h"
#include "config.h"
#include "fleet.h"
#include "http.h"
#include "loop.h"
#include "store.h"
#include "testutil.h"
#include "util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpclient.h"
#include "fleetenv.h"

#define MAC "52:54:00:00:02:01"
#define KERNEL "KERNEL-BYTES-0123456789" /* 23 bytes */
#define KEY                                                                    \
    "ssh-ed25519 "                                                             \
    "AAAAC3NzaC1lZDI1NTE5AAAAIL/8vzGNCpIQIPK+p7NoM73ZDLWF6tZAb3DPdMsVH8Ks "    \
    "test@bootpath"

static int
setup(void **state)
{
    *state = env_face_new("[project:acme]\n"
                          "[server:srv1]\n"
                          "mac = " MAC "\n"
                          "project = acme\n"
                          "power = manual:\n",
                          KERNEL, bootpath_register);
    return 0;
}

/* As setup, with a tools archive in [image] (env_config writes the
 * caller's text right after its own [image] lines). */
#define TOOLS "SQUASHFS-TOOLS" /* 14 bytes */
static int
setup_tools(void **state)
{
    struct env *e = env_dir_new(KERNEL);
    char *f = xasprintf("%s/tools.squashfs", e->dir);
    assert_int_equal(write_file_atomic(f, TOOLS, strlen(TOOLS), 0644), 0);
    char *sections = xasprintf("tools = %s\n"
                               "[project:acme]\n"
                               "[server:srv1]\n"
                               "mac = " MAC "\n"
                               "project = acme\n"
                               "power = manual:\n",
                               f);
    env_start(e, NULL, sections);
    free(sections);
    free(f);
    e->http = hc_serve(e->loop);
    bootpath_register(e->http, e->fleet);
    *state = e;
    return 0;
}

/* srv1 as an arm64 UEFI server, with (or without) the arm64 image files
 * in [image]; x86's vmlinuz is KERNEL, arm64's ARM64. */
#define ARM64 "ARM64-KERNEL"
#define GRUBEFI "GRUB-EFI-LOADER"
static struct env *
arm64_env(bool image)
{
    struct env *e = env_dir_new(KERNEL);
    char *dir = xasprintf("%s/arm64", e->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    const char *names[] = {"vmlinuz", "initramfs", "grubnetaa64.efi"};
    const char *bytes[] = {ARM64, "ARM64-INITRD", GRUBEFI};
    for (size_t i = 0; i < 3; i++) {
        char *f = xasprintf("%s/%s", dir, names[i]);
        assert_int_equal(write_file_atomic(f, bytes[i], strlen(bytes[i]), 0644),
                         0);
        free(f);
    }
    char *img = xasprintf("kernel_aarch64 = %s/vmlinuz\n"
                          "initrd_aarch64 = %s/initramfs\n"
                          "grub_aarch64 = %s/grubnetaa64.efi\n",
                          dir, dir, dir);
    char *sections = xasprintf("%s[project:acme]\n"
                               "[server:srv1]\n"
                               "mac = " MAC "\n"
                               "project = acme\n"
                               "power = manual:\n"
                               "arch = aarch64\n"
                               "firmware = uefi\n"
                               "console_tty = ttyAMA0,115200\n",
                               image ? img : "");
    env_start(e, NULL, sections);
    free(sections);
    free(img);
    free(dir);
    e->http = hc_serve(e->loop);
    bootpath_register(e->http, e->fleet);
    return e;
}

static int
setup_arm64(void **state)
{
    *state = arm64_env(true);
    return 0;
}

static int
setup_arm64_no_image(void **state)
{
    *state = arm64_env(false);
    return 0;
}

/* Whether srv1 has an event whose message is arg. */
static int
has_message(void *arg, const struct store_event *ev)
{
    return strcmp(ev->message, arg) == 0;
}

static char *
state_of(const char *id)
{
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), id);
    json_t *o = fleet_server_json(E->fleet, cs);
    char *s = xstrdup(json_string_value(json_object_get(o, "state")));
    json_decref(o);
    return s;
}

static void
expect_state(const char *want)
{
    char *got = state_of("srv1");
    assert_string_equal(got, want);
    free(got);
}

/* arg is a server's id: in state rebooting. */
static bool
rebooting(void *arg)
{
    char *st = state_of(arg);
    bool yes = strcmp(st, "rebooting") == 0;
    free(st);
    return yes;
}

/* Put srv1 on its way to the rescue image and fetch its script: the
 * boot's token, from the overlay URL in it. */
static void
rescue_token(char out[65])
{
    const char *keys[] = {KEY, NULL};
    struct fleet_action fa = {
        .event = FSM_EV_RESCUE, .ssh_keys = keys, .nkeys = 1, .actor = "admin"};
    char err[256] = "";
    if (fleet_action(E->fleet, "srv1", &fa, err, sizeof(err)) < 0)
        fail_msg("rescue: %s", err);
    tu_pump_until(E->loop, 3000, rebooting, "srv1");
    expect_state("rebooting");
    struct resp r;
    http(&(struct call){"GET", "/boot/52-54-00-00-02-01.ipxe"}, &r);
    assert_int_equal(r.status, 200);
    const char *o = strstr(r.body.data, "overlay/");
    assert_non_null(o);
    assert_int_equal(strspn(o + 8, "0123456789abcdef"), 64);
    memcpy(out, o + 8, 64);
    out[64] = '\0';
    resp_clear(&r);
    expect_state("pxe_booting");
}

/* The kernel with the boot's token, from 127.0.0.1: rescue_booting, the
 * token bound to that address. */
static void
fetch_kernel(const char *token)
{
    char *path = xasprintf("/images/vmlinuz?token=%s", token);
    struct resp r;
    http(&(struct call){"GET", path}, &r);
    free(path);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    expect_state("rescue_booting");
}

static void
test_boot_script(void **state)
{
    (void)state;
    struct resp r;
    expect_error(&(struct call){"GET", "/boot/52:54:00:99:99:99.ipxe"}, 404,
                 "not_found");
    /* A capture that is no MAC at all: the same 404. */
    expect_error(&(struct call){"GET", "/boot/zz.ipxe"}, 404, "not_found");
    expect_error(&(struct call){"GET", "/boot/52:54:00:00:02.ipxe"}, 404,
                 "not_found");
    expect_error(&(struct call){"POST", "/boot/" MAC ".ipxe", NULL, NULL, "{}"},
                 405, "method_not_allowed");
    /* An active server boots its own disk. */
    http(&(struct call){"GET", "/boot/" MAC ".ipxe"}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(r.body.data, "sanboot --no-describe --drive 0x80"));
    resp_clear(&r);
}

static void
test_images(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    char *path = xasprintf("/images/vmlinuz?token=%s", token);
    struct resp r;

    /* Two ranges, as a resuming client asks. */
    const struct {
        const char *range, *body, *content_range;
    } ok[] = {
        {"Range: bytes=0-5", "KERNEL", "bytes 0-5/23"},
        {"Range: bytes=7-", "BYTES-0123456789", "bytes 7-22/23"},
        {"Range: bytes=-4", "6789", "bytes 19-22/23"},
        {"Range: bytes=20-99", "789", "bytes 20-22/23"},
        {"Range: bytes=-99", KERNEL, "bytes 0-22/23"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        http(&(struct call){"GET", path, NULL, NULL, NULL, false, ok[i].range},
             &r);
        assert_int_equal(r.status, 206);
        assert_string_equal(r.body.data, ok[i].body);
        char *cr = xasprintf("Content-Range: %s\r\n", ok[i].content_range);
        assert_non_null(strstr(r.headers.data, cr));
        free(cr);
        resp_clear(&r);
    }
    expect_state("rescue_booting");

    /* The whole file, with its length and Accept-Ranges. */
    http(&(struct call){"GET", path}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, KERNEL);
    assert_non_null(strstr(r.headers.data, "Content-Length: 23\r\n"));
    assert_non_null(strstr(r.headers.data, "Accept-Ranges: bytes\r\n"));
    assert_non_null(
        strstr(r.headers.data, "Content-Type: application/octet-stream\r\n"));
    resp_clear(&r);
    http(&(struct call){"HEAD", "/images/initrd"}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "Content-Length: 1\r\n"));
    resp_clear(&r);

    /* Ranges that cannot be served: 416 with the size. */
    const char *bad[] = {"Range: bytes=23-",     "Range: bytes=5-2",
                         "Range: bytes=0-1,4-5", "Range: items=0-1",
                         "Range: bytes=-0",      "Range: bytes=x-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http(&(struct call){"GET", path, NULL, NULL, NULL, false, bad[i]}, &r);
        if (r.status != 416)
            fail_msg("%s: got %ld", bad[i], r.status);
        assert_string_equal(jstr(r.json, "code"), "range_not_satisfiable");
        assert_non_null(
            strstr(r.headers.data, "Content-Range: bytes */23\r\n"));
        resp_clear(&r);
    }
    free(path);

    /* Only the image files, by their names. */
    const char *none[] = {"/images/..%2fetc%2fpasswd", "/images/passwd",
                          "/images/.vmlinuz", "/images/"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        expect_error(&(struct call){"GET", none[i]}, 404, "not_found");
    /* A virtual CD only for the live token of a virtual-media boot: srv1
     * (manual power, no [image] iso) has none, whatever its token. */
    char *cdpath = xasprintf("/media/%s.iso", token);
    http(&(struct call){"GET", cdpath}, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(jstr(r.json, "error"), "no such virtual CD");
    resp_clear(&r);
    free(cdpath);
    /* Named but gone from the disk. */
    char *k = xasprintf("%s/vmlinuz", E->dir);
    assert_int_equal(unlink(k), 0);
    free(k);
    http(&(struct call){"GET", "/images/vmlinuz"}, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(jstr(r.json, "error"), "image file vmlinuz is missing");
    resp_clear(&r);
}

/* The tools archive: named on the kernel command line with the boot's
 * token, served like the kernel, and its fetch an event of the server's
 * that moves no state (the rescue OS fetches it once it runs). */
static void
test_tools_archive(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    struct resp r;
    http(&(struct call){"GET", "/boot/52-54-00-00-02-01.ipxe"}, &r);
    assert_int_equal(r.status, 200);
    const char *t = strstr(r.body.data, " rescue_tools=http://127.0.0.1:8080/"
                                        "images/tools.squashfs?token=");
    assert_non_null(t);
    assert_int_equal(strncmp(strstr(t, "token=") + 6, token, 64), 0);
    char *path = xasprintf("/images/tools.squashfs?token=%s", token);
    resp_clear(&r);
    expect_state("pxe_booting");

    /* Before its boot fetched the kernel, the token is no boot's. */
    expect_error(&(struct call){"GET", path}, 409, "conflict");
    fetch_kernel(token);
    http(&(struct call){"GET", path}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, TOOLS);
    resp_clear(&r);
    free(path);
    expect_state("rescue_booting");
    assert_int_equal(store_list_events(E->st, "srv1", 0, 0, has_message,
                                       "fetching the tools archive "
                                       "tools.squashfs from 127.0.0.1"),
                     1);
}

/* srv1's rescue asked by admin with one key: 0 or the refusal in err. */
static int
ask_rescue(char *err, size_t errlen)
{
    const char *keys[] = {KEY, NULL};
    struct fleet_action fa = {
        .event = FSM_EV_RESCUE, .ssh_keys = keys, .nkeys = 1, .actor = "admin"};
    return fleet_action(E->fleet, "srv1", &fa, err, errlen);
}

/* An arm64 server boots by GRUB: its /boot/<mac>.grub names arm64's
 * files (aarch64-<name>) with the boot's token and its console, and the
 * same fetches move it as iPXE's do; the loader itself is public and
 * moves nothing. */
static void
test_arm64_boots_by_grub(void **state)
{
    (void)state;
    char err[256] = "";
    if (ask_rescue(err, sizeof(err)) < 0)
        fail_msg("rescue: %s", err);
    tu_pump_until(E->loop, 3000, rebooting, "srv1");
    struct resp r;
    http(&(struct call){"GET", "/images/aarch64-grubnetaa64.efi"}, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, GRUBEFI);
    resp_clear(&r);
    expect_state("rebooting");

    http(&(struct call){"GET", "/boot/" MAC ".grub"}, &r);
    assert_int_equal(r.status, 200);
    const char *k = strstr(r.body.data, "if linux \"(http,127.0.0.1:8080)"
                                        "/images/aarch64-vmlinuz?token=");
    assert_non_null(k);
    char token[65];
    k = strstr(k, "token=") + 6;
    assert_int_equal(strspn(k, "0123456789abcdef"), 64);
    memcpy(token, k, 64);
    token[64] = '\0';
    assert_non_null(strstr(r.body.data, " 'console=ttyAMA0,115200' "));
    assert_non_null(strstr(r.body.data, " 'BOOTIF=01-52-54-00-00-02-01' "));
    assert_non_null(strstr(r.body.data, "/images/aarch64-initramfs?token="));
    resp_clear(&r);
    expect_state("pxe_booting");
    assert_int_equal(store_list_events(E->st, "srv1", 0, 0, has_message,
                                       "fetched its GRUB config (rescue "
                                       "image) from 127.0.0.1"),
                     1);
    /* The transition says what was fetched (it said "ipxe script"). */
    assert_int_equal(store_list_events(E->st, "srv1", 0, 0, has_message,
                                       "grub config fetched"),
                     1);

    /* x86's vmlinuz is another file; arm64's moves the boot. */
    char *path = xasprintf("/images/aarch64-vmlinuz?token=%s", token);
    http(&(struct call){"GET", path}, &r);
    free(path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, ARM64);
    resp_clear(&r);
    expect_state("rescue_booting");
    http(&(struct call){"GET", "/images/vmlinuz"}, &r);
    assert_string_equal(r.body.data, KERNEL);
    resp_clear(&r);
    expect_error(&(struct call){"GET", "/images/aarch64-nothing"}, 404,
                 "not_found");
}

/* No arm64 image configured: an arm64 server's rescue is refused up
 * front, in words that say what to set. */
static void
test_arm64_without_image_refused(void **state)
{
    (void)state;
    char err[256] = "";
    assert_true(ask_rescue(err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "no aarch64 rescue image: set [image] "
                                "kernel_aarch64"));
    expect_state("active");
    struct resp r;
    http(&(struct call){"GET", "/boot/" MAC ".grub"}, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "this server boots its own disk"));
    resp_clear(&r);
}

/* Without [image] tools there is no such image, and no rescue_tools=. */
static void
test_no_tools_archive(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    char *path = xasprintf("/images/tools.squashfs?token=%s", token);
    expect_error(&(struct call){"GET", path}, 404, "not_found");
    free(path);
    struct resp r;
    http(&(struct call){"GET", "/boot/52-54-00-00-02-01.ipxe"}, &r);
    assert_null(strstr(r.body.data, "rescue_tools="));
    resp_clear(&r);
}

static void
test_overlay_and_phone_home(void **state)
{
    (void)state;
    struct resp r;
    expect_error(&(struct call){"GET", "/overlay/0000.tar.gz"}, 404,
                 "not_found");
    expect_error(&(struct call){"GET", "/overlay/ABCD.tar.gz"}, 404,
                 "not_found");
    expect_error(&(struct call){"POST", "/v1/phone-home/abcdef", NULL, NULL,
                                "{\"ip\": \"10.0.0.5\"}"},
                 404, "not_found");
    char token[65];
    rescue_token(token);
    fetch_kernel(token);

    char *p = xasprintf("/overlay/%s.tar.gz", token);
    http(&(struct call){"GET", p}, &r);
    free(p);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "Content-Type: application/gzip"));
    assert_true(r.body.len > 2);
    assert_int_equal((unsigned char)r.body.data[0], 0x1f);
    assert_int_equal((unsigned char)r.body.data[1], 0x8b);
    resp_clear(&r);

    p = xasprintf("/v1/phone-home/%s", token);
    expect_error(&(struct call){"POST", p, NULL, "text/plain", "ip=1"}, 415,
                 "unsupported_media_type");
    expect_error(&(struct call){"POST", p, NULL, NULL, "{\"ip\": "}, 400,
                 "bad_request");
    expect_error(&(struct call){"POST", p, NULL, NULL, "{\"mac\": \"x\"}"}, 400,
                 "bad_request");
    /* An inventory is not bound by max_body (1K here) but by 1 MiB. */
    size_t nbig = 1024 * 1024 + 100;
    char *big = xmalloc(nbig);
    hc_big_body(big, nbig);
    expect_error(&(struct call){"POST", p, NULL, NULL, big}, 413,
                 "payload_too_large");
    free(big);
    /* A member of the inventory of the wrong shape is refused. */
    expect_error(&(struct call){"POST", p, NULL, NULL,
                                "{\"ip\": \"10.0.0.5\", \"disks\": {}}"},
                 400, "bad_request");
    expect_error(&(struct call){"POST", p, NULL, NULL,
                                "{\"ip\": \"10.0.0.5\", \"disks\": [1]}"},
                 400, "bad_request");
    expect_state("rescue_booting"); /* a refused report moves nothing */
    /* A large inventory (300 devices, ~60 KB) is taken whole. */
    struct buf inv = {0};
    buf_printf(&inv, "{\"ip\": \"10.0.0.5\", \"mac\": \"" MAC "\", "
                     "\"disks\": [");
    for (int i = 0; i < 300; i++)
        buf_printf(&inv,
                   "%s{\"name\": \"sd%d\", \"size\": 4000787030016, "
                   "\"type\": \"disk\", \"fstype\": \"linux_raid_member\", "
                   "\"serial\": \"WD-WCC7K%07d\", \"model\": \"WDC "
                   "WD40EFRX-68N32N0\", \"holds\": \"md member of md127\"}",
                   i ? ", " : "", i, i);
    buf_printf(&inv, "], \"root_guess\": {\"device\": \"/dev/md127\"}}");
    assert_true(inv.len > 50000);
    http(&(struct call){"POST", p, NULL, NULL, inv.data}, &r);
    buf_free(&inv);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "ok");
    resp_clear(&r);
    free(p);
    expect_state("rescue");
    /* Stored as the rescue object, every inventory member present. */
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), "srv1");
    json_t *o = fleet_server_json(E->fleet, cs);
    json_t *resc = json_object_get(o, "rescue");
    assert_int_equal(json_array_size(json_object_get(resc, "disks")), 300);
    assert_string_equal(jstr(json_object_get(resc, "root_guess"), "device"),
                        "/dev/md127");
    const char *nulls[] = {"md_arrays", "lvm", "tools"};
    for (size_t i = 0; i < 3; i++)
        assert_true(json_is_null(json_object_get(resc, nulls[i])));
    json_decref(o);
}

/* Another host on the provisioning network: loopback's 127.0.0.2. */
#define STRANGER "127.0.0.2"

/* How many events srv1 has. */
static int
count_event(void *arg, const struct store_event *ev)
{
    (void)ev;
    (*(int *)arg)++;
    return 0;
}

static int
events(void)
{
    int n = 0;
    assert_int_equal(store_list_events(E->st, "srv1", 0, 0, count_event, &n),
                     0);
    return n;
}

/* The body of a refusal names no server, project or state. */
static void
expect_refusal(const struct call *c, long status, const char *code)
{
    struct resp r;
    http(c, &r);
    if (r.status != status || !r.json || strcmp(jstr(r.json, "code"), code))
        fail_msg("%s %.60s from %s: expected %ld %s, got %ld %.200s", c->method,
                 c->path, c->from ? c->from : "127.0.0.1", status, code,
                 r.status, r.body.data ? r.body.data : "");
    const char *words[] = {"srv1", "acme", "booting", "rescue_", "active"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(r.body.data, words[i]))
            fail_msg("the refusal tells a stranger '%s': %s", words[i],
                     r.body.data);
    resp_clear(&r);
}

#define REAL_REPORT                                                            \
    "{\"ip\": \"127.0.0.1\", \"ssh_host_keys\": [{\"type\": "                  \
    "\"ssh-ed25519\", \"fingerprint\": \"SHA256:real\"}]}"
#define EVIL_REPORT                                                            \
    "{\"ip\": \"127.0.0.2\", \"ssh_host_keys\": [{\"type\": "                  \
    "\"ssh-ed25519\", \"fingerprint\": \"SHA256:evil\"}]}"

/* The fingerprint the owner is shown, or "". */
static char *
shown_fingerprint(void)
{
    const struct config_server *cs =
        config_find_server(fleet_config(E->fleet), "srv1");
    json_t *o = fleet_server_json(E->fleet, cs);
    json_t *k = json_array_get(
        json_object_get(json_object_get(o, "rescue"), "ssh_host_keys"), 0);
    const char *fp = json_string_value(json_object_get(k, "fingerprint"));
    char *out = xstrdup(fp ? fp : "");
    json_decref(o);
    return out;
}

/* A stranger who knows the MAC gets the script (and its token) as the
 * server does, but cannot use the token: the kernel's fetch bound it to
 * the server's address.  Overlay and phone-home from elsewhere: 403; the
 * overlay is served once, the phone-home taken once: then 409.  Nothing
 * moves, and the host keys shown are the real boot's. */
static void
test_stranger_cannot_speak_for_a_server(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    struct resp r;
    http(&(struct call){"GET", "/boot/" MAC ".ipxe", .from = STRANGER}, &r);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body.data, "srv1"));
    resp_clear(&r);
    expect_state("pxe_booting");
    fetch_kernel(token);

    char *k = xasprintf("/images/vmlinuz?token=%s", token);
    char *ovl = xasprintf("/overlay/%s.tar.gz", token);
    char *ph = xasprintf("/v1/phone-home/%s", token);
    expect_refusal(&(struct call){"GET", k, .from = STRANGER}, 403,
                   "forbidden");
    expect_refusal(&(struct call){"GET", ovl, .from = STRANGER}, 403,
                   "forbidden");
    expect_refusal(
        &(struct call){"POST", ph, .body = EVIL_REPORT, .from = STRANGER}, 403,
        "forbidden");
    expect_state("rescue_booting");
    char *fp = shown_fingerprint();
    assert_string_equal(fp, "");
    free(fp);
    assert_int_equal(store_list_events(E->st, "srv1", 0, 0, has_message,
                                       "refused a phone-home from 127.0.0.2: "
                                       "its boot token is bound to another "
                                       "address"),
                     1);

    /* The overlay goes once, to the boot's address; a HEAD cannot spend
     * it. */
    http(&(struct call){"HEAD", ovl}, &r);
    assert_int_equal(r.status, 405);
    resp_clear(&r);
    http(&(struct call){"GET", ovl}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    expect_refusal(&(struct call){"GET", ovl}, 409, "conflict");

    /* The one real phone-home; after it, nobody speaks for the server. */
    http(&(struct call){"POST", ph, .body = REAL_REPORT}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    expect_state("rescue");
    expect_refusal(&(struct call){"POST", ph, .body = EVIL_REPORT}, 409,
                   "conflict");
    expect_refusal(
        &(struct call){"POST", ph, .body = EVIL_REPORT, .from = STRANGER}, 409,
        "conflict");
    expect_state("rescue");
    fp = shown_fingerprint();
    assert_string_equal(fp, "SHA256:real");
    free(fp);
    free(k);
    free(ovl);
    free(ph);
}

/* A phone-home before the rescue kernel was fetched is no rescue OS's:
 * refused, and the server still rebooting (today it jumped to rescue). */
static void
test_phone_home_only_in_rescue_booting(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    char *ph = xasprintf("/v1/phone-home/%s", token);
    expect_refusal(&(struct call){"POST", ph, .body = EVIL_REPORT}, 409,
                   "conflict");
    expect_state("pxe_booting");
    char *fp = shown_fingerprint();
    assert_string_equal(fp, "");
    free(fp);
    free(ph);
}

/* HEAD asks what GET would get, and moves nothing: not the script, not
 * the kernel with its token. */
static void
test_head_moves_nothing(void **state)
{
    (void)state;
    const char *keys[] = {KEY, NULL};
    struct fleet_action fa = {
        .event = FSM_EV_RESCUE, .ssh_keys = keys, .nkeys = 1, .actor = "admin"};
    char err[256] = "", token[65];
    assert_int_equal(fleet_action(E->fleet, "srv1", &fa, err, sizeof(err)), 0);
    tu_pump_until(E->loop, 3000, rebooting, "srv1");
    int before = events();
    struct resp r;
    http(&(struct call){"HEAD", "/boot/" MAC ".ipxe"}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    expect_state("rebooting");
    assert_int_equal(events(), before);
    assert_int_equal(store_token_of_server(E->st, "srv1", token, 65), 0);
    char *k = xasprintf("/images/vmlinuz?token=%s", token);
    http(&(struct call){"GET", "/boot/" MAC ".ipxe"}, &r);
    resp_clear(&r);
    expect_state("pxe_booting");
    before = events();
    http(&(struct call){"HEAD", k}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    expect_state("pxe_booting");
    assert_int_equal(events(), before);
    free(k);
}

/* A flood of boot-path requests for one MAC: the first fetch of a step is
 * an event, the rest are not (no event, no fsync each), and none from a
 * stranger moves the server. */
static void
test_flood_grows_nothing(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    fetch_kernel(token);
    int before = events();
    char *k = xasprintf("/images/vmlinuz?token=%s", token);
    char *ph = xasprintf("/v1/phone-home/%s", token);
    for (int i = 0; i < 50; i++) {
        struct resp r;
        http(&(struct call){"GET", "/boot/" MAC ".ipxe", .from = STRANGER}, &r);
        assert_int_equal(r.status, 200);
        resp_clear(&r);
        http(&(struct call){"GET", k}, &r);
        assert_int_equal(r.status, 200);
        resp_clear(&r);
        http(&(struct call){"POST", ph, .body = EVIL_REPORT, .from = STRANGER},
             &r);
        assert_int_equal(r.status, 403);
        resp_clear(&r);
    }
    expect_state("rescue_booting");
    /* One each: the stranger's script fetch, the refused phone-home. */
    assert_int_equal(events(), before + 2);
    /* Each refusal is counted all the same. */
    struct buf m = {0};
    fleet_metrics(E->fleet, &m);
    assert_non_null(
        strstr(m.data, "\nrescued_boot_refusals_total{code=\"403\"} 50\n"));
    buf_free(&m);
    free(k);
    free(ph);
}

/* On its way home, a server leaves exiting by its own fetch of the local
 * script, not by a stranger's. */
static void
test_exiting_not_moved_by_a_stranger(void **state)
{
    (void)state;
    char token[65];
    rescue_token(token);
    fetch_kernel(token);
    char *ph = xasprintf("/v1/phone-home/%s", token);
    struct resp r;
    http(&(struct call){"POST", ph, .body = REAL_REPORT}, &r);
    assert_int_equal(r.status, 200);
    resp_clear(&r);
    free(ph);
    expect_state("rescue");
    struct fleet_action fa = {.event = FSM_EV_EXIT_RESCUE, .actor = "admin"};
    char err[256] = "";
    assert_int_equal(fleet_action(E->fleet, "srv1", &fa, err, sizeof(err)), 0);
    expect_state("exiting");
    http(&(struct call){"GET", "/boot/" MAC ".ipxe", .from = STRANGER}, &r);
    assert_non_null(strstr(r.body.data, "sanboot"));
    resp_clear(&r);
    expect_state("exiting");
    http(&(struct call){"GET", "/boot/" MAC ".ipxe"}, &r);
    resp_clear(&r);
    expect_state("booting_local");
    /* The exit revoked the token. */
    char *ovl = xasprintf("/overlay/%s.tar.gz", token);
    expect_error(&(struct call){"GET", ovl}, 404, "not_found");
    free(ovl);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_boot_script, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_images, setup, env_face_teardown),
        cmocka_unit_test_setup_teardown(test_arm64_boots_by_grub, setup_arm64,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_arm64_without_image_refused,
                                        setup_arm64_no_image,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_overlay_and_phone_home, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_tools_archive, setup_tools,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_no_tools_archive, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_stranger_cannot_speak_for_a_server,
                                        setup, env_face_teardown),
        cmocka_unit_test_setup_teardown(test_phone_home_only_in_rescue_booting,
                                        setup, env_face_teardown),
        cmocka_unit_test_setup_teardown(test_head_moves_nothing, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_flood_grows_nothing, setup,
                                        env_face_teardown),
        cmocka_unit_test_setup_teardown(test_exiting_not_moved_by_a_stranger,
                                        setup, env_face_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
