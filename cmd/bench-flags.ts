// Parsers of the bench commands' list flags: each names its flag in the error it throws.

import { GanDistError } from '../protocol/errors.ts';

export function intList(flag: string) {
  return (raw: string) => {
    const xs = raw.split(',').map(Number);
    if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) {
      throw new GanDistError(
        'GAN_DIST_E_CONFIG',
        `${flag}: "${raw}" is not a comma-separated list of positive integers`,
      );
    }
    return xs;
  };
}

export function transportList(raw: string): ('socket' | 'shm')[] {
  const xs = raw.split(',').map((s) => s.trim());
  if (xs.length === 0 || xs.some((x) => x !== 'socket' && x !== 'shm')) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--transport: "${raw}" is not a comma-separated list of socket and shm`,
    );
  }
  return xs as ('socket' | 'shm')[];
}
