// A worker: joins a coordinator, proves it holds the run's token, builds G and D on its backend,
// then turns every shard it is sent into gradients. It holds nothing the coordinator cannot resend.

import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { createClientHandshake } from '../protocol/wire/handshake.ts';
import { tlsOptions } from './connection.ts';
import { setFrameCap } from '../protocol/wire/frame-cap.ts';
import { PartsAssembler } from '../protocol/wire/parts.ts';
import { GanDistError } from '../protocol/errors.ts';
import {
  PRE_AUTH_LIMITS,
  decodeMessage,
  encodeMessage,
  frameLimitFor,
  paramTableHash,
  type FrameLimits,
  type Message,
  type SampleRequestMessage,
  type ShardMessage,
  type WelcomeMessage,
} from '../protocol/wire/protocol.ts';
import { parameterTable, sizeOf } from '../protocol/model/architecture.ts';
import { putBnSums } from '../protocol/wire/bn-sums.ts';
import { loadBackend, type LoadedBackend } from './backend.ts';
import { simulatedCompute, type Compute } from './simulated.ts';
import { Trainer } from './trainer.ts';
import { Uplink } from './uplink.ts';
import { BarrierExchange, ShardAborted } from './bn-barrier.ts';
import { leaveReason, rejectionExit, WorkerExit, type WorkerOptions, type WorkerOutcome } from './session-options.ts';

/**
 * A worker's frames go out with the all-zero masking key, which RFC 6455 allows and ws then skips
 * XORing (sender) and unXORing (the coordinator's receiver): 2 x 38 MB an iteration on the seed's
 * model, about 50 ms of a node's CPU each way on this project's 2-core benchmark machine. Masking
 * guards proxies against a browser script that picks a frame's bytes (a cache-poisoning attack);
 * a worker is not a browser, its frames are gradients it computed, and under wss no proxy reads
 * them. Monitors keep ws's random masks: their frames are small.
 */
const zeroMask = (mask: Buffer) => mask.fill(0);

/** Runs one worker session until the coordinator says stop or the connection ends. */
export async function runWorker(opts: WorkerOptions): Promise<WorkerOutcome> {
  const simulate = opts.simulateStepMs;
  const loaded =
    simulate === undefined && !opts.computeFor
      ? await loadBackend(opts.backend, { wantsGpu: opts.wantsGpu, gpu: opts.gpu, threads: opts.threads })
      : undefined;
  return new WorkerSession(opts, loaded).run();
}

/** One connection to a coordinator: handshake, then every message it sends, in arrival order. */
class WorkerSession {
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly ws: WebSocket;
  private readonly handshake: ReturnType<typeof createClientHandshake>;
  private compute?: Compute;
  private uplink?: Uplink;
  /** `--batchnorm sync` (welcome.batchnorm): each step's BatchNorm barriers go through the coordinator. */
  private barriers?: BarrierExchange;
  /** Reassembles weights that come in parts; made with the frame limits, at the welcome. */
  private parts?: PartsAssembler;
  private limits: FrameLimits = PRE_AUTH_LIMITS;
  private ready = false;
  private outcome?: WorkerOutcome;
  /** Messages are handled one at a time: a shard waits for the weights before it. */
  private queue: Promise<void> = Promise.resolve();
  private resolve: (o: WorkerOutcome) => void = () => {};
  private readonly onAbort = () => this.leave();

  constructor(
    private readonly opts: WorkerOptions,
    private readonly loaded: LoadedBackend | undefined,
  ) {
    this.log = opts.log ?? (() => {});
    const info =
      loaded?.info ??
      (opts.computeFor
        ? { name: `node:${opts.backend}`, version: '-', device: opts.device ?? 'node' }
        : { name: 'simulated', version: '-', device: `simulated compute, ${opts.simulateStepMs} ms a shard` });
    this.log({ event: 'backend', backend: info.name, version: info.version, device: info.device });
    // Until the coordinator has proved the token, a frame over PRE_AUTH_LIMITS is refused from its
    // header; join() raises the cap to the model's limits.
    this.ws = new WebSocket(opts.url, {
      perMessageDeflate: false,
      maxPayload: PRE_AUTH_LIMITS.maxFrameBytes,
      generateMask: zeroMask,
      ...tlsOptions(opts),
    });
    this.handshake = createClientHandshake({
      token: opts.token,
      role: 'worker',
      ganDistVersion: opts.ganDistVersion,
      backend: info.name,
      device: info.device,
      rank: opts.rank,
      capacity: opts.capacity,
    });
  }

