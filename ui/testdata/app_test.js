// Runs static/app.js under Node against a minimal document, run by
// TestPageModel. It checks the page's behaviour on stream messages (rows
// updated in place, the cap, the summary, reconnects with after=) without a
// browser; layout and styles are for the browser tests.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

// --- a minimal document: only what app.js uses --------------------------

class El {
  constructor(tag, text) {
    this.tagName = tag.toUpperCase();
    this.childNodes = [];
    this.parentNode = null;
    this.text = text || '';
    this.className = '';
    this.dataset = {};
    this.title = '';
    this.hidden = false;
    this.value = '';
    this.listeners = {};
    const self = this;
    this.classList = {
      add(c) {
        if (!self.classes().includes(c)) self.className = (self.className + ' ' + c).trim();
      },
      remove(c) { self.className = self.classes().filter((x) => x !== c).join(' '); },
      toggle(c, on) { if (on) this.add(c); else this.remove(c); },
      contains(c) { return self.classes().includes(c); },
    };
  }
  classes() { return this.className.split(/\s+/).filter(Boolean); }
  get children() { return this.childNodes.filter((n) => n.tagName !== '#TEXT'); }
  get textContent() { return this.text + this.childNodes.map((n) => n.textContent).join(''); }
  set textContent(v) { this.childNodes = []; this.text = String(v); }
  adopt(n) {
    if (typeof n === 'string') n = new El('#text', n);
    if (n.parentNode) n.remove();
    n.parentNode = this;
    return n;
  }
  append(...ns) { for (const n of ns) this.childNodes.push(this.adopt(n)); }
  prepend(n) { this.childNodes.unshift(this.adopt(n)); }
  after(n) {
    const p = this.parentNode;
    const m = p.adopt(n);
    p.childNodes.splice(p.childNodes.indexOf(this) + 1, 0, m);
  }
  remove() {
    if (this.parentNode) {
      const sib = this.parentNode.childNodes;
      sib.splice(sib.indexOf(this), 1);
      this.parentNode = null;
    }
  }
  replaceChildren(...ns) { this.childNodes = []; this.text = ''; this.append(...ns); }
  closest(sel) {
    for (let n = this; n; n = n.parentNode) if (n.tagName === sel.toUpperCase()) return n;
    return null;
  }
  addEventListener(type, fn) { this.listeners[type] = fn; }
  setAttribute(k, v) { this.attrs = Object.assign(this.attrs || {}, { [k]: String(v) }); }
  getAttribute(k) { return this.attrs && k in this.attrs ? this.attrs[k] : null; }
  removeAttribute(k) { if (this.attrs) delete this.attrs[k]; }
  // querySelectorAll supports 'tag' and 'tag.class', which is all app.js asks.
  querySelectorAll(sel) {
    const [tag, cls] = sel.toUpperCase().split('.');
    const out = [];
    const walk = (n) => {
      for (const c of n.children) {
        if (c.tagName === tag && (!cls || c.classes().map((x) => x.toUpperCase()).includes(cls))) {
          out.push(c);
        }
        walk(c);
      }
    };
    walk(this);
    return out;
  }
  scrollIntoView() { this.scrolledTo = true; }
}

function makePage() {
  const byId = {};
  for (const id of ['conn', 'conn-text', 'stats', 'sensor', 'filters', 'clear', 'count',
    'empty', 'clients-empty', 'detail', 'detail-empty', 'export-csv', 'export-json',
    'report-html', 'window', 'overview-note', 'outcome-counts', 'diagnosis-counts', 'chart',
    'pause', 'paused', 'events-scroll', 'older', 'older-note', 'clients-count', 'client-view',
    'cv-ip', 'cv-filter', 'cv-close', 'cv-facts', 'cv-lasterror', 'cv-diagnoses',
    'cv-timeline-note', 'clients', 'events', 'detail-panel', 'upload', 'upload-file',
    'upload-note']) {
    byId[id] = new El('div');
  }
  byId.window.value = '1h';
  byId['client-view'].hidden = true;
  const form = byId.filters;
  form.elements = {};
  for (const name of ['client', 'user', 'host', 'endpoint', 'outcome', 'q']) {
    form.elements[name] = new El(name === 'endpoint' || name === 'outcome' ? 'select' : 'input');
  }
  form.reset = () => { for (const e of Object.values(form.elements)) e.value = ''; };
  const tables = {
    '#events tbody': new El('tbody'), '#clients tbody': new El('tbody'),
    '#clients thead': new El('thead'), '#cv-timeline tbody': new El('tbody'),
  };
  const document = {
    documentElement: new El('html'),
    getElementById: (id) => byId[id] ||
      tables['#cv-timeline tbody'].children.find((tr) => tr.id === id) || null,
    querySelector: (sel) => tables[sel],
    createElement: (tag) => new El(tag),
    createTextNode: (t) => new El('#text', t),
  };
  return { byId, tables, document };
}

