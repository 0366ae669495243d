/**
 * What a finished job may leave behind, judged with the core's own names (never re-implemented
 * here): helper entries in the root or in its holding directory, journal files, locks, manifests,
 * datasets not marked live.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HELPER_PREFIX, HOLDING_NAME, holdingDir, jobPaths } from '../../src/core/places.js';
import { ROOT_CLAIM_FILE } from '../../src/core/roots.js';
import { datasets, type TestPool } from './zfs.js';
import { ZFS_FUSE_MOUNT_LOCK } from '../../plugins/zfs/zfs.js';

export { HOLDING_NAME, HELPER_PREFIX, holdingDir, jobPaths };

/** Entries in the root that are helpers of older versions, and everything inside the holding directory. */
export async function helperEntries(rootdir: string): Promise<string[]> {
  const old = (await readdir(rootdir)).filter((n) => n.startsWith(HELPER_PREFIX));
  // The record of which stateDir serves the root stays; it is the root's, not a job's.
  const held = (await readdir(holdingDir(rootdir)).catch(() => [] as string[])).filter((n) => n !== ROOT_CLAIM_FILE);
  return [...old, ...held.map((n) => `${HOLDING_NAME}/${n}`)];
}

export interface LeftoverOptions {
  /** Datasets the test made itself (`zfs create`, not a job), which are not leftovers of a job. */
  readonly testDatasets?: (dataset: string) => boolean;
}

/**
 * Everything a finished or recovered job must not leave: helpers, journal files, locks, manifests,
 * unfinished datasets. The one leftovers check of the suite: every test that says "nothing left"
 * asks this.
 */
export async function leftovers(p: TestPool, options: LeftoverOptions = {}): Promise<string[]> {
  const list = async (dir: string): Promise<string[]> => readdir(join(p.stateDir, dir)).catch(() => [] as string[]);
  const [helpers, journal, allLocks, manifests] = await Promise.all([
    helperEntries(p.mount),
    list('jobs'),
    list('locks'),
    list('manifests'),
  ]);
  const ours = (name: string): boolean => name !== p.pool && !(options.testDatasets?.(name) ?? false);
  // Not a job's: zfs-fuse's mount turn (plugins/zfs/zfs.ts), which a process killed in its turn
  // leaves; the next mount takes it over and removes it.
  const locks = allLocks.filter((l) => l !== ZFS_FUSE_MOUNT_LOCK);
  const unfinished = (await datasets(p.pool))
    .filter((d) => ours(d.name) && d.state !== 'live')
    .map((d) => `dataset ${d.name} (${d.state})`);
  return [
    ...helpers,
    ...journal.map((j) => `jobs/${j}`),
    ...locks.map((l) => `locks/${l}`),
    ...manifests.map((m) => `manifests/${m}`),
    ...unfinished,
  ];
}

/** The staging mountpoint or the moved-aside original of the job for `name`. */
export function helperPath(p: TestPool, name: string, kind: 'staging' | 'orig' = 'staging'): string {
  const paths = jobPaths(p.mount, name);
  return kind === 'staging' ? paths.staging : paths.aside;
}
