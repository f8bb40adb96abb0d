// `gan-dist worker` under SIGTERM and SIGINT, as scancel, a pod's deletion or Ctrl-C send them:
// it says goodbye, the coordinator reassigns its shard at once, and it exits 0 (it left as told).

import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import { WorkerExit } from '../../worker/session-options.ts';
import { startCoordinator, type Harness } from '../support/harness.ts';
import { killStartedClis, startCli, workerLines, type CliProcess } from '../support/cli.ts';
import { waitFor } from '../support/wait.ts';

afterEach(killStartedClis);

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 11, validationFrequency: 1e6, ...over } });

/** A CLI worker with rank `rank` (GAN_DIST_RANK, as a launcher sets it). */
function worker(h: Harness, rank: number, extra: string[] = []): CliProcess {
  return startCli(
    [
      'worker',
      '--join',
      `ws://${h.endpoint}`,
      '--backend',
      'wasm',
      '--threads',
      '1',
      '--reconnect-timeout',
      '0',
      ...extra,
    ],
    { env: { GAN_DIST_TOKEN: h.token, GAN_DIST_RANK: String(rank) } },
  );
}

/** The coordinator's slot of the worker with this rank, once it has joined. */
const slotOf = (h: Harness, rank: number) =>
  [...h.coordinator.workers.values()].find((s) => s.peer.hello.rank === rank);
const eventsOf = (h: Harness, name: string, worker?: number) =>
  h.events.filter(
    (e) => e.event === name && (worker === undefined || e.fields.worker === worker || e.fields.fromWorker === worker),
  );

describe('gan-dist worker on a signal', () => {
  it('sent SIGTERM mid-shard, says goodbye: its shard is reassigned at once, the run loses no iteration, it exits 0', async () => {
    const h = await startCoordinator(tiny({ iterations: 6 }), { minWorkers: 2 });
    // Simulated compute waits on a timer, so the signal lands in the middle of a 10 s shard.
    const slow = worker(h, 0, ['--simulate-step-ms', '10000']);
    const fast = worker(h, 1, ['--simulate-step-ms', '5']);
    const done = h.coordinator.run();
    await waitFor(() => slotOf(h, 0)?.busy !== undefined, 'rank 0 to hold a shard', 60_000, 5);
    const id = slotOf(h, 0)!.peer.id;
    const signalled = performance.now();
    slow.child.kill('SIGTERM');
    await waitFor(() => eventsOf(h, 'shard-reassigned', id).length > 0, 'the shard to be reassigned', 10_000, 1);
    const reassigned = eventsOf(h, 'shard-reassigned', id)[0];
    const ms = reassigned.at - signalled;
    console.log(`SIGTERM to shard-reassigned: ${ms.toFixed(1)} ms (mid-shard, simulated compute)`);
    expect(ms).toBeLessThan(1000); // the 10 s shard was abandoned, not waited for
    expect(reassigned.fields.reason).toBe('left: SIGTERM');
    expect((await slow.exited).code).toBe(WorkerExit.DONE);
    // Gone within the 2 s it gives what still holds it (here the abandoned shard's timer), not the shard's 10 s.
    expect(performance.now() - signalled).toBeLessThan(4000);
    await done;
    expect(h.coordinator.state).toBe('finished');
    expect(h.records.map((r) => r.iteration)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await fast.exited).code).toBe(WorkerExit.DONE);
    // The rank is in the coordinator's events and in every line the worker wrote.
    expect(eventsOf(h, 'worker-joined').map((e) => e.fields.rank)).toEqual(expect.arrayContaining([0, 1]));
    const lines = workerLines(slow.stderr());
    expect(lines.every((l) => l.rank === 0)).toBe(true);
    expect(lines.map((l) => l.event)).toEqual(expect.arrayContaining(['signal', 'leaving', 'exit']));
    expect(lines.at(-1)).toMatchObject({ event: 'exit', code: 0, reason: 'left: SIGTERM' });
  });

  it('sent SIGINT while training for real, hands in the step under way or gives it back, and exits 0', async () => {
    const h = await startCoordinator(tiny({ iterations: 40 }), { minWorkers: 2 });
    const a = worker(h, 0);
    const b = worker(h, 1);
    const done = h.coordinator.run();
    await waitFor(
      () => h.coordinator.iteration >= 3 && slotOf(h, 0)?.busy !== undefined,
      'rank 0 computing',
      60_000,
      1,
    );
    const id = slotOf(h, 0)!.peer.id;
    const signalled = performance.now();
    a.child.kill('SIGINT');
    await waitFor(() => eventsOf(h, 'worker-left', id).length > 0, 'rank 0 to leave', 10_000, 1);
    const left = eventsOf(h, 'worker-left', id)[0];
    const gaveBack = eventsOf(h, 'shard-reassigned', id).length > 0;
    console.log(
      `SIGINT to worker-left: ${(left.at - signalled).toFixed(1)} ms (wasm compute; ${gaveBack ? 'its next shard was reassigned' : 'its step was answered first'})`,
    );
    expect(left.fields.reason).toBe('left: SIGINT');
    expect((await a.exited).code).toBe(WorkerExit.DONE);
    await done;
    expect(h.records.map((r) => r.iteration)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await b.exited).code).toBe(WorkerExit.DONE);
  });
});
