// The run's credentials: three secrets in the run directory, each 0600 and naming its role
// (worker.token: join and compute, the file for worker machines; monitor.token: watch only;
// control.token: watch and Stop, which stays here), each with the certificate's fingerprint under
// TLS. An older run directory holds one `token` for every role: a resume keeps it, with a warning.

import { existsSync } from 'node:fs';
import {
  CREDENTIAL_ROLES,
  monitorTokenOf,
  newRoleTokens,
  readTokenFile,
  resolveToken,
  writeTokenFile,
  type CredentialRole,
  type RoleTokens,
} from '../../protocol/wire/auth.ts';
import type { RunDir } from '../../protocol/run/run-dir.ts';
import { loadTlsIdentity, runTlsIdentity, type TlsIdentity } from '../../protocol/wire/tls.ts';
import type { TrainOptions } from './train.ts';

export interface RunCredentials {
  /** What the coordinator checks proofs against: the three secrets, or an older run's one token. */
  tokens: RoleTokens | string;
  /** The secret local workers join with. */
  workerToken: string;
  /** Where each role's file is (an older run: its one `token` for all three). */
  files: Record<CredentialRole, string>;
  /** Set when the run resumed with an older run directory's one token: what to tell its owner. */
  legacyWarning?: string;
  identity?: TlsIdentity;
}

/**
 * The run's secrets: a resume keeps its own (the three files, else an older run's `token`); a new
 * run draws them, its worker secret from --token-file or GAN_DIST_TOKEN where given. With TLS,
 * the certificate too; every file is (re)written with its fingerprint, so one file gives a worker
 * both its secret and the coordinator's identity.
 */
export async function secureRun(
  opts: TrainOptions,
  run: RunDir,
  resumed: boolean,
  useTls: boolean,
): Promise<RunCredentials> {
  const paths = run.roleTokenPaths;
  const identity = useTls
    ? opts.tlsCert
      ? loadTlsIdentity(opts.tlsCert, opts.tlsKey!)
      : await runTlsIdentity(run.path)
    : undefined;
  const fingerprint = identity?.fingerprint;
  const roleFiles = existsSync(paths.worker) && existsSync(paths.control);
  if (resumed && !roleFiles && existsSync(run.tokenPath)) {
    const { token } = await readTokenFile(run.tokenPath);
    await writeTokenFile(run.tokenPath, { token, fingerprint });
    return {
      tokens: token,
      workerToken: token,
      files: { worker: run.tokenPath, monitor: run.tokenPath, control: run.tokenPath },
      legacyWarning: `${run.tokenPath} is an older run's one token: whoever holds it may join, watch and Stop. To have separate worker.token, monitor.token and control.token, remove it and resume (worker machines then need the new worker.token)`,
      identity,
    };
  }
  let tokens: RoleTokens;
  if (resumed && roleFiles) {
    const control = (await readTokenFile(paths.control)).token;
    tokens = { worker: (await readTokenFile(paths.worker)).token, monitor: monitorTokenOf(control), control };
  } else if (opts.tokenFile || process.env.GAN_DIST_TOKEN)
    tokens = newRoleTokens((await resolveToken({ tokenFile: opts.tokenFile })).token);
  else tokens = newRoleTokens();
  for (const role of CREDENTIAL_ROLES) await writeTokenFile(paths[role], { token: tokens[role], role, fingerprint });
  return { tokens, workerToken: tokens.worker, files: { ...paths }, identity };
}

/** What the run prints once it listens: which file goes where. */
export function credentialLines(c: RunCredentials, joinUrl: string): string[] {
  if (c.legacyWarning)
    return [`workers join ${joinUrl} with --token-file ${c.files.worker}`, `warning: ${c.legacyWarning}`];
  return [
    `workers join ${joinUrl} with --token-file ${c.files.worker} (copy that file, and only it, to worker machines)`,
    `watch: gan-dist watch ${joinUrl} --token-file ${c.files.monitor} (watch only), or ${c.files.control} (watch and Stop; keep it on this machine)`,
  ];
}
