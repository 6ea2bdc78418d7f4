#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: aip-test-server's liveness (--ping-after / --drop-after) against a device that
heartbeats less often than the server's drop interval, all on 127.0.0.1.

The server pings a connection silent for --ping-after and drops one silent for --drop-after.
lws 4.1's server parser does not pass a zero-length PONG to the protocol callback, so before
aip-test-server sent its pings with a payload, the answer to its ping never counted and every
device heartbeating less often than 60 s was dropped every 60 s although it answered.

Checks, with the server's intervals shortened to 1 s / 3 s so it runs in seconds:
- constellation-agent with --heartbeat 30 (10x the drop interval) stays on its one link for
  over 3 drop intervals: one registration, no "silent for" in the server's log, no link closed
  in the agent's; so libwebsockets' client answers the server's pings by itself (nothing in
  the agent does it), and the server counts those pongs.
- a raw WebSocket client that registers and then never answers a ping (nor sends anything) is
  still dropped, after about --drop-after: the pongs are what keeps the agent.
- --drop-after not longer than --ping-after is refused at start (exit 2).

usage: liveness_test.py BUILD_DIR
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import aiptest

BUILD = sys.argv[1]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
TMP = tempfile.mkdtemp(prefix="aip-liveness-test.")
aiptest.kill_at_exit(remove=TMP)
checks = aiptest.Checks(flush=True, ok_detail=True)
check = checks.check
PING_AFTER, DROP_AFTER = 1, 3


def mute_client(port, result):
    """Registers over a hand-made WebSocket and then only reads: never a pong, never a frame.
    result['closed_after'] = seconds from registration to the server's close (or None)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            result["error"] = "closed during the handshake"
            return
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        result["error"] = head.split(b"\r\n", 1)[0].decode(errors="replace")
        return
    payload = json.dumps({"type": "register", "status": "ok", "client_id": "mute-dev",
                          "client_type": "device", "metadata": {}}).encode()
    mask = os.urandom(4)
    hdr = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload)) if len(payload) > 125 \
        else bytes([0x81, 0x80 | len(payload)])
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    t0 = time.monotonic()
    pings = 0
    buf = head.split(b"\r\n\r\n", 1)[1]
    while True:
        try:
            chunk = s.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 2:  # count the server's pings (opcode 9): never answered
            n = buf[1] & 0x7f
            off = 2 if n < 126 else (4 if n == 126 else 10)
            if len(buf) < off:
                break
            if n >= 126:
                n = struct.unpack("!H" if n == 126 else "!Q", buf[2:off])[0]
            if len(buf) < off + n:
                break
            pings += (buf[0] & 0x0f) == 9
            buf = buf[off + n:]
    result["closed_after"] = time.monotonic() - t0
    result["pings"] = pings
    s.close()


rc = subprocess.run([SERVER, "--no-token", "--port", "0", "--ping-after", "5",
                     "--drop-after", "5"], capture_output=True, text=True)
check("--drop-after not longer than --ping-after is refused", rc.returncode == 2 and
      "--drop-after" in rc.stderr, "exit %d, %r" % (rc.returncode, rc.stderr.strip()))

srv_log = os.path.join(TMP, "server.log")
srv, port = aiptest.listen([SERVER, "--no-token", "--port", "0", "--ping-after",
                            str(PING_AFTER), "--drop-after", str(DROP_AFTER)],
                           stderr=open(srv_log, "w"))
agent_log = os.path.join(TMP, "agent.log")
agent = subprocess.Popen([AGENT, "--server", "ws://127.0.0.1:%d/ws" % port, "--client-id",
                          "slow-dev", "--heartbeat", "30"],
                         stdout=subprocess.DEVNULL, stderr=open(agent_log, "w"))
aiptest.procs.append(agent)
mute = {}
th = threading.Thread(target=mute_client, args=(port, mute), daemon=True)
th.start()


def text(path):
    with open(path) as f:
        return f.read()


check("the agent registers", aiptest.wait_for(
    lambda: "registered device slow-dev" in text(srv_log), 10))
t0 = time.monotonic()
th.join(DROP_AFTER + 10)
check("a client that never answers pings is dropped after about --drop-after",
      "closed_after" in mute and DROP_AFTER - 0.5 <= mute["closed_after"] <= DROP_AFTER + 3 and
      mute["pings"] >= 1 and "mute-dev silent for" in text(srv_log),
      "%s (--drop-after %d)" % (mute, DROP_AFTER))
# the agent has been up since before the mute client; keep it over 3 drop intervals in all
time.sleep(max(0.0, 3.5 * DROP_AFTER - (time.monotonic() - t0)))
slog, alog = text(srv_log), text(agent_log)
check("the agent (heartbeat 30 s) stays over 3 drop intervals of %d s" % DROP_AFTER,
      agent.poll() is None and slog.count("registered device slow-dev") == 1 and
      "slow-dev silent for" not in slog and "link closed" not in alog,
      "registrations %d, server: %r, agent: %r" % (
          slog.count("registered device slow-dev"),
          [ln for ln in slog.splitlines() if "slow-dev" in ln][-3:],
          [ln for ln in alog.splitlines() if "conn:" in ln][-3:]))
agent.terminate()
agent.wait(10)
srv.terminate()
srv.wait(10)
sys.exit(checks.summary())
