#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: secrets never reach an output, while the connection still works.

On 127.0.0.1: aip-test-server --token KEY (debug log) and a Basic-auth HTTP CONNECT proxy
(in this script) that tunnels only with the right credentials. constellation-agent runs at
debug level with --server 'ws://127.0.0.1:P/ws?token=KEY' (UFO's way of passing the key) and
http_proxy=http://puser:PROXYPASS@127.0.0.1:Q; it registers through the proxy, runs a task
whose action carries an api_key parameter; aipctl (--verbose, through the same proxy, key in
the URL) runs info, task and devices. Then: KEY, PROXYPASS and the api_key value appear in no
output — agent stderr/stdout, --check-config, aipctl stdout/stderr, the server's log, its
/api/clients/details — while the redacted forms (?token=<redacted>, puser:<redacted>@,
"api_key":"<redacted>") show the lines exist. A wrong key is refused and logged by the server
without its value; credentials in the server URL are refused without echoing them.

usage: secrets_test.py BUILD_DIR
"""
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.request

import aiptest

BUILD = sys.argv[1]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
TMP = tempfile.mkdtemp(prefix="aip-secrets-test.")
procs = aiptest.procs
aiptest.kill_at_exit(wait=True, remove=TMP)
checks = aiptest.Checks(flush=True)
check = checks.check
wait_for = aiptest.wait_for

# distinctive values, so a leak anywhere is found by a plain substring search
KEY = "KEY" + secrets.token_hex(8)
WRONG = "WRONGKEY" + secrets.token_hex(6)
PROXYPASS = "PROXYPASS" + secrets.token_hex(6)
APIKEY = "APIKEYVALUE" + secrets.token_hex(6)
URLPASS = "URLPASS" + secrets.token_hex(6)
ALL = (KEY, WRONG, PROXYPASS, APIKEY, URLPASS)


# ---- a CONNECT proxy with Basic authentication ---------------------------------------------

class Proxy:
    def __init__(self, user, password):
        self.want = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.tunnels = 0
        self.refused = 0
        self.port = None
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = srv.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, r, w):
        try:
            head = (await r.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
            method, target = head[0].split(" ")[:2]
            hdrs = {}
            for line in head[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            auth = hdrs.get("proxy-authorization", "")
            scheme, _, cred = auth.partition(" ")
            host, _, port = target.rpartition(":")
            ok = (method == "CONNECT" and scheme.lower() == "basic" and
                  "Basic " + cred == self.want and host in ("127.0.0.1", "localhost"))
            if not ok:
                self.refused += 1
                w.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                await w.drain()
                w.close()
                return
            ur, uw = await asyncio.open_connection("127.0.0.1", int(port))
            self.tunnels += 1
            w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await w.drain()

            async def pipe(a, b):
                try:
                    while True:
                        data = await a.read(65536)
                        if not data:
                            break
                        b.write(data)
                        await b.drain()
                except (ConnectionError, asyncio.CancelledError):
                    pass
                finally:
                    b.close()
            await asyncio.gather(pipe(r, uw), pipe(ur, w))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            w.close()


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def leaks(text):
    return [s for s in ALL if s in text]


def run(cmd, env=None, timeout=30):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


# ---- the server, the proxy, the agent ----------------------------------------------------------

server_log = os.path.join(TMP, "server.err")
srv, sport = aiptest.listen([SERVER, "--port", "0", "--token", KEY, "--log-level", "debug"],
                            stderr=open(server_log, "w"))
proxy = Proxy("puser", PROXYPASS)
proxy_env = dict(os.environ, http_proxy="http://puser:%s@127.0.0.1:%d" % (PROXYPASS, proxy.port))
for v in ("https_proxy", "HTTPS_PROXY", "no_proxy", "AIP_TOKEN", "AIP_SERVER"):
    proxy_env.pop(v, None)
url = "ws://127.0.0.1:%d/ws?token=%s" % (sport, KEY)

agent_err = os.path.join(TMP, "agent.err")
agent_out = os.path.join(TMP, "agent.out")
agent = subprocess.Popen([AGENT, "--server", url, "--client-id", "sec-dev", "--log-level", "debug"],
                         stdout=open(agent_out, "w"), stderr=open(agent_err, "w"), env=proxy_env)
procs.append(agent)
check("the agent registers through the proxy with ?token= in the URL",
      wait_for(lambda: "registered as sec-dev" in read(agent_err), 15), read(agent_err)[-800:])
check("the proxy tunnelled it, with the Basic credentials", proxy.tunnels >= 1 and proxy.refused == 0,
      (proxy.tunnels, proxy.refused))
check("the server saw the device", wait_for(lambda: "sec-dev" in read(server_log), 5),
      read(server_log)[-500:])

# a task whose action carries an api_key parameter (logged at debug, redacted)
task = json.dumps({"actions": [{"tool_name": "echo", "parameters":
                                {"text": "hello", "api_key": APIKEY,
                                 "nested": {"password": APIKEY}}}]})
rc, out, err = run([AIPCTL, "--verbose", "--server", url, "--timeout", "15", "task", "sec-dev",
                    task], env=proxy_env)
check("aipctl task (key in the URL, through the proxy) works", rc == 0 and "hello" in out,
      (rc, out[-300:], err[-600:]))
check("aipctl task: no secret in its output", not leaks(out + err), leaks(out + err))
check("aipctl --verbose shows the URL redacted", "?token=<redacted>" in err, err[-600:])
check("the agent logged the action's parameters, api_key redacted",
      wait_for(lambda: '"api_key": "<redacted>"' in read(agent_err), 5)
      and '"password": "<redacted>"' in read(agent_err), read(agent_err)[-1200:])

rc, out, err = run([AIPCTL, "--verbose", "--server", url, "--timeout", "15", "info", "sec-dev"],
                   env=proxy_env)
check("aipctl info works", rc == 0 and '"device_id"' in out, (rc, out[-200:], err[-600:]))
check("aipctl info: no secret in its output", not leaks(out + err), leaks(out + err))
rc, out, err = run([AIPCTL, "--server", url, "--timeout", "15", "devices"], env=proxy_env)
check("aipctl devices takes the key from ?token= and works", rc == 0 and "sec-dev" in out,
      (rc, out[-200:], err[-300:]))
check("aipctl devices: no secret in its output", not leaks(out + err), leaks(out + err))

# --check-config
rc, out, err = run([AGENT, "--server", url, "--client-id", "sec-dev", "--check-config"],
                   env=proxy_env)
check("--check-config: the server URL with its query value redacted",
      rc == 0 and json.loads(out)["server"] == "ws://127.0.0.1:%d/ws?token=<redacted>" % sport,
      (rc, out, err))
check("--check-config: no secret", not leaks(out + err), leaks(out + err))

# a wrong key: refused (403), logged by the server with the value redacted
wrong_url = "ws://127.0.0.1:%d/ws?token=%s&x=1" % (sport, WRONG)
rc, out, err = run([AIPCTL, "--verbose", "--server", wrong_url, "--timeout", "3", "info", "sec-dev"])
check("a wrong key is refused", rc == 1, (rc, err[-300:]))
check("aipctl (wrong key): no secret in its output", not leaks(out + err), leaks(out + err))
check("the server logged the refused upgrade, values redacted",
      wait_for(lambda: "refused WebSocket upgrade /ws?token=<redacted>&x=<redacted>" in
               read(server_log), 5), read(server_log)[-800:])
req = urllib.request.Request("http://127.0.0.1:%d/api/clients" % sport,
                             headers={"X-API-Key": WRONG, "Authorization": "Bearer " + WRONG})
try:
    urllib.request.urlopen(req, timeout=5)
    status = 200
except urllib.error.HTTPError as e:
    status = e.code
check("the HTTP API refuses a wrong key (401), logged with both headers redacted",
      status == 401 and wait_for(lambda: "Authorization: Bearer <redacted>, X-API-Key: <redacted>"
                                 in read(server_log), 5), (status, read(server_log)[-600:]))
req = urllib.request.Request("http://127.0.0.1:%d/api/clients/details" % sport,
                             headers={"X-API-Key": KEY})
details = urllib.request.urlopen(req, timeout=5).read().decode()
check("the server's client details list the device, no secret",
      "sec-dev" in details and not leaks(details), leaks(details))

# credentials in the server URL are refused without being echoed
cred_url = "ws://someone:%s@127.0.0.1:%d/ws" % (URLPASS, sport)
rc, out, err = run([AGENT, "--server", cred_url, "--check-config"])
check("agent: credentials in the server URL are a configuration error (78), not echoed",
      rc == 78 and "credentials" in err and not leaks(out + err), (rc, err))
rc, out, err = run([AIPCTL, "--server", cred_url, "--timeout", "3", "info", "sec-dev"])
check("aipctl: credentials in the server URL refused, not echoed",
      rc != 0 and not leaks(out + err), (rc, err, leaks(out + err)))

# stop, then the whole of every log
agent.terminate()
check("the agent exits 0", agent.wait(10) == 0)
srv.terminate()
srv.wait(10)
for name, path in (("agent stderr", agent_err), ("agent stdout", agent_out),
                   ("server log", server_log)):
    text = read(path)
    check("%s: no key, proxy password or api_key value (%d bytes checked)" % (name, len(text)),
          not leaks(text), leaks(text))
text = read(agent_err)
check("agent log: the URL shown as ?token=<redacted>", "?token=<redacted>" in text)
check("agent log: the proxy shown as puser:<redacted>@", "http://puser:<redacted>@127.0.0.1" in text,
      text[:1500])
sys.exit(checks.summary())
