/* SPDX-License-Identifier: MIT */
/* Error names and the library version. */
#include "aip/common.h"

#ifndef AIP_VERSION_STRING
#define AIP_VERSION_STRING "0.1.0"
#endif

const char *aip_strerror(int err)
{
    switch (err) {
    case AIP_OK: return "success";
    case AIP_E_INVAL: return "invalid argument";
    case AIP_E_NOMEM: return "out of memory";
    case AIP_E_MALFORMED: return "malformed frame";
    case AIP_E_PROTOCOL: return "protocol violation";
    case AIP_E_TOO_LARGE: return "too large";
    case AIP_E_TOO_COMPLEX: return "too deeply nested or too many values";
    case AIP_E_TIMEOUT: return "timed out";
    case AIP_E_CANCELLED: return "cancelled";
    case AIP_E_CONN_LOST: return "connection lost";
    case AIP_E_NOT_CONNECTED: return "not connected";
    case AIP_E_SHUTDOWN: return "shutting down";
    case AIP_E_REMOTE: return "remote error";
    case AIP_E_FULL: return "limit reached";
    case AIP_E_DUPLICATE: return "duplicate id";
    case AIP_E_REFUSED: return "refused";
    case AIP_E_UNSUPPORTED: return "not supported";
    case AIP_E_IO: return "I/O error";
    case AIP_E_TLS: return "TLS error";
    case AIP_E_AUTH: return "authentication failed";
    case AIP_E_NOT_FOUND: return "not found";
    case AIP_E_STATE: return "wrong state";
    case AIP_E_CONFIG: return "configuration error";
    default: return "unknown error";
    }
}

const char *aip_version(void)
{
    return AIP_VERSION_STRING;
}
