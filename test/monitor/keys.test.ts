import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { keysOf, listenKeys } from '../../monitor/keys.ts';

describe('keys', () => {
  it('reads q, Ctrl-C, d and Ctrl-L and ignores the rest', () => {
    expect(keysOf('q')).toEqual(['quit']);
    expect(keysOf(Buffer.from([3]))).toEqual(['interrupt']);
    expect(keysOf('xdQ\x0c')).toEqual(['detach', 'quit', 'redraw']);
    expect(keysOf('\x1b[A')).toEqual([]);
  });

  it('puts a TTY in raw mode while listening and restores it after', () => {
    const input = Object.assign(new EventEmitter(), {
      isTTY: true,
      raw: [] as boolean[],
      setRawMode(r: boolean) {
        this.raw.push(r);
      },
      resume() {},
      pause() {},
    });
    const got: string[] = [];
    const stop = listenKeys(input, (k) => got.push(k));
    input.emit('data', Buffer.from('q'));
    stop();
    input.emit('data', Buffer.from('q'));
    expect(got).toEqual(['quit']);
    expect(input.raw).toEqual([true, false]);
  });
});
