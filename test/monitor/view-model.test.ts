import { describe, expect, it } from 'vitest';
import { classifyRecord } from '../../monitor/log-reader.ts';
import { applyLine, createRunView, formatDuration, progressOf, totalIterations } from '../../monitor/view-model.ts';
import { FIXTURE_SWD, fixtureEvalLines, fixtureLines, fixtureView } from '../support/monitor-fixture.ts';

const at = (iso: string) => Date.parse(iso);
const iteration = (n: number, time: string, extra: Record<string, unknown> = {}) =>
  classifyRecord({
    level: 'info',
    time,
    iteration: n,
    epoch: 1,
    scoreG: n / 100,
    scoreD: 1 - n / 100,
    lossG: 1,
    lossD: 1,
    imagesPerSec: 10,
    workers: 2,
    msg: 'iteration',
    ...extra,
  });
const event = (event: string, fields: Record<string, unknown> = {}, time = '2025-01-01T00:00:00.000Z') =>
  classifyRecord({ level: 'info', time, event, ...fields, msg: 'event' });

describe('the run view', () => {
  it('folds the recorded run: both series, the bound, the workers, the last sample, finished', () => {
    const view = fixtureView();
    expect(view.iterations).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(view.scoreG.at(-1)).toBe(0.19152);
    expect(view.scoreD.at(-1)).toBe(0.66983);
    expect(view.maxIterations).toBe(30);
    expect(view.state).toBe('finished');
    expect(view.finished).toBe(true);
    expect([...view.workers.values()].map((w) => [w.id, w.address, w.backend, w.device, w.state])).toEqual([
      [1, '127.0.0.1:35554', 'wasm', 'CPU (wasm, SIMD, 1 thread)', 'left'],
      [2, '127.0.0.1:35558', 'wasm', 'CPU (wasm, SIMD, 1 thread)', 'left'],
    ]);
    expect(view.sample).toEqual({ iteration: 30, path: '/tmp/fixture-run/samples/iter-000030.png' });
    const p = progressOf(view, Date.now());
    expect(p).toMatchObject({ iteration: 30, total: 30, epoch: 1, epochs: 1, fraction: 1, etaMs: 0 });
    // From the `running` transition to the last line, whatever the clock says now.
    expect(p.elapsedMs).toBe(at('2026-11-28T17:42:15.989Z') - at('2026-11-28T17:41:43.067Z'));
  });

  it('in a live run, elapsed runs on and the ETA follows the recent pace', () => {
    const lines = fixtureLines();
    const upTo20 = lines.findIndex((l) => l.includes('"iteration":20,'));
    const view = createRunView();
    for (const l of lines.slice(0, upTo20 + 1)) applyLine(view, classifyRecord(JSON.parse(l)));
    const now = view.lastTime! + 5000;
    const p = progressOf(view, now);
    expect(p.iteration).toBe(20);
    expect(p.fraction).toBeCloseTo(20 / 30);
    expect(p.elapsedMs).toBe(now - at('2026-11-28T17:41:43.067Z'));
    const [t0, i0] = view.recent[0];
    const [t1, i1] = view.recent.at(-1)!;
    expect(p.etaMs).toBeCloseTo(((t1 - t0) / (i1 - i0)) * 10);
    // Once stopping, the run ends after this iteration: no ETA to the bound.
    applyLine(
      view,
      event('state', { from: 'running', to: 'stopping', reason: 'SIGINT received' }, new Date(now).toISOString()),
    );
    expect(progressOf(view, now).etaMs).toBeUndefined();
  });

  it('takes the total from config and data when the coordinator has not said it yet', () => {
    const view = createRunView();
    applyLine(view, event('config', { config: { epochs: 500, iterations: 0, batchSize: 16 } }));
    expect(totalIterations(view)).toBeUndefined();
    applyLine(view, event('data-ready', { images: 2048 }));
    expect(totalIterations(view)).toBe(500 * 128);
    applyLine(view, event('config', { config: { epochs: 500, iterations: 30, batchSize: 16 } }));
    expect(totalIterations(view)).toBe(30);
  });

  it('a resumed run replaces the iterations it repeats, and its workers start afresh', () => {
    const view = createRunView();
    applyLine(view, event('listening', { endpoint: 'a:1' }));
    applyLine(
      view,
      event('worker-joined', { worker: 1, role: 'worker', address: 'x', backend: 'wasm', device: 'cpu' }),
    );
    for (let i = 1; i <= 5; i++) applyLine(view, iteration(i, `2025-01-01T00:00:0${i}.000Z`));
    applyLine(view, event('listening', { endpoint: 'a:2' }));
    expect(view.workers.size).toBe(0);
    applyLine(view, iteration(4, '2025-01-01T00:01:00.000Z', { scoreG: 0.9 }));
    expect(view.iterations).toEqual([1, 2, 3, 4]);
    expect(view.scoreG.at(-1)).toBe(0.9);
  });

  it('folds eval lines into the SWD series and its floor, though each arrives after later iterations', () => {
    const plain = fixtureView();
    expect([plain.evalIterations, plain.swd, plain.swdFloor]).toEqual([[], [], undefined]);
    const view = fixtureView(Infinity, fixtureEvalLines());
    expect(view.evalIterations).toEqual(FIXTURE_SWD.iterations);
    expect(view.swd).toEqual(FIXTURE_SWD.swd);
    expect(view.swdFloor).toBe(FIXTURE_SWD.floor);
    // The scores are untouched by the eval lines between them.
    expect(view.iterations).toEqual(plain.iterations);
    expect(view.events.map((e) => e.text)).toContain('SWD at iteration 20: 120.70 (100.7 / 140.7), floor 27.50');
    expect(view.events.map((e) => e.text)).toContain('SWD floor, real vs real on 128 images: 27.50');
  });

  it('a resumed run drops the SWD of the iterations it repeats, and keeps the ones before', () => {
    const view = createRunView();
    const score = (i: number, swd: number) => applyLine(view, event('eval', { iteration: i, swd, floor: 30 }));
    for (let i = 1; i <= 25; i++) applyLine(view, iteration(i, '2025-01-01T00:00:01.000Z'));
    score(0, 200);
    score(10, 150);
    score(20, 120);
    // Resumed from the checkpoint at 15: iterations 16.. again, and the score at 20 again.
    applyLine(view, iteration(16, '2025-01-01T00:01:00.000Z'));
    expect([view.evalIterations, view.swd]).toEqual([
      [0, 10],
      [200, 150],
    ]);
    score(20, 118);
    expect([view.evalIterations, view.swd]).toEqual([
      [0, 10, 20],
      [200, 150, 118],
    ]);
    expect(view.swdFloor).toBe(30);
  });

  it('counts monitors apart from workers and keeps them out of the events', () => {
    const view = createRunView();
    applyLine(
      view,
      event('worker-joined', { worker: 7, role: 'monitor', address: 'm', backend: 'none', device: 'monitor' }),
    );
    expect(view.monitors.size).toBe(1);
    expect(view.workers.size).toBe(0);
    applyLine(view, event('worker-left', { worker: 7, address: 'm', reason: 'connection closed' }));
    expect(view.monitors.size).toBe(0);
    expect(view.events).toEqual([]);
  });

  it('gives each worker its img/s where the iteration line carries per-shard timings', () => {
    const view = createRunView();
    applyLine(
      view,
      event('worker-joined', { worker: 1, role: 'worker', address: 'x', backend: 'wasm', device: 'cpu' }),
    );
    applyLine(view, iteration(1, '2025-01-01T00:00:01.000Z', { shards: [{ worker: 1, rows: 64, computeMs: 500 }] }));
    expect(view.workers.get(1)?.imagesPerSec).toBe(128);
  });

  it("keeps a node's local workers under its row, from node-workers reports, out of the events", () => {
    const view = createRunView();
    applyLine(
      view,
      event('worker-joined', { worker: 3, role: 'worker', address: 'n', backend: 'node:wasm', device: 'node of 2' }),
    );
    const report = [
      { rank: 1, device: 'CPU b', backend: 'wasm', state: 'restarting' },
      { rank: 0, device: 'CPU a', backend: 'wasm', state: 'joined', imagesPerSec: 12.5 },
      { device: 'no rank: left out' },
    ];
    applyLine(view, event('node-workers', { worker: 3, workers: report }));
    expect(view.workers.get(3)?.local).toEqual([
      { rank: 0, device: 'CPU a', backend: 'wasm', state: 'joined', imagesPerSec: 12.5 },
      { rank: 1, device: 'CPU b', backend: 'wasm', state: 'restarting', imagesPerSec: undefined },
    ]);
    // A report for a peer the view never saw join changes nothing.
    applyLine(view, event('node-workers', { worker: 9, workers: report }));
    expect(view.workers.has(9)).toBe(false);
    expect(view.events.map((e) => e.name)).toEqual(['worker-joined']);
  });

  it('summarises events in a few words and keeps their level', () => {
    const view = fixtureView();
    const texts = view.events.map((e) => e.text);
    expect(texts).toContain('worker 1 joined from 127.0.0.1:35554 (wasm, CPU (wasm, SIMD, 1 thread))');
    expect(texts).toContain('checkpoint at iteration 30: /tmp/fixture-run/checkpoints/iter-000030 (202 ms)');
    expect(texts).toContain('state running → stopping: iteration bound reached');
    expect(view.events.at(-1)?.level).toBe('info');
    applyLine(
      view,
      classifyRecord({ level: 'warn', event: 'peer-rejected', address: 'y', reason: 'bad token', msg: 'event' }),
    );
    expect(view.events.at(-1)).toMatchObject({ level: 'warn', text: 'peer-rejected address=y reason="bad token"' });
  });

  it('formats durations as m:ss, h:mm:ss and days', () => {
    expect(formatDuration(42_000)).toBe('0:42');
    expect(formatDuration(3_723_000)).toBe('1:02:03');
    expect(formatDuration(2 * 86_400_000 + 3_723_000)).toBe('2d 01:02:03');
    expect(formatDuration(undefined)).toBe('-');
  });
});
