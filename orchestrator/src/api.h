/* api: the authenticated /v1 face of the HTTP server (servers, actions,
 * events and their SSE stream, the console log), /healthz and /metrics,
 * and who a Bearer token is: the admin, or a project that sees its own
 * servers only.  Routes on http; the state is fleet's.  Handlers run from
 * the loop and block on nothing but the store's reads. */
#ifndef RESCUED_API_H
#define RESCUED_API_H

struct http;
struct fleet;

/* Add the routes to h; f serves them and must outlive h (http_free ends
 * the open event streams, which unsubscribe from f). */
void api_register(struct http *h, struct fleet *f);

#endif
