/* SPDX-License-Identifier: MIT */
/* libcurl, loaded when first needed (see curl_api.h). */
#include "curl_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The soname of Debian's libcurl4 (and of libcurl3-gnutls' compatible builds: not tried). */
#define CURL_SONAME "libcurl.so.4"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static mcp_curl_api api;
static const mcp_curl_api *loaded;
static char load_why[200];

static void load(void)
{
    void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_why, sizeof load_why, "cannot load %s (HTTP MCP servers need libcurl): %s",
                 CURL_SONAME, e ? e : "?");
        return;
    }
    struct {
        const char *name;
        void **slot;
    } syms[] = {
#define SYM(f) {"curl_" #f, (void **)&api.f}
        SYM(global_init),      SYM(easy_init),           SYM(easy_setopt),   SYM(easy_perform),
        SYM(easy_getinfo),     SYM(easy_cleanup),        SYM(easy_strerror), SYM(multi_init),
        SYM(multi_add_handle), SYM(multi_remove_handle), SYM(multi_perform), SYM(multi_poll),
        SYM(multi_wakeup),     SYM(multi_info_read),     SYM(multi_cleanup), SYM(share_init),
        SYM(share_setopt),     SYM(share_cleanup),       SYM(slist_append),  SYM(slist_free_all),
#undef SYM
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(h, syms[i].name);
        if (!p) {
            snprintf(load_why, sizeof load_why, "%s has no %s (libcurl 7.68 or later needed)",
                     CURL_SONAME, syms[i].name);
            dlclose(h);
            return;
        }
        memcpy(syms[i].slot, &p, sizeof p); /* object to function pointer: POSIX allows it */
    }
    if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(load_why, sizeof load_why, "curl_global_init failed");
        return; /* the library stays mapped: nothing else may use it now */
    }
    loaded = &api; /* never dlclose()d: libcurl keeps global state for the process */
}

const mcp_curl_api *mcp_curl_load(char *why, size_t why_len)
{
    pthread_once(&once, load);
    if (!loaded && why && why_len)
        snprintf(why, why_len, "%s", load_why);
    return loaded;
}
