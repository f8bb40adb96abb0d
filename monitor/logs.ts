// `gan-dist logs RUN_DIR`: the run's train.log, person-readable (format.ts) or as it is (--json),
// from an iteration on (--since), and following what is appended (--follow).

import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { resolveRunDir } from '../protocol/run/run-dir.ts';
import { followLog } from './follow.ts';
import { formatLogLine } from './format.ts';
import { parseLogLine, sinceFilter } from './log-reader.ts';

export interface LogsOptions {
  /** A run directory (runs/latest), a checkpoint in one, or a log file. */
  target: string;
  follow?: boolean;
  /** The NDJSON lines as written. */
  json?: boolean;
  /** From this iteration on. */
  since?: number;
  color?: boolean;
  utc?: boolean;
  write: (text: string) => void;
  signal?: AbortSignal;
  cwd?: string;
}

/** The log file an argument names: a .log file itself, else the run directory's train.log. */
export function logPathOf(target: string, cwd = process.cwd()): string {
  const p = resolve(cwd, target);
  if (existsSync(p) && statSync(p).isFile() && !p.endsWith('.json')) return p;
  return resolveRunDir(target, cwd).logPath;
}

/** Prints the log; with `follow`, until `signal` aborts. */
export async function showLogs(opts: LogsOptions): Promise<void> {
  const path = logPathOf(opts.target, opts.cwd);
  const keep = sinceFilter(opts.since);
  const filtering = opts.since !== undefined;
  await followLog(path, {
    follow: opts.follow === true,
    signal: opts.signal,
    onLines: (lines) => {
      let out = '';
      for (const raw of lines) {
        if (opts.json && !filtering) {
          out += `${raw}\n`;
          continue;
        }
        const parsed = parseLogLine(raw);
        if (!keep(parsed)) continue;
        out += `${opts.json ? parsed.raw : formatLogLine(parsed, { color: opts.color === true, utc: opts.utc })}\n`;
      }
      if (out) opts.write(out);
    },
  });
}
