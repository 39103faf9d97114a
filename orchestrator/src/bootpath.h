/* bootpath: what iPXE and the rescue OS fetch, without a token and with
 * nothing in it beyond public keys: /boot/<mac>.ipxe, /images/<file>
 * (with Range), /overlay/<token>.tar.gz and POST /v1/phone-home/<token>.
 * Routes on http; each fetch is an event for fleet, which decides who may
 * speak for a server (403, 409: fleet_boot.c); a HEAD moves nothing.  Handlers
 * run from the loop; an image is sent from its fd by MHD as the socket takes
 * it. */
#ifndef RESCUED_BOOTPATH_H
#define RESCUED_BOOTPATH_H

#include <stdbool.h>
#include <stdint.h>

struct http;
struct fleet;

/* Add the routes to h; f serves them and must outlive h. */
void bootpath_register(struct http *h, struct fleet *f);

/* An image's Range header: "bytes=A-B", "bytes=A-" or "bytes=-N" against a
 * file of size bytes, into [*from, *to] (inclusive); false when it is not
 * one satisfiable range (416). */
bool bootpath_parse_range(const char *h, int64_t size, int64_t *from,
                          int64_t *to);

#endif
