#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: the aip-test-server dashboard in headless Chromium, on 127.0.0.1.

Starts a real aip-test-server (--port 0) and real constellation-agents, opens the dashboard
(tools/aip-test-server/dashboard, embedded in the server) in Debian's chromium driven over
the Chrome DevTools Protocol (tests/integration/peers/cdp.py, python3-websockets only), and checks:
  - the served app.js builds the DOM without HTML strings (no innerHTML & co.);
  - the page lists the connected device (type, address, encoding) and the server's facts;
  - live events arrive: heartbeats, a device that registers (proto) and one that leaves
    (close 1001) while the page is open; the log's text and heartbeat filters and Pause work;
  - device-supplied text is shown as text: a client id full of HTML (an agent), and a raw
    WebSocket device whose client id, system_info keys and values and error text are HTML
    payloads: no element, no script comes from them;
  - the device view shows the registration's system_info; "Ask the device" shows live info;
  - "List the device's tools" shows its list_tools (namespace, tool key, parameters from the
    schema) and the task form offers them ("Add action" with the required parameters);
  - a task typed into the page reaches the device and its result shows up, on the page (one
    row per action) and in GET /api/task_result; bad JSON is refused by the page;
  - faults injected from the page: drop (logged, the device comes back), mute_heartbeats
    (shown on the device's row while it lasts, unacknowledged heartbeats logged);
  - a burst of events leaves the log capped at 500 rows and the page responsive;
  - 20 reloads in a row during live events: each page live, replayed history marked as such,
    no error/warn line in the server's log, the server's RSS flat after warm-up (not checked
    in sanitizer builds, where LeakSanitizer at exit is), no script error in the page;
  - the server stops (exit 0) and comes back on the same port: the page says so, reconnects
    and shows the new server's clients;
  - started without a key: the URL it prints (/?token=<48 hex digits>) opens the live page,
    whose API calls carry the key, and the key leaves the address bar;
  - with --token (a key that needs URL and header encoding): the page works from
    /?token=..., takes the key out of the address bar, keeps it across a reload, and without
    it asks for the key (a wrong key is refused, the right one works);
  - a page that stops reading (paused in the debugger) is closed by the server with 1013
    (--max-viewer-queue 64 KiB), says so and comes back;
  - the page never requests anything but its own servers (works offline, no CDN), and the
    browser reports no error (CSP violation, failed load) beyond the expected ones.
Saves a PNG screenshot of the page with a device selected and a task result shown.

usage: dashboard_test.py AIP_TEST_SERVER CONSTELLATION_AGENT [SCREENSHOT.png]
       (the screenshot path may also come from $AIP_DASHBOARD_SCREENSHOT)
Exits 77 (skipped) when chromium is not installed; $AIP_CHROMIUM picks another browser.
"""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))

if len(sys.argv) < 3:
    sys.stderr.write(__doc__)
    sys.exit(2)
SERVER, AGENT = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="aip-dashboard-test.")
SHOT = (sys.argv[3] if len(sys.argv) > 3 else None) or os.environ.get("AIP_DASHBOARD_SCREENSHOT") \
    or os.path.join(TMP, "dashboard.png")

import aiptest  # noqa: E402  (after the path set-up)
import cdp  # noqa: E402

CHROMIUM = cdp.find_chromium()
if CHROMIUM and not os.access(CHROMIUM, os.X_OK):
    print("FAIL: AIP_CHROMIUM=%s is not an executable" % CHROMIUM)
    sys.exit(1)
if not CHROMIUM:
    print("SKIP: chromium is not installed (Debian package 'chromium', see tools/install-deps.sh; "
          "or set AIP_CHROMIUM)")
    sys.exit(77)

TOKEN = "dash s3cret+key/é€&="  # needs URL- and header-encoding done right
with open(SERVER, "rb") as _f:
    _bin = _f.read()
# under ASan the allocator's quarantine holds freed memory, so RSS says nothing about leaks
# there; LeakSanitizer at the server's exit (checked: exit code 0) covers that build instead
SANITIZED = b"__asan_init" in _bin or b"__tsan_init" in _bin
del _bin
XSS_ID = '<img src=x onerror="window.__xss=1"><b id="xss">bold</b>&amp;'
LOG_LINE = re.compile(r"^\S+ +(error|warn|info|debug) +\S")
BAD_LINE = re.compile(r"^\S+ +(error|warn) ")

procs = aiptest.procs
aiptest.kill_at_exit(wait=True, remove=None if "AIP_KEEP_TMP" in os.environ else TMP)
checks = aiptest.Checks(flush=True, any_detail=True, detail_max=1500)
check = checks.check
wait_for = aiptest.wait_for


# ---- processes ---------------------------------------------------------------------------

class Server:
    """--token K: that key; --no-token: none; neither: the server makes one and prints it in
    the dashboard URL (self.dashboard), which is where self.token then comes from."""

    def __init__(self, *extra):
        self.extra = list(extra)
        self.token = extra[extra.index("--token") + 1] if "--token" in extra else None
        self._start(0)

    def _start(self, port):
        self.err_path = os.path.join(TMP, "server-%d.err" % len(procs))
        self.err = open(self.err_path, "w")
        env = {k: v for k, v in os.environ.items() if k != "AIP_TOKEN"}
        self.proc = subprocess.Popen([SERVER, "--host", "127.0.0.1", "--port", str(port)] + self.extra,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        procs.append(self.proc)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+):(\d+)", line)
        if not m:
            raise RuntimeError("aip-test-server did not start: %r (see %s)" % (line, self.err_path))
        self.port = int(m.group(2))
        self.base = "http://127.0.0.1:%d" % self.port
        line = self.proc.stdout.readline()
        m = re.match(r"dashboard: (\S+)$", line.strip())
        if not m:
            raise RuntimeError("aip-test-server printed no dashboard URL: %r" % line)
        self.dashboard = m.group(1)
        if "--token" not in self.extra and "--no-token" not in self.extra:
            self.token = urllib.parse.parse_qs(urllib.parse.urlsplit(self.dashboard).query)["token"][0]

    def stop(self):
        """SIGTERM; returns the exit code."""
        return stop(self.proc)

    def start_again(self, timeout=10.0):
        """Starts a new server on the same port (retrying while the port is not yet free)."""
        end = time.monotonic() + timeout
        while True:
            try:
                self._start(self.port)
                return
            except RuntimeError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def log_size(self):
        return os.path.getsize(self.err_path)

    def log_since(self, offset):
        with open(self.err_path, errors="replace") as f:
            f.seek(offset)
            return f.read().splitlines()

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def api(self, method, path, body=None, token=True, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token and self.token:
            req.add_header("X-API-Key", self.token.encode())  # its UTF-8 bytes
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def online(self):
        st, d = self.api("GET", "/api/clients")
        return d.get("online_clients", []) if st == 200 and isinstance(d, dict) else []


def agent(srv, client_id, *extra):
    cmd = [AGENT, "--server", "ws://127.0.0.1:%d/ws" % srv.port, "--client-id", client_id,
           "--heartbeat", "1", "--log-level", "info"] + list(extra)
    if srv.token:
        cmd += ["--token", srv.token]
    err = open(os.path.join(TMP, "agent-%d.err" % len(procs)), "w")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def dispatch_many(srv, client_id, n, threads=4):
    """Dispatches n small echo tasks from `threads` threads; returns the HTTP status codes."""
    req = {"client_id": client_id, "request": {"actions": [{"tool_name": "echo", "parameters": {"text": "b"}}]}}
    codes = []
    ts = [threading.Thread(target=lambda k: codes.extend(srv.api("POST", "/api/dispatch", req)[0]
                                                         for _ in range(k)),
                           args=(n // threads + (i < n % threads),)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return codes


class Dispatcher(threading.Thread):
    """Keeps events flowing: dispatches a small echo task to a device every `period` s."""

    def __init__(self, srv, client_id, period=0.03):
        super().__init__(daemon=True)
        self.srv, self.client_id, self.period = srv, client_id, period
        self.halt = threading.Event()
        self.sent = self.errors = 0

    def run(self):
        req = {"actions": [{"tool_name": "echo", "parameters": {"text": "load"}}]}
        while not self.halt.is_set():
            st, _ = self.srv.api("POST", "/api/dispatch", {"client_id": self.client_id, "request": req})
            if st == 200:
                self.sent += 1
            else:
                self.errors += 1
            self.halt.wait(self.period)

    def stop(self):
        self.halt.set()
        self.join(10)


# ---- page probes (JavaScript run in the page) --------------------------------------------

JS_CLIENT_IDS = "Array.from(document.querySelectorAll('#clients-body tr')).map(function(r){return r.dataset.id})"
JS_CLIENT_ROWS = ("Array.from(document.querySelectorAll('#clients-body tr')).map(function(r){"
                  "return {id: r.dataset.id, cells: Array.from(r.cells).map(function(c){return c.textContent})}})")
JS_LOG = ("Array.from(document.querySelectorAll('#log-body > div')).map(function(r){var c = r.children;"
          "return {t: c[0].textContent, seq: c[1].textContent, kind: c[2].textContent,"
          " client: c[3].textContent, text: c[4].textContent}})")


def js_has_client(cid):
    return "(%s).indexOf(%s) >= 0" % (JS_CLIENT_IDS, json.dumps(cid))


def js_log_has(kind, client=None, text=None):
    cond = ["e.kind === %s" % json.dumps(kind)]
    if client is not None:
        cond.append("e.client === %s" % json.dumps(client))
    if text is not None:
        cond.append("e.text.indexOf(%s) >= 0" % json.dumps(text))
    return "(%s).some(function(e){return %s})" % (JS_LOG, " && ".join(cond))


def js_text(elem_id):
    return "document.getElementById(%s).textContent" % json.dumps(elem_id)


def js_kv(tbody_id):
    return ("(function(){var o={};document.querySelectorAll('#%s tr').forEach(function(r){"
            "o[r.cells[0].textContent]=r.cells[1].textContent});return o})()" % tbody_id)


def not_ours(urls, servers):
    """The URLs that go anywhere but the test's own servers (a CDN, a font, ...)."""
    own = tuple(p % s.port for s in servers for p in ("http://127.0.0.1:%d/", "ws://127.0.0.1:%d/"))
    return [u for u in urls if not (u.startswith(own) or u.startswith("data:") or u == "about:blank")]


# ---- the test ----------------------------------------------------------------------------

XSS_SI_ID = '<img src=x onerror="window.__xss_si=1">si'
XSS_VALUES = ['<img src=x onerror="window.__xss_si=2">', '<script>window.__xss_si=3</script>',
              '<svg onload="window.__xss_si=4">', '"><iframe srcdoc="<script>parent.__xss_si=5</script>">']


async def hostile_device(b, srv):
    """A device (raw WebSocket, as any program could be) whose client_id, every system_info key
    and value, and an error it sends are HTML: the page shows them as text and runs none."""
    import websockets
    si = {"device_id": XSS_SI_ID, "hostname": XSS_VALUES[0], "os_version": XSS_VALUES[1],
          XSS_VALUES[2]: XSS_VALUES[3], "supported_features": XSS_VALUES,
          "custom_metadata": {XSS_VALUES[0]: XSS_VALUES[2]}}
    ts = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    ws = await websockets.connect("ws://127.0.0.1:%d/ws" % srv.port)
    try:
        await ws.send(json.dumps({"type": "register", "status": "ok", "client_type": "device",
                                  "client_id": XSS_SI_ID, "timestamp": ts,
                                  "metadata": {"system_info": si}}))
        reg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        check("hostile device: registered", reg.get("status") == "ok", reg)
        await ws.send(json.dumps({"type": "error", "status": "error", "client_id": XSS_SI_ID,
                                  "timestamp": ts, "error": XSS_VALUES[3]}))
        shown = await b.wait_js(js_has_client(XSS_SI_ID), 10)
        if shown:
            await b.eval("(function(){var r=Array.from(document.querySelectorAll('#clients-body tr'))"
                         ".find(function(r){return r.dataset.id===%s});r.click()})()" % json.dumps(XSS_SI_ID))
        kv = await b.wait_js("(function(){var o=%s;return o[%s] === %s && o}())"
                             % (js_kv("device-sysinfo"), json.dumps(XSS_VALUES[2]), json.dumps(XSS_VALUES[3])), 5)
        check("hostile device: its system_info keys and values are shown as text",
              shown and kv and kv.get("hostname") == XSS_VALUES[0] and kv.get("os_version") == XSS_VALUES[1]
              and kv.get("device_id") == XSS_SI_ID and all(v in kv.get("supported_features", "") for v in XSS_VALUES)
              and json.loads(kv.get("custom_metadata") or "null") == si["custom_metadata"], kv)
        check("hostile device: its error text is logged as text",
              await b.wait_js(js_log_has("error", XSS_SI_ID, XSS_VALUES[3]), 5),
              [e for e in await b.eval(JS_LOG) if e["kind"] == "error"][:3])
        await asyncio.sleep(0.5)
        check("hostile device: no element and no script came from it",
              await b.eval("document.querySelectorAll('img, svg, iframe').length === 0 && "
                           "document.scripts.length === 1 && window.__xss_si === undefined"),
              await b.eval("[document.querySelectorAll('img, svg, iframe').length, document.scripts.length,"
                           " String(window.__xss_si)]"))
    finally:
        await ws.close()


async def main_srv(b, srv):
    a1 = agent(srv, "dash-dev-1")
    check("agent dash-dev-1 registers", wait_for(lambda: "dash-dev-1" in srv.online(), 15), srv.online())
    # the server keeps the last 1024 task records (GET /api/task_result): fill them first, so
    # that the RSS measured around the reloads below is not the table filling up
    codes = dispatch_many(srv, "dash-dev-1", 1100)
    check("warm-up: 1100 tasks dispatched", codes.count(200) == 1100, set(codes))
    log_clean_from = srv.log_size()

    # what the server serves is the page from the source tree, without HTML-from-strings sinks
    js = urllib.request.urlopen(srv.base + "/app.js", timeout=10).read().decode()
    sinks = [s for s in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                         "new Function") if s in js]
    check("app.js (%d bytes) builds the DOM without HTML strings" % len(js),
          not sinks and "textContent" in js, sinks)
    await b.navigate(srv.base + "/")
    check("page title", await b.eval("document.title") == "aip-test-server")
    check("page: event stream live", await b.wait_js("%s === 'live'" % js_text("conn-text"), 10),
          await b.eval(js_text("conn-text")))
    check("page lists the connected device", await b.wait_js(js_has_client("dash-dev-1"), 10),
          await b.eval(JS_CLIENT_IDS))
    rows = {r["id"]: r["cells"] for r in await b.eval(JS_CLIENT_ROWS)}
    cells = rows.get("dash-dev-1", [])
    check("client row: id, type, address, encoding",
          len(cells) == 8 and cells[0] == "dash-dev-1" and cells[1] == "device"
          and cells[2].startswith("127.0.0.1") and cells[3] == "json", cells)
    check("header: server facts from the snapshot",
          await b.eval(js_text("srv-version")) not in ("", "\u2013", "?")
          and await b.eval(js_text("srv-devinfo")) in ("auto", "cache", "live")
          and await b.eval(js_text("srv-clients")) == "1",
          [await b.eval(js_text(i)) for i in ("srv-version", "srv-devinfo", "srv-started", "srv-clients")])

    # live events
    check("live heartbeat events appear",
          await b.wait_js(js_log_has("heartbeat", "dash-dev-1"), 8), await b.eval(JS_LOG))
    a2 = agent(srv, "dash-dev-2", "--encoding", "proto")
    check("a device registering while the page is open appears",
          await b.wait_js(js_has_client("dash-dev-2"), 15), await b.eval(JS_CLIENT_IDS))
    check("its 'registered' event is logged", await b.wait_js(js_log_has("registered", "dash-dev-2"), 5),
          await b.eval(JS_LOG))
    rows = {r["id"]: r["cells"] for r in await b.eval(JS_CLIENT_ROWS)}
    check("its encoding shows as proto", rows.get("dash-dev-2", [None] * 4)[3] == "proto", rows)
    stop(a2)
    check("a device leaving: 'disconnected' logged with close code 1001",
          await b.wait_js(js_log_has("disconnected", "dash-dev-2", "1001"), 10),
          [e for e in await b.eval(JS_LOG) if e["kind"] == "disconnected"])
    check("... and it leaves the table",
          await b.wait_js("!(%s)" % js_has_client("dash-dev-2"), 10), await b.eval(JS_CLIENT_IDS))

    # the log's filters
    await b.set_value("#f-text", "dash-dev-2")
    rows = await b.wait_js("(function(){var l=%s;return l.length > 0 && l.every(function(e){"
                           "return (e.client + ' ' + e.text).indexOf('dash-dev-2') >= 0}) && l.length})()" % JS_LOG, 5)
    check("log filter: text (%s rows)" % rows, bool(rows), await b.eval(JS_LOG))
    await b.set_value("#f-text", "")
    await b.eval("document.getElementById('f-hb').click()")
    check("log filter: heartbeats hidden",
          await b.wait_js("(function(){var l=%s;return l.length > 0 && !l.some(function(e){"
                          "return e.kind === 'heartbeat'})})()" % JS_LOG, 5), await b.eval(JS_LOG))
    await b.eval("document.getElementById('f-hb').click()")
    check("log filter: heartbeats back", await b.wait_js(js_log_has("heartbeat", "dash-dev-1"), 5))
    js_top = "(function(){var r=document.querySelector('#log-body > div');return r ? r.children[1].textContent : ''})()"
    await b.click("#btn-pause")
    top0 = await b.eval(js_top)
    await asyncio.sleep(2.5)  # heartbeats every second meanwhile
    top1 = await b.eval(js_top)
    await b.click("#btn-pause")
    check("log: Pause holds the view, Resume catches up",
          top0 == top1 and await b.wait_js("%s !== %s" % (js_top, json.dumps(top0)), 5), (top0, top1))

    # device-supplied text is text
    ax = agent(srv, XSS_ID)
    shown = await b.wait_js(js_has_client(XSS_ID), 15)
    check("a client id full of HTML is listed as text", shown, await b.eval(JS_CLIENT_IDS))
    if shown:
        await b.eval("(function(){var r=Array.from(document.querySelectorAll('#clients-body tr'))"
                     ".find(function(r){return r.dataset.id===%s});r.click()})()" % json.dumps(XSS_ID))
        await b.wait_js("%s.indexOf('bold') >= 0" % js_text("device-title"), 5)
        await asyncio.sleep(0.5)
    check("... no markup from it reaches the DOM, no script ran",
          await b.eval("document.getElementById('xss') === null && document.querySelectorAll("
                       "'img').length === 0 && window.__xss === undefined")
          and (await b.eval(js_text("device-title"))).startswith(XSS_ID),
          await b.eval(js_text("device-title")))
    stop(ax)
    await hostile_device(b, srv)

    # the device view
    await b.click('#clients-body tr[data-id="dash-dev-1"]')
    check("device view opens for the clicked row",
          await b.wait_js("%s === 'dash-dev-1'" % js_text("device-title"), 5), await b.eval(js_text("device-title")))
    check("the selected row is marked",
          await b.eval("document.querySelector('#clients-body tr.selected').dataset.id") == "dash-dev-1")
    si = await b.eval(js_kv("device-sysinfo"))
    check("device view: system_info from the registration",
          si.get("device_id") == "dash-dev-1" and si.get("platform") == "linux"
          and si.get("hostname") == socket.gethostname() and "echo" in si.get("supported_features", ""), si)
    conn = await b.eval(js_kv("device-conn"))
    check("device view: connection details",
          conn.get("client_type") == "device" and conn.get("encoding") == "json"
          and conn.get("address", "").startswith("127.0.0.1") and conn.get("connected_since", "")[:2] == "20",
          conn)

    await b.click("#btn-info")
    ok = await b.wait_js("%s.indexOf('answered') === 0" % js_text("info-status"), 10)
    check("'Ask the device': live device info shown", ok, await b.eval(js_text("info-status")))
    try:
        info = json.loads(await b.eval(js_text("info-out")))
    except ValueError:
        info = {}
    check("... it is this device's info", isinstance(info, dict) and info.get("device_id") == "dash-dev-1"
          and info.get("hostname") == socket.gethostname(), info)

    # the device's tools, from its list_tools, offered to the task form
    await b.click("#btn-tools")
    ok = await b.wait_js("document.getElementById('tools-status').className === 'status ok'", 20)
    check("'List the device's tools': list_tools answered", ok, await b.eval(js_text("tools-status")))
    tools = await b.eval("Array.from(document.querySelectorAll('#tools-body tr')).map(function(r){"
                         "return Array.from(r.cells).map(function(c){return c.textContent})})") or []
    by_key = {row[1]: row for row in tools if len(row) == 4}
    check("... a row per tool: namespace, UFO's tool key, parameters from its schema",
          by_key.get("data_collection::echo", [""])[0] == "AgentTools"
          and by_key.get("data_collection::echo", ["", "", ""])[2] == "text: string"
          and by_key.get("data_collection::read_file", ["", "", ""])[2] == "path*: string"
          and "action::list_tools" not in by_key, tools)
    opts = await b.eval("Array.from(document.getElementById('task-tool').options).map(function(o){"
                        "return o.textContent})")
    check("... the task form offers them", sorted(opts or []) == sorted(by_key), opts)
    await b.set_value("#task-json", '{"actions": []}')
    await b.eval("(function(){var s=document.getElementById('task-tool');"
                 "s.value=String(Array.from(s.options).findIndex(function(o){"
                 "return o.textContent==='data_collection::read_file'}));})()")
    await b.click("#btn-task-add")
    added = json.loads(await b.eval("document.getElementById('task-json').value"))
    check("... 'Add action' puts the tool in the task with its required parameters",
          added == {"actions": [{"tool_name": "read_file", "tool_type": "data_collection",
                                 "parameters": {"path": ""}}]}, added)

    # a task from the page
    js_tasks = "(%s).filter(function(e){return e.kind === 'task'}).length" % JS_LOG
    tasks0 = await b.eval(js_tasks)
    await b.set_value("#task-json", "{not json")
    await b.click("#btn-task")
    check("bad JSON in the task box is refused by the page",
          (await b.eval(js_text("task-status"))).startswith("not JSON"), await b.eval(js_text("task-status")))
    await b.click("#btn-task-reset")
    default_task = json.loads(await b.eval("document.getElementById('task-json').value"))
    check("the default task uses the agent's default tools",
          [a.get("tool_name") for a in default_task.get("actions", [])]
          == ["get_device_info", "echo", "list_tools"], default_task)
    await b.set_value("#task-name", "dash-task-1")
    await b.click("#btn-task")
    ok = await b.wait_js("document.getElementById('task-status').className === 'status ok'", 20)
    status_text = await b.eval(js_text("task-status"))
    check("a task sent from the page completes (page)", ok and "dash-task-1 completed" in status_text, status_text)
    try:
        shown = json.loads(await b.eval(js_text("task-out")))
    except ValueError:
        shown = None
    check("... the page shows its result", isinstance(shown, dict) and shown.get("status") == "completed"
          and "hello from the dashboard" in json.dumps(shown), shown)
    summary = await b.eval("Array.from(document.querySelectorAll('#task-summary-body tr')).map(function(r){"
                           "return Array.from(r.cells).map(function(c){return c.textContent})})")
    check("... as one row per action: tool, status, result",
          [row[1:3] for row in summary or []] == [["get_device_info", "success"], ["echo", "success"],
                                                  ["list_tools", "success"]]
          and summary[1][3] == "hello from the dashboard" and '"dash-dev-1"' in summary[0][3], summary)
    st, tr = srv.api("GET", "/api/task_result/dash-task-1")
    check("... the server has the device's results (GET /api/task_result)",
          st == 200 and isinstance(tr, dict) and tr.get("status") == "completed"
          and "hello from the dashboard" in json.dumps(tr.get("result")) and "list_tools" not in
          json.dumps(tr.get("error")), (st, tr))
    tasks1 = await b.eval(js_tasks)
    check("... exactly one task entered the server (the bad JSON sent none)", tasks1 - tasks0 == 1,
          (tasks0, tasks1))
    check("... and its events are in the log",
          await b.wait_js(js_log_has("command", "dash-dev-1") + " && " + js_log_has("task_end"), 5),
          [e for e in await b.eval(JS_LOG) if e["kind"] != "heartbeat"][:20])
    await asyncio.sleep(1.2)  # let a heartbeat or two land, then take the picture
    # log rows out of view are skipped by layout (content-visibility), which a capture beyond
    # the viewport would show as blank space: draw them all for the picture
    await b.eval("document.querySelectorAll('#log-body > div').forEach(function(r){"
                 "r.style.contentVisibility = 'visible'}); 1")
    size = await b.screenshot(SHOT)
    check("screenshot saved (%s, %d bytes)" % (SHOT, size), size > 10000)

    bad = [ln for ln in srv.log_since(log_clean_from) if BAD_LINE.match(ln)]
    check("server log: no error/warn while the page was used", not bad, bad)

    # a fault from the page: drop the link, the device comes back
    await b.set_value("#fault-kind", "drop")
    await b.set_value("#fault-seconds", "1")
    await b.click("#btn-fault")
    ok = await b.wait_js("document.getElementById('fault-status').className === 'status ok'", 10)
    check("fault 'drop' injected from the page", ok, await b.eval(js_text("fault-status")))
    check("... the fault and the disconnect are logged",
          await b.wait_js(js_log_has("fault", "dash-dev-1") + " && " + js_log_has("disconnected", "dash-dev-1"), 10),
          [e for e in await b.eval(JS_LOG) if e["kind"] != "heartbeat"][:10])
    check("... the device registers again and is listed",
          await b.wait_js(js_log_has("registered", "dash-dev-1") + " && " + js_has_client("dash-dev-1"), 30),
          await b.eval(JS_CLIENT_IDS))
    check("... the device view follows it",
          await b.wait_js("%s === 'dash-dev-1'" % js_text("device-title"), 5), await b.eval(js_text("device-title")))

    # a timed fault: shown on the device's row while it lasts
    await b.set_value("#fault-kind", "mute_heartbeats")
    await b.set_value("#fault-seconds", "2")
    await b.click("#btn-fault")
    check("fault 'mute_heartbeats' (2 s) injected from the page",
          await b.wait_js("document.getElementById('fault-status').className === 'status ok'", 10),
          await b.eval(js_text("fault-status")))
    js_tag = ("(function(){var r=document.querySelector('#clients-body tr[data-id=\"dash-dev-1\"]');"
              "return !!r && r.querySelector('.tag.fault') !== null})()")
    check("... the device's row shows the active fault", await b.wait_js(js_tag, 5),
          await b.eval(JS_CLIENT_ROWS))
    check("... unacknowledged heartbeats are logged", await b.wait_js(js_log_has("heartbeat", "dash-dev-1", "muted"), 5),
          [e for e in await b.eval(JS_LOG) if e["kind"] in ("heartbeat", "fault")][:6])
    check("... and the mark goes when the fault ends", await b.wait_js("!" + js_tag, 10),
          await b.eval(JS_CLIENT_ROWS))

    # a burst of events: the log stays capped and the page answers
    check("the device is back before the burst",  # (a muted link may have made it reconnect)
          await b.wait_js(js_has_client("dash-dev-1"), 30) and wait_for(lambda: "dash-dev-1" in srv.online(), 5))
    events0 = int(await b.eval(js_text("srv-events")) or 0)
    t0 = time.monotonic()
    codes = dispatch_many(srv, "dash-dev-1", 200)
    burst_s = time.monotonic() - t0
    ok = await b.wait_js("Number(%s) >= %d" % (js_text("srv-events"), events0 + 600), 30)
    t1 = time.monotonic()
    rows = await b.eval("document.querySelectorAll('#log-body > div').length")
    eval_ms = (time.monotonic() - t1) * 1000
    check("burst: 200 tasks dispatched (%.1f s) -> >= 600 events counted by the page" % burst_s,
          ok and codes.count(200) == 200, (await b.eval(js_text("srv-events")), len(codes), set(codes)))
    check("burst: the log is capped at 500 rows (%s), the page answers in %.0f ms" % (rows, eval_ms),
          rows is not None and 0 < rows <= 500 and eval_ms < 2000, rows)

    # 20 reloads while events flow
    load = Dispatcher(srv, "dash-dev-1")
    load.start()
    for _ in range(3):  # warm-up: the server's allocations for viewers settle
        await b.reload()
        await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"), js_has_client("dash-dev-1")), 10)
    await asyncio.sleep(1.0)
    rss0 = srv.rss_kib()
    log_from = srv.log_size()
    exc0 = len(b.exceptions)
    live_after = 0
    for _ in range(20):
        await b.reload()
        if await b.wait_js("%s === 'live' && %s && document.querySelectorAll('#log-body > div').length > 0"
                           % (js_text("conn-text"), js_has_client("dash-dev-1")), 10):
            live_after += 1
    # after a reload the page gets a snapshot, then the replayed history (seq <= snapshot.seq),
    # then live events: history is marked as such, and comes before every live event
    split = await b.wait_js(
        "(function(){var rs=Array.from(document.querySelectorAll('#log-body > div'))"
        ".filter(function(r){return r.children[1].textContent !== ''});"
        "var rep=rs.filter(function(r){return r.classList.contains('replayed')})"
        ".map(function(r){return +r.children[1].textContent});"
        "var live=rs.filter(function(r){return !r.classList.contains('replayed')})"
        ".map(function(r){return +r.children[1].textContent});"
        "return rep.length > 0 && live.length > 0 && Math.max.apply(null, rep) < Math.min.apply(null, live)"
        " && [rep.length, live.length]})()", 10)
    check("after a reload: replayed history marked, live events after it (%s)" % (split,), bool(split))
    load.stop()
    await asyncio.sleep(1.5)
    rss1 = srv.rss_kib()
    check("20 reloads during live events (%d tasks dispatched meanwhile): each page live, listing "
          "the device, showing events" % load.sent, live_after == 20 and load.sent > 20 and load.errors == 0,
          (live_after, load.sent, load.errors))
    bad = [ln for ln in srv.log_since(log_from) if BAD_LINE.match(ln) or not LOG_LINE.match(ln)]
    check("20 reloads: no error/warn (or stray) line in the server's log", not bad, bad[:20])
    print("     server RSS: %d KiB after warm-up, %d KiB after 20 reloads (%+d KiB)" % (rss0, rss1, rss1 - rss0))
    if SANITIZED:
        print("     (sanitizer build: RSS flatness not checked; the exit code after LeakSanitizer is)")
    else:
        check("20 reloads: server RSS flat (%+d KiB, limit 512)" % (rss1 - rss0), rss1 - rss0 <= 512,
              (rss0, rss1))
    check("20 reloads: no script error in the page", len(b.exceptions) == exc0, b.exceptions[exc0:])
    st, h = srv.api("GET", "/api/health")
    check("server healthy after the reloads", st == 200 and h.get("status") == "healthy", (st, h))

    # the server goes away and comes back on the same port: the page says so and reconnects
    rc = srv.stop()
    check("server stops on SIGTERM with a page attached (exit 0)", rc == 0, rc)
    check("server gone: the page shows it is not live",
          await b.wait_js("document.getElementById('conn').className !== 'conn conn-up'", 10),
          await b.eval(js_text("conn-text")))
    check("... and logs that the event stream ended",
          await b.wait_js(js_log_has("viewer", None, "reconnecting"), 5), await b.eval(js_text("conn-text")))
    stop(a1)  # it must not come back: the new server's snapshot has to drop it from the page
    srv.start_again()
    a3 = agent(srv, "dash-dev-3")
    check("server back on the same port: the page reconnects and lists the new device",
          await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"), js_has_client("dash-dev-3")), 20),
          (await b.eval(js_text("conn-text")), await b.eval(JS_CLIENT_IDS)))
    check("... the device of the old server is no longer listed", not await b.eval(js_has_client("dash-dev-1")),
          await b.eval(JS_CLIENT_IDS))
    stop(a3)


