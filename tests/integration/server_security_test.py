#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: aip-test-server against hostile web pages and other users of the machine.

A hostile client in Python (raw HTTP and raw WebSocket handshakes on 127.0.0.1, so every header
is exactly what a browser, or an attacker, would send) checks:
  - cross-site control: a foreign Host (DNS rebinding), Origin: null, another site's Origin,
    Sec-Fetch-Site: cross-site / same-site, a text/plain or form POST (no CORS preflight), and
    a method other than GET/POST are refused (403/415/405) on HTTP, and the same headers on
    WebSocket handshakes to /ws and /events (403); our own names and origin, --allow-host and
    --allow-origin, and programs that send no Origin keep working; refusals are counted in
    /metrics (exactly) and logged at most once a second;
  - every answer (pages, JSON, errors, WebSocket refusals, lws's own error page) carries a CSP
    without inline script and with frame-ancestors 'none', nosniff and no-referrer;
  - keys: --token "" and an empty AIP_TOKEN are refused at start (exit 2, one line and the
    --help hint);
    --token-file readable by group or others is refused, 0600 works; AIP_TOKEN works and stays
    out of /proc/PID/cmdline; without a key the server makes a random one, refuses what comes
    without it (HTTP 401, WebSocket 403) and prints a dashboard URL whose key works;
    --no-token is open and says so;
  - over TLS only HTTP/1.1 is offered (under h2 the server would not see X-API-Key).
(The key is compared in constant time: key_equal() in tools/aip-test-server/guard.c; reviewed,
not timed.)

usage: server_security_test.py BUILD_DIR [--list] [SCENARIO ...]
Scenarios (ctest runs one entry each, server_security.NAME): cross_site, headers, keys, tls.
"""
import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

import websockets

import aiptest

BUILD = aiptest.script_args(1, "BUILD_DIR")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
TMP = tempfile.mkdtemp(prefix="aip-security-test.")
procs = aiptest.procs
aiptest.kill_at_exit(wait=True, remove=None if "AIP_KEEP_TMP" in os.environ else TMP)
checks = aiptest.Checks(flush=True, any_detail=True, detail_max=600)
check = checks.check
scenario = aiptest.scenario
ENV = {k: v for k, v in os.environ.items() if k != "AIP_TOKEN"}
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class Srv:
    def __init__(self, *args, env=None):
        self.err = os.path.join(TMP, "server-%d.err" % len(procs))
        self.proc = subprocess.Popen([SERVER, "--port", "0"] + list(args), stdout=subprocess.PIPE,
                                     stderr=open(self.err, "w"), text=True,
                                     env=ENV if env is None else env)
        procs.append(self.proc)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError("aip-test-server %s did not start: %r" % (args, line))
        self.port = int(line.rsplit(":", 1)[1])
        self.dashboard = self.proc.stdout.readline().strip()

    def log(self):
        with open(self.err) as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(5)


def start_fails(*args, env=None):
    """Runs the server expecting it to refuse to start: (exit code, stdout, stderr)."""
    try:
        p = subprocess.run([SERVER, "--port", "0"] + list(args), capture_output=True, text=True,
                           env=ENV if env is None else env, timeout=10)
    except subprocess.TimeoutExpired as e:  # it started and served instead
        return None, e.stdout, e.stderr
    return p.returncode, p.stdout, p.stderr


def raw(port, request, body=b""):
    """One HTTP exchange on a fresh connection: (status, {header: value}, body). The answer
    is read until the server closes or, for a 101, until its headers end."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request.encode() + body)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in data:
                break
            head, sep, rest = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length: *(\d+)", head)
            if sep and m and len(rest) >= int(m.group(1)):
                break
    except socket.timeout:
        pass
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d+)", lines[0])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), hdrs, rest


def req(port, method="GET", path="/api/health", host=None, headers=(), body=b""):
    host = "127.0.0.1:%d" % port if host is None else host
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if host != "":
        lines.append("Host: " + host)
    lines += list(headers)
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    lines.append("Connection: close")
    return raw(port, "\r\n".join(lines) + "\r\n\r\n", body)


def upgrade(port, path="/ws", host=None, headers=()):
    host = "127.0.0.1:%d" % port if host is None else host
    lines = ["GET %s HTTP/1.1" % path, "Host: " + host, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + WS_KEY, "Sec-WebSocket-Version: 13"]
    return raw(port, "\r\n".join(lines + list(headers)) + "\r\n\r\n")


