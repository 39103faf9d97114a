/* recording: console sessions as asciicast v2 files.  Each session of a
 * server (SSH or WebSocket) gets DIR/SERVER/N.cast (N = 1, 2, ...: one more
 * than the highest there) holding the header line and one
 * [seconds, "o", "text"] line per chunk the user was shown, and N.json
 * beside it: who, role, transport, started_at, ended_at (null while open)
 * and bytes.  Bytes that are not UTF-8 are written as U+FFFD (asciicast is
 * JSON text); a sequence cut between two chunks is kept for the next.
 *
 * Drivers floor: blocking local file I/O, like the console's own log (small
 * buffered writes, flushed by recording_flush and on close).  Opening a
 * recording removes the server's recordings older than the retention. */
#ifndef RESCUED_RECORDING_H
#define RESCUED_RECORDING_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct recording;

struct recording_meta {
    const char *server;
    const char *who;       /* "project:acme" (the session's role string) */
    const char *role;      /* "writer" or "watcher", at the start */
    const char *transport; /* "ssh" or "ws" */
    int keep_days;         /* remove older ones; 0: keep all */
};

/* Start DIR/SERVER/N.cast.  NULL with a reason in err. */
struct recording *recording_open(const char *dir,
                                 const struct recording_meta *m, char *err,
                                 size_t errlen);
/* Record n bytes shown to the user now. */
void recording_write(struct recording *r, const void *data, size_t n);
/* Push buffered lines to the file (a download sees them). */
void recording_flush(struct recording *r);
/* Finish: ended_at and bytes into N.json.  Accepts NULL. */
void recording_close(struct recording *r);
/* The recording's number (in the attach's audit line and the URL). */
int recording_n(const struct recording *r);

/* {"recordings": [...]} of server, oldest first; 0 or a negative errno. */
int recording_list(const char *dir, const char *server, json_t **out);
/* DIR/SERVER/N.cast (malloc'd) if it exists, else NULL. */
char *recording_path(const char *dir, const char *server, int n);

#endif
