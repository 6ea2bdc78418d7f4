#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: every command with a usable response_id gets exactly one command_results.

The real constellation-agent against the scripted hostile peer (aip_peer.py), on 127.0.0.1:

1. Parameters that are valid JSON to Python's json.dumps but that the agent's strict decoder
   refuses — "\\u0000", a lone surrogate "\\ud800", nesting 70 deep — make that action a failure
   naming the reason (the rest of the batch as the batch semantics say: skipped after it), not
   the whole frame an uncorrelated error. A frame broken after its response_id is answered as
   a failed batch; one broken before any response_id gets the uncorrelated error, as before.
2. A batch of 200 read_file of 64 KiB files (12.8 MiB of content, more than the 8 MiB the
   connection can queue) is answered with one command_results that fits: contents keep their
   tails ("truncated": true); with a 128 KiB outbound limit, failure Results naming the limit
   stand for what had to go. Four such batches while the server reads nothing for 1.5 s: the
   answers wait for room in the full queue and all go out whole.

usage: answer_test.py BUILD_DIR SOURCE_DIR [--list] [SCENARIO|GROUP ...]
Scenario groups (ctest runs one entry each, agent_answers.GROUP): hostile, big.
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
PEER = aiptest.peer_path("aip_peer.py")
PY = "/usr/bin/python3"
TMP = tempfile.mkdtemp(prefix="aip-answer-test.")
procs = aiptest.procs
aiptest.kill_at_exit(remove=None if os.environ.get("AIP_KEEP_TMP") else TMP)
checks = aiptest.Checks(flush=True)
check = checks.check
wait_for = aiptest.wait_for
scenario = aiptest.scenario
events = aiptest.json_lines
MIB = 1 << 20


def peer(*args):
    log = os.path.join(TMP, "peer-%d.log" % len(procs))
    p, port = aiptest.listen([PY, PEER, "--port", "0", "--log", log, "--max-size", str(64 * MIB)]
                             + list(args))
    return p, port, log


