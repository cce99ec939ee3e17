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

test('windows', () => {
  assert.equal(M.parseWindow('15m'), 15 * 60000);
  assert.equal(M.parseWindow('6h'), 6 * 3600000);
  assert.equal(M.parseWindow('nonsense'), 3600000);
  assert.equal(M.parseWindow('0h'), 3600000);
});

test('the overview counts per minute, once per id, and slides', () => {
  const base = Date.UTC(2026, 2, 1, 12, 0, 0);
  const at = (min, sec) => new Date(base + min * 60000 + sec * 1000).toISOString();
  const o = new M.Overview(10 * 60000);
  assert.equal(o.add(ev(1, { time: at(0, 5), outcome: 'ok' })), true);
  assert.equal(o.add(ev(1, { time: at(0, 5), outcome: 'ok' })), false, 'counted once');
  o.add(ev(2, { time: at(0, 30), outcome: 'tls_aborted', diagnosis: 'revocation_outside' }));
  o.add(ev(3, { time: at(3, 0), outcome: 'auth_required' }));
  o.add(ev(4, { time: at(3, 1), outcome: 'dns_failure', endpoint: 'revocation',
    diagnosis: 'dns' }));
  o.add(ev(5, { time: at(9, 59), outcome: 'ok' }));
  assert.equal(o.add(ev(6, { time: at(9, 59) })), false, 'an open event is not counted');
  assert.equal(o.add(ev(7, { time: 'garbage', outcome: 'ok' })), false);

  const now = base + 9 * 60000 + 59000;
  const c = o.counts(now);
  assert.equal(c.total, 5);
  assert.deepEqual(Object.fromEntries(c.outcomes),
    { ok: 2, tls_aborted: 1, auth_required: 1, dns_failure: 1 });
  assert.deepEqual(Object.fromEntries(c.diagnoses), { revocation_outside: 1, dns: 1 });
  assert.equal(c.tetraOK, 2);
  assert.equal(c.tetraFail, 1, 'a challenge and revocation traffic are not tetra failures');

  const [xs, ok, fail] = o.series(now);
  assert.equal(xs.length, 10, 'one point per minute of the window');
  assert.equal(xs[0], base / 1000);
  assert.deepEqual(ok, [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(fail, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

  // Two minutes later the first minute has left the window, and its ids
  // are forgotten.
  o.prune(now + 2 * 60000);
  const later = o.counts(now + 2 * 60000);
  assert.equal(later.total, 3);
  assert.equal(o.seen.has(1), false);
  assert.equal(o.seen.has(5), true);
});

test('clients sort failing and silent first, then by any column', () => {
  const c = (ip, state, extra) => Object.assign({
    client_ip: ip, sensor: 's', state, last_seen: '2026-03-01T12:00:00Z',
  }, extra || {});
  const list = [
    c('10.0.0.20', 'healthy', { last_tetra_ok: '2026-03-01T11:00:00Z' }),
    c('10.0.0.3', 'unknown'),
    c('10.0.0.100', 'silent', { diagnosis: 'silent', expected_lasterror: 4294965193 }),
    c('10.0.0.4', 'failing', { diagnosis: 'dns', expected_lasterror: 4294965187,
      last_seen: '2026-03-01T11:00:00Z' }),
    c('10.0.0.5', 'failing', { diagnosis: 'proxy_auth', expected_lasterror: 4294965196 }),
  ];
  const ips = (l) => l.map((x) => x.client_ip);
  assert.deepEqual(ips(M.sortClients(list)),
    ['10.0.0.5', '10.0.0.4', '10.0.0.100', '10.0.0.3', '10.0.0.20'],
    'failing (most recent first), silent, unknown, healthy');
  assert.deepEqual(ips(M.sortClients(list, 'client')),
    ['10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.20', '10.0.0.100']);
  assert.deepEqual(ips(M.sortClients(list, 'client', true)),
    ['10.0.0.100', '10.0.0.20', '10.0.0.5', '10.0.0.4', '10.0.0.3']);
  assert.deepEqual(ips(M.sortClients(list, 'diagnosis')).slice(0, 3),
    ['10.0.0.5', '10.0.0.4', '10.0.0.100'], 'in the order of priority of diagnoses');
  assert.deepEqual(ips(M.sortClients(list, 'expected')).slice(0, 3),
    ['10.0.0.5', '10.0.0.100', '10.0.0.4']);
  assert.equal(M.sortClients(list, 'tetra', true)[0].client_ip, '10.0.0.20');
  assert.equal(M.clientKey(list[0]), 's|10.0.0.20');
  assert.equal(list[0].client_ip, '10.0.0.20', 'the input is not reordered');
});

test('the pause buffer keeps the latest message per id and the newest ids', () => {
  const b = new M.PauseBuffer(100);
  b.add('open', ev(1));
  b.add('event', ev(1, { outcome: 'ok' }));
  b.add('open', ev(1));
  b.add('stats', ev(2));
  assert.equal(b.size, 1);
  for (let id = 2; id <= 1000; id++) {
    b.add('event', ev(id, { outcome: 'ok' }));
  }
  assert.ok(b.size <= 100 + 16, 'bounded while paused: ' + b.size);
  const out = b.drain();
  assert.equal(out.length, 100);
  assert.equal(out[0].ev.id, 901);
  assert.equal(out[99].ev.id, 1000);
  assert.equal(b.size, 0);
  assert.equal(b.evicted, 900);
});

test('an event set grows for older pages up to a maximum', () => {
  const s = new M.EventSet(3);
  for (const id of [10, 11, 12]) {
    s.apply('event', ev(id, { outcome: 'ok' }));
  }
  assert.equal(s.oldestId(), 10);
  assert.equal(s.apply('event', ev(9, { outcome: 'ok' })), null, 'full');
  assert.equal(s.grow(2, 4), 1);
  assert.ok(s.apply('event', ev(9, { outcome: 'ok' })));
  assert.equal(s.grow(2, 4), 0, 'at the maximum');
  assert.equal(new M.EventSet(5).oldestId(), 0);
  assert.equal(M.signedCode(4294965187), -2109);
});

test('an upload summary names the first rows not used', () => {
  assert.equal(M.uploadSummary({ endpoints: 1, errors: [] }), '1 endpoint in use');
  assert.equal(M.uploadSummary({ endpoints: 12, errors: [{ line: 4, error: 'no lasterror' }] }),
    '12 endpoints in use; 1 row not used (line 4: no lasterror)');
  const errors = [5, 6, 7, 9, 11].map((line) => ({ line, error: 'bad ip' }));
  assert.equal(M.uploadSummary({ endpoints: 0, errors }, 2),
    '0 endpoints in use; 5 rows not used (line 5: bad ip; line 6: bad ip; 3 more)');
});
