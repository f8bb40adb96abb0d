import { describe, expect, it } from 'vitest';
import { stripAnsi, visibleWidth } from '../../monitor/ansi.ts';
import { axisLabel, dotColumn, dotRow, niceCeil, renderChart, renderLegend } from '../../monitor/chart.ts';

const red = [255, 0, 0] as const;
const blue = [0, 0, 255] as const;

/** The braille dots set in a chart's plot (axis columns and x-axis line left out), as [dotX, dotY]. */
function dots(lines: string[], axis = 4): [number, number][] {
  const out: [number, number][] = [];
  const bits = [
    [0x01, 0, 0],
    [0x02, 0, 1],
    [0x04, 0, 2],
    [0x40, 0, 3],
    [0x08, 1, 0],
    [0x10, 1, 1],
    [0x20, 1, 2],
    [0x80, 1, 3],
  ];
  lines.slice(0, -1).forEach((line, row) => {
    [...stripAnsi(line)].slice(axis).forEach((ch, col) => {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x2800 || cp > 0x28ff) return;
      for (const [bit, dx, dy] of bits) if ((cp - 0x2800) & bit) out.push([col * 2 + dx, row * 4 + dy]);
    });
  });
  return out;
}

describe('braille chart', () => {
  it('draws exactly width x height, axis labels and the first and last x', () => {
    const lines = renderChart({
      xs: [1, 2, 3],
      series: [{ label: 'a', values: [0, 0.5, 1], color: red }],
      width: 30,
      height: 6,
      mode: 'truecolor',
    });
    expect(lines).toHaveLength(6);
    for (const l of lines) expect(visibleWidth(l)).toBe(30);
    const plain = lines.map(stripAnsi);
    expect(plain[0].startsWith('1.0┤')).toBe(true);
    expect(plain[4].startsWith('0.0┤')).toBe(true);
    expect(plain[5].trim()).toMatch(/^1 +iteration +3$/);
  });

  it('puts each value on its dot row: 0 at the bottom, 1 at the top', () => {
    const lines = renderChart({
      xs: [1, 2],
      series: [{ label: 'a', values: [0, 1], color: red }],
      width: 4 + 10,
      height: 6,
      mode: 'none',
    });
    const d = dots(lines);
    const dotsH = 5 * 4;
    expect(d).toContainEqual([0, dotRow(0, dotsH)]);
    expect(d).toContainEqual([19, dotRow(1, dotsH)]);
    expect(dotRow(0, dotsH)).toBe(19);
    expect(dotRow(1, dotsH)).toBe(0);
    // The line joining them leaves no column empty.
    expect(new Set(d.map(([x]) => x)).size).toBe(20);
  });

  it('colours each series and its legend in its own colour', () => {
    const lines = renderChart({
      xs: [1, 2],
      series: [
        { label: 'G', values: [0.1, 0.1], color: red },
        { label: 'D', values: [0.9, 0.9], color: blue },
      ],
      width: 20,
      height: 5,
      mode: 'truecolor',
    });
    const text = lines.join('\n');
    expect(text).toContain('\x1b[38;2;255;0;0m');
    expect(text).toContain('\x1b[38;2;0;0;255m');
    const legend = renderLegend(
      [
        { label: 'G', values: [0.5, 0.1234], color: red },
        { label: 'D', values: [], color: blue },
      ],
      'none',
    );
    expect(legend).toBe('━━ G 0.123   ━━ D -');
  });

  it('places points by their x within xRange: a series sampled every 10th iteration lines up with the iterations', () => {
    // 22 dot columns (0..21) over iterations 0..20: iteration 10 lands halfway, in column round(21 / 2).
    const lines = renderChart({
      xs: [0, 10],
      series: [{ label: 's', values: [1, 1], color: red }],
      xRange: [0, 20],
      width: 4 + 11,
      height: 3,
      mode: 'none',
      xAxis: false,
    });
    expect(lines).toHaveLength(3);
    const d = dots([...lines, '']);
    expect(Math.min(...d.map(([x]) => x))).toBe(0);
    expect(Math.max(...d.map(([x]) => x))).toBe(11);
    // With the axis, it names the range's ends, not the series' first and last x.
    const axis = renderChart({
      xs: [0, 10],
      series: [{ label: 's', values: [1, 1], color: red }],
      xRange: [0, 20],
      width: 30,
      height: 3,
      mode: 'none',
    });
    expect(stripAnsi(axis[2]).trim()).toMatch(/^0 +iteration +20$/);
  });

  it('marks a rule with a dotted line under the series, and names it in the legend', () => {
    const rule = { label: 'floor', value: 25, color: blue };
    const lines = renderChart({
      xs: [1, 2, 3],
      series: [{ label: 'swd', values: [100, 60, 25], color: red }],
      rules: [rule],
      width: 4 + 10,
      height: 5,
      yMin: 0,
      yMax: 100,
      mode: 'truecolor',
    });
    const d = dots(lines.map(stripAnsi));
    const y = dotRow(25, 16, 0, 100);
    const onRule = d.filter(([, dy]) => dy === y).map(([x]) => x);
    // Every other dot column of the rule's row, except where the series passes.
    expect(onRule.filter((x) => x % 2 === 0).length).toBeGreaterThanOrEqual(6);
    expect(lines[Math.floor(y / 4)]).toContain('\x1b[38;2;0;0;255m');
    expect(stripAnsi(lines[0]).startsWith('100┤')).toBe(true);
    expect(stripAnsi(lines[3]).startsWith('  0┤')).toBe(true);
    expect(renderLegend([{ label: 'SWD', values: [95.46], color: red, digits: 1 }], 'none', [rule])).toBe(
      '━━ SWD 95.5   ┄┄ floor 25.0',
    );
  });

  it('labels the y axis in three columns: one decimal below 10, whole numbers, then thousands; tops read well', () => {
    expect([axisLabel(0.5, 1), axisLabel(250, 500), axisLabel(2000, 5000)]).toEqual(['0.5', '250', ' 2k']);
    expect([niceCeil(0.7), niceCeil(192.2), niceCeil(200), niceCeil(312), niceCeil(501)]).toEqual([
      1, 200, 200, 500, 1000,
    ]);
  });

  it('averages points that share a dot column when there are more points than dots', () => {
    const values = Array.from({ length: 1000 }, (_, i) => (i % 2 ? 1 : 0));
    const lines = renderChart({
      xs: values.map((_, i) => i + 1),
      series: [{ label: 'a', values, color: red }],
      width: 14,
      height: 3,
      mode: 'none',
    });
    // Ten cells, twenty dot columns of 50 alternating points each: all at 0.5, the middle row.
    const d = dots(lines);
    expect(new Set(d.map(([, y]) => y))).toEqual(new Set([dotRow(0.5, 8)]));
    expect(dotColumn(999, 1000, 20)).toBe(19);
  });
});
