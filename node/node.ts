// `gan-dist worker --join URL --workers N` (or --gpus 0,1,...): a node. It joins the coordinator as
// one peer with the capacity of its local workers, which it starts and serves itself (hub.ts), so
// the coordinator's link carries one weights version and one gradient set per machine, whatever
// the GPUs in it. The session with the coordinator is a worker's own (worker/client.ts), reconnect
// included; the local workers outlive a reconnect to the same run.

import pino from 'pino';
import type { RunLogger } from '../coordinator/logger.ts';
import type { LaunchSpec } from '../coordinator/train/launcher.ts';
import type { TransportChoice } from '../protocol/wire/shm.ts';
import type { Message, WelcomeMessage } from '../protocol/wire/protocol.ts';
import type { WorkerOptions, WorkerOutcome } from '../worker/session-options.ts';
import { runWorkerWithReconnect } from '../worker/reconnect.ts';
import type { Compute } from '../worker/simulated.ts';
import { NodeHub } from './hub.ts';

export interface NodeOptions
  extends Omit<WorkerOptions, 'computeFor' | 'capacity' | 'device' | 'simulateStepMs' | 'shmRegion' | 'gpu'> {
  /** The local workers (planWorkers). */
  plan: LaunchSpec[];
  maxRestarts: number;
  /** How the local workers exchange tensors with the node (auto: /dev/shm when it has room). */
  transport?: TransportChoice;
  reconnectTimeoutMs: number;
  /** The node's own structured log (its workers' launches, exits, restarts); default: stderr. */
  logger?: RunLogger;
  /** Tests: where shared-memory regions live. */
  shmRoot?: string;
}

/** What the hello says the node is: its workers' count and what they run on. */
export function nodeDevice(plan: LaunchSpec[]): string {
  const n = plan.length;
  const first = plan[0];
  const what =
    first?.simulateStepMs !== undefined
      ? `simulated, ${first.simulateStepMs} ms a shard`
      : plan.some((p) => p.gpu !== undefined)
        ? `GPUs ${plan.map((p) => p.gpu).join(',')}`
        : `${first?.backend ?? 'auto'}, ${first?.threads ?? 1} thread(s) each`;
  return `node of ${n} local worker${n === 1 ? '' : 's'} (${what})`;
}

/** pino JSON lines on stderr, one per line, as every gan-dist process logs. */
export function stderrLogger(rank: number | undefined): RunLogger {
  return pino(
    {
      base: rank === undefined ? undefined : { rank },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}

/** Runs the node until the coordinator says stop, it gives up reconnecting, or it is told to leave. */
export async function runNode(opts: NodeOptions): Promise<WorkerOutcome> {
  const logger = opts.logger ?? stderrLogger(opts.rank);
  let hub: NodeHub | undefined;
  let hubOf: string | undefined;
  const computeFor = (welcome: WelcomeMessage, report: (m: Message) => boolean): Compute => {
    // The same run and model again (a reconnect): the workers already up go on serving it.
    const key = JSON.stringify([welcome.runId, welcome.modelConfig, welcome.seed]);
    if (!hub || hubOf !== key) {
      void hub?.close();
      const made = new NodeHub({
        plan: opts.plan,
        welcome,
        transport: opts.transport,
        maxRestarts: opts.maxRestarts,
        log: logger,
        shmRoot: opts.shmRoot,
      });
      hub = made;
      hubOf = key;
      made.start().catch((err: Error) => made.fail(err));
    }
    const current = hub;
    // This session carries the node's reports of its local workers, the current one first.
    current.reportTo(report);
    // The session disposes its compute when it ends; the node's outlives the session.
    return {
      cfg: current.cfg,
      setWeights: (w) => current.setWeights(w),
      step: (s, _masks, barrier) => current.step(s, undefined, barrier),
      generate: (z, k) => current.generate(z, k),
      dispose: () => {},
    };
  };
  try {
    return await runWorkerWithReconnect({
      ...opts,
      computeFor,
      capacity: opts.plan.length,
      device: nodeDevice(opts.plan),
    });
  } finally {
    await hub?.close();
  }
}
