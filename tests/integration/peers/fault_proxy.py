#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Loopback TCP fault proxy for the fault and soak tests.

    /usr/bin/python3 tests/integration/peers/fault_proxy.py --target PORT [--port 0]
                     [--control FILE] [--log FILE]

Listens on 127.0.0.1 (never another address), prints exactly one line
``listening on 127.0.0.1:<port>`` once listening, and forwards every accepted
connection to 127.0.0.1:<target>. Serves until SIGTERM/SIGINT, then exits 0.

Faults are chosen at run time by appending lines to the control file (polled
every 20 ms; each complete new line is one command, run once, in order):

  stall            every current connection freezes in both directions: nothing is
                   read, nothing is written, nothing is closed (a half-open link as a
                   dead NAT or a pulled cable makes it). Frozen forever (until reset).
  reset            every current connection is reset (RST to both sides, SO_LINGER 0).
  close            every current connection is closed cleanly (FIN to both sides).
  delay MS         every current connection delays each chunk by MS ms (order kept).
  drop-after N     every current connection is reset after N more bytes (both
                   directions counted), the last chunk cut at the limit.
  pass             every current connection forwards normally again (not a stalled one).
  new MODE [ARG]   what new connections get: pass | delay MS | stall | drop-after N |
                   reset (accepted, then reset at once) | refuse (accepted, closed at once).
                   Default: pass.

SIGUSR1 = "reset", SIGUSR2 = "stall" (the same, without a file).

--log FILE gets one JSON object per line (flushed at once): {"t": monotonic,
"event": "listening"|"connect"|"end"|"control", "conn": n, ...}. "end" says why
(client eof, target eof, reset, close, drop-after, target refused) and the bytes
each way ("up" = client to target).
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time

CHUNK = 65536


class Log:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8") if path else None

    def write(self, **rec):
        if self.f is None:
            return
        line = {"t": time.monotonic()}
        line.update(rec)
        try:
            self.f.write(json.dumps(line) + "\n")
            self.f.flush()
        except (OSError, ValueError):
            pass


def parse_mode(words):
    """['delay', '200'] -> ('delay', 200); raises ValueError."""
    if not words:
        raise ValueError("empty mode")
    name = words[0]
    if name in ("pass", "stall", "reset", "refuse") and len(words) == 1:
        return name, 0
    if name in ("delay", "drop-after") and len(words) == 2:
        v = int(words[1])
        if v < 0:
            raise ValueError("negative")
        return name, v
    raise ValueError("bad mode")


class Conn:
    def __init__(self, proxy, n, cr, cw):
        self.proxy = proxy
        self.n = n
        self.cr, self.cw = cr, cw       # client side
        self.tr = self.tw = None        # target side
        self.stalled = False
        self.delay = 0.0
        self.budget = None              # bytes left before drop-after fires
        self.up = self.down = 0
        self.ended = False
        self.tasks = []

    def socks(self):
        for w in (self.cw, self.tw):
            if w is not None:
                yield w

    def end(self, why, rst=False):
        if self.ended:
            return
        self.ended = True
        for w in self.socks():
            try:
                if rst:
                    sock = w.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    w.transport.abort()
                else:
                    w.close()
            except OSError:
                pass
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self.proxy.conns.discard(self)
        self.proxy.log.write(event="end", conn=self.n, why=why, up=self.up, down=self.down)

    async def run(self, mode):
        name, arg = mode
        if name in ("reset", "refuse"):
            self.end("new " + name, rst=(name == "reset"))
            return
        try:
            self.tr, self.tw = await asyncio.open_connection("127.0.0.1", self.proxy.target)
        except OSError as exc:
            self.end("target refused: {}".format(exc.strerror or exc), rst=True)
            return
        self.apply(name, arg)
        if self.ended:
            return
        self.tasks = [asyncio.ensure_future(self.pump(self.cr, self.tw, "up")),
                      asyncio.ensure_future(self.pump(self.tr, self.cw, "down"))]
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def apply(self, name, arg):
        if name == "stall":
            self.stalled = True
        elif name == "pass":
            self.delay = 0.0
            self.budget = None
        elif name == "delay":
            self.delay = arg / 1000.0
        elif name == "drop-after":
            self.budget = arg
        elif name == "reset":
            self.end("reset", rst=True)
        elif name == "close":
            self.end("close")

    async def frozen(self):
        while self.stalled and not self.ended:
            await asyncio.sleep(3600)

    async def pump(self, reader, writer, way):
        try:
            while not self.ended:
                if self.stalled:
                    await self.frozen()
                    continue
                data = await reader.read(CHUNK)
                if not data:
                    if self.stalled:        # a half-open link tells nobody anything
                        await self.frozen()
                        continue
                    self.end("client eof" if way == "up" else "target eof")
                    return
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                if self.stalled:            # frozen while this chunk was in hand: it is lost
                    await self.frozen()
                    continue
                cut = False
                if self.budget is not None:
                    if len(data) >= self.budget:
                        data = data[:self.budget]
                        cut = True
                    self.budget -= len(data)
                if data:
                    writer.write(data)
                    if way == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    await writer.drain()
                if cut:
                    self.end("drop-after", rst=True)
                    return
        except (ConnectionError, OSError):
            self.end("socket error ({})".format(way), rst=True)
        except asyncio.CancelledError:
            pass


