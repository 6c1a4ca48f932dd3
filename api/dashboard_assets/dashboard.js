// The abaco-nx dashboard: reads the platform's JSON API with the caller's credentials
// and draws what it reads. Plain JavaScript, no libraries. Everything that comes from the
// API is put into the page as text (textContent, text nodes, attribute values), never
// parsed as HTML: actor names, messages and logs are whatever their authors wrote.
'use strict';

(function () {
  const ROOT = document.body.dataset.root || '';
  const API = ROOT + '/actors';
  const REFRESH_MS = 3000;        // lists and records
  const LOG_POLL_MS = 1000;       // the logs, when they cannot be streamed
  const MAX_ACTORS = 200;         // actors whose queue and workers the list reads
  const TABLE_ROWS = 25;          // executions listed on an actor's page
  const WINDOW = 500;             // executions the plots read (the newest)
  const PLOT_MINUTES = 30;
  const QUEUE_BARS = 60;
  const FINAL = new Set(['COMPLETE', 'ERROR']);
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // -- the DOM, as text only -----------------------------------------------------------
  function add(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // replaceChildren() would turn a null into the text "null": the children filtered first
  function fill(node, ...children) {
    node.replaceChildren();
    return add(node, children);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'data') Object.assign(node.dataset, value);
      else node.setAttribute(name, String(value));
    }
    return add(node, children);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return add(node, children);
  }

  // Hash links only, their parts encoded: data never chooses a scheme.
  function link(text, ...parts) {
    return el('a', {href: '#/' + parts.map(enc).join('/')}, text);
  }

  // -- fields, times and numbers ---------------------------------------------------------
  // Replies are camelCase or snake_case (the ``case`` setting): read either.
  function f(record, snake) {
    if (!record) return undefined;
    if (snake in record) return record[snake];
    return record[snake.replace(/_([a-z])/g, (_, c) => c.toUpperCase())];
  }

  function when(text) {
    if (!text) return NaN;
    return Date.parse(String(text).replace(/(\.\d{3})\d+/, '$1'));
  }

  function clock(text) {
    const t = when(text);
    return Number.isNaN(t) ? '' : new Date(t).toLocaleTimeString();
  }

  function stamp(text) {
    const t = when(text);
    return Number.isNaN(t) ? '' : new Date(t).toLocaleString();
  }

  function seconds(value) {
    if (value === null || value === undefined || value === '' || Number.isNaN(Number(value))) {
      return '';
    }
    const s = Number(value);
    if (s < 10) return s.toFixed(2) + ' s';
    if (s < 120) return s.toFixed(1) + ' s';
    return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  }

  function between(start, end) {
    const a = when(start);
    const b = when(end);
    return Number.isNaN(a) || Number.isNaN(b) ? null : Math.max(0, (b - a) / 1000);
  }

  function badge(status) {
    const text = status || 'UNKNOWN';
    return el('span', {class: 'badge status-' + text.toLowerCase().replace(/[^a-z_]/g, '')},
      text);
  }

  // -- credentials -------------------------------------------------------------------------
  const auth = {
    get token() { return sessionStorage.getItem('abaco.token') || ''; },
    get tenant() { return sessionStorage.getItem('abaco.tenant') || ''; },
    headers() {
      const token = this.token;
      if (!token) return {};
      const tenant = this.tenant;
      return tenant ? {['X-Jwt-Assertion-' + tenant.toUpperCase()]: token}
        : {Authorization: 'Bearer ' + token};
    },
    save(token, tenant) {
      sessionStorage.setItem('abaco.token', token);
      if (tenant) sessionStorage.setItem('abaco.tenant', tenant);
      else sessionStorage.removeItem('abaco.tenant');
    },
    clear() {
      sessionStorage.removeItem('abaco.token');
      sessionStorage.removeItem('abaco.tenant');
    },
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  class AuthError extends ApiError {}

  async function replyMessage(res) {
    try {
      const body = await res.json();
      return (body && body.message) || res.statusText;
    } catch (_) {
      return res.statusText || ('HTTP ' + res.status);
    }
  }

  async function request(path, signal) {
    const res = await fetch(API + path, {headers: auth.headers(), signal, cache: 'no-store',
      credentials: 'omit'});
    if (res.status === 401 || res.status === 403) {
      throw new AuthError(res.status, await replyMessage(res));
    }
    return res;
  }

  async function call(path, signal) {
    const res = await request(path, signal);
    if (!res.ok) throw new ApiError(res.status, await replyMessage(res));
    const body = await res.json();
    return body.result;
  }

  // A failure of one part of a page (one actor's workers) shows there, not as the page's.
  class Failed {
    constructor(error) { this.message = error.message; }
  }

  function soft(error) {
    if (error.name === 'AbortError' || (error instanceof AuthError && error.status === 401)) {
      throw error;
    }
    return new Failed(error);
  }

  // -- pages ---------------------------------------------------------------------------------
  class View {
    constructor() {
      this.controller = new AbortController();
      this.timers = new Set();
      this.stopped = false;
      this.state = {};
    }

    get signal() { return this.controller.signal; }

    stop() {
      this.stopped = true;
      this.controller.abort();
      for (const timer of this.timers) clearTimeout(timer);
    }

    sleep(ms) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => { this.timers.delete(timer); resolve(); }, ms);
        this.timers.add(timer);
      });
    }

    // Run ``step`` now and every ``ms`` until the page changes or ``step`` returns true.
    async every(ms, step) {
      while (!this.stopped) {
        let done = false;
        try {
          done = await step();
          problem(null);
          $('refreshed').textContent = 'updated ' + new Date().toLocaleTimeString();
        } catch (error) {
          if (!this.fail(error)) return;
        }
        if (done) return;
        await this.sleep(ms);
      }
    }

    // false: stop refreshing (the page went away, or it needs credentials first)
    fail(error) {
      if (this.stopped || error.name === 'AbortError') return false;
      if (error instanceof AuthError) {
        this.stop();
        if (error.status === 403 && auth.token) {
          problem(error.message);  // signed in, but not allowed here: no sign-in form
        } else {
          login(error.message);
        }
        return false;
      }
      problem(error.message || String(error));
      return true;
    }
  }

  let current = null;

  function problem(text) {
    const node = $('problem');
    node.hidden = !text;
    node.textContent = text || '';
  }

  function crumbs(...items) {
    fill($('crumbs'), ...items.flatMap((item, i) => (i ? [' / ', item] : [item])));
  }

  function show(...nodes) {
    fill($('view'), ...nodes);
  }

  function login(reason) {
    show();
    crumbs();
    $('login-reason').textContent = reason || '';
    $('tenant-input').value = auth.tenant;
    $('login').hidden = false;
    $('logout').hidden = !auth.token;
    $('token-input').focus();
  }

  function route() {
    if (current) current.stop();
    problem(null);
    $('login').hidden = true;
    $('logout').hidden = !auth.token;
    const view = new View();
    current = view;
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean)
        .map(decodeURIComponent);
    } catch (_) {
      parts = ['?'];
    }
    if (parts.length === 0) {
      actorsPage(view);
    } else if (parts[0] === 'actors' && parts.length === 2) {
      actorPage(view, parts[1]);
    } else if (parts[0] === 'actors' && parts.length === 4 && parts[2] === 'executions') {
      executionPage(view, parts[1], parts[3]);
    } else {
      crumbs(link('Actors'));
      show(el('p', {class: 'error'}, 'No such page.'));
    }
  }

  // -- #/ : every actor --------------------------------------------------------------------
  function workersText(workers) {
    if (workers instanceof Failed) return '?';
    const counts = {};
    for (const w of workers) counts[w.status] = (counts[w.status] || 0) + 1;
    const parts = Object.entries(counts).map(([status, n]) => n + ' ' + status);
    return workers.length ? String(workers.length) + ' (' + parts.join(', ') + ')' : '0';
  }

  function actorsPage(view) {
    crumbs(el('span', {}, 'Actors'));
    const summary = el('p', {class: 'muted', id: 'actors-summary'});
    const body = el('tbody');
    show(el('h2', {}, 'Actors'), summary,
      el('table', {id: 'actors'},
        el('thead', {}, el('tr', {}, ['Actor', 'Image', 'Status', 'Queued', 'Workers',
          'Updated'].map((h) => el('th', {}, h)))),
        body));
    view.every(REFRESH_MS, async () => {
      const actors = (await call('', view.signal)).slice().reverse();  // newest first
      const shown = actors.slice(0, MAX_ACTORS);
      const extras = await Promise.all(shown.map((a) => Promise.all([
        call('/' + enc(a.id) + '/messages', view.signal).then((r) => f(r, 'messages'), soft),
        call('/' + enc(a.id) + '/workers', view.signal).catch(soft),
      ])));
      if (view.stopped) return true;
      summary.textContent = actors.length + ' actor' + (actors.length === 1 ? '' : 's') +
        (actors.length > shown.length ? ', the newest ' + shown.length + ' shown' : '');
      fill(body, ...shown.map((a, i) => {
        const [queued, workers] = extras[i];
        const status = f(a, 'status');
        const message = f(a, 'status_message');
        return el('tr', {data: {actorId: a.id}},
          el('td', {}, link(a.name || a.id, 'actors', a.id),
            el('div', {class: 'muted mono'}, a.id)),
          el('td', {class: 'mono'}, a.image),
          el('td', {class: 'status'}, badge(status),
            message ? el('div', {class: 'status-message' + (status === 'ERROR' ? ' error' : '')},
              message) : null),
          el('td', {class: 'queued num'}, queued instanceof Failed ? '?' : queued),
          el('td', {class: 'workers'}, workersText(workers)),
          el('td', {class: 'muted'}, stamp(f(a, 'last_update_time') || f(a, 'create_time'))));
      }));
      if (!actors.length) {
        fill(body, el('tr', {}, el('td', {colspan: 6, class: 'muted'},
          'No actors yet: register one with POST ' + API + '.')));
      }
      return false;
    });
  }

  // -- #/actors/{id} : one actor, its executions and plots ---------------------------
  async function executionsWindow(view, actorId) {
    // The listing runs oldest first; the plots and the table want the newest WINDOW.
    const path = '/' + enc(actorId) + '/executions';
    let offset = Math.max(0, (view.state.total || 0) - WINDOW);
    let page = await call(path + '?offset=' + offset + '&limit=' + (WINDOW * 4), view.signal);
    const total = f(page, 'total_executions') || 0;
    const listed = f(page, 'executions') || [];
    // more beyond this page, or fewer than WINDOW from the guessed offset (records trimmed)
    if (offset + listed.length < total || (offset > 0 && listed.length < WINDOW)) {
      offset = Math.max(0, total - WINDOW);
      page = await call(path + '?offset=' + offset + '&limit=' + WINDOW, view.signal);
    }
    view.state.total = f(page, 'total_executions') || 0;
    return {page, executions: (f(page, 'executions') || []).slice(-WINDOW)};
  }

  async function executionRecords(view, actorId, executions) {
    // The listing carries times and status only; the table's exit codes and runtimes
    // come from each record. A final record does not change: read once.
    const cache = view.state.records || (view.state.records = new Map());
    return Promise.all(executions.map(async (summary) => {
      const known = cache.get(summary.id);
      if (known && FINAL.has(known.status)) return known;
      try {
        const record = await call('/' + enc(actorId) + '/executions/' + enc(summary.id),
          view.signal);
        cache.set(summary.id, record);
        return record;
      } catch (error) {
        soft(error);
        return summary;
      }
    }));
  }

  function actorPage(view, actorId) {
    crumbs(link('Actors'), el('span', {class: 'mono'}, actorId));
    const head = el('section', {id: 'actor'});
    const plots = el('section', {class: 'plots'});
    const workersBody = el('tbody');
    const execBody = el('tbody');
    const execNote = el('p', {class: 'muted', id: 'executions-summary'});
    show(head,
      el('h3', {}, 'Workers'),
      el('table', {id: 'workers'}, el('thead', {}, el('tr', {}, ['Worker', 'Status', 'Revision',
        'Started', 'Last execution'].map((h) => el('th', {}, h)))), workersBody),
      el('h3', {}, 'Activity'), plots,
      el('h3', {}, 'Executions'), execNote,
      el('table', {id: 'executions'}, el('thead', {}, el('tr', {}, ['Execution', 'Status',
        'Exit code', 'Received', 'Queue time', 'Runtime'].map((h) => el('th', {}, h)))),
      execBody));

    view.every(REFRESH_MS, async () => {
      const [actor, queued, workers, win] = await Promise.all([
        call('/' + enc(actorId), view.signal),
        call('/' + enc(actorId) + '/messages', view.signal).then((r) => f(r, 'messages'), soft),
        call('/' + enc(actorId) + '/workers', view.signal).catch(soft),
        executionsWindow(view, actorId),
      ]);
      const newest = win.executions.slice(-TABLE_ROWS).reverse();
      const records = await executionRecords(view, actorId, newest);
      if (view.stopped) return true;

      crumbs(link('Actors'), el('span', {}, actor.name || actor.id));
      drawActor(head, actor, queued, workers, win.page);
      drawWorkers(workersBody, workers);
      drawPlots(plots, win.executions);
      const total = f(win.page, 'total_executions') || 0;
      execNote.textContent = total + ' execution' + (total === 1 ? '' : 's') +
        (total > newest.length ? ', the newest ' + newest.length + ' listed' : '') +
        '; total runtime ' + (seconds(f(win.page, 'total_runtime')) || '0 s') + '.';
      fill(execBody, ...records.map((r) => {
        const received = f(r, 'message_received_time');
        const start = f(r, 'start_time');
        const queue = f(r, 'queue_time') ?? (start ? between(received, start) : null);
        const runtime = f(r, 'runtime') ?? (start ? between(start, f(r, 'finish_time') ||
          new Date().toISOString()) : null);
        const exit = f(r, 'exit_code');
        return el('tr', {data: {executionId: r.id}},
          el('td', {class: 'mono'}, link(r.id, 'actors', actorId, 'executions', r.id)),
          el('td', {class: 'status'}, badge(r.status),
            f(r, 'status_message') ? el('div', {class: 'status-message'},
              f(r, 'status_message')) : null),
          el('td', {class: 'exit-code num' + (exit ? ' error' : '')},
            exit === null || exit === undefined ? '' : exit),
          el('td', {}, clock(received)),
          el('td', {class: 'queue-time num'}, seconds(queue)),
          el('td', {class: 'runtime num'}, seconds(runtime)));
      }));
      if (!records.length) {
        fill(execBody, el('tr', {}, el('td', {colspan: 6, class: 'muted'},
          'No executions yet: POST a message to ' + API + '/' + actorId + '/messages.')));
      }
      return false;
    });
  }

  function drawActor(head, actor, queued, workers, page) {
    const status = f(actor, 'status');
    const message = f(actor, 'status_message');
    const facts = [
      ['Id', actor.id], ['Image', actor.image], ['Owner', actor.owner],
      ['Revision', f(actor, 'revision')], ['Stateless', String(f(actor, 'stateless'))],
      ['Workers min / max', (f(actor, 'min_workers') ?? 0) + ' / ' + (f(actor, 'max_workers')
        ?? 'default')],
      ['Created', stamp(f(actor, 'create_time'))],
      ['Updated', stamp(f(actor, 'last_update_time'))],
    ];
    fill(head,
      el('h2', {}, actor.name || actor.id, ' ', el('span', {id: 'actor-status'}, badge(status))),
      actor.description ? el('p', {}, actor.description) : null,
      status === 'ERROR'
        ? el('div', {id: 'actor-error', class: 'alert'},
          el('strong', {}, 'This actor is in ERROR: '),
          el('span', {id: 'actor-status-message'}, message || '(no reason recorded)'))
        : message ? el('p', {id: 'actor-status-message', class: 'muted'}, message) : null,
      el('div', {class: 'tiles'},
        tile('Queued messages', queued instanceof Failed ? '?' : queued, 'queued'),
        tile('Workers', workers instanceof Failed ? '?' : workers.length, 'workers-count'),
        tile('Executions', f(page, 'total_executions') ?? 0, 'executions-count'),
        tile('Total runtime', seconds(f(page, 'total_runtime')) || '0 s', 'total-runtime')),
      el('dl', {class: 'facts'}, facts.flatMap(([k, v]) => [el('dt', {}, k),
        el('dd', {class: k === 'Id' || k === 'Image' ? 'mono' : null}, v ?? '')])));
  }

  function tile(label, value, id) {
    return el('div', {class: 'tile'}, el('div', {class: 'tile-value', id}, value),
      el('div', {class: 'tile-label'}, label));
  }

  function drawWorkers(body, workers) {
    if (workers instanceof Failed) {
      fill(body, el('tr', {}, el('td', {colspan: 5, class: 'error'},
        workers.message)));
      return;
    }
    fill(body, ...workers.map((w) => el('tr', {data: {workerId: w.id}},
      el('td', {class: 'mono'}, w.id),
      el('td', {class: 'status'}, badge(w.status), f(w, 'status_message')
        ? el('div', {class: 'status-message'}, f(w, 'status_message')) : null),
      el('td', {class: 'num'}, f(w, 'revision') ?? ''),
      el('td', {}, stamp(f(w, 'create_time'))),
      el('td', {}, stamp(f(w, 'last_execution_time'))))));
    if (!workers.length) {
      fill(body, el('tr', {}, el('td', {colspan: 5, class: 'muted'},
        'No workers: one starts when a message comes.')));
    }
  }

  // -- plots, drawn as SVG -------------------------------------------------------------------
  function drawPlots(box, executions) {
    const now = Date.now();
    const minute = 60000;
    const end = Math.floor(now / minute) * minute;  // start of the current minute
    const buckets = Array.from({length: PLOT_MINUTES}, (_, i) => ({
      at: end - (PLOT_MINUTES - 1 - i) * minute, value: 0}));
    for (const e of executions) {
      const t = when(f(e, 'message_received_time'));
      if (Number.isNaN(t)) continue;
      const i = PLOT_MINUTES - 1 - Math.floor((end - Math.floor(t / minute) * minute) / minute);
      if (i >= 0 && i < PLOT_MINUTES) buckets[i].value += 1;
    }
    const perMinute = buckets.map((b) => ({
      value: b.value, label: new Date(b.at).toLocaleTimeString([], {hour: '2-digit',
        minute: '2-digit'}),
      tip: new Date(b.at).toLocaleTimeString() + ': ' + b.value + ' execution' +
        (b.value === 1 ? '' : 's')}));
    const recent = buckets.reduce((n, b) => n + b.value, 0);

    const started = executions.filter((e) => f(e, 'start_time')).slice(-QUEUE_BARS);
    const queue = started.map((e) => {
      const s = between(f(e, 'message_received_time'), f(e, 'start_time')) ?? 0;
      return {value: s, label: clock(f(e, 'message_received_time')),
        tip: e.id + ': queued ' + seconds(s)};
    });
    const sorted = queue.map((q) => q.value).sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;

    fill(box,
      figure('plot-per-minute', 'Executions per minute (last ' + PLOT_MINUTES + ' min)',
        recent + ' received', perMinute, (v) => String(Math.round(v * 10) / 10)),
      figure('plot-queue-time', 'Queue time per execution (last ' + queue.length + ')',
        sorted.length ? 'median ' + seconds(median) + ', max ' +
          seconds(sorted[sorted.length - 1]) : 'no execution started yet',
        queue, (v) => seconds(v)));
  }

  function figure(id, title, note, bars, format) {
    return el('figure', {id, class: 'plot'}, el('figcaption', {}, title,
      el('span', {class: 'muted'}, ' · ' + note)), barChart(bars, format));
  }

  // The axis' top: 1, 2 or 5 times a power of ten, at least ``value``.
  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function barChart(bars, format) {
    const W = 520;
    const H = 170;
    const left = 52;
    const bottom = 22;
    const top = 8;
    const plotW = W - left - 6;
    const plotH = H - top - bottom;
    const max = niceCeiling(Math.max(...bars.map((b) => b.value), 0));
    const chart = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img'});
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH - frac * plotH;
      chart.append(svg('line', {x1: left, x2: W - 6, y1: y, y2: y, class: 'grid'}),
        svg('text', {x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis'},
          format(max * frac)));
    }
    if (!bars.length) {
      chart.append(svg('text', {x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle',
        class: 'axis'}, 'no data'));
      return chart;
    }
    const slot = plotW / bars.length;
    const labelEvery = Math.max(1, Math.ceil(bars.length / 5));
    bars.forEach((b, i) => {
      const h = (b.value / max) * plotH;
      const x = left + i * slot;
      chart.append(svg('rect', {x: x + slot * 0.12, y: top + plotH - h, width: slot * 0.76,
        height: Math.max(h, b.value > 0 ? 1 : 0), class: 'bar'}, svg('title', {}, b.tip)));
      if (i % labelEvery === 0 && x + slot / 2 < W - 34) {
        chart.append(svg('text', {x: x + slot / 2, y: H - 6, 'text-anchor': 'middle',
          class: 'axis'}, b.label));
      }
    });
    return chart;
  }

  // -- #/actors/{id}/executions/{eid} : one execution and its live log ------------
  const SHOWN_FIRST = ['status', 'exit_code', 'status_message', 'message_received_time',
    'start_time', 'finish_time', 'queue_time', 'runtime'];

  function executionPage(view, actorId, eid) {
    crumbs(link('Actors'), link(actorId, 'actors', actorId), el('span', {class: 'mono'}, eid));
    const title = el('h2', {}, 'Execution ', el('span', {class: 'mono'}, eid), ' ',
      el('span', {id: 'execution-status'}));
    const facts = el('dl', {class: 'facts', id: 'execution'});
    const mode = el('span', {id: 'log-mode', class: 'muted'});
    const pre = el('pre', {id: 'log', tabindex: 0});
    show(title, facts, el('h3', {}, 'Log ', mode), pre);
    view.state.final = false;

    view.every(2000, async () => {
      const record = await call('/' + enc(actorId) + '/executions/' + enc(eid), view.signal);
      if (view.stopped) return true;
      fill($('execution-status'), badge(record.status));
      const keys = Object.keys(record).filter((k) => k !== '_links');
      const snakeOf = (k) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
      keys.sort((a, b) => rank(snakeOf(a)) - rank(snakeOf(b)));
      fill(facts, ...keys.flatMap((k) => {
        const snake = snakeOf(k);
        let value = record[k];
        if (snake.endsWith('_time') && typeof value === 'string' && snake !== 'queue_time') {
          value = stamp(value);
        } else if (snake === 'queue_time' || snake === 'runtime') {
          value = seconds(value);
        } else if (value !== null && typeof value === 'object') {
          value = JSON.stringify(value);
        } else if (typeof value === 'boolean') {
          value = String(value);  // a bare false would be taken for "no child"
        }
        return [el('dt', {}, k), el('dd', {data: {field: snake}}, value ?? '')];
      }));
      view.state.final = FINAL.has(record.status);
      return view.state.final;
    });
    followLog(view, actorId, eid, pre, mode).catch((error) => view.fail(error));
  }

  function rank(snake) {
    const i = SHOWN_FIRST.indexOf(snake);
    return i < 0 ? SHOWN_FIRST.length : i;
  }

  function logMode(node, mode, text) {
    node.dataset.mode = mode;
    node.textContent = '· ' + text;
  }

  function keepAtBottom(pre, change) {
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    change();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  // The log as it grows: streamed (logs?follow=true, a text/plain body that ends with the
  // execution) where the API and the browser can; else read again every second.
  async function followLog(view, actorId, eid, pre, mode) {
    const path = '/' + enc(actorId) + '/executions/' + enc(eid) + '/logs';
    let streamed = false;
    try {
      const res = await request(path + '?follow=true', view.signal);
      const type = res.headers.get('content-type') || '';
      if (res.ok && type.startsWith('text/plain') && res.body && res.body.getReader) {
        logMode(mode, 'streaming', 'live');
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        pre.textContent = '';
        for (;;) {
          const {done, value} = await reader.read();
          if (done) break;
          const text = decoder.decode(value, {stream: true});
          if (text) keepAtBottom(pre, () => pre.append(text));
        }
        const rest = decoder.decode();
        if (rest) pre.append(rest);
        streamed = true;
      } else if (res.ok && type.includes('json')) {
        const body = await res.json();  // an API without streaming: the log so far
        setLog(pre, f(body.result, 'logs'));
      } else if (!res.ok && res.status !== 400 && res.status !== 404 && res.status !== 405) {
        throw new ApiError(res.status, await replyMessage(res));
      }
    } catch (error) {
      if (view.stopped || error instanceof AuthError || error.name === 'AbortError') throw error;
      if (error instanceof ApiError && error.status === 410) {
        logMode(mode, 'gone', error.message);
        return;
      }
      // the stream broke off (a proxy, a dropped connection): read the log instead
    }
    if (view.stopped) return;
    if (streamed) {
      // the stream ends with the execution; once the record says so, read the kept copy
      logMode(mode, 'ended', 'complete');
      while (!view.stopped && !view.state.final) await view.sleep(500);
      await readLog(view, path, pre);
      logMode(mode, 'ended', 'complete');
      return;
    }
    logMode(mode, 'polling', 'live (read every second)');
    for (;;) {
      const wasFinal = view.state.final;
      try {
        await readLog(view, path, pre);
      } catch (error) {
        if (view.stopped || error instanceof AuthError || error.name === 'AbortError') {
          throw error;
        }
        if (error instanceof ApiError && (error.status === 410 || error.status === 404)) {
          logMode(mode, 'gone', error.message);
          return;
        }
        problem(error.message);
      }
      if (view.stopped) return;
      if (wasFinal) break;  // read once more after the record turned final
      await view.sleep(LOG_POLL_MS);
    }
    logMode(mode, 'ended', 'complete');
  }

  async function readLog(view, path, pre) {
    const result = await call(path, view.signal);
    if (!view.stopped) setLog(pre, f(result, 'logs'));
  }

  function setLog(pre, text) {
    const value = text || '';
    if (pre.textContent !== value) keepAtBottom(pre, () => { pre.textContent = value; });
  }

  // -- start -----------------------------------------------------------------------------
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
    const tenant = $('tenant-input').value.trim();
    if (tenant && !/^[A-Za-z0-9_.-]+$/.test(tenant)) {
      $('login-reason').textContent = 'A tenant is letters, digits, "_", "." or "-".';
      return;
    }
    if (!/^[\x21-\x7e]+$/.test(token)) {
      $('login-reason').textContent = 'A token is one line of printable ASCII.';
      return;
    }
    auth.save(token, tenant);
    $('token-input').value = '';
    route();
  });
  $('logout').addEventListener('click', () => {
    auth.clear();
    route();
  });
  window.addEventListener('hashchange', route);
  route();
})();
