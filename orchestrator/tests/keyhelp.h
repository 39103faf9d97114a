/* Helpers shared by test_sshkey.c and test_overlay.c: real keys made by
 * ssh-keygen (in a tu_tmpdir_new directory), base64 for hand-made key
 * blobs. */
#ifndef RESCUED_TEST_KEYHELP_H
#define RESCUED_TEST_KEYHELP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define UNUSED_HELPER static __attribute__((unused))

/* Run a shell command, return its stdout (trailing newline cut) or NULL if
 * it failed. */
UNUSED_HELPER char *
run_capture(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    struct buf b = {0};
    char chunk[4096];
    size_t n;

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    if (pclose(f) != 0) {
        buf_free(&b);
        return NULL;
    }
    if (!b.data)
        return xstrdup("");
    while (b.len && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    return b.data;
}

/* Generate a key pair with ssh-keygen in dir; return the public key line,
 * or NULL if this ssh-keygen will not make such a key. */
UNUSED_HELPER char *
keygen(const char *dir, const char *name, const char *type, int bits,
       const char *comment)
{
    char *cmd, *line, *path;
    int rc;

    cmd = bits ? xasprintf("ssh-keygen -q -t %s -b %d -N '' -C '%s' "
                           "-f %s/%s </dev/null >/dev/null 2>&1",
                           type, bits, comment, dir, name)
               : xasprintf("ssh-keygen -q -t %s -N '' -C '%s' "
                           "-f %s/%s </dev/null >/dev/null 2>&1",
                           type, comment, dir, name);
    rc = system(cmd);
    free(cmd);
    if (rc != 0)
        return NULL;
    path = xasprintf("%s/%s.pub", dir, name);
    cmd = xasprintf("cat %s", path);
    line = run_capture(cmd);
    free(cmd);
    free(path);
    return line;
}

/* `ssh-keygen -lf` on a key line: its SHA256:... field. */
UNUSED_HELPER char *
keygen_fingerprint(const char *dir, const char *line)
{
    char *path = xasprintf("%s/fp.pub", dir), *cmd, *out, *sp;
    FILE *f = fopen(path, "w");

    if (!f) {
        free(path);
        return NULL;
    }
    fprintf(f, "%s\n", line);
    fclose(f);
    cmd = xasprintf("ssh-keygen -E sha256 -lf %s", path);
    out = run_capture(cmd);
    free(cmd);
    free(path);
    if (!out)
        return NULL;
    /* "256 SHA256:xxxx comment (ED25519)" */
    sp = strchr(out, ' ');
    if (sp) {
        memmove(out, sp + 1, strlen(sp));
        sp = strchr(out, ' ');
        if (sp)
            *sp = '\0';
    }
    return out;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

UNUSED_HELPER char *
b64_enc(const unsigned char *p, size_t n)
{
    char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* Lenient decoder: the input comes from ssh-keygen. */
UNUSED_HELPER unsigned char *
b64_dec(const char *s, size_t *outlen)
{
    unsigned char *out = xmalloc(strlen(s) / 4 * 3 + 3);
    unsigned v = 0;
    int bits = 0;
    size_t n = 0;

    for (; *s && *s != '=' && *s != ' '; s++) {
        const char *c = strchr(b64chars, *s);
        if (!c)
            break;
        v = v << 6 | (unsigned)(c - b64chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(v >> bits);
        }
    }
    *outlen = n;
    return out;
}

/* Append an SSH wire string. */
UNUSED_HELPER void
wire_put(struct buf *b, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    buf_append(b, len, 4);
    buf_append(b, p, n);
}

/* The base64 blob of a key line ("type BLOB comment"), decoded. */
UNUSED_HELPER unsigned char *
line_blob(const char *line, size_t *len)
{
    const char *sp = strchr(line, ' ');
    return b64_dec(sp ? sp + 1 : "", len);
}

#endif
