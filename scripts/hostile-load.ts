// Hostile load on a coordinator of the seed's model (issue 18's must-show): while 2 simulated
// workers train over sockets, strangers in another process (scripts/hostile-peers.ts, from
// 127.0.0.2 and up) each write a 40 MB frame without authenticating, then hold 2,000 idle TCP
// sockets while an honest worker joins from 127.0.0.1. Prints JSON: the coordinator's peak RSS in
// each phase over the peak of plain training, the iterations each phase saw and whether every one
// completed, the join times, and what train.log made of the rejections.
//
//   npx tsx scripts/hostile-load.ts [--phase-s 8] [--step-ms 300] [--sockets 200] [--idle 2000]

import { execSync, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Coordinator } from '../coordinator/coordinator.ts';
import { train } from '../coordinator/train/train.ts';
import { resolveConfig } from '../protocol/config.ts';
import type { HostileCommand, HostileReply } from './hostile-peers.ts';

const { values: args } = parseArgs({
  options: {
    'phase-s': { type: 'string', default: '8' },
    'step-ms': { type: 'string', default: '300' },
    sockets: { type: 'string', default: '200' },
    idle: { type: 'string', default: '2000' },
  },
});
const phaseMs = Number(args['phase-s']) * 1000;
const stepMs = Number(args['step-ms']);
const floodSockets = Number(args.sockets);
const idleSockets = Number(args.idle);
const FRAME_BYTES = 40 * 1024 * 1024;
const MB = 1024 * 1024;

// Both processes hold thousands of sockets.
const fdLimit = Number(execSync('ulimit -n', { shell: '/bin/sh' }).toString().trim());
if (fdLimit < idleSockets + 500) {
  throw new Error(`ulimit -n is ${fdLimit}; --idle ${idleSockets} needs at least ${idleSockets + 500}`);
}

const loopback = (first: number, count: number) => Array.from({ length: count }, (_, i) => `127.0.0.${first + i}`);

function peers(): ChildProcess {
  return fork(new URL('./hostile-peers.ts', import.meta.url).pathname, [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function ask<C extends HostileCommand['cmd']>(
  child: ChildProcess,
  c: Extract<HostileCommand, { cmd: C }>,
): Promise<Extract<HostileReply, { cmd: C }>> {
  return new Promise((resolve) => {
    const on = (r: HostileReply) => {
      if (r.cmd !== c.cmd) return;
      child.off('message', on);
      resolve(r as Extract<HostileReply, { cmd: C }>);
    };
    child.on('message', on);
    child.send(c);
  });
}

const cwd = mkdtempSync(path.join(os.tmpdir(), 'gan-dist-hostile-'));
let coordinator: Coordinator | undefined;
let runDir = '';
const iterations: number[] = [];
const config = resolveConfig({ flags: { iterations: 1_000_000 } });
const run = train({
  config,
  data: 'synthetic',
  listen: '127.0.0.1:0',
  workers: 2,
  backend: 'wasm',
  simulateStepMs: stepMs,
  transport: 'socket',
  checkpointEvery: 0,
  keepCheckpoints: 1,
  runDir: path.join(cwd, 'run'),
  cwd,
  skipFinalCheckpoint: true,
  onCoordinator: (c, dir) => {
    coordinator = c;
    runDir = dir;
    c.watchIterations((r) => iterations.push(r.iteration));
  },
});

let peak = 0;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage.rss());
}, 5);

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`hostile-load: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Phase {
  phase: string;
  peakRssMB: number;
  iterations: number;
  seconds: number;
  [k: string]: unknown;
}

/** Runs `body` as one phase: the peak RSS and the iterations completed while it ran. */
async function phase(name: string, body: () => Promise<Record<string, unknown>>): Promise<Phase> {
  peak = process.memoryUsage.rss();
  const it0 = iterations.length;
  const t0 = performance.now();
  const out = await body();
  // Every phase sees at least two iterations complete, however slow the host.
  await until(`two iterations in phase ${name}`, () => iterations.length >= it0 + 2, 120_000);
  return {
    phase: name,
    peakRssMB: Math.round(peak / MB),
    iterations: iterations.length - it0,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
    ...out,
  };
}

const attacker = peers();
const joiner = peers();
const phases: Phase[] = [];
try {
  await until('the coordinator to listen', () => coordinator?.endpoint !== undefined, 120_000);
  const port = Number(coordinator!.endpoint!.split(':').pop());
  const url = `ws://127.0.0.1:${port}`;
  const tokenFile = path.join(runDir, 'worker.token');
  // Warm-up: the first iterations allocate what training keeps.
  await until('3 iterations of warm-up', () => iterations.length >= 3, 300_000);
  phases.push(await phase('baseline: training only', () => new Promise((r) => setTimeout(() => r({}), phaseMs))));
  for (const addresses of [loopback(2, 1), loopback(2, 7)]) {
    phases.push(
      await phase(`flood: ${floodSockets} sockets x 40 MB from ${addresses.length} address(es)`, async () => ({
        ...(await ask(attacker, {
          cmd: 'flood',
          port,
          sockets: floodSockets,
          frameBytes: FRAME_BYTES,
          addresses,
          durationMs: phaseMs,
        })),
      })),
    );
  }
  for (const addresses of [loopback(2, 1), loopback(2, 100)]) {
    phases.push(
      await phase(`idle: ${idleSockets} TCP sockets from ${addresses.length} address(es), a worker joins`, async () => {
        const idle = await ask(attacker, { cmd: 'idle', port, sockets: idleSockets, addresses });
        const join = await ask(joiner, { cmd: 'join', url, tokenFile, simulateStepMs: stepMs });
        await ask(attacker, { cmd: 'release' });
        return { ...idle, joinMs: Math.round(join.joinMs), joinExit: join.exitCode };
      }),
    );
  }
} finally {
  clearInterval(sampler);
  coordinator?.requestStop('hostile load done');
  attacker.kill();
  joiner.kill();
}
const result = await run;
const log = readFileSync(path.join(runDir, 'train.log'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const summaries = log.filter((l) => l.event === 'peers-rejected');
const rejections: Record<string, number> = {};
for (const s of summaries) rejections[s.kind] = (rejections[s.kind] ?? 0) + s.count;
const baseline = phases[0].peakRssMB;
console.log(
  JSON.stringify(
    {
      model: { filters: config.filters, imageSize: config.imageSize, batchSize: config.batchSize },
      fdLimit,
      stepMs,
      state: result.state,
      iterations: iterations.length,
      everyIterationCompleted: iterations.every((it, i) => it === i + 1),
      phases: phases.map((p) => ({ ...p, rssGrowthMB: p.peakRssMB - baseline })),
      log: {
        peerRejectedLines: log.filter((l) => l.event === 'peer-rejected').length,
        peersRejectedLines: summaries.length,
        rejections,
      },
    },
    null,
    2,
  ),
);
rmSync(cwd, { recursive: true, force: true });
