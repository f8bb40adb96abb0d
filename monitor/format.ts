// The person-readable view of train.log that `gan-dist logs` prints: one short line per record,
// iteration lines compact, events as `event NAME key=value ...`, warnings and errors marked (and
// coloured on a terminal). NDJSON stays the product; this is only a view on it.

import { palette, paint, sanitize, style, BOLD, DIM, type ColorMode } from './ansi.ts';
import type { ParsedLine } from './log-reader.ts';

export interface FormatOptions {
  /** Colour the output (a terminal). */
  color: boolean;
  /** Times in UTC instead of local time (tests, and logs read across time zones). */
  utc?: boolean;
}

/** HH:MM:SS of an ISO time; '' when there is none. */
export function clockTime(iso: unknown, utc = false): string {
  if (typeof iso !== 'string') return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n: number) => String(n).padStart(2, '0');
  return utc
    ? `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`
    : `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A field value: numbers shortened to 4 significant digits, plain words bare, anything else as JSON. */
export function formatValue(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? sanitize(v) : JSON.stringify(v);
  if (v === undefined) return '';
  return sanitize(JSON.stringify(v) ?? String(v));
}

export function formatFields(fields: Record<string, unknown>, skip: readonly string[] = []): string {
  return Object.entries(fields)
    .filter(([k, v]) => !skip.includes(k) && v !== undefined)
    .map(([k, v]) => `${sanitize(k)}=${formatValue(v)}`)
    .join(' ');
}

const fixed = (v: unknown, digits: number) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-');

/** `iter 120  ep 3  G 0.412 D 0.633  lossG 1.23 lossD 0.98  45.2 img/s  2 w` */
export function formatIteration(r: Record<string, unknown>): string {
  return (
    `iter ${r.iteration}  ep ${r.epoch}  G ${fixed(r.scoreG, 3)} D ${fixed(r.scoreD, 3)}  ` +
    `lossG ${fixed(r.lossG, 2)} lossD ${fixed(r.lossD, 2)}  ${fixed(r.imagesPerSec, 1)} img/s  ${r.workers} w`
  );
}

const BASE_KEYS = ['level', 'time', 'msg'] as const;

/** One log line as a person reads it. */
export function formatLogLine(line: ParsedLine, opts: FormatOptions): string {
  const mode: ColorMode = opts.color ? '256' : 'none';
  if (line.kind === 'invalid') return sanitize(line.raw);
  const r = line.record;
  const time = clockTime(r.time, opts.utc);
  const level = typeof r.level === 'string' ? r.level : 'info';
  const mark = level === 'warn' ? 'WARN ' : level === 'error' || level === 'fatal' ? 'ERROR ' : '';
  let body: string;
  if (line.kind === 'iteration') {
    body = formatIteration(r);
  } else if (line.kind === 'event') {
    const rest = formatFields(r, [...BASE_KEYS, 'event']);
    // A marked line is coloured whole; a bold name inside would end that colour with its reset.
    const name = sanitize(line.record.event);
    body = `event ${mark ? name : style(name, BOLD, mode)}${rest ? ` ${rest}` : ''}`;
  } else {
    const rest = formatFields(r, BASE_KEYS);
    body = `${sanitize(r.msg)}${rest ? ` ${rest}` : ''}`;
  }
  if (mark) body = paint(`${mark}${body}`, level === 'warn' ? palette.warn : palette.error, mode);
  return time ? `${style(time, DIM, mode)}  ${body}` : body;
}
