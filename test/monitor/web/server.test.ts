// The dashboard's HTTP server on 127.0.0.1:0: nothing without a session, the one-time login
// exchange, the monitor and control roles, Stop's CSRF token, the live stream and its replay,
// and the size limits the coordinator's socket has.

import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_ADMISSION } from '../../../protocol/wire/admission.ts';
import { parseLogLine } from '../../../monitor/log-reader.ts';
import { startDashboard, type Dashboard } from '../../../monitor/web/dashboard.ts';
import { DashboardFeed } from '../../../monitor/web/feed.ts';
import { WEB_LIMITS } from '../../../monitor/web/limits.ts';
import { parseWebAddress } from '../../../monitor/web/web-address.ts';
import { fixtureLines, fixtureSample } from '../../support/monitor-fixture.ts';
import { withDeadline } from '../../support/wait.ts';

interface SessionReply {
  role: string;
  csrf: string;
  canStop: boolean;
}
const MONITOR = 'm'.repeat(64);
const CONTROL = 'c'.repeat(64);
const open: Dashboard[] = [];
afterEach(async () => {
  for (const d of open.splice(0)) await d.close();
});

async function serve(opts: { stop?: (reason: string) => void; tls?: boolean } = {}) {
  const feed = new DashboardFeed();
  for (const line of fixtureLines()) feed.push(parseLogLine(line));
  const d = await startDashboard({
    address: parseWebAddress('127.0.0.1:0'),
    feed,
    title: 'test run',
    credentials: { monitor: MONITOR, control: CONTROL },
    samplePath: (file) => (file === 'iter-000030.png' ? fixtureSample : undefined),
    stop: opts.stop,
    tls: opts.tls,
  });
  open.push(d);
  return { d, feed };
}

/** Logs in with `secret` through the form; the session cookie. */
async function login(origin: string, secret: string): Promise<string> {
  const res = await fetch(`${origin}/login`, {
    method: 'POST',
    body: new URLSearchParams({ token: secret }),
    redirect: 'manual',
  });
  expect(res.status).toBe(303);
  return res.headers.get('set-cookie')!.split(';')[0];
}

