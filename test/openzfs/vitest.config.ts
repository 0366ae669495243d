/**
 * The OpenZFS lane (scripts/openzfs-lane.sh): the files it names, one at a time, inside the
 * QEMU guest. The test files are passed on the command line; test/openzfs/ holds the ones that
 * need OpenZFS (the main config leaves them out: zfs-fuse cannot pass them).
 */
import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: resolve(import.meta.dirname, '..', '..'),
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    // a generous cap: deadlines inside the tests scale with ZDC_TIME_SCALE (test/helpers/time.ts)
    testTimeout: 900_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // A runtime warning in a test fails it (as in the main config).
    setupFiles: ['test/warnings-setup.ts'],
  },
});
