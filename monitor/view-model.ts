// What the terminal UI shows, folded from log records: the score series, the SWD of
// `--eval-every` and its floor, progress towards the run's last iteration, the workers that joined and left, recent events and the latest sample
// grid. The same fold serves a local log file, a remote coordinator's lines and train's own TUI.

import { clockTime, formatFields } from './format.ts';
import type { EventLine, IterationLine, ParsedLine } from './log-reader.ts';

export interface WorkerRow {
  id: number;
  address: string;
  backend: string;
  device: string;
  state: 'joined' | 'left';
  reason?: string;
  /** Images a second computed by this worker, where the log carries per-shard timings. */
  imagesPerSec?: number;
  /** A node's own workers (`node-workers` events), in rank order; absent for a single worker. */
  local?: LocalWorkerRow[];
}

/** One of a node's local workers, as the node reports it. */
export interface LocalWorkerRow {
  rank: number;
  device: string;
  backend: string;
  /** starting, joined, restarting or down. */
  state: string;
  imagesPerSec?: number;
}

export interface EventRow {
  time: string;
  level: string;
  name: string;
  text: string;
}

export interface RunView {
  config?: Record<string, unknown>;
  /** Images in the data set (data-ready), for iterations per epoch. */
  images?: number;
  /** The run's last iteration, from the `running` transition. */
  maxIterations?: number;
  /** The coordinator's state machine: starting, waiting, running, stopping, finished, failed. */
  state?: string;
  failure?: string;
  stopReason?: string;
  finished: boolean;
  /** Score series: iteration numbers and the two scores, in log order without repeats. */
  iterations: number[];
  scoreG: number[];
  scoreD: number[];
  /** SWD x 1e3 of `--eval-every` (`eval` events): the iterations scored and the scores, in iteration order without repeats. */
  evalIterations: number[];
  swd: number[];
  /** The real-vs-real SWD the scores approach (`eval-floor`, or an `eval` line's `floor`). */
  swdFloor?: number;
  last?: IterationLine;
  /** When the current run segment started running (ms since the epoch); a resume starts a new one. */
  startedAt?: number;
  /** The time of the latest line. */
  lastTime?: number;
  /** [time ms, iteration] of recent iteration lines, for the rate behind the ETA. */
  recent: [number, number][];
  workers: Map<number, WorkerRow>;
  /** Peer ids of the monitors connected to the coordinator (remote `gan-dist watch`). */
  monitors: Set<number>;
  events: EventRow[];
  sample?: { iteration: number; path: string };
  endpoint?: string;
  lines: number;
}

const MAX_EVENTS = 200;
const RATE_WINDOW = 20;

export function createRunView(): RunView {
  return {
    finished: false,
    iterations: [],
    scoreG: [],
    scoreD: [],
    evalIterations: [],
    swd: [],
    recent: [],
    workers: new Map(),
    monitors: new Set(),
    events: [],
    lines: 0,
  };
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));

function timeOf(r: { time?: unknown }): number | undefined {
  if (typeof r.time !== 'string') return undefined;
  const t = Date.parse(r.time);
  return Number.isNaN(t) ? undefined : t;
}

/** Folds one line into the view. */
export function applyLine(view: RunView, line: ParsedLine): void {
  if (line.kind === 'invalid') return;
  view.lines++;
  const t = timeOf(line.record);
  if (t !== undefined) view.lastTime = t;
  if (line.kind === 'iteration') applyIteration(view, line.record, t);
  else if (line.kind === 'event') applyEvent(view, line.record, t);
}

function applyIteration(view: RunView, r: IterationLine, t: number | undefined): void {
  // A resumed run repeats the iterations after its last checkpoint: the new values replace them.
  const n = view.iterations.length;
  if (n > 0 && r.iteration <= view.iterations[n - 1]) {
    let keep = n;
    while (keep > 0 && view.iterations[keep - 1] >= r.iteration) keep--;
    view.iterations.length = keep;
    view.scoreG.length = keep;
    view.scoreD.length = keep;
    view.recent.length = 0;
    dropEvalsFrom(view, r.iteration);
  }
  view.iterations.push(r.iteration);
  view.scoreG.push(r.scoreG);
  view.scoreD.push(r.scoreD);
  view.last = r;
  if (t !== undefined) {
    view.recent.push([t, r.iteration]);
    if (view.recent.length > RATE_WINDOW) view.recent.shift();
  }
  if (Array.isArray(r.shards)) {
    for (const s of r.shards) {
      const w = view.workers.get(s.worker);
      if (w && num(s.rows) !== undefined && num(s.computeMs)) w.imagesPerSec = (s.rows * 1000) / s.computeMs;
    }
  }
}

