import { describe, expect, it } from 'vitest';
import { stripAnsi } from '../../monitor/ansi.ts';
import { fitImage, loadImage, renderImage, resample } from '../../monitor/image-block.ts';
import { fixtureSample, tileColour } from '../support/monitor-fixture.ts';

describe('image block', () => {
  it('decodes the sample PNG to RGB', async () => {
    const img = await loadImage(fixtureSample);
    expect([img.width, img.height]).toEqual([40, 40]);
    expect([...img.rgb.subarray(0, 3)]).toEqual(tileColour(0));
    const lastPixel = (40 * 40 - 1) * 3;
    expect([...img.rgb.subarray(lastPixel, lastPixel + 3)]).toEqual(tileColour(24));
  });

  it('fits an image in a box keeping its aspect ratio, two pixels a row', () => {
    expect(fitImage({ width: 40, height: 40 }, 20, 20)).toEqual({ cols: 20, rows: 10 });
    expect(fitImage({ width: 40, height: 40 }, 80, 5)).toEqual({ cols: 10, rows: 5 });
    expect(fitImage({ width: 80, height: 20 }, 40, 20)).toEqual({ cols: 40, rows: 5 });
  });

  it('box-filters down: each output pixel is the mean of its source block', () => {
    const img = { width: 2, height: 2, rgb: new Uint8Array([0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0]) };
    expect([...resample(img, 1, 1).rgb]).toEqual([128, 128, 128]);
  });

  it('draws upper half blocks with the top pixel as foreground and the bottom as background', async () => {
    const img = await loadImage(fixtureSample);
    // 10 x 10 pixels: each tile of 8x8 becomes 2x2, so a cell is one tile's colour, top and bottom.
    const lines = renderImage(img, 10, 5, 'truecolor');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(stripAnsi(l)).toBe('▀'.repeat(10));
    const cell = (c: readonly number[]) => `\x1b[38;2;${c.join(';')};48;2;${c.join(';')}m▀▀`;
    expect(lines[0].startsWith(cell(tileColour(0)))).toBe(true);
    expect(lines[0]).toContain(cell(tileColour(1)));
    expect(lines[0]).toContain(cell(tileColour(2)));
    expect(lines[4]).toContain(cell(tileColour(24)));
  });

  it('uses the 256-colour palette, or shades without colour', async () => {
    const img = await loadImage(fixtureSample);
    expect(renderImage(img, 10, 5, '256')[0].startsWith('\x1b[38;5;196;48;5;196m▀▀')).toBe(true);
    const grey = renderImage(img, 10, 5, 'none');
    expect(grey[4].endsWith('██')).toBe(true);
    expect(grey.join('')).not.toContain('\x1b');
  });
});
