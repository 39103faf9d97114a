/* loop: the daemon's one event loop, a small epoll wrapper in the spirit of
 * Redis ae.c: fd watchers, timers on the monotonic clock whose callback
 * returns the next interval, and deferred frees.  Single-threaded. */
#ifndef RESCUED_LOOP_H
#define RESCUED_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct loop;

/* events is the epoll mask that fired (EPOLLIN, EPOLLOUT, EPOLLERR...). */
typedef void loop_fd_cb(struct loop *l, int fd, uint32_t events, void *arg);
/* Return the next interval in ms to run again, or -1 to remove the timer. */
typedef int64_t loop_timer_cb(struct loop *l, void *arg);

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Watch fd for events (EPOLLIN and/or EPOLLOUT); one watcher per fd. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb *cb,
                void *arg);
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
/* Safe to call from inside any callback, including fd's own. */
void loop_del_fd(struct loop *l, int fd);
/* Stop watching *fd, close it and set it to -1; nothing when it is -1. */
void loop_close_fd(struct loop *l, int *fd);

/* Run cb after ms milliseconds; returns a timer id > 0. */
uint64_t loop_add_timer(struct loop *l, int64_t ms, loop_timer_cb *cb,
                        void *arg);
/* Safe with an id that already fired or 0. */
void loop_del_timer(struct loop *l, uint64_t id);

/* Run until loop_stop(); returns 0, or a negative errno if epoll fails. */
int loop_run(struct loop *l);
/* Run one iteration, waiting at most max_wait_ms (-1: until something). */
int loop_run_once(struct loop *l, int max_wait_ms);
void loop_stop(struct loop *l);

/* Callbacks that held the loop LOOP_STALL_MS or more (a blocking call: a
 * slow store, a slow disk): how many, and the longest.  For /metrics. */
#define LOOP_STALL_MS 500
#define LOOP_STALL_LOG_MS 10000
struct loop_stats {
    uint64_t stalls;
    int64_t longest_ms;
    int64_t logged_ms; /* the last stall logged, monotonic; 0: none */
};
const struct loop_stats *loop_stats(const struct loop *l);

#endif
