import { describe, expect, it } from 'vitest';
import { dcganTable, weightsMessage } from '../../bench/protocol.ts';
import {
  decodeMessage,
  encodeMessage,
  frameLimitFor,
  type GradientsMessage,
  type Message,
  type WeightsMessage,
} from '../../protocol/wire/protocol.ts';
import { PART_BYTES, PartsAssembler, splitIntoParts } from '../../protocol/wire/parts.ts';
import { DCGAN_LEARNABLES } from '../../bench/protocol.ts';

const LIMITS = frameLimitFor(DCGAN_LEARNABLES, 128, 64);

function small(): WeightsMessage {
  const t = (n: number, at: number) => Float32Array.from({ length: n }, (_, i) => at + i);
  return {
    type: 'weights',
    version: 3,
    iteration: 2,
    tensors: { a: t(10, 0), b: t(6, 100), c: t(12, 200), d: t(2, 300) },
    shapes: { a: [10], b: [2, 3], c: [12], d: [2] },
  };
}

function gradients(iteration = 4): GradientsMessage {
  const w = small();
  return {
    type: 'gradients',
    iteration,
    shardId: 1,
    weightsVersion: 3,
    n: 8,
    scoreG: 0.4,
    scoreD: 0.6,
    lossG: 1.2,
    lossD: 0.9,
    timings: { computeMs: 3 },
    tensors: w.tensors,
    shapes: w.shapes,
  };
}

/** Through the wire: each part encoded and decoded as a socket would carry it. */
function viaWire<M extends Message>(msgs: M[]): { msg: Message; bytes: number }[] {
  return msgs.map((m) => {
    const frame = encodeMessage(m);
    return { msg: decodeMessage(frame, LIMITS), bytes: frame.length };
  });
}

function assemble(parts: { msg: Message; bytes: number }[], maxBytes = LIMITS.maxFrameBytes): Message[] {
  const a = new PartsAssembler(maxBytes);
  return parts.flatMap(({ msg, bytes }) => a.accept(msg, bytes) ?? []);
}

describe('weights and gradients in parts', () => {
  it("splits the seed's model into parts under PART_BYTES each and merges them back exactly", () => {
    const w = weightsMessage(dcganTable());
    const parts = splitIntoParts(w);
    expect(parts.length).toBe(3);
    const wire = viaWire(parts);
    for (const p of wire) expect(p.bytes).toBeLessThan(PART_BYTES + 64 * 1024);
    const [whole] = assemble(wire) as WeightsMessage[];
    expect(Object.keys(whole.tensors)).toEqual(Object.keys(w.tensors));
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    for (const name of Object.keys(w.tensors)) {
      // Compared as bytes: vitest's toEqual walks 9.45 M elements one by one.
      expect(bytes(whole.tensors[name]).equals(bytes(w.tensors[name])), name).toBe(true);
      expect(whole.shapes[name]).toEqual(w.shapes[name]);
    }
    expect(whole).not.toHaveProperty('part');
    expect(whole).not.toHaveProperty('parts');
    expect(whole.version).toBe(1);
  });

  it('leaves a message that fits in one part whole, and gives a tensor larger than a part its own', () => {
    expect(splitIntoParts(small())).toEqual([small()]);
    const parts = splitIntoParts(small(), 40); // a and c are 40 and 48 bytes
    expect(parts.map((p) => Object.keys(p.tensors))).toEqual([['a'], ['b'], ['c'], ['d']]);
    expect(parts.map((p) => [p.part, p.parts])).toEqual([
      [0, 4],
      [1, 4],
      [2, 4],
      [3, 4],
    ]);
    const [whole] = assemble(viaWire(splitIntoParts(gradients(), 56))) as GradientsMessage[];
    expect(whole).toEqual(gradients());
  });

  it('passes other messages through, between the parts of one', () => {
    const parts = viaWire(splitIntoParts(gradients(), 56));
    const beat: Message = { type: 'heartbeat', t: 1 };
    const out = assemble([parts[0], { msg: beat, bytes: 20 }, ...parts.slice(1)]);
    expect(out.map((m) => m.type)).toEqual(['heartbeat', 'gradients']);
  });

  const bad: [string, (p: { msg: Message; bytes: number }[]) => { msg: Message; bytes: number }[], RegExp][] = [
    ['a part out of order', (p) => [p[0], p[2], p[1]], /part 2 arrived where part 1 was due/],
    ['a part whose part 0 never came', (p) => p.slice(1), /part 1 of a 'gradients' whose part 0 never came/],
    [
      'a part of another message',
      (p) => [p[0], viaWire(splitIntoParts(gradients(5), 56))[1]],
      /part 1 does not belong to the 'gradients'/,
    ],
    ['a new message begun before the last ended', (p) => [p[0], p[0]], /a new 'gradients' began while part 1/],
    [
      'a whole message while parts were due',
      (p) => [p[0], ...viaWire([gradients()])],
      /a whole 'gradients' arrived while part 1 of 3 was due/,
    ],
    [
      'a part that repeats a tensor',
      (p) => [
        p[0],
        { msg: { ...p[1].msg, tensors: { ...(p[0].msg as GradientsMessage).tensors } } as Message, bytes: 99 },
      ],
      /part 1 repeats tensor 'a'/,
    ],
  ];
  for (const [what, mangle, error] of bad) {
    it(`refuses ${what} (the sender's connection goes)`, () => {
      // Parts of at most 56 bytes: [a] (40), [b] (24), [c, d] (48 + 8).
      const parts = viaWire(splitIntoParts(gradients(), 56));
      expect(parts.length).toBe(3);
      expect(() => assemble(mangle(parts))).toThrow(error);
    });
  }

  it('refuses parts that together hold more than one frame may', () => {
    const parts = viaWire(splitIntoParts(gradients(), 56));
    const limit = parts[0].bytes + parts[1].bytes + 10;
    expect(() => assemble(parts, limit)).toThrow(/passed \d+ bytes, the most one message may hold/);
  });

  it('checks part and parts on the wire', () => {
    const [p0] = splitIntoParts(small(), 40);
    expect(() => decodeMessage(encodeMessage({ ...p0, parts: 1 } as Message), LIMITS)).toThrow(
      /parts must be an integer from 2 to 64/,
    );
    expect(() => decodeMessage(encodeMessage({ ...p0, part: 64 } as Message), LIMITS)).toThrow(
      /part must be an integer from 0 to 63/,
    );
    expect(() => assemble(viaWire([{ ...p0, part: 4 } as WeightsMessage]))).toThrow(/part 4 of 4/);
  });
});
