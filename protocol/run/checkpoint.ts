// Checkpoints: everything a resumed run needs to continue the same run, written so that a crash
// at any moment leaves either the old checkpoint or the new one, and read back only if intact.
//
// Format (version 1). One directory per checkpoint, `<run dir>/checkpoints/iter-000500/`
// (the iteration zero-padded to 6 digits, more when it needs them), holding:
//
//   manifest.json    UTF-8 JSON:
//     format          "gan-dist-checkpoint"
//     manifestSha256  SHA-256 (hex) of this file's bytes with this value replaced by 64 zeros
//     version         1
//     adam            "matlab": the Adam form that stepped the weights and moments, MATLAB's
//                     adamupdate; absent in checkpoints written before it was recorded, which
//                     were stepped with the textbook form (a resume continues with "matlab" and
//                     logs `adam-form-changed` once)
//     iteration       iterations completed (the next one to run is iteration + 1)
//     epoch           the epoch the next iteration belongs to
//     runId           the run's id, so a resume can tell it continues the same run
//     createdAt       ISO 8601 time of writing
//     config          the resolved TrainConfig
//     parameters      the parameter table: [{ name, shape, role }] in table order (G's, then D's)
//     data            the data iterator's state (the epoch's order and position; opaque here)
//     rng             every RNG's state (opaque here)
//     files           { "<file>": { bytes, sha256 } } for each binary file below
//   weights.f32       every parameter (learnables and BatchNorm running statistics), concatenated
//                     in table order, each flattened row-major, little-endian float32
//   adam-m.f32        Adam's first moments, learnables only, table order, same encoding
//   adam-v.f32        Adam's second moments, likewise
//   zvalidation.f32   the run's fixed validation latents, numValidationImages x latent
//
// Writing: into `checkpoints/.tmp-iter-000500-<pid>/`, each file fsynced, the manifest last;
// then the directory is renamed into place and `checkpoints/` fsynced, so `iter-*` directories
// are always complete. Leftover `.tmp-*` directories (a crash mid-write) are removed at the next
// save, and only the newest K checkpoints are kept (default 3).
// Reading verifies every file's size and SHA-256 and the manifest's own checksum; a damaged
// checkpoint is an error naming the file and the fault, and loadLatestCheckpoint falls back to
// the previous one with a warning: garbage is never loaded.

import { readdirSync } from 'node:fs';
import { endianness } from 'node:os';
import { dirname, join } from 'node:path';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import type { TrainConfig } from '../config.ts';
import { GanDistError } from '../errors.ts';
import { sizeOf, type NamedArrays } from '../model/architecture.ts';
import { bytesOf, inTableOrder, readVerified, split, syncDir, writeChunks } from './checkpoint-files.ts';
import {
  ADAM_FORM,
  type AdamForm,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  checkpointError,
  MANIFEST,
  readManifest,
  sealManifest,
  type CheckpointSpec,
  type FileEntry,
} from './checkpoint-manifest.ts';

export const CHECKPOINTS_DIR = 'checkpoints';
export const DEFAULT_KEEP = 3;

export interface CheckpointState {
  /** Iterations completed. */
  iteration: number;
  epoch: number;
  runId: string;
  config: TrainConfig;
  /** Every parameter of the table, learnables and BatchNorm running statistics. */
  params: NamedArrays;
  /** Adam's moments, learnables only. */
  adamM: NamedArrays;
  adamV: NamedArrays;
  zValidation: Float32Array;
  /** Every RNG's state, stored as given. */
  rng: unknown;
  /** The data iterator's state, stored as given. */
  data: unknown;
  specs: CheckpointSpec[];
}

export interface LoadedCheckpoint extends CheckpointState {
  /** The checkpoint's directory. */
  path: string;
  createdAt: string;
  /** The Adam form that stepped it: 'textbook' for a checkpoint older than the `adam` field. */
  adamForm: AdamForm;
}

export { ADAM_FORM, type AdamForm };

