#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""UFO-shaped Python clients against aip-test-server.

Starts ``BUILD_TOOLS_DIR/aip-test-server --port 0`` on 127.0.0.1 (and a
second instance with ``--token``), then plays UFO device and Galaxy
constellation clients against it and checks the server's answers against
docs/protocol.md section 3.  Every frame the clients send is built the way UFO's
pydantic models dump it (every envelope key present, unset ones null,
compact JSON) and they offer no WebSocket subprotocol, like UFO.

    /usr/bin/python3 tests/integration/ufo_clients_test.py BUILD_TOOLS_DIR [-v]

Needs only Debian 12's /usr/bin/python3 (3.11) and python3-websockets 10.4
(the asyncio client API, ``websockets.connect``).  Prints one ok/FAIL line
per check, then ``ufo clients: N passed, M failed`` last; exits 0 only when
every check passed.  See tests/integration/README.md.
"""

import asyncio
import datetime
import json
import os
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

import aiptest

MIB = 1 << 20
VERBOSE = False

# Texts UFO uses (docs/protocol.md 3.1, 3.3).
DUPLICATE_TEXT = ("client_id '{}' is already registered; "
                  "duplicate registrations are not allowed")
NOT_CONNECTED_TEXT = "Target device '{}' is not connected"
DISCONNECTED_TEXT = "Task was cancelled because target device disconnected"
SKIPPED_TEXT = "Skipped due to previous failure (early_exit=True)."

# ClientMessage / ServerMessage / Command / Result keys, in UFO's field order.
CLIENT_KEYS = ("type", "status", "client_type", "session_id", "task_name",
               "client_id", "target_id", "request", "action_results",
               "timestamp", "request_id", "prev_response_id", "error",
               "metadata")
SERVER_KEYS = ("type", "status", "user_request", "agent_name", "process_name",
               "root_name", "actions", "messages", "error", "session_id",
               "task_name", "timestamp", "response_id", "result")
COMMAND_KEYS = ("tool_name", "parameters", "tool_type", "call_id")
RESULT_KEYS = ("status", "error", "result", "namespace", "call_id")

SERVER_TYPES = {"heartbeat", "task", "command", "task_end",
                "device_info_request", "device_info_response", "error"}
STATUSES = {"continue", "completed", "failed", "ok", "error"}
SYSINFO_FIELDS = ("device_id", "platform", "os_version", "cpu_count",
                  "memory_total_gb", "hostname", "ip_address",
                  "supported_features", "platform_type", "schema_version",
                  "custom_metadata")

RUN_TAG = uuid.uuid4().hex[:8]


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def new_id():
    return str(uuid.uuid4())


def dump(obj, limit=600):
    text = json.dumps(obj, separators=(",", ":"), default=repr)
    return text if len(text) <= limit else text[:limit] + "...(+{} chars)".format(
        len(text) - limit)


# ---------------------------------------------------------------- UFO shapes

def client_message(type_, status, **fields):
    """A ClientMessage as UFO's ``model_dump_json()`` writes it: every key,
    in field order, unset ones null, client_type defaulting to device."""
    msg = dict.fromkeys(CLIENT_KEYS)
    msg["type"] = type_
    msg["status"] = status
    msg["client_type"] = "device"
    for key, value in fields.items():
        if key not in CLIENT_KEYS:
            raise KeyError("not a ClientMessage key: " + key)
        msg[key] = value
    return msg


def result_obj(status, result=None, error=None, namespace=None, call_id=None):
    """A Result with all five keys (UFO's model_dump)."""
    return {"status": status, "error": error, "result": result,
            "namespace": namespace, "call_id": call_id}


def system_info(device_id):
    """UFO's eleven system_info fields (docs/protocol.md section 4), in order."""
    return {
        "device_id": device_id,
        "platform": "linux",
        "os_version": "Debian GNU/Linux 12 (bookworm) 6.1.0-ufo-test",
        "cpu_count": 8,
        "memory_total_gb": 31.25,
        "hostname": "ufo-host-" + device_id,
        "ip_address": "192.0.2.77",
        "supported_features": ["gui", "cli", "browser", "file_system", "office"],
        "platform_type": "computer",
        "schema_version": "1.0",
        "custom_metadata": {"test_run": RUN_TAG, "nested": {"k": [1, 2.5, None]}},
    }


def is_iso_with_offset(value):
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def ufo_server_message_problems(frame):
    """What UFO's pydantic ServerMessage validation would reject (a UFO
    client drops such a frame), as a list of strings."""
    if not isinstance(frame, dict):
        return ["not a JSON object"]
    out = []
    if frame.get("type") not in SERVER_TYPES:
        out.append("type {!r} is not a ServerMessageType".format(frame.get("type")))
    if frame.get("status") not in STATUSES:
        out.append("status {!r} is not a TaskStatus".format(frame.get("status")))
    for key in ("user_request", "agent_name", "process_name", "root_name",
                "error", "session_id", "task_name", "timestamp", "response_id"):
        if frame.get(key) is not None and not isinstance(frame[key], str):
            out.append("{} is not a string or null".format(key))
    msgs = frame.get("messages")
    if msgs is not None and not (isinstance(msgs, list)
                                 and all(isinstance(m, str) for m in msgs)):
        out.append("messages is not a list of strings")
    actions = frame.get("actions")
    if actions is not None:
        if not isinstance(actions, list):
            out.append("actions is not a list")
        else:
            for i, cmd in enumerate(actions):
                if not isinstance(cmd, dict):
                    out.append("actions[{}] is not an object".format(i))
                    continue
                if not isinstance(cmd.get("tool_name"), str):
                    out.append("actions[{}].tool_name missing".format(i))
                if cmd.get("tool_type") not in ("data_collection", "action"):
                    out.append("actions[{}].tool_type {!r}".format(i, cmd.get("tool_type")))
                if cmd.get("parameters") is not None and not isinstance(cmd["parameters"], dict):
                    out.append("actions[{}].parameters not an object".format(i))
                if cmd.get("call_id") is not None and not isinstance(cmd["call_id"], str):
                    out.append("actions[{}].call_id not a string".format(i))
    if frame.get("timestamp") is not None and not is_iso_with_offset(frame["timestamp"]):
        out.append("timestamp {!r} is not ISO-8601 with an offset".format(frame["timestamp"]))
    return out


# ---------------------------------------------------------------- checks

C = aiptest.Checks(flush=True)
TMP = tempfile.mkdtemp(prefix="aip-ufo-clients-test.")
aiptest.kill_at_exit(wait=True, remove=TMP)


# ---------------------------------------------------------------- a UFO-shaped client

class Client:
    """One WebSocket connection, connected the way UFO's WebSocketTransport
    does (no subprotocol, default compression offer, ping 30 s / 180 s,
    100 MiB frames).  Received frames go to a backlog; ``expect`` takes the
    first one that matches."""

    def __init__(self, name, client_id, client_type="device"):
        self.name = name
        self.client_id = client_id
        self.client_type = client_type
        self.ws = None
        self.frames = []          # backlog of unclaimed received frames
        self.transcript = []      # (t, "in"/"out", frame)
        self.arrived = asyncio.Event()
        self.closed = False
        self.close_code = None
        self.reader = None

    async def connect(self, url, extra_headers=None):
        self.ws = await websockets.connect(
            url, ping_interval=30, ping_timeout=180, close_timeout=2,
            max_size=100 * MIB, open_timeout=5, extra_headers=extra_headers)
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    frame = {"__binary__": raw.hex()}
                else:
                    try:
                        frame = json.loads(raw)
                    except ValueError:
                        frame = {"__unparsed__": raw}
                self.transcript.append((time.monotonic(), "in", frame))
                if VERBOSE:
                    print("  {} <- {}".format(self.name, dump(frame)))
                self.frames.append(frame)
                self.arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.close_code = self.ws.close_code
            self.arrived.set()

    async def send(self, frame):
        self.transcript.append((time.monotonic(), "out", frame))
        if VERBOSE:
            print("  {} -> {}".format(self.name, dump(frame)))
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    def msg(self, type_, status, **fields):
        fields.setdefault("client_id", self.client_id)
        fields.setdefault("client_type", self.client_type)
        fields.setdefault("timestamp", now_iso())
        return client_message(type_, status, **fields)

    async def expect(self, pred, timeout=3.0):
        """First backlog frame with pred(frame) true (removed from the
        backlog), or None on timeout or when the connection is closed."""
        deadline = time.monotonic() + timeout
        while True:
            for i, frame in enumerate(self.frames):
                try:
                    hit = pred(frame)
                except Exception:           # a predicate on an odd frame
                    hit = False
                if hit:
                    return self.frames.pop(i)
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def take(self, pred):
        """Remove and return every backlog frame matching pred, now."""
        hits = [f for f in self.frames if pred(f)]
        self.frames = [f for f in self.frames if not pred(f)]
        return hits

    async def wait_closed(self, timeout=3.0):
        if self.reader is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self):
        if self.ws is not None and not self.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except (asyncio.TimeoutError, ConnectionClosed, OSError):
                self.ws.transport.abort()
        if self.reader is not None:
            await self.wait_closed(3.0)

    def last(self, n=6):
        return [(d, f) for _, d, f in self.transcript[-n:]]

    # -------- UFO registration frames

    def device_register(self, extra_metadata=None):
        metadata = {"system_info": system_info(self.client_id),
                    "platform": "linux",
                    "registration_time": now_iso()}
        if extra_metadata:
            metadata.update(extra_metadata)
        return self.msg("register", "ok", metadata=metadata)

    def constellation_register(self, target, extra_metadata=None):
        metadata = {"type": "constellation_client",
                    "targeted_device_id": target,
                    "registration_time": now_iso()}
        if extra_metadata:
            metadata.update(extra_metadata)
        return self.msg("register", "ok", target_id=target, metadata=metadata)


