#!/usr/bin/python3
"""Integration: the constellation-agent daemon as a fleet operator runs it, on 127.0.0.1.

Against the scripted UFO-shaped peer (tests/integration/aip_peer.py, whose JSON log shows
every frame): the registration has UFO's shape and the eleven system_info fields with the
right JSON types; the batch [get_device_info, echo, <unknown>, echo] is answered success,
success, failure, skipped with matching call_ids; a shell command is refused by default;
garbage frames are survived; it reconnects after a drop and after refused registrations;
SIGTERM makes it send a close frame and exit 0 within 2 s; SIGHUP reloads the config.
Against aip-test-server + aipctl: batch semantics (timeout, invalid action), execute_command
allowed by config. Config errors exit 78.

usage: agent_test.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import aiptest

BUILD, SRC = sys.argv[1], sys.argv[2]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
PEER = os.path.join(SRC, "tests", "integration", "aip_peer.py")
PY = "/usr/bin/python3"
TMP = tempfile.mkdtemp(prefix="aip-agent-test.")
procs = aiptest.procs
aiptest.kill_at_exit()
checks = aiptest.Checks()
check = checks.check
listen = aiptest.listen
wait_for = aiptest.wait_for
events = aiptest.json_lines


def peer(*args):
    log = os.path.join(TMP, "peer-%d.log" % len(procs))
    p, port = listen([PY, PEER, "--port", "0", "--log", log] + list(args))
    return p, port, log


def frames_in(log, ftype):
    return [e["frame"] for e in events(log)
            if e.get("dir") == "in" and isinstance(e.get("frame"), dict) and e["frame"].get("type") == ftype]


def write_config(name, cfg, mode=0o600):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        json.dump(cfg, f)
    os.chmod(path, mode)
    return path


def agent(port, *extra, config=None, client_id="agent-1"):
    cmd = [AGENT, "--server", "ws://127.0.0.1:%d/ws" % port, "--client-id", client_id,
           "--log-level", "debug"] + list(extra)
    if config:
        cmd += ["--config", config]
    err = open(os.path.join(TMP, "agent-%d.err" % len(procs)), "w")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    t0 = time.monotonic()
    p.send_signal(sig)
    try:
        rc = p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    return rc, time.monotonic() - t0


def command(actions, rid):
    return json.dumps({"type": "command", "status": "continue", "response_id": rid,
                       "session_id": "s-" + rid, "actions": actions})


def results_for(log, rid):
    for f in frames_in(log, "command_results"):
        if f.get("prev_response_id") == rid:
            return f
    return None


# ---- against the UFO-shaped peer ------------------------------------------------------------

batch = [{"tool_name": "get_device_info", "tool_type": "data_collection", "call_id": "c1", "parameters": {}},
         {"tool_name": "echo", "tool_type": "action", "call_id": "c2", "parameters": {"text": "hi"}},
         {"tool_name": "no_such_tool", "tool_type": "action", "call_id": "c3", "parameters": {}},
         {"tool_name": "echo", "tool_type": "action", "call_id": "c4", "parameters": {"text": "x"}}]
shell = [{"tool_name": "execute_command", "tool_type": "action", "call_id": "s1",
          "parameters": {"command": "/bin/echo pwned"}}]
pp, port, log = peer("--command", command(batch, "r-batch"), "--command", command(shell, "r-shell"),
                     "--garbage")
a = agent(port, "--heartbeat", "5")
regs = wait_for(lambda: frames_in(log, "register"))
check("registers", bool(regs))
if regs:
    r = regs[0]
    check("registration is UFO-shaped", r.get("status") == "ok" and r.get("client_type") == "device"
          and r.get("client_id") == "agent-1" and isinstance(r.get("timestamp"), str)
          and isinstance(r.get("metadata"), dict) and r["metadata"].get("platform") == "linux"
          and isinstance(r["metadata"].get("registration_time"), str), r)
    si = (r.get("metadata") or {}).get("system_info") or {}
    want = [("device_id", str), ("platform", str), ("os_version", str), ("cpu_count", int),
            ("memory_total_gb", float), ("hostname", str), ("ip_address", str),
            ("supported_features", list), ("platform_type", str), ("schema_version", str),
            ("custom_metadata", dict)]
    keys = list(si.keys())[:11]
    check("system_info: UFO's eleven fields first, in order", keys == [k for k, _ in want], keys)
    check("system_info: JSON types", all(type(si.get(k)) is t for k, t in want),
          {k: type(si.get(k)).__name__ for k, _ in want})
    check("system_info values", si.get("device_id") == "agent-1" and si.get("platform") == "linux"
          and si.get("platform_type") == "computer" and si.get("schema_version") == "1.0"
          and si.get("cpu_count", 0) >= 1 and "echo" in si.get("supported_features", [])
          and "execute_command" not in si.get("supported_features", []), si)
res = wait_for(lambda: results_for(log, "r-batch"))
check("batch answered", res is not None)
if res:
    ar = res.get("action_results") or []
    check("batch: success, success, failure, skipped",
          [x.get("status") for x in ar] == ["success", "success", "failure", "skipped"], ar)
    check("batch: call_ids match", [x.get("call_id") for x in ar] == ["c1", "c2", "c3", "c4"], ar)
    check("batch: skipped text is UFO's",
          len(ar) == 4 and ar[3].get("error") == "Skipped due to previous failure (early_exit=True).", ar)
    check("batch: echo result", len(ar) > 1 and ar[1].get("result") == "hi", ar)
    check("batch: prev_response_id and session_id", res.get("session_id") == "s-r-batch")
sres = wait_for(lambda: results_for(log, "r-shell"))
check("shell command refused by default",
      sres is not None and sres["action_results"][0]["status"] == "failure"
      and "pwned" not in json.dumps(sres), sres)
# the peer sent its garbage before the batches, so answered batches already show survival;
# each malformed frame was also answered with an AIP error naming the problem
check("garbage: each malformed frame answered with an error, agent still up",
      len([f for f in frames_in(log, "error") if "malformed" in (f.get("error") or "")]) >= 6
      and a.poll() is None, frames_in(log, "error"))
rc, dt = stop(a)
check("SIGTERM: exit 0 within 2 s", rc == 0 and dt < 2.0, (rc, dt))
check("SIGTERM: a close frame was sent",
      wait_for(lambda: any(e.get("event") == "disconnect" and e.get("close_code") in (1000, 1001)
                           for e in events(log)), 3), [e for e in events(log) if e.get("event") == "disconnect"])
pp.terminate()

# drops and refused registrations: it backs off and comes back
pp, port, log = peer("--refuse-registration", "2", "--drop-after-frames", "3")
cfg = write_config("fast.json", {"backoff": {"base_ms": 50, "cap_ms": 300}})
a = agent(port, "--heartbeat", "1", config=cfg)
connects = wait_for(lambda: len([e for e in events(log) if e.get("event") == "registered"]) >= 2, 15)
check("refused twice, dropped, and back again", connects,
      [e.get("event") for e in events(log) if "event" in e])
stop(a)
pp.terminate()

# SIGHUP: a changed config reconnects with the new settings
pp, port, log = peer()
cfg = write_config("hup.json", {"tags": {"v": 1}})
a = agent(port, config=cfg)
wait_for(lambda: frames_in(log, "register"))
write_config("hup.json", {"tags": {"v": 2}})
a.send_signal(signal.SIGHUP)
regs = wait_for(lambda: len(frames_in(log, "register")) >= 2 and frames_in(log, "register"), 10)
check("SIGHUP: reconnects with the new tags",
      bool(regs) and regs[-1]["metadata"]["system_info"]["custom_metadata"] == {"v": 2}, regs)
a.send_signal(signal.SIGHUP)  # unchanged: no new registration
time.sleep(0.5)
check("SIGHUP: unchanged config keeps the link", len(frames_in(log, "register")) == 2)
stop(a)
pp.terminate()

# ---- against aip-test-server, driven with aipctl ------------------------------------------------

sp, sport = listen([SERVER, "--port", "0", "--no-token"], stderr=subprocess.DEVNULL)
url = "ws://127.0.0.1:%d/ws" % sport
os.makedirs(os.path.join(TMP, "root"), exist_ok=True)
with open(os.path.join(TMP, "root", "f.txt"), "w") as f:
    f.write("readable")
cfg = write_config("tools.json", {"tools": {"command_timeout_s": 1,
                                            "read_file": {"roots": [os.path.join(TMP, "root")]},
                                            "execute_command": {"enabled": True, "allow": ["/bin/echo", "echo"]}}})
a = agent(sport, config=cfg, client_id="dev-a")
wait_for(lambda: b'"dev-a"' in subprocess.run([AIPCTL, "--server", url, "devices"],
                                               capture_output=True).stdout)


def task(actions):
    p = subprocess.run([AIPCTL, "--server", url, "--timeout", "20", "task", "dev-a",
                        json.dumps({"actions": actions})], capture_output=True, text=True)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        return p.returncode, None
    return p.returncode, [r["status"] for b in out["result"] or [] for r in b["result"]], out


rc, st, out = task([{"tool_name": "echo", "parameters": {"text": "a"}}, {"tool_name": "sleep", "parameters": {"seconds": 5}},
                    {"tool_name": "echo"}])
check("timeout: the slow command fails, the rest is skipped", rc == 1 and st == ["success", "failure", "skipped"], out)
rc, st, out = task([{"tool_name": "echo", "parameters": {"text": "a"}}, {"tool_name": "read_file", "parameters": {"path": os.path.join(TMP, "root", "f.txt")}}])
check("read_file under a configured root", rc == 0 and st == ["success", "success"] and "readable" in json.dumps(out), out)
rc, st, out = task([{"tool_name": "read_file", "parameters": {"path": "/etc/passwd"}}])
check("read_file outside the roots is refused", rc == 1 and st == ["failure"], out)
rc, st, out = task([{"tool_name": "execute_command", "parameters": {"command": "/bin/echo allowed"}}])
check("execute_command allowed by config", rc == 0 and st == ["success"] and "allowed" in json.dumps(out), out)
rc, st, out = task([{"tool_name": "execute_command", "parameters": {"command": "/bin/cat /etc/passwd"}}])
check("execute_command off the allowlist is refused", rc == 1 and st == ["failure"], out)
stop(a)
sp.terminate()

# ---- configuration errors exit 78 ------------------------------------------------------------


def config_rc(*args, cfg=None, mode=0o600, env=None):
    cmd = [AGENT, "--server", "ws://127.0.0.1:1/ws", "--check-config"] + list(args)
    if cfg is not None:
        cmd += ["--config", write_config("bad.json", cfg, mode)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


r = config_rc(cfg={"servre": "x"})
check("unknown key: exit 78 naming it", r.returncode == 78 and "servre" in r.stderr, r.stderr)
r = config_rc(cfg={"tags": {"blob": "x" * 20000}})
check("tags over 16 KiB: exit 78 naming the limit", r.returncode == 78 and "tags" in r.stderr
      and "16384" in r.stderr, r.stderr)
r = config_rc(cfg={"tags": {"blob": "x" * 16000}})
check("tags under 16 KiB are fine", r.returncode == 0, r.stderr)
r = config_rc(cfg={"heartbeat": "fast"})
check("bad value: exit 78 naming it", r.returncode == 78 and "heartbeat" in r.stderr, r.stderr)
r = config_rc(cfg={"token": "s3cret"}, mode=0o644)
check("token in a file readable by others: exit 78", r.returncode == 78 and "readable by others" in r.stderr
      and "s3cret" not in r.stderr, r.stderr)
tok = os.path.join(TMP, "token")
with open(tok, "w") as f:
    f.write("s3cret\n")
os.chmod(tok, 0o644)
r = config_rc("--token-file", tok)
check("token file readable by others: exit 78", r.returncode == 78, r.stderr)
os.chmod(tok, 0o600)
r = config_rc("--token-file", tok)
check("--check-config hides the token", r.returncode == 0 and "s3cret" not in r.stdout, r.stdout)
r = subprocess.run([AGENT, "--check-config"], capture_output=True, text=True,
                   env={k: v for k, v in os.environ.items() if k != "AIP_SERVER"})
check("no server: exit 78", r.returncode == 78 and "server" in r.stderr, r.stderr)
r = subprocess.run([AGENT, "--check-config"], capture_output=True, text=True,
                   env=dict(os.environ, AIP_SERVER="ws://127.0.0.1:9/ws"))
check("AIP_SERVER from the environment", r.returncode == 0 and "127.0.0.1:9" in r.stdout, r.stdout)
r = subprocess.run([AGENT, "--bogus"], capture_output=True, text=True)
check("usage error: exit 2", r.returncode == 2)

aiptest.kill_all()
sys.exit(checks.summary("agent: "))
