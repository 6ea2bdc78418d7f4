#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Scripted AIP server peer for the C client integration tests.

A small, deliberately configurable AIP server (wire format: docs/protocol.md;
options and log format: tests/integration/README.md) that can be told to
misbehave in precise ways, so the C client library can be tested against
slow, silent, hostile and vanishing servers.

Runs with Debian 12's /usr/bin/python3 (3.11) and python3-websockets 10.4
(the legacy asyncio server API), standard library otherwise.  Listens on
127.0.0.1 only, speaks JSON in text frames only and never selects a
WebSocket subprotocol.

    /usr/bin/python3 tests/integration/peers/aip_peer.py --port 0 [options]

prints exactly one line ``listening on 127.0.0.1:<port>`` once listening,
then serves until SIGTERM/SIGINT and exits 0.
"""

import argparse
import asyncio
import datetime
import hmac
import http
import itertools
import json
import logging
import os
import random
import signal
import sys
import time
import urllib.parse
import uuid

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.server import serve

MIB = 1 << 20

# Text UFO uses; the peer copies it exactly.
DUPLICATE_TEXT = ("client_id '{}' is already registered; "
                  "duplicate registrations are not allowed")
NOT_CONNECTED_TEXT = "Target device '{}' is not connected"

CLIENT_TYPES = {"register", "heartbeat", "task", "command_results", "task_end",
                "device_info_request", "device_info_response", "error"}
STATUSES = {"continue", "completed", "failed", "ok", "error"}

INFO_MODES = ("answer", "never", "error-correlated", "error-uncorrelated",
              "unknown-device", "drop", "close")
TASK_MODES = ("complete", "fail", "never", "error-correlated", "drop")

# --garbage: sent one by one, 0.05 s apart, right after the registration ack.
GARBAGE = [
    "not json",
    "[]",
    '{"type":"reboot","status":"ok"}',
    '{"type":"heartbeat"}',
    '{"type":"command","status":"continue","response_id":"bad-1","actions":"nope"}',
    '{"type":"command","status":"continue","actions":[]}',
    '{"type":"heartbeat","status":"ok","x":{"y":{"z":[1,2,{"w":null}]}}}',
    b"\xff\xfe not utf-8 \xc3\x28 \xed\xa0\x80",  # BINARY frame
    '{"type":"heartbeat","status":"ok","response_id":"after-garbage"}',
]


def now_iso():
    """ISO-8601 UTC with +00:00, like UFO."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def new_id():
    return str(uuid.uuid4())


def system_info(device_id):
    """UFO's eleven system_info fields (docs/protocol.md section 4), in order."""
    return {
        "device_id": device_id,
        "platform": "linux",
        "os_version": "Debian GNU/Linux 12 (bookworm) 6.1.0-peer",
        "cpu_count": 4,
        "memory_total_gb": 15.62,
        "hostname": "peer-host-{}".format(device_id),
        "ip_address": "192.0.2.10",
        "supported_features": ["shell", "file_transfer", "system_info"],
        "platform_type": "computer",
        "schema_version": "1.0",
        "custom_metadata": {"served_by": "aip_peer.py"},
    }


def redact_path(path):
    """Request path with any token query value blanked (never log tokens)."""
    try:
        parts = urllib.parse.urlsplit(path)
        if not parts.query:
            return path
        q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        q = [(k, "REDACTED" if k.lower() == "token" else v) for k, v in q]
        return urllib.parse.urlunsplit(
            parts._replace(query=urllib.parse.urlencode(q)))
    except Exception:  # pragma: no cover - paranoia: never leak the raw path
        return "<unparseable path>"


def parse_info_mode(text):
    if text in INFO_MODES:
        return text, 0.0
    if text.startswith("late:"):
        try:
            secs = float(text[5:])
        except ValueError:
            secs = -1.0
        if secs >= 0:
            return "late", secs
    raise argparse.ArgumentTypeError(
        "info mode must be one of {} or late:SECS".format(", ".join(INFO_MODES)))


def parse_command(text):
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--command is not JSON: {}".format(exc))
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError("--command must be a JSON object")
    return obj


class EventLog:
    """One JSON object per line, flushed at once (tests tail the file)."""

    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8") if path else None

    def write(self, rec):
        if self.f is None:
            return
        line = {"t": time.monotonic()}
        line.update(rec)
        try:
            self.f.write(json.dumps(line) + "\n")
            self.f.flush()
        except (OSError, ValueError):
            pass

    def close(self):
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None


