// The cache of filters our convolutions derive from a weight tensor, so a weight used several times
// a step is transposed or packed once.

import type { TensorInfo } from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Scratch, withScratch } from './scratch.ts';

/**
 * Filters derived from a weight tensor (phase filters, packed GEMM operands), kept while their
 * source lives: D's weights serve two forwards and a dx each step. There is no disposal hook:
 * entries whose source is gone are freed when a kernel next runs.
 */
const kept = new WeakMap<BackendWasm, Map<object, Map<string, TensorInfo[]>>>();

function keptFor(b: BackendWasm): Map<object, Map<string, TensorInfo[]>> {
  let entries = kept.get(b);
  if (!entries) {
    entries = new Map();
    kept.set(b, entries);
  }
  return entries;
}

function freeKept(b: BackendWasm, id: object): void {
  const entries = keptFor(b);
  for (const filters of entries.get(id)?.values() ?? []) for (const t of filters) b.disposeData(t.dataId);
  entries.delete(id);
}

/** Frees what was kept for every source filter disposed since the last call. */
export function purgeKept(b: BackendWasm): void {
  for (const id of keptFor(b).keys()) if (!b.dataIdMap.has(id)) freeKept(b, id);
}

/** What `make` derives from `filter` under `key`, made once while the filter lives. */
export function keptFilters(
  s: Scratch,
  filter: TensorInfo,
  key: string,
  make: (s: Scratch) => TensorInfo[],
): TensorInfo[] {
  const entries = keptFor(s.backend);
  let byKey = entries.get(filter.dataId);
  const hit = byKey?.get(key);
  if (hit !== undefined) return hit;
  const filters = withScratch(s.backend, (m) => make(m).map((f) => m.keep(f)));
  if (byKey === undefined) {
    byKey = new Map();
    entries.set(filter.dataId, byKey);
  }
  byKey.set(key, filters);
  return filters;
}
