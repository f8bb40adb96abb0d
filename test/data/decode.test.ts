import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_FILE_BYTES, decodeInto, type DecodeOptions } from '../../data/decode/decode.ts';

const W = 48;
const H = 32;
/** Left half red, right half blue: orientation and mirroring show in which side is which. */
function halves(): Buffer {
  const px = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) px.set(x < W / 2 ? [230, 20, 20] : [20, 20, 230], (y * W + x) * 3);
  }
  return px;
}
const raw = { raw: { width: W, height: H, channels: 3 as const } };

let dir: string;
const options: DecodeOptions = { imageSize: 16, resize: 'stretch', maxInputPixels: 100_000_000 };

async function decode(
  name: string,
  opts: DecodeOptions = options,
): Promise<{ px: Uint8Array; skip: Awaited<ReturnType<typeof decodeInto>> }> {
  const px = new Uint8Array(opts.imageSize * opts.imageSize * 3);
  const skip = await decodeInto(path.join(dir, name), opts, px);
  return { px, skip };
}
const pixel = (px: Uint8Array, x: number, y: number, size = 16): number[] =>
  Array.from(px.subarray((y * size + x) * 3, (y * size + x) * 3 + 3));

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gan-dist-decode-'));
  await sharp(halves(), raw).jpeg().toFile(path.join(dir, 'plain.jpg'));
  await sharp(halves(), raw).jpeg({ progressive: true }).toFile(path.join(dir, 'progressive.jpg'));
  await sharp(halves(), raw).toColourspace('b-w').jpeg().toFile(path.join(dir, 'gray.jpg'));
  await sharp(halves(), raw).toColourspace('cmyk').jpeg().toFile(path.join(dir, 'cmyk.jpg'));
  await sharp(halves(), raw).toColourspace('rgb16').png().toFile(path.join(dir, 'deep.png'));
  await sharp(halves(), raw).gif().toFile(path.join(dir, 'anim.gif'));
  await sharp(halves(), raw).webp({ lossless: true }).toFile(path.join(dir, 'lossless.webp'));
  // Orientation 6: stored as is, shown rotated 90 degrees clockwise (left half becomes the top).
  await sharp(halves(), raw).jpeg().withMetadata({ orientation: 6 }).toFile(path.join(dir, 'rotated.jpg'));
  const rgba = Buffer.alloc(W * H * 4);
  for (let i = 0; i < W * H; i++) rgba.set([0, 200, 0, i % W < W / 2 ? 0 : 255], i * 4);
  await sharp(rgba, { raw: { width: W, height: H, channels: 4 } })
    .png()
    .toFile(path.join(dir, 'alpha.png'));
  // Red, a green band in the middle 20 columns, blue.
  const wide = Buffer.alloc(400 * 20 * 3);
  for (let i = 0; i < 400 * 20; i++) {
    const x = i % 400;
    wide.set(x < 190 ? [230, 20, 20] : x < 210 ? [20, 200, 20] : [20, 20, 230], i * 3);
  }
  await sharp(wide, { raw: { width: 400, height: 20, channels: 3 } })
    .png()
    .toFile(path.join(dir, 'panorama.png'));
  const noise = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  const jpeg = await sharp(noise, { raw: { width: 300, height: 200, channels: 3 } })
    .jpeg()
    .toBuffer();
  await writeFile(path.join(dir, 'truncated.jpg'), jpeg.subarray(0, jpeg.length >> 1));
  await writeFile(path.join(dir, 'empty.jpg'), '');
  await writeFile(path.join(dir, 'text.jpg'), 'this is not a picture\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('decodeInto', () => {
  it('stretches to the output size by default, keeping left-right halves', async () => {
    const { px, skip } = await decode('plain.jpg');
    expect(skip).toBeUndefined();
    expect(pixel(px, 1, 8)[0]).toBeGreaterThan(180);
    expect(pixel(px, 14, 8)[2]).toBeGreaterThan(180);
  });

  it('applies EXIF orientation, so the stored left half ends up on top', async () => {
    const { px, skip } = await decode('rotated.jpg');
    expect(skip).toBeUndefined();
    const [top, bottom] = [pixel(px, 8, 1), pixel(px, 8, 14)];
    expect(top[0]).toBeGreaterThan(180);
    expect(top[2]).toBeLessThan(80);
    expect(bottom[2]).toBeGreaterThan(180);
  });

  it('gives grayscale input three equal channels', async () => {
    const { px, skip } = await decode('gray.jpg');
    expect(skip).toBeUndefined();
    for (let i = 0; i < px.length; i += 3) {
      expect(Math.abs(px[i] - px[i + 1])).toBeLessThanOrEqual(1);
      expect(Math.abs(px[i] - px[i + 2])).toBeLessThanOrEqual(1);
    }
  });

  it('converts CMYK to RGB close to the original colours', async () => {
    const { px, skip } = await decode('cmyk.jpg');
    expect(skip).toBeUndefined();
    const left = pixel(px, 2, 8);
    const right = pixel(px, 13, 8);
    expect(left[0]).toBeGreaterThan(left[2] + 100);
    expect(right[2]).toBeGreaterThan(right[0] + 100);
  });

  it('composites transparency on white', async () => {
    const { px, skip } = await decode('alpha.png');
    expect(skip).toBeUndefined();
    expect(pixel(px, 1, 8)).toEqual([255, 255, 255]);
    expect(pixel(px, 14, 8)).toEqual([0, 200, 0]);
  });

  it('decodes 16-bit PNG, GIF, lossless WebP and progressive JPEG to 8-bit RGB', async () => {
    for (const name of ['deep.png', 'anim.gif', 'lossless.webp', 'progressive.jpg']) {
      const { px, skip } = await decode(name);
      expect(skip, name).toBeUndefined();
      expect(pixel(px, 1, 8)[0], name).toBeGreaterThan(180);
      expect(pixel(px, 14, 8)[2], name).toBeGreaterThan(180);
    }
  });

  it("squeezes a panorama whole by default, and with resize 'cover' keeps only its centre", async () => {
    const stretched = await decode('panorama.png');
    expect(pixel(stretched.px, 0, 8)[0]).toBeGreaterThan(180);
    expect(pixel(stretched.px, 15, 8)[2]).toBeGreaterThan(180);
    const covered = await decode('panorama.png', { ...options, resize: 'cover' });
    for (const x of [0, 8, 15]) expect(pixel(covered.px, x, 8)[1], `column ${x}`).toBeGreaterThan(150);
  });

  it('refuses a truncated JPEG instead of padding it grey', async () => {
    const { skip } = await decode('truncated.jpg');
    expect(skip?.kind).toBe('truncated');
    expect(skip?.reason).toMatch(/truncated/);
  });

  it('refuses a file over the size cap unread, naming its size and the cap', async () => {
    expect(DEFAULT_MAX_FILE_BYTES).toBe(64 * 1024 ** 2);
    const { size } = await stat(path.join(dir, 'plain.jpg'));
    expect(size).toBeLessThan(1024);
    expect((await decode('plain.jpg', { ...options, maxFileBytes: size - 1 })).skip).toEqual({
      kind: 'too-large',
      reason: `file too large: ${size} bytes, over the ${size - 1} bytes limit on an image file's size`,
    });
    expect((await decode('plain.jpg', { ...options, maxFileBytes: size })).skip).toBeUndefined();
  });

  it('names empty files and text dressed as JPEG', async () => {
    expect((await decode('empty.jpg')).skip).toEqual({ kind: 'empty', reason: 'empty file (0 bytes)' });
    const text = (await decode('text.jpg')).skip;
    expect(text?.kind).toBe('not-image');
    expect(text?.reason).toMatch(/text \("this is not a picture"\)/);
  });
});
