import { describe, expect, it } from 'vitest';
import { adamStep, ADAM_EPSILON } from '../../coordinator/optimizer/adam.ts';
import { resolveConfig } from '../../protocol/config.ts';
import { FlatArrays, flatLayout } from '../../coordinator/optimizer/flat-arrays.ts';
import { DEFAULT_OPTIMIZER_THREADS, Optimizer } from '../../coordinator/optimizer/optimizer.ts';
import { GradientAccumulator } from '../../coordinator/optimizer/reduce.ts';
import { Rng } from '../../protocol/rng.ts';
import { simdArena } from '../../protocol/arena/simd.ts';
import type { NamedArrays, ParamSpec } from '../../protocol/model/architecture.ts';
import { loadBackend } from '../../worker/backend.ts';
import { runWorker } from '../../worker/client.ts';
import { startCoordinator } from '../support/harness.ts';
import { f32Bits, HAND_GRADS, HAND_W0, matlabAdamByHand, SEED_ADAM } from '../support/matlab-adam.ts';

// A small table with odd sizes, learnables and running statistics interleaved as in the real
// one, so slices start and end inside tensors and the states sit between learnables.
const spec = (name: string, shape: number[], role: ParamSpec['role']): ParamSpec => ({
  name,
  net: name.startsWith('G') ? 'G' : 'D',
  layer: name.split('/')[1],
  shape,
  role,
  init: { kind: 'const', value: 0 },
});
const specs: ParamSpec[] = [
  spec('G/a/w', [37, 11], 'learnable'),
  spec('G/bn/offset', [13], 'learnable'),
  spec('G/bn/mean', [13], 'state'),
  spec('G/bn/var', [13], 'state'),
  spec('D/c/w', [5, 5, 3, 7], 'learnable'),
  spec('D/c/b', [1], 'learnable'),
];
const learnables = specs.filter((s) => s.role === 'learnable');
const size = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);
const hyper = { lr: 2e-4, beta1: 0.5, beta2: 0.999, epsilon: ADAM_EPSILON };

function randomArrays(rng: Rng, list: ParamSpec[], scale: number): NamedArrays {
  const out: NamedArrays = {};
  for (const s of list) {
    const a = rng.fillNormal(new Float32Array(size(s)));
    // Magnitudes over many decades, and signed zeros, where rounding differences would show.
    for (let i = 0; i < a.length; i++) a[i] = i % 17 === 0 ? (i % 2 ? -0 : 0) : a[i] * scale * 10 ** ((i % 9) - 6);
    out[s.name] = a;
  }
  return out;
}

const copy = (a: NamedArrays): NamedArrays => Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v.slice()]));
const bits = (a: NamedArrays) =>
  Object.fromEntries(
    Object.entries(a).map(([k, v]) => [k, Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length))]),
  );

/** The coordinator's arithmetic before the optimizer: accumulator, mean, adamStep per tensor. */
function reference(params: NamedArrays, steps: { shards: { grads: NamedArrays; n: number }[] }[]) {
  const w = copy(params);
  const m: NamedArrays = {};
  const v: NamedArrays = {};
  for (const s of learnables) {
    m[s.name] = new Float32Array(size(s));
    v[s.name] = new Float32Array(size(s));
  }
  const acc = new GradientAccumulator(learnables);
  steps.forEach((st, k) => {
    acc.reset();
    for (const sh of st.shards) acc.add(sh.grads, sh.n);
    const g = acc.mean();
    for (const s of learnables) adamStep(w[s.name], g[s.name], m[s.name], v[s.name], k + 1, hyper);
  });
  return { w, m, v };
}

