// The HMAC handshake as two small state machines that the coordinator's server and the worker's
// client drive over any transport (the secret never crosses the wire; auth.ts holds the tokens).
//
// Handshake (see DESIGN.md, "Wire protocol"):
//   worker hello(nonceW) -> coordinator challenge(nonceC, HMAC(token, 'coordinator', nonceW, nonceC))
//   -> worker proof(HMAC(token, 'worker', nonceW, nonceC)) -> coordinator welcome
//   -> worker ready(paramTableHash)   (monitors stop at welcome)
// Each side proves it knows the token over a nonce the other just drew, so a recorded proof is
// useless later (replay), and the role in the MAC stops a proof being bounced back (reflection).
// A run has three secrets (auth.ts RoleTokens): the hello's role says which one the coordinator
// proves (a worker's, or the monitor's for a monitor hello), and the peer's proof says which it
// holds: the worker's for a worker; the monitor's or the control's (which can Stop) for a monitor.
// An older run's one token stands for all three.

import { ErrorCodes, GanDistError, type ErrorCode } from '../errors.ts';
import {
  checkToken,
  hmacProof,
  monitorTokenOf,
  newNonce,
  proofsEqual,
  type CredentialRole,
  type RoleTokens,
} from './auth.ts';
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

/** The credential a peer proved: one of the run's three, or 'run', an older run's one token (everything). */
export type Credential = CredentialRole | 'run';

export interface ServerHandshakeOptions {
  /** The run's three secrets; one string: an older run directory's one token, which grants every role. */
  token: string | RoleTokens;
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
  /** Which secret the peer proved: what it may do beyond its role (a control monitor may Stop). */
  credential: Credential;
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

/** What a run's secrets are, each checked; a string is an older run's one token. */
function tokensOf(token: string | RoleTokens): RoleTokens | string {
  if (typeof token === 'string') return checkToken(token, "the coordinator's token");
  return {
    worker: checkToken(token.worker, "the coordinator's worker token"),
    monitor: checkToken(token.monitor, "the coordinator's monitor token"),
    control: checkToken(token.control, "the coordinator's control token"),
  };
}

/** The credential whose proof `proof` is, among those that may take `role`; undefined for none. */
function provedCredential(
  tokens: RoleTokens | string,
  role: Role,
  proof: string,
  nonceW: string,
  nonceC: string,
): Credential | undefined {
  const matches = (t: string) => proofsEqual(hmacProof(t, 'worker', nonceW, nonceC), proof);
  if (typeof tokens === 'string') return matches(tokens) ? 'run' : undefined;
  if (role === 'worker') return matches(tokens.worker) ? 'worker' : undefined;
  // Both checked whatever the first says: the time taken does not tell which secret it was.
  const monitor = matches(tokens.monitor);
  const control = matches(tokens.control);
  return control ? 'control' : monitor ? 'monitor' : undefined;
}

const PROOF_HINTS: Record<Role, string> = {
  worker: "give it the run's worker.token (--token-file) or its GAN_DIST_TOKEN; a monitor or control token cannot join",
  monitor: "give it the run's monitor.token or control.token (--token-file); a worker token cannot watch",
};

export function createServerHandshake(opts: ServerHandshakeOptions): ServerHandshake {
  const tokens = tokensOf(opts.token);
  const roles = opts.roles ?? ['worker', 'monitor'];
  const nonceC = opts.nonce ?? newNonce();
  let state: ServerHandshakeState = 'awaiting-hello';
  let hello: HelloMessage | undefined;
  let welcome: WelcomeMessage | undefined;
  let credential: Credential = 'run';

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
      // The coordinator proves the secret of the role asked for; a control peer derives the monitor's.
      const mine = typeof tokens === 'string' ? tokens : msg.role === 'worker' ? tokens.worker : tokens.monitor;
      return { send: { type: 'challenge', nonce: nonceC, proof: hmacProof(mine, 'coordinator', msg.nonce, nonceC) } };
    }
    if (msg.type === 'proof') {
      const h = hello!;
      const proved = provedCredential(tokens, h.role, msg.proof, h.nonce, nonceC);
      if (proved === undefined) {
        return reject(
          'GAN_DIST_E_AUTH',
          typeof tokens === 'string'
            ? `the ${h.role}'s proof does not match this run's token: give it the run's token file (--token-file) or its GAN_DIST_TOKEN`
            : `the ${h.role}'s proof does not match this run's ${h.role === 'worker' ? 'worker token' : 'monitor or control token'}: ${PROOF_HINTS[h.role]}`,
        );
      }
      credential = proved;
      const fields = typeof opts.welcome === 'function' ? opts.welcome(h) : opts.welcome;
      welcome = { type: 'welcome', ...fields };
      if (h.role === 'monitor') {
        state = 'done';
        return { send: welcome, done: { role: h.role, credential, hello: h, welcome } };
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
      return { done: { role: hello!.role, credential, hello: hello!, welcome: welcome! } };
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
  /** A node's local worker count (hello.capacity); absent for a plain worker. */
  capacity?: number;
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
          ...(opts.capacity === undefined ? {} : { capacity: opts.capacity }),
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
        const proves = (t: string) => proofsEqual(hmacProof(t, 'coordinator', nonceW, msg.nonce), msg.proof);
        // A monitor holding the control secret sees the coordinator prove the monitor secret derived from it.
        if (!proves(token) && !(opts.role === 'monitor' && proves(monitorTokenOf(token)))) {
          return reject(
            'GAN_DIST_E_AUTH',
            `the coordinator's proof does not match this token: the token belongs to another run or does not let a ${opts.role} in (${opts.role === 'worker' ? 'workers join with worker.token' : 'watch with monitor.token or control.token'}), or this is not the coordinator you meant`,
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