async def main_token(b, srv):
    a = agent(srv, "dash-tok-1")
    check("token: agent registers", wait_for(lambda: "dash-tok-1" in srv.online(), 15), srv.online())
    st, _ = srv.api("GET", "/api/health", token=False)
    check("token: the API wants the key (401)", st == 401, st)
    await b.navigate(srv.base + "/?token=" + urllib.parse.quote(TOKEN, safe=""))
    check("token: /?token= -> live, device listed",
          await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"), js_has_client("dash-tok-1")), 10),
          (await b.eval(js_text("conn-text")), await b.eval(JS_CLIENT_IDS)))
    check("token: the key is taken out of the address bar",
          "token" not in await b.eval("location.href"), await b.eval("location.href"))
    check("token: no key prompt", await b.eval("document.getElementById('keybox').hidden"))
    await b.click('#clients-body tr[data-id="dash-tok-1"]')
    await b.set_value("#task-name", "dash-tok-task")
    await b.click("#btn-task")
    ok = await b.wait_js("document.getElementById('task-status').className === 'status ok'", 20)
    st, tr = srv.api("GET", "/api/task_result/dash-tok-task")
    check("token: a task from the page completes", ok and st == 200 and tr.get("status") == "completed",
          (await b.eval(js_text("task-status")), st, tr))
    await b.reload()
    check("token: still live after a reload (key kept for the tab)",
          await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"), js_has_client("dash-tok-1")), 10),
          await b.eval(js_text("conn-text")))
    # a new visit without the key: the page asks for it
    await b.eval("sessionStorage.clear()")
    await b.navigate(srv.base + "/")
    check("token: without a key the page asks for one",
          await b.wait_js("!document.getElementById('keybox').hidden", 10), await b.eval(js_text("conn-text")))
    check("token: ... and shows no client", await b.eval(JS_CLIENT_IDS) == [])
    await b.set_value("#key-input", "wrong-key")
    await b.eval("document.getElementById('keyform').requestSubmit()")
    check("token: a wrong key is refused",
          await b.wait_js("!document.getElementById('keybox').hidden && "
                          "!document.getElementById('key-error').hidden", 10),
          await b.eval(js_text("key-error")))
    await b.set_value("#key-input", TOKEN)
    await b.eval("document.getElementById('keyform').requestSubmit()")
    check("token: the right key opens the page",
          await b.wait_js("document.getElementById('keybox').hidden && %s === 'live' && %s"
                          % (js_text("conn-text"), js_has_client("dash-tok-1")), 10),
          (await b.eval(js_text("conn-text")), await b.eval(JS_CLIENT_IDS)))
    stop(a)


