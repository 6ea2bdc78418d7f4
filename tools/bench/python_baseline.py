#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The Python client pattern libaip replaces, doing aip-bench rr's workload.

One asyncio listener task per connection and a dict of futures keyed by request id — the
ConnectionManager/MessageProcessor pattern of UFO's Galaxy client (galaxy/client/components/;
docs/design.md): a request registers its future before the frame leaves, the listener completes
it on DEVICE_INFO_RESPONSE, the requester waits with a timeout and always removes its entry
(rr_harness.py, shared with pydantic_rr.py). Frames are built with json.dumps (UFO builds pydantic models first, which costs more: this
baseline flatters Python, if anything).

Runs with Debian's python3-websockets: /usr/bin/python3 tools/bench/python_baseline.py
    --server ws://127.0.0.1:5000/ws --target DEVICE [--inflight 64]
    (--requests N | --seconds S) [--token T] [--timeout SECONDS]
Prints one JSON line like aip-bench rr's. Exit 0 only when errors and mismatched are 0.
"""
import json
import sys

import websockets

import rr_harness
from rr_harness import now_iso


class JsonCodec(rr_harness.Codec):
    def register(self, client_id, target):
        return json.dumps({
            "type": "register", "status": "ok", "client_type": "constellation",
            "client_id": client_id, "target_id": target,
            "metadata": {"type": "constellation_client", "targeted_device_id": target,
                         "registration_time": now_iso()},
            "timestamp": now_iso()})

    def device_info_request(self, client_id, target, request_id):
        return json.dumps({
            "type": "device_info_request", "status": "ok", "client_type": "constellation",
            "client_id": client_id, "target_id": target,
            "request_id": request_id, "timestamp": now_iso()})

    def read(self, raw):
        msg = json.loads(raw)
        return msg.get("type"), msg.get("response_id"), msg.get("error"), msg

    def answer_ok(self, msg, request_id):
        return msg.get("response_id") == request_id and isinstance(msg.get("result"), dict)


if __name__ == "__main__":
    sys.exit(rr_harness.main(__doc__, "python_baseline", websockets, JsonCodec(), "python"))
