/* SPDX-License-Identifier: MIT */
/* System info for registration and device-info answers (see aip/device_info.h).
 *
 * Every probe here degrades instead of failing: a device that cannot read /proc/loadavg (a
 * hardened container, an odd kernel) must still register, so each reader leaves its neutral
 * value (0, "unknown") in place and the JSON is built from whatever was found. Only the caller's
 * own inputs (device id, features, tags) can make aip_device_info_collect() fail.
 *
 * Numbers are parsed and printed without strtod/printf("%f"): both follow LC_NUMERIC, and an
 * embedding program that calls setlocale() must not turn "0.52" into garbage or "15,62" into
 * invalid JSON. */
#include "aip/device_info.h"
#include "aip/buf.h"
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/internal/jscan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#define LOG_COMP "device_info"
/* Files under /proc that we read are a few KiB; the cap bounds a pathological routing table. */
#define READ_CAP (64u * 1024u)
#define HOST_MAX 256 /* > HOST_NAME_MAX (64) on Linux */

/* ---- bounded, locale-free text parsing ------------------------------------------------------ */

typedef struct span {
    const char *p;
    size_t n;
} span;

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses an unsigned decimal at *p and advances *p; false on no digits or overflow. */
static bool parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (!is_digit(*s))
        return false;
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return true;
}

/* Parses "12.345" at *p as hundredths (1235: half up on the third decimal) and advances *p. */
static bool parse_hundredths(const char **p, uint64_t *out)
{
    uint64_t whole = 0;
    if (!parse_u64(p, &whole) || whole > UINT64_MAX / 100 - 1)
        return false;
    const char *s = *p;
    uint64_t frac = 0;
    bool up = false;
    int digits = 0;
    if (*s == '.') {
        for (s++; is_digit(*s); s++, digits++) {
            if (digits < 2)
                frac = frac * 10 + (uint64_t)(*s - '0');
            else if (digits == 2)
                up = *s >= '5';
        }
    }
    if (digits == 1)
        frac *= 10; /* "0.5" is 50 hundredths */
    *p = s;
    *out = whole * 100 + frac + (up ? 1 : 0);
    return true;
}

/* A span that is all decimal digits (a /proc/net/route metric). */
static bool span_u64(span f, uint64_t *out)
{
    uint64_t v = 0;
    if (f.n == 0)
        return false;
    for (size_t i = 0; i < f.n; i++) {
        if (!is_digit(f.p[i]))
            return false;
        unsigned d = (unsigned)(f.p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A span of 1..8 hex digits (the kernel prints addresses and flags as %08X). */
static bool span_hex32(span f, uint32_t *out)
{
    uint32_t v = 0;
    if (f.n == 0 || f.n > 8)
        return false;
    for (size_t i = 0; i < f.n; i++) {
        char c = f.p[i];
        uint32_t d;
        if (is_digit(c))
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return false;
        v = (v << 4) | d;
    }
    *out = v;
    return true;
}

/* Splits [s, end) into at most max blank-separated fields; returns how many were found. */
static size_t split_fields(const char *s, const char *end, span *f, size_t max)
{
    size_t n = 0;
    while (n < max) {
        while (s < end && is_blank(*s))
            s++;
        if (s == end)
            break;
        f[n].p = s;
        while (s < end && !is_blank(*s))
            s++;
        f[n].n = (size_t)(s - f[n].p);
        n++;
    }
    return n;
}

/* Reads <root>/<rel> into buf (cap bytes, NUL included). /proc files report size 0, so read to
 * EOF; past the cap the last partial line is dropped so no parser sees half a record. */
static int read_text(const char *root, const char *rel, char *buf, size_t cap)
{
    char path[PATH_MAX];
    buf[0] = '\0';
    int n = snprintf(path, sizeof path, "%s/%s", root, rel);
    if (n < 0 || (size_t)n >= sizeof path)
        return AIP_E_INVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return AIP_E_NOT_FOUND;
    size_t len = 0;
    bool eof = false;
    while (len < cap - 1) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            (void)close(fd);
            buf[0] = '\0';
            return AIP_E_IO;
        }
        if (r == 0) {
            eof = true;
            break;
        }
        len += (size_t)r;
    }
    (void)close(fd);
    if (!eof) {
        while (len && buf[len - 1] != '\n')
            len--;
    }
    buf[len] = '\0';
    return 0;
}

/* ---- /proc parsers ------------------------------------------------------------------------- */

/* Finds "<key>:  <n> kB" at the start of a /proc/meminfo line. */
static bool meminfo_bytes(const char *text, const char *key, uint64_t *bytes)
{
    size_t kl = strlen(key);
    for (const char *line = text; *line;) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            const char *p = line + kl + 1;
            while (is_blank(*p))
                p++;
            uint64_t kb = 0;
            if (!parse_u64(&p, &kb) || kb > UINT64_MAX / 1024)
                return false;
            while (is_blank(*p))
                p++;
            if (strncmp(p, "kB", 2) != 0)
                return false;
            *bytes = kb * 1024;
            return true;
        }
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return false;
}

