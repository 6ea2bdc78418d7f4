/* SPDX-License-Identifier: MIT */
/* Unit tests: device_info (components/device_info) — system_info over fixture /proc trees
 * (tests/fixtures/device_info/), UFO's field order and JSON types, Python-style GiB figures,
 * the IP choice, and degradation when /proc is missing or garbled. */
#include <aip/aip.h>
#include <aip/device_info.h>

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aip_test_assert.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES AIP_SOURCE_DIR "/tests/fixtures/device_info"

static const char *const ufo_keys[] = {"device_id",      "platform",           "os_version",
                                       "cpu_count",      "memory_total_gb",    "hostname",
                                       "ip_address",     "supported_features", "platform_type",
                                       "schema_version", "custom_metadata"};
#define UFO_KEY_COUNT (sizeof ufo_keys / sizeof ufo_keys[0])

static char *read_fixture(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIXTURES, rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    assert_int_equal(fclose(f), 0);
    text[n] = '\0';
    return text;
}

/* Collects with the given proc root (NULL = the real /proc) and checks the result is valid JSON
 * by the library's own strict validator before anything else looks at it. */
static char *collect(const char *proc_root, const char *features, const char *tags)
{
    aip_device_info_opts o = {0};
    o.device_id = "dev-1";
    o.proc_root = proc_root;
    o.features_json = features;
    o.custom_metadata_json = tags;
    o.agent_version = "9.8.7";
    char *json = NULL;
    assert_int_equal(aip_device_info_collect(&o, &json), 0);
    assert_non_null(json);
    char why[200] = "";
    int rc = aip_json_validate(json, strlen(json), AIP_JSON_OBJECT, NULL, why, sizeof why);
    if (rc)
        fail_msg("invalid JSON (%s): %s", why, json);
    return json;
}

/* The raw text of a number field (cJSON would turn "16.0" into 16). */
static void assert_raw_number(const char *json, const char *key, const char *want)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t n = strspn(p, "0123456789.-eE+");
    if (n != strlen(want) || strncmp(p, want, n) != 0)
        fail_msg("%s is %.*s, want %s", key, (int)n, p, want);
}

static void assert_ufo_shape(const cJSON *root)
{
    const cJSON *it = root->child;
    for (size_t i = 0; i < UFO_KEY_COUNT; i++, it = it->next) {
        assert_non_null(it);
        assert_string_equal(it->string, ufo_keys[i]);
    }
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "device_id")));
    assert_string_equal(cJSON_GetObjectItem(root, "platform")->valuestring, "linux");
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "os_version")));
    const cJSON *cpus = cJSON_GetObjectItem(root, "cpu_count");
    assert_true(cJSON_IsNumber(cpus));
    assert_true(cpus->valuedouble == (double)cpus->valueint); /* an int */
    assert_true(cpus->valueint >= 1);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(root, "memory_total_gb")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "hostname")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "ip_address")));
    const cJSON *feat = cJSON_GetObjectItem(root, "supported_features");
    assert_true(cJSON_IsArray(feat));
    const cJSON *f;
    cJSON_ArrayForEach(f, feat) assert_true(cJSON_IsString(f));
    assert_string_equal(cJSON_GetObjectItem(root, "platform_type")->valuestring, "computer");
    assert_string_equal(cJSON_GetObjectItem(root, "schema_version")->valuestring, "1.0");
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(root, "custom_metadata")));
    /* extras, after UFO's eleven */
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "kernel_release")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "arch")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(root, "uptime_s")));
    const cJSON *load = cJSON_GetObjectItem(root, "load_avg");
    assert_true(cJSON_IsArray(load));
    assert_int_equal(cJSON_GetArraySize(load), 3);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(root, "memory_available_gb")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(root, "disk_total_gb")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(root, "disk_free_gb")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(root, "agent_version")));
}

static void test_fixture_proc_full(void **state)
{
    (void)state;
    char *json =
        collect(FIXTURES "/proc", "[\"echo\", \"sleep\"]", " {\"rack\": \"b7\", \"gpu\": true} ");
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_ufo_shape(root);
    assert_string_equal(cJSON_GetObjectItem(root, "device_id")->valuestring, "dev-1");
    /* 16384000 kB = 15.625 GiB exactly: Python's round() takes the tie to even */
    assert_raw_number(json, "memory_total_gb", "15.62");
    assert_raw_number(json, "memory_available_gb", "8.0");
    assert_raw_number(json, "uptime_s", "12345");
    assert_non_null(strstr(json, "\"load_avg\":[0.52,1.05,2.5]"));
    /* embedded verbatim (trimmed) */
    assert_non_null(strstr(json, "\"supported_features\":[\"echo\", \"sleep\"],"));
    assert_non_null(strstr(json, "\"custom_metadata\":{\"rack\": \"b7\", \"gpu\": true},"));
    assert_string_equal(cJSON_GetObjectItem(root, "agent_version")->valuestring, "9.8.7");
    const cJSON *feat = cJSON_GetObjectItem(root, "supported_features");
    assert_string_equal(cJSON_GetArrayItem(feat, 1)->valuestring, "sleep");
    cJSON_Delete(root);
    aip_free(json);
}

