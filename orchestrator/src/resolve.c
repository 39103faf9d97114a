/* resolve: see resolve.h.  A name's lookup has an eventfd of its own that
 * glibc's notification thread (SIGEV_THREAD) writes to once the answer is
 * in; the loop reads it and runs the callback.  A lookup cancelled while
 * glibc still works on it stays allocated until that notification, which
 * then only frees it. */
#include "resolve.h"
#include "loop.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct resolve {
    struct loop *l;
    resolve_cb *cb;
    void *arg;
    bool cancelled;
    uint64_t timer;          /* an address: the answer's delivery */
    struct addrinfo *parsed; /* an address, parsed at once */
    int parse_rc;
    int efd; /* a name: glibc says "done" here */
    char *host, *port;
    struct addrinfo hints;
    struct gaicb gcb;
    struct sigevent sev;
};

static void
resolve_free(struct resolve *q)
{
    if (q->parsed)
        freeaddrinfo(q->parsed);
    if (q->gcb.ar_result)
        freeaddrinfo(q->gcb.ar_result);
    if (q->efd >= 0)
        loop_close_fd(q->l, &q->efd);
    free(q->host);
    free(q->port);
    free(q);
}

static int
gai_errno(int g)
{
    return g == EAI_NONAME || g == EAI_NODATA ? -EHOSTUNREACH
           : g == EAI_AGAIN                   ? -EAGAIN
           : g == EAI_MEMORY                  ? -ENOMEM
                                              : -EINVAL;
}

static void
deliver(struct resolve *q, int g, const struct addrinfo *ai)
{
    char err[160] = "";
    if (g != 0)
        snprintf(err, sizeof(err), "%s: %s", q->host, gai_strerror(g));
    q->cb(q->arg, g ? gai_errno(g) : 0, g ? NULL : ai, err);
}

static int64_t
parsed_fire(struct loop *l, void *arg)
{
    (void)l;
    struct resolve *q = arg;
    q->timer = 0;
    deliver(q, q->parse_rc, q->parsed);
    resolve_free(q);
    return -1;
}

/* glibc's thread: nothing but the write. */
static void
notify(union sigval sv)
{
    struct resolve *q = sv.sival_ptr;
    uint64_t one = 1;
    ssize_t n = write(q->efd, &one, sizeof(one));
    (void)n;
}

static void
on_done(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    struct resolve *q = arg;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return;
    if (!q->cancelled)
        deliver(q, gai_error(&q->gcb), q->gcb.ar_result);
    resolve_free(q);
}

struct resolve *
resolve_start(struct loop *l, const char *host, const char *port, int socktype,
              resolve_cb *cb, void *arg)
{
    struct resolve *q = xcalloc(1, sizeof(*q));
    q->l = l;
    q->cb = cb;
    q->arg = arg;
    q->efd = -1;
    q->host = xstrdup(host);
    q->port = xstrdup(port);
    q->hints = (struct addrinfo){.ai_socktype = socktype,
                                 .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST};
    /* An address needs no lookup: parsed now, given from the loop. */
    q->parse_rc = getaddrinfo(q->host, q->port, &q->hints, &q->parsed);
    if (q->parse_rc != EAI_NONAME) {
        q->timer = loop_add_timer(l, 0, parsed_fire, q);
        return q;
    }
    q->parsed = NULL;
    q->hints.ai_flags = AI_NUMERICSERV;
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0 || loop_add_fd(l, q->efd, EPOLLIN, on_done, q) < 0) {
        q->parse_rc = EAI_SYSTEM;
        q->timer = loop_add_timer(l, 0, parsed_fire, q);
        return q;
    }
    q->gcb.ar_name = q->host;
    q->gcb.ar_service = q->port;
    q->gcb.ar_request = &q->hints;
    q->sev.sigev_notify = SIGEV_THREAD;
    q->sev.sigev_notify_function = notify;
    q->sev.sigev_value.sival_ptr = q;
    struct gaicb *list[1] = {&q->gcb};
    int g = getaddrinfo_a(GAI_NOWAIT, list, 1, &q->sev);
    if (g != 0) {
        q->parse_rc = g;
        q->timer = loop_add_timer(l, 0, parsed_fire, q);
    }
    return q;
}

void
resolve_cancel(struct resolve *q)
{
    if (!q)
        return;
    if (q->timer) {
        loop_del_timer(q->l, q->timer);
        resolve_free(q);
        return;
    }
    /* Still with glibc: unless it drops it now, its notification frees
     * q. */
    q->cancelled = true;
    if (gai_cancel(&q->gcb) == EAI_CANCELED)
        resolve_free(q);
}
