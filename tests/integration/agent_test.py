#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: the constellation-agent daemon as a fleet operator runs it, on 127.0.0.1.

Against the scripted UFO-shaped peer (tests/integration/peers/aip_peer.py, whose JSON log shows
every frame): the registration has UFO's shape and the eleven system_info fields with the
right JSON types; the batch [get_device_info, echo, <unknown>, echo] is answered success,
success, failure, skipped with matching call_ids; a shell command is refused by default;
garbage frames are survived; it reconnects after a drop and after refused registrations;
SIGTERM makes it send a close frame and exit 0 within 2 s; SIGHUP reloads the config.
Against aip-test-server + aipctl: batch semantics (timeout, invalid action), execute_command
allowed by config; a task whose results are over 2 MiB, which the server echoes to the device in
task_end: the agent (1 MiB limit) skips it and keeps its link, aipctl prints it whole, and with
--max-frame 1M fails at once with "too large". Config errors exit 78.

usage: agent_test.py BUILD_DIR SOURCE_DIR [--list] [SCENARIO|GROUP ...]
Scenario groups (ctest runs one entry each, agent_daemon.GROUP): peer, server, config.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import aiptest

BUILD, SRC = aiptest.script_args(2, "BUILD_DIR SOURCE_DIR")
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
PEER = aiptest.peer_path("aip_peer.py")
PY = "/usr/bin/python3"
TMP = tempfile.mkdtemp(prefix="aip-agent-test.")
procs = aiptest.procs
aiptest.kill_at_exit()
checks = aiptest.Checks()
check = checks.check
listen = aiptest.listen
wait_for = aiptest.wait_for
scenario = aiptest.scenario
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


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


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


def task_on(server, device, actions):
    p = subprocess.run([AIPCTL, "--server", server, "--timeout", "20", "task", device,
                        json.dumps({"actions": actions})], capture_output=True, text=True)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        return p.returncode, None, p.stderr
    return p.returncode, [r["status"] for b in out["result"] or [] for r in b["result"]], out