static void test_whole_gib_keeps_decimal_point(void **state)
{
    (void)state;
    char *json = collect(FIXTURES "/proc_whole", NULL, NULL);
    assert_raw_number(json, "memory_total_gb", "16.0"); /* not 16: UFO sends a float */
    assert_raw_number(json, "memory_available_gb", "16.0");
    assert_raw_number(json, "uptime_s", "7");
    assert_non_null(strstr(json, "\"load_avg\":[0.0,0.0,0.0]"));
    assert_non_null(strstr(json, "\"supported_features\":[],"));
    assert_non_null(strstr(json, "\"custom_metadata\":{},"));
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_ufo_shape(root);
    cJSON_Delete(root);
    aip_free(json);
}

static void test_format_gb_matches_python(void **state)
{
    (void)state;
    /* expected strings from CPython: repr(round(b / 1024**3, 2)) */
    static const struct {
        uint64_t bytes;
        const char *want;
    } cases[] = {
        {0, "0.0"},
        {1, "0.0"},
        {UINT64_C(1073741824), "1.0"},
        {UINT64_C(1610612736), "1.5"},
        {UINT64_C(25276026880), "23.54"},
        {UINT64_C(16777216000), "15.62"},
        {UINT64_C(17179869184), "16.0"},
        {UINT64_C(134217728), "0.12"}, /* 0.125: tie, to even */
        {UINT64_C(402653184), "0.38"}, /* 0.375: tie, to even */
        {UINT64_C(10737418), "0.01"},
        {UINT64_C(5368709), "0.0"},
        {UINT64_C(5368710), "0.01"},
        {UINT64_C(1099511627775), "1024.0"},
        {UINT64_C(1073741823999), "1000.0"},
        {UINT64_C(9007199254740991), "8388608.0"},
    };
    char buf[AIP_DEVICE_INFO_NUM_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(aip_device_info_format_gb(cases[i].bytes, buf, sizeof buf), 0);
        assert_string_equal(buf, cases[i].want);
    }
    /* the largest input still fits the documented size */
    assert_int_equal(aip_device_info_format_gb(UINT64_MAX, buf, sizeof buf), 0);
    assert_string_equal(buf, "17179869184.0");
    /* too small a buffer is refused, leaving an empty string */
    char tiny[4];
    assert_aip(aip_device_info_format_gb(UINT64_C(16777216000), tiny, sizeof tiny), AIP_E_INVAL);
    assert_string_equal(tiny, "");
    assert_aip(aip_device_info_format_gb(1, NULL, 8), AIP_E_INVAL);
}

static const aip_ifaddr lan_ifs[] = {
    {"lo", "127.0.0.1"},
    {"docker0", "172.17.0.1"},
    {"wlan0", "192.168.1.23"},
    {"eth0", "192.0.2.10"},
};

static void test_pick_ip_default_route(void **state)
{
    (void)state;
    char ip[AIP_DEVICE_INFO_IP_MAX];
    /* two default routes: eth0 (metric 100) beats wlan0 (600), though listed second */
    const char *route = read_fixture("proc/net/route");
    assert_int_equal(aip_device_info_pick_ip(route, lan_ifs, 4, ip, sizeof ip), 0);
    assert_string_equal(ip, "192.0.2.10");

    /* a single default route */
    const char *one = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                      "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0";
    assert_int_equal(aip_device_info_pick_ip(one, lan_ifs, 4, ip, sizeof ip), 0);
    assert_string_equal(ip, "192.168.1.23");

    /* a down (flags 0) or reject (0x0200) default route is not the default route */
    const char *down = "Iface Destination Gateway Flags RefCnt Use Metric Mask\n"
                       "wlan0 00000000 0101A8C0 0002 0 0 1 00000000 0 0 0\n"
                       "eth0 00000000 00000000 0201 0 0 0 00000000 0 0 0\n";
    assert_int_equal(aip_device_info_pick_ip(down, lan_ifs, 4, ip, sizeof ip), 0);
    assert_string_equal(ip, "172.17.0.1"); /* first non-loopback */
}

