/* SPDX-License-Identifier: MIT */
/*
 * aip/device_info.h — the device's system info, as sent in registration `metadata.system_info`
 * and in `device_info_response` (docs/protocol.md §4).
 *
 * Design note
 * - Linux-specific by design: /proc, uname, sysconf, statvfs, gethostname, getifaddrs. This is
 *   the one component a port to another OS rewrites; the core never calls it.
 * - UFO's eleven fields come first and in UFO's order (device_id, platform, os_version,
 *   cpu_count, memory_total_gb, hostname, ip_address, supported_features, platform_type,
 *   schema_version, custom_metadata), then our extras (kernel_release, arch, uptime_s,
 *   load_avg, memory_available_gb, disk_total_gb, disk_free_gb, agent_version), which UFO
 *   ignores.
 * - A device must always be able to register: a /proc file that is missing, unreadable or
 *   garbled, or a failing system call, yields a neutral value (0, "unknown") for that field,
 *   never a failed call. Only the caller's own inputs can make the call fail. The output is
 *   always one valid JSON object.
 * - The IP address comes from the interfaces (the IPv4 of the default-route interface), never
 *   from routing a socket to a public host: no packet leaves the machine.
 * - Reads are bounded (64 KiB per /proc file).
 *
 * Threads: no shared state; any thread, concurrently.
 *
 * NULL: every NULL that is not documented as "default" below is AIP_E_INVAL.
 */
#ifndef AIP_DEVICE_INFO_H
#define AIP_DEVICE_INFO_H

#include "aip/export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aip_device_info_opts {
    const char *device_id;            /* the agent's client id (required, UTF-8) */
    const char *proc_root;            /* NULL = "/proc"; tests pass a fixture directory */
    const char *disk_path;            /* NULL = "/"; statvfs target for the disk figures */
    const char *features_json;        /* JSON array of strings, e.g. ["echo","sleep"]; NULL = [] */
    const char *custom_metadata_json; /* JSON object text (the operator's tags); NULL = {} */
    const char *agent_version;        /* NULL = aip_version() */
} aip_device_info_opts;

/* Collects the system_info JSON object. On success *json_out is NUL-terminated text on the heap,
 * owned by the caller (free with aip_free). Returns 0, AIP_E_INVAL (o, o->device_id or json_out
 * NULL; device_id or agent_version not UTF-8; features_json not a JSON array of strings;
 * custom_metadata_json not a JSON object — the reason is logged at warn) or AIP_E_NOMEM.
 * On failure *json_out is NULL. */
AIP_API int aip_device_info_collect(const aip_device_info_opts *o, char **json_out);

/* ---- pure helpers, exposed for tests ------------------------------------------------------- */

/* Buffer sizes that always suffice for the helpers below. */
#define AIP_DEVICE_INFO_NUM_MAX 32 /* aip_device_info_format_gb */
#define AIP_DEVICE_INFO_IP_MAX  16 /* aip_device_info_pick_ip: "255.255.255.255" or "unknown" */

/* Formats bytes as GiB the way UFO's Python prints round(bytes / 1024**3, 2): at most two
 * decimals, trailing zeros dropped but always a decimal point ("15.62", "15.6", "16.0", "0.0").
 * Rounds half to even on exact ties, as Python does. Returns 0 or AIP_E_INVAL (buf NULL or
 * too small; len >= AIP_DEVICE_INFO_NUM_MAX always suffices). */
AIP_API int aip_device_info_format_gb(uint64_t bytes, char *buf, size_t len);

/* One interface address, as the caller found it (getifaddrs in aip_device_info_collect). */
typedef struct aip_ifaddr {
    const char *name;
    const char *ipv4; /* dotted quad; NULL or anything else is skipped */
} aip_ifaddr;

/* Picks the IP to report: the IPv4 of the default-route interface named in route_text (the text
 * of /proc/net/route; the up, non-reject 0.0.0.0/0 route of lowest metric), else the first
 * IPv4 in ifs, else "unknown". Loopback (127/8) and 0.0.0.0 addresses are never picked.
 * route_text may be NULL or malformed (then there is no default route). Returns 0 or
 * AIP_E_INVAL (out NULL or too small: len >= AIP_DEVICE_INFO_IP_MAX always suffices; ifs NULL
 * with n > 0). */
AIP_API int aip_device_info_pick_ip(const char *route_text, const aip_ifaddr *ifs, size_t n,
                                    char *out, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* AIP_DEVICE_INFO_H */
