// The simulated part of `gan-dist bench scaling` (scaling.ts): the seed's full model with each
// worker's compute replaced by a fixed delay per shard of fixed rows (weak scaling), flat over
// each transport and as nodes of local workers (nodes.ts), each run set against a bare transfer
// and a memcpy of its bytes and reporting the bytes on the coordinator's peer link per iteration.

import type { LinkBytes } from '../coordinator/link-counter.ts';
import { modelConfigOf, resolveConfig } from '../protocol/config.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import type { ScalingOptions } from './scaling.ts';
import type { SimulatedRun } from './scaling-report.ts';
import { trainedLines } from './scaling-run.ts';
import { bareTransferMs, memcpyMs } from './transfer-floors.ts';
import { median, steady } from './util.ts';

/** --workers-per-node when only --nodes is given. */
export const DEFAULT_WORKERS_PER_NODE = 2;

/** `workers` simulated workers in all: each its own peer, or in nodes of `workersPerNode`. */
interface Layout {
  workers: number;
  workersPerNode?: number;
}

/** What a group of runs is set against: the same transport and delay, the first layout's throughput. */
interface Group {
  transport: 'socket' | 'shm';
  layouts: Layout[];
}

/** An iteration line's `link` (an object among the numbers iterationLines types them as). */
const linkOf = (line: Record<string, number>): LinkBytes | undefined => (line as unknown as { link?: LinkBytes }).link;

/** The median bytes a steady iteration moved over the coordinator's peer link (NaN where lines lack them). */
export function linkBytesPerIteration(lines: Record<string, number>[]): LinkBytes {
  const of = (key: keyof LinkBytes) => median(lines.map((l) => linkOf(l)?.[key] ?? NaN));
  return { sentBytes: of('sentBytes'), receivedBytes: of('receivedBytes') };
}

const linkTotal = (l: LinkBytes) => l.sentBytes + l.receivedBytes;

export async function simulatedRuns(
  cwd: string,
  opts: ScalingOptions,
  transports: ('socket' | 'shm')[],
  say: (line: string) => void,
): Promise<SimulatedRun[]> {
  const model = resolveConfig({});
  const table = parameterTable(modelConfigOf(model));
  const paramBytes = table.reduce((n, s) => n + 4 * sizeOf(s.shape), 0);
  const gradBytes = table.filter((s) => s.role === 'learnable').reduce((n, s) => n + 4 * sizeOf(s.shape), 0);
  const shardBytes = opts.rowsPerShard * (64 * 64 * 3 + 4 * model.latent + 1);
  const bareByPeers = new Map<string, number>();
  const nodeLayouts = (opts.nodes ?? []).flatMap((nodes) =>
    (opts.workersPerNode ?? [DEFAULT_WORKERS_PER_NODE]).map((m) => ({ workers: nodes * m, workersPerNode: m })),
  );
  const runs: SimulatedRun[] = [];

  const measure = async (S: number, transport: 'socket' | 'shm', layout: Layout): Promise<SimulatedRun> => {
    const { workers, workersPerNode } = layout;
    const perPeer = workersPerNode ?? 1;
    const peers = workers / perPeer;
    const globalBatch = opts.rowsPerShard * workers;
    say(
      workersPerNode === undefined
        ? `simulated: ${workers} worker(s), full model, ${S} ms a shard of ${opts.rowsPerShard} rows, ${transport}`
        : `simulated: ${peers} node(s) of ${workersPerNode} workers (shm inside each), full model, ${S} ms a shard of ${opts.rowsPerShard} rows, socket link`,
    );
    const config = resolveConfig({
      flags: { batchSize: globalBatch, iterations: opts.simulatedIterations, validationFrequency: 1e6 },
    });
    const lines = steady(await trainedLines(cwd, config, workers, { simulateStepMs: S, transport, workersPerNode }));
    const iterationMs = median(lines.map((l) => l.stepMs));
    const reduceAdamMs = median(lines.map((l) => l.adamMs + (l.reduceMs ?? 0)));
    // Weights out and gradients back once per peer (a node reduces its workers' first); rows once each.
    const bytes = peers * (paramBytes + gradBytes) + workers * shardBytes;
    let bare: number | null = null;
    if (transport === 'socket') {
      const key = `${peers}/${perPeer}`;
      if (!bareByPeers.has(key))
        bareByPeers.set(key, await bareTransferMs(peers, paramBytes + perPeer * shardBytes, gradBytes, 8));
      bare = bareByPeers.get(key)!;
    }
    const memcpy = memcpyMs(bytes, paramBytes);
    return {
      transport,
      workers,
      simulateStepMs: S,
      rowsPerShard: opts.rowsPerShard,
      globalBatch,
      ...timings({ simulateStepMs: S, globalBatch, bareTransferMs: bare }, iterationMs, reduceAdamMs, memcpy),
      bytesPerIteration: bytes,
      bareTransferMs: bare,
      speedupVsFirst: 0,
      efficiency: 0,
      nodes: workersPerNode === undefined ? null : peers,
      workersPerNode: workersPerNode ?? null,
      linkBytesPerIteration: linkBytesPerIteration(lines),
      vsFlat: null,
      iterationMsByRound: [iterationMs],
    };
  };

  const rounds = Math.max(1, opts.simulatedRounds ?? 1);
  for (const S of opts.simulateStepMs) {
    const groups: Group[] = transports.map((transport) => ({
      transport,
      layouts: opts.simulatedWorkers.map((workers) => ({ workers })),
    }));
    // A node is a peer over the socket whatever --transport says: its own workers use shm.
    if (nodeLayouts.length > 0) groups.push({ transport: 'socket', layouts: nodeLayouts });
    // Every layout once per round, in turn: the ratios are taken within a round (runs a minute
    // apart on a host whose speed drifts), and the report gives the median round's.
    const byRound: SimulatedRun[][] = [];
    for (let round = 0; round < rounds; round++) {
      if (rounds > 1) say(`simulated: round ${round + 1} of ${rounds}, ${S} ms a shard`);
      const these: SimulatedRun[] = [];
      let socketBase: SimulatedRun | undefined;
      for (const group of groups) {
        const first = these.length;
        const nodes = group.layouts === nodeLayouts;
        for (const layout of group.layouts) these.push(await measure(S, group.transport, layout));
        if (!nodes && group.transport === 'socket') socketBase = these[first];
        // Nodes are set against the first flat socket layout where this run measured one (one worker, usually).
        const base = nodes && socketBase ? socketBase : these[first];
        for (const r of these.slice(first)) {
          r.speedupVsFirst = r.imagesPerSec / base.imagesPerSec;
          r.efficiency = r.speedupVsFirst / (r.workers / base.workers);
        }
      }
      setAgainstFlat(these);
      byRound.push(these);
    }
    runs.push(...byRound[0].map((_, i) => medianRound(byRound.map((these) => these[i]))));
  }
  return runs;
}

