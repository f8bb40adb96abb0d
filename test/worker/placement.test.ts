import { describe, expect, it } from 'vitest';
import { workerPlacement } from '../../worker/placement.ts';
import { expectGanDistError } from '../support/expect-error.ts';

describe('workerPlacement: rank', () => {
  it("takes the rank from gan-dist's own variable, then Slurm's task rank, then a Kubernetes completion index", () => {
    expect(
      workerPlacement({ env: { GAN_DIST_RANK: '2', SLURM_PROCID: '5', JOB_COMPLETION_INDEX: '7' } }),
    ).toMatchObject({ rank: 2, rankFrom: 'GAN_DIST_RANK' });
    expect(workerPlacement({ env: { SLURM_PROCID: '5', JOB_COMPLETION_INDEX: '7' } })).toMatchObject({
      rank: 5,
      rankFrom: 'SLURM_PROCID',
    });
    expect(workerPlacement({ env: { JOB_COMPLETION_INDEX: '7' } })).toMatchObject({
      rank: 7,
      rankFrom: 'JOB_COMPLETION_INDEX',
    });
  });

  it('has no rank when no launcher numbered the worker, and skips an empty variable', () => {
    expect(workerPlacement({ env: {} }).rank).toBeUndefined();
    expect(workerPlacement({ env: { GAN_DIST_RANK: '', SLURM_PROCID: '1' } }).rank).toBe(1);
  });

  it('names the variable whose value is not a rank', () => {
    expectGanDistError(() => workerPlacement({ env: { SLURM_PROCID: 'x' } }), 'GAN_DIST_E_CONFIG', /SLURM_PROCID="x"/);
    expectGanDistError(() => workerPlacement({ env: { GAN_DIST_RANK: '-1' } }), 'GAN_DIST_E_CONFIG', /GAN_DIST_RANK/);
  });
});

describe('workerPlacement: GPU', () => {
  it('pins --gpu I as CUDA_VISIBLE_DEVICES when no launcher set it, and asks for the GPU backend', () => {
    expect(workerPlacement({ gpu: '3', env: { SLURM_LOCALID: '1' } })).toMatchObject({
      cudaVisibleDevices: '3',
      gpuFrom: '--gpu',
      wantsGpu: true,
    });
  });

  it("counts --gpu I among the GPUs a launcher's CUDA_VISIBLE_DEVICES lets the process see", () => {
    // srun --gres=gpu:4 (the whole node's list), task with local id 2.
    expect(workerPlacement({ gpu: '2', env: { CUDA_VISIBLE_DEVICES: '0,1,2,3' } }).cudaVisibleDevices).toBe('2');
    expect(workerPlacement({ gpu: '1', env: { CUDA_VISIBLE_DEVICES: '4,6' } }).cudaVisibleDevices).toBe('6');
    // srun --gpus-per-task 1: one GPU given, --gpu 0 is that one, whatever its id or UUID.
    expect(workerPlacement({ gpu: '0', env: { CUDA_VISIBLE_DEVICES: 'GPU-8f2e' } })).toMatchObject({
      cudaVisibleDevices: 'GPU-8f2e',
      gpuFrom: '--gpu within CUDA_VISIBLE_DEVICES',
    });
  });

  it('refuses --gpu beyond the GPUs the launcher gave, saying how many there are', () => {
    const err = expectGanDistError(
      () => workerPlacement({ gpu: '3', env: { CUDA_VISIBLE_DEVICES: '5' } }),
      'GAN_DIST_E_CONFIG',
      /--gpu 3: CUDA_VISIBLE_DEVICES="5" lets this process see 1 GPU \(indices 0 to 0\)/,
    );
    expect(err.hint).toMatch(/--gpu 0, or leave --gpu out/);
    expectGanDistError(() => workerPlacement({ gpu: 'a', env: {} }), 'GAN_DIST_E_CONFIG', /not a GPU index/);
  });

  it("keeps a launcher's CUDA_VISIBLE_DEVICES, else pins SLURM_LOCALID, without choosing the backend", () => {
    expect(workerPlacement({ env: { CUDA_VISIBLE_DEVICES: '1', SLURM_LOCALID: '3' } })).toMatchObject({
      cudaVisibleDevices: '1',
      gpuFrom: 'CUDA_VISIBLE_DEVICES',
      wantsGpu: false,
    });
    expect(workerPlacement({ env: { SLURM_LOCALID: '3' } })).toMatchObject({
      cudaVisibleDevices: '3',
      gpuFrom: 'SLURM_LOCALID',
      wantsGpu: false,
    });
    expect(workerPlacement({ env: {} })).toEqual({ wantsGpu: false });
  });
});
