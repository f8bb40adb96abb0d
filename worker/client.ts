// A worker: joins a coordinator, proves it holds the run's token, builds G and D on its backend,
// then turns every shard it is sent into gradients. It holds nothing the coordinator cannot resend.

import WebSocket from 'ws';
import { createClientHandshake } from '../coordinator/auth.ts';
import type { ModelConfig } from '../coordinator/config.ts';
import { GanDistError } from '../coordinator/errors.ts';
import {
  PRE_AUTH_LIMITS,
  allFinite,
  decodeMessage,
  encodeMessage,
  frameLimitFor,
  paramTableHash,
  type FrameLimits,
  type Message,
} from '../coordinator/protocol.ts';
import { parameterTable, sizeOf } from './architecture.ts';
import { loadBackend, type BackendName } from './backend.ts';
import { Trainer } from './trainer.ts';

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
  log?: (event: Record<string, unknown>) => void;
}

export interface WorkerOutcome {
  exitCode: number;
  reason: string;
}

/** Runs one worker session until the coordinator says stop or the connection ends. */
export async function runWorker(opts: WorkerOptions): Promise<WorkerOutcome> {
  const log = opts.log ?? (() => {});
  const { tf, info } = await loadBackend(opts.backend, { wantsGpu: opts.wantsGpu, threads: opts.threads });
  log({ event: 'backend', backend: info.name, version: info.version, device: info.device });

  const ws = new WebSocket(opts.url, { perMessageDeflate: false, maxPayload: 1024 ** 3 });
  const handshake = createClientHandshake({
    token: opts.token,
    role: 'worker',
    ganDistVersion: opts.ganDistVersion,
    backend: info.name,
    device: info.device,
  });
  let trainer: Trainer | undefined;
  let limits: FrameLimits = PRE_AUTH_LIMITS;
  let ready = false;
  let outcome: WorkerOutcome | undefined;
  const send = (m: Message) => ws.send(encodeMessage(m));

  return new Promise<WorkerOutcome>((resolve) => {
    const finish = (o: WorkerOutcome) => {
      if (!outcome) outcome = o;
      trainer?.dispose();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close();
      resolve(outcome);
    };
    ws.on('error', (err) => finish({ exitCode: WorkerExit.COORDINATOR_GONE, reason: `connection failed: ${err.message}` }));
    ws.on('close', () => finish({ exitCode: WorkerExit.COORDINATOR_GONE, reason: 'the coordinator closed the connection' }));
    ws.on('open', () => {
      const step = handshake.start();
      if (step.send) send(step.send);
    });
    ws.on('message', (data) => {
      let msg: Message;
      try {
        msg = decodeMessage(data as Buffer, limits);
      } catch (err) {
        return finish({ exitCode: WorkerExit.FAILED, reason: `bad frame from the coordinator: ${(err as Error).message}` });
      }
      if (!ready) {
        const step = handshake.onMessage(msg);
        if (step.send) send(step.send);
        if (step.error) {
          const mismatch = /protocol version|parameter table/.test(step.error.message);
          return finish({ exitCode: mismatch ? WorkerExit.VERSION_MISMATCH : WorkerExit.REJECTED, reason: step.error.message });
        }
        if (step.welcome) {
          const cfg = step.welcome.modelConfig as unknown as ModelConfig & { batchSize: number };
          const table = parameterTable(cfg);
          trainer = new Trainer(tf, cfg, step.welcome.seed);
          const total = table.reduce((n, s) => n + sizeOf(s.shape), 0);
          limits = frameLimitFor(total, cfg.batchSize ?? 128, cfg.imageSize, { latent: cfg.latent });
          const r = handshake.ready(paramTableHash(table));
          if (r.send) send(r.send);
          ready = true;
          log({ event: 'joined', workerId: step.welcome.workerId, runId: step.welcome.runId });
        }
        return;
      }
      try {
        handle(msg);
      } catch (err) {
        send({ type: 'error', code: err instanceof GanDistError ? err.code : 'GAN_DIST_E_WORKER', message: (err as Error).message });
        finish({ exitCode: WorkerExit.FAILED, reason: (err as Error).message });
      }
    });

    const handle = (msg: Message) => {
      const t = trainer!;
      switch (msg.type) {
        case 'weights':
          t.setWeights(msg.tensors);
          return;
        case 'shard': {
          const r = t.step({
            iteration: msg.iteration,
            rowStart: msg.rowStart,
            n: msg.rowCount,
            images: msg.tensors.images,
            z: msg.tensors.z,
            flip: msg.tensors.flip,
          });
          const tensors: Record<string, Float32Array> = { ...r.grads };
          for (const [key, b] of Object.entries(r.bn)) {
            tensors[`bn/${key}/sum`] = b.sum;
            tensors[`bn/${key}/sumSq`] = b.sumSq;
          }
          const bad = Object.entries(tensors).filter(([, a]) => !allFinite(a)).map(([k]) => k);
          const base = { iteration: msg.iteration, shardId: msg.shardId, weightsVersion: msg.weightsVersion, n: r.n };
          if (bad.length > 0 || ![r.lossD, r.lossG, r.scoreD, r.scoreG].every(Number.isFinite)) {
            send({ type: 'gradientsNonFinite', ...base, tensorNames: bad.slice(0, 4096) });
            return;
          }
          const shapes: Record<string, number[]> = {};
          for (const [k, a] of Object.entries(tensors)) shapes[k] = [a.length];
          send({
            type: 'gradients',
            ...base,
            scoreG: r.scoreG,
            scoreD: r.scoreD,
            lossG: r.lossG,
            lossD: r.lossD,
            timings: { computeMs: r.computeMs },
            tensors,
            shapes,
          });
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
