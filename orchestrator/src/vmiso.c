#include "vmiso.h"
#include "loop.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int
vmiso_slots_load(const char *iso, struct vmiso_slots *s, char *err,
                 size_t errlen)
{
    static const char *const names[] = {"isolinux", "grub"};
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s.slots", iso);
    memset(s, 0, sizeof(*s));
    if (read_file(path, &text, &len) < 0) {
        int e = errno;
        seterr(err, errlen, "%s: %s (scripts/mkiso makes it with the CD)", path,
               strerror(e));
        return -e;
    }
    int found = 0, r = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char name[16];
        long long off;
        size_t size;
        if (sscanf(line, "%15s %lld %zu", name, &off, &size) != 3)
            continue;
        for (int i = 0; i < VMISO_NSLOTS; i++)
            if (strcmp(name, names[i]) == 0 && off > 0 && size >= 512 &&
                size <= 65536) {
                s->off[i] = off;
                s->size[i] = size;
                found |= 1 << i;
            }
    }
    free(text);
    if (found != (1 << VMISO_NSLOTS) - 1) {
        seterr(err, errlen, "%s: not the slots of scripts/mkiso", path);
        return -EINVAL;
    }
    int fd = open(iso, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        seterr(err, errlen, "%s: %s", iso, strerror(-r));
        return r;
    }
    for (int i = 0; i < VMISO_NSLOTS && r == 0; i++) {
        char mark[sizeof(VMISO_SLOT_MARK)] = "";
        ssize_t n = pread(fd, mark, sizeof(mark) - 1, (off_t)s->off[i]);
        if (n != (ssize_t)sizeof(mark) - 1 ||
            strcmp(mark, VMISO_SLOT_MARK) != 0) {
            seterr(err, errlen,
                   "%s: no %s slot at %lld: %s.slots is not this CD's "
                   "(scripts/mkiso again)",
                   iso, names[i], (long long)s->off[i], iso);
            r = -EINVAL;
        }
    }
    close(fd);
    return r;
}

int
vmiso_configs(const struct vmiso_slots *s, const char *cmdline, struct buf *out)
{
    buf_reset(&out[VMISO_ISOLINUX]);
    buf_reset(&out[VMISO_GRUB]);
    buf_printf(&out[VMISO_ISOLINUX],
               "%s\nSAY rescued: booting the rescue image\nDEFAULT rescue\n"
               "PROMPT 0\nTIMEOUT 0\nLABEL rescue\n KERNEL /vmlinuz\n"
               " INITRD /initramfs\n APPEND %s\n",
               VMISO_SLOT_MARK, cmdline);
    buf_printf(&out[VMISO_GRUB],
               "%s\necho \"rescued: booting the rescue image\"\n"
               "linux /vmlinuz %s\ninitrd /initramfs\nboot\n",
               VMISO_SLOT_MARK, cmdline);
    for (int i = 0; i < VMISO_NSLOTS; i++) {
        if (out[i].len > s->size[i])
            return -E2BIG;
        while (out[i].len < s->size[i])
            buf_append(&out[i], "\n", 1);
    }
    return 0;
}

struct vmiso_job {
    struct loop *l;
    pid_t pid;
    int pidfd, pipe; /* the child's errno, with the step that failed */
    vmiso_done_cb *cb;
    void *arg;
    char *out;
};

/* What the child did, for the message. */
enum { STEP_OPEN_ISO = 1, STEP_OPEN_OUT, STEP_COPY, STEP_SLOT, STEP_RENAME };

