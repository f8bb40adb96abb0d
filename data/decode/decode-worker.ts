// The piscina worker that decodes a chunk of files straight into the shared output buffer.

import { decodeInto } from './decode.ts';
import type { DecodeTask } from './decoder.ts';
import type { Skip } from '../skips.ts';

/** Returns one entry per file: undefined when decoded, else why it was refused. */
export default async function decodeChunk(task: DecodeTask): Promise<(Skip | undefined)[]> {
  const bytesPerImage = task.options.imageSize * task.options.imageSize * 3;
  const out = new Uint8Array(task.shared);
  const reasons: (Skip | undefined)[] = [];
  // One file at a time: the pool's threads are the parallelism, sharp's own threads the rest.
  for (let i = 0; i < task.files.length; i++) {
    const slot = task.slots[i];
    reasons.push(
      await decodeInto(task.files[i], task.options, out.subarray(slot * bytesPerImage, (slot + 1) * bytesPerImage)),
    );
  }
  return reasons;
}
