// How a worker's weights arrive and its gradients leave: over the socket or, once the coordinator
// answered shmReady, through the run's shared memory; either way in the wire dtype its welcome
// named. The session hands a gradients message here and never asks which transport carries it.

import type WebSocket from 'ws';
import { GanDistError } from '../protocol/errors.ts';
import { isBnTensor } from '../protocol/wire/bn-sums.ts';
import {
  allFinite,
  decodeMessage,
  encodeMessage,
  encodeMessageChunks,
  type FrameLimits,
  type GradientsMessage,
  type Message,
  type WeightsRefMessage,
  type WireDtype,
} from '../protocol/wire/protocol.ts';
import { partBytesFor, splitIntoParts } from '../protocol/wire/parts.ts';
import { ShmWorkerFiles } from '../protocol/wire/shm.ts';

export class Uplink {
  private shm?: ShmWorkerFiles;
  /**
   * 16-bit gradient frames for shared memory are encoded into one reused buffer (a fresh 38 MB one
   * per shard costs its page faults, as much again as the copy); safe, as the shm write is
   * synchronous.
   */
  private gradFrame: Buffer = Buffer.alloc(0);
  /**
   * Socket frames (the gradients' parts) are encoded into reused buffers too, but ws sends a
   * worker's frames without copying them (the all-zero mask: client.ts), so a buffer is reused only
   * once ws has written it out: a worker given two shards in one iteration may encode the second's
   * while the first's is still queued.
   */
  private readonly socketFrames: { buffer?: Buffer; sending: boolean }[] = [];

  constructor(
    private readonly ws: WebSocket,
    /** The dtype gradients are sent in, over the socket or shared memory (welcome.wireDtype). */
    private readonly wireDtype: WireDtype,
    private readonly shmRegion?: string,
  ) {}

  send(m: Message): void {
    this.ws.send(encodeMessage(m));
  }

  /** The coordinator accepted our shmAttach: from now on weights and gradients use these files. */
  attach(weightsFile: string, gradientsFile: string): void {
    this.shm?.close();
    this.shm = new ShmWorkerFiles(this.shmRegion ?? '', weightsFile, gradientsFile);
  }

  /**
   * The names of non-finite tensors, where this side must check. On shared memory in float32 the
   * coordinator checks the frame itself and takes non-finite gradients as this report (one check
   * of 37.8 MB instead of two); over a socket the worker checks, as a non-finite gradient frame
   * costs its sender the connection, and so it does on shared memory in a 16-bit dtype, whose
   * encoder refuses non-finite values.
   */
  nonFinite(tensors: Record<string, Float32Array>): string[] {
    if (this.shm && this.wireDtype === 'float32') return [];
    return Object.entries(tensors)
      .filter(([, a]) => !allFinite(a))
      .map(([k]) => k);
  }

  /** The weights a weightsRef points at, validated as the socket's frame would be, but for the values. */
  weightsAt(ref: WeightsRefMessage, limits: FrameLimits): Record<string, Float32Array> {
    if (!this.shm) throw new GanDistError('GAN_DIST_E_PROTOCOL', 'weightsRef before shmReady');
    // The coordinator's own weights: non-finite ones would show in the gradients.
    const w = decodeMessage(this.shm.readWeights(ref.seq, ref.byteLength), limits, { skipFiniteCheck: true });
    if (w.type !== 'weights' || w.version !== ref.version) {
      const held = w.type === 'weights' ? `version ${w.version}` : `a '${w.type}' frame`;
      throw new GanDistError(
        'GAN_DIST_E_PROTOCOL',
        `weightsRef announced weights version ${ref.version}, the region holds ${held}`,
      );
    }
    return w.tensors;
  }

  /** The weights weightsAt gave are copied into the trainer's tensors: throws if they were torn meanwhile. */
  weightsTaken(ref: WeightsRefMessage): void {
    this.shm?.weightsTaken(ref.seq, ref.byteLength);
  }

  sendGradients(gradients: GradientsMessage): void {
    if (!this.shm) {
      for (const part of splitIntoParts(gradients, partBytesFor(this.wireDtype))) this.sendFrame(part);
      return;
    }
    // The same frame, through this worker's file; the socket carries where to find it. In float32
    // in one vectored write straight from the gradients' memory: no copy into a frame buffer.
    const frame = this.wireDtype === 'float32' ? encodeMessageChunks(gradients) : this.encodeGradients(gradients);
    const ref = this.shm.writeGradients(frame);
    const { iteration, shardId, weightsVersion, n } = gradients;
    this.send({ type: 'gradientsRef', iteration, shardId, weightsVersion, n, ...ref });
  }

  close(): void {
    this.shm?.close();
  }

  /** One message over the socket, encoded into a buffer ws is not still sending. */
  private sendFrame(m: GradientsMessage): void {
    let slot = this.socketFrames.find((s) => !s.sending);
    if (!slot) {
      slot = { sending: false };
      this.socketFrames.push(slot);
    }
    const f = encodeMessage(m, { wireDtype: this.wireDtype, exact: isBnTensor, into: slot.buffer });
    if (f.buffer !== slot.buffer?.buffer) slot.buffer = f;
    slot.sending = true;
    const sent = slot;
    this.ws.send(f, () => {
      sent.sending = false;
    });
  }

  /** The gradients in the wire dtype, encoded into the reused buffer (for shared memory). */
  private encodeGradients(gradients: GradientsMessage): Buffer {
    // BatchNorm sums stay float32: the coordinator pools the batch variance as E[x^2] - E[x]^2,
    // a difference that a 2^-8 relative error in each term could swamp (or make negative); they
    // are a few KB against the 37.8 MB of gradients.
    const f = encodeMessage(gradients, { wireDtype: this.wireDtype, exact: isBnTensor, into: this.gradFrame });
    if (f.byteLength > this.gradFrame.byteLength) this.gradFrame = f;
    return f;
  }
}
