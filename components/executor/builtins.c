/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* O_PATH */
/*
 * Built-in tools: echo, sleep, list_tools, read_file (execute_command is in exec_cmd.c).
 *
 * They run on executor workers, concurrently, with `user` = the executor: anything they read
 * from it is either read-only after create or taken under its lock. Each honours its call's
 * deadline and the cancel flag where it can block.
 *
 * read_file's confinement, in two steps:
 * 1. realpath() the requested path (every symlink resolved, wherever it points) and check the
 *    result lies inside a read root: a symlink inside a root that stays inside is allowed, one
 *    that leads out is refused.
 * 2. Open that real path WITHOUT following any symlink, from the root directory down: the root
 *    itself from "/" and the file beneath it with openat2(RESOLVE_BENEATH |
 *    RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS) — or, on kernels without openat2 (ENOSYS, or
 *    EPERM from a seccomp filter that predates it), openat() component by component with O_NOFOLLOW
 * (O_DIRECTORY on the directories). The real path has no symlink in it, so a symlink found now was
 * swapped in after step 1: the open fails (ELOOP/ENOTDIR) instead of escaping. Then, on the open
 * file: a regular file, with one link unless the operator allows hard links (a hard link inside a
 * root to a file outside it passes every path check: its st_nlink is the only trace), and /proc's
 *    name for it inside the roots.
 */
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/internal/jscan.h"
#include "executor_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(SYS_openat2) && __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2 1
#endif

/* Parses call->parameters (NULL = {}); on failure sets *error and returns NULL. */
static cJSON *params_parse(const aip_tool_call *call, char **error)
{
    const char *p = call->parameters ? call->parameters : "{}";
    cJSON *o = cJSON_ParseWithLength(p, strlen(p));
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        exec_set_error(error, "parameters must be a JSON object");
        return NULL;
    }
    return o;
}

/* ---- echo ------------------------------------------------------------------------------------ */

int exec_tool_echo(const aip_tool_call *call, void *user, char **result, char **error)
{
    (void)user;
    cJSON *o = params_parse(call, error);
    if (!o)
        return -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
    int rc = 0;
    if (t && !cJSON_IsNull(t)) {
        if (!cJSON_IsString(t)) {
            rc = exec_fail(error, "parameters.text must be a string");
        } else {
            aip_buf b;
            aip_buf_init(&b, 0);
            if (aip_json_put_string(&b, t->valuestring, strlen(t->valuestring)) ||
                !(*result = exec_buf_take(&b)))
                rc = exec_fail(error, "out of memory");
            aip_buf_free(&b);
        }
    }
    cJSON_Delete(o);
    return rc;
}

bool aip_tool_call_cancelled(const aip_tool_call *call)
{
    const _Atomic int *flag = call ? (const _Atomic int *)call->cancelled : NULL;
    return flag && atomic_load(flag);
}

/* ---- sleep ----------------------------------------------------------------------------------- */

int exec_tool_sleep(const aip_tool_call *call, void *user, char **result, char **error)
{
    (void)result;
    aip_executor *e = user;
    uint64_t now = aip_now_ns(NULL);
    cJSON *o = params_parse(call, error);
    if (!o)
        return -1;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seconds");
    double secs = cJSON_IsNumber(s) ? s->valuedouble : -1;
    cJSON_Delete(o);
    if (!(secs >= 0) || !isfinite(secs))
        return exec_fail(error, "parameters.seconds must be a number >= 0");

    /* Compare in seconds first: a huge value must not overflow the nanosecond sum. */
    uint64_t left = call->deadline_ns > now ? call->deadline_ns - now : 0;
    bool too_long = secs * 1e9 >= (double)left;
    uint64_t until = too_long ? call->deadline_ns : now + (uint64_t)(secs * 1e9);
    if (exec_sleep_until(e, until) == AIP_E_CANCELLED)
        return exec_fail(error, "cancelled: the executor is stopping");
    if (too_long)
        return exec_fail(error,
                         "timed out: sleeping %g s would pass the command's deadline "
                         "(%llu ms left)",
                         secs, (unsigned long long)(left / 1000000u));
    return 0;
}

/* ---- list_tools ------------------------------------------------------------------------------ */

/* A filter parameter: absent or null (no filter) or a string. */
static int filter_param(const cJSON *o, const char *key, const char **out, char **error)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return exec_fail(error, "parameters.%s must be a string or null", key);
    *out = v->valuestring;
    return 0;
}

