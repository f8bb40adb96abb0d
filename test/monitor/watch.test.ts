import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newRoleTokens, newToken } from '../../protocol/wire/auth.ts';
import { sampleLocator, watchRemote, watchRun } from '../../monitor/watch.ts';
import type { PeerServer } from '../../coordinator/server.ts';
import { fixtureEvalLines, fixtureLines, fixtureRun, monitorEndpoint } from '../support/monitor-fixture.ts';
import { VirtualKeyboard, VirtualTerminal } from '../support/virtual-terminal.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gan-dist-watch-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('gan-dist watch on a run directory', () => {
  it('prints one plain frame of a finished run without a terminal', async () => {
    let out = '';
    await watchRun({
      target: fixtureRun,
      stdout: {
        isTTY: false,
        write: (s: string) => {
          out += s;
          return true;
        },
        on: () => {},
        off: () => {},
      },
      width: 80,
      height: 24,
    });
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(24);
    expect(out).not.toContain('\x1b');
    expect(lines[1]).toMatch(/iter 30\/30 .* 100%$/);
    expect(lines[2]).toContain('GeneratorScore 0.192');
    // The 5x5 grid in shades: the white tile (24) is the bottom-right block.
    expect(out).toContain('█████');
    expect(out).toContain('/iter-000030.png');
  });

  it('replays a run scored with --eval-every: the SWD chart and its floor under the scores', async () => {
    const run = join(dir, 'run');
    cpSync(fixtureRun, run, { recursive: true });
    writeFileSync(join(run, 'train.log'), `${fixtureEvalLines().join('\n')}\n`);
    let out = '';
    await watchRun({
      target: run,
      stdout: {
        isTTY: false,
        write: (s: string) => {
          out += s;
          return true;
        },
        on: () => {},
        off: () => {},
      },
      width: 100,
      height: 30,
    });
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(30);
    expect(lines[2]).toContain('GeneratorScore 0.192');
    expect(lines.find((l) => l.includes('SWD x1e3'))).toMatch(/━━ SWD x1e3 95\.5 +┄┄ real-vs-real floor 27\.5/);
    expect(lines.some((l) => /^ {4}0 +iteration +30/.test(l))).toBe(true);
  });

  it('finds the samples of a moved run in its own samples/ folder', () => {
    const locate = sampleLocator(fixtureRun);
    expect(locate('/somewhere/else/samples/iter-000030.png')).toBe(join(fixtureRun, 'samples', 'iter-000030.png'));
    expect(locate('/somewhere/else/samples/iter-000099.png')).toBeUndefined();
  });

  it('follows a live run on a terminal, redraws on resize, and q quits leaving the run alone', async () => {
    const run = join(dir, 'run');
    cpSync(fixtureRun, run, { recursive: true });
    const lines = fixtureLines();
    const at20 = lines.findIndex((l) => l.includes('"iteration":20,'));
    writeFileSync(join(run, 'train.log'), `${lines.slice(0, at20 + 1).join('\n')}\n`);
    const term = new VirtualTerminal(80, 24);
    const keys = new VirtualKeyboard();
    const watching = watchRun({ target: run, stdout: term, stdin: keys, colorMode: 'truecolor' });
    await term.until(/iter 20\/30/);
    expect(term.altScreen).toBe(true);
    expect(keys.raw).toBe(true);
    expect(term.lines[0]).toMatch(/RUNNING · 2 workers · 22\.7 img\/s\s*$/);

    appendFileSync(join(run, 'train.log'), `${lines.slice(at20 + 1).join('\n')}\n`);
    await term.until(/iter 30\/30 .* 100%/);
    await term.until('FINISHED');

    term.resize(120, 40);
    // The virtual screen was cleared: what shows now was drawn for the new size.
    await term.until(/100%/);
    expect(term.lines[1].trimEnd()).toHaveLength(120);
    expect(term.lines[39]).toMatch(/^ q quit/);

    keys.type('q');
    await watching;
    expect(term.altScreen).toBe(false);
    expect(keys.raw).toBe(false);
    // The run is not touched: the log is as written.
    expect(readFileSync(join(run, 'train.log'), 'utf8').trim().split('\n')).toHaveLength(lines.length);
  });
});

describe('gan-dist watch ws://', () => {
  let server: PeerServer | undefined;
  afterEach(async () => server?.close());

  it('shows the lines a coordinator forwards; q asks it to stop, then leaves on a second q', async () => {
    const token = newToken();
    const { server: started, url, monitors, stops } = await monitorEndpoint(token);
    server = started;
    for (const l of fixtureLines().slice(0, 20)) monitors.write(`${l}\n`);

    const term = new VirtualTerminal(80, 24);
    const keys = new VirtualKeyboard();
    const watching = watchRemote({
      url,
      token,
      ganDistVersion: 'test',
      stdout: term,
      stdin: keys,
      colorMode: 'truecolor',
    });
    await term.until(/iter 9\/30/);
    expect(term.lines[0]).toContain(`gan-dist · ${url}`);
    expect(term.text).toContain('on the coordinator');
    for (const l of fixtureLines().slice(20)) monitors.write(`${l}\n`);
    await term.until(/iter 30\/30/);

    const stopped = new Promise<void>((resolve) => server!.once('message', () => setImmediate(resolve)));
    keys.type('q');
    await stopped;
    expect(stops).toHaveLength(1);
    await term.until('stop requested');
    keys.type('q');
    await watching;
    expect(term.altScreen).toBe(false);
  });

  it('with a monitor token says q cannot Stop, and q leaves without asking', async () => {
    const tokens = newRoleTokens();
    const { server: started, url, monitors, stops } = await monitorEndpoint(tokens);
    server = started;
    for (const l of fixtureLines().slice(0, 20)) monitors.write(`${l}\n`);
    const term = new VirtualTerminal(100, 24);
    const keys = new VirtualKeyboard();
    const watching = watchRemote({
      url,
      token: tokens.monitor,
      credential: 'monitor',
      ganDistVersion: 'test',
      stdout: term,
      stdin: keys,
      colorMode: 'none',
    });
    await term.until('Stop needs control.token');
    keys.type('q');
    await watching;
    expect(stops).toEqual([]);
  });

  it('shows a Stop the coordinator refused, for a token whose role it did not know', async () => {
    const tokens = newRoleTokens();
    const { server: started, url, stops } = await monitorEndpoint(tokens);
    server = started;
    const term = new VirtualTerminal(120, 24);
    const keys = new VirtualKeyboard();
    const watching = watchRemote({ url, token: tokens.monitor, ganDistVersion: 'test', stdout: term, stdin: keys });
    await term.until('q stop the run');
    keys.type('q');
    await term.until('Stop refused');
    keys.type('d');
    await watching;
    expect(stops).toEqual([]);
  });
});
