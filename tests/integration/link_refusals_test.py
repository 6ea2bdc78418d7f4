#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: refusals are named, reported once, and retried on the slow schedule.

On 127.0.0.1: aip-test-server --token KEY, and a stdlib HTTP CONNECT proxy (in this script)
that answers every CONNECT with 407 or 403. Checked:
- the token refused at the WebSocket upgrade: constellation-agent with a wrong key logs
  "the server refused the token (HTTP 403)" at warn, once (repeats at debug), and retries on
  the slow schedule (default backoff: one attempt in 5 s, the next delay >= 45 s; cap 400 ms:
  every delay in [300, 400] ms); aipctl exits 1 at once naming it ("requires a token" with no
  key; a wrong path named as HTTP 404); the key never printed;
- a CONNECT proxy's 407 (without and with user:password in the proxy URL) and 403 are named by
  aipctl and by the agent (warn, slow schedule), the proxy's password never printed;
- a final registration refusal: aipctl for an unknown target exits 1 at once with UFO's text;
  an agent whose client_id is taken logs the server's duplicate text once at warn (repeats
  counted at debug) and retries on the slow schedule;
- --heartbeat 90 (and "heartbeat": 90 in the config) is accepted with a warning naming the 60 s
  idle timeouts (nginx proxy_read_timeout, squid, load balancers); 60 is not warned about.

usage: link_refusals_test.py BUILD_DIR [--list] [SCENARIO|GROUP ...]
Scenario groups (ctest runs one entry each, link_refusals.GROUP): token, proxy, registration,
heartbeat.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import aiptest

BUILD = aiptest.script_args(1, "BUILD_DIR")
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
TMP = tempfile.mkdtemp(prefix="aip-refusals-test.")
procs = aiptest.procs
aiptest.kill_at_exit(wait=True, remove=TMP)
checks = aiptest.Checks(flush=True)
check = checks.check
wait_for = aiptest.wait_for
scenario = aiptest.scenario

KEY = "REFKEY" + os.urandom(6).hex()
WRONG = "WRONGREFKEY" + os.urandom(6).hex()
PROXYPASS = "REFPROXYPASS" + os.urandom(6).hex()

ENV = dict(os.environ)
for v in ("http_proxy", "https_proxy", "HTTPS_PROXY", "no_proxy", "AIP_TOKEN", "AIP_SERVER"):
    ENV.pop(v, None)


# ---- a CONNECT proxy that refuses everything ---------------------------------------------------

class RefusingProxy:
    """Answers each CONNECT with `status` and closes; counts the requests."""

    def __init__(self, status):
        self.status = status
        self.connects = 0
        self.auth_seen = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(c,), daemon=True).start()

    def _client(self, c):
        try:
            c.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                d = c.recv(4096)
                if not d:
                    break
                head += d
            lines = head.decode("latin1").split("\r\n")
            if lines[0].startswith("CONNECT "):
                self.connects += 1
                self.auth_seen.append(any(l.lower().startswith("proxy-authorization:")
                                          for l in lines[1:]))
            reason = {407: "Proxy Authentication Required", 403: "Forbidden"}[self.status]
            extra = "Proxy-Authenticate: Basic realm=\"t\"\r\n" if self.status == 407 else ""
            c.sendall(("HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\n\r\n"
                       % (self.status, reason, extra)).encode())
        except OSError:
            pass
        finally:
            c.close()


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run(cmd, env=ENV, timeout=40):
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def write_config(name, cfg):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        json.dump(cfg, f)
    os.chmod(path, 0o600)
    return path


