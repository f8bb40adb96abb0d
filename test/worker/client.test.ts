import { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { newToken } from '../../protocol/wire/auth.ts';
import { runWorker } from '../../worker/client.ts';
import { WorkerExit } from '../../worker/session-options.ts';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

const base = { token: newToken(), backend: 'wasm' as const, ganDistVersion: 'test', simulateStepMs: 1 };

describe('worker client', () => {
  it('refuses a frame over 4 KB from a coordinator that has not proved the token, from its header', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    servers.push(wss);
    await new Promise((r) => wss.once('listening', r));
    // A stranger answering the worker's hello with a 1 MB frame instead of a challenge.
    wss.on('connection', (ws) => ws.once('message', () => ws.send(Buffer.alloc(2 ** 20))));
    const { port } = wss.address() as { port: number };
    const o = await runWorker({ ...base, url: `ws://127.0.0.1:${port}` });
    expect(o.exitCode).toBe(WorkerExit.COORDINATOR_GONE);
    expect(o.reason).toMatch(/Max payload size exceeded/);
    expect(o.joined).toBe(false);
  });

  it('refuses plain ws:// beyond this machine, and to a coordinator whose certificate the token file pins', async () => {
    await expect(runWorker({ ...base, url: 'ws://10.1.2.3:7070' })).rejects.toMatchObject({
      code: 'GAN_DIST_E_AUTH',
      message: expect.stringMatching(/plain ws:\/\/ is refused beyond this machine \(10\.1\.2\.3\)/),
    });
    await expect(runWorker({ ...base, url: 'ws://127.0.0.1:7070', fingerprint: 'a'.repeat(64) })).rejects.toMatchObject(
      { code: 'GAN_DIST_E_AUTH', hint: 'join with wss://127.0.0.1:7070' },
    );
  });
});
