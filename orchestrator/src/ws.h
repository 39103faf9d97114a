/* ws: one WebSocket connection (RFC 6455, server side) on the event loop,
 * framed by libwslay over a non-blocking socket that someone else owns
 * (an upgraded HTTP connection: http.h).  Whole messages in (fragments
 * joined by wslay, at most max_msg bytes: a bigger one is refused with
 * close code 1009), messages out through a queue; pings answered with
 * pongs; a ping every ping_ms, and a peer silent for three of them is
 * dropped.  Closing: ws_close sends a close frame with a code (1000
 * normal, 1008 policy...) and waits for the peer's, briefly.
 *
 * Single-threaded, on the loop; nothing blocks.  The callbacks run from
 * the loop and may call ws_send/ws_close but must not ws_free. */
#ifndef RESCUED_WS_H
#define RESCUED_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct ws;

#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_ABNORMAL 1006 /* never sent: the connection just broke */

#define WS_DEFAULT_PING_MS 20000

struct ws_cbs {
    void (*binary)(void *arg, const void *data, size_t n);
    void (*text)(void *arg, const char *data, size_t n);
    /* The output queue went below the low mark (after ws_queued() was
     * above it): the sender may send more. */
    void (*drained)(void *arg);
    /* The connection is over (closing handshake done, the peer went away,
     * a write failed); code is what ended it.  Once, and nothing after;
     * free the ws later, from the loop. */
    void (*closed)(void *arg, int code);
};

/* Start on fd (made non-blocking; not closed by ws); extra are bytes the
 * peer sent that were already read (after the handshake).  cbs is copied. */
struct ws *ws_new(struct loop *l, int fd, const void *extra, size_t nextra,
                  size_t max_msg, const struct ws_cbs *cbs, void *arg);
/* Stop watching fd and free.  Accepts NULL.  Never from a callback. */
void ws_free(struct ws *w);

/* Queue a message (copied).  0, or -EPIPE once closing. */
int ws_send(struct ws *w, bool text, const void *data, size_t n);
/* Bytes queued and not yet written to the socket. */
size_t ws_queued(const struct ws *w);
/* Send a close frame with code and a short reason, then end. */
void ws_close(struct ws *w, int code, const char *reason);
void ws_set_ping_ms(struct ws *w, int ms);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key into out (29 bytes). */
int ws_accept_key(const char *key, char *out, size_t outlen);

#endif
