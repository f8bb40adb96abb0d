import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type TF } from '../../worker/backend.ts';
import { lossD, lossG, scores } from '../../worker/loss.ts';

let tf: TF;
beforeAll(async () => {
  ({ tf } = await loadBackend('cpu'));
});

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;

describe('loss', () => {
  // A hand-made shard: fixed logits, flip bits on rows 1 and 3.
  const lReal = [2.0, -1.0, 0.5, 3.0];
  const lGen = [-2.0, 0.3, 1.5, -0.7];
  const flip = [0, 1, 0, 1];

  it("equals the seed's ganLoss with flipped real labels", () => {
    const yReal = lReal.map(sigmoid).map((y, i) => (flip[i] ? 1 - y : y));
    const yGen = lGen.map(sigmoid);
    const wantD = -mean(yReal.map(Math.log)) - mean(yGen.map((y) => Math.log(1 - y)));
    const wantG = -mean(yGen.map(Math.log));
    const d = lossD(tf, tf.tensor1d(lReal), tf.tensor1d(lGen), tf.tensor1d(flip));
    const g = lossG(tf, tf.tensor1d(lGen));
    expect(d.dataSync()[0]).toBeCloseTo(wantD, 5);
    expect(g.dataSync()[0]).toBeCloseTo(wantG, 5);
  });

  it('scores before flipping: scoreD = (mean(YReal) + mean(1-YGen))/2, scoreG = mean(YGen)', () => {
    const yReal = lReal.map(sigmoid);
    const yGen = lGen.map(sigmoid);
    const s = scores(tf, tf.tensor1d(lReal), tf.tensor1d(lGen));
    expect(s.scoreD.dataSync()[0]).toBeCloseTo((mean(yReal) + mean(yGen.map((y) => 1 - y))) / 2, 6);
    expect(s.scoreG.dataSync()[0]).toBeCloseTo(mean(yGen), 6);
  });

  it('stays finite where log(sigmoid) would underflow', () => {
    const d = lossD(tf, tf.tensor1d([-200, 200]), tf.tensor1d([200, -200]), tf.tensor1d([0, 1]));
    expect(d.dataSync()[0]).toBeCloseTo(200 + 100, 3);
  });
});