def metric(port, name, key=None):
    hs = ["X-API-Key: " + key] if key else []
    st, _, body = req(port, path="/metrics", headers=hs)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def secure_headers(h):
    """What every answer must carry; returns the problems."""
    csp = h.get("content-security-policy", "")
    out = []
    if "frame-ancestors 'none'" not in csp:
        out.append("CSP without frame-ancestors 'none': %r" % csp)
    script = re.search(r"script-src([^;]*)", csp)
    if not script and "default-src 'none'" not in csp:
        out.append("CSP allows any script: %r" % csp)
    if "unsafe-inline" in csp or "unsafe-eval" in csp:
        out.append("CSP allows inline script: %r" % csp)
    if h.get("x-content-type-options") != "nosniff":
        out.append("no nosniff")
    if h.get("referrer-policy") != "no-referrer":
        out.append("no referrer-policy: no-referrer")
    return out


@scenario("cross_site")
def cross_site():
    s = Srv("--no-token", "--allow-host", "proxy.test", "--allow-origin", "http://ui.test:8080")
    p = s.port
    t_start = time.monotonic()
    refused = {"host": 0, "origin": 0, "fetch_site": 0, "method": 0, "content_type": 0}

    def expect(name, want, got, reason=None):
        st, _, body = got
        if reason and st == want:
            refused[reason] += 1
        return check(name + " -> %d" % want, st == want, (st, body[:200]))

    # Host: DNS rebinding
    expect("our Host 127.0.0.1:PORT", 200, req(p))
    expect("Host localhost (port aside)", 200, req(p, host="localhost:1"))
    expect("Host [::1]:PORT", 200, req(p, host="[::1]:%d" % p))
    expect("Host named by --allow-host, any port", 200, req(p, host="PROXY.test:8443"))
    expect("Host evil.example (DNS rebinding)", 403, req(p, host="evil.example:%d" % p), "host")
    expect("Host 127.0.0.1.evil.example", 403, req(p, host="127.0.0.1.evil.example"), "host")
    expect("Host localhost.evil.example", 403, req(p, host="localhost.evil.example:%d" % p), "host")
    expect("no Host header (HTTP/1.0)", 403, raw(p, "GET /api/health HTTP/1.0\r\n\r\n"), "host")
    expect("a bare IPv6 Host", 403, req(p, host="::1"), "host")
    st, _, body = req(p, host="evil.example")
    refused["host"] += st == 403
    check("... the refusal says why (JSON)", json.loads(body)["error"].startswith("forbidden")
          and "--allow-host" in json.loads(body)["error"], body)
    expect("a dashboard file for a foreign Host", 403, req(p, path="/", host="evil.example"), "host")

    # Origin and Sec-Fetch-Site
    own = "Origin: http://127.0.0.1:%d" % p
    expect("our own Origin", 200, req(p, headers=[own]))
    expect("an --allow-origin Origin", 200, req(p, headers=["Origin: http://ui.test:8080"]))
    expect("Origin: null", 403, req(p, headers=["Origin: null"]), "origin")
    expect("Origin of another site", 403, req(p, headers=["Origin: http://evil.example"]), "origin")
    expect("Origin of another local port", 403,
           req(p, headers=["Origin: http://127.0.0.1:%d" % (p ^ 1)]), "origin")
    expect("Sec-Fetch-Site: same-origin", 200, req(p, headers=["Sec-Fetch-Site: same-origin"]))
    expect("Sec-Fetch-Site: none (typed, bookmarked)", 200, req(p, headers=["Sec-Fetch-Site: none"]))
    expect("Sec-Fetch-Site: cross-site", 403, req(p, headers=["Sec-Fetch-Site: cross-site"]),
           "fetch_site")
    expect("Sec-Fetch-Site: same-site (another localhost port)", 403,
           req(p, headers=["Sec-Fetch-Site: same-site"]), "fetch_site")
    expect("a link from another site to the dashboard page (navigation)", 200,
           req(p, path="/", headers=["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate"]))
    expect("... but not to the API", 403,
           req(p, path="/api/clients", headers=["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate"]),
           "fetch_site")
    expect("another site's page loading app.js (no-cors)", 403,
           req(p, path="/app.js", headers=["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors"]),
           "fetch_site")

    # state changes: POST with JSON only, GET/POST only
    task = json.dumps({"client_id": "nobody", "request": {"actions": [{"tool_name": "echo"}]}}).encode()
    expect("the classic CSRF: a cross-site text/plain POST", 403,
           req(p, "POST", "/api/dispatch", headers=["Origin: http://evil.example",
                                                    "Content-Type: text/plain"], body=task), "origin")
    expect("a text/plain POST (no preflight in a browser)", 415,
           req(p, "POST", "/api/dispatch", headers=["Content-Type: text/plain"], body=task), "content_type")
    expect("a form POST", 415,
           req(p, "POST", "/api/faults", headers=["Content-Type: application/x-www-form-urlencoded"],
               body=b"client_id=x&fault=drop"), "content_type")
    expect("a POST without Content-Type", 415, req(p, "POST", "/api/dispatch", body=task), "content_type")
    st, _, body = req(p, "POST", "/api/dispatch", headers=["Content-Type: application/json; charset=utf-8"],
                      body=task)
    check("a JSON POST reaches the endpoint (404: no such device)", st == 404 and b"not connected" in body,
          (st, body))
    st, h, body = req(p, "PUT", "/api/dispatch", headers=["Content-Type: application/json"], body=task)
    refused["method"] += st == 405
    check("PUT -> 405 with Allow: GET, POST", st == 405 and h.get("allow") == "GET, POST", (st, h, body))
    expect("OPTIONS (a CORS preflight gets nothing)", 405, req(p, "OPTIONS", "/api/dispatch"), "method")

    # WebSocket handshakes: /ws and /events
    for path in ("/ws", "/events"):
        for label, host, hs, reason in (
                ("a foreign Origin", None, ["Origin: http://evil.example"], "origin"),
                ("Origin: null", None, ["Origin: null"], "origin"),
                ("a foreign Host", "evil.example:%d" % p, [], "host"),
                ("Sec-Fetch-Site: cross-site", None, ["Sec-Fetch-Site: cross-site"], "fetch_site")):
            st, h, body = upgrade(p, path, host, hs)
            refused[reason] += st == 403
            check("ws %s with %s -> 403" % (path, label), st == 403 and b"forbidden" in body, (st, body))
        st, _, _ = upgrade(p, path, headers=[own, "Sec-Fetch-Site: same-origin"])
        check("ws %s from our own page -> 101" % path, st == 101, st)

    async def device_and_viewer():
        # as the agent, aipctl and UFO's clients do: no Origin
        async with websockets.connect("ws://127.0.0.1:%d/ws" % p) as ws:
            await ws.send(json.dumps({"type": "register", "status": "ok", "client_type": "device",
                                      "client_id": "sec-dev", "timestamp": "2026-01-01T00:00:00+00:00",
                                      "metadata": {"system_info": {}}}))
            reg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        async with websockets.connect("ws://127.0.0.1:%d/events" % p,
                                      origin="http://127.0.0.1:%d" % p) as ev:
            snap = json.loads(await asyncio.wait_for(ev.recv(), 5))
        try:
            async with websockets.connect("ws://127.0.0.1:%d/events" % p, origin="http://evil.example"):
                foreign = "accepted"
        except websockets.exceptions.InvalidStatusCode as e:
            foreign = e.status_code
        return reg, snap, foreign
    reg, snap, foreign = asyncio.run(device_and_viewer())
    refused["origin"] += foreign == 403
    check("a device without Origin registers on /ws", reg.get("status") == "ok", reg)
    check("the dashboard's feed from our own origin works", snap.get("type") == "snapshot", snap)
    check("websockets (UFO's library) from another origin on /events: 403", foreign == 403, foreign)

    # counted exactly, logged at most once a second
    got = {r: metric(p, 'aip_requests_refused_total{reason="%s"}' % r) for r in refused}
    check("every refusal counted in /metrics %s" % refused, got == {k: float(v) for k, v in refused.items()},
          got)
    for _ in range(200):
        req(p, host="evil.example")
    time.sleep(1.1)
    req(p, host="evil.example")
    took = time.monotonic() - t_start
    log = s.log()
    lines = [ln for ln in log.splitlines() if " guard: refused" in ln]
    check("refusals logged, rate-limited: %d lines for %d refusals over %.1f s"
          % (len(lines), sum(refused.values()) + 201, took),
          0 < len(lines) <= took + 2 and re.search(r"\(\d+ more refused in the last", log)
          and all(re.search(r" (warn|info) +guard: refused /\S* from 127\.0\.0\.1 \(\w+\): ", ln) for ln in lines),
          lines[:5])
    check("server alive after all that", req(p)[0] == 200)
    check("stops cleanly (exit 0)", s.stop() == 0)


