// `--batchnorm sync` through the coordinator, with real worker processes: 1, 2 and 3 workers
// train to the weights of one process on the whole batch; `--batchnorm shard` does not, by a
// measured amount; a worker killed -9 in the middle of a synced step costs no iteration.

import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, type TrainConfig } from '../../protocol/config.ts';
import type { BatchNormMode } from '../../protocol/wire/bn-sync.ts';
import type { NamedArrays } from '../../protocol/model/architecture.ts';
import { startCoordinator, type Harness } from '../support/harness.ts';
import { killStartedClis, startCli, workerLines, type CliProcess } from '../support/cli.ts';
import { bnFedNames, compareWeights, copyWeights } from '../support/numbers.ts';
import { waitFor } from '../support/wait.ts';

afterEach(killStartedClis);

const tiny = (over: Partial<TrainConfig> = {}) =>
  resolveConfig({ preset: 'tiny', flags: { seed: 21, validationFrequency: 1e6, ...over } });

function spawnWorker(h: Harness, extra: string[] = []): CliProcess {
  const args = ['worker', '--join', `ws://${h.endpoint}`, '--backend', 'wasm', '--threads', '1'];
  return startCli([...args, '--reconnect-timeout', '0', ...extra], { env: { GAN_DIST_TOKEN: h.token } });
}

/** `workers` flat worker processes, or (a string) one node of that many: `gan-dist worker --workers N`. */
async function train(
  config: TrainConfig,
  workers: number | `node of ${number}`,
  batchnorm: BatchNormMode,
  disturb?: (h: Harness, peers: CliProcess[]) => Promise<void>,
): Promise<Harness & { params: NamedArrays }> {
  const node = typeof workers === 'string' ? workers.slice('node of '.length) : undefined;
  const h = await startCoordinator(config, { minWorkers: node ? 1 : (workers as number), balance: 'off', batchnorm });
  const peers = node
    ? [spawnWorker(h, ['--workers', node])]
    : Array.from({ length: workers as number }, () => spawnWorker(h));
  const done = h.coordinator.run();
  if (disturb) await disturb(h, peers);
  await done;
  await Promise.all(peers.map((p) => p.exited));
  const params = copyWeights(h.coordinator.params);
  await h.coordinator.dispose();
  return Object.assign(h, { params });
}

describe('--batchnorm sync through the coordinator', () => {
  it('trains 1, 2 and 3 workers and a node of 2 to the single-process weights after 10 iterations; shard mode differs', async () => {
    const config = tiny({ iterations: 10 });
    // One worker computes the step on the whole batch: the single process.
    const single = await train(config, 1, 'shard');
    const loose = bnFedNames(config);
    const report: Record<string, unknown> = {};
    for (const [workers, mode] of [
      [1, 'sync'],
      [2, 'sync'],
      [3, 'sync'],
      ['node of 2', 'sync'],
      [2, 'shard'],
    ] as const) {
      const h = await train(config, workers, mode);
      const peers = typeof workers === 'number' ? workers : 1;
      expect(h.records.map((r) => r.shards.length)).toEqual(Array(10).fill(peers));
      const worst = compareWeights(h.params, single.params, loose);
      report[`${workers} ${mode}`] = worst;
      if (mode === 'sync') {
        expect(worst.G).toBeLessThan(1e-4);
        expect(worst.D).toBeLessThan(1e-4);
        // Ten Adam steps of at most about lr (2e-4) each, in whatever direction the noise took.
        expect(worst.looseAbs).toBeLessThan(10 * 2.5e-4);
      } else {
        // Each shard normalised over its own 8 rows: another training, visibly.
        expect(Math.max(worst.G, worst.D)).toBeGreaterThan(1e-3);
      }
    }
    console.log(`weights after 10 iterations vs one worker on the whole batch: ${JSON.stringify(report)}`);
  }, 600_000);

  it('re-splits a synced step over the live workers when one is killed -9 mid-step: no iteration lost or doubled, the undisturbed weights', async () => {
    const config = tiny({ iterations: 12 });
    let cut: number | undefined;
    const disturbed = await train(config, 3, 'sync', async (h, peers) => {
      // Mid-step: after three iterations, while all three workers hold a shard of the fourth or later.
      const busy = () => [...h.coordinator.workers.values()].filter((w) => w.busy).length === 3;
      await waitFor(() => h.coordinator.iteration >= 3 && busy(), 'three workers mid-step', 120_000, 1);
      process.kill(peers[2].child.pid!, 'SIGKILL');
      await waitFor(() => h.events.some((e) => e.event === 'worker-left'), 'the kill to be seen', 60_000, 5);
      cut = h.coordinator.iteration + 1;
    });
    const h = disturbed;
    expect(h.records.map((r) => r.iteration)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const resplit = h.events.filter((e) => e.event === 'round-resplit');
    console.log(`killed mid-step: ${JSON.stringify(resplit.map((e) => e.fields))}; next iteration ${cut}`);
    expect(resplit.length).toBe(1);
    expect(h.records.at(-1)!.shards.length).toBe(2);
    const calm = await train(config, 2, 'sync');
    const worst = compareWeights(h.params, calm.params, bnFedNames(config));
    console.log(`3 synced workers, one killed -9, vs 2 undisturbed, 12 iterations: ${JSON.stringify(worst)}`);
    expect(worst.G).toBeLessThan(1e-4);
    expect(worst.D).toBeLessThan(1e-4);
    expect(worst.looseAbs).toBeLessThan(12 * 2.5e-4);
  }, 300_000);

  it('re-splits inside a node when one of its workers is killed -9 mid-step: the coordinator loses no shard, the weights are the single process’s', async () => {
    const config = tiny({ iterations: 12 });
    let pid: number | undefined;
    let lines: () => Record<string, unknown>[] = () => [];
    const h = await train(config, 'node of 3', 'sync', async (h, [node]) => {
      lines = () => workerLines(node.stderr().slice(0, node.stderr().lastIndexOf('\n') + 1));
      const busy = () => [...h.coordinator.workers.values()].some((w) => w.busy);
      await waitFor(() => h.coordinator.iteration >= 3 && busy(), 'the node mid-step', 120_000, 1);
      pid = lines().find((l) => l.event === 'worker-launched')!.pid as number;
      process.kill(pid, 'SIGKILL');
      await waitFor(() => lines().some((l) => l.event === 'local-worker-left'), 'the node to see it', 60_000, 5);
    });
    expect(h.records.map((r) => r.iteration)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(h.events.filter((e) => e.event === 'shard-reassigned' || e.event === 'round-resplit')).toEqual([]);
    // The node cut its shard again over its two live workers.
    expect(lines().filter((l) => l.event === 'round-resplit')).toHaveLength(1);
    const single = await train(config, 1, 'shard');
    const worst = compareWeights(h.params, single.params, bnFedNames(config));
    console.log(
      `node of 3 synced, a worker killed -9 (pid ${pid}), vs one process, 12 iterations: ${JSON.stringify(worst)}`,
    );
    expect(worst.G).toBeLessThan(1e-4);
    expect(worst.D).toBeLessThan(1e-4);
    expect(worst.looseAbs).toBeLessThan(12 * 2.5e-4);
  }, 300_000);
});
