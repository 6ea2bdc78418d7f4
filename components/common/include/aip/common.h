/* SPDX-License-Identifier: MIT */
/*
 * aip/common.h — error codes, version, logging, allocator, clock and random source.
 *
 * The one error rule (stated once, used everywhere): every libaip function that can fail
 * returns 0 on success or a negative AIP_E* code; errno never crosses the API.
 * aip_strerror() names any code.
 *
 * Threads: everything here may be called from any thread, except the setters marked
 * "before any other call" (allocator), which configure process-wide state once.
 *
 * NULL, here and in every installed libaip header (each states its own cases): a NULL where an
 * object or an output is expected never crashes. A function returning int returns AIP_E_INVAL,
 * one returning a pointer returns NULL, a void one does nothing; "NULL means default" is said
 * where it applies. Here: aip_strdup/strndup(NULL) give NULL, aip_free(NULL) and
 * aip_log(..., NULL fmt) do nothing, aip_log_level_parse(.., NULL) is AIP_E_INVAL, a NULL
 * aip_clock or aip_random (or a NULL member) is the system one, aip_format_timestamp and
 * aip_uuid4 write nothing to a NULL buffer. Log levels out of range are clamped.
 */
#ifndef AIP_COMMON_H
#define AIP_COMMON_H

#include "aip/export.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum aip_error {
    AIP_OK = 0,
    AIP_E_INVAL = -1,          /* invalid argument */
    AIP_E_NOMEM = -2,          /* out of memory (or over a memory budget) */
    AIP_E_MALFORMED = -3,      /* frame is not well-formed JSON / protobuf / UTF-8 */
    AIP_E_PROTOCOL = -4,       /* well-formed, but not a valid AIP message */
    AIP_E_TOO_LARGE = -5,      /* over the frame-size limit */
    AIP_E_TOO_COMPLEX = -6,    /* over the nesting-depth or value-count limit */
    AIP_E_TIMEOUT = -7,        /* the deadline passed */
    AIP_E_CANCELLED = -8,      /* cancelled by the caller */
    AIP_E_CONN_LOST = -9,      /* the connection was lost while the request was pending */
    AIP_E_NOT_CONNECTED = -10, /* not connected/registered, and the caller did not ask to wait */
    AIP_E_SHUTDOWN = -11,      /* the object is being destroyed */
    AIP_E_REMOTE = -12,        /* the peer answered with an error */
    AIP_E_FULL = -13,          /* a bound was reached: pending requests, queued bytes */
    AIP_E_DUPLICATE = -14,     /* the id is already in use */
    AIP_E_REFUSED = -15,       /* registration refused by the server */
    AIP_E_UNSUPPORTED = -16,   /* not supported by this build or peer */
    AIP_E_IO = -17,            /* an operating-system call failed */
    AIP_E_TLS = -18,           /* TLS set-up or verification failed */
    AIP_E_AUTH = -19,          /* authentication failed */
    AIP_E_NOT_FOUND = -20,     /* no such id, tool, device or file */
    AIP_E_STATE = -21,         /* wrong state for this call */
    AIP_E_CONFIG = -22,        /* invalid configuration */
};

/* A short, static, human-readable name for an AIP_E* code (never NULL). */
AIP_API const char *aip_strerror(int err);

/* Library version, "MAJOR.MINOR.PATCH". */
AIP_API const char *aip_version(void);

/* ---- logging --------------------------------------------------------------------------------
 * Process-wide. Lines below the level are dropped before formatting. The hook, when set,
 * receives every line instead of stderr, from any libaip thread, one line at a time (calls are
 * serialised). It must not call back into libaip and should return quickly. Once
 * aip_log_set_hook() returns, the previous hook is no longer running or called, so its user
 * data may be freed. Secrets are never passed to it: callers redact what they know to be
 * secret, and every line then passes aip_redact_text() (aip/redact.h) as a last gate. */
typedef enum aip_log_level {
    AIP_LOG_ERROR = 0,
    AIP_LOG_WARN = 1,
    AIP_LOG_INFO = 2,
    AIP_LOG_DEBUG = 3,
} aip_log_level;

typedef void (*aip_log_hook)(aip_log_level level, const char *component, const char *line,
                             void *user);

AIP_API void aip_log_set_level(aip_log_level level);
AIP_API aip_log_level aip_log_get_level(void);
/* hook == NULL restores the default (stderr, with an ISO-8601 UTC timestamp). */
AIP_API void aip_log_set_hook(aip_log_hook hook, void *user);
/* Parses "error", "warn", "info", "debug". Returns 0 or AIP_E_INVAL. */
AIP_API int aip_log_level_parse(const char *name, aip_log_level *out);

