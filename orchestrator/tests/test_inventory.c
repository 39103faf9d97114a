/* The rescue OS's disk report: the names and shapes it is stored with, and
 * the table rescuectl status prints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "inventory.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *
parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad test JSON: %s: %s", e.text, text);
    return j;
}

static void
expect_normal(json_t *report, const char *want)
{
    char err[128] = "";
    assert_int_equal(inventory_normalize(report, err, sizeof(err)), 0);
    char *got = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(got, want);
    free(got);
}

/* inventory_format of REPORT is WANT (NULL: nothing at all). */
static void
expect_format(const char *report, const char *want)
{
    json_t *r = parse(report);
    struct buf b = {0};
    inventory_format(r, &b);
    if (want)
        assert_string_equal(b.data ? b.data : "(nothing)", want);
    else
        assert_null(b.data);
    buf_free(&b);
    json_decref(r);
}

static void
test_normalize_names_and_nulls(void **state)
{
    (void)state;
    /* An older image's lsblk -J and md become disks and md_arrays. */
    json_t *r = parse("{\"ip\":\"1\",\"lsblk\":{\"blockdevices\":[{\"name\":"
                      "\"vda\"}]},\"md\":[{\"name\":\"md0\"}]}");
    expect_normal(r,
                  "{\"disks\":[{\"name\":\"vda\"}],\"ip\":\"1\",\"lvm\":null,"
                  "\"md_arrays\":[{\"name\":\"md0\"}],\"root_guess\":null,"
                  "\"tools\":null}");
    json_decref(r);
    /* Today's image: as it is; an absent member is null. */
    r = parse("{\"ip\":\"1\",\"disks\":[],\"root_guess\":{\"device\":\"/dev/"
              "vda2\"},\"lvm\":{\"vgs\":[]}}");
    expect_normal(r, "{\"disks\":[],\"ip\":\"1\",\"lvm\":{\"vgs\":[]},"
                     "\"md_arrays\":null,\"root_guess\":{\"device\":\"/dev/"
                     "vda2\"},\"tools\":null}");
    json_decref(r);
    /* Both names: the new one wins, the old one stays as sent. */
    r = parse("{\"disks\":[],\"lsblk\":{\"blockdevices\":[{}]}}");
    expect_normal(r, "{\"disks\":[],\"lsblk\":{\"blockdevices\":[{}]},"
                     "\"lvm\":null,\"md_arrays\":null,\"root_guess\":null,"
                     "\"tools\":null}");
    json_decref(r);
}

