import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/openzfs/ needs kernel OpenZFS: scripts/openzfs-lane.sh runs it in a guest
    exclude: [...configDefaults.exclude, 'test/openzfs/**'],
    // One zfs-fuse daemon, one /etc/exports, one incrond: test files run one at a time.
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Records the throwaway pools the run makes and destroys what a test left.
    globalSetup: ['test/global-setup.ts'],
    // A runtime warning in a test fails it.
    setupFiles: ['test/warnings-setup.ts'],
  },
});
