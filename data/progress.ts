// Progress of a long data task (decode, download) as throttled events, and the stderr view of
// data events: a redrawn bar on a terminal, plain lines otherwise.

import type { DataEvent, DataLog } from './events.ts';

type ProgressEvent = Extract<DataEvent, { event: 'data-progress' }>;

/** Emits `data-progress` at most every `intervalMs`, and always for the first and last update. */
export class ProgressTracker {
  private readonly started = performance.now();
  private lastEmit = -Infinity;
  /** Units already done before this task began (a resumed download): not counted in the rate. */
  private base = 0;

  constructor(
    private readonly log: DataLog,
    private readonly task: ProgressEvent['task'],
    private readonly unit: ProgressEvent['unit'],
    private total: number,
    private readonly intervalMs = 100,
  ) {}

  /** The task continues earlier work that had reached `done`. */
  startAt(done: number): void {
    this.base = done;
  }

  update(done: number, total = this.total): void {
    this.total = total;
    const now = performance.now();
    const final = total > 0 && done >= total;
    if (!final && done > 0 && now - this.lastEmit < this.intervalMs) return;
    this.lastEmit = now;
    const seconds = (now - this.started) / 1000;
    const rate = seconds > 0 ? Math.max(0, done - this.base) / seconds : 0;
    const etaS = total > 0 && rate > 0 ? Math.max(0, (total - done) / rate) : null;
    this.log({ event: 'data-progress', level: 'info', task: this.task, done, total, unit: this.unit, rate, etaS });
  }
}

/** Writes data events for people: a bar redrawn in place on a TTY, a line every few seconds otherwise. */
export function stderrLog(stream: NodeJS.WriteStream = process.stderr): DataLog {
  const tty = stream.isTTY === true;
  let barShown = false;
  let lastLine = -Infinity;
  const clearBar = (): void => {
    if (barShown) stream.write('\r\x1b[2K');
    barShown = false;
  };
  return (event) => {
    if (event.event === 'data-progress') {
      const final = event.total > 0 && event.done >= event.total;
      if (tty) {
        stream.write(`\r\x1b[2K${formatProgress(event, Math.min(40, Math.max(10, (stream.columns ?? 80) - 50)))}`);
        barShown = !final;
        if (final) stream.write('\n');
      } else if (final || performance.now() - lastLine > 5000) {
        lastLine = performance.now();
        stream.write(`${formatProgress(event, 0)}\n`);
      }
      return;
    }
    const line = describeEvent(event);
    if (!line) return;
    clearBar();
    stream.write(`${line}\n`);
  };
}

/** "decode [#####.....]  120/300 images  150/s  ETA 1s"; no bar when width is 0. */
export function formatProgress(event: ProgressEvent, width: number): string {
  const fraction = event.total > 0 ? Math.min(1, event.done / event.total) : 0;
  const bar = width > 0 ? ` [${'#'.repeat(Math.round(fraction * width)).padEnd(width, '.')}]` : '';
  const amount = (n: number): string => (event.unit === 'bytes' ? formatBytes(n) : String(Math.round(n)));
  const parts = [
    `${event.task}${bar}`,
    `${amount(event.done)}${event.total > 0 ? `/${amount(event.total)}` : ''}${event.unit === 'images' ? ' images' : ''}`,
    `${amount(event.rate)}/s`,
  ];
  if (event.etaS !== null && event.done < event.total) parts.push(`ETA ${formatSeconds(event.etaS)}`);
  return parts.join('  ');
}

function describeEvent(event: Exclude<DataEvent, ProgressEvent>): string | undefined {
  switch (event.event) {
    case 'data-skip':
      return `warning: skipped ${event.file}: ${event.reason}`;
    case 'data-cache-unwritable':
      return `warning: cannot write the decoded-image cache ${event.file}: ${event.reason}`;
    case 'data-cache-hit':
      return `data: ${event.images} decoded images from cache in ${event.seconds.toFixed(2)} s`;
    case 'data-decoded':
      return `data: decoded ${event.images} images in ${event.seconds.toFixed(1)} s (${Math.round(event.imagesPerSecond)}/s), ${event.skipped} skipped`;
    case 'data-synthetic':
      return `data: drew ${event.images} synthetic ${event.imageSize}x${event.imageSize} flowers in ${event.seconds.toFixed(1)} s`;
    case 'data-ready':
      return `data: ${event.images} images of ${event.imageSize}x${event.imageSize} from ${event.source}, ${event.storage === 'memory' ? 'in memory' : 'streamed from the cache file'} (${formatBytes(event.bytes)})`;
    case 'data-fetch-skipped':
      return `data: ${event.dir} already exists; nothing to fetch`;
    case 'data-download-resumed':
      return `data: resuming the download of ${event.file} at ${formatBytes(event.from)}`;
    case 'data-verified':
      return `data: ${event.file} is ${event.bytes} bytes with SHA-256 ${event.sha256}, as expected`;
    case 'data-fetched':
      return `data: fetched ${formatBytes(event.bytes)} into ${event.dir} in ${event.seconds.toFixed(1)} s`;
    default:
      return undefined;
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