class Peer:
    """Process-wide state: options, log, connection numbering."""

    def __init__(self, args):
        self.args = args
        self.log = EventLog(args.log)
        self.conn_numbers = itertools.count(1)
        self.registrations = 0          # valid register frames seen, all conns
        self.conns = set()

    async def process_request(self, path, headers):
        parts = urllib.parse.urlsplit(path)
        if parts.path != "/ws":
            self.log.write({"event": "http_reject", "status": 404,
                            "path": redact_path(path)})
            return (http.HTTPStatus.NOT_FOUND,
                    [("Content-Type", "text/plain")], b"not found\n")
        token = self.args.token
        if token is not None:
            want = token.encode("utf-8")
            ok = False
            for value in urllib.parse.parse_qs(parts.query).get("token", []):
                if hmac.compare_digest(value.encode("utf-8"), want):
                    ok = True
            for auth in headers.get_all("Authorization"):
                scheme, _, cred = auth.strip().partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(
                        cred.strip().encode("utf-8"), want):
                    ok = True
            if not ok:
                self.log.write({"event": "http_reject", "status": 403,
                                "path": redact_path(path),
                                "headers": {"authorization":
                                            "Authorization" in headers}})
                return (http.HTTPStatus.FORBIDDEN,
                        [("Content-Type", "text/plain")], b"forbidden\n")
        return None

    async def handler(self, ws):
        conn = Conn(self, ws, next(self.conn_numbers))
        self.conns.add(conn)
        try:
            await conn.main()
        finally:
            self.conns.discard(conn)


