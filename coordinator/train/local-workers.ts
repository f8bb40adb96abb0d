// The worker processes `gan-dist train` starts on its own machine (--workers, --gpus): their
// output and exits go to the run's log, and one that fails is started again (restart-policy.ts)
// until the run shuts down.

import { launchWorker, type LaunchSpec, type LaunchedWorker } from './launcher.ts';
import { logEvent, type RunLogger } from '../logger.ts';
import { RestartPolicy } from './restart-policy.ts';

/** A local worker that exited non-zero, with its last error line ("gan-dist: ... [CODE]"). */
export interface FailedWorker {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  line?: string;
}

/** Every local worker is down for good, at least one after a failure. */
export interface LocalWorkersGone {
  /** Whether any of them ever joined the coordinator. */
  joinedAny: boolean;
  failures: FailedWorker[];
}

export interface LocalWorkersOptions {
  url: string;
  token: string;
  /** With TLS: the run's token file, which carries the certificate fingerprint to pin. */
  tokenFile?: string;
  shmRegion?: string;
  log: RunLogger;
  /** --max-restarts: restarts per rank within restart-policy.ts's window. */
  maxRestarts: number;
  /** Tests: the policy's clock. */
  now?: () => number;
  onAllGone: (gone: LocalWorkersGone) => void;
}

interface RankSlot {
  spec: LaunchSpec;
  /** Its process while one runs. */
  worker?: LaunchedWorker;
  /** A restart waiting out its backoff. */
  timer?: NodeJS.Timeout;
  /** Down for good: left cleanly, or failed and not to be restarted. */
  down?: { failure?: FailedWorker };
}

/** A worker's own error (its backend did not load, its token was refused): starting it again fails the same way. */
const OWN_ERROR = /\[GAN_DIST_E_[A-Z_]+\]$/;

export class LocalWorkers {
  private readonly slots: RankSlot[];
  private readonly policy: RestartPolicy;
  private readonly lastError = new WeakMap<LaunchedWorker, string>();
  /** Every worker id a local process was given, the dead ones' included. */
  private readonly ids = new Set<number>();
  private shuttingDown = false;

  constructor(
    plan: LaunchSpec[],
    private readonly opts: LocalWorkersOptions,
  ) {
    this.policy = new RestartPolicy({ maxRestarts: opts.maxRestarts, now: opts.now });
    this.slots = plan.map((spec) => ({ spec: { ...spec, shmRegion: opts.shmRegion } }));
  }

  start(): this {
    for (const slot of this.slots) this.launch(slot);
    return this;
  }

  /** The processes running now, restarted ones included. */
  live(): LaunchedWorker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
  }

  /** Whether the coordinator's worker `id` is (or was) one of these processes. */
  isLocal(id: number): boolean {
    return this.ids.has(id);
  }

  /** The run is ending: exits from now on are final, and restarts waiting out their backoff are dropped. */
  shutdown(): void {
    this.shuttingDown = true;
    for (const slot of this.slots) {
      clearTimeout(slot.timer);
      slot.timer = undefined;
    }
  }

  /** Second Ctrl-C: every live process, restarted ones included, killed now. */
  kill(): void {
    this.shutdown();
    for (const w of this.live()) w.child.kill('SIGKILL');
  }

  /** Resolves once every process has exited, killing those still up after `graceMs`. */
  async exited(graceMs: number): Promise<void> {
    this.shutdown();
    await Promise.all(this.live().map((w) => exited(w, graceMs)));
  }

  private launch(slot: RankSlot, restart?: number): void {
    const { spec } = slot;
    this.policy.started(spec.rank);
    slot.worker = launchWorker(
      spec,
      this.opts.url,
      this.opts.token,
      this.opts.tokenFile,
      (w, code, signal) => this.onExit(slot, w, code, signal),
      (w, line) => this.onOutput(w, line),
    );
    logEvent(this.opts.log, 'worker-launched', {
      rank: spec.rank,
      gpu: spec.gpu,
      backend: spec.backend,
      threads: spec.threads,
      pid: slot.worker.child.pid,
      ...(restart !== undefined ? { restart } : {}),
    });
  }

  private onOutput(w: LaunchedWorker, line: string): void {
    if (line.startsWith('gan-dist: ')) this.lastError.set(w, line);
    else if (line.startsWith('{') && line.includes('"joined"')) {
      // The worker's own line on joining names the id the coordinator's events use for it.
      const id = parseJoined(line);
      if (id !== undefined) {
        w.workerId = id;
        this.ids.add(id);
      }
    }
    this.opts.log.debug({ event: 'worker-output', rank: w.rank, line }, 'event');
  }

  private onExit(slot: RankSlot, w: LaunchedWorker, code: number | null, signal: NodeJS.Signals | null): void {
    const { log, maxRestarts } = this.opts;
    const { rank } = w;
    if (slot.worker === w) slot.worker = undefined;
    const fields = { rank, worker: w.workerId, gpu: w.gpu, pid: w.child.pid, code, signal };
    logEvent(log, 'worker-exited', fields, code === 0 ? 'info' : 'warn');
    if (this.shuttingDown) return;
    // Exit 0: it was told to stop, or left on a signal. Either way it meant to go.
    if (code === 0) {
      this.down(slot, {});
      return;
    }
    const failure: FailedWorker = { rank, code, signal, line: this.lastError.get(w) };
    if (w.workerId === undefined && OWN_ERROR.test(failure.line ?? '')) {
      this.down(slot, { failure });
      return;
    }
    const decision = this.policy.failed(rank);
    if (!decision.restart) {
      logEvent(log, 'worker-gave-up', { rank, worker: w.workerId, restarts: decision.count, maxRestarts }, 'warn');
      this.down(slot, { failure });
      return;
    }
    logEvent(
      log,
      'worker-restarting',
      { rank, worker: w.workerId, count: decision.count, maxRestarts, inMs: decision.delayMs },
      'warn',
    );
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!this.shuttingDown) this.launch(slot, decision.count);
    }, decision.delayMs);
  }

  private down(slot: RankSlot, down: NonNullable<RankSlot['down']>): void {
    slot.down = down;
    if (!this.slots.every((s) => s.down)) return;
    const failures = this.slots.flatMap((s) => (s.down?.failure ? [s.down.failure] : []));
    if (failures.length > 0) this.opts.onAllGone({ joinedAny: this.ids.size > 0, failures });
  }
}

/** The worker id in a worker's `{"event":"joined","workerId":N}` line, if that is what `line` is. */
function parseJoined(line: string): number | undefined {
  try {
    const e = JSON.parse(line) as { event?: unknown; workerId?: unknown };
    return e.event === 'joined' && typeof e.workerId === 'number' ? e.workerId : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves when the worker process has exited, killing it after `graceMs`. */
export function exited(w: LaunchedWorker, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
    const t = setTimeout(() => w.child.kill('SIGKILL'), graceMs);
    w.child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
