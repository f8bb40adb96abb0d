// The dashboard's HTTP(S) server: the login exchange, the page's files, its snapshot, its live
// stream, the sample grids and Stop. Nothing but the login is answered without a session: a
// request without one gets 401 and a login form, never run data. Beyond loopback it serves
// TLS only (the caller passes the run's certificate).

import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { readFile, stat } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { assets, loginPage } from './assets.ts';
import type { DashboardFeed } from './feed.ts';
import { httpServerOptions, readBody, WEB_LIMITS, type WebLimits } from './limits.ts';
import { Admission, admissionKey } from '../../protocol/wire/admission.ts';
import { SessionStore, type Session, type WebCredentials, type WebRole } from './sessions.ts';
import { serveStream } from './stream.ts';
import { originOf } from './web-address.ts';

export interface DashboardServerOptions {
  feed: DashboardFeed;
  /** What the page's header names: the run directory or the coordinator's address. */
  title: string;
  credentials: WebCredentials;
  /** Where a sample grid named `iter-000100.png` is on this machine, if anywhere. */
  samplePath: (file: string) => string | undefined;
  /** Asks the run to stop (finish the iteration, checkpoint); absent: the page has no Stop. */
  stop?: (reason: string) => void | Promise<void>;
  host: string;
  port: number;
  tls?: { cert: string; key: string };
  limits?: Partial<WebLimits>;
}

const SAMPLE_NAME = /^iter-\d{6,9}\.png$/;
const MAX_SAMPLE_BYTES = 32 * 1024 * 1024;

const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
// The login page's few rules are inline; it has no script at all.
const LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

export class DashboardServer {
  private server!: Server;
  private sessions!: SessionStore;
  /** Connections until they show a session; the dashboard records no rejections. */
  private readonly admission: Admission;
  private readonly limits: WebLimits;
  private readonly streams = new Set<() => void>();
  private origin = '';

  constructor(private readonly opts: DashboardServerOptions) {
    this.limits = { ...WEB_LIMITS, ...opts.limits };
    const { maxPending, maxPendingPerAddress, pendingTimeoutMs } = this.limits;
    this.admission = new Admission({ maxPending, maxPendingPerAddress, upgradeTimeoutMs: pendingTimeoutMs }, () => {});
  }