@scenario("headers")
def headers_everywhere():
    s = Srv("--token", "hdr-key")
    p, key = s.port, ["X-API-Key: hdr-key"]
    answers = {
        "GET / (page)": req(p, path="/"),
        "GET /app.js": req(p, path="/app.js"),
        "GET /style.css": req(p, path="/style.css"),
        "GET /api/health (JSON)": req(p, headers=key),
        "GET /metrics (text)": req(p, path="/metrics", headers=key),
        "404": req(p, path="/nope"),
        "401 (no key)": req(p),
        "403 (foreign Host)": req(p, host="evil.example"),
        "415": req(p, "POST", "/api/dispatch", headers=key + ["Content-Type: text/plain"], body=b"{}"),
        "405": req(p, "DELETE", "/api/health", headers=key),
        "400 (bad JSON)": req(p, "POST", "/api/dispatch", headers=key + ["Content-Type: application/json"],
                              body=b"{"),
        "ws 403 (foreign Origin)": upgrade(p, "/events", headers=["Origin: http://evil.example"]),
        "ws 403 (no key)": upgrade(p, "/ws"),
        "ws 404 (no such endpoint)": upgrade(p, "/nope"),
        "lws's own error page (a garbage request line)": raw(p, "GARBAGE\r\n\r\n"),
    }
    bad = {k: (v[0], secure_headers(v[1])) for k, v in answers.items() if v[0] is None or secure_headers(v[1])}
    check("%d kinds of answer all carry CSP (no inline script, frame-ancestors 'none'), nosniff, "
          "no-referrer" % len(answers), not bad, bad)
    s.stop()


