// How a process that serves local workers (a coordinator, or a node: node/hub.ts) gives them the
// model's tensors: a shared-memory region where /dev/shm has room for every worker's frames, else
// the socket. Regions left by processes killed earlier are removed either way, and said so.

import type { ModelConfig } from '../protocol/config.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import {
  decideTransport,
  removeStaleRegions,
  ShmRegion,
  type ShmDecision,
  type TransportChoice,
} from '../protocol/wire/shm.ts';
import { shmAccess } from '../protocol/wire/shm-map.ts';
import { logEvent, type RunLogger } from './logger.ts';

export interface LocalTransportOptions {
  transport: TransportChoice;
  localWorkers: number;
  /** Tests: where regions live (default /dev/shm) and the free bytes to assume there. */
  root?: string;
  free?: number;
}

/** Decides, opens the region when it is used, and logs the choice as `event` ('transport', 'node-transport'). */
export function openLocalTransport(
  cfg: ModelConfig,
  opts: LocalTransportOptions,
  log: RunLogger,
  event: string,
): { region?: ShmRegion; decision: ShmDecision; forced: boolean } {
  // One frame of every learnable and statistic, and room for the header.
  const frameBytes = 4 * parameterTable(cfg).reduce((n, s) => n + sizeOf(s.shape), 0) + 65536;
  const decision = decideTransport({
    transport: opts.transport,
    localWorkers: opts.localWorkers,
    weightsBytes: frameBytes,
    gradientsBytes: frameBytes,
    root: opts.root,
    free: opts.free,
  });
  if (decision.use) {
    const made = ShmRegion.create(opts.root);
    if (made.removed.length > 0) logEvent(log, 'shm-stale-removed', { regions: made.removed }, 'warn');
    // How the coordinator's side moves the bytes (a worker decides its own, the same way).
    const access = shmAccess();
    logEvent(log, event, {
      local: 'shm',
      access: access.mode,
      ...(access.mode === 'fs' ? { accessReason: access.reason } : {}),
      region: made.region.dir,
      needMB: Math.round(decision.needBytes / 2 ** 20),
      freeMB: Math.round(decision.freeBytes / 2 ** 20),
    });
    return { region: made.region, decision, forced: false };
  }
  // Regions of processes killed earlier are removed even by one that does not use a region.
  const removed = removeStaleRegions(opts.root);
  if (removed.length > 0) logEvent(log, 'shm-stale-removed', { regions: removed }, 'warn');
  const forced = opts.transport === 'shm' && opts.localWorkers > 0;
  logEvent(log, event, { local: 'socket', reason: decision.reason }, forced ? 'warn' : 'info');
  return { decision, forced };
}
