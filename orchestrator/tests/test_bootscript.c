/* The iPXE scripts and GRUB configs a server gets, and dnsmasq's files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "bootscript.h"
#include "config.h"
#include "dnsmasq.h"
#include "util.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

static struct bootscript_rescue
rescue_params(enum firmware fw)
{
    struct bootscript_rescue r = {.boot_url = "http://10.77.0.1:8080",
                                  .token = "abc123",
                                  .kernel_name = "vmlinuz",
                                  .initrd_name = "initramfs",
                                  .console_tty = "ttyS0,115200n8",
                                  .cmdline = "quiet",
                                  .firmware = fw};
    return r;
}

static int
count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void
test_cmdline_is_the_design_contract(void **state)
{
    (void)state;
    struct bootscript_rescue r = rescue_params(FW_BIOS);
    struct buf b = {0};
    bootscript_cmdline(&r, &b);
    assert_string_equal(
        b.data, "console=ttyS0,115200n8 ip=dhcp BOOTIF=01-${netX/mac:hexhyp} "
                "apkovl=http://10.77.0.1:8080/overlay/abc123.tar.gz "
                "rescue_phone_home=http://10.77.0.1:8080/v1/phone-home/abc123 "
                "modloop=none quiet");
    buf_free(&b);
}

/* The virtual CD's loaders have no iPXE: BOOTIF is the server's MAC, and
 * UEFI's GRUB needs no initrd= (the same line for both firmwares). */
static void
test_cmdline_with_the_mac(void **state)
{
    (void)state;
    struct bootscript_rescue r = rescue_params(FW_UEFI);
    r.mac = "52:54:00:77:00:02";
    struct buf b = {0};
    bootscript_cmdline(&r, &b);
    assert_string_equal(
        b.data, "console=ttyS0,115200n8 ip=dhcp BOOTIF=01-52-54-00-77-00-02 "
                "apkovl=http://10.77.0.1:8080/overlay/abc123.tar.gz "
                "rescue_phone_home=http://10.77.0.1:8080/v1/phone-home/abc123 "
                "modloop=none quiet");
    buf_free(&b);
}

/* With a tools archive, the image is told where to fetch it, with the
 * boot's token (the fetch is recorded for that server). */
static void
test_cmdline_names_the_tools_archive(void **state)
{
    (void)state;
    struct bootscript_rescue r = rescue_params(FW_BIOS);
    struct buf plain = {0}, b = {0};
    bootscript_cmdline(&r, &plain);
    r.tools_name = "tools.squashfs";
    bootscript_cmdline(&r, &b);
    /* The same line, with rescue_tools= before modloop=. */
    const char *m = strstr(plain.data, "modloop=none");
    assert_non_null(m);
    char *want = xasprintf("%.*srescue_tools=http://10.77.0.1:8080/images/"
                           "tools.squashfs?token=abc123 %s",
                           (int)(m - plain.data), plain.data, m);
    assert_string_equal(b.data, want);
    free(want);
    buf_free(&plain);
    buf_free(&b);
}

static void
test_uefi_names_the_initrd(void **state)
{
    (void)state;
    struct bootscript_rescue r = rescue_params(FW_UEFI);
    struct buf b = {0};
    bootscript_cmdline(&r, &b);
    assert_int_equal(strncmp(b.data, "initrd=initramfs ", 17), 0);
    buf_free(&b);
    r = rescue_params(FW_BIOS);
    bootscript_cmdline(&r, &b);
    assert_null(strstr(b.data, "initrd="));
    buf_free(&b);
}

