/* SPDX-License-Identifier: MIT */
/* Usage errors of the programs (see usage.h). */
#include "usage.h"

#include "size_arg.h"

#include <aip/redact.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void hint(const char *prog)
{
    size_t n = strcspn(prog, " ");
    fprintf(stderr, "Try '%.*s --help' for more information.\n", (int)n, prog);
}

int tool_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    hint(prog);
    return TOOL_EXIT_USAGE;
}

int tool_option_error(const char *prog, int c, char *const argv[], const struct option *opts)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    if (c == ':')
        return tool_usage_error(prog, "%s: needs a value", arg);
    if (optopt > 0 && optopt < 256 && (strncmp(arg, "--", 2) != 0))
        return tool_usage_error(prog, "-%c: unknown option", optopt);
    if (strncmp(arg, "--", 2) == 0 && opts) {
        /* an ambiguous prefix: name the options it could be */
        const char *name = arg + 2;
        size_t n = strcspn(name, "=");
        char list[300] = "";
        size_t hits = 0, used = 0;
        for (const struct option *o = opts; o->name; o++) {
            if (strncmp(o->name, name, n) != 0)
                continue;
            hits++;
            int w = snprintf(list + used, sizeof list - used, "%s--%s", used ? ", " : "", o->name);
            if (w > 0 && (size_t)w < sizeof list - used)
                used += (size_t)w;
        }
        if (hits > 1 && n > 0)
            return tool_usage_error(prog, "%.*s: ambiguous, could be %s", (int)(n + 2), arg, list);
        if (hits == 1 && name[n] == '=') /* --verbose=1 for an option without a value */
            return tool_usage_error(prog, "%.*s: takes no value", (int)(n + 2), arg);
    }
    return tool_usage_error(prog, "%s: unknown option", arg);
}

int tool_arg_int(const char *prog, const char *opt, const char *s, long long min, long long max,
                 long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    bool digits = s[0] && (s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9'));
    if (!digits || end == s || *end)
        return tool_usage_error(prog, "%s: \"%s\" is not a whole number", opt, s);
    if (max == LLONG_MAX && (errno == ERANGE || v < min) && !(errno == ERANGE && v > 0))
        return tool_usage_error(prog, "%s: %s must be at least %lld", opt, s, min);
    if (errno == ERANGE || v < min || v > max)
        return tool_usage_error(prog, "%s: %s is out of range %lld..%lld", opt, s, min, max);
    *out = v;
    return 0;
}

int tool_arg_num(const char *prog, const char *opt, const char *s, double min, bool above_min,
                 double max, const char *unit, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    bool start_ok = s[0] && s[0] != ' ' && s[0] != '\t' && s[0] != '\n';
    if (!start_ok || end == s || *end || !isfinite(v))
        return tool_usage_error(prog, "%s: \"%s\" is not a number%s%s", opt, s, unit ? " of " : "",
                                unit ? unit : "");
    if (above_min ? !(v > min) : !(v >= min))
        return tool_usage_error(prog, "%s: %s must be %s %g and at most %g%s%s", opt, s,
                                above_min ? "more than" : "at least", min, max, unit ? " " : "",
                                unit ? unit : "");
    if (v > max)
        return tool_usage_error(prog, "%s: %s is more than %g%s%s", opt, s, max, unit ? " " : "",
                                unit ? unit : "");
    *out = v;
    return 0;
}

static void put_size(char *buf, size_t n, size_t v)
{
    static const char *const suffix[] = {"", "K", "M", "G"};
    int i = 0;
    while (i < 3 && v && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, "%zu%s", v, suffix[i]);
}

int tool_arg_size(const char *prog, const char *opt, const char *s, size_t min, size_t max,
                  size_t *out)
{
    if (tool_parse_size(s, min, max, out) == 0)
        return 0;
    char lo[32], hi[32];
    put_size(lo, sizeof lo, min);
    put_size(hi, sizeof hi, max);
    return tool_usage_error(prog,
                            "%s: \"%s\" is not a size from %s to %s (e.g. 1048576, 512K, "
                            "100M)",
                            opt, s, lo, hi);
}

int tool_arg_choice(const char *prog, const char *opt, const char *s, const char *const *choices,
                    int *out)
{
    char list[200] = "";
    size_t used = 0;
    for (int i = 0; choices[i]; i++) {
        if (strcmp(s, choices[i]) == 0) {
            *out = i;
            return 0;
        }
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", choices[i]);
        if (w > 0 && (size_t)w < sizeof list - used)
            used += (size_t)w;
    }
    return tool_usage_error(prog, "%s: \"%s\" is not one of %s", opt, s, list);
}

const char *tool_file_problem(const char *path, int kind)
{
    static char why[160];
    if (!path[0])
        return "is an empty file name";
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, sizeof why, "%s", strerror(errno));
        return why;
    }
    struct stat st;
    const char *problem = NULL;
    if (fstat(fd, &st))
        problem = "cannot be examined";
    else if (S_ISDIR(st.st_mode))
        problem = "is a directory";
    else if (!S_ISREG(st.st_mode))
        problem = "is not a regular file";
    else if (st.st_size == 0)
        problem = "is empty";
    if (problem || kind < 0) {
        close(fd);
        return problem;
    }
    /* a PEM file names what it holds on its BEGIN lines; 1 MiB covers any CA bundle's first */
    static char buf[1 << 20];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, sizeof why, "%s", strerror(errno));
            close(fd);
            return why;
        }
        if (n == 0 || (have += (size_t)n) == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[have] = 0;
    const char *want = kind == TOOL_PEM_KEY ? "PRIVATE KEY-----" : "CERTIFICATE-----";
    bool found = false;
    for (const char *p = buf; !found && (p = strstr(p, "-----BEGIN ")) != NULL; p++) {
        const char *eol = strchr(p, '\n');
        const char *hit = strstr(p, want);
        found = hit && (!eol || hit < eol);
    }
    explicit_bzero(buf, have); /* it may have been a private key */
    if (found)
        return NULL;
    return kind == TOOL_PEM_KEY ? "not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" "
                                  "line)"
                                : "not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)";
}

int tool_arg_file(const char *prog, const char *opt, const char *path)
{
    const char *why = tool_file_problem(path, -1);
    return why ? tool_usage_error(prog, "%s %s: %s", opt, path, why) : 0;
}

int tool_arg_pem(const char *prog, const char *opt, const char *path, tool_pem kind)
{
    const char *why = tool_file_problem(path, (int)kind);
    return why ? tool_usage_error(prog, "%s %s: %s", opt, path, why) : 0;
}

const char *tool_ws_url_problem(const char *url)
{
    size_t skip = strncmp(url, "ws://", 5) == 0 ? 5 : strncmp(url, "wss://", 6) == 0 ? 6 : 0;
    if (!skip)
        return "is not a ws:// or wss:// URL";
    if (!url[skip] || url[skip] == '/' || url[skip] == ':' || url[skip] == '?')
        return "has no host";
    if (strchr(url, '#'))
        return "has a fragment (#): WebSocket URLs take none";
    return NULL;
}

int tool_arg_ws_url(const char *prog, const char *opt, const char *url)
{
    const char *why = tool_ws_url_problem(url);
    if (!why)
        return 0;
    char shown[512];
    aip_redact_url(url, shown, sizeof shown);
    return tool_usage_error(prog, "%s: %s %s", opt, shown, why);
}
