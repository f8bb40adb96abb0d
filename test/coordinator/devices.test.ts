import { describe, expect, it } from 'vitest';
import { hostOf, sharedGpu } from '../../coordinator/devices.ts';
import type { Peer } from '../../coordinator/server.ts';

const peer = (id: number, address: string, device: string) => ({ id, address, hello: { device } }) as unknown as Peer;

describe('devices of the workers', () => {
  it('finds a second worker of one machine on the same GPU, and only that', () => {
    const gpu = 'GPU NVIDIA H200 (nvidia hopper, GPU 2 at PCI 00000000:C6:00.0) (WebGPU, Dawn)';
    const a = peer(1, '10.0.0.5:41000', gpu);
    expect(sharedGpu(peer(2, '10.0.0.5:41001', gpu), [a])).toBe(a);
    // Another machine's GPU 2, another GPU of this machine, and CPU workers are no warning.
    expect(sharedGpu(peer(3, '10.0.0.6:41000', gpu), [a])).toBeUndefined();
    expect(
      sharedGpu(peer(4, '10.0.0.5:41002', gpu.replace('GPU 2 at PCI 00000000:C6', 'GPU 3 at PCI 00000000:CA')), [a]),
    ).toBeUndefined();
    const cpu = 'CPU (wasm, SIMD, 1 thread)';
    expect(sharedGpu(peer(5, '10.0.0.5:1', cpu), [peer(6, '10.0.0.5:2', cpu)])).toBeUndefined();
  });

  it('reads the host of IPv4 and IPv6 addresses', () => {
    expect(hostOf('127.0.0.1:5000')).toBe('127.0.0.1');
    expect(hostOf('[::1]:5000')).toBe('::1');
  });
});
