// The live page's model: the events it holds and what it derives from them,
// with no DOM, so that it can be tested under Node as well as run in the
// browser (where it is window.TetraModel).
(function (root, factory) {
  'use strict';
  const model = factory();
  if (typeof module === 'object' && module.exports) {
    module.exports = model;
  } else {
    root.TetraModel = model;
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  // The outcomes of DESIGN.md, in the order of the API.
  const OUTCOMES = [
    'ok', 'dns_failure', 'connect_refused', 'connect_timeout',
    'upstream_unreachable', 'upstream_refused', 'auth_required', 'auth_failed',
    'tls_aborted', 'download_aborted', 'http_error', 'denied', 'bad_request',
    'unreachable',
  ];
  const ENDPOINTS = ['tetra', 'revocation', 'amp', 'other'];

  // Outcome groups share a colour; each also has a symbol, so that colour is
  // never the only cue.
  const GROUPS = {
    ok: { cls: 'g-ok', sym: '\u2713' },
    auth_required: { cls: 'g-challenge', sym: '\u21bb' },
    auth_failed: { cls: 'g-auth', sym: '\u2717' },
    dns_failure: { cls: 'g-net', sym: '\u2717' },
    connect_refused: { cls: 'g-net', sym: '\u2717' },
    connect_timeout: { cls: 'g-net', sym: '\u2717' },
    unreachable: { cls: 'g-net', sym: '\u2717' },
    upstream_unreachable: { cls: 'g-upstream', sym: '\u2717' },
    upstream_refused: { cls: 'g-upstream', sym: '\u2717' },
    tls_aborted: { cls: 'g-transfer', sym: '\u2717' },
    download_aborted: { cls: 'g-transfer', sym: '\u2717' },
    http_error: { cls: 'g-http', sym: '\u2717' },
    denied: { cls: 'g-policy', sym: '\u2298' },
    bad_request: { cls: 'g-policy', sym: '\u2298' },
  };

  // The lasterror codes of DOMAIN.md, by their signed value.
  const LASTERRORS = {
    '-2103': 'cannot connect to the proxy',
    '-2100': 'proxy authentication failed',
    '-2109': 'connected to the proxy, download failed',
    '-2108': 'connection timeout (inferred)',
  };

  // isFailure mirrors inspect.Outcome.Failure: anything but ok and the
  // normal first step of an authentication challenge.
  function isFailure(outcome) {
    return !!outcome && outcome !== 'ok' && outcome !== 'auth_required';
  }

  // outcomeLabel returns how a row's outcome is shown: a text label, a CSS
  // class and a symbol. state is 'open', 'done' or 'lost'.
  function outcomeLabel(state, outcome) {
    if (state === 'open') {
      return { text: 'open', cls: 'g-open', sym: '\u25cb' };
    }
    if (state === 'lost') {
      return { text: 'ended?', cls: 'g-lost', sym: '?' };
    }
    const g = GROUPS[outcome] || { cls: 'g-policy', sym: '?' };
    return { text: outcome || 'unknown', cls: g.cls, sym: g.sym };
  }

  // EventSet holds at most cap events keyed by id, in id order (ids increase
  // with start time). A row is 'open' (started, no outcome yet), 'done' (its
  // event arrived) or 'lost' (it was open, and a reconnect neither replayed
  // its end nor listed it as open: it ended unrecorded while the page was
  // away).
  class EventSet {
    constructor(cap) {
      this.cap = cap;
      this.rows = new Map();
      this.ids = []; // ascending
      this.maxId = 0;
      this.generation = 0;
    }

    get size() {
      return this.ids.length;
    }

    // apply merges one stream message. It returns {row, inserted} or null
    // when the message changes nothing: an open for an event already ended,
    // or an event older than every row of a full set.
    apply(type, ev) {
      if ((type !== 'open' && type !== 'event') || !ev || typeof ev.id !== 'number') {
        return null;
      }
      const id = ev.id;
      const state = type === 'open' ? 'open' : 'done';
      let row = this.rows.get(id);
      if (id > this.maxId) {
        this.maxId = id;
      }
      if (row) {
        row.seen = this.generation;
        if (state === 'open' && row.state === 'done') {
          return null;
        }
        row.ev = ev;
        row.state = state;
        return { row, inserted: false };
      }
      if (this.ids.length >= this.cap && id < this.ids[0]) {
        return null;
      }
      row = { id, ev, state, seen: this.generation };
      this.rows.set(id, row);
      this.ids.splice(this.indexOf(id), 0, id);
      return { row, inserted: true };
    }

    // indexOf returns where id is or would be in the ascending ids.
    indexOf(id) {
      let lo = 0;
      let hi = this.ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.ids[mid] < id) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      return lo;
    }

    // idAbove returns the next greater id held (the row shown above id in a
    // newest-first table), or undefined when id is the newest.
    idAbove(id) {
      const i = this.indexOf(id);
      const j = this.ids[i] === id ? i + 1 : i;
      return this.ids[j];
    }

    // evict drops the oldest rows beyond cap and returns their ids.
    evict() {
      const n = this.ids.length - this.cap;
      if (n <= 0) {
        return [];
      }
      const gone = this.ids.splice(0, n);
      for (const id of gone) {
        this.rows.delete(id);
      }
      return gone;
    }

    // resumeAfter is the after= of a reconnect: the newest id seen, or just
    // below the oldest row still open, so that the end of a tunnel that
    // closed while the page was away is replayed too. 0: nothing held.
    resumeAfter() {
      let after = this.maxId;
      for (const row of this.rows.values()) {
        if (row.state === 'open' && row.id - 1 < after) {
          after = row.id - 1;
        }
      }
      return after;
    }

    // oldestId returns the smallest id held, or 0 when empty.
    oldestId() {
      return this.ids.length ? this.ids[0] : 0;
    }

    // grow raises the cap by n rows, to at most max, so that older pages
    // fit below the rows held; it returns how many rows now fit.
    grow(n, max) {
      this.cap = Math.min(max, Math.max(this.cap, this.ids.length + n));
      return this.cap - this.ids.length;
    }

    // newGeneration starts a (re)connection.
    newGeneration() {
      this.generation++;
    }

    // markLost turns the open rows that the catch-up of this generation did
    // not mention into lost ones and returns them.
    markLost() {
      const lost = [];
      for (const row of this.rows.values()) {
        if (row.state === 'open' && row.seen !== this.generation) {
          row.state = 'lost';
          lost.push(row);
        }
      }
      return lost;
    }
  }

  // summarize computes the per-client panel from the rows: per client IP the
  // number of ended events, failures per outcome, the last tetra ok, and the
  // newest row. Clients that failed since their last tetra success (or have
  // none) come first, then the most recently seen.
  function summarize(rows) {
    const byClient = new Map();
    for (const row of rows) {
      const ev = row.ev;
      const key = ev.client_ip || '';
      let c = byClient.get(key);
      if (!c) {
        c = {
          client: key, user: '', events: 0, failures: new Map(), failureCount: 0,
          lastFailureId: 0, lastTetraOK: null, lastTetraOKId: 0, last: null,
        };
        byClient.set(key, c);
      }
      if (!c.last || row.id > c.last.id) {
        c.last = row;
        if (ev.client_user) {
          c.user = ev.client_user;
        }
      }
      if (row.state !== 'done') {
        continue;
      }
      c.events++;
      if (isFailure(ev.outcome)) {
        c.failures.set(ev.outcome, (c.failures.get(ev.outcome) || 0) + 1);
        c.failureCount++;
        c.lastFailureId = Math.max(c.lastFailureId, row.id);
      }
      if (ev.endpoint === 'tetra' && ev.outcome === 'ok' && row.id > c.lastTetraOKId) {
        c.lastTetraOKId = row.id;
        c.lastTetraOK = ev.time;
      }
    }
    const list = Array.from(byClient.values());
    for (const c of list) {
      c.attention = c.lastFailureId > c.lastTetraOKId;
    }
    list.sort((a, b) => {
      if (a.attention !== b.attention) {
        return a.attention ? -1 : 1;
      }
      return b.last.id - a.last.id;
    });
    return list;
  }

  // humanBytes writes a byte count in binary units.
  function humanBytes(n) {
    if (typeof n !== 'number' || !isFinite(n) || n < 0) {
      return '';
    }
    if (n < 1024) {
      return n + ' B';
    }
    const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = n;
    let u = -1;
    do {
      v /= 1024;
      u++;
    } while (v >= 1024 && u < units.length - 1);
    return (v < 10 ? v.toFixed(1) : Math.round(v).toString()) + ' ' + units[u];
  }

  // humanDuration writes milliseconds the way a person reads a stopwatch.
  function humanDuration(ms) {
    if (typeof ms !== 'number' || !isFinite(ms) || ms < 0) {
      return '';
    }
    if (ms < 10) {
      return ms.toFixed(1) + ' ms';
    }
    if (ms < 1000) {
      return Math.round(ms) + ' ms';
    }
    const s = ms / 1000;
    if (s < 60) {
      return s.toFixed(1) + ' s';
    }
    const total = Math.round(s);
    if (total < 3600) {
      return Math.floor(total / 60) + 'm ' + String(total % 60).padStart(2, '0') + 's';
    }
    const m = Math.floor(total / 60);
    return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  }

  // relativeTime writes how long ago t (an RFC 3339 string) was.
  function relativeTime(t, now) {
    const d = Math.max(0, (now - Date.parse(t)) / 1000);
    if (!isFinite(d)) {
      return '';
    }
    if (d < 60) {
      return Math.floor(d) + 's ago';
    }
    if (d < 3600) {
      return Math.floor(d / 60) + 'm ago';
    }
    if (d < 86400) {
      return Math.floor(d / 3600) + 'h ago';
    }
    return Math.floor(d / 86400) + 'd ago';
  }

  // lasterrorText writes a non-zero code with its signed form and meaning;
  // zero gives ''.
  function lasterrorText(code) {
    if (!code) {
      return { text: '', meaning: '' };
    }
    const signed = signedCode(code);
    let meaning = LASTERRORS[String(signed)];
    if (!meaning && signed <= -2100 && signed >= -2199) {
      meaning = 'network or proxy class, unmapped';
    }
    return { text: code + ' (' + signed + ')', meaning: meaning || '' };
  }

  // --- the overview ------------------------------------------------------

  const MINUTE = 60000;

  // parseWindow reads a window such as '15m', '1h' or '24h' into
  // milliseconds; anything else gives an hour.
  function parseWindow(w) {
    const m = /^(\d+)([mh])$/.exec(w || '');
    if (!m || Number(m[1]) <= 0) {
      return 60 * MINUTE;
    }
    return Number(m[1]) * (m[2] === 'h' ? 60 : 1) * MINUTE;
  }

  // Overview counts ended events per minute: per outcome, per diagnosis,
  // and tetra successes and failures, for a sliding window. Each event id
  // is counted once, however often it arrives (a replay after a reconnect
  // sends some again).
  class Overview {
    constructor(windowMs) {
      this.windowMs = windowMs;
      this.reset();
    }

    reset() {
      this.buckets = new Map(); // minute start (ms) -> bucket
      this.seen = new Map(); // id -> minute start
    }

    // add counts one ended event; it returns false when the event is open,
    // malformed or already counted.
    add(ev) {
      if (!ev || typeof ev.id !== 'number' || !ev.outcome || this.seen.has(ev.id)) {
        return false;
      }
      const t = Date.parse(ev.time);
      if (!isFinite(t)) {
        return false;
      }
      const minute = Math.floor(t / MINUTE) * MINUTE;
      let b = this.buckets.get(minute);
      if (!b) {
        b = { total: 0, tetraOK: 0, tetraFail: 0, outcomes: new Map(), diagnoses: new Map() };
        this.buckets.set(minute, b);
      }
      b.total++;
      b.outcomes.set(ev.outcome, (b.outcomes.get(ev.outcome) || 0) + 1);
      if (ev.diagnosis) {
        b.diagnoses.set(ev.diagnosis, (b.diagnoses.get(ev.diagnosis) || 0) + 1);
      }
      if (ev.endpoint === 'tetra') {
        if (ev.outcome === 'ok') {
          b.tetraOK++;
        } else if (isFailure(ev.outcome)) {
          b.tetraFail++;
        }
      }
      this.seen.set(ev.id, minute);
      return true;
    }

    // first is the start of the oldest minute inside the window at now.
    first(now) {
      return Math.floor((now - this.windowMs) / MINUTE) * MINUTE + MINUTE;
    }

    // prune forgets the minutes that left the window.
    prune(now) {
      const first = this.first(now);
      let gone = false;
      for (const minute of this.buckets.keys()) {
        if (minute < first) {
          this.buckets.delete(minute);
          gone = true;
        }
      }
      if (gone) {
        for (const [id, minute] of this.seen) {
          if (minute < first) {
            this.seen.delete(id);
          }
        }
      }
    }

    // counts sums the window: events, per outcome, per diagnosis, tetra
    // successes and failures.
    counts(now) {
      const first = this.first(now);
      const c = { total: 0, tetraOK: 0, tetraFail: 0, outcomes: new Map(), diagnoses: new Map() };
      for (const [minute, b] of this.buckets) {
        if (minute < first) {
          continue;
        }
        c.total += b.total;
        c.tetraOK += b.tetraOK;
        c.tetraFail += b.tetraFail;
        for (const [k, n] of b.outcomes) {
          c.outcomes.set(k, (c.outcomes.get(k) || 0) + n);
        }
        for (const [k, n] of b.diagnoses) {
          c.diagnoses.set(k, (c.diagnoses.get(k) || 0) + n);
        }
      }
      return c;
    }

    // series returns the chart's data: every minute of the window, in
    // seconds since the epoch, with the tetra successes and failures of
    // each (zero included).
    series(now) {
      const xs = [];
      const ok = [];
      const fail = [];
      const last = Math.floor(now / MINUTE) * MINUTE;
      for (let m = this.first(now); m <= last; m += MINUTE) {
        const b = this.buckets.get(m);
        xs.push(m / 1000);
        ok.push(b ? b.tetraOK : 0);
        fail.push(b ? b.tetraFail : 0);
      }
      return [xs, ok, fail];
    }
  }

  // --- clients -------------------------------------------------------------

  // The order of states: the ones that need attention first.
  const STATE_RANK = { failing: 0, silent: 1, unknown: 2, healthy: 3 };

  // The diagnoses of DESIGN.md, in their order of priority.
  const DIAGNOSES = [
    'proxy_auth', 'upstream_proxy', 'dns', 'revocation_blocked', 'revocation_outside',
    'tls_interception', 'connect_blocked', 'interrupted_download', 'silent',
  ];

  // clientKey identifies a client: one address seen by one sensor.
  function clientKey(c) {
    return (c.sensor || '') + '|' + (c.client_ip || '');
  }

  // compareIP orders IPv4 addresses numerically, anything else as text.
  function compareIP(a, b) {
    const pa = /^\d+\.\d+\.\d+\.\d+$/.test(a) ? a.split('.').map(Number) : null;
    const pb = /^\d+\.\d+\.\d+\.\d+$/.test(b) ? b.split('.').map(Number) : null;
    if (pa && pb) {
      for (let i = 0; i < 4; i++) {
        if (pa[i] !== pb[i]) {
          return pa[i] - pb[i];
        }
      }
      return 0;
    }
    return String(a || '').localeCompare(String(b || ''));
  }

  function timeOf(t) {
    const v = t ? Date.parse(t) : NaN;
    return isFinite(v) ? v : -Infinity;
  }

  function rankOf(c) {
    return c.state in STATE_RANK ? STATE_RANK[c.state] : 4;
  }

  function diagnosisRank(c) {
    const i = DIAGNOSES.indexOf(c.diagnosis);
    return i < 0 ? DIAGNOSES.length : i;
  }

  // The sort keys of the clients table. Each compares two clients in the
  // column's natural order; 'state' is the default: failing, silent,
  // unknown, healthy, and the most recently seen first within a state.
  const CLIENT_SORTS = {
    state: (a, b) => rankOf(a) - rankOf(b) || timeOf(b.last_seen) - timeOf(a.last_seen),
    client: (a, b) => compareIP(a.client_ip, b.client_ip) ||
      String(a.sensor || '').localeCompare(String(b.sensor || '')),
    diagnosis: (a, b) => diagnosisRank(a) - diagnosisRank(b) || rankOf(a) - rankOf(b),
    expected: (a, b) => (b.expected_lasterror || 0) - (a.expected_lasterror || 0),
    reported: (a, b) => (b.reported_lasterror || 0) - (a.reported_lasterror || 0) ||
      String(a.agreement || '').localeCompare(String(b.agreement || '')),
    tetra: (a, b) => timeOf(a.last_tetra_ok) - timeOf(b.last_tetra_ok),
    last: (a, b) => timeOf(b.last_seen) - timeOf(a.last_seen),
  };

  // sortClients returns the clients ordered by the column by (a key of
  // CLIENT_SORTS), reversed when desc; ties fall back to the default order,
  // then the address, so the order is stable.
  function sortClients(list, by, desc) {
    const f = CLIENT_SORTS[by] || CLIENT_SORTS.state;
    const out = Array.from(list);
    out.sort((a, b) => (desc ? f(b, a) : f(a, b)) || CLIENT_SORTS.state(a, b) ||
      CLIENT_SORTS.client(a, b));
    return out;
  }

  // --- pausing -------------------------------------------------------------

  // PauseBuffer keeps the feed's messages while the feed is paused: per
  // event id only the latest (an event replaces its open, an open never
  // replaces its event), and only the newest cap ids, since a table that
  // keeps cap rows would evict older ones anyway. Nothing is lost that the
  // unpaused table would have shown.
  class PauseBuffer {
    constructor(cap) {
      this.cap = cap;
      this.msgs = new Map(); // id -> {type, ev}
      this.evicted = 0;
    }

    get size() {
      return this.msgs.size;
    }

    add(type, ev) {
      if ((type !== 'open' && type !== 'event') || !ev || typeof ev.id !== 'number') {
        return;
      }
      const old = this.msgs.get(ev.id);
      if (old && old.type === 'event' && type === 'open') {
        return;
      }
      this.msgs.set(ev.id, { type, ev });
      // Evict in batches, so that a long pause costs a sort now and then,
      // not one per message.
      if (this.msgs.size > this.cap + Math.max(16, this.cap >> 3)) {
        const ids = Array.from(this.msgs.keys()).sort((a, b) => a - b);
        for (const id of ids.slice(0, ids.length - this.cap)) {
          this.msgs.delete(id);
          this.evicted++;
        }
      }
    }

    // drain returns the newest cap messages, oldest first, and empties the
    // buffer.
    drain() {
      let out = Array.from(this.msgs.values()).sort((a, b) => a.ev.id - b.ev.id);
      if (out.length > this.cap) {
        this.evicted += out.length - this.cap;
        out = out.slice(out.length - this.cap);
      }
      this.msgs.clear();
      return out;
    }
  }

  // signedCode returns the signed form of a lasterror code.
  function signedCode(code) {
    return code >= 2147483648 ? code - 4294967296 : code;
  }

  // uploadSummary says what the server did with an upload of the
  // endpoints' values: {endpoints, errors: [{line, error}]}. The first
  // rows not used are named with their lines, the rest counted.
  function uploadSummary(res, shown) {
    const n = res.endpoints || 0;
    let text = n + (n === 1 ? ' endpoint' : ' endpoints') + ' in use';
    const errs = res.errors || [];
    if (errs.length === 0) {
      return text;
    }
    const max = shown || 3;
    const named = errs.slice(0, max).map((e) => 'line ' + e.line + ': ' + e.error);
    if (errs.length > max) {
      named.push((errs.length - max) + ' more');
    }
    text += '; ' + errs.length + (errs.length === 1 ? ' row' : ' rows') + ' not used (' +
      named.join('; ') + ')';
    return text;
  }

  return {
    uploadSummary, OUTCOMES, ENDPOINTS, DIAGNOSES, EventSet, summarize, isFailure, outcomeLabel,
    humanBytes, humanDuration, relativeTime, lasterrorText, signedCode,
    parseWindow, Overview, STATE_RANK, clientKey, compareIP, sortClients, PauseBuffer,
  };
});
