// The page's live updates as server-sent events: each update one `update` event whose id is its
// number, so a page that reconnects (EventSource does by itself, sending Last-Event-ID) gets what
// it missed from the feed's replay, or a `reset` when that is gone and it must load a snapshot.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DashboardFeed, Update } from './feed.ts';

/** A comment line this often keeps proxies and idle timers from closing a quiet stream. */
const KEEPALIVE_MS = 15_000;

/** Bytes queued for a stream that is not being read before it is ended (as the coordinator's monitors). */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;

const frame = (u: Update) => `id: ${u.seq}\nevent: update\ndata: ${JSON.stringify(u)}\n\n`;

/** Where the page's stream starts: Last-Event-ID (a reconnect) or ?after=SEQ (its snapshot's). */
function startAfter(req: IncomingMessage, url: URL): number | undefined {
  const raw = req.headers['last-event-id'] ?? url.searchParams.get('after') ?? undefined;
  const n = Number(raw);
  return typeof raw === 'string' && /^\d{1,15}$/.test(raw) && Number.isSafeInteger(n) ? n : undefined;
}

/** Serves one stream until the page goes or `end` is called; returns that `end`. */
export function serveStream(req: IncomingMessage, res: ServerResponse, url: URL, feed: DashboardFeed): () => void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Accel-Buffering': 'no',
  });
  // The socket's own timeouts are for requests; a stream lives as long as the page.
  req.socket.setTimeout(0);
  req.socket.setNoDelay(true);
  // Sent at once, so the page knows the stream is open before the run's next line; and how soon to reconnect.
  res.write('retry: 2000\n\n');
  const after = startAfter(req, url);
  const missed = after === undefined ? undefined : feed.since(after);
  if (missed === undefined) res.write('event: reset\ndata: {}\n\n');
  else for (const u of missed) res.write(frame(u));
  const off = feed.subscribe((u) => {
    // A page that stopped reading must not grow this process: it is cut off and, reconnecting, reloads.
    if (res.writableLength > MAX_QUEUED_BYTES) end();
    else res.write(frame(u));
  });
  const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
  keepalive.unref();
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    off();
    clearInterval(keepalive);
    res.end();
  };
  res.on('close', end);
  return end;
}
