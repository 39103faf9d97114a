#include "sshkey.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 16384 /* OpenSSH refuses larger moduli */

enum key_kind { KIND_ED25519, KIND_ECDSA, KIND_RSA };

static const struct key_type {
    const char *name;
    enum key_kind kind;
    const char *curve; /* ECDSA: the curve name inside the blob */
    size_t point_len;  /* ECDSA: uncompressed point; Ed25519: key size */
    bool sk;           /* FIDO key: the blob ends with an application */
} key_types[] = {
    {"ssh-ed25519", KIND_ED25519, NULL, 32, false},
    {"ecdsa-sha2-nistp256", KIND_ECDSA, "nistp256", 65, false},
    {"ecdsa-sha2-nistp384", KIND_ECDSA, "nistp384", 97, false},
    {"ecdsa-sha2-nistp521", KIND_ECDSA, "nistp521", 133, false},
    {"ssh-rsa", KIND_RSA, NULL, 0, false},
    {"sk-ssh-ed25519@openssh.com", KIND_ED25519, NULL, 32, true},
    {"sk-ecdsa-sha2-nistp256@openssh.com", KIND_ECDSA, "nistp256", 65, true},
};

/* Words that can only be authorized_keys options, for telling an options
 * prefix from an unknown key type. */
static const char *const option_words[] = {
    "agent-forwarding",
    "cert-authority",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-user-rc",
    "no-X11-forwarding",
    "port-forwarding",
    "pty",
    "no-touch-required",
    "verify-required",
    "restrict",
    "user-rc",
    "X11-forwarding",
};

/* Spans of one split key line; pointers into the caller's string. */
struct key_parts {
    const char *type, *b64, *comment;
    size_t type_len, b64_len, comment_len;
};

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Next blank-separated token of [*p, end); moves *p past it. */
static bool
next_token(const char **p, const char *end, const char **tok, size_t *len)
{
    const char *s = *p;

    while (s < end && is_blank(*s))
        s++;
    if (s == end)
        return false;
    *tok = s;
    while (s < end && !is_blank(*s))
        s++;
    *len = (size_t)(s - *tok);
    *p = s;
    return true;
}

static const struct key_type *
find_type(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
        if (strlen(key_types[i].name) == len &&
            memcmp(key_types[i].name, name, len) == 0)
            return &key_types[i];
    return NULL;
}

/* A word shaped like a key type name, supported or not ("ssh-dss",
 * "ssh-ed25519-cert-v01@openssh.com"). */
static bool
looks_like_type(const char *s, size_t len)
{
    static const char *const prefixes[] = {"ssh-", "ecdsa-", "sk-", "x509v3-"};

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (len > n && memcmp(s, prefixes[i], n) == 0)
            return true;
    }
    return false;
}

static bool
looks_like_option(const char *s, size_t len)
{
    if (memchr(s, '=', len) || memchr(s, '"', len) || memchr(s, ',', len))
        return true;
    for (size_t i = 0; i < sizeof(option_words) / sizeof(option_words[0]); i++)
        if (strlen(option_words[i]) == len &&
            strncasecmp(option_words[i], s, len) == 0)
            return true;
    return false;
}

/* Trim the line and refuse control characters. */
static bool
trim_line(const char *line, size_t len, const char **start, const char **end,
          char *err, size_t errlen)
{
    const char *s = line, *e = line + len;

    if (e > s && e[-1] == '\n')
        e--;
    if (e > s && e[-1] == '\r')
        e--;
    for (const char *p = s; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\0') {
            seterr(err, errlen, "key contains a NUL byte");
            return false;
        }
        if (c == '\n' || c == '\r') {
            seterr(err, errlen, "key contains a line break");
            return false;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            seterr(err, errlen, "key contains a control character");
            return false;
        }
    }
    while (s < e && is_blank(*s))
        s++;
    while (e > s && is_blank(e[-1]))
        e--;
    *start = s;
    *end = e;
    return true;
}

