// The GPU check that scripts/gpu-check.sh bundles and runs on a machine with an NVIDIA GPU: the
// adapter, the step of the seed's model on webgpu against wasm at three batches (first step apart),
// tensor and memory growth over the webgpu steps, and PyTorch's step on the same GPU as the anchor.
// Ends with one JSON line after a "GPU-CHECK-JSON" line.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { benchStep, type StepBenchReport, type StepBenchRow } from '../../bench/step.ts';
import { modelConfigOf, presets, resolveConfig, type PresetName } from '../../protocol/config.ts';
import { adapterLabel, describeAdapter, findAdapter, type AdapterDescription } from '../../worker/webgpu.ts';

const { values: args } = parseArgs({
  options: {
    preset: { type: 'string' },
    batches: { type: 'string', default: '16,64,128' },
    'webgpu-steps': { type: 'string', default: '20' },
    'webgpu-max-seconds': { type: 'string', default: '20' },
    'wasm-steps': { type: 'string', default: '5' },
    'wasm-max-seconds': { type: 'string', default: '10' },
    torch: { type: 'string' },
    python: { type: 'string', default: 'python3' },
    'torch-timeout': { type: 'string', default: '150' },
    'allow-software': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

const positive = (flag: string): number => {
  const x = Number(args[flag as keyof typeof args]);
  if (!Number.isInteger(x) || x < 1)
    throw new Error(`--${flag}: "${args[flag as keyof typeof args]}" is not a positive integer`);
  return x;
};
const preset = args.preset as PresetName | undefined;
if (preset !== undefined && !(preset in presets)) throw new Error(`--preset: unknown preset "${preset}"`);
const batches = args.batches.split(',').map(Number);
if (batches.some((b) => !Number.isInteger(b) || b < 1))
  throw new Error(`--batches: "${args.batches}" is not a list of positive integers`);
const model = modelConfigOf(resolveConfig({ preset }));
const errors: string[] = [];
const say = (line: string) => console.log(line);
const t0 = performance.now();

// 1. The adapter Dawn picks, before anything is timed.
let adapter: AdapterDescription | undefined;
const found = await findAdapter();
if (found.adapter) {
  adapter = describeAdapter(found.adapter);
  say(`adapter: ${adapterLabel(adapter)}`);
  say(
    `  vendor ${adapter.vendor}, architecture ${adapter.architecture}, fallback ${adapter.isFallbackAdapter}, ` +
      `maxBufferSize ${adapter.maxBufferSize}, maxStorageBufferBindingSize ${adapter.maxStorageBufferBindingSize}`,
  );
} else {
  errors.push(`webgpu: ${found.reason}`);
  say(`adapter: none (${found.reason})`);
}
const software = adapter?.isFallbackAdapter ?? false;
if (software && !args['allow-software']) {
  errors.push('webgpu: the only adapter is a software fallback: the NVIDIA Vulkan ICD was not found or not loaded');
}
const runWebgpu = adapter !== undefined && (!software || args['allow-software']);

// 2. webgpu, then wasm (time-boxed: the seed's model at batch 128 takes seconds a step on one core).
async function bench(
  backend: 'webgpu' | 'wasm',
  steps: number,
  maxSeconds: number,
): Promise<StepBenchReport | undefined> {
  try {
    return await benchStep({
      backends: [backend],
      batches,
      preset,
      steps,
      warmup: 1,
      maxSeconds,
      threads: 1,
      quietSteps: true,
      progress: say,
    });
  } catch (err) {
    errors.push(`${backend}: ${(err as Error).message}`);
    say(`${backend}: failed: ${(err as Error).message}`);
    return undefined;
  }
}
const webgpu = runWebgpu ? await bench('webgpu', positive('webgpu-steps'), positive('webgpu-max-seconds')) : undefined;
const wasm = await bench('wasm', positive('wasm-steps'), positive('wasm-max-seconds'));

// 3. PyTorch on the same GPU, where a python3 with CUDA torch exists.
interface TorchRun {
  batch: number;
  tf32: boolean;
  firstStepMs: number;
  stepMsMedian: number;
  imagesPerSec: number;
  computeMsMedian: number;
}
interface TorchReport {
  torch?: string;
  device?: string;
  runs?: TorchRun[];
  error?: string;
}
function torchStep(): Promise<TorchReport> {
  if (!args.torch) return Promise.resolve({ error: 'no --torch script given' });
  const cli = [args.torch, '--batches', batches.join(','), '--image-size', String(model.imageSize)];
  cli.push('--filters', String(model.filters), '--latent', String(model.latent));
  return new Promise((resolve) => {
    const child = spawn(args.python, cli, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), positive('torch-timeout') * 1000);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => {
      err += d;
      for (const line of String(d).split('\n')) if (line.startsWith('torch ')) say(`  ${line}`);
    });
    child.on('error', (e) => resolve({ error: `${args.python}: ${e.message}` }));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').at(-1) ?? '';
      try {
        resolve(JSON.parse(last) as TorchReport);
      } catch {
        const why = signal ? `killed (${signal}) after ${args['torch-timeout']} s` : `exited with ${code}`;
        resolve({ error: `${args.python} ${args.torch} ${why}: ${err.trim().split('\n').slice(-3).join(' | ')}` });
      }
    });
  });
}
const torch = await torchStep();
if (torch.error) say(`torch: skipped: ${torch.error}`);

