// Authentication without the secret ever crossing the wire: tokens, token files, and the HMAC
// handshake as two small state machines that the coordinator's server and the worker's client
// drive over any transport.
//
// Handshake (see DESIGN.md, "Wire protocol"):
//   worker hello(nonceW) -> coordinator challenge(nonceC, HMAC(token, 'coordinator', nonceW, nonceC))
//   -> worker proof(HMAC(token, 'worker', nonceW, nonceC)) -> coordinator welcome
//   -> worker ready(paramTableHash)   (monitors stop at welcome)
// Each side proves it knows the token over a nonce the other just drew, so a recorded proof is
// useless later (replay), and the role in the MAC stops a proof being bounced back (reflection).
//
// Token file: `key=value` lines, `token=<secret>` and, with TLS, `fingerprint=<SHA-256 of the
// coordinator's certificate>`; blank lines and `# comments` are skipped, surrounding whitespace
// ignored, and a file holding nothing but the secret is accepted too. A token file that group or
// others can access is refused (as ssh refuses such a private key): a secret readable by others
// is no secret, and a warning scrolls past unnoticed in a training log.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { ErrorCodes, GanDistError, type ErrorCode } from '../errors.ts';
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
export const TOKEN_ENV = 'GAN_DIST_TOKEN';

export type ProofRole = 'coordinator' | 'worker';

/** A fresh secret: 32 random bytes, hex. */
export function newToken(): string {
  return randomBytes(32).toString('hex');
}

/** A fresh handshake nonce: 32 random bytes, hex. */
export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

/** HMAC-SHA256(token) over the prover's role and both nonces, hex. */
export function hmacProof(token: string, role: ProofRole, nonceWorker: string, nonceCoordinator: string): string {
  return createHmac('sha256', token)
    .update(`gan-dist handshake\n${role}\n${nonceWorker}\n${nonceCoordinator}`)
    .digest('hex');
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Constant-time comparison of two hex proofs; false for anything that is not 64 hex digits. */
export function proofsEqual(expected: string, received: string): boolean {
  if (!HEX64.test(expected) || !HEX64.test(received)) return false;
  return timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(received, 'hex'));
}

// --- tokens and token files ------------------------------------------------------------------

export interface TokenFileContents {
  token: string;
  /** SHA-256 of the coordinator's TLS certificate, 64 lowercase hex digits, for pinning. */
  fingerprint?: string;
}

export interface ResolvedToken extends TokenFileContents {
  /** Where it came from: the token file's path, or GAN_DIST_TOKEN. */
  source: string;
}

const TOKEN_CHARS = /^[\x21-\x7e]{16,1024}$/;
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

function authError(message: string, hint?: string): GanDistError {
  return new GanDistError('GAN_DIST_E_AUTH', message, hint);
}

function checkToken(token: string, source: string): string {
  if (!TOKEN_CHARS.test(token)) {
    throw authError(
      `the token from ${source} must be 16-1024 printable characters without spaces`,
      "make one with newToken() or let the coordinator write the run's token file",
    );
  }
  return token;
}

/** 64 lowercase hex digits from 'AB:CD:...' (as node's X509Certificate prints it) or plain hex. */
export function normalizeFingerprint(fingerprint: string, source = 'the fingerprint'): string {
  const hex = fingerprint
    .trim()
    .replace(/^sha256:/i, '')
    .replaceAll(':', '')
    .toLowerCase();
  if (!HEX64.test(hex)) throw authError(`${source} is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
  return hex;
}

export function parseTokenFile(text: string, source: string): TokenFileContents {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 1 && !/^(token|fingerprint)\s*=/.test(lines[0])) return { token: checkToken(lines[0], source) };
  const values = new Map<string, string>();
  for (const line of lines) {
    const m = /^(token|fingerprint)\s*=\s*(.*)$/.exec(line);
    if (m === null)
      throw authError(
        `${source}: unrecognised line ${JSON.stringify(line.slice(0, 40))}; expected token=... or fingerprint=...`,
      );
    if (values.has(m[1])) throw authError(`${source}: '${m[1]}' is given twice`);
    values.set(m[1], m[2]);
  }
  const token = values.get('token');
  if (token === undefined) throw authError(`${source} holds no token`, 'a token file needs a line token=<secret>');
  const fingerprint = values.get('fingerprint');
  return {
    token: checkToken(token, source),
    ...(fingerprint === undefined ? {} : { fingerprint: normalizeFingerprint(fingerprint, `${source}: fingerprint`) }),
  };
}

export function formatTokenFile(contents: TokenFileContents): string {
  const lines = [
    "# gan-dist token: this run's secret. Keep it private (mode 0600).",
    `token=${checkToken(contents.token, 'the token')}`,
  ];
  if (contents.fingerprint !== undefined) {
    lines.push("# SHA-256 of the coordinator's TLS certificate, which workers pin.");
    lines.push(`fingerprint=${normalizeFingerprint(contents.fingerprint)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Reads a token file, refusing one that group or others can access. */
export async function readTokenFile(path: string): Promise<ResolvedToken> {
  let text: string;
  try {
    // One open file for the permission check and the read, so neither can be swapped between.
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw authError(`token file ${path} is not a regular file`);
      if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
        throw authError(
          `token file ${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`,
          `chmod 600 ${path}`,
        );
      }
      if (st.size > MAX_TOKEN_FILE_BYTES)
        throw authError(`token file ${path} is ${st.size} bytes; a token file is a few lines`);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof GanDistError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw authError(
      `cannot read token file ${path} (${code})`,
      "pass the run's token file with --token-file, or set GAN_DIST_TOKEN",
    );
  }
  return { ...parseTokenFile(text, `token file ${path}`), source: path };
}

/** Writes a token file with mode 0600: to a temporary name, synced, then renamed into place. */
export async function writeTokenFile(path: string, contents: TokenFileContents): Promise<void> {
  const text = formatTokenFile(contents);
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** The token from `tokenFile` when given, else from GAN_DIST_TOKEN (the secret alone). */
export async function resolveToken(opts: { tokenFile?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ResolvedToken> {
  if (opts.tokenFile !== undefined) return readTokenFile(opts.tokenFile);
  const fromEnv = (opts.env ?? process.env)[TOKEN_ENV]?.trim();
  if (fromEnv !== undefined && fromEnv !== '') return { token: checkToken(fromEnv, TOKEN_ENV), source: TOKEN_ENV };
  throw authError('no token given', `pass the run's token file with --token-file FILE, or set ${TOKEN_ENV}`);
}

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
