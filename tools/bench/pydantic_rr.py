#!/usr/bin/env python3
"""The Python client as UFO writes it — pydantic v2 models — doing aip-bench rr's workload.

python_baseline.py builds frames with json.dumps; UFO's own AIP code instead builds a pydantic
ClientMessage and sends model_dump_json() (every field, unset ones as null), and turns each
received frame into a ServerMessage with model_validate_json(). This client does the same with
models of its own whose fields and types mirror UFO's aip/messages.py (ClientMessage,
ServerMessage, Command, Result and their enums), over the `websockets` library, with the
listener-task + dict-of-futures shape of python_baseline.py (one asyncio listener task, a
request registers its future before its frame leaves, the requester waits with a timeout and
always removes its entry; C workers each keep one request in flight). Frames go out as text.

Interpreter: pydantic 2 is needed, and Debian 12 ships pydantic 1 only, so this runs under the
first `python3` on PATH that has pydantic 2 (on the project's machines: pyenv's 3.11, which
has pydantic 2 but not websockets). When `import websockets` fails there, Debian's
python3-websockets (10.4, pure Python on Debian 12 as for python_baseline.py) is taken from
/usr/lib/python3/dist-packages, appended to sys.path (last, so nothing else is shadowed).

    python3 tools/bench/pydantic_rr.py --server ws://127.0.0.1:5000/ws --target DEVICE
        [--inflight 64] (--requests N | --seconds S) [--token T] [--timeout SECONDS]

Prints one JSON line like aip-bench rr's (mode "pydantic"; cpu_s is this process's user+system
CPU, start-up and imports included, as aip-bench's). Exit 0 only when errors and mismatched
are 0; 1 otherwise; 2 on a usage error; 3 when pydantic 2 or websockets is missing.
"""
import argparse
import asyncio
import datetime
import enum
import os
import resource
import sys
import time
import uuid
from typing import Any, Dict, List, Literal, Optional

try:
    import pydantic
    from pydantic import BaseModel
except ImportError:
    print("pydantic_rr: pydantic is not installed for %s" % sys.executable, file=sys.stderr)
    sys.exit(3)
if not pydantic.VERSION.startswith("2."):
    print("pydantic_rr: pydantic 2 is needed, %s has %s" % (sys.executable, pydantic.VERSION),
          file=sys.stderr)
    sys.exit(3)
try:
    import websockets
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")  # Debian's python3-websockets
    try:
        import websockets
    except ImportError:
        print("pydantic_rr: websockets is missing (apt-get install python3-websockets)",
              file=sys.stderr)
        sys.exit(3)


# ---- the AIP message models (fields and types as UFO's aip/messages.py) ----------------------

class TaskStatus(str, enum.Enum):
    CONTINUE = "continue"
    COMPLETED = "completed"
    FAILED = "failed"
    OK = "ok"
    ERROR = "error"


class ClientType(str, enum.Enum):
    DEVICE = "device"
    CONSTELLATION = "constellation"


class ClientMessageType(str, enum.Enum):
    TASK = "task"
    HEARTBEAT = "heartbeat"
    COMMAND_RESULTS = "command_results"
    ERROR = "error"
    REGISTER = "register"
    TASK_END = "task_end"
    DEVICE_INFO_REQUEST = "device_info_request"
    DEVICE_INFO_RESPONSE = "device_info_response"


class ServerMessageType(str, enum.Enum):
    TASK = "task"
    HEARTBEAT = "heartbeat"
    TASK_END = "task_end"
    COMMAND = "command"
    ERROR = "error"
    DEVICE_INFO_REQUEST = "device_info_request"
    DEVICE_INFO_RESPONSE = "device_info_response"