/** A node's report of one local worker; anything malformed is left out. */
function localWorkerRow(v: unknown): LocalWorkerRow[] {
  if (typeof v !== 'object' || v === null) return [];
  const o = v as Record<string, unknown>;
  const rank = num(o.rank);
  if (rank === undefined) return [];
  return [
    { rank, device: str(o.device), backend: str(o.backend), state: str(o.state), imagesPerSec: num(o.imagesPerSec) },
  ];
}

/** Forgets the scores of iterations >= `iteration`: a resumed run computes them again. */
function dropEvalsFrom(view: RunView, iteration: number): void {
  let keep = view.evalIterations.length;
  while (keep > 0 && view.evalIterations[keep - 1] >= iteration) keep--;
  view.evalIterations.length = keep;
  view.swd.length = keep;
}

function applyEvent(view: RunView, r: EventLine, t: number | undefined): void {
  switch (r.event) {
    case 'config':
      if (typeof r.config === 'object' && r.config !== null) view.config = r.config as Record<string, unknown>;
      view.finished = false;
      view.failure = undefined;
      view.stopReason = undefined;
      break;
    case 'data-ready':
      view.images = num(r.images) ?? view.images;
      break;
    case 'listening':
      // A new coordinator process (a resume): peer ids start again from 1.
      view.endpoint = str(r.endpoint);
      view.workers.clear();
      view.monitors.clear();
      break;
    case 'state':
      view.state = str(r.to);
      if (r.to === 'running') {
        view.startedAt = t;
        view.maxIterations = num(r.maxIterations) ?? view.maxIterations;
        view.recent.length = 0;
      }
      if (r.to === 'stopping') view.stopReason = str(r.reason) || view.stopReason;
      if (r.to === 'finished') view.finished = true;
      if (r.to === 'failed') {
        view.finished = true;
        view.failure = str(r.error) || 'failed';
      }
      break;
    case 'run-finished':
      view.finished = true;
      view.state = view.state === 'failed' ? 'failed' : 'finished';
      break;
    case 'stop-requested':
      view.stopReason = str(r.reason);
      break;
    case 'worker-joined':
      if (r.role === 'monitor') view.monitors.add(r.worker as number);
      else if (num(r.worker) !== undefined) {
        view.workers.set(r.worker as number, {
          id: r.worker as number,
          address: str(r.address),
          backend: str(r.backend),
          device: str(r.device),
          state: 'joined',
        });
      }
      break;
    case 'worker-left': {
      const w = view.workers.get(r.worker as number);
      if (w) {
        w.state = 'left';
        w.reason = str(r.reason);
      }
      if (view.monitors.delete(r.worker as number)) return;
      break;
    }
    case 'node-workers': {
      const w = view.workers.get(r.worker as number);
      if (w && Array.isArray(r.workers)) w.local = r.workers.flatMap(localWorkerRow).sort((a, b) => a.rank - b.rank);
      // The table shows it; an event per report would crowd out the run's news.
      return;
    }
    case 'sample-written':
      if (typeof r.path === 'string') view.sample = { iteration: num(r.iteration) ?? 0, path: r.path };
      break;
    case 'eval-floor':
      view.swdFloor = num(r.swd) ?? view.swdFloor;
      break;
    case 'eval': {
      // Scored while training went on, so an eval line follows later iteration lines.
      const iteration = num(r.iteration);
      const swd = num(r.swd);
      if (iteration !== undefined && swd !== undefined) {
        dropEvalsFrom(view, iteration);
        view.evalIterations.push(iteration);
        view.swd.push(swd);
      }
      view.swdFloor = num(r.floor) ?? view.swdFloor;
      break;
    }
  }
  // Monitors coming and going are not the run's news.
  if (r.event === 'worker-joined' && r.role === 'monitor') return;
  view.events.push({ time: clockTime(r.time), level: str(r.level) || 'info', name: r.event, text: describeEvent(r) });
  if (view.events.length > MAX_EVENTS) view.events.splice(0, view.events.length - MAX_EVENTS);
}