/* "0.52 0.58 0.59 1/234 5678" → three loads in hundredths; all or nothing. */
static bool parse_loadavg(const char *text, uint64_t load[3])
{
    const char *p = text;
    uint64_t v[3];
    for (int i = 0; i < 3; i++) {
        while (is_blank(*p))
            p++;
        if (!parse_hundredths(&p, &v[i]))
            return false;
        if (*p && !is_blank(*p) && *p != '\n')
            return false;
    }
    memcpy(load, v, sizeof v);
    return true;
}

/* The interface of the up, non-reject 0.0.0.0/0 route of lowest metric in /proc/net/route
 * ("Iface Destination Gateway Flags RefCnt Use Metric Mask ..."). The header line fails the hex
 * parse and so skips itself; so does any line that is not a route. */
static bool default_route_iface(const char *text, char *name, size_t name_len)
{
    bool found = false;
    uint64_t best = 0;
    const char *line = text;
    while (line && *line) {
        const char *eol = strchr(line, '\n');
        const char *end = eol ? eol : line + strlen(line);
        span f[8];
        uint32_t dest = 1, flags = 0, mask = 1;
        uint64_t metric = 0;
        if (split_fields(line, end, f, 8) == 8 && span_hex32(f[1], &dest) &&
            span_hex32(f[3], &flags) && span_u64(f[6], &metric) && span_hex32(f[7], &mask) &&
            dest == 0 && mask == 0 && (flags & RTF_UP) && !(flags & RTF_REJECT) &&
            f[0].n < name_len && (!found || metric < best)) {
            memcpy(name, f[0].p, f[0].n);
            name[f[0].n] = '\0';
            best = metric;
            found = true;
        }
        line = eol ? eol + 1 : NULL;
    }
    return found;
}

/* A dotted quad worth reporting: loopback and 0.0.0.0 tell the server nothing. */
static bool usable_ipv4(const char *s)
{
    struct in_addr a;
    if (!s || strnlen(s, INET_ADDRSTRLEN) >= INET_ADDRSTRLEN || inet_pton(AF_INET, s, &a) != 1)
        return false;
    uint32_t h = ntohl(a.s_addr);
    return h != 0 && (h >> 24) != 127;
}

/* ---- public pure helpers -------------------------------------------------------------------- */

static int format_hundredths(uint64_t h, char *buf, size_t len)
{
    if (!buf || len == 0)
        return AIP_E_INVAL;
    uint64_t whole = h / 100;
    unsigned frac = (unsigned)(h % 100);
    /* Python's repr of a 2-decimal float: shortest form, but never without the point */
    int n = frac % 10 == 0 ? snprintf(buf, len, "%" PRIu64 ".%u", whole, frac / 10)
                           : snprintf(buf, len, "%" PRIu64 ".%02u", whole, frac);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return AIP_E_INVAL;
    }
    return 0;
}

int aip_device_info_format_gb(uint64_t bytes, char *buf, size_t len)
{
    /* Exact integer arithmetic: bytes / 2^30 is exact in a double below 2^53 bytes, so Python's
     * round() sees the true quotient, and ties (15.625) go to even as in Python. Splitting off
     * the whole GiB first keeps rem * 100 < 2^37: no overflow for any uint64_t. */
    const uint64_t gib = UINT64_C(1) << 30;
    uint64_t scaled = (bytes & (gib - 1)) * 100;
    uint64_t h = (bytes >> 30) * 100 + (scaled >> 30);
    uint64_t r = scaled & (gib - 1);
    if (r > gib / 2 || (r == gib / 2 && (h & 1)))
        h++;
    return format_hundredths(h, buf, len);
}

