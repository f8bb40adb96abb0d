// Assertions on the project's errors.

import { expect } from 'vitest';
import { type ErrorCode, GanDistError } from '../../protocol/errors.ts';

/** Expects `run` to throw a GanDistError with `code` whose message matches `reason`; returns it. */
export function expectGanDistError(run: () => unknown, code: ErrorCode, reason: RegExp): GanDistError {
  let thrown: unknown;
  try {
    run();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected a throw matching ${reason}`).toBeInstanceOf(GanDistError);
  expect((thrown as GanDistError).code).toBe(code);
  expect((thrown as GanDistError).message).toMatch(reason);
  return thrown as GanDistError;
}

/** Expects `run` to throw a protocol GanDistError whose message matches `reason`. */
export function expectProtocolError(run: () => unknown, reason: RegExp): void {
  expectGanDistError(run, 'GAN_DIST_E_PROTOCOL', reason);
}
