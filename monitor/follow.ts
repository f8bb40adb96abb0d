// Reading a log file to its end and, when asked, following what is appended (`tail -f`): woken by
// fs.watch on the file's folder, with a poll as well because fs.watch misses changes on some file
// systems (network mounts, some containers). A line is handed on only once its newline is
// written; a file truncated or replaced (log rotation, a new run behind the same path) is
// read again from its start.

import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { GanDistError } from '../protocol/errors.ts';
import { LineSplitter } from './log-reader.ts';

export interface FollowOptions {
  /** Keep reading what is appended until `signal` aborts; otherwise stop at the end of the file. */
  follow: boolean;
  /** Complete lines, in order, in batches (one batch per read). */
  onLines: (lines: string[]) => void;
  signal?: AbortSignal;
  /** The poll that backs fs.watch up, in ms (default 250: a line shows within a second even without fs.watch). */
  pollMs?: number;
  /** In follow mode, wait for a file that does not exist yet (a run about to start). Default true. */
  waitForFile?: boolean;
  /** Use fs.watch as well as the poll (default true; false tests the poll alone). */
  useWatch?: boolean;
}

const CHUNK = 256 * 1024;

/** Reads `path` to its end, then (with `follow`) keeps reading appends; resolves at the end or on abort. */
export async function followLog(path: string, opts: FollowOptions): Promise<void> {
  const splitter = new LineSplitter();
  const buf = Buffer.alloc(CHUNK);
  let fh: FileHandle | undefined;
  let ino = -1;
  let offset = 0;

  const reopen = async (): Promise<boolean> => {
    await fh?.close().catch(() => undefined);
    fh = undefined;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    ino = (await fh.stat()).ino;
    offset = 0;
    splitter.flush();
    return true;
  };

  const readToEnd = async (): Promise<void> => {
    if (!fh) return;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      const lines = splitter.push(buf.subarray(0, bytesRead));
      if (lines.length) opts.onLines(lines);
    }
  };

  /** One look at the file: opened, replaced or truncated, then whatever is new. */
  const check = async (): Promise<void> => {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // deleted or not there yet: wait
      throw err;
    }
    if (!fh || st.ino !== ino || st.size < offset) {
      if (!(await reopen())) return;
    }
    await readToEnd();
  };

  if (!opts.follow) {
    if (!(await reopen())) {
      throw new GanDistError(
        'GAN_DIST_E_RUN_DIR',
        `${path}: no such log`,
        'give a run directory that a training run has written (e.g. runs/latest); --follow waits for one',
      );
    }
    try {
      await readToEnd();
      const rest = splitter.flush();
      if (rest !== undefined) opts.onLines([rest]);
    } finally {
      await fh?.close();
    }
    return;
  }
  if (opts.waitForFile === false && !(await reopen())) {
    throw new GanDistError('GAN_DIST_E_RUN_DIR', `${path}: no such log`);
  }

  // Checks never overlap: a wake-up during a check asks for one more afterwards.
  let running: Promise<void> | undefined;
  let again = false;
  let failure: unknown;
  const wake = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        await check();
      } while (again);
    })()
      .catch((err) => {
        failure = err;
        done();
      })
      .finally(() => {
        running = undefined;
      });
  };

  let watcher: FSWatcher | undefined;
  const name = basename(path);
  try {
    if (opts.useWatch === false) throw new Error('fs.watch not wanted');
    // The folder, not the file: a watch on the file is lost when the file is replaced.
    watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
      if (file === null || file === name) wake();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined; // the poll alone
  }
  const timer = setInterval(wake, opts.pollMs ?? 250);

  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  if (opts.signal?.aborted) done();
  opts.signal?.addEventListener('abort', () => done(), { once: true });
  wake();
  await finished;
  clearInterval(timer);
  watcher?.close();
  await running;
  await fh?.close().catch(() => undefined);
  if (failure) throw failure;
}
