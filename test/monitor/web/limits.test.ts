// The dashboard's connection caps on 127.0.0.1:0: connections without a session are capped per
// address and overall (the oldest goes), and one that shows a session no longer counts.

import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../../monitor/web/dashboard.ts';
import { DashboardFeed } from '../../../monitor/web/feed.ts';
import { readBody } from '../../../monitor/web/limits.ts';
import { parseWebAddress } from '../../../monitor/web/web-address.ts';
import { waitFor, withDeadline } from '../../support/wait.ts';
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';

const SECRET = 's'.repeat(64);
const open: Dashboard[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const d of open.splice(0)) await d.close();
});

async function serve(limits: { maxPending: number; maxPendingPerAddress: number }) {
  const d = await startDashboard({
    address: parseWebAddress('127.0.0.1:0'),
    feed: new DashboardFeed(),
    title: 't',
    credentials: { monitor: SECRET },
    samplePath: () => undefined,
    limits,
  });
  open.push(d);
  return { d, port: Number(new URL(d.origin).port) };
}

function raw(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => resolve({ socket, closed }));
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('error', () => {});
    sockets.push(socket);
  });
}

describe('dashboard connection limits', () => {
  it('refuses connections without a session beyond the cap for one address', async () => {
    const { d, port } = await serve({ maxPending: 10, maxPendingPerAddress: 2 });
    await raw(port);
    await raw(port);
    await waitFor(() => d.server.pendingCount() === 2, 'two pending connections', 5000);
    const third = await raw(port);
    await withDeadline(third.closed, 'the third connection to be refused', 5000);
    expect(d.server.pendingCount()).toBe(2);
  });

  it('drops the oldest connection without a session to make room, and stops counting one that logged in', async () => {
    const { d, port } = await serve({ maxPending: 2, maxPendingPerAddress: 10 });
    const login = await raw(port);
    const oldest = await raw(port);
    await waitFor(() => d.server.pendingCount() === 2, 'two pending connections', 5000);
    // The first logs in over its keep-alive connection: it leaves the pending count.
    const body = `token=${SECRET}`;
    login.socket.write(
      `POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await waitFor(() => d.server.pendingCount() === 1, 'the logged-in connection to leave the count', 5000);
    await raw(port);
    await raw(port);
    await withDeadline(oldest.closed, 'the oldest pending connection to be dropped', 5000);
    expect(login.socket.destroyed).toBe(false);
  });

  it('reads a body up to the cap and refuses a longer one as it streams', async () => {
    const req = (chunks: string[], headers: Record<string, string> = {}) =>
      Object.assign(Readable.from(chunks.map((c) => Buffer.from(c))), { headers }) as unknown as IncomingMessage;
    expect(await readBody(req(['ab', 'cd']), 4)).toBe('abcd');
    expect(await readBody(req(['ab', 'cde']), 4)).toBeUndefined();
    expect(await readBody(req([], { 'content-length': '5' }), 4)).toBeUndefined();
    expect(await readBody(req([], { 'content-length': 'many' }), 4)).toBeUndefined();
  });
});
