// The floors the simulated part of `bench scaling` sets a transport against: a memcpy of the same
// bytes, and the same bytes moved as plain ws messages with no framing, checks or arithmetic.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { median, steady } from './util.ts';

/** ms to Buffer.copy `bytes` in `chunk`-sized pieces into a reused destination: best of 3, in this process. */
export function memcpyMs(bytes: number, chunk: number): number {
  const src = Buffer.alloc(chunk, 1);
  const dst = Buffer.alloc(chunk);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let done = 0; done < bytes; done += chunk) src.copy(dst, 0, 0, Math.min(chunk, bytes - done));
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Moves the simulated run's bytes as plain ws messages to echo processes: the floor for any framing. */
export async function bareTransferMs(
  workers: number,
  sendBytes: number,
  replyBytes: number,
  rounds: number,
): Promise<number> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 2 * Math.max(sendBytes, replyBytes),
  });
  await new Promise((r) => wss.once('listening', r));
  const port = (wss.address() as { port: number }).port;
  const client = `
    const WebSocket = require(${JSON.stringify(require_ws())});
    const ws = new WebSocket('ws://127.0.0.1:${port}', { perMessageDeflate: false, maxPayload: ${2 * Math.max(sendBytes, replyBytes)} });
    const reply = Buffer.alloc(${replyBytes}, 1);
    ws.on('message', () => ws.send(reply));
    ws.on('close', () => process.exit(0));
    ws.on('error', () => process.exit(1));`;
  const children = Array.from({ length: workers }, () => spawn(process.execPath, ['-e', client], { stdio: 'ignore' }));
  const sockets: WebSocket[] = [];
  await new Promise<void>((resolve) =>
    wss.on('connection', (ws) => {
      ws.on('error', () => {});
      sockets.push(ws);
      if (sockets.length === workers) resolve();
    }),
  );
  const payload = Buffer.alloc(sendBytes, 2);
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            ws.once('message', () => resolve());
            ws.send(payload);
          }),
      ),
    );
    times.push(performance.now() - t0);
  }
  for (const ws of sockets) ws.close();
  await new Promise((r) => wss.close(r));
  for (const c of children) c.kill();
  return median(steady(times));
}

function require_ws(): string {
  return path.join(path.dirname(new URL(import.meta.resolve('ws')).pathname), 'index.js');
}
