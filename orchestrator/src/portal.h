/* portal: the browser's face of rescued.  GET / and /assets/NAME serve the
 * built portal (portal/ in the tree, built into build/ui) from [ui] dir, a
 * small static-file server: a fixed content type per extension, one flat
 * directory (no listing, no path that leaves it), ETag and revalidation.
 * POST /v1/session signs in with a token and answers with the session
 * cookie and the CSRF token; GET /v1/session tells a reloaded page its
 * session; DELETE /v1/session signs out.  The sessions are the fleet's
 * (session.h); the API's check accepts their cookie.
 *
 * Runs from the loop; a handler opens and fstat()s one local file. */
#ifndef RESCUED_PORTAL_H
#define RESCUED_PORTAL_H

struct http;
struct fleet;

/* Add the routes to h; f must outlive h. */
void portal_register(struct http *h, struct fleet *f);

/* The directory the portal's files come from: [ui] dir, else "ui" beside
 * the rescued binary (build/ui for a build tree).  Owned by f's config or
 * static. */
struct config;
const char *portal_dir(const struct config *cfg);

#endif
