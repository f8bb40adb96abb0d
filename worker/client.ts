// A worker: joins a coordinator, proves it holds the run's token, builds G and D on its backend,
// then turns every shard it is sent into gradients. It holds nothing the coordinator cannot resend.

import WebSocket from 'ws';
import { createClientHandshake } from '../protocol/wire/auth.ts';
import type { ModelConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import {
  PRE_AUTH_LIMITS,
  allFinite,
  decodeMessage,
  encodeMessage,
  encodeMessageChunks,
  frameLimitFor,
  paramTableHash,
  type FrameLimits,
  type Message,
  type WireDtype,
} from '../protocol/wire/protocol.ts';
import { ShmWorkerFiles } from '../protocol/wire/shm.ts';
import { parameterTable, sizeOf, type NamedArrays } from '../protocol/model/architecture.ts';
import type { BackendName } from '../protocol/backends.ts';
import { loadBackend } from './backend.ts';
import { Trainer, type Shard, type ShardResult } from './trainer.ts';
import { bnLayers, isBnTensor, putBnSums, type BnSumsByLayer } from '../protocol/wire/bn-sums.ts';

/** Exit codes of `gan-dist worker`, documented in the README for cluster launchers. */
export const WorkerExit = {
  DONE: 0,
  FAILED: 1,
  REJECTED: 10,
  VERSION_MISMATCH: 11,
  COORDINATOR_GONE: 12,
} as const;

export interface WorkerOptions {
  url: string;
  token: string;
  backend: BackendName;
  wantsGpu?: boolean;
  threads?: number;
  ganDistVersion: string;
  /**
   * Benchmarks only: no backend, no model; every shard is answered after this many ms with zero
   * gradients of the right names and sizes, so the coordinator's own costs can be measured.
   */
  simulateStepMs?: number;
  /** Tests only, with simulateStepMs: every shard's gradients hold a NaN (the divergence paths). */
  simulateNonFinite?: boolean;
  /**
   * The coordinator's shared-memory region (GAN_DIST_SHM_REGION, set by the launcher for local
   * workers): weights and gradients then travel through /dev/shm, the socket carries control only.
   */
  shmRegion?: string;
  /** wss: the SHA-256 fingerprint (from the token file) the coordinator's certificate must have. */
  fingerprint?: string;
  /** wss: a CA certificate (PEM) that signed the coordinator's certificate (--ca). */
  ca?: string;
  /** Leaving: aborting closes the connection (the coordinator reassigns what this worker held). */
  signal?: AbortSignal;
  log?: (event: Record<string, unknown>) => void;
}

/** The part of Trainer a worker session uses; a simulated worker provides the same. */
interface Compute {
  setWeights(named: Record<string, Float32Array>): void;
  step(shard: Shard): ShardResult | Promise<ShardResult>;
  generate(z: Float32Array, count: number): Float32Array;
  dispose(): void;
  readonly cfg: ModelConfig;
}

/** Zero gradients after a fixed delay: the network and the coordinator stay real, compute does not. */
function simulatedCompute(cfg: ModelConfig, delayMs: number, nonFinite = false): Compute {
  const table = parameterTable(cfg);
  const learnables = table.filter((s) => s.role === 'learnable');
  const layers = bnLayers(cfg);
  const grads: NamedArrays = {};
  for (const s of learnables) grads[s.name] = new Float32Array(sizeOf(s.shape));
  if (nonFinite) grads[learnables[0].name][0] = NaN;
  return {
    cfg,
    setWeights: () => {},
    step: async (shard) => {
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, delayMs));
      const sums: BnSumsByLayer = {};
      for (const l of layers) {
        const count = l.perImage * shard.n;
        // The statistics of a unit normal: mean 0, variance 1.
        sums[l.key] = { sum: new Float32Array(l.channels), sumSq: new Float32Array(l.channels).fill(count), count };
      }
      return {
        n: shard.n,
        grads,
        bn: sums,
        lossG: Math.LN2,
        lossD: 2 * Math.LN2,
        scoreG: 0.5,
        scoreD: 0.5,
        computeMs: performance.now() - t0,
      };
    },
    generate: (_z, count) => new Float32Array(count * cfg.imageSize * cfg.imageSize * 3),
    dispose: () => {},
  };
}