static int put_opt_string(aip_buf *b, const char *s)
{
    return s ? aip_json_put_string(b, s, strlen(s)) : aip_buf_puts(b, "null");
}

/* One MCPToolInfo object, UFO's ten keys in its field order, nulls included. */
static int put_tool_info(aip_buf *b, const exec_tool *t)
{
    const char *type = aip_tool_type_str(t->type);
    aip_buf key; /* UFO's make_tool_key: "<tool_type>::<tool_name>" */
    aip_buf_init(&key, 0);
    int rc = aip_buf_puts(&key, type);
    if (!rc)
        rc = aip_buf_puts(&key, "::");
    if (!rc)
        rc = aip_buf_puts(&key, t->name);
    if (!rc)
        rc = aip_buf_puts(b, "{\"tool_key\":");
    if (!rc)
        rc = aip_json_put_string(b, (const char *)key.data, key.len);
    aip_buf_free(&key);
    if (!rc)
        rc = aip_buf_puts(b, ",\"tool_name\":");
    if (!rc)
        rc = aip_json_put_string(b, t->name, strlen(t->name));
    if (!rc)
        rc = aip_buf_puts(b, ",\"title\":");
    if (!rc)
        rc = put_opt_string(b, t->title);
    if (!rc)
        rc = aip_buf_puts(b, ",\"namespace\":");
    if (!rc)
        rc = put_opt_string(b, t->ns);
    if (!rc)
        rc = aip_buf_puts(b, ",\"tool_type\":");
    if (!rc)
        rc = put_opt_string(b, type);
    if (!rc)
        rc = aip_buf_puts(b, ",\"description\":");
    if (!rc)
        rc = put_opt_string(b, t->description);
    const struct {
        const char *key, *json;
    } obj[] = {{",\"input_schema\":", t->input_schema},
               {",\"output_schema\":", t->output_schema},
               {",\"meta\":", t->meta},
               {",\"annotations\":", t->annotations}};
    for (size_t i = 0; !rc && i < sizeof obj / sizeof obj[0]; i++) {
        rc = aip_buf_puts(b, obj[i].key);
        if (!rc)
            rc = aip_buf_puts(b, obj[i].json ? obj[i].json : "null");
    }
    return rc ? rc : aip_buf_putc(b, '}');
}

int exec_tool_list_tools(const aip_tool_call *call, void *user, char **result, char **error)
{
    aip_executor *e = user;
    cJSON *o = params_parse(call, error);
    if (!o)
        return -1;
    const char *want_type = NULL, *want_ns = NULL;
    const cJSON *rm = cJSON_GetObjectItemCaseSensitive(o, "remove_meta");
    if (filter_param(o, "tool_type", &want_type, error) ||
        filter_param(o, "namespace", &want_ns, error)) {
        cJSON_Delete(o);
        return -1;
    }
    if (rm && !cJSON_IsBool(rm)) {
        cJSON_Delete(o);
        return exec_fail(error, "parameters.remove_meta must be a boolean");
    }
    bool remove_meta = !rm || cJSON_IsTrue(rm);
    aip_buf b;
    aip_buf_init(&b, 0);
    int rc = aip_buf_putc(&b, '[');
    bool first = true;
    aip_mutex_lock(&e->lock);
    for (size_t i = 0; !rc && i < e->n_tools; i++) {
        const exec_tool *t = e->tools[i];
        const char *type = aip_tool_type_str(t->type);
        if (!exec_tool_visible(e, i) || (want_type && strcmp(want_type, type) != 0) ||
            (want_ns && strcmp(want_ns, t->ns) != 0) || (remove_meta && t->is_meta))
            continue; /* an unknown filter value matches nothing: [] */
        if (!first)
            rc = aip_buf_putc(&b, ',');
        first = false;
        if (!rc)
            rc = put_tool_info(&b, t);
    }
    aip_mutex_unlock(&e->lock);
    cJSON_Delete(o);
    if (!rc)
        rc = aip_buf_putc(&b, ']');
    return exec_finish_result(rc, &b, result, error);
}

/* ---- read_file ------------------------------------------------------------------------------- */

/* The read root that the real path `real` lies in, or NULL. */
static const char *root_of(const aip_executor *e, const char *real)
{
    for (size_t i = 0; i < e->n_read_roots; i++) {
        const char *root = e->read_roots[i];
        size_t n = strlen(root);
        if (n == 1 && root[0] == '/')
            return real[0] == '/' ? root : NULL;
        if (strncmp(real, root, n) == 0 && (real[n] == 0 || real[n] == '/'))
            return root;
    }
    return NULL;
}

