#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: the real parts an operator puts between device and orchestrator — nginx as a
TLS-terminating reverse proxy and squid as an HTTP CONNECT proxy — each started here in the
foreground with its own configuration in a temporary directory, on 127.0.0.1 only (never the
system service). docs/deploy.md shows the same settings.

nginx (TLS, a CA and certificate made here with openssl) in front of aip-test-server:
- the agent (wss:// to nginx, --ca-file) registers; aipctl lists it and runs a task over wss://
  through nginx; the admin API and the dashboard answer through nginx for Host aip.test
  (--allow-host aip.test), the dashboard's /events feed too (Origin https://aip.test,
  --allow-origin); a request naming another Host is still refused (403).
- nginx stopped and started under a connected agent: a task in flight (a 20 s sleep) fails at
  once, not at its timeout; the agent is back within its backoff once nginx is.
- nginx -s reload: old workers end their links after worker_shutdown_timeout (1 s), so the
  task in flight fails then and the agent reconnects to the new workers.
- proxy_read_timeout (2 s) below the agent's heartbeat (5 s): each link dies after about 2 s
  with a bare 1006; the backoff stays at its base (a registered link is progress), so the
  agent is registered most of the time, and the repetition is named once at warn.
squid (http_port 127.0.0.1, CONNECT opened for the test's ports only):
- ws:// through the open port; wss:// (through nginx) through the port that requires Basic
  authentication (basic_ncsa_auth, an htpasswd made with openssl passwd -apr1), credentials in
  http_proxy=http://user:pass@127.0.0.1:P; the user is in squid's access log; no or wrong
  credentials: 407, never registered.
A second aip-test-server instance does not know the device connected to the first: behind a
load balancer, devices and constellations must reach the same instance.

usage: realparts_test.py BUILD_DIR
"""
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import aiptest

BUILD = sys.argv[1]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SQUID = shutil.which("squid") or "/usr/sbin/squid"
NCSA = "/usr/lib/squid/basic_ncsa_auth"
for prog in (NGINX, SQUID, NCSA):
    if not os.access(prog, os.X_OK):
        print("FAIL %s is missing: run tools/install-deps.sh (packages nginx, squid)" % prog)
        sys.exit(1)

TOKEN = "realparts-key"
TMP = tempfile.mkdtemp(prefix="aip-realparts.")
os.chmod(TMP, 0o755)  # squid's and nginx's workers (users proxy, nobody) read below it
aiptest.kill_at_exit(wait=True, remove=TMP)
checks = aiptest.Checks(flush=True, ok_detail=True)
check = checks.check
wait_for = aiptest.wait_for
HEARTBEAT = 5  # the agents' heartbeat (s)
IDLE_TIMEOUT = 2  # nginx's proxy_read_timeout in the idle-timeout part (s), below HEARTBEAT


def path(name):
    return os.path.join(TMP, name)


def text(p):
    try:
        with open(p, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def stamp(line):
    """The time of an aip log line (ISO 8601 at its start), in seconds."""
    return datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()


# ---- a throwaway CA and nginx's certificate ---------------------------------------------------
openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"), "-out",
        path("ca.crt"), "-days", "2", "-subj", "/CN=aip realparts test CA")
openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("nginx.key"), "-out",
        path("nginx.csr"), "-subj", "/CN=aip.test")
with open(path("nginx.ext"), "w") as f:
    f.write("subjectAltName=DNS:aip.test,DNS:localhost,IP:127.0.0.1\n")
openssl("x509", "-req", "-in", path("nginx.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
        "-CAcreateserial", "-out", path("nginx.crt"), "-days", "2", "-extfile", path("nginx.ext"))
os.chmod(path("nginx.key"), 0o600)

# ---- aip-test-server: plain ws:// on 127.0.0.1, the name nginx forwards allowed --------------
srv_log = path("server.log")
srv, SPORT = aiptest.listen([SERVER, "--port", "0", "--token", TOKEN, "--allow-host", "aip.test",
                             "--allow-origin", "https://aip.test"], stderr=open(srv_log, "w"))

# ---- nginx -----------------------------------------------------------------------------------
NGINX_CONF = """# the test's own nginx: foreground (daemon off), 127.0.0.1 only, everything under {d}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name aip.test;
        ssl_certificate {d}/../nginx.crt;
        ssl_certificate_key {d}/../nginx.key;

        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
            proxy_buffering off;
        }}
    }}
}}
# links still open after a reload keep an old worker alive (and heartbeating) forever without it
worker_shutdown_timeout 1s;
"""


class Nginx:
    def __init__(self, name, read_timeout):
        self.dir = path(name)
        os.mkdir(self.dir)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.dir, port=self.port, upstream=SPORT,
                                      read_timeout=read_timeout))
        self.p = None

    def cmd(self, *extra):
        return [NGINX, "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "error.log")
                ] + list(extra)

    def start(self):
        self.p = subprocess.Popen(self.cmd("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(self.dir, "stderr.log"), "a"))
        aiptest.procs.append(self.p)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return self.p.poll() is not None  # died: stop waiting
        wait_for(up, 10)
        if self.p.poll() is not None:
            raise RuntimeError("nginx did not start: " + text(os.path.join(self.dir, "error.log")))

    def stop(self):
        subprocess.run(self.cmd("-s", "stop"), stderr=subprocess.DEVNULL)
        self.p.wait(10)

    def reload(self):
        return subprocess.run(self.cmd("-s", "reload"), capture_output=True, text=True)


def start_agent(name, url, env=None):
    log = path("agent-%s.log" % name)
    p = subprocess.Popen([AGENT, "--server", url, "--client-id", name, "--token", TOKEN,
                          "--ca-file", path("ca.crt"), "--heartbeat", str(HEARTBEAT)],
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                         env=dict(os.environ, **(env or {})))
    aiptest.procs.append(p)
    return p, log


def registrations(name):
    return text(srv_log).count("registered device %s " % name)


def https(port, method, target, host="aip.test", body=None, headers=None):
    """A request to nginx (certificate checked against the test CA) naming Host host."""
    ctx = ssl.create_default_context(cafile=path("ca.crt"))
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    h = {"Host": host}
    h.update(headers or {})
    c.request(method, target, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def aipctl(port, *args, timeout=30):
    return subprocess.Popen([AIPCTL, "--server", "wss://localhost:%d/ws" % port, "--token", TOKEN,
                             "--ca-file", path("ca.crt"), "--timeout", str(timeout)] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


SLEEP_TASK = json.dumps({"actions": [{"tool_name": "sleep", "parameters": {"seconds": 20}}]})

# ---- the idle-timeout agent runs meanwhile (its own nginx, proxy_read_timeout 2 s) -----------
idle = Nginx("nginx-idle", IDLE_TIMEOUT)
idle.start()
t_idle = time.monotonic()
idle_agent, idle_log = start_agent("dev-idle", "wss://localhost:%d/ws" % idle.port)

# ---- nginx in front of aip-test-server -------------------------------------------------------
ngx = Nginx("nginx", 30)
ngx.start()
agent, agent_log = start_agent("dev-nginx", "wss://localhost:%d/ws" % ngx.port)
check("agent: wss:// through nginx (TLS ends there), registered",
      wait_for(lambda: registrations("dev-nginx") == 1, 15) and
      "registered as dev-nginx (device) with wss://localhost" in text(agent_log))

p = aipctl(ngx.port, "devices")
out, err = p.communicate(timeout=30)
check("aipctl devices over wss:// through nginx", p.returncode == 0 and "dev-nginx" in out,
      (p.returncode, out[-300:], err[-300:]))
p = aipctl(ngx.port, "task", "dev-nginx",
           json.dumps({"actions": [{"tool_name": "echo", "parameters": {"text": "via nginx"}}]}))
out, err = p.communicate(timeout=30)
check("aipctl task over wss:// through nginx", p.returncode == 0 and "via nginx" in out,
      (p.returncode, out[-300:], err[-300:]))

st, body = https(ngx.port, "GET", "/api/clients", headers={"X-API-Key": TOKEN})
check("admin API through nginx for Host aip.test (--allow-host)",
      st == 200 and b"dev-nginx" in body, (st, body[:200]))
st, body = https(ngx.port, "GET", "/")
check("dashboard through nginx", st == 200 and b"<html" in body.lower(), (st, body[:120]))
st, body = https(ngx.port, "POST", "/api/dispatch", headers={
    "X-API-Key": TOKEN, "Content-Type": "application/json", "Origin": "https://aip.test",
    "Sec-Fetch-Site": "same-origin"}, body=json.dumps({
        "client_id": "dev-nginx", "task_name": "rp-dispatch",
        "request": {"actions": [{"tool_name": "echo", "parameters": {"text": "x"}}]}}))
check("POST /api/dispatch from the page's origin https://aip.test (--allow-origin)", st == 200,
      (st, body[:200]))
st, body = https(ngx.port, "GET", "/api/clients", host="evil.test",
                 headers={"X-API-Key": TOKEN})
check("a request naming another Host is still refused through nginx", st == 403,
      (st, body[:200]))


def events_first_frame():
    import asyncio
    import websockets

    async def go():
        ctx = ssl.create_default_context(cafile=path("ca.crt"))
        async with websockets.connect(
                "wss://aip.test:%d/events?token=%s" % (ngx.port, TOKEN), host="127.0.0.1",
                port=ngx.port, ssl=ctx, origin="https://aip.test", open_timeout=10) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))
    try:
        return asyncio.run(go())
    except Exception as e:  # noqa: BLE001 (reported as the check's detail)
        return {"error": repr(e)}


ev = events_first_frame()
check("dashboard's /events feed over wss:// through nginx (Host aip.test, Origin https://aip.test)",
      isinstance(ev, dict) and "error" not in ev and "dev-nginx" in json.dumps(ev),
      str(ev)[:200])


# ---- nginx stopped and started, then reloaded, under the connected agent ---------------------
def task_in_flight(action, name):
    """Starts a 20 s task through nginx, then action(); returns (seconds from the action to
    aipctl's end, exit code, stderr)."""
    p = aipctl(ngx.port, "task", "dev-nginx", SLEEP_TASK, timeout=60)
    time.sleep(1.5)  # connected, registered, the task sent on to the device
    t0 = time.monotonic()
    action()
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return time.monotonic() - t0, p.returncode, err.strip()[-200:]


def back_after(before, t_start):
    """Waits for the agent's next registration; returns seconds from t_start, or None."""
    if not wait_for(lambda: registrations("dev-nginx") > before, 30):
        return None
    return time.monotonic() - t_start


before = registrations("dev-nginx")
took, rc, err = task_in_flight(ngx.stop, "stop")
check("nginx stopped: the task in flight fails at once (20 s task, aipctl timeout 60 s)",
      rc == 1 and took < 5, "%.2f s, exit %s, %s" % (took, rc, err))
time.sleep(1.0)
t_start = time.monotonic()
ngx.start()
back = back_after(before, t_start)
delays = [int(m) for m in re.findall(r"reconnecting in (\d+) ms", text(agent_log))]
check("nginx started again: the agent is back within its backoff",
      back is not None and back <= max(delays[-1:] or [0]) / 1000 + 3,
      "back %s s after nginx started; last delay drawn %s ms" % (
          None if back is None else round(back, 2), delays[-1:]))

before = registrations("dev-nginx")
reloaded = []
took, rc, err = task_in_flight(lambda: reloaded.append(ngx.reload()), "reload")
check("nginx -s reload: the task in flight fails once the old worker ends its links "
      "(worker_shutdown_timeout 1s)",
      reloaded[0].returncode == 0 and rc == 1 and took < 6, "%.2f s, exit %s, %s" % (
          took, rc, err))
t_start = time.monotonic()
back = back_after(before, t_start - took)
check("nginx -s reload: the agent is back on a new worker", back is not None and back < 10,
      "back %s s after the reload" % (None if back is None else round(back, 2)))

# ---- two server instances (what a load balancer without sticky routing gives) ----------------
# The registry is in the server's memory: a constellation that reaches another instance than
# the device's cannot reach the device.
srv2, SPORT2 = aiptest.listen([SERVER, "--port", "0", "--token", TOKEN],
                              stderr=open(path("server2.log"), "w"))
r = subprocess.run([AIPCTL, "--server", "ws://127.0.0.1:%d/ws" % SPORT2, "--token", TOKEN,
                    "--timeout", "10", "task", "dev-nginx", SLEEP_TASK],
                   capture_output=True, text=True, timeout=30)
check("another server instance does not know the device (load balancers: one instance)",
      r.returncode == 1 and "Target device 'dev-nginx' is not connected" in r.stderr,
      (r.returncode, r.stderr.strip()[-200:]))
srv2.terminate()
srv2.wait(10)

# ---- squid: an HTTP CONNECT proxy, open and with Basic authentication -------------------------
sq = path("squid")
os.mkdir(sq)
os.chmod(sq, 0o777)  # squid drops to its cache_effective_user (proxy) and writes its logs here
OPEN_PORT, AUTH_PORT = free_port(), free_port()
pw = subprocess.run(["openssl", "passwd", "-apr1", "pr0xy-pass"], capture_output=True,
                    text=True, check=True).stdout.strip()
with open(os.path.join(sq, "htpasswd"), "w") as f:
    f.write("puser:%s\n" % pw)
os.chmod(os.path.join(sq, "htpasswd"), 0o644)
with open(os.path.join(sq, "squid.conf"), "w") as f:
    f.write("""# the test's own squid: squid -N -f {d}/squid.conf, 127.0.0.1 only, everything under {d}
http_port 127.0.0.1:{open} name=open
http_port 127.0.0.1:{auth} name=auth
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
coredump_dir {d}
netdb_filename none
pinger_enable off
cache deny all
shutdown_lifetime 1 seconds
visible_hostname aip-realparts-squid

auth_param basic program {ncsa} {d}/htpasswd
auth_param basic realm aip-realparts
acl authed proxy_auth REQUIRED
acl open_port myportname open
acl auth_port myportname auth
acl aip_ports port {sport} {nport}
acl CONNECT method CONNECT
http_access deny !CONNECT
http_access deny CONNECT !aip_ports
http_access allow open_port
http_access allow auth_port authed
http_access deny all
""".format(d=sq, open=OPEN_PORT, auth=AUTH_PORT, ncsa=NCSA, sport=SPORT, nport=ngx.port))
squid = subprocess.Popen([SQUID, "-N", "-f", os.path.join(sq, "squid.conf")],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(sq, "stderr.log"), "w"))
aiptest.procs.append(squid)


