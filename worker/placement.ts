// A worker's place in a job, as its launcher tells it through the environment: its rank (for logs
// and the coordinator's events) and the GPU that is its own. Read once, before the backend loads.

import { GanDistError } from '../protocol/errors.ts';

/**
 * Where a rank comes from, the first one set wins: gan-dist's own variable (set by `gan-dist
 * train` for its local workers, or by you), Slurm's task rank, a Kubernetes Indexed Job's index.
 */
export const RANK_VARIABLES = ['GAN_DIST_RANK', 'SLURM_PROCID', 'JOB_COMPLETION_INDEX'] as const;

export interface Placement {
  /** Absent when no launcher numbered this worker. */
  rank?: number;
  /** The variable the rank came from. */
  rankFrom?: (typeof RANK_VARIABLES)[number];
  /** CUDA_VISIBLE_DEVICES for this process (absent: leave it unset, every GPU visible). */
  cudaVisibleDevices?: string;
  /** Why the GPU is what it is, for the worker's log. */
  gpuFrom?: '--gpu' | '--gpu within CUDA_VISIBLE_DEVICES' | 'CUDA_VISIBLE_DEVICES' | 'SLURM_LOCALID';
  /** A GPU was asked for explicitly (--gpu): `--backend auto` then means tensorflow-gpu. */
  wantsGpu: boolean;
}

const INDEX = /^\d{1,7}$/;

/**
 * The rule for the GPU, in order:
 * 1. `--gpu I` counts among the GPUs this process may see, as CUDA numbers devices: with
 *    CUDA_VISIBLE_DEVICES unset that is GPU I; when a launcher has set it (srun --gpus-per-task,
 *    --gres, a Kubernetes GPU limit) it is the I-th entry of that list, so `--gpu 0` is "the GPU
 *    I was given" and `--gpu $SLURM_LOCALID` picks this task's own from a node-wide list.
 * 2. Else CUDA_VISIBLE_DEVICES as the launcher set it.
 * 3. Else, under srun, SLURM_LOCALID: task k of a node gets GPU k instead of all sharing GPU 0.
 * Only (1) makes `--backend auto` choose the GPU backend; (2) and (3) only pin the device.
 */
export function workerPlacement(opts: { gpu?: string; env?: NodeJS.ProcessEnv }): Placement {
  const env = opts.env ?? process.env;
  const placement: Placement = { wantsGpu: opts.gpu !== undefined, ...rankOf(env) };
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (opts.gpu !== undefined) {
    if (!INDEX.test(opts.gpu))
      throw new GanDistError('GAN_DIST_E_CONFIG', `--gpu: "${opts.gpu}" is not a GPU index`, 'e.g. --gpu 0');
    if (visible === undefined) return { ...placement, cudaVisibleDevices: opts.gpu, gpuFrom: '--gpu' };
    const list = visible
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const i = Number(opts.gpu);
    if (i >= list.length) {
      throw new GanDistError(
        'GAN_DIST_E_CONFIG',
        `--gpu ${opts.gpu}: CUDA_VISIBLE_DEVICES="${visible}" lets this process see ${list.length} GPU${list.length === 1 ? '' : 's'} (indices 0 to ${list.length - 1}); --gpu counts among those`,
        list.length === 1
          ? 'the launcher gave this task one GPU: use --gpu 0, or leave --gpu out'
          : `use an index below ${list.length}, e.g. --gpu $SLURM_LOCALID when the list is the whole node's`,
      );
    }
    return { ...placement, cudaVisibleDevices: list[i], gpuFrom: '--gpu within CUDA_VISIBLE_DEVICES' };
  }
  if (visible !== undefined) return { ...placement, cudaVisibleDevices: visible, gpuFrom: 'CUDA_VISIBLE_DEVICES' };
  const local = env.SLURM_LOCALID;
  if (local !== undefined && INDEX.test(local))
    return { ...placement, cudaVisibleDevices: local, gpuFrom: 'SLURM_LOCALID' };
  return placement;
}

function rankOf(env: NodeJS.ProcessEnv): Pick<Placement, 'rank' | 'rankFrom'> {
  for (const name of RANK_VARIABLES) {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === '') continue;
    if (!INDEX.test(raw))
      throw new GanDistError('GAN_DIST_E_CONFIG', `${name}="${raw}" is not a rank (an integer >= 0)`);
    return { rank: Number(raw), rankFrom: name };
  }
  return {};
}
