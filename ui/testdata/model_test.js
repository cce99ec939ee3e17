// Tests of static/model.js under Node, run by TestPageModel.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const M = require('../static/model.js');

function ev(id, extra) {
  return Object.assign({
    id, time: new Date(Date.UTC(2026, 2, 1, 12, 0, id)).toISOString(),
    client_ip: '10.0.0.1', endpoint: 'tetra', host: 'tetra-defs.amp.cisco.com', port: 443,
  }, extra || {});
}

test('an open row is updated in place by its event', () => {
  const s = new M.EventSet(10);
  const a = s.apply('open', ev(5));
  assert.equal(a.inserted, true);
  assert.equal(a.row.state, 'open');
  const b = s.apply('event', ev(5, { outcome: 'ok' }));
  assert.equal(b.inserted, false);
  assert.equal(b.row, a.row);
  assert.equal(b.row.state, 'done');
  assert.equal(b.row.ev.outcome, 'ok');
  assert.equal(s.size, 1);
});

test('an open after the end changes nothing', () => {
  const s = new M.EventSet(10);
  s.apply('event', ev(5, { outcome: 'tls_aborted' }));
  assert.equal(s.apply('open', ev(5)), null);
  assert.equal(s.rows.get(5).state, 'done');
  assert.equal(s.rows.get(5).ev.outcome, 'tls_aborted');
  assert.equal(s.apply('stats', ev(6)), null);
  assert.equal(s.apply('event', { time: 'x' }), null);
});

test('rows stay in id order and know their neighbour above', () => {
  const s = new M.EventSet(10);
  for (const id of [10, 5, 7, 12]) {
    s.apply('event', ev(id, { outcome: 'ok' }));
  }
  assert.deepEqual(s.ids, [5, 7, 10, 12]);
  assert.equal(s.idAbove(5), 7);
  assert.equal(s.idAbove(10), 12);
  assert.equal(s.idAbove(12), undefined);
});

test('the set keeps the newest cap rows', () => {
  const s = new M.EventSet(3);
  for (let id = 1; id <= 5; id++) {
    s.apply('event', ev(id, { outcome: 'ok' }));
    s.evict();
  }
  assert.deepEqual(s.ids, [3, 4, 5]);
  assert.equal(s.rows.has(1), false);
  assert.equal(s.apply('event', ev(2, { outcome: 'ok' })), null, 'older than all, set full');
  const r = s.apply('event', ev(6, { outcome: 'ok' }));
  assert.equal(r.inserted, true);
  assert.deepEqual(s.evict(), [3]);
});

test('a reconnect resumes below the oldest open row', () => {
  const s = new M.EventSet(100);
  assert.equal(s.resumeAfter(), 0);
  for (let id = 1; id <= 10; id++) {
    s.apply('event', ev(id, { outcome: 'ok' }));
  }
  assert.equal(s.resumeAfter(), 10);
  s.apply('open', ev(12));
  s.apply('open', ev(11));
  assert.equal(s.resumeAfter(), 10);
  s.apply('event', ev(11, { outcome: 'ok' }));
  assert.equal(s.resumeAfter(), 11);
  s.apply('event', ev(13, { outcome: 'ok' }));
  assert.equal(s.resumeAfter(), 11, 'tunnel 12 is still open');
});

test('open rows the catch-up did not mention are lost, until seen open again', () => {
  const s = new M.EventSet(100);
  s.apply('open', ev(4));
  s.apply('open', ev(6));
  s.newGeneration();
  s.apply('open', ev(6)); // listed as open by the new connection
  const lost = s.markLost();
  assert.deepEqual(lost.map((r) => r.id), [4]);
  assert.equal(s.rows.get(4).state, 'lost');
  assert.equal(s.rows.get(6).state, 'open');
  s.apply('event', ev(4, { outcome: 'download_aborted' }));
  assert.equal(s.rows.get(4).state, 'done');
});