def squid_up():
    for port in (OPEN_PORT, AUTH_PORT):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return squid.poll() is not None
    return True


wait_for(squid_up, 20)
check("squid started (foreground, its own config)", squid.poll() is None,
      text(os.path.join(sq, "cache.log"))[-400:])


def via_squid(name, url, proxy):
    p, log = start_agent(name, url, {"http_proxy": proxy})
    ok = wait_for(lambda: registrations(name) >= 1, 15)
    return p, log, ok


ACCESS = os.path.join(sq, "access.log")  # squid logs a CONNECT when its tunnel ends


def ended(p):
    p.terminate()
    p.wait(10)


a1, log1, ok = via_squid("dev-squid-ws", "ws://127.0.0.1:%d/ws" % SPORT,
                         "http://127.0.0.1:%d" % OPEN_PORT)
ended(a1)
check("ws:// through squid's CONNECT (no authentication)", ok and wait_for(lambda: re.search(
    r"TCP_TUNNEL/200 .*CONNECT 127\.0\.0\.1:%d - " % SPORT, text(ACCESS)), 10),
    text(ACCESS)[-400:] + text(log1)[-300:])
a2, log2, ok = via_squid("dev-squid-wss", "wss://localhost:%d/ws" % ngx.port,
                         "http://puser:pr0xy-pass@127.0.0.1:%d" % AUTH_PORT)
