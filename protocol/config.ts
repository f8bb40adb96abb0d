// The one typed training config: the seed's defaults, the presets, and strict validation.
// Precedence: defaults < preset < --config file.json < flags.

import { readFileSync } from 'node:fs';
import { GanDistError } from './errors.ts';

export interface TrainConfig {
  epochs: number;
  /** Total iterations of the run (a resume counts what is done); 0 = bounded by epochs only. */
  iterations: number;
  batchSize: number;
  lr: number;
  beta1: number;
  beta2: number;
  flipProb: number;
  validationFrequency: number;
  numValidationImages: number;
  latent: number;
  filters: number;
  imageSize: 32 | 64;
  seed: number;
}

/** MATLAB's names for the keys, for the README and error messages. */
export const matlabNames: Record<keyof TrainConfig, string> = {
  epochs: 'numEpochs',
  iterations: '(none: stops after this many iterations)',
  batchSize: 'miniBatchSize',
  lr: 'learnRate',
  beta1: 'gradientDecayFactor',
  beta2: 'squaredGradientDecayFactor',
  flipProb: 'flipProb',
  validationFrequency: 'validationFrequency',
  numValidationImages: 'numValidationImages',
  latent: 'numLatentInputs',
  filters: 'numFilters',
  imageSize: 'inputSize / imageSize (64 in the seed)',
  seed: 'rng seed',
};

export const defaults: Readonly<TrainConfig> = Object.freeze({
  epochs: 500,
  iterations: 0,
  batchSize: 128,
  lr: 2e-4,
  beta1: 0.5,
  beta2: 0.999,
  flipProb: 0.35,
  validationFrequency: 100,
  numValidationImages: 25,
  latent: 100,
  filters: 64,
  imageSize: 64,
  seed: 0,
});

export const presets = {
  tiny: { imageSize: 32, filters: 16, batchSize: 16 },
  quick: { imageSize: 64, filters: 16, batchSize: 32 },
} as const satisfies Record<string, Partial<TrainConfig>>;

export type PresetName = keyof typeof presets;

type Rule =
  | { kind: 'int'; min: number; max: number }
  | { kind: 'number'; min: number; max: number; minExclusive?: boolean; maxExclusive?: boolean }
  | { kind: 'enum'; values: readonly number[] };

const rules: Record<keyof TrainConfig, Rule> = {
  epochs: { kind: 'int', min: 1, max: 1e7 },
  iterations: { kind: 'int', min: 0, max: 1e9 },
  batchSize: { kind: 'int', min: 1, max: 65536 },
  lr: { kind: 'number', min: 0, max: 1, minExclusive: true },
  beta1: { kind: 'number', min: 0, max: 1, maxExclusive: true },
  beta2: { kind: 'number', min: 0, max: 1, maxExclusive: true },
  flipProb: { kind: 'number', min: 0, max: 1 },
  validationFrequency: { kind: 'int', min: 1, max: 1e9 },
  numValidationImages: { kind: 'int', min: 1, max: 1024 },
  latent: { kind: 'int', min: 1, max: 4096 },
  filters: { kind: 'int', min: 1, max: 1024 },
  imageSize: { kind: 'enum', values: [32, 64] },
  seed: { kind: 'int', min: 0, max: 2 ** 32 - 1 },
};

export const configKeys = Object.keys(defaults) as (keyof TrainConfig)[];

/** camelCase key -> the flag that sets it ("batchSize" -> "--batch-size"). */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function describeRule(rule: Rule): string {
  if (rule.kind === 'enum') return `one of ${rule.values.join(', ')}`;
  const lo = rule.kind === 'number' && rule.minExclusive ? `> ${rule.min}` : `>= ${rule.min}`;
  const hi = rule.kind === 'number' && rule.maxExclusive ? `< ${rule.max}` : `<= ${rule.max}`;
  return `${rule.kind === 'int' ? 'an integer' : 'a number'} ${lo} and ${hi}`;
}