def run_timed(cmd):
    """Runs cmd; returns (exit code, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def agent_log(p):
    with open(os.path.join(TMP, "agent-%d.err" % procs.index(p))) as f:
        return f.read()


def config_rc(*args, cfg=None, mode=0o600, env=None):
    cmd = [AGENT, "--server", "ws://127.0.0.1:1/ws", "--check-config"] + list(args)
    if cfg is not None:
        cmd += ["--config", write_config("bad.json", cfg, mode)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


# ---- against the UFO-shaped peer ------------------------------------------------------------


@scenario("batch", group="peer")
def peer_batch():
    """Registration shape, a batch, a shell command refused, garbage survived, SIGTERM."""
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


@scenario("reconnect", group="peer")
def peer_reconnect():
    """Drops and refused registrations: it backs off and comes back."""
    pp, port, log = peer("--refuse-registration", "2", "--drop-after-frames", "3")
    cfg = write_config("fast.json", {"backoff": {"base_ms": 50, "cap_ms": 300}})
    a = agent(port, "--heartbeat", "1", config=cfg)
    connects = wait_for(lambda: len([e for e in events(log) if e.get("event") == "registered"]) >= 2, 15)
    check("refused twice, dropped, and back again", connects,
          [e.get("event") for e in events(log) if "event" in e])
    stop(a)
    pp.terminate()


@scenario("sighup", group="peer")
def peer_sighup():
    """SIGHUP: a changed config reconnects with the new settings."""
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


@scenario("tools", group="server")
def server_tools():
    """Batch semantics (timeout), read_file roots, execute_command allowlist."""
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
        return task_on(url, "dev-a", actions)

    rc, st, out = task([{"tool_name": "echo", "parameters": {"text": "a"}}, {"tool_name": "sleep", "parameters": {"seconds": 5}},
                        {"tool_name": "echo"}])
    check("timeout: the slow command fails, the rest is skipped", rc == 1 and st == ["success", "failure", "skipped"], out)
    rc, st, out = task([{"tool_name": "echo", "parameters": {"text": "a"}}, {"tool_name": "read_file", "parameters": {"path": os.path.join(TMP, "root", "f.txt")}}])
    check("read_file under a configured root", rc == 0 and st == ["success", "success"] and "readable" in json.dumps(out), out)
    rc, st, out = task([{"tool_name": "read_file", "parameters": {"path": "/etc/passwd"}}])
    check("read_file outside the roots is refused", rc == 1 and st == ["failure"], out)
    rc, st, out = task([{"tool_name": "execute_command", "parameters": {"command": "/bin/echo allowed"}}])
    check("execute_command allowed by config", rc == 0 and st == ["success"] and "allowed" in json.dumps(out), out)
    rc, st, out = task([{"tool_name": "execute_command", "parameters": {"command": "/bin/cat /etc/passwd"}},
                        {"tool_name": "echo", "parameters": {"text": "next"}}])
    res = [r for b in (out or {}).get("result") or [] for r in b["result"]] if isinstance(out, dict) else []
    check("execute_command off the allowlist is refused as UFO does: a successful call with "
          "success false, and the batch goes on",
          rc == 0 and st == ["success", "success"] and res[0]["result"]["success"] is False
          and "not on the allowlist" in res[0]["result"]["error"] and res[0]["namespace"] == "BashExecutor", out)
    stop(a)
    sp.terminate()


# ---- results over 2 MiB: UFO's server echoes the task_end to the device too ---------------------


@scenario("big_results", group="server")
def server_big_results():
    sp, sport = listen([SERVER, "--port", "0", "--no-token"], stderr=subprocess.DEVNULL)
    url = "ws://127.0.0.1:%d/ws" % sport
    cfg = write_config("big.json", {"tools": {"max_output": 8 << 20, "command_timeout_s": 60,
                                              "execute_command": {"enabled": True, "allow": ["seq"]}}})
    a = agent(sport, config=cfg, client_id="dev-big")
    wait_for(lambda: b'"dev-big"' in subprocess.run([AIPCTL, "--server", url, "devices"],
                                                     capture_output=True).stdout)
    N = 350000  # `seq 1 350000`: 2,338,895 bytes of output, ~2.7 MB as a JSON string
    want = "".join("%d\n" % i for i in range(1, N + 1))
    big_task = json.dumps({"actions": [{"tool_name": "execute_command",
                                        "parameters": {"command": "seq 1 %d" % N}}]})
    rc, out, err, dt_ok = run_timed([AIPCTL, "--server", url, "--timeout", "60", "task",
                                                "dev-big", big_task])
    try:
        res = json.loads(out)["result"][0]["result"][0]
        stdout = json.loads(res["result"])["stdout"] if isinstance(res["result"], str) else res["result"]["stdout"]
    except (ValueError, KeyError, IndexError, TypeError):
        res, stdout = None, None
    check("big results: aipctl (default --max-frame 100M) prints the whole %d-byte output" % len(want),
          rc == 0 and stdout == want and not res.get("truncated"),
          "exit %d, %s bytes of stdout, stderr %s" % (rc, len(stdout) if stdout else None, err[-200:]))
    rc, out, err, dt_big = run_timed([AIPCTL, "--server", url, "--timeout", "60",
                                                  "--max-frame", "1M", "task", "dev-big", big_task])
    check("big results: aipctl --max-frame 1M fails with \"too large\" long before its 60 s timeout",
          rc == 1 and "too large" in err and "max_frame_in" in err and dt_big < 20,
          "exit %d after %.2f s: %s" % (rc, dt_big, err.strip()[-200:]))
    print("     big results: aipctl took %.2f s printing them, %.2f s failing with --max-frame 1M"
          % (dt_ok, dt_big))
    # the agent got the echoed task_end twice, over its 1 MiB limit: skipped both (debug lines),
    # warned once (at most one warning a minute), link kept
    log = wait_for(lambda: agent_log(a).count("an inbound task_end for") >= 2 and agent_log(a), 5)
    check("big results: the agent skipped both echoed task_ends, warned once",
          log and log.count("an inbound task_end for") == 2
          and log.count("skipped, the link kept") == 1 and "the latest: a task_end for" in log,
          log and log[-400:])
    check("big results: the agent kept its link (one registration, no close, no reconnect)",
          log and log.count("registered as") == 1 and "link closed" not in log
          and "reconnecting" not in log, log and log[-400:])
    rc, st, out = task_on(url, "dev-big", [{"tool_name": "echo", "parameters": {"text": "after"}}])
    check("big results: the agent still runs tasks on the same link", rc == 0 and st == ["success"], out)
    print("     big results: agent VmHWM %s kB (it also built and sent the 2.7 MB results)"
          % status_kb(a.pid, "VmHWM"))
    stop(a)
    sp.terminate()


# ---- configuration errors exit 78 ------------------------------------------------------------


@scenario("config_keys", group="config")
def config_keys():
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
    r = subprocess.run([AGENT, "--check-config", "--config",
                        write_config("frag.json", {"server": "ws://127.0.0.1:1/ws#frag"})],
                       capture_output=True, text=True)
    check("a server URL with a fragment: exit 78 naming it, the fragment not echoed",
          r.returncode == 78 and "fragment (#)" in r.stderr and "frag\"" not in r.stderr
          and "/ws#" not in r.stderr, r.stderr)


@scenario("config_token_file", group="config")
def config_token_file():
    tok = os.path.join(TMP, "token")
    with open(tok, "w") as f:
        f.write("s3cret\n")
    os.chmod(tok, 0o644)
    r = config_rc("--token-file", tok)
    check("token file readable by others: exit 78", r.returncode == 78, r.stderr)
    os.chmod(tok, 0o600)
    r = config_rc("--token-file", tok)
    check("--check-config hides the token", r.returncode == 0 and "s3cret" not in r.stdout, r.stdout)


@scenario("config_hardlinks", group="config")
def config_hardlinks():
    r = config_rc(cfg={"tools": {"read_file": {"roots": ["/tmp"]}}})
    check("tools.read_file.allow_hardlinks: false by default",
          r.returncode == 0 and json.loads(r.stdout).get("read_allow_hardlinks") is False, r.stdout)
    r = config_rc(cfg={"tools": {"read_file": {"roots": ["/tmp"], "allow_hardlinks": True}}})
    check("tools.read_file.allow_hardlinks: true is taken",
          r.returncode == 0 and json.loads(r.stdout).get("read_allow_hardlinks") is True, r.stdout)
    r = config_rc(cfg={"tools": {"read_file": {"allow_hardlinks": "yes"}}})
    check("tools.read_file.allow_hardlinks: not a boolean: exit 78 naming it",
          r.returncode == 78 and "tools.read_file.allow_hardlinks" in r.stderr, r.stderr)


@scenario("config_empty_token", group="config")
def config_empty_token():
    # an empty token file (the systemd unit's fallback credential when /etc/constellation-agent/token
    # does not exist) means "no token", said at info; readable by others is still refused
    empty = os.path.join(TMP, "empty-token")
    with open(empty, "w") as f:
        f.write("\n")
    os.chmod(empty, 0o600)
    r = config_rc("--token-file", empty)
    check("empty token file: valid, no token, an info line says so",
          r.returncode == 0 and '"token":null' in r.stdout
          and "is empty: connecting without a token" in r.stderr, (r.returncode, r.stdout, r.stderr))
    r = config_rc("--token-file", empty, cfg={"token": "from-the-file"})
    check("empty token file: over a token in the config, no token", r.returncode == 0
          and '"token":null' in r.stdout, r.stdout)
    os.chmod(empty, 0o644)
    r = config_rc("--token-file", empty)
    check("empty token file readable by others: still exit 78", r.returncode == 78
          and "readable by others" in r.stderr, r.stderr)
    os.chmod(empty, 0o600)
    pp, port, log = peer()
    a = agent(port, "--token-file", empty, client_id="agent-no-token")
    regs = wait_for(lambda: frames_in(log, "register"))
    conns = [e for e in events(log) if e.get("event") == "connect"]
    check("empty token file: registers with a server that has no key, no token sent",
          bool(regs) and conns and all("token" not in (e.get("path") or "") for e in conns),
          conns)
    stop(a)
    pp.terminate()


@scenario("config_server", group="config")
def config_server():
    r = subprocess.run([AGENT, "--check-config"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "AIP_SERVER"})
    check("no server: exit 78", r.returncode == 78 and "server" in r.stderr, r.stderr)
    noserver = write_config("no-server.json", {"log_level": "info"})
    r = subprocess.run([AGENT, "--config", noserver, "--check-config"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "AIP_SERVER"})
    check("no server in the config file: exit 78 naming the file", r.returncode == 78
          and '"server" in ' + noserver in r.stderr, r.stderr)
    r = subprocess.run([AGENT, "--check-config"], capture_output=True, text=True,
                       env=dict(os.environ, AIP_SERVER="ws://127.0.0.1:9/ws"))
    check("AIP_SERVER from the environment", r.returncode == 0 and "127.0.0.1:9" in r.stdout, r.stdout)


@scenario("config_max_frame", group="config")
def config_max_frame():
    r = config_rc()
    check("--check-config shows the inbound limit: 1 MiB by default", '"max_frame":1048576' in r.stdout,
          r.stdout)
    r = config_rc(cfg={"limits": {"max_frame": 4 << 20}})
    check("limits.max_frame sets it", r.returncode == 0 and '"max_frame":4194304' in r.stdout, r.stdout)
    r = config_rc(cfg={"limits": {"max_frame": 512}})
    check("limits.max_frame under 1024: exit 78", r.returncode == 78 and "max_frame" in r.stderr, r.stderr)


@scenario("usage", group="config")
def config_usage():
    r = subprocess.run([AGENT, "--bogus"], capture_output=True, text=True)
    check("usage error: exit 2", r.returncode == 2)


sys.exit(aiptest.main(checks, "agent: "))
