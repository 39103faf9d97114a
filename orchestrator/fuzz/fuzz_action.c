/* POST /v1/servers/{id}/actions bodies (api.c), parsed as http.c parses
 * a JSON body, then checked as api.c checks them; the ssh_keys a rescue
 * action adds go through sshkey_valid_n as fleet_action checks them. */
#include "api.h"
#include "fleet.h"
#include "fuzz.h"
#include "sshkey.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return 0;
    struct fleet_action fa = {.actor = "admin"};
    char err[512];
    if (api_parse_action(root, &fa, err, sizeof(err)) == 0) {
        assert(fa.event == FSM_EV_RESCUE || fa.nkeys == 0);
        assert(fa.ttl_s >= 0);
        for (size_t i = 0; i < fa.nkeys; i++) {
            json_t *k = json_array_get(json_object_get(root, "ssh_keys"), i);
            sshkey_valid_n(fa.ssh_keys[i], json_string_length(k), err,
                           sizeof(err));
        }
    }
    free(fa.ssh_keys);
    json_decref(root);
    return 0;
}
