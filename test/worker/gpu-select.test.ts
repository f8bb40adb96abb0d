import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceSelectLayer, driPrimeOf, nvidiaGpus, pinGpu } from '../../worker/gpu-select.ts';

// What `nvidia-smi --query-gpu=index,uuid,pci.bus_id,name --format=csv,noheader` prints on a
// machine of four identical GPUs: only the PCI address tells them apart.
const SMI = [
  '0, GPU-1f0e6a5c-0000-0000-0000-000000000000, 00000000:18:00.0, NVIDIA H200',
  '1, GPU-2a1b7c6d-0000-0000-0000-000000000000, 00000000:2A:00.0, NVIDIA H200',
  '2, GPU-3b2c8d7e-0000-0000-0000-000000000000, 00000000:C6:00.0, NVIDIA H200',
  '3, GPU-4c3d9e8f-0000-0000-0000-000000000000, 00000000:CA:00.0, NVIDIA H200',
].join('\n');

/** An environment whose only implicit-layer folder holds (or not) Mesa's device-select layer. */
function layerEnv(withLayer: boolean): NodeJS.ProcessEnv {
  const dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-layers-'));
  mkdirSync(path.join(dir, 'vulkan/implicit_layer.d'), { recursive: true });
  if (withLayer) writeFileSync(path.join(dir, 'vulkan/implicit_layer.d/VkLayer_MESA_device_select.json'), '{}');
  return { XDG_DATA_DIRS: dir, XDG_DATA_HOME: path.join(dir, 'none'), HOME: path.join(dir, 'none') };
}

describe('GPU selection for WebGPU workers', () => {
  it("reads nvidia-smi's list and writes its PCI addresses as DRI_PRIME takes them", () => {
    const gpus = nvidiaGpus(() => SMI);
    expect(gpus.map((g) => g.index)).toEqual(['0', '1', '2', '3']);
    expect(gpus[2]).toEqual({
      index: '2',
      uuid: 'GPU-3b2c8d7e-0000-0000-0000-000000000000',
      pciBusId: '00000000:C6:00.0',
      name: 'NVIDIA H200',
    });
    expect(driPrimeOf('00000000:C6:00.0')).toBe('pci-0000_c6_00_0');
    expect(driPrimeOf('0000:03:00.1')).toBe('pci-0000_03_00_1');
    expect(driPrimeOf('C6:00.0')).toBeUndefined();
    expect(
      nvidiaGpus(() => {
        throw new Error('nvidia-smi: not found');
      }),
    ).toEqual([]);
  });

  it('pins one of four identical GPUs by CUDA index or by UUID', () => {
    const gpus = nvidiaGpus(() => SMI);
    const env = layerEnv(true);
    const byIndex = pinGpu('2', { env, gpus });
    expect(byIndex.env).toEqual({ DRI_PRIME: 'pci-0000_c6_00_0', MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' });
    expect(pinGpu('GPU-4c3d9e8f-0000-0000-0000-000000000000', { env, gpus }).env.DRI_PRIME).toBe('pci-0000_ca_00_0');
  });

  it('says why nothing was pinned: no such GPU, no layer, no nvidia-smi, or DRI_PRIME already chosen', () => {
    const gpus = nvidiaGpus(() => SMI);
    expect(pinGpu('7', { env: layerEnv(true), gpus }).reason).toMatch(/no GPU 7 \(it has 0, 1, 2, 3\)/);
    const noLayer = pinGpu('1', { env: layerEnv(false), gpus });
    expect(noLayer.env).toEqual({});
    expect(noLayer.reason).toMatch(/device-select layer .* is not installed.*mesa-vulkan-drivers/);
    expect(pinGpu('0', { env: layerEnv(true), gpus: [] }).reason).toBe('nvidia-smi lists no GPU');
    expect(pinGpu('0', { env: { ...layerEnv(true), DRI_PRIME: '1' }, gpus }).reason).toMatch(/already set/);
    expect(deviceSelectLayer(layerEnv(false))).toBeUndefined();
  });
});
