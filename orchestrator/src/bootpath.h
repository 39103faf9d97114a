/* bootpath: what iPXE and the rescue OS fetch, without a token and with
 * nothing in it beyond public keys: /boot/<mac>.ipxe, /images/<file>
 * (with Range), /overlay/<token>.tar.gz and POST /v1/phone-home/<token>.
 * Routes on http; each fetch is an event for fleet, which decides who may
 * speak for a server (403, 409: fleet_boot.c); a HEAD moves nothing.  Handlers
 * run from the loop; an image is sent from its fd by MHD as the socket takes
 * it. */
#ifndef RESCUED_BOOTPATH_H
#define RESCUED_BOOTPATH_H

struct http;
struct fleet;

/* Add the routes to h; f serves them and must outlive h. */
void bootpath_register(struct http *h, struct fleet *f);

#endif
