// The coordinator's process never loads tfjs: every command module the CLI registers imports it
// lazily, inside the commands that run a worker or a model. (A static import of wasm-kernels.ts
// from backprop.ts once put ~30 MB of tfjs in every coordinator's heap.)

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('imports', () => {
  it("load no tfjs module for the CLI's commands until one runs a model", () => {
    const modules = ['cmd/train.ts', 'cmd/bench.ts', 'cmd/generate.ts', 'cmd/eval.ts', 'cmd/data.ts', 'cmd/logs.ts', 'cmd/watch.ts',
      'coordinator/train.ts', 'worker/doctor.ts', 'worker/summary.ts'];
    const script = `for (const m of ${JSON.stringify(modules)}) await import('./' + m);
      console.log(JSON.stringify({ engine: '_tfengine' in globalThis }));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ engine: false });
  });
});