class Proxy:
    def __init__(self, args):
        self.target = args.target
        self.control = args.control
        self.log = Log(args.log)
        self.conns = set()
        self.count = 0
        self.new_mode = ("pass", 0)
        self.ctl_off = 0
        self.ctl_rest = b""

    async def accept(self, reader, writer):
        self.count += 1
        c = Conn(self, self.count, reader, writer)
        self.conns.add(c)
        self.log.write(event="connect", conn=c.n, mode=" ".join(str(x) for x in self.new_mode))
        await c.run(self.new_mode)

    def command(self, line):
        words = line.split()
        if not words:
            return
        self.log.write(event="control", cmd=line)
        try:
            if words[0] == "new":
                self.new_mode = parse_mode(words[1:])
                return
            if words[0] in ("stall", "reset", "close", "pass") and len(words) == 1:
                name, arg = words[0], 0
            else:
                name, arg = parse_mode(words)
        except ValueError:
            self.log.write(event="control_error", cmd=line)
            print("fault_proxy: bad command {!r}".format(line), file=sys.stderr, flush=True)
            return
        for c in list(self.conns):
            c.apply(name, arg)

    async def poll_control(self):
        while True:
            await asyncio.sleep(0.02)
            try:
                with open(self.control, "rb") as f:
                    f.seek(self.ctl_off)
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self.ctl_off += len(data)
            data = self.ctl_rest + data
            *lines, self.ctl_rest = data.split(b"\n")
            for line in lines:
                self.command(line.decode("utf-8", "replace").strip())


async def amain(args):
    proxy = Proxy(args)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.add_signal_handler(signal.SIGUSR1, lambda: proxy.command("reset"))
    loop.add_signal_handler(signal.SIGUSR2, lambda: proxy.command("stall"))
    server = await asyncio.start_server(proxy.accept, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    proxy.log.write(event="listening", port=port, target=args.target, pid=os.getpid())
    sys.stdout.write("listening on 127.0.0.1:{}\n".format(port))
    sys.stdout.flush()
    poller = asyncio.ensure_future(proxy.poll_control()) if args.control else None
    await stop
    if poller:
        poller.cancel()
    server.close()
    for c in list(proxy.conns):
        c.end("proxy shutdown", rst=True)
    proxy.log.write(event="shutdown")


def main():
    p = argparse.ArgumentParser(description="Loopback TCP fault proxy (127.0.0.1 only).")
    p.add_argument("--target", type=int, required=True, help="port on 127.0.0.1 to forward to")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0 = pick one)")
    p.add_argument("--control", default=None, help="control file (commands appended)")
    p.add_argument("--log", default=None, help="JSON-lines event log")
    args = p.parse_args()
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print("fault_proxy: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
