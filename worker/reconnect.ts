// A worker that outlives its coordinator: runs sessions (client.ts) until one ends for good, and
// while the coordinator is away (or not up yet) tries again with backoff, so a coordinator
// restarted with --resume gets its workers back.

import { runWorker } from './client.ts';
import { leaveReason, WorkerExit, type WorkerOptions, type WorkerOutcome } from './session-options.ts';

/**
 * Runs worker sessions until one ends for good: when the coordinator goes away (or is not up
 * yet) it tries again with backoff, so a coordinator restarted with --resume gets its workers back.
 */
export async function runWorkerWithReconnect(
  opts: WorkerOptions & { reconnectTimeoutMs: number },
): Promise<WorkerOutcome> {
  const log = opts.log ?? (() => {});
  let deadline = Date.now() + opts.reconnectTimeoutMs;
  let delay = 250;
  for (;;) {
    const o = await runWorker(opts);
    if (o.exitCode !== WorkerExit.COORDINATOR_GONE || opts.reconnectTimeoutMs <= 0) return o;
    if (o.joined) {
      deadline = Date.now() + opts.reconnectTimeoutMs;
      delay = 250;
    }
    if (Date.now() + delay > deadline)
      return { ...o, reason: `${o.reason}; gave up reconnecting after ${opts.reconnectTimeoutMs} ms` };
    log({ event: 'reconnecting', inMs: delay, reason: o.reason });
    await abortableSleep(delay, opts.signal);
    if (opts.signal?.aborted)
      return { exitCode: WorkerExit.DONE, reason: `left while reconnecting: ${leaveReason(opts.signal)}` };
    delay = Math.min(delay * 2, 5000);
  }
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