def one_line(err):
    """A usage error: one line naming the problem, then the --help hint (tools/common/usage.h)."""
    lines = err.strip().splitlines()
    return len(lines) == 2 and lines[1] == "Try 'aip-test-server --help' for more information."


@scenario("keys")
def keys():
    rc, out, err = start_fails("--token", "")
    check("--token \"\" refused at start: exit 2, one line",
          rc == 2 and not out and one_line(err) and "empty" in err, (rc, out, err))
    rc, out, err = start_fails(env=dict(ENV, AIP_TOKEN=""))
    check("an empty AIP_TOKEN refused at start: exit 2, one line",
          rc == 2 and one_line(err) and "AIP_TOKEN" in err and "empty" in err, (rc, err))
    rc, out, err = start_fails("--token", "a", "--no-token")
    check("--token with --no-token: exit 2", rc == 2 and "one of" in err, (rc, err))

    kf = os.path.join(TMP, "key")
    with open(kf, "w") as f:
        f.write("file-key-123\n")
    for mode in (0o644, 0o640, 0o604):
        os.chmod(kf, mode)
        rc, out, err = start_fails("--token-file", kf)
        check("--token-file with mode %04o refused: exit 2, one line naming the mode" % mode,
              rc == 2 and one_line(err) and ("%04o" % mode) in err and "chmod" in err,
              (rc, err))
    os.chmod(kf, 0o600)
    s = Srv("--token-file", kf)
    check("--token-file with mode 0600: starts, the key is not in the URL it prints",
          s.dashboard == "dashboard: http://127.0.0.1:%d/" % s.port, s.dashboard)
    check("... its key (without the newline) opens the API",
          req(s.port, headers=["X-API-Key: file-key-123"])[0] == 200 and req(s.port)[0] == 401)
    s.stop()
    ef = os.path.join(TMP, "empty-key")
    open(ef, "w").close()
    os.chmod(ef, 0o600)
    rc, out, err = start_fails("--token-file", ef)
    check("an empty --token-file refused: exit 2", rc == 2 and "empty" in err, (rc, err))

    s = Srv(env=dict(ENV, AIP_TOKEN="env-key-456"))
    with open("/proc/%d/cmdline" % s.proc.pid, "rb") as f:
        cmdline = f.read()
    check("AIP_TOKEN: the key opens the API, nothing else does",
          req(s.port, headers=["X-API-Key: env-key-456"])[0] == 200 and req(s.port)[0] == 401
          and req(s.port, headers=["X-API-Key: env-key-45"])[0] == 401
          and req(s.port, headers=["Authorization: Bearer "])[0] == 401)
    check("... and is not in /proc/PID/cmdline", b"env-key-456" not in cmdline, cmdline)
    s.stop()

    # no key given: the server makes one
    s, s2 = Srv(), Srv()
    m = re.fullmatch(r"dashboard: http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{48})", s.dashboard)
    check("no key: the server prints a dashboard URL carrying a random 192-bit key",
          m and int(m.group(1)) == s.port, s.dashboard)
    k = m.group(2) if m else ""
    k2 = urllib.parse.parse_qs(urllib.parse.urlsplit(s2.dashboard.split(" ", 1)[1]).query).get("token", [""])[0]
    check("... a different one at each start", k and k2 and k != k2, (k, k2))
    st, _, body = req(s.port, path="/api/clients")
    check("... an unauthenticated API call is refused (401)", st == 401, (st, body))
    check("... an unauthenticated POST too (401)",
          req(s.port, "POST", "/api/faults", headers=["Content-Type: application/json"],
              body=b'{"client_id":"x","fault":"drop"}')[0] == 401)
    check("... the key from the URL opens it (X-API-Key and Bearer)",
          req(s.port, path="/api/clients", headers=["X-API-Key: " + k])[0] == 200
          and req(s.port, path="/api/clients", headers=["Authorization: Bearer " + k])[0] == 200)
    check("... a WebSocket without it is refused (403), with ?token= it opens",
          upgrade(s.port, "/ws")[0] == 403 and upgrade(s.port, "/events")[0] == 403
          and upgrade(s.port, "/events?token=" + k)[0] == 101 and upgrade(s.port, "/ws?token=" + k)[0] == 101)
    check("... the dashboard page itself stays public (it asks for the key)", req(s.port, path="/")[0] == 200)
    check("... metrics count the refused keys",
          metric(s.port, 'aip_requests_refused_total{reason="key"}', k) == 4.0,
          metric(s.port, 'aip_requests_refused_total{reason="key"}', k))
    time.sleep(0.2)
    check("... the key is not in its log", k not in s.log(), s.log()[-500:])
    s.stop()
    s2.stop()

    s = Srv("--no-token")
    check("--no-token: open, and warned about at start",
          req(s.port)[0] == 200 and re.search(r" warn +server: --no-token: ", s.log())
          and s.dashboard == "dashboard: http://127.0.0.1:%d/" % s.port, (s.dashboard, s.log()))
    s.stop()


