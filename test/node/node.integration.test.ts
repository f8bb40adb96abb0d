// A node (`gan-dist worker --workers 2`) as one peer of a coordinator: the same weights as two
// flat workers, and a local worker killed -9 restarted inside the node without the coordinator
// losing or doubling an iteration.

import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import type { NamedArrays } from '../../protocol/model/architecture.ts';
import { startCoordinator, type Harness } from '../support/harness.ts';
import { killStartedClis, startCli, workerLines, type CliProcess } from '../support/cli.ts';
import { waitFor } from '../support/wait.ts';
import { bnFedNames, compareWeights, copyWeights } from '../support/numbers.ts';

afterEach(killStartedClis);

function spawnWorker(h: Harness, extra: string[]): CliProcess {
  const args = [
    'worker',
    '--join',
    `ws://${h.endpoint}`,
    '--backend',
    'wasm',
    '--threads',
    '1',
    '--reconnect-timeout',
    '0',
  ];
  return startCli([...args, ...extra], { env: { GAN_DIST_TOKEN: h.token } });
}

/** The JSON lines the node has written to stderr so far (whole lines: the last may still be arriving). */
const linesOf = (p: CliProcess) => {
  const err = p.stderr();
  return workerLines(err.slice(0, err.lastIndexOf('\n') + 1));
};

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 33, validationFrequency: 1e6, ...over } });

/** Trains with either two flat workers or one node of two; `disturb` runs while it trains. */
async function run(
  config: TrainConfig,
  layout: 'flat' | 'node',
  disturb?: (h: Harness, node: CliProcess) => Promise<void>,
): Promise<{ h: Harness; peers: CliProcess[]; params: NamedArrays }> {
  const h = await startCoordinator(config, { minWorkers: layout === 'flat' ? 2 : 1, balance: 'off' });
  const peers = layout === 'flat' ? [spawnWorker(h, []), spawnWorker(h, [])] : [spawnWorker(h, ['--workers', '2'])];
  const done = h.coordinator.run();
  if (disturb) {
    await disturb(h, peers[0]);
    h.coordinator.requestStop('disturbance over');
  }
  await done;
  await Promise.all(peers.map((p) => p.exited));
  const params = copyWeights(h.coordinator.params);
  await h.coordinator.dispose();
  return { h, peers, params };
}

describe('a node of local workers', () => {
  it('trains to the weights of two flat workers: 5 iterations of a node of 2 within 1e-5 of each network’s largest weight', async () => {
    const config = tiny({ iterations: 5 });
    const flat = await run(config, 'flat');
    const node = await run(config, 'node');
    expect(flat.h.coordinator.iteration).toBe(5);
    expect(node.h.coordinator.iteration).toBe(5);
    // The node was one peer that took the whole batch; the flat run split it over two.
    expect(node.h.records.every((r) => r.shards.length === 1 && r.shards[0].rows === config.batchSize)).toBe(true);
    expect(flat.h.records.every((r) => r.shards.length === 2)).toBe(true);
    const worst = compareWeights(node.params, flat.params, bnFedNames(config));
    console.log(`node of 2 vs 2 flat workers after 5 iterations: ${JSON.stringify(worst)}`);
    expect(worst.G).toBeLessThan(1e-5);
    expect(worst.D).toBeLessThan(1e-5);
    // Five Adam steps of at most about lr (2e-4) each, in whatever direction the noise took.
    expect(worst.looseAbs).toBeLessThan(5 * 2.5e-4);
    // Both runs moved the weights: the comparison is not between two untouched initialisations.
    expect(node.h.records.at(-1)!.lossD).not.toBe(node.h.records[0].lossD);
  }, 300_000);

  it('restarts a local worker killed -9 inside the node: the coordinator loses and doubles no iteration, and ends on the undisturbed weights', async () => {
    const config = tiny({ iterations: 1_000_000 });
    let killed: number | undefined;
    const disturbed = await run(config, 'node', async (h, node) => {
      const until = (cond: () => boolean, what: string) => waitFor(cond, what, 120_000, 25);
      await until(() => h.coordinator.iteration >= 2, 'two iterations');
      const launched = linesOf(node).filter((l) => l.event === 'worker-launched');
      killed = launched[0].pid as number;
      process.kill(killed, 'SIGKILL');
      await until(
        () => linesOf(node).some((l) => l.event === 'worker-launched' && l.restart === 1),
        'the node to restart its worker',
      );
      const joinedBefore = linesOf(node).filter((l) => l.event === 'local-worker-joined').length;
      await until(
        () => linesOf(node).filter((l) => l.event === 'local-worker-joined').length > joinedBefore,
        'the restarted worker to rejoin the node',
      );
      const seen = h.coordinator.iteration;
      await until(() => h.coordinator.iteration >= seen + 3, 'three iterations with the restarted worker');
      // The workers table heard it all from the node: one of its workers left, then both were back.
      const states = () =>
        h.events
          .filter((e) => e.event === 'node-workers')
          .map((e) => (e.fields.workers as { state: string }[]).map((w) => w.state).join(','));
      await until(() => states().includes('left,joined') || states().includes('joined,left'), 'a report of the kill');
      await until(() => {
        const all = states();
        const left = all.findIndex((s) => s.includes('left'));
        return all.slice(left + 1).includes('joined,joined');
      }, 'a report of both workers joined again');
    });
    const { h, peers } = disturbed;
    const n = h.coordinator.iteration;
    expect(h.records.map((r) => r.iteration)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    // The coordinator never saw the node leave: the failure stayed inside it.
    expect(h.events.filter((e) => e.event === 'worker-left' && e.fields.reason !== 'connection closed')).toEqual([]);
    expect(h.events.filter((e) => e.event === 'shard-reassigned')).toEqual([]);
    const exited = linesOf(peers[0]).find((l) => l.event === 'worker-exited' && l.pid === killed);
    expect(exited?.signal).toBe('SIGKILL');

    const calm = await run(tiny({ iterations: n }), 'node');
    const worst = compareWeights(disturbed.params, calm.params, new Set());
    console.log(`node with a worker killed -9 vs undisturbed, ${n} iterations: ${JSON.stringify(worst)}`);
    // The dead worker's rows were recomputed by the other on the same weights: the same floats.
    expect(worst.G).toBe(0);
    expect(worst.D).toBe(0);
  }, 300_000);
});
