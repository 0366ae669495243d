/** Path-level looks at the root's own places (the helper directories, the job's path), for the zfs plugin. */
import { lstat, readdir, rmdir, stat } from 'node:fs/promises';
import { isErrno, isZfsControlDir, type Identity, type Job } from '../../src/index.js';

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}

export async function removeEmptyDir(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
}

/** Whether `path` is an empty directory (or absent): nothing a mount there could hide. */
export async function emptyOrAbsent(path: string): Promise<boolean> {
  try {
    const s = await lstat(path);
    if (!s.isDirectory()) return false;
    return (await readdir(path)).length === 0;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return true;
    throw error;
  }
}

/** Whether a filesystem other than the root's is mounted at `path` (a directory, not a link). */
export async function mountedAt(path: string, rootdir: string): Promise<boolean> {
  const [at, root] = await Promise.all([lstat(path), stat(rootdir)]);
  return at.isDirectory() && at.dev !== root.dev;
}

export function sameIdentity(a: Identity | undefined, b: Identity | undefined): boolean {
  return a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

export async function identityOf(path: string): Promise<Identity | undefined> {
  try {
    const s = await lstat(path);
    return s.isDirectory() ? { dev: s.dev, ino: s.ino } : undefined;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

/**
 * Whether the directory holds a `.zfs` at its top where datasets have a control directory (the
 * root's own `.zfs` is one: OpenZFS, even with snapdir=hidden; zfs-fuse has none). One lstat
 * unless the directory holds a `.zfs`.
 */
export async function holdsReservedZfsName(job: Job): Promise<boolean> {
  if (!(await exists(`${job.path}/.zfs`))) return false;
  const ctl = await lstat(`${job.root.rootdir}/.zfs`).catch(() => undefined);
  return ctl !== undefined && isZfsControlDir({ name: '.zfs', type: ctl.isDirectory() ? 'dir' : 'file', ino: ctl.ino });
}
