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
}

function makePage() {
  const byId = {};
  for (const id of ['conn', 'conn-text', 'stats', 'sensor', 'filters', 'clear', 'count',
    'empty', 'clients-empty', 'detail', 'detail-empty']) {
    byId[id] = new El('div');
  }
  const form = byId.filters;
  form.elements = {};
  for (const name of ['client', 'user', 'host', 'endpoint', 'outcome', 'q']) {
    form.elements[name] = new El(name === 'endpoint' || name === 'outcome' ? 'select' : 'input');
  }
  form.reset = () => { for (const e of Object.values(form.elements)) e.value = ''; };
  const tables = { '#events tbody': new El('tbody'), '#clients tbody': new El('tbody') };
  const document = {
    getElementById: (id) => byId[id],
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
}
FakeSocket.all = [];

function load(search) {
  FakeSocket.all = [];
  const page = makePage();
  const timers = [];
  const ctx = {
    document: page.document,
    location: new URL('http://127.0.0.1:8128/' + (search || '')),
    history: { replaceState() {} },
    WebSocket: FakeSocket,
    setTimeout: (fn) => { timers.push(fn); return timers.length; },
    clearTimeout: () => {},
    setInterval: () => 0,
    URL, URLSearchParams, Date, Math, JSON, Number, String, Object, Array, Map, Set,
  };
  ctx.window = ctx;
  ctx.self = ctx;
  vm.createContext(ctx);
  for (const f of ['model.js', 'app.js']) {
    const file = path.join(__dirname, '..', 'static', f);
    vm.runInContext(fs.readFileSync(file, 'utf8'), ctx, { filename: file });
  }
  const runTimers = () => { while (timers.length) timers.shift()(); };
  return { ...page, runTimers, sock: () => FakeSocket.all[FakeSocket.all.length - 1] };
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

test('the client summary counts failures and the last tetra ok', () => {
  const p = load('');
  const s = p.sock();
  s.onopen();
  s.send('event', ev(1, { outcome: 'ok' }));
  s.send('event', ev(2, { outcome: 'tls_aborted' }));
  s.send('event', ev(3, { outcome: 'tls_aborted' }));
  s.send('event', ev(4, { client_ip: '10.0.0.2', outcome: 'ok' }));
  p.runTimers();
  const clients = p.tables['#clients tbody'].children;
  assert.equal(clients.length, 2);
  assert.equal(clients[0].dataset.client, '10.0.0.1', 'the failing client first');
  assert.ok(clients[0].classList.contains('attention'));
  assert.equal(cell(clients[0], 1), '3');
  assert.match(cell(clients[0], 2), /tls_aborted 2/);
  assert.match(cell(clients[0], 3), /ago/);
  assert.equal(cell(clients[1], 2), '\u2013');
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