def is_type(t, status=None, **eq):
    def pred(f):
        if f.get("type") != t:
            return False
        if status is not None and f.get("status") != status:
            return False
        return all(f.get(k) == v for k, v in eq.items())
    return pred


def is_ack(f):
    return f.get("type") == "heartbeat" and f.get("status") == "ok"


def is_ack_or_error(f):
    return f.get("type") in ("heartbeat", "error")


def where(exc):
    """The innermost frames of this script in exc's traceback."""
    here = [f for f in traceback.extract_tb(exc.__traceback__)
            if f.filename == __file__]
    return " <- ".join("{}() line {}".format(f.name, f.lineno)
                       for f in reversed(here[-3:])) or "?"


def frame_detail(sent, got):
    return "sent {} ; got {}".format(dump(sent), dump(got))


# ---------------------------------------------------------------- HTTP

def http_get(port, path, headers=None):
    req = urllib.request.Request("http://127.0.0.1:{}{}".format(port, path),
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(exc)


async def http_get_async(port, path, headers=None):
    return await asyncio.get_running_loop().run_in_executor(
        None, http_get, port, path, headers)


def online_clients(body):
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("online_clients"), list):
        return data["online_clients"]
    return None


# ---------------------------------------------------------------- scenario

class Scenario:
    def __init__(self, port):
        self.port = port
        self.url = "ws://127.0.0.1:{}/ws".format(port)
        self.clients = []
        self.call_ids = set()        # every call_id seen in any command
        self.response_ids = set()    # every command response_id seen

    async def open(self, name, client_id, client_type="device", url=None,
                   extra_headers=None):
        cl = Client(name, client_id, client_type)
        self.clients.append(cl)
        await cl.connect(url or self.url, extra_headers)
        return cl

    async def register_device(self, name, client_id, extra_metadata=None):
        cl = await self.open(name, client_id, "device")
        reg = cl.device_register(extra_metadata)
        await cl.send(reg)
        ack = await cl.expect(lambda f: True, 5.0)
        return cl, reg, ack

    async def register_constellation(self, name, client_id, target,
                                     extra_metadata=None):
        cl = await self.open(name, client_id, "constellation")
        reg = cl.constellation_register(target, extra_metadata)
        await cl.send(reg)
        ack = await cl.expect(lambda f: True, 5.0)
        return cl, reg, ack

    def command_ok(self, name, cmd, expected, session_hint=None):
        """Checks one command frame against the expected actions
        [(tool_name, parameters, tool_type)], returns its call_ids."""
        problems = []
        if cmd is None:
            C.check(name, False, "no command frame arrived")
            return None
        if cmd.get("status") != "continue":
            problems.append("status {!r}, want continue".format(cmd.get("status")))
        rid = cmd.get("response_id")
        if not isinstance(rid, str) or not rid:
            problems.append("no response_id")
        elif rid in self.response_ids:
            problems.append("response_id {!r} reused".format(rid))
        else:
            self.response_ids.add(rid)
        if not isinstance(cmd.get("session_id"), str) or not cmd.get("session_id"):
            problems.append("no session_id")
        actions = cmd.get("actions")
        call_ids = []
        if not isinstance(actions, list) or len(actions) != len(expected):
            problems.append("actions {} , want {} actions".format(
                dump(actions), len(expected)))
        else:
            for i, (act, (tool, params, ttype)) in enumerate(zip(actions, expected)):
                if not isinstance(act, dict):
                    problems.append("actions[{}] not an object".format(i))
                    continue
                if act.get("tool_name") != tool:
                    problems.append("actions[{}].tool_name {!r}, want {!r}".format(
                        i, act.get("tool_name"), tool))
                if act.get("tool_type") != ttype:
                    problems.append("actions[{}].tool_type {!r}, want {!r}".format(
                        i, act.get("tool_type"), ttype))
                got_params = act.get("parameters")
                if got_params != params and not (params == {} and got_params is None):
                    problems.append("actions[{}].parameters {}, want {}".format(
                        i, dump(got_params), dump(params)))
                cid = act.get("call_id")
                if not isinstance(cid, str) or not cid:
                    problems.append("actions[{}] has no call_id".format(i))
                elif cid in self.call_ids or cid in call_ids:
                    problems.append("actions[{}].call_id {!r} not fresh".format(i, cid))
                call_ids.append(cid)
        self.call_ids.update(c for c in call_ids if isinstance(c, str))
        problems += ufo_server_message_problems(cmd)
        C.check(name, not problems, "; ".join(problems) + " ; frame " + dump(cmd))
        return call_ids

    async def answer_command(self, dev, cmd, results):
        frame = dev.msg("command_results", cmd.get("status") or "continue",
                        session_id=cmd.get("session_id"),
                        prev_response_id=cmd.get("response_id"),
                        action_results=results, request_id=new_id())
        await dev.send(frame)
        return frame

    def task_frame(self, con, target, request, session=None, task_name=None):
        task_name = task_name or "ufo_test_task_" + uuid.uuid4().hex[:6]
        session = session or "{}@{}".format(task_name, new_id())
        return con.msg("task", "continue", target_id=target, request=request,
                       task_name=task_name, session_id=session,
                       request_id=new_id())

    def task_end_result_ok(self, name, end, status, batches, request_text):
        """batches: list of [Result, ...] the device sent, one per batch."""
        problems = []
        if end is None:
            C.check(name, False, "no task_end arrived")
            return
        if end.get("status") != status:
            problems.append("status {!r}, want {!r} (error {!r})".format(
                end.get("status"), status, end.get("error")))
        res = end.get("result")
        if not isinstance(res, list) or len(res) != len(batches):
            problems.append("result is not a list of {} entries".format(len(batches)))
        else:
            for i, (entry, sent) in enumerate(zip(res, batches)):
                if not isinstance(entry, dict):
                    problems.append("result[{}] not an object".format(i))
                    continue
                if not isinstance(entry.get("request"), str):
                    problems.append("result[{}].request is not text".format(i))
                got = entry.get("result")
                if not isinstance(got, list) or len(got) != len(sent):
                    problems.append("result[{}].result has not {} Results".format(
                        i, len(sent)))
                    continue
                for j, (g, s) in enumerate(zip(got, sent)):
                    if not isinstance(g, dict):
                        problems.append("result[{}].result[{}] not an object".format(i, j))
                        continue
                    for key in ("status", "call_id", "result", "error"):
                        if g.get(key) != s.get(key):
                            problems.append("result[{}].result[{}].{} = {}, device sent {}".format(
                                i, j, key, dump(g.get(key)), dump(s.get(key))))
        if len(batches) == 1 and isinstance(res, list) and res and isinstance(res[0], dict) \
                and res[0].get("request") != request_text:
            C.note("{}: result[0].request is {} (task request was {})".format(
                name, dump(res[0].get("request")), dump(request_text)))
        problems += ufo_server_message_problems(end)
        C.check(name, not problems, "; ".join(problems) + " ; frame " + dump(end))

    # ------------------------------------------------------------ the run

    async def run(self):
        dev_id = "ufo-dev-a-" + RUN_TAG
        dev2_id = "ufo-dev-b-" + RUN_TAG
        ghost_id = "ufo-ghost-" + RUN_TAG
        con_id = "galaxy-const-1-" + RUN_TAG

        # ---- 1. device registration; duplicate refused
        dev, reg, ack = await self.register_device("devA", dev_id)
        ok = (ack is not None and ack.get("type") == "heartbeat"
              and ack.get("status") == "ok"
              and isinstance(ack.get("response_id"), str) and ack["response_id"]
              and is_iso_with_offset(ack.get("timestamp")))
        if not C.check("1 device registers: heartbeat/ok with response_id and ISO timestamp",
                       ok, frame_detail(reg, ack)):
            raise RuntimeError("device registration failed; nothing else can run")
        C.check("1 registration ack validates as UFO ServerMessage",
                not ufo_server_message_problems(ack), "; ".join(ufo_server_message_problems(ack)))
        reg_rid = ack.get("response_id")

        dup, dreg, dans = await self.register_device("devA-dup", dev_id)
        want = DUPLICATE_TEXT.format(dev_id)
        C.check("1 duplicate client_id refused with UFO's text",
                dans is not None and dans.get("type") == "error"
                and dans.get("status") == "error" and dans.get("error") == want,
                frame_detail(dreg, dans))
        C.check("1 duplicate registration's socket is closed by the server",
                await dup.wait_closed(3.0), "still open 3 s after the refusal")

        hb = dev.msg("heartbeat", "ok")
        await dev.send(hb)
        hback = await dev.expect(lambda f: True, 3.0)
        C.check("1 first registration still works after the duplicate (heartbeat acked, fresh response_id)",
                hback is not None and is_ack(hback)
                and isinstance(hback.get("response_id"), str)
                and hback.get("response_id") != reg_rid,
                frame_detail(hb, hback))

        # device may not ask device info (UFO: uncorrelated error)
        q = new_id()
        dreq = dev.msg("device_info_request", "ok", target_id=dev_id, request_id=q)
        await dev.send(dreq)
        dinfo = await dev.expect(lambda f: True, 3.0)
        C.check("device_info_request from a device gets an error (PROTOCOL 3.5)",
                dinfo is not None and dinfo.get("type") == "error",
                frame_detail(dreq, dinfo))

        # ---- 2. constellation registration, Galaxy heartbeat leniency
        con, creg, cack = await self.register_constellation("const1", con_id, dev_id)
        if not C.check("2 constellation registers targeting the device: heartbeat/ok",
                       cack is not None and is_ack(cack)
                       and isinstance(cack.get("response_id"), str),
                       frame_detail(creg, cack)):
            raise RuntimeError("constellation registration failed")

        ghb = client_message("heartbeat", "ok", client_id=con_id, timestamp=now_iso())
        # (UFO's HeartbeatProtocol leaves client_type at its default, device)
        await con.send(ghb)
        gack = await con.expect(lambda f: True, 3.0)
        C.check("2 Galaxy heartbeat (client_type device on a constellation) is acked, not an error",
                gack is not None and is_ack(gack), frame_detail(ghb, gack))
        await con.send(ghb)
        gack2 = await con.expect(lambda f: True, 3.0)
        C.check("2 a second Galaxy heartbeat is acked too",
                gack2 is not None and is_ack(gack2), frame_detail(ghb, gack2))
        chb = con.msg("heartbeat", "ok")
        await con.send(chb)
        cack2 = await con.expect(lambda f: True, 3.0)
        C.check("2 constellation heartbeat with client_type constellation is acked",
                cack2 is not None and is_ack(cack2), frame_detail(chb, cack2))

        # constellation targeting a device that is not connected: refused
        bad, breg, bans = await self.register_constellation(
            "const-ghost", "galaxy-const-ghost-" + RUN_TAG, ghost_id)
        C.check("2 constellation targeting a missing device is refused with UFO's text",
                bans is not None and bans.get("type") == "error"
                and bans.get("error") == NOT_CONNECTED_TEXT.format(ghost_id),
                frame_detail(breg, bans))
        C.check("2 ... and its socket is closed", await bad.wait_closed(3.0),
                "still open 3 s after the refusal")

        # ---- 3. device info
        q = "q-" + new_id()
        ireq = con.msg("device_info_request", "ok", target_id=dev_id, request_id=q)
        await con.send(ireq)
        info = await con.expect(lambda f: f.get("type") in ("device_info_response", "error"), 3.0)
        sent_info = reg["metadata"]["system_info"]
        ok = (info is not None and info.get("type") == "device_info_response"
              and info.get("status") == "ok" and info.get("response_id") == q
              and isinstance(info.get("result"), dict))
        C.check("3 device_info_response, status ok, response_id = request_id",
                ok, frame_detail(ireq, info))
        if ok:
            res = info["result"]
            C.check("3 result is the registration system_info (all eleven fields, same values)",
                    all(res.get(k) == sent_info[k] for k in SYSINFO_FIELDS),
                    "sent {} ; got {}".format(dump(sent_info), dump(res)))
            C.check("3 result keeps UFO's field order",
                    list(res.keys())[:11] == list(SYSINFO_FIELDS),
                    "order {}".format(list(res.keys())))
        q2 = "q-" + new_id()
        ireq2 = con.msg("device_info_request", "ok", target_id=ghost_id, request_id=q2)
        await con.send(ireq2)
        info2 = await con.expect(lambda f: f.get("type") in ("device_info_response", "error"), 3.0)
        C.check("3 device info for an unknown device: UFO shape (status ok, response_id, result.error)",
                info2 is not None and info2.get("type") == "device_info_response"
                and info2.get("response_id") == q2 and info2.get("status") == "ok"
                and isinstance(info2.get("result"), dict)
                and "error" in info2["result"],
                frame_detail(ireq2, info2))

        # ---- 4. tasks
        await self.task_two_actions(con, dev, dev_id)
        await self.task_failure(con, dev, dev_id)
        await self.task_two_batches(con, dev, dev_id)
        await self.task_free_text(con, dev, dev_id)

        # ---- 5. task for a device that is not connected
        await self.task_missing_device(dev_id, ghost_id, con)

        # ---- 6. device disconnects mid-task; later task to it errors
        dev2, d2reg, d2ack = await self.register_device("devB", dev2_id)
        C.check("6 second device registers", d2ack is not None and is_ack(d2ack),
                frame_detail(d2reg, d2ack))
        status, body = await http_get_async(self.port, "/api/clients")
        listed = online_clients(body) or []
        C.check("7 /api/clients lists the connected devices and constellation",
                status == 200 and dev_id in listed and dev2_id in listed
                and con_id in listed,
                "HTTP {} {}".format(status, body[:300]))
        C.check("7 /api/clients does not list refused registrations",
                status == 200 and ("galaxy-const-ghost-" + RUN_TAG) not in listed,
                "HTTP {} {}".format(status, body[:300]))
        await self.task_device_disconnects(dev2, dev2_id)
        listed = None
        for _ in range(20):
            status, body = await http_get_async(self.port, "/api/clients")
            listed = online_clients(body)
            if listed is not None and dev2_id not in listed:
                break
            await asyncio.sleep(0.05)
        C.check("7 /api/clients drops a device once it disconnected",
                listed is not None and dev2_id not in listed and dev_id in listed,
                "HTTP {} {}".format(status, body[:300]))
        status, body = await http_get_async(self.port, "/api/health")
        try:
            health = json.loads(body)
        except ValueError:
            health = None
        C.check("7 /api/health answers 200 with a JSON object",
                status == 200 and isinstance(health, dict),
                "HTTP {} {}".format(status, body[:300]))

        # ---- 8. unknown keys; identity mismatch
        await self.unknown_keys_and_identity(dev, con, dev_id, con_id)

        # ---- /echo
        await self.echo_path()

        # ---- every server frame, on every connection, is a valid ServerMessage
        bad_frames = []
        extra_keys = set()
        for cl in self.clients:
            for _, direction, frame in cl.transcript:
                if direction != "in":
                    continue
                probs = ufo_server_message_problems(frame)
                if probs:
                    bad_frames.append("{}: {} ({})".format(cl.name, dump(frame, 200),
                                                           "; ".join(probs)))
                if isinstance(frame, dict):
                    extra_keys.update(k for k in frame if k not in SERVER_KEYS)
        C.check("every frame the server sent validates as UFO's ServerMessage",
                not bad_frames, " | ".join(bad_frames[:5]))
        if extra_keys:
            C.note("server frames carry keys outside ServerMessage (UFO ignores them): {}".format(
                sorted(extra_keys)))

        # no stray commands reached the device
        stray = dev.take(is_type("command"))
        C.check("no unexpected command frames reached the device", not stray,
                dump(stray))

        for cl in self.clients:
            await cl.close()

    async def task_two_actions(self, con, dev, dev_id):
        request = json.dumps({"actions": [
            {"tool_name": "echo", "parameters": {"text": "hi"}},
            {"tool_name": "other", "tool_type": "data_collection", "parameters": {}}]})
        task = self.task_frame(con, dev_id, request)
        session = task["session_id"]
        await con.send(task)
        tack = await con.expect(is_ack_or_error, 3.0)
        C.check("4 task acked with heartbeat/ok carrying the task's session_id",
                tack is not None and is_ack(tack) and tack.get("session_id") == session,
                frame_detail(task, tack))
        cmd = await dev.expect(is_type("command"), 3.0)
        cids = self.command_ok(
            "4 device gets one command: 2 actions, tool_type filled in, fresh call_ids",
            cmd, [("echo", {"text": "hi"}, "action"),
                  ("other", {}, "data_collection")])
        if cmd is None or not cids or len(cids) != 2:
            return
        if cmd.get("session_id") != session:
            C.note("4 the device's command carries session_id {!r}, the constellation's task "
                   "used {!r}".format(cmd.get("session_id"), session))
        results = [result_obj("success", {"echo": "hi"}, namespace="test", call_id=cids[0]),
                   result_obj("success", {"collected": [1, 2, 3]}, namespace="test",
                              call_id=cids[1])]
        await self.answer_command(dev, cmd, results)
        end = await con.expect(is_type("task_end", session_id=session), 3.0)
        self.task_end_result_ok(
            "4 constellation gets task_end completed, UFO-shaped result with the device's Results",
            end, "completed", [results], request)
        copy = await dev.expect(is_type("task_end"), 3.0)
        C.check("4 device gets a task_end copy (completed, same session as its commands)",
                copy is not None and copy.get("status") == "completed"
                and copy.get("session_id") == cmd.get("session_id"),
                "got " + dump(copy))
        if copy is not None and end is not None and copy.get("result") != end.get("result"):
            C.note("4 the device's task_end copy has a different result than the constellation's")

    async def task_failure(self, con, dev, dev_id):
        request = json.dumps({"actions": [
            {"tool_name": "fails", "parameters": {"why": "test"}},
            {"tool_name": "after", "parameters": {}}]})
        task = self.task_frame(con, dev_id, request)
        session = task["session_id"]
        await con.send(task)
        tack = await con.expect(is_ack_or_error, 3.0)
        C.check("4 failing task acked with its session_id",
                tack is not None and is_ack(tack) and tack.get("session_id") == session,
                frame_detail(task, tack))
        cmd = await dev.expect(is_type("command"), 3.0)
        cids = self.command_ok("4 failing task: command with 2 actions",
                               cmd, [("fails", {"why": "test"}, "action"),
                                     ("after", {}, "action")])
        if cmd is None or not cids or len(cids) != 2:
            return
        results = [result_obj("failure", None, error="tool 'fails' failed on purpose",
                              namespace="test", call_id=cids[0]),
                   result_obj("skipped", None, error=SKIPPED_TEXT, namespace="test",
                              call_id=cids[1])]
        await self.answer_command(dev, cmd, results)
        end = await con.expect(is_type("task_end", session_id=session), 3.0)
        self.task_end_result_ok("4 a failure Result gives task_end failed, Results included",
                                end, "failed", [results], request)
        copy = await dev.expect(is_type("task_end"), 3.0)
        C.check("4 device gets the failed task_end copy",
                copy is not None and copy.get("status") == "failed",
                "got " + dump(copy))

    async def task_two_batches(self, con, dev, dev_id):
        request = json.dumps({"batches": [
            [{"tool_name": "b1", "parameters": {"n": 1}}],
            [{"tool_name": "b2", "parameters": {"n": 2}},
             {"tool_name": "b3", "tool_type": "data_collection", "parameters": {"n": 3}}]]})
        task = self.task_frame(con, dev_id, request)
        session = task["session_id"]
        await con.send(task)
        tack = await con.expect(is_ack_or_error, 3.0)
        C.check("4 two-batch task acked with its session_id",
                tack is not None and is_ack(tack) and tack.get("session_id") == session,
                frame_detail(task, tack))
        cmd1 = await dev.expect(is_type("command"), 3.0)
        cids1 = self.command_ok("4 batch 1: first command has b1 only", cmd1,
                                [("b1", {"n": 1}, "action")])
        if cmd1 is None or not cids1:
            return
        # the second batch must wait for the first one's results
        early = await dev.expect(is_type("command"), 0.3)
        C.check("4 batch 2 is not sent before batch 1 is answered", early is None,
                "got " + dump(early))
        if early is not None:
            dev.frames.insert(0, early)
        res1 = [result_obj("success", "one", call_id=cids1[0])]
        await self.answer_command(dev, cmd1, res1)
        cmd2 = await dev.expect(is_type("command"), 3.0)
        cids2 = self.command_ok("4 batch 2: second command has b2, b3 in order", cmd2,
                                [("b2", {"n": 2}, "action"),
                                 ("b3", {"n": 3}, "data_collection")])
        if cmd2 is None or not cids2 or len(cids2) != 2:
            return
        C.check("4 both batches' commands carry the same session_id",
                cmd1.get("session_id") == cmd2.get("session_id"),
                "{!r} vs {!r}".format(cmd1.get("session_id"), cmd2.get("session_id")))
        res2 = [result_obj("success", "two", call_id=cids2[0]),
                result_obj("success", {"three": 3}, call_id=cids2[1])]
        ends_before = con.take(is_type("task_end", session_id=session))
        C.check("4 no task_end before the last batch is answered", not ends_before,
                dump(ends_before))
        await self.answer_command(dev, cmd2, res2)
        end = await con.expect(is_type("task_end", session_id=session), 3.0)
        self.task_end_result_ok("4 two-batch task: one task_end completed with two entries",
                                end, "completed", [res1, res2], request)
        if end is not None and isinstance(end.get("result"), list) and len(end["result"]) == 2:
            C.note("4 two-batch result[*].request = {}".format(
                dump([e.get("request") if isinstance(e, dict) else e for e in end["result"]])))
        copy = await dev.expect(is_type("task_end"), 3.0)
        C.check("4 device gets the two-batch task_end copy",
                copy is not None and copy.get("status") == "completed",
                "got " + dump(copy))
        more = await con.expect(is_type("task_end", session_id=session), 0.2)
        C.check("4 exactly one task_end for the two-batch task", more is None,
                "second one: " + dump(more))

    async def task_free_text(self, con, dev, dev_id):
        task = self.task_frame(con, dev_id, "open notepad and type hello")
        session = task["session_id"]
        await con.send(task)
        end = await con.expect(is_type("task_end", session_id=session), 3.0)
        C.check("4 free-text request: task_end failed saying JSON actions are needed",
                end is not None and end.get("status") == "failed"
                and isinstance(end.get("error"), str) and "json" in end["error"].lower(),
                frame_detail(task, end))
        con.take(lambda f: is_ack(f) and f.get("session_id") == session)
        cmd = await dev.expect(is_type("command"), 0.2)
        C.check("4 free-text request sends no command to the device", cmd is None,
                "got " + dump(cmd))
        dev.take(is_type("task_end", session_id=session))

    async def task_missing_device(self, dev_id, ghost_id, con1):
        con2_id = "galaxy-const-2-" + RUN_TAG
        con2, reg, ack = await self.register_constellation(
            "const2", con2_id, dev_id, {"aip_extensions": ["correlated_errors"]})
        if not C.check("5 second constellation registers (lists correlated_errors)",
                       ack is not None and is_ack(ack), frame_detail(reg, ack)):
            return
        task = self.task_frame(con2, ghost_id, json.dumps(
            {"actions": [{"tool_name": "echo", "parameters": {"text": "nobody"}}]}))
        session = task["session_id"]
        t0 = time.monotonic()
        await con2.send(task)
        err = await con2.expect(lambda f: f.get("type") in ("error", "task_end"), 3.0)
        elapsed = time.monotonic() - t0
        C.check("5 task for a device that never connected: error carrying the task's session_id",
                err is not None and err.get("type") == "error"
                and err.get("status") == "error"
                and err.get("session_id") == session
                and err.get("error") == NOT_CONNECTED_TEXT.format(ghost_id),
                frame_detail(task, err))
        C.check("5 ... at once ({:.0f} ms, want < 1000 ms)".format(elapsed * 1000),
                err is not None and elapsed < 1.0, "")
        if err is not None and err.get("response_id") != task["request_id"]:
            C.note("5 the error's response_id is {!r}, the task's request_id was {!r} "
                   "(PROTOCOL 3.6 [ext] puts request_id there)".format(
                       err.get("response_id"), task["request_id"]))
        acks = con2.take(lambda f: is_ack(f) and f.get("session_id") == session)
        C.check("5 the rejected task was not acked (target checked before the ack)",
                not acks, dump(acks))
        # The same from a UFO constellation that lists no extension: an error, at once.
        task1 = self.task_frame(con1, ghost_id, json.dumps(
            {"actions": [{"tool_name": "echo", "parameters": {}}]}))
        t0 = time.monotonic()
        await con1.send(task1)
        err1 = await con1.expect(lambda f: f.get("type") in ("error", "task_end"), 3.0)
        elapsed = time.monotonic() - t0
        C.check("5 plain UFO constellation: error `Target device ... is not connected` at once",
                err1 is not None and err1.get("type") == "error"
                and err1.get("error") == NOT_CONNECTED_TEXT.format(ghost_id)
                and elapsed < 1.0,
                frame_detail(task1, err1) + " after {:.0f} ms".format(elapsed * 1000))
        if err1 is not None:
            C.note("5 without correlated_errors the error's session_id is {!r}".format(
                err1.get("session_id")))
        con1.take(lambda f: is_ack(f) and f.get("session_id") == task1["session_id"])
        # a task without target_id (UFO's text)
        task3 = self.task_frame(con2, None, json.dumps({"actions": []}))
        await con2.send(task3)
        err3 = await con2.expect(lambda f: f.get("type") in ("error", "task_end"), 3.0)
        C.check("5 task without target_id: error `Constellation task requests require target_id`",
                err3 is not None and err3.get("type") == "error"
                and err3.get("error") == "Constellation task requests require target_id",
                frame_detail(task3, err3))
        con2.take(lambda f: is_ack(f) and f.get("session_id") == task3["session_id"])
        await con2.close()

    async def task_device_disconnects(self, dev2, dev2_id):
        con3_id = "galaxy-const-3-" + RUN_TAG
        con3, reg, ack = await self.register_constellation(
            "const3", con3_id, dev2_id, {"aip_extensions": ["correlated_errors"]})
        if not C.check("6 constellation for the second device registers",
                       ack is not None and is_ack(ack), frame_detail(reg, ack)):
            return
        task = self.task_frame(con3, dev2_id, json.dumps(
            {"actions": [{"tool_name": "slow", "parameters": {"s": 60}}]}))
        session = task["session_id"]
        await con3.send(task)
        cmd = await dev2.expect(is_type("command"), 3.0)
        C.check("6 second device receives the command", cmd is not None,
                "nothing arrived")
        t0 = time.monotonic()
        await dev2.close()
        end = await con3.expect(lambda f: f.get("type") in ("task_end", "error")
                                and f.get("session_id") == session, 3.0)
        elapsed = time.monotonic() - t0
        C.check("6 device closes mid-task: task_end failed, `{}`".format(DISCONNECTED_TEXT),
                end is not None and end.get("type") == "task_end"
                and end.get("status") == "failed"
                and end.get("error") == DISCONNECTED_TEXT,
                frame_detail(task, end) + " after {:.0f} ms".format(elapsed * 1000))
        C.check("6 ... promptly ({:.0f} ms, want < 1000 ms)".format(elapsed * 1000),
                end is not None and elapsed < 1.0, "")
        con3.take(lambda f: is_ack(f) and f.get("session_id") == session)
        # now the device is gone: a task to it is refused at once
        task2 = self.task_frame(con3, dev2_id, json.dumps(
            {"actions": [{"tool_name": "echo", "parameters": {}}]}))
        t0 = time.monotonic()
        await con3.send(task2)
        err = await con3.expect(lambda f: f.get("type") in ("error", "task_end"), 3.0)
        elapsed = time.monotonic() - t0
        C.check("6 task to the disconnected device: error with its session_id at once",
                err is not None and err.get("type") == "error"
                and err.get("session_id") == task2["session_id"]
                and err.get("error") == NOT_CONNECTED_TEXT.format(dev2_id)
                and elapsed < 1.0,
                frame_detail(task2, err) + " after {:.0f} ms".format(elapsed * 1000))
        con3.take(lambda f: is_ack(f) and f.get("session_id") == task2["session_id"])
        # the constellation connection survives its target's disconnect
        hb = con3.msg("heartbeat", "ok")
        await con3.send(hb)
        hack = await con3.expect(lambda f: True, 3.0)
        C.check("6 the constellation stays connected and usable",
                hack is not None and is_ack(hack), frame_detail(hb, hack))
        await con3.close()

    async def unknown_keys_and_identity(self, dev, con, dev_id, con_id):
        hb = dev.msg("heartbeat", "ok")
        hb["x_future_field"] = {"nested": [1, {"deep": None}], "s": "v"}
        hb["another_unknown"] = None
        await dev.send(hb)
        ack = await dev.expect(lambda f: True, 3.0)
        C.check("8 unknown keys in a frame are ignored (heartbeat acked)",
                ack is not None and is_ack(ack), frame_detail(hb, ack))

        q = new_id()
        ireq = con.msg("device_info_request", "ok", target_id=dev_id, request_id=q)
        ireq["x_galaxy_extra"] = [1, 2, 3]
        await con.send(ireq)
        info = await con.expect(lambda f: True, 3.0)
        C.check("8 unknown keys in a device_info_request are ignored",
                info is not None and info.get("type") == "device_info_response"
                and info.get("response_id") == q, frame_detail(ireq, info))

        wrong = dev.msg("heartbeat", "ok", client_id="somebody-else-" + RUN_TAG)
        await dev.send(wrong)
        err = await dev.expect(lambda f: True, 3.0)
        C.check("8 a frame with the wrong client_id gets an error",
                err is not None and err.get("type") == "error"
                and err.get("status") == "error", frame_detail(wrong, err))
        hb2 = dev.msg("heartbeat", "ok")
        await dev.send(hb2)
        ack2 = await dev.expect(lambda f: True, 3.0)
        C.check("8 ... and the connection stays usable (next heartbeat acked)",
                ack2 is not None and is_ack(ack2) and not dev.closed,
                frame_detail(hb2, ack2))

        # a device heartbeat claiming client_type constellation: no leniency
        wrong_t = dev.msg("heartbeat", "ok", client_type="constellation")
        await dev.send(wrong_t)
        err2 = await dev.expect(lambda f: True, 3.0)
        C.check("8 a device heartbeat with client_type constellation gets an error",
                err2 is not None and err2.get("type") == "error", frame_detail(wrong_t, err2))
        # a constellation non-heartbeat frame with client_type device: no leniency
        q = new_id()
        wrong_c = con.msg("device_info_request", "ok", client_type="device",
                          target_id=dev_id, request_id=q)
        await con.send(wrong_c)
        err3 = await con.expect(lambda f: True, 3.0)
        C.check("8 a constellation device_info_request with client_type device gets an error",
                err3 is not None and err3.get("type") == "error", frame_detail(wrong_c, err3))
        hb3 = con.msg("heartbeat", "ok")
        await con.send(hb3)
        ack3 = await con.expect(lambda f: True, 3.0)
        C.check("8 the constellation stays usable after the mismatch",
                ack3 is not None and is_ack(ack3) and not con.closed,
                frame_detail(hb3, ack3))

    async def echo_path(self):
        url = "ws://127.0.0.1:{}/echo".format(self.port)
        try:
            ws = await websockets.connect(url, open_timeout=5, close_timeout=2)
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            C.check("/echo echoes a text frame", False, repr(exc))
            return
        try:
            text = json.dumps({"echo": RUN_TAG, "u": "\u00e9\u4e2d"})
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), 3)
            C.check("/echo echoes a text frame", got == text, "got {!r}".format(got))
        except (asyncio.TimeoutError, ConnectionClosed) as exc:
            C.check("/echo echoes a text frame", False, repr(exc))
        finally:
            await ws.close()


