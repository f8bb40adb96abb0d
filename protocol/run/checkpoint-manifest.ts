// A checkpoint's manifest.json: its shape, sealed with its own SHA-256 when written, and read back
// only when that checksum and every field hold. The format is documented at the top of checkpoint.ts.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TrainConfig } from '../config.ts';
import { GanDistError } from '../errors.ts';

export const CHECKPOINT_FORMAT = 'gan-dist-checkpoint';
export const CHECKPOINT_VERSION = 1;
export const MANIFEST = 'manifest.json';

/**
 * The Adam form whose steps made a checkpoint's weights and moments, recorded as the manifest's
 * `adam`: 'matlab' is MATLAB's adamupdate (coordinator/optimizer/adam.ts: the bias correction in
 * the learning rate, eps added to the uncorrected sqrt(v)). Checkpoints written before gan-dist
 * recorded it have no `adam` and were stepped with the textbook form (w -= lr mhat / (sqrt(vhat)
 * + eps)); their moments are the same quantities, so they resume with the MATLAB form.
 */
export const ADAM_FORM = 'matlab';
export type AdamForm = typeof ADAM_FORM | 'textbook';
const ZERO_SUM = '0'.repeat(64);

/** One row of the parameter table as a checkpoint records it. */
export interface CheckpointSpec {
  name: string;
  shape: number[];
  role: 'learnable' | 'state';
}

export interface FileEntry {
  bytes: number;
  sha256: string;
}

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  manifestSha256: string;
  version: number;
  /** Absent in checkpoints written before it was recorded (the textbook form). */
  adam?: typeof ADAM_FORM;
  iteration: number;
  epoch: number;
  runId: string;
  createdAt: string;
  config: TrainConfig;
  parameters: CheckpointSpec[];
  data: unknown;
  rng: unknown;
  files: Record<string, FileEntry>;
}

/** A GAN_DIST_E_CHECKPOINT error: what is wrong with which checkpoint, and what to do. */
export const checkpointError = (message: string, hint?: string) =>
  new GanDistError('GAN_DIST_E_CHECKPOINT', message, hint);

/** The manifest's text with its own checksum filled in (see the format in checkpoint.ts). */
export function sealManifest(m: Omit<CheckpointManifest, 'manifestSha256'>): string {
  const { format, ...rest } = m;
  const text = `${JSON.stringify({ format, manifestSha256: ZERO_SUM, ...rest }, null, 2)}\n`;
  return text.replace(ZERO_SUM, createHash('sha256').update(text).digest('hex'));
}

function checkManifest(m: unknown, where: string): CheckpointManifest {
  const bad = (what: string) =>
    checkpointError(`checkpoint ${where}: manifest.json ${what}`, 'the checkpoint is damaged; use an older one');
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw bad('is not a JSON object');
  const o = m as Record<string, unknown>;
  if (o.format !== CHECKPOINT_FORMAT)
    throw bad(`has format ${JSON.stringify(o.format)}, expected "${CHECKPOINT_FORMAT}"`);
  if (typeof o.version !== 'number' || o.version > CHECKPOINT_VERSION) {
    throw checkpointError(
      `checkpoint ${where}: format version ${String(o.version)} is newer than this gan-dist reads (${CHECKPOINT_VERSION})`,
      'upgrade gan-dist to read it',
    );
  }
  if (o.adam !== undefined && o.adam !== ADAM_FORM) {
    throw checkpointError(
      `checkpoint ${where}: Adam form ${JSON.stringify(o.adam)} is not one this gan-dist knows ("${ADAM_FORM}")`,
      'upgrade gan-dist to resume it',
    );
  }
  const isCount = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
  if (!isCount(o.iteration)) throw bad('has no valid "iteration"');
  if (!isCount(o.epoch)) throw bad('has no valid "epoch"');
  if (typeof o.runId !== 'string') throw bad('has no "runId"');
  if (o.config === null || typeof o.config !== 'object') throw bad('has no "config" object');
  const params = o.parameters;
  if (
    !Array.isArray(params) ||
    !params.every(
      (p) =>
        p !== null &&
        typeof p === 'object' &&
        typeof p.name === 'string' &&
        Array.isArray(p.shape) &&
        p.shape.every(isCount) &&
        (p.role === 'learnable' || p.role === 'state'),
    )
  ) {
    throw bad('has no valid "parameters" table');
  }
  const files = o.files as Record<string, FileEntry> | undefined;
  for (const f of ['weights.f32', 'adam-m.f32', 'adam-v.f32', 'zvalidation.f32']) {
    const e = files?.[f];
    if (!e || !isCount(e.bytes) || typeof e.sha256 !== 'string') throw bad(`has no valid entry for ${f}`);
  }
  return o as unknown as CheckpointManifest;
}

/** Reads `<dir>/manifest.json`, checking its own checksum, then its fields. */
export async function readManifest(dir: string): Promise<CheckpointManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch {
    throw checkpointError(
      `checkpoint ${dir}: manifest.json is missing`,
      'the checkpoint is incomplete; use an older one',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw checkpointError(
      `checkpoint ${dir}: manifest.json is not valid JSON (${(err as Error).message})`,
      'the checkpoint is damaged; use an older one',
    );
  }
  const sealed = (parsed as { manifestSha256?: unknown } | null)?.manifestSha256;
  if (typeof sealed !== 'string' || !/^[0-9a-f]{64}$/.test(sealed))
    throw checkpointError(`checkpoint ${dir}: manifest.json has no valid manifestSha256`);
  const sum = createHash('sha256').update(text.replace(sealed, ZERO_SUM)).digest('hex');
  if (sum !== sealed)
    throw checkpointError(`checkpoint ${dir}: manifest.json is corrupt (sha256 ${sum}, it says ${sealed})`);
  return checkManifest(parsed, dir);
}
