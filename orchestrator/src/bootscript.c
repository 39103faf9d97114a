#include "bootscript.h"
#include "util.h"

#include <string.h>

void
bootscript_cmdline(const struct bootscript_rescue *r, struct buf *out)
{
    /* Debian's 2019 iPXE with a 6.1 kernel on UEFI only hands over the
     * initrd when the command line names it (FACTS.md). */
    if (r->firmware == FW_UEFI && !r->mac)
        buf_printf(out, "initrd=%s ", r->initrd_name);
    buf_printf(out, "console=%s ip=dhcp BOOTIF=01-", r->console_tty);
    if (r->mac)
        for (const char *c = r->mac; *c; c++)
            buf_printf(out, "%c", *c == ':' ? '-' : *c);
    else
        buf_printf(out, "${netX/mac:hexhyp}");
    buf_printf(out,
               " apkovl=%s/overlay/%s.tar.gz "
               "rescue_phone_home=%s/v1/phone-home/%s ",
               r->boot_url, r->token, r->boot_url, r->token);
    if (r->tools_name)
        buf_printf(out, "rescue_tools=%s/images/%s?token=%s ", r->boot_url,
                   r->tools_name, r->token);
    buf_printf(out, "modloop=none");
    if (r->cmdline && *r->cmdline)
        buf_printf(out, " %s", r->cmdline);
}

void
bootscript_rescue(const struct bootscript_rescue *r, struct buf *out)
{
    buf_printf(out, "#!ipxe\necho rescued: this server boots the rescue "
                    "image\n");
    /* iPXE 2019 has no arithmetic, so the retries are unrolled. */
    for (int i = 1; i <= BOOTSCRIPT_ATTEMPTS; i++) {
        buf_printf(out, ":try%d\n", i);
        if (i > 1)
            buf_printf(out,
                       "echo rescued: download failed, attempt %d of %d in "
                       "3 s\nsleep 3\n",
                       i, BOOTSCRIPT_ATTEMPTS);
        const char *next = i < BOOTSCRIPT_ATTEMPTS ? "try" : "failed";
        int n = i < BOOTSCRIPT_ATTEMPTS ? i + 1 : 0;
        buf_printf(out, "imgfree\n");
        buf_printf(out, "kernel --name %s %s/images/%s?token=%s ",
                   r->kernel_name, r->boot_url, r->kernel_name, r->token);
        bootscript_cmdline(r, out);
        if (n)
            buf_printf(out, " || goto %s%d\n", next, n);
        else
            buf_printf(out, " || goto %s\n", next);
        buf_printf(out, "initrd --name %s %s/images/%s?token=%s",
                   r->initrd_name, r->boot_url, r->initrd_name, r->token);
        if (n)
            buf_printf(out, " || goto %s%d\nboot || goto %s%d\n", next, n, next,
                       n);
        else
            buf_printf(out, " || goto %s\nboot || goto %s\n", next, next);
    }
    buf_printf(out,
               ":failed\necho rescued: could not boot the rescue image "
               "after %d attempts; rebooting in 10 s\nsleep 10\nreboot\n",
               BOOTSCRIPT_ATTEMPTS);
}

void
bootscript_local(enum firmware fw, struct buf *out)
{
    buf_printf(out, "#!ipxe\necho rescued: this server boots its own disk\n");
    if (fw == FW_UEFI)
        /* Hand back to the firmware, which tries the next boot entry. */
        buf_printf(out, "exit\n");
    else
        buf_printf(out, "sanboot --no-describe --drive 0x80\n");
}

/* s as one GRUB word: single quotes, a quote as '\'' (as in sh). */
static void
grub_word(struct buf *out, const char *s, size_t n)
{
    buf_append(out, "'", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'')
            buf_append(out, "'\\''", 4);
        else
            buf_append(out, &s[i], 1);
    }
    buf_append(out, "'", 1);
}

