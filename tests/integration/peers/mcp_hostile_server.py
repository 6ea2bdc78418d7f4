#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A small MCP server for the agent's MCP host tests (tests/integration/mcp_test.py): well
behaved or hostile on purpose, over stdio or streamable HTTP. Standard library only.

usage: mcp_hostile_server.py MODE LOG [VERSION]

stdio MODEs (newline-delimited JSON-RPC on stdin/stdout):
  good        a correct server: tools over several pages (nextCursor) — echo, ask (sends the
              client ping, sampling/createMessage, roots/list and elicitation/create mid-call
              and returns the answers), flood (5 MB of notifications on stdout and 2,000 lines
              on stderr, then an answer), stall (never answers: the client's
              notifications/cancelled is logged), add_tool (adds `extra` and sends
              tools/list_changed), big (a text of `bytes` bytes); answers initialize with
              VERSION (default 2025-06-18)
  silent      reads its input, never answers
  garbage     answers initialize with a line that is not JSON
  huge        answers initialize with a 100 MiB line
  exit        exits at once with status 3
  dup         lists two tools named `dup`
  badname     lists a tool named `bad name!`
  badversion  answers initialize with protocol version 1999-01-01
http MODE:
  http        streamable HTTP on 127.0.0.1 (prints `listening on 127.0.0.1:PORT`): 406
              without Accept: application/json, text/event-stream; a session id; 400 when a
              request lacks it or MCP-Protocol-Version; 404 for a session it dropped; initialize
              and the `ping_me` call answered as SSE (ping_me first sends the client a ping
              in the stream and waits for its answer); tools whoami (the session and the
              X-Api-Key header it got), drop_session (forgets every session), ping_me,
              notify_changed (adds `extra_http` and sends tools/list_changed on every open GET
              stream); 202 for notifications; DELETE logged; GET opens the standalone stream.