AIP_API void aip_log(aip_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
AIP_API void aip_vlog(aip_log_level level, const char *component, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* ---- allocator --------------------------------------------------------------------------------
 * Every allocation libaip makes itself (not libwebsockets', not cJSON's unless you also call
 * cJSON_InitHooks) goes through these. Set them before any other libaip call; NULL members
 * restore the libc defaults. realloc_fn may be NULL (then malloc + copy + free is used). */
typedef struct aip_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} aip_allocator;

AIP_API void aip_set_allocator(const aip_allocator *a);
AIP_API void *aip_malloc(size_t size);
AIP_API void *aip_calloc(size_t n, size_t size);
AIP_API void *aip_realloc(void *ptr, size_t old_size, size_t new_size);
AIP_API void aip_free(void *ptr);
AIP_API char *aip_strdup(const char *s);
AIP_API char *aip_strndup(const char *s, size_t n);

/* ---- clock -------------------------------------------------------------------------------------
 * Monotonic time for deadlines, wall time for timestamps. Objects that schedule take an
 * aip_clock so tests can drive time; NULL means the system clock. */
typedef struct aip_clock {
    uint64_t (*mono_ns)(void *user); /* monotonic nanoseconds */
    int64_t (*wall_us)(void *user);  /* microseconds since the Unix epoch, UTC */
    void *user;
} aip_clock;

AIP_API const aip_clock *aip_clock_system(void);
AIP_API uint64_t aip_now_ns(const aip_clock *c); /* c (or its member) NULL: system */
AIP_API int64_t aip_wall_us(const aip_clock *c);
/* Formats wall time as UFO does: "2026-11-22T06:30:12.512337+00:00". buf >= 33 bytes
 * (NULL buf or len 0: nothing written). */
AIP_API void aip_format_timestamp(int64_t wall_us, char *buf, size_t len);

/* Deadlines are monotonic nanoseconds; AIP_NEVER (UINT64_MAX) means "no deadline". Every
 * "now + timeout" in libaip goes through these, which saturate instead of wrapping: a timeout
 * of INT64_MAX ms waits (practically) forever rather than ending in the past. */
#define AIP_NEVER UINT64_MAX

/* ---- timeouts ----------------------------------------------------------------------------------
 * Every timeout_ms of the API is an int64_t count of milliseconds, used in one of two ways:
 * - a wait (aip_future_wait, aip_conn_wait_registered): how long this call may block.
 *   AIP_TIMEOUT_POLL (0) looks once and returns at once; AIP_TIMEOUT_INFINITE (or any negative
 *   value) blocks until the event.
 * - a request option (aip_request_opts.timeout_ms): the request's own deadline.
 *   AIP_TIMEOUT_DEFAULT (0, or any negative value) takes the connection config's default for
 *   that kind of request; AIP_TIMEOUT_INFINITE gives it no deadline.
 * The same number means different things: 0 polls in a wait and asks for the default in a
 * request, and a negative value waits forever in a wait but takes the default in a request.
 * AIP_TIMEOUT_INFINITE is INT64_MAX so that it means "no limit" in both. Positive values
 * saturate (aip_deadline_ms): a huge one is "no deadline", never one in the past. */
#define AIP_TIMEOUT_DEFAULT  0
#define AIP_TIMEOUT_POLL     0
#define AIP_TIMEOUT_INFINITE INT64_MAX

/* a + b, or AIP_NEVER when the sum does not fit. */
AIP_API uint64_t aip_add_sat(uint64_t a, uint64_t b);
/* now_ns + timeout_ms, saturated; timeout_ms < 0 gives AIP_NEVER. */
AIP_API uint64_t aip_deadline_ms(uint64_t now_ns, int64_t timeout_ms);

/* ---- random ------------------------------------------------------------------------------------
 * Not cryptographic: ids and jitter. Objects that draw randomness take an aip_random so tests can
 * inject a sequence; NULL means the default (a splitmix64 stream seeded from getrandom(),
 * lock-free and safe from any thread). */
typedef struct aip_random {
    uint64_t (*next)(void *user);
    void *user;
} aip_random;

AIP_API uint64_t aip_random_u64(const aip_random *r);
/* A uniformly random value in [0, bound) (bound > 0), without modulo bias. */
AIP_API uint64_t aip_random_below(const aip_random *r, uint64_t bound);
/* A uuid4-formatted id ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"); buf >= 37 bytes. */
AIP_API void aip_uuid4(const aip_random *r, char *buf, size_t len);
/* Fills buf with len bytes from the kernel's cryptographic random source (getrandom(2)), for
 * keys and other secrets: unlike the stream above, an output says nothing about the others.
 * Blocks only until the kernel's pool is first initialised. Returns 0, AIP_E_INVAL (buf NULL
 * with len > 0) or AIP_E_IO. Any thread. */
AIP_API int aip_random_secret(void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* AIP_COMMON_H */
