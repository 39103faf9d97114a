/* The config file (config.c, with iniparser and uri.c under it), as
 * rescued -c FILE reads it, from a memfd.  A file that loads has servers
 * with normalised MACs, each findable by id and by MAC, in a project
 * that exists, with power and console URIs that uri.c parses. */
#include "config.h"
#include "fuzz.h"
#include "uri.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[40];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    char err[1024] = "";
    struct config *c = config_load(path, err, sizeof(err));
    if (!c) {
        assert(err[0] != '\0');
        return 0;
    }
    for (size_t i = 0; i < c->nservers; i++) {
        const struct config_server *s = &c->servers[i];
        assert(strlen(s->mac) == 17);
        assert(config_find_server(c, s->id) == s);
        assert(config_find_server_by_mac(c, s->mac) == s);
        assert(config_find_project(c, s->project));
        /* config refuses what power and console would refuse (uri.h). */
        char uerr[256];
        struct uri_power *p = uri_power_parse(s->power, uerr, sizeof(uerr));
        assert(p);
        uri_power_free(p);
        if (s->console) {
            struct uri_console *u =
                uri_console_parse(s->console, uerr, sizeof(uerr));
            assert(u);
            uri_console_free(u);
        }
    }
    config_free(c);
    return 0;
}
