// The live page: one websocket to /api/v1/stream, a newest-first event table
// updated in place, a per-client summary and the stream's stats. Every piece
// of event data goes into the page as text (textContent), never as HTML.
(function () {
  'use strict';

  const M = window.TetraModel;
  const CAP = 2000; // rows kept in the table
  const BACKFILL = 1000; // stored events asked for on a fresh start
  const FILTERS = ['client', 'user', 'host', 'endpoint', 'outcome', 'q'];
  const MAX_BACKOFF = 30000;

  const params = new URLSearchParams(location.search);
  const token = params.get('token') || '';

  const el = {
    conn: document.getElementById('conn'),
    connText: document.getElementById('conn-text'),
    stats: document.getElementById('stats'),
    sensor: document.getElementById('sensor'),
    form: document.getElementById('filters'),
    clear: document.getElementById('clear'),
    tbody: document.querySelector('#events tbody'),
    count: document.getElementById('count'),
    empty: document.getElementById('empty'),
    clients: document.querySelector('#clients tbody'),
    clientsEmpty: document.getElementById('clients-empty'),
    detail: document.getElementById('detail'),
    detailEmpty: document.getElementById('detail-empty'),
  };

  let filters = {};
  let set = new M.EventSet(CAP);
  const rowEls = new Map(); // id -> <tr>
  let ws = null;
  let attempt = 0;
  let retryTimer = 0;
  let connectedAt = 0;
  let synced = false;
  let selected = 0;
  let summaryTimer = 0;

  // --- small DOM helpers -------------------------------------------------

  function node(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) {
      n.className = cls;
    }
    if (text !== undefined && text !== null) {
      n.textContent = String(text);
    }
    return n;
  }

  function badge(state, outcome) {
    const o = M.outcomeLabel(state, outcome);
    const b = node('span', 'badge ' + o.cls);
    b.append(node('span', 'sym', o.sym), document.createTextNode(' ' + o.text));
    if (state === 'lost') {
      b.title = 'ended while the page was disconnected; its end was not recorded';
    }
    return b;
  }

  function clockTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) {
      return '';
    }
    const t = d.toLocaleTimeString([], { hour12: false });
    const today = new Date().toDateString() === d.toDateString();
    return today ? t : d.toLocaleDateString() + ' ' + t;
  }

  // --- the event table ---------------------------------------------------

  const COLS = 12;

  function fillRow(tr, row) {
    const ev = row.ev;
    const td = tr.children;
    td[0].textContent = clockTime(ev.time);
    td[0].title = ev.time || '';
    td[1].textContent = ev.client_ip || '';
    td[2].textContent = ev.client_user || '';
    td[3].textContent = ev.method || '';
    td[4].textContent = ev.port ? (ev.host || '') + ':' + ev.port : (ev.host || '');
    td[4].title = [ev.url, ev.sni && 'SNI ' + ev.sni].filter(Boolean).join('\n');
    td[5].textContent = ev.endpoint || '';
    td[6].replaceChildren(badge(row.state, ev.outcome));
    td[7].textContent = ev.status ? String(ev.status) : '';
    td[7].title = ev.upstream_status ? 'upstream ' + ev.upstream_status : '';
    td[8].textContent = M.humanBytes(ev.bytes_up || 0) + ' / ' + M.humanBytes(ev.bytes_down || 0);
    td[8].title = (ev.bytes_up || 0) + ' B up, ' + (ev.bytes_down || 0) + ' B down';
    td[9].textContent = row.state === 'done' ? M.humanDuration(ev.duration_ms) : '';
    const le = M.lasterrorText(ev.lasterror);
    // The unsigned form is what local.xml shows; the rest is on hover.
    td[10].textContent = ev.lasterror ? String(ev.lasterror) : '';
    td[10].title = le.text + (le.meaning ? ': ' + le.meaning : '');
    const detail = [ev.detail, ev.diagnosis && 'diagnosis: ' + ev.diagnosis]
      .filter(Boolean).join(' \u00b7 ');
    td[11].textContent = detail;
    td[11].title = detail;
    tr.className = 'state-' + row.state + (M.isFailure(ev.outcome) ? ' failure' : '') +
      (row.id === selected ? ' selected' : '');
  }

  function newRow(row) {
    const tr = document.createElement('tr');
    for (let i = 0; i < COLS; i++) {
      tr.append(document.createElement('td'));
    }
    tr.dataset.id = String(row.id);
    fillRow(tr, row);
    return tr;
  }

  function applyEvent(type, ev) {
    const r = set.apply(type, ev);
    if (!r) {
      return;
    }
    const row = r.row;
    if (r.inserted) {
      const tr = newRow(row);
      const above = set.idAbove(row.id);
      if (above === undefined) {
        el.tbody.prepend(tr);
      } else {
        rowEls.get(above).after(tr);
      }
      rowEls.set(row.id, tr);
      if (synced) {
        tr.classList.add('fresh');
      }
      for (const id of set.evict()) {
        rowEls.get(id).remove();
        rowEls.delete(id);
      }
    } else {
      fillRow(rowEls.get(row.id), row);
    }
    if (row.id === selected) {
      showDetail(row);
    }
    changed();
  }

  function changed() {
    el.count.textContent = set.size + (set.size >= CAP ? ' (newest ' + CAP + ')' : '');
    el.empty.hidden = set.size > 0;
    if (!summaryTimer) {
      summaryTimer = setTimeout(renderSummary, 300);
    }
  }

  function reset() {
    set = new M.EventSet(CAP);
    rowEls.clear();
    el.tbody.replaceChildren();
    selected = 0;
    showDetail(null);
    changed();
  }

  // --- the selected event ------------------------------------------------

  const DETAIL_FIELDS = [
    'id', 'time', 'duration_ms', 'source', 'sensor', 'client_ip', 'client_user',
    'method', 'host', 'port', 'url', 'sni', 'endpoint', 'outcome', 'status',
    'upstream_status', 'bytes_up', 'bytes_down', 'close', 'tls_version',
    'tls_alert', 'detail', 'diagnosis', 'lasterror',
  ];

  function showDetail(row) {
    el.detail.replaceChildren();
    el.detailEmpty.hidden = !!row;
    if (!row) {
      return;
    }
    for (const f of DETAIL_FIELDS) {
      let v = row.ev[f];
      if (f === 'outcome' && row.state !== 'done') {
        v = row.state;
      }
      if (f === 'lasterror') {
        const le = M.lasterrorText(v);
        v = le.text + (le.meaning ? ' \u2014 ' + le.meaning : '');
      }
      if (v === undefined || v === null || v === '' || (v === 0 && f !== 'id')) {
        continue;
      }
      el.detail.append(node('dt', '', f), node('dd', '', v));
    }
  }

  el.tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) {
      return;
    }
    const id = Number(tr.dataset.id);
    const prev = rowEls.get(selected);
    if (prev) {
      prev.classList.remove('selected');
    }
    selected = id;
    tr.classList.add('selected');
    showDetail(set.rows.get(id) || null);
  });

  // --- the per-client summary --------------------------------------------

  function renderSummary() {
    summaryTimer = 0;
    const now = Date.now();
    const list = M.summarize(set.rows.values());
    const trs = list.map((c) => {
      const tr = node('tr', c.attention ? 'attention' : '');
      tr.dataset.client = c.client;
      const who = node('td', 'client');
      who.append(node('div', 'ip', c.client || '(none)'));
      if (c.user) {
        who.append(node('div', 'user', c.user));
      }
      const fails = node('td', 'fails');
      if (c.failures.size === 0) {
        fails.textContent = '\u2013';
      }
      for (const [outcome, n] of c.failures) {
        const b = badge('done', outcome);
        b.append(document.createTextNode(' ' + n));
        fails.append(b, document.createTextNode(' '));
      }
      const ok = node('td', c.lastTetraOK ? '' : 'never',
        c.lastTetraOK ? M.relativeTime(c.lastTetraOK, now) : 'never');
      ok.title = c.lastTetraOK ||
        'no successful tetra download in the events shown';
      const last = node('td', 'last');
      last.append(node('span', '', M.relativeTime(c.last.ev.time, now) + ' '),
        badge(c.last.state, c.last.ev.outcome));
      last.title = (c.last.ev.host || '') + ' ' + (c.last.ev.time || '');
      tr.append(who, node('td', 'num', c.events), fails, ok, last);
      return tr;
    });
    el.clients.replaceChildren(...trs);
    el.clientsEmpty.hidden = trs.length > 0;
  }

  el.clients.addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr || !tr.dataset.client) {
      return;
    }
    el.form.elements.client.value = tr.dataset.client;
    applyFilters();
  });

  setInterval(() => {
    if (!summaryTimer) {
      renderSummary();
    }
  }, 10000);

  // --- stats and connection state ----------------------------------------

  const STAT_LABELS = [
    ['events_total', 'events'], ['dropped', 'dropped'], ['active', 'active'],
    ['store_errors', 'store errors'], ['viewers', 'viewers'],
    ['viewers_dropped', 'viewers dropped'],
  ];

  function renderStats(stats) {
    const parts = [];
    const known = new Set(['sensor']);
    for (const [key, label] of STAT_LABELS) {
      known.add(key);
      if (key in stats) {
        parts.push([label, stats[key], key]);
      }
    }
    for (const key of Object.keys(stats).sort()) {
      if (!known.has(key)) {
        parts.push([key.replace(/_/g, ' '), stats[key], key]);
      }
    }
    el.stats.replaceChildren(...parts.map(([label, value, key]) => {
      const s = node('span', 'stat');
      const warn = (key === 'dropped' || key === 'store_errors') && Number(value) > 0;
      s.append(node('span', 'label', label + ' '), node('b', warn ? 'warn' : '', value));
      return s;
    }));
    if (stats.sensor) {
      el.sensor.textContent = stats.sensor;
    }
  }

  function setConn(state, text) {
    el.conn.className = 'conn conn-' + state;
    el.connText.textContent = text || state;
  }

  // --- the websocket -----------------------------------------------------

  function streamURL() {
    const u = new URL('api/v1/stream', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.search = '';
    for (const k of FILTERS) {
      if (filters[k]) {
        u.searchParams.set(k, filters[k]);
      }
    }
    const after = set.resumeAfter();
    if (after > 0) {
      u.searchParams.set('after', String(after));
    } else {
      u.searchParams.set('backfill', String(BACKFILL));
    }
    if (token) {
      u.searchParams.set('token', token);
    }
    return u.toString();
  }

  function connect() {
    retryTimer = 0;
    synced = false;
    set.newGeneration();
    setConn(attempt ? 'reconnecting' : 'connecting', attempt ? 'reconnecting' : 'connecting');
    const sock = new WebSocket(streamURL());
    ws = sock;
    sock.onopen = () => {
      if (sock === ws) {
        connectedAt = Date.now();
        setConn('connected', 'connected');
      }
    };
    sock.onmessage = (e) => {
      if (sock === ws) {
        handle(e.data);
      }
    };
    sock.onclose = (e) => {
      if (sock === ws) {
        ws = null;
        retry(e);
      }
    };
  }

  function handle(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      return;
    }
    switch (msg.type) {
      case 'open':
      case 'event':
        applyEvent(msg.type, msg.event);
        break;
      case 'stats':
        renderStats(msg.stats || {});
        if (!synced) {
          // The first stats message ends the catch-up: rows still open
          // that it did not mention ended while the page was away.
          synced = true;
          for (const row of set.markLost()) {
            fillRow(rowEls.get(row.id), row);
          }
          changed();
        }
        break;
    }
  }

  function retry(e) {
    if (connectedAt && Date.now() - connectedAt > 10000) {
      attempt = 0;
    }
    connectedAt = 0;
    const base = Math.min(MAX_BACKOFF, 1000 * 2 ** attempt);
    attempt++;
    const delay = base / 2 + Math.random() * base / 2;
    const why = e && e.reason ? ' (' + e.reason + ')' : '';
    setConn('reconnecting', 'reconnecting in ' + Math.ceil(delay / 1000) + ' s' + why);
    retryTimer = setTimeout(connect, delay);
  }

  function restart() {
    if (ws) {
      const old = ws;
      ws = null;
      old.close(1000, 'filters changed');
    }
    if (retryTimer) {
      clearTimeout(retryTimer);
    }
    attempt = 0;
    connect();
  }

  // --- filters -----------------------------------------------------------

  function fillSelect(select, values) {
    for (const v of values) {
      select.append(node('option', '', v));
    }
  }

  function readFilters() {
    const f = {};
    for (const k of FILTERS) {
      const v = (el.form.elements[k].value || '').trim();
      if (v) {
        f[k] = v;
      }
    }
    return f;
  }

  function applyFilters() {
    filters = readFilters();
    const q = new URLSearchParams();
    if (token) {
      q.set('token', token);
    }
    for (const k of FILTERS) {
      if (filters[k]) {
        q.set(k, filters[k]);
      }
    }
    const s = q.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
    reset();
    restart();
  }

  fillSelect(el.form.elements.endpoint, M.ENDPOINTS);
  fillSelect(el.form.elements.outcome, M.OUTCOMES);
  for (const k of FILTERS) {
    const v = params.get(k);
    if (v) {
      el.form.elements[k].value = v;
    }
  }
  filters = readFilters();

  el.form.addEventListener('submit', (e) => {
    e.preventDefault();
    applyFilters();
  });
  el.clear.addEventListener('click', () => {
    el.form.reset();
    applyFilters();
  });

  changed();
  connect();
})();
