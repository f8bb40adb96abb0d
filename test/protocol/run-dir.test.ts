import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GanDistError } from '../../protocol/errors.ts';
import {
  createRunDir,
  openRunDirForResume,
  resolveRunDir,
  runTimestamp,
  writeEndpoint,
  writeRunConfig,
} from '../../protocol/run/run-dir.ts';

let cwd: string;
beforeEach(() => {
  cwd = realpathSync(mkdtempSync(join(tmpdir(), 'gan-dist-rundir-')));
});
afterEach(() => rmSync(cwd, { recursive: true, force: true }));

const now = new Date(2025, 4, 1, 14, 3, 7);

function thrown(fn: () => unknown): GanDistError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GanDistError);
    return err as GanDistError;
  }
  throw new Error('expected an error');
}

/** What a saved checkpoint looks like from outside: an iter-* directory with a manifest. */
function fakeCheckpoint(runPath: string, iteration: number): string {
  const dir = join(runPath, 'checkpoints', `iter-${String(iteration).padStart(6, '0')}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), '{}');
  writeFileSync(join(dir, 'weights.f32'), '');
  return dir;
}

describe('run directories', () => {
  it('creates runs/<timestamp> with samples/ and checkpoints/, and points runs/latest at it', () => {
    const run = createRunDir({ cwd, now });
    expect(run.path).toBe(join(cwd, 'runs', '2025-05-01T14-03-07'));
    expect(statSync(run.samplesDir).isDirectory()).toBe(true);
    expect(statSync(run.checkpointsDir).isDirectory()).toBe(true);
    expect(run).toMatchObject({
      configPath: join(run.path, 'config.json'),
      logPath: join(run.path, 'train.log'),
      tokenPath: join(run.path, 'token'),
      endpointPath: join(run.path, 'endpoint'),
    });
    expect(readlinkSync(join(cwd, 'runs', 'latest'))).toBe('2025-05-01T14-03-07');
  });

  it('gives a second run started in the same second its own folder and moves runs/latest to it', () => {
    createRunDir({ cwd, now });
    const second = createRunDir({ cwd, now });
    expect(second.path).toBe(join(cwd, 'runs', '2025-05-01T14-03-07-2'));
    expect(realpathSync(join(cwd, 'runs', 'latest'))).toBe(second.path);
  });

  it('refuses a --run-dir that already holds a checkpoint, naming it and the fix', () => {
    const first = createRunDir({ cwd, runDir: 'exp1' });
    fakeCheckpoint(first.path, 500);
    const err = thrown(() => createRunDir({ cwd, runDir: 'exp1' }));
    expect(err.code).toBe('GAN_DIST_E_RUN_DIR');
    expect(err.message).toContain(first.path);
    expect(err.message).toContain('checkpoints/iter-000500');
    expect(err.hint).toContain('--resume exp1');
    expect(err.hint).toContain('another --run-dir');
  });

  it('reuses a --run-dir that exists but holds no checkpoint', () => {
    mkdirSync(join(cwd, 'exp2'));
    writeFileSync(join(cwd, 'exp2', 'notes.txt'), 'hi');
    const run = createRunDir({ cwd, runDir: 'exp2' });
    expect(run.path).toBe(join(cwd, 'exp2'));
    expect(existsSync(run.checkpointsDir)).toBe(true);
    expect(existsSync(join(cwd, 'runs', 'latest'))).toBe(false); // not under runs/: latest untouched
  });

  it('moves runs/latest to an explicit --run-dir under runs/', () => {
    createRunDir({ cwd, now });
    const run = createRunDir({ cwd, runDir: 'runs/named' });
    expect(readlinkSync(join(cwd, 'runs', 'latest'))).toBe('named');
    expect(resolveRunDir('runs/latest', cwd).path).toBe(run.path);
  });

  it('opens a run for --resume only when it holds a checkpoint', () => {
    const run = createRunDir({ cwd, runDir: 'exp3' });
    const err = thrown(() => openRunDirForResume('exp3', cwd));
    expect(err.code).toBe('GAN_DIST_E_RUN_DIR');
    expect(err.message).toContain('holds no checkpoint');
    expect(err.hint).toContain('--run-dir exp3');
    fakeCheckpoint(run.path, 100);
    expect(openRunDirForResume('exp3', cwd).path).toBe(run.path);
  });

  it('resolves a run directory, runs/latest, and a checkpoint directory or file', () => {
    const run = createRunDir({ cwd, now });
    const ckpt = fakeCheckpoint(run.path, 200);
    expect(resolveRunDir(run.path, cwd)).toEqual(run);
    expect(resolveRunDir('runs/latest', cwd).path).toBe(run.path);
    expect(resolveRunDir(ckpt, cwd)).toEqual({ ...run, checkpoint: ckpt });
    expect(resolveRunDir(join(ckpt, 'weights.f32'), cwd)).toEqual({ ...run, checkpoint: ckpt });
    expect(resolveRunDir('runs/latest/checkpoints/iter-000200/manifest.json', cwd).checkpoint).toBe(ckpt);
    expect(resolveRunDir(run.checkpointsDir, cwd)).toEqual(run);
  });

  it('says what is wrong with an argument that names no run', () => {
    expect(thrown(() => resolveRunDir('nowhere', cwd)).message).toContain(
      'nowhere: no such run directory or checkpoint',
    );
    mkdirSync(join(cwd, 'photos'));
    expect(thrown(() => resolveRunDir('photos', cwd)).message).toContain('not a run directory');
  });

  it('writes config.json and endpoint', () => {
    const run = createRunDir({ cwd, now });
    writeRunConfig(run, { batchSize: 16 });
    writeEndpoint(run, 'wss://127.0.0.1:40123');
    expect(JSON.parse(readFileSync(run.configPath, 'utf8'))).toEqual({ batchSize: 16 });
    expect(readFileSync(run.endpointPath, 'utf8')).toBe('wss://127.0.0.1:40123\n');
  });

  it('formats timestamps sortably', () => {
    expect(runTimestamp(new Date(2024, 11, 9, 3, 4, 5))).toBe('2024-12-09T03-04-05');
  });
});
