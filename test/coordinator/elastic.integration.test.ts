import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import { Rng } from '../../protocol/rng.ts';
import { startCoordinator } from '../support/harness.ts';
import { waitFor } from '../support/wait.ts';

import { cliPath as cli } from '../support/paths.ts';
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});

function spawnCli(args: string[], env: Record<string, string> = {}, cwd?: string): ChildProcess {
  const child = spawn(process.execPath, [cli, ...args], { cwd, env: { ...process.env, ...env }, stdio: 'ignore' });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

const exited = (c: ChildProcess) =>
  new Promise<number | null>((resolve) =>
    c.exitCode !== null || c.signalCode !== null ? resolve(c.exitCode) : c.on('exit', (code) => resolve(code)),
  );

const until = (cond: () => boolean, what: string) => waitFor(cond, what, 120_000, 25);

/** Seeds which worker is killed and when; the test's title names it, so a failing run's draws can be replayed. */
const SEED = 0x5eed;

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 21, validationFrequency: 1e6, ...over } });

/** Trains `config` with 3 worker processes; `disturb` may kill and replace them while it runs. */
async function runWithWorkers(
  config: TrainConfig,
  disturb?: (h: { killOne: (u: number) => void; iteration: () => number }) => Promise<void>,
) {
  const h = await startCoordinator(config, { minWorkers: 3, balance: 'off' });
  const workers: ChildProcess[] = [];
  const start = () =>
    workers.push(
      spawnCli(
        ['worker', '--join', `ws://${h.endpoint}`, '--backend', 'wasm', '--threads', '1', '--reconnect-timeout', '0'],
        { GAN_DIST_TOKEN: h.token },
      ),
    );
  for (let i = 0; i < 3; i++) start();
  const done = h.coordinator.run();
  if (disturb) {
    await disturb({
      iteration: () => h.coordinator.iteration,
      /** Kills the worker at `u` in [0, 1) along the list, and starts a replacement. */
      killOne: (u) => {
        const [victim] = workers.splice(Math.floor(u * workers.length), 1);
        victim.kill('SIGKILL');
        start();
      },
    });
    h.coordinator.requestStop('disturbance over');
  }
  await done;
  await Promise.all(workers.map(exited));
  return h;
}

describe('elastic training', () => {
  it(`loses nothing when one of 3 workers is killed -9 at random moments, 20 times (seed ${SEED})`, async () => {
    const rng = new Rng(SEED);
    const disturbed = await runWithWorkers(tiny({ iterations: 1_000_000 }), async ({ killOne, iteration }) => {
      await until(() => iteration() >= 1, 'the first iteration');
      // Each kill lands at a random moment after training has moved on since the previous one,
      // so it hits a worker that holds weights and, often, a shard in flight.
      for (let k = 0; k < 20; k++) {
        const seen = iteration();
        await until(() => iteration() > seen, `progress before kill ${k + 1}`);
        await new Promise((r) => setTimeout(r, rng.uniform() * 300));
        killOne(rng.uniform());
      }
      const last = iteration();
      await until(() => iteration() >= last + 2, 'two more iterations after the last kill');
    });
    const n = disturbed.coordinator.iteration;
    const its = disturbed.records.map((r) => r.iteration);
    expect(its).toEqual(Array.from({ length: n }, (_, i) => i + 1)); // contiguous, each applied once
    expect(disturbed.events.filter((e) => e.event === 'shard-reassigned').length).toBeGreaterThan(0);

    const calm = await runWithWorkers(tiny({ iterations: n }));
    expect(calm.coordinator.iteration).toBe(n);
    for (const [name, w] of Object.entries(calm.coordinator.params)) {
      const d = disturbed.coordinator.params[name];
      let diff = 0;
      for (let i = 0; i < w.length; i++) diff = Math.max(diff, Math.abs(w[i] - d[i]));
      expect(diff, name).toBeLessThan(1e-6);
    }
    console.log(
      `20 kills over ${n} iterations; ${disturbed.events.filter((e) => e.event === 'shard-reassigned').length} shards recomputed`,
    );
  }, 600_000);

  it('resumes after the coordinator is killed -9: the workers reconnect and the run continues from its checkpoint', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-elastic-'));
    const port = await freePort();
    const runDir = path.join(cwd, 'run');
    const log = () =>
      existsSync(path.join(runDir, 'train.log'))
        ? readFileSync(path.join(runDir, 'train.log'), 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l))
        : [];
    const common = ['--listen', `127.0.0.1:${port}`, '--workers', '0', '--min-workers', '2'];
    const first = spawnCli(
      ['train', '--preset', 'tiny', '--iterations', '100000', '--checkpoint-every', '3', '--run-dir', 'run', ...common],
      {},
      cwd,
    );
    await until(() => existsSync(path.join(runDir, 'worker.token')), 'the worker token file');
    const tokenFile = path.join(runDir, 'worker.token');
    const workers = [0, 1].map(() =>
      spawnCli([
        'worker',
        '--join',
        `ws://127.0.0.1:${port}`,
        '--token-file',
        tokenFile,
        '--backend',
        'wasm',
        '--threads',
        '1',
        '--reconnect-timeout',
        '120',
      ]),
    );
    await until(() => log().some((l) => l.event === 'checkpoint-written' && l.iteration >= 3), 'a checkpoint');
    first.kill('SIGKILL');
    await exited(first);
    const before = log();
    const checkpointed = Math.max(
      ...before.filter((l) => l.event === 'checkpoint-written').map((l) => l.iteration as number),
    );
    const target = checkpointed + 4;

    const second = spawnCli(['train', '--resume', 'run', '--iterations', String(target), ...common], {}, cwd);
    expect(await exited(second)).toBe(0);
    expect(await Promise.all(workers.map(exited))).toEqual([0, 0]);
    const after = log().slice(before.length);
    const its = after.filter((l) => l.msg === 'iteration').map((l) => l.iteration);
    expect(its).toEqual(Array.from({ length: 4 }, (_, i) => checkpointed + 1 + i));
    expect(after.filter((l) => l.event === 'worker-joined').length).toBe(2);
    expect(after.some((l) => l.event === 'run-finished' && l.iteration === target)).toBe(true);
  }, 300_000);
});