class FakeSocket {
  constructor(url) {
    this.url = new URL(url);
    this.closed = false;
    FakeSocket.all.push(this);
  }
  close() { this.closed = true; }
  send(type, event) { this.onmessage({ data: JSON.stringify({ type, event }) }); }
  stats(stats) { this.onmessage({ data: JSON.stringify({ type: 'stats', stats }) }); }
  client(client) { this.onmessage({ data: JSON.stringify({ type: 'client', client }) }); }
}
FakeSocket.all = [];

// load runs the page with the address search. api, when given, answers
// the page's fetches: api(method, url) returns {status, body} or undefined
// for a 404; without it the page has no fetch at all.
function load(search, api) {
  FakeSocket.all = [];
  const page = makePage();
  const timers = [];
  const fetches = [];
  const intervals = [];
  const history = { url: '', replaceState(_s, _t, u) { history.url = u; } };
  const ctx = {
    document: page.document,
    location: new URL('http://127.0.0.1:8128/' + (search || '')),
    history,
    addEventListener() {},
    WebSocket: FakeSocket,
    setTimeout: (fn) => { timers.push(fn); return timers.length; },
    clearTimeout: () => {},
    setInterval: (fn, ms) => { intervals.push({ fn, ms }); return intervals.length; },
    URL, URLSearchParams, Date, Math, JSON, Number, String, Object, Array, Map, Set,
  };
  if (api) {
    ctx.fetch = (url, opts) => {
      const u = new URL(url);
      const method = (opts && opts.method) || 'GET';
      fetches.push({ method, url: u, headers: (opts && opts.headers) || {} });
      const r = api(method, u) || { status: 404, body: { error: 'not found' } };
      return Promise.resolve({
        ok: r.status >= 200 && r.status < 300, status: r.status,
        json: () => Promise.resolve(r.body),
      });
    };
  }
  ctx.window = ctx;
  ctx.self = ctx;
  vm.createContext(ctx);
  for (const f of ['model.js', 'app.js']) {
    const file = path.join(__dirname, '..', 'static', f);
    vm.runInContext(fs.readFileSync(file, 'utf8'), ctx, { filename: file });
  }
  const runTimers = () => { while (timers.length) timers.shift()(); };
  return {
    ...page, runTimers, fetches, history,
    every: (ms) => { for (const i of intervals) if (i.ms === ms) i.fn(); },
    sock: () => FakeSocket.all[FakeSocket.all.length - 1],
  };
}

function ev(id, extra) {
  return Object.assign({
    id, time: new Date(Date.UTC(2026, 2, 1, 12, 0, id % 60)).toISOString(),
    client_ip: '10.0.0.1', method: 'CONNECT', host: 'tetra-defs.amp.cisco.com', port: 443,
    endpoint: 'tetra', outcome: '', status: 0, bytes_up: 0, bytes_down: 0, duration_ms: 0,
    lasterror: 0, detail: '',
  }, extra || {});
}

const rows = (p) => p.tables['#events tbody'].children;
const clientRows = (p) => p.tables['#clients tbody'].children;

