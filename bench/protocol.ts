// Throughput of the wire protocol on the seed's model: encode and decode a `weights` message of
// the default DCGAN (9,450,884 float32 parameters, 37.8 MB) against a plain Buffer.copy of the
// same bytes in the same run.  Run: npx tsx bench/protocol.ts [repeats]

import { pathToFileURL } from 'node:url';
import { decodeMessage, encodeMessage, frameLimitFor, type WeightsMessage } from '../protocol/wire/protocol.ts';
import { best } from './util.ts';

/** The default DCGAN's parameters and BatchNorm running statistics (latent 100, nf 64, 64x64). */
export function dcganTable(): { name: string; shape: number[] }[] {
  const t: { name: string; shape: number[] }[] = [];
  t.push({ name: 'G/proj/w', shape: [100, 4 * 4 * 512] }, { name: 'G/proj/b', shape: [4 * 4 * 512] });
  const g: [number, number, boolean][] = [
    [512, 256, true],
    [256, 128, true],
    [128, 64, true],
    [64, 3, false],
  ];
  g.forEach(([inC, outC, bn], i) => {
    t.push({ name: `G/tconv${i + 1}/w`, shape: [5, 5, outC, inC] }, { name: `G/tconv${i + 1}/b`, shape: [outC] });
    if (bn) for (const p of ['scale', 'offset', 'mean', 'var']) t.push({ name: `G/bn${i + 1}/${p}`, shape: [outC] });
  });
  const d: [number, number, boolean][] = [
    [3, 64, false],
    [64, 128, true],
    [128, 256, true],
    [256, 512, true],
  ];
  d.forEach(([inC, outC, bn], i) => {
    t.push({ name: `D/conv${i + 1}/w`, shape: [5, 5, inC, outC] }, { name: `D/conv${i + 1}/b`, shape: [outC] });
    if (bn) for (const p of ['scale', 'offset', 'mean', 'var']) t.push({ name: `D/bn${i + 1}/${p}`, shape: [outC] });
  });
  t.push({ name: 'D/conv5/w', shape: [4, 4, 512, 1] }, { name: 'D/conv5/b', shape: [1] });
  return t;
}

/** The table's learnables: everything but the running mean and variance. */
export const DCGAN_LEARNABLES = 9_450_884;

export function weightsMessage(table: { name: string; shape: number[] }[]): WeightsMessage {
  const tensors: Record<string, Float32Array> = {};
  const shapes: Record<string, number[]> = {};
  for (const { name, shape } of table) {
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) a[i] = Math.sin(i) * 0.02;
    tensors[name] = a;
    shapes[name] = shape;
  }
  return { type: 'weights', version: 1, iteration: 1, tensors, shapes };
}

function main(): void {
  const repeats = Number(process.argv[2] ?? 10);
  const msg = weightsMessage(dcganTable());
  const limits = frameLimitFor(DCGAN_LEARNABLES, 128, 64);
  const frame = encodeMessage(msg);
  const bytes = Object.values(msg.tensors).reduce((s, a) => s + a.byteLength, 0);
  const mb = bytes / 1e6;

  const src = Buffer.from(frame);
  const dst = Buffer.allocUnsafe(src.length);
  const odd = Buffer.from(new ArrayBuffer(frame.length + 1), 1, frame.length);
  frame.copy(odd);

  const rows: [string, number][] = [
    ['Buffer.copy into a reused buffer', best(repeats, () => void src.copy(dst))],
    // What any encoder that returns a fresh frame pays: new pages are faulted in as they're written.
    ['Buffer.allocUnsafe + copy', best(repeats, () => void src.copy(Buffer.allocUnsafe(src.length)))],
    ['encode', best(repeats, () => void encodeMessage(msg))],
    ['decode, aligned (views)', best(repeats, () => void decodeMessage(frame, limits))],
    ['decode, unaligned (copies)', best(repeats, () => void decodeMessage(odd, limits))],
    ['encode + decode aligned', best(repeats, () => void decodeMessage(encodeMessage(msg), limits))],
  ];
  console.log(
    `weights message: ${Object.keys(msg.tensors).length} tensors, ${mb.toFixed(1)} MB of float32, frame ${frame.length} bytes (limit ${limits.maxFrameBytes}); best of ${repeats}`,
  );
  for (const [name, ms] of rows) {
    console.log(`${name.padEnd(34)} ${ms.toFixed(2).padStart(8)} ms ${(mb / (ms / 1e3)).toFixed(0).padStart(7)} MB/s`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
