// A monitor's connection to a coordinator (`gan-dist watch ws://HOST:PORT`): the token handshake
// in the monitor role, then the run's log lines as the coordinator forwards them (`log`), and a
// `stop` to ask it to finish the iteration, checkpoint and stop (which only a control token may:
// a monitor token's Stop comes back as an `error`). Over wss the certificate is pinned to the
// fingerprint in the token file, as workers pin it.

import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { normalizeFingerprint, type CredentialRole } from '../protocol/wire/auth.ts';
import { createClientHandshake } from '../protocol/wire/handshake.ts';
import { GanDistError } from '../protocol/errors.ts';
import {
  MONITOR_LIMITS,
  PRE_AUTH_LIMITS,
  decodeMessage,
  encodeMessage,
  type Message,
  type WelcomeMessage,
} from '../protocol/wire/protocol.ts';

/** A coordinator as a monitor reaches it: its URL, a secret, and how to trust its certificate. */
export interface MonitorTarget {
  url: string;
  token: string;
  /** The role its token file names: a monitor's secret watches, control's can also Stop. */
  credential?: CredentialRole;
  /** wss: SHA-256 of the coordinator's certificate (from the token file), pinned. */
  fingerprint?: string;
  /** wss: a CA certificate (PEM) that signed the coordinator's certificate, instead of a pin (--ca). */
  ca?: string;
  ganDistVersion: string;
}

export interface MonitorOptions extends Omit<MonitorTarget, 'credential'> {
  onLine: (line: Record<string, unknown>) => void;
  /** The coordinator refused something this monitor asked (a Stop its credential cannot give). */
  onRefused?: (message: string) => void;
  /** The connection ended after the handshake: the coordinator stopped, or the network went. */
  onClose: (reason: string) => void;
}

export interface MonitorConnection {
  welcome: WelcomeMessage;
  /** Asks the coordinator to stop the run (finish the iteration, checkpoint, exit). */
  requestStop(reason: string): void;
  close(): void;
}

/** Connects and authenticates; resolves once the coordinator has welcomed the monitor. */
export async function connectMonitor(opts: MonitorOptions): Promise<MonitorConnection> {
  const secure = opts.url.startsWith('wss://');
  if (!secure && !opts.url.startsWith('ws://')) {
    throw new GanDistError(
      'GAN_DIST_E_USAGE',
      `${opts.url}: not a ws:// or wss:// address`,
      'e.g. gan-dist watch ws://127.0.0.1:7070 --token-file runs/latest/monitor.token',
    );
  }
  const pin = opts.fingerprint === undefined ? undefined : normalizeFingerprint(opts.fingerprint);
  if (secure && pin === undefined && opts.ca === undefined) {
    throw new GanDistError(
      'GAN_DIST_E_AUTH',
      `${opts.url}: no way to check the coordinator's certificate`,
      "use the run's token file (it carries the certificate's fingerprint) or --ca FILE for a certificate your CA signed",
    );
  }
  const pinning = secure && opts.ca === undefined;
  const ws = new WebSocket(opts.url, {
    perMessageDeflate: false,
    maxPayload: MONITOR_LIMITS.maxFrameBytes,
    // A certificate made for the run chains to no CA: its identity is the pinned fingerprint,
    // checked on 'upgrade' before a byte of the handshake is sent.
    ...(secure ? (pinning ? { rejectUnauthorized: false } : { ca: opts.ca }) : {}),
  });
  const handshake = createClientHandshake({
    token: opts.token,
    role: 'monitor',
    ganDistVersion: opts.ganDistVersion,
    backend: 'none',
    device: 'monitor',
  });
  const send = (m: Message) => ws.send(encodeMessage(m));

  return new Promise<MonitorConnection>((resolve, reject) => {
    let connection: MonitorConnection | undefined;
    let ended = false;
    const end = (reason: string, err?: Error) => {
      if (ended) return;
      ended = true;
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.terminate();
      if (connection) opts.onClose(reason);
      else
        reject(
          err ??
            new GanDistError(
              'GAN_DIST_E_NETWORK',
              `${opts.url}: ${reason}`,
              'is the coordinator running, and is this its address (RUN_DIR/endpoint)?',
            ),
        );
    };
    ws.on('upgrade', (res) => {
      if (!pinning) return;
      const cert = (res.socket as TLSSocket).getPeerCertificate?.();
      const got = cert?.fingerprint256 ? normalizeFingerprint(cert.fingerprint256) : undefined;
      if (got !== pin) {
        end(
          'certificate mismatch',
          new GanDistError(
            'GAN_DIST_E_AUTH',
            `${opts.url}: the coordinator's certificate has fingerprint ${got ?? 'none'}, the token file pins ${pin}: refusing to connect`,
            "use this run's token file",
          ),
        );
      }
    });
    ws.on('error', (err) => end(`connection failed: ${err.message}`));
    ws.on('close', (_code, reason) =>
      end(
        reason.length
          ? `the coordinator closed the connection (${reason.toString()})`
          : 'the coordinator closed the connection',
      ),
    );
    ws.on('open', () => {
      if (ended) return;
      const step = handshake.start();
      if (step.send) send(step.send);
    });
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return end('the coordinator sent a text frame');
      let msg: Message;
      try {
        msg = decodeMessage(data as Buffer, connection ? MONITOR_LIMITS : PRE_AUTH_LIMITS);
      } catch (err) {
        return end(`bad frame from the coordinator: ${(err as Error).message}`, err as Error);
      }
      if (!connection) {
        const step = handshake.onMessage(msg);
        if (step.send) send(step.send);
        if (step.error) return end(step.error.message, step.error);
        if (step.done) {
          connection = {
            welcome: step.done.welcome,
            requestStop: (reason) => {
              if (ws.readyState === ws.OPEN) send({ type: 'stop', reason });
            },
            close: () => {
              if (ended) return;
              ended = true;
              ws.close();
            },
          };
          resolve(connection);
        }
        return;
      }
      if (msg.type === 'log') opts.onLine(msg.line);
      else if (msg.type === 'error') opts.onRefused?.(msg.message);
      else if (msg.type === 'stop') end(`the coordinator stopped: ${msg.reason}`);
    });
  });
}
