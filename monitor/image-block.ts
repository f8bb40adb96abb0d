// A sample grid drawn in the terminal: two pixels a cell with the upper half block '▀', the
// upper pixel as its foreground colour and the lower as its background, in truecolor or the
// 256-colour palette; without colour, shades of grey characters. Images are box-filtered down
// to the cells available and keep their aspect ratio.

import sharp from 'sharp';
import { RESET, colorParams, type ColorMode } from './ansi.ts';

export interface RgbImage {
  width: number;
  height: number;
  /** width x height x 3, row-major. */
  rgb: Uint8Array;
}

/** Decodes an image file (the run's PNG sample grids) to 8-bit RGB. */
export async function loadImage(path: string): Promise<RgbImage> {
  const { data, info } = await sharp(path)
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** The cells (columns, rows) an image takes inside a box, a cell being one pixel wide and two high. */
export function fitImage(
  img: { width: number; height: number },
  maxCols: number,
  maxRows: number,
): { cols: number; rows: number } {
  if (maxCols < 1 || maxRows < 1) return { cols: 0, rows: 0 };
  const scale = Math.min(maxCols / img.width, (2 * maxRows) / img.height);
  const cols = Math.max(1, Math.min(maxCols, Math.round(img.width * scale)));
  const px = Math.max(1, Math.round(img.height * scale));
  return { cols, rows: Math.min(maxRows, Math.ceil(px / 2)) };
}

/** `img` box-filtered to w x h pixels. */
export function resample(img: RgbImage, w: number, h: number): RgbImage {
  const out = new Uint8Array(w * h * 3);
  for (let oy = 0; oy < h; oy++) {
    const y0 = Math.floor((oy * img.height) / h);
    const y1 = Math.max(y0 + 1, Math.floor(((oy + 1) * img.height) / h));
    for (let ox = 0; ox < w; ox++) {
      const x0 = Math.floor((ox * img.width) / w);
      const x1 = Math.max(x0 + 1, Math.floor(((ox + 1) * img.width) / w));
      let r = 0;
      let g = 0;
      let b = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * img.width + x) * 3;
          r += img.rgb[i];
          g += img.rgb[i + 1];
          b += img.rgb[i + 2];
        }
      }
      const n = (y1 - y0) * (x1 - x0);
      const o = (oy * w + ox) * 3;
      out[o] = Math.round(r / n);
      out[o + 1] = Math.round(g / n);
      out[o + 2] = Math.round(b / n);
    }
  }
  return { width: w, height: h, rgb: out };
}

const SHADES = ' ░▒▓█';

/** The image as `rows` lines of `cols` cells (from fitImage), each line ending with a reset. */
export function renderImage(img: RgbImage, cols: number, rows: number, mode: ColorMode): string[] {
  if (cols < 1 || rows < 1) return [];
  // Pixel rows: two a cell, but no more than the image's aspect ratio asks for (the last cell's
  // lower half is then left to the terminal's background).
  const px = Math.min(2 * rows, Math.max(1, Math.round((img.height * cols) / img.width)));
  const small = resample(img, cols, px);
  const at = (x: number, y: number): [number, number, number] => {
    const i = (y * cols + x) * 3;
    return [small.rgb[i], small.rgb[i + 1], small.rgb[i + 2]];
  };
  const lines: string[] = [];
  for (let row = 0; row < rows; row++) {
    const yTop = 2 * row;
    const yBottom = yTop + 1;
    let line = '';
    let last = '';
    for (let x = 0; x < cols; x++) {
      if (yTop >= px) {
        line += last ? `${RESET} ` : ' ';
        last = '';
        continue;
      }
      const top = at(x, yTop);
      const bottom = yBottom < px ? at(x, yBottom) : undefined;
      if (mode === 'none') {
        const lum = (c: readonly number[]) => 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        const l = bottom ? (lum(top) + lum(bottom)) / 2 : lum(top);
        line += SHADES[Math.min(SHADES.length - 1, Math.floor((l / 256) * SHADES.length))];
        continue;
      }
      const sgr = `\x1b[${colorParams(top, mode, 'fg')};${bottom ? colorParams(bottom, mode, 'bg') : '49'}m`;
      // Only a change of colours costs a sequence: runs of one colour are cheap to draw.
      if (sgr !== last) line += sgr;
      last = sgr;
      line += '▀';
    }
    lines.push(last ? line + RESET : line);
  }
  return lines;
}
