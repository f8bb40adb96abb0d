// A WebSocket connection's frame cap, raised once its peer has authenticated: ws takes one
// maxPayload per server, and has no public way to change it for one connection.

import * as wsLib from 'ws';
import type { WebSocket } from 'ws';
import { WS_MAX_PAYLOAD } from './protocol.ts';

/**
 * The largest frame ws accepts from this connection. ws takes one maxPayload per server (set to
 * the pre-auth cap), so after authentication it is raised by setting the connection's Receiver's
 * `_maxPayload`, which ws checks against each frame's header as it arrives (receiver.js,
 * haveLength), before a byte of the payload is buffered. A private field: FRAME_CAP_WORKS checks
 * it at load and test/coordinator/server-limits.test.ts checks the behaviour, so a ws that renames
 * it fails loudly instead of leaving the pre-auth cap on every worker (package.json pins ws 8.x).
 */
export function setFrameCap(ws: WebSocket, bytes: number): boolean {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (typeof receiver?._maxPayload !== 'number') return false;
  receiver._maxPayload = wsFrameCap(bytes);
  return true;
}

/** A frame limit as ws can hold it: ws keeps maxPayload | 0, so above 2^31-1 the limit would vanish. */
export function wsFrameCap(bytes: number): number {
  return Math.min(Math.max(1, Math.floor(bytes)), WS_MAX_PAYLOAD);
}

type ReceiverClass = new (opts: { maxPayload: number }) => { _maxPayload?: unknown };
const Receiver = (wsLib as unknown as { Receiver?: ReceiverClass }).Receiver;
/** ws's Receiver still keeps its limit where setFrameCap raises it. */
export const FRAME_CAP_WORKS = Receiver !== undefined && new Receiver({ maxPayload: 4096 })._maxPayload === 4096;
if (!FRAME_CAP_WORKS) {
  throw new Error(
    "this ws no longer keeps a connection's frame limit in Receiver._maxPayload; see protocol/wire/frame-cap.ts",
  );
}
