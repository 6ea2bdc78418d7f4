# SPDX-License-Identifier: MIT
"""A small Chrome DevTools Protocol driver for headless Chromium (no npm, no Selenium).

Starts `chromium --headless=new --remote-debugging-port=0` with a throw-away profile, reads
the port from the profile's DevToolsActivePort file, connects to the browser endpoint with
python3-websockets (asyncio), opens one page target in flattened-session mode and offers
eval / wait / navigate / reload / click / screenshot. Console messages, uncaught exceptions,
log entries and every request URL the page makes are collected for the test to inspect.

Only for tests on 127.0.0.1; runs with /usr/bin/python3 (Debian's python3-websockets).
"""
import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import websockets


class CDPError(Exception):
    pass


def find_chromium():
    """The browser to use: $AIP_CHROMIUM (as given, even if wrong: a typo must not turn into a
    skipped test), else chromium on PATH, else /usr/bin/chromium, else None."""
    env = os.environ.get("AIP_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class Browser:
    def __init__(self, binary, width=1440, height=1000, log_path=None):
        self.binary = binary
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="aip-cdp-profile.")
        self.log_path = log_path or os.path.join(self.profile, "chromium.log")
        self.proc = None
        self.ws = None
        self.session = None
        self.target = None
        self._next_id = 0
        self._waiting = {}
        self._reader = None
        self._event_waiters = []
        # what the page did, for the test to check
        self.console = []       # (type, text)
        self.exceptions = []    # text
        self.log_entries = []   # (level, text, url)
        self.requests = []      # URLs (HTTP requests and WebSockets)

    async def start(self, timeout=60.0):
        args = [self.binary, "--headless=new", "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--user-data-dir=" + self.profile, "--no-sandbox", "--no-first-run",
                "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--disable-component-update",
                "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows", "--password-store=basic",
                "--window-size=%d,%d" % (self.width, self.height), "about:blank"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        end = time.monotonic() + timeout
        lines = []
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise CDPError("chromium exited with %s (log: %s)" % (self.proc.returncode, self.log_path))
            try:
                with open(port_file) as f:
                    lines = f.read().split()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 2:
                break
            await asyncio.sleep(0.05)
        if len(lines) < 2:
            raise CDPError("chromium did not write DevToolsActivePort within %.0f s" % timeout)
        url = "ws://127.0.0.1:%s%s" % (lines[0], lines[1])
        self.ws = await websockets.connect(url, max_size=None, ping_interval=None)
        self._reader = asyncio.ensure_future(self._read())
        t = await self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        self.target = t["targetId"]
        a = await self.send("Target.attachToTarget", {"targetId": self.target, "flatten": True},
                            session=False)
        self.session = a["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(domain + ".enable")
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": self.width, "height": self.height, "deviceScaleFactor": 1,
                         "mobile": False})
        return self

    async def close(self):
        try:
            if self.ws is not None:
                try:
                    await asyncio.wait_for(self.send("Browser.close", session=False), 5)
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
                await self.ws.close()
        finally:
            if self._reader is not None:
                self._reader.cancel()
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait()
            if getattr(self, "_log", None):
                self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    # ---- protocol -----------------------------------------------------------------------

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._waiting.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        if "error" in msg:
                            fut.set_exception(CDPError("%s" % msg["error"]))
                        else:
                            fut.set_result(msg.get("result", {}))
                else:
                    self._on_event(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(CDPError("DevTools connection closed"))

    def _on_event(self, msg):
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.console.append((p.get("type"), text))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            exc = d.get("exception", {})
            self.exceptions.append(exc.get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            self.log_entries.append((e.get("level"), e.get("text"), e.get("url")))
        elif method == "Network.requestWillBeSent":
            self.requests.append(p.get("request", {}).get("url", ""))
        elif method == "Network.webSocketCreated":
            self.requests.append(p.get("url", ""))
        for w in list(self._event_waiters):
            name, fut = w
            if name == method and not fut.done():
                fut.set_result(p)
                self._event_waiters.remove(w)

    async def send(self, method, params=None, session=True, timeout=30.0):
        self._next_id += 1
        mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        fut = asyncio.get_running_loop().create_future()
        self._waiting[mid] = fut
        await self.ws.send(json.dumps(msg))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(mid, None)

    def expect(self, method):
        """A future for the next event `method` (create it before triggering the event)."""
        fut = asyncio.get_running_loop().create_future()
        self._event_waiters.append((method, fut))
        return fut

    # ---- page helpers -------------------------------------------------------------------

    async def eval(self, expr, timeout=30.0, await_promise=False):
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": await_promise}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError("evaluate %r: %s" % (expr[:80], d.get("exception", {}).get("description")
                                                 or d.get("text")))
        return r.get("result", {}).get("value")

    async def wait_js(self, expr, timeout=15.0, interval=0.1):
        """Polls `expr` until it is truthy; returns its last value (falsy on timeout)."""
        end = time.monotonic() + timeout
        v = None
        while True:
            try:
                v = await self.eval(expr, timeout=max(1.0, end - time.monotonic()))
            except (CDPError, asyncio.TimeoutError):
                v = None  # e.g. evaluated while the page was navigating
            if v or time.monotonic() >= end:
                return v
            await asyncio.sleep(interval)

    async def navigate(self, url, timeout=30.0):
        loaded = self.expect("Page.loadEventFired")
        r = await self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CDPError("navigate %s: %s" % (url, r["errorText"]))
        await asyncio.wait_for(loaded, timeout)

    async def reload(self, timeout=30.0):
        loaded = self.expect("Page.loadEventFired")
        await self.send("Page.reload", {"ignoreCache": False})
        await asyncio.wait_for(loaded, timeout)

    async def click(self, selector):
        ok = await self.eval("(function(){var e=document.querySelector(%s);"
                             "if(!e)return false;e.click();return true;})()" % json.dumps(selector))
        if not ok:
            raise CDPError("no element %s to click" % selector)

    async def set_value(self, selector, value):
        ok = await self.eval("(function(){var e=document.querySelector(%s);if(!e)return false;"
                             "e.value=%s;e.dispatchEvent(new Event('input',{bubbles:true}));"
                             "e.dispatchEvent(new Event('change',{bubbles:true}));return true;})()"
                             % (json.dumps(selector), json.dumps(value)))
        if not ok:
            raise CDPError("no element %s to fill" % selector)

    async def screenshot(self, path, full_page=True):
        params = {"format": "png"}
        if full_page:
            m = await self.send("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": max(self.width, size["width"]),
                              "height": min(max(self.height, size["height"]), 4000), "scale": 1}
            params["captureBeyondViewport"] = True
        r = await self.send("Page.captureScreenshot", params, timeout=60)
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)
