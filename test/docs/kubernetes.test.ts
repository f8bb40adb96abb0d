// The Kubernetes manifests in the docs (docs/commands.md's worker Job, the README's container),
// parsed as Kubernetes parses YAML and checked against the fields they use and the CLI they run.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { registerTrainCommands } from '../../cmd/train.ts';
import { WorkerExit } from '../../worker/session-options.ts';
import { RANK_VARIABLES } from '../../worker/placement.ts';
import { repoRoot } from '../support/paths.ts';

type Obj = Record<string, unknown>;

/** Every ```yaml block of a Markdown file, parsed as YAML 1.1 (Kubernetes' dialect: 0600 is octal). */
function yamlBlocks(file: string): Obj[] {
  const text = readFileSync(path.join(repoRoot, file), 'utf8');
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => {
    const doc = parseDocument(m[1], { version: '1.1', uniqueKeys: true });
    expect(
      doc.errors.map((e) => e.message),
      `${file}: a yaml block does not parse`,
    ).toEqual([]);
    return doc.toJS() as Obj;
  });
}

const workerFlags = (() => {
  const program = new Command();
  registerTrainCommands(program);
  const worker = program.commands.find((c) => c.name() === 'worker')!;
  return new Set(worker.options.map((o) => o.long));
})();

interface Container {
  name: string;
  command: unknown;
  args?: unknown;
  resources?: { limits?: Obj };
  volumeMounts?: { name: string; mountPath: string }[];
}

/** A worker container: gan-dist itself as the entry (signals reach it), flags the worker has, a wss URL. */
function checkWorkerContainer(c: Container): string[] {
  expect(
    Array.isArray(c.command) && c.command.every((a) => typeof a === 'string'),
    'command is a list of strings',
  ).toBe(true);
  // Kubernetes runs command followed by args.
  expect(c.args === undefined || (Array.isArray(c.args) && c.args.every((a) => typeof a === 'string'))).toBe(true);
  const argv = [...(c.command as string[]), ...((c.args as string[] | undefined) ?? [])];
  // npx (npm exec) does not pass SIGTERM on: a deleted pod's worker would not say goodbye.
  expect(argv.slice(0, 2)).toEqual(['gan-dist', 'worker']);
  for (const flag of argv.filter((a) => a.startsWith('--'))) expect(workerFlags, flag).toContain(flag);
  expect(argv[argv.indexOf('--join') + 1]).toMatch(/^wss:\/\/[^/]+:\d+$/);
  if (c.resources?.limits?.['nvidia.com/gpu'] !== undefined) {
    // The device plugin leaves CUDA_VISIBLE_DEVICES unset: only --gpu makes --backend auto use the GPU.
    expect(argv[argv.indexOf('--gpu') + 1]).toBe('0');
  }
  return argv;
}

describe('the Kubernetes worker Job in docs/commands.md', () => {
  const jobs = yamlBlocks('docs/commands.md').filter((d) => d.kind === 'Job');
  const job = jobs[0] as {
    apiVersion: string;
    metadata: { name: string };
    spec: {
      completionMode: string;
      parallelism: number;
      completions: number;
      backoffLimit: number;
      podFailurePolicy: { rules: { action: string; onExitCodes?: Obj; onPodConditions?: Obj[] }[] };
      template: {
        spec: {
          restartPolicy: string;
          containers: Container[];
          volumes: { name: string; secret?: { secretName: string; defaultMode: number } }[];
        };
      };
    };
  };

  it('is one batch/v1 Job, Indexed so each pod has a rank the worker reads', () => {
    expect(jobs).toHaveLength(1);
    expect(job.apiVersion).toBe('batch/v1');
    expect(job.metadata.name).toMatch(/^[a-z0-9-]+$/);
    expect(job.spec.completionMode).toBe('Indexed');
    expect(RANK_VARIABLES).toContain('JOB_COMPLETION_INDEX');
    expect(Number.isInteger(job.spec.parallelism) && job.spec.parallelism >= 1).toBe(true);
    expect(job.spec.completions).toBeGreaterThanOrEqual(job.spec.parallelism);
  });

  it("fails at once on the worker's don't-retry codes, which podFailurePolicy allows only with restartPolicy Never", () => {
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    const rules = job.spec.podFailurePolicy.rules;
    for (const r of rules) expect(['FailJob', 'FailIndex', 'Ignore', 'Count']).toContain(r.action);
    const failJob = rules.find((r) => r.action === 'FailJob')!.onExitCodes as Obj;
    expect(failJob.operator).toBe('In');
    expect(failJob.values).toEqual([WorkerExit.REJECTED, WorkerExit.VERSION_MISMATCH]);
    expect(job.spec.template.spec.containers.map((c) => c.name)).toContain(failJob.containerName);
    expect(rules.find((r) => r.action === 'Ignore')?.onPodConditions).toEqual([{ type: 'DisruptionTarget' }]);
  });

  it('runs the worker with a token file from a mode-0600 Secret volume it mounts', () => {
    const spec = job.spec.template.spec;
    expect(spec.containers).toHaveLength(1);
    const c = spec.containers[0];
    const argv = checkWorkerContainer(c);
    const tokenFile = argv[argv.indexOf('--token-file') + 1];
    const mount = c.volumeMounts!.find((m) => tokenFile.startsWith(`${m.mountPath}/`));
    expect(mount, `a volume mounted above ${tokenFile}`).toBeDefined();
    const volume = spec.volumes.find((v) => v.name === mount!.name);
    expect(volume?.secret?.secretName).toMatch(/^[a-z0-9-]+$/);
    // The worker refuses a token file that group or others can read.
    expect(volume?.secret?.defaultMode).toBe(0o600);
  });
});

describe("the README's worker container", () => {
  it('parses, and runs gan-dist itself with the flags the worker has', () => {
    const fragments = yamlBlocks('README.md').filter((d) => Array.isArray(d.containers));
    expect(fragments).toHaveLength(1);
    for (const c of fragments[0].containers as Container[]) checkWorkerContainer(c);
  });
});
