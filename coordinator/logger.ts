// The run's structured log: pino NDJSON into train.log. Every line has `msg`; iteration lines
// have msg "iteration", events msg "event" with an `event` name. Child loggers name components.

import pino, { type Logger } from 'pino';

export type RunLogger = Logger;

/** A logger that appends to `file` (synchronously flushed at exit) or writes to a stream in tests. */
export function createRunLogger(file: string, onLine?: (line: string) => void): RunLogger {
  const dest = pino.destination({ dest: file, append: true, mkdir: true, sync: false, minLength: 0 });
  // Each serialised line also goes to `onLine` (remote monitors), exactly as written to the file.
  const hooks = onLine
    ? {
        streamWrite: (s: string) => {
          onLine(s);
          return s;
        },
      }
    : {};
  return pino(
    {
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks,
    },
    dest,
  );
}

/** Writes an event line: `{msg: "event", event: name, ...fields}`. */
export function logEvent(
  log: RunLogger,
  event: string,
  fields: Record<string, unknown> = {},
  level: 'info' | 'warn' | 'error' = 'info',
): void {
  log[level]({ event, ...fields }, 'event');
}

/** Waits for the log to reach the file. */
export function flushLogger(log: RunLogger): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}
