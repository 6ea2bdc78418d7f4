#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: constellation-agent as the device of a UFO LinuxAgent session, on 127.0.0.1.

UFO's LinuxAgent (microsoft/UFO, config/ufo/mcp.yaml: namespace BashExecutor, tool type
action) drives a device in steps, each a `command` batch from the server. This plays those
steps through aip-test-server + aipctl against the real agent and checks every answer field by
field against UFO's shapes (aip/messages.py MCPToolInfo and Result; the result dicts of
ufo/client/mcp/http_servers/linux_mcp_server.py; the Result mapping of ufo/client/computer.py):

1. list_tools {"tool_type": "action"}: a JSON list of MCPToolInfo objects (the ten keys with
   their types, nulls included), action tools only, execute_command and get_system_info among
   them in namespace BashExecutor, each with an object input_schema.
2. execute_command (cwd, a non-zero exit that does not stop the batch, a timeout, a policy
   refusal, a bad cwd, a bad key) and get_system_info, all Result status success with UFO's
   dicts; a call missing `command` fails and the rest is skipped with UFO's text, result and
   namespace null.
3. When a `python3` with pydantic 2 is on PATH (the machines have one), the answers are also
   validated by pydantic models with UFO's field definitions: MCPToolInfo(**entry) for every
   list_tools entry and Result(**r) for every Result — what a real UFO server does with them.

usage: linux_agent_test.py BUILD_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import aiptest

BUILD = sys.argv[1]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
TMP = tempfile.mkdtemp(prefix="aip-linux-agent.")
KEY = "linux-agent-k3y"
SKIPPED = "Skipped due to previous failure (early_exit=True)."
TOOL_INFO_KEYS = ["tool_key", "tool_name", "title", "namespace", "tool_type", "description",
                  "input_schema", "output_schema", "meta", "annotations"]
RESULT_KEYS = {"status", "error", "result", "namespace", "call_id"}

aiptest.kill_at_exit(remove=TMP)
checks = aiptest.Checks()
check = checks.check

sp, port = aiptest.listen([SERVER, "--port", "0", "--no-token"], stderr=subprocess.DEVNULL)
url = "ws://127.0.0.1:%d/ws" % port
key_file = os.path.join(TMP, "api_key")
with open(key_file, "w") as f:
    f.write(KEY + "\n")
os.chmod(key_file, 0o600)
work = os.path.join(TMP, "work")
os.makedirs(work)
with open(os.path.join(work, "notes.txt"), "w") as f:
    f.write("one\ntwo\n")
cfg = os.path.join(TMP, "agent.json")
with open(cfg, "w") as f:
    json.dump({"tools": {"execute_command": {"enabled": True, "policy": "ufo-readonly",
                                             "allow": ["sleep"], "timeout_s": 20,
                                             "api_key_file": key_file}}}, f)
os.chmod(cfg, 0o600)
err = open(os.path.join(TMP, "agent.err"), "w")
agent = subprocess.Popen([AGENT, "--server", url, "--client-id", "linux-1", "--config", cfg],
                         stdout=subprocess.DEVNULL, stderr=err)
aiptest.procs.append(agent)
check("the agent registers", aiptest.wait_for(
    lambda: b'"linux-1"' in subprocess.run([AIPCTL, "--server", url, "devices"],
                                           capture_output=True).stdout))

every_result = []


def step(actions):
    """One LinuxAgent step: a command batch through the server. Returns (rc, results)."""
    for a in actions:
        a.setdefault("tool_type", "action")  # UFO's Command requires it
    p = subprocess.run([AIPCTL, "--server", url, "--timeout", "30", "task", "linux-1",
                        json.dumps({"actions": actions})], capture_output=True, text=True)
    try:
        out = json.loads(p.stdout)
        res = [r for b in out["result"] for r in b["result"]]
    except (ValueError, KeyError, TypeError):
        return p.returncode, None
    every_result.extend(res)
    return p.returncode, res


def result_shape_ok(r):
    return (isinstance(r, dict) and set(r) == RESULT_KEYS
            and r["status"] in ("success", "failure", "skipped", "none")
            and (r["error"] is None or isinstance(r["error"], str))
            and (r["namespace"] is None or isinstance(r["namespace"], str)))


# ---- 1. list_tools {"tool_type": "action"} ----------------------------------------------------
rc, res = step([{"tool_name": "list_tools", "parameters": {"tool_type": "action"}, "call_id": "lt"}])
tools = res[0]["result"] if res else None
check("list_tools: one success Result whose result is a JSON list",
      rc == 0 and res and res[0]["status"] == "success" and isinstance(tools, list), res)
tools = tools if isinstance(tools, list) else []
check("list_tools: every entry has MCPToolInfo's ten keys, in UFO's order",
      tools and all(list(t) == TOOL_INFO_KEYS for t in tools), tools[:1])
