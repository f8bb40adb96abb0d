// Micro-benchmark of the convolution kernels on the wasm backend: ours (worker/kernels/wasm-kernels.ts)
// against the stock wasm kernels and the cpu backend, per layer of G and D, then a per-kernel
// profile of one real training step, so the next bottleneck is known.
//
//   npx tsx bench/kernels.ts [--batch 16] [--filters 64] [--image 64] [--reps 5]
//                                   [--cpu-batch 2] [--cpu-filters 16] [--skip stock,ways,cpu,step]
//
// Times are medians of --reps runs after one warm-up. The machine may be shared: a run during which
// other processes used more than a fifth of a core is taken again (up to 3 x --reps runs in all),
// and a cell still short of clean runs is marked '~', so numbers from a busy machine show as such.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { Tensor } from '@tensorflow/tfjs';
import { median } from './util.ts';
import { Rng } from '../protocol/rng.ts';
import {
  activationShapes,
  initialParams,
  layersOf,
  parameterTable,
  type Layer,
} from '../protocol/model/architecture.ts';
import { loadBackend, type TF } from '../worker/backend.ts';
import { Trainer } from '../worker/trainer.ts';
import {
  forceConvGradWays,
  registerWasmGradientKernels,
  unregisterWasmGradientKernels,
  type ConvWay,
  type FilterGradWay,
  type InputGradWay,
} from '../worker/kernels/wasm-kernels.ts';

export interface BenchOptions {
  batch: number;
  filters: number;
  image: 32 | 64;
  reps: number;
  cpuBatch: number;
  cpuFilters: number;
  skip: Set<string>;
}

/** One timed cell: median ms, and whether every sample ran without other processes competing. */
export interface Timing {
  ms: number;
  clean: boolean;
}

/** Busy jiffies of the whole machine (all cores), or undefined off Linux. */
function machineBusyMs(): number | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = cpu[3] + cpu[4];
    return (cpu.reduce((a, b) => a + b, 0) - idle) * 10; // USER_HZ = 100
  } catch {
    return undefined;
  }
}

/** Median wall ms of `f` (its result read back and disposed), retrying samples disturbed by other processes. */
export function time(tf: TF, f: () => Tensor, reps: number): Timing {
  tf.dispose(f()); // warm-up: first calls build XNNPACK operators
  const clean: number[] = [];
  const disturbed: number[] = [];
  for (let attempt = 0; clean.length < reps && attempt < 3 * reps; attempt++) {
    const busy0 = machineBusyMs();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const r = f();
    r.dataSync();
    const wall = performance.now() - t0;
    r.dispose();
    const cpu = process.cpuUsage(cpu0);
    const busy1 = machineBusyMs();
    const others = busy0 === undefined || busy1 === undefined ? 0 : busy1 - busy0 - (cpu.user + cpu.system) / 1000;
    // /proc/stat counts 10 ms ticks: allow a few of slack on short runs.
    (others > 0.2 * wall + 30 ? disturbed : clean).push(wall);
  }
  const samples = clean.length >= reps ? clean : [...clean, ...disturbed];
  samples.sort((a, b) => a - b);
  return { ms: samples[Math.floor(samples.length / 2)], clean: clean.length >= reps };
}

const fmt = (t: Timing | undefined) => (t === undefined ? '-' : `${t.clean ? '' : '~'}${t.ms.toFixed(1)}`);

/** The three kernels of one conv or transposed-conv layer, as the training step calls them. */
interface LayerKernels {
  name: string;
  fwd: () => Tensor;
  dx: () => Tensor;
  dw: () => Tensor;
  /** D's dx or G's forward: the Conv2DBackpropInput of the layer. */
  backpropInput: () => Tensor;
  dispose: () => void;
}

/**
 * `fresh`: every call gets a new copy of the weights, as on their first use in a step (new weights
 * arrive every step). XNNPACK packs a filter once per tensor and wasm-kernels.ts keeps phase
 * filters per tensor, so reusing one tensor would time only the later uses.
 */
