import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DataEvent } from '../../data/events.ts';
import {
  FLOWERS_BYTES,
  FLOWERS_SHA256,
  FLOWERS_URL,
  type FetchFlowersOptions,
  fetchFlowers,
} from '../../data/fetch.ts';
import { type ArchiveServer, makeArchive, serveFile, sha256, startArchiveServer } from './archive-server.ts';

let work: string;
let archive: Buffer;
let noFolderArchive: Buffer;
let server: ArchiveServer;
let dir: string;

/** Options for fetching `route` from the local server, pinned to the test archive. */
const from = (route: string, more: FetchFlowersOptions = {}): FetchFlowersOptions => ({
  dir,
  url: `${server.base}${route}`,
  sha256: sha256(archive),
  ca: server.ca,
  ...more,
});
const partial = (): string => path.join(dir, 'flower_photos.tgz.partial');

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gan-dist-fetch-'));
  archive = await makeArchive(work, 'flower_photos');
  noFolderArchive = await makeArchive(work, 'something_else');
  server = await startArchiveServer();
  server.routes.set('/flower_photos.tgz', serveFile(archive));
  server.routes.set('/wrong.tgz', serveFile(noFolderArchive));
  server.routes.set('/moved', (_req, res) => {
    res.writeHead(302, { location: '/flower_photos.tgz' });
    res.end();
  });
  server.routes.set('/to-http', (_req, res) => {
    res.writeHead(302, { location: `${server.base.replace('https:', 'http:')}/flower_photos.tgz` });
    res.end();
  });
});

afterAll(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  dir = await mkdtemp(path.join(work, 'dest-'));
  server.requests.length = 0;
});

