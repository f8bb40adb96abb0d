import { describe, expect, it } from 'vitest';
import { stripAnsi, visibleWidth } from '../../monitor/ansi.ts';
import { dotRow } from '../../monitor/chart.ts';
import { loadImage } from '../../monitor/image-block.ts';
import { renderScreen, type RenderOptions } from '../../monitor/render.ts';
import type { RunView } from '../../monitor/view-model.ts';
import { FIXTURE_SWD, fixtureEvalLines, fixtureSample, fixtureView, tileColour } from '../support/monitor-fixture.ts';

async function screen(
  width: number,
  height: number,
  extra: Partial<RenderOptions> = {},
  view: RunView = fixtureView(),
) {
  const image = await loadImage(fixtureSample);
  const lines = renderScreen(view, {
    width,
    height,
    mode: 'truecolor',
    now: Date.now(),
    title: 'test/fixtures/monitor-run',
    sample: { path: '/tmp/fixture-run/samples/iter-000030.png', iteration: 30, image },
    keys: ' q quit ',
    ...extra,
  });
  return { lines, plain: lines.map(stripAnsi) };
}

const DOT_BITS = [
  [0x01, 0x02, 0x04, 0x40],
  [0x08, 0x10, 0x20, 0x80],
];

describe('the watch screen', () => {
  it('fits 80x24 exactly', async () => {
    const { lines } = await screen(80, 24);
    expect(lines).toHaveLength(24);
    for (const l of lines) expect(visibleWidth(l)).toBeLessThanOrEqual(80);
  });

  it("shows the fixture's progress: epoch, iteration, elapsed, ETA and a full bar", async () => {
    const { plain } = await screen(80, 24);
    expect(plain[0]).toMatch(/^gan-dist · test\/fixtures\/monitor-run +FINISHED · 0 workers · 15\.4 img\/s$/);
    expect(plain[1]).toMatch(/^epoch 1\/1 {2}iter 30\/30 {2}elapsed 0:33 {2}ETA 0:00 {2}\[█+\] +100%$/);
  });

  it("draws both scores with the fixture's latest values, each on its own dot row", async () => {
    const { lines, plain } = await screen(80, 24);
    expect(plain[2]).toContain('━━ GeneratorScore 0.192');
    expect(plain[2]).toContain('━━ DiscriminatorScore 0.670');
    const top = plain.findIndex((l) => l.startsWith('1.0┤'));
    const bottom = plain.findIndex((l) => l.startsWith('0.0┤'));
    expect(top).toBe(3);
    const plotH = bottom - top + 1;
    expect(plain[bottom + 1]).toMatch(/^ {4}1 +iteration +30/);
    // The last point of each series is in the plot's last cell column, right-hand dot column.
    const chartRows = plain.slice(top, bottom + 1).map((l) => [...l]);
    const lastCol = Math.max(...chartRows.map((cells) => cells.findLastIndex((c) => c >= '⠀' && c <= '⣿')));
    for (const [value, colour] of [
      [0.19152, '38;2;0;114;189'],
      [0.66983, '38;2;217;83;25'],
    ] as const) {
      const y = dotRow(value, plotH * 4);
      const cell = chartRows[Math.floor(y / 4)][lastCol];
      expect((cell.codePointAt(0)! - 0x2800) & DOT_BITS[1][y % 4]).not.toBe(0);
      expect(lines[top + Math.floor(y / 4)]).toContain(`\x1b[${colour}m${cell}`);
    }
  });

  it('charts the SWD of eval lines under the scores: latest score, the floor as a dotted rule, one shared x axis', async () => {
    const { lines, plain } = await screen(80, 24, {}, fixtureView(Infinity, fixtureEvalLines()));
    expect(lines).toHaveLength(24);
    for (const l of lines) expect(visibleWidth(l)).toBeLessThanOrEqual(80);
    expect(plain[2]).toContain('━━ GeneratorScore 0.192');
    const legend = plain.findIndex((l) => l.includes('━━ SWD x1e3 95.5'));
    expect(plain[legend]).toContain('┄┄ real-vs-real floor 27.5');
    // The scores' chart above it has no x axis line of its own: it ends on its 0.0 row.
    expect(plain[3].startsWith('1.0┤')).toBe(true);
    expect(plain[legend - 1].startsWith('0.0┤')).toBe(true);
    // From zero to a round top above the first score; the x axis spans iterations 0..30.
    expect(plain[legend + 1].startsWith('200┤')).toBe(true);
    const axis = plain.findIndex((l, i) => i > legend && /^ {4}0 +iteration +30/.test(l));
    expect(plain[axis - 1].startsWith('  0┤')).toBe(true);
    const plotH = axis - legend - 1;
    const rows = plain.slice(legend + 1, axis).map((l) => [...l]);
    // The last score, 95.5, in the plot's last dot column, in the SWD colour.
    const lastCol = Math.max(...rows.map((cells) => cells.findLastIndex((c, i) => i < 58 && c >= '⠁' && c <= '⣿')));
    const y = dotRow(FIXTURE_SWD.swd.at(-1)!, plotH * 4, 0, 200);
    const cell = rows[Math.floor(y / 4)][lastCol];
    expect((cell.codePointAt(0)! - 0x2800) & DOT_BITS[1][y % 4]).not.toBe(0);
    expect(lines[legend + 1 + Math.floor(y / 4)]).toContain(`\x1b[38;2;119;172;48m${cell}`);
    // The floor's row carries the rule's grey dots.
    const floorRow = Math.floor(dotRow(FIXTURE_SWD.floor, plotH * 4, 0, 200) / 4);
    expect(lines[legend + 1 + floorRow]).toMatch(/\x1b\[38;2;128;128;128m[⠁-⣿]/);
  });

  it('keeps the scores chart whole where the SWD would not fit, and draws no SWD without eval lines', async () => {
    const cramped = await screen(80, 16, {}, fixtureView(Infinity, fixtureEvalLines()));
    expect(cramped.plain.some((l) => l.includes('SWD x1e3'))).toBe(false);
    expect(cramped.plain.some((l) => /^ {4}1 +iteration +30/.test(l))).toBe(true);
    const plain = await screen(80, 24);
    expect(plain.plain.some((l) => l.includes('SWD'))).toBe(false);
  });

  it('lists the workers that joined, with address, device, backend and state', async () => {
    const { plain } = await screen(80, 24);
    const rule = plain.findIndex((l) => l.startsWith('── workers: 0 live, 2 left'));
    expect(plain[rule + 1]).toMatch(/^ +id address +device +backend +state +img\/s$/);
    expect(plain[rule + 2]).toMatch(/^ +1 127\.0\.0\.1:35554 +CPU \(wasm, SIMD, 1 thread\) +wasm +left/);
    expect(plain[rule + 3]).toMatch(/^ +2 127\.0\.0\.1:35558 /);
  });

  it("indents a node's local workers under it while it is joined", async () => {
    const view = fixtureView();
    const node = view.workers.get(2)!;
    node.state = 'joined';
    node.local = [
      { rank: 0, device: 'CPU a', backend: 'wasm', state: 'joined', imagesPerSec: 12.5 },
      { rank: 1, device: 'CPU b', backend: 'wasm', state: 'restarting' },
    ];
    const { plain } = await screen(80, 40, {}, view);
    const at = plain.findIndex((l) => /^ +2 127\.0\.0\.1:35558 /.test(l));
    expect(plain[at + 1]).toMatch(/^ +\.0 +└ local +CPU a +wasm +joined +12\.5$/);
    expect(plain[at + 2]).toMatch(/^ +\.1 +└ local +CPU b +wasm +restarting +-$/);
  });

  it('draws the latest sample grid in half blocks beside the chart, with its path', async () => {
    const { lines, plain } = await screen(80, 24);
    const imageRows = lines.filter((l) => l.includes('▀'));
    expect(imageRows).toHaveLength(10);
    // 40x40 pixels in 20 columns: a tile is 4 columns and 2 rows, in its own colour top and bottom.
    const cell = (c: readonly number[]) => `\x1b[38;2;${c.join(';')};48;2;${c.join(';')}m▀▀▀▀`;
    expect(imageRows[0]).toContain(`${cell(tileColour(0))}\x1b[38;2;${tileColour(1).join(';')}`);
    expect(imageRows[9]).toContain(cell(tileColour(24)));
    expect(plain.some((l) => /…\S*\/iter-000030\.png$/.test(l))).toBe(true);
  });

  it('shows recent events and the keys', async () => {
    const { plain } = await screen(80, 24, { status: 'all done' });
    expect(plain.some((l) => /^\d\d:\d\d:\d\d {2}run finished at iteration 30 *$/.test(l))).toBe(true);
    expect(plain[23]).toMatch(/^ q quit {3}all done/);
  });

  it('uses more room on a larger terminal', async () => {
    const small = await screen(80, 24);
    const large = await screen(160, 48);
    expect(large.lines).toHaveLength(48);
    for (const l of large.lines) expect(visibleWidth(l)).toBeLessThanOrEqual(160);
    const imageRows = (s: { lines: string[] }) => s.lines.filter((l) => l.includes('▀')).length;
    expect(imageRows(large)).toBeGreaterThan(imageRows(small));
    const eventRows = (s: { plain: string[] }) =>
      s.plain.length - s.plain.findIndex((l) => l.startsWith('── events')) - 2;
    expect(eventRows(large)).toBeGreaterThan(eventRows(small));
  });

  it('says so when the terminal is too small, and never draws past its edge', async () => {
    const { plain } = await screen(30, 8);
    expect(plain).toHaveLength(8);
    expect(plain[2]).toContain('enlarge');
    for (const l of plain) expect(visibleWidth(l)).toBeLessThanOrEqual(30);
  });

  it('shows why a sample grid is not drawn, and the 256-colour palette without truecolor', async () => {
    const { plain } = await screen(80, 24, {
      sample: {
        path: '/elsewhere/samples/iter-000100.png',
        iteration: 100,
        note: 'the sample grid is on the coordinator',
      },
    });
    expect(plain[2]).toMatch(/the sample grid is +$/);
    expect(plain[3]).toMatch(/on the coordinator +$/);
    const { lines } = await screen(80, 24, { mode: '256' });
    expect(lines.join('\n')).toContain('\x1b[38;5;196;48;5;196m▀');
    expect(lines.join('\n')).not.toContain('38;2;');
  });
});