// cl is a client row as /api/v1/clients and client messages carry it.
function cl(ip, state, extra) {
  return Object.assign({
    client_ip: ip, client_user: '', users: [], sensor: 'e2e',
    first_seen: '2026-03-01T10:00:00Z', last_seen: '2026-03-01T12:00:00Z',
    last_tetra_ok: null, tetra_attempts: 0, tetra_failures: 0, counts: { ok: 0 },
    state, diagnosis: '', diagnoses: [], expected_lasterror: 0, lasterror_basis: 'inferred',
    lasterror_reason: '',
  }, extra || {});
}

function diag(name, evidence) {
  return { name, evidence, advice: 'advice for ' + name };
}
const cell = (tr, i) => tr.children[i].textContent;

// --- the tests ------------------------------------------------------------

test('first connection asks for a backfill and carries the token', () => {
  const p = load('?token=s3cret&client=10.0.0.1');
  const u = p.sock().url;
  assert.equal(u.protocol, 'ws:');
  assert.equal(u.pathname, '/api/v1/stream');
  assert.equal(u.searchParams.get('backfill'), '1000');
  assert.equal(u.searchParams.get('token'), 's3cret');
  assert.equal(u.searchParams.get('client'), '10.0.0.1');
  assert.equal(u.searchParams.get('after'), null);
});

test('an open row is updated in place, newest first', () => {
  const p = load('');
  const s = p.sock();
  s.onopen();
  assert.equal(p.byId['conn-text'].textContent, 'connected');
  s.send('event', ev(1, { outcome: 'ok', status: 200, bytes_down: 5 << 20, duration_ms: 850 }));
  s.stats({ events_total: 1, dropped: 0, active: 0, viewers: 1, sensor: 'branch-1' });
  s.send('open', ev(3));

  assert.equal(rows(p).length, 2);
  assert.equal(rows(p)[0].dataset.id, '3');
  assert.match(cell(rows(p)[0], 6), /open/);
  assert.equal(cell(rows(p)[0], 4), 'tetra-defs.amp.cisco.com:443');
  assert.equal(cell(rows(p)[1], 8), '0 B / 5.0 MiB');
  assert.equal(cell(rows(p)[1], 9), '850 ms');

  const detail = '<img src=x onerror=alert(1)>';
  s.send('event', ev(3, { outcome: 'tls_aborted', lasterror: 4294965187, detail }));
  assert.equal(rows(p).length, 2, 'the event replaced its open row');
  assert.match(cell(rows(p)[0], 6), /tls_aborted/);
  assert.equal(cell(rows(p)[0], 10), '4294965187');
  assert.match(rows(p)[0].children[10].title, /-2109/);
  assert.equal(cell(rows(p)[0], 11), detail, 'text stays text');
  assert.ok(rows(p)[0].classList.contains('failure'));

  // A plain request, sent only when it ended, lands in id order.
  s.send('event', ev(2, { method: 'GET', endpoint: 'revocation', outcome: 'http_error' }));
  assert.deepEqual(rows(p).map((r) => r.dataset.id), ['3', '2', '1']);

  assert.match(p.byId.stats.textContent, /events 1/);
  assert.equal(p.byId.sensor.textContent, 'branch-1');
});