async def main_generated(b, srv):
    """Started without a key: the server made one and printed the dashboard URL with it."""
    check("generated key: the printed URL carries it (%d hex digits)" % len(srv.token or ""),
          srv.token and re.fullmatch(r"[0-9a-f]{48}", srv.token)
          and srv.dashboard == "%s/?token=%s" % (srv.base, srv.token), srv.dashboard)
    st, _ = srv.api("GET", "/api/clients", token=False)
    check("generated key: the API wants it (401)", st == 401, st)
    a = agent(srv, "dash-gen-1")
    check("generated key: an agent given it registers", wait_for(lambda: "dash-gen-1" in srv.online(), 15),
          srv.online())
    await b.eval("sessionStorage.clear()")
    await b.navigate(srv.dashboard)
    check("generated key: the printed URL opens the live page listing the device",
          await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"), js_has_client("dash-gen-1")), 10),
          (await b.eval(js_text("conn-text")), await b.eval(JS_CLIENT_IDS)))
    check("generated key: the page took the key out of the address bar",
          await b.eval("location.href") == srv.base + "/", await b.eval("location.href"))
    await b.click('#clients-body tr[data-id="dash-gen-1"]')
    await b.click("#btn-info")
    check("generated key: the page's API calls carry it ('Ask the device' answered)",
          await b.wait_js("%s.indexOf('answered') === 0" % js_text("info-status"), 10),
          await b.eval(js_text("info-status")))
    stop(a)


