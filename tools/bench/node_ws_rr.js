#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// node_ws_rr.js — the Node.js peer a user would pick instead of libaip, doing aip-bench rr's work.
//
// The npm `ws` package (8.x, pinned in tools/install-deps.sh, installed into .deps/npm; pure
// JavaScript: the optional native add-ons bufferutil and utf-8-validate are not installed, as a
// plain `npm install ws` leaves them) with JSON.parse / JSON.stringify, on Node's one event loop.
// Same shape as tools/bench/python_baseline.py: one 'message' listener per connection and a Map
// of pending requests keyed by request id; a request registers its entry before the frame
// leaves, the listener settles it on device_info_response (or error), the requester waits with
// a timeout and always removes its entry. C async workers each keep one request in flight.
//
// Registration: a constellation `register` frame (client_type constellation, target_id DEVICE,
// metadata) answered by the server's heartbeat. Each request: a `device_info_request` with a
// fresh UUID request_id and an ISO 8601 timestamp; an answer counts as ok when its response_id
// is that request's id and its result is a JSON object (as aip-bench rr checks).
//
//   node tools/bench/node_ws_rr.js --server ws://127.0.0.1:5000/ws --target DEVICE
//        [--inflight 64] (--requests N | --seconds S) [--token T] [--timeout SECONDS]
//
// Prints one JSON line like aip-bench rr's (mode "node-ws"): requests, ok, errors, mismatched,
// seconds, req_per_s, p50_us, p99_us, p999_us, max_us, late, cpu_s (user+system CPU of this
// process from process.cpuUsage(), start-up included, as aip-bench's getrusage), max_rss_kb.
// Exit 0 only when errors and mismatched are both 0; 1 otherwise; 2 on a usage error.
// `ws` is looked up in NODE_PATH, then in .deps/npm/node_modules of this checkout.
'use strict';

const path = require('path');
const crypto = require('crypto');

function loadWs() {
    try {
        return require('ws');
    } catch (e) {
        const local = path.join(__dirname, '..', '..', '.deps', 'npm', 'node_modules', 'ws');
        try {
            return require(local);
        } catch (e2) {
            process.stderr.write('node_ws_rr: the npm package ws is missing: run tools/install-deps.sh\n');
            process.exit(2);
        }
    }
}

function usage(msg) {
    if (msg) process.stderr.write('node_ws_rr: ' + msg + '\n');
    process.stderr.write('usage: node_ws_rr.js --server ws://HOST:PORT/ws --target DEVICE ' +
        '[--inflight C] (--requests N | --seconds S) [--token T] [--timeout SECONDS]\n');
    process.exit(2);
}

function parseArgs(argv) {
    const a = { server: null, target: null, token: process.env.AIP_TOKEN || null, inflight: 64,
        requests: null, seconds: null, timeout: 30 };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        if (k === '-h' || k === '--help') usage();
        const v = argv[i + 1];
        if (v === undefined) usage(k + ' needs a value');
        i++;
        switch (k) {
        case '--server': a.server = v; break;
        case '--target': a.target = v; break;
        case '--token': a.token = v; break;
        case '--inflight': a.inflight = Number(v); break;
        case '--requests': a.requests = Number(v); break;
        case '--seconds': a.seconds = Number(v); break;
        case '--timeout': a.timeout = Number(v); break;
        default: usage('unknown argument ' + k);
        }
    }
    if (!a.server || !a.target) usage('--server and --target are required');
    if (a.requests !== null && a.seconds !== null) usage('--requests and --seconds exclude each other');
    if (a.requests === null && !a.seconds) a.requests = 10000;
    if (!Number.isInteger(a.inflight) || a.inflight < 1) usage('--inflight must be at least 1');
    if (a.requests !== null && !(Number.isInteger(a.requests) && a.requests >= 0)) usage('bad --requests');
    if (a.seconds !== null && !(a.seconds > 0)) usage('bad --seconds');
    if (!(a.timeout > 0)) usage('bad --timeout');
    return a;
}

class Client {
    constructor(ws, clientId, target) {
        this.ws = ws;
        this.clientId = clientId;
        this.target = target;
        this.pending = new Map(); // request_id -> {resolve, reject}
        this.registered = null;   // {resolve, reject} while registering
        ws.on('message', (data) => this.onMessage(data));
        ws.on('close', () => this.failAll(new Error('connection lost')));
        ws.on('error', (e) => this.failAll(e));
    }

    onMessage(data) {
        let msg;
        try {
            msg = JSON.parse(data.toString());
        } catch (e) {
            return; // not ours to answer: the requester's timeout counts it
        }
        const t = msg.type;
        if (t === 'device_info_response') {
            const p = this.pending.get(msg.response_id);
            if (p) p.resolve(msg);
        } else if (t === 'heartbeat') {
            if (this.registered) this.registered.resolve();
        } else if (t === 'error') {
            const p = this.pending.get(msg.response_id);
            if (p) p.reject(new Error(String(msg.error)));
            else if (this.registered) this.registered.reject(new Error(String(msg.error)));
        }
    }