@scenario("tls")
def tls_http11():
    """Over TLS only HTTP/1.1 is offered: under h2, lws 4.1.6 would hide X-API-Key and
    Sec-Fetch-Site from the server (the dashboard's key and the cross-site check)."""
    crt, key = os.path.join(TMP, "srv.crt"), os.path.join(TMP, "srv.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    s = Srv("--token", "tls-key", "--tls-cert", crt, "--tls-key", key)
    ctx = ssl.create_default_context(cafile=crt)
    ctx.set_alpn_protocols(["h2", "http/1.1"])

    def get(headers):
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw_sock:
            with ctx.wrap_socket(raw_sock, server_hostname="localhost") as t:
                t.sendall(("GET /api/health HTTP/1.1\r\nHost: localhost:%d\r\n%sConnection: close\r\n\r\n"
                           % (s.port, "".join(h + "\r\n" for h in headers))).encode())
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return t.selected_alpn_protocol(), data.split(b" ", 2)[1]
    alpn, st = get(["X-API-Key: tls-key"])
    check("TLS: a client offering h2 gets HTTP/1.1 (ALPN %s), and X-API-Key works (%s)"
          % (alpn, st.decode()), alpn == "http/1.1" and st == b"200", (alpn, st))
    _, st = get(["X-API-Key: tls-key", "Sec-Fetch-Site: cross-site"])
    check("TLS: Sec-Fetch-Site is seen (403)", st == b"403", st)
    s.stop()


if __name__ == "__main__":
    sys.exit(aiptest.main(checks, "server security: "))
