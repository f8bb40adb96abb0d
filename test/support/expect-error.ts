// Assertions on the project's errors.

import { expect } from 'vitest';
import { GanDistError } from '../../protocol/errors.ts';

/** Expects `run` to throw a protocol GanDistError whose message matches `reason`. */
export function expectProtocolError(run: () => unknown, reason: RegExp): void {
  let thrown: unknown;
  try {
    run();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected a throw matching ${reason}`).toBeInstanceOf(GanDistError);
  expect((thrown as GanDistError).code).toBe('GAN_DIST_E_PROTOCOL');
  expect((thrown as GanDistError).message).toMatch(reason);
}