static void
test_rescue_script_retries_each_download(void **state)
{
    (void)state;
    struct bootscript_rescue r = rescue_params(FW_BIOS);
    struct buf b = {0};
    bootscript_rescue(&r, &b);
    assert_int_equal(strncmp(b.data, "#!ipxe\n", 7), 0);
    assert_int_equal(count(b.data, "kernel --name vmlinuz "
                                   "http://10.77.0.1:8080/images/"
                                   "vmlinuz?token=abc123 "),
                     BOOTSCRIPT_ATTEMPTS);
    assert_int_equal(count(b.data, "initrd --name initramfs "),
                     BOOTSCRIPT_ATTEMPTS);
    assert_int_equal(count(b.data, "\nboot || goto "), BOOTSCRIPT_ATTEMPTS);
    /* Every goto lands on a label that exists. */
    for (const char *p = b.data; (p = strstr(p, "goto ")); p += 5) {
        char label[32], want[40];
        assert_int_equal(sscanf(p + 5, "%31[a-z0-9]", label), 1);
        snprintf(want, sizeof(want), "\n:%s\n", label);
        assert_non_null(strstr(b.data, want));
    }
    assert_non_null(strstr(b.data, "attempt 2 of 3"));
    assert_non_null(strstr(b.data, ":failed\n"));
    buf_free(&b);
}

static void
test_local_scripts(void **state)
{
    (void)state;
    struct buf b = {0};
    bootscript_local(FW_BIOS, &b);
    assert_non_null(strstr(b.data, "\nsanboot --no-describe --drive 0x80\n"));
    buf_free(&b);
    bootscript_local(FW_UEFI, &b);
    assert_non_null(strstr(b.data, "\nexit\n"));
    assert_null(strstr(b.data, "sanboot"));
    buf_free(&b);
}

/* An arm64 server's GRUB config boots the same image files with the same
 * kernel command line as the iPXE script would, its BOOTIF= from the MAC
 * (GRUB has no ${netX/mac}), each argument a quoted word. */
static void
test_grub_rescue_config_is_the_ipxe_target(void **state)
{
    (void)state;
    struct bootscript_rescue r = rescue_params(FW_UEFI);
    r.kernel_name = "aarch64-vmlinuz";
    r.initrd_name = "aarch64-initramfs";
    r.tools_name = "aarch64-tools.squashfs";
    r.console_tty = "ttyAMA0,115200";
    r.cmdline = "quiet it's";
    r.mac = "52:54:00:77:00:02";
    struct buf b = {0}, want = {0};
    bootscript_grub_rescue(&r, &b);
    assert_int_equal(count(b.data, "\n    if linux \"(http,10.77.0.1:8080)"
                                   "/images/aarch64-vmlinuz?token=abc123\" "),
                     1);
    assert_non_null(strstr(b.data, "if initrd \"(http,10.77.0.1:8080)/images/"
                                   "aarch64-initramfs?token=abc123\"; then"));
    assert_non_null(strstr(b.data, "\nfor try in 1 2 3; do\n"));
    assert_non_null(strstr(b.data, "\n            boot\n"));
    assert_non_null(strstr(b.data, "\nreboot\n"));
    /* The words of the linux line, unquoted, are the command line. */
    const char *l = strstr(b.data, "?token=abc123\" ");
    assert_non_null(l);
    l += strlen("?token=abc123\" ");
    struct buf got = {0};
    bool in = false;
    for (; *l && !(!in && *l == ';'); l++) {
        if (*l == '\'')
            in = !in;
        else if (!in && *l == '\\')
            buf_append(&got, ++l, 1);
        else
            buf_append(&got, l, 1);
    }
    bootscript_cmdline(&r, &want);
    assert_string_equal(got.data, want.data);
    assert_non_null(strstr(want.data, "console=ttyAMA0,115200 ip=dhcp "
                                      "BOOTIF=01-52-54-00-77-00-02 "));
    assert_null(strstr(want.data, "initrd="));
    assert_non_null(strstr(want.data, "rescue_tools=http://10.77.0.1:8080/"
                                      "images/aarch64-tools.squashfs?token="
                                      "abc123 "));
    /* A quote in an argument cannot end GRUB's word early. */
    assert_non_null(strstr(b.data, " 'it'\\''s'; then"));
    buf_free(&got);
    buf_free(&want);
    buf_free(&b);
    /* Home: the disk's loader, chained (EDK2 stops at its menu when GRUB
     * exits), the removable path last; exit only without one. */
    bootscript_grub_local(&b);
    assert_non_null(strstr(b.data, "\nfor f in /EFI/debian/shimaa64.efi "));
    assert_non_null(strstr(b.data, " /EFI/BOOT/BOOTAA64.EFI; do\n"));
    const char *ch = strstr(b.data, "--set=root $f; then\n");
    assert_non_null(ch);
    assert_non_null(strstr(ch, "        chainloader $f\n        boot\n"));
    assert_non_null(strstr(ch, "\nexit\n"));
    assert_null(strstr(b.data, "linux"));
    buf_free(&b);
}

