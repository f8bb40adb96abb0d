// The report of `gan-dist bench scaling` (scaling.ts): its JSON shape, whose keys are stable, and
// the text the command prints from it.

export interface RealRun {
  transport: 'socket' | 'shm';
  workers: number;
  threadsPerWorker: number;
  globalBatch: number;
  imagesPerSec: number;
  stepMsMedian: number;
  /** Median over rounds of imagesPerSec / the first worker count's, from the same round. */
  speedupVsFirst: number;
  /** That ratio in each round, in order. */
  speedupByRound: number[];
}

export interface SimulatedRun {
  transport: 'socket' | 'shm';
  workers: number;
  simulateStepMs: number;
  rowsPerShard: number;
  globalBatch: number;
  iterationMsMedian: number;
  /** iterationMs - simulateStepMs: what the coordinator and the wire add. */
  overheadMs: number;
  /** The part of it spent on the reduction and Adam (reported on their own). */
  reduceAdamMs: number;
  /** overheadMs - reduceAdamMs: the transport's part (framing, copies, checks, waiting on the wire). */
  transportMs: number;
  bytesPerIteration: number;
  /** The same bytes moved as plain ws messages with no framing, checks or arithmetic (socket runs; null for shm). */
  bareTransferMs: number | null;
  /** overheadMs / bareTransferMs (null for shm). */
  overheadVsBare: number | null;
  /** Buffer.copy of bytesPerIteration, in this run: the floor of any transport. */
  memcpyMs: number;
  /** transportMs / memcpyMs. */
  transportVsMemcpy: number;
  imagesPerSec: number;
  /** Weak scaling, same transport and delay: imagesPerSec / imagesPerSec of the first worker count. */
  speedupVsFirst: number;
  /** speedupVsFirst / (workers / first worker count): 1 is perfect weak scaling. */
  efficiency: number;
  /**
   * Node runs: how many node processes `workers` came in (each one socket peer of workersPerNode
   * workers that talk to it over shm; transport is then the coordinator's link); null for flat runs.
   */
  nodes: number | null;
  workersPerNode: number | null;
  /**
   * Median over the steady iterations of the iteration lines' `link`: WebSocket frame payloads the
   * coordinator sent to and received from worker peers. Socket bytes only: a shm worker's weights
   * and gradients go through /dev/shm and only its small reference frames count.
   */
  linkBytesPerIteration: { sentBytes: number; receivedBytes: number };
  /** Node runs: set against the flat socket run of as many workers at the same delay (null without one). */
  vsFlat: { workers: number; imagesPerSec: number; linkBytes: number } | null;
  /**
   * With --simulated-rounds R: each round's median iteration (ms), rounds in turn; the figures
   * above are the median round's, its ratios (speedupVsFirst, efficiency, vsFlat) the median of
   * each round's own. One entry for one round.
   */
  iterationMsByRound: number[];
}

/** One worker count of the interleaved real run: its iterations, set against the first count's in the same cycle. */
export interface InterleavedRun {
  transport: 'socket' | 'shm';
  workers: number;
  threadsPerWorker: number;
  globalBatch: number;
  /** Iterations of this count that were counted (warm-up cycles excluded). */
  iterations: number;
  imagesPerSec: number;
  stepMsMedian: number;
  /** Median over cycles of this count's imagesPerSec / the first count's in the same cycle. */
  speedupVsFirst: number;
  speedupByCycle: number[];
}

/**
 * What the machine allows the real part right now, with no coordinator: N independent processes
 * each stepping a shard of global / N rows at once, against one process stepping the whole batch.
 */
export interface ParallelCeiling {
  workers: number;
  rowsPerProcess: number;
  imagesPerSec: number;
  /** imagesPerSec / the one-process figure (median over rounds): the most N workers can reach over 1 here, now. */
  speedupVsOne: number;
  speedupByRound: number[];
}

export interface ScalingReport {
  machine: { cores: number; cpu: string; node: string };
  real: { preset: string; note: string; runs: RealRun[]; interleaved: InterleavedRun[]; ceiling: ParallelCeiling[] };
  simulated: { model: string; note: string; runs: SimulatedRun[] };
}