/* The child: syscalls only (the parent may have threads). */
static void __attribute__((noreturn))
child(const char *iso, const char *tmp, const char *out,
      const struct vmiso_slots *s, const struct buf *cfg, int pipe)
{
    int step = STEP_OPEN_ISO, in, fd = -1;
    struct stat st;
    if ((in = open(iso, O_RDONLY | O_CLOEXEC)) < 0 || fstat(in, &st) < 0)
        goto fail;
    step = STEP_OPEN_OUT;
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        goto fail;
    step = STEP_COPY;
    for (off_t done = 0; done < st.st_size;) {
        ssize_t n =
            copy_file_range(in, NULL, fd, NULL, (size_t)(st.st_size - done), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        done += n;
    }
    step = STEP_SLOT;
    for (int i = 0; i < VMISO_NSLOTS; i++)
        if (pwrite(fd, cfg[i].data, cfg[i].len, (off_t)s->off[i]) !=
            (ssize_t)cfg[i].len)
            goto fail;
    if (close(fd) < 0)
        goto fail;
    step = STEP_RENAME;
    if (rename(tmp, out) < 0)
        goto fail;
    _exit(0);
fail:;
    int msg[2] = {step, errno ? errno : EIO};
    ssize_t w = write(pipe, msg, sizeof(msg));
    (void)w;
    _exit(1);
}

static void
job_free(struct vmiso_job *j)
{
    loop_close_fd(j->l, &j->pidfd);
    if (j->pipe >= 0)
        close(j->pipe);
    free(j->out);
    free(j);
}

static void
on_exit_fd(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct vmiso_job *j = arg;
    int st = 0;
    if (waitpid(j->pid, &st, WNOHANG) == 0)
        return;
    int msg[2] = {0, 0};
    ssize_t n = read(j->pipe, msg, sizeof(msg));
    char err[512] = "";
    int status = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        static const char *const what[] = {"",
                                           "reading the image's CD",
                                           "creating the copy",
                                           "copying the CD",
                                           "writing the boot's parameters",
                                           "renaming the copy"};
        int step =
            n == (ssize_t)sizeof(msg) && msg[0] > 0 && msg[0] <= 5 ? msg[0] : 0;
        status = n == (ssize_t)sizeof(msg) && msg[1] > 0 ? -msg[1] : -EIO;
        snprintf(err, sizeof(err), "virtual media CD %s: %s: %s", j->out,
                 step ? what[step] : "the child died",
                 step ? strerror(-status) : "killed");
    }
    vmiso_done_cb *cb = j->cb;
    void *cbarg = j->arg;
    job_free(j);
    cb(cbarg, status, status ? err : NULL);
}

struct vmiso_job *
vmiso_build(struct loop *l, const char *iso, const struct vmiso_slots *s,
            const char *out, const char *cmdline, vmiso_done_cb *cb, void *arg,
            char *err, size_t errlen)
{
    struct buf cfg[VMISO_NSLOTS] = {{0}, {0}};
    struct vmiso_job *j = NULL;
    char *tmp = xasprintf("%s.tmp", out);
    int p[2] = {-1, -1};
    if (vmiso_configs(s, cmdline, cfg) < 0) {
        seterr(err, errlen,
               "virtual media CD: the kernel command line does not fit "
               "the CD's slots (%zu bytes)",
               s->size[VMISO_GRUB]);
        goto out;
    }
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        seterr(err, errlen, "virtual media CD: pipe: %s", strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        seterr(err, errlen, "virtual media CD: fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        goto out;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        child(iso, tmp, out, s, cfg, p[1]);
    }
    close(p[1]);
    j = xcalloc(1, sizeof(*j));
    j->l = l;
    j->pid = pid;
    j->pipe = p[0];
    j->cb = cb;
    j->arg = arg;
    j->out = xstrdup(out);
    j->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (j->pidfd < 0 || loop_add_fd(l, j->pidfd, EPOLLIN, on_exit_fd, j) < 0) {
        seterr(err, errlen, "virtual media CD: pidfd: %s", strerror(errno));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (j->pidfd >= 0)
            close(j->pidfd);
        j->pidfd = -1;
        job_free(j);
        j = NULL;
    }
out:
    buf_free(&cfg[0]);
    buf_free(&cfg[1]);
    free(tmp);
    return j;
}

void
vmiso_cancel(struct vmiso_job *j)
{
    if (!j)
        return;
    kill(j->pid, SIGKILL);
    waitpid(j->pid, NULL, 0);
    char *tmp = xasprintf("%s.tmp", j->out);
    unlink(tmp);
    free(tmp);
    job_free(j);
}