async def main_slow(b, srv):
    """A page that stops reading (paused in the debugger) while events pour in: the server
    closes it with 1013 instead of buffering, and the page says so and comes back."""
    a = agent(srv, "dash-slow-1")
    check("slow viewer: agent registers", wait_for(lambda: "dash-slow-1" in srv.online(), 15), srv.online())
    await b.navigate(srv.base + "/")
    check("slow viewer: page live", await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"),
                                                                             js_has_client("dash-slow-1")), 10))
    log_from = srv.log_size()
    await b.send("Debugger.enable")
    paused = b.expect("Debugger.paused")
    await b.send("Debugger.pause")  # takes effect at the next script run (a timer, an event)
    try:
        await asyncio.wait_for(paused, 10)
        was_paused = True
    except asyncio.TimeoutError:
        was_paused = False
    check("slow viewer: page paused", was_paused)
    codes = []
    end = time.monotonic() + 60
    while time.monotonic() < end and not any("1013" in ln for ln in srv.log_since(log_from)):
        codes += await asyncio.get_running_loop().run_in_executor(None, dispatch_many, srv, "dash-slow-1", 400)
    await b.send("Debugger.resume")
    await b.send("Debugger.disable")
    check("slow viewer: the page shows it was dropped with 1013",
          await b.wait_js(js_log_has("viewer", None, "1013"), 10),
          (await b.eval(js_text("conn-text")), [e for e in await b.eval(JS_LOG) if e["kind"] == "viewer"]))
    check("slow viewer: ... and is live again, listing the device",
          await b.wait_js("%s === 'live' && %s" % (js_text("conn-text"), js_has_client("dash-slow-1")), 15),
          await b.eval(js_text("conn-text")))
    lines = srv.log_since(log_from)
    check("slow viewer: the server logged the 1013 close (%d tasks dispatched)" % codes.count(200),
          any("1013" in ln for ln in lines) and codes.count(200) == len(codes),
          ([ln for ln in lines if "1013" in ln], set(codes)))
    bad = [ln for ln in lines if BAD_LINE.match(ln) or not LOG_LINE.match(ln)]
    check("slow viewer: no error/warn line in the server's log", not bad, bad[:10])
    stop(a)


