// What the dashboard knows of a run, folded from its log lines: the monitor's RunView
// (view-model.ts: progress, workers, events, SWD) plus what the page charts that the terminal
// does not (losses, images/s) and every saved sample grid. Each line becomes one Update the
// page applies; a page that (re)loads gets a Snapshot, its series decimated, then the updates
// after it. Updates are numbered; the latest are kept so a reconnecting page replays what it
// missed (EventSource's Last-Event-ID) instead of loading everything again.

import { basename } from 'node:path';
import type { ParsedLine } from '../log-reader.ts';
import {
  applyLine,
  createRunView,
  formatDuration,
  progressOf,
  type EventRow,
  type LocalWorkerRow,
  type Progress,
  type RunView,
} from '../view-model.ts';
import { decimate, MAX_CHART_POINTS } from './decimate.ts';

/** Events that change the workers table. */
const WORKER_EVENTS = new Set(['worker-joined', 'worker-left', 'listening', 'node-workers']);

/** Chart columns, in this order: iteration, scoreG, scoreD, lossG, lossD, imagesPerSec. */
export const SERIES = ['iteration', 'scoreG', 'scoreD', 'lossG', 'lossD', 'imagesPerSec'] as const;

export interface StatusView extends Progress {
  state: string;
  finished: boolean;
  failure?: string;
  stopReason?: string;
  elapsed: string;
  eta: string;
  liveWorkers: number;
}

export interface WorkerView {
  id: number;
  address: string;
  backend: string;
  device: string;
  state: string;
  reason?: string;
  imagesPerSec?: number;
  /** A node's local workers. */
  local?: LocalWorkerRow[];
}

export interface SampleView {
  iteration: number;
  /** The file's name in the run's samples/ (iter-000100.png). */
  file: string;
}

export interface Snapshot {
  seq: number;
  series: number[][];
  /** Iterations pooled per chart point (1: a point per logged iteration). */
  bucket: number;
  /** Iterations logged (the series before decimation). */
  points: number;
  eval: { iteration: number[]; swd: number[]; floor?: number };
  status: StatusView;
  workers: WorkerView[];
  events: EventRow[];
  samples: SampleView[];
}

export interface Update {
  seq: number;
  /** The log line's own time (ISO): the page measures its latency from it. */
  time?: string;
  point?: number[];
  eval?: { iteration: number[]; swd: number[]; floor?: number };
  status: StatusView;
  workers?: WorkerView[];
  event?: EventRow;
  sample?: SampleView;
}

export interface FeedOptions {
  /** Updates kept for pages that reconnect (default 4096). */
  replay?: number;
  /** Chart points of a snapshot at most (default MAX_CHART_POINTS). */
  maxPoints?: number;
  now?: () => number;
}

export class DashboardFeed {
  readonly view: RunView = createRunView();
  private readonly columns: number[][] = SERIES.map(() => []);
  private readonly samples = new Map<number, SampleView>();
  /** Sample file name -> the path its log line gave (where the coordinator wrote it). */
  private readonly samplePaths = new Map<string, string>();
  private readonly recent: Update[] = [];
  private readonly listeners = new Set<(u: Update) => void>();
  private seq = 0;
  private readonly replay: number;
  private readonly maxPoints: number;
  private readonly now: () => number;

  constructor(opts: FeedOptions = {}) {
    this.replay = opts.replay ?? 4096;
    this.maxPoints = opts.maxPoints ?? MAX_CHART_POINTS;
    this.now = opts.now ?? Date.now;
  }

