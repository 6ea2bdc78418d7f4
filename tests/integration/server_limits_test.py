#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: aip-test-server under hostile peers — memory bounded in total, task frames that
would make it allocate by the product of two client-chosen counts, and roles as UFO's server
enforces them (docs/security.md, "aip-test-server: budgets, parsing and roles").

Checks, each against a fresh server on 127.0.0.1:
- budget: a device with a 15 MiB system_info and 5 constellations that ask 4 times each (under
  the per-connection cap) and never read: the server's peak RSS during the flood stays under
  --max-total-queue plus a fixed margin, the readers furthest behind are dropped (counted) and
  their links closed although they read nothing, and the server serves on.
- snapshot: with that device present a new /events viewer gets its snapshot (a summary of the
  system_info, not 15 MiB), the replayed events are small, and the whole system_info is still
  one GET /api/clients/{id} away.
- caps: --max-clients refuses a registration with an error and 1013; --max-connections refuses
  an upgrade with 503; both counted.
- task frames: one 300,000-action batch plus 299,999 one-action batches (13.8 MB) fails at once
  with a defined error naming the cap, over WebSocket and over POST /api/dispatch; so does a
  task with too many actions in all; the server survives and runs a sane task after.
- roles: hostile peers try identity spoofing, a device's task to another device, a session of
  another client, forged command_results, forged device_info_response, a foreign task_end;
  each gets an error and changes nothing; the legitimate flow completes.

usage: server_limits_test.py AIP_TEST_SERVER_BINARY [--list] [SCENARIO ...]
Each scenario is its own group (ctest: server_limits.snapshot, .caps, .tasks, .roles, .budget).
"""
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import tempfile
import time
import uuid

import websockets

import aiptest

SERVER = aiptest.script_args(1, "AIP_TEST_SERVER_BINARY")
MIB = 1 << 20
checks = aiptest.Checks(flush=True, ok_detail=True)
check = checks.check
scenario = aiptest.scenario
api = aiptest.api
aiptest.kill_at_exit()


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


TMP = tempfile.mkdtemp(prefix="aip-limits-test.")
aiptest.kill_at_exit(remove=TMP)


def start_server(*flags):
    """A fresh aip-test-server (--no-token, warnings only): (the aiptest.Server, its port)."""
    srv = aiptest.Server(SERVER, flags, TMP, log_level="warn")
    return srv, srv.port


def stop_server(srv, name):
    """SIGTERM; checks exit 0 and no sanitizer report in the server's stderr."""
    code, bad = srv.stop()
    return check(name + ": the server stops cleanly (exit 0, no sanitizer report)",
                 code == 0 and not bad, (code, bad[:3]))