int aip_device_info_pick_ip(const char *route_text, const aip_ifaddr *ifs, size_t n, char *out,
                            size_t len)
{
    if (!out || len == 0 || (!ifs && n))
        return AIP_E_INVAL;
    const char *pick = NULL;
    char dev[IFNAMSIZ];
    if (route_text && default_route_iface(route_text, dev, sizeof dev)) {
        for (size_t i = 0; i < n && !pick; i++)
            if (ifs[i].name && strcmp(ifs[i].name, dev) == 0 && usable_ipv4(ifs[i].ipv4))
                pick = ifs[i].ipv4;
    }
    /* no default route (or its interface has no IPv4): an isolated lab network still has one */
    for (size_t i = 0; i < n && !pick; i++)
        if (usable_ipv4(ifs[i].ipv4))
            pick = ifs[i].ipv4;
    if (!pick)
        pick = "unknown";
    size_t l = strlen(pick);
    if (l >= len) {
        out[0] = '\0';
        return AIP_E_INVAL;
    }
    memcpy(out, pick, l + 1);
    return 0;
}

/* ---- probes of the running system ---------------------------------------------------------- */

typedef struct facts {
    struct utsname u;
    bool have_uname;
    uint64_t cpus;
    uint64_t mem_total, mem_avail; /* bytes */
    char host[HOST_MAX];
    char ip[AIP_DEVICE_INFO_IP_MAX];
    uint64_t uptime_s;
    uint64_t load[3]; /* hundredths */
    uint64_t disk_total, disk_free;
} facts;

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* uname and gethostname bytes are not promised to be UTF-8; JSON text must be. */
static void utf8_sanitize(char *s)
{
    size_t n = strlen(s), off = 0, bad = 0;
    while (off < n && !aip_utf8_valid(s + off, n - off, &bad)) {
        s[off + bad] = '?';
        off += bad + 1;
    }
}

/* The IPv4 addresses of the interfaces that are up, handed to aip_device_info_pick_ip(). */
static void probe_ip(const char *route_text, char *out, size_t len)
{
    struct ifaddrs *head = NULL;
    aip_ifaddr *v = NULL;
    char(*ip)[INET_ADDRSTRLEN] = NULL;
    size_t n = 0, cap = 0;
    if (getifaddrs(&head) == 0) {
        for (struct ifaddrs *a = head; a; a = a->ifa_next)
            if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && (a->ifa_flags & IFF_UP))
                cap++;
    }
    if (cap) {
        v = aip_calloc(cap, sizeof *v);
        ip = aip_calloc(cap, sizeof *ip);
    }
    if (v && ip) {
        for (struct ifaddrs *a = head; a && n < cap; a = a->ifa_next) {
            if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !(a->ifa_flags & IFF_UP))
                continue;
            struct sockaddr_in sin;
            memcpy(&sin, a->ifa_addr, sizeof sin); /* sockaddr is not aligned for sockaddr_in */
            if (!inet_ntop(AF_INET, &sin.sin_addr, ip[n], INET_ADDRSTRLEN))
                continue;
            v[n].name = a->ifa_name;
            v[n].ipv4 = ip[n];
            n++;
        }
    }
    if (aip_device_info_pick_ip(route_text, v && ip ? v : NULL, v && ip ? n : 0, out, len))
        (void)snprintf(out, len, "unknown");
    aip_free(v);
    aip_free(ip);
    if (head)
        freeifaddrs(head);
}

static void probe_proc(const char *root, char *scratch, facts *f)
{
    if (read_text(root, "meminfo", scratch, READ_CAP + 1) == 0) {
        (void)meminfo_bytes(scratch, "MemTotal", &f->mem_total);
        (void)meminfo_bytes(scratch, "MemAvailable", &f->mem_avail);
    }
    if (read_text(root, "uptime", scratch, READ_CAP + 1) == 0) {
        const char *p = scratch;
        (void)parse_u64(&p, &f->uptime_s); /* whole seconds, as int(float) would give */
    }
    if (read_text(root, "loadavg", scratch, READ_CAP + 1) == 0)
        (void)parse_loadavg(scratch, f->load);
    int rc = read_text(root, "net/route", scratch, READ_CAP + 1);
    probe_ip(rc == 0 ? scratch : NULL, f->ip, sizeof f->ip);
}

