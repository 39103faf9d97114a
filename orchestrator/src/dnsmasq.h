/* dnsmasq: rescued's DHCP/TFTP server, as a supervised child.  Writes its
 * config and DHCP host file from the inventory (only inventory MACs get an
 * answer), starts it in the foreground as root, from where it drops to an
 * unprivileged user (dnsmasq, else nobody), starts it again when the
 * inventory's host lines change, restarts it with backoff when it dies,
 * stops it on free. */
#ifndef RESCUED_DNSMASQ_H
#define RESCUED_DNSMASQ_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct config;
struct buf;
struct dnsmasq;

/* The files it reads: dnsmasq.conf (fixed for a run) and hosts.
 * next_server: the address proxy mode names as the boot server (this
 * host's on the PXE interface), or NULL. */
void dnsmasq_write_conf(const struct config *c, const char *dir,
                        const char *next_server, struct buf *out);
void dnsmasq_write_hosts(const struct config *c, struct buf *out);

/* Write the files into DATA_DIR/dnsmasq and start the child.  NULL with a
 * reason in err when the files cannot be written or dnsmasq not started.
 * The config must outlive the next dnsmasq_update. */
struct dnsmasq *dnsmasq_new(struct loop *l, const struct config *c, char *err,
                            size_t errlen);
/* Stop the child (SIGTERM, then SIGKILL after 2 s) and free. */
void dnsmasq_free(struct dnsmasq *d);
/* New inventory: rewrite the host file and, when it changed, start the
 * child again (it reads its files as root, at start only). */
void dnsmasq_update(struct dnsmasq *d, const struct config *c);

/* Is addr leased to mac in a dnsmasq lease file's text ("EXPIRY MAC ADDR
 * HOST CLIENTID" lines), leases that expired before now_s left out?  1
 * yes, 0 the MAC holds other addresses only, -ENOENT it holds none. */
int dnsmasq_lease_match(const char *leases, const char *mac, const char *addr,
                        int64_t now_s);
/* The same against the child's lease file now (d NULL: -ENOENT).  Reads
 * one small file. */
int dnsmasq_leased(const struct dnsmasq *d, const char *mac, const char *addr);

int dnsmasq_pid(const struct dnsmasq *d);
unsigned dnsmasq_restarts(const struct dnsmasq *d);

#endif
