/**
 * Where a job's original directory is now: worked out here once, for the engine and the plugins.
 * Reads only (lstat); decides nothing: a plugin that acts on the original opens it by descriptor
 * and checks its identity again (openDir), as always.
 */
import { lstat } from 'node:fs/promises';
import { jobPaths, rootLevelHelperPath } from './places.js';
import type { Identity } from './types.js';

/** The original's place: `path` (the directory's own, rootdir/name) or `aside` (the holding directory's). */
export interface OriginalPlace {
  readonly at: 'path' | 'aside';
  readonly path: string;
  /** Its owner, as found there. */
  readonly uid: number;
}

/** What originalPlace needs of a job (a Job fits); `record` may be left out when there is none. */
export interface OriginalOf {
  readonly root: { readonly rootdir: string };
  readonly name: string;
  readonly record?: { readonly aside?: string | undefined; readonly identity?: Identity | undefined };
}

/**
 * Where a job's original directory is now: aside (between the swap and its removal, or left there
 * by a failure), else at its path, else undefined (removed, or gone). Aside is looked at first:
 * after the swap the path holds the new filesystem. Aside means the holding directory's place;
 * the root-level name of older versions only for a job whose record says it used it (anyone can
 * make such a name in a world-writable root). With the record's identity only that very
 * directory counts (`anyDirectory`: any directory there, as when no identity is known).
 */
export async function originalPlace(job: OriginalOf, options: { anyDirectory?: boolean } = {}): Promise<OriginalPlace | undefined> {
  const { rootdir } = job.root;
  const legacy = rootLevelHelperPath(rootdir, job.name, 'orig');
  const identity = options.anyDirectory ? undefined : job.record?.identity;
  const places: Omit<OriginalPlace, 'uid'>[] = [
    { at: 'aside', path: jobPaths(rootdir, job.name).aside },
    ...(job.record?.aside === legacy ? [{ at: 'aside' as const, path: legacy }] : []),
    { at: 'path', path: `${rootdir}/${job.name}` },
  ];
  for (const place of places) {
    const stats = await lstat(place.path).catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw error;
    });
    if (stats?.isDirectory() && (identity === undefined || (stats.dev === identity.dev && stats.ino === identity.ino)))
      return { ...place, uid: stats.uid };
  }
  return undefined;
}
