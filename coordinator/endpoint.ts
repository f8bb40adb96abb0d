// The coordinator's endpoint: the peer server for this run, its frame limits fitted to the model
// (and to the evaluation's sample size), the welcome each worker and monitor gets, and what the
// log says of a peer that joined.

import { workerModelConfigOf } from '../protocol/config.ts';
import { sizeOf, type ParamSpec } from '../protocol/model/architecture.ts';
import { frameLimitFor, paramTableHash, type FrameLimits } from '../protocol/wire/protocol.ts';
import type { WorkerLinks } from './links.ts';
import type { CoordinatorOptions } from './options.ts';
import { PeerServer, type Peer } from './server.ts';

export function createEndpoint(
  opts: CoordinatorOptions,
  specs: ParamSpec[],
  runId: string,
  links: WorkerLinks,
): { server: PeerServer; limits: FrameLimits } {
  const cfg = opts.config;
  const total = specs.reduce((n, s) => n + sizeOf(s.shape), 0);
  const limits = frameLimitFor(total, cfg.batchSize, cfg.imageSize, {
    latent: cfg.latent,
    // A worker's answer to an evaluation carries evaluation.count images.
    sampleCount: Math.max(cfg.numValidationImages, opts.evaluation?.count ?? 0),
  });
  const server = new PeerServer({
    host: opts.host,
    port: opts.port,
    token: opts.token,
    paramTableHash: paramTableHash(specs),
    tls: opts.tls,
    limits,
    welcome: (hello, id) => ({
      runId,
      workerId: id,
      modelConfig: workerModelConfigOf(cfg),
      seed: cfg.seed,
      ...(hello.role === 'worker' ? links.welcome(id) : {}),
      ...(hello.role === 'worker' && opts.batchnorm === 'sync' ? { batchnorm: 'sync' as const } : {}),
    }),
  });
  return { server, limits };
}

/** The `worker-joined` event of a peer (a monitor's too): who, from where, with which credential. */
export function joinedFields(peer: Peer): Record<string, unknown> {
  const { hello } = peer;
  return {
    worker: peer.id,
    rank: hello.rank,
    role: peer.role,
    credential: peer.credential,
    address: peer.address,
    backend: hello.backend,
    device: hello.device,
    ...(hello.capacity === undefined ? {} : { capacity: hello.capacity }),
  };
}
