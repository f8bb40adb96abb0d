// Which files are images: the extensions and content signatures (magic bytes) of the formats
// sharp's prebuilt libvips decodes, and a reason for the files it cannot.

/** Formats sharp 0.34 decodes out of the box, named as sharp's metadata() names them. */
export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'heif' | 'svg';

/** Extensions (lower case, no dot) taken as images without reading the file first. */
const IMAGE_EXTENSIONS: ReadonlyMap<string, ImageFormat> = new Map([
  ['jpg', 'jpeg'],
  ['jpeg', 'jpeg'],
  ['jpe', 'jpeg'],
  ['jfif', 'jpeg'],
  ['png', 'png'],
  ['gif', 'gif'],
  ['webp', 'webp'],
  ['tif', 'tiff'],
  ['tiff', 'tiff'],
  ['avif', 'heif'],
  ['svg', 'svg'],
]);

/** Image formats a user may reasonably drop in a folder that sharp's prebuilt binary cannot read. */
const UNSUPPORTED_EXTENSIONS: ReadonlyMap<string, string> = new Map([
  ['bmp', 'BMP'],
  ['ico', 'ICO'],
  ['psd', 'Photoshop PSD'],
  ['jxl', 'JPEG XL'],
  // The prebuilt libvips reads AVIF but not HEIC (a patent-encumbered codec).
  ['heic', 'HEIC'],
  ['heif', 'HEIC'],
  ['cr2', 'camera RAW'],
  ['nef', 'camera RAW'],
  ['arw', 'camera RAW'],
  ['dng', 'camera RAW'],
]);

/** How many leading bytes `sniffFormat` needs. */
export const SNIFF_BYTES = 64;

export function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
}

export function isImageExtension(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extensionOf(name));
}

/** The name of an image format sharp cannot decode, when the extension says it is one. */
export function unsupportedFormatOf(name: string): string | undefined {
  return UNSUPPORTED_EXTENSIONS.get(extensionOf(name));
}

/** The image format the leading bytes announce, or undefined when they match none. */
export function sniffFormat(head: Uint8Array): ImageFormat | undefined {
  const at = (offset: number, ...bytes: number[]): boolean =>
    head.length >= offset + bytes.length && bytes.every((b, i) => head[offset + i] === b);
  const ascii = (offset: number, text: string): boolean => at(offset, ...Array.from(text, (c) => c.charCodeAt(0)));

  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  if (ascii(4, 'ftyp') && ['avif', 'avis', 'mif1', 'msf1'].some((b) => ascii(8, b))) {
    return 'heif';
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head).trimStart();
  if (/^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*<svg[\s>]/i.test(text)) return 'svg';
  return undefined;
}

/** A short description of what non-image bytes look like, for a skip reason. */
export function describeContent(head: Uint8Array): string {
  if (head.length >= 4 && head[0] === 0x00 && head[1] === 0x05 && head[2] === 0x16 && head[3] === 0x07) {
    return 'macOS AppleDouble metadata';
  }
  if (head.length >= 2 && head[0] === 0x42 && head[1] === 0x4d) return 'BMP data (not decodable by sharp)';
  const printable = head.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f) || b >= 0x80);
  if (printable) {
    const start = new TextDecoder().decode(head.subarray(0, 24)).replace(/\s+/g, ' ').trim();
    return `text ("${start}${head.length > 24 ? '…' : ''}")`;
  }
  const hex = Array.from(head.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `unknown binary data (starts ${hex})`;
}
