# SPDX-License-Identifier: MIT
"""Shared scaffolding of the Python integration tests (tests/integration/*_test.py).

Standard library only (runs under Debian's /usr/bin/python3). A test run as
`/usr/bin/python3 tests/integration/X_test.py ...` has this directory on sys.path, so
`import aiptest` works. What it holds:

- procs: the processes a test started; append each one (listen() does). kill_all() kills those
  still running; kill_at_exit() registers that for the script's end.
- Checks: check(name, ok, detail) prints "ok   name" or "FAIL name: detail" and counts;
  note(text) prints "NOTE text"; summary() prints "N passed, M failed" and returns the exit
  code (1 if any failed, else 0).
- listen(cmd): starts a program that prints 'listening on 127.0.0.1:PORT'; (proc, port).
- wait_for(pred): polls pred until it returns something true, or the timeout.
- json_lines(path): the JSON values in a JSON-lines log (aip_peer.py's, fault_proxy.py's).
- Scenarios, so that one can be run by name: a script declares its positional arguments with
  script_args(), each scenario as a function decorated with @scenario("name", group="g"), and
  ends with sys.exit(main(checks)). Then
      X_test.py ARGS... [--list] [NAME|GROUP|GLOB ...]
  runs the scenarios named (by name, by group, or by a shell pattern on the name), all of them
  when none is named, in the order they are declared; --list prints "group name" per scenario.
  An exception in a scenario is one FAIL line and the next scenario runs; the processes a
  scenario started (in procs) are killed when it ends, but for those of a @shared set-up. ctest runs one entry per group
  (tests/CMakeLists.txt, e.g. agent_daemon.config).
- Server(binary, flags, tmp): an aip-test-server on --port 0 with its stderr in a log file;
  stop() returns its exit code and any sanitizer report. api(port, method, path, body, key): one
  HTTP request to its admin API, the JSON (or text) answer.
- peer_path(name): the path of a helper peer in tests/integration/peers/ (aip_peer.py,
  fault_proxy.py, cdp.py, mcp_hostile_server.py).
"""
import atexit
import fnmatch
import http.client
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import traceback

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")


def peer_path(name):
    """The path of the helper peer `name` (e.g. "aip_peer.py") in tests/integration/peers/."""
    return os.path.join(PEERS, name)

procs = []


def kill_all(wait=False):
    """Kills every process in procs that is still running (and reaps it if wait)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            if wait:
                p.wait()


def kill_at_exit(wait=False, remove=None):
    """At the script's end: kill_all(wait), then remove the directory `remove` if given."""
    def _cleanup():
        kill_all(wait)
        if remove:
            shutil.rmtree(remove, ignore_errors=True)
    atexit.register(_cleanup)


class Checks:
    """Counts and prints checks. flush: flush each line; ok_detail: print a detail on "ok" lines
    too, as " (detail)"; any_detail: print a FAIL's detail unless it is "" (by default only a
    true one is printed); detail_max: cut a FAIL's detail text to that many characters."""

    def __init__(self, flush=False, ok_detail=False, any_detail=False, detail_max=None):
        self.flush, self.ok_detail = flush, ok_detail
        self.any_detail, self.detail_max = any_detail, detail_max
        self.passed = self.failed = 0

    def check(self, name, ok, detail=""):
        """Returns ok."""
        if ok:
            self.passed += 1
            line = "ok   " + name
            if self.ok_detail and detail:
                line += " (" + str(detail) + ")"
        else:
            self.failed += 1
            line = "FAIL " + name
            if (detail != "") if self.any_detail else detail:
                line += ": " + str(detail)[:self.detail_max]
        print(line, flush=self.flush)
        return ok

    def note(self, text):
        """Prints "NOTE text": an observation that is not a check."""
        print("NOTE " + text, flush=self.flush)

    def summary(self, prefix="", suffix=""):
        """Prints "<prefix>N passed, M failed<suffix>"; returns the exit code."""
        print("%s%d passed, %d failed%s" % (prefix, self.passed, self.failed, suffix))
        return 1 if self.failed else 0


