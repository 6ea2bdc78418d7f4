#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: aip-test-server's admin API, fault injection, metrics and event feed, against a
real constellation-agent (heartbeat 1 s), all on 127.0.0.1.

Checks: the API needs the key (X-API-Key or Bearer, 401 otherwise) while the dashboard's static
page does not; POST /api/dispatch runs a task on the device and GET /api/task_result answers
once it ended; bad dispatches get 400/404/409; live device info; GET /metrics is well-formed
Prometheus text that counts what happened; the /events feed starts with a snapshot and carries
registrations, heartbeats, tasks, faults and disconnects with close codes; each fault is
observed and survived by the agent (drop -> reconnect; stall -> liveness reconnect; garbage ->
counted, same link served on; refused registration -> backoff, then registered; muted
heartbeats -> liveness reconnect; delay -> answers late on the same link); a viewer that does
not read is closed with 1013 instead of growing the server's memory.

usage: server_admin_test.py BUILD_DIR
"""
import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import websockets

import aiptest

BUILD = sys.argv[1]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
TOKEN = "s3cret-admin-key"
TMP = tempfile.mkdtemp(prefix="aip-admin-test.")
procs = aiptest.procs
aiptest.kill_at_exit()
checks = aiptest.Checks(flush=True)
check = checks.check
wait_for = aiptest.wait_for


def start_server(*extra):
    srv = aiptest.Server(SERVER, extra, TMP, token=TOKEN)
    return srv.p, srv.port, srv.log


def start_agent(port, cid, *extra):
    log = os.path.join(TMP, "agent-%s.log" % cid.replace("/", "_"))
    p = subprocess.Popen([AGENT, "--server", "ws://127.0.0.1:%d/ws" % port, "--client-id", cid,
                          "--token", TOKEN, "--heartbeat", "1"] + list(extra),
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    procs.append(p)
    return p, log


def api(port, method, path, body=None, key=TOKEN, bearer=False):
    return aiptest.api(port, method, path, body, key=key, bearer=bearer, timeout=10)


def client(port, cid):
    st, b = api(port, "GET", "/api/clients/" + cid)
    return b if st == 200 else None


def since(port, cid):
    c = client(port, cid)
    return c["connected_since"] if c else None


def metric(port, name_and_labels):
    st, text = api(port, "GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def log_has(path, needle):
    with open(path) as f:
        return needle in f.read()


def task(port, name, actions, wait=15):
    st, b = api(port, "POST", "/api/dispatch",
                {"client_id": "dev1", "task_name": name, "request": {"actions": actions}})
    if st != 200:
        return st, b
    res = wait_for(lambda: (lambda r: r if r[1].get("status") != "pending" else None)(
        api(port, "GET", "/api/task_result/" + name)), wait)
    return res if res else api(port, "GET", "/api/task_result/" + name)


class Feed:
    """An /events viewer reading in a background task."""

    def __init__(self, port):
        self.port, self.msgs = port, []

    async def run(self, stop):
        url = "ws://127.0.0.1:%d/events?token=%s" % (self.port, TOKEN)
        async with websockets.connect(url, max_size=None) as ws:
            while not stop.is_set():
                try:
                    self.msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
                except asyncio.TimeoutError:
                    pass

    def kinds(self, cid=None):
        return [m.get("kind") for m in self.msgs
                if m.get("type") == "event" and (cid is None or m.get("client_id") == cid)]


def slow_viewer_is_dropped(port):
    """A viewer with a tiny receive window that never reads, while events flow."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET /events?token=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % TOKEN).encode())
    time.sleep(0.3)
    before = metric(port, "aip_viewer_drops_total")
    big = "x" * 200
    for i in range(400):  # each task: several events with a ~300-byte line each
        api(port, "POST", "/api/dispatch",
            {"client_id": "dev1", "task_name": "flood-%d" % i,
             "request": {"actions": [{"tool_name": "echo", "parameters": {"text": big}}]}})
        if metric(port, "aip_viewer_drops_total") > before:
            break
    dropped = wait_for(lambda: metric(port, "aip_viewer_drops_total") > before, 5)
    s.close()
    return dropped