/* The store gone: the script neither boots a disk nor a rescue, it asks
 * again for itself, in a loop. */
static void
test_wait_script(void **state)
{
    (void)state;
    struct buf b = {0};
    bootscript_wait("http://10.77.0.1:8080", "52:54:00:77:00:01", &b);
    assert_true(strncmp(b.data, "#!ipxe\n:wait\n", 13) == 0);
    assert_non_null(strstr(b.data, "\nsleep 5\nchain --replace "
                                   "http://10.77.0.1:8080/boot/"
                                   "52:54:00:77:00:01.ipxe || goto wait\n"));
    assert_null(strstr(b.data, "sanboot"));
    assert_null(strstr(b.data, "kernel"));
    assert_null(strstr(b.data, "\nexit"));
    buf_free(&b);
}

static struct config *
load_with(const char *mode, const char *pxe, const char *extra)
{
    char path[] = "/tmp/rescued-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "[rescued]\nlisten=127.0.0.1:1\nboot_url=http://10.77.0.1:8080\n"
            "data_dir=/tmp\nadmin_token=t-0123456789abcdef\n"
            "[pxe]\nmode=%s\ninterface=br0\n"
            "dhcp_range=10.77.0.100,10.77.0.200,1h\n%s"
            "[project:p]\n"
            "[server:srv1]\nmac=52:54:00:77:00:01\nproject=p\npower=manual:\n"
            "[server:srv2]\nmac=52-54-00-77-00-02\nproject=p\npower=manual:\n"
            "%s",
            mode, pxe, extra);
    fclose(f);
    char err[256];
    struct config *c = config_load(path, err, sizeof(err));
    unlink(path);
    assert_non_null(c);
    return c;
}

static struct config *
load(const char *mode)
{
    return load_with(mode, "", "");
}

static void
test_dnsmasq_answers_only_the_inventory(void **state)
{
    (void)state;
    struct config *c = load("dhcp");
    struct buf b = {0};
    dnsmasq_write_hosts(c, &b);
    assert_string_equal(b.data, "dhcp-host=52:54:00:77:00:01,set:known,srv1\n"
                                "dhcp-host=52:54:00:77:00:02,set:known,srv2\n");
    buf_free(&b);
    dnsmasq_write_conf(c, "/d", NULL, &b);
    assert_non_null(strstr(b.data, "\ndhcp-ignore=tag:!known\n"));
    /* Read as root with the options, then it drops to a user of its own. */
    assert_non_null(strstr(b.data, "\nconf-file=/d/hosts\n"));
    assert_null(strstr(b.data, "user=root"));
    const char *u = strstr(b.data, "\nuser=");
    assert_non_null(u);
    char user[64];
    assert_int_equal(sscanf(u, "\nuser=%63[^\n]", user), 1);
    const struct passwd *pw = getpwnam(user);
    assert_non_null(pw);
    assert_int_not_equal(pw->pw_uid, 0);
    assert_non_null(strstr(b.data, "\nport=0\n"));
    assert_non_null(strstr(b.data, "\ninterface=br0\n"));
    assert_non_null(
        strstr(b.data, "\ndhcp-range=10.77.0.100,10.77.0.200,1h\n"));
    assert_non_null(strstr(b.data,
                           "\ndhcp-boot=tag:!ipxe,tag:!efi64,"
                           "tag:!arm64,tag:!arm64http,undionly.kpxe\n"));
    assert_non_null(strstr(b.data, "\ntftp-root=/usr/lib/ipxe\n"));
    assert_non_null(strstr(b.data, "\ndhcp-boot=tag:!ipxe,tag:efi64,"
                                   "ipxe.efi\n"));
    assert_non_null(strstr(b.data, "\ndhcp-boot=tag:ipxe,http://10.77.0.1:8080"
                                   "/boot/${net0/mac}.ipxe\n"));
    assert_null(strstr(b.data, "proxy"));
    buf_free(&b);
    config_free(c);
}