function layerKernels(
  tf: TF,
  l: Extract<Layer, { kind: 'conv' | 'tconv' }>,
  inShape: number[],
  outShape: number[],
  b: number,
  fresh: boolean,
): LayerKernels {
  const x = tf.randomNormal([b, ...inShape]);
  const y = tf.randomNormal([b, ...outShape]);
  const w = l.kind === 'conv' ? tf.randomNormal([l.k, l.k, l.inC, l.outC]) : tf.randomNormal([l.k, l.k, l.outC, l.inC]);
  const common = { strides: [l.stride, l.stride], pad: l.pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
  const run = (name: string, inputs: Record<string, Tensor>, attrs: Record<string, unknown>) => () => {
    const filter = fresh && inputs.filter ? tf.add(inputs.filter, 0) : inputs.filter;
    const out = tf
      .engine()
      .runKernel(name, { ...inputs, ...(filter ? { filter } : {}) }, { ...common, ...attrs } as never) as Tensor;
    if (filter !== inputs.filter) filter.dispose();
    return out;
  };
  const name = `${l.kind === 'conv' ? 'D' : 'G'} ${l.name} ${inShape.join('x')} -> ${outShape.join('x')}`;
  const dispose = () => tf.dispose([x, y, w]);
  if (l.kind === 'conv') {
    const dx = run('Conv2DBackpropInput', { dy: y, filter: w }, { inputShape: x.shape });
    return {
      name,
      fwd: run('Conv2D', { x, filter: w }, { dilations: 1 }),
      dx,
      dw: run('Conv2DBackpropFilter', { x, dy: y }, { filterShape: w.shape }),
      backpropInput: dx,
      dispose,
    };
  }
  // A transposed conv's forward is dx of the conv it transposes, and its dx that conv's forward.
  const fwd = run('Conv2DBackpropInput', { dy: x, filter: w }, { inputShape: y.shape });
  return {
    name,
    fwd,
    dx: run('Conv2D', { x: y, filter: w }, { dilations: 1 }),
    dw: run('Conv2DBackpropFilter', { x: y, dy: x }, { filterShape: w.shape }),
    backpropInput: fwd,
    dispose,
  };
}

function modelLayers(tf: TF, filters: number, image: 32 | 64, b: number, fresh = true): LayerKernels[] {
  const cfg = { latent: 100, filters, imageSize: image };
  const out: LayerKernels[] = [];
  for (const net of ['D', 'G'] as const) {
    const layers = layersOf(net, cfg);
    const shapes = activationShapes(layers);
    layers.forEach((l, i) => {
      if (l.kind === 'conv' || l.kind === 'tconv') out.push(layerKernels(tf, l, shapes[i - 1], shapes[i], b, fresh));
    });
  }
  return out;
}

function table(title: string, header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [title, line(header), ...rows.map(line)].join('\n');
}

/** Per layer: fwd, dx, dW with our kernels and with the stock ones (the stock wasm backend has no dW). */
export function benchLayers(tf: TF, o: BenchOptions): string {
  const layers = modelLayers(tf, o.filters, o.image, o.batch);
  const rows: string[][] = [];
  const sum = { ours: 0, stock: 0, stockComplete: true };
  for (const l of layers) {
    registerWasmGradientKernels();
    const ours = [l.fwd, l.dx, l.dw].map((f) => time(tf, f, o.reps));
    let stock: (Timing | undefined)[] = [undefined, undefined, undefined];
    if (!o.skip.has('stock')) {
      unregisterWasmGradientKernels();
      stock = [l.fwd, l.dx].map((f) => time(tf, f, Math.min(o.reps, 3)));
      stock.push(undefined);
      registerWasmGradientKernels();
    }
    const total = ours.reduce((a, t) => a + t.ms, 0);
    sum.ours += total;
    sum.stock += (stock[0]?.ms ?? 0) + (stock[1]?.ms ?? 0);
    rows.push([l.name, ...ours.map(fmt), total.toFixed(1), ...stock.map(fmt)]);
    l.dispose();
  }
  rows.push([
    'sum',
    '',
    '',
    '',
    sum.ours.toFixed(1),
    '',
    o.skip.has('stock') ? '-' : `${sum.stock.toFixed(1)} (no dW)`,
    '',
  ]);
  return table(
    `Layer kernels, ms (median of ${o.reps}, new weights each call; ~ = other processes were busy), batch ${o.batch}, nf ${o.filters}, image ${o.image}`,
    ['layer', 'fwd', 'dx', 'dW', 'ours total', 'stock fwd', 'stock dx', 'stock dW'],
    rows,
  );
}

/** Every way to compute each kernel on every layer, so the choices in wasm-kernels.ts can be checked. */
export function benchWays(tf: TF, o: BenchOptions): string {
  registerWasmGradientKernels();
  const convWays: ConvWay[] = ['gemm', 'xnnpack'];
  const dxWays: InputGradWay[] = ['gemm', 'phases', 'rowPhases', 'col2im'];
  const dwWays: FilterGradWay[] = ['gemm', 'im2col', 'dilated'];
  const rows: string[][] = [];
  const fresh = modelLayers(tf, o.filters, o.image, o.batch, true);
  const kept = modelLayers(tf, o.filters, o.image, o.batch, false);
  const timedWay = (ways: Parameters<typeof forceConvGradWays>[0], run: () => Tensor) =>
    time(
      tf,
      () => {
        forceConvGradWays(ways);
        return run();
      },
      o.reps,
    );
  fresh.forEach((l, i) => {
    // A transposed conv's dx is a Conv2D: its 'fwd' here.
    const convOf = l.name.startsWith('D') ? l.fwd : l.dx;
    const conv = convWays.map((conv) => timedWay({ conv }, convOf));
    const dx = dxWays.map((dx) => timedWay({ dx }, l.backpropInput));
    const phasesKept = timedWay({ dx: 'phases' }, kept[i].backpropInput);
    const dw = dwWays.map((dW) => timedWay({ dW }, l.dw));
    rows.push([l.name, ...conv.map(fmt), ...dx.map(fmt), fmt(phasesKept), ...dw.map(fmt)]);
    l.dispose();
    kept[i].dispose();
  });
  forceConvGradWays({ dx: 'auto', dW: 'auto', conv: 'auto' });
  return table(
    `Conv2D (D's forward, G's dx), Conv2DBackpropInput (D's dx, G's forward) and Conv2DBackpropFilter by way, ms, batch ${o.batch}, ` +
      `nf ${o.filters}; new weights each call, except "phases, kept": the same weights again (D's dx runs three times a step)`,
    [
      'layer',
      ...convWays.map((w) => `conv ${w}`),
      ...dxWays.map((w) => `dx ${w}`),
      'dx phases, kept',
      ...dwWays.map((w) => `dW ${w}`),
    ],
    rows,
  );
}

/** Small shapes against the cpu backend (its Conv2DBackpropFilter is a naive loop: seconds per layer). */
export async function benchCpu(tf: TF, o: BenchOptions): Promise<string> {
  const rows: string[][] = [];
  registerWasmGradientKernels();
  const cfg = { filters: o.cpuFilters, image: o.image, b: o.cpuBatch };
  const wasm = modelLayers(tf, cfg.filters, cfg.image, cfg.b).map((l) => {
    const t = [l.fwd, l.dx, l.dw].map((f) => time(tf, f, o.reps));
    l.dispose();
    return t;
  });
  await tf.setBackend('cpu');
  modelLayers(tf, cfg.filters, cfg.image, cfg.b).forEach((l, i) => {
    const t = [l.fwd, l.dx, l.dw].map((f) => time(tf, f, 1));
    rows.push([
      l.name,
      ...wasm[i].map(fmt),
      ...t.map(fmt),
      `${(t.reduce((a, x) => a + x.ms, 0) / wasm[i].reduce((a, x) => a + x.ms, 0)).toFixed(0)}x`,
    ]);
    l.dispose();
  });
  await tf.setBackend('wasm');
  return table(
    `wasm (ours) vs cpu backend, ms, batch ${cfg.b}, nf ${cfg.filters}, image ${cfg.image}`,
    ['layer', 'wasm fwd', 'wasm dx', 'wasm dW', 'cpu fwd', 'cpu dx', 'cpu dW', 'cpu/wasm'],
    rows,
  );
}

/** tf.profile of Trainer.step (both tapes, as a worker runs it): time per kernel name, biggest first. */
export async function profileStep(tf: TF, o: BenchOptions): Promise<string> {
  registerWasmGradientKernels();
  const cfg = { latent: 100, filters: o.filters, imageSize: o.image };
  const trainer = new Trainer(tf, cfg, 1);
  trainer.setWeights(initialParams(parameterTable(cfg), 1));
  const rng = new Rng(1);
  const shard = (iteration: number) => ({
    iteration,
    rowStart: 0,
    n: o.batch,
    images: new Uint8Array(o.batch * o.image * o.image * 3).map(() => rng.nextU32() & 255),
    z: rng.fillNormal(new Float32Array(o.batch * cfg.latent)),
    flip: rng.bernoulli(o.batch, 0.35),
  });
  const timed = async (iteration: number) => {
    const t0 = performance.now();
    await trainer.step(shard(iteration));
    return performance.now() - t0;
  };
  await trainer.step(shard(1)); // warm-up
  const steps: number[] = [];
  for (let i = 0; i < o.reps; i++) steps.push(await timed(2 + i));
  steps.sort((a, b) => a - b);
  // The same step on XNNPACK's compositions, in pairs with ours, so the machine's drift (this VM's
  // one-core rate moves by half from minute to minute) falls on both alike.
  const pairs: { ours: number; xnnpack: number }[] = [];
  const xnnpack = { conv: 'xnnpack', dx: 'phases', dW: 'dilated' } as const;
  forceConvGradWays(xnnpack);
  await trainer.step(shard(50)); // warm-up: XNNPACK builds its operators
  for (let i = 0; i < o.reps; i++) {
    forceConvGradWays(xnnpack);
    const x = await timed(60 + 2 * i);
    forceConvGradWays({ conv: 'auto', dx: 'auto', dW: 'auto' });
    pairs.push({ xnnpack: x, ours: await timed(61 + 2 * i) });
  }
  const ratios = pairs.map((p) => p.xnnpack / p.ours).sort((a, b) => a - b);
  const byKernel = new Map<string, { ms: number; calls: number }>();
  const p0 = performance.now();
  const profile = await tf.profile(async () => {
    await trainer.step(shard(100));
    return [];
  });
  const profiledMs = performance.now() - p0;
  for (const k of profile.kernels) {
    const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += Number(k.kernelTimeMs);
    e.calls++;
    byKernel.set(k.name, e);
  }
  trainer.dispose();
  const total = [...byKernel.values()].reduce((a, e) => a + e.ms, 0);
  const rows = [...byKernel.entries()]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([name, e]) => [name, String(e.calls), e.ms.toFixed(1), `${((100 * e.ms) / total).toFixed(1)}%`]);
  rows.push(['all kernels', '', total.toFixed(1), '100%']);
  const stepMedian = median(steps);
  return table(
    `Trainer.step, batch ${o.batch}, nf ${o.filters}, image ${o.image}: median ${stepMedian.toFixed(0)} ms ` +
      `(min ${steps[0].toFixed(0)}) over ${o.reps} steps. One profiled step: ${profiledMs.toFixed(0)} ms, ` +
      `${total.toFixed(0)} ms in kernels and ${(profiledMs - total).toFixed(0)} ms outside them (tidy, JS, GC).\n` +
      `Against XNNPACK's compositions (Conv2D stock, dx by phases, dW dilated), ${o.reps} interleaved pairs: ` +
      `${median(pairs.map((p) => p.xnnpack)).toFixed(0)} vs ${median(pairs.map((p) => p.ours)).toFixed(0)} ms, ` +
      `median ratio ${median(ratios).toFixed(2)}x (${ratios[0].toFixed(2)}-${ratios.at(-1)!.toFixed(2)})`,
    ['kernel', 'calls', 'ms', 'share'],
    rows,
  );
}

