#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The cost of one MCP tool call through the agent, beside a built-in tool.

Starts aip-test-server, @modelcontextprotocol/server-everything's streamable HTTP server (from
.deps/npm: tools/install-deps.sh) and a constellation-agent, all on 127.0.0.1. The agent first
hosts server-everything over stdio (namespace Everything, tool type action), then, restarted,
over streamable HTTP. For each tool it runs tasks through aipctl: one batch of 1 action and one
of N actions; the difference divided by N - 1 is the time of one action inside the agent's
batch (the task's round trip, aipctl's start and registration cancel out). Tools: the built-in
`echo` (data_collection::echo), server-everything's `echo` over stdio, then over HTTP.
Prints a Markdown table: medians (and min, max) over --rounds.

usage: tools/bench/mcp_bench.py [--build DIR] [--actions N] [--rounds R]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--actions", type=int, default=400)
ap.add_argument("--rounds", type=int, default=5)
args = ap.parse_args()
B = args.build
EVERYTHING = os.path.join(ROOT, ".deps", "npm", "node_modules", "@modelcontextprotocol",
                          "server-everything", "dist", "index.js")
NODE = shutil.which("node")
if not NODE or not os.path.exists(EVERYTHING):
    sys.exit("mcp_bench: server-everything missing: run tools/install-deps.sh")
tmp = tempfile.mkdtemp(prefix="aip-mcp-bench.")
procs = []


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


try:
    srv = subprocess.Popen([os.path.join(B, "tools", "aip-test-server"), "--port", "0", "--no-token",
                            "--log-level", "warn"], stdout=subprocess.PIPE, text=True)
    procs.append(srv)
    port = int(srv.stdout.readline().rsplit(":", 1)[1])
    url = "ws://127.0.0.1:%d/ws" % port
    hport = free_port()
    eh = subprocess.Popen([NODE, EVERYTHING, "streamableHttp"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env={"PATH": os.environ["PATH"],
                                                          "PORT": str(hport)})
    procs.append(eh)
    cfg = os.path.join(tmp, "agent.json")
    with open(cfg, "w") as f:
        json.dump({"log_level": "warn", "tools": {"mcp": {"servers": [
            {"namespace": "Everything", "tool_type": "action",
             "command": [NODE, EVERYTHING, "stdio"]}]}}}, f)
    agent = subprocess.Popen([os.path.join(B, "main", "constellation-agent"), "--server", url,
                              "--client-id", "bench", "--config", cfg],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(agent)
    aipctl = os.path.join(B, "tools", "aipctl")

    def task(action, n):
        body = json.dumps({"actions": [dict(action, call_id="c%d" % i) for i in range(n)]})
        t0 = time.monotonic()
        p = subprocess.run([aipctl, "--server", url, "--timeout", "120", "task", "bench", body],
                           capture_output=True, text=True)
        dt = time.monotonic() - t0
        out = json.loads(p.stdout)
        res = [r for b in out["result"] for r in b["result"]]
        if len(res) != n or any(r["status"] != "success" for r in res):
            raise SystemExit("mcp_bench: a call failed: %s" % p.stdout[:500])
        return dt

    for _ in range(200):  # until both servers are ready
        try:
            task({"tool_name": "get-sum", "tool_type": "action", "parameters": {"a": 1, "b": 2}}, 1)
            break
        except (SystemExit, ValueError, KeyError):
            time.sleep(0.2)
    cases = [
        ("built-in echo", {"tool_name": "echo", "tool_type": "data_collection",
                           "parameters": {"text": "hello"}}),
        ("MCP echo, stdio (server-everything)", {"tool_name": "echo", "tool_type": "action",
                                                 "parameters": {"message": "hello"}}),
    ]
    rows = []
    n = args.actions
    for name, action in cases:
        per = []
        for _ in range(args.rounds):
            t1 = task(action, 1)
            tn = task(action, n)
            per.append((tn - t1) / (n - 1) * 1e6)
        rows.append((name, statistics.median(per), min(per), max(per)))
    agent.send_signal(signal.SIGTERM)
    agent.wait(10)
    with open(cfg, "w") as f:
        json.dump({"log_level": "warn", "tools": {"mcp": {"servers": [
            {"namespace": "EverythingHttp", "tool_type": "action",
             "url": "http://127.0.0.1:%d/mcp" % hport}]}}}, f)
    agent = subprocess.Popen([os.path.join(B, "main", "constellation-agent"), "--server", url,
                              "--client-id", "bench", "--config", cfg],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(agent)
    for _ in range(200):
        try:
            task({"tool_name": "get-sum", "tool_type": "action", "parameters": {"a": 1, "b": 2}}, 1)
            break
        except (SystemExit, ValueError, KeyError):
            time.sleep(0.2)
    per = []
    action = {"tool_name": "echo", "tool_type": "action", "parameters": {"message": "hello"}}
    for _ in range(args.rounds):
        t1 = task(action, 1)
        tn = task(action, n)
        per.append((tn - t1) / (n - 1) * 1e6)
    rows.append(("MCP echo, streamable HTTP (server-everything)", statistics.median(per), min(per),
                 max(per)))
    print("| tool | µs per call (median of %d rounds of %d) | min | max |" % (args.rounds, n))
    print("|---|---:|---:|---:|")
    for name, med, lo, hi in rows:
        print("| %s | %.0f | %.0f | %.0f |" % (name, med, lo, hi))
finally:
    cleanup()