check("list_tools: required fields are strings, optional ones string/object or null",
      all(isinstance(t["tool_key"], str) and isinstance(t["tool_name"], str)
          and isinstance(t["namespace"], str) and isinstance(t["tool_type"], str)
          and all(t[k] is None or isinstance(t[k], str) for k in ("title", "description"))
          and all(t[k] is None or isinstance(t[k], dict)
                  for k in ("input_schema", "output_schema", "meta", "annotations"))
          for t in tools), tools)
check("list_tools: tool_key is UFO's make_tool_key, <tool_type>::<tool_name>",
      all(t["tool_key"] == "%s::%s" % (t["tool_type"], t["tool_name"]) for t in tools), tools)
check("list_tools {tool_type: action}: only action tools, list_tools itself left out",
      all(t["tool_type"] == "action" for t in tools)
      and "list_tools" not in [t["tool_name"] for t in tools], [t["tool_key"] for t in tools])
by_name = {t["tool_name"]: t for t in tools}
for name in ("execute_command", "get_system_info"):
    t = by_name.get(name) or {}
    check("list_tools: %s in namespace BashExecutor with an object input_schema" % name,
          t.get("namespace") == "BashExecutor" and isinstance(t.get("input_schema"), dict)
          and t["input_schema"].get("type") == "object", t)
ec_props = (by_name.get("execute_command") or {}).get("input_schema", {}).get("properties", {})
check("execute_command's schema has UFO's parameters command, timeout, cwd, api_key",
      set(ec_props) >= {"command", "timeout", "cwd", "api_key"}, ec_props)
rc, res = step([{"tool_name": "list_tools", "parameters": {"namespace": "NoSuchNamespace"}}])
check("list_tools with an unknown filter: an empty list", rc == 0 and res and res[0]["result"] == [], res)

# ---- 2. execute_command and get_system_info ---------------------------------------------------
rc, res = step([
    {"tool_name": "execute_command", "call_id": "c1",
     "parameters": {"command": "cat notes.txt", "cwd": work, "api_key": KEY}},
    {"tool_name": "execute_command", "call_id": "c2",
     "parameters": {"command": "ls /no/such/path", "api_key": KEY}},
    {"tool_name": "execute_command", "call_id": "c3",
     "parameters": {"command": "uname -s", "timeout": 5, "api_key": KEY}},
    {"tool_name": "get_system_info", "call_id": "c4", "parameters": {"api_key": KEY}},
])
ok = rc == 0 and res and len(res) == 4
check("a step of four calls: four Results, all status success, namespace BashExecutor, "
      "distinct call_ids",
      ok and all(r["status"] == "success" and r["namespace"] == "BashExecutor" and r["error"] is None
                 and isinstance(r["call_id"], str) for r in res)
      and len({r["call_id"] for r in res}) == 4, res)
if ok:
    r1, r2, r3, r4 = (r["result"] for r in res)
    check("cwd honoured: cat notes.txt in the given directory",
          r1 == {"success": True, "exit_code": 0, "stdout": "one\ntwo\n", "stderr": "",
                 "truncated": False}, r1)
    check("a non-zero exit: success false with exit_code and stderr, and the next command ran",
          isinstance(r2, dict) and r2.get("success") is False and r2.get("exit_code") == 2
          and "No such file" in r2.get("stderr", "") and r3.get("success") is True, r2)
    check("UFO's result dict: success, exit_code, stdout, stderr (+ our truncated)",
          set(r3) == {"success", "exit_code", "stdout", "stderr", "truncated"}
          and r3["stdout"] == "Linux\n", r3)
    check("get_system_info: {uname, uptime, memory, disk}, strings, stripped",
          isinstance(r4, dict) and set(r4) == {"uname", "uptime", "memory", "disk"}
          and all(isinstance(v, str) and v and v == v.strip() for v in r4.values())
          and r4["uname"].startswith("Linux") and "Mem:" in r4["memory"]
          and "Filesystem" in r4["disk"], r4)

t0 = time.monotonic()
rc, res = step([{"tool_name": "execute_command", "call_id": "t1",
                 "parameters": {"command": "sleep 4", "timeout": 1, "api_key": KEY}},
                {"tool_name": "execute_command", "call_id": "t2",
                 "parameters": {"command": "echo after", "api_key": KEY}}])
took = time.monotonic() - t0
check("timeout honoured: sleep 4 with timeout 1 ends in about 1 s with UFO's timeout result",
      rc == 0 and res and res[0]["status"] == "success"
      and res[0]["result"] == {"success": False, "error": "Timeout after 1s."} and took < 3.5,
      "%.2f s: %s" % (took, res))
check("... and the batch goes on", res and len(res) == 2 and res[1]["status"] == "success"
      and res[1]["result"]["stdout"] == "after\n", res)