class Conn:
    """One client connection; every connection is independent."""

    def __init__(self, peer, ws, n):
        self.peer = peer
        self.args = peer.args
        self.log = peer.log
        self.ws = ws
        self.n = n
        self.client_id = None
        self.client_type = None
        self.extensions = set()
        self.registered = False
        self.stalled = False
        self.ended_by = None            # why *we* ended it, if we did
        self.frames_in = 0
        self.frames_out = 0
        self.tasks = set()
        self.preamble_done = asyncio.Event()
        self.rbuf = []
        self.rtimer = None
        self.commands = {}              # response_id -> index of --command
        self.cmd_session = "peer-session-" + new_id()
        self.leniency_logged = False
        self.hb_answered = 0

    # ------------------------------------------------------------ plumbing

    def ev(self, rec):
        rec = dict(rec)
        rec["conn"] = self.n
        self.log.write(rec)

    def spawn(self, coro):
        task = asyncio.ensure_future(self.guard(coro))
        self.tasks.add(task)

        def done(t):
            self.tasks.discard(t)
            # A task cancelled before its first step never awaited coro:
            # close it so Python prints no "never awaited" warning.
            coro.close()
        task.add_done_callback(done)
        return task

    async def guard(self, coro):
        try:
            await coro
        except (ConnectionClosed, asyncio.CancelledError, ConnectionError):
            pass
        except Exception as exc:  # a bug in the peer: one line, no traceback
            self.ev({"event": "internal_error", "error": repr(exc)})
            print("aip_peer: conn {}: internal error: {!r}".format(self.n, exc),
                  file=sys.stderr, flush=True)

    def abort(self, why):
        """Drop the TCP connection without a close frame."""
        if self.ended_by is None:
            self.ended_by = why
        self.ev({"event": "abort", "why": why})
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def close(self, code, why):
        if self.ended_by is None:
            self.ended_by = why
        self.ev({"event": "close", "code": code, "why": why})
        try:
            await self.ws.close(code, why[:120])
        except (ConnectionClosed, ConnectionError):
            pass

    async def send(self, obj, note=None):
        """Send a frame: dict -> JSON text, str -> raw text, bytes -> binary."""
        if self.stalled or self.ws.closed:
            return False
        if isinstance(obj, dict):
            data = json.dumps(obj)
            logged = obj
        elif isinstance(obj, str):
            data = obj
            try:
                logged = json.loads(obj)
            except ValueError:
                logged = obj
        else:
            data = obj
            logged = obj.hex()
        rec = {"dir": "out", "frame": logged}
        if isinstance(data, bytes):
            rec["binary"] = True
        if note:
            rec["note"] = note
        self.ev(rec)        # logged first, so "out" precedes the client's reply
        frag = self.args.fragment
        if frag and isinstance(data, str) and len(data) > frag:
            # a fragmented message: websockets sends each item of an iterable as one frame
            data = [data[i:i + frag] for i in range(0, len(data), frag)]
        try:
            await self.ws.send(data)
        except (ConnectionClosed, ConnectionError):
            self.ev({"event": "send_failed"})
            return False
        self.frames_out += 1
        return True

    def error_frame(self, text, req=None, correlate=False):
        frame = {"type": "error", "status": "error", "error": text,
                 "timestamp": now_iso()}
        if correlate and isinstance(req, dict):
            if req.get("request_id") is not None:
                frame["response_id"] = req["request_id"]
            if req.get("session_id") is not None:
                frame["session_id"] = req["session_id"]
        return frame

    async def answer(self, obj):
        """Send an answer (device info, task_end), honouring --reorder."""
        group = self.args.reorder
        if group <= 1:
            await self.send(obj)
            return
        self.rbuf.append(obj)
        if len(self.rbuf) >= group:
            batch, self.rbuf = self.rbuf, []
            if self.rtimer is not None:
                self.rtimer.cancel()
                self.rtimer = None
            for item in reversed(batch):
                await self.send(item, note="reordered")
        elif self.rtimer is None:
            self.rtimer = self.spawn(self.flush_later())

    async def flush_later(self):
        await asyncio.sleep(0.2)
        batch, self.rbuf = self.rbuf, []
        self.rtimer = None
        for item in reversed(batch):
            await self.send(item, note="reordered (flush after 200 ms)")

    def jitter(self, ms):
        return random.uniform(0, ms) / 1000.0 if ms > 0 else 0.0

    async def recv(self):
        """Receive one frame, count and log it. Returns (raw, parsed|None)."""
        raw = await self.ws.recv()
        self.frames_in += 1
        if isinstance(raw, bytes):
            self.ev({"dir": "in", "frame": raw.hex(), "binary": True})
            return raw, None
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        self.ev({"dir": "in", "frame": raw if parsed is None else parsed,
                 "bytes": len(raw.encode("utf-8", "surrogatepass"))})
        return raw, parsed

    def frame_limit_hit(self):
        n = self.args.drop_after_frames
        if n is not None and n > 0 and self.frames_in >= n:
            self.abort("--drop-after-frames {}".format(n))
            return True
        return False

    # ------------------------------------------------------------ lifecycle

    async def main(self):
        ws = self.ws
        headers = ws.request_headers
        offered = []
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            offered += [p.strip() for p in value.split(",") if p.strip()]
        self.ev({"event": "connect", "path": redact_path(ws.path),
                 "subprotocol": ws.subprotocol,
                 "offered_subprotocols": offered,
                 "headers": {"authorization": "Authorization" in headers}})
        try:
            await self.session()
        except (ConnectionClosed, ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a bug in the peer: one line, no traceback
            self.ev({"event": "internal_error", "error": repr(exc)})
            print("aip_peer: conn {}: internal error: {!r}".format(self.n, exc),
                  file=sys.stderr, flush=True)
            self.abort("internal error")
        finally:
            for task in list(self.tasks):
                task.cancel()
            if not ws.closed:
                if self.stalled:
                    self.abort("shutdown of a stalled connection")
                try:
                    await asyncio.wait_for(asyncio.shield(ws.wait_closed()),
                                           self.args.close_timeout * 4 + 1)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    if ws.transport is not None:
                        ws.transport.abort()
            sent = getattr(ws, "close_sent", None)
            self.ev({"event": "disconnect", "close_code": ws.close_code,
                     "close_reason": ws.close_reason,
                     "close_sent": sent.code if sent is not None else None,
                     "ended_by": self.ended_by or "client",
                     "client_id": self.client_id,
                     "frames_in": self.frames_in,
                     "frames_out": self.frames_out})

    async def read_forever(self, note):
        """Keep the link open, log what arrives, answer nothing."""
        while True:
            await self.recv()
            if self.frame_limit_hit():
                continue
            self.ev({"event": "ignored", "why": note})

    async def session(self):
        args = self.args
        # ---- registration: the first frame
        raw, reg = await self.recv()
        if self.frame_limit_hit():
            await self.ws.wait_closed()
            return
        problem = self.check_register(raw, reg)
        if problem:
            self.ev({"event": "bad_register", "why": problem})
            await self.close(args.malformed_close_code,
                             "malformed first frame")
            return
        self.client_id = reg["client_id"]
        self.client_type = reg.get("client_type") or "device"
        meta = reg.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("aip_extensions"), list):
            self.extensions = {e for e in meta["aip_extensions"]
                               if isinstance(e, str)}
        self.peer.registrations += 1
        index = self.peer.registrations

        if args.register_delay > 0:
            await asyncio.sleep(args.register_delay)
        if args.no_register_ack:
            self.ev({"event": "register_unanswered",
                     "client_id": self.client_id})
            await self.read_forever("--no-register-ack")
            return
        refuse = args.refuse_registration
        if refuse < 0 or index <= refuse:
            self.ev({"event": "register_refused", "client_id": self.client_id,
                     "registration": index})
            await self.send(self.error_frame(DUPLICATE_TEXT.format(self.client_id)))
            await self.close(1000, "registration refused")
            await self.ws.wait_closed()
            return
        await self.send({"type": "heartbeat", "status": "ok",
                         "response_id": new_id(), "timestamp": now_iso()})
        self.registered = True
        self.ev({"event": "registered", "client_id": self.client_id,
                 "client_type": self.client_type,
                 "extensions": sorted(self.extensions),
                 "registration": index})

        if args.close_after_register:
            await self.close(1000, "--close-after-register")
            await self.ws.wait_closed()
            return
        if args.stall_after_register:
            self.stalled = True
            self.ws.transport.pause_reading()
            self.ev({"event": "stalled"})
            await self.ws.wait_closed()      # until the peer shuts down
            return

        if index == 1 and (args.big_frame or args.bad_utf8 or args.unfinished_message):
            self.spawn(self.hostile())
        self.spawn(self.preamble())
        while True:
            raw, msg = await self.recv()
            if self.frame_limit_hit():
                continue
            await self.dispatch(raw, msg)

    def check_register(self, raw, reg):
        if isinstance(raw, bytes):
            return "binary frame"
        if not isinstance(reg, dict):
            return "not a JSON object"
        if reg.get("type") != "register":
            return "first frame is not a register (type {!r})".format(reg.get("type"))
        if reg.get("status") not in STATUSES:
            return "bad or missing status"
        cid = reg.get("client_id")
        if not isinstance(cid, str) or not cid:
            return "missing client_id"
        ctype = reg.get("client_type")
        if ctype is not None and ctype not in ("device", "constellation"):
            return "bad client_type {!r}".format(ctype)
        return None

    async def preamble(self):
        """--garbage then --command frames, right after the registration."""
        try:
            if self.args.garbage:
                for i, item in enumerate(GARBAGE):
                    if i:
                        await asyncio.sleep(0.05)
                    await self.send(item, note="garbage {}".format(i + 1))
        finally:
            self.preamble_done.set()
        target = self.args.command_target
        if self.args.command and (target == "any" or target == self.client_type):
            for i, cmd in enumerate(self.args.command):
                if i:
                    await asyncio.sleep(self.args.command_interval)
                frame = dict(cmd)
                frame.setdefault("type", "command")
                frame.setdefault("status", "continue")
                if "response_id" not in frame:
                    frame["response_id"] = new_id()
                if "session_id" not in frame:
                    frame["session_id"] = self.cmd_session
                frame.setdefault("timestamp", now_iso())
                if isinstance(frame.get("response_id"), str):
                    self.commands[frame["response_id"]] = i
                await self.send(frame, note="command {}".format(i + 1))
        if self.args.raw_command and (target == "any" or target == self.client_type):
            for i, text in enumerate(self.args.raw_command):
                await asyncio.sleep(self.args.command_interval)
                await self.send(text, note="raw command {}".format(i + 1))
        if self.args.read_pause and (self.args.command or self.args.raw_command):
            self.ws.transport.pause_reading()
            self.ev({"event": "read_pause", "secs": self.args.read_pause})
            await asyncio.sleep(self.args.read_pause)
            if not self.ws.closed:
                self.ws.transport.resume_reading()
            self.ev({"event": "read_resume"})

    async def hostile(self):
        """--big-frame / --bad-utf8 / --unfinished-message, on the first registered
        connection only (so a client that reconnects gets a sane link). Raw frames through
        websockets' legacy write_frame: its send() would refuse to build them."""
        args = self.args
        await self.preamble_done.wait()
        ws = self.ws
        if args.big_frame:
            n = max(args.big_frame, 2)
            self.ev({"event": "hostile", "what": "big text frame", "bytes": n})
            await ws.write_frame(True, 0x1, b'"' + b"a" * (n - 2) + b'"')
        if args.bad_utf8:
            self.ev({"event": "hostile", "what": "invalid UTF-8 in a text frame"})
            await ws.write_frame(True, 0x1, b'{"type":"heartbeat","status":"ok","x":"\xc3\x28"}')
        if args.unfinished_message:
            mode = args.unfinished_message
            self.ev({"event": "hostile", "what": "unfinished message", "mode": mode})
            self.stalled = True       # no other data frame may interleave a fragmented one
            await ws.write_frame(False, 0x1, b'{"type":"heartbeat","status":"ok","x":"')
            sent = 0
            while mode == "trickle":
                await ws.write_frame(False, 0x0, b"b" * 16384)
                sent += 16384
                if sent % (1 << 20) == 0:
                    self.ev({"event": "hostile", "what": "unfinished message", "sent": sent})
                await asyncio.sleep(0.01)
            await ws.wait_closed()

    # ------------------------------------------------------------ dispatch

    async def dispatch(self, raw, msg):
        if isinstance(raw, bytes):
            # UFO only understands JSON; a binary frame drops the connection.
            await self.close(1003, "binary frames are not supported")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.spawn(self.reply(self.error_frame(
                "Invalid message: not an AIP ClientMessage")))
            return
        mtype = msg["type"]
        correlate = "correlated_errors" in self.extensions

        # identity pinning (docs/protocol.md 3.1)
        if msg.get("client_id") != self.client_id:
            self.ev({"event": "dropped", "why": "client_id mismatch"})
            self.spawn(self.reply(self.error_frame(
                "client_id mismatch: connection is registered as {!r}, frame "
                "says {!r}".format(self.client_id, msg.get("client_id")),
                msg, correlate)))
            return
        ctype = msg.get("client_type") or "device"
        if ctype != self.client_type:
            if (mtype == "heartbeat" and self.client_type == "constellation"
                    and ctype == "device"):
                if not self.leniency_logged:
                    self.leniency_logged = True
                    self.ev({"event": "note", "note": "galaxy leniency: "
                             "constellation heartbeat with client_type device "
                             "acked"})
            else:
                self.ev({"event": "dropped", "why": "client_type mismatch"})
                self.spawn(self.reply(self.error_frame(
                    "client_type mismatch: connection is registered as {!r}, "
                    "frame says {!r}".format(self.client_type, ctype),
                    msg, correlate)))
                return

        if mtype == "heartbeat":
            if self.args.mute_heartbeats:
                self.ev({"event": "ignored", "why": "--mute-heartbeats"})
                return
            limit = self.args.heartbeat_answers
            if limit is not None and self.hb_answered >= limit:
                self.ev({"event": "ignored", "why": "--heartbeat-answers"})
                return
            self.hb_answered += 1
            self.spawn(self.reply({"type": "heartbeat", "status": "ok",
                                   "response_id": new_id(),
                                   "timestamp": now_iso()}))
        elif mtype == "device_info_request":
            await self.on_info(msg, correlate)
        elif mtype == "task":
            await self.on_task(msg)
        elif mtype == "command_results":
            prev = msg.get("prev_response_id")
            if prev in self.commands:
                self.ev({"event": "command_results", "command": self.commands[prev] + 1,
                         "prev_response_id": prev})
            else:
                self.ev({"event": "command_results", "command": None,
                         "prev_response_id": prev,
                         "note": "matches no command sent on this connection"})
        elif mtype == "error":
            if self.args.echo_errors:
                text = msg.get("error")
                echo = self.error_frame(text if isinstance(text, str) else
                                        json.dumps(text))
                if msg.get("session_id") is not None:
                    echo["session_id"] = msg["session_id"]
                self.spawn(self.reply(echo))
        elif mtype == "register":
            self.spawn(self.reply(self.error_frame(
                DUPLICATE_TEXT.format(self.client_id), msg, correlate)))
        elif mtype in ("task_end", "device_info_response"):
            pass                                # logged; nothing to answer
        else:
            self.spawn(self.reply(self.error_frame(
                "Unknown message type: {}".format(mtype), msg, correlate)))

    async def reply(self, frame):
        await self.preamble_done.wait()
        await self.send(frame)

    async def on_info(self, msg, correlate):
        if self.client_type != "constellation":
            # UFO: a device cannot ask; uncorrelated error.
            self.spawn(self.reply(self.error_frame(
                "device_info_request is only accepted from constellation "
                "clients", msg, correlate)))
            return
        mode, late = self.args.info_mode
        if mode == "drop":
            self.abort("--info-mode drop")
            return
        if mode == "close":
            await self.close(1001, "--info-mode close")
            return
        if mode == "never":
            self.ev({"event": "ignored", "why": "--info-mode never"})
            return
        self.spawn(self.info_answer(msg, mode, late))

    async def info_answer(self, msg, mode, late):
        await self.preamble_done.wait()
        delay = late + self.jitter(self.args.info_jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay)
        q = msg.get("request_id")
        target = msg.get("target_id")
        if mode in ("answer", "late"):
            frame = {"type": "device_info_response", "status": "ok",
                     "response_id": q, "result": system_info(target),
                     "timestamp": now_iso()}
            if target is None:
                frame["result"] = {"error": "Device None not found"}
            elif self.args.big_info and target.startswith("big"):
                frame["result"]["padding"] = "p" * self.args.big_info
                if target.startswith("big-last"):   # the id after the large result
                    frame["response_id"] = frame.pop("response_id")
                    frame["timestamp"] = frame.pop("timestamp")
        elif mode == "unknown-device":
            frame = {"type": "device_info_response", "status": "ok",
                     "response_id": q,
                     "result": {"error": "Device {} not found".format(target)},
                     "timestamp": now_iso()}
        elif mode == "error-correlated":
            frame = self.error_frame(NOT_CONNECTED_TEXT.format(target))
            frame["response_id"] = q
            if msg.get("session_id") is not None:
                frame["session_id"] = msg["session_id"]
        else:  # error-uncorrelated
            frame = self.error_frame(NOT_CONNECTED_TEXT.format(target))
        await self.answer(frame)

    async def on_task(self, msg):
        mode = self.args.task_mode
        session = msg.get("session_id")
        if not isinstance(session, str) or not session:
            session = "peer-made-" + new_id()    # UFO makes one up
            self.ev({"event": "note", "note": "task without session_id; "
                     "made up " + session})
        self.spawn(self.task_flow(msg, session, mode))

    async def task_flow(self, msg, session, mode):
        await self.preamble_done.wait()
        target = msg.get("target_id") or self.client_id
        if mode == "error-correlated":
            # Rejected before the ack, as a server rejects an unknown target.
            frame = self.error_frame(NOT_CONNECTED_TEXT.format(target))
            frame["session_id"] = session
            if msg.get("request_id") is not None:
                frame["response_id"] = msg["request_id"]
            await self.send(frame)
            return
        await self.send({"type": "heartbeat", "status": "ok",
                         "session_id": session, "response_id": new_id(),
                         "timestamp": now_iso()})
        if mode == "never":
            return
        delay = self.args.task_delay + self.jitter(self.args.task_jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay)
        if mode == "drop":
            self.abort("--task-mode drop")
            return
        if mode == "complete":
            frame = {"type": "task_end", "status": "completed",
                     "session_id": session,
                     "result": {"echo": msg.get("request")}, "error": None,
                     "timestamp": now_iso()}
        else:  # fail
            frame = {"type": "task_end", "status": "failed",
                     "session_id": session, "result": None,
                     "error": "task failed on purpose",
                     "timestamp": now_iso()}
        await self.answer(frame)


