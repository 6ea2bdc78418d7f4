# SPDX-License-Identifier: MIT
"""What python_baseline.py and pydantic_rr.py share: the client shape and the measurement.

The client is the ConnectionManager/MessageProcessor pattern of UFO's Galaxy client: one
asyncio listener task per connection and a dict of futures keyed by request id; a request
registers its future before its frame leaves, the listener completes it on
device_info_response (or fails it on error), the requester waits with a timeout and always
removes its entry. A subclass says only how frames are built and read (Codec). The run keeps
--inflight workers each with one request in flight, for --requests N or --seconds S, and
prints one JSON line shaped like aip-bench rr's. Standard library only (websockets is passed
in by the caller, which found it).
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


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Codec:
    """How one client builds and reads frames; subclasses implement all four."""

    def register(self, client_id, target):
        raise NotImplementedError

    def device_info_request(self, client_id, target, request_id):
        raise NotImplementedError

    def read(self, raw):
        """Returns (type, response_id, error, message) of a received frame."""
        raise NotImplementedError

    def answer_ok(self, msg, request_id):
        """True when msg answers request_id with an object as its result."""
        raise NotImplementedError


class Client:
    def __init__(self, ws, codec, client_id, target):
        self.ws = ws
        self.codec = codec
        self.client_id = client_id
        self.target = target
        self.pending = {}  # request_id -> Future of a received message
        self.listener = None
        self.registered = asyncio.get_running_loop().create_future()

    async def listen(self):
        try:
            async for raw in self.ws:
                t, response_id, error, msg = self.codec.read(raw)
                if t == "device_info_response":
                    fut = self.pending.get(response_id)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif t == "heartbeat" and not self.registered.done():
                    self.registered.set_result(True)
                elif t == "error":
                    fut = self.pending.get(response_id)
                    if fut is not None and not fut.done():
                        fut.set_exception(RuntimeError(error))
                    elif not self.registered.done():
                        self.registered.set_exception(RuntimeError(error))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection lost"))
            if not self.registered.done():
                self.registered.set_exception(ConnectionError("connection lost"))

    async def register(self):
        self.listener = asyncio.create_task(self.listen())
        await self.ws.send(self.codec.register(self.client_id, self.target))
        await asyncio.wait_for(self.registered, 10)

    async def request_device_info(self, timeout):
        request_id = str(uuid.uuid4())
        fut = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        try:
            await self.ws.send(
                self.codec.device_info_request(self.client_id, self.target, request_id))
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(request_id, None)
        return request_id, msg


async def run(args, websockets, codec, mode, prog, extra=None):
    """One measured run; prints the result line and returns the exit status."""
    url = args.server
    if args.token:
        url += ("&" if "?" in url else "?") + "token=" + args.token
    client_id = "%s-%d@%s" % (mode, os.getpid(), args.target)
    stats = {"ok": 0, "errors": 0, "mismatched": 0, "first_error": None}
    lat = []
    async with websockets.connect(url, max_size=16 * 1024 * 1024) as ws:
        c = Client(ws, codec, client_id, args.target)
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
                if not codec.answer_ok(msg, rid):
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
        print("%s: first error: %s" % (prog, stats["first_error"]), file=sys.stderr)
    line = {
        "mode": mode, "encoding": "json", "threads": 1, "inflight": args.inflight,
        "requests": total, "ok": stats["ok"], "errors": stats["errors"],
        "mismatched": stats["mismatched"], "seconds": round(secs, 3),
        "req_per_s": round(total / secs) if secs > 0 else 0,
        "p50_us": pct(0.50), "p99_us": pct(0.99), "p999_us": pct(0.999),
        "max_us": lat[-1] if lat else 0, "late": 0,
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "max_rss_kb": ru.ru_maxrss}
    line.update(extra or {})
    print(json.dumps(line, separators=(",", ":")))
    return 0 if stats["errors"] == 0 and stats["mismatched"] == 0 and total > 0 else 1


def main(doc, prog, websockets, codec, mode, extra=None, catch=False):
    """Parses the common options, runs once; catch: a connect failure is one line, exit 1."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
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
    try:
        return asyncio.run(run(args, websockets, codec, mode, prog, extra))
    except Exception as e:  # noqa: BLE001 - connect/registration failures: one line, exit 1
        if not catch:
            raise
        print("%s: %r" % (prog, e), file=sys.stderr)
        return 1
