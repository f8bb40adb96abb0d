// Weights and gradients over a socket in parts of at most PART_BYTES each, and their reassembly.
//
// Why: ws copies every frame it receives into one buffer of the frame's size, and glibc serves an
// allocation over 32 MB (its largest dynamic mmap threshold) with fresh mmap'd pages each time, so
// each 37.8 MB frame of the seed's model paid ~9,000 page faults at the receiver (30-40 ms a frame
// on this VM, against 5-6 ms for two 19 MB ones, whose memory the heap reuses). A message in parts
// is `part` 0..parts-1 of one message: every part carries all the message's fields and a disjoint
// subset of its tensors, in order; the receiver merges them back into one message.

import { GanDistError } from '../errors.ts';
import type { GradientsMessage, Message, WeightsMessage } from './messages.ts';
import { isHalfDtype, type WireDtype } from './wire-dtype.ts';

/** Tensor bytes per part: under glibc's 32 MB mmap ceiling, with room for the header. */
export const PART_BYTES = 16 * 1024 * 1024;
/**
 * Bytes of float32 tensors in memory per part, for a message sent in `dtype`: a 16-bit wire halves
 * them, so twice as many fit in PART_BYTES on the wire.
 */
export function partBytesFor(dtype: WireDtype): number {
  return isHalfDtype(dtype) ? 2 * PART_BYTES : PART_BYTES;
}
/** Most parts one message may come in (the spec checks it). */
export const MAX_PARTS = 64;

export type PartedMessage = WeightsMessage | GradientsMessage;

function isParted(msg: Message): msg is PartedMessage {
  return msg.type === 'weights' || msg.type === 'gradients';
}

/**
 * `msg` as the messages to send: itself when its tensors fit in `partBytes`, else parts of whole
 * tensors in order, each holding at most `partBytes` of them (a larger tensor goes alone).
 */
export function splitIntoParts<M extends PartedMessage>(msg: M, partBytes = PART_BYTES): M[] {
  const names = Object.keys(msg.tensors);
  const groups: string[][] = [];
  let bytes = Number.POSITIVE_INFINITY;
  for (const name of names) {
    const b = msg.tensors[name].byteLength;
    if (bytes + b > partBytes) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1].push(name);
    bytes += b;
  }
  if (groups.length <= 1) return [msg];
  if (groups.length > MAX_PARTS)
    throw new GanDistError(
      'GAN_DIST_E_PROTOCOL',
      `a ${msg.type} message needs ${groups.length} parts, more than ${MAX_PARTS}`,
    );
  return groups.map((group, part) => ({
    ...msg,
    part,
    parts: groups.length,
    tensors: Object.fromEntries(group.map((n) => [n, msg.tensors[n]])),
    shapes: Object.fromEntries(group.map((n) => [n, msg.shapes[n]])),
  }));
}

interface Pending {
  first: PartedMessage;
  /** The first part's fields but part: every later part must carry the same. */
  fields: string;
  next: number;
  bytes: number;
}

function fieldsOf(msg: PartedMessage): string {
  const { part: _part, tensors: _t, shapes: _s, ...rest } = msg;
  return JSON.stringify(rest);
}

/**
 * One connection's reassembly: `accept` returns each message whole, or undefined while parts of
 * one are still to come. A part out of order, of another message, repeating a tensor, or taking
 * the whole past `maxBytes` (the connection's frame limit: a message in parts may not hold more
 * than one frame could) is a protocol error: the sender's connection should go.
 */
export class PartsAssembler {
  private pending?: Pending;

  constructor(private readonly maxBytes: number) {}

  /** `frameBytes`: the size of the frame `msg` came in, counted against maxBytes. */
  accept(msg: Message, frameBytes: number): Message | undefined {
    if (!isParted(msg) || msg.parts === undefined) {
      if (this.pending && isParted(msg))
        this.fail(
          `a whole '${msg.type}' arrived while part ${this.pending.next} of ${this.pending.first.parts} was due`,
        );
      return msg;
    }
    const part = msg.part ?? 0;
    if (part >= msg.parts) this.fail(`part ${part} of ${msg.parts}`);
    if (part === 0) {
      if (this.pending)
        this.fail(`a new '${msg.type}' began while part ${this.pending.next} of ${this.pending.first.parts} was due`);
      if (frameBytes > this.maxBytes) this.fail(`part 0 is ${frameBytes} bytes, over the limit of ${this.maxBytes}`);
      this.pending = {
        first: { ...msg, tensors: { ...msg.tensors }, shapes: { ...msg.shapes } },
        fields: fieldsOf(msg),
        next: 1,
        bytes: frameBytes,
      };
      return undefined;
    }
    const p = this.pending;
    if (!p) this.fail(`part ${part} of a '${msg.type}' whose part 0 never came`);
    if (part !== p.next) this.fail(`part ${part} arrived where part ${p.next} was due`);
    if (fieldsOf(msg) !== p.fields)
      this.fail(`part ${part} does not belong to the '${p.first.type}' whose parts came before`);
    p.bytes += frameBytes;
    if (p.bytes > this.maxBytes)
      this.fail(`a '${msg.type}' in parts passed ${this.maxBytes} bytes, the most one message may hold`);
    for (const name of Object.keys(msg.tensors)) {
      if (Object.hasOwn(p.first.tensors, name)) this.fail(`part ${part} repeats tensor '${name}'`);
      p.first.tensors[name] = msg.tensors[name];
      p.first.shapes[name] = msg.shapes[name];
    }
    p.next++;
    if (p.next < msg.parts) return undefined;
    this.pending = undefined;
    const { part: _part, parts: _parts, ...whole } = p.first;
    return whole as Message;
  }

  private fail(why: string): never {
    this.pending = undefined;
    throw new GanDistError('GAN_DIST_E_PROTOCOL', `message in parts: ${why}`);
  }
}
