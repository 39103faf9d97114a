/* The bytes a console user types (console_session.c): plain keys, the
 * Ctrl-] menu (b, s KEY, n y, w, ., ?, Ctrl-] Ctrl-]) and everything
 * else, for two users of one server's console on a connected source.
 * Byte 0 sets the scene: bit 0 the console is writable, bit 1 the second
 * user is a read-only watcher, bit 2 the transports take what they are
 * given (else they are full), bit 3 the power driver can act; byte 1
 * splits the rest between the first user and the second.  The second
 * user's attach takes the writer seat from the first unless it is .ro;
 * at most one holds it, whatever was typed. */
#include "console.h"
#include "console_session.h"
#include "fuzz.h"
#include "loop.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ASan keeps freed memory in quarantine, 256 MB by default, to catch a
 * use after free, and does not give it back.  Each input here frees
 * thousands of short strings of many sizes (a notice per keystroke typed
 * while the console is read-only), so the quarantine fills within
 * minutes and the allocator keeps every size class at its high mark:
 * earlier runs stopped at libFuzzer's RSS limit (1 and 2 GB) with 25 MB
 * live, and runs here reached 450-550 MB.  With no quarantine the RSS
 * stayed at 53 MB; with 64 MB it peaked at 196 MB in 10 minutes:
 * nothing leaks.  64 MB still holds the frees of the last hundreds of
 * inputs, so a use after free in one input, or in the console state the
 * inputs share, is still caught.  ASAN_OPTIONS overrides it. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "quarantine_size_mb=64";
}

static struct loop *l;
static struct console *con;
static int lfd = -1, src = -1; /* the serial port's side */
static char dir[] = "/tmp/rescued-fuzz-menu.XXXXXX";
static struct sockaddr_un sa = {.sun_family = AF_UNIX};
static unsigned scene;

struct user {
    struct console_session *cs;
    bool closed;
};

static bool
cb_writable(void *arg, const char *server, char *why, size_t len)
{
    (void)arg, (void)server;
    if (!(scene & 1))
        snprintf(why, len, "srv1 is rebooting");
    return scene & 1;
}

static struct console *
cb_find(void *arg, const char *server)
{
    (void)arg;
    return strcmp(server, "srv1") == 0 ? con : NULL;
}

static void
cb_audit(void *arg, const char *server, const char *action, const char *detail)
{
    (void)arg, (void)server;
    assert(action[0] && detail[0]);
}

static int
cb_power(void *arg, const char *server, enum console_power_op op,
         const char *key)
{
    (void)arg, (void)server;
    assert((op == CONSOLE_POWER_SYSRQ) == (key != NULL));
    assert(!key || strlen(key) == 1);
    return scene & 8 ? 0 : -ENOTSUP;
}

static const struct console_session_cbs cbs = {
    .find_console = cb_find,
    .writable = cb_writable,
    .audit = cb_audit,
    .power = cb_power,
};

static ssize_t
io_write(void *arg, const void *data, size_t n)
{
    (void)arg, (void)data;
    return scene & 4 ? (ssize_t)n : 0;
}

static void
io_close(void *arg)
{
    struct user *u = arg;
    assert(!u->closed);
    u->closed = true;
}

static const struct console_session_io io = {.write = io_write,
                                             .close = io_close};

static void
drain_source(void)
{
    char buf[4096];
    while (src >= 0 && read(src, buf, sizeof(buf)) > 0)
        ;
}

/* At exit: the console (its log is empty: the source never spoke), the
 * serial port, and the dir. */
static void
cleanup(void)
{
    console_free(con);
    loop_free(l);
    if (src >= 0)
        close(src);
    close(lfd);
    unlink(sa.sun_path);
    char *logdir = xasprintf("%s/console", dir);
    char *log = xasprintf("%s/srv1.log", logdir);
    unlink(log);
    rmdir(logdir);
    rmdir(dir);
    free(log);
    free(logdir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (!mkdtemp(dir) || atexit(cleanup) != 0)
        abort();
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/serial.sock", dir);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(lfd, 1) < 0)
        abort();
    l = loop_new();
    char err[256], *uri = xasprintf("unix:%s", sa.sun_path);
    char *logdir = xasprintf("%s/console", dir);
    con = console_new(l, "srv1", uri, logdir, 0, err, sizeof(err));
    if (!con)
        abort();
    for (int i = 0; i < 100 && !console_connected(con); i++) {
        loop_run_once(l, 10);
        if (src < 0)
            src = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    if (!console_connected(con))
        abort();
    free(logdir);
    free(uri);
    return 0;
}

static void
type(struct user *u, const uint8_t *p, size_t n)
{
    /* In pieces, as a transport reads them: a menu key may end one
     * read and its argument start the next. */
    while (n > 0 && !u->closed) {
        size_t k = n < 3 ? n : 1 + p[0] % 3;
        console_session_input(u->cs, p, k);
        p += k, n -= k;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    scene = data[0];
    size_t split = size > 2 ? data[1] % (size - 1) : 0;
    const uint8_t *rest = data + 2;
    size_t n = size - 2;
    if (split > n)
        split = n;
    struct user a = {0}, b = {0};
    struct console_session_config ca = {
        .server = "srv1", .role = "admin", .addr = "127.0.0.1:1", .replay = 24};
    struct console_session_config cb = ca;
    cb.addr = "127.0.0.1:2";
    cb.ro = scene & 2;
    a.cs = console_session_new(l, &ca, &cbs, NULL, &io, &a);
    b.cs = console_session_new(l, &cb, &cbs, NULL, &io, &b);
    assert(a.cs && b.cs);
    type(&a, rest, split);
    /* The window may open between them. */
    scene ^= 1;
    console_session_writable_changed(a.cs);
    console_session_writable_changed(b.cs);
    type(&b, rest + split, n - split);
    assert(
        !(console_session_is_writer(a.cs) && console_session_is_writer(b.cs)));
    assert(!(cb.ro && console_session_is_writer(b.cs)));
    loop_run_once(l, 0);
    drain_source();
    console_session_free(b.cs);
    console_session_free(a.cs);
    return 0;
}
