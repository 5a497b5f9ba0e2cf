// The ringkv dashboard. It polls the node that served it: GET /v1/cluster
// (this node's view: members, liveness, ring ownership, hints it keeps,
// anti-entropy freshness) and GET /ui/api/nodes (every alive member's own
// load, hints, anti-entropy rounds and partition moves, which the node
// gathers), and keeps the last minutes of load points for the charts.
// No framework, no inline script or style (the page's CSP forbids them):
// the DOM is built with createElement and textContent only.
'use strict';

(function () {
  const POLL_MS = 2000;
  const HISTORY_MS = 5 * 60 * 1000;
  const FETCH_TIMEOUT_MS = 4000;
  const SVGNS = 'http://www.w3.org/2000/svg';
  const PALETTE = [
    '#2563eb', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4',
    '#ec4899', '#84cc16', '#f97316', '#14b8a6', '#6366f1', '#a16207',
    '#0ea5e9', '#d946ef', '#22c55e', '#64748b',
  ];

  const state = {
    cluster: null,   // last GET /v1/cluster
    nodes: null,     // last GET /ui/api/nodes
    nodeErr: '',     // why the last /ui/api/nodes failed
    history: new Map(), // node ID -> [{t, rps, p99}] (null values: no answer)
    colors: new Map(),  // node ID -> colour, fixed once given
    ringSig: '',
    updates: 0,
    lastOK: null,
  };

  // --- DOM helpers ---------------------------------------------------------

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    return e;
  }

  function h(tag, attrs, ...children) {
    const e = setAttrs(document.createElement(tag), attrs);
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function s(tag, attrs) {
    return setAttrs(document.createElementNS(SVGNS, tag), attrs);
  }

  function byId(id) { return document.getElementById(id); }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  // --- formatting ----------------------------------------------------------

  function fmtRate(v) {
    if (v === null || v === undefined) return '–';
    return v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US');
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    if (v === 0) return '0';
    return v < 1 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US');
  }

  function fmtBytes(n) {
    if (!n) return '0 B';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  function fmtSecs(s) {
    if (s === null || s === undefined || s < 0) return '–';
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 90) return Math.round(s) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  function fmtClock(d) {
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }

  function color(id) {
    if (!state.colors.has(id)) state.colors.set(id, PALETTE[state.colors.size % PALETTE.length]);
    return state.colors.get(id);
  }

  function swatch(id) {
    const e = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    e.style.background = color(id); // CSSOM, allowed by the CSP
    return e;
  }

  function progress(done, total) {
    const bar = h('span');
    bar.style.width = (total > 0 ? Math.min(100, 100 * done / total) : 0).toFixed(1) + '%';
    return h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total, 'aria-valuenow': done }, bar);
  }

  // --- data ----------------------------------------------------------------

  async function getJSON(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const resp = await fetch(url, { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'application/json' } });
      if (!resp.ok) {
        const body = (await resp.text()).trim().slice(0, 200);
        throw new Error(resp.status + ' ' + body);
      }
      return await resp.json();
    } catch (e) {
      throw new Error(e.name === 'AbortError' ? 'no answer in ' + FETCH_TIMEOUT_MS / 1000 + ' s' : e.message);
    } finally {
      clearTimeout(timer);
    }
  }

  function record(nodes) {
    const now = Date.now();
    for (const n of nodes.nodes) {
      let hist = state.history.get(n.id);
      if (!hist) { hist = []; state.history.set(n.id, hist); }
      hist.push(n.load
        ? { t: now, rps: n.load.requests_per_second, p99: n.load.p99_ms }
        : { t: now, rps: null, p99: null });
    }
    for (const [id, hist] of state.history) {
      while (hist.length && hist[0].t < now - HISTORY_MS) hist.shift();
      if (!hist.length) state.history.delete(id);
    }
  }

  function nodeEntry(id) {
    if (!state.nodes) return null;
    return state.nodes.nodes.find((n) => n.id === id) || null;
  }

  async function poll() {
    const [c, n] = await Promise.allSettled([getJSON('../v1/cluster'), getJSON('api/nodes')]);
    const conn = byId('conn');
    if (c.status === 'fulfilled') {
      state.cluster = c.value;
      state.lastOK = new Date();
      state.updates++;
      // Colours in ID order the first time, then fixed.
      for (const m of [...state.cluster.members].sort((a, b) => (a.id < b.id ? -1 : 1))) color(m.id);
      conn.dataset.ok = 'true';
      conn.textContent = 'live';
    } else {
      conn.dataset.ok = 'false';
      conn.textContent = 'cannot reach ' + location.host + ': ' + c.reason.message +
        (state.lastOK ? ' — showing ' + fmtClock(state.lastOK) : '');
    }
    if (n.status === 'fulfilled') {
      state.nodes = n.value;
      state.nodeErr = '';
      record(n.value);
    } else {
      state.nodeErr = n.reason.message;
    }
    try {
      render();
    } catch (e) {
      conn.dataset.ok = 'false';
      conn.textContent = 'dashboard error: ' + e.message;
    }
    document.body.dataset.updates = String(state.updates);
    setTimeout(poll, POLL_MS);
  }

  // --- rendering -----------------------------------------------------------

  function render() {
    const c = state.cluster;
    if (!c) return;
    renderSummary(c);
    renderRing(c);
    renderMembers(c);
    renderCharts();
    renderHints();
    renderRepair();
    renderTransfers();
    byId('updated').textContent = 'updated ' + fmtClock(state.lastOK) +
      (state.nodeErr ? ' (members not asked: ' + state.nodeErr + ')' : '');
  }

  function renderSummary(c) {
    const up = c.members.filter((m) => m.alive).length;
    byId('seen-from').textContent = c.node_id;
    byId('sum-members').textContent = c.members.length + ' (' + up + ' up)';
    byId('sum-q').textContent = String(c.partitions);
    byId('sum-n').textContent = c.replicas_placed < c.replicas
      ? c.replicas + ' (' + c.replicas_placed + ' placed)' : String(c.replicas);
    byId('sum-rw').textContent = (c.default_r || '–') + ' / ' + (c.default_w || '–');
  }

  function arcPath(i, q) {
    const cx = 200, cy = 200, ro = 180, ri = 128;
    const a0 = (2 * Math.PI * i) / q - Math.PI / 2;
    const a1 = (2 * Math.PI * (i + 1)) / q - Math.PI / 2;
    const large = a1 - a0 > Math.PI ? 1 : 0;
    const p = (r, a) => (cx + r * Math.cos(a)).toFixed(2) + ' ' + (cy + r * Math.sin(a)).toFixed(2);
    return 'M' + p(ro, a0) + 'A' + ro + ' ' + ro + ' 0 ' + large + ' 1 ' + p(ro, a1) +
      'L' + p(ri, a1) + 'A' + ri + ' ' + ri + ' 0 ' + large + ' 0 ' + p(ri, a0) + 'Z';
  }

  function ringCenter(c) {
    const owners = Object.keys(c.ownership || {}).length;
    byId('ring-center-1').textContent = c.partitions ? 'Q ' + c.partitions : 'no ring';
    byId('ring-center-2').textContent = 'N ' + c.replicas + ' · ' + owners + ' owner' + (owners === 1 ? '' : 's');
  }

  function renderRing(c) {
    const alive = new Map(c.members.map((m) => [m.id, m.alive]));
    const sig = JSON.stringify([c.partitions, c.ownership, [...alive]]);
    if (sig === state.ringSig) return;
    state.ringSig = sig;
    const q = c.partitions || 0;
    const owner = new Array(q).fill('');
    for (const [id, ps] of Object.entries(c.ownership || {})) {
      for (const p of ps) if (p >= 0 && p < q) owner[p] = id;
    }
    const g = clear(byId('ring-arcs'));
    const frag = document.createDocumentFragment();
    for (let i = 0; i < q; i++) {
      const id = owner[i];
      frag.appendChild(s('path', {
        d: arcPath(i, q),
        fill: id ? color(id) : '#d1d5db',
        stroke: id ? color(id) : '#d1d5db', // covers the seams between arcs
        class: id && alive.get(id) === false ? 'down' : null,
        'data-p': i,
        'data-owner': id,
      }));
    }
    g.appendChild(frag);
    g.dataset.partitions = String(q);
    ringCenter(c);

    const legend = clear(byId('ring-legend'));
    for (const m of c.members) {
      const n = (c.primary_counts || {})[m.id] || 0;
      legend.appendChild(h('li', { class: m.alive ? null : 'down', 'data-node': m.id },
        swatch(m.id), m.id + ' · ' + n + ' primar' + (n === 1 ? 'y' : 'ies') + (m.alive ? '' : ' (down)')));
    }
  }

  function ringHover(ev) {
    const t = ev.target;
    if (!(t instanceof SVGPathElement) || t.dataset.p === undefined) return;
    for (const o of byId('ring-arcs').querySelectorAll('path.hover')) o.classList.remove('hover');
    t.classList.add('hover');
    byId('ring-center-1').textContent = 'partition ' + t.dataset.p;
    byId('ring-center-2').textContent = 'primary ' + (t.dataset.owner || 'none');
  }

  function ringLeave() {
    for (const o of byId('ring-arcs').querySelectorAll('path.hover')) o.classList.remove('hover');
    if (state.cluster) ringCenter(state.cluster);
  }

  function verifiedText(m) {
    if (!m.repair_shared) return '–';
    if (m.repair_unverified) return m.repair_unverified + ' of ' + m.repair_shared + ' not yet';
    if (m.repair_oldest_age_seconds > 0) return fmtSecs(m.repair_oldest_age_seconds) + ' ago';
    return '–';
  }

  function renderMembers(c) {
    const body = clear(byId('members-body'));
    for (const m of c.members) {
      const n = nodeEntry(m.id);
      const unreachable = m.alive && n && n.error;
      const liveness = !m.alive ? 'down' : unreachable ? 'unreachable' : 'up';
      const tr = h('tr', {
        id: 'member-' + m.id,
        class: liveness === 'up' ? 'up' : liveness,
        'data-node': m.id,
        'data-alive': m.alive ? 'true' : 'false',
        'data-state': m.state,
        'data-liveness': liveness,
      });
      const load = n && n.load;
      const hints = m.hints_pending
        ? m.hints_pending + ' (' + fmtBytes(m.hints_bytes) + ')'
        : '0';
      const hintCell = h('td', { class: 'num', title: m.hint_error || null }, hints);
      if (m.hints_refused) hintCell.append(h('span', { class: 'err', text: ' ' + m.hints_refused + ' refused' }));
      tr.append(
        h('td', { class: 'node' }, swatch(m.id), m.id,
          m.id === c.node_id ? h('span', { class: 'self-mark', text: '(this node)' }) : null,
          h('div', { class: 'addr', text: m.http_addr || '' }),
          unreachable ? h('div', { class: 'err', text: n.error }) : null),
        h('td', {}, h('span', { class: 'badge liveness ' + liveness, 'data-liveness': liveness, text: liveness })),
        h('td', {}, h('span', { class: 'badge state-' + m.state, text: m.state })),
        h('td', {}, (m.dc || '–') + ' / ' + (m.rack || '–')),
        h('td', { class: 'num' }, m.weight),
        h('td', { class: 'num' }, ((c.primary_counts || {})[m.id] || 0) + ' / ' + ((c.replica_counts || {})[m.id] || 0)),
        h('td', { class: 'num rps' }, load ? fmtRate(load.requests_per_second) : '–'),
        h('td', { class: 'num p99' }, load ? fmtMs(load.p99_ms) + ' ms' : '–'),
        hintCell,
        h('td', { class: 'verified' }, verifiedText(m)),
      );
      body.appendChild(tr);
    }
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart(svg, metric, unit) {
    clear(svg);
    const W = 560, H = 180, L = 46, R = 10, T = 10, B = 22;
    const now = Date.now(), t0 = now - HISTORY_MS;
    let max = 0;
    for (const hist of state.history.values()) {
      for (const p of hist) if (p[metric] !== null && p[metric] > max) max = p[metric];
    }
    const ymax = niceMax(max);
    const x = (t) => L + ((t - t0) / HISTORY_MS) * (W - L - R);
    const y = (v) => T + (1 - v / ymax) * (H - T - B);
    const lead = Math.round((10 * ymax) / Math.pow(10, Math.floor(Math.log10(ymax)))) / 10;
    const steps = lead === 2.5 || lead === 5 ? 5 : 4; // round tick values
    for (let k = 0; k <= steps; k++) {
      const v = (ymax * k) / steps;
      svg.appendChild(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const label = s('text', { class: 'axis-label', x: L - 4, y: y(v) + 3, 'text-anchor': 'end' });
      label.textContent = (metric === 'p99' ? fmtMs(v) : fmtRate(v)) + unit;
      svg.appendChild(label);
    }
    for (let m = 5; m >= 0; m--) {
      const label = s('text', { class: 'axis-label', x: x(now - m * 60000), y: H - 6, 'text-anchor': m === 0 ? 'end' : m === 5 ? 'start' : 'middle' });
      label.textContent = m === 0 ? 'now' : '−' + m + ' min';
      svg.appendChild(label);
    }
    const alive = new Map((state.cluster ? state.cluster.members : []).map((m) => [m.id, m.alive]));
    for (const [id, hist] of [...state.history].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      let d = '', pen = false, points = 0, last = null;
      for (const p of hist) {
        const v = p[metric];
        if (v === null) { pen = false; continue; }
        const px = x(p.t).toFixed(1), py = y(v).toFixed(1);
        d += (pen ? 'L' : 'M') + px + ' ' + py + (pen ? '' : 'h0.5');
        pen = true;
        points++;
        last = v;
      }
      const path = s('path', {
        class: 'series' + (alive.get(id) === false ? ' down' : ''),
        d: d || 'M0 0',
        stroke: color(id),
        'data-node': id,
        'data-points': points,
        'data-last': last === null ? '' : last,
      });
      const title = s('title');
      title.textContent = id;
      path.appendChild(title);
      svg.appendChild(path);
    }
  }

  function renderCharts() {
    drawChart(byId('chart-rps'), 'rps', '');
    drawChart(byId('chart-p99'), 'p99', '');
    const legend = clear(byId('load-legend'));
    for (const id of [...state.history.keys()].sort()) {
      const n = nodeEntry(id);
      const l = n && n.load;
      const text = id + ': ' + (l ? fmtRate(l.requests_per_second) + ' req/s, p99 ' + fmtMs(l.p99_ms) + ' ms'
        : n && !n.alive ? 'down' : n && n.error ? 'no answer' : '–');
      legend.appendChild(h('li', { class: n && !n.alive ? 'down' : null, 'data-node': id }, swatch(id), text));
    }
  }

  function renderHints() {
    const body = clear(byId('hints-body'));
    if (!state.nodes) return;
    for (const n of state.nodes.nodes) {
      const tr = h('tr', { 'data-node': n.id, class: n.alive ? null : 'down' });
      if (!n.alive || n.error) {
        tr.append(h('td', {}, swatch(n.id), n.id),
          h('td', { colspan: 4, class: n.alive ? 'err' : 'muted' }, n.alive ? n.error : 'down'));
      } else {
        const targets = Object.entries(n.hints_for || {}).sort().map(([t, k]) => t + ': ' + k).join(', ');
        tr.append(h('td', {}, swatch(n.id), n.id),
          h('td', { class: 'num' }, n.hints_pending),
          h('td', { class: 'num' }, fmtBytes(n.hints_bytes)),
          h('td', { class: 'num' }, n.hints_refused),
          h('td', {}, targets || '–'));
      }
      body.appendChild(tr);
    }
  }

  function renderRepair() {
    const list = clear(byId('repair-list'));
    if (!state.nodes) return;
    for (const n of state.nodes.nodes) {
      const div = h('div', { class: 'repair-node', 'data-node': n.id });
      const r = n.repair;
      if (!n.alive) {
        div.append(h('div', { class: 'line' }, h('span', {}, swatch(n.id), n.id), h('span', { class: 'muted', text: 'down' })));
      } else if (!r) {
        div.append(h('div', { class: 'line' }, h('span', {}, swatch(n.id), n.id),
          h('span', { class: 'muted', text: n.error ? 'no answer' : 'anti-entropy off' })));
      } else {
        const doing = r.running
          ? 'round ' + (r.rounds_done + 1) + ': ' + r.partitions_done + ' / ' + r.partitions_total + ' partitions'
          : r.rounds_done + ' round' + (r.rounds_done === 1 ? '' : 's') + ' done' +
            (r.last_round_seconds ? ', last took ' + fmtSecs(r.last_round_seconds) : '');
        div.append(
          h('div', { class: 'line' }, h('span', {}, swatch(n.id), n.id), h('span', { text: doing })),
          r.running ? progress(r.partitions_done, r.partitions_total)
            : progress(r.rounds_done > 0 ? 1 : 0, 1), // idle: the last round finished
          h('div', { class: 'line muted' },
            h('span', { text: 'keys pulled ' + r.keys_pulled + ', pushed ' + r.keys_pushed }),
            h('span', { text: 'tombstones purged ' + r.tombstones_purged })));
        if (r.last_error) div.append(h('div', { class: 'err', text: r.last_error }));
      }
      list.appendChild(div);
    }
  }

  function renderTransfers() {
    const list = clear(byId('transfers-list'));
    const items = [];
    if (state.nodes) {
      for (const n of state.nodes.nodes) {
        if (n.handing_over) {
          items.push(h('div', { class: 'transfer', 'data-node': n.id },
            h('div', { class: 'line' }, h('span', {}, swatch(n.id), n.id + ' hands over ' + n.handing_over + ' partition' + (n.handing_over === 1 ? '' : 's')))));
        }
        for (const t of n.transfers || []) {
          if (t.state === 'done' || t.state === 'stopped') continue;
          const what = t.kind + (t.changes && t.changes.length ? ' (' + t.changes.join(', ') + ')' : '') + ' on ' + n.id;
          const eta = t.eta_seconds > 0 ? ', ETA ' + fmtSecs(t.eta_seconds) : '';
          items.push(h('div', { class: 'transfer', 'data-node': n.id },
            h('div', { class: 'line' }, h('span', {}, swatch(n.id), what),
              h('span', { text: t.state + ': ' + t.partitions_done + ' / ' + t.partitions_total + ' partitions, ' +
                fmtBytes(t.bytes) + ' at ' + fmtBytes(t.rate_bytes_per_sec) + '/s' + eta })),
            progress(t.partitions_done, t.partitions_total),
            t.waiting ? h('div', { class: 'muted', text: 'waiting for ' + t.waiting }) : null,
            t.last_error ? h('div', { class: 'err', text: t.last_error }) : null));
        }
      }
    }
    if (!items.length) items.push(h('p', { class: 'muted', text: 'no moves in progress' }));
    list.append(...items);
  }

  document.addEventListener('DOMContentLoaded', () => {
    const arcs = byId('ring-arcs');
    arcs.addEventListener('mouseover', ringHover);
    arcs.addEventListener('mouseleave', ringLeave);
    poll();
  });
})();
