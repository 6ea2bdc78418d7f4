#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: wss:// and mutual TLS, with certificates made by openssl at test time.

In a temp dir: a CA, a server certificate it signed (SAN localhost and 127.0.0.1), a second
("wrong") CA, a certificate for the wrong host name, client certificates from each CA. Against
aip-test-server --tls-cert/--tls-key [--tls-ca], in JSON and in protobuf:
- constellation-agent --ca-file <the CA> registers; aipctl info/devices work over wss;
- without --ca-file (default verification, system store) and with the wrong CA it does not
  connect, and its log names the failure ("TLS handshake failed: unable to get local issuer
  certificate"); a server certificate for another name: "TLS handshake failed: hostname
  mismatch"; aipctl without the CA fails;
- mTLS: without a client certificate refused, with --cert/--key accepted, with a certificate
  from the wrong CA refused; aipctl --cert/--key works, without them it fails.
tls_insecure (config file only): --check-config shows it (and warns); every connection attempt
logs a warning naming the URL, at most one per 10 s with fast reconnects (the next one counts
the attempts in between); never a warning with verification on.
SIGHUP (config file with ca_file/cert/key): reloads while connected keep the link; then the
server restarts with certificates from a new CA and demands client certificates from it: the
agent is refused until its files are rotated and it gets SIGHUP, then it registers again at
once. The agent exits 0 (under the ASan build: LeakSanitizer found nothing). With valgrind
given (normal build): only the rotation, under valgrind: 0 errors, 0 bytes definitely lost.

usage: tls_test.py BUILD_DIR [--list] [SCENARIO ...]
Scenarios: handshakes, insecure, rotation (ctest tls_wss.NAME) and valgrind (run only when
named: ctest tls_reload_valgrind).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import aiptest

BUILD = aiptest.script_args(1, "BUILD_DIR")
AGENT = os.path.join(BUILD, "main", "constellation-agent")
SERVER = os.path.join(BUILD, "tools", "aip-test-server")
AIPCTL = os.path.join(BUILD, "tools", "aipctl")
TMP = tempfile.mkdtemp(prefix="aip-tls-test.")
procs = aiptest.procs
aiptest.kill_at_exit(wait=True, remove=TMP)
checks = aiptest.Checks()
check = checks.check
scenario = aiptest.scenario


def path(name):
    return os.path.join(TMP, name)


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path(name + ".key"),
            "-out", path(name + ".crt"), "-days", "2", "-subj", "/CN=aip test " + name)