test('the summary counts per client and puts failing ones first', () => {
  const s = new M.EventSet(100);
  s.apply('event', ev(1, { client_ip: '10.0.0.2', outcome: 'ok' }));
  s.apply('event', ev(2, { outcome: 'ok' }));
  s.apply('event', ev(3, { outcome: 'auth_required', client_user: 'CORP\\svc' }));
  s.apply('event', ev(4, { outcome: 'tls_aborted' }));
  s.apply('event', ev(5, { outcome: 'tls_aborted' }));
  s.apply('event', ev(6, { outcome: 'dns_failure', endpoint: 'revocation' }));
  s.apply('event', ev(7, { client_ip: '10.0.0.2', outcome: 'ok' }));
  s.apply('open', ev(8, { client_ip: '10.0.0.2' }));
  s.apply('event', ev(9, { client_ip: '10.0.0.3', outcome: 'ok', endpoint: 'amp' }));

  const list = M.summarize(s.rows.values());
  assert.deepEqual(list.map((c) => c.client), ['10.0.0.1', '10.0.0.3', '10.0.0.2']);
  const [a, c, b] = list;
  assert.equal(a.attention, true);
  assert.equal(a.events, 5);
  assert.deepEqual(Object.fromEntries(a.failures), { tls_aborted: 2, dns_failure: 1 });
  assert.equal(a.lastTetraOK, ev(2).time);
  assert.equal(a.last.id, 6);
  assert.equal(b.attention, false);
  assert.equal(b.events, 2, 'the open row is not an ended event');
  assert.equal(b.last.id, 8);
  assert.equal(b.last.state, 'open');
  assert.equal(c.lastTetraOK, null);
  assert.equal(c.attention, false);
});

test('human units', () => {
  assert.equal(M.humanBytes(0), '0 B');
  assert.equal(M.humanBytes(1023), '1023 B');
  assert.equal(M.humanBytes(1536), '1.5 KiB');
  assert.equal(M.humanBytes(5 * 1024 * 1024), '5.0 MiB');
  assert.equal(M.humanBytes(20 * 1024 * 1024), '20 MiB');
  assert.equal(M.humanBytes(-1), '');
  assert.equal(M.humanDuration(2.5), '2.5 ms');
  assert.equal(M.humanDuration(850), '850 ms');
  assert.equal(M.humanDuration(12300), '12.3 s');
  assert.equal(M.humanDuration(245000), '4m 05s');
  assert.equal(M.humanDuration(3720000), '1h 02m');
  const now = Date.parse('2026-03-01T12:10:00Z');
  assert.equal(M.relativeTime('2026-03-01T12:09:30Z', now), '30s ago');
  assert.equal(M.relativeTime('2026-03-01T12:00:00Z', now), '10m ago');
  assert.equal(M.relativeTime('2026-02-27T12:00:00Z', now), '2d ago');
});

test('lasterror codes', () => {
  assert.deepEqual(M.lasterrorText(0), { text: '', meaning: '' });
  assert.deepEqual(M.lasterrorText(4294965187),
    { text: '4294965187 (-2109)', meaning: 'connected to the proxy, download failed' });
  assert.equal(M.lasterrorText(4294965196).meaning, 'proxy authentication failed');
  assert.equal(M.lasterrorText(4294965150).meaning, 'network or proxy class, unmapped');
  assert.equal(M.lasterrorText(5).meaning, '');
});

test('outcome labels carry text and a symbol', () => {
  assert.equal(M.outcomeLabel('open', '').text, 'open');
  assert.equal(M.outcomeLabel('lost', '').text, 'ended?');
  const t = M.outcomeLabel('done', 'tls_aborted');
  assert.equal(t.text, 'tls_aborted');
  assert.equal(t.cls, 'g-transfer');
  for (const o of M.OUTCOMES) {
    const l = M.outcomeLabel('done', o);
    assert.ok(l.sym && l.cls && l.text === o, o);
  }
  assert.equal(M.isFailure('auth_required'), false);
  assert.equal(M.isFailure(''), false);
  assert.equal(M.isFailure('denied'), true);
});
