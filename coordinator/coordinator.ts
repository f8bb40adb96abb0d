// The parameter server: owns the master weights, both Adam states, the iteration counter, the
// data order and every RNG; runs DESIGN.md's iteration over whichever workers are live. An
// explicit state machine: starting -> waiting -> running -> stopping -> finished | failed.

import { randomUUID } from 'node:crypto';
import { ADAM_EPSILON } from './optimizer/adam.ts';
import { modelConfigOf } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';
import { Dispatcher, RoundAbandoned } from './dispatcher.ts';
import { syncBarrierPlan } from '../protocol/wire/bn-sync.ts';
import { logEvent } from './logger.ts';
import type { Message } from '../protocol/wire/protocol.ts';
import { Optimizer } from './optimizer/optimizer.ts';
import { poolBatchStats, updateRunningStats } from './optimizer/reduce.ts';
import { bnLayers, type BnLayer } from '../protocol/wire/bn-sums.ts';
import { Rng } from '../protocol/rng.ts';
import type { Peer, PeerServer } from './server.ts';
import { attachMonitors } from './broadcast.ts';
import { initialParams, parameterTable, type NamedArrays, type ParamSpec } from '../protocol/model/architecture.ts';
import {
  gradientsProblem,
  iterationRecord,
  logIteration,
  poolAnswers,
  type IterationInputs,
  type IterationRecord,
} from './iteration.ts';
import { WorkerLinks } from './links.ts';
import type { LinkBytes } from './link-counter.ts';
import { sharedGpu } from './devices.ts';
import { forgetWorker, routeWorkerMessage } from './worker-messages.ts';
import { createEndpoint, joinedFields } from './endpoint.ts';
import type { CoordinatorOptions, RunSnapshot, RunState } from './options.ts';
import { Generation } from './generation.ts';
import { type Gathered, ShardGather } from './gather.ts';
import { PeerStrikes } from './strikes.ts';

/** How long a shutdown waits for a worker's socket to take its stop frame. */
const STOP_DRAIN_MS = 2_000;

export class Coordinator {
  state: RunState = 'starting';
  readonly runId: string;
  readonly specs: ParamSpec[];
  readonly learnables: ParamSpec[];
  readonly params: NamedArrays;
  readonly adamM: NamedArrays;
  readonly adamV: NamedArrays;
  readonly zValidation: Float32Array;
  iteration: number;
  epoch: number;
  private version = 0;
  private rngZ: Rng;
  private rngFlip: Rng;
  private readonly optimizer: Optimizer;
  private readonly dispatcher: Dispatcher;
  private readonly links: WorkerLinks;
  /** Cuts each iteration's batch into shards and gathers their answers (gather.ts). */
  private readonly shards: ShardGather;
  private readonly strikes = new PeerStrikes(); // stale and unsolicited frames, per peer
  private server?: PeerServer;
  private stopReason?: string;
  /** Why the run cannot go on (fail()), thrown by run(). */
  private failure?: Error;
  private readonly stopController = new AbortController();
  private readonly generation: Generation;
  private readonly bnLayers: BnLayer[];
  /** --batchnorm sync: the barriers of one step (bn-sync.ts syncBarrierPlan). */
  private readonly barrierCount: number;
  readonly maxIterations: number;
  endpoint?: string;
  private readonly iterationWatchers = new Set<(r: IterationRecord) => void>();

