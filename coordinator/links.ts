// How each worker is reached: over its own socket, or through the run's shared-memory region once
// it has attached; either way in the wire dtype its welcome named. The coordinator asks for "the
// weights frame for this worker" and hands gradient references here; it never asks which
// transport a worker uses.

import { GanDistError } from '../protocol/errors.ts';
import type { NamedArrays, ParamSpec } from '../protocol/model/architecture.ts';
import {
  decodeMessage,
  encodeMessage,
  encodeMessageChunks,
  type FrameLimits,
  type GradientsMessage,
  type GradientsNonFiniteMessage,
  type GradientsRefMessage,
  type Message,
  type WeightsMessage,
  type WireDtype,
} from '../protocol/wire/protocol.ts';
import { partBytesFor, splitIntoParts } from '../protocol/wire/parts.ts';
import type { ShmRegion } from '../protocol/wire/shm.ts';
import type { Peer } from './server.ts';

/** A version of the weights, as the frames that carry it to one worker (in parts over a socket: parts.ts). */
export interface WeightsFrame {
  version: number;
  frames: Buffer[];
}

/** The weights as they stand: what every frame of this version encodes. */
export interface WeightsSource {
  version: number;
  iteration: number;
  params: NamedArrays;
}

export interface WorkerLinksOptions {
  specs: ParamSpec[];
  /** --wire-dtype for every worker, socket or shared memory (default float32). */
  wireDtype?: WireDtype;
  /** The run's shared-memory region, when local workers may use it. */
  shm?: ShmRegion;
  event: (name: string, fields: Record<string, unknown>) => void;
}

export class WorkerLinks {
  private readonly shapes: Record<string, number[]> = {};
  private readonly learnableNames: Set<string>;
  /** BatchNorm running statistics stay float32 on a 16-bit wire: a few KB, and workers' sample grids use them. */
  private readonly exact = (name: string) => !this.learnableNames.has(name);
  /** The weights frame of the current version, one per wire dtype asked for. */
  private readonly frames = new Map<WireDtype, WeightsFrame>();
  /**
   * Per wire dtype, two sets of buffers the weights frames (one per part) are encoded into, by
   * version parity. Version v's are rewritten for v + 2 only: every send of v went out during
   * iteration v + 1 and was received whole before its worker's answer came back (or its socket was
   * destroyed), so no send still reads them. Fresh buffers per version cost their page faults and
   * the GC's time.
   */
  private readonly buffers = new Map<WireDtype, Buffer[][]>();
  /** What each socket worker was told in its welcome (--wire-dtype). */
  private readonly peerWireDtype = new Map<number, WireDtype>();
  /** The weightsRef control frame of the version last written to shared memory. */
  private shmWeights?: WeightsFrame;
  /** The buffer 16-bit weights are encoded into for shared memory (written to the file at once). */
  private shmHalf?: Buffer;

  constructor(private readonly opts: WorkerLinksOptions) {
    for (const s of opts.specs) this.shapes[s.name] = s.shape;
    this.learnableNames = new Set(opts.specs.filter((s) => s.role === 'learnable').map((s) => s.name));
  }

  /**
   * The welcome's wireDtype for worker `id` (left out at float32, the protocol's default). A worker
   * that later moves to shared memory keeps it: the region's weights are in the run's dtype, and so
   * are the gradients it writes there.
   */
  welcome(id: number): { wireDtype?: WireDtype } {
    const dtype = this.opts.wireDtype ?? 'float32';
    if (dtype === 'float32') return {};
    this.peerWireDtype.set(id, dtype);
    return { wireDtype: dtype };
  }

  /** What to send worker `id` for these weights: the frame itself, or for a shm worker where to find it. */
  weightsFor(id: number, w: WeightsSource): WeightsFrame {
    const shm = this.opts.shm;
    if (!shm?.attached(id)) return this.socketFrame(w, this.peerWireDtype.get(id) ?? 'float32');
    if (this.shmWeights?.version !== w.version) {
      // Written once per version, whatever the number of local workers reading it. In float32 in
      // one vectored write straight from the parameters (no copy into a frame buffer); in a 16-bit
      // dtype the converting copy is needed anyway, into the buffer socket workers are sent from.
      const dtype = this.opts.wireDtype ?? 'float32';
      const frame = dtype === 'float32' ? encodeMessageChunks(this.weightsMessage(w)) : this.halfFrame(w, dtype);
      const ref = shm.writeWeights(frame);
      this.shmWeights = {
        version: w.version,
        frames: [encodeMessage({ type: 'weightsRef', version: w.version, iteration: w.iteration, ...ref })],
      };
    }
    return this.shmWeights;
  }

