// The workerscope page: polls api/metrics every 2 s and renders it.
//
// Every value that comes from the report (session keys, states, error
// texts, command types, a worker's stderr — all worker-controlled) reaches
// the DOM through textContent, attributes of elements this script creates,
// or number formatting. Nothing is ever parsed as HTML.
//
// At fleet size (thousands of workers) the table is a virtual window: the
// rows in view (and a few more) are the only rows in the DOM, between two
// spacer rows that stand for the others; a poll updates those rows in
// place, writing only what changed. The view (filter, chips, sort, the
// open worker) lives in the URL's fragment.
'use strict';
(function () {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 10000;
  const HISTORY_MS = 5 * 60 * 1000;
  const MIN_SPAN_MS = 60 * 1000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const DASH = '—';
  const COLS = 15;
  const OVERSCAN = 8; // rows rendered above and below the visible ones
  const MAX_STDERR = 64 * 1024; // characters shown of a stderr tail (the server bounds it too)
  // The worker fields a poll needs (the detail view fetches the whole
  // record of one worker).
  const POLL_FIELDS = ['id', 'key', 'pid', 'state', 'cpu_percent', 'rss_bytes', 'vms_bytes', 'threads', 'fds',
    'processes', 'defunct', 'uptime_seconds', 'idle_seconds', 'zombie', 'requests', 'restarts', 'memory_max',
    'pids_max', 'limit_hits', 'error'];
  // Relative, so the page also works behind a reverse proxy under a prefix.
  // Built from location.origin, not the page's URL: a page opened as
  // http://user:token@host/metrics would otherwise make every request
  // carry credentials in its URL, which fetch refuses.
  const BASE = location.origin + location.pathname;
  const API = (() => {
    const u = new URL('api/metrics', BASE);
    u.searchParams.set('fields', POLL_FIELDS.join(','));
    return u.toString();
  })();
  function workerAPI(id) {
    const u = new URL('api/metrics', BASE);
    u.searchParams.set('worker', id);
    return u.toString();
  }
  const STATES = new Set(['starting', 'idle', 'running', 'stopping', 'exited']);
  const KNOWN_PROCESS = new Set(['goroutines', 'heap_alloc_bytes', 'heap_inuse_bytes', 'heap_sys_bytes',
    'gc_count', 'gc_pause_last_seconds', 'open_fds', 'sse_clients', 'uptime_seconds', 'version', 'go_version']);
  const TEXT_COLUMNS = new Set(['key', 'id', 'state', 'error']);
  const CHIPS = ['zombie', 'limit', 'crashed', 'busy'];

  const $ = (id) => document.getElementById(id);
  const rowsEl = $('worker-rows');
  const scroller = $('table-scroll');
  const bannerEl = $('banner');
  const statusEl = $('status');
  const statusText = $('status-text');
  const filterEl = $('filter');

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

  // setText writes a node's text only when it changed (a poll rewrites
  // nothing that stayed the same).
  function setText(node, text) {
    if (node.__text !== text) {
      node.__text = text;
      node.textContent = text;
    }
  }
  function setTitle(node, text) {
    if (node.__title !== text) {
      node.__title = text;
      node.title = text;
    }
  }
  function setClass(node, cls) {
    if (node.__cls !== cls) {
      node.__cls = cls;
      node.className = cls;
    }
  }
  function setData(node, k, v) {
    if (node.dataset[k] !== v) node.dataset[k] = v;
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

  // makeSpark builds a sparkline (grid line, area, line, title) that
  // drawSpark then updates in place.
  function makeSpark(kind, width, height) {
    const s = svg('svg', { class: 'spark ' + kind, viewBox: '0 0 ' + width + ' ' + height, preserveAspectRatio: 'none', role: 'img' });
    s.append(svg('line', { class: 'grid', x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
    const area = svg('path', { class: 'area', d: '' });
    const line = svg('path', { class: 'line', d: '' });
    const title = document.createElementNS(SVG_NS, 'title');
    s.append(area, line, title);
    return { s, area, line, title, kind, width, height };
  }

  function setPath(p, d) {
    if (p.__d !== d) {
      p.__d = d;
      p.setAttribute('d', d);
    }
  }

  function drawSpark(sp, h, now, floor, fmt) {
    const SW = sp.width, SH = sp.height;
    const vals = h ? h[sp.kind] : [];
    let peak = null;
    for (const v of vals) if (v !== null && (peak === null || v > peak)) peak = v;
    const max = Math.max(floor, peak === null ? 0 : peak);
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
        const px = x(h.t[i]).toFixed(1), py = y(v).toFixed(1);
        if (segStart === null) {
          segStart = Number(px);
          line += 'M' + px + ' ' + py;
          area += 'M' + px + ' ' + SH + 'L' + px + ' ' + py;
        } else {
          line += 'L' + px + ' ' + py;
          area += 'L' + px + ' ' + py;
        }
        lastX = Number(px);
      }
      if (segStart !== null) area += 'L' + lastX.toFixed(1) + ' ' + SH + 'L' + segStart.toFixed(1) + ' ' + SH + 'Z';
    }
    setPath(sp.area, area);
    setPath(sp.line, line);
    let n = 0;
    for (const v of vals) if (v !== null) n++;
    const covered = h && h.t.length ? (now - h.t[0]) / 1000 : 0;
    const title = (sp.kind === 'cpu' ? 'CPU' : 'RSS') + ' over the last ' + fmtDur(covered) + ': peak ' + fmt(peak) +
      ' (' + n + (n === 1 ? ' sample)' : ' samples)');
    if (sp.title.__text !== title) {
      setText(sp.title, title);
      sp.s.setAttribute('aria-label', title);
    }
  }

  // ---- the model: flags, natural order, filter and sort ----------------------

  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
  // rank: session key or worker ID → its place in natural order, so that
  // sorting thousands of rows compares integers, not strings. Rebuilt
  // when a string it does not know appears.
  let rank = new Map();
  function rankStrings(entries) {
    let known = true;
    for (const e of entries) {
      if (!rank.has(e.key) || !rank.has(e.id)) { known = false; break; }
    }
    if (known) return;
    const all = new Set();
    for (const e of entries) { all.add(e.key); all.add(e.id); }
    const sorted = Array.from(all).sort((a, b) => collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0));
    rank = new Map(sorted.map((s, i) => [s, i]));
  }

  // nearLimit: RSS or threads at 80 % of the worker's limit or more.
  function atLimit(used, max) {
    const u = num(used), m = num(max);
    return m > 0 && u !== null && u >= 0.8 * m;
  }
  function flagsOf(w) {
    const state = str(w.state);
    return {
      zombie: w.zombie === true,
      limit: atLimit(w.rss_bytes, w.memory_max) || atLimit(w.threads, w.pids_max),
      crashed: (num(w.restarts) || 0) > 0 || state === 'exited',
      busy: state === 'running',
    };
  }

  let lastReport = null;
  let entries = []; // one per worker of the last report
  let byId = new Map(); // worker id → entry
  let view = []; // the entries shown, in order
  const counts = { zombie: 0, limit: 0, crashed: 0, busy: 0 };

  function workersOf(r) {
    return Array.isArray(r.workers) ? r.workers.filter((w) => w && typeof w === 'object') : [];
  }

  function updateModel(r) {
    entries = workersOf(r).map((w) => ({ w, id: str(w.id) || '', key: str(w.key) || '', f: flagsOf(w), hay: null, kr: 0, ir: 0 }));
    rankStrings(entries);
    byId = new Map();
    for (const c of CHIPS) counts[c] = 0;
    for (const e of entries) {
      e.kr = rank.get(e.key);
      e.ir = rank.get(e.id);
      byId.set(e.id, e);
      for (const c of CHIPS) if (e.f[c]) counts[c]++;
    }
  }

  let sort = { col: 'cpu_percent', dir: 'desc' };
  let query = '';
  let terms = [];
  const chipsOn = new Set();
  const SORTABLE = new Set(Array.from(document.querySelectorAll('th[data-sort]'), (th) => th.dataset.sort));

  function haystack(e) {
    if (e.hay === null) {
      e.hay = (e.key + '\n' + e.id + '\n' + (str(e.w.state) || '') + '\n' + (str(e.w.error) || '')).toLowerCase();
    }
    return e.hay;
  }

  function matches(e) {
    if (chipsOn.size) {
      let any = false;
      for (const c of chipsOn) if (e.f[c]) { any = true; break; }
      if (!any) return false;
    }
    for (const t of terms) if (!haystack(e).includes(t)) return false;
    return true;
  }

  function compare(a, b) {
    const col = sort.col;
    let c = 0;
    if (col === 'key') c = a.kr - b.kr;
    else if (col === 'id') c = a.ir - b.ir;
    else {
      const text = TEXT_COLUMNS.has(col);
      const va = text ? str(a.w[col]) : num(a.w[col]);
      const vb = text ? str(b.w[col]) : num(b.w[col]);
      // Missing values go last in either direction.
      if (va === null || vb === null) {
        if (va !== vb) return va === null ? 1 : -1;
      } else if (va !== vb) {
        c = text ? collator.compare(va, vb) : va - vb;
      }
    }
    if (c) return sort.dir === 'asc' ? c : -c;
    // Ties in natural order of the session key, then the worker ID.
    return a.kr - b.kr || a.ir - b.ir;
  }

  // applyView filters and sorts the entries and draws the window.
  function applyView() {
    view = chipsOn.size || terms.length ? entries.filter(matches) : entries.slice();
    view.sort(compare);
    renderWindow();
    renderCounts();
  }

  function renderCounts() {
    for (const b of document.querySelectorAll('#chips .chip')) {
      setText(b.querySelector('.n'), fmtInt(counts[b.dataset.chip]));
    }
    const n = entries.length;
    const zombies = counts.zombie;
    setText($('worker-summary'), fmtInt(n) + (n === 1 ? ' worker' : ' workers') +
      (zombies ? ' · ' + fmtInt(zombies) + (zombies === 1 ? ' zombie' : ' zombies') : ''));
    setText($('shown'), view.length === n ? '' : 'showing ' + fmtInt(view.length) + ' of ' + fmtInt(n));
  }

  // ---- the worker table: a virtual window ------------------------------------

  function spacer() {
    const tr = el('tr', 'spacer');
    tr.setAttribute('aria-hidden', 'true');
    const td = el('td');
    td.colSpan = COLS;
    tr.append(td);
    return tr;
  }
  const topPad = spacer();
  const bottomPad = spacer();
  const emptyRow = el('tr', 'empty');
  const emptyCell = el('td');
  emptyCell.colSpan = COLS;
  emptyRow.append(emptyCell);
  let pool = []; // row objects in DOM order between the spacers
  let rowH = 37; // measured from a rendered row
  let measured = false;
  let started = false;

  function makeRow() {
    const tr = el('tr', 'w');
    tr.tabIndex = 0;
    const who = el('td', 'who');
    const k = el('div', 'k');
    const wid = el('div', 'wid');
    who.append(k, wid);
    const stateTd = el('td');
    const stateSpan = el('span', 'state');
    stateTd.append(stateSpan);
    const metric = (sp) => {
      const td = el('td', 'num');
      const wrap = el('span', 'metric');
      const v = el('span', 'v');
      wrap.append(sp.s, v);
      td.append(wrap);
      return { td, v };
    };
    const cpuSp = makeSpark('cpu', 48, 18), rssSp = makeSpark('rss', 48, 18);
    const cpu = metric(cpuSp), rss = metric(rssSp);
    const r = {
      tr, k, wid, stateTd, stateSpan, badge: null, cpuSp, rssSp, cpuV: cpu.v, rssTd: rss.td, rssV: rss.v,
      pid: el('td', 'num mono'), vms: el('td', 'num'), threads: el('td', 'num'), fds: el('td', 'num'),
      procs: el('td', 'num'), defunct: el('td', 'num'), up: el('td', 'num'), idle: el('td', 'num'),
      reqs: el('td', 'num'), restarts: el('td', 'num'), err: el('td', 'err'), msg: el('div', 'msg'),
    };
    r.err.append(r.msg);
    tr.append(who, r.pid, stateTd, cpu.td, rss.td, r.vms, r.threads, r.fds, r.procs, r.defunct, r.up, r.idle,
      r.reqs, r.restarts, r.err);
    return r;
  }

  // limitMark marks a cell whose usage is at 80 % of its limit or more.
  function limitMark(td, used, max) {
    const near = atLimit(used, max);
    setClass(td, near ? 'num near-limit' : 'num');
    setTitle(td, near ? 'at ' + Math.round((num(used) / num(max)) * 100) + ' % of the limit' : '');
  }

  function bind(r, e, index, now) {
    const w = e.w, tr = r.tr;
    const zombie = e.f.zombie;
    const defunct = num(w.defunct) || 0;
    setClass(tr, 'w' + (index % 2 ? ' alt' : '') + (zombie ? ' zombie' : '') + (defunct > 0 ? ' defunct' : '') +
      (e.id === detailId ? ' selected' : ''));
    setData(tr, 'workerId', e.id);
    setData(tr, 'key', e.key);
    setData(tr, 'state', str(w.state) || '');
    setData(tr, 'zombie', zombie ? 'true' : 'false');
    setData(tr, 'defunct', String(defunct));
    setData(tr, 'cpu', num(w.cpu_percent) === null ? '' : String(w.cpu_percent));
    setData(tr, 'rss', num(w.rss_bytes) === null ? '' : String(w.rss_bytes));

    setText(r.k, e.key || DASH);
    setTitle(r.k, e.key);
    setText(r.wid, e.id || DASH);
    setText(r.pid, num(w.pid) === null ? DASH : String(w.pid));
    const state = str(w.state);
    setClass(r.stateSpan, 'state ' + (STATES.has(state) ? 'state-' + state : 'state-other'));
    setText(r.stateSpan, state || DASH);
    if (zombie && !r.badge) {
      r.badge = el('span', 'badge badge-zombie', 'zombie');
      r.badge.title = 'idle past the reap TTL and still alive';
      r.stateTd.append(r.badge);
    } else if (!zombie && r.badge) {
      r.badge.remove();
      r.badge = null;
    }
    const h = history.get(e.id);
    drawSpark(r.cpuSp, h, now, 5, fmtPct);
    setText(r.cpuV, fmtPct(w.cpu_percent));
    drawSpark(r.rssSp, h, now, 1 << 20, fmtBytes);
    setText(r.rssV, fmtBytes(w.rss_bytes) + ofLimit(w.rss_bytes, w.memory_max, fmtBytes));
    limitMark(r.rssTd, w.rss_bytes, w.memory_max);
    setText(r.vms, fmtBytes(w.vms_bytes));
    setText(r.threads, fmtInt(w.threads) + ofLimit(w.threads, w.pids_max, fmtInt));
    limitMark(r.threads, w.threads, w.pids_max);
    setText(r.fds, fmtInt(w.fds));
    setText(r.procs, fmtInt(w.processes));
    if (defunct > 0) {
      if (r.defunct.__badge !== defunct) {
        r.defunct.__badge = defunct;
        r.defunct.__text = undefined;
        r.defunct.replaceChildren(el('span', 'badge badge-defunct', defunct + ' defunct'));
      }
    } else {
      if (r.defunct.__badge) r.defunct.__text = undefined;
      r.defunct.__badge = 0;
      setText(r.defunct, fmtInt(w.defunct));
    }
    setText(r.up, fmtDur(w.uptime_seconds));
    // Idle time for idle workers only: a busy worker's idle time keeps
    // growing during a long command (it counts from the last command),
    // which reads as a stuck worker. The JSON keeps the raw value.
    if (state === 'idle' || state === 'starting') {
      setText(r.idle, fmtDur(w.idle_seconds));
      setTitle(r.idle, '');
    } else {
      setText(r.idle, DASH);
      setTitle(r.idle, state + ' · ' + fmtDur(w.idle_seconds) + ' since the last command');
    }
    setText(r.reqs, fmtInt(w.requests));
    setText(r.restarts, fmtInt(w.restarts));
    const err = str(w.error) || '';
    setText(r.msg, err);
    setTitle(r.msg, err);
  }

  // renderWindow puts the rows in view (and OVERSCAN more each side) in
  // the DOM, reusing the row elements already there.
  function renderWindow() {
    if (!started) {
      rowsEl.replaceChildren(topPad, bottomPad, emptyRow);
      started = true;
    }
    const n = view.length;
    emptyRow.hidden = n > 0;
    if (!n) {
      setText(emptyCell, entries.length ? 'No worker matches the filter.' :
        'No workers. Send a command to POST /api/sessions/{key}/rpc to start one.');
    }
    const viewport = scroller.clientHeight || window.innerHeight;
    // The scroll offset as it will be once the browser clamps it to the
    // rows now in view: after a filter shrinks the list, scrollTop still
    // says where the longer list was, until a scroll event a frame later,
    // and the window would hold only the last rows.
    const scrollTop = Math.min(scroller.scrollTop, Math.max(0, n * rowH - viewport));
    const first = Math.min(Math.max(0, Math.floor(scrollTop / rowH) - OVERSCAN), Math.max(0, n - 1));
    const count = Math.max(0, Math.min(n - first, Math.ceil(viewport / rowH) + 2 * OVERSCAN));
    while (pool.length < count) {
      const r = makeRow();
      pool.push(r);
      rowsEl.insertBefore(r.tr, bottomPad);
    }
    while (pool.length > count) pool.pop().tr.remove();
    const top = first * rowH, bottom = (n - first - count) * rowH;
    topPad.hidden = top === 0;
    bottomPad.hidden = bottom === 0;
    topPad.style.height = top + 'px';
    bottomPad.style.height = bottom + 'px';
    const now = lastReport ? Date.parse(str(lastReport.sampled_at) || '') || Date.now() : Date.now();
    for (let i = 0; i < count; i++) bind(pool[i], view[first + i], first + i, now);
    if (!measured && pool.length) {
      const h = pool[0].tr.getBoundingClientRect().height;
      if (h > 0) {
        measured = true;
        if (Math.abs(h - rowH) > 0.25) {
          rowH = h;
          renderWindow();
        }
      }
    }
  }

  let frame = 0;
  function scheduleWindow() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; renderWindow(); });
  }
  scroller.addEventListener('scroll', scheduleWindow, { passive: true });
  window.addEventListener('resize', scheduleWindow);

  function paintSortHeaders() {
    for (const th of document.querySelectorAll('th[data-sort]')) {
      if (th.dataset.sort === sort.col) th.setAttribute('aria-sort', sort.dir === 'asc' ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
  }

  function paintChips() {
    for (const b of document.querySelectorAll('#chips .chip')) {
      b.setAttribute('aria-pressed', chipsOn.has(b.dataset.chip) ? 'true' : 'false');
    }
  }

  // ---- the view in the URL ------------------------------------------------------

  const defaultDir = (col) => (TEXT_COLUMNS.has(col) ? 'asc' : 'desc');

  function setQuery(q) {
    query = q;
    terms = q.toLowerCase().split(/\s+/).filter(Boolean);
  }

  // readURL applies the fragment (#q=…&sort=…&dir=…&only=…&worker=…) and
  // returns the worker to show, or null.
  function readURL() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ''));
    setQuery(p.get('q') || '');
    if (filterEl.value !== query) filterEl.value = query;
    const col = p.get('sort');
    const dir = p.get('dir');
    if (col && SORTABLE.has(col)) sort = { col, dir: dir === 'asc' || dir === 'desc' ? dir : defaultDir(col) };
    else sort = { col: 'cpu_percent', dir: dir === 'asc' ? 'asc' : 'desc' };
    chipsOn.clear();
    for (const c of (p.get('only') || '').split(',')) if (CHIPS.includes(c)) chipsOn.add(c);
    paintSortHeaders();
    paintChips();
    return p.get('worker') || null;
  }

  function writeURL() {
    const p = new URLSearchParams();
    if (query) p.set('q', query);
    if (sort.col !== 'cpu_percent' || sort.dir !== 'desc') {
      p.set('sort', sort.col);
      p.set('dir', sort.dir);
    }
    if (chipsOn.size) p.set('only', CHIPS.filter((c) => chipsOn.has(c)).join(','));
    if (detailId) p.set('worker', detailId);
    const hash = p.toString();
    if (location.hash.replace(/^#/, '') !== hash) {
      window.history.replaceState(null, '', location.pathname + location.search + (hash ? '#' + hash : ''));
    }
  }

  // ---- the detail view ----------------------------------------------------------

  let detailId = null;
  let detail = null; // the last whole record of detailId
  let detailState = ''; // '', 'gone', or an error text
  let detailBusy = false;
  const detailEl = $('detail');
  const bigCPU = makeSpark('cpu', 240, 56);
  const bigRSS = makeSpark('rss', 240, 56);
  (function () {
    const box = $('detail-sparks');
    for (const [sp, label] of [[bigCPU, 'CPU'], [bigRSS, 'RSS']]) {
      const d = el('div', 'spark-box');
      const l = el('div', 'label', label);
      const v = el('div', 'value', DASH);
      sp.value = v;
      d.append(l, v, sp.s);
      box.append(d);
    }
  })();

  function markSelected() {
    for (const r of pool) r.tr.classList.toggle('selected', r.tr.dataset.workerId === detailId);
    for (const r of pool) r.tr.__cls = r.tr.className;
  }

  function openDetail(id) {
    if (detailId !== id) {
      detailId = id;
      detail = null;
      detailState = '';
    }
    detailEl.hidden = false;
    writeURL();
    markSelected();
    renderDetail();
    fetchDetail();
  }

  function closeDetail() {
    detailId = null;
    detail = null;
    detailEl.hidden = true;
    writeURL();
    markSelected();
  }

  async function fetchDetail() {
    if (!detailId || detailBusy) return;
    const id = detailId;
    detailBusy = true;
    try {
      const res = await fetch(workerAPI(id), { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
      if (id !== detailId) return;
      if (res.status === 404) {
        detailState = 'gone';
      } else if (!res.ok) {
        detailState = 'HTTP ' + res.status;
      } else {
        const r = await res.json();
        const w = r && typeof r === 'object' ? workersOf(r).find((x) => str(x.id) === id) : null;
        if (id !== detailId) return;
        if (w) {
          detail = w;
          detailState = '';
        } else {
          detailState = 'gone';
        }
      }
    } catch (e) {
      detailState = 'server unreachable';
    } finally {
      detailBusy = false;
      if (id === detailId) renderDetail();
    }
  }

  function facts(dl, items) {
    const frag = document.createDocumentFragment();
    for (const [label, value, cls] of items) {
      frag.append(el('dt', '', label), el('dd', cls || '', value));
    }
    dl.replaceChildren(frag);
  }

  function renderDetail() {
    const id = detailId;
    if (!id) return;
    const e = byId.get(id);
    // The whole record when it came; the poll's entry until then.
    const w = detail || (e ? e.w : { id });
    const key = str(w.key);
    setText($('detail-title'), key || DASH);
    setText($('detail-sub'), 'worker ' + id + (num(w.pid) === null ? '' : ' · pid ' + w.pid));
    const st = $('detail-status');
    if (detailState === 'gone') {
      st.dataset.state = 'gone';
      setText(st, 'This worker is gone (exited, stopped or reaped): its last data is shown.');
    } else if (detailState) {
      st.dataset.state = 'gone';
      setText(st, 'Could not load the worker (' + detailState + '); retrying with the next poll.');
    } else {
      st.dataset.state = '';
      setText(st, detail ? '' : 'Loading…');
    }

    const now = lastReport ? Date.parse(str(lastReport.sampled_at) || '') || Date.now() : Date.now();
    const h = history.get(id);
    drawSpark(bigCPU, h, now, 5, fmtPct);
    drawSpark(bigRSS, h, now, 1 << 20, fmtBytes);
    setText(bigCPU.value, fmtPct(w.cpu_percent));
    setText(bigRSS.value, fmtBytes(w.rss_bytes));

    const state = str(w.state);
    facts($('detail-facts'), [
      ['State', (state || DASH) + (w.zombie === true ? ' · zombie (idle past the reap TTL, still alive)' : '')],
      ['Uptime', fmtDur(w.uptime_seconds)],
      ['Idle', fmtDur(w.idle_seconds) + ' since the last command'],
      ['Requests', fmtInt(w.requests)],
      ['Restarts', fmtInt(w.restarts) + ((num(w.restarts) || 0) > 0 ? ' (the session was respawned after crashes)' : '')],
      ['CPU time', fmtSmallDur(w.cpu_seconds) + ' (whole tree)'],
      ['Processes', fmtInt(w.processes) + ' · threads ' + fmtInt(w.threads) + ' · FDs ' + fmtInt(w.fds)],
      ['Defunct', fmtInt(w.defunct)],
      ['VMS', fmtBytes(w.vms_bytes)],
      ['Sampling error', str(w.error) || 'none'],
    ]);

    const hits = w.limit_hits && typeof w.limit_hits === 'object' ? w.limit_hits : {};
    const hitText = Object.keys(hits).filter((k) => num(hits[k])).map((k) => k + ' ' + fmtInt(hits[k])).join(' · ');
    const mem = num(w.memory_max), pids = num(w.pids_max), cpuMax = num(w.cpu_max);
    facts($('detail-limits'), [
      ['Memory', mem > 0 ? fmtBytes(mem) + ' · RSS ' + fmtBytes(w.rss_bytes) + ofLimit(w.rss_bytes, mem, fmtBytes) : 'no limit',
        atLimit(w.rss_bytes, mem) ? 'near-limit' : ''],
      ['Processes/threads', pids > 0 ? fmtInt(pids) + ' · threads ' + fmtInt(w.threads) + ofLimit(w.threads, pids, fmtInt) : 'no limit',
        atLimit(w.threads, pids) ? 'near-limit' : ''],
      ['CPU', cpuMax > 0 ? cpuMax + ' cores' : 'no limit'],
      ['Limit hits', hitText || 'none'],
    ]);

    // Last commands, newest first, with their cost.
    const tbody = $('detail-commands').tBodies[0];
    const cs = Array.isArray(w.last_commands) ? w.last_commands.filter((c) => c && typeof c === 'object') : [];
    const frag = document.createDocumentFragment();
    for (const c of cs.slice().reverse()) {
      const tr = el('tr');
      const typ = (str(c.type) || DASH) + (c.run === true ? ' (run)' : '');
      const cpu = num(c.cpu_seconds);
      const errType = str(c.error_type);
      const trace = str(c.trace_id);
      const t = el('td', 'cmdtype', typ);
      t.title = typ;
      const tr2 = el('td', 'trace', trace || '');
      if (trace) tr2.title = 'trace ' + trace;
      tr.append(t, el('td', 'num', fmtSmallDur(c.duration_seconds)), el('td', 'num', cpu === null ? DASH : fmtSmallDur(cpu)),
        el('td', errType ? 'bad' : '', errType || ''), tr2);
      frag.append(tr);
    }
    if (!cs.length) {
      const tr = el('tr', 'empty');
      const td = el('td', '', detail ? 'No finished command yet.' : 'Loading…');
      td.colSpan = 5;
      tr.append(td);
      frag.append(tr);
    }
    tbody.replaceChildren(frag);

    // The session's agent activity, when it has some.
    const a = w.agent && typeof w.agent === 'object' ? w.agent : null;
    $('detail-agent-section').hidden = !a;
    if (a) {
      const box = document.createDocumentFragment();
      const over = str(a.over_budget);
      box.append(el('div', 'cmd' + (over ? ' cmd-err' : ''), fmtInt(a.total_tokens) + ' tokens · $' + (num(a.cost_usd) || 0).toFixed(4) +
        ' · ' + fmtInt(a.model_calls) + ' model calls · ' + fmtInt(a.tool_calls) + ' tool calls' + (over ? ' · over its ' + over + ' budget' : '')));
      box.append(el('div', 'cmd', 'input ' + fmtInt(a.input_tokens) + ' · output ' + fmtInt(a.output_tokens) + ' · cache read ' +
        fmtInt(a.cache_read_tokens) + ' · cache write ' + fmtInt(a.cache_write_tokens) + ' (the session, across its workers)'));
      const tools = Array.isArray(a.last_tools) ? a.last_tools.filter((t) => t && typeof t === 'object') : [];
      for (const t of tools.slice().reverse()) {
        const cpu = num(t.cpu_seconds);
        box.append(el('div', 'cmd' + (t.error === true ? ' cmd-err' : ''),
          'tool ' + (str(t.name) || DASH) + ' ' + fmtSmallDur(t.duration_seconds) + (cpu === null ? '' : ' · cpu ' + fmtSmallDur(cpu))));
      }
      $('detail-agent').replaceChildren(box);
    }

    // The stderr tail: text, bounded.
    let tail = detail ? str(detail.stderr_tail) : null;
    if (tail !== null && tail.length > MAX_STDERR) tail = tail.slice(tail.length - MAX_STDERR);
    setText($('detail-stderr'), tail === null ? (detail ? '(not available)' : 'Loading…') : tail || '(nothing on stderr yet)');
  }

  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && detailId) closeDetail();
  });
  rowsEl.addEventListener('click', (ev) => {
    const tr = ev.target instanceof Element ? ev.target.closest('tr.w') : null;
    if (tr && tr.dataset.workerId) openDetail(tr.dataset.workerId);
  });
  rowsEl.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter' && ev.key !== ' ') return;
    const tr = ev.target instanceof Element ? ev.target.closest('tr.w') : null;
    if (tr && tr.dataset.workerId) {
      ev.preventDefault();
      openDetail(tr.dataset.workerId);
    }
  });

  // ---- controls -------------------------------------------------------------------

  for (const th of document.querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const col = th.dataset.sort;
      if (sort.col === col) sort.dir = sort.dir === 'asc' ? 'desc' : 'asc';
      else sort = { col, dir: defaultDir(col) };
      paintSortHeaders();
      writeURL();
      applyView();
    });
  }
  for (const b of document.querySelectorAll('#chips .chip')) {
    b.addEventListener('click', () => {
      const c = b.dataset.chip;
      if (chipsOn.has(c)) chipsOn.delete(c);
      else chipsOn.add(c);
      paintChips();
      writeURL();
      applyView();
    });
  }
  filterEl.addEventListener('input', () => {
    setQuery(filterEl.value.trim());
    writeURL();
    applyView();
  });
  window.addEventListener('hashchange', () => {
    const w = readURL();
    applyView();
    if (w && w !== detailId) openDetail(w);
    else if (!w && detailId) closeDetail();
  });

  // ---- polling --------------------------------------------------------------

  // render applies one poll. The time it takes, with the style and layout
  // of the update (forced at its end), is in body[data-render-ms].
  function render(r) {
    if (!r || typeof r !== 'object') throw new Error('unexpected response');
    const t0 = performance.now();
    const at = Date.parse(str(r.sampled_at) || '');
    const ws = workersOf(r);
    record(ws, Number.isFinite(at) ? at : Date.now());
    lastReport = r;
    renderHealth(r);
    updateModel(r);
    applyView();
    if (detailId) renderDetail();
    void rowsEl.offsetHeight; // style and layout now, inside the measurement
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(2);
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
        if (detailId) fetchDetail();
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

  const initial = readURL();
  if (initial) openDetail(initial);
  setInterval(updateStatusText, 1000);
  poll();
})();