// The clients table comes from the server's client state (client
// messages), not from the events shown: a client's row is there even when
// none of its events is.
test('client messages fill the clients table, failing and silent first', () => {
  const p = load('');
  const s = p.sock();
  s.onopen();
  s.client(cl('10.0.0.9', 'healthy', { last_tetra_ok: '2026-03-01T11:00:00Z' }));
  s.client(cl('10.0.0.2', 'silent', { diagnosis: 'silent', expected_lasterror: 4294965193,
    lasterror_basis: 'inferred' }));
  s.client(cl('10.0.0.10', 'failing', {
    diagnosis: 'dns', diagnoses: [diag('dns', [4]), diag('connect_blocked', [5])],
    expected_lasterror: 4294965187, lasterror_basis: 'documented',
    reported_lasterror: 4294965196, agreement: 'disagree', client_user: 'CORP\\svc',
  }));
  s.stats({});
  p.runTimers();

  const trs = clientRows(p);
  assert.deepEqual(trs.map((tr) => tr.dataset.client), ['10.0.0.10', '10.0.0.2', '10.0.0.9']);
  const failing = trs[0];
  assert.match(cell(failing, 0), /10\.0\.0\.10.*CORP/);
  assert.match(cell(failing, 1), /failing/);
  assert.equal(cell(failing, 2), 'dns +1');
  assert.equal(cell(failing, 3), '4294965187-2109 documented');
  assert.equal(cell(failing, 4), '4294965196disagree');
  assert.equal(cell(failing, 5), 'never');
  assert.equal(cell(trs[1], 3), '4294965193-2103 inferred');
  assert.equal(cell(trs[2], 4), '\u2013');
  assert.equal(p.byId['clients-empty'].hidden, true);

  // A click on a header sorts by that column; a second one reverses it.
  const head = p.tables['#clients thead'];
  const th = (key) => Object.assign(new (head.constructor)('th'), { dataset: { sort: key } });
  head.listeners.click({ target: th('client') });
  assert.deepEqual(clientRows(p).map((tr) => tr.dataset.client),
    ['10.0.0.2', '10.0.0.9', '10.0.0.10'], 'addresses in numeric order');
  head.listeners.click({ target: th('client') });
  assert.deepEqual(clientRows(p).map((tr) => tr.dataset.client),
    ['10.0.0.10', '10.0.0.9', '10.0.0.2']);

  // A change replaces the row in place.
  s.client(cl('10.0.0.10', 'healthy', {}));
  p.runTimers();
  assert.equal(clientRows(p).length, 3);
  assert.match(cell(clientRows(p).find((tr) => tr.dataset.client === '10.0.0.10'), 1),
    /healthy/);
});

// After a restart of the server the page reconnects; the catch-up's client
// messages are the whole list, even when every event came from the
// backfill and none of them is new.
test('a reconnect keeps the clients the catch-up lists and forgets the others', () => {
  const p = load('');
  let s = p.sock();
  s.onopen();
  s.send('event', ev(1, { outcome: 'dns_failure', host: 'tetra-defs.eu.amp.cisco.com' }));
  s.client(cl('10.0.0.1', 'failing', { diagnosis: 'dns' }));
  s.client(cl('10.0.0.7', 'unknown', {}));
  s.stats({});
  p.runTimers();
  assert.equal(clientRows(p).length, 2);

  s.onclose({ code: 1006, reason: '' });
  p.runTimers();
  s = p.sock();
  s.onopen();
  s.client(cl('10.0.0.1', 'failing', { diagnosis: 'dns' }));
  s.stats({});
  p.runTimers();
  assert.deepEqual(clientRows(p).map((tr) => tr.dataset.client), ['10.0.0.1']);
  assert.equal(p.byId['clients-empty'].hidden, true, 'never "No clients yet" with clients');
});

test('a reconnect resumes after the last id, below open tunnels', () => {
  const p = load('');
  let s = p.sock();
  s.onopen();
  s.send('event', ev(5, { outcome: 'ok' }));
  s.send('open', ev(7));
  s.send('open', ev(8));
  s.send('event', ev(9, { outcome: 'ok' }));
  s.stats({});
  s.onclose({ code: 1013, reason: 'too slow' });
  assert.match(p.byId['conn-text'].textContent, /^reconnecting in \d+ s \(too slow\)$/);

  p.runTimers();
  s = p.sock();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(s.url.searchParams.get('after'), '6');
  assert.equal(s.url.searchParams.get('backfill'), null);

  // The catch-up replays 7's end and lists 8 as still open; nothing of 9
  // comes again, and no row is duplicated.
  s.onopen();
  s.send('event', ev(7, { outcome: 'download_aborted' }));
  s.send('event', ev(9, { outcome: 'ok' }));
  s.send('open', ev(8));
  s.stats({});
  assert.deepEqual(rows(p).map((r) => r.dataset.id), ['9', '8', '7', '5']);
  assert.match(cell(rows(p)[1], 6), /open/);
  assert.match(cell(rows(p)[2], 6), /download_aborted/);
});

