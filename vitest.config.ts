import { defineConfig } from 'vitest/config';

// Tests run in forked processes: tfjs's wasm backend and sharp hold process-wide state, and
// the 2-core CI machine gains nothing from more than two at once.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