static void test_pick_ip_fallbacks(void **state)
{
    (void)state;
    char ip[AIP_DEVICE_INFO_IP_MAX];
    /* no default route → first non-loopback */
    const char *noroute = read_fixture("proc_noroute/net/route");
    assert_int_equal(aip_device_info_pick_ip(noroute, lan_ifs, 4, ip, sizeof ip), 0);
    assert_string_equal(ip, "172.17.0.1");

    /* default route's interface has no address in ifs → first non-loopback */
    const aip_ifaddr no_eth0[] = {{"lo", "127.0.0.1"}, {"wlan0", NULL}, {"tun0", "10.8.0.2"}};
    const char *route = read_fixture("proc/net/route");
    assert_int_equal(aip_device_info_pick_ip(route, no_eth0, 3, ip, sizeof ip), 0);
    assert_string_equal(ip, "10.8.0.2");

    /* only loopback (and junk) → "unknown" */
    const aip_ifaddr lo_only[] = {{"lo", "127.0.0.1"},
                                  {"lo", "127.1.2.3"},
                                  {"x", "0.0.0.0"},
                                  {"y", "not an ip"},
                                  {NULL, NULL}};
    assert_int_equal(aip_device_info_pick_ip(route, lo_only, 5, ip, sizeof ip), 0);
    assert_string_equal(ip, "unknown");
    assert_int_equal(aip_device_info_pick_ip(NULL, NULL, 0, ip, sizeof ip), 0);
    assert_string_equal(ip, "unknown");

    /* a default route through the loopback never yields 127.x */
    const char *via_lo = "lo 00000000 00000000 0001 0 0 0 00000000 0 0 0\n";
    assert_int_equal(aip_device_info_pick_ip(via_lo, lan_ifs, 4, ip, sizeof ip), 0);
    assert_string_equal(ip, "172.17.0.1");

    /* argument errors */
    assert_aip(aip_device_info_pick_ip(NULL, NULL, 2, ip, sizeof ip), AIP_E_INVAL);
    assert_aip(aip_device_info_pick_ip(NULL, lan_ifs, 4, NULL, 16), AIP_E_INVAL);
    char small[8]; /* "unknown" fits, an address does not */
    assert_aip(aip_device_info_pick_ip(route, lan_ifs, 4, small, sizeof small), AIP_E_INVAL);
    assert_int_equal(aip_device_info_pick_ip(NULL, NULL, 0, small, sizeof small), 0);
    assert_string_equal(small, "unknown");
}

static void test_pick_ip_malformed_route(void **state)
{
    (void)state;
    char ip[AIP_DEVICE_INFO_IP_MAX];
    static const char *const bad[] = {
        "",
        "\n\n\n",
        "Iface Destination Gateway Flags RefCnt Use Metric Mask\n",           /* header only */
        "eth0 00000000\n",                                                    /* truncated line */
        "eth0 0000000G 00000000 0003 0 0 0 00000000\n",                       /* not hex */
        "eth0 000000000 00000000 0003 0 0 0 00000000\n",                      /* 9 hex digits */
        "eth0 00000000 00000000 0003 0 0 -1 00000000\n",                      /* negative metric */
        "eth0 00000000 00000000 0003 0 0 0 000000FF\n",                       /* not /0 */
        "eth0 00000000 00000000 0003 0 0 99999999999999999999999 00000000\n", /* overflow */
        "averyveryverylongifname 00000000 00000000 0003 0 0 0 00000000\n",    /* > IFNAMSIZ */
        "\x01\x02\xff\xfe garbage\tzz\r\n\t\t\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(aip_device_info_pick_ip(bad[i], lan_ifs, 4, ip, sizeof ip), 0);
        assert_string_equal(ip, "172.17.0.1");
    }
    /* garbage around a good line does not hide it */
    const char *mixed = "junk\n\xff\xff\neth0 00000000 00000000 0003 0 0 0 00000000 0 0 0\nmore";
    assert_int_equal(aip_device_info_pick_ip(mixed, lan_ifs, 4, ip, sizeof ip), 0);
    assert_string_equal(ip, "192.0.2.10");
}

static void test_missing_proc_still_valid(void **state)
{
    (void)state;
    char *json = collect(FIXTURES "/no-such-directory", NULL, NULL);
    assert_raw_number(json, "memory_total_gb", "0.0");
    assert_raw_number(json, "memory_available_gb", "0.0");
    assert_raw_number(json, "uptime_s", "0");
    assert_non_null(strstr(json, "\"load_avg\":[0.0,0.0,0.0]"));
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_ufo_shape(root);
    cJSON_Delete(root);
    aip_free(json);
}

static void test_garbled_proc_still_valid(void **state)
{
    (void)state;
    char *json = collect(FIXTURES "/proc_garbled", "[]", "{}");
    assert_raw_number(json, "memory_total_gb", "0.0");
    assert_raw_number(json, "uptime_s", "0");
    assert_non_null(strstr(json, "\"load_avg\":[0.0,0.0,0.0]")); /* nan/inf: all or nothing */
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_ufo_shape(root);
    cJSON_Delete(root);
    aip_free(json);
}