def listen(cmd, **kw):
    """Starts a program that prints 'listening on 127.0.0.1:PORT' first; returns (proc, port).
    kw goes to subprocess.Popen (e.g. stderr=)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kw)
    procs.append(p)
    line = p.stdout.readline()
    if "listening on" not in line:
        raise RuntimeError("%s did not start: %r" % (cmd[0], line))
    return p, int(line.rsplit(":", 1)[1])


def wait_for(pred, timeout=10.0, step=0.05):
    """Calls pred every step seconds until it returns something true (returned) or timeout
    seconds passed; then returns pred()'s last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def json_lines(path):
    """The JSON values of the lines of the file at path, in order; lines that do not parse (a
    line being written) are left out; no file yet: []."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


# ---- servers -----------------------------------------------------------------------------------

class Server:
    """aip-test-server (or any program that prints 'listening on 127.0.0.1:PORT') started on
    --port 0 (--token TOKEN, else --no-token), its stderr in a log file under tmp, its stdout
    drained into stdout_lines by a thread. p: the Popen (in procs), port, pid, log: the stderr
    file's path. Raises RuntimeError (with its output) when it does not listen within timeout."""

    def __init__(self, binary, flags=(), tmp=None, token=None, log_level=None, name="server",
                 timeout=10.0):
        cmd = [binary, "--port", "0"] + (["--token", token] if token else ["--no-token"])
        if log_level:
            cmd += ["--log-level", log_level]
        cmd += list(flags)
        self.name = name
        self.log = os.path.join(tmp or "/tmp", "%s-%d.log" % (name, len(procs)))
        self.stdout_lines = []
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=open(self.log, "w"), text=True, bufsize=1)
        procs.append(self.p)
        self.pid = self.p.pid
        self.port = self._listening(timeout)
        if self.port is None:
            raise RuntimeError("%s (%s) did not start: stdout %r, stderr %r"
                               % (name, binary, self.stdout_lines, self.stderr_tail(10)))
        threading.Thread(target=self._drain, daemon=True).start()

    def _listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.p.stdout], [], [],
                                        max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            line = self.p.stdout.readline()
            if not line:
                return None
            self.stdout_lines.append(line.rstrip("\n"))
            if line.startswith("listening on 127.0.0.1:"):
                try:
                    return int(line.strip().rsplit(":", 1)[1])
                except ValueError:
                    return None
        return None

    def _drain(self):
        for line in self.p.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def alive(self):
        return self.p.poll() is None

    def terminate(self):
        """SIGTERM if it still runs."""
        if self.p.poll() is None:
            self.p.terminate()

    def reap(self, deadline):
        """Waits until the monotonic deadline for it to exit, then SIGKILLs it; returns the exit
        code (None if it had to be killed)."""
        try:
            return self.p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None

    def stderr_tail(self, lines=30):
        with open(self.log, errors="replace") as f:
            return f.read().splitlines()[-lines:]

    def stop(self, timeout=10):
        """SIGTERM; returns (exit code or None if it had to be killed, the sanitizer report
        lines of its stderr)."""
        self.terminate()
        code = self.reap(time.monotonic() + timeout)
        bad = [l.strip() for l in self.stderr_tail(1 << 30)
               if "Sanitizer" in l or "runtime error" in l]
        return code, bad


