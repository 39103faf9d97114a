/* api: the HTTP API and boot path on libmicrohttpd, driven by our event
 * loop through MHD's external epoll fd.  JSON with jansson. */
#ifndef RESCUED_API_H
#define RESCUED_API_H

#include <stddef.h>

struct loop;
struct fleet;
struct api;

/* Listen on "host:port" (port 0: any; see api_port). */
struct api *api_new(struct loop *l, struct fleet *f, const char *listen,
                    char *err, size_t errlen);
void api_free(struct api *a);
int api_port(const struct api *a);

#endif