def make_cert(name, ca, cn, san=None):
    """A certificate signed by ca; san: subjectAltName value (server certificates)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", path(name + ".key"),
            "-out", path(name + ".csr"), "-subj", "/CN=" + cn)
    ext = path(name + ".ext")
    with open(ext, "w") as f:
        f.write(("subjectAltName=%s\n" % san) if san else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", path(name + ".csr"), "-CA", path(ca + ".crt"), "-CAkey",
            path(ca + ".key"), "-CAcreateserial", "-out", path(name + ".crt"), "-days", "2",
            "-extfile", ext)
    os.chmod(path(name + ".key"), 0o600)


def server(cert, ca=None, port=0):
    cmd = [SERVER, "--port", str(port), "--no-token", "--tls-cert", path(cert + ".crt"),
           "--tls-key", path(cert + ".key")]
    if ca:
        cmd += ["--tls-ca", path(ca + ".crt")]
    err = open(path("server-%d.err" % len(procs)), "w")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    procs.append(p)
    line = p.stdout.readline()
    if "listening on" not in line:
        raise SystemExit("server did not start: %r" % line)
    return p, int(line.rsplit(":", 1)[1])


def stop(p, sig=signal.SIGTERM, timeout=10):
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


class Agent:
    def __init__(self, port, client_id, *extra, config=None, host="localhost", wrap=None):
        self.log = path("agent-%s-%d.err" % (client_id, len(procs)))
        cmd = [AGENT, "--client-id", client_id, "--log-level", "debug"]
        if config:
            cmd += ["--config", config]
        else:
            cmd += ["--server", "wss://%s:%d/ws" % (host, port)]
        cmd += list(extra)
        self.p = subprocess.Popen((wrap or []) + cmd, stdout=subprocess.DEVNULL,
                                  stderr=open(self.log, "w"))
        procs.append(self.p)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def count(self, pattern):
        return len(re.findall(pattern, self.text()))

    def wait(self, pattern, n=1, timeout=15.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(pattern) >= n:
                return True
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        return self.count(pattern) >= n


def aipctl(port, *args, ca="ca", timeout=10, host="localhost"):
    cmd = [AIPCTL, "--server", "wss://%s:%d/ws" % (host, port), "--timeout", "8"]
    if ca:
        cmd += ["--ca-file", path(ca + ".crt")]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


REGISTERED = r"registered as %s \(device\) with wss://"
REFUSED_CA = r"TLS handshake failed: unable to get local issuer certificate"
REFUSED_NAME = r"TLS handshake failed: hostname mismatch"

# ---- certificates ----------------------------------------------------------------------------


@aiptest.shared
def certs():
    """The CAs and certificates every scenario uses (made once)."""
    make_ca("ca")
    make_ca("wrongca")
    make_cert("server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_cert("wronghost", "ca", "wrong.example", "DNS:wrong.example")
    make_cert("client", "ca", "device-client")
    make_cert("wrongclient", "wrongca", "device-client")
    make_ca("ca2")
    make_cert("server2", "ca2", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_cert("client2", "ca2", "device-client")


@scenario("handshakes")
def handshakes():
    certs()
    srv, port = server("server")
    whs, wport = server("wronghost")
    mtls, mport = server("server", ca="ca")

    for enc in ("json", "proto"):
        tag = "[%s] " % enc
        # the right CA: registers, and aipctl works over wss
        good = Agent(port, "good-" + enc, "--ca-file", path("ca.crt"), "--encoding", enc)
        check(tag + "agent with --ca-file registers over wss",
              good.wait(REGISTERED % ("good-" + enc)), good.text()[-800:])
        check(tag + "verification on: no tls_insecure warning", "tls_insecure" not in good.text())
        check(tag + "the link uses the requested encoding",
              good.count(r"with wss://\S+, %s frames" % ("JSON" if enc == "json" else "protobuf")) == 1,
              good.text()[-400:])
        rc, out, err = aipctl(port, "--encoding", enc, "info", "good-" + enc)
        ok = False
        try:
            ok = rc == 0 and json.loads(out).get("device_id") == "good-" + enc
        except ValueError:
            pass
        check(tag + "aipctl --ca-file info over wss", ok, (rc, out[:200], err[-300:]))
        rc, out, err = aipctl(port, "--encoding", enc, "task", "good-" + enc,
                              json.dumps({"actions": [{"tool_name": "echo", "parameters":
                                                       {"text": "over tls"}}]}))
        check(tag + "aipctl task over wss", rc == 0 and "over tls" in out, (rc, out[:300], err[-300:]))
        rc, out, err = aipctl(port, "devices")
        check(tag + "aipctl devices over https lists the agent", rc == 0 and ("good-" + enc) in out,
              (rc, out[:300], err[-300:]))
        rc, out, err = aipctl(port, "--encoding", enc, "info", "good-" + enc, ca=None)
        check(tag + "aipctl without the CA fails", rc == 1 and "registration" not in err,
              (rc, err[-300:]))

        # default verification (system store) and a wrong CA: refused, with the reason logged
        nocert = Agent(port, "noca-" + enc, "--encoding", enc)
        wrong = Agent(port, "wrongca-" + enc, "--ca-file", path("wrongca.crt"), "--encoding", enc)
        check(tag + "agent without --ca-file: verification fails, logged",
              nocert.wait(REFUSED_CA, 2), nocert.text()[-600:])
        check(tag + "agent with the wrong CA: verification fails, logged",
              wrong.wait(REFUSED_CA, 2), wrong.text()[-600:])
        check(tag + "neither registered", "registered as" not in nocert.text() + wrong.text())
        rc, out, _ = aipctl(port, "devices")
        check(tag + "the server never saw them", rc == 0 and "noca-" not in out and "wrongca-" not in out,
              out[:300])

        # a certificate for another host name
        name = Agent(wport, "name-" + enc, "--ca-file", path("ca.crt"), "--encoding", enc)
        check(tag + "wrong host name refused, logged", name.wait(REFUSED_NAME, 2), name.text()[-600:])
        check(tag + "wrong host name never registers", "registered as" not in name.text())

        # mutual TLS
        anon = Agent(mport, "anon-" + enc, "--ca-file", path("ca.crt"), "--encoding", enc)
        mine = Agent(mport, "mtls-" + enc, "--ca-file", path("ca.crt"), "--cert",
                     path("client.crt"), "--key", path("client.key"), "--encoding", enc)
        other = Agent(mport, "othercert-" + enc, "--ca-file", path("ca.crt"), "--cert",
                      path("wrongclient.crt"), "--key", path("wrongclient.key"), "--encoding", enc)
        check(tag + "mTLS: with --cert/--key registers", mine.wait(REGISTERED % ("mtls-" + enc)),
              mine.text()[-600:])
        check(tag + "mTLS: without a client certificate refused",
              anon.wait(r"cannot connect to wss://.*client certificate", 2), anon.text()[-600:])
        check(tag + "mTLS: a certificate from another CA refused",
              other.wait(r"cannot connect to wss://", 2), other.text()[-600:])
        check(tag + "mTLS: only the right certificate registered",
              "registered as" not in anon.text() + other.text())
        cert = ["--cert", path("client.crt"), "--key", path("client.key")]
        rc, out, err = aipctl(mport, *(cert + ["--encoding", enc, "info", "mtls-" + enc]))
        check(tag + "mTLS: aipctl --cert --key info works", rc == 0 and ("mtls-" + enc) in out,
              (rc, out[:200], err[-300:]))
        rc, out, err = aipctl(mport, *(cert + ["devices"]))
        check(tag + "mTLS: aipctl --cert --key devices (https) works",
              rc == 0 and ("mtls-" + enc) in out, (rc, out[:200], err[-300:]))
        rc, out, err = aipctl(mport, "--encoding", enc, "info", "mtls-" + enc)
        check(tag + "mTLS: aipctl without a client certificate fails", rc == 1, (rc, err[-300:]))

        for a in (good, nocert, wrong, name, anon, mine, other):
            rc = stop(a.p)
            check(tag + "agent %s exits 0 (clean under LeakSanitizer in the ASan build)" %
                  a.log.rsplit("/", 1)[1], rc == 0, (rc, a.text()[-1500:]))

    for p in (srv, whs, mtls):
        stop(p)


# ---- tls_insecure is never silent ----------------------------------------------------------------

INSECURE = r"tls_insecure is on: the certificate and host name of wss://\S+ are NOT verified"


@scenario("insecure")
def insecure():
    certs()
    srv, port = server("wronghost")  # a name the agent would refuse, and no --ca-file
    cfg = path("agent-insecure.json")
    with open(cfg, "w") as f:
        json.dump({"server": "wss://localhost:%d/ws" % port, "tls_insecure": True}, f)
    r = subprocess.run([AGENT, "--config", cfg, "--check-config"], capture_output=True, text=True)
    check("tls_insecure: --check-config shows it, with a warning",
          r.returncode == 0 and json.loads(r.stdout).get("tls_insecure") is True and
          "tls_insecure is on" in r.stderr, (r.returncode, r.stdout, r.stderr))
    r = subprocess.run([AGENT, "--server", "wss://localhost:%d/ws" % port, "--check-config"],
                       capture_output=True, text=True)
    check("tls_insecure: off by default in --check-config",
          r.returncode == 0 and json.loads(r.stdout).get("tls_insecure") is False, r.stdout)
    a = Agent(port, "insecure", config=cfg)
    check("tls_insecure: the agent registers without verification",
          a.wait(REGISTERED % "insecure"), a.text()[-600:])
    check("tls_insecure: the connection attempt logged the warning", a.count(INSECURE) == 1,
          a.text()[-800:])
    # fast reconnects (nothing listens): one warning per attempt, at most one per 10 s
    with open(cfg, "w") as f:
        json.dump({"server": "wss://localhost:%d/ws" % port, "tls_insecure": True,
                   "backoff": {"base_ms": 10, "cap_ms": 40}}, f)
    stop(srv)
    b = Agent(port, "insecure-fast", config=cfg)
    attempts = "cannot connect to wss://"
    check("tls_insecure: fast reconnects", b.wait(attempts, 20), b.text()[-600:])
    n_warn, n_att = b.count(INSECURE), b.count(attempts)
    check("tls_insecure: rate-limited: %d warning(s) for %d attempts" % (n_warn, n_att),
          n_warn == 1 and n_att >= 20, b.text()[-600:])
    check("tls_insecure: 10 s later the next warning counts the attempts in between",
          b.wait(INSECURE + r".* \(and \d+ earlier attempts\)", 1, timeout=15), b.text()[-600:])
    for x in (a, b):
        check("tls_insecure: agent %s exits 0" % x.log.rsplit("/", 1)[1], stop(x.p) == 0)


# ---- SIGHUP reloads the certificates ----------------------------------------------------------


SANITIZED = bool(BUILD) and \
    "AIP_SANITIZE:STRING=address" in open(os.path.join(BUILD, "CMakeCache.txt")).read()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rotation(wrap=None, reloads=5, label=""):
    for name in ("live-ca.crt", "live.crt", "live.key"):
        shutil.copy(path({"live-ca.crt": "ca.crt", "live.crt": "client.crt",
                          "live.key": "client.key"}[name]), path(name))
    os.chmod(path("live.key"), 0o600)
    cfg = path("agent-tls.json")
    s1, sport = server("server", ca="ca")
    with open(cfg, "w") as f:
        json.dump({"server": "wss://localhost:%d/ws" % sport, "ca_file": path("live-ca.crt"),
                   "cert": path("live.crt"), "key": path("live.key"), "encoding": "proto",
                   "heartbeat": 5}, f)
    os.chmod(cfg, 0o600)
    slow = 6.0 if wrap else 1.0
    a = Agent(sport, "rotating", config=cfg, wrap=wrap)
    check(label + "rotation: registers with the first CA and client certificate",
          a.wait(REGISTERED % "rotating", timeout=15 * slow), a.text()[-600:])
    for i in range(reloads):
        a.p.send_signal(signal.SIGHUP)
        a.wait(r"TLS files reloaded \(reload %d" % (i + 1), timeout=5 * slow)
    check(label + "rotation: %d reloads while connected" % reloads,
          a.count(r"TLS files reloaded") == reloads, a.text()[-800:])
    check(label + "rotation: the open link survives the reloads",
          a.count(REGISTERED % "rotating") == 1 and "link closed" not in a.text())
    if not wrap and not SANITIZED:  # RSS over many more reloads: flat (each is a new vhost)
        before = rss_kb(a.p.pid)
        n0 = a.count(r"TLS files reloaded")
        for _ in range(60):
            a.p.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        a.wait(r"TLS files reloaded", n0 + 20)
        time.sleep(0.5)
        after, n = rss_kb(a.p.pid), a.count(r"TLS files reloaded") - n0
        print("RSS over %d more reloads: %d kB -> %d kB" % (n, before, after))
        check(label + "rotation: RSS flat over %d reloads (%+d kB)" % (n, after - before),
              n >= 20 and after - before < 1024, (before, after, n))
    # a new CA on the server side, for the server and the client certificates
    stop(s1)
    s2, _ = server("server2", ca="ca2", port=sport)
    check(label + "rotation: refused with the old CA",
          a.wait(r"TLS handshake failed: ", timeout=15 * slow), a.text()[-600:])
    shutil.copy(path("ca2.crt"), path("live-ca.crt"))
    shutil.copy(path("client2.crt"), path("live.crt"))
    shutil.copy(path("client2.key"), path("live.key"))
    t0 = time.monotonic()
    a.p.send_signal(signal.SIGHUP)
    ok = a.wait(REGISTERED % "rotating", 2, timeout=10 * slow)
    check(label + "rotation: after SIGHUP the next connection uses the new files (%.1f s)" %
          (time.monotonic() - t0), ok, a.text()[-800:])
    rc = stop(a.p, timeout=60)
    stop(s2)
    return a, rc


@scenario("rotation")
def rotation_default():
    certs()
    a, rc = rotation()
    check("rotation: agent exits 0 (ASan build: no leak over the reloads)", rc == 0,
          (rc, a.text()[-1500:]))


@scenario("valgrind", default=False)
def rotation_valgrind():
    """Only the rotation, with the agent under valgrind (a normal build)."""
    if not shutil.which("valgrind"):
        raise aiptest.Skip("valgrind is not installed: nothing to run")
    certs()
    vlog = path("valgrind.log")
    a, rc = rotation(wrap=["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                           "--error-exitcode=99", "--log-file=" + vlog], reloads=5,
                     label="[valgrind] ")
    with open(vlog) as f:
        v = f.read()
    m = re.search(r"definitely lost: ([\d,]+) bytes", v)
    e = re.search(r"ERROR SUMMARY: (\d+) errors", v)
    lost = int(m.group(1).replace(",", "")) if m else 0
    print("valgrind: definitely lost %d bytes, %s errors over 6 reloads and 2 connections" %
          (lost, e.group(1) if e else "?"))
    check("[valgrind] agent exits 0, no errors, nothing definitely lost",
          rc == 0 and e and e.group(1) == "0" and lost == 0, (rc, v[-2500:]))


sys.exit(aiptest.main(checks))
