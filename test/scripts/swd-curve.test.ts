import { describe, expect, it } from 'vitest';
import { curveFromLog, curveSvg } from '../../scripts/swd-curve.ts';
import { FIXTURE_SWD, fixtureEvalLines, fixtureLines } from '../support/monitor-fixture.ts';

describe('scripts/swd-curve', () => {
  it('reads the eval lines of a log: iterations in order, mean, each level and the floor', () => {
    const c = curveFromLog(fixtureEvalLines().join('\n'));
    expect(c.iterations).toEqual(FIXTURE_SWD.iterations);
    expect(c.mean).toEqual(FIXTURE_SWD.swd);
    expect(c.levels).toEqual([FIXTURE_SWD.swd.map((v) => v - 20), FIXTURE_SWD.swd.map((v) => v + 20)]);
    expect(c.resolutions).toEqual([32, 16]);
    expect(c.floor).toBe(FIXTURE_SWD.floor);
  });

  it("keeps a resumed run's later score of an iteration", () => {
    const line = (iteration: number, swd: number) =>
      JSON.stringify({ event: 'eval', iteration, swd, swdLevels: [swd], resolutions: [32], msg: 'event' });
    const c = curveFromLog([line(0, 200), line(10, 150), line(10, 140), line(5, 170)].join('\n'));
    expect([c.iterations, c.mean]).toEqual([
      [0, 5, 10],
      [200, 170, 140],
    ]);
  });

  it('draws the mean through every score on axes from zero, the floor dashed at its height', () => {
    const svg = curveSvg(curveFromLog(fixtureEvalLines().join('\n')), { title: 'tiny <run>', width: 720, height: 400 });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="720" height="400"')).toBe(true);
    expect(svg).toContain('tiny &lt;run&gt;');
    // Plot: x 56..700 for iterations 0..30, y 40..336 for SWD 0..500 (the round top above the 16x16 level's 212.2).
    const mean = [...svg.matchAll(/<polyline fill="none" stroke="#77ac30"[^>]* points="([^"]+)"/g)].map((m) => m[1]);
    expect(mean).toHaveLength(1);
    const pts = mean[0].split(' ').map((p) => p.split(',').map(Number));
    expect(pts).toHaveLength(4);
    expect(pts[0]).toEqual([56, Number((336 - (192.2 / 500) * 296).toFixed(1))]);
    expect(pts[3][0]).toBe(700);
    const floorY = (336 - (27.5 / 500) * 296).toFixed(1);
    expect(svg).toContain(`y1="${floorY}" y2="${floorY}" stroke="#808080" stroke-width="1.5" stroke-dasharray="6 4"`);
    expect(svg).toContain('>500</text>');
  });

  it('says what to do when the log has no eval lines', () => {
    expect(() => curveSvg(curveFromLog(fixtureLines().join('\n')))).toThrow(/--eval-every/);
  });
});
