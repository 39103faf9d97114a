/* sshkey: checks one OpenSSH public key line ("type base64 [comment]") before
 * it goes into a rescue system's authorized_keys, and computes its
 * fingerprint in OpenSSH's "SHA256:..." form. Ground floor: no I/O except
 * sshkey_load_file. Fingerprints use libssh. */
#ifndef RESCUED_SSHKEY_H
#define RESCUED_SSHKEY_H

#include <stdbool.h>
#include <stddef.h>

/* Room for "SHA256:" + 43 base64 characters + NUL, with margin. */
#define SSHKEY_FP_LEN 64

/* Accepted types: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa with a
 * modulus of at least 2048 bits, sk-ssh-ed25519@openssh.com and
 * sk-ecdsa-sha2-nistp256@openssh.com. The base64 blob must decode to a key
 * of the named type; an options prefix (command="...", no-pty, ...) and any
 * control character (newline, NUL, ...) are refused. Leading and trailing
 * blanks, and one trailing newline, are tolerated. On false, err says why,
 * e.g. "unsupported key type 'ssh-dss'". */
bool sshkey_valid(const char *line, char *err, size_t errlen);
/* The same for a counted string, which may hold NUL bytes (JSON input). */
bool sshkey_valid_n(const char *line, size_t len, char *err, size_t errlen);

/* The line as it goes into authorized_keys: "type base64[ comment]" with
 * blanks trimmed and runs of blanks before the comment made one space.
 * Returns a new string (caller frees), or NULL when the key is invalid. */
char *sshkey_canonical(const char *line);

/* Copy the key's comment (text after the base64 blob, blanks trimmed, control
 * characters dropped) into out; "" when there is none. Works on invalid
 * lines too, as far as they can be split, so errors can name the key. */
void sshkey_comment(const char *line, char *out, size_t len);

/* Write the fingerprint of a valid key line into out ("SHA256:..."), as
 * `ssh-keygen -lf` prints it. Returns 0, -EINVAL for an invalid key or
 * -ENOSPC when out is too small (SSHKEY_FP_LEN is enough). */
int sshkey_fingerprint(const char *line, char *out, size_t len);

/* Read an authorized_keys file: blank lines and lines starting with '#' are
 * skipped, every other line must pass sshkey_valid. On success *keys is a
 * NULL-terminated array of trimmed lines (free with sshkey_list_free) and
 * *nkeys its length. On error (-errno from reading, -EINVAL for a bad
 * line, err naming the file and line number) nothing is returned. */
int sshkey_load_file(const char *path, char ***keys, size_t *nkeys, char *err,
                     size_t errlen);
void sshkey_list_free(char **keys);

#endif