    failAll(err) {
        for (const p of this.pending.values()) p.reject(err);
        if (this.registered) this.registered.reject(err);
    }

    register() {
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('registration timed out')), 10000);
            this.registered = {
                resolve: () => { clearTimeout(timer); this.registered = null; resolve(); },
                reject: (e) => { clearTimeout(timer); this.registered = null; reject(e); },
            };
            const now = new Date().toISOString();
            this.ws.send(JSON.stringify({
                type: 'register', status: 'ok', client_type: 'constellation',
                client_id: this.clientId, target_id: this.target,
                metadata: { type: 'constellation_client', targeted_device_id: this.target,
                    registration_time: now },
                timestamp: now,
            }));
        });
    }

    requestDeviceInfo(timeoutMs) {
        const requestId = crypto.randomUUID();
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.pending.delete(requestId);
                reject(new Error('timed out'));
            }, timeoutMs);
            this.pending.set(requestId, {
                resolve: (m) => { clearTimeout(timer); this.pending.delete(requestId); resolve([requestId, m]); },
                reject: (e) => { clearTimeout(timer); this.pending.delete(requestId); reject(e); },
            });
            this.ws.send(JSON.stringify({
                type: 'device_info_request', status: 'ok', client_type: 'constellation',
                client_id: this.clientId, target_id: this.target,
                request_id: requestId, timestamp: new Date().toISOString(),
            }), (err) => {
                if (err) {
                    const p = this.pending.get(requestId);
                    if (p) p.reject(err);
                }
            });
        });
    }
}

async function run(args) {
    const WebSocket = loadWs();
    let url = args.server;
    if (args.token) url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(args.token);
    const clientId = 'node-ws-' + process.pid + '@' + args.target;
    const stats = { ok: 0, errors: 0, mismatched: 0, firstError: null };
    const lat = [];
    const ws = new WebSocket(url, { maxPayload: 16 * 1024 * 1024 });
    await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
    });
    const c = new Client(ws, clientId, args.target);
    await c.register();

    let budget = args.requests !== null ? args.requests : -1;
    let deadline = null;
    const take = () => {
        if (deadline !== null) return performance.now() < deadline;
        if (budget <= 0) return false;
        budget--;
        return true;
    };
    const timeoutMs = args.timeout * 1000;
    const worker = async () => {
        while (take()) {
            const t0 = process.hrtime.bigint();
            let rid, msg;
            try {
                [rid, msg] = await c.requestDeviceInfo(timeoutMs);
            } catch (e) {
                stats.errors++;
                stats.firstError = stats.firstError || String(e && e.message ? e.message : e);
                continue;
            }
            const t1 = process.hrtime.bigint();
            const r = msg.result;
            if (msg.response_id !== rid || r === null || typeof r !== 'object' || Array.isArray(r)) {
                stats.mismatched++;
            } else {
                stats.ok++;
                lat.push(Number((t1 - t0) / 1000n));
            }
        }
    };
    const start = performance.now();
    if (args.seconds) deadline = start + args.seconds * 1000;
    const workers = [];
    for (let i = 0; i < args.inflight; i++) workers.push(worker());
    await Promise.all(workers);
    const secs = (performance.now() - start) / 1000;
    ws.close();
    await new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        const t = setTimeout(() => { ws.terminate(); resolve(); }, 2000);
        ws.once('close', () => { clearTimeout(t); resolve(); });
    });

    lat.sort((x, y) => x - y);
    const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * (lat.length - 1) + 0.5))] : 0);
    const total = stats.ok + stats.errors + stats.mismatched;
    const cpu = process.cpuUsage();
    if (stats.firstError) process.stderr.write('node_ws_rr: first error: ' + stats.firstError + '\n');
    process.stdout.write(JSON.stringify({
        mode: 'node-ws', encoding: 'json', threads: 1, inflight: args.inflight,
        requests: total, ok: stats.ok, errors: stats.errors, mismatched: stats.mismatched,
        seconds: Math.round(secs * 1000) / 1000,
        req_per_s: secs > 0 ? Math.round(total / secs) : 0,
        p50_us: pct(0.50), p99_us: pct(0.99), p999_us: pct(0.999),
        max_us: lat.length ? lat[lat.length - 1] : 0, late: 0,
        cpu_s: Math.round((cpu.user + cpu.system) / 1000) / 1000,
        max_rss_kb: process.resourceUsage().maxRSS,
    }) + '\n');
    return stats.errors === 0 && stats.mismatched === 0 && total > 0 ? 0 : 1;
}

run(parseArgs(process.argv.slice(2))).then(
    (rc) => { process.exitCode = rc; },
    (e) => {
        process.stderr.write('node_ws_rr: ' + (e && e.message ? e.message : String(e)) + '\n');
        process.exitCode = 1;
    });
