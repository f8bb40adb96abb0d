// coordinator/train/run-setup.ts openRun on a resume: what it continues from, and the one notice a
// checkpoint of the textbook Adam form gets in the log.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { logAdamFormChange, openRun } from '../../../coordinator/train/run-setup.ts';
import type { TrainOptions } from '../../../coordinator/train/train.ts';
import { modelConfigOf, resolveConfig } from '../../../protocol/config.ts';
import { initialParams, parameterTable, sizeOf } from '../../../protocol/model/architecture.ts';
import { saveCheckpoint } from '../../../protocol/run/checkpoint.ts';
import { createRunDir, writeRunConfig } from '../../../protocol/run/run-dir.ts';
import { asTextbookCheckpoint } from '../../support/matlab-adam.ts';

let cwd: string;
beforeEach(() => {
  cwd = mkdtempSync(join(tmpdir(), 'gan-dist-run-setup-'));
});
afterEach(() => rmSync(cwd, { recursive: true, force: true }));

const config = resolveConfig({ preset: 'tiny', flags: { seed: 3 } });

/** A run directory as `gan-dist train` leaves it: config.json and one checkpoint at iteration 40. */
async function savedRun(): Promise<{ runPath: string; checkpoint: string }> {
  const run = createRunDir({ cwd, runDir: 'run' });
  writeRunConfig(run, { ...config, data: 'synthetic' });
  const specs = parameterTable(modelConfigOf(config));
  const zeros = Object.fromEntries(
    specs.filter((s) => s.role === 'learnable').map((s) => [s.name, new Float32Array(sizeOf(s.shape))]),
  );
  const saved = await saveCheckpoint(run.path, {
    iteration: 40,
    epoch: 1,
    runId: 'run-setup-test',
    config,
    params: initialParams(specs, 3),
    adamM: zeros,
    adamV: zeros,
    zValidation: new Float32Array(25 * config.latent),
    rng: {},
    data: {},
    specs: specs.map(({ name, shape, role }) => ({ name, shape, role })),
  });
  return { runPath: run.path, checkpoint: saved.path };
}

/** openRun on a resume, then the notice, into a logger that keeps its lines; returns the Adam events. */
async function resumeAndLog(runPath: string) {
  const opened = await openRun({ config, resume: runPath } as TrainOptions, cwd);
  const lines: string[] = [];
  const log = pino({ base: undefined }, { write: (l: string) => void lines.push(l) });
  const printed: string[] = [];
  logAdamFormChange(opened, log, (l) => printed.push(l));
  const events = lines
    .map((l) => JSON.parse(l) as { event?: string; level: number; msg: string; [k: string]: unknown })
    .filter((e) => e.event === 'adam-form-changed');
  return { opened, events, printed };
}

describe('openRun resuming', () => {
  it('resumes a checkpoint of the textbook Adam form and says so once in the log', async () => {
    const { runPath, checkpoint } = await savedRun();
    asTextbookCheckpoint(checkpoint);
    const { opened, events, printed } = await resumeAndLog(runPath);
    expect(opened.resume?.iteration).toBe(40);
    expect(opened.adamFormChanged).toEqual({ from: 'textbook', to: 'matlab', iteration: 40, checkpoint });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      from: 'textbook',
      to: 'matlab',
      iteration: 40,
      checkpoint,
      level: 40,
      msg: 'event',
    });
    expect(printed).toEqual([expect.stringContaining("iterations after 40 use MATLAB's adamupdate")]);
  });

  it('says nothing about Adam when the checkpoint was written with the MATLAB form', async () => {
    const { runPath } = await savedRun();
    const { opened, events, printed } = await resumeAndLog(runPath);
    expect(opened.resume?.iteration).toBe(40);
    expect(opened.adamFormChanged).toBeUndefined();
    expect(events).toEqual([]);
    expect(printed).toEqual([]);
  });
});