export interface WorkerOutcome {
  exitCode: number;
  reason: string;
  /** The session got past the handshake (it trained, or could have). */
  joined?: boolean;
}

/**
 * Runs worker sessions until one ends for good: when the coordinator goes away (or is not up
 * yet) it tries again with backoff, so a coordinator restarted with --resume gets its workers back.
 */
export async function runWorkerWithReconnect(
  opts: WorkerOptions & { reconnectTimeoutMs: number },
): Promise<WorkerOutcome> {
  const log = opts.log ?? (() => {});
  let deadline = Date.now() + opts.reconnectTimeoutMs;
  let delay = 250;
  for (;;) {
    const o = await runWorker(opts);
    if (o.exitCode !== WorkerExit.COORDINATOR_GONE || opts.reconnectTimeoutMs <= 0) return o;
    if (o.joined) {
      deadline = Date.now() + opts.reconnectTimeoutMs;
      delay = 250;
    }
    if (Date.now() + delay > deadline)
      return { ...o, reason: `${o.reason}; gave up reconnecting after ${opts.reconnectTimeoutMs} ms` };
    log({ event: 'reconnecting', inMs: delay, reason: o.reason });
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

function tlsOptions(opts: WorkerOptions): Record<string, unknown> {
  if (!opts.url.startsWith('wss:')) return {};
  if (opts.ca) return { ca: opts.ca };
  if (opts.fingerprint) {
    // A self-signed certificate cannot chain to a CA: its identity is the pinned fingerprint,
    // checked on 'upgrade' before anything is sent.
    return { rejectUnauthorized: false };
  }
  throw new GanDistError(
    'GAN_DIST_E_AUTH',
    `${opts.url}: no way to check the coordinator's certificate`,
    "use the run's token file (it carries the certificate's fingerprint) or --ca FILE for a certificate your CA signed",
  );
}

/** Runs one worker session until the coordinator says stop or the connection ends. */
export async function runWorker(opts: WorkerOptions): Promise<WorkerOutcome> {
  const log = opts.log ?? (() => {});
  const simulate = opts.simulateStepMs;
  const loaded =
    simulate === undefined
      ? await loadBackend(opts.backend, { wantsGpu: opts.wantsGpu, threads: opts.threads })
      : undefined;
  const info = loaded?.info ?? { name: 'simulated', version: '-', device: `simulated compute, ${simulate} ms a shard` };
  log({ event: 'backend', backend: info.name, version: info.version, device: info.device });

  const ws = new WebSocket(opts.url, { perMessageDeflate: false, maxPayload: 1024 ** 3, ...tlsOptions(opts) });
  const handshake = createClientHandshake({
    token: opts.token,
    role: 'worker',
    ganDistVersion: opts.ganDistVersion,
    backend: info.name,
    device: info.device,
  });
  let trainer: Compute | undefined;
  let limits: FrameLimits = PRE_AUTH_LIMITS;
  let ready = false;
  let outcome: WorkerOutcome | undefined;
  const send = (m: Message) => ws.send(encodeMessage(m));
  let shm: ShmWorkerFiles | undefined;
  // Gradient frames for the socket are encoded into one reused buffer: a fresh 38 MB one per shard
  // costs its page faults, as much again as the copy. Safe to reuse: ws copies what a client
  // sends (masking) before send returns.
  let gradFrame: Buffer = Buffer.alloc(0);
  const encodeGradients = (m: Message, o: Parameters<typeof encodeMessage>[1] = {}) => {
    const f = encodeMessage(m, { ...o, into: gradFrame });
    if (f.byteLength > gradFrame.byteLength) gradFrame = f;
    return f;
  };
  /** What the welcome asked for the gradients sent over the socket (shared memory is always float32). */
  let wireDtype: WireDtype = 'float32';

  return new Promise<WorkerOutcome>((resolve) => {
    const finish = (o: WorkerOutcome) => {
      if (!outcome) outcome = { ...o, joined: ready };
      trainer?.dispose();
      shm?.close();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close();
      resolve(outcome);
    };
    opts.signal?.addEventListener('abort', () => finish({ exitCode: WorkerExit.DONE, reason: 'left (aborted)' }), {
      once: true,
    });
    ws.on('error', (err) =>
      finish({ exitCode: WorkerExit.COORDINATOR_GONE, reason: `connection failed: ${err.message}` }),
    );
    ws.on('close', () =>
      finish({ exitCode: WorkerExit.COORDINATOR_GONE, reason: 'the coordinator closed the connection' }),
    );
    // A pinned certificate is checked before a single byte of the handshake leaves this machine.
    ws.on('upgrade', (res) => {
      if (!opts.fingerprint || !opts.url.startsWith('wss:')) return;
      const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate?.();
      const got = cert?.fingerprint256?.replaceAll(':', '').toLowerCase();
      if (got !== opts.fingerprint) {
        outcome = {
          exitCode: WorkerExit.REJECTED,
          reason: `the coordinator's certificate has fingerprint ${got ?? 'none'}, the token file pins ${opts.fingerprint}: refusing to connect`,
        };
        ws.terminate();
      }
    });
    ws.on('open', () => {
      if (outcome) return;
      const step = handshake.start();
      if (step.send) send(step.send);
    });
    ws.on('message', (data) => {
      let msg: Message;
      try {
        msg = decodeMessage(data as Buffer, limits);
      } catch (err) {
        return finish({
          exitCode: WorkerExit.FAILED,
          reason: `bad frame from the coordinator: ${(err as Error).message}`,
        });
      }
      if (!ready) {
        const step = handshake.onMessage(msg);
        if (step.send) send(step.send);
        if (step.error) {
          const mismatch = /protocol version|parameter table/.test(step.error.message);
          return finish({
            exitCode: mismatch ? WorkerExit.VERSION_MISMATCH : WorkerExit.REJECTED,
            reason: step.error.message,
          });
        }
        if (step.welcome) {
          const cfg = step.welcome.modelConfig;
          const table = parameterTable(cfg);
          // Each shard's gradients are sent before the next shard is stepped: they can live in reused arrays.
          trainer = loaded
            ? new Trainer(loaded.tf, cfg, step.welcome.seed, { reuseGradientBuffers: true })
            : simulatedCompute(cfg, simulate!, opts.simulateNonFinite);
          wireDtype = step.welcome.wireDtype ?? 'float32';
          const total = table.reduce((n, s) => n + sizeOf(s.shape), 0);
          limits = frameLimitFor(total, cfg.batchSize, cfg.imageSize, { latent: cfg.latent });
          const r = handshake.ready(paramTableHash(table));
          if (r.send) send(r.send);
          ready = true;
          // Offered after `ready`: until the coordinator answers shmReady, everything uses the socket.
          if (opts.shmRegion) send({ type: 'shmAttach', region: opts.shmRegion });
          log({ event: 'joined', workerId: step.welcome.workerId, runId: step.welcome.runId });
        }
        return;
      }
      // Messages are handled in arrival order, one at a time: a shard waits for the weights before it.
      queue = queue
        .then(() => handle(msg))
        .catch((err: Error) => {
          send({
            type: 'error',
            code: err instanceof GanDistError ? err.code : 'GAN_DIST_E_WORKER',
            message: err.message,
          });
          finish({ exitCode: WorkerExit.FAILED, reason: err.message });
        });
    });
    let queue: Promise<void> = Promise.resolve();

    const handle = async (msg: Message) => {
      const t = trainer!;
      switch (msg.type) {
        case 'shmReady':
          shm?.close();
          shm = new ShmWorkerFiles(opts.shmRegion ?? '', msg.weightsFile, msg.gradientsFile);
          log({ event: 'shm-attached', gradientsFile: msg.gradientsFile });
          return;
        case 'weightsRef': {
          if (!shm) throw new GanDistError('GAN_DIST_E_PROTOCOL', 'weightsRef before shmReady');
          // The frame the socket would have carried, validated as if it had, but for the values:
          // the coordinator's own weights, and non-finite ones would show in the gradients.
          const w = decodeMessage(shm.readWeights(msg.seq, msg.byteLength), limits, { skipFiniteCheck: true });
          if (w.type !== 'weights' || w.version !== msg.version) {
            throw new GanDistError(
              'GAN_DIST_E_PROTOCOL',
              `weightsRef announced weights version ${msg.version}, the region holds ${w.type === 'weights' ? `version ${w.version}` : `a '${w.type}' frame`}`,
            );
          }
          t.setWeights(w.tensors);
          return;
        }
        case 'weights':
          t.setWeights(msg.tensors);
          return;
        case 'shard': {
          const r = await t.step({
            iteration: msg.iteration,
            rowStart: msg.rowStart,
            n: msg.rowCount,
            images: msg.tensors.images,
            z: msg.tensors.z,
            flip: msg.tensors.flip,
          });
          const tensors: Record<string, Float32Array> = { ...r.grads };
          putBnSums(tensors, r.bn);
          // On shared memory the coordinator checks the frame itself and takes non-finite
          // gradients as this report (one check of 37.8 MB instead of two); over a socket the
          // worker checks, as a non-finite gradient frame costs its sender the connection.
          const bad = shm
            ? []
            : Object.entries(tensors)
                .filter(([, a]) => !allFinite(a))
                .map(([k]) => k);
          const base = { iteration: msg.iteration, shardId: msg.shardId, weightsVersion: msg.weightsVersion, n: r.n };
          if (bad.length > 0 || ![r.lossD, r.lossG, r.scoreD, r.scoreG].every(Number.isFinite)) {
            send({ type: 'gradientsNonFinite', ...base, tensorNames: bad.slice(0, 4096) });
            return;
          }
          const shapes: Record<string, number[]> = {};
          for (const [k, a] of Object.entries(tensors)) shapes[k] = [a.length];
          const gradients: Message = {
            type: 'gradients',
            ...base,
            scoreG: r.scoreG,
            scoreD: r.scoreD,
            lossG: r.lossG,
            lossD: r.lossD,
            timings: { computeMs: r.computeMs },
            tensors,
            shapes,
          };
          if (!shm) {
            // BatchNorm sums stay float32: the coordinator pools the batch variance as
            // E[x^2] - E[x]^2, a difference that a 2^-8 relative error in each term could swamp
            // (or make negative); they are a few KB against the 37.8 MB of gradients.
            ws.send(encodeGradients(gradients, { wireDtype, exact: isBnTensor }));
            return;
          }
          // The same frame, through this worker's file; the socket carries where to find it.
          // In one vectored write straight from the gradients' memory: no copy into a frame buffer.
          const ref = shm.writeGradients(encodeMessageChunks(gradients));
          send({ type: 'gradientsRef', ...base, ...ref });
          return;
        }
        case 'sampleRequest': {
          const z = msg.tensors.z;
          const k = msg.shapes.z[0];
          const images = t.generate(z, k);
          const s = t.cfg.imageSize;
          send({ type: 'sample', iteration: msg.iteration, tensors: { images }, shapes: { images: [k, s, s, 3] } });
          return;
        }
        case 'heartbeat':
          send({ type: 'heartbeat', t: msg.t });
          return;
        case 'stop':
          log({ event: 'stop', reason: msg.reason });
          finish({ exitCode: WorkerExit.DONE, reason: msg.reason });
          return;
        case 'reject':
        case 'error':
          finish({ exitCode: WorkerExit.REJECTED, reason: `${'reason' in msg ? msg.reason : msg.message}` });
          return;
        default:
          throw new GanDistError('GAN_DIST_E_PROTOCOL', `unexpected '${msg.type}' from the coordinator`);
      }
    };
  });
}
