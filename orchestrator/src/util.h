/* util: allocation that cannot fail (out of memory is fatal, as dnsmasq's
 * safe_malloc), and small string/time helpers shared by every module. */
#ifndef RESCUED_UTIL_H
#define RESCUED_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write a message for the user into a caller's err buffer (NULL: none). */
void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* one when n is 1, else many: "1 server", "2 servers". */
const char *plural(unsigned long long n, const char *one, const char *many);

/* Copy with truncation, always NUL-terminated; returns strlen(src). */
size_t strlcpy_s(char *dst, const char *src, size_t size);

/* Monotonic milliseconds, for timers and deadlines. */
int64_t now_mono_ms(void);
/* Wall-clock time since the epoch, for stored timestamps and deadlines. */
int64_t now_wall_s(void);
int64_t now_wall_ms(void);
/* ISO-8601 UTC ("2026-11-23T19:00:00Z") into buf (at least 21 bytes). */
void format_time_iso(int64_t wall_s, char *buf, size_t len);

/* Parse "90", "90s", "15m", "2h", "1d" into seconds. */
int parse_duration(const char *s, long long *out_s);
/* Parse "1048576", "64K", "1M", "1G" into bytes. */
int parse_size(const char *s, long long *out_bytes);
/* A non-negative decimal integer, digits only, up to INT64_MAX - 8. */
bool parse_u63(const char *s, int64_t *out);
/* 0-15 for a hex digit of either case, else -1. */
int hexval(int c);

/* Server ids, the one grammar of config, overlay (the rescue OS's
 * hostname), dnsmasq host lines, console names and the API: a DNS label,
 * 1 to ID_MAX characters of [A-Za-z0-9-] not beginning or ending in '-',
 * that dnsmasq would not read as a lease time ("12h") or a keyword
 * ("infinite", "ignore"); why says which rule failed.  id_char: the characters
 * of the other names that become paths ([A-Za-z0-9_-]). */
#define ID_MAX 63
bool id_char(int c);
bool id_valid(const char *s);
bool id_valid_why(const char *s, char *why, size_t whylen);

/* Compare a given secret (a bearer token) with the real one in time that
 * depends only on the two lengths, whatever the bytes. */
bool token_equal(const char *given, const char *secret);

/* A secret for a token, ticket or session: nbytes from getrandom(2) as
 * 2 * nbytes hex digits and a NUL into out.  0, or a negative errno. */
int random_hex(char *out, size_t nbytes);

/* End a child we started: SIGTERM, up to grace_ms for it to exit, then
 * SIGKILL; always reaped.  Blocks for at most grace_ms. */
void child_stop(int pid, int grace_ms);

/* Fork and exec argv[0] (searched in PATH) with envp; in the child the
 * signal mask and SIGPIPE are reset (rescued blocks signals for its
 * signalfd) and every fd but 0-2 is closed. fds[] become its stdin, stdout
 * and stderr (-1: /dev/null). With new_session it calls setsid() first;
 * with tty it then opens tty for all three, so a pty slave becomes its
 * controlling terminal. Returns the pid, or -1 with errno set. */
int child_spawn(char *const argv[], char *const envp[], const int fds[3],
                bool new_session, const char *tty);

/* Add O_NONBLOCK to fd's flags; 0 or -1 with errno set. */
int fd_set_nonblock(int fd);

/* A copy of the environment for a child's execve, with NAME=value set (or
 * NAME removed when value is NULL); free with strv_free(). */
char **env_with(const char *name, const char *value);
/* Free a NULL-terminated array of strings and the strings; NULL is fine. */
void strv_free(char **v);

/* mkdir -p: make dir and its missing parents (0755), dir itself with mode;
 * existing ones are left as they are.  On failure err says which. */
int mkdir_p(const char *dir, int mode, char *err, size_t errlen);

/* Write a file atomically (temp file, fsync, rename). */
int write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* Read a whole file; *out is NUL-terminated and must be freed. */
int read_file(const char *path, char **out, size_t *len);

/* A growable byte buffer, always NUL-terminated. */
struct buf {
    char *data;
    size_t len, cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* UTF-8, for what becomes JSON (jansson refuses invalid strings) or a
 * line someone reads.  utf8_cut_len: the length of s's longest prefix of
 * at most max bytes that does not end inside a character.  snprintf_utf8
 * and strlcpy_utf8: snprintf and strlcpy_s that, when they must cut, cut
 * there.  utf8_valid_dup: a copy with each byte that is not part of a
 * well-formed character (a Latin-1 name, a character cut elsewhere)
 * replaced by U+FFFD; free it. */
/* utf8_seq: the length of the well-formed UTF-8 sequence at p (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF; avail bytes
 * there): > 0; 0 when the end cuts it short so far; -1 when it is not
 * UTF-8 (one byte to replace). */
int utf8_seq(const unsigned char *p, size_t avail);
size_t utf8_cut_len(const char *s, size_t max);
int snprintf_utf8(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t strlcpy_utf8(char *dst, const char *src, size_t size);
char *utf8_valid_dup(const char *s);

/* Append n bytes of s to b with the control characters a terminal acts on
 * made visible: C0 and DEL as \xNN, C1 (U+0080-U+009F in UTF-8) as
 * \u00NN; the characters in keep (such as "\n\t"; NULL: none) as they
 * are.  For what others wrote that goes to a log line or a terminal. */
void buf_append_visible(struct buf *b, const char *s, size_t n,
                        const char *keep);

#endif
