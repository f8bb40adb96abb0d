// The HMAC handshake as two small state machines that the coordinator's server and the worker's
// client drive over any transport (the secret never crosses the wire; auth.ts holds the tokens).
//
// Handshake (see DESIGN.md, "Wire protocol"):
//   worker hello(nonceW) -> coordinator challenge(nonceC, HMAC(token, 'coordinator', nonceW, nonceC))
//   -> worker proof(HMAC(token, 'worker', nonceW, nonceC)) -> coordinator welcome
//   -> worker ready(paramTableHash)   (monitors stop at welcome)
// Each side proves it knows the token over a nonce the other just drew, so a recorded proof is
// useless later (replay), and the role in the MAC stops a proof being bounced back (reflection).

import { ErrorCodes, GanDistError, type ErrorCode } from '../errors.ts';
import { checkToken, hmacProof, newNonce, proofsEqual } from './auth.ts';
import {
  PROTOCOL_VERSION,
  type HelloMessage,
  type Message,
  type RejectMessage,
  type Role,
  type WelcomeMessage,
} from './protocol.ts';

/** How long a connection may take to finish the handshake; the transport enforces it. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

// --- handshake state machines ----------------------------------------------------------------

export interface HandshakeStep<Done> {
  /** A message to send to the peer now (on failure: the reject that says why). */
  send?: Message;
  /** The handshake succeeded with this outcome. */
  done?: Done;
  /** The handshake failed: send `send` if present, then close the connection. */
  error?: GanDistError;
}

export type WelcomeFields = Omit<WelcomeMessage, 'type'>;

export interface ServerHandshakeOptions {
  token: string;
  /** The welcome for a peer that has proved itself (a function to assign ids only then). */
  welcome: WelcomeFields | ((hello: HelloMessage) => WelcomeFields);
  /** The parameter table hash a worker must report: paramTableHash() of the coordinator's table. */
  paramTableHash: string;
  /** Roles accepted; both by default. */
  roles?: readonly Role[];
  /** The coordinator's nonce; tests fix it, everyone else leaves it to newNonce(). */
  nonce?: string;
}

export interface ServerHandshakeResult {
  role: Role;
  hello: HelloMessage;
  welcome: WelcomeMessage;
}

export type ServerHandshakeState = 'awaiting-hello' | 'awaiting-proof' | 'awaiting-ready' | 'done' | 'failed';

export interface ServerHandshake {
  readonly state: ServerHandshakeState;
  onMessage(msg: Message): HandshakeStep<ServerHandshakeResult>;
}

function errorCodeOf(code: string): ErrorCode {
  return Object.hasOwn(ErrorCodes, code) ? (code as ErrorCode) : 'GAN_DIST_E_AUTH';
}

function rejection<D>(code: ErrorCode, reason: string): HandshakeStep<D> {
  const send: RejectMessage = { type: 'reject', reason, code };
  return { send, error: new GanDistError(code, reason) };
}

export function createServerHandshake(opts: ServerHandshakeOptions): ServerHandshake {
  const token = checkToken(opts.token, "the coordinator's token");
  const roles = opts.roles ?? ['worker', 'monitor'];
  const nonceC = opts.nonce ?? newNonce();
  let state: ServerHandshakeState = 'awaiting-hello';
  let hello: HelloMessage | undefined;
  let welcome: WelcomeMessage | undefined;

  const reject = (code: ErrorCode, reason: string): HandshakeStep<ServerHandshakeResult> => {
    state = 'failed';
    return rejection(code, reason);
  };

  function onMessage(msg: Message): HandshakeStep<ServerHandshakeResult> {
    if (state === 'done' || state === 'failed') {
      return { error: new GanDistError('GAN_DIST_E_PROTOCOL', `the handshake is already ${state}; got '${msg.type}'`) };
    }
    if (msg.type === 'reject') {
      state = 'failed';
      return { error: new GanDistError(errorCodeOf(msg.code), `the peer gave up the handshake: ${msg.reason}`) };
    }
    const expected = state.slice('awaiting-'.length);
    if (msg.type !== expected)
      return reject('GAN_DIST_E_PROTOCOL', `expected '${expected}' during the handshake, got '${msg.type}'`);

    if (msg.type === 'hello') {
      if (msg.protocolVersion !== PROTOCOL_VERSION) {
        return reject(
          'GAN_DIST_E_PROTOCOL',
          `the ${msg.role} speaks protocol version ${msg.protocolVersion} (gan-dist ${msg.ganDistVersion}); this coordinator speaks version ${PROTOCOL_VERSION}: run the same gan-dist version on both`,
        );
      }
      if (!roles.includes(msg.role)) return reject('GAN_DIST_E_AUTH', `this coordinator does not accept a ${msg.role}`);
      hello = msg;
      state = 'awaiting-proof';
      return { send: { type: 'challenge', nonce: nonceC, proof: hmacProof(token, 'coordinator', msg.nonce, nonceC) } };
    }
    if (msg.type === 'proof') {
      const h = hello!;
      if (!proofsEqual(hmacProof(token, 'worker', h.nonce, nonceC), msg.proof)) {
        return reject(
          'GAN_DIST_E_AUTH',
          `the ${h.role}'s proof does not match this run's token: give it the run's token file (--token-file) or its GAN_DIST_TOKEN`,
        );
      }
      const fields = typeof opts.welcome === 'function' ? opts.welcome(h) : opts.welcome;
      welcome = { type: 'welcome', ...fields };
      if (h.role === 'monitor') {
        state = 'done';
        return { send: welcome, done: { role: h.role, hello: h, welcome } };
      }
      state = 'awaiting-ready';
      return { send: welcome };
    }
    if (msg.type === 'ready') {
      if (msg.paramTableHash !== opts.paramTableHash) {
        return reject(
          'GAN_DIST_E_PROTOCOL',
          `the worker built parameter table ${msg.paramTableHash}, the coordinator has ${opts.paramTableHash}: the model code differs (run the same gan-dist version on both)`,
        );
      }
      state = 'done';
      return { done: { role: hello!.role, hello: hello!, welcome: welcome! } };
    }
    return reject('GAN_DIST_E_PROTOCOL', `unexpected '${msg.type}' during the handshake`);
  }

  return {
    get state() {
      return state;
    },
    onMessage,
  };
}