Every event goes to LOG as one JSON object per line (start, request, cancelled, answer, ...).
"""
import http.server
import json
import os
import sys
import threading
import time
import uuid

MODE = sys.argv[1]
LOG = sys.argv[2]
VERSION = sys.argv[3] if len(sys.argv) > 3 else "2025-06-18"
log_lock = threading.Lock()


def log(**kv):
    with log_lock, open(LOG, "a") as f:
        f.write(json.dumps(kv) + "\n")


def schema(props=None, required=None):
    s = {"type": "object", "properties": props or {}}
    if required:
        s["required"] = required
    return s


TOOLS = [
    {"name": "echo", "title": "Hostile echo", "description": "Echoes text",
     "inputSchema": schema({"text": {"type": "string"}})},
    {"name": "ask", "description": "Asks the client things mid-call", "inputSchema": schema(),
     "outputSchema": schema({"answers": {"type": "array"}})},
    {"name": "flood", "inputSchema": schema()},
    {"name": "stall", "inputSchema": schema()},
    {"name": "add_tool", "inputSchema": schema(), "annotations": {"destructiveHint": False}},
    {"name": "big", "inputSchema": schema({"bytes": {"type": "integer"}})},
]
EXTRA = {"name": "extra", "description": "added by add_tool", "inputSchema": schema()}


# ---- stdio --------------------------------------------------------------------------------------

out_lock = threading.Lock()


def send(msg):
    with out_lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def result(mid, res):
    send({"jsonrpc": "2.0", "id": mid, "result": res})


def text_result(mid, text, **more):
    r = {"content": [{"type": "text", "text": text}]}
    r.update(more)
    result(mid, r)


def stdio_main():
    log(event="start", pid=os.getpid(), mode=MODE, env=sorted(os.environ))
    if MODE == "exit":
        sys.exit(3)
    tools = list(TOOLS)
    waiting = {}  # our request id -> (event, slot)
    next_id = [1000]

    def ask_client(method, params):
        next_id[0] += 1
        rid = next_id[0]
        ev = threading.Event()
        waiting[rid] = [ev, None]
        send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        ev.wait(10)
        return waiting.pop(rid)[1]

    def call_tool(mid, name, args):
        if name == "echo":
            text_result(mid, "hostile:" + str(args.get("text", "")))
        elif name == "ask":
            answers = [ask_client("ping", {}),
                       ask_client("sampling/createMessage", {"messages": [], "maxTokens": 1}),
                       ask_client("roots/list", {}),
                       ask_client("elicitation/create", {"message": "?", "requestedSchema": {}})]
            log(event="answers", answers=answers)
            result(mid, {"content": [{"type": "text", "text": json.dumps(answers)}],
                         "structuredContent": {"answers": answers}})
        elif name == "flood":
            note = {"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "x" * 1000}}
            for _ in range(5000):
                send(note)
            for i in range(2000):
                sys.stderr.write("flood line %d\n" % i)
            sys.stderr.flush()
            text_result(mid, "flooded")
        elif name == "stall":
            log(event="stalling", id=mid)
        elif name == "add_tool":
            if EXTRA not in tools:
                tools.append(EXTRA)
            text_result(mid, "added")
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        elif name == "big":
            text_result(mid, "b" * int(args.get("bytes", 10)))
        elif name == "extra":
            text_result(mid, "extra ran")
        else:
            result(mid, {"content": [{"type": "text", "text": "no tool " + name}], "isError": True})

    for line in sys.stdin:
        msg = json.loads(line)
        method, mid = msg.get("method"), msg.get("id")
        if method is None:  # an answer to one of our requests
            slot = waiting.get(mid)
            if slot:
                slot[1] = msg
                slot[0].set()
            continue
        log(event="request", method=method, id=mid)
        if MODE == "silent":
            continue
        if method == "initialize":
            if MODE == "garbage":
                sys.stdout.write("this is not JSON at all\n")
                sys.stdout.flush()
                continue
            if MODE == "huge":
                chunk = "x" * (1 << 20)
                try:
                    for _ in range(100):
                        sys.stdout.write(chunk)
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                except BrokenPipeError:
                    log(event="huge cut")
                    return
                continue
            version = "1999-01-01" if MODE == "badversion" else VERSION
            result(mid, {"protocolVersion": version, "capabilities": {"tools": {"listChanged": True}},
                         "serverInfo": {"name": "hostile", "version": "1"}})
        elif method == "notifications/cancelled":
            log(event="cancelled", params=msg.get("params"))
        elif method == "tools/list":
            if MODE == "dup":
                result(mid, {"tools": [{"name": "dup", "inputSchema": schema()},
                                       {"name": "dup", "inputSchema": schema()}]})
                continue
            if MODE == "badname":
                result(mid, {"tools": [{"name": "bad name!", "inputSchema": schema()}]})
                continue
            start = int((msg.get("params") or {}).get("cursor") or 0)
            page = tools[start:start + 2]
            res = {"tools": page}
            if start + 2 < len(tools):
                res["nextCursor"] = str(start + 2)
            result(mid, res)
        elif method == "tools/call":
            p = msg.get("params") or {}
            threading.Thread(target=call_tool, args=(mid, p.get("name"), p.get("arguments") or {}),
                             daemon=True).start()
        elif mid is not None and not method.startswith("notifications/"):
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no " + method}})


# ---- streamable HTTP ----------------------------------------------------------------------------

sessions = {}  # id -> negotiated version
answers = {}  # our request id -> the client's answer
answer_cv = threading.Condition()
HTTP_TOOLS = [{"name": "whoami", "inputSchema": schema()},
              {"name": "drop_session", "inputSchema": schema()},
              {"name": "ping_me", "inputSchema": schema()},
              {"name": "notify_changed", "inputSchema": schema()}]
streams = []  # queues of the open GET streams
streams_cv = threading.Condition()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body=None, ctype="application/json", headers=()):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sse_start(self, headers=()):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse_event(self, msg):
        self.wfile.write(b": keep-alive comment\r\n")
        self.wfile.write(("event: message\r\nid: %s\r\ndata: %s\r\n\r\n"
                          % (uuid.uuid4().hex, json.dumps(msg))).encode())
        self.wfile.flush()

    def do_GET(self):
        sid = self.headers.get("Mcp-Session-Id")
        log(event="GET", session=sid, accept=self.headers.get("Accept"))
        if sid not in sessions or "text/event-stream" not in self.headers.get("Accept", ""):
            return self.reply(405 if sid in sessions else 400, {"error": "no stream"})
        self.sse_start()
        q = []
        with streams_cv:
            streams.append(q)
        try:
            while True:
                with streams_cv:
                    streams_cv.wait_for(lambda: q, timeout=1)
                    msgs, q[:] = list(q), []
                for m in msgs:
                    self.sse_event(m)
                if not msgs:
                    self.wfile.write(b": idle\n\n")
                    self.wfile.flush()
        except OSError:
            log(event="GET closed", session=sid)
        finally:
            with streams_cv:
                streams.remove(q)

    def do_DELETE(self):
        sid = self.headers.get("Mcp-Session-Id")
        log(event="DELETE", session=sid)
        sessions.pop(sid, None)
        self.reply(200)

    def do_POST(self):
        accept = self.headers.get("Accept", "")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if "application/json" not in accept or "text/event-stream" not in accept:
            log(event="406", accept=accept)
            return self.reply(406, {"jsonrpc": "2.0", "id": None,
                                    "error": {"code": -32000, "message": "Not Acceptable"}})
        msg = json.loads(body)
        method, mid = msg.get("method"), msg.get("id")
        sid = self.headers.get("Mcp-Session-Id")
        pv = self.headers.get("MCP-Protocol-Version")
        log(event="POST", method=method, id=mid, session=sid, version=pv,
            api_key=self.headers.get("X-Api-Key"))
        if method == "initialize":
            sid = uuid.uuid4().hex
            sessions[sid] = msg["params"]["protocolVersion"]
            self.sse_start([("Mcp-Session-Id", sid)])
            self.sse_event({"jsonrpc": "2.0", "id": mid, "result": {
                "protocolVersion": VERSION, "capabilities": {"tools": {}},
                "serverInfo": {"name": "hostile-http", "version": "1"}}})
            return
        if not sid:
            log(event="400", why="no session")
            return self.reply(400, {"jsonrpc": "2.0", "id": mid,
                                    "error": {"code": -32000, "message": "no session id"}})
        if sid not in sessions:
            log(event="404", session=sid)
            return self.reply(404, {"jsonrpc": "2.0", "id": mid,
                                    "error": {"code": -32001, "message": "Session not found"}})
        if pv != VERSION:
            log(event="400", why="MCP-Protocol-Version %r" % pv)
            return self.reply(400, {"jsonrpc": "2.0", "id": mid,
                                    "error": {"code": -32000, "message": "bad version header"}})
        if method is None:  # the client's answer to our request
            with answer_cv:
                answers[mid] = msg
                answer_cv.notify_all()
            log(event="answer", msg=msg)
            return self.reply(202)
        if mid is None:  # a notification
            return self.reply(202)
        if method == "tools/list":
            return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": {"tools": HTTP_TOOLS}})
        if method == "tools/call":
            name = msg["params"]["name"]
            if name == "whoami":
                res = {"content": [{"type": "text", "text": sid}],
                       "structuredContent": {"session": sid,
                                             "api_key": self.headers.get("X-Api-Key")}}
                return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": res})
            if name == "notify_changed":
                if not any(t["name"] == "extra_http" for t in HTTP_TOOLS):
                    HTTP_TOOLS.append({"name": "extra_http", "inputSchema": schema()})
                with streams_cv:
                    n = len(streams)
                    for q in streams:
                        q.append({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
                    streams_cv.notify_all()
                return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": {
                    "content": [{"type": "text", "text": "notified %d streams" % n}]}})
            if name == "extra_http":
                return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": {
                    "content": [{"type": "text", "text": "extra_http ran"}]}})
            if name == "drop_session":
                sessions.clear()
                return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": {
                    "content": [{"type": "text", "text": "dropped"}]}})
            if name == "ping_me":
                self.sse_start()
                rid = "srv-" + uuid.uuid4().hex[:8]
                self.sse_event({"jsonrpc": "2.0", "method": "notifications/message",
                                "params": {"level": "info", "data": "about to ping"}})
                self.sse_event({"jsonrpc": "2.0", "id": rid, "method": "ping"})
                with answer_cv:
                    answer_cv.wait_for(lambda: rid in answers, timeout=10)
                got = answers.get(rid)
                self.sse_event({"jsonrpc": "2.0", "id": mid, "result": {
                    "content": [{"type": "text", "text": json.dumps(got)}],
                    "structuredContent": {"ping_answer": got}}})
                return
        return self.reply(200, {"jsonrpc": "2.0", "id": mid,
                                "error": {"code": -32601, "message": "no " + str(method)}})


def http_main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    log(event="start", pid=os.getpid(), mode=MODE)
    srv.serve_forever()


if __name__ == "__main__":
    if MODE == "http":
        http_main()
    else:
        try:
            stdio_main()
        except (BrokenPipeError, KeyboardInterrupt):
            pass