test('open rows that a reconnect does not mention are marked as ended', () => {
  const p = load('');
  let s = p.sock();
  s.onopen();
  s.send('open', ev(3));
  s.stats({});
  s.onclose({ code: 1006, reason: '' });
  p.runTimers();
  s = p.sock();
  s.onopen();
  s.stats({});
  assert.match(cell(rows(p)[0], 6), /ended\?/);
});

test('the table keeps the newest 2000 rows', () => {
  const p = load('');
  const s = p.sock();
  s.onopen();
  for (let id = 1; id <= 2100; id++) {
    s.send('event', ev(id, { outcome: 'ok' }));
  }
  assert.equal(rows(p).length, 2000);
  assert.equal(rows(p)[0].dataset.id, '2100');
  assert.equal(rows(p)[1999].dataset.id, '101');
  assert.match(p.byId.count.textContent, /newest 2000/);
});

test('filters restart the stream with a fresh backfill', () => {
  const p = load('?token=t');
  const s = p.sock();
  s.onopen();
  s.send('event', ev(1, { outcome: 'ok' }));
  p.byId.filters.elements.outcome.value = 'tls_aborted';
  p.byId.filters.listeners.submit({ preventDefault() {} });
  assert.ok(s.closed);
  const u = p.sock().url;
  assert.equal(u.searchParams.get('outcome'), 'tls_aborted');
  assert.equal(u.searchParams.get('backfill'), '1000');
  assert.equal(u.searchParams.get('token'), 't');
  assert.equal(rows(p).length, 0);
});

const flush = () => new Promise((resolve) => setImmediate(resolve));

// api answers the page's fetches from fixed data: the window's events, the
// clients, a client's timeline, single events by id, and a report that
// exists only when report is true.
function fakeAPI(data) {
  return (method, u) => {
    const q = u.searchParams;
    switch (u.pathname) {
      case '/api/v1/events': {
        let evs = (data.events || []).slice().sort((a, b) => b.id - a.id);
        if (q.get('client')) evs = evs.filter((e) => e.client_ip === q.get('client'));
        if (q.get('outcome')) evs = evs.filter((e) => e.outcome === q.get('outcome'));
        if (q.get('after')) evs = evs.filter((e) => e.id > Number(q.get('after')));
        if (q.get('before')) evs = evs.filter((e) => e.id < Number(q.get('before')));
        return { status: 200, body: { events: evs.slice(0, Number(q.get('limit') || 100)) } };
      }
      case '/api/v1/clients':
        return data.clients ? { status: 200, body: { clients: data.clients } } :
          { status: 503, body: { error: 'no client state' } };
      case '/api/v1/active':
        return { status: 200, body: { active: data.active || [] } };
      case '/api/v1/report':
        return data.report ? { status: 200, body: {} } : undefined;
      case '/api/v1/lasterrors':
        return method === 'POST' && data.upload ? data.upload() : undefined;
    }
    return undefined;
  };
}

