/* OpenSSH public key lines (sshkey.c), as an authorized_keys file or an
 * action's ssh_keys give them: the counted check (JSON strings may hold
 * NUL), and for a C string the check, the canonical line, the comment
 * and the fingerprint.  A key that passes must keep passing once
 * canonical, with the same fingerprint. */
#include "fuzz.h"
#include "sshkey.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256], comment[256], fp[SSHKEY_FP_LEN], fp2[SSHKEY_FP_LEN];
    bool ok_n = sshkey_valid_n((const char *)data, size, err, sizeof(err));
    char *s = fuzz_str(data, size);
    bool ok = sshkey_valid(s, err, sizeof(err));
    /* The counted form refuses a NUL; without one both agree. */
    if (strlen(s) == size)
        assert(ok == ok_n);
    sshkey_comment(s, comment, sizeof(comment));
    char *canon = sshkey_canonical(s);
    assert(!canon == !ok);
    if (ok) {
        assert(sshkey_fingerprint(s, fp, sizeof(fp)) == 0);
        assert(sshkey_valid(canon, err, sizeof(err)));
        assert(sshkey_fingerprint(canon, fp2, sizeof(fp2)) == 0);
        assert(strcmp(fp, fp2) == 0);
    } else {
        assert(sshkey_fingerprint(s, fp, sizeof(fp)) == -EINVAL);
    }
    free(canon);
    free(s);
    return 0;
}
