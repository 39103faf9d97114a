#include "loop.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct watcher {
    loop_fd_cb *cb;
    void *arg;
    uint64_t gen; /* bumped on del, so stale epoll events are skipped */
    bool active;
};

struct timer {
    int64_t due;
    uint64_t id;
    loop_timer_cb *cb;
    void *arg;
};

struct loop {
    int epfd;
    bool stopping;
    struct watcher *w; /* indexed by fd */
    int nw;
    struct timer *heap; /* min-heap on due */
    size_t nheap, capheap;
    uint64_t next_id;
    struct loop_stats stats;
};

/* One callback that held the loop past LOOP_STALL_MS: counted, and
 * logged (at most once per LOOP_STALL_LOG_MS), since everything else
 * (consoles, the boot path, the API) waited for it. */
static void
account(struct loop *l, int64_t start, const char *what)
{
    int64_t took = now_mono_ms() - start;
    if (took < LOOP_STALL_MS)
        return;
    l->stats.stalls++;
    if (took > l->stats.longest_ms)
        l->stats.longest_ms = took;
    if (!l->stats.logged_ms || start - l->stats.logged_ms >= LOOP_STALL_LOG_MS) {
        log_warnx("loop: one %s callback held the loop for %lld ms (%llu "
                  "times so far)",
                  what, (long long)took, (unsigned long long)l->stats.stalls);
        l->stats.logged_ms = start;
    }
}

struct loop *
loop_new(void)
{
    struct loop *l = xcalloc(1, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->next_id = 1;
    return l;
}

void
loop_free(struct loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l->w);
    free(l->heap);
    free(l);
}

int
loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb *cb, void *arg)
{
    if (fd < 0)
        return -EBADF;
    if (fd >= l->nw) {
        int n = l->nw ? l->nw : 64;
        while (n <= fd)
            n *= 2;
        l->w = xrealloc(l->w, sizeof(*l->w) * (size_t)n);
        memset(l->w + l->nw, 0, sizeof(*l->w) * (size_t)(n - l->nw));
        l->nw = n;
    }
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    l->w[fd].cb = cb;
    l->w[fd].arg = arg;
    l->w[fd].active = true;
    l->w[fd].gen++;
    return 0;
}

int
loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    return 0;
}

void
loop_del_fd(struct loop *l, int fd)
{
    if (fd < 0 || fd >= l->nw || !l->w[fd].active)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->w[fd].active = false;
    l->w[fd].gen++;
}

static void
heap_swap(struct loop *l, size_t a, size_t b)
{
    struct timer t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
}

static void
heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p].due <= l->heap[i].due)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void
heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1, m = i;
        if (c < l->nheap && l->heap[c].due < l->heap[m].due)
            m = c;
        if (c + 1 < l->nheap && l->heap[c + 1].due < l->heap[m].due)
            m = c + 1;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

static void
heap_remove_at(struct loop *l, size_t i)
{
    l->nheap--;
    if (i == l->nheap)
        return;
    l->heap[i] = l->heap[l->nheap];
    heap_down(l, i);
    heap_up(l, i);
}

static void
heap_push(struct loop *l, struct timer t)
{
    if (l->nheap == l->capheap) {
        l->capheap = l->capheap ? l->capheap * 2 : 64;
        l->heap = xrealloc(l->heap, sizeof(*l->heap) * l->capheap);
    }
    l->heap[l->nheap] = t;
    heap_up(l, l->nheap++);
}

void
loop_close_fd(struct loop *l, int *fd)
{
    if (*fd < 0)
        return;
    loop_del_fd(l, *fd);
    close(*fd);
    *fd = -1;
}

uint64_t
loop_add_timer(struct loop *l, int64_t ms, loop_timer_cb *cb, void *arg)
{
    struct timer t = {.due = now_mono_ms() + (ms < 0 ? 0 : ms),
                      .id = l->next_id++,
                      .cb = cb,
                      .arg = arg};
    heap_push(l, t);
    return t.id;
}

void
loop_del_timer(struct loop *l, uint64_t id)
{
    if (id == 0)
        return;
    /* Linear search: timers are removed far less often than they fire. */
    for (size_t i = 0; i < l->nheap; i++)
        if (l->heap[i].id == id) {
            heap_remove_at(l, i);
            return;
        }
}

static void
run_timers(struct loop *l)
{
    int64_t now = now_mono_ms();
    while (l->nheap > 0 && l->heap[0].due <= now) {
        struct timer t = l->heap[0];
        heap_remove_at(l, 0);
        int64_t start = now_mono_ms();
        int64_t next = t.cb(l, t.arg);
        account(l, start, "timer");
        if (next >= 0) {
            /* Keep the id so the owner's handle stays valid. */
            t.due = now + next;
            heap_push(l, t);
        }
    }
}

int
loop_run_once(struct loop *l, int max_wait_ms)
{
    struct epoll_event evs[64];
    int wait = max_wait_ms;
    if (l->nheap > 0) {
        int64_t d = l->heap[0].due - now_mono_ms();
        if (d < 0)
            d = 0;
        if (wait < 0 || d < wait)
            wait = (int)(d > 1000000 ? 1000000 : d);
    }
    int n = epoll_wait(l->epfd, evs, 64, wait);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return -errno;
    }
    /* Snapshot generations: a callback may delete a later fd's watcher. */
    uint64_t gens[64];
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        gens[i] = fd < l->nw ? l->w[fd].gen : 0;
    }
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd >= l->nw || !l->w[fd].active || l->w[fd].gen != gens[i])
            continue;
        int64_t start = now_mono_ms();
        l->w[fd].cb(l, fd, evs[i].events, l->w[fd].arg);
        account(l, start, "fd");
    }
    run_timers(l);
    return 0;
}

int
loop_run(struct loop *l)
{
    l->stopping = false;
    while (!l->stopping) {
        int r = loop_run_once(l, -1);
        if (r < 0)
            return r;
    }
    return 0;
}

const struct loop_stats *
loop_stats(const struct loop *l)
{
    return &l->stats;
}

void
loop_stop(struct loop *l)
{
    l->stopping = true;
}
