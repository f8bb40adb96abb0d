// The layering rules of the tree, and a checker that reads every import (static, dynamic and
// `new URL('./x.ts', import.meta.url)`, as workers and threads are started) with TypeScript's own
// pre-processor, so a test can fail on a forbidden import without a second parser.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** Which top-level folders each folder may import from (itself is always allowed). */
export const LAYERS: Readonly<Record<string, readonly string[]>> = {
  protocol: [],
  data: ['protocol'],
  metrics: ['protocol'],
  coordinator: ['protocol', 'data', 'metrics'],
  worker: ['protocol', 'data', 'metrics'],
  monitor: ['protocol'],
  // A node is a worker to its coordinator and a coordinator to its own workers.
  node: ['protocol', 'data', 'metrics', 'coordinator', 'worker'],
  bench: ['protocol', 'data', 'metrics', 'coordinator', 'worker', 'monitor', 'node'],
  cmd: ['protocol', 'data', 'metrics', 'coordinator', 'worker', 'monitor', 'bench', 'node'],
  // Build and check scripts, run by hand or by CI, never by a run: like cmd/, they may use benchmarks.
  scripts: ['protocol', 'data', 'metrics', 'coordinator', 'worker', 'monitor', 'bench', 'node'],
};

export interface Violation {
  file: string;
  imports: string;
  rule: string;
}

/** Executables others start as processes (a path, not an import). */
const SPAWNED = new Set(['cmd/gan-dist.mjs']);

const SOURCE = /\.(ts|mts|mjs)$/;

function sourceFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(root, rel));
    else if (SOURCE.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Every relative module a file names: imports, re-exports, dynamic imports and `new URL('./…', import.meta.url)`. */
export function relativeImports(source: string): string[] {
  const info = ts.preProcessFile(source, true, true);
  const specs = info.importedFiles.map((f) => f.fileName);
  for (const m of source.matchAll(/new URL\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*,\s*import\.meta\.url/g)) specs.push(m[1]!);
  return specs.filter((s) => s.startsWith('./') || s.startsWith('../'));
}

/** The imports under `root` that break LAYERS, each naming the file, the target and the rule. */
export function layeringViolations(root: string): Violation[] {
  const out: Violation[] = [];
  for (const layer of Object.keys(LAYERS)) {
    if (!existsSync(path.join(root, layer))) continue;
    for (const file of sourceFiles(root, layer)) {
      for (const spec of relativeImports(readFileSync(path.join(root, file), 'utf8'))) {
        const target = path.normalize(path.join(path.dirname(file), spec));
        const top = target.split(path.sep)[0]!;
        if (top === layer || SPAWNED.has(target) || !(top in LAYERS || top === 'test')) continue;
        const allowed = LAYERS[layer]!;
        if (!allowed.includes(top))
          out.push({ file, imports: target, rule: `${layer}/ may import only ${[layer, ...allowed].join(', ')}` });
      }
    }
  }
  return out;
}
