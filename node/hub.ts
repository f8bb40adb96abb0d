// The local side of a node: a loopback server its own worker processes join (over shared memory
// where /dev/shm has room), the coordinator's dispatcher, links and launcher reused unchanged. It
// is the node's Compute: each weights version is fanned out once, each shard the coordinator sends
// is split among the local workers and their answers folded into one (combine.ts). A local worker
// that dies is restarted (--max-restarts) and its sub-shard recomputed by the others in the same
// step: the coordinator sees a slower node, never a lost shard.

import { GanDistError } from '../protocol/errors.ts';
import { newRoleTokens, type RoleTokens } from '../protocol/wire/auth.ts';
import type { ModelConfig } from '../protocol/config.ts';
import { bnLayers } from '../protocol/wire/bn-sums.ts';
import { parameterTable, sizeOf, type ParamSpec } from '../protocol/model/architecture.ts';
import {
  frameLimitFor,
  paramTableHash,
  type FrameLimits,
  type LocalWorkerReport,
  type Message,
  type WelcomeMessage,
} from '../protocol/wire/protocol.ts';
import type { ShmRegion, TransportChoice } from '../protocol/wire/shm.ts';
import { openLocalTransport } from '../coordinator/local-transport.ts';
import {
  Dispatcher,
  RoundAbandoned,
  type RoundSync,
  type ShardAnswer,
  type ShardTask,
} from '../coordinator/dispatcher.ts';
import { BnBarriers } from '../coordinator/bn-barriers.ts';
import { combineBnParts, partOfResult, syncBarrierPlan } from '../protocol/wire/bn-sync.ts';
import { Generation } from '../coordinator/generation.ts';
import { cutShards, gradientsProblem } from '../coordinator/iteration.ts';
import { WorkerLinks } from '../coordinator/links.ts';
import { logEvent, type RunLogger } from '../coordinator/logger.ts';
import { PeerServer, type Peer } from '../coordinator/server.ts';
import { PeerStrikes } from '../coordinator/strikes.ts';
import { splitRows } from '../coordinator/optimizer/reduce.ts';
import type { LaunchSpec } from '../coordinator/train/launcher.ts';
import { LocalWorkers, type LocalWorkersGone } from '../coordinator/train/local-workers.ts';
import { forgetWorker, routeWorkerMessage } from '../coordinator/worker-messages.ts';
import type { Compute } from '../worker/simulated.ts';
import type { BnBarrier, Shard, ShardResult } from '../worker/trainer.ts';
import { ShardCombiner } from './combine.ts';

/** The least gap between two reports of the local workers (the coordinator allows NODE_REPORT_MIN_MS). */
const REPORT_GAP_MS = 1000;
/** Their img/s are reported at least this often while steps run. */
const REPORT_EVERY_MS = 10_000;

export interface NodeHubOptions {
  /** The local workers to start (planWorkers: one per GPU, or N CPU workers). */
  plan: LaunchSpec[];
  /** The coordinator's welcome: the model and seed every local worker is welcomed with. */
  welcome: WelcomeMessage;
  transport?: TransportChoice;
  /** --max-restarts for the local workers, as the coordinator's launcher counts them. */
  maxRestarts: number;
  log: RunLogger;
  /** Every local worker is down for good: the node cannot compute any more. */
  onAllGone?: (gone: LocalWorkersGone) => void;
  /** Tests: where shared-memory regions live (default /dev/shm). */
  shmRoot?: string;
}