export function parseArgs(argv: string[]): BenchOptions {
  const o: BenchOptions = { batch: 16, filters: 64, image: 64, reps: 5, cpuBatch: 2, cpuFilters: 16, skip: new Set() };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const n = Number(value);
    const positive = () => {
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got "${value}"`);
      return n;
    };
    if (flag === '--batch') o.batch = positive();
    else if (flag === '--filters') o.filters = positive();
    else if (flag === '--reps') o.reps = positive();
    else if (flag === '--cpu-batch') o.cpuBatch = positive();
    else if (flag === '--cpu-filters') o.cpuFilters = positive();
    else if (flag === '--image') {
      if (n !== 32 && n !== 64) throw new Error(`--image must be 32 or 64, got "${value}"`);
      o.image = n;
    } else if (flag === '--skip') o.skip = new Set(value.split(','));
    else throw new Error(`unknown flag ${flag}`);
  }
  return o;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const { tf, info } = await loadBackend('wasm', { threads: 1 });
  console.log(`backend: ${info.device}`);
  console.log(benchLayers(tf, o), '\n');
  if (!o.skip.has('ways')) console.log(benchWays(tf, o), '\n');
  if (!o.skip.has('cpu')) console.log(await benchCpu(tf, o), '\n');
  if (!o.skip.has('step')) console.log(await profileStep(tf, o));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
