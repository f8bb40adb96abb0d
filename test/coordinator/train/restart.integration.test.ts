import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Coordinator } from '../../../coordinator/coordinator.ts';
import { train, type TrainResult } from '../../../coordinator/train/train.ts';
import { resolveConfig } from '../../../protocol/config.ts';
import { GanDistError } from '../../../protocol/errors.ts';
import { waitFor } from '../../support/wait.ts';

type Line = Record<string, unknown>;

/** Starts `--workers N --preset tiny --data synthetic` with simulated workers, bounded only by the test's Stop. */
function startRun(workers: number, maxRestarts: number) {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-restart-'));
  const runDir = path.join(cwd, 'run');
  let coordinator: Coordinator | undefined;
  const result: Promise<TrainResult> = train({
    config: resolveConfig({ preset: 'tiny', flags: { seed: 3, iterations: 1_000_000, validationFrequency: 1e6 } }),
    data: 'synthetic',
    listen: '127.0.0.1:0',
    workers,
    maxRestarts,
    backend: 'wasm',
    simulateStepMs: 20,
    checkpointEvery: 0,
    keepCheckpoints: 1,
    cwd,
    runDir: 'run',
    onCoordinator: (c) => (coordinator = c),
  });
  // Settled by the test; a rejection is looked at there, not left unhandled meanwhile.
  result.catch(() => {});
  const lines = (): Line[] => {
    const file = path.join(runDir, 'train.log');
    if (!existsSync(file)) return [];
    // The log is written asynchronously: a last line may be partial.
    return readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Line];
        } catch {
          return [];
        }
      });
  };
  const events = (name: string, rank?: number) =>
    lines().filter((l) => l.event === name && (rank === undefined || l.rank === rank));
  const iterations = () => lines().filter((l) => l.msg === 'iteration');
  /** Iterations a shard of which worker `id` computed. */
  const computedBy = (id: number) =>
    iterations().filter((l) => (l.shards as { worker: number }[]).some((s) => s.worker === id));
  const until = (cond: () => boolean, what: string) => waitFor(cond, what, 30_000, 25);
  return { runDir, result, events, iterations, computedBy, until, coordinator: () => coordinator! };
}

/** Kills the running process of `rank` with SIGKILL, once it has joined and computed a shard; returns its worker id. */
async function killJoined(run: ReturnType<typeof startRun>, rank: number, joins: number): Promise<number> {
  await run.until(() => run.events('worker-joined', rank).length >= joins, `rank ${rank} joined (${joins})`);
  const id = run.events('worker-joined', rank).at(-1)!.worker as number;
  await run.until(() => run.computedBy(id).length >= 2, `worker ${id} (rank ${rank}) computing shards`);
  const pid = run.events('worker-launched', rank).at(-1)!.pid as number;
  process.kill(pid, 'SIGKILL');
  return id;
}

function expectEachIterationOnce(run: ReturnType<typeof startRun>, last: number): void {
  expect(run.iterations().map((l) => l.iteration)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
}

describe('local worker restarts (--max-restarts)', () => {
  it('restarts a local worker killed -9: it rejoins with its rank and computes shards again, no iteration lost or doubled', async () => {
    const run = startRun(2, 3);
    const t0 = performance.now();
    const before = await killJoined(run, 1, 1);
    const killedAt = performance.now();

    await run.until(() => run.events('worker-joined', 1).length >= 2, 'rank 1 rejoining');
    const rejoined = performance.now();
    const after = run.events('worker-joined', 1)[1].worker as number;
    expect(after).not.toBe(before);
    const live = [...run.coordinator().workers.values()].map((s) => ({ id: s.peer.id, rank: s.peer.hello.rank }));
    expect(live).toContainEqual({ id: after, rank: 1 });
    await run.until(() => run.computedBy(after).length >= 3, `the restarted worker ${after} computing shards`);
    run.coordinator().requestStop('test over');
    const r = await run.result;

    expect(r.state).toBe('finished');
    const [restart] = run.events('worker-restarting');
    expect(restart).toMatchObject({ rank: 1, worker: before, count: 1, maxRestarts: 3, inMs: 1000, level: 'warn' });
    expect(run.events('worker-exited', 1)[0]).toMatchObject({ worker: before, code: null, signal: 'SIGKILL' });
    expect(run.events('worker-launched', 1).map((l) => l.restart)).toEqual([undefined, 1]);
    // The stop's exits are leavings, not failures: one restart in all.
    expect(run.events('worker-restarting')).toHaveLength(1);
    expectEachIterationOnce(run, r.iteration);
    const shardsAfter = run.computedBy(after).length;
    console.log(
      `kill -9 of rank 1 (worker ${before}) after ${((killedAt - t0) / 1000).toFixed(1)} s; worker ${after} rank 1 joined ` +
        `${((rejoined - killedAt) / 1000).toFixed(1)} s later and computed shards of ${shardsAfter} iterations; ` +
        `iterations 1..${r.iteration}, each once; ${run.events('shard-reassigned').length} shard(s) reassigned`,
    );
  }, 120_000);

  it('gives up on a worker after --max-restarts, and with no worker left stops at a checkpoint and fails', async () => {
    const run = startRun(1, 1);
    await killJoined(run, 0, 1);
    await killJoined(run, 0, 2);
    const err = await run.result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GanDistError);
    expect((err as GanDistError).code).toBe('GAN_DIST_E_WORKER');
    expect((err as Error).message).toMatch(/every local worker is down for good .*rank 0 \(SIGKILL\)/);

    expect(run.events('worker-restarting').map((l) => l.count)).toEqual([1]);
    expect(run.events('worker-gave-up')).toEqual([
      expect.objectContaining({ rank: 0, restarts: 1, maxRestarts: 1, level: 'warn' }),
    ]);
    expect(run.events('no-workers-left')).toEqual([expect.objectContaining({ level: 'error' })]);
    // Stopped as a Stop would: the last completed iteration is checkpointed, every iteration once.
    const last = run.iterations().at(-1)!.iteration as number;
    expectEachIterationOnce(run, last);
    expect(readdirSync(path.join(run.runDir, 'checkpoints'))).toEqual([`iter-${String(last).padStart(6, '0')}`]);
  }, 120_000);
});
