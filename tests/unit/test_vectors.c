/* SPDX-License-Identifier: MIT */
/*
 * test_vectors — runs the codecs over the test-vector corpus in tests/vectors/ (see its
 * README.md). The directories are walked, so a new vector is picked up without touching this
 * file; the minimum counts below only make sure an empty or missing folder cannot pass.
 *
 *   valid/<envelope>/ X.json  decode -> encode -> decode round trips in both encodings, and the
 *                             <type>_full / <type>_lean pairs decode to the same message
 *   valid/<envelope>/ X.bin   hand-encoded protobuf: decodes to the same message as X.json
 *   malformed/MANIFEST.tsv    each frame fails with exactly that code and a reason naming it
 *   invalid_actions/MANIFEST.tsv  each command decodes, with exactly those actions marked invalid
 *
 * Failures are collected (one line each on stderr) so one run shows every broken vector.
 */
#include <aip/aip.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AIP_VECTORS_DIR
#error "AIP_VECTORS_DIR must name tests/vectors"
#endif

/* Minimum numbers of vectors: a safety net against an empty or misplaced corpus. */
#define MIN_VALID_JSON_PER_ENVELOPE 20
#define MIN_VALID_PROTO_TWINS       6
#define MIN_MALFORMED_JSON          100
#define MIN_MALFORMED_PROTO         35
#define MIN_INVALID_ACTION_ROWS     20

/* ---- failure collection ------------------------------------------------------------------- */

static unsigned g_failures;
static unsigned g_checked;

__attribute__((format(printf, 1, 2))) static void failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_failures++;
}

#define FACT(name, cond)                                                         \
    do {                                                                         \
        g_checked++;                                                             \
        if (!(cond))                                                             \
            failf("%s: expected %s (test_vectors.c:%d)", name, #cond, __LINE__); \
    } while (0)

static void begin(void)
{
    g_failures = 0;
    g_checked = 0;
}

static void end(const char *what)
{
    print_message("%s: %u checks, %u failures\n", what, g_checked, g_failures);
    assert_int_equal(g_failures, 0);
}

/* ---- files and folders -------------------------------------------------------------------- */

/* Reads a whole file into an allocation of exactly its size (no terminating NUL, so a decoder
 * that reads past the frame is caught by ASan). *len gets the size. NULL when unreadable. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    uint8_t *exact = malloc(n ? n : 1);
    if (exact)
        memcpy(exact, buf, n);
    free(buf);
    *len = n;
    return exact;
}

static char *read_text(const char *path)
{
    size_t n;
    uint8_t *b = read_file(path, &n);
    if (!b)
        return NULL;
    char *t = malloc(n + 1);
    if (t) {
        memcpy(t, b, n);
        t[n] = 0;
    }
    free(b);
    return t;
}

static void vpath(char *out, size_t out_len, const char *sub, const char *name)
{
    int n = snprintf(out, out_len, "%s/%s/%s", AIP_VECTORS_DIR, sub, name);
    assert_true(n > 0 && (size_t)n < out_len);
}

typedef struct names {
    char **v;
    size_t n;
} names;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The regular files of tests/vectors/<sub> ending in suffix (NULL: all but dot files and
 * MANIFEST.tsv), sorted. */
static names list_dir(const char *sub, const char *suffix)
{
    names r = {NULL, 0};
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s/%s", AIP_VECTORS_DIR, sub);
    assert_true(n > 0 && (size_t)n < sizeof dir);
    DIR *d = opendir(dir);
    if (!d) {
        failf("cannot open the vector folder %s", dir);
        return r;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "MANIFEST.tsv") == 0)
            continue;
        if (suffix && !ends_with(e->d_name, suffix))
            continue;
        char **nv = realloc(r.v, (r.n + 1) * sizeof *nv);
        assert_non_null(nv);
        r.v = nv;
        r.v[r.n] = strdup(e->d_name);
        assert_non_null(r.v[r.n]);
        r.n++;
    }
    closedir(d);
    if (r.n)
        qsort(r.v, r.n, sizeof *r.v, cmp_str);
    return r;
}