  constructor(private readonly opts: CoordinatorOptions) {
    const cfg = opts.config;
    const model = modelConfigOf(cfg);
    this.specs = parameterTable(model);
    this.learnables = this.specs.filter((s) => s.role === 'learnable');
    this.bnLayers = bnLayers(model);
    this.barrierCount = syncBarrierPlan(this.bnLayers).length;
    const r = opts.resume;
    this.runId = r?.runId ?? randomUUID();
    // Weights and Adam's moments live in the optimizer's flat buffers (shared with its threads);
    // everything else, checkpoints included, sees them as NamedArrays views.
    this.optimizer = new Optimizer(
      this.specs,
      { params: r?.params ?? initialParams(this.specs, cfg.seed), adamM: r?.adamM, adamV: r?.adamV },
      { threads: opts.adamThreads },
    );
    this.params = this.optimizer.params;
    this.adamM = this.optimizer.adamM;
    this.adamV = this.optimizer.adamV;
    this.iteration = r?.iteration ?? 0;
    this.epoch = r?.epoch ?? 1;
    this.rngZ = r ? Rng.fromState(r.rng.z) : new Rng(cfg.seed, 2);
    this.rngFlip = r ? Rng.fromState(r.rng.flip) : new Rng(cfg.seed, 3);
    // The 25 fixed latent vectors of the sample grids, drawn once per run.
    this.zValidation =
      r?.zValidation ?? new Rng(cfg.seed, 4).fillNormal(new Float32Array(cfg.numValidationImages * cfg.latent));
    const byEpochs = cfg.epochs * opts.iterationsPerEpoch;
    this.maxIterations = cfg.iterations > 0 ? Math.min(cfg.iterations, byEpochs) : byEpochs;
    this.links = new WorkerLinks({
      specs: this.specs,
      wireDtype: opts.wireDtype,
      shm: opts.shm,
      event: (name, fields) => this.event(name, fields),
    });
    this.dispatcher = new Dispatcher({
      weights: (slot) =>
        this.links.weightsFor(slot.peer.id, { version: this.version, iteration: this.iteration, params: this.params }),
      validate: (m) => gradientsProblem(m, this.learnables, this.bnLayers),
      event: (name, fields, level) => this.event(name, fields, level),
    });
    this.shards = new ShardGather({
      opts,
      dispatcher: this.dispatcher,
      links: this.links,
      optimizer: this.optimizer,
      barrierCount: this.barrierCount,
      signal: this.stopController.signal,
      waiting: (iteration) => this.event('waiting-for-workers', { iteration }, 'warn'),
    });
    this.generation = new Generation({
      dispatcher: this.dispatcher,
      latent: cfg.latent,
      event: (name, fields, level) => this.event(name, fields, level),
      writeSamples: opts.writeSamples,
      evaluation: opts.evaluation,
    });
  }

  private event(name: string, fields: Record<string, unknown> = {}, level: 'info' | 'warn' | 'error' = 'info'): void {
    logEvent(this.opts.log, name, fields, level);
    this.opts.onEvent?.(name, fields);
  }

  private transition(to: RunState, fields: Record<string, unknown> = {}): void {
    const from = this.state;
    this.state = to;
    this.event('state', { from, to, ...fields });
  }

  /** The live workers, by peer id. */
  get workers(): Dispatcher['workers'] {
    return this.dispatcher.workers;
  }

