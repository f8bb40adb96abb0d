// One run of `gan-dist bench scaling` (scaling.ts, scaling-simulated.ts): local workers over a
// transport, or nodes of local workers (nodes.ts), and the iteration lines it left; a run asked
// for shared memory that fell back to the socket is refused rather than reported as shm.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TrainConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import { benchNodeRun } from './nodes.ts';
import { benchTrainRun } from './util.ts';

export async function trainedLines(
  cwd: string,
  config: TrainConfig,
  workers: number,
  extra: {
    threads?: number;
    simulateStepMs?: number;
    transport: 'socket' | 'shm';
    shardsAt?: (iteration: number) => number;
    /** Simulated only: `workers` come as nodes of this many (transport is then the coordinator's link, a socket). */
    workersPerNode?: number;
  },
) {
  const perNode = extra.workersPerNode;
  const label = `${workers}-${extra.simulateStepMs ?? 'real'}-${extra.transport}${extra.shardsAt ? '-interleaved' : ''}`;
  const result =
    perNode !== undefined
      ? await benchNodeRun(cwd, config, `${label}-nodes-of-${perNode}`, {
          nodes: workers / perNode,
          workersPerNode: perNode,
          simulateStepMs: extra.simulateStepMs ?? 0,
        })
      : await benchTrainRun(cwd, config, workers, label, {
          transport: extra.transport,
          threadsPerWorker: extra.threads,
          simulateStepMs: extra.simulateStepMs,
          shardsAt: extra.shardsAt,
        });
  const lines = result.lines;
  // A run asked for shm that fell back (no room in /dev/shm) must not be reported as shm.
  const transport = readFileSync(path.join(result.runDir, 'train.log'), 'utf8')
    .split('\n')
    .find((l) => l.includes('"event":"transport"'));
  const local = transport ? (JSON.parse(transport) as { local: string; reason?: string }) : undefined;
  if (perNode === undefined && workers > 0 && local?.local !== extra.transport) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `bench scaling: asked for --transport ${extra.transport}, the run used ${local?.local ?? 'nothing'}${local?.reason ? ` (${local.reason})` : ''}`,
    );
  }
  return lines;
}
