import { chmodSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTlsIdentity } from '../../protocol/wire/tls.ts';

describe("the run's TLS identity", () => {
  it('is made once with a private key of mode 0600, then reused from the run directory', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-tls-'));
    const made = await runTlsIdentity(dir);
    expect(statSync(path.join(dir, 'tls-key.pem')).mode & 0o777).toBe(0o600);
    // Written through a temporary name: nothing but the pair is left behind.
    expect(readdirSync(dir).sort()).toEqual(['tls-cert.pem', 'tls-key.pem']);
    const again = await runTlsIdentity(dir);
    expect(again.fingerprint).toBe(made.fingerprint);
  });

  it('refuses to reuse a key that group or others can read, naming the fix', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-tls-'));
    await runTlsIdentity(dir);
    chmodSync(path.join(dir, 'tls-key.pem'), 0o644);
    await expect(runTlsIdentity(dir)).rejects.toMatchObject({
      code: 'GAN_DIST_E_AUTH',
      message: expect.stringMatching(/tls-key\.pem can be read by group or others \(mode 0644\)/),
      hint: expect.stringMatching(/^chmod 600 /),
    });
  });
});