/* Split "type base64 [comment]"; names the problem when the first word is
 * not a supported type. */
static bool
split_line(const char *line, size_t len, struct key_parts *kp,
           const struct key_type **kt, char *err, size_t errlen)
{
    const char *s, *e, *p, *tok2;
    size_t tok2_len;

    memset(kp, 0, sizeof(*kp));
    if (!trim_line(line, len, &s, &e, err, errlen))
        return false;
    p = s;
    if (!next_token(&p, e, &kp->type, &kp->type_len)) {
        seterr(err, errlen, "empty key");
        return false;
    }
    *kt = find_type(kp->type, kp->type_len);
    if (!*kt) {
        const char *q = p;
        bool second_is_type = next_token(&q, e, &tok2, &tok2_len) &&
                              looks_like_type(tok2, tok2_len);
        if (looks_like_option(kp->type, kp->type_len) || second_is_type) {
            seterr(err, errlen, "options prefix not allowed");
            return false;
        }
        seterr(err, errlen, "unsupported key type '%.*s'",
               kp->type_len > 40 ? 40 : (int)kp->type_len, kp->type);
        return false;
    }
    if (!next_token(&p, e, &kp->b64, &kp->b64_len)) {
        seterr(err, errlen, "missing key data after '%s'", (*kt)->name);
        return false;
    }
    while (p < e && is_blank(*p))
        p++;
    kp->comment = p;
    kp->comment_len = (size_t)(e - p);
    return true;
}

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 (padded, as OpenSSH writes it) into a new buffer. */
static unsigned char *
b64_decode(const char *s, size_t len, size_t *outlen)
{
    unsigned char *out;
    size_t n = 0, pad = 0;

    if (len == 0 || len % 4 != 0)
        return NULL;
    if (s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    out = xmalloc(len / 4 * 3);
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = b64_value((unsigned char)s[i + j]);
            if (d < 0 && !(s[i + j] == '=' && i + j >= len - pad))
                goto out_free;
            v = v << 6 | (uint32_t)(d < 0 ? 0 : d);
        }
        out[n++] = (unsigned char)(v >> 16);
        out[n++] = (unsigned char)(v >> 8);
        out[n++] = (unsigned char)v;
    }
    *outlen = n - pad;
    return out;
out_free:
    free(out);
    return NULL;
}

/* Reader over the SSH wire format (RFC 4251 strings). */
struct wire {
    const unsigned char *p;
    size_t left;
};

static bool
wire_string(struct wire *w, const unsigned char **s, size_t *len)
{
    uint32_t n;

    if (w->left < 4)
        return false;
    n = (uint32_t)w->p[0] << 24 | (uint32_t)w->p[1] << 16 |
        (uint32_t)w->p[2] << 8 | w->p[3];
    if (n > w->left - 4)
        return false;
    *s = w->p + 4;
    *len = n;
    w->p += 4 + n;
    w->left -= 4 + n;
    return true;
}

static bool
wire_equals(const unsigned char *s, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(s, want, len) == 0;
}

/* Bits of a positive mpint; 0 for zero or negative. */
static unsigned
mpint_bits(const unsigned char *s, size_t len)
{
    unsigned bits;

    if (len && (s[0] & 0x80))
        return 0;
    while (len && s[0] == 0) {
        s++;
        len--;
    }
    if (!len)
        return 0;
    bits = (unsigned)(len - 1) * 8;
    for (unsigned c = s[0]; c; c >>= 1)
        bits++;
    return bits;
}

