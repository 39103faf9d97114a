/* test_ws: the WebSocket glue (ws.c over libwslay) driven over a
 * socketpair, the test playing a browser with frames it builds by hand:
 * fragmented messages joined, pings answered and sent, a silent peer
 * dropped, close codes both ways, oversized messages refused with 1009,
 * bytes read before the upgrade used first, the handshake's accept key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testutil.h"
#include "ws.h"

#include <fcntl.h>
#include <poll.h>

struct env {
    struct loop *l;
    int sv[2]; /* [0] the server's (ws), [1] the test's */
    struct ws *ws;
    struct buf bin, text;
    int nbin, ntext;
    bool closed;
    int code;
    bool in_send; /* the test is inside ws_send */
    int drained, drained_in_send;
    /* frames the test read back */
    unsigned char rx[70000];
    size_t nrx;
};

static void
cb_binary(void *arg, const void *data, size_t n)
{
    struct env *E = arg;
    buf_append(&E->bin, data, n);
    E->nbin++;
}

static void
cb_text(void *arg, const char *data, size_t n)
{
    struct env *E = arg;
    buf_append(&E->text, data, n);
    E->ntext++;
}

static void
cb_closed(void *arg, int code)
{
    struct env *E = arg;
    E->closed = true;
    E->code = code;
}

static void
cb_drained(void *arg)
{
    struct env *E = arg;
    E->drained++;
    E->drained_in_send += E->in_send;
}

static const struct ws_cbs cbs = {.binary = cb_binary,
                                  .text = cb_text,
                                  .drained = cb_drained,
                                  .closed = cb_closed};

static int
setup_with(void **state, const void *extra, size_t nextra)
{
    struct env *E = xcalloc(1, sizeof(*E));
    E->l = loop_new();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, E->sv), 0);
    fd_set_nonblock(E->sv[1]);
    E->ws = ws_new(E->l, E->sv[0], extra, nextra, 1024, &cbs, E);
    *state = E;
    return 0;
}

static int
setup(void **state)
{
    return setup_with(state, NULL, 0);
}

static int
teardown(void **state)
{
    struct env *E = *state;
    ws_free(E->ws);
    close(E->sv[0]);
    close(E->sv[1]);
    buf_free(&E->bin);
    buf_free(&E->text);
    loop_free(E->l);
    free(E);
    return 0;
}

/* A client frame: masked, as a browser sends it. */
static size_t
frame(unsigned char *out, bool fin, int opcode, const void *data, size_t n)
{
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    out[h++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    if (n < 126) {
        out[h++] = (unsigned char)(0x80 | n);
    } else {
        out[h++] = 0x80 | 126;
        out[h++] = (unsigned char)(n >> 8);
        out[h++] = (unsigned char)n;
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
    return h + n;
}

static void
send_frame(struct env *E, bool fin, int opcode, const void *data, size_t n)
{
    unsigned char f[70000];
    size_t len = frame(f, fin, opcode, data, n);
    assert_int_equal(write(E->sv[1], f, len), (ssize_t)len);
}

/* The test's side reads what the server sent (non-blocking). */
static void
turn(void *arg)
{
    struct env *E = arg;
    loop_run_once(E->l, 10);
    ssize_t r = read(E->sv[1], E->rx + E->nrx, sizeof(E->rx) - E->nrx);
    if (r > 0)
        E->nrx += (size_t)r;
}

/* The first whole server frame in rx: opcode, payload; removed. */
struct sframe {
    int opcode;
    bool fin, masked;
    unsigned char data[70000];
    size_t n;
};

static bool
have_frame(void *arg)
{
    struct env *E = arg;
    if (E->nrx < 2)
        return false;
    size_t n = E->rx[1] & 0x7f, h = 2;
    if (n == 126) {
        if (E->nrx < 4)
            return false;
        n = (size_t)E->rx[2] << 8 | E->rx[3];
        h = 4;
    }
    return E->nrx >= h + n;
}

static void
next_frame(struct env *E, struct sframe *f)
{
    assert_true(tu_until(2000, have_frame, E, turn, E));
    size_t n = E->rx[1] & 0x7f, h = 2;
    if (n == 126) {
        n = (size_t)E->rx[2] << 8 | E->rx[3];
        h = 4;
    }
    f->fin = E->rx[0] & 0x80;
    f->opcode = E->rx[0] & 0x0f;
    f->masked = E->rx[1] & 0x80;
    memcpy(f->data, E->rx + h, n);
    f->n = n;
    memmove(E->rx, E->rx + h + n, E->nrx - h - n);
    E->nrx -= h + n;
}

static bool
got_closed(void *arg)
{
    return ((struct env *)arg)->closed;
}

static bool
got_text(void *arg)
{
    return ((struct env *)arg)->ntext > 0;
}

static bool
got_binary(void *arg)
{
    return ((struct env *)arg)->nbin > 0;
}

static int
close_code(const struct sframe *f)
{
    return f->n >= 2 ? f->data[0] << 8 | f->data[1] : 0;
}

/* A binary message in three fragments, a ping between them: one message,
 * whole, and the ping answered at once with its payload. */
static void
test_fragmented(void **state)
{
    struct env *E = *state;
    send_frame(E, false, 0x2, "con", 3);
    send_frame(E, false, 0x0, "sole", 4);
    send_frame(E, true, 0x9, "p1", 2);
    send_frame(E, true, 0x0, " bytes", 6);
    struct sframe f;
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0xa);
    assert_false(f.masked);
    assert_int_equal(f.n, 2);
    assert_memory_equal(f.data, "p1", 2);
    assert_int_equal(E->nbin, 1);
    assert_int_equal(E->bin.len, 13);
    assert_memory_equal(E->bin.data, "console bytes", 13);
    /* a text message in two pieces */
    send_frame(E, false, 0x1, "{\"type\":", 8);
    send_frame(E, true, 0x0, "\"nmi\"}", 6);
    assert_true(tu_until(2000, got_text, E, turn, E));
    assert_int_equal(E->ntext, 1);
    assert_string_equal(E->text.data, "{\"type\":\"nmi\"}");
}

/* Messages out: binary and text frames, unmasked, in order. */
static void
test_send(void **state)
{
    struct env *E = *state;
    assert_int_equal(ws_send(E->ws, false, "\x1b[0mboot", 8), 0);
    assert_int_equal(ws_send(E->ws, true, "{\"type\":\"role\"}", 15), 0);
    struct sframe f;
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x2);
    assert_true(f.fin);
    assert_false(f.masked);
    assert_memory_equal(f.data, "\x1b[0mboot", 8);
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x1);
    assert_memory_equal(f.data, "{\"type\":\"role\"}", 15);
}

