// The dashboard's fold of a run's log: chart series, samples, updates and their replay.

import { describe, expect, it } from 'vitest';
import { parseLogLine } from '../../../monitor/log-reader.ts';
import { DashboardFeed, type Update } from '../../../monitor/web/feed.ts';
import { fixtureEvalLines, fixtureLines, FIXTURE_SWD, iterationLogLine } from '../../support/monitor-fixture.ts';

const fed = (lines: string[], opts: ConstructorParameters<typeof DashboardFeed>[0] = {}) => {
  const feed = new DashboardFeed(opts);
  for (const l of lines) feed.push(parseLogLine(l));
  return feed;
};
const iterationLine = (i: number) => iterationLogLine(i, { time: '2026-11-28T17:41:45.000Z', workers: 1 });

describe('DashboardFeed', () => {
  it('keeps a chart point per logged iteration, every column, and the run finished', () => {
    const s = fed(fixtureLines()).snapshot();
    const logged = fixtureLines().filter((l) => l.includes('"msg":"iteration"')).length;
    expect(s.points).toBe(logged);
    expect(s.bucket).toBe(1);
    expect(s.series[0]).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(s.series.map((c) => c.length)).toEqual([30, 30, 30, 30, 30, 30]);
    expect(s.series[1][0]).toBe(0.46849); // scoreG of iteration 1
    expect(s.status).toMatchObject({ state: 'finished', finished: true, iteration: 30, total: 30 });
    expect(s.samples.map((x) => x.iteration)).toEqual([1, 10, 20, 30]);
    expect(s.samples[3].file).toBe('iter-000030.png');
    expect(s.workers.map((w) => [w.id, w.state])).toEqual([
      [1, 'left'],
      [2, 'left'],
    ]);
  });

  it('carries the SWD curve and its floor', () => {
    const s = fed(fixtureEvalLines()).snapshot();
    expect(s.eval).toEqual({ iteration: FIXTURE_SWD.iterations, swd: FIXTURE_SWD.swd, floor: FIXTURE_SWD.floor });
  });

  it('decimates a long run in its snapshot but counts every iteration', () => {
    const lines = Array.from({ length: 5000 }, (_, i) => iterationLine(i + 1));
    const s = fed(lines, { maxPoints: 1000 }).snapshot();
    expect(s.points).toBe(5000);
    expect(s.series[0].length).toBeLessThanOrEqual(1000);
    expect(s.bucket).toBeGreaterThan(1);
    expect(s.series[0].at(-1)).toBe(5000);
  });

  it('replaces the iterations a resumed run logs again', () => {
    const s = fed([1, 2, 3, 4, 2, 3].map(iterationLine)).snapshot();
    expect(s.series[0]).toEqual([1, 2, 3]);
  });

  it('sends each line as an update, and replays from a number it still holds', () => {
    const feed = fed(fixtureLines().slice(0, 10), { replay: 5 });
    const got: Update[] = [];
    feed.subscribe((u) => got.push(u));
    feed.push(parseLogLine(iterationLine(1)));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ seq: 11, point: [1, 0.5, 0.5, 1, 1, 10], time: '2026-11-28T17:41:45.000Z' });
    expect(feed.since(9)?.map((u) => u.seq)).toEqual([10, 11]);
    expect(feed.since(11)).toEqual([]);
    expect(feed.since(2)).toBeUndefined();
    expect(feed.since(12)).toBeUndefined();
  });
  it('sends the workers table again when a node reports its local workers', () => {
    const feed = new DashboardFeed();
    const got: Update[] = [];
    feed.subscribe((u) => got.push(u));
    const event = (fields: Record<string, unknown>) =>
      parseLogLine(JSON.stringify({ level: 'info', ...fields, msg: 'event' }));
    feed.push(
      event({ event: 'worker-joined', worker: 4, role: 'worker', address: 'n', backend: 'node:wasm', device: 'node' }),
    );
    feed.push(
      event({
        event: 'node-workers',
        worker: 4,
        workers: [{ rank: 0, device: 'CPU', backend: 'wasm', state: 'joined' }],
      }),
    );
    expect(got.at(-1)?.workers?.[0].local).toEqual([{ rank: 0, device: 'CPU', backend: 'wasm', state: 'joined' }]);
  });
});