export const checkpointName = (iteration: number): string => `iter-${String(iteration).padStart(6, '0')}`;
const CHECKPOINT_RE = /^iter-(\d+)$/;

/** The checkpoints of a run directory, oldest first; [] when it has none (or no checkpoints/). */
export function listCheckpoints(runDir: string): { iteration: number; path: string }[] {
  const dir = join(runDir, CHECKPOINTS_DIR);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
  return names
    .map((name) => ({ name, m: CHECKPOINT_RE.exec(name) }))
    .filter((e): e is { name: string; m: RegExpExecArray } => e.m !== null)
    .map((e) => ({ iteration: Number(e.m[1]), path: join(dir, e.name) }))
    .sort((a, b) => a.iteration - b.iteration);
}

export interface SaveOptions {
  /** How many checkpoints to keep, newest first; older ones are removed. Default 3. */
  keep?: number;
}

export interface SaveResult {
  path: string;
  bytes: number;
  /** Checkpoints removed because they were beyond `keep`. */
  removed: string[];
}

/** Writes `state` as `<runDir>/checkpoints/iter-NNNNNN/`, atomically, and prunes to the newest `keep`. */
export async function saveCheckpoint(
  runDir: string,
  state: CheckpointState,
  opts: SaveOptions = {},
): Promise<SaveResult> {
  const keep = opts.keep ?? DEFAULT_KEEP;
  if (!Number.isInteger(keep) || keep < 1) throw new RangeError('options.keep must be an integer >= 1');
  // The .f32 files are the host's bytes: say so loudly on the rare big-endian machine.
  if (endianness() !== 'LE')
    throw checkpointError('checkpoints are little-endian float32 and this machine is big-endian');
  const dir = join(runDir, CHECKPOINTS_DIR);
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) {
    if (name.startsWith('.tmp-')) await rm(join(dir, name), { recursive: true, force: true });
  }

  const name = checkpointName(state.iteration);
  const tmp = join(dir, `.tmp-${name}-${process.pid}`);
  await mkdir(tmp);
  const learnables = state.specs.filter((s) => s.role === 'learnable');
  const files: Record<string, FileEntry> = {
    'weights.f32': await writeChunks(join(tmp, 'weights.f32'), inTableOrder(state.params, state.specs, 'params')),
    'adam-m.f32': await writeChunks(join(tmp, 'adam-m.f32'), inTableOrder(state.adamM, learnables, 'adamM')),
    'adam-v.f32': await writeChunks(join(tmp, 'adam-v.f32'), inTableOrder(state.adamV, learnables, 'adamV')),
    'zvalidation.f32': await writeChunks(join(tmp, 'zvalidation.f32'), [bytesOf(state.zValidation)]),
  };
  const manifest = sealManifest({
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    adam: ADAM_FORM,
    iteration: state.iteration,
    epoch: state.epoch,
    runId: state.runId,
    createdAt: new Date().toISOString(),
    config: state.config,
    parameters: state.specs.map((s) => ({ name: s.name, shape: [...s.shape], role: s.role })),
    data: state.data,
    rng: state.rng,
    files,
  });
  await writeChunks(join(tmp, MANIFEST), [Buffer.from(manifest, 'utf8')]);
  await syncDir(tmp);

  const final = join(dir, name);
  // The same iteration saved twice (a resume that saves before stepping): the new one replaces it.
  const old = join(dir, `.tmp-replaced-${name}-${process.pid}`);
  const replacing = await stat(final).then(
    () => true,
    () => false,
  );
  if (replacing) await rename(final, old);
  await rename(tmp, final);
  await syncDir(dir);
  if (replacing) await rm(old, { recursive: true, force: true });

  const removed: string[] = [];
  const all = listCheckpoints(runDir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) {
    await rm(c.path, { recursive: true, force: true });
    removed.push(c.path);
  }
  const bytes = Object.values(files).reduce((n, f) => n + f.bytes, 0) + Buffer.byteLength(manifest);
  return { path: final, bytes, removed };
}