const each = (what: string, xs: number[]) =>
  xs.length > 1 ? ` (${what}: ${xs.map((x) => x.toFixed(2)).join(', ')})` : '';
const byRound = (xs: number[]) => each('rounds', xs);

export function formatScaling(r: ScalingReport): string {
  const lines = [`machine: ${r.machine.cores} cores, ${r.machine.cpu}, Node ${r.machine.node}`];
  const real = r.real;
  if (real.runs.length + real.interleaved.length + real.ceiling.length === 0) lines.push('real: not run');
  else lines.push(`real (${real.preset}; ${real.note}):`);
  for (const c of r.real.ceiling) {
    lines.push(
      `  ceiling, ${c.workers} independent process(es) of ${c.rowsPerProcess} rows stepping at once (no coordinator): ${c.imagesPerSec.toFixed(1)} img/s, ${c.speedupVsOne.toFixed(2)}x${byRound(c.speedupByRound)}`,
    );
  }
  for (const x of r.real.runs) {
    lines.push(
      `  ${x.transport}, ${x.workers} worker(s), global batch ${x.globalBatch}: ${x.imagesPerSec.toFixed(1)} img/s, step ${x.stepMsMedian.toFixed(0)} ms, ${x.speedupVsFirst.toFixed(2)}x${byRound(x.speedupByRound)}`,
    );
  }
  for (const x of r.real.interleaved) {
    lines.push(
      `  interleaved, ${x.transport}, ${x.workers} worker(s), global batch ${x.globalBatch}, ${x.iterations} iterations: ${x.imagesPerSec.toFixed(1)} img/s, ` +
        `step ${x.stepMsMedian.toFixed(0)} ms, ${x.speedupVsFirst.toFixed(2)}x${each('cycles', x.speedupByCycle)}`,
    );
  }
  lines.push(`simulated (${r.simulated.model}; ${r.simulated.note}):`);
  for (const x of r.simulated.runs) {
    const bare =
      x.bareTransferMs === null
        ? ''
        : `, bare transfer ${x.bareTransferMs.toFixed(0)} ms, overhead ${x.overheadVsBare!.toFixed(2)}x bare`;
    const who =
      x.nodes === null
        ? `${x.transport}, ${x.workers} worker(s)`
        : `${x.transport} link, ${x.nodes} node(s) x ${x.workersPerNode} workers (shm inside)`;
    const size = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(1)} kB`);
    const { sentBytes, receivedBytes } = x.linkBytesPerIteration;
    const link = `link ${size(sentBytes)} out + ${size(receivedBytes)} in an iteration`;
    const flat = x.vsFlat
      ? `; vs ${x.vsFlat.workers} flat socket workers: ${x.vsFlat.imagesPerSec.toFixed(2)}x img/s, ${x.vsFlat.linkBytes.toFixed(2)}x link bytes`
      : '';
    lines.push(
      `  ${who}, S=${x.simulateStepMs} ms: iteration ${x.iterationMsMedian.toFixed(0)} ms, overhead ${x.overheadMs.toFixed(0)} ms ` +
        `(reduce+Adam ${x.reduceAdamMs.toFixed(0)} ms, transport ${x.transportMs.toFixed(0)} ms = ${x.transportVsMemcpy.toFixed(2)}x memcpy ${x.memcpyMs.toFixed(0)} ms)${bare}, ` +
        `${(x.bytesPerIteration / 1e6).toFixed(0)} MB/iteration, ${link}, ${x.imagesPerSec.toFixed(0)} img/s, ${x.speedupVsFirst.toFixed(2)}x (efficiency ${(100 * x.efficiency).toFixed(0)} %)${flat}` +
        (x.iterationMsByRound.length > 1
          ? `; rounds ${x.iterationMsByRound.map((ms) => ms.toFixed(0)).join(', ')} ms`
          : ''),
    );
  }
  return lines.join('\n');
}