describe('the dashboard server', () => {
  it('refuses every request without a session with 401 and no run data', async () => {
    const { d } = await serve();
    for (const path of [
      '/',
      '/api/snapshot',
      '/api/session',
      '/api/stream',
      '/samples/iter-000030.png',
      '/static/dashboard.js',
    ]) {
      const res = await fetch(`${d.origin}${path}`);
      expect(res.status, path).toBe(401);
      expect(await res.text(), path).not.toMatch(/scoreG|iteration|CPU \(wasm/);
    }
    expect((await fetch(`${d.origin}/api/stop`, { method: 'POST' })).status).toBe(401);
    expect((await fetch(`${d.origin}/?token=${'x'.repeat(43)}`, { redirect: 'manual' })).status).toBe(401);
  });

  it('exchanges the one-time link for an HttpOnly SameSite=Strict cookie, redirects to the clean URL, and takes the link only once', async () => {
    const { d } = await serve();
    const res = await fetch(d.loginUrl, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^gan_dist_\d+=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/$/);
    const page = await fetch(`${d.origin}/`, { headers: { cookie: cookie.split(';')[0] } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect((await fetch(d.loginUrl, { redirect: 'manual' })).status).toBe(401);
  });

  it('gives the monitor secret the view and refuses its Stop', async () => {
    const stops: string[] = [];
    const { d } = await serve({ stop: (r) => stops.push(r) });
    const cookie = await login(d.origin, MONITOR);
    const session = (await (await fetch(`${d.origin}/api/session`, { headers: { cookie } })).json()) as SessionReply;
    expect(session).toMatchObject({ role: 'monitor', canStop: true });
    const snapshot = (await (await fetch(`${d.origin}/api/snapshot`, { headers: { cookie } })).json()) as {
      points: number;
    };
    expect(snapshot.points).toBe(30);
    const stop = await fetch(`${d.origin}/api/stop`, {
      method: 'POST',
      headers: { cookie, 'x-csrf-token': session.csrf },
    });
    expect(stop.status).toBe(403);
    expect(stops).toEqual([]);
  });

  it('stops the run for the control secret only with its session CSRF token', async () => {
    const stops: string[] = [];
    const { d } = await serve({ stop: (r) => stops.push(r) });
    const cookie = await login(d.origin, CONTROL);
    const { csrf, role } = (await (
      await fetch(`${d.origin}/api/session`, { headers: { cookie } })
    ).json()) as SessionReply;
    expect(role).toBe('control');
    const post = (token?: string) =>
      fetch(`${d.origin}/api/stop`, {
        method: 'POST',
        headers: { cookie, ...(token ? { 'x-csrf-token': token } : {}) },
      });
    expect((await post()).status).toBe(403);
    expect((await post('x'.repeat(43))).status).toBe(403);
    expect(stops).toEqual([]);
    expect((await post(csrf)).status).toBe(202);
    expect(stops).toEqual([expect.stringMatching(/Stop pressed on the dashboard/)]);
  });

  it('serves a sample grid by its name only', async () => {
    const { d } = await serve();
    const cookie = await login(d.origin, MONITOR);
    const png = await fetch(`${d.origin}/samples/iter-000030.png`, { headers: { cookie } });
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    for (const path of ['/samples/iter-000010.png', '/samples/..%2Fconfig.json', '/samples/../train.log'])
      expect((await fetch(`${d.origin}${path}`, { headers: { cookie } })).status, path).toBe(404);
  });

  it('streams each new line as an update and replays what a reconnecting page missed', async () => {
    const { d, feed } = await serve();
    const cookie = await login(d.origin, MONITOR);
    const seq = feed.lastSeq;
    const line =
      '{"level":"info","time":"2026-11-28T17:42:16.000Z","event":"stop-requested","reason":"x","msg":"event"}';
    feed.push(parseLogLine(line));
    // After seq: the update made meanwhile comes first; from 0, too far back: a reset.
    const read = (after: number) =>
      withDeadline(
        new Promise<string>((resolve, reject) => {
          const req = request(`${d.origin}/api/stream?after=${after}`, { headers: { cookie } }, (res) => {
            let text = '';
            res.on('data', (c) => {
              text += c;
              if (/\n\n.*\n\n/s.test(text)) {
                req.destroy();
                resolve(text);
              }
            });
          });
          req.on('error', reject);
          req.end();
        }),
        'two stream frames',
        5000,
      );
    const replayed = await read(seq);
    expect(replayed).toContain(`id: ${seq + 1}\nevent: update\n`);
    expect(replayed).toContain('"name":"stop-requested"');
    expect(await read(seq + 2)).toContain('event: reset');
  });

  it('refuses a body over the limit from its Content-Length, and headers over 8 KB', async () => {
    const { d } = await serve();
    const big = await fetch(`${d.origin}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${'a'.repeat(WEB_LIMITS.maxBodyBytes)}`,
    });
    expect(big.status).toBe(413);
    const port = Number(new URL(d.origin).port);
    const reply = await withDeadline(
      new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1', () =>
          s.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(WEB_LIMITS.maxHeaderBytes)}\r\n\r\n`),
        );
        let text = '';
        s.on('data', (c) => (text += c));
        s.on('close', () => resolve(text));
      }),
      'the server to answer oversized headers',
      5000,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 431/);
  });

  it("caps connections as the coordinator's socket does", () => {
    expect(WEB_LIMITS).toMatchObject({
      maxPending: DEFAULT_ADMISSION.maxPending,
      maxPendingPerAddress: DEFAULT_ADMISSION.maxPendingPerAddress,
      pendingTimeoutMs: DEFAULT_ADMISSION.upgradeTimeoutMs,
      maxHeaderBytes: 8 * 1024,
    });
  });

  it('serves TLS with the certificate it reports', async () => {
    const { d } = await serve({ tls: true });
    expect(d.origin).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const { get } = await import('node:https');
    const fingerprint = await withDeadline(
      new Promise<string>((resolve, reject) => {
        const req = get(`${d.origin}/`, { rejectUnauthorized: false }, (res) => {
          const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
          expect(res.statusCode).toBe(401);
          res.resume();
          resolve(cert.fingerprint256.replaceAll(':', '').toLowerCase());
        });
        req.on('error', reject);
      }),
      'a TLS answer',
      5000,
    );
    expect(fingerprint).toBe(d.fingerprint);
  });
});
