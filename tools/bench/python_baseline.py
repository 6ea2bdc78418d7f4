#!/usr/bin/python3
"""The Python client pattern libaip replaces, doing aip-bench rr's workload.

One asyncio listener task per connection and a dict of futures keyed by request id — the
ConnectionManager/MessageProcessor pattern of UFO's Galaxy client (../shared/BACKGROUND.md §3):
a request registers its future before the frame leaves, the listener completes it on
DEVICE_INFO_RESPONSE, the requester waits with a timeout and always removes its entry.
Frames are built with json.dumps (UFO builds pydantic models first, which costs more: this
baseline flatters Python, if anything).

Runs with Debian's python3-websockets: /usr/bin/python3 tools/bench/python_baseline.py
    --server ws://127.0.0.1:5000/ws --target DEVICE [--inflight 64]
    (--requests N | --seconds S) [--token T] [--timeout SECONDS]
Prints one JSON line like aip-bench rr's. Exit 0 only when errors and mismatched are 0.
"""
import argparse
import asyncio
import datetime
import json
import os
import resource
import sys
import time
import uuid

import websockets


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Client:
    def __init__(self, ws, client_id, target):
        self.ws = ws
        self.client_id = client_id
        self.target = target
        self.pending = {}  # request_id -> Future
        self.listener = None
        self.registered = asyncio.get_running_loop().create_future()

    async def listen(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                t = msg.get("type")
                if t == "device_info_response":
                    fut = self.pending.get(msg.get("response_id"))
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif t == "heartbeat" and not self.registered.done():
                    self.registered.set_result(True)
                elif t == "error":
                    fut = self.pending.get(msg.get("response_id"))
                    if fut is not None and not fut.done():
                        fut.set_exception(RuntimeError(msg.get("error")))
                    elif not self.registered.done():
                        self.registered.set_exception(RuntimeError(msg.get("error")))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection lost"))
            if not self.registered.done():
                self.registered.set_exception(ConnectionError("connection lost"))

    async def register(self):
        self.listener = asyncio.create_task(self.listen())
        await self.ws.send(json.dumps({
            "type": "register", "status": "ok", "client_type": "constellation",
            "client_id": self.client_id, "target_id": self.target,
            "metadata": {"type": "constellation_client", "targeted_device_id": self.target,
                         "registration_time": now_iso()},
            "timestamp": now_iso()}))
        await asyncio.wait_for(self.registered, 10)

    async def request_device_info(self, timeout):
        request_id = str(uuid.uuid4())
        fut = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        try:
            await self.ws.send(json.dumps({
                "type": "device_info_request", "status": "ok", "client_type": "constellation",
                "client_id": self.client_id, "target_id": self.target,
                "request_id": request_id, "timestamp": now_iso()}))
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(request_id, None)
        return request_id, msg


async def run(args):
    url = args.server
    if args.token:
        url += ("&" if "?" in url else "?") + "token=" + args.token
    client_id = "py-baseline-%d@%s" % (os.getpid(), args.target)
    stats = {"ok": 0, "errors": 0, "mismatched": 0, "first_error": None}
    lat = []
    async with websockets.connect(url, max_size=16 * 1024 * 1024) as ws:
        c = Client(ws, client_id, args.target)
        await c.register()
        budget = [args.requests if args.requests is not None else -1]
        deadline = [None]

        def take():
            if deadline[0] is not None:
                return time.monotonic() < deadline[0]
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

        async def worker():
            while take():
                t0 = time.perf_counter_ns()
                try:
                    rid, msg = await c.request_device_info(args.timeout)
                except Exception as e:  # noqa: BLE001 - every failure is counted
                    stats["errors"] += 1
                    stats["first_error"] = stats["first_error"] or repr(e)
                    continue
                t1 = time.perf_counter_ns()
                if msg.get("response_id") != rid or not isinstance(msg.get("result"), dict):
                    stats["mismatched"] += 1
                else:
                    stats["ok"] += 1
                    lat.append((t1 - t0) // 1000)

        start = time.monotonic()
        if args.seconds:
            deadline[0] = start + args.seconds
        await asyncio.gather(*(worker() for _ in range(args.inflight)))
        secs = time.monotonic() - start
        c.listener.cancel()
    lat.sort()

    def pct(p):
        if not lat:
            return 0
        return lat[min(len(lat) - 1, int(p * (len(lat) - 1) + 0.5))]

    total = stats["ok"] + stats["errors"] + stats["mismatched"]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    if stats["first_error"]:
        print("python_baseline: first error: " + stats["first_error"], file=sys.stderr)
    print(json.dumps({
        "mode": "python", "encoding": "json", "threads": 1, "inflight": args.inflight,
        "requests": total, "ok": stats["ok"], "errors": stats["errors"],
        "mismatched": stats["mismatched"], "seconds": round(secs, 3),
        "req_per_s": round(total / secs) if secs > 0 else 0,
        "p50_us": pct(0.50), "p99_us": pct(0.99), "p999_us": pct(0.999),
        "max_us": lat[-1] if lat else 0, "late": 0,
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "max_rss_kb": ru.ru_maxrss},
        separators=(",", ":")))
    return 0 if stats["errors"] == 0 and stats["mismatched"] == 0 and total > 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", required=True, help="ws://host:port/ws")
    p.add_argument("--target", required=True, help="the device whose info is requested")
    p.add_argument("--token", default=os.environ.get("AIP_TOKEN"))
    p.add_argument("--inflight", type=int, default=64)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--requests", type=int)
    g.add_argument("--seconds", type=float)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    if args.requests is None and not args.seconds:
        args.requests = 10000
    if args.inflight < 1:
        p.error("--inflight must be at least 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
