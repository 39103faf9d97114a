/* openapi: docs/openapi.yaml as JSON, embedded at build time
 * (scripts/openapi-gen writes build/gen/openapi.c); api serves it at
 * GET /v1/openapi.json. */
#ifndef RESCUED_OPENAPI_H
#define RESCUED_OPENAPI_H

#include <stddef.h>

extern const char openapi_json[]; /* NUL-terminated */
extern const size_t openapi_json_len;

#endif
