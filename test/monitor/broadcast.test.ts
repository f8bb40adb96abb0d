import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { LogBroadcaster, attachMonitors, type MonitorPeer } from '../../coordinator/broadcast.ts';
import { MONITOR_LIMITS } from '../../protocol/wire/protocol.ts';
import { decodeMessage, type Message } from '../../protocol/wire/protocol.ts';

function peer(id: number, role = 'monitor', credential = 'control') {
  const got: Record<string, unknown>[] = [];
  const errors: string[] = [];
  const closed: string[] = [];
  const p: MonitorPeer & { queued: number } = {
    queued: 0,
    bufferedBytes: () => p.queued,
    id,
    role,
    credential,
    address: `127.0.0.1:${1000 + id}`,
    send: (m: Message | Buffer) => {
      const msg = Buffer.isBuffer(m) ? decodeMessage(m, MONITOR_LIMITS) : m;
      if (msg.type === 'log') got.push(msg.line);
      if (msg.type === 'error') errors.push(msg.message);
    },
    close: (reason) => closed.push(reason),
  };
  return { peer: p, got, errors, closed };
}

const line = (fields: Record<string, unknown>) =>
  `${JSON.stringify({ level: 'info', time: '2025-01-01T00:00:00.000Z', ...fields })}\n`;
const iter = (n: number) => line({ iteration: n, scoreG: 0.5, scoreD: 0.5, msg: 'iteration' });

