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
    const signed = code >= 2147483648 ? code - 4294967296 : code;
    let meaning = LASTERRORS[String(signed)];
    if (!meaning && signed <= -2100 && signed >= -2199) {
      meaning = 'network or proxy class, unmapped';
    }
    return { text: code + ' (' + signed + ')', meaning: meaning || '' };
  }

  return {
    OUTCOMES, ENDPOINTS, EventSet, summarize, isFailure, outcomeLabel,
    humanBytes, humanDuration, relativeTime, lasterrorText,
  };
});
