#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: constellation-agent under a service manager, and a server-sent task.

systemd's notify protocol without systemd: the test binds a datagram socket and starts the agent
with NOTIFY_SOCKET (a path, then an abstract '@' name) and WATCHDOG_USEC. It checks READY=1 at
start, a STATUS= line once registered, WATCHDOG=1 well within WATCHDOG_USEC, STOPPING=1 on
SIGTERM and exit 0. Then, against a small UFO-shaped server written here, a server `task`
(docs/protocol.md: user_request + session_id) is mirrored back by the device as a client `task` with
the same text, session_id and task_name — and refused with an `error` when the config says
"server_tasks": false. Everything on 127.0.0.1.

usage: agent_systemd_test.py BUILD_DIR
"""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets

import aiptest

BUILD = sys.argv[1]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
TMP = tempfile.mkdtemp(prefix="aip-systemd-test.")
procs = aiptest.procs
aiptest.kill_at_exit()
checks = aiptest.Checks(flush=True)
check = checks.check


def start_server():
    return aiptest.listen([SERVER, "--port", "0", "--no-token"],
                          stderr=open(os.path.join(TMP, "server.log"), "w"))


def notify_run(port, addr, label):
    """Runs the agent with NOTIFY_SOCKET=addr; returns the messages received, in order."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr if not addr.startswith("@") else "\0" + addr[1:])
    sock.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=addr, WATCHDOG_USEC="2000000")
    agent = subprocess.Popen([AGENT, "--server", "ws://127.0.0.1:%d/ws" % port, "--client-id",
                              "sd-" + label, "--heartbeat", "1"], env=env,
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(TMP, "agent-%s.log" % label), "w"))
    procs.append(agent)
    msgs = []  # (monotonic time, text)

    def pump(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msgs.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass

    pump(4.5)
    agent.send_signal(signal.SIGTERM)
    pump(1.0)
    try:
        code = agent.wait(3)
    except subprocess.TimeoutExpired:
        code = None
    sock.close()
    return msgs, code


def check_notify(port, addr, label):
    msgs, code = notify_run(port, addr, label)
    texts = [t for _, t in msgs]
    check("%s: READY=1 first" % label, texts and texts[0].startswith("READY=1"), texts[:2])
    check("%s: STATUS= says registered" % label,
          any(t.startswith("STATUS=registered") for t in texts), texts)
    wd = [ts for ts, t in msgs if t == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(wd, wd[1:])]
    # systemd kills the service after WATCHDOG_USEC (2 s) without a ping; the agent aims at
    # every WATCHDOG_USEC/2 on a 1 s tick
    check("%s: WATCHDOG=1 well within WATCHDOG_USEC (%d pings, max gap %.2f s)" %
          (label, len(wd), max(gaps) if gaps else -1),
          len(wd) >= 3 and max(gaps) < 1.9, gaps)
    check("%s: STOPPING=1 on SIGTERM, exit 0" % label,
          any(t.startswith("STOPPING=1") for t in texts) and code == 0, (texts[-2:], code))


async def task_server(server_tasks):
    """A UFO-shaped server: acks the registration, sends one device `task`, returns what the
    device sends back (its first non-heartbeat frame after that)."""
    got = asyncio.get_running_loop().create_future()

    async def handler(ws):
        reg = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "heartbeat", "status": "ok",
                                  "timestamp": "2026-11-22T00:00:00+00:00",
                                  "response_id": "r-1"}))
        await ws.send(json.dumps({"type": "task", "status": "continue",
                                  "user_request": "open the notepad, please",
                                  "session_id": "sess-42", "task_name": "tn-7",
                                  "timestamp": "2026-11-22T00:00:00+00:00",
                                  "response_id": "r-2"}))
        async for raw in ws:
            m = json.loads(raw)
            if m.get("type") != "heartbeat" and not got.done():
                got.set_result((reg, m))

    async with websockets.serve(handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        cfg = os.path.join(TMP, "agent-%s.json" % server_tasks)
        with open(cfg, "w") as f:
            json.dump({"server_tasks": server_tasks}, f)
        agent = await asyncio.create_subprocess_exec(
            AGENT, "--server", "ws://127.0.0.1:%d/ws" % port, "--client-id", "task-dev",
            "--config", cfg, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(TMP, "agent-task-%s.log" % server_tasks), "w"))
        try:
            return await asyncio.wait_for(got, 10)
        except asyncio.TimeoutError:
            return None, None
        finally:
            agent.send_signal(signal.SIGTERM)
            await agent.wait()


def main():
    srv, port = start_server()
    check_notify(port, os.path.join(TMP, "notify.sock"), "path")
    check_notify(port, "@aip-notify-%d" % os.getpid(), "abstract")
    srv.send_signal(signal.SIGTERM)
    srv.wait(5)

    reg, m = asyncio.run(task_server(True))
    check("server task: the device mirrors it as a client task with the same text, "
          "session_id and task_name",
          m is not None and m.get("type") == "task" and
          m.get("request") == "open the notepad, please" and
          m.get("session_id") == "sess-42" and m.get("task_name") == "tn-7" and
          m.get("client_id") == "task-dev", m)
    reg, m = asyncio.run(task_server(False))
    check("server task with \"server_tasks\": false: refused with an error naming the session",
          m is not None and m.get("type") == "error" and m.get("session_id") == "sess-42" and
          "disabled" in (m.get("error") or ""), m)

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