static void names_free(names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ---- manifests: tab-separated, '#' comments -------------------------------------------------- */

#define MAX_COLS 5

typedef struct row {
    char *col[MAX_COLS];
    size_t ncol;
    unsigned line;
} row;

typedef struct manifest {
    char *text;
    row *rows;
    size_t n;
} manifest;

static manifest manifest_load(const char *sub, size_t want_cols)
{
    manifest m = {NULL, NULL, 0};
    char path[4096];
    vpath(path, sizeof path, sub, "MANIFEST.tsv");
    m.text = read_text(path);
    if (!m.text) {
        failf("cannot read %s", path);
        return m;
    }
    unsigned line = 0;
    for (char *p = m.text; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        line++;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r')
            p[--l] = 0;
        if (l && p[0] != '#') {
            row r = {{NULL}, 0, line};
            for (char *c = p; c && r.ncol < MAX_COLS;) {
                char *tab = strchr(c, '\t');
                if (tab)
                    *tab = 0;
                r.col[r.ncol++] = c;
                c = tab ? tab + 1 : NULL;
            }
            if (r.ncol != want_cols) {
                failf("%s/MANIFEST.tsv:%u: %zu columns, want %zu", sub, line, r.ncol, want_cols);
            } else {
                row *nr = realloc(m.rows, (m.n + 1) * sizeof *nr);
                assert_non_null(nr);
                m.rows = nr;
                m.rows[m.n++] = r;
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    return m;
}

static void manifest_free(manifest *m)
{
    free(m->rows);
    free(m->text);
    memset(m, 0, sizeof *m);
}

/* Every file of the folder is named by some row, and every row names an existing file. */
static void manifest_covers_folder(const char *sub, const manifest *m)
{
    names files = list_dir(sub, NULL);
    for (size_t i = 0; i < files.n; i++) {
        if (strcmp(files.v[i], "README.md") == 0)
            continue;
        bool found = false;
        for (size_t k = 0; k < m->n && !found; k++)
            found = strcmp(m->rows[k].col[0], files.v[i]) == 0;
        g_checked++;
        if (!found)
            failf("%s/%s: not listed in %s/MANIFEST.tsv", sub, files.v[i], sub);
    }
    for (size_t k = 0; k < m->n; k++) {
        bool found = false;
        for (size_t i = 0; i < files.n && !found; i++)
            found = strcmp(m->rows[k].col[0], files.v[i]) == 0;
        if (!found)
            failf("%s/MANIFEST.tsv:%u: no such file %s", sub, m->rows[k].line, m->rows[k].col[0]);
    }
    names_free(&files);
}

/* ---- codec helpers ------------------------------------------------------------------------ */

static aip_encoding encoding_of(const char *name)
{
    return ends_with(name, ".bin") ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
}

/* Decodes tests/vectors/<sub>/<name> (encoding from the extension) into m. */
static int load(const char *sub, aip_envelope env, const char *name, aip_msg *m,
                aip_decode_error *err)
{
    char path[4096];
    vpath(path, sizeof path, sub, name);
    size_t len = 0;
    uint8_t *buf = read_file(path, &len);
    memset(m, 0, sizeof *m);
    memset(err, 0, sizeof *err);
    if (!buf) {
        failf("%s/%s: cannot read", sub, name);
        return AIP_E_IO;
    }
    int rc = aip_decode(encoding_of(name), env, buf, len, NULL, m, err);
    free(buf);
    return rc;
}

/* Decodes a valid vector; on failure says why and returns false (m is then cleared). */
static bool load_valid(const char *sub, aip_envelope env, const char *name, aip_msg *m)
{
    aip_decode_error err;
    int rc = load(sub, env, name, m, &err);
    if (rc) {
        failf("%s/%s: decode failed: %s: %s", sub, name, aip_strerror(rc), err.reason);
        aip_msg_clear(m);
        return false;
    }
    return true;
}

static bool encode(aip_encoding enc, const aip_msg *m, aip_buf *out, const char *what)
{
    char why[200] = "";
    aip_buf_init(out, 0);
    int rc = aip_encode_why(enc, m, out, why, sizeof why);
    if (rc) {
        failf("%s: %s encode failed: %s: %s", what, enc == AIP_ENCODING_JSON ? "JSON" : "protobuf",
              aip_strerror(rc), why);
        aip_buf_free(out);
        return false;
    }
    return true;
}

static bool same_bytes(const aip_buf *a, const aip_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool decode_buf(aip_encoding enc, aip_envelope env, const aip_buf *b, aip_msg *m,
                       const char *what)
{
    aip_decode_error err;
    memset(m, 0, sizeof *m);
    int rc = aip_decode(enc, env, b->data ? (const void *)b->data : "", b->len, NULL, m, &err);
    if (rc) {
        failf("%s: re-decoding our own %s failed: %s: %s", what,
              enc == AIP_ENCODING_JSON ? "JSON" : "protobuf", aip_strerror(rc), err.reason);
        aip_msg_clear(m);
        return false;
    }
    return true;
}

static bool str_is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

static bool has(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

static bool buf_has(const aip_buf *b, const char *part)
{
    size_t n = strlen(part);
    for (size_t i = 0; b->data && i + n <= b->len; i++)
        if (memcmp(b->data + i, part, n) == 0)
            return true;
    return false;
}

static const char *env_dir(aip_envelope env)
{
    return env == AIP_ENVELOPE_SERVER ? "valid/server" : "valid/client";
}

/* The type a valid vector's file name announces: the longest wire name that, followed by
 * '_', starts the file name ("task_end_full.json" -> task_end). */
static aip_msg_type type_of_name(const char *name)
{
    aip_msg_type best = AIP_MSG_NONE;
    size_t best_len = 0;
    for (int t = 1; t < AIP_MSG_TYPE_COUNT_; t++) {
        const char *s = aip_msg_type_str((aip_msg_type)t);
        size_t n = s ? strlen(s) : 0;
        if (n > best_len && strncmp(name, s, n) == 0 && name[n] == '_') {
            best = (aip_msg_type)t;
            best_len = n;
        }
    }
    return best;
}

/* ---- valid vectors ------------------------------------------------------------------------ */

/* The round trips every valid message must survive. m1 is the decoded vector. */
static void round_trips(aip_envelope env, const char *what, const aip_msg *m1)
{
    char why[200] = "";
    unsigned before = g_failures;
    g_checked++;
    if (aip_msg_validate(m1, why, sizeof why))
        failf("%s: decoded model does not validate: %s", what, why);
    for (size_t i = 0; i < m1->n_actions; i++)
        if (m1->actions[i].invalid)
            failf("%s: action %zu decoded as invalid: %s", what, i, m1->actions[i].invalid);
    if (g_failures != before)
        return; /* it cannot be encoded: the round trips would only repeat the failure */

    aip_buf j1, j2, j3, p1, p3;
    aip_msg m2, m3;
    if (!encode(AIP_ENCODING_JSON, m1, &j1, what))
        return;
    /* JSON -> model -> JSON -> model */
    if (decode_buf(AIP_ENCODING_JSON, env, &j1, &m2, what)) {
        g_checked++;
        if (!aip_msg_equal(m1, &m2))
            failf("%s: JSON round trip changed the message", what);
        if (encode(AIP_ENCODING_JSON, &m2, &j2, what)) {
            g_checked++;
            if (!same_bytes(&j1, &j2))
                failf("%s: JSON encoding is not a fixed point", what);
            aip_buf_free(&j2);
        }
        aip_msg_clear(&m2);
    }
    /* JSON -> model -> protobuf -> model, and its JSON is the same bytes */
    if (encode(AIP_ENCODING_PROTO, m1, &p1, what)) {
        if (decode_buf(AIP_ENCODING_PROTO, env, &p1, &m3, what)) {
            g_checked++;
            if (!aip_msg_equal(m1, &m3))
                failf("%s: protobuf round trip changed the message", what);
            if (encode(AIP_ENCODING_JSON, &m3, &j3, what)) {
                g_checked++;
                if (!same_bytes(&j1, &j3))
                    failf("%s: JSON of (json->proto->model) differs from JSON of (json->model):\n"
                          "  %.*s\n  %.*s",
                          what, (int)j1.len, (const char *)j1.data, (int)j3.len,
                          (const char *)j3.data);
                aip_buf_free(&j3);
            }
            if (encode(AIP_ENCODING_PROTO, &m3, &p3, what)) {
                g_checked++;
                if (!same_bytes(&p1, &p3))
                    failf("%s: protobuf encoding is not a fixed point", what);
                aip_buf_free(&p3);
            }
            aip_msg_clear(&m3);
        }
        aip_buf_free(&p1);
    }
    aip_buf_free(&j1);
}

static void valid_envelope(aip_envelope env)
{
    const char *sub = env_dir(env);
    names files = list_dir(sub, ".json");
    bool full[AIP_MSG_TYPE_COUNT_] = {false}, lean[AIP_MSG_TYPE_COUNT_] = {false};
    char what[512];

    for (size_t i = 0; i < files.n; i++) {
        const char *name = files.v[i];
        snprintf(what, sizeof what, "%s/%s", sub, name);
        aip_msg m;
        if (!load_valid(sub, env, name, &m))
            continue;
        g_checked++;
        if (m.envelope != env)
            failf("%s: decoded with the wrong envelope", what);
        aip_msg_type t = type_of_name(name);
        g_checked++;
        if (t == AIP_MSG_NONE || t != m.type)
            failf("%s: file name says type \"%s\", frame has \"%s\"", what,
                  t ? aip_msg_type_str(t) : "?", aip_msg_type_str(m.type));
        else if (ends_with(name, "_full.json"))
            full[t] = true;
        else if (ends_with(name, "_lean.json"))
            lean[t] = true;

        /* err may be NULL */
        char path[4096];
        vpath(path, sizeof path, sub, name);
        size_t len;
        uint8_t *buf = read_file(path, &len);
        aip_msg again;
        memset(&again, 0, sizeof again);
        g_checked++;
        if (!buf || aip_json_decode(env, (const char *)buf, len, NULL, &again, NULL) != 0 ||
            !aip_msg_equal(&m, &again))
            failf("%s: decoding with err == NULL differs", what);
        aip_msg_clear(&again);
        free(buf);

        round_trips(env, what, &m);

        /* <type>_full.json and <type>_lean.json are the same message */
        if (ends_with(name, "_full.json")) {
            char lean_name[256];
            snprintf(lean_name, sizeof lean_name, "%.*s_lean.json",
                     (int)(strlen(name) - strlen("_full.json")), name);
            aip_msg l;
            if (load_valid(sub, env, lean_name, &l)) {
                g_checked++;
                if (!aip_msg_equal(&m, &l))
                    failf("%s: not the same message as %s", what, lean_name);
                aip_msg_clear(&l);
            }
        }
        aip_msg_clear(&m);
    }

    for (int t = 1; t < AIP_MSG_TYPE_COUNT_; t++) {
        if (!aip_msg_type_allowed(env, (aip_msg_type)t))
            continue;
        g_checked++;
        if (!full[t] || !lean[t])
            failf("%s: missing %s_full.json or %s_lean.json", sub,
                  aip_msg_type_str((aip_msg_type)t), aip_msg_type_str((aip_msg_type)t));
    }
    print_message("%s: %zu JSON vectors\n", sub, files.n);
    g_checked++;
    if (files.n < MIN_VALID_JSON_PER_ENVELOPE)
        failf("%s: only %zu JSON vectors, expected at least %d", sub, files.n,
              MIN_VALID_JSON_PER_ENVELOPE);
    names_free(&files);
}

static void test_valid_client(void **state)
{
    (void)state;
    begin();
    valid_envelope(AIP_ENVELOPE_CLIENT);
    end("valid client");
}

static void test_valid_server(void **state)
{
    (void)state;
    begin();
    valid_envelope(AIP_ENVELOPE_SERVER);
    end("valid server");
}

/* valid/<env>/X.bin (hand-encoded by gen_proto_vectors.py) decodes to the message of X.json. */
static void test_valid_proto_twins(void **state)
{
    (void)state;
    begin();
    size_t total = 0;
    for (int e = 0; e < 2; e++) {
        aip_envelope env = e ? AIP_ENVELOPE_SERVER : AIP_ENVELOPE_CLIENT;
        const char *sub = env_dir(env);
        names bins = list_dir(sub, ".bin");
        for (size_t i = 0; i < bins.n; i++) {
            char what[512], twin[256];
            snprintf(what, sizeof what, "%s/%s", sub, bins.v[i]);
            snprintf(twin, sizeof twin, "%.*s.json", (int)(strlen(bins.v[i]) - 4), bins.v[i]);
            total++;
            aip_msg pm, jm;
            if (!load_valid(sub, env, bins.v[i], &pm))
                continue;
            round_trips(env, what, &pm);
            if (load_valid(sub, env, twin, &jm)) {
                g_checked++;
                if (!aip_msg_equal(&pm, &jm))
                    failf("%s: not the same message as %s", what, twin);
                aip_buf a, b;
                if (encode(AIP_ENCODING_JSON, &pm, &a, what)) {
                    if (encode(AIP_ENCODING_JSON, &jm, &b, twin)) {
                        g_checked++;
                        if (!same_bytes(&a, &b))
                            failf("%s: JSON differs from that of %s", what, twin);
                        aip_buf_free(&b);
                    }
                    aip_buf_free(&a);
                }
                aip_msg_clear(&jm);
            }
            aip_msg_clear(&pm);
        }
        names_free(&bins);
    }
    print_message("valid protobuf twins: %zu\n", total);
    g_checked++;
    if (total < MIN_VALID_PROTO_TWINS)
        failf("only %zu valid .bin vectors, expected at least %d", total, MIN_VALID_PROTO_TWINS);
    end("valid protobuf twins");
}

/* ---- specific facts about specific vectors ----------------------------------------------------
 */

static void facts_client(void)
{
    aip_msg m;
    const char *sub = "valid/client";
    const aip_envelope C = AIP_ENVELOPE_CLIENT;

    if (load_valid(sub, C, "register_full.json", &m)) {
        const char *n = "register_full";
        FACT(n, m.type == AIP_MSG_REGISTER && m.status == AIP_STATUS_OK);
        FACT(n, m.client_type == AIP_CLIENT_DEVICE);
        FACT(n, str_is(m.client_id, "linux-agent-7f3a"));
        FACT(n, !m.has_action_results && !m.session_id && !m.target_id && !m.request);
        /* free-form values are kept as text: numbers exactly as sent */
        FACT(n, has(m.metadata, "\"memory_total_gb\":32.0,"));
        FACT(n, has(m.metadata, "\"load_avg\":[0.52,-0.5,1e-07]"));
        FACT(n, has(m.metadata, "\"free_gb\":6.02E23"));
        FACT(n, has(m.metadata, "\"uptime_s\":123456789012,"));
        FACT(n, has(m.metadata, "\"rack\":null,"));
        FACT(n, has(m.metadata, "\"custom_metadata\":{\"site\":\"Montr\xc3\xa9"
                                "al\""));
        FACT(n, has(m.metadata,
                    "\"owner\":\"\xc3\xa9quipe \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\""));
        FACT(n, has(m.metadata, "\"schema_version\":\"1.0\""));
        aip_buf j;
        if (encode(AIP_ENCODING_JSON, &m, &j, n)) {
            FACT(n, buf_has(&j, "\"memory_total_gb\":32.0,"));
            FACT(n, j.len > 0 && j.data[0] == '{' &&
                        buf_has(&j, "{\"type\":\"register\",\"status\":\"ok\","));
            aip_buf_free(&j);
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "register_constellation.json", &m)) {
        const char *n = "register_constellation";
        FACT(n, m.client_type == AIP_CLIENT_CONSTELLATION);
        FACT(n, str_is(m.target_id, "linux-agent-7f3a"));
        FACT(n, has(m.metadata, "\"type\":\"constellation_client\""));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "heartbeat_lean.json", &m)) {
        FACT("heartbeat_lean", m.client_type == AIP_CLIENT_DEVICE && !m.metadata);
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "heartbeat_client_type_null.json", &m)) {
        FACT("heartbeat_client_type_null", m.client_type == AIP_CLIENT_DEVICE);
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "task_full.json", &m)) {
        const char *n = "task_full";
        FACT(n, m.status == AIP_STATUS_CONTINUE && m.client_type == AIP_CLIENT_CONSTELLATION);
        FACT(n, str_is(m.session_id, "open_notepad@8c1f2b7e-4f4a-4d3c-9d6e-2a9f0e1b5c77"));
        /* escapes in a text field are decoded */
        FACT(n, str_is(m.request, "{\"actions\": [{\"tool_name\": \"execute_command\", "
                                  "\"parameters\": {\"command\": \"echo \\\"h\xc3\xa9llo\\\" > "
                                  "/tmp/out.txt\"}}]}"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "task_from_device.json", &m)) {
        const char *n = "task_from_device";
        FACT(n, str_is(m.task_name, "\xe5\x86\x99\xe4\xb8\x80\xe5\xb0\x81\xe4\xbf\xa1"));
        FACT(n, has(m.request, "\xe2\x80\x9c\xe4\xbd\xa0\xe5\xa5\xbd"));      /* “你好 */
        FACT(n, has(m.request, "\xf0\x9f\x98\x80 \xe2\x80\x94 caf\xc3\xa9")); /* 😀 — café */
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "task_end_failed.json", &m)) {
        /* \uXXXX escapes, a surrogate pair, \/ \r \n \t \b \f */
        FACT("task_end_failed",
             str_is(m.error, "tool \xc3\xa9"
                             "chou\xc3\xa9: \xe4\xb8\xad\xe6\x96\x87 "
                             "\xf0\x9f\x98\x80 in /tmp/x\r\nline\ttwo \b\f end"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "command_results_full.json", &m)) {
        const char *n = "command_results_full";
        FACT(n, str_is(m.prev_response_id, "6b1f8e2a-7c3d-4e5f-9a0b-1c2d3e4f5a6b"));
        FACT(n, m.has_action_results && m.n_action_results == 5);
        if (m.n_action_results == 5) {
            const aip_result *r = m.action_results;
            FACT(n, r[0].status == AIP_RESULT_SUCCESS && str_is(r[0].ns, "LinuxCommandExecutor"));
            FACT(n, has(r[0].result, "\"stdout\":\"total 8\\ndrwxrwxrwt"));
            FACT(n, r[1].status == AIP_RESULT_SUCCESS && has(r[1].result, "\"cpu_count\":8,"));
            FACT(n, r[2].status == AIP_RESULT_FAILURE && has(r[2].error, "status 127"));
            FACT(n, has(r[2].result, "\"elapsed_s\":32.0}"));
            for (int k = 3; k < 5; k++) {
                FACT(n, r[k].status == AIP_RESULT_SKIPPED);
                FACT(n, str_is(r[k].error, "Skipped due to previous failure (early_exit=True)."));
                FACT(n, r[k].result == NULL && r[k].ns == NULL && r[k].call_id != NULL);
            }
            FACT(n, str_is(r[4].call_id, "call_4f0d6052-3e78-4d42-c165-9a1e3c7f5d84"));
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "command_results_values.json", &m)) {
        const char *n = "command_results_values";
        FACT(n, m.n_action_results == 10);
        if (m.n_action_results == 10) {
            const aip_result *r = m.action_results;
            /* a list */
            FACT(n, str_is(r[0].result, "[1,-0.5,32.0,1e-07,6.02E23,18446744073709551616,"
                                        "-9223372036854775809,\"x\",null,true,false,{},[],"
                                        "{\"a\":null}]"));
            /* a string, escapes kept verbatim */
            FACT(n, str_is(r[1].result, "\"plain text with \\t tab, \\\"quotes\\\", back\\\\slash, "
                                        "a \\/ slash and \\u00e9\\ud83d\\ude00\""));
            /* numbers */
            FACT(n, str_is(r[2].result, "42"));
            FACT(n, str_is(r[3].result, "-0.5"));
            FACT(n, str_is(r[4].result, "123456789012345678901234567890"));
            FACT(n, r[5].status == AIP_RESULT_NONE && r[5].result == NULL);
            FACT(n, str_is(r[6].result, "true"));
            FACT(n, str_is(r[8].result, "{}") && str_is(r[9].result, "[]"));
            FACT(n, r[9].call_id == NULL);
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "command_results_empty.json", &m)) {
        const char *n = "command_results_empty";
        FACT(n, m.has_action_results && m.n_action_results == 0);
        aip_buf j;
        if (encode(AIP_ENCODING_JSON, &m, &j, n)) {
            FACT(n, buf_has(&j, "\"action_results\":[]"));
            aip_buf_free(&j);
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "device_info_response_full.json", &m)) {
        const char *n = "device_info_response_full";
        FACT(n, str_is(m.prev_response_id, "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"));
        FACT(n, has(m.metadata, "{\"system_info\":{\"device_id\":\"linux-agent-7f3a\",\"platform\":"
                                "\"linux\",\"os_version\":"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "register_id_max.json", &m)) {
        const char *n = "register_id_max";
        FACT(n, m.client_id && strlen(m.client_id) == AIP_ID_MAX);
        FACT(n, m.session_id && strlen(m.session_id) == AIP_ID_MAX); /* 128 x "é" */
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "error_empty_strings.json", &m)) {
        const char *n = "error_empty_strings";
        FACT(n, str_is(m.error, "") && str_is(m.session_id, "") && str_is(m.request, ""));
        FACT(n, str_is(m.metadata, "{}"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "heartbeat_whitespace.json", &m)) {
        const char *n = "heartbeat_whitespace";
        FACT(n, str_is(m.client_id, "linux-agent-7f3a") && m.status == AIP_STATUS_OK);
        FACT(n, m.has_action_results && m.n_action_results == 0);
        /* inner whitespace of a free-form value is part of its text; the outer is not */
        FACT(n, str_is(m.metadata, "{ \"load\" : [ 0.5 , 1e-07 ] ,\n\t\"note\" : null }"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "heartbeat_unknown_keys.json", &m)) {
        static const char plain[] = "{\"type\":\"heartbeat\",\"status\":\"ok\",\"client_id\":"
                                    "\"linux-agent-7f3a\",\"timestamp\":"
                                    "\"2026-11-22T06:32:42.000000+00:00\"}";
        aip_msg p;
        aip_decode_error err;
        memset(&p, 0, sizeof p);
        int rc = aip_json_decode(C, plain, strlen(plain), NULL, &p, &err);
        FACT("heartbeat_unknown_keys", rc == 0 && aip_msg_equal(&m, &p));
        aip_msg_clear(&p);
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "command_results_escaped_keys.json", &m)) {
        const char *n = "command_results_escaped_keys";
        FACT(n, m.n_action_results == 1 && m.action_results &&
                    str_is(m.action_results[0].result, "{\"v\":32.0}") &&
                    str_is(m.action_results[0].call_id, "c-esc"));
        FACT(n, str_is(m.metadata, "{\"k\":1.0}"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "register_proto_metadata.bin", &m)) {
        const char *n = "register_proto_metadata.bin";
        FACT(n, str_is(m.metadata, "{\"type\": \"constellation_client\", \"n\": 32.0, "
                                   "\"\xc3\xa9\": \"\\u00e9\"}"));
        FACT(n, str_is(m.request_id, "") && m.client_type == AIP_CLIENT_CONSTELLATION);
        aip_msg_clear(&m);
    }
    if (load_valid(sub, C, "heartbeat_proto_unknown_fields.bin", &m)) {
        FACT("heartbeat_proto_unknown_fields.bin", m.type == AIP_MSG_HEARTBEAT); /* last wins */
        aip_msg_clear(&m);
    }
}

static void facts_server(void)
{
    aip_msg m;
    const char *sub = "valid/server";
    const aip_envelope S = AIP_ENVELOPE_SERVER;

    if (load_valid(sub, S, "command_full.json", &m)) {
        const char *n = "command_full";
        FACT(n, m.status == AIP_STATUS_CONTINUE && str_is(m.agent_name, "LinuxAgent"));
        FACT(n, str_is(m.response_id, "6b1f8e2a-7c3d-4e5f-9a0b-1c2d3e4f5a6b"));
        FACT(n, !m.has_messages && m.result == NULL);
        FACT(n, m.has_actions && m.n_actions == 5);
        if (m.n_actions == 5) {
            const aip_command *a = m.actions;
            for (int k = 0; k < 5; k++)
                FACT(n, a[k].call_id && strncmp(a[k].call_id, "call_", 5) == 0 && !a[k].invalid);
            FACT(n, str_is(a[0].tool_name, "execute_command") && a[0].tool_type == AIP_TOOL_ACTION);
            FACT(n, str_is(a[0].parameters, "{\"command\":\"ls -la /tmp\",\"timeout\":30.0,"
                                            "\"env\":{\"LANG\":\"C.UTF-8\"},\"cwd\":null}"));
            FACT(n, a[1].tool_type == AIP_TOOL_DATA_COLLECTION && a[1].parameters == NULL);
            FACT(n, has(a[2].parameters, "\"path\":\"/tmp/r\xc3\xa9sum\xc3\xa9.txt\""));
            FACT(n, has(a[2].parameters, "\"chunks\":[null,{},[]]"));
            FACT(n, str_is(a[3].parameters, "{\"x\":-0.5,\"y\":1e-07,\"scale\":6.02E23,"
                                            "\"id\":9007199254740993,\"button\":\"left\"}"));
            FACT(n, str_is(a[4].parameters, "{}"));
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_escapes.json", &m)) {
        const char *n = "command_escapes";
        FACT(n,
             str_is(m.user_request, "\"quoted\" \\ back / slash \xc3\xa9 \xf0\x9f\x98\x80 \x01"));
        FACT(n, m.n_actions == 1);
        if (m.n_actions == 1) {
            FACT(n, str_is(m.actions[0].call_id, "call-\xc3\xa9-/1"));
            /* free-form text keeps its escapes byte for byte */
            FACT(n, has(m.actions[0].parameters, "\"path\":\"\\/tmp\\/r\\u00e9sum\\u00e9.txt\""));
            FACT(n, has(m.actions[0].parameters, "\\u4e2d\\u6587 \\ud83d\\ude00 \\u001f\""));
        }
        aip_buf j;
        if (encode(AIP_ENCODING_JSON, &m, &j, n)) {
            FACT(n, buf_has(&j, "\"user_request\":\"\\\"quoted\\\" \\\\ back / slash \xc3\xa9 "
                                "\xf0\x9f\x98\x80 \\u0001\""));
            aip_buf_free(&j);
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_empty_actions.json", &m)) {
        const char *n = "command_empty_actions";
        FACT(n, m.has_actions && m.n_actions == 0);
        aip_buf j;
        if (encode(AIP_ENCODING_JSON, &m, &j, n)) {
            FACT(n, buf_has(&j, "\"actions\":[]"));
            aip_buf_free(&j);
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_null_actions.json", &m)) {
        const char *n = "command_null_actions";
        FACT(n, !m.has_actions && m.n_actions == 0 && m.actions == NULL);
        aip_buf j;
        if (encode(AIP_ENCODING_JSON, &m, &j, n)) {
            FACT(n, !buf_has(&j, "\"actions\"") && !buf_has(&j, ":null"));
            aip_buf_free(&j);
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_no_call_ids.json", &m)) {
        const char *n = "command_no_call_ids";
        FACT(n, m.n_actions == 2 && m.actions && !m.actions[0].call_id && !m.actions[1].call_id);
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_with_messages.json", &m)) {
        const char *n = "command_with_messages";
        FACT(n, m.has_messages && m.n_messages == 4);
        if (m.n_messages == 4) {
            FACT(n, str_is(m.messages[0], "Step 1: capture the screen"));
            FACT(n, str_is(m.messages[1], ""));
            FACT(n, str_is(m.messages[2],
                           "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87"));
            FACT(n, str_is(m.messages[3], "tab\there, quote \" and \\"));
        }
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "heartbeat_messages_empty.json", &m)) {
        FACT("heartbeat_messages_empty", m.has_messages && m.n_messages == 0);
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "heartbeat_full.json", &m)) {
        const char *n = "heartbeat_full";
        FACT(n, m.result == NULL && !m.has_actions && !m.has_messages && m.error == NULL);
        FACT(n, str_is(m.response_id, "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "heartbeat_unknown_keys.json", &m)) {
        const char *n = "heartbeat_unknown_keys";
        FACT(n, str_is(m.response_id, "r-unknown-keys") && !m.result && !m.session_id);
        FACT(n, !m.client_id && !m.metadata && !m.has_action_results); /* other envelope's keys */
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "task_end_full.json", &m)) {
        const char *n = "task_end_full";
        FACT(n, m.status == AIP_STATUS_COMPLETED);
        /* result: a list of UFO's shape */
        FACT(n, m.result && strncmp(m.result, "[{\"request\":\"{\\\"actions\\\": ", 27) == 0);
        FACT(n, has(m.result, "\"result\":[{\"status\":\"skipped\",\"error\":\"Skipped due to "
                              "previous failure (early_exit=True).\",\"result\":null,"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "task_end_cancelled.json", &m)) {
        const char *n = "task_end_cancelled";
        FACT(n, m.status == AIP_STATUS_FAILED && m.result == NULL);
        FACT(n, str_is(m.error, "Task was cancelled because target device disconnected"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "task_end_result_string.json", &m)) {
        /* result: a string */
        FACT("task_end_result_string",
             str_is(m.result, "\"free text is not supported: \\\"open notepad\\\"\""));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "task_end_result_number.json", &m)) {
        FACT("task_end_result_number", str_is(m.result, "6.02E23")); /* result: a number */
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "device_info_response_full.json", &m)) {
        const char *n = "device_info_response_full";
        /* result: an object, UFO's eleven fields first */
        FACT(n, m.result && strncmp(m.result,
                                    "{\"device_id\":\"linux-agent-7f3a\",\"platform\":"
                                    "\"linux\",",
                                    45) == 0);
        FACT(n, has(m.result, "\"memory_total_gb\":32.0,") &&
                    has(m.result, "\"platform_type\":\"computer\",\"schema_version\":\"1.0\","));
        FACT(n, str_is(m.response_id, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "device_info_response_unknown.json", &m)) {
        FACT("device_info_response_unknown",
             m.status == AIP_STATUS_OK &&
                 str_is(m.result, "{\"error\":\"Device ghost-device not found\"}"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "device_info_response_escaped_keys.json", &m)) {
        const char *n = "device_info_response_escaped_keys";
        FACT(n, m.type == AIP_MSG_DEVICE_INFO_RESPONSE && m.status == AIP_STATUS_OK);
        FACT(n, str_is(m.result, "{\"device_id\":\"linux-agent-7f3a\",\"cpu_count\":8,"
                                 "\"memory_total_gb\":32.0}"));
        FACT(n, str_is(m.response_id, "r-escaped-keys"));
        FACT(n, m.n_messages == 1 && m.messages && str_is(m.messages[0], "m\xc3\xa9"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_escaped_keys.json", &m)) {
        const char *n = "command_escaped_keys";
        FACT(n, m.n_actions == 1 && m.actions &&
                    str_is(m.actions[0].tool_name, "execute_command") &&
                    str_is(m.actions[0].parameters, "{\"command\":\"ls\",\"t\":1.50}") &&
                    m.actions[0].tool_type == AIP_TOOL_ACTION &&
                    str_is(m.actions[0].call_id, "c-esc"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "error_correlated.json", &m)) {
        const char *n = "error_correlated";
        FACT(n, m.status == AIP_STATUS_ERROR && str_is(m.session_id, "open_notepad@1"));
        FACT(n, str_is(m.response_id, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"));
        aip_msg_clear(&m);
    }
    if (load_valid(sub, S, "command_proto.bin", &m)) {
        const char *n = "command_proto.bin";
        FACT(n, m.has_messages && m.n_messages == 0 && m.result == NULL); /* " null " = unset */
        FACT(n, m.n_actions == 3 && m.actions && m.actions[2].call_id == NULL);
        aip_msg_clear(&m);
    }
}

/* A decode failure keeps what correlation it could read, so a broken command can be answered. */
static void facts_correlation(void)
{
    aip_msg m;
    aip_decode_error err;
    int rc =
        load("malformed", AIP_ENVELOPE_SERVER, "json_server_command_missing_status.json", &m, &err);
    const char *n = "json_server_command_missing_status";
    FACT(n, rc == AIP_E_PROTOCOL && err.type == AIP_MSG_COMMAND);
    FACT(n, strcmp(err.session_id, "s-broken-command") == 0);
    FACT(n, strcmp(err.response_id, "r-broken-command") == 0);
    aip_msg_clear(&m);

    rc = load("malformed", AIP_ENVELOPE_SERVER, "proto_server_missing_status.bin", &m, &err);
    n = "proto_server_missing_status";
    FACT(n, rc == AIP_E_PROTOCOL && err.type == AIP_MSG_COMMAND);
    FACT(n, strcmp(err.session_id, "s-1") == 0 && strcmp(err.response_id, "r-1") == 0);
    aip_msg_clear(&m);

    /* a type of the other envelope is not reported as the frame's type */
    rc = load("malformed", AIP_ENVELOPE_SERVER, "json_server_type_register.json", &m, &err);
    FACT("json_server_type_register", rc == AIP_E_PROTOCOL && err.type == AIP_MSG_NONE);
    aip_msg_clear(&m);
}

static void test_facts(void **state)
{
    (void)state;
    begin();
    facts_client();
    facts_server();
    facts_correlation();
    end("facts");
}

/* ---- malformed ---------------------------------------------------------------------------- */

static bool code_of(const char *name, int *code)
{
    static const struct {
        const char *name;
        int code;
    } codes[] = {
        {"AIP_E_MALFORMED", AIP_E_MALFORMED}, {"AIP_E_PROTOCOL", AIP_E_PROTOCOL},
        {"AIP_E_TOO_LARGE", AIP_E_TOO_LARGE}, {"AIP_E_TOO_COMPLEX", AIP_E_TOO_COMPLEX},
        {"AIP_E_NOMEM", AIP_E_NOMEM},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(codes[i].name, name) == 0) {
            *code = codes[i].code;
            return true;
        }
    }
    return false;
}

static bool msg_is_cleared(const aip_msg *m)
{
    return m->type == AIP_MSG_NONE && m->status == AIP_STATUS_NONE && !m->session_id &&
           !m->task_name && !m->timestamp && !m->error && !m->client_id && !m->target_id &&
           !m->request && !m->action_results && !m->n_action_results && !m->request_id &&
           !m->prev_response_id && !m->metadata && !m->user_request && !m->actions &&
           !m->n_actions && !m->messages && !m->n_messages && !m->response_id && !m->result;
}

static void test_malformed(void **state)
{
    (void)state;
    begin();
    manifest man = manifest_load("malformed", 5);
    size_t n_json = 0, n_proto = 0;
    for (size_t i = 0; i < man.n; i++) {
        const row *r = &man.rows[i];
        const char *file = r->col[0], *envs = r->col[1], *encs = r->col[2], *codes = r->col[3],
                   *sub = r->col[4];
        aip_envelope env;
        aip_encoding enc;
        int want;
        if (strcmp(envs, "client") == 0)
            env = AIP_ENVELOPE_CLIENT;
        else if (strcmp(envs, "server") == 0)
            env = AIP_ENVELOPE_SERVER;
        else {
            failf("malformed/MANIFEST.tsv:%u: bad envelope \"%s\"", r->line, envs);
            continue;
        }
        if (strcmp(encs, "json") == 0)
            enc = AIP_ENCODING_JSON;
        else if (strcmp(encs, "proto") == 0)
            enc = AIP_ENCODING_PROTO;
        else {
            failf("malformed/MANIFEST.tsv:%u: bad encoding \"%s\"", r->line, encs);
            continue;
        }
        if (!code_of(codes, &want)) {
            failf("malformed/MANIFEST.tsv:%u: unknown code \"%s\"", r->line, codes);
            continue;
        }
        if (!*sub) {
            failf("malformed/MANIFEST.tsv:%u: empty reason substring", r->line);
            continue;
        }
        if (encoding_of(file) != enc)
            failf("malformed/MANIFEST.tsv:%u: %s is not a %s file", r->line, file, encs);
        enc == AIP_ENCODING_JSON ? n_json++ : n_proto++;

        aip_msg m;
        aip_decode_error err;
        int rc = load("malformed", env, file, &m, &err);
        g_checked++;
        if (rc == 0) {
            failf("malformed/%s: decoded successfully, expected %s (%s)", file, codes, sub);
        } else if (rc != want || err.code != rc) {
            failf("malformed/%s: got %s (err.code %s): %s; expected %s", file, aip_strerror(rc),
                  aip_strerror(err.code), err.reason, codes);
        } else if (!strstr(err.reason, sub)) {
            failf("malformed/%s: reason \"%s\" does not contain \"%s\"", file, err.reason, sub);
        } else if (!msg_is_cleared(&m) || m.envelope != env) {
            failf("malformed/%s: the message was not left cleared", file);
        }
        aip_msg_clear(&m);
    }
    manifest_covers_folder("malformed", &man);
    manifest_free(&man);
    print_message("malformed: %zu JSON, %zu protobuf\n", n_json, n_proto);
    g_checked++;
    if (n_json < MIN_MALFORMED_JSON || n_proto < MIN_MALFORMED_PROTO)
        failf("malformed: only %zu JSON / %zu protobuf rows, expected at least %d / %d", n_json,
              n_proto, MIN_MALFORMED_JSON, MIN_MALFORMED_PROTO);
    end("malformed");
}

/* ---- invalid actions ---------------------------------------------------------------------- */

static void test_invalid_actions(void **state)
{
    (void)state;
    begin();
    manifest man = manifest_load("invalid_actions", 4);
    names files = list_dir("invalid_actions", NULL);
    for (size_t f = 0; f < files.n; f++) {
        const char *file = files.v[f];
        if (strcmp(file, "README.md") == 0)
            continue;
        aip_msg m;
        aip_decode_error err;
        int rc = load("invalid_actions", AIP_ENVELOPE_SERVER, file, &m, &err);
        g_checked++;
        if (rc) {
            failf("invalid_actions/%s: decode failed: %s: %s (a command whose envelope is sound "
                  "must decode, its bad actions marked invalid)",
                  file, aip_strerror(rc), err.reason);
            continue;
        }
        FACT(file, m.type == AIP_MSG_COMMAND && m.response_id != NULL);
        bool *listed = calloc(m.n_actions ? m.n_actions : 1, sizeof *listed);
        assert_non_null(listed);
        for (size_t i = 0; i < man.n; i++) {
            const row *r = &man.rows[i];
            if (strcmp(r->col[0], file) != 0)
                continue;
            char *end = NULL;
            unsigned long idx = strtoul(r->col[1], &end, 10);
            g_checked++;
            if (!*r->col[1] || *end || !*r->col[2]) {
                failf("invalid_actions/MANIFEST.tsv:%u: bad row", r->line);
                continue;
            }
            if (idx >= m.n_actions) {
                failf("invalid_actions/%s: no action %lu (the frame has %zu)", file, idx,
                      m.n_actions);
                continue;
            }
            const aip_command *a = &m.actions[idx];
            listed[idx] = true;
            if (!a->invalid)
                failf("invalid_actions/%s: action %lu is not marked invalid (want \"%s\")", file,
                      idx, r->col[2]);
            else if (!strstr(a->invalid, r->col[2]))
                failf("invalid_actions/%s: action %lu: reason \"%s\" does not contain \"%s\"", file,
                      idx, a->invalid, r->col[2]);
            bool dash = strcmp(r->col[3], "-") == 0;
            if (dash ? a->call_id != NULL : !str_is(a->call_id, r->col[3]))
                failf("invalid_actions/%s: action %lu: call_id \"%s\", want %s", file, idx,
                      a->call_id ? a->call_id : "(null)", r->col[3]);
        }
        size_t n_invalid = 0;
        for (size_t i = 0; i < m.n_actions; i++) {
            if (listed[i]) {
                n_invalid++;
                continue;
            }
            g_checked++;
            if (m.actions[i].invalid)
                failf("invalid_actions/%s: action %zu is marked invalid (\"%s\") but no manifest "
                      "row says so",
                      file, i, m.actions[i].invalid);
        }
        free(listed);
        FACT(file, n_invalid > 0);
        /* a message holding invalid actions is never re-encoded */
        aip_buf out;
        aip_buf_init(&out, 0);
        FACT(file, aip_encode(AIP_ENCODING_JSON, &m, &out) == AIP_E_PROTOCOL && out.len == 0);
        FACT(file, aip_encode(AIP_ENCODING_PROTO, &m, &out) == AIP_E_PROTOCOL && out.len == 0);
        aip_buf_free(&out);
        aip_msg_clear(&m);
    }
    names_free(&files);
    manifest_covers_folder("invalid_actions", &man);
    print_message("invalid_actions: %zu rows\n", man.n);
    g_checked++;
    if (man.n < MIN_INVALID_ACTION_ROWS)
        failf("invalid_actions: only %zu rows, expected at least %d", man.n,
              MIN_INVALID_ACTION_ROWS);
    manifest_free(&man);
    end("invalid_actions");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_client),      cmocka_unit_test(test_valid_server),
        cmocka_unit_test(test_valid_proto_twins), cmocka_unit_test(test_facts),
        cmocka_unit_test(test_malformed),         cmocka_unit_test(test_invalid_actions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
