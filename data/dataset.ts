// A dataset ready for training: decoded images with their labels and what was skipped, and the
// batch iterators drawn from it.

import { BatchIterator, type BatchIteratorOptions } from './batches.ts';
import type { SkippedSummary } from './skips.ts';
import type { ImageStore } from './store.ts';

export interface DatasetInfo {
  /** 'synthetic', or the absolute path of the image folder. */
  source: string;
  imageSize: number;
  /** Per image: its path relative to the folder (synthetic: 'synthetic/000123'). */
  files: string[];
  /** Per image: the name of its folder (synthetic: 'synthetic'). */
  labels: string[];
  skipped: SkippedSummary;
}

export class Dataset {
  readonly source: string;
  readonly size: number;
  readonly imageSize: number;
  readonly bytesPerImage: number;
  readonly files: readonly string[];
  readonly labels: readonly string[];
  /** The distinct labels, sorted. */
  readonly classes: readonly string[];
  readonly skipped: SkippedSummary;
  /** 'memory' when every image is held in memory, 'stream' when read from the cache file. */
  readonly storage: 'memory' | 'stream';

  constructor(
    private readonly store: ImageStore,
    info: DatasetInfo,
  ) {
    this.source = info.source;
    this.size = store.count;
    this.imageSize = info.imageSize;
    this.bytesPerImage = store.bytesPerImage;
    this.files = info.files;
    this.labels = info.labels;
    this.classes = [...new Set(info.labels)].sort();
    this.skipped = info.skipped;
    this.storage = store.storage;
  }

  /** Image i as imageSize x imageSize x 3 HWC RGB uint8: a view when in memory, a copy when streamed. */
  image(i: number): Uint8Array {
    return this.store.image(i);
  }

  createBatchIterator(options: BatchIteratorOptions): BatchIterator {
    return new BatchIterator(this.store, this.imageSize, options);
  }

  /** Releases the cache file of a streamed dataset; a no-op in memory. */
  close(): void {
    this.store.close();
  }
}
