/* SPDX-License-Identifier: MIT */
/* Usage errors, the same in every program (constellation-agent, aipctl, aip-test-server,
 * aip-bench, aip-codec): one line on stderr naming the argument and what is wrong with it,
 * then a hint, and exit status 2:
 *
 *   aipctl: --timeout: "abc" is not a number of seconds
 *   Try 'aipctl --help' for more information.
 *
 * --help prints the full usage on stdout and exits 0 (each program's own usage()).
 * Each tool_arg_* parses one option value: 0 with *out set, or 2 after printing the error
 * (so a caller writes `if (tool_arg_num(...)) return 2;`). */
#ifndef AIP_TOOLS_USAGE_H
#define AIP_TOOLS_USAGE_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#define TOOL_EXIT_USAGE 2

/* Prints "PROG: MESSAGE" and "Try 'CMD --help' for more information." on stderr, where CMD is
 * PROG up to its first space ("aip-bench rr" suggests 'aip-bench --help'). Returns 2. */
int tool_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* getopt_long's error return, c: ':' (an option without its value: optstring must begin with
 * ':') or '?' (an unknown or ambiguous option). Call it with opterr = 0. Names the argument
 * (argv[optind - 1]) and, for a prefix that fits several options, the candidates. Returns 2. */
int tool_option_error(const char *prog, int c, char *const argv[], const struct option *opts);

/* An integer in [min, max]: "--port: 70000 is out of range 0..65535",
 * "--port: "x" is not a whole number". */
int tool_arg_int(const char *prog, const char *opt, const char *s, long long min, long long max,
                 long long *out);

/* A number; unit (e.g. "seconds", or NULL) names it in the message:
 * "--timeout: "abc" is not a number of seconds". above_min: the value must be > min (else >=);
 * "--timeout: 0 must be more than 0 and at most 2592000". */
int tool_arg_num(const char *prog, const char *opt, const char *s, double min, bool above_min,
                 double max, const char *unit, double *out);

/* A byte size as tool_parse_size() reads it (1048576, 512K, 100M, 1G) in [min, max]. */
int tool_arg_size(const char *prog, const char *opt, const char *s, size_t min, size_t max,
                  size_t *out);

/* One of a NULL-terminated list of words; *out is its index:
 * "--encoding: "xml" is not one of json, proto". */
int tool_arg_choice(const char *prog, const char *opt, const char *s, const char *const *choices,
                    int *out);

/* A file that must be readable now (TLS certificates, keys, CA bundles): 0, or 2 after
 * "--tls-cert /x/y.pem: No such file or directory" (or "is a directory", "is empty"). */
int tool_arg_file(const char *prog, const char *opt, const char *path);

/* A PEM file: the same, and it must hold a "-----BEGIN ...CERTIFICATE-----" (TOOL_PEM_CERT:
 * a certificate or a CA bundle) or a "-----BEGIN ...PRIVATE KEY-----" line (TOOL_PEM_KEY):
 * "--tls-key /x/y.pem: not a PEM private key". */
typedef enum tool_pem { TOOL_PEM_CERT, TOOL_PEM_KEY } tool_pem;
int tool_arg_pem(const char *prog, const char *opt, const char *path, tool_pem kind);

/* Why the file at path cannot be used, or NULL; for tool_arg_file/pem, and for files named
 * elsewhere (a configuration). kind < 0: any readable, non-empty file. The reason is in a
 * static buffer (the programs parse their arguments on one thread). */
const char *tool_file_problem(const char *path, int kind);

/* ws:// or wss:// with a host: NULL, else the reason ("is not a ws:// or wss:// URL"). */
const char *tool_ws_url_problem(const char *url);
/* The same for an option's value: 0, or 2 after "--server: ws://h/?token=<redacted> has no
 * host" (the URL shown with its query values and fragment redacted: never a key). */
int tool_arg_ws_url(const char *prog, const char *opt, const char *url);

#endif
