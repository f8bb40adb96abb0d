// What the coordinator does with each message a worker sends once it has joined, and when it
// goes (forgetWorker; a node does the same for its local workers): results go to
// the dispatcher, samples to the generation, shared-memory offers and gradient references to the
// worker's link. Anything else from a worker costs it its connection; stale results, unasked-for
// samples and `error` lines are strikes (strikes.ts), and too many cost it too.

import type { FrameLimits, Message, NodeWorkersMessage } from '../protocol/wire/protocol.ts';
import type { Dispatcher } from './dispatcher.ts';
import type { Generation } from './generation.ts';
import type { WorkerLinks } from './links.ts';
import type { Peer } from './server.ts';
import type { PeerStrikes } from './strikes.ts';

export interface WorkerMessageRoutes {
  dispatcher: Dispatcher;
  generation: Pick<Generation, 'onSample'>;
  links: WorkerLinks;
  limits: FrameLimits;
  strikes: PeerStrikes;
  event: (name: string, fields: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void;
}

/**
 * A worker's connection is gone: what it held goes back to the dispatcher (its shard to another
 * worker), its link and strikes are forgotten, and a sample it owed is asked of another.
 */
export function forgetWorker(
  peer: Peer,
  reason: string,
  to: Pick<WorkerMessageRoutes, 'dispatcher' | 'links' | 'strikes'> & { generation: Pick<Generation, 'onGone'> },
): void {
  to.dispatcher.remove(peer.id, reason);
  to.links.forget(peer.id);
  to.strikes.forget(peer.id);
  to.generation.onGone(peer, reason);
}

export function routeWorkerMessage(peer: Peer, msg: Message, to: WorkerMessageRoutes): void {
  switch (msg.type) {
    case 'gradients':
    case 'gradientsNonFinite':
      if (!to.dispatcher.onGradients(peer, msg))
        to.strikes.strike(peer, `a stale result for iteration ${msg.iteration}`);
      return;
    case 'bnPart':
      if (!to.dispatcher.onBnPart(peer, msg))
        to.strikes.strike(peer, `a stale BatchNorm part for iteration ${msg.iteration}`);
      return;
    case 'sample':
      if (!to.generation.onSample(peer, msg)) to.strikes.strike(peer, 'a sample nobody asked it for');
      return;
    case 'shmAttach':
      // From the next weights on, this worker is served through the region.
      if (to.links.attach(peer, msg.region, to.limits)) to.dispatcher.resendWeights(peer.id);
      return;
    case 'gradientsRef':
      void to.links.readGradients(peer, msg, to.limits).then((m) => {
        if (m && !to.dispatcher.onGradients(peer, m))
          to.strikes.strike(peer, `a stale result for iteration ${m.iteration}`);
      });
      return;
    case 'nodeWorkers':
      nodeWorkers(peer, msg, to);
      return;
    case 'heartbeat':
      return;
    case 'leave':
      // A goodbye (SIGTERM, SIGINT): drop it now, so its shard is reassigned without waiting for the socket to end.
      peer.close(`left: ${msg.reason}`);
      return;
    case 'error':
      // Logged, and a strike: a worker that keeps reporting errors must not fill the log.
      if (!to.strikes.strike(peer, `an error (${msg.code})`))
        to.event('worker-error', { worker: peer.id, code: msg.code, message: msg.message }, 'warn');
      return;
    default:
      peer.close(`unexpected '${msg.type}' from a worker`);
  }
}

/** The least time between two nodeWorkers reports a node may send (it sends at most one a second). */
export const NODE_REPORT_MIN_MS = 500;
const lastReport = new WeakMap<Peer, number>();

/** A node's local workers, logged for the workers tables; from a peer that is not a node, or too often, a strike. */
function nodeWorkers(peer: Peer, msg: NodeWorkersMessage, to: WorkerMessageRoutes): void {
  if (peer.hello.capacity === undefined) {
    peer.close("sent 'nodeWorkers' but joined as a single worker (no hello.capacity)");
    return;
  }
  const now = performance.now();
  const last = lastReport.get(peer);
  if (last !== undefined && now - last < NODE_REPORT_MIN_MS) {
    to.strikes.strike(peer, 'node reports faster than two a second');
    return;
  }
  lastReport.set(peer, now);
  to.event('node-workers', { worker: peer.id, workers: msg.workers });
}