export class NodeHub implements Compute {
  readonly cfg: ModelConfig;
  private readonly specs: ParamSpec[];
  private readonly dispatcher: Dispatcher;
  private readonly links: WorkerLinks;
  private readonly generation: Generation;
  private readonly combiner: ShardCombiner;
  /** --batchnorm sync: the barriers of one step. */
  private readonly barrierCount: number;
  private readonly strikes = new PeerStrikes();
  private readonly limits: FrameLimits;
  private readonly server: PeerServer;
  private readonly shm?: ShmRegion;
  private workers?: LocalWorkers;
  private params: Record<string, Float32Array> = {};
  private version = 0;
  /** Why the node cannot go on; the step waiting for workers fails with it. */
  private failure?: Error;
  private readonly abort = new AbortController();
  /** A secret of the node's own: its workers never see the run's token. */
  private readonly tokens: RoleTokens = newRoleTokens();
  /** Its local workers by rank, as the coordinator's workers table shows them (nodeWorkers). */
  private readonly local = new Map<number, LocalWorkerReport>();
  private readonly rankOf = new Map<number, number>();
  private reporter?: (m: Message) => boolean;
  private reportTimer?: NodeJS.Timeout;
  private lastReportAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly opts: NodeHubOptions) {
    const cfg = opts.welcome.modelConfig;
    this.cfg = cfg;
    for (const p of opts.plan)
      this.local.set(p.rank, {
        rank: p.rank,
        device: p.gpu !== undefined ? `GPU ${p.gpu}` : '',
        backend: p.backend,
        state: 'starting',
      });
    this.specs = parameterTable(cfg);
    const learnables = this.specs.filter((s) => s.role === 'learnable');
    const layers = bnLayers(cfg);
    this.barrierCount = syncBarrierPlan(layers).length;
    this.combiner = new ShardCombiner(learnables, layers);
    const total = this.specs.reduce((n, s) => n + sizeOf(s.shape), 0);
    // A local worker's frames are the coordinator's to this node: the same limits.
    this.limits = frameLimitFor(total, cfg.batchSize, cfg.imageSize, { latent: cfg.latent });
    this.shm = openLocalTransport(
      cfg,
      { transport: opts.transport ?? 'auto', localWorkers: opts.plan.length, root: opts.shmRoot },
      opts.log,
      'node-transport',
    ).region;
    const event = (name: string, fields: Record<string, unknown>, level?: 'info' | 'warn' | 'error') =>
      logEvent(opts.log, name, fields, level);
    this.links = new WorkerLinks({ specs: this.specs, shm: this.shm, event });
    this.dispatcher = new Dispatcher({
      weights: (slot) =>
        this.links.weightsFor(slot.peer.id, { version: this.version, iteration: this.version, params: this.params }),
      validate: (m) => gradientsProblem(m, learnables, layers),
      event,
    });
    this.generation = new Generation({ dispatcher: this.dispatcher, latent: cfg.latent, event });
    const { welcome } = opts;
    this.server = new PeerServer({
      host: '127.0.0.1',
      port: 0,
      token: this.tokens,
      paramTableHash: paramTableHash(this.specs),
      limits: this.limits,
      welcome: (_hello, id) => ({
        runId: welcome.runId,
        workerId: id,
        modelConfig: cfg,
        seed: welcome.seed,
        ...(welcome.batchnorm ? { batchnorm: welcome.batchnorm } : {}),
      }),
    });
  }

  /** Opens the loopback endpoint and starts the local workers; they join in the background. */
  async start(): Promise<void> {
    this.server.on('peer', (peer: Peer) => {
      logEvent(this.opts.log, 'local-worker-joined', {
        worker: peer.id,
        device: peer.hello.device,
        rank: peer.hello.rank,
      });
      if (peer.role === 'worker') this.dispatcher.add(peer);
      else return peer.close('a node serves its own workers only');
      const w = peer.hello.rank !== undefined ? this.local.get(peer.hello.rank) : undefined;
      if (w) {
        this.rankOf.set(peer.id, w.rank);
        Object.assign(w, { state: 'joined', device: peer.hello.device, backend: peer.hello.backend });
        this.scheduleReport();
      }
    });
    const routes = {
      dispatcher: this.dispatcher,
      generation: this.generation,
      links: this.links,
      limits: this.limits,
      strikes: this.strikes,
      event: (name: string, fields: Record<string, unknown>, level?: 'info' | 'warn' | 'error') =>
        logEvent(this.opts.log, name, fields, level),
    };
    this.server.on('gone', (peer: Peer, reason: string) => {
      const level = this.abort.signal.aborted ? 'info' : 'warn';
      logEvent(this.opts.log, 'local-worker-left', { worker: peer.id, rank: peer.hello.rank, reason }, level);
      forgetWorker(peer, reason, routes);
      const w = this.local.get(this.rankOf.get(peer.id) ?? -1);
      this.rankOf.delete(peer.id);
      if (w) {
        // Its launcher restarts it (--max-restarts); a new connection makes it joined again.
        w.state = 'left';
        w.imagesPerSec = undefined;
        this.scheduleReport();
      }
    });
    this.server.on('message', (peer: Peer, msg: Message) => routeWorkerMessage(peer, msg, routes));
    const addr = await this.server.listen();
    this.workers = new LocalWorkers(this.opts.plan, {
      url: `ws://127.0.0.1:${addr.port}`,
      token: this.tokens.worker,
      shmRegion: this.shm?.dir,
      log: this.opts.log,
      maxRestarts: this.opts.maxRestarts,
      onAllGone: (gone) => {
        const lines = gone.failures.map((f) => `rank ${f.rank}: ${f.line ?? `exit ${f.code ?? f.signal}`}`);
        this.fail(
          new GanDistError(
            'GAN_DIST_E_WORKER',
            `every local worker of this node is down: ${lines.join('; ')}`,
            'see the node log for the workers’ own errors',
          ),
        );
        this.opts.onAllGone?.(gone);
      },
    }).start();
  }

  /** Where the node's reports of its local workers go: the current session's (node.ts); the current one is sent at once. */
  reportTo(send: (m: Message) => boolean): void {
    this.reporter = send;
    this.lastReportAt = Number.NEGATIVE_INFINITY;
    this.scheduleReport();
  }

  /** Sends the local workers' state at most once a second (the coordinator strikes faster), retrying until the session is joined. */
  private scheduleReport(): void {
    if (this.reportTimer || !this.reporter || this.abort.signal.aborted) return;
    const wait = Math.max(0, this.lastReportAt + REPORT_GAP_MS - performance.now());
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      const workers = [...this.local.values()].map((w) => ({ ...w }));
      if (this.reporter?.({ type: 'nodeWorkers', workers })) this.lastReportAt = performance.now();
      else {
        this.lastReportAt = performance.now();
        this.scheduleReport();
      }
    }, wait);
    this.reportTimer.unref();
  }

  /** The node cannot go on (its endpoint did not open, every worker is down): steps fail with `err`. */
  fail(err: Error): void {
    this.failure ??= err;
    this.abort.abort();
    this.dispatcher.abandon(err.message);
  }

  /** A new weights version from the coordinator: fanned out to each local worker with its next sub-shard. */
  setWeights(named: Record<string, Float32Array>): void {
    this.params = named;
    this.version++;
  }

  /**
   * The coordinator's shard split into one sub-shard per planned local worker (the split, hence
   * the arithmetic, stays the same while one restarts: the others then compute its rows too).
   */
  async step(shard: Shard, _masks?: undefined, barrier?: BnBarrier): Promise<ShardResult> {
    const t0 = performance.now();
    if (this.failure) throw this.failure;
    if (this.dispatcher.liveCount === 0) await this.dispatcher.waitForWorkers(1, this.abort.signal);
    try {
      const answers = barrier
        ? await this.runSynced(shard, barrier)
        : await this.runRound(shard, this.subShards(shard));
      for (const a of answers) {
        const w = this.local.get(this.rankOf.get(a.workerId) ?? -1);
        if (w && a.msg.timings.computeMs > 0) w.imagesPerSec = (a.msg.n * 1000) / a.msg.timings.computeMs;
      }
      // Rates change every step: they go out with the next change, or every REPORT_EVERY_MS.
      if (performance.now() - this.lastReportAt > REPORT_EVERY_MS) this.scheduleReport();
      return this.combiner.combine(answers, performance.now() - t0);
    } catch (err) {
      if (err instanceof RoundAbandoned && this.failure) throw this.failure;
      // Non-finite on two local workers: the coordinator hears of it as from one worker.
      if (err instanceof GanDistError && err.code === 'GAN_DIST_E_DIVERGED') return this.nonFinite(shard.n, t0);
      throw err;
    }
  }

  private runRound(shard: Shard, tasks: ShardTask[], sync?: RoundSync): Promise<ShardAnswer[]> {
    this.links.newRound();
    return this.dispatcher.run(shard.iteration, tasks, undefined, sync);
  }

  /**
   * `--batchnorm sync`: each barrier's sub-shard parts combined here into the node's one part,
   * which goes up through the session's `barrier`; its answer comes back to every sub-shard. A
   * local worker lost mid-step costs a re-split over the others (closed barriers keep their
   * answers); the coordinator giving the node's step up fails the barrier, and so this step.
   */
  private runSynced(shard: Shard, barrier: BnBarrier): Promise<ShardAnswer[]> {
    const cut = (firstId: number) => this.subShards(shard, this.dispatcher.liveCount, firstId);
    const tasks = cut(0);
    const barriers = new BnBarriers(
      shard.iteration,
      tasks.map((t) => t.shardId),
      (index, key, parts) => barrier({ index, key }, partOfResult(parts[0].kind, combineBnParts(parts))),
    );
    const sync = { barriers, total: this.barrierCount };
    return this.dispatcher.resplitting(tasks, sync, cut, (t) => this.runRound(shard, t, sync), this.abort.signal);
  }

  private nonFinite(n: number, t0: number): ShardResult {
    const r = this.combiner.combine([], performance.now() - t0);
    return { ...r, n, lossG: Number.NaN, lossD: Number.NaN };
  }

  /** `count` sub-shards (default: one per planned worker) with ids from `firstId`. */
  private subShards(shard: Shard, count = this.opts.plan.length, firstId = 0): ShardTask[] {
    const parts = splitRows(shard.n, Array(Math.max(1, Math.min(count, shard.n))).fill(1));
    return cutShards(this.cfg, shard.iteration, this.version, shard, parts, firstId);
  }

  /** G(z) in inference mode on one local worker, waiting for one to be up. */
  async generate(z: Float32Array, count: number): Promise<Float32Array> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.failure) throw this.failure;
      if (this.dispatcher.liveCount === 0) await this.dispatcher.waitForWorkers(1, this.abort.signal);
      const images = await this.generation.images(z, count, this.version);
      if (images) return images;
    }
    throw new GanDistError('GAN_DIST_E_WORKER', 'no local worker could generate the requested images');
  }

  /** The node leaves: its workers are told to stop and waited for, its region removed. */
  dispose(): void {
    void this.close();
  }

  async close(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.reportTimer);
    this.dispatcher.stop();
    this.workers?.shutdown();
    const peers = [...this.dispatcher.workers.values()].map((s) => s.peer);
    for (const peer of peers) peer.send({ type: 'stop', reason: 'the node is leaving' });
    await Promise.all(peers.map((p) => p.drained(2000)));
    await this.workers?.exited(5000);
    await this.server.close();
    this.shm?.close();
  }
}
