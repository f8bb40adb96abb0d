// `gan-dist train --backend webgpu` end to end: two local workers on the WebGPU adapter this
// machine has (lavapipe's software one in CI), a few iterations, the adapter named in train.log.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { killStartedClis, runCli } from '../support/cli.ts';
import { describeWebgpu, webgpuGate } from '../support/webgpu.ts';

const dirs: string[] = [];
afterEach(() => {
  killStartedClis();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

await describeWebgpu('gan-dist train --backend webgpu', () => {
  it('trains two local workers on the adapter, names it in train.log, and writes a sample grid', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-webgpu-'));
    dirs.push(dir);
    const runDir = path.join(dir, 'run');
    const args = ['train', '--backend', 'webgpu', '--workers', '2', '--preset', 'tiny', '--data', 'synthetic'];
    const r = await runCli([...args, '--iterations', '3', '--run-dir', runDir, '--no-tui']);
    expect(r.code, r.stderr).toBe(0);

    const lines = readFileSync(path.join(runDir, 'train.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const joined = lines.filter((l) => l.event === 'worker-joined');
    const { adapter } = await webgpuGate();
    console.log(`workers joined on: ${joined.map((l) => l.device).join('; ')}`);
    expect(joined.map((l) => l.backend)).toEqual(['webgpu', 'webgpu']);
    // The adapter's name, and "software" for a fallback one (a worker's label may add the GPU it pinned).
    for (const l of joined) {
      expect(l.device).toContain(adapter!.description || adapter!.device || adapter!.architecture);
      expect(String(l.device).startsWith('software ')).toBe(adapter!.isFallbackAdapter);
    }

    const iterations = lines.filter((l) => l.msg === 'iteration');
    expect(iterations.map((l) => l.iteration)).toEqual([1, 2, 3]);
    for (const l of iterations) for (const k of ['lossG', 'lossD']) expect(Number.isFinite(l[k]), k).toBe(true);

    const png = readFileSync(path.join(runDir, 'samples', 'iter-000001.png'));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
  });
});
