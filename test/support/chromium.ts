// Whether this machine has the browser the dashboard's tests drive (scripts/chromium.ts finds
// and starts it). Where it is absent the tests skip, saying why; under CI, or with
// GAN_DIST_REQUIRE_CHROMIUM=1, they fail instead, so a broken install cannot turn CI green (as
// test/support/webgpu.ts does for WebGPU).

import { describe, it } from 'vitest';
import { CHROMIUM_CANDIDATES, CHROMIUM_FIX, chromiumPath } from '../../scripts/chromium.ts';

export { launchChromium } from '../../scripts/chromium.ts';

/** CI sets CI=true; .ci/run also sets GAN_DIST_REQUIRE_CHROMIUM=1. */
export const chromiumRequired = process.env.CI === 'true' || process.env.GAN_DIST_REQUIRE_CHROMIUM === '1';

/**
 * `describe` for a suite that needs Chromium: runs it where the executable exists, skips it with
 * the reason in its name where it does not, and where one is required registers a failing test.
 */
export function describeChromium(name: string, body: () => void): void {
  const looked = `GAN_DIST_CHROMIUM, ${CHROMIUM_CANDIDATES.join(', ')}`;
  if (chromiumPath()) describe(name, body);
  else if (chromiumRequired)
    describe(name, () => {
      it('has Chromium (required: CI or GAN_DIST_REQUIRE_CHROMIUM=1)', () => {
        throw new Error(`no Chromium executable (looked at ${looked}): ${CHROMIUM_FIX}`);
      });
    });
  else describe.skip(`${name} (skipped: no Chromium at ${looked}; ${CHROMIUM_FIX})`, body);
}
