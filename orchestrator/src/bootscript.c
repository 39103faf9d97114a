#include "bootscript.h"
#include "util.h"

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
