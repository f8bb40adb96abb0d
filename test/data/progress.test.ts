import { describe, expect, it } from 'vitest';
import type { DataEvent } from '../../data/events.ts';
import { formatProgress, ProgressTracker, stderrLog } from '../../data/progress.ts';

type ProgressEvent = Extract<DataEvent, { event: 'data-progress' }>;

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const stream = { isTTY, columns: 100, write: (s: string) => chunks.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, text: () => chunks.join('') };
}

const progress = (done: number, total: number): ProgressEvent => ({
  event: 'data-progress',
  level: 'info',
  task: 'decode',
  done,
  total,
  unit: 'images',
  rate: 150,
  etaS: (total - done) / 150,
});

describe('ProgressTracker', () => {
  it('emits the first and the final update, throttling those between', () => {
    const events: DataEvent[] = [];
    const tracker = new ProgressTracker((e) => events.push(e), 'decode', 'images', 300, 1e9);
    for (let done = 1; done <= 300; done++) tracker.update(done);
    expect(events.map((e) => (e as ProgressEvent).done)).toEqual([1, 300]);
    expect(events[1]).toMatchObject({ task: 'decode', total: 300, unit: 'images' });
  });
});

describe('formatProgress', () => {
  it('shows done/total, rate and ETA, with a bar when given a width', () => {
    expect(formatProgress(progress(120, 300), 10)).toBe('decode [####......]  120/300 images  150/s  ETA 2s');
    expect(formatProgress(progress(300, 300), 0)).toBe('decode  300/300 images  150/s');
  });

  it('shows bytes in readable units', () => {
    const event: ProgressEvent = {
      ...progress(0, 0),
      task: 'download',
      unit: 'bytes',
      done: 5 * 1024 ** 2,
      total: 218 * 1024 ** 2,
      rate: 2 * 1024 ** 2,
      etaS: 106.5,
    };
    expect(formatProgress(event, 0)).toBe('download  5.0 MB/218.0 MB  2.0 MB/s  ETA 1m47s');
  });
});

describe('stderrLog', () => {
  it('redraws one line in place on a terminal and ends it when done', () => {
    const { stream, text } = fakeStream(true);
    const log = stderrLog(stream);
    log(progress(100, 300));
    log(progress(300, 300));
    expect(text().split('\r\x1b[2K').filter(Boolean)).toHaveLength(2);
    expect(text().endsWith('\n')).toBe(true);
    expect(text().split('\n')).toHaveLength(2);
  });

  it('writes whole lines when stderr is not a terminal', () => {
    const { stream, text } = fakeStream(false);
    const log = stderrLog(stream);
    log(progress(1, 300));
    log(progress(300, 300));
    log({ event: 'data-skip', level: 'warn', file: 'a/b.jpg', kind: 'truncated', reason: 'truncated image' });
    expect(text()).not.toContain('\r');
    expect(text()).toBe(
      'decode  1/300 images  150/s  ETA 2s\ndecode  300/300 images  150/s\nwarning: skipped a/b.jpg: truncated image\n',
    );
  });
});
