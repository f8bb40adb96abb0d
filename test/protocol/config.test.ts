// The training config: defaults, presets, the --config file and flags in that order of precedence,
// and strict validation whose errors name the flag (or file and key) and the rule it broke.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  configKeys,
  defaults,
  flagName,
  matlabNames,
  modelConfigOf,
  parseFlagNumber,
  presets,
  resolveConfig,
  type TrainConfig,
} from '../../protocol/config.ts';
import { expectGanDistError } from '../support/expect-error.ts';

const dir = mkdtempSync(join(tmpdir(), 'gan-dist-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** A config file holding `text` as is. */
const configFile = (text: string): string => {
  const file = join(dir, `config-${++files}.json`);
  writeFileSync(file, text);
  return file;
};

/** Flags as commander hands them over, unchecked: a test may pass any key or value. */
const flags = (f: Record<string, unknown>) => f as Partial<Record<keyof TrainConfig, number>>;

const configError = (run: () => unknown, reason: RegExp) => expectGanDistError(run, 'GAN_DIST_E_CONFIG', reason);

describe('resolving the config', () => {
  it("starts from the MATLAB example's values", () => {
    expect(resolveConfig()).toEqual({
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
  });

  it('names each key by its flag, and gives every key a MATLAB name', () => {
    expect(flagName('batchSize')).toBe('--batch-size');
    expect(flagName('numValidationImages')).toBe('--num-validation-images');
    expect(flagName('lr')).toBe('--lr');
    expect(Object.keys(matlabNames).sort()).toEqual([...configKeys].sort());
  });

  it('applies a preset over the defaults, leaving the keys it does not set', () => {
    expect(resolveConfig({ preset: 'tiny' })).toEqual({ ...defaults, ...presets.tiny });
    expect(resolveConfig({ preset: 'quick' })).toMatchObject({ imageSize: 64, filters: 16, batchSize: 32, lr: 2e-4 });
  });

  it('lets the config file override the preset, and flags override both', () => {
    const file = configFile(JSON.stringify({ batchSize: 8, lr: 1e-3 }));
    const cfg = resolveConfig({ preset: 'tiny', configFile: file, flags: { batchSize: 4, seed: 7 } });
    expect(cfg).toMatchObject({ batchSize: 4, lr: 1e-3, seed: 7, filters: 16, imageSize: 32 });
  });

  it('skips a flag left undefined, as commander leaves one not given', () => {
    expect(resolveConfig({ preset: 'tiny', flags: flags({ batchSize: undefined }) }).batchSize).toBe(16);
  });

  it('keeps the shaping keys for the model config', () => {
    expect(modelConfigOf(resolveConfig({ preset: 'tiny', flags: { latent: 64 } }))).toEqual({
      latent: 64,
      filters: 16,
      imageSize: 32,
    });
  });
});

describe('config errors', () => {
  it('names --preset and the presets there are for an unknown preset', () => {
    const err = configError(() => resolveConfig({ preset: 'huge' }), /^--preset: unknown preset "huge"$/);
    expect(err.hint).toBe('use one of: tiny, quick');
  });

  it('names the flag of an unknown key and lists the known keys', () => {
    const err = configError(
      () => resolveConfig({ flags: flags({ batchSzie: 4 }) }),
      /^--batch-szie: unknown key "batchSzie"$/,
    );
    expect(err.hint).toMatch(/known keys: .*batchSize/);
  });

  it('names the file and the key of an unknown key in a --config file', () => {
    const file = configFile(JSON.stringify({ batchSize: 8, learnRate: 1e-3 }));
    const err = configError(
      () => resolveConfig({ configFile: file }),
      new RegExp(`^config file ${file}, key "learnRate": unknown key "learnRate"$`),
    );
    expect(err.hint).toMatch(/known keys: .*\blr\b/);
  });

  it('names the flag of a value that is not a number', () => {
    configError(() => parseFlagNumber('batchSize', 'sixty-four'), /^--batch-size: "sixty-four" is not a number$/);
    configError(() => parseFlagNumber('lr', ' '), /^--lr: " " is not a number$/);
    configError(() => parseFlagNumber('epochs', 'Infinity'), /^--epochs: "Infinity" is not a number$/);
    expect(parseFlagNumber('lr', '1e-3')).toBe(1e-3);
    configError(() => resolveConfig({ flags: flags({ batchSize: '64' }) }), /^--batch-size: "64" is not valid/);
    configError(
      () => resolveConfig({ flags: { lr: Number.NaN } }),
      /^--lr: .* is not valid; it must be a number > 0 and <= 1$/,
    );
  });

  it('names the file, the key and its flag for a value of the wrong type in a --config file', () => {
    const file = configFile(JSON.stringify({ batchSize: '64' }));
    const err = configError(
      () => resolveConfig({ configFile: file }),
      new RegExp(`^config file ${file}, key "batchSize": "64" is not valid; it must be an integer >= 1 and <= 65536$`),
    );
    expect(err.hint).toBe('set --batch-size (config key "batchSize") to an integer >= 1 and <= 65536');
  });

  it.each([
    ['batchSize', 0, '--batch-size: 0 is not valid; it must be an integer >= 1 and <= 65536'],
    ['epochs', 1.5, '--epochs: 1.5 is not valid; it must be an integer >= 1 and <= 10000000'],
    ['lr', 0, '--lr: 0 is not valid; it must be a number > 0 and <= 1'],
    ['beta1', 1, '--beta1: 1 is not valid; it must be a number >= 0 and < 1'],
    ['flipProb', -0.1, '--flip-prob: -0.1 is not valid; it must be a number >= 0 and <= 1'],
    ['seed', 2 ** 32, '--seed: 4294967296 is not valid; it must be an integer >= 0 and <= 4294967295'],
  ] as const)('rejects %s %s, naming the flag and the range', (key, value, message) => {
    configError(() => resolveConfig({ flags: { [key]: value } }), new RegExp(`^${message.replace(/[.+]/g, '\\$&')}$`));
  });

  it('accepts the values at the edges of each range that include them', () => {
    const edges = { lr: 1, beta1: 0, beta2: 0, flipProb: 1, seed: 2 ** 32 - 1, iterations: 0, batchSize: 65536 };
    expect(resolveConfig({ flags: edges })).toMatchObject(edges);
  });

  it('takes --image-size from its list only', () => {
    expect(resolveConfig({ flags: { imageSize: 32 } }).imageSize).toBe(32);
    const err = configError(
      () => resolveConfig({ flags: flags({ imageSize: 48 }) }),
      /^--image-size: 48 is not valid; it must be one of 32, 64$/,
    );
    expect(err.hint).toMatch(/set --image-size .* one of 32, 64/);
  });

  it('names a --config file that is missing, not JSON, or not one object', () => {
    configError(
      () => resolveConfig({ configFile: join(dir, 'absent.json') }),
      /^--config .*absent\.json: cannot read it as JSON \(ENOENT/,
    );
    const broken = configFile('{"batchSize": 8,');
    const err = configError(
      () => resolveConfig({ configFile: broken }),
      new RegExp(`^--config ${broken}: cannot read it as JSON`),
    );
    expect(err.hint).toMatch(/camelCase keys/);
    const list = configFile('[{"batchSize": 8}]');
    configError(() => resolveConfig({ configFile: list }), /: the file must hold one JSON object$/);
  });
});
