/* inventory: the rescue OS's report of a server's disks (docs/design.md
 * §2.2), checked and given the API's names when it phones home, and shown
 * by rescuectl status as a table like lsblk -f.  Pure: JSON in, JSON or
 * text out. */
#ifndef RESCUED_INVENTORY_H
#define RESCUED_INVENTORY_H

#include <jansson.h>
#include <stddef.h>

struct buf;

/* The members of the report this module knows, each null when absent:
 * disks, md_arrays, lvm, root_guess, tools.  An older image's lsblk (lsblk
 * -J's object) becomes disks and md becomes md_arrays.  Fails with -EINVAL
 * and the reason in err when a member has the wrong type (disks and
 * md_arrays arrays of objects; lvm, root_guess, tools objects). */
int inventory_normalize(json_t *report, char *err, size_t errlen);

/* The disks as an aligned table (NAME FSTYPE LABEL UUID SIZE MOUNT/HOLDS,
 * the tree drawn as lsblk -i draws it), then a line per md array, per LVM
 * volume group, the root guess with its mount command, and the tools'
 * state; every line but the table's starts with a label ("md_array:").
 * Nothing for a report without them. */
void inventory_format(const json_t *rescue, struct buf *out);

/* BYTES the way lsblk writes sizes: 512B, 32M, 1.5G. */
void inventory_size(long long bytes, char *out, size_t outlen);

#endif
