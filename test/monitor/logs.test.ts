import { spawn } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GanDistError } from '../../protocol/errors.ts';
import { stripAnsi } from '../../monitor/ansi.ts';
import { logPathOf, showLogs } from '../../monitor/logs.ts';

import { repoRoot as repo } from '../support/paths.ts';
const fixture = join(repo, 'test', 'fixtures', 'monitor-run');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gan-dist-logs-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function collect(opts: Partial<Parameters<typeof showLogs>[0]>): Promise<string[]> {
  let out = '';
  await showLogs({ target: fixture, utc: true, write: (t) => (out += t), ...opts });
  return out.split('\n').filter((l) => l !== '');
}

describe('gan-dist logs', () => {
  it('prints iteration lines compactly and events as key=value, in UTC when asked', async () => {
    const lines = await collect({});
    expect(lines).toHaveLength(readFileSync(join(fixture, 'train.log'), 'utf8').trim().split('\n').length);
    expect(lines).toContain('17:42:15  iter 30  ep 1  G 0.192 D 0.670  lossG 1.92 lossD 0.83  15.4 img/s  2 w');
    expect(lines).toContain(
      '17:41:43  event worker-joined worker=2 role=worker address=127.0.0.1:35558 backend=wasm device="CPU (wasm, SIMD, 1 thread)"',
    );
    expect(lines).toContain(
      '17:42:15  event checkpoint-written iteration=30 path=/tmp/fixture-run/checkpoints/iter-000030 ms=202',
    );
  });

  it('--json prints the lines exactly as written', async () => {
    const lines = await collect({ json: true });
    expect(`${lines.join('\n')}\n`).toBe(readFileSync(join(fixture, 'train.log'), 'utf8'));
  });

  it('--since N starts at iteration N', async () => {
    const lines = await collect({ since: 28 });
    expect(lines[0]).toContain('iter 28 ');
    expect(lines.some((l) => l.includes('iter 27 '))).toBe(false);
    expect(lines.at(-1)).toContain('event worker-exited rank=1');
    const json = await collect({ since: 28, json: true });
    expect(JSON.parse(json[0]).iteration).toBe(28);
  });

  it('marks warnings and errors, in colour on a terminal', async () => {
    const path = join(dir, 'train.log');
    writeFileSync(
      path,
      `${JSON.stringify({
        level: 'warn',
        time: '2025-01-01T10:00:00Z',
        event: 'worker-left',
        worker: 3,
        reason: 'missed the step deadline',
        msg: 'event',
      })}\n`,
    );
    let plain = '';
    await showLogs({ target: path, utc: true, write: (t) => (plain += t) });
    expect(plain).toBe('10:00:00  WARN event worker-left worker=3 reason="missed the step deadline"\n');
    let coloured = '';
    await showLogs({ target: path, utc: true, color: true, write: (t) => (coloured += t) });
    expect(coloured).toContain('\x1b[38;5;');
    expect(stripAnsi(coloured)).toBe(plain);
  });

  it('takes runs/latest, a run directory or the log file itself', () => {
    expect(logPathOf(fixture)).toBe(join(fixture, 'train.log'));
    expect(logPathOf(join(fixture, 'train.log'))).toBe(join(fixture, 'train.log'));
    expect(() => logPathOf(join(dir, 'missing'))).toThrow(GanDistError);
  });

  it('--follow shows the lines of a live run within a second of their being written', async () => {
    cpSync(fixture, join(dir, 'run'), { recursive: true });
    const log = join(dir, 'run', 'train.log');
    // The command as the CLI registers it, in its own process: what a user sees in a terminal.
    const harness = join(dir, 'cli.mts');
    writeFileSync(
      harness,
      `import { Command } from ${JSON.stringify(join(repo, 'node_modules/commander/esm.mjs'))};\n` +
        `import { registerLogsCommand } from ${JSON.stringify(join(repo, 'cmd/logs.ts'))};\n` +
        `const program = new Command('gan-dist');\nregisterLogsCommand(program);\nawait program.parseAsync(process.argv);\n`,
    );
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', harness, 'logs', join(dir, 'run'), '--follow', '--since', '30', '--utc'],
      { cwd: repo },
    );
    let out = '';
    const waiters: { text: string; resolve: () => void }[] = [];
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of [...waiters]) {
        if (!out.includes(w.text)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    });
    const appears = (text: string) =>
      new Promise<void>((res) => (out.includes(text) ? res() : waiters.push({ text, resolve: res })));
    try {
      await appears('iter 30 ');
      const latencies: number[] = [];
      for (let i = 31; i <= 35; i++) {
        const line = {
          level: 'info',
          time: new Date().toISOString(),
          iteration: i,
          epoch: 1,
          scoreG: 0.2,
          scoreD: 0.6,
          lossG: 1.9,
          lossD: 0.8,
          imagesPerSec: 15,
          workers: 2,
          msg: 'iteration',
        };
        const t0 = performance.now();
        appendFileSync(log, `${JSON.stringify(line)}\n`);
        await appears(`iter ${i} `);
        latencies.push(performance.now() - t0);
      }
      console.log(
        `gan-dist logs --follow: lines appeared ${latencies.map((l) => l.toFixed(1)).join(', ')} ms after being written`,
      );
      expect(out).toContain('iter 35  ep 1  G 0.200 D 0.600');
    } finally {
      child.kill('SIGINT');
    }
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
  });
});
