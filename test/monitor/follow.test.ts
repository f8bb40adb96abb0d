import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GanDistError } from '../../protocol/errors.ts';
import { followLog } from '../../monitor/follow.ts';
import { withDeadline } from '../support/wait.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gan-dist-follow-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A follower whose lines can be awaited: `next(text)` resolves when a line equal to text arrives, or fails after 10 s. */
function follower(path: string, extra: { useWatch?: boolean; pollMs?: number } = {}) {
  const lines: string[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  const stop = new AbortController();
  const done = followLog(path, {
    follow: true,
    signal: stop.signal,
    ...extra,
    onLines: (batch) => {
      lines.push(...batch);
      for (const w of [...waiters]) {
        if (lines.includes(w.text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
  });
  const next = (text: string) =>
    withDeadline(
      new Promise<void>((resolve) => {
        if (lines.includes(text)) resolve();
        else waiters.push({ text, resolve });
      }),
      `the line ${text}`,
      10_000,
    );
  return { lines, next, stop: () => stop.abort(), done };
}

describe('following a log', () => {
  it('reads a finished file to its end, its unterminated last line included', async () => {
    const path = join(dir, 'train.log');
    writeFileSync(path, 'a\nb\n\nc');
    const got: string[] = [];
    await followLog(path, { follow: false, onLines: (l) => got.push(...l) });
    expect(got).toEqual(['a', 'b', 'c']);
  });

  it('says which log is missing', async () => {
    await expect(followLog(join(dir, 'nope.log'), { follow: false, onLines: () => {} })).rejects.toBeInstanceOf(
      GanDistError,
    );
  });

  for (const useWatch of [true, false]) {
    it(`shows appended lines within a second (${useWatch ? 'fs.watch' : 'poll only'}), whole lines only`, async () => {
      const path = join(dir, 'train.log');
      writeFileSync(path, 'old\n');
      const f = follower(path, { useWatch });
      await f.next('old');
      const latencies: number[] = [];
      for (let i = 0; i < 5; i++) {
        const line = `{"msg":"iteration","iteration":${i}}`;
        const t0 = performance.now();
        appendFileSync(path, `${line}\n`);
        await f.next(line);
        latencies.push(performance.now() - t0);
      }
      // A line written in two pieces is handed on once, whole.
      appendFileSync(path, '{"msg":"par');
      await new Promise((r) => setImmediate(r));
      appendFileSync(path, 'tial"}\n');
      await f.next('{"msg":"partial"}');
      f.stop();
      await f.done;
      expect(f.lines).not.toContain('{"msg":"par');
      expect(f.lines).toHaveLength(7);
      console.log(
        `follow latency (${useWatch ? 'fs.watch + poll' : 'poll every 250 ms'}): ${latencies.map((l) => l.toFixed(1)).join(', ')} ms`,
      );
    });
  }

  it('waits for a log that does not exist yet, and starts over when it is replaced', async () => {
    const path = join(dir, 'train.log');
    const f = follower(path, { pollMs: 20 });
    writeFileSync(path, 'first\n');
    await f.next('first');
    const tmp = join(dir, 'new.log');
    writeFileSync(tmp, 'second\n');
    renameSync(tmp, path);
    await f.next('second');
    f.stop();
    await f.done;
    expect(f.lines).toEqual(['first', 'second']);
  });
});