describe('fetchFlowers', () => {
  it('pins the seed archive, served over https', () => {
    expect(FLOWERS_URL).toBe('https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz');
    expect(FLOWERS_SHA256).toBe('4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c');
    expect(FLOWERS_BYTES).toBe(228_813_984);
  });

  it('downloads over https with progress, checks size and SHA-256, extracts flower_photos/ and removes the archive', async () => {
    const events: DataEvent[] = [];
    const result = await fetchFlowers(from('/flower_photos.tgz', { log: (e) => events.push(e) }));
    expect(result).toEqual({ dir: path.join(dir, 'flower_photos'), fetched: true, bytes: archive.length });
    expect(await readFile(path.join(dir, 'flower_photos', 'roses', 'b.jpg'), 'utf8')).toBe('roses bytes');
    expect(await readdir(dir)).toEqual(['flower_photos']);
    const last = events.filter((e) => e.event === 'data-progress').at(-1);
    expect(last).toMatchObject({ task: 'download', done: archive.length, total: archive.length, unit: 'bytes' });
    expect(events.find((e) => e.event === 'data-verified')).toMatchObject({
      bytes: archive.length,
      sha256: sha256(archive),
    });
  });

  it('does nothing when the extracted folder is already there', async () => {
    await fetchFlowers(from('/flower_photos.tgz'));
    const again = await fetchFlowers(from('/flower_photos.tgz'));
    expect(again).toEqual({ dir: path.join(dir, 'flower_photos'), fetched: false, bytes: 0 });
    expect(server.requests.map((r) => r.url)).toEqual(['/flower_photos.tgz']);
  });

  it('follows an https redirect', async () => {
    expect((await fetchFlowers(from('/moved'))).fetched).toBe(true);
    expect(server.requests.map((r) => r.url)).toEqual(['/moved', '/flower_photos.tgz']);
  });

  it('refuses a redirect to plain http without following it', async () => {
    await expect(fetchFlowers(from('/to-http'))).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/redirected to http:\/\/127\.0\.0\.1:\d+\/flower_photos\.tgz, which is not https/),
    });
    expect(server.requests.map((r) => r.url)).toEqual(['/to-http']);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a plain http --url before connecting, naming the flag', async () => {
    await expect(fetchFlowers(from('/x', { url: 'http://127.0.0.1:1/flower_photos.tgz' }))).rejects.toMatchObject({
      code: 'GAN_DIST_E_CONFIG',
      message: '--url http://127.0.0.1:1/flower_photos.tgz: must be an https:// address',
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a --sha256 that is not 64 hex digits, naming the flag', async () => {
    await expect(fetchFlowers(from('/flower_photos.tgz', { sha256: 'abc123' }))).rejects.toMatchObject({
      code: 'GAN_DIST_E_CONFIG',
      message: '--sha256 abc123: must be 64 hex digits (a SHA-256)',
    });
    expect(server.requests).toEqual([]);
  });

  it('refuses an archive whose SHA-256 differs, naming both hashes, and extracts nothing', async () => {
    const wanted = sha256('another archive');
    const failure = fetchFlowers(from('/flower_photos.tgz', { sha256: wanted.toUpperCase() }));
    await expect(failure).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: `the archive downloaded from ${server.base}/flower_photos.tgz has SHA-256 ${sha256(archive)}, expected ${wanted}: refused and deleted; nothing was extracted`,
    });
    await expect(failure).rejects.toHaveProperty('hint', expect.stringMatching(/--sha256/));
    expect(await readdir(dir)).toEqual([]);
  });

  it('resumes an interrupted download with a Range request, then checks the whole file', async () => {
    const half = archive.length >> 1;
    let cut = true;
    const whole = serveFile(archive);
    server.routes.set('/flaky.tgz', (req, res) => {
      if (!cut) return whole(req, res);
      // Promises the whole archive, sends half, then drops the connection.
      cut = false;
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, half), () => res.destroy());
    });
    await expect(fetchFlowers(from('/flaky.tgz'))).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/flaky\.tgz failed: .* after \d+ bytes/),
      hint: expect.stringMatching(/resumes where it stopped/),
    });
    expect(await readdir(dir)).toEqual(['flower_photos.tgz.partial']);
    expect((await stat(partial())).size).toBe(half);

    const events: DataEvent[] = [];
    const result = await fetchFlowers(from('/flaky.tgz', { log: (e) => events.push(e) }));
    expect(result).toMatchObject({ fetched: true, bytes: archive.length });
    expect(server.requests).toEqual([{ url: '/flaky.tgz' }, { url: '/flaky.tgz', range: `bytes=${half}-` }]);
    expect(events.find((e) => e.event === 'data-download-resumed')).toMatchObject({ from: half });
    expect(events.find((e) => e.event === 'data-verified')).toMatchObject({ sha256: sha256(archive) });
    expect(await readFile(path.join(dir, 'flower_photos', 'daisy', 'a.jpg'), 'utf8')).toBe('daisy bytes');
    expect(await readdir(dir)).toEqual(['flower_photos']);
  });

  it('checks a resumed download whole: a corrupt first part is refused and deleted', async () => {
    const half = archive.length >> 1;
    await writeFile(partial(), Buffer.alloc(half, 0x55));
    const spliced = Buffer.concat([Buffer.alloc(half, 0x55), archive.subarray(half)]);
    await expect(fetchFlowers(from('/flower_photos.tgz'))).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringContaining(`has SHA-256 ${sha256(spliced)}, expected ${sha256(archive)}`),
    });
    expect(server.requests).toEqual([{ url: '/flower_photos.tgz', range: `bytes=${half}-` }]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('starts over when the server ignores the Range request', async () => {
    await writeFile(partial(), Buffer.alloc(archive.length >> 1, 0x55));
    server.routes.set('/no-ranges.tgz', (_req, res) => {
      res.writeHead(200, { 'content-length': archive.length });
      res.end(archive);
    });
    expect(await fetchFlowers(from('/no-ranges.tgz'))).toMatchObject({ fetched: true, bytes: archive.length });
    expect(await readdir(dir)).toEqual(['flower_photos']);
  });

  it('uses a partial that is already whole without asking for more', async () => {
    await writeFile(partial(), archive);
    expect(await fetchFlowers(from('/flower_photos.tgz', { bytes: archive.length }))).toMatchObject({ fetched: true });
    expect(server.requests).toEqual([]);
  });

  it("refuses, before its body is read, a response whose size is not the pinned archive's", async () => {
    const failure = fetchFlowers({ dir, url: `${server.base}/flower_photos.tgz`, ca: server.ca });
    await expect(failure).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(
        new RegExp(`the server offers ${archive.length} bytes, expected 228813984 \\(nothing was downloaded\\)`),
      ),
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses an announced size over the cap before reading the body', async () => {
    // Headers only, never a byte of body: reading the body would stall into the idle timeout.
    server.routes.set('/huge.tgz', (_req, res) => {
      res.writeHead(200, { 'content-length': 5_000_000_000 });
      res.flushHeaders();
    });
    await expect(fetchFlowers(from('/huge.tgz', { idleTimeoutMs: 10_000 }))).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/offers 5000000000 bytes \(4\.66 GB\), over the 1073741824-byte cap/),
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('cuts off a body that runs past the cap, keeping no byte of it', async () => {
    const cap = 1024 ** 2;
    const offered = 100 * 1024 ** 2;
    let sent = 0;
    const closed = new Promise<number>((resolve) => {
      server.routes.set('/endless.tgz', (_req, res) => {
        // No content-length: only the byte count can stop it. Written as fast as the client reads.
        const chunk = Buffer.alloc(64 * 1024, 7);
        const pump = (): void => {
          while (sent < offered) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        res.on('close', () => resolve(sent));
        pump();
      });
    });
    await expect(fetchFlowers(from('/endless.tgz', { maxBytes: cap }))).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/sent more than 1048576 bytes \(1\.0 MB\), the cap for this archive/),
    });
    expect(await readdir(dir)).toEqual([]);
    // The client stopped reading at the cap: what the server got out is bounded by socket buffers.
    const got = await closed;
    expect(got).toBeLessThan(offered / 4);
  });

  it('fails a stalled download after the idle timeout and keeps what came for a resume', async () => {
    server.routes.set('/stalls.tgz', (_req, res) => {
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, 10));
    });
    await expect(fetchFlowers(from('/stalls.tgz', { idleTimeoutMs: 300 }))).rejects.toMatchObject({
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/stalls\.tgz failed: no data for 0\.3 s after 10 bytes/),
    });
    expect((await stat(partial())).size).toBe(10);
  });

  it('fails with a network error on HTTP 404 and leaves nothing behind', async () => {
    await expect(fetchFlowers(from('/missing.tgz'))).rejects.toMatchObject({
      name: 'GanDistError',
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/missing\.tgz failed: HTTP 404/),
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('fails with a data error on an archive without flower_photos/, and drops it for a fresh try', async () => {
    await expect(fetchFlowers(from('/wrong.tgz', { sha256: sha256(noFolderArchive) }))).rejects.toMatchObject({
      name: 'GanDistError',
      code: 'GAN_DIST_E_DATA',
      message: expect.stringMatching(/holds no flower_photos\/ folder/),
    });
    expect(await readdir(dir)).toEqual([]);
  });
});
