// The live page: one websocket to /api/v1/stream feeding a newest-first
// event table updated in place, the clients table, the overview (counters
// and the per-minute chart) and the client view; the REST API fills what
// the stream does not carry (the window's history, older pages, a client's
// timeline). Every piece of event data goes into the page as text
// (textContent), never as HTML.
(function () {
  'use strict';

  const M = window.TetraModel;
  const CAP = 2000; // rows kept in the table while live
  const MAX_ROWS = 10000; // rows the table may hold with older pages loaded
  const PAGE = 500; // older events fetched per click
  const BACKFILL = 1000; // stored events asked for on a fresh start
  const WINDOW_LIMIT = 10000; // events fetched for the overview's window
  const TIMELINE_LIMIT = 1000; // events of a client's timeline
  const CLIENT_ROWS = 500; // clients rendered at most
  const FILTERS = ['client', 'user', 'host', 'endpoint', 'outcome', 'q'];
  const MAX_BACKOFF = 30000;

  const params = new URLSearchParams(location.search);
  const token = params.get('token') || '';

  const $ = (id) => document.getElementById(id);
  const el = {
    conn: $('conn'),
    connText: $('conn-text'),
    stats: $('stats'),
    sensor: $('sensor'),
    form: $('filters'),
    clear: $('clear'),
    exportCSV: $('export-csv'),
    exportJSON: $('export-json'),
    report: $('report-html'),
    upload: $('upload'),
    uploadFile: $('upload-file'),
    uploadNote: $('upload-note'),
    window: $('window'),
    overviewNote: $('overview-note'),
    outcomeCounts: $('outcome-counts'),
    diagnosisCounts: $('diagnosis-counts'),
    chart: $('chart'),
    pause: $('pause'),
    paused: $('paused'),
    scroll: $('events-scroll'),
    events: $('events'),
    tbody: document.querySelector('#events tbody'),
    count: $('count'),
    empty: $('empty'),
    older: $('older'),
    olderNote: $('older-note'),
    clients: document.querySelector('#clients tbody'),
    clientsTable: $('clients'),
    clientsHead: document.querySelector('#clients thead'),
    clientsCount: $('clients-count'),
    clientsEmpty: $('clients-empty'),
    cv: $('client-view'),
    cvIP: $('cv-ip'),
    cvFilter: $('cv-filter'),
    cvClose: $('cv-close'),
    cvFacts: $('cv-facts'),
    cvLasterror: $('cv-lasterror'),
    cvDiagnoses: $('cv-diagnoses'),
    cvTimeline: document.querySelector('#cv-timeline tbody'),
    cvTimelineNote: $('cv-timeline-note'),
    detail: $('detail'),
    detailPanel: $('detail-panel'),
    detailEmpty: $('detail-empty'),
  };

  let filters = {};
  let set = new M.EventSet(CAP);
  const rowEls = new Map(); // id -> <tr>
  const withUser = new Set(); // ids of rows with a client_user
  let ws = null;
  let attempt = 0;
  let retryTimer = 0;
  let connectedAt = 0;
  let synced = false;
  let selected = 0;
  let paused = false;
  let pauseBuf = new M.PauseBuffer(CAP);

  // --- small helpers -----------------------------------------------------

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

  const STATE_SYM = { healthy: '\u2713', failing: '\u2717', silent: '\u2026', unknown: '?' };

  function stateBadge(state) {
    const b = node('span', 'badge st-' + (state || 'unknown'));
    b.append(node('span', 'sym', STATE_SYM[state] || '?'),
      document.createTextNode(' ' + (state || 'unknown')));
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

  function lasterrorLabel(code) {
    if (!code) {
      return '0';
    }
    return code + ' (' + M.signedCode(code) + ')';
  }

  // apiURL returns the address of an API path with the given parameters;
  // withToken adds the page's token, for links the browser follows itself.
  function apiURL(path, q, withToken) {
    const u = new URL(path, location.href);
    u.search = '';
    for (const [k, v] of Object.entries(q || {})) {
      if (v !== undefined && v !== null && v !== '') {
        u.searchParams.set(k, String(v));
      }
    }
    if (withToken && token) {
      u.searchParams.set('token', token);
    }
    return u.toString();
  }

  // api fetches a path of the API; the token goes in a header, so that it
  // stays out of logs of anything between the browser and the server.
  function api(path, q, method) {
    if (typeof fetch !== 'function') {
      return Promise.reject(new Error('no fetch'));
    }
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    return fetch(apiURL(path, q, false), { method: method || 'GET', headers });
  }

  function getJSON(path, q) {
    return api(path, q).then((r) => {
      if (!r.ok) {
        const err = new Error(path + ': ' + r.status);
        err.status = r.status;
        throw err;
      }
      return r.json();
    });
  }

  // later runs fn once, ms after the first of several calls.
  function later(ms, fn) {
    let timer = 0;
    return () => {
      if (!timer) {
        timer = setTimeout(() => {
          timer = 0;
          fn();
        }, ms);
      }
    };
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

  // applyEvent puts one open or event message into the table; fresh rows
  // flash once the catch-up is over.
  function applyEvent(type, ev, quiet) {
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
      if (synced && !quiet) {
        tr.classList.add('fresh');
      }
      for (const id of set.evict()) {
        rowEls.get(id).remove();
        rowEls.delete(id);
        withUser.delete(id);
      }
    } else {
      fillRow(rowEls.get(row.id), row);
    }
    if (ev.client_user && set.rows.has(row.id)) {
      withUser.add(row.id);
    }
    if (row.id === selected) {
      showDetail(row);
    }
    if (!quiet) {
      changed();
    }
  }

  function changed() {
    // The user column shows once a row has a user.
    el.events.classList.toggle('no-user', withUser.size === 0);
    el.count.textContent = set.size + (set.size >= set.cap ? ' (newest ' + set.cap + ')' : '');
    el.empty.hidden = set.size > 0;
  }

  function reset() {
    set = new M.EventSet(CAP);
    pauseBuf = new M.PauseBuffer(CAP);
    rowEls.clear();
    withUser.clear();
    el.tbody.replaceChildren();
    selected = 0;
    el.older.disabled = false;
    el.olderNote.textContent = '';
    showDetail(null);
    renderPaused();
    changed();
  }

  // --- pause ---------------------------------------------------------------

  function setPaused(p) {
    paused = p;
    el.pause.textContent = p ? 'Resume' : 'Pause';
    el.pause.setAttribute('aria-pressed', p ? 'true' : 'false');
    if (!p) {
      for (const m of pauseBuf.drain()) {
        applyEvent(m.type, m.ev, true);
      }
      changed();
    }
    renderPaused();
  }

  function renderPaused() {
    el.paused.hidden = !paused;
    if (paused) {
      el.paused.textContent = 'paused: ' + pauseBuf.size + ' new or changed rows held';
    }
  }

  el.pause.addEventListener('click', () => setPaused(!paused));

  // --- bytes of open tunnels ------------------------------------------------

  // The stream announces a tunnel once when it opens; while rows are open,
  // the page asks /api/v1/active every second for their bytes so far.
  let activeBusy = false;

  function pollActive() {
    if (activeBusy || paused) {
      return;
    }
    const open = [];
    for (const row of set.rows.values()) {
      if (row.state === 'open') {
        open.push(row);
      }
    }
    if (open.length === 0) {
      return;
    }
    activeBusy = true;
    getJSON('api/v1/active').then((body) => {
      const byID = new Map((body.active || []).map((ev) => [ev.id, ev]));
      for (const row of open) {
        const now = byID.get(row.id);
        const tr = rowEls.get(row.id);
        if (!now || !tr || row.state !== 'open') {
          continue;
        }
        row.ev = Object.assign({}, row.ev,
          { bytes_up: now.bytes_up, bytes_down: now.bytes_down });
        fillRow(tr, row);
        if (row.id === selected) {
          showDetail(row);
        }
      }
    }).catch(() => {}).then(() => {
      activeBusy = false;
    });
  }

  setInterval(pollActive, 1000);

  // --- older pages ---------------------------------------------------------

  el.older.addEventListener('click', () => {
    const before = set.oldestId();
    const room = set.grow(PAGE, MAX_ROWS);
    if (room <= 0) {
      el.olderNote.textContent = 'the table holds at most ' + MAX_ROWS +
        ' rows; export the filter for more';
      return;
    }
    el.older.disabled = true;
    el.olderNote.textContent = 'loading\u2026';
    const q = Object.assign({}, filters, { limit: Math.min(PAGE, room) });
    if (before > 0) {
      q.before = before;
    }
    getJSON('api/v1/events', q).then((body) => {
      const events = body.events || [];
      for (const ev of events) {
        applyEvent('event', ev, true);
      }
      changed();
      el.older.disabled = events.length === 0;
      el.olderNote.textContent = events.length < q.limit ?
        'no older events match' : events.length + ' older events loaded';
    }).catch((err) => {
      el.older.disabled = false;
      el.olderNote.textContent = 'loading failed (' + err.message + ')';
    });
  });

  // --- the selected event ------------------------------------------------

  const DETAIL_FIELDS = [
    'id', 'time', 'duration_ms', 'source', 'sensor', 'client_ip', 'client_user',
    'method', 'host', 'port', 'url', 'sni', 'endpoint', 'outcome', 'status',
    'upstream_status', 'bytes_up', 'bytes_down', 'close', 'tls_version',
    'tls_alert', 'tls_issuer', 'detail', 'diagnosis', 'lasterror',
  ];

  function showDetail(row) {
    el.detail.replaceChildren();
    el.detailEmpty.hidden = !!row;
    // With nothing selected, the panel gives its room to the client view.
    el.detailPanel.classList.toggle('idle', !row);
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

  // --- the overview --------------------------------------------------------

  let windowName = '1h';
  let overview = new M.Overview(M.parseWindow(windowName));
  let overviewLoad = 0; // numbers the window fetches; a stale answer is dropped
  let chart = null;

  function loadOverview() {
    overview = new M.Overview(M.parseWindow(windowName));
    const n = ++overviewLoad;
    el.overviewNote.textContent = 'loading\u2026';
    const q = Object.assign({}, filters, { since: windowName, limit: WINDOW_LIMIT });
    getJSON('api/v1/events', q).then((body) => {
      if (n !== overviewLoad) {
        return;
      }
      const events = body.events || [];
      for (const ev of events) {
        overview.add(ev);
      }
      el.overviewNote.textContent = events.length >= WINDOW_LIMIT ?
        'counts from the newest ' + WINDOW_LIMIT + ' events of the window' : '';
      renderOverview();
    }).catch((err) => {
      if (n === overviewLoad) {
        el.overviewNote.textContent = 'history unavailable (' + err.message +
          '): counting live events only';
        renderOverview();
      }
    });
    renderOverview();
  }

  function counter(label, n, cls, title) {
    const c = node('button', 'counter ' + (cls || ''));
    c.type = 'button';
    c.append(node('span', 'n', n), node('span', 'label', label));
    if (title) {
      c.title = title;
    }
    return c;
  }

  function renderOverview() {
    const now = Date.now();
    overview.prune(now);
    const c = overview.counts(now);

    const outcomes = [counter('events', c.total, 'total')];
    for (const o of M.OUTCOMES) {
      const n = c.outcomes.get(o) || 0;
      if (n === 0) {
        continue;
      }
      const b = node('button', 'counter outcome');
      b.type = 'button';
      b.append(node('span', 'n', n), badge('done', o));
      b.dataset.outcome = o;
      b.title = 'show only ' + o + ' in the feed';
      outcomes.push(b);
    }
    el.outcomeCounts.replaceChildren(...outcomes);

    // Per diagnosis: the clients that have it now, and the events of the
    // window that it explains.
    const clientsWith = new Map();
    for (const cl of clients.values()) {
      for (const d of cl.diagnoses || []) {
        clientsWith.set(d.name, (clientsWith.get(d.name) || 0) + 1);
      }
    }
    const diags = [];
    for (const d of M.DIAGNOSES) {
      const nc = clientsWith.get(d) || 0;
      const ne = c.diagnoses.get(d) || 0;
      if (nc === 0 && ne === 0) {
        continue;
      }
      const b = counter(d, nc, 'diagnosis', nc + ' clients have this diagnosis now; ' + ne +
        ' events of the window point to it');
      b.append(node('span', 'sub', ne + ' ev'));
      b.dataset.diagnosis = d;
      diags.push(b);
    }
    if (diags.length === 0) {
      diags.push(node('span', 'none', 'no diagnosis'));
    }
    el.diagnosisCounts.replaceChildren(...diags);
    renderChart(now);
  }

  const renderOverviewSoon = later(500, renderOverview);

  el.outcomeCounts.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (b && b.dataset.outcome) {
      el.form.elements.outcome.value = b.dataset.outcome;
      applyFilters();
    }
  });

  function chartSize() {
    const w = el.chart.clientWidth || 600;
    return { width: Math.max(200, w), height: 120 };
  }

  function renderChart(now) {
    if (typeof window.uPlot !== 'function') {
      el.chart.textContent = 'chart library not loaded';
      return;
    }
    // A minute without downloads draws no bar rather than a flat one.
    const data = overview.series(now).map((s, i) => i === 0 ? s : s.map((v) => v || null));
    if (chart) {
      chart.setData(data);
      return;
    }
    const css = getComputedStyle(document.documentElement);
    const okColour = css.getPropertyValue('--ok').trim() || '#009e73';
    const failColour = css.getPropertyValue('--net').trim() || '#d55e00';
    const axisColour = css.getPropertyValue('--muted').trim() || '#5a6370';
    // Successes left of the minute's tick, failures right of it.
    const okBars = window.uPlot.paths.bars({ size: [0.45, 10], align: -1 });
    const failBars = window.uPlot.paths.bars({ size: [0.45, 10], align: 1 });
    const axis = { stroke: axisColour, grid: { stroke: 'rgba(128,128,128,0.15)' },
      ticks: { stroke: 'rgba(128,128,128,0.3)' } };
    chart = new window.uPlot(Object.assign(chartSize(), {
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      // Half a minute of room on each side keeps the edge minutes' bars in.
      scales: {
        x: { time: true, range: (u, lo, hi) => [lo - 30, hi + 30] },
        y: { range: (u, lo, hi) => [0, Math.max(1, hi)] },
      },
      axes: [axis, Object.assign({ size: 40 }, axis)],
      series: [
        { label: 'minute' },
        { label: 'ok', stroke: okColour, fill: okColour, paths: okBars,
          points: { show: false } },
        { label: 'failed', stroke: failColour, fill: failColour, paths: failBars,
          points: { show: false } },
      ],
    }), data, el.chart);
  }

  window.addEventListener('resize', later(200, () => {
    if (chart) {
      chart.setSize(chartSize());
    }
  }));

  el.window.addEventListener('change', () => {
    windowName = el.window.value;
    writeURL();
    updateLinks();
    loadOverview();
  });

  setInterval(renderOverview, 30000);

  // --- the clients table ---------------------------------------------------

  const clients = new Map(); // clientKey -> client
  const clientGen = new Map(); // clientKey -> generation of the last message
  let generation = 0;
  let clientState = 'unknown'; // 'kept', 'none' (server keeps none) or 'unknown'
  let clientSort = { by: 'state', desc: false };

  function applyClient(c) {
    if (!c || !c.client_ip) {
      return;
    }
    const key = M.clientKey(c);
    clients.set(key, c);
    clientGen.set(key, generation);
    clientState = 'kept';
    renderClientsSoon();
    renderOverviewSoon();
    if (cv.key === key) {
      cv.client = c;
      renderClientView();
      refetchTimeline();
    }
  }

  // sweepClients forgets the clients that the catch-up of this generation
  // did not mention: the server no longer has them.
  function sweepClients() {
    for (const [key, gen] of clientGen) {
      if (gen !== generation) {
        clients.delete(key);
        clientGen.delete(key);
      }
    }
    renderClients();
    openPendingView();
  }

  // A shared address may name a client (view=IP) to show once it is known.
  let pendingView = params.get('view') || '';

  function openPendingView() {
    if (!pendingView) {
      return;
    }
    for (const [key, c] of clients) {
      if (c.client_ip === pendingView) {
        pendingView = '';
        openClient(key);
        return;
      }
    }
  }

  function loadClients() {
    const q = { client: filters.client, user: filters.user };
    getJSON('api/v1/clients', q).then((body) => {
      // The stream's snapshot is newer than this answer once it is in.
      if (synced) {
        return;
      }
      for (const c of body.clients || []) {
        if (!clients.has(M.clientKey(c))) {
          applyClient(c);
        }
      }
      clientState = 'kept';
      renderClients();
      openPendingView();
    }).catch((err) => {
      if (err.status === 503) {
        clientState = 'none';
        renderClients();
      }
    });
  }

  // agreementTag shows the lasterror an endpoint reported itself and how
  // it compares with the expected one; compact puts them on two lines.
  function agreementTag(c, compact) {
    if (!c.agreement) {
      return node('span', 'muted', '\u2013');
    }
    const span = node('span', 'agreement ag-' + c.agreement);
    const tag = node('span', 'tag', c.agreement.replace('_', ' '));
    if (compact) {
      span.append(node('div', 'code', String(c.reported_lasterror || 0)), node('div', 'sub'));
      span.children[1].append(tag);
    } else {
      span.append(document.createTextNode(lasterrorLabel(c.reported_lasterror || 0) + ' '), tag);
    }
    return span;
  }

  function renderClients() {
    const now = Date.now();
    const list = M.sortClients(clients.values(), clientSort.by, clientSort.desc);
    const shown = list.slice(0, CLIENT_ROWS);
    const trs = shown.map((c) => {
      const key = M.clientKey(c);
      const tr = node('tr', 'cs-' + (c.state || 'unknown') + (cv.key === key ? ' selected' : ''));
      tr.dataset.key = key;
      tr.dataset.client = c.client_ip;
      tr.tabIndex = 0;
      const who = node('td', 'client');
      who.append(node('div', 'ip', c.client_ip));
      if (c.client_user) {
        who.append(node('div', 'user', c.client_user));
      }
      const state = node('td', 'state');
      state.append(stateBadge(c.state));
      const diag = node('td', 'diagnosis', c.diagnosis || '\u2013');
      if ((c.diagnoses || []).length > 1) {
        diag.append(node('span', 'more', ' +' + (c.diagnoses.length - 1)));
        diag.title = c.diagnoses.map((d) => d.name).join(', ');
      }
      const exp = node('td', 'expected');
      exp.append(node('div', 'code', String(c.expected_lasterror || 0)));
      const sub = node('div', 'sub', c.expected_lasterror ?
        String(M.signedCode(c.expected_lasterror)) + ' ' : '');
      if (c.lasterror_basis) {
        sub.append(node('span', 'tag basis-' + c.lasterror_basis, c.lasterror_basis));
      }
      exp.append(sub);
      exp.title = c.lasterror_reason || '';
      const rep = node('td', 'reported');
      rep.append(agreementTag(c, true));
      const ok = node('td', c.last_tetra_ok ? 'tetra' : 'tetra never',
        c.last_tetra_ok ? M.relativeTime(c.last_tetra_ok, now) : 'never');
      ok.title = c.last_tetra_ok || 'no successful tetra download seen';
      const last = node('td', 'last', c.last_seen ? M.relativeTime(c.last_seen, now) : '');
      last.title = c.last_seen || '';
      tr.append(who, state, diag, exp, rep, ok, last);
      return tr;
    });
    el.clients.replaceChildren(...trs);
    // The reported column shows once the endpoints' own values are in.
    el.clientsTable.classList.toggle('no-reported', !list.some((c) => c.agreement));
    el.clientsCount.textContent = list.length > shown.length ?
      shown.length + ' of ' + list.length : String(list.length || '');
    el.clientsEmpty.hidden = trs.length > 0;
    el.clientsEmpty.textContent = clientState === 'none' ?
      'This server keeps no client state.' : 'No clients yet.';
  }

  const renderClientsSoon = later(250, renderClients);

  function clientRowKey(e) {
    const tr = e.target.closest('tr');
    return tr && tr.dataset.key ? tr.dataset.key : '';
  }

  el.clients.addEventListener('click', (e) => {
    const key = clientRowKey(e);
    if (key) {
      openClient(key);
    }
  });
  el.clients.addEventListener('keydown', (e) => {
    const key = clientRowKey(e);
    if (key && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      openClient(key);
    }
  });

  el.clientsHead.addEventListener('click', (e) => {
    const th = e.target.closest('th');
    if (!th || !th.dataset.sort) {
      return;
    }
    const by = th.dataset.sort;
    clientSort = { by, desc: clientSort.by === by ? !clientSort.desc : false };
    for (const h of el.clientsHead.querySelectorAll('th')) {
      h.removeAttribute('aria-sort');
    }
    th.setAttribute('aria-sort', clientSort.desc ? 'descending' : 'ascending');
    renderClients();
  });

  setInterval(renderClients, 10000);

  // --- the client view -----------------------------------------------------

  const cv = { key: '', ip: '', client: null, events: [], load: 0 };

  function openClient(key) {
    const c = clients.get(key);
    if (!c) {
      return;
    }
    cv.key = key;
    cv.ip = c.client_ip;
    cv.client = c;
    cv.events = [];
    el.cv.hidden = false;
    writeURL();
    renderClients();
    renderClientView();
    loadTimeline();
  }

  function closeClient() {
    cv.key = '';
    cv.ip = '';
    cv.client = null;
    el.cv.hidden = true;
    writeURL();
    renderClients();
  }

  el.cvClose.addEventListener('click', closeClient);
  el.cvFilter.addEventListener('click', () => {
    if (cv.ip) {
      el.form.elements.client.value = cv.ip;
      applyFilters();
    }
  });

  function fact(dl, name, value) {
    if (value === undefined || value === null || value === '') {
      return;
    }
    const dd = node('dd');
    if (value instanceof Object && value.nodeType) {
      dd.append(value);
    } else {
      dd.textContent = String(value);
    }
    dl.append(node('dt', '', name), dd);
  }

  function renderClientView() {
    const c = cv.client;
    if (!c) {
      return;
    }
    const now = Date.now();
    el.cvIP.textContent = c.client_ip + (c.client_user ? ' (' + c.client_user + ')' : '');

    el.cvFacts.replaceChildren();
    fact(el.cvFacts, 'state', stateBadge(c.state));
    fact(el.cvFacts, 'sensor', c.sensor);
    fact(el.cvFacts, 'users', (c.users || []).join(', '));
    fact(el.cvFacts, 'first seen', c.first_seen && clockTime(c.first_seen));
    fact(el.cvFacts, 'last seen', c.last_seen &&
      clockTime(c.last_seen) + ' (' + M.relativeTime(c.last_seen, now) + ')');
    fact(el.cvFacts, 'last tetra ok', c.last_tetra_ok ?
      clockTime(c.last_tetra_ok) + ' (' + M.relativeTime(c.last_tetra_ok, now) + ')' : 'never');
    fact(el.cvFacts, 'tetra in window', (c.tetra_attempts || 0) + ' attempts, ' +
      (c.tetra_failures || 0) + ' failed');
    const counts = node('span', 'counts');
    for (const o of M.OUTCOMES) {
      const n = (c.counts || {})[o];
      if (n) {
        const b = badge('done', o);
        b.append(document.createTextNode(' ' + n));
        counts.append(b, document.createTextNode(' '));
      }
    }
    fact(el.cvFacts, 'events by outcome', counts.childNodes.length ? counts : 'none');

    // Expected against reported lasterror.
    const le = el.cvLasterror;
    le.replaceChildren();
    const exp = node('div', 'expected');
    const expText = M.lasterrorText(c.expected_lasterror);
    exp.append(node('span', 'what', 'expected '), node('b', 'code',
      lasterrorLabel(c.expected_lasterror)));
    if (expText.meaning) {
      exp.append(document.createTextNode(' ' + expText.meaning));
    }
    if (c.lasterror_basis) {
      exp.append(document.createTextNode(' '), node('span', 'tag basis-' + c.lasterror_basis,
        c.lasterror_basis));
    }
    le.append(exp);
    if (c.lasterror_reason) {
      le.append(node('p', 'reason', c.lasterror_reason));
    }
    const rep = node('div', 'reported');
    rep.append(node('span', 'what', 'reported '));
    if (c.agreement) {
      rep.append(agreementTag(c));
    } else {
      rep.append(node('span', 'muted',
        'not imported: upload the endpoints\' CSV above the clients table'));
    }
    le.append(rep);

    // Diagnoses, with their evidence linked to the timeline.
    const items = (c.diagnoses || []).map((d) => {
      const li = node('li', 'diagnosis');
      li.dataset.name = d.name;
      li.append(node('b', 'name', d.name));
      li.append(node('p', 'advice', d.advice || ''));
      const ev = node('p', 'evidence');
      ev.append(node('span', 'what', 'evidence: '));
      for (const id of d.evidence || []) {
        const a = node('a', 'evid', '#' + id);
        a.href = '#ev-' + id;
        a.dataset.id = String(id);
        ev.append(a, document.createTextNode(' '));
      }
      li.append(ev);
      return li;
    });
    if (items.length === 0) {
      items.push(node('li', 'none', c.state === 'healthy' ?
        'No diagnosis: the client downloads its definitions.' : 'No diagnosis yet.'));
    }
    el.cvDiagnoses.replaceChildren(...items);
    renderTimeline();
  }

  function evidenceOf(c) {
    const by = new Map(); // id -> diagnosis names
    for (const d of (c && c.diagnoses) || []) {
      for (const id of d.evidence || []) {
        by.set(id, (by.get(id) || []).concat(d.name));
      }
    }
    return by;
  }

  function loadTimeline() {
    const c = cv.client;
    if (!c) {
      return;
    }
    const n = ++cv.load;
    el.cvTimelineNote.textContent = 'loading\u2026';
    getJSON('api/v1/events', { client: c.client_ip, sensor: c.sensor, limit: TIMELINE_LIMIT })
      .then((body) => {
        if (n !== cv.load) {
          return null;
        }
        cv.events = body.events || [];
        return loadMissingEvidence(n);
      }).then(() => {
        if (n === cv.load) {
          renderTimeline();
        }
      }).catch((err) => {
        if (n === cv.load) {
          el.cvTimelineNote.textContent = 'loading failed (' + err.message + ')';
        }
      });
  }

  // loadMissingEvidence fetches evidence events older than the timeline,
  // one by one (a diagnosis lists at most 50).
  function loadMissingEvidence(n) {
    const have = new Set(cv.events.map((e) => e.id));
    const missing = Array.from(evidenceOf(cv.client).keys()).filter((id) => !have.has(id));
    return Promise.all(missing.slice(0, 50).map((id) =>
      getJSON('api/v1/events', { client: cv.ip, after: id - 1, before: id + 1, limit: 1 })
        .then((body) => body.events || []).catch(() => []))).then((lists) => {
      if (n !== cv.load) {
        return;
      }
      for (const list of lists) {
        cv.events.push(...list);
      }
      cv.events.sort((a, b) => b.id - a.id);
    });
  }

  const refetchTimeline = later(1000, loadTimeline);

  function renderTimeline() {
    const evidence = evidenceOf(cv.client);
    const rows = cv.events.map((ev) => {
      const tr = node('tr', M.isFailure(ev.outcome) ? 'failure' : '');
      tr.id = 'ev-' + ev.id;
      tr.dataset.id = String(ev.id);
      if (evidence.has(ev.id)) {
        tr.classList.add('evidence');
        tr.title = 'evidence for ' + evidence.get(ev.id).join(', ');
      }
      const o = node('td');
      o.append(badge(ev.outcome ? 'done' : 'open', ev.outcome));
      const host = node('td', 'host', ev.port ? (ev.host || '') + ':' + ev.port : (ev.host || ''));
      host.title = (ev.method || '') + ' ' + host.textContent;
      const detail = [ev.detail, ev.diagnosis && 'diagnosis: ' + ev.diagnosis]
        .filter(Boolean).join(' \u00b7 ');
      const d = node('td', 'detail', detail);
      d.title = detail;
      tr.append(node('td', 'time', clockTime(ev.time)), host, o,
        node('td', '', ev.lasterror ? String(ev.lasterror) : ''), d);
      return tr;
    });
    el.cvTimeline.replaceChildren(...rows);
    const found = cv.events.filter((e) => evidence.has(e.id)).length;
    el.cvTimelineNote.textContent = cv.events.length + ' events' +
      (evidence.size ? ', ' + found + ' of ' + evidence.size + ' evidence events shown' : '');
  }

  el.cvDiagnoses.addEventListener('click', (e) => {
    const a = e.target.closest('a');
    if (!a || !a.dataset.id) {
      return;
    }
    e.preventDefault();
    const tr = document.getElementById('ev-' + a.dataset.id);
    for (const old of el.cvTimeline.querySelectorAll('tr.focus')) {
      old.classList.remove('focus');
    }
    if (tr) {
      tr.classList.add('focus');
      tr.scrollIntoView({ block: 'center' });
    }
  });

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
    // Rows held while paused are not in the set: the catch-up sends them
    // again, and the pause buffer keeps each id once.
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
    generation++;
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
        if (msg.type === 'event' && overview.add(msg.event)) {
          renderOverviewSoon();
        }
        if (msg.type === 'event' && cv.ip && msg.event && msg.event.client_ip === cv.ip) {
          refetchTimeline();
        }
        if (paused) {
          pauseBuf.add(msg.type, msg.event);
          renderPausedSoon();
        } else {
          applyEvent(msg.type, msg.event);
        }
        break;
      case 'client':
        applyClient(msg.client);
        break;
      case 'stats':
        renderStats(msg.stats || {});
        if (!synced) {
          // The first stats message ends the catch-up: rows still open
          // that it did not mention ended while the page was away, and
          // clients it did not mention are gone.
          synced = true;
          for (const row of set.markLost()) {
            fillRow(rowEls.get(row.id), row);
          }
          sweepClients();
          changed();
        }
        break;
    }
  }

  const renderPausedSoon = later(250, renderPaused);

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

  // --- filters, links and the address ------------------------------------

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

  // writeURL puts the view in the address, so that it can be shared: the
  // filters, the window and the client shown.
  function writeURL() {
    const q = new URLSearchParams();
    if (token) {
      q.set('token', token);
    }
    for (const k of FILTERS) {
      if (filters[k]) {
        q.set(k, filters[k]);
      }
    }
    if (windowName !== '1h') {
      q.set('window', windowName);
    }
    if (cv.ip) {
      q.set('view', cv.ip);
    }
    const s = q.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
  }

  // updateLinks points the export links at the current filter.
  function updateLinks() {
    const q = Object.assign({}, filters, { limit: 10000 });
    el.exportCSV.href = apiURL('api/v1/events', Object.assign({ format: 'csv' }, q), true);
    el.exportJSON.href = apiURL('api/v1/events', Object.assign({ format: 'json' }, q), true);
    el.report.href = apiURL('api/v1/report', { format: 'html', since: windowName }, true);
  }

  // checkReport shows the report link, and the upload of the endpoints'
  // values that goes with reports, only when the server has a report.
  function checkReport() {
    el.report.hidden = true;
    api('api/v1/report', { format: 'html', since: windowName }, 'HEAD').then((r) => {
      el.report.hidden = !r.ok;
      el.upload.hidden = !r.ok;
    }).catch(() => {
      el.report.hidden = true;
    });
  }

  // uploadLastErrors sends the endpoints' own values; the server keeps
  // them and every client then shows whether its endpoint agrees.
  function uploadLastErrors(file) {
    const note = el.uploadNote;
    note.classList.remove('bad');
    note.textContent = 'sending ' + file.name + '…';
    const headers = { 'Content-Type': 'text/csv' };
    if (token) {
      headers.Authorization = 'Bearer ' + token;
    }
    fetch(apiURL('api/v1/lasterrors', {}, false), { method: 'POST', headers, body: file })
      .then((r) => r.json().catch(() => ({})).then((body) => {
        if (!r.ok) {
          throw new Error(body.error || 'the server answered ' + r.status);
        }
        note.textContent = file.name + ': ' + M.uploadSummary(body);
        return getJSON('api/v1/clients', { client: filters.client, user: filters.user });
      }))
      .then((body) => {
        for (const c of body.clients || []) {
          applyClient(c);
        }
      })
      .catch((err) => {
        note.classList.add('bad');
        note.textContent = file.name + ': ' + err.message;
      });
  }

  el.uploadFile.addEventListener('change', () => {
    const file = el.uploadFile.files[0];
    el.uploadFile.value = ''; // the same file can be sent again
    if (file) {
      uploadLastErrors(file);
    }
  });

  function applyFilters() {
    filters = readFilters();
    writeURL();
    updateLinks();
    reset();
    restart();
    loadOverview();
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
  if (params.get('window')) {
    windowName = params.get('window');
    el.window.value = windowName;
    if (el.window.value !== windowName) {
      windowName = '1h';
      el.window.value = windowName;
    }
  }

  el.form.addEventListener('submit', (e) => {
    e.preventDefault();
    applyFilters();
  });
  el.clear.addEventListener('click', () => {
    el.form.reset();
    applyFilters();
  });

  updateLinks();
  checkReport();
  changed();
  renderPaused();
  renderClients();
  loadOverview();
  loadClients();
  connect();
})();
