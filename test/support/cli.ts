// The gan-dist CLI as a child process, started as a user or a launcher would start it
// (`node cmd/gan-dist.mjs ...`), with its output collected and its real exit status reported.

import { spawn, type ChildProcess } from 'node:child_process';
import { cliPath } from './paths.ts';

export interface CliExit {
  /** The exit status the parent sees (null when a signal ended it). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<CliExit>;
  stdout(): string;
  stderr(): string;
}

const live = new Set<ChildProcess>();

/** Starts `gan-dist ARGS`; `env` entries are added to this process's environment (undefined removes one). */
export function startCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string } = {},
): CliProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v === undefined) delete env[k];
  const child = spawn(process.execPath, [cliPath, ...args], { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<CliExit>((resolve) =>
    child.on('close', (code, signal) => {
      live.delete(child);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Runs `gan-dist ARGS` to its end. */
export function runCli(args: string[], opts: Parameters<typeof startCli>[1] = {}): Promise<CliExit> {
  return startCli(args, opts).exited;
}

/** For afterEach: SIGKILLs every CLI process a test started and left running. */
export function killStartedClis(): void {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
}

/** The JSON lines a `gan-dist worker` wrote to stderr. */
export function workerLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
