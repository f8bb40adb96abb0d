import { describe, expect, it } from 'vitest';
import { clockTime, formatIteration, formatLogLine, formatValue } from '../../monitor/format.ts';
import { parseLogLine } from '../../monitor/log-reader.ts';

describe('person-readable log lines', () => {
  it('writes an iteration line compactly', () => {
    const r = {
      iteration: 120,
      epoch: 3,
      scoreG: 0.41234,
      scoreD: 0.6331,
      lossG: 1.2345,
      lossD: 0.98,
      imagesPerSec: 45.24,
      workers: 2,
    };
    expect(formatIteration(r)).toBe('iter 120  ep 3  G 0.412 D 0.633  lossG 1.23 lossD 0.98  45.2 img/s  2 w');
  });

  it('writes values bare when they are one word, as JSON otherwise, numbers short', () => {
    expect(formatValue('wasm')).toBe('wasm');
    expect(formatValue('CPU (wasm)')).toBe('"CPU (wasm)"');
    expect(formatValue(0.010337192000000073)).toBe('0.01034');
    expect(formatValue(6291456)).toBe('6291456');
    expect(formatValue({ a: 1 })).toBe('{"a":1}');
    expect(formatValue(null)).toBe('null');
  });

  it('never passes a control sequence from the log to the terminal', () => {
    const line = parseLogLine(
      JSON.stringify({
        level: 'info',
        event: 'worker-joined',
        device: 'x\x1b[2Jy',
        'k\x1b]0;t\x07': 'v\x1b[31m',
        msg: 'event',
      }),
    );
    expect(formatLogLine(line, { color: false })).not.toContain('\x1b');
    expect(formatLogLine(parseLogLine('plain \x1b[2J text'), { color: false })).toBe('plain ␛[2J text');
  });

  it('shows other records by their msg, and text that is not JSON as it is', () => {
    expect(
      formatLogLine(parseLogLine('{"level":"error","time":"2025-01-01T12:34:56Z","msg":"boom","code":7}'), {
        color: false,
        utc: true,
      }),
    ).toBe('12:34:56  ERROR boom code=7');
    expect(formatLogLine(parseLogLine('half a li'), { color: false })).toBe('half a li');
  });

  it('reads times in UTC or local time, and nothing for a missing or broken one', () => {
    expect(clockTime('2025-01-01T01:02:03.456Z', true)).toBe('01:02:03');
    expect(clockTime(undefined)).toBe('');
    expect(clockTime('yesterday')).toBe('');
  });
});