static void probe_system(const char *disk_path, facts *f)
{
    f->have_uname = uname(&f->u) == 0;
    if (f->have_uname) {
        utf8_sanitize(f->u.version);
        utf8_sanitize(f->u.release);
        utf8_sanitize(f->u.machine);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    f->cpus = cpus > 0 ? (uint64_t)cpus : 1; /* the agent itself runs on at least one */
    if (gethostname(f->host, sizeof f->host - 1) == 0) {
        f->host[sizeof f->host - 1] = '\0'; /* POSIX leaves truncation unterminated */
        utf8_sanitize(f->host);
    } else {
        (void)snprintf(f->host, sizeof f->host, "unknown");
    }
    struct statvfs st;
    if (statvfs(disk_path, &st) == 0) {
        uint64_t unit = st.f_frsize ? st.f_frsize : st.f_bsize;
        f->disk_total = mul_sat(st.f_blocks, unit);
        f->disk_free = mul_sat(st.f_bavail, unit); /* what a non-root writer can use */
    }
}

/* ---- JSON writer ---------------------------------------------------------------------------- */

/* Sticky error: the first failure is kept and later writes are skipped, so the output code
 * reads as the field list it is. */
typedef struct jw {
    aip_buf *b;
    int rc;
    bool first;
} jw;

static void jw_raw(jw *w, const char *s, size_t n)
{
    if (!w->rc)
        w->rc = aip_buf_append(w->b, s, n);
}

static void jw_key(jw *w, const char *key)
{
    if (!w->first)
        jw_raw(w, ",", 1);
    w->first = false;
    if (!w->rc)
        w->rc = aip_json_put_string(w->b, key, strlen(key));
    jw_raw(w, ":", 1);
}

static void jw_str(jw *w, const char *key, const char *v)
{
    jw_key(w, key);
    if (!w->rc)
        w->rc = aip_json_put_string(w->b, v, strlen(v));
}

static void jw_u64(jw *w, const char *key, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRIu64, v);
    jw_key(w, key);
    jw_raw(w, t, n > 0 ? (size_t)n : 0);
}

static void jw_hundredths(jw *w, uint64_t h)
{
    char t[AIP_DEVICE_INFO_NUM_MAX];
    if (format_hundredths(h, t, sizeof t))
        (void)snprintf(t, sizeof t, "0.0");
    jw_raw(w, t, strlen(t));
}

static void jw_gb(jw *w, const char *key, uint64_t bytes)
{
    char t[AIP_DEVICE_INFO_NUM_MAX];
    if (aip_device_info_format_gb(bytes, t, sizeof t))
        (void)snprintf(t, sizeof t, "0.0");
    jw_key(w, key);
    jw_raw(w, t, strlen(t));
}

static void emit(jw *w, const aip_device_info_opts *o, const facts *f, span features, span custom)
{
    const char *unknown = "unknown";
    jw_raw(w, "{", 1);
    /* UFO's eleven, in UFO's order */
    jw_str(w, "device_id", o->device_id);
    jw_str(w, "platform", "linux");
    jw_str(w, "os_version", f->have_uname ? f->u.version : unknown); /* platform.version() */
    jw_u64(w, "cpu_count", f->cpus);
    jw_gb(w, "memory_total_gb", f->mem_total);
    jw_str(w, "hostname", f->host);
    jw_str(w, "ip_address", f->ip);
    jw_key(w, "supported_features");
    jw_raw(w, features.p, features.n);
    jw_str(w, "platform_type", "computer");
    jw_str(w, "schema_version", "1.0");
    jw_key(w, "custom_metadata");
    jw_raw(w, custom.p, custom.n);
    /* ours, which UFO ignores */
    jw_str(w, "kernel_release", f->have_uname ? f->u.release : unknown);
    jw_str(w, "arch", f->have_uname ? f->u.machine : unknown);
    jw_u64(w, "uptime_s", f->uptime_s);
    jw_key(w, "load_avg");
    jw_raw(w, "[", 1);
    for (int i = 0; i < 3; i++) {
        if (i)
            jw_raw(w, ",", 1);
        jw_hundredths(w, f->load[i]);
    }
    jw_raw(w, "]", 1);
    jw_gb(w, "memory_available_gb", f->mem_avail);
    jw_gb(w, "disk_total_gb", f->disk_total);
    jw_gb(w, "disk_free_gb", f->disk_free);
    jw_str(w, "agent_version", o->agent_version ? o->agent_version : aip_version());
    jw_raw(w, "}", 1);
}

