// The dashboard page: loads the run's snapshot, then applies its live updates (server-sent
// events, replayed after a reconnect), draws at most once a frame, and offers Stop to a control
// login. `window.dashboard` exposes the state to tests and the benchmark (scripts/bench-web.ts).

import { Charts } from './charts.js';
import { addEvent, renderEvents, renderStatus, renderWorkers } from './panels.js';
import { Samples } from './samples.js';

/** Chart points the page keeps live before it pools pairs of the older ones (the server's snapshot holds 1500). */
const MAX_LIVE_POINTS = 3000;

const doc = document;
const state = {
  seq: 0,
  series: [[], [], [], [], [], []],
  bucket: 1,
  eval: { iteration: [], swd: [] },
  session: undefined,
  /** Milliseconds from a log line's time to the page drawing it, the latest 1000. */
  latencies: [],
  loading: undefined,
  queued: [],
};
const charts = new Charts(doc);
const samples = new Samples(doc);
let dirty = false;
let pendingTimes = [];
window.dashboard = { state, charts, samples, ready: false };

async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  // The session is gone (the server restarted): the login page says what to do.
  if (res.status === 401) location.reload();
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function draw() {
  dirty = false;
  charts.setSeries(state.series);
  charts.setEval(state.eval);
  const now = Date.now();
  for (const t of pendingTimes) state.latencies.push(now - t);
  if (state.latencies.length > 1000) state.latencies.splice(0, state.latencies.length - 1000);
  pendingTimes = [];
}

function redraw() {
  if (dirty) return;
  dirty = true;
  requestAnimationFrame(draw);
}

function applySnapshot(s) {
  state.seq = s.seq;
  state.series = s.series;
  state.bucket = s.bucket;
  state.eval = s.eval;
  renderStatus(doc, s.status);
  renderWorkers(doc, s.workers);
  renderEvents(doc, s.events);
  samples.reset(s.samples);
  draw();
}

/** Pools pairs of all but the newest point (a page left open through a long run stays light). */
function thin(series) {
  const n = series[0].length;
  return series.map((col) => {
    const out = [];
    for (let i = 0; i + 1 < n - 1; i += 2) out.push((col[i] + col[i + 1]) / 2);
    out.push(col[n - 1]);
    return out;
  });
}

function addPoint(row) {
  const s = state.series;
  // A resumed run logs again the iterations after its checkpoint: they replace the old ones.
  while (s[0].length && s[0][s[0].length - 1] >= row[0]) for (const col of s) col.pop();
  row.forEach((v, i) => {
    s[i].push(v);
  });
  if (s[0].length > MAX_LIVE_POINTS) state.series = thin(s);
}

function applyUpdate(u) {
  if (state.loading) return state.queued.push(u);
  if (u.seq <= state.seq) return;
  state.seq = u.seq;
  if (u.point) addPoint(u.point);
  if (u.eval) state.eval = u.eval;
  if (u.workers) renderWorkers(doc, u.workers);
  if (u.event) addEvent(doc, u.event);
  if (u.sample) samples.add(u.sample);
  renderStatus(doc, u.status);
  if (u.time) pendingTimes.push(Date.parse(u.time));
  redraw();
}

async function loadSnapshot() {
  state.loading = getJson('/api/snapshot');
  try {
    applySnapshot(await state.loading);
  } finally {
    state.loading = undefined;
    const queued = state.queued.splice(0);
    for (const u of queued) applyUpdate(u);
  }
}

function connect() {
  const badge = doc.getElementById('connection');
  const es = new EventSource(`/api/stream?after=${state.seq}`);
  es.addEventListener('open', () => {
    badge.textContent = 'live';
    badge.className = 'badge live';
  });
  es.addEventListener('update', (e) => applyUpdate(JSON.parse(e.data)));
  // Updates the server no longer holds were missed: the whole state again.
  es.addEventListener('reset', () => void loadSnapshot());
  es.addEventListener('error', () => {
    const ended = ['finished', 'failed'].includes(doc.getElementById('state').textContent);
    badge.textContent = ended ? 'run ended' : 'reconnecting';
    badge.className = ended ? 'badge muted' : 'badge down';
  });
}

function setupStop(session) {
  const button = doc.getElementById('stop');
  const role = doc.getElementById('role');
  if (!session.canStop) return;
  button.hidden = false;
  if (session.role !== 'control') {
    button.disabled = true;
    button.title = 'Stop needs the control credential (control.token)';
    role.textContent = 'watch only';
    return;
  }
  button.addEventListener('click', async () => {
    if (!confirm('Stop the run? It finishes the current iteration, writes a checkpoint and exits.')) return;
    button.disabled = true;
    const message = doc.getElementById('message');
    const res = await fetch('/api/stop', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': session.csrf, 'Content-Type': 'application/json' },
      body: '{}',
    });
    const body = await res.json().catch(() => ({}));
    message.textContent = res.ok
      ? 'stop requested: the run finishes the iteration and writes a checkpoint'
      : `Stop refused: ${body.error ?? res.status}`;
    if (!res.ok) button.disabled = false;
  });
}

async function main() {
  const session = await getJson('/api/session');
  state.session = session;
  doc.getElementById('title').textContent = session.title;
  doc.title = `gan-dist: ${session.title}`;
  setupStop(session);
  await loadSnapshot();
  connect();
  window.dashboard.ready = true;
}

main().catch((err) => {
  doc.getElementById('message').textContent = `cannot load the run: ${err.message}`;
});