// 4. The summary: per batch, webgpu against wasm and against PyTorch (TF32 off, on).
const at = (r: StepBenchReport | undefined, batch: number): StepBenchRow | undefined =>
  r?.rows.find((x) => x.batch === batch);
const torchAt = (batch: number, tf32: boolean) => torch.runs?.find((x) => x.batch === batch && x.tf32 === tf32);
const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined ? a / b : null);
const perBatch = batches.map((batch) => {
  const g = at(webgpu, batch);
  const w = at(wasm, batch);
  const off = torchAt(batch, false);
  const on = torchAt(batch, true);
  return {
    batch,
    webgpu: g && {
      firstStepMs: g.firstStepMs,
      stepMsMedian: g.stepMsMedian,
      imagesPerSec: g.imagesPerSec,
      steps: g.steps,
    },
    wasm: w && {
      firstStepMs: w.firstStepMs,
      stepMsMedian: w.stepMsMedian,
      imagesPerSec: w.imagesPerSec,
      steps: w.steps,
    },
    torchTf32Off: off && { stepMsMedian: off.stepMsMedian, imagesPerSec: off.imagesPerSec },
    torchTf32On: on && { stepMsMedian: on.stepMsMedian, imagesPerSec: on.imagesPerSec },
    webgpuOverWasm: ratio(g?.imagesPerSec, w?.imagesPerSec),
    webgpuOverTorchTf32Off: ratio(g?.imagesPerSec, off?.imagesPerSec),
    webgpuOverTorchTf32On: ratio(g?.imagesPerSec, on?.imagesPerSec),
  };
});
const growth = webgpu?.rows.map((r) => ({
  batch: r.batch,
  steps: r.steps,
  tensorsPerStep: r.tensorsPerStep,
  bytesPerStep: r.bytesPerStep,
  gpuAllocatedMB: r.gpuAllocatedMB,
  gpuAllocatedGrowthMB: r.gpuAllocatedGrowthMB,
  rssGrowthMB: r.rssGrowthMB,
}));
const largest = perBatch.at(-1);
const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined ? '-' : x.toFixed(d));
const fx = (x: number | null | undefined, d: number) => (x === null || x === undefined ? '-' : `${x.toFixed(d)}x`);
say('');
say(
  `model ${model.imageSize}x${model.imageSize}, ${model.filters} filters${software ? '; webgpu on a SOFTWARE adapter: CPU figures, not GPU ones' : ''}`,
);
say(
  'batch | webgpu first ms, ms/step, img/s | wasm first ms, ms/step, img/s | webgpu/wasm | torch ms/step tf32 off, on | webgpu/torch off, on',
);
for (const b of perBatch) {
  say(
    `${String(b.batch).padStart(5)} | ${f(b.webgpu?.firstStepMs, 0)}, ${f(b.webgpu?.stepMsMedian)}, ${f(b.webgpu?.imagesPerSec)} | ` +
      `${f(b.wasm?.firstStepMs, 0)}, ${f(b.wasm?.stepMsMedian, 0)}, ${f(b.wasm?.imagesPerSec, 2)} | ${fx(b.webgpuOverWasm, 2)} | ` +
      `${f(b.torchTf32Off?.stepMsMedian, 2)}, ${f(b.torchTf32On?.stepMsMedian, 2)} | ${fx(b.webgpuOverTorchTf32Off, 3)}, ${fx(b.webgpuOverTorchTf32On, 3)}`,
  );
}
for (const g of growth ?? []) {
  say(
    `growth over ${g.steps} webgpu steps at batch ${g.batch}: ${f(g.tensorsPerStep)} tensors/step, ${f(g.bytesPerStep, 0)} B/step, ` +
      `GPU buffers ${f(g.gpuAllocatedMB)} MB (${f(g.gpuAllocatedGrowthMB)}), RSS ${f(g.rssGrowthMB)} MB`,
  );
}
for (const e of errors) say(`error: ${e}`);
const summary = {
  check: 'gan-dist gpu-check',
  date: new Date().toISOString(),
  node: process.version,
  seconds: (performance.now() - t0) / 1000,
  model,
  adapter: adapter ?? null,
  softwareAdapter: software,
  perBatch,
  growth: growth ?? null,
  target: {
    batch: largest?.batch,
    webgpuOverWasm: largest?.webgpuOverWasm ?? null,
    atLeast10x: largest?.webgpuOverWasm != null ? largest.webgpuOverWasm >= 10 : null,
  },
  torch,
  webgpu: webgpu ?? null,
  wasm: wasm ?? null,
  errors,
};
if (args.out) writeFileSync(args.out, `${JSON.stringify(summary, null, 2)}\n`);
say('GPU-CHECK-JSON');
say(JSON.stringify(summary));
// Dawn's instance keeps the event loop alive: leave explicitly.
process.exit(errors.length > 0 ? 1 : 0);
