// coordinator/train/credentials.ts: the three role files of a new run, what a resume reads back,
// and an older run directory's one token kept with a warning.

import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { credentialLines, secureRun } from '../../../coordinator/train/credentials.ts';
import type { TrainOptions } from '../../../coordinator/train/train.ts';
import { createRunDir } from '../../../protocol/run/run-dir.ts';
import {
  monitorTokenOf,
  newToken,
  readTokenFile,
  writeTokenFile,
  type RoleTokens,
} from '../../../protocol/wire/auth.ts';

let cwd: string;
beforeEach(() => {
  cwd = mkdtempSync(join(tmpdir(), 'gan-dist-credentials-'));
});
afterEach(() => rmSync(cwd, { recursive: true, force: true }));

const opts = (over: Partial<TrainOptions> = {}) => over as TrainOptions;

describe('run credentials', () => {
  it('writes worker.token, monitor.token and control.token, each 0600 and naming its role, and no token', async () => {
    const run = createRunDir({ cwd, runDir: 'run' });
    const c = await secureRun(opts(), run, false, false);
    for (const role of ['worker', 'monitor', 'control'] as const) {
      const path = join(run.path, `${role}.token`);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(await readTokenFile(path)).toMatchObject({ role, token: (c.tokens as RoleTokens)[role] });
    }
    expect(() => statSync(run.tokenPath)).toThrow();
    expect(c.legacyWarning).toBeUndefined();
    const lines = credentialLines(c, 'ws://127.0.0.1:7070');
    expect(lines[0]).toMatch(/--token-file .*worker\.token \(copy that file, and only it, to worker machines\)/);
    expect(lines[1]).toMatch(
      /monitor\.token \(watch only\), or .*control\.token \(watch and Stop; keep it on this machine\)/,
    );
  });

  it('takes a given token as the worker secret, and a resume reads the three back', async () => {
    const run = createRunDir({ cwd, runDir: 'run' });
    const given = join(cwd, 'given');
    const secret = newToken();
    await writeTokenFile(given, { token: secret });
    const first = await secureRun(opts({ tokenFile: given }), run, false, false);
    expect(first.workerToken).toBe(secret);
    const again = await secureRun(opts(), run, true, false);
    expect(again.tokens).toEqual(first.tokens);
    const t = again.tokens as { monitor: string; control: string };
    expect(t.monitor).toBe(monitorTokenOf(t.control));
  });

  it('resumes an older run directory with its one token, for every role, with a warning', async () => {
    const run = createRunDir({ cwd, runDir: 'run' });
    const old = newToken();
    await writeTokenFile(run.tokenPath, { token: old });
    const c = await secureRun(opts(), run, true, false);
    expect(c.tokens).toBe(old);
    expect(c.workerToken).toBe(old);
    expect(c.files).toEqual({ worker: run.tokenPath, monitor: run.tokenPath, control: run.tokenPath });
    expect(c.legacyWarning).toMatch(/one token: whoever holds it may join, watch and Stop.*remove it and resume/);
    expect(credentialLines(c, 'ws://h:1')).toEqual([
      `workers join ws://h:1 with --token-file ${run.tokenPath}`,
      `warning: ${c.legacyWarning}`,
    ]);
    expect(() => statSync(join(run.path, 'worker.token'))).toThrow();
  });
});
