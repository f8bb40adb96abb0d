// For the fetch tests: a small flower_photos-like .tgz and a local HTTPS server (127.0.0.1, port 0,
// a self-signed certificate for that address) whose routes each test sets.

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { generate } from 'selfsigned';
import * as tar from 'tar';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ArchiveServer {
  /** https://127.0.0.1:<port> */
  base: string;
  /** The server's certificate, to pass as `ca`. */
  ca: string;
  /** Every request in order: its path and Range header. */
  requests: { url: string; range?: string }[];
  routes: Map<string, Handler>;
  close(): Promise<void>;
}

export const sha256 = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex');

/** A .tgz holding `top`/daisy/a.jpg and `top`/roses/b.jpg, like flower_photos.tgz in miniature. */
export async function makeArchive(work: string, top: string): Promise<Buffer> {
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

/** Serves `body` as a file host does: a Range request gets a 206 with the rest, or a 416. */
export function serveFile(body: Buffer): Handler {
  return (req, res) => {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (!range) {
      res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
      res.end(body);
      return;
    }
    const from = Number(range[1]);
    if (from >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    res.writeHead(206, {
      'content-length': body.length - from,
      'content-range': `bytes ${from}-${body.length - 1}/${body.length}`,
    });
    res.end(body.subarray(from));
  };
}

export async function startArchiveServer(): Promise<ArchiveServer> {
  // CN localhost: selfsigned then adds 127.0.0.1 to the certificate's subjectAltName.
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256' });
  const requests: ArchiveServer['requests'] = [];
  const routes = new Map<string, Handler>();
  const server = createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
    requests.push({ url: req.url ?? '', ...(req.headers.range ? { range: req.headers.range } : {}) });
    const handler = routes.get(req.url ?? '');
    if (handler) handler(req, res);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ca: pems.cert,
    requests,
    routes,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
