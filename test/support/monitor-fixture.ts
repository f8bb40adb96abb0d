// The recorded run of test/fixtures/monitor-run, folded into the monitor's view; and a
// coordinator's endpoint as monitors see it.

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LogBroadcaster, attachMonitors } from '../../coordinator/broadcast.ts';
import { parseLogLine } from '../../monitor/log-reader.ts';
import { PRE_AUTH_LIMITS } from '../../protocol/wire/protocol.ts';
import { PeerServer } from '../../coordinator/server.ts';
import type { TlsIdentity } from '../../protocol/wire/tls.ts';
import type { RoleTokens } from '../../protocol/wire/auth.ts';
import { applyLine, createRunView, type RunView } from '../../monitor/view-model.ts';

/** A coordinator's iteration line as train.log holds it, at iteration `n`. */
export const iterationLogLine = (n: number, fields: Record<string, unknown> = {}) =>
  JSON.stringify({
    level: 'info',
    iteration: n,
    epoch: 1,
    scoreG: 0.5,
    scoreD: 0.5,
    lossG: 1,
    lossD: 1,
    imagesPerSec: 10,
    workers: 2,
    ...fields,
    msg: 'iteration',
  });

export const fixtureRun = resolve(import.meta.dirname, '..', 'fixtures', 'monitor-run');
export const fixtureSample = join(fixtureRun, 'samples', 'iter-000030.png');

export function fixtureLines(): string[] {
  return readFileSync(join(fixtureRun, 'train.log'), 'utf8').trim().split('\n');
}

export function fixtureView(count = Infinity, lines = fixtureLines()): RunView {
  const view = createRunView();
  for (const line of lines.slice(0, count)) applyLine(view, parseLogLine(line));
  return view;
}

/** The SWD scores fixtureEvalLines adds: every 10 iterations, and the floor. */
export const FIXTURE_SWD = { floor: 27.5, iterations: [0, 10, 20, 30], swd: [192.2, 150.4, 120.7, 95.5] };

/**
 * The fixture's lines as a run with `--eval-every 10` writes them: `eval-floor` before the
 * workers join, and each `eval` line two iteration lines after the one it scores (scored while
 * training went on); the last before the run's end.
 */
export function fixtureEvalLines(): string[] {
  const ev = (fields: Record<string, unknown>) =>
    JSON.stringify({ level: 'info', time: '2026-11-28T17:41:43.000Z', ...fields, msg: 'event' });
  const score = (k: number) =>
    ev({
      event: 'eval',
      iteration: FIXTURE_SWD.iterations[k],
      swd: FIXTURE_SWD.swd[k],
      swdLevels: [FIXTURE_SWD.swd[k] - 20, FIXTURE_SWD.swd[k] + 20],
      resolutions: [32, 16],
      floor: FIXTURE_SWD.floor,
      count: 128,
      ms: 900,
    });
  const out: string[] = [];
  for (const line of fixtureLines()) {
    if (line.includes('"to":"stopping"')) out.push(score(3));
    out.push(line);
    if (line.includes('"event":"config"'))
      out.push(
        ev({
          event: 'eval-floor',
          iteration: 0,
          swd: FIXTURE_SWD.floor,
          swdLevels: [17.2, 37.8],
          resolutions: [32, 16],
          count: 128,
          seed: 0,
        }),
      );
    if (line.includes('"to":"running"')) out.push(score(0));
    if (line.includes('"iteration":12,"epoch"')) out.push(score(1));
    if (line.includes('"iteration":22,"epoch"')) out.push(score(2));
  }
  return out;
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
export async function monitorEndpoint(token: string | RoleTokens, tls?: TlsIdentity) {
  const monitors = new LogBroadcaster();
  const stops: string[] = [];
  const server = new PeerServer({
    host: '127.0.0.1',
    port: 0,
    token,
    paramTableHash: 'f'.repeat(64),
    limits: { ...PRE_AUTH_LIMITS, maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 19 },
    welcome: (_hello, id) => ({
      runId: 'run-1',
      workerId: id,
      modelConfig: { latent: 8, filters: 4, imageSize: 32, batchSize: 16 },
      seed: 0,
    }),
    tls,
  });
  attachMonitors(server, monitors, (r) => stops.push(r));
  const { port } = await server.listen();
  return { server, url: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, monitors, stops };
}
