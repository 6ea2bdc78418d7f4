/* SPDX-License-Identifier: MIT */
/*
 * aip/redact.h — the one place that decides what a secret looks like, so that no log line,
 * error text, printed setting or dashboard shows one.
 *
 * Everything in libaip and its programs that prints a URL (server, proxy), an HTTP header or a
 * command's parameters goes through these functions first:
 * - URLs: the userinfo's password ("user:<redacted>@host"; a userinfo without ':' is taken for
 *   a bare token: "<redacted>@host") and every value of the query and the fragment
 *   ("?token=<redacted>&a=<redacted>#<redacted>": key names are kept, values dropped; an item
 *   without '=' is dropped whole; an empty value stays empty, which tells "the key is empty").
 * - Headers: Authorization / Proxy-Authorization keep their scheme ("Bearer <redacted>"),
 *   other secret names (X-API-Key, Cookie, ...) become "<redacted>", URL-valued ones
 *   (Location, Referer, Origin) are redacted as URLs.
 * - JSON (a command's parameters): the value of every member whose key is a secret name, at
 *   any depth, becomes the string "<redacted>".
 *
 * A false positive only hides a value from a log; a false negative leaks a key. So the name
 * list errs wide (see aip_secret_name).
 *
 * NULL arguments: NULL text is treated as empty; NULL out is fine with len 0 (to measure).
 * Threads: no state; any thread.
 */
#ifndef AIP_REDACT_H
#define AIP_REDACT_H

#include "aip/export.h"

#include "aip/buf.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AIP_REDACTED "<redacted>"

/* Writes url with its secrets replaced (see above) into out, snprintf-style: at most len bytes,
 * NUL-terminated when len > 0; returns the length of the whole redacted text (a return >= len
 * means out was cut short; a cut result never shows a secret either, since only redacted text
 * is ever written). Scheme, host (IPv6 brackets too), port and path are kept as given; a URL
 * without a scheme ("user:pw@proxy:3128", as http_proxy is often written) works too. */
AIP_API size_t aip_redact_url(const char *url, char *out, size_t len);

/* Is this name (n bytes: a header, a query key or a JSON key) the name of a secret? Compared
 * case-insensitively with '-' equal to '_': authorization, proxy_authorization, x_api_key,
 * api_key, apikey, key, token, access_token, refresh_token, password, passwd, passphrase,
 * pass, pwd, secret, client_secret, credential(s), cookie, set_cookie, session_token,
 * signature, and any name ending in _token, _secret, _password, _passwd or _key. */
AIP_API bool aip_secret_name(const char *name, size_t n);

/* A header value as it may be shown (snprintf-style, as aip_redact_url). */
AIP_API size_t aip_redact_header(const char *name, const char *value, char *out, size_t len);

/* Free text (a log line, an error message from a peer or from libwebsockets) with the secrets
 * it may carry redacted, snprintf-style (as aip_redact_url): every URL in it ("scheme://..."
 * up to a space or a quote, trailing punctuation left out) as aip_redact_url; name=value with a
 * secret name (token=..., api_key=...); the credential after "Bearer " / "Basic "; and JSON
 * members with a secret name ("api_key": "...", also escaped inside a JSON string). Redacted
 * text comes out unchanged, so it may be applied twice. Every log line passes through it
 * (aip_vlog): the last gate, after every caller redacted what it knows to be secret. */
AIP_API size_t aip_redact_text(const char *text, char *out, size_t len);

/* Appends json (len bytes of valid JSON text, e.g. a command's parameters) to out with the
 * value of every member named by a secret name replaced by "<redacted>". Keys are compared
 * after unescaping ("api\u005fkey" is api_key). Returns 0, AIP_E_MALFORMED (not valid JSON:
 * nothing appended — the caller should show no value at all), AIP_E_NOMEM or AIP_E_INVAL. */
AIP_API int aip_redact_json(const char *json, size_t len, aip_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* AIP_REDACT_H */