  /** Folds one line; listeners get its update. */
  push(line: ParsedLine): void {
    if (line.kind === 'invalid' || line.kind === 'other') {
      applyLine(this.view, line);
      return;
    }
    const events = this.view.events.length;
    const lastEvent = this.view.events[events - 1];
    const evalCount = this.view.evalIterations.length;
    const evalLast = this.view.evalIterations[evalCount - 1];
    const floor = this.view.swdFloor;
    applyLine(this.view, line);
    const update: Update = { seq: ++this.seq, status: this.status() };
    if (typeof line.record.time === 'string') update.time = line.record.time;
    if (line.kind === 'iteration') {
      const r = line.record;
      const row = [r.iteration, r.scoreG, r.scoreD, r.lossG, r.lossD, r.imagesPerSec].map((v) =>
        typeof v === 'number' ? v : Number.NaN,
      );
      this.addPoint(row);
      update.point = row;
      if (Array.isArray(r.shards)) update.workers = this.workers();
    } else {
      const r = line.record;
      if (WORKER_EVENTS.has(String(r.event))) update.workers = this.workers();
      if (r.event === 'sample-written' && typeof r.path === 'string' && typeof r.iteration === 'number') {
        const sample = { iteration: r.iteration, file: basename(r.path) };
        this.samples.set(sample.iteration, sample);
        this.samplePaths.set(sample.file, r.path);
        update.sample = sample;
      }
      const v = this.view;
      if (v.events.length !== events || v.events[v.events.length - 1] !== lastEvent)
        update.event = v.events[v.events.length - 1];
      if (
        v.evalIterations.length !== evalCount ||
        v.evalIterations[v.evalIterations.length - 1] !== evalLast ||
        v.swdFloor !== floor
      )
        update.eval = this.evalSeries();
    }
    this.recent.push(update);
    if (this.recent.length > this.replay) this.recent.splice(0, this.recent.length - this.replay);
    for (const fn of this.listeners) fn(update);
  }

  /** The run so far, its chart series decimated. */
  snapshot(): Snapshot {
    const { columns, bucket } = decimate(this.columns, this.maxPoints);
    return {
      seq: this.seq,
      series: columns,
      bucket,
      points: this.columns[0].length,
      eval: this.evalSeries(),
      status: this.status(),
      workers: this.workers(),
      events: this.view.events.slice(-100),
      samples: [...this.samples.values()].sort((a, b) => a.iteration - b.iteration),
    };
  }

  /** The updates after `seq`, or undefined when some are no longer kept (the page then reloads its snapshot). */
  since(seq: number): Update[] | undefined {
    if (seq === this.seq) return [];
    if (seq > this.seq) return undefined;
    const first = this.recent[0]?.seq ?? this.seq + 1;
    if (seq + 1 < first) return undefined;
    return this.recent.slice(seq + 1 - first);
  }

  /** The path a logged sample grid was written to (a remote coordinator's: it may not exist here). */
  loggedSamplePath(file: string): string | undefined {
    return this.samplePaths.get(file);
  }

  get lastSeq(): number {
    return this.seq;
  }

  subscribe(fn: (u: Update) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A resumed run logs again the iterations after its checkpoint: they replace the old ones. */
  private addPoint(row: number[]): void {
    const it = this.columns[0];
    if (it.length > 0 && row[0] <= it[it.length - 1]) {
      let keep = it.length;
      while (keep > 0 && it[keep - 1] >= row[0]) keep--;
      for (const c of this.columns) c.length = keep;
    }
    for (let i = 0; i < row.length; i++) this.columns[i].push(row[i]);
  }

  private evalSeries(): Snapshot['eval'] {
    const v = this.view;
    return { iteration: v.evalIterations.slice(), swd: v.swd.slice(), floor: v.swdFloor };
  }

  private workers(): WorkerView[] {
    return [...this.view.workers.values()].map((w) => ({ ...w, local: w.local?.map((l) => ({ ...l })) }));
  }

  private status(): StatusView {
    const v = this.view;
    const p = progressOf(v, this.now());
    let live = 0;
    for (const w of v.workers.values()) if (w.state === 'joined') live++;
    return {
      ...p,
      state: v.state ?? 'starting',
      finished: v.finished,
      failure: v.failure,
      stopReason: v.stopReason,
      elapsed: formatDuration(p.elapsedMs),
      eta: formatDuration(p.etaMs),
      liveWorkers: live,
    };
  }
}
