// The run directory: one folder per run holding its config, log, samples, checkpoints, token and
// endpoint (DESIGN.md, "Run directory"), and how a command-line argument names one.
//
//   <run dir>/config.json            the resolved TrainConfig
//   <run dir>/train.log              pino JSON lines
//   <run dir>/samples/iter-000100.png
//   <run dir>/checkpoints/iter-000500/   (format: protocol/run/checkpoint.ts)
//   <run dir>/worker.token           mode 0600, for worker machines (protocol/wire/auth.ts)
//   <run dir>/monitor.token          mode 0600, watch only
//   <run dir>/control.token          mode 0600, watch and Stop
//   <run dir>/token                  an older run's one token for every role (still read)
//   <run dir>/endpoint               the address actually bound
//   <run dir>/web.url                mode 0600, the dashboard's one-time login link (train --web)
//
// The default is `runs/<local timestamp>` under the working directory; `runs/latest` is a
// symlink to the newest run created under `runs/`.

import { existsSync, mkdirSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CHECKPOINTS_DIR, checkpointName, listCheckpoints } from './checkpoint.ts';
import { GanDistError } from '../errors.ts';
import type { CredentialRole } from '../wire/auth.ts';

export const RUNS_DIR = 'runs';
export const LATEST_LINK = 'latest';

export interface RunDir {
  path: string;
  configPath: string;
  logPath: string;
  samplesDir: string;
  checkpointsDir: string;
  /** An older run's one token, which grants every role; new runs write the three below. */
  tokenPath: string;
  roleTokenPaths: Record<CredentialRole, string>;
  endpointPath: string;
}

/** The paths of the run directory at `path` (nothing is created). */
export function runDirLayout(path: string): RunDir {
  const p = resolve(path);
  return {
    path: p,
    configPath: join(p, 'config.json'),
    logPath: join(p, 'train.log'),
    samplesDir: join(p, 'samples'),
    checkpointsDir: join(p, CHECKPOINTS_DIR),
    tokenPath: join(p, 'token'),
    roleTokenPaths: {
      worker: join(p, 'worker.token'),
      monitor: join(p, 'monitor.token'),
      control: join(p, 'control.token'),
    },
    endpointPath: join(p, 'endpoint'),
  };
}

