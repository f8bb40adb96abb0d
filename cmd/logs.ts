// `gan-dist logs`: thin command over monitor/logs.ts.

import { InvalidArgumentError, type Command } from 'commander';
import { wantsColor } from '../monitor/ansi.ts';
import { showLogs } from '../monitor/logs.ts';

function iteration(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError('must be an iteration number (an integer >= 0)');
  return n;
}

interface LogsFlags {
  follow?: boolean;
  json?: boolean;
  since?: number;
  utc?: boolean;
}

export function registerLogsCommand(program: Command): void {
  program
    .command('logs')
    .description("a run's train.log: person-readable lines, or the NDJSON as written (--json)")
    .argument('<run-dir>', 'a run directory (e.g. runs/latest), a checkpoint in one, or a log file')
    .option('-f, --follow', 'keep printing lines as the run appends them (Ctrl-C ends)')
    .option('--json', 'print the JSON lines as they are in the file')
    .option('--since <n>', 'from iteration N on', iteration)
    .option('--utc', 'times in UTC instead of local time')
    .action(async (runDir: string, opts: LogsFlags) => {
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      // `gan-dist logs ... | head` closes the pipe: stop reading, quietly.
      const onPipeError = (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') stop.abort();
        else throw err;
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      process.stdout.on('error', onPipeError);
      try {
        await showLogs({
          target: runDir,
          follow: opts.follow,
          json: opts.json,
          since: opts.since,
          utc: opts.utc,
          color: wantsColor(process.stdout),
          signal: stop.signal,
          write: (text) => {
            if (!stop.signal.aborted) process.stdout.write(text);
          },
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.stdout.off('error', onPipeError);
      }
    });
}