static bool
check_printable(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

/* The blob must hold exactly the fields of its type. */
static bool
check_blob(const struct key_type *kt, const unsigned char *blob, size_t len,
           char *err, size_t errlen)
{
    struct wire w = {blob, len};
    const unsigned char *s;
    size_t n;

    if (!wire_string(&w, &s, &n)) {
        seterr(err, errlen, "key data is truncated");
        return false;
    }
    if (!wire_equals(s, n, kt->name)) {
        if (check_printable(s, n) && n <= 40)
            seterr(err, errlen,
                   "key type '%s' does not match key data ('%.*s')", kt->name,
                   (int)n, (const char *)s);
        else
            seterr(err, errlen, "key type '%s' does not match key data",
                   kt->name);
        return false;
    }
    switch (kt->kind) {
    case KIND_ED25519:
        if (!wire_string(&w, &s, &n))
            goto truncated;
        if (n != kt->point_len) {
            seterr(err, errlen, "Ed25519 public key is %zu bytes, not 32", n);
            return false;
        }
        break;
    case KIND_ECDSA:
        if (!wire_string(&w, &s, &n))
            goto truncated;
        if (!wire_equals(s, n, kt->curve)) {
            seterr(err, errlen, "key data names another curve than '%s'",
                   kt->curve);
            return false;
        }
        if (!wire_string(&w, &s, &n))
            goto truncated;
        if (n != kt->point_len || s[0] != 0x04) {
            seterr(err, errlen, "ECDSA point is not a valid %s point",
                   kt->curve);
            return false;
        }
        break;
    case KIND_RSA: {
        unsigned bits;
        if (!wire_string(&w, &s, &n))
            goto truncated;
        if (mpint_bits(s, n) == 0 || !(s[n - 1] & 1)) {
            seterr(err, errlen, "RSA public exponent is invalid");
            return false;
        }
        if (!wire_string(&w, &s, &n))
            goto truncated;
        bits = mpint_bits(s, n);
        if (bits < RSA_MIN_BITS) {
            seterr(err, errlen, "RSA key is %u bits; at least %d required",
                   bits, RSA_MIN_BITS);
            return false;
        }
        if (bits > RSA_MAX_BITS) {
            seterr(err, errlen, "RSA key is %u bits; at most %d allowed", bits,
                   RSA_MAX_BITS);
            return false;
        }
        break;
    }
    }
    if (kt->sk && !wire_string(&w, &s, &n))
        goto truncated;
    if (w.left) {
        seterr(err, errlen, "key data has %zu trailing bytes", w.left);
        return false;
    }
    return true;
truncated:
    seterr(err, errlen, "key data is truncated");
    return false;
}

/* Import with libssh: the final word on whether the key is usable. */
static ssh_key
import_key(const struct key_type *kt, const struct key_parts *kp)
{
    ssh_key key = NULL;
    char *b64 = xmalloc(kp->b64_len + 1);

    memcpy(b64, kp->b64, kp->b64_len);
    b64[kp->b64_len] = '\0';
    if (ssh_pki_import_pubkey_base64(b64, ssh_key_type_from_name(kt->name),
                                     &key) != SSH_OK)
        key = NULL;
    free(b64);
    return key;
}

static ssh_key
parse_key(const char *line, size_t len, struct key_parts *kp, char *err,
          size_t errlen)
{
    const struct key_type *kt;
    unsigned char *blob;
    size_t blob_len;
    ssh_key key;

    if (!split_line(line, len, kp, &kt, err, errlen))
        return NULL;
    blob = b64_decode(kp->b64, kp->b64_len, &blob_len);
    if (!blob) {
        seterr(err, errlen, "not valid base64");
        return NULL;
    }
    if (!check_blob(kt, blob, blob_len, err, errlen)) {
        free(blob);
        return NULL;
    }
    free(blob);
    key = import_key(kt, kp);
    if (!key)
        seterr(err, errlen, "key data is not a valid %s key", kt->name);
    return key;
}

bool
sshkey_valid_n(const char *line, size_t len, char *err, size_t errlen)
{
    struct key_parts kp;
    ssh_key key;

    if (!line) {
        seterr(err, errlen, "empty key");
        return false;
    }
    key = parse_key(line, len, &kp, err, errlen);
    if (!key)
        return false;
    ssh_key_free(key);
    return true;
}

bool
sshkey_valid(const char *line, char *err, size_t errlen)
{
    return sshkey_valid_n(line, line ? strlen(line) : 0, err, errlen);
}

char *
sshkey_canonical(const char *line)
{
    struct key_parts kp;
    ssh_key key;
    char *out;

    if (!line)
        return NULL;
    key = parse_key(line, strlen(line), &kp, NULL, 0);
    if (!key)
        return NULL;
    ssh_key_free(key);
    out = xasprintf("%.*s %.*s%s%.*s", (int)kp.type_len, kp.type,
                    (int)kp.b64_len, kp.b64, kp.comment_len ? " " : "",
                    (int)kp.comment_len, kp.comment);
    return out;
}

void
sshkey_comment(const char *line, char *out, size_t len)
{
    const char *s, *e, *p, *tok;
    size_t tok_len, n = 0;
    int skip = 2;

    if (!len)
        return;
    out[0] = '\0';
    if (!line)
        return;
    /* Control characters would be refused anyway; stop at the first. */
    s = line;
    for (e = s; *e && *e != '\n' && *e != '\r'; e++)
        ;
    p = s;
    /* The comment follows the base64 blob, which follows the type; with an
     * options prefix, count from the first word that looks like a type. */
    {
        const char *q = s;
        while (next_token(&q, e, &tok, &tok_len))
            if (find_type(tok, tok_len) || looks_like_type(tok, tok_len)) {
                p = tok;
                break;
            }
    }
    while (skip-- && next_token(&p, e, &tok, &tok_len))
        ;
    while (p < e && is_blank(*p))
        p++;
    while (e > p && is_blank(e[-1]))
        e--;
    for (; p < e && n + 1 < len; p++)
        if ((unsigned char)*p >= 0x20 && *p != 0x7f)
            out[n++] = *p;
    out[n] = '\0';
}

int
sshkey_fingerprint(const char *line, char *out, size_t len)
{
    struct key_parts kp;
    ssh_key key;
    unsigned char *hash = NULL;
    size_t hlen = 0;
    char *fp;
    int rc = 0;

    if (!line)
        return -EINVAL;
    key = parse_key(line, strlen(line), &kp, NULL, 0);
    if (!key)
        return -EINVAL;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) !=
        SSH_OK) {
        rc = -EINVAL;
        goto out_free_key;
    }
    fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    if (!fp) {
        rc = -ENOMEM;
        goto out_free_hash;
    }
    if (strlcpy_s(out, fp, len) >= len)
        rc = -ENOSPC;
    ssh_string_free_char(fp);