ended(a2)
check("wss:// through squid with Basic proxy authentication from http_proxy's credentials "
      "(user puser in squid's access log)", ok and wait_for(lambda: re.search(
          r"TCP_TUNNEL/200 .*CONNECT 127\.0\.0\.1:%d puser " % ngx.port, text(ACCESS)), 10),
      text(ACCESS)[-400:] + text(log2)[-300:])
n407 = text(ACCESS).count("TCP_DENIED/407")
a3, log3 = start_agent("dev-squid-nocred", "wss://localhost:%d/ws" % ngx.port,
                       {"http_proxy": "http://127.0.0.1:%d" % AUTH_PORT})
a4, log4 = start_agent("dev-squid-badcred", "wss://localhost:%d/ws" % ngx.port,
                       {"http_proxy": "http://puser:wrong-pass@127.0.0.1:%d" % AUTH_PORT})
wait_for(lambda: text(ACCESS).count("TCP_DENIED/407") >= n407 + 2, 10)
time.sleep(1)
access = text(ACCESS)
check("no or wrong proxy credentials: 407, never registered",
      registrations("dev-squid-nocred") == 0 and registrations("dev-squid-badcred") == 0 and
      access.count("TCP_DENIED/407") >= n407 + 2 and "wrong-pass" not in text(log4),
      access[-400:])