/* ---- the caller's inputs -------------------------------------------------------------------- */

static void element_is_string(void *user, const aip_jscan_path *path, const char *value, size_t len)
{
    bool *all_strings = user;
    if (path->depth == 1 && (len == 0 || value[0] != '"'))
        *all_strings = false;
}

/* Validates caller-supplied JSON (root '[' or '{') and returns its trimmed text in *out, to be
 * embedded verbatim. UFO reads supported_features as a list of strings, so an array must hold
 * only strings. */
static int check_embedded(const char *what, const char *text, char root, span *out)
{
    size_t n = strlen(text);
    char why[160] = "";
    int rc = aip_json_validate(text, n, root == '{' ? AIP_JSON_OBJECT : AIP_JSON_ANY, NULL, why,
                               sizeof why);
    aip_json_trim(&text, &n);
    if (!rc && (n == 0 || text[0] != root)) {
        (void)snprintf(why, sizeof why, "not a JSON %s", root == '[' ? "array" : "object");
        rc = AIP_E_INVAL;
    }
    if (!rc && root == '[') {
        bool all_strings = true;
        aip_jscan s;
        memset(&s, 0, sizeof s);
        s.visit = element_is_string;
        s.user = &all_strings;
        s.visit_depth = 1;
        if (aip_jscan_run(&s, text, n) || !all_strings) {
            (void)snprintf(why, sizeof why, "an element is not a string");
            rc = AIP_E_INVAL;
        }
    }
    if (rc) {
        aip_log(AIP_LOG_WARN, LOG_COMP, "%s refused: %s", what, why);
        return AIP_E_INVAL;
    }
    out->p = text;
    out->n = n;
    return 0;
}

static int check_inputs(const aip_device_info_opts *o, span *features, span *custom)
{
    if (!aip_utf8_valid(o->device_id, strlen(o->device_id), NULL) ||
        (o->agent_version && !aip_utf8_valid(o->agent_version, strlen(o->agent_version), NULL))) {
        aip_log(AIP_LOG_WARN, LOG_COMP, "device_id or agent_version refused: not UTF-8");
        return AIP_E_INVAL;
    }
    int rc = check_embedded("supported_features", o->features_json ? o->features_json : "[]", '[',
                            features);
    if (!rc)
        rc = check_embedded("custom_metadata",
                            o->custom_metadata_json ? o->custom_metadata_json : "{}", '{', custom);
    return rc;
}

int aip_device_info_collect(const aip_device_info_opts *o, char **json_out)
{
    if (json_out)
        *json_out = NULL;
    if (!o || !o->device_id || !json_out)
        return AIP_E_INVAL;
    span features, custom;
    int rc = check_inputs(o, &features, &custom);
    if (rc)
        return rc;

    facts f;
    memset(&f, 0, sizeof f);
    (void)snprintf(f.ip, sizeof f.ip, "unknown");
    char *scratch = aip_malloc(READ_CAP + 1); /* one read buffer for every /proc file */
    if (!scratch)
        return AIP_E_NOMEM;
    probe_proc(o->proc_root ? o->proc_root : "/proc", scratch, &f);
    aip_free(scratch);
    probe_system(o->disk_path ? o->disk_path : "/", &f);

    aip_buf b;
    aip_buf_init(&b, 0);
    jw w = {&b, 0, true};
    emit(&w, o, &f, features, custom);
    if (!w.rc)
        w.rc = aip_buf_nul(&b);
    if (w.rc) {
        aip_buf_free(&b);
        return w.rc;
    }
    *json_out = (char *)aip_buf_steal(&b);
    return 0;
}