/** A run's times and what follows from them (overhead, its transport part, the ratios to the floors, img/s). */
function timings(
  run: Pick<SimulatedRun, 'simulateStepMs' | 'globalBatch' | 'bareTransferMs'>,
  iterationMs: number,
  reduceAdamMs: number,
  memcpyMs: number,
): Pick<
  SimulatedRun,
  | 'iterationMsMedian'
  | 'overheadMs'
  | 'reduceAdamMs'
  | 'transportMs'
  | 'overheadVsBare'
  | 'memcpyMs'
  | 'transportVsMemcpy'
  | 'imagesPerSec'
> {
  const overheadMs = iterationMs - run.simulateStepMs;
  const transportMs = overheadMs - reduceAdamMs;
  return {
    iterationMsMedian: iterationMs,
    overheadMs,
    reduceAdamMs,
    transportMs,
    overheadVsBare: run.bareTransferMs === null ? null : overheadMs / run.bareTransferMs,
    memcpyMs,
    transportVsMemcpy: transportMs / memcpyMs,
    imagesPerSec: (run.globalBatch * 1000) / iterationMs,
  };
}

/** Nodes against as many flat socket workers at the same delay, where the round measured them. */
function setAgainstFlat(runs: SimulatedRun[]): void {
  for (const r of runs) {
    if (r.nodes === null) continue;
    const flat = runs.find(
      (f) =>
        f.nodes === null &&
        f.transport === 'socket' &&
        f.simulateStepMs === r.simulateStepMs &&
        f.workers === r.workers,
    );
    if (flat)
      r.vsFlat = {
        workers: flat.workers,
        imagesPerSec: r.imagesPerSec / flat.imagesPerSec,
        linkBytes: linkTotal(r.linkBytesPerIteration) / linkTotal(flat.linkBytesPerIteration),
      };
  }
}

/**
 * One layout's runs over the rounds as one: times the median round's, ratios the median of each
 * round's own (so a node run is set against the flat run of its own round), and every round's
 * iteration time beside them.
 */
export function medianRound(rs: SimulatedRun[]): SimulatedRun {
  const mid = (pick: (r: SimulatedRun) => number) => median(rs.map(pick));
  const r = { ...rs[0] };
  Object.assign(
    r,
    timings(
      r,
      mid((x) => x.iterationMsMedian),
      mid((x) => x.reduceAdamMs),
      mid((x) => x.memcpyMs),
    ),
  );
  r.speedupVsFirst = mid((x) => x.speedupVsFirst);
  r.efficiency = mid((x) => x.efficiency);
  r.linkBytesPerIteration = {
    sentBytes: mid((x) => x.linkBytesPerIteration.sentBytes),
    receivedBytes: mid((x) => x.linkBytesPerIteration.receivedBytes),
  };
  const flats = rs.map((x) => x.vsFlat);
  r.vsFlat = flats.every((v) => v !== null)
    ? {
        workers: flats[0].workers,
        imagesPerSec: median(flats.map((v) => v.imagesPerSec)),
        linkBytes: median(flats.map((v) => v.linkBytes)),
      }
    : null;
  r.iterationMsByRound = rs.map((x) => x.iterationMsMedian);
  return r;
}