def metric(port, name):
    _, text = api(port, "GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def reset_peak(pid):
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def msg(type_, client_id, client_type, **kw):
    m = {"type": type_, "status": kw.pop("status", "ok"), "client_id": client_id,
         "client_type": client_type, "timestamp": now_iso()}
    m.update(kw)
    return m


# ---- a raw WebSocket client that sends and never reads (a stalled peer) ---------------------

class RawPeer:
    def __init__(self, port, path="/ws"):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None

    def send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 65536 else \
            (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
             ).to_bytes(n, "big")
        self.s.sendall(hdr + mask + body)

    def close(self):
        self.s.close()


# ---- an asyncio peer that reads everything ---------------------------------------------------

class Peer:
    def __init__(self, client_id, client_type):
        self.id, self.type = client_id, client_type
        self.frames, self.ws, self.closed = [], None, None
        self.event = asyncio.Event()

    async def connect(self, port, path="/ws"):
        self.ws = await websockets.connect("ws://127.0.0.1:%d%s" % (port, path), max_size=None,
                                           ping_interval=None)
        asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self.event.set()
        except websockets.ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason)
        self.event.set()

    async def send(self, frame):
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    def m(self, type_, **kw):
        return msg(type_, self.id, self.type, **kw)

    async def expect(self, pred, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            for i, f in enumerate(self.frames):
                try:
                    if pred(f):
                        return self.frames.pop(i)
                except Exception:
                    pass
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def register(self, port, target=None, system_info=None, extensions=()):
        await self.connect(port)
        md = {"aip_extensions": list(extensions)}
        if system_info is not None:
            md["system_info"] = system_info
        await self.send(self.m("register", target_id=target, metadata=md))
        return await self.expect(lambda f: f["type"] in ("heartbeat", "error"))

    async def close(self):
        await self.ws.close()


def is_error(text):
    return lambda f: f["type"] == "error" and text in (f.get("error") or "")


def big_system_info(cid, size):
    return {"device_id": cid, "platform": "linux", "os_version": "test", "cpu_count": 2,
            "memory_total_gb": 1.0, "hostname": "h-" + cid, "ip_address": "127.0.0.1",
            "supported_features": [], "platform_type": "computer", "schema_version": "1.0",
            "custom_metadata": {"blob": "x" * size}}


# ---- item 3: the outbound budget -------------------------------------------------------------

def flood(port, pid, n_con=5, asks=4, si_mib=15, settle=4.0):
    """The scenario of the issue, scaled: n_con constellations ask asks times each about a
    device with a si_mib system_info, and read nothing. 4 answers of 15 MiB stay under the
    per-connection cap (--max-queue, 64 MiB), so only a server-wide budget bounds the total
    (before it: 5 x 60 MiB pinned, 366 MiB peak). Returns (peak RSS during the flood in MiB,
    RSS after, the device, the constellations)."""
    dev = RawPeer(port)
    dev.send(msg("register", "bigdev", "device",
                 metadata={"system_info": big_system_info("bigdev", si_mib * MIB)}))
    aiptest.wait_for(lambda: api(port, "GET", "/api/clients/bigdev")[0] == 200, 20)
    time.sleep(0.5)
    reset_peak(pid)
    cons = []
    for i in range(n_con):
        c = RawPeer(port)
        c.send(msg("register", "stall-%d" % i, "constellation", target_id="bigdev"))
        for _ in range(asks):
            c.send(msg("device_info_request", "stall-%d" % i, "constellation",
                       target_id="bigdev", request_id=str(uuid.uuid4())))
        cons.append(c)
    time.sleep(settle)
    peak = proc_kb(pid, "VmHWM") / 1024.0
    rss = proc_kb(pid, "VmRSS") / 1024.0
    return peak, rss, dev, cons


@scenario("budget")
def budget_checks():
    # RSS means little under a sanitizer (shadow memory, quarantine): the drops are checked,
    # the peak is not
    measure = not os.environ.get("AIP_SANITIZE")
    budget = 48
    p, port = start_server("--max-total-queue", str(budget * MIB))
    base = proc_kb(p.pid, "VmRSS") / 1024.0
    peak, rss, dev, cons = flood(port, p.pid)
    margin = 96  # the device's system_info (15 MiB) and two transient copies per answer
    if measure:
        check("budget: 5 stalled constellations x 4 answers of 15 MiB: peak RSS %.0f MiB during "
              "the flood <= budget %d MiB + %d MiB" % (peak, budget, margin),
              peak <= budget + margin, "RSS now %.0f MiB, at start %.0f MiB" % (rss, base))
    drops = metric(port, 'aip_errors_total{kind="outbound_budget"}') or 0
    queued = metric(port, "aip_queued_bytes")
    check("budget: the readers furthest behind were dropped and counted (%d), queued %.0f MiB "
          "<= budget" % (drops, (queued or 0) / MIB),
          drops >= 1 and queued is not None and queued <= budget * MIB)
    gone = aiptest.wait_for(
        lambda: metric(port, 'aip_connections{type="constellation"}') == 0, 10)
    check("budget: a dropped reader's link is closed even though it reads nothing", gone)
    st, b = api(port, "GET", "/api/health")
    check("budget: the server serves on", st == 200 and b.get("online_clients") == 1, b)
    for c in cons:
        c.close()
    dev.close()
    stop_server(p, "budget")
    return peak


# ---- item 3: the snapshot, the feed and the API with a big system_info ----------------------

@scenario("snapshot")
async def snapshot_checks():
    p, port = start_server()
    dev = Peer("bigsi", "device")
    ack = await dev.register(port, system_info=big_system_info("bigsi", 3 * MIB))
    check("snapshot: a device registers with a 3 MiB system_info", ack and ack["type"] == "heartbeat",
          ack)
    v = await Peer("viewer", None).connect(port, "/events")
    snap = await v.expect(lambda f: f["type"] == "snapshot", 5)
    line = len(json.dumps(snap)) if snap else None
    c = next((c for c in (snap or {}).get("clients", []) if c["client_id"] == "bigsi"), None)
    check("snapshot: a new viewer gets its snapshot (%s bytes) although the system_info is over "
          "the viewer's 1 MiB cap" % line, snap is not None and line < 64 * 1024,
          v.closed or line)
    check("snapshot: the device's system_info is a summary that says so",
          c is not None and c.get("system_info_summarised") is True and
          c["system_info"].get("hostname") == "h-bigsi" and
          "custom_metadata" not in c["system_info"] and
          c.get("system_info_bytes", 0) > 3 * MIB, c)
    await asyncio.sleep(0.3)
    events = [f for f in v.frames if f.get("type") == "event"]
    reg = [f for f in events if f.get("kind") == "registered"]
    check("snapshot: the replayed events are small (largest %d bytes), the registration among them"
          % max([len(json.dumps(f)) for f in events] or [0]),
          reg and all(len(json.dumps(f)) < 16 * 1024 for f in events), len(events))
    st, full = api(port, "GET", "/api/clients/bigsi")
    check("snapshot: GET /api/clients/{id} still has the whole system_info",
          st == 200 and len(full["system_info"]["custom_metadata"]["blob"]) == 3 * MIB and
          full["system_info_summarised"] is False, st)
    st, det = api(port, "GET", "/api/clients/details")
    check("snapshot: GET /api/clients/details summarises it",
          st == 200 and det["clients"][0]["system_info_summarised"] is True and
          len(json.dumps(det)) < 64 * 1024, st)
    await v.close()
    await dev.close()
    stop_server(p, "snapshot")


# ---- item 3: connection and client caps ------------------------------------------------------

@scenario("caps")
async def cap_checks():
    p, port = start_server("--max-connections", "4", "--max-clients", "2")
    a, b = Peer("cap-a", "device"), Peer("cap-b", "device")
    await a.register(port, system_info={"device_id": "cap-a"})
    await b.register(port, system_info={"device_id": "cap-b"})
    c = Peer("cap-c", "device")
    got = await c.register(port, system_info={"device_id": "cap-c"})
    await c.expect(lambda f: False, 2)
    check("caps: a registration past --max-clients gets an error and close 1013",
          got and got["type"] == "error" and "--max-clients" in got["error"] and
          c.closed and c.closed[0] == 1013, (got, c.closed))
    v1 = await Peer("v1", None).connect(port, "/events")
    v2 = await Peer("v2", None).connect(port, "/events")
    raw = RawPeer(port, "/events")
    check("caps: an upgrade past --max-connections gets HTTP 503", raw.status == 503, raw.status)
    raw.close()
    check("caps: both refusals are counted",
          metric(port, 'aip_registrations_refused_total{reason="server_full"}') == 1 and
          metric(port, "aip_connections_refused_total") == 1)
    await v2.close()
    await v2.expect(lambda f: False, 0.3)
    v3 = RawPeer(port, "/events")
    check("caps: a slot that frees up is taken again", v3.status == 101, v3.status)
    v3.close()
    for x in (a, b, v1):
        await x.close()
    stop_server(p, "caps")


# ---- item 4: task frames sized by client-chosen counts ---------------------------------------

@scenario("tasks")
async def task_frame_checks():
    p, port = start_server()
    dev = Peer("tdev", "device")
    await dev.register(port, system_info={"device_id": "tdev"})
    con = Peer("tcon", "constellation")
    await con.register(port, target="tdev")
    act = {"tool_name": "echo", "parameters": {"text": "x"}}
    tiny = {"tool_name": "e"}
    batches = [[tiny] * 300000] + [[tiny]] * 299999
    req = json.dumps({"batches": batches}, separators=(",", ":"))
    sid = "crafted@" + str(uuid.uuid4())
    await con.send(con.m("task", status="continue", target_id="tdev", session_id=sid,
                         task_name="crafted", request=req, request_id="r-crafted"))
    end = await con.expect(lambda f: f["type"] == "task_end" and f["session_id"] == sid, 60)
    want = ("batch 0 has 300000 actions; aip-test-server takes at most 1024 per batch "
            "(--max-actions-per-batch)")
    check("tasks: a %.1f MB frame of one 300,000-action batch + 299,999 batches fails at once "
          "with a defined error" % (len(req) / 1e6),
          end and end["status"] == "failed" and end["error"] == want,
          end and end.get("error"))
    req2 = json.dumps({"batches": [[act]] * 5000})
    await con.send(con.m("task", status="continue", target_id="tdev", session_id=sid + "-2",
                         request=req2))
    end = await con.expect(lambda f: f["type"] == "task_end" and f["session_id"] == sid + "-2",
                           30)
    check("tasks: 5,000 actions in all fail with the --max-actions error",
          end and end["status"] == "failed" and end["error"] ==
          "the task has 5000 actions in 5000 batch(es); aip-test-server takes at most 4096 in "
          "one task (--max-actions)", end and end.get("error"))
    cmds = [f for f in dev.frames if f["type"] == "command"]
    check("tasks: the device got no command from them", not cmds, len(cmds))
    st, b = await asyncio.get_running_loop().run_in_executor(
        None, api, port, "POST", "/api/dispatch",
        {"client_id": "tdev", "request": {"actions": [act] * 2000}})
    check("tasks: POST /api/dispatch with 2,000 actions in a batch: 400 with the cap named",
          st == 400 and "--max-actions-per-batch" in b.get("error", ""), (st, b))
    await con.send(con.m("task", status="continue", target_id="tdev", session_id=sid + "-3",
                         request=json.dumps({"batches": [[act, act], [act]]})))
    for n in (2, 1):
        cmd = await dev.expect(lambda f: f["type"] == "command", 10)
        ok = cmd and len(cmd["actions"]) == n and cmd["actions"][0]["parameters"] == {"text": "x"}
        if cmd:
            await dev.send(dev.m("command_results", status="continue",
                                 session_id=cmd["session_id"],
                                 prev_response_id=cmd["response_id"],
                                 action_results=[{"status": "success", "result": "x",
                                                  "call_id": a["call_id"]}
                                                 for a in cmd["actions"]]))
    end = await con.expect(lambda f: f["type"] == "task_end" and f["session_id"] == sid + "-3",
                           10)
    check("tasks: the server survives and runs a sane two-batch task after",
          ok and end and end["status"] == "completed" and len(end["result"]) == 2, end)
    many = '{"actions":[{"tool_name":"e","parameters":{"a":[' + ",".join(["0"] * 1100000) + \
        ']}}]}'
    await con.send(con.m("task", status="continue", target_id="tdev", session_id=sid + "-4",
                         request=many))
    end = await con.expect(lambda f: f["type"] == "task_end" and f["session_id"] == sid + "-4",
                           30)
    check("tasks: a request whose tree would be too big is refused before it is built",
          end and end["status"] == "failed" and
          end["error"].startswith("the request is JSON the server will not parse: "),
          end and end.get("error"))
    check("tasks: the refused tasks are counted",
          metric(port, 'aip_errors_total{kind="bad_task"}') == 4)
    # results: each batch's answer is kept until the task ends, so their sum is bounded
    await con.send(con.m("task", status="continue", target_id="tdev", session_id=sid + "-5",
                         request=json.dumps({"batches": [[act], [act]]})))
    for _ in range(2):
        cmd = await dev.expect(lambda f: f["type"] == "command", 10)
        if not cmd:
            break
        await dev.send(dev.m("command_results", status="continue", session_id=cmd["session_id"],
                             prev_response_id=cmd["response_id"],
                             action_results=[{"status": "success", "result": "r" * (9 * MIB),
                                              "call_id": cmd["actions"][0]["call_id"]}]))
    end = await con.expect(lambda f: f["type"] == "task_end" and f["session_id"] == sid + "-5",
                           30)
    check("tasks: results over --max-frame in all fail the task instead of growing",
          end and end["status"] == "failed" and end.get("result") is None and
          end["error"] == "the task's results passed 16777216 bytes (--max-frame)",
          end and end.get("error"))
    await con.close()
    await dev.close()
    stop_server(p, "tasks")


# ---- item 5: roles -----------------------------------------------------------------------------

@scenario("roles")
async def role_checks():
    p, port = start_server()
    d1, d2 = Peer("rdev1", "device"), Peer("rdev2", "device")
    await d1.register(port, system_info={"device_id": "rdev1", "hostname": "one"},
                      extensions=["live_device_info", "correlated_errors"])
    await d2.register(port, system_info={"device_id": "rdev2"})
    c1, c2 = Peer("rcon1", "constellation"), Peer("rcon2", "constellation")
    await c1.register(port, target="rdev1")
    await c2.register(port, target="rdev1")
    refusals = 0

    async def refused(peer, frame, text, name):
        nonlocal refusals
        await peer.send(frame)
        got = await peer.expect(lambda f: f["type"] in ("error", "heartbeat", "task_end"), 3)
        ok = got is not None and got["type"] == "error" and text in (got.get("error") or "")
        refusals += 1
        return check("roles: " + name, ok, got)

    # 1. identity pinning
    hb = d2.m("heartbeat")
    hb["client_id"] = "rdev1"
    await refused(d2, hb, "client_id mismatch", "a frame naming another client_id is refused")
    hb = d2.m("heartbeat")
    del hb["client_id"]
    await refused(d2, hb, "client_id mismatch", "a frame without its client_id is refused")

    # 2. a device's task to another device
    act = {"tool_name": "echo", "parameters": {"text": "hi"}}
    await refused(d2, d2.m("task", status="continue", target_id="rdev1", session_id="steal-1",
                           request=json.dumps({"actions": [act]})),
                  "a device's task runs on the device itself",
                  "a device cannot send a task to another device")
    stolen = await d1.expect(lambda f: f["type"] == "command", 0.5)
    check("roles: ... and that device gets no command", stolen is None, stolen)

    # 3. a session belongs to its constellation
    await c1.send(c1.m("task", status="continue", target_id="rdev1", session_id="S1",
                       request=json.dumps({"actions": [act]})))
    cmd = await d1.expect(lambda f: f["type"] == "command", 5)
    await refused(c2, c2.m("task", status="continue", target_id="rdev1", session_id="S1",
                           request=json.dumps({"actions": [act]})),
                  "session_id 'S1' is owned by another client",
                  "another constellation cannot take over a running session")

    # 5. command results from the wrong peer
    forged = [{"status": "success", "result": "forged", "call_id": a["call_id"]}
              for a in cmd["actions"]]
    await refused(d2, d2.m("command_results", status="continue", session_id="S1",
                           prev_response_id=cmd["response_id"], action_results=forged),
                  "which was sent to another device",
                  "another device cannot answer a command")
    await refused(c2, c2.m("command_results", status="continue", session_id="S1",
                           prev_response_id=cmd["response_id"], action_results=forged),
                  "only for device clients", "a constellation cannot answer a command")
    await refused(d1, d1.m("command_results", status="continue", session_id="not-S1",
                           prev_response_id=cmd["response_id"], action_results=forged),
                  "belongs to another session",
                  "command_results naming another session are refused")

    # 6. task_end from a client
    await refused(d2, d2.m("task_end", status="completed", session_id="S1"),
                  "task_end for session 'S1' refused",
                  "a device cannot end a session that does not run on it")
    await d1.send(d1.m("task_end", status="completed", session_id="S1"))
    quiet = await d1.expect(lambda f: f["type"] == "error", 0.5)
    check("roles: the device running S1 may send its task_end", quiet is None, quiet)

    # the real answer completes the task, for its owner only
    await d1.send(d1.m("command_results", status="continue", session_id="S1",
                       prev_response_id=cmd["response_id"],
                       action_results=[{"status": "success", "result": "real",
                                        "call_id": a["call_id"]} for a in cmd["actions"]]))
    end = await c1.expect(lambda f: f["type"] == "task_end" and f["session_id"] == "S1", 5)
    check("roles: the owner's task completes with the real device's result",
          end and end["status"] == "completed" and end["result"][0]["result"][0]["result"] ==
          "real", end)
    leak = await c2.expect(lambda f: f["type"] == "task_end", 0.5)
    check("roles: the other constellation sees nothing of S1", leak is None, leak)

    # 4. device info
    await refused(d2, d2.m("device_info_request", target_id="rdev1", request_id="q-dev"),
                  "only for constellation clients", "a device cannot ask for device info")
    await refused(c2, c2.m("device_info_response", metadata={"device_id": "rcon2"}),
                  "only for device clients", "a constellation cannot send device info")
    await c1.send(c1.m("device_info_request", target_id="rdev1", request_id="q-live"))
    q = await d1.expect(lambda f: f["type"] == "device_info_request", 5)
    await refused(d2, d2.m("device_info_response", prev_response_id=q["response_id"],
                           metadata={"device_id": "rdev1", "hostname": "forged"}),
                  "a query sent to another device",
                  "another device cannot answer a live device-info query")
    await d1.send(d1.m("device_info_response", prev_response_id=q["response_id"],
                       metadata={"device_id": "rdev1", "hostname": "one"}))
    ans = await c1.expect(lambda f: f["type"] == "device_info_response", 5)
    check("roles: the constellation gets the real device's answer",
          ans and ans["response_id"] == "q-live" and ans["result"]["hostname"] == "one", ans)
    _, dev2 = api(port, "GET", "/api/clients/rdev2")
    _, con2 = api(port, "GET", "/api/clients/rcon2")
    check("roles: the forged infos changed nothing",
          dev2["system_info"] == {"device_id": "rdev2"} and con2["system_info"] is None,
          (dev2["system_info"], con2["system_info"]))
    n = metric(port, 'aip_errors_total{kind="unauthorized"}')
    check("roles: every refusal is counted (%s)" % n, n == refusals, (n, refusals))
    for x in (d1, d2, c1, c2):
        await x.close()
    stop_server(p, "roles")


if __name__ == "__main__":
    sys.exit(aiptest.main(checks, timing=True))
