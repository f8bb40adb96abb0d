// The training config's flags, shared by every command that builds a model (train, summary, bench).

import { InvalidArgumentError, Option, type Command } from 'commander';
import { configKeys, flagName, parseFlagNumber, presets, resolveConfig, type TrainConfig } from '../protocol/config.ts';
import { GanDistError } from '../protocol/errors.ts';

const descriptions: Record<keyof TrainConfig, string> = {
  epochs: 'number of epochs (MATLAB numEpochs)',
  iterations: 'total iterations of the run, 0 = epochs decide; a resume counts what is done',
  batchSize: 'global mini-batch size (miniBatchSize)',
  lr: 'Adam learning rate (learnRate)',
  beta1: 'Adam gradient decay factor',
  beta2: 'Adam squared gradient decay factor',
  flipProb: 'probability of flipping a real label (flipProb)',
  validationFrequency: 'iterations between sample grids (validationFrequency)',
  numValidationImages: 'sample images per grid (numValidationImages)',
  latent: 'latent vector length (numLatentInputs)',
  filters: 'base number of filters (numFilters)',
  imageSize: 'image size, 32 or 64',
  seed: 'random seed of the run',
};

/**
 * The one parser of integer flags: an integer >= min. Commander names the flag in the error
 * (`option '--count <n>' argument '0' is invalid. must be an integer >= 1`) and exits with the
 * usage code.
 */
export function integerArg(min = 0): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`must be an integer >= ${min}`);
    return n;
  };
}

/** A comma-separated list of integers >= min, e.g. `--workers 1,2,4`. */
export function integerListArg(min = 1): (raw: string) => number[] {
  const one = integerArg(min);
  return (raw) => {
    try {
      return raw.split(',').map((x) => one(x));
    } catch {
      throw new InvalidArgumentError(`must be a comma-separated list of integers >= ${min}`);
    }
  };
}

export function addConfigOptions(cmd: Command): Command {
  cmd
    .addOption(
      new Option(
        '--preset <name>',
        'preset: tiny (32px, 16 filters, batch 16) or quick (64px, 16 filters, batch 32)',
      ).choices(Object.keys(presets)),
    )
    .option('--config <file.json>', 'JSON config file of camelCase keys');
  for (const key of configKeys) {
    cmd.option(`${flagName(key)} <n>`, descriptions[key], (raw: string) => parseFlagNumber(key, raw));
  }
  return cmd;
}

/** The resolved config from a command's parsed options: defaults < preset < --config < flags. */
export function configFromOptions(opts: Record<string, unknown>): TrainConfig {
  const flags: Partial<Record<keyof TrainConfig, number>> = {};
  for (const key of configKeys) if (typeof opts[key] === 'number') flags[key] = opts[key] as number;
  return resolveConfig({
    preset: opts.preset as string | undefined,
    configFile: opts.config as string | undefined,
    flags,
  });
}

/** A flag's integer >= min, or an error naming the flag. */
export function positiveInt(flag: string, min = 0) {
  return (raw: string) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min)
      throw new GanDistError('GAN_DIST_E_CONFIG', `${flag}: "${raw}" is not an integer >= ${min}`);
    return n;
  };
}

/** --gpus: distinct GPU ids, comma-separated. */
export function parseGpus(raw: string): string[] {
  const ids = raw.split(',').map((s) => s.trim());
  if (ids.length === 0 || ids.some((id) => !/^\d+$/.test(id)) || new Set(ids).size !== ids.length) {
    throw new GanDistError(
      'GAN_DIST_E_CONFIG',
      `--gpus: "${raw}" is not a list of distinct GPU ids`,
      'e.g. --gpus 0,1,2,3',
    );
  }
  return ids;
}
