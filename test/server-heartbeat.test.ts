// The heartbeat drops a peer that stops answering pings, except while it computes a shard: a
// worker's step blocks its event loop for seconds (the full model on a CPU) and must not cost it
// the connection; the dispatcher's step deadline watches it then.

import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PRE_AUTH_LIMITS } from '../coordinator/protocol.ts';
import { PeerServer, type Peer } from '../coordinator/server.ts';

const TOKEN = 'k'.repeat(64);
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const remote = pathToFileURL(new URL('../coordinator/monitor/remote.ts', import.meta.url).pathname).href;

/** A peer in another process whose event loop we can block, as a worker's step does. */
function blockablePeer(url: string): ChildProcess {
  const code = `
    const { connectMonitor } = await import(${JSON.stringify(remote)});
    await connectMonitor({ url: ${JSON.stringify(url)}, token: ${JSON.stringify(TOKEN)}, ganDistVersion: 'test', onLine() {}, onClose() { process.exit(0); } });
    process.stdin.on('data', (d) => {
      const until = Date.now() + Number(String(d).trim());
      while (Date.now() < until) {}
      process.stdout.write('unblocked\\n');
    });`;
  return spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
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
      welcome: (_hello, id) => ({ runId: 'run-1', workerId: id, modelConfig: {}, seed: 0 }),
      heartbeatMs: 100,
    });
    const { port } = await server.listen();
    const peers: Peer[] = [];
    const gone: { id: number; reason: string }[] = [];
    server.on('peer', (p: Peer) => peers.push(p));
    server.on('gone', (p: Peer, reason: string) => gone.push({ id: p.id, reason }));
    try {
      const idle = blockablePeer(`ws://127.0.0.1:${port}`);
      const busy = blockablePeer(`ws://127.0.0.1:${port}`);
      children.push(idle, busy);
      while (peers.length < 2) await new Promise((r) => setTimeout(r, 20));
      const [first, second] = peers;
      second.setComputing(true);
      // Both stop answering for 1.2 s, twelve heartbeat periods.
      const unblocked = (c: ChildProcess) => new Promise((r) => c.stdout!.once('data', r));
      const done = Promise.all([unblocked(idle), unblocked(busy)]);
      idle.stdin!.write('1200\n');
      busy.stdin!.write('1200\n');
      await done;
      await new Promise((r) => setTimeout(r, 300));
      expect(gone.map((g) => g.id)).toEqual([first.id]);
      expect(gone[0].reason).toMatch(/no heartbeat answer within 200 ms/);
      // Done computing, it is watched again: silent for long, it goes too.
      second.setComputing(false);
      const goneBefore = gone.length;
      busy.stdin!.write('1000\n');
      await unblocked(busy);
      await new Promise((r) => setTimeout(r, 300));
      expect(gone.slice(goneBefore).map((g) => g.id)).toEqual([second.id]);
    } finally {
      await server.close();
    }
  }, 30_000);
});