  /** Binds; resolves to the origin the page is at (https:// beyond loopback). */
  async listen(): Promise<string> {
    const options = httpServerOptions(this.limits);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('internal error');
      });
    };
    this.server = this.opts.tls
      ? createHttpsServer({ ...options, cert: this.opts.tls.cert, key: this.opts.tls.key }, handler)
      : createHttpServer(options, handler);
    this.server.maxConnections = this.limits.maxConnections;
    // Counted from TCP accept, before TLS and HTTP.
    this.server.on('connection', (socket: Socket) => this.admission.admit(socket));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      const status =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? '431 Request Header Fields Too Large'
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? '408 Request Timeout'
            : '400 Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const { port } = this.server.address() as AddressInfo;
    // The cookie is named by the port bound: a browser sends one host's cookies to all its ports.
    this.sessions = new SessionStore(this.opts.credentials, `gan_dist_${port}`);
    this.origin = originOf({ host: this.opts.host, port }, !!this.opts.tls);
    return this.origin;
  }

  /** A URL that logs its first user in with `role`, then is used up. */
  loginUrl(role: WebRole): string {
    return `${this.origin}/?token=${this.sessions.mintLoginToken(role)}`;
  }

  /** Connections held that have shown no session yet. */
  pendingCount(): number {
    return this.admission.size;
  }

  /** Whether the page offers Stop. */
  get canStop(): boolean {
    return this.opts.stop !== undefined;
  }

  async close(): Promise<void> {
    for (const end of [...this.streams]) end();
    this.admission.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Joined, not resolved: a path that starts with // is a path here, not another host.
    const raw = req.url?.startsWith('/') ? req.url : '/';
    const url = URL.canParse(`http://dashboard${raw}`)
      ? new URL(`http://dashboard${raw}`)
      : new URL('http://dashboard/');
    const secure = !!this.opts.tls;
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');

    // The login exchange: a one-time link (GET ?token=), or a secret pasted into the form (POST /login).
    const linkToken = req.method === 'GET' ? url.searchParams.get('token') : null;
    if (linkToken !== null || (req.method === 'POST' && url.pathname === '/login')) {
      let secret = linkToken;
      if (secret === null) {
        const body = await readBody(req, this.limits.maxBodyBytes);
        if (body === undefined) return this.tooLarge(res);
        secret = new URLSearchParams(body).get('token')?.trim() ?? '';
      }
      const role = secret ? this.sessions.login(secret) : undefined;
      if (!role) return this.refuse(res, 'That token is not valid here, or its one-time link was used already.');
      const { cookie } = this.sessions.open(role, secure);
      this.admission.release(admissionKey(req.socket));
      // Redirected to the clean URL: the token leaves the address bar and the history.
      res.writeHead(303, {
        Location: linkToken !== null ? url.pathname : '/',
        'Set-Cookie': cookie,
        'Cache-Control': 'no-store',
      });
      res.end();
      return;
    }

    const session = this.sessions.fromCookieHeader(req.headers.cookie);
    if (!session) {
      if (url.pathname === '/' || !url.pathname.match(/^\/(api|samples|static)\//))
        return this.refuse(res, 'Log in with the link gan-dist printed, or paste a token.');
      res.setHeader('Cache-Control', 'no-store');
      return this.send(res, 401, 'application/json', '{"error":"not logged in"}');
    }
    this.admission.release(admissionKey(req.socket));
    if (req.method === 'POST') return this.post(req, res, url, session);
    if (req.method !== 'GET') return this.send(res, 405, 'application/json', '{"error":"method not allowed"}');

    const asset = assets().get(url.pathname);
    if (asset) {
      res.setHeader('Cache-Control', 'no-cache');
      if (url.pathname === '/') res.setHeader('Content-Security-Policy', PAGE_CSP);
      return this.send(res, 200, asset.type, asset.body, req, asset.gzip);
    }
    switch (url.pathname) {
      case '/api/session':
        return this.json(res, req, {
          role: session.role,
          csrf: session.csrf,
          title: this.opts.title,
          canStop: this.canStop,
        });
      case '/api/snapshot':
        return this.json(res, req, this.opts.feed.snapshot());
      case '/api/stream':
        if (this.streams.size >= this.limits.maxStreams)
          return this.send(res, 503, 'application/json', '{"error":"too many pages open"}');
        {
          const end = serveStream(req, res, url, this.opts.feed);
          this.streams.add(end);
          res.on('close', () => this.streams.delete(end));
        }
        return;
    }
    if (url.pathname.startsWith('/samples/')) return this.sample(req, res, url.pathname.slice('/samples/'.length));
    return this.send(res, 404, 'application/json', '{"error":"not found"}');
  }

  private async post(req: IncomingMessage, res: ServerResponse, url: URL, session: Session): Promise<void> {
    const body = await readBody(req, this.limits.maxBodyBytes);
    if (body === undefined) return this.tooLarge(res);
    if (url.pathname === '/logout') {
      res.writeHead(303, { Location: '/', 'Set-Cookie': this.sessions.logout(session) }).end();
      return;
    }
    if (url.pathname !== '/api/stop') return this.send(res, 404, 'application/json', '{"error":"not found"}');
    const csrf = req.headers['x-csrf-token'];
    if (!this.sessions.checkCsrf(session, typeof csrf === 'string' ? csrf : undefined))
      return this.send(res, 403, 'application/json', '{"error":"missing or wrong CSRF token"}');
    if (session.role !== 'control')
      return this.send(
        res,
        403,
        'application/json',
        '{"error":"Stop needs the control credential (control.token); this page holds the monitor one"}',
      );
    if (!this.opts.stop)
      return this.send(res, 409, 'application/json', '{"error":"this dashboard cannot stop the run"}');
    const address = req.socket.remoteAddress ?? 'unknown';
    try {
      await this.opts.stop(`Stop pressed on the dashboard (from ${address})`);
    } catch (err) {
      return this.send(
        res,
        502,
        'application/json',
        JSON.stringify({ error: `Stop failed: ${(err as Error).message}` }),
      );
    }
    return this.send(res, 202, 'application/json', '{"stopping":true}');
  }

  private async sample(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const file = SAMPLE_NAME.test(name) ? this.opts.samplePath(name) : undefined;
    const st = file ? await stat(file).catch(() => undefined) : undefined;
    if (!file || !st?.isFile() || st.size > MAX_SAMPLE_BYTES)
      return this.send(res, 404, 'application/json', '{"error":"no such sample"}');
    // A resume may write a grid again under the same name: revalidated by its size and time.
    const etag = `"${st.size.toString(36)}-${st.mtimeMs.toString(36)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, no-cache');
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304).end();
      return;
    }
    return this.send(res, 200, 'image/png', await readFile(file));
  }

  private json(res: ServerResponse, req: IncomingMessage, value: unknown): void {
    res.setHeader('Cache-Control', 'no-store');
    const body = Buffer.from(JSON.stringify(value));
    this.send(res, 200, 'application/json', body, req, body.length > 1024 ? gzipSync(body) : undefined);
  }

  private send(
    res: ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    req?: IncomingMessage,
    gzip?: Buffer,
  ): void {
    res.setHeader('Content-Type', type);
    if (gzip) res.setHeader('Vary', 'Accept-Encoding');
    if (gzip && /\bgzip\b/.test(String(req?.headers['accept-encoding'] ?? ''))) {
      res.setHeader('Content-Encoding', 'gzip');
      body = gzip;
    }
    res.writeHead(status, { 'Content-Length': Buffer.byteLength(body) }).end(body);
  }

  /** 401 and a login form; nothing of the run. */
  private refuse(res: ServerResponse, message: string): void {
    res.setHeader('Content-Security-Policy', LOGIN_CSP);
    res.setHeader('Cache-Control', 'no-store');
    this.send(res, 401, 'text/html; charset=utf-8', loginPage(message));
  }

  private tooLarge(res: ServerResponse): void {
    res.setHeader('Connection', 'close');
    this.send(res, 413, 'application/json', `{"error":"request body over ${this.limits.maxBodyBytes} bytes"}`);
  }
}