async def main():
    srv = Server("--log-level", "info", "--no-token")
    tsrv = Server("--log-level", "info", "--token", TOKEN)
    ssrv = Server("--log-level", "info", "--max-viewer-queue", "65536", "--no-token")
    gsrv = Server("--log-level", "info")  # no key given: it makes one
    b = await cdp.Browser(CHROMIUM, log_path=os.path.join(TMP, "chromium.log")).start()
    try:
        await main_srv(b, srv)
        await main_token(b, tsrv)
        await main_generated(b, gsrv)
        await main_slow(b, ssrv)
        stray = not_ours(b.requests, (srv, tsrv, ssrv, gsrv))
        check("the page requested nothing but its own server (%d requests)" % len(b.requests),
              not stray and len(b.requests) > 50, stray[:10])
        check("no uncaught script error in the page", not b.exceptions, b.exceptions[:5])
        errs = [c for c in b.console if c[0] in ("error", "assert")]
        check("no console.error from the page", not errs, errs[:5])
        # the browser's own complaints (CSP violations, failed loads); expected only: 401s where
        # the token part asks without a key, refused connections while the first server restarts
        def expected(e):
            text, url = e[1] or "", e[2] or ""
            return (("status of 401" in text and url.startswith(tsrv.base))
                    or ("ERR_CONNECTION_REFUSED" in text and url.startswith(srv.base)))
        blog = [e for e in b.log_entries if e[0] == "error" and not expected(e)]
        check("no error from the browser (CSP, failed loads)", not blog, blog[:5])
    finally:
        await b.close()
    for s in (srv, tsrv, ssrv, gsrv):
        rc = s.stop()
        check("server on port %d stops cleanly (exit 0)" % s.port, rc == 0, rc)


try:
    asyncio.run(asyncio.wait_for(main(), 270))
except Exception as e:  # noqa: BLE001 - a crash of the harness is a failure, with its reason
    import traceback
    traceback.print_exc()
    check("test ran to the end", False, "%s: %s" % (type(e).__name__, e))
sys.exit(checks.summary("dashboard: ", " (screenshot: %s)" % SHOT))