/** `2025-05-01T14-03-07`: sortable, and legal in file names everywhere. */
export function runTimestamp(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}T${p(now.getHours())}-${p(now.getMinutes())}-${p(now.getSeconds())}`;
}

/** Points `runs/latest` at `runPath` by renaming a fresh link over it, so readers never see it missing. */
function pointLatest(runsDir: string, runPath: string): void {
  const link = join(runsDir, LATEST_LINK);
  const tmp = join(runsDir, `.${LATEST_LINK}-${process.pid}`);
  try {
    rmSync(tmp, { force: true });
    symlinkSync(basename(runPath), tmp, 'dir');
    renameSync(tmp, link);
  } catch {
    // A convenience only: where symlinks are not allowed (Windows without developer mode) or
    // `latest` is a real directory, the run goes on without it.
    rmSync(tmp, { force: true });
  }
}

export interface CreateRunDirOptions {
  /** --run-dir; default runs/<timestamp> under cwd. */
  runDir?: string;
  cwd: string;
  now?: Date;
}

/**
 * Creates (or reuses, when it holds no checkpoint) the run directory of a new run, with its
 * samples/ and checkpoints/ folders. A directory that already holds a checkpoint is refused:
 * continuing it is `--resume`, and starting over in it would interleave two runs' files.
 */
export function createRunDir(opts: CreateRunDirOptions): RunDir {
  const runsDir = join(resolve(opts.cwd), RUNS_DIR);
  let path: string;
  if (opts.runDir !== undefined) {
    path = resolve(opts.cwd, opts.runDir);
    if (existsSync(path) && !statSync(path).isDirectory()) {
      throw new GanDistError(
        'GAN_DIST_E_RUN_DIR',
        `--run-dir ${opts.runDir}: ${path} exists and is not a directory`,
        'give --run-dir a directory',
      );
    }
    const existing = listCheckpoints(path);
    if (existing.length > 0) {
      const last = existing[existing.length - 1].iteration;
      throw new GanDistError(
        'GAN_DIST_E_RUN_DIR',
        `--run-dir ${opts.runDir}: ${path} already holds a checkpoint (${CHECKPOINTS_DIR}/${checkpointName(last)}); a new run would mix its files with that run's`,
        `continue that run with \`--resume ${opts.runDir}\`, or start a new one with another --run-dir`,
      );
    }
    mkdirSync(path, { recursive: true });
  } else {
    mkdirSync(runsDir, { recursive: true });
    const stamp = runTimestamp(opts.now ?? new Date());
    // Two runs started in the same second get -2, -3, ...; mkdir without recursive is the atomic claim.
    for (let i = 1; ; i++) {
      path = join(runsDir, i === 1 ? stamp : `${stamp}-${i}`);
      try {
        mkdirSync(path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  }
  const run = runDirLayout(path);
  mkdirSync(run.samplesDir, { recursive: true });
  mkdirSync(run.checkpointsDir, { recursive: true });
  if (dirname(run.path) === runsDir) pointLatest(runsDir, run.path);
  return run;
}

/** A run directory, plus the one checkpoint the argument named when it named one. */
export interface ResolvedRun extends RunDir {
  checkpoint?: string;
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();

/**
 * What a command-line argument names: a run directory, `runs/latest` (followed to the run it
 * points at), or a checkpoint (its directory or a file inside it).
 */
export function resolveRunDir(arg: string, cwd = process.cwd()): ResolvedRun {
  const given = resolve(cwd, arg);
  if (!existsSync(given)) {
    throw new GanDistError(
      'GAN_DIST_E_RUN_DIR',
      `${arg}: no such run directory or checkpoint`,
      'give a run directory (e.g. runs/latest) or a checkpoint directory (runs/<run>/checkpoints/iter-000500)',
    );
  }
  const real = realpathSync(given);
  const dir = statSync(real).isDirectory() ? real : dirname(real);
  // A checkpoint directory (or a file in one): its parent is checkpoints/, whose parent is the run.
  if (
    existsSync(join(dir, 'manifest.json')) ||
    (/^iter-\d+$/.test(basename(dir)) && basename(dirname(dir)) === CHECKPOINTS_DIR)
  ) {
    return { ...runDirLayout(dirname(dirname(dir))), checkpoint: dir };
  }
  if (basename(dir) === CHECKPOINTS_DIR) return runDirLayout(dirname(dir));
  if (!statSync(real).isDirectory()) {
    throw new GanDistError(
      'GAN_DIST_E_RUN_DIR',
      `${arg}: a file that is not part of a checkpoint`,
      'give a run directory or a checkpoint directory',
    );
  }
  if (!isDir(join(dir, CHECKPOINTS_DIR)) && !existsSync(join(dir, 'config.json'))) {
    throw new GanDistError(
      'GAN_DIST_E_RUN_DIR',
      `${arg}: not a run directory (it has neither config.json nor ${CHECKPOINTS_DIR}/)`,
      'give the folder a training run was started with (--run-dir), e.g. runs/latest',
    );
  }
  return runDirLayout(dir);
}

/** The run directory `--resume ARG` names; it must hold at least one checkpoint. */
export function openRunDirForResume(arg: string, cwd = process.cwd()): ResolvedRun {
  const run = resolveRunDir(arg, cwd);
  if (run.checkpoint === undefined && listCheckpoints(run.path).length === 0) {
    throw new GanDistError(
      'GAN_DIST_E_RUN_DIR',
      `--resume ${arg}: ${run.path} holds no checkpoint to resume from`,
      `start a new run in it with \`--run-dir ${arg}\` instead`,
    );
  }
  return run;
}

/** Writes a small file of the run directory atomically (temporary name, then rename). */
function writeAtomic(path: string, text: string, mode?: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

/** config.json: the resolved config, as nanoGPT stores it with every run. */
export function writeRunConfig(run: RunDir, config: unknown): void {
  writeAtomic(run.configPath, `${JSON.stringify(config, null, 2)}\n`);
}

/** endpoint: the address the coordinator actually bound (useful with port 0). */
export function writeEndpoint(run: RunDir, endpoint: string): void {
  writeAtomic(run.endpointPath, `${endpoint}\n`);
}