/** Checks one value against its key's rule; `source` names where it came from for the message. */
export function validateValue(key: keyof TrainConfig, value: unknown, source: string): number {
  const rule = rules[key];
  const bad = () =>
    new GanDistError(
      'GAN_DIST_E_CONFIG',
      `${source}: ${JSON.stringify(value)} is not valid; it must be ${describeRule(rule)}`,
      `set ${flagName(key)} (config key "${key}") to ${describeRule(rule)}`,
    );
  if (typeof value !== 'number' || !Number.isFinite(value)) throw bad();
  if (rule.kind === 'enum') {
    if (!rule.values.includes(value)) throw bad();
    return value;
  }
  if (rule.kind === 'int' && !Number.isInteger(value)) throw bad();
  if (value < rule.min || (rule.kind === 'number' && rule.minExclusive && value === rule.min)) throw bad();
  if (value > rule.max || (rule.kind === 'number' && rule.maxExclusive && value === rule.max)) throw bad();
  return value;
}

function applyObject(target: TrainConfig, obj: Record<string, unknown>, sourceOf: (k: string) => string): void {
  for (const [key, value] of Object.entries(obj)) {
    if (value === undefined) continue;
    if (!(key in defaults)) {
      throw new GanDistError(
        'GAN_DIST_E_CONFIG',
        `${sourceOf(key)}: unknown key "${key}"`,
        `known keys: ${configKeys.join(', ')}`,
      );
    }
    const k = key as keyof TrainConfig;
    (target as unknown as Record<string, number>)[k] = validateValue(k, value, sourceOf(key));
  }
}

/** Parses a flag's string value as a number, naming the flag when it is not one. */
export function parseFlagNumber(key: keyof TrainConfig, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n)) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `${flagName(key)}: "${raw}" is not a number`,
      `give ${flagName(key)} ${describeRule(rules[key])}`,
    );
  }
  return n;
}

export interface ResolveOptions {
  preset?: string;
  /** Path of a JSON config file whose keys are the camelCase names above. */
  configFile?: string;
  /** Already-parsed values from flags (numbers), keyed by camelCase name. */
  flags?: Partial<Record<keyof TrainConfig, number>>;
}

export function resolveConfig(opts: ResolveOptions = {}): TrainConfig {
  const cfg: TrainConfig = { ...defaults };
  if (opts.preset !== undefined) {
    if (!(opts.preset in presets)) {
      throw new GanDistError(
        'GAN_DIST_E_CONFIG',
        `--preset: unknown preset "${opts.preset}"`,
        `use one of: ${Object.keys(presets).join(', ')}`,
      );
    }
    Object.assign(cfg, presets[opts.preset as PresetName]);
  }
  if (opts.configFile !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(opts.configFile, 'utf8'));
    } catch (err) {
      throw new GanDistError(
        'GAN_DIST_E_CONFIG',
        `--config ${opts.configFile}: cannot read it as JSON (${(err as Error).message})`,
        'give --config a JSON file of camelCase keys, e.g. {"batchSize": 64}',
      );
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new GanDistError('GAN_DIST_E_CONFIG', `--config ${opts.configFile}: the file must hold one JSON object`);
    }
    applyObject(cfg, parsed as Record<string, unknown>, (k) => `config file ${opts.configFile}, key "${k}"`);
  }
  if (opts.flags) applyObject(cfg, opts.flags, (k) => flagName(k));
  return cfg;
}

/** The part of the config that shapes the networks: what a worker needs to build G and D. */
export interface ModelConfig {
  latent: number;
  filters: number;
  imageSize: 32 | 64;
}

export function modelConfigOf(cfg: TrainConfig): ModelConfig {
  return { latent: cfg.latent, filters: cfg.filters, imageSize: cfg.imageSize };
}

/** What a worker's welcome carries: the networks' shape, and the global batch its frame limits are sized for. */
export interface WorkerModelConfig extends ModelConfig {
  batchSize: number;
}

const WORKER_MODEL_KEYS = ['latent', 'filters', 'imageSize', 'batchSize'] as const;

export function workerModelConfigOf(cfg: TrainConfig): WorkerModelConfig {
  return { ...modelConfigOf(cfg), batchSize: cfg.batchSize };
}

/** Why `v` (an object from the wire) is not a WorkerModelConfig, as a suffix of its path; undefined when it is one. */
export function workerModelConfigProblem(v: Record<string, unknown>): string | undefined {
  const known: readonly string[] = WORKER_MODEL_KEYS;
  for (const k of Object.keys(v)) if (!known.includes(k)) return `.${k} is not a model setting`;
  for (const k of WORKER_MODEL_KEYS) {
    if (!(k in v)) return `.${k} is missing`;
    try {
      validateValue(k, v[k], k);
    } catch {
      return `.${k} must be ${describeRule(rules[k])}, got ${JSON.stringify(v[k])}`;
    }
  }
  return undefined;
}
