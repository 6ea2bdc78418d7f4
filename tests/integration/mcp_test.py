#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: constellation-agent as an MCP host, against real MCP servers from npm and a
hostile one, through aip-test-server and aipctl, all on 127.0.0.1 (in a network namespace of
its own when run as root, so that server-everything's all-interface HTTP listener is reachable
from nowhere else).

Servers (tools/install-deps.sh installs the npm ones into .deps/npm):
- @modelcontextprotocol/server-everything over stdio (namespace Everything, action) and over
  streamable HTTP (EverythingHttp, data_collection, with an X-Api-Key header);
- @modelcontextprotocol/server-filesystem over stdio (Files, data_collection) under a root;
- tests/integration/peers/mcp_hostile_server.py: a correct one (Good: paged tool list, requests to
  the client mid-call, floods, a stalled call, tools/list_changed; protocol 2025-03-26), its
  HTTP mode (HostileHttp: SSE answers, a ping inside a stream, a dropped session), and
  hostile ones: silent, garbage, a 100 MiB line, exits at once, duplicate tool names, an
  invalid name, an unknown protocol version.

What it proves: list_tools shows each server's tools under its namespace with input schemas
(UFO's MCPToolInfo); echo and get-sum run over stdio and over streamable HTTP in one batch; a
tool error is a failure with the server's text and the rest of the batch is skipped with UFO's
text; structured content becomes the result; the child's environment is scrubbed; key
collisions resolve as configured; SIGKILLed stdio servers and a restarted HTTP server come
back; hostile servers are unavailable and retried while the agent keeps serving, with bounded
memory; headers never reach the log; no server process outlives the agent (SIGTERM, and
SIGKILL of the agent through PR_SET_PDEATHSIG); sessions are DELETEd.

usage: mcp_test.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD, SRC = sys.argv[1], sys.argv[2]
if (os.geteuid() == 0 and not os.environ.get("AIP_MCP_NETNS") and shutil.which("unshare")
        and shutil.which("ip")
        and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0):
    os.environ["AIP_MCP_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                          sys.executable] + sys.argv)

import aiptest  # noqa: E402 (after the re-exec)

AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
HERE = os.path.dirname(os.path.abspath(__file__))
HOSTILE = os.path.join(HERE, "peers", "mcp_hostile_server.py")
NPM = os.path.join(SRC, ".deps", "npm", "node_modules", "@modelcontextprotocol")
EVERYTHING = os.path.join(NPM, "server-everything", "dist", "index.js")
FILESYSTEM = os.path.join(NPM, "server-filesystem", "dist", "index.js")
NODE = shutil.which("node")
SKIPPED = "Skipped due to previous failure (early_exit=True)."
SECRET = "k3y-that-must-never-be-logged"
TMP = tempfile.mkdtemp(prefix="aip-mcp.")
ROOT = os.path.join(TMP, "root")

aiptest.kill_at_exit(wait=True, remove=TMP)
checks = aiptest.Checks(flush=True, detail_max=600)
check = checks.check

if not NODE or not os.path.exists(EVERYTHING) or not os.path.exists(FILESYSTEM):
    print("FAIL the npm MCP servers are missing (node %s, %s): run tools/install-deps.sh"
          % (NODE, NPM))
    sys.exit(1)
print("network namespace of its own:", bool(os.environ.get("AIP_MCP_NETNS")), flush=True)

os.makedirs(ROOT)
with open(os.path.join(ROOT, "hello.txt"), "w") as f:
    f.write("hello from the root\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_everything_http(port):
    out = open(os.path.join(TMP, "everything-http.log"), "a")
    p = subprocess.Popen([NODE, EVERYTHING, "streamableHttp"], stdout=out, stderr=out,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(port)})
    aiptest.procs.append(p)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    return p, aiptest.wait_for(up, 20)


sp, sport = aiptest.listen([SERVER, "--port", "0", "--no-token"], stderr=subprocess.DEVNULL)
url = "ws://127.0.0.1:%d/ws" % sport
http_port = free_port()
ehttp, ok = start_everything_http(http_port)
check("server-everything listens (streamable HTTP, PORT=%d)" % http_port, ok)
hlog = os.path.join(TMP, "hostile-http.jsonl")
hhttp, hport = aiptest.listen(["/usr/bin/python3", HOSTILE, "http", hlog])


def hostile(ns, mode, tool_type="data_collection", timeout_s=None, *extra):
    d = {"namespace": ns, "tool_type": tool_type,
         "command": ["/usr/bin/python3", HOSTILE, mode, os.path.join(TMP, ns + ".jsonl")]
         + list(extra)}
    if timeout_s:
        d["timeout_s"] = timeout_s
    return d


servers = [
    {"namespace": "Everything", "tool_type": "action", "command": [NODE, EVERYTHING, "stdio"],
     "env": {"MCP_TEST": "scrubbed-env"}},
    {"namespace": "EverythingHttp", "tool_type": "data_collection",
     "url": "http://127.0.0.1:%d/mcp" % http_port, "headers": {"X-Api-Key": SECRET},
     "timeout_s": 20},
    {"namespace": "Files", "tool_type": "data_collection", "command": [NODE, FILESYSTEM, ROOT]},
    hostile("Good", "good", "action", 3, "2025-03-26"),
    {"namespace": "HostileHttp", "tool_type": "action", "url": "http://127.0.0.1:%d/mcp" % hport,
     "headers": {"X-Api-Key": SECRET}, "timeout_s": 10},
    hostile("Silent", "silent", timeout_s=2),
    hostile("Garbage", "garbage"),
    hostile("Huge", "huge"),
    hostile("Exit", "exit"),
    hostile("Dup", "dup"),
    hostile("BadName", "badname"),
    hostile("BadVersion", "badversion"),
]
cfg = os.path.join(TMP, "agent.json")
with open(cfg, "w") as f:
    json.dump({"tools": {"workers": 4, "command_timeout_s": 20, "mcp": {"servers": servers}}}, f)
os.chmod(cfg, 0o600)

# ---- configuration ---------------------------------------------------------------------------
p = subprocess.run([AGENT, "--server", url, "--config", cfg, "--check-config"],
                   capture_output=True, text=True)
shown = json.loads(p.stdout) if p.returncode == 0 else {}
check("--check-config shows the MCP servers, header values hidden",
      p.returncode == 0 and [s["namespace"] for s in shown.get("mcp_servers", [])]
      == [s["namespace"] for s in servers] and SECRET not in p.stdout
      and shown["mcp_servers"][1]["headers"] == {"X-Api-Key": "(set, not shown)"}, p.stdout[:400])
bad_cfgs = [
    ({"namespace": "X", "tool_type": "action"}, "tools.mcp.servers[0]"),
    ({"namespace": "X", "tool_type": "tool", "command": ["x"]}, "tools.mcp.servers[0].tool_type"),
    ({"namespace": "X", "tool_type": "action", "command": ["x"], "url": "http://a"},
     "not both"),
    ({"namespace": "X", "tool_type": "action", "url": "ftp://a"}, "tools.mcp.servers[0].url"),
    ({"namespace": "X", "tool_type": "action", "command": ["x"], "headers": {"A": "b"}},
     "tools.mcp.servers[0].headers"),
    ({"namespace": "X", "tool_type": "action", "command": ["x"], "colour": 1},
     'unknown key "tools.mcp.servers[0].colour"'),
    ({"namespace": "X", "tool_type": "action", "command": ["x"], "timeout_s": 0},
     "tools.mcp.servers[0].timeout_s"),
]
for i, (srv, want) in enumerate(bad_cfgs):
    path = os.path.join(TMP, "bad%d.json" % i)
    with open(path, "w") as f:
        json.dump({"tools": {"mcp": {"servers": [srv]}}}, f)
    os.chmod(path, 0o600)
    p = subprocess.run([AGENT, "--server", url, "--config", path, "--check-config"],
                       capture_output=True, text=True)
    check("bad server config %d: exit 78 naming %s" % (i, want),
          p.returncode == 78 and want in p.stderr, (p.returncode, p.stderr))
path = os.path.join(TMP, "readable.json")
with open(path, "w") as f:
    json.dump({"tools": {"mcp": {"servers": [servers[1]]}}}, f)
os.chmod(path, 0o644)
p = subprocess.run([AGENT, "--server", url, "--config", path, "--check-config"],
                   capture_output=True, text=True)
check("a config with MCP headers readable by others is refused (78)",
      p.returncode == 78 and "readable by others" in p.stderr, p.stderr)

# ---- agent A: every server ---------------------------------------------------------------------
alog_path = os.path.join(TMP, "agent.log")
alog = open(alog_path, "w")
agent = subprocess.Popen([AGENT, "--server", url, "--client-id", "mcp-1", "--config", cfg],
                         stdout=subprocess.DEVNULL, stderr=alog)
aiptest.procs.append(agent)


def step(actions, device="mcp-1", timeout=40):
    p = subprocess.run([AIPCTL, "--server", url, "--timeout", str(timeout), "task", device,
                        json.dumps({"actions": actions})], capture_output=True, text=True)
    try:
        out = json.loads(p.stdout)
        return [r for b in out["result"] for r in b["result"]]
    except (ValueError, KeyError, TypeError):
        return None


def tools(**flt):
    res = step([{"tool_name": "list_tools", "tool_type": "action", "parameters": flt}])
    return res[0]["result"] if res and res[0]["status"] == "success" else None


def namespaces():
    t = tools() or []
    return {x["namespace"] for x in t}


def log_text():
    alog.flush()
    with open(alog_path, errors="replace") as f:
        return f.read()


def jsonl(name):
    return aiptest.json_lines(os.path.join(TMP, name + ".jsonl"))


WANT = {"Everything", "EverythingHttp", "Files", "Good", "HostileHttp"}
check("the agent registers and the good servers' tools appear in list_tools",
      aiptest.wait_for(lambda: WANT <= namespaces(), 60, 0.5), namespaces())

ev = tools(namespace="Everything") or []
by = {t["tool_name"]: t for t in ev}
check("list_tools {namespace: Everything}: server-everything's tools, UFO's keys",
      {"echo", "get-sum", "get-env", "get-structured-content"} <= set(by)
      and all(t["tool_key"] == "action::" + t["tool_name"] and t["tool_type"] == "action"
              for t in ev), sorted(by))
gs = by.get("get-sum", {})
check("get-sum's input schema, title and annotations come from the server",
      set((gs.get("input_schema") or {}).get("properties", {})) == {"a", "b"}
      and gs.get("title") == "Get Sum Tool"
      and (gs.get("annotations") or {}).get("readOnlyHint") is True, gs)
check("get-structured-content keeps its outputSchema",
      isinstance(by.get("get-structured-content", {}).get("output_schema"), dict))

# ---- stdio and HTTP batches ---------------------------------------------------------------------
for ns, tt in (("Everything", "action"), ("EverythingHttp", "data_collection")):
    res = step([{"tool_name": "echo", "tool_type": tt, "parameters": {"message": "hi " + ns}},
                {"tool_name": "get-sum", "tool_type": tt, "parameters": {"a": 2, "b": 3.5}},
                {"tool_name": "get-structured-content", "tool_type": tt,
                 "parameters": {"location": "Chicago"}}])
    check("%s: echo, get-sum, get-structured-content in one batch" % ns,
          res and [r["status"] for r in res] == ["success"] * 3
          and res[0]["result"] == "Echo: hi " + ns
          and res[1]["result"] == "The sum of 2 and 3.5 is 5.5."
          and isinstance(res[2]["result"], dict) and res[2]["result"].get("humidity") == 82
          and all(r["namespace"] == ns for r in res), res)

res = step([{"tool_name": "get-sum", "tool_type": "action", "parameters": {"a": 1, "b": "x"}},
            {"tool_name": "echo", "tool_type": "action", "parameters": {"message": "never"}}])
check("a tool error (isError): failure with the server's text, result null, namespace",
      res and res[0]["status"] == "failure" and "Invalid arguments" in (res[0]["error"] or "")
      and res[0]["result"] is None and res[0]["namespace"] == "Everything", res)
check("... and the rest of the batch is skipped with UFO's text",
      res and res[1]["status"] == "skipped" and res[1]["error"] == SKIPPED
      and res[1]["namespace"] is None, res)

res = step([{"tool_name": "get-env", "tool_type": "action"}])
env = json.loads(res[0]["result"]) if res and res[0]["status"] == "success" else {}
check("the stdio child's environment is scrubbed: PATH, LANG and the configured env only",
      set(env) == {"PATH", "LANG", "MCP_TEST"} and env["MCP_TEST"] == "scrubbed-env", env)

# ---- server-filesystem, and collisions ----------------------------------------------------------
hello = os.path.join(ROOT, "hello.txt")
res = step([{"tool_name": "read_text_file", "tool_type": "data_collection",
             "parameters": {"path": hello}}])
check("server-filesystem read_text_file under its root (structured content)",
      res and res[0]["status"] == "success"
      and res[0]["result"] == {"content": "hello from the root\n"}
      and res[0]["namespace"] == "Files", res)
res = step([{"tool_name": "read_text_file", "tool_type": "data_collection",
             "parameters": {"path": "/etc/hostname"}}])
check("server-filesystem outside its root: a failure with its reason",
      res and res[0]["status"] == "failure" and "outside allowed" in (res[0]["error"] or ""), res)
dc = tools(tool_type="data_collection") or []
keys = [t["tool_key"] for t in dc]
rf = [t for t in dc if t["tool_name"] == "read_file"]
ec = [t for t in dc if t["tool_name"] == "echo"]
check("collision: server-filesystem's read_file and EverythingHttp's echo replace the "
      "built-ins (one entry per key)",
      len(rf) == 1 and rf[0]["namespace"] == "Files" and len(ec) == 1
      and ec[0]["namespace"] == "EverythingHttp" and len(keys) == len(set(keys)), keys)
ac = [t for t in (tools(tool_type="action") or []) if t["tool_name"] == "echo"]
check("collision between MCP servers: the first configured (Everything) wins action::echo",
      len(ac) == 1 and ac[0]["namespace"] == "Everything", ac)


def collision_lines():
    return [x for x in log_text().splitlines() if "shadowed" in x or "replaces" in x]


# whichever of Everything and Good was ready first, the pair is logged once
check("each collision is logged once",
      sum("read_file of namespace 'Files' replaces" in x for x in collision_lines()) == 1
      and sum("action::echo of namespace 'Good' is shadowed by the one of namespace "
              "'Everything'" in x or "action::echo of namespace 'Everything' replaces the one "
              "of namespace 'Good'" in x for x in collision_lines()) == 1, collision_lines())

# ---- the good hostile server: pages, requests mid-call, floods, stalls, list_changed -----------
good = tools(namespace="Good") or []
check("Good: its paged tool list, protocol 2025-03-26 accepted",
      {t["tool_name"] for t in good} == {"ask", "flood", "stall", "add_tool", "big"}
      and "protocol 2025-03-26" in log_text(), [t["tool_name"] for t in good])
res = step([{"tool_name": "ask", "tool_type": "action"}])
ans = (res[0]["result"] or {}).get("answers") if res and res[0]["status"] == "success" else None
check("the server's requests mid-call: ping answered {}, sampling, roots and elicitation -32601",
      ans and ans[0].get("result") == {}
      and all((a.get("error") or {}).get("code") == -32601 for a in ans[1:]), ans)
res = step([{"tool_name": "flood", "tool_type": "action"}])
check("a flood (5 MB of notifications, 2,000 stderr lines) then the answer",
      res and res[0]["status"] == "success" and res[0]["result"] == "flooded", res)
check("... stderr is logged rate limited",
      aiptest.wait_for(lambda: "lines not logged (at most 20 per 10 s)" in log_text()
                       or log_text().count("flood line") <= 20, 5)
      and log_text().count("flood line") <= 20, log_text().count("flood line"))
t0 = time.monotonic()
res = step([{"tool_name": "stall", "tool_type": "action"},
            {"tool_name": "echo", "tool_type": "action", "parameters": {"message": "x"}}])
took = time.monotonic() - t0
check("a stalled call fails at the server's timeout_s (3 s) and the batch stops",
      res and res[0]["status"] == "failure" and "timed out after 3000 ms" in res[0]["error"]
      and res[1]["status"] == "skipped" and took < 15, (res, took))
stall_ids = [e["id"] for e in jsonl("Good") if e.get("event") == "stalling"]
check("... and the server got notifications/cancelled for that request",
      aiptest.wait_for(lambda: any(e.get("event") == "cancelled"
                                   and (e.get("params") or {}).get("requestId") in stall_ids
                                   for e in jsonl("Good")), 5), stall_ids)
res = step([{"tool_name": "big", "tool_type": "action", "parameters": {"bytes": 300000}}])
check("a 300 kB text result is cut to its tail (tools.max_output)",
      res and res[0]["status"] == "success" and isinstance(res[0]["result"], str)
      and 0 < len(res[0]["result"]) <= 65536, res and len(res[0]["result"] or ""))
res = step([{"tool_name": "add_tool", "tool_type": "action"}])
check("tools/list_changed: the new tool appears in list_tools",
      res and res[0]["status"] == "success" and aiptest.wait_for(
          lambda: "extra" in {t["tool_name"] for t in tools(namespace="Good") or []}, 10))
res = step([{"tool_name": "extra", "tool_type": "action"}])
check("... and runs", res and res[0]["result"] == "extra ran", res)

# ---- streamable HTTP contract (the hostile HTTP server) ----------------------------------------
res = step([{"tool_name": "whoami", "tool_type": "action"}])
who1 = res[0]["result"] if res and res[0]["status"] == "success" else {}
check("HTTP: the configured header reaches the server", who1.get("api_key") == SECRET, who1)
hev = aiptest.json_lines(hlog)
posts = [e for e in hev if e.get("event") == "POST"]
check("HTTP: no 406 (every POST accepts JSON and SSE), no 400 (session id and "
      "MCP-Protocol-Version on every request after initialize)",
      posts and not [e for e in hev if e.get("event") in ("406", "400")]
      and all(e["session"] and e["version"] == "2025-06-18" for e in posts
              if e["method"] != "initialize"), [e for e in hev if e.get("event") != "POST"])
res = step([{"tool_name": "drop_session", "tool_type": "action"},
            {"tool_name": "whoami", "tool_type": "action"}])
who2 = res[1]["result"] if res and res[1]["status"] == "success" else {}
check("HTTP: a 404 for a lost session: initialized again and the call retried, transparently",
      res and res[0]["status"] == "success" and who2.get("session")
      and who2["session"] != who1.get("session")
      and any(e.get("event") == "404" for e in aiptest.json_lines(hlog)), res)
res = step([{"tool_name": "ping_me", "tool_type": "action"}])
pa = (res[0]["result"] or {}).get("ping_answer") if res and res[0]["status"] == "success" else None
check("HTTP: a ping inside the SSE answer is answered {} (by another POST), then the result",
      isinstance(pa, dict) and pa.get("result") == {} and str(pa.get("id", "")).startswith("srv-"),
      res)

check("HTTP: the standalone GET stream is open (Accept: text/event-stream, session id)",
      aiptest.wait_for(lambda: any(e.get("event") == "GET" and e.get("session")
                                   and "text/event-stream" in (e.get("accept") or "")
                                   for e in aiptest.json_lines(hlog)), 10))
# The agent reopens its GET stream after each refresh or recheck, and the peer notices a closed
# stream only when its next write fails (up to 1 s later): a notification may go to a stream
# the agent has just left. Notifications are best effort; so is this one: up to 3 tries.
for _ in range(3):
    res = step([{"tool_name": "notify_changed", "tool_type": "action"}])
    seen = (res and res[0]["status"] == "success" and "notified 0" not in str(res[0]["result"])
            and aiptest.wait_for(lambda: "extra_http" in {t["tool_name"] for t in
                                                          tools(namespace="HostileHttp") or []}, 5))
    if seen:
        break
check("HTTP: tools/list_changed on the GET stream: the new tool appears and runs",
      seen and (step([{"tool_name": "extra_http", "tool_type": "action"}]) or [{}])[0].get("result")
      == "extra_http ran", res)

# ---- hostile stdio servers ----------------------------------------------------------------------
reasons = {
    "Silent": "no answer to initialize within 2000 ms",
    "Garbage": "not a JSON-RPC message",
    "Huge": "over the 4194304-byte limit",
    "Exit": "exited with status 3",
    "Dup": 'tool "dup" is listed twice',
    "BadName": "has no valid name",
    "BadVersion": 'protocol version "1999-01-01" is not one we speak',
}
for ns, why in reasons.items():
    check("%s: unavailable, the reason logged" % ns,
          aiptest.wait_for(lambda: "[%s] unavailable: " % ns in log_text() and why in log_text(),
                           15), why)
check("hostile servers are absent from list_tools", not (set(reasons) & namespaces()),
      namespaces())
for ns in ("Garbage", "Exit", "Dup"):
    check("%s: started again with backoff" % ns, aiptest.wait_for(
        lambda: len([e for e in jsonl(ns) if e.get("event") == "start"]) >= 3, 15),
        len([e for e in jsonl(ns) if e.get("event") == "start"]))
res = step([{"tool_name": "dup", "tool_type": "data_collection"}])
check("a call of a tool no server gives: unknown tool",
      res and res[0]["status"] == "failure" and "unknown tool" in res[0]["error"], res)
with open("/proc/%d/status" % agent.pid) as f:
    hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM")][0]
# Buffering the line whole would peak at 128 MiB or more; under ASan (shadow memory, freed
# blocks in quarantine) the agent's baseline is higher, so the bound is too.
with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
    sanitized = any(line.startswith("AIP_SANITIZE:STRING=") and line.strip().split("=", 1)[1]
                    for line in f)
limit_mib = 200 if sanitized else 100
check("the agent's peak memory stayed bounded after the 100 MiB line (VmHWM < %d MiB)"
      % limit_mib, hwm < limit_mib * 1024, "%d kB" % hwm)
res = step([{"tool_name": "sleep", "tool_type": "action", "parameters": {"seconds": 0}},
            {"tool_name": "get-sum", "tool_type": "action", "parameters": {"a": 1, "b": 1}}])
check("the agent keeps serving: a built-in and an MCP tool",
      res and [r["status"] for r in res] == ["success", "success"], res)

# ---- crashes and restarts -----------------------------------------------------------------------
def child_pids(ppid):
    try:
        with open("/proc/%d/task/%d/children" % (ppid, ppid)) as f:
            direct = [int(x) for x in f.read().split()]
    except OSError:
        direct = []
    out = []
    for t in os.listdir("/proc/%d/task" % ppid):
        try:
            with open("/proc/%d/task/%s/children" % (ppid, t)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return sorted(set(out + direct))


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


ev_pids = [p for p in child_pids(agent.pid) if EVERYTHING in cmdline(p) and "stdio" in cmdline(p)]
check("server-everything (stdio) runs as the agent's child", len(ev_pids) == 1, ev_pids)
if ev_pids:
    os.kill(ev_pids[0], signal.SIGKILL)
    ok = aiptest.wait_for(lambda: (step([{"tool_name": "get-sum", "tool_type": "action",
                                          "parameters": {"a": 40, "b": 2}}]) or [{}])[0]
                          .get("result") == "The sum of 40 and 2 is 42.", 20, 0.3)
    new = [p for p in child_pids(agent.pid) if EVERYTHING in cmdline(p) and "stdio" in cmdline(p)]
    check("SIGKILLed stdio server: restarted, the next call works",
          ok and new and new != ev_pids and "killed by signal 9" in log_text(), (new, ev_pids))

ehttp.kill()
ehttp.wait()
ehttp, up = start_everything_http(http_port)
ok = up and aiptest.wait_for(lambda: (step([{"tool_name": "echo", "tool_type": "data_collection",
                                             "parameters": {"message": "back"}}]) or [{}])[0]
                             .get("result") == "Echo: back", 30, 0.5)
check("server-everything over HTTP restarted: the agent starts a new session, calls work",
      ok, log_text()[-1500:])

check("the header's value never reaches the agent's log", SECRET not in log_text())
check("restarts and refreshes did not log the collisions again", len(collision_lines()) == 3,
      collision_lines())

# ---- stop: nothing left behind -------------------------------------------------------------------
mcp_children = [p for p in child_pids(agent.pid)]
t0 = time.monotonic()
agent.send_signal(signal.SIGTERM)
try:
    rc = agent.wait(10)
except subprocess.TimeoutExpired:
    rc = None
took = time.monotonic() - t0
print("     (the agent stopped in %.2f s with %d MCP servers)" % (took, len(servers)), flush=True)
check("SIGTERM: the agent stops (exit 0) within 5 s, its servers ended", rc == 0 and took < 5,
      (rc, took))
left = [p for p in mcp_children if os.path.exists("/proc/%d" % p) and cmdline(p)]
check("no MCP server process is left after the agent stops", mcp_children and not left,
      (mcp_children, [cmdline(p) for p in left]))
check("the HTTP sessions were DELETEd at stop",
      aiptest.wait_for(lambda: any(e.get("event") == "DELETE" for e in aiptest.json_lines(hlog)),
                       5))

# ---- agent B, SIGKILLed: its stdio servers die with it (PR_SET_PDEATHSIG) -----------------------
cfg2 = os.path.join(TMP, "agent2.json")
with open(cfg2, "w") as f:
    json.dump({"tools": {"mcp": {"servers": [servers[0], hostile("Good2", "good", "action")]}}}, f)
os.chmod(cfg2, 0o600)
agent2 = subprocess.Popen([AGENT, "--server", url, "--client-id", "mcp-2", "--config", cfg2],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
aiptest.procs.append(agent2)
kids = aiptest.wait_for(lambda: child_pids(agent2.pid) if len(child_pids(agent2.pid)) == 2
                        else None, 30)
check("agent B runs two stdio servers", kids and len(kids) == 2, kids)
agent2.kill()
agent2.wait()
check("agent B SIGKILLed: its stdio servers die too",
      kids and aiptest.wait_for(lambda: not [p for p in kids if cmdline(p)], 10),
      [cmdline(p) for p in kids or []])

sys.exit(checks.summary())