  /**
   * A local worker offers to use shared memory: accepted (and told where its files are) when it
   * names this run's region. Returns whether the worker now uses the region, from its next weights on.
   */
  attach(peer: Peer, region: string, limits: FrameLimits): boolean {
    const shm = this.opts.shm;
    if (!shm || region !== shm.dir) {
      this.opts.event('shm-declined', {
        worker: peer.id,
        region,
        reason: shm ? `not this run's region (${shm.dir})` : 'this run uses the socket',
      });
      return false;
    }
    const gradientsFile = shm.attach(peer.id, limits.maxFrameBytes);
    peer.send({ type: 'shmReady', weightsFile: shm.weights.file, gradientsFile });
    this.opts.event('shm-attached', { worker: peer.id, gradientsFile });
    return true;
  }

  /**
   * A shm worker's gradients: read from its file (ShmRegion.readGradientsAsync: out of its map,
   * or on libuv's thread pool while the main thread checks and adds the gradients before them),
   * then decoded and validated as a socket frame is,
   * except that the finiteness check is the worker's own: a local worker leaves it to the
   * coordinator (one check of the frame instead of two), and non-finite gradients count as the
   * gradientsNonFinite report the worker would have sent. A bad reference costs the worker its
   * connection, and gives undefined.
   */
  async readGradients(
    peer: Peer,
    ref: GradientsRefMessage,
    limits: FrameLimits,
  ): Promise<GradientsMessage | GradientsNonFiniteMessage | undefined> {
    let msg: Message;
    try {
      if (!this.opts.shm)
        throw new GanDistError('GAN_DIST_E_PROTOCOL', 'gradientsRef, but this run has no shared-memory region');
      const frame = await this.opts.shm.readGradientsAsync(peer.id, ref.seq, ref.byteLength);
      msg = decodeMessage(frame, limits, { reportNonFinite: true });
    } catch (err) {
      peer.close((err as Error).message);
      return undefined;
    }
    const same =
      (msg.type === 'gradients' || msg.type === 'gradientsNonFinite') &&
      msg.iteration === ref.iteration &&
      msg.shardId === ref.shardId &&
      msg.weightsVersion === ref.weightsVersion &&
      msg.n === ref.n;
    if (!same) {
      peer.close(
        `gradientsRef for shard ${ref.shardId} of iteration ${ref.iteration} points at a frame that does not match it`,
      );
      return undefined;
    }
    return msg as GradientsMessage | GradientsNonFiniteMessage;
  }

  /** Last round's gradient files are reduced and done with: the next round reuses them. */
  newRound(): void {
    this.opts.shm?.newRound();
  }

  /** Worker `id` left: its file goes; gradients already read from it stay valid (they live in our own buffers). */
  forget(id: number): void {
    this.peerWireDtype.delete(id);
    this.opts.shm?.detach(id);
  }

  private weightsMessage(w: WeightsSource): WeightsMessage {
    return { type: 'weights', version: w.version, iteration: w.iteration, tensors: w.params, shapes: this.shapes };
  }

  /** The weights in `dtype`, encoded once per version and dtype, in parts (parts.ts), for sockets. */
  private socketFrame(w: WeightsSource, dtype: WireDtype): WeightsFrame {
    let cached = this.frames.get(dtype);
    if (cached?.version !== w.version) {
      const sets = this.buffers.get(dtype) ?? [[], []];
      this.buffers.set(dtype, sets);
      const into = sets[w.version % 2];
      const frames = splitIntoParts(this.weightsMessage(w), partBytesFor(dtype)).map((part, i) => {
        const frame = encodeMessage(part, { wireDtype: dtype, exact: this.exact, into: into[i] });
        if (frame.buffer !== into[i]?.buffer) into[i] = frame;
        return frame;
      });
      cached = { version: w.version, frames };
      this.frames.set(dtype, cached);
    }
    return cached;
  }

  /** The weights in a 16-bit dtype as one frame, for shared memory (its file takes any size). */
  private halfFrame(w: WeightsSource, dtype: WireDtype): Buffer {
    this.shmHalf = encodeMessage(this.weightsMessage(w), { wireDtype: dtype, exact: this.exact, into: this.shmHalf });
    return this.shmHalf;
  }
}
