// A resumable HTTPS download into a file: https only (redirects included), a byte cap that holds
// before a byte past it is written, and the partial file kept on failure so the next try asks the
// server for the rest (HTTP Range). What the bytes must be is the caller's check (data/fetch.ts).

import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { GanDistError } from '../protocol/errors.ts';
import type { DataLog } from './events.ts';
import { formatBytes, ProgressTracker } from './progress.ts';

export interface DownloadOptions {
  /** Never more bytes than this: a larger announced size is refused before its body is read. */
  maxBytes: number;
  /** The exact size the file must have, when known; a response announcing another is refused. */
  expectedBytes?: number;
  /** A stalled connection fails after this long without a byte. */
  idleTimeoutMs: number;
  /** Certificates to trust instead of Node's bundled CAs (a mirror behind its own CA; tests). */
  ca?: string | Buffer;
  log: DataLog;
}

export interface Downloaded {
  /** Size of the whole file. */
  bytes: number;
  /** Bytes that were already there from an earlier, interrupted try. */
  resumedFrom: number;
}

const MAX_REDIRECTS = 5;

/**
 * Downloads `url` into `file`, continuing from the bytes already in it when the server honours a
 * Range request (a 200 instead starts over). Resolves once the server has sent the whole file. On
 * a network failure the file stays, for the next call to resume; a body that runs past the cap is
 * deleted, as it cannot be the right file.
 */
export async function downloadTo(url: string, file: string, options: DownloadOptions): Promise<Downloaded> {
  const limit = Math.min(options.maxBytes, options.expectedBytes ?? Number.POSITIVE_INFINITY);
  let have = (await stat(file).catch(() => undefined))?.size ?? 0;
  if (have > limit) {
    await rm(file, { force: true });
    have = 0;
  }
  // A whole file left by a try that stopped before it was checked: nothing to ask for.
  if (have > 0 && have === options.expectedBytes) return { bytes: have, resumedFrom: have };
  const failed = (why: string, resumable = true): GanDistError =>
    new GanDistError(
      'GAN_DIST_E_NETWORK',
      `download of ${url} failed: ${why}`,
      resumable
        ? 'check the connection and run the command again: an interrupted download resumes where it stopped'
        : 'run the command again; if it fails the same way the server is not serving the expected file: try another --url',
    );

  const response = await get(url, have, options, failed);
  const sent = sizeOf(response, have);
  if (response.statusCode === 416 && have > 0) {
    // The file is at least as long as the server's: whole, if its length is the server's.
    response.resume();
    if (sent.total === have) return { bytes: have, resumedFrom: have };
    await rm(file, { force: true });
    return downloadTo(url, file, options);
  }
  if (!sent.ok) {
    response.resume();
    throw failed(sent.why, false);
  }
  const { from, total } = sent;
  const refuse = (why: string): never => {
    response.destroy();
    throw failed(why, false);
  };
  if (total !== undefined && options.expectedBytes !== undefined && total !== options.expectedBytes) {
    refuse(`the server offers ${total} bytes, expected ${options.expectedBytes} (nothing was downloaded)`);
  }
  if (total !== undefined && total > options.maxBytes) {
    refuse(
      `the server offers ${total} bytes (${formatBytes(total)}), over the ${options.maxBytes}-byte cap (nothing was downloaded)`,
    );
  }
  if (from > 0) options.log({ event: 'data-download-resumed', level: 'info', file, from });

  const progress = new ProgressTracker(options.log, 'download', 'bytes', total ?? 0);
  progress.startAt(from);
  let done = from;
  let overCap = false;
  let cut: unknown;
  const out = createWriteStream(file, { flags: from > 0 ? 'a' : 'w' });
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      // Checked before the chunk is written, so the file never holds a byte past the cap; leaving
      // the loop destroys the response, so no more is read either.
      if (done + chunk.length > limit) {
        overCap = true;
        break;
      }
      done += chunk.length;
      progress.update(done);
      if (!out.write(chunk)) await once(out, 'drain');
    }
  } catch (err) {
    cut = err;
  }
  // Everything received is on disk before this returns or throws: a resume starts at its size.
  out.end();
  await finished(out).catch((err: unknown) => {
    throw failed(`cannot write ${file}: ${describe(err)}`, false);
  });
  if (overCap) {
    await rm(file, { force: true });
    throw failed(
      `the server sent more than ${limit} bytes (${formatBytes(limit)}), the cap for this archive; the download was cut off there and deleted`,
      false,
    );
  }
  if (cut !== undefined) throw failed(`${describe(cut)} after ${done} bytes`);
  if (total !== undefined && done !== total) throw failed(`got ${done} of ${total} bytes`);
  // With a known total the last update above was already the final one.
  if (total === undefined) progress.update(done, done);
  return { bytes: done, resumedFrom: from };
}

type Size = { ok: true; from: number; total?: number } | { ok: false; why: string; total?: number };

/** Where the body starts and how long the whole file is, from a 200, 206 or 416 response. */
function sizeOf(response: IncomingMessage, have: number): Size {
  const length = Number(response.headers['content-length']);
  const range = response.headers['content-range'] ?? '';
  if (response.statusCode === 200) {
    return { ok: true, from: 0, total: Number.isSafeInteger(length) ? length : undefined };
  }
  if (response.statusCode === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(range);
    if (!m || Number(m[1]) !== have) return { ok: false, why: `asked for bytes from ${have} on, got "${range}"` };
    return { ok: true, from: have, total: m[3] === '*' ? undefined : Number(m[3]) };
  }
  if (response.statusCode === 416) {
    const m = /^bytes \*\/(\d+)$/.exec(range);
    return { ok: false, why: 'HTTP 416 Range Not Satisfiable', total: m ? Number(m[1]) : undefined };
  }
  return { ok: false, why: `HTTP ${response.statusCode} ${response.statusMessage ?? ''}`.trim() };
}

/** GET `url` over https, from byte `from` on, following https redirects only. */
async function get(
  url: string,
  from: number,
  options: DownloadOptions,
  failed: (why: string, resumable?: boolean) => GanDistError,
): Promise<IncomingMessage> {
  let at = new URL(url);
  for (let hop = 0; ; hop++) {
    if (at.protocol !== 'https:') {
      throw failed(`${hop === 0 ? 'the address' : `it redirected to ${at.href}, which`} is not https`, false);
    }
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      let response: IncomingMessage | undefined;
      const request = https.get(
        at,
        {
          headers: from > 0 ? { range: `bytes=${from}-` } : {},
          ...(options.ca ? { ca: options.ca } : {}),
          timeout: options.idleTimeoutMs,
        },
        (res) => {
          response = res;
          resolve(res);
        },
      );
      // The socket's idle timer covers the wait for headers and every gap in the body; the
      // response is destroyed with the reason too, so a stalled body fails saying why.
      request.on('timeout', () => {
        const stalled = new Error(`no data for ${options.idleTimeoutMs / 1000} s`);
        response?.destroy(stalled);
        request.destroy(stalled);
      });
      request.on('error', (err) => reject(failed(describe(err))));
    });
    const location = response.headers.location;
    if (!location || ![301, 302, 303, 307, 308].includes(response.statusCode ?? 0)) return response;
    response.resume();
    if (hop === MAX_REDIRECTS) throw failed(`more than ${MAX_REDIRECTS} redirects`, false);
    at = new URL(location, at);
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}
