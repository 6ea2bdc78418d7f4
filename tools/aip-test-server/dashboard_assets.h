/* SPDX-License-Identifier: MIT */
/*
 * The dashboard's files, embedded at build time: tools/aip-test-server/embed_assets.cmake turns
 * every file under tools/aip-test-server/dashboard/ into a dashboard_asset in the generated
 * dashboard_assets.c, so the binary serves the page offline with no files beside it.
 */
#ifndef AIP_TEST_SERVER_DASHBOARD_ASSETS_H
#define AIP_TEST_SERVER_DASHBOARD_ASSETS_H

#include <stddef.h>

typedef struct dashboard_asset {
    const char *name; /* path under dashboard/, e.g. "index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} dashboard_asset;

extern const dashboard_asset dashboard_assets[];
extern const size_t dashboard_asset_count;

#endif
