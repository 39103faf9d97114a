/* Shared by the libFuzzer targets (fuzz_*.c): the entry point's prototype
 * and the input as a C string. */
#ifndef RESCUED_FUZZ_H
#define RESCUED_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* data as a NUL-terminated string (caller frees); an embedded NUL ends it
 * early, as it would end a C string from a header or a user name. */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