  /** Opens the endpoint workers join. Returns "host:port" actually bound. */
  async listen(): Promise<string> {
    const { server, limits } = createEndpoint(this.opts, this.specs, this.runId, this.links);
    this.server = server;
    if (this.opts.monitors)
      attachMonitors(this.server, this.opts.monitors, (reason) => this.requestStop(reason), this.strikes);
    this.server.on('peer', (peer: Peer) => {
      this.event('worker-joined', joinedFields(peer));
      if (peer.role !== 'worker') return;
      const live = [...this.dispatcher.workers.values()].map((w) => w.peer);
      const twin = sharedGpu(peer, live);
      if (twin) this.event('shared-gpu', { workers: [twin.id, peer.id], device: peer.hello.device }, 'warn');
      this.dispatcher.add(peer);
    });
    const { dispatcher, generation, links, strikes } = this;
    this.server.on('gone', (peer: Peer, reason: string) => {
      this.event(
        'worker-left',
        { worker: peer.id, rank: peer.hello.rank, address: peer.address, reason },
        this.state === 'running' ? 'warn' : 'info',
      );
      forgetWorker(peer, reason, { dispatcher, generation, links, strikes });
      if (this.stopReason && this.dispatcher.liveCount === 0) this.dispatcher.abandon(this.stopReason);
    });
    // The first rejection of each kind a minute in full, then that minute's count (server.ts).
    this.server.on('rejected', (r: Record<string, unknown>) => this.event('peer-rejected', r, 'warn'));
    this.server.on('rejected-summary', (s: Record<string, unknown>) => this.event('peers-rejected', s, 'warn'));
    const routes = { dispatcher, generation, links, limits, strikes, event: this.event.bind(this) };
    this.server.on('message', (peer: Peer, msg: Message) => {
      // attachMonitors handles what monitors say.
      if (peer.role === 'worker') routeWorkerMessage(peer, msg, routes);
    });
    const addr = await this.server.listen();
    this.endpoint = `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
    this.event('listening', { endpoint: this.endpoint });
    return this.endpoint;
  }

  /** Calls `fn` after every iteration (the terminal UI, benchmarks); returns the unsubscribe. */
  watchIterations(fn: (r: IterationRecord) => void): () => void {
    this.iterationWatchers.add(fn);
    return () => this.iterationWatchers.delete(fn);
  }

  /** Ctrl-C / SIGTERM / the TUI's Stop: finish the current iteration, checkpoint, stop the workers. */
  requestStop(reason = 'stop requested'): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    this.event('stop-requested', { reason, iteration: this.iteration });
    this.stopController.abort();
    // No worker to finish the iteration in progress: it is given up, not waited for.
    if (this.dispatcher.liveCount === 0) this.dispatcher.abandon(reason);
  }

  /** The run cannot go on (every local worker failed to start, say): run() ends failed with `err`. */
  fail(err: Error): void {
    this.failure ??= err;
    this.stopController.abort();
  }

  snapshot(): RunSnapshot {
    return {
      runId: this.runId,
      iteration: this.iteration,
      epoch: this.epoch,
      config: this.opts.config,
      params: this.params,
      adamM: this.adamM,
      adamV: this.adamV,
      zValidation: this.zValidation,
      rng: { z: this.rngZ.state(), flip: this.rngFlip.state() },
      data: this.opts.batches.state(),
    };
  }

  /** Trains until the iteration bound or a stop; returns the final state. */
  async run(): Promise<RunState> {
    const cfg = this.opts.config;
    let lastCheckpoint = this.iteration;
    try {
      // The optimizer's threads load while the workers join.
      this.optimizer.prepare();
      if (this.dispatcher.liveCount < this.opts.minWorkers) {
        this.transition('waiting', { minWorkers: this.opts.minWorkers, live: this.dispatcher.liveCount });
        await this.dispatcher.waitForWorkers(this.opts.minWorkers, this.stopController.signal);
      }
      this.transition('running', {
        iteration: this.iteration,
        maxIterations: this.maxIterations,
        adamThreads: this.optimizer.threads,
      });
      lastCheckpoint = this.iteration;
      const evalEvery = this.opts.evaluation ? (this.opts.evalEvery ?? 0) : 0;
      if (evalEvery > 0 && this.iteration === 0) await this.evaluate();
      while (!this.stopReason && this.iteration < this.maxIterations) {
        await this.step();
        if (this.iteration === 1 || this.iteration % cfg.validationFrequency === 0) await this.sample();
        if (evalEvery > 0 && this.iteration % evalEvery === 0) await this.evaluate();
        const due = this.opts.checkpointEvery > 0 && this.iteration % this.opts.checkpointEvery === 0;
        if (due && (await this.checkpoint(true))) lastCheckpoint = this.iteration;
      }
      // The run's end is scored too, so its curve ends at its last iteration.
      if (evalEvery > 0 && !this.stopReason && this.generation.lastEvaluated !== this.iteration) await this.evaluate();
      await this.generation.settled();
      this.transition('stopping', { reason: this.stopReason ?? 'iteration bound reached' });
      if (this.iteration !== lastCheckpoint && this.opts.finalCheckpoint !== false) await this.checkpoint();
      // The last lines first, so remote monitors see the end before their connections close.
      this.transition('finished', { iteration: this.iteration });
      this.event('run-finished', { iteration: this.iteration, epoch: this.epoch });
      await this.shutdown(this.stopReason ?? 'training finished');
      return this.state;
    } catch (err) {
      if (this.stopReason && !this.failure && err instanceof RoundAbandoned) {
        // The last completed iteration is what the checkpoint holds; the abandoned one never was.
        this.transition('stopping', { reason: this.stopReason });
        if (this.iteration !== lastCheckpoint && this.opts.finalCheckpoint !== false) await this.checkpoint();
        this.transition('finished', { iteration: this.iteration });
        await this.shutdown(this.stopReason);
        return this.state;
      }
      if (this.stopReason && !this.failure && err instanceof GanDistError && err.code === 'GAN_DIST_E_WORKER') {
        // Stopped while waiting for workers: nothing changed since the last checkpoint.
        this.transition('finished', { iteration: this.iteration });
        await this.shutdown(this.stopReason);
        return this.state;
      }
      const failure = this.failure ?? (err as Error);
      this.transition('failed', { error: failure.message });
      await this.shutdown(`run failed: ${failure.message}`);
      throw failure;
    }
  }

  /** After run(): weights and Adam state go back to the SIMD arena (tests run many coordinators); unusable after. */
  async dispose(): Promise<void> {
    await this.optimizer.dispose();
  }

  /** A periodic one that fails (a full disk) is logged and training goes on; the final one must succeed. */
  private async checkpoint(periodic = false): Promise<boolean> {
    const t0 = performance.now();
    try {
      const where = await this.opts.saveSnapshot(this.snapshot());
      const ms = Math.round(performance.now() - t0);
      this.event('checkpoint-written', { iteration: this.iteration, path: where, ms });
      return true;
    } catch (err) {
      if (!periodic) throw err;
      this.event('checkpoint-failed', { iteration: this.iteration, error: (err as Error).message }, 'error');
      return false;
    }
  }

  private async shutdown(reason: string): Promise<void> {
    this.dispatcher.stop();
    const peers = [...this.dispatcher.workers.values()].map((slot) => slot.peer);
    for (const peer of peers) peer.send({ type: 'stop', reason });
    // The stop frames leave before the sockets go.
    await Promise.all(peers.map((peer) => peer.drained(STOP_DRAIN_MS)));
    await this.server?.close();
    await this.optimizer.close();
  }

  /** One iteration: batch, Z and flips for the whole batch, shards, gather, reduce, Adam. */
  async step(): Promise<IterationRecord> {
    const cfg = this.opts.config;
    const start = performance.now();
    // What the draw changes, so that an iteration given up on Stop leaves no trace.
    const before = { z: this.rngZ.state(), flip: this.rngFlip.state(), data: this.opts.batches.state() };
    const inputs = this.draw();
    let sent = start;
    let gatheredShards: Gathered;
    try {
      if (this.dispatcher.liveCount === 0) {
        this.event('waiting-for-workers', { iteration: inputs.iteration }, 'warn');
        await this.dispatcher.waitForWorkers(1, this.stopController.signal);
      }
      // (1) Gather, summing n_k g_k as results arrive.
      sent = performance.now();
      gatheredShards = await this.shards.gather(inputs);
    } catch (err) {
      if (!this.stopReason) throw err;
      // Stopped with no worker to finish it: as before the draw, so a resume draws this
      // iteration's batch, Z and flips again and continues as an uninterrupted run would.
      this.rngZ = Rng.fromState(before.z);
      this.rngFlip = Rng.fromState(before.flip);
      this.opts.batches.restore(before.data);
      this.event('iteration-abandoned', { iteration: inputs.iteration, reason: this.stopReason }, 'warn');
      throw new RoundAbandoned(`iteration ${inputs.iteration} abandoned: ${this.stopReason}`);
    }
    const { answers, reduceMs } = gatheredShards;
    const gathered = performance.now();
    // (2) Pool BatchNorm statistics and scores; (3) Adam on the mean gradient.
    const pooled = poolAnswers(answers, this.bnLayers, cfg.batchSize);
    // The mean and Adam in one pass (threads: one slice each), bitwise the single-threaded result.
    const { lr, beta1, beta2 } = cfg;
    await this.optimizer.step(inputs.iteration, { lr, beta1, beta2, epsilon: ADAM_EPSILON });
    updateRunningStats(this.params, poolBatchStats(pooled.bn));
    const adamMs = performance.now() - gathered;
    this.version++;
    this.iteration = inputs.iteration;
    this.epoch = inputs.batch.epoch;

    const times = { start, sent, gathered, end: performance.now(), adamMs, reduceMs };
    // The link's bytes since the last iteration line, so the lines add up to the run's traffic
    // (a sample request between iterations counts in the next one); logIteration writes every key.
    const link = this.server?.link.take() ?? { sentBytes: 0, receivedBytes: 0 };
    const rec: IterationRecord & { link: LinkBytes } = { ...iterationRecord(inputs, answers, pooled, times), link };
    logIteration(this.opts.log, rec);
    this.opts.onIteration?.(rec);
    for (const w of this.iterationWatchers) w(rec);
    return rec;
  }

  /** The next batch, and Z and flips drawn for the whole batch, so no draw depends on how many workers there are. */
  private draw(): IterationInputs {
    const cfg = this.opts.config;
    const iteration = this.iteration + 1;
    const batch = this.opts.batches.next();
    const z = this.rngZ.fillNormal(new Float32Array(cfg.batchSize * cfg.latent));
    const flip = this.rngFlip.bernoulli(cfg.batchSize, cfg.flipProb);
    this.opts.onDraw?.(iteration, z, flip);
    return { iteration, weightsVersion: this.version, batch, z, flip };
  }

  /** G(ZValidation) in inference mode on one worker, written as the 5x5 tile PNG. */
  async sample(): Promise<string | undefined> {
    return this.generation.sample(this.iteration, this.zValidation, this.opts.config.numValidationImages);
  }

  /** SWD of G at this iteration (generation.ts): resolves once the images are in hand. */
  async evaluate(): Promise<void> {
    await this.generation.evaluate(this.iteration);
  }
}
