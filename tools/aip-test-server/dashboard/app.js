// SPDX-License-Identifier: MIT
/*
 * aip-test-server dashboard. Plain JS, no framework, no network access beyond this server.
 *
 * Live state comes from the /events WebSocket (a snapshot, then one message per event) and is
 * reconciled with GET /api/clients/details now and then. Every piece of text that a device or
 * the server supplies is put into the page with textContent, never parsed as HTML. The event log
 * keeps at most MAX_LOG rows in the DOM and is drawn at most once per animation frame, so a
 * burst of events cannot freeze the page.
 */
(function () {
  'use strict';

  var MAX_LOG = 500;            // rows kept in memory and in the DOM
  var REFRESH_MS = 5000;        // periodic reconcile with /api/clients/details
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 8000;
  var TASK_POLL_LIMIT_MS = 120000;
  var KEY_STORE = 'aip-test-server.key';
  var DEFAULT_TASK = JSON.stringify({
    actions: [
      {tool_name: 'get_device_info', parameters: {}},
      {tool_name: 'echo', parameters: {text: 'hello from the dashboard'}},
      {tool_name: 'list_tools', parameters: {}}
    ]
  }, null, 2);

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /* ---- key (token) ------------------------------------------------------------------- */

  function storeGet() {
    try { return window.sessionStorage.getItem(KEY_STORE); } catch (e) { return null; }
  }
  function storeSet(v) {
    try {
      if (v === null) window.sessionStorage.removeItem(KEY_STORE);
      else window.sessionStorage.setItem(KEY_STORE, v);
    } catch (e) { /* storage disabled: the key lives in this page only */ }
  }

  // The key arrives in the URL the server printed at start ("dashboard: http://.../?token=..."),
  // is kept in sessionStorage for this tab, and goes out as X-API-Key on API calls and as
  // ?token= on the /events WebSocket (a browser cannot set headers there). Never in a Referer:
  // every answer says Referrer-Policy: no-referrer, and the page links nowhere.
  var token = (function () {
    var url = new URL(window.location.href);
    var t = url.searchParams.get('token');
    if (t !== null) {
      storeSet(t);
      // keep the key out of the address bar, the history and screenshots
      url.searchParams.delete('token');
      try { window.history.replaceState(null, '', url.pathname + url.search + url.hash); } catch (e) {}
      return t;
    }
    return storeGet();
  })();

  function showKeyBox(message) {
    var box = $('keybox');
    var err = $('key-error');
    if (message) { err.textContent = message; err.hidden = false; } else { err.hidden = true; }
    box.hidden = false;
    setConn('bad', 'key required');
    $('key-input').focus();
  }

  $('keyform').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var v = $('key-input').value;
    if (!v) return;
    token = v;
    storeSet(v);
    $('key-input').value = '';
    $('keybox').hidden = true;
    start();
  });

  /* ---- HTTP API ---------------------------------------------------------------------- */

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  // A header value goes out as one byte per character (Latin-1): send the key's UTF-8 bytes that
  // way, so a non-ASCII key arrives as the same bytes the server was given (and as ?token= sends).
  function headerBytes(s) {
    var out = '';
    var bytes = new TextEncoder().encode(s);
    for (var i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]);
    return out;
  }

  function api(method, path, body) {
    var headers = {};
    if (token) headers['X-API-Key'] = headerBytes(token);
    var init = {method: method, headers: headers, cache: 'no-store'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var req;
    try {
      req = fetch(path, init);
    } catch (e) { // e.g. a key with characters a header cannot carry
      return Promise.reject(new ApiError(0, 'cannot send the request: ' + e.message));
    }
    return req.then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (r.status === 401) {
          showKeyBox(token ? 'The server refused this key.' : null);
        }
        if (!r.ok) {
          var msg = (data && typeof data.error === 'string') ? data.error
            : (r.statusText || 'request failed');
          throw new ApiError(r.status, 'HTTP ' + r.status + ': ' + msg);
        }
        return data;
      });
    }, function (e) {
      throw new ApiError(0, 'server unreachable (' + e.message + ')');
    });
  }

  /* ---- state ------------------------------------------------------------------------- */

  var clients = new Map();      // client_id -> CLIENT
  var lastKnown = new Map();    // client_id -> last CLIENT seen (for a device that left)
  var selected = null;
  var ring = [];                // last MAX_LOG events (objects), oldest first
  var pending = [];             // events not yet drawn
  var dropped = 0;              // events dropped from pending during a burst
  var eventsSeen = 0;
  var lastSeq = null;
  var snapSeq = null;           // events up to this seq were replayed history (snapshot.seq)
  var paused = false;
  var pauseMark = null; // the newest event when Pause was pressed

  (function readHash() {
    var m = /^#c=(.*)$/.exec(window.location.hash);
    if (m) {
      try { selected = decodeURIComponent(m[1]); } catch (e) { selected = null; }
    }
  })();

  function setClient(c) {
    if (!c || typeof c.client_id !== 'string') return;
    clients.set(c.client_id, c);
    lastKnown.set(c.client_id, c);
    if (lastKnown.size > 2000) lastKnown.delete(lastKnown.keys().next().value);
  }

  /* ---- connection pill --------------------------------------------------------------- */

  function setConn(kind, text) {
    var c = $('conn');
    c.className = 'conn conn-' + kind;
    $('conn-text').textContent = text;
    $('conn-text').title = text;
  }

  /* ---- time helpers ------------------------------------------------------------------ */

  function parseTime(iso) {
    if (typeof iso !== 'string') return NaN;
    return Date.parse(iso);
  }

  function age(iso) {
    var t = parseTime(iso);
    if (isNaN(t)) return null;
    return Math.max(0, (Date.now() - t) / 1000);
  }

  function fmtAge(sec) {
    if (sec === null) return '\u2013';
    if (sec < 1) return 'just now';
    if (sec < 90) return Math.floor(sec) + ' s ago';
    if (sec < 5400) return Math.floor(sec / 60) + ' min ago';
    if (sec < 172800) return Math.floor(sec / 3600) + ' h ago';
    return Math.floor(sec / 86400) + ' d ago';
  }

  function fmtWhen(iso) {
    if (typeof iso !== 'string') return iso;
    return iso.replace('T', ' ').replace(/(\.\d{3})\d+/, '$1') + '  (' + fmtAge(age(iso)) + ')';
  }

  function clockPart(iso) {
    // the server's ISO-8601 time of day, as its own log shows it
    if (typeof iso !== 'string') return '';
    var i = iso.indexOf('T');
    return i >= 0 ? iso.slice(i + 1, i + 13) : iso;
  }

  /* ---- clients table ----------------------------------------------------------------- */

  var renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    window.requestAnimationFrame(function () {
      renderQueued = false;
      renderClients();
      renderDevice();
      flushLog();
    });
  }

  /*
   * The table is updated in place: rows are kept per client id, a cell is written only when its
   * text changed, and rows move only when the set of clients changed. With hundreds of devices
   * heartbeating, a redraw then costs a few thousand string compares, at most every
   * CLIENTS_MIN_MS.
   */
  var CLIENTS_MIN_MS = 250;
  var CLIENTS_MAX_ROWS = 200;   // more are counted, not drawn: the filter narrows them down
  var rows = new Map();         // client_id -> tr
  var rowOrder = null;
  var lastClientsDraw = 0;
  var clientsTimer = 0;

  function setCell(td, text, cls, title) {
    if (td.textContent !== text) td.textContent = text;
    if (cls !== undefined && td.className !== cls) td.className = cls;
    if (title !== undefined && td.title !== title) td.title = title;
  }

  function setAgeCell(td, iso, isHeartbeat) {
    if ((td.dataset.ts || '') !== (iso || '')) {
      if (iso) td.dataset.ts = iso;
      else delete td.dataset.ts;
    }
    setCell(td, ageText(iso, isHeartbeat), ageClass(iso, isHeartbeat), iso || '');
  }

  function newRow(id) {
    var tr = el('tr');
    tr.dataset.id = id;
    tr.tabIndex = 0; // reachable and selectable from the keyboard
    for (var i = 0; i < 8; i++) tr.appendChild(el('td'));
    tr.cells[0].className = 'id';
    tr.cells[1].appendChild(el('span'));
    tr.cells[5].dataset.hb = '1';
    return tr;
  }

  function fillRow(tr, id, c) {
    var cl = id === selected ? 'selected' : '';
    if (tr.className !== cl) tr.className = cl;
    var idCell = tr.cells[0];
    var faults = faultsOf(c);
    var fkey = faults.join('\n');
    if (idCell.dataset.faults !== fkey || idCell.firstChild === null) {
      clear(idCell);
      idCell.appendChild(el('span', null, id));
      faults.forEach(function (f) {
        idCell.appendChild(document.createTextNode(' '));
        idCell.appendChild(el('span', 'tag fault', f));
      });
      idCell.dataset.faults = fkey;
    }
    var t = id + (c.target_id ? ' (target ' + c.target_id + ')' : '');
    if (idCell.title !== t) idCell.title = t;
    var type = c.client_type || '?';
    setCell(tr.cells[1].firstChild, type, 'tag ' + (type === 'constellation' ? 't-constellation' : 't-device'));
    setCell(tr.cells[2], c.address || '', 'mono');
    setCell(tr.cells[3], c.encoding || '');
    setAgeCell(tr.cells[4], c.connected_since, false);
    setAgeCell(tr.cells[5], c.last_heartbeat, true);
    setCell(tr.cells[6], c.commands_in_flight !== undefined ? String(c.commands_in_flight) : '', 'num');
    setCell(tr.cells[7], (c.frames_in !== undefined ? c.frames_in : '?') + ' / ' +
      (c.frames_out !== undefined ? c.frames_out : '?'), 'num');
  }

  function renderClients() {
    var now = performance.now();
    if (now - lastClientsDraw < CLIENTS_MIN_MS) {
      if (!clientsTimer) {
        clientsTimer = window.setTimeout(function () {
          clientsTimer = 0;
          renderClients();
        }, CLIENTS_MIN_MS - (now - lastClientsDraw));
      }
      return;
    }
    lastClientsDraw = now;
    var body = $('clients-body');
    var all = Array.from(clients.keys()).sort();
    var q = $('f-clients').value.trim().toLowerCase();
    var ids = q ? all.filter(function (id) {
      var c = clients.get(id);
      return (id + ' ' + (c.address || '') + ' ' + (c.client_type || '')).toLowerCase().indexOf(q) >= 0;
    }) : all;
    var matching = ids.length;
    if (ids.length > CLIENTS_MAX_ROWS) ids = ids.slice(0, CLIENTS_MAX_ROWS);
    if (selected !== null && clients.has(selected) && ids.indexOf(selected) < 0) {
      ids[ids.length ? ids.length - 1 : 0] = selected; // the open device stays visible
      ids.sort();
    }
    var shown = new Set(ids);
    ids.forEach(function (id) {
      var tr = rows.get(id);
      if (!tr) {
        tr = newRow(id);
        rows.set(id, tr);
      }
      fillRow(tr, id, clients.get(id));
    });
    rows.forEach(function (tr, id) {
      if (!shown.has(id)) {
        if (tr.parentNode) tr.parentNode.removeChild(tr);
        rows.delete(id);
      }
    });
    var order = ids.join('\n');
    if (order !== rowOrder) {
      rowOrder = order;
      var frag = document.createDocumentFragment();
      ids.forEach(function (id) { frag.appendChild(rows.get(id)); });
      body.appendChild(frag); // moves the rows into order
    }
    $('clients-empty').hidden = all.length > 0;
    $('srv-clients').textContent = String(all.length);
    var note = '';
    if (matching < all.length) note = matching + ' of ' + all.length + ' match';
    if (ids.length < matching) note = 'showing ' + ids.length + ' of ' + matching + (q ? ' matching' : '') +
      '; filter to narrow';
    $('clients-note').textContent = note;
  }

  // active timed faults of a client: ["stall 8 s", ...]
  function faultsOf(c) {
    if (!c || !Array.isArray(c.faults)) return [];
    return c.faults.filter(function (f) { return f && typeof f.fault === 'string'; }).map(function (f) {
      return f.fault + (typeof f.seconds_left === 'number' ? ' ' + Math.ceil(f.seconds_left) + ' s' : '');
    });
  }

  function ageText(iso, isHeartbeat) {
    if (!iso) return isHeartbeat ? 'never' : '\u2013';
    return fmtAge(age(iso));
  }

  function ageClass(iso, isHeartbeat) {
    var a = isHeartbeat ? age(iso) : null;
    return 'ago' + (a === null ? '' : (a > 180 ? ' age-dead' : (a > 90 ? ' age-stale' : '')));
  }

  function tickAges() {
    var cells = $('clients-body').querySelectorAll('td.ago');
    for (var i = 0; i < cells.length; i++) {
      var td = cells[i];
      var hb = td.dataset.hb === '1';
      var t = ageText(td.dataset.ts, hb);
      if (td.textContent !== t) td.textContent = t;
      var cls = ageClass(td.dataset.ts, hb);
      if (td.className !== cls) td.className = cls;
    }
  }

  $('clients-body').addEventListener('click', function (ev) {
    var tr = ev.target.closest('tr');
    if (tr && tr.dataset.id !== undefined) select(tr.dataset.id);
  });
  $('f-clients').addEventListener('input', function () {
    lastClientsDraw = 0;
    scheduleRender();
  });

  $('clients-body').addEventListener('keydown', function (ev) {
    if (ev.key !== 'Enter' && ev.key !== ' ') return;
    var tr = ev.target.closest('tr');
    if (tr && tr.dataset.id !== undefined) {
      ev.preventDefault();
      select(tr.dataset.id);
    }
  });

  function select(id) {
    if (selected !== id) {
      selected = id;
      $('info-out').hidden = true;
      setStatus('info-status', '', '');
      setStatus('fault-status', '', '');
      setStatus('tools-status', '', '');
      deviceTools = [];
      $('tools-table').hidden = $('task-tool').hidden = $('btn-task-add').hidden = true;
    }
    try { window.history.replaceState(null, '', '#c=' + encodeURIComponent(id)); } catch (e) {}
    lastClientsDraw = 0; // show the selection now
    scheduleRender();
    if ($('f-sel').checked) rerenderLog();
  }

  /* ---- device view ------------------------------------------------------------------- */

  function fmtValue(v) {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && v.every(function (x) { return typeof x !== 'object' || x === null; })) {
      return v.map(function (x) { return String(x); }).join(', ');
    }
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function kvRows(tbody, pairs) {
    clear(tbody);
    pairs.forEach(function (p) {
      var tr = el('tr');
      tr.appendChild(el('th', null, p[0]));
      tr.appendChild(el('td', null, fmtValue(p[1])));
      tbody.appendChild(tr);
    });
  }

  var deviceKey = null;

  function renderDevice() {
    var dev = $('device');
    var none = $('device-none');
    if (selected === null) {
      deviceKey = null;
      dev.hidden = true;
      none.hidden = false;
      $('device-title').textContent = 'none selected';
      return;
    }
    var c = clients.get(selected);
    var online = !!c;
    if (!c) c = lastKnown.get(selected) || {client_id: selected};
    var key = JSON.stringify([selected, online, c]);
    if (key === deviceKey) return;
    deviceKey = key;
    none.hidden = true;
    dev.hidden = false;
    $('device-title').textContent = selected + (online ? '' : '  (not connected)');
    dev.classList.toggle('offline', !online);
    kvRows($('device-conn'), [
      ['client_id', c.client_id],
      ['client_type', c.client_type],
      ['target_id', c.target_id],
      ['address', c.address],
      ['encoding', c.encoding],
      ['extensions', c.extensions || []],
      ['connected_since', fmtWhen(c.connected_since)],
      ['last_heartbeat', fmtWhen(c.last_heartbeat)],
      ['commands_in_flight', c.commands_in_flight],
      ['active faults', faultsOf(c).join(', ') || 'none'],
      ['frames in / out', (c.frames_in !== undefined ? c.frames_in : '?') + ' / ' +
        (c.frames_out !== undefined ? c.frames_out : '?')]
    ]);
    var si = c.system_info;
    if (si && typeof si === 'object' && !Array.isArray(si)) {
      var rows = Object.keys(si).map(function (k) { return [k, si[k]]; });
      // a big system_info reaches the page as a summary; "Device info" shows all of it
      if (c.system_info_summarised) {
        rows.push(['(summary)', 'of ' + c.system_info_bytes + ' bytes: "Device info" shows it whole']);
      }
      kvRows($('device-sysinfo'), rows);
    } else {
      kvRows($('device-sysinfo'), [['(none)', 'the device sent no system_info']]);
    }
    // a fault can be armed for a device that is away (refuse_next_registration)
    ['btn-info', 'btn-task', 'btn-tools'].forEach(function (b) { $(b).disabled = !online; });
  }

  function setStatus(id, kind, text) {
    var s = $(id);
    s.className = 'status' + (kind ? ' ' + kind : '');
    s.textContent = text;
  }

  function showJson(id, value) {
    var out = $(id);
    out.textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
    out.hidden = false;
  }

  /* ---- actions ----------------------------------------------------------------------- */

  $('btn-info').addEventListener('click', function () {
    if (selected === null) return;
    var id = selected;
    var t0 = performance.now();
    setStatus('info-status', '', 'asking\u2026');
    api('GET', '/api/device_info/' + encodeURIComponent(id)).then(function (d) {
      if (id !== selected) return;
      var ms = Math.round(performance.now() - t0);
      setStatus('info-status', 'ok', 'answered from ' + ((d && d.source) || '?') + ' in ' + ms + ' ms');
      showJson('info-out', d && d.device_info !== undefined ? d.device_info : d);
    }, function (e) {
      if (id !== selected) return;
      setStatus('info-status', 'bad', e.message);
    });
  });

  /* ---- the device's tools (list_tools, UFO's MCPToolInfo list) ---------------------------- */

  var toolsGen = 0;
  var deviceTools = [];  // MCPToolInfo objects of the selected device, from its list_tools

  function schemaParams(t) {
    var s = t && t.input_schema && typeof t.input_schema === 'object' ? t.input_schema : {};
    var props = s.properties && typeof s.properties === 'object' ? s.properties : {};
    var req = Array.isArray(s.required) ? s.required : [];
    return Object.keys(props).map(function (k) {
      var p = props[k] && typeof props[k] === 'object' ? props[k] : {};
      var type = Array.isArray(p.type) ? p.type[0] : p.type;
      return {name: k, type: typeof type === 'string' ? type : '', required: req.indexOf(k) >= 0};
    });
  }

  function renderTools(tools) {
    var body = $('tools-body');
    clear(body);
    var sel = $('task-tool');
    clear(sel);
    tools.forEach(function (t, i) {
      if (!t || typeof t !== 'object') return;
      var tr = el('tr');
      tr.appendChild(el('td', null, String(t.namespace || '')));
      var key = el('td', null, String(t.tool_key || ''));
      key.title = JSON.stringify(t.input_schema || {}, null, 2);  // the schema, as text
      tr.appendChild(key);
      tr.appendChild(el('td', null, schemaParams(t).map(function (p) {
        return p.name + (p.required ? '*' : '') + (p.type ? ': ' + p.type : '');
      }).join(', ')));
      tr.appendChild(el('td', null, clip(String(t.description || t.title || ''), 160)));
      body.appendChild(tr);
      var o = el('option', null, String(t.tool_key || t.tool_name));
      o.value = String(i);
      sel.appendChild(o);
    });
    $('tools-table').hidden = false;
    sel.hidden = $('btn-task-add').hidden = tools.length === 0;
  }

  $('btn-tools').addEventListener('click', function () {
    if (selected === null) return;
    var id = selected, gen = ++toolsGen;
    var name = 'tools-' + Date.now().toString(36) + '-' + Math.floor(Math.random() * 1e6).toString(36);
    var request = {actions: [{tool_name: 'list_tools', tool_type: 'action', parameters: {}}]};
    setStatus('tools-status', '', 'asking\u2026');
    var t0 = performance.now();
    function poll(delay) {
      window.setTimeout(function () {
        if (gen !== toolsGen || id !== selected) return;
        api('GET', '/api/task_result/' + encodeURIComponent(name)).then(function (r) {
          if (gen !== toolsGen || id !== selected) return;
          if (r && r.status === 'pending' && performance.now() - t0 < TASK_POLL_LIMIT_MS) {
            poll(Math.min(delay * 1.5, 1000));
            return;
          }
          var first = r && Array.isArray(r.result) && r.result[0] && Array.isArray(r.result[0].result)
            ? r.result[0].result[0] : null;
          if (!first || first.status !== 'success' || !Array.isArray(first.result)) {
            setStatus('tools-status', 'bad', 'list_tools: ' + ((first && first.error) ||
              (r && r.error) || (r && r.status) || 'no answer'));
            return;
          }
          deviceTools = first.result;
          setStatus('tools-status', 'ok', deviceTools.length + ' tool(s) in ' +
            Math.round(performance.now() - t0) + ' ms');
          renderTools(deviceTools);
        }, function (e) {
          if (gen === toolsGen) setStatus('tools-status', 'bad', e.message);
        });
      }, delay);
    }
    api('POST', '/api/dispatch', {client_id: id, request: request, task_name: name}).then(function () {
      poll(100);
    }, function (e) {
      if (gen === toolsGen) setStatus('tools-status', 'bad', e.message);
    });
  });

  // Adds the chosen tool to the task's actions, its required parameters filled with blanks.
  $('btn-task-add').addEventListener('click', function () {
    var t = deviceTools[Number($('task-tool').value)];
    if (!t) return;
    var req;
    try {
      req = JSON.parse($('task-json').value);
    } catch (e) {
      req = null;
    }
    if (!req || typeof req !== 'object' || !Array.isArray(req.actions)) req = {actions: []};
    var params = {};
    schemaParams(t).forEach(function (p) {
      if (!p.required) return;
      params[p.name] = p.type === 'integer' || p.type === 'number' ? 0 : p.type === 'boolean' ? false
        : p.type === 'object' ? {} : p.type === 'array' ? [] : '';
    });
    req.actions.push({tool_name: t.tool_name, tool_type: t.tool_type, parameters: params});
    $('task-json').value = JSON.stringify(req, null, 2);
  });

  var taskGen = 0;

  function resetTask() { $('task-json').value = DEFAULT_TASK; }
  resetTask();
  $('btn-task-reset').addEventListener('click', resetTask);

  $('btn-task').addEventListener('click', function () {
    if (selected === null) return;
    var request;
    try {
      request = JSON.parse($('task-json').value);
    } catch (e) {
      setStatus('task-status', 'bad', 'not JSON: ' + e.message);
      return;
    }
    if (!request || typeof request !== 'object' || Array.isArray(request) ||
        !(Array.isArray(request.actions) || Array.isArray(request.batches))) {
      setStatus('task-status', 'bad', 'expected an object with "actions" or "batches" (an array)');
      return;
    }
    var name = $('task-name').value.trim() ||
      ('dash-' + Date.now().toString(36) + '-' + Math.floor(Math.random() * 1e6).toString(36));
    var gen = ++taskGen;
    $('task-summary').hidden = true;
    $('task-raw').hidden = true;
    setStatus('task-status', '', 'dispatching ' + name + '\u2026');
    var t0 = performance.now();
    api('POST', '/api/dispatch', {client_id: selected, request: request, task_name: name}).then(function (d) {
      if (gen !== taskGen) return;
      var tn = (d && d.task_name) || name;
      setStatus('task-status', '', 'task ' + tn + ' dispatched (session ' + ((d && d.session_id) || '?') +
        '), waiting for the result\u2026');
      $('task-status').dataset.task = tn;
      pollTask(gen, tn, t0, 150, request);
    }, function (e) {
      if (gen !== taskGen) return;
      setStatus('task-status', 'bad', e.message);
    });
  });

  function pollTask(gen, name, t0, delay, request) {
    window.setTimeout(function () {
      if (gen !== taskGen) return;
      api('GET', '/api/task_result/' + encodeURIComponent(name)).then(function (r) {
        if (gen !== taskGen) return;
        var ms = Math.round(performance.now() - t0);
        if (r && r.status === 'pending') {
          if (ms > TASK_POLL_LIMIT_MS) {
            setStatus('task-status', 'bad', 'task ' + name + ' still pending after ' +
              Math.round(ms / 1000) + ' s; stopped waiting');
            return;
          }
          pollTask(gen, name, t0, Math.min(delay * 1.5, 1000), request);
          return;
        }
        var ok = r && r.status === 'completed';
        setStatus('task-status', ok ? 'ok' : 'bad', 'task ' + name + ' ' + ((r && r.status) || '?') +
          ' in ' + ms + ' ms' + (r && r.error ? ': ' + r.error : ''));
        showTaskResult(r, request);
      }, function (e) {
        if (gen !== taskGen) return;
        setStatus('task-status', 'bad', 'task ' + name + ': ' + e.message);
      });
    }, delay);
  }

  function clip(s, n) {
    return s.length > n ? s.slice(0, n) + '\u2026 (' + s.length + ' chars)' : s;
  }

  // one row per action result: [{request, result:[ActionResult...]}, ...] per executed batch
  function showTaskResult(r, request) {
    showJson('task-out', r);
    $('task-raw').hidden = false;
    $('task-raw').open = false;
    var body = $('task-summary-body');
    clear(body);
    var batches = request && Array.isArray(request.batches) ? request.batches
      : [request && Array.isArray(request.actions) ? request.actions : []];
    var list = r && Array.isArray(r.result) ? r.result : [];
    var rows = 0;
    list.forEach(function (b, i) {
      var results = b && Array.isArray(b.result) ? b.result : [];
      results.forEach(function (ar, j) {
        if (!ar || typeof ar !== 'object') return;
        var act = Array.isArray(batches[i]) ? batches[i][j] : null;
        var tr = el('tr');
        tr.appendChild(el('td', null, (batches.length > 1 ? (i + 1) + '.' : '') + (j + 1)));
        tr.appendChild(el('td', null, act && act.tool_name ? act.tool_name : '?'));
        var st = String(ar.status || '?');
        tr.appendChild(el('td', 'st-' + st.replace(/[^a-z]/gi, ''), st));
        var v = ar.error !== null && ar.error !== undefined ? ar.error : ar.result;
        tr.appendChild(el('td', null, clip(typeof v === 'string' ? v : JSON.stringify(v), 240)));
        body.appendChild(tr);
        rows++;
      });
    });
    $('task-summary').hidden = rows === 0;
    if (rows === 0) $('task-raw').open = true;
  }

  $('btn-fault').addEventListener('click', function () {
    if (selected === null) return;
    var fault = $('fault-kind').value;
    var seconds = Number($('fault-seconds').value);
    if (!isFinite(seconds) || seconds < 0) {
      setStatus('fault-status', 'bad', 'seconds must be a number \u2265 0');
      return;
    }
    setStatus('fault-status', '', 'injecting ' + fault + '\u2026');
    api('POST', '/api/faults', {client_id: selected, fault: fault, seconds: seconds}).then(function (d) {
      setStatus('fault-status', 'ok', 'injected ' + ((d && d.fault) || fault) + ' into ' +
        ((d && d.client_id) || selected) + (seconds ? ' for ' + seconds + ' s' : ''));
    }, function (e) {
      setStatus('fault-status', 'bad', e.message);
    });
  });

  /* ---- event log --------------------------------------------------------------------- */

  function pushEvent(ev) {
    ring.push(ev);
    if (ring.length > 2 * MAX_LOG) ring = ring.slice(ring.length - MAX_LOG);
    if (paused) return;
    pending.push(ev);
    if (pending.length > 2 * MAX_LOG) {
      // the page is hidden or far behind: only the newest MAX_LOG can be shown anyway
      dropped += pending.length - MAX_LOG;
      pending = pending.slice(pending.length - MAX_LOG);
    }
    scheduleRender();
  }

  function visible(ev) {
    if (ev.kind === 'heartbeat' && !$('f-hb').checked) return false;
    if ($('f-sel').checked && selected !== null && ev.client_id !== selected) return false;
    var q = $('f-text').value.trim().toLowerCase();
    if (q) {
      var hay = ((ev.kind || '') + ' ' + (ev.client_id || '') + ' ' + (ev.text || '')).toLowerCase();
      if (hay.indexOf(q) < 0) return false;
    }
    return true;
  }

  function extraText(ev) {
    // the structured detail, added only when the server's line does not already say it
    var text = typeof ev.text === 'string' ? ev.text : '';
    function says(v) { return text.indexOf(String(v)) >= 0; }
    if (ev.kind === 'disconnected' && typeof ev.code === 'number' && !says(ev.code)) {
      return 'close ' + ev.code + (ev.reason ? ' (' + ev.reason + ')' : '');
    }
    if (ev.kind === 'task_end' && ev.error && !says(ev.error)) return String(ev.error);
    if (ev.kind === 'fault' && ev.fault && !says(ev.fault)) {
      return ev.fault + (ev.seconds ? ' for ' + ev.seconds + ' s' : '');
    }
    return '';
  }

  function logRow(ev) {
    var row = el('div', 'lrow ev-' + String(ev.kind || 'x').replace(/[^a-z_]/gi, '') +
      (ev.replayed ? ' replayed' : ''));
    var c = el('span', 't', clockPart(ev.ts));
    c.title = typeof ev.ts === 'string' ? ev.ts : '';
    row.appendChild(c);
    row.appendChild(el('span', 'seq', ev.seq !== undefined && ev.seq !== null ? ev.seq : ''));
    c = el('span');
    var kind = String(ev.kind || '?');
    var badge = el('span', 'k k-' + kind.replace(/[^a-z_]/gi, ''), kind);
    if (ev.kind === 'task_end' && ev.status === 'failed') badge.classList.add('failed');
    c.appendChild(badge);
    row.appendChild(c);
    c = el('span', 'c', ev.client_id || '');
    c.title = ev.client_id || '';
    row.appendChild(c);
    var extra = extraText(ev);
    c = el('span', 'x', (typeof ev.text === 'string' ? ev.text : '') + (extra ? ' \u2014 ' + extra : ''));
    if (!ev.local) c.title = JSON.stringify(ev);
    row.appendChild(c);
    return row;
  }

  function flushLog() {
    if (paused || pending.length === 0) return;
    var batch = pending;
    pending = [];
    drawRows(batch);
  }

  function drawRows(batch) {
    var body = $('log-body');
    if (batch.length > MAX_LOG) batch = batch.slice(batch.length - MAX_LOG);
    var frag = document.createDocumentFragment();
    for (var i = batch.length - 1; i >= 0; i--) { // newest first
      if (visible(batch[i])) frag.appendChild(logRow(batch[i]));
    }
    body.insertBefore(frag, body.firstChild);
    while (body.childElementCount > MAX_LOG) body.removeChild(body.lastChild);
    $('srv-events').textContent = String(eventsSeen);
    $('log-note').textContent = dropped ? dropped + ' events not drawn during bursts' : '';
  }

  function rerenderLog() {
    clear($('log-body'));
    if (paused) {
      // a filter changed while paused: redraw what was there at the pause, nothing newer
      var i = pauseMark ? ring.lastIndexOf(pauseMark) : -1;
      drawRows(i >= 0 ? ring.slice(Math.max(0, i + 1 - MAX_LOG), i + 1) : []);
      return;
    }
    pending = ring.slice(Math.max(0, ring.length - MAX_LOG));
    scheduleRender();
  }

  function localNote(text, kind) {
    pushEvent({local: true, kind: kind || 'viewer', ts: new Date().toISOString(), seq: null,
      client_id: null, text: text});
  }

  ['f-hb', 'f-sel'].forEach(function (id) { $(id).addEventListener('change', rerenderLog); });
  var filterTimer = 0;
  $('f-text').addEventListener('input', function () {
    window.clearTimeout(filterTimer);
    filterTimer = window.setTimeout(rerenderLog, 150);
  });
  $('btn-pause').addEventListener('click', function () {
    if (!paused && pending.length) { // what arrived before the pause is shown first
      var before = pending;
      pending = [];
      drawRows(before);
    }
    paused = !paused;
    pauseMark = ring.length ? ring[ring.length - 1] : null;
    $('btn-pause').textContent = paused ? 'Resume' : 'Pause';
    if (!paused) rerenderLog();
  });
  $('btn-clear').addEventListener('click', function () {
    ring = [];
    pending = [];
    dropped = 0;
    clear($('log-body'));
    $('log-note').textContent = '';
  });

  /* ---- live events ------------------------------------------------------------------- */

  var ws = null;
  var backoff = BACKOFF_MIN_MS;
  var reconnectTimer = 0;
  var refreshTimer = 0;
  var refreshSoon = 0;
  var refreshing = false;

  var lastRefresh = 0;

  function refreshDetails() {
    if (refreshing) return;
    refreshing = true;
    lastRefresh = performance.now();
    api('GET', '/api/clients/details').then(function (d) {
      refreshing = false;
      if (!d || !Array.isArray(d.clients)) return;
      clients.clear();
      d.clients.forEach(setClient);
      scheduleRender();
    }, function () { refreshing = false; });
  }

  // after events that change counts: soon, but at most every 2 s (a big fleet's details are
  // hundreds of KiB)
  function refreshLater() {
    if (refreshSoon) return;
    var wait = Math.max(700, lastRefresh + 2000 - performance.now());
    refreshSoon = window.setTimeout(function () { refreshSoon = 0; refreshDetails(); }, wait);
  }

  function onEvent(ev) {
    eventsSeen++;
    if (typeof ev.seq === 'number') {
      if (lastSeq !== null && ev.seq > lastSeq + 1) {
        localNote((ev.seq - lastSeq - 1) + ' events were not delivered to this viewer');
      }
      lastSeq = ev.seq;
    }
    if (snapSeq !== null && typeof ev.seq === 'number' && ev.seq <= snapSeq) {
      ev.replayed = true; // history from before the snapshot: the log shows it, the state has it
      pushEvent(ev);
      return;
    }
    var c = typeof ev.client_id === 'string' ? clients.get(ev.client_id) : undefined;
    switch (ev.kind) {
    case 'registered':
      if (ev.client && typeof ev.client === 'object') setClient(ev.client);
      refreshLater();
      break;
    case 'disconnected':
      if (c) clients.delete(ev.client_id);
      refreshLater();
      break;
    case 'heartbeat':
      if (c) c.last_heartbeat = ev.ts;
      break;
    case 'command':
      if (c) c.commands_in_flight = (c.commands_in_flight || 0) + 1;
      refreshLater();
      break;
    case 'command_results':
      if (c && c.commands_in_flight) c.commands_in_flight -= 1;
      refreshLater();
      break;
    case 'fault':
      refreshLater(); // the client's active faults
      break;
    default:
      break;
    }
    pushEvent(ev);
  }

  function onSnapshot(s) {
    var srv = s.server || {};
    $('srv-version').textContent = srv.version || '?';
    $('srv-devinfo').textContent = srv.device_info || '?';
    $('srv-started').textContent = srv.started ? srv.started.replace('T', ' ').replace(/\.\d+/, '') : '?';
    clients.clear();
    (Array.isArray(s.clients) ? s.clients : []).forEach(setClient);
    lastSeq = null;
    snapSeq = typeof s.seq === 'number' ? s.seq : null;
    if (snapSeq === null) refreshLater(); // replayed events will be re-applied: reconcile soon
    scheduleRender();
  }

  function onMessage(msg) {
    var m;
    try { m = JSON.parse(msg.data); } catch (e) { return; }
    if (!m || typeof m !== 'object') return;
    if (m.type === 'snapshot') onSnapshot(m);
    else if (m.type === 'event') onEvent(m);
  }

  function connect() {
    window.clearTimeout(reconnectTimer);
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    var url = proto + '//' + window.location.host + '/events';
    if (token) url += '?token=' + encodeURIComponent(token);
    var opened = false;
    var sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      setConn('bad', 'cannot open the event stream: ' + e.message);
      return;
    }
    ws = sock;
    setConn('down', 'connecting\u2026');
    var steady = 0;
    sock.onopen = function () {
      opened = true;
      setConn('up', 'live');
      // the backoff starts over only once a link has held for a while: a viewer dropped again
      // and again (1013 on a busy server) slows down instead of hammering it
      steady = window.setTimeout(function () { backoff = BACKOFF_MIN_MS; }, 10000);
    };
    sock.onmessage = onMessage;
    sock.onclose = function (ev) {
      window.clearTimeout(steady);
      if (ws !== sock) return;
      ws = null;
      var why;
      if (ev.code === 1013) why = 'the server dropped this viewer: it fell behind (1013)';
      else if (ev.code === 1006) why = opened ? 'connection lost' : 'cannot connect';
      else why = 'closed ' + ev.code + (ev.reason ? ' (' + ev.reason + ')' : '');
      if (opened) localNote('event stream ' + why + '; reconnecting', 'viewer');
      var wait = Math.round(backoff * (0.5 + Math.random() * 0.5));
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      setConn('down', why + ' \u2014 retrying in ' + (wait / 1000).toFixed(1) + ' s');
      if (!opened) {
        // a refused upgrade looks like 1006 to a page: ask the API whether the key is the reason
        api('GET', '/api/health').then(function () {
          reconnectTimer = window.setTimeout(connect, wait);
        }, function (e) {
          if (e.status !== 401) reconnectTimer = window.setTimeout(connect, wait);
        });
      } else {
        reconnectTimer = window.setTimeout(connect, wait);
      }
    };
  }

  function start() {
    if (ws) {
      var old = ws;
      ws = null;
      old.close(1000, 'key changed');
    }
    window.clearTimeout(reconnectTimer);
    setConn('down', 'connecting\u2026');
    api('GET', '/api/health').then(function () {
      connect();
      refreshDetails();
      window.clearInterval(refreshTimer);
      refreshTimer = window.setInterval(function () {
        if (ws && ws.readyState === WebSocket.OPEN && !document.hidden) refreshDetails();
      }, REFRESH_MS);
    }, function (e) {
      if (e.status === 401) return; // the key box is up
      setConn('bad', e.message + ' \u2014 retrying');
      reconnectTimer = window.setTimeout(start, backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    });
  }

  // ages ("12 s ago") move on even without events
  window.setInterval(function () {
    if (!document.hidden) tickAges();
  }, 1000);

  $('ws-url').textContent = (window.location.protocol === 'https:' ? 'wss://' : 'ws://') +
    window.location.host + '/ws';
  renderDevice();
  start();
})();
