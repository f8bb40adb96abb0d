// The heartbeat drops a peer that stops answering pings, except while it computes a shard: a
// worker's step blocks its event loop for seconds (the full model on a CPU) and must not cost it
// the connection; the dispatcher's step deadline watches it then.

import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PRE_AUTH_LIMITS } from '../../protocol/wire/protocol.ts';
import { PeerServer, type Peer } from '../../coordinator/server.ts';
import { waitFor } from '../support/wait.ts';

const TOKEN = 'k'.repeat(64);
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const remote = pathToFileURL(new URL('../../monitor/remote.ts', import.meta.url).pathname).href;

/** A peer in another process whose event loop we can block, as a worker's step does. */
function blockablePeer(url: string): { child: ChildProcess; id: Promise<number> } {
  const code = `
    const { connectMonitor } = await import(${JSON.stringify(remote)});
    const c = await connectMonitor({ url: ${JSON.stringify(url)}, token: ${JSON.stringify(TOKEN)}, ganDistVersion: 'test', onLine() {}, onClose() { process.exit(0); } });
    process.stdout.write('id ' + c.welcome.workerId + '\\n');
    process.stdin.on('data', (d) => {
      const until = Date.now() + Number(String(d).trim());
      while (Date.now() < until) {}
      process.stdout.write('unblocked\\n');
    });`;
  const child = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', code], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  // Its peer id, from the coordinator's welcome: connection order says nothing about which is which.
  const id = new Promise<number>((resolve) =>
    child.stdout!.once('data', (d) => resolve(Number(/id (\d+)/.exec(String(d))![1]))),
  );
  return { child, id };
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

describe('heartbeat', () => {
  it('drops a silent idle peer, keeps a silent one computing a shard', async () => {
    const server = new PeerServer({
      host: '127.0.0.1',
      port: 0,
      token: TOKEN,
      paramTableHash: 'f'.repeat(64),
      limits: { ...PRE_AUTH_LIMITS, maxFrameBytes: 1 << 20, maxHeaderBytes: 1 << 19 },
      welcome: (_hello, id) => ({
        runId: 'run-1',
        workerId: id,
        modelConfig: { latent: 8, filters: 4, imageSize: 32, batchSize: 16 },
        seed: 0,
      }),
      heartbeatMs: 100,
    });
    const { port } = await server.listen();
    const peers: Peer[] = [];
    const gone: { id: number; reason: string }[] = [];
    server.on('peer', (p: Peer) => peers.push(p));
    server.on('gone', (p: Peer, reason: string) => gone.push({ id: p.id, reason }));
    try {
      const idleChild = blockablePeer(`ws://127.0.0.1:${port}`);
      const busyChild = blockablePeer(`ws://127.0.0.1:${port}`);
      const [idleId, busyId] = await Promise.all([idleChild.id, busyChild.id]);
      const [idle, busy] = [idleChild.child, busyChild.child];
      await waitFor(() => peers.length >= 2, 'both peers to finish the handshake', 10_000);
      const first = peers.find((p) => p.id === idleId)!;
      const second = peers.find((p) => p.id === busyId)!;
      second.setComputing(true);
      // Both stop answering for 2.5 s, 25 heartbeat periods (room for a loaded machine's timers).
      const unblocked = (c: ChildProcess) => new Promise((r) => c.stdout!.once('data', r));
      const goneIn = (id: number, ms: number) =>
        waitFor(() => gone.some((g) => g.id === id), `the heartbeat to drop peer ${id}`, ms);
      const done = Promise.all([unblocked(idle), unblocked(busy)]);
      idle.stdin!.write('2500\n');
      busy.stdin!.write('2500\n');
      await done;
      await goneIn(first.id, 5000);
      expect(gone.map((g) => g.id)).toEqual([first.id]);
      expect(gone[0].reason).toMatch(/no heartbeat answer within 200 ms/);
      // Done computing, it is watched again: silent for long, it goes too.
      second.setComputing(false);
      const goneBefore = gone.length;
      busy.stdin!.write('2500\n');
      await unblocked(busy);
      await goneIn(second.id, 5000);
      expect(gone.slice(goneBefore).map((g) => g.id)).toEqual([second.id]);
    } finally {
      await server.close();
    }
  }, 60_000);
});
