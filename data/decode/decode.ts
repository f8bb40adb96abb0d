// Decodes one image file with sharp into uint8 HWC RGB of the configured size, or says why it
// cannot: the one place that knows how a photo becomes training pixels.

import { open } from 'node:fs/promises';
import sharp from 'sharp';
import { describeContent, sniffFormat } from './formats.ts';
import { formatBytes } from '../progress.ts';
import type { Skip } from '../skips.ts';

export type ResizeMode = 'stretch' | 'cover';

export interface DecodeOptions {
  /** Output height and width in pixels. */
  imageSize: number;
  /**
   * 'stretch' scales to imageSize x imageSize without keeping the aspect ratio, as MATLAB's
   * augmentedImageDatastore does by default; 'cover' scales the short side and crops the centre.
   */
  resize: ResizeMode;
  /** Images with more pixels than this (by their header) are refused: decompression bombs. */
  maxInputPixels: number;
  /** Files larger than this are refused unread; DEFAULT_MAX_FILE_BYTES when not given. */
  maxFileBytes?: number;
}

/** Transparent pixels are composited on white, as a photo printed on paper. */
export const ALPHA_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

/** 100 megapixels: 4x a 50 MP camera frame, far below what exhausts memory while decoding. */
export const DEFAULT_MAX_INPUT_PIXELS = 100_000_000;

/**
 * 64 MiB: over twice a 50 MP camera JPEG (~25 MB). A file is read whole before decoding, one per
 * decode lane at a time, so this bounds the memory a folder of huge (or endless) files can take.
 */
export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 ** 2;

/**
 * Decodes `file` into `target` (imageSize * imageSize * 3 bytes, HWC RGB). Returns undefined on
 * success or why the file was refused; never throws for a bad file.
 */
export async function decodeInto(file: string, options: DecodeOptions, target: Uint8Array): Promise<Skip | undefined> {
  let bytes: Buffer;
  try {
    const read = await readCapped(file, options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES);
    if ('kind' in read) return read;
    bytes = read;
  } catch (err) {
    return { kind: 'unreadable', reason: `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})` };
  }
  if (bytes.length === 0) return { kind: 'empty', reason: 'empty file (0 bytes)' };
  const head = bytes.subarray(0, 64);
  if (!sniffFormat(head)) return { kind: 'not-image', reason: `not an image: content is ${describeContent(head)}` };

  // failOn 'truncated' makes libvips stop at a short JPEG or PNG instead of padding it grey.
  const input = { failOn: 'truncated', limitInputPixels: options.maxInputPixels } as const;
  try {
    // metadata() reads the header alone, so a bomb is refused, with its claimed size, before any
    // pixel is allocated; the decode below keeps limitInputPixels as a second guard.
    const meta = await sharp(bytes, { ...input, limitInputPixels: false }).metadata();
    const pixels = (meta.width ?? 0) * (meta.height ?? 0);
    if (pixels > options.maxInputPixels) {
      return {
        kind: 'too-large',
        reason: `image too large: its header says ${meta.width}x${meta.height} (${megapixels(pixels)}), over the ${megapixels(options.maxInputPixels)} limit that guards against decompression bombs`,
      };
    }
    const size = options.imageSize;
    const { data, info } = await sharp(bytes, input)
      .autoOrient()
      .resize(size, size, {
        fit: options.resize === 'cover' ? 'cover' : 'fill',
        position: 'centre',
        // Catmull-Rom: the kernel of MATLAB imresize's default 'bicubic'.
        kernel: 'cubic',
      })
      .flatten({ background: ALPHA_BACKGROUND })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.width !== size || info.height !== size || info.channels !== 3 || data.length !== target.length) {
      return {
        kind: 'corrupt',
        reason: `decoded to an unexpected shape ${info.width}x${info.height}x${info.channels}`,
      };
    }
    target.set(data);
    return undefined;
  } catch (err) {
    return describeSharpError(err, bytes);
  }
}

/**
 * The whole file, or a too-large skip when it holds more than `maxBytes`. Reads at most one byte
 * past the cap, so a file that grows past it after its size was taken is refused, never read whole.
 */
async function readCapped(file: string, maxBytes: number): Promise<Buffer | Skip> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const tooLarge = (bytes: string): Skip => ({
      kind: 'too-large',
      reason: `file too large: ${bytes}, over the ${exactBytes(maxBytes)} limit on an image file's size`,
    });
    if (size > maxBytes) return tooLarge(exactBytes(size));
    const buffer = Buffer.allocUnsafe(size + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) return tooLarge(`over ${maxBytes} bytes`);
      if (length === buffer.length) break;
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** "313 bytes", or "1.2 KB (1234 bytes)": a limit and a size just over it must read apart. */
function exactBytes(n: number): string {
  return n < 1024 ? `${n} bytes` : `${formatBytes(n)} (${n} bytes)`;
}

function megapixels(pixels: number): string {
  return `${(pixels / 1e6).toFixed(pixels < 1e7 ? 1 : 0)} megapixels`;
}

/**
 * Why sharp refused the file. libvips keeps one error buffer for all threads, so under load a
 * message can be lost ("Unknown error"); the file's own structure then tells truncation apart.
 */
function describeSharpError(err: unknown, bytes: Buffer): Skip {
  const message = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(message)) {
    return {
      kind: 'too-large',
      reason: 'image too large: over the pixel limit that guards against decompression bombs',
    };
  }
  if (/premature end|truncated|not enough data|unexpected end/i.test(message) || lacksEndMarker(bytes)) {
    return { kind: 'truncated', reason: 'truncated image: the file ends before its pixel data does' };
  }
  const firstLine = message.split('\n').find((line) => line.trim()) ?? message;
  return { kind: 'corrupt', reason: `corrupt image data: ${firstLine.trim()}` };
}

/** A JPEG without its end-of-image marker near the end, or a PNG without IEND: cut short. */
function lacksEndMarker(bytes: Buffer): boolean {
  const tail = bytes.subarray(Math.max(0, bytes.length - 64));
  const format = sniffFormat(bytes.subarray(0, 64));
  if (format === 'jpeg') return tail.indexOf(Buffer.from([0xff, 0xd9])) < 0;
  if (format === 'png') return tail.indexOf(Buffer.from('IEND', 'latin1')) < 0;
  return false;
}
