/* SPDX-License-Identifier: MIT */
/*
 * constellation-agent configuration, between its files: config.c (the schema table, parsing,
 * precedence, checks, --check-config) and config_mcp.c (tools.mcp.servers, the one key whose
 * validation is its own: a list of servers, each a small object of its own).
 */
#ifndef AGENT_CONFIG_INTERNAL_H
#define AGENT_CONFIG_INTERNAL_H

#include "config.h"

#include <cjson/cJSON.h>

#include <stdio.h>

/* In a function with char *why, size_t why_len: the problem into why, return EXIT_CONFIG. */
#define FAIL(...)                            \
    do {                                     \
        snprintf(why, why_len, __VA_ARGS__); \
        return EXIT_CONFIG;                  \
    } while (0)

void set_str(char **dst, const char *v);
int get_unsigned(const cJSON *o, const char *key, const char *where, double lo, double hi,
                 unsigned *dst, char *why, size_t why_len);
/* Keys of an object checked against a NULL-terminated list: unknown key "where.key". */
int check_names(const cJSON *obj, const char *where, const char *const *allowed, char *why,
                size_t why_len);
/* {"k":"v" (or null), with *first telling "{" from "," */
void put_kv_str(aip_buf *b, const char *k, const char *v, bool *first);

/* The schema table's hooks for tools.mcp.servers: M is the tools.mcp object, FILE the config
 * file (refused when readable by others and holding env or headers). */
int load_mcp(agent_settings *s, const cJSON *m, const char *file, char *why, size_t why_len);
/* The servers as a JSON list, env and header values hidden. */
void show_mcp(aip_buf *b, const agent_settings *s);

#endif
