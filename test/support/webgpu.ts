// Whether this process runs the tests that need a WebGPU adapter. Where none exists (a laptop
// without Vulkan) they skip, saying why; under CI, or with GAN_DIST_REQUIRE_WEBGPU=1, a missing
// adapter fails them instead, so a broken Vulkan install cannot turn CI green.

import { beforeEach, describe, it } from 'vitest';
import { describeAdapter, findAdapter, NO_ADAPTER_FIX, type AdapterDescription } from '../../worker/webgpu.ts';

/** CI sets CI=true; .ci/run also sets GAN_DIST_REQUIRE_WEBGPU=1. */
export const webgpuRequired = process.env.CI === 'true' || process.env.GAN_DIST_REQUIRE_WEBGPU === '1';

export interface WebgpuGate {
  /** The adapter Dawn picks; undefined when there is none. */
  adapter?: AdapterDescription;
  /** Why there is no adapter. */
  reason?: string;
}

let probed: Promise<WebgpuGate> | undefined;

/** Looks for an adapter once per process (webgpuUnavailable()'s reason, or Dawn's "no adapter"). */
export function webgpuGate(): Promise<WebgpuGate> {
  probed ??= findAdapter().then(({ adapter, reason }) =>
    adapter ? { adapter: describeAdapter(adapter) } : { reason: reason ?? 'no WebGPU adapter' },
  );
  return probed;
}

const missing = (gate: WebgpuGate) =>
  new Error(`no WebGPU adapter (required: CI or GAN_DIST_REQUIRE_WEBGPU=1): ${gate.reason}; ${NO_ADAPTER_FIX}`);

/**
 * `describe` for a suite that needs WebGPU: runs it where an adapter exists, skips it with the
 * reason in its name where none does, and where one is required registers a failing test in its
 * place. Await it at the top level of the test file (the probe is asynchronous).
 */
export async function describeWebgpu(name: string, body: () => void): Promise<void> {
  const gate = await webgpuGate();
  if (gate.adapter) {
    describe(name, body);
  } else if (webgpuRequired) {
    describe(name, () => {
      it('has a WebGPU adapter (required: CI or GAN_DIST_REQUIRE_WEBGPU=1)', () => {
        throw missing(gate);
      });
    });
  } else {
    describe.skip(`${name} (skipped: ${gate.reason})`, body);
  }
}

/**
 * For a file that runs on webgpu only when asked (TEST_BACKEND=webgpu): without an adapter, a
 * beforeEach in the calling scope skips each test with the reason, or fails it where one is
 * required. Returns whether an adapter exists, so that the file's beforeAll can skip loading it.
 */
export async function gateEachTestOnWebgpu(): Promise<boolean> {
  const gate = await webgpuGate();
  if (gate.adapter) return true;
  beforeEach((ctx) => {
    if (webgpuRequired) throw missing(gate);
    ctx.skip(gate.reason);
  });
  return false;
}
