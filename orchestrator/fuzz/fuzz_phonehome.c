/* POST /v1/phone-home/<token> bodies: parsed as http.c parses a JSON
 * body, checked as fleet_phone_home checks them (an object with an "ip"),
 * normalised by inventory.c, stored as fleet stores them (compact,
 * sorted), read back as fleet_view reads them, and drawn as rescuectl
 * status draws them (inventory_format).  What was normalised once must
 * survive the store and normalise again. */
#include "fuzz.h"
#include "inventory.h"
#include "util.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *report =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!report)
        return 0;
    char err[256];
    if (!json_is_object(report) ||
        !json_is_string(json_object_get(report, "ip")) ||
        inventory_normalize(report, err, sizeof(err)) < 0) {
        json_decref(report);
        return 0;
    }
    char *stored = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
    assert(stored);
    json_t *back = json_loads(stored, 0, NULL);
    assert(back);
    assert(inventory_normalize(back, err, sizeof(err)) == 0);
    struct buf b = {0};
    inventory_format(back, &b);
    buf_free(&b);
    json_decref(back);
    free(stored);
    json_decref(report);
    return 0;
}