export interface LoadOptions {
  /** The table the caller's model has: a checkpoint of another model is refused, naming the difference. */
  expectSpecs?: { name: string; shape: number[]; role: string }[];
}

/** Throws GAN_DIST_E_CHECKPOINT naming the first parameter where a checkpoint's table differs from the model's. */
export function assertSameTable(
  where: string,
  got: CheckpointSpec[],
  want: { name: string; shape: number[]; role: string }[],
): void {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const g = got[i];
    const w = want[i];
    const desc = (s?: { name: string; shape: number[]; role: string }) =>
      s ? `${s.name} [${s.shape}] ${s.role}` : 'nothing';
    if (!g || !w || g.name !== w.name || g.role !== w.role || g.shape.join() !== w.shape.join()) {
      throw checkpointError(
        `checkpoint ${where} is of another model: parameter ${i} is ${desc(g)}, this model has ${desc(w)}`,
        'use the same --image-size, --filters and --latent as the run that wrote it',
      );
    }
  }
}

/** Loads and verifies one checkpoint: its directory, or any file inside it. */
export async function loadCheckpoint(path: string, opts: LoadOptions = {}): Promise<LoadedCheckpoint> {
  let dir = path;
  try {
    if ((await stat(path)).isFile()) dir = dirname(path);
  } catch {
    throw checkpointError(`no checkpoint at ${path}`);
  }
  const m = await readManifest(dir);
  if (opts.expectSpecs) assertSameTable(dir, m.parameters, opts.expectSpecs);

  const learnables = m.parameters.filter((s) => s.role === 'learnable');
  const floats = (specs: CheckpointSpec[]) => 4 * specs.reduce((n, s) => n + sizeOf(s.shape), 0);
  const weights = await readVerified(dir, 'weights.f32', m.files['weights.f32'], floats(m.parameters));
  const adamM = await readVerified(dir, 'adam-m.f32', m.files['adam-m.f32'], floats(learnables));
  const adamV = await readVerified(dir, 'adam-v.f32', m.files['adam-v.f32'], floats(learnables));
  const zValidation = await readVerified(dir, 'zvalidation.f32', m.files['zvalidation.f32'], undefined);
  return {
    path: dir,
    createdAt: m.createdAt,
    adamForm: m.adam ?? 'textbook',
    iteration: m.iteration,
    epoch: m.epoch,
    runId: m.runId,
    config: m.config,
    params: split(weights, m.parameters),
    adamM: split(adamM, learnables),
    adamV: split(adamV, learnables),
    zValidation,
    rng: m.rng,
    data: m.data,
    specs: m.parameters,
  };
}

export interface LoadLatestOptions extends LoadOptions {
  /** Told about each damaged checkpoint skipped on the way to an intact one. */
  onWarning?: (message: string) => void;
}

/** The newest intact checkpoint of a run directory; damaged newer ones are skipped with a warning. */
export async function loadLatestCheckpoint(runDir: string, opts: LoadLatestOptions = {}): Promise<LoadedCheckpoint> {
  const all = listCheckpoints(runDir);
  if (all.length === 0) {
    throw checkpointError(
      `no checkpoint in ${runDir} (${join(runDir, CHECKPOINTS_DIR)} is empty or missing)`,
      'give a run directory that has saved at least one checkpoint',
    );
  }
  const problems: string[] = [];
  for (const c of [...all].reverse()) {
    try {
      const loaded = await loadCheckpoint(c.path, opts);
      return loaded;
    } catch (err) {
      if (!(err instanceof GanDistError) || err.code !== 'GAN_DIST_E_CHECKPOINT') throw err;
      problems.push(err.message);
      const older = all.filter((o) => o.iteration < c.iteration).length > 0;
      opts.onWarning?.(
        `${err.message}; ${older ? 'falling back to the previous checkpoint' : 'no older checkpoint to fall back to'}`,
      );
    }
  }
  throw checkpointError(
    `no intact checkpoint in ${runDir}:\n  ${problems.join('\n  ')}`,
    'the run cannot be resumed from these; start a new run',
  );
}