static bool path_inside(const aip_executor *e, const char *real)
{
    return root_of(e, real) != NULL;
}

_Atomic int exec_test_no_openat2;

/* The fallback: one openat() per component, never following a symlink. */
static int walk_nofollow(int dirfd, const char *rel, int flags, int *out)
{
    char buf[PATH_MAX];
    if (strlen(rel) >= sizeof buf)
        return -ENAMETOOLONG;
    snprintf(buf, sizeof buf, "%s", rel);
    int cur = dirfd;
    char *comp = buf;
    for (;;) {
        while (*comp == '/')
            comp++;
        char *end = comp + strcspn(comp, "/");
        char *next = end;
        while (*next == '/')
            next++;
        bool last = *next == 0;
        *end = 0;
        /* beneath, and only by names: never "." or ".." */
        bool named = *comp && strcmp(comp, ".") != 0 && strcmp(comp, "..") != 0;
        int how =
            last ? flags | O_NOFOLLOW | O_CLOEXEC : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        int fd = named ? openat(cur, comp, how) : -1;
        int err = named ? errno : EXDEV;
        if (cur != dirfd)
            close(cur);
        if (fd < 0)
            return -err;
        if (last) {
            *out = fd;
            return 0;
        }
        cur = fd;
        comp = next;
    }
}

int exec_open_beneath(int dirfd, const char *rel, int flags, int *out)
{
    *out = -1;
    if (!rel[0] || rel[0] == '/')
        return -EXDEV;
#ifdef HAVE_OPENAT2
    if (!atomic_load_explicit(&exec_test_no_openat2, memory_order_relaxed)) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC);
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
        if (fd >= 0) {
            *out = (int)fd;
            return 0;
        }
        /* no openat2: ENOSYS, or EPERM from a seccomp filter older than the call (the walk is
         * as strict, and an EPERM for any other reason comes back from it too) */
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
    }
#endif
    return walk_nofollow(dirfd, rel, flags, out);
}

/* Opens the read root `root` (a real path) as a directory, following no symlink on the way. */
static int open_root(const char *root, int *out)
{
    if (strcmp(root, "/") == 0) {
        *out = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        return *out < 0 ? -errno : 0;
    }
    int slash = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (slash < 0)
        return -errno;
    int rc = exec_open_beneath(slash, root + 1, O_PATH | O_DIRECTORY, out);
    close(slash);
    return rc;
}

/* The path the kernel has for an open fd, when /proc tells it; NULL otherwise. */
static char *fd_path(int fd)
{
    char link[64], buf[PATH_MAX + 1];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    if (n <= 0 || (size_t)n >= sizeof buf - 1)
        return NULL;
    buf[n] = 0;
    return aip_strdup(buf);
}

/* Opens `real` (a realpath inside the roots) as a regular file without following a symlink
 * (see the note at the top), and checks the open file: regular, a single link unless hard
 * links are allowed, and inside the roots by /proc's name for it. */
static int open_inside(const aip_executor *e, const char *real, const char *shown, int *fdp,
                       struct stat *st, char **error)
{
    const char *root = root_of(e, real);
    size_t rn = root ? strlen(root) : 0;
    const char *rel = !root ? "" : rn == 1 ? real + 1 : real[rn] == '/' ? real + rn + 1 : "";
    if (!rel[0])
        return exec_fail(error, "'%.300s' is not a regular file", shown);
    int dirfd = -1, fd = -1;
    int rc = open_root(root, &dirfd);
    if (!rc)
        rc = exec_open_beneath(dirfd, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK, &fd);
    if (dirfd >= 0)
        close(dirfd);
    if (rc == -ELOOP || rc == -ENOTDIR || rc == -EXDEV)
        return exec_fail(error,
                         "refused: '%.300s' is outside the allowed read roots (a symbolic link "
                         "appeared on its path while it was opened)",
                         shown);
    if (rc)
        return exec_fail(error, "cannot open '%.300s': %s", shown, strerror(-rc));
    if (fstat(fd, st) || !S_ISREG(st->st_mode)) {
        close(fd);
        return exec_fail(error, "'%.300s' is not a regular file", shown);
    }
    if (st->st_nlink > 1 && !e->read_allow_hardlinks) {
        unsigned long links = (unsigned long)st->st_nlink;
        close(fd);
        return exec_fail(error,
                         "refused: '%.300s' has %lu hard links, and a hard link can bring a file "
                         "from outside the read roots in (tools.read_file.allow_hardlinks)",
                         shown, links);
    }
    char *again = fd_path(fd);
    if (again && !path_inside(e, again)) {
        aip_free(again);
        close(fd);
        return exec_fail(error, "refused: '%.300s' is outside the allowed read roots", shown);
    }
    aip_free(again);
    *fdp = fd;
    return 0;
}

