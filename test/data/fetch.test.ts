import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DataEvent } from '../../data/events.ts';
import { fetchFlowers } from '../../data/fetch.ts';

let work: string;
let archive: Buffer;
let noFolderArchive: Buffer;
let server: Server;
let base: string;
const requests: string[] = [];

/** A .tgz holding `top`/daisy/a.jpg and `top`/roses/b.jpg, like flower_photos.tgz in miniature. */
async function makeArchive(top: string): Promise<Buffer> {
  const src = await mkdtemp(path.join(work, 'src-'));
  for (const [folder, name] of [
    ['daisy', 'a.jpg'],
    ['roses', 'b.jpg'],
  ]) {
    await mkdir(path.join(src, top, folder), { recursive: true });
    await writeFile(path.join(src, top, folder, name), `${folder} bytes`);
  }
  const file = path.join(src, 'out.tgz');
  await tar.c({ gzip: true, cwd: src, file }, [top]);
  return readFile(file);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gan-dist-fetch-'));
  archive = await makeArchive('flower_photos');
  noFolderArchive = await makeArchive('something_else');
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/flower_photos.tgz') {
      res.writeHead(200, { 'content-length': archive.length });
      res.end(archive);
    } else if (req.url === '/moved') {
      res.writeHead(302, { location: '/flower_photos.tgz' });
      res.end();
    } else if (req.url === '/cut-short') {
      // Promises the whole archive, sends half, then drops the connection.
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, archive.length >> 1), () => res.destroy());
    } else if (req.url === '/wrong.tgz') {
      res.writeHead(200, { 'content-length': noFolderArchive.length });
      res.end(noFolderArchive);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(work, { recursive: true, force: true });
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(work, 'dest-'));
  requests.length = 0;
});

describe('fetchFlowers', () => {
  it('downloads with progress, extracts flower_photos/ and removes the archive', async () => {
    const events: DataEvent[] = [];
    const result = await fetchFlowers({ dir, url: `${base}/flower_photos.tgz`, log: (e) => events.push(e) });
    expect(result).toEqual({ dir: path.join(dir, 'flower_photos'), fetched: true, bytes: archive.length });
    expect(await readFile(path.join(dir, 'flower_photos', 'roses', 'b.jpg'), 'utf8')).toBe('roses bytes');
    expect(await readdir(dir)).toEqual(['flower_photos']);
    const last = events.filter((e) => e.event === 'data-progress').at(-1);
    expect(last).toMatchObject({ task: 'download', done: archive.length, total: archive.length, unit: 'bytes' });
  });

  it('does nothing when the extracted folder is already there', async () => {
    await fetchFlowers({ dir, url: `${base}/flower_photos.tgz` });
    const again = await fetchFlowers({ dir, url: `${base}/flower_photos.tgz` });
    expect(again).toEqual({ dir: path.join(dir, 'flower_photos'), fetched: false, bytes: 0 });
    expect(requests).toEqual(['/flower_photos.tgz']);
  });

  it('follows a redirect', async () => {
    const result = await fetchFlowers({ dir, url: `${base}/moved` });
    expect(result.fetched).toBe(true);
    expect(requests).toEqual(['/moved', '/flower_photos.tgz']);
  });

  it('fails with a network error on HTTP 404 and leaves nothing behind', async () => {
    await expect(fetchFlowers({ dir, url: `${base}/missing.tgz` })).rejects.toMatchObject({
      name: 'GanDistError',
      code: 'GAN_DIST_E_NETWORK',
      message: expect.stringMatching(/missing\.tgz failed: HTTP 404/),
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('fails on a download cut short and keeps no partial file', async () => {
    await expect(fetchFlowers({ dir, url: `${base}/cut-short` })).rejects.toMatchObject({
      name: 'GanDistError',
      code: 'GAN_DIST_E_NETWORK',
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('fails with a data error on an archive without flower_photos/, and drops it for a fresh try', async () => {
    await expect(fetchFlowers({ dir, url: `${base}/wrong.tgz` })).rejects.toMatchObject({
      name: 'GanDistError',
      code: 'GAN_DIST_E_DATA',
      message: expect.stringMatching(/holds no flower_photos\/ folder/),
    });
    expect(await readdir(dir)).toEqual([]);
  });
});