class ResultStatus(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    SKIPPED = "skipped"
    NONE = "none"


class Command(BaseModel):
    tool_name: str
    parameters: Optional[Dict[str, Any]] = None
    tool_type: Literal["data_collection", "action"]
    call_id: Optional[str] = None


class Result(BaseModel):
    status: ResultStatus
    error: Optional[str] = None
    result: Any = None
    namespace: Optional[str] = None
    call_id: Optional[str] = None


class ClientMessage(BaseModel):
    type: ClientMessageType
    status: TaskStatus
    client_type: ClientType = ClientType.DEVICE
    session_id: Optional[str] = None
    task_name: Optional[str] = None
    client_id: Optional[str] = None
    target_id: Optional[str] = None
    request: Optional[str] = None
    action_results: Optional[List[Result]] = None
    timestamp: Optional[str] = None
    request_id: Optional[str] = None
    prev_response_id: Optional[str] = None
    error: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None


class ServerMessage(BaseModel):
    type: ServerMessageType
    status: TaskStatus
    user_request: Optional[str] = None
    agent_name: Optional[str] = None
    process_name: Optional[str] = None
    root_name: Optional[str] = None
    actions: Optional[List[Command]] = None
    messages: Optional[List[str]] = None
    error: Optional[str] = None
    session_id: Optional[str] = None
    task_name: Optional[str] = None
    timestamp: Optional[str] = None
    response_id: Optional[str] = None
    result: Optional[Any] = None


# ---- the client --------------------------------------------------------------------------------

def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Client:
    def __init__(self, ws, client_id, target):
        self.ws = ws
        self.client_id = client_id
        self.target = target
        self.pending = {}  # request_id -> Future of a ServerMessage
        self.listener = None
        self.registered = asyncio.get_running_loop().create_future()

    async def listen(self):
        try:
            async for raw in self.ws:
                msg = ServerMessage.model_validate_json(raw)
                if msg.type == ServerMessageType.DEVICE_INFO_RESPONSE:
                    fut = self.pending.get(msg.response_id)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif msg.type == ServerMessageType.HEARTBEAT and not self.registered.done():
                    self.registered.set_result(True)
                elif msg.type == ServerMessageType.ERROR:
                    fut = self.pending.get(msg.response_id)
                    if fut is not None and not fut.done():
                        fut.set_exception(RuntimeError(msg.error))
                    elif not self.registered.done():
                        self.registered.set_exception(RuntimeError(msg.error))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection lost"))
            if not self.registered.done():
                self.registered.set_exception(ConnectionError("connection lost"))

    async def register(self):
        self.listener = asyncio.create_task(self.listen())
        await self.ws.send(ClientMessage(
            type=ClientMessageType.REGISTER, status=TaskStatus.OK,
            client_type=ClientType.CONSTELLATION, client_id=self.client_id,
            target_id=self.target,
            metadata={"type": "constellation_client", "targeted_device_id": self.target,
                      "registration_time": now_iso()},
            timestamp=now_iso()).model_dump_json())
        await asyncio.wait_for(self.registered, 10)

    async def request_device_info(self, timeout):
        request_id = str(uuid.uuid4())
        fut = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        try:
            await self.ws.send(ClientMessage(
                type=ClientMessageType.DEVICE_INFO_REQUEST, status=TaskStatus.OK,
                client_type=ClientType.CONSTELLATION, client_id=self.client_id,
                target_id=self.target, request_id=request_id,
                timestamp=now_iso()).model_dump_json())
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(request_id, None)
        return request_id, msg


async def run(args):
    url = args.server
    if args.token:
        url += ("&" if "?" in url else "?") + "token=" + args.token
    client_id = "pydantic-%d@%s" % (os.getpid(), args.target)
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
                if msg.response_id != rid or not isinstance(msg.result, dict):
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
        print("pydantic_rr: first error: " + stats["first_error"], file=sys.stderr)
    import json  # the result line only, not the messages
    print(json.dumps({
        "mode": "pydantic", "encoding": "json", "threads": 1, "inflight": args.inflight,
        "requests": total, "ok": stats["ok"], "errors": stats["errors"],
        "mismatched": stats["mismatched"], "seconds": round(secs, 3),
        "req_per_s": round(total / secs) if secs > 0 else 0,
        "p50_us": pct(0.50), "p99_us": pct(0.99), "p999_us": pct(0.999),
        "max_us": lat[-1] if lat else 0, "late": 0,
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "max_rss_kb": ru.ru_maxrss,
        "pydantic": pydantic.VERSION, "websockets": websockets.__version__},
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
    try:
        return asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001 - connect/registration failures: one line, exit 1
        print("pydantic_rr: %r" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