static void
test_normalize_refuses_wrong_shapes(void **state)
{
    (void)state;
    const struct {
        const char *report, *err;
    } bad[] = {
        {"{\"disks\":{}}", "\"disks\" must be an array of objects or null"},
        {"{\"disks\":[{},\"sda\"]}",
         "\"disks\" must be an array of objects or null"},
        {"{\"md_arrays\":\"md0\"}",
         "\"md_arrays\" must be an array of objects or null"},
        {"{\"lvm\":[]}", "\"lvm\" must be an object or null"},
        {"{\"root_guess\":\"/dev/sda1\"}",
         "\"root_guess\" must be an object or null"},
        {"{\"tools\":true}", "\"tools\" must be an object or null"},
        {"{\"lsblk\":{\"blockdevices\":7}}",
         "\"disks\" must be an array of objects or null"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *r = parse(bad[i].report);
        char err[128] = "";
        assert_int_equal(inventory_normalize(r, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, bad[i].err);
        json_decref(r);
    }
}

static void
test_sizes_as_lsblk_writes_them(void **state)
{
    (void)state;
    const struct {
        long long n;
        const char *s;
    } cases[] = {{0, "0B"},
                 {512, "512B"},
                 {1024, "1K"},
                 {33554432, "32M"},
                 {133169152, "127M"},
                 {1610612736, "1.5G"},
                 {4000787030016, "3.6T"},
                 {10LL << 30, "10G"},
                 {(15LL << 30) + (1LL << 29), "16G"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16];
        inventory_size(cases[i].n, out, sizeof(out));
        assert_string_equal(out, cases[i].s);
    }
}

/* A server as the rescue image reports it: a BIOS disk with its boot
 * partition and an opened LUKS container holding an LVM PV, and an md
 * RAID1 over two more disks. */
static const char REPORT[] =
    "{\"disks\":["
    "{\"name\":\"vda\",\"kname\":\"vda\",\"parent\":null,\"size\":167772160,"
    "\"type\":\"disk\",\"serial\":\"LAB0001\"},"
    "{\"name\":\"vda1\",\"kname\":\"vda1\",\"parent\":\"vda\",\"size\":"
    "33554432,\"fstype\":\"vfat\",\"label\":\"LABBOOT\",\"uuid\":\"6885-1019\"}"
    ","
    "{\"name\":\"vda2\",\"kname\":\"vda2\",\"parent\":\"vda\",\"size\":"
    "133169152,\"fstype\":\"crypto_LUKS\",\"uuid\":\"1ab0c000-0000-4000-8000-"
    "000000000004\",\"holds\":\"LUKS, open as vda2_crypt\"},"
    "{\"name\":\"vda2_crypt\",\"kname\":\"dm-0\",\"parent\":\"vda2\",\"size\":"
    "116391936,\"fstype\":\"LVM2_member\",\"holds\":\"LVM PV of VG labvg\"},"
    "{\"name\":\"labvg-root\",\"kname\":\"dm-1\",\"parent\":\"dm-0\",\"size\":"
    "113246208,\"fstype\":\"ext4\",\"label\":\"labroot\",\"holds\":\"root of "
    "Lab Linux 1 (srv4)\"},"
    "{\"name\":\"vdb\",\"kname\":\"vdb\",\"size\":167772160},"
    "{\"name\":\"vdb1\",\"kname\":\"vdb1\",\"parent\":\"vdb\",\"size\":"
    "167755776,\"fstype\":\"linux_raid_member\",\"holds\":\"md member of "
    "md127\"},"
    "{\"name\":\"md127\",\"kname\":\"md127\",\"parent\":\"vdb1\",\"size\":"
    "167690240,\"fstype\":\"xfs\",\"mountpoint\":\"/mnt\"}],"
    "\"md_arrays\":[{\"name\":\"md127\",\"level\":\"raid1\",\"state\":"
    "\"active\",\"array_state\":\"clean\",\"degraded\":1,\"devices\":["
    "\"vdb1\"]}],"
    "\"lvm\":{\"vgs\":[{\"name\":\"labvg\",\"size\":113246208,\"free\":0,"
    "\"lvs\":[{\"name\":\"root\",\"path\":\"/dev/labvg/root\",\"size\":"
    "113246208,\"active\":true}]}]},"
    "\"root_guess\":{\"device\":\"/dev/labvg/root\",\"fstype\":\"ext4\","
    "\"how\":\"lvm\",\"subvol\":null,\"os\":\"Lab Linux 1 (srv4)\","
    "\"mount\":\"mount /dev/labvg/root /mnt\"},"
    "\"tools\":{\"state\":\"mounted\",\"error\":null}}";

static void
test_table_like_lsblk_f(void **state)
{
    (void)state;
    expect_format(REPORT,
                  "disks:\n"
                  "  NAME             FSTYPE            LABEL   UUID           "
                  "                      SIZE MOUNT/HOLDS\n"
                  "  vda                                                       "
                  "                      160M\n"
                  "  |-vda1           vfat              LABBOOT 6885-1019      "
                  "                       32M\n"
                  "  `-vda2           crypto_LUKS               1ab0c000-0000-4"
                  "000-8000-000000000004 127M LUKS, open as vda2_crypt\n"
                  "    `-vda2_crypt   LVM2_member                              "
                  "                      111M LVM PV of VG labvg\n"
                  "      `-labvg-root ext4              labroot                "
                  "                      108M root of Lab Linux 1 (srv4)\n"
                  "  vdb                                                       "
                  "                      160M\n"
                  "  `-vdb1           linux_raid_member                        "
                  "                      160M md member of md127\n"
                  "    `-md127        xfs                                      "
                  "                      160M /mnt\n"
                  "md_array:     md127 raid1 active (clean), degraded by 1, dev"
                  "ices vdb1\n"
                  "lvm:          VG labvg 108M (0B free), LVs: /dev/labvg/root "
                  "108M\n"
                  "root:         /dev/labvg/root (ext4, Lab Linux 1 (srv4))\n"
                  "mount_with:   mount /dev/labvg/root /mnt\n"
                  "tools:        mounted\n");
}

/* Siblings below a device that has more siblings after it keep the "| "
 * of their parent's branch; an older image's nested children draw the
 * same tree. */
static void
test_tree_branches_and_nested_children(void **state)
{
    (void)state;
    expect_format(
        "{\"disks\":[{\"name\":\"sda\",\"size\":\"1024\",\"children\":["
        "{\"name\":\"sda1\",\"fstype\":\"linux_raid_member\",\"children\":["
        "{\"name\":\"md0\",\"mountpoints\":[null,\"/srv\"]}]},"
        "{\"name\":\"sda2\",\"fstype\":\"swap\"}]}]}",
        "disks:\n"
        "  NAME    FSTYPE            LABEL UUID SIZE MOUNT/HOLDS\n"
        "  sda                                    1K\n"
        "  |-sda1  linux_raid_member\n"
        "  | `-md0                                   /srv\n"
        "  `-sda2  swap\n"
        "root:         none found (no ext4, xfs or btrfs holding /etc"
        "/os-release or /etc/fstab, no LUKS)\n");
}

static void
test_root_guess_luks_subvol_and_tools_failed(void **state)
{
    (void)state;
    expect_format("{\"root_guess\":{\"device\":\"/dev/sda2\",\"fstype\":"
                  "\"crypto_LUKS\",\"how\":\"luks\",\"mount\":\"cryptsetup "
                  "open /dev/sda2 sda2_crypt && rescue-mount\"},"
                  "\"tools\":{\"state\":\"failed\",\"error\":\"cannot "
                  "fetch the tools archive\"}}",
                  "root:         probably inside LUKS /dev/sda2 (closed)\n"
                  "mount_with:   cryptsetup open /dev/sda2 sda2_crypt && "
                  "rescue-mount\n"
                  "tools:        failed: cannot fetch the tools archive\n");

    expect_format(
        "{\"root_guess\":{\"device\":\"/dev/vda2\",\"fstype\":\"btrfs\","
        "\"subvol\":\"@\",\"os\":\"Ubuntu 24.04 LTS\",\"mount\":\"mount "
        "-o subvol=@ /dev/vda2 /mnt\"},\"tools\":{\"state\":\"none\"}}",
        "root:         /dev/vda2 (btrfs, subvolume @, Ubuntu "
        "24.04 LTS)\n"
        "mount_with:   mount -o subvol=@ /dev/vda2 /mnt\n"
        "tools:        not offered (no [image] tools)\n");

    /* Nothing known: nothing printed. */
    expect_format("{\"ip\":\"10.0.0.5\"}", NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_names_and_nulls),
        cmocka_unit_test(test_normalize_refuses_wrong_shapes),
        cmocka_unit_test(test_sizes_as_lsblk_writes_them),
        cmocka_unit_test(test_table_like_lsblk_f),
        cmocka_unit_test(test_tree_branches_and_nested_children),
        cmocka_unit_test(test_root_guess_luks_subvol_and_tools_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
