/* SPDX-License-Identifier: MIT */
/*
 * <aip/aip.h> — the umbrella header of libaip, the AIP (Agent Interaction Protocol) client
 * library of the constellation agent. Include this one header.
 *
 * Error rule: every function that can fail returns 0 or a negative AIP_E* code
 * (aip_strerror() names it). Ownership and thread rules are stated in each component header.
 */
#ifndef AIP_AIP_H
#define AIP_AIP_H

#include "aip/agent.h"
#include "aip/buf.h"
#include "aip/codec.h"
#include "aip/common.h"
#include "aip/conn.h"
#include "aip/device_info.h"
#include "aip/executor.h"
#include "aip/future.h"
#include "aip/mcp.h"
#include "aip/message.h"
#include "aip/redact.h"

#endif /* AIP_AIP_H */
