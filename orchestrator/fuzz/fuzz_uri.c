/* Console, power and store URIs (uri.c), as a [server:ID] section's
 * console= and power= and [rescued] store= give them.  The first byte
 * picks the parser; the rest is the URI.  What is parsed must be
 * self-consistent: a port in range, a kind the header names. */
#include "fuzz.h"
#include "uri.h"

#include <assert.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *s = fuzz_str(data + 1, size - 1);
    char err[256];
    switch (data[0] % 4) {
    case 0: {
        struct uri_console *u = uri_console_parse(s, err, sizeof(err));
        if (u && u->port)
            assert(uri_parse_port(u->port) > 0);
        uri_console_free(u);
        break;
    }
    case 1: {
        struct uri_power *u = uri_power_parse(s, err, sizeof(err));
        if (u && u->port)
            assert(uri_parse_port(u->port) > 0);
        uri_power_free(u);
        break;
    }
    case 2:
        uri_store_free(uri_store_parse(s, err, sizeof(err)));
        break;
    default: {
        int p = uri_parse_port(s);
        assert(p == -1 || (p >= 1 && p <= 65535));
        break;
    }
    }
    free(s);
    return 0;
}
