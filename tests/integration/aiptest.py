"""Shared scaffolding of the Python integration tests (tests/integration/*_test.py).

Standard library only (runs under Debian's /usr/bin/python3). A test run as
`/usr/bin/python3 tests/integration/X_test.py ...` has this directory on sys.path, so
`import aiptest` works. What it holds:

- procs: the processes a test started; append each one (listen() does). kill_all() kills those
  still running; kill_at_exit() registers that for the script's end.
- Checks: check(name, ok, detail) prints "ok   name" or "FAIL name: detail" and counts;
  summary() prints "N passed, M failed" and returns the exit code (1 if any failed, else 0).
- listen(cmd): starts a program that prints 'listening on 127.0.0.1:PORT'; (proc, port).
- wait_for(pred): polls pred until it returns something true, or the timeout.
- json_lines(path): the JSON values in a JSON-lines log (aip_peer.py's, fault_proxy.py's).
"""
import atexit
import json
import shutil
import subprocess
import time

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