/* drained() comes from the loop, never from inside ws_send: a sender
 * whose bytes are not consumed yet would send them twice (seen in the
 * bench: a WebSocket viewer got the stream 1.6 times over). */
static void
test_drained_not_reentrant(void **state)
{
    struct env *E = *state;
    static char big[40000];
    memset(big, 'z', sizeof(big));
    for (int i = 0; i < 8; i++) {
        E->in_send = true;
        assert_int_equal(ws_send(E->ws, false, big, sizeof(big)), 0);
        E->in_send = false;
        tu_until(20, NULL, NULL, turn, E);
        E->nrx = 0; /* the test's side reads and forgets */
    }
    assert_int_equal(E->drained_in_send, 0);
    assert_true(E->drained > 0);
}

/* The server pings; a peer that answers stays, one that goes silent for
 * three intervals is dropped (1006, no close frame to wait for). */
static void
test_ping_silent_peer(void **state)
{
    struct env *E = *state;
    ws_set_ping_ms(E->ws, 60);
    struct sframe f;
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x9);
    send_frame(E, true, 0xa, "", 0); /* pong */
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x9);
    assert_false(E->closed);
    /* silent from now on */
    assert_true(tu_until(2000, got_closed, E, turn, E));
    assert_int_equal(E->code, WS_CLOSE_ABNORMAL);
}

/* The client closes with 1000: the server answers with 1000 and ends. */
static void
test_client_close(void **state)
{
    struct env *E = *state;
    unsigned char body[] = {0x03, 0xe8, 'b', 'y', 'e'};
    send_frame(E, true, 0x8, body, sizeof(body));
    struct sframe f;
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal(close_code(&f), 1000);
    assert_true(tu_until(2000, got_closed, E, turn, E));
    assert_int_equal(E->code, 1000);
    assert_int_equal(ws_send(E->ws, false, "x", 1), -EPIPE);
}

/* The server closes with 1008 (policy): the close frame carries it, and
 * the end comes with the peer's answer. */
static void
test_server_close_policy(void **state)
{
    struct env *E = *state;
    ws_close(E->ws, WS_CLOSE_POLICY, "bad control message");
    struct sframe f;
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal(close_code(&f), 1008);
    assert_memory_equal(f.data + 2, "bad control message", 19);
    assert_false(E->closed);
    unsigned char body[] = {0x03, 0xf0};
    send_frame(E, true, 0x8, body, sizeof(body));
    assert_true(tu_until(2000, got_closed, E, turn, E));
    assert_int_equal(E->code, 1008);
}

/* A message over the limit (1024 here), even in small fragments: refused
 * with 1009, never delivered. */
static void
test_oversized(void **state)
{
    struct env *E = *state;
    char big[1500];
    memset(big, 'A', sizeof(big));
    send_frame(E, false, 0x2, big, 700);
    send_frame(E, true, 0x0, big, 800);
    struct sframe f;
    next_frame(E, &f);
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal(close_code(&f), 1009);
    assert_int_equal(E->nbin, 0);
    /* and in one frame, on a fresh connection */
    teardown(state);
    setup(state);
    E = *state;
    send_frame(E, true, 0x2, big, sizeof(big));
    next_frame(E, &f);
    assert_int_equal(close_code(&f), 1009);
    assert_int_equal(E->nbin, 0);
}

/* The peer hangs up without a close frame: ended, 1006. */
static void
test_hangup(void **state)
{
    struct env *E = *state;
    close(E->sv[1]);
    E->sv[1] = open("/dev/null", O_RDONLY);
    assert_true(tu_pump_until(E->l, 2000, got_closed, E));
    assert_int_equal(E->code, WS_CLOSE_ABNORMAL);
}

/* Bytes that came with the handshake (read by MHD) are the first frame. */
static void
test_extra(void **state)
{
    unsigned char f[64];
    size_t n = frame(f, true, 0x2, "early", 5);
    setup_with(state, f, n);
    struct env *E = *state;
    assert_true(tu_until(1000, got_binary, E, turn, E));
    assert_int_equal(E->nbin, 1);
    assert_memory_equal(E->bin.data, "early", 5);
}

/* RFC 6455's own example of Sec-WebSocket-Accept. */
static void
test_accept_key(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(
        ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out, sizeof(out)), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drained_not_reentrant, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ping_silent_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_close_policy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup, setup, teardown),
        cmocka_unit_test_teardown(test_extra, teardown),
        cmocka_unit_test(test_accept_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