def agent(url, client_id, *extra, env=ENV):
    log = os.path.join(TMP, "agent-%s-%d.err" % (client_id, len(procs)))
    p = subprocess.Popen([AGENT, "--server", url, "--client-id", client_id, "--log-level", "debug"]
                         + list(extra), stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    procs.append(p)
    return p, log


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def lines_at(text, level, needle):
    """The log lines at `level` ("warn", "info", "debug") that contain needle."""
    return [l for l in text.splitlines() if re.search(r"\s%s\s" % level, l) and needle in l]


def delays(text):
    return [int(m) for m in re.findall(r"reconnecting in (\d+) ms", text)]


def metric(port, name):
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % port, headers={"X-API-Key": KEY})
    body = urllib.request.urlopen(req, timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    return -1


@aiptest.shared
def server():
    """aip-test-server --token KEY, shared by every scenario: (port, good URL, bad URL, the
    fast backoff config)."""
    _, port = aiptest.listen([SERVER, "--port", "0", "--token", KEY],
                             stderr=open(os.path.join(TMP, "server.err"), "w"))
    good = "ws://127.0.0.1:%d/ws?token=%s" % (port, KEY)
    bad = "ws://127.0.0.1:%d/ws?token=%s" % (port, WRONG)
    fast = write_config("fast.json", {"backoff": {"base_ms": 20, "cap_ms": 400}})
    return port, good, bad, fast


@aiptest.shared
def proxies():
    """The refusing proxies, shared: (p407, p403, env407, env407c, env403)."""
    p407, p403 = RefusingProxy(407), RefusingProxy(403)
    env407 = dict(ENV, http_proxy="http://127.0.0.1:%d" % p407.port)
    env407c = dict(ENV, http_proxy="http://puser:%s@127.0.0.1:%d" % (PROXYPASS, p407.port))
    env403 = dict(ENV, http_proxy="http://127.0.0.1:%d" % p403.port)
    return p407, p403, env407, env407c, env403


# ---- 1. the token refused at the upgrade --------------------------------------------------------


@scenario("token_aipctl", group="token")
def token_aipctl():
    port, good, bad, fast = server()
    rc, out, err, dt = run([AIPCTL, "--server", bad, "--timeout", "30", "info", "x"])
    check("aipctl, wrong key: exit 1 at once, named (%.2f s)" % dt,
          rc == 1 and dt < 5 and "the server refused the token (HTTP 403)" in err, (rc, dt, err))
    check("aipctl, wrong key: the key is not printed", WRONG not in out + err)
    rc, out, err, dt = run([AIPCTL, "--server", "ws://127.0.0.1:%d/ws" % port, "--timeout", "30",
                            "info", "x"])
    check("aipctl, no key: 'the server requires a token (HTTP 403)' at once",
          rc == 1 and dt < 5 and "the server requires a token (HTTP 403)" in err, (rc, dt, err))
    rc, out, err, dt = run([AIPCTL, "--server", "ws://127.0.0.1:%d/nope?token=%s" % (port, KEY),
                            "--timeout", "30", "info", "x"])
    check("aipctl, wrong path: named as HTTP 404",
          rc == 1 and "HTTP 404 to the WebSocket upgrade: wrong path?" in err, (rc, err))


@scenario("token_agent", group="token")
def token_agent():
    port, good, bad, fast = server()
    u0 = metric(port, 'aip_requests_refused_total{reason="key"}')
    a, alog = agent(bad, "tok-dev")
    named = wait_for(lambda: lines_at(read(alog), "warn", "the server refused the token (HTTP 403)"),
                     10)
    check("agent, wrong key: 'the server refused the token (HTTP 403)' at warn", named,
          read(alog)[-800:])
    time.sleep(5)
    text = read(alog)
    u1 = metric(port, 'aip_requests_refused_total{reason="key"}')
    d = delays(text)
    check("agent, wrong key, default backoff: one attempt in 5 s, the next >= 45 s later "
          "(attempts %d, delays %s)" % (u1 - u0, d),
          u1 - u0 == 1 and d and min(d) >= 45000, text[-800:])
    check("agent, wrong key: still running", a.poll() is None)
    stop(a)
    check("agent, wrong key: the key is not printed", WRONG not in read(alog))


@scenario("token_agent_cap", group="token")
def token_agent_cap():
    port, good, bad, fast = server()
    a, alog = agent(bad, "tok-dev2", "--config", fast)
    wait_for(lambda: len(delays(read(alog))) >= 6, 15)
    stop(a)
    text = read(alog)
    d = delays(text)
    warns = lines_at(text, "warn", "refused the token")
    again = lines_at(text, "debug", "refused the token (HTTP 403) (again:")
    check("agent, wrong key, cap 400 ms: every delay in [300, 400] ms, not the fast ramp from "
          "20 ms (%s)" % d, len(d) >= 6 and min(d) >= 300 and max(d) <= 400, d)
    check("agent, wrong key: one warn line for %d refusals, the repeats counted at debug"
          % (len(d)), len(warns) == 1 and len(again) >= len(d) - 2,
          (len(warns), len(again), warns))
    check("agent, wrong key: no info line repeats the refusal",
          not lines_at(text, "info", "refused the token"), lines_at(text, "info", "refused")[:3])


# ---- 2. a CONNECT proxy's refusals --------------------------------------------------------------


@scenario("proxy_aipctl", group="proxy")
def proxy_aipctl():
    port, good, bad, fast = server()
    p407, p403, env407, env407c, env403 = proxies()
    rc, out, err, dt = run([AIPCTL, "--server", good, "--timeout", "30", "info", "x"], env=env407)
    check("aipctl via a proxy answering 407: named, exit 1 at once (%.2f s)" % dt,
          rc == 1 and dt < 8 and "the proxy requires authentication (HTTP 407): put user:password "
          "in the proxy URL" in err and "proxy not h1" not in err, (rc, dt, err))
    rc, out, err, dt = run([AIPCTL, "--server", good, "--timeout", "30", "info", "x"], env=env407c)
    check("aipctl via a 407 proxy, with user:password: the credentials named as refused",
          rc == 1 and "the proxy refused the user:password of the proxy URL (HTTP 407)" in err,
          (rc, err))
    check("aipctl: the probe sent the credentials as lws did (both CONNECTs had them)",
          p407.auth_seen[-2:] == [True, True], p407.auth_seen)
    check("aipctl: the proxy's password is not printed", PROXYPASS not in out + err)
    rc, out, err, dt = run([AIPCTL, "--server", good, "--timeout", "30", "info", "x"], env=env403)
    check("aipctl via a proxy answering 403: 'the proxy refused the CONNECT (HTTP 403)'",
          rc == 1 and "the proxy refused the CONNECT (HTTP 403)" in err, (rc, err))


@scenario("proxy_agent", group="proxy")
def proxy_agent():
    port, good, bad, fast = server()
    p407, p403, env407, env407c, env403 = proxies()
    c0 = p407.connects
    a, alog = agent(good, "proxy-dev", env=env407c)
    named = wait_for(lambda: lines_at(read(alog), "warn", "the proxy refused the user:password of "
                                      "the proxy URL (HTTP 407)"), 10)
    check("agent via a 407 proxy: named at warn", named, read(alog)[-800:])
    time.sleep(4)
    text = read(alog)
    d = delays(text)
    check("agent via a 407 proxy: slow schedule (CONNECTs %d: one attempt and its probe; delays %s)"
          % (p407.connects - c0, d), p407.connects - c0 == 2 and d and min(d) >= 45000, text[-600:])
    stop(a)
    check("agent via a proxy: the proxy's password is not printed", PROXYPASS not in read(alog))


# ---- 3. final registration refusals -------------------------------------------------------------


@scenario("registration_aipctl", group="registration")
def registration_aipctl():
    port, good, bad, fast = server()
    rc, out, err, dt = run([AIPCTL, "--server", good, "--timeout", "30", "info", "nosuch"])
    check("aipctl, unknown target: exit 1 at once with the server's text (%.2f s)" % dt,
          rc == 1 and dt < 5 and "registration refused: Target device 'nosuch' is not connected" in err,
          (rc, dt, err))


@scenario("duplicate", group="registration")
def duplicate():
    port, good, bad, fast = server()
    first, flog = agent(good, "dup-dev")
    check("agent dup-dev registers",
          wait_for(lambda: "registered as dup-dev" in read(flog), 10), read(flog)[-500:])
    r0 = metric(port, 'aip_registrations_refused_total{reason="duplicate"}')
    a, alog = agent(good, "dup-dev")
    dup = "registration refused: client_id 'dup-dev' is already registered; duplicate registrations " \
          "are not allowed"
    check("second dup-dev: the server's text at warn",
          wait_for(lambda: lines_at(read(alog), "warn", dup), 10), read(alog)[-800:])
    time.sleep(4)
    text = read(alog)
    r1 = metric(port, 'aip_registrations_refused_total{reason="duplicate"}')
    d = delays(text)
    check("second dup-dev, default backoff: refused once in 4 s, the next attempt >= 45 s later "
          "(%d refusals, delays %s)" % (r1 - r0, d), r1 - r0 == 1 and d and min(d) >= 45000,
          text[-800:])
    check("second dup-dev: the refusal logged once (was twice per attempt)",
          len([l for l in text.splitlines() if "is already registered" in l]) == 1,
          [l for l in text.splitlines() if "is already registered" in l])
    stop(a)
    a, alog = agent(good, "dup-dev", "--config", fast)
    wait_for(lambda: len(delays(read(alog))) >= 6, 15)
    stop(a)
    text = read(alog)
    d = delays(text)
    check("second dup-dev, cap 400 ms: one warn line, repeats at debug, delays in [300, 400] (%s)" % d,
          len(lines_at(text, "warn", dup)) == 1 and
          len(lines_at(text, "debug", dup + " (again:")) >= len(d) - 2 and
          d and min(d) >= 300 and max(d) <= 400, (len(lines_at(text, "warn", dup)), d))
    check("agent dup-dev (the first) still registered, untouched", first.poll() is None)
    stop(first)


# ---- 4. heartbeat over 60 s ---------------------------------------------------------------------


@scenario("heartbeat_config", group="heartbeat")
def heartbeat_config():
    port, good, bad, fast = server()
    rc, out, err, dt = run([AGENT, "--server", good, "--client-id", "hb", "--heartbeat", "90",
                            "--check-config"])
    check("--heartbeat 90 --check-config: accepted, warning naming the 60 s idle timeouts",
          rc == 0 and '"heartbeat":90' in out and "warning: heartbeat 90 s" in err and
          "proxy_read_timeout" in err and "squid" in err and "load balancers" in err and
          "may be cut unless those timeouts are raised" in err, (rc, out[-200:], err))
    cfg90 = write_config("hb90.json", {"heartbeat": 90})
    rc, out, err, dt = run([AGENT, "--server", good, "--client-id", "hb", "--config", cfg90,
                            "--check-config"])
    check("config heartbeat 90: accepted with the warning", rc == 0 and "warning: heartbeat 90 s" in err,
          (rc, err))
    rc, out, err, dt = run([AGENT, "--server", good, "--client-id", "hb", "--heartbeat", "60",
                            "--check-config"])
    check("--heartbeat 60: no warning", rc == 0 and "heartbeat" not in err, (rc, err))


@scenario("heartbeat_agent", group="heartbeat")
def heartbeat_agent():
    port, good, bad, fast = server()
    a, alog = agent(good, "hb-dev", "--heartbeat", "90")
    check("agent --heartbeat 90: registers, and warns at start",
          wait_for(lambda: "registered as hb-dev" in read(alog), 10) and
          lines_at(read(alog), "warn", "heartbeat 90 s: over 60 s"), read(alog)[-800:])
    stop(a)


sys.exit(aiptest.main(checks))
