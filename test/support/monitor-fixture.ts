// The recorded run of test/fixtures/monitor-run, folded into the monitor's view.

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseLogLine } from '../../coordinator/monitor/log-reader.ts';
import { applyLine, createRunView, type RunView } from '../../coordinator/monitor/view-model.ts';

export const fixtureRun = resolve(import.meta.dirname, '..', 'fixtures', 'monitor-run');
export const fixtureSample = join(fixtureRun, 'samples', 'iter-000030.png');

export function fixtureLines(): string[] {
  return readFileSync(join(fixtureRun, 'train.log'), 'utf8').trim().split('\n');
}

export function fixtureView(count = Infinity): RunView {
  const view = createRunView();
  for (const line of fixtureLines().slice(0, count)) applyLine(view, parseLogLine(line));
  return view;
}

/** The tile colours the fixture's sample PNG was made with (see its README). */
export function tileColour(k: number): [number, number, number] {
  if (k === 0) return [255, 0, 0];
  if (k === 1) return [0, 255, 0];
  if (k === 2) return [0, 0, 255];
  if (k === 24) return [255, 255, 255];
  return [k * 10, 255 - k * 10, (k * 37) % 256];
}