  run(): Promise<WorkerOutcome> {
    return new Promise<WorkerOutcome>((resolve) => {
      this.resolve = resolve;
      const { ws, opts } = this;
      ws.on('error', (err) => this.finish(WorkerExit.COORDINATOR_GONE, `connection failed: ${err.message}`));
      ws.on('close', () => this.finish(WorkerExit.COORDINATOR_GONE, 'the coordinator closed the connection'));
      ws.on('upgrade', (res) => this.checkCertificate(res.socket as TLSSocket));
      ws.on('open', () => {
        if (this.outcome) return;
        const step = this.handshake.start();
        if (step.send) this.send(step.send);
      });
      ws.on('message', (data) => this.onFrame(data as Buffer));
      // Aborted while the backend loaded: leave before a byte is sent.
      if (opts.signal?.aborted) this.leave();
      else opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    });
  }

  private send(m: Message): void {
    this.ws.send(encodeMessage(m));
  }

  /**
   * Leaving on purpose (the signal was aborted). A shard's compute runs on this thread, so a
   * signal is seen only between steps: the step under way has finished and its gradients are
   * sent, and any shard not yet answered is abandoned. The goodbye lets the coordinator reassign
   * at once instead of when the socket's end reaches it.
   */
  private leave(): void {
    if (this.outcome) return;
    const reason = leaveReason(this.opts.signal);
    if (this.ready && this.ws.readyState === this.ws.OPEN) this.send({ type: 'leave', reason });
    this.log({ event: 'leaving', reason });
    this.finish(WorkerExit.DONE, `left: ${reason}`);
    // The coordinator hangs up on a goodbye; one that does not answer the close frame is not waited for.
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private finish(exitCode: number, reason: string): void {
    if (!this.outcome) this.outcome = { exitCode, reason, joined: this.ready };
    this.opts.signal?.removeEventListener('abort', this.onAbort);
    this.barriers?.close();
    this.compute?.dispose();
    this.uplink?.close();
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close();
    this.resolve(this.outcome);
  }

  /** A pinned certificate is checked before a single byte of the handshake leaves this machine. */
  private checkCertificate(socket: TLSSocket): void {
    const { fingerprint, url } = this.opts;
    if (!fingerprint || !url.startsWith('wss:')) return;
    const got = socket.getPeerCertificate?.()?.fingerprint256?.replaceAll(':', '').toLowerCase();
    if (got === fingerprint) return;
    this.outcome = {
      exitCode: WorkerExit.REJECTED,
      reason: `the coordinator's certificate has fingerprint ${got ?? 'none'}, the token file pins ${fingerprint}: refusing to connect`,
    };
    this.ws.terminate();
  }

  private onFrame(data: Buffer): void {
    if (this.outcome) return; // finished: what is still in flight is not for us any more
    let msg: Message;
    try {
      msg = decodeMessage(data, this.limits);
    } catch (err) {
      this.finish(WorkerExit.FAILED, `bad frame from the coordinator: ${(err as Error).message}`);
      return;
    }
    if (!this.ready) {
      this.onHandshake(msg);
      return;
    }
    try {
      // Weights in parts (parts.ts) are handled whole.
      const whole = this.parts ? this.parts.accept(msg, data.length) : msg;
      if (!whole) return;
      msg = whole;
    } catch (err) {
      this.finish(WorkerExit.FAILED, `bad frame from the coordinator: ${(err as Error).message}`);
      return;
    }
    // A barrier's result or a step given up concerns the step under way: not queued behind it.
    if (msg.type === 'bnResult' || msg.type === 'bnAbort') {
      if (!this.barriers) {
        this.finish(WorkerExit.FAILED, `'${msg.type}' from the coordinator, but this run's BatchNorm is not synced`);
        return;
      }
      if (msg.type === 'bnResult') this.barriers.onResult(msg);
      else this.barriers.onAbort(msg.iteration, msg.shardId);
      return;
    }
    this.queue = this.queue
      .then(() => this.handle(msg))
      .catch((err: Error) => {
        const code = err instanceof GanDistError ? err.code : 'GAN_DIST_E_WORKER';
        this.send({ type: 'error', code, message: err.message });
        this.finish(WorkerExit.FAILED, err.message);
      });
  }

  private onHandshake(msg: Message): void {
    const step = this.handshake.onMessage(msg);
    if (step.send) this.send(step.send);
    if (step.error) {
      this.finish(rejectionExit(step.error.message), step.error.message);
      return;
    }
    if (step.welcome) this.join(step.welcome);
  }

  /** Welcomed: build the networks the coordinator described, size the frame limits, say ready. */
  private join(welcome: WelcomeMessage): void {
    const cfg = welcome.modelConfig;
    const table = parameterTable(cfg);
    // Each shard's gradients are sent before the next shard is stepped: they can live in reused arrays.
    this.compute = this.opts.computeFor
      ? this.opts.computeFor(welcome, (m) => {
          if (!this.ready || this.ws.readyState !== WebSocket.OPEN) return false;
          this.send(m);
          return true;
        })
      : this.loaded
        ? new Trainer(this.loaded.tf, cfg, welcome.seed, { reuseGradientBuffers: true, device: this.loaded.device })
        : simulatedCompute(cfg, this.opts.simulateStepMs!, this.opts.simulateNonFinite);
    this.uplink = new Uplink(this.ws, welcome.wireDtype ?? 'float32', this.opts.shmRegion);
    if (welcome.batchnorm === 'sync') this.barriers = new BarrierExchange((m) => this.send(m));
    const total = table.reduce((n, s) => n + sizeOf(s.shape), 0);
    this.limits = frameLimitFor(total, cfg.batchSize, cfg.imageSize, { latent: cfg.latent });
    setFrameCap(this.ws, this.limits.maxFrameBytes);
    this.parts = new PartsAssembler(this.limits.maxFrameBytes);
    const r = this.handshake.ready(paramTableHash(table));
    if (r.send) this.send(r.send);
    this.ready = true;
    // Offered after `ready`: until the coordinator answers shmReady, everything uses the socket.
    if (this.opts.shmRegion) this.send({ type: 'shmAttach', region: this.opts.shmRegion });
    this.log({ event: 'joined', workerId: welcome.workerId, runId: welcome.runId });
  }

  private async handle(msg: Message): Promise<void> {
    const compute = this.compute!;
    const uplink = this.uplink!;
    switch (msg.type) {
      case 'shmReady':
        uplink.attach(msg.weightsFile, msg.gradientsFile);
        this.log({ event: 'shm-attached', gradientsFile: msg.gradientsFile });
        return;
      case 'weightsRef':
        // Straight from the region into the trainer's tensors where it is mapped (no copy between).
        compute.setWeights(uplink.weightsAt(msg, this.limits));
        uplink.weightsTaken(msg);
        return;
      case 'weights':
        compute.setWeights(msg.tensors);
        return;
      case 'shard':
        return this.answerShard(msg);
      case 'sampleRequest':
        return this.answerSample(msg);
      case 'heartbeat':
        this.send({ type: 'heartbeat', t: msg.t });
        return;
      case 'stop':
        this.log({ event: 'stop', reason: msg.reason });
        this.finish(WorkerExit.DONE, msg.reason);
        return;
      case 'reject':
        // After `ready`: the coordinator found another parameter table than its own.
        this.finish(rejectionExit(msg.reason), msg.reason);
        return;
      case 'error':
        this.finish(WorkerExit.REJECTED, msg.message);
        return;
      default:
        throw new GanDistError('GAN_DIST_E_PROTOCOL', `unexpected '${msg.type}' from the coordinator`);
    }
  }

  /** A shard's gradients and BatchNorm sums, or the report that they are not finite. */
  private async answerShard(msg: ShardMessage): Promise<void> {
    const { barriers } = this;
    const shard = {
      iteration: msg.iteration,
      rowStart: msg.rowStart,
      n: msg.rowCount,
      images: msg.tensors.images,
      z: msg.tensors.z,
      flip: msg.tensors.flip,
    };
    let r: Awaited<ReturnType<Compute['step']>>;
    try {
      if (barriers?.isAborted(msg.iteration, msg.shardId)) return; // given up before it began
      r = await this.compute!.step(shard, undefined, barriers?.barrierFor(msg.iteration, msg.shardId));
    } catch (err) {
      if (err instanceof ShardAborted) {
        this.log({ event: 'shard-aborted', iteration: msg.iteration, shardId: msg.shardId });
        return;
      }
      throw err;
    } finally {
      barriers?.end(msg.iteration, msg.shardId);
    }
    if (this.outcome) return; // left during the step: the coordinator has reassigned the shard
    const tensors: Record<string, Float32Array> = { ...r.grads };
    putBnSums(tensors, r.bn);
    const bad = this.uplink!.nonFinite(tensors);
    const base = { iteration: msg.iteration, shardId: msg.shardId, weightsVersion: msg.weightsVersion, n: r.n };
    if (bad.length > 0 || ![r.lossD, r.lossG, r.scoreD, r.scoreG].every(Number.isFinite)) {
      this.send({ type: 'gradientsNonFinite', ...base, tensorNames: bad.slice(0, 4096) });
      return;
    }
    const shapes: Record<string, number[]> = {};
    for (const [k, a] of Object.entries(tensors)) shapes[k] = [a.length];
    this.uplink!.sendGradients({
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
  }

  private async answerSample(msg: SampleRequestMessage): Promise<void> {
    const k = msg.shapes.z[0];
    const images = await this.compute!.generate(msg.tensors.z, k);
    const s = this.compute!.cfg.imageSize;
    this.send({ type: 'sample', iteration: msg.iteration, tensors: { images }, shapes: { images: [k, s, s, 3] } });
  }
}