static void test_disk_path(void **state)
{
    (void)state;
    aip_device_info_opts o = {0};
    o.device_id = "d";
    o.proc_root = FIXTURES "/proc";
    o.disk_path = FIXTURES "/no-such-directory";
    char *json = NULL;
    assert_int_equal(aip_device_info_collect(&o, &json), 0);
    assert_raw_number(json, "disk_total_gb", "0.0");
    assert_raw_number(json, "disk_free_gb", "0.0");
    aip_free(json);
    o.disk_path = AIP_SOURCE_DIR;
    assert_int_equal(aip_device_info_collect(&o, &json), 0);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    double total = cJSON_GetObjectItem(root, "disk_total_gb")->valuedouble;
    double free_gb = cJSON_GetObjectItem(root, "disk_free_gb")->valuedouble;
    assert_true(total >= free_gb);
    cJSON_Delete(root);
    aip_free(json);
}

static void test_real_machine(void **state)
{
    (void)state;
    char *json = collect(NULL, "[\"echo\"]", NULL);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_ufo_shape(root);
    assert_true(cJSON_GetObjectItem(root, "cpu_count")->valueint >= 1);
    assert_true(cJSON_GetObjectItem(root, "memory_total_gb")->valuedouble > 0);
    assert_true(strlen(cJSON_GetObjectItem(root, "os_version")->valuestring) > 0);
    assert_true(strchr(strstr(json, "\"memory_total_gb\":"), '.') != NULL);
    cJSON_Delete(root);
    aip_free(json);

    /* agent_version defaults to the library's */
    aip_device_info_opts o = {0};
    o.device_id = "d";
    assert_int_equal(aip_device_info_collect(&o, &json), 0);
    root = cJSON_Parse(json);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "agent_version")->valuestring, aip_version());
    cJSON_Delete(root);
    aip_free(json);
}

static void test_device_id_is_escaped(void **state)
{
    (void)state;
    aip_device_info_opts o = {0};
    o.device_id = "a\"b\\c\n\xc3\xa9";
    o.proc_root = FIXTURES "/proc";
    char *json = NULL;
    assert_int_equal(aip_device_info_collect(&o, &json), 0);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "device_id")->valuestring, o.device_id);
    cJSON_Delete(root);
    aip_free(json);
}

static void test_caller_inputs_refused(void **state)
{
    (void)state;
    static char sentinel[] = "sentinel"; /* must be reset to NULL on failure */
    char *json = sentinel;
    aip_device_info_opts o = {0};
    assert_aip(aip_device_info_collect(&o, &json), AIP_E_INVAL); /* no device_id */
    assert_null(json);
    assert_aip(aip_device_info_collect(NULL, &json), AIP_E_INVAL);
    o.device_id = "d";
    assert_aip(aip_device_info_collect(&o, NULL), AIP_E_INVAL);

    aip_log_level saved = aip_log_get_level();
    aip_log_set_level(AIP_LOG_ERROR); /* the refusals below log at warn */
    static const char *const bad_features[] = {
        "{}", "\"echo\"", "[1, 2]",    "[\"a\", [\"b\"]]", "[\"a\",]",
        "",   "   ",      "[\"a\"] x", "[\"\xff\"]"};
    for (size_t i = 0; i < sizeof bad_features / sizeof bad_features[0]; i++) {
        o.features_json = bad_features[i];
        json = sentinel;
        assert_aip(aip_device_info_collect(&o, &json), AIP_E_INVAL);
        assert_null(json);
    }
    o.features_json = NULL;
    static const char *const bad_tags[] = {"[]", "1", "{\"a\":1,\"a\":2}", "{", "null"};
    for (size_t i = 0; i < sizeof bad_tags / sizeof bad_tags[0]; i++) {
        o.custom_metadata_json = bad_tags[i];
        assert_aip(aip_device_info_collect(&o, &json), AIP_E_INVAL);
    }
    o.custom_metadata_json = NULL;
    o.device_id = "bad \xff";
    assert_aip(aip_device_info_collect(&o, &json), AIP_E_INVAL);
    o.device_id = "d";
    o.agent_version = "\xc3";
    assert_aip(aip_device_info_collect(&o, &json), AIP_E_INVAL);
    aip_log_set_level(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_proc_full),
        cmocka_unit_test(test_whole_gib_keeps_decimal_point),
        cmocka_unit_test(test_format_gb_matches_python),
        cmocka_unit_test(test_pick_ip_default_route),
        cmocka_unit_test(test_pick_ip_fallbacks),
        cmocka_unit_test(test_pick_ip_malformed_route),
        cmocka_unit_test(test_missing_proc_still_valid),
        cmocka_unit_test(test_garbled_proc_still_valid),
        cmocka_unit_test(test_disk_path),
        cmocka_unit_test(test_real_machine),
        cmocka_unit_test(test_device_id_is_escaped),
        cmocka_unit_test(test_caller_inputs_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
