/* test_vmiso: the per-boot virtual CD.  A stand-in CD (random bytes with
 * two slots where scripts/mkiso puts its loader configs, and their
 * .slots file): the slots are found and checked, the configs hold the
 * command line and fill their slots exactly, and the child's copy is the
 * CD byte for byte but the slots, written without the loop waiting.
 * scripts/mkiso's real CD is booted by qemu-tests/cases/084 and 085. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "testutil.h"
#include "util.h"
#include "vmiso.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CD_SIZE (1024 * 1024 + 777)
#define OFF_ISOLINUX 40960
#define OFF_GRUB 819200

static char *dir;
static char iso[512];
static char *cd; /* the stand-in's bytes */

static void
write_slots(const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s.slots", iso);
    assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
}

static void
good_slots(void)
{
    char text[128];
    snprintf(text, sizeof(text), "isolinux %d 4096\ngrub %d 4096\n",
             OFF_ISOLINUX, OFF_GRUB);
    write_slots(text);
}

static int
setup(void **state)
{
    (void)state;
    dir = tu_tmpdir_new("test_vmiso");
    snprintf(iso, sizeof(iso), "%s/rescue.iso", dir);
    cd = xmalloc(CD_SIZE);
    for (size_t i = 0; i < CD_SIZE; i++)
        cd[i] = (char)('A' + (i * 7919) % 26);
    memcpy(cd + OFF_ISOLINUX, VMISO_SLOT_MARK, strlen(VMISO_SLOT_MARK));
    memcpy(cd + OFF_GRUB, VMISO_SLOT_MARK, strlen(VMISO_SLOT_MARK));
    assert_int_equal(write_file_atomic(iso, cd, CD_SIZE, 0644), 0);
    good_slots();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(cd);
    tu_tmpdir_free(dir);
    return 0;
}

static void
test_slots(void **state)
{
    (void)state;
    struct vmiso_slots s;
    char err[512];
    assert_int_equal(vmiso_slots_load(iso, &s, err, sizeof(err)), 0);
    assert_int_equal(s.off[VMISO_ISOLINUX], OFF_ISOLINUX);
    assert_int_equal(s.off[VMISO_GRUB], OFF_GRUB);
    assert_int_equal(s.size[VMISO_GRUB], 4096);

    /* A .slots file of another CD: refused, naming the fix. */
    write_slots("isolinux 4096 4096\ngrub 819200 4096\n");
    assert_int_equal(vmiso_slots_load(iso, &s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no isolinux slot at 4096"));
    assert_non_null(strstr(err, "scripts/mkiso again"));
    write_slots("grub 819200 4096\n");
    assert_int_equal(vmiso_slots_load(iso, &s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not the slots of scripts/mkiso"));
    char other[600];
    snprintf(other, sizeof(other), "%s/none.iso", dir);
    assert_int_equal(vmiso_slots_load(other, &s, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "none.iso.slots"));
    good_slots();
}

static void
test_configs(void **state)
{
    (void)state;
    struct vmiso_slots s = {{OFF_ISOLINUX, OFF_GRUB}, {4096, 4096}};
    struct buf out[VMISO_NSLOTS] = {{0}, {0}};
    assert_int_equal(vmiso_configs(&s, "console=ttyS0 apkovl=http://x/o", out),
                     0);
    for (int i = 0; i < VMISO_NSLOTS; i++) {
        assert_int_equal(out[i].len, 4096);
        assert_memory_equal(out[i].data, VMISO_SLOT_MARK,
                            strlen(VMISO_SLOT_MARK));
    }
    /* Both loaders boot the CD's kernel and initramfs with the line. */
    assert_non_null(strstr(out[VMISO_ISOLINUX].data,
                           " KERNEL /vmlinuz\n INITRD /initramfs\n"
                           " APPEND console=ttyS0 apkovl=http://x/o\n"));
    assert_non_null(strstr(out[VMISO_GRUB].data,
                           "linux /vmlinuz console=ttyS0 apkovl=http://x/o\n"
                           "initrd /initramfs\nboot\n"));
    /* A line longer than a slot does not fit. */
    char *big = xmalloc(5000);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    assert_int_equal(vmiso_configs(&s, big, out), -E2BIG);
    free(big);
    buf_free(&out[0]);
    buf_free(&out[1]);
}

struct done {
    bool done;
    int status;
    char err[512];
};

static void
on_done(void *arg, int status, const char *err)
{
    struct done *d = arg;
    d->done = true;
    d->status = status;
    snprintf(d->err, sizeof(d->err), "%s", err ? err : "");
}

static bool
is_done(void *arg)
{
    return ((struct done *)arg)->done;
}

static void
test_build(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    struct vmiso_slots s;
    char err[512], out[600];
    assert_int_equal(vmiso_slots_load(iso, &s, err, sizeof(err)), 0);
    snprintf(out, sizeof(out), "%s/srv1.iso", dir);
    struct done d = {0};
    struct vmiso_job *j = vmiso_build(l, iso, &s, out, "BOOTIF=01-52-54",
                                      on_done, &d, err, sizeof(err));
    assert_non_null(j);
    /* The child works; the caller's loop goes on. */
    assert_false(d.done);
    assert_true(tu_pump_until(l, 10000, is_done, &d));
    assert_int_equal(d.status, 0);
    char *got = NULL;
    size_t n = 0;
    assert_int_equal(read_file(out, &got, &n), 0);
    assert_int_equal(n, CD_SIZE);
    struct buf cfg[VMISO_NSLOTS] = {{0}, {0}};
    assert_int_equal(vmiso_configs(&s, "BOOTIF=01-52-54", cfg), 0);
    assert_memory_equal(got + OFF_ISOLINUX, cfg[0].data, 4096);
    assert_memory_equal(got + OFF_GRUB, cfg[1].data, 4096);
    /* The rest is the CD's. */
    memcpy(got + OFF_ISOLINUX, cd + OFF_ISOLINUX, 4096);
    memcpy(got + OFF_GRUB, cd + OFF_GRUB, 4096);
    assert_memory_equal(got, cd, CD_SIZE);
    free(got);
    buf_free(&cfg[0]);
    buf_free(&cfg[1]);
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", out);
    assert_int_equal(access(tmp, F_OK), -1);

    /* Where it cannot be written: the step and the reason. */
    snprintf(out, sizeof(out), "%s/no/such/dir/srv1.iso", dir);
    memset(&d, 0, sizeof(d));
    j = vmiso_build(l, iso, &s, out, "x", on_done, &d, err, sizeof(err));
    assert_non_null(j);
    assert_true(tu_pump_until(l, 10000, is_done, &d));
    assert_int_equal(d.status, -ENOENT);
    assert_non_null(strstr(d.err, "creating the copy: No such file"));

    /* Cancelled: no callback, no child left. */
    snprintf(out, sizeof(out), "%s/srv2.iso", dir);
    memset(&d, 0, sizeof(d));
    j = vmiso_build(l, iso, &s, out, "x", on_done, &d, err, sizeof(err));
    assert_non_null(j);
    vmiso_cancel(j);
    tu_pump_for(l, 200);
    assert_false(d.done);
    loop_free(l);
}

int
main(void)
{
    log_init(LOG_LEVEL_ERROR, "test_vmiso");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_configs),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests_name("vmiso", tests, setup, teardown);
}
