/* The boot path's (and the API's) request paths (http.c's router, then
 * config.c's MAC parser for /boot/<mac>.ipxe), as a client sends them,
 * raw and %-encoded.  The patterns are bootpath.c's and api.c's routes.
 * A capture that matches holds only its kind's characters, within its
 * length, so no "..", "/" or NUL reaches a handler; a MAC that parses is
 * the canonical "aa:bb:cc:dd:ee:ff". */
#include "config.h"
#include "fuzz.h"
#include "http.h"
#include "util.h"

#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const struct http_route routes[] = {
    {"/boot/{mac}.ipxe", 0, 0, NULL, NULL, NULL},
    {"/images/{file}", 0, 0, NULL, NULL, NULL},
    {"/overlay/{token}.tar.gz", 0, 0, NULL, NULL, NULL},
    {"/v1/phone-home/{token}", 0, 0, NULL, NULL, NULL},
    {"/v1/servers/{}", 0, 0, NULL, NULL, NULL},
    {"/v1/servers/{}/console/log", 0, 0, NULL, NULL, NULL},
};

static void
check_capture(char kind, const char *c)
{
    size_t n = strlen(c);
    assert(n >= 1 && n <= (kind == 't' ? HTTP_CAP_MAX : ID_MAX));
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)c[i];
        assert(ch != '/' && ch != '\0');
        switch (kind) {
        case 'm':
            assert(isxdigit(ch) || ch == ':' || ch == '-');
            break;
        case 't':
            assert(isdigit(ch) || (ch >= 'a' && ch <= 'f'));
            break;
        case 'f':
            assert(id_char(ch) || (ch == '.' && i > 0));
            break;
        default:
            assert(id_char(ch));
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The path as MHD hands it: a C string, cut before any query. */
    char *path = fuzz_str(data, size);
    size_t plen = strcspn(path, "?#");
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        char caps[HTTP_MAX_CAPS][HTTP_CAP_MAX + 1];
        memset(caps, 0, sizeof(caps));
        if (http_route_match(&routes[i], path, plen, caps) != 1)
            continue;
        const char *brace = strchr(routes[i].pattern, '{');
        char kind = brace[1] == '}' ? 'i' : brace[1];
        check_capture(kind, caps[0]);
        if (kind == 'm') {
            char mac[18];
            if (config_parse_mac(caps[0], mac)) {
                assert(strlen(mac) == 17);
                char again[18];
                assert(config_parse_mac(mac, again));
                assert(strcmp(mac, again) == 0);
            }
        }
    }
    /* A MAC as config's mac= gives it, whole. */
    char mac[18];
    if (config_parse_mac(path, mac))
        assert(strlen(mac) == 17 && mac[2] == ':');
    free(path);
    return 0;
}
