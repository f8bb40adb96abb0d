// The peers of scripts/hostile-load.ts, in a process of their own (forked, driven over IPC):
// strangers that each write a 40 MB WebSocket frame without authenticating, strangers that hold
// TCP sockets open and say nothing, and one honest worker whose join is timed. The strangers are
// raw sockets writing one shared frame (mask key zero, so no per-socket copy or masking), bound to
// 127.0.0.x addresses other than the worker's 127.0.0.1.

import { connect, type Socket } from 'node:net';
import { readTokenFile } from '../protocol/wire/auth.ts';
import { runWorker } from '../worker/client.ts';

export type HostileCommand =
  | { cmd: 'flood'; port: number; sockets: number; frameBytes: number; addresses: string[]; durationMs: number }
  | { cmd: 'idle'; port: number; sockets: number; addresses: string[] }
  | { cmd: 'release' }
  | { cmd: 'join'; url: string; tokenFile: string; simulateStepMs: number };

export type HostileReply =
  | { cmd: 'flood'; connections: number; upgraded: number; closedUnanswered: number; errors: Record<string, number> }
  | { cmd: 'idle'; opened: number; failed: number; openAfter1s: number }
  | { cmd: 'release' }
  | { cmd: 'join'; joinMs: number; exitCode: number; reason: string };

const UPGRADE =
  'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** The upgrade request and one masked binary frame of `payload` bytes (mask key zero), as one buffer. */
function hostileFrame(payload: number): Buffer {
  const head = Buffer.from(UPGRADE, 'latin1');
  const frame = Buffer.alloc(head.length + 14 + payload);
  head.copy(frame);
  frame[head.length] = 0x82;
  frame[head.length + 1] = 0x80 | 127;
  frame.writeBigUInt64BE(BigInt(payload), head.length + 2);
  return frame; // the 4 mask bytes and the payload stay zero
}

function send(reply: HostileReply): void {
  process.send!(reply);
}

/** `sockets` slots, each connecting again 20 ms after its last connection ended, for `durationMs`. */
async function flood(c: Extract<HostileCommand, { cmd: 'flood' }>): Promise<void> {
  const frame = hostileFrame(c.frameBytes);
  const end = Date.now() + c.durationMs;
  let connections = 0;
  let upgraded = 0;
  let closedUnanswered = 0;
  const errors: Record<string, number> = {};
  const slot = (i: number) =>
    new Promise<void>((resolve) => {
      const once = () => {
        if (Date.now() > end) return resolve();
        connections++;
        const s = connect({ port: c.port, host: '127.0.0.1', localAddress: c.addresses[i % c.addresses.length] });
        let answered = false;
        s.on('data', (d) => {
          if (!answered && d.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) upgraded++;
          answered = true;
        });
        s.on('error', (err: NodeJS.ErrnoException) => {
          errors[err.code ?? err.message] = (errors[err.code ?? err.message] ?? 0) + 1;
        });
        s.on('close', () => {
          // Closed before it heard anything: refused as it arrived, or reset before the 101 was read.
          if (!answered) closedUnanswered++;
          setTimeout(once, 20);
        });
        s.on('connect', () => s.write(frame));
      };
      once();
    });
  await Promise.all(Array.from({ length: c.sockets }, (_, i) => slot(i)));
  send({ cmd: 'flood', connections, upgraded, closedUnanswered, errors });
}

let held: Socket[] = [];

async function idle(c: Extract<HostileCommand, { cmd: 'idle' }>): Promise<void> {
  let failed = 0;
  const opened = await Promise.all(
    Array.from(
      { length: c.sockets },
      (_, i) =>
        new Promise<Socket | undefined>((resolve) => {
          const s = connect({ port: c.port, host: '127.0.0.1', localAddress: c.addresses[i % c.addresses.length] });
          s.on('error', () => {
            failed++;
            resolve(undefined);
          });
          s.on('connect', () => resolve(s));
          s.resume();
        }),
    ),
  );
  held = opened.filter((s): s is Socket => s !== undefined);
  // What the server made of them: those over its caps are closed as they arrive.
  await new Promise((r) => setTimeout(r, 1000));
  send({ cmd: 'idle', opened: held.length, failed, openAfter1s: held.filter((s) => !s.closed).length });
}

async function join(c: Extract<HostileCommand, { cmd: 'join' }>): Promise<void> {
  const { token } = await readTokenFile(c.tokenFile);
  const abort = new AbortController();
  const t0 = performance.now();
  let joinMs = Number.NaN;
  const outcome = await runWorker({
    url: c.url,
    token,
    backend: 'wasm',
    ganDistVersion: 'hostile-load',
    simulateStepMs: c.simulateStepMs,
    signal: abort.signal,
    log: (e) => {
      if (e.event !== 'joined') return;
      joinMs = performance.now() - t0;
      abort.abort('measured');
    },
  });
  send({ cmd: 'join', joinMs, exitCode: outcome.exitCode, reason: outcome.reason });
}

process.on('message', (c: HostileCommand) => {
  if (c.cmd === 'flood') void flood(c);
  else if (c.cmd === 'idle') void idle(c);
  else if (c.cmd === 'join') void join(c);
  else {
    for (const s of held) s.destroy();
    held = [];
    send({ cmd: 'release' });
  }
});