/* Who rescued's dnsmasq leased a MAC to: the boot path takes a server's
 * boot only from there (fleet_boot.c).  A MAC may hold two leases (iPXE
 * and the rescue OS with another client id). */
static void
test_dnsmasq_lease_match(void **state)
{
    (void)state;
    const int64_t now = 1796000000;
    const char *leases =
        "1796000100 52:54:00:77:00:01 10.77.0.150 srv1 01:52:54:00:77:00:01\n"
        "0 52:54:00:77:00:02 10.77.0.151 * *\n"
        "1796000200 52:54:00:77:00:01 10.77.0.152 srv1 ff:00:11\n"
        "1795999999 52:54:00:77:00:03 10.77.0.153 srv3 *\n";
    const char *m1 = "52:54:00:77:00:01", *m2 = "52:54:00:77:00:02";
    assert_int_equal(dnsmasq_lease_match(leases, m1, "10.77.0.150", now), 1);
    assert_int_equal(dnsmasq_lease_match(leases, m1, "10.77.0.152", now), 1);
    assert_int_equal(dnsmasq_lease_match(leases, m1, "10.77.0.151", now), 0);
    /* An infinite lease counts; a prefix of an address is not it. */
    assert_int_equal(dnsmasq_lease_match(leases, m2, "10.77.0.151", now), 1);
    assert_int_equal(dnsmasq_lease_match(leases, m2, "10.77.0.15", now), 0);
    /* An expired lease is none; nor is a MAC not in the file. */
    assert_int_equal(
        dnsmasq_lease_match(leases, "52:54:00:77:00:03", "10.77.0.153", now),
        -ENOENT);
    assert_int_equal(
        dnsmasq_lease_match(leases, "52:54:00:77:00:04", "10.77.0.150", now),
        -ENOENT);
    assert_int_equal(dnsmasq_lease_match("", m1, "1.2.3.4", now), -ENOENT);
    assert_int_equal(dnsmasq_leased(NULL, m1, "1.2.3.4"), -ENOENT);
}

static void
test_dnsmasq_proxy_mode_has_pxe_services(void **state)
{
    (void)state;
    struct config *c = load("proxy");
    struct buf b = {0};
    dnsmasq_write_conf(c, "/d", "10.77.0.1", &b);
    assert_non_null(strstr(b.data, ",proxy\n"));
    /* dnsmasq answers proxy requests only with a pxe-service line. */
    assert_int_equal(count(b.data, "\npxe-service="), 3);
    assert_non_null(strstr(b.data, "\npxe-service=ARM64_EFI,\"rescued\","
                                   "grubnetaa64.efi\n"));
    /* iPXE ignores a proxy offer's file name without a next server. */
    assert_non_null(strstr(b.data, "\ndhcp-boot=tag:ipxe,http://10.77.0.1:8080"
                                   "/boot/${net0/mac}.ipxe,,10.77.0.1\n"));
    buf_free(&b);
    config_free(c);
}