async def raw_handshake_status(port, path, headers=None):
    """The status line the server answers a WebSocket upgrade with, read off
    the socket (so an answer websockets cannot parse is still seen)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 3)
    except (OSError, asyncio.TimeoutError) as exc:
        return repr(exc)
    lines = ["GET {} HTTP/1.1".format(path), "Host: 127.0.0.1:{}".format(port),
             "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13"]
    for key, value in (headers or {}).items():
        lines.append("{}: {}".format(key, value))
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        status = await asyncio.wait_for(reader.readline(), 3)
    except (OSError, asyncio.TimeoutError) as exc:
        status = repr(exc).encode()
    writer.transport.abort()
    return status.decode("latin-1").strip()


async def token_checks(port, token):
    base = "ws://127.0.0.1:{}/ws".format(port)
    dev_id = "ufo-dev-tok-" + RUN_TAG

    async def handshake(url, headers=None):
        """websockets' view: 101, the rejection status, or the exception."""
        try:
            ws = await websockets.connect(url, open_timeout=5, close_timeout=2,
                                          extra_headers=headers)
        except InvalidStatusCode as exc:
            return exc.status_code, None
        except (OSError, asyncio.TimeoutError,
                websockets.exceptions.WebSocketException) as exc:
            cause = exc.__cause__
            return repr(exc) + (" ({!r})".format(cause) if cause else ""), None
        return 101, ws

    def status_code(line):
        parts = line.split()
        return parts[1] if len(parts) >= 2 and parts[0].startswith("HTTP/") else None

    for label, path in (("without the token", "/ws"),
                        ("with a wrong token", "/ws?token=wrong-" + RUN_TAG)):
        line = await raw_handshake_status(port, path)
        C.check("7 --token: ws handshake {} is rejected with HTTP 403".format(label),
                status_code(line) == "403", "status line {!r}".format(line))
        status, ws = await handshake("ws://127.0.0.1:{}{}".format(port, path))
        C.check("7 --token: websockets (UFO's library) reads the rejection {} as "
                "HTTP 403".format(label), status == 403,
                "websockets got {} ; server's status line {!r}".format(status, line))
        if ws is not None:
            await ws.close()

    line = await raw_handshake_status(port, "/ws?token=" + token)
    cl = Client("devTok", dev_id)
    try:
        await cl.connect(base + "?token=" + token)
        reg = cl.device_register()
        await cl.send(reg)
        ack = await cl.expect(lambda f: True, 3.0)
        C.check("7 --token: ws with ?token= is accepted and registers",
                ack is not None and is_ack(ack), frame_detail(reg, ack))
    except InvalidStatusCode as exc:
        C.check("7 --token: ws with ?token= is accepted and registers", False,
                "HTTP {}".format(exc.status_code))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
        C.check("7 --token: ws with ?token= is accepted and registers", False,
                "{!r} ; server's status line {!r}".format(exc, line))
    finally:
        await cl.close()

    status, ws = await handshake(base, {"Authorization": "Bearer " + token})
    C.check("7 --token: ws with Authorization: Bearer is accepted [ext]",
            status == 101, "got {}".format(status))
    if ws is not None:
        await ws.close()

    status, body = await http_get_async(port, "/api/clients")
    C.check("7 --token: /api/clients without X-API-Key gets 401",
            status == 401, "HTTP {} {}".format(status, body[:200]))
    status, body = await http_get_async(port, "/api/clients", {"X-API-Key": "wrong"})
    C.check("7 --token: /api/clients with a wrong X-API-Key gets 401",
            status == 401, "HTTP {} {}".format(status, body[:200]))
    status, body = await http_get_async(port, "/api/clients", {"X-API-Key": token})
    C.check("7 --token: /api/clients with X-API-Key answers 200 with online_clients",
            status == 200 and online_clients(body) is not None,
            "HTTP {} {}".format(status, body[:200]))