out_free_hash:
    ssh_clean_pubkey_hash(&hash);
out_free_key:
    ssh_key_free(key);
    return rc;
}

void
sshkey_list_free(char **keys)
{
    if (!keys)
        return;
    for (char **k = keys; *k; k++)
        free(*k);
    free(keys);
}

int
sshkey_load_file(const char *path, char ***keys, size_t *nkeys, char *err,
                 size_t errlen)
{
    char *data, *line, *next, why[160];
    char **list = NULL;
    size_t len, n = 0, lineno = 0;
    int rc;

    rc = read_file(path, &data, &len);
    if (rc < 0) {
        seterr(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (memchr(data, '\0', len)) {
        seterr(err, errlen, "%s: contains a NUL byte", path);
        rc = -EINVAL;
        goto out_free_data;
    }
    list = xcalloc(1, sizeof(*list));
    for (line = data; line; line = next) {
        const char *p = line;
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        while (is_blank(*p))
            p++;
        if (*p == '\0' || *p == '\r' || *p == '#')
            continue;
        if (!sshkey_valid(p, why, sizeof(why))) {
            seterr(err, errlen, "%s line %zu: %s", path, lineno, why);
            rc = -EINVAL;
            goto out_free_list;
        }
        list = xrealloc(list, (n + 2) * sizeof(*list));
        list[n++] = sshkey_canonical(p);
        list[n] = NULL;
    }
    *keys = list;
    *nkeys = n;
    free(data);
    return 0;
out_free_list:
    sshkey_list_free(list);
out_free_data:
    free(data);
    return rc;
}
