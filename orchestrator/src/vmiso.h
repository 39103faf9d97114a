/* vmiso: the per-boot virtual-media CD (boot = virtualmedia).  make image
 * builds one generic CD, build/image/rescue.iso (scripts/mkiso: ISOLINUX
 * for BIOS, GRUB in an El Torito EFI image for UEFI, the image's kernel and
 * initramfs), whose two loader configs are fixed-size slots listed in
 * rescue.iso.slots.  A rescue boot gets its own copy with this boot's
 * kernel command line (token, overlay, phone-home, BOOTIF) written into
 * the slots: copied by a child (copy_file_range, a reflink where the file
 * system has them), so the loop never waits for 35 MB.
 *
 * Floor: drivers (a child, files).  vmiso_slots_load reads a few bytes at
 * config load and may block that long; the rest does not block. */
#ifndef RESCUED_VMISO_H
#define RESCUED_VMISO_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct buf;

#define VMISO_SLOT_MARK "# rescued boot parameters slot v1"

enum { VMISO_ISOLINUX, VMISO_GRUB, VMISO_NSLOTS };

struct vmiso_slots {
    int64_t off[VMISO_NSLOTS];
    size_t size[VMISO_NSLOTS];
};

/* ISO.slots next to iso, checked against iso (each slot starts with the
 * marker).  0, or a negative errno with the reason in err. */
int vmiso_slots_load(const char *iso, struct vmiso_slots *s, char *err,
                     size_t errlen);

/* The slots' contents for a kernel command line, each padded with
 * newlines to its size, into out[VMISO_NSLOTS]; -E2BIG when one does not
 * fit.  Pure. */
int vmiso_configs(const struct vmiso_slots *s, const char *cmdline,
                  struct buf *out);

/* status 0, or a negative errno with what failed in err. */
typedef void vmiso_done_cb(void *arg, int status, const char *err);

struct vmiso_job;
/* Write out (through out.tmp, renamed at the end) as iso with cmdline in
 * its slots; cb runs on the loop when the child is done.  NULL with err
 * when it could not start. */
struct vmiso_job *vmiso_build(struct loop *l, const char *iso,
                              const struct vmiso_slots *s, const char *out,
                              const char *cmdline, vmiso_done_cb *cb, void *arg,
                              char *err, size_t errlen);
/* End the child (SIGKILL, reaped) and forget the job: cb never runs.
 * NULL is fine. */
void vmiso_cancel(struct vmiso_job *j);

#endif