def build_parser():
    p = argparse.ArgumentParser(
        description="Scripted AIP server peer (JSON over WebSocket, "
                    "127.0.0.1 only) for the C client integration tests.")
    p.add_argument("--port", type=int, default=0,
                   help="TCP port on 127.0.0.1 (0 = pick a free one)")
    p.add_argument("--token", default=None,
                   help="require ?token=T or Authorization: Bearer T (else 403)")
    p.add_argument("--log", default=None, help="append JSON-lines events here")
    p.add_argument("--refuse-registration", type=int, default=0, metavar="N",
                   help="refuse the first N registrations (-1 = always)")
    p.add_argument("--register-delay", type=float, default=0.0, metavar="SECS")
    p.add_argument("--no-register-ack", action="store_true")
    p.add_argument("--malformed-close-code", type=int, default=1000,
                   help="close code for a malformed first frame (default 1000)")
    p.add_argument("--mute-heartbeats", action="store_true")
    p.add_argument("--heartbeat-answers", type=int, default=None, metavar="N",
                   help="answer the first N heartbeats of a connection, then none")
    p.add_argument("--info-mode", type=parse_info_mode, default=("answer", 0.0),
                   metavar="MODE",
                   help="answer|never|late:SECS|error-correlated|"
                        "error-uncorrelated|unknown-device|drop|close")
    p.add_argument("--info-jitter-ms", type=float, default=0.0, metavar="N")
    p.add_argument("--reorder", type=int, default=0, metavar="N",
                   help="release answers reversed in groups of N")
    p.add_argument("--task-mode", choices=TASK_MODES, default="complete")
    p.add_argument("--task-delay", type=float, default=0.0, metavar="SECS")
    p.add_argument("--task-jitter-ms", type=float, default=0.0, metavar="N")
    p.add_argument("--drop-after-frames", type=int, default=None, metavar="N")
    p.add_argument("--close-after-register", action="store_true")
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--command", type=parse_command, action="append", default=[],
                   metavar="JSON", help="server command frame to send (repeatable)")
    p.add_argument("--raw-command", action="append", default=[], metavar="TEXT",
                   help="text frame sent verbatim after the --command frames (repeatable)")
    p.add_argument("--command-interval", type=float, default=0.1, metavar="SECS")
    p.add_argument("--read-pause", type=float, default=0.0, metavar="SECS",
                   help="after the commands, read nothing for SECS, then read again")
    p.add_argument("--command-target", choices=("device", "constellation", "any"),
                   default="device",
                   help="which registered client types get --command frames")
    p.add_argument("--max-size", type=int, default=16 * MIB, metavar="BYTES")
    p.add_argument("--ping-interval", type=float, default=None, metavar="SECS")
    p.add_argument("--ping-timeout", type=float, default=None, metavar="SECS")
    p.add_argument("--close-timeout", type=float, default=2.0, metavar="SECS",
                   help="wait for the client's close ack (default 2)")
    p.add_argument("--deflate", action="store_true",
                   help="accept permessage-deflate (off by default)")
    p.add_argument("--stall-after-register", action="store_true")
    p.add_argument("--echo-errors", action="store_true")
    p.add_argument("--big-frame", type=int, default=0, metavar="BYTES",
                   help="first registered connection: one text frame of BYTES")
    p.add_argument("--bad-utf8", action="store_true",
                   help="first registered connection: a text frame with invalid UTF-8")
    p.add_argument("--fragment", type=int, default=0, metavar="BYTES",
                   help="send text messages longer than BYTES characters as fragments of "
                        "that many")
    p.add_argument("--big-info", type=int, default=0, metavar="BYTES",
                   help="device-info answers for a target id starting with 'big' carry BYTES "
                        "of padding in the result; 'big-last...': response_id after it")
    p.add_argument("--unfinished-message", choices=("trickle", "stop"), default=None,
                   help="first registered connection: a fragmented text message that never "
                        "ends; trickle = 16 KiB more every 10 ms, stop = then silence")
    return p


