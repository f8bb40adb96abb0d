import { describe, expect, it } from 'vitest';
import { doctor, formatDoctor, type DoctorReport } from '../../worker/doctor.ts';

const base: DoctorReport = { node: 'v20', platform: 'linux x64', cores: 2, memoryGiB: 24, checks: [], adapters: [] };

describe('gan-dist doctor', () => {
  it('names every WebGPU adapter it finds with the limits that bound the model, and says which are software', async () => {
    const r = await doctor();
    const check = r.checks.find((c) => c.name.startsWith('WebGPU adapters'));
    expect(check).toBeDefined();
    for (const a of r.adapters) {
      expect(check!.detail).toContain(
        `maxStorageBufferBindingSize ${Math.round(a.maxStorageBufferBindingSize / 2 ** 20)} MiB`,
      );
      if (a.isFallbackAdapter) expect(check!.detail).toContain('software fallback');
    }
    // Only a hardware adapter makes the check pass; with none, the fix is printed.
    expect(check!.ok).toBe(r.adapters.some((a) => !a.isFallbackAdapter));
    if (!check!.ok) expect(check!.fix).toMatch(/libvulkan1|webgpu/);
  }, 60_000);

  it('prints the fix under a failed check only', () => {
    const text = formatDoctor({
      ...base,
      checks: [
        { name: 'WebGPU adapters', ok: false, detail: 'none', fix: 'install libvulkan1' },
        { name: 'Node.js', ok: true, detail: 'v20', fix: 'unused' },
      ],
    });
    expect(text).toContain('no  WebGPU adapters: none\n       fix: install libvulkan1');
    expect(text).not.toContain('unused');
  });
});
