// The ceiling of the real part of `bench scaling`: what N independent step processes reach at
// once on this machine, with no coordinator, against one process stepping the whole batch.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** img/s of `processes` concurrent `gan-dist bench step` processes (wasm, one thread), summed. */
export async function concurrentStepImagesPerSec(preset: string, rows: number, processes: number): Promise<number> {
  const bin = fileURLToPath(new URL('../cmd/gan-dist.mjs', import.meta.url));
  const model = preset === 'seed' ? [] : ['--preset', preset];
  // The seed's steps take seconds: fewer of them say as much.
  const steps = preset === 'seed' ? 4 : 8;
  const args = [
    bin,
    'bench',
    'step',
    ...model,
    '--batch',
    String(rows),
    '--backend',
    'wasm',
    '--threads',
    '1',
    '--steps',
    String(steps),
    '--json',
  ];
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`bench step exited with ${code}`));
        resolve((JSON.parse(out) as { rows: { imagesPerSec: number }[] }).rows[0].imagesPerSec);
      });
    });
  const rates = await Promise.all(Array.from({ length: processes }, one));
  return rates.reduce((a, b) => a + b, 0);
}
