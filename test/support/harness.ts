// An in-process coordinator on 127.0.0.1:0 over the synthetic set, for tests of the run loop.

import type { BatchNormMode } from '../../protocol/wire/bn-sync.ts';
import { pino } from 'pino';
import { newToken, type RoleTokens } from '../../protocol/wire/auth.ts';
import type { LogBroadcaster } from '../../coordinator/broadcast.ts';
import type { TrainConfig } from '../../protocol/config.ts';
import { Coordinator } from '../../coordinator/coordinator.ts';
import type { IterationRecord } from '../../coordinator/iteration.ts';
import type { CoordinatorOptions } from '../../coordinator/options.ts';
import type { ShmRegion } from '../../protocol/wire/shm.ts';
import { openDataset } from '../../data/index.ts';
import type { WireDtype } from '../../protocol/wire/wire-dtype.ts';

export interface Harness {
  coordinator: Coordinator;
  endpoint: string;
  token: string;
  draws: Map<number, { z: Float32Array; flip: Uint8Array }>;
  images: Map<number, Uint8Array>;
  records: IterationRecord[];
  /** Every event, with when it happened (performance.now(), this process's clock). */
  events: { event: string; fields: Record<string, unknown>; at: number }[];
}

export async function startCoordinator(
  config: TrainConfig,
  opts: {
    minWorkers: number;
    tls?: { cert: string; key: string };
    balance?: 'off' | 'throughput';
    wireDtype?: WireDtype;
    batchnorm?: BatchNormMode;
    shm?: ShmRegion;
    shardsAt?: (iteration: number) => number;
    checkpointEvery?: number;
    saveSnapshot?: CoordinatorOptions['saveSnapshot'];
    /** The run's secrets (default: one new token, as an older run has); the harness's token is the worker's. */
    tokens?: string | RoleTokens;
    /** Remote monitors, for tests that watch or Stop over the wire. */
    monitors?: LogBroadcaster;
  },
): Promise<Harness> {
  const dataset = await openDataset({
    data: 'synthetic',
    imageSize: config.imageSize,
    count: 64,
    seed: 1,
    cache: false,
  });
  const batches = dataset.createBatchIterator({ batchSize: config.batchSize, seed: config.seed });
  const tokens = opts.tokens ?? newToken();
  const token = typeof tokens === 'string' ? tokens : tokens.worker;
  const draws = new Map<number, { z: Float32Array; flip: Uint8Array }>();
  const images = new Map<number, Uint8Array>();
  const records: IterationRecord[] = [];
  const events: Harness['events'] = [];
  const next = batches.next.bind(batches);
  let drawn = 0;
  batches.next = () => {
    const b = next();
    images.set(++drawn, b.images.slice());
    return b;
  };
  const coordinator = new Coordinator({
    config,
    batches,
    iterationsPerEpoch: batches.iterationsPerEpoch,
    log: pino({ level: 'silent' }),
    token: tokens,
    monitors: opts.monitors,
    host: '127.0.0.1',
    port: 0,
    tls: opts.tls,
    balance: opts.balance,
    wireDtype: opts.wireDtype,
    batchnorm: opts.batchnorm,
    shm: opts.shm,
    shardsAt: opts.shardsAt,
    minWorkers: opts.minWorkers,
    checkpointEvery: opts.checkpointEvery ?? 0,
    saveSnapshot: opts.saveSnapshot ?? (async () => 'memory'),
    writeSamples: async () => 'nowhere',
    onIteration: (r) => records.push(r),
    onEvent: (event, fields) => events.push({ event, fields, at: performance.now() }),
    onDraw: (t, z, flip) => draws.set(t, { z: z.slice(), flip: flip.slice() }),
  });
  const endpoint = await coordinator.listen();
  return { coordinator, endpoint, token, draws, images, records, events };
}