rc, res = step([
    {"tool_name": "execute_command", "call_id": "p1",
     "parameters": {"command": "rm -rf /tmp/x", "api_key": KEY}},
    {"tool_name": "execute_command", "call_id": "p2",
     "parameters": {"command": "find / -delete", "api_key": KEY}},
    {"tool_name": "execute_command", "call_id": "p3",
     "parameters": {"command": "ls", "cwd": "/no/such/dir", "api_key": KEY}},
    {"tool_name": "execute_command", "call_id": "p4",
     "parameters": {"command": "ls", "api_key": "wrong"}},
    {"tool_name": "get_system_info", "call_id": "p5", "parameters": {}},
])
ok = rc == 0 and res and len(res) == 5 and all(r["status"] == "success" for r in res)
check("refusals are successful calls (UFO): policy, cwd, key — five Results, all success", ok, res)
if ok:
    rr = [r["result"] for r in res]
    check("policy refusal: {success: false, error: Command blocked by security policy...}",
          all(set(x) == {"success", "error"} and x["success"] is False
              and x["error"].startswith("Command blocked by security policy") for x in rr[:2]), rr[:2])
    check("bad cwd: UFO's text",
          rr[2] == {"success": False, "error":
                    "Invalid working directory: Working directory does not exist: /no/such/dir"}, rr[2])
    check("wrong api_key: UFO's authentication failure",
          rr[3] == {"success": False, "error": "Authentication failed. Invalid or missing API key."}, rr[3])
    check("get_system_info without the key: UFO's {error} shape",
          rr[4] == {"error": "Authentication failed. Invalid or missing API key."}, rr[4])

rc, res = step([{"tool_name": "execute_command", "call_id": "m1", "parameters": {"timeout": 5}},
                {"tool_name": "execute_command", "call_id": "m2",
                 "parameters": {"command": "echo never", "api_key": KEY}},
                {"tool_name": "get_system_info", "call_id": "m3", "parameters": {"api_key": KEY}}])
check("a missing command fails naming it; the rest is skipped with UFO's text, result and "
      "namespace null",
      rc == 1 and res and len(res) == 3 and res[0]["status"] == "failure"
      and "command" in (res[0]["error"] or "") and res[0]["result"] is None
      and all(r["status"] == "skipped" and r["error"] == SKIPPED and r["result"] is None
              and r["namespace"] is None for r in res[1:]), res)
rc, res = step([{"tool_name": "execute_command", "call_id": "n1",
                 "parameters": {"command": "echo x", "timeout": "soon", "api_key": KEY}}])
check("a timeout that is not an integer fails naming it",
      rc == 1 and res and res[0]["status"] == "failure" and "timeout" in res[0]["error"], res)
check("every Result has UFO's five keys with their types",
      every_result and all(result_shape_ok(r) for r in every_result),
      [r for r in every_result if not result_shape_ok(r)][:2])

# ---- 3. pydantic, as a UFO server validates them ----------------------------------------------
PYDANTIC_CHECK = r'''
import json, sys
from typing import Any, Dict, Optional
from enum import Enum
from pydantic import BaseModel, Field
class MCPToolInfo(BaseModel):
    tool_key: str
    tool_name: str
    title: Optional[str] = None
    namespace: str
    tool_type: str
    description: Optional[str] = None
    input_schema: Optional[Dict[str, Any]] = None
    output_schema: Optional[Dict[str, Any]] = None
    meta: Optional[Dict[str, Any]] = None
    annotations: Optional[Dict[str, Any]] = None
class ResultStatus(str, Enum):
    SUCCESS = "success"; FAILURE = "failure"; SKIPPED = "skipped"; NONE = "none"
class Result(BaseModel):
    status: ResultStatus = Field(...)
    error: Optional[str] = None
    result: Any = None
    namespace: Optional[str] = None
    call_id: Optional[str] = None
data = json.load(sys.stdin)
for t in data["tools"]:
    MCPToolInfo(**t)
for r in data["results"]:
    Result(**r)
print("validated %d tools, %d results" % (len(data["tools"]), len(data["results"])))
'''
py = None
for d in os.environ.get("PATH", "").split(os.pathsep):
    cand = os.path.join(d, "python3")
    if os.access(cand, os.X_OK) and subprocess.run(
            [cand, "-c", "import pydantic, sys; sys.exit(0 if pydantic.VERSION >= '2' else 1)"],
            capture_output=True).returncode == 0:
        py = cand
        break
if py:
    rc, res = step([{"tool_name": "list_tools", "parameters": {}}])
    all_tools = res[0]["result"] if res else []
    p = subprocess.run([py, "-c", PYDANTIC_CHECK], input=json.dumps(
        {"tools": tools + all_tools, "results": every_result}), capture_output=True, text=True)
    check("pydantic 2 (%s) accepts every MCPToolInfo and Result as UFO's models" % py,
          p.returncode == 0, (p.stdout + p.stderr)[-800:])
else:
    print("note: no python3 with pydantic 2 on PATH: the pydantic cross-check was not run")

log = open(os.path.join(TMP, "agent.err")).read()
check("the agent is still connected (registered once, no reconnect during the steps)",
      agent.poll() is None and log.count("registered as linux-1") == 1, log[-500:])
agent.terminate()
agent.wait(timeout=10)
sp.terminate()
sys.exit(checks.summary("linux agent: "))