/* Reads up to max + 1 bytes (the extra byte only tells that the file is longer). */
static int read_some(int fd, char *buf, size_t max, size_t *got)
{
    size_t n = 0;
    while (n < max + 1) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *got = n;
    return 0;
}

/* Drops an incomplete UTF-8 sequence that truncation cut at the end of s[0..n). */
static size_t utf8_trim_tail(const char *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80)
            continue; /* a continuation byte: look further back for its lead */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

static int read_file_result(const char *real, const char *content, size_t len, uint64_t size,
                            bool truncated, char **result)
{
    aip_buf b;
    aip_buf_init(&b, 0);
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)size);
    int rc = aip_buf_puts(&b, "{\"path\":");
    if (!rc)
        rc = exec_json_put_text(&b, real, strlen(real));
    if (!rc)
        rc = aip_buf_puts(&b, ",\"size\":");
    if (!rc)
        rc = aip_buf_puts(&b, num);
    if (!rc)
        rc = aip_buf_puts(&b, ",\"content\":");
    if (!rc)
        rc = aip_json_put_string(&b, content, len);
    if (!rc)
        rc = aip_buf_puts(&b, truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
    if (rc || !(*result = exec_buf_take(&b))) {
        aip_buf_free(&b);
        return AIP_E_NOMEM;
    }
    return 0;
}

int exec_tool_read_file(const aip_tool_call *call, void *user, char **result, char **error)
{
    aip_executor *e = user;
    if (!e->n_read_roots)
        return exec_fail(error, "read_file is disabled: no read roots are configured");
    cJSON *o = params_parse(call, error);
    if (!o)
        return -1;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "path");
    if (!cJSON_IsString(p) || !p->valuestring[0]) {
        cJSON_Delete(o);
        return exec_fail(error, "parameters.path must be a non-empty string");
    }
    char *shown = aip_strdup(p->valuestring);
    cJSON_Delete(o);
    if (!shown)
        return exec_fail(error, "out of memory");

    /* A relative path is taken relative to the first root, never the agent's cwd. */
    char *joined = NULL;
    if (shown[0] != '/') {
        size_t n = strlen(e->read_roots[0]) + strlen(shown) + 2;
        if ((joined = aip_malloc(n)))
            snprintf(joined, n, "%s/%s", e->read_roots[0], shown);
    }
    int rc = 0, fd = -1;
    char *real = NULL, *buf = NULL;
    if (shown[0] != '/' && !joined) {
        rc = exec_fail(error, "out of memory");
        goto out;
    }
    real = realpath(joined ? joined : shown, NULL);
    if (!real) {
        rc = exec_fail(error, "cannot read '%.300s': %s", shown, strerror(errno));
        goto out;
    }
    if (!path_inside(e, real)) {
        rc = exec_fail(error, "refused: '%.300s' is outside the allowed read roots", shown);
        goto out;
    }
    struct stat st;
    if ((rc = open_inside(e, real, shown, &fd, &st, error)))
        goto out;
    if (!(buf = aip_malloc(e->read_max_bytes + 1))) {
        rc = exec_fail(error, "out of memory");
        goto out;
    }
    size_t got = 0;
    int err = read_some(fd, buf, e->read_max_bytes, &got);
    if (err) {
        rc = exec_fail(error, "cannot read '%.300s': %s", shown, strerror(-err));
        goto out;
    }
    bool truncated = got > e->read_max_bytes;
    size_t len = truncated ? utf8_trim_tail(buf, e->read_max_bytes) : got;
    /* NUL is valid UTF-8 but not allowed in our JSON text; both mean "not a text file". */
    if (memchr(buf, 0, len) || !aip_utf8_valid(buf, len, NULL)) {
        rc = exec_fail(error, "binary file: '%.300s' is not UTF-8 text", shown);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size > got ? (uint64_t)st.st_size : got;
    if (read_file_result(real, buf, len, size, truncated, result))
        rc = exec_fail(error, "out of memory");
out:
    if (fd >= 0)
        close(fd);
    aip_free(buf);
    free(real); /* from realpath(): malloc, not aip_malloc */
    aip_free(joined);
    aip_free(shown);
    return rc;
}
