// What the tree's folders may import: the layering rules of test/support/layering.ts hold for every
// file, and the coordinator's process never loads tfjs (every command module the CLI registers
// imports it lazily, inside the commands that run a worker or a model; a static import of
// wasm-kernels.ts from backprop.ts once put ~30 MB of tfjs in every coordinator's heap).

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { layeringViolations, relativeImports } from './support/layering.ts';
import { repoRoot as root } from './support/paths.ts';

describe('imports', () => {
  it('follow the layering rules in every folder', () => {
    expect(layeringViolations(root)).toEqual([]);
  });

  it('report a protocol file that imports the coordinator, a worker that imports the coordinator and a runtime file that imports a benchmark', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-layers-'));
    try {
      const put = (file: string, text: string) => {
        mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
        writeFileSync(path.join(dir, file), text);
      };
      put('protocol/wire/x.ts', "import { a } from '../../coordinator/a.ts';\n");
      put('worker/y.ts', "const m = await import('../coordinator/b.ts');\n");
      put('coordinator/z.ts', "export * from '../bench/util.ts';\nimport '../protocol/ok.ts';\n");
      put('data/w.ts', "new Worker(new URL('../worker/t.ts', import.meta.url));\n");
      const found = layeringViolations(dir)
        .map((v) => `${v.file} -> ${v.imports}`)
        .sort();
      expect(found).toEqual([
        'coordinator/z.ts -> bench/util.ts',
        'data/w.ts -> worker/t.ts',
        'protocol/wire/x.ts -> coordinator/a.ts',
        'worker/y.ts -> coordinator/b.ts',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads type-only, re-exported and dynamic imports alike', () => {
    expect(
      relativeImports(
        "import type { A } from './a.ts';\nexport { b } from '../b.ts';\nawait import('./c.ts');\nimport x from 'ws';\n",
      ),
    ).toEqual(['./a.ts', '../b.ts', './c.ts']);
  });

  it("load no tfjs module for the CLI's commands until one runs a model", () => {
    const modules = [
      'cmd/train.ts',
      'cmd/bench.ts',
      'cmd/generate.ts',
      'cmd/eval.ts',
      'cmd/data.ts',
      'cmd/logs.ts',
      'cmd/watch.ts',
      'coordinator/train/train.ts',
      'worker/doctor.ts',
      'worker/summary.ts',
    ];
    const script = `for (const m of ${JSON.stringify(modules)}) await import('./' + m);
      console.log(JSON.stringify({ engine: '_tfengine' in globalThis }));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ engine: false });
  });
});
