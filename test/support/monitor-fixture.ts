// The recorded run of test/fixtures/monitor-run, folded into the monitor's view; and a
// coordinator's endpoint as monitors see it.

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LogBroadcaster, attachMonitors } from '../../coordinator/monitor/broadcast.ts';
import { parseLogLine } from '../../coordinator/monitor/log-reader.ts';
import { PRE_AUTH_LIMITS } from '../../coordinator/protocol.ts';
import { PeerServer } from '../../coordinator/server.ts';
import type { TlsIdentity } from '../../coordinator/tls.ts';
import { applyLine, createRunView, type RunView } from '../../coordinator/monitor/view-model.ts';

export const fixtureRun = resolve(import.meta.dirname, '..', 'fixtures', 'monitor-run');
export const fixtureSample = join(fixtureRun, 'samples', 'iter-000030.png');

export function fixtureLines(): string[] {
  return readFileSync(join(fixtureRun, 'train.log'), 'utf8').trim().split('\n');
}

export function fixtureView(count = Infinity): RunView {
  const view = createRunView();
  for (const line of fixtureLines().slice(0, count)) applyLine(view, parseLogLine(line));
  return view;
}

/** The tile colours the fixture's sample PNG was made with (see its README). */
export function tileColour(k: number): [number, number, number] {
  if (k === 0) return [255, 0, 0];
  if (k === 1) return [0, 255, 0];
  if (k === 2) return [0, 0, 255];
  if (k === 24) return [255, 255, 255];
  return [k * 10, 255 - k * 10, (k * 37) % 256];
}

/** A coordinator's endpoint as far as monitors see it: PeerServer on 127.0.0.1:0 with the broadcaster attached. */
export async function monitorEndpoint(token: string, tls?: TlsIdentity) {
  const monitors = new LogBroadcaster();
  const stops: string[] = [];
  const server = new PeerServer({
    host: '127.0.0.1',
    port: 0,
    token,
    paramTableHash: 'f'.repeat(64),
    limits: { ...PRE_AUTH_LIMITS, maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 19 },
    welcome: (_hello, id) => ({ runId: 'run-1', workerId: id, modelConfig: {}, seed: 0 }),
    tls,
  });
  attachMonitors(server, monitors, (r) => stops.push(r));
  const { port } = await server.listen();
  return { server, url: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, monitors, stops };
}