describe('log broadcasting to monitors', () => {
  it('keeps each backlog line in memory of its own, not a view of a shared 8 KB pool slab', () => {
    const b = new LogBroadcaster();
    for (let n = 1; n <= 20; n++) b.write(iter(n));
    const frames: Buffer[] = [];
    b.add({
      id: 1,
      role: 'monitor',
      credential: 'monitor',
      address: 'x',
      bufferedBytes: () => 0,
      close: () => undefined,
      send: (m) => frames.push(m as Buffer),
    });
    expect(frames).toHaveLength(20);
    for (const f of frames) expect(f.buffer.byteLength).toBe(f.byteLength);
  });

  it('sends a late monitor the run so far, then every new line', () => {
    const b = new LogBroadcaster();
    b.write(line({ event: 'config', config: { iterations: 3 }, msg: 'event' }));
    b.write(iter(1));
    const m = peer(5);
    b.add(m.peer);
    b.write(iter(2));
    expect(m.got.map((l) => l.event ?? l.iteration)).toEqual(['config', 1, 2]);
    b.remove(5);
    b.write(iter(3));
    expect(m.got).toHaveLength(3);
    expect(b.monitors).toBe(0);
  });

  it('drops a monitor that falls behind (its socket queue over the cap) and keeps serving the others', () => {
    const b = new LogBroadcaster({ maxQueuedBytes: 1000 });
    const slow = peer(1);
    const fast = peer(2);
    b.add(slow.peer);
    b.add(fast.peer);
    b.write(iter(1));
    slow.peer.queued = 1001;
    b.write(iter(2));
    b.write(iter(3));
    expect(slow.got.map((l) => l.iteration)).toEqual([1]);
    expect(slow.closed).toEqual([
      expect.stringMatching(/monitor fell behind: 0\.0 MiB of log lines unsent; reconnect/),
    ]);
    expect(fast.got.map((l) => l.iteration)).toEqual([1, 2, 3]);
    expect(b.monitors).toBe(1);
  });

  it('skips what cannot travel: text that is not JSON, a line with too many keys', () => {
    const b = new LogBroadcaster();
    const m = peer(1);
    b.add(m.peer);
    b.write('not json\n');
    b.write(`${JSON.stringify(Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i])))}\n`);
    b.write(iter(1));
    expect(m.got.map((l) => l.iteration)).toEqual([1]);
  });

  it('bounds the backlog: iteration lines thinned evenly, key events always kept', () => {
    const b = new LogBroadcaster({ maxIterationLines: 100, maxEventLines: 10 });
    b.write(line({ event: 'config', config: {}, msg: 'event' }));
    b.write(line({ event: 'worker-joined', worker: 1, role: 'worker', msg: 'event' }));
    for (let i = 1; i <= 1000; i++) {
      b.write(iter(i));
      if (i % 10 === 0) b.write(line({ event: 'sample-written', iteration: i, msg: 'event' }));
    }
    const m = peer(1);
    b.add(m.peer);
    const iterations = m.got.filter((l) => l.msg === 'iteration').map((l) => l.iteration as number);
    expect(iterations.length).toBeLessThanOrEqual(100);
    expect(iterations.length).toBeGreaterThan(50);
    expect(iterations.at(-1)).toBe(1000);
    // An even stride over the whole run, and the latest iteration whatever it is.
    const strided = iterations.slice(0, -1);
    const gaps = new Set(strided.slice(1).map((it, i) => it - strided[i]));
    expect(gaps).toEqual(new Set([16]));
    expect(iterations[0]).toBe(16);
    expect(m.got.filter((l) => l.event === 'sample-written').length).toBeLessThanOrEqual(10);
    expect(m.got.slice(0, 2).map((l) => l.event)).toEqual(['config', 'worker-joined']);
  });

  it("wires a server's monitor peers: added, removed, stop forwarded, anything else refused", () => {
    const server = new EventEmitter();
    const b = new LogBroadcaster();
    const stops: string[] = [];
    attachMonitors(server, b, (r) => stops.push(r));
    const m = peer(3);
    const w = peer(4, 'worker');
    server.emit('peer', m.peer);
    server.emit('peer', w.peer);
    expect(b.monitors).toBe(1);
    server.emit('message', m.peer, { type: 'stop', reason: 'q pressed' });
    expect(stops).toEqual(['stop requested by the monitor at 127.0.0.1:1003 (q pressed)']);
    server.emit('message', w.peer, { type: 'stop', reason: 'x' });
    expect(stops).toHaveLength(1);
    server.emit('message', m.peer, { type: 'heartbeat', t: 1 });
    expect(m.closed).toEqual([]);
    server.emit('message', m.peer, { type: 'error', code: 'GAN_DIST_E_WORKER', message: 'x' });
    expect(m.closed).toHaveLength(1);
    server.emit('gone', m.peer, 'closed');
    expect(b.monitors).toBe(0);
  });

  it('refuses the Stop of a monitor credential, forwards those of control and of an older run token', () => {
    const server = new EventEmitter();
    const stops: string[] = [];
    attachMonitors(server, new LogBroadcaster(), (r) => stops.push(r));
    const watcher = peer(5, 'monitor', 'monitor');
    const old = peer(6, 'monitor', 'run');
    for (const m of [watcher, old]) server.emit('peer', m.peer);
    server.emit('message', watcher.peer, { type: 'stop', reason: 'q pressed' });
    expect(stops).toEqual([]);
    expect(watcher.errors).toEqual([expect.stringMatching(/^Stop refused: .*monitor credential.*control\.token/)]);
    expect(watcher.closed).toEqual([]);
    server.emit('message', old.peer, { type: 'stop', reason: 'q pressed' });
    expect(stops).toEqual(['stop requested by the monitor at 127.0.0.1:1006 (q pressed)']);
  });

  it('disconnects a monitor that keeps sending a Stop it cannot give', () => {
    const server = new EventEmitter();
    const stops: string[] = [];
    attachMonitors(server, new LogBroadcaster(), (r) => stops.push(r));
    const watcher = peer(7, 'monitor', 'monitor');
    server.emit('peer', watcher.peer);
    for (let i = 0; i < 16; i++) server.emit('message', watcher.peer, { type: 'stop', reason: 'again' });
    expect(watcher.closed).toEqual([]);
    server.emit('message', watcher.peer, { type: 'stop', reason: 'again' });
    expect(watcher.closed).toEqual([expect.stringMatching(/^sent 17 stale or unsolicited frames within 60 s/)]);
    expect(watcher.errors).toHaveLength(16);
    expect(stops).toEqual([]);
  });
});