void
bootscript_grub_rescue(const struct bootscript_rescue *r, struct buf *out)
{
    /* GRUB names an HTTP server as a device: (http,HOST[:PORT]). */
    const char *hp = r->boot_url;
    if (strncmp(hp, "http://", 7) == 0)
        hp += 7;
    struct buf cmd = {0};
    bootscript_cmdline(r, &cmd);
    buf_printf(out,
               "# rescued: the rescue image for %s\n"
               "echo 'rescued: this server boots the rescue image'\n",
               r->mac);
    buf_printf(out, "for try in");
    for (int i = 1; i <= BOOTSCRIPT_ATTEMPTS; i++)
        buf_printf(out, " %d", i);
    buf_printf(out, "; do\n    if linux \"(http,%s)/images/%s?token=%s\"", hp,
               r->kernel_name, r->token);
    /* The command line split on spaces, as the rescue init splits it. */
    for (const char *w = cmd.data ? cmd.data : ""; *w;) {
        size_t n = strcspn(w, " ");
        if (n) {
            buf_printf(out, " ");
            grub_word(out, w, n);
        }
        w += n;
        w += strspn(w, " ");
    }
    buf_free(&cmd);
    buf_printf(out,
               "; then\n        if initrd \"(http,%s)/images/%s?token=%s\"; "
               "then\n            boot\n        fi\n    fi\n"
               "    echo \"rescued: download failed (attempt $try of %d)\"\n"
               "    sleep 3\ndone\n",
               hp, r->initrd_name, r->token, BOOTSCRIPT_ATTEMPTS);
    buf_printf(out,
               "echo 'rescued: could not boot the rescue image after %d "
               "attempts; rebooting in 10 s'\nsleep 10\nreboot\n",
               BOOTSCRIPT_ATTEMPTS);
}

/* The disk's own loaders, the installed system's before the removable
 * path's. */
static const char *const grub_local_loaders[] = {
    "/EFI/debian/shimaa64.efi", "/EFI/debian/grubaa64.efi",
    "/EFI/ubuntu/shimaa64.efi", "/EFI/ubuntu/grubaa64.efi",
    "/EFI/redhat/shimaa64.efi", "/EFI/BOOT/BOOTAA64.EFI"};

void
bootscript_grub_local(struct buf *out)
{
    /* GRUB 2.06's exit returns success, on which EDK2's boot manager
     * stops at its menu instead of trying the next entry: chain the
     * disk's loader, and exit only when there is none.  chainloader
     * takes its device from $root (memdisk, the loader's own, until
     * search sets it). */
    buf_printf(out, "# rescued: the local disk\n"
                    "echo 'rescued: this server boots its own disk'\n"
                    "for f in");
    for (size_t i = 0;
         i < sizeof(grub_local_loaders) / sizeof(grub_local_loaders[0]); i++)
        buf_printf(out, " %s", grub_local_loaders[i]);
    buf_printf(out, "; do\n"
                    "    if search --no-floppy --file --set=root $f; then\n"
                    "        echo \"rescued: chaining ($root)$f\"\n"
                    "        chainloader $f\n"
                    "        boot\n"
                    "    fi\n"
                    "done\n"
                    "echo 'rescued: no boot loader on the disks; back to the "
                    "firmware'\nexit\n");
}

void
bootscript_wait(const char *boot_url, const char *mac, struct buf *out)
{
    buf_printf(
        out,
        "#!ipxe\n:wait\necho rescued: its store cannot be reached; "
        "asking again in 5 s\nsleep 5\nchain --replace %s/boot/%s.ipxe || "
        "goto wait\n",
        boot_url, mac);
}

void
bootscript_grub_wait(const char *boot_url, const char *mac, struct buf *out)
{
    const char *hp = boot_url;
    if (strncmp(hp, "http://", 7) == 0)
        hp += 7;
    buf_printf(out,
               "# rescued: waiting for its store\n"
               "echo 'rescued: its store cannot be reached; asking again in "
               "5 s'\n"
               "sleep 5\n"
               "configfile \"(http,%s)/boot/%s.grub\"\n",
               hp, mac);
}
