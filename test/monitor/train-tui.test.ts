import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTrainTui, trainTuiHooks } from '../../monitor/train-tui.ts';
import { fixtureEvalLines, fixtureRun } from '../support/monitor-fixture.ts';
import { VirtualKeyboard, VirtualTerminal } from '../support/virtual-terminal.ts';

let run: string;
beforeEach(() => {
  run = join(mkdtempSync(join(tmpdir(), 'gan-dist-tui-')), 'run');
  cpSync(fixtureRun, run, { recursive: true });
});
afterEach(() => rmSync(join(run, '..'), { recursive: true, force: true }));

describe("train's terminal UI", () => {
  it('q asks the coordinator to stop; a second Ctrl-C quits at once', async () => {
    const term = new VirtualTerminal(80, 24);
    const keys = new VirtualKeyboard();
    const stops: (string | undefined)[] = [];
    let forced = 0;
    const tui = startTrainTui({
      coordinator: { requestStop: (r) => stops.push(r) },
      runDir: run,
      stdout: term,
      stdin: keys,
      onForceQuit: () => forced++,
    });
    await term.until(/iter 30\/30/);
    keys.type('q');
    expect(stops).toEqual(['stop requested from the terminal UI']);
    await term.until('finishing the iteration, then a checkpoint');
    keys.type('q');
    expect(stops).toHaveLength(1);
    expect(forced).toBe(0);
    keys.type('\x03');
    expect(forced).toBe(1);
    expect(term.altScreen).toBe(false);
    tui.stop();
  });

  it("shows train's lines on the bottom line and prints the last when it gives the terminal back", async () => {
    const term = new VirtualTerminal(100, 24);
    const keys = new VirtualKeyboard();
    const tui = startTrainTui({ coordinator: { requestStop: () => {} }, runDir: run, stdout: term, stdin: keys });
    await term.until(/iter 30\/30/);
    tui.pin('dashboard https://127.0.0.1:8080');
    tui.print('finished at iteration 30; run directory /x');
    await term.until('finished at iteration 30; run directory /x');
    // The pinned address stays in the header after later lines replace the bottom one.
    expect(term.lines[0]).toContain('dashboard https://127.0.0.1:8080');
    term.written = '';
    tui.stop();
    expect(term.altScreen).toBe(false);
    expect(keys.raw).toBe(false);
    expect(term.written).toContain(
      'iter 30  ep 1  G 0.192 D 0.670  lossG 1.92 lossD 0.83  15.4 img/s  2 w\nfinished at iteration 30; run directory /x\n',
    );
    tui.stop();
  });

  it('charts the SWD once --eval-every lines reach the log, and follows each new score', async () => {
    const lines = fixtureEvalLines();
    const cut = lines.findIndex((l) => l.includes('"event":"eval","iteration":20'));
    writeFileSync(join(run, 'train.log'), `${lines.slice(0, cut).join('\n')}\n`);
    const term = new VirtualTerminal(80, 24);
    const tui = startTrainTui({
      coordinator: { requestStop: () => {} },
      runDir: run,
      stdout: term,
      stdin: new VirtualKeyboard(),
    });
    await term.until('SWD x1e3 150.4');
    expect(term.lines.join('\n')).toContain('real-vs-real floor 27.5');
    appendFileSync(join(run, 'train.log'), `${lines.slice(cut).join('\n')}\n`);
    await term.until('SWD x1e3 95.5');
    tui.stop();
  });

  it('stays out of the way without a terminal: lines are printed as before', () => {
    const printed: string[] = [];
    const hooks = trainTuiHooks({
      enabled: true,
      stdout: { isTTY: false, write: () => true, on: () => {}, off: () => {} },
      stdin: new VirtualKeyboard(),
      print: (l) => printed.push(l),
    });
    hooks.onCoordinator({ requestStop: () => {} }, run);
    hooks.print('iter 1/30');
    hooks.stop();
    expect(printed).toEqual(['iter 1/30']);
  });

  it('takes over a terminal once the coordinator exists, and only when enabled', async () => {
    const term = new VirtualTerminal(80, 24);
    const printed: string[] = [];
    const off = trainTuiHooks({
      enabled: false,
      stdout: term,
      stdin: new VirtualKeyboard(),
      print: (l) => printed.push(l),
    });
    off.onCoordinator({ requestStop: () => {} }, run);
    expect(term.altScreen).toBe(false);
    const on = trainTuiHooks({
      enabled: true,
      stdout: term,
      stdin: new VirtualKeyboard(),
      print: (l) => printed.push(l),
      runDir: run,
    });
    on.print('before the UI');
    on.onCoordinator({ requestStop: () => {} });
    await term.until(/iter 30\/30/);
    on.print('inside the UI');
    on.stop();
    expect(printed).toEqual(['before the UI']);
    expect(term.written.endsWith('inside the UI\n')).toBe(true);
  });
});