describe('Optimizer', () => {
  const rng = new Rng(11, 0);
  const params = randomArrays(rng, specs, 1);
  // Uneven shards, several steps from t = 1 (the largest bias correction). Totals that are not
  // powers of two, so 1 / total is inexact and the mean's rounding to float32 matters.
  const sizes = [[5, 3, 7], [7, 2], [9], [6, 3, 4, 4], [4, 4, 4, 4]];
  const steps = sizes.map((ns) => ({ shards: ns.map((n) => ({ grads: randomArrays(rng, learnables, 1), n })) }));
  const want = reference(params, steps);

  // Gradients where shared memory delivers them: in the SIMD arena (the threads add them in place).
  const inArena = (g: NamedArrays): NamedArrays =>
    new FlatArrays(flatLayout(learnables), 'arena').load(g, 'gradients').views;
  const cases = [
    { name: 'on the main thread', threads: 1, addOn: 'main' as const },
    { name: 'on the main thread, shards fused in one add', threads: 1, addOn: 'main' as const, fused: true },
    {
      name: 'on the main thread, gradients in the arena, fused',
      threads: 1,
      addOn: 'main' as const,
      fused: true,
      arena: true,
    },
    { name: 'with 2 threads doing Adam', threads: 2, addOn: 'main' as const },
    {
      name: 'with 2 threads adding gradients in the arena, fused',
      threads: 2,
      addOn: 'main' as const,
      fused: true,
      arena: true,
    },
    { name: 'with 2 threads adding and doing Adam', threads: 2, addOn: 'threads' as const },
    { name: 'with 3 threads adding and doing Adam', threads: 3, addOn: 'threads' as const },
    { name: 'with 3 threads adding, shards fused', threads: 3, addOn: 'threads' as const, fused: true },
  ];
  for (const c of cases) {
    it(`gives bitwise the single-threaded reduction and Adam ${c.name}`, async () => {
      const opt = new Optimizer(specs, { params }, { threads: c.threads, addOn: c.addOn, minParallel: 0 });
      try {
        expect(opt.threads).toBe(c.threads);
        for (let k = 0; k < steps.length; k++) {
          opt.begin();
          const shards = steps[k].shards.map((sh) => ({ grads: c.arena ? inArena(sh.grads) : sh.grads, n: sh.n }));
          if (c.fused) opt.addMany(shards);
          else for (const sh of shards) opt.add(sh.grads, sh.n);
          await opt.step(k + 1, hyper);
        }
        expect(bits(opt.params)).toEqual(bits(want.w));
        expect(bits(opt.adamM)).toEqual(bits(want.m));
        expect(bits(opt.adamV)).toEqual(bits(want.v));
        // The weights moved (the comparison is not between two untouched copies).
        expect(opt.params['G/a/w'][1]).not.toBe(params['G/a/w'][1]);
        // Running statistics are carried, not stepped.
        expect(Array.from(opt.params['G/bn/var'])).toEqual(Array.from(params['G/bn/var']));
      } finally {
        await opt.close();
      }
    });
  }

  for (const c of [
    { threads: 1, addOn: 'main' as const },
    { threads: 2, addOn: 'main' as const },
    { threads: 2, addOn: 'threads' as const },
  ]) {
    it(`gives bitwise MATLAB adamupdate's floats, written out by hand, over three steps, ${c.threads} thread(s) adding on ${c.addOn}`, async () => {
      // One tensor of 8: with 2 threads each slice is one SIMD vector, stepped on a pool thread.
      const one = [spec('G/h/w', [8], 'learnable')];
      const opt = new Optimizer(one, { params: { 'G/h/w': Float32Array.from(HAND_W0) } }, { ...c, minParallel: 0 });
      try {
        expect(opt.threads).toBe(c.threads);
        for (const [k, g] of HAND_GRADS.entries()) {
          opt.begin();
          // n = 1: the sum is the gradient and the mean (times 1 / 1) is too.
          opt.add({ 'G/h/w': new Float32Array(g) }, 1);
          await opt.step(k + 1, SEED_ADAM);
        }
        const want = matlabAdamByHand();
        expect(f32Bits(opt.params['G/h/w'])).toEqual(f32Bits(want.w));
        expect(f32Bits(opt.adamM['G/h/w'])).toEqual(f32Bits(want.m));
        expect(f32Bits(opt.adamV['G/h/w'])).toEqual(f32Bits(want.v));
      } finally {
        await opt.dispose();
      }
    });
  }

  it('keeps NamedArrays in table order in the SIMD arena, threaded or not', async () => {
    const opt = new Optimizer(specs, { params }, { threads: 2, minParallel: 0 });
    const single = new Optimizer(specs, { params });
    try {
      expect(Object.keys(opt.params)).toEqual(specs.map((s) => s.name));
      expect(Object.keys(opt.adamM)).toEqual(learnables.map((s) => s.name));
      expect(single.threads).toBe(1); // a small model stays on the main thread
      for (const o of [opt, single]) {
        for (const a of [
          ...Object.values(o.params),
          ...Object.values(o.adamM),
          ...Object.values(o.adamV),
          ...Object.values(o.gradientSums),
        ]) {
          expect(simdArena().address(a)).toBeGreaterThan(0);
        }
      }
    } finally {
      await opt.dispose();
      await single.dispose();
    }
  });

  it('hands its memory back to the arena on dispose, for the next optimizer of the size', async () => {
    const a = new Optimizer(specs, { params });
    const where = simdArena().address(a.params['G/a/w']);
    await a.dispose();
    const b = new Optimizer(specs, { params });
    expect(simdArena().address(b.params['G/a/w'])).toBe(where);
    await b.dispose();
  });

  it('resumes from given moments exactly as an uninterrupted optimizer continues', async () => {
    const whole = new Optimizer(specs, { params }, { threads: 1 });
    const first = new Optimizer(specs, { params }, { threads: 2, minParallel: 0 });
    try {
      for (const [k, st] of steps.entries()) {
        for (const o of k < 2 ? [whole, first] : [whole]) {
          o.begin();
          for (const sh of st.shards) o.add(sh.grads, sh.n);
          await o.step(k + 1, hyper);
        }
      }
      const resumed = new Optimizer(
        specs,
        { params: copy(first.params), adamM: copy(first.adamM), adamV: copy(first.adamV) },
        { threads: 2, minParallel: 0 },
      );
      for (const [k, st] of steps.entries()) {
        if (k < 2) continue;
        resumed.begin();
        for (const sh of st.shards) resumed.add(sh.grads, sh.n);
        await resumed.step(k + 1, hyper);
      }
      expect(bits(resumed.params)).toEqual(bits(whole.params));
      expect(bits(resumed.adamV)).toEqual(bits(whole.adamV));
      await resumed.close();
    } finally {
      await first.close();
    }
  });

  it('ends its threads on close', async () => {
    const opt = new Optimizer(specs, { params }, { threads: 2, addOn: 'threads', minParallel: 0 });
    expect(opt.poolThreads).toHaveLength(0); // nothing started before the first step
    opt.begin();
    opt.add(steps[0].shards[0].grads, 5);
    await opt.step(1, hyper);
    const threads = opt.poolThreads;
    expect(threads).toHaveLength(2);
    expect(threads.every((w) => w.threadId > 0)).toBe(true);
    await opt.close();
    expect(threads.map((w) => w.threadId)).toEqual([-1, -1]);
    expect(() => opt.add(steps[0].shards[0].grads, 5)).toThrow(/after close/);
  });

  it('refuses a thread count that is not a positive integer, naming the flag', () => {
    expect(() => new Optimizer(specs, { params }, { threads: 0 })).toThrow(/--adam-threads must be a positive integer/);
    expect(() => new Optimizer(specs, { params }, { threads: 1.5 })).toThrow(/--adam-threads/);
  });

  it('refuses weights missing a tensor or of the wrong size', () => {
    const { 'D/c/b': _gone, ...partial } = params;
    expect(() => new Optimizer(specs, { params: partial })).toThrow(/weights: missing tensor D\/c\/b/);
    expect(() => new Optimizer(specs, { params: { ...params, 'D/c/b': new Float32Array(2) } })).toThrow(
      /D\/c\/b has 2 values, expected 1/,
    );
  });

  it("ends a coordinator's optimizer threads when its run ends", async () => {
    await loadBackend('wasm', { threads: 1 });
    const h = await startCoordinator(resolveConfig({ preset: 'tiny', flags: { seed: 3, iterations: 2 } }), {
      minWorkers: 1,
    });
    const optimizer = (h.coordinator as unknown as { optimizer: Optimizer }).optimizer;
    let during: readonly import('node:worker_threads').Worker[] = [];
    h.coordinator.watchIterations(() => (during = optimizer.poolThreads));
    const worker = runWorker({
      url: `ws://${h.endpoint}`,
      token: h.token,
      backend: 'wasm',
      threads: 1,
      ganDistVersion: 'test',
    });
    expect(await h.coordinator.run()).toBe('finished');
    expect((await worker).exitCode).toBe(0);
    // The tiny model (532 k learnables) is above the main-thread bound: the pool did the steps.
    expect(optimizer.threads).toBe(DEFAULT_OPTIMIZER_THREADS);
    expect(during).toHaveLength(DEFAULT_OPTIMIZER_THREADS > 1 ? DEFAULT_OPTIMIZER_THREADS : 0);
    expect(during.map((w) => w.threadId)).toEqual(during.map(() => -1));
    expect(h.events.find((e) => e.event === 'state' && e.fields.to === 'running')?.fields.adamThreads).toBe(
      DEFAULT_OPTIMIZER_THREADS,
    );
  });
});
