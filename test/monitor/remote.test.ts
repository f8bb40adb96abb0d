import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newRoleTokens, newToken, type RoleTokens } from '../../protocol/wire/auth.ts';
import { GanDistError } from '../../protocol/errors.ts';
import { connectMonitor } from '../../monitor/remote.ts';
import type { PeerServer } from '../../coordinator/server.ts';
import { runTlsIdentity, type TlsIdentity } from '../../protocol/wire/tls.ts';
import { monitorEndpoint } from '../support/monitor-fixture.ts';

const token = newToken();
let server: PeerServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function coordinatorEndpoint(tls?: TlsIdentity, tokens: string | RoleTokens = token) {
  const endpoint = await monitorEndpoint(tokens, tls);
  server = endpoint.server;
  return endpoint;
}

function lineQueue() {
  const lines: Record<string, unknown>[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const onLine = (l: Record<string, unknown>) => {
    lines.push(l);
    for (const w of [...waiters]) {
      if (lines.length < w.n) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const count = (n: number) =>
    new Promise<void>((resolve) => (lines.length >= n ? resolve() : waiters.push({ n, resolve })));
  return { lines, onLine, count };
}

describe('remote monitor', () => {
  it('joins as a monitor, gets the backlog and new lines, and asks the coordinator to stop', async () => {
    const c = await coordinatorEndpoint();
    c.monitors.write(JSON.stringify({ event: 'config', config: { iterations: 5 }, msg: 'event' }));
    const q = lineQueue();
    let closed: string | undefined;
    const conn = await connectMonitor({
      url: c.url,
      token,
      ganDistVersion: 'test',
      onLine: q.onLine,
      onClose: (r) => (closed = r),
    });
    expect(conn.welcome.runId).toBe('run-1');
    await q.count(1);
    c.monitors.write(JSON.stringify({ iteration: 1, scoreG: 0.4, scoreD: 0.6, msg: 'iteration' }));
    await q.count(2);
    expect(q.lines.map((l) => l.msg)).toEqual(['event', 'iteration']);

    const stopped = new Promise<void>((resolve) => server!.once('message', () => setImmediate(resolve)));
    conn.requestStop('q pressed');
    await stopped;
    expect(c.stops).toHaveLength(1);
    expect(c.stops[0]).toMatch(/^stop requested by the monitor at 127\.0\.0\.1:\d+ \(q pressed\)$/);

    const gone = new Promise<void>((resolve) => server!.once('gone', () => resolve()));
    conn.close();
    await gone;
    expect(c.monitors.monitors).toBe(0);
    expect(closed).toBeUndefined();
  });

  it('is turned away with a token of another run', async () => {
    const c = await coordinatorEndpoint();
    const err = await connectMonitor({
      url: c.url,
      token: newToken(),
      ganDistVersion: 'test',
      onLine: () => {},
      onClose: () => {},
    }).catch((e) => e);
    expect(err).toBeInstanceOf(GanDistError);
    expect((err as GanDistError).code).toBe('GAN_DIST_E_AUTH');
  });

  it('says when the coordinator goes away', async () => {
    const c = await coordinatorEndpoint();
    const closed = new Promise<string>((resolve) => {
      void connectMonitor({ url: c.url, token, ganDistVersion: 'test', onLine: () => {}, onClose: resolve }).then(() =>
        server!.close(),
      );
    });
    expect(await closed).toMatch(/closed the connection/);
  });

  it('over wss trusts the certificate the token file pins, and no other', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gan-dist-monitor-tls-'));
    try {
      const identity = await runTlsIdentity(dir);
      const c = await coordinatorEndpoint(identity);
      c.monitors.write(JSON.stringify({ event: 'config', config: {}, msg: 'event' }));
      const q = lineQueue();
      const conn = await connectMonitor({
        url: c.url,
        token,
        fingerprint: identity.fingerprint,
        ganDistVersion: 't',
        onLine: q.onLine,
        onClose: () => {},
      });
      await q.count(1);
      conn.close();
      const wrong = await connectMonitor({
        url: c.url,
        token,
        fingerprint: 'ab'.repeat(32),
        ganDistVersion: 't',
        onLine: () => {},
        onClose: () => {},
      }).catch((e) => e);
      expect(wrong).toMatchObject({ code: 'GAN_DIST_E_AUTH' });
      expect((wrong as Error).message).toMatch(/pins abab/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an address that is not ws:// and a wss:// one without a fingerprint', async () => {
    await expect(
      connectMonitor({ url: 'http://x', token, ganDistVersion: 't', onLine: () => {}, onClose: () => {} }),
    ).rejects.toMatchObject({ code: 'GAN_DIST_E_USAGE' });
    await expect(
      connectMonitor({ url: 'wss://x:1', token, ganDistVersion: 't', onLine: () => {}, onClose: () => {} }),
    ).rejects.toMatchObject({ code: 'GAN_DIST_E_AUTH' });
  });

  it('says when nothing listens at the address', async () => {
    const c = await coordinatorEndpoint();
    await server!.close();
    server = undefined;
    await expect(
      connectMonitor({ url: c.url, token, ganDistVersion: 't', onLine: () => {}, onClose: () => {} }),
    ).rejects.toMatchObject({ code: 'GAN_DIST_E_NETWORK' });
  });
});

describe('remote monitor with the run roles', () => {
  const roles = newRoleTokens();
  const connect = (url: string, secret: string, onRefused?: (m: string) => void) =>
    connectMonitor({ url, token: secret, ganDistVersion: 'test', onLine: () => {}, onClose: () => {}, onRefused });

  it('lets the monitor token watch but refuses its Stop, telling the monitor why', async () => {
    const c = await coordinatorEndpoint(undefined, roles);
    c.monitors.write(JSON.stringify({ event: 'config', config: { iterations: 5 }, msg: 'event' }));
    const q = lineQueue();
    const refused = new Promise<string>((resolve) => {
      void connectMonitor({
        url: c.url,
        token: roles.monitor,
        ganDistVersion: 'test',
        onLine: q.onLine,
        onClose: () => {},
        onRefused: resolve,
      }).then((conn) => conn.requestStop('q pressed'));
    });
    await q.count(1);
    expect(await refused).toMatch(/^Stop refused: .*Stop needs control\.token/);
    expect(c.stops).toEqual([]);
    expect(c.monitors.monitors).toBe(1);
  });

  it("forwards the control token's Stop", async () => {
    const c = await coordinatorEndpoint(undefined, roles);
    const conn = await connect(c.url, roles.control);
    const stopped = new Promise<void>((resolve) => server!.once('message', () => setImmediate(resolve)));
    conn.requestStop('q pressed');
    await stopped;
    expect(c.stops).toEqual([
      expect.stringMatching(/^stop requested by the monitor at 127\.0\.0\.1:\d+ \(q pressed\)$/),
    ]);
    conn.close();
  });

  it('turns the worker token away from watching', async () => {
    const c = await coordinatorEndpoint(undefined, roles);
    const err = await connect(c.url, roles.worker).catch((e) => e);
    expect(err).toMatchObject({ code: 'GAN_DIST_E_AUTH' });
    expect((err as Error).message).toMatch(/does not let a monitor in \(watch with monitor\.token or control\.token\)/);
    expect(c.monitors.monitors).toBe(0);
  });
});