class OneLine(logging.Formatter):
    """websockets' own log records: one line, never a traceback."""

    def formatException(self, ei):
        return ""

    def format(self, record):
        record.exc_info = None
        record.exc_text = None
        return super().format(record)


async def amain(args):
    peer = Peer(args)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))

    server = await serve(
        peer.handler, "127.0.0.1", args.port,
        process_request=peer.process_request,
        compression="deflate" if args.deflate else None,
        max_size=args.max_size,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        close_timeout=args.close_timeout,
        subprotocols=None)
    port = server.sockets[0].getsockname()[1]
    peer.log.write({"event": "listening", "port": port, "pid": os.getpid(),
                    "websockets": websockets.__version__})
    sys.stdout.write("listening on 127.0.0.1:{}\n".format(port))
    sys.stdout.flush()

    await stop
    for conn in list(peer.conns):
        if conn.ended_by is None:
            conn.ended_by = "peer shutdown"
        if conn.stalled:
            conn.abort("shutdown of a stalled connection")
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), args.close_timeout * 4 + 2)
    except asyncio.TimeoutError:
        for conn in list(peer.conns):
            conn.abort("shutdown timeout")
    peer.log.write({"event": "shutdown"})
    peer.log.close()


def main():
    args = build_parser().parse_args()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine("aip_peer: %(name)s: %(message)s"))
    wlog = logging.getLogger("websockets")
    wlog.addHandler(handler)
    wlog.setLevel(logging.ERROR)
    wlog.propagate = False
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print("aip_peer: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
