// The workerscope page: polls api/metrics every 2 s and renders it.
//
// Every value that comes from the report (session keys, states, error
// texts — a crashed worker's stderr is worker-controlled) reaches the DOM
// through textContent, attributes of elements this script creates, or
// number formatting. Nothing is ever parsed as HTML.
'use strict';
(function () {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 10000;
  const HISTORY_MS = 5 * 60 * 1000;
  const MIN_SPAN_MS = 60 * 1000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const DASH = '—';
  // Relative, so the page also works behind a reverse proxy under a prefix.
  // Built from location.origin, not the page's URL: a page opened as
  // http://user:token@host/metrics would otherwise make every request
  // carry credentials in its URL, which fetch refuses.
  const API = new URL('api/metrics', location.origin + location.pathname).toString();
  const STATES = new Set(['starting', 'idle', 'running', 'stopping', 'exited']);
  const KNOWN_PROCESS = new Set(['goroutines', 'heap_alloc_bytes', 'heap_inuse_bytes', 'heap_sys_bytes',
    'gc_count', 'gc_pause_last_seconds', 'open_fds', 'sse_clients', 'uptime_seconds', 'version', 'go_version']);
  const TEXT_COLUMNS = new Set(['key', 'id', 'state', 'error']);

  const $ = (id) => document.getElementById(id);
  const rowsEl = $('worker-rows');
  const bannerEl = $('banner');
  const statusEl = $('status');
  const statusText = $('status-text');

  // ---- values -------------------------------------------------------------

  // num returns v if it is a finite number, else null.
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  // str returns v as a string, or null for null/undefined.
  const str = (v) => (v === null || v === undefined ? null : String(v));

  function fmtBytes(v) {
    v = num(v);
    if (v === null) return DASH;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    const digits = i === 0 || Math.abs(v) >= 10 ? 0 : 1;
    return v.toFixed(digits) + ' ' + units[i];
  }

  function fmtDur(v) {
    v = num(v);
    if (v === null) return DASH;
    if (v < 0) v = 0;
    if (v < 10) return v.toFixed(1) + ' s';
    if (v < 60) return Math.floor(v) + ' s';
    const s = Math.floor(v);
    const pad = (n) => String(n).padStart(2, '0');
    if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s / 60) % 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + pad(Math.floor(s / 3600) % 24) + 'h';
  }

  function fmtSmallDur(v) {
    v = num(v);
    if (v === null) return DASH;
    if (v < 1e-3) return Math.round(v * 1e6) + ' µs';
    if (v < 1) return (v * 1e3).toFixed(v < 0.01 ? 1 : 0) + ' ms';
    return v.toFixed(2) + ' s';
  }

  function fmtPct(v) {
    v = num(v);
    if (v === null) return DASH;
    return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + ' %';
  }

  const intFmt = new Intl.NumberFormat('en-US');
  function fmtInt(v) {
    v = num(v);
    return v === null ? DASH : intFmt.format(v);
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, '0');
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  // ---- DOM helpers ----------------------------------------------------------

  // el creates an element with a class and text (always textContent).
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k of Object.keys(attrs)) e.setAttribute(k, attrs[k]);
    return e;
  }

  // ---- banner and status ----------------------------------------------------

  let lastOK = 0;
  let polls = 0;

  function setBanner(state, text) {
    if (!state) {
      bannerEl.hidden = true;
      bannerEl.removeAttribute('data-state');
      bannerEl.textContent = '';
      document.body.classList.remove('stale');
      return;
    }
    bannerEl.dataset.state = state;
    bannerEl.textContent = text;
    bannerEl.hidden = false;
    document.body.classList.add('stale');
  }

  function setStatus(state) {
    statusEl.dataset.state = state;
    updateStatusText();
  }

  function updateStatusText() {
    const state = statusEl.dataset.state;
    if (state === 'loading') {
      statusText.textContent = 'connecting…';
      return;
    }
    const ago = lastOK ? Math.max(0, Math.round((Date.now() - lastOK) / 1000)) + ' s ago' : 'never';
    if (state === 'live') statusText.textContent = 'live · updated ' + ago;
    else if (state === 'auth') statusText.textContent = 'signed out · last data ' + ago;
    else statusText.textContent = 'retrying · last data ' + ago;
  }

  // ---- health cards -----------------------------------------------------------

  const cards = new Map();
  function card(id, label) {
    let c = cards.get(id);
    if (!c) {
      const root = el('div', 'card');
      root.dataset.card = id;
      const l = el('div', 'label', label);
      const v = el('div', 'value', DASH);
      const s = el('div', 'sub', '');
      root.append(l, v, s);
      $('health').append(root);
      c = { root, v, s };
      cards.set(id, c);
    }
    return c;
  }
  function setCard(id, label, value, sub, alert) {
    const c = card(id, label);
    c.v.textContent = value;
    c.v.title = value;
    c.s.textContent = sub || '';
    c.s.title = sub || '';
    c.root.classList.toggle('alert', !!alert);
  }

  // workersLimitHits sums the limit events of the live workers.
  function workersLimitHits(r) {
    let n = 0;
    for (const w of Array.isArray(r.workers) ? r.workers : []) {
      const h = w && typeof w.limit_hits === 'object' && w.limit_hits ? w.limit_hits : {};
      for (const k of Object.keys(h)) n += num(h[k]) || 0;
    }
    return n;
  }

  // ofLimit is " · 37 % of 512MiB" when a limit is set, else "".
  function ofLimit(used, max, fmt) {
    const u = num(used), m = num(max);
    if (!(m > 0) || u === null) return '';
    return ' · ' + Math.round((u / m) * 100) + ' % of ' + fmt(m);
  }

  function renderHealth(r) {
    const p = r.process && typeof r.process === 'object' ? r.process : {};
    const t = r.totals && typeof r.totals === 'object' ? r.totals : {};
    const zombies = num(t.zombies) || 0;
    const defunct = num(t.defunct) || 0;
    const extras = [];
    if (zombies) extras.push(zombies + (zombies === 1 ? ' zombie' : ' zombies'));
    if (defunct) extras.push(defunct + ' defunct');
    setCard('workers', 'Workers', fmtInt(t.workers), extras.join(' · ') || 'no zombies', zombies > 0 || defunct > 0);
    const ncpu = num(r.num_cpu);
    setCard('cpu', 'Workers CPU', fmtPct(t.cpu_percent), ncpu ? 'of ' + ncpu * 100 + ' % (' + ncpu + ' CPUs)' : '');
    setCard('rss', 'Workers RSS', fmtBytes(t.rss_bytes), 'VMS ' + fmtBytes(t.vms_bytes));
    setCard('tree', 'Threads', fmtInt(t.threads), 'FDs ' + fmtInt(t.fds) + ' · procs ' + fmtInt(t.processes));
    setCard('goroutines', 'Goroutines', fmtInt(p.goroutines), 'supervisor');
    setCard('heap', 'Heap in use', fmtBytes(p.heap_inuse_bytes),
      'alloc ' + fmtBytes(p.heap_alloc_bytes) + ' · sys ' + fmtBytes(p.heap_sys_bytes));
    setCard('gc', 'GC cycles', fmtInt(p.gc_count), 'last pause ' + fmtSmallDur(p.gc_pause_last_seconds));
    setCard('fds', 'Open FDs', fmtInt(p.open_fds), 'SSE clients ' + fmtInt(p.sse_clients));
    setCard('uptime', 'Uptime', fmtDur(p.uptime_seconds),
      [str(p.version), str(p.go_version)].filter(Boolean).join(' · '));
    const sampled = Date.parse(str(r.sampled_at) || '');
    const errs = num(r.sampler_errors) || 0;
    setCard('sample', 'Sampled at', Number.isFinite(sampled) ? fmtTime(sampled) : DASH,
      fmtDur(r.window_seconds) + ' window · ' + fmtSmallDur(r.sample_duration_seconds));
    setCard('sampler-errors', 'Sampler errors', fmtInt(errs), 'since start', errs > 0);
    const lim = r.limits && typeof r.limits === 'object' ? r.limits : null;
    if (lim) {
      const parts = [];
      if (num(lim.memory_max) > 0) parts.push('memory ' + fmtBytes(lim.memory_max));
      if (num(lim.pids_max) > 0) parts.push('pids ' + fmtInt(lim.pids_max));
      if (num(lim.cpu_max) > 0) parts.push('cpu ' + lim.cpu_max + ' cores');
      const hits = workersLimitHits(r);
      setCard('limits', 'Worker limits', str(lim.tier) || DASH,
        (parts.join(' · ') || 'none set') + (hits ? ' · ' + hits + ' hits' : ''), hits > 0);
      card('limits', 'Worker limits').root.title = str(lim.reason) || '';
    }
    // Gauges an embedding application registered: any other numeric field.
    for (const k of Object.keys(p)) {
      if (KNOWN_PROCESS.has(k) || num(p[k]) === null) continue;
      setCard('gauge:' + k, k.replace(/_/g, ' '), fmtInt(p[k]), 'application gauge');
    }
    const v = str(p.version);
    $('version').textContent = v ? v : '';

    const repErr = str(r.error);
    const notice = $('report-error');
    notice.hidden = !repErr;
    notice.textContent = repErr ? 'Sampler: ' + repErr : '';
  }

  // ---- history and sparklines ---------------------------------------------------

  // history: worker id → {t: [ms], cpu: [number|null], rss: [number|null]}
  const history = new Map();

  function record(workers, at) {
    const seen = new Set();
    for (const w of workers) {
      const id = str(w.id);
      if (id === null) continue;
      seen.add(id);
      let h = history.get(id);
      if (!h) { h = { t: [], cpu: [], rss: [] }; history.set(id, h); }
      if (h.t.length && h.t[h.t.length - 1] >= at) continue; // same sample again
      h.t.push(at);
      h.cpu.push(num(w.cpu_percent));
      h.rss.push(num(w.rss_bytes));
      while (h.t.length && h.t[0] < at - HISTORY_MS) { h.t.shift(); h.cpu.shift(); h.rss.shift(); }
    }
    for (const id of history.keys()) if (!seen.has(id)) history.delete(id);
  }

  const SW = 48, SH = 18;
  function sparkline(kind, h, now, floor, fmt) {
    const vals = h ? h[kind] : [];
    let peak = null;
    for (const v of vals) if (v !== null && (peak === null || v > peak)) peak = v;
    const max = Math.max(floor, peak === null ? 0 : peak);
    const s = svg('svg', { class: 'spark ' + kind, viewBox: '0 0 ' + SW + ' ' + SH, preserveAspectRatio: 'none', role: 'img' });
    s.append(svg('line', { class: 'grid', x1: 0, y1: SH - 0.5, x2: SW, y2: SH - 0.5 }));
    let line = '', area = '';
    let segStart = null, lastX = 0;
    // The x axis spans the history kept, at least a minute: a new worker's
    // line grows from the right instead of being a dot in a 5-minute frame.
    const span = h && h.t.length ? Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, now - h.t[0])) : HISTORY_MS;
    const x = (t) => SW - ((now - t) / span) * SW;
    const y = (v) => SH - 1 - (v / max) * (SH - 3);
    if (h) {
      for (let i = 0; i < h.t.length; i++) {
        const v = vals[i];
        if (v === null) {
          if (segStart !== null) area += 'L' + lastX.toFixed(1) + ' ' + SH + 'L' + segStart.toFixed(1) + ' ' + SH + 'Z';
          segStart = null;
          continue;
        }
        const px = x(h.t[i]), py = y(v);
        if (segStart === null) {
          segStart = px;
          line += 'M' + px.toFixed(1) + ' ' + py.toFixed(1);
          area += 'M' + px.toFixed(1) + ' ' + SH + 'L' + px.toFixed(1) + ' ' + py.toFixed(1);
        } else {
          line += 'L' + px.toFixed(1) + ' ' + py.toFixed(1);
          area += 'L' + px.toFixed(1) + ' ' + py.toFixed(1);
        }
        lastX = px;
      }
      if (segStart !== null) area += 'L' + lastX.toFixed(1) + ' ' + SH + 'L' + segStart.toFixed(1) + ' ' + SH + 'Z';
    }
    if (area) s.append(svg('path', { class: 'area', d: area }));
    if (line) s.append(svg('path', { class: 'line', d: line }));
    const title = document.createElementNS(SVG_NS, 'title');
    const n = vals.filter((v) => v !== null).length;
    const covered = h && h.t.length ? (now - h.t[0]) / 1000 : 0;
    title.textContent = (kind === 'cpu' ? 'CPU' : 'RSS') + ' over the last ' + fmtDur(covered) + ': peak ' + fmt(peak) +
      ' (' + n + (n === 1 ? ' sample)' : ' samples)');
    s.append(title);
    s.setAttribute('aria-label', title.textContent);
    return s;
  }

  // ---- sorting ------------------------------------------------------------

  const SORT_KEY = 'workerscope.sort';
  let sort = { col: 'cpu_percent', dir: 'desc' };
  try {
    const saved = JSON.parse(sessionStorage.getItem(SORT_KEY) || 'null');
    if (saved && typeof saved.col === 'string' && document.querySelector('th[data-sort="' + CSS.escape(saved.col) + '"]') &&
        (saved.dir === 'asc' || saved.dir === 'desc')) sort = { col: saved.col, dir: saved.dir };
  } catch (e) { /* storage unavailable: keep the default */ }

  function sortValue(w, col) {
    if (TEXT_COLUMNS.has(col)) return str(w[col]);
    return num(w[col]);
  }

  function compare(a, b) {
    const va = sortValue(a, sort.col), vb = sortValue(b, sort.col);
    // Missing values go last in either direction.
    if (va === null || vb === null) {
      if (va !== vb) return va === null ? 1 : -1;
    } else if (va !== vb) {
      const c = typeof va === 'string' ? va.localeCompare(vb) : va - vb;
      if (c) return sort.dir === 'asc' ? c : -c;
    }
    return (str(a.key) || '').localeCompare(str(b.key) || '') || (str(a.id) || '').localeCompare(str(b.id) || '');
  }

  function paintSortHeaders() {
    for (const th of document.querySelectorAll('th[data-sort]')) {
      if (th.dataset.sort === sort.col) th.setAttribute('aria-sort', sort.dir === 'asc' ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
  }

  for (const th of document.querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const col = th.dataset.sort;
      if (sort.col === col) sort.dir = sort.dir === 'asc' ? 'desc' : 'asc';
      else sort = { col, dir: TEXT_COLUMNS.has(col) ? 'asc' : 'desc' };
      try { sessionStorage.setItem(SORT_KEY, JSON.stringify(sort)); } catch (e) { /* ignore */ }
      paintSortHeaders();
      if (lastReport) renderWorkers(lastReport);
    });
  }
  paintSortHeaders();

  // ---- worker table ---------------------------------------------------------

  let lastReport = null;

  const cell = (cls, text) => el('td', cls, text);

  function metricCell(text, spark) {
    const td = el('td', 'num');
    const wrap = el('span', 'metric');
    wrap.append(spark, el('span', 'v', text));
    td.append(wrap);
    return td;
  }

  // limitCell marks a cell whose usage is at 80 % of its limit or more.
  function limitCell(td, used, max) {
    const u = num(used), m = num(max);
    if (m > 0 && u !== null && u >= 0.8 * m) {
      td.classList.add('near-limit');
      td.title = 'at ' + Math.round((u / m) * 100) + ' % of the limit';
    }
    return td;
  }

  // idleCell shows idle time for idle workers only: a busy worker's idle
  // time keeps growing during a long command (it counts from the last
  // command), which reads as a stuck worker. The JSON keeps the raw value.
  function idleCell(w) {
    const state = str(w.state);
    if (state === 'idle' || state === 'starting') return cell('num', fmtDur(w.idle_seconds));
    const td = cell('num', DASH);
    td.title = state + ' · ' + fmtDur(w.idle_seconds) + ' since the last command';
    return td;
  }

  // lastCommands lists the worker's last few commands with their cost
  // (newest first): type, duration, CPU of the whole tree, error type; the
  // trace id in the tooltip, to look the span up in the tracing backend.
  function lastCommands(w) {
    const cs = Array.isArray(w.last_commands) ? w.last_commands.filter((c) => c && typeof c === 'object') : [];
    if (!cs.length) return null;
    const box = el('div', 'last');
    box.dataset.count = String(cs.length);
    for (const c of cs.slice().reverse()) {
      const cpu = num(c.cpu_seconds);
      const errType = str(c.error_type);
      const line = el('div', 'cmd' + (errType ? ' cmd-err' : ''),
        (str(c.type) || DASH) + ' ' + fmtSmallDur(c.duration_seconds) +
        (cpu === null ? '' : ' · cpu ' + fmtSmallDur(cpu)) + (errType ? ' · ' + errType : ''));
      const trace = str(c.trace_id);
      if (trace) line.title = 'trace ' + trace;
      box.append(line);
    }
    return box;
  }

  // agentBox shows the session's model usage and spend and the worker's
  // last tool calls with the CPU of the whole tree during each (newest
  // first); a session past its budget is marked.
  function agentBox(w) {
    const a = w.agent;
    if (!a || typeof a !== 'object') return null;
    const box = el('div', 'last agent');
    const tokens = num(a.total_tokens) || 0;
    const cost = num(a.cost_usd) || 0;
    const over = str(a.over_budget);
    const head = el('div', 'cmd' + (over ? ' cmd-err' : ''),
      'agent ' + fmtInt(tokens) + ' tokens · $' + cost.toFixed(4) + ' · ' + fmtInt(a.model_calls) + ' calls' +
      (over ? ' · over ' + over + ' budget' : ''));
    head.title = 'input ' + fmtInt(a.input_tokens) + ', output ' + fmtInt(a.output_tokens) + ', cache read ' +
      fmtInt(a.cache_read_tokens) + ', cache write ' + fmtInt(a.cache_write_tokens) + ' (the session, across its workers)';
    box.append(head);
    const tools = Array.isArray(a.last_tools) ? a.last_tools.filter((t) => t && typeof t === 'object') : [];
    for (const t of tools.slice().reverse()) {
      const cpu = num(t.cpu_seconds);
      box.append(el('div', 'cmd' + (t.error === true ? ' cmd-err' : ''),
        'tool ' + (str(t.name) || DASH) + ' ' + fmtSmallDur(t.duration_seconds) + (cpu === null ? '' : ' · cpu ' + fmtSmallDur(cpu))));
    }
    return box;
  }

  function renderWorkers(r) {
    const workers = Array.isArray(r.workers) ? r.workers.filter((w) => w && typeof w === 'object') : [];
    const now = Date.parse(str(r.sampled_at) || '') || Date.now();
    const frag = document.createDocumentFragment();
    const sorted = workers.slice().sort(compare);
    for (const w of sorted) {
      const tr = document.createElement('tr');
      const id = str(w.id) || '';
      const zombie = w.zombie === true;
      const defunct = num(w.defunct) || 0;
      tr.dataset.workerId = id;
      tr.dataset.key = str(w.key) || '';
      tr.dataset.state = str(w.state) || '';
      tr.dataset.zombie = zombie ? 'true' : 'false';
      tr.dataset.defunct = String(defunct);
      tr.dataset.cpu = num(w.cpu_percent) === null ? '' : String(w.cpu_percent);
      tr.dataset.rss = num(w.rss_bytes) === null ? '' : String(w.rss_bytes);
      if (zombie) tr.classList.add('zombie');
      if (defunct > 0) tr.classList.add('defunct');

      const who = el('td', 'who');
      const keyText = str(w.key);
      const k = el('div', 'k', keyText || DASH);
      k.title = keyText || '';
      who.append(k, el('div', 'wid', id || DASH));
      const last = lastCommands(w);
      if (last) who.append(last);
      const agent = agentBox(w);
      if (agent) who.append(agent);

      const stateCell = el('td');
      const state = str(w.state);
      stateCell.append(el('span', 'state ' + (STATES.has(state) ? 'state-' + state : 'state-other'), state || DASH));
      if (zombie) {
        const b = el('span', 'badge badge-zombie', 'zombie');
        b.title = 'idle past the reap TTL and still alive';
        stateCell.append(b);
      }

      const defunctCell = el('td', 'num', fmtInt(w.defunct));
      if (defunct > 0) {
        defunctCell.textContent = '';
        defunctCell.append(el('span', 'badge badge-defunct', defunct + ' defunct'));
      }

      const h = history.get(id);
      const err = str(w.error);
      const errCell = el('td', 'err');
      if (err) {
        const msg = el('div', 'msg', err);
        msg.title = err;
        errCell.append(msg);
      }

      tr.append(
        who,
        cell('num mono', num(w.pid) === null ? DASH : String(w.pid)),
        stateCell,
        metricCell(fmtPct(w.cpu_percent), sparkline('cpu', h, now, 5, fmtPct)),
        limitCell(metricCell(fmtBytes(w.rss_bytes) + ofLimit(w.rss_bytes, w.memory_max, fmtBytes), sparkline('rss', h, now, 1 << 20, fmtBytes)), w.rss_bytes, w.memory_max),
        cell('num', fmtBytes(w.vms_bytes)),
        limitCell(cell('num', fmtInt(w.threads) + ofLimit(w.threads, w.pids_max, fmtInt)), w.threads, w.pids_max),
        cell('num', fmtInt(w.fds)),
        cell('num', fmtInt(w.processes)),
        defunctCell,
        cell('num', fmtDur(w.uptime_seconds)),
        idleCell(w),
        cell('num', fmtInt(w.requests)),
        cell('num', fmtInt(w.restarts)),
        errCell,
      );
      frag.append(tr);
    }
    if (!sorted.length) {
      const tr = el('tr', 'empty');
      const td = el('td', '', 'No workers. Send a command to POST /api/sessions/{key}/rpc to start one.');
      td.colSpan = 15;
      tr.append(td);
      frag.append(tr);
    }
    rowsEl.replaceChildren(frag);

    const zombies = sorted.filter((w) => w.zombie === true).length;
    $('worker-summary').textContent = sorted.length + (sorted.length === 1 ? ' worker' : ' workers') +
      (zombies ? ' · ' + zombies + (zombies === 1 ? ' zombie' : ' zombies') : '');
  }

  // ---- polling --------------------------------------------------------------

  function render(r) {
    if (!r || typeof r !== 'object') throw new Error('unexpected response');
    const at = Date.parse(str(r.sampled_at) || '');
    record(Array.isArray(r.workers) ? r.workers.filter((w) => w && typeof w === 'object') : [], Number.isFinite(at) ? at : Date.now());
    lastReport = r;
    renderHealth(r);
    renderWorkers(r);
  }

  async function poll() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(API, {
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'application/json' },
        signal: ctrl.signal,
      });
      if (res.status === 401) {
        setBanner('auth', 'Authentication required — reload to sign in.');
        setStatus('auth');
      } else if (!res.ok) {
        setBanner('error', 'Polling failed, retrying every 2 s (HTTP ' + res.status + ').');
        setStatus('error');
      } else {
        render(await res.json());
        lastOK = Date.now();
        setBanner(null);
        setStatus('live');
      }
    } catch (e) {
      const why = e && e.name === 'AbortError' ? 'timed out' : 'server unreachable';
      setBanner('error', 'Polling failed, retrying every 2 s (' + why + ').');
      setStatus('error');
    } finally {
      clearTimeout(timer);
      polls++;
      document.body.dataset.polls = String(polls);
      setTimeout(poll, POLL_MS);
    }
  }

  setInterval(updateStatusText, 1000);
  poll();
})();
