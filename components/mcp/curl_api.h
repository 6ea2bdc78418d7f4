/* SPDX-License-Identifier: MIT */
/*
 * libcurl, loaded when first needed (private to components/mcp).
 *
 * Only the MCP host's streamable HTTP client uses libcurl, and most agents host no HTTP MCP
 * server. Linked at start-up, libcurl and the libraries it needs (GnuTLS, Kerberos, LDAP,
 * libssh2, p11-kit, ...) cost every agent about 500 KiB of anonymous memory (their relocated
 * data) whether it uses them or not. So libcurl is opened with dlopen() the first time a host
 * with an HTTP server is created, and called through this table; an agent without one never
 * maps it. The headers come from libcurl's -dev package at build time; the library must be
 * present (Debian: libcurl4) only where HTTP MCP servers are configured.
 *
 * Calls through the table skip curl's compile-time option type checks (typecheck-gcc.h works on
 * the name curl_easy_setopt only): the option values are passed with the types curl documents.
 */
#ifndef AIP_MCP_CURL_API_H
#define AIP_MCP_CURL_API_H

#include <curl/curl.h>

typedef struct mcp_curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *h);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    const char *(*easy_strerror)(CURLcode rc);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd extra[], unsigned n, int timeout_ms,
                            int *numfds);
    CURLMcode (*multi_wakeup)(CURLM *m);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_cleanup)(CURLM *m);
    CURLSH *(*share_init)(void);
    CURLSHcode (*share_setopt)(CURLSH *s, CURLSHoption opt, ...);
    CURLSHcode (*share_cleanup)(CURLSH *s);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
} mcp_curl_api;

/* Opens libcurl and runs curl_global_init once per process (thread-safe). Returns the table,
 * or NULL when libcurl cannot be loaded or initialised (why says which, for the log). */
const mcp_curl_api *mcp_curl_load(char *why, size_t why_len);

#endif
