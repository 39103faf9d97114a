/* overlay: packs a server's Alpine apkovl (tar.gz) from the alpine-overlay/
 * skeleton plus its hostname and authorized SSH keys, with libarchive, in
 * memory. Ground floor: reads the skeleton, writes nothing to disk.
 *
 * The archive holds relative paths sorted by name, owner root (0/0), one
 * fixed mtime (SOURCE_DATE_EPOCH if set, else 0) and normalised modes
 * (directories 0755, files 0644 or 0755 if executable, root/ and root/.ssh/
 * 0700, root/.ssh/authorized_keys 0600); symbolic links stay links. The
 * gzip header carries no time and no name, so the same inputs give the same
 * bytes. */
#ifndef RESCUED_OVERLAY_H
#define RESCUED_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Build the apkovl and append it to out. The skeleton's files are taken
 * recursively, except its top-level README.md and any
 * etc/.default_boot_services (whose presence would make Alpine apply its
 * default services and ssh_key=); etc/hostname, etc/hosts and
 * root/.ssh/authorized_keys are generated. Every key must pass sshkey_valid
 * and at least one is needed. Returns 0, -EINVAL for a bad hostname or key
 * (err names the key: "key 2 (alice@laptop): RSA key is 1024 bits; ..."),
 * or -errno for a skeleton that cannot be read; on error out is unchanged. */
int overlay_build(const char *skeleton_dir, const char *hostname,
                  const char *const *keys, size_t nkeys, struct buf *out,
                  char *err, size_t errlen);

/* A hostname usable in etc/hostname: dot-separated labels of letters,
 * digits and '-', each 1-63 long and not starting or ending with '-';
 * at most 253 characters in all. */
bool overlay_hostname_valid(const char *hostname);

#endif
