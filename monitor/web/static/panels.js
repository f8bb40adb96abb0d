// The dashboard's text panels: progress, workers and recent events. Every string from the run
// (device names, errors, reasons: a worker supplies some) is set as text, never parsed as HTML.

const text = (el, value) => {
  el.textContent = value === undefined || value === null || value === '' ? '-' : String(value);
};
const fixed = (v, digits) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-');

/** status: the feed's StatusView. */
export function renderStatus(doc, s) {
  const $ = (id) => doc.getElementById(id);
  text($('iteration'), s.iteration);
  text($('total'), s.total);
  text($('epoch'), s.epoch);
  text($('epochs'), s.epochs);
  text($('ips'), fixed(s.imagesPerSec, 1));
  text($('elapsed'), s.elapsed);
  text($('eta'), s.finished ? 'done' : s.eta);
  text($('live'), s.liveWorkers);
  const state = $('state');
  text(state, s.state);
  state.className = `badge ${s.state}`;
  const bar = $('bar');
  bar.value = typeof s.fraction === 'number' ? s.fraction : 0;
  const message = $('message');
  if (s.failure) text(message, `failed: ${s.failure}`);
  else if (s.state === 'stopping') text(message, `stopping: ${s.stopReason ?? 'stop requested'}`);
  else if (s.finished) text(message, `finished at iteration ${s.iteration}${s.stopReason ? ` (${s.stopReason})` : ''}`);
}

/** workers: the feed's WorkerView list. */
export function renderWorkers(doc, workers) {
  const body = doc.querySelector('#workers tbody');
  const row = (className, cells, wraps) => {
    const tr = doc.createElement('tr');
    tr.className = className;
    cells.forEach((value, i) => {
      const td = doc.createElement('td');
      // The device, and a reason for leaving, may be long: they wrap; the rest stays on one line.
      td.className = i === 0 || i === 3 ? 'num' : i === 1 || (i === 4 && wraps) ? 'text' : '';
      text(td, value);
      tr.append(td);
    });
    return tr;
  };
  const rows = workers.flatMap((w) => [
    row(
      w.state,
      [w.id, w.device, w.backend, fixed(w.imagesPerSec, 1), w.reason ? `${w.state}: ${w.reason}` : w.state],
      !!w.reason,
    ),
    // A node's own workers, indented under it while it is joined.
    ...(w.state === 'joined' ? (w.local ?? []) : []).map((l) =>
      row(
        `local ${l.state}`,
        [`${w.id}.${l.rank}`, `└ ${l.device}`, l.backend, fixed(l.imagesPerSec, 1), l.state],
        false,
      ),
    ),
  ]);
  body.replaceChildren(...rows);
}

const MAX_EVENTS = 100;

/** Adds one event row ({time, level, name, text}) at the top. */
export function addEvent(doc, e) {
  const list = doc.getElementById('events');
  const li = doc.createElement('li');
  li.className = e.level;
  const time = doc.createElement('time');
  text(time, e.time);
  const name = doc.createElement('b');
  text(name, e.name);
  li.append(time, name, doc.createTextNode(` ${e.text}`));
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

export function renderEvents(doc, events) {
  doc.getElementById('events').replaceChildren();
  for (const e of events) addEvent(doc, e);
}
