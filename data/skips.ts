// Why a file was left out of a dataset: a stable kind for counting, and a reason for people.

import { byCodePoint } from './listing.ts';

export type SkipKind =
  | 'empty'
  | 'not-image'
  | 'junk'
  | 'unsupported'
  | 'truncated'
  | 'corrupt'
  | 'too-large'
  | 'unreadable';

export interface Skip {
  kind: SkipKind;
  /** One line naming what is wrong, and what to do when there is something. */
  reason: string;
}

/** A skipped file, named by its path relative to the data folder. */
export interface SkippedFile extends Skip {
  rel: string;
}

export interface SkippedSummary {
  /** Files that looked like images but could not be used. */
  files: SkippedFile[];
  byKind: Partial<Record<SkipKind, number>>;
  /** Files that are plainly not images (LICENSE.txt, .DS_Store), left out silently. */
  ignored: number;
}

/** The summary of skips from listing and decoding, in path order. */
export function summariseSkips(files: SkippedFile[], ignored: number): SkippedSummary {
  files = [...files].sort((a, b) => byCodePoint(a.rel, b.rel));
  const byKind: SkippedSummary['byKind'] = {};
  for (const f of files) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
  return { files, byKind, ignored };
}

/** "3 skipped (1 truncated, 2 not-image)" or "none skipped". */
export function describeSkips(summary: SkippedSummary): string {
  if (summary.files.length === 0) return 'none skipped';
  const parts = Object.entries(summary.byKind).map(([kind, n]) => `${n} ${kind}`);
  return `${summary.files.length} skipped (${parts.join(', ')})`;
}
