// The nodes of a `bench scaling` run: real `gan-dist worker --join URL --workers M --transport shm`
// processes, each serving its M simulated local workers through /dev/shm and joining the
// coordinator (which starts no worker of its own) over the socket as one peer of capacity M; or,
// without workersPerNode, plain `gan-dist worker --join URL` processes (remote workers on loopback).

import path from 'node:path';
import type { Coordinator } from '../coordinator/coordinator.ts';
import { launchWorker, type LaunchedWorker } from '../coordinator/train/launcher.ts';
import { exited } from '../coordinator/train/local-workers.ts';
import type { TrainConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import { newToken, writeTokenFile } from '../protocol/wire/auth.ts';
import type { TrainOptions } from '../coordinator/train/train.ts';
import { benchTrainRun } from './util.ts';

export interface NodeLayout {
  nodes: number;
  /** Absent: each process is one remote worker, not a node. */
  workersPerNode?: number;
  /** Each local worker's fixed delay per shard; absent: real compute on wasm. */
  simulateStepMs?: number;
  /** wasm threads of a real worker. */
  threads?: number;
}

/** How long a node may take to leave after the coordinator's stop before it is killed. */
const LEAVE_MS = 5000;

/** The `local` of a node's `node-transport` line (how its workers exchange tensors with it), if `line` is one. */
function nodeTransportOf(line: string): { local: string; reason?: string } | undefined {
  if (!line.includes('"node-transport"')) return undefined;
  try {
    const e = JSON.parse(line) as { event?: unknown; local?: unknown; reason?: unknown };
    if (e.event !== 'node-transport' || typeof e.local !== 'string') return undefined;
    return { local: e.local, reason: typeof e.reason === 'string' ? e.reason : undefined };
  } catch {
    return undefined;
  }
}

/**
 * benchTrainRun with no local workers and `layout.nodes` node processes, started once the
 * coordinator listens; it waits for all of them. A node that fails fails the run with its own
 * error line, and one whose workers fell back to the socket is refused, as a flat shm run is.
 */
export async function benchNodeRun(
  cwd: string,
  config: TrainConfig,
  label: string,
  layout: NodeLayout,
  extra: Pick<TrainOptions, 'batchnorm'> = {},
): Promise<{ runDir: string; lines: Record<string, number>[] }> {
  const { workersPerNode } = layout;
  const token = newToken();
  const tokenFile = path.join(cwd, `${label}.token`);
  await writeTokenFile(tokenFile, { token });
  const nodes: LaunchedWorker[] = [];
  const transports: { local: string; reason?: string }[] = [];
  const lastError = new Map<LaunchedWorker, string>();
  let coordinator: Coordinator | undefined;
  const start = (endpoint: string) => {
    for (let rank = 0; rank < layout.nodes; rank++) {
      const spec = {
        rank,
        backend: 'wasm',
        simulateStepMs: layout.simulateStepMs,
        threads: layout.threads,
        node: workersPerNode === undefined ? undefined : { workers: workersPerNode, transport: 'shm' as const },
      };
      const onExit = (w: LaunchedWorker, code: number | null, signal: NodeJS.Signals | null) => {
        // Exit 0: the coordinator's stop. Anything else ends the run (a no-op once it is over).
        if (code === 0) return;
        const why = lastError.get(w) ?? 'no error line';
        coordinator?.fail(
          new GanDistError('GAN_DIST_E_WORKER', `bench scaling: node ${w.rank} exited ${code ?? signal}: ${why}`),
        );
      };
      const onOutput = (w: LaunchedWorker, line: string) => {
        if (line.startsWith('gan-dist: ')) lastError.set(w, line);
        const local = nodeTransportOf(line);
        if (local) transports.push(local);
      };
      nodes.push(launchWorker(spec, `ws://${endpoint}`, token, undefined, onExit, onOutput));
    }
  };
  try {
    const result = await benchTrainRun(cwd, config, 0, label, {
      ...extra,
      transport: 'socket',
      minWorkers: layout.nodes,
      tokenFile,
      onCoordinator: (c) => {
        coordinator = c;
      },
      onLogLine: (line) => {
        if (nodes.length > 0 || !line.includes('"listening"')) return;
        const e = JSON.parse(line) as { event?: string; endpoint?: string };
        if (e.event === 'listening' && e.endpoint) start(e.endpoint);
      },
    });
    await Promise.all(nodes.map((n) => exited(n, LEAVE_MS)));
    const fellBack = transports.find((t) => t.local !== 'shm');
    if (workersPerNode !== undefined && (fellBack || transports.length < layout.nodes)) {
      throw new GanDistError(
        'GAN_DIST_E_CONFIG',
        `bench scaling: asked the nodes for --transport shm, ${fellBack ? `one used ${fellBack.local}${fellBack.reason ? ` (${fellBack.reason})` : ''}` : `${layout.nodes - transports.length} said nothing of theirs`}`,
      );
    }
    return result;
  } finally {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
  }
}
