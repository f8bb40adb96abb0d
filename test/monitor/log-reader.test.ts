import { describe, expect, it } from 'vitest';
import { LineSplitter, classifyRecord, parseLogLine, sinceFilter } from '../../monitor/log-reader.ts';
import { iterationLogLine } from '../support/monitor-fixture.ts';

const iter = (n: number) => iterationLogLine(n);
const event = (name: string) => JSON.stringify({ level: 'info', event: name, msg: 'event' });

describe('log lines', () => {
  it('holds a line until its newline, across chunks and inside a multi-byte character', () => {
    const s = new LineSplitter();
    const bytes = Buffer.from('{"msg":"é"}\n{"msg":"b"}\n{"msg":"c');
    // Split inside the two bytes of 'é'.
    const cut = bytes.indexOf(0xc3) + 1;
    expect(s.push(bytes.subarray(0, cut))).toEqual([]);
    expect(s.push(bytes.subarray(cut))).toEqual(['{"msg":"é"}', '{"msg":"b"}']);
    expect(s.held).toBe(9);
    expect(s.push(Buffer.from('"}\n'))).toEqual(['{"msg":"c"}']);
    expect(s.flush()).toBeUndefined();
  });

  it('classifies iteration lines, events, other records and text that is not a record', () => {
    expect(parseLogLine(iter(3)).kind).toBe('iteration');
    const e = parseLogLine(event('worker-joined'));
    expect(e.kind === 'event' && e.record.event).toBe('worker-joined');
    expect(parseLogLine('{"msg":"hello"}').kind).toBe('other');
    expect(parseLogLine('not json').kind).toBe('invalid');
    expect(parseLogLine('{"no":"msg"}').kind).toBe('invalid');
    expect(parseLogLine(`${iter(1)}\r`).kind).toBe('iteration');
    expect(classifyRecord({ msg: 'event', event: 'state', to: 'running' }).kind).toBe('event');
  });

  it('--since N starts at the first iteration line at or after N and drops repeats below N', () => {
    const keep = sinceFilter(3);
    const lines = [
      event('config'),
      iter(1),
      iter(2),
      event('sample-written'),
      iter(3),
      event('checkpoint-written'),
      iter(2),
      iter(4),
    ].map(parseLogLine);
    const kept = lines
      .filter(keep)
      .map((l) => (l.kind === 'iteration' ? l.record.iteration : l.kind === 'event' ? l.record.event : '?'));
    expect(kept).toEqual([3, 'checkpoint-written', 4]);
    expect([parseLogLine(event('x'))].filter(sinceFilter(undefined))).toHaveLength(1);
  });
});