export interface ClientHandshakeOptions {
  token: string;
  role: Role;
  ganDistVersion: string;
  backend: string;
  device: string;
  /** The worker's rank from its launcher, sent in the hello for the coordinator's events. */
  rank?: number;
  /** The worker's nonce; tests fix it, everyone else leaves it to newNonce(). */
  nonce?: string;
}

export interface ClientHandshakeResult {
  welcome: WelcomeMessage;
}

export type ClientHandshakeState = 'start' | 'awaiting-challenge' | 'awaiting-welcome' | 'building' | 'done' | 'failed';

export interface ClientHandshake {
  readonly state: ClientHandshakeState;
  /** The hello to send first. */
  start(): HandshakeStep<ClientHandshakeResult>;
  /** For a worker, `welcome` comes back without `done`: build that model, then call ready(). */
  onMessage(msg: Message): HandshakeStep<ClientHandshakeResult> & { welcome?: WelcomeMessage };
  /** A worker reports the hash of the parameter table it built; that ends its side. */
  ready(paramTableHash: string): HandshakeStep<ClientHandshakeResult>;
}

export function createClientHandshake(opts: ClientHandshakeOptions): ClientHandshake {
  const token = checkToken(opts.token, "the worker's token");
  const nonceW = opts.nonce ?? newNonce();
  let state: ClientHandshakeState = 'start';
  let welcome: WelcomeMessage | undefined;

  const reject = (code: ErrorCode, reason: string): HandshakeStep<ClientHandshakeResult> => {
    state = 'failed';
    return rejection(code, reason);
  };
  const misuse = (what: string): HandshakeStep<ClientHandshakeResult> => {
    state = 'failed';
    return { error: new GanDistError('GAN_DIST_E_PROTOCOL', what) };
  };

  return {
    get state() {
      return state;
    },
    start() {
      if (state !== 'start') return misuse(`start() called in state '${state}'`);
      state = 'awaiting-challenge';
      return {
        send: {
          type: 'hello',
          protocolVersion: PROTOCOL_VERSION,
          ganDistVersion: opts.ganDistVersion,
          backend: opts.backend,
          device: opts.device,
          nonce: nonceW,
          role: opts.role,
          ...(opts.rank === undefined ? {} : { rank: opts.rank }),
        },
      };
    },
    onMessage(msg) {
      if (state === 'done' || state === 'failed') return misuse(`the handshake is already ${state}; got '${msg.type}'`);
      if (msg.type === 'reject') {
        state = 'failed';
        return {
          error: new GanDistError(
            errorCodeOf(msg.code),
            `the coordinator turned this ${opts.role} away: ${msg.reason}`,
          ),
        };
      }
      if (state === 'awaiting-challenge' && msg.type === 'challenge') {
        if (!proofsEqual(hmacProof(token, 'coordinator', nonceW, msg.nonce), msg.proof)) {
          return reject(
            'GAN_DIST_E_AUTH',
            "the coordinator's proof does not match this token: the token belongs to another run, or this is not the coordinator you meant",
          );
        }
        state = 'awaiting-welcome';
        return { send: { type: 'proof', proof: hmacProof(token, 'worker', nonceW, msg.nonce) } };
      }
      if (state === 'awaiting-welcome' && msg.type === 'welcome') {
        welcome = msg;
        if (opts.role === 'monitor') {
          state = 'done';
          return { done: { welcome } };
        }
        state = 'building';
        return { welcome };
      }
      const expected =
        state === 'awaiting-challenge'
          ? 'challenge'
          : state === 'awaiting-welcome'
            ? 'welcome'
            : 'nothing before ready()';
      return reject('GAN_DIST_E_PROTOCOL', `expected '${expected}' during the handshake, got '${msg.type}'`);
    },
    ready(paramTableHash) {
      if (state !== 'building') return misuse(`ready() called in state '${state}'`);
      state = 'done';
      return { send: { type: 'ready', paramTableHash }, done: { welcome: welcome! } };
    },
  };
}
