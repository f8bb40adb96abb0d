// The exit statuses of README's "Error codes and exit codes" table, as the parent process (a
// shell, srun, a Kubernetes Job) sees them: each one produced by the real CLI, spawned.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { newToken, readTokenFile } from '../../protocol/wire/auth.ts';
import { resolveConfig, workerModelConfigOf } from '../../protocol/config.ts';
import { PeerServer } from '../../coordinator/server.ts';
import { encodeMessage, PROTOCOL_VERSION, type FrameLimits } from '../../protocol/wire/protocol.ts';
import { runWorker } from '../../worker/client.ts';
import { startCoordinator } from '../support/harness.ts';
import { killStartedClis, runCli, startCli, workerLines } from '../support/cli.ts';
import { waitFor } from '../support/wait.ts';

afterEach(killStartedClis);

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'gan-dist-exit-'));
const tiny = resolveConfig({ preset: 'tiny', flags: { seed: 3, validationFrequency: 1e6 } });
/** A worker that tries once: what a launcher sees on the first failure. */
const worker = (url: string, token: string, extra: string[] = []) =>
  runCli(['worker', '--join', url, '--backend', 'wasm', '--threads', '1', '--reconnect-timeout', '0', ...extra], {
    env: { GAN_DIST_TOKEN: token, GAN_DIST_RANK: undefined },
  });
const exitLine = (stderr: string) => workerLines(stderr).find((l) => l.event === 'exit');

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

describe('gan-dist exit statuses', () => {
  it('a finished run exits 0, and so does each of its local workers', async () => {
    const cwd = tmp();
    const r = await runCli(
      [
        'train',
        '--preset',
        'tiny',
        '--data',
        'synthetic',
        '--workers',
        '1',
        '--iterations',
        '2',
        '--run-dir',
        'run',
        '--no-tui',
      ],
      { cwd },
    );
    expect(r.code, r.stderr).toBe(0);
    const exits = readFileSync(path.join(cwd, 'run/train.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === 'worker-exited');
    expect(exits.map((l) => l.code)).toEqual([0]);
  });

  it('a run that fails exits with its error code: 6 when training diverged', async () => {
    const cwd = tmp();
    const run = path.join(cwd, 'run');
    const coordinator = startCli(
      ['train', '--preset', 'tiny', '--data', 'synthetic', '--workers', '0', '--min-workers', '1'].concat([
        '--listen',
        '127.0.0.1:0',
        '--iterations',
        '50',
        '--run-dir',
        run,
        '--no-tui',
      ]),
      { cwd },
    );
    await waitFor(() => existsSync(path.join(run, 'endpoint')), 'the coordinator to write its endpoint', 60_000);
    const { token } = await readTokenFile(path.join(run, 'worker.token'));
    // A worker whose every gradient holds a NaN: with no other worker to recompute it, the run has diverged.
    await runWorker({
      url: `ws://${readFileSync(path.join(run, 'endpoint'), 'utf8').trim()}`,
      token,
      backend: 'wasm',
      ganDistVersion: 'test',
      simulateStepMs: 1,
      simulateNonFinite: true,
    });
    const r = await coordinator.exited;
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toMatch(/training diverged at iteration 1.*\[GAN_DIST_E_DIVERGED\]/);
  });

  it('a worker with a well-formed token of another run exits 10', async () => {
    const h = await startCoordinator(tiny, { minWorkers: 1 });
    try {
      const r = await worker(`ws://${h.endpoint}`, newToken());
      expect(r.code, r.stderr).toBe(10);
      expect(exitLine(r.stderr)).toMatchObject({ code: 10, reason: expect.stringMatching(/proof does not match/) });
    } finally {
      h.coordinator.requestStop('test over');
    }
  });

  it('a worker whose parameter table differs from the coordinator exits 11', async () => {
    const token = newToken();
    const limits: FrameLimits = { maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 16, maxTensors: 0 };
    // A coordinator whose model code differs: it expects another table than the one the worker builds.
    const server = new PeerServer({
      host: '127.0.0.1',
      port: 0,
      token,
      paramTableHash: 'f'.repeat(64),
      limits,
      welcome: (_hello, id) => ({
        runId: 'other-model',
        workerId: id,
        modelConfig: workerModelConfigOf(tiny),
        seed: 0,
      }),
    });
    const { port } = await server.listen();
    try {
      const r = await worker(`ws://127.0.0.1:${port}`, token);
      expect(r.code, r.stderr).toBe(11);
      expect(exitLine(r.stderr)?.reason).toMatch(/parameter table [0-9a-f]{64}, the coordinator has f{64}/);
    } finally {
      await server.close();
    }
  });

  it('a worker meeting a coordinator of another protocol version exits 11', async () => {
    // What a coordinator one protocol version ahead answers a hello with: a reject, in its own version.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    wss.on('connection', (ws) =>
      ws.once('message', () => {
        const frame = encodeMessage({
          type: 'reject',
          code: 'GAN_DIST_E_PROTOCOL',
          reason: `the worker speaks protocol version ${PROTOCOL_VERSION}; this coordinator speaks version ${PROTOCOL_VERSION + 1}: run the same gan-dist version on both`,
        });
        frame.writeUInt16LE(PROTOCOL_VERSION + 1, 4);
        ws.send(frame);
      }),
    );
    try {
      const { port } = wss.address() as { port: number };
      const r = await worker(`ws://127.0.0.1:${port}`, newToken());
      expect(r.code, r.stderr).toBe(11);
      expect(exitLine(r.stderr)?.reason).toMatch(new RegExp(`speaks version ${PROTOCOL_VERSION + 1}`));
    } finally {
      await new Promise((resolve) => wss.close(resolve));
    }
  });

  it('a worker with no coordinator exits 12 once --reconnect-timeout has passed', async () => {
    const port = await freePort();
    const t0 = performance.now();
    const r = await worker(`ws://127.0.0.1:${port}`, newToken(), ['--reconnect-timeout', '1']);
    expect(r.code, r.stderr).toBe(12);
    expect(performance.now() - t0).toBeGreaterThan(1000);
    expect(exitLine(r.stderr)?.reason).toMatch(/gave up reconnecting after 1000 ms/);
  });

  it.each([
    ['a malformed command line', 2, ['worker'], /required option '--join <url>'/],
    [
      'a missing data folder',
      4,
      ['train', '--data', '/nonexistent/images', '--preset', 'tiny', '--no-tui'],
      /GAN_DIST_E_DATA/,
    ],
    ['a missing run to resume', 5, ['train', '--resume', '/nonexistent/run', '--no-tui'], /GAN_DIST_E_RUN_DIR/],
    [
      'a missing token file',
      10,
      ['worker', '--join', 'ws://127.0.0.1:9', '--token-file', '/nonexistent/token'],
      /GAN_DIST_E_AUTH/,
    ],
  ] as const)('%s exits %i', async (_what, code, args, message) => {
    const r = await runCli([...args], { cwd: tmp() });
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr).toMatch(message);
  });
});