def main():
    srv, port, slog = start_server("--max-viewer-queue", "32768")
    agent, alog = start_agent(port, "dev1")
    check("agent registers", wait_for(lambda: client(port, "dev1"), 10))

    # --- the key ---
    st, _ = api(port, "GET", "/api/clients", key=None)
    check("API without the key: 401", st == 401, st)
    st, _ = api(port, "GET", "/api/clients", key="wrong")
    check("API with a wrong key: 401", st == 401, st)
    st, b = api(port, "GET", "/api/clients", bearer=True)
    check("API with Authorization: Bearer", st == 200 and "dev1" in b["online_clients"], b)
    st, _ = api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "drop"}, key=None)
    check("POST without the key: 401", st == 401, st)
    st, _ = api(port, "GET", "/metrics", key=None)
    check("/metrics without the key: 401", st == 401, st)

    # --- dispatch and task results ---
    st, r = task(port, "t-echo", [{"tool_name": "echo", "parameters": {"text": "hello"}}])
    ok = st == 200 and r.get("status") == "completed" and \
        r["result"][0]["result"][0]["result"] == "hello"
    check("dispatch -> task_result completed with the device's answer", ok, r)
    st, b = api(port, "POST", "/api/dispatch",
                {"client_id": "nobody", "request": {"actions": [{"tool_name": "echo"}]}})
    check("dispatch to an unknown device: 404", st == 404 and "not connected" in b["error"], b)
    st, b = api(port, "POST", "/api/dispatch", {"client_id": "dev1", "request": "do something"})
    check("dispatch of a non-JSON-actions request: 400", st == 400 and "actions" in b["error"], b)
    st, b = api(port, "POST", "/api/dispatch", b'{"client_id": "dev1", "client_id": "x"}')
    check("dispatch with duplicate keys: 400", st == 400, b)
    st, b = api(port, "POST", "/api/dispatch", b"[" * 100 + b"]" * 100)
    check("dispatch with deep nesting: 400", st == 400, b)
    st, b = api(port, "POST", "/api/dispatch",
                {"client_id": "dev1", "task_name": "t-sleep",
                 "request": {"actions": [{"tool_name": "sleep", "parameters": {"seconds": 1}}]}})
    st2, b2 = api(port, "POST", "/api/dispatch",
                  {"client_id": "dev1", "task_name": "t-sleep",
                   "request": {"actions": [{"tool_name": "echo"}]}})
    check("a running task_name cannot be reused: 409", st == 200 and st2 == 409, (b, b2))
    st, b = api(port, "GET", "/api/task_result/t-sleep")
    check("task_result while running: pending", b.get("status") == "pending", b)
    st, b = api(port, "GET", "/api/task_result/no-such-task")
    check("task_result of an unknown task: 404", st == 404, b)
    st, b = api(port, "GET", "/api/device_info/dev1")
    check("live device info from the device", st == 200 and b["source"] == "live" and
          b["device_info"].get("device_id") == "dev1", b)
    st, b = api(port, "GET", "/api/clients/dev1")
    check("client details: type, address, encoding, extensions, system info",
          st == 200 and b["client_type"] == "device" and b["address"] == "127.0.0.1" and
          b["encoding"] == "json" and "live_device_info" in b["extensions"] and
          b["system_info"]["device_id"] == "dev1", b)

    # --- the static page is public ---
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    page = r.read()
    check("GET / serves the embedded dashboard without the key",
          r.status == 200 and r.getheader("content-type", "").startswith("text/html") and
          b"<html" in page.lower(), (r.status, page[:80]))
    c.close()

    # --- faults, watched through the event feed ---
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    feed = Feed(port)

    th = threading.Thread(target=lambda: loop.run_until_complete(feed.run(stop)), daemon=True)
    th.start()
    wait_for(lambda: feed.msgs, 5)
    check("events: the first message is a snapshot listing dev1",
          feed.msgs and feed.msgs[0]["type"] == "snapshot" and
          any(c["client_id"] == "dev1" for c in feed.msgs[0]["clients"]), feed.msgs[:1])

    s0 = since(port, "dev1")
    st, b = api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "garbage"})
    check("garbage: answered ok", st == 200 and b == {"ok": True, "fault": "garbage",
                                                      "client_id": "dev1", "seconds": 0}, b)
    time.sleep(0.5)
    st, r = task(port, "t-after-garbage", [{"tool_name": "echo", "parameters": {"text": "x"}}])
    agent.send_signal(signal.SIGUSR1)
    counted = wait_for(lambda: re.search(r"malformed [1-9]", open(alog).read()), 5)
    check("garbage: counted by the agent, same link served on",
          counted and since(port, "dev1") == s0 and r.get("status") == "completed",
          (counted, r))

    # first link-breaking fault: the agent's backoff starts from its base (it resets only after
    # a link stayed up 30 s, so each later fault waits a little longer)
    s_ref = since(port, "dev1")
    refused0 = metric(port, 'aip_registrations_refused_total{reason="fault"}')
    api(port, "POST", "/api/faults",
        {"client_id": "dev1", "fault": "refuse_next_registration"})
    api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "drop"})
    back = wait_for(lambda: (since(port, "dev1") or s_ref) != s_ref, 15)
    refused = metric(port, 'aip_registrations_refused_total{reason="fault"}') - refused0
    check("refused registrations: the agent backs off and registers after (%d refused)" % refused,
          back and refused >= 1 and log_has(alog, "registration refused"), refused)

    s0 = since(port, "dev1")
    api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "drop"})
    back = wait_for(lambda: (since(port, "dev1") or s0) != s0, 12)
    check("drop: the agent reconnects", back)
    check("drop: the feed shows the disconnect with its close code",
          wait_for(lambda: any(m.get("kind") == "disconnected" and m.get("code") == 1006
                               for m in feed.msgs), 3))

    s1 = since(port, "dev1")
    st, b = api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "delay",
                                              "seconds": 1.5})
    t0 = time.monotonic()
    st, r = task(port, "t-delayed", [{"tool_name": "echo", "parameters": {"text": "late"}}])
    took = time.monotonic() - t0
    check("delay: the task completes late (%.2f s) on the same link" % took,
          r.get("status") == "completed" and took >= 1.2 and since(port, "dev1") == s1, r)

    s2 = since(port, "dev1")
    t0 = time.monotonic()
    api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "stall", "seconds": 30})
    back = wait_for(lambda: (since(port, "dev1") or s2) != s2, 25)
    check("stall: liveness finds the half-open link and a new one registers (%.1f s)" %
          (time.monotonic() - t0), back)

    s3 = since(port, "dev1")
    t0 = time.monotonic()
    api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "mute_heartbeats",
                                      "seconds": 30})
    back = wait_for(lambda: (since(port, "dev1") or s3) != s3, 40)
    check("mute_heartbeats: liveness reconnect (%.1f s)" % (time.monotonic() - t0), back)

    st, b = api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "meltdown"})
    check("unknown fault: 400", st == 400 and "unknown fault" in b["error"], b)
    st, b = api(port, "POST", "/api/faults", {"client_id": "ghost", "fault": "stall"})
    check("fault for an unknown client: 404", st == 404, b)
    st, b = api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "stall",
                                              "seconds": 99999})
    check("fault seconds out of range: 400", st == 400, b)
    st, b = api(port, "POST", "/api/faults", {"client_id": "dev1", "fault": "stall",
                                              "seconds": "10"})
    check("fault seconds of the wrong type: 400", st == 400, b)

    kinds = set(feed.kinds("dev1")) | set(feed.kinds())
    want = {"connected", "registered", "heartbeat", "task", "command", "command_results",
            "task_end", "fault", "disconnected", "refused", "device_info"}
    check("events: the feed carried %s" % ", ".join(sorted(want)), want <= kinds,
          want - kinds)
    stop.set()
    th.join(5)

    # --- metrics ---
    st, text = api(port, "GET", "/metrics")
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    sample = re.compile(r'^aip_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')
    bad = [l for l in lines if not sample.match(l)]
    check("metrics: every sample is well-formed and aip_-prefixed", lines and not bad, bad[:3])
    typed = set(re.findall(r"^# TYPE (\S+) (?:counter|gauge|histogram)$", text, re.M))
    check("metrics: every family has a TYPE line",
          all(re.sub(r"(_bucket|_sum|_count)?\{.*|(_sum|_count)? .*", "", l) in typed
              for l in lines), typed)
    check("metrics: faults, registrations, tasks and the command round trip are counted",
          metric(port, 'aip_faults_total{fault="drop"}') == 2 and
          metric(port, 'aip_faults_total{fault="stall"}') == 1 and
          metric(port, "aip_registrations_total") >= 5 and
          metric(port, 'aip_tasks_total{status="completed"}') >= 3 and
          metric(port, "aip_command_rtt_seconds_count") >= 3 and
          metric(port, 'aip_connections{type="device"}') == 1 and
          metric(port, 'aip_frames_in_total{type="heartbeat",encoding="json"}') >= 1,
          [metric(port, n) for n in ('aip_faults_total{fault="drop"}',
                                     'aip_faults_total{fault="stall"}', "aip_registrations_total",
                                     'aip_tasks_total{status="completed"}',
                                     "aip_command_rtt_seconds_count",
                                     'aip_connections{type="device"}',
                                     'aip_frames_in_total{type="heartbeat",encoding="json"}')])

    # --- a viewer that does not read ---
    check("a viewer that stops reading is closed (1013), not buffered for",
          slow_viewer_is_dropped(port))
    check("server still serving after all that", client(port, "dev1") is not None)

    # --- ids with '/', '%' and control characters ---
    odd, oddlog = start_agent(port, "a/b%41")
    got = wait_for(lambda: client(port, "a%2Fb%2541"), 10)
    check("an id with '/' and '%' is found under its percent-encoded path",
          got and got["client_id"] == "a/b%41", got)
    st, b = api(port, "GET", "/api/device_info/a%2Fb%2541")
    check("... and its device info too", st == 200 and b["client_id"] == "a/b%41", b)
    odd.send_signal(signal.SIGTERM)
    odd.wait(5)

    async def forge():
        async with websockets.connect("ws://127.0.0.1:%d/ws?token=%s" % (port, TOKEN)) as ws:
            await ws.send(json.dumps({
                "type": "register", "status": "ok", "client_type": "device",
                "client_id": "x\n2026-11-22T00:00:00+00:00 error server: forged\x1b[31m",
                "timestamp": "2026-11-22T00:00:00+00:00"}))
            await ws.recv()
    asyncio.run(forge())
    time.sleep(0.3)
    with open(slog) as f:
        text = f.read()
    check("a client id with a newline cannot forge a log line",
          "forged" in text and not re.search(r"^\S+ error server: forged", text, re.M) and
          "\x1b" not in text, [l for l in text.splitlines() if "forged" in l][:2])

    srv.send_signal(signal.SIGTERM)
    try:
        code = srv.wait(5)
    except subprocess.TimeoutExpired:
        code = None
    check("server stops cleanly on SIGTERM", code == 0, code)
    with open(slog) as f:
        bad = [l for l in f if re.match(r"^\S+ +(warn|error) ", l)]
    check("server log: no warnings or errors", not bad, bad[:5])
    agent.send_signal(signal.SIGTERM)
    agent.wait(5)

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
