/**
 * Helper places: where a job keeps things in its root while it runs (a staging mountpoint, the
 * original moved aside). They live in one holding directory, `<rootdir>/.zfs-dynamic-creator`,
 * owned by root and mode 0700, on the root's own filesystem (so moving the original there is one
 * atomic rename). Nobody but root can reach anything in it by path: a user who owns a directory
 * being converted cannot touch the moved-aside original, nor read a staging copy, through it.
 *
 * One naming rule for everyone, so that sweeps, watchers and filters never take helpers for new
 * work; every path is derived from the root and the directory's name, never read from elsewhere.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, lstat, mkdir } from 'node:fs/promises';
import { RefusedError, quoteName } from './errors.js';
import { isErrno } from './fsutil.js';

/** The holding directory's name in every root. */
export const HOLDING_NAME = '.zfs-dynamic-creator';
/** Helper names of versions before the holding directory (`.zfs-dynamic-creator-<hash>.<kind>`). */
export const HELPER_PREFIX = '.zfs-dynamic-creator-';

export function holdingDir(rootdir: string): string {
  return `${rootdir}/${HOLDING_NAME}`;
}

function tag(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 16);
}

/** `<rootdir>/.zfs-dynamic-creator/<hash of name>.<kind>`: short whatever the name's length. */
export function helperPath(rootdir: string, name: string, kind: string): string {
  return `${holdingDir(rootdir)}/${tag(name)}.${kind}`;
}

/** Where versions before the holding directory kept a job's helpers (for recovery of their jobs). */
export function legacyHelperPath(rootdir: string, name: string, kind: string): string {
  return `${rootdir}/${HELPER_PREFIX}${tag(name)}.${kind}`;
}

/** The helper places of one job. */
export interface JobPaths {
  /** The root-only holding directory. */
  readonly holding: string;
  /** Where the new filesystem is reachable before the swap. */
  readonly staging: string;
  /** Where the original directory is kept between the swap and its removal. */
  readonly aside: string;
}

export function jobPaths(rootdir: string, name: string): JobPaths {
  return { holding: holdingDir(rootdir), staging: helperPath(rootdir, name, 'staging'), aside: helperPath(rootdir, name, 'orig') };
}

export function isHelperName(name: string): boolean {
  return name === HOLDING_NAME || name.startsWith(HELPER_PREFIX);
}

/**
 * Makes sure the holding directory exists and is ours: a real directory (not a symlink), owned
 * by this process's user, with no access for group or others. Anything else in its place (a user
 * may create that name first in a world-writable root) is refused, never used.
 */
export async function ensureHoldingDir(rootdir: string, create: boolean): Promise<void> {
  const path = holdingDir(rootdir);
  const uid = process.getuid?.() ?? 0;
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
    if (!create) return;
    try {
      await mkdir(path, { mode: 0o700 });
    } catch (mkdirError) {
      if (!isErrno(mkdirError, 'EEXIST')) throw mkdirError;
    }
    stats = await lstat(path);
    if (stats.isDirectory() && stats.uid === uid) {
      // mkdir honours the umask; a chown in a world-writable root also resets a planted group.
      await chown(path, uid, process.getgid?.() ?? 0);
      await chmod(path, 0o700);
      stats = await lstat(path);
    }
  }
  const why = stats.isSymbolicLink()
    ? 'is a symbolic link'
    : !stats.isDirectory()
      ? 'is not a directory'
      : stats.uid !== uid
        ? `is owned by uid ${stats.uid}, not ${uid}`
        : (stats.mode & 0o077) !== 0
          ? `has mode ${(stats.mode & 0o7777).toString(8)}, not 700`
          : undefined;
  if (why !== undefined) {
    throw new RefusedError(`${quoteName(path)}, the tool's holding directory, ${why}; somebody else made it: move it away and run again`);
  }
}