def api(port, method, path, body=None, key=None, bearer=False, timeout=30):
    """One HTTP request to 127.0.0.1:port: the key as X-API-Key (or as a Bearer token), body
    sent as JSON unless bytes/str. Returns (status, the JSON answer or its text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if key and bearer:
        headers["Authorization"] = "Bearer " + key
    elif key:
        headers["X-API-Key"] = key
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw.decode("utf-8", "replace")


# ---- scenarios runnable by name ----------------------------------------------------------------

_scenarios = []  # (name, group, fn), in declaration order
_explicit = set()  # names of the scenarios run only when named (default=False)
_selection = []
_list = False
_kept = []  # processes a shared() set-up started: they outlive the scenario that started them


class Skip(Exception):
    """Raised by a scenario that cannot run here (e.g. a tool not installed): "SKIP name:
    reason"; a run whose scenarios were all skipped, with no check, exits 77 (ctest
    SKIP_RETURN_CODE)."""


def shared(fn):
    """A set-up several scenarios share (e.g. one server): fn runs on the first call only and its
    answer is kept; the processes it starts are not killed at the end of the scenario that
    called it first (kill_at_exit() kills them)."""
    done = []

    def wrapper():
        if not done:
            n0 = len(procs)
            done.append(fn())
            _kept.extend(procs[n0:])
        return done[0]
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def scenario(name, group=None, default=True):
    """Declares fn as the scenario `name` of `group` (default: the name). fn takes no argument;
    a coroutine function is run with asyncio.run. default=False: run only when named (by its
    name or group), not in a run that names none (e.g. a slow valgrind variant)."""
    def deco(fn):
        if any(n == name for n, _, _ in _scenarios):
            raise ValueError("scenario %r declared twice" % name)
        _scenarios.append((name, group or name, fn))
        if not default:
            _explicit.add(name)
        return fn
    return deco


def script_args(n, usage):
    """Parses sys.argv: returns the script's first n positional arguments (usage names them);
    the ones after them select scenarios (main()); --list lists them. With --list the missing
    positional arguments are "". Too few otherwise: usage on stderr, exit 2."""
    global _list
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print("usage: %s %s [--list] [NAME|GROUP|GLOB ...]" % (os.path.basename(sys.argv[0]),
                                                               usage))
        sys.exit(0)
    _list = "--list" in args
    args = [a for a in args if a != "--list"]
    if len(args) < n and not _list:
        print("usage: %s %s [--list] [NAME|GROUP|GLOB ...]" % (os.path.basename(sys.argv[0]),
                                                               usage), file=sys.stderr)
        sys.exit(2)
    pos = (args + [""] * n)[:n]
    _selection[:] = args[n:]
    return pos[0] if n == 1 else pos


def selected():
    """The scenarios the command line selects, in declaration order; exits 2 naming a selector
    that matches none."""
    if not _selection:
        return [s for s in _scenarios if s[0] not in _explicit]
    out = []
    for sel in _selection:
        hit = [s for s in _scenarios
               if sel in (s[0], s[1]) or fnmatch.fnmatchcase(s[0], sel)]
        if not hit:
            print("no scenario or group named %r (--list lists them)" % sel, file=sys.stderr)
            sys.exit(2)
        out += [s for s in hit if s not in out]
    return [s for s in _scenarios if s in out]


def main(checks, prefix="", timing=False, after=None):
    """Runs the selected scenarios in order (--list: lists them, exit 0), then after() if given
    (checks every run makes, e.g. no sanitizer report in any log); returns the exit code of
    checks.summary(prefix): 1 if any check failed or no check ran."""
    import asyncio
    if _list:
        for name, group, _ in _scenarios:
            print("%-16s %s%s" % (group, name, " (only when named)" if name in _explicit else ""))
        return 0
    t_all = time.monotonic()
    skipped = 0
    for name, group, fn in selected():
        t0, n0 = time.monotonic(), len(procs)
        try:
            r = fn()
            if asyncio.iscoroutine(r):
                asyncio.run(r)
        except Skip as why:
            print("SKIP %s: %s" % (name, why), flush=True)
            skipped += 1
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            traceback.print_exc()
            checks.check(name + ": ran to the end", False, "%s: %s" % (type(exc).__name__, exc))
        for p in procs[n0:]:
            if p not in _kept and p.poll() is None:
                p.kill()
                p.wait()
        if timing:
            print("     (%s: %.1f s)" % (name, time.monotonic() - t0), flush=True)
    if after:
        after()
    if checks.passed + checks.failed == 0 and skipped:
        checks.summary(prefix, " (%d skipped)" % skipped)
        return 77
    if checks.passed + checks.failed == 0:
        checks.check("at least one check ran", False, "no check ran")
    return checks.summary(prefix, " (%.1f s)" % (time.monotonic() - t_all) if timing else "")
