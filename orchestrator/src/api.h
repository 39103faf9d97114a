/* api: the authenticated /v1 face of the HTTP server (servers, actions,
 * events and their SSE stream, the console log), /healthz and /metrics,
 * and who a Bearer token is: the admin, or a project that sees its own
 * servers only.  Routes on http; the state is fleet's.  Handlers run from
 * the loop and block on nothing but the store's reads. */
#ifndef RESCUED_API_H
#define RESCUED_API_H

#include <jansson.h>
#include <stddef.h>

struct http;
struct fleet;
struct fleet_action;

/* Add the routes to h; f serves them and must outlive h (http_free ends
 * the open event streams, which unsubscribe from f). */
void api_register(struct http *h, struct fleet *f);

/* Parse a POST /v1/servers/{id}/actions body (other than the bare NMI) into
 * *fa: type, ssh_keys (fa->ssh_keys allocated, pointing into root; the
 * caller frees the array even on error), ttl.  0, or -EINVAL with err. */
int api_parse_action(json_t *root, struct fleet_action *fa, char *err,
                     size_t errlen);

#endif