/* dnsmasq tells arm64 UEFI clients apart by option 93 (11 PXE, 19 HTTP
 * boot) and gives each GRUB: by TFTP from tftp_root, or by URL from
 * rescued with HTTPClient in the answer; the inventory's aarch64 servers
 * (tagged in the host file) get rescued's host:port in option 17. */
static void
test_dnsmasq_arm64_gets_grub(void **state)
{
    (void)state;
    struct config *c =
        load_with("dhcp", "tftp_root=/srv/tftp\n",
                  "arch=aarch64\n[image]\ngrub_aarch64=/x/gnet.efi\n");
    struct buf b = {0};
    dnsmasq_write_hosts(c, &b);
    assert_string_equal(b.data,
                        "dhcp-host=52:54:00:77:00:01,set:known,srv1\n"
                        "dhcp-host=52:54:00:77:00:02,set:known,set:aarch64,"
                        "srv2\n");
    buf_free(&b);
    dnsmasq_write_conf(c, "/d", NULL, &b);
    assert_non_null(strstr(b.data, "\ntftp-root=/srv/tftp\n"));
    assert_non_null(strstr(b.data, "\ndhcp-match=set:arm64,option:client-arch,"
                                   "11\n"));
    assert_non_null(strstr(b.data, "\ndhcp-match=set:arm64http,option:client-"
                                   "arch,19\n"));
    assert_non_null(strstr(b.data, "\ndhcp-boot=tag:arm64,gnet.efi\n"));
    assert_non_null(strstr(b.data, "\ndhcp-boot=tag:arm64http,http://10.77.0.1"
                                   ":8080/images/aarch64-gnet.efi\n"));
    assert_non_null(strstr(b.data, "\ndhcp-option-force=tag:arm64http,60,"
                                   "HTTPClient\n"));
    assert_non_null(strstr(b.data, "\ndhcp-option-force=tag:aarch64,17,"
                                   "\"10.77.0.1:8080\"\n"));
    buf_free(&b);
    config_free(c);
    /* Without the loader configured there is no URL to hand HTTP boot. */
    c = load("dhcp");
    dnsmasq_write_conf(c, "/d", NULL, &b);
    assert_non_null(strstr(b.data, "\ndhcp-boot=tag:arm64,grubnetaa64.efi\n"));
    assert_null(strstr(b.data, "tag:arm64http,http"));
    buf_free(&b);
    config_free(c);
}

/* The same for GRUB: wait, then this MAC's config again; never its disk
 * (no chainloader, no exit), never a kernel. */
static void
test_grub_wait_config(void **state)
{
    (void)state;
    struct buf b = {0};
    bootscript_grub_wait("http://10.77.0.1:8080", "52:54:00:77:00:01", &b);
    assert_non_null(strstr(b.data, "\nsleep 5\nconfigfile "
                                   "\"(http,10.77.0.1:8080)/boot/"
                                   "52:54:00:77:00:01.grub\"\n"));
    assert_null(strstr(b.data, "chainloader"));
    assert_null(strstr(b.data, "linux"));
    assert_null(strstr(b.data, "\nexit"));
    buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmdline_is_the_design_contract),
        cmocka_unit_test(test_cmdline_with_the_mac),
        cmocka_unit_test(test_wait_script),
        cmocka_unit_test(test_grub_wait_config),
        cmocka_unit_test(test_cmdline_names_the_tools_archive),
        cmocka_unit_test(test_uefi_names_the_initrd),
        cmocka_unit_test(test_rescue_script_retries_each_download),
        cmocka_unit_test(test_local_scripts),
        cmocka_unit_test(test_grub_rescue_config_is_the_ipxe_target),
        cmocka_unit_test(test_dnsmasq_arm64_gets_grub),
        cmocka_unit_test(test_dnsmasq_answers_only_the_inventory),
        cmocka_unit_test(test_dnsmasq_proxy_mode_has_pxe_services),
        cmocka_unit_test(test_dnsmasq_lease_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
