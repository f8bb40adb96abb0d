import { describe, expect, it } from 'vitest';
import { modelConfigOf, resolveConfig } from '../../protocol/config.ts';
import { parameterTable } from '../../protocol/model/architecture.ts';
import {
  bnLayers,
  bnSumsFromMoments,
  bnTensorCount,
  bnTensorName,
  checkBnSums,
  isBnTensor,
  putBnSums,
  readBnSums,
  type BnSumsByLayer,
} from '../../protocol/wire/bn-sums.ts';

const seedModel = modelConfigOf(resolveConfig({}));

describe('BatchNorm sums on the wire', () => {
  it("lists every BatchNorm layer of the seed's networks with its channels and H x W per image", () => {
    const layers = bnLayers(seedModel);
    expect(layers.map((l) => l.key)).toEqual(['G/bn1', 'G/bn2', 'G/bn3', 'D/bn2', 'D/bn3', 'D/bn4']);
    // G's first BatchNorm normalises tconv1's 8x8x4nf; D's first the 16x16 output of its second conv.
    expect(layers[0]).toEqual({ key: 'G/bn1', channels: 256, perImage: 64 });
    expect(layers[3]).toEqual({ key: 'D/bn2', channels: 128, perImage: 256 });
    // Each layer's running statistics are parameters of its channel count.
    const table = new Map(parameterTable(seedModel).map((s) => [s.name, s.shape]));
    for (const l of layers) expect(table.get(`${l.key}/mean`)).toEqual([l.channels]);
  });

  it('sends each layer as two exact tensors and reads them back with the count derived from the rows', () => {
    const layers = bnLayers(seedModel);
    const tensors: Record<string, Float32Array> = { 'G/proj/w': new Float32Array(3) };
    const sums: BnSumsByLayer = {};
    for (const l of layers) {
      const mean = new Float32Array(l.channels).fill(0.5);
      const variance = new Float32Array(l.channels).fill(2);
      sums[l.key] = bnSumsFromMoments(mean, variance, l.perImage * 4);
    }
    putBnSums(tensors, sums);
    expect(Object.keys(tensors)).toHaveLength(1 + bnTensorCount(layers));
    expect(Object.keys(tensors).filter(isBnTensor)).toHaveLength(bnTensorCount(layers));
    expect(isBnTensor('G/proj/w')).toBe(false);
    expect(checkBnSums(tensors, layers)).toBeUndefined();
    const back = readBnSums(tensors, layers, 4);
    const g1 = back['G/bn1'];
    expect(g1.count).toBe(64 * 4);
    // sum = mean x count, sumSq = (variance + mean^2) x count.
    expect(g1.sum[0]).toBeCloseTo(0.5 * 256, 3);
    expect(g1.sumSq[0]).toBeCloseTo((2 + 0.25) * 256, 3);
  });

  it('names the missing or mis-sized statistic', () => {
    const layers = bnLayers(seedModel);
    const tensors: Record<string, Float32Array> = {};
    for (const l of layers)
      putBnSums(tensors, { [l.key]: bnSumsFromMoments(new Float32Array(l.channels), new Float32Array(l.channels), 1) });
    delete tensors[bnTensorName('D/bn3', 'sumSq')];
    expect(checkBnSums(tensors, layers)).toBe('missing or mis-sized BatchNorm statistic bn/D/bn3/sumSq');
    tensors[bnTensorName('D/bn3', 'sumSq')] = new Float32Array(3);
    expect(checkBnSums(tensors, layers)).toBe('missing or mis-sized BatchNorm statistic bn/D/bn3/sumSq');
  });
});
