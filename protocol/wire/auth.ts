// Authentication without the secret ever crossing the wire: tokens, token files, and the HMAC
// proofs the handshake (handshake.ts) exchanges over nonces.
//
// Token file: `key=value` lines, `token=<secret>`, `role=worker|monitor|control` (what the secret
// grants; absent in an older run's one `token`, which grants everything) and, with TLS,
// `fingerprint=<SHA-256 of the coordinator's certificate>`; blank lines and `# comments` are
// skipped, surrounding whitespace ignored, and a file holding nothing but the secret is accepted too. A token file that group or
// others can access is refused (as ssh refuses such a private key): a secret readable by others
// is no secret, and a warning scrolls past unnoticed in a training log.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { GanDistError } from '../errors.ts';

export const TOKEN_ENV = 'GAN_DIST_TOKEN';

export type ProofRole = 'coordinator' | 'worker';

/**
 * What a run's credential lets its holder do: a worker joins and computes, a monitor watches, a
 * control watches and may Stop. An older run directory's one `token` grants all three.
 */
export type CredentialRole = 'worker' | 'monitor' | 'control';
export const CREDENTIAL_ROLES: readonly CredentialRole[] = ['worker', 'monitor', 'control'];

/** A run's three secrets. The monitor's is derived from the control's (monitorTokenOf). */
export interface RoleTokens {
  worker: string;
  monitor: string;
  control: string;
}

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

/**
 * The monitor secret that goes with a control secret. A control peer says 'monitor' in its hello
 * (hello is frozen across versions), so the coordinator answers with the monitor secret's proof
 * before it knows which of the two the peer holds; deriving one from the other lets a control
 * peer check that proof, and the peer's own proof then says which it holds.
 */
export function monitorTokenOf(controlToken: string): string {
  return createHmac('sha256', controlToken).update('gan-dist monitor token').digest('hex');
}

/** Fresh worker and control secrets (the worker's may be given: --token-file, GAN_DIST_TOKEN). */
export function newRoleTokens(worker = newToken()): RoleTokens {
  const control = newToken();
  return { worker, monitor: monitorTokenOf(control), control };
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
  /** What the secret grants; absent: an older run's one token (everything), or GAN_DIST_TOKEN. */
  role?: CredentialRole;
  /** SHA-256 of the coordinator's TLS certificate, 64 lowercase hex digits, for pinning. */
  fingerprint?: string;
}

export interface ResolvedToken extends TokenFileContents {
  /** Where it came from: the token file's path, or GAN_DIST_TOKEN. */
  source: string;
}

const KEY_LINE = /^(token|fingerprint|role)\s*=/;
const TOKEN_CHARS = /^[\x21-\x7e]{16,1024}$/;
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

function authError(message: string, hint?: string): GanDistError {
  return new GanDistError('GAN_DIST_E_AUTH', message, hint);
}

export function checkToken(token: string, source: string): string {
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
  if (lines.length === 1 && !KEY_LINE.test(lines[0])) return { token: checkToken(lines[0], source) };
  const values = new Map<string, string>();
  for (const line of lines) {
    const m = /^(token|fingerprint|role)\s*=\s*(.*)$/.exec(line);
    if (m === null) {
      // Never echo the line: a mistyped key (TOKEN=...) still holds the secret. Its key is safe.
      const key = /^([A-Za-z_][A-Za-z0-9_-]{0,31})\s*[=:]/.exec(line)?.[1];
      throw authError(
        `${source}: ${key ? `a line with the key '${key}'` : 'a line'} is neither token=..., role=... nor fingerprint=... (its value is not shown: it may be the secret)`,
        'keys are lower-case: token=<secret>, role=worker|monitor|control, fingerprint=<sha256>',
      );
    }
    if (values.has(m[1])) throw authError(`${source}: '${m[1]}' is given twice`);
    values.set(m[1], m[2]);
  }
  const token = values.get('token');
  if (token === undefined) throw authError(`${source} holds no token`, 'a token file needs a line token=<secret>');
  const fingerprint = values.get('fingerprint');
  const role = values.get('role');
  if (role !== undefined && !(CREDENTIAL_ROLES as readonly string[]).includes(role))
    throw authError(`${source}: role must be worker, monitor or control, got '${role.slice(0, 16)}'`);
  return {
    token: checkToken(token, source),
    ...(role === undefined ? {} : { role: role as CredentialRole }),
    ...(fingerprint === undefined ? {} : { fingerprint: normalizeFingerprint(fingerprint, `${source}: fingerprint`) }),
  };
}

const ROLE_NOTES: Record<CredentialRole, string> = {
  worker: 'joins this run and computes; the file to copy to worker machines.',
  monitor: 'watches this run (gan-dist watch); cannot join or Stop.',
  control: 'watches this run and may Stop it; keep it on the coordinator machine.',
};

export function formatTokenFile(contents: TokenFileContents): string {
  const role = contents.role;
  const lines = [
    role === undefined
      ? "# gan-dist token: this run's secret. Keep it private (mode 0600)."
      : `# gan-dist ${role} token: ${ROLE_NOTES[role]} Keep it private (mode 0600).`,
    `token=${checkToken(contents.token, 'the token')}`,
  ];
  if (role !== undefined) lines.push(`role=${role}`);
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
  await writeSecretFile(path, formatTokenFile(contents));
}

/** Writes a file only its owner may read (mode 0600): to a temporary name, synced, then renamed into place. */
export async function writeSecretFile(path: string, text: string): Promise<void> {
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

/**
 * Refuses, before connecting, a credential whose file names a role that cannot do `what`: a
 * worker given monitor.token, a watcher given worker.token. A secret with no role (an older
 * run's token, GAN_DIST_TOKEN) is left to the coordinator.
 */
export function requireRole(resolved: ResolvedToken, allowed: readonly CredentialRole[], what: string): void {
  if (resolved.role === undefined || allowed.includes(resolved.role)) return;
  const want = allowed.map((r) => `${r}.token`).join(' or ');
  throw authError(
    `${resolved.source} is the run's ${resolved.role} credential, which cannot ${what}`,
    `use the run's ${want}`,
  );
}