/** One event in a few words, for the recent-events panel. */
export function describeEvent(r: EventLine): string {
  const f = r as Record<string, unknown>;
  switch (r.event) {
    case 'worker-joined':
      return `worker ${f.worker} joined from ${str(f.address)} (${str(f.backend)}, ${str(f.device)})`;
    case 'worker-left':
      return `worker ${f.worker} left: ${str(f.reason)}`;
    case 'worker-launched':
      return `launched worker rank ${f.rank}${f.gpu !== undefined ? ` on GPU ${f.gpu}` : ''} (${str(f.backend)})`;
    case 'worker-exited':
      return `worker rank ${f.rank} exited${f.signal ? ` on ${f.signal}` : ` with code ${f.code}`}`;
    case 'checkpoint-written':
      return `checkpoint at iteration ${f.iteration}: ${str(f.path)}${num(f.ms) !== undefined ? ` (${f.ms} ms)` : ''}`;
    case 'sample-written':
      return `sample grid at iteration ${f.iteration}: ${str(f.path)}`;
    case 'eval':
      return `SWD at iteration ${f.iteration}: ${num(f.swd)?.toFixed(2) ?? '-'}${Array.isArray(f.swdLevels) ? ` (${f.swdLevels.join(' / ')})` : ''}, floor ${num(f.floor)?.toFixed(2) ?? '-'}`;
    case 'eval-floor':
      return `SWD floor, real vs real on ${f.count} images: ${num(f.swd)?.toFixed(2) ?? '-'}`;
    case 'state':
      return `state ${str(f.from)} → ${str(f.to)}${f.reason ? `: ${str(f.reason)}` : ''}${f.error ? `: ${str(f.error)}` : ''}`;
    case 'run-finished':
      return `run finished at iteration ${f.iteration}`;
    case 'stop-requested':
      return `stop requested: ${str(f.reason)}`;
    case 'listening':
      return `listening on ${str(f.endpoint)}`;
    case 'config':
      return `config: ${formatFields((f.config as Record<string, unknown>) ?? {}, ['lr', 'beta1', 'beta2', 'flipProb', 'numValidationImages', 'latent'])}`;
    default:
      return `${r.event} ${formatFields(f, ['level', 'time', 'msg', 'event'])}`.trim();
  }
}

export interface Progress {
  iteration: number;
  epoch: number;
  total?: number;
  epochs?: number;
  fraction?: number;
  elapsedMs?: number;
  etaMs?: number;
  imagesPerSec?: number;
}

/** Iterations an epoch has: whole batches of the data set (the partial last one is dropped). */
export function iterationsPerEpoch(view: RunView): number | undefined {
  const batch = num(view.config?.batchSize);
  return view.images !== undefined && batch ? Math.floor(view.images / batch) : undefined;
}

/** The run's last iteration: the coordinator's own bound, else what config and data imply. */
export function totalIterations(view: RunView): number | undefined {
  if (view.maxIterations !== undefined) return view.maxIterations;
  const ipe = iterationsPerEpoch(view);
  const epochs = num(view.config?.epochs);
  const iters = num(view.config?.iterations);
  const byEpochs = ipe !== undefined && epochs !== undefined ? ipe * epochs : undefined;
  if (iters !== undefined && iters > 0) return byEpochs !== undefined ? Math.min(iters, byEpochs) : iters;
  return byEpochs;
}

/** Progress at `now`: elapsed runs on while the run is live, and stops at its last line once finished. */
export function progressOf(view: RunView, now: number): Progress {
  const iteration = view.last?.iteration ?? 0;
  const total = totalIterations(view);
  const ipe = iterationsPerEpoch(view);
  const p: Progress = { iteration, epoch: view.last?.epoch ?? 1, total, imagesPerSec: view.last?.imagesPerSec };
  if (total !== undefined && ipe) p.epochs = Math.ceil(total / ipe);
  if (total) p.fraction = Math.min(1, iteration / total);
  if (view.startedAt !== undefined) {
    const end = view.finished ? (view.lastTime ?? now) : now;
    p.elapsedMs = Math.max(0, end - view.startedAt);
  }
  if (view.finished || (total !== undefined && iteration >= total)) p.etaMs = 0;
  else if (view.state === 'stopping')
    p.etaMs = undefined; // it ends after this iteration, not at the bound
  else if (total !== undefined && view.recent.length >= 2) {
    const [t0, i0] = view.recent[0];
    const [t1, i1] = view.recent[view.recent.length - 1];
    if (i1 > i0 && t1 > t0) p.etaMs = ((t1 - t0) / (i1 - i0)) * (total - iteration);
  }
  return p;
}

/** 0:42, 12:03, 3:04:05, 2d 03:04:05. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  const s = Math.round(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const p = (n: number) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${p(h)}:${p(m)}:${p(sec)}`;
  if (h > 0) return `${h}:${p(m)}:${p(sec)}`;
  return `${m}:${p(sec)}`;
}