async def amain(tools_dir):
    binary = os.path.join(tools_dir, "aip-test-server")
    if not os.access(binary, os.X_OK):
        C.check("aip-test-server exists", False, binary + " is not an executable")
        return
    token = "tok-" + uuid.uuid4().hex
    servers = []
    try:
        for name, flags, key in (("main", ["--device-info", "cache"], None),
                                 ("token", [], token)):
            try:
                servers.append(aiptest.Server(binary, ["--host", "127.0.0.1"] + flags, TMP,
                                              token=key, name=name))
            except RuntimeError as exc:
                C.check("server ({}) prints `listening on 127.0.0.1:<port>`".format(name), False,
                        str(exc))
                return
            C.check("server ({}) prints `listening on 127.0.0.1:<port>`".format(name), True)
        main, tok = servers
        scen = Scenario(main.port)
        try:
            await asyncio.wait_for(scen.run(), 40)
        except asyncio.TimeoutError:
            C.check("scenario finished within 40 s", False, "timed out")
        except RuntimeError as exc:
            C.check("scenario could continue", False, str(exc))
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            C.check("scenario ran without a connection error", False,
                    "{!r} in {}".format(exc, where(exc)))
        finally:
            for cl in scen.clients:
                if cl.ws is not None and not cl.closed:
                    cl.ws.transport.abort()
        C.check("server (main) still running after the scenario", main.alive(),
                "exit code {}".format(main.p.poll()))
        try:
            await asyncio.wait_for(token_checks(tok.port, token), 20)
        except asyncio.TimeoutError:
            C.check("token checks finished within 20 s", False, "timed out")
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            C.check("token checks ran without a connection error", False, repr(exc))
    finally:
        alive = {srv.name: srv.alive() for srv in servers}
        for srv in servers:
            srv.terminate()
        deadline = time.monotonic() + 5.0
        for srv in servers:
            code = srv.reap(deadline)
            if alive[srv.name]:
                C.check("server ({}) exits 0 within 5 s of SIGTERM".format(srv.name),
                        code == 0, "exit code {}".format(
                            code if code is not None else "none: still running, SIGKILLed"))
            tail = srv.stderr_tail()
            if C.failed or VERBOSE:
                if tail:
                    print("--- {} server stderr (last {} lines)".format(srv.name, len(tail)))
                    for line in tail:
                        print("    " + line)


def main():
    global VERBOSE
    args = [a for a in sys.argv[1:] if a not in ("-v", "--verbose")]
    VERBOSE = len(args) != len(sys.argv) - 1
    if len(args) != 1:
        print("usage: ufo_clients_test.py BUILD_TOOLS_DIR [-v]", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        asyncio.run(amain(args[0]))
    except KeyboardInterrupt:
        C.check("not interrupted", False, "KeyboardInterrupt")
    print("({:.1f} s)".format(time.monotonic() - started))
    print("ufo clients: {} passed, {} failed".format(C.passed, C.failed))
    return 0 if C.failed == 0 and C.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