test('a click on a client shows its diagnoses, evidence, lasterrors and timeline', async () => {
  const now = Date.now();
  const at = (id) => new Date(now - (100 - id) * 1000).toISOString();
  const events = [
    ev(3, { time: at(3), outcome: 'ok', client_ip: '10.0.0.5' }),
    ev(4, { time: at(4), outcome: 'dns_failure', host: 'tetra-defs.eu.amp.cisco.com',
      lasterror: 4294965187, diagnosis: 'dns', client_ip: '10.0.0.5' }),
    ev(6, { time: at(6), outcome: 'ok', client_ip: '10.0.0.6' }),
    ev(9, { time: at(9), outcome: 'dns_failure', host: 'tetra-defs.eu.amp.cisco.com',
      lasterror: 4294965187, diagnosis: 'dns', client_ip: '10.0.0.5' }),
  ];
  const client = cl('10.0.0.5', 'failing', {
    diagnosis: 'dns', diagnoses: [diag('dns', [4, 9])], expected_lasterror: 4294965187,
    lasterror_basis: 'documented', lasterror_reason: 'a tetra name did not resolve',
    reported_lasterror: 4294965187, agreement: 'agree', counts: { ok: 1, dns_failure: 2 },
  });
  const p = load('', fakeAPI({ events, clients: [client] }));
  const s = p.sock();
  s.onopen();
  s.client(client);
  s.stats({});
  await flush();
  p.runTimers();

  clientRows(p)[0].children[0].parentNode.parentNode.listeners.click({
    target: clientRows(p)[0].children[1],
  });
  await flush();
  await flush();

  assert.equal(p.byId['client-view'].hidden, false);
  assert.match(p.byId['cv-ip'].textContent, /10\.0\.0\.5/);
  assert.match(p.history.url, /view=10\.0\.0\.5/, 'the client shown is in the address');
  const le = p.byId['cv-lasterror'].textContent;
  assert.match(le, /expected 4294965187 \(-2109\) connected to the proxy, download failed/);
  assert.match(le, /documented/);
  assert.match(le, /a tetra name did not resolve/);
  assert.match(le, /reported 4294965187 \(-2109\) agree/);
  const items = p.byId['cv-diagnoses'].children;
  assert.equal(items.length, 1);
  assert.equal(items[0].dataset.name, 'dns');
  assert.match(items[0].textContent, /advice for dns/);
  assert.match(items[0].textContent, /evidence: #4 #9/);

  // The timeline holds the client's events only, its evidence marked.
  const tl = p.tables['#cv-timeline tbody'].children;
  assert.deepEqual(tl.map((tr) => tr.dataset.id), ['9', '4', '3']);
  assert.deepEqual(tl.filter((tr) => tr.classList.contains('evidence'))
    .map((tr) => tr.dataset.id), ['9', '4']);
  assert.match(p.byId['cv-timeline-note'].textContent, /3 events, 2 of 2 evidence/);
  const q = p.fetches.find((f) => f.url.pathname === '/api/v1/events' &&
    f.url.searchParams.get('client') === '10.0.0.5').url.searchParams;
  assert.equal(q.get('sensor'), 'e2e');

  // An evidence link brings its event into view.
  const link = items[0].children.find((c) => c.classList.contains('evidence')).children[1];
  p.byId['cv-diagnoses'].listeners.click({ target: link, preventDefault() {} });
  assert.ok(tl[1].classList.contains('focus'));
  assert.ok(tl[1].scrolledTo);

  // The second click narrows the feed to the client.
  p.byId['cv-filter'].listeners.click();
  assert.equal(p.sock().url.searchParams.get('client'), '10.0.0.5');
  assert.match(p.history.url, /client=10\.0\.0\.5/);
});

test('pause holds new rows and resume shows them all, none twice', () => {
  const p = load('');
  const s = p.sock();
  s.onopen();
  s.send('event', ev(1, { outcome: 'ok' }));
  s.stats({});
  p.byId.pause.listeners.click();
  assert.equal(p.byId.pause.textContent, 'Resume');

  s.send('open', ev(2));
  s.send('event', ev(3, { outcome: 'tls_aborted' }));
  s.send('event', ev(2, { outcome: 'ok' }));
  s.send('open', ev(2)); // late: never replaces the end
  s.send('event', ev(1, { outcome: 'ok' }));
  p.runTimers();
  assert.deepEqual(rows(p).map((r) => r.dataset.id), ['1'], 'the table is frozen');
  assert.equal(p.byId.paused.hidden, false);
  assert.match(p.byId.paused.textContent, /3 new or changed rows held/);

  p.byId.pause.listeners.click();
  assert.deepEqual(rows(p).map((r) => r.dataset.id), ['3', '2', '1']);
  assert.match(cell(rows(p)[1], 6), /ok/);
  assert.equal(p.byId.paused.hidden, true);
});

test('a long pause keeps the newest rows the table would have kept', () => {
  const p = load('');
  const s = p.sock();
  s.onopen();
  s.stats({});
  p.byId.pause.listeners.click();
  for (let id = 1; id <= 5000; id++) {
    s.send('event', ev(id, { outcome: 'ok' }));
  }
  p.byId.pause.listeners.click();
  assert.equal(rows(p).length, 2000);
  assert.equal(rows(p)[0].dataset.id, '5000');
  assert.equal(rows(p)[1999].dataset.id, '3001');
});

test('older events are paged with before= below the oldest row', async () => {
  const events = [];
  for (let id = 1; id <= 1200; id++) {
    events.push(ev(id, { outcome: 'ok' }));
  }
  const p = load('?outcome=ok', fakeAPI({ events }));
  const s = p.sock();
  s.onopen();
  for (let id = 1001; id <= 1200; id++) {
    s.send('event', ev(id, { outcome: 'ok' }));
  }
  s.stats({});

  p.byId.older.listeners.click();
  await flush();
  const q = p.fetches.filter((f) => f.url.searchParams.get('before'))[0].url.searchParams;
  assert.equal(q.get('before'), '1001');
  assert.equal(q.get('outcome'), 'ok', 'the filter applies to older pages too');
  assert.equal(q.get('limit'), '500');
  assert.equal(rows(p).length, 700);
  assert.equal(rows(p)[699].dataset.id, '501');

  p.byId.older.listeners.click();
  await flush();
  assert.equal(rows(p).length, 1200);
  p.byId.older.listeners.click();
  await flush();
  assert.equal(rows(p).length, 1200);
  assert.match(p.byId['older-note'].textContent, /no older events match/);

  // Live rows still arrive on top of the paged ones.
  s.send('event', ev(1201, { outcome: 'ok' }));
  assert.equal(rows(p)[0].dataset.id, '1201');
  assert.equal(rows(p).length, 1201);
});

test('the address, export links and report link follow the filter', async () => {
  let p = load('?token=t0k&host=tetra-defs.amp.cisco.com&window=6h', fakeAPI({ report: false }));
  await flush();
  const csv = new URL(p.byId['export-csv'].href);
  assert.equal(csv.pathname, '/api/v1/events');
  assert.equal(csv.searchParams.get('format'), 'csv');
  assert.equal(csv.searchParams.get('host'), 'tetra-defs.amp.cisco.com');
  assert.equal(csv.searchParams.get('limit'), '10000');
  assert.equal(csv.searchParams.get('token'), 't0k');
  assert.equal(new URL(p.byId['export-json'].href).searchParams.get('format'), 'json');
  assert.equal(p.byId['report-html'].hidden, true, 'no report: the link stays hidden');
  const head = p.fetches.find((f) => f.url.pathname === '/api/v1/report');
  assert.equal(head.method, 'HEAD');
  assert.equal(head.headers.Authorization, 'Bearer t0k');
  assert.equal(head.url.searchParams.get('token'), null, 'fetches send the token in a header');
  assert.equal(head.url.searchParams.get('since'), '6h');

  p.byId.filters.elements.outcome.value = 'dns_failure';
  p.byId.filters.listeners.submit({ preventDefault() {} });
  assert.equal(new URL(p.byId['export-csv'].href).searchParams.get('outcome'), 'dns_failure');
  const u = new URL(p.history.url, 'http://x/');
  assert.equal(u.searchParams.get('outcome'), 'dns_failure');
  assert.equal(u.searchParams.get('host'), 'tetra-defs.amp.cisco.com');
  assert.equal(u.searchParams.get('window'), '6h');
  assert.equal(u.searchParams.get('token'), 't0k');

  p = load('', fakeAPI({ report: true }));
  await flush();
  assert.equal(p.byId['report-html'].hidden, false, 'a report: the link shows');
});

test('the overview counts the window once per event, history and live', async () => {
  const now = Date.now();
  const recent = (id, extra) => ev(id, Object.assign({
    time: new Date(now - (10 - id) * 60000).toISOString(),
  }, extra));
  const events = [
    recent(1, { outcome: 'ok' }),
    recent(2, { outcome: 'dns_failure', diagnosis: 'dns' }),
    recent(3, { outcome: 'ok', endpoint: 'revocation' }),
  ];
  const p = load('?client=10.0.0.1', fakeAPI({ events }));
  const q = p.fetches.find((f) => f.url.pathname === '/api/v1/events' &&
    f.url.searchParams.get('since')).url.searchParams;
  assert.equal(q.get('since'), '1h');
  assert.equal(q.get('client'), '10.0.0.1', 'the overview follows the filter');
  await flush();
  const s = p.sock();
  s.onopen();
  s.send('event', events[1]); // replayed: counted once
  s.send('event', recent(4, { outcome: 'dns_failure', diagnosis: 'dns' }));
  s.send('open', recent(5));
  s.client(cl('10.0.0.1', 'failing', { diagnosis: 'dns', diagnoses: [diag('dns', [2, 4])] }));
  s.stats({});
  p.runTimers();

  const counters = p.byId['outcome-counts'].children;
  assert.match(counters[0].textContent, /^4events$/);
  const byOutcome = Object.fromEntries(counters.slice(1).map((c) =>
    [c.dataset.outcome, c.children[0].textContent]));
  assert.deepEqual(byOutcome, { ok: '2', dns_failure: '2' });
  const diags = p.byId['diagnosis-counts'].children;
  assert.equal(diags.length, 1);
  assert.equal(diags[0].dataset.diagnosis, 'dns');
  assert.match(diags[0].textContent, /^1dns2 ev$/);

  // A click on an outcome counter narrows the feed to it.
  p.byId['outcome-counts'].listeners.click({ target: counters[2] });
  assert.equal(p.sock().url.searchParams.get('outcome'), 'dns_failure');
});

test('open rows show their bytes so far, from /api/v1/active', async () => {
  const active = [ev(7, { bytes_up: 600, bytes_down: 3 << 20 })];
  const p = load('', fakeAPI({ active }));
  const s = p.sock();
  s.onopen();
  s.send('open', ev(7));
  s.send('event', ev(8, { outcome: 'ok' }));
  s.stats({});
  assert.equal(cell(rows(p)[1], 8), '0 B / 0 B');
  p.every(1000);
  await flush();
  assert.equal(cell(rows(p)[1], 8), '600 B / 3.0 MiB');
  assert.match(cell(rows(p)[1], 6), /open/);

  // Once ended, the row shows the event's own counts.
  s.send('event', ev(7, { outcome: 'ok', bytes_up: 700, bytes_down: 4 << 20 }));
  p.every(1000);
  await flush();
  assert.equal(cell(rows(p)[1], 8), '700 B / 4.0 MiB');
  assert.equal(p.fetches.filter((f) => f.url.pathname === '/api/v1/active').length, 1,
    'no open row, no request');
});

test('the endpoints\' CSV is uploaded from the page and the clients show it', async () => {
  let reported = false;
  const client = () => cl('10.0.0.7', 'failing', reported ?
    { reported_lasterror: 4294965196, agreement: 'disagree' } : {});
  const data = { report: true, clients: [client()] };
  data.upload = () => {
    reported = true;
    data.clients = [client()];
    return { status: 200, body: { endpoints: 2, errors: [{ line: 4, error: 'no lasterror' }] } };
  };
  const p = load('?token=t0k', fakeAPI(data));
  await flush();
  p.runTimers();
  assert.equal(p.byId.upload.hidden, false, 'a report: the upload shows');

  p.byId['upload-file'].files = [{ name: 'endpoints.csv' }];
  p.byId['upload-file'].listeners.change();
  await flush();
  p.runTimers();
  const post = p.fetches.find((f) => f.method === 'POST');
  assert.equal(post.url.pathname, '/api/v1/lasterrors');
  assert.equal(post.headers.Authorization, 'Bearer t0k');
  assert.equal(post.headers['Content-Type'], 'text/csv');
  assert.equal(p.byId['upload-note'].textContent,
    'endpoints.csv: 2 endpoints in use; 1 row not used (line 4: no lasterror)');
  assert.match(clientRows(p)[0].textContent, /4294965196/, 'the client shows the reported value');

  // A refused upload says why.
  data.upload = () => ({ status: 400, body: { error: 'no lasterror column' } });
  p.byId['upload-file'].files = [{ name: 'other.csv' }];
  p.byId['upload-file'].listeners.change();
  await flush();
  assert.equal(p.byId['upload-note'].textContent, 'other.csv: no lasterror column');
  assert.equal(p.byId['upload-note'].classList.contains('bad'), true);
});
