// G(z) on a worker, between iterations: the sample grids of the fixed validation latents, and the
// images of a training-time SWD evaluation (whose distance is then computed here, in slices).

import { evalEventFields, type RunEvaluation } from '../metrics/swd.ts';
import type { SampleMessage } from '../protocol/wire/protocol.ts';
import type { Dispatcher } from './dispatcher.ts';
import type { Peer } from './server.ts';

/** How long a worker gets to answer a sample or evaluation request before it is dropped. */
export const GENERATION_DEADLINE_MS = 60_000;

export interface GenerationHooks {
  dispatcher: Pick<Dispatcher, 'idleWorker' | 'syncWeights'>;
  /** Default GENERATION_DEADLINE_MS. */
  deadlineMs?: number;
  latent: number;
  event: (name: string, fields: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void;
  /** Writes a sample grid for `iteration` (k images HWC in [-1, 1]); returns its path. A node has none: it only relays images(). */
  writeSamples?: (iteration: number, images: Float32Array, count: number) => Promise<string>;
  evaluation?: RunEvaluation;
}

export class Generation {
  private pending?: { peerId: number; resolve: (m: SampleMessage) => void; reject: (e: Error) => void };
  /** The SWD being computed while training goes on (at most one). */
  private evaluating?: Promise<void>;
  /** The iteration last evaluated. */
  lastEvaluated?: number;

  constructor(private readonly hooks: GenerationHooks) {}

  /** A worker's answer to a sampleRequest; false when that worker was asked for none (unsolicited). */
  onSample(peer: Peer, msg: SampleMessage): boolean {
    if (this.pending?.peerId !== peer.id) return false;
    this.pending.resolve(msg);
    return true;
  }

  /** A worker left: a request it held fails (and is retried on another). */
  onGone(peer: Peer, reason: string): void {
    if (this.pending?.peerId === peer.id) this.pending.reject(new Error(`worker ${peer.id} left: ${reason}`));
  }

  /**
   * G(z) in inference mode on one idle worker (k rows of z); undefined when none could do it. A
   * worker that does not answer within the deadline is dropped (its connection closed) and the
   * request goes to another: the run never waits on a request without a deadline.
   */
  async images(
    z: Float32Array,
    k: number,
    iteration: number,
    what: 'sample' | 'eval' = 'sample',
  ): Promise<Float32Array | undefined> {
    const { dispatcher } = this.hooks;
    for (let attempt = 0; attempt < 3; attempt++) {
      const slot = dispatcher.idleWorker();
      if (!slot) return undefined;
      dispatcher.syncWeights(slot);
      const got = new Promise<SampleMessage>((resolve, reject) => {
        this.pending = { peerId: slot.peer.id, resolve, reject };
      });
      slot.peer.send({ type: 'sampleRequest', iteration, tensors: { z }, shapes: { z: [k, this.hooks.latent] } });
      const deadlineMs = this.hooks.deadlineMs ?? GENERATION_DEADLINE_MS;
      const timer = setTimeout(() => {
        const reason = `no answer to a ${what} request within ${deadlineMs} ms`;
        this.pending?.reject(new Error(`worker ${slot.peer.id}: ${reason}`));
        slot.peer.close(reason);
      }, deadlineMs);
      try {
        return (await got).tensors.images;
      } catch (err) {
        this.hooks.event(`${what}-failed`, { iteration, error: (err as Error).message }, 'warn');
      } finally {
        clearTimeout(timer);
        this.pending = undefined;
      }
    }
    return undefined;
  }

  /** G(zValidation) in inference mode on one worker, written as the tile PNG. */
  async sample(iteration: number, zValidation: Float32Array, k: number): Promise<string | undefined> {
    const images = await this.images(zValidation, k, iteration, 'sample');
    if (!images || !this.hooks.writeSamples) return undefined;
    try {
      const file = await this.hooks.writeSamples(iteration, images, k);
      this.hooks.event('sample-written', { iteration, path: file });
      return file;
    } catch (err) {
      this.hooks.event('sample-failed', { iteration, error: (err as Error).message }, 'warn');
      return undefined;
    }
  }

  /**
   * SWD of G at this iteration, on the run's fixed evaluation latents against its fixed real
   * sample: one `eval` event. Only the images are made now (one worker, between iterations);
   * the distance is computed in slices of tens of ms on this thread while training goes on
   * (swdAsync). Where the workers leave the coordinator a core, that hides most of its seconds;
   * where they fill every core, it still takes its CPU time from them. One at a time: a due
   * evaluation first waits for the previous one. Resolves once the images are in hand.
   */
  async evaluate(iteration: number): Promise<void> {
    const e = this.hooks.evaluation;
    if (!e) return;
    await this.evaluating;
    this.lastEvaluated = iteration;
    const t0 = performance.now();
    const images = await this.images(e.z, e.count, iteration, 'eval');
    if (!images) return;
    this.evaluating = e.evaluator
      .swdAsync(images)
      .then((r) => {
        const ms = Math.round(performance.now() - t0);
        const floor = Math.round(e.floor.mean * 1000) / 1000;
        this.hooks.event('eval', evalEventFields(iteration, r, { floor, count: e.count, ms }));
      })
      .catch((err: Error) => this.hooks.event('eval-failed', { iteration, error: err.message }, 'warn'));
  }

  /** Resolves when the evaluation in progress, if any, has logged its event. */
  async settled(): Promise<void> {
    await this.evaluating;
  }
}