for p in (a3, a4):
    ended(p)

# ---- the idle-timeout agent: short links, backoff at its base, named once --------------------
time.sleep(max(0.0, 16 - (time.monotonic() - t_idle)))
idle_agent.terminate()
idle_agent.wait(10)
lines = text(idle_log).splitlines()
reg = [stamp(ln) for ln in lines if "conn: registered as dev-idle" in ln]
closed = [stamp(ln) for ln in lines if "conn: link closed" in ln]
first = reg[0] if reg else 0
end = stamp(lines[-1]) if lines else 0
up = sum(min([c for c in closed if c > r] or [end]) - r for r in reg)
ratio = up / (end - first) if end > first else 0
delays = [int(m) for m in re.findall(r"reconnecting in (\d+) ms", text(idle_log))]
lived = sorted(round(min([c for c in closed if c > r] or [end]) - r, 1) for r in reg[:-1])
warned = [ln for ln in lines if "times in a row: an idle timeout" in ln]
check("proxy_read_timeout %d s below the heartbeat (%d s): links end after about %d s" % (
    IDLE_TIMEOUT, HEARTBEAT, IDLE_TIMEOUT),
    len(reg) >= 4 and all(IDLE_TIMEOUT - 0.5 <= x <= IDLE_TIMEOUT + 1.5 for x in lived),
    "%d links, lifetimes %s" % (len(reg), lived))
check("the backoff stays at its base (a registered link is progress): every delay <= 1 s",
      delays and max(delays) <= 1000, "delays %s ms" % delays)
check("the agent is registered most of the time", ratio > 0.6,
      "registered %.0f%% of %.1f s" % (100 * ratio, end - first))
check("the repetition is named once, at warn, with the likely cause", len(warned) == 1 and
      " warn " in warned[0], warned or [ln for ln in lines if "warn" in ln][:3])

agent.terminate()
agent.wait(10)
squid.terminate()
squid.wait(15)
for n in (ngx, idle):
    n.stop()
srv.terminate()
srv.wait(10)
sys.exit(checks.summary())
