/* SPDX-License-Identifier: MIT */
/* A one-shot HTTP(S) GET for the command-line tools, on a private libwebsockets context. */
#ifndef AIP_TOOLS_HTTP_GET_H
#define AIP_TOOLS_HTTP_GET_H

#include <stddef.h>

/* GETs `path` from the server of ws_url (ws -> http, wss -> https), sending the token as
 * X-API-Key when non-NULL. On 0, *status is the HTTP status and *body a NUL-terminated
 * malloc'd body (free it). On -1, err says why. Bodies are capped at 16 MiB. */
int aip_http_get(const char *ws_url, const char *path, const char *token, const char *ca_file,
                 int timeout_ms, int *status, char **body, char *err, size_t errlen);
/* The same with a client certificate for mutual TLS (both or neither). */
int aip_http_get_tls(const char *ws_url, const char *path, const char *token, const char *ca_file,
                     const char *cert_file, const char *key_file, int timeout_ms, int *status,
                     char **body, char *err, size_t errlen);

#endif
