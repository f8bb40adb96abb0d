// What the data pipeline reports while it works: one union of structured events, declared once.
// The coordinator logs them as JSON lines; `stderrLog` (data/progress.ts) is a view for people.

import type { SkipKind } from './skips.ts';

export type DataEvent =
  | { event: 'data-listed'; level: 'info'; root: string; candidates: number; skipped: number; ignored: number }
  | { event: 'data-skip'; level: 'warn'; file: string; kind: SkipKind; reason: string }
  | { event: 'data-cache-hit'; level: 'info'; file: string; images: number; seconds: number }
  | { event: 'data-cache-miss'; level: 'info'; file: string }
  | { event: 'data-cache-unwritable'; level: 'warn'; file: string; reason: string }
  | {
      event: 'data-progress';
      level: 'info';
      task: 'decode' | 'draw' | 'download';
      done: number;
      total: number;
      unit: 'images' | 'bytes';
      /** Units per second since the task began. */
      rate: number;
      /** Seconds left at that rate; null while unknown. */
      etaS: number | null;
    }
  | {
      event: 'data-decoded';
      level: 'info';
      images: number;
      skipped: number;
      seconds: number;
      imagesPerSecond: number;
      threads: number;
    }
  | { event: 'data-synthetic'; level: 'info'; images: number; imageSize: number; seconds: number }
  | {
      event: 'data-ready';
      level: 'info';
      source: string;
      images: number;
      imageSize: number;
      storage: 'memory' | 'stream';
      bytes: number;
    }
  | { event: 'data-fetch-skipped'; level: 'info'; dir: string }
  | { event: 'data-download-resumed'; level: 'info'; file: string; from: number }
  | { event: 'data-verified'; level: 'info'; file: string; bytes: number; sha256: string; seconds: number }
  | { event: 'data-fetched'; level: 'info'; dir: string; bytes: number; seconds: number };

export type DataLog = (event: DataEvent) => void;

export const silentLog: DataLog = () => {};
