import { describe, expect, it } from 'vitest';
import {
  activationShapes,
  initialParams,
  layersOf,
  learnableCount,
  paramSpecs,
  parameterTable,
  sizeOf,
} from '../../protocol/model/architecture.ts';
import { seedModel, tinyModel } from '../support/fixtures.ts';

describe('architecture', () => {
  it("has the seed's learnable counts: G 5,134,339 and D 4,316,545", () => {
    expect(learnableCount(paramSpecs('G', seedModel))).toBe(5_134_339);
    expect(learnableCount(paramSpecs('D', seedModel))).toBe(4_316_545);
  });

  it("gives the seed's activation shapes: G ends at 64x64x3, D at 1x1x1", () => {
    const g = activationShapes(layersOf('G', seedModel));
    expect(g.map((s) => s.join('x'))).toEqual([
      '1x1x100',
      '4x4x512',
      '8x8x256',
      '8x8x256',
      '8x8x256',
      '16x16x128',
      '16x16x128',
      '16x16x128',
      '32x32x64',
      '32x32x64',
      '32x32x64',
      '64x64x3',
      '64x64x3',
    ]);
    const d = activationShapes(layersOf('D', seedModel));
    expect(d[0]).toEqual([64, 64, 3]);
    expect(d.find((_, i) => layersOf('D', seedModel)[i].name === 'conv4')).toEqual([4, 4, 512]);
    expect(d.at(-1)).toEqual([1, 1, 1]);
  });

  it('drops one stride-2 layer from each network at image size 32', () => {
    const g = activationShapes(layersOf('G', tinyModel));
    expect(g.at(-1)).toEqual([32, 32, 3]);
    expect(layersOf('G', tinyModel).filter((l) => l.kind === 'tconv')).toHaveLength(3);
    const dl = layersOf('D', tinyModel);
    const d = activationShapes(dl);
    expect(dl.filter((l) => l.kind === 'conv').map((l, i) => `${d[dl.indexOf(l)].join('x')}#${i}`)).toEqual([
      '16x16x16#0',
      '8x8x32#1',
      '4x4x64#2',
      '1x1x1#3',
    ]);
  });

  it('initialises deterministically with MATLAB defaults', () => {
    const specs = parameterTable(tinyModel);
    const a = initialParams(specs, 3);
    const b = initialParams(specs, 3);
    const c = initialParams(specs, 4);
    expect(a['G/tconv2/w']).toEqual(b['G/tconv2/w']);
    expect(a['G/tconv2/w']).not.toEqual(c['G/tconv2/w']);
    // Glorot uniform bound sqrt(6 / (fanIn + fanOut)) for a 5x5 conv 3 -> 16.
    const w = a['D/conv1/w'];
    const bound = Math.sqrt(6 / (25 * 3 + 25 * 16));
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    expect(a['D/conv1/b'].every((x) => x === 0)).toBe(true);
    expect(a['D/bn2/scale'].every((x) => x === 1)).toBe(true);
    expect(a['D/bn2/var'].every((x) => x === 1)).toBe(true);
    expect(a['D/bn2/mean'].every((x) => x === 0)).toBe(true);
    for (const s of specs) expect(a[s.name].length).toBe(sizeOf(s.shape));
  });
});
