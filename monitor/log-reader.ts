// Reading train.log (coordinator/logger.ts): one pino JSON object a line, every one with `msg`;
// iteration lines have msg "iteration", events msg "event" and an `event` name. This module
// turns bytes into complete lines and lines into typed records; nothing here prints.

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/** Any line of the log, as parsed JSON: `msg` always, `time` (ISO) and `level` from pino. */
export interface LogRecord {
  msg: string;
  time?: string;
  level?: Level | string;
  [key: string]: unknown;
}

/** The line Coordinator.step() writes per iteration (IterationRecord, rounded). */
export interface IterationLine extends LogRecord {
  msg: 'iteration';
  iteration: number;
  epoch: number;
  iterationInEpoch?: number;
  scoreG: number;
  scoreD: number;
  lossG: number;
  lossD: number;
  imagesPerSec: number;
  stepMs?: number;
  computeMsMax?: number;
  computeMsMean?: number;
  commMs?: number;
  adamMs?: number;
  workers: number;
  /** Per-shard timings, where a coordinator logs them: which worker computed how many rows in how long. */
  shards?: { worker: number; rows: number; computeMs: number }[];
}

export interface EventLine extends LogRecord {
  msg: 'event';
  event: string;
}

/** A parsed line, or the raw text of one that is not a log record (kept: `logs` shows it as is). */
export type ParsedLine =
  | { kind: 'iteration'; record: IterationLine; raw: string }
  | { kind: 'event'; record: EventLine; raw: string }
  | { kind: 'other'; record: LogRecord; raw: string }
  | { kind: 'invalid'; raw: string };

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Classifies an already parsed object (a remote monitor receives objects, not text). */
export function classifyRecord(obj: unknown, raw = ''): ParsedLine {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || typeof (obj as LogRecord).msg !== 'string') {
    return { kind: 'invalid', raw: raw || JSON.stringify(obj) };
  }
  const r = obj as LogRecord;
  const text = raw || JSON.stringify(r);
  if (r.msg === 'iteration' && isNum(r.iteration) && isNum(r.scoreG) && isNum(r.scoreD)) {
    return { kind: 'iteration', record: r as IterationLine, raw: text };
  }
  if (r.msg === 'event' && typeof r.event === 'string') return { kind: 'event', record: r as EventLine, raw: text };
  return { kind: 'other', record: r, raw: text };
}

/** Parses one line of text (without its newline). */
export function parseLogLine(raw: string): ParsedLine {
  const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return { kind: 'invalid', raw: text };
  }
  return classifyRecord(obj, text);
}

/**
 * Splits a byte stream into lines. A chunk may end inside a line, or inside a multi-byte
 * character: the rest is held until the next chunk completes it.
 */
export class LineSplitter {
  private pending = Buffer.alloc(0);

  /** The complete lines in `chunk` (with what was held before), without their newlines. */
  push(chunk: Buffer): string[] {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const lines: string[] = [];
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      if (nl > start) lines.push(buf.toString('utf8', start, nl));
      start = nl + 1;
    }
    this.pending = start < buf.length ? Buffer.from(buf.subarray(start)) : Buffer.alloc(0);
    return lines;
  }

  /** Bytes held: a line not yet ended. */
  get held(): number {
    return this.pending.length;
  }

  /** The unfinished last line, if any (a finished file that does not end in a newline). */
  flush(): string | undefined {
    if (this.pending.length === 0) return undefined;
    const rest = this.pending.toString('utf8');
    this.pending = Buffer.alloc(0);
    return rest.trim() === '' ? undefined : rest;
  }
}

/**
 * `--since N`: from the first iteration line at or after N on. Lines before it are dropped, and
 * so are iteration lines below N after it (a resumed run repeats iterations after its checkpoint).
 */
export function sinceFilter(since: number | undefined): (line: ParsedLine) => boolean {
  if (since === undefined) return () => true;
  let reached = false;
  return (line) => {
    if (line.kind === 'iteration') {
      if (line.record.iteration >= since) reached = true;
      return line.record.iteration >= since;
    }
    return reached;
  };
}
