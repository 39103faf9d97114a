/* bootscript: the iPXE scripts served at /boot/<mac>.ipxe, and the GRUB
 * configs served at /boot/<mac>.grub to arm64 UEFI servers (Debian has no
 * arm64 iPXE; GRUB is their network loader).  Pure text generation: the
 * rescue script (kernel, initrd and the kernel command line of
 * docs/design.md §4, with download retries) or the local-disk script.
 */
#ifndef RESCUED_BOOTSCRIPT_H
#define RESCUED_BOOTSCRIPT_H

#include "config.h"

struct buf;

/* How many times iPXE tries each download before it gives up. */
#define BOOTSCRIPT_ATTEMPTS 3

/* The scripts name no server: anyone who knows a MAC may fetch one. */
struct bootscript_rescue {
    const char *boot_url;    /* http://host:port, no trailing slash */
    const char *token;       /* this boot's one-time token */
    const char *kernel_name; /* file names served under /images/ */
    const char *initrd_name;
    const char *tools_name;  /* the tools archive, or NULL for none */
    const char *console_tty; /* "ttyS0,115200n8" */
    const char *cmdline;     /* extra kernel arguments; may be "" or NULL */
    enum firmware firmware;
    /* The server's MAC for BOOTIF, when no iPXE fills it in (GRUB, the
     * virtual CD's loaders): then no initrd= either.  NULL for iPXE. */
    const char *mac;
};

/* The kernel command line the rescue image gets. */
void bootscript_cmdline(const struct bootscript_rescue *r, struct buf *out);
void bootscript_rescue(const struct bootscript_rescue *r, struct buf *out);
/* Boot the installed OS: BIOS sanboot of the first disk, UEFI exit. */
void bootscript_local(enum firmware fw, struct buf *out);
/* While the store cannot say which boot a server is on (the database is
 * gone): wait in iPXE and ask for the script again, every 5 s, so the
 * server boots neither the rescue nor its disk until it can be told.
 * chain --replace: a plain chain nests, and Debian's iPXE stopped asking
 * after 13 nested scripts (about a minute). */
void bootscript_wait(const char *boot_url, const char *mac, struct buf *out);

/* The same two for GRUB (UEFI): r->mac set; each kernel argument a
 * single-quoted word, so nothing in it is expanded by GRUB. */
void bootscript_grub_rescue(const struct bootscript_rescue *r, struct buf *out);
/* Chain the disk's EFI loader (the installed system's, else the removable
 * path's); without one, back to the firmware. */
void bootscript_grub_local(struct buf *out);
/* bootscript_wait's GRUB: wait 5 s, then this MAC's config again.  A
 * configfile nests (GRUB has no chain --replace), a small context per
 * 5 s; a fetch that fails returns to the network loader's own tries. */
void bootscript_grub_wait(const char *boot_url, const char *mac,
                          struct buf *out);

#endif
