import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/support/setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Timing-sensitive safety tests must not be retried into passing.
    retry: 0,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
