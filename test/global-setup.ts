/**
 * Once per test run (vitest globalSetup): every throwaway pool the run makes is recorded, and at
 * the end whatever a test could not destroy in its own teardown (zfs-fuse still answered "busy")
 * is destroyed, so that runs do not pile pools up in zfs-fuse.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REGISTRY_ENV, destroyThrowawayPool, registeredPools } from './helpers/pool.js';

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'zdc-pools-'));
  // Test files run in forked workers, which inherit this process's environment.
  process.env[REGISTRY_ENV] = dir;
  return async () => {
    const left = await registeredPools(dir);
    let kept = 0;
    for (const files of left) if (!(await destroyThrowawayPool(files, 120_000))) kept++;
    if (left.length > 0)
      console.warn(
        `test teardown: ${left.length - kept} throwaway pool(s) a test left were destroyed${kept ? `, ${kept} could not be (scripts/zfs-fuse.sh clean tries again)` : ''}`,
      );
    await rm(dir, { recursive: true, force: true });
  };
}
