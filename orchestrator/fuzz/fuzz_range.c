/* HTTP Range headers of GET /images/<file> (bootpath.c).  The first 8
 * bytes are the file's size (up to 2^40), the rest the header.  A range
 * accepted is inside the file and not empty. */
#include "bootpath.h"
#include "fuzz.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t raw;
    memcpy(&raw, data, 8);
    int64_t fsize = (int64_t)(raw & ((UINT64_C(1) << 40) - 1));
    char *h = fuzz_str(data + 8, size - 8);
    int64_t from = -1, to = -1;
    if (bootpath_parse_range(h, fsize, &from, &to)) {
        assert(from >= 0 && from <= to && to < fsize);
    }
    free(h);
    return 0;
}
