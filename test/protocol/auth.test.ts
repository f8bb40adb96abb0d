import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  formatTokenFile,
  hmacProof,
  monitorTokenOf,
  newNonce,
  newRoleTokens,
  newToken,
  normalizeFingerprint,
  parseTokenFile,
  proofsEqual,
  readTokenFile,
  requireRole,
  resolveToken,
  writeTokenFile,
} from '../../protocol/wire/auth.ts';
import { GanDistError } from '../../protocol/errors.ts';

const TOKEN = newToken();

describe('hmacProof', () => {
  const nw = newNonce();
  const nc = newNonce();

  it('is deterministic HMAC-SHA256 hex over the role and both nonces', () => {
    const p = hmacProof(TOKEN, 'worker', nw, nc);
    expect(p).toMatch(/^[0-9a-f]{64}$/);
    expect(hmacProof(TOKEN, 'worker', nw, nc)).toBe(p);
    expect(hmacProof(TOKEN, 'coordinator', nw, nc)).not.toBe(p);
    expect(hmacProof(TOKEN, 'worker', nc, nw)).not.toBe(p);
    expect(hmacProof(newToken(), 'worker', nw, nc)).not.toBe(p);
  });

  it('compares proofs in constant time and treats malformed ones as unequal', () => {
    const p = hmacProof(TOKEN, 'worker', nw, nc);
    expect(proofsEqual(p, p)).toBe(true);
    expect(proofsEqual(p, hmacProof(TOKEN, 'coordinator', nw, nc))).toBe(false);
    expect(proofsEqual(p, p.slice(2))).toBe(false);
    expect(proofsEqual(p, p.toUpperCase())).toBe(false);
    expect(proofsEqual(p, '')).toBe(false);
  });

  it('draws fresh 32-byte hex tokens and nonces', () => {
    const values = new Set([newToken(), newToken(), newNonce(), newNonce()]);
    expect(values.size).toBe(4);
    for (const v of values) expect(v).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('token files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gan-dist-auth-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const FP = `${'AB:'.repeat(31)}AB`;

  it('writes mode 0600 and reads back the token and the normalised fingerprint', async () => {
    const path = join(dir, 'token');
    await writeTokenFile(path, { token: TOKEN, fingerprint: FP });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readTokenFile(path)).toEqual({ token: TOKEN, fingerprint: 'ab'.repeat(32), source: path });
    await writeTokenFile(path, { token: TOKEN });
    expect(await readTokenFile(path)).toEqual({ token: TOKEN, source: path });
  });

  it('accepts a file holding only the secret, ignoring surrounding whitespace', async () => {
    const path = join(dir, 'bare');
    await writeFile(path, `\n  ${TOKEN}  \r\n\n`, { mode: 0o600 });
    expect(await readTokenFile(path)).toEqual({ token: TOKEN, source: path });
  });

  it('parses key=value lines with comments and spaces around the equals sign', () => {
    expect(parseTokenFile(`# a comment\n token = ${TOKEN} \nfingerprint=sha256:${'CD'.repeat(32)}\n`, 'f')).toEqual({
      token: TOKEN,
      fingerprint: 'cd'.repeat(32),
    });
    expect(parseTokenFile(formatTokenFile({ token: TOKEN, fingerprint: FP }), 'f')).toEqual({
      token: TOKEN,
      fingerprint: 'ab'.repeat(32),
    });
  });

  it('refuses a token file that group or others can read, saying how to fix it', async () => {
    const path = join(dir, 'loose');
    await writeFile(path, TOKEN);
    await chmod(path, 0o644);
    const err = await readTokenFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GanDistError);
    expect((err as GanDistError).code).toBe('GAN_DIST_E_AUTH');
    expect((err as GanDistError).message).toMatch(/accessible to group or others \(mode 0644\)/);
    expect((err as GanDistError).hint).toBe(`chmod 600 ${path}`);
  });

  it('names a missing file, an empty file, an unknown key and a malformed fingerprint', async () => {
    await expect(readTokenFile(join(dir, 'nope'))).rejects.toThrow(/cannot read token file .*nope \(ENOENT\)/);
    const empty = join(dir, 'empty');
    await writeFile(empty, '\n# nothing\n', { mode: 0o600 });
    await expect(readTokenFile(empty)).rejects.toThrow(/holds no token/);
    expect(() => parseTokenFile(`token=${TOKEN}\nsecret=1`, 'f')).toThrow(/f: a line with the key 'secret' is neither/);
    // A mistyped key still holds the secret: the message names the key, never the value.
    let message = '';
    try {
      parseTokenFile(`TOKEN=${TOKEN}\nfingerprint=${'a'.repeat(64)}`, 'f');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/the key 'TOKEN'/);
    expect(message).not.toContain(TOKEN.slice(0, 8));
    expect(() => parseTokenFile(`token=${TOKEN}\ntoken=${TOKEN}`, 'f')).toThrow(/'token' is given twice/);
    expect(() => parseTokenFile(`token=${TOKEN}\nfingerprint=abc`, 'f')).toThrow(
      /f: fingerprint is not a SHA-256 fingerprint/,
    );
    expect(() => parseTokenFile('short', 'f')).toThrow(/token from f must be 16-1024 printable characters/);
    expect(() => normalizeFingerprint('zz')).toThrow(GanDistError);
  });

  it('takes the token file over GAN_DIST_TOKEN, and GAN_DIST_TOKEN when no file is given', async () => {
    const path = join(dir, 'pref');
    await writeTokenFile(path, { token: TOKEN });
    const other = newToken();
    expect(await resolveToken({ tokenFile: path, env: { GAN_DIST_TOKEN: other } })).toMatchObject({
      token: TOKEN,
      source: path,
    });
    expect(await resolveToken({ env: { GAN_DIST_TOKEN: `  ${other}\n` } })).toEqual({
      token: other,
      source: 'GAN_DIST_TOKEN',
    });
    await expect(resolveToken({ env: {} })).rejects.toThrow(/no token given/);
  });

  it('leaves no temporary file behind when the rename fails', async () => {
    const sub = await mkdtemp(join(dir, 'rename-'));
    await mkdir(join(sub, 'token'));
    await expect(writeTokenFile(join(sub, 'token'), { token: TOKEN })).rejects.toThrow();
    expect(await readdir(sub)).toEqual(['token']);
  });
});

describe('role credentials', () => {
  it('draws three distinct secrets, the monitor one derived from the control one', () => {
    const t = newRoleTokens();
    expect(new Set([t.worker, t.monitor, t.control]).size).toBe(3);
    expect(t.monitor).toBe(monitorTokenOf(t.control));
    expect(newRoleTokens(TOKEN).worker).toBe(TOKEN);
  });

  it('writes and reads back the role a token file names, and refuses an unknown one', () => {
    for (const role of ['worker', 'monitor', 'control'] as const) {
      const text = formatTokenFile({ token: TOKEN, role });
      expect(text).toContain(`role=${role}`);
      expect(parseTokenFile(text, 'f')).toEqual({ token: TOKEN, role });
    }
    expect(parseTokenFile(formatTokenFile({ token: TOKEN }), 'f')).toEqual({ token: TOKEN });
    expect(() => parseTokenFile(`token=${TOKEN}\nrole=admin`, 'f')).toThrow(/role must be worker, monitor or control/);
  });

  it('refuses, before connecting, a credential whose role cannot do the job; a secret of no role passes', () => {
    const monitor = { token: TOKEN, role: 'monitor' as const, source: 'runs/x/monitor.token' };
    expect(() => requireRole(monitor, ['worker'], 'join as a worker')).toThrow(
      /runs\/x\/monitor\.token is the run's monitor credential, which cannot join as a worker/,
    );
    expect(() => requireRole({ ...monitor, role: 'worker' }, ['monitor', 'control'], 'watch')).toThrow(GanDistError);
    expect(() => requireRole({ token: TOKEN, source: 'GAN_DIST_TOKEN' }, ['worker'], 'join')).not.toThrow();
    expect(() => requireRole(monitor, ['monitor', 'control'], 'watch')).not.toThrow();
  });
});
