// Decodes one image file with sharp into uint8 HWC RGB of the configured size, or says why it
// cannot: the one place that knows how a photo becomes training pixels.

import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { describeContent, sniffFormat } from './formats.ts';
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
}

/** Transparent pixels are composited on white, as a photo printed on paper. */
export const ALPHA_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

/** 100 megapixels: 4x a 50 MP camera frame, far below what exhausts memory while decoding. */
export const DEFAULT_MAX_INPUT_PIXELS = 100_000_000;

/**
 * Decodes `file` into `target` (imageSize * imageSize * 3 bytes, HWC RGB). Returns undefined on
 * success or why the file was refused; never throws for a bad file.
 */
export async function decodeInto(file: string, options: DecodeOptions, target: Uint8Array): Promise<Skip | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
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