def agent(port, cfg, name):
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    err = open(os.path.join(TMP, name + ".err"), "w")
    p = subprocess.Popen([AGENT, "--server", "ws://127.0.0.1:%d/ws" % port, "--client-id", name,
                          "--config", path, "--log-level", "info"],
                         stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    return p, err.name


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def answers(log, rid):
    """The command_results frames (with their size) the peer got for response_id rid."""
    return [(e["frame"], e.get("bytes")) for e in events(log)
            if e.get("dir") == "in" and isinstance(e.get("frame"), dict)
            and e["frame"].get("type") == "command_results"
            and e["frame"].get("prev_response_id") == rid]


def one_answer(log, rid, timeout=20.0):
    got = wait_for(lambda: answers(log, rid), timeout, step=0.3)
    return got[0] if got else (None, None)


def command(rid, actions):
    return json.dumps({"type": "command", "status": "continue", "response_id": rid,
                       "session_id": "s-" + rid, "actions": actions})


def echo(cid, params):
    return {"tool_name": "echo", "tool_type": "data_collection", "call_id": cid,
            "parameters": params}


def nested(levels):
    v = "bottom"
    for _ in range(levels):
        v = {"d": v}
    return v


# ---- 1. hostile parameters ------------------------------------------------------------------


@scenario("hostile")
def hostile_parameters():
    hostile = [
        ("r-nul", [echo("n0", {"text": "fine"}), echo("n1", {"text": "a\u0000b"}),
                   echo("n2", {"text": "never run"})], "\\u0000 in string"),
        ("r-sur", [echo("s0", {"text": "\ud800"}), echo("s1", {"text": "never run"})],
         "unpaired UTF-16 surrogate"),
        ("r-deep", [echo("d0", {"text": "ok"}), echo("d1", nested(70)), echo("d2", {})],
         "nesting deeper than 64 levels"),
    ]
    broken_after = ('{"type":"command","status":"continue","response_id":"r-broken",'
                    '"session_id":"s-broken","actions":[{"tool_name":"echo","parameters":'
                    '{"text":"\\x41"},"tool_type":"action","call_id":"b0"}]}')
    broken_before = ('{"type":"command","status":"continue","actions":[{"tool_name":"echo",'
                     '"parameters":{"text":"\\x41"},"tool_type":"action"}],"response_id":"r-lost"}')
    args = []
    for rid, acts, _ in hostile:
        args += ["--command", command(rid, acts)]
    args += ["--raw-command", broken_after, "--raw-command", broken_before,
             "--command", command("r-after", [echo("z0", {"text": "still here"})])]
    pp, port, log = peer(*args)
    a, aerr = agent(port, {"heartbeat": 5}, "agent-hostile")
    check("hostile: the agent registers", bool(wait_for(lambda: [
        e for e in events(log) if e.get("event") == "registered"], 10)))

    for rid, acts, reason in hostile:
        frame, _ = one_answer(log, rid)
        if not check("hostile %s: answered with a correlated command_results" % rid,
                     frame is not None and frame.get("session_id") == "s-" + rid, frame):
            continue
        ar = frame.get("action_results") or []
        bad = next(i for i, x in enumerate(acts) if x["call_id"] in ("n1", "s0", "d1"))
        want = ["success"] * bad + ["failure"] + ["skipped"] * (len(acts) - bad - 1)
        check("hostile %s: one Result per action, with its call_id" % rid,
              [x.get("call_id") for x in ar] == [x["call_id"] for x in acts], ar)
        check("hostile %s: statuses %s" % (rid, ",".join(want)),
              [x.get("status") for x in ar] == want, ar)
        err = ar[bad].get("error") if len(ar) > bad else None
        check("hostile %s: the bad action's failure names the reason (%s)" % (rid, reason),
              isinstance(err, str) and reason in err and "parameters" in err, err)
    frame, _ = one_answer(log, "r-broken")
    check("hostile: a frame broken after its response_id is answered as a failed batch",
          frame is not None and frame.get("status") == "failed"
          and "invalid escape" in (frame.get("error") or "") and frame.get("action_results") == [],
          frame)
    frame, _ = one_answer(log, "r-after")
    check("hostile: the link still serves a sane batch after them",
          frame is not None and [x.get("status") for x in frame.get("action_results") or []]
          == ["success"], frame)
    errors = [e["frame"] for e in events(log) if e.get("dir") == "in"
              and isinstance(e.get("frame"), dict) and e["frame"].get("type") == "error"]
    check("hostile: a frame broken before any response_id gets the uncorrelated error",
          any("malformed frame" in (f.get("error") or "") and "invalid escape" in f["error"]
              for f in errors), errors)
    time.sleep(0.5)  # a second answer would come right after the first
    counts = {rid: len(answers(log, rid)) for rid in
              [h[0] for h in hostile] + ["r-broken", "r-after", "r-lost"]}
    check("hostile: exactly one command_results per answerable command, none for r-lost",
          counts == {"r-nul": 1, "r-sur": 1, "r-deep": 1, "r-broken": 1, "r-after": 1, "r-lost": 0},
          counts)
    check("hostile: the agent is still up, and stops cleanly", a.poll() is None and stop(a) == 0)
    pp.terminate()
    pp.wait()


# ---- 2. answers larger than the outbound limit ----------------------------------------------


ROOT = os.path.join(TMP, "files")
FILES = 200


@aiptest.shared
def files():
    """FILES files of 64 KiB under ROOT: (the read_file actions, their texts, the tools config)."""
    os.mkdir(ROOT)
    texts = []
    for i in range(FILES):
        line = "file %03d: the quick brown fox jumps over the lazy dog \"%d\"\n" % (i, i)
        t = (line * (65536 // len(line) + 1))[:65536]
        with open(os.path.join(ROOT, "f%03d.txt" % i), "w") as f:
            f.write(t)
        texts.append(t)
    reads = [{"tool_name": "read_file", "tool_type": "data_collection", "call_id": "c%03d" % i,
              "parameters": {"path": "f%03d.txt" % i}} for i in range(FILES)]
    tools = {"workers": 2, "read_file": {"roots": [ROOT], "max_bytes": 65536}}
    return reads, texts, tools


def check_big(tag, frame, size, limit, expect_dropped):
    texts = files()[1]
    if not check("%s: answered with one correlated command_results" % tag,
                 frame is not None and frame.get("session_id") is not None, frame is None):
        return
    check("%s: the frame fits the outbound limit (%s <= %d bytes)" % (tag, size, limit),
          isinstance(size, int) and 0 < size <= limit, size)
    ar = frame.get("action_results") or []
    check("%s: one Result per action, call_ids in order" % tag,
          [x.get("call_id") for x in ar] == ["c%03d" % i for i in range(FILES)],
          len(ar))
    ok = [x for x in ar if x.get("status") == "success"]
    dropped = [x for x in ar if x.get("status") == "failure"]
    want = "result dropped: the answer would exceed the outbound limit of %d bytes" % limit
    check("%s: the others are failures naming the limit (%d of them)" % (tag, len(dropped)),
          all(x.get("error") == want and x.get("result") is None for x in dropped)
          and len(ok) + len(dropped) == FILES, [x.get("error") for x in dropped[:1]])
    check("%s: %s" % (tag, "some Results dropped" if expect_dropped else "no Result dropped"),
          bool(dropped) == expect_dropped, len(dropped))
    tails_ok = True
    for x in ok:
        r = x.get("result") or {}
        i = int(x["call_id"][1:])
        c = r.get("content") or ""
        if not (r.get("truncated") is True and 512 <= len(c) < 65536
                and texts[i].endswith(c) and r.get("size") == 65536):
            tails_ok = False
            break
    check("%s: each kept content is the file's tail, cut, with truncated: true" % tag,
          tails_ok and ok, (len(ok), (ok[0].get("result") or {}).get("truncated") if ok else None))


@scenario("big_8mib", group="big")
def big_8mib():
    reads, _, tools = files()
    pp, port, log = peer("--command", command("r-big", reads))
    a, aerr = agent(port, {"heartbeat": 5, "tools": tools}, "agent-big")
    frame, size = one_answer(log, "r-big", 60)
    check_big("8 MiB", frame, size, 8 * MIB, False)
    time.sleep(0.5)
    check("8 MiB: exactly one command_results", len(answers(log, "r-big")) == 1)
    with open(aerr) as f:
        err = f.read()
    check("8 MiB: the cut is logged at warn", "over the outbound limit (limits.max_queued_bytes)"
          in err and "200 strings cut" in err and " 0 results dropped" in err, err[-600:])
    check("8 MiB: agent stops cleanly", stop(a) == 0)
    pp.terminate()
    pp.wait()


@scenario("big_128kib", group="big")
def big_128kib():
    reads, _, tools = files()
    limit = 128 * 1024
    pp, port, log = peer("--command", command("r-small", reads))
    a, aerr = agent(port, {"heartbeat": 5, "tools": tools, "limits": {"max_queued_bytes": limit}},
                    "agent-small")
    frame, size = one_answer(log, "r-small", 60)
    check_big("128 KiB", frame, size, limit, True)
    check("128 KiB: agent stops cleanly", stop(a) == 0)
    pp.terminate()
    pp.wait()


@scenario("queue_full", group="big")
def queue_full():
    reads, _, tools = files()
    # four 8 MiB answers while the server reads nothing for 1.5 s: the queue holds one (and the
    # socket buffers some 10 MB more), so the others wait for room — less than the 5 s after which
    # an answer would be cut to the room left — and all four go out whole once the server reads
    SANITIZED = bool(os.environ.get("AIP_SANITIZE"))
    rids = ["r-four-%d" % i for i in range(4)]
    cmds = []
    for rid in rids:
        cmds += ["--command", command(rid, reads)]
    pp, port, log = peer(*(cmds + ["--command-interval", "0", "--read-pause", "1.5"]))
    a, aerr = agent(port, {"heartbeat": 5, "tools": dict(tools, workers=4)}, "agent-four")
    got = [one_answer(log, rid, 60) for rid in rids]
    for rid, (f, sz) in zip(rids, got):
        check_big("queue full, " + rid, f, sz, 8 * MIB, False)
    with open(aerr) as f:
        err = f.read()
    if not SANITIZED:  # instrumented, the answers may come too slowly to meet in the queue
        check("queue full: answers waited for room", "the outbound queue is full, waiting for room"
              in err, err[-800:])
    check("queue full: nothing was left unsent", "not sent" not in err, err[-600:])
    check("queue full: agent stops cleanly", stop(a) == 0)
    pp.terminate()
    pp.wait()


sys.exit(aiptest.main(checks, "answers: "))
