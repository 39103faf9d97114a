/* Console user names (sshd.c), as `ssh -p PORT USER@host` gives them:
 * SERVER[.ro][.replay=N].  A name that parses names a server that fits
 * and a replay that is not negative. */
#include "fuzz.h"
#include "sshd.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *user = fuzz_str(data, size);
    char server[64];
    bool ro;
    int replay;
    if (sshd_parse_user(user, server, sizeof(server), &ro, &replay)) {
        assert(server[0] != '\0' && strlen(server) < sizeof(server));
        assert(strncmp(user, server, strlen(server)) == 0);
        assert(replay >= 0);
    }
    free(user);
    return 0;
}
